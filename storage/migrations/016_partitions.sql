-- 016_partitions: orders and ledger become tables partitioned by month of
-- created_at, with the partitions made ahead by pg_partman (Debian's
-- postgresql-15-partman; CREATE EXTENSION needs a role that may create it,
-- docs/operations.md "PostgreSQL partitions").
--
-- Keys. A partitioned table's unique keys must hold its partition column, so
--   orders   PRIMARY KEY (order_id, created_at)           was (order_id)
--   ledger   PRIMARY KEY (id, created_at)                 was (id)
--            UNIQUE (chain, seq, created_at)              was (chain, seq)
--            UNIQUE (movement_id, account, created_at)    was (movement_id, account)
--              WHERE kind NOT IN ('gift', 'tip')
--   refunds  no foreign key to orders                     was (order_id)
-- and the exactly-once rule stays whole: created_at is the outbox entry's
-- own time (storage/ledger_sql.c copies it from the entry), so a replayed
-- entry carries the same created_at as its first delivery and meets the same
-- key in the same partition; and the ledger consumer looks an order or a
-- credit up by order_id / (movement_id, account) across every partition
-- before it writes (tipcast_ledger_apply, 006), as it did before.
-- A refund is made only for an order it finds and locks (tipcast_api_order_refund,
-- 004); its key to orders is gone so that a month of orders can be archived
-- while their refunds stay (017_archive.sql).
--
-- Partitions: one per UTC month, named orders_pYYYYMM / ledger_pYYYYMM
-- (pg_partman's monthly names), made from the month of the oldest row (at
-- most three years back) to four months ahead, plus a default partition
-- (orders_default, ledger_default) for rows of any other month, so that no
-- insert ever fails for want of a partition. tipcastd keeps four months
-- ahead: tipcast_partitions_upkeep() below, called at start and daily with
-- the ledger's anchors (settlement/anchor.c).

CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;

-- The month pg_partman starts a table at: its oldest row's, at most three
-- years back (older rows go to the default partition), and this month for
-- an empty table.
CREATE FUNCTION tipcast_partition_start(oldest timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(greatest(date_trunc('month', coalesce(oldest, now()) AT TIME ZONE 'UTC'),
                            date_trunc('month', now() AT TIME ZONE 'UTC') - interval '3 years'),
                   'YYYY-MM-DD') || ' 00:00:00+00';
$$;

-- ---- orders ----------------------------------------------------------------------

ALTER TABLE refunds DROP CONSTRAINT refunds_order_id_fkey;
-- Its argument is the table's row type: made again below for the new table.
DROP FUNCTION tipcast_order_json(orders);

CREATE TABLE orders_by_month (LIKE orders INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (created_at);
ALTER TABLE orders RENAME TO orders_unpartitioned;
ALTER TABLE orders_by_month RENAME TO orders;

ALTER TABLE orders ADD PRIMARY KEY (order_id, created_at);
CREATE INDEX orders_created_brin_m ON orders USING brin (created_at);
CREATE INDEX orders_creator_created_m ON orders (creator, created_at);
CREATE INDEX orders_sender_created_m ON orders (sender, created_at);
CREATE INDEX orders_unsettled_m ON orders (creator, created_at) WHERE settlement_id IS NULL;

SELECT partman.create_parent('public.orders', 'created_at', 'native', 'monthly', p_premake := 4,
                             p_start_partition := tipcast_partition_start(
                                 (SELECT min(created_at) FROM orders_unpartitioned
                                  WHERE created_at <= now() + interval '4 months')));
INSERT INTO orders SELECT * FROM orders_unpartitioned;
DROP TABLE orders_unpartitioned;
ALTER INDEX orders_created_brin_m RENAME TO orders_created_brin;
ALTER INDEX orders_creator_created_m RENAME TO orders_creator_created;
ALTER INDEX orders_sender_created_m RENAME TO orders_sender_created;
ALTER INDEX orders_unsettled_m RENAME TO orders_unsettled;

-- As 004 made it.
CREATE FUNCTION tipcast_order_json(o orders) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('order_id', o.order_id, 'kind', o.kind, 'sender', o.sender, 'room', o.room,
        'creator', o.creator, 'gift_id', o.gift_id, 'count', o.count, 'amount', o.amount,
        'created_at', tipcast_ts(o.created_at), 'state', o.state, 'refunded', o.refunded,
        'split', jsonb_build_object('rule_id', o.rule_id, 'month_volume_before', o.month_volume_before,
                                    'platform_fee', o.platform_fee, 'agency_id', o.agency_id,
                                    'agency_share', o.agency_share, 'creator_net', o.creator_net),
        'refunds', coalesce((SELECT jsonb_agg(tipcast_refund_json(f) ORDER BY f.created_at, f.id)
                             FROM refunds f WHERE f.order_id = o.order_id), '[]'::jsonb));
$$;

-- ---- ledger ----------------------------------------------------------------------

ALTER SEQUENCE ledger_id_seq OWNED BY NONE;
CREATE TABLE ledger_by_month (LIKE ledger INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (created_at);
ALTER TABLE ledger RENAME TO ledger_unpartitioned;
ALTER TABLE ledger_by_month RENAME TO ledger;
ALTER SEQUENCE ledger_id_seq OWNED BY ledger.id;

ALTER TABLE ledger ADD PRIMARY KEY (id, created_at);
ALTER TABLE ledger ADD CONSTRAINT ledger_chain_seq_m UNIQUE (chain, seq, created_at);
CREATE INDEX ledger_account_m ON ledger (account, id);
CREATE INDEX ledger_entry_m ON ledger (entry) WHERE entry IS NOT NULL;
CREATE UNIQUE INDEX ledger_movement_account_m ON ledger (movement_id, account, created_at)
    WHERE kind NOT IN ('gift', 'tip');

SELECT partman.create_parent('public.ledger', 'created_at', 'native', 'monthly', p_premake := 4,
                             p_start_partition := tipcast_partition_start(
                                 (SELECT min(created_at) FROM ledger_unpartitioned
                                  WHERE created_at <= now() + interval '4 months')));
-- Rows copied as they are, hashes and all: the triggers come after.
INSERT INTO ledger SELECT * FROM ledger_unpartitioned;
DROP TABLE ledger_unpartitioned;
ALTER TABLE ledger RENAME CONSTRAINT ledger_chain_seq_m TO ledger_chain_seq;
ALTER INDEX ledger_account_m RENAME TO ledger_account;
ALTER INDEX ledger_entry_m RENAME TO ledger_entry;
ALTER INDEX ledger_movement_account_m RENAME TO ledger_movement_account;

-- The ledger's triggers (001, 006, 012), on the partitioned table: they
-- reach every partition, those made later too.
CREATE TRIGGER ledger_no_update_delete
    BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION tipcast_ledger_append_only();
CREATE TRIGGER ledger_no_truncate
    BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION tipcast_ledger_append_only();
CREATE TRIGGER ledger_chain_row
    BEFORE INSERT ON ledger
    FOR EACH ROW WHEN (NEW.hash IS NULL) EXECUTE FUNCTION tipcast_ledger_chain_row();
CREATE TRIGGER ledger_campaigns AFTER INSERT ON ledger
    REFERENCING NEW TABLE AS campaign_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tipcast_campaign_ledger();

-- ---- The ledger consumer's lookups ------------------------------------------------

-- tipcast_ledger_apply (006) asks, for each order and credit of a batch,
-- whether the ledger has it already, by id alone: on partitioned tables that
-- is one index probe per partition (measured: +20% per batch with 42
-- partitions). The same question with the entry's created_at, which a
-- replay carries unchanged, is pruned to one partition. Recharges and
-- refunds keep their lookups by reference alone: a second entry for the
-- same reference (another created_at) must still be found. The function is
-- 006's with those two conditions extended, made here from its own text so
-- that nothing else of it is copied; it fails if either is not found.
DO $$
DECLARE
    def text := pg_get_functiondef('tipcast_ledger_apply(boolean)'::regprocedure);
    patched text := def;
    swaps text[] := ARRAY[
        'WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = s.order_id)',
        'WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = s.order_id AND o.created_at = s.created_at)',
        'WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.movement_id = m.movement_id AND l.account = m.account',
        'WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.movement_id = m.movement_id AND l.account = m.account '
            || 'AND l.created_at = m.created_at'];
    i int;
BEGIN
    FOR i IN 1 .. array_length(swaps, 1) BY 2 LOOP
        IF position(swaps[i] IN patched) = 0 THEN
            RAISE EXCEPTION '016: tipcast_ledger_apply has no "%"', swaps[i];
        END IF;
        patched := replace(patched, swaps[i], swaps[i + 1]);
    END LOOP;
    EXECUTE patched;
END;
$$;

-- ---- Upkeep ----------------------------------------------------------------------

-- Partitions keep being made four months ahead of now: even while nothing is
-- written (pg_partman would otherwise wait for rows in the newest one), and
-- whatever the default partition holds (rows dated years ahead would
-- otherwise make pg_partman create every month up to them).
UPDATE partman.part_config SET infinite_time_partitions = true, ignore_default_data = true
WHERE parent_table IN ('public.orders', 'public.ledger');

-- tipcastd's daily upkeep (settlement/anchor.c, with the anchors): pg_partman
-- makes the months that came within reach. Every node calls it; pg_partman
-- runs one maintenance at a time (an advisory lock) and a second call finds
-- nothing to make. Returns {table: {partitions, first, last, default_rows}}.
CREATE FUNCTION tipcast_partitions_upkeep() RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    out jsonb := '{}';
    parts bigint;
    first_p text;
    last_p text;
    dflt bigint;
BEGIN
    PERFORM partman.run_maintenance('public.orders', p_analyze := false, p_jobmon := false);
    PERFORM partman.run_maintenance('public.ledger', p_analyze := false, p_jobmon := false);
    FOREACH t IN ARRAY ARRAY['orders', 'ledger'] LOOP
        SELECT count(*), min(partition_tablename), max(partition_tablename)
        INTO parts, first_p, last_p
        FROM partman.show_partitions('public.' || t);
        EXECUTE format('SELECT count(*) FROM %I', t || '_default') INTO dflt;
        out := out || jsonb_build_object(t, jsonb_build_object('partitions', parts, 'first', first_p,
                                                               'last', last_p, 'default_rows', dflt));
    END LOOP;
    RETURN out;
END;
$$;
