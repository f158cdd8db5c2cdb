"""What the pages of clients/web need from tipcastd (issue 13): the overlay
role and its tokens, the rooms' period totals (the goal bar), the admin
API's CORS answers to the demo dashboard, and the SDK served at /sdk/.

All against a real tipcastd, Redis and PostgreSQL."""

import json
import os

import pytest

import admin
from conftest import REPO, mint_token
from helpers import psql, wait_for
from wsclient import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, unique

ROSE, ROCKET = 9101, 9103
WEB_ROOT = os.path.join(REPO, "clients", "web")
SDK_ROOT = os.path.join(REPO, "clients", "js", "src")


@pytest.fixture(scope="module")
def gifts():
    psql("INSERT INTO gifts (id, name, price, animation, tier, enabled, sort_order) VALUES "
         f"({ROSE}, 'Rose', 1, 'rose', 1, true, 1), ({ROCKET}, 'Rocket', 500, 'rocket', 2, true, 3) "
         "ON CONFLICT (id) DO UPDATE SET price = EXCLUDED.price, enabled = true")


def live_creator():
    creator = unique("cr")
    psql(f"INSERT INTO creators (id, live) VALUES ('{creator}', true) ON CONFLICT (id) DO UPDATE SET live = true")
    return creator


def gift_when_live(c, room, gift, count=1):
    """Sends a gift, retrying room_not_live until the node's catalog reload
    has brought the new creator; returns the ack."""
    rid = unique("g")

    def go():
        r = c.request({"type": "gift", "id": rid, "room": room, "gift": gift, "count": count})
        return None if r.get("code") == "room_not_live" else r
    ack = wait_for(go, what="the room live")
    assert ack["type"] == "ack", ack
    return ack


@pytest.fixture
def scene(server, client, gifts):
    srv, api = admin.start(server)
    creator = live_creator()
    adm = client(srv, unique("adm"), "admin")
    viewer = unique("v")
    assert adm.request({"type": "credit", "id": unique("c"), "user": viewer, "amount": 100000})["type"] == "ack"

    class S:
        pass
    s = S()
    s.srv, s.api, s.creator, s.viewer, s.client = srv, api, creator, viewer, client
    s.v = client(srv, viewer, "viewer")
    return s


# ---- the overlay role ---------------------------------------------------------


def test_overlay_token_minted_by_the_creator_reads_its_room_only(scene):
    s = scene
    rid = unique("ovq")
    st, _, body = s.api.post(f"/api/v1/creators/{s.creator}/overlay-token", mint_token(s.creator, "creator"),
                             {"ttl_s": 3600}, request_id=rid)
    assert st == 201, (st, body)
    assert body["room"] == s.creator and body["role"] == "overlay", body
    token = body["token"]
    payload = json.loads(__import__("base64").urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["sub"] == s.creator and payload["room"] == s.creator and payload["role"] == "overlay"
    assert payload["exp"] == body["exp"], (payload, body)
    # Audited, with the request id.
    rows = psql(f"SELECT action, target FROM audit_log WHERE request_id = '{rid}'")
    assert rows.strip() == f"overlay.token|{s.creator}", rows

    for proto in (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK):
        ov = s.srv.connect(subprotocol=proto, token=token)
        w = ov.expect("welcome")
        assert w["role"] == "overlay" and w["room"] == s.creator and w["user"] == s.creator, w
        joined = ov.request({"type": "join", "id": "j1", "room": s.creator})
        assert joined["type"] == "joined" and joined["room"] == s.creator, joined
        assert ov.request({"type": "leaderboard", "id": "lb", "room": s.creator})["type"] == "leaderboard"
        assert ov.request({"type": "history", "id": "h", "room": s.creator, "after_seq": 0})["type"] == "history"
        assert ov.request({"type": "catalog", "id": "k"})["type"] == "catalog"
        assert ov.request({"type": "ping", "id": "p"})["type"] == "pong"
        # Nothing else: no other room, no money, no notices.
        other = live_creator()
        for req in ({"type": "join", "id": "x1", "room": other},
                    {"type": "history", "id": "x2", "room": other, "after_seq": 0},
                    {"type": "leaderboard", "id": "x3", "room": other},
                    {"type": "gift", "id": "x4", "room": other, "gift": ROSE},
                    {"type": "tip", "id": "x5", "room": other, "amount": 5},
                    {"type": "balance", "id": "x6"},
                    {"type": "earnings", "id": "x7"},
                    {"type": "notice", "id": "x8", "room": s.creator, "text": "hi"},
                    {"type": "credit", "id": "x9", "user": "bob", "amount": 5},
                    {"type": "moderators", "id": "x10", "room": s.creator},
                    {"type": "unpin", "id": "x11", "room": s.creator, "order": "1-1-0"}):
            r = ov.request(req)
            assert r["type"] == "error" and r["code"] == "forbidden" and r["id"] == req["id"], (req, r)
        # Still served: a gift of a viewer reaches the overlay as an event.
        ack = gift_when_live(s.v, s.creator, ROSE)
        ev = ov.expect("event", timeout=10)
        assert ev["order"] == ack["order"] and ev["kind"] == "gift", ev
        ov.close()


def test_overlay_token_rules(scene):
    s = scene
    other = live_creator()
    # A creator mints only its own; operations may mint any; a viewer none.
    st, _, b = s.api.post(f"/api/v1/creators/{other}/overlay-token", mint_token(s.creator, "creator"))
    assert st == 403 and b["error"]["code"] == "forbidden", (st, b)
    st, _, b = s.api.post(f"/api/v1/creators/{other}/overlay-token", mint_token(unique("op"), "operations"))
    assert st == 201 and b["room"] == other, (st, b)
    st, _, b = s.api.post(f"/api/v1/creators/{other}/overlay-token", mint_token(unique("v"), "viewer"))
    assert st == 403, (st, b)
    # Not a creator: 404; a lifetime out of bounds: 400 naming ttl_s.
    st, _, b = s.api.post(f"/api/v1/creators/{unique('nobody')}/overlay-token", mint_token(unique("a"), "admin"))
    assert st == 404 and b["error"]["code"] == "not_found", (st, b)
    for ttl in (59, 31536001, "600", 1.5):
        st, _, b = s.api.post(f"/api/v1/creators/{other}/overlay-token", mint_token(unique("a"), "admin"),
                              {"ttl_s": ttl})
        assert st == 400 and b["error"]["code"] == "bad_field" and b["error"]["field"] == "ttl_s", (ttl, st, b)
    # The default lifetime is 30 days.
    st, _, b = s.api.post(f"/api/v1/creators/{other}/overlay-token", mint_token(unique("a"), "admin"))
    assert st == 201, (st, b)
    token = b["token"]
    now = int(psql("SELECT floor(extract(epoch FROM now()))::bigint").strip())
    assert abs(b["exp"] - (now + 2592000)) <= 5, (b, now)
    # The admin API refuses an overlay token everywhere, even /me.
    for path in ("/api/v1/me", f"/api/v1/creators/{other}/stats", f"/api/v1/creators/{other}/balance"):
        st, _, b = s.api.get(path, token)
        assert st == 403 and b["error"]["code"] == "forbidden", (path, st, b)
    # An overlay token whose room claim is not its subject is refused.
    bad = mint_token(other, "overlay")  # no room claim
    c = s.srv.connect(subprotocol=SUBPROTOCOL_JSON)
    r = c.request({"type": "auth", "id": "a", "token": bad})
    assert r["type"] == "error" and r["code"] == "auth_invalid", r


def test_demo_overlay_token(server):
    srv = server(web_root=WEB_ROOT, demo=1)
    st, _, body = srv.http_get("/demo/token?user=alice&role=overlay")
    assert st == 200, (st, body)
    b = json.loads(body)
    assert b["role"] == "overlay" and b["room"] == "alice" and b["user"] == "alice", b
    st, _, _ = srv.http_get("/demo/token?user=bob&role=overlay")
    assert st == 404
    st, _, _ = srv.http_get("/demo/token?user=alice&role=admin")
    assert st == 400
    c = srv.connect(subprotocol=SUBPROTOCOL_JSON, token=b["token"])
    w = c.expect("welcome")
    assert w["role"] == "overlay" and w["room"] == "alice", w


# ---- the rooms' totals --------------------------------------------------------


def test_totals_count_every_gift_and_tip_and_refunds_lower_them(scene):
    s = scene
    watcher = s.client(s.srv, unique("w"), "viewer")
    j = watcher.request({"type": "join", "id": "j0", "room": s.creator})
    assert j["totals"] == {"all": 0, "day": 0, "week": 0, "month": 0}, j
    ack1 = gift_when_live(s.v, s.creator, ROCKET, count=2)
    ack2 = s.v.request({"type": "tip", "id": unique("t"), "room": s.creator, "amount": 77})
    assert ack2["type"] == "ack", ack2
    second = s.client(s.srv, unique("v2"), "viewer")
    adm = s.client(s.srv, unique("adm"), "admin")
    adm.request({"type": "credit", "id": unique("c"), "user": second.welcome["user"], "amount": 50})
    ack3 = gift_when_live(second, s.creator, ROSE, count=5)
    want = 1000 + 77 + 5

    def pushed_total():
        m = watcher.expect("leaderboard", timeout=10)
        return m if m["totals"]["all"] == want else None
    push = wait_for(pushed_total, what="a push with every gift")
    assert push["totals"] == {"all": want, "day": want, "week": want, "month": want}, push
    assert sum(e["total"] for e in push["top"]) == want, push
    # The reply to a request and a fresh snapshot say the same, in both protocols.
    lb = s.v.request({"type": "leaderboard", "id": "lb", "room": s.creator})
    assert lb["totals"]["all"] == want, lb
    mp = s.client(s.srv, unique("m"), "viewer", SUBPROTOCOL_MSGPACK)
    j = mp.request({"type": "join", "id": "j1", "room": s.creator})
    assert j["totals"] == {"all": want, "day": want, "week": want, "month": want}, j
    assert j["seq"] == 3, j

    # A refund of 300 of the rocket order lowers every period's total by 300.
    sup = mint_token(unique("sup"), "support")
    wait_for(lambda: s.api.get(f"/api/v1/orders/{ack1['order']}", sup)[0] == 200, what="the order in PostgreSQL")
    st, _, r = s.api.post(f"/api/v1/orders/{ack1['order']}/refund", sup,
                          {"refund_id": unique("rf"), "amount": 300, "reason": "totals test"})
    assert st == 201, (st, r)

    def lowered():
        t = s.v.request({"type": "leaderboard", "id": unique("lb"), "room": s.creator})["totals"]
        return t if t["all"] == want - 300 else None
    t = wait_for(lowered, what="the refund on the totals")
    assert t == {"all": want - 300, "day": want - 300, "week": want - 300, "month": want - 300}, t
    assert ack3["amount"] == 5


def test_totals_start_from_a_board_older_than_them(scene):
    """A room whose boards were written before the totals existed: the first
    gift after the upgrade starts each total from its board's sum."""
    from resp import Redis
    s = scene
    r = Redis()
    key = f"tc:{{r:{s.creator}}}:sum:all"
    ack = gift_when_live(s.v, s.creator, ROSE, count=3)
    wait_for(lambda: r("GET", key) == "3", what="the first total")
    # As an older tipcastd left it: boards with 400 coins of someone, no totals.
    r("ZINCRBY", f"tc:{{r:{s.creator}}}:board:all", "400", "olduser")
    r("DEL", key)
    gift_when_live(s.v, s.creator, ROSE, count=2)
    wait_for(lambda: r("GET", key) == "405", what="the total from the board")
    lb = s.v.request({"type": "leaderboard", "id": "lb", "room": s.creator})
    assert lb["totals"]["all"] == 405 and {"user": "olduser", "total": 400, "level": 1, "badge": "Fan"} in lb["top"], lb
    assert ack["amount"] == 3
    r.close()


# ---- CORS on the admin API ----------------------------------------------------


def test_admin_cors_for_the_demo_dashboard(server):
    port, flags = admin.admin_flags(demo=1, web_root=WEB_ROOT)
    srv = server(**flags)
    api = admin.AdminClient(f"http://127.0.0.1:{port}")
    api.check_spec = False
    tok = mint_token(unique("cr"), "creator")
    page = f"http://127.0.0.1:{srv.port}"
    wait_for(lambda: api.get("/api/v1/me", tok)[0] == 200, what="the admin API")
    # Preflight from the page on the other port: allowed.
    st, h, _ = api.call("OPTIONS", "/api/v1/withdrawals",
                        headers={"Origin": page, "Access-Control-Request-Method": "POST",
                                 "Access-Control-Request-Headers": "authorization, content-type"})
    assert st == 204, (st, h)
    assert h["access-control-allow-origin"] == page, h
    assert "POST" in h["access-control-allow-methods"], h
    assert "authorization" in h["access-control-allow-headers"].lower(), h
    assert h["access-control-max-age"] == "600" and h["vary"] == "Origin", h
    # The call itself carries the origin back and exposes the request id.
    st, h, b = api.call("GET", "/api/v1/me", token=tok, headers={"Origin": page})
    assert st == 200 and h["access-control-allow-origin"] == page, (st, h)
    assert h["access-control-expose-headers"] == "X-Request-Id", h
    # Another site: no CORS headers, so its browser reads nothing.
    for origin in ("http://evil.example", "http://evil.example:8080", "null"):
        st, h, _ = api.call("OPTIONS", "/api/v1/me", headers={"Origin": origin})
        assert st == 204 and "access-control-allow-origin" not in h, (origin, h)
        st, h, _ = api.call("GET", "/api/v1/me", token=tok, headers={"Origin": origin})
        assert st == 200 and "access-control-allow-origin" not in h and h["vary"] == "Origin", (origin, h)
    # A Host that is a name (DNS rebinding) gets nothing either.
    st, h, _ = api.call("GET", "/api/v1/me", token=tok,
                        headers={"Origin": "http://evil.example:8080", "Host": "evil.example:8081"})
    assert "access-control-allow-origin" not in h, h


def test_admin_cors_from_allowed_origins(server):
    port, flags = admin.admin_flags(allowed_origins="https://dash.example")
    server(**flags)
    api = admin.AdminClient(f"http://127.0.0.1:{port}")
    api.check_spec = False
    tok = mint_token(unique("cr"), "creator")
    wait_for(lambda: api.get("/api/v1/me", tok)[0] == 200, what="the admin API")
    st, h, _ = api.call("GET", "/api/v1/me", token=tok, headers={"Origin": "https://dash.example"})
    assert h.get("access-control-allow-origin") == "https://dash.example", h
    # Without demo, the same host on another port is just another origin.
    st, h, _ = api.call("GET", "/api/v1/me", token=tok, headers={"Origin": "http://127.0.0.1:8080"})
    assert "access-control-allow-origin" not in h, h


# ---- the SDK at /sdk/ -----------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir(SDK_ROOT), reason="clients/js/src is not there yet")
def test_sdk_served_beside_the_pages(server):
    srv = server(web_root=WEB_ROOT, web_sdk_root=SDK_ROOT, demo=1)
    names = sorted(n for n in os.listdir(SDK_ROOT) if n.endswith(".js"))
    assert "tipcast.js" in names, names
    for n in names:
        st, h, body = srv.http_get("/sdk/" + n)
        assert st == 200 and h["content-type"].startswith("text/javascript"), (n, st, h)
        with open(os.path.join(SDK_ROOT, n), "rb") as f:
            assert body == f.read(), n
    st, _, _ = srv.http_get("/sdk/../server/server.c")
    assert st == 404
    st, _, _ = srv.http_get("/sdk/")
    assert st == 404


def test_sdk_root_that_is_missing_refuses_to_start(tmp_path):
    from conftest import PG, REDIS_HOST, REDIS_PORT, _binary, free_port
    import subprocess
    p = subprocess.run([_binary(), "--jwt-secret", "x" * 32, "--port", str(free_port()), "--admin-listen",
                        f"127.0.0.1:{free_port()}", "--pg", PG, "--redis-host", REDIS_HOST, "--redis-port",
                        str(REDIS_PORT), "--web-root", WEB_ROOT, "--web-sdk-root", str(tmp_path / "nothing")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "web-sdk-root" in p.stderr, (p.returncode, p.stderr[-500:])


# ---- the pages' Content-Security-Policy ----------------------------------------


def test_pages_may_connect_to_the_admin_api(server):
    """The dashboard on tipcastd's port calls the admin API on another one:
    its policy allows that origin (web-connect-src; with demo, the page's own
    pinned host on any port), and nothing else is loosened."""
    srv = server(web_root=WEB_ROOT, demo=1, web_connect_src="https://admin.example.com")
    st, h, _ = srv.http_get("/dashboard.html")
    assert st == 200, st
    csp = h["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in (x.strip() for x in csp.split(";")) if d}
    assert directives["connect-src"] == ["'self'", "ws:", "wss:", "http://127.0.0.1:*",
                                         "https://admin.example.com"], csp
    assert directives["script-src"] == ["'self'"] and directives["default-src"] == ["'none'"], csp
    assert directives["frame-ancestors"] == ["'none'"], csp
    assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "deny", h
    # A name in Host (DNS rebinding) gets no demo source.
    st, h, _ = srv.http_get("/dashboard.html", headers={"Host": "evil.example:8080"})
    assert "evil.example" not in h["content-security-policy"], h
    # JSON answers load nothing.
    st, h, _ = srv.http_get("/healthz")
    assert h["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'", h
    # Without demo and web-connect-src: only the page's own origin and WebSockets.
    plain = server(web_root=WEB_ROOT)
    st, h, _ = plain.http_get("/")
    assert "connect-src 'self' ws: wss:;" in h["content-security-policy"], h
