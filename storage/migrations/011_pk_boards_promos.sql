-- 011_pk_boards_promos: the global boards, the promotions (new-user bonus,
-- gift coupons) and PK battles (issue 14; docs/settlement.md "Global
-- boards", "Promotions", "PK battles"; docs/admin-api.md).

-- ---- Global boards ----------------------------------------------------------------------------
--
-- Three boards, each for the current UTC day, week (from Monday) and month:
--   creators  by income: gross of the orders created in the period minus the
--             coins refunds credited in the period gave back (stats_creator)
--   gifters   by spend, platform-wide: the same figures per sender
--             (stats_gifter, below)
--   gifts     hot gifts: count, then coins, of the gift orders created in
--             the period (stats_gift)
-- They are read from the rollups the ledger consumer keeps in the same
-- transaction as the orders (009), so a board counts exactly the orders in
-- PostgreSQL; tipcastd keeps the answer for global-board-cache-ms.

-- A sender per UTC day and month: coins of its gifts and tips created in
-- the period, refunded the coins that refunds credited in the period gave
-- back to it, orders their number. There is no hour grain: the boards
-- have no hour period, and a week is the sum of its 7 days.
CREATE TABLE stats_gifter (
    grain     "char" NOT NULL CHECK (grain IN ('d', 'm')),
    period    timestamptz NOT NULL,
    gifter    text NOT NULL,
    coins     bigint NOT NULL DEFAULT 0,
    refunded  bigint NOT NULL DEFAULT 0,
    orders    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (grain, period, gifter)
);
CREATE INDEX stats_gifter_rank ON stats_gifter (grain, period, (coins - refunded) DESC, gifter);

-- 009's rollups run first, then the gifters from the same batch events
-- (ledger_stats_ev): the lock order of 009 is kept, stats_gifter last.
-- 009's function is renamed rather than copied, so that this hook is the
-- only thing added to the ledger's transaction.
ALTER FUNCTION tipcast_ledger_stats() RENAME TO tipcast_ledger_stats_009;

CREATE FUNCTION tipcast_ledger_stats() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tipcast_ledger_stats_009();
    INSERT INTO stats_gifter AS s (grain, period, gifter, coins, refunded, orders)
    SELECT g.grain, tipcast_stats_period(g.grain, e.at), e.supporter, sum(e.gross)::bigint, sum(e.refund)::bigint,
           sum(e.orders)::bigint
    FROM ledger_stats_ev e, (VALUES ('d'::"char"), ('m')) g (grain)
    WHERE e.supporter IS NOT NULL AND e.kind IN ('gift', 'tip', 'refund')
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (grain, period, gifter) DO UPDATE
    SET coins = s.coins + EXCLUDED.coins, refunded = s.refunded + EXCLUDED.refunded,
        orders = s.orders + EXCLUDED.orders;
END;
$$;

-- Rebuilds stats_gifter's rows of [lo, hi) (whole UTC months) from orders
-- and the ledger, as tipcast_stats_backfill does for 009's rollups.
CREATE FUNCTION tipcast_stats_gifters_rebuild(lo timestamptz, hi timestamptz) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM stats_gifter WHERE period >= lo AND period < hi;
    INSERT INTO stats_gifter (grain, period, gifter, coins, refunded, orders)
    SELECT g.grain, tipcast_stats_period(g.grain, e.at), e.who, sum(e.coins), sum(e.refunded), sum(e.orders)
    FROM (SELECT o.created_at AS at, o.sender AS who, o.amount AS coins, 0::bigint AS refunded, 1::bigint AS orders
          FROM orders o WHERE o.created_at >= lo AND o.created_at < hi
          UNION ALL
          SELECT min(l.created_at), min(substr(l.account, 6)) FILTER (WHERE l.account LIKE 'user:%'), 0,
                 coalesce(sum(l.delta) FILTER (WHERE l.account LIKE 'user:%'), 0), 0
          FROM ledger l WHERE l.kind = 'refund' AND l.created_at >= lo AND l.created_at < hi
          GROUP BY l.movement_id) e,
         (VALUES ('d'::"char"), ('m')) g (grain)
    WHERE e.who IS NOT NULL
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
$$;

-- 009's backfill, then the gifters of the same months (its locks are held
-- until the caller's transaction ends; stats_gifter is written last, as by
-- the ledger).
ALTER FUNCTION tipcast_stats_backfill(timestamptz, timestamptz) RENAME TO tipcast_stats_backfill_009;

CREATE FUNCTION tipcast_stats_backfill(t_from timestamptz, t_to timestamptz) RETURNS bigint
LANGUAGE plpgsql SET work_mem = '256MB' AS $$
DECLARE
    n bigint := tipcast_stats_backfill_009(t_from, t_to);
BEGIN
    LOCK TABLE stats_gifter IN SHARE ROW EXCLUSIVE MODE;
    PERFORM tipcast_stats_gifters_rebuild(
        tipcast_stats_period('m', coalesce(t_from, '-infinity')),
        tipcast_stats_period('m', coalesce(t_to, 'infinity') - interval '1 microsecond') + interval '1 month');
    RETURN n;
END;
$$;

-- The orders and refunds written before this migration.
SELECT tipcast_stats_gifters_rebuild('-infinity', 'infinity');

-- The periods of a board at instant t: day, week (Monday) and month, UTC.
CREATE FUNCTION tipcast_board_period(period text, t timestamptz, OUT p_from timestamptz, OUT p_to timestamptz)
LANGUAGE sql IMMUTABLE AS $$
    SELECT b, b + CASE period WHEN 'day' THEN interval '1 day' WHEN 'week' THEN interval '7 days'
                              ELSE interval '1 month' END
    FROM (SELECT date_trunc(period, t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS b) x;
$$;

-- Every board of every period at t, top `top` rows each, in rank order:
-- (board, period, rank, id, name, coins, count). Ties: coins (count for
-- gifts) descending, then id ascending. Only positive scores are listed.
-- One statement, so that tipcastd fills its cache with one round trip.
CREATE FUNCTION tipcast_global_boards(t timestamptz, top int)
RETURNS TABLE (board text, period text, rank int, id text, name text, coins bigint, count bigint)
LANGUAGE sql STABLE AS $$
    WITH p AS (
        SELECT x.period, (tipcast_board_period(x.period, t)).*,
               CASE x.period WHEN 'month' THEN 'm'::"char" ELSE 'd' END AS grain
        FROM (VALUES ('day'), ('week'), ('month')) x (period)
    ), c AS (
        SELECT 'creators'::text AS board, p.period, s.creator AS id, NULL::text AS name,
               sum(s.gross - s.refunds)::bigint AS coins, sum(s.orders)::bigint AS count
        FROM p JOIN stats_creator s ON s.grain = p.grain AND s.period >= p.p_from AND s.period < p.p_to
        GROUP BY p.period, s.creator
    ), u AS (
        SELECT 'gifters'::text AS board, p.period, s.gifter AS id, NULL::text AS name,
               sum(s.coins - s.refunded)::bigint AS coins, sum(s.orders)::bigint AS count
        FROM p JOIN stats_gifter s ON s.grain = p.grain AND s.period >= p.p_from AND s.period < p.p_to
        GROUP BY p.period, s.gifter
    ), g AS (
        SELECT 'gifts'::text AS board, p.period, s.gift_id::text AS id, min(gf.name) AS name,
               sum(s.coins)::bigint AS coins, sum(s.count)::bigint AS count
        FROM p JOIN stats_gift s ON s.grain = p.grain AND s.period >= p.p_from AND s.period < p.p_to
        LEFT JOIN gifts gf ON gf.id = s.gift_id
        GROUP BY p.period, s.gift_id
    ), ranked AS (
        SELECT a.*, row_number() OVER (PARTITION BY a.board, a.period
                                       ORDER BY CASE WHEN a.board = 'gifts' THEN a.count ELSE a.coins END DESC,
                                                a.coins DESC,
                                                CASE WHEN a.board = 'gifts' THEN lpad(a.id, 12, '0') ELSE a.id END)
                                        AS rank
        FROM (SELECT * FROM c WHERE coins > 0 UNION ALL SELECT * FROM u WHERE coins > 0
              UNION ALL SELECT * FROM g WHERE count > 0) a
    )
    SELECT board, period, rank::int, id, name, coins, count FROM ranked WHERE rank <= top
    ORDER BY board, period, rank;
$$;

-- GET /api/v1/boards?period=day|week|month&top=1..100: the three boards of
-- the current period.
CREATE FUNCTION tipcast_api_boards(ctx jsonb) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    per text := coalesce(tipcast_arg_enum(ctx, 'period', ARRAY['day', 'week', 'month']), 'day');
    top int := tipcast_stats_top(ctx);
    b record := tipcast_board_period(per, now());
BEGIN
    RETURN json_build_object('status', 200, 'body', json_build_object(
        'period', per, 'from', tipcast_ts(b.p_from), 'to', tipcast_ts(b.p_to),
        'creators', (SELECT coalesce(json_agg(json_build_object('creator', r.id, 'coins', r.coins,
                                                                'orders', r.count) ORDER BY r.rank), '[]')
                     FROM tipcast_global_boards(now(), top) r WHERE r.board = 'creators' AND r.period = per),
        'gifters', (SELECT coalesce(json_agg(json_build_object('user', r.id, 'coins', r.coins,
                                                               'orders', r.count) ORDER BY r.rank), '[]')
                    FROM tipcast_global_boards(now(), top) r WHERE r.board = 'gifters' AND r.period = per),
        'gifts', (SELECT coalesce(json_agg(json_build_object('gift_id', r.id::int, 'name', r.name,
                                                             'count', r.count, 'coins', r.coins) ORDER BY r.rank), '[]')
                  FROM tipcast_global_boards(now(), top) r WHERE r.board = 'gifts' AND r.period = per)));
END;
$$;

-- ---- Promotions -------------------------------------------------------------------------------
--
-- Both are wallet movements made by tipcastd's wallet script and charged to
-- the platform through the existing credit kind: the ledger's credit rows
-- are (user:U, +A), (platform, -A), note the credit's text.
--   new-user bonus  A viewer's wallet that never had coins gets `value`
--                   coins of the risk rule new_user_bonus when the viewer
--                   authenticates, once per user for ever (note
--                   'new-user bonus'). The rule row lives with the risk
--                   rules so that every node reloads it on NOTIFY
--                   tipcast_risk within a second of a change.
--   gift coupons    A coupon gives `discount` coins off one gift order of
--                   `gift_id` by `user_id`, once: the script writes a
--                   credit of the discount (note 'coupon:<code>') and the
--                   gift at its full price, atomically. Its use is the
--                   ledger's credit row, so `used` is read from the ledger.

INSERT INTO risk_rules (name, value, dflt, lo, hi, unit, description) VALUES
    ('new_user_bonus', 0, 0, 0, 1000000000, 'coins',
     'promotions: coins a viewer''s new wallet (never credited) gets once when the viewer first connects; 0 = off');

CREATE TABLE coupons (
    code        text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9_.-]{1,64}$'),
    user_id     text NOT NULL,
    gift_id     int NOT NULL,
    discount    bigint NOT NULL CHECK (discount > 0),
    expires_at  timestamptz,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The coupon's use: its credit row in the ledger (movement = the credit
-- entry's order id; the gift's order is the next entry of the same shard).
CREATE FUNCTION tipcast_coupon_json(c coupons) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('code', c.code, 'user', c.user_id, 'gift_id', c.gift_id, 'discount', c.discount,
        'expires_at', tipcast_ts(c.expires_at), 'created_by', c.created_by, 'created_at', tipcast_ts(c.created_at),
        'used', u.movement_id IS NOT NULL, 'used_at', tipcast_ts(u.created_at), 'credit', u.movement_id)
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT l.movement_id, l.created_at FROM ledger l
                       WHERE l.account = 'user:' || c.user_id AND l.kind = 'credit' AND l.note = 'coupon:' || c.code
                       ORDER BY l.id LIMIT 1) u ON true;
$$;

-- POST /api/v1/coupons {user, gift_id, discount, expires_at?, code?}: 201
-- with the coupon; a code given twice is 409 conflict (the first stands).
CREATE FUNCTION tipcast_api_coupon_create(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    uid text := tipcast_arg_id(ctx, 'user');
    gid bigint := tipcast_arg_int(ctx, 'gift_id', 1, 2147483647);
    disc bigint := tipcast_arg_amount(ctx, 'discount');
    exp timestamptz := tipcast_arg_time(ctx, 'expires_at');
    code text := coalesce(tipcast_arg_id(ctx, 'code', 'body', false), 'cp_' || md5(random()::text || clock_timestamp()::text));
    c coupons;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM gifts WHERE id = gid) THEN
        PERFORM tipcast_bad('gift_id', 'no such gift');
    END IF;
    IF exp IS NOT NULL AND exp <= now() THEN
        PERFORM tipcast_bad('expires_at', 'expires_at must be in the future');
    END IF;
    INSERT INTO coupons (code, user_id, gift_id, discount, expires_at, created_by)
    VALUES (code, uid, gid, disc, exp, coalesce(ctx->>'actor', '-'))
    ON CONFLICT DO NOTHING RETURNING * INTO c;
    IF c.code IS NULL THEN
        PERFORM tipcast_refuse('idempotency_conflict', 'a coupon with this code exists (the first stands)', 'code');
    END IF;
    PERFORM tipcast_audit(ctx, 'coupon.create', c.code, NULL, to_jsonb(c));
    RETURN tipcast_ok(tipcast_coupon_json(c), 201);
END;
$$;

CREATE FUNCTION tipcast_api_coupon_get(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c coupons;
BEGIN
    SELECT * INTO c FROM coupons WHERE code = tipcast_path_id(ctx);
    IF c.code IS NULL THEN
        PERFORM tipcast_refuse('not_found', 'no such coupon');
    END IF;
    RETURN tipcast_ok(tipcast_coupon_json(c));
END;
$$;

-- What tipcastd's gift path reads (storage/promo.c): the coupon's owner,
-- gift, discount and expiry in ms (0 = never); no row when unknown.
CREATE FUNCTION tipcast_coupon_lookup(c text, OUT user_id text, OUT gift_id int, OUT discount bigint,
                                      OUT expires_ms bigint)
LANGUAGE sql STABLE AS $$
    SELECT user_id, gift_id, discount, coalesce((extract(epoch FROM expires_at) * 1000)::bigint, 0)
    FROM coupons WHERE code = c;
$$;

-- GET/PUT /api/v1/promotions/new-user-bonus {amount}: the bonus (the risk
-- rule new_user_bonus; 0 = off).
CREATE FUNCTION tipcast_bonus_json() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('amount', value, 'updated_at', tipcast_ts(updated_at), 'updated_by', updated_by)
    FROM risk_rules WHERE name = 'new_user_bonus';
$$;

CREATE FUNCTION tipcast_api_bonus_get(ctx jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT tipcast_ok(tipcast_bonus_json()); $$;

CREATE FUNCTION tipcast_api_bonus_put(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    amt bigint := tipcast_arg_int(ctx, 'amount', 0, 1000000000);
    old bigint;
BEGIN
    SELECT value INTO old FROM risk_rules WHERE name = 'new_user_bonus' FOR UPDATE;
    IF old <> amt THEN
        UPDATE risk_rules SET value = amt, updated_at = now(), updated_by = coalesce(ctx->>'actor', '-')
        WHERE name = 'new_user_bonus';
        PERFORM tipcast_audit(ctx, 'promo.bonus', NULL, jsonb_build_object('amount', old),
                              jsonb_build_object('amount', amt));
    END IF;
    RETURN tipcast_ok(tipcast_bonus_json());
END;
$$;

-- ---- PK battles -------------------------------------------------------------------------------
--
-- Two creators' rooms linked for `seconds` (docs/settlement.md "PK
-- battles"). A creator requests one (room_a is the creator), the other
-- accepts within PK_REQUEST_TTL (60 s); or staff start one at once. A room
-- is in at most one requested or running battle.
--
-- The cut. A room's score is the coins of the gifts and tips to it whose
-- money moved in [starts_at, ends_at): the millisecond of the order's
-- outbox entry id (the Redis time of its wallet shard when the wallet
-- script ran, the middle part of the order id), not the node's clock. The
-- winner is decided once the ledger has every wallet shard past the end:
-- on each shard Redis's time is past ends_at (plus a grace), so no entry
-- can be added before it, and the ledger group has acknowledged, i.e.
-- committed to PostgreSQL, every entry before it (tipcastd checks that
-- with server/lua/pk_cut.lua). From then on the sum below is final, and
-- every node computes the same. Refunds do not change a PK's scores.
-- Tie rule: equal scores are a draw (winner NULL).

CREATE TABLE pk_battles (
    id            bigserial PRIMARY KEY,
    room_a        text NOT NULL,
    room_b        text NOT NULL CHECK (room_b <> room_a),
    seconds       int NOT NULL CHECK (seconds BETWEEN 5 AND 3600),
    state         text NOT NULL CHECK (state IN ('requested', 'running', 'decided', 'expired')),
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    starts_at     timestamptz,
    ends_at       timestamptz,
    score_a       bigint,
    score_b       bigint,
    winner        text,
    decided_at    timestamptz,
    decided_by    text,
    announced     boolean NOT NULL DEFAULT false
);
CREATE INDEX pk_battles_open ON pk_battles (id) WHERE state IN ('requested', 'running') OR NOT announced;
CREATE INDEX pk_battles_decided ON pk_battles (decided_at) WHERE state = 'decided';

CREATE FUNCTION tipcast_ms(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT floor(extract(epoch FROM t) * 1000)::bigint; $$;

-- A room's score in [lo, hi) by the order ids' milliseconds. The
-- created_at bound only narrows the index scan: it is the node's clock,
-- which may differ from Redis's by far less than an hour.
CREATE FUNCTION tipcast_pk_score(r text, lo timestamptz, hi timestamptz) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(amount), 0)::bigint FROM orders
    WHERE creator = r AND created_at >= lo - interval '1 hour' AND created_at < hi + interval '1 hour'
      AND tipcast_entry_ms(order_id) >= tipcast_ms(lo) AND tipcast_entry_ms(order_id) < tipcast_ms(hi);
$$;

CREATE FUNCTION tipcast_pk_json(b pk_battles) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', b.id, 'room_a', b.room_a, 'room_b', b.room_b, 'seconds', b.seconds,
        'state', b.state, 'requested_by', b.requested_by, 'requested_at', tipcast_ts(b.requested_at),
        'starts_at', tipcast_ts(b.starts_at), 'ends_at', tipcast_ts(b.ends_at), 'score_a', b.score_a,
        'score_b', b.score_b, 'winner', b.winner,
        'result', CASE WHEN b.state <> 'decided' THEN NULL WHEN b.winner IS NULL THEN 'draw'
                       WHEN b.winner = b.room_a THEN 'a' ELSE 'b' END,
        'decided_at', tipcast_ts(b.decided_at));
$$;

-- Requests not accepted within 60 s expire (called by the routes and the tick).
CREATE FUNCTION tipcast_pk_expire() RETURNS void
LANGUAGE sql AS $$
    UPDATE pk_battles SET state = 'expired'
    WHERE state = 'requested' AND requested_at < now() - interval '60 seconds';
$$;

-- POST /api/v1/pk {room_a, room_b, seconds}: staff start it at once
-- (201, running); a creator requests one against room_b (room_a is itself;
-- 201, requested).
CREATE FUNCTION tipcast_api_pk_create(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    creator boolean := ctx->>'role' = 'creator';
    a text := CASE WHEN ctx->>'role' = 'creator' THEN ctx->>'actor' ELSE tipcast_arg_id(ctx, 'room_a') END;
    b text := tipcast_arg_id(ctx, 'room_b');
    secs int := tipcast_arg_int(ctx, 'seconds', 5, 3600);
    t timestamptz := date_trunc('milliseconds', now());
    bt pk_battles;
BEGIN
    IF a = b THEN
        PERFORM tipcast_bad('room_b', 'a room cannot battle itself');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM creators WHERE id = a) THEN
        PERFORM tipcast_bad('room_a', format('no creator %s', a));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM creators WHERE id = b) THEN
        PERFORM tipcast_bad('room_b', format('no creator %s', b));
    END IF;
    -- One open battle per room: the check and the insert under one lock.
    LOCK TABLE pk_battles IN SHARE ROW EXCLUSIVE MODE;
    PERFORM tipcast_pk_expire();
    IF EXISTS (SELECT 1 FROM pk_battles WHERE state IN ('requested', 'running')
               AND (room_a IN (a, b) OR room_b IN (a, b))) THEN
        PERFORM tipcast_refuse('invalid_state', 'one of the rooms is in a requested or running battle');
    END IF;
    INSERT INTO pk_battles (room_a, room_b, seconds, state, requested_by, requested_at, starts_at, ends_at)
    VALUES (a, b, secs, CASE WHEN creator THEN 'requested' ELSE 'running' END, coalesce(ctx->>'actor', '-'), t,
            CASE WHEN creator THEN NULL ELSE t END,
            CASE WHEN creator THEN NULL ELSE t + secs * interval '1 second' END)
    RETURNING * INTO bt;
    PERFORM tipcast_audit(ctx, 'pk.create', bt.id::text, NULL, tipcast_pk_json(bt));
    RETURN tipcast_ok(tipcast_pk_json(bt), 201);
END;
$$;

CREATE FUNCTION tipcast_pk_find(ctx jsonb, lock boolean) RETURNS pk_battles
LANGUAGE plpgsql AS $$
DECLARE
    pid bigint := tipcast_path_serial(ctx);
    bt pk_battles;
BEGIN
    IF lock THEN
        SELECT * INTO bt FROM pk_battles WHERE id = pid FOR UPDATE;
    ELSE
        SELECT * INTO bt FROM pk_battles WHERE id = pid;
    END IF;
    IF bt.id IS NULL OR (ctx->>'role' = 'creator' AND ctx->>'actor' NOT IN (bt.room_a, bt.room_b)) THEN
        PERFORM tipcast_refuse('not_found', format('no battle %s', pid));
    END IF;
    RETURN bt;
END;
$$;

-- POST /api/v1/pk/{id}/accept: room_b's creator (or staff) accepts a
-- request; it starts now.
CREATE FUNCTION tipcast_api_pk_accept(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    bt pk_battles;
    t timestamptz := date_trunc('milliseconds', now());
BEGIN
    PERFORM tipcast_pk_expire();
    bt := tipcast_pk_find(ctx, true);
    IF ctx->>'role' = 'creator' AND ctx->>'actor' <> bt.room_b THEN
        PERFORM tipcast_refuse('forbidden', 'only the requested room''s creator may accept');
    END IF;
    IF bt.state <> 'requested' THEN
        PERFORM tipcast_refuse('invalid_state', format('battle %s is %s, wanted requested', bt.id, bt.state));
    END IF;
    UPDATE pk_battles SET state = 'running', starts_at = t, ends_at = t + seconds * interval '1 second'
    WHERE id = bt.id RETURNING * INTO bt;
    PERFORM tipcast_audit(ctx, 'pk.accept', bt.id::text, NULL, tipcast_pk_json(bt));
    RETURN tipcast_ok(tipcast_pk_json(bt));
END;
$$;

CREATE FUNCTION tipcast_api_pk_get(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tipcast_pk_expire();
    RETURN tipcast_ok(tipcast_pk_json(tipcast_pk_find(ctx, false)));
END;
$$;

-- tipcastd's tick (server/pk.c), once a second on every node: the running
-- battles with their live scores, and the decided ones not yet announced
-- or decided in the last 10 minutes (each node computes those again and
-- compares: a result must be the same whichever node decides it).
CREATE FUNCTION tipcast_pk_tick()
RETURNS TABLE (id bigint, state text, room_a text, room_b text, start_ms bigint, end_ms bigint,
               score_a bigint, score_b bigint, winner text, announced boolean)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tipcast_pk_expire();
    RETURN QUERY
    SELECT b.id, b.state, b.room_a, b.room_b, tipcast_ms(b.starts_at), tipcast_ms(b.ends_at),
           CASE WHEN b.state = 'running' THEN tipcast_pk_score(b.room_a, b.starts_at, b.ends_at) ELSE b.score_a END,
           CASE WHEN b.state = 'running' THEN tipcast_pk_score(b.room_b, b.starts_at, b.ends_at) ELSE b.score_b END,
           b.winner, b.announced
    FROM pk_battles b
    WHERE b.state = 'running'
       OR (b.state = 'decided' AND (NOT b.announced OR b.decided_at > now() - interval '10 minutes'))
    ORDER BY b.id LIMIT 256;
END;
$$;

-- Decides battle `pk` once tipcastd has seen the cut pass (the caller's
-- duty): the scores, the winner (NULL: draw), whether this call stored
-- them, and whether they equal what was stored (a node deciding after
-- another computes the same; `same` false would be a bug, logged loudly).
CREATE FUNCTION tipcast_pk_decide(pk bigint, node text, OUT score_a bigint, OUT score_b bigint, OUT winner text,
                                  OUT stored boolean, OUT same boolean)
LANGUAGE plpgsql AS $$
DECLARE
    bt pk_battles;
BEGIN
    SELECT * INTO bt FROM pk_battles WHERE id = pk FOR UPDATE;
    IF bt.id IS NULL OR bt.state NOT IN ('running', 'decided') OR bt.ends_at > now() THEN
        RAISE EXCEPTION 'tipcast_pk_decide: battle % is not past its end', pk;
    END IF;
    score_a := tipcast_pk_score(bt.room_a, bt.starts_at, bt.ends_at);
    score_b := tipcast_pk_score(bt.room_b, bt.starts_at, bt.ends_at);
    winner := CASE WHEN score_a > score_b THEN bt.room_a WHEN score_b > score_a THEN bt.room_b END;
    stored := bt.state = 'running';
    IF stored THEN
        UPDATE pk_battles SET state = 'decided', score_a = tipcast_pk_decide.score_a,
            score_b = tipcast_pk_decide.score_b, winner = tipcast_pk_decide.winner, decided_at = now(),
            decided_by = node
        WHERE id = pk;
        same := true;
    ELSE
        same := bt.score_a = score_a AND bt.score_b = score_b AND bt.winner IS NOT DISTINCT FROM winner;
    END IF;
END;
$$;
