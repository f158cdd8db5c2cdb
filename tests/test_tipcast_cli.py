"""The `tipcast` CLI (clients/c) end to end: the real binary against a real
tipcastd, Redis and PostgreSQL. What is asserted is what a user and a script
see (stdout lines, JSON objects, exit codes) and where the money went
(balances on the wire, the wallet in Redis, the order row in PostgreSQL)."""

import json
import os
import subprocess
import threading
import time

import pytest

from conftest import REPO, free_port, mint_token
from helpers import psql, shard_of, wait_for
from resp import Redis
from wsclient import unique

ROSE, ROCKET = 9401, 9403
PRICES = {ROSE: 1, ROCKET: 500}
FLAGS = dict(max_msgs_per_s=1000, max_burst=1000)


def cli_bin():
    path = os.environ.get("TIPCAST_CLI_BIN") or os.path.join(REPO, "build", "clients", "c", "tipcast")
    if not os.access(path, os.X_OK):
        pytest.skip(f"no tipcast CLI at {path}: build it or set TIPCAST_CLI_BIN")
    return path


def cli_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("TIPCAST_TOKEN", "TIPCAST_URL", "TIPCAST_ADMIN")}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    env.update(extra or {})
    return env


def run(*args, token=None, srv=None, timeout=20, env=None):
    argv = [cli_bin()]
    if srv is not None:
        argv += ["--url", f"ws://127.0.0.1:{srv.port}/ws", "--admin", f"http://127.0.0.1:{srv.admin_port}"]
    if token is not None:
        argv += ["--token", token]
    argv += [str(a) for a in args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=cli_env(env))


def jrun(*args, **kw):
    """run(..., --json): (process, the one JSON object it printed)."""
    p = run(*args, "--json", **kw)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, (p.returncode, p.stdout, p.stderr)
    return p, json.loads(lines[0])


@pytest.fixture(scope="module")
def catalog():
    psql("INSERT INTO gifts (id, name, price, animation, tier, enabled, sort_order) VALUES "
         f"({ROSE}, 'Rose', 1, 'rose', 1, true, 1), ({ROCKET}, 'Rocket', 500, 'rocket', 2, true, 3) "
         "ON CONFLICT (id) DO UPDATE SET price = EXCLUDED.price, enabled = EXCLUDED.enabled")
    return PRICES


def live_room(srv, room):
    """A live creator's room, once the node's catalog has it (a probe with an
    unknown gift id is refused unknown_gift only when the room is live)."""
    psql(f"INSERT INTO creators (id, live) VALUES ('{room}', true) ON CONFLICT (id) DO UPDATE SET live = true")
    probe = mint_token(unique("probe"))

    def live():
        p, out = jrun("gift", room, 1999999999, token=probe, srv=srv)
        return out.get("code") == "unknown_gift"
    wait_for(live, timeout=15, what=f"room {room} live")


def fund(srv, user, amount):
    p, ack = jrun("credit", user, amount, token=mint_token(unique("adm"), "admin"), srv=srv)
    assert p.returncode == 0 and ack["type"] == "ack", (p.stdout, p.stderr)
    return ack


def balance(srv, user):
    p, out = jrun("balance", token=mint_token(user), srv=srv)
    assert p.returncode == 0, p.stderr
    return out["balance"]


def redis_balance(user):
    r = Redis()
    try:
        return int(r("GET", f"tc:{{w:{shard_of(user)}}}:bal:{user}") or 0)
    finally:
        r.close()


class Watch:
    """`tipcast watch ROOM --json` in the background; its stdout lines parsed."""

    def __init__(self, srv, room, token, *extra):
        argv = [cli_bin(), "--url", f"ws://127.0.0.1:{srv.port}/ws", "--token", token, "watch", room, "--json",
                *[str(e) for e in extra]]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=cli_env())
        self.events, self.err = [], []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.events, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False), daemon=True).start()

    def _read(self, f, out, is_json):
        for line in f:
            with self.lock:
                out.append(json.loads(line) if is_json else line.rstrip("\n"))

    def stderr(self):
        with self.lock:
            return "\n".join(self.err)

    def wait_stderr(self, text, count=1, timeout=20):
        wait_for(lambda: self.stderr().count(text) >= count, timeout=timeout,
                 what=f"{text!r} x{count} on watch's stderr; got:\n{self.stderr()}")

    def wait_events(self, n, timeout=20):
        wait_for(lambda: len(self.events) >= n, timeout=timeout,
                 what=f"{n} events (got {len(self.events)}; stderr:\n{self.stderr()})")
        return list(self.events)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=10)


@pytest.fixture
def watches():
    opened = []
    yield lambda *a: opened.append(Watch(*a)) or opened[-1]
    for w in opened:
        w.close()


def test_help_and_usage():
    p = run("--help")
    assert p.returncode == 0
    for word in ("watch ROOM", "gift ROOM GIFT", "tip ROOM AMOUNT", "balance", "history ROOM", "admin get PATH",
                 "Exit codes", "insufficient_balance", "timeout"):
        assert word in p.stdout, word
    p = run("gift", "--help")
    assert p.returncode == 0 and p.stdout.startswith("usage: tipcast gift ROOM GIFT"), p.stdout
    assert run().returncode == 2
    p = run("frobnicate", token="t")
    assert p.returncode == 2 and "unknown command frobnicate" in p.stderr, p.stderr
    p = run("gift", "alice", token="t")
    assert p.returncode == 2 and "wrong number of arguments" in p.stderr, p.stderr
    p = run("gift", "alice", "rose", token="t")
    assert p.returncode == 2 and "not an integer: rose" in p.stderr, p.stderr
    p = run("balance", "--combo", "x", token="t")
    assert p.returncode == 2 and "balance takes no --combo" in p.stderr, p.stderr
    p = run("watch", "alice", "--timeout", "soon", token="t")
    assert p.returncode == 2, p.stderr
    assert run("--version").stdout.startswith("tipcast 0.")


def test_auth_and_unreachable_exit_codes(server, catalog):
    srv = server(**FLAGS)
    # No token at all.
    p = run("balance", srv=srv, env={"TIPCAST_TOKEN": ""})
    assert p.returncode == 4 and "no token" in p.stderr, p.stderr
    # A token signed with another secret, and an expired one: refused, exit 4,
    # both on the WebSocket and on the admin API.
    for bad in (mint_token("bob", secret="not-the-secret"), mint_token("bob", exp_in=-3600)):
        p, out = jrun("balance", token=bad, srv=srv)
        assert p.returncode == 4, (p.stdout, p.stderr)
        assert out["code"] in ("auth_invalid", "auth_expired"), out
        p = run("admin", "me", token=bad, srv=srv)
        assert p.returncode == 4 and "unauthorized" in p.stderr, p.stderr
    # The token from the environment works.
    p = run("balance", srv=srv, env={"TIPCAST_TOKEN": mint_token(unique("env"))})
    assert p.returncode == 0 and p.stdout == "0\n", (p.stdout, p.stderr)
    # Nobody listens: exit 3, quickly, for the WebSocket and the admin API.
    dead = free_port()
    t0 = time.monotonic()
    p = run("--url", f"ws://127.0.0.1:{dead}/ws", "balance", token=mint_token("bob"))
    assert p.returncode == 3 and "cannot connect" in p.stderr, p.stderr
    p = run("--url", f"ws://127.0.0.1:{dead}/ws", "watch", "alice", token=mint_token("bob"))
    assert p.returncode == 3, p.stderr
    p = run("--admin", f"http://127.0.0.1:{dead}", "admin", "me", token=mint_token("bob"))
    assert p.returncode == 3 and "cannot connect" in p.stderr, p.stderr
    assert time.monotonic() - t0 < 8


def test_watch_sees_gift_and_balance_moves(server, catalog, watches):
    srv = server(**FLAGS)
    room, bob = unique("cr"), unique("bob")
    live_room(srv, room)
    fund(srv, bob, 1000)
    w = watches(srv, room, mint_token(unique("viewer")))
    w.wait_stderr(f"watching {room} from seq 0")

    gid = unique("g")
    p, ack = jrun("gift", room, ROCKET, "--count", 1, "--combo", "c-1", "--id", gid, token=mint_token(bob), srv=srv)
    assert p.returncode == 0, p.stderr
    assert ack["type"] == "ack" and ack["id"] == gid and ack["amount"] == 500 and ack["balance"] == 500, ack
    assert ack["replayed"] is False
    p, tip = jrun("tip", room, 7, "--text", 'gg "quoted"', token=mint_token(bob), srv=srv)
    assert p.returncode == 0 and tip["balance"] == 493, (p.stdout, p.stderr)

    evs = w.wait_events(2)
    assert [e["seq"] for e in evs] == [1, 2], evs
    assert evs[0]["kind"] == "gift" and evs[0]["order"] == ack["order"] and evs[0]["from"] == bob, evs[0]
    assert evs[0]["gift"] == ROCKET and evs[0]["amount"] == 500 and evs[0]["combo"] == "c-1", evs[0]
    assert evs[1]["kind"] == "tip" and evs[1]["order"] == tip["order"] and evs[1]["text"] == 'gg "quoted"', evs[1]

    # The money: on the wire, in the wallet in Redis, and the order row in PostgreSQL.
    assert balance(srv, bob) == 493
    assert redis_balance(bob) == 493
    row = wait_for(lambda: psql(f"SELECT sender, room, amount, request_id FROM orders "
                                f"WHERE order_id = '{ack['order']}'"), what="the order row")
    assert row == f"{bob}|{room}|500|{gid}", row

    # Human output of the same commands.
    p = run("balance", token=mint_token(bob), srv=srv)
    assert p.returncode == 0 and p.stdout == "493\n", p.stdout
    p = run("history", room, "--after", 0, token=mint_token(bob), srv=srv)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == f"{room} #1 gift from {bob}: Rocket x1 (500 coins) combo c-1 order {ack['order']}", lines
    assert lines[1] == f'{room} #2 tip from {bob}: 7 coins "gg "quoted"" order {tip["order"]}', lines
    p = run("leaderboard", room, token=mint_token(bob), srv=srv)
    assert p.returncode == 0 and p.stdout.splitlines()[0] == f"all: {bob} 507", p.stdout
    p, cat = jrun("catalog", token=mint_token(bob), srv=srv)
    assert {g["id"]: g["price"] for g in cat["gifts"] if g["id"] in PRICES} == PRICES, cat


def test_retried_gift_is_replayed_and_debits_once(server, catalog):
    srv = server(**FLAGS)
    room, bob = unique("cr"), unique("bob")
    live_room(srv, room)
    fund(srv, bob, 100)
    gid = unique("g")
    first = run("gift", room, ROSE, "--count", 3, "--id", gid, token=mint_token(bob), srv=srv)
    assert first.returncode == 0, first.stderr
    assert first.stdout.endswith(" amount 3 balance 97\n") and "replayed" not in first.stdout, first.stdout
    again = run("gift", room, ROSE, "--count", 3, "--id", gid, token=mint_token(bob), srv=srv)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout.rstrip("\n") + " replayed\n", (first.stdout, again.stdout)
    assert balance(srv, bob) == 97 and redis_balance(bob) == 97
    # Same id, other parameters: refused, exit 1 with the code, nothing moved.
    p, err = jrun("gift", room, ROSE, "--count", 4, "--id", gid, token=mint_token(bob), srv=srv)
    assert p.returncode == 1 and err["code"] == "idempotency_conflict", err
    assert "idempotency_conflict" in p.stderr
    assert balance(srv, bob) == 97
    wait_for(lambda: psql(f"SELECT count(*) FROM orders WHERE request_id = '{gid}'") == "1", what="one order")
    time.sleep(0.3)
    assert psql(f"SELECT count(*) FROM orders WHERE request_id = '{gid}'") == "1"


def test_refusals_exit_1(server, catalog):
    srv = server(**FLAGS)
    room, poor = unique("cr"), unique("poor")
    live_room(srv, room)
    fund(srv, poor, 10)
    p, err = jrun("gift", room, ROCKET, token=mint_token(poor), srv=srv)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert err["type"] == "error" and err["code"] == "insufficient_balance" and err["balance"] == 10, err
    assert p.stderr.startswith("tipcast: insufficient_balance: "), p.stderr
    p = run("tip", room, 11, token=mint_token(poor), srv=srv)
    assert p.returncode == 1 and "insufficient_balance" in p.stderr and p.stdout == "", (p.stdout, p.stderr)
    p = run("gift", unique("offline"), ROSE, token=mint_token(poor), srv=srv)
    assert p.returncode == 1 and "room_not_live" in p.stderr, p.stderr
    assert balance(srv, poor) == 10


def test_watch_survives_restart_and_misses_nothing(server, catalog, watches):
    """watch holds on through a restart of its tipcastd: the events sent
    while it was cut off (through another node) and after come once each,
    in seq order."""
    srv = server(**FLAGS)
    port = srv.port
    room, bob = unique("cr"), unique("bob")
    live_room(srv, room)
    fund(srv, bob, 1000)
    w = watches(srv, room, mint_token(unique("viewer")))
    w.wait_stderr(f"watching {room} from seq 0")
    orders = []

    def gift(node):
        p, ack = jrun("gift", room, ROSE, token=mint_token(bob), srv=node)
        assert p.returncode == 0, p.stderr
        orders.append(ack["order"])

    for _ in range(3):
        gift(srv)
    w.wait_events(3)
    srv.check_exit()  # stopped: watch loses its connection
    w.wait_stderr("connection lost")
    other = server(**FLAGS)  # another node, same Redis: the room goes on without the watcher
    live_room(other, room)
    for _ in range(4):
        gift(other)
    again = server(port=port, **FLAGS)  # tipcastd back on the watcher's port
    w.wait_stderr("connected again")
    for _ in range(2):
        gift(again)
    evs = w.wait_events(9, timeout=30)
    time.sleep(0.5)
    evs = list(w.events)
    assert [e["seq"] for e in evs] == list(range(1, 10)), [e["seq"] for e in evs]
    assert [e["order"] for e in evs] == orders
    assert w.proc.poll() is None  # still watching


def test_watch_count_and_timeout(server, catalog):
    srv = server(**FLAGS)
    room, bob = unique("cr"), unique("bob")
    live_room(srv, room)
    fund(srv, bob, 10)
    # --timeout without --count: ends 0; with a --count not reached: 5.
    p = run("watch", room, "--timeout", "0.5", token=mint_token(bob), srv=srv)
    assert p.returncode == 0 and p.stdout == "", (p.stdout, p.stderr)
    p = run("watch", room, "--count", 1, "--timeout", "0.5", token=mint_token(bob), srv=srv)
    assert p.returncode == 5 and "timeout" in p.stderr, p.stderr
    # --count N: exits 0 once N events came (human lines).
    w = subprocess.Popen([cli_bin(), "--url", f"ws://127.0.0.1:{srv.port}/ws", "--token", mint_token(bob),
                          "watch", room, "--count", "2", "--timeout", "20"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        time.sleep(1.0)
        acks = [json.loads(run("gift", room, ROSE, "--json", token=mint_token(bob), srv=srv).stdout)
                for _ in range(2)]
        out, err = w.communicate(timeout=20)
    finally:
        if w.poll() is None:
            w.kill()
    assert w.returncode == 0, err
    assert out.splitlines() == [f"{room} #{i + 1} gift from {bob}: Rose x1 (1 coins) order {a['order']}"
                                for i, a in enumerate(acks)], out


def test_admin_commands(server, catalog):
    srv = server(**FLAGS)
    room, bob = unique("cr"), unique("bob")
    live_room(srv, room)
    fund(srv, bob, 100)
    p, ack = jrun("gift", room, ROSE, "--count", 5, token=mint_token(bob), srv=srv)
    assert p.returncode == 0, p.stderr
    fin = mint_token(unique("fin"), "finance")
    p = run("admin", "me", token=fin, srv=srv)
    assert p.returncode == 0 and json.loads(p.stdout)["role"] == "finance", p.stdout
    assert json.loads(run("admin", "get", "/me", token=fin, srv=srv).stdout)["role"] == "finance"
    # The order reaches PostgreSQL a moment after the ack.
    def order():
        p = run("admin", "order", ack["order"], token=fin, srv=srv)
        return p.returncode == 0 and json.loads(p.stdout)
    o = wait_for(order, what="the order on the admin API")
    assert o["order_id"] == ack["order"] and o["sender"] == bob and o["amount"] == 5, o
    # A refund of 2 coins: the wallet gets them back.
    p = run("admin", "refund", ack["order"], "--amount", 2, "--reason", "test refund", "--id", unique("rf"),
            token=fin, srv=srv)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["refund"]["amount"] == 2 and out["balance"] == 97, out
    assert balance(srv, bob) == 97
    # Refused by role: 403 forbidden, exit 1 with the code.
    p = run("admin", "order", ack["order"], token=mint_token(bob), srv=srv)
    assert p.returncode == 1 and p.stderr.startswith("tipcast: forbidden: HTTP 403"), p.stderr
    p = run("admin", "get", "/no/such/route", token=fin, srv=srv)
    assert p.returncode == 1 and "not_found" in p.stderr, p.stderr
    p = run("admin", "refund", ack["order"], token=fin, srv=srv)  # no --reason
    assert p.returncode == 2, p.stderr
    # A creator mints its overlay token (201).
    p = run("admin", "overlay-token", room, "--ttl", 600, token=mint_token(room, "creator"), srv=srv)
    assert p.returncode == 0, p.stderr
    ov = json.loads(p.stdout)
    assert ov["role"] == "overlay" and ov["room"] == room and ov["token"].count(".") == 2, ov
