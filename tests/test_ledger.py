"""The schema migrations and the `ledger` consumer group.

Outbox entries are written here the way the wallet script writes them (XADD
with the field set of gifts/outbox.h) into a Redis of this module's own, so
that nothing else consumes or trims those streams; a real tipcastd turns
them into PostgreSQL rows. What is asserted is what an auditor sees: orders,
ledger rows and earnings in PostgreSQL, and the outbox streams in Redis.

This module plays the `rooms` consumer group itself: it holds the rooms
lease of every shard (so the rooms consumer of tipcastd stays idle) and
reads and acknowledges with XREADGROUP/XACK, which lets it decide which
entries the rooms group has finished with when trimming is checked.
"""

import calendar
import signal
import subprocess
import threading
import time

import pytest

from conftest import PG, free_port
from helpers import SHARDS, entry_fields, outbox, psql, shard_of, wait_for, xadd_entry
from resp import Redis
from wsclient import unique

FLAGS = dict(wallet_shards=SHARDS)
LEASE_HOLDER = "test-rooms-consumer"
TRIM_MS = 2000  # storage/ledger.h LEDGER_TRIM_MS
LEASE_MS = 5000  # gifts/outbox.h OUTBOX_LEASE_MS


def rows(sql, dsn=PG):
    return [r.split("|") for r in psql(sql, dsn).splitlines() if r]


class Outbox:
    """The module's Redis, and a writer of outbox entries."""

    def __init__(self, port):
        self.port = port
        self.r = Redis(port=port)
        self.lock = threading.Lock()

    def __call__(self, *args):
        with self.lock:
            return self.r(*args)

    def add(self, kind, user, amount, room="", gift=0, name="", count=1, price=None, combo="",
            text="", req=None, balance=0, ts=None):
        """XADDs one entry to user's shard; returns (order id, fields)."""
        fields = entry_fields(kind, user, amount, room=room, gift=gift, name=name, count=count,
                              price=price, combo=combo, text=text, req=req, balance=balance, ts=ts)
        with self.lock:
            oid = xadd_entry(self.r, fields)
        return oid, {k: str(v) for k, v in fields}

    def rooms_ack_all(self):
        """As the rooms consumer: takes and acknowledges everything so far."""
        for s in range(SHARDS):
            while True:
                got = self("XREADGROUP", "GROUP", "rooms", LEASE_HOLDER, "COUNT", "1000",
                           "STREAMS", outbox(s), ">")
                if not got:
                    break
                ids = [e[0] for e in got[0][1]]
                self("XACK", outbox(s), "rooms", *ids)
            pending = self("XPENDING", outbox(s), "rooms", "-", "+", "10000")
            if pending:
                self("XACK", outbox(s), "rooms", *[p[0] for p in pending])

    def group(self, shard, name):
        """XINFO GROUPS of one group, as a dict."""
        for g in self("XINFO", "GROUPS", outbox(shard)):
            info = dict(zip(g[0::2], g[1::2]))
            if info["name"] == name:
                return info
        raise AssertionError(f"no group {name} on shard {shard}")

    def ledger_pending(self, shard):
        return self.group(shard, "ledger")["pending"]

    def ledger_caught_up(self, shard):
        """The ledger group has read and acknowledged every entry."""
        ids = self.ids(shard)
        info = self.group(shard, "ledger")
        return info["pending"] == 0 and (not ids or info["last-delivered-id"] == ids[-1])

    def ids(self, shard):
        return [e[0] for e in self("XRANGE", outbox(shard), "-", "+")]


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    """A Redis of this module's own, configured like production (AOF,
    noeviction); this module holds the rooms leases of every shard."""
    d = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
                             "--appendonly", "yes", "--maxmemory-policy", "noeviction", "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                ob = Outbox(port)
                if ob("PING") == "PONG":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the module's redis-server did not start"
            time.sleep(0.05)
        for s in range(SHARDS):
            ob("SET", f"tc:{{w:{s}}}:lease:rooms", LEASE_HOLDER, "PX", "3600000")
            ob("XGROUP", "CREATE", outbox(s), "rooms", "0", "MKSTREAM")
            ob("XGROUP", "CREATE", outbox(s), "ledger", "0", "MKSTREAM")
        yield ob
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def start(server, redis):
    """start(**overrides): a tipcastd on the module's Redis."""
    def make(**kw):
        flags = dict(FLAGS, redis_port=redis.port)
        flags.update(kw)
        return server(**flags)
    return make


def orders_where(cond):
    return rows("SELECT order_id, kind, sender, room, creator, coalesce(gift_id::text, 'NULL'), "
                "coalesce(gift_name, 'NULL'), count, unit_price, amount, coalesce(combo, 'NULL'), "
                "coalesce(message, 'NULL'), request_id, sender_balance, "
                "(extract(epoch from created_at) * 1000)::bigint FROM orders WHERE " + cond
                + " ORDER BY order_id")


def ledger_of(movement_ids):
    ids = ",".join("'" + m + "'" for m in movement_ids)
    return rows(f"SELECT movement_id, account, delta, kind FROM ledger WHERE movement_id IN ({ids}) "
                "ORDER BY movement_id, account")


def account_sum(account):
    return int(psql(f"SELECT coalesce(sum(delta), 0) FROM ledger WHERE account = '{account}'"))


def earnings(creator):
    r = rows(f"SELECT total, orders FROM creator_earnings WHERE creator = '{creator}'")
    return (int(r[0][0]), int(r[0][1])) if r else (0, 0)


def count_orders(creator):
    return int(psql(f"SELECT count(*) FROM orders WHERE creator = '{creator}'"))


def check_exactly_once(creator, produced):
    """produced: {order_id: amount}. Every one is one order whose ledger
    rows sum to zero: the sender's debit, the creator's net, and the fee and
    the agency's share when the rule in force gives them any (the shared test
    database may hold one: docs/settlement.md); the creator earned exactly
    the orders' net, and their gross in creator_earnings."""
    got = rows(f"SELECT order_id, amount FROM orders WHERE creator = '{creator}'")
    assert sorted(o for o, _ in got) == sorted(produced), "orders differ from the entries written"
    assert all(int(a) == produced[o] for o, a in got)
    led = rows("SELECT l.movement_id, count(*), sum(l.delta), "
               "2 + (o.platform_fee > 0)::int + (o.agency_share > 0)::int FROM ledger l "
               "JOIN orders o ON o.order_id = l.movement_id "
               f"WHERE o.creator = '{creator}' GROUP BY l.movement_id, o.platform_fee, o.agency_share")
    assert len(led) == len(produced)
    assert all(c == want and s == "0" for _, c, s, want in led), [r for r in led if r[1] != r[3] or r[2] != "0"][:5]
    net = int(psql(f"SELECT coalesce(sum(creator_net), 0) FROM orders WHERE creator = '{creator}'"))
    assert net <= sum(produced.values())
    assert account_sum(f"creator:{creator}") == net
    assert earnings(creator) == (sum(produced.values()), len(produced))


# ---- migrations -------------------------------------------------------------------


def test_migrations_concurrent_starts_and_schema_rules(server, redis):
    """Three tipcastd start at once on an empty database: the schema is
    applied once; the ledger refuses edits; catalog changes notify."""
    db = "tipcast_mig_" + unique("")
    psql(f"CREATE DATABASE {db}")
    dsn = PG.replace("dbname=tipcast", f"dbname={db}")
    assert dsn != PG, "TIPCAST_PG must name dbname=tipcast"
    try:
        errors = []

        def one():
            try:
                server(pg=dsn, redis_port=redis.port, **FLAGS)
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        # Every migration once, in order (later ones are other modules').
        applied = rows("SELECT version, name FROM schema_migrations ORDER BY version", dsn)
        assert applied[0] == ["1", "init"]
        assert [int(v) for v, _ in applied] == list(range(1, len(applied) + 1))
        tables = set(psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", dsn).split())
        assert {"gifts", "creators", "orders", "ledger", "creator_earnings", "schema_migrations"} <= tables

        psql("INSERT INTO ledger (movement_id, account, delta, kind, created_at) VALUES "
             "('m1', 'user:a', -5, 'gift', now()), ('m1', 'creator:b', 5, 'gift', now())", dsn)
        for sql in ("UPDATE ledger SET delta = 0", "DELETE FROM ledger", "TRUNCATE ledger"):
            out = subprocess.run(["psql", dsn, "-X", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode != 0 and "append-only" in out.stderr, (sql, out.stderr)
        assert psql("SELECT sum(delta), count(*) FROM ledger", dsn) == "0|2"

        # The catalog trigger: one notification on tipcast_catalog per statement.
        out = subprocess.run(["psql", dsn, "-X", "-v", "ON_ERROR_STOP=1", "-c", "LISTEN tipcast_catalog",
                              "-c", "INSERT INTO gifts (id, name, price, animation) VALUES (1, 'A', 1, 'a'), "
                              "(2, 'B', 2, 'b')", "-c", "SELECT 1"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.count('notification "tipcast_catalog"') == 1, out.stdout
        bad = subprocess.run(["psql", dsn, "-X", "-v", "ON_ERROR_STOP=1", "-qAtc",
                              "INSERT INTO gifts (id, name, price, animation) VALUES (3, 'C', 0, 'c')"],
                             capture_output=True, text=True, timeout=30)
        assert bad.returncode != 0 and "check" in bad.stderr.lower(), bad.stderr
    finally:
        for s in list(server.servers):
            s.check_exit()
        server.servers.clear()
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


# ---- the consumer -------------------------------------------------------------------


def test_entries_become_orders_ledger_and_earnings(start, redis):
    creator = unique("cr")
    senders = [unique("v") for _ in range(3)]
    nasty = "it's \\ \"quoted\" '); DROP TABLE orders; -- \u00e9\u6f22\U0001F381"
    produced, entries = {}, {}
    for i, u in enumerate(senders):
        oid, f = redis.add("gift", u, 30, room=creator, gift=7, name="Rose", count=3, price=10,
                           combo="c1" if i == 0 else "", balance=1000 - 30)
        produced[oid], entries[oid] = 30, f
        oid, f = redis.add("tip", u, 5 + i, room=creator, text=nasty if i == 0 else "", balance=965 - i)
        produced[oid], entries[oid] = 5 + i, f
    credit_oid, _ = redis.add("credit", senders[0], 1000, text="recharge ch_1", balance=1000)
    start()

    wait_for(lambda: count_orders(creator) == len(produced), what="orders in PostgreSQL")
    check_exactly_once(creator, produced)
    for row in orders_where(f"creator = '{creator}'"):
        oid = row[0]
        f = entries[oid]
        want = [oid, f["k"], f["u"], creator, creator,
                f["g"] if f["k"] == "gift" else "NULL", f["gn"] if f["k"] == "gift" else "NULL",
                f["n"] if f["k"] == "gift" else "1", f["p"] if f["k"] == "gift" else f["a"], f["a"],
                f["m"] if f["m"] else "NULL", f["t"] if f["t"] and f["k"] == "tip" else "NULL",
                f["q"], f["b"], f["ts"]]
        assert row == want
    assert psql(f"SELECT count(*) FROM orders WHERE creator = '{creator}' AND message = $m${nasty}$m$") == "1"
    assert ledger_of([credit_oid]) == [[credit_oid, "platform", "-1000", "credit"],
                                       [credit_oid, f"user:{senders[0]}", "1000", "credit"]]
    # Every user's ledger equals their wallet's change: -spent, +credited.
    assert account_sum(f"user:{senders[0]}") == -35 + 1000
    assert account_sum(f"user:{senders[1]}") == -36
    # Everything written was acknowledged.
    wait_for(lambda: all(redis.ledger_pending(s) == 0 for s in range(SHARDS)), what="acks")


def test_malformed_entry_is_set_aside_not_blocking(start, redis):
    creator, user = unique("cr"), unique("v")
    shard = shard_of(user)
    bad = redis("XADD", outbox(shard), "*", "k", "gift", "u", user, "r", creator, "a", "lots", "ts", "1")
    # A time PostgreSQL cannot store (after year 9999) would fail every
    # transaction it is in: it is set aside too.
    late, _ = redis.add("tip", user, 4, room=creator, ts=253402300800000)
    good, _ = redis.add("tip", user, 9, room=creator)
    start()
    wait_for(lambda: count_orders(creator) == 1, what="the good entry")
    reason = psql(f"SELECT reason FROM outbox_rejects WHERE order_id = '{shard}-{bad}'")
    assert reason, "the malformed entry was not recorded"
    assert "a=lots" in psql(f"SELECT convert_from(entry, 'UTF8') FROM outbox_rejects "
                            f"WHERE order_id = '{shard}-{bad}'")
    assert "time" in psql(f"SELECT reason FROM outbox_rejects WHERE order_id = '{late}'")
    assert rows(f"SELECT order_id FROM orders WHERE creator = '{creator}'") == [[good]]
    wait_for(lambda: redis.ledger_pending(shard) == 0, what="all three acknowledged")


def test_texts_arrive_verbatim(start, redis):
    """User texts holding what COPY's text format escapes (backslash, tab,
    newline, carriage return, a lone \\N or \\.) are stored as sent."""
    creator, user = unique("cr"), unique("v")
    texts = ["\\N", "\\.", "tab\there", "line\nbreak\r\n", "back\\slash\\", "\u00e9\u6f22\U0001F381 '\"x"]
    sent = {}
    for t in texts:
        oid, _ = redis.add("tip", user, 1, room=creator, text=t)
        sent[oid] = ("message", t)
        oid, _ = redis.add("gift", user, 2, room=creator, gift=3, name=t, combo=t, count=1, price=2)
        sent[oid] = ("gift_name", t)
    credit, _ = redis.add("credit", user, 7, text="\\N\tnote\n")
    start()
    wait_for(lambda: count_orders(creator) == len(sent), what="orders")

    def text_of(sql):
        return bytes.fromhex(psql(f"SELECT encode(convert_to(({sql}), 'UTF8'), 'hex')")).decode()

    for oid, (col, t) in sent.items():
        assert text_of(f"SELECT {col} FROM orders WHERE order_id = '{oid}'") == t, (col, t)
        if col == "gift_name":
            assert text_of(f"SELECT combo FROM orders WHERE order_id = '{oid}'") == t
    wait_for(lambda: ledger_of([credit]), what="the credit")
    for account in ("platform", f"user:{user}"):
        assert text_of(f"SELECT note FROM ledger WHERE movement_id = '{credit}' AND account = '{account}'") \
            == "\\N\tnote\n"
    check_exactly_once(creator, {oid: 1 if col == "message" else 2 for oid, (col, _) in sent.items()})


def test_dead_consumers_pending_entries_are_claimed(start, redis):
    """Entries a dead node had read but not acknowledged are claimed
    (XAUTOCLAIM) and written once, page by page (a tiny ledger-batch makes
    the pending entries take several reads)."""
    creator, user = unique("cr"), unique("v")
    shard = shard_of(user)
    produced = {}
    for i in range(12):
        oid, _ = redis.add("gift", user, 2, room=creator, gift=1, name="G", count=1, price=2)
        produced[oid] = 2
    # A consumer that read them and died.
    got = redis("XREADGROUP", "GROUP", "ledger", "dead-node", "COUNT", "1000", "STREAMS", outbox(shard), ">")
    assert got and len(got[0][1]) >= 12
    start(ledger_batch=3)
    wait_for(lambda: count_orders(creator) == 12, what="claimed entries written")
    check_exactly_once(creator, produced)
    wait_for(lambda: redis.ledger_pending(shard) == 0, what="claimed entries acknowledged")


def test_replayed_entries_change_nothing(start, redis):
    """The whole stream delivered again (group rewound to 0): no order,
    ledger row or coin of earnings more."""
    creator = unique("cr")
    produced = {}
    for i in range(20):
        oid, _ = redis.add("gift", unique("v"), 4, room=creator, gift=2, name="G", count=2, price=2)
        produced[oid] = 4
    srv = start()
    wait_for(lambda: count_orders(creator) == 20, what="orders")
    check_exactly_once(creator, produced)
    ledger_rows = psql("SELECT count(*) FROM ledger")
    for s in range(SHARDS):
        redis("XGROUP", "SETID", outbox(s), "ledger", "0")
    # The rewound entries go through the consumer again; wait until it has
    # caught up with every stream.
    wait_for(lambda: all(redis.ledger_caught_up(s) for s in range(SHARDS)), what="the replay to be consumed")
    assert psql("SELECT count(*) FROM ledger") == ledger_rows
    check_exactly_once(creator, produced)
    assert srv.alive()


def month_start_ms(months_ahead):
    """The first millisecond of the UTC month `months_ahead` from this one."""
    t = time.gmtime()
    y, m = divmod(t.tm_year * 12 + t.tm_mon - 1 + months_ahead, 12)
    return int(calendar.timegm((y, m + 1, 1, 0, 0, 0))) * 1000


def test_entries_of_many_months_land_in_their_partitions_once(start, redis):
    """orders and ledger are partitioned by month (016_partitions.sql):
    entries dated this month, the next two and 2001 (no partition: the
    default one) become rows in the partition of their date, and the whole
    stream delivered again adds nothing in any partition."""
    creator = unique("cr")
    dated = {"this": month_start_ms(0) + 1234, "next": month_start_ms(1), "after": month_start_ms(2) - 1,
             "2001": 978307200000 + 5}
    produced, month_of = {}, {}
    for label, ts in dated.items():
        for i in range(3):
            oid, _ = redis.add("gift", unique("v"), 4 + i, room=creator, gift=2, name="G", count=1, price=4 + i,
                               ts=ts)
            produced[oid], month_of[oid] = 4 + i, label
    credit, _ = redis.add("credit", unique("v"), 50, text="month test", ts=dated["next"])
    start()
    wait_for(lambda: count_orders(creator) == len(produced), what="orders in PostgreSQL")
    check_exactly_once(creator, produced)

    def partition(ms):
        if ms < month_start_ms(-240):  # 2001: before every partition
            return "default"
        return time.strftime("p%Y_%m", time.gmtime(ms / 1000))

    def placed():
        got = rows(f"SELECT order_id, tableoid::regclass FROM orders WHERE creator = '{creator}'")
        led = rows("SELECT l.movement_id, l.tableoid::regclass FROM ledger l JOIN orders o "
                   f"ON o.order_id = l.movement_id WHERE o.creator = '{creator}'")
        led += rows(f"SELECT movement_id, tableoid::regclass FROM ledger WHERE movement_id = '{credit}'")
        return sorted(got), sorted(led)

    orders_at, ledger_at = placed()
    for oid, table in orders_at:
        assert table == "orders_" + partition(dated[month_of[oid]]), (oid, month_of[oid], table)
    assert {m for m, _ in ledger_at} == set(produced) | {credit}
    for mid, table in ledger_at:
        ms = dated["next"] if mid == credit else dated[month_of[mid]]
        assert table == "ledger_" + partition(ms), (mid, table)

    for s in range(SHARDS):
        redis("XGROUP", "SETID", outbox(s), "ledger", "0")
    wait_for(lambda: all(redis.ledger_caught_up(s) for s in range(SHARDS)), what="the replay to be consumed")
    assert placed() == (orders_at, ledger_at)
    check_exactly_once(creator, produced)


def test_batch_of_written_and_new_entries(start, redis):
    """A batch that holds entries already in PostgreSQL (written, but the
    acknowledgement lost) next to new ones: only the new ones become rows
    and earnings; the written ones, credits included, change nothing."""
    creator = unique("cr")
    users = [unique("v") for _ in range(6)]
    produced, credits = {}, []
    for i in range(12):
        oid, _ = redis.add("gift" if i % 2 else "tip", users[i % 6], 5, room=creator, gift=2, name="G",
                           count=1, price=5)
        produced[oid] = 5
    for u in users:
        credits.append(redis.add("credit", u, 100, text="top-up")[0])
    srv = start()
    wait_for(lambda: count_orders(creator) == 12, what="the first orders")
    wait_for(lambda: all(redis.ledger_caught_up(s) for s in range(SHARDS)), what="the first acks")
    srv.stop()
    # As if the acknowledgements had been lost: every shard's entries are
    # delivered again, now together with new ones in the same batch.
    for s in range(SHARDS):
        redis("XGROUP", "SETID", outbox(s), "ledger", "0")
    for i in range(8):
        oid, _ = redis.add("gift", users[i % 6], 7, room=creator, gift=2, name="G", count=1, price=7)
        produced[oid] = 7
    for u in users[:3]:
        credits.append(redis.add("credit", u, 50, text="again")[0])
    ledger_before = int(psql("SELECT count(*) FROM ledger"))
    start()
    wait_for(lambda: count_orders(creator) == 20, what="the new orders")
    wait_for(lambda: all(redis.ledger_caught_up(s) for s in range(SHARDS)), what="the replay to be consumed")
    check_exactly_once(creator, produced)
    # 8 new orders and 3 new credits, and their rows only: two for a credit,
    # two for an order plus its fee and agency share when the rule in force
    # gives any (docs/settlement.md); nothing else.
    new = [o for o, a in produced.items() if a == 7]
    order_rows = int(psql("SELECT coalesce(sum(2 + (platform_fee > 0)::int + (agency_share > 0)::int), 0) "
                          "FROM orders WHERE order_id IN (" + ", ".join(f"'{o}'" for o in new) + ")"))
    assert order_rows >= 2 * 8
    assert int(psql("SELECT count(*) FROM ledger")) == ledger_before + order_rows + 2 * 3
    assert len(ledger_of(credits)) == 2 * len(credits)
    # users[0] tipped 5 twice (i = 0, 6), then gave two gifts of 7, and was
    # credited 100 and 50.
    assert account_sum(f"user:{users[0]}") == -5 - 5 - 7 - 7 + 100 + 50


def test_steady_flow_is_gathered_into_few_transactions(start, redis):
    """ledger-flush-ms: while entries keep coming, the ledger reads the
    outbox at most once per flush time (unless a read fills its batch), so a
    transaction holds what came meanwhile instead of the one entry of a fast
    round trip; an entry after a quiet spell is written at once."""
    from test_metrics import scrape, val
    flush_s = 1.0
    srv = start(ledger_flush_ms=int(flush_s * 1000))
    creator = unique("cr")
    users = [unique("v") for _ in range(5)]
    m0 = scrape(srv)[1]
    produced = {}
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:  # about 200 entries in 2 s, one every 10 ms
        oid, _ = redis.add("tip", users[len(produced) % 5], 2, room=creator)
        produced[oid] = 2
        time.sleep(0.01)
    wait_for(lambda: count_orders(creator) == len(produced), what="the flow's orders")
    check_exactly_once(creator, produced)
    m1 = scrape(srv)[1]
    batches = val(m1, "tipcast_ledger_flush_seconds_count") - val(m0, "tipcast_ledger_flush_seconds_count")
    entries = val(m1, "tipcast_ledger_entries_total") - val(m0, "tipcast_ledger_entries_total")
    assert entries == len(produced) > 100, (entries, len(produced))
    # 2 s of flow: a transaction per second, and the first entry's and the
    # tail's of their own (without the gather: one per entry or two).
    assert 2 <= batches <= 2.0 / flush_s + 3, (batches, entries)

    time.sleep(flush_s + 0.5)  # quiet: the next entry goes on at once
    t1 = time.monotonic()
    oid, _ = redis.add("tip", users[0], 3, room=creator)
    produced[oid] = 3
    wait_for(lambda: count_orders(creator) == len(produced), what="the lone order")
    lone_s = time.monotonic() - t1
    assert lone_s < flush_s * 0.8, f"a lone entry waited {lone_s:.2f} s (gather time {flush_s} s)"
    check_exactly_once(creator, produced)


def test_sigkill_mid_stream_never_doubles(start, redis):
    creator = unique("cr")
    users = [unique("v") for _ in range(8)]
    produced = {}
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            oid, _ = redis.add("gift", users[i % len(users)], 3, room=creator, gift=5, name="G", count=1,
                               price=3)
            produced[oid] = 3
            i += 1
            time.sleep(0.003)

    srv = start()
    t = threading.Thread(target=produce)
    t.start()
    try:
        wait_for(lambda: count_orders(creator) > 50, what="the stream to be flowing")
        srv.signal(signal.SIGKILL)
        srv.proc.wait(10)
        srv.killed = True
        start()
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(10)
    # The new node waits for the dead node's leases to run out, claims its
    # pending entries and writes everything once.
    wait_for(lambda: count_orders(creator) == len(produced), timeout=LEASE_MS / 1000 + 20,
             what=f"{len(produced)} orders")
    check_exactly_once(creator, produced)


def test_postgres_outage_delays_but_loses_nothing(start, redis, pg_outage):
    creator = unique("cr")
    produced = {}
    srv = start()

    def add_some(n):
        for _ in range(n):
            oid, _ = redis.add("tip", unique("v"), 7, room=creator)
            produced[oid] = 7

    add_some(10)
    wait_for(lambda: count_orders(creator) == 10, what="orders before the outage")
    with pg_outage():
        for _ in range(15):  # entries keep coming for ~3 s while PostgreSQL is down
            add_some(4)
            time.sleep(0.2)
        # Nothing was acknowledged that is not in PostgreSQL: the new
        # entries all wait in the outbox (pending or not yet delivered).
        assert srv.alive()
    wait_for(lambda: count_orders(creator) == len(produced), timeout=30, what="orders after the outage")
    check_exactly_once(creator, produced)


def test_outbox_trimmed_only_below_what_both_groups_finished(start, redis):
    user = unique("v")
    shard = shard_of(user)
    creator = unique("cr")
    start()
    redis.rooms_ack_all()  # entries of earlier tests: the rooms group is done with them
    wait_for(lambda: redis.ledger_caught_up(shard), what="the ledger to catch up")
    ids = []
    for _ in range(10):
        oid, _ = redis.add("tip", user, 1, room=creator)
        ids.append(oid.split("-", 1)[1])
    # As the rooms consumer: read all ten, finish only the first four.
    got = redis("XREADGROUP", "GROUP", "rooms", LEASE_HOLDER, "COUNT", "100", "STREAMS", outbox(shard), ">")
    assert [e[0] for e in got[0][1]] == ids
    redis("XACK", outbox(shard), "rooms", *ids[:4])
    wait_for(lambda: count_orders(creator) == 10, what="the ledger to write them")
    wait_for(lambda: redis.ids(shard)[:1] == [ids[4]], timeout=TRIM_MS / 1000 * 3,
             what="the entries both groups finished to be trimmed")
    time.sleep(TRIM_MS / 1000 * 1.5)
    assert redis.ids(shard) == ids[4:], "trimmed past an entry the rooms group still has pending"

    # An entry the rooms group has not even been given stays too.
    late, _ = redis.add("tip", user, 1, room=creator)
    late = late.split("-", 1)[1]
    redis("XACK", outbox(shard), "rooms", *ids[4:])
    wait_for(lambda: count_orders(creator) == 11, what="the late entry in PostgreSQL")
    wait_for(lambda: redis.ids(shard) == [late], timeout=TRIM_MS / 1000 * 3, what="trim up to the late entry")
    time.sleep(TRIM_MS / 1000 * 1.5)
    assert redis.ids(shard) == [late], "trimmed an entry the rooms group never read"
    redis.rooms_ack_all()
    wait_for(lambda: redis.ids(shard) == [], timeout=TRIM_MS / 1000 * 3, what="the outbox to empty")
