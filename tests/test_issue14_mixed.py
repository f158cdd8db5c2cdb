"""A mixed run of issue 14's platform features (B14) on a Redis and a
database of this test's own: new-user bonuses, coupon gifts, plain gifts
and tips, a refund, a PK battle, the global boards. Afterwards the ledger
sums to zero, every movement sums to zero, and `tipcast-admin reconcile`
(Redis wallets against the ledger, to the coin) is clean."""

import time

import admin
from conftest import mint_token
from helpers import wait_for
from test_reconcile import SHARDS, reconcile, sql, world, ws  # noqa: F401
from wsclient import unique

ROSE, STAR = 9761, 9762


def test_mixed_run_sums_to_zero_and_reconciles(server, world):  # noqa: F811
    sql(world, "SELECT 1")
    srv, api = admin.start(server, redis_port=world["redis_port"], pg=world["pg"], wallet_shards=SHARDS,
                           max_msgs_per_s=10000, max_burst=10000)
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

    # The money: every movement, and the whole ledger, sums to zero; the
    # platform paid the bonuses and the discounts.
    assert sql(world, "SELECT count(*) FROM (SELECT movement_id FROM ledger GROUP BY 1 HAVING sum(delta) <> 0) x") \
        == "0"
    assert sql(world, "SELECT sum(delta) FROM ledger") == "0"
    assert sql(world, "SELECT sum(delta) FROM ledger WHERE account = 'platform' AND kind = 'credit'") == \
        str(-((4 + probe_bonuses) * 1000 + 30 + 31 + 32 + 33))
    st, rep = reconcile(world, "--no-store")
    assert st == 0, rep
