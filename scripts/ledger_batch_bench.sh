#!/bin/bash
# ledger_batch_bench.sh - the time tipcast_ledger_apply takes for one batch of
# N gifts (default 1000) over S outbox shards, staged as the ledger consumer
# stages them; R batches (default 10) in one session, as tipcastd's ledger
# consumer runs them on its connection (its plans cached), each reported,
# then the median of all but the first five (the plans' warm-up).
# Usage: TIPCAST_PG=... bash scripts/ledger_batch_bench.sh [N] [S] [R]
# Writes orders and ledger rows into the database it is given (creators
# bench-c0..bench-c9, senders bench-u*): run it on a test database only.
set -euo pipefail
N=${1:-1000}
S=${2:-4}
R=${3:-10}
base=$(( $(date +%s%N) / 1000000 ))
for r in $(seq 1 "$R"); do
    cat <<SQL
BEGIN;
SELECT tipcast_ledger_staging();
INSERT INTO ledger_in_orders (order_id, kind, sender, room, creator, gift_id, gift_name, count, unit_price, amount,
                              combo, message, request_id, sender_balance, created_at)
SELECT (i % $S) || '-' || ($base + $r * 100000 + i) || '-0', 'gift', 'bench-u' || (i % 97), 'bench-c' || (i % 10),
       'bench-c' || (i % 10), 1, 'Rose', 1, 10, 10, NULL, NULL, 'q' || $r || '-' || i, 1000, now()
FROM generate_series(1, $N) i;
SELECT clock_timestamp() AS t0 \gset
SELECT new_orders FROM tipcast_ledger_apply(false) \gset
SELECT 'batch $r: ' || :new_orders || ' orders, ' || round(extract(epoch FROM clock_timestamp() - :'t0') * 1000, 1)
       || ' ms';
COMMIT;
SQL
done | psql "$TIPCAST_PG" -X -qAt -v ON_ERROR_STOP=1 | grep '^batch ' | tee /dev/stderr |
    awk -v R="$R" '{print (NR > 5 || R <= 5) ? $(NF - 1) : ""}' | grep . | sort -n |
    awk '{a[NR] = $1} END {print "median " a[int((NR + 1) / 2)] " ms"}'
