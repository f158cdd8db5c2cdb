-- 001_init: the system of record.
--
-- Applied by tipcastd at start (storage/migrate.c), inside one transaction
-- together with its row in schema_migrations. Amounts are bigint coins.

-- The gift catalog. gifts/catalog.c LISTENs on tipcast_catalog and reloads
-- it when any statement changes this table or creators.
CREATE TABLE gifts (
    id          int PRIMARY KEY,
    name        text NOT NULL,
    price       bigint NOT NULL CHECK (price > 0),
    animation   text NOT NULL,
    tier        int NOT NULL DEFAULT 1,
    enabled     boolean NOT NULL DEFAULT true,
    sort_order  int NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE creators (
    id            text PRIMARY KEY,
    display_name  text NOT NULL DEFAULT '',
    live          boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- One notification per statement (not per row): a bulk catalog edit makes
-- every node reload once.
CREATE FUNCTION tipcast_catalog_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tipcast_catalog', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER gifts_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gifts
    FOR EACH STATEMENT EXECUTE FUNCTION tipcast_catalog_notify();
CREATE TRIGGER creators_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON creators
    FOR EACH STATEMENT EXECUTE FUNCTION tipcast_catalog_notify();

-- Gifts and tips, one row per outbox entry. order_id is "<shard>-<stream id>"
-- (gifts/outbox.h), so a replayed entry hits the primary key and is skipped.
-- Volume note: when this table grows past what one heap serves well, it
-- becomes a table partitioned by month on created_at; the primary key then
-- has to include created_at, and the ledger consumer's ON CONFLICT target
-- with it (created_at is part of the entry, so a replay still collides).
CREATE TABLE orders (
    order_id        text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('gift', 'tip')),
    sender          text NOT NULL,
    room            text NOT NULL,
    creator         text NOT NULL,
    gift_id         int,
    gift_name       text,
    count           int NOT NULL,
    unit_price      bigint NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0),
    combo           text,
    message         text,
    request_id      text NOT NULL,
    sender_balance  bigint NOT NULL,
    created_at      timestamptz NOT NULL,
    inserted_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_creator_created ON orders (creator, created_at);
CREATE INDEX orders_sender_created ON orders (sender, created_at);

-- Double-entry ledger: every movement's rows sum to zero. Accounts are
-- 'user:<uid>', 'creator:<uid>' and 'platform'. A gift or tip of A from U to
-- C is (user:U, -A), (creator:C, +A); a credit of A to U is (user:U, +A),
-- (platform, -A). The sum of a user's deltas is the change of their Redis
-- balance, which is what reconciliation checks.
CREATE TABLE ledger (
    id           bigserial PRIMARY KEY,
    movement_id  text NOT NULL,
    account      text NOT NULL,
    delta        bigint NOT NULL,
    kind         text NOT NULL,
    note         text,
    created_at   timestamptz NOT NULL,
    UNIQUE (movement_id, account)
);
CREATE INDEX ledger_account ON ledger (account, id);

-- Append-only: a correction is a new movement, never an edit.
CREATE FUNCTION tipcast_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER ledger_no_update_delete
    BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION tipcast_ledger_append_only();
CREATE TRIGGER ledger_no_truncate
    BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION tipcast_ledger_append_only();

-- Running totals per creator, raised in the same transaction as the orders
-- that earn them (only for orders actually inserted, never for a replay).
CREATE TABLE creator_earnings (
    creator     text PRIMARY KEY,
    total       bigint NOT NULL DEFAULT 0,
    orders      bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Outbox entries the ledger consumer could not turn into rows (a money field
-- missing or not a number). They are kept here, with the raw entry, instead
-- of blocking the stream; a non-empty table is an incident to investigate.
CREATE TABLE outbox_rejects (
    order_id     text PRIMARY KEY,
    reason       text NOT NULL,
    entry        bytea NOT NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now()
);
