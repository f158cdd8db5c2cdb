-- 013_pk_live: PK battles' live scores counted incrementally by each node.
--
-- Until now every node's PK tick (once a second) summed every order of a
-- running battle's rooms since the battle started (tipcast_pk_tick()): the
-- cost of a tick grew with the battle's orders (459 ms a tick for 25
-- battles holding 110,000 orders in bench scenario 8). Now each node keeps,
-- per running battle, how much it has counted for good ("settled": the
-- orders whose created_at is before its checkpoint) and asks only for the
-- orders since that checkpoint: the tick's cost is the last minute of the
-- battles' orders, whatever their length.
--
-- The live score is what the rooms are shown (`pk_score`); the result is
-- still decided from every order by tipcast_pk_decide (011), exactly. An
-- order that reaches PostgreSQL more than CUT after its created_at (the
-- ledger was behind) may be left out of a node's live score; never out of
-- the result.
--
-- The zero-argument tipcast_pk_tick() of 011 stays for nodes not yet
-- upgraded.

-- The coins of room r's orders paid in [lo, hi) (by their outbox entry's
-- time, as tipcast_pk_score) whose created_at is at or after from_ts:
-- `settled`, those before cut; `total`, all of them.
CREATE FUNCTION tipcast_pk_part(r text, lo timestamptz, hi timestamptz, from_ts timestamptz, cut timestamptz,
                                OUT settled bigint, OUT total bigint)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(amount) FILTER (WHERE created_at < cut), 0)::bigint, coalesce(sum(amount), 0)::bigint
    FROM orders
    WHERE creator = r AND created_at >= from_ts AND created_at < hi + interval '1 hour'
      AND tipcast_entry_ms(order_id) >= tipcast_ms(lo) AND tipcast_entry_ms(order_id) < tipcast_ms(hi);
$$;

-- The PK tick of a node that counts live scores itself. ids[i] and
-- froms[i]: a running battle the node has counted before, and its
-- checkpoint (ms; the cut_ms this function returned last time). For every
-- battle of tipcast_pk_tick() it returns the same columns, and for a
-- running one:
--   cut_ms               the node's next checkpoint (a minute ago, and not
--                        before the last);
--   settled_a/settled_b  the coins of each room's orders with created_at
--                        in [checkpoint, cut_ms): the node adds them to what
--                        it has counted for good;
--   score_a/score_b      the coins of each room's orders since the
--                        checkpoint: the live score is what was counted for
--                        good before plus this.
-- A battle not in ids starts from the beginning (its start less an hour,
-- the margin tipcast_pk_score allows clocks). Decided battles carry their
-- stored scores, cut_ms and the settled columns 0.
CREATE FUNCTION tipcast_pk_tick(ids bigint[], froms bigint[])
RETURNS TABLE (id bigint, state text, room_a text, room_b text, start_ms bigint, end_ms bigint,
               score_a bigint, score_b bigint, winner text, announced boolean,
               cut_ms bigint, settled_a bigint, settled_b bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tipcast_pk_expire();
    RETURN QUERY
    -- Checkpoints are whole milliseconds (as created_at is), so that an
    -- order is before one cut or at/after it, never both.
    WITH k AS (
        SELECT bt.*, coalesce(timestamptz 'epoch' + kk.from_ms * interval '1 millisecond',
                              date_trunc('milliseconds', bt.starts_at - interval '1 hour')) AS from_ts
        FROM pk_battles bt
        LEFT JOIN unnest(ids, froms) AS kk (id, from_ms) ON kk.id = bt.id
        WHERE bt.state = 'running'
           OR (bt.state = 'decided' AND (NOT bt.announced OR bt.decided_at > now() - interval '10 minutes'))
        ORDER BY bt.id LIMIT 256
    ), b AS (
        SELECT k.*, greatest(date_trunc('milliseconds', now() - interval '1 minute'), k.from_ts) AS cut FROM k
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
