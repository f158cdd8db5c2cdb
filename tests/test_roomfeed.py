"""The `rooms` consumer group: outbox gift/tip entries become room events
exactly once, and the rooms' leaderboards follow them.

The entries are written here as the wallet script writes them (the field
set of gifts/outbox.h) straight into tc:{w:N}:outbox, so that these tests
exercise the feed alone: redelivery, crashes and stale consumers are staged
on the streams themselves."""

import signal
import subprocess
import threading
import time
from datetime import datetime, timezone

import msgpack
import pytest

from conftest import REDIS_PORT, TEST_SECRET, _binary, free_port
from helpers import SHARDS, entry_fields, metric, outbox, shard_of, wait_for, xadd_entry
from resp import Redis
from wsclient import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, unique

FLAGS = dict(wallet_shards=SHARDS, max_msgs_per_s=10000, max_burst=10000)
# A SIGKILLed node keeps its leases until they lapse (OUTBOX_LEASE_MS).
TAKEOVER_S = 20


class Outbox:
    """Writes outbox entries as gifts/wallet.c's script does."""

    def __init__(self):
        self.r = Redis()

    def close(self):
        self.r.close()

    def gift(self, user, room, gift=7, name="Rose", anim="rose.webp", count=1, price=10,
             combo="", ts=None):
        return xadd_entry(self.r, entry_fields("gift", user, price * count, room=room, gift=gift, name=name,
                                               anim=anim, count=count, price=price, balance=100000,
                                               combo=combo, ts=ts))

    def tip(self, user, room, amount, text="", ts=None):
        return xadd_entry(self.r, entry_fields("tip", user, amount, room=room, balance=100000, text=text,
                                               ts=ts))

    def credit(self, user, amount):
        return xadd_entry(self.r, entry_fields("credit", user, amount, balance=amount, text="test credit"))


@pytest.fixture
def ob():
    o = Outbox()
    yield o
    o.close()


def history_bodies(room, kinds=("gift", "tip")):
    """The room's history stream: [(seq, body dict)], oldest first, of the
    events of these kinds (None: all; the room script also makes combo_end
    events, tests/test_room_features.py)."""
    r = Redis()
    try:
        out = []
        for sid, f in r("XRANGE", f"tc:{{r:{room}}}:hist", "-", "+"):
            body = f[1]
            if isinstance(body, str):
                body = body.encode()
            b = msgpack.unpackb(body, raw=False)
            if kinds is None or b["kind"] in kinds:
                out.append((int(sid.split("-")[0]), b))
        return out
    finally:
        r.close()


def pending_ids(shard):
    r = Redis()
    try:
        rows = r("XPENDING", outbox(shard), "rooms", "-", "+", 100000)
        return {f"{shard}-{row[0]}" for row in rows}
    finally:
        r.close()


def events(c, n, timeout=10):
    return [c.expect("event", timeout=timeout) for _ in range(n)]


def assert_quiet(c, seconds=0.5):
    """No further room event arrives within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            m = c.recv(timeout=max(0.01, deadline - time.monotonic()))
        except AssertionError:
            return
        assert m["type"] != "event", f"unexpected extra event {m}"


def test_gifts_and_tips_reach_every_member_once(server, client, room, ob):
    srv = server(**FLAGS)
    members = [client(srv, unique("v"), "viewer", SUBPROTOCOL_JSON),
               client(srv, unique("v"), "viewer", SUBPROTOCOL_MSGPACK)]
    for m in members:
        j = m.join(room)
        assert j["seq"] == 0 and j["board"] == [], j

    senders = [unique("s") for _ in range(4)]
    sent = {}
    ts = int(time.time() * 1000)
    for i, u in enumerate(senders):
        sent[ob.gift(u, room, gift=9001 + i, name=f"G{i}", anim=f"a{i}", count=i + 1, price=5,
                     combo=f"c{i}", ts=ts + i)] = ("gift", u, i)
        ob.credit(u, 1000)  # no room: acknowledged, never an event
        sent[ob.tip(u, room, 7 + i, text=f"thanks {i} \u2764", ts=ts + 10 + i)] = ("tip", u, i)

    for m in members:
        evs = events(m, len(sent))
        assert [e["seq"] for e in evs] == list(range(1, len(sent) + 1)), evs
        assert {e["order"] for e in evs} == set(sent), evs
        for e in evs:
            kind, u, i = sent[e["order"]]
            assert e["type"] == "event" and e["room"] == room and e["kind"] == kind, e
            assert e["from"] == u, e
            if kind == "gift":
                assert e["role"] == "viewer" and e["gift"] == 9001 + i, e
                assert (e["name"], e["animation"], e["combo"]) == (f"G{i}", f"a{i}", f"c{i}"), e
                assert e["count"] == i + 1 and e["amount"] == 5 * (i + 1), e
                assert e["ts"] == ts + i, e
            else:
                assert e["amount"] == 7 + i and e["text"] == f"thanks {i} \u2764", e
                assert e["ts"] == ts + 10 + i, e
                assert set(e) == {"type", "room", "seq", "kind", "from", "order", "amount",
                                  "text", "ts", "level", "badge", "pinned_until"}, e
        # Stream order within a shard: a sender's gift comes before its tip.
        pos = {e["order"]: k for k, e in enumerate(evs)}
        for o, (kind, u, i) in sent.items():
            if kind == "tip":
                gift_order = next(g for g, v in sent.items() if v == ("gift", u, i))
                assert pos[gift_order] < pos[o]
        assert_quiet(m)

    # Every entry, the credits too, is acknowledged once applied.
    shards = {shard_of(u) for u in senders}
    wait_for(lambda: not any(o in pending_ids(s) for s in shards for o in sent), 5,
             "the entries to be acknowledged")


def test_sigkill_and_redelivery_apply_each_entry_once(server, client, room, ob):
    """Entries applied but never acknowledged (a node killed between its room
    script and its XACK), entries read by a consumer that died, and entries
    delivered again are all applied exactly once; none is lost."""
    # The history keeps every event of this test, so that it can be read back.
    flags = dict(history_len=1000, **FLAGS)
    srv = server(**flags)
    senders = [unique("s") for _ in range(6)]
    shards = sorted({shard_of(u) for u in senders})
    orders, sender = [], {}

    def give(k):
        u = senders[k % len(senders)]
        o = ob.gift(u, room, price=1)
        orders.append(o)
        sender[o] = u

    for k in range(30):
        give(k)
    wait_for(lambda: len(history_bodies(room)) == 30, 10, "the first 30 events")
    # Keep writing while the node dies: some entries are read, some applied,
    # some acknowledged, at the moment of the SIGKILL.
    for k in range(200):
        give(k)
    srv.signal(signal.SIGKILL)
    srv.proc.wait(10)
    srv.killed = True

    r = Redis()
    try:
        # Rewind the group on every shard to before the first entries, as if
        # nothing had been acknowledged: all of them are delivered again...
        first = {}
        for o in orders:
            s, sid = o.split("-", 1)
            first.setdefault(int(s), sid)
        for s, sid in first.items():
            ms, seq = sid.split("-")
            before = f"{ms}-{int(seq) - 1}" if int(seq) > 0 else f"{int(ms) - 1}-99999"
            r("XGROUP", "SETID", outbox(s), "rooms", before)
        # ...and a consumer that will never come back holds some of them.
        for s in shards:
            r("XREADGROUP", "GROUP", "rooms", "dead-node", "COUNT", 10, "STREAMS", outbox(s), ">")
        # More entries arrive while no node reads.
        for k in range(20):
            give(k)
    finally:
        r.close()

    srv2 = server(**flags)
    total = len(orders)
    wait_for(lambda: len(history_bodies(room)) >= total, TAKEOVER_S, f"{total} room events")
    time.sleep(0.5)  # anything applied twice would show up by now
    hist = history_bodies(room)
    got = [b["order"] for _, b in hist]
    assert len(got) == len(set(got)), "a gift became two room events"
    assert set(got) == set(orders), set(orders) - set(got)
    assert [s for s, _ in hist] == sorted(s for s, _ in hist)
    every = history_bodies(room, None)
    assert [s for s, _ in every] == list(range(1, len(every) + 1))
    # Per shard, the events follow the stream order.
    for s in shards:
        mine = [o for o in got if o.startswith(f"{s}-")]
        assert mine == [o for o in orders if o.startswith(f"{s}-")]
    # The board counted each gift once.
    c = client(srv2, unique("v"), "viewer")
    j = c.join(room)
    assert j["seq"] == len(every), j
    want = {u: sum(1 for o in orders if sender[o] == u) for u in senders}
    assert {e["user"]: e["total"] for e in j["board"]} == want, j["board"]
    assert all(b["from"] == sender[b["order"]] for _, b in hist)
    wait_for(lambda: not any(o in pending_ids(s) for s in shards for o in orders), 10,
             "every entry to be acknowledged")


def test_leaderboard_push_snapshot_and_request(server, client, room, ob):
    srv = server(board_push_ms=250, **FLAGS)
    m = client(srv, unique("v"), "viewer", SUBPROTOCOL_MSGPACK)
    m.join(room)
    users = [unique("u") for _ in range(12)]
    totals = {u: 0 for u in users}
    # Many gifts within a second: a few pushes, not one per gift.
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < 1.0:
        u = users[n % len(users)]
        price = 1 + (n % len(users)) * 3
        ob.gift(u, room, price=price)
        totals[u] += price
        n += 1
        time.sleep(0.01)
    assert n >= 40, n
    # Redis orders equal scores by member, descending.
    top = sorted(totals.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:10]
    want = [{"user": u, "total": t} for u, t in top]
    # The all-time list carries each sender's fan level (the default
    # fan-levels: level 1, "Fan", from 1 coin to 999).
    assert all(t < 1000 for _, t in top)
    want_all = [dict(e, level=1, badge="Fan") for e in want]

    pushes = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            msg = m.expect("leaderboard", timeout=1.0)
        except AssertionError:
            if pushes and pushes[-1]["top"] == want_all:
                break
            continue
        pushes.append(msg)
    assert pushes and pushes[-1]["top"] == want_all, (pushes[-1:] or None, want_all)
    assert 1 <= len(pushes) <= 10, f"{len(pushes)} pushes for {n} gifts"
    last = pushes[-1]
    assert last["room"] == room and last["period"] == "all" and "id" not in last, last
    # Every gift was today, this week and this month.
    assert last["day"] == want and last["week"] == want and last["month"] == want, last
    # Totals only grow between pushes.
    for a, b in zip(pushes, pushes[1:]):
        ta = {e["user"]: e["total"] for e in a["top"]}
        for e in b["top"]:
            assert e["total"] >= ta.get(e["user"], 0)

    # A new member's snapshot has the top 10 of every period; a request
    # gets the same lists.
    for proto in (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK):
        c = client(srv, unique("v"), "viewer", proto)
        j = c.join(room)
        assert j["board"] == want_all and j["day"] == want and j["week"] == want and j["month"] == want, j
        r = c.request({"type": "leaderboard", "id": "lb1", "room": room})
        assert r["type"] == "leaderboard" and r["id"] == "lb1" and r["room"] == room, r
        assert r["top"] == want_all and r["day"] == want, r
    # A room nobody gave to has empty boards.
    r = c.request({"type": "leaderboard", "id": "lb2", "room": unique("r")})
    assert r["top"] == [] and r["week"] == [] and r["month"] == [], r
    bad = c.request({"type": "leaderboard", "id": "lb3"})
    assert bad["type"] == "error" and bad["code"] == "bad_field" and bad["field"] == "room", bad


def test_gift_and_its_leaderboard_push_share_a_write(server, client, room, ob):
    """A gift in a room whose board may be pushed: the member gets the gift's
    event, then the push that already counts it, sent in one write (both
    frames arrive in one read) rather than as two writes."""
    srv = server(board_push_ms=50, **FLAGS)
    m = client(srv, unique("v"), "viewer", SUBPROTOCOL_MSGPACK)
    m.join(room)
    m.drain()
    together = 0
    users = [unique("u") for _ in range(3)]
    for i, u in enumerate(users):
        time.sleep(0.2)  # past board-push-ms: the push is due at once
        ob.gift(u, room, price=5 + i)
        ev = m.recv(timeout=5)
        assert ev["type"] == "event" and ev["kind"] == "gift" and ev["from"] == u, ev
        # What the same read brought in is still in the client's buffer.
        together += len(m.buf) > 0
        lb = m.recv(timeout=5)
        assert lb["type"] == "leaderboard", lb
        assert {e["user"]: e["total"] for e in lb["top"]} == {w: 5 + j for j, w in enumerate(users[:i + 1])}, lb
    # The push waits at most 20 ms for its read from Redis: a slow machine may
    # miss it now and then, never every time.
    assert together >= 2, f"{together} of 3 gifts came in the same read as their push"


def test_period_boards_use_board_tz(server, client, room, ob):
    srv = server(board_tz="Asia/Tokyo", **FLAGS)
    m = client(srv, unique("v"), "viewer")
    m.join(room)
    # 2024-03-10 16:30 UTC is Monday 2024-03-11 01:30 in Tokyo: in UTC it
    # would still be Sunday, of the week that began on 2024-03-04.
    ts = int(datetime(2024, 3, 10, 16, 30, tzinfo=timezone.utc).timestamp() * 1000)
    u = unique("u")
    ob.gift(u, room, price=3, count=2, ts=ts)
    ob.tip(u, room, 4, ts=ts + 1)
    # The gift's combo ends at once (its window passed long ago): a
    # combo_end (tests/test_room_features.py) comes with them.
    evs = [e for e in events(m, 3) if e["kind"] != "combo_end"]
    assert [e["kind"] for e in evs] == ["gift", "tip"], evs
    r = Redis()
    try:
        base = f"tc:{{r:{room}}}:board"
        assert r("ZSCORE", f"{base}:all", u) == "10"
        for key in (f"{base}:d:20240311", f"{base}:w:20240311", f"{base}:m:202403"):
            assert r("ZSCORE", key, u) == "10", key
            ttl = r("TTL", key)
            assert 0 < ttl <= 62 * 86400, (key, ttl)
        assert r("TTL", f"{base}:all") == -1
        for key in (f"{base}:d:20240310", f"{base}:w:20240304"):
            assert r("EXISTS", key) == 0, key
    finally:
        r.close()


def test_unknown_board_tz_is_refused(tmp_path):
    p = subprocess.run([_binary(), f"--port={free_port()}", "--admin-listen=", f"--redis-port={REDIS_PORT}",
                        f"--jwt-secret={TEST_SECRET}", "--board-tz=Mars/Olympus_Mons"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2, p
    assert "board-tz" in p.stderr, p.stderr


@pytest.mark.parametrize("proto", [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK])
def test_burst_is_coalesced_into_batches_in_order(server, client, room, ob, proto):
    """A burst of events reaches a member as "events" batches (fewer frames),
    each event exactly once and in seq order."""
    srv = server(history_len=1000, **FLAGS)
    m = client(srv, unique("v"), "viewer", proto)
    assert m.join(room)["seq"] == 0
    u = unique("s")
    r = Redis()
    try:
        # One write of 300 entries: the rooms consumer reads them together
        # and the node receives their events back to back.
        fields = [entry_fields("gift", u, 1, room=room, gift=1, name="Rose", price=1) for _ in range(300)]
        cmds = b"".join(_resp("XADD", outbox(shard_of(u)), "*", *[x for kv in f for x in kv]) for f in fields)
        node = r.node_for(outbox(shard_of(u)))  # the stream's Redis (its master on a cluster)
        node.sock.sendall(cmds)
        for _ in fields:
            node._reply()
    finally:
        r.close()
    evs = events(m, 300)
    assert [e["seq"] for e in evs] == list(range(1, 301))
    assert m.batches_received >= 1, "no batch in a burst of 300 events"
    assert len(m.seen) == 300 + sum(1 for x in m.seen if x.get("type") != "event")
    assert_quiet(m)


def test_burst_past_the_ring_reaches_the_members_reading_it(server, client, room, ob):
    """1,500 events published at once, three times the ring's 512 (as a
    failover's backlog is, when a node takes over a dead node's outbox
    shards): the members reading get every one once, in seq order, and are
    not closed as slow consumers; the ring holds the burst until they have
    it (server/ring.h). The next real gift still reaches both."""
    srv = server(**FLAGS)
    ms = [client(srv, unique("v"), "viewer", p) for p in (SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON)]
    for m in ms:
        assert m.join(room)["seq"] == 0
    u = unique("s")
    ob.gift(u, room)
    for m in ms:
        assert m.expect("event")["seq"] == 1
    n = 1500
    r = Redis()
    try:
        # The first event's body, published again as events 2..1501 in one
        # write; the room's seq moves past them for the gift after.
        [(_, fields)] = r("XRANGE", f"tc:{{r:{room}}}:hist", "-", "+")
        body = fields[fields.index("b") + 1]
        body = body if isinstance(body, bytes) else body.encode("latin-1")
        assert r("SET", f"tc:{{r:{room}}}:seq", n + 1) == "OK"
        chan = f"tc:{{r:{room}}}:ev"
        got = {}

        def read(m):
            try:
                got[m] = [e["seq"] for e in events(m, n, timeout=60)]
            except AssertionError as e:  # closed, or too few: said below
                got[m] = f"{len(m.seen)} messages, then {e}"

        readers = [threading.Thread(target=read, args=(m,)) for m in ms]
        for t in readers:
            t.start()
        node = r.node_for(chan)
        node.sock.sendall(b"".join(_resp("SPUBLISH", chan, b"%d:gift:" % seq + body) for seq in range(2, n + 2)))
        for _ in range(n):
            node._reply()
    finally:
        r.close()
    for t in readers:
        t.join(70)
    for m in ms:
        assert got.get(m) == list(range(2, n + 2))
    ob.gift(u, room)
    for m in ms:
        assert m.expect("event")["seq"] == n + 2
    status, _, text = srv.http_get("/metrics")
    assert status == 200
    assert "\ntipcast_slow_consumer_closes_total 0\n" in text.decode()


def steady_gifts(ob, user, room, seconds):
    """Writes gift entries of `user` into `room` about 100 a second for
    `seconds`; how many."""
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ob.gift(user, room)
        sent += 1
        time.sleep(0.01)
    return sent


def test_busy_rooms_gather_their_events(server, client, room, ob):
    """While the rooms with two or more orders per rooms-gather-ms carry
    rooms-gather-from orders a second, the rooms consumer gathers: a room's
    orders share room_apply calls. Every event still reaches the member
    once, in seq order; once the room is quiet, the node stops gathering
    and an event is applied as soon as its order is read."""
    srv = server(rooms_gather_ms=200, rooms_gather_from=20, **FLAGS)
    m = client(srv, unique("v"), "viewer", SUBPROTOCOL_MSGPACK)
    assert m.join(room)["seq"] == 0
    u = unique("s")

    # About 100 orders a second for 4 s in one room: 20 per gather time.
    sent = steady_gifts(ob, u, room, 4)
    evs = events(m, sent, timeout=30)
    assert [e["seq"] for e in evs] == list(range(1, sent + 1))
    assert metric(srv, "tipcast_rooms_gathering") == 1
    entries = metric(srv, "tipcast_rooms_entries_total")
    calls = metric(srv, "tipcast_rooms_apply_calls_total")
    assert entries >= sent, (entries, sent)
    # The first second was read entry by entry (one call each); the rest
    # gathered some 20 entries a call.
    assert calls * 2 < entries, (calls, entries)

    # Quiet: orders a second apart. The window they fall in ends the
    # gathering; each is applied on its own.
    for k in range(3):
        ob.gift(u, room)
        assert m.expect("event")["seq"] == sent + k + 1
        time.sleep(1.1)
    assert metric(srv, "tipcast_rooms_gathering") == 0
    before = metric(srv, "tipcast_rooms_apply_calls_total")
    ob.gift(u, room)
    assert m.expect("event")["seq"] == sent + 4
    assert metric(srv, "tipcast_rooms_apply_calls_total") == before + 1
    assert_quiet(m)


def test_default_node_does_not_gather_for_one_busy_room(server, client, room, ob):
    """With the defaults (rooms-gather-from 2000), 100 orders a second in
    one room are applied as they come: no gathering."""
    srv = server(**FLAGS)
    m = client(srv, unique("v"), "viewer", SUBPROTOCOL_MSGPACK)
    assert m.join(room)["seq"] == 0
    sent = steady_gifts(ob, unique("s"), room, 2.5)
    evs = events(m, sent, timeout=30)
    assert [e["seq"] for e in evs] == list(range(1, sent + 1))
    assert metric(srv, "tipcast_rooms_gathering") == 0


def _resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def test_events_missed_while_subscribing_again_come_in_order(server, client, room, ob):
    """The node's subscriber connection is killed (CLIENT KILL TYPE pubsub)
    seven times while 300 gifts come: each time it subscribes again, reads
    what it missed from the history and holds the live events that come
    meanwhile, so the member gets every event in seq order without asking
    for history itself."""
    srv = server(**FLAGS)
    m = client(srv, unique("v"), "viewer")
    assert m.join(room)["seq"] == 0
    u = unique("s")
    r = Redis()
    try:
        for i in range(300):
            ob.gift(u, room)
            if i % 40 == 20:
                # The node's subscriber only: other connections are not of type
                # pubsub. (Once it is back: it reconnects after a backoff.)
                wait_for(lambda: r("CLIENT", "LIST", "TYPE", "pubsub").strip(), what="the subscriber back")
                assert r("CLIENT", "KILL", "TYPE", "pubsub") >= 1
            time.sleep(0.004)
    finally:
        r.close()
    try:
        evs = events(m, 300, timeout=30)
    except AssertionError:
        seqs = [x["seq"] for x in m.seen if x.get("type") == "event"]
        gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
        kinds = [(x.get("type"), x.get("seq"), x.get("kind")) for x in m.seen][:12]
        raise AssertionError(f"{len(seqs)} events, first {seqs[:3]}, last {seqs[-1:]}, gaps {gaps}, "
                             f"first messages {kinds}") from None
    assert [e["seq"] for e in evs] == list(range(1, 301))
    assert not [x for x in m.seen if x.get("type") == "history"]
    assert srv.stderr_text().count("redis subscriber: connected") >= 8
