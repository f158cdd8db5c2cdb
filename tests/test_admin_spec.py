"""docs/openapi.yaml itself: valid schemas, every $ref resolvable, the same
routes and roles as docs/admin-api.md, and the checker (tests/apispec.py)
refusing what it must refuse. No server needed."""

import json

import pytest
from jsonschema.validators import Draft202012Validator

import apispec

ROLES = ["admin", "finance", "operations", "support", "auditor", "creator", "viewer"]


@pytest.fixture(scope="module")
def spec():
    return apispec.Spec(apispec.load())


def walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}/{i}")


def test_document_shape(spec):
    doc = spec.doc
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer",
        "bearerFormat": "JWT"}
    for p in ("/healthz", "/readyz", "/metrics"):
        assert "get" in doc["paths"][p], p
    for method, template, op in spec.operations():
        assert op.get("responses"), (method, template)
        assert op.get("operationId"), (method, template)
        for status in op["responses"]:
            assert status.isdigit() and 200 <= int(status) < 600, (method, template, status)
        if template.startswith("/api/v1/"):
            # Every API route answers 500 and 503 as the error table says.
            assert {"500", "503"} <= set(op["responses"]), (method, template)
            if template != "/api/v1/payments/callback":
                assert "401" in op["responses"], (method, template)
            if method in ("POST", "PUT"):
                assert {"400", "413"} <= set(op["responses"]), (method, template)
    ids = [op["operationId"] for _, _, op in spec.operations()]
    assert len(ids) == len(set(ids))


def test_every_ref_resolves(spec):
    n = 0
    for where, node in walk(spec.doc):
        if "$ref" in node:
            spec.resolve({"$ref": node["$ref"]})
            n += 1
    assert n > 100


def test_every_schema_is_valid_json_schema(spec):
    schemas = []
    for name, s in spec.doc["components"]["schemas"].items():
        schemas.append((f"components/schemas/{name}", s))
    for where, node in walk(spec.doc["paths"]):
        if "schema" in node and isinstance(node["schema"], dict):
            schemas.append((where, node["schema"]))
        if "x-csv-item" in node:
            schemas.append((where + "/x-csv-item", node["x-csv-item"]))
    assert len(schemas) > 80
    for where, s in schemas:
        Draft202012Validator.check_schema(s)
        # And it compiles with the components: validating anything walks its refs.
        v = spec.schema_validator(s)
        list(v.iter_errors(None))
        list(v.iter_errors({}))
    # The amounts are integers everywhere, never numbers or strings.
    for where, node in walk(spec.doc["components"]["schemas"]):
        assert node.get("type") != "number", where


def test_routes_and_roles_match_the_doc(spec):
    table = apispec.doc_role_table()
    assert len(table) >= 30, table.keys()
    documented = {(m, t) for m, t, _ in spec.operations() if t.startswith("/api/v1/")}
    assert set(table) == documented, (set(table) ^ documented)
    for (method, template), cells in table.items():
        op = spec.doc["paths"][template][method.lower()]
        if template == "/api/v1/payments/callback":
            assert cells == {} and op.get("security") == [] and op.get("x-roles") == []
            headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
            assert headers == {"X-Tipcast-Timestamp", "X-Tipcast-Signature"}
            continue
        assert set(cells) == set(ROLES), (method, template, cells)
        yes = sorted(r for r, c in cells.items() if c == "yes")
        own = sorted(r for r, c in cells.items() if c == "own")
        assert sorted(op.get("x-roles", [])) == yes, (method, template)
        assert sorted(op.get("x-roles-own", [])) == own, (method, template)
        if set(yes + own) != set(ROLES):
            assert "403" in op["responses"], (method, template)


def test_error_codes_match_the_doc(spec):
    import os
    import re
    with open(os.path.join(apispec.HERE, "..", "docs", "admin-api.md"), encoding="utf-8") as f:
        text = f.read()
    doc_codes = set(re.findall(r"^\| \d{3} \| `([a-z_]+)` \|", text, re.M))
    assert doc_codes == set(spec.doc["components"]["schemas"]["ErrorCode"]["enum"])


ORDER = {"order_id": "1-1732240000000-0", "kind": "gift", "sender": "u1", "room": "c1", "creator": "c1",
         "gift_id": 7, "count": 2, "amount": 1000, "created_at": "2026-11-29T19:00:00Z",
         "state": "partially_refunded", "refunded": 100,
         "split": {"rule_id": 1, "month_volume_before": 0, "platform_fee": 300, "agency_id": None,
                   "agency_share": 0, "creator_net": 700},
         "refunds": [{"id": "rf-1", "order_id": "1-1732240000000-0", "amount": 100, "reason": "x",
                      "platform_fee": 30, "agency_share": 0, "creator_net": 70, "state": "credited",
                      "created_at": "2026-11-29T19:01:00.123+00:00"}]}
HDRS = {"x-request-id": "req-1"}


def test_checker_accepts_a_documented_answer(spec):
    spec.check("GET", "/api/v1/orders/1-1732240000000-0", 200, ORDER, "application/json", HDRS)
    spec.check("GET", "/api/v1/orders/x?limit=3", 404,
               {"error": {"code": "not_found", "message": "no such order"}}, "application/json", HDRS)
    spec.check("POST", "/api/v1/recharges", 400,
               {"error": {"code": "bad_field", "message": "amount", "field": "amount_minor"}},
               "application/json; charset=utf-8", HDRS)
    spec.check("GET", "/api/v1/nope", 404, {"error": {"code": "not_found", "message": "no route"}},
               "application/json", HDRS)
    spec.check("DELETE", "/api/v1/me", 405,
               {"error": {"code": "method_not_allowed", "message": "GET only"}}, "application/json", HDRS)
    spec.check("GET", "/api/v1/webhooks/dead", 200, {"items": [], "next": None}, "application/json", HDRS)
    spec.check("GET", "/api/v1/users/u1/transactions?format=csv", 200,
               "movement_id,kind,delta,note,created_at\r\n1-1-0,gift,-5,,2026-11-29T19:00:00Z\r\n",
               "text/csv", HDRS)
    assert spec.template_of("/api/v1/webhooks/dead") == "/api/v1/webhooks/dead"
    assert spec.template_of("/api/v1/webhooks/12/retry") == "/api/v1/webhooks/{id}/retry"
    assert spec.template_of("/api/v1/orders/a/b/c") is None


@pytest.mark.parametrize("case", [
    ("amount as a string", ["amount"], "500"),
    ("amount as a fraction", ["amount"], 1.5),
    ("unknown field", ["surprise"], 1),
    ("bad state", ["state"], "cancelled"),
    ("bad time", ["created_at"], "yesterday"),
    ("missing split field", ["split", "creator_net"], None),
    ("refund amount zero", ["refunds", 0, "amount"], 0),
])
def test_checker_refuses_a_wrong_body(spec, case):
    _, where, value = case
    body = json.loads(json.dumps(ORDER))
    node = body
    for k in where[:-1]:
        node = node[k]
    if value is None:
        del node[where[-1]]
    else:
        node[where[-1]] = value
    with pytest.raises(apispec.SpecError):
        spec.check("GET", "/api/v1/orders/o1", 200, body, "application/json", HDRS)


def test_checker_refuses_what_is_not_documented(spec):
    err = {"error": {"code": "forbidden", "message": "no"}}
    with pytest.raises(apispec.SpecError, match="not documented"):
        spec.check("GET", "/api/v1/me", 409, err, "application/json", HDRS)  # nothing conflicts
    with pytest.raises(apispec.SpecError, match="not documented"):
        spec.check("GET", "/api/v1/orders/o1", 200, ORDER, "text/html", HDRS)
    with pytest.raises(apispec.SpecError, match="header X-Request-Id missing"):
        spec.check("GET", "/api/v1/orders/o1", 200, ORDER, "application/json", {})
    with pytest.raises(apispec.SpecError):  # bad_field without its field
        spec.check("POST", "/api/v1/recharges", 400, {"error": {"code": "bad_field", "message": "m"}},
                   "application/json", HDRS)
    with pytest.raises(apispec.SpecError):  # a code of another status
        spec.check("POST", "/api/v1/recharges", 409, {"error": {"code": "invalid_state", "message": "m"}},
                   "application/json", HDRS)
    with pytest.raises(apispec.SpecError):  # 503 without Retry-After
        spec.check("GET", "/api/v1/me", 503, {"error": {"code": "unavailable", "message": "m"}},
                   "application/json", HDRS)
    with pytest.raises(apispec.SpecError, match="CSV columns"):
        spec.check("GET", "/api/v1/users/u1/transactions", 200, "a,b\r\n1,2\r\n", "text/csv", HDRS)
