"""Members that stop reading (issue 9): thousands of stalled members of one
room must not slow its healthy members, must cost the server little, and
are closed with 4009 soon after their sockets fill up, the close frame
reaching those that read again.

The stalled members are plain sockets held by this process: each opens,
authenticates, joins the room and then never reads again, so that its
socket buffers fill (a small SO_RCVBUF here, sndbuf-bytes on the server).
One healthy member reads everything; the room's creator sends notices of
about 500 bytes at RATE per second, each carrying the time it was sent, from
which the healthy member's delivery latency is measured. The stalled
members take writes like any reader until their buffers are full (about
twenty events here): the latency is measured from WARMUP_S on, with them
stalled, and over the close of them all and the drop of their sockets.

TIPCAST_STALLED_MEMBERS sets the number of stalled members (default 5000,
the figure of the issue: this process and tipcastd each hold a socket per
member, within the 20,000 open files allowed); TIPCAST_STALLED_SNDBUF and
TIPCAST_STALLED_RCVBUF the server's sndbuf-bytes and the stalled sockets'
SO_RCVBUF (default 4096 each; 0 for the kernel's defaults, with which the
buffers take far longer to fill). The same test runs against a
tipcastd without slow-consumer-ms (the code before it), which fails it."""

import base64
import os
import socket
import subprocess
import threading
import time

from conftest import _binary, mint_token
from test_metrics import scrape, val
from wsclient import OP_CLOSE, SUBPROTOCOL_MSGPACK, RecvTimeout, WSClient, parse_head, recv_http_head, unique

STALLED = int(os.environ.get("TIPCAST_STALLED_MEMBERS", "5000"))
RATE = 200            # notices per second
SECONDS = 10          # of notices: past the close of the stalled members and the drop of their sockets
WARMUP_S = 1.0        # the stalled members' buffers fill meanwhile
TEXT_BYTES = 440      # a notice event of about 500 bytes
SLOW_MS = 500         # slow-consumer-ms of the test's server
SNDBUF = int(os.environ.get("TIPCAST_STALLED_SNDBUF", "4096"))  # sndbuf-bytes of the test's server (0: the kernel's)
STALLED_RCVBUF = int(os.environ.get("TIPCAST_STALLED_RCVBUF", "4096"))  # 0: the kernel's default
SAMPLED = 10          # stalled members that read again once closed
# Bounds, generous for a loaded 2-core machine. The code before the fix
# gave a p99 near a second once the stalled members' buffers were full,
# closed them only when they fell out of the room's ring (2.6 s at 200
# events/s) and burnt 40-80% of a core.
P99_BOUND_S = 0.2
# Closed within slow-consumer-ms of stalling, their buffers full after a few
# tenths of a second; below the 2.56 s after which the ring's bound (512
# events at 200/s) closes them anyway, as it did before.
CLOSE_BOUND_S = 2.5
CPU_BOUND = 0.2
SANITIZED = os.environ.get("TIPCAST_TEST_SANITIZED") == "1"


def has_setting(name):
    """Whether the tipcastd under test has a setting, so that the code
    before it (without) can run the same test."""
    out = subprocess.run([_binary(), "--help"], capture_output=True, text=True, timeout=10)
    return f"--{name}=" in out.stdout


def open_stalled(srv, room, n, batch=250):
    """n members of room, joined, that will not read unless told to."""
    members = []
    for start in range(0, n, batch):
        socks = []
        for i in range(start, min(n, start + batch)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if STALLED_RCVBUF:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
            s.settimeout(10)
            s.connect(("127.0.0.1", srv.port))
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall((f"GET /ws?token={mint_token(f'{room}-s{i}')} HTTP/1.1\r\n"
                       f"Host: 127.0.0.1:{srv.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                       f"Sec-WebSocket-Protocol: {SUBPROTOCOL_MSGPACK}\r\n\r\n").encode())
            socks.append(s)
        joining = []
        for s in socks:
            head, rest = recv_http_head(s, time.monotonic() + 10)
            assert parse_head(head)[0] == 101, head
            c = WSClient(s, SUBPROTOCOL_MSGPACK, rest, {})
            c.expect("welcome", timeout=10)
            c.send({"type": "join", "id": "j", "room": room})
            joining.append(c)
        for c in joining:
            assert c.expect(None, id="j", timeout=20)["type"] == "joined"
        members += joining
    return members


class Reader(threading.Thread):
    """Reads the healthy member's events: (seq, sent, latency) each, the
    text of a notice starting with the time.monotonic_ns() of its sending."""

    def __init__(self, c):
        super().__init__(daemon=True)
        self.c = c
        self.events = []
        self.stop = False
        self.error = None

    def run(self):
        try:
            while not self.stop:
                try:
                    m = self.c.recv(timeout=0.2)
                except RecvTimeout:
                    continue
                if m.get("type") == "event":
                    sent = int(m["text"].split(":", 1)[0])
                    self.events.append((m["seq"], sent, (time.monotonic_ns() - sent) / 1e9))
        except Exception as e:  # reported by the test
            self.error = e


class Watcher(threading.Thread):
    """Polls the metrics until every stalled member is closed as a slow
    consumer; then SAMPLED of them read again and must find a gap-free run
    of events from seq 1, then the close frame 4009."""

    def __init__(self, srv, stalled, t0):
        super().__init__(daemon=True)
        self.srv, self.stalled, self.t0 = srv, stalled, t0
        self.closed_after = None
        self.sampled = []
        self.stop = False
        self.error = None

    def run(self):
        try:
            while not self.stop:
                if val(scrape(self.srv)[1], "tipcast_slow_consumer_closes_total") >= len(self.stalled):
                    self.closed_after = time.monotonic() - self.t0
                    break
                time.sleep(0.05)
            # All at once: a socket that had a zero window is written again
            # only after the sender's next window probe (they back off up to
            # a second and more), and each closed member has 5 s to read up
            # to its close frame, so one after another the last would miss it.
            readers = [threading.Thread(target=self.read_again, args=(c,), daemon=True)
                       for c in self.stalled[:SAMPLED if self.closed_after else 0]]
            for t in readers:
                t.start()
            for t in readers:
                t.join()
        except Exception as e:  # reported by the test
            self.error = e

    def read_again(self, c):
        try:
            seqs = []
            while True:
                op, payload = c.recv_frame(timeout=5)
                if op == OP_CLOSE:
                    break
                msg = c.decode(op, payload)
                seqs += [e["seq"] for e in msg["events"]] if msg["type"] == "events" else [msg["seq"]]
            self.sampled.append((c.close_code, c.close_reason, seqs))
        except Exception as e:  # reported by the test
            self.error = e


def send_notices(creator, room, rate, seconds):
    """Sends rate notices per second for seconds, on a fixed timetable,
    reading the acks meanwhile."""
    n = int(rate * seconds)
    start = time.monotonic()
    acked = 0
    for i in range(n):
        due = start + i / rate
        while True:
            wait = due - time.monotonic()
            if wait <= 0:
                break
            try:
                creator.recv(timeout=wait)
                acked += 1
            except RecvTimeout:
                break
        stamp = f"{time.monotonic_ns()}:"
        creator.send({"type": "notice", "id": f"n{i}", "room": room,
                      "text": stamp + "x" * (TEXT_BYTES - len(stamp))})
    while acked < n:
        creator.recv(timeout=10)
        acked += 1


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))]


def test_stalled_members_do_not_slow_the_room(server, client):
    flags = dict(max_msgs_per_s=1000, max_burst=1000, sndbuf_bytes=SNDBUF)
    if has_setting("slow-consumer-ms"):
        flags["slow_consumer_ms"] = SLOW_MS
    srv = server(**flags)
    room = unique("r")
    creator = client(srv, room, "creator", SUBPROTOCOL_MSGPACK)
    healthy = client(srv, unique("h"), "viewer", SUBPROTOCOL_MSGPACK)
    healthy.join(room)
    stalled = open_stalled(srv, room, STALLED)
    assert val(scrape(srv)[1], "tipcast_room_members") == STALLED + 1

    reader = Reader(healthy)
    reader.start()
    t0 = time.monotonic()
    watcher = Watcher(srv, stalled, t0)
    watcher.start()
    send_notices(creator, room, RATE, WARMUP_S)
    cpu0, t1 = srv.cpu_s(), time.monotonic()
    send_notices(creator, room, RATE, SECONDS - WARMUP_S)
    cpu = (srv.cpu_s() - cpu0) / (time.monotonic() - t1)
    time.sleep(0.5)
    reader.stop = watcher.stop = True
    reader.join()
    watcher.join(timeout=SAMPLED * 5 + 5)
    assert reader.error is None, reader.error
    assert watcher.error is None, f"{watcher.error!r}; every stalled member closed after {watcher.closed_after} s"

    n = int(RATE * WARMUP_S) + int(RATE * (SECONDS - WARMUP_S))
    assert [seq for seq, _, _ in reader.events] == list(range(1, n + 1)), "the healthy member missed events"
    start_ns = reader.events[0][1]
    warm = [lat for _, sent, lat in reader.events if sent - start_ns >= WARMUP_S * 1e9]
    every = [lat for _, _, lat in reader.events]
    print(f"\n{STALLED} stalled members, {n} notices at {RATE}/s: healthy member's delivery p99 "
          f"{p99(warm) * 1e3:.1f} ms from {WARMUP_S:.0f} s on (max {max(warm) * 1e3:.1f} ms), "
          f"{p99(every) * 1e3:.1f} ms over the whole run; tipcastd CPU {cpu:.0%} of a core from "
          f"{WARMUP_S:.0f} s on; stalled members closed after {watcher.closed_after} s")
    assert p99(warm) < P99_BOUND_S, f"healthy member's delivery p99 {p99(warm):.3f} s"
    assert watcher.closed_after is not None and watcher.closed_after < CLOSE_BOUND_S, watcher.closed_after
    # What a stalled member that reads again finds: the events its buffers
    # held, in order from the first, then the close frame.
    assert len(watcher.sampled) == SAMPLED
    for code, reason, seqs in watcher.sampled:
        assert (code, reason) == (4009, "slow consumer")
        assert seqs and seqs == list(range(1, len(seqs) + 1)), seqs[:20]
    if not SANITIZED:
        assert cpu < CPU_BOUND, f"tipcastd CPU {cpu:.0%}"
