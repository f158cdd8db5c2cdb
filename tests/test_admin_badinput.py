"""Bad input to the admin API: every refusal has its documented status and
code (and `field` for bad_field), and the response checker
(tests/apispec.py) validates every answer against docs/openapi.yaml. After
all of it no money has moved for the test's users (no ledger rows, no
wallet, the recharge still pending) and tipcastd still answers /healthz.
"""

import hashlib
import hmac
import json
import time

import pytest

import admin
import apispec
from conftest import mint_token
from helpers import psql, shard_of, wait_for
from resp import Redis
from wsclient import unique

CURRENCY = "XAT"  # not a real currency; no other test module prices in it


def code_of(answer):
    return answer["error"]["code"]


def wallet(uid):
    r = Redis()
    try:
        return r("GET", f"tc:{{w:{shard_of(uid)}}}:bal:{uid}")
    finally:
        r.close()


def ledger_rows(uid):
    return int(psql(f"SELECT count(*) FROM ledger WHERE account = 'user:{uid}'"))


@pytest.fixture(scope="module")
def base(module_server):
    """The server and the actors; nothing set up in PostgreSQL yet."""
    srv, api = admin.start(module_server)

    class S:
        pass
    s = S()
    s.srv, s.api = srv, api
    s.fin = mint_token(unique("fin"), "finance")
    s.creator = unique("cr")
    s.creator_tok = mint_token(s.creator, "creator")
    s.user = unique("u")
    s.package = unique("pk")  # created by the scene fixture
    s.users = [s.user]
    s.recharge = None
    s.good_payload = {"payment_id": unique("pay"), "recharge_id": "rc_" + unique("nx"), "amount_minor": 499,
                      "currency": CURRENCY, "status": "succeeded"}
    return s


@pytest.fixture(scope="module")
def scene(base):
    """base, plus the test currency's rate, a package and a pending
    recharge of the test's user: what a callback would pay."""
    s, api = base, base.api
    if s.recharge is None:
        st, _, b = api.put(f"/api/v1/currency-rates/{CURRENCY}", s.fin,
                           {"coins_per_unit": 100, "minor_per_unit": 100})
        assert st == 200, (st, b)
        st, _, b = api.put(f"/api/v1/recharge-packages/{s.package}", s.fin,
                           {"currency": CURRENCY, "amount_minor": 499, "coins": 500, "enabled": True})
        assert st == 200, (st, b)
        st, _, b = api.post("/api/v1/recharges", s.fin,
                            {"user": s.user, "request_id": unique("rq"), "package_id": s.package})
        assert st == 201 and b["state"] == "pending" and b["coins"] == 500, (st, b)
        s.recharge = b
        s.good_payload["recharge_id"] = b["id"]
    return s


# ---- bodies

@pytest.mark.parametrize("raw", [
    b'{"user": "u1", "request_id": ',       # cut short
    b'{"user": "u1",}',                      # trailing comma
    b"not json at all",
    b'["user", "u1"]',                       # an array
    b'"a string"',
    b"42",
    b"null",
    b"",
    b'{"user": "\xff\xfe"}',                 # not UTF-8
], ids=["truncated", "trailing-comma", "text", "array", "string", "number", "null", "empty", "bad-utf8"])
def test_body_not_a_json_object(base, raw):
    st, _, b = base.api.call("POST", "/api/v1/recharges", token=base.fin, raw_body=raw)
    if raw == b"":
        # No body at all on a route that needs one: the body is not a JSON object.
        assert st == 400 and code_of(b) in ("bad_json", "bad_field"), (st, b)
    else:
        assert st == 400 and code_of(b) == "bad_json", (raw, st, b)


def test_body_too_large(base):
    big = {"user": base.user, "request_id": unique("rq"), "package_id": base.package, "pad": "x" * 70000}
    st, _, b = base.api.post("/api/v1/recharges", base.fin, big)
    assert st == 413 and code_of(b) == "body_too_large", (st, b)
    # Just under the limit is read (and refused for its content, not its
    # size: a user id is at most 64 bytes).
    small = {"user": "", "request_id": unique("rq"), "package_id": base.package}
    small["user"] = "x" * (64 * 1024 - len(json.dumps(small, separators=(",", ":"))) - 16)
    st, _, b = base.api.post("/api/v1/recharges", base.fin, small)
    assert st == 400 and code_of(b) == "bad_field" and b["error"]["field"] == "user", (st, b)


BAD_AMOUNTS = [-1, 0, -(2**63), 1.5, 0.5, "100", "1e3", None, True, [1], {"v": 1}, 2**53, 2**63, 2**64]
AMOUNT_IDS = ["neg", "zero", "min-int64", "fraction", "half", "string", "string-exp", "null", "bool",
              "array", "object", "2^53", "2^63", "2^64"]


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=AMOUNT_IDS)
def test_bad_recharge_amount(base, amount):
    body = {"user": base.user, "request_id": unique("rq"), "currency": CURRENCY, "amount_minor": amount}
    st, _, b = base.api.post("/api/v1/recharges", base.fin, body)
    assert st == 400 and code_of(b) == "bad_field" and b["error"]["field"] == "amount_minor", (amount, st, b)


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=AMOUNT_IDS)
def test_bad_withdrawal_amount(base, amount):
    st, _, b = base.api.post("/api/v1/withdrawals", base.creator_tok,
                              {"amount": amount, "request_id": unique("w")})
    assert st == 400 and code_of(b) == "bad_field" and b["error"]["field"] == "amount", (amount, st, b)


@pytest.mark.parametrize("field,value", [
    ("coins", 0), ("coins", -5), ("coins", 2.5), ("coins", "500"), ("coins", 2**53),
    ("amount_minor", 0), ("amount_minor", 2**63), ("currency", "usd"), ("currency", 840),
    ("enabled", "yes"),
])
def test_bad_package_fields(base, field, value):
    body = {"currency": CURRENCY, "amount_minor": 499, "coins": 500, "enabled": True}
    body[field] = value
    st, _, b = base.api.put(f"/api/v1/recharge-packages/{unique('pk')}", base.fin, body)
    assert st == 400 and code_of(b) == "bad_field" and b["error"]["field"] == field, (field, value, st, b)


def test_bad_fields_elsewhere(scene):
    api, fin = scene.api, scene.fin
    cases = [
        ("POST", "/api/v1/recharges", {"request_id": unique("rq"), "package_id": scene.package}, "user"),
        ("POST", "/api/v1/recharges", {"user": scene.user, "package_id": scene.package}, "request_id"),
        ("POST", "/api/v1/recharges", {"user": "bad user!", "request_id": unique("rq"),
                                       "package_id": scene.package}, "user"),
        ("POST", "/api/v1/recharges", {"user": "x" * 65, "request_id": unique("rq"),
                                       "package_id": scene.package}, "user"),
        # 1 minor unit at 100 coins per 10000 minor units is 0 coins.
        ("PUT", "/api/v1/currency-rates/XTT", {"coins_per_unit": 0, "minor_per_unit": 100}, "coins_per_unit"),
        ("POST", "/api/v1/revenue-rules", {"name": "bad", "agency_share_bp": 0, "tiers": []}, "tiers"),
        ("POST", "/api/v1/revenue-rules", {"name": "bad", "agency_share_bp": 0,
                                           "effective_at": "2001-01-01T00:00:00Z",
                                           "tiers": [{"min_volume": 0, "platform_fee_bp": 1000}]},
         "effective_at"),
        ("POST", "/api/v1/revenue-rules", {"name": "bad", "agency_share_bp": 6000,
                                           "effective_at": "2999-01-01T00:00:00Z",
                                           "tiers": [{"min_volume": 0, "platform_fee_bp": 5000}]}, None),
        ("POST", "/api/v1/settlements/run", {"cutoff": "2999-01-01T00:00:00Z"}, "cutoff"),
        # An id in the body that names nothing is a bad field (404 is for the path's ids).
        ("POST", "/api/v1/recharges", {"user": scene.user, "request_id": unique("rq"),
                                       "package_id": unique("nxpk")}, "package_id"),
    ]
    for method, path, body, field in cases:
        st, _, b = api.call(method, path, token=fin, body=body)
        assert st == 400 and code_of(b) == "bad_field", (method, path, body, st, b)
        if field:
            assert b["error"]["field"] == field, (method, path, body, b)
    # The list parameters.
    for q in ({"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"limit": -1}):
        st, _, b = api.get("/api/v1/recharges", fin, query=q)
        assert st == 400 and code_of(b) == "bad_field" and b["error"]["field"] == "limit", (q, st, b)


# ---- request ids

def test_request_id(scene):
    """A valid X-Request-Id is echoed and written into the audit row; an
    invalid one is replaced by one tipcastd makes (the spec checks its form)."""
    api, fin = scene.api, scene.fin
    rid = "ok-id_1.2:" + unique("r")
    st, h, b = api.get("/api/v1/me", fin, request_id=rid)
    assert st == 200 and h["x-request-id"] == rid, h
    for bad in ("bad id!", "x" * 65, "", "é"):
        st, h, b = api.call("GET", "/api/v1/me", token=fin, headers={"X-Request-Id": bad})
        assert st == 200 and h["x-request-id"] != bad, (bad, h)
    st, h, b = api.call("POST", "/api/v1/recharges", token=fin, headers={"X-Request-Id": "no spaces allowed"},
                        body={"user": unique("u"), "request_id": unique("rq"), "package_id": scene.package})
    assert st == 201, (st, b)
    made = h["x-request-id"]
    assert audit_outcomes(made) == "recharge.create=ok", (made, audit_outcomes(made))
    scene.users.append(b["user"])


# ---- ids, routes, methods

def test_unknown_ids_are_404(scene):
    api, fin = scene.api, scene.fin
    for method, path, body in [
        ("GET", f"/api/v1/recharges/rc_{unique('nx')}", None),
        ("GET", "/api/v1/orders/0-1-0", None),
        ("POST", "/api/v1/orders/0-1-0/refund", {"refund_id": unique("rf"), "amount": 5, "reason": "x"}),
        ("POST", "/api/v1/withdrawals/999999999999/approve", None),
        ("POST", "/api/v1/withdrawals/999999999999/reject", {"reason": "x"}),
        ("POST", "/api/v1/withdrawals/999999999999/pay", {"payout_reference": "x"}),
    ]:
        st, _, b = api.call(method, path, token=fin, body=body)
        assert st == 404 and code_of(b) == "not_found", (method, path, st, b)
    st, _, b = api.post("/api/v1/webhooks/999999999999/retry", mint_token(unique("ops"), "operations"))
    assert st == 404 and code_of(b) == "not_found", (st, b)


def test_unknown_route_and_wrong_method(base):
    api, fin = base.api, base.fin
    for path in ("/api/v1/nothing-here", "/api/v2/me", "/api/v1/orders", "/api/v1/orders/a/b/c",
                 "/api/v1/me/extra", "/api"):
        st, _, b = api.get(path, fin)
        assert st == 404 and code_of(b) == "not_found", (path, st, b)
    for method, path in [("DELETE", "/api/v1/me"), ("POST", "/api/v1/me"), ("GET", "/api/v1/settlements/run"),
                         ("PUT", "/api/v1/recharges"), ("GET", "/api/v1/payments/callback"),
                         ("POST", "/api/v1/recharge-packages"), ("GET", "/api/v1/orders/0-1-0/refund"),
                         ("PATCH", "/api/v1/withdrawals")]:
        st, _, b = api.call(method, path, token=fin)
        assert st == 405 and code_of(b) == "method_not_allowed", (method, path, st, b)


# ---- tokens

@pytest.mark.parametrize("kind", ["missing", "garbage", "wrong-secret", "expired", "alg-none", "no-sub",
                                  "no-role", "unknown-role", "not-bearer", "empty-bearer"])
def test_bad_token_is_401(base, kind):
    sub = unique("fin")
    headers = {}
    if kind == "missing":
        token = None
    elif kind == "garbage":
        token = "abc.def.ghi"
    elif kind == "wrong-secret":
        token = mint_token(sub, "finance", secret="not-the-secret-0123456789abcdef")
    elif kind == "expired":
        token = mint_token(sub, "finance", exp_in=-120)
    elif kind == "alg-none":
        token = mint_token(sub, "finance", alg="none")
    elif kind == "no-sub":
        token = mint_token(sub, "finance", extra={"sub": None})
    elif kind == "no-role":
        token = mint_token(sub, "finance", extra={"role": None})
    elif kind == "unknown-role":
        token = mint_token(sub, "superuser")
    elif kind == "not-bearer":
        token = None
        headers = {"Authorization": "Basic " + "Zm9vOmJhcg=="}
    else:
        token = None
        headers = {"Authorization": "Bearer "}
    for method, path, body in [("GET", "/api/v1/me", None),
                               ("POST", "/api/v1/recharges", {"user": base.user, "request_id": unique("rq"),
                                                              "package_id": base.package})]:
        st, _, b = base.api.call(method, path, token=token, body=body, headers=headers)
        assert st == 401 and code_of(b) == "unauthorized", (kind, method, st, b)


# ---- the payment callback

def audit_outcomes(request_id):
    return psql("SELECT string_agg(action || '=' || outcome, ',' ORDER BY id) FROM audit_log "
                f"WHERE request_id = '{request_id}'")


def test_callback_bad_signature(base):
    api = base.api
    body = json.dumps(base.good_payload).encode()
    now = int(time.time())
    tries = {
        "wrong-secret": admin.sign_callback("another-secret", body, now),
        "other-body": admin.sign_callback(admin.PAYMENT_SECRET, body + b" ", now),
        "other-ts": admin.sign_callback(admin.PAYMENT_SECRET, body, now - 1),
        "wrong-secret-upper": admin.sign_callback("another-secret", body, now).upper().replace("SHA256=", "sha256="),
        "no-ts-in-mac": "sha256=" + hmac.new(admin.PAYMENT_SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "no-prefix": admin.sign_callback(admin.PAYMENT_SECRET, body, now)[len("sha256="):],
        "truncated": admin.sign_callback(admin.PAYMENT_SECRET, body, now)[:-2],
        "empty": "",
    }
    for name, sig in tries.items():
        rid = unique("cbsig")
        st, _, b = api.callback(admin.PAYMENT_SECRET, None, ts=now, raw_body=body, request_id=rid, signature=sig)
        assert st == 401 and code_of(b) == "bad_signature", (name, st, b)
        # The refusal's audit row is written beside the answer: wait for it.
        wait_for(lambda: audit_outcomes(rid) == "payment.callback=bad_signature", timeout=10,
                 what=f"the audit row of the {name} callback")
    # No signature headers at all.
    rid = unique("cbsig")
    st, _, b = api.call("POST", "/api/v1/payments/callback", raw_body=body, request_id=rid)
    assert st == 401 and code_of(b) in ("bad_signature", "stale_timestamp"), (st, b)


@pytest.mark.parametrize("skew", [-301, -3600, 301, 86400])
def test_callback_stale_timestamp(base, skew):
    rid = unique("cbts")
    st, _, b = base.api.callback(admin.PAYMENT_SECRET, base.good_payload, ts=int(time.time()) + skew,
                                  request_id=rid)
    assert st == 401 and code_of(b) == "stale_timestamp", (skew, st, b)
    wait_for(lambda: audit_outcomes(rid) == "payment.callback=stale_timestamp", timeout=10,
             what="the audit row of the stale callback")


def test_callback_bad_fields_signed(scene):
    """Correctly signed, but the body is wrong: 400, nothing paid."""
    for field, value in [("amount_minor", "499"), ("amount_minor", 499.5), ("amount_minor", -499),
                         ("amount_minor", 2**53), ("status", "maybe"), ("payment_id", ""),
                         ("recharge_id", None), ("currency", "usd"), ("amount_minor", 2**63)]:
        p = dict(scene.good_payload, **{field: value})
        if value is None:
            del p[field]
        st, _, b = scene.api.callback(admin.PAYMENT_SECRET, p)
        assert st == 400 and code_of(b) == "bad_field" and b["error"]["field"] == field, (field, value, st, b)
    st, _, b = scene.api.callback(admin.PAYMENT_SECRET, None, raw_body=b"[1, 2]")
    assert st == 400 and code_of(b) == "bad_json", (st, b)
    st, _, b = scene.api.callback(admin.PAYMENT_SECRET, dict(scene.good_payload, recharge_id="rc_" + unique("nx")))
    assert st == 404 and code_of(b) == "not_found", (st, b)


def test_callback_amount_mismatch(scene):
    """Another amount than the order's: the recharge fails, an alert is
    raised, nothing is credited (a recharge of another user of this test)."""
    api, fin = scene.api, scene.fin
    user = unique("u")
    scene.users.append(user)
    st, _, rc = api.post("/api/v1/recharges", fin, {"user": user, "request_id": unique("rq"),
                                                    "package_id": scene.package})
    assert st == 201, (st, rc)
    rid = unique("cbmm")
    st, _, b = api.callback(admin.PAYMENT_SECRET, {"payment_id": unique("pay"), "recharge_id": rc["id"],
                                                   "amount_minor": 1, "currency": CURRENCY,
                                                   "status": "succeeded"}, request_id=rid)
    assert st == 409 and code_of(b) == "amount_mismatch", (st, b)
    st, _, b = api.get(f"/api/v1/recharges/{rc['id']}", fin)
    assert st == 200 and b["state"] == "failed" and b["failure"], b
    st, _, b = api.get("/api/v1/alerts", mint_token(unique("adm"), "admin"),
                       query={"kind": "recharge_amount_mismatch", "limit": 500})
    assert st == 200 and any(a["subject"] == rc["id"] or rc["id"] in json.dumps(a["detail"])
                             for a in b["items"]), b
    assert psql(f"SELECT count(*) FROM audit_log WHERE request_id = '{rid}'") != "0"
    assert ledger_rows(user) == 0 and wallet(user) in (None, "0")


# ---- and after all of it

def body_routes():
    """(method, template, schema) of every route whose body docs/openapi.yaml
    describes as an object without other fields."""
    spec = apispec.spec()
    out = []
    for method, path, op in spec.operations():
        content = op.get("requestBody", {}).get("content", {}).get("application/json")
        if content:
            schema = spec.resolve(content["schema"])
            for one in [spec.resolve(x) for x in schema.get("oneOf", [])] or [schema]:
                assert one.get("additionalProperties") is False, (method, path)
                out.append((method, path, one))
    return out


def test_unknown_body_fields_are_refused_as_the_spec_says(base):
    """Every field a route's body schema lists is taken (whatever the SQL
    function then says of its value), and any other, at the top or in a
    listed object of an array, is 400 bad_field naming it."""
    spec = apispec.spec()
    roles = apispec.doc_role_table()
    routes = body_routes()
    assert len(routes) >= 27

    def send(method, template, body):
        target = template.replace("{currency}", CURRENCY).replace("{id}", "x" + unique("i").replace("-", "")[-12:])
        if template == "/api/v1/payments/callback":
            return base.api.callback(admin.PAYMENT_SECRET, body)
        role = "admin" if roles[(method, template)].get("admin") == "yes" else next(
            r for r, v in roles[(method, template)].items() if v == "yes")
        return base.api.call(method, target, admin.tok(role), body=body)

    def unknown(answer, field):
        return answer.get("error", {}).get("field") == field and \
            answer["error"]["message"].startswith("unknown field")

    for method, template, schema in routes:
        st, _, a = send(method, template, {"zzz_unknown": 1})
        assert (st, a["error"]["code"], a["error"]["field"]) == (400, "bad_field", "zzz_unknown"), \
            (method, template, st, a)
        assert unknown(a, "zzz_unknown")
        for name, prop in schema.get("properties", {}).items():
            # [] is a wrong value for every field: the function refuses it, not the field.
            st, _, a = send(method, template, {name: []})
            assert not unknown(a, name), (method, template, name, a)
            assert st >= 400, (method, template, name, st, a)
            items = spec.resolve(prop).get("items")
            if items and spec.resolve(items).get("additionalProperties") is False:
                st, _, a = send(method, template, {name: [{"zzz_unknown": 1}]})
                assert st == 400 and unknown(a, f"{name}[0].zzz_unknown"), (method, template, name, a)


def test_nothing_moved_and_the_server_lives(base):
    """Runs last (pytest keeps the file's order)."""
    for u in base.users:
        assert ledger_rows(u) == 0, u
        assert wallet(u) in (None, "0"), u
    if base.recharge is not None:
        st, _, b = base.api.get(f"/api/v1/recharges/{base.recharge['id']}", base.fin)
        assert st == 200 and b["state"] == "pending" and b["payment_id"] is None, b
    st, _, b = base.api.get("/healthz")
    assert st == 200, (st, b)
    st, _, b = base.api.get("/api/v1/me", base.fin)
    assert st == 200, (st, b)
