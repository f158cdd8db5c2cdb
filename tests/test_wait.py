"""Durable acknowledgements (issue 15): `redis-wait-replicas`.

A real replica of the test Redis is started here (redis-server
--replicaof, on a free port). With redis-wait-replicas 1, tipcastd answers
a gift only after the replica has its debit, so the replica's balance
equals every ack's (which loopback replication mostly gives without WAIT
too; the second test is the one that tells). When the replica stops
answering (DEBUG SLEEP), gifts
are answered `unavailable` after redis-wait-timeout-ms; the debit is on the
master, and the client's retry with the same id, once the replica is back,
answers the same order: one debit, one order in PostgreSQL."""

import subprocess
import time

import pytest

from conftest import REDIS_CLUSTER, REDIS_PORT
from helpers import own_redis, psql, shard_of, wait_for
from resp import Redis
from test_money import catalog  # noqa: F401  (the module fixture, used by pytestmark)
from test_metrics import scrape, val
from test_money import FLAGS, PRICES, ROSE, sender_in_live_room
from wsclient import unique

pytestmark = [pytest.mark.usefixtures("catalog"),
              pytest.mark.skipif(bool(REDIS_CLUSTER), reason="a replica of the one test Redis; on a cluster, "
                                 "test_cluster.py's killed-master test runs with redis-wait-replicas 1")]
WAIT_FLAGS = dict(FLAGS, redis_wait_replicas=1, redis_wait_timeout_ms=300)


@pytest.fixture
def replica(tmp_path):
    with own_redis(tmp_path, "--appendonly", "no", "--replicaof", "127.0.0.1", str(REDIS_PORT),
                   "--enable-debug-command", "local") as port:
        def synced():
            r = Redis(port=port)
            try:
                return "master_link_status:up" in r("INFO", "replication")
            finally:
                r.close()
        wait_for(synced, what="the replica in sync", timeout=30)
        yield port


def bal_on(port, user):
    r = Redis(port=port)
    try:
        return int(r("GET", f"tc:{{w:{shard_of(user)}}}:bal:{user}") or 0)
    finally:
        r.close()


def scene(server, client):
    srv = server(**WAIT_FLAGS)
    return (srv,) + sender_in_live_room(srv, client, 1000)


def test_every_ack_is_on_the_replica(server, client, replica):
    srv, creator, viewer, c = scene(server, client)
    for i in range(30):
        a = c.request({"type": "gift", "id": unique("g"), "room": creator, "gift": ROSE, "count": 1 + i % 3})
        assert a["type"] == "ack", a
        # At the moment of the ack, the replica already has the debit.
        assert bal_on(replica, viewer) == a["balance"], i
    _, m = scrape(srv)
    assert val(m, "tipcast_redis_waits_total") >= 30
    assert val(m, "tipcast_redis_waits_short_total") == 0


def test_replica_silent_is_unavailable_and_the_retry_is_exactly_once(server, client, replica):
    srv, creator, viewer, c = scene(server, client)
    wait_for(lambda: bal_on(replica, viewer) == 1000, what="the credit on the replica")
    gid = unique("g")
    gift = {"type": "gift", "id": gid, "room": creator, "gift": ROSE, "count": 7}
    # The replica sleeps for 2 s: it acknowledges nothing meanwhile.
    sleeper = subprocess.Popen(["redis-cli", "-p", str(replica), "DEBUG", "SLEEP", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        t0 = time.monotonic()
        a = c.request(gift)
        assert a["type"] == "error" and a["code"] == "unavailable", a
        # Answered after the WAIT's 300 ms, not at once and not after the sleep.
        assert 0.25 <= time.monotonic() - t0 < 1.9
        # The debit is on the master; the answer said nothing moved for sure.
        r = Redis()
        try:
            assert int(r("GET", f"tc:{{w:{shard_of(viewer)}}}:bal:{viewer}")) == 1000 - 7 * PRICES[ROSE]
        finally:
            r.close()
    finally:
        sleeper.wait(timeout=30)
    # The retry, once the replica is back: the same order, debited once.
    a = c.request(gift)
    assert a["type"] == "ack" and a["balance"] == 1000 - 7 * PRICES[ROSE], a
    assert bal_on(replica, viewer) == a["balance"]
    wait_for(lambda: psql(f"SELECT count(*) FROM orders WHERE sender = '{viewer}'") == "1",
             what="the order in PostgreSQL")
    assert psql(f"SELECT order_id FROM orders WHERE sender = '{viewer}'") == a["order"]
    time.sleep(0.5)
    assert psql(f"SELECT count(*) FROM orders WHERE sender = '{viewer}'") == "1"
    # And the next gift is answered as usual.
    b = c.request({"type": "gift", "id": unique("g"), "room": creator, "gift": ROSE, "count": 1})
    assert b["type"] == "ack", b
    _, m = scrape(srv)
    assert val(m, "tipcast_redis_waits_short_total") >= 1
