-- 009_stats: platform and creator statistics from rollup tables
-- (docs/settlement.md, "Stats"; the routes in docs/admin-api.md, "Stats").
--
-- The rollups are kept by the ledger consumer in the same transaction as the
-- rows they count: tipcast_ledger_apply (006) ends with
-- tipcast_ledger_stats(), which reads the batch's temporary tables
-- ledger_new (the orders it inserted, with gift_id and count) and
-- ledger_out (every ledger row it added). A replayed batch adds no rows,
-- so it adds nothing here either. The stats routes read only these tables,
-- never orders or ledger.
--
-- Periods are UTC hours, days and months ("grain" 'h', 'd', 'm'), stored
-- as the timestamptz of their first instant. Every grain is kept, not
-- summed from hours at read time: a distinct count of active creators
-- cannot be summed, and a month of hours times the gifts would be too many
-- rows to read within the 50 ms the routes have.
--
-- What an order counts in: its created_at (the wallet's time). A refund:
-- the time of its wallet credit (its ledger rows' created_at), which lowers
-- the income figures of that period, not of the order's. A recharge: the
-- time of its wallet credit.
--
-- Locks: the rollups are written after everything else of the batch (and
-- so after 003's creator rows), one table after the other in this order:
-- stats_creator, stats_platform, stats_gift, stats_supporter,
-- stats_creator_gift, each by its key in ascending order. Two ledger
-- consumers therefore take them in the same order and cannot deadlock.

-- ---- Tables -----------------------------------------------------------------------------------

-- The first instant (UTC) of the hour, day or month of t. Written with
-- AT TIME ZONE (immutable) rather than date_trunc's zone argument (stable),
-- so that PostgreSQL inlines it: called once per row and grain, a function
-- call each time made the backfill ten times slower.
CREATE FUNCTION tipcast_stats_period(grain "char", t timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT date_trunc(CASE grain WHEN 'h' THEN 'hour' WHEN 'd' THEN 'day' ELSE 'month' END, t AT TIME ZONE 'UTC')
           AT TIME ZONE 'UTC';
$$;

-- The platform per period. gross: the coins of the orders (gifts and tips)
-- created in it; fees, agency, creator_net: the sum of the ledger deltas
-- of accounts platform, agency:* and creator:* of those orders and of the
-- refunds credited in it (a refund's rows are negative); refunds: the coins
-- given back to wallets by those refunds; recharges: the coins credited by
-- recharges; gifts: the sum of the gift orders' count; orders: the number
-- of orders; active_creators: the creators with at least one order in it.
CREATE TABLE stats_platform (
    grain            "char" NOT NULL CHECK (grain IN ('h', 'd', 'm')),
    period           timestamptz NOT NULL,
    gross            bigint NOT NULL DEFAULT 0,
    fees             bigint NOT NULL DEFAULT 0,
    agency           bigint NOT NULL DEFAULT 0,
    creator_net      bigint NOT NULL DEFAULT 0,
    refunds          bigint NOT NULL DEFAULT 0,
    recharges        bigint NOT NULL DEFAULT 0,
    gifts            bigint NOT NULL DEFAULT 0,
    orders           bigint NOT NULL DEFAULT 0,
    active_creators  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (grain, period)
);

-- A creator per period: gross and orders as above; net: the creator's
-- ledger deltas of its orders and of the refunds credited in the period;
-- refunds: the coins those refunds gave back. A row with orders > 0 is an
-- active creator of the period (stats_platform.active_creators counts them
-- when orders passes from 0).
CREATE TABLE stats_creator (
    creator  text NOT NULL,
    grain    "char" NOT NULL CHECK (grain IN ('h', 'd', 'm')),
    period   timestamptz NOT NULL,
    gross    bigint NOT NULL DEFAULT 0,
    net      bigint NOT NULL DEFAULT 0,
    orders   bigint NOT NULL DEFAULT 0,
    refunds  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (creator, grain, period)
);

-- The gifts per period (the hot gifts): the sum of count and the coins of
-- the gift orders created in it. Refunds do not lower them: a gift sent is
-- a gift shown in the room, refunded or not.
CREATE TABLE stats_gift (
    grain    "char" NOT NULL CHECK (grain IN ('h', 'd', 'm')),
    period   timestamptz NOT NULL,
    gift_id  int NOT NULL,
    count    bigint NOT NULL DEFAULT 0,
    coins    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (grain, period, gift_id)
);

-- A creator's supporters, since the beginning: coins and orders of the
-- supporter's orders to the creator, refunded the coins refunds gave back
-- to the supporter; last_at the latest order's created_at. Ranked by
-- coins - refunded (net of refunds).
CREATE TABLE stats_supporter (
    creator    text NOT NULL,
    supporter  text NOT NULL,
    coins      bigint NOT NULL DEFAULT 0,
    refunded   bigint NOT NULL DEFAULT 0,
    orders     bigint NOT NULL DEFAULT 0,
    last_at    timestamptz,
    PRIMARY KEY (creator, supporter)
);
CREATE INDEX stats_supporter_rank ON stats_supporter (creator, (coins - refunded) DESC, supporter);

-- A creator's gifts received, since the beginning (its gift preferences):
-- the sum of count and the coins, as stats_gift.
CREATE TABLE stats_creator_gift (
    creator  text NOT NULL,
    gift_id  int NOT NULL,
    count    bigint NOT NULL DEFAULT 0,
    coins    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (creator, gift_id)
);

-- ---- Maintenance by the ledger consumer -------------------------------------------------------

-- The batch's events, one row per order, refund or recharge, in the
-- per-connection temporary table ledger_stats_ev (made here when missing,
-- emptied at every commit like the staging tables).
--   order     at = created_at; gross, fee, agency, net = its split; orders 1
--   refund    at = its rows' created_at; fee, agency, net = its (negative)
--             rows; refund = the coins back to the user
--   recharge  at = its rows' created_at; recharge = the coins credited
CREATE FUNCTION tipcast_stats_events() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('pg_temp.ledger_stats_ev') IS NULL THEN
        CREATE TEMP TABLE ledger_stats_ev (kind text, at timestamptz, creator text, supporter text, gift_id int,
            count bigint, gross bigint, fee bigint, agency bigint, net bigint, refund bigint, recharge bigint,
            orders bigint) ON COMMIT DELETE ROWS;
    END IF;
    -- Empty after every commit; this is for a second call in one
    -- transaction (a test, a benchmark), and costs nothing otherwise.
    DELETE FROM ledger_stats_ev;
    INSERT INTO ledger_stats_ev
    SELECT kind, created_at, creator, sender, CASE WHEN kind = 'gift' THEN coalesce(gift_id, 0) END,
           CASE WHEN kind = 'gift' THEN count ELSE 0 END, amount, platform_fee, agency_share, creator_net, 0, 0, 1
    FROM ledger_new
    UNION ALL
    SELECT min(kind), min(created_at),
           min(substr(account, 9)) FILTER (WHERE account LIKE 'creator:%'),
           min(substr(account, 6)) FILTER (WHERE account LIKE 'user:%'), NULL, 0, 0,
           coalesce(sum(delta) FILTER (WHERE account = 'platform' AND kind = 'refund'), 0),
           coalesce(sum(delta) FILTER (WHERE account LIKE 'agency:%' AND kind = 'refund'), 0),
           coalesce(sum(delta) FILTER (WHERE account LIKE 'creator:%' AND kind = 'refund'), 0),
           coalesce(sum(delta) FILTER (WHERE account LIKE 'user:%' AND kind = 'refund'), 0),
           coalesce(sum(delta) FILTER (WHERE account LIKE 'user:%' AND kind = 'recharge'), 0), 0
    FROM ledger_out
    WHERE kind IN ('refund', 'recharge')
    GROUP BY movement_id;
END;
$$;

-- The rollups of the batch (see the top of this file): one INSERT ... ON
-- CONFLICT DO UPDATE per table over the batch's rows aggregated by key.
CREATE OR REPLACE FUNCTION tipcast_ledger_stats() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tipcast_stats_events();

    -- Creators first, then the platform with the creators that became
    -- active: a row whose orders equal the batch's orders had none before.
    -- Exact with two consumers too: the second one's upsert waits for the
    -- first one's row lock and then adds to what it committed.
    WITH g (grain) AS (VALUES ('h'::"char"), ('d'), ('m')),
    c AS (
        SELECT e.creator, g.grain, tipcast_stats_period(g.grain, e.at) AS period, sum(e.gross)::bigint AS gross,
               sum(e.net)::bigint AS net, sum(e.orders)::bigint AS orders, sum(e.refund)::bigint AS refunds
        FROM ledger_stats_ev e, g WHERE e.creator IS NOT NULL
        GROUP BY 1, 2, 3
    ), up AS (
        INSERT INTO stats_creator AS s (creator, grain, period, gross, net, orders, refunds)
        SELECT * FROM c ORDER BY creator, grain, period
        ON CONFLICT (creator, grain, period) DO UPDATE
        SET gross = s.gross + EXCLUDED.gross, net = s.net + EXCLUDED.net, orders = s.orders + EXCLUDED.orders,
            refunds = s.refunds + EXCLUDED.refunds
        RETURNING s.creator, s.grain, s.period, s.orders
    ), act AS (
        SELECT up.grain, up.period, count(*) AS n
        FROM up JOIN c ON c.creator = up.creator AND c.grain = up.grain AND c.period = up.period
        WHERE c.orders > 0 AND up.orders = c.orders
        GROUP BY 1, 2
    ), p AS (
        SELECT g.grain, tipcast_stats_period(g.grain, e.at) AS period, sum(e.gross)::bigint AS gross,
               sum(e.fee)::bigint AS fees, sum(e.agency)::bigint AS agency, sum(e.net)::bigint AS creator_net,
               sum(e.refund)::bigint AS refunds, sum(e.recharge)::bigint AS recharges,
               sum(e.count)::bigint AS gifts, sum(e.orders)::bigint AS orders
        FROM ledger_stats_ev e, g
        GROUP BY 1, 2
    )
    INSERT INTO stats_platform AS s (grain, period, gross, fees, agency, creator_net, refunds, recharges, gifts,
                                     orders, active_creators)
    SELECT p.*, coalesce(act.n, 0) FROM p LEFT JOIN act ON act.grain = p.grain AND act.period = p.period
    ORDER BY p.grain, p.period
    ON CONFLICT (grain, period) DO UPDATE
    SET gross = s.gross + EXCLUDED.gross, fees = s.fees + EXCLUDED.fees, agency = s.agency + EXCLUDED.agency,
        creator_net = s.creator_net + EXCLUDED.creator_net, refunds = s.refunds + EXCLUDED.refunds,
        recharges = s.recharges + EXCLUDED.recharges, gifts = s.gifts + EXCLUDED.gifts,
        orders = s.orders + EXCLUDED.orders, active_creators = s.active_creators + EXCLUDED.active_creators;

    INSERT INTO stats_gift AS s (grain, period, gift_id, count, coins)
    SELECT g.grain, tipcast_stats_period(g.grain, e.at), e.gift_id, sum(e.count)::bigint, sum(e.gross)::bigint
    FROM ledger_stats_ev e, (VALUES ('h'::"char"), ('d'), ('m')) g (grain)
    WHERE e.kind = 'gift'
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (grain, period, gift_id) DO UPDATE SET count = s.count + EXCLUDED.count,
                                                       coins = s.coins + EXCLUDED.coins;

    INSERT INTO stats_supporter AS s (creator, supporter, coins, refunded, orders, last_at)
    SELECT creator, supporter, sum(gross)::bigint, sum(refund)::bigint, sum(orders)::bigint,
           max(at) FILTER (WHERE orders > 0)
    FROM ledger_stats_ev WHERE creator IS NOT NULL AND supporter IS NOT NULL
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (creator, supporter) DO UPDATE
    SET coins = s.coins + EXCLUDED.coins, refunded = s.refunded + EXCLUDED.refunded,
        orders = s.orders + EXCLUDED.orders, last_at = greatest(s.last_at, EXCLUDED.last_at);

    INSERT INTO stats_creator_gift AS s (creator, gift_id, count, coins)
    SELECT creator, gift_id, sum(count)::bigint, sum(gross)::bigint
    FROM ledger_stats_ev WHERE kind = 'gift'
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (creator, gift_id) DO UPDATE SET count = s.count + EXCLUDED.count, coins = s.coins + EXCLUDED.coins;
END;
$$;

-- ---- Backfill ----------------------------------------------------------------------------------

-- Rebuilds the rollups of the UTC months that [t_from, t_to) touches from
-- orders and ledger (for the data written before this migration, and for
-- a repair). Whole months, because the day and month rows and their
-- distinct counts of active creators need every order of their period.
-- NULL means unbounded. Idempotent: the periods' rows are replaced. The
-- supporter and creator gift totals have no period: they are rebuilt from
-- every order when both bounds are NULL (the whole history), and left
-- alone otherwise.
-- The stats tables are locked against writes for the call (the ledger
-- consumer's batches wait for it), so the rebuild is one consistent cut.
-- Returns the number of orders read.
CREATE FUNCTION tipcast_stats_backfill(t_from timestamptz, t_to timestamptz) RETURNS bigint
LANGUAGE plpgsql SET work_mem = '256MB' AS $$
DECLARE
    lo timestamptz := tipcast_stats_period('m', coalesce(t_from, '-infinity'));
    hi timestamptz := tipcast_stats_period('m', coalesce(t_to, 'infinity') - interval '1 microsecond')
                      + interval '1 month';
    n bigint;
BEGIN
    IF t_from >= t_to THEN
        RAISE EXCEPTION 'tipcast_stats_backfill: t_from must be before t_to';
    END IF;
    LOCK TABLE stats_creator, stats_platform, stats_gift, stats_supporter, stats_creator_gift
        IN SHARE ROW EXCLUSIVE MODE;

    DELETE FROM stats_creator WHERE period >= lo AND period < hi;
    DELETE FROM stats_platform WHERE period >= lo AND period < hi;
    DELETE FROM stats_gift WHERE period >= lo AND period < hi;

    CREATE TEMP TABLE stats_bf ON COMMIT DROP AS
    SELECT o.kind, o.created_at AS at, o.creator, o.sender AS supporter,
           CASE WHEN o.kind = 'gift' THEN coalesce(o.gift_id, 0) END AS gift_id,
           CASE WHEN o.kind = 'gift' THEN o.count ELSE 0 END::bigint AS count, o.amount AS gross,
           o.platform_fee AS fee, o.agency_share AS agency, o.creator_net AS net, 0::bigint AS refund,
           0::bigint AS recharge, 1::bigint AS orders
    FROM orders o WHERE o.created_at >= lo AND o.created_at < hi
    UNION ALL
    SELECT min(l.kind), min(l.created_at),
           min(substr(l.account, 9)) FILTER (WHERE l.account LIKE 'creator:%'),
           min(substr(l.account, 6)) FILTER (WHERE l.account LIKE 'user:%'), NULL, 0, 0,
           coalesce(sum(l.delta) FILTER (WHERE l.account = 'platform' AND l.kind = 'refund'), 0),
           coalesce(sum(l.delta) FILTER (WHERE l.account LIKE 'agency:%' AND l.kind = 'refund'), 0),
           coalesce(sum(l.delta) FILTER (WHERE l.account LIKE 'creator:%' AND l.kind = 'refund'), 0),
           coalesce(sum(l.delta) FILTER (WHERE l.account LIKE 'user:%' AND l.kind = 'refund'), 0),
           coalesce(sum(l.delta) FILTER (WHERE l.account LIKE 'user:%' AND l.kind = 'recharge'), 0), 0
    FROM ledger l
    WHERE l.kind IN ('refund', 'recharge') AND l.created_at >= lo AND l.created_at < hi
    GROUP BY l.movement_id;
    ANALYZE stats_bf;
    -- Every insert below is in its table's key order: the b-tree pages are
    -- then filled one after the other (in random order, the creator rows
    -- alone took five times as long).

    INSERT INTO stats_creator (creator, grain, period, gross, net, orders, refunds)
    SELECT e.creator, g.grain, tipcast_stats_period(g.grain, e.at), sum(e.gross), sum(e.net), sum(e.orders),
           sum(e.refund)
    FROM stats_bf e, (VALUES ('h'::"char"), ('d'), ('m')) g (grain) WHERE e.creator IS NOT NULL
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

    INSERT INTO stats_platform (grain, period, gross, fees, agency, creator_net, refunds, recharges, gifts, orders,
                                active_creators)
    SELECT p.grain, p.period, p.gross, p.fees, p.agency, p.net, p.refunds, p.recharges, p.gifts, p.orders,
           coalesce(a.n, 0)
    FROM (SELECT g.grain, tipcast_stats_period(g.grain, e.at) AS period, sum(e.gross) AS gross, sum(e.fee) AS fees,
                 sum(e.agency) AS agency, sum(e.net) AS net, sum(e.refund) AS refunds, sum(e.recharge) AS recharges,
                 sum(e.count) AS gifts, sum(e.orders) AS orders
          FROM stats_bf e, (VALUES ('h'::"char"), ('d'), ('m')) g (grain)
          GROUP BY 1, 2) p
    LEFT JOIN (SELECT grain, period, count(*) AS n FROM stats_creator
               WHERE period >= lo AND period < hi AND orders > 0 GROUP BY 1, 2) a
           ON a.grain = p.grain AND a.period = p.period;

    INSERT INTO stats_gift (grain, period, gift_id, count, coins)
    SELECT g.grain, tipcast_stats_period(g.grain, e.at), e.gift_id, sum(e.count), sum(e.gross)
    FROM stats_bf e, (VALUES ('h'::"char"), ('d'), ('m')) g (grain) WHERE e.kind = 'gift'
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

    IF t_from IS NULL AND t_to IS NULL THEN
        DELETE FROM stats_supporter;
        DELETE FROM stats_creator_gift;
        INSERT INTO stats_supporter (creator, supporter, coins, refunded, orders, last_at)
        SELECT creator, supporter, sum(gross), sum(refund), sum(orders), max(at) FILTER (WHERE orders > 0)
        FROM stats_bf WHERE creator IS NOT NULL AND supporter IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2;
        INSERT INTO stats_creator_gift (creator, gift_id, count, coins)
        SELECT creator, gift_id, sum(count), sum(gross) FROM stats_bf WHERE kind = 'gift' GROUP BY 1, 2 ORDER BY 1, 2;
    END IF;

    SELECT count(*) INTO n FROM stats_bf WHERE orders > 0;
    DROP TABLE stats_bf;
    RETURN n;
END;
$$;

-- ---- The stats routes (docs/admin-api.md, "Stats") ---------------------------------------------

-- ?granularity=hour|day|month (default day), ?from=, ?to= (times or dates;
-- to is exclusive, default now; from defaults to 24 hours, 30 days or 12
-- months before to's period ends). The periods answered are those that
-- begin before `to` and end after `from`: p_from is the first one's start,
-- p_to the last one's end, n their number, at most 744 hours, 366 days or
-- 120 months (more is bad_field from).
CREATE FUNCTION tipcast_stats_args(ctx jsonb, OUT grain "char", OUT unit interval, OUT p_from timestamptz,
                                   OUT p_to timestamptz, OUT n int)
LANGUAGE plpgsql AS $$
DECLARE
    g text := coalesce(tipcast_arg_enum(ctx, 'granularity', ARRAY['hour', 'day', 'month']), 'day');
    t_from timestamptz := tipcast_arg_time(ctx, 'from', 'query');
    t_to timestamptz := coalesce(tipcast_arg_time(ctx, 'to', 'query'), now());
    n_max int := CASE g WHEN 'hour' THEN 744 WHEN 'day' THEN 366 ELSE 120 END;
    n_dflt int := CASE g WHEN 'hour' THEN 24 WHEN 'day' THEN 30 ELSE 12 END;
    span numeric;
BEGIN
    IF t_from >= t_to THEN
        PERFORM tipcast_bad('from', 'from must be before to');
    END IF;
    grain := left(g, 1)::"char";
    unit := ('1 ' || g)::interval;
    p_to := tipcast_stats_period(grain, t_to - interval '1 microsecond') + unit;
    p_from := tipcast_stats_period(grain, coalesce(t_from, p_to - n_dflt * unit));
    -- UTC hours and days have fixed lengths; months are counted.
    IF grain = 'm' THEN
        span := (extract(year FROM p_to AT TIME ZONE 'UTC') - extract(year FROM p_from AT TIME ZONE 'UTC')) * 12
                + extract(month FROM p_to AT TIME ZONE 'UTC') - extract(month FROM p_from AT TIME ZONE 'UTC');
    ELSE
        span := extract(epoch FROM p_to - p_from) / extract(epoch FROM unit);
    END IF;
    IF span > n_max THEN
        PERFORM tipcast_bad('from', format('from..to spans %s %ss: at most %s', round(span), g, n_max));
    END IF;
    n := span::int;
END;
$$;

-- ?top= the length of the top lists (1..100, default 10).
CREATE FUNCTION tipcast_stats_top(ctx jsonb) RETURNS int
LANGUAGE sql AS $$ SELECT coalesce(tipcast_arg_int(ctx, 'top', 1, 100, 'query', false), 10)::int; $$;

-- The hot gifts of [p_from, p_to) (periods of grain), by count, then
-- coins: the whole days (or months) inside the range from the coarser
-- rows, the hours (or days) at its edges from the finer ones, so that a
-- month of hours reads about 31 days of rows rather than 744 hours.
CREATE FUNCTION tipcast_stats_hot(grain "char", p_from timestamptz, p_to timestamptz, top int)
RETURNS TABLE (gift_id int, count bigint, coins bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    up "char" := CASE grain WHEN 'h' THEN 'd' WHEN 'd' THEN 'm' END;
    c_lo timestamptz := p_to;
    c_hi timestamptz := p_to;
BEGIN
    IF up IS NOT NULL THEN
        c_lo := tipcast_stats_period(up, p_from);
        IF c_lo < p_from THEN
            c_lo := c_lo + CASE up WHEN 'd' THEN interval '1 day' ELSE interval '1 month' END;
        END IF;
        c_hi := tipcast_stats_period(up, p_to);
        IF c_hi <= c_lo THEN
            c_lo := p_to;
            c_hi := p_to;
        END IF;
    END IF;
    RETURN QUERY
    SELECT s.gift_id, sum(s.count)::bigint, sum(s.coins)::bigint
    FROM (SELECT g.gift_id, g.count, g.coins FROM stats_gift g
          WHERE g.grain = up AND g.period >= c_lo AND g.period < c_hi
          UNION ALL
          SELECT g.gift_id, g.count, g.coins FROM stats_gift g
          WHERE g.grain = tipcast_stats_hot.grain AND g.period >= p_from AND g.period < c_lo
          UNION ALL
          SELECT g.gift_id, g.count, g.coins FROM stats_gift g
          WHERE g.grain = tipcast_stats_hot.grain AND g.period >= c_hi AND g.period < p_to) s
    GROUP BY s.gift_id
    ORDER BY 2 DESC, 3 DESC, 1
    LIMIT top;
END;
$$;

-- GET /api/v1/stats/platform: the platform's series and the hot gifts of
-- the range. The stats routes return json, not jsonb: a series of 744
-- objects costs four times as much to build as jsonb, and tipcastd reads
-- the answer as text either way.
CREATE FUNCTION tipcast_api_stats_platform(ctx jsonb) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    a record := tipcast_stats_args(ctx);
    top int := tipcast_stats_top(ctx);
BEGIN
    RETURN json_build_object('status', 200, 'body', json_build_object(
        'granularity', CASE a.grain WHEN 'h' THEN 'hour' WHEN 'd' THEN 'day' ELSE 'month' END,
        'from', tipcast_ts(a.p_from), 'to', tipcast_ts(a.p_to),
        'items', (
            SELECT coalesce(json_agg(r), '[]') FROM (
                SELECT to_char(t.period AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS period,
                       coalesce(s.gross, 0) AS gross, coalesce(s.fees, 0) AS fees, coalesce(s.agency, 0) AS agency,
                       coalesce(s.creator_net, 0) AS creator_net, coalesce(s.refunds, 0) AS refunds,
                       coalesce(s.recharges, 0) AS recharges, coalesce(s.gifts, 0) AS gifts,
                       coalesce(s.orders, 0) AS orders, coalesce(s.active_creators, 0) AS active_creators
                FROM generate_series(a.p_from, a.p_to - a.unit, a.unit) AS t (period)
                LEFT JOIN stats_platform s ON s.grain = a.grain AND s.period = t.period
                ORDER BY t.period) r),
        'hot_gifts', (
            SELECT coalesce(json_agg(r), '[]') FROM (
                SELECT h.gift_id, gf.name, h.count, h.coins
                FROM tipcast_stats_hot(a.grain, a.p_from, a.p_to, top) h LEFT JOIN gifts gf ON gf.id = h.gift_id
                ORDER BY h.count DESC, h.coins DESC, h.gift_id) r)));
END;
$$;

-- GET /api/v1/creators/{id}/stats: the creator's income series for the
-- range, and since the beginning its top supporters (by coins net of
-- refunds) and the gifts it received (by count).
CREATE FUNCTION tipcast_api_creator_stats(ctx jsonb) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    cid text := tipcast_path_id(ctx);
    a record := tipcast_stats_args(ctx);
    top int := tipcast_stats_top(ctx);
BEGIN
    PERFORM tipcast_check_own(ctx, cid);
    RETURN json_build_object('status', 200, 'body', json_build_object(
        'creator', cid,
        'granularity', CASE a.grain WHEN 'h' THEN 'hour' WHEN 'd' THEN 'day' ELSE 'month' END,
        'from', tipcast_ts(a.p_from), 'to', tipcast_ts(a.p_to),
        'items', (
            SELECT coalesce(json_agg(r), '[]') FROM (
                SELECT to_char(t.period AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS period,
                       coalesce(s.gross, 0) AS gross, coalesce(s.net, 0) AS net, coalesce(s.orders, 0) AS orders,
                       coalesce(s.refunds, 0) AS refunds
                FROM generate_series(a.p_from, a.p_to - a.unit, a.unit) AS t (period)
                LEFT JOIN stats_creator s ON s.creator = cid AND s.grain = a.grain AND s.period = t.period
                ORDER BY t.period) r),
        'top_supporters', (
            SELECT coalesce(json_agg(r), '[]') FROM (
                SELECT s.supporter AS "user", s.coins, s.refunded, s.coins - s.refunded AS net, s.orders,
                       tipcast_ts(s.last_at) AS last_at
                FROM stats_supporter s WHERE s.creator = cid
                ORDER BY s.coins - s.refunded DESC, s.supporter LIMIT top) r),
        'gifts', (
            SELECT coalesce(json_agg(r), '[]') FROM (
                SELECT g.gift_id, gf.name, g.count, g.coins
                FROM stats_creator_gift g LEFT JOIN gifts gf ON gf.id = g.gift_id WHERE g.creator = cid
                ORDER BY g.count DESC, g.coins DESC, g.gift_id LIMIT top) r)));
END;
$$;
