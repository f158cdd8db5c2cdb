"""s1_gifts.py - scenario 1 of the benchmark: tipcast's highest gift rate (tipcast-bench --find-max, ack p99 <= 50 ms) against the Redis ceiling and one synchronous PostgreSQL transaction per gift (pgbench)."""

import os
import time

from suite import REPO, SECRET, jtext

WALLET_MOVE = "gifts/lua/wallet_move.lua"  # tipcast's own debit script
# Steps between the last x1.5 step held and the first failed, each at the
# geometric mean of the bracket: the maximum to within 1.5 ** (1 / 4), 11%.
S1_REFINE = 2


def run(suite):
    s = suite.s
    suite.log(f"scenario 1: tipcast --find-max (ack p99 <= 50 ms), {s.s1_conns} senders over {s.s1_rooms} rooms")
    suite.bench("s1-tipcast", s.s1_step_s * s.s1_max_steps + 120,
                "--target", "tipcast", "--port", s.tc_port, "--secret", SECRET,
                "--connections", s.s1_conns, "--senders", s.s1_conns, "--rooms", s.s1_rooms,
                "--rate", s.s1_start, "--find-max", "--refine", S1_REFINE, "--p99-bound-ms", 50,
                "--step-seconds", s.s1_step_s, "--warmup", 2,
                "--duration", s.s1_step_s * s.s1_max_steps, "--server-pid", suite.servers[0].pid,
                "--redis", f"127.0.0.1:{s.redis_port}", "--pg", s.pg_conn)
    suite.s1_max = jtext(suite.jget("s1-tipcast", "find_max", "max_rate"))
    suite.fig("s1.tipcast_max", suite.s1_max)
    suite.log(f"  tipcast max: {suite.s1_max or '?'} gifts/s")
    redis_ceiling(suite)
    pgbench_baseline(suite)


def redis_ceiling(suite):
    """tipcast's own wallet script with EVALSHA, pipelined, on the same Redis.
    Keys live in database 9 (tipcastd uses 0, so its outbox consumers never
    see these entries); FLUSHDB removes them afterwards."""
    s = suite.s
    db, u = "9", "bench-ceiling"
    try:
        with open(os.path.join(REPO, WALLET_MOVE), encoding="utf-8") as f:
            sha = suite.rcli("-x", "script", "load", stdin_text=f.read())
    except OSError as e:
        sha = None
        suite.warn(f"{WALLET_MOVE}: {e.strerror}")
    if not sha:
        suite.warn("SCRIPT LOAD failed")
        return
    suite.rcli("-n", db, "flushdb")
    suite.rcli("-n", db, "set", f"tc:{{w:0}}:bal:{u}", "1000000000000000")  # 1e15 < 2^53
    suite.log(f"scenario 1: Redis ceiling, redis-benchmark -P 16 -c 50 -n {s.ceil_n} EVALSHA {sha[:12]}..")
    # KEYS: balance, idempotency, outbox, risk hash (the day's spending)
    # ARGV: kind uid room gift name animation count price amount combo text
    #       request-id ts fingerprint idem-ttl-ms backlog-bound role
    #       ref ots ip device daily-cap new-account-cap new-account-ms
    p = suite.run(["redis-benchmark", "-h", "127.0.0.1", "-p", s.redis_port, "--dbnum", db,
                   "-P", 16, "-c", 50, "-n", s.ceil_n, "-r", 1000000000, "--csv",
                   "evalsha", sha, 4, f"tc:{{w:0}}:bal:{u}", f"tc:{{w:0}}:idem:{u}:__rand_int__",
                   "tc:{w:0}:outbox", f"tc:{{w:0}}:risk:{u}", "gift", u, "bench-room-0", 1, "Rose", "rose", 1, 1,
                   1, "c1", "", "req-__rand_int__", int(time.time() * 1000), "fp1", 600000, 1000000000000,
                   "viewer", "", 0, "127.0.0.1", "", 0, 0, 0], 300, merge=True)
    with open(suite.path("s1-redis-ceiling.log"), "w", encoding="utf-8") as f:
        f.write(p.stdout)
    rps = ""
    for line in p.stdout.splitlines():
        if line.lower().startswith('"evalsha'):
            fields = line.split('","')
            rps = fields[1].strip('"') if len(fields) > 1 else ""
    xlen = suite.rcli("-n", db, "xlen", "tc:{w:0}:outbox") or ""
    bal = suite.rcli("-n", db, "get", f"tc:{{w:0}}:bal:{u}") or ""
    suite.rcli("-n", db, "flushdb")
    if p.returncode != 0:
        suite.warn(f"redis-benchmark exited with {p.returncode} (see {suite.path('s1-redis-ceiling.log')})")
    # Every call must have been a real debit (not an error reply): the outbox
    # grew by about N (a few request ids repeat and are replays).
    if xlen.isdigit() and int(xlen) < s.ceil_n * 9 // 10:
        suite.warn(f"only {xlen} of {s.ceil_n} EVALSHA calls debited (see {suite.path('s1-redis-ceiling.log')})")
    suite.fig("s1.redis_ceiling", rps)
    suite.fig("s1.redis_ceiling_debits", xlen)
    suite.fig("s1.redis_ceiling_calls", s.ceil_n)
    suite.log(f"  Redis ceiling: {rps or '?'} calls/s ({xlen} debits, balance left {bal})")


def pgbench_baseline(suite):
    """pgbench with the peer script pg-gift.sql in a scratch database."""
    s = suite.s
    sql = os.path.join(s.peers, "pg-gift.sql")
    schema = os.path.join(s.peers, "pg-gift-schema.sql")
    if not (os.path.isfile(sql) and os.path.isfile(schema)):
        suite.warn(f"{sql} or {schema} missing: no pgbench baseline")
        return
    suite.log(f"scenario 1: pgbench -c 16 -j 2 -T {s.pgb_t} with pg-gift.sql (database pgbench_gift)")
    if suite.pg(s.pg_admin, "DROP DATABASE IF EXISTS pgbench_gift WITH (FORCE)",
                "CREATE DATABASE pgbench_gift") is None \
            or suite.pg(s.pg_gift, file=schema) is None:
        suite.warn("pgbench tables failed")
        return
    p = suite.run(["pgbench", "-n", "-f", sql, "-c", 16, "-j", 2, "-T", s.pgb_t, s.pg_gift],
                  s.pgb_t + 60, merge=True)
    if p.returncode != 0:
        suite.warn(f"pgbench failed (see {suite.path('s1-pgbench.log')})")
    with open(suite.path("s1-pgbench.log"), "w", encoding="utf-8") as f:
        f.write(p.stdout)
    tps = next((line.split()[2] for line in p.stdout.splitlines()
                if line.startswith("tps = ") and len(line.split()) > 2), "")
    suite.fig("s1.pgbench_tps", tps)
    suite.log(f"  pgbench: {tps or '?'} tps")
    suite.pg(s.pg_admin, "DROP DATABASE IF EXISTS pgbench_gift WITH (FORCE)")
