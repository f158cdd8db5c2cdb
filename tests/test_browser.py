"""The demo page: how tipcastd serves it (web-root, demo), and the page itself
driven in a real browser (tests/browser/demo.test.js: Debian's Chromium under
playwright-core, installed by `npm ci` in tests/browser/, see scripts/test.sh).

The browser test uses the demo's own names (room alice, viewers bob and
carol) and catalog (scripts/demo.sql), as scripts/run.sh does; no other test
uses them. Its screenshots go to <build dir>/browser/.
"""

import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import PG, REDIS_HOST, REDIS_PORT, REPO, _binary, free_port, mint_token
from wsclient import ConnectionClosed, HandshakeRefused, unique

WEB_ROOT = os.path.join(REPO, "clients", "web")
BROWSER_DIR = os.path.join(REPO, "tests", "browser")
CHROMIUM = os.environ.get("TIPCAST_CHROMIUM", "/usr/bin/chromium")
DEMO_SQL = os.path.join(REPO, "scripts", "demo.sql")
# The demo catalog's Rocket, the gift the browser test taps.
DEMO_GIFT_ID = 3
DEMO_GIFT_PRICE = 500
# Bob is topped up to this before the browser test (and never beyond, so
# that a tip of his balance + 1 stays within tip-max and is refused for the
# balance, not for its size).
BOB_TARGET = 10000
# Bound on the whole browser run (node exits on its own well before).
NODE_TIMEOUT_S = 150


def demo_server(server, **kw):
    kw.setdefault("web_root", WEB_ROOT)
    kw.setdefault("demo", 1)
    return server(**kw)


# ---- serving the page ------------------------------------------------------


def test_page_files_with_their_types(server):
    srv = demo_server(server)
    for path, ctype, marker in (("/", "text/html", b"<!doctype html>"),
                                ("/index.html", "text/html", b"<!doctype html>"),
                                ("/app.js", "text/javascript", b"tipcast.v1.json"),
                                ("/style.css", "text/css", b".anim-rocket")):
        status, headers, body = srv.http_get(path)
        assert status == 200, (path, status)
        assert headers.get("content-type", "").startswith(ctype), (path, headers)
        assert headers.get("x-content-type-options") == "nosniff", headers
        with open(os.path.join(WEB_ROOT, "index.html" if path == "/" else path[1:]), "rb") as f:
            assert body == f.read(), path
        assert marker in body, path


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


def test_demo_page_in_a_browser(server):
    problems = _browser_missing()
    if problems:
        pytest.fail("the browser test cannot run: " + "; ".join(problems), pytrace=False)
    # Pings every second, so that the idle part of the run (three and a
    # half intervals) sees the browsers answer three of them.
    srv = demo_server(server, ping_interval_s=1)
    _seed_demo(srv)
    out_dir = _screenshot_dir()
    try:
        run = subprocess.run(["node", "demo.test.js", "--url", f"http://127.0.0.1:{srv.port}/",
                              "--out", out_dir, "--idle-s", "4"],
                             cwd=BROWSER_DIR, capture_output=True, text=True,
                             timeout=NODE_TIMEOUT_S,
                             env=dict(os.environ, TIPCAST_TEST_GIFT_ID=str(DEMO_GIFT_ID)))
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the browser test hung for {NODE_TIMEOUT_S}s\n{e.stdout}\n{e.stderr}",
                    pytrace=False)
    report = f"--- stdout ---\n{run.stdout}\n--- stderr ---\n{run.stderr}"
    assert run.returncode == 0, report
    assert run.stdout.rstrip().endswith("PASS"), report
    assert os.path.getsize(os.path.join(out_dir, "browser-bob.png")) > 0
