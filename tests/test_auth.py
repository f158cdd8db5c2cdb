"""Authentication (JWT HS256 in the URL, the Authorization header or an auth
message), key rotation, the auth deadline, Origin and subprotocol checks."""

import os
import subprocess
import time

import pytest

from conftest import PG, _binary, free_port
from wsclient import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, HandshakeRefused, unique

PROTOS = [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK]


def check_welcome(w, user, role, rid=None):
    assert w["type"] == "welcome", w
    assert w["user"] == user and w["role"] == role, w
    assert isinstance(w["exp"], int) and w["exp"] > time.time(), w
    if rid is None:
        assert "id" not in w, w
    else:
        assert w["id"] == rid, w
    assert isinstance(w["limits"], dict), w


def refused(c, code, rid=None):
    """The server answers an error with code, then closes with 4003."""
    err = c.expect("error")
    assert err["code"] == code, err
    if rid is not None:
        assert err.get("id") == rid, err
    assert c.wait_close() == 4003
    return err


@pytest.mark.parametrize("proto", PROTOS)
def test_token_in_query(server, mint, proto):
    srv = server()
    user = unique("u")
    c = srv.connect(subprotocol=proto, token=mint(user, "creator"))
    check_welcome(c.expect("welcome"), user, "creator")
    c.ping()


@pytest.mark.parametrize("proto", PROTOS)
def test_token_in_header(server, mint, proto):
    srv = server()
    user = unique("u")
    c = srv.connect(subprotocol=proto,
                    headers={"Authorization": "Bearer " + mint(user, "admin")})
    check_welcome(c.expect("welcome"), user, "admin")
    c.ping()


@pytest.mark.parametrize("proto", PROTOS)
def test_token_in_auth_message(server, mint, proto):
    srv = server()
    user = unique("u")
    c = srv.connect(subprotocol=proto)
    c.send({"type": "auth", "id": "a1", "token": mint(user)})
    w = c.expect("welcome")
    check_welcome(w, user, "viewer", rid="a1")
    c.ping()
    # A second auth is refused and changes nothing.
    c.send({"type": "auth", "id": "a2", "token": mint(unique("u"), "admin")})
    c.expect_error("already_authenticated", id="a2")
    c.ping()


def test_welcome_limits(server, client):
    srv = server(max_frame_bytes=4096, max_msgs_per_s=7, max_burst=9, max_rooms_per_conn=3)
    c = client(srv, unique("u"))
    assert c.welcome["limits"] == {"max_frame_bytes": 4096, "max_msgs_per_s": 7,
                                   "max_burst": 9, "max_rooms": 3,
                                   "max_text_bytes": 500}, c.welcome


@pytest.mark.parametrize("where", ["query", "header", "message"])
def test_expired_token(server, mint, where):
    srv = server()
    token = mint(unique("u"), exp_in=-3600)
    if where == "query":
        c = srv.connect(token=token)
        refused(c, "auth_expired")
    elif where == "header":
        c = srv.connect(headers={"Authorization": f"Bearer {token}"})
        refused(c, "auth_expired")
    else:
        c = srv.connect()
        c.send({"type": "auth", "id": "a1", "token": token})
        refused(c, "auth_expired", rid="a1")


def test_clock_skew_tolerated(server, mint):
    srv = server()
    user = unique("u")
    # Expired 10 s ago: inside the 30 s leeway.
    c = srv.connect(token=mint(user, exp_in=-10))
    assert c.expect("welcome")["user"] == user
    # Not valid for another 10 s: inside the leeway too.
    c2 = srv.connect(token=mint(user, extra={"nbf": int(time.time()) + 10}))
    assert c2.expect("welcome")["user"] == user


def test_not_yet_valid(server, mint):
    srv = server()
    c = srv.connect(token=mint(unique("u"), extra={"nbf": int(time.time()) + 3600}))
    refused(c, "auth_expired")


@pytest.mark.parametrize("where", ["query", "header", "message"])
def test_forged_signature(server, mint, where):
    srv = server()
    token = mint(unique("u"), "admin", secret="some-other-secret-entirely-0123456789")
    if where == "query":
        refused(srv.connect(token=token), "auth_invalid")
    elif where == "header":
        refused(srv.connect(headers={"Authorization": f"Bearer {token}"}), "auth_invalid")
    else:
        c = srv.connect(subprotocol=SUBPROTOCOL_MSGPACK)
        c.send({"type": "auth", "id": "a1", "token": token})
        refused(c, "auth_invalid", rid="a1")


def _tampered(mint):
    """A validly signed viewer token whose payload is swapped for an admin one."""
    good = mint(unique("u"), "viewer").split(".")
    admin = mint(unique("u"), "admin").split(".")
    return ".".join([good[0], admin[1], good[2]])


MALFORMED = {
    "abc": lambda mint: "abc",
    "a.b.c": lambda mint: "a.b.c",
    "dots": lambda mint: "..",
    "alg_none": lambda mint: mint(unique("u"), "admin", alg="none"),
    "alg_none_with_sig": lambda mint: mint(unique("u"), "admin", alg="none") + "AAAA",
    "alg_hs512_label": lambda mint: mint(unique("u"), "admin", alg="HS512"),
    "tampered_payload": _tampered,
    "bad_role": lambda mint: mint(unique("u"), "superuser"),
    "bad_sub_chars": lambda mint: mint("bad user!", "viewer"),
    "sub_too_long": lambda mint: mint("u" * 65, "viewer"),
    "no_exp": lambda mint: mint(unique("u"), extra={"exp": None}),
    "no_sub": lambda mint: mint(unique("u"), extra={"sub": None}),
    "exp_string": lambda mint: mint(unique("u"), extra={"exp": "tomorrow"}),
    "four_parts": lambda mint: mint(unique("u")) + ".xyz",
    "bad_base64": lambda mint: "!!!." + mint(unique("u")).split(".", 1)[1],
}


@pytest.fixture(scope="module")
def shared_srv(module_server):
    """One plain server for the many cheap token cases of this module."""
    return module_server()


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_token(shared_srv, mint, name):
    srv = shared_srv
    token = MALFORMED[name](mint)
    c = srv.connect()
    c.send({"type": "auth", "id": "a1", "token": token})
    refused(c, "auth_invalid", rid="a1")


@pytest.mark.parametrize("role", ["finance", "operations", "support", "auditor"])
def test_staff_roles_are_for_the_admin_api(shared_srv, mint, role):
    """A staff token verifies, but is no WebSocket user: refused, and the
    message says where it belongs."""
    c = shared_srv.connect()
    c.send({"type": "auth", "id": "a1", "token": mint(unique("staff"), role)})
    err = refused(c, "auth_invalid", rid="a1")
    assert "admin API" in err["message"], err


def test_malformed_token_in_query(shared_srv):
    refused(shared_srv.connect(token="a.b.c"), "auth_invalid")


def test_key_rotation(server, mint):
    srv = server(jwt_secret="old:S1-old-secret-0123456789abcdef01,new:S2-new-secret-0123456789abcdef01")
    s1 = "S1-old-secret-0123456789abcdef01"
    s2 = "S2-new-secret-0123456789abcdef01"
    u1, u2 = unique("u"), unique("u")
    c = srv.connect(token=mint(u1, kid="old", secret=s1))
    assert c.expect("welcome")["user"] == u1
    c = srv.connect(token=mint(u2, kid="new", secret=s2))
    assert c.expect("welcome")["user"] == u2
    # A token without kid is checked with the first entry (config.h).
    c = srv.connect(token=mint(u1, secret=s1))
    assert c.expect("welcome")["user"] == u1
    # kid that names no configured secret.
    refused(srv.connect(token=mint(u1, kid="gone", secret=s1)), "auth_invalid")
    # Right kid, wrong key: a key is bound to its kid.
    refused(srv.connect(token=mint(u1, kid="old", secret=s2)), "auth_invalid")
    # The server's single-secret default is not configured here.
    refused(srv.connect(token=mint(u1)), "auth_invalid")


def test_auth_timeout(server):
    srv = server(auth_timeout_ms=500)
    start = time.monotonic()
    c = srv.connect()
    assert c.wait_close(timeout=5) == 4001
    elapsed = time.monotonic() - start
    assert 0.4 <= elapsed <= 3.0, elapsed


def test_auth_timeout_not_reset_by_pings(server):
    srv = server(auth_timeout_ms=800)
    start = time.monotonic()
    c = srv.connect()
    for _ in range(3):
        c.ping()
        time.sleep(0.1)
    assert c.wait_close(timeout=5) == 4001
    assert time.monotonic() - start <= 3.0


def test_authenticated_connection_outlives_auth_timeout(server, mint):
    srv = server(auth_timeout_ms=300)
    c = srv.connect(token=mint(unique("u")))
    c.expect("welcome")
    time.sleep(0.8)
    c.ping()


@pytest.mark.parametrize("proto", PROTOS)
def test_requests_before_auth(server, mint, proto):
    srv = server()
    c = srv.connect(subprotocol=proto)
    room = unique("r")
    c.send({"type": "join", "id": "j1", "room": room})
    c.expect_error("auth_required", id="j1")
    c.send({"type": "notice", "id": "n1", "room": room, "text": "x"})
    c.expect_error("auth_required", id="n1")
    c.send({"type": "history", "id": "h1", "room": room, "after_seq": 0})
    c.expect_error("auth_required", id="h1")
    # ping is allowed before auth.
    c.ping()
    # The connection stays open and a later auth works.
    c.send({"type": "auth", "id": "a1", "token": mint(room, "creator")})
    assert c.expect("welcome", id="a1")["user"] == room
    assert c.join(room)["owner"] == room


def test_origin_allowed_list(server, mint):
    srv = server(allowed_origins="https://good.example")
    with pytest.raises(HandshakeRefused) as e:
        srv.connect(token=mint(unique("u")), headers={"Origin": "https://evil.example"})
    assert e.value.status_code == 403
    # A prefix or a different scheme or port of the allowed origin is not it.
    for origin in ("https://good.example.evil.example", "http://good.example",
                   "https://good.example:444"):
        with pytest.raises(HandshakeRefused) as e:
            srv.connect(token=mint(unique("u")), headers={"Origin": origin})
        assert e.value.status_code == 403, origin
    user = unique("u")
    c = srv.connect(token=mint(user), headers={"Origin": "https://good.example"})
    assert c.expect("welcome")["user"] == user
    # No Origin: a native client, always allowed.
    c = srv.connect(token=mint(user))
    assert c.expect("welcome")["user"] == user


def test_origin_refused_by_default(server, mint):
    srv = server()
    with pytest.raises(HandshakeRefused) as e:
        srv.connect(token=mint(unique("u")), headers={"Origin": "https://any.example"})
    assert e.value.status_code == 403


def test_origin_star(server, mint):
    srv = server(allowed_origins="*")
    c = srv.connect(token=mint(unique("u")), headers={"Origin": "https://any.example"})
    c.expect("welcome")


@pytest.mark.parametrize("proto", [None, "chat", "tipcast.v2.json", "TIPCAST.V1.JSON"])
def test_subprotocol_required(server, mint, proto):
    srv = server()
    with pytest.raises(HandshakeRefused) as e:
        srv.connect(subprotocol=proto, token=mint(unique("u")))
    assert e.value.status_code == 400, e.value


def test_subprotocol_picked_from_offer(server, mint):
    srv = server()
    c = srv.connect(subprotocol=["chat", SUBPROTOCOL_MSGPACK], token=mint(unique("u")))
    assert c.subprotocol == SUBPROTOCOL_MSGPACK
    c.expect("welcome")
    c.ping()


def test_bad_token_does_not_affect_others(server, client, room, mint):
    srv = server()
    creator = client(srv, room, "creator")
    viewer = client(srv, unique("v"))
    viewer.join(room)
    for _ in range(5):
        refused(srv.connect(token="a.b.c"), "auth_invalid")
    creator.notice(room, "still here")
    assert viewer.expect("event")["seq"] == 1


@pytest.mark.parametrize("secret", ["Qz7", "k1:" + "Qz" * 15 + "Q", "Wv" * 15 + "W"])
def test_short_jwt_secret_refused(secret):
    """HS256 with a key shorter than its hash can be guessed: tipcastd
    refuses any secret under 32 bytes, at start, and says how to make one."""
    out = subprocess.run([_binary(), f"--port={free_port()}", "--admin-listen=", f"--pg={PG}"],
                         env=dict(os.environ, TIPCAST_JWT_SECRET=secret),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert "at least 32" in out.stderr and "openssl rand" in out.stderr, out.stderr
    assert secret.split(":")[-1] not in out.stderr  # secrets stay out of logs
