"""The pages of clients/web: how tipcastd serves them (web-root, web-sdk-root,
demo), and the pages themselves driven in a real browser (Debian's Chromium
under playwright-core, installed by `npm ci` in tests/browser/, see
scripts/test.sh): the viewer demo (tests/browser/demo.test.js), the creator
dashboard (dashboard.test.js), the OBS overlays (overlays.test.js) and the
live-room features on all of them (features.test.js).

The browser tests use the demo's own names (room alice, viewers bob, carol
and dave) and catalog (scripts/demo.sql), as scripts/run.sh does; no other
test uses them. Their screenshots go to <build dir>/browser/ and are kept.
"""

import json
import os
import shutil
import subprocess
import time

import pytest

import admin
from conftest import PG, REDIS_HOST, REDIS_PORT, REPO, _binary, free_port, mint_token
from helpers import wait_for
from wsclient import ConnectionClosed, HandshakeRefused, unique

WEB_ROOT = os.path.join(REPO, "clients", "web")
SDK_ROOT = os.path.join(REPO, "clients", "js", "src")
BROWSER_DIR = os.path.join(REPO, "tests", "browser")
CHROMIUM = os.environ.get("TIPCAST_CHROMIUM", "/usr/bin/chromium")
DEMO_SQL = os.path.join(REPO, "scripts", "demo.sql")
# The demo catalog's Rocket and Rose, the gifts the browser tests tap.
DEMO_GIFT_ID = 3
DEMO_GIFT_PRICE = 500
DEMO_COMBO_GIFT_ID = 1
# What tipcastd serves from web-root, by extension (server/web.c).
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json",
                 ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/", ".txt": "text/plain"}
# The pages of clients/web (docs and run.sh name them).
PAGES = ("index.html", "app.js", "style.css", "common.js", "dashboard.html", "dashboard.js", "dashboard.css",
         "overlay-alerts.html", "overlay-board.html", "overlay-goal.html", "overlay-pk.html", "overlay.js",
         "overlay.css")
# Bob is topped up to this before the browser test (and never beyond, so
# that a tip of his balance + 1 stays within tip-max and is refused for the
# balance, not for its size).
BOB_TARGET = 10000
# Bound on the whole browser run (node exits on its own well before).
NODE_TIMEOUT_S = 150


# The demo test's five Rose taps, 120 ms apart, are to make one combo. A CI
# run's ASan pass once had Chromium take 3.08 s between two of its clicks,
# past the default 3 s window (by the entries' times: the server split the
# combo as the rule says), so the demo pages' server gives combos 10 s.
DEMO_COMBO_WINDOW_MS = 10000


def demo_server(server, **kw):
    kw.setdefault("web_root", WEB_ROOT)
    kw.setdefault("web_sdk_root", SDK_ROOT)
    kw.setdefault("demo", 1)
    return server(**kw)


# ---- serving the page ------------------------------------------------------


def test_page_files_with_their_types(server):
    srv = demo_server(server)
    for path, ctype, marker in (("/", "text/html", b"<!doctype html>"),
                                ("/index.html", "text/html", b"<!doctype html>"),
                                ("/app.js", "text/javascript", b'from "/sdk/tipcast.js"'),
                                ("/style.css", "text/css", b".anim-rocket"),
                                ("/dashboard.html", "text/html", b"/dashboard.js"),
                                ("/overlay-alerts.html", "text/html", b'data-overlay="alerts"'),
                                ("/overlay.css", "text/css", b"background: transparent")):
        status, headers, body = srv.http_get(path)
        assert status == 200, (path, status)
        assert headers.get("content-type", "").startswith(ctype), (path, headers)
        assert headers.get("x-content-type-options") == "nosniff", headers
        with open(os.path.join(WEB_ROOT, "index.html" if path == "/" else path[1:]), "rb") as f:
            assert body == f.read(), path
        assert marker in body, path


def test_every_page_file_is_served_as_on_disk(server):
    """Every file of clients/web and of the SDK (at /sdk/), byte for byte,
    with the type of its extension; the pages' own list is all there."""
    srv = demo_server(server)
    names = sorted(os.listdir(WEB_ROOT))
    assert set(PAGES) <= set(names), set(PAGES) - set(names)
    # Files of other types (the folder's README.md) are not served.
    for n in names:
        if os.path.splitext(n)[1] not in CONTENT_TYPES:
            assert srv.http_get(f"/{n}")[0] == 404, n
    names = [n for n in names if os.path.splitext(n)[1] in CONTENT_TYPES]
    served = [(f"/{n}", os.path.join(WEB_ROOT, n)) for n in names]
    served += [(f"/sdk/{n}", os.path.join(SDK_ROOT, n)) for n in sorted(os.listdir(SDK_ROOT))]
    assert "/sdk/tipcast.js" in dict(served) and "/sdk/msgpack.js" in dict(served), served
    for path, disk in served:
        ext = os.path.splitext(path)[1]
        assert ext in CONTENT_TYPES, f"{disk}: tipcastd does not serve {ext} files"  # the SDK's own files
        status, headers, body = srv.http_get(path)
        assert status == 200, (path, status)
        assert headers.get("content-type", "").startswith(CONTENT_TYPES[ext]), (path, headers)
        with open(disk, "rb") as f:
            assert body == f.read(), path


def test_page_serves_nothing_else(server):
    srv = demo_server(server)
    for path in ("/../server/server.c", "/%2e%2e/README.md", "/..%2fREADME.md", "/web/index.html",
                 "/index.html/", "/.hidden", "/nope.js", "//etc/passwd"):
        status, _, body = srv.http_get(path)
        assert status == 404, (path, status, body[:200])
    # lws itself drops a request whose path decodes to a NUL byte.
    try:
        status = srv.http_get("/app.js%00.css")[0]
    except ConnectionClosed:
        status = None
    assert status is None or 400 <= status < 500, status
    # The health checks still answer beside the page.
    assert srv.http_get("/healthz")[0] == 200


def test_no_page_without_web_root(server):
    srv = server()
    status, _, _ = srv.http_get("/")
    assert status == 404
    assert srv.http_get("/app.js")[0] == 404


def test_web_root_without_index_refuses_to_start(tmp_path):
    (tmp_path / "app.js").write_text("1")
    out = subprocess.run([_binary(), f"--web-root={tmp_path}", "--jwt-secret=" + "x" * 32, f"--port={free_port()}",
                          "--admin-listen=", f"--redis-host={REDIS_HOST}", f"--redis-port={REDIS_PORT}", f"--pg={PG}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "index.html" in out.stderr, out.stderr


# ---- demo tokens -----------------------------------------------------------


def test_demo_token_for_demo_users_only(server):
    srv = demo_server(server)
    for user, role in (("bob", "viewer"), ("erin", "viewer"), ("alice", "creator")):
        status, headers, body = srv.http_get(f"/demo/token?user={user}")
        assert status == 200, body
        assert headers.get("content-type", "").startswith("application/json")
        reply = json.loads(body)
        assert reply["user"] == user and reply["role"] == role, reply
        c = srv.connect(token=reply["token"])
        w = c.expect("welcome")
        assert w["user"] == user and w["role"] == role, w
    for query in ("?user=mallory", "?user=", "", "?user=" + "b" * 200, "?name=bob"):
        status, _, _ = srv.http_get("/demo/token" + query)
        assert status == 404, query


def test_demo_token_absent_when_demo_is_off(server):
    srv = server(web_root=WEB_ROOT)
    status, _, _ = srv.http_get("/demo/token?user=bob")
    assert status == 404


def test_demo_allows_the_pages_own_origin(server):
    srv = demo_server(server)
    token = mint_token(unique("u"))
    own = {"Origin": f"http://127.0.0.1:{srv.port}"}
    c = srv.connect(token=token, headers=own)
    c.expect("welcome")
    with pytest.raises(HandshakeRefused) as e:
        srv.connect(token=token, headers={"Origin": "http://evil.example"})
    assert e.value.status_code == 403
    # Without demo, the page's origin must be listed like any other.
    plain = server(web_root=WEB_ROOT)
    with pytest.raises(HandshakeRefused) as e:
        plain.connect(token=token, headers={"Origin": f"http://127.0.0.1:{plain.port}"})
    assert e.value.status_code == 403


# ---- the page in a browser -------------------------------------------------


def _psql_file(path):
    out = subprocess.run(["psql", PG, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def _screenshot_dir():
    """<build dir>/browser when tipcastd comes from a build tree."""
    binary = os.environ.get("TIPCAST_TEST_BIN")
    build = os.path.dirname(os.path.dirname(os.path.abspath(binary))) if binary else \
        os.path.join(REPO, "build")
    return os.path.join(build, "browser")


def _browser_missing():
    problems = []
    if not shutil.which("node"):
        problems.append("node is not installed (scripts/deps.sh)")
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"{CHROMIUM} is missing (scripts/deps.sh installs chromium)")
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        problems.append("tests/browser/node_modules/playwright-core is missing "
                        "(run `npm ci` in tests/browser; scripts/test.sh does)")
    return problems


def _seed_demo(srv):
    """The demo catalog and creator, and bob with BOB_TARGET coins; waits
    until this tipcastd has reloaded the catalog."""
    _psql_file(DEMO_SQL)
    bob = srv.connect(token=mint_token("bob"))
    bob.expect("welcome")
    deadline = time.monotonic() + 10
    while True:
        cat = bob.request({"type": "catalog", "id": unique("k")})
        assert cat["type"] == "catalog", cat
        if any(g["id"] == DEMO_GIFT_ID and g["price"] == DEMO_GIFT_PRICE for g in cat["gifts"]):
            break
        assert time.monotonic() < deadline, f"the demo catalog never loaded: {cat}"
        time.sleep(0.1)
    balance = bob.request({"type": "balance", "id": unique("b")})
    assert balance["type"] == "balance", balance
    if balance["balance"] < BOB_TARGET:
        admin = srv.connect(token=mint_token(unique("admin"), "admin"))
        admin.expect("welcome")
        ack = admin.request({"type": "credit", "id": unique("seed"), "user": "bob",
                             "amount": BOB_TARGET - balance["balance"]})
        assert ack["type"] == "ack" and ack["balance"] == BOB_TARGET, ack
    bob.close()


def _require_browser():
    problems = _browser_missing()
    if problems:
        pytest.fail("the browser test cannot run: " + "; ".join(problems), pytrace=False)


def _run_node(script, args, env=None):
    """Runs tests/browser/<script>; returns its stdout (asserting PASS)."""
    try:
        run = subprocess.run(["node", script] + args, cwd=BROWSER_DIR, capture_output=True, text=True,
                             timeout=NODE_TIMEOUT_S,
                             env=dict(os.environ, TIPCAST_TEST_GIFT_ID=str(DEMO_GIFT_ID),
                                      TIPCAST_TEST_COMBO_GIFT_ID=str(DEMO_COMBO_GIFT_ID), **(env or {})))
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{script} hung for {NODE_TIMEOUT_S}s\n{e.stdout}\n{e.stderr}", pytrace=False)
    # The first line is the reason (a run's summary shows only that line).
    reason = next((line for line in run.stderr.splitlines() if line.startswith("FAIL")),
                  f"{script} exited {run.returncode}")
    report = f"{reason}\n--- stdout ---\n{run.stdout}\n--- stderr ---\n{run.stderr}"
    assert run.returncode == 0, report
    assert run.stdout.rstrip().endswith("PASS"), report
    return run.stdout


def _screenshots_kept(out_dir, names):
    for name in names:
        path = os.path.join(out_dir, name)
        assert os.path.isfile(path) and os.path.getsize(path) > 0, f"{path} was not kept"


def test_demo_page_in_a_browser(server):
    _require_browser()
    # Pings every second, so that the idle part of the run (three and a
    # half intervals) sees the browsers answer three of them.
    srv = demo_server(server, ping_interval_s=1, combo_window_ms=DEMO_COMBO_WINDOW_MS)
    _seed_demo(srv)
    out_dir = _screenshot_dir()
    _run_node("demo.test.js", ["--url", f"http://127.0.0.1:{srv.port}/", "--out", out_dir, "--idle-s", "4"])
    _screenshots_kept(out_dir, ("demo-bob.png", "demo-carol.png", "demo-alice.png"))


def test_demo_page_msgpack_in_a_browser(server):
    """The same page on the msgpack subprotocol (?protocol=msgpack): the SDK's
    own codec in Chromium. Screenshots in <build dir>/browser/msgpack/."""
    _require_browser()
    srv = demo_server(server, combo_window_ms=DEMO_COMBO_WINDOW_MS)
    _seed_demo(srv)
    out_dir = os.path.join(_screenshot_dir(), "msgpack")
    _run_node("demo.test.js", ["--url", f"http://127.0.0.1:{srv.port}/?protocol=msgpack", "--out", out_dir])
    _screenshots_kept(out_dir, ("demo-bob.png", "demo-carol.png", "demo-alice.png"))


def _pg_value(sql):
    out = subprocess.run(["psql", PG, "-X", "-qAtc", sql], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_dashboard_in_a_browser(server):
    """alice's dashboard: live feed, earnings net of fees (held against the
    admin API's split and the revenue rule by the node test, and against
    PostgreSQL's ledger here), supporters, chart, a withdrawal, the overlay
    links. Settlement without delay, so that the withdrawal has coins."""
    _require_browser()
    srv = demo_server(server, settlement_delay_days=0, withdrawal_min=1)
    _seed_demo(srv)
    # The page calls the admin API as soon as it opens: wait until that
    # listener answers (a sanitized build opens it later).
    api = admin.AdminClient(f"http://127.0.0.1:{srv.admin_port}")
    api.check_spec = False
    def admin_ready():
        try:
            return api.get("/readyz")[0] == 200
        except OSError:  # not listening yet
            return False
    wait_for(admin_ready, what="the admin API ready")
    out_dir = _screenshot_dir()
    stdout = _run_node("dashboard.test.js", ["--url", f"http://127.0.0.1:{srv.port}/",
                                             "--admin", f"http://127.0.0.1:{srv.admin_port}", "--out", out_dir],
                       env={"TIPCAST_TEST_ADMIN_TOKEN": mint_token(unique("admin"), "admin")})
    _screenshots_kept(out_dir, ("dashboard.png", "dashboard-links.png"))
    shown = json.loads(next(line for line in stdout.splitlines() if line.startswith("FIGURES "))[8:])
    # The creator's net per UTC period straight from the ledger (its orders'
    # net minus refunds; paid withdrawals are not income), not from the
    # stats rollups the page reads.
    for period, trunc in (("day", "day"), ("week", "week"), ("month", "month")):
        want = int(_pg_value("SELECT coalesce(sum(delta), 0) FROM ledger WHERE account = 'creator:alice' "
                             "AND kind <> 'withdrawal' AND created_at >= "
                             f"date_trunc('{trunc}', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"))
        assert shown[period] == want, (period, shown, want)
    balance = _pg_value("SELECT greatest(0, available - frozen) FROM creator_balances WHERE creator = 'alice'")
    assert shown["withdrawable"] == int(balance), (shown, balance)


def test_overlays_in_a_browser(server):
    _require_browser()
    srv = demo_server(server)
    _seed_demo(srv)
    out_dir = _screenshot_dir()
    _run_node("overlays.test.js", ["--url", f"http://127.0.0.1:{srv.port}/", "--out", out_dir])
    _screenshots_kept(out_dir, ("overlay-alerts-combo.png", "overlay-alerts-tip.png", "overlay-board.png",
                                "overlay-goal.png"))


def test_live_room_features_in_a_browser(server):
    """Combos, fan badges, pinned tips, the goal, moderators, a PK battle and a
    campaign on the demo page, the dashboard and the goal and PK overlays
    (tests/browser/features.test.js). The PK rival is a creator of its own,
    live, made here; the battle and the campaign are made through the admin
    API with an admin's token."""
    _require_browser()
    srv = demo_server(server)
    _seed_demo(srv)
    rival = unique("rival")
    _pg_value(f"INSERT INTO creators (id, live) VALUES ('{rival}', true)")
    out_dir = _screenshot_dir()
    _run_node("features.test.js", ["--url", f"http://127.0.0.1:{srv.port}/",
                                   "--admin", f"http://127.0.0.1:{srv.admin_port}", "--rival", rival,
                                   "--out", out_dir],
              env={"TIPCAST_TEST_ADMIN_TOKEN": mint_token(unique("admin"), "admin")})
    _screenshots_kept(out_dir, ("features-carol.png", "features-bob.png", "features-alice.png",
                                "features-dashboard.png", "overlay-goal-room.png", "overlay-pk-room.png"))
