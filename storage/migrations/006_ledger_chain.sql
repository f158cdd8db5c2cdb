-- 006_ledger_chain: the tamper-evident ledger (docs/settlement.md, "Tamper-evident ledger").
--
-- Every ledger row belongs to one hash chain and has a place in it:
--   chain  k (0 <= k < outbox-shards): the rows the ledger consumer writes
--          for the entries of outbox shard k, in the order it writes them;
--          -1: the rows written by SQL functions (settlement API: paid
--          withdrawals, ...) and every row that existed before 006.
--   seq    1, 2, 3, ... within the chain, without gaps.
--   hash   SHA-256(previous row's hash || content), the first row of a chain
--          taking 32 zero bytes as its previous hash.
--   entry  the outbox entry's order id "<shard>-<stream id>" of a row the
--          consumer wrote; NULL for the rows of SQL functions.
-- content is the row's fields chain, seq, movement_id, account, delta, kind,
-- note, created_at, entry, in this order, each written as
--   "<length>:<bytes>"   length: the field's UTF-8 byte count in decimal;
--   "~"                  the field is NULL;
-- where integers (chain, seq, delta) are their decimal text ("-1", "42") and
-- created_at is its integer microseconds since 1970-01-01 00:00:00 UTC in
-- decimal. The length prefix makes every boundary unambiguous: no text can
-- forge the start of the next field. settlement/verify.c computes the same
-- bytes in C; an auditor can recompute them from a plain SELECT.
--
-- ledger_chains holds each chain's head (its last seq and hash; 0 and 32
-- zero bytes when empty), updated in the transaction that adds the rows:
-- deleting a chain's tail then leaves a head that names a missing row, and
-- deleting the head as well is what the daily anchors (ledger_anchors, kept
-- outside the database too: the ledger.anchored webhook) catch.

-- ---- The canonical content and the chain aggregate ----------------------------

-- The lengths are UTF-8 byte counts (octet_length in the database's
-- encoding): a database in another encoding would chain other bytes than
-- the verifier reads.
DO $$
BEGIN
    IF current_setting('server_encoding') <> 'UTF8' THEN
        RAISE EXCEPTION 'the ledger chain needs a UTF8 database, this one is %', current_setting('server_encoding');
    END IF;
END;
$$;

-- One field of the content (see above). Both functions are STABLE, as
-- convert_to and extract on a timestamptz are: a function declared more
-- stable than its body is not inlined, and costs a plan per row.
CREATE FUNCTION tipcast_ledger_field(v text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL THEN '~' ELSE octet_length(v) || ':' || v END;
$$;

-- The canonical content of a row, as bytes.
CREATE FUNCTION tipcast_ledger_content(chain int, seq bigint, movement_id text, account text, delta bigint,
                                       kind text, note text, created_at timestamptz, entry text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT convert_to(tipcast_ledger_field(chain::text) || tipcast_ledger_field(seq::text)
                      || tipcast_ledger_field(movement_id) || tipcast_ledger_field(account)
                      || tipcast_ledger_field(delta::text) || tipcast_ledger_field(kind)
                      || tipcast_ledger_field(note)
                      || tipcast_ledger_field((extract(epoch FROM created_at) * 1000000)::bigint::text)
                      || tipcast_ledger_field(entry), 'UTF8');
$$;

-- The chain's running hash: state = sha256(state || content), the state
-- starting at `prev` (the chain head's hash before the batch). Used as a
-- window aggregate over a chain's new rows in seq order. (PL/pgSQL: a
-- state function in SQL is not inlined and costs some 60 times more per
-- row.)
CREATE FUNCTION tipcast_ledger_chain_step(state bytea, content bytea, prev bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN sha256(coalesce(state, prev) || content);
END;
$$;

CREATE AGGREGATE tipcast_ledger_chain(content bytea, prev bytea) (
    SFUNC = tipcast_ledger_chain_step,
    STYPE = bytea
);

-- ---- Columns, heads, anchors ---------------------------------------------------

ALTER TABLE ledger ADD COLUMN chain int, ADD COLUMN seq bigint, ADD COLUMN hash bytea, ADD COLUMN entry text;

CREATE TABLE ledger_chains (
    chain       int PRIMARY KEY,
    seq         bigint NOT NULL,
    hash        bytea NOT NULL CHECK (octet_length(hash) = 32),
    updated_at  timestamptz
);

CREATE TABLE ledger_anchors (
    day          date NOT NULL,
    chain        int NOT NULL,
    seq          bigint NOT NULL,
    hash         bytea NOT NULL,
    anchored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, chain)
);

-- The rows before 006 become chain -1 in id order (the one UPDATE the
-- ledger ever gets: its append-only trigger is off for it).
ALTER TABLE ledger DISABLE TRIGGER ledger_no_update_delete;
WITH numbered AS (
    SELECT l.*, row_number() OVER (ORDER BY id) AS n FROM ledger l
), hashed AS (
    SELECT id, n, tipcast_ledger_chain(tipcast_ledger_content(-1, n, movement_id, account, delta, kind, note,
                                                              created_at, NULL),
                                       '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
                  OVER (ORDER BY n ROWS UNBOUNDED PRECEDING) AS h
    FROM numbered
)
UPDATE ledger l SET chain = -1, seq = x.n, hash = x.h FROM hashed x WHERE l.id = x.id;
ALTER TABLE ledger ENABLE TRIGGER ledger_no_update_delete;

INSERT INTO ledger_chains (chain, seq, hash, updated_at)
SELECT -1, coalesce(max(seq), 0),
       coalesce((SELECT hash FROM ledger WHERE chain = -1 ORDER BY seq DESC LIMIT 1),
                '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea), now()
FROM ledger WHERE chain = -1;

ALTER TABLE ledger
    ALTER COLUMN chain SET NOT NULL,
    ALTER COLUMN seq SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL,
    ADD CONSTRAINT ledger_chain_seq UNIQUE (chain, seq),
    ADD CONSTRAINT ledger_hash_len CHECK (octet_length(hash) = 32);
CREATE INDEX ledger_entry ON ledger (entry) WHERE entry IS NOT NULL;

-- Rows inserted without a hash (the SQL functions' own INSERT INTO ledger,
-- unchanged) are chained into chain -1 here, one by one under chain -1's
-- head lock. The ledger consumer's rows come hashed and skip this.
CREATE FUNCTION tipcast_ledger_chain_row() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head ledger_chains;
BEGIN
    SELECT * INTO head FROM ledger_chains WHERE chain = -1 FOR UPDATE;
    NEW.chain := -1;
    NEW.seq := head.seq + 1;
    NEW.entry := NULL;
    NEW.hash := sha256(head.hash || tipcast_ledger_content(-1, NEW.seq, NEW.movement_id, NEW.account, NEW.delta,
                                                           NEW.kind, NEW.note, NEW.created_at, NULL));
    UPDATE ledger_chains SET seq = NEW.seq, hash = NEW.hash, updated_at = now() WHERE chain = -1;
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledger_chain_row
    BEFORE INSERT ON ledger
    FOR EACH ROW WHEN (NEW.hash IS NULL) EXECUTE FUNCTION tipcast_ledger_chain_row();

-- ---- Orders: where the money came from ------------------------------------------

-- ip: the client's address, device: its device id (entry fields ip, dv;
-- NULL when the entry did not carry them).
ALTER TABLE orders ADD COLUMN ip inet, ADD COLUMN device text;

-- ---- Anchors and the stats hook -----------------------------------------------------

-- Anchors every chain's current head for `day` (a chain already anchored
-- that day keeps its first anchor). Returns that day's anchors, all of them.
CREATE FUNCTION tipcast_ledger_anchor(day date) RETURNS SETOF ledger_anchors
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO ledger_anchors (day, chain, seq, hash)
    SELECT tipcast_ledger_anchor.day, c.chain, c.seq, c.hash FROM ledger_chains c ORDER BY c.chain
    ON CONFLICT DO NOTHING;
    RETURN QUERY SELECT a.* FROM ledger_anchors a
                 WHERE a.day = tipcast_ledger_anchor.day ORDER BY a.chain;
END;
$$;

-- Called by tipcast_ledger_apply at the end of a batch that added anything,
-- with ledger_new and ledger_out in sight. Empty here; 009 replaces it.
CREATE FUNCTION tipcast_ledger_stats() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
END;
$$;

-- ---- The ledger consumer's batch --------------------------------------------------

-- As 003's, plus: ledger_in_orders.ip, device; ledger_new.gift_id, count;
-- ledger_out (every ledger row of the batch, before it is chained). A
-- connection whose tables predate 006 (no ledger_out) has them all made
-- again.
CREATE OR REPLACE FUNCTION tipcast_ledger_staging() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('pg_temp.ledger_out') IS NOT NULL THEN
        RETURN;
    END IF;
    -- (Checked one by one: DROP IF EXISTS would send a notice.)
    IF to_regclass('pg_temp.ledger_in_orders') IS NOT NULL THEN
        DROP TABLE pg_temp.ledger_in_orders;
    END IF;
    IF to_regclass('pg_temp.ledger_in_moves') IS NOT NULL THEN
        DROP TABLE pg_temp.ledger_in_moves;
    END IF;
    IF to_regclass('pg_temp.ledger_in_ext') IS NOT NULL THEN
        DROP TABLE pg_temp.ledger_in_ext;
    END IF;
    IF to_regclass('pg_temp.ledger_new') IS NOT NULL THEN
        DROP TABLE pg_temp.ledger_new;
    END IF;
    CREATE TEMP TABLE ledger_in_orders (order_id text, kind text, sender text, room text, creator text,
        gift_id int, gift_name text, count int, unit_price bigint, amount bigint, combo text, message text,
        request_id text, sender_balance bigint, created_at timestamptz, ip inet, device text) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE ledger_in_moves (movement_id text, account text, delta bigint, kind text, note text,
        created_at timestamptz) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE ledger_in_ext (order_id text, kind text, user_id text, amount bigint, ref text,
        room text, order_ts timestamptz, created_at timestamptz) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE ledger_new (order_id text, kind text, sender text, room text, creator text,
        amount bigint, created_at timestamptz, platform_fee bigint, agency_id text, agency_share bigint,
        creator_net bigint, gift_id int, count int) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE ledger_out (movement_id text, account text, delta bigint, kind text, note text,
        created_at timestamptz, entry text, chain int) ON COMMIT DELETE ROWS;
END;
$$;

-- 003's function with the same arguments, counts and exactly-once rules;
-- what changed is only how the ledger rows are written: each part of the
-- batch puts its rows into ledger_out (filtering the (movement, account)
-- rows the ledger already has where 003 had ON CONFLICT DO NOTHING), and
-- one INSERT at the end chains them all: chain = the entry's shard, seq =
-- the head's seq + the row's place in the batch (entries in stream order,
-- numerically, then a movement's rows by account), hash by the running aggregate from the
-- head's hash; then the heads move. The heads are locked last, in chain
-- order, after every other lock of the batch: two consumers never wait for
-- each other's heads while holding one.
CREATE OR REPLACE FUNCTION tipcast_ledger_apply(webhooks boolean, OUT new_orders bigint, OUT new_credits bigint,
                                                OUT new_recharges bigint, OUT new_refunds bigint)
LANGUAGE plpgsql AS $$
BEGIN
    -- 003: the orders' creator months locked (and made) first, in order.
    INSERT INTO creator_month_volume AS v (creator, month, volume)
    SELECT DISTINCT creator, tipcast_utc_month(created_at), 0::bigint FROM ledger_in_orders
    ORDER BY 1, 2
    ON CONFLICT (creator, month) DO UPDATE SET volume = v.volume;

    -- 003: with refunds, every creator balance the batch may change is locked next, in order.
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

    -- ---- Orders (003's split, unchanged) ----
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
               least(coalesce(r.agency_share_bp, 0), 10000 - coalesce(t.platform_fee_bp, 0)) AS agency_bp
        FROM vol x
        LEFT JOIN LATERAL (SELECT id, agency_share_bp FROM revenue_rules
                           WHERE effective_at <= x.created_at ORDER BY effective_at DESC LIMIT 1) r ON true
        LEFT JOIN LATERAL (SELECT platform_fee_bp FROM revenue_rule_tiers
                           WHERE rule_id = r.id AND min_volume <= x.volume_before
                           ORDER BY min_volume DESC LIMIT 1) t ON true
        LEFT JOIN creators c ON c.id = x.creator
    ), terms AS MATERIALIZED (
        SELECT d.*, p.platform_fee, p.agency_share, p.creator_net
        FROM (SELECT DISTINCT amount, fee_bp, agency_bp, agency_id IS NOT NULL AS has_agency FROM ruled) d,
             tipcast_split(d.amount, d.fee_bp, d.agency_bp, d.has_agency) p
    ), split AS (
        SELECT x.*, p.platform_fee, p.agency_share, p.creator_net
        FROM ruled x JOIN terms p ON p.amount = x.amount AND p.fee_bp = x.fee_bp AND p.agency_bp = x.agency_bp
                                     AND p.has_agency = (x.agency_id IS NOT NULL)
    ), ins AS (
        INSERT INTO orders (order_id, kind, sender, room, creator, gift_id, gift_name, count, unit_price, amount,
                            combo, message, request_id, sender_balance, created_at, rule_id, month_volume_before,
                            platform_fee, agency_id, agency_share, creator_net, ip, device)
        SELECT order_id, kind, sender, room, creator, gift_id, gift_name, count, unit_price, amount, combo,
               message, request_id, sender_balance, created_at, rule_id, volume_before, platform_fee, agency_id,
               agency_share, creator_net, ip, device
        FROM split
        RETURNING order_id, kind, sender, room, creator, amount, created_at, platform_fee, agency_id, agency_share,
                  creator_net, gift_id, count
    )
    INSERT INTO ledger_new SELECT * FROM ins;
    GET DIAGNOSTICS new_orders = ROW_COUNT;

    IF new_orders > 0 THEN
        -- Inserted just now: no row of these orders can exist yet.
        INSERT INTO ledger_out (movement_id, account, delta, kind, note, created_at, entry, chain)
        SELECT n.order_id, m.account, m.delta, n.kind, NULL, n.created_at, n.order_id,
               split_part(n.order_id, '-', 1)::int
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

    -- ---- Credits: their rows as written, the ones the ledger lacks ----
    -- (movement_id is the entry's order id: COPYed so by storage/ledger_sql.c.)
    WITH ins AS (
        INSERT INTO ledger_out (movement_id, account, delta, kind, note, created_at, entry, chain)
        SELECT DISTINCT ON (m.movement_id, m.account) m.movement_id, m.account, m.delta, m.kind, m.note,
               m.created_at, m.movement_id, split_part(m.movement_id, '-', 1)::int
        FROM ledger_in_moves m
        WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.movement_id = m.movement_id AND l.account = m.account
                                                   AND l.kind NOT IN ('gift', 'tip'))
        ORDER BY m.movement_id, m.account
        RETURNING 1
    )
    SELECT count(*) / 2 INTO new_credits FROM ins;

    -- ---- Recharges (003's rules) ----
    WITH ext AS (
        SELECT DISTINCT ON (ref) * FROM ledger_in_ext WHERE kind = 'recharge' ORDER BY ref, order_id
    ), moved AS (
        INSERT INTO ledger_out (movement_id, account, delta, kind, note, created_at, entry, chain)
        SELECT 'recharge:' || e.ref, m.account, m.delta, 'recharge', e.order_id, e.created_at, e.order_id,
               split_part(e.order_id, '-', 1)::int
        FROM ext e, LATERAL (VALUES ('user:' || e.user_id, e.amount), ('platform', -e.amount)) m (account, delta)
        WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.movement_id = 'recharge:' || e.ref AND l.account = m.account
                                                   AND l.kind NOT IN ('gift', 'tip'))
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

    -- ---- Refunds (003's rules) ----
    WITH ext AS (
        SELECT DISTINCT ON (ref) * FROM ledger_in_ext WHERE kind = 'refund' ORDER BY ref, order_id
    ), moved AS (
        INSERT INTO ledger_out (movement_id, account, delta, kind, note, created_at, entry, chain)
        SELECT 'refund:' || f.id, m.account, m.delta, 'refund', e.order_id, e.created_at, e.order_id,
               split_part(e.order_id, '-', 1)::int
        FROM ext e JOIN refunds f ON f.id = e.ref,
             LATERAL (VALUES ('user:' || f.user_id, f.amount, true),
                             ('creator:' || f.creator, -f.creator_net, true),
                             ('agency:' || f.agency_id, -f.agency_share, false),
                             ('platform', -f.platform_fee, false)) m (account, delta, always)
        WHERE (m.always OR m.delta < 0)
          AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.movement_id = 'refund:' || f.id AND l.account = m.account
                                                   AND l.kind NOT IN ('gift', 'tip'))
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

    -- ---- The chained INSERT ----
    IF EXISTS (SELECT 1 FROM ledger_out) THEN
        -- A chain's first rows make its head; then the heads are locked in
        -- chain order, and read afresh by the next statement.
        INSERT INTO ledger_chains (chain, seq, hash, updated_at)
        SELECT DISTINCT chain, 0::bigint,
               '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, now()
        FROM ledger_out o
        WHERE NOT EXISTS (SELECT 1 FROM ledger_chains c WHERE c.chain = o.chain)
        ORDER BY chain
        ON CONFLICT (chain) DO NOTHING;
        PERFORM 1 FROM ledger_chains WHERE chain IN (SELECT DISTINCT chain FROM ledger_out) ORDER BY chain FOR UPDATE;

        WITH numbered AS (
            SELECT o.*, h.hash AS prev,
                   h.seq + row_number() OVER (PARTITION BY o.chain
                                              ORDER BY length(split_part(o.entry, '-', 2)),
                                                       split_part(o.entry, '-', 2) COLLATE "C",
                                                       length(split_part(o.entry, '-', 3)),
                                                       split_part(o.entry, '-', 3) COLLATE "C",
                                                       o.movement_id COLLATE "C", o.account COLLATE "C") AS seq
            FROM ledger_out o JOIN ledger_chains h ON h.chain = o.chain
        ), hashed AS (
            SELECT n.*, tipcast_ledger_chain(tipcast_ledger_content(n.chain, n.seq, n.movement_id, n.account, n.delta,
                                                                    n.kind, n.note, n.created_at, n.entry), n.prev)
                            OVER (PARTITION BY n.chain ORDER BY n.seq ROWS UNBOUNDED PRECEDING) AS hash
            FROM numbered n
        ), ins AS (
            -- Plain INSERT: a row another consumer wrote meanwhile fails
            -- ledger's unique keys, and the batch is read again.
            INSERT INTO ledger (movement_id, account, delta, kind, note, created_at, chain, seq, hash, entry)
            SELECT movement_id, account, delta, kind, note, created_at, chain, seq, hash, entry FROM hashed
            RETURNING chain, seq, hash
        )
        UPDATE ledger_chains c SET seq = t.seq, hash = t.hash, updated_at = now()
        FROM (SELECT DISTINCT ON (chain) chain, seq, hash FROM ins ORDER BY chain, seq DESC) t
        WHERE c.chain = t.chain;
    END IF;

    -- (A refund whose rows an earlier batch wrote may move its state, and
    -- balances, without adding a row: that counts as something added too.)
    IF new_orders + new_credits + new_recharges + new_refunds > 0 OR EXISTS (SELECT 1 FROM ledger_out) THEN
        PERFORM tipcast_ledger_stats();
    END IF;
END;
$$;
