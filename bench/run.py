#!/usr/bin/env python3
"""run.py - the benchmark suite of issue 4 (started by bench/run.sh): tipcast side by side with its references on this machine, in one run, written to docs/benchmarks.md.

  bench/run.sh                 full run (about 25 minutes on 2 cores)
  BENCH_QUICK=1 bench/run.sh   small N and short steps (about 3 minutes),
                               for trying the suite; its figures mean little

From a clean clone it: installs what the benchmarks need (scripts/deps.sh
with nginx-light, libnginx-mod-nchan, redis-tools, postgresql-contrib and
iproute2, and `npm install ws@8` into a scratch folder, never into the repo);
builds tipcastd and tipcast-bench (RelWithDebInfo); starts its own Redis and
PostgreSQL (scripts/services.sh instance `bench`, wiped at start); seeds
creators bench-room-0.. (every other one in an agency), gift 1 (price 10) and
a revenue rule (30/25/20% fee by monthly volume, agencies 10%), so that every
order pays the split; then runs the scenarios:
  1 gift throughput   tipcast-bench --find-max (ack p99 <= 50 ms), against the
                      Redis ceiling (redis-benchmark -P 16 EVALSHA of tipcast's
                      own wallet_move.lua) and pgbench with bench/peers/pg-gift.sql
  4 durability lag    at scenario 1's maximum: outbox backlog and PostgreSQL
                      lag; then the ledger's drain rate after a PostgreSQL
                      outage against a plain COPY of the same rows (orders
                      and ledger rows), and of the order rows alone
  2 hot-room fan-out  one room, 10,000 subscribers, tipcast / Nchan / Node ws
                      (bench/peers/) at one steady rate, then each one's maximum rate
  12 hot room        issue 16: a 10,000-member room under real gifts from a
                      third process at 1, 10 and 100 events/s: the senders'
                      ack p50/p99, the members' delivery p50/p99 (from the
                      gift's send time), CPU per delivery; Nchan at 1 and 10
                      in the same layout, taking turns; then CPU per gift of
                      tipcastd, Redis and PostgreSQL at scenario 1's maximum
  3 connections       idle authenticated connections over several tipcastd
                      processes sharing one port (--reuse-port), RSS per conn
  5 settlement        recharges created and paid by signed payment callbacks
                      through the admin API: callbacks/s, their latency, and
                      exactly one credit each (also when delivered again)
  6 risk control      the gift path's ack p99 at a fixed rate with every risk
                      rule on (none refusing) beside the rules off, taking turns
  7 stats             10 million orders COPYed into a database of their own
                      (tipcast_stats), rollups built by tipcast_stats_backfill,
                      then the stats routes' SQL timed (p50/p99/max, target
                      <= 50 ms) and a ledger batch with and without the rollups
  8 room features     goals and PK battles on (combos and fan levels always
                      count) beside rooms without them and beside the build
                      before the features (BENCH_S8_BASE): the gift path at a
                      fixed rate (ack latency, tipcastd and Redis CPU per
                      gift), find-max, and scenario 2's hot room
  9 durable acks      a replica attached to the bench Redis; tipcastd with
                      redis-wait-replicas 0, then 1: the gift path at a fixed
                      rate (ack p50/p99, CPU per gift, WAITs sent) and find-max
  10 partitions       the ledger's batch (scripts/ledger_batch_bench.sh, 100
                      and 1,000 gifts) on the tables before partitioning, on
                      a new deployment's partitions and on three years of
                      monthly partitions, taking turns
Results go to $BENCH_OUT (figures.tsv, JSON, logs); bench/report.py turns them
into docs/benchmarks.md and copies the SVG charts to docs/bench/. Everything
the suite started is stopped on exit (also on Ctrl-C or SIGTERM), and every
step has a time bound. Python 3 standard library only.

Environment (defaults in brackets; quick-mode defaults after the slash):
  BENCH_QUICK [0]            1: small N, short durations
  BENCH_ONLY [1 4 5 6 2 12 8 9 11 3 10 7] the scenarios to run, e.g. "1 2"
  BENCH_BUILD_DIR [build]    cmake build tree
  BENCH_OUT [/tmp/tipcast-bench-out]   raw results
  BENCH_PEERS [bench/peers]  nchan.conf, ws-broadcast.js, pg-gift.sql, pg-gift-schema.sql
  BENCH_NODE_DIR [/tmp/tipcast-bench-peers]  scratch folder for `ws`
  BENCH_INSTANCE [bench]     services.sh instance (its own data directories)
  BENCH_REDIS_PORT [6396] BENCH_PG_PORT [5496] BENCH_PORT [8096] (tipcastd)
  BENCH_ADMIN_PORT [8097]    tipcastd's admin API
  BENCH_NCHAN_PORT [8091] BENCH_NODE_PORT [8092]  the peers' ports
  BENCH_IDLE_CONNS [100000/4000]   scenario 3's connections
  BENCH_IDLE_OPEN_RATE [1500]      scenario 3's connections opened per second, in all
  BENCH_STATS_ORDERS [10000000/200000]  scenario 7's orders
  BENCH_FANOUT_SUBS [10000/1000]   scenario 2's subscribers
  BENCH_FANOUT_RATE [1/2]          scenario 2's steady events/s (whole room)
  BENCH_S4_RATE [scenario 1's maximum, else 1000]  scenario 4's gifts/s
  BENCH_S6_RATE [1000/300]         scenario 6's gifts/s
  BENCH_S8_RATE [1000/300]         scenario 8's fixed gifts/s
  BENCH_S9_RATE [1000/300]         scenario 9's fixed gifts/s (redis-wait-replicas 0 and 1)
  BENCH_S11_RATE [1000/300]        scenario 11's fixed gifts/s (one Redis, then a cluster of 3 masters)
  BENCH_S10_ROUNDS [3/1]           scenario 10's turns of its three databases
  BENCH_S8_BASE [dfd31ac]          scenario 8's "before": the commit before
                                   issue 14's room features ("none": skip)
  BENCH_TIPCASTD_ARGS []           extra tipcastd flags (e.g. for tuning)
  BENCH_NO_DOC [0]           1: write the report (and charts) to $BENCH_OUT only
  BENCH_BIN []               a tipcast-bench to use instead of the built one
"""

import glob
import os
import resource
import signal
import sys
import time

import report
import s1_gifts
import s2_fanout
import s3_idle
import s4_durability
import s5_settlement
import s6_risk
import s7_stats
import s8_features
import s9_wait
import s10_partitions
import s11_cluster
import s12_hotroom
from suite import REPO, TC_MAX_CONNS, BenchError, Settings, Suite

BENCH_PACKAGES = ["nginx-light", "libnginx-mod-nchan", "redis-tools", "postgresql-contrib", "iproute2"]


def setup_packages(suite):
    suite.log("packages (scripts/deps.sh + the benchmark's own)")
    if suite.run(["bash", "scripts/deps.sh", *BENCH_PACKAGES], 900, capture=False).returncode != 0:
        raise BenchError("installing packages failed")
    node_dir = suite.s.node_dir
    if os.path.isfile(os.path.join(suite.s.peers, "ws-broadcast.js")) \
            and not os.path.isfile(os.path.join(node_dir, "node_modules", "ws", "package.json")):
        suite.log(f"npm install ws@8 into {node_dir} (scratch, not in the repo)")
        os.makedirs(node_dir, exist_ok=True)
        if suite.run(["npm", "install", "--prefix", node_dir, "--no-audit", "--no-fund", "--silent",
                      "ws@8"], 300).returncode != 0:
            raise BenchError("npm install ws@8 failed")


def setup_build(suite):
    build, log = suite.s.build, suite.path("cmake.log")
    suite.log(f"building {build} (RelWithDebInfo)")
    for cmd, bound, what in (
            (["cmake", "-S", ".", "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], 300, "cmake configure"),
            (["cmake", "--build", build, f"-j{len(os.sched_getaffinity(0))}"], 1200, "build")):
        p = suite.run(cmd, bound, merge=True)
        with open(log, "a", encoding="utf-8") as f:
            f.write(p.stdout)
        if p.returncode != 0:
            sys.stderr.write("".join(p.stdout.splitlines(True)[-30:]))
            raise BenchError(f"{what} failed")
    suite.tipcastd = os.path.join(build, "server", "tipcastd")
    suite.bench_bin = suite.s.bench_bin or os.path.join(build, "loadtest", "tipcast-bench")
    if not os.access(suite.tipcastd, os.X_OK):
        raise BenchError(f"{suite.tipcastd} was not built")
    if not os.access(suite.bench_bin, os.X_OK):
        raise BenchError(f"{suite.bench_bin} was not built (loadtest/ missing?)")


def setup_services(suite):
    s = suite.s
    if suite.services("status", 30):
        suite.log(f"instance {s.instance} already running; it is left running on exit")
    else:
        suite.started_services = True
    suite.log(f"Redis 127.0.0.1:{s.redis_port} and PostgreSQL 127.0.0.1:{s.pg_port} (instance {s.instance})")
    if not suite.services("start", 120, quiet=False):
        raise BenchError("services did not start")
    # A clean slate: the instance is the benchmark's own.
    if suite.rcli("flushall") is None:
        raise BenchError("FLUSHALL failed")
    if suite.pg(s.pg_admin, "DROP DATABASE IF EXISTS tipcast WITH (FORCE)", "CREATE DATABASE tipcast") is None:
        raise BenchError("recreating database tipcast failed")


def seed(suite):
    n = s8_features.rooms_needed(suite.s) if suite.has(8) else suite.s.rooms
    suite.log(f"seeding gift 1 (price 10) and {n} live creators bench-room-0..{n - 1}")
    if suite.pg(suite.s.pg_conn,
                "INSERT INTO gifts (id, name, price, animation) VALUES (1, 'Rose', 10, 'rose') "
                "ON CONFLICT (id) DO UPDATE SET price = 10, enabled = true",
                "INSERT INTO creators (id, display_name, live) "
                f"SELECT 'bench-room-' || g, 'Bench ' || g, true FROM generate_series(0, {n - 1}) g "
                "ON CONFLICT (id) DO UPDATE SET live = true",
                # Gifts pay the revenue split (docs/settlement.md) as they
                # would on a platform: a fee by monthly-volume tier, and an
                # agency share for every other creator.
                "INSERT INTO agencies (id, name) VALUES ('bench-agency', 'Bench') ON CONFLICT (id) DO NOTHING",
                "UPDATE creators SET agency_id = 'bench-agency' "
                "WHERE id LIKE 'bench-room-%' AND substring(id from 12)::int % 2 = 0",
                "WITH r AS (INSERT INTO revenue_rules (name, effective_at, agency_share_bp, created_by) "
                "VALUES ('bench', '2020-01-01 00:00:00+00', 1000, 'bench') ON CONFLICT (effective_at) DO NOTHING "
                "RETURNING id) INSERT INTO revenue_rule_tiers (rule_id, min_volume, platform_fee_bp) "
                "SELECT id, v, f FROM r, (VALUES (0, 3000), (100000, 2500), (1000000, 2000)) t (v, f)",
                # The bench's 200 senders each send up to some 85 gifts a
                # second at the top find-max steps, far past a person's
                # tapping: the default 600 a minute per user would refuse
                # them. The check still runs on every gift.
                "UPDATE risk_rules SET value = 1000000 WHERE name = 'gift_user_per_min'") is None:
        raise BenchError("seeding failed")
    time.sleep(1.5)  # the catalog and the risk rules reload on NOTIFY


def machine_figures(suite):
    with open("/proc/meminfo", encoding="utf-8") as f:
        mem = next((line.split()[1] for line in f if line.startswith("MemTotal:")), "")
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    commit = suite.run(["git", "rev-parse", "--short", "HEAD"], 30, quiet=True).stdout.strip() or "unknown"
    if suite.run(["git", "diff", "--quiet", "HEAD"], 30, quiet=True).returncode != 0:
        commit += "+dirty"
    u = os.uname()
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    suite.fig("machine.nproc", len(os.sched_getaffinity(0)))
    suite.fig("machine.mem_kb", mem)
    suite.fig("machine.kernel", f"{u.sysname} {u.release}")
    suite.fig("machine.cpu", cpu)
    suite.fig("machine.date", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    suite.fig("run.quick", suite.s.quick_text)
    suite.fig("run.commit", commit)
    suite.fig("run.command", ("BENCH_QUICK=1 " if suite.s.quick_text == "1" else "") + "bench/run.sh")
    suite.fig("run.ulimit_n", "unlimited" if soft == resource.RLIM_INFINITY else soft)
    suite.fig("run.s2_subs", suite.s.s2_subs)


def run_all(suite):
    out = suite.s.out
    os.makedirs(out, exist_ok=True)
    for pattern in ("*.json", "*.svg", "*.log", "figures.tsv"):
        for f in glob.glob(os.path.join(out, pattern)):
            os.remove(f)
    t_start = time.monotonic()
    setup_packages(suite)
    setup_build(suite)
    setup_services(suite)
    machine_figures(suite)

    if any(suite.has(k) for k in (1, 2, 4, 5, 6, 8, 9, 11, 12)):
        suite.start_tipcastd(1, TC_MAX_CONNS)
        seed(suite)
    if suite.has(1):
        s1_gifts.run(suite)
    if suite.has(4):
        s4_durability.run(suite)
    if suite.has(5):
        s5_settlement.run(suite)
    if suite.has(6):
        s6_risk.run(suite)
    if suite.has(2):
        s2_fanout.run(suite)
    if suite.has(12):
        s12_hotroom.run(suite)
    if suite.has(8):
        s8_features.run(suite)
    if suite.has(9):
        s9_wait.run(suite)  # stops its tipcastd
    if suite.has(11):
        s11_cluster.run(suite)  # stops its tipcastd
    if suite.has(3):
        if not suite.servers:
            suite.start_tipcastd(1, TC_MAX_CONNS)
            seed(suite)
            suite.stop_tipcastd()
        s3_idle.run(suite)
    suite.stop_tipcastd()
    if suite.has(10):
        s10_partitions.run(suite)
    if suite.has(7):
        s7_stats.run(suite)
    suite.fig("run.seconds", int(time.monotonic() - t_start))

    if suite.s.no_doc:
        doc, charts = os.path.join(out, "benchmarks.md"), os.path.join(out, "charts")
    else:
        doc, charts = "docs/benchmarks.md", "docs/bench"
        for f in glob.glob(os.path.join(charts, "*.svg")):
            os.remove(f)
    if report.main(["--out", out, "--doc", doc, "--charts", charts]) != 0:
        raise BenchError(f"writing {doc} failed")
    suite.log(f"wrote {doc} ({int(time.monotonic() - t_start)} s)")


def interrupted(signum, frame):
    raise KeyboardInterrupt


def main(argv):
    if argv:
        # Settings come from the environment only; -h shows them.
        print(__doc__, file=sys.stdout if argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if argv[0] in ("-h", "--help") else 2
    os.chdir(REPO)
    try:
        suite = Suite(Settings(os.environ))
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    rc = 0
    try:
        run_all(suite)
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        rc = 130
    finally:
        suite.stop_all()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
