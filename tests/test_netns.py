"""Nodes in network namespaces of their own serve one room (issue 15, "many
nodes").

Three tipcastd, each in a network namespace of its own (`ip netns`, a veth
pair per node on a bridge), reach the test's Redis (its own, listening on the
bridge) and the test PostgreSQL (through a forwarder on the bridge) over the
bridge, as nodes on separate hosts would. Members join one room through
every node and gifts are sent through two of them. Then the node holding the
outbox shards' leases is SIGKILLed mid-stream: the others take its shards
and what it left pending. Asserted: every acknowledged gift is exactly one
order in PostgreSQL, the shards are taken over within seconds (the lease's
5 s and a renewal), and every member on
a surviving node got every event of the room, in seq order, with no gap and
no duplicate.
"""

import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import PG, TcpProxy, mint_token
from helpers import SHARDS, own_redis, psql, wait_for, wait_room_live
from resp import Redis
from test_money import ROSE, catalog, credit, live_creator  # noqa: F401 (catalog: a fixture)
from wsclient import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, RecvTimeout, unique

NODES = 3
LEASE_MS = 5000  # gifts/outbox.h OUTBOX_LEASE_MS
FAST = dict(max_msgs_per_s=10000, max_burst=10000)


def ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def bridge():
    """A bridge with 10.213.K.1/24 in the test's namespace and NODES network
    namespaces, node i at 10.213.K.(10+i) on a veth pair to the bridge.
    Yields (bridge address, [(namespace, address)])."""
    tag = f"{os.getpid() % 10000}"
    k = 1 + os.getpid() % 250
    br, names = f"tcbr{tag}", [f"tcns{tag}-{i}" for i in range(NODES)]
    if ip("netns", "add", names[0]).returncode != 0:
        pytest.skip("cannot make network namespaces here (ip netns add failed: root is needed)")
    made = [names[0]]
    try:
        for n in names[1:]:
            assert ip("netns", "add", n).returncode == 0
            made.append(n)
        steps = [("link", "add", br, "type", "bridge"), ("addr", "add", f"10.213.{k}.1/24", "dev", br),
                 ("link", "set", br, "up")]
        nodes = []
        for i, n in enumerate(names):
            host_end, ns_end, addr = f"tch{tag}-{i}", f"tcc{tag}-{i}", f"10.213.{k}.{10 + i}"
            steps += [("link", "add", host_end, "type", "veth", "peer", "name", ns_end),
                      ("link", "set", host_end, "master", br), ("link", "set", host_end, "up"),
                      ("link", "set", ns_end, "netns", n),
                      ("-n", n, "addr", "add", f"{addr}/24", "dev", ns_end),
                      ("-n", n, "link", "set", ns_end, "up"), ("-n", n, "link", "set", "lo", "up")]
            nodes.append((n, addr))
        for st in steps:
            out = ip(*st)
            assert out.returncode == 0, (st, out.stderr)
        yield f"10.213.{k}.1", nodes
    finally:
        ip("link", "del", br)
        for n in made:
            ip("netns", "del", n)


def lease_holders(r):
    return {r("GET", f"tc:{{w:{s}}}:lease:ledger") for s in range(SHARDS)}


def test_nodes_in_namespaces_serve_one_room_and_take_over_a_killed_node(server, client, catalog, bridge,
                                                                         tmp_path):
    br_addr, nodes = bridge
    pg_host, pg_port = re.search(r"host=(\S+)", PG).group(1), re.search(r"port=(\d+)", PG).group(1)
    pg_fwd = TcpProxy(pg_host, pg_port, bind=br_addr)
    # (Protected mode off: it refuses clients that are not on loopback.)
    with own_redis(tmp_path, "--bind", br_addr, "127.0.0.1", "--protected-mode", "no") as rport:
        r = Redis(port=rport)
        pg = re.sub(r"host=\S+", f"host={br_addr}", re.sub(r"port=\d+", f"port={pg_fwd.port}", PG))
        srvs = [server(netns=n, listen_addr=a, admin_listen=None, redis_host=br_addr, redis_port=rport, pg=pg,
                       **FAST) for n, a in nodes]
        creator = unique("cr")
        live_creator(creator)
        # Which node holds the outbox shards (the first to start takes them all).
        wait_for(lambda: None not in lease_holders(r), what="every shard's ledger lease taken")
        holders = lease_holders(r)
        assert len(holders) == 1, holders
        ids = [re.search(r'tipcastd node (\S+) listening', s.stderr_text()).group(1) for s in srvs]
        victim = ids.index(holders.pop())
        survivors = [i for i in range(NODES) if i != victim]

        members = {}
        for i, s in enumerate(srvs):
            for proto in (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK):
                m = client(s, unique("m"), "viewer", proto)
                m.join(creator)
                members.setdefault(i, []).append(m)
        # Each member is read all along, in a thread of its own: one that
        # stopped reading would be closed as a slow consumer.
        got, reading = {}, threading.Event()

        def drain(m):
            while not reading.is_set():
                try:
                    got[m].append(m.expect("event", timeout=0.5))
                except RecvTimeout:
                    continue
                except Exception:  # noqa: BLE001 (the killed node's members lose their connection)
                    return

        readers = []
        for ms in members.values():
            for m in ms:
                got[m] = []
                readers.append(threading.Thread(target=drain, args=(m,)))
                readers[-1].start()
        adm = client(srvs[survivors[0]], unique("adm"), "admin")
        senders = []
        for i in survivors:
            u = unique("v")
            credit(adm, u, 100000)
            c = client(srvs[i], u, "viewer")
            wait_room_live(c, creator)
            senders.append(c)

        acked, errors, lock, stop = [], [], threading.Lock(), threading.Event()

        def send(c):
            while not stop.is_set():
                a = c.request({"type": "gift", "id": unique("g"), "room": creator, "gift": ROSE, "count": 1})
                with lock:
                    (acked if a["type"] == "ack" else errors).append(a.get("order") or a)
                # Up to 100 gifts/s a sender: the gifts paid while the dead
                # node's leases run out (5 s) reach the room in one burst when
                # a survivor takes them over, up to 1,000 events, past the
                # ring's 512. The ring keeps the burst for the members reading
                # it (up to 4,096 events, server/ring.h), so none is closed as
                # a slow consumer: every member must get every event.
                time.sleep(0.01)

        threads = [threading.Thread(target=send, args=(c,)) for c in senders]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(acked) >= 100, what="gifts before the kill")
            srvs[victim].signal(signal.SIGKILL)
            srvs[victim].killed = True
            killed_at = time.monotonic()
            # Its leases run out and the survivors take every shard.
            wait_for(lambda: lease_holders(r) <= {ids[i] for i in survivors}, LEASE_MS / 1000 + 10,
                     what="the shards taken over")
            took = time.monotonic() - killed_at
            wait_for(lambda: len(acked) >= 400, 60, what="gifts after the kill")
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert not errors, errors[:5]

        # Every acked gift is one order, written within seconds of the kill
        # (the lease runs out, another node claims the shards and what the
        # dead one had pending).
        def in_pg():
            got = psql(f"SELECT string_agg(order_id, ',') FROM orders WHERE room = '{creator}'")
            return sorted(got.split(",")) if got else []
        wait_for(lambda: len(in_pg()) == len(acked), 15, what="every acked order in PostgreSQL")
        assert in_pg() == sorted(acked)

        # Every member on a surviving node: every event, in seq order.
        def complete():
            return all(set(acked) <= {e.get("order") for e in got[m]} for i in survivors for m in members[i])
        try:
            wait_for(complete, 15, what="every acked gift's event at every surviving member")
        finally:
            reading.set()
            for t in readers:
                t.join(10)
        for i in survivors:
            for m in members[i]:
                seqs = [e["seq"] for e in got[m]]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs[:20]
                assert {e["order"] for e in got[m] if e.get("kind") == "gift"} == set(acked)
        print(f"{len(acked)} gifts acked; shards taken over {took:.1f} s after the kill")
        r.close()
    pg_fwd.close()
