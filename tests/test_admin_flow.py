"""The money story through the admin API, on a real tipcastd, Redis and
PostgreSQL: finance sets up a package and recharges a user, the payment
provider's signed callback arrives 5 times in a row and 5 times at once and
credits once, the user gifts a creator over the WebSocket, support refunds
part of the order, settlement makes the creator's earnings available, the
creator asks for a withdrawal, finance approves and pays it. Every mutation
has its audit row (found by the X-Request-Id sent), and the statements list
all of it, page by page and as CSV.

Then a load run: a few hundred recharges, gifts, refunds and withdrawals
from parallel threads; once the ledger has caught up, the test's movements
sum to zero and every user's Redis wallet equals its ledger account.

Every HTTP answer is validated against docs/openapi.yaml (tests/admin.py).
"""

import csv
import io
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import admin
from conftest import mint_token
from helpers import psql, shard_of, wait_for, wait_room_live
from resp import Redis
from wsclient import SUBPROTOCOL_JSON, unique

# Gift ids of these tests (the catalog is shared by every test).
ROSE, STAR = 9741, 9742
PRICES = {ROSE: 100, STAR: 7}
CURRENCY = "XAT"
SETTINGS = dict(settlement_delay_days=0, settlement_interval_s=3600, withdrawal_min=100,
                max_msgs_per_s=10000, max_burst=10000)


@pytest.fixture(scope="module")
def catalog():
    psql("INSERT INTO gifts (id, name, price, animation, tier, enabled, sort_order) VALUES "
         f"({ROSE}, 'ApiRose', {PRICES[ROSE]}, 'rose', 1, true, 1), "
         f"({STAR}, 'ApiStar', {PRICES[STAR]}, 'star', 1, true, 2) "
         "ON CONFLICT (id) DO UPDATE SET price = EXCLUDED.price, enabled = true")
    return PRICES


def live_creators(*ids):
    values = ", ".join(f"('{c}', true)" for c in ids)
    psql(f"INSERT INTO creators (id, live) VALUES {values} ON CONFLICT (id) DO UPDATE SET live = true")


def wallet(uid):
    r = Redis()
    try:
        v = r("GET", f"tc:{{w:{shard_of(uid)}}}:bal:{uid}")
    finally:
        r.close()
    return int(v) if v is not None else 0


def ledger_sum(account):
    return int(psql(f"SELECT coalesce(sum(delta), 0) FROM ledger WHERE account = '{account}'"))


def ws(srv, user, role="viewer"):
    c = srv.connect(subprotocol=SUBPROTOCOL_JSON, token=mint_token(user, role))
    c.expect("welcome")
    return c


def ws_balance(c):
    r = c.request({"type": "balance", "id": unique("b")})
    assert r["type"] == "balance", r
    return r["balance"]


def audit_actions(request_id):
    out = psql(f"SELECT action || '=' || outcome FROM audit_log WHERE request_id = '{request_id}' ORDER BY id")
    return out.split("\n") if out else []


def parse_csv(text):
    rows = list(csv.DictReader(io.StringIO(text)))
    return rows


class Staff:
    def __init__(self):
        self.fin_sub = unique("fin")
        self.fin = mint_token(self.fin_sub, "finance")
        self.sup = mint_token(unique("sup"), "support")
        self.adm = mint_token(unique("adm"), "admin")
        self.aud = mint_token(unique("aud"), "auditor")


def make_package(api, staff, coins=5000, amount_minor=499):
    st, _, b = api.put(f"/api/v1/currency-rates/{CURRENCY}", staff.fin,
                       {"coins_per_unit": 100, "minor_per_unit": 100})
    assert st == 200, (st, b)
    pid = unique("pk")
    rid = unique("put")
    st, _, b = api.put(f"/api/v1/recharge-packages/{pid}", staff.fin,
                       {"currency": CURRENCY, "amount_minor": amount_minor, "coins": coins, "enabled": True},
                       request_id=rid)
    assert st == 200 and b == {"id": pid, "currency": CURRENCY, "amount_minor": amount_minor, "coins": coins,
                               "enabled": True}, (st, b)
    return pid, rid


def paid_recharge(api, staff, user, package, deliveries=1):
    """Creates a recharge of package for user and delivers its callback
    `deliveries` times; returns (recharge, answers)."""
    st, _, rc = api.post("/api/v1/recharges", staff.fin,
                         {"user": user, "request_id": unique("rq"), "package_id": package})
    assert st == 201, (st, rc)
    payload = {"payment_id": unique("pay"), "recharge_id": rc["id"], "amount_minor": rc["amount_minor"],
               "currency": rc["currency"], "status": "succeeded"}
    answers = [api.callback(admin.PAYMENT_SECRET, payload) for _ in range(deliveries)]
    for st, _, b in answers:
        assert st == 200, (st, b)
    return rc, answers


# ------------------------------------------------------------------ the story

def test_story(server, catalog):
    srv, api = admin.start(server, **SETTINGS)
    staff = Staff()
    viewer, creator = unique("v"), unique("cr")
    live_creators(creator)
    mutations = {}  # X-Request-Id -> the audit action it must have

    # Finance: a package and a recharge for the viewer.
    package, rid = make_package(api, staff)
    mutations[rid] = "package.put"
    rq = unique("rq")
    rid = unique("rc")
    st, h, rc = api.post("/api/v1/recharges", staff.fin, {"user": viewer, "request_id": rq, "package_id": package},
                         request_id=rid)
    assert st == 201, (st, rc)
    mutations[rid] = "recharge.create"
    assert rc["user"] == viewer and rc["coins"] == 5000 and rc["amount_minor"] == 499, rc
    assert rc["state"] == "pending" and rc["package_id"] == package and rc["payment_id"] is None, rc
    st, _, again = api.post("/api/v1/recharges", staff.fin, {"user": viewer, "request_id": rq, "package_id": package})
    assert st == 200 and again["id"] == rc["id"], (st, again)
    st, _, b = api.post("/api/v1/recharges", staff.fin,
                        {"user": viewer, "request_id": rq, "currency": CURRENCY, "amount_minor": 777})
    assert st == 409 and b["error"]["code"] == "idempotency_conflict", (st, b)

    # The provider's callback: 5 times in a row, then 5 at once.
    payload = {"payment_id": unique("pay"), "recharge_id": rc["id"], "amount_minor": 499, "currency": CURRENCY,
               "status": "succeeded"}
    body = json.dumps(payload).encode()
    cb_ids = [unique("cb") for _ in range(10)]
    answers = []
    for i in range(5):
        answers.append(api.callback(admin.PAYMENT_SECRET, None, raw_body=body, request_id=cb_ids[i]))
    barrier = threading.Barrier(5)
    lock = threading.Lock()

    def deliver(i):
        barrier.wait()
        a = api.callback(admin.PAYMENT_SECRET, None, raw_body=body, request_id=cb_ids[i])
        with lock:
            answers.append(a)
    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(5, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 10
    for st, _, b in answers:
        assert st == 200, (st, b)
        assert b["recharge"]["id"] == rc["id"] and b["recharge"]["payment_id"] == payload["payment_id"], b
        assert b["recharge"]["state"] in ("paid", "credited") and b["balance"] == 5000, b
    paid_rows = sum(a.count("payment.paid=ok") for i in cb_ids for a in audit_actions(i))
    assert paid_rows == 1, [audit_actions(i) for i in cb_ids]
    # Another payment id for the paid recharge.
    st, _, b = api.callback(admin.PAYMENT_SECRET, dict(payload, payment_id=unique("pay")))
    assert st == 409 and b["error"]["code"] == "invalid_state", (st, b)

    # A recharge the provider reports failed: 200, the recharge failed, no money.
    st, _, rc2 = api.post("/api/v1/recharges", staff.fin,
                          {"user": viewer, "request_id": unique("rq"), "package_id": package})
    assert st == 201, (st, rc2)
    fail = {"payment_id": unique("pay"), "recharge_id": rc2["id"], "amount_minor": 499, "currency": CURRENCY,
            "status": "failed"}
    for _ in range(2):
        st, _, b = api.callback(admin.PAYMENT_SECRET, fail)
        assert st == 200 and b["recharge"]["state"] == "failed" and b["recharge"]["id"] == rc2["id"], (st, b)
        assert "balance" not in b, b
    st, _, b = api.callback(admin.PAYMENT_SECRET, dict(fail, status="succeeded", payment_id=unique("pay")))
    assert st == 409 and b["error"]["code"] == "invalid_state", (st, b)

    # Credited once: the wallet, and one recharge movement in the ledger.
    c = ws(srv, viewer)
    assert ws_balance(c) == 5000
    assert wallet(viewer) == 5000
    wait_for(lambda: psql(f"SELECT count(*) FROM ledger WHERE account = 'user:{viewer}' "
                          "AND movement_id LIKE 'recharge:%'") == "1", what="the recharge in the ledger")
    wait_for(lambda: api.get(f"/api/v1/recharges/{rc['id']}", staff.fin)[2]["state"] == "credited",
             what="recharge credited")
    time.sleep(0.5)
    assert psql(f"SELECT count(*) || ':' || sum(delta) FROM ledger WHERE account = 'user:{viewer}'") == "1:5000"

    # The viewer gifts the creator 10 roses over the WebSocket.
    wait_room_live(c, creator)
    ack = c.request({"type": "gift", "id": unique("g"), "room": creator, "gift": ROSE, "count": 10})
    assert ack["type"] == "ack" and ack["amount"] == 1000 and ack["balance"] == 4000, ack
    order_id = ack["order"]
    order = wait_for(lambda: (lambda r: r[2] if r[0] == 200 else None)(
        api.get(f"/api/v1/orders/{order_id}", staff.sup)), what="the order in PostgreSQL")
    assert order["order_id"] == order_id and order["sender"] == viewer and order["creator"] == creator, order
    assert order["amount"] == 1000 and order["count"] == 10 and order["gift_id"] == ROSE, order
    assert order["state"] == "succeeded" and order["refunded"] == 0 and order["refunds"] == [], order
    split = order["split"]
    assert split["platform_fee"] + split["agency_share"] + split["creator_net"] == 1000, split

    # Support refunds 300 of it.
    refund_id = unique("rf")
    rid = unique("rfq")
    st, _, r = api.post(f"/api/v1/orders/{order_id}/refund", staff.sup,
                        {"refund_id": refund_id, "amount": 300, "reason": "story: wrong gift"}, request_id=rid)
    assert st == 201, (st, r)
    mutations[rid] = "order.refund"
    assert r["refund"]["id"] == refund_id and r["refund"]["amount"] == 300, r
    rf = r["refund"]
    assert rf["platform_fee"] + rf["agency_share"] + rf["creator_net"] == 300, rf
    assert r["order"]["refunded"] == 300 and r["order"]["state"] == "partially_refunded", r
    assert r["balance"] == 4300, r
    st, _, r2 = api.post(f"/api/v1/orders/{order_id}/refund", staff.sup,
                         {"refund_id": refund_id, "amount": 300, "reason": "story: wrong gift"})
    assert st in (200, 201) and r2["refund"]["id"] == refund_id and r2["order"]["refunded"] == 300, (st, r2)
    st, _, b = api.post(f"/api/v1/orders/{order_id}/refund", staff.sup,
                        {"refund_id": refund_id, "amount": 200, "reason": "other amount"})
    assert st == 409 and b["error"]["code"] == "idempotency_conflict", (st, b)
    st, _, b = api.post(f"/api/v1/orders/{order_id}/refund", staff.sup,
                        {"refund_id": unique("rf"), "amount": 701, "reason": "too much"})
    assert st == 409 and b["error"]["code"] == "refund_exceeds_order", (st, b)
    assert ws_balance(c) == 4300 and wallet(viewer) == 4300

    # The refund lowers the creator's pending once its wallet credit is in
    # PostgreSQL (the refund's state is then credited).
    wait_for(lambda: api.get(f"/api/v1/orders/{order_id}", staff.sup)[2]["refunds"][0]["state"] == "credited",
             what="the refund credited")

    # Settlement makes the creator's net available.
    ctok = mint_token(creator, "creator")
    st, _, bal = api.get(f"/api/v1/creators/{creator}/balance", ctok)
    net = split["creator_net"] - rf["creator_net"]
    assert st == 200 and bal["pending"] == net and bal["available"] == 0, (st, bal, net)
    rid = unique("set")
    st, _, run = api.post("/api/v1/settlements/run", staff.fin, request_id=rid)
    assert st == 200 and run["creators"] >= 1 and run["orders"] >= 1, (st, run)
    mutations[rid] = "settlement.run"
    st, _, bal = api.get(f"/api/v1/creators/{creator}/balance", ctok)
    assert st == 200, (st, bal)
    assert bal == {"creator": creator, "pending": 0, "available": net, "frozen": 0, "withdrawable": net,
                   "paid_out": 0, "debt": 0}, (bal, net)
    assert net >= 100, f"the creator's net {net} is below withdrawal-min: the revenue rule in force takes too much"

    # The creator withdraws all of it; finance approves and pays.
    st, _, b = api.post("/api/v1/withdrawals", ctok, {"amount": 99, "request_id": unique("w")})
    assert st == 422 and b["error"]["code"] == "below_minimum", (st, b)
    st, _, b = api.post("/api/v1/withdrawals", ctok, {"amount": net + 1, "request_id": unique("w")})
    assert st == 409 and b["error"]["code"] == "insufficient_available", (st, b)
    wq = unique("w")
    rid = unique("wrq")
    st, _, w = api.post("/api/v1/withdrawals", ctok, {"amount": net, "request_id": wq}, request_id=rid)
    assert st == 201 and w["creator"] == creator and w["amount"] == net and w["state"] == "requested", (st, w)
    mutations[rid] = "withdrawal.request"
    st, _, again = api.post("/api/v1/withdrawals", ctok, {"amount": net, "request_id": wq})
    assert st == 200 and again["id"] == w["id"], (st, again)
    st, _, bal = api.get(f"/api/v1/creators/{creator}/balance", staff.fin)
    assert bal["frozen"] == net and bal["withdrawable"] == 0 and bal["available"] == net, bal
    st, _, b = api.post(f"/api/v1/withdrawals/{w['id']}/pay", staff.fin, {"payout_reference": "too-early"})
    assert st == 409 and b["error"]["code"] == "invalid_state", (st, b)
    rid = unique("wap")
    st, _, w2 = api.post(f"/api/v1/withdrawals/{w['id']}/approve", staff.fin, request_id=rid)
    assert st == 200 and w2["state"] == "approved" and w2["decided_by"] == staff.fin_sub, (st, w2)
    assert w2["decided_at"] is not None
    mutations[rid] = "withdrawal.approve"
    st, _, b = api.post(f"/api/v1/withdrawals/{w['id']}/approve", staff.fin)
    assert st == 409 and b["error"]["code"] == "invalid_state", (st, b)
    rid = unique("wpy")
    ref = unique("bank")
    st, _, w3 = api.post(f"/api/v1/withdrawals/{w['id']}/pay", staff.fin, {"payout_reference": ref},
                         request_id=rid)
    assert st == 200 and w3["state"] == "paid" and w3["payout_reference"] == ref and w3["paid_at"], (st, w3)
    mutations[rid] = "withdrawal.pay"
    st, _, b = api.post(f"/api/v1/withdrawals/{w['id']}/reject", staff.fin, {"reason": "late"})
    assert st == 409 and b["error"]["code"] == "invalid_state", (st, b)
    st, _, bal = api.get(f"/api/v1/creators/{creator}/balance", ctok)
    assert bal == {"creator": creator, "pending": 0, "available": 0, "frozen": 0, "withdrawable": 0,
                   "paid_out": net, "debt": 0}, bal
    moved = psql("SELECT coalesce(sum(delta), 0) FROM ledger WHERE account = 'payout' AND movement_id IN "
                 f"(SELECT movement_id FROM ledger WHERE account = 'creator:{creator}')")
    assert int(moved) == net, moved

    # Every mutation has its audit row.
    for request_id, action in mutations.items():
        assert f"{action}=ok" in audit_actions(request_id), (request_id, action, audit_actions(request_id))

    # Statements: the viewer's transactions, page by page and as CSV.
    wait_for(lambda: ledger_sum(f"user:{viewer}") == 4300, what="the refund in the ledger")
    items, pages = api.pages(f"/api/v1/users/{viewer}/transactions", mint_token(viewer, "viewer"), limit=1)
    assert pages in (3, 4), pages
    assert len(items) == 3 and len({i["movement_id"] for i in items}) == 3, items
    assert sorted(i["delta"] for i in items) == [-1000, 300, 5000], items
    assert [i["created_at"] for i in items] == sorted((i["created_at"] for i in items), reverse=True), items
    st, h, text = api.get(f"/api/v1/users/{viewer}/transactions", staff.aud, query={"format": "csv"})
    assert st == 200 and h["content-type"].startswith("text/csv"), (st, h)
    assert h.get("transfer-encoding", "").lower() == "chunked", h
    rows = parse_csv(text)
    assert sorted(r["movement_id"] for r in rows) == sorted(i["movement_id"] for i in items), (rows, items)
    assert sum(int(r["delta"]) for r in rows) == 4300, rows

    # The creator's income, settlements and withdrawals.
    items, _ = api.pages(f"/api/v1/creators/{creator}/income", ctok, limit=1)
    assert [(i["order_id"], i["amount"], i["refunded"], i["settled"]) for i in items] == [
        (order_id, 1000, 300, True)], items
    st, _, text = api.get(f"/api/v1/creators/{creator}/income", staff.fin, query={"format": "csv"})
    rows = parse_csv(text)
    assert [(r["order_id"], int(r["amount"]), int(r["creator_net"])) for r in rows] == [
        (order_id, 1000, split["creator_net"])], rows
    items, _ = api.pages(f"/api/v1/creators/{creator}/settlements", ctok)
    assert [(i["amount"], i["orders"]) for i in items] == [(net, 1)], items
    items, _ = api.pages("/api/v1/withdrawals", staff.aud, query={"creator": creator})
    assert [(i["id"], i["state"], i["amount"]) for i in items] == [(w["id"], "paid", net)], items
    st, _, text = api.get("/api/v1/withdrawals", ctok, query={"format": "csv"})
    rows = parse_csv(text)
    assert [(int(r["id"]), r["state"]) for r in rows] == [(w["id"], "paid")], rows

    # The audit trail of finance, as JSON pages and as CSV.
    items, _ = api.pages("/api/v1/audit", staff.aud, query={"actor": staff.fin_sub}, limit=2)
    assert {i["action"] for i in items} >= {"package.put", "recharge.create", "settlement.run",
                                            "withdrawal.approve", "withdrawal.pay"}, items
    st, _, text = api.get("/api/v1/audit", staff.adm, query={"actor": staff.fin_sub, "format": "csv"})
    rows = parse_csv(text)
    assert sorted(int(r["id"]) for r in rows) == sorted(i["id"] for i in items), (rows, items)


# ------------------------------------------------------------------ the load run

USERS, CREATORS = 12, 3


def test_load(server, catalog):
    srv, api = admin.start(server, **SETTINGS)
    staff = Staff()
    users = [unique("lv") for _ in range(USERS)]
    creators = [unique("lc") for _ in range(CREATORS)]
    live_creators(*creators)
    package, _ = make_package(api, staff, coins=600, amount_minor=600)
    rnd = random.Random(11)
    lock = threading.Lock()
    credited = {u: 0 for u in users}   # coins of recharges acknowledged
    spent = {u: 0 for u in users}      # coins of gifts acknowledged
    refunded = {u: 0 for u in users}   # coins of refunds acknowledged
    orders = []                        # (order id, sender, amount)
    ops = {"recharge": 0, "gift": 0, "refund": 0, "withdrawal": 0}

    def recharge(u):
        rc, answers = paid_recharge(api, staff, u, package, deliveries=2)
        assert {a[2]["recharge"]["id"] for a in answers} == {rc["id"]}
        with lock:
            credited[u] += rc["coins"]
            ops["recharge"] += 1

    def gifts(u, n):
        c = ws(srv, u)
        wait_room_live(c, creators[0])
        for _ in range(n):
            gift = rnd.choice([ROSE, STAR])
            count = rnd.randint(1, 3)
            ack = c.request({"type": "gift", "id": unique("g"), "room": rnd.choice(creators), "gift": gift,
                             "count": count})
            if ack["type"] == "error":
                assert ack["code"] == "insufficient_balance", ack
                continue
            assert ack["type"] == "ack" and ack["amount"] == PRICES[gift] * count, ack
            with lock:
                spent[u] += ack["amount"]
                orders.append((ack["order"], u, ack["amount"]))
                ops["gift"] += 1
        c.close()

    def refund(order_id, sender, amount):
        body = {"refund_id": unique("rf"), "reason": "load"}
        if rnd.random() < 0.5:
            body["amount"] = rnd.randint(1, amount)
        deadline = time.monotonic() + 30
        while True:
            st, _, r = api.post(f"/api/v1/orders/{order_id}/refund", staff.sup, body)
            if st != 404:  # the order may not be in PostgreSQL yet
                break
            assert time.monotonic() < deadline, (order_id, r)
            time.sleep(0.2)
        assert st == 201, (st, r)
        assert r["refund"]["amount"] == body.get("amount", amount), (body, r)
        with lock:
            refunded[sender] += r["refund"]["amount"]
            ops["refund"] += 1

    # Phase 1: every user is recharged 3 times, all at once.
    with ThreadPoolExecutor(16) as pool:
        for f in [pool.submit(recharge, u) for u in users for _ in range(3)]:
            f.result()
    # Phase 2: gifts from every user at once, with more recharges meanwhile.
    with ThreadPoolExecutor(16) as pool:
        fs = [pool.submit(gifts, u, 15) for u in users]
        fs += [pool.submit(recharge, u) for u in users[: USERS // 2]]
        for f in fs:
            f.result()
    # Phase 3: refunds of a third of the orders, while gifts go on.
    picked = rnd.sample(orders, len(orders) // 3)
    with ThreadPoolExecutor(16) as pool:
        fs = [pool.submit(refund, *o) for o in picked]
        fs += [pool.submit(gifts, u, 5) for u in users[: USERS // 2]]
        for f in fs:
            f.result()
    # Phase 4: settlement, then every creator withdraws half of what it may,
    # finance approves and pays (or rejects every other one), while
    # recharges and refunds go on.

    def withdraw(creator, i):
        ctok = mint_token(creator, "creator")
        st, _, bal = api.get(f"/api/v1/creators/{creator}/balance", ctok)
        assert st == 200, (st, bal)
        amount = bal["withdrawable"] // 2
        if amount < 100:
            return
        st, _, w = api.post("/api/v1/withdrawals", ctok, {"amount": amount, "request_id": unique("w")})
        assert st == 201, (st, w)
        st, _, w = api.post(f"/api/v1/withdrawals/{w['id']}/approve", staff.fin)
        assert st == 200 and w["state"] == "approved", (st, w)
        if i % 2:
            st, _, w = api.post(f"/api/v1/withdrawals/{w['id']}/reject", staff.fin, {"reason": "load"})
            assert st == 200 and w["state"] == "rejected", (st, w)
        else:
            wid = w["id"]
            st, _, w = api.post(f"/api/v1/withdrawals/{wid}/pay", staff.fin, {"payout_reference": unique("b")})
            if st == 409:
                # Refunds of settled orders running meanwhile may have left
                # less available than the withdrawal: then it is rejected.
                assert w["error"]["code"] == "insufficient_available", w
                st, _, w = api.post(f"/api/v1/withdrawals/{wid}/reject", staff.fin, {"reason": "refunds"})
                assert st == 200 and w["state"] == "rejected", (st, w)
            else:
                assert st == 200 and w["state"] == "paid", (st, w)
        with lock:
            ops["withdrawal"] += 1

    # Settle what the ledger has: wait for every order first.
    wait_for(lambda: int(psql("SELECT count(*) FROM orders WHERE order_id IN ("
                              + ",".join(f"'{o[0]}'" for o in orders) + ")")) == len(orders),
             timeout=60, what="every order in PostgreSQL")
    st, _, run = api.post("/api/v1/settlements/run", staff.fin)
    assert st == 200, (st, run)
    more = [o for o in orders if o not in picked]
    more = rnd.sample(more, min(20, len(more)))
    with ThreadPoolExecutor(16) as pool:
        fs = [pool.submit(withdraw, c, i) for i, c in enumerate(creators)]
        fs += [pool.submit(recharge, u) for u in users[USERS // 2:]]
        fs += [pool.submit(refund, *o) for o in more]
        for f in fs:
            f.result()
    total = sum(ops.values())
    print(f"load run: {ops} ({total} operations, {api.calls} HTTP calls)")
    assert total >= 300 and ops["gift"] >= 150 and ops["refund"] >= 50 and ops["recharge"] == 48, ops

    # Wait for the ledger, then: every wallet equals its ledger account and
    # what the API acknowledged; the test's movements sum to zero.
    def caught_up():
        return all(wallet(u) == ledger_sum(f"user:{u}") for u in users)
    wait_for(caught_up, timeout=90, what="the ledger to catch up with the wallets")
    for u in users:
        expect = credited[u] - spent[u] + refunded[u]
        assert wallet(u) == expect == ledger_sum(f"user:{u}"), (u, wallet(u), expect, ledger_sum(f"user:{u}"))
    accounts = ",".join(f"'user:{u}'" for u in users) + "," + ",".join(f"'creator:{c}'" for c in creators)
    total_delta = psql("SELECT coalesce(sum(delta), 0) FROM ledger WHERE movement_id IN "
                       f"(SELECT movement_id FROM ledger WHERE account IN ({accounts}))")
    assert total_delta == "0", total_delta
    # Each recharge was credited exactly once (2 deliveries each).
    n = psql("SELECT count(*) FROM ledger WHERE movement_id LIKE 'recharge:%' AND account IN ("
             + ",".join(f"'user:{u}'" for u in users) + ")")
    assert int(n) == ops["recharge"], (n, ops)
    # Every refund reached the ledger: none is left pending.
    wait_for(lambda: psql("SELECT count(*) FROM refunds WHERE state = 'pending' AND user_id IN ("
                          + ",".join(f"'{u}'" for u in users) + ")") == "0", timeout=30,
             what="every refund credited")
    # Each creator's earnings (pending + available) are its ledger account.
    for c in creators:
        st, _, bal = api.get(f"/api/v1/creators/{c}/balance", staff.aud)
        assert st == 200 and bal["pending"] + bal["available"] == ledger_sum(f"creator:{c}"), (c, bal)
        assert bal["frozen"] == 0 and bal["paid_out"] == paid_out_in_ledger(c), (c, bal)
    assert srv.admin.get("/healthz")[0] == 200


def paid_out_in_ledger(creator):
    """What the ledger moved from creator:<creator> to the payout account."""
    return int(psql("SELECT coalesce(sum(delta), 0) FROM ledger WHERE account = 'payout' AND movement_id IN "
                    f"(SELECT movement_id FROM ledger WHERE account = 'creator:{creator}')"))


# ------------------------------------------------------------------ CSV of many pages

def test_csv_streams_every_page(server):
    """A CSV export is the whole list, however many pages of SQL it takes:
    1100 audit rows of one actor (1100 pending recharges, no money) as CSV
    are exactly the rows of the JSON pages."""
    srv, api = admin.start(server)
    staff = Staff()
    package, _ = make_package(api, staff)
    user = unique("u")

    def create(i):
        st, _, b = api.post("/api/v1/recharges", staff.fin,
                            {"user": user, "request_id": unique("rq"), "package_id": package})
        assert st == 201, (st, b)
    with ThreadPoolExecutor(16) as pool:
        for f in [pool.submit(create, i) for i in range(1100)]:
            f.result()
    q = {"actor": staff.fin_sub}
    by500, pages = api.pages("/api/v1/audit", staff.aud, query=q, limit=500)
    assert pages in (3, 4) and len(by500) == 1102, (pages, len(by500))  # + rate.put, package.put
    by333, pages = api.pages("/api/v1/audit", staff.aud, query=q, limit=333)
    assert pages in (4, 5) and [i["id"] for i in by333] == [i["id"] for i in by500]
    assert len({i["id"] for i in by500}) == 1102
    st, h, text = api.get("/api/v1/audit", staff.aud, query=dict(q, format="csv"))
    assert st == 200 and h.get("transfer-encoding", "").lower() == "chunked", (st, h)
    rows = parse_csv(text)
    assert [int(r["id"]) for r in rows] == [i["id"] for i in by500]
    assert {r["action"] for r in rows} == {"recharge.create", "package.put", "rate.put"}
    assert all(r["actor"] == staff.fin_sub and r["role"] == "finance" for r in rows)
    # The recharges list agrees (JSON pages only: it has no CSV form).
    items, _ = api.pages("/api/v1/recharges", staff.sup, query={"user": user}, limit=500)
    assert len(items) == 1100 and {i["state"] for i in items} == {"pending"}
    st, _, b = api.get("/api/v1/recharges", staff.sup, query={"user": user, "format": "csv"})
    assert st == 400 and b["error"]["code"] == "bad_field" and b["error"]["field"] == "format", (st, b)
    assert wallet(user) == 0 and ledger_sum(f"user:{user}") == 0
