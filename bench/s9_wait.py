"""s9_wait.py - scenario 9 of the benchmark: what durable acknowledgements
cost (redis-wait-replicas, issue 15; docs/operations.md, "Acknowledged
orders and a failover").

A replica of the bench Redis is started here (redis-server --replicaof, on a
free port, no persistence of its own) and waited for until it is in sync;
it stays attached for both runs, so that replication itself costs the same
in both. Then tipcastd runs with redis-wait-replicas 0 and then 1
(restarted for each), and takes:
  - scenario 1's senders and rooms at a fixed rate (BENCH_S9_RATE) for
    scenario 8's duration: ack p50/p99, acks/s, errors, tipcastd's and
    Redis's CPU per acked gift, and the WAITs sent (from /metrics);
  - tipcast-bench --find-max (ack p99 <= 50 ms), as in scenario 1.
"""

import http.client
import os
import socket
import subprocess
import time

from report import num
from s8_features import redis_pid
from suite import SECRET, TC_MAX_CONNS, g6, jtext, tipcast_proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_replica(suite):
    s = suite.s
    port = free_port()
    d = suite.path("s9-replica")
    os.makedirs(d, exist_ok=True)
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", d, "--replicaof", "127.0.0.1", str(s.redis_port)],
                            stdout=open(os.path.join(d, "redis.log"), "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = subprocess.run(["redis-cli", "-p", str(port), "info", "replication"], capture_output=True,
                             text=True, timeout=10).stdout
        if "master_link_status:up" in out:
            return proc
        time.sleep(0.2)
    proc.terminate()
    proc.wait(timeout=30)
    return None


def metric(suite, name):
    """A sample of tipcastd's /metrics, or None."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", suite.s.tc_port, timeout=10)
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read().decode(errors="replace") if r.status == 200 else ""
        c.close()
    except OSError:
        return None
    for line in body.splitlines():
        if line.startswith(name + " "):
            return line.split()[1]
    return None


def fixed(suite, mode):
    s = suite.s
    name = f"s9-wait{mode}"
    pids = {"tipcastd": suite.servers[0].pid, "redis": redis_pid(suite)}
    before = {k: tipcast_proc.cpu_s(p) if p else None for k, p in pids.items()}
    waits0 = num(metric(suite, "tipcast_redis_waits_total")) or 0
    suite.bench(name, s.s8_dur + 60, "--target", "tipcast", "--port", s.tc_port, "--secret", SECRET,
                "--connections", s.s1_conns, "--senders", s.s1_conns, "--rooms", s.s1_rooms,
                "--rate", s.s9_rate, "--warmup", 2, "--duration", s.s8_dur)
    acked = num(suite.jget(name, "totals", "acked")) or 0
    for k, p in pids.items():
        after = tipcast_proc.cpu_s(p) if p else None
        us = "" if None in (before[k], after) or not acked else g6((after - before[k]) * 1e6 / acked)
        suite.fig(f"s9.{mode}.{k}_us_per_gift", us)
    for key, path in (("p50_ms", ("ack_latency_ms", "p50")), ("p99_ms", ("ack_latency_ms", "p99")),
                      ("acks_per_s", ("rates", "acks_per_s")), ("errors", ("totals", "errors_total"))):
        suite.fig(f"s9.{mode}.{key}", jtext(suite.jget(name, *path)))
    waits = (num(metric(suite, "tipcast_redis_waits_total")) or 0) - waits0
    suite.fig(f"s9.{mode}.waits", g6(waits))
    suite.fig(f"s9.{mode}.gifts_per_wait", g6(acked / waits) if waits else "")
    suite.log(f"  wait {mode}: ack p50 {jtext(suite.jget(name, 'ack_latency_ms', 'p50'))} ms, p99 "
              f"{jtext(suite.jget(name, 'ack_latency_ms', 'p99'))} ms, {g6(waits)} WAITs")


def run(suite):
    s = suite.s
    suite.log(f"scenario 9: redis-wait-replicas 0 and 1 with one replica attached, {s.s9_rate} gifts/s")
    replica = start_replica(suite)
    if not replica:
        suite.warn("scenario 9: the replica did not get in sync; skipped")
        return
    suite.fig("s9.rate", s.s9_rate)
    saved = list(s.tc_args)
    try:
        for mode in (0, 1):
            suite.stop_tipcastd()
            s.tc_args = saved + ["--redis-wait-replicas", str(mode)]
            suite.start_tipcastd(1, TC_MAX_CONNS)
            fixed(suite, mode)
            best = suite.find_max(f"s9-wait{mode}-max")
            suite.fig(f"s9.{mode}.max", best)
            suite.log(f"  wait {mode}: find-max {best or '?'} gifts/s")
    finally:
        suite.stop_tipcastd()
        s.tc_args = saved
        replica.terminate()
        replica.wait(timeout=30)
