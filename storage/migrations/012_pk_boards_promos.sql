-- 012_pk_boards_promos: the global boards, the promotions (new-user bonus,
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

-- The orders and refunds written before this migration.
INSERT INTO stats_gifter (grain, period, gifter, coins, refunded, orders)
SELECT g.grain, tipcast_stats_period(g.grain, e.at), e.who, sum(e.coins), sum(e.refunded), sum(e.orders)
FROM (SELECT o.created_at AS at, o.sender AS who, o.amount AS coins, 0::bigint AS refunded, 1::bigint AS orders
      FROM orders o
      UNION ALL
      SELECT min(l.created_at), min(substr(l.account, 6)), 0,
             sum(l.delta) FILTER (WHERE l.account LIKE 'user:%'), 0
      FROM ledger l WHERE l.kind = 'refund' GROUP BY l.movement_id) e,
     (VALUES ('d'::"char"), ('m')) g (grain)
WHERE e.who IS NOT NULL
GROUP BY 1, 2, 3;

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
