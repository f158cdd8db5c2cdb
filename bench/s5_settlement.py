"""s5_settlement.py - scenario 5 of the benchmark: the admin API's money-in rate. Recharges are created through the API, then the payment provider's signed callbacks pay them, each one a PostgreSQL transaction (payment recorded, audit row) and a wallet script (the credit), from several client processes at once; then a tenth of them is delivered again, which must credit nothing. Reported: recharges created/s, callbacks/s with their latency, and the check that every recharge was credited exactly once."""

import hashlib
import hmac
import http.client
import json
import multiprocessing
import time

from suite import token

PAYMENT_SECRET = "bench-payment-secret-0123456789"
PACKAGE = "bench-100"  # 100 minor units of USD for 100 coins
PROCS = 4


def _call(conn, method, path, body, headers):
    data = json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **headers})
    r = conn.getresponse()
    return r.status, r.read()


def _worker(args):
    """One client process: its share of the work on one keep-alive
    connection, closed loop. Returns (statuses, latencies in ms, payloads)."""
    kind, port, items, tag = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    fin = {"Authorization": "Bearer " + token("bench-finance", "finance")}
    statuses, lat, out = {}, [], []
    for it in items:
        t0 = time.perf_counter()
        if kind == "create":
            st, raw = _call(conn, "POST", "/api/v1/recharges",
                            {"user": it, "request_id": f"{tag}-{len(lat)}-{it}", "package_id": PACKAGE}, fin)
            if st in (200, 201):
                out.append(json.loads(raw)["id"])
        else:
            body = json.dumps({"payment_id": "pay-" + it, "recharge_id": it, "amount_minor": 100,
                               "currency": "USD", "status": "succeeded"}).encode()
            ts = str(int(time.time()))
            sig = hmac.new(PAYMENT_SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            conn.request("POST", "/api/v1/payments/callback", body=body,
                         headers={"Content-Type": "application/json", "X-Tipcast-Timestamp": ts,
                                  "X-Tipcast-Signature": "sha256=" + sig})
            r = conn.getresponse()
            st = r.status
            r.read()
        lat.append((time.perf_counter() - t0) * 1000)
        statuses[st] = statuses.get(st, 0) + 1
    conn.close()
    return statuses, lat, out


def _pool_run(kind, port, items, tag):
    shares = [items[i::PROCS] for i in range(PROCS)]
    t0 = time.monotonic()
    # close + join, not the context manager: its terminate() sends the
    # workers SIGTERM, which the suite's handler turns into tracebacks.
    pool = multiprocessing.Pool(PROCS)
    try:
        results = pool.map(_worker, [(kind, port, share, f"{tag}{i}") for i, share in enumerate(shares)])
    finally:
        pool.close()
        pool.join()
    took = time.monotonic() - t0
    statuses, lat, out = {}, [], []
    for st, la, o in results:
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
        lat += la
        out += o
    return took, statuses, sorted(lat), out


def _pct(sorted_ms, p):
    return round(sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p))], 1) if sorted_ms else ""


def run(suite):
    s = suite.s
    n, port = s.s5_recharges, s.admin_port
    suite.log(f"scenario 5: {n} recharges created and paid through the admin API ({PROCS} client processes)")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    st, raw = _call(conn, "PUT", f"/api/v1/recharge-packages/{PACKAGE}",
                    {"currency": "USD", "amount_minor": 100, "coins": 100, "enabled": True},
                    {"Authorization": "Bearer " + token("bench-admin", "admin")})
    conn.close()
    if st != 200:
        suite.warn(f"scenario 5: PUT recharge package answered {st}: {raw[:200]!r}")
        return
    users = [f"bench-payer-{i % 500}" for i in range(n)]
    tag = f"s5-{int(time.time())}"
    took, statuses, lat, ids = _pool_run("create", port, users, tag)
    suite.fig("s5.n", n)
    suite.fig("s5.creates_per_s", int(len(ids) / took) if took else "")
    suite.fig("s5.create_p99_ms", _pct(lat, 0.99))
    suite.log(f"  {len(ids)} recharges created in {took:.1f} s ({statuses})")
    cpu0 = suite.cpu_seconds()
    took, statuses, lat, _ = _pool_run("callback", port, ids, tag)
    cpu1 = suite.cpu_seconds()
    ok = statuses.get(200, 0)
    suite.fig("s5.callbacks_per_s", int(ok / took) if took else "")
    suite.fig("s5.callback_p50_ms", _pct(lat, 0.50))
    suite.fig("s5.callback_p99_ms", _pct(lat, 0.99))
    suite.fig("s5.callback_errors", sum(v for k, v in statuses.items() if k != 200))
    if cpu0 is not None and cpu1 is not None and ok:
        suite.fig("s5.tipcastd_us_per_callback", int((cpu1 - cpu0) * 1e6 / ok))
    suite.log(f"  {ok} callbacks in {took:.1f} s ({statuses}), p99 {_pct(lat, 0.99)} ms")
    # Delivered again: answered the same, credited nothing more.
    again = ids[::10]
    _, statuses2, _, _ = _pool_run("callback", port, again, tag)
    suite.fig("s5.redeliveries", len(again))
    suite.fig("s5.redelivery_errors", sum(v for k, v in statuses2.items() if k != 200))
    deadline = time.monotonic() + 30
    credited = ""
    while time.monotonic() < deadline:
        rows = suite.pg(s.pg_conn, "SELECT count(*) FILTER (WHERE r.state = 'credited'), "
                        "(SELECT count(*) FROM ledger l WHERE l.movement_id LIKE 'recharge:%' AND l.delta > 0) "
                        f"FROM recharges r WHERE r.request_id LIKE '{tag}%'")
        if rows and rows.split("|")[0] == str(len(ids)):
            credited = rows
            break
        time.sleep(0.5)
    c, movements = (credited.split("|") + ["", ""])[:2] if credited else ("", "")
    suite.fig("s5.credited", c)
    suite.fig("s5.credit_movements", movements)
    suite.log(f"  credited: {c or '?'} of {len(ids)}; recharge movements in the ledger: {movements or '?'}")
