"""The tamper-evident ledger (006_ledger_chain.sql, settlement/verify.c,
tipcast-admin verify-ledger and anchor-ledger).

The module works on a PostgreSQL database and a Redis of its own (made
here, dropped at the end): it tampers with the ledger as a superuser, and
nothing else may see that. Outbox entries are written the way the wallet
script writes them (XADD into tc:{w:N}:outbox); a real tipcastd's ledger
consumer turns them into chained rows. Each tampering is undone before the
next, so every case starts from an intact ledger, and the report must name
the exact chain and seq of the row that was touched.
"""

import json
import subprocess

import pytest

import admin
from conftest import mint_token
from helpers import SHARDS, admin_bin, entry_fields, own_database, own_redis, psql, wait_for, xadd_entry
from resp import Redis
from wsclient import unique

ZERO = "\\x" + "00" * 32


@pytest.fixture(scope="module")
def db():
    """A database of this module's own: its DSN."""
    with own_database("tipcast_chain") as dsn:
        yield dsn


@pytest.fixture(scope="module")
def rport(tmp_path_factory):
    with own_redis(tmp_path_factory.mktemp("redis")) as port:
        yield port


def q(db, sql):
    return psql(sql, db)


def verify(db, *args):
    """tipcast-admin verify-ledger: (exit status, stdout)."""
    out = subprocess.run([admin_bin(), f"--pg={db}", "verify-ledger", *args], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, out.stdout


def verify_json(db, *args):
    rc, out = verify(db, "--json", *args)
    return rc, json.loads(out)


def superuser(db, sql):
    """sql with the ledger's own triggers (append-only, chaining) off."""
    return q(db, f"ALTER TABLE ledger DISABLE TRIGGER USER; {sql}; ALTER TABLE ledger ENABLE TRIGGER USER")


def _in(ids):
    return "(" + ",".join(f"'{i}'" for i in ids) + ")"


def order_ids(db, ids):
    return q(db, f"SELECT count(*) FROM orders WHERE order_id IN {_in(ids)}")


def ledger_entries(db, ids):
    """How many of the entries (order ids) have rows in the ledger."""
    return q(db, f"SELECT count(DISTINCT entry) FROM ledger WHERE entry IN {_in(ids)}")


def produce(r, n, ip=None, dv=None, ts=None):
    """n gifts and tips of n users (every shard), a credit and a recharge
    per shard; returns the order ids of the gifts and tips and of the rest."""
    orders, others = [], []
    for i in range(n):
        user = unique("u")
        kind = "gift" if i % 2 == 0 else "tip"
        fields = entry_fields(kind, user, 10 + i, room="cre1", gift=7 if kind == "gift" else 0,
                              name="Rose" if kind == "gift" else "", balance=1000, ts=ts)
        if ip is not None:
            fields.append(("ip", ip))
        if dv is not None:
            fields.append(("dv", dv))
        orders.append(xadd_entry(r, fields))
    for i in range(SHARDS * 2):
        user = unique("u")
        others.append(xadd_entry(r, entry_fields("credit", user, 50, balance=50, text="bonus", role="admin")))
        f = entry_fields("recharge", user, 70, balance=120, req=unique("rc"), role="admin")
        f.append(("x", unique("rc")))
        others.append(xadd_entry(r, f))
    return orders, others


def start(server, db, rport, **kw):
    """A tipcastd on the module's database and Redis: (server, AdminClient)."""
    return admin.start(server, pg=db, redis_port=rport, wallet_shards=SHARDS, **kw)


def test_chains_verify_and_every_tampering_is_found(server, db, rport):
    srv, api = start(server, db, rport)
    r = Redis(port=rport)
    # At start tipcastd anchors the heads of today (chain -1's, empty).
    wait_for(lambda: q(db, "SELECT count(*) FROM ledger_anchors WHERE chain = -1") == "1", what="the start anchor")

    orders, others = produce(r, 60, ip="203.0.113.9", dv="phone-1")
    bad_ip, _ = produce(r, 2, ip="not-an-ip", dv="d" * 65)
    wait_for(lambda: order_ids(db, orders + bad_ip) == str(len(orders + bad_ip)), what="the orders")
    wait_for(lambda: q(db, "SELECT count(DISTINCT entry) FROM ledger WHERE kind IN ('credit', 'recharge')")
             == str(len(others) + 2 * SHARDS * 2), what="credits and recharges")
    # A refund of one order, as the settlement API accepts it, then its entry.
    o = orders[0]
    fid = unique("rf")
    q(db, f"INSERT INTO refunds (id, order_id, amount, reason, user_id, creator, room, order_created_at, "
          f"platform_fee, agency_id, agency_share, creator_net, settled, actor) "
          f"SELECT '{fid}', order_id, amount, 'test', sender, creator, room, created_at, platform_fee, agency_id, "
          f"agency_share, creator_net, false, 'test' FROM orders WHERE order_id = '{o}'")
    sender, amount, ots = q(db, f"SELECT sender, amount, (extract(epoch FROM created_at) * 1000)::bigint "
                                f"FROM orders WHERE order_id = '{o}'").split("|")
    f = entry_fields("refund", sender, int(amount), room="cre1", balance=5000, req=f"refund:{fid}", role="admin")
    f += [("x", fid), ("ots", ots)]
    xadd_entry(r, f)
    wait_for(lambda: q(db, f"SELECT state FROM refunds WHERE id = '{fid}'") == "credited", what="the refund")
    # Rows of SQL functions (a plain INSERT, as 004's withdrawals write them) chain into -1.
    q(db, "INSERT INTO ledger (movement_id, account, delta, kind, note, created_at) VALUES "
          "('withdrawal:t1', 'creator:cre1', -5, 'withdrawal', 'ref', now()), "
          "('withdrawal:t1', 'payout', 5, 'withdrawal', 'ref', now())")
    r.close()  # (tipcastd stays up, idle: every entry is in)

    # Where the money came from: ip and device, NULL when unusable.
    assert q(db, f"SELECT DISTINCT host(ip) || '|' || device FROM orders WHERE order_id IN "
                 f"({','.join(repr(x) for x in orders)})") == "203.0.113.9|phone-1"
    assert q(db, f"SELECT count(*) FROM orders WHERE ip IS NULL AND device IS NULL AND order_id IN "
                 f"({','.join(repr(x) for x in bad_ip)})") == "2"
    # Every shard's chain and chain -1, numbered without gaps; heads at the ends.
    got = q(db, "SELECT l.chain, count(*), max(l.seq), c.seq FROM ledger l JOIN ledger_chains c USING (chain) "
                "GROUP BY l.chain, c.seq ORDER BY 1").splitlines()
    assert [int(x.split("|")[0]) for x in got] == [-1] + list(range(SHARDS))
    for line in got:
        _, n, mx, head = line.split("|")
        assert n == mx == head
    assert q(db, "SELECT count(*) FROM ledger WHERE chain = -1 AND entry IS NULL") == "2"
    assert q(db, "SELECT count(*) FROM ledger WHERE chain >= 0 AND split_part(entry, '-', 1)::int <> chain") == "0"

    rc, rep = verify_json(db)
    assert rc == 0 and rep["ok"] and rep["faults"] == 0, rep
    assert rep["rows"] == int(q(db, "SELECT count(*) FROM ledger"))
    rc, text = verify(db)
    assert rc == 0 and text.rstrip().endswith("intact"), text

    # Anchors of a day of the test's own, then the admin API lists them.
    out = subprocess.run([admin_bin(), f"--pg={db}", "anchor-ledger", "--day", "2001-02-03"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == SHARDS + 1
    heads = {int(c): int(s) for c, s in (x.split("|") for x in q(db, "SELECT chain, seq FROM ledger_chains")
                                         .splitlines())}

    def case(chain, seq, kind, tamper, undo):
        superuser(db, tamper)
        try:
            rc, rep = verify_json(db)
            assert rc == 1 and not rep["ok"], rep
            bad = [c for c in rep["chains"] if c["first"]]
            assert len(bad) == 1, rep
            first = bad[0]["first"]
            assert (first["chain"], first["seq"], first["kind"]) == (chain, seq, kind), rep
            rc, text = verify(db)
            assert rc == 1 and f"TAMPERED at chain {chain} seq {seq} " in text and f": {kind}: " in text, text
        finally:
            superuser(db, undo)
        rc, rep = verify_json(db)
        assert rc == 0, rep

    row = "(SELECT id FROM ledger WHERE chain = {} AND seq = {})"
    q(db, "CREATE TABLE tamper_saved AS SELECT * FROM ledger WITH NO DATA")
    # Edits: a delta, an account.
    case(0, 3, "edited", f"UPDATE ledger SET delta = delta + 1 WHERE id = {row.format(0, 3)}",
         f"UPDATE ledger SET delta = delta - 1 WHERE id = {row.format(0, 3)}")
    acct = q(db, f"SELECT account FROM ledger WHERE chain = 1 AND seq = 4")
    case(1, 4, "edited", f"UPDATE ledger SET account = 'user:mallory' WHERE id = {row.format(1, 4)}",
         f"UPDATE ledger SET account = '{acct}' WHERE chain = 1 AND seq = 4")
    # A row deleted from the middle of a chain.
    case(2, 5, "deleted",
         f"INSERT INTO tamper_saved SELECT * FROM ledger WHERE chain = 2 AND seq = 5; "
         f"DELETE FROM ledger WHERE chain = 2 AND seq = 5",
         "INSERT INTO ledger SELECT * FROM tamper_saved; TRUNCATE tamper_saved")
    # Rows inserted: into a chain (past its head), and into no chain at all.
    h3 = heads[3]
    case(3, h3 + 1, "inserted",
         f"INSERT INTO ledger (movement_id, account, delta, kind, created_at, chain, seq, hash, entry) VALUES "
         f"('3-1-0', 'user:mallory', 1000, 'credit', now(), 3, {h3 + 1}, sha256('x'), '3-1-0')",
         "DELETE FROM ledger WHERE account = 'user:mallory'")
    case(-1, 0, "inserted",
         "INSERT INTO ledger (movement_id, account, delta, kind, created_at, chain, seq, hash) VALUES "
         "('forged', 'user:mallory', 1000, 'credit', now(), -1, 0, sha256('x'))",
         "DELETE FROM ledger WHERE account = 'user:mallory'")
    case(99, 1, "no_head",
         "INSERT INTO ledger (movement_id, account, delta, kind, created_at, chain, seq, hash) VALUES "
         f"('forged', 'user:mallory', 1000, 'credit', now(), 99, 1, '{ZERO}')",
         "DELETE FROM ledger WHERE account = 'user:mallory'")
    # The tail of a chain cut, its head moved back to match: the anchor of
    # 2001-02-03 still names the old last row.
    h0 = heads[0]
    case(0, h0 - 2, "truncated",
         f"INSERT INTO tamper_saved SELECT * FROM ledger WHERE chain = 0 AND seq > {h0 - 3}; "
         f"DELETE FROM ledger WHERE chain = 0 AND seq > {h0 - 3}; "
         f"UPDATE ledger_chains SET (seq, hash) = (SELECT seq, hash FROM ledger WHERE chain = 0 AND seq = {h0 - 3}) "
         f"WHERE chain = 0",
         "INSERT INTO ledger SELECT * FROM tamper_saved; TRUNCATE tamper_saved; "
         f"UPDATE ledger_chains SET (seq, hash) = (SELECT seq, hash FROM ledger WHERE chain = 0 AND seq = {h0}) "
         f"WHERE chain = 0")
    # The same cut with the head left alone: the head names a missing row.
    case(1, heads[1] - 1, "head_mismatch",
         f"INSERT INTO tamper_saved SELECT * FROM ledger WHERE chain = 1 AND seq > {heads[1] - 2}; "
         f"DELETE FROM ledger WHERE chain = 1 AND seq > {heads[1] - 2}",
         "INSERT INTO ledger SELECT * FROM tamper_saved; TRUNCATE tamper_saved")
    # The last row of a chain rewritten with a hash that fits, and the head
    # with it: the chain is consistent, only the anchor tells.
    h2, s = heads[2], heads[2] - 1

    def rechain(change):
        return (f"UPDATE ledger SET delta = delta {change}, hash = tipcast_ledger_chain_step(NULL, "
                f"tipcast_ledger_content(chain, seq, movement_id, account, delta {change}, kind, note, created_at, "
                f"entry), (SELECT hash FROM ledger WHERE chain = 2 AND seq = {s})) WHERE chain = 2 AND seq = {h2}; "
                f"UPDATE ledger_chains SET hash = (SELECT hash FROM ledger WHERE chain = 2 AND seq = {h2}) "
                f"WHERE chain = 2")
    case(2, h2, "anchor_mismatch", rechain("+ 1"), rechain("- 1"))
    q(db, "DROP TABLE tamper_saved")

    # --chain checks one chain; the admin API lists the anchors.
    rc, rep = verify_json(db, "--chain", "2")
    assert rc == 0 and [c["chain"] for c in rep["chains"]] == [2]
    srv, api = start(server, db, rport)
    token = mint_token("fin1", role="finance")
    items, _ = api.pages("/api/v1/ledger/anchors", token, limit=2)
    mine = [(a["chain"], a["seq"]) for a in items if a["day"] == "2001-02-03"]
    assert sorted(mine) == sorted(heads.items())
    status, _, _ = api.get("/api/v1/ledger/anchors", mint_token("sup1", role="support"))
    assert status == 403


def test_concurrent_consumers_keep_the_chains_whole(server, db, rport):
    """Two nodes share the shards' ledger leases and write at once; a
    verify-ledger run while they write sees a consistent cut, and the one
    after sees every chain whole."""
    r = Redis(port=rport)
    start(server, db, rport)
    start(server, db, rport)
    produced, credited = [], []
    for _ in range(6):
        o, c = produce(r, 150)
        produced += o
        credited += c
        rc, rep = verify_json(db)
        assert rc == 0, rep
    # Every entry written, the credits and recharges too (they follow the
    # orders in their shards' streams, and may come a batch later), so that
    # nothing is added between the last verify and the count.
    wait_for(lambda: order_ids(db, produced) == str(len(produced)), timeout=60, what="every order")
    wait_for(lambda: ledger_entries(db, credited) == str(len(credited)), timeout=60,
             what="every credit and recharge")
    r.close()
    rc, rep = verify_json(db)
    assert rc == 0, rep
    assert rep["rows"] == int(q(db, "SELECT count(*) FROM ledger"))
