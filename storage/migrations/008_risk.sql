-- 008_risk: risk control (docs/operations.md, "Risk control").
--
-- Rules and frozen accounts live here and are held in memory by every
-- tipcastd (risk/rules.c), loaded at start and again whenever a trigger below
-- notifies `tipcast_risk`: the checks on the gift path cost no round trip.
-- The daily spend caps are enforced by the wallet script (exact across
-- nodes); the recharge limits and the freezes of recharges and withdrawals
-- here, in the route's transaction; the patterns that need history (brushing,
-- refund cycles, spikes) by tipcast_risk_scan, run by one node at a time
-- every risk-scan-interval-s, which raises deduplicated alerts.

-- ---- Rules -----------------------------------------------------------------------

-- One row per rule, with its bounds and unit: PUT /api/v1/risk/rules checks
-- a new value against lo..hi, so a rule can never be set to something the
-- code does not expect. 0 turns a rate or cap off where the unit says so.
CREATE TABLE risk_rules (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z_]{1,64}$'),
    value       bigint NOT NULL,
    dflt        bigint NOT NULL,
    lo          bigint NOT NULL,
    hi          bigint NOT NULL,
    unit        text NOT NULL,
    description text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT 'migration',
    CHECK (lo <= dflt AND dflt <= hi AND lo <= value AND value <= hi)
);

INSERT INTO risk_rules (name, value, dflt, lo, hi, unit, description) VALUES
    ('gift_user_per_min', 600, 600, 0, 1000000, 'requests/min',
     'gifts and tips a user may send per minute on one node (token bucket, burst = the rate); 0 = off'),
    ('gift_ip_per_min', 0, 0, 0, 10000000, 'requests/min',
     'gifts and tips per minute from one client address (IPv4, or IPv6 /64) on one node; 0 = off'),
    ('daily_spend_cap', 0, 0, 0, 9007199254740991, 'coins/UTC day',
     'coins a user may spend on gifts and tips per UTC day; 0 = no cap'),
    ('new_account_days', 7, 7, 0, 3650, 'days',
     'an account is new for this many days after its wallet''s first credit'),
    ('new_account_daily_cap', 0, 0, 0, 9007199254740991, 'coins/UTC day',
     'the daily spend cap of a new account (the lower of the two applies); 0 = no cap'),
    ('recharge_user_per_hour', 0, 0, 0, 1000000, 'recharges/hour',
     'recharges a user may create in any 60 minutes; 0 = off'),
    ('recharge_ip_per_hour', 100, 100, 0, 10000000, 'recharges/hour',
     'recharges created for one client ip (the optional ip field) in any 60 minutes; 0 = off'),
    ('brushing_window_s', 3600, 3600, 60, 604800, 's',
     'the window the brushing scan looks at'),
    ('brushing_ip_senders', 10, 10, 2, 1000000, 'senders',
     'distinct senders from one IP paying one creator in the window that raise brushing_ip'),
    ('brushing_device_senders', 5, 5, 2, 1000000, 'senders',
     'distinct senders from one device paying one creator in the window that raise brushing_device'),
    ('refund_cycle_window_s', 86400, 86400, 60, 2592000, 's',
     'the window of the recharge -> gift -> refund scan'),
    ('refund_cycle_refunds', 3, 3, 1, 1000000, 'refunds',
     'refunds of a user''s gifts made after a recharge in the window that raise refund_cycle'),
    ('spike_window_s', 300, 300, 60, 86400, 's',
     'the window of the spike scan; the baseline is the average window of the 24 h before it'),
    ('spike_factor', 10, 10, 2, 1000000, 'x baseline',
     'a room''s or sender''s amount in the window above this many times its baseline raises a spike'),
    ('spike_min_amount', 100000, 100000, 1, 9007199254740991, 'coins',
     'no spike is raised below this amount in the window (a quiet room''s first gifts are no surge)');

CREATE TABLE account_freezes (
    account  text PRIMARY KEY CHECK (account ~ '^[A-Za-z0-9_.-]{1,64}$'),
    reason   text NOT NULL,
    by       text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);

-- Every node reloads rules and freezes when notified (server/pgcheck.c).
CREATE FUNCTION tipcast_risk_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tipcast_risk', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;
CREATE TRIGGER risk_rules_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON risk_rules
    FOR EACH STATEMENT EXECUTE FUNCTION tipcast_risk_notify();
CREATE TRIGGER account_freezes_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON account_freezes
    FOR EACH STATEMENT EXECUTE FUNCTION tipcast_risk_notify();

-- The document tipcastd loads (risk/rules.c, risk_query).
CREATE FUNCTION tipcast_risk_doc() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'rules', coalesce((SELECT json_object_agg(name, value) FROM risk_rules), '{}'::json),
        'frozen', coalesce((SELECT json_agg(account ORDER BY account) FROM account_freezes), '[]'::json))::text;
$$;

CREATE FUNCTION tipcast_risk_rule(rule text) RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT value FROM risk_rules WHERE name = rule; $$;

CREATE FUNCTION tipcast_frozen(account_id text) RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT EXISTS (SELECT 1 FROM account_freezes WHERE account = account_id); $$;

-- ---- Columns the rules read ------------------------------------------------------------

-- 006 (ledger chain) adds these from the outbox entries' ip and dv; IF NOT
-- EXISTS keeps this migration correct whichever of the two a database got
-- first.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS ip inet;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS device text;
-- The scans read a window of recent orders: a BRIN index keeps that a read
-- of the recent blocks only (orders arrive in created_at order, nearly).
CREATE INDEX orders_created_brin ON orders USING brin (created_at);
CREATE INDEX refunds_created ON refunds (created_at);

ALTER TABLE recharges ADD COLUMN ip inet;
CREATE INDEX recharges_ip ON recharges (ip, created_at) WHERE ip IS NOT NULL;

-- An alert raised by the scan carries its dedup key: kind, subject and the
-- window it was seen in, so that the next runs of the same window raise it
-- once.
ALTER TABLE alerts ADD COLUMN dedup text;
CREATE UNIQUE INDEX alerts_dedup ON alerts (dedup) WHERE dedup IS NOT NULL;

-- ---- Recharges and withdrawals of frozen or too busy accounts ---------------------------

-- 004's recharge creation, wrapped: a replay of a known request_id is
-- answered as before (the checks applied when it was created); a new one is
-- refused for a frozen user or past the recharge rates, then created, with
-- the client's ip when the platform's backend gives it.
ALTER FUNCTION tipcast_api_recharge_create(jsonb) RENAME TO tipcast_recharge_create_004;

CREATE FUNCTION tipcast_api_recharge_create(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    uid text := tipcast_arg_id(ctx, 'user');
    rid text := tipcast_arg_key(ctx, 'request_id');
    ip_text text := tipcast_arg_text(ctx, 'ip', 45, 'body', false);
    client inet;
    per_user bigint := tipcast_risk_rule('recharge_user_per_hour');
    per_ip bigint := tipcast_risk_rule('recharge_ip_per_hour');
    n bigint;
    answer jsonb;
BEGIN
    IF ip_text IS NOT NULL THEN
        BEGIN
            client := ip_text::inet;
        EXCEPTION WHEN others THEN
            PERFORM tipcast_bad('ip', 'ip must be an IPv4 or IPv6 address');
        END;
        IF masklen(client) <> 32 + 96 * (family(client) = 6)::int THEN
            PERFORM tipcast_bad('ip', 'ip must be one address, not a network');
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM recharges WHERE request_id = rid) THEN
        RETURN tipcast_recharge_create_004(ctx);
    END IF;
    IF tipcast_frozen(uid) THEN
        PERFORM tipcast_refuse('account_frozen', format('account %s is frozen', uid));
    END IF;
    -- Serialises one user's creations, so that two concurrent ones cannot
    -- both pass a count that allows only one of them.
    PERFORM pg_advisory_xact_lock(hashtext('tipcast_recharge:' || uid));
    IF per_user > 0 THEN
        SELECT count(*) INTO n FROM recharges WHERE user_id = uid AND created_at > now() - interval '1 hour';
        IF n >= per_user THEN
            PERFORM tipcast_refuse('risk_rate_limited',
                                   format('user %s created %s recharges in the last hour (limit %s)', uid, n, per_user));
        END IF;
    END IF;
    IF per_ip > 0 AND client IS NOT NULL THEN
        SELECT count(*) INTO n FROM recharges WHERE ip = client AND created_at > now() - interval '1 hour';
        IF n >= per_ip THEN
            PERFORM tipcast_refuse('risk_rate_limited',
                                   format('%s recharges from %s in the last hour (limit %s)', n, host(client), per_ip));
        END IF;
    END IF;
    answer := tipcast_recharge_create_004(ctx);
    IF client IS NOT NULL THEN
        UPDATE recharges SET ip = client WHERE request_id = rid;
    END IF;
    RETURN answer;
END;
$$;

-- A frozen creator cannot ask for a withdrawal (one asked before the freeze
-- is decided by finance as usual).
ALTER FUNCTION tipcast_api_withdrawal_request(jsonb) RENAME TO tipcast_withdrawal_request_004;

CREATE FUNCTION tipcast_api_withdrawal_request(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    IF tipcast_frozen(ctx->>'actor') THEN
        PERFORM tipcast_refuse('account_frozen', format('account %s is frozen', ctx->>'actor'));
    END IF;
    RETURN tipcast_withdrawal_request_004(ctx);
END;
$$;

-- ---- The admin API: freezes and rules ------------------------------------------------------

CREATE FUNCTION tipcast_freeze_json(account_id text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('account', account_id, 'frozen', f.account IS NOT NULL, 'reason', f.reason,
                              'by', f.by, 'at', tipcast_ts(f.at))
    FROM (SELECT 1) one LEFT JOIN account_freezes f ON f.account = account_id;
$$;

CREATE FUNCTION tipcast_api_account_freeze(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    acc text := tipcast_path_id(ctx, 'id');
    why text := tipcast_arg_text(ctx, 'reason', 500);
    before jsonb;
BEGIN
    -- Locks the account's row when there is one: two freezes of one account
    -- are serialised, and the second one answers the first one's freeze.
    PERFORM 1 FROM account_freezes WHERE account = acc FOR UPDATE;
    before := tipcast_freeze_json(acc);
    IF (before->>'frozen')::boolean THEN
        RETURN tipcast_ok(before);
    END IF;
    INSERT INTO account_freezes (account, reason, by) VALUES (acc, why, coalesce(ctx->>'actor', '-'))
    ON CONFLICT (account) DO NOTHING;
    PERFORM tipcast_audit(ctx, 'account.freeze', acc, before, tipcast_freeze_json(acc));
    PERFORM tipcast_webhook_enqueue(tipcast_webhooks_on(ctx), 'account.frozen',
                                    'account.frozen:' || acc || ':' || (extract(epoch FROM now()) * 1000000)::bigint,
                                    tipcast_freeze_json(acc));
    RETURN tipcast_ok(tipcast_freeze_json(acc));
END;
$$;

CREATE FUNCTION tipcast_api_account_unfreeze(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    acc text := tipcast_path_id(ctx, 'id');
    why text := tipcast_arg_text(ctx, 'reason', 500, 'body', false);
    before jsonb;
BEGIN
    PERFORM 1 FROM account_freezes WHERE account = acc FOR UPDATE;
    before := tipcast_freeze_json(acc);
    IF NOT (before->>'frozen')::boolean THEN
        RETURN tipcast_ok(before);
    END IF;
    DELETE FROM account_freezes WHERE account = acc;
    PERFORM tipcast_audit(ctx, 'account.unfreeze', acc, before,
                          tipcast_freeze_json(acc) || jsonb_build_object('unfreeze_reason', why));
    RETURN tipcast_ok(tipcast_freeze_json(acc));
END;
$$;

CREATE FUNCTION tipcast_api_account_freeze_get(ctx jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT tipcast_ok(tipcast_freeze_json(tipcast_path_id(ctx, 'id'))); $$;

CREATE FUNCTION tipcast_api_freezes_list(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    lim int := tipcast_arg_limit(ctx);
    aft record := tipcast_arg_after_time(ctx);
BEGIN
    RETURN tipcast_paged(ARRAY(
        SELECT jsonb_build_array(tipcast_cursor(f.at, f.account), tipcast_freeze_json(f.account))
        FROM account_freezes f
        WHERE aft.at IS NULL OR (f.at, f.account) < (aft.at, aft.id)
        ORDER BY f.at DESC, f.account DESC LIMIT lim + 1), lim);
END;
$$;

CREATE FUNCTION tipcast_risk_rules_json() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('rules', coalesce(jsonb_agg(jsonb_build_object('name', r.name, 'value', r.value,
        'default', r.dflt, 'min', r.lo, 'max', r.hi, 'unit', r.unit, 'description', r.description,
        'updated_at', tipcast_ts(r.updated_at), 'updated_by', r.updated_by) ORDER BY r.name), '[]'))
    FROM risk_rules r;
$$;

CREATE FUNCTION tipcast_api_risk_rules_get(ctx jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT tipcast_ok(tipcast_risk_rules_json()); $$;

-- Body {"rules": {"<name>": <value>, ...}}: every named rule is checked
-- (known, an integer in its bounds) before any is changed; all change in
-- one transaction, audited as one row with the old and new values.
CREATE FUNCTION tipcast_api_risk_rules_put(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    wanted jsonb := tipcast_arg(ctx, 'body', 'rules');
    k text;
    v jsonb;
    r risk_rules;
    before jsonb := '{}';
    after jsonb := '{}';
BEGIN
    IF wanted IS NULL OR jsonb_typeof(wanted) <> 'object' OR wanted = '{}' THEN
        PERFORM tipcast_bad('rules', 'rules must be an object of rule names and integer values');
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(wanted) ORDER BY 1 LOOP
        SELECT * INTO r FROM risk_rules WHERE name = k FOR UPDATE;
        IF r.name IS NULL THEN
            PERFORM tipcast_bad('rules.' || left(k, 64), format('no risk rule %s', left(k, 64)));
        END IF;
        IF jsonb_typeof(v) <> 'number' OR scale(v::numeric) > 0 OR v::numeric < r.lo OR v::numeric > r.hi THEN
            PERFORM tipcast_bad('rules.' || k, format('%s must be an integer from %s to %s (%s)', k, r.lo, r.hi, r.unit));
        END IF;
        IF r.value <> v::numeric THEN
            before := before || jsonb_build_object(k, r.value);
            after := after || jsonb_build_object(k, v::numeric::bigint);
            UPDATE risk_rules SET value = v::numeric::bigint, updated_at = now(),
                                  updated_by = coalesce(ctx->>'actor', '-')
            WHERE name = k;
        END IF;
    END LOOP;
    IF after <> '{}' THEN
        PERFORM tipcast_audit(ctx, 'risk.rules', NULL, before, after);
    END IF;
    RETURN tipcast_ok(tipcast_risk_rules_json());
END;
$$;

-- ---- The scan ------------------------------------------------------------------------------

-- When the scan last ran: one row, locked by the node that runs it.
CREATE TABLE risk_scan_state (
    id       int PRIMARY KEY CHECK (id = 1),
    last_at  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO risk_scan_state (id) VALUES (1);

-- One alert, once per (kind, subject, window); its webhook alert.raised with
-- it. Returns the new alert's id, or NULL when the window has it already.
CREATE FUNCTION tipcast_risk_alert(webhooks boolean, a_kind text, a_subject text, window_s bigint,
                                   a_detail jsonb, a_severity text DEFAULT 'warning') RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    a alerts;
BEGIN
    INSERT INTO alerts (kind, severity, subject, detail, dedup)
    VALUES (a_kind, a_severity, a_subject, a_detail,
            a_kind || '|' || a_subject || '|' || window_s || '|' || floor(extract(epoch FROM now()) / window_s))
    ON CONFLICT (dedup) WHERE dedup IS NOT NULL DO NOTHING
    RETURNING * INTO a;
    IF a.id IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM tipcast_webhook_enqueue(webhooks, 'alert.raised', 'alert.raised:' || a.id,
        jsonb_build_object('id', a.id, 'kind', a.kind, 'severity', a.severity, 'subject', a.subject,
                           'detail', a.detail, 'at', tipcast_ts(a.at)));
    RETURN a.id;
END;
$$;

-- Looks for the patterns that need history and raises their alerts
-- (docs/operations.md, "Risk control"). Runs at most once per min_interval_s
-- across all nodes: the node that gets the state row's lock runs it, the
-- others return at once. Every query reads a bounded window of recent rows
-- through an index (orders_created_brin, orders_creator_created,
-- orders_sender_created, refunds_created); the 24 h baseline of a spike is
-- read only for the rooms and senders already above spike_min_amount.
-- Returns one row per alert raised: its kind.
CREATE FUNCTION tipcast_risk_scan(webhooks boolean DEFAULT false, min_interval_s int DEFAULT 0)
RETURNS TABLE (kind text, alert_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    st risk_scan_state;
    bw bigint := tipcast_risk_rule('brushing_window_s');
    bip bigint := tipcast_risk_rule('brushing_ip_senders');
    bdev bigint := tipcast_risk_rule('brushing_device_senders');
    cw bigint := tipcast_risk_rule('refund_cycle_window_s');
    cn bigint := tipcast_risk_rule('refund_cycle_refunds');
    sw bigint := tipcast_risk_rule('spike_window_s');
    sf bigint := tipcast_risk_rule('spike_factor');
    smin bigint := tipcast_risk_rule('spike_min_amount');
    x record;
    aid bigint;
BEGIN
    SELECT * INTO st FROM risk_scan_state WHERE risk_scan_state.id = 1 FOR UPDATE SKIP LOCKED;
    IF st.id IS NULL OR st.last_at > now() - make_interval(secs => min_interval_s) THEN
        RETURN;
    END IF;
    UPDATE risk_scan_state SET last_at = now() WHERE risk_scan_state.id = 1;

    -- Brushing: many accounts from one address or device paying one creator.
    FOR x IN SELECT o.creator, host(o.ip) AS ip, count(DISTINCT o.sender) AS senders, sum(o.amount) AS amount
             FROM orders o
             WHERE o.created_at > now() - make_interval(secs => bw) AND o.ip IS NOT NULL
             GROUP BY o.creator, o.ip HAVING count(DISTINCT o.sender) >= bip LOOP
        aid := tipcast_risk_alert(webhooks, 'brushing_ip', x.creator || '@' || x.ip, bw,
                                 jsonb_build_object('creator', x.creator, 'ip', x.ip, 'senders', x.senders,
                                                    'amount', x.amount, 'window_s', bw));
        IF aid IS NOT NULL THEN kind := 'brushing_ip'; alert_id := aid; RETURN NEXT; END IF;
    END LOOP;
    FOR x IN SELECT o.creator, o.device, count(DISTINCT o.sender) AS senders, sum(o.amount) AS amount
             FROM orders o
             WHERE o.created_at > now() - make_interval(secs => bw) AND o.device IS NOT NULL
             GROUP BY o.creator, o.device HAVING count(DISTINCT o.sender) >= bdev LOOP
        aid := tipcast_risk_alert(webhooks, 'brushing_device', x.creator || '@' || x.device, bw,
                                 jsonb_build_object('creator', x.creator, 'device', x.device, 'senders', x.senders,
                                                    'amount', x.amount, 'window_s', bw));
        IF aid IS NOT NULL THEN kind := 'brushing_device'; alert_id := aid; RETURN NEXT; END IF;
    END LOOP;

    -- Recharge -> gift -> refund: a user whose gifts, sent after a recharge
    -- of the window, were refunded refund_cycle_refunds times in it.
    FOR x IN SELECT f.user_id, count(*) AS refunds, sum(f.amount) AS amount, min(rc.first_at) AS recharged_at
             FROM refunds f
             JOIN LATERAL (SELECT min(r.created_at) AS first_at FROM recharges r
                           WHERE r.user_id = f.user_id AND r.state IN ('paid', 'credited')
                             AND r.created_at > now() - make_interval(secs => cw)) rc ON rc.first_at IS NOT NULL
             WHERE f.created_at > now() - make_interval(secs => cw) AND f.order_created_at >= rc.first_at
             GROUP BY f.user_id HAVING count(*) >= cn LOOP
        aid := tipcast_risk_alert(webhooks, 'refund_cycle', x.user_id, cw,
                                 jsonb_build_object('user', x.user_id, 'refunds', x.refunds, 'amount', x.amount,
                                                    'recharged_at', tipcast_ts(x.recharged_at), 'window_s', cw));
        IF aid IS NOT NULL THEN kind := 'refund_cycle'; alert_id := aid; RETURN NEXT; END IF;
    END LOOP;

    -- Spikes: the window's amount against the average window of the 24 h
    -- before it, for the rooms and senders past spike_min_amount only.
    FOR x IN SELECT c.room, c.creator, c.amount,
                    (SELECT coalesce(sum(o.amount), 0) FROM orders o
                     WHERE o.creator = c.creator AND o.room = c.room
                       AND o.created_at > now() - make_interval(secs => sw) - interval '24 hours'
                       AND o.created_at <= now() - make_interval(secs => sw)) AS base
             FROM (SELECT o.room, o.creator, sum(o.amount) AS amount FROM orders o
                   WHERE o.created_at > now() - make_interval(secs => sw)
                   GROUP BY o.room, o.creator HAVING sum(o.amount) >= smin) c LOOP
        IF x.amount > sf * (x.base::numeric * sw / 86400) THEN
            aid := tipcast_risk_alert(webhooks, 'spike_room', x.room, sw,
                                     jsonb_build_object('room', x.room, 'amount', x.amount, 'window_s', sw,
                                                        'baseline', round(x.base::numeric * sw / 86400),
                                                        'factor', sf));
            IF aid IS NOT NULL THEN kind := 'spike_room'; alert_id := aid; RETURN NEXT; END IF;
        END IF;
    END LOOP;
    FOR x IN SELECT c.sender, c.amount,
                    (SELECT coalesce(sum(o.amount), 0) FROM orders o
                     WHERE o.sender = c.sender
                       AND o.created_at > now() - make_interval(secs => sw) - interval '24 hours'
                       AND o.created_at <= now() - make_interval(secs => sw)) AS base
             FROM (SELECT o.sender, sum(o.amount) AS amount FROM orders o
                   WHERE o.created_at > now() - make_interval(secs => sw)
                   GROUP BY o.sender HAVING sum(o.amount) >= smin) c LOOP
        IF x.amount > sf * (x.base::numeric * sw / 86400) THEN
            aid := tipcast_risk_alert(webhooks, 'spike_user', x.sender, sw,
                                     jsonb_build_object('user', x.sender, 'amount', x.amount, 'window_s', sw,
                                                        'baseline', round(x.base::numeric * sw / 86400),
                                                        'factor', sf));
            IF aid IS NOT NULL THEN kind := 'spike_user'; alert_id := aid; RETURN NEXT; END IF;
        END IF;
    END LOOP;
END;
$$;
