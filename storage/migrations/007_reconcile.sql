-- 007_reconcile: reconciliation to the coin (docs/settlement.md,
-- "Reconciliation"): the checks of one run, its stored report and alert,
-- and the admin API's reports.
--
-- A run (settlement/recon.c) reads Redis first, without pausing anything:
-- the chain heads of the ledger (ledger_chains, 006) are noted, then the
-- wallets in batches with each batch's cut (its shard's last stream id at
-- that instant), the boards with their rooms' watermarks, and per shard the
-- entries the ledger group has not acknowledged (the backlog). It then opens
-- one REPEATABLE READ transaction, copies what Redis said into the temporary
-- tables of tipcast_reconcile_staging, and calls tipcast_reconcile_check,
-- which compares it all with the one snapshot of PostgreSQL. Stream ids are
-- compared as (ms, seq) pairs of bigint.

CREATE TABLE reconcile_reports (
    id           bigserial PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    source       text NOT NULL CHECK (source IN ('cli', 'scheduled')),
    node         text NOT NULL,
    ok           boolean NOT NULL,
    findings     int NOT NULL,
    coins_off    bigint NOT NULL,
    cut          jsonb NOT NULL,
    report       jsonb NOT NULL
);
CREATE INDEX reconcile_reports_started ON reconcile_reports (started_at);

-- What Redis said, copied in by the run (one set per connection, dropped
-- with the run's transaction).
--   rc_heads    chain -> its head seq before any Redis read (H0)
--   rc_wallet   a wallet read in a batch, and that batch's cut on its shard
--   rc_cut0     per shard: its last stream id before the wallet scan (the
--               cut of users whose key the scan did not see), and the first
--               entry the rooms group still needed then (rooms not scanned)
--   rc_backlog  the entries the ledger group had not acknowledged
--   rc_rooms    the rooms whose boards were read
--   rc_board    their all-time scores
--   rc_wm       their watermarks (per shard, the last entry applied)
--   rc_lag      per shard and group: lag, pending, the oldest pending entry
--   rc_statement the provider's statement lines
CREATE FUNCTION tipcast_reconcile_staging() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE rc_heads (chain int PRIMARY KEY, seq bigint NOT NULL) ON COMMIT DROP;
    CREATE TEMP TABLE rc_wallet (uid text PRIMARY KEY, shard int NOT NULL, bal bigint NOT NULL,
                                 cut_ms bigint NOT NULL, cut_seq bigint NOT NULL) ON COMMIT DROP;
    CREATE TEMP TABLE rc_cut0 (shard int PRIMARY KEY, ms bigint NOT NULL, seq bigint NOT NULL,
                               rooms_ms bigint NOT NULL, rooms_seq bigint NOT NULL) ON COMMIT DROP;
    CREATE TEMP TABLE rc_backlog (order_id text PRIMARY KEY, shard int NOT NULL, ms bigint NOT NULL,
                                  seq bigint NOT NULL, kind text NOT NULL, uid text NOT NULL, room text NOT NULL,
                                  amount bigint NOT NULL) ON COMMIT DROP;
    CREATE TEMP TABLE rc_rooms (room text PRIMARY KEY) ON COMMIT DROP;
    CREATE TEMP TABLE rc_board (room text NOT NULL, sender text NOT NULL, score bigint NOT NULL,
                                PRIMARY KEY (room, sender)) ON COMMIT DROP;
    CREATE TEMP TABLE rc_wm (room text NOT NULL, shard int NOT NULL, ms bigint NOT NULL, seq bigint NOT NULL,
                             PRIMARY KEY (room, shard)) ON COMMIT DROP;
    CREATE TEMP TABLE rc_lag (shard int NOT NULL, grp text NOT NULL, lag bigint, pending bigint NOT NULL,
                              oldest text, oldest_idle_ms bigint, last_delivered text) ON COMMIT DROP;
    CREATE TEMP TABLE rc_statement (line int PRIMARY KEY, payment_id text NOT NULL, amount bigint NOT NULL,
                                    at timestamptz NOT NULL) ON COMMIT DROP;
END;
$$;

-- The (ms, seq) of an order id or ledger entry "<shard>-<ms>-<seq>".
CREATE FUNCTION tipcast_entry_shard(e text) RETURNS int
LANGUAGE sql IMMUTABLE AS $$ SELECT split_part(e, '-', 1)::int; $$;
CREATE FUNCTION tipcast_entry_ms(e text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT split_part(e, '-', 2)::bigint; $$;
CREATE FUNCTION tipcast_entry_seq(e text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT split_part(e, '-', 3)::bigint; $$;

-- One finding: the check, its kind, what it names, the coins expected
-- (PostgreSQL's side) and actual (the other side), and how many are off.
CREATE FUNCTION tipcast_rc_finding(chk text, kind text, subject text, expected bigint, actual bigint,
                                   detail jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('check', chk, 'kind', kind, 'subject', subject, 'expected', expected,
                              'actual', actual, 'off', abs(coalesce(actual, 0) - coalesce(expected, 0)),
                              'detail', detail);
$$;

-- The checks, in the run's REPEATABLE READ snapshot, over the rc_* tables.
-- idle_ms: a pending entry idle longer is a finding; statement: rc_statement
-- holds a statement, compared with the recharges paid in st_from..st_to.
-- Returns {"findings": [...], "wallets", "boards", "backlog", "lag": [...]}.
CREATE FUNCTION tipcast_reconcile_check(idle_ms bigint, statement boolean, st_from timestamptz,
                                        st_to timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    f jsonb[] := '{}';
    part jsonb[];
BEGIN
    -- ---- wallet: user:U in Redis vs the ledger at U's cut ----
    -- A row counts when it existed before every cut (chain -1, the rows of
    -- SQL functions and of before 006; seq <= the head noted first), or its
    -- entry is at or before the cut: U's batch cut when the scan saw U,
    -- else its shard's cut before the scan. Backlog entries at or before
    -- the cut count when the snapshot holds no row of theirs.
    WITH cut AS (
        SELECT w.uid, w.cut_ms, w.cut_seq FROM rc_wallet w
    ), rows AS (
        SELECT substr(l.account, 6) AS uid, l.delta
        FROM ledger l LEFT JOIN rc_heads h ON h.chain = l.chain
        WHERE l.account LIKE 'user:%'
          AND (l.chain < 0 OR l.seq <= coalesce(h.seq, 0) OR l.entry IS NULL)
        UNION ALL
        SELECT substr(l.account, 6), l.delta
        FROM ledger l LEFT JOIN rc_heads h ON h.chain = l.chain
        LEFT JOIN cut c ON c.uid = substr(l.account, 6)
        LEFT JOIN rc_cut0 z ON z.shard = tipcast_entry_shard(l.entry)
        WHERE l.account LIKE 'user:%' AND l.chain >= 0 AND l.seq > coalesce(h.seq, 0) AND l.entry IS NOT NULL
          AND (tipcast_entry_ms(l.entry), tipcast_entry_seq(l.entry))
              <= (coalesce(c.cut_ms, z.ms, -1), coalesce(c.cut_seq, z.seq, -1))
        UNION ALL
        SELECT b.uid, CASE WHEN b.kind IN ('gift', 'tip') THEN -b.amount ELSE b.amount END
        FROM rc_backlog b
        LEFT JOIN cut c ON c.uid = b.uid
        LEFT JOIN rc_cut0 z ON z.shard = b.shard
        WHERE b.kind IN ('gift', 'tip', 'credit', 'recharge', 'refund')
          AND (b.ms, b.seq) <= (coalesce(c.cut_ms, z.ms, -1), coalesce(c.cut_seq, z.seq, -1))
          AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.entry = b.order_id)
    ), expected AS (
        SELECT uid, sum(delta)::bigint AS coins FROM rows GROUP BY uid
    )
    SELECT coalesce(array_agg(tipcast_rc_finding('wallet', 'balance', 'user:' || coalesce(e.uid, w.uid),
                                                 coalesce(e.coins, 0), coalesce(w.bal, 0),
                                                 jsonb_build_object('in_redis', w.uid IS NOT NULL))
                              ORDER BY coalesce(e.uid, w.uid)), '{}')
    INTO part
    FROM expected e FULL JOIN rc_wallet w ON w.uid = e.uid
    WHERE coalesce(e.coins, 0) <> coalesce(w.bal, 0);
    f := f || part;

    -- ---- accounts: the ledger's sums vs the tables that state them ----
    WITH acc AS (
        SELECT account, sum(delta)::bigint AS coins FROM ledger
        WHERE account LIKE 'creator:%' OR account LIKE 'agency:%' OR account IN ('platform', 'payout')
        GROUP BY account
    ), ord AS (
        SELECT 'creator:' || creator AS account, sum(creator_net)::bigint AS coins FROM orders GROUP BY creator
        UNION ALL
        SELECT 'agency:' || agency_id, sum(agency_share)::bigint FROM orders WHERE agency_share > 0 GROUP BY agency_id
        UNION ALL
        SELECT 'platform', sum(platform_fee)::bigint FROM orders
        UNION ALL
        SELECT 'creator:' || creator, -sum(creator_net)::bigint FROM refunds WHERE state = 'credited' GROUP BY creator
        UNION ALL
        SELECT 'agency:' || agency_id, -sum(agency_share)::bigint FROM refunds
        WHERE state = 'credited' AND agency_share > 0 GROUP BY agency_id
        UNION ALL
        SELECT 'platform', -sum(platform_fee)::bigint FROM refunds WHERE state = 'credited'
        UNION ALL
        SELECT 'platform', -sum(coins)::bigint FROM recharges WHERE state = 'credited'
        UNION ALL
        -- An admin's credit has no table but the ledger: its user row is the
        -- wallet check's, its platform row is taken as written.
        SELECT 'platform', sum(delta)::bigint FROM ledger WHERE kind = 'credit' AND account = 'platform'
        UNION ALL
        SELECT 'creator:' || creator, -sum(amount)::bigint FROM withdrawals WHERE state = 'paid' GROUP BY creator
        UNION ALL
        SELECT 'payout', sum(amount)::bigint FROM withdrawals WHERE state = 'paid'
    ), expected AS (
        SELECT account, sum(coins)::bigint AS coins FROM ord WHERE coins IS NOT NULL GROUP BY account
    )
    SELECT coalesce(array_agg(tipcast_rc_finding('accounts', 'account', coalesce(e.account, a.account),
                                                 coalesce(e.coins, 0), coalesce(a.coins, 0),
                                                 '{"expected": "orders, refunds, recharges, credits, withdrawals", "actual": "ledger"}')
                              ORDER BY coalesce(e.account, a.account)), '{}')
    INTO part
    FROM expected e FULL JOIN acc a ON a.account = e.account
    WHERE coalesce(e.coins, 0) <> coalesce(a.coins, 0);
    f := f || part;

    -- creator:C's ledger sum vs its balance row (pending + available).
    WITH acc AS (
        SELECT substr(account, 9) AS creator, sum(delta)::bigint AS coins FROM ledger
        WHERE account LIKE 'creator:%' GROUP BY account
    )
    SELECT coalesce(array_agg(tipcast_rc_finding('accounts', 'creator_balance', 'creator:' || coalesce(a.creator, b.creator),
                                                 coalesce(a.coins, 0), coalesce(b.pending + b.available, 0),
                                                 jsonb_build_object('pending', b.pending, 'available', b.available))
                              ORDER BY coalesce(a.creator, b.creator)), '{}')
    INTO part
    FROM acc a FULL JOIN creator_balances b ON b.creator = a.creator
    WHERE coalesce(a.coins, 0) <> coalesce(b.pending + b.available, 0);
    f := f || part;

    -- Every gift or tip order's rows = its split, account by account.
    WITH want AS (
        SELECT o.order_id, m.account, m.delta
        FROM orders o,
             LATERAL (VALUES ('user:' || o.sender, -o.amount), ('creator:' || o.creator, o.creator_net),
                             ('agency:' || o.agency_id, o.agency_share), ('platform', o.platform_fee)) m (account, delta)
        WHERE m.delta <> 0
    ), got AS (
        SELECT l.movement_id AS order_id, l.account, sum(l.delta)::bigint AS delta
        FROM ledger l WHERE l.kind IN ('gift', 'tip') GROUP BY 1, 2
    )
    SELECT coalesce(array_agg(tipcast_rc_finding('accounts', 'order_split', coalesce(w.order_id, g.order_id),
                                                 coalesce(w.delta, 0), coalesce(g.delta, 0),
                                                 jsonb_build_object('account', coalesce(w.account, g.account)))
                              ORDER BY coalesce(w.order_id, g.order_id), coalesce(w.account, g.account)), '{}')
    INTO part
    FROM want w FULL JOIN got g ON g.order_id = w.order_id AND g.account = w.account
    WHERE coalesce(w.delta, 0) <> coalesce(g.delta, 0);
    f := f || part;

    -- Every movement sums to zero.
    SELECT coalesce(array_agg(tipcast_rc_finding('accounts', 'movement_sum', movement_id, 0, s) ORDER BY movement_id),
                    '{}')
    INTO part
    FROM (SELECT movement_id, sum(delta)::bigint AS s FROM ledger GROUP BY movement_id HAVING sum(delta) <> 0) x;
    f := f || part;

    -- Entries set aside: their wallet moved, the ledger has nothing of them.
    SELECT coalesce(array_agg(tipcast_rc_finding('accounts', 'outbox_reject', r.order_id, NULL,
                                                 (substring(convert_from(r.entry, 'UTF8') FROM E'(?:^|\\n)a=(\\d{1,18})'))::bigint,
                                                 jsonb_build_object('reason', r.reason,
                                                     'user', substring(convert_from(r.entry, 'UTF8') FROM E'(?:^|\\n)u=([^\\n]*)'),
                                                     'kind', substring(convert_from(r.entry, 'UTF8') FROM E'(?:^|\\n)k=([^\\n]*)')))
                              ORDER BY r.order_id), '{}')
    INTO part
    FROM outbox_rejects r;
    f := f || part;

    -- ---- boards: all-time scores vs the orders minus refunds they count ----
    -- A room whose boards were read counts, per shard, the entries up to
    -- its watermark (the rooms group applies a room's entries of a shard in
    -- stream order); a room not seen by the scan, the entries the rooms
    -- group had acknowledged before it.
    WITH ent AS (
        SELECT o.room, o.sender, o.order_id AS entry, o.amount AS delta FROM orders o
        UNION ALL
        SELECT f.room, f.user_id, l.note, -f.amount
        FROM refunds f JOIN ledger l ON l.movement_id = 'refund:' || f.id AND l.account = 'user:' || f.user_id
        WHERE f.state = 'credited'
        UNION ALL
        SELECT b.room, b.uid, b.order_id, CASE WHEN b.kind = 'refund' THEN -b.amount ELSE b.amount END
        FROM rc_backlog b
        WHERE b.kind IN ('gift', 'tip', 'refund') AND b.room <> ''
          AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.entry = b.order_id)
    ), counted AS (
        SELECT e.room, e.sender, sum(e.delta)::bigint AS coins
        FROM ent e
        LEFT JOIN rc_rooms r ON r.room = e.room
        LEFT JOIN rc_wm w ON w.room = e.room AND w.shard = tipcast_entry_shard(e.entry)
        LEFT JOIN rc_cut0 z ON z.shard = tipcast_entry_shard(e.entry)
        WHERE CASE WHEN r.room IS NOT NULL
                   THEN w.room IS NOT NULL
                        AND (tipcast_entry_ms(e.entry), tipcast_entry_seq(e.entry)) <= (w.ms, w.seq)
                   ELSE (tipcast_entry_ms(e.entry), tipcast_entry_seq(e.entry)) < (z.rooms_ms, z.rooms_seq) END
        GROUP BY 1, 2
    )
    SELECT coalesce(array_agg(tipcast_rc_finding('boards', 'score', 'board:' || coalesce(c.room, b.room) || ':'
                                                 || coalesce(c.sender, b.sender),
                                                 coalesce(c.coins, 0), coalesce(b.score, 0),
                                                 jsonb_build_object('room', coalesce(c.room, b.room),
                                                                    'user', coalesce(c.sender, b.sender)))
                              ORDER BY coalesce(c.room, b.room), coalesce(c.sender, b.sender)), '{}')
    INTO part
    FROM counted c FULL JOIN rc_board b ON b.room = c.room AND b.sender = c.sender
    WHERE coalesce(c.coins, 0) <> coalesce(b.score, 0);
    f := f || part;

    -- ---- lag: a pending entry idle too long ----
    SELECT coalesce(array_agg(tipcast_rc_finding('lag', 'stale_pending', 'shard:' || shard || ':' || grp, NULL, NULL,
                                                 jsonb_build_object('entry', shard || '-' || oldest,
                                                                    'idle_ms', oldest_idle_ms, 'pending', pending))
                              ORDER BY shard, grp), '{}')
    INTO part
    FROM rc_lag WHERE oldest_idle_ms > idle_ms;
    f := f || part;

    -- ---- statement: the provider's payments vs the recharges paid ----
    -- Amounts are the currency's minor units: recharges.paid_amount_minor
    -- (what the provider's callback said it took; = amount_minor when paid).
    IF statement THEN
        WITH paid AS (
            SELECT * FROM recharges r
            WHERE r.state IN ('paid', 'credited') AND r.paid_at >= st_from AND r.paid_at <= st_to
        )
        SELECT coalesce(array_agg(x ORDER BY x->>'subject', x->>'kind'), '{}') INTO part FROM (
            SELECT tipcast_rc_finding('statement', 'not_recharged', 'payment:' || s.payment_id, NULL, s.amount,
                                      jsonb_build_object('line', s.line, 'amount_minor', s.amount,
                                                         'recharge', r.id, 'recharge_state', r.state)) AS x
            FROM rc_statement s LEFT JOIN recharges r ON r.payment_id = s.payment_id
            WHERE r.id IS NULL OR r.state NOT IN ('paid', 'credited')
            UNION ALL
            SELECT tipcast_rc_finding('statement', 'not_in_statement', 'payment:' || p.payment_id, p.paid_amount_minor,
                                      NULL, jsonb_build_object('recharge', p.id, 'user', p.user_id, 'coins', p.coins,
                                                               'currency', p.currency))
            FROM paid p WHERE NOT EXISTS (SELECT 1 FROM rc_statement s WHERE s.payment_id = p.payment_id)
            UNION ALL
            SELECT tipcast_rc_finding('statement', 'amount', 'payment:' || s.payment_id, r.paid_amount_minor, s.amount,
                                      jsonb_build_object('line', s.line, 'recharge', r.id, 'user', r.user_id,
                                                         'coins', r.coins, 'currency', r.currency))
            FROM rc_statement s JOIN recharges r ON r.payment_id = s.payment_id
            WHERE r.state IN ('paid', 'credited') AND r.paid_amount_minor <> s.amount
        ) q;
        f := f || part;
    END IF;

    RETURN jsonb_build_object(
        'findings', to_jsonb(f),
        'wallets', (SELECT count(*) FROM rc_wallet),
        'rooms', (SELECT count(*) FROM rc_rooms),
        'backlog', (SELECT count(*) FROM rc_backlog),
        'statement_lines', (SELECT count(*) FROM rc_statement),
        'lag', coalesce((SELECT jsonb_agg(jsonb_build_object('shard', shard, 'group', grp, 'lag', lag,
                                                             'pending', pending, 'oldest', oldest,
                                                             'oldest_idle_ms', oldest_idle_ms,
                                                             'last_delivered', last_delivered) ORDER BY shard, grp)
                         FROM rc_lag), '[]'));
END;
$$;

-- Stores a run's report; when it found anything, an alert and (webhooks
-- on) a reconcile.mismatch webhook, in the same transaction. Returns the id.
CREATE FUNCTION tipcast_reconcile_store(source text, node text, started_at timestamptz, cut jsonb, report jsonb,
                                        webhooks boolean) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n int := jsonb_array_length(coalesce(report->'findings', '[]'));
    off bigint := coalesce((SELECT sum((x->>'off')::bigint) FROM jsonb_array_elements(report->'findings') x), 0);
    rid bigint;
BEGIN
    INSERT INTO reconcile_reports (started_at, source, node, ok, findings, coins_off, cut, report)
    VALUES (started_at, source, node, n = 0, n, off, cut, report) RETURNING id INTO rid;
    IF n > 0 THEN
        INSERT INTO alerts (kind, severity, subject, detail)
        VALUES ('reconcile.mismatch', 'critical', 'reconcile:' || rid,
                jsonb_build_object('report_id', rid, 'findings', n, 'coins_off', off,
                                   'first', report->'findings'->0));
        PERFORM tipcast_webhook_enqueue(webhooks, 'reconcile.mismatch', 'reconcile.mismatch:' || rid,
                                        jsonb_build_object('report_id', rid, 'findings', n, 'coins_off', off,
                                                           'source', source));
    END IF;
    RETURN rid;
END;
$$;

-- ---- Admin API: GET /api/v1/reconcile/reports[/latest|/{id}] ----

CREATE FUNCTION tipcast_reconcile_json(r reconcile_reports, full_report boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', r.id, 'started_at', tipcast_ts(r.started_at),
                              'finished_at', tipcast_ts(r.finished_at), 'source', r.source, 'node', r.node,
                              'ok', r.ok, 'findings', r.findings, 'coins_off', r.coins_off, 'cut', r.cut)
           || CASE WHEN full_report THEN jsonb_build_object('report', r.report) ELSE '{}' END;
$$;

CREATE FUNCTION tipcast_api_reconcile_reports(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    lim int := tipcast_arg_limit(ctx);
    aft bigint := tipcast_arg_after_id(ctx);
BEGIN
    RETURN tipcast_paged(ARRAY(
        SELECT jsonb_build_array(r.id::text, tipcast_reconcile_json(r, false))
        FROM reconcile_reports r WHERE aft IS NULL OR r.id < aft
        ORDER BY r.id DESC LIMIT lim + 1), lim);
END;
$$;

CREATE FUNCTION tipcast_api_reconcile_latest(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r reconcile_reports;
BEGIN
    SELECT * INTO r FROM reconcile_reports ORDER BY id DESC LIMIT 1;
    IF r.id IS NULL THEN
        PERFORM tipcast_refuse('not_found', 'no reconciliation has run yet');
    END IF;
    RETURN tipcast_ok(tipcast_reconcile_json(r, true));
END;
$$;

CREATE FUNCTION tipcast_api_reconcile_report(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    rid bigint := tipcast_path_serial(ctx);
    r reconcile_reports;
BEGIN
    SELECT * INTO r FROM reconcile_reports WHERE id = rid;
    IF r.id IS NULL THEN
        PERFORM tipcast_refuse('not_found', format('no reconciliation report %s', rid));
    END IF;
    RETURN tipcast_ok(tipcast_reconcile_json(r, true));
END;
$$;
