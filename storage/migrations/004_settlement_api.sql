-- 004_settlement_api: the admin API's routes as SQL functions
-- (docs/admin-api.md, "How a route runs").
--
-- Every route is one function tipcast_api_<name>(ctx jsonb) RETURNS jsonb,
-- run by tipcastd as one statement in its own transaction. It returns
-- {"status": 200|201, "body": {...}} and, for a movement into a wallet,
-- "wallet": {"kind", "user", "amount", "ref", "room", "order_ts_ms"}, which
-- tipcastd runs as a wallet script (idempotent by ref) before answering.
-- A refusal is RAISE EXCEPTION '<code>' USING DETAIL = '<message>' (and
-- HINT = '<field>' for bad_field): the exception rolls the whole call back,
-- so no refusal ever leaves a change behind. The one exception to that rule
-- is the payment callback's amount_mismatch (see there).
--
-- Every state change locks the rows it reads (SELECT ... FOR UPDATE), so two
-- concurrent calls are serialised and the second one sees the first one's
-- result: a check and the change it allows can never be split by another
-- call. Lock order, to keep deadlocks out: withdrawals before
-- creator_balances; creator_balances before orders (settlement); an order
-- alone (refunds).
--
-- The creators' money (creator_balances) and the ledger:
--   pending + available = sum(ledger.delta of account 'creator:<C>')
-- at every commit, where that ledger sum already contains the payouts (a
-- paid withdrawal is the movement creator:C -amount, payout +amount, and
-- paid_out += amount, available -= amount in the same transaction). The
-- other terms move as follows:
--   * an order (ledger consumer): creator:C +creator_net, pending += creator_net;
--   * a refund's wallet credit (ledger consumer, when its outbox entry
--     lands): creator:C -refund.creator_net, and pending -= it when
--     refunds.settled is false, available -= it when true. settled is fixed
--     when the refund is accepted (below) from orders.settlement_id under
--     the order's row lock, and never changes afterwards;
--   * a settlement moves, per order it settles, creator_net minus the
--     creator part of every refund of that order (pending or credited) from
--     pending to available. Those refunds all have settled = false (the
--     order was unsettled when they were accepted): the ones already
--     credited have lowered pending already, and the ones still pending
--     will lower pending when credited, so pending keeps exactly their part
--     until then. The sum pending + available does not change.
-- tests/test_settlement_sql.py checks this equality after every step.

-- ---- Refusals and argument helpers -----------------------------------------------

-- Raises a refusal with its stable code (docs/admin-api.md, "Responses").
CREATE FUNCTION tipcast_refuse(code text, message text, field text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF field IS NULL THEN
        RAISE EXCEPTION '%', code USING DETAIL = message;
    END IF;
    RAISE EXCEPTION '%', code USING DETAIL = message, HINT = field;
END;
$$;

CREATE FUNCTION tipcast_bad(field text, message text) RETURNS void
LANGUAGE sql AS $$ SELECT tipcast_refuse('bad_field', message, field); $$;

-- The raw argument `field` of ctx->src (src is 'body', 'query' or 'path');
-- JSON null counts as absent.
CREATE FUNCTION tipcast_arg(ctx jsonb, src text, field text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(ctx->src) = 'object' AND jsonb_typeof(ctx->src->field) <> 'null'
                THEN ctx->src->field END;
$$;

-- An integer argument in lo..hi. In a body it must be a JSON integer (no
-- fraction, no string); query and path values are strings of digits.
CREATE FUNCTION tipcast_arg_int(ctx jsonb, field text, lo numeric, hi numeric,
                                src text DEFAULT 'body', required boolean DEFAULT true) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := tipcast_arg(ctx, src, field);
    n numeric;
BEGIN
    IF v IS NULL THEN
        IF required THEN
            PERFORM tipcast_bad(field, field || ' is required');
        END IF;
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) = 'number' AND src = 'body' THEN
        n := v::numeric;
    ELSIF jsonb_typeof(v) = 'string' AND src <> 'body' AND v #>> '{}' ~ '^-?[0-9]{1,19}$' THEN
        n := (v #>> '{}')::numeric;
    ELSE
        PERFORM tipcast_bad(field, format('%s must be an integer from %s to %s', field, lo, hi));
    END IF;
    IF scale(n) > 0 OR n < lo OR n > hi THEN
        PERFORM tipcast_bad(field, format('%s must be an integer from %s to %s', field, lo, hi));
    END IF;
    RETURN n::bigint;
END;
$$;

-- An amount of coins or currency minor units: 1 .. 2^53 - 1.
CREATE FUNCTION tipcast_arg_amount(ctx jsonb, field text, required boolean DEFAULT true) RETURNS bigint
LANGUAGE sql AS $$
    SELECT tipcast_arg_int(ctx, field, 1, 9007199254740991, 'body', required);
$$;

-- A string argument of 1..maxlen characters matching pattern (when given).
CREATE FUNCTION tipcast_arg_text(ctx jsonb, field text, maxlen int, src text DEFAULT 'body',
                                 required boolean DEFAULT true, pattern text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := tipcast_arg(ctx, src, field);
    s text;
BEGIN
    IF v IS NULL THEN
        IF required THEN
            PERFORM tipcast_bad(field, field || ' is required');
        END IF;
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) <> 'string' THEN
        PERFORM tipcast_bad(field, field || ' must be a string');
    END IF;
    s := v #>> '{}';
    IF length(s) < 1 OR length(s) > maxlen THEN
        PERFORM tipcast_bad(field, format('%s must be 1 to %s characters', field, maxlen));
    END IF;
    IF pattern IS NOT NULL AND s !~ pattern THEN
        PERFORM tipcast_bad(field, format('%s must match %s', field, pattern));
    END IF;
    RETURN s;
END;
$$;

-- An id of a user, creator, agency, package, order or refund: 1..64 bytes of
-- [A-Za-z0-9_.-] (docs/admin-api.md, "Routes").
CREATE FUNCTION tipcast_arg_id(ctx jsonb, field text, src text DEFAULT 'body', required boolean DEFAULT true)
RETURNS text
LANGUAGE sql AS $$
    SELECT tipcast_arg_text(ctx, field, 64, src, required, '^[A-Za-z0-9_.-]{1,64}$');
$$;

-- An idempotency key (request_id): the X-Request-Id alphabet, with ':'.
CREATE FUNCTION tipcast_arg_key(ctx jsonb, field text) RETURNS text
LANGUAGE sql AS $$
    SELECT tipcast_arg_text(ctx, field, 64, 'body', true, '^[A-Za-z0-9_.:-]{1,64}$');
$$;

-- A path parameter: ctx->'path'->name, or ctx->'path'->'id' when the caller
-- names every path parameter id.
CREATE FUNCTION tipcast_path(ctx jsonb, name text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('path', jsonb_build_object(name, coalesce(ctx->'path'->name, ctx->'path'->'id')));
$$;

CREATE FUNCTION tipcast_path_id(ctx jsonb, name text DEFAULT 'id') RETURNS text
LANGUAGE sql AS $$ SELECT tipcast_arg_id(tipcast_path(ctx, name), name, 'path'); $$;

-- A withdrawal id in a path: a positive bigint in decimal.
CREATE FUNCTION tipcast_path_serial(ctx jsonb) RETURNS bigint
LANGUAGE sql AS $$ SELECT tipcast_arg_int(tipcast_path(ctx, 'id'), 'id', 1, 9223372036854775807, 'path'); $$;

CREATE FUNCTION tipcast_arg_bool(ctx jsonb, field text, dflt boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := tipcast_arg(ctx, 'body', field);
BEGIN
    IF v IS NULL THEN
        RETURN dflt;
    END IF;
    IF jsonb_typeof(v) <> 'boolean' THEN
        PERFORM tipcast_bad(field, field || ' must be true or false');
    END IF;
    RETURN v::boolean;
END;
$$;

-- A time: an RFC 3339 date-time, or a date (its 00:00 UTC). A time without
-- an offset is UTC.
CREATE FUNCTION tipcast_arg_time(ctx jsonb, field text, src text DEFAULT 'body') RETURNS timestamptz
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    s text := tipcast_arg_text(ctx, field, 40, src, false);
BEGIN
    IF s IS NULL THEN
        RETURN NULL;
    END IF;
    IF s !~ '^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?)?$' THEN
        PERFORM tipcast_bad(field, field || ' must be an RFC 3339 time or a date (YYYY-MM-DD)');
    END IF;
    BEGIN
        RETURN s::timestamptz;
    EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format OR data_exception THEN
        PERFORM tipcast_bad(field, field || ' is not a valid time');
    END;
END;
$$;

-- ?limit= (1..500, default 50).
CREATE FUNCTION tipcast_arg_limit(ctx jsonb) RETURNS int
LANGUAGE sql AS $$ SELECT coalesce(tipcast_arg_int(ctx, 'limit', 1, 500, 'query', false), 50)::int; $$;

-- One of a fixed set of values (a state filter), or NULL when absent.
CREATE FUNCTION tipcast_arg_enum(ctx jsonb, field text, allowed text[], src text DEFAULT 'query') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    s text := tipcast_arg_text(ctx, field, 64, src, false);
BEGIN
    IF s IS NOT NULL AND NOT s = ANY (allowed) THEN
        PERFORM tipcast_bad(field, format('%s must be one of %s', field, array_to_string(allowed, ', ')));
    END IF;
    RETURN s;
END;
$$;

-- Keyset cursors. A list ordered by a bigserial id pages by the last id; a
-- list ordered by time and a text id by "<epoch microseconds>|<id>". The
-- client treats both as opaque strings.
CREATE FUNCTION tipcast_arg_after_id(ctx jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    s text := tipcast_arg_text(ctx, 'after', 40, 'query', false);
BEGIN
    IF s IS NOT NULL AND s !~ '^[0-9]{1,18}$' THEN
        PERFORM tipcast_bad('after', 'after must be the next cursor of the previous page');
    END IF;
    RETURN s::bigint;
END;
$$;

CREATE FUNCTION tipcast_cursor(t timestamptz, id text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT ((extract(epoch FROM t) * 1000000)::numeric(30, 0))::text || '|' || id;
$$;

CREATE FUNCTION tipcast_arg_after_time(ctx jsonb, OUT at timestamptz, OUT id text)
LANGUAGE plpgsql AS $$
DECLARE
    s text := tipcast_arg_text(ctx, 'after', 200, 'query', false);
BEGIN
    IF s IS NULL THEN
        RETURN;
    END IF;
    IF s !~ '^-?[0-9]{1,17}\|[A-Za-z0-9_.:-]{1,128}$' THEN
        PERFORM tipcast_bad('after', 'after must be the next cursor of the previous page');
    END IF;
    at := 'epoch'::timestamptz + split_part(s, '|', 1)::bigint * interval '1 microsecond';
    id := substr(s, strpos(s, '|') + 1);
END;
$$;

-- RFC 3339 in UTC, with microseconds (what PostgreSQL stores).
CREATE FUNCTION tipcast_ts(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
$$;

CREATE FUNCTION tipcast_webhooks_on(ctx jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce(jsonb_typeof(ctx->'webhooks') = 'boolean' AND (ctx->'webhooks')::boolean, false); $$;

-- A setting from ctx->'settings' (tipcastd's configuration), or the
-- documented default when the caller does not pass it.
CREATE FUNCTION tipcast_setting_int(ctx jsonb, name text, dflt bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(ctx->'settings'->name) = 'number' THEN (ctx->'settings'->>name)::numeric::bigint
                ELSE dflt END;
$$;

-- A creator or user may read only its own statements (the route table
-- checks it too; this keeps a wrong route row from leaking one).
CREATE FUNCTION tipcast_check_own(ctx jsonb, id text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF ctx->>'role' IN ('creator', 'viewer') AND id IS DISTINCT FROM ctx->>'actor' THEN
        PERFORM tipcast_refuse('forbidden', 'a ' || (ctx->>'role') || ' may read only its own records');
    END IF;
END;
$$;

CREATE FUNCTION tipcast_ok(body jsonb, status int DEFAULT 200) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT jsonb_build_object('status', status, 'body', body); $$;

-- ---- JSON shapes of docs/admin-api.md --------------------------------------------

CREATE FUNCTION tipcast_recharge_json(r recharges) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', r.id, 'user', r.user_id, 'currency', r.currency,
        'amount_minor', r.amount_minor, 'coins', r.coins, 'package_id', r.package_id, 'state', r.state,
        'payment_id', r.payment_id, 'failure', r.failure, 'created_at', tipcast_ts(r.created_at),
        'paid_at', tipcast_ts(r.paid_at), 'credited_at', tipcast_ts(r.credited_at));
$$;

CREATE FUNCTION tipcast_refund_json(f refunds) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', f.id, 'order_id', f.order_id, 'amount', f.amount, 'reason', f.reason,
        'platform_fee', f.platform_fee, 'agency_share', f.agency_share, 'creator_net', f.creator_net,
        'state', f.state, 'created_at', tipcast_ts(f.created_at));
$$;

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

CREATE FUNCTION tipcast_withdrawal_json(w withdrawals) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', w.id, 'creator', w.creator, 'amount', w.amount, 'state', w.state,
        'payout_reference', w.payout_reference, 'reason', w.reason, 'requested_at', tipcast_ts(w.requested_at),
        'decided_by', w.decided_by, 'decided_at', tipcast_ts(w.decided_at), 'paid_at', tipcast_ts(w.paid_at));
$$;

CREATE FUNCTION tipcast_rule_json(rule_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', r.id, 'name', r.name, 'effective_at', tipcast_ts(r.effective_at),
        'agency_share_bp', r.agency_share_bp,
        'tiers', coalesce((SELECT jsonb_agg(jsonb_build_object('min_volume', t.min_volume,
                                                               'platform_fee_bp', t.platform_fee_bp)
                                            ORDER BY t.min_volume)
                           FROM revenue_rule_tiers t WHERE t.rule_id = r.id), '[]'::jsonb),
        'created_by', r.created_by, 'created_at', tipcast_ts(r.created_at))
    FROM revenue_rules r WHERE r.id = rule_id;
$$;

CREATE FUNCTION tipcast_package_json(p recharge_packages) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', p.id, 'currency', p.currency, 'amount_minor', p.amount_minor,
                              'coins', p.coins, 'enabled', p.enabled);
$$;

CREATE FUNCTION tipcast_rate_json(r currency_rates) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('currency', r.currency, 'coins_per_unit', r.coins_per_unit,
                              'minor_per_unit', r.minor_per_unit);
$$;

CREATE FUNCTION tipcast_balance_json(creator_id text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('creator', creator_id, 'pending', coalesce(b.pending, 0),
        'available', coalesce(b.available, 0), 'frozen', coalesce(b.frozen, 0),
        'withdrawable', greatest(0, coalesce(b.available, 0) - coalesce(b.frozen, 0)),
        'paid_out', coalesce(b.paid_out, 0), 'debt', greatest(0, -coalesce(b.available, 0)))
    FROM (SELECT 1) one LEFT JOIN creator_balances b ON b.creator = creator_id;
$$;

CREATE FUNCTION tipcast_page(items jsonb, next text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT tipcast_ok(jsonb_build_object('items', items, 'next', next)); $$;

-- A keyset page from up to lim + 1 rows, in the list's order, each
-- [cursor, item]: the first lim items, and the cursor of the last of them
-- when there is one more row (else the page is the last: next null).
CREATE FUNCTION tipcast_paged(rows jsonb[], lim int) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT tipcast_page(
        coalesce((SELECT jsonb_agg(r->1 ORDER BY k) FROM unnest(rows[1:lim]) WITH ORDINALITY AS u (r, k)), '[]'),
        CASE WHEN cardinality(rows) > lim THEN rows[lim]->>0 END);
$$;

-- ---- Recharge packages and currency rates ------------------------------------------

CREATE FUNCTION tipcast_api_packages_list(ctx jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT tipcast_ok(jsonb_build_object(
        'items', coalesce((SELECT jsonb_agg(tipcast_package_json(p) ORDER BY p.id) FROM recharge_packages p), '[]'),
        'rates', coalesce((SELECT jsonb_agg(tipcast_rate_json(r) ORDER BY r.currency) FROM currency_rates r), '[]')));
$$;

CREATE FUNCTION tipcast_api_package_put(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    pid text := tipcast_path_id(ctx);
    cur text := tipcast_arg_text(ctx, 'currency', 3, 'body', true, '^[A-Z]{3}$');
    minor bigint := tipcast_arg_amount(ctx, 'amount_minor');
    n_coins bigint := tipcast_arg_amount(ctx, 'coins');
    on_sale boolean := tipcast_arg_bool(ctx, 'enabled', true);
    old recharge_packages;
    new recharge_packages;
BEGIN
    -- A new package is inserted; an existing one is locked, then updated,
    -- so the audit's before is exactly the row the update replaced (also
    -- when two PUTs of a new package race: the second one updates the
    -- first one's row).
    INSERT INTO recharge_packages (id, currency, amount_minor, coins, enabled)
    VALUES (pid, cur, minor, n_coins, on_sale)
    ON CONFLICT (id) DO NOTHING RETURNING * INTO new;
    IF new.id IS NULL THEN
        SELECT * INTO old FROM recharge_packages WHERE id = pid FOR UPDATE;
        UPDATE recharge_packages SET currency = cur, amount_minor = minor, coins = n_coins, enabled = on_sale,
                                     updated_at = now()
        WHERE id = pid RETURNING * INTO new;
    END IF;
    PERFORM tipcast_audit(ctx, 'package.put', pid,
                          CASE WHEN old.id IS NULL THEN NULL ELSE tipcast_package_json(old) END,
                          tipcast_package_json(new));
    RETURN tipcast_ok(tipcast_package_json(new));
END;
$$;

CREATE FUNCTION tipcast_api_rate_put(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cur text := tipcast_arg_text(tipcast_path(ctx, 'currency'), 'currency', 3, 'path', true, '^[A-Z]{3}$');
    cpu bigint := tipcast_arg_amount(ctx, 'coins_per_unit');
    mpu int := tipcast_arg_int(ctx, 'minor_per_unit', 1, 1000000);
    old currency_rates;
    new currency_rates;
BEGIN
    -- As for packages: insert, or lock and update (an exact before).
    INSERT INTO currency_rates (currency, coins_per_unit, minor_per_unit)
    VALUES (cur, cpu, mpu)
    ON CONFLICT (currency) DO NOTHING RETURNING * INTO new;
    IF new.currency IS NULL THEN
        SELECT * INTO old FROM currency_rates WHERE currency = cur FOR UPDATE;
        UPDATE currency_rates SET coins_per_unit = cpu, minor_per_unit = mpu, updated_at = now()
        WHERE currency = cur RETURNING * INTO new;
    END IF;
    PERFORM tipcast_audit(ctx, 'rate.put', cur,
                          CASE WHEN old.currency IS NULL THEN NULL ELSE tipcast_rate_json(old) END,
                          tipcast_rate_json(new));
    RETURN tipcast_ok(tipcast_rate_json(new));
END;
$$;

-- ---- Recharges ----------------------------------------------------------------------

CREATE FUNCTION tipcast_api_recharge_create(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    uid text := tipcast_arg_id(ctx, 'user');
    rid text := tipcast_arg_key(ctx, 'request_id');
    pkg_id text := tipcast_arg_id(ctx, 'package_id', 'body', false);
    cur text;
    minor bigint;
    coins numeric;
    pkg recharge_packages;
    rate currency_rates;
    r recharges;
BEGIN
    IF pkg_id IS NOT NULL THEN
        IF tipcast_arg(ctx, 'body', 'currency') IS NOT NULL OR tipcast_arg(ctx, 'body', 'amount_minor') IS NOT NULL THEN
            PERFORM tipcast_bad('package_id', 'give either package_id or currency and amount_minor, not both');
        END IF;
        SELECT * INTO pkg FROM recharge_packages WHERE id = pkg_id;
        IF pkg.id IS NULL OR NOT pkg.enabled THEN
            PERFORM tipcast_bad('package_id', format('no enabled recharge package %s', pkg_id));
        END IF;
        cur := pkg.currency;
        minor := pkg.amount_minor;
        coins := pkg.coins;
    ELSE
        cur := tipcast_arg_text(ctx, 'currency', 3, 'body', true, '^[A-Z]{3}$');
        minor := tipcast_arg_amount(ctx, 'amount_minor');
        SELECT * INTO rate FROM currency_rates WHERE currency = cur;
        IF rate.currency IS NULL THEN
            PERFORM tipcast_bad('currency', format('no rate for currency %s', cur));
        END IF;
        -- Rounded down: the platform never mints a coin that was not paid for.
        coins := floor(minor::numeric * rate.coins_per_unit / rate.minor_per_unit);
        IF coins < 1 OR coins > 9007199254740991 THEN
            PERFORM tipcast_bad('amount_minor', format('%s %s buys %s coins (1 to 9007199254740991 allowed)',
                                                       minor, cur, coins));
        END IF;
    END IF;

    -- The request id is the idempotency key. A concurrent insert of the same
    -- key waits here for the first one and then returns nothing.
    INSERT INTO recharges (id, user_id, request_id, currency, amount_minor, coins, package_id, created_by)
    VALUES ('rc_' || replace(gen_random_uuid()::text, '-', ''), uid, rid, cur, minor, coins::bigint, pkg_id,
            coalesce(ctx->>'actor', '-'))
    ON CONFLICT (request_id) DO NOTHING
    RETURNING * INTO r;
    IF r.id IS NULL THEN
        SELECT * INTO r FROM recharges WHERE request_id = rid;
        -- The same request is the same user and the same choice: the
        -- package, or the currency and amount (whatever coins that makes
        -- under today's rate).
        IF r.user_id = uid AND r.package_id IS NOT DISTINCT FROM pkg_id
           AND (pkg_id IS NOT NULL OR (r.currency = cur AND r.amount_minor = minor)) THEN
            RETURN tipcast_ok(tipcast_recharge_json(r), 200);
        END IF;
        PERFORM tipcast_refuse('idempotency_conflict',
                               format('request_id %s was used for recharge %s with other parameters', rid, r.id));
    END IF;
    PERFORM tipcast_audit(ctx, 'recharge.create', r.id, NULL, tipcast_recharge_json(r));
    RETURN tipcast_ok(tipcast_recharge_json(r), 201);
END;
$$;

CREATE FUNCTION tipcast_api_recharge_get(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rid text := tipcast_arg_text(tipcast_path(ctx, 'id'), 'id', 64, 'path', true, '^[A-Za-z0-9_.-]{1,64}$');
    r recharges;
BEGIN
    SELECT * INTO r FROM recharges WHERE id = rid;
    IF r.id IS NULL THEN
        PERFORM tipcast_refuse('not_found', format('no recharge %s', rid));
    END IF;
    RETURN tipcast_ok(tipcast_recharge_json(r));
END;
$$;

CREATE FUNCTION tipcast_api_recharges_list(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    uid text := tipcast_arg_id(ctx, 'user', 'query', false);
    st text := tipcast_arg_enum(ctx, 'state', ARRAY['pending', 'paid', 'credited', 'failed']);
    lim int := tipcast_arg_limit(ctx);
    aft record := tipcast_arg_after_time(ctx);
BEGIN
    RETURN tipcast_paged(ARRAY(
        SELECT jsonb_build_array(tipcast_cursor(r.created_at, r.id), tipcast_recharge_json(r)) FROM recharges r
             WHERE (uid IS NULL OR r.user_id = uid) AND (st IS NULL OR r.state = st)
               AND (aft.at IS NULL OR (r.created_at, r.id) < (aft.at, aft.id))
             ORDER BY r.created_at DESC, r.id DESC LIMIT lim + 1), lim);
END;
$$;

-- ---- The payment callback ------------------------------------------------------------

-- The answer of a recharge whose payment is recorded: the recharge, and the
-- wallet credit tipcastd runs (idempotent by the recharge id, so answering
-- it again for a repeated callback credits once).
CREATE FUNCTION tipcast_recharge_paid_answer(r recharges, status int) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT tipcast_ok(jsonb_build_object('recharge', tipcast_recharge_json(r)), status)
           || jsonb_build_object('wallet', jsonb_build_object('kind', 'recharge', 'user', r.user_id,
                                                              'amount', r.coins, 'ref', r.id));
$$;

-- The amount_mismatch answer. It is returned, not raised: raising would roll
-- back the recharge's move to failed, its alert and its audit row, which must
-- stay (docs/admin-api.md, "POST /api/v1/payments/callback"). tipcastd
-- answers 409 with this body as it is.
CREATE FUNCTION tipcast_mismatch_answer(r recharges) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT tipcast_ok(jsonb_build_object('error', jsonb_build_object('code', 'amount_mismatch',
                                                                     'message', r.failure)), 409);
$$;

-- Called by tipcastd with the verified, parsed body of a callback (it checks
-- the HMAC and the timestamp itself). Idempotent by payment_id.
CREATE FUNCTION tipcast_api_payment_callback(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    pay_id text := tipcast_arg_text(ctx, 'payment_id', 128, 'body', true, '^[A-Za-z0-9_.:-]{1,128}$');
    rc_id text := tipcast_arg_text(ctx, 'recharge_id', 64, 'body', true, '^[A-Za-z0-9_.-]{1,64}$');
    paid bigint := tipcast_arg_amount(ctx, 'amount_minor');
    cur text := tipcast_arg_text(ctx, 'currency', 3, 'body', true, '^[A-Z]{3}$');
    status text := tipcast_arg_enum(ctx, 'status', ARRAY['succeeded', 'failed'], 'body');
    r recharges;
    before jsonb;
    other text;
BEGIN
    IF status IS NULL THEN
        PERFORM tipcast_bad('status', 'status is required');
    END IF;
    -- Concurrent deliveries queue on this lock; each later one sees the
    -- first one's result.
    SELECT * INTO r FROM recharges WHERE id = rc_id FOR UPDATE;
    IF r.id IS NULL THEN
        PERFORM tipcast_refuse('not_found', format('no recharge %s', rc_id));
    END IF;

    IF r.payment_id IS NOT NULL THEN
        -- A repeated delivery gets the first one's answer.
        IF r.payment_id = pay_id THEN
            IF r.state IN ('paid', 'credited') AND status = 'succeeded' THEN
                RETURN tipcast_recharge_paid_answer(r, 200);
            ELSIF r.state = 'failed' AND r.paid_amount_minor IS NOT NULL AND status = 'succeeded' THEN
                RETURN tipcast_mismatch_answer(r);
            ELSIF r.state = 'failed' AND status = 'failed' THEN
                RETURN tipcast_ok(jsonb_build_object('recharge', tipcast_recharge_json(r)));
            END IF;
        END IF;
        PERFORM tipcast_refuse('invalid_state',
                               format('recharge %s is %s (payment %s); payment %s wanted it %s', r.id, r.state,
                                      r.payment_id, pay_id, CASE status WHEN 'failed' THEN 'failed' ELSE 'paid' END));
    END IF;
    IF r.state <> 'pending' THEN
        PERFORM tipcast_refuse('invalid_state', format('recharge %s is %s, wanted %s', r.id, r.state,
                                                       CASE status WHEN 'failed' THEN 'failed' ELSE 'paid' END));
    END IF;
    SELECT id INTO other FROM recharges WHERE payment_id = pay_id;
    IF other IS NOT NULL THEN
        PERFORM tipcast_refuse('idempotency_conflict', format('payment %s was recorded for recharge %s', pay_id, other));
    END IF;

    before := tipcast_recharge_json(r);
    IF status = 'failed' THEN
        UPDATE recharges SET state = 'failed', payment_id = pay_id, failure = 'the payment provider reported the payment failed'
        WHERE id = r.id RETURNING * INTO r;
        PERFORM tipcast_audit(ctx, 'payment.failed', r.id, before, tipcast_recharge_json(r));
        PERFORM tipcast_webhook_enqueue(tipcast_webhooks_on(ctx), 'recharge.failed', 'recharge.failed:' || r.id,
                                        tipcast_recharge_json(r));
        RETURN tipcast_ok(jsonb_build_object('recharge', tipcast_recharge_json(r)));
    END IF;

    IF paid <> r.amount_minor OR cur <> r.currency THEN
        UPDATE recharges SET state = 'failed', payment_id = pay_id, paid_amount_minor = paid,
            failure = format('paid %s %s, the recharge is %s %s', paid, cur, r.amount_minor, r.currency)
        WHERE id = r.id RETURNING * INTO r;
        INSERT INTO alerts (kind, severity, subject, detail)
        VALUES ('recharge_amount_mismatch', 'critical', r.id,
                jsonb_build_object('recharge_id', r.id, 'payment_id', pay_id, 'user', r.user_id,
                                   'expected_amount_minor', r.amount_minor, 'expected_currency', r.currency,
                                   'paid_amount_minor', paid, 'paid_currency', cur));
        PERFORM tipcast_audit(ctx, 'payment.paid', r.id, before, tipcast_recharge_json(r), 'amount_mismatch');
        PERFORM tipcast_webhook_enqueue(tipcast_webhooks_on(ctx), 'recharge.failed', 'recharge.failed:' || r.id,
                                        tipcast_recharge_json(r));
        RETURN tipcast_mismatch_answer(r);
    END IF;

    UPDATE recharges SET state = 'paid', payment_id = pay_id, paid_amount_minor = paid, paid_at = now()
    WHERE id = r.id RETURNING * INTO r;
    PERFORM tipcast_audit(ctx, 'payment.paid', r.id, before, tipcast_recharge_json(r));
    RETURN tipcast_recharge_paid_answer(r, 200);
END;
$$;

-- A callback refused before its body was trusted (bad signature, stale
-- timestamp): audited, nothing else. ctx->>'outcome' names the refusal;
-- the body's ids are recorded when they look like ids (the body is not
-- verified, so nothing else of it is kept).
CREATE FUNCTION tipcast_api_payment_refused(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    outcome text := ctx->>'outcome';
    rc_id text := ctx->'body'->>'recharge_id';
    pay_id text := ctx->'body'->>'payment_id';
BEGIN
    IF outcome IS NULL OR outcome NOT IN ('bad_signature', 'stale_timestamp') THEN
        PERFORM tipcast_bad('outcome', 'outcome must be bad_signature or stale_timestamp');
    END IF;
    IF jsonb_typeof(ctx->'body') <> 'object' OR rc_id !~ '^[A-Za-z0-9_.-]{1,64}$' THEN
        rc_id := NULL;
    END IF;
    IF jsonb_typeof(ctx->'body') <> 'object' OR pay_id !~ '^[A-Za-z0-9_.:-]{1,128}$' THEN
        pay_id := NULL;
    END IF;
    PERFORM tipcast_audit(ctx, 'payment.callback', rc_id, NULL,
                          jsonb_build_object('payment_id', pay_id, 'timestamp', ctx->'timestamp'), outcome);
    RETURN tipcast_ok(jsonb_build_object('error', jsonb_build_object('code', outcome,
        'message', CASE outcome WHEN 'bad_signature' THEN 'the signature does not match'
                                ELSE 'the timestamp is more than 300 s from now' END)), 401);
END;
$$;

-- ---- Revenue rules, agencies ------------------------------------------------------------

CREATE FUNCTION tipcast_api_rules_list(ctx jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT tipcast_ok(jsonb_build_object('items',
        coalesce((SELECT jsonb_agg(tipcast_rule_json(r.id) ORDER BY r.effective_at DESC, r.id DESC)
                  FROM revenue_rules r), '[]')));
$$;

CREATE FUNCTION tipcast_api_rule_create(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    name text := tipcast_arg_text(ctx, 'name', 200);
    eff timestamptz := coalesce(tipcast_arg_time(ctx, 'effective_at'), now());
    agency_bp int := tipcast_arg_int(ctx, 'agency_share_bp', 0, 10000);
    tiers jsonb := tipcast_arg(ctx, 'body', 'tiers');
    t jsonb;
    i int := 0;
    f text;
    mv bigint;
    fee int;
    seen bigint[] := '{}';
    rule_id bigint;
BEGIN
    -- A rule only ever applies to orders after it: splits already made stay
    -- as they were (now() is this transaction's start).
    IF eff < now() THEN
        PERFORM tipcast_bad('effective_at', 'effective_at must not be in the past');
    END IF;
    IF tiers IS NULL OR jsonb_typeof(tiers) <> 'array' OR jsonb_array_length(tiers) NOT BETWEEN 1 AND 16 THEN
        PERFORM tipcast_bad('tiers', 'tiers must be an array of 1 to 16 tiers');
    END IF;
    IF EXISTS (SELECT 1 FROM revenue_rules r WHERE r.effective_at = eff) THEN
        PERFORM tipcast_bad('effective_at', 'a rule with this effective_at exists');
    END IF;
    INSERT INTO revenue_rules (name, effective_at, agency_share_bp, created_by)
    VALUES (name, eff, agency_bp, coalesce(ctx->>'actor', '-'))
    RETURNING id INTO rule_id;
    FOR t IN SELECT value FROM jsonb_array_elements(tiers) LOOP
        f := format('tiers[%s]', i);
        IF jsonb_typeof(t) <> 'object' THEN
            PERFORM tipcast_bad(f, f || ' must be an object');
        END IF;
        -- Checked under their full names (tiers[i].min_volume) for the HINT.
        mv := tipcast_arg_int(jsonb_build_object('body', jsonb_build_object(f || '.min_volume', t->'min_volume')),
                              f || '.min_volume', 0, 9007199254740991);
        fee := tipcast_arg_int(jsonb_build_object('body', jsonb_build_object(f || '.platform_fee_bp',
                                                                             t->'platform_fee_bp')),
                               f || '.platform_fee_bp', 0, 10000);
        IF mv = ANY (seen) THEN
            PERFORM tipcast_bad(f || '.min_volume', 'two tiers have min_volume ' || mv);
        END IF;
        IF fee + agency_bp > 10000 THEN
            PERFORM tipcast_bad(f || '.platform_fee_bp', 'platform_fee_bp + agency_share_bp must be at most 10000');
        END IF;
        seen := seen || mv;
        INSERT INTO revenue_rule_tiers (rule_id, min_volume, platform_fee_bp) VALUES (rule_id, mv, fee);
        i := i + 1;
    END LOOP;
    IF NOT 0 = ANY (seen) THEN
        PERFORM tipcast_bad('tiers', 'one tier must have min_volume 0');
    END IF;
    PERFORM tipcast_audit(ctx, 'rule.create', rule_id::text, NULL, tipcast_rule_json(rule_id));
    RETURN tipcast_ok(tipcast_rule_json(rule_id), 201);
EXCEPTION WHEN unique_violation THEN
    -- Two rules created at once for the same instant.
    PERFORM tipcast_bad('effective_at', 'a rule with this effective_at exists');
END;
$$;

CREATE FUNCTION tipcast_api_agencies_list(ctx jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT tipcast_ok(jsonb_build_object('items', coalesce((
        SELECT jsonb_agg(jsonb_build_object('id', a.id, 'name', a.name,
                                            'creators', (SELECT count(*) FROM creators c WHERE c.agency_id = a.id))
                         ORDER BY a.id)
        FROM agencies a), '[]')));
$$;

-- The agency id is the key: creating the same agency again answers 200 with
-- it; the same id with another name is a conflict, never a rename.
CREATE FUNCTION tipcast_api_agency_create(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    aid text := tipcast_arg_id(ctx, 'id');
    aname text := tipcast_arg_text(ctx, 'name', 200);
    a agencies;
    body jsonb;
BEGIN
    INSERT INTO agencies (id, name) VALUES (aid, aname) ON CONFLICT (id) DO NOTHING RETURNING * INTO a;
    IF a.id IS NULL THEN
        SELECT * INTO a FROM agencies WHERE id = aid;
        IF a.name = aname THEN
            RETURN tipcast_ok(jsonb_build_object('id', a.id, 'name', a.name,
                'creators', (SELECT count(*) FROM creators c WHERE c.agency_id = a.id)), 200);
        END IF;
        PERFORM tipcast_refuse('idempotency_conflict', format('agency %s exists with another name', aid));
    END IF;
    body := jsonb_build_object('id', a.id, 'name', a.name, 'creators', 0);
    PERFORM tipcast_audit(ctx, 'agency.create', aid, NULL, body);
    RETURN tipcast_ok(body, 201);
END;
$$;

CREATE FUNCTION tipcast_api_creator_agency_put(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cid text := tipcast_path_id(ctx);
    aid text;
    old_aid text;
BEGIN
    IF NOT ctx->'body' ? 'agency_id' THEN
        PERFORM tipcast_bad('agency_id', 'agency_id is required (an agency id, or null)');
    END IF;
    aid := tipcast_arg_id(ctx, 'agency_id', 'body', false);
    IF aid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM agencies WHERE id = aid) THEN
        PERFORM tipcast_bad('agency_id', format('no agency %s', aid));
    END IF;
    INSERT INTO creators (id) VALUES (cid) ON CONFLICT (id) DO NOTHING;
    SELECT agency_id INTO old_aid FROM creators WHERE id = cid FOR UPDATE;
    UPDATE creators SET agency_id = aid WHERE id = cid;
    PERFORM tipcast_audit(ctx, 'creator.agency', cid, jsonb_build_object('creator', cid, 'agency_id', old_aid),
                          jsonb_build_object('creator', cid, 'agency_id', aid));
    RETURN tipcast_ok(jsonb_build_object('creator', cid, 'agency_id', aid));
END;
$$;

-- ---- Orders and refunds ------------------------------------------------------------------

CREATE FUNCTION tipcast_api_order_get(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    oid text := tipcast_path_id(ctx);
    o orders;
BEGIN
    SELECT * INTO o FROM orders WHERE order_id = oid;
    IF o.order_id IS NULL THEN
        PERFORM tipcast_refuse('not_found', format('no order %s', oid));
    END IF;
    RETURN tipcast_ok(tipcast_order_json(o));
END;
$$;

-- The reversal of an order's split by a refund of r coins, given what earlier
-- refunds of the order left of each part. Each part is reversed in
-- proportion, rounded down, and never past what is left of it; the creator
-- takes the remainder, and when that is more than what is left of the
-- creator's part, the excess goes back to the agency, then to the platform.
-- So every part stays >= 0, the three sum to r, and the refund that
-- completes the order reverses exactly what is left of each part.
CREATE FUNCTION tipcast_refund_split(amount bigint, platform_fee bigint, agency_share bigint, r bigint,
                                     fee_left bigint, agency_left bigint, net_left bigint,
                                     OUT fee_r bigint, OUT agency_r bigint, OUT creator_r bigint)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    excess bigint;
    add bigint;
BEGIN
    fee_r := least(fee_left, floor(platform_fee::numeric * r / amount)::bigint);
    agency_r := least(agency_left, floor(agency_share::numeric * r / amount)::bigint);
    creator_r := r - fee_r - agency_r;
    IF creator_r > net_left THEN
        excess := creator_r - net_left;
        add := least(excess, agency_left - agency_r);
        agency_r := agency_r + add;
        excess := excess - add;
        add := least(excess, fee_left - fee_r);
        fee_r := fee_r + add;
        excess := excess - add;
        creator_r := net_left;
        -- r <= fee_left + agency_left + net_left (the caller checks it), so
        -- the excess always fits.
        IF excess <> 0 THEN
            RAISE EXCEPTION 'tipcast_refund_split: % coins do not fit the order''s remaining split', excess;
        END IF;
    END IF;
END;
$$;

CREATE FUNCTION tipcast_refund_answer(f refunds, status int) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT tipcast_ok(jsonb_build_object('refund', tipcast_refund_json(f),
                                         'order', (SELECT tipcast_order_json(o) FROM orders o WHERE o.order_id = f.order_id)),
                      status)
           || CASE WHEN f.state = 'pending' THEN
                  jsonb_build_object('wallet', jsonb_build_object('kind', 'refund', 'user', f.user_id,
                      'amount', f.amount, 'ref', f.id, 'room', f.room,
                      'order_ts_ms', (extract(epoch FROM f.order_created_at) * 1000)::bigint))
              ELSE '{}'::jsonb END;
$$;

CREATE FUNCTION tipcast_api_order_refund(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    oid text := tipcast_path_id(ctx);
    fid text := tipcast_arg_id(ctx, 'refund_id');
    amt bigint := tipcast_arg_amount(ctx, 'amount', false);
    reason text := tipcast_arg_text(ctx, 'reason', 500);
    o orders;
    f refunds;
    before jsonb;
    done record;
    s record;
BEGIN
    -- The order's lock serialises its refunds (and a settlement run, which
    -- locks the orders it settles), so "what is left" and "settled" below
    -- are exact.
    SELECT * INTO o FROM orders WHERE order_id = oid FOR UPDATE;
    IF o.order_id IS NULL THEN
        PERFORM tipcast_refuse('not_found', format('no order %s', oid));
    END IF;
    -- Looked up after the lock: a concurrent call with the same refund id on
    -- this order has committed by now.
    SELECT * INTO f FROM refunds WHERE id = fid;
    IF f.id IS NOT NULL THEN
        IF f.order_id = oid AND (amt IS NULL OR amt = f.amount) THEN
            RETURN tipcast_refund_answer(f, 200);
        END IF;
        PERFORM tipcast_refuse('idempotency_conflict',
                               format('refund_id %s was used for %s coins of order %s', fid, f.amount, f.order_id));
    END IF;
    IF o.state = 'refunded' THEN
        PERFORM tipcast_refuse('invalid_state', format('order %s is refunded, wanted partially_refunded or refunded', oid));
    END IF;
    amt := coalesce(amt, o.amount - o.refunded);
    IF amt > o.amount - o.refunded THEN
        PERFORM tipcast_refuse('refund_exceeds_order',
                               format('%s coins asked, %s of order %s are left to refund', amt, o.amount - o.refunded, oid));
    END IF;
    SELECT coalesce(sum(x.platform_fee), 0)::bigint AS fee, coalesce(sum(x.agency_share), 0)::bigint AS agency,
           coalesce(sum(x.creator_net), 0)::bigint AS net
    INTO done FROM refunds x WHERE x.order_id = oid;
    SELECT * INTO s FROM tipcast_refund_split(o.amount, o.platform_fee, o.agency_share, amt, o.platform_fee - done.fee,
                                              o.agency_share - done.agency, o.creator_net - done.net);
    before := tipcast_order_json(o) - 'refunds';
    INSERT INTO refunds (id, order_id, amount, reason, user_id, creator, room, order_created_at, platform_fee,
                         agency_id, agency_share, creator_net, settled, actor)
    VALUES (fid, oid, amt, reason, o.sender, o.creator, o.room, o.created_at, s.fee_r, o.agency_id, s.agency_r,
            s.creator_r, o.settlement_id IS NOT NULL, coalesce(ctx->>'actor', '-'))
    RETURNING * INTO f;
    UPDATE orders SET refunded = refunded + amt,
                      state = CASE WHEN refunded + amt = amount THEN 'refunded' ELSE 'partially_refunded' END
    WHERE order_id = oid RETURNING * INTO o;
    PERFORM tipcast_audit(ctx, 'order.refund', oid, before,
                          (tipcast_order_json(o) - 'refunds') || jsonb_build_object('refund', tipcast_refund_json(f)));
    RETURN tipcast_refund_answer(f, 201);
EXCEPTION WHEN unique_violation THEN
    -- The same refund id for another order, at the same moment.
    PERFORM tipcast_refuse('idempotency_conflict', format('refund_id %s is being used for another order', fid));
END;
$$;

-- ---- Settlement ---------------------------------------------------------------------------

-- Settles every order created before cutoff that no run settled yet: per
-- creator, one settlements row, the orders point at it, and their net
-- (minus the creator part of their refunds, see the top of this file) moves
-- from pending to available. A second run at the same cutoff finds the
-- (creator, cutoff) rows and changes nothing. Used by the API route and by
-- tipcastd's own timer (ctx then says who ran it). Audited when anything
-- was settled, or always when called by a person.
CREATE FUNCTION tipcast_settle_run(cutoff timestamptz,
                                   ctx jsonb DEFAULT '{"actor": "tipcastd", "role": "system"}') RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    c text;
    sid bigint;
    n_orders int;
    net bigint;
    reversed bigint;
    moved bigint;
    tot_creators int := 0;
    tot_orders int := 0;
    tot_amount bigint := 0;
    result jsonb;
BEGIN
    FOR c IN SELECT DISTINCT o.creator FROM orders o
             WHERE o.settlement_id IS NULL AND o.created_at < cutoff ORDER BY 1 LOOP
        -- The balance row first (lock order: creator_balances, then orders).
        INSERT INTO creator_balances (creator) VALUES (c) ON CONFLICT (creator) DO NOTHING;
        PERFORM 1 FROM creator_balances WHERE creator = c FOR UPDATE;
        INSERT INTO settlements (creator, cutoff, amount, orders) VALUES (c, cutoff, 0, 0)
        ON CONFLICT ON CONSTRAINT settlements_creator_cutoff_key DO NOTHING RETURNING id INTO sid;
        CONTINUE WHEN sid IS NULL;
        -- Lock the orders, then read their refunds in a later statement:
        -- a refund that held an order's lock has committed by then and is
        -- counted; one that comes after sees settlement_id and is settled.
        PERFORM 1 FROM orders o WHERE o.creator = c AND o.settlement_id IS NULL AND o.created_at < cutoff
        ORDER BY o.order_id FOR UPDATE;
        WITH upd AS (
            UPDATE orders o SET settlement_id = sid
            WHERE o.creator = c AND o.settlement_id IS NULL AND o.created_at < cutoff
            RETURNING o.creator_net)
        SELECT count(*), coalesce(sum(creator_net), 0) INTO n_orders, net FROM upd;
        SELECT coalesce(sum(f.creator_net), 0) INTO reversed
        FROM refunds f JOIN orders o ON o.order_id = f.order_id WHERE o.settlement_id = sid;
        moved := net - reversed;
        UPDATE settlements SET amount = moved, orders = n_orders WHERE id = sid;
        UPDATE creator_balances SET pending = pending - moved, available = available + moved, updated_at = now()
        WHERE creator = c;
        tot_creators := tot_creators + 1;
        tot_orders := tot_orders + n_orders;
        tot_amount := tot_amount + moved;
    END LOOP;
    result := jsonb_build_object('cutoff', tipcast_ts(cutoff), 'creators', tot_creators, 'orders', tot_orders,
                                 'amount', tot_amount);
    IF tot_creators > 0 OR ctx->>'role' IS DISTINCT FROM 'system' THEN
        PERFORM tipcast_audit(ctx, 'settlement.run', NULL, NULL, result);
    END IF;
    RETURN result;
END;
$$;

CREATE FUNCTION tipcast_api_settlement_run(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    latest timestamptz := now() - make_interval(days => tipcast_setting_int(ctx, 'settlement_delay_days', 7)::int);
    cutoff timestamptz := coalesce(tipcast_arg_time(ctx, 'cutoff'), latest);
BEGIN
    IF cutoff > latest THEN
        PERFORM tipcast_bad('cutoff', format('cutoff must be at most now minus the settlement delay (%s)', tipcast_ts(latest)));
    END IF;
    RETURN tipcast_ok(tipcast_settle_run(cutoff, ctx));
END;
$$;

-- ---- Withdrawals ----------------------------------------------------------------------------

-- Requested by a creator for itself (ctx->>'actor' is the creator).
-- Idempotent by (creator, request_id). The creator's balance row is locked
-- for the whole check-and-freeze, so concurrent requests never freeze more
-- than is available.
CREATE FUNCTION tipcast_api_withdrawal_request(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cid text := tipcast_arg_id(jsonb_build_object('body', jsonb_build_object('actor', ctx->'actor')), 'actor');
    amt bigint := tipcast_arg_amount(ctx, 'amount');
    rid text := tipcast_arg_key(ctx, 'request_id');
    wmin bigint := tipcast_setting_int(ctx, 'withdrawal_min', 1000);
    b creator_balances;
    w withdrawals;
BEGIN
    INSERT INTO creator_balances (creator) VALUES (cid) ON CONFLICT (creator) DO NOTHING;
    SELECT * INTO b FROM creator_balances WHERE creator = cid FOR UPDATE;
    SELECT * INTO w FROM withdrawals WHERE creator = cid AND request_id = rid;
    IF w.id IS NOT NULL THEN
        IF w.amount = amt THEN
            RETURN tipcast_ok(tipcast_withdrawal_json(w), 200);
        END IF;
        PERFORM tipcast_refuse('idempotency_conflict',
                               format('request_id %s was used for withdrawal %s of %s coins', rid, w.id, w.amount));
    END IF;
    IF amt < wmin THEN
        PERFORM tipcast_refuse('below_minimum', format('a withdrawal is at least %s coins', wmin));
    END IF;
    IF amt > b.available - b.frozen THEN
        PERFORM tipcast_refuse('insufficient_available',
                               format('%s coins asked, %s withdrawable', amt, greatest(0, b.available - b.frozen)));
    END IF;
    UPDATE creator_balances SET frozen = frozen + amt, updated_at = now() WHERE creator = cid;
    INSERT INTO withdrawals (creator, amount, request_id) VALUES (cid, amt, rid) RETURNING * INTO w;
    PERFORM tipcast_audit(ctx, 'withdrawal.request', w.id::text,
                          jsonb_build_object('creator', cid, 'available', b.available, 'frozen', b.frozen),
                          tipcast_withdrawal_json(w) || jsonb_build_object('available', b.available,
                                                                           'frozen', b.frozen + amt));
    PERFORM tipcast_webhook_enqueue(tipcast_webhooks_on(ctx), 'withdrawal.requested', 'withdrawal.requested:' || w.id,
                                    tipcast_withdrawal_json(w));
    RETURN tipcast_ok(tipcast_withdrawal_json(w), 201);
END;
$$;

-- One decision on a withdrawal: locks it, checks the transition, and
-- returns it with its balance row locked (withdrawals before balances).
CREATE FUNCTION tipcast_withdrawal_lock(ctx jsonb, wanted text, allowed_from text[]) RETURNS withdrawals
LANGUAGE plpgsql AS $$
DECLARE
    wid bigint := tipcast_path_serial(ctx);
    w withdrawals;
BEGIN
    SELECT * INTO w FROM withdrawals WHERE id = wid FOR UPDATE;
    IF w.id IS NULL THEN
        PERFORM tipcast_refuse('not_found', format('no withdrawal %s', wid));
    END IF;
    IF NOT w.state = ANY (allowed_from) THEN
        PERFORM tipcast_refuse('invalid_state', format('withdrawal %s is %s, wanted %s', wid, w.state, wanted));
    END IF;
    INSERT INTO creator_balances (creator) VALUES (w.creator) ON CONFLICT (creator) DO NOTHING;
    PERFORM 1 FROM creator_balances WHERE creator = w.creator FOR UPDATE;
    RETURN w;
END;
$$;

CREATE FUNCTION tipcast_withdrawal_decided(ctx jsonb, old withdrawals, w withdrawals, action text) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tipcast_audit(ctx, 'withdrawal.' || action, w.id::text, tipcast_withdrawal_json(old),
                          tipcast_withdrawal_json(w));
    PERFORM tipcast_webhook_enqueue(tipcast_webhooks_on(ctx), 'withdrawal.' || w.state,
                                    'withdrawal.' || w.state || ':' || w.id, tipcast_withdrawal_json(w));
    RETURN tipcast_ok(tipcast_withdrawal_json(w));
END;
$$;

CREATE FUNCTION tipcast_api_withdrawal_approve(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    old withdrawals := tipcast_withdrawal_lock(ctx, 'approved', ARRAY['requested']);
    w withdrawals;
BEGIN
    UPDATE withdrawals SET state = 'approved', decided_by = coalesce(ctx->>'actor', '-'), decided_at = now()
    WHERE id = old.id RETURNING * INTO w;
    RETURN tipcast_withdrawal_decided(ctx, old, w, 'approve');
END;
$$;

CREATE FUNCTION tipcast_api_withdrawal_reject(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    why text := tipcast_arg_text(ctx, 'reason', 500);
    old withdrawals := tipcast_withdrawal_lock(ctx, 'rejected', ARRAY['requested', 'approved']);
    w withdrawals;
BEGIN
    UPDATE withdrawals SET state = 'rejected', reason = why, decided_by = coalesce(ctx->>'actor', '-'),
                           decided_at = now()
    WHERE id = old.id RETURNING * INTO w;
    UPDATE creator_balances SET frozen = frozen - w.amount, updated_at = now() WHERE creator = w.creator;
    RETURN tipcast_withdrawal_decided(ctx, old, w, 'reject');
END;
$$;

-- approved -> paid: the frozen coins leave: the ledger moves them from
-- creator:C to payout (movement 'withdrawal:<id>'), available and frozen go
-- down, paid_out up. Refused when refunds of settled orders have since left
-- less available than the withdrawal (paying it would pay out a debt):
-- reject it, or pay once later settlements have covered it.
CREATE FUNCTION tipcast_api_withdrawal_pay(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    ref text := tipcast_arg_text(ctx, 'payout_reference', 128);
    old withdrawals := tipcast_withdrawal_lock(ctx, 'paid', ARRAY['approved']);
    w withdrawals;
    avail bigint;
BEGIN
    SELECT available INTO avail FROM creator_balances WHERE creator = old.creator;
    IF avail < old.amount THEN
        PERFORM tipcast_refuse('insufficient_available',
                               format('withdrawal %s is %s coins, %s available (refunds since its request)', old.id,
                                      old.amount, avail));
    END IF;
    UPDATE withdrawals SET state = 'paid', payout_reference = ref, paid_at = now()
    WHERE id = old.id RETURNING * INTO w;
    UPDATE creator_balances SET frozen = frozen - w.amount, available = available - w.amount,
                                paid_out = paid_out + w.amount, updated_at = now()
    WHERE creator = w.creator;
    INSERT INTO ledger (movement_id, account, delta, kind, note, created_at)
    VALUES ('withdrawal:' || w.id, 'creator:' || w.creator, -w.amount, 'withdrawal', ref, w.paid_at),
           ('withdrawal:' || w.id, 'payout', w.amount, 'withdrawal', ref, w.paid_at);
    RETURN tipcast_withdrawal_decided(ctx, old, w, 'pay');
END;
$$;

-- A creator sees only its own (?creator= is ignored for it).
CREATE FUNCTION tipcast_api_withdrawals_list(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    st text := tipcast_arg_enum(ctx, 'state', ARRAY['requested', 'approved', 'paid', 'rejected']);
    cid text := CASE WHEN ctx->>'role' = 'creator' THEN ctx->>'actor'
                     ELSE tipcast_arg_id(ctx, 'creator', 'query', false) END;
    lim int := tipcast_arg_limit(ctx);
    aft bigint := tipcast_arg_after_id(ctx);
BEGIN
    IF ctx->>'role' = 'creator' AND cid IS NULL THEN
        PERFORM tipcast_refuse('forbidden', 'a creator token without a subject');
    END IF;
    RETURN tipcast_paged(ARRAY(
        SELECT jsonb_build_array(w.id::text, tipcast_withdrawal_json(w)) FROM withdrawals w
             WHERE (cid IS NULL OR w.creator = cid) AND (st IS NULL OR w.state = st) AND (aft IS NULL OR w.id < aft)
             ORDER BY w.id DESC LIMIT lim + 1), lim);
END;
$$;

-- ---- Creators' statements ---------------------------------------------------------------------

CREATE FUNCTION tipcast_api_creator_balance(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cid text := tipcast_path_id(ctx);
BEGIN
    PERFORM tipcast_check_own(ctx, cid);
    RETURN tipcast_ok(tipcast_balance_json(cid));
END;
$$;

CREATE FUNCTION tipcast_api_creator_income(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cid text := tipcast_path_id(ctx);
    t_from timestamptz := tipcast_arg_time(ctx, 'from', 'query');
    t_to timestamptz := tipcast_arg_time(ctx, 'to', 'query');
    lim int := tipcast_arg_limit(ctx);
    aft record := tipcast_arg_after_time(ctx);
BEGIN
    PERFORM tipcast_check_own(ctx, cid);
    RETURN tipcast_paged(ARRAY(
        SELECT jsonb_build_array(tipcast_cursor(o.created_at, o.order_id), jsonb_build_object('order_id', o.order_id, 'kind', o.kind,
            'sender', o.sender, 'amount', o.amount, 'platform_fee', o.platform_fee, 'agency_share', o.agency_share,
            'creator_net', o.creator_net, 'refunded', o.refunded, 'state', o.state,
            'created_at', tipcast_ts(o.created_at), 'settled', o.settlement_id IS NOT NULL)) FROM orders o
             WHERE o.creator = cid AND (t_from IS NULL OR o.created_at >= t_from) AND (t_to IS NULL OR o.created_at < t_to)
               AND (aft.at IS NULL OR (o.created_at, o.order_id) < (aft.at, aft.id))
             ORDER BY o.created_at DESC, o.order_id DESC LIMIT lim + 1), lim);
END;
$$;

CREATE FUNCTION tipcast_api_creator_settlements(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cid text := tipcast_path_id(ctx);
    lim int := tipcast_arg_limit(ctx);
    aft bigint := tipcast_arg_after_id(ctx);
BEGIN
    PERFORM tipcast_check_own(ctx, cid);
    RETURN tipcast_paged(ARRAY(
        SELECT jsonb_build_array(s.id::text, jsonb_build_object('id', s.id, 'cutoff', tipcast_ts(s.cutoff),
            'amount', s.amount, 'orders', s.orders, 'created_at', tipcast_ts(s.created_at))) FROM settlements s WHERE s.creator = cid AND (aft IS NULL OR s.id < aft)
             ORDER BY s.id DESC LIMIT lim + 1), lim);
END;
$$;

-- ---- Users' transactions, platform profit, audit, alerts ------------------------------------------

CREATE FUNCTION tipcast_api_user_transactions(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    uid text := tipcast_path_id(ctx);
    t_from timestamptz := tipcast_arg_time(ctx, 'from', 'query');
    t_to timestamptz := tipcast_arg_time(ctx, 'to', 'query');
    lim int := tipcast_arg_limit(ctx);
    aft bigint := tipcast_arg_after_id(ctx);
BEGIN
    PERFORM tipcast_check_own(ctx, uid);
    -- Newest first by the row id (the index ledger_account); the row id
    -- follows the insertion order, which is the order of the movements.
    RETURN tipcast_paged(ARRAY(
        SELECT jsonb_build_array(l.id::text, jsonb_build_object('movement_id', l.movement_id, 'kind', l.kind,
            'delta', l.delta, 'note', l.note, 'created_at', tipcast_ts(l.created_at))) FROM ledger l
             WHERE l.account = 'user:' || uid AND (aft IS NULL OR l.id < aft)
               AND (t_from IS NULL OR l.created_at >= t_from) AND (t_to IS NULL OR l.created_at < t_to)
             ORDER BY l.id DESC LIMIT lim + 1), lim);
END;
$$;

-- Per UTC day from..to (dates, both included; default the last 30 days, at
-- most 366): the orders' gross and split by their creation day, the fees
-- given back by refunds by the refund's day, the coins sold by recharges by
-- their payment day.
CREATE FUNCTION tipcast_api_platform_profit(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    d_to date := coalesce((tipcast_arg_time(ctx, 'to', 'query') AT TIME ZONE 'UTC')::date,
                          (now() AT TIME ZONE 'UTC')::date);
    d_from date := coalesce((tipcast_arg_time(ctx, 'from', 'query') AT TIME ZONE 'UTC')::date, d_to - 29);
    t0 timestamptz;
    t1 timestamptz;
BEGIN
    IF d_from > d_to OR d_to - d_from > 365 THEN
        PERFORM tipcast_bad('from', 'from must be at most to, and at most 366 days before it');
    END IF;
    t0 := d_from::timestamp AT TIME ZONE 'UTC';
    t1 := (d_to + 1)::timestamp AT TIME ZONE 'UTC';
    RETURN tipcast_ok(jsonb_build_object('items', (
        SELECT coalesce(jsonb_agg(jsonb_build_object('day', to_char(d.day, 'YYYY-MM-DD'),
                   'gross', coalesce(o.gross, 0), 'platform_fee', coalesce(o.fee, 0),
                   'agency_share', coalesce(o.agency, 0), 'creator_net', coalesce(o.net, 0),
                   'refunded_fee', coalesce(f.fee, 0), 'recharged_coins', coalesce(r.coins, 0),
                   'orders', coalesce(o.n, 0)) ORDER BY d.day), '[]')
        FROM generate_series(d_from, d_to, interval '1 day') AS d(day)
        LEFT JOIN (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, sum(amount) AS gross, sum(platform_fee) AS fee,
                          sum(agency_share) AS agency, sum(creator_net) AS net, count(*) AS n
                   FROM orders WHERE created_at >= t0 AND created_at < t1 GROUP BY 1) o ON o.day = d.day::date
        LEFT JOIN (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, sum(platform_fee) AS fee
                   FROM refunds WHERE created_at >= t0 AND created_at < t1 GROUP BY 1) f ON f.day = d.day::date
        LEFT JOIN (SELECT (paid_at AT TIME ZONE 'UTC')::date AS day, sum(coins) AS coins
                   FROM recharges WHERE state IN ('paid', 'credited') AND paid_at >= t0 AND paid_at < t1
                   GROUP BY 1) r ON r.day = d.day::date)));
END;
$$;

CREATE FUNCTION tipcast_api_audit_list(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    f_actor text := tipcast_arg_text(ctx, 'actor', 64, 'query', false);
    f_action text := tipcast_arg_text(ctx, 'action', 64, 'query', false);
    f_target text := tipcast_arg_text(ctx, 'target', 200, 'query', false);
    t_from timestamptz := tipcast_arg_time(ctx, 'from', 'query');
    t_to timestamptz := tipcast_arg_time(ctx, 'to', 'query');
    lim int := tipcast_arg_limit(ctx);
    aft bigint := tipcast_arg_after_id(ctx);
BEGIN
    RETURN tipcast_paged(ARRAY(
        SELECT jsonb_build_array(a.id::text, jsonb_build_object('id', a.id, 'at', tipcast_ts(a.at), 'actor', a.actor,
            'role', a.role, 'action', a.action, 'target', a.target, 'before', a.before, 'after', a.after,
            'request_id', a.request_id, 'client_addr', a.client_addr, 'outcome', a.outcome)) FROM audit_log a
             WHERE (f_actor IS NULL OR a.actor = f_actor) AND (f_action IS NULL OR a.action = f_action)
               AND (f_target IS NULL OR a.target = f_target) AND (t_from IS NULL OR a.at >= t_from)
               AND (t_to IS NULL OR a.at < t_to) AND (aft IS NULL OR a.id < aft)
             ORDER BY a.id DESC LIMIT lim + 1), lim);
END;
$$;

CREATE FUNCTION tipcast_api_alerts_list(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    f_kind text := tipcast_arg_text(ctx, 'kind', 64, 'query', false);
    lim int := tipcast_arg_limit(ctx);
    aft bigint := tipcast_arg_after_id(ctx);
BEGIN
    RETURN tipcast_paged(ARRAY(
        SELECT jsonb_build_array(a.id::text, jsonb_build_object('id', a.id, 'at', tipcast_ts(a.at), 'kind', a.kind,
            'severity', a.severity, 'subject', a.subject, 'detail', a.detail)) FROM alerts a WHERE (f_kind IS NULL OR a.kind = f_kind) AND (aft IS NULL OR a.id < aft)
             ORDER BY a.id DESC LIMIT lim + 1), lim);
END;
$$;

-- ---- Re-driving wallet credits ---------------------------------------------------------------

-- The wallet instructions whose credit has not reached PostgreSQL after
-- older_than_s seconds: recharges paid but not credited, refunds pending.
-- tipcastd runs them again (the wallet credit is idempotent by ref), at most
-- max_rows per call, oldest first.
CREATE FUNCTION tipcast_wallet_redrive(older_than_s int, max_rows int DEFAULT 1000) RETURNS SETOF jsonb
LANGUAGE sql STABLE AS $$
    SELECT w FROM (
        SELECT r.paid_at AS at, jsonb_build_object('kind', 'recharge', 'user', r.user_id, 'amount', r.coins,
                                                   'ref', r.id) AS w
        FROM recharges r WHERE r.state = 'paid' AND r.paid_at < now() - make_interval(secs => older_than_s)
        UNION ALL
        SELECT f.created_at, jsonb_build_object('kind', 'refund', 'user', f.user_id, 'amount', f.amount, 'ref', f.id,
                                                'room', f.room,
                                                'order_ts_ms', (extract(epoch FROM f.order_created_at) * 1000)::bigint)
        FROM refunds f WHERE f.state = 'pending' AND f.created_at < now() - make_interval(secs => older_than_s)
    ) due ORDER BY at LIMIT max_rows;
$$;
