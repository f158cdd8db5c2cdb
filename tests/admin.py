"""The client of the admin API tests (docs/admin-api.md).

AdminClient(base_url).call(method, path, token=None, body=None, raw_body=None,
headers=None, query=None) -> (status, headers, json or text). Every answer is
checked against docs/openapi.yaml (tests/apispec.py) before it is returned,
so every admin test validates every response it gets. One request per
connection (Connection: close), standard library only.
"""

import hashlib
import hmac
import http.client
import json
import time
import urllib.parse

import apispec
from conftest import free_port, mint_token
from wsclient import unique

PAYMENT_SECRET = "tipcast-test-payment-secret-0123456789"


def sign_callback(secret, body_bytes, ts):
    """The X-Tipcast-Signature of a payment callback: sha256=hex(HMAC-SHA256(
    secret, "<ts>.<raw body>"))."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, str(ts).encode() + b"." + body_bytes, hashlib.sha256).hexdigest()
    return "sha256=" + mac


class AdminClient:
    def __init__(self, base_url, timeout=30, check=True):
        u = urllib.parse.urlsplit(base_url)
        self.host = u.hostname
        self.port = u.port or 80
        self.timeout = timeout
        self.check_spec = check
        self.calls = 0

    def call(self, method, path, token=None, body=None, raw_body=None, headers=None, query=None,
             request_id=None, check=None):
        """One request. body is sent as JSON; raw_body (bytes or str) as it
        is. query: a dict (or a list of pairs) appended to the path.
        Returns (status, headers with lower-case names, parsed JSON when the
        answer is application/json, else the text)."""
        target = path
        if query:
            target += ("&" if "?" in path else "?") + urllib.parse.urlencode(query)
        hdrs = {"Connection": "close"}
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if request_id is not None:
            hdrs["X-Request-Id"] = request_id
        data = None
        if raw_body is not None:
            data = raw_body.encode() if isinstance(raw_body, str) else raw_body
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            hdrs["Content-Type"] = "application/json"
        for k, v in (headers or {}).items():
            if v is None:
                hdrs.pop(k, None)
            else:
                hdrs[k] = v
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            try:
                conn.request(method, target, body=data, headers=hdrs)
                resp = conn.getresponse()
                raw = resp.read()
            except (ConnectionResetError, BrokenPipeError) as e:
                # A server that refuses a body may answer and close before it
                # has read all of it: the answer is still there to read.
                raise AssertionError(f"{method} {target}: connection error {e!r}") from e
            status = resp.status
            rh = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        self.calls += 1
        ctype = rh.get("content-type", "")
        text = raw.decode("utf-8", "replace")
        if ctype.split(";")[0].strip().lower() == "application/json":
            try:
                parsed = json.loads(text)
            except ValueError as e:
                raise AssertionError(f"{method} {target} -> {status}: application/json that is not JSON: "
                                     f"{text[:300]!r}") from e
        else:
            parsed = text if raw else None
        if (self.check_spec if check is None else check):
            try:
                apispec.check(method, target, status, parsed, ctype, rh)
            except apispec.SpecError as e:
                raise apispec.SpecError(f"{method} {target}: {e}") from None
            if request_id is not None and urllib.parse.urlsplit(target).path.startswith("/api/"):
                assert rh.get("x-request-id") == request_id, (method, target, rh)
        return status, rh, parsed

    def get(self, path, token=None, **kw):
        return self.call("GET", path, token=token, **kw)

    def post(self, path, token=None, body=None, **kw):
        return self.call("POST", path, token=token, body=body, **kw)

    def put(self, path, token=None, body=None, **kw):
        return self.call("PUT", path, token=token, body=body, **kw)

    def callback(self, secret, payload, ts=None, raw_body=None, request_id=None, signature=None):
        """Delivers a payment callback signed with secret (at time ts, default now)."""
        ts = int(time.time()) if ts is None else ts
        data = raw_body if raw_body is not None else json.dumps(payload, separators=(",", ":")).encode()
        sig = signature if signature is not None else sign_callback(secret, data, ts)
        return self.call("POST", "/api/v1/payments/callback", raw_body=data, request_id=request_id,
                         headers={"X-Tipcast-Timestamp": str(ts), "X-Tipcast-Signature": sig})

    def pages(self, path, token, query=None, limit=50):
        """Every item of a paginated list, following next; returns (items, pages)."""
        q = dict(query or {})
        q["limit"] = limit
        items, pages = [], 0
        while True:
            status, _, body = self.get(path, token, query=q)
            assert status == 200, (path, status, body)
            pages += 1
            items += body["items"]
            if body["next"] is None:
                return items, pages
            assert pages < 10000, "pagination does not end"
            q["after"] = body["next"]


def admin_flags(**extra):
    """The settings of a tipcastd for the admin tests (pass to the server
    fixture): its admin listener on a free port and the payment secret."""
    port = free_port()
    flags = {"admin_listen": f"127.0.0.1:{port}", "payment_secret": PAYMENT_SECRET}
    flags.update(extra)
    return port, flags


def start(factory, **extra):
    """Starts tipcastd with an admin listener; returns (server, AdminClient).
    Waits for the admin listener's /healthz too."""
    port, flags = admin_flags(**extra)
    srv = factory(**flags)
    client = AdminClient(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 15
    while True:
        try:
            st, _, _ = client.get("/readyz")
            if st == 200:
                break
        except (OSError, AssertionError):
            pass
        assert time.monotonic() < deadline, "the admin listener did not answer /readyz with 200"
        time.sleep(0.1)
    # Ready also for the API: its PostgreSQL connections are opened after
    # the start, and until then a call is 503 unavailable (to be retried,
    # as the contract says), which the tests should not have to expect.
    probe = mint_token("readiness-probe", "auditor")
    while True:
        st, _, _ = client.get("/api/v1/revenue-rules", probe)
        if st != 503:
            assert st == 200, st
            break
        assert time.monotonic() < deadline, "the admin API answered 503 for 15 s after the start"
        time.sleep(0.1)
    srv.admin = client
    return srv, client


def tok(role, sub=None):
    """A token of role for sub (default a fresh id)."""
    return mint_token(sub or unique(role[:3]), role)

