"""Reconciliation to the coin (docs/settlement.md, "Reconciliation";
settlement/recon.c, storage/migrations/007_reconcile.sql).

A mixed load (credits, recharges through the payment callback, gifts, tips,
refunds, a settlement run) on a real tipcastd; `tipcast-admin reconcile`
runs while gifts keep flowing and is clean. Then each injected fault alone
(a wallet changed by hand in Redis, a ledger row deleted as superuser, an
order without its split, a statement line missing, a statement amount
changed) makes it exit 1 with a finding that names the account or payment
and the coins; the fault is then undone. The scheduled run's report is read
through the admin API, and a mismatch leaves an alert.

Reconciliation looks at everything in its Redis and its database, so this
test has its own of both (a redis-server in a temp dir, a fresh database),
out of the other tests' way."""

import csv
import io
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

import admin
from conftest import PG, REPO, free_port, mint_token
from helpers import shard_of, wait_for
from resp import Redis
from wsclient import SUBPROTOCOL_JSON, unique

ROSE, STAR = 9761, 9762
PRICES = {ROSE: 100, STAR: 7}
CURRENCY = "XRC"
SHARDS = 4


def admin_bin():
    bin_dir = os.path.dirname(os.environ.get("TIPCAST_TEST_BIN", "")) or os.path.join(REPO, "build", "server")
    return os.path.join(bin_dir, "tipcast-admin")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A redis-server and a database of this module's own."""
    d = tmp_path_factory.mktemp("recon")
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
                              "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = "tipcast_recon_" + unique("d").replace("-", "_").lower()[-12:]
    base = PG.replace("dbname=tipcast", "dbname=postgres")
    subprocess.run(["psql", base, "-X", "-qc", f"CREATE DATABASE {db}"], check=True, capture_output=True)
    dsn = PG.replace("dbname=tipcast", f"dbname={db}")
    wait_for(lambda: _ping(port), 10, "redis-server")
    yield {"redis_port": port, "pg": dsn}
    redis.terminate()
    redis.wait(10)
    subprocess.run(["psql", base, "-X", "-qc", f"DROP DATABASE {db} WITH (FORCE)"], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def _ping(port):
    try:
        r = Redis(port=port)
        ok = r("PING") in ("PONG", b"PONG")
        r.close()
        return ok
    except OSError:
        return False


def sql(world, q):
    out = subprocess.run(["psql", world["pg"], "-X", "-v", "ON_ERROR_STOP=1", "-qAtc", q],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def reconcile(world, *args):
    """Runs tipcast-admin reconcile --json; returns (exit status, report)."""
    out = subprocess.run([admin_bin(), f"--redis-port={world['redis_port']}", f"--pg={world['pg']}",
                          f"--wallet-shards={SHARDS}", "reconcile", "--json", *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 1), (out.returncode, out.stderr)
    return out.returncode, json.loads(out.stdout)


def findings(report, check=None):
    return [f for f in report["findings"] if check is None or f["check"] == check]


def ws(srv, user, role="viewer"):
    c = srv.connect(subprotocol=SUBPROTOCOL_JSON, token=mint_token(user, role))
    c.expect("welcome")
    return c


def test_reconcile(server, world):
    sql(world, "SELECT 1")
    srv, api = admin.start(server, redis_port=world["redis_port"], pg=world["pg"], wallet_shards=SHARDS,
                           settlement_delay_days=0, reconcile_interval_s=2, max_msgs_per_s=10000,
                           max_burst=10000)
    sql(world, f"INSERT INTO gifts (id, name, price, animation) VALUES ({ROSE}, 'RcRose', 100, 'rose'), "
               f"({STAR}, 'RcStar', 7, 'star')")
    creators = [unique("rcc") for _ in range(3)]
    sql(world, "INSERT INTO creators (id, live) VALUES " + ", ".join(f"('{c}', true)" for c in creators))
    # The catalog reloads on NOTIFY a moment later: before that, every room
    # is not live and the gifts below would all be refused.
    wait_for(lambda: "2 gifts, 3 live creators" in srv.stderr_text(), 20, "the catalog with the rooms")
    fin, sup, aud = (mint_token(unique(r[:3]), r) for r in ("finance", "support", "auditor"))
    # A rule with a platform fee and an agency share, so orders have every part.
    st, _, _ = api.post("/api/v1/agencies", mint_token(unique("adm"), "admin"), {"id": "rc-guild", "name": "G"})
    assert st in (200, 201)
    st, _, _ = api.put(f"/api/v1/creators/{creators[0]}/agency", mint_token(unique("adm"), "admin"),
                       {"agency_id": "rc-guild"})
    assert st == 200
    st, _, b = api.post("/api/v1/revenue-rules", fin, {"name": "rc",
                                                        "agency_share_bp": 1000,
                                                        "tiers": [{"min_volume": 0, "platform_fee_bp": 3000}]})
    assert st == 201, (st, b)
    api.put(f"/api/v1/currency-rates/{CURRENCY}", fin, {"coins_per_unit": 100, "minor_per_unit": 100})
    pkg = unique("pk")
    st, _, _ = api.put(f"/api/v1/recharge-packages/{pkg}", fin,
                       {"currency": CURRENCY, "amount_minor": 499, "coins": 5000, "enabled": True})
    assert st == 200

    users = [unique("rcu") for _ in range(6)]
    # Money in: a credit by an admin and recharges through the callback.
    adm = ws(srv, unique("radm"), "admin")
    for u in users:
        r = adm.request({"type": "credit", "id": unique("c"), "user": u, "amount": 300, "text": "seed"})
        assert r["type"] == "ack", r
    adm.close()
    for u in users:
        st, _, rc = api.post("/api/v1/recharges", fin, {"user": u, "request_id": unique("rq"), "package_id": pkg})
        assert st == 201, rc
        st, _, b = api.callback(admin.PAYMENT_SECRET, {"payment_id": unique("pay"), "recharge_id": rc["id"],
                                                       "amount_minor": 499, "currency": CURRENCY,
                                                       "status": "succeeded"})
        assert st == 200, b

    orders = []
    lock = threading.Lock()
    stop = threading.Event()

    def gifts(u, n=None):
        c = ws(srv, u)
        i = 0
        while (n is None and not stop.is_set()) or (n is not None and i < n):
            i += 1
            room = creators[i % len(creators)]
            if i % 4 == 0:
                ack = c.request({"type": "tip", "id": unique("t"), "room": room, "amount": 3, "text": "hi"})
            else:
                ack = c.request({"type": "gift", "id": unique("g"), "room": room, "gift": ROSE if i % 2 else STAR,
                                 "count": 1})
            if ack["type"] == "ack":
                with lock:
                    orders.append((ack["order"], u, ack["amount"]))
            elif ack.get("code") == "risk_rate_limited":
                # The sender's rate (risk control) caught up with the loop: wait as told.
                time.sleep(ack.get("retry_after_ms", 100) / 1000)
            elif ack.get("code") != "room_not_live":
                assert ack.get("code") == "insufficient_balance", ack
        c.close()

    threads = [threading.Thread(target=gifts, args=(u, 20)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(orders) >= 60
    # Refunds of some orders, whole and partial, then a settlement run.
    wait_for(lambda: int(sql(world, "SELECT count(*) FROM orders")) == len(orders), 30, "orders in PostgreSQL")
    for k, (oid, _, amount) in enumerate(orders[:8]):
        body = {"refund_id": unique("rf"), "reason": "recon"}
        if k % 2:
            body["amount"] = max(1, amount // 2)
        st, _, b = api.post(f"/api/v1/orders/{oid}/refund", sup, body)
        assert st == 201, b
    st, _, b = api.post("/api/v1/settlements/run", fin)
    assert st == 200, b

    # Reconcile while gifts keep flowing: clean.
    stop.clear()
    flowing = [threading.Thread(target=gifts, args=(u,)) for u in users[:3]]
    for t in flowing:
        t.start()
    try:
        time.sleep(0.5)
        for _ in range(2):
            st, rep = reconcile(world, "--no-store")
            assert st == 0, findings(rep)
            assert rep["wallets"] >= len(users) and rep["rooms"] >= 1
    finally:
        stop.set()
        for t in flowing:
            t.join()

    # Quiet now: let the groups catch up.
    wait_for(lambda: reconcile(world, "--no-store")[0] == 0, 30, "a clean run")

    # The scheduled run's report, through the admin API.
    def scheduled_ok():
        st, _, b = api.get("/api/v1/reconcile/reports", aud, query={"limit": 50})
        assert st == 200, b
        return [i for i in b["items"] if i["source"] == "scheduled" and i["ok"]]
    got = wait_for(scheduled_ok, 30, "a clean scheduled report")
    st, _, one = api.get(f"/api/v1/reconcile/reports/{got[0]['id']}", aud)
    assert st == 200 and one["report"]["findings"] == [] and one["source"] == "scheduled", one
    st, _, latest = api.get("/api/v1/reconcile/reports/latest", fin)
    assert st == 200 and "report" in latest
    st, _, _ = api.get("/api/v1/reconcile/reports/latest", mint_token(unique("v"), "viewer"))
    assert st == 403
    # The scheduled runs go on; a fault below may be seen by them too, which
    # is fine: each assertion names what the CLI run found.

    # Fault 1: a wallet changed by hand in Redis.
    victim = users[1]
    r = Redis(port=world["redis_port"])
    shard = shard_of(victim, SHARDS)
    key = f"tc:{{w:{shard}}}:bal:{victim}"
    r("INCRBY", key, "37")
    st, rep = reconcile(world)
    w = findings(rep, "wallet")
    assert st == 1 and len(w) == 1, rep["findings"]
    assert w[0]["subject"] == f"user:{victim}" and w[0]["actual"] - w[0]["expected"] == 37 and w[0]["off"] == 37
    alerts = sql(world, "SELECT count(*) FROM alerts WHERE kind = 'reconcile.mismatch' AND severity = 'critical'")
    assert int(alerts) >= 1
    r("DECRBY", key, "37")
    r.close()
    assert reconcile(world, "--no-store")[0] == 0

    # Fault 2: a ledger row deleted as superuser (a user's row of a gift).
    oid, sender, amount = next(o for o in orders[10:] if o[2] == 100)
    sql(world, "CREATE TABLE rc_saved AS SELECT * FROM ledger WHERE movement_id = '%s' AND account = 'user:%s';"
               "ALTER TABLE ledger DISABLE TRIGGER USER;"
               "DELETE FROM ledger WHERE id IN (SELECT id FROM rc_saved);"
               "ALTER TABLE ledger ENABLE TRIGGER USER;" % (oid, sender))
    st, rep = reconcile(world, "--no-store")
    assert st == 1
    w = findings(rep, "wallet")
    assert [(f["subject"], f["expected"] - f["actual"]) for f in w] == [(f"user:{sender}", 100)], w
    split = [f for f in findings(rep, "accounts") if f["kind"] == "order_split"]
    assert [(f["subject"], f["detail"]["account"], f["off"]) for f in split] == [(oid, f"user:{sender}", 100)]
    assert any(f["kind"] == "movement_sum" and f["subject"] == oid and f["actual"] == 100
               for f in findings(rep, "accounts"))
    sql(world, "ALTER TABLE ledger DISABLE TRIGGER USER; INSERT INTO ledger SELECT * FROM rc_saved;"
               "ALTER TABLE ledger ENABLE TRIGGER USER; DROP TABLE rc_saved")
    assert reconcile(world, "--no-store")[0] == 0

    # Fault 3: an order missing its split (its creator and platform rows).
    row = sql(world, f"SELECT order_id, creator, creator_net, platform_fee FROM orders "
                     f"WHERE amount = 100 AND refunded = 0 AND creator = '{creators[1]}' LIMIT 1").split("|")
    oid, creator, net, fee = row[0], row[1], int(row[2]), int(row[3])
    assert fee > 0 and net > 0
    sql(world, "CREATE TABLE rc_saved AS SELECT * FROM ledger WHERE movement_id = '%s' "
               "AND account IN ('creator:%s', 'platform');"
               "ALTER TABLE ledger DISABLE TRIGGER USER;"
               "DELETE FROM ledger WHERE id IN (SELECT id FROM rc_saved);"
               "ALTER TABLE ledger ENABLE TRIGGER USER;" % (oid, creator))
    st, rep = reconcile(world, "--no-store")
    assert st == 1
    split = sorted((f["subject"], f["detail"]["account"], f["expected"], f["actual"])
                   for f in findings(rep, "accounts") if f["kind"] == "order_split")
    assert split == [(oid, f"creator:{creator}", net, 0), (oid, "platform", fee, 0)], split
    acc = {f["subject"]: f for f in findings(rep, "accounts") if f["kind"] == "account"}
    assert acc[f"creator:{creator}"]["off"] == net and acc["platform"]["off"] == fee, acc
    assert findings(rep, "wallet") == []
    sql(world, "ALTER TABLE ledger DISABLE TRIGGER USER; INSERT INTO ledger SELECT * FROM rc_saved;"
               "ALTER TABLE ledger ENABLE TRIGGER USER; DROP TABLE rc_saved")
    assert reconcile(world, "--no-store")[0] == 0

    # The provider's statement: every paid recharge, then one line missing,
    # then one amount changed.
    lines = [l.split("|") for l in sql(world, "SELECT payment_id, paid_amount_minor, "
                                              "to_char(paid_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
                                              "FROM recharges WHERE state IN ('paid', 'credited') "
                                              "ORDER BY paid_at").splitlines()]
    assert len(lines) == len(users)

    def statement(rows, name):
        p = f"/tmp/{unique('st')}-{name}"
        with open(p, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["payment_id", "amount", "time"])
            w.writerows(rows)
        return p

    st, rep = reconcile(world, "--no-store", "--statement", statement(lines, "all.csv"))
    assert st == 0 and rep["statement_lines"] == len(lines), rep["findings"]
    gone = lines[2]
    st, rep = reconcile(world, "--no-store", "--statement", statement(lines[:2] + lines[3:], "missing.csv"))
    s = findings(rep, "statement")
    assert st == 1 and [(f["kind"], f["subject"], f["expected"]) for f in s] == [
        ("not_in_statement", f"payment:{gone[0]}", 499)], s
    assert s[0]["detail"]["coins"] == 5000
    changed = [list(l) for l in lines]
    changed[3][1] = "450"
    st, rep = reconcile(world, "--no-store", "--statement", statement(changed, "amount.csv"))
    s = findings(rep, "statement")
    assert st == 1 and [(f["kind"], f["subject"], f["expected"], f["actual"], f["off"]) for f in s] == [
        ("amount", f"payment:{lines[3][0]}", 499, 450, 49)], s
    # A payment the platform never recorded.
    st, rep = reconcile(world, "--no-store", "--statement",
                        statement(lines + [["pay-unknown-1", "999", lines[-1][2]]], "extra.csv"))
    s = findings(rep, "statement")
    assert st == 1 and [(f["kind"], f["subject"], f["actual"]) for f in s] == [
        ("not_recharged", "payment:pay-unknown-1", 999)], s

    # Text output and exit status 2 for a statement that cannot be read.
    out = subprocess.run([admin_bin(), f"--redis-port={world['redis_port']}", f"--pg={world['pg']}",
                          f"--wallet-shards={SHARDS}", "reconcile", "--no-store", "--statement", "/nonexistent"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "statement /nonexistent" in out.stderr, out.stderr


def test_backlog_entries_already_in_postgresql_count_once(server, world):
    """An outbox entry that the ledger group has not acknowledged may already
    be in PostgreSQL: its batch committed and the node stopped before its
    XACK. Reconciliation subtracts a backlog entry from the expected wallet
    only when PostgreSQL does not have it, and asks orders for a gift's
    (ledger_entry indexes only the other rows since 018) and the ledger for
    a credit's. Here tipcastd is stopped, a gift and a credit go through
    wallet_move.lua as tipcastd sends them, and reconciliation is clean
    before and after both are written to PostgreSQL as the ledger group
    writes them."""
    srv, _ = admin.start(server, redis_port=world["redis_port"], pg=world["pg"], wallet_shards=SHARDS,
                         max_msgs_per_s=10000, max_burst=10000)
    user, creator = unique("rbu"), unique("rbc")
    sql(world, f"INSERT INTO gifts (id, name, price, animation) VALUES ({ROSE}, 'RcRose', 100, 'rose') "
               f"ON CONFLICT (id) DO NOTHING; INSERT INTO creators (id, live) VALUES ('{creator}', true)")
    adm = ws(srv, unique("radm"), "admin")
    r = adm.request({"type": "credit", "id": unique("c"), "user": user, "amount": 500, "text": "seed"})
    assert r["type"] == "ack", r
    adm.close()
    wait_for(lambda: sql(world, f"SELECT count(*) FROM ledger WHERE account = 'user:{user}'") == "1", 30,
             "the credit in the ledger")
    srv.stop()

    with open(os.path.join(REPO, "gifts", "lua", "wallet_move.lua")) as f:
        src = f.read()
    shard = shard_of(user, SHARDS)
    rd = Redis(port=world["redis_port"])

    def keys(q):
        w = f"tc:{{w:{shard}}}"
        return [f"{w}:bal:{user}", f"{w}:idem:{user}:{q}", f"{w}:outbox", f"{w}:risk:{user}"]
    ts = int(time.time() * 1000)
    gq, cq = unique("g"), unique("c")
    # KEYS and ARGV as gifts/wallet.c sends them (wallet_move.lua's header).
    gift = rd("EVAL", src, 4, *keys(gq), "gift", user, creator, ROSE, "RcRose", "rose", 1, 100, 100, "", "", gq,
              ts, "fp-g", 600000, 1000000, "viewer", "", 0, "127.0.0.1", "", 0, 0, 0)
    credit = rd("EVAL", src, 4, *keys(cq), "credit", user, "", 0, "", "", 1, 40, 40, "", "top-up", cq, ts + 1,
                "fp-c", 600000, 1000000, "admin", "", 0, "", "", 0, 0, 0)
    rd.close()
    assert gift[0] == "ok" and gift[2] == 400, gift
    assert credit[0] == "ok" and credit[2] == 440, credit
    gift_oid, credit_oid = f"{shard}-{gift[1]}", f"{shard}-{credit[1]}"

    st, rep = reconcile(world, "--no-store")
    assert st == 0 and rep["backlog"] == 2, (rep["backlog"], findings(rep))

    # The ledger group's batch for the two entries (storage/ledger_sql.c),
    # committed; the outbox still has them unacknowledged.
    at = f"to_timestamp({ts} / 1000.0)"
    sql(world, "SELECT tipcast_ledger_staging();"
               "INSERT INTO ledger_in_orders (order_id, kind, sender, room, creator, gift_id, gift_name, count, "
               "unit_price, amount, combo, message, request_id, sender_balance, created_at, ip, device) VALUES "
               f"('{gift_oid}', 'gift', '{user}', '{creator}', '{creator}', {ROSE}, 'RcRose', 1, 100, 100, NULL, "
               f"NULL, '{gq}', 400, {at}, '127.0.0.1', NULL);"
               "INSERT INTO ledger_in_moves (movement_id, account, delta, kind, note, created_at) VALUES "
               f"('{credit_oid}', 'user:{user}', 40, 'credit', 'top-up', {at}), "
               f"('{credit_oid}', 'platform', -40, 'credit', 'top-up', {at});"
               "SELECT * FROM tipcast_ledger_apply(false)")
    assert sql(world, f"SELECT count(*) FROM orders WHERE order_id = '{gift_oid}'") == "1"
    assert sql(world, f"SELECT count(*) FROM ledger WHERE entry = '{credit_oid}'") == "2"
    assert sql(world, f"SELECT sum(delta) FROM ledger WHERE account = 'user:{user}'") == "440"

    st, rep = reconcile(world, "--no-store")
    assert st == 0 and rep["backlog"] == 2, (rep["backlog"], findings(rep))
