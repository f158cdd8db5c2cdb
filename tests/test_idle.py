"""Server pings and the idle timeout (close 4010)."""

import time

from wsclient import OP_PING, unique


def test_server_pings(server, mint):
    srv = server(ping_interval_s=1, idle_timeout_s=30)
    c = srv.connect(token=mint(unique("u")), auto_pong=False)
    c.expect("welcome")
    op, payload = c.recv_frame(timeout=3)
    assert op == OP_PING
    # An 8-byte payload, so that the echoed pong is never empty.
    assert len(payload) == 8, payload


def test_idle_connection_closed_4010(server, mint):
    srv = server(ping_interval_s=1, idle_timeout_s=2)
    c = srv.connect(token=mint(unique("u")), auto_pong=False)
    c.expect("welcome")
    start = time.monotonic()
    assert c.wait_close(timeout=6) == 4010
    assert time.monotonic() - start >= 1.5


def test_pongs_keep_connection_open(server, mint):
    """Pongs echoing the ping payload (what browsers do) count as activity."""
    srv = server(ping_interval_s=1, idle_timeout_s=2)
    c = srv.connect(token=mint(unique("u")))  # answers pings
    c.expect("welcome")
    c.assert_silent(3.5)
    assert c.pings_received >= 2
    c.ping()
