"""A small Redis client for the tests (RESP2 over a socket, stdlib only).

Redis() is the test Redis; with TIPCAST_REDIS_CLUSTER set it is the test
cluster (Cluster below), which sends each command to its key's master."""

import socket

from conftest import REDIS_CLUSTER, REDIS_HOST, REDIS_PORT


class Redis:
    def __new__(cls, host=None, port=None, timeout=10):
        if cls is Redis and host is None and (port is None or str(port) == str(REDIS_PORT)) and REDIS_CLUSTER:
            return Cluster(REDIS_CLUSTER, timeout)
        return super().__new__(cls)

    def __init__(self, host=None, port=None, timeout=10):
        host = REDIS_HOST if host is None else host
        port = REDIS_PORT if port is None else port
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def node_for(self, key):
        """The connection that serves key (for pipelined writes)."""
        return self

    def __call__(self, *args):
        """Sends one command; returns the reply (bytes decoded as str where
        they are UTF-8). An error reply raises RuntimeError."""
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n)
            try:
                return data.decode()
            except UnicodeDecodeError:
                return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError(f"bad reply {line!r}")


def _crc16(data):
    """CRC16-CCITT (XMODEM), Redis Cluster's key hash."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key):
    key = key if isinstance(key, bytes) else str(key).encode()
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return _crc16(key) % 16384


# Commands sent to every master, and how their answers add up.
_EVERY_MASTER = {"FLUSHALL", "FLUSHDB", "KEYS", "DBSIZE", "SCAN", "SCRIPT", "CONFIG", "BGREWRITEAOF", "SAVE",
                 "DEBUG", "CLIENT"}
_NO_KEY = {"INFO", "PING", "TIME", "CLUSTER", "WAIT", "ROLE"}


class Cluster:
    """The test cluster as one Redis: a command goes to the master of its
    key's slot (MOVED and ASK followed); FLUSHALL, KEYS, DBSIZE, CLIENT, SCAN
    (one call walks every master: it answers ["0", keys]) and the like go to
    every master (counts summed, lists joined)."""

    def __init__(self, seeds, timeout=10):
        self.timeout = timeout
        self.nodes = {}
        self.seeds = [(h, int(p)) for h, p in (x.rsplit(":", 1) for x in seeds.split(",") if x)]
        self._refresh()

    def _node(self, addr):
        if addr not in self.nodes:
            self.nodes[addr] = Redis(addr[0], addr[1], self.timeout)
        return self.nodes[addr]

    def _refresh(self):
        for addr in list(self.nodes) + self.seeds:
            try:
                ranges = self._node(addr)("CLUSTER", "SLOTS")
                break
            except (OSError, ConnectionError, RuntimeError):
                self.nodes.pop(addr, None)
        else:
            raise ConnectionError("no node of the cluster answers")
        self.slots = [None] * 16384
        self.masters = []
        for first, last, master, *_ in ranges:
            addr = (master[0] or "127.0.0.1", int(master[1]))
            if addr not in self.masters:
                self.masters.append(addr)
            for slot in range(first, last + 1):
                self.slots[slot] = addr

    def node_for(self, key):
        return self._node(self.slots[key_slot(key)])

    def close(self):
        for n in self.nodes.values():
            n.close()
        self.nodes = {}

    @staticmethod
    def _key(args):
        name = str(args[0]).upper()
        if name in ("EVAL", "EVALSHA"):
            return args[3] if int(args[2]) > 0 else None
        if name in ("XGROUP", "XINFO", "OBJECT", "MEMORY"):
            return args[2] if len(args) > 2 else None
        if name in ("XREAD", "XREADGROUP"):
            up = [str(a).upper() for a in args]
            return args[up.index("STREAMS") + 1]
        return None if name in _NO_KEY or len(args) < 2 else args[1]

    def __call__(self, *args):
        name = str(args[0]).upper()
        if name in _EVERY_MASTER:
            answers = [self._node(m)(*args) if name != "SCAN" else self._scan(m, args) for m in self.masters]
            if name == "KEYS":
                return [k for a in answers for k in a]
            if all(isinstance(a, int) for a in answers):  # DBSIZE, CLIENT KILL
                return sum(answers)
            if name == "CLIENT" and all(isinstance(a, str) for a in answers):  # CLIENT LIST
                return "".join(answers)
            if name == "SCAN":
                return ["0", [k for a in answers for k in a]]
            return answers[0]
        key = self._key(args)
        addr = self.slots[key_slot(key)] if key is not None else self.masters[0]
        asking = False
        for _ in range(5):
            node = self._node(addr)
            try:
                if asking:
                    node("ASKING")
                return node(*args)
            except RuntimeError as e:
                kind, _, rest = str(e).partition(" ")
                if kind not in ("MOVED", "ASK"):
                    raise
                host, port = rest.split(" ")[1].rsplit(":", 1)
                addr, asking = (host or "127.0.0.1", int(port)), kind == "ASK"
                if kind == "MOVED":
                    self._refresh()
        raise RuntimeError(f"too many redirections for {args[0]}")

    def _scan(self, master, args):
        node, cursor, keys = self._node(master), "0", []
        while True:
            cursor, batch = node("SCAN", cursor, *args[2:])
            keys += batch
            if str(cursor) == "0":
                return keys


def stream_entries(r, key):
    """XRANGE key - + as a list of (id, {field: value})."""
    return [(sid, dict(zip(f[0::2], f[1::2]))) for sid, f in r("XRANGE", key, "-", "+")]
