"""Promotions (issue 14): gift coupons and the new-user bonus, end to end
with a real tipcastd, Redis and PostgreSQL (docs/protocol.md "Coupons",
docs/admin-api.md "Promotions").

What is asserted is what the client and an auditor see: the acks and
errors on the wire, the wallet's balance to the coin, the outbox entries,
and the ledger rows in PostgreSQL (the platform pays the discount and the
bonus; every movement sums to zero)."""

import time

import admin
from conftest import mint_token
from helpers import SHARDS, psql, wait_for, wait_room_live
from test_money import balance, catalog, credit, live_creator, outbox_entries  # noqa: F401
from wsclient import unique

ROSE, ROCKET = 9101, 9103
FLAGS = dict(wallet_shards=SHARDS, max_msgs_per_s=10000, max_burst=10000)


def ledger_rows(movement_ids):
    ids = ",".join(f"'{m}'" for m in movement_ids)
    return sorted(tuple(r.split("|")) for r in psql(
        f"SELECT movement_id, account, delta, kind, coalesce(note, '') FROM ledger WHERE movement_id IN ({ids})"
    ).splitlines())


def user_ledger(uid):
    return int(psql(f"SELECT coalesce(sum(delta), 0) FROM ledger WHERE account = 'user:{uid}'"))


def coupon(api, staff, user, gift, discount, **extra):
    body = dict(user=user, gift_id=gift, discount=discount, **extra)
    st, _, c = api.post("/api/v1/coupons", staff, body)
    assert st == 201, (st, c)
    return c


def viewer_in_live_room(server, client, coins):
    """A node with the admin API, a live creator's room and a viewer's
    connection to it credited with `coins`: (srv, api, adm, creator, viewer, c)."""
    srv, api = admin.start(server, **FLAGS)
    creator, viewer = unique("cr"), unique("v")
    live_creator(creator)
    adm = client(srv, unique("adm"), "admin")
    c = client(srv, viewer)
    wait_room_live(c, creator)
    credit(adm, viewer, coins)
    return srv, api, adm, creator, viewer, c


def test_coupon_gift_once_platform_pays(server, client, catalog):  # noqa: F811
    srv, api, adm, creator, viewer, c = viewer_in_live_room(server, client, 1000)
    staff = admin.tok("operations")
    other = unique("v")
    o = client(srv, other)
    credit(adm, other, 1000)

    cp = coupon(api, staff, viewer, ROCKET, 200, code=unique("cp"))
    assert cp["used"] is False and cp["discount"] == 200 and cp["user"] == viewer, cp
    # Bad input at the API: no coupon made.
    for body, field in [(dict(user=viewer, gift_id=ROCKET, discount=0), "discount"),
                        (dict(user=viewer, gift_id=424242, discount=5), "gift_id"),
                        (dict(user="bad id", gift_id=ROCKET, discount=5), "user"),
                        (dict(user=viewer, gift_id=ROCKET, discount=5, expires_at="2001-01-01T00:00:00Z"),
                         "expires_at")]:
        st, _, err = api.post("/api/v1/coupons", staff, body)
        assert st == 400 and err["error"]["field"] == field, (body, st, err)
    st, _, err = api.post("/api/v1/coupons", staff, dict(user=viewer, gift_id=ROCKET, discount=9, code=cp["code"]))
    assert st == 409, (st, err)
    st, _, err = api.post("/api/v1/coupons", admin.tok("viewer", viewer), dict(user=viewer, gift_id=ROCKET,
                                                                                discount=9))
    assert st == 403, (st, err)

    # Refused uses move nothing: another user's coupon, another gift, an
    # unknown code, a malformed code.
    for who, req, code in [
        (o, {"gift": ROCKET, "coupon": cp["code"]}, "coupon_invalid"),
        (c, {"gift": ROSE, "coupon": cp["code"]}, "coupon_invalid"),
        (c, {"gift": ROCKET, "coupon": unique("nope")}, "coupon_invalid"),
        (c, {"gift": ROCKET, "coupon": "not a code"}, "bad_field"),
    ]:
        r = who.request(dict(type="gift", id=unique("g"), room=creator, **req))
        assert r["type"] == "error" and r["code"] == code and r["field"] == "coupon", (req, r)
    assert balance(c) == 1000 and balance(o) == 1000

    ack = c.request({"type": "gift", "id": "g-cp", "room": creator, "gift": ROCKET, "coupon": cp["code"]})
    assert ack["type"] == "ack" and ack["amount"] == 300 and ack["discount"] == 200 and ack["balance"] == 700, ack
    # The same request again: replayed, nothing moves.
    again = c.request({"type": "gift", "id": "g-cp", "room": creator, "gift": ROCKET, "coupon": cp["code"]})
    assert again["replayed"] is True and again["order"] == ack["order"] and again["balance"] == 700, again
    # The same id without the coupon is another request.
    r = c.request({"type": "gift", "id": "g-cp", "room": creator, "gift": ROCKET})
    assert r["code"] == "idempotency_conflict", r
    # A second use with another id: coupon_used, nothing moves.
    r = c.request({"type": "gift", "id": "g-cp2", "room": creator, "gift": ROCKET, "coupon": cp["code"]})
    assert r["type"] == "error" and r["code"] == "coupon_used" and r["field"] == "coupon", r
    assert balance(c) == 700

    # The outbox: the platform's credit of the discount, then the gift at
    # its full price (the creator is paid on 500).
    es = [(e["k"], e["a"], e["b"], e["t"]) for e in outbox_entries(viewer)]
    assert es == [("credit", "1000", "1000", ""), ("credit", "200", "1200", "coupon:" + cp["code"]),
                  ("gift", "500", "700", "")], es
    shard = ack["order"].split("-")[0]
    credit_id = f"{shard}-" + [e["_id"] for e in outbox_entries(viewer) if e["t"].startswith("coupon:")][0]

    # PostgreSQL: the order at 500, the discount charged to the platform,
    # the user's ledger = the Redis balance, each movement sums to zero.
    wait_for(lambda: psql(f"SELECT count(*) FROM orders WHERE order_id = '{ack['order']}'") == "1", what="order")
    wait_for(lambda: psql(f"SELECT count(*) FROM ledger WHERE movement_id = '{credit_id}'") == "2", what="credit")
    assert psql(f"SELECT amount FROM orders WHERE order_id = '{ack['order']}'") == "500"
    rows = ledger_rows([credit_id])
    assert rows == sorted([(credit_id, "platform", "-200", "credit", "coupon:" + cp["code"]),
                           (credit_id, f"user:{viewer}", "200", "credit", "coupon:" + cp["code"])]), rows
    assert psql(f"SELECT sum(delta) FROM ledger WHERE movement_id IN ('{credit_id}', '{ack['order']}')") == "0"
    assert user_ledger(viewer) == 700
    st, _, got = api.get(f"/api/v1/coupons/{cp['code']}", staff)
    assert st == 200 and got["used"] is True and got["credit"] == credit_id, got
    st, _, got = api.get(f"/api/v1/coupons/{unique('none')}", staff)
    assert st == 404, got


def test_revoked_coupon_is_refused(server, client, catalog):  # noqa: F811
    """POST /api/v1/coupons/{code}/revoke: a gift with the coupon is then
    coupon_invalid and moves nothing; revoking again answers the same; the
    revocation is audited; only admin and operations may revoke."""
    _, api, _, creator, viewer, c = viewer_in_live_room(server, client, 1000)
    staff = admin.tok("operations")
    cp = coupon(api, admin.tok("admin"), viewer, ROCKET, 200)
    st, _, err = api.post(f"/api/v1/coupons/{cp['code']}/revoke", admin.tok("finance"), None)
    assert st == 403, err
    st, _, got = api.post(f"/api/v1/coupons/{cp['code']}/revoke", staff, None)
    assert st == 200 and got["revoked_at"] and got["revoked_by"] and got["used"] is False, (st, got)
    st, _, again = api.post(f"/api/v1/coupons/{cp['code']}/revoke", admin.tok("admin"), None)
    assert st == 200 and again["revoked_at"] == got["revoked_at"] and again["revoked_by"] == got["revoked_by"], again
    st, _, err = api.post(f"/api/v1/coupons/{unique('none')}/revoke", staff, None)
    assert st == 404 and err["error"]["code"] == "not_found", err
    r = c.request({"type": "gift", "id": unique("g"), "room": creator, "gift": ROCKET, "coupon": cp["code"]})
    assert r["type"] == "error" and r["code"] == "coupon_invalid" and r["field"] == "coupon", r
    assert balance(c) == 1000
    assert psql(f"SELECT count(*) FROM audit_log WHERE action = 'coupon.revoke' AND target = '{cp['code']}'") == "1"
    # Without the coupon the same gift goes through at its full price.
    ack = c.request({"type": "gift", "id": unique("g"), "room": creator, "gift": ROCKET})
    assert ack["type"] == "ack" and ack["balance"] == 1000 - ack["amount"] and "discount" not in ack, ack


def test_coupon_discount_above_price_and_expiry(server, client, catalog):  # noqa: F811
    _, api, _, creator, viewer, c = viewer_in_live_room(server, client, 10)
    staff = admin.tok("admin")
    # A discount above the order's total pays the whole order, no more.
    big = coupon(api, staff, viewer, ROSE, 50)
    ack = c.request({"type": "gift", "id": unique("g"), "room": creator, "gift": ROSE, "count": 3,
                     "coupon": big["code"]})
    assert ack["type"] == "ack" and ack["amount"] == 0 and ack["discount"] == 3 and ack["balance"] == 10, ack
    # Expired: refused, nothing moves.
    soon = coupon(api, staff, viewer, ROSE, 1,
                  expires_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2)))
    time.sleep(2.5)
    r = c.request({"type": "gift", "id": unique("g"), "room": creator, "gift": ROSE, "coupon": soon["code"]})
    assert r["code"] == "coupon_invalid", r
    assert balance(c) == 10
    wait_for(lambda: user_ledger(viewer) == 10, what="ledger")


def set_bonus(api, amount):
    st, _, b = api.put("/api/v1/promotions/new-user-bonus", admin.tok("finance"), {"amount": amount})
    assert st == 200 and b["amount"] == amount, (st, b)


def test_new_user_bonus_once(server, client):
    srv, api = admin.start(server, **FLAGS)
    adm = client(srv, unique("adm"), "admin")
    old = unique("v")
    credit(adm, old, 5)  # a wallet that had coins is not new
    st, _, err = api.put("/api/v1/promotions/new-user-bonus", admin.tok("operations"), {"amount": 5})
    assert st == 403, err
    st, _, err = api.put("/api/v1/promotions/new-user-bonus", admin.tok("admin"), {"amount": -1})
    assert st == 400 and err["error"]["field"] == "amount", err
    set_bonus(api, 77)
    try:
        st, _, b = api.get("/api/v1/promotions/new-user-bonus", admin.tok("auditor"))
        assert st == 200 and b["amount"] == 77, b
        # Every node reloads the rule on NOTIFY; wait until this one has.
        newbie = unique("v")
        deadline = time.monotonic() + 10
        while True:
            probe = unique("probe")
            client(srv, probe)
            if wait_bal(srv, client, probe) == 77:
                break
            assert time.monotonic() < deadline, "the bonus never arrived"
            time.sleep(0.2)
        for _ in range(3):  # connect again and again: credited once
            client(srv, newbie)
        c = client(srv, newbie)
        wait_for(lambda: balance(c) == 77, what="bonus")
        time.sleep(0.3)
        assert balance(c) == 77
        # A creator or an old wallet gets nothing.
        o = client(srv, old)
        cr = unique("cr")
        client(srv, cr, "creator")
        time.sleep(0.3)
        assert balance(o) == 5
        cc = client(srv, cr, "creator")
        assert balance(cc) == 0
        # The ledger: one credit of 77 to the user, charged to the platform.
        wait_for(lambda: user_ledger(newbie) == 77, what="bonus in the ledger")
        rows = psql(f"SELECT l2.account || ':' || l2.delta || ':' || l2.note FROM ledger l1 "
                    f"JOIN ledger l2 USING (movement_id) WHERE l1.account = 'user:{newbie}' ORDER BY l2.account")
        assert rows.splitlines() == ["platform:-77:new-user bonus", f"user:{newbie}:77:new-user bonus"], rows
        # The bonus changed: a user given the first one gets no second.
        set_bonus(api, 78)
        time.sleep(1.5)
        client(srv, newbie)
        time.sleep(0.3)
        assert balance(c) == 77
    finally:
        set_bonus(api, 0)


def wait_bal(srv, client, uid):
    c = client(srv, uid)
    time.sleep(0.1)
    return balance(c)


def test_ledger_sums_to_zero():
    """After the runs above (and whatever else shared the database), the
    ledger as a whole sums to zero."""
    assert psql("SELECT coalesce(sum(delta), 0) FROM ledger") == "0"


def test_token_for_unknown_role_has_no_bonus(server):
    """A connection that fails authentication gets nothing (no wallet key)."""
    srv = server(**FLAGS)
    c = srv.connect(token=mint_token(unique("v"), "finance"))
    assert c.expect("error")["code"] == "auth_invalid"
