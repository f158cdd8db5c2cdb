"""SIGTERM: every client is told to reconnect elsewhere (1001) and the
process exits 0."""

import signal
import time

from wsclient import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, unique


def test_sigterm_closes_clients_1001(server, client):
    srv = server()
    room = unique("r")
    a = client(srv, room, "creator", SUBPROTOCOL_MSGPACK)
    b = client(srv, unique("v"), "viewer", SUBPROTOCOL_JSON)
    a.join(room)
    b.join(room)
    # One connection that has not authenticated yet.
    pending = srv.connect()
    start = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert a.wait_close(timeout=5) == 1001
    assert b.wait_close(timeout=5) == 1001
    assert pending.wait_close(timeout=5) == 1001
    rc = srv.proc.wait(timeout=10)
    assert rc == 0, srv.describe()
    assert time.monotonic() - start < 5


def test_readyz_says_stopping_while_draining(server, client):
    """From SIGTERM until the exit, /readyz answers 503 with "stopping":true
    (take the node out of the load balancer), new WebSocket connections are
    refused, and health checks are still answered."""
    import json

    from wsclient import ConnectionClosed, HandshakeRefused
    from helpers import wait_for
    srv = server()
    # Ready once Redis has passed its checks, a moment after the start.
    wait_for(lambda: srv.http_get("/readyz")[0] == 200, what="/readyz 200")
    assert json.loads(srv.http_get("/readyz")[2])["stopping"] is False
    # A client that never reads keeps the drain going (up to 2 s).
    silent = client(srv, unique("v"), "viewer")
    srv.signal(signal.SIGTERM)
    deadline = time.monotonic() + 2
    while True:
        status, _, body = srv.http_get("/readyz")
        if json.loads(body)["stopping"]:
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.01)
    assert status == 503, body
    assert json.loads(body) == {"redis": "ok", "postgres": "ok", "stopping": True}, body
    try:
        late = srv.connect(token=None)
        assert late.wait_close(timeout=5) == 1013
    except (HandshakeRefused, ConnectionClosed, OSError):
        pass  # refused before or during the handshake: refused too
    assert srv.proc.wait(timeout=10) == 0, srv.describe()
