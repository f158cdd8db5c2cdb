"""A mixed run of every issue 14 feature on a Redis and a database of this
test's own: new-user bonuses, coupon gifts, plain gifts and tips (combos,
fan levels), a goal reached, a pinned tip, a refund, a PK battle, the
global boards, and two campaigns (one paid out, one missing its target and
refunded). Afterwards the ledger sums to zero, every movement sums to zero,
and `tipcast-admin reconcile` (Redis wallets against the ledger, to the
coin, escrow accounts included) is clean."""

import time
from datetime import datetime, timedelta, timezone

import admin
from conftest import mint_token
from helpers import wait_for
from test_reconcile import SHARDS, reconcile, sql, world, ws  # noqa: F401
from wsclient import unique

ROSE, STAR = 9761, 9762


def test_mixed_run_sums_to_zero_and_reconciles(server, world):  # noqa: F811
    sql(world, "SELECT 1")
    srv, api = admin.start(server, redis_port=world["redis_port"], pg=world["pg"], wallet_shards=SHARDS,
                           max_msgs_per_s=10000, max_burst=10000, campaign_interval_ms=150, pin_min_amount=500)
    sql(world, f"INSERT INTO gifts (id, name, price, animation) VALUES ({ROSE}, 'MxRose', 100, 'rose'), "
               f"({STAR}, 'MxStar', 7, 'star') ON CONFLICT DO NOTHING")
    a, b = unique("mxa"), unique("mxb")
    sql(world, f"INSERT INTO creators (id, live) VALUES ('{a}', true), ('{b}', true)")
    wait_for(lambda: "2 live creators" in srv.stderr_text(), 20, "the catalog with the rooms")
    fin, ops = mint_token(unique("fin"), "finance"), mint_token(unique("ops"), "operations")

    st, _, _ = api.put("/api/v1/promotions/new-user-bonus", fin, {"amount": 1000})
    assert st == 200
    # Every node reloads the rule on NOTIFY within a second: probe with
    # fresh users until one gets the bonus.
    deadline = time.monotonic() + 10
    while True:
        probe = ws(srv, unique("probe"))
        time.sleep(0.2)
        if probe.request({"type": "balance", "id": unique("b")})["balance"] == 1000:
            break
        assert time.monotonic() < deadline, "the bonus never came"
    probe_bonuses = 1
    users = [unique("mxu") for _ in range(4)]
    conns = {u: ws(srv, u) for u in users}

    def bal(u):
        r = conns[u].request({"type": "balance", "id": unique("b")})
        return r["balance"]
    for u in users:
        wait_for(lambda: bal(u) == 1000, 10, "the bonus")

    st, _, pk = api.post("/api/v1/pk", ops, {"room_a": a, "room_b": b, "seconds": 5})
    assert st == 201, pk
    orders = []
    for i, u in enumerate(users):
        c = conns[u]
        st, _, cp = api.post("/api/v1/coupons", ops, {"user": u, "gift_id": ROSE, "discount": 30 + i})
        assert st == 201, cp
        r = c.request({"type": "gift", "id": unique("g"), "room": a, "gift": ROSE, "coupon": cp["code"]})
        assert r["type"] == "ack" and r["amount"] == 100 - 30 - i, r
        orders.append(r["order"])
        r = c.request({"type": "gift", "id": unique("g"), "room": b, "gift": STAR, "count": 3})
        assert r["type"] == "ack", r
        orders.append(r["order"])
        r = c.request({"type": "tip", "id": unique("t"), "room": b if i % 2 else a, "amount": 11})
        assert r["type"] == "ack", r
        orders.append(r["order"])
    ids = ",".join(f"'{o}'" for o in orders)
    wait_for(lambda: sql(world, f"SELECT count(*) FROM orders WHERE order_id IN ({ids})") == str(len(orders)), 20,
             "the orders")
    rf = unique("rf")
    st, _, body = api.post(f"/api/v1/orders/{orders[0]}/refund", fin, {"refund_id": rf, "amount": 40,
                                                                        "reason": "mixed"})
    assert st in (200, 201), body
    wait_for(lambda: sql(world, f"SELECT state FROM refunds WHERE id = '{rf}'") == "credited", 20, "the refund")

    def decided():
        st, _, got = api.get(f"/api/v1/pk/{pk['id']}", fin)
        return got if got.get("state") == "decided" else None
    got = wait_for(decided, 25, "the battle decided")
    assert got["score_a"] == 4 * 100 + 2 * 11 and got["score_b"] == 4 * 21 + 2 * 11, got
    wait_for(lambda: sql(world, f"SELECT announced FROM pk_battles WHERE id = {pk['id']}") == "t", 15, "announced")

    c = conns[users[0]]
    r = c.request({"type": "global_board", "id": unique("gb"), "period": "month"})
    assert {e["user"]: e["total"] for e in r["creators"]} == {a: 422 - 40, b: 106}, r

    # The room features on the same run: a goal the gifts reach, a pinned
    # tip, a combo of three, fan levels on the events.
    owner = ws(srv, a, "creator")
    watcher = ws(srv, unique("mxw"))
    assert watcher.request({"type": "join", "id": "j", "room": a})["type"] == "joined"
    g = owner.request({"type": "goal", "id": unique("goal"), "room": a, "amount": 30})
    assert g["type"] == "ack", g
    rich = unique("mxr")
    adm = ws(srv, unique("mxadm"), "admin")
    assert adm.request({"type": "credit", "id": unique("c"), "user": rich, "amount": 5000})["type"] == "ack"
    rc = ws(srv, rich)
    for _ in range(3):
        r = rc.request({"type": "gift", "id": unique("g"), "room": a, "gift": STAR})
        assert r["type"] == "ack", r
    r = rc.request({"type": "tip", "id": unique("t"), "room": a, "amount": 600, "text": "pin me"})
    assert r["type"] == "ack", r
    pinned_order = r["order"]
    seen = []

    def features_seen():
        m = watcher.recv(timeout=5)
        evs = m["events"] if m.get("type") == "events" else [m] if m.get("type") == "event" else []
        seen.extend(evs)
        kinds = [e["kind"] for e in seen]
        return "goal_reached" in kinds and any(e.get("combo_count") == 3 for e in seen) and "pins" in kinds
    wait_for(features_seen, 20, "the goal reached, a combo of 3 and the pin")
    assert any(e["kind"] == "pins" and any(p.get("order") == pinned_order for p in e.get("pins", []))
               for e in seen), seen
    assert all("level" in e for e in seen if e["kind"] in ("gift", "tip")), seen

    # Two campaigns: a's reaches its target and is paid out minus the fee;
    # b's misses (all or nothing) and every pledge comes back.
    def deadline(seconds):
        t = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    camps = {}
    for creator, target in ((a, 150), (b, 10 ** 6)):
        st, _, cp = api.post("/api/v1/campaigns", mint_token(creator, "creator"),
                             {"request_id": unique("cq"), "title": "mixed", "description": "mixed run",
                              "target": target, "deadline": deadline(4), "mode": "all_or_nothing", "tiers": []})
        assert st == 201, cp
        st, _, ok = api.post(f"/api/v1/campaigns/{cp['id']}/approve", ops, {})
        assert st == 200, ok
        camps[creator] = cp["id"]
    wait_for(lambda: all(sql(world, f"SELECT state FROM campaigns WHERE id = {i}") == "open"
                         for i in camps.values()), 20, "the campaigns open")
    for u in users[:3]:
        for creator, amount in ((a, 60), (b, 25)):
            r = conns[u].request({"type": "pledge", "id": unique("pl"), "campaign": camps[creator], "amount": amount})
            assert r["type"] == "ack", r
    wait_for(lambda: sql(world, f"SELECT state FROM campaigns WHERE id = {camps[a]}") == "succeeded", 30,
             "campaign a paid out")
    wait_for(lambda: sql(world, f"SELECT state FROM campaigns WHERE id = {camps[b]}") == "refunded", 30,
             "campaign b refunded")
    assert sql(world, f"SELECT coalesce(sum(delta), 0) FROM ledger WHERE account = 'escrow:{camps[b]}'") == "0"
    assert sql(world, f"SELECT coalesce(sum(delta), 0) FROM ledger WHERE account = 'escrow:{camps[a]}'") == "0"

    # The money: every movement, and the whole ledger, sums to zero; the
    # platform paid the bonuses and the discounts.
    assert sql(world, "SELECT count(*) FROM (SELECT movement_id FROM ledger GROUP BY 1 HAVING sum(delta) <> 0) x") \
        == "0"
    assert sql(world, "SELECT sum(delta) FROM ledger") == "0"
    # (the watcher, a new viewer too, got the bonus; the rich sender, who
    # had coins before connecting, did not; the admin's credit of 5000)
    assert sql(world, "SELECT sum(delta) FROM ledger WHERE account = 'platform' AND kind = 'credit'") == \
        str(-((4 + probe_bonuses + 1) * 1000 + 30 + 31 + 32 + 33 + 5000))
    st, rep = reconcile(world, "--no-store")
    assert st == 0, rep
