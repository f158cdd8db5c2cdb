-- 017_archive: retention of orders and ledger, a month at a time.
--
-- A closed month's two partitions (orders_pYYYY_MM, ledger_pYYYY_MM, 016) are
-- written to an archive file and verified there by scripts/archive-month.sh
-- (docs/operations.md "Archiving a month"), then tipcast_archive_detach
-- removes them from the live database in one transaction, leaving behind
-- what keeps every check whole:
--   archived_months        the month, its counts, the file and its SHA-256;
--   ledger_archived_spans  per hash chain, each run of consecutive seqs that
--                          left, with its last hash: verify-ledger continues a
--                          chain across the run from that hash
--                          (settlement/verify.c);
--   archive_carry          what the archived rows added to each of
--                          reconciliation's sums, per check and subject, on
--                          the expected and the actual side: the wrapper
--                          below adds it back, so a reconciliation after an
--                          archive reports what it reported before.
-- Stats rollups of an archived month stay (they are the month's figures);
-- tipcast_stats_backfill no longer rebuilds them from the orders it lost.
--
-- A month can be archived when (tipcast_archive_plan):
--   - it ended before the start of last month (two whole months behind);
--   - it has its own partitions (rows of the default partition stay);
--   - every order of it is settled, and no refund of its orders is pending;
--   - every ledger movement with a row in it has all its rows in it, and
--     sums to zero; every order's rows equal its split.
-- Refunds stay in the live database (their orders may leave: 016 dropped
-- their key to orders). An order of an archived month is not found by the
-- admin API and cannot be refunded any more.

CREATE TABLE archived_months (
    month        date PRIMARY KEY,
    orders       bigint NOT NULL,
    ledger_rows  bigint NOT NULL,
    file         text NOT NULL,
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    actor        text NOT NULL,
    archived_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger_archived_spans (
    chain      int NOT NULL,
    first_seq  bigint NOT NULL,
    last_seq   bigint NOT NULL CHECK (last_seq >= first_seq),
    last_hash  bytea NOT NULL CHECK (octet_length(last_hash) = 32),
    month      date NOT NULL REFERENCES archived_months (month),
    PRIMARY KEY (chain, first_seq)
);

CREATE TABLE archive_carry (
    chk       text NOT NULL,
    kind      text NOT NULL,
    subject   text NOT NULL,
    expected  bigint NOT NULL DEFAULT 0,
    actual    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (chk, kind, subject)
);

-- The partitions of `month` (its first day) and whether it may leave.
-- Returns {month, orders_table, ledger_table, orders, ledger_rows}; raises
-- archive_refused with the reason otherwise.
CREATE FUNCTION tipcast_archive_plan(month date) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    suffix text := to_char(month, '"p"YYYY_MM');
    lo timestamptz := (month::timestamp AT TIME ZONE 'UTC');
    hi timestamptz := ((month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    o_tab text := 'orders_' || suffix;
    l_tab text := 'ledger_' || suffix;
    n_orders bigint;
    n_rows bigint;
    bad text;
BEGIN
    IF month IS NULL OR month <> date_trunc('month', month)::date THEN
        RAISE EXCEPTION 'archive_refused' USING DETAIL = format('%s is not the first day of a month', month);
    END IF;
    IF hi > date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 month' THEN
        RAISE EXCEPTION 'archive_refused'
            USING DETAIL = format('%s is too recent: a month can leave once two whole months have passed', month);
    END IF;
    IF EXISTS (SELECT 1 FROM archived_months a WHERE a.month = tipcast_archive_plan.month) THEN
        RAISE EXCEPTION 'archive_refused' USING DETAIL = format('%s is archived already', month);
    END IF;
    IF to_regclass(o_tab) IS NULL OR to_regclass(l_tab) IS NULL
       OR NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(o_tab) AND inhparent = 'orders'::regclass)
       OR NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(l_tab) AND inhparent = 'ledger'::regclass)
    THEN
        RAISE EXCEPTION 'archive_refused' USING DETAIL = format('%s has no partitions of its own', month);
    END IF;
    EXECUTE format('SELECT count(*) FROM %I', o_tab) INTO n_orders;
    EXECUTE format('SELECT count(*) FROM %I', l_tab) INTO n_rows;

    EXECUTE format('SELECT min(order_id) FROM %I WHERE settlement_id IS NULL', o_tab) INTO bad;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'archive_refused' USING DETAIL = format('order %s of %s is not settled', bad, month);
    END IF;
    SELECT min(f.id) INTO bad FROM refunds f
    WHERE f.state = 'pending' AND f.order_created_at >= lo AND f.order_created_at < hi;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'archive_refused' USING DETAIL = format('refund %s of an order of %s is pending', bad, month);
    END IF;
    EXECUTE format('SELECT min(x.movement_id) FROM (SELECT DISTINCT movement_id FROM %I) x '
                   'WHERE EXISTS (SELECT 1 FROM ledger l WHERE l.movement_id = x.movement_id '
                   '              AND (l.created_at < $1 OR l.created_at >= $2))', l_tab)
        INTO bad USING lo, hi;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'archive_refused' USING DETAIL = format('movement %s has rows outside %s', bad, month);
    END IF;
    EXECUTE format('SELECT movement_id FROM %I GROUP BY movement_id HAVING sum(delta) <> 0 ORDER BY 1 LIMIT 1',
                   l_tab) INTO bad;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'archive_refused' USING DETAIL = format('movement %s does not sum to zero', bad);
    END IF;
    EXECUTE format(
        'WITH want AS (SELECT o.order_id, m.account, m.delta FROM %I o, LATERAL (VALUES '
        '  (''user:'' || o.sender, -o.amount), (''creator:'' || o.creator, o.creator_net), '
        '  (''agency:'' || o.agency_id, o.agency_share), (''platform'', o.platform_fee)) m (account, delta) '
        '  WHERE m.delta <> 0), '
        'got AS (SELECT movement_id AS order_id, account, sum(delta)::bigint AS delta FROM %I '
        '  WHERE kind IN (''gift'', ''tip'') GROUP BY 1, 2) '
        'SELECT min(coalesce(w.order_id, g.order_id)) FROM want w FULL JOIN got g '
        '  ON g.order_id = w.order_id AND g.account = w.account WHERE coalesce(w.delta, 0) <> coalesce(g.delta, 0)',
        o_tab, l_tab) INTO bad;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'archive_refused' USING DETAIL = format('order %s''s ledger rows are not its split', bad);
    END IF;
    RETURN jsonb_build_object('month', month, 'orders_table', o_tab, 'ledger_table', l_tab, 'orders', n_orders,
                              'ledger_rows', n_rows);
END;
$$;

-- A partition's content in one checksum: its row count and the md5 of its
-- rows' text in order, so that scripts/archive-month.sh can compare the live
-- rows with the ones it restored from the file, and tipcast_archive_detach
-- that nothing changed since. (The text of a timestamptz depends on the
-- session's TimeZone and DateStyle: callers set UTC and ISO.)
CREATE FUNCTION tipcast_archive_digest(tab regclass) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    d text;
BEGIN
    EXECUTE format('SELECT count(*) || '':'' || coalesce(md5(string_agg(t::text, E''\n'' ORDER BY t::text)), '''') '
                   'FROM %s t', tab) INTO d;
    RETURN d;
END;
$$;

-- Removes `month` from the live database after its file was written and
-- checked: the plan again, and the partitions' digests must be the ones the
-- file was checked against (a row changed since refuses); then the chains'
-- spans, the carry, the record, and the two partitions detached and
-- dropped, in one transaction. Returns the plan with the file.
CREATE FUNCTION tipcast_archive_detach(month date, file text, sha256 text, orders_digest text, ledger_digest text,
                                       actor text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    plan jsonb;
    o_tab text;
    l_tab text;
BEGIN
    -- Nothing may write the month meanwhile: no row of the month arrives
    -- while the partitions are read and removed.
    LOCK TABLE orders, ledger IN SHARE ROW EXCLUSIVE MODE;
    plan := tipcast_archive_plan(month);
    o_tab := plan->>'orders_table';
    l_tab := plan->>'ledger_table';
    IF tipcast_archive_digest(o_tab::regclass) IS DISTINCT FROM orders_digest
       OR tipcast_archive_digest(l_tab::regclass) IS DISTINCT FROM ledger_digest THEN
        RAISE EXCEPTION 'archive_refused'
            USING DETAIL = format('the rows of %s changed since the file was checked: write it again', month);
    END IF;
    INSERT INTO archived_months (month, orders, ledger_rows, file, sha256, actor)
    VALUES (month, (plan->>'orders')::bigint, (plan->>'ledger_rows')::bigint, file, sha256, actor);

    -- Runs of consecutive seqs per chain (a chain's rows of the month may
    -- be interleaved with rows of another month near its ends).
    EXECUTE format(
        'INSERT INTO ledger_archived_spans (chain, first_seq, last_seq, last_hash, month) '
        'SELECT chain, min(seq), max(seq), (array_agg(hash ORDER BY seq DESC))[1], $1 '
        'FROM (SELECT chain, seq, hash, seq - row_number() OVER (PARTITION BY chain ORDER BY seq) AS run FROM %I) x '
        'GROUP BY chain, run', l_tab) USING month;

    -- What reconciliation (007, 012) summed from these rows, on its
    -- expected and actual sides, per check and subject.
    EXECUTE format(
        'WITH l AS (SELECT account, kind, sum(delta)::bigint AS coins FROM %1$I GROUP BY account, kind), '
        'acc AS (SELECT account, sum(coins)::bigint AS coins FROM l GROUP BY account), '
        'o AS (SELECT * FROM %2$I), '
        'c (chk, kind, subject, expected, actual) AS ('
        '  SELECT ''wallet'', ''balance'', account, coins, 0::bigint FROM acc WHERE account LIKE ''user:%%'' '
        '  UNION ALL SELECT ''accounts'', ''creator_balance'', account, coins, 0 FROM acc WHERE account LIKE ''creator:%%'' '
        '  UNION ALL SELECT ''accounts'', ''escrow'', account, 0, coins FROM acc WHERE account LIKE ''escrow:%%'' '
        '  UNION ALL SELECT ''accounts'', ''account'', account, 0, coins FROM acc '
        '            WHERE account LIKE ''creator:%%'' OR account LIKE ''agency:%%'' OR account IN (''platform'', ''payout'') '
        '  UNION ALL SELECT ''accounts'', ''account'', ''creator:'' || creator, sum(creator_net)::bigint, 0 FROM o GROUP BY creator '
        '  UNION ALL SELECT ''accounts'', ''account'', ''agency:'' || agency_id, sum(agency_share)::bigint, 0 FROM o '
        '            WHERE agency_share > 0 GROUP BY agency_id '
        '  UNION ALL SELECT ''accounts'', ''account'', ''platform'', sum(platform_fee)::bigint, 0 FROM o '
        '  UNION ALL SELECT ''accounts'', ''account'', ''platform'', coins, 0 FROM l WHERE kind = ''credit'' AND account = ''platform'' '
        '  UNION ALL SELECT ''boards'', ''score'', ''board:'' || room || '':'' || sender, sum(amount)::bigint, 0 FROM o GROUP BY room, sender '
        '  UNION ALL SELECT ''boards'', ''score'', ''board:'' || f.room || '':'' || f.user_id, -sum(f.amount)::bigint, 0 '
        '            FROM refunds f JOIN %1$I r ON r.movement_id = ''refund:'' || f.id AND r.account = ''user:'' || f.user_id '
        '            WHERE f.state = ''credited'' GROUP BY f.room, f.user_id) '
        'INSERT INTO archive_carry AS a (chk, kind, subject, expected, actual) '
        'SELECT chk, kind, subject, sum(expected)::bigint, sum(actual)::bigint FROM c WHERE subject IS NOT NULL '
        'GROUP BY chk, kind, subject '
        'ON CONFLICT (chk, kind, subject) DO UPDATE SET expected = a.expected + EXCLUDED.expected, '
        '                                               actual = a.actual + EXCLUDED.actual',
        l_tab, o_tab);

    -- The ledger's append-only triggers refuse row deletes, not a partition
    -- leaving whole: that is this function's job alone.
    EXECUTE format('ALTER TABLE orders DETACH PARTITION %I', o_tab);
    EXECUTE format('ALTER TABLE ledger DETACH PARTITION %I', l_tab);
    EXECUTE format('DROP TABLE %I, %I', o_tab, l_tab);
    RETURN plan || jsonb_build_object('file', file, 'sha256', sha256);
END;
$$;

-- ---- Reconciliation with the carry ------------------------------------------------

-- 012's check, wrapped as 012 wrapped 007's: each finding whose check,
-- kind and subject has a carry gets it added to both sides, and is dropped
-- when they then agree; a carry with no finding whose sides differ is one
-- (the live rows agreed, the archived ones did not).
ALTER FUNCTION tipcast_reconcile_check(bigint, boolean, timestamptz, timestamptz)
    RENAME TO tipcast_reconcile_check_012;

CREATE FUNCTION tipcast_reconcile_check(idle_ms bigint, statement boolean, st_from timestamptz,
                                        st_to timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    r jsonb := tipcast_reconcile_check_012(idle_ms, statement, st_from, st_to);
    out jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM archive_carry) THEN
        RETURN r;
    END IF;
    WITH f AS (
        SELECT x.f, x.n FROM jsonb_array_elements(r->'findings') WITH ORDINALITY AS x (f, n)
    ), joined AS (
        SELECT f.f, f.n, c.*
        FROM f FULL JOIN archive_carry c
          ON c.chk = f.f->>'check' AND c.kind = f.f->>'kind' AND c.subject = f.f->>'subject'
    ), redone AS (
        SELECT CASE WHEN j.chk IS NULL THEN j.f
                    WHEN j.f IS NULL THEN tipcast_rc_finding(j.chk, j.kind, j.subject, j.expected, j.actual,
                                                             '{"archived": "the archived months alone"}')
                    ELSE tipcast_rc_finding(j.chk, j.kind, j.subject,
                                            (j.f->>'expected')::bigint + j.expected,
                                            (j.f->>'actual')::bigint + j.actual,
                                            coalesce(j.f->'detail', '{}') || '{"archived": "archived months added"}')
               END AS f,
               coalesce(j.n, 2000000000) AS n, j.chk IS NOT NULL AS carried
        FROM joined j
    )
    SELECT coalesce(jsonb_agg(f ORDER BY n, f->>'subject'), '[]') INTO out
    FROM redone WHERE NOT carried OR (f->>'off')::numeric <> 0;
    RETURN jsonb_set(r, '{findings}', out);
END;
$$;

-- ---- Stats backfill around archived months ----------------------------------------

-- The rollups of an archived month are kept: 011's backfill runs on the
-- stretches of [t_from, t_to) between archived months (NULL: unbounded).
ALTER FUNCTION tipcast_stats_backfill(timestamptz, timestamptz) RENAME TO tipcast_stats_backfill_011;

CREATE FUNCTION tipcast_stats_backfill(t_from timestamptz, t_to timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint := 0;
    lo timestamptz := t_from;
    a record;
BEGIN
    IF t_from >= t_to THEN
        RAISE EXCEPTION 'tipcast_stats_backfill: t_from must be before t_to';
    END IF;
    FOR a IN SELECT (m.month::timestamp AT TIME ZONE 'UTC') AS a_lo,
                    ((m.month + interval '1 month')::timestamp AT TIME ZONE 'UTC') AS a_hi
             FROM archived_months m
             WHERE (t_to IS NULL OR (m.month::timestamp AT TIME ZONE 'UTC') < t_to)
               AND (t_from IS NULL OR ((m.month + interval '1 month')::timestamp AT TIME ZONE 'UTC') > t_from)
             ORDER BY m.month LOOP
        IF lo IS NULL OR lo < a.a_lo THEN
            n := n + tipcast_stats_backfill_011(lo, a.a_lo);
        END IF;
        lo := a.a_hi;
    END LOOP;
    IF t_to IS NULL OR lo IS NULL OR lo < t_to THEN
        n := n + tipcast_stats_backfill_011(lo, t_to);
    END IF;
    RETURN n;
END;
$$;
