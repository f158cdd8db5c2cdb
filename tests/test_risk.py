"""Risk control (docs/operations.md, "Risk control"), on a real tipcastd,
Redis and PostgreSQL: for every rule a case that trips it and one that shows
normal traffic passing. Rules are changed through the admin API while the
node runs (they reach it by NOTIFY), and reset to their defaults after every
test (the database is shared by every test file).

The brushing and spike scans read orders.ip and orders.device, which the
ledger fills from the outbox entries' ip and dv once migration 006 (ledger
chain) parses them; until then those cases insert their orders directly and
only check, end to end, that the wallet script writes ip and dv.
"""

import time
from datetime import datetime

import pytest

import admin
from conftest import mint_token
from helpers import psql, shard_of, wait_for, wait_room_live
from resp import Redis
from wsclient import SUBPROTOCOL_JSON, unique

GIFT = 9781  # price 10
PRICE = 10
CURRENCY = "XRK"
SETTINGS = dict(max_msgs_per_s=10000, max_burst=10000, risk_scan_interval_s=1)


@pytest.fixture(scope="module")
def catalog():
    psql("INSERT INTO gifts (id, name, price, animation, tier, enabled, sort_order) VALUES "
         f"({GIFT}, 'RiskDime', {PRICE}, 'dime', 1, true, 1) "
         "ON CONFLICT (id) DO UPDATE SET price = EXCLUDED.price, enabled = true")


@pytest.fixture
def node(server, catalog):
    """(srv, api, staff tokens); the rules are back at their defaults after."""
    srv, api = admin.start(server, **SETTINGS)
    staff = {r: mint_token(unique(r[:3]), r) for r in ("admin", "operations", "support", "auditor", "finance")}
    yield srv, api, staff
    psql("UPDATE risk_rules SET value = dflt WHERE value <> dflt")


def set_rules(api, staff, **rules):
    st, _, b = api.put("/api/v1/risk/rules", staff["operations"], {"rules": rules})
    assert st == 200, (st, b)
    got = {r["name"]: r["value"] for r in b["rules"]}
    for k, v in rules.items():
        assert got[k] == v, (k, got[k])
    # The node reloads on NOTIFY within a tick (250 ms).
    time.sleep(0.8)


def rcli(*args):
    r = Redis()
    try:
        return r(*args)
    finally:
        r.close()


def wallet(uid):
    v = rcli("GET", f"tc:{{w:{shard_of(uid)}}}:bal:{uid}")
    return int(v) if v is not None else 0


def creator_live():
    c = unique("rcr")
    psql(f"INSERT INTO creators (id, live) VALUES ('{c}', true) ON CONFLICT (id) DO UPDATE SET live = true")
    return c


def ws(srv, user, role="viewer", dev=None):
    c = srv.connect(subprotocol=SUBPROTOCOL_JSON, token=mint_token(user, role, extra={"dev": dev} if dev else None))
    c.expect("welcome")
    return c


def funded(srv, coins, dev=None):
    """A fresh viewer credited `coins`, connected."""
    user = unique("rv")
    adm = ws(srv, unique("adm"), "admin")
    r = adm.request({"type": "credit", "id": unique("c"), "user": user, "amount": coins})
    assert r["type"] == "ack", r
    adm.close()
    return user, ws(srv, user, dev=dev)


def gift(c, room, count=1, rid=None):
    return c.request({"type": "gift", "id": rid or unique("g"), "room": room, "gift": GIFT, "count": count})


def one_per_window(found, window_s):
    """An alert is raised once per window of window_s seconds (counted from
    the epoch, like the dedup key of tipcast_risk_alert): a test that runs
    across a window's end rightly sees a second one, never two in one."""
    buckets = [int(datetime.fromisoformat(x["at"].replace("Z", "+00:00")).timestamp()) // window_s for x in found]
    assert found and len(buckets) == len(set(buckets)) and len(found) <= 2, found


def alerts(api, staff, kind, subject=None):
    st, _, b = api.get("/api/v1/alerts", staff["auditor"], query={"kind": kind, "limit": 500})
    assert st == 200, (st, b)
    return [a for a in b["items"] if subject is None or a["subject"] == subject]


# ------------------------------------------------------------------ rules API

def test_rules_api_validates_and_audits(node):
    srv, api, staff = node
    st, _, b = api.get("/api/v1/risk/rules", staff["auditor"])
    assert st == 200, b
    names = {r["name"]: r for r in b["rules"]}
    assert names["gift_user_per_min"]["default"] == 600 and names["daily_spend_cap"]["value"] == 0, names
    for body, field in (({"rules": {"no_such_rule": 1}}, "rules.no_such_rule"),
                        ({"rules": {"spike_factor": 1}}, "rules.spike_factor"),
                        ({"rules": {"spike_factor": 2.5}}, "rules.spike_factor"),
                        ({"rules": {"spike_factor": "3"}}, "rules.spike_factor"),
                        ({"rules": {}}, "rules")):
        st, _, e = api.put("/api/v1/risk/rules", staff["admin"], body)
        assert st == 400 and e["error"]["code"] == "bad_field" and e["error"]["field"] == field, (body, st, e)
    st, _, e = api.put("/api/v1/risk/rules", staff["support"], {"rules": {"spike_factor": 3}})
    assert st == 403, (st, e)
    rid = unique("rr")
    st, _, b = api.put("/api/v1/risk/rules", staff["admin"], {"rules": {"spike_factor": 3}}, request_id=rid)
    assert st == 200, b
    row = psql(f"SELECT action || '|' || before::text || '|' || after::text FROM audit_log WHERE request_id = '{rid}'")
    assert row == 'risk.rules|{"spike_factor": 10}|{"spike_factor": 3}', row


# ------------------------------------------------------------------ frozen accounts

def test_frozen_account_cannot_gift_then_unfrozen_can(node):
    srv, api, staff = node
    room = creator_live()
    user, c = funded(srv, 1000)
    other, c2 = funded(srv, 1000)
    wait_room_live(c, room)
    assert gift(c, room)["type"] == "ack"
    rid = unique("fz")
    st, _, b = api.post(f"/api/v1/accounts/{user}/freeze", staff["support"], {"reason": "chargeback ring"},
                        request_id=rid)
    assert st == 200 and b["frozen"] and b["reason"] == "chargeback ring", (st, b)
    assert psql(f"SELECT action FROM audit_log WHERE request_id = '{rid}'") == "account.freeze"

    def refused():
        return gift(c, room).get("code") == "account_frozen"
    wait_for(refused, 10, "the freeze to reach the node")
    bal = wallet(user)
    entries = rcli("XLEN", f"tc:{{w:{shard_of(user)}}}:outbox")
    r = c.request({"type": "tip", "id": unique("t"), "room": room, "amount": 5})
    assert r["type"] == "error" and r["code"] == "account_frozen", r
    r = gift(c, room)
    assert r["code"] == "account_frozen", r
    assert wallet(user) == bal
    assert rcli("XLEN", f"tc:{{w:{shard_of(user)}}}:outbox") == entries
    # Normal traffic: another user on the same node and address.
    assert gift(c2, room)["type"] == "ack"
    # Seen by the admin API.
    st, _, b = api.get(f"/api/v1/accounts/{user}/freeze", staff["auditor"])
    assert st == 200 and b["frozen"] and b["by"], b
    items, _ = api.pages("/api/v1/freezes", staff["auditor"])
    assert user in [i["account"] for i in items]
    # A frozen user cannot recharge either.
    st, _, b = api.post("/api/v1/recharges", staff["finance"],
                        {"user": user, "request_id": unique("rq"), "currency": CURRENCY, "amount_minor": 100})
    assert st == 403 and b["error"]["code"] == "account_frozen", (st, b)
    st, _, text = api.get("/metrics")
    assert 'tipcast_risk_refusals_total{code="account_frozen",check="frozen"}' in text

    rid = unique("uf")
    st, _, b = api.post(f"/api/v1/accounts/{user}/unfreeze", staff["operations"], {"reason": "cleared"},
                        request_id=rid)
    assert st == 200 and not b["frozen"], (st, b)
    assert psql(f"SELECT action FROM audit_log WHERE request_id = '{rid}'") == "account.unfreeze"
    wait_for(lambda: gift(c, room).get("type") == "ack", 10, "the unfreeze to reach the node")
    # Auditors read, they do not freeze.
    st, _, b = api.post(f"/api/v1/accounts/{user}/freeze", staff["auditor"], {"reason": "x"})
    assert st == 403, (st, b)


def test_frozen_creator_cannot_withdraw(node):
    srv, api, staff = node
    cr = unique("wcr")
    st, _, b = api.post(f"/api/v1/accounts/{cr}/freeze", staff["admin"], {"reason": "review"})
    assert st == 200, b
    st, _, b = api.post("/api/v1/withdrawals", mint_token(cr, "creator"), {"amount": 5000, "request_id": unique("w")})
    assert st == 403 and b["error"]["code"] == "account_frozen", (st, b)


# ------------------------------------------------------------------ rates

def test_user_gift_rate(node):
    srv, api, staff = node
    room = creator_live()
    user, c = funded(srv, 1000)
    other, c2 = funded(srv, 1000)
    wait_room_live(c, room)
    set_rules(api, staff, gift_user_per_min=5)
    answers = [gift(c, room) for _ in range(8)]
    acks = [a for a in answers if a["type"] == "ack"]
    limited = [a for a in answers if a.get("code") == "risk_rate_limited"]
    assert len(acks) <= 5 and len(acks) + len(limited) == 8 and limited, answers
    assert limited[0]["retry_after_ms"] > 0, limited[0]
    assert wallet(user) == 1000 - PRICE * len(acks)
    # Normal traffic: another user under the limit.
    for _ in range(3):
        assert gift(c2, room)["type"] == "ack"
    # The rule off again, at run time: the limited user passes.
    set_rules(api, staff, gift_user_per_min=0)
    for _ in range(10):
        assert gift(c, room)["type"] == "ack"


def test_ip_gift_rate(server, catalog):
    # Loopback is in conns-per-address-exempt by default, and exempt
    # addresses (load balancers) are exempt from the address rule too.
    srv, api = admin.start(server, conns_per_address_exempt="", **SETTINGS)
    staff = {"operations": mint_token(unique("ope"), "operations")}
    try:
        ip_rate(srv, api, staff)
    finally:
        psql("UPDATE risk_rules SET value = dflt WHERE value <> dflt")


def ip_rate(srv, api, staff):
    room = creator_live()
    users = [funded(srv, 1000) for _ in range(3)]
    wait_room_live(users[0][1], room)
    set_rules(api, staff, gift_ip_per_min=4, gift_user_per_min=0)
    answers = [gift(c, room) for _ in range(2) for _, c in users]
    acks = [a for a in answers if a["type"] == "ack"]
    assert 1 <= len(acks) <= 4, answers
    assert [a.get("code") for a in answers if a["type"] != "ack"] == ["risk_rate_limited"] * (6 - len(acks))
    set_rules(api, staff, gift_ip_per_min=100000)
    for _, c in users:
        assert gift(c, room)["type"] == "ack"


# ------------------------------------------------------------------ daily caps

def test_daily_spend_cap_exact_across_nodes(node, server):
    srv, api, staff = node
    srv2 = server(max_msgs_per_s=10000, max_burst=10000)
    room = creator_live()
    user, c = funded(srv, 1000)
    c2 = ws(srv2, user)
    wait_room_live(c, room)
    wait_room_live(c2, room)
    set_rules(api, staff, daily_spend_cap=100)
    time.sleep(0.5)  # the second node too
    assert gift(c, room, count=6)["type"] == "ack"      # 60
    r = gift(c2, room, count=5)                          # 110 > 100
    assert r["type"] == "error" and r["code"] == "spend_cap_exceeded" and r["remaining"] == 40, r
    assert gift(c2, room, count=4)["type"] == "ack"     # 100
    r = c.request({"type": "tip", "id": unique("t"), "room": room, "amount": 1})
    assert r["code"] == "spend_cap_exceeded" and r["remaining"] == 0, r
    assert wallet(user) == 900
    # Normal traffic: below a cap everything passes; no cap, no limit.
    other, c3 = funded(srv, 1000)
    assert gift(c3, room, count=10)["type"] == "ack"
    set_rules(api, staff, daily_spend_cap=0)
    assert gift(c, room, count=10)["type"] == "ack"
    st, _, text = api.get("/metrics")
    # One refusal on each node.
    assert 'tipcast_risk_refusals_total{code="spend_cap_exceeded",check="daily_cap"} 1' in text


def test_new_account_cap(node):
    srv, api, staff = node
    room = creator_live()
    new, c = funded(srv, 1000)
    old, c_old = funded(srv, 1000)
    # The old account's first credit 30 days ago.
    rcli("HSET", f"tc:{{w:{shard_of(old)}}}:risk:{old}", "first", str(int(time.time() * 1000) - 30 * 86400000))
    wait_room_live(c, room)
    set_rules(api, staff, new_account_daily_cap=50, new_account_days=7)
    assert gift(c, room, count=5)["type"] == "ack"
    r = gift(c, room)
    assert r["code"] == "spend_cap_exceeded" and r["remaining"] == 0, r
    # Normal traffic: an account older than new_account_days.
    assert gift(c_old, room, count=20)["type"] == "ack"
    # With new_account_days 0 no account is new.
    set_rules(api, staff, new_account_days=0)
    assert gift(c, room)["type"] == "ack"


# ------------------------------------------------------------------ recharges

def test_recharge_rates(node):
    srv, api, staff = node
    st, _, b = api.put(f"/api/v1/currency-rates/{CURRENCY}", staff["finance"], {"coins_per_unit": 100,
                                                                               "minor_per_unit": 100})
    assert st == 200, b
    set_rules(api, staff, recharge_user_per_hour=2, recharge_ip_per_hour=3)

    def recharge(user, ip=None, rq=None):
        body = {"user": user, "request_id": rq or unique("rq"), "currency": CURRENCY, "amount_minor": 100}
        if ip:
            body["ip"] = ip
        return api.post("/api/v1/recharges", staff["finance"], body)

    user = unique("ru")
    first = unique("rq")
    assert recharge(user, rq=first)[0] == 201
    assert recharge(user)[0] == 201
    st, _, b = recharge(user)
    assert st == 429 and b["error"]["code"] == "risk_rate_limited", (st, b)
    # A retry of a recharge already made is answered as before.
    st, _, b = recharge(user, rq=first)
    assert st == 200, (st, b)
    # Per address: three users behind one address, the fourth refused.
    ip = "198.51.100.%d" % (int(time.time()) % 250 + 1)
    assert all(recharge(unique("ru"), ip)[0] == 201 for _ in range(3))
    st, _, b = recharge(unique("ru"), ip)
    assert st == 429 and b["error"]["code"] == "risk_rate_limited", (st, b)
    assert recharge(unique("ru"), "2001:db8::7")[0] == 201  # another address passes
    st, _, b = recharge(unique("ru"), "not-an-ip")
    assert st == 400 and b["error"]["field"] == "ip", (st, b)
    assert psql(f"SELECT count(*) FROM recharges WHERE ip = '{ip}'") == "3"


# ------------------------------------------------------------------ the scan

def insert_orders(rows):
    """rows: (sender, creator, amount, ip, device, age_s)."""
    values = []
    for sender, creator, amount, ip, dev, age in rows:
        oid = unique("0-rk")
        values.append(f"('{oid}', 'gift', '{sender}', '{creator}', '{creator}', 1, {amount}, {amount}, "
                      f"'{unique('q')}', 0, now() - interval '{age} seconds', {amount}, "
                      f"{'NULL' if ip is None else repr(ip)}, {'NULL' if dev is None else repr(dev)})")
    psql("INSERT INTO orders (order_id, kind, sender, room, creator, count, unit_price, amount, request_id, "
         "sender_balance, created_at, creator_net, ip, device) VALUES " + ", ".join(values))


def test_gift_entries_carry_ip_and_device(node):
    srv, api, staff = node
    room = creator_live()
    user, c = funded(srv, 1000, dev="phone-42")
    wait_room_live(c, room)
    a = gift(c, room)
    assert a["type"] == "ack", a
    sid = a["order"].split("-", 1)[1]
    got = rcli("XRANGE", f"tc:{{w:{shard_of(user)}}}:outbox", sid, sid)
    fields = dict(zip(got[0][1][::2], got[0][1][1::2]))
    assert fields["ip"] == "127.0.0.1" and fields["dv"] == "phone-42", fields
    # A malformed device claim is a bad token.
    bad = srv.connect(subprotocol=SUBPROTOCOL_JSON, token=mint_token(unique("u"), extra={"dev": "a b"}))
    assert bad.expect("error")["code"] == "auth_invalid"


def test_brushing_by_ip_and_device(node):
    srv, api, staff = node
    set_rules(api, staff, brushing_ip_senders=4, brushing_device_senders=3)
    cr, quiet = unique("bcr"), unique("bcq")
    ip = "203.0.113.9"
    insert_orders([(unique("s"), cr, 10, ip, None, 5) for _ in range(4)] +
                  [(unique("s"), cr, 10, None, "dev-brush", 5) for _ in range(3)] +
                  # Normal traffic: fewer senders than the rules, and one sender many times.
                  [(unique("s"), quiet, 10, "203.0.113.10", "dev-ok", 5) for _ in range(2)] +
                  [("same", quiet, 10, "203.0.113.11", "dev-one", 5) for _ in range(6)])
    wait_for(lambda: alerts(api, staff, "brushing_ip", f"{cr}@{ip}"), 15, "the brushing_ip alert")
    wait_for(lambda: alerts(api, staff, "brushing_device", f"{cr}@dev-brush"), 15, "the brushing_device alert")
    a = alerts(api, staff, "brushing_ip", f"{cr}@{ip}")
    assert a and all(x["detail"]["senders"] == 4 for x in a), a
    time.sleep(2)  # more scans: still one alert per window
    one_per_window(alerts(api, staff, "brushing_ip", f"{cr}@{ip}"), 3600)
    assert not [x for k in ("brushing_ip", "brushing_device") for x in alerts(api, staff, k)
                if x["subject"].startswith(quiet + "@")]
    st, _, text = api.get("/metrics")
    assert 'tipcast_risk_alerts_total{kind="brushing_ip"}' in text


def test_spikes(node):
    srv, api, staff = node
    set_rules(api, staff, spike_window_s=60, spike_factor=5, spike_min_amount=500)
    hot, calm, small = unique("hot"), unique("calm"), unique("small")
    whale, steady = unique("whale"), unique("steady")
    insert_orders([(whale, hot, 600, None, None, 10)] +
                  # calm: the same amount, but a baseline of 1440 * 600 a day (600 per minute).
                  [(steady, calm, 600, None, None, 10)] +
                  [(steady, calm, 600 * 60, None, None, 3600 * k) for k in range(1, 25)] +
                  [(unique("s"), small, 400, None, None, 10)])
    wait_for(lambda: alerts(api, staff, "spike_room", hot), 15, "the spike_room alert")
    wait_for(lambda: alerts(api, staff, "spike_user", whale), 15, "the spike_user alert")
    time.sleep(1.5)
    assert not alerts(api, staff, "spike_room", calm) and not alerts(api, staff, "spike_user", steady)
    assert not alerts(api, staff, "spike_room", small)


def test_refund_cycle(node):
    srv, api, staff = node
    set_rules(api, staff, refund_cycle_refunds=2)
    st, _, b = api.put(f"/api/v1/currency-rates/{CURRENCY}", staff["finance"], {"coins_per_unit": 100,
                                                                               "minor_per_unit": 100})
    assert st == 200, b
    room = creator_live()
    cyc, normal = unique("cyc"), unique("nrm")
    for user in (cyc, normal):
        st, _, rc = api.post("/api/v1/recharges", staff["finance"],
                             {"user": user, "request_id": unique("rq"), "currency": CURRENCY, "amount_minor": 100})
        assert st == 201, rc
        st, _, b = api.callback(admin.PAYMENT_SECRET, {"payment_id": unique("pay"), "recharge_id": rc["id"],
                                                        "amount_minor": 100, "currency": CURRENCY,
                                                        "status": "succeeded"})
        assert st == 200, b
    orders = {}
    for user in (cyc, normal):
        c = ws(srv, user)
        wait_room_live(c, room)
        orders[user] = [gift(c, room)["order"] for _ in range(2)]
    wait_for(lambda: psql("SELECT count(*) FROM orders WHERE order_id IN ('%s')" %
                          "','".join(orders[cyc] + orders[normal])) == "4", 20, "the orders in PostgreSQL")
    # Two refunds of the cycling user's gifts, one of the other's.
    for oid in orders[cyc] + orders[normal][:1]:
        st, _, b = api.post(f"/api/v1/orders/{oid}/refund", staff["support"],
                            {"refund_id": unique("rf"), "amount": PRICE, "reason": "test"})
        assert st in (200, 201), (st, b)
    wait_for(lambda: alerts(api, staff, "refund_cycle", cyc), 15, "the refund_cycle alert")
    a = alerts(api, staff, "refund_cycle", cyc)[0]
    assert a["detail"]["refunds"] == 2, a
    time.sleep(1.5)
    assert not alerts(api, staff, "refund_cycle", normal)
