"""s8_features.py - scenario 8 of the benchmark: the live-room features of issue 14 on the gift path and in a hot room, beside the same load without them, in one run.

Three kinds of room take the same load:
  on     rooms with a goal (counted on every gift, never reached) and a
         running PK battle (each room against its neighbour), on this build;
  idle   rooms with neither, on this build: combos, fan levels, the room's
         totals and the global boards still count every gift, as they
         always do;
  before the same load on the tipcastd of BENCH_S8_BASE (a commit from before
         the features; built here from `git archive` into BENCH_OUT), on
         rooms of its own.
Each kind has its own set of scenario 1's room count (bench-room-<base>..,
seeded by run.py), so no state of one touches another.

Measured, for each kind:
  - at a fixed rate (BENCH_S8_RATE), scenario 1's senders: ack p50/p99 and the
    CPU per acked gift of tipcastd and of Redis (from /proc, over the whole
    run; on and idle take turns, on-idle then idle-on);
  - tipcast-bench --find-max (ack p99 <= 50 ms), as in scenario 1;
  - scenario 2's hot room (BENCH_FANOUT_SUBS members, two senders) at
    fixed event rates: deliveries/s, delivery p99, tipcastd CPU per delivery.
"""

import http.client
import json
import os
import sys
import time

import s2_fanout
from report import num
from suite import REPO, SECRET, TC_MAX_CONNS, g6, jtext, token, tipcast_proc

sys.path.insert(0, os.path.join(REPO, "tests"))
import wsclient  # noqa: E402  (the tests' raw WebSocket client: standard library and msgpack)

GOAL_COINS = 10 ** 12        # never reached: every gift counts towards it
PK_SECONDS = 3600            # longer than the scenario: the battle runs throughout


def room_sets(s):
    """The first room of each kind (run.py seeds them; see rooms_needed)."""
    n = s.s1_rooms
    return {"idle": s.rooms, "on": s.rooms + n, "before": s.rooms + 2 * n}


def rooms_needed(s):
    """Creators to seed for the whole run when scenario 8 is in it."""
    return s.rooms + 3 * s.s1_rooms


def features_on(suite, first, n):
    """A goal in rooms FIRST..FIRST+N-1 (over WebSocket, as an admin) and a PK
    battle between each even room and the next (admin API); the count of
    rooms with both."""
    s = suite.s
    rooms = [f"bench-room-{first + i}" for i in range(n)]
    goals = 0
    ws = wsclient.connect(s.tc_port, token=token("bench-admin", "admin"))
    try:
        for room in rooms:
            r = ws.request({"type": "goal", "id": "g-" + room, "room": room, "amount": GOAL_COINS,
                            "text": "bench goal"}, timeout=10)
            goals += r.get("type") == "ack"
            if r.get("type") != "ack":
                suite.warn(f"goal in {room}: {r}")
    finally:
        ws.close()
    pks = 0
    conn = http.client.HTTPConnection("127.0.0.1", s.admin_port, timeout=30)
    try:
        for a, b in zip(rooms[0::2], rooms[1::2]):
            conn.request("POST", "/api/v1/pk", body=json.dumps({"room_a": a, "room_b": b, "seconds": PK_SECONDS}),
                         headers={"Content-Type": "application/json",
                                  "Authorization": "Bearer " + token("bench-admin", "admin")})
            r = conn.getresponse()
            body = r.read()
            pks += 2 if r.status == 201 else 0
            if r.status != 201:
                suite.warn(f"PK {a} vs {b}: {r.status} {body[:200]!r}")
    finally:
        conn.close()
    return min(goals, pks)


def postgres_pid(suite):
    """The PostgreSQL server's postmaster: the parent of its checkpointer (a backend's own would be gone
    once the query's connection closes)."""
    child = (suite.pg(suite.s.pg_conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'",
                      quiet=True) or "").strip()
    try:
        with open(f"/proc/{child}/stat", encoding="utf-8") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def redis_pid(suite):
    info = suite.rcli("info", "server") or ""
    pid = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("process_id:")), "")
    return int(pid) if pid.isdigit() else None


def gift_run(suite, name, rate, first, dur):
    """Scenario 1's senders at RATE into rooms FIRST..: a dict of ack p50/p99, acks/s, errors and the CPU us
    per acked gift of tipcastd, Redis and PostgreSQL (its processes: the postmaster and its backends) over
    the run."""
    s = suite.s
    pids = {"tipcastd": suite.servers[0].pid, "redis": redis_pid(suite), "postgres": postgres_pid(suite)}
    cpu = {"postgres": tipcast_proc.tree_cpu_s}
    before = {k: cpu.get(k, tipcast_proc.cpu_s)(p) if p else None for k, p in pids.items()}
    suite.bench(name, dur + 60, "--target", "tipcast", "--port", s.tc_port, "--secret", SECRET,
                "--connections", s.s1_conns, "--senders", s.s1_conns, "--rooms", s.s1_rooms,
                "--room-base", first, "--rate", g6(rate), "--warmup", 2, "--duration", dur)
    acked = num(suite.jget(name, "totals", "acked")) or 0
    figs = {}
    for k, p in pids.items():
        after = cpu.get(k, tipcast_proc.cpu_s)(p) if p else None
        figs[f"{k}_us_per_gift"] = "" if None in (before[k], after) or not acked else \
            g6((after - before[k]) * 1e6 / acked)
    for key, path in (("p50_ms", ("ack_latency_ms", "p50")), ("p99_ms", ("ack_latency_ms", "p99")),
                      ("acks_per_s", ("rates", "acks_per_s")), ("errors", ("totals", "errors_total"))):
        figs[key] = jtext(suite.jget(name, *path))
    return figs


def gifts_fixed(suite, kind, rnd, first):
    """gift_run at BENCH_S8_RATE into the kind's rooms; figures s8.<kind>.<rnd>.*."""
    figs = gift_run(suite, f"s8-{kind}-{rnd}", suite.s.s8_rate, first, suite.s.s8_dur)
    for k, v in figs.items():
        suite.fig(f"s8.{kind}.{rnd}.{k}", v)
    suite.log(f"  {kind}: ack p99 {figs['p99_ms']} ms, {figs['acks_per_s']} acks/s")


def gifts_max(suite, kind, first):
    s = suite.s
    name = f"s8-{kind}-max"
    suite.bench(name, s.s1_step_s * s.s1_max_steps + 120, "--target", "tipcast", "--port", s.tc_port,
                "--secret", SECRET, "--connections", s.s1_conns, "--senders", s.s1_conns, "--rooms", s.s1_rooms,
                "--room-base", first, "--rate", s.s1_start, "--find-max", "--p99-bound-ms", 50,
                "--step-seconds", s.s1_step_s, "--warmup", 2, "--duration", s.s1_step_s * s.s1_max_steps,
                "--server-pid", suite.servers[0].pid)
    best = jtext(suite.jget(name, "find_max", "max_rate"))
    suite.fig(f"s8.{kind}.max", best)
    suite.log(f"  {kind}: find-max {best or '?'} gifts/s")


def fanout(suite, kind, room):
    s = suite.s
    for rate in s.s8_fan_rates:
        name = f"s8-{kind}-fan{rate}"
        s2_fanout.fanout(suite, name, "tipcast", s.tc_port, suite.servers[0].pid, rate, s.s2_warm, s.s2_dur, room)
        d, p, c, e = s2_fanout.fanout_sum(suite, name)
        suite.fig(f"s8.{kind}.fan{rate}", f"{d} {p} {c} {e}")
        suite.log(f"  {kind}, hot room at {rate} events/s: {d} deliveries/s, p99 {p} ms, {c} us CPU per delivery")


def build_base(suite, ref):
    """tipcastd of commit REF, built in BENCH_OUT; its path, or None."""
    src, build = suite.path("s8-base-src"), suite.path("s8-base-build")
    suite.log(f"scenario 8: building tipcastd of {ref} (the features' 'before') in {build}")
    sha = suite.run(["git", "rev-parse", "--verify", "--short", ref + "^{commit}"], 30, quiet=True).stdout.strip()
    if not sha:
        suite.warn(f"BENCH_S8_BASE {ref!r} is no commit of this repository (a shallow clone?): no 'before' figures")
        return None
    suite.run(["rm", "-rf", src], 60)
    os.makedirs(src)
    log = suite.path("s8-base-build.log")
    for cmd, bound in ((["sh", "-c", f'git archive {sha} | tar -x -C "{src}"'], 120),
                       (["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], 300),
                       (["cmake", "--build", build, "--target", "tipcastd", f"-j{len(os.sched_getaffinity(0))}"],
                        1200)):
        p = suite.run(cmd, bound, merge=True)
        with open(log, "a", encoding="utf-8") as f:
            f.write(p.stdout)
        if p.returncode != 0:
            suite.warn(f"building {ref} failed (see {log}): no 'before' figures")
            return None
    suite.fig("s8.base_commit", sha)
    return os.path.join(build, "server", "tipcastd")


def run(suite):
    s = suite.s
    first = room_sets(s)
    suite.log(f"scenario 8: live-room features, {s.s1_rooms} rooms each: a goal and a PK battle in "
              f"bench-room-{first['on']}.., none in bench-room-{first['idle']}..")
    # When and on what (the report can merge this scenario into an older run's figures).
    commit = suite.run(["git", "rev-parse", "--short", "HEAD"], 30, quiet=True).stdout.strip()
    suite.fig("s8.commit", commit or "unknown")
    suite.fig("s8.date", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    ready = features_on(suite, first["on"], s.s1_rooms)
    suite.fig("s8.rooms", s.s1_rooms)
    suite.fig("s8.rooms_with_features", ready)
    suite.fig("s8.rate", s.s8_rate)
    suite.fig("s8.fan_rates", " ".join(s.s8_fan_rates))
    suite.log(f"scenario 8: {s.s8_dur} s at {s.s8_rate} gifts/s, features on and idle taking turns")
    for k, kind in enumerate(("on", "idle", "idle", "on")):
        gifts_fixed(suite, kind, k // 2, first[kind])
    for kind in ("idle", "on"):
        gifts_max(suite, kind, first[kind])
    for kind in ("idle", "on"):
        fanout(suite, kind, first[kind])

    base = build_base(suite, s.s8_base) if s.s8_base not in ("", "none") else None
    if not base:
        return
    current = suite.tipcastd
    suite.stop_tipcastd()
    suite.tipcastd = base
    try:
        suite.start_tipcastd(1, TC_MAX_CONNS)
        suite.log(f"scenario 8: the same load on {s.s8_base}'s tipcastd")
        for k in range(2):
            gifts_fixed(suite, "before", k, first["before"])
        gifts_max(suite, "before", first["before"])
        fanout(suite, "before", first["before"])
    finally:
        suite.stop_tipcastd()
        suite.tipcastd = current
