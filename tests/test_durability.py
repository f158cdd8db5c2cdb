"""Gifts end to end, and what survives a crash or a PostgreSQL outage.

The whole path runs for real: the wallet script in Redis, the outbox, the
ledger consumer into PostgreSQL, the rooms consumer into the room's event
stream and leaderboards, and the fan-out to members over WebSocket.
"""

import signal
import threading
import time

import pytest

from helpers import psql, shard_of, wait_for, wait_room_live
from resp import Redis
from test_money import catalog  # noqa: F401  (the module fixture, used by pytestmark)
from test_money import FLAGS, PRICES, ROCKET, ROSE, balance, credit, live_creator, sender_in_live_room
from wsclient import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, unique

# The test gifts of test_money, in PostgreSQL for every test here.
pytestmark = pytest.mark.usefixtures("catalog")


def orders_of(user):
    rows = psql(f"SELECT order_id, kind, amount, creator FROM orders WHERE sender = '{user}' ORDER BY order_id")
    return [r.split("|") for r in rows.splitlines() if r]


def ledger_sum(account):
    return int(psql(f"SELECT COALESCE(SUM(delta), 0) FROM ledger WHERE account = '{account}'"))


def earnings(creator):
    v = psql(f"SELECT total FROM creator_earnings WHERE creator = '{creator}'")
    return int(v) if v else 0


def redis_balance(user):
    r = Redis()
    try:
        v = r("GET", f"tc:{{w:{shard_of(user)}}}:bal:{user}")
    finally:
        r.close()
    return int(v or 0)


@pytest.mark.parametrize("proto", [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK])
def test_gift_end_to_end(server, client, proto):
    srv = server(**FLAGS)
    creator, viewer = unique("cr"), unique("v")
    live_creator(creator)
    admin = client(srv, unique("adm"), "admin")
    sender = client(srv, viewer, "viewer", proto)
    wait_room_live(sender, creator)
    other = client(srv, unique("w"), "viewer", SUBPROTOCOL_JSON if proto == SUBPROTOCOL_MSGPACK else SUBPROTOCOL_MSGPACK)
    credit(admin, viewer, 2000)
    j1, j2 = sender.join(creator), other.join(creator)
    seq0 = j1["seq"]
    assert j2["seq"] == seq0

    ack1 = sender.request({"type": "gift", "id": "e2e-1", "room": creator, "gift": ROCKET, "count": 2,
                           "combo": "k1"})
    ack2 = sender.request({"type": "tip", "id": "e2e-2", "room": creator, "amount": 7, "text": "nice"})
    assert ack1["balance"] == 1000 and ack2["balance"] == 993, (ack1, ack2)

    for member in (sender, other):
        e1 = member.expect("event", kind="gift", timeout=10)
        e2 = member.expect("event", kind="tip", timeout=10)
        assert (e1["seq"], e2["seq"]) == (seq0 + 1, seq0 + 2), (e1, e2)
        assert e1["order"] == ack1["order"] and e1["from"] == viewer and e1["gift"] == ROCKET, e1
        assert e1["count"] == 2 and e1["amount"] == 1000 and e1["combo"] == "k1", e1
        assert e1["animation"] == "rocket" and e1["name"] == "Rocket", e1
        assert e2["order"] == ack2["order"] and e2["amount"] == 7 and e2["text"] == "nice", e2
        board = member.expect("leaderboard", timeout=10)
        top = board["top"]
        while top and top[0]["total"] < 1007:  # an earlier push may show only the gift
            top = member.expect("leaderboard", timeout=10)["top"]
        # 1007 coins: fan level 2, "Silver", of the default fan-levels.
        assert top[0] == {"user": viewer, "total": 1007, "level": 2, "badge": "Silver"}, board

    # PostgreSQL: each order once, the right amounts, the creator's earnings.
    wait_for(lambda: len(orders_of(viewer)) == 2, what="orders in PostgreSQL")
    rows = orders_of(viewer)
    assert sorted(r[0] for r in rows) == sorted([ack1["order"], ack2["order"]]), rows
    assert sorted(int(r[2]) for r in rows) == [7, 1000]
    assert all(r[3] == creator for r in rows)
    wait_for(lambda: earnings(creator) == 1007, what="creator earnings")
    assert ledger_sum(f"user:{viewer}") == redis_balance(viewer) == 993
    # The creator's account holds the orders' net (after the revenue split
    # of whatever rule is in force, docs/settlement.md), and every order's
    # rows sum to zero.
    net = int(psql(f"SELECT sum(creator_net) FROM orders WHERE creator = '{creator}'"))
    assert net <= 1007 and ledger_sum(f"creator:{creator}") == net
    assert psql("SELECT count(*) FROM (SELECT movement_id FROM ledger WHERE movement_id IN "
                f"(SELECT order_id FROM orders WHERE creator = '{creator}') "
                "GROUP BY movement_id HAVING sum(delta) <> 0) x") == "0"
    # A later join sees the leaderboard in its snapshot.
    late = client(srv, unique("late"), "viewer")
    snap = late.join(creator)
    assert snap["board"][0] == {"user": viewer, "total": 1007, "level": 2, "badge": "Silver"}, snap


def test_sigkill_mid_stream_loses_and_doubles_nothing(server, client):
    creator = unique("cr")
    live_creator(creator)
    senders = [unique("v") for _ in range(3)]
    srv = server(**FLAGS)
    # Money moves once Redis has passed its checks (/readyz), which may be
    # a moment after /healthz answers.
    wait_for(lambda: srv.http_get("/readyz")[0] == 200, what="/readyz")
    admin = client(srv, unique("adm"), "admin")
    for s in senders:
        credit(admin, s, 100000)
    conns = [client(srv, s, "viewer") for s in senders]
    wait_room_live(conns[0], creator)
    acked = {}
    lock = threading.Lock()
    stop = threading.Event()

    def stream(c, user):
        i = 0
        while not stop.is_set():
            rid = f"{user}-{i}"
            i += 1
            try:
                c.send({"type": "gift", "id": rid, "room": creator, "gift": ROSE})
                r = c.expect(None, id=rid, timeout=5)
            except Exception:
                return  # the server died under us
            if r["type"] == "ack":
                with lock:
                    acked[r["order"]] = user

    threads = [threading.Thread(target=stream, args=(c, u)) for c, u in zip(conns, senders)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    srv.signal(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(10)
    srv.proc.wait(10)
    srv.killed = True
    assert len(acked) > 20, len(acked)

    # A new process takes over the outbox: every acked order lands once.
    srv2 = server(**FLAGS)
    wait_for(lambda: sum(len(orders_of(u)) for u in senders) >= len(acked), timeout=30,
             what="acked orders in PostgreSQL")
    # Orders the crash cut off before their ack were debited all the same:
    # they are in the outbox too, and land as well.
    wait_for(lambda: all(ledger_sum(f"user:{u}") == redis_balance(u) for u in senders), timeout=30,
             what="the ledger to match every Redis balance")
    in_pg = [r[0] for u in senders for r in orders_of(u)]
    assert len(in_pg) == len(set(in_pg)), "an order was written twice"
    assert set(acked) <= set(in_pg), set(acked) - set(in_pg)
    # Orders the crash cut off before their ack still moved money exactly
    # once: the ledger equals the change of every Redis balance.
    for u in senders:
        assert ledger_sum(f"user:{u}") == redis_balance(u), u
        assert 100000 - redis_balance(u) == len(orders_of(u)) * PRICES[ROSE], u
    c = client(srv2, unique("x"), "viewer")
    c.ping()


def test_postgres_outage_delays_but_loses_nothing(server, client, pg_outage):
    srv = server(**FLAGS)
    creator, viewer, c = sender_in_live_room(srv, client, 1000)
    with pg_outage():
        acks = [c.request({"type": "gift", "id": f"pgdown-{i}", "room": creator, "gift": ROSE})
                for i in range(20)]
        assert all(a["type"] == "ack" for a in acks), acks[:3]
        time.sleep(1)
    wait_for(lambda: len(orders_of(viewer)) == 20, timeout=30, what="orders after PostgreSQL came back")
    assert sorted(r[0] for r in orders_of(viewer)) == sorted(a["order"] for a in acks)
    wait_for(lambda: ledger_sum(f"user:{viewer}") == 980, what="ledger")
    assert balance(c) == 980


def test_outbox_backlog_bound_refuses_gifts_while_postgres_is_down(server, client, pg_outage):
    """Past outbox-max-backlog entries in a shard the ledger has not stored,
    gifts are refused as retryable instead of filling Redis; no money moves
    for a refused gift, and everything flows again once PostgreSQL is back."""
    creator, viewer = unique("cr"), unique("v")
    live_creator(creator)
    r = Redis()
    key = f"tc:{{w:{shard_of(viewer)}}}:outbox"
    # The bound is set just above what the shard holds now (tipcastd needs
    # PostgreSQL to start, so it starts first).
    bound = max(100, r("XLEN", key) + 30)
    budget = bound + 200
    srv = server(outbox_max_backlog=bound, **FLAGS)
    admin = client(srv, unique("adm"), "admin")
    c = client(srv, viewer, "viewer")
    wait_room_live(c, creator)
    credit(admin, viewer, budget)
    try:
        with pg_outage():
            acked, refused = [], None
            for i in range(budget):
                a = c.request({"type": "gift", "id": f"bk-{i}", "room": creator, "gift": ROSE})
                if a["type"] == "error":
                    refused = a
                    break
                acked.append(a)
            assert refused and refused["code"] == "backlogged", refused
            assert refused["retry_after_ms"] > 0
            assert r("XLEN", key) >= bound
            assert balance(c) == budget - len(acked)
    finally:
        r.close()
    wait_for(lambda: len(orders_of(viewer)) == len(acked), timeout=30, what="orders after the outage")
    # The ledger catches up, the outbox is trimmed, and gifts go through again.
    wait_for(lambda: c.request({"type": "gift", "id": unique("after"), "room": creator,
                                "gift": ROSE})["type"] == "ack", timeout=30, what="gifts accepted again")
