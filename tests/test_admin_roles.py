"""Every role against every route of the admin API, exactly as the role
table of docs/admin-api.md says (the table is read from the doc itself;
test_admin_spec checks that docs/openapi.yaml has the same one).

Allowed: anything but 401 and 403 (an id that does not exist may well be a
404, a body may be refused with 400 or 409), and not 500 either, a bug. Denied: 403 forbidden. An
"own" cell is tried twice: on the caller's own resource (allowed) and on
someone else's (403). Without a token every route is 401 unauthorized.
Every answer is also checked against docs/openapi.yaml (tests/admin.py).

The bodies are valid-looking, and chosen so that an allowed call changes
nothing shared by other tests: new packages and agencies of fresh ids, the
rate of the test currency XAT, a revenue rule dated in the past (refused),
ids that do not exist for the rest.
"""

import pytest

import admin
import apispec
from conftest import mint_token
from wsclient import unique

ROLES = ["admin", "finance", "operations", "support", "auditor", "creator", "viewer"]
TABLE = apispec.doc_role_table()
ROUTES = sorted(k for k in TABLE if k[1] != "/api/v1/payments/callback")
NX = "999999999999"  # a withdrawal or webhook id that does not exist


def call_args(method, template, resource):
    """(concrete path, body) of a call of the route. resource: the {id}
    to use where the route has one (the caller's own, or another's)."""
    rid = resource
    bodies = {
        ("PUT", "/api/v1/recharge-packages/{id}"): (
            f"/api/v1/recharge-packages/{unique('pk')}",
            {"currency": "XAT", "amount_minor": 499, "coins": 500, "enabled": False}),
        ("PUT", "/api/v1/currency-rates/{currency}"): (
            "/api/v1/currency-rates/XAT", {"coins_per_unit": 100, "minor_per_unit": 100}),
        ("POST", "/api/v1/recharges"): (
            "/api/v1/recharges",
            {"user": unique("u"), "request_id": unique("rq"), "currency": "XAT", "amount_minor": 100}),
        ("GET", "/api/v1/recharges/{id}"): (f"/api/v1/recharges/rc_{unique('nx')}", None),
        ("POST", "/api/v1/revenue-rules"): (
            "/api/v1/revenue-rules",
            {"name": "roles-test", "effective_at": "2001-01-01T00:00:00Z", "agency_share_bp": 0,
             "tiers": [{"min_volume": 0, "platform_fee_bp": 3000}]}),
        ("POST", "/api/v1/agencies"): ("/api/v1/agencies", {"id": unique("ag"), "name": "Roles test"}),
        ("PUT", "/api/v1/creators/{id}/agency"): (
            f"/api/v1/creators/{rid}/agency", {"agency_id": unique("nxag")}),
        ("GET", "/api/v1/orders/{id}"): ("/api/v1/orders/0-1-0", None),
        ("POST", "/api/v1/orders/{id}/refund"): (
            "/api/v1/orders/0-1-0/refund", {"refund_id": unique("rf"), "amount": 1, "reason": "roles test"}),
        ("POST", "/api/v1/settlements/run"): ("/api/v1/settlements/run", None),
        ("POST", "/api/v1/withdrawals"): (
            "/api/v1/withdrawals", {"amount": 10**12, "request_id": unique("w")}),
        ("POST", "/api/v1/withdrawals/{id}/approve"): (f"/api/v1/withdrawals/{NX}/approve", None),
        ("POST", "/api/v1/withdrawals/{id}/reject"): (f"/api/v1/withdrawals/{NX}/reject", {"reason": "roles"}),
        ("POST", "/api/v1/withdrawals/{id}/pay"): (f"/api/v1/withdrawals/{NX}/pay",
                                                   {"payout_reference": "roles"}),
        ("POST", "/api/v1/webhooks/{id}/retry"): (f"/api/v1/webhooks/{NX}/retry", None),
    }
    if (method, template) in bodies:
        return bodies[(method, template)]
    return template.replace("{id}", rid), None


def cases():
    out = []
    for method, template in ROUTES:
        for role in ROLES:
            cell = TABLE[(method, template)][role]
            if cell == "own" and "{id}" in template:
                out.append((method, template, role, "own", True))
                out.append((method, template, role, "other", False))
            else:
                out.append((method, template, role, "any", cell in ("yes", "own")))
    return out


CASES = cases()


@pytest.fixture(scope="module")
def api(module_server):
    srv, client = admin.start(module_server)
    return client


def test_the_table_is_complete():
    # 58 routes with roles (and the payment callback): a parse that lost
    # rows would make this file test less than it says.
    assert len(ROUTES) == 58, ROUTES
    assert all(set(TABLE[r]) == set(ROLES) for r in ROUTES)
    own = [(m, t, r) for (m, t, r, w, _) in CASES if w == "own"]
    assert ("GET", "/api/v1/creators/{id}/balance", "creator") in own
    assert ("GET", "/api/v1/users/{id}/transactions", "viewer") in own


@pytest.mark.parametrize("method,template,role,whose,allowed", CASES,
                         ids=[f"{m} {t} {r} {w}" for m, t, r, w, _ in CASES])
def test_role_on_route(api, method, template, role, whose, allowed):
    me = unique(role[:3])
    resource = me if whose == "own" else unique("someone")
    path, body = call_args(method, template, resource)
    token = mint_token(me, role)
    status, _, answer = api.call(method, path, token=token, body=body, request_id=unique("roles"))
    if allowed:
        # 500 is never an answer to a valid-looking call (it is a bug).
        assert status not in (401, 403, 500), (method, path, role, whose, status, answer)
    else:
        assert status == 403, (method, path, role, whose, status, answer)
        assert answer["error"]["code"] == "forbidden", answer


def test_own_resources(api):
    """The two own cases the brief names, spelled out."""
    c, other = unique("cr"), unique("cr")
    st, _, b = api.get(f"/api/v1/creators/{c}/balance", mint_token(c, "creator"))
    assert st not in (401, 403), (st, b)
    if st == 200:
        assert b["creator"] == c
    st, _, b = api.get(f"/api/v1/creators/{other}/balance", mint_token(c, "creator"))
    assert st == 403 and b["error"]["code"] == "forbidden", (st, b)
    v, w = unique("v"), unique("v")
    st, _, b = api.get(f"/api/v1/users/{v}/transactions", mint_token(v, "viewer"))
    assert st not in (401, 403), (st, b)
    if st == 200:
        assert b["items"] == [] and b["next"] is None, b  # a fresh user has no movements
    st, _, b = api.get(f"/api/v1/users/{w}/transactions", mint_token(v, "viewer"))
    assert st == 403 and b["error"]["code"] == "forbidden", (st, b)
    # A creator listing withdrawals sees only its own, whatever ?creator= says.
    st, _, b = api.get("/api/v1/withdrawals", mint_token(c, "creator"), query={"creator": other})
    assert st == 200, (st, b)
    assert all(x["creator"] == c for x in b["items"]), b


@pytest.mark.parametrize("method,template", ROUTES, ids=[f"{m} {t}" for m, t in ROUTES])
def test_no_token_is_401(api, method, template):
    path, body = call_args(method, template, unique("x"))
    status, _, answer = api.call(method, path, body=body)
    assert status == 401 and answer["error"]["code"] == "unauthorized", (method, path, status, answer)


def test_me(api):
    for role in ROLES:
        sub = unique(role[:3])
        st, _, b = api.get("/api/v1/me", mint_token(sub, role))
        assert st == 200 and b == {"sub": sub, "role": role}, (role, st, b)


def test_probes_need_no_token(api):
    """/healthz, /readyz and /metrics on the admin listener: no token, no
    metrics-allow check (whoever reaches the admin listener is trusted)."""
    st, _, b = api.get("/healthz")
    assert st == 200 and b == {"status": "ok"}, (st, b)
    st, _, b = api.get("/readyz")
    assert st == 200 and b == {"redis": "ok", "postgres": "ok", "stopping": False}, (st, b)
    st, h, text = api.get("/metrics")
    assert st == 200 and h["content-type"].startswith("text/plain"), (st, h)
    assert "\n# TYPE " in "\n" + text and "tipcast_" in text, text[:500]
