"""Health checks on the WebSocket port: /healthz (the process is up) and
/readyz (its backends answer)."""

import json
import time

import pytest

import wsclient
from helpers import wait_for
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


def wait_readyz(srv, want_status, timeout):
    """Polls /readyz until it answers want_status; returns the body."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = srv.http_get("/readyz")
        if status == want_status:
            return _readyz(body)
        assert time.monotonic() < deadline, f"/readyz still {status} {body!r}"
        time.sleep(0.2)


def test_readyz_follows_postgres(proxies, server):
    pg, conninfo = proxies.pg()
    srv = server(pg=conninfo)
    assert wait_readyz(srv, 200, 5)["postgres"] == "ok"
    pg.cut()
    doc = wait_readyz(srv, 503, 15)
    assert doc["postgres"] != "ok" and doc["redis"] == "ok", doc
    assert srv.http_get("/healthz")[0] == 200
    pg.restore()
    doc = wait_readyz(srv, 200, 15)
    assert doc["postgres"] == "ok", doc


def test_readyz_follows_redis(proxies, server, client):
    rp = proxies.redis()
    srv = server(redis_port=rp.port)
    wait_readyz(srv, 200, 5)
    room = "r" + wsclient.unique("")
    creator = client(srv, room, "creator")
    creator.join(room)
    rp.cut()
    doc = wait_readyz(srv, 503, 15)
    assert doc["redis"] != "ok", doc
    assert srv.http_get("/healthz")[0] == 200
    # Requests that need Redis are refused as retryable; ping still works.
    creator.ping()
    r = creator.request({"type": "notice", "id": "n-down", "room": room, "text": "x"}, timeout=10)
    assert r["type"] == "error" and r["code"] == "unavailable", r
    assert isinstance(r.get("retry_after_ms"), int) and r["retry_after_ms"] > 0, r
    rp.restore()
    wait_readyz(srv, 200, 15)
    # Back to normal: the room's sequence went on from where it was.
    deadline = time.monotonic() + 10
    while True:
        r = creator.request({"type": "notice", "id": wsclient.unique("n"), "room": room,
                             "text": "back"}, timeout=10)
        if r["type"] == "ack" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r["type"] == "ack" and r["seq"] == 1, r


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


def _listeners(port):
    """The sockets listening on TCP port: (local address, owning pid), from ss."""
    import re
    import subprocess
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, timeout=10).stdout
    found = []
    for line in out.splitlines():
        local = line.split()[3]
        if not local.endswith(f":{port}"):
            continue
        pid = re.search(r"pid=(\d+)", line)
        found.append((local, int(pid.group(1)) if pid else None))
    return sorted(found, key=lambda f: (f[0], f[1] or 0))  # (ss names no pid for a socket being torn down)


def test_listens_only_on_listen_addr(server):
    """The default 127.0.0.1 means loopback only, not every interface."""
    srv = server()
    assert _listeners(srv.port) == [(f"127.0.0.1:{srv.port}", srv.pid)], _listeners(srv.port)


def test_reuse_port_shares_one_port(server, client):
    """Several processes on one port with --reuse-port: both serve."""
    from conftest import free_port
    port = free_port()
    a = server(port=port, reuse_port=1)
    b = server(port=port, reuse_port=1)
    # b's /healthz answered through a's socket maybe: wait for b's own.
    want = sorted([(f"127.0.0.1:{port}", a.pid), (f"127.0.0.1:{port}", b.pid)])
    wait_for(lambda: _listeners(port) == want, timeout=10, what=f"both listeners (have {_listeners(port)})")
    room = "r" + wsclient.unique("")
    for srv in (a, b):
        c = client(srv, room, "creator")
        assert c.join(room)["room"] == room
