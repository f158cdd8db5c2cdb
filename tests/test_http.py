"""Health checks on the WebSocket port: /healthz (the process is up) and
/readyz (its backends answer)."""

import json
import time

import wsclient
from wsclient import SUBPROTOCOL_JSON


def _ok(v):
    """A backend status that says ok, in any of the usual shapes."""
    if v is True:
        return True
    if isinstance(v, str):
        return v.lower() in ("ok", "up", "ready")
    if isinstance(v, dict):
        return any(_ok(v.get(k)) for k in ("ok", "status", "state"))
    return False


def _backend(body, *names):
    """The status entry of a backend in a /readyz JSON body."""
    doc = json.loads(body)
    assert isinstance(doc, dict), doc
    scopes = [doc] + [v for v in doc.values() if isinstance(v, dict)]
    for scope in scopes:
        for name in names:
            if name in scope:
                return scope[name]
    raise AssertionError(f"no {names} in /readyz body {doc!r}")


def test_healthz(server):
    srv = server()
    status, _, _ = srv.http_get("/healthz")
    assert status == 200


def test_readyz_ok(server):
    srv = server()
    deadline = time.monotonic() + 5
    while True:
        status, headers, body = srv.http_get("/readyz")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200, body
    assert "json" in headers.get("content-type", ""), headers
    assert _ok(_backend(body, "redis")), body
    assert _ok(_backend(body, "postgres", "postgresql", "pg")), body


def test_readyz_503_without_postgres(server):
    srv = server(pg="host=127.0.0.1 port=1 dbname=x connect_timeout=1")
    # Give the server time to try PostgreSQL; it must never claim readiness.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        status, _, body = srv.http_get("/readyz")
        assert status == 503, (status, body)
        assert srv.http_get("/healthz")[0] == 200
        time.sleep(0.25)
    assert not _ok(_backend(body, "postgres", "postgresql", "pg")), body


def test_readyz_503_without_redis(server):
    srv = server(redis_port=1)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        status, _, body = srv.http_get("/readyz")
        assert status == 503, (status, body)
        assert srv.http_get("/healthz")[0] == 200
        time.sleep(0.25)


def test_unknown_path_404(server):
    srv = server()
    status, _, _ = srv.http_get("/nope")
    assert status == 404


def test_websocket_path_without_upgrade(server):
    srv = server()
    status, _, _ = srv.http_get("/ws")
    assert 400 <= status < 500, status


def test_wrong_websocket_path(server):
    srv = server()
    try:
        c = wsclient.connect(srv.port, subprotocol=SUBPROTOCOL_JSON, path="/other")
    except wsclient.HandshakeRefused as e:
        assert e.status_code is None or 400 <= e.status_code < 500, e
    else:
        c.close()
        raise AssertionError("a WebSocket upgrade on /other was accepted")
