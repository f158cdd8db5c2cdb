"""Webhooks (docs/settlement.md, "Webhooks"; settlement/webhook.c): rows of
webhook_outbox are POSTed, signed, to webhook-url; failures are retried with
a growing wait; a row failing past webhook-give-up-s becomes a dead letter
with an alert, which the admin functions list and send again.

The receiver is a small HTTP server in the test (a thread). Each test
enqueues rows of its own keys; rows of other tests that a tipcastd here may
send too are answered 200 and ignored."""

import hashlib
import hmac
import http.server
import json
import subprocess
import threading
import time

import pytest

from conftest import _binary, free_port, PG, TEST_SECRET
from helpers import metric, psql, wait_for
from wsclient import unique

SECRET = "webhook-test-secret-0123456789"


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers each
    key by its plan: a list of actions for its successive requests (an int
    status, "close": close without answering, "hang": answer nothing for
    hang_s), then 200."""

    def __init__(self, hang_s=3.0):
        self.requests = []  # (monotonic time, headers dict (lower-case names), body bytes)
        self.plans = {}
        self.lock = threading.Lock()
        self.hang_s = hang_s
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                headers = {k.lower(): v for k, v in self.headers.items()}
                key = headers.get("idempotency-key", "")
                with recv.lock:
                    recv.requests.append((time.monotonic(), headers, body))
                    plan = recv.plans.get(key, [])
                    action = plan.pop(0) if plan else 200
                if action == "close":
                    self.close_connection = True
                    return
                if action == "hang":
                    time.sleep(recv.hang_s)
                    self.close_connection = True
                    return
                out = b'{"ok":true}'
                self.send_response(action)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        # Room for every node's connections at once (the default backlog of
        # 5 drops SYNs, which come back a second later: a timeout here).
        http.server.ThreadingHTTPServer.request_queue_size = 128
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/tipcast?src=test"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def plan(self, key, actions):
        with self.lock:
            self.plans[key] = list(actions)

    def of(self, key):
        with self.lock:
            return [r for r in self.requests if r[1].get("idempotency-key") == key]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def start(server, receiver, **kw):
    flags = dict(webhook_url=receiver.url, webhook_secret=SECRET, webhook_poll_ms=50, webhook_timeout_ms=500,
                 webhook_retry_base_ms=300)
    flags.update(kw)
    return server(**flags)


def enqueue(event="order.succeeded", data='{"x":1}', receiver=None, plan=()):
    """Queues a webhook of a new key, planned first in the receiver (a
    tipcastd may send it at once)."""
    key = unique("k")
    if receiver:
        receiver.plan(key, plan)
    psql(f"SELECT tipcast_webhook_enqueue(true, '{event}', '{key}', '{data}')")
    return key


def row(key):
    out = psql("SELECT id, state, attempts, coalesce(last_status, 0), coalesce(last_error, ''), "
               f"delivered_at IS NOT NULL FROM webhook_outbox WHERE idempotency_key = '{key}'")
    i, state, attempts, status, error, delivered = out.split("|")
    return dict(id=int(i), state=state, attempts=int(attempts), last_status=int(status), last_error=error,
                delivered_at=delivered == "t")


def wait_state(key, state, timeout=20):
    return wait_for(lambda: (lambda r: r if r["state"] == state else None)(row(key)), timeout,
                    f"webhook {key} {state}")


def check_signed(headers, body, key, event):
    assert headers["content-type"] == "application/json"
    assert headers["idempotency-key"] == key
    assert headers["x-tipcast-event"] == event
    ts = headers["x-tipcast-timestamp"]
    assert abs(int(ts) - time.time()) < 60
    want = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-tipcast-signature"], want)
    payload = json.loads(body)
    assert payload["id"] == key and payload["event"] == event and payload["data"] == {"x": 1}, payload


def test_delivered_after_failures_signed_with_growing_waits(server, receiver):
    srv = start(server, receiver)
    key = enqueue(receiver=receiver, plan=[500, 503, "close"])
    r = wait_state(key, "delivered")
    got = receiver.of(key)
    # Exactly the three failures, then the one that was answered 200.
    assert len(got) == 4, [g[1] for g in got]
    assert r["attempts"] == 4 and r["last_status"] == 200 and r["delivered_at"] and r["last_error"] == ""
    for n, (_, headers, body) in enumerate(got, 1):
        check_signed(headers, body, key, "order.succeeded")
        assert headers["x-tipcast-attempt"] == str(n)
        assert headers["host"] == f"127.0.0.1:{receiver.port}"
    # The waits double (300, 600, 1200 ms, less up to a fifth, plus the poll).
    gaps = [b[0] - a[0] for a, b in zip(got, got[1:])]
    assert gaps[0] >= 0.24 and gaps[1] >= 0.48 and gaps[2] >= 0.96, gaps
    assert gaps[0] < gaps[1] < gaps[2], gaps
    assert metric(srv, "tipcast_webhook_deliveries_total", result="delivered") >= 1
    assert metric(srv, "tipcast_webhook_deliveries_total", result="failed") >= 3
    # Nothing more is sent for a delivered row.
    time.sleep(0.5)
    assert len(receiver.of(key)) == 4


def test_no_answer_is_a_timeout_then_retried(server, receiver):
    # A long wait before the second attempt, to see the row between the two.
    srv = start(server, receiver, webhook_timeout_ms=400, webhook_retry_base_ms=1500)
    key = enqueue(event="refund.created", receiver=receiver, plan=["hang"])
    wait_for(lambda: row(key)["last_error"], 10, "the first attempt's failure")
    r = row(key)
    assert r["state"] == "pending" and r["attempts"] == 1
    assert "no answer within 400 ms" in r["last_error"], r
    r = wait_state(key, "delivered")
    assert r["attempts"] == 2
    got = receiver.of(key)
    assert len(got) == 2
    assert got[1][0] - got[0][0] >= 0.4
    for _, headers, body in got:
        assert headers["idempotency-key"] == key and headers["x-tipcast-event"] == "refund.created"
    assert metric(srv, "tipcast_webhook_pending") is not None


def test_host_name_is_looked_up(server, receiver):
    # A name: looked up off the loop; localhost may give ::1 first, where the
    # receiver (127.0.0.1) is not: one failed attempt, then the next address.
    start(server, receiver, webhook_url=f"http://localhost:{receiver.port}/by-name", webhook_retry_base_ms=100)
    key = enqueue(receiver=receiver)
    r = wait_state(key, "delivered")
    assert r["attempts"] <= 2
    check_signed(receiver.of(key)[-1][1], receiver.of(key)[-1][2], key, "order.succeeded")


def test_refused_connection_is_a_failure(server, receiver):
    closed = free_port()
    start(server, receiver, webhook_url=f"http://127.0.0.1:{closed}/none", webhook_retry_base_ms=100)
    key = enqueue()
    wait_for(lambda: row(key)["attempts"] >= 2 and row(key)["last_error"], 10, "two failed attempts")
    r = row(key)
    assert r["state"] == "pending" and r["last_status"] == 0
    assert r["last_error"] == "connect: connection refused", r


def test_give_up_makes_a_dead_letter_and_an_alert_then_retry(server, receiver):
    srv = start(server, receiver, webhook_give_up_s=2, webhook_retry_base_ms=100)
    key = enqueue(event="withdrawal.paid", receiver=receiver, plan=[500] * 1000)
    r = wait_state(key, "dead", timeout=15)
    assert r["attempts"] >= 4 and r["last_status"] == 500 and r["last_error"] == "HTTP 500", r
    n = len(receiver.of(key))
    assert n == r["attempts"]
    alert = psql("SELECT severity, detail->>'idempotency_key', detail->>'event' FROM alerts "
                 f"WHERE kind = 'webhook_dead' AND subject = '{r['id']}'")
    assert alert == f"warning|{key}|withdrawal.paid"
    assert metric(srv, "tipcast_webhook_deliveries_total", result="dead") >= 1
    time.sleep(0.5)
    assert len(receiver.of(key)) == n  # a dead letter is not sent

    # The dead-letter list (GET /api/v1/webhooks/dead) has it, newest first.
    page = json.loads(psql("SELECT tipcast_api_webhooks_dead('{\"query\": {\"limit\": \"500\"}}')"))
    assert page["status"] == 200
    items = page["body"]["items"]
    mine = [i for i in items if i["idempotency_key"] == key]
    assert len(mine) == 1
    assert mine[0] == dict(mine[0], id=r["id"], event="withdrawal.paid", attempts=r["attempts"], last_status=500,
                           last_error="HTTP 500")
    assert mine[0]["created_at"].endswith("Z")
    ids = [i["id"] for i in items]
    assert ids == sorted(ids, reverse=True)

    # POST /api/v1/webhooks/{id}/retry: pending again, sent at once, audited.
    receiver.plan(key, [])
    ctx = json.dumps({"actor": "ops1", "role": "operations", "request_id": unique("req"), "webhooks": True,
                      "path": {"id": str(r["id"])}})
    out = json.loads(psql(f"SELECT tipcast_api_webhook_retry('{ctx}')"))
    assert out == {"status": 200, "body": {"id": r["id"], "state": "pending"}}
    r2 = wait_state(key, "delivered")
    assert r2["attempts"] == 1  # counted from 0 again
    assert len(receiver.of(key)) == n + 1
    audit = psql("SELECT actor, role, before->>'state', after->>'state' FROM audit_log "
                 f"WHERE action = 'webhook.retry' AND target = '{r['id']}'")
    assert audit == "ops1|operations|dead|pending"


def test_admin_functions_refuse():
    key = enqueue()  # no tipcastd sends it here: it stays pending
    rid = row(key)["id"]

    def call(fn, ctx):
        out = subprocess.run(["psql", PG, "-X", "-qAtc",
                              f"SELECT {fn}('{json.dumps(ctx)}')"], capture_output=True, text=True, timeout=30)
        return out.returncode, out.stderr

    rc, err = call("tipcast_api_webhook_retry", {"actor": "a", "role": "admin", "path": {"id": str(rid)}})
    assert rc != 0 and "invalid_state" in err and "not dead" in err, err
    rc, err = call("tipcast_api_webhook_retry", {"actor": "a", "role": "admin", "path": {"id": "999999999999"}})
    assert rc != 0 and "not_found" in err, err
    rc, err = call("tipcast_api_webhook_retry", {"actor": "a", "role": "admin", "path": {"id": "x1"}})
    assert rc != 0 and "not_found" in err, err
    for bad in ("0", "501", "ten", "-1"):
        rc, err = call("tipcast_api_webhooks_dead", {"query": {"limit": bad}})
        assert rc != 0 and "bad_field" in err, (bad, err)
    rc, err = call("tipcast_api_webhooks_dead", {"query": {"after": "abc"}})
    assert rc != 0 and "bad_field" in err, err
    psql(f"UPDATE webhook_outbox SET state = 'dead' WHERE id = {rid}")
    rc, err = call("tipcast_api_webhook_retry", {"actor": "a", "role": "admin", "webhooks": False,
                                                 "path": {"id": str(rid)}})
    assert rc != 0 and "invalid_state" in err and "webhooks are off" in err, err


def test_dead_list_pages():
    keys = [enqueue() for _ in range(3)]
    ids = [row(k)["id"] for k in keys]
    psql(f"UPDATE webhook_outbox SET state = 'dead' WHERE id IN ({','.join(map(str, ids))})")
    # From just above the newest of them, two at a time, until past the oldest.
    seen, after = [], str(max(ids) + 1)
    for _ in range(10):
        q = {"limit": "2", "after": after}
        page = json.loads(psql(f"SELECT tipcast_api_webhooks_dead('{json.dumps({'query': q})}')"))["body"]
        assert 1 <= len(page["items"]) <= 2
        seen += [i["id"] for i in page["items"]]
        after = page["next"]
        if after is None or min(ids) in seen:
            break
    assert seen[:3] == sorted(ids, reverse=True)
    assert after is None or after == str(seen[-1])


def test_stop_abandons_in_flight_and_the_lease_brings_it_back(server, receiver):
    srv = start(server, receiver, webhook_timeout_ms=600)
    key = enqueue(receiver=receiver, plan=["hang"])
    wait_for(lambda: receiver.of(key), 10, "the first attempt")
    t0 = time.monotonic()
    srv.check_exit()  # exits 0 at once, with the delivery in flight
    assert time.monotonic() - t0 < 2
    r = row(key)
    assert r["state"] == "pending" and r["attempts"] == 1 and r["last_error"] == ""
    start(server, receiver, webhook_timeout_ms=600)
    r = wait_state(key, "delivered")
    got = receiver.of(key)
    assert len(got) == 2 and r["attempts"] == 2
    # Not before the lease (5 timeouts, from the claim) ran out.
    assert got[1][0] - got[0][0] >= 5 * 0.6 - 0.3


def test_two_nodes_share_the_rows(server, receiver):
    start(server, receiver, webhook_timeout_ms=3000)
    start(server, receiver, webhook_timeout_ms=3000)
    keys = [unique("k") for _ in range(80)]
    psql("SELECT tipcast_webhook_enqueue(true, 'order.succeeded', k, '{\"x\":1}') FROM unnest(ARRAY["
         + ",".join(f"'{k}'" for k in keys) + "]) AS k")
    in_keys = ",".join(f"'{k}'" for k in keys)
    wait_for(lambda: psql(f"SELECT count(*) FROM webhook_outbox WHERE idempotency_key IN ({in_keys}) "
                          "AND state = 'delivered'") == str(len(keys)), 20, "every row delivered")
    # Each row once: a row claimed by one node is skipped by the other.
    for k in keys:
        assert len(receiver.of(k)) == 1, k
    assert psql(f"SELECT max(attempts) FROM webhook_outbox WHERE idempotency_key IN ({in_keys})") == "1"


def test_settings_are_checked():
    def check(*args):
        return subprocess.run([_binary(), f"--jwt-secret={TEST_SECRET}", *args, "--check-config"],
                              capture_output=True, text=True, timeout=10)
    out = check("--webhook-url=http://127.0.0.1:9/x")
    assert out.returncode == 2 and "webhook-secret" in out.stderr, out.stderr
    out = check("--webhook-url=http://127.0.0.1:9/x", "--webhook-secret=short")
    assert out.returncode == 2 and "at least 16 bytes" in out.stderr, out.stderr
    out = check("--webhook-url=https://example.com/x", f"--webhook-secret={SECRET}")
    assert out.returncode == 2 and "TLS-terminating proxy" in out.stderr, out.stderr
    out = check("--webhook-url=ftp://example.com/x", f"--webhook-secret={SECRET}")
    assert out.returncode == 2 and "http://HOST" in out.stderr, out.stderr
    out = check("--webhook-url=http://example.com:8080/hook", f"--webhook-secret={SECRET}")
    assert out.returncode == 0, out.stderr
    out = check("--webhook-timeout-ms=99")
    assert out.returncode == 2
