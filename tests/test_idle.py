"""Server pings and the idle timeout (close 4010)."""

import time

from wsclient import OP_PING, OP_PONG, unique


def test_server_pings(server, mint):
    srv = server(ping_interval_s=1, idle_timeout_s=30)
    c = srv.connect(token=mint(unique("u")), auto_pong=False)
    c.expect("welcome")
    op, payload = c.recv_frame(timeout=3)
    assert op == OP_PING
    # A non-empty payload of ASCII digits (the server's clock), so that the
    # echoed pong is never empty and is valid UTF-8.
    assert payload and payload.isdigit(), payload


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


def test_browser_pongs_after_a_text_message_keep_connection_open(server, mint):
    """A browser echoes the ping's payload in its pong. Once the connection
    has carried a text message, lws checks that pong as UTF-8 (it used to
    close with 1007 when the payload was 8 raw clock bytes), so the payload
    must be text. The client sends a message first, then answers three pings
    exactly as a browser does and must still be served."""
    srv = server(ping_interval_s=1, idle_timeout_s=30)
    c = srv.connect(token=mint(unique("u")), auto_pong=False)
    c.expect("welcome")
    c.ping()  # a text message in each direction
    payloads = []
    deadline = time.monotonic() + 6
    while len(payloads) < 3 and time.monotonic() < deadline:
        op, payload = c.recv_frame(timeout=3)
        assert op == OP_PING, (op, payload)  # a close (1007) here was the bug
        c.send_frame(OP_PONG, payload)
        payloads.append(payload)
    assert len(payloads) == 3
    for p in payloads:  # what a browser's engine (and lws) checks
        assert p.decode("utf-8", "replace").encode() == p, p
    c.ping()
    c.close()
