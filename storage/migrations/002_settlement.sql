-- 002_settlement: money in and money out (docs/admin-api.md, docs/settlement.md).
--
-- Accounts of the double-entry ledger: 'user:<uid>' (the Redis wallet),
-- 'creator:<uid>' (earnings), 'agency:<id>' (a guild's share), 'platform'
-- (fees; minus every coin minted by a recharge or a credit), 'payout'
-- (coins that left to a bank). Every movement's rows sum to zero.
--
-- Every state change below is made by one SQL function (004_settlement_api.sql
-- and the ledger's tipcast_ledger_apply), under row locks, in the same
-- transaction as its audit_log row and its webhook_outbox row.

-- ---- Agencies and revenue rules ---------------------------------------------

CREATE TABLE agencies (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE creators ADD COLUMN agency_id text REFERENCES agencies (id);

-- A rule is in force from effective_at until the next rule's effective_at.
-- Rules are never edited: a change is a new rule (the orders name the rule
-- that split them, so an audit computes the same coins).
CREATE TABLE revenue_rules (
    id               bigserial PRIMARY KEY,
    name             text NOT NULL,
    effective_at     timestamptz NOT NULL UNIQUE,
    agency_share_bp  int NOT NULL CHECK (agency_share_bp BETWEEN 0 AND 10000),
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- The platform fee of a rule by the creator's month-to-date volume (gross
-- coins of their orders in the order's UTC month before it): the tier with
-- the largest min_volume <= that volume applies. Every rule has a tier at 0.
CREATE TABLE revenue_rule_tiers (
    rule_id          bigint NOT NULL REFERENCES revenue_rules (id),
    min_volume       bigint NOT NULL CHECK (min_volume >= 0),
    platform_fee_bp  int NOT NULL CHECK (platform_fee_bp BETWEEN 0 AND 10000),
    PRIMARY KEY (rule_id, min_volume)
);

-- Gross volume per creator and UTC month, raised by the ledger in the same
-- transaction as the orders (the tier input of the next orders).
CREATE TABLE creator_month_volume (
    creator  text NOT NULL,
    month    date NOT NULL,
    volume   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (creator, month)
);

-- ---- Orders: their split and their state ------------------------------------

ALTER TABLE orders
    ADD COLUMN rule_id              bigint,
    ADD COLUMN month_volume_before  bigint NOT NULL DEFAULT 0,
    ADD COLUMN platform_fee         bigint NOT NULL DEFAULT 0,
    ADD COLUMN agency_id            text,
    ADD COLUMN agency_share         bigint NOT NULL DEFAULT 0,
    ADD COLUMN creator_net          bigint,
    ADD COLUMN state                text NOT NULL DEFAULT 'succeeded',
    ADD COLUMN refunded             bigint NOT NULL DEFAULT 0,
    ADD COLUMN settlement_id        bigint;
UPDATE orders SET creator_net = amount WHERE creator_net IS NULL;
ALTER TABLE orders
    ALTER COLUMN creator_net SET NOT NULL,
    ADD CONSTRAINT orders_split_sums CHECK (platform_fee >= 0 AND agency_share >= 0 AND creator_net >= 0
                                            AND platform_fee + agency_share + creator_net = amount),
    ADD CONSTRAINT orders_state CHECK (state IN ('succeeded', 'partially_refunded', 'refunded')),
    ADD CONSTRAINT orders_refunded CHECK (refunded >= 0 AND refunded <= amount),
    ADD CONSTRAINT orders_agency CHECK (agency_share = 0 OR agency_id IS NOT NULL);
-- The orders not yet settled, per creator and time (the settlement run).
CREATE INDEX orders_unsettled ON orders (creator, created_at) WHERE settlement_id IS NULL;

-- ---- Creators' money -----------------------------------------------------------

-- pending: net earnings younger than settlement-delay-days; available:
-- settled earnings not yet paid out, minus refunds of settled orders (below
-- zero it is a debt, recovered from the next settlements); frozen: the part
-- of available held by withdrawals requested or approved; paid_out: the sum
-- of paid withdrawals.
CREATE TABLE creator_balances (
    creator     text PRIMARY KEY,
    pending     bigint NOT NULL DEFAULT 0,
    available   bigint NOT NULL DEFAULT 0,
    frozen      bigint NOT NULL DEFAULT 0 CHECK (frozen >= 0),
    paid_out    bigint NOT NULL DEFAULT 0 CHECK (paid_out >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per creator and settlement run that matured anything.
CREATE TABLE settlements (
    id          bigserial PRIMARY KEY,
    creator     text NOT NULL,
    cutoff      timestamptz NOT NULL,
    amount      bigint NOT NULL,
    orders      int NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (creator, cutoff)
);

CREATE TABLE withdrawals (
    id                bigserial PRIMARY KEY,
    creator           text NOT NULL,
    amount            bigint NOT NULL CHECK (amount > 0),
    request_id        text NOT NULL,
    state             text NOT NULL DEFAULT 'requested'
                      CHECK (state IN ('requested', 'approved', 'paid', 'rejected')),
    payout_reference  text,
    reason            text,
    requested_at      timestamptz NOT NULL DEFAULT now(),
    decided_by        text,
    decided_at        timestamptz,
    paid_at           timestamptz,
    UNIQUE (creator, request_id)
);
CREATE INDEX withdrawals_creator ON withdrawals (creator, id);
CREATE INDEX withdrawals_state ON withdrawals (state, id);

-- ---- Recharges -------------------------------------------------------------------

CREATE TABLE recharge_packages (
    id            text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    currency      text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor  bigint NOT NULL CHECK (amount_minor > 0),
    coins         bigint NOT NULL CHECK (coins > 0),
    enabled       boolean NOT NULL DEFAULT true,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- An amount without a package: coins = floor(amount_minor * coins_per_unit
-- / minor_per_unit).
CREATE TABLE currency_rates (
    currency        text PRIMARY KEY CHECK (currency ~ '^[A-Z]{3}$'),
    coins_per_unit  bigint NOT NULL CHECK (coins_per_unit > 0),
    minor_per_unit  int NOT NULL CHECK (minor_per_unit > 0),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE recharges (
    id                 text PRIMARY KEY,
    user_id            text NOT NULL,
    request_id         text NOT NULL UNIQUE,
    currency           text NOT NULL,
    amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
    coins              bigint NOT NULL CHECK (coins > 0),
    package_id         text,
    state              text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'paid', 'credited', 'failed')),
    payment_id         text UNIQUE,
    paid_amount_minor  bigint,
    failure            text,
    created_by         text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    paid_at            timestamptz,
    credited_at        timestamptz
);
CREATE INDEX recharges_user ON recharges (user_id, created_at);
CREATE INDEX recharges_paid ON recharges (paid_at) WHERE state = 'paid';

-- ---- Refunds --------------------------------------------------------------------

-- id is the caller's refund id (the idempotency key). The reversal of the
-- split (platform_fee + agency_share + creator_net = amount) is fixed when
-- the refund is accepted; the wallet credit follows (state pending ->
-- credited when its outbox entry reaches the ledger).
CREATE TABLE refunds (
    id              text PRIMARY KEY,
    order_id        text NOT NULL REFERENCES orders (order_id),
    amount          bigint NOT NULL CHECK (amount > 0),
    reason          text NOT NULL,
    user_id         text NOT NULL,
    creator         text NOT NULL,
    room            text NOT NULL,
    order_created_at timestamptz NOT NULL,
    platform_fee    bigint NOT NULL CHECK (platform_fee >= 0),
    agency_id       text,
    agency_share    bigint NOT NULL CHECK (agency_share >= 0),
    creator_net     bigint NOT NULL CHECK (creator_net >= 0),
    settled         boolean NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'credited')),
    actor           text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    credited_at     timestamptz,
    CHECK (platform_fee + agency_share + creator_net = amount),
    CHECK (agency_share = 0 OR agency_id IS NOT NULL)
);
CREATE INDEX refunds_order ON refunds (order_id);
CREATE INDEX refunds_pending ON refunds (created_at) WHERE state = 'pending';

-- ---- Audit, alerts, webhooks --------------------------------------------------------

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    role         text NOT NULL,
    action       text NOT NULL,
    target       text,
    before       jsonb,
    after        jsonb,
    request_id   text,
    client_addr  text,
    outcome      text NOT NULL DEFAULT 'ok'
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_target ON audit_log (target, id);
CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION tipcast_ledger_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION tipcast_ledger_append_only();

CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    kind             text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    subject          text,
    detail           jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alerts_kind ON alerts (kind, id);

-- Outbound notifications, written in the same transaction as their event
-- and delivered by tipcastd (settlement/webhook.c).
CREATE TABLE webhook_outbox (
    id               bigserial PRIMARY KEY,
    event            text NOT NULL,
    idempotency_key  text NOT NULL UNIQUE,
    payload          jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      int,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_outbox_dead ON webhook_outbox (id) WHERE state = 'dead';

-- ---- Helpers shared by the settlement functions ----------------------------------------

-- One audit row (ctx is the API call's context, docs/admin-api.md).
CREATE FUNCTION tipcast_audit(ctx jsonb, action text, target text, before jsonb, after jsonb,
                              outcome text DEFAULT 'ok') RETURNS void
LANGUAGE sql AS $$
    INSERT INTO audit_log (actor, role, action, target, before, after, request_id, client_addr, outcome)
    VALUES (coalesce(ctx->>'actor', '-'), coalesce(ctx->>'role', '-'), action, target, before, after,
            ctx->>'request_id', ctx->>'client_addr', outcome);
$$;

-- Queues a webhook when webhooks are on (a webhook-url is set: the caller
-- says so). The key makes a second enqueue of the same event a no-op.
CREATE FUNCTION tipcast_webhook_enqueue(enabled boolean, event text, key text, payload jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO webhook_outbox (event, idempotency_key, payload)
    SELECT event, key, jsonb_build_object('event', event, 'id', key, 'created_at', now(), 'data', payload)
    WHERE enabled
    ON CONFLICT (idempotency_key) DO NOTHING;
$$;

-- The split of `amount` coins: platform fee and agency share rounded down,
-- the creator gets the remainder (so nothing is lost to rounding).
-- Computed in numeric: amount * bp never overflows.
CREATE FUNCTION tipcast_split(amount bigint, fee_bp int, agency_bp int, has_agency boolean,
                              OUT platform_fee bigint, OUT agency_share bigint, OUT creator_net bigint)
LANGUAGE sql IMMUTABLE AS $$
    SELECT f, a, amount - f - a
    FROM (SELECT floor(amount::numeric * fee_bp / 10000)::bigint AS f,
                 CASE WHEN has_agency THEN floor(amount::numeric * agency_bp / 10000)::bigint ELSE 0 END AS a) s;
$$;
