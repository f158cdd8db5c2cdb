"""The ledger's revenue split, recharges and refunds (003_ledger_split.sql).

Outbox entries are written here as gifts/lua/wallet_move.lua writes them
(XADD into tc:{w:N}:outbox of the shared Redis); a real tipcastd's ledger
group turns them into PostgreSQL rows and its rooms group into room events
and leaderboards. What is asserted is what an auditor sees in PostgreSQL.

Revenue rules are global and apply from their effective_at on, so each test
works in an era of its own: a year far in the future, picked at random and
free of rules, in which it puts its rule and dates its entries (the other
tests' orders, dated now, never meet these rules).
"""

import os
import random
from datetime import datetime, timedelta, timezone

import pytest

from conftest import REPO
from helpers import SHARDS, entry_fields, outbox, psql, shard_of, wait_for, xadd_entry
from resp import Redis
from wsclient import unique

FLAGS = dict(wallet_shards=SHARDS)


def rows(sql):
    return [r.split("|") for r in psql(sql).splitlines() if r]


def ms(dt):
    return int(dt.timestamp() * 1000)


def era():
    """The first instant of a UTC year with no revenue rule in it."""
    for _ in range(50):
        start = datetime(random.randint(2200, 9000), 1, 1, tzinfo=timezone.utc)
        end = start.replace(year=start.year + 1)
        if psql(f"SELECT count(*) FROM revenue_rules WHERE effective_at > '{start.isoformat()}'::timestamptz "
                f"- interval '1 year' AND effective_at < '{end.isoformat()}'") == "0":
            return start
    raise AssertionError("no free era for a revenue rule")


def add_rule(effective, agency_bp, tiers):
    """A revenue rule with its tiers [(min_volume, fee_bp)]; returns its id."""
    rid = psql(f"INSERT INTO revenue_rules (name, effective_at, agency_share_bp, created_by) VALUES "
               f"('{unique('rule')}', '{effective.isoformat()}', {agency_bp}, 'test') RETURNING id")
    values = ", ".join(f"({rid}, {v}, {bp})" for v, bp in tiers)
    psql(f"INSERT INTO revenue_rule_tiers (rule_id, min_volume, platform_fee_bp) VALUES {values}")
    return int(rid)


def add_creator(agency=None):
    creator = unique("c")
    if agency:
        psql(f"INSERT INTO agencies (id, name) VALUES ('{agency}', 'test agency') ON CONFLICT DO NOTHING")
        psql(f"INSERT INTO creators (id, agency_id) VALUES ('{creator}', '{agency}')")
    else:
        psql(f"INSERT INTO creators (id) VALUES ('{creator}')")
    return creator


class Outbox:
    def __init__(self):
        self.r = Redis()

    def close(self):
        self.r.close()

    def order(self, kind, user, room, amount, ts):
        fields = entry_fields(kind, user, amount, room=room, gift=7 if kind == "gift" else 0,
                              name="Rose" if kind == "gift" else "", price=amount, balance=100000, ts=ts)
        return xadd_entry(self.r, fields)

    def external(self, kind, user, amount, ref, room="", ots=None, ts=None):
        """A recharge or refund entry, fields as wallet_move.lua writes them."""
        fields = entry_fields(kind, user, amount, room=room, balance=amount, req=f"{kind}:{ref}", ts=ts,
                              role="admin")
        fields.append(("x", ref))
        if kind == "refund":
            fields.append(("ots", ots))
        return xadd_entry(self.r, fields)


@pytest.fixture
def ob():
    o = Outbox()
    yield o
    o.close()


def ledger_rows(movement):
    return {a: int(d) for a, d in rows(f"SELECT account, delta FROM ledger WHERE movement_id = '{movement}'")}


def balance(creator):
    got = rows(f"SELECT pending, available FROM creator_balances WHERE creator = '{creator}'")
    return tuple(int(x) for x in got[0]) if got else (0, 0)


# ---- tipcast_split ------------------------------------------------------------------


def test_split_property_and_exact_cases():
    """10,000 random amounts (up to 2^53 - 1, and small ones) under random
    rules (fee and agency basis points, with and without an agency): the
    three parts are never negative and always sum to the amount."""
    failures = psql("""
        WITH c AS (
            SELECT i,
                   CASE WHEN i % 4 = 0 THEN 1 + floor(random() * 100)::bigint
                        WHEN i % 4 = 1 THEN 9007199254740991 - floor(random() * 1000)::bigint
                        ELSE 1 + floor(random() * 9007199254740990)::bigint END AS amount,
                   f AS fee_bp,
                   floor(random() * (10001 - f))::int AS agency_bp,
                   random() < 0.5 AS has_agency
            FROM (SELECT i, CASE WHEN i % 50 = 0 THEN 10000 WHEN i % 50 = 1 THEN 0
                                 ELSE floor(random() * 10001)::int END AS f
                  FROM generate_series(1, 10000) i) g
        )
        SELECT count(*) FILTER (WHERE s.platform_fee + s.agency_share + s.creator_net <> c.amount
                                   OR s.platform_fee < 0 OR s.agency_share < 0 OR s.creator_net < 0
                                   OR (NOT c.has_agency AND s.agency_share <> 0)
                                   OR s.platform_fee <> floor(c.amount::numeric * c.fee_bp / 10000)),
               count(*)
        FROM c, tipcast_split(c.amount, c.fee_bp, c.agency_bp, c.has_agency) s""")
    assert failures == "0|10000"
    cases = [
        # amount, fee bp, agency bp, has agency -> fee, share, net
        ((1000, 3000, 1000, True), (300, 100, 600)),
        ((999, 3333, 1000, True), (332, 99, 568)),
        ((1, 5000, 5000, True), (0, 0, 1)),
        ((7, 3000, 1000, False), (2, 0, 5)),
        ((10, 10000, 0, True), (10, 0, 0)),
        ((9007199254740991, 10000, 0, True), (9007199254740991, 0, 0)),
        ((9007199254740991, 1, 1, True), (900719925474, 900719925474, 9005397814890043)),
        ((9007199254740991, 2500, 7500, True), (2251799813685247, 6755399441055743, 1)),
    ]
    for (amount, fee, agency, has), want in cases:
        got = psql(f"SELECT platform_fee, agency_share, creator_net FROM "
                   f"tipcast_split({amount}, {fee}, {agency}, {str(has).lower()})")
        assert tuple(int(x) for x in got.split("|")) == want, (amount, fee, agency, has)


# ---- orders -----------------------------------------------------------------------------


def test_gifts_carry_the_split_and_the_tier_changes_with_volume(server, ob):
    start = era()
    rule = add_rule(start, 1000, [(0, 3000), (1000, 2000)])
    agency = unique("ag")
    creator = add_creator(agency)
    solo = add_creator()
    sender = unique("u")
    server(**FLAGS)
    t0 = start + timedelta(days=3)
    # One sender: one shard, so the entries are applied in this order.
    oids = [ob.order("gift", sender, creator, 400, ms(t0 + timedelta(seconds=i))) for i in range(4)]
    oids.append(ob.order("tip", sender, creator, 7, ms(t0 + timedelta(seconds=10))))
    solo_oid = ob.order("tip", sender, solo, 1000, ms(t0 + timedelta(seconds=11)))
    # Before any rule (the API never makes one in the past): no fee, no
    # share, no rule.
    early = ob.order("tip", sender, solo, 50, ms(datetime(1971, 1, 1, tzinfo=timezone.utc)))
    every = oids + [solo_oid, early]
    ids = ",".join(f"'{o}'" for o in every)
    wait_for(lambda: psql(f"SELECT count(*) FROM orders WHERE order_id IN ({ids})") == str(len(every)),
             what="the orders in PostgreSQL")

    got = {r[0]: r[1:] for r in rows(
        f"SELECT order_id, coalesce(rule_id::text, 'NULL'), month_volume_before, platform_fee, "
        f"coalesce(agency_id, 'NULL'), agency_share, creator_net FROM orders WHERE order_id IN ({ids})")}
    r = str(rule)
    # Volume before: 0, 400, 800 (tier 0: 30 %), then 1200 and 1600 (tier 1000: 20 %).
    assert got[oids[0]] == [r, "0", "120", agency, "40", "240"]
    assert got[oids[1]] == [r, "400", "120", agency, "40", "240"]
    assert got[oids[2]] == [r, "800", "120", agency, "40", "240"]
    assert got[oids[3]] == [r, "1200", "80", agency, "40", "280"]
    assert got[oids[4]] == [r, "1600", "1", agency, "0", "6"]
    assert got[solo_oid] == [r, "0", "300", "NULL", "0", "700"]
    assert got[early] == ["NULL", "0", "0", "NULL", "0", "50"]

    # Every order's ledger rows sum to zero; agency and platform only when > 0.
    for o in oids[:4]:
        net = 240 if o != oids[3] else 280
        fee = 120 if o != oids[3] else 80
        assert ledger_rows(o) == {f"user:{sender}": -400, f"creator:{creator}": net, f"agency:{agency}": 40,
                                  "platform": fee}
    assert ledger_rows(oids[4]) == {f"user:{sender}": -7, f"creator:{creator}": 6, "platform": 1}
    assert ledger_rows(early) == {f"user:{sender}": -50, f"creator:{solo}": 50}
    bad = rows(f"SELECT movement_id FROM ledger WHERE movement_id IN ({ids}) GROUP BY movement_id "
               "HAVING sum(delta) <> 0")
    assert bad == []

    # Balances, volumes and earnings follow the new orders.
    net_sum = int(psql(f"SELECT sum(creator_net) FROM orders WHERE creator = '{creator}'"))
    assert net_sum == 3 * 240 + 280 + 6
    assert balance(creator) == (net_sum, 0)
    assert balance(solo) == (750, 0)
    month = t0.strftime("%Y-%m-01")
    assert psql(f"SELECT volume FROM creator_month_volume WHERE creator = '{creator}' AND month = '{month}'") \
        == "1607"
    assert psql(f"SELECT total, orders FROM creator_earnings WHERE creator = '{creator}'") == "1607|5"

    # A batch replayed (the same orders staged again) moves nothing; with
    # webhooks on, a new order queues its order.succeeded webhook once.
    fresh = f"9-{unique('')}-0"
    replay = f"""
        BEGIN;
        SELECT tipcast_ledger_staging();
        INSERT INTO ledger_in_orders SELECT order_id, kind, sender, room, creator, gift_id, gift_name, count,
            unit_price, amount, combo, message, request_id, sender_balance, created_at
            FROM orders WHERE order_id IN ({ids});
        INSERT INTO ledger_in_orders VALUES ('{fresh}', 'tip', '{sender}', '{creator}', '{creator}', NULL, NULL,
            1, 100, 100, NULL, NULL, 'q', 0, '{(t0 + timedelta(seconds=20)).isoformat()}');
        SELECT new_orders FROM tipcast_ledger_apply(true);
        COMMIT;"""
    assert psql(replay).splitlines()[-1] == "1"
    assert psql(replay).splitlines()[-1] == "0"
    assert balance(creator) == (net_sum + 70, 0)
    assert psql(f"SELECT total, orders FROM creator_earnings WHERE creator = '{creator}'") == "1707|6"
    assert ledger_rows(fresh) == {f"user:{sender}": -100, f"creator:{creator}": 70, f"agency:{agency}": 10,
                                  "platform": 20}
    hook = rows(f"SELECT event, payload->'data'->>'order_id', payload->'data'->>'creator_net', "
                f"payload->'data'->>'amount' FROM webhook_outbox WHERE idempotency_key = 'order.succeeded:{fresh}'")
    assert hook == [["order.succeeded", fresh, "70", "100"]]
    # Without webhooks (tipcastd's default), none.
    assert psql(f"SELECT count(*) FROM webhook_outbox WHERE idempotency_key IN "
                f"(SELECT 'order.succeeded:' || order_id FROM orders WHERE order_id IN ({ids}))") == "0"


# ---- recharges ---------------------------------------------------------------------------


def add_recharge(user, coins, state="paid"):
    rid = unique("rc_")
    psql(f"INSERT INTO recharges (id, user_id, request_id, currency, amount_minor, coins, state, created_by, "
         f"paid_at) VALUES ('{rid}', '{user}', '{unique('q')}', 'USD', 499, {coins}, '{state}', 'test', now())")
    return rid


def test_recharge_credits_once(server, ob):
    server(**FLAGS)
    user = unique("u")
    rid = add_recharge(user, 500)
    first = ob.external("recharge", user, 500, rid)
    wait_for(lambda: psql(f"SELECT state FROM recharges WHERE id = '{rid}'") == "credited",
             what="the recharge credited")
    assert ledger_rows(f"recharge:{rid}") == {f"user:{user}": 500, "platform": -500}
    assert psql(f"SELECT credited_at IS NOT NULL FROM recharges WHERE id = '{rid}'") == "t"
    assert psql(f"SELECT DISTINCT kind || ' ' || note FROM ledger WHERE movement_id = 'recharge:{rid}'") \
        == f"recharge {first}"

    # The same recharge driven again (another entry, same x): nothing moves
    # in PostgreSQL, and the second credit in Redis is an alert.
    ob.external("recharge", user, 500, rid)
    marker = ob.external("recharge", user, 1, add_recharge(user, 1))
    wait_for(lambda: psql(f"SELECT count(*) FROM ledger WHERE note = '{marker}'") == "2",
             what="a later entry applied")
    assert ledger_rows(f"recharge:{rid}") == {f"user:{user}": 500, "platform": -500}
    assert psql(f"SELECT count(*) FROM alerts WHERE kind = 'ledger.external_twice' AND subject = '{rid}'") == "1"

    # A recharge that is not paid (or unknown) is still credited in the
    # ledger (the wallet was) and raises an alert; its state is left alone.
    pending = add_recharge(user, 30, state="pending")
    ob.external("recharge", user, 30, pending)
    wait_for(lambda: ledger_rows(f"recharge:{pending}") == {f"user:{user}": 30, "platform": -30},
             what="the unpaid recharge's rows")
    assert psql(f"SELECT state FROM recharges WHERE id = '{pending}'") == "pending"
    assert psql(f"SELECT count(*) FROM alerts WHERE kind = 'ledger.recharge_mismatch' AND subject = '{pending}'") \
        == "1"


# ---- refunds -----------------------------------------------------------------------------


def board_keys(room, t):
    base = f"tc:{{r:{room}}}:board"
    monday = t - timedelta(days=t.weekday())
    return [f"{base}:all", f"{base}:d:{t:%Y%m%d}", f"{base}:w:{monday:%Y%m%d}", f"{base}:m:{t:%Y%m}"]


def add_refund(order_id, amount, fee, share, net, settled=False):
    fid = unique("rf_")
    psql(f"INSERT INTO refunds (id, order_id, amount, reason, user_id, creator, room, order_created_at, "
         f"platform_fee, agency_id, agency_share, creator_net, settled, actor) "
         f"SELECT '{fid}', order_id, {amount}, 'test', sender, creator, room, created_at, {fee}, agency_id, "
         f"{share}, {net}, {str(settled).lower()}, 'test' FROM orders WHERE order_id = '{order_id}'")
    return fid


def test_refunds_reverse_the_split_once_and_lower_the_boards(server, ob):
    start = era()
    add_rule(start, 1000, [(0, 3000)])
    agency = unique("ag")
    creator = add_creator(agency)
    sender, other = unique("u"), unique("u")
    server(**FLAGS)
    t = start + timedelta(days=40, hours=5)
    oid = ob.order("gift", sender, creator, 400, ms(t))
    oid2 = ob.order("gift", other, creator, 100, ms(t))
    wait_for(lambda: psql(f"SELECT count(*) FROM orders WHERE order_id IN ('{oid}', '{oid2}')") == "2",
             what="the orders")
    keys = board_keys(creator, t)
    r = Redis()
    try:
        wait_for(lambda: all(r("ZSCORE", k, sender) == "400" for k in keys), what="the boards")
        pending0, _ = balance(creator)
        assert pending0 == 240 + 60

        # A partial refund of an unsettled order: pending lowered.
        f1 = add_refund(oid, 100, 30, 10, 60)
        e1 = ob.external("refund", sender, 100, f1, room=creator, ots=ms(t))
        wait_for(lambda: psql(f"SELECT state FROM refunds WHERE id = '{f1}'") == "credited",
                 what="the refund credited")
        assert ledger_rows(f"refund:{f1}") == {f"user:{sender}": 100, f"creator:{creator}": -60,
                                                f"agency:{agency}": -10, "platform": -30}
        assert balance(creator) == (pending0 - 60, 0)
        wait_for(lambda: all(r("ZSCORE", k, sender) == "300" for k in keys), what="the boards lowered")

        # Driven again (same x, another entry): nothing more, anywhere.
        ob.external("refund", sender, 100, f1, room=creator, ots=ms(t))
        # The rest, as if its order were settled: available lowered.
        f2 = add_refund(oid, 300, 90, 30, 180, settled=True)
        ob.external("refund", sender, 300, f2, room=creator, ots=ms(t))
        wait_for(lambda: psql(f"SELECT state FROM refunds WHERE id = '{f2}'") == "credited",
                 what="the second refund credited")
        assert ledger_rows(f"refund:{f1}") == {f"user:{sender}": 100, f"creator:{creator}": -60,
                                                f"agency:{agency}": -10, "platform": -30}
        assert balance(creator) == (pending0 - 60, -180)
        assert psql(f"SELECT count(*) FROM alerts WHERE kind = 'ledger.external_twice' AND subject = '{f1}'") \
            == "1"
        assert psql(f"SELECT note FROM ledger WHERE movement_id = 'refund:{f1}' AND account = 'user:{sender}'") \
            == e1
        # Refunded in full: the sender is off the order's boards; the
        # other sender is untouched.
        wait_for(lambda: all(r("ZSCORE", k, sender) is None for k in keys), what="the sender off the boards")
        assert all(r("ZSCORE", k, other) == "100" for k in keys)
        # Every movement sums to zero.
        assert rows(f"SELECT movement_id FROM ledger WHERE movement_id IN ('refund:{f1}', 'refund:{f2}', "
                    f"'{oid}', '{oid2}') GROUP BY movement_id HAVING sum(delta) <> 0") == []
    finally:
        r.close()

    # A refund entry with no refunds row cannot be split: set aside.
    ghost = unique("rf_")
    gid = ob.external("refund", sender, 5, ghost, room=creator, ots=ms(t))
    wait_for(lambda: psql(f"SELECT reason FROM outbox_rejects WHERE order_id = '{gid}'") == f"refund {ghost} unknown",
             what="the unknown refund set aside")
    assert ledger_rows(f"refund:{ghost}") == {}
    psql(f"DELETE FROM outbox_rejects WHERE order_id = '{gid}'")  # not an incident of another test


def test_malformed_external_entries_are_rejected(server, ob):
    server(**FLAGS)
    user = unique("u")
    no_ref = entry_fields("recharge", user, 5, balance=5)
    no_ots = entry_fields("refund", user, 5, room=unique("c"), balance=5) + [("x", unique("rf"))]
    bad_ots = entry_fields("refund", user, 5, room=unique("c"), balance=5) + [("x", unique("rf")),
                                                                                ("ots", "soon")]
    no_room = entry_fields("refund", user, 5, balance=5) + [("x", unique("rf")), ("ots", "1")]
    want = {}
    for fields, reason in ((no_ref, "field x missing"), (no_ots, "field ots missing"),
                           (bad_ots, "order time is not an integer (0 to the end of year 9999)"),
                           (no_room, "field r missing")):
        want[xadd_entry(ob.r, fields)] = reason
    ids = ",".join(f"'{o}'" for o in want)
    wait_for(lambda: psql(f"SELECT count(*) FROM outbox_rejects WHERE order_id IN ({ids})") == str(len(want)),
             what="the rejects")
    got = dict(rows(f"SELECT order_id, reason FROM outbox_rejects WHERE order_id IN ({ids})"))
    assert got == want
    psql(f"DELETE FROM outbox_rejects WHERE order_id IN ({ids})")


# ---- the wallet script -----------------------------------------------------------------------


def test_wallet_script_recharge_and_refund():
    """wallet_move.lua as wallet_external calls it: a credit with x (and ots
    for a refund), kept under recharge:<id> / refund:<id> for the long TTL;
    the same id again answers the first result and moves nothing."""
    with open(os.path.join(REPO, "gifts", "lua", "wallet_move.lua")) as f:
        src = f.read()
    r = Redis()
    try:
        user, ref = unique("u"), unique("rf")
        shard = shard_of(user)
        bal, idem = f"tc:{{w:{shard}}}:bal:{user}", f"tc:{{w:{shard}}}:idem:{user}:refund:{ref}"
        risk = f"tc:{{w:{shard}}}:risk:{user}"
        ttl_ms = 720 * 3600 * 1000

        def call(amount, fp="fp1"):
            return r("EVAL", src, 4, bal, idem, outbox(shard), risk, "refund", user, "room1", 0, "", "", 1, amount,
                     amount, "", "", f"refund:{ref}", 1700000000000, fp, ttl_ms, 1, "admin", ref, 1690000000000,
                     "", "", 0, 0, 0)

        before = r("XLEN", outbox(shard))
        got = call(40)
        assert got[0] == "ok" and got[2] == 40 and got[3] == 0
        assert r("XLEN", outbox(shard)) == before + 1  # no backlog bound (the bound given is 1)
        entry = r("XRANGE", outbox(shard), got[1], got[1])[0][1]
        fields = dict(zip(entry[0::2], entry[1::2]))
        assert (fields["k"], fields["a"], fields["x"], fields["ots"], fields["r"], fields["q"]) == \
            ("refund", "40", ref, "1690000000000", "room1", f"refund:{ref}")
        assert r("PTTL", idem) > ttl_ms - 60000
        again = call(40)
        assert again[:3] == got[:3] and again[3] == 1
        assert r("GET", bal) == "40" and r("XLEN", outbox(shard)) == before + 1
        assert call(41, fp="fp2")[:2] == ["err", "idempotency_conflict"]
        # An entry with x and ots is XDELed: nobody else should apply it.
        r("XDEL", outbox(shard), got[1])
        # A credit keeps the wallet's first credit time (risk control's account age).
        assert r("HGET", risk, "first") == "1700000000000"
        r("DEL", bal, idem, risk)
    finally:
        r.close()
