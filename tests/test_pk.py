"""PK battles (issue 14): two rooms linked for a while, live scores pushed
to both, the winner decided at an exact cut and announced once to both
rooms (docs/protocol.md `pk_score` and the `pk_end` event; docs/admin-api.md
"PK battles"; docs/settlement.md "PK battles").

Two tipcastd nodes share one Redis and one PostgreSQL. Members of room A
are on node 1, members of room B on node 2; senders pay from both nodes.
The stored result is compared with the sum over orders whose money moved
in the window (the order ids' milliseconds), and each node's own
computation of it (its log line) with the other's."""

import os
import random
import re
import time

import admin
from conftest import REPO
from helpers import SHARDS, psql, wait_for, wait_room_live
from resp import Redis
from test_metrics import scrape, val
from test_money import catalog, credit, live_creator  # noqa: F401
from wsclient import SUBPROTOCOL_MSGPACK, unique

ROSE, ROCKET = 9101, 9103
FLAGS = dict(wallet_shards=SHARDS, max_msgs_per_s=10000, max_burst=10000)


def expected_score(room, pk):
    return int(psql(
        f"SELECT coalesce(sum(o.amount), 0) FROM orders o, pk_battles b WHERE b.id = {pk} AND o.creator = '{room}' "
        f"AND split_part(o.order_id, '-', 2)::bigint >= floor(extract(epoch FROM b.starts_at) * 1000) "
        f"AND split_part(o.order_id, '-', 2)::bigint < floor(extract(epoch FROM b.ends_at) * 1000)"))


def decided_lines(srv, pk):
    pat = re.compile(rf'pk: battle {pk} decided: ([^"(]*) \((stored by this node|as stored|DIFFERS[^)]*)\)')
    return [m.groups() for m in pat.finditer(srv.stderr_text())]


def pk_events(c, pk, timeout):
    """The pk_end events of battle pk that c receives within timeout."""
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = c.expect("event", timeout=max(0.05, deadline - time.monotonic()), kind="pk_end")
        except Exception:
            break
        if m.get("pk") == pk:
            got.append(m)
    return got


def start_pair(server, client):
    n1, api = admin.start(server, **FLAGS)
    n2 = server(**FLAGS)
    return n1, n2, api


def test_pk_decided_identically_on_two_nodes(server, client, catalog):  # noqa: F811
    n1, n2, api = start_pair(server, client)
    a, b = unique("cra"), unique("crb")
    live_creator(a)
    live_creator(b)
    adm = client(n1, unique("adm"), "admin")
    s1, s2 = unique("v"), unique("v")
    c1 = client(n1, s1)
    c2 = client(n2, s2, subprotocol=SUBPROTOCOL_MSGPACK)
    for c in (c1, c2):
        wait_room_live(c, a)
        wait_room_live(c, b)
    credit(adm, s1, 100000)
    credit(adm, s2, 100000)
    ma = client(n1, unique("v"))            # a member of A on node 1
    mb = client(n2, unique("v"), subprotocol=SUBPROTOCOL_MSGPACK)  # of B on node 2
    ma.join(a)
    mb.join(b)

    ops = admin.tok("operations")
    st, _, bad = api.post("/api/v1/pk", ops, {"room_a": a, "room_b": a, "seconds": 5})
    assert st == 400 and bad["error"]["field"] == "room_b", bad
    st, _, bad = api.post("/api/v1/pk", ops, {"room_a": a, "room_b": unique("nobody"), "seconds": 5})
    assert st == 400 and bad["error"]["field"] == "room_b", bad
    st, _, bad = api.post("/api/v1/pk", ops, {"room_a": a, "room_b": b, "seconds": 4})
    assert st == 400 and bad["error"]["field"] == "seconds", bad
    st, _, pk = api.post("/api/v1/pk", ops, {"room_a": a, "room_b": b, "seconds": 6})
    assert st == 201 and pk["state"] == "running" and pk["result"] is None, pk
    pid = pk["id"]
    st, _, busy = api.post("/api/v1/pk", ops, {"room_a": b, "room_b": unique("x"), "seconds": 6})
    assert st in (400, 409), busy
    # Each node's metrics page counts the battle running (its next tick reads it).
    before = [scrape(n)[1] for n in (n1, n2)]
    for n in (n1, n2):
        wait_for(lambda: val(scrape(n)[1], "tipcast_pk_battles_running") >= 1, timeout=5, what="running gauge")

    def pay(c, room, **kw):
        kind = "tip" if "amount" in kw else "gift"
        r = c.request(dict(type=kind, id=unique("g"), room=room, **kw))
        assert r["type"] == "ack", r
        return r

    pay(c1, a, gift=ROCKET, count=2)   # 1000 to A from node 1
    pay(c2, a, amount=300)             # 300 to A from node 2
    pay(c2, b, gift=ROCKET)            # 500 to B
    pay(c1, b, gift=ROSE, count=250)   # 250 to B
    # Live scores reach both rooms, on both nodes, coalesced (once a second
    # at most, and only when they change).
    want = [1300, 750]
    for m, room in ((ma, a), (mb, b)):
        deadline = time.monotonic() + 10
        while True:
            s = m.expect("pk_score", timeout=10)
            assert s["pk"] == pid and s["room"] == room and s["room_a"] == a and s["room_b"] == b, s
            if s["scores"] == want:
                break
            assert time.monotonic() < deadline, s
    # A member who joins meanwhile gets the scores right after its joined,
    # not at the next push: the next frame after joined is pk_score.
    for k in range(2):
        late_member = client(n1, unique("v"))
        j = late_member.request(dict(type="join", id=unique("j"), room=b))
        assert j["type"] == "joined", j
        s = late_member.recv(timeout=5)
        assert s["type"] == "pk_score", s
        assert s["pk"] == pid and s["room"] == b and s["scores"] == want, s
    # After the end: not counted.
    ends = time.mktime(time.strptime(pk["ends_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    time.sleep(max(0.0, ends - time.time()) + 1.2)
    late = pay(c1, b, gift=ROCKET, count=10)

    def decided():
        st, _, got = api.get(f"/api/v1/pk/{pid}", admin.tok("auditor"))
        return got if st == 200 and got["state"] == "decided" else None
    got = wait_for(decided, timeout=20, what="the battle decided")
    assert got["score_a"] == expected_score(a, pid) == 1300, got
    assert got["score_b"] == expected_score(b, pid) == 750, got
    assert got["winner"] == a and got["result"] == "a", got
    assert psql(f"SELECT count(*) FROM orders WHERE order_id = '{late['order']}'") == "1"

    # Both nodes computed it, the same.
    lines = wait_for(lambda: (decided_lines(n1, pid), decided_lines(n2, pid))
                     if decided_lines(n1, pid) and decided_lines(n2, pid) else None,
                     timeout=15, what="both nodes' decisions")
    (r1,), (r2,) = lines
    assert r1[0] == r2[0] == f"{a} 1300, {b} 750, winner {a}", lines
    assert sorted([r1[1], r2[1]]) == ["as stored", "stored by this node"], lines

    # The result, once, to both rooms (as room events, in history too).
    for m, room in ((ma, a), (mb, b)):
        evs = pk_events(m, pid, 8)
        assert len(evs) == 1, evs
        e = evs[0]
        assert e["room"] == room and e["room_a"] == a and e["room_b"] == b, e
        assert (e["score_a"], e["score_b"], e["winner"], e["result"]) == (1300, 750, a, "a"), e
    wait_for(lambda: psql(f"SELECT announced FROM pk_battles WHERE id = {pid}") == "t", what="announced")
    # The nodes' metrics: one stored the result, the other verified it; one
    # announced it. (At least: battles an earlier run left decided but not
    # announced are verified and announced by these nodes too.)

    def counted(name, **labels):
        return sum(val(scrape(n)[1], name, **labels) - val(m0, name, **labels) for n, m0 in zip((n1, n2), before))
    assert counted("tipcast_pk_decisions_total", result="stored") >= 1
    assert counted("tipcast_pk_decisions_total", result="verified") >= 1
    assert counted("tipcast_pk_decisions_total", result="differs") == 0
    wait_for(lambda: counted("tipcast_pk_announced_total") >= 1, timeout=5, what="the announcement counted")
    h = ma.request({"type": "history", "id": unique("h"), "room": a, "after_seq": 0})
    assert [e["pk"] for e in h["events"] if e.get("kind") == "pk_end"] == [pid], h


def test_pk_request_accept_and_draw(server, client, catalog):  # noqa: F811
    n1, n2, api = start_pair(server, client)
    a, b = unique("cra"), unique("crb")
    live_creator(a)
    live_creator(b)
    adm = client(n1, unique("adm"), "admin")
    s1 = unique("v")
    c1 = client(n2, s1)
    wait_room_live(c1, a)
    wait_room_live(c1, b)
    credit(adm, s1, 10000)
    ma = client(n1, unique("v"))
    ma.join(a)

    # A creator requests, the other accepts; nobody else may accept.
    st, _, req = api.post("/api/v1/pk", admin.tok("creator", a), {"room_b": b, "seconds": 12})
    assert st == 201 and req["state"] == "requested" and req["room_a"] == a and req["starts_at"] is None, req
    pid = req["id"]
    st, _, e = api.post(f"/api/v1/pk/{pid}/accept", admin.tok("creator", a))
    assert st == 403, e
    st, _, e = api.get(f"/api/v1/pk/{pid}", admin.tok("creator", unique("cr")))
    assert st == 404, e
    st, _, e = api.post("/api/v1/pk/999999999/accept", admin.tok("creator", b))
    assert st == 404, e
    st, _, run = api.post(f"/api/v1/pk/{pid}/accept", admin.tok("creator", b))
    assert st == 200 and run["state"] == "running", run
    st, _, e = api.post(f"/api/v1/pk/{pid}/accept", admin.tok("creator", b))
    assert st == 409, e

    # A member who joins during the battle gets the scores within 5 s,
    # changed or not.
    late = client(n1, unique("v"))
    late.join(b)
    s = late.expect("pk_score", timeout=7)
    assert s["pk"] == pid and s["room"] == b and s["scores"] == [0, 0], s

    # Equal scores: a draw.
    for room in (a, b):
        r = c1.request({"type": "tip", "id": unique("t"), "room": room, "amount": 77})
        assert r["type"] == "ack", r

    def decided():
        st, _, got = api.get(f"/api/v1/pk/{pid}", admin.tok("creator", a))
        return got if st == 200 and got["state"] == "decided" else None
    got = wait_for(decided, timeout=25, what="the battle decided")
    assert (got["score_a"], got["score_b"], got["winner"], got["result"]) == (77, 77, None, "draw"), got
    evs = pk_events(ma, pid, 8)
    assert len(evs) == 1 and evs[0]["result"] == "draw" and evs[0]["winner"] == "", evs
    assert psql("SELECT coalesce(sum(delta), 0) FROM ledger") == "0"


def test_live_scores_are_counted_from_a_checkpoint(server):
    """tipcast_pk_tick(ids, froms[, stored_ms]) (migrations 013, 014): a
    node counts a running battle's live score from its checkpoint on; the
    orders before the cut (where the ledger has stored everything, else a
    minute ago) are counted for good once, those after again at every tick.
    The result (tipcast_pk_score) still counts every order."""
    server(**FLAGS)  # the schema at this version
    a, b = unique("cra"), unique("crb")
    now_ms = int(psql("SELECT tipcast_ms(now())"))
    pid = int(psql("INSERT INTO pk_battles (room_a, room_b, seconds, state, requested_by, starts_at, ends_at) "
                   f"VALUES ('{a}', '{b}', 1200, 'running', 'test', now() - interval '10 minutes', "
                   "now() + interval '10 minutes') RETURNING id").splitlines()[0])

    def order(room, amount, age_s):
        ms = now_ms - age_s * 1000
        psql("INSERT INTO orders (order_id, kind, sender, room, creator, count, unit_price, amount, request_id, "
             f"sender_balance, created_at, creator_net) VALUES ('0-{ms}-{random.randrange(10 ** 9)}', 'tip', 'pk-s', "
             f"'{room}', '{room}', 1, {amount}, {amount}, '{unique('q')}', 0, "
             f"timestamptz 'epoch' + {ms} * interval '1 millisecond', {amount})")

    def tick(ids, froms):
        rows = psql("SELECT id, score_a, score_b, cut_ms, settled_a, settled_b FROM tipcast_pk_tick("
                    f"'{{{','.join(map(str, ids))}}}'::bigint[], '{{{','.join(map(str, froms))}}}'::bigint[])")
        for line in rows.splitlines():
            f = [int(x) for x in line.split("|")]
            if f[0] == pid:
                return dict(zip(("score_a", "score_b", "cut", "settled_a", "settled_b"), f[1:]))
        raise AssertionError(rows)

    try:
        order(a, 100, 300)       # five minutes ago: before the cut
        order(a, 20, 5)          # seconds ago: after it
        order(b, 7, 200)
        order(a, 1000, 900)      # before the battle: never counted
        first = tick([], [])
        assert (first["score_a"], first["score_b"]) == (120, 7), first
        assert (first["settled_a"], first["settled_b"]) == (100, 7), first
        assert abs(first["cut"] - (now_ms - 60000)) < 30000, first
        # From the checkpoint: only what came since (the node adds the 100 and 7).
        order(a, 3, 1)
        again = tick([pid], [first["cut"]])
        assert (again["score_a"], again["score_b"]) == (23, 0), again
        assert again["cut"] >= first["cut"] and again["settled_a"] + again["settled_b"] <= 23, again
        # An order stored late with a time before the checkpoint is left out
        # of the live score; the result counts it.
        order(b, 50, 120)
        late = tick([pid], [first["cut"]])
        assert late["score_b"] == 0, late
        assert psql(f"SELECT tipcast_pk_score(room_b, starts_at, ends_at) FROM pk_battles WHERE id = {pid}") == "57"
        assert psql(f"SELECT tipcast_pk_score(room_a, starts_at, ends_at) FROM pk_battles WHERE id = {pid}") == "123"

        # With the node's word (migration 014): every order created before
        # stored_ms is in PostgreSQL, so the checkpoint moves up to it...
        def tick3(stored_ms):
            rows = psql("SELECT id, score_a, score_b, cut_ms, settled_a, settled_b FROM tipcast_pk_tick("
                        f"'{{{pid}}}'::bigint[], '{{{first['cut']}}}'::bigint[], {stored_ms})")
            got = [[int(x) for x in line.split("|")] for line in rows.splitlines()]
            return next(dict(zip(("score_a", "score_b", "cut", "settled_a", "settled_b"), f[1:]))
                        for f in got if f[0] == pid)
        near = tick3(now_ms - 3000)
        assert near["cut"] == now_ms - 3000, near
        assert (near["score_a"], near["score_b"], near["settled_a"], near["settled_b"]) == (23, 0, 20, 0), near
        # ... but not past a second ago, nor further back than a minute.
        sql_now = int(psql("SELECT tipcast_ms(now())"))
        ahead = tick3(sql_now + 60000)
        sql_after = int(psql("SELECT tipcast_ms(now())"))
        assert sql_now - 1000 <= ahead["cut"] <= sql_after - 1000, (ahead, sql_now, sql_after)
        unknown = tick3(0)
        assert abs(unknown["cut"] - (sql_now - 60000)) < 5000, (unknown, sql_now)
    finally:
        psql(f"UPDATE pk_battles SET state = 'expired' WHERE id = {pid}")


def test_ledger_horizon_of_a_shard():
    """server/lua/pk_horizon.lua on a stream of its own: {horizon, now} is
    the oldest entry pending in the ledger group or not yet delivered to it,
    or Redis's clock when the group has everything; 0 without the group."""
    with open(os.path.join(REPO, "server", "lua", "pk_horizon.lua")) as f:
        src = f.read()
    r = Redis()
    key = "tc:{w:test-" + unique("h") + "}:outbox"

    def horizon():
        h, now = r("EVAL", src, "1", key, "ledger")
        return h, now

    try:
        h, now = horizon()
        assert h == now > 0, (h, now)  # no stream: nothing waits
        base = now - 10000
        for i in range(3):
            r("XADD", key, f"{base + i * 1000}-0", "k", "tip")
        assert horizon()[0] == 0  # no ledger group: nothing can be said
        r("XGROUP", "CREATE", key, "ledger", "0")
        assert horizon()[0] == base  # nothing delivered
        got = r("XREADGROUP", "GROUP", "ledger", "n1", "COUNT", "2", "STREAMS", key, ">")
        assert len(got[0][1]) == 2
        assert horizon()[0] == base  # delivered, pending (not committed)
        r("XACK", key, "ledger", f"{base}-0")
        assert horizon()[0] == base + 1000  # the next pending one
        r("XACK", key, "ledger", f"{base + 1000}-0")
        assert horizon()[0] == base + 2000  # the one not delivered yet
        r("XREADGROUP", "GROUP", "ledger", "n1", "COUNT", "10", "STREAMS", key, ">")
        r("XACK", key, "ledger", f"{base + 2000}-0")
        h, now = horizon()
        assert h == now >= base + 10000, (h, now)  # all committed: up to the clock
    finally:
        r("DEL", key)
