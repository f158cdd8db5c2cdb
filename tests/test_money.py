"""The money path at the wallet: gift, tip, credit, balance, catalog.

Real tipcastd, real Redis, real PostgreSQL. What is asserted is what a
client and an auditor see: acks and errors on the wire, balances, and the
entries in the wallet shard's outbox stream (which the ledger and rooms
consumers turn into PostgreSQL rows and room events).
"""

import datetime
import re
import subprocess
import threading
import time

import pytest

from conftest import PG, free_port, mint_token
from helpers import SHARDS, outbox, own_redis, psql, shard_of, wait_for, wait_room_live
from resp import Redis, stream_entries
from wsclient import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, unique

# Gift ids of these tests: the catalog is shared by every test.
ROSE, ROCKET, RETIRED = 9101, 9103, 9109
PRICES = {ROSE: 1, ROCKET: 500, RETIRED: 7}
FLAGS = dict(wallet_shards=SHARDS, max_msgs_per_s=10000, max_burst=10000)


def rcli(*args):
    r = Redis()
    try:
        return r(*args)
    finally:
        r.close()


def outbox_entries(uid):
    """The outbox entries of uid's wallet, as dicts (with the stream id as _id)."""
    r = Redis()
    try:
        entries = stream_entries(r, outbox(shard_of(uid)))
    finally:
        r.close()
    return [dict(f, _id=sid) for sid, f in entries if f.get("u") == uid]


def seed_catalog(dsn=PG):
    psql("INSERT INTO gifts (id, name, price, animation, tier, enabled, sort_order) VALUES "
         f"({ROSE}, 'Rose', 1, 'rose', 1, true, 1), ({ROCKET}, 'Rocket', 500, 'rocket', 2, true, 3), "
         f"({RETIRED}, 'Retired', 7, 'old', 1, false, 9) "
         "ON CONFLICT (id) DO UPDATE SET price = EXCLUDED.price, enabled = EXCLUDED.enabled", dsn)


@pytest.fixture(scope="module")
def catalog():
    """Test gifts and a live creator per test, in PostgreSQL."""
    seed_catalog()
    return PRICES


def live_creator(creator, dsn=PG):
    psql(f"INSERT INTO creators (id, live) VALUES ('{creator}', true) "
         "ON CONFLICT (id) DO UPDATE SET live = true", dsn)


def wait_catalog(c, pred, timeout=10):
    """Asks for the catalog until pred(catalog) holds (reloads are async)."""
    deadline = time.monotonic() + timeout
    while True:
        cat = c.request({"type": "catalog", "id": unique("k")})
        if pred(cat):
            return cat
        assert time.monotonic() < deadline, cat
        time.sleep(0.1)


def credit(admin, user, amount):
    r = admin.request({"type": "credit", "id": unique("c"), "user": user, "amount": amount})
    assert r["type"] == "ack", r
    return r


def sender_in_live_room(srv, client, coins):
    """A live creator's room, and a viewer connected to srv, credited `coins`
    and able to gift there: (creator, viewer, connection)."""
    creator, viewer = unique("cr"), unique("v")
    live_creator(creator)
    admin = client(srv, unique("adm"), "admin")
    c = client(srv, viewer, "viewer")
    wait_room_live(c, creator)
    credit(admin, viewer, coins)
    return creator, viewer, c


def balance(c):
    r = c.request({"type": "balance", "id": unique("b")})
    assert r["type"] == "balance", r
    return r["balance"]


@pytest.fixture
def scene(server, client, catalog):
    srv = server(**FLAGS)
    creator = unique("cr")
    live_creator(creator)
    admin = client(srv, unique("adm"), "admin")
    viewer = unique("v")

    class S:
        pass
    s = S()
    s.srv, s.creator, s.admin, s.viewer = srv, creator, admin, viewer
    s.client = lambda proto=SUBPROTOCOL_JSON: client(srv, viewer, "viewer", proto)
    first = s.client()
    wait_room_live(first, creator)
    s.first = first
    return s


@pytest.mark.parametrize("proto", [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK])
def test_gift_and_tip_ack_with_balance(scene, proto):
    credit(scene.admin, scene.viewer, 2000)
    c = scene.client(proto)
    assert balance(c) == 2000
    ack = c.request({"type": "gift", "id": "g1", "room": scene.creator, "gift": ROCKET, "count": 2,
                     "combo": "cmb-1"})
    assert ack["type"] == "ack" and ack["amount"] == 1000 and ack["balance"] == 1000, ack
    assert ack["replayed"] is False
    shard, ms, seq = ack["order"].split("-")
    assert int(shard) == shard_of(scene.viewer) and ms.isdigit() and seq.isdigit(), ack
    tip = c.request({"type": "tip", "id": "t1", "room": scene.creator, "amount": 25, "text": "gg 🎉"})
    assert tip["type"] == "ack" and tip["balance"] == 975, tip
    assert balance(c) == 975

    # The outbox holds the movements exactly as the consumers will read them.
    entries = outbox_entries(scene.viewer)
    kinds = [(e["k"], e["a"], e["b"]) for e in entries]
    assert kinds == [("credit", "2000", "2000"), ("gift", "1000", "1000"), ("tip", "25", "975")], kinds
    gift = entries[1]
    assert gift["r"] == scene.creator and gift["g"] == str(ROCKET) and gift["n"] == "2"
    assert gift["p"] == "500" and gift["gn"] == "Rocket" and gift["an"] == "rocket"
    assert gift["m"] == "cmb-1" and gift["q"] == "g1"
    assert f"{shard_of(scene.viewer)}-{gift['_id']}" == ack["order"]


BAD = [
    # (request fields, error code, field)
    ({"gift": ROCKET, "count": 3}, "insufficient_balance", None),
    ({"gift": 424242}, "unknown_gift", "gift"),
    ({"gift": RETIRED}, "unknown_gift", "gift"),
    ({"gift": ROSE, "count": 0}, "bad_field", "count"),
    ({"gift": ROSE, "count": -1}, "bad_field", "count"),
    ({"gift": ROSE, "count": 10**9}, "bad_field", "count"),
    ({"gift": ROSE, "count": 2**63 - 1}, "bad_field", "count"),
    ({"gift": ROSE, "count": "1"}, "bad_field", "count"),
    ({"gift": 0}, "bad_field", "gift"),
    ({"gift": ROSE, "combo": "x" * 65}, "bad_field", "combo"),
    ({"tip": True, "amount": 0}, "bad_field", "amount"),
    ({"tip": True, "amount": -5}, "bad_field", "amount"),
    ({"tip": True, "amount": 1000001}, "bad_field", "amount"),
    ({"tip": True, "amount": 10, "text": "x" * 201}, "bad_field", "text"),
    ({"tip": True, "amount": 10, "text": 5}, "bad_field", "text"),
    ({"tip": True, "amount": 2000}, "insufficient_balance", None),
]


def test_bad_requests_move_no_money(scene):
    credit(scene.admin, scene.viewer, 1000)
    c = scene.first
    before = outbox_entries(scene.viewer)
    for fields, code, field in BAD:
        req = {"type": "tip" if fields.get("tip") else "gift", "id": unique("x"), "room": scene.creator}
        req.update({k: v for k, v in fields.items() if k != "tip"})
        r = c.request(req)
        assert r["type"] == "error" and r["code"] == code, (req, r)
        if field:
            assert r.get("field") == field, (req, r)
        if code == "insufficient_balance":
            assert r["balance"] == 1000, r
    # Not live, and gifts to oneself.
    r = c.request({"type": "gift", "id": "nl", "room": unique("nobody"), "gift": ROSE})
    assert r["code"] == "room_not_live", r
    me = scene.client()
    own = scene.creator
    creator = scene.srv.connect(subprotocol=SUBPROTOCOL_JSON, token=mint_token(own, "creator"))
    creator.expect("welcome")
    r = creator.request({"type": "gift", "id": "self", "room": own, "gift": ROSE})
    assert r["code"] == "forbidden", r
    # Credit is for admins only.
    r = me.request({"type": "credit", "id": "cr", "user": scene.viewer, "amount": 5})
    assert r["code"] == "forbidden", r
    # Invalid UTF-8 in a msgpack tip text.
    mp = scene.client(SUBPROTOCOL_MSGPACK)
    import msgpack
    raw = msgpack.packb({"type": "tip", "id": "u8", "room": scene.creator, "amount": 5, "text": "ok"})
    raw = raw.replace(b"\xa2ok", b"\xa2\xc3\x28")
    mp.send_frame(2, raw)
    r = mp.expect("error", id="u8")
    assert r["code"] == "bad_field" and r["field"] == "text", r
    # A tip far larger than the server's 256-byte receive buffer arrives in
    # pieces, is joined, and is refused whole.
    r = c.request({"type": "tip", "id": "big", "room": scene.creator, "amount": 5, "text": "x" * 6000})
    assert r["type"] == "error" and r["code"] == "bad_field" and r["field"] == "text", r

    assert balance(c) == 1000
    assert outbox_entries(scene.viewer) == before


def test_replayed_request_debits_once(scene):
    credit(scene.admin, scene.viewer, 1000)
    a, b = scene.client(), scene.client(SUBPROTOCOL_MSGPACK)
    req = {"type": "gift", "id": "same-id", "room": scene.creator, "gift": ROCKET}
    acks = [a.request(req), b.request(req), a.request(req)]
    assert [x["type"] for x in acks] == ["ack"] * 3, acks
    assert len({x["order"] for x in acks}) == 1, acks
    assert [x["balance"] for x in acks] == [500, 500, 500], acks
    assert [x["replayed"] for x in acks] == [False, True, True], acks
    assert balance(a) == 500
    assert sum(1 for e in outbox_entries(scene.viewer) if e["k"] == "gift") == 1
    # The same id with other parameters is refused, and moves nothing.
    r = b.request(dict(req, count=2))
    assert r["code"] == "idempotency_conflict", r
    assert balance(a) == 500


def test_concurrent_spenders_exactly_k(scene):
    k = 37
    credit(scene.admin, scene.viewer, k * PRICES[ROCKET])
    conns = [scene.client(SUBPROTOCOL_MSGPACK if i % 2 else SUBPROTOCOL_JSON) for i in range(8)]
    results = []
    lock = threading.Lock()

    def spend(c, n):
        ids = [unique("race") for _ in range(n)]
        c.send_many({"type": "gift", "id": i, "room": scene.creator, "gift": ROCKET} for i in ids)
        got = [c.expect(None, id=i, timeout=20) for i in ids]
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=spend, args=(c, 10)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 80
    acks = [r for r in results if r["type"] == "ack"]
    errors = [r for r in results if r["type"] == "error"]
    assert len(acks) == k, (len(acks), errors[:3])
    assert all(e["code"] == "insufficient_balance" and e["balance"] >= 0 for e in errors), errors[:3]
    assert min(a["balance"] for a in acks) == 0
    assert sorted(a["balance"] for a in acks) == [PRICES[ROCKET] * i for i in range(k)]
    assert balance(conns[0]) == 0
    # Exactly K orders reach PostgreSQL: the acked ones.
    wait_for(lambda: psql(f"SELECT count(*) FROM orders WHERE sender = '{scene.viewer}'") == str(k),
             what=f"{k} orders in PostgreSQL")
    in_pg = psql(f"SELECT order_id FROM orders WHERE sender = '{scene.viewer}'").split()
    assert sorted(in_pg) == sorted(a["order"] for a in acks)


def test_script_flush_under_load(scene):
    n = 300
    credit(scene.admin, scene.viewer, n)
    c = scene.first
    ids = [unique("f") for _ in range(n)]
    stop = threading.Event()

    def flusher():
        while not stop.is_set():
            rcli("SCRIPT", "FLUSH")
            time.sleep(0.005)

    t = threading.Thread(target=flusher)
    t.start()
    try:
        for chunk in range(0, n, 50):
            c.send_many({"type": "gift", "id": i, "room": scene.creator, "gift": ROSE}
                        for i in ids[chunk:chunk + 50])
            replies = [c.expect(None, id=i, timeout=20) for i in ids[chunk:chunk + 50]]
            assert all(r["type"] == "ack" for r in replies), [r for r in replies if r["type"] != "ack"][:3]
    finally:
        stop.set()
        t.join()
    assert balance(c) == 0


def test_catalog_reloads_without_restart(scene):
    c = scene.first
    cat = wait_catalog(c, lambda k: any(g["id"] == ROSE for g in k["gifts"]))
    assert not any(g["id"] == RETIRED for g in cat["gifts"]), cat  # disabled gifts are not offered
    gid = 9150 + (int(time.time() * 1000) % 40)
    psql(f"INSERT INTO gifts (id, name, price, animation) VALUES ({gid}, 'Star', 3, 'star') "
         "ON CONFLICT (id) DO UPDATE SET price = 3, enabled = true")
    try:
        cat = wait_catalog(c, lambda k: any(g["id"] == gid and g["price"] == 3 for g in k["gifts"]))
        psql(f"UPDATE gifts SET price = 4 WHERE id = {gid}")
        wait_catalog(c, lambda k: any(g["id"] == gid and g["price"] == 4 for g in k["gifts"]))
        credit(scene.admin, scene.viewer, 4)
        ack = c.request({"type": "gift", "id": "star", "room": scene.creator, "gift": gid})
        assert ack["type"] == "ack" and ack["amount"] == 4 and ack["balance"] == 0, ack
    finally:
        psql(f"DELETE FROM gifts WHERE id = {gid}")


def tipcastd_args(redis_port, *flags):
    """tipcastd's command line on the test PostgreSQL and a given Redis."""
    from conftest import TEST_SECRET, _binary
    return [_binary(), f"--port={free_port()}", "--admin-listen=", f"--redis-port={redis_port}", f"--pg={PG}",
            f"--jwt-secret={TEST_SECRET}", *flags]


def test_unsafe_redis_is_refused(tmp_path, catalog):
    """A Redis without AOF (or with an evicting policy) would lose
    acknowledged balances: tipcastd refuses it unless told it is a toy."""
    with own_redis(tmp_path, "--appendonly", "no") as port:
        p = subprocess.run(tipcastd_args(port), capture_output=True, text=True, timeout=30)
        assert p.returncode == 1, p.stderr[-2000:]
        assert "appendonly" in p.stderr and "refusing" in p.stderr, p.stderr[-2000:]


def test_unreachable_redis_at_start_ends_the_process(catalog):
    """No Redis within redis-start-timeout-s of the start: tipcastd says so
    and exits 1 (as it does without PostgreSQL), rather than retry forever
    while /healthz answers 200."""
    port = free_port()  # nothing listens there
    start = time.monotonic()
    p = subprocess.run(tipcastd_args(port, "--redis-start-timeout-s=2"), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1, p.stderr[-2000:]
    assert f"127.0.0.1:{port} did not accept a connection within 2 s" in p.stderr, p.stderr[-2000:]
    assert time.monotonic() - start >= 2


def test_a_redis_that_closes_every_connection_is_not_hammered(tmp_path, catalog, server):
    """A Redis that takes a connection and closes it at once (here every
    one past maxclients 1; protected mode's DENIED does the same) is tried
    again with a backoff that grows to 2 s (RLINK_BACKOFF_MAX_MS), not every
    100 ms: a link's connects, after its first five, are at least 1.9 s
    apart (later only, never sooner, on a loaded machine)."""
    with own_redis(tmp_path, "--maxclients", "1") as port:
        srv = server(redis_port=port, redis_start_timeout_s=60)

        def connects():
            times = {}
            for line in srv.stderr_text().splitlines():
                m = re.match(r'ts=(\S+) level=info msg="redis (\w+): connected to ', line)
                if m:
                    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
                    times.setdefault(m.group(2), []).append(t.timestamp())
            return times
        # Some link holds the one slot; the others are closed on connect.
        wait_for(lambda: any(len(t) >= 9 for t in connects().values()), 60, what="a link's nine connects")
        link, times = max(connects().items(), key=lambda kv: len(kv[1]))
        gaps = [b - a for a, b in zip(times[5:], times[6:])]
        assert gaps and min(gaps) >= 1.9, (link, [round(g, 3) for g in gaps])
        assert srv.alive()


def test_wallet_shards_are_fixed_by_the_first_node(tmp_path, catalog, server):
    """wallet-shards places every wallet: the first node records it in
    Redis, and a node started with another number refuses to run, before
    it moves money or reads an outbox."""
    with own_redis(tmp_path) as port:
        r = Redis(port=port)
        try:
            first = server(redis_port=port, wallet_shards=4)
            wait_for(lambda: r("GET", "tc:wallet-shards") == "4", what="the recorded wallet-shards")
            first.check_exit()
            p = subprocess.run(tipcastd_args(port, "--wallet-shards=8"), capture_output=True, text=True,
                               timeout=30)
            assert p.returncode == 1, p.stderr[-2000:]
            assert "wallet-shards is 8 here" in p.stderr and "--wallet-shards=4" in p.stderr, p.stderr[-2000:]
            assert r("GET", "tc:wallet-shards") == "4"
            # It took no lease, so it read no outbox.
            assert r("KEYS", "tc:{w:*}:lease:*") == []
        finally:
            r.close()


class RestartableRedis:
    """A redis-server of the test's own that can be shut down and started
    again on the same port and directory (so it reloads its AOF)."""

    def __init__(self, tmp_path, *args):
        self.port = free_port()
        self.argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--dir", str(tmp_path), *args]
        self.proc = None

    def start(self, wait_ready=True):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            out = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
            # A Redis loading its data answers -LOADING: it is up.
            if out.stdout.strip() == "PONG" or (not wait_ready and "LOADING" in out.stdout):
                return
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def shutdown(self):
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True, timeout=60)
        self.proc.wait(60)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


def test_redis_loading_its_aof_is_waited_for(tmp_path, catalog, server, client):
    """A Redis restarting with a production-sized AOF says `loading:1` and
    `aof_enabled:0` until it has replayed it. tipcastd must not take that for
    a Redis without persistence and exit: it answers `unavailable` meanwhile,
    checks again, and serves once Redis is ready. Gifts flow throughout."""
    redis = RestartableRedis(tmp_path, "--appendonly", "yes", "--enable-debug-command", "yes")
    redis.start()
    try:
        r = Redis(port=redis.port)
        try:
            # About 1.5 s of loading here: 2M keys in the AOF's RDB preamble.
            r("DEBUG", "POPULATE", "2000000", "filler", "64")
            r("BGREWRITEAOF")
            wait_for(lambda: "aof_rewrite_in_progress:0" in r("INFO", "persistence")
                     and "aof_rewrite_scheduled:0" in r("INFO", "persistence"), timeout=60,
                     what="the AOF rewrite")
        finally:
            r.close()
        srv = server(redis_port=redis.port, **FLAGS)
        creator = unique("cr")
        live_creator(creator)
        admin = client(srv, unique("adm"), "admin")
        viewer = unique("v")
        c = client(srv, viewer, "viewer")
        wait_room_live(c, creator)
        credit(admin, viewer, 100000)

        results = []
        stop = threading.Event()

        def send_gifts():
            while not stop.is_set():
                ack = c.request({"type": "gift", "id": unique("g"), "room": creator, "gift": ROSE},
                                timeout=10)
                results.append(ack.get("code") or ack["type"])
                time.sleep(0.01)

        sender = threading.Thread(target=send_gifts)
        sender.start()
        try:
            wait_for(lambda: results.count("ack") >= 5, what="gifts before the restart")
            redis.shutdown()
            redis.start(wait_ready=False)
            saw_loading = "loading:1" in subprocess.run(
                ["redis-cli", "-p", str(redis.port), "info", "persistence"],
                capture_output=True, text=True).stdout
            before = len(results)
            wait_for(lambda: "ack" in results[before:] and srv.alive(), timeout=60,
                     what="a gift acked after the restart")
        finally:
            stop.set()
            sender.join(15)
        assert saw_loading, "Redis was not loading after its restart: the test proves nothing"
        assert srv.alive(), srv.describe()
        after = results[before:]
        # Between the restart and readiness: `unavailable`, never anything else.
        assert set(after) <= {"ack", "unavailable"}, after
        assert "refusing" not in srv.stderr_text(), srv.describe()
        assert "loading" in srv.stderr_text(), srv.describe()
        # Every acked gift was debited once; a gift answered `unavailable`
        # as Redis went down may or may not have been (its id replays).
        r = Redis(port=redis.port)
        try:
            spent = 100000 - int(r("GET", f"tc:{{w:{shard_of(viewer)}}}:bal:{viewer}"))
        finally:
            r.close()
        acks = results.count("ack")
        assert acks <= spent <= acks + results.count("unavailable"), (spent, acks, results)
    finally:
        redis.stop()


def test_creator_reads_earnings_from_postgresql(scene, client):
    """A creator sees what PostgreSQL holds for them (the ledger raises
    creator_earnings with every order it writes); viewers may not ask,
    creators only for themselves, admins for anyone."""
    credit(scene.admin, scene.viewer, 600)
    c = scene.client()
    for rid, gift in (("e-g1", ROCKET), ("e-g2", ROSE)):
        ack = c.request({"type": "gift", "id": rid, "room": scene.creator, "gift": gift})
        assert ack["type"] == "ack", ack
    tip = c.request({"type": "tip", "id": "e-t1", "room": scene.creator, "amount": 42})
    assert tip["type"] == "ack", tip
    want = PRICES[ROCKET] + PRICES[ROSE] + 42

    me = client(scene.srv, scene.creator, "creator")
    got = {}

    def landed():
        got.update(me.request({"type": "earnings", "id": unique("e")}))
        return got.get("total") == want
    wait_for(landed, what="the creator's earnings to count the three orders")
    assert got["type"] == "earnings" and got["creator"] == scene.creator and got["orders"] == 3, got
    assert psql(f"SELECT total, orders FROM creator_earnings WHERE creator = '{scene.creator}'") == \
        f"{want}|3"

    # A creator nobody paid has zeros; an admin may name any creator.
    other = client(scene.srv, unique("cr"), "creator")
    r = other.request({"type": "earnings", "id": "e0"})
    assert r["type"] == "earnings" and r["total"] == 0 and r["orders"] == 0, r
    r = scene.admin.request({"type": "earnings", "id": "ea", "user": scene.creator})
    assert r["type"] == "earnings" and r["id"] == "ea" and r["total"] == want, r

    # Not for viewers, nor for another creator's.
    r = c.request({"type": "earnings", "id": "ev"})
    assert r["type"] == "error" and r["code"] == "forbidden" and r["id"] == "ev", r
    r = other.request({"type": "earnings", "id": "eo", "user": scene.creator})
    assert r["type"] == "error" and r["code"] == "forbidden", r
    r = me.request({"type": "earnings", "id": "eb", "user": "bad user!"})
    assert r["type"] == "error" and r["code"] == "bad_field" and r["field"] == "user", r


def test_earnings_unavailable_while_postgresql_is_down(scene, client, pg_outage):
    """The earnings come from PostgreSQL: while it is down the answer is
    `unavailable` (at once, not after a timeout), and it comes back with it."""
    me = client(scene.srv, scene.creator, "creator")
    assert me.request({"type": "earnings", "id": unique("e")})["type"] == "earnings"
    with pg_outage():
        wait_for(lambda: me.request({"type": "earnings", "id": unique("e")}).get("code") == "unavailable",
                 what="earnings to answer unavailable")
    wait_for(lambda: me.request({"type": "earnings", "id": unique("e")}).get("type") == "earnings",
             timeout=30, what="earnings to come back with PostgreSQL")


def test_what_replays_and_what_conflicts(scene):
    """Each row of docs/protocol.md's idempotency table: a retry with the
    same id replays or conflicts, and a conflict moves no money."""
    credit(scene.admin, scene.viewer, 5000)
    c, mp = scene.client(), scene.client(SUBPROTOCOL_MSGPACK)
    room = scene.creator

    def first(req):
        ack = c.request(req)
        assert ack["type"] == "ack" and ack["replayed"] is False, ack
        return ack

    def answer(conn, req):
        r = conn.request(req)
        return "replayed" if r["type"] == "ack" and r["replayed"] else r.get("code", r["type"])

    g = {"type": "gift", "id": "i-g", "room": room, "gift": ROSE, "count": 1}
    first(g)
    no_count = {k: v for k, v in g.items() if k != "count"}
    t = {"type": "tip", "id": "i-t", "room": room, "amount": 5, "text": ""}
    first(t)
    no_text = {k: v for k, v in t.items() if k != "text"}
    first({"type": "gift", "id": "i-c", "room": room, "gift": ROSE, "combo": "k1"})
    first({"type": "tip", "id": "i-x", "room": room, "amount": 5, "text": "hi"})
    spent = balance(c)

    cases = [
        (c, g, "replayed"),
        (c, no_count, "replayed"),
        (c, no_text, "replayed"),
        (mp, dict(reversed(list(g.items()))), "replayed"),
        (c, dict(g, count=2), "idempotency_conflict"),
        (c, dict(g, gift=ROCKET), "idempotency_conflict"),
        (c, dict(t, amount=6), "idempotency_conflict"),
        (c, dict(g, combo="k2"), "idempotency_conflict"),
        (c, {"type": "gift", "id": "i-c", "room": room, "gift": ROSE}, "idempotency_conflict"),
        (c, {"type": "gift", "id": "i-c", "room": room, "gift": ROSE, "combo": "k9"},
         "idempotency_conflict"),
        (c, dict(t, text="new"), "idempotency_conflict"),
        (c, {"type": "tip", "id": "i-x", "room": room, "amount": 5}, "idempotency_conflict"),
        (c, {"type": "tip", "id": "i-g", "room": room, "amount": 1}, "idempotency_conflict"),
        (c, {"type": "gift", "id": "i-t", "room": room, "gift": ROSE}, "idempotency_conflict"),
    ]
    got = [(req, answer(conn, req)) for conn, req, _ in cases]
    assert [a for _, a in got] == [want for _, _, want in cases], got
    assert balance(c) == spent  # nothing moved

    # The same gift after its price changed: a conflict, and the first
    # order stands at the first price.
    psql(f"UPDATE gifts SET price = 2 WHERE id = {ROSE}")
    try:
        wait_catalog(c, lambda k: any(x["id"] == ROSE and x["price"] == 2 for x in k["gifts"]))
        assert answer(c, g) == "idempotency_conflict"
        assert balance(c) == spent
    finally:
        psql(f"UPDATE gifts SET price = 1 WHERE id = {ROSE}")
        wait_catalog(c, lambda k: any(x["id"] == ROSE and x["price"] == 1 for x in k["gifts"]))
