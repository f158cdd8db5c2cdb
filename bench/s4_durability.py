"""s4_durability.py - scenario 4 of the benchmark: the outbox backlog and PostgreSQL's lag at scenario 1's maximum rate, then the ledger's drain rate after a PostgreSQL outage against a plain COPY of the same rows."""

import os
import time

from suite import SECRET, BenchError, g6, jtext

WALLET_SHARDS = 16  # tipcastd's default


def orders_count(suite):
    n = suite.pg(suite.s.pg_conn, "SELECT count(*) FROM orders", timeout=10, quiet=True)
    return int(n) if n and n.isdigit() else None


def outbox_backlog(suite):
    """The sum of XLEN over the wallet shards' outboxes."""
    cmds = "".join(f"XLEN tc:{{w:{i}}}:outbox\n" for i in range(WALLET_SHARDS))
    out = suite.rcli(stdin_text=cmds) or ""
    return sum(int(x) for x in out.split() if x.isdigit())


def wait_orders(suite, target, bound_s):
    """Polls until PostgreSQL holds TARGET orders; the seconds it took (as
    text), or "" after the bound."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < bound_s:
        n = orders_count(suite)
        if n is not None and n >= target:
            return g6(time.monotonic() - t0)
        time.sleep(0.1)
    return ""


def run(suite):
    s = suite.s
    rate = s.s4_rate or suite.s1_max
    if not rate or rate == "0":
        rate = str(s.s1_start)
    rate = rate.rsplit(".", 1)[0]
    suite.log(f"scenario 4: {s.s4_dur} s at {rate} gifts/s (scenario 1's maximum), backlog and PostgreSQL lag")
    load = ["--target", "tipcast", "--port", s.tc_port, "--secret", SECRET,
            "--connections", s.s1_conns, "--senders", s.s1_conns, "--rooms", s.s1_rooms, "--rate", rate]
    before = orders_count(suite)
    suite.bench("s4-steady", s.s4_dur + 60, *load, "--warmup", 2, "--duration", s.s4_dur,
                "--server-pid", suite.servers[0].pid,
                "--redis", f"127.0.0.1:{s.redis_port}", "--pg", s.pg_conn)
    acked = suite.jget("s4-steady", "totals", "acked")
    lag = wait_orders(suite, before + acked, 60) if acked is not None and before is not None else ""
    backlog_max = jtext(suite.jget("s4-steady", "durability", "backlog_max"))
    suite.fig("s4.rate", rate)
    suite.fig("s4.backlog_max", backlog_max)
    suite.fig("s4.pg_orders_per_s", jtext(suite.jget("s4-steady", "durability", "pg_orders_per_s")))
    suite.fig("s4.acks_per_s", jtext(suite.jget("s4-steady", "rates", "acks_per_s")))
    suite.fig("s4.drain_after_stop_s", lag)
    suite.log(f"  backlog max {backlog_max}, PostgreSQL caught up {lag or '(not within 60 s)'} s after the last ack")
    outage(suite, load)


def outage(suite, load):
    """Flush capacity: with PostgreSQL down the outbox fills at the maximum
    rate; once it is back, the ledger drains it as fast as it can."""
    s = suite.s
    suite.log(f"scenario 4: PostgreSQL stopped, {s.s4_outage_s} s of gifts fill the outbox")
    before = orders_count(suite) or 0
    if not suite.services("stop-postgres", 90):
        suite.warn("stopping PostgreSQL failed")
    suite.bench("s4-outage", s.s4_outage_s + 60, *load, "--warmup", 1, "--duration", s.s4_outage_s)
    backlog = outbox_backlog(suite)
    acked = suite.jget("s4-outage", "totals", "acked") or 0
    suite.log(f"  outbox backlog {backlog} entries; starting PostgreSQL")
    t_restart = time.monotonic()
    if not suite.services("start", 120):
        raise BenchError("PostgreSQL did not come back")
    # Drain rate: from the first new row to the last one. Bounds: 90 s for the
    # ledger to reconnect, then 10 s without a new row.
    t_first = t_last = first_n = last_n = None
    target = before + acked
    while True:
        now = time.monotonic()
        if t_first is None and now - t_restart >= 90:
            break
        if t_first is not None and now - t_last >= 10:
            break
        n = orders_count(suite)
        if n is not None:
            if t_first is None and n > before:
                t_first, first_n = now, n
            if t_first is not None and n != last_n:
                t_last, last_n = now, n
            if n >= target:
                break
        time.sleep(0.05)
    rows = (last_n if last_n is not None else before) - before
    drain_rps = ""
    if t_first is not None and t_last != t_first:
        drain_rps = g6((last_n - first_n) / (t_last - t_first))
    if t_first is not None:
        suite.fig("s4.reconnect_s", g6(t_first - t_restart))
    suite.fig("s4.outage_backlog", backlog)
    # Every order the ledger drains is written in one transaction with its
    # ledger rows: sender -A, creator +net, and the platform's fee and the
    # agency's share when the revenue split gives them any (the seeded rule:
    # a fee on every order, an agency for every other creator).
    per = suite.pg(s.pg_conn, "SELECT round(1 + (SELECT count(*) FROM ledger WHERE kind IN ('gift', 'tip'))::numeric"
                   " / greatest((SELECT count(*) FROM orders), 1), 2)")
    per = float(per) if per else 3.0
    suite.fig("s4.rows_per_order", per)
    suite.fig("s4.drain_rows", rows)
    suite.fig("s4.drain_rows_per_s", drain_rps)
    suite.fig("s4.drain_all_rows_per_s", g6(per * float(drain_rps)) if drain_rps else "")
    suite.log(f"  ledger drained {rows} orders at {drain_rps or '?'} orders/s ({per} rows each)")
    copy_baseline(suite, max(rows, 10000), per)


def copy_baseline(suite, n, per):
    """A plain COPY of the rows the ledger writes for N orders: N order rows
    (with their split) and their ledger rows (user, creator, platform, and
    the agency for every other order: per - 1 rows an order), into scratch tables with the columns and indexes of
    orders and ledger (ledger's id from a sequence of its own, as bigserial
    does; no triggers, nothing else in the transaction). Each COPY is timed
    on its own: the order rows alone are the stricter baseline, all rows the
    same rows."""
    s = suite.s
    conn = s.pg_conn
    fo = f"/tmp/tipcast-bench-copy-{s.instance}-orders.csv"
    fl = f"/tmp/tipcast-bench-copy-{s.instance}-ledger.csv"
    for f in (fo, fl):
        if os.path.exists(f):
            os.remove(f)
    ok = suite.pg(
        conn, "SET client_min_messages = warning", "DROP TABLE IF EXISTS bench_copy, bench_copy_ledger",
        "DROP SEQUENCE IF EXISTS bench_copy_ledger_id",
        "CREATE TABLE bench_copy (LIKE orders INCLUDING DEFAULTS INCLUDING INDEXES)",
        "CREATE SEQUENCE bench_copy_ledger_id",
        "CREATE TABLE bench_copy_ledger (LIKE ledger INCLUDING INDEXES)",
        "ALTER TABLE bench_copy_ledger ALTER id SET DEFAULT nextval('bench_copy_ledger_id')",
        f"""COPY (SELECT 'x-' || g || '-0', 'gift', 'bench-u' || (g % 1000), 'bench-room-' || (g % 50),
                         'bench-room-' || (g % 50), 1, 'Rose', 1, 1, 10, 't' || g, NULL, 'req-' || g,
                         1000000 - g, now(), now(), 1, 0, 3,
                         CASE WHEN g % 2 = 0 THEN 'bench-agency' END, CASE WHEN g % 2 = 0 THEN 1 ELSE 0 END,
                         CASE WHEN g % 2 = 0 THEN 6 ELSE 7 END
                  FROM generate_series(1, {n}) g) TO '{fo}' WITH (FORMAT csv)""",
        # The ledger rows as the chained ledger stores them (006): a chain,
        # its seq, a 32-byte hash (made here: COPY only stores it) and the entry.
        f"""COPY (SELECT 'x-' || g || '-0', v.account, v.delta, 'gift', NULL, now(), 0, row_number() OVER (),
                         sha256(convert_to(g || v.account, 'UTF8')), 'x-' || g || '-0'
                  FROM generate_series(1, {n}) g,
                       LATERAL (VALUES ('user:bench-u' || (g % 1000), -10),
                                       ('creator:bench-room-' || (g % 50), 7 - g % 2),
                                       ('platform', 3),
                                       ('agency:bench-agency', CASE WHEN g % 2 = 0 THEN 1 END)) v (account, delta)
                  WHERE v.delta IS NOT NULL)
            TO '{fl}' WITH (FORMAT csv)""")
    if ok is None:
        suite.warn("COPY baseline setup failed")
        return
    t0 = time.monotonic()
    if suite.pg(conn, "COPY bench_copy (order_id, kind, sender, room, creator, gift_id, gift_name, count, "
                "unit_price, amount, combo, message, request_id, sender_balance, created_at, inserted_at, rule_id, "
                "month_volume_before, platform_fee, agency_id, agency_share, creator_net) "
                f"FROM '{fo}' WITH (FORMAT csv)") is None:
        suite.warn("COPY failed")
        return
    t1 = time.monotonic()
    if suite.pg(conn, "COPY bench_copy_ledger (movement_id, account, delta, kind, note, created_at, chain, seq, hash, "
                "entry) "
                f"FROM '{fl}' WITH (FORMAT csv)") is None:
        suite.warn("COPY failed")
        return
    t2 = time.monotonic()
    suite.pg(conn, "DROP TABLE bench_copy, bench_copy_ledger", "DROP SEQUENCE bench_copy_ledger_id")
    for f in (fo, fl):
        if os.path.exists(f):
            os.remove(f)
    rps = g6(n / (t1 - t0))
    all_rows = 4 * n + n // 2  # the order rows, and 3.5 ledger rows an order (an agency row every other)
    all_rps = g6(all_rows / (t2 - t0))
    suite.fig("s4.copy_rows", n)
    suite.fig("s4.copy_rows_per_s", rps)
    suite.fig("s4.copy_all_rows", all_rows)
    suite.fig("s4.copy_all_rows_per_s", all_rps)
    suite.log(f"  plain COPY: {n} order rows at {rps} rows/s; with their ledger rows {all_rps} rows/s")
