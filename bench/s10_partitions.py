"""s10_partitions.py - scenario 10 of the benchmark: what partitioning orders
and ledger by month costs the ledger consumer (issue 15;
storage/migrations/016_partitions.sql, docs/operations.md "Partitions by
month").

Three databases of their own on the bench PostgreSQL, each made by applying
storage/migrations/ with psql:
  - `before`: migrations 001..015, the unpartitioned tables;
  - `now`: every migration, the partitions of a new deployment (this month,
    four ahead and the default one);
  - `now_3y`: every migration, plus a partition for each of the last 36
    months (pg_partman's create_partition_time), as after three years.
Then scripts/ledger_batch_bench.sh in each, taking turns, BENCH_S10_ROUNDS
times: batches of 100 and of 1,000 gift orders, each run in one session as
the ledger consumer runs them (its median after the plans' warm-up).
"""

import os
import re

from suite import REPO, BenchError, g6

DBS = ("before", "now", "now_3y")
BATCHES = ((100, 45), (1000, 25))  # (orders per batch, batches per run)


def make_db(suite, admin, name, upto):
    db = f"tipcast_s10_{name}"
    conn = admin.replace("dbname=postgres", f"dbname={db}")
    if suite.pg(admin, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", f"CREATE DATABASE {db}") is None:
        raise BenchError(f"creating database {db} failed")
    mig = sorted(f for f in os.listdir(os.path.join(REPO, "storage", "migrations")) if f.endswith(".sql"))
    for f in mig[:upto]:
        p = suite.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", conn, "-f",
                       os.path.join(REPO, "storage", "migrations", f)], 600, quiet=True)
        if p.returncode != 0:
            raise BenchError(f"scenario 10: migration {f} on {db} failed: {p.stdout[-500:]}")
    return conn, db


def batch_ms(suite, conn, n, runs):
    p = suite.run(["bash", os.path.join(REPO, "scripts", "ledger_batch_bench.sh"), str(n), "4", str(runs)], 900,
                  env={"TIPCAST_PG": conn}, quiet=True)
    m = re.search(r"median ([0-9.]+) ms", p.stdout or "")
    return float(m.group(1)) if p.returncode == 0 and m else None


def run(suite):
    s = suite.s
    admin = s.pg_admin
    suite.log(f"scenario 10: the ledger's batch on unpartitioned and partitioned tables, {s.s10_rounds} rounds")
    nmig = len([f for f in os.listdir(os.path.join(REPO, "storage", "migrations")) if f.endswith(".sql")])
    conns, names = {}, {}
    conns["before"], names["before"] = make_db(suite, admin, "before", 15)
    conns["now"], names["now"] = make_db(suite, admin, "now", nmig)
    conns["now_3y"], names["now_3y"] = make_db(suite, admin, "now_3y", nmig)
    past = ("ARRAY(SELECT g FROM generate_series(date_trunc('month', now()) - interval '36 months', "
            "now() - interval '1 month', interval '1 month') g)")
    if suite.pg(conns["now_3y"], f"SELECT partman.create_partition_time('public.orders', {past})",
                f"SELECT partman.create_partition_time('public.ledger', {past})", timeout=600) is None:
        raise BenchError("scenario 10: making three years of partitions failed")
    for k in DBS:
        parts = suite.pg(conns[k], "SELECT count(*) FROM pg_inherits WHERE inhparent = 'orders'::regclass")
        suite.fig(f"s10.{k}.partitions", parts or "0")
    got = {(k, n): [] for k in DBS for n, _ in BATCHES}
    for r in range(s.s10_rounds):
        for n, runs in BATCHES:
            for k in DBS:
                ms = batch_ms(suite, conns[k], n, runs)
                if ms is not None:
                    got[(k, n)].append(ms)
        suite.log(f"  round {r + 1}: " + ", ".join(f"{k} x{n} {got[(k, n)][-1] if got[(k, n)] else '?'} ms"
                                                   for n, _ in BATCHES for k in DBS))
    for (k, n), v in got.items():
        v.sort()
        suite.fig(f"s10.{k}.{n}.ms", g6(v[len(v) // 2]) if v else "")
        suite.fig(f"s10.{k}.{n}.all", " ".join(g6(x) for x in v))
    for k in DBS:
        suite.pg(admin, f"DROP DATABASE IF EXISTS {names[k]} WITH (FORCE)")
