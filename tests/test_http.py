"""Health checks on the WebSocket port: /healthz (the process is up) and
/readyz (its backends answer)."""

import json
import time

import pytest

import wsclient
from wsclient import SUBPROTOCOL_JSON


def _readyz(body):
    """The /readyz body: {"redis": "ok"|..., "postgres": "ok"|...}."""
    doc = json.loads(body)
    assert isinstance(doc, dict), doc
    assert isinstance(doc.get("redis"), str) and isinstance(doc.get("postgres"), str), doc
    return doc


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
    doc = _readyz(body)
    assert doc["redis"] == "ok" and doc["postgres"] == "ok", doc


def test_readyz_503_without_postgres(server):
    srv = server(pg="host=127.0.0.1 port=1 dbname=x connect_timeout=1")
    # Give the server time to try PostgreSQL; it must never claim readiness.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        status, _, body = srv.http_get("/readyz")
        assert status == 503, (status, body)
        assert srv.http_get("/healthz")[0] == 200
        time.sleep(0.25)
    doc = _readyz(body)
    assert doc["redis"] == "ok" and doc["postgres"] != "ok", doc


def test_readyz_503_without_redis(server):
    srv = server(redis_port=1)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        status, _, body = srv.http_get("/readyz")
        assert status == 503, (status, body)
        assert srv.http_get("/healthz")[0] == 200
        time.sleep(0.25)
    doc = _readyz(body)
    assert doc["redis"] != "ok", doc


def test_unknown_path_404(server):
    srv = server()
    status, _, _ = srv.http_get("/nope")
    assert status == 404


def test_websocket_path_without_upgrade(server):
    srv = server()
    status, _, _ = srv.http_get("/ws")
    assert 400 <= status < 500, status


def test_upgrade_on_other_path_404(server, mint):
    srv = server()
    for path in ("/other", "/", "/ws/x", "/wss"):
        with pytest.raises(wsclient.HandshakeRefused) as e:
            wsclient.connect(srv.port, subprotocol=SUBPROTOCOL_JSON, path=path,
                             token=mint(wsclient.unique("u")))
        assert e.value.status_code == 404, (path, e.value)
    # Query strings still reach /ws.
    c = wsclient.connect(srv.port, subprotocol=SUBPROTOCOL_JSON, path="/ws?x=1",
                         token=mint(wsclient.unique("u")))
    c.expect("welcome")
    c.close()
