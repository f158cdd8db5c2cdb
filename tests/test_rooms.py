"""Rooms: join snapshots, notices, fan-out with sequence numbers, leave,
history, and the pieces of the protocol every member relies on."""

import time

import pytest

from test_metrics import scrape, val
from wsclient import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, unique

PROTOS = [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK]

# Rooms tests send many requests quickly; the rate limit has its own tests.
FAST = dict(max_msgs_per_s=10000, max_burst=10000)


def check_event(ev, room, seq, sender, role, text):
    assert ev["type"] == "event", ev
    assert ev["room"] == room, ev
    assert ev["seq"] == seq, ev
    assert ev["kind"] == "notice", ev
    assert ev["from"] == sender, ev
    assert ev["role"] == role, ev
    assert ev["text"] == text, ev
    assert isinstance(ev["ts"], int), ev
    now_ms = time.time() * 1000
    assert abs(ev["ts"] - now_ms) < 60000, ev


def send_notice(c, room, text):
    """Sends a notice; returns (request id, ack seq)."""
    rid = unique("n")
    c.send({"type": "notice", "id": rid, "room": room, "text": text})
    ack = c.expect(None, id=rid)
    assert ack["type"] == "ack", ack
    assert ack["room"] == room, ack
    return rid, ack["seq"]


@pytest.mark.parametrize("proto", PROTOS)
def test_broadcast_in_seq_order(server, client, room, proto):
    srv = server(**FAST)
    creator = client(srv, room, "creator", proto)
    viewer = client(srv, unique("v"), "viewer", proto)
    admin = client(srv, unique("a"), "admin", proto)

    j1 = creator.join(room)
    assert j1["owner"] == room and j1["members"] == 1 and j1["seq"] == 0, j1
    assert j1["events"] == [], j1
    j2 = viewer.join(room)
    assert j2["owner"] == room and j2["members"] == 2 and j2["seq"] == 0, j2

    sent = []
    _, s = send_notice(creator, room, "hello everyone")
    assert s == 1
    sent.append((s, room, "creator", "hello everyone"))
    # An admin need not be a member to send a notice, and then gets only the ack.
    _, s = send_notice(admin, room, "admin here")
    assert s == 2
    sent.append((s, admin.welcome["user"], "admin", "admin here"))
    for i in range(5):
        text = f"notice {i}"
        _, s = send_notice(creator, room, text)
        sent.append((s, room, "creator", text))
    assert [s for s, *_ in sent] == list(range(1, 8))

    for member in (creator, viewer):
        for seq, sender, role, text in sent:
            ev = member.expect("event")
            check_event(ev, room, seq, sender, role, text)
    viewer.assert_silent(0.2)
    creator.assert_silent(0.05)
    admin.assert_silent(0.05)


def test_mixed_subprotocols_same_events(server, client, room):
    srv = server(**FAST)
    creator = client(srv, room, "creator", SUBPROTOCOL_MSGPACK)
    vj = client(srv, unique("v"), "viewer", SUBPROTOCOL_JSON)
    vm = client(srv, unique("v"), "viewer", SUBPROTOCOL_MSGPACK)
    vj.join(room)
    vm.join(room)
    texts = ["plain", "ünïcødé", "emoji 🎁🚀", 'quotes " and \\ and \n newline']
    for t in texts:
        creator.notice(room, t)
    for i, t in enumerate(texts, start=1):
        ej = vj.expect("event")
        em = vm.expect("event")
        check_event(ej, room, i, room, "creator", t)
        assert ej == em


def test_join_snapshot(server, client, room):
    srv = server(snapshot_events=3, **FAST)
    creator = client(srv, room, "creator")
    # The sender need not be a member: five notices into an empty room.
    for i in range(1, 6):
        assert creator.notice(room, f"before {i}") == i
    v1 = client(srv, unique("v"), "viewer", SUBPROTOCOL_MSGPACK)
    j = v1.join(room)
    assert j["owner"] == room and j["seq"] == 5 and j["members"] == 1, j
    # snapshot-events=3: the latest three, oldest first.
    assert [e["seq"] for e in j["events"]] == [3, 4, 5], j
    for e, i in zip(j["events"], (3, 4, 5)):
        check_event(e, room, i, room, "creator", f"before {i}")

    v2 = client(srv, unique("v"), "viewer")
    j = v2.join(room)
    assert j["members"] == 2 and j["seq"] == 5, j

    # Joining again answers a fresh snapshot and does not count twice.
    creator.notice(room, "after")
    j = v2.join(room)
    assert j["members"] == 2 and j["seq"] == 6, j
    assert [e["seq"] for e in j["events"]] == [4, 5, 6], j
    # Every event after the first joined, exactly once.
    ev = v2.expect("event")
    assert ev["seq"] == 6, ev
    v2.assert_silent(0.2)
    ev = v1.expect("event")
    assert ev["seq"] == 6, ev
    v1.assert_silent(0.05)


def test_default_snapshot_holds_latest_20(server, client, room):
    srv = server(**FAST)
    creator = client(srv, room, "creator")
    for i in range(1, 26):
        creator.notice(room, f"n{i}")
    v = client(srv, unique("v"), "viewer")
    j = v.join(room)
    assert j["seq"] == 25
    assert [e["seq"] for e in j["events"]] == list(range(6, 26)), j


@pytest.mark.parametrize("proto", PROTOS)
def test_notice_permissions(server, client, room, proto):
    srv = server(**FAST)
    creator = client(srv, room, "creator", proto)
    viewer = client(srv, unique("v"), "viewer", proto)
    other_creator = client(srv, unique("c"), "creator", proto)
    creator.join(room)
    viewer.join(room)

    for c in (viewer, other_creator):
        rid = unique("n")
        c.send({"type": "notice", "id": rid, "room": room, "text": "not mine"})
        err = c.expect_error("forbidden", id=rid)
        assert isinstance(err.get("message"), str) and err["message"], err

    # A refused request has no effect: the next notice takes seq 1.
    assert creator.notice(room, "first") == 1
    assert creator.expect("event")["seq"] == 1
    ev = viewer.expect("event")
    check_event(ev, room, 1, room, "creator", "first")


@pytest.mark.parametrize("proto", PROTOS)
def test_leave(server, client, room, proto):
    srv = server(**FAST)
    creator = client(srv, room, "creator", proto)
    viewer = client(srv, unique("v"), "viewer", proto)
    creator.join(room)
    viewer.join(room)
    creator.notice(room, "one")
    assert viewer.expect("event")["seq"] == 1

    rid = unique("l")
    r = viewer.request({"type": "leave", "id": rid, "room": room})
    assert r == {"type": "left", "id": rid, "room": room}, r

    creator.notice(room, "two")
    assert [creator.expect("event")["seq"] for _ in range(2)] == [1, 2]
    viewer.assert_silent(0.3)

    rid = unique("l")
    viewer.send({"type": "leave", "id": rid, "room": room})
    viewer.expect_error("not_member", id=rid)
    rid = unique("l")
    viewer.send({"type": "leave", "id": rid, "room": unique("never")})
    viewer.expect_error("not_member", id=rid)

    # The member count went down with the leave.
    v2 = client(srv, unique("v"), "viewer", proto)
    assert v2.join(room)["members"] == 2


def test_join_while_first_join_pending(server, client, room):
    srv = server(**FAST)
    c = client(srv, unique("v"), "viewer", SUBPROTOCOL_MSGPACK)
    # Both in one write: the second arrives before the first is answered.
    c.send_many([{"type": "join", "id": "j1", "room": room},
                 {"type": "join", "id": "j2", "room": room}])
    r1 = c.expect(None, id="j1")
    r2 = c.expect(None, id="j2")
    assert r1["type"] == "joined" and r1["members"] == 1, r1
    assert r2["type"] == "error" and r2["code"] == "bad_field" and r2["field"] == "room", r2
    # Once answered, a join again is a plain re-join.
    assert c.join(room)["members"] == 1


def test_joins_that_come_together_share_a_snapshot_read(server, client, room):
    """200 viewers send their joins of one room at once: each gets a whole
    snapshot (seq 1, the notice before it), then every later event once.
    The joins that came while a snapshot read of the room was in flight
    waited for the next, which answered them all: Redis read the room far
    fewer times than there were joins (the metrics count both)."""
    srv = server(**FAST)
    creator = client(srv, room, "creator")
    assert creator.join(room)["seq"] == 0
    send_notice(creator, room, "before")
    viewers = [client(srv, unique("v"), "viewer", PROTOS[i % 2]) for i in range(200)]
    _, m0 = scrape(srv)
    ids = [unique("j") for _ in viewers]
    for v, rid in zip(viewers, ids):
        v.send({"type": "join", "id": rid, "room": room})
    for v, rid in zip(viewers, ids):
        j = v.expect("joined", id=rid)
        assert j["room"] == room and j["seq"] == 1, j
        assert [(e["seq"], e["text"]) for e in j["events"]] == [(1, "before")], j
        assert 2 <= j["members"] <= 201, j
    _, m1 = scrape(srv)
    joins = val(m1, "tipcast_room_snapshot_joins_total") - val(m0, "tipcast_room_snapshot_joins_total")
    reads = val(m1, "tipcast_room_snapshot_reads_total") - val(m0, "tipcast_room_snapshot_reads_total")
    assert joins == 200
    assert 1 <= reads <= joins / 2, (reads, joins)
    for text in ("after", "last"):
        send_notice(creator, room, text)
    for v in viewers:
        assert [(e["seq"], e["text"]) for e in (v.expect("event"), v.expect("event"))] == [(2, "after"), (3, "last")]
    # A member that joins alone still gets a read of its own, and the members count.
    late = client(srv, unique("v"), "viewer")
    assert late.join(room)["members"] == 202
    _, m2 = scrape(srv)
    assert val(m2, "tipcast_room_snapshot_reads_total") == val(m1, "tipcast_room_snapshot_reads_total") + 1


def test_members_count_drops_on_disconnect(server, client, room):
    srv = server(**FAST)
    creator = client(srv, room, "creator")
    creator.join(room)
    v = client(srv, unique("v"), "viewer")
    assert v.join(room)["members"] == 2
    v.close()
    deadline = time.monotonic() + 5
    while True:
        members = creator.join(room)["members"]
        if members == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert members == 1


@pytest.mark.parametrize("proto", PROTOS)
def test_history(server, client, room, proto):
    srv = server(**FAST)
    creator = client(srv, room, "creator", proto)
    viewer = client(srv, unique("v"), "viewer", proto)
    viewer.join(room)
    for i in range(1, 8):
        creator.notice(room, f"h{i}")
    got = [viewer.expect("event")["seq"] for _ in range(7)]
    assert got == list(range(1, 8))

    rid = unique("h")
    r = viewer.request({"type": "history", "id": rid, "room": room, "after_seq": 4})
    assert r["type"] == "history" and r["room"] == room and r["seq"] == 7, r
    assert [e["seq"] for e in r["events"]] == [5, 6, 7], r
    for e in r["events"]:
        check_event(e, room, e["seq"], room, "creator", f"h{e['seq']}")

    r = viewer.request({"type": "history", "id": unique("h"), "room": room, "after_seq": 0})
    assert [e["seq"] for e in r["events"]] == list(range(1, 8)), r
    r = viewer.request({"type": "history", "id": unique("h"), "room": room, "after_seq": 7})
    assert r["type"] == "history" and r["events"] == [] and r["seq"] == 7, r


def test_history_pages_of_100(server, client, room):
    srv = server(**FAST)
    creator = client(srv, room, "creator", SUBPROTOCOL_MSGPACK)
    n = 130
    creator.send_many({"type": "notice", "id": f"n{i}", "room": room, "text": f"t{i}"}
                      for i in range(1, n + 1))
    seqs = sorted(creator.expect("ack", id=f"n{i}")["seq"] for i in range(1, n + 1))
    assert seqs == list(range(1, n + 1))
    r = creator.request({"type": "history", "id": "h1", "room": room, "after_seq": 0})
    assert [e["seq"] for e in r["events"]] == list(range(1, 101)), r["seq"]
    r = creator.request({"type": "history", "id": "h2", "room": room, "after_seq": 100})
    assert [e["seq"] for e in r["events"]] == list(range(101, n + 1))
    assert r["seq"] == n


@pytest.mark.parametrize("proto", PROTOS)
def test_history_gone(server, client, room, proto):
    srv = server(history_len=5, **FAST)
    creator = client(srv, room, "creator", proto)
    for i in range(1, 11):
        assert creator.notice(room, f"g{i}") == i
    # The room keeps seq 6..10: after 5 is still complete.
    r = creator.request({"type": "history", "id": "h1", "room": room, "after_seq": 5})
    assert r["type"] == "history", r
    assert [e["seq"] for e in r["events"]] == [6, 7, 8, 9, 10], r
    for after in (0, 1, 4):
        rid = unique("h")
        creator.send({"type": "history", "id": rid, "room": room, "after_seq": after})
        err = creator.expect_error("history_gone", id=rid)
        assert err["oldest_seq"] == 6, err


@pytest.mark.parametrize("proto", PROTOS)
def test_unicode_round_trip(server, client, room, proto):
    srv = server(**FAST)
    creator = client(srv, room, "creator", proto)
    viewer = client(srv, unique("v"), "viewer", proto)
    viewer.join(room)
    texts = [
        "🎁🎉 gift time! 🚀",
        "日本語のテキスト",
        "mixed é ß Ж 👩‍👩‍👧 \u200d zwj",
        "🎁" * 125,            # exactly 500 bytes
        "x" * 500,
    ]
    for t in texts:
        creator.notice(room, t)
    for i, t in enumerate(texts, start=1):
        check_event(viewer.expect("event"), room, i, room, "creator", t)
    r = viewer.request({"type": "history", "id": "h", "room": room, "after_seq": 0})
    assert [e["text"] for e in r["events"]] == texts


@pytest.mark.parametrize("proto", PROTOS)
def test_ping_pong(server, client, proto):
    srv = server()
    c = client(srv, unique("u"), "viewer", proto)
    before = time.time() * 1000
    r = c.request({"type": "ping", "id": "p-1"})
    after = time.time() * 1000
    assert r["type"] == "pong" and r["id"] == "p-1", r
    assert isinstance(r["ts"], int) and before - 2000 <= r["ts"] <= after + 2000, r
    # Unknown keys are ignored.
    r = c.request({"type": "ping", "id": "p-2", "future_field": {"a": [1, 2]}})
    assert r["type"] == "pong" and r["id"] == "p-2", r


def test_room_limits(server, client, room):
    srv = server(max_rooms_per_conn=2, max_members_per_room=2, **FAST)
    c = client(srv, unique("v"), "viewer")
    c.join(unique("r"))
    c.join(room)
    rid = unique("j")
    c.send({"type": "join", "id": rid, "room": unique("r")})
    c.expect_error("too_many_rooms", id=rid)
    # Joining a room already joined is not one more room.
    c.join(room)
    # After a leave there is room for another.
    assert c.leave(room)["type"] == "left"
    c.join(unique("r"))

    full = unique("r")
    client(srv, unique("v"), "viewer").join(full)
    client(srv, unique("v"), "viewer").join(full)
    third = client(srv, unique("v"), "viewer")
    rid = unique("j")
    third.send({"type": "join", "id": rid, "room": full})
    third.expect_error("room_full", id=rid)
    third.ping()


def test_join_during_burst_no_gap_no_duplicate(server, client, room):
    """A member joining while events are being published gets a snapshot at
    some seq S and then exactly S+1, S+2, ... : nothing lost, nothing twice."""
    srv = server(**FAST)
    creator = client(srv, room, "creator", SUBPROTOCOL_MSGPACK)
    viewer = client(srv, unique("v"), "viewer", SUBPROTOCOL_MSGPACK)
    n, batch = 600, 100
    for start in range(1, n + 1, batch):
        ids = range(start, start + batch)
        creator.send_many({"type": "notice", "id": f"n{i}", "room": room, "text": f"t{i}"}
                          for i in ids)
        if start == 201:
            viewer.send({"type": "join", "id": "j", "room": room})
        for i in ids:
            creator.expect("ack", id=f"n{i}", timeout=10)
    joined = viewer.expect("joined", id="j", timeout=10)
    s = joined["seq"]
    assert 0 <= s <= n, joined
    snap = [e["seq"] for e in joined["events"]]
    assert snap == list(range(max(1, s - 19), s + 1)), (s, snap)
    got = [viewer.expect("event", timeout=10)["seq"] for _ in range(n - s)]
    assert got == list(range(s + 1, n + 1))
    viewer.assert_silent(0.2)


def test_two_nodes_share_rooms(server, client, room):
    """Two tipcastd processes on one Redis: one room, one sequence, members
    counted across both, events reach members on either node."""
    a = server(**FAST)
    b = server(**FAST)
    creator = client(a, room, "creator", SUBPROTOCOL_MSGPACK)
    va = client(a, unique("v"), "viewer", SUBPROTOCOL_JSON)
    vb = client(b, unique("v"), "viewer", SUBPROTOCOL_MSGPACK)
    admin_b = client(b, unique("a"), "admin", SUBPROTOCOL_JSON)
    assert va.join(room)["members"] == 1
    assert vb.join(room)["members"] == 2
    assert creator.notice(room, "from node a") == 1
    assert admin_b.notice(room, "from node b") == 2
    assert creator.notice(room, "again a") == 3
    for v in (va, vb):
        evs = [v.expect("event") for _ in range(3)]
        assert [e["seq"] for e in evs] == [1, 2, 3], evs
        assert [e["text"] for e in evs] == ["from node a", "from node b", "again a"]
        assert evs[1]["from"] == admin_b.welcome["user"] and evs[1]["role"] == "admin"
    late = client(b, unique("v"), "viewer")
    j = late.join(room)
    assert j["members"] == 3 and j["seq"] == 3, j
    assert [e["seq"] for e in j["events"]] == [1, 2, 3]


@pytest.mark.parametrize("proto", [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK])
def test_joined_says_live_and_changes_are_pushed(server, client, proto):
    """`joined` says whether the room's creator is live; when that changes
    (creators.live in PostgreSQL), every member gets a `room` message."""
    from helpers import psql
    srv = server()
    creator = unique("cr")
    psql(f"INSERT INTO creators (id, live) VALUES ('{creator}', true)")
    try:
        m = client(srv, unique("v"), "viewer", proto)
        deadline = time.monotonic() + 10
        while True:  # the catalog reload that brings the creator is async
            j = m.join(creator)
            if j["live"] is True:
                break
            assert time.monotonic() < deadline, j
            time.sleep(0.1)
        # The reload that brought the creator told the room (live: true)
        # if the room existed before it.
        m.drain(0.3)
        psql(f"UPDATE creators SET live = false WHERE id = '{creator}'")
        msg = m.expect("room", timeout=10)
        assert msg == {"type": "room", "room": creator, "live": False}, msg
        # A gift to the room is refused now, and a new join says so.
        assert m.join(creator)["live"] is False
        psql(f"UPDATE creators SET live = true WHERE id = '{creator}'")
        msg = m.expect("room", timeout=10)
        assert msg == {"type": "room", "room": creator, "live": True}, msg
        # A room that is no creator's is never live, and hears nothing.
        other = unique("r")
        assert m.join(other)["live"] is False
        psql(f"UPDATE creators SET display_name = 'x' WHERE id = '{creator}'")  # a reload, no change
        m.assert_silent(1.0)
    finally:
        psql(f"DELETE FROM creators WHERE id = '{creator}'")


@pytest.mark.parametrize("threads", [1, 3])
def test_big_room_is_flushed_in_chunks_without_gap_or_duplicate(server, client, room, threads):
    """A room bigger than one flush slice (FANOUT_SLICE_US in server/room.h,
    2 ms of writes) is handed its events over several loop iterations, the loop
    reading its sockets in between: every member still gets every event
    once, in seq order, while members leave in the middle of the passes and
    new events arrive during them; the sender's acks all come back. The
    writes go out on the loop's thread and `threads` send helpers
    (fanout-threads; 1 is the default)."""
    srv = server(fanout_threads=threads, **FAST)
    creator = client(srv, room, "creator", SUBPROTOCOL_MSGPACK)
    creator.join(room)
    members = []
    for i in range(2600):
        c = client(srv, unique("v"), "viewer", SUBPROTOCOL_MSGPACK if i % 2 else SUBPROTOCOL_JSON)
        c.send({"type": "join", "id": "j", "room": room})
        members.append(c)
    for c in members:
        assert c.expect("joined", id="j", timeout=30)["members"] >= 2
    n = 60
    creator.send_many({"type": "notice", "id": f"n{i}", "room": room, "text": f"t{i}"} for i in range(1, 31))
    # Every 8th member leaves while those events are being handed out.
    for c in members[::8]:
        c.close()
    creator.send_many({"type": "notice", "id": f"n{i}", "room": room, "text": f"t{i}"} for i in range(31, n + 1))
    acks = [creator.expect("ack", id=f"n{i}", timeout=30)["seq"] for i in range(1, n + 1)]
    assert acks == list(range(1, n + 1)), acks
    batched = 0
    for i, c in enumerate(members):
        if i % 8 == 0:
            continue
        got = [c.expect("event", timeout=30) for _ in range(n)]
        assert [e["seq"] for e in got] == list(range(1, n + 1)), (i, [e["seq"] for e in got])
        assert [e["text"] for e in got] == [f"t{k}" for k in range(1, n + 1)], i
        c.assert_silent(0.01)
        batched += c.batches_received > 0
    # Events that came together went out together (one frame for several).
    assert batched > 0
