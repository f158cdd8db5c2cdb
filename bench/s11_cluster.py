"""s11_cluster.py - scenario 11 of the benchmark: tipcastd on a Redis
Cluster (issue 15; docs/operations.md, "tipcastd on a Redis Cluster").

scripts/cluster.sh's instance `bench` (3 masters, one replica each, AOF on,
free ports; removed at the end) beside the bench Redis. tipcastd runs on
`one` (the bench Redis, as in scenario 1), on `cluster` (redis-cluster: its
seeds) and on `cluster1` (the same cluster once redis-cli --cluster reshard
has moved every slot to one master, replica migration off so that it keeps
one replica), restarted for each, and takes:
  - scenario 1's senders and rooms at a fixed rate (BENCH_S11_RATE) for
    scenario 8's duration: ack p50/p99, acks/s, errors, tipcastd's CPU per
    acked gift, and the Redis servers' (the one Redis; the three masters and
    the three replicas, and per master);
  - tipcast-bench --find-max (ack p99 <= 50 ms), as in scenario 1.
All of it shares this machine's cores: the cluster's six redis-servers
with tipcastd, PostgreSQL and the load generator.
"""

import os
import random
import shutil
import socket
import subprocess
import time

from s8_features import redis_pid
from suite import REPO, SECRET, TC_MAX_CONNS, g6, jtext, tipcast_proc

NAME = "bench"


def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def start_cluster(suite):
    """The cluster's first port, or None."""
    for _ in range(500):
        base = random.randrange(30000, 40000)
        if all(free(p) and free(p + 10000) for p in range(base, base + 6)):
            break
    else:
        return None
    shutil.rmtree(os.path.join(REPO, ".state", f"cluster-{NAME}"), ignore_errors=True)
    p = suite.run(["bash", os.path.join(REPO, "scripts", "cluster.sh"), "start", NAME], 300,
                  env={"TIPCAST_CLUSTER_PORT": str(base)}, quiet=True)
    return base if p.returncode == 0 else None


def stop_cluster(suite, base):
    suite.run(["bash", os.path.join(REPO, "scripts", "cluster.sh"), "stop", NAME], 120,
              env={"TIPCAST_CLUSTER_PORT": str(base)}, quiet=True)
    shutil.rmtree(os.path.join(REPO, ".state", f"cluster-{NAME}"), ignore_errors=True)


def one_master(suite, base):
    """Moves every slot to the first master (redis-cli --cluster reshard);
    True when done."""
    nodes = subprocess.run(["redis-cli", "-p", str(base), "cluster", "nodes"], capture_output=True, text=True,
                           timeout=10).stdout.splitlines()
    masters = []
    for line in nodes:
        f = line.split()
        if len(f) > 8 and "master" in f[2]:
            slots = sum(int(r.split("-")[1]) - int(r.split("-")[0]) + 1 if "-" in r else 1
                        for r in f[8:] if not r.startswith("["))
            masters.append((f[0], slots))
    if len(masters) < 2:
        return False
    # Redis 7 moves the replicas of a master left without slots to the one
    # that took them; kept where they are, the one master has one replica,
    # as each of the three had.
    for port in range(base, base + 6):
        subprocess.run(["redis-cli", "-p", str(port), "config", "set", "cluster-allow-replica-migration", "no"],
                       capture_output=True, timeout=10)
    to = masters[0][0]
    for node, slots in masters[1:]:
        # The nodes must agree on the map first (the last move spreads by gossip).
        for _ in range(60):
            if suite.run(["redis-cli", "--cluster", "check", f"127.0.0.1:{base}"], 60, quiet=True).returncode == 0:
                break
            time.sleep(0.5)
        p = suite.run(["redis-cli", "--cluster", "reshard", f"127.0.0.1:{base}", "--cluster-from", node,
                       "--cluster-to", to, "--cluster-slots", slots, "--cluster-yes"], 900, merge=True)
        with open(suite.path("s11-reshard.log"), "a", encoding="utf-8") as f:
            f.write(p.stdout or "")
        if p.returncode != 0:
            return False
    # Replicas of the masters left without slots may move to the one with
    # them (replica migration) and sync it in full: measured only once every
    # replica is in sync again.
    time.sleep(5)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        infos = [subprocess.run(["redis-cli", "-p", str(port), "info", "replication"], capture_output=True,
                                text=True, timeout=10).stdout for port in range(base, base + 6)]
        if all("role:master" in i or ("master_link_status:up" in i and "master_sync_in_progress:0" in i)
               for i in infos):
            return True
        time.sleep(1)
    return False


def cluster_pids(base):
    """{'master': [pid...], 'replica': [pid...]} of the six nodes."""
    out = {"master": [], "replica": []}
    for port in range(base, base + 6):
        try:
            with open(os.path.join(REPO, ".state", f"cluster-{NAME}", str(port), "redis.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        role = subprocess.run(["redis-cli", "-p", str(port), "role"], capture_output=True, text=True,
                              timeout=10).stdout.split("\n", 1)[0].strip()
        out["master" if role == "master" else "replica"].append(pid)
    return out


def fixed(suite, mode, redis):
    s = suite.s
    name = f"s11-{mode}-fixed"
    pids = {"tipcastd": [suite.servers[0].pid], **redis}
    before = {k: [tipcast_proc.cpu_s(p) for p in v] for k, v in pids.items()}
    suite.bench(name, s.s8_dur + 60, "--target", "tipcast", "--port", s.tc_port, "--secret", SECRET,
                "--connections", s.s1_conns, "--senders", s.s1_conns, "--rooms", s.s1_rooms,
                "--rate", s.s11_rate, "--warmup", 2, "--duration", s.s8_dur)
    from report import num
    acked = num(suite.jget(name, "totals", "acked")) or 0
    for k, v in pids.items():
        after = [tipcast_proc.cpu_s(p) for p in v]
        ok = acked and v and None not in before[k] + after
        spent = sum(a - b for a, b in zip(after, before[k])) if ok else None
        suite.fig(f"s11.{mode}.{k}_us_per_gift", g6(spent * 1e6 / acked) if ok else "")
        if k == "master" and ok:
            suite.fig(f"s11.{mode}.per_master_us_per_gift",
                      " / ".join(f"{(a - b) * 1e6 / acked:.0f}" for a, b in zip(after, before[k])))
    for key, path in (("p50_ms", ("ack_latency_ms", "p50")), ("p99_ms", ("ack_latency_ms", "p99")),
                      ("acks_per_s", ("rates", "acks_per_s")), ("errors", ("totals", "errors_total"))):
        suite.fig(f"s11.{mode}.{key}", jtext(suite.jget(name, *path)))
    suite.log(f"  {mode}: ack p50 {jtext(suite.jget(name, 'ack_latency_ms', 'p50'))} ms, p99 "
              f"{jtext(suite.jget(name, 'ack_latency_ms', 'p99'))} ms")


def run(suite):
    s = suite.s
    suite.log(f"scenario 11: one Redis, a cluster of 3 masters + 3 replicas, and of its slots on one master, "
              f"{s.s11_rate} gifts/s")
    base = start_cluster(suite)
    if base is None:
        suite.warn("scenario 11: the cluster did not start; skipped")
        return
    suite.fig("s11.rate", s.s11_rate)
    seeds = ",".join(f"127.0.0.1:{p}" for p in range(base, base + 6))
    saved = list(s.tc_args)
    try:
        for mode in ("one", "cluster", "cluster1"):
            suite.stop_tipcastd()
            if mode == "cluster1" and not one_master(suite, base):
                suite.warn("scenario 11: moving every slot to one master failed; no 1-master figures")
                break
            s.tc_args = saved + (["--redis-cluster", seeds] if mode != "one" else [])
            suite.start_tipcastd(1, TC_MAX_CONNS)
            if mode == "one":
                rp = redis_pid(suite)
                redis = {"master": [rp] if rp else []}
            else:
                redis = cluster_pids(base)
            fixed(suite, mode, redis)
            best = suite.find_max(f"s11-{mode}-max")
            suite.fig(f"s11.{mode}.max", best)
            suite.log(f"  {mode}: find-max {best or '?'} gifts/s")
    finally:
        suite.stop_tipcastd()
        s.tc_args = saved
        stop_cluster(suite, base)
