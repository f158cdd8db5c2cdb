"""tipcastd's log lines as an operator's tools read them: logfmt by default
(every line parsed back here), JSON with log-format=json (every line through
json.loads), one line per closed WebSocket connection, one line per lease
round instead of one per shard, and repeated warnings held back with the
count of the ones left out."""

import json
import re
import time

from conftest import WALLET_SHARDS, free_port
from wsclient import unique

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LEVELS = {"error", "warn", "info", "debug"}
ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def parse_logfmt(line):
    """key=value pairs of one logfmt line; values bare or double-quoted with
    \\" \\\\ \\n \\r \\t \\xNN escapes. Raises ValueError on anything else."""
    out, i, n = {}, 0, len(line)
    while i < n:
        m = re.compile(r"([a-z_]+)=").match(line, i)
        if not m:
            raise ValueError(f"no key at {i}: {line!r}")
        key, i = m.group(1), m.end()
        if i < n and line[i] == '"':
            i += 1
            buf = bytearray()
            while True:
                if i >= n:
                    raise ValueError(f"unterminated quote: {line!r}")
                c = line[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\":
                    e = line[i + 1]
                    if e == "x":
                        buf.append(int(line[i + 2:i + 4], 16))
                        i += 4
                        continue
                    if e not in ESCAPES:
                        raise ValueError(f"bad escape \\{e}: {line!r}")
                    buf += ESCAPES[e].encode()
                    i += 2
                    continue
                buf += c.encode()
                i += 1
            value = buf.decode("utf-8", "replace")
        else:
            j = line.find(" ", i)
            j = n if j < 0 else j
            value = line[i:j]
            if not value or '"' in value or "=" in value:
                raise ValueError(f"bad bare value for {key}: {line!r}")
            i = j
        if key in out:
            raise ValueError(f"key {key} twice: {line!r}")
        out[key] = value
        if i < n:
            if line[i] != " ":
                raise ValueError(f"no blank after {key}: {line!r}")
            i += 1
    return out


def records(srv, fmt="logfmt"):
    """Every stderr line of srv, parsed; a line that does not parse fails."""
    recs = []
    for line in srv.stderr_text().splitlines():
        r = json.loads(line) if fmt == "json" else parse_logfmt(line)
        assert TS.fullmatch(r["ts"]), line
        assert r["level"] in LEVELS, line
        assert isinstance(r["msg"], str) and r["msg"], line
        recs.append(r)
    return recs


def wait_for(srv, pred, fmt="logfmt", timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in records(srv, fmt) if pred(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def shard_set(text):
    out = set()
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def test_logfmt_close_lines_and_shard_summary(server, client):
    srv = server(auth_timeout_ms=300)
    user = unique("u")
    c = client(srv, user)
    c.ping()
    c.close(1000)
    pending = srv.connect()
    assert pending.wait_close(timeout=5) == 4001

    closed = wait_for(srv, lambda r: r["msg"] == "connection closed" and r.get("user") == user)
    assert len(closed) == 1, closed
    r = closed[0]
    assert (r["code"], r["by"], r["peer"]) == ("1000", "client", "127.0.0.1"), r
    assert int(r["bytes_in"]) > 0 and int(r["bytes_out"]) > 0 and int(r["duration_ms"]) >= 0, r

    timed_out = wait_for(srv, lambda r: r["msg"] == "connection closed" and r["code"] == "4001")
    assert len(timed_out) == 1, timed_out
    r = timed_out[0]
    assert r["by"] == "server" and r["reason"] == "authentication timeout", r
    assert "user" not in r and int(r["duration_ms"]) >= 250, r

    # The shards a node takes at start come in one line per group and round,
    # not one per shard. Other tests' nodes may still hold some shards for
    # a few seconds, so the rest may come in a later round.
    for group in ("ledger", "rooms"):
        def all_taken(_r, group=group):
            lines = [x for x in records(srv) if x["msg"] == "outbox shards taken" and x["group"] == group]
            got = set().union(*(shard_set(x["shards"]) for x in lines)) if lines else set()
            return got == set(range(WALLET_SHARDS))
        assert wait_for(srv, all_taken, timeout=15), srv.describe()
        lines = [x for x in records(srv) if x["msg"] == "outbox shards taken" and x["group"] == group]
        assert len(lines) < WALLET_SHARDS, lines
        for x in lines:
            assert int(x["count"]) == len(shard_set(x["shards"])), x
    assert not re.search(r"shard \d+ taken", srv.stderr_text())


def test_json_lines(server):
    srv = server(log_format="json", auth_timeout_ms=200)
    c = srv.connect()
    assert c.wait_close(timeout=5) == 4001
    found = wait_for(srv, lambda r: r["msg"] == "connection closed", fmt="json")
    assert found and found[0]["code"] == 4001 and found[0]["by"] == "server", found
    assert isinstance(found[0]["bytes_out"], int)
    assert any(r["msg"].startswith("tipcastd node ") for r in records(srv, "json"))
    srv.check_exit()
    recs = records(srv, "json")
    assert recs[-1]["msg"] == "tipcastd stopped", recs[-1]


def test_repeated_warnings_are_held_back(server):
    # No Redis on this port: both Redis connections fail again and again
    # (backoff 100 ms doubling to 2 s), each time with the same warning.
    srv = server(redis_port=free_port(), log_repeat_s=2)
    time.sleep(5.5)
    lines = [r for r in records(srv) if r["msg"].startswith("redis ") and "cannot connect" in r["msg"]]
    assert lines, srv.describe()
    assert "suppressed" not in lines[0], lines
    held = sum(int(r.get("suppressed", 0)) for r in lines)
    # About 7 attempts per connection in 5.5 s: 14 warnings, of which at
    # most one per 2 s window (plus the first) is written.
    assert 2 <= len(lines) <= 4, lines
    assert held >= 5, lines
    for a, b in zip(lines, lines[1:]):
        gap = time.mktime(time.strptime(b["ts"][:19], "%Y-%m-%dT%H:%M:%S")) + float(b["ts"][19:23]) - \
            time.mktime(time.strptime(a["ts"][:19], "%Y-%m-%dT%H:%M:%S")) - float(a["ts"][19:23])
        assert gap >= 1.9, (a, b)
