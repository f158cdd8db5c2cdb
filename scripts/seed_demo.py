#!/usr/bin/env python3
"""seed_demo.py - helpers of scripts/run.sh for the demo: wait until tipcastd
is ready, and give the demo viewers coins.

  seed_demo.py wait-ready --port PORT [--timeout S] [--pid PID]
      Polls http://127.0.0.1:PORT/readyz until it answers 200 (tipcastd has
      applied its migrations and reaches Redis and PostgreSQL). Exit 0, or 1
      after the timeout or as soon as process PID (tipcastd) is gone.

  seed_demo.py credit --port PORT --admin-token JWT [--target N] [--users a,b]
      Tops every demo viewer up to N coins (default 10000): reads the
      viewer's balance with a demo token (GET /demo/token, so tipcastd must
      run with --demo), then sends an admin `credit` for the difference.
      Running it again tops up again (to N, not beyond). The admin token may
      also come in the environment variable TIPCAST_ADMIN_TOKEN.

Standard library only: a minimal RFC 6455 client (text frames, masking,
ping/pong, close) is below. Exit status 0 on success, 1 on failure (the reason
on stderr), 2 on bad usage.
"""

import argparse
import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.error
import urllib.request

import tipcast_proc

SUBPROTOCOL = "tipcast.v1.json"
DEMO_VIEWERS = ("bob", "carol", "dave", "erin")
# Bounds: every socket operation, and the largest message accepted.
IO_TIMEOUT_S = 10
MESSAGE_MAX = 1 << 20


class Fail(Exception):
    pass


class WebSocket:
    """One client connection speaking tipcast.v1.json."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n")
        self.sock.sendall(request.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._more()
            if len(self.buf) > 65536:
                raise Fail("handshake: response head too long")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        if " 101 " not in status + " ":
            raise Fail(f"handshake refused: {status}")

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise Fail("the server closed the connection")
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode, payload):
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + body)

    def send(self, msg):
        self._send_frame(0x1, json.dumps(msg, separators=(",", ":")).encode())

    def recv(self):
        """The next message (a dict); answers pings on the way."""
        message = b""
        while True:
            b0, b1 = self._take(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8))[0]
            if n > MESSAGE_MAX:
                raise Fail("message too large")
            payload = self._take(n)
            if opcode == 0x9:
                self._send_frame(0xA, payload)
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Fail(f"the server closed the connection (code {code}: {payload[2:].decode(errors='replace')})")
            elif opcode in (0x0, 0x1):
                message += payload
                if len(message) > MESSAGE_MAX:
                    raise Fail("message too large")
                if b0 & 0x80:
                    return json.loads(message)

    def request(self, msg):
        """Sends msg and returns the reply naming its id (an error raises)."""
        self.send(msg)
        deadline = time.monotonic() + IO_TIMEOUT_S
        while time.monotonic() < deadline:
            m = self.recv()
            if m.get("id") != msg["id"]:
                continue
            if m.get("type") == "error":
                raise Fail(f"{msg['type']} {msg['id']}: {m.get('code')}: {m.get('message')}")
            return m
        raise Fail(f"no answer to {msg['type']} {msg['id']}")

    def close(self):
        try:
            self._send_frame(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()


def connect(port, token):
    ws = WebSocket(port, "/ws")
    ws.send({"type": "auth", "id": "auth", "token": token})
    m = ws.recv()
    if m.get("type") != "welcome":
        raise Fail(f"authentication refused: {m}")
    return ws


def http_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=IO_TIMEOUT_S) as r:
        return json.load(r)


def wait_ready(port, timeout, pid=None):
    alive = (lambda: tipcast_proc.pid_alive(pid)) if pid is not None else (lambda: True)
    try:
        tipcast_proc.wait_http("/readyz", port, timeout, alive, interval=0.2)
    except tipcast_proc.NotReady as e:
        if e.exited:
            raise Fail(f"tipcastd (pid {pid}) exited before it was ready") from None
        raise Fail(f"tipcastd on port {port} not ready within {timeout}s (last: {e.last})") from None


def credit(port, admin_token, users, target):
    admin = connect(port, admin_token)
    try:
        for user in users:
            try:
                viewer_token = http_json(port, f"/demo/token?user={user}")["token"]
            except urllib.error.HTTPError as e:
                raise Fail(f"GET /demo/token?user={user}: HTTP {e.code} (is tipcastd running with --demo?)")
            viewer = connect(port, viewer_token)
            try:
                balance = viewer.request({"type": "balance", "id": f"bal-{user}"})["balance"]
            finally:
                viewer.close()
            if balance >= target:
                print(f"seed: {user} has {balance} coins")
                continue
            amount = target - balance
            # One id per top-up: a retry of this very request would be
            # answered with its first result instead of paying twice.
            ack = admin.request({"type": "credit", "id": f"seed-{user}-{int(time.time() * 1000)}",
                                 "user": user, "amount": amount})
            print(f"seed: credited {user} {amount} coins, balance {ack.get('balance', '?')}")
    finally:
        admin.close()


def main():
    ap = argparse.ArgumentParser(description="demo helpers of scripts/run.sh")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait-ready")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--timeout", type=float, default=30)
    w.add_argument("--pid", type=int)
    c = sub.add_parser("credit")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--admin-token", default=os.environ.get("TIPCAST_ADMIN_TOKEN"))
    c.add_argument("--target", type=int, default=10000)
    c.add_argument("--users", default=",".join(DEMO_VIEWERS))
    args = ap.parse_args()
    try:
        if args.cmd == "wait-ready":
            wait_ready(args.port, args.timeout, args.pid)
        else:
            if not args.admin_token:
                ap.error("credit needs --admin-token or TIPCAST_ADMIN_TOKEN")
            users = [u for u in args.users.split(",") if u]
            credit(args.port, args.admin_token, users, args.target)
    except (Fail, OSError, ValueError, KeyError) as e:
        print(f"seed_demo.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
