"""Abuse of the HTTP side of the port (issue 9, items 2 and 6): upgrades that
would bind lws's plain "http" protocol, sockets that send nothing or half a
request or idle on keep-alive, and DNS rebinding against --demo. Each must
be refused or closed within its deadline, and /healthz and normal clients
must keep being answered."""

import base64
import os
import socket
import time

import pytest

from httpwire import parse_head, recv_http_head
from test_metrics import scrape, val
from wsclient import unique

# What a refused or timed-out socket may take to be closed by the server,
# beyond the configured deadline (the sweep, lws's one-second timer).
SLACK_S = 2.5
# http-timeout-s's default.
HTTP_TIMEOUT_DEFAULT_S = 5


def _open(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _upgrade_bytes(port, protocols=None, origin=None, host=None, token=None):
    target = "/ws" + (f"?token={token}" if token else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode(),
             "Sec-WebSocket-Version: 13"]
    if protocols is not None:
        lines.append("Sec-WebSocket-Protocol: " + protocols)
    if origin:
        lines.append("Origin: " + origin)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")


def _status(sock, timeout=5):
    """The status of the response on sock, or None when it closed first."""
    head, rest = recv_http_head(sock, time.monotonic() + timeout)
    if rest is None:
        return None
    return parse_head(head)[0]


def _closed_by(sock, deadline):
    """True when the server closes sock (EOF or reset) before deadline;
    whatever it sends first is read and dropped."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def _assert_serving(srv, mint):
    assert srv.http_get("/healthz")[0] == 200
    c = srv.connect(token=mint(unique("u")))
    c.expect("welcome")
    c.ping()


# ---- subprotocol lists that lws would bind to "http" ---------------------------

CONFUSED = [
    "http, tipcast.v1.json",
    "http,tipcast.v1.msgpack",
    "chat, http, tipcast.v1.json",
    "http",
    # Forms lws's tokenizer might read otherwise than a plain split: refused.
    "tipcast.v1.json,,http",
    '"tipcast.v1.json"',
    "tipcast.v1.json http",
    "tipcast.v1.json;http",
    "12, tipcast.v1.json",
    "",
]


@pytest.mark.parametrize("protocols", CONFUSED)
def test_confused_subprotocol_refused(server, mint, protocols):
    srv = server()
    s = _open(srv.port)
    try:
        s.sendall(_upgrade_bytes(srv.port, protocols, token=mint(unique("u"))))
        assert _status(s) == 400
        assert _closed_by(s, time.monotonic() + SLACK_S), "the refused upgrade's socket stayed open"
    finally:
        s.close()


@pytest.mark.parametrize("protocols,chosen", [
    ("tipcast.v1.json, http", "tipcast.v1.json"),
    ("chat,\ttipcast.v1.msgpack , http", "tipcast.v1.msgpack"),
])
def test_first_bindable_name_ours_accepted(server, mint, protocols, chosen):
    """lws binds the first listed name it serves: when that one is ours, the
    upgrade goes through on it, whatever follows."""
    srv = server()
    s = _open(srv.port)
    try:
        s.sendall(_upgrade_bytes(srv.port, protocols, token=mint(unique("u"))))
        head, rest = recv_http_head(s, time.monotonic() + 5)
        status, headers = parse_head(head)
        assert status == 101 and headers.get("sec-websocket-protocol") == chosen, (status, headers)
    finally:
        s.close()


def test_many_confused_upgrades_leave_the_node_serving(server, mint):
    """The attack of the issue: hundreds of `http, tipcast.v1.json` upgrades
    held open. Each is refused and its socket closed by the server, and the
    node goes on answering /healthz and new clients. Only settings that
    existed before are set, so that this runs against an older tipcastd."""
    srv = server(max_connections=16)
    socks = []
    try:
        for i in range(300):
            s = _open(srv.port)
            socks.append(s)
            order = ["http, tipcast.v1.json", "http,tipcast.v1.msgpack", "chat, http, tipcast.v1.json"][i % 3]
            s.sendall(_upgrade_bytes(srv.port, order, token=mint(unique("u"))))
        # None is upgraded: each answer is 400 (or 503 when the HTTP slots
        # were full at its accept, or nothing at all when closed).
        for s in socks:
            assert _status(s) in (400, 503, None)
        deadline = time.monotonic() + HTTP_TIMEOUT_DEFAULT_S + SLACK_S
        open_left = [s for s in socks if not _closed_by(s, deadline)]
        assert not open_left, f"{len(open_left)} of {len(socks)} sockets still open"
        _assert_serving(srv, mint)
    finally:
        for s in socks:
            s.close()


# ---- idle, half-sent and keep-alive HTTP sockets ------------------------------


def test_silent_half_and_keepalive_sockets_closed_in_time(server, mint):
    """With the default http-timeout-s (set by no flag, so that this runs
    against an older tipcastd too, whose lws held a silent socket 10 s)."""
    srv = server()
    limit = HTTP_TIMEOUT_DEFAULT_S + SLACK_S
    silent = [_open(srv.port) for _ in range(40)]
    half = [_open(srv.port) for _ in range(40)]
    for s in half:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    keepalive = [_open(srv.port) for _ in range(20)]
    for s in keepalive:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _status(s) == 200
    trickle = _open(srv.port)
    start = time.monotonic()
    try:
        # Below max-http-connections, the held sockets lock nobody out.
        _assert_serving(srv, mint)
        # A request that never ends, one byte at a time, is not a way around
        # the deadline either.
        closed = False
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            try:
                trickle.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if time.monotonic() - start > limit:
                break
            time.sleep(0.2)
        assert closed or _closed_by(trickle, start + limit), "a trickled request outlived the deadline"
        deadline = start + limit
        for kind, group in (("silent", silent), ("half-request", half), ("keep-alive", keepalive)):
            left = [s for s in group if not _closed_by(s, deadline)]
            assert not left, f"{len(left)} {kind} sockets still open {time.monotonic() - start:.1f}s on"
        _assert_serving(srv, mint)
    finally:
        for s in silent + half + keepalive + [trickle]:
            s.close()


@pytest.mark.parametrize("reuse_port", [0, 1])
def test_http_sockets_past_the_bound_refused_then_served(server, mint, reuse_port):
    """Past max-connections + max-http-connections client sockets a new one
    is answered 503 and closed at once, not queued; once the held ones reach
    their deadline, /healthz is answered again. WebSocket connections
    already open are not affected. Both listeners count: lws's, and
    tipcastd's own with reuse-port."""
    srv = server(max_connections=5, max_http_connections=20, http_timeout_s=2, reuse_port=reuse_port)
    ws = srv.connect(token=mint(unique("u")))
    ws.expect("welcome")
    # The one WebSocket leaves 4 + 20 sockets for the rest.
    held = [_open(srv.port) for _ in range(24)]
    try:
        time.sleep(0.3)  # the server has accepted them all
        extra = _open(srv.port)
        t = time.monotonic()
        assert _status(extra, timeout=3) in (503, None)
        assert _closed_by(extra, time.monotonic() + 1)
        assert time.monotonic() - t < 1.5
        extra.close()
        ws.ping()
        deadline = time.monotonic() + 2 + SLACK_S
        assert all(_closed_by(s, deadline) for s in held)
        _assert_serving(srv, mint)
    finally:
        for s in held:
            s.close()


def test_upgrades_under_way_use_the_websocket_headroom(server, mint):
    """A reconnect storm: more upgrades at once than max-http-connections
    all become WebSocket connections, since sockets under way may use what
    the WebSocket side leaves free."""
    srv = server(max_connections=200, max_http_connections=10)
    socks = [_open(srv.port) for _ in range(120)]
    try:
        for s in socks:
            s.sendall(_upgrade_bytes(srv.port, "tipcast.v1.json", token=mint(unique("u"))))
        assert [_status(s) for s in socks] == [101] * len(socks)
        _, m = scrape(srv)
        assert val(m, "tipcast_http_connections_refused_total") == 0, m
    finally:
        for s in socks:
            s.close()


# ---- DNS rebinding against --demo ------------------------------------------------


def _upgrade_status(srv, mint, origin, host):
    s = _open(srv.port)
    try:
        s.sendall(_upgrade_bytes(srv.port, "tipcast.v1.json", origin=origin, host=host,
                                 token=mint(unique("u"))))
        return _status(s)
    finally:
        s.close()


def test_demo_refuses_rebound_origin(server, mint):
    srv = server(demo=1)
    port = srv.port
    # Origin and Host agree, but the name could be anyone's: refused.
    assert _upgrade_status(srv, mint, f"http://evil.example:{port}", f"evil.example:{port}") == 403
    assert _upgrade_status(srv, mint, "http://evil.example", "evil.example") == 403
    # The page's own origin at a loopback name or an address still works.
    assert _upgrade_status(srv, mint, f"http://127.0.0.1:{port}", f"127.0.0.1:{port}") == 101
    assert _upgrade_status(srv, mint, f"http://localhost:{port}", f"localhost:{port}") == 101
    assert _upgrade_status(srv, mint, f"http://[::1]:{port}", f"[::1]:{port}") == 101
    # A mismatch is refused as before.
    assert _upgrade_status(srv, mint, f"http://localhost:{port}", f"127.0.0.1:{port}") == 403


def test_demo_token_needs_a_pinned_host(server):
    srv = server(demo=1)
    for host, want in ((f"evil.example:{srv.port}", 403), ("evil.example", 403),
                       (f"127.0.0.1:{srv.port}", 200), (f"localhost:{srv.port}", 200)):
        s = _open(srv.port)
        try:
            s.sendall(f"GET /demo/token?user=bob HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            assert _status(s) == want, host
        finally:
            s.close()


# ---- request bodies ----------------------------------------------------------------


def test_request_with_a_body_refused_and_closed(server):
    """No page takes a body, and lws restarts its deadline at each piece of
    one: a body trickled a byte at a time would hold the socket. A request
    announcing a body is answered 413 and closed at once."""
    srv = server()
    s = _open(srv.port)
    try:
        s.sendall(b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\na")
        assert _status(s) == 413
        assert _closed_by(s, time.monotonic() + SLACK_S)
    finally:
        s.close()
    # An empty body is no body.
    s = _open(srv.port)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        assert _status(s) == 200
    finally:
        s.close()
