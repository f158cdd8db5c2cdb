"""Stats (storage/migrations/009_stats.sql, docs/settlement.md "Stats"): the
rollups the ledger keeps, the backfill that rebuilds them, and the routes
GET /api/v1/stats/platform and GET /api/v1/creators/{id}/stats.

Gifts and tips are outbox entries written as the wallet script writes them
(as in test_ledger_split); a real tipcastd's ledger consumer turns them into
orders, ledger rows and rollups; a refund goes through the admin API and its
wallet credit through the same consumer. Every figure the API answers is
compared with a sum over orders and ledger computed here in SQL. The
entries are dated in a year far in the future picked at random, so that the
periods compared hold this test's orders only.
"""

import random
from datetime import datetime, timedelta, timezone

import pytest

import admin
from helpers import SHARDS, entry_fields, psql, wait_for, xadd_entry
from resp import Redis
from wsclient import unique

FLAGS = dict(wallet_shards=SHARDS)


def rows(sql):
    return [r.split("|") for r in psql(sql).splitlines() if r]


def ms(dt):
    return int(dt.timestamp() * 1000)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def era():
    """The first instant of a UTC year with no revenue rule and no order."""
    for _ in range(50):
        start = datetime(random.randint(2200, 9000), 1, 1, tzinfo=timezone.utc)
        lo, hi = start.replace(year=start.year - 1).isoformat(), start.replace(year=start.year + 1).isoformat()
        if psql(f"SELECT count(*) FROM revenue_rules WHERE effective_at > '{lo}' AND effective_at < '{hi}'") == "0" \
                and psql(f"SELECT count(*) FROM orders WHERE created_at >= '{lo}' AND created_at < '{hi}'") == "0" \
                and psql(f"SELECT count(*) FROM stats_platform WHERE period >= '{lo}' AND period < '{hi}'") == "0":
            return start
    raise AssertionError("no free era")


def wired():
    """True when tipcast_ledger_apply calls tipcast_ledger_stats (migration 006)."""
    return psql("SELECT coalesce(bool_or(prosrc LIKE '%tipcast_ledger_stats%'), false) FROM pg_proc "
                "WHERE proname = 'tipcast_ledger_apply'") == "t"


# ---- the rollup function by itself ---------------------------------------------------------


def test_rollups_of_a_batch_by_the_function_alone(server):
    """The temporary tables of the shared interface filled by hand, then
    tipcast_ledger_stats(): the rollups per hour, day and month, the active
    creators counted once per period, refunds in their own hour, recharges
    outside the fees."""
    server(**FLAGS).stop()  # the schema at this build's version
    t = era() + timedelta(days=40, hours=10)  # 10 Feb, 10:00
    c1, c2, u1, u2, u9 = unique("c"), unique("c"), unique("u"), unique("u"), unique("u")
    ts = lambda d: (t + d).isoformat()  # noqa: E731
    psql(f"""
        CREATE TEMP TABLE ledger_new (order_id text, kind text, sender text, room text, creator text,
            amount bigint, created_at timestamptz, platform_fee bigint, agency_id text, agency_share bigint,
            creator_net bigint, gift_id int, count int);
        CREATE TEMP TABLE ledger_out (movement_id text, account text, delta bigint, kind text, note text,
            created_at timestamptz, entry text, chain int);
        INSERT INTO ledger_new VALUES
            ('{unique("o")}', 'gift', '{u1}', '{c1}', '{c1}', 100, '{ts(timedelta(minutes=5))}', 30, NULL, 0, 70, 9747, 2),
            ('{unique("o")}', 'tip', '{u2}', '{c1}', '{c1}', 50, '{ts(timedelta(minutes=55))}', 15, NULL, 0, 35, NULL, 1),
            ('{unique("o")}', 'gift', '{u1}', '{c2}', '{c2}', 40, '{ts(timedelta(minutes=65))}', 12, 'a', 4, 24, 9748, 1);
        INSERT INTO ledger_out VALUES
            ('refund:{unique("rf")}', 'user:{u1}', 50, 'refund', 'e', '{ts(timedelta(hours=2))}', 'e', 0),
            ('refund:x', 'creator:{c1}', -35, 'refund', 'e', '{ts(timedelta(hours=2))}', 'e', 0),
            ('refund:x', 'platform', -15, 'refund', 'e', '{ts(timedelta(hours=2))}', 'e', 0),
            ('recharge:{unique("rc")}', 'user:{u9}', 1000, 'recharge', 'e', '{ts(timedelta(hours=2))}', 'e', 0),
            ('recharge:y', 'platform', -1000, 'recharge', 'e', '{ts(timedelta(hours=2))}', 'e', 0);
        UPDATE ledger_out SET movement_id = 'refund:x' WHERE kind = 'refund';
        UPDATE ledger_out SET movement_id = 'recharge:y' WHERE kind = 'recharge';
        SELECT tipcast_ledger_stats();
        SELECT tipcast_ledger_stats();  -- a second batch in the same transaction: the same rows again
    """)
    cols = "gross, fees, agency, creator_net, refunds, recharges, gifts, orders, active_creators"
    got = {(g, p): [int(x) for x in rest] for g, p, *rest in rows(
        f"SELECT grain, to_char(period AT TIME ZONE 'UTC', 'MM-DD HH24'), {cols} FROM stats_platform "
        f"WHERE period >= '{(t - timedelta(days=40)).isoformat()}' AND period < '{(t + timedelta(days=300)).isoformat()}'")}
    assert got == {
        ("h", "02-10 10"): [300, 90, 0, 210, 0, 0, 4, 4, 1],
        ("h", "02-10 11"): [80, 24, 8, 48, 0, 0, 2, 2, 1],
        ("h", "02-10 12"): [0, -30, 0, -70, 100, 2000, 0, 0, 0],
        ("d", "02-10 00"): [380, 84, 8, 188, 100, 2000, 6, 6, 2],
        ("m", "02-01 00"): [380, 84, 8, 188, 100, 2000, 6, 6, 2],
    }, got
    got = {(c, g, p): [int(x) for x in rest] for c, g, p, *rest in rows(
        f"SELECT creator, grain, to_char(period AT TIME ZONE 'UTC', 'MM-DD HH24'), gross, net, orders, refunds "
        f"FROM stats_creator WHERE creator IN ('{c1}', '{c2}')")}
    assert got == {
        (c1, "h", "02-10 10"): [300, 210, 4, 0], (c1, "h", "02-10 12"): [0, -70, 0, 100],
        (c1, "d", "02-10 00"): [300, 140, 4, 100], (c1, "m", "02-01 00"): [300, 140, 4, 100],
        (c2, "h", "02-10 11"): [80, 48, 2, 0], (c2, "d", "02-10 00"): [80, 48, 2, 0],
        (c2, "m", "02-01 00"): [80, 48, 2, 0],
    }, got
    sup = {(c, s): [int(x) for x in rest] for c, s, *rest in rows(
        f"SELECT creator, supporter, coins, refunded, orders FROM stats_supporter WHERE creator IN ('{c1}', '{c2}')")}
    assert sup == {(c1, u1): [200, 100, 2], (c1, u2): [100, 0, 2], (c2, u1): [80, 0, 2]}, sup
    gifts = rows(f"SELECT creator, gift_id, count, coins FROM stats_creator_gift WHERE creator IN ('{c1}', '{c2}')")
    assert sorted(gifts) == sorted([[c1, "9747", "4", "200"], [c2, "9748", "2", "80"]]), gifts


# ---- the routes: ranges and roles ------------------------------------------------------------


def test_ranges_and_roles(server):
    srv, api = admin.start(server, **FLAGS)
    creator, other = unique("c"), unique("c")
    fin = admin.tok("finance")
    st, _, b = api.get("/api/v1/stats/platform", fin)
    assert st == 200 and b["granularity"] == "day" and len(b["items"]) == 30, b
    st, _, b = api.get("/api/v1/stats/platform", fin, query={"granularity": "hour", "from": "2026-01-01",
                                                             "to": "2026-02-01T00:00:00Z"})
    assert st == 200 and len(b["items"]) == 744 and b["from"].startswith("2026-01-01T00:00:00"), b["from"]
    assert b["items"][-1]["period"] == "2026-01-31T23:00:00Z"
    st, _, b = api.get("/api/v1/stats/platform", fin, query={"granularity": "month", "from": "2016-01-15",
                                                             "to": "2026-01-01"})
    assert st == 200 and len(b["items"]) == 120 and b["items"][0]["period"] == "2016-01-01T00:00:00Z", b["from"]
    for q, field in (({"granularity": "hour", "from": "2026-01-01", "to": "2026-02-01T01:00:00Z"}, "from"),
                     ({"granularity": "day", "from": "2025-01-01", "to": "2026-01-03"}, "from"),
                     ({"granularity": "month", "from": "2015-12-31", "to": "2026-01-01"}, "from"),
                     ({"from": "2026-01-02", "to": "2026-01-01"}, "from"),
                     ({"granularity": "week"}, "granularity"),
                     ({"from": "yesterday"}, "from"),
                     ({"top": "0"}, "top")):
        st, _, b = api.get("/api/v1/stats/platform", fin, query=q)
        assert st == 400 and b["error"]["code"] == "bad_field" and b["error"]["field"] == field, (q, b)
    for role in ("admin", "operations", "auditor"):
        assert api.get("/api/v1/stats/platform", admin.tok(role))[0] == 200, role
    for role in ("support", "creator", "viewer"):
        st, _, b = api.get("/api/v1/stats/platform", admin.tok(role))
        assert st == 403 and b["error"]["code"] == "forbidden", (role, b)

    own = admin.tok("creator", creator)
    st, _, b = api.get(f"/api/v1/creators/{creator}/stats", own, query={"granularity": "month"})
    assert st == 200 and b["creator"] == creator and len(b["items"]) == 12, b
    assert b["top_supporters"] == [] and b["gifts"] == [] and all(i["gross"] == 0 for i in b["items"]), b
    st, _, b = api.get(f"/api/v1/creators/{creator}/stats", admin.tok("creator", other))
    assert st == 403 and b["error"]["code"] == "forbidden", b
    st, _, b = api.get(f"/api/v1/creators/{creator}/stats", admin.tok("viewer", creator))
    assert st == 403, b
    for role in ("admin", "finance", "operations", "support", "auditor"):
        assert api.get(f"/api/v1/creators/{creator}/stats", admin.tok(role))[0] == 200, role


# ---- live: the ledger consumer keeps them, the API reads them, the backfill agrees ----------


PLATFORM_SQL = """
WITH p AS (SELECT generate_series('{a}'::timestamptz, '{b}'::timestamptz - interval '1 {g}', interval '1 {g}') AS p)
SELECT to_char(p.p AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
  coalesce((SELECT sum(amount) FROM orders WHERE created_at >= p.p AND created_at < p.p + interval '1 {g}'), 0),
  coalesce((SELECT sum(delta) FROM ledger WHERE account = 'platform' AND kind IN ('gift', 'tip', 'refund')
            AND created_at >= p.p AND created_at < p.p + interval '1 {g}'), 0),
  coalesce((SELECT sum(delta) FROM ledger WHERE account LIKE 'agency:%' AND kind IN ('gift', 'tip', 'refund')
            AND created_at >= p.p AND created_at < p.p + interval '1 {g}'), 0),
  coalesce((SELECT sum(delta) FROM ledger WHERE account LIKE 'creator:%' AND kind IN ('gift', 'tip', 'refund')
            AND created_at >= p.p AND created_at < p.p + interval '1 {g}'), 0),
  coalesce((SELECT sum(delta) FROM ledger WHERE account LIKE 'user:%' AND kind = 'refund'
            AND created_at >= p.p AND created_at < p.p + interval '1 {g}'), 0),
  coalesce((SELECT sum(delta) FROM ledger WHERE account LIKE 'user:%' AND kind = 'recharge'
            AND created_at >= p.p AND created_at < p.p + interval '1 {g}'), 0),
  coalesce((SELECT sum(count) FROM orders WHERE kind = 'gift' AND created_at >= p.p
            AND created_at < p.p + interval '1 {g}'), 0),
  (SELECT count(*) FROM orders WHERE created_at >= p.p AND created_at < p.p + interval '1 {g}'),
  (SELECT count(DISTINCT creator) FROM orders WHERE created_at >= p.p AND created_at < p.p + interval '1 {g}')
FROM p ORDER BY p.p
"""
PLATFORM_KEYS = ["period", "gross", "fees", "agency", "creator_net", "refunds", "recharges", "gifts", "orders",
                 "active_creators"]


def snapshot(creators, lo, hi):
    """The rollup rows of these creators, and the platform and gift rows of [lo, hi)."""
    names = ", ".join(f"'{c}'" for c in creators)
    return (rows(f"SELECT * FROM stats_creator WHERE creator IN ({names}) ORDER BY 1, 2, 3"),
            rows(f"SELECT * FROM stats_platform WHERE period >= '{lo}' AND period < '{hi}' ORDER BY 1, 2"),
            rows(f"SELECT * FROM stats_gift WHERE period >= '{lo}' AND period < '{hi}' ORDER BY 1, 2, 3"),
            rows(f"SELECT * FROM stats_supporter WHERE creator IN ({names}) ORDER BY 1, 2"),
            rows(f"SELECT * FROM stats_creator_gift WHERE creator IN ({names}) ORDER BY 1, 2"))


def test_live_rollups_match_sql_and_the_backfill(server):
    server(**FLAGS).stop()  # the schema at this build's version
    if not wired():
        pytest.skip("tipcast_ledger_apply does not call tipcast_ledger_stats yet (migration 006)")
    start = era()
    psql("INSERT INTO gifts (id, name, price, animation) VALUES (9747, 'StatsRose', 10, 'rose'), "
         "(9748, 'StatsStar', 70, 'star') ON CONFLICT (id) DO NOTHING")
    rid = psql(f"INSERT INTO revenue_rules (name, effective_at, agency_share_bp, created_by) VALUES "
               f"('{unique('rule')}', '{start.isoformat()}', 1000, 'test') RETURNING id")
    psql(f"INSERT INTO revenue_rule_tiers (rule_id, min_volume, platform_fee_bp) VALUES ({rid}, 0, 3000)")
    agency = unique("ag")
    psql(f"INSERT INTO agencies (id, name) VALUES ('{agency}', 'stats')")
    ca, cb = unique("c"), unique("c")
    psql(f"INSERT INTO creators (id, agency_id) VALUES ('{ca}', '{agency}'), ('{cb}', NULL)")
    users = [unique("u") for _ in range(4)]
    srv, api = admin.start(server, **FLAGS)
    r = Redis()
    t0 = start + timedelta(days=31 + 9, hours=20)  # 10 Feb, 20:00: the orders cross midnight
    oids = []
    rnd = random.Random(7)
    for i in range(40):
        at = t0 + timedelta(minutes=7 * i)
        creator = ca if i % 3 else cb
        user = users[i % 4]
        if i % 5 == 4:
            amount = rnd.randint(1, 500)
            fields = entry_fields("tip", user, amount, room=creator, balance=100000, ts=ms(at))
        else:
            gift, price = (9747, 10) if i % 2 else (9748, 70)
            count = rnd.randint(1, 5)
            fields = entry_fields("gift", user, price * count, room=creator, gift=gift, name="g", count=count,
                                  price=price, balance=100000, ts=ms(at))
        oids.append(xadd_entry(r, fields))
    r.close()
    ids = ",".join(f"'{o}'" for o in oids)
    wait_for(lambda: psql(f"SELECT count(*) FROM orders WHERE order_id IN ({ids})") == str(len(oids)),
             what="the orders in PostgreSQL")
    # A refund of part of one of ca's orders, credited now (not in the era).
    victim = oids[1]
    rf = unique("rf")
    st, _, b = api.post(f"/api/v1/orders/{victim}/refund", admin.tok("finance"),
                        {"refund_id": rf, "amount": 7, "reason": "stats test"})
    assert st == 201, b
    wait_for(lambda: psql(f"SELECT state FROM refunds WHERE id = '{rf}'") == "credited", what="the refund credited")

    fin = admin.tok("finance")
    day = start + timedelta(days=40)  # 10 Feb
    for g, q in (("hour", {"granularity": "hour", "from": iso(day), "to": iso(day + timedelta(days=2))}),
                 ("day", {"granularity": "day", "from": iso(day), "to": iso(day + timedelta(days=2))}),
                 ("month", {"granularity": "month", "from": iso(start), "to": iso(start.replace(month=4))})):
        st, _, b = api.get("/api/v1/stats/platform", fin, query=q)
        assert st == 200, b
        want = [dict(zip(PLATFORM_KEYS, [x[0]] + [int(v) for v in x[1:]]))
                for x in rows(PLATFORM_SQL.format(a=b["from"], b=b["to"], g=g))]
        assert b["items"] == want, g
        assert sum(i["orders"] for i in b["items"]) == 40
        hot = rows("SELECT gift_id, sum(count), sum(amount) FROM orders WHERE kind = 'gift' AND "
                   f"order_id IN ({ids}) GROUP BY 1 ORDER BY 2 DESC, 3 DESC, 1")
        assert [[str(h["gift_id"]), str(h["count"]), str(h["coins"])] for h in b["hot_gifts"]] == hot, g

    # The creator's own view: the era per day, and the refund in the hour it was credited.
    own = admin.tok("creator", ca)
    st, _, b = api.get(f"/api/v1/creators/{ca}/stats", own,
                       query={"granularity": "day", "from": iso(day), "to": iso(day + timedelta(days=2))})
    assert st == 200, b
    want = rows(f"""SELECT sum(amount), sum(creator_net), count(*) FROM orders WHERE creator = '{ca}'
                    GROUP BY (created_at AT TIME ZONE 'UTC')::date ORDER BY 1""")
    got = sorted([str(i["gross"]), str(i["net"]), str(i["orders"])] for i in b["items"] if i["orders"])
    assert got == sorted(want), (got, want)
    st, _, b = api.get(f"/api/v1/creators/{ca}/stats", own, query={"granularity": "hour"})
    refunded = rows(f"SELECT sum(delta) FILTER (WHERE account LIKE 'user:%'), sum(delta) FILTER (WHERE account = "
                    f"'creator:{ca}') FROM ledger WHERE movement_id = 'refund:{rf}'")[0]
    assert sum(i["refunds"] for i in b["items"]) == int(refunded[0]) == 7
    assert sum(i["net"] for i in b["items"]) == int(refunded[1])
    sup = rows(f"""SELECT o.sender, sum(o.amount), coalesce((SELECT sum(l.delta) FROM ledger l JOIN refunds f
                       ON l.movement_id = 'refund:' || f.id AND l.account = 'user:' || f.user_id
                       WHERE f.creator = '{ca}' AND f.user_id = o.sender), 0), count(*)
                   FROM orders o WHERE o.creator = '{ca}' GROUP BY o.sender""")
    want = sorted(([s, int(c), int(rf_), int(c) - int(rf_), int(n)] for s, c, rf_, n in sup),
                  key=lambda x: (-x[3], x[0]))
    assert [[s["user"], s["coins"], s["refunded"], s["net"], s["orders"]] for s in b["top_supporters"]] == want
    gifts = rows(f"SELECT gift_id, sum(count), sum(amount) FROM orders WHERE creator = '{ca}' AND kind = 'gift' "
                 "GROUP BY 1 ORDER BY 2 DESC, 3 DESC, 1")
    assert [[str(x["gift_id"]), str(x["count"]), str(x["coins"])] for x in b["gifts"]] == gifts
    st, _, b = api.get(f"/api/v1/creators/{ca}/stats", admin.tok("creator", cb))
    assert st == 403 and b["error"]["code"] == "forbidden", b

    # The backfill of everything gives the same rows as the live maintenance.
    lo, hi = start.isoformat(), start.replace(year=start.year + 1).isoformat()
    before = snapshot([ca, cb], lo, hi)
    assert before[0] and before[3]
    psql("SELECT tipcast_stats_backfill(NULL, NULL)")
    assert snapshot([ca, cb], lo, hi) == before
    psql(f"SELECT tipcast_stats_backfill('{lo}', '{hi}')")  # a range: the same again
    assert snapshot([ca, cb], lo, hi) == before
