"""tipcast-bench (loadtest/) smoke runs against a real tipcastd: short, small
runs of every scenario, checked against what the server did (orders in
PostgreSQL, deliveries counted by the bench against what it expected).

The binary sits next to tipcastd's build: <build>/loadtest/tipcast-bench
when TIPCAST_TEST_BIN is <build>/server/tipcastd.
"""

import json
import os
import subprocess

import pytest

from conftest import PG, REDIS_HOST, REDIS_PORT, REPO, TEST_SECRET, mint_token
from helpers import psql, wait_for
from wsclient import connect, unique

# A gift of the bench's own, so that other tests' catalog edits cannot
# change its price or disable it.
BENCH_GIFT = 9901
ROOMS = 4
FLAGS = dict(max_msgs_per_s=100000, max_burst=100000)
# Every bench run below ends by itself within warmup + duration + its own
# bounds; this is the test's last resort.
RUN_TIMEOUT_S = 90


def _bench_binary():
    server_bin = os.environ.get("TIPCAST_TEST_BIN")
    if server_bin:
        build = os.path.dirname(os.path.dirname(os.path.abspath(server_bin)))
    else:
        build = os.path.join(REPO, "build")
    path = os.path.join(build, "loadtest", "tipcast-bench")
    if not os.access(path, os.X_OK):
        pytest.skip(f"no tipcast-bench at {path}")
    return path


@pytest.fixture(scope="module")
def bench_catalog():
    """The bench's gift and its rooms' creators, live."""
    psql("INSERT INTO gifts (id, name, price, animation, tier, enabled, sort_order) VALUES "
         f"({BENCH_GIFT}, 'BenchRose', 1, 'rose', 1, true, 99) "
         "ON CONFLICT (id) DO UPDATE SET price = 1, enabled = true")
    rooms = ", ".join(f"('bench-room-{i}', true)" for i in range(ROOMS + 2))
    psql(f"INSERT INTO creators (id, live) VALUES {rooms} ON CONFLICT (id) DO UPDATE SET live = true")


def run_bench(tmp_path, srv, *args, expect_rc=0):
    """Runs tipcast-bench against srv with --json; returns the parsed JSON."""
    out = tmp_path / f"bench-{unique('r')}.json"
    run_id = unique("b").replace("-", "").replace("_", "")[:16]
    cmd = [_bench_binary(), "--port", str(srv.port), "--secret", TEST_SECRET, "--gift", str(BENCH_GIFT),
           "--server-pid", str(srv.pid), "--run-id", run_id, "--quiet", "--json", str(out), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert p.returncode == expect_rc, f"{' '.join(cmd)}\nrc={p.returncode}\n{p.stdout}\n{p.stderr}"
    with open(out) as f:
        res = json.load(f)
    assert res["config"]["run_id"] == run_id
    return res


def test_help_mentions_every_option():
    p = subprocess.run([_bench_binary(), "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    for opt in ("--target", "--host", "--port", "--connections", "--open-rate", "--rooms", "--senders",
                "--rate", "--duration", "--warmup", "--find-max", "--step-seconds", "--p99-bound-ms", "--idle",
                "--source-addrs", "--secret", "--gift", "--proto", "--frame-bytes", "--server-pid", "--redis",
                "--pg", "--wallet-shards", "--json", "--svg", "--quiet", "--run-id", "--user-base", "--room-base"):
        assert opt in p.stdout, f"{opt} missing from --help"


def test_bad_option_exits_2():
    p = subprocess.run([_bench_binary(), "--rate", "fast"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2, p.stdout + p.stderr


def test_gift_throughput_matches_postgresql(server, bench_catalog, tmp_path):
    srv = server(**FLAGS)
    res = run_bench(tmp_path, srv, "--connections", "40", "--rooms", str(ROOMS), "--senders", "8", "--rate", "200",
                    "--warmup", "1", "--duration", "2", "--redis", f"{REDIS_HOST}:{REDIS_PORT}", "--pg", PG,
                    "--svg", str(tmp_path / "chart.svg"))
    t = res["totals"]
    assert t["errors_total"] == 0 and t["errors"] == {}, t
    assert t["sent"] > 400 and t["acked"] == t["sent"], t
    run_id = res["config"]["run_id"]
    # Every ack is an order; the ledger consumer writes it within moments.
    wait_for(lambda: int(psql(f"SELECT count(*) FROM orders WHERE request_id LIKE 'g{run_id}-%'")) >= t["acked"],
             what="the bench's orders in PostgreSQL")
    assert int(psql(f"SELECT count(*) FROM orders WHERE request_id LIKE 'g{run_id}-%'")) == t["acked"]
    assert res["ack_latency_ms"]["count"] > 0 and res["ack_latency_ms"]["p99"] > 0
    assert res["rates"]["acks_per_s"] > 0
    assert res["server"]["cpu_s"] is not None
    assert len(res["per_second"]) >= 3
    assert (tmp_path / "chart.svg").read_text().startswith("<svg")


def test_fanout_delivers_every_event(server, bench_catalog, tmp_path):
    srv = server(**FLAGS)
    res = run_bench(tmp_path, srv, "--connections", "200", "--rooms", "1", "--senders", "2", "--rate", "50",
                    "--warmup", "0", "--duration", "3")
    t = res["totals"]
    assert t["connections"]["joined"] == 200, t
    assert t["errors_total"] == 0, t
    assert t["acked"] >= 140, t
    assert t["expected_deliveries"] == t["acked"] * 200, t
    assert t["delivered"] == t["expected_deliveries"], t
    assert res["delivery_latency_ms"]["count"] > 0


def test_room_base_moves_the_rooms(server, bench_catalog, tmp_path):
    # --room-base 4 --rooms 2: the gifts go to bench-room-4 and -5 only.
    srv = server(**FLAGS)
    res = run_bench(tmp_path, srv, "--connections", "4", "--rooms", "2", "--room-base", str(ROOMS), "--senders", "2",
                    "--rate", "20", "--warmup", "0", "--duration", "2")
    t = res["totals"]
    assert t["errors_total"] == 0 and t["acked"] > 10 and t["delivered"] == t["expected_deliveries"], t
    assert res["config"]["room_base"] == ROOMS
    run_id = res["config"]["run_id"]
    wait_for(lambda: int(psql(f"SELECT count(*) FROM orders WHERE request_id LIKE 'g{run_id}-%'")) >= t["acked"],
             what="the bench's orders in PostgreSQL")
    rooms = psql(f"SELECT string_agg(DISTINCT room, ',' ORDER BY room) FROM orders WHERE request_id LIKE 'g{run_id}-%'")
    assert rooms == f"bench-room-{ROOMS},bench-room-{ROOMS + 1}", rooms


def test_fanout_json_subprotocol(server, bench_catalog, tmp_path):
    srv = server(**FLAGS)
    res = run_bench(tmp_path, srv, "--proto", "json", "--connections", "50", "--rooms", "2", "--senders", "2",
                    "--rate", "40", "--warmup", "0", "--duration", "2")
    t = res["totals"]
    assert t["errors_total"] == 0 and t["acked"] > 0, t
    assert t["delivered"] == t["expected_deliveries"] == t["acked"] * 25, t


def test_idle_reports_rss_per_connection(server, bench_catalog, tmp_path):
    srv = server(**FLAGS)
    res = run_bench(tmp_path, srv, "--idle", "--connections", "500", "--rooms", str(ROOMS), "--duration", "2")
    t = res["totals"]
    assert t["connections"]["authenticated"] == 500 and t["connections"]["joined"] == 500, t
    assert t["errors_total"] == 0, t
    assert res["server"]["rss_kb_per_conn"] is not None and res["server"]["rss_kb_per_conn"] > 0, res["server"]


def test_find_max_reports_a_rate(server, bench_catalog, tmp_path):
    srv = server(**FLAGS)
    res = run_bench(tmp_path, srv, "--find-max", "--connections", "20", "--rooms", "2", "--senders", "4",
                    "--rate", "50", "--step-seconds", "1", "--warmup", "0", "--duration", "3")
    fm = res["find_max"]
    assert fm["max_rate"] > 0, fm
    assert fm["steps"] and fm["steps"][0]["rate"] == 50, fm
    assert all(s["rate"] == pytest.approx(50 * 1.5 ** i) for i, s in enumerate(fm["steps"])), fm


def test_find_max_refines_between_the_last_held_and_first_failed_rate(server, bench_catalog, tmp_path):
    """--refine: a server that answers rate_limited past 10 requests a second
    a connection (a bucket of 8: the funder's credits pass) holds the climb's
    step at 40 gifts/s over four senders and fails the next, 60 (15 a second
    each: about 2 of a sender's 30 in the step are refused); then each refine
    step runs at the geometric mean of the highest held and lowest failed
    rate so far, and the maximum is the highest rate held."""
    srv = server(max_msgs_per_s=10, max_burst=8)
    res = run_bench(tmp_path, srv, "--find-max", "--refine", "2", "--connections", "8", "--rooms", "2",
                    "--senders", "4", "--rate", "40", "--step-seconds", "2", "--warmup", "0", "--duration", "11")
    assert "fund_rate_limited" not in res["totals"]["errors"], res["totals"]
    steps = res["find_max"]["steps"]
    climb = [s for s in steps if not s["refine"]]
    assert [s["rate"] for s in climb] == [40, 60] and climb[0]["held"] and not climb[1]["held"], steps
    assert climb[0]["errors"] == 0 and climb[1]["errors"] > 0, climb
    refine = steps[len(climb):]
    assert len(refine) == 2 and all(s["refine"] for s in refine), steps
    lo, hi = 40, 60
    for s in refine:
        assert s["rate"] == pytest.approx((lo * hi) ** 0.5), (s, lo, hi)
        if s["held"]:
            lo = s["rate"]
        else:
            hi = s["rate"]
    assert res["find_max"]["max_rate"] == pytest.approx(lo), res["find_max"]


def test_receive_only_processes_get_every_event_of_another(server, bench_catalog, tmp_path):
    """--senders 0: a process that only receives (its own WebSocket client,
    loadtest/rawrx.c) counts every event another process's gifts make, in
    both subprotocols, and times each from the gift's scheduled send."""
    srv = server(**FLAGS)
    room = ROOMS + 1
    outs, procs = [], []
    for proto, conns in (("msgpack", 300), ("json", 100)):
        out = tmp_path / f"recv-{proto}.json"
        outs.append((out, conns))
        procs.append(subprocess.Popen(
            [_bench_binary(), "--port", str(srv.port), "--secret", TEST_SECRET, "--quiet", "--json", str(out),
             "--proto", proto, "--connections", str(conns), "--senders", "0", "--rooms", "1",
             "--room-base", str(room), "--user-base", "500000" if proto == "json" else "400000",
             "--warmup", "0", "--duration", "8"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        # Every receiver is in the room before the first gift.
        def members():
            ws = connect(srv.port, token=mint_token(unique("v")))
            try:
                return ws.join(f"bench-room-{room}")["members"]
            finally:
                ws.close()
        wait_for(lambda: members() >= 401, what="400 receivers in the room")
        res = run_bench(tmp_path, srv, "--connections", "2", "--rooms", "1", "--room-base", str(room),
                        "--senders", "2", "--rate", "20", "--warmup", "0", "--duration", "2")
        sent = res["totals"]
        assert sent["errors_total"] == 0 and sent["acked"] >= 30, sent
        for p in procs:
            out, _ = p.communicate(timeout=RUN_TIMEOUT_S)
            assert p.returncode == 0, out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for out, conns in outs:
        with open(out) as f:
            got = json.load(f)
        t = got["totals"]
        assert t["connections"]["joined"] == conns and t["errors_total"] == 0, t
        assert t["sent"] == 0 and t["delivered"] == 0, t
        assert t["delivered_foreign"] == sent["acked"] * conns, (t, sent)
        assert got["delivery_latency_ms"]["count"] == sent["acked"] * conns, got["delivery_latency_ms"]


def test_script_cost_counts_both_scripts_of_the_gift_path():
    """bench/script_cost.py replays room_apply.lua and wallet_move.lua on a
    redis-server of its own under callgrind. It exits non-zero when a call
    does not apply every entry or debit (its arguments no longer match the
    scripts'), so this run also checks that it still drives them as tipcastd
    does; the figures must be there and the room script must cost more than
    nothing a gift."""
    out = subprocess.run([os.path.join(REPO, "bench", "script_cost.py"), "--calls", "40", "--entries", "3"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("room_apply: 40 calls of rooms/lua/room_apply.lua, 3 gift(s) a call"), out.stdout
    assert any(l.startswith("debit: 40 calls of gifts/lua/wallet_move.lua") for l in lines), out.stdout
    per_gift = [int(l.split()[2].replace(",", "")) for l in lines if l.strip().startswith("a gift")]
    assert len(per_gift) == 2 and all(n > 10000 for n in per_gift), out.stdout
    # --events-only: the same room calls, only their events written; they
    # must all apply too, and cost less than the whole script.
    out = subprocess.run([os.path.join(REPO, "bench", "script_cost.py"), "--calls", "40", "--entries", "3",
                          "--events-only"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("room_events: 40 calls of EVENTS_ONLY (--events-only), 3 gift(s) a call"), out.stdout
    floor = int(next(l for l in lines if l.strip().startswith("a gift")).split()[2].replace(",", ""))
    assert 1000 < floor < per_gift[0], (floor, per_gift)
