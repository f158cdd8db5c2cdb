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
CREATE FUNCTION m016_start(oldest timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(greatest(date_trunc('month', coalesce(oldest, now()) AT TIME ZONE 'UTC'),
                            date_trunc('month', now() AT TIME ZONE 'UTC') - interval '3 years'),
                   'YYYY-MM-DD') || ' 00:00:00+00';
$$;

-- ---- The swap ---------------------------------------------------------------------

-- Each table is swapped for a partitioned one in two steps around its keys:
-- m016_swap saves what hangs on the table and would go with it (its
-- triggers, the functions that take its row type, the sequence one of its
-- columns owns), drops those functions, moves the old table and its indexes
-- aside, and makes the new partitioned table with the same columns,
-- defaults and checks; the keys and indexes are made next, by name; then
-- m016_fill makes the partitions, copies the rows (the triggers are not
-- back yet: rows are copied as they are, hashes and all), drops the old
-- table and makes again what was saved. Both helpers go at the end.
CREATE TEMP TABLE m016_saved (tab text, def text);

CREATE FUNCTION m016_swap(tab text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    x record;
BEGIN
    INSERT INTO m016_saved
    SELECT tab, pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = tab::regclass AND NOT t.tgisinternal;
    FOR x IN SELECT p.oid::regprocedure AS f, pg_get_functiondef(p.oid) AS def FROM pg_proc p
             WHERE tab::regtype::oid = ANY (p.proargtypes) LOOP
        INSERT INTO m016_saved VALUES (tab, x.def);
        EXECUTE format('DROP FUNCTION %s', x.f);
    END LOOP;
    FOR x IN SELECT s.oid::regclass AS seq, a.attname FROM pg_depend d
             JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
             WHERE d.refobjid = tab::regclass AND d.deptype = 'a' LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNED BY NONE', x.seq);
        INSERT INTO m016_saved VALUES (tab, format('ALTER SEQUENCE %s OWNED BY %I.%I', x.seq, tab, x.attname));
    END LOOP;
    FOR x IN SELECT i.indexrelid::regclass AS idx, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = tab::regclass LOOP
        EXECUTE format('ALTER INDEX %s RENAME TO %I', x.idx, left(x.relname, 50) || '_unpart');
    END LOOP;
    EXECUTE format('ALTER TABLE %I RENAME TO %I', tab, tab || '_unpartitioned');
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (created_at)',
                   tab, tab || '_unpartitioned');
END;
$$;

CREATE FUNCTION m016_fill(tab text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    oldest timestamptz;
    def text;
BEGIN
    EXECUTE format('SELECT min(created_at) FROM %I WHERE created_at <= now() + interval ''4 months''',
                   tab || '_unpartitioned') INTO oldest;
    PERFORM partman.create_parent('public.' || tab, 'created_at', 'native', 'monthly', p_premake := 4,
                                  p_start_partition := m016_start(oldest));
    -- Partitions keep being made four months ahead of now: even while
    -- nothing is written (pg_partman would otherwise wait for rows in the
    -- newest one), and whatever the default partition holds (rows dated
    -- years ahead would otherwise make pg_partman create every month up to
    -- them). Its first maintenance here, so that tipcastd's first upkeep
    -- finds nothing to make.
    UPDATE partman.part_config SET infinite_time_partitions = true, ignore_default_data = true
    WHERE parent_table = 'public.' || tab;
    PERFORM partman.run_maintenance('public.' || tab, p_analyze := false, p_jobmon := false);
    EXECUTE format('INSERT INTO %I SELECT * FROM %I', tab, tab || '_unpartitioned');
    EXECUTE format('DROP TABLE %I', tab || '_unpartitioned');
    FOR def IN SELECT s.def FROM m016_saved s WHERE s.tab = m016_fill.tab LOOP
        EXECUTE def;
    END LOOP;
END;
$$;

-- ---- orders ----------------------------------------------------------------------

ALTER TABLE refunds DROP CONSTRAINT refunds_order_id_fkey;
SELECT m016_swap('orders');
ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (order_id, created_at);
CREATE INDEX orders_created_brin ON orders USING brin (created_at);
CREATE INDEX orders_creator_created ON orders (creator, created_at);
CREATE INDEX orders_sender_created ON orders (sender, created_at);
CREATE INDEX orders_unsettled ON orders (creator, created_at) WHERE settlement_id IS NULL;
SELECT m016_fill('orders');

-- ---- ledger ----------------------------------------------------------------------

SELECT m016_swap('ledger');
ALTER TABLE ledger ADD CONSTRAINT ledger_pkey PRIMARY KEY (id, created_at);
ALTER TABLE ledger ADD CONSTRAINT ledger_chain_seq UNIQUE (chain, seq, created_at);
CREATE INDEX ledger_account ON ledger (account, id);
CREATE INDEX ledger_entry ON ledger (entry) WHERE entry IS NOT NULL;
CREATE UNIQUE INDEX ledger_movement_account ON ledger (movement_id, account, created_at)
    WHERE kind NOT IN ('gift', 'tip');
-- (Its triggers, 001's, 006's and 012's, come back on the partitioned
-- table: they reach every partition, those made later too.)
SELECT m016_fill('ledger');

DROP FUNCTION m016_swap(text);
DROP FUNCTION m016_fill(text);
DROP FUNCTION m016_start(timestamptz);
DROP TABLE m016_saved;

-- ---- The ledger consumer's batch --------------------------------------------------

-- tipcast_ledger_apply (006) on partitioned tables. Every statement that
-- names orders or ledger locks all their partitions and opens their indexes
-- when it starts, even where it reads one partition: with 42 partitions (three
-- years) a batch of 100 gifts took 19 ms instead of 12 before the changes
-- below, and 10.6 ms against 10.6 after them (scripts/ledger_batch_bench.sh;
-- docs/benchmarks.md, section 10). So here:
--   - it asks whether the ledger has an order or a credit already with the
--     entry's created_at as well as its id (a replay carries the same
--     created_at), and each lookup is pruned to one partition; recharges and
--     refunds keep their lookups by reference alone, since a second entry
--     for the same reference, with another created_at, must still be found;
--   - the credits', recharges' and refunds' statements run only when the
--     batch has any (a batch of gifts alone no longer touches the ledger
--     three more times).
-- The function is 006's with those changes, made from its own text so that
-- nothing else of it is copied; the migration fails if a piece is not found.
DO $$
DECLARE
    patched text := pg_get_functiondef('tipcast_ledger_apply(boolean)'::regprocedure);
    swaps text[] := ARRAY[
        'WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = s.order_id)',
        'WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = s.order_id AND o.created_at = s.created_at)',

        'WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.movement_id = m.movement_id AND l.account = m.account',
        'WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.movement_id = m.movement_id AND l.account = m.account '
            || 'AND l.created_at = m.created_at',

        '    -- ---- Credits: their rows as written, the ones the ledger lacks ----',
        '    new_credits := 0;' || E'\n' || '    IF EXISTS (SELECT 1 FROM ledger_in_moves) THEN' || E'\n'
            || '    -- ---- Credits: their rows as written, the ones the ledger lacks ----',

        '    SELECT count(*) / 2 INTO new_credits FROM ins;',
        '    SELECT count(*) / 2 INTO new_credits FROM ins;' || E'\n' || '    END IF;',

        '    -- ---- Recharges (003''s rules) ----',
        '    new_recharges := 0;' || E'\n'
            || '    IF EXISTS (SELECT 1 FROM ledger_in_ext WHERE kind = ''recharge'') THEN' || E'\n'
            || '    -- ---- Recharges (003''s rules) ----',

        '    INTO new_recharges;',
        '    INTO new_recharges;' || E'\n' || '    END IF;',

        '    -- ---- Refunds (003''s rules) ----',
        '    new_refunds := 0;' || E'\n'
            || '    IF EXISTS (SELECT 1 FROM ledger_in_ext WHERE kind = ''refund'') THEN' || E'\n'
            || '    -- ---- Refunds (003''s rules) ----',

        '    INTO new_refunds;',
        '    INTO new_refunds;' || E'\n' || '    END IF;'];
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

-- tipcastd's daily upkeep (settlement/anchor.c, with the anchors): pg_partman
-- makes the months that came within reach. Every node calls it; pg_partman
-- runs one maintenance at a time (an advisory lock) and a second call finds
-- nothing to make. Making a partition locks the tables it joins, against
-- readers and the ledger's batches that hold the other table: so it waits
-- at most 200 ms for a lock (deadlock detection, after a second, would
-- otherwise abort whichever transaction it picks) and, when it cannot have
-- one or fails otherwise, gives up with the reason under "skipped"
-- (tipcastd logs it as a warning and calls again a minute later; four
-- months are made ahead, so a late one costs nothing). Returns
-- {table: {partitions, first, last, default_rows}, ["skipped": reason]}.
CREATE FUNCTION tipcast_partitions_upkeep() RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    out jsonb := '{}';
    parts bigint;
    first_p text;
    last_p text;
    dflt bigint;
    was text := current_setting('lock_timeout');
BEGIN
    BEGIN
        PERFORM set_config('lock_timeout', '200ms', true);
        PERFORM partman.run_maintenance('public.orders', p_analyze := false, p_jobmon := false);
        PERFORM partman.run_maintenance('public.ledger', p_analyze := false, p_jobmon := false);
    EXCEPTION WHEN OTHERS THEN
        out := jsonb_build_object('skipped', split_part(SQLERRM, E'\n', 1));
    END;
    PERFORM set_config('lock_timeout', was, true);
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