"""orders and ledger partitioned by month (storage/migrations/016_partitions.sql,
pg_partman): a database at migration 015 with orders, ledger rows and a
refund in it is upgraded by a real tipcastd with every row kept, each in the
partition of its month, and its hash chains still verify; tipcastd makes the
months ahead again at start when they are missing.

Each test has a database and a Redis of its own (the upgrade needs an old
schema, and the partition tests drop tables)."""

import calendar
import glob
import json
import os
import subprocess
import time

import pytest

import admin
from conftest import REPO, mint_token
from helpers import SHARDS, admin_bin, entry_fields, own_database, own_redis, psql, wait_for, xadd_entry
from resp import Redis
from wsclient import unique

MIGRATIONS = sorted(glob.glob(os.path.join(REPO, "storage", "migrations", "[0-9][0-9][0-9]_*.sql")))


def month_start(months_ahead):
    """The first second of the UTC month `months_ahead` from this one (epoch s)."""
    t = time.gmtime()
    y, m = divmod(t.tm_year * 12 + t.tm_mon - 1 + months_ahead, 12)
    return calendar.timegm((y, m + 1, 1, 0, 0, 0))


def partition_of(epoch_s):
    return time.strftime("p%Y_%m", time.gmtime(epoch_s))


def schema_at(dsn, version):
    """Applies migrations 001..version as tipcastd would (each in one
    transaction, recorded in schema_migrations)."""
    psql("CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
         "applied_at timestamptz NOT NULL DEFAULT now())", dsn)
    for path in MIGRATIONS[:version]:
        base = os.path.basename(path)
        v, name = int(base[:3]), base[4:-4]
        out = subprocess.run(["psql", dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", path],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (base, out.stderr)
        psql(f"INSERT INTO schema_migrations (version, name) VALUES ({v}, '{name}')", dsn)


def ledger_batch(dsn, orders):
    """The ledger consumer's transaction (storage/ledger_txn.c) for gift
    entries (order id, sender, creator, amount, epoch s): orders, chained
    ledger rows, earnings."""
    values = ",\n".join(
        f"('{oid}', 'gift', '{u}', '{c}', '{c}', 1, 'Rose', 1, {a}, {a}, NULL, NULL, 'q-{oid}', 0, "
        f"to_timestamp({ts}), NULL, NULL)" for oid, u, c, a, ts in orders)
    psql("BEGIN; SELECT tipcast_ledger_staging();\n"
         "INSERT INTO ledger_in_orders VALUES\n" + values + ";\n"
         "SELECT * FROM tipcast_ledger_apply(false); COMMIT;", dsn)


def snapshot(dsn):
    orders = psql("SELECT order_id, sender, creator, amount, created_at, creator_net, refunded, state "
                  "FROM orders ORDER BY order_id", dsn)
    ledger = psql("SELECT id, movement_id, account, delta, kind, created_at, chain, seq, encode(hash, 'hex'), entry "
                  "FROM ledger ORDER BY id", dsn)
    return orders, ledger


def verify_text(dsn):
    out = subprocess.run([admin_bin(), f"--pg={dsn}", "verify-ledger"], capture_output=True, text=True,
                         timeout=120)
    return out.returncode, out.stdout + out.stderr


@pytest.fixture
def own(tmp_path):
    with own_database("tipcast_part") as dsn, own_redis(tmp_path) as port:
        yield dsn, port


def test_upgrade_from_015_keeps_every_row_in_its_month(server, own):
    dsn, port = own
    schema_at(dsn, 15)
    assert psql("SELECT relkind FROM pg_class WHERE relname = 'orders'", dsn) == "r"
    dated = {"2001": 978307200 + 7, "two_ago": month_start(-2) + 5, "last": month_start(-1) + 86400,
             "this": month_start(0) + 1}
    orders = [(f"{i % 4}-{ts * 1000}-{i}", f"u{i % 3}", "cr1", 10 + i, ts)
              for i, ts in enumerate(v for v in dated.values() for _ in range(3))]
    ledger_batch(dsn, orders)
    # A refund of one order (its credit still pending), and a row a SQL
    # function writes itself (chain -1).
    oid = orders[4][0]
    psql("INSERT INTO refunds (id, order_id, amount, reason, user_id, creator, room, order_created_at, "
         "platform_fee, agency_share, creator_net, settled, actor) "
         f"SELECT 'rf1', order_id, 3, 'test', sender, creator, room, created_at, 0, 0, 3, false, 't' "
         f"FROM orders WHERE order_id = '{oid}'", dsn)
    psql("INSERT INTO ledger (movement_id, account, delta, kind, created_at) VALUES "
         "('adj1', 'creator:cr1', -1, 'adjustment', now()), ('adj1', 'platform', 1, 'adjustment', now())", dsn)
    before = snapshot(dsn)

    server(pg=dsn, redis_port=port)

    assert psql("SELECT max(version) FROM schema_migrations", dsn) == str(len(MIGRATIONS))
    assert psql("SELECT string_agg(relkind::text, '' ORDER BY relname) FROM pg_class "
                "WHERE relname IN ('orders', 'ledger')", dsn) == "pp"
    assert snapshot(dsn) == before
    # Every row in the partition of its month; 2001 is before the first
    # partition (at most three years back): the default one.
    placed = dict(r.split("|") for r in psql("SELECT order_id, tableoid::regclass FROM orders", dsn).splitlines())
    for oid, _, _, _, ts in orders:
        want = "orders_default" if ts < month_start(-36) else "orders_" + partition_of(ts)
        assert placed[oid] == want, (oid, placed[oid])
    for line in psql("SELECT movement_id, tableoid::regclass, extract(epoch FROM created_at)::bigint "
                     "FROM ledger", dsn).splitlines():
        mid, table, ts = line.split("|")
        want = "ledger_default" if int(ts) < month_start(-36) else "ledger_" + partition_of(int(ts))
        assert table == want, line
    # The chains still verify, and a new row extends them.
    rc, out = verify_text(dsn)
    assert rc == 0, out
    ledger_batch(dsn, [(f"1-{month_start(0) * 1000 + 9}-0", "u9", "cr1", 5, month_start(0) + 9)])
    rc, out = verify_text(dsn)
    assert rc == 0, out
    assert psql("SELECT count(*) FROM refunds f JOIN orders o ON (o.order_id, o.created_at) = "
                "(f.order_id, f.order_created_at)", dsn) == "1"
    # A replayed order (same id, same created_at) is refused by the key, in
    # whatever partition it lives.
    for oid, _, _, _, ts in (orders[0], orders[-1]):
        out = subprocess.run(["psql", dsn, "-X", "-v", "ON_ERROR_STOP=1", "-qAtc",
                              "INSERT INTO orders SELECT * FROM orders WHERE order_id = '" + oid + "'"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode != 0 and "duplicate key" in out.stderr, out.stderr


def test_tipcastd_makes_the_months_ahead_at_start(server, own):
    dsn, port = own
    server(pg=dsn, redis_port=port).check_exit()

    def parts(t):
        return psql(f"SELECT string_agg(c.relname, ' ' ORDER BY c.relname) FROM pg_inherits i "
                    f"JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{t}'::regclass", dsn).split()
    ahead = [partition_of(month_start(k)) for k in range(0, 5)]
    for t in ("orders", "ledger"):
        assert {f"{t}_{p}" for p in ahead} | {f"{t}_default"} <= set(parts(t)), parts(t)
    # Every month after the next one dropped (empty), as if tipcastd had
    # been down for months: the next start makes them again.
    for t in ("orders", "ledger"):
        for name in parts(t):
            if name != f"{t}_default" and name > f"{t}_{ahead[1]}":
                psql(f"DROP TABLE {name}", dsn)
        assert not {f"{t}_{p}" for p in ahead[2:]} & set(parts(t))
    # A reader holds orders while tipcastd starts: making a partition would
    # wait for it, so the upkeep gives up (a warning) instead of blocking
    # the reader or the ledger, and makes them a tick (a minute) later.
    reader = subprocess.Popen(["psql", dsn, "-X", "-q", "-c", "BEGIN; LOCK TABLE orders IN ACCESS SHARE MODE; "
                               "SELECT pg_sleep(4); COMMIT;"], stdout=subprocess.DEVNULL)
    wait_for(lambda: psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                          "WHERE c.relname = 'orders' AND l.granted", dsn) != "0", what="the reader's lock")
    srv = server(pg=dsn, redis_port=port)
    wait_for(lambda: "level=warn" in srv.stderr_text() and "skipped" in srv.stderr_text(), what="the skipped upkeep")
    assert reader.wait(30) == 0
    for t in ("orders", "ledger"):
        wait_for(lambda: {f"{t}_{p}" for p in ahead} <= set(parts(t)), 90, what=f"{t}'s months ahead")
    assert srv.alive()


# ---- archiving a month ---------------------------------------------------------------

ARCHIVE = os.path.join(REPO, "scripts", "archive-month.sh")


def archive(dsn, month, out_dir, *flags):
    out = subprocess.run([ARCHIVE, "--pg", dsn, *flags, month, str(out_dir)], capture_output=True, text=True,
                         timeout=300)
    return out.returncode, out.stderr


def findings(dsn, port):
    """tipcast-admin reconcile's findings, as (check, kind, subject, expected, actual)."""
    out = subprocess.run([admin_bin(), f"--redis-port={port}", f"--pg={dsn}", f"--wallet-shards={SHARDS}",
                          "reconcile", "--json", "--no-store"], capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 1), out.stderr
    return sorted((f["check"], f["kind"], f["subject"], f["expected"], f["actual"])
                  for f in json.loads(out.stdout)["findings"])


def test_a_month_archived_leaves_every_check_as_it_was(server, own, tmp_path):
    """Gifts of three months through a real tipcastd, a refund (credited
    today) of an order of the oldest, a settlement run; then
    scripts/archive-month.sh: the month before last is refused, the one
    before it is written, checked and removed. Afterwards verify-ledger is
    intact across the gap, reconciliation reports exactly what it reported
    before, the month's stats survive a full backfill, the file restores to
    the removed rows, and gifts keep landing."""
    dsn, port = own
    srv = server(pg=dsn, redis_port=port, settlement_delay_days=0)
    old, last = month_start(-2), month_start(-1)
    old_m, last_m = time.strftime("%Y-%m", time.gmtime(old)), time.strftime("%Y-%m", time.gmtime(last))
    # A deployment that ran then would have these months' partitions.
    for t in ("orders", "ledger"):
        psql(f"SELECT partman.create_partition_time('public.{t}', ARRAY[to_timestamp({old}), "
             f"to_timestamp({last})])", dsn)
    r = Redis(port=port)
    creators = [unique("cr") for _ in range(2)]
    made = {}
    for when, n in ((old + 3600, 12), (last + 7200, 6), (time.time() - 60, 4)):
        for i in range(n):
            fields = entry_fields("gift", f"v{i % 5}", 10 + i, room=creators[i % 2], gift=1, name="Rose",
                                  price=10 + i, ts=int(when * 1000) + i)
            made[xadd_entry(r, fields)] = when
    credit = xadd_entry(r, entry_fields("credit", "v1", 500, text="old credit", ts=old * 1000 + 99))
    wait_for(lambda: psql("SELECT count(*) FROM orders", dsn) == str(len(made)), what="orders")
    wait_for(lambda: psql(f"SELECT count(*) FROM ledger WHERE movement_id = '{credit}'", dsn) == "2", what="credit")
    api = admin.AdminClient(f"http://127.0.0.1:{srv.admin_port}")
    api.check_spec = False
    tok = mint_token(unique("adm"), "admin")
    refunded = next(o for o, w in made.items() if w < last)
    st, _, b = api.post(f"/api/v1/orders/{refunded}/refund", tok, {"refund_id": unique("rf"), "reason": "archive"})
    assert st == 201, b
    wait_for(lambda: psql("SELECT state FROM refunds", dsn) == "credited", 30, "the refund's credit")
    st, _, b = api.post("/api/v1/settlements/run", tok)
    assert st == 200, b
    assert psql("SELECT count(*) FROM orders WHERE settlement_id IS NULL", dsn) == "0"

    before = findings(dsn, port)
    rc, out = verify_text(dsn)
    assert rc == 0, out
    stats_sql = ("SELECT string_agg(concat_ws(',', creator, grain, period, gross, net, orders, refunds), ';' "
                 "ORDER BY creator, grain, period) FROM stats_creator "
                 f"WHERE period >= to_timestamp({old}) AND period < to_timestamp({last})")
    old_stats = psql(stats_sql, dsn)
    assert old_stats
    old_orders = psql(f"SELECT string_agg(order_id || ':' || amount, ',' ORDER BY order_id) FROM orders "
                      f"WHERE created_at < to_timestamp({last})", dsn)

    rc, err = archive(dsn, last_m, tmp_path)
    assert rc == 1 and "too recent" in err, err
    rc, err = archive(dsn, old_m, tmp_path)
    assert rc == 0 and "not applied" in err, err
    assert psql(f"SELECT count(*) FROM orders WHERE created_at < to_timestamp({last})", dsn) == "12"
    rc, err = archive(dsn, old_m, tmp_path, "--apply", "--actor", "ops1")
    assert rc == 0 and "archived:" in err, err

    suffix = "p" + old_m.replace("-", "_")
    assert psql(f"SELECT count(*) FROM pg_class WHERE relname IN ('orders_{suffix}', 'ledger_{suffix}')", dsn) == "0"
    assert psql(f"SELECT count(*) FROM orders WHERE created_at < to_timestamp({last})", dsn) == "0"
    manifest = json.loads((tmp_path / f"tipcast-{old_m}.json").read_text())
    assert psql("SELECT month, orders, file, sha256, actor FROM archived_months", dsn) == \
        f"{old_m}-01|12|tipcast-{old_m}.dump|{manifest['sha256']}|ops1"
    # The refund of an archived order stays, credited.
    assert psql(f"SELECT order_id, state FROM refunds", dsn) == f"{refunded}|credited"

    rc, out = verify_text(dsn)
    assert rc == 0 and "archived" in out, out
    # (Every check's sums lost the month's rows: the carry gives them back.)
    assert psql("SELECT string_agg(DISTINCT chk, ',' ORDER BY chk) FROM archive_carry", dsn) == \
        "accounts,boards,wallet"
    assert findings(dsn, port) == before
    psql("SELECT tipcast_stats_backfill(NULL, NULL)", dsn)
    assert psql(stats_sql, dsn) == old_stats

    # The file restores, on its own, to the rows that left.
    with own_database("tipcast_restore") as other:
        listing = subprocess.run(["pg_restore", "--list", str(tmp_path / f"tipcast-{old_m}.dump")],
                                 capture_output=True, text=True, check=True).stdout
        keep = tmp_path / "list"
        keep.write_text("\n".join(l for l in listing.splitlines() if " ATTACH " not in l))
        subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", f"--use-list={keep}", f"--dbname={other}",
                        str(tmp_path / f"tipcast-{old_m}.dump")], check=True, capture_output=True)
        assert psql(f"SELECT string_agg(order_id || ':' || amount, ',' ORDER BY order_id) FROM orders_{suffix}",
                    other) == old_orders

    # tipcastd goes on: a gift of today lands and the chains stay intact.
    xadd_entry(r, entry_fields("gift", "v9", 7, room=creators[0], gift=1, name="Rose", price=7))
    wait_for(lambda: psql("SELECT count(*) FROM orders", dsn) == str(len(made) - 12 + 1), what="today's gift")
    rc, out = verify_text(dsn)
    assert rc == 0, out
    r.close()
    assert srv.alive()
