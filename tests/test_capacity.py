"""Admission: a node at max-connections accepts the upgrade and closes at
once with 1013 (try again later), so that the client moves to another node."""

import time

from wsclient import unique


def test_full_node_closes_1013(server, client, mint):
    srv = server(max_connections=2)
    a = client(srv, unique("u"))
    client(srv, unique("u"))
    extra = srv.connect(token=mint(unique("u")))
    assert extra.wait_close() == 1013
    # Health checks are not client connections: the node still answers them.
    assert srv.http_get("/healthz")[0] == 200
    # A freed slot is usable again.
    a.close()
    deadline = time.monotonic() + 5
    while True:
        c = srv.connect(token=mint(unique("u")))
        m = None
        try:
            m = c.recv(timeout=2)
        except AssertionError:
            pass
        if m and m["type"] == "welcome":
            break
        assert time.monotonic() < deadline, f"no slot freed: {m!r} close {c.close_code}"
        time.sleep(0.1)
    c.ping()
