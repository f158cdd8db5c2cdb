-- 014_pk_horizon: the checkpoint of PK battles' live scores follows the
-- ledger instead of trailing the clock by a minute.
--
-- With 013 a node counted for good the orders created more than a minute
-- ago and re-read the last minute at every tick: with 25 busy battles that
-- was some 30,000 orders a second on every node (bench scenario 8: the
-- tick's query was active 23% of the time). Now the node tells the tick how
-- far the ledger has committed every wallet shard's outbox (lua/
-- pk_horizon.lua: the oldest entry pending in the ledger group or not yet
-- delivered to it, less a second): an order created before that is in
-- PostgreSQL already, so the checkpoint moves up to it and a tick re-reads
-- about a second of orders. The checkpoint never trails the clock by more
-- than a minute (a ledger further behind than that is a PostgreSQL outage:
-- its late orders can be left out of the live score, as before); the result
-- is still decided from every order (tipcast_pk_decide).

-- tipcast_pk_tick(ids, froms) of 013 with the node's word: stored_ms, ms
-- since the epoch, before which every order is stored (0: not known). The
-- checkpoint becomes stored_ms, kept within [a minute ago, a second ago] and
-- never before the battle's last checkpoint.
CREATE FUNCTION tipcast_pk_tick(ids bigint[], froms bigint[], stored_ms bigint)
RETURNS TABLE (id bigint, state text, room_a text, room_b text, start_ms bigint, end_ms bigint,
               score_a bigint, score_b bigint, winner text, announced boolean,
               cut_ms bigint, settled_a bigint, settled_b bigint)
LANGUAGE plpgsql AS $$
DECLARE
    stored timestamptz := timestamptz 'epoch' + stored_ms * interval '1 millisecond';
BEGIN
    PERFORM tipcast_pk_expire();
    RETURN QUERY
    WITH k AS (
        SELECT bt.*, coalesce(timestamptz 'epoch' + kk.from_ms * interval '1 millisecond',
                              date_trunc('milliseconds', bt.starts_at - interval '1 hour')) AS from_ts
        FROM pk_battles bt
        LEFT JOIN unnest(ids, froms) AS kk (id, from_ms) ON kk.id = bt.id
        WHERE bt.state = 'running'
           OR (bt.state = 'decided' AND (NOT bt.announced OR bt.decided_at > now() - interval '10 minutes'))
        ORDER BY bt.id LIMIT 256
    ), b AS (
        SELECT k.*, greatest(least(stored, date_trunc('milliseconds', now() - interval '1 second')),
                             date_trunc('milliseconds', now() - interval '1 minute'), k.from_ts) AS cut
        FROM k
    )
    SELECT b.id, b.state, b.room_a, b.room_b, tipcast_ms(b.starts_at), tipcast_ms(b.ends_at),
           CASE WHEN b.state = 'running' THEN pa.total ELSE b.score_a END,
           CASE WHEN b.state = 'running' THEN pb.total ELSE b.score_b END,
           b.winner, b.announced,
           CASE WHEN b.state = 'running' THEN tipcast_ms(b.cut) ELSE 0 END,
           CASE WHEN b.state = 'running' THEN pa.settled ELSE 0 END,
           CASE WHEN b.state = 'running' THEN pb.settled ELSE 0 END
    FROM b
    LEFT JOIN LATERAL tipcast_pk_part(b.room_a, b.starts_at, b.ends_at, b.from_ts, b.cut) pa ON b.state = 'running'
    LEFT JOIN LATERAL tipcast_pk_part(b.room_b, b.starts_at, b.ends_at, b.from_ts, b.cut) pb ON b.state = 'running'
    ORDER BY b.id;
END;
$$;

-- 013's two-argument tick, for nodes not yet upgraded: a minute ago.
CREATE OR REPLACE FUNCTION tipcast_pk_tick(ids bigint[], froms bigint[])
RETURNS TABLE (id bigint, state text, room_a text, room_b text, start_ms bigint, end_ms bigint,
               score_a bigint, score_b bigint, winner text, announced boolean,
               cut_ms bigint, settled_a bigint, settled_b bigint)
LANGUAGE sql AS $$
    SELECT * FROM tipcast_pk_tick(ids, froms, 0::bigint);
$$;
