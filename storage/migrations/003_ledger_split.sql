-- 003_ledger_split: what the ledger consumer (storage/ledger_txn.c) does
-- with one batch of outbox entries, in its one transaction: orders with
-- their revenue split, credits, recharges and refunds.
--
-- tipcastd sends each batch as:
--   SELECT tipcast_ledger_staging();         the per-connection staging tables
--   COPY ledger_in_orders / ledger_in_moves / ledger_in_ext FROM STDIN;
--   SELECT * FROM tipcast_ledger_apply(webhooks);
-- The staging tables are temporary (one set per connection, emptied at
-- every commit), so batches of several consumers never see each other's.
--
-- Exactly once in effect: the batch may be a replay (a crash between COMMIT
-- and XACK). A replayed order hits orders' primary key and moves nothing; a
-- replayed credit, recharge or refund hits ledger's UNIQUE (movement_id,
-- account), and a recharge's or refund's state moves only from the state
-- before it (paid -> credited, pending -> credited), which gates its
-- balances and webhooks.
--
-- Locks: every ledger transaction takes its creators' rows in one global
-- order (creator_month_volume by creator and month, then creator_balances by
-- creator, then creator_earnings by creator), so two ledger consumers
-- writing orders of the same creators cannot deadlock.

-- The UTC month an order counts in (revenue_rule_tiers, creator_month_volume).
CREATE FUNCTION tipcast_utc_month(t timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT date_trunc('month', t AT TIME ZONE 'UTC')::date;
$$;

-- Creates the staging tables on this connection when missing (checked
-- first rather than IF NOT EXISTS, which would send a notice per batch).
--   ledger_in_orders  gifts and tips, one row per entry (orders' columns)
--   ledger_in_moves   credits: their two ledger rows each, as written
--   ledger_in_ext     recharges and refunds: order_id is the entry's
--                     "<shard>-<stream id>", ref its x (recharge or refund id)
--   ledger_new        the orders this batch actually inserted, with their split
CREATE FUNCTION tipcast_ledger_staging() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('pg_temp.ledger_in_orders') IS NULL THEN
        CREATE TEMP TABLE ledger_in_orders (order_id text, kind text, sender text, room text, creator text,
            gift_id int, gift_name text, count int, unit_price bigint, amount bigint, combo text, message text,
            request_id text, sender_balance bigint, created_at timestamptz) ON COMMIT DELETE ROWS;
    END IF;
    IF to_regclass('pg_temp.ledger_in_moves') IS NULL THEN
        CREATE TEMP TABLE ledger_in_moves (movement_id text, account text, delta bigint, kind text, note text,
            created_at timestamptz) ON COMMIT DELETE ROWS;
    END IF;
    IF to_regclass('pg_temp.ledger_in_ext') IS NULL THEN
        CREATE TEMP TABLE ledger_in_ext (order_id text, kind text, user_id text, amount bigint, ref text,
            room text, order_ts timestamptz, created_at timestamptz) ON COMMIT DELETE ROWS;
    END IF;
    IF to_regclass('pg_temp.ledger_new') IS NULL THEN
        CREATE TEMP TABLE ledger_new (order_id text, kind text, sender text, room text, creator text,
            amount bigint, created_at timestamptz, platform_fee bigint, agency_id text, agency_share bigint,
            creator_net bigint) ON COMMIT DELETE ROWS;
    END IF;
END;
$$;

-- Applies the staged batch (see the top of this file). webhooks: queue the
-- order.succeeded, recharge.credited and order.refunded webhooks (a
-- webhook-url is set). Returns the counts of what was new: orders inserted,
-- credit movements, recharges and refunds applied.
--
-- Orders: the rule in force at the order's time (latest effective_at <=
-- created_at; none: no fee, no agency share, rule_id NULL); the fee tier by
-- the creator's volume of the order's UTC month before it (PostgreSQL's
-- volume before the batch plus the earlier new orders of the batch, by
-- created_at then order_id); the agency of the creator; the split by
-- tipcast_split. Ledger rows per order: user -amount, creator +net, agency
-- +share and platform +fee when > 0: they sum to zero.
CREATE FUNCTION tipcast_ledger_apply(webhooks boolean, OUT new_orders bigint, OUT new_credits bigint,
                                     OUT new_recharges bigint, OUT new_refunds bigint)
LANGUAGE plpgsql AS $$
BEGIN
    -- The orders' creator months, locked (and made) first, in order: the
    -- volumes read below are then the latest committed, and the tier of an
    -- order does not depend on a race with another ledger consumer. (A
    -- replayed order's month is locked too: cheaper than finding it out.)
    INSERT INTO creator_month_volume AS v (creator, month, volume)
    SELECT DISTINCT creator, tipcast_utc_month(created_at), 0::bigint FROM ledger_in_orders
    ORDER BY 1, 2
    ON CONFLICT (creator, month) DO UPDATE SET volume = v.volume;

    -- With refunds, every creator balance the batch may change is locked
    -- next, in order: the orders' balances and the refunds' are written by
    -- two statements, which would otherwise take them in two orders.
    IF EXISTS (SELECT 1 FROM ledger_in_ext WHERE kind = 'refund') THEN
        INSERT INTO creator_balances AS cb (creator)
        SELECT c FROM (
            SELECT creator AS c FROM ledger_in_orders
            UNION
            SELECT f.creator FROM ledger_in_ext e JOIN refunds f ON f.id = e.ref
            WHERE e.kind = 'refund' AND f.state = 'pending') x
        ORDER BY c
        ON CONFLICT (creator) DO UPDATE SET creator = cb.creator;
    END IF;

    -- ---- Orders ----
    WITH staged AS (
        SELECT DISTINCT ON (s.order_id) s.*, tipcast_utc_month(s.created_at) AS month
        FROM ledger_in_orders s
        WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = s.order_id)
        ORDER BY s.order_id
    ), vol AS (
        SELECT s.*, coalesce(v.volume, 0)
                    + coalesce(sum(s.amount) OVER (PARTITION BY s.creator, s.month ORDER BY s.created_at, s.order_id
                                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                    AS volume_before
        FROM staged s LEFT JOIN creator_month_volume v ON v.creator = s.creator AND v.month = s.month
    ), ruled AS (
        SELECT x.*, r.id AS rule_id, c.agency_id, coalesce(t.platform_fee_bp, 0) AS fee_bp,
               -- The admin API refuses a rule whose fee and share pass 100 %; a
               -- rule written by hand that does gets its share cut to what is
               -- left, rather than an order that can never be stored blocking
               -- the stream.
               least(coalesce(r.agency_share_bp, 0), 10000 - coalesce(t.platform_fee_bp, 0)) AS agency_bp
        FROM vol x
        LEFT JOIN LATERAL (SELECT id, agency_share_bp FROM revenue_rules
                           WHERE effective_at <= x.created_at ORDER BY effective_at DESC LIMIT 1) r ON true
        LEFT JOIN LATERAL (SELECT platform_fee_bp FROM revenue_rule_tiers
                           WHERE rule_id = r.id AND min_volume <= x.volume_before
                           ORDER BY min_volume DESC LIMIT 1) t ON true
        LEFT JOIN creators c ON c.id = x.creator
    ), terms AS MATERIALIZED (
        -- tipcast_split once per distinct amount and terms, not per order: a
        -- function call per row would halve the ledger's rate, and gifts
        -- come in few distinct amounts (the catalog's prices).
        SELECT d.*, p.platform_fee, p.agency_share, p.creator_net
        FROM (SELECT DISTINCT amount, fee_bp, agency_bp, agency_id IS NOT NULL AS has_agency FROM ruled) d,
             tipcast_split(d.amount, d.fee_bp, d.agency_bp, d.has_agency) p
    ), split AS (
        SELECT x.*, p.platform_fee, p.agency_share, p.creator_net
        FROM ruled x JOIN terms p ON p.amount = x.amount AND p.fee_bp = x.fee_bp AND p.agency_bp = x.agency_bp
                                     AND p.has_agency = (x.agency_id IS NOT NULL)
    ), ins AS (
        -- Plain INSERT: the replays are filtered out above (staged), and
        -- ON CONFLICT would cost a third more per row. Should another
        -- consumer write one of these orders meanwhile (a lease changing
        -- hands mid-batch), the unique key fails this transaction and the
        -- batch is read again, then filtered.
        INSERT INTO orders (order_id, kind, sender, room, creator, gift_id, gift_name, count, unit_price, amount,
                            combo, message, request_id, sender_balance, created_at, rule_id, month_volume_before,
                            platform_fee, agency_id, agency_share, creator_net)
        SELECT order_id, kind, sender, room, creator, gift_id, gift_name, count, unit_price, amount, combo,
               message, request_id, sender_balance, created_at, rule_id, volume_before, platform_fee, agency_id,
               agency_share, creator_net
        FROM split
        RETURNING order_id, kind, sender, room, creator, amount, created_at, platform_fee, agency_id, agency_share,
                  creator_net
    )
    INSERT INTO ledger_new SELECT * FROM ins;
    GET DIAGNOSTICS new_orders = ROW_COUNT;

    IF new_orders > 0 THEN
        -- No ON CONFLICT (it costs a third more per row): these orders were
        -- inserted just now, so no row of theirs can exist yet.
        INSERT INTO ledger (movement_id, account, delta, kind, created_at)
        SELECT n.order_id, m.account, m.delta, n.kind, n.created_at
        FROM ledger_new n,
             LATERAL (VALUES ('user:' || n.sender, -n.amount, true),
                             ('creator:' || n.creator, n.creator_net, true),
                             ('agency:' || n.agency_id, n.agency_share, false),
                             ('platform', n.platform_fee, false)) m (account, delta, always)
        WHERE m.always OR m.delta > 0;

        INSERT INTO creator_month_volume AS v (creator, month, volume)
        SELECT creator, tipcast_utc_month(created_at), sum(amount)::bigint FROM ledger_new GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (creator, month) DO UPDATE SET volume = v.volume + EXCLUDED.volume;

        INSERT INTO creator_balances AS cb (creator, pending, updated_at)
        SELECT creator, sum(creator_net)::bigint, now() FROM ledger_new GROUP BY creator ORDER BY creator
        ON CONFLICT (creator) DO UPDATE SET pending = cb.pending + EXCLUDED.pending, updated_at = EXCLUDED.updated_at;

        INSERT INTO creator_earnings AS ce (creator, total, orders, updated_at)
        SELECT creator, sum(amount)::bigint, count(*), now() FROM ledger_new GROUP BY creator ORDER BY creator
        ON CONFLICT (creator) DO UPDATE SET total = ce.total + EXCLUDED.total, orders = ce.orders + EXCLUDED.orders,
                                            updated_at = EXCLUDED.updated_at;

        IF webhooks THEN
            PERFORM tipcast_webhook_enqueue(true, 'order.succeeded', 'order.succeeded:' || order_id,
                        jsonb_build_object('order_id', order_id, 'sender', sender, 'creator', creator, 'room', room,
                                           'amount', amount, 'creator_net', creator_net, 'created_at', created_at))
            FROM ledger_new ORDER BY order_id;
        END IF;
    END IF;

    -- ---- Credits (an admin's grant: user +A, platform -A, as written) ----
    WITH ins AS (
        INSERT INTO ledger (movement_id, account, delta, kind, note, created_at)
        SELECT movement_id, account, delta, kind, note, created_at FROM ledger_in_moves
        ON CONFLICT (movement_id, account) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) / 2 INTO new_credits FROM ins;

    -- ---- Recharges: user +A, platform -A under movement 'recharge:<id>' ----
    -- The entry is what the wallet did, so its user and amount make the
    -- rows (the ledger must match the Redis balances); a recharges row that
    -- disagrees, or is not paid, is an alert, not a reason to stall. The
    -- note is the entry's order id: another entry with the same id is a
    -- second credit in Redis (an idempotency key lost), also an alert.
    WITH ext AS (
        SELECT DISTINCT ON (ref) * FROM ledger_in_ext WHERE kind = 'recharge' ORDER BY ref, order_id
    ), moved AS (
        INSERT INTO ledger (movement_id, account, delta, kind, note, created_at)
        SELECT 'recharge:' || e.ref, m.account, m.delta, 'recharge', e.order_id, e.created_at
        FROM ext e, LATERAL (VALUES ('user:' || e.user_id, e.amount), ('platform', -e.amount)) m (account, delta)
        ON CONFLICT (movement_id, account) DO NOTHING
        RETURNING movement_id
    ), credited AS (
        UPDATE recharges r SET state = 'credited', credited_at = now()
        FROM ext e
        WHERE r.id = e.ref AND r.state = 'paid'
        RETURNING r.id, r.user_id, r.coins, e.amount, e.order_id
    ), hooks AS (
        SELECT tipcast_webhook_enqueue(true, 'recharge.credited', 'recharge.credited:' || c.id,
                   jsonb_build_object('recharge_id', c.id, 'user', c.user_id, 'coins', c.amount))
        FROM credited c WHERE webhooks
    ), alerted AS (
        INSERT INTO alerts (kind, severity, subject, detail)
        SELECT 'ledger.recharge_mismatch', 'critical', e.ref,
               jsonb_build_object('entry', e.order_id, 'user', e.user_id, 'amount', e.amount,
                                  'recharge_user', r.user_id, 'recharge_coins', r.coins, 'recharge_state', r.state)
        FROM ext e LEFT JOIN recharges r ON r.id = e.ref
        WHERE e.ref || '' IN (SELECT substr(movement_id, 10) FROM moved)
          AND (r.id IS NULL OR r.user_id <> e.user_id OR r.coins <> e.amount
               OR NOT EXISTS (SELECT 1 FROM credited c WHERE c.id = e.ref))
        UNION ALL
        SELECT 'ledger.external_twice', 'critical', e.ref,
               jsonb_build_object('entry', e.order_id, 'first', l.note, 'user', e.user_id, 'amount', e.amount)
        FROM ext e JOIN ledger l ON l.movement_id = 'recharge:' || e.ref AND l.account = 'platform'
        WHERE l.note <> e.order_id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM moved) / 2 + 0 * (SELECT count(*) FROM hooks) + 0 * (SELECT count(*) FROM alerted)
    INTO new_recharges;

    -- ---- Refunds: the split reversal fixed by the settlement API ----
    -- Rows under movement 'refund:<id>': user +amount, creator -net, agency
    -- -share and platform -fee when > 0. The refund's state pending ->
    -- credited gates the balance and the webhook. An entry whose refunds
    -- row does not exist cannot be split: it is set aside in outbox_rejects.
    WITH ext AS (
        SELECT DISTINCT ON (ref) * FROM ledger_in_ext WHERE kind = 'refund' ORDER BY ref, order_id
    ), moved AS (
        INSERT INTO ledger (movement_id, account, delta, kind, note, created_at)
        SELECT 'refund:' || f.id, m.account, m.delta, 'refund', e.order_id, e.created_at
        FROM ext e JOIN refunds f ON f.id = e.ref,
             LATERAL (VALUES ('user:' || f.user_id, f.amount, true),
                             ('creator:' || f.creator, -f.creator_net, true),
                             ('agency:' || f.agency_id, -f.agency_share, false),
                             ('platform', -f.platform_fee, false)) m (account, delta, always)
        WHERE m.always OR m.delta < 0
        ON CONFLICT (movement_id, account) DO NOTHING
        RETURNING movement_id
    ), credited AS (
        UPDATE refunds f SET state = 'credited', credited_at = now()
        FROM ext e
        WHERE f.id = e.ref AND f.state = 'pending'
        RETURNING f.*
    ), balances AS (
        UPDATE creator_balances cb
        SET pending = cb.pending - d.pending, available = cb.available - d.available, updated_at = now()
        FROM (SELECT creator, sum(CASE WHEN settled THEN 0 ELSE creator_net END)::bigint AS pending,
                     sum(CASE WHEN settled THEN creator_net ELSE 0 END)::bigint AS available
              FROM credited GROUP BY creator) d
        WHERE cb.creator = d.creator
        RETURNING 1
    ), hooks AS (
        SELECT tipcast_webhook_enqueue(true, 'order.refunded', 'order.refunded:' || c.id,
                   jsonb_build_object('refund_id', c.id, 'order_id', c.order_id, 'user', c.user_id,
                                      'creator', c.creator, 'amount', c.amount, 'platform_fee', c.platform_fee,
                                      'agency_share', c.agency_share, 'creator_net', c.creator_net))
        FROM credited c WHERE webhooks
    ), rejected AS (
        INSERT INTO outbox_rejects (order_id, reason, entry)
        SELECT e.order_id, 'refund ' || e.ref || ' unknown',
               convert_to(format(E'k=refund\nu=%s\na=%s\nx=%s\nr=%s\n', e.user_id, e.amount, e.ref, e.room), 'UTF8')
        FROM ext e WHERE NOT EXISTS (SELECT 1 FROM refunds f WHERE f.id = e.ref)
        ON CONFLICT (order_id) DO NOTHING
        RETURNING 1
    ), alerted AS (
        INSERT INTO alerts (kind, severity, subject, detail)
        SELECT 'ledger.refund_mismatch', 'critical', e.ref,
               jsonb_build_object('entry', e.order_id, 'user', e.user_id, 'amount', e.amount,
                                  'refund_user', f.user_id, 'refund_amount', f.amount)
        FROM ext e JOIN refunds f ON f.id = e.ref
        WHERE (f.user_id <> e.user_id OR f.amount <> e.amount)
          AND EXISTS (SELECT 1 FROM credited c WHERE c.id = e.ref)
        UNION ALL
        SELECT 'ledger.external_twice', 'critical', e.ref,
               jsonb_build_object('entry', e.order_id, 'first', l.note, 'user', e.user_id, 'amount', e.amount)
        FROM ext e JOIN ledger l ON l.movement_id = 'refund:' || e.ref AND l.account LIKE 'user:%'
        WHERE l.note <> e.order_id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM credited) + 0 * (SELECT count(*) FROM moved) + 0 * (SELECT count(*) FROM balances)
           + 0 * (SELECT count(*) FROM hooks) + 0 * (SELECT count(*) FROM rejected)
           + 0 * (SELECT count(*) FROM alerted)
    INTO new_refunds;
END;
$$;
