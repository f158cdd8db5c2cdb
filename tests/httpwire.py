"""The HTTP/1.1 side of the tipcast end-to-end tests' raw client: plain
requests (/healthz, the page, /demo/token), the head of a WebSocket
upgrade's answer, and the exceptions the clients raise. Standard library
only; everything the server sends is parsed strictly and bounded."""

import socket
import ssl
import time

# Bounds on what the client accepts from the server, so that a broken server
# fails a test instead of exhausting the test's memory.
HTTP_HEAD_MAX = 65536


class HandshakeRefused(Exception):
    """The server answered the upgrade request with a status other than 101.

    status_code is None when the server closed the connection without any
    HTTP response."""

    def __init__(self, status_code, body, headers=None):
        super().__init__(f"handshake refused: HTTP {status_code}: {body[:200]!r}")
        self.status_code = status_code
        self.body = body
        self.headers = headers or {}


class ConnectionClosed(AssertionError):
    """The connection ended while the test waited for a message.

    code is the close code the server sent (1005 when its close frame had
    none), or 1006 when the TCP connection ended without a close frame."""

    def __init__(self, code, reason=""):
        super().__init__(f"connection closed by server: code {code} reason {reason!r}")
        self.code = code
        self.reason = reason


class RecvTimeout(AssertionError):
    """Nothing (or not the expected thing) arrived within the timeout."""


class ProtocolViolation(AssertionError):
    """The server sent bytes that break RFC 6455 or the tipcast framing rule."""


def recv_http_head(sock, deadline):
    """Reads an HTTP response head; returns (head bytes, bytes read past it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > HTTP_HEAD_MAX:
            raise ProtocolViolation("HTTP response head too long")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RecvTimeout(f"no complete HTTP response head; got {buf[:300]!r}")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            chunk = b""
        if not chunk:
            return buf, None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def parse_head(head):
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ProtocolViolation(f"bad HTTP status line {lines[0]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


def read_http_body(sock, headers, rest, deadline):
    """Reads a body framed by Content-Length, chunked encoding or EOF."""
    body = rest or b""

    def more():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RecvTimeout(f"HTTP body incomplete; got {body[:300]!r}")
        sock.settimeout(remaining)
        try:
            return sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return b""

    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(body) < n:
            chunk = more()
            if not chunk:
                break
            body += chunk
        return body[:n]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        raw = body
        out = b""
        while True:
            while b"\r\n" not in raw:
                chunk = more()
                if not chunk:
                    return out
                raw += chunk
            line, _, raw = raw.partition(b"\r\n")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return out
            while len(raw) < size + 2:
                chunk = more()
                if not chunk:
                    return out + raw[:size]
                raw += chunk
            out += raw[:size]
            raw = raw[size + 2:]
    while True:
        chunk = more()
        if not chunk:
            return body
        body += chunk


def open_socket(host, port, tls, timeout, rcvbuf=None, source=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source is not None:
        sock.bind((source, 0))  # another loopback address: another client address
    if rcvbuf is not None:
        # Must be set before connect() so that the TCP window is small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    sock.connect((host, port))
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    return sock


def http_request(port, path, method="GET", host="127.0.0.1", tls=False, headers=None,
                 timeout=5):
    """Sends one HTTP/1.1 request on a fresh connection.

    Returns (status, headers dict with lower-case names, body bytes)."""
    deadline = time.monotonic() + timeout
    sock = open_socket(host, port, tls, timeout)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1"))
        head, rest = recv_http_head(sock, deadline)
        if rest is None:
            raise ConnectionClosed(1006, f"no HTTP response; got {head[:300]!r}")
        status, hdrs = parse_head(head)
        body = b"" if method == "HEAD" else read_http_body(sock, hdrs, rest, deadline)
        return status, hdrs, body
    finally:
        sock.close()


def http_get(port, path, **kw):
    return http_request(port, path, "GET", **kw)
