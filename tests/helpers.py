"""Helpers shared by the end-to-end tests: waiting, PostgreSQL queries, and
the wallet shards' outbox entries (gifts/outbox.h) as the wallet script
writes them."""

import contextlib
import os
import subprocess
import time
import uuid

import pytest

from conftest import PG, REPO, WALLET_SHARDS, free_port
from resp import Redis
from wsclient import unique

# Every test's tipcastd runs with --wallet-shards=WALLET_SHARDS (conftest).
SHARDS = WALLET_SHARDS


def wait_for(pred, timeout=20, what="condition"):
    """Polls pred() until it is true; returns its value. Fails after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


def wait_room_live(c, room, timeout=15):
    """Waits until client c's server takes gifts to room; returns the last
    probe's reply. The probe is a gift of an id that does not exist, refused
    after the checks it waits on and before any money moves. It retries two
    answers:
    - room_not_live: the catalog reload that brings the creator has not
      arrived yet;
    - unavailable: the wallet has not checked Redis yet (a tipcastd just
      started on a Redis Cluster checks its masters one by one)."""
    deadline = time.monotonic() + timeout
    while True:
        r = c.request({"type": "gift", "id": unique("probe"), "room": room, "gift": 1999999999})
        if r.get("code") not in ("room_not_live", "unavailable"):
            return r
        assert time.monotonic() < deadline, r
        time.sleep(0.1)


def psql(sql, dsn=PG):
    """Runs sql with psql; returns its unaligned output."""
    out = subprocess.run(["psql", dsn, "-X", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def shard_of(uid, shards=SHARDS):
    """The wallet shard of a user: FNV-1a 32-bit of the id (outbox_shard_of)."""
    h = 2166136261
    for b in uid.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h % shards


def outbox(shard):
    return f"tc:{{w:{shard}}}:outbox"


def entry_fields(kind, user, amount, room="", gift=0, name="", anim=None, count=1, price=None,
                 balance=0, combo="", text="", req=None, ts=None, role="viewer"):
    """The fields of one outbox entry, in the wallet script's order."""
    return [("k", kind), ("u", user), ("r", room), ("g", gift), ("gn", name),
            ("an", name.lower() if anim is None else anim), ("n", count),
            ("p", amount if price is None else price), ("a", amount), ("b", balance), ("m", combo),
            ("t", text), ("q", req or unique("q")),
            ("ts", int(time.time() * 1000) if ts is None else ts), ("ro", role)]


def xadd_entry(r, fields):
    """Appends the entry to its user's shard with Redis client r; returns
    its order id "<shard>-<stream id>"."""
    user = dict(fields)["u"]
    shard = shard_of(user)
    sid = r("XADD", outbox(shard), "*", *[x for kv in fields for x in kv])
    return f"{shard}-{sid}"


def admin_bin():
    """The tipcast-admin built beside the tipcastd under test."""
    d = os.path.dirname(os.environ.get("TIPCAST_TEST_BIN") or os.path.join(REPO, "build", "server", "tipcastd"))
    path = os.path.join(d, "tipcast-admin")
    if not os.access(path, os.X_OK):
        pytest.skip(f"no tipcast-admin at {path}")
    return path


@contextlib.contextmanager
def own_redis(directory, *settings):
    """A redis-server of the caller's own in `directory`, configured like
    production (AOF, noeviction) plus `settings`; yields its port."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
                             "--save", "", "--appendonly", "yes", "--maxmemory-policy", "noeviction", *settings],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                r = Redis(port=port)
                try:
                    return r("PING") == "PONG"
                finally:
                    r.close()
            except OSError:
                return False
        wait_for(up, 10, "redis-server")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def own_database(prefix):
    """An empty database of the caller's own, dropped at the end; yields its DSN."""
    name = prefix + "_" + uuid.uuid4().hex[:10]
    root = PG.replace("dbname=tipcast", "dbname=postgres")
    assert root != PG, "TIPCAST_PG must name dbname=tipcast"
    psql(f"CREATE DATABASE {name}", root)
    try:
        yield PG.replace("dbname=tipcast", f"dbname={name}")
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", root)


def metric(srv, name, **labels):
    """The value of one sample on the node's /metrics, or None when it has
    none of that name and labels."""
    status, _, body = srv.http_get("/metrics")
    assert status == 200
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in body.decode().splitlines():
        if line.startswith(want + " "):
            return float(line.split()[1])
    return None
