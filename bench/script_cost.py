#!/usr/bin/env python3
"""script_cost.py - the instructions Redis spends on tipcast's two scripts of
the gift path, counted by valgrind's callgrind: repeatable to a fraction of a
percent whatever else the machine does, where CPU time on a shared VM moves
by 15% between runs (docs/benchmarks.md, "What limits it").

  bench/script_cost.py [--calls N] [--entries K] [--events-only]

It starts a redis-server of its own under `valgrind --tool=callgrind` on a
free loopback port (AOF on, appendfsync everysec, as scripts/services.sh
runs Redis), with an empty dataset, and sends in turn:
  - room_apply: N calls (default 3,000) of rooms/lua/room_apply.lua in
    scenario 1's shape: 50 rooms of 4 senders, K gifts a call (default 3,
    about what a read brings at 3,000 gifts/s with rooms-gather-ms 50),
    each entry from one of the 16 wallet shards, as rooms/roomfeed.c sends
    them;
  - debit: N calls of gifts/lua/wallet_move.lua, one sender's gifts as
    tipcastd sends them (scenario 1's Redis ceiling uses the same).
With --events-only, the room calls go to EVENTS_ONLY below instead of
room_apply.lua: the same calls, of which it writes only what the room's
events need from Redis (the seq, the history, the publish, the watermark).
That is the rooms group's floor if the room's accounting (boards and their
totals, combos, fan levels, the goal, pins) were held by a node rather than
kept by a script per read: a design not built (docs/benchmarks.md).
Then it reads callgrind's totals: instructions per call and per gift, and
the parts of a call (the Lua interpreter with the commands the script
calls; those commands; appending them to the AOF). Needs valgrind
(callgrind_annotate comes with it) and redis-server. Standard library only.
"""

import argparse
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOM_APPLY = os.path.join(REPO, "rooms", "lua", "room_apply.lua")
WALLET_MOVE = os.path.join(REPO, "gifts", "lua", "wallet_move.lua")
ROOMS, SENDERS, SHARDS = 50, 4, 16
# --events-only: room_apply.lua's KEYS and ARGV, and only its events' writes.
EVENTS_ONLY = b"""
local F = 10
local n = tonumber(ARGV[F])
local seq = redis.call('INCRBY', KEYS[1], n) - n
local out, wm = {}, {}
for i = 0, n - 1 do
  local b = F + 8 * i
  local body, kind = ARGV[b + 4], ARGV[b + 7]
  seq = seq + 1
  if i == n - 1 then
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-1', 'b', body, 'k', kind)
  else
    redis.call('XADD', KEYS[2], seq .. '-1', 'b', body, 'k', kind)
  end
  redis.call('SPUBLISH', ARGV[2], seq .. ':' .. kind .. ':' .. body)
  out[i + 1] = seq
  wm[#wm + 1] = ARGV[b + 1]
  wm[#wm + 1] = ARGV[b + 2]
end
redis.call('HSET', KEYS[3], unpack(wm))
return out
"""
# A gift's event body as gifts/wallet.c writes it into the outbox (a
# msgpack map whose header counts the four fields room_apply appends).
BODY = (b"\x8f\xa4kind\xa4gift\xa4from\xa9bench-u88\xa4role\xa6viewer\xa5order\xb13-1796168378837-0"
        b"\xa4gift\x01\xa4name\xa4Rose\xa9animation\xa4rose\xa5count\x01\xa5combo\xbat1796168378764521.057bae52"
        b"\xa6amount\n\xa2ts\xcf\x00\x00\x01\xa23\xfai\xd3")


class Resp:
    """A blocking RESP2 client: enough for pipelined commands and replies."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.f = self.s.makefile("rb")

    @staticmethod
    def enc(*args):
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)

    def read(self):
        line = self.f.readline()[:-2]
        kind, rest = line[:1], line[1:]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b":":
            return int(rest)
        if kind == b"-":
            raise RuntimeError(rest.decode())
        return rest

    def __call__(self, *args):
        self.s.sendall(self.enc(*args))
        return self.read()


def room_calls(sha, n_calls, entries):
    """room_apply calls, KEYS and ARGV as rooms/roomfeed.c sends them."""
    rng = random.Random(1)
    ms = int(time.time() * 1000)
    # The boards' periods as rooms/roomkeys.c names them (UTC): the day, the
    # week by its Monday, the month.
    now = time.time()
    day, month = time.strftime("%Y%m%d", time.gmtime(now)), time.strftime("%Y%m", time.gmtime(now))
    week = time.strftime("%Y%m%d", time.gmtime(now - time.gmtime(now).tm_wday * 86400))
    for i in range(n_calls):
        room = i % ROOMS
        r = f"tc:{{r:bench-room-{room}}}"
        keys = [r + ":seq", r + ":hist", r + ":wm", r + ":board:all", f"{r}:board:d:{day}", f"{r}:board:w:{week}",
                f"{r}:board:m:{month}", r + ":sum:all", f"{r}:sum:d:{day}", f"{r}:sum:w:{week}",
                f"{r}:sum:m:{month}", r + ":combo", r + ":combo:due", r + ":goal", r + ":pins", r + ":pin"]
        argv = [200, r + ":ev", 172800, 1209600, 5356800, 3000, "1:Fan,1000:Silver,10000:Gold,100000:VIP", 1000,
                "1000:60,10000:300,100000:1800", entries]
        for _ in range(entries):
            ms += 1
            argv += [rng.randrange(SHARDS), f"{ms}-0", "", BODY, f"bench-u{room * SENDERS + rng.randrange(SENDERS)}",
                     10, "gift", f"{ms}:1:1"]
        yield Resp.enc("EVALSHA", sha, len(keys), *keys, *argv)


def debit_calls(sha, n_calls):
    """wallet_move calls, KEYS and ARGV as gifts/wallet.c sends a gift."""
    u, ts = "bench-u0", int(time.time() * 1000)
    for i in range(n_calls):
        q = f"g-{i}"
        yield Resp.enc("EVALSHA", sha, 4, f"tc:{{w:0}}:bal:{u}", f"tc:{{w:0}}:idem:{u}:{q}", "tc:{w:0}:outbox",
                       f"tc:{{w:0}}:risk:{u}", "gift", u, "bench-room-0", 1, "Rose", "rose", 1, 10, 10, "c1", "", q,
                       ts + i, "fp1", 600000, 1000000000000, "viewer", "", 0, "127.0.0.1", "", 0, 0, 0)


def send(r, calls, check):
    """Sends calls 100 at a time, pipelined; check(reply) on every reply."""
    batch = []
    for c in calls:
        batch.append(c)
        if len(batch) == 100:
            r.s.sendall(b"".join(batch))
            for _ in batch:
                check(r.read())
            batch = []
    if batch:
        r.s.sendall(b"".join(batch))
        for _ in batch:
            check(r.read())


def totals(out_file):
    """{function: inclusive instructions} for the functions read here."""
    p = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out_file],
                       capture_output=True, text=True, check=True)
    got = {}
    for line in p.stdout.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        ir, name = int(m.group(1).replace(",", "")), m.group(2)
        if "PROGRAM TOTALS" in name:
            got["total"] = ir
            continue
        fn = re.sub(r"\s*\[.*$", "", name).split(":")[-1]
        for want in ("evalShaCommand", "scriptCall", "feedAppendOnlyFile", "lua_pcall"):
            if fn == want:
                got[want] = max(got.get(want, 0), ir)
    return got


def source(path):
    """(its name in the repository, its text) of a script file."""
    with open(path, "rb") as f:
        return os.path.relpath(path, REPO), f.read()


def measure(script, calls_of, n_calls, per_call, label):
    """script: (a name to print, the Lua source)."""
    name, src = script
    d = tempfile.mkdtemp(prefix="tipcast-script-cost-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = os.path.join(d, "callgrind.out")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "redis-server",
                             "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--appendonly", "yes",
                             "--appendfsync", "everysec", "--save", "", "--auto-aof-rewrite-min-size", "1gb"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = Resp(port)
                r("PING")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"redis-server under valgrind did not start on port {port}")
                time.sleep(0.2)
        sha = r("SCRIPT", "LOAD", src).decode()
        if label == "debit":
            r("SET", "tc:{w:0}:bal:bench-u0", 10 ** 15)

        def check(reply):
            if label == "debit":
                if not reply or reply[0] != b"ok":
                    raise SystemExit(f"wallet_move.lua answered {reply!r}")
            elif not all(isinstance(x, int) and x > 0 for x in reply):
                raise SystemExit(f"room_apply.lua did not apply every entry: {reply!r}")
        send(r, calls_of(sha), check)
        r.s.sendall(Resp.enc("SHUTDOWN", "NOSAVE"))
        proc.wait(120)
        t = totals(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)
    ev = t.get("evalShaCommand", 0)
    print(f"{label}: {n_calls} calls of {name}, {per_call} gift(s) a call")
    print(f"  instructions a call {ev / n_calls:,.0f} (EVALSHA), {t['total'] / n_calls:,.0f} (all of redis-server)")
    print(f"  a gift              {ev / n_calls / per_call:,.0f} (EVALSHA), "
          f"{t['total'] / n_calls / per_call:,.0f} (all)")
    if ev:
        lua, cmds, aof = t.get("lua_pcall", 0), t.get("scriptCall", 0), t.get("feedAppendOnlyFile", 0)
        print(f"  of a call: the Lua interpreter and its commands {100 * lua / t['total']:.0f}%, the commands "
              f"{100 * cmds / t['total']:.0f}%, appending them to the AOF {100 * aof / t['total']:.0f}% "
              f"(of all of redis-server's)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--entries", type=int, default=3)
    ap.add_argument("--events-only", action="store_true",
                    help="the room calls without the room's accounting (the rooms group's floor)")
    a = ap.parse_args()
    if not 1 <= a.entries <= 100 or not 1 <= a.calls <= 1000000:
        ap.error("--entries 1..100, --calls 1..1000000")
    for tool in ("valgrind", "callgrind_annotate", "redis-server"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")
    room = ("EVENTS_ONLY (--events-only)", EVENTS_ONLY) if a.events_only else source(ROOM_APPLY)
    measure(room, lambda sha: room_calls(sha, a.calls, a.entries), a.calls, a.entries,
            "room_events" if a.events_only else "room_apply")
    measure(source(WALLET_MOVE), lambda sha: debit_calls(sha, a.calls), a.calls, 1, "debit")


if __name__ == "__main__":
    main()
