"""docs/openapi.yaml as a checker of responses.

check(method, path, status, body, content_type, headers=None) finds the
operation of the path (a concrete path such as /api/v1/orders/7-1-0 is
matched against the templates such as /api/v1/orders/{id}), the response of
the status, and validates the body against its JSON Schema (Draft 2020-12,
$refs resolved inside the document). It raises SpecError, an
AssertionError, when anything is not as documented: a status the operation
does not list, a content type it does not list, a body that does not
validate, a missing response header, a CSV whose header row is not the
item's fields.

A path no route has is checked against x-tipcast-fallback/unknown-route
(404), a route's path with another method against wrong-method (405).
"""

import csv
import io
import json
import os
import re
import urllib.parse

import jsonschema
import yaml
from jsonschema.validators import Draft202012Validator

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC_PATH = os.path.join(os.path.dirname(HERE), "docs", "openapi.yaml")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SpecError(AssertionError):
    pass


def _format_checker():
    """date-time and date are checked here (jsonschema only checks them with
    optional packages that Debian's python3-jsonschema does not pull in)."""
    fc = jsonschema.FormatChecker()

    @fc.checks("date-time")
    def _dt(value):
        return not isinstance(value, str) or bool(_RFC3339.match(value))

    @fc.checks("date")
    def _d(value):
        return not isinstance(value, str) or bool(_DATE.match(value))

    return fc


def load(path=SPEC_PATH):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


class Spec:
    def __init__(self, doc):
        self.doc = doc
        self.formats = _format_checker()
        # Templates, most specific first: literal segments beat parameters
        # (/api/v1/webhooks/dead before /api/v1/webhooks/{id}/...).
        self.routes = []
        for template, item in doc["paths"].items():
            segs = template.strip("/").split("/")
            rx = "^/" + "/".join("[^/]+" if s.startswith("{") else re.escape(s) for s in segs) + "$"
            params = sum(1 for s in segs if s.startswith("{"))
            self.routes.append((params, template, re.compile(rx), item))
        self.routes.sort(key=lambda r: r[0])

    # ---- lookups

    def resolve(self, node):
        """Follows $ref (local, '#/...') until a node that is not one."""
        seen = 0
        while isinstance(node, dict) and "$ref" in node and len(node) == 1:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise SpecError(f"non-local $ref {ref}")
            node = self.doc
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(node, dict) or part not in node:
                    raise SpecError(f"unresolvable $ref {ref}")
                node = node[part]
            seen += 1
            if seen > 32:
                raise SpecError("$ref loop")
        return node

    def template_of(self, path):
        """The path template a concrete path matches, or None."""
        path = urllib.parse.urlsplit(path).path
        if path in self.doc["paths"]:
            return path
        for _, template, rx, _ in self.routes:
            if rx.match(path):
                return template
        return None

    def operation(self, method, path):
        """(template, operation or None). Raises when no template matches."""
        template = self.template_of(path)
        if template is None:
            return None, None
        return template, self.doc["paths"][template].get(method.lower())

    def operations(self):
        """(METHOD, template, operation) of every documented operation."""
        for template, item in self.doc["paths"].items():
            for m in METHODS:
                if m in item:
                    yield m.upper(), template, item[m]

    # ---- validation

    def schema_validator(self, schema):
        """A Draft 2020-12 validator of schema whose $refs resolve into the
        document (the components are embedded in the root)."""
        root = dict(schema)
        root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        root["components"] = self.doc["components"]
        return Draft202012Validator(root, format_checker=self.formats)

    def validate(self, schema, instance, what):
        v = self.schema_validator(schema)
        errors = sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            lines = []
            for e in errors[:8]:
                where = "/".join(str(p) for p in e.absolute_path) or "(root)"
                lines.append(f"  at {where}: {e.message[:300]}")
                for sub in (e.context or [])[:4]:
                    subwhere = "/".join(str(p) for p in sub.absolute_path) or "(root)"
                    lines.append(f"      - {subwhere}: {sub.message[:200]}")
            raise SpecError(f"{what}: body does not match the spec:\n" + "\n".join(lines)
                            + f"\nbody: {json.dumps(instance)[:1500]}")

    def response(self, method, path, status):
        """(operation description, response object) for the call."""
        template, op = self.operation(method, path)
        fallback = self.doc.get("x-tipcast-fallback", {})
        if template is None:
            what = f"{method} {path} (no route)"
            responses = {"404": fallback["unknown-route"]}
        elif op is None:
            what = f"{method} {template} (no such method)"
            responses = {"405": fallback["wrong-method"]}
        else:
            what = f"{method} {template}"
            responses = op["responses"]
        resp = responses.get(str(status))
        if resp is None:
            raise SpecError(f"{what}: status {status} is not documented (documented: "
                            f"{', '.join(sorted(responses))})")
        return f"{what} -> {status}", self.resolve(resp)

    def check(self, method, path, status, body, content_type, headers=None):
        """Validates one response. body: the parsed JSON, the text of a
        non-JSON answer, or None when there was none. headers (optional): a
        dict with lower-case names, checked for the documented required
        headers. Returns the matched response object."""
        what, resp = self.response(method, path, status)
        content = resp.get("content") or {}
        if not content:
            if body not in (None, "", b""):
                raise SpecError(f"{what}: documented without a body, got {str(body)[:200]!r}")
            return resp
        media = (content_type or "").split(";")[0].strip().lower()
        if media not in content:
            raise SpecError(f"{what}: content type {content_type!r} is not documented "
                            f"({', '.join(content)})")
        mt = content[media]
        if media == "application/json":
            if body is None or isinstance(body, (str, bytes)):
                raise SpecError(f"{what}: a JSON body was expected, got {str(body)[:300]!r}")
            self.validate(mt.get("schema", {}), body, what)
        elif media == "text/csv":
            self.check_csv(mt, body, what)
        else:
            if not isinstance(body, str):
                raise SpecError(f"{what}: a text body was expected")
        for name, h in (resp.get("headers") or {}).items():
            h = self.resolve(h)
            if headers is None:
                continue
            value = headers.get(name.lower())
            if value is None:
                if h.get("required"):
                    raise SpecError(f"{what}: response header {name} missing")
                continue
            if "schema" in h:
                self.validate(h["schema"], value, f"{what}: header {name}")
        return resp

    def check_csv(self, mt, body, what):
        if not isinstance(body, str):
            raise SpecError(f"{what}: a CSV text body was expected")
        rows = list(csv.reader(io.StringIO(body)))
        if not rows:
            raise SpecError(f"{what}: CSV without a header row")
        item = self.resolve(mt.get("x-csv-item") or {})
        expected = set((item.get("properties") or {}).keys())
        header = rows[0]
        if expected and set(header) != expected:
            raise SpecError(f"{what}: CSV columns {header} are not the item's fields {sorted(expected)}")
        for i, row in enumerate(rows[1:], 2):
            if len(row) != len(header):
                raise SpecError(f"{what}: CSV row {i} has {len(row)} cells, the header {len(header)}")


_SPEC = None


def spec():
    global _SPEC
    if _SPEC is None:
        _SPEC = Spec(load())
    return _SPEC


def check(method, path, status, body, content_type, headers=None):
    return spec().check(method, path, status, body, content_type, headers)


def doc_role_table(path=None):
    """The role table of docs/admin-api.md: {(METHOD, template): {role: 'yes'|'own'|'—'}}.
    The payment callback's row (no roles) maps to {}."""
    path = path or os.path.join(os.path.dirname(HERE), "docs", "admin-api.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    table = {}
    roles = None
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "route":
            roles = cells[1:]
            continue
        m = re.match(r"^`(GET|PUT|POST|DELETE|PATCH) (/api/v1/[^`]*)`", cells[0])
        if not m or roles is None:
            continue
        key = (m.group(1), m.group(2))
        if len(cells) - 1 != len(roles):
            table[key] = {}
            continue
        table[key] = {}
        for role, cell in zip(roles, cells[1:]):
            if cell.startswith("yes"):
                table[key][role] = "yes"
            elif cell.startswith("own"):
                table[key][role] = "own"
            else:
                table[key][role] = "no"
    return table
