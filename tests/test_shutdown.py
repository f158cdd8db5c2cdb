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
