"""Redis Cluster (issue 15), the first part: the loopback cluster of
scripts/cluster.sh (3 masters, 3 replicas) and core/slots.c read against
it through tests/slots_probe: every key's slot equals CLUSTER KEYSLOT's,
the map equals CLUSTER SLOTS, MOVED and ASK are read as the nodes send them,
and after a master is SIGKILLed the map read again names its replica.

The cluster is this module's own (instance `pytest`, free ports), started
fresh and stopped at the end."""

import os
import random
import shutil
import signal
import socket
import string
import subprocess
import time

import pytest

from conftest import REPO, _binary
from resp import Redis

CLUSTER_SH = os.path.join(REPO, "scripts", "cluster.sh")
NAME = "pytest"
STATE = os.path.join(REPO, ".state", f"cluster-{NAME}")


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base():
    """A first port whose six ports and their cluster bus ports (+10000) are free."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        if all(port_free(p) and port_free(p + 10000) for p in range(base, base + 6)):
            return base
    pytest.fail("no six free ports")


def sh(cmd, base, timeout=120):
    env = dict(os.environ, TIPCAST_CLUSTER_PORT=str(base))
    return subprocess.run(["bash", CLUSTER_SH, cmd, NAME], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    shutil.rmtree(STATE, ignore_errors=True)
    base = free_base()
    out = sh("start", base)
    assert out.returncode == 0, out.stderr
    try:
        yield list(range(base, base + 6))
    finally:
        sh("stop", base)
        shutil.rmtree(STATE, ignore_errors=True)


def probe(port, lines=()):
    """slots_probe's map {(first, last): 'host:port'} and its answers to lines."""
    exe = os.path.join(os.path.dirname(os.path.dirname(_binary())), "tests", "slots_probe")
    out = subprocess.run([exe, "127.0.0.1", str(port)], input="".join(line + "\n" for line in lines),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    ranges = {(int(r.split()[1]), int(r.split()[2])): r.split()[3] for r in rows if r.startswith("map ")}
    return ranges, [r for r in rows if not r.startswith("map ")]


def cluster_slots(port):
    r = Redis(port=port)
    try:
        got = r("CLUSTER", "SLOTS")
    finally:
        r.close()
    return {(int(e[0]), int(e[1])): f"{e[2][0]}:{e[2][1]}" for e in got}


def test_keyslots_match_the_cluster(cluster):
    rnd = random.Random(15)
    keys = ["foo", "123456789", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "a{b", "}{x}", "{}",
            "tc:{w:0}:outbox", "tc:{w:3}:bal:alice", "tc:{r:alice}:seq", "tc:{r:alice}:board:day:20261130"]
    alphabet = string.ascii_letters + string.digits + "{}:_-.!@#"
    keys += ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 40))) for _ in range(600)]
    _, answers = probe(cluster[0], [f"k {k}" for k in keys])
    r = Redis(port=cluster[0])
    try:
        want = [r("CLUSTER", "KEYSLOT", k) for k in keys]
    finally:
        r.close()
    got = [int(a.split()[1]) for a in answers]
    assert [(k, g, w) for k, g, w in zip(keys, got, want) if g != w] == []


def test_map_matches_cluster_slots(cluster):
    ranges, _ = probe(cluster[0])
    assert ranges == cluster_slots(cluster[0])
    # Three masters over every slot; the probe read the same from another node.
    assert len(set(ranges.values())) == 3
    assert probe(cluster[4])[0] == ranges


def node_ids(port):
    """{'host:port': (id, flags, master_id)} from CLUSTER NODES."""
    r = Redis(port=port)
    try:
        text = r("CLUSTER", "NODES")
    finally:
        r.close()
    out = {}
    for line in text.splitlines():
        f = line.split()
        out[f[1].split("@")[0]] = (f[0], f[2], f[3])
    return out


def test_moved_and_ask_are_read(cluster):
    ranges, answers = probe(cluster[0], ["k tc:{w:1}:bal:bob"])
    _, slot, owner = answers[0].split()
    wrong = next(p for p in cluster[:3] if f"127.0.0.1:{p}" != owner and
                 f"127.0.0.1:{p}" in ranges.values())
    r = Redis(port=wrong)
    with pytest.raises(RuntimeError) as e:
        r("GET", "tc:{w:1}:bal:bob")
    r.close()
    _, got = probe(cluster[0], [f"e {e.value}"])
    assert got == [f"moved {slot} {owner}"], str(e.value)

    # ASK: the slot migrating from its owner to `wrong`; a key the owner
    # does not hold is asked of the importing node.
    ids = node_ids(cluster[0])
    src, dst = ids[owner][0], ids[f"127.0.0.1:{wrong}"][0]
    a, b = Redis(port=int(owner.split(":")[1])), Redis(port=wrong)
    try:
        assert b("CLUSTER", "SETSLOT", slot, "IMPORTING", src) == "OK"
        assert a("CLUSTER", "SETSLOT", slot, "MIGRATING", dst) == "OK"
        with pytest.raises(RuntimeError) as e:
            a("GET", "tc:{w:1}:bal:bob")
        _, got = probe(cluster[0], [f"e {e.value}", "e ERR wrong number of arguments"])
        assert got == [f"ask {slot} 127.0.0.1:{wrong}", "no"], str(e.value)
    finally:
        # The migration called off: both nodes back to the slot as it was.
        for node in (a, b):
            node("CLUSTER", "SETSLOT", slot, "STABLE")
            node.close()
    assert probe(cluster[0])[0] == ranges


def test_failover_moves_the_slots_to_the_replica(cluster):
    ranges, _ = probe(cluster[0])
    victim = ranges[next(k for k in ranges if k[0] == 0)]
    vport = int(victim.split(":")[1])
    ids = node_ids(cluster[0])
    vid = ids[victim][0]
    replica = next(n for n, (_, flags, master) in ids.items() if master == vid)
    with open(os.path.join(STATE, str(vport), "redis.pid")) as f:
        os.kill(int(f.read().strip()), signal.SIGKILL)
    survivor = next(p for p in cluster if p != vport)
    deadline = time.monotonic() + 30
    while True:
        try:
            now = cluster_slots(survivor)
        except (OSError, RuntimeError):
            now = {}
        if now.get(next((k for k in now if k[0] == 0), None)) == replica:
            break
        assert time.monotonic() < deadline, f"no failover of {victim} to {replica} in 30 s: {now}"
        time.sleep(0.2)
    ranges_after, answers = probe(survivor, ["k foo", "k tc:{w:0}:outbox"])
    assert ranges_after == now
    assert victim not in ranges_after.values()
    for a in answers:
        slot = int(a.split()[1])
        assert a.split()[2] == next(o for (lo, hi), o in ranges_after.items() if lo <= slot <= hi)
    # The killed node comes back (as its replica's replica) with cluster.sh start.
    out = sh("start", cluster[0])
    assert out.returncode == 0, out.stderr
    assert node_ids(survivor)[victim][2] == node_ids(survivor)[replica][0]
