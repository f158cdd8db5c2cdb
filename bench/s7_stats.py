"""s7_stats.py - scenario 7 of the benchmark: the stats routes over 10 million orders (issue 12). A database of its own (tipcast_stats, on the suite's PostgreSQL) gets the schema (storage/migrations/*.sql, in order), then 10 million orders over the year 2025 loaded with COPY (their split computed here: a 30% fee, a 10% agency share for every other creator), with refunds and recharges as ledger rows; tipcast_stats_backfill builds the rollups. Then each stats query (the SQL function of its route: the platform per hour, day and month over the largest range each allows, and a big creator's stats) is timed N times inside PostgreSQL, and a ledger batch of 1,000 orders is timed with and without the rollup maintenance. The target: every query <= 50 ms at p99."""

import json
import os
import random
import subprocess
import time

from suite import REPO, BenchError

DB = "tipcast_stats"
YEAR_START = 1735689600  # 2025-01-01T00:00:00Z
HOURS = 8760             # the year 2025
CREATORS = 10000
BIG = "bench-star"       # the big creator: 5% of the orders
USERS = 1000000
GIFTS = 50               # gift ids 1..50; a fifth of the orders are tips
REPS = 50                # timings per query
BATCHES = 20             # ledger batches timed
BATCH = 1000             # orders per batch

QUERIES = [
    # name, function, ctx
    ("platform_hour", "tipcast_api_stats_platform",
     {"query": {"granularity": "hour", "from": "2025-12-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}}),
    ("platform_day", "tipcast_api_stats_platform",
     {"query": {"granularity": "day", "from": "2025-01-01", "to": "2026-01-02"}}),
    ("platform_month", "tipcast_api_stats_platform",
     {"query": {"granularity": "month", "from": "2016-01-01", "to": "2026-01-01"}}),
    ("creator_hour", "tipcast_api_creator_stats",
     {"path": {"id": BIG}, "query": {"granularity": "hour", "from": "2025-12-01T00:00:00Z",
                                     "to": "2026-01-01T00:00:00Z"}}),
    ("creator_day", "tipcast_api_creator_stats",
     {"path": {"id": BIG}, "query": {"granularity": "day", "from": "2025-01-01", "to": "2026-01-02"}}),
    ("creator_month", "tipcast_api_creator_stats",
     {"path": {"id": BIG}, "query": {"granularity": "month", "from": "2016-01-01", "to": "2026-01-01"}}),
]


def _orders(n, seed=12):
    """The COPY text of n orders spread evenly over 2025, in time order, and
    the refunds and recharges that go with them (ledger rows)."""
    rnd = random.Random(seed)
    hours = [time.strftime("%Y-%m-%d %H", time.gmtime(YEAR_START + h * 3600)) for h in range(HOURS)]
    prices = [10 * (g % 10 + 1) for g in range(GIFTS + 1)]
    refunds = []
    for i in range(n):
        off = i * HOURS * 3600 // n
        h, s = divmod(off, 3600)
        at = f"{hours[h]}:{s // 60:02d}:{s % 60:02d}+00"
        c = -1 if rnd.random() < 0.05 else rnd.randrange(CREATORS)
        creator = BIG if c < 0 else f"bench-c{c}"
        sender = f"bench-u{int(USERS * rnd.random() ** 2)}"  # some users give much more
        if rnd.random() < 0.8:
            g = rnd.randrange(1, GIFTS + 1)
            count = 1 if rnd.random() < 0.9 else rnd.randrange(2, 100)
            kind, gid, name, unit = "gift", str(g), f"Gift {g}", prices[g]
        else:
            count, kind, gid, name, unit = 1, "tip", r"\N", r"\N", rnd.randrange(1, 5000)
        amount = unit * count
        fee = amount * 3000 // 10000
        agency = amount * 1000 // 10000 if c % 2 == 0 else 0
        net = amount - fee - agency
        ag = "bench-agency" if agency else r"\N"
        oid = f"{i % 16}-{i}"
        yield ("o", f"{oid}\t{kind}\t{sender}\t{creator}\t{creator}\t{gid}\t{name}\t{count}\t{unit}\t{amount}\t"
                    f"\\N\t\\N\tq{i}\t0\t{at}\t{fee}\t{ag}\t{agency}\t{net}\n")
        if i % 1000 == 7:  # a refund of the whole order, a day later
            ts = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(YEAR_START + off + 86400))
            mv = f"refund:bench-rf{i}"
            refunds.append(f"{mv}\tuser:{sender}\t{amount}\trefund\t{oid}\t{ts}\n"
                           f"{mv}\tcreator:{creator}\t{-net}\trefund\t{oid}\t{ts}\n"
                           f"{mv}\tplatform\t{-fee}\trefund\t{oid}\t{ts}\n"
                           + (f"{mv}\tagency:bench-agency\t{-agency}\trefund\t{oid}\t{ts}\n" if agency else ""))
        if i % 500 == 3:  # a recharge
            ts = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(YEAR_START + off))
            coins = 100 * rnd.randrange(1, 50)
            refunds.append(f"recharge:bench-rc{i}\tuser:{sender}\t{coins}\trecharge\t{oid}\t{ts}\n"
                           f"recharge:bench-rc{i}\tplatform\t{-coins}\trecharge\t{oid}\t{ts}\n")
    yield ("l", "".join(refunds))


def _copy(conn, table, cols, lines, bound_s):
    """COPY table (cols) FROM STDIN with the lines written through psql; the seconds it took."""
    t0 = time.monotonic()
    p = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", conn, "-c",
                          f"COPY {table} ({cols}) FROM STDIN"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        buf = []
        for line in lines:
            buf.append(line)
            if len(buf) >= 10000:
                p.stdin.write("".join(buf))
                buf = []
        p.stdin.write("".join(buf))
        p.stdin.close()
        err = p.stderr.read()
        rc = p.wait(timeout=bound_s)
    except (subprocess.TimeoutExpired, BrokenPipeError) as e:
        p.kill()
        p.wait()
        raise BenchError(f"COPY {table} failed: {e!r}") from None
    if rc != 0:
        raise BenchError(f"COPY {table} failed: {err[-500:]}")
    return time.monotonic() - t0


def _pcts(ms):
    ms = sorted(ms)
    if not ms:
        return "", "", ""
    return (round(ms[len(ms) // 2], 2), round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2), round(ms[-1], 2))


TIMER = """
CREATE FUNCTION pg_temp.bench_time(fn text, ctx jsonb, n int) RETURNS float8[]
LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
    out float8[] := '{}';
    r jsonb;
BEGIN
    FOR i IN 1..n LOOP
        t := clock_timestamp();
        EXECUTE format('SELECT %I($1)', fn) INTO r USING ctx;
        out := out || (extract(epoch FROM clock_timestamp() - t) * 1000)::float8;
        IF (r->>'status')::int <> 200 THEN
            RAISE EXCEPTION '% answered %', fn, r;
        END IF;
    END LOOP;
    RETURN out;
END;
$$;
"""

# A ledger batch of BATCH orders in 2026-06 (outside the ranges timed),
# BATCHES times, each its own transaction: tipcast_ledger_apply, then the
# rollups. Before migration 006 the apply does not call
# tipcast_ledger_stats and has no ledger_out: the batch's ledger rows are
# put there (not timed) and the function is timed by itself.
BATCH_PREP = [
    "SELECT tipcast_ledger_staging()",
    "ALTER TABLE ledger_new ADD COLUMN IF NOT EXISTS gift_id int, ADD COLUMN IF NOT EXISTS count int",
    "CREATE TEMP TABLE IF NOT EXISTS ledger_out (movement_id text, account text, delta bigint, kind text, "
    "note text, created_at timestamptz, entry text, chain int) ON COMMIT DELETE ROWS",
    "CREATE TABLE IF NOT EXISTS bench_batch (r int, apply_ms float8, stats_ms float8, included boolean)",
    "TRUNCATE bench_batch",
]
BATCH_SQL = """
DO $$
DECLARE
    inc boolean := (SELECT bool_or(prosrc LIKE '%tipcast_ledger_stats%') FROM pg_proc
                    WHERE proname = 'tipcast_ledger_apply');
    t0 timestamptz;
    t1 timestamptz;
    t2 timestamptz;
    st float8;
BEGIN
    FOR r IN 1..__BATCHES__ LOOP
        INSERT INTO ledger_in_orders (order_id, kind, sender, room, creator, gift_id, gift_name, count, unit_price,
                                      amount, request_id, sender_balance, created_at)
        SELECT (i % 16) || '-' || (1780000000000 + (__PASS__ * 1000 + r) * 10000 + i) || '-0', 'gift',
               'bench-u' || (i * 7919 % 100000),
               CASE WHEN i % 20 = 0 THEN '__BIG__' ELSE 'bench-c' || (i * 104729 % __CREATORS__) END,
               CASE WHEN i % 20 = 0 THEN '__BIG__' ELSE 'bench-c' || (i * 104729 % __CREATORS__) END,
               1 + i % 50, 'Gift', 1, 10, 10, 'bq-' || __PASS__ || '-' || r || '-' || i, 0,
               '2026-06-01 10:00:00+00'::timestamptz + (r * 1000 + i) * interval '1 ms'
        FROM generate_series(1, __BATCH__) i;
        t0 := clock_timestamp();
        PERFORM tipcast_ledger_apply(false);
        t1 := clock_timestamp();
        st := NULL;
        IF NOT inc THEN
            UPDATE ledger_new n SET gift_id = o.gift_id, count = o.count FROM orders o WHERE o.order_id = n.order_id;
            INSERT INTO ledger_out SELECT l.movement_id, l.account, l.delta, l.kind, l.note, l.created_at, NULL, -1
            FROM ledger l WHERE l.movement_id IN (SELECT order_id FROM ledger_new);
            t2 := clock_timestamp();
            PERFORM tipcast_ledger_stats();
            st := extract(epoch FROM clock_timestamp() - t2) * 1000;
        END IF;
        INSERT INTO bench_batch VALUES (r, extract(epoch FROM t1 - t0) * 1000, st, inc);
        COMMIT;
    END LOOP;
END;
$$;
"""


def run(suite):
    s = suite.s
    n = s.s7_orders
    admin = s.pg_admin
    conn = admin.replace("dbname=postgres", f"dbname={DB}")
    suite.log(f"scenario 7: stats over {n:,} orders (database {DB})")
    if suite.pg(admin, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", f"CREATE DATABASE {DB}") is None:
        raise BenchError(f"creating database {DB} failed")
    mig = sorted(f for f in os.listdir(os.path.join(REPO, "storage", "migrations")) if f.endswith(".sql"))
    for f in mig:
        p = suite.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", conn, "-f",
                       os.path.join(REPO, "storage", "migrations", f)], 300, quiet=True)
        if p.returncode != 0:
            raise BenchError(f"migration {f} failed on {DB}")
    if suite.pg(conn, "INSERT INTO agencies (id, name) VALUES ('bench-agency', 'Bench')",
                "INSERT INTO gifts (id, name, price, animation) "
                "SELECT g, 'Gift ' || g, 10 * (g % 10 + 1), 'a' FROM generate_series(1, 50) g",
                "WITH r AS (INSERT INTO revenue_rules (name, effective_at, agency_share_bp, created_by) "
                "VALUES ('bench', '2020-01-01 00:00:00+00', 1000, 'bench') RETURNING id) "
                "INSERT INTO revenue_rule_tiers (rule_id, min_volume, platform_fee_bp) SELECT id, 0, 3000 FROM r",
                # Every creator, half of them in the agency (as the orders' split says).
                f"INSERT INTO creators (id, agency_id) SELECT 'bench-c' || g, CASE WHEN g % 2 = 0 "
                f"THEN 'bench-agency' END FROM generate_series(0, {CREATORS - 1}) g",
                f"INSERT INTO creators (id) VALUES ('{BIG}')") is None:
        raise BenchError("seeding the stats database failed")

    ledger_lines = []

    def order_lines():
        for what, line in _orders(n):
            if what == "o":
                yield line
            else:
                ledger_lines.append(line)

    # The orders' secondary indexes are dropped for the load and built again
    # after it (sorted builds, not 10 million random insertions); the time
    # reported includes the rebuild.
    idx = suite.pg(conn, "SELECT string_agg(indexdef, ';' ORDER BY indexname) FROM pg_indexes "
                   "WHERE tablename = 'orders' AND indexname <> 'orders_pkey'")
    if idx:
        suite.pg(conn, "DO $$ DECLARE i text; BEGIN FOR i IN SELECT indexname FROM pg_indexes "
                 "WHERE tablename = 'orders' AND indexname <> 'orders_pkey' "
                 "LOOP EXECUTE format('DROP INDEX %I', i); END LOOP; END $$")
    t0 = time.monotonic()
    _copy(conn, "orders", "order_id, kind, sender, room, creator, gift_id, gift_name, count, unit_price, "
          "amount, combo, message, request_id, sender_balance, created_at, platform_fee, agency_id, "
          "agency_share, creator_net", order_lines(), 7200)
    if idx and suite.pg(conn, "SET maintenance_work_mem = '512MB'", *idx.split(";"), timeout=3600) is None:
        raise BenchError("rebuilding the orders' indexes failed")
    took = time.monotonic() - t0
    # Ledger rows without a hash are chained one by one into chain -1 (006's
    # row trigger), each updating the chain's head: in one transaction the
    # head's row versions pile up, so they go in transactions of 500.
    rows = "".join(ledger_lines).splitlines(keepends=True)
    took_l = 0.0
    for at in range(0, len(rows), 500):
        took_l += _copy(conn, "ledger", "movement_id, account, delta, kind, note, created_at",
                        rows[at:at + 500], 600)
    suite.fig("s7.orders", n)
    suite.fig("s7.reps", s.s7_reps)
    suite.fig("s7.load_s", round(took, 1))
    suite.fig("s7.orders_per_s_copy", int(n / took) if took else "")
    suite.log(f"  COPY {n:,} orders: {took:.0f} s; refunds and recharges: {took_l:.1f} s")
    suite.pg(conn, "VACUUM ANALYZE orders", "VACUUM ANALYZE ledger", timeout=3600)

    t0 = time.monotonic()
    if suite.pg(conn, "SELECT tipcast_stats_backfill(NULL, NULL)", timeout=7200) is None:
        raise BenchError("tipcast_stats_backfill failed")
    took = time.monotonic() - t0
    suite.pg(conn, "VACUUM ANALYZE stats_platform, stats_creator, stats_gift, stats_supporter, stats_creator_gift",
             timeout=3600)
    rows = suite.pg(conn, "SELECT (SELECT count(*) FROM stats_creator) || ' creator rows, ' || "
                    "(SELECT count(*) FROM stats_supporter) || ' supporter rows'")
    suite.fig("s7.backfill_s", round(took, 1))
    suite.log(f"  backfill: {took:.0f} s ({rows})")

    for name, fn, ctx in QUERIES:
        out = suite.pg(conn, TIMER, f"SELECT array_to_string(pg_temp.bench_time('{fn}', "
                                    f"'{json.dumps(ctx)}'::jsonb, {s.s7_reps}), ' ')", timeout=600)
        if not out:
            suite.warn(f"scenario 7: timing {name} failed")
            continue
        ms = [float(x) for x in out.split()]
        p50, p99, mx = _pcts(ms)
        suite.fig(f"s7.{name}_p50_ms", p50)
        suite.fig(f"s7.{name}_p99_ms", p99)
        suite.fig(f"s7.{name}_max_ms", mx)
        suite.log(f"  {name}: p50 {p50} ms, p99 {p99} ms, max {mx} ms")

    sql = (BATCH_SQL.replace("__BATCHES__", str(BATCHES)).replace("__BATCH__", str(BATCH))
           .replace("__BIG__", BIG).replace("__CREATORS__", str(CREATORS)))
    sql2 = sql.replace("__PASS__", "2")  # the second pass's orders are new ones too
    sql = sql.replace("__PASS__", "1")
    median = ("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY apply_ms), "
              "percentile_cont(0.5) WITHIN GROUP (ORDER BY stats_ms), bool_or(included) FROM bench_batch")
    # One statement per -c: the DO block commits, which it may only do
    # outside of a multi-statement query string.
    sql, sql2 = BATCH_PREP + [sql], BATCH_PREP + [sql2]
    if suite.pg(conn, *sql, timeout=1200) is None:
        suite.warn("scenario 7: the ledger batches failed")
        return
    apply_ms, stats_ms, inc = (suite.pg(conn, median).split("|") + ["", "", ""])[:3]
    apply_ms = float(apply_ms)
    if inc == "t":
        # The apply calls the rollups itself (migration 006): that is the
        # after; the before is the same batches with the function emptied
        # for the while (as 006 defines it), then put back.
        after = apply_ms
        saved = suite.pg(conn, "SELECT pg_get_functiondef('tipcast_ledger_stats()'::regprocedure)")
        ok = saved and suite.pg(conn, "CREATE OR REPLACE FUNCTION tipcast_ledger_stats() RETURNS void "
                                      "LANGUAGE plpgsql AS $$ BEGIN END; $$", *sql2, timeout=1200) is not None
        if not saved or suite.pg(conn, saved) is None or not ok:
            suite.warn("scenario 7: the ledger batches without the rollups failed")
            return
        before = float(suite.pg(conn, median).split("|")[0])
        stats_ms = after - before
    else:
        before, stats_ms = apply_ms, float(stats_ms)
        after = before + stats_ms
    suite.fig("s7.batch_orders", BATCH)
    suite.fig("s7.batch_before_ms", round(before, 2))
    suite.fig("s7.batch_after_ms", round(after, 2))
    suite.fig("s7.batch_stats_ms", round(stats_ms, 2))
    suite.log(f"  ledger batch of {BATCH} orders (p50): {before:.1f} ms without the rollups, {after:.1f} ms with")
