"""A small raw WebSocket client (RFC 6455) for the tipcast end-to-end tests.

It is written on plain sockets (and ssl for wss) so that a test controls every
byte it sends: it can send masked frames of any opcode, fragments, invalid
UTF-8, frames larger than the server allows, or bytes that are no frame at
all. Everything the server sends is parsed strictly: a server frame that is
masked, carries RSV bits, or uses a reserved opcode fails the test, and on the
tipcast subprotocols a message in the wrong frame type (text on msgpack,
binary on JSON) fails it too.

Only the standard library and msgpack are used.
"""

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import time
import urllib.parse
import uuid

import msgpack

from httpwire import (  # noqa: F401 (re-exported: tests import them from here)
    ConnectionClosed,
    HandshakeRefused,
    ProtocolViolation,
    RecvTimeout,
    http_get,
    http_request,
    open_socket,
    parse_head,
    read_http_body,
    recv_http_head,
)

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

SUBPROTOCOL_JSON = "tipcast.v1.json"
SUBPROTOCOL_MSGPACK = "tipcast.v1.msgpack"
SUBPROTOCOLS = (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Bound on a message the client accepts from the server, so that a broken
# server fails a test instead of exhausting the test's memory.
MESSAGE_MAX = 16 * 1024 * 1024


def unique(prefix="r"):
    """A fresh id, valid as a user, room or request id."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def encode_frame(opcode, payload, fin=True, mask=True, rsv=0, mask_key=None,
                 declared_len=None):
    """Builds one frame. declared_len lies about the length when given."""
    payload = bytes(payload)
    b0 = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    n = len(payload) if declared_len is None else declared_len
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        head += key
        payload = _apply_mask(payload, key)
    return head + payload


def _apply_mask(data, key):
    if not data:
        return b""
    # XOR four bytes at a time through one big integer: fast enough for MBs.
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


class WSClient:
    """One client connection. Create it with connect()."""

    def __init__(self, sock, subprotocol, leftover, response_headers, auto_pong=True):
        self.sock = sock
        self.subprotocol = subprotocol
        self.response_headers = response_headers
        self.auto_pong = auto_pong
        self.buf = bytearray(leftover)
        self.backlog = []          # decoded messages read but not yet returned
        self.seen = []             # every decoded message, for failure reports
        self._unbatched = []       # events of a batch not yet returned
        self.batches_received = 0  # "events" batches seen
        self.close_code = None     # set when the server's close frame arrives
        self.close_reason = None
        self.eof = False
        self.sent_close = False
        self.pings_received = 0
        self._frag_op = None
        self._frag_data = bytearray()

    # ---------------------------------------------------------------- sending

    def send_raw(self, data):
        """Writes bytes as they are (no framing)."""
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0, declared_len=None):
        """Sends one frame, masked unless mask=False, with any opcode."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        self.sock.sendall(encode_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv,
                                       declared_len=declared_len))
        if opcode == OP_CLOSE:
            self.sent_close = True

    def encode(self, obj):
        """Returns (opcode, payload) of obj in this connection's subprotocol."""
        if self.subprotocol == SUBPROTOCOL_MSGPACK:
            return OP_BINARY, msgpack.packb(obj, use_bin_type=True)
        return OP_TEXT, json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def send(self, obj):
        """Sends one message: a msgpack binary frame or a JSON text frame."""
        op, payload = self.encode(obj)
        self.send_frame(op, payload)

    def send_many(self, objs):
        """Sends many messages in one write (pipelining)."""
        out = bytearray()
        for obj in objs:
            op, payload = self.encode(obj)
            out += encode_frame(op, payload)
        self.sock.sendall(out)

    def request(self, obj, timeout=5):
        """Sends obj and returns the first reply naming its id (any type)."""
        self.send(obj)
        return self.expect(None, timeout=timeout, id=obj["id"])

    # ------------------------------------------------- tipcast conveniences

    def join(self, room, timeout=5):
        """Joins room; returns the joined snapshot (fails on an error)."""
        r = self.request({"type": "join", "id": unique("j"), "room": room}, timeout=timeout)
        assert r["type"] == "joined", r
        assert r.get("room") == room, r
        return r

    def leave(self, room, timeout=5):
        return self.request({"type": "leave", "id": unique("l"), "room": room}, timeout=timeout)

    def notice(self, room, text, timeout=5):
        """Sends a notice as a request; returns the ack's seq (fails on an error)."""
        r = self.request({"type": "notice", "id": unique("n"), "room": room, "text": text},
                         timeout=timeout)
        assert r["type"] == "ack", r
        assert r.get("room") == room, r
        assert isinstance(r.get("seq"), int), r
        return r["seq"]

    def ping(self, timeout=5):
        """Sends a ping request; returns the pong (fails otherwise)."""
        rid = unique("p")
        r = self.request({"type": "ping", "id": rid}, timeout=timeout)
        assert r["type"] == "pong", r
        return r

    # ---------------------------------------------------------------- receiving

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            if self.eof:
                raise ConnectionClosed(1006, "TCP connection ended without a close frame")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RecvTimeout("timed out waiting for data")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(262144)
            except (socket.timeout, TimeoutError):
                raise RecvTimeout("timed out waiting for data") from None
            except ssl.SSLWantReadError:
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                chunk = b""
            if not chunk:
                self.eof = True
                raise ConnectionClosed(1006, "TCP connection ended without a close frame")
            self.buf += chunk

    def _read_one_frame(self, deadline):
        """Parses one frame from the wire: (fin, opcode, payload)."""
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        fin = bool(b0 & 0x80)
        rsv = (b0 >> 4) & 0x7
        opcode = b0 & 0xF
        masked = bool(b1 & 0x80)
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack_from("!H", self.buf, 2)[0]
            pos = 4
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack_from("!Q", self.buf, 2)[0]
            pos = 10
        if rsv:
            raise ProtocolViolation(f"server frame with RSV bits {rsv:#x}")
        if masked:
            raise ProtocolViolation("server frame is masked (RFC 6455 5.1 forbids it)")
        if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise ProtocolViolation(f"server frame with reserved opcode {opcode:#x}")
        if opcode >= 0x8 and (n > 125 or not fin):
            raise ProtocolViolation(f"server control frame {opcode:#x} len {n} fin {fin}")
        if n > MESSAGE_MAX:
            raise ProtocolViolation(f"server frame of {n} bytes")
        self._fill(pos + n, deadline)
        payload = bytes(self.buf[pos:pos + n])
        del self.buf[:pos + n]
        return fin, opcode, payload

    def _handle_close(self, payload):
        if len(payload) >= 2:
            code = struct.unpack("!H", payload[:2])[0]
            # RFC 6455 7.4: 1004-1006 and 1015 never go on the wire, and
            # codes below 1000 or from 5000 up are not defined.
            if code < 1000 or code >= 5000 or code in (1004, 1005, 1006, 1015):
                raise ProtocolViolation(f"server sent close code {code}")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolViolation(f"close reason is not UTF-8: {payload[2:]!r}") from None
            self.close_code = code
            self.close_reason = reason
        elif not payload:
            self.close_code = 1005
            self.close_reason = ""
        else:
            raise ProtocolViolation("close frame with a 1-byte payload")
        if not self.sent_close:
            # Echo the close, as RFC 6455 5.5.1 asks; the server may already
            # have dropped the connection, which is fine.
            try:
                self.send_frame(OP_CLOSE, payload[:2])
            except OSError:
                pass

    def recv_frame(self, timeout=5, control=False):
        """Returns the next message as (opcode, payload).

        Fragmented messages are reassembled and returned with their first
        opcode. Server pings are answered with a pong and skipped, unless
        auto_pong is False, in which case they are returned. Pongs are
        skipped. With control=True every ping and pong is returned too (pings
        are still answered when auto_pong is set). A close frame is returned
        as (OP_CLOSE, payload) after it has been recorded in close_code /
        close_reason and echoed."""
        if self.close_code is not None:
            raise ConnectionClosed(self.close_code, self.close_reason)
        deadline = time.monotonic() + timeout
        while True:
            fin, opcode, payload = self._read_one_frame(deadline)
            if opcode == OP_PING:
                self.pings_received += 1
                if self.auto_pong:
                    try:
                        self.send_frame(OP_PONG, payload)
                    except OSError:
                        pass
                    if not control:
                        continue
                return opcode, payload
            if opcode == OP_PONG:
                if control:
                    return opcode, payload
                continue
            if opcode == OP_CLOSE:
                self._handle_close(payload)
                return opcode, payload
            if opcode == OP_CONT:
                if self._frag_op is None:
                    raise ProtocolViolation("continuation frame without a first fragment")
                self._frag_data += payload
                if len(self._frag_data) > MESSAGE_MAX:
                    raise ProtocolViolation("fragmented server message too long")
                if fin:
                    op, data = self._frag_op, bytes(self._frag_data)
                    self._frag_op = None
                    self._frag_data = bytearray()
                    return op, data
                continue
            if self._frag_op is not None:
                raise ProtocolViolation("new data frame inside a fragmented message")
            if not fin:
                self._frag_op = opcode
                self._frag_data = bytearray(payload)
                continue
            return opcode, payload

    def decode(self, opcode, payload):
        if self.subprotocol == SUBPROTOCOL_MSGPACK and opcode != OP_BINARY:
            raise ProtocolViolation(f"non-binary frame {opcode:#x} on msgpack: {payload[:200]!r}")
        if self.subprotocol == SUBPROTOCOL_JSON and opcode != OP_TEXT:
            raise ProtocolViolation(f"non-text frame {opcode:#x} on json: {payload[:200]!r}")
        if opcode == OP_BINARY:
            try:
                obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            except Exception as e:
                raise ProtocolViolation(f"server sent bad msgpack {payload[:200]!r}: {e}")
        else:
            try:
                obj = json.loads(payload.decode("utf-8"))
            except Exception as e:
                raise ProtocolViolation(f"server sent bad JSON {payload[:200]!r}: {e}")
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise ProtocolViolation(f"server message is not a map with a type: {obj!r}")
        return obj

    def _recv_new(self, deadline):
        """Reads and decodes the next message from the wire (no backlog)."""
        if self._unbatched:
            return self._unbatched.pop(0)
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            opcode, payload = self.recv_frame(timeout=remaining)
            if opcode == OP_CLOSE:
                raise ConnectionClosed(self.close_code, self.close_reason)
            if opcode == OP_PING:      # only with auto_pong=False
                continue
            msg = self.decode(opcode, payload)
            if msg.get("type") == "events":
                # A batch of room events (the server coalesces events for a
                # member that is behind): handed out one by one, in order.
                evs = msg.get("events")
                if not isinstance(evs, list) or len(evs) < 2:
                    raise ProtocolViolation(f"bad events batch: {_short([msg])}")
                for ev in evs:
                    if ev.get("type") != "event" or ev.get("room") != msg.get("room"):
                        raise ProtocolViolation(f"bad event in a batch: {ev!r}")
                self.batches_received += 1
                self.seen.extend(evs)
                self._unbatched.extend(evs[1:])
                return evs[0]
            self.seen.append(msg)
            return msg

    def recv(self, timeout=5):
        """Returns the next decoded message (a dict)."""
        if self.backlog:
            return self.backlog.pop(0)
        return self._recv_new(time.monotonic() + timeout)

    def expect(self, type_, timeout=5, id=None, **match):
        """Returns the next message of type type_ (None: any type) whose id is
        id (when given) and whose keys equal match. Other messages stay queued,
        in order, for later recv/expect calls. Fails, listing the messages seen,
        when none arrives within timeout."""

        def ok(m):
            if type_ is not None and m.get("type") != type_:
                return False
            if id is not None and m.get("id") != id:
                return False
            return all(m.get(k) == v for k, v in match.items())

        for i, m in enumerate(self.backlog):
            if ok(m):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            try:
                m = self._recv_new(deadline)
            except RecvTimeout:
                raise RecvTimeout(
                    f"no {type_ or 'message'} (id={id}, {match}) within {timeout}s; "
                    f"queued: {_short(self.backlog)}; last seen: {_short(self.seen[-10:])}"
                ) from None
            except ConnectionClosed as e:
                raise ConnectionClosed(
                    e.code, f"{e.reason} (while waiting for {type_} id={id}; "
                            f"queued: {_short(self.backlog)})") from None
            if ok(m):
                return m
            self.backlog.append(m)

    def expect_error(self, code, timeout=5, id=None):
        """Returns the next error message and checks its code."""
        m = self.expect("error", timeout=timeout, id=id)
        assert m.get("code") == code, f"expected error {code}, got {m!r}"
        return m

    def assert_silent(self, timeout=0.3):
        """Fails when any message arrives within timeout."""
        if self.backlog:
            raise AssertionError(f"unexpected queued messages: {_short(self.backlog)}")
        try:
            m = self._recv_new(time.monotonic() + timeout)
        except RecvTimeout:
            return
        raise AssertionError(f"unexpected message: {m!r}")

    def drain(self, timeout=0.2):
        """Discards whatever arrives within timeout; returns it."""
        got = list(self.backlog)
        self.backlog.clear()
        deadline = time.monotonic() + timeout
        while True:
            try:
                got.append(self._recv_new(deadline))
            except RecvTimeout:
                return got

    def wait_close(self, timeout=5):
        """Reads (and discards) messages until the server's close frame.

        Returns its close code; the reason is in close_reason. Raises
        RecvTimeout when no close frame arrives within timeout, and
        ConnectionClosed(1006) when the TCP connection ends without one."""
        if self.close_code is not None:
            return self.close_code
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RecvTimeout(
                    f"no close frame within {timeout}s; last seen: {_short(self.seen[-10:])}")
            try:
                opcode, payload = self.recv_frame(timeout=remaining)
            except RecvTimeout:
                raise RecvTimeout(
                    f"no close frame within {timeout}s; last seen: {_short(self.seen[-10:])}"
                ) from None
            if opcode == OP_CLOSE:
                return self.close_code
            if opcode in (OP_TEXT, OP_BINARY):
                try:
                    self.seen.append(self.decode(opcode, payload))
                except ProtocolViolation:
                    self.seen.append({"type": "?", "raw": payload[:100]})

    def close(self, code=1000):
        """Sends a close frame (unless one was sent) and closes the socket."""
        try:
            if not self.sent_close and not self.eof:
                self.send_frame(OP_CLOSE, struct.pack("!H", code))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _short(msgs):
    out = []
    for m in msgs:
        s = repr(m)
        out.append(s if len(s) <= 200 else s[:200] + "...")
    return "[" + ", ".join(out) + "]"


def connect(port, subprotocol=SUBPROTOCOL_JSON, token=None, headers=None, path="/ws",
            tls=False, rcvbuf=None, timeout=5, host="127.0.0.1", auto_pong=True, source=None):
    """Opens a WebSocket connection to host:port.

    subprotocol: a name, a list of names to offer, or None to offer none.
    token: sent as the ?token= query parameter. headers: extra request
    headers (e.g. Authorization, Origin). Returns a WSClient, or raises
    HandshakeRefused when the server does not answer 101."""
    deadline = time.monotonic() + timeout
    sock = open_socket(host, port, tls, timeout, rcvbuf, source)
    try:
        target = path
        if token is not None:
            target += ("&" if "?" in target else "?") + "token=" + urllib.parse.quote(token, safe="")
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocol is not None:
            offered = [subprotocol] if isinstance(subprotocol, str) else list(subprotocol)
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(offered))
        else:
            offered = []
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1"))
        head, rest = recv_http_head(sock, deadline)
        if rest is None:
            raise HandshakeRefused(None, head)
        status, hdrs = parse_head(head)
        if status != 101:
            try:
                body = read_http_body(sock, hdrs, rest, min(deadline, time.monotonic() + 1))
            except (RecvTimeout, OSError):
                body = rest
            raise HandshakeRefused(status, body, hdrs)
        expected = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        if hdrs.get("sec-websocket-accept") != expected:
            raise ProtocolViolation(f"bad Sec-WebSocket-Accept: {hdrs!r}")
        if hdrs.get("upgrade", "").lower() != "websocket":
            raise ProtocolViolation(f"101 without Upgrade: websocket: {hdrs!r}")
        chosen = hdrs.get("sec-websocket-protocol")
        if offered and chosen not in offered:
            raise ProtocolViolation(f"server chose subprotocol {chosen!r}, offered {offered!r}")
        if not offered and chosen:
            raise ProtocolViolation(f"server chose subprotocol {chosen!r}, none offered")
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return WSClient(sock, chosen, rest, hdrs, auto_pong=auto_pong)
