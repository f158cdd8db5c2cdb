-- pg-gift.sql - a pgbench script: one gift as one synchronous PostgreSQL transaction, the design without Redis that tipcast is measured against.
-- The sender's wallet is debited only when it holds the price, and the order is
-- written in the same transaction. Tables: pg-gift-schema.sql. bench/run.py runs
--   pgbench -n -f bench/peers/pg-gift.sql -c 16 -j 2 -T 20 pgbench_gift
\set u random(1, 10000)
\set room random(1, 100)
\set gift 7
\set cost 10
BEGIN;
UPDATE wallet SET bal = bal - :cost WHERE uid = :u AND bal >= :cost;
INSERT INTO orders (uid, room, gift, cost) VALUES (:u, :room, :gift, :cost);
COMMIT;
