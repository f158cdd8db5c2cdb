-- pg-gift-schema.sql - the tables of the pgbench gift baseline (pg-gift.sql): 10,000 funded wallets and an empty orders table.
-- bench/run.py runs it with psql in a scratch database (pgbench_gift) before pgbench.
CREATE TABLE wallet (
  uid bigint PRIMARY KEY,
  bal bigint NOT NULL
);
INSERT INTO wallet (uid, bal) SELECT g, 1000000000 FROM generate_series(1, 10000) AS g;
CREATE TABLE orders (
  id bigserial PRIMARY KEY,
  uid bigint NOT NULL,
  room bigint NOT NULL,
  gift int NOT NULL,
  cost bigint NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);
VACUUM ANALYZE;
