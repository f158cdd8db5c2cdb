"""wss:// and https:// with a certificate configured."""

import subprocess

import pytest

from wsclient import SUBPROTOCOL_MSGPACK, http_get, unique


@pytest.fixture
def cert(tmp_path):
    crt, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return str(crt), str(key)


def test_wss_room(server, client, cert):
    crt, key = cert
    srv = server(tls_cert=crt, tls_key=key)
    room = unique("r")
    creator = client(srv, room, "creator", SUBPROTOCOL_MSGPACK)
    viewer = client(srv, unique("v"), "viewer")
    viewer.join(room)
    assert creator.notice(room, "over TLS 🔒") == 1
    ev = viewer.expect("event")
    assert ev["seq"] == 1 and ev["text"] == "over TLS 🔒", ev
    viewer.ping()


def test_https_healthz(server, cert):
    crt, key = cert
    srv = server(tls_cert=crt, tls_key=key)
    status, _, _ = http_get(srv.port, "/healthz", tls=True)
    assert status == 200
    status, _, _ = http_get(srv.port, "/readyz", tls=True)
    assert status in (200, 503)


def test_plain_client_on_tls_port_refused(server, cert):
    crt, key = cert
    srv = server(tls_cert=crt, tls_key=key)
    with pytest.raises(Exception):
        c = srv.connect(tls=False)
        c.close()
    # The server is unharmed.
    assert http_get(srv.port, "/healthz", tls=True)[0] == 200
