"""Global boards (issue 14): creators by income, gifters platform-wide and
hot gifts of the current UTC day, week and month, over the WebSocket
(`global_board`) and the admin API (GET /api/v1/boards).

Real tipcastd, Redis and PostgreSQL: gifts and tips are paid on the
WebSocket, the ledger consumer stores them and keeps the rollups, a refund
goes through the admin API. Every board is compared, row for row, with the
same ranking computed here straight from orders and ledger in SQL."""

import time
from datetime import datetime, timedelta, timezone

import admin
from helpers import SHARDS, psql, wait_for, wait_room_live
from test_money import balance, catalog, credit, live_creator  # noqa: F401
from wsclient import SUBPROTOCOL_MSGPACK, unique

ROSE, ROCKET = 9101, 9103
FLAGS = dict(wallet_shards=SHARDS, max_msgs_per_s=10000, max_burst=10000)


def bounds(period, now):
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    return start, (start + timedelta(days=32)).replace(day=1)


def expected(period, now, top=10):
    """The three boards from orders and ledger, ranked as documented."""
    lo, hi = (t.isoformat() for t in bounds(period, now))
    win = f"created_at >= '{lo}' AND created_at < '{hi}'"

    def ranked(who):
        sql = f"""
            WITH o AS (SELECT {who} AS id, sum(amount) AS coins FROM orders o WHERE {win} GROUP BY 1),
            r AS (SELECT min(substr(account, {9 if who == 'creator' else 6}))
                         FILTER (WHERE account LIKE '{who if who == 'creator' else 'user'}:%') AS id,
                         sum(delta) FILTER (WHERE account LIKE 'user:%') AS back
                  FROM ledger WHERE kind = 'refund' AND {win} GROUP BY movement_id),
            t AS (SELECT id, sum(coins) AS coins FROM (SELECT id, coins FROM o UNION ALL
                                                     SELECT id, -back FROM r) x GROUP BY id)
            SELECT id, coins FROM t WHERE coins > 0 ORDER BY coins DESC, id LIMIT {top}"""
        return [{"user": i, "total": int(c)} for i, c in
                (line.split("|") for line in psql(sql).splitlines() if line)]

    gifts = [{"gift": int(g), "name": n, "count": int(c), "coins": int(a)} for g, n, c, a in (
        line.split("|") for line in psql(
            f"SELECT coalesce(o.gift_id, 0), coalesce(left(g.name, 64), ''), sum(o.count), sum(o.amount) "
            f"FROM orders o LEFT JOIN gifts g ON g.id = o.gift_id WHERE o.kind = 'gift' AND o.created_at >= '{lo}' "
            f"AND o.created_at < '{hi}' "
            f"GROUP BY 1, g.name ORDER BY 3 DESC, 4 DESC, 1 LIMIT {top}").splitlines() if line)]
    return {"creators": ranked("creator"), "gifters": ranked("sender"), "gifts": gifts}


def board(c, period):
    r = c.request({"type": "global_board", "id": unique("gb"), "period": period})
    assert r["type"] == "global_board" and r["period"] == period, r
    return r


def test_global_boards_exact(server, client, catalog):  # noqa: F811
    srv, api = admin.start(server, **FLAGS)
    # Some tests insert bare orders with psql, which only a backfill puts in
    # the rollups: rebuild them, so that they are the orders table's again.
    psql("SELECT tipcast_stats_backfill(NULL, NULL)")
    adm = client(srv, unique("adm"), "admin")
    c1, c2 = unique("cr"), unique("cr")
    for cr in (c1, c2):
        live_creator(cr)
    g1, g2, g3 = unique("v"), unique("v"), unique("v")
    conns = {u: client(srv, u) for u in (g1, g2, g3)}
    wait_room_live(conns[g1], c1)
    wait_room_live(conns[g1], c2)
    # Large enough to be on the boards whatever else the shared database holds today.
    big = 10**11
    for u in (g1, g2, g3):
        credit(adm, u, big)
    orders = []

    def gift(u, room, gift, count):
        a = conns[u].request({"type": "gift", "id": unique("g"), "room": room, "gift": gift, "count": count})
        assert a["type"] == "ack", a
        orders.append(a["order"])
        return a

    def tip(u, room, amount):
        a = conns[u].request({"type": "tip", "id": unique("t"), "room": room, "amount": amount})
        assert a["type"] == "ack", a
        orders.append(a["order"])
        return a

    for _ in range(3):
        gift(g1, c1, ROCKET, 9999)        # 3 x 4,999,500
    gift(g2, c2, ROCKET, 9999)
    gift(g2, c1, ROSE, 7)
    tip(g3, c2, 1000000)
    tip(g3, c2, 1000000)
    victim = gift(g3, c2, ROCKET, 9000)["order"]  # 4,500,000, then refunded in part
    ids = ",".join(f"'{o}'" for o in orders)
    wait_for(lambda: psql(f"SELECT count(*) FROM orders WHERE order_id IN ({ids})") == str(len(orders)),
             what="the orders in PostgreSQL")
    rf = unique("rf")
    st, _, b = api.post(f"/api/v1/orders/{victim}/refund", admin.tok("finance"),
                        {"refund_id": rf, "amount": 4000000, "reason": "boards test"})
    assert st in (200, 201), (st, b)
    wait_for(lambda: psql(f"SELECT state FROM refunds WHERE id = '{rf}'") == "credited", what="the refund")

    now = datetime.now(timezone.utc)
    viewer = client(srv, unique("v"), subprotocol=SUBPROTOCOL_MSGPACK)
    for period in ("day", "week", "month"):
        want = expected(period, now)
        # Our creators and gifters are on it with their exact totals.
        cr = {e["user"]: e["total"] for e in want["creators"]}
        assert cr.get(c1) == 3 * 4999500 + 7 and cr.get(c2) == 4999500 + 2000000 + 500000, cr
        gf = {e["user"]: e["total"] for e in want["gifters"]}
        assert gf.get(g1) == 3 * 4999500 and gf.get(g2) == 4999500 + 7 and gf.get(g3) == 2500000, gf
        # The node's answer (cached up to 5 s) comes to equal it.
        deadline = time.monotonic() + 15
        while True:
            got = board(viewer, period)
            if all(got[k] == want[k] for k in want):
                break
            assert time.monotonic() < deadline, [(k, got[k], want[k]) for k in want if got[k] != want[k]]
            time.sleep(0.5)
        # The admin API, uncached: the same lists.
        st, _, a = api.get("/api/v1/boards", admin.tok("viewer"), query={"period": period})
        assert st == 200 and a["period"] == period, a
        assert [{"user": e["creator"], "total": e["coins"]} for e in a["creators"]] == want["creators"], a
        assert [{"user": e["user"], "total": e["coins"]} for e in a["gifters"]] == want["gifters"], a
        assert [{"gift": e["gift_id"], "name": e["name"] or "", "count": e["count"], "coins": e["coins"]}
                for e in a["gifts"]] == want["gifts"], a
        lo, hi = bounds(period, now)
        assert a["from"].startswith(lo.strftime("%Y-%m-%dT%H:%M:%S")), a
        assert a["to"].startswith(hi.strftime("%Y-%m-%dT%H:%M:%S")), a


def test_cache_and_bad_input(server, client):
    srv, api = admin.start(server, **FLAGS)
    c = client(srv, unique("v"))
    a = board(c, "day")
    b = c.request({"type": "global_board", "id": unique("gb")})  # day by default
    assert b["period"] == "day" and b["ts"] == a["ts"], (a, b)  # one read serves every reader for 5 s
    for bad in ("year", 5, ""):
        r = c.request({"type": "global_board", "id": unique("gb"), "period": bad})
        assert r["type"] == "error" and r["code"] == "bad_field" and r["field"] == "period", r
    st, _, e = api.get("/api/v1/boards", admin.tok("viewer"), query={"period": "year"})
    assert st == 400 and e["error"]["field"] == "period", e
    st, _, e = api.get("/api/v1/boards", admin.tok("viewer"), query={"top": "0"})
    assert st == 400 and e["error"]["field"] == "top", e
    st, _, e = api.get("/api/v1/boards", None)
    assert st == 401, e
