"""The Prometheus metrics page, GET /metrics (docs/operations.md, "Metrics").

Real traffic moves the counters (connections, messages by type, gifts and
tips by result, ack and delivery latency, close codes, the ledger), the page
passes `promtool check metrics`, a real Prometheus server scrapes it, and
metrics-allow restricts (403) or turns off (404) the page.
"""

import os
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

from conftest import _binary, free_port
from helpers import psql, wait_for, wait_room_live
from wsclient import unique

GIFT = 9301  # this module's gift (the catalog is shared by every test)
FLAGS = dict(max_msgs_per_s=10000, max_burst=10000)
CONTENT_TYPE = "text/plain; version=0.0.4"
PAGE_MAX = 64 * 1024  # METRICS_PAGE_MAX in server/metrics.h

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, frozenset of (label, value)): float} of a page; asserts every
    line is a comment or a well-formed sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def scrape(srv):
    status, headers, body = srv.http_get("/metrics")
    assert status == 200, (status, body[:300])
    assert headers.get("content-type", "").startswith(CONTENT_TYPE), headers
    assert len(body) < PAGE_MAX
    return body.decode(), parse(body.decode())


def val(m, name, **labels):
    return m.get((name, frozenset(labels.items())), 0.0)


def promtool_check(text):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (Debian package prometheus; scripts/deps.sh)")
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def gift():
    psql("INSERT INTO gifts (id, name, price, animation, tier, enabled, sort_order) VALUES "
         f"({GIFT}, 'MetricRose', 1, 'rose', 1, true, 1) "
         "ON CONFLICT (id) DO UPDATE SET price = EXCLUDED.price, enabled = EXCLUDED.enabled")
    return GIFT


def live_creator():
    creator = unique("mcr")
    psql(f"INSERT INTO creators (id, live) VALUES ('{creator}', true) "
         "ON CONFLICT (id) DO UPDATE SET live = true")
    return creator


def test_metrics_follow_traffic(server, client, gift):
    srv = server(**FLAGS)
    creator = live_creator()
    admin = client(srv, unique("adm"), "admin")
    viewer = unique("mv")
    c = client(srv, viewer)
    wait_room_live(c, creator)
    watcher = client(srv, unique("mw"))
    assert watcher.join(creator)["type"] == "joined"

    _, m0 = scrape(srv)
    assert val(m0, "tipcast_rooms") >= 1 and val(m0, "tipcast_room_members") >= 1, m0
    assert val(m0, "tipcast_connections_open") == 3

    r = admin.request({"type": "credit", "id": unique("c"), "user": viewer, "amount": 100})
    assert r["type"] == "ack", r
    gifts = 5
    for i in range(gifts):
        r = c.request({"type": "gift", "id": unique("g"), "room": creator, "gift": gift})
        assert r["type"] == "ack", r
    gift_id = unique("g")
    r = c.request({"type": "gift", "id": gift_id, "room": creator, "gift": gift})
    assert r["type"] == "ack" and not r["replayed"], r
    r = c.request({"type": "gift", "id": gift_id, "room": creator, "gift": gift})
    assert r["type"] == "ack" and r["replayed"], r
    assert c.request({"type": "gift", "id": unique("g"), "room": creator,
                      "gift": 1999999998})["code"] == "unknown_gift"
    assert c.request({"type": "gift", "id": unique("g"), "room": creator, "gift": gift,
                      "count": "x"})["code"] == "bad_field"
    r = c.request({"type": "tip", "id": unique("t"), "room": creator, "amount": 3})
    assert r["type"] == "ack", r
    assert c.request({"type": "tip", "id": unique("t"), "room": creator,
                      "amount": 1000})["code"] == "insufficient_balance"
    assert c.request({"type": "balance", "id": unique("b")})["type"] == "balance"
    c.send({"type": "no-such-type", "id": unique("x")})
    assert c.expect("error")["code"] == "unknown_type"

    # Connections closed with a code of the table, one outside it, and one by
    # the server (1009, a message larger than max-frame-bytes).
    closers = [client(srv, unique("mc")) for _ in range(3)]
    closers[0].close(1000)
    closers[1].close(3999)
    closers[2].send({"type": "ping", "id": "p", "pad": "x" * 10000})
    closers[2].wait_close()

    def moved():
        _, m = scrape(srv)
        d = lambda name, **l: val(m, name, **l) - val(m0, name, **l)  # noqa: E731
        ok = (d("tipcast_connections_closed_total", code="1000") >= 1
              and d("tipcast_connections_closed_total", code="other") >= 1
              and d("tipcast_connections_closed_total", code="1009") >= 1
              and d("tipcast_ledger_rows_written_total", kind="order") >= gifts + 2
              and d("tipcast_delivery_latency_seconds_count") >= 1)
        return m if ok else None
    m = wait_for(moved, timeout=20, what="the counters to move")
    d = lambda name, **l: val(m, name, **l) - val(m0, name, **l)  # noqa: E731

    assert d("tipcast_money_requests_total", kind="gift", result="ok") == gifts + 1
    assert d("tipcast_money_requests_total", kind="gift", result="replayed") == 1
    assert d("tipcast_money_requests_total", kind="gift", result="unknown_gift") == 1
    assert d("tipcast_money_requests_total", kind="gift", result="bad_field") == 1
    assert d("tipcast_money_requests_total", kind="tip", result="ok") == 1
    assert d("tipcast_money_requests_total", kind="tip", result="insufficient_balance") == 1
    assert d("tipcast_money_requests_total", kind="credit", result="ok") == 1
    # The ack histogram counts acks (a replay is one), and only them.
    assert d("tipcast_ack_latency_seconds_count", kind="gift") == gifts + 2
    assert d("tipcast_ack_latency_seconds_count", kind="tip") == 1
    assert d("tipcast_ack_latency_seconds_count", kind="credit") == 1
    assert d("tipcast_ack_latency_seconds_count", kind="balance") == 1
    assert val(m, "tipcast_ack_latency_seconds_bucket", kind="gift", le="+Inf") == \
        val(m, "tipcast_ack_latency_seconds_count", kind="gift")
    assert 0 < d("tipcast_ack_latency_seconds_sum", kind="gift") < 10
    assert d("tipcast_messages_received_total", type="gift") == gifts + 4
    assert d("tipcast_messages_received_total", type="tip") == 2
    assert d("tipcast_messages_received_total", type="credit") == 1
    assert d("tipcast_messages_received_total", type="balance") == 1
    assert d("tipcast_messages_received_total", type="invalid") == 1
    assert d("tipcast_connections_opened_total") == 3
    assert val(m, "tipcast_connections_open") == 3
    assert d("tipcast_ledger_flush_seconds_count") >= 1
    assert d("tipcast_ledger_entries_total") >= gifts + 3
    for name in ("tipcast_redis_command_up", "tipcast_redis_subscriber_up", "tipcast_redis_reads_up",
                 "tipcast_redis_checked", "tipcast_postgres_up"):
        assert val(m, name) == 1, name
    for group in ("ledger", "rooms"):
        assert ("tipcast_outbox_pending_entries", frozenset({("group", group)})) in m, group
    assert val(m, "process_resident_memory_bytes") > 1e6
    assert abs(val(m, "process_start_time_seconds") - time.time()) < 600

    text, _ = scrape(srv)
    promtool_check(text)


def test_metrics_allow_restricts(server):
    # 127.0.0.1 is not in these blocks: refused, while the rest of the port
    # serves as before.
    srv = server(metrics_allow="10.0.0.0/8, 192.0.2.7, ::1")
    status, _, body = srv.http_get("/metrics")
    assert status == 403, (status, body)
    assert b"tipcast_" not in body
    assert srv.http_get("/healthz")[0] == 200
    srv2 = server(metrics_allow="127.0.0.1/32")
    assert srv2.http_get("/metrics")[0] == 200


def test_metrics_allow_empty_turns_the_page_off(server):
    srv = server(metrics_allow="")
    status, _, _ = srv.http_get("/metrics")
    assert status == 404


def test_metrics_allow_rejects_bad_blocks():
    out = subprocess.run([_binary(), "--jwt-secret=" + "k" * 32, "--metrics-allow=10.0.0.0/33"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode != 0
    assert "metrics-allow" in out.stderr, out.stderr


def _get_json(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def _query(base, q):
    doc = _get_json(base + "/api/v1/query?query=" + urllib.parse.quote(q))
    assert doc.get("status") == "success", doc
    return doc["data"]["result"]


def test_prometheus_scrapes(server, client):
    prometheus = shutil.which("prometheus")
    if not prometheus:
        pytest.skip("prometheus not installed (Debian package prometheus; scripts/deps.sh)")
    srv = server()
    client(srv, unique("mp"))  # one connection, so a counter is above 0
    port = free_port()
    work = tempfile.mkdtemp(prefix="tipcast-prom-")
    config = os.path.join(work, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n"
                "  - job_name: tipcast\n"
                "    metrics_path: /metrics\n"
                f"    static_configs:\n      - targets: ['127.0.0.1:{srv.port}']\n")
    log = open(os.path.join(work, "prometheus.log"), "w")
    proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={work}/data",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=work)
    base = f"http://127.0.0.1:{port}"
    try:
        def scraped():
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {proc.returncode}")
            try:
                up = _query(base, 'up{job="tipcast"}')
                opened = _query(base, 'tipcast_connections_opened_total{job="tipcast"}')
            except (OSError, ValueError):
                return None
            if up and up[0]["value"][1] == "1" and opened and float(opened[0]["value"][1]) >= 1:
                return up, opened
            return None
        wait_for(scraped, timeout=60, what="prometheus to scrape tipcastd")
        # The histograms read as such: a quantile over the delivery latency.
        res = _query(base, 'histogram_quantile(0.99, tipcast_ack_latency_seconds_bucket{kind="gift"})')
        assert res, res
    except AssertionError:
        log.flush()
        with open(os.path.join(work, "prometheus.log")) as f:
            print(f.read()[-3000:])
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
