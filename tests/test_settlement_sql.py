"""The admin API's SQL functions (storage/migrations/004_settlement_api.sql),
called directly with psql as tipcastd calls them: tipcast_api_<name>(ctx).

Orders are inserted here as the ledger consumer would write them (the
order, its ledger rows, the creator's pending), and a refund's wallet credit
is applied as the consumer would apply it (credit_refund), so the money
invariant of 004 can be checked after every step:
    pending + available = sum of the ledger rows of creator:<C>.
The database is shared by every test: every test uses ids of its own, and
the settlement tests place their orders in a past window of their own."""

import json
import random
import subprocess
import threading
import time

import pytest

from conftest import PG
from helpers import psql
from wsclient import unique

MAX_AMOUNT = 2 ** 53 - 1


class Refused(Exception):
    def __init__(self, code, detail, hint):
        super().__init__(f"{code}: {detail} ({hint})")
        self.code, self.detail, self.hint = code, detail, hint


def run_sql(script, check=True):
    """Runs a psql script from stdin in one session; returns (rc, stdout, stderr)."""
    out = subprocess.run(["psql", PG, "-X", "-qAt", "-v", "ON_ERROR_STOP=1"], input=script,
                         capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stderr
    return out.returncode, out.stdout, out.stderr


def call(fn, ctx):
    """SELECT fn(ctx): the answer as a dict, or Refused(code, detail, hint)."""
    ctx_json = json.dumps(ctx)
    tag = "$ctx_" + "q" * 3 + "$"
    rc, out, err = run_sql(f"SELECT {fn}({tag}{ctx_json}{tag}::jsonb);", check=False)
    if rc != 0:
        code = detail = hint = None
        for line in err.splitlines():
            if line.startswith("ERROR:"):
                code = line.split(":", 1)[1].strip()
            elif line.startswith("DETAIL:"):
                detail = line.split(":", 1)[1].strip()
            elif line.startswith("HINT:"):
                hint = line.split(":", 1)[1].strip()
        if code is None:
            raise AssertionError(err)
        raise Refused(code, detail, hint)
    return json.loads(out.strip())


def refused(fn, ctx, code, field=None):
    with pytest.raises(Refused) as e:
        call(fn, ctx)
    assert e.value.code == code, e.value
    if field is not None:
        assert e.value.hint == field, e.value
    assert e.value.detail
    return e.value


def ctx(actor="fin1", role="finance", body=None, path=None, query=None, webhooks=False, **settings):
    s = {"settlement_delay_days": 7, "withdrawal_min": 1000}
    s.update(settings)
    return {"actor": actor, "role": role, "request_id": unique("req"), "client_addr": "127.0.0.1",
            "webhooks": webhooks, "path": path or {}, "query": query or {}, "body": body, "settings": s}


def audit_count(action=None, target=None):
    cond = ["true"]
    if action:
        cond.append(f"action = '{action}'")
    if target:
        cond.append(f"target = '{target}'")
    return int(psql(f"SELECT count(*) FROM audit_log WHERE {' AND '.join(cond)}"))


def audit_rows(action, target):
    out = psql(f"SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY id), '[]') FROM audit_log a "
               f"WHERE action = '{action}' AND target = '{target}'")
    return json.loads(out)


def uid(prefix):
    # Ids are [A-Za-z0-9_.-]: unique() may use other characters.
    return prefix + "_" + "".join(c if c.isalnum() else "_" for c in unique(""))[-20:] + \
        str(random.randrange(10 ** 9))


# ---- orders and the ledger consumer's part, simulated ----------------------

def order_sql(oid, sender, creator, amount, fee, agency, created_at="now()", room=None, agency_id="NULL"):
    net = amount - fee - agency
    room = room or creator
    agency_line = ""
    if agency:
        agency_line = f", ('{oid}', 'agency:{agency_id.strip(chr(39))}', {agency}, 'gift', NULL, {created_at})"
    return (
        f"INSERT INTO orders (order_id, kind, sender, room, creator, gift_id, count, unit_price, amount, "
        f"request_id, sender_balance, created_at, rule_id, platform_fee, agency_id, agency_share, creator_net) "
        f"VALUES ('{oid}', 'gift', '{sender}', '{room}', '{creator}', 1, 1, {amount}, {amount}, 'q-{oid}', 0, "
        f"{created_at}, NULL, {fee}, {agency_id}, {agency}, {net});\n"
        f"INSERT INTO ledger (movement_id, account, delta, kind, note, created_at) VALUES "
        f"('{oid}', 'user:{sender}', {-amount}, 'gift', NULL, {created_at}), "
        f"('{oid}', 'creator:{creator}', {net}, 'gift', NULL, {created_at}), "
        f"('{oid}', 'platform', {fee}, 'gift', NULL, {created_at}){agency_line};\n"
        f"INSERT INTO creator_balances AS b (creator, pending) VALUES ('{creator}', {net}) "
        f"ON CONFLICT (creator) DO UPDATE SET pending = b.pending + {net};\n")


def add_order(oid, sender, creator, amount, fee=0, agency=0, created_at="now()", agency_id="NULL"):
    run_sql("BEGIN;\n" + order_sql(oid, sender, creator, amount, fee, agency, created_at,
                                   agency_id=agency_id) + "COMMIT;\n")


def credit_refund(refund_id):
    """The ledger consumer's part of a refund, when its wallet credit lands."""
    run_sql(f"""
BEGIN;
WITH f AS (UPDATE refunds SET state = 'credited', credited_at = now()
           WHERE id = '{refund_id}' AND state = 'pending' RETURNING *),
     l AS (INSERT INTO ledger (movement_id, account, delta, kind, note, created_at)
           SELECT 'refund:' || f.id, a.account, a.delta, 'refund', f.order_id, now()
           FROM f, LATERAL (VALUES ('user:' || f.user_id, f.amount), ('creator:' || f.creator, -f.creator_net),
                                   ('platform', -f.platform_fee),
                                   ('agency:' || coalesce(f.agency_id, '-'), -f.agency_share)) a(account, delta)
           WHERE a.delta <> 0)
UPDATE creator_balances b
SET pending = b.pending - CASE WHEN f.settled THEN 0 ELSE f.creator_net END,
    available = b.available - CASE WHEN f.settled THEN f.creator_net ELSE 0 END
FROM f WHERE b.creator = f.creator;
COMMIT;
""")


def balance(creator):
    return call("tipcast_api_creator_balance", ctx(path={"id": creator}))["body"]


def check_invariant(creator):
    b = balance(creator)
    ledger_sum = int(psql(f"SELECT coalesce(sum(delta), 0) FROM ledger WHERE account = 'creator:{creator}'"))
    assert b["pending"] + b["available"] == ledger_sum, (b, ledger_sum)
    assert b["frozen"] >= 0 and b["withdrawable"] == max(0, b["available"] - b["frozen"])
    assert b["debt"] == max(0, -b["available"])
    return b


_window = [0]


def past_window():
    """A time window of its own, years ago, for a settlement test: (start, cutoff)."""
    _window[0] += 1
    day = random.randrange(0, 3000) * 3 + _window[0]
    start = f"(timestamptz '2001-01-01 00:00:00+00' + interval '{day} days')"
    return start, f"{start} + interval '1 day'"


def cutoff_text(expr):
    return psql(f"SELECT tipcast_ts({expr})")


@pytest.fixture(scope="module", autouse=True)
def migrated(module_server):
    """004 in the database: a tipcastd applies it at start when it is missing."""
    if psql("SELECT to_regproc('tipcast_api_order_refund') IS NOT NULL") != "t":
        module_server()
    assert psql("SELECT to_regproc('tipcast_api_order_refund') IS NOT NULL") == "t"
    started = psql("SELECT now()")
    yield
    # These tests call the functions without a wallet behind them: the
    # refunds they leave pending and the recharges they leave paid would be
    # credited by the next tipcastd on this database (settlement/jobs.h), to
    # users and orders that exist only here. They are taken back.
    psql(f"DELETE FROM refunds WHERE state = 'pending' AND created_at >= '{started}'")
    psql(f"UPDATE recharges SET state = 'failed', failure = 'test teardown' "
         f"WHERE state = 'paid' AND created_at >= '{started}'")


# ---- argument validation ------------------------------------------------------

def test_amounts_ids_limits_and_texts_are_validated():
    base = {"user": uid("u"), "request_id": uid("r"), "currency": "USD"}
    call("tipcast_api_rate_put", ctx(path={"currency": "USD"}, body={"coins_per_unit": 100, "minor_per_unit": 100}))
    for bad in (0, -1, 1.5, "5", MAX_AMOUNT + 1, None, True, [1]):
        body = dict(base, amount_minor=bad)
        if bad is None:
            del body["amount_minor"]
        refused("tipcast_api_recharge_create", ctx(body=body), "bad_field", "amount_minor")
    for bad in ("", "a b", "x" * 65, "ü", 7, "a/b"):
        refused("tipcast_api_recharge_create", ctx(body=dict(base, user=bad, amount_minor=100)), "bad_field", "user")
    refused("tipcast_api_recharge_create", ctx(body=dict(base, currency="usd", amount_minor=100)), "bad_field",
            "currency")
    for bad in ("0", "501", "abc", "-1", "1.5"):
        refused("tipcast_api_audit_list", ctx(role="auditor", query={"limit": bad}), "bad_field", "limit")
    refused("tipcast_api_audit_list", ctx(role="auditor", query={"after": "x|y"}), "bad_field", "after")
    refused("tipcast_api_audit_list", ctx(role="auditor", query={"from": "yesterday"}), "bad_field", "from")
    refused("tipcast_api_recharges_list", ctx(query={"after": "12"}), "bad_field", "after")
    refused("tipcast_api_recharges_list", ctx(query={"state": "lost"}), "bad_field", "state")
    # The largest amount is accepted (here as a rate of coins per unit).
    assert call("tipcast_api_rate_put", ctx(path={"currency": "XTS"}, body={
        "coins_per_unit": MAX_AMOUNT, "minor_per_unit": 1}))["body"]["coins_per_unit"] == MAX_AMOUNT
    oid = uid("o")
    add_order(oid, uid("u"), uid("c"), 100)
    refused("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": uid("f"), "reason": "x" * 501}),
            "bad_field", "reason")
    refused("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": uid("f")}), "bad_field", "reason")
    refused("tipcast_api_withdrawal_approve", ctx(path={"id": "abc"}), "bad_field", "id")


# ---- packages and rates ------------------------------------------------------------

def test_packages_and_rates_put_and_list_audited():
    pid = uid("p")
    n0 = audit_count("package.put", pid)
    a = call("tipcast_api_package_put", ctx(path={"id": pid}, body={"currency": "EUR", "amount_minor": 499,
                                                                    "coins": 500}))
    assert a == {"status": 200, "body": {"id": pid, "currency": "EUR", "amount_minor": 499, "coins": 500,
                                         "enabled": True}}
    call("tipcast_api_package_put", ctx(path={"id": pid}, body={"currency": "EUR", "amount_minor": 999,
                                                                "coins": 1000, "enabled": False}))
    rows = audit_rows("package.put", pid)
    assert len(rows) == n0 + 2
    assert rows[-2]["before"] is None and rows[-2]["after"]["coins"] == 500
    assert rows[-1]["before"]["coins"] == 500 and rows[-1]["after"] == {
        "id": pid, "currency": "EUR", "amount_minor": 999, "coins": 1000, "enabled": False}
    refused("tipcast_api_package_put", ctx(path={"id": pid}, body={"currency": "EUR", "amount_minor": 1,
                                                                   "coins": 1, "enabled": "yes"}), "bad_field", "enabled")
    lst = call("tipcast_api_packages_list", ctx())["body"]
    assert {"id": pid, "currency": "EUR", "amount_minor": 999, "coins": 1000, "enabled": False} in lst["items"]
    n0 = audit_count("rate.put", "JPY")
    r = call("tipcast_api_rate_put", ctx(path={"currency": "JPY"}, body={"coins_per_unit": 7, "minor_per_unit": 1}))
    assert r["body"] == {"currency": "JPY", "coins_per_unit": 7, "minor_per_unit": 1}
    assert audit_count("rate.put", "JPY") == n0 + 1
    assert {"currency": "JPY", "coins_per_unit": 7, "minor_per_unit": 1} in \
        call("tipcast_api_packages_list", ctx())["body"]["rates"]
    refused("tipcast_api_rate_put", ctx(path={"currency": "JP"}, body={"coins_per_unit": 7, "minor_per_unit": 1}),
            "bad_field", "currency")
    refused("tipcast_api_rate_put", ctx(path={"currency": "JPY"}, body={"coins_per_unit": 7, "minor_per_unit": 0}),
            "bad_field", "minor_per_unit")


# ---- recharges -------------------------------------------------------------------------

def test_recharge_create_idempotent_rounding_get_and_list():
    call("tipcast_api_rate_put", ctx(path={"currency": "GBP"}, body={"coins_per_unit": 7, "minor_per_unit": 100}))
    pid = uid("p")
    call("tipcast_api_package_put", ctx(path={"id": pid}, body={"currency": "GBP", "amount_minor": 499, "coins": 500}))
    user = uid("u")
    n0 = audit_count("recharge.create")
    a = call("tipcast_api_recharge_create", ctx(body={"user": user, "request_id": uid("r"), "package_id": pid}))
    assert a["status"] == 201 and "wallet" not in a
    rc = a["body"]
    assert set(rc) == {"id", "user", "currency", "amount_minor", "coins", "package_id", "state", "payment_id",
                       "failure", "created_at", "paid_at", "credited_at"}
    assert rc["id"].startswith("rc_") and rc["coins"] == 500 and rc["state"] == "pending"
    assert rc["currency"] == "GBP" and rc["amount_minor"] == 499 and rc["package_id"] == pid
    # By rate, rounded down: 1234 * 7 / 100 = 86.38.
    rid = uid("r")
    b = call("tipcast_api_recharge_create", ctx(body={"user": user, "request_id": rid, "currency": "GBP",
                                                      "amount_minor": 1234}))
    assert b["status"] == 201 and b["body"]["coins"] == 86 and b["body"]["package_id"] is None
    again = call("tipcast_api_recharge_create", ctx(body={"user": user, "request_id": rid, "currency": "GBP",
                                                          "amount_minor": 1234}))
    assert again == dict(b, status=200)
    assert audit_count("recharge.create") == n0 + 2
    refused("tipcast_api_recharge_create", ctx(body={"user": user, "request_id": rid, "currency": "GBP",
                                                     "amount_minor": 1235}), "idempotency_conflict")
    refused("tipcast_api_recharge_create", ctx(body={"user": uid("u"), "request_id": rid, "currency": "GBP",
                                                     "amount_minor": 1234}), "idempotency_conflict")
    # 14 minor units buy 0.98 coins: nothing to sell.
    refused("tipcast_api_recharge_create", ctx(body={"user": user, "request_id": uid("r"), "currency": "GBP",
                                                     "amount_minor": 14}), "bad_field", "amount_minor")
    refused("tipcast_api_recharge_create", ctx(body={"user": user, "request_id": uid("r"), "currency": "XXQ",
                                                     "amount_minor": 100}), "bad_field", "currency")
    refused("tipcast_api_recharge_create", ctx(body={"user": user, "request_id": uid("r"), "package_id": "nope"}),
            "bad_field", "package_id")
    refused("tipcast_api_recharge_create", ctx(body={"user": user, "request_id": uid("r"), "package_id": pid,
                                                     "currency": "GBP", "amount_minor": 5}), "bad_field", "package_id")
    assert audit_count("recharge.create") == n0 + 2
    assert call("tipcast_api_recharge_get", ctx(path={"id": rc["id"]}))["body"] == rc
    refused("tipcast_api_recharge_get", ctx(path={"id": "rc_nope"}), "not_found")
    # Keyset pages of a user's recharges, newest first.
    for _ in range(3):
        call("tipcast_api_recharge_create", ctx(body={"user": user, "request_id": uid("r"), "package_id": pid}))
    seen, after = [], None
    while True:
        q = {"user": user, "limit": "2"}
        if after:
            q["after"] = after
        page = call("tipcast_api_recharges_list", ctx(query=q))["body"]
        seen += page["items"]
        after = page["next"]
        if after is None:
            break
        assert len(page["items"]) == 2
    assert len(seen) == 5 and len({r["id"] for r in seen}) == 5
    assert [r["created_at"] for r in seen] == sorted([r["created_at"] for r in seen], reverse=True)
    assert all(r["state"] == "pending" for r in call("tipcast_api_recharges_list", ctx(
        query={"user": user, "state": "pending"}))["body"]["items"])


def new_recharge(amount_minor=499, currency="USD"):
    call("tipcast_api_rate_put", ctx(path={"currency": "USD"}, body={"coins_per_unit": 100, "minor_per_unit": 100}))
    user = uid("u")
    rc = call("tipcast_api_recharge_create", ctx(body={"user": user, "request_id": uid("r"), "currency": currency,
                                                       "amount_minor": amount_minor}))["body"]
    return rc


def cb(rc, payment_id, amount=None, currency=None, status="succeeded", webhooks=False):
    return ctx(actor="provider", role="provider", webhooks=webhooks, body={
        "payment_id": payment_id, "recharge_id": rc["id"], "amount_minor": amount or rc["amount_minor"],
        "currency": currency or rc["currency"], "status": status})


def test_payment_callback_pays_once_and_repeats_its_answer():
    rc = new_recharge()
    pay = uid("pay")
    n0 = audit_count("payment.paid", rc["id"])
    a = call("tipcast_api_payment_callback", cb(rc, pay))
    assert a["status"] == 200
    assert a["wallet"] == {"kind": "recharge", "user": rc["user"], "amount": 499, "ref": rc["id"]}
    got = a["body"]["recharge"]
    assert got["state"] == "paid" and got["payment_id"] == pay and got["paid_at"]
    for _ in range(5):
        assert call("tipcast_api_payment_callback", cb(rc, pay)) == a
    assert audit_count("payment.paid", rc["id"]) == n0 + 1
    assert psql(f"SELECT count(*) FROM recharges WHERE payment_id = '{pay}'") == "1"
    assert psql(f"SELECT paid_amount_minor FROM recharges WHERE id = '{rc['id']}'") == "499"
    # Still the same answer, wallet included, once the credit is in.
    psql(f"UPDATE recharges SET state = 'credited', credited_at = now() WHERE id = '{rc['id']}'")
    c = call("tipcast_api_payment_callback", cb(rc, pay))
    assert c["status"] == 200 and c["wallet"] == a["wallet"] and c["body"]["recharge"]["state"] == "credited"
    e = refused("tipcast_api_payment_callback", cb(rc, uid("pay")), "invalid_state")
    assert "credited" in e.detail and "paid" in e.detail
    refused("tipcast_api_payment_callback", dict(cb(rc, pay), body=dict(cb(rc, pay)["body"], recharge_id="rc_none")),
            "not_found")
    refused("tipcast_api_payment_callback", cb(rc, pay, status="done"), "bad_field", "status")
    # A payment id recorded for another recharge is not reused.
    other = new_recharge()
    refused("tipcast_api_payment_callback", cb(other, pay), "idempotency_conflict")


def test_payment_callback_amount_mismatch_commits_failed_alert_and_audit():
    rc = new_recharge(1000)
    pay = uid("pay")
    alerts0 = int(psql("SELECT count(*) FROM alerts WHERE kind = 'recharge_amount_mismatch'"))
    for attempt in range(2):
        a = call("tipcast_api_payment_callback", cb(rc, pay, amount=999, webhooks=True))
        assert a["status"] == 409 and "wallet" not in a
        assert a["body"]["error"]["code"] == "amount_mismatch" and "999" in a["body"]["error"]["message"]
    row = psql(f"SELECT state, payment_id, paid_amount_minor, failure IS NOT NULL FROM recharges WHERE id = '{rc['id']}'")
    assert row == f"failed|{pay}|999|t"
    assert int(psql("SELECT count(*) FROM alerts WHERE kind = 'recharge_amount_mismatch'")) == alerts0 + 1
    al = json.loads(psql(f"SELECT to_jsonb(a) FROM alerts a WHERE subject = '{rc['id']}'"))
    assert al["severity"] == "critical" and al["detail"]["paid_amount_minor"] == 999
    rows = audit_rows("payment.paid", rc["id"])
    assert len(rows) == 1 and rows[0]["outcome"] == "amount_mismatch" and rows[0]["after"]["state"] == "failed"
    assert psql(f"SELECT count(*) FROM webhook_outbox WHERE idempotency_key = 'recharge.failed:{rc['id']}'") == "1"
    refused("tipcast_api_payment_callback", cb(rc, uid("pay")), "invalid_state")
    # The currency is checked too.
    rc2 = new_recharge(1000)
    assert call("tipcast_api_payment_callback", cb(rc2, uid("pay"), currency="EUR"))["status"] == 409


def test_payment_callback_failed_status_and_refused_audit():
    rc = new_recharge()
    pay = uid("pay")
    a = call("tipcast_api_payment_callback", cb(rc, pay, status="failed", webhooks=True))
    assert a["status"] == 200 and "wallet" not in a and a["body"]["recharge"]["state"] == "failed"
    assert call("tipcast_api_payment_callback", cb(rc, pay, status="failed")) == a
    assert audit_count("payment.failed", rc["id"]) == 1
    out = psql(f"SELECT event, payload->'data'->>'state' FROM webhook_outbox "
               f"WHERE idempotency_key = 'recharge.failed:{rc['id']}'")
    assert out == "recharge.failed|failed"
    refused("tipcast_api_payment_callback", cb(rc, pay), "invalid_state")
    # Without webhooks, no outbox row.
    rc2 = new_recharge()
    call("tipcast_api_payment_callback", cb(rc2, uid("pay"), status="failed"))
    assert psql(f"SELECT count(*) FROM webhook_outbox WHERE idempotency_key = 'recharge.failed:{rc2['id']}'") == "0"
    # The callbacks refused by tipcastd (signature, timestamp) are audited.
    for outcome in ("bad_signature", "stale_timestamp"):
        n0 = audit_count("payment.callback", rc["id"])
        r = call("tipcast_api_payment_refused", dict(cb(rc, pay), outcome=outcome))
        assert r["status"] == 401 and r["body"]["error"]["code"] == outcome
        rows = audit_rows("payment.callback", rc["id"])
        assert len(rows) == n0 + 1 and rows[-1]["outcome"] == outcome
    # A body that is not even an object is still audited (without a target).
    n0 = audit_count("payment.callback")
    call("tipcast_api_payment_refused", dict(ctx(body=None), outcome="bad_signature"))
    assert audit_count("payment.callback") == n0 + 1
    refused("tipcast_api_payment_refused", dict(ctx(body=None), outcome="other"), "bad_field", "outcome")


def threads_call(fn, ctxs):
    """Runs fn(ctx) for every ctx at once (one psql each); returns the answers or Refused."""
    results = [None] * len(ctxs)
    start = threading.Barrier(len(ctxs))

    def one(i):
        start.wait()
        try:
            results[i] = call(fn, ctxs[i])
        except Refused as e:
            results[i] = e

    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(ctxs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results


def test_concurrent_callbacks_pay_once():
    rc = new_recharge()
    pay = uid("pay")
    res = threads_call("tipcast_api_payment_callback", [cb(rc, pay) for _ in range(12)])
    assert all(isinstance(r, dict) and r["status"] == 200 for r in res), res
    assert len({json.dumps(r["wallet"], sort_keys=True) for r in res}) == 1
    assert audit_count("payment.paid", rc["id"]) == 1
    # Different payment ids at once: one wins, the others are refused.
    rc = new_recharge()
    res = threads_call("tipcast_api_payment_callback", [cb(rc, uid("pay")) for _ in range(12)])
    ok = [r for r in res if isinstance(r, dict)]
    assert len(ok) == 1 and all(r.code == "invalid_state" for r in res if isinstance(r, Refused))
    assert audit_count("payment.paid", rc["id"]) == 1


# ---- revenue rules, agencies ------------------------------------------------------------

def test_revenue_rules_create_validate_and_list():
    # Rules far in the future: the database is shared, and a rule in force
    # now would split the orders of other tests.
    later = psql("SELECT tipcast_ts(now() + interval '50 years' + random() * interval '3650 days')")
    n0 = audit_count("rule.create")
    body = {"name": "gold", "effective_at": later, "agency_share_bp": 1000,
            "tiers": [{"min_volume": 100000, "platform_fee_bp": 2000}, {"min_volume": 0, "platform_fee_bp": 3000}]}
    a = call("tipcast_api_rule_create", ctx(body=body))
    assert a["status"] == 201
    rule = a["body"]
    assert set(rule) == {"id", "name", "effective_at", "agency_share_bp", "tiers", "created_by", "created_at"}
    assert rule["tiers"] == [{"min_volume": 0, "platform_fee_bp": 3000}, {"min_volume": 100000, "platform_fee_bp": 2000}]
    assert rule["created_by"] == "fin1" and rule["effective_at"].startswith(later[:19])
    assert audit_count("rule.create", str(rule["id"])) == 1
    # effective_at defaults to now (tried in a transaction rolled back, for
    # the same reason).
    c = json.dumps(ctx(body={"name": "now", "agency_share_bp": 0, "tiers": [{"min_volume": 0, "platform_fee_bp": 0}]}))
    _, out, _ = run_sql(f"BEGIN; SELECT tipcast_api_rule_create($j${c}$j$::jsonb)->'body'->>'effective_at' = "
                        f"tipcast_ts(now()); ROLLBACK;")
    assert out.strip() == "t"
    items = call("tipcast_api_rules_list", ctx())["body"]["items"]
    eff = [r["effective_at"] for r in items]
    assert eff == sorted(eff, reverse=True) and rule in items
    bad = [
        (dict(body, effective_at="2001-01-01T00:00:00Z"), "effective_at"),
        (dict(body, effective_at=later), "effective_at"),  # taken
        (dict(body, effective_at=None, tiers=[]), "tiers"),
        (dict(body, effective_at=None, tiers=[{"min_volume": i, "platform_fee_bp": 1} for i in range(17)]), "tiers"),
        (dict(body, effective_at=None, tiers=[{"min_volume": 5, "platform_fee_bp": 1}]), "tiers"),
        (dict(body, effective_at=None, tiers=[{"min_volume": 0, "platform_fee_bp": 9001}]), "tiers[0].platform_fee_bp"),
        (dict(body, effective_at=None, tiers=[{"min_volume": 0, "platform_fee_bp": 1},
                                             {"min_volume": 0, "platform_fee_bp": 2}]), "tiers[1].min_volume"),
        (dict(body, effective_at=None, agency_share_bp=10001), "agency_share_bp"),
        (dict(body, effective_at=None, tiers=[{"min_volume": -1, "platform_fee_bp": 1}]), "tiers[0].min_volume"),
        (dict(body, effective_at=None, tiers=[{"min_volume": 0}]), "tiers[0].platform_fee_bp"),
        (dict(body, effective_at=None, tiers=[5]), "tiers[0]"),
        (dict(body, effective_at=None, name=""), "name"),
    ]
    for b, field in bad:
        if b.get("effective_at") is None:
            b.pop("effective_at", None)
        refused("tipcast_api_rule_create", ctx(body=b), "bad_field", field)
    assert audit_count("rule.create") == n0 + 1
    # A 16-tier rule is fine.
    t16 = [{"min_volume": i * 10, "platform_fee_bp": 100} for i in range(16)]
    assert call("tipcast_api_rule_create", ctx(body={"name": "t16", "agency_share_bp": 0, "tiers": t16,
        "effective_at": psql("SELECT tipcast_ts(now() + interval '60 years' + random() * interval '3000 days')")}))[
        "status"] == 201


def test_agencies_and_creator_assignment():
    aid, cid = uid("a"), uid("c")
    n0 = audit_count("agency.create", aid)
    a = call("tipcast_api_agency_create", ctx(role="operations", body={"id": aid, "name": "Guild"}))
    assert a == {"status": 201, "body": {"id": aid, "name": "Guild", "creators": 0}}
    assert call("tipcast_api_agency_create", ctx(body={"id": aid, "name": "Guild"}))["status"] == 200
    refused("tipcast_api_agency_create", ctx(body={"id": aid, "name": "Other"}), "idempotency_conflict")
    assert audit_count("agency.create", aid) == n0 + 1
    refused("tipcast_api_agency_create", ctx(body={"id": "bad id", "name": "x"}), "bad_field", "id")
    # The creator row does not exist yet: it is made.
    r = call("tipcast_api_creator_agency_put", ctx(path={"id": cid}, body={"agency_id": aid}))
    assert r == {"status": 200, "body": {"creator": cid, "agency_id": aid}}
    assert psql(f"SELECT agency_id FROM creators WHERE id = '{cid}'") == aid
    items = call("tipcast_api_agencies_list", ctx())["body"]["items"]
    assert {"id": aid, "name": "Guild", "creators": 1} in items
    r = call("tipcast_api_creator_agency_put", ctx(path={"id": cid}, body={"agency_id": None}))
    assert r["body"] == {"creator": cid, "agency_id": None}
    rows = audit_rows("creator.agency", cid)
    assert [(x["before"]["agency_id"], x["after"]["agency_id"]) for x in rows] == [(None, aid), (aid, None)]
    refused("tipcast_api_creator_agency_put", ctx(path={"id": cid}, body={"agency_id": "no_such"}), "bad_field",
            "agency_id")
    refused("tipcast_api_creator_agency_put", ctx(path={"id": cid}, body={}), "bad_field", "agency_id")


# ---- orders and refunds ---------------------------------------------------------------------

def test_order_get_and_refunds():
    oid, sender, creator = uid("o"), uid("u"), uid("c")
    add_order(oid, sender, creator, 1000, fee=300, agency=100, agency_id="'ag1'")
    o = call("tipcast_api_order_get", ctx(path={"id": oid}))["body"]
    assert set(o) == {"order_id", "kind", "sender", "room", "creator", "gift_id", "count", "amount", "created_at",
                      "state", "refunded", "split", "refunds"}
    assert o["split"] == {"rule_id": None, "month_volume_before": 0, "platform_fee": 300, "agency_id": "ag1",
                          "agency_share": 100, "creator_net": 600}
    assert o["state"] == "succeeded" and o["refunds"] == []
    refused("tipcast_api_order_get", ctx(path={"id": "no-such-order"}), "not_found")

    fid = uid("f")
    n0 = audit_count("order.refund", oid)
    r = call("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": fid, "amount": 333, "reason": "r"}))
    assert r["status"] == 201
    ref = r["body"]["refund"]
    assert set(ref) == {"id", "order_id", "amount", "reason", "platform_fee", "agency_share", "creator_net", "state",
                        "created_at"}
    # floor(300 * 333 / 1000) = 99, floor(100 * 333 / 1000) = 33, creator the rest.
    assert (ref["platform_fee"], ref["agency_share"], ref["creator_net"]) == (99, 33, 201)
    assert ref["state"] == "pending"
    ts_ms = int(psql(f"SELECT (extract(epoch FROM created_at) * 1000)::bigint FROM orders WHERE order_id = '{oid}'"))
    assert r["wallet"] == {"kind": "refund", "user": sender, "amount": 333, "ref": fid, "room": creator,
                           "order_ts_ms": ts_ms}
    assert r["body"]["order"]["state"] == "partially_refunded" and r["body"]["order"]["refunded"] == 333
    assert r["body"]["order"]["refunds"] == [ref]
    rows = audit_rows("order.refund", oid)
    assert len(rows) == n0 + 1 and rows[-1]["before"]["refunded"] == 0 and rows[-1]["after"]["refunded"] == 333
    # Retries: the same answer, the wallet instruction again while pending.
    again = call("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": fid, "amount": 333,
                                                                         "reason": "r"}))
    assert again["status"] == 200 and again["wallet"] == r["wallet"] and again["body"]["refund"] == ref
    assert call("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": fid, "reason": "r"}))[
        "status"] == 200
    refused("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": fid, "amount": 334, "reason": "r"}),
            "idempotency_conflict")
    oid2 = uid("o")
    add_order(oid2, sender, creator, 50)
    refused("tipcast_api_order_refund", ctx(path={"id": oid2}, body={"refund_id": fid, "amount": 333, "reason": "r"}),
            "idempotency_conflict")
    assert audit_count("order.refund", oid) == n0 + 1
    credit_refund(fid)
    done = call("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": fid, "amount": 333,
                                                                        "reason": "r"}))
    assert done["status"] == 200 and "wallet" not in done and done["body"]["refund"]["state"] == "credited"
    # Beyond what is left.
    refused("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": uid("f"), "amount": 668,
                                                                    "reason": "r"}), "refund_exceeds_order")
    # No amount: the rest, which reverses exactly what is left of each part.
    rest = call("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": uid("f"), "reason": "rest"}))
    rr = rest["body"]["refund"]
    assert rr["amount"] == 667 and (rr["platform_fee"], rr["agency_share"], rr["creator_net"]) == (201, 67, 399)
    assert rest["body"]["order"]["state"] == "refunded" and rest["body"]["order"]["refunded"] == 1000
    e = refused("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": uid("f"), "amount": 1,
                                                                        "reason": "r"}), "invalid_state")
    assert "refunded" in e.detail
    assert audit_count("order.refund", oid) == n0 + 2
    assert len(call("tipcast_api_order_get", ctx(path={"id": oid}))["body"]["refunds"]) == 2


def test_refund_reversal_property_2000_orders():
    """Random orders and random partial refund sequences, through the real
    function in one session: each part's total reversal equals the order's
    part once fully refunded, and no reversal is ever negative."""
    rnd = random.Random(20261129)
    tag = uid("prop")
    creator = uid("c")
    # Each call commits on its own, as tipcastd's do; without waiting for
    # the WAL flush of each (nothing here needs to survive a crash).
    orders, script = [], ["SET synchronous_commit = off;", "BEGIN;"]
    for i in range(2000):
        amount = rnd.choice([1, 2, 3, 7, 10, 99, 100, 101, 997, 12345, rnd.randrange(1, 10 ** 7), MAX_AMOUNT])
        fee_bp = rnd.randrange(0, 10001)
        ag_bp = rnd.randrange(0, 10001 - fee_bp) if rnd.random() < 0.7 else 0
        fee = amount * fee_bp // 10000
        ag = amount * ag_bp // 10000
        oid = f"{tag}-{i}"
        orders.append((oid, amount, fee, ag))
        agency = "'ag-prop'" if ag else "NULL"
        script.append(f"INSERT INTO orders (order_id, kind, sender, room, creator, count, unit_price, amount, "
                      f"request_id, sender_balance, created_at, platform_fee, agency_id, agency_share, creator_net) "
                      f"VALUES ('{oid}', 'tip', 'u', 'rm', '{creator}', 1, {amount}, {amount}, 'q', 0, "
                      # long ago: these amounts would swamp the platform's statements of today
                      f"'2001-01-01', {fee}, "
                      f"{agency}, {ag}, {amount - fee - ag});")
    script.append("COMMIT;")
    for oid, amount, fee, ag in orders:
        left, k = amount, 0
        while left > 0:
            k += 1
            if rnd.random() < 0.3 or k > 4:
                body = {"refund_id": f"{oid}-f{k}", "reason": "p"}
                left = 0
            else:
                r = rnd.randrange(1, left + 1) if rnd.random() < 0.5 else rnd.randrange(1, min(left, 3) + 1)
                body = {"refund_id": f"{oid}-f{k}", "amount": r, "reason": "p"}
                left -= r
            c = json.dumps({"actor": "prop", "role": "finance", "path": {"id": oid}, "body": body})
            script.append(f"SELECT 1 FROM tipcast_api_order_refund($j${c}$j$::jsonb) x;")
    try:
        run_sql("\n".join(script) + "\n")
        check_reversals(tag)
    finally:
        # Up to 2^53 - 1 coins each: left behind, these orders would add
        # ~1.4e18 to 2001's rollups at every run (a backfill's sums would
        # leave bigint after a few runs on one database), and tipcastd's
        # re-drive would credit their pending refunds to wallet `u`.
        run_sql(f"BEGIN;\nDELETE FROM refunds WHERE order_id LIKE '{tag}-%';\n"
                f"DELETE FROM orders WHERE order_id LIKE '{tag}-%';\n"
                f"DELETE FROM creator_balances WHERE creator = '{creator}';\nCOMMIT;\n")


def check_reversals(tag):
    out = psql(f"""
        SELECT count(*) FILTER (WHERE o.state <> 'refunded' OR o.refunded <> o.amount),
               count(*) FILTER (WHERE s.fee <> o.platform_fee OR s.agency <> o.agency_share OR s.net <> o.creator_net),
               (SELECT count(*) FROM refunds f WHERE f.order_id LIKE '{tag}-%'
                  AND (f.platform_fee < 0 OR f.agency_share < 0 OR f.creator_net < 0
                       OR f.platform_fee + f.agency_share + f.creator_net <> f.amount)),
               (SELECT count(*) FROM refunds f WHERE f.order_id LIKE '{tag}-%'),
               count(*)
        FROM orders o JOIN (SELECT order_id, sum(platform_fee) fee, sum(agency_share) agency, sum(creator_net) net
                            FROM refunds WHERE order_id LIKE '{tag}-%' GROUP BY 1) s USING (order_id)
        WHERE o.order_id LIKE '{tag}-%'""")
    not_done, mismatched, negative, n_refunds, n_orders = map(int, out.split("|"))
    assert (not_done, mismatched, negative, n_orders) == (0, 0, 0, 2000), out
    assert n_refunds > 2000


def test_concurrent_refunds_never_exceed_the_order():
    oid = uid("o")
    add_order(oid, uid("u"), uid("c"), 100, fee=30)
    res = threads_call("tipcast_api_order_refund", [
        ctx(path={"id": oid}, body={"refund_id": uid("f"), "amount": 30, "reason": "x"}) for _ in range(8)])
    ok = [r for r in res if isinstance(r, dict)]
    assert len(ok) == 3
    assert all(r.code in ("refund_exceeds_order",) for r in res if isinstance(r, Refused))
    assert psql(f"SELECT refunded, state FROM orders WHERE order_id = '{oid}'") == "90|partially_refunded"


# ---- settlement and withdrawals ---------------------------------------------------------------

def test_settlement_moves_pending_to_available_once_per_cutoff():
    start, cutoff = past_window()
    c, c2 = uid("c"), uid("c")
    add_order(uid("o"), uid("u"), c, 1000, fee=300, created_at=start)
    add_order(uid("o"), uid("u"), c, 500, fee=100, agency=50, created_at=f"{start} + interval '1 hour'",
              agency_id="'ag'")
    add_order(uid("o"), uid("u"), c2, 200, created_at=start)
    late = uid("o")
    add_order(late, uid("u"), c, 400, created_at=f"{cutoff} + interval '1 second'")
    assert check_invariant(c) == {"creator": c, "pending": 700 + 350 + 400, "available": 0, "frozen": 0,
                                  "withdrawable": 0, "paid_out": 0, "debt": 0}
    n0 = audit_count("settlement.run")
    cut = cutoff_text(cutoff)
    r = call("tipcast_api_settlement_run", ctx(body={"cutoff": cut}))
    assert r["status"] == 200 and set(r["body"]) == {"cutoff", "creators", "orders", "amount"}
    assert r["body"]["cutoff"] == cut
    assert r["body"]["creators"] >= 2 and r["body"]["orders"] >= 3 and r["body"]["amount"] >= 1250
    assert audit_count("settlement.run") == n0 + 1
    b = check_invariant(c)
    assert (b["pending"], b["available"]) == (400, 1050)
    assert check_invariant(c2)["available"] == 200
    s = call("tipcast_api_creator_settlements", ctx(path={"id": c}))["body"]
    assert [(x["amount"], x["orders"], x["cutoff"]) for x in s["items"]] == [(1050, 2, cut)] and s["next"] is None
    # Again at the same cutoff: nothing moves.
    again = call("tipcast_api_settlement_run", ctx(body={"cutoff": cut}))["body"]
    assert (again["creators"], again["orders"], again["amount"]) == (0, 0, 0)
    assert check_invariant(c)["available"] == 1050
    income = call("tipcast_api_creator_income", ctx(path={"id": c}))["body"]["items"]
    assert {i["order_id"]: i["settled"] for i in income}[late] is False
    assert sum(i["settled"] for i in income) == 2
    # The cutoff may not be later than now minus the delay.
    refused("tipcast_api_settlement_run", ctx(body={"cutoff": psql("SELECT tipcast_ts(now() - interval '6 days')")}),
            "bad_field", "cutoff")
    assert call("tipcast_api_settlement_run", ctx(body={"cutoff": psql("SELECT tipcast_ts(now() - interval '6 days')")},
                                                  settlement_delay_days=5))["status"] == 200
    # The timer's entry point: a run with nothing to settle writes no audit row.
    n1 = audit_count("settlement.run")
    assert json.loads(psql(f"SELECT tipcast_settle_run({cutoff})"))["creators"] == 0
    assert audit_count("settlement.run") == n1


def test_refund_before_settlement_credited_after_it():
    """A refund accepted before the settlement and credited after it: pending
    keeps its creator part until the credit, then ends at 0."""
    start, cutoff = past_window()
    c = uid("c")
    oid = uid("o")
    add_order(oid, uid("u"), c, 1000, fee=200, created_at=start)
    f1, f2 = uid("f"), uid("f")
    call("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": f1, "amount": 100, "reason": "x"}))
    credit_refund(f1)
    call("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": f2, "amount": 300, "reason": "x"}))
    check_invariant(c)
    call("tipcast_api_settlement_run", ctx(body={"cutoff": cutoff_text(cutoff)}))
    b = check_invariant(c)
    # 800 net, minus 80 (credited) and 240 (pending): 480 available, 240 pending.
    assert (b["pending"], b["available"]) == (240, 480)
    credit_refund(f2)
    b = check_invariant(c)
    assert (b["pending"], b["available"]) == (0, 480)


def test_settlement_racing_refunds_keeps_the_invariant():
    """A settlement run at the same time as refunds of the orders it settles:
    each refund is counted either by the run (settled = false) or after it
    (settled = true), never both, never neither: once every refund is
    credited, pending is 0 and available is the net minus the creator parts."""
    start, cutoff = past_window()
    c = uid("c")
    oids = [uid("o") for _ in range(30)]
    run_sql("BEGIN;\n" + "".join(order_sql(o, uid("u"), c, 1000 + i, 100, 0, f"{start} + interval '{i} minutes'")
                                  for i, o in enumerate(oids)) + "COMMIT;\n")
    fids = [uid("f") for _ in oids]
    calls = [("tipcast_api_order_refund", ctx(path={"id": o}, body={"refund_id": f, "amount": 333, "reason": "x"}))
             for o, f in zip(oids, fids)]
    calls.insert(15, ("tipcast_api_settlement_run", ctx(body={"cutoff": cutoff_text(cutoff)})))
    results = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def one(i):
        barrier.wait()
        results[i] = call(*calls[i])

    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(r and r["status"] in (200, 201) for r in results), results
    check_invariant(c)
    for f in fids:
        credit_refund(f)
    b = check_invariant(c)
    net = sum(1000 + i - 100 for i in range(30))
    reversed_ = int(psql(f"SELECT sum(creator_net) FROM refunds WHERE creator = '{c}'"))
    assert (b["pending"], b["available"]) == (0, net - reversed_)


def test_withdrawal_flow_and_refusals():
    start, cutoff = past_window()
    c = uid("c")
    add_order(uid("o"), uid("u"), c, 10000, created_at=start)
    call("tipcast_api_settlement_run", ctx(body={"cutoff": cutoff_text(cutoff)}))
    me = dict(actor=c, role="creator")
    refused("tipcast_api_withdrawal_request", ctx(**me, body={"amount": 999, "request_id": "w1"}), "below_minimum")
    refused("tipcast_api_withdrawal_request", ctx(**me, body={"amount": 10001, "request_id": "w1"}),
            "insufficient_available")
    refused("tipcast_api_withdrawal_request", ctx(**me, body={"amount": 0, "request_id": "w1"}), "bad_field", "amount")
    n0 = audit_count("withdrawal.request")
    w = call("tipcast_api_withdrawal_request", ctx(**me, webhooks=True, body={"amount": 6000, "request_id": "w1"}))
    assert w["status"] == 201
    wd = w["body"]
    assert set(wd) == {"id", "creator", "amount", "state", "payout_reference", "reason", "requested_at",
                       "decided_by", "decided_at", "paid_at"}
    assert wd["state"] == "requested" and wd["creator"] == c and wd["amount"] == 6000
    assert audit_count("withdrawal.request") == n0 + 1
    assert call("tipcast_api_withdrawal_request", ctx(**me, body={"amount": 6000, "request_id": "w1"})) == \
        dict(w, status=200)
    refused("tipcast_api_withdrawal_request", ctx(**me, body={"amount": 5000, "request_id": "w1"}),
            "idempotency_conflict")
    b = check_invariant(c)
    assert (b["available"], b["frozen"], b["withdrawable"]) == (10000, 6000, 4000)
    refused("tipcast_api_withdrawal_request", ctx(**me, body={"amount": 4001, "request_id": "w2"}),
            "insufficient_available")
    w2 = call("tipcast_api_withdrawal_request", ctx(**me, body={"amount": 4000, "request_id": "w2"}))["body"]
    wid, wid2 = str(wd["id"]), str(w2["id"])
    # Transitions.
    refused("tipcast_api_withdrawal_pay", ctx(path={"id": wid}, body={"payout_reference": "bank-1"}), "invalid_state")
    a = call("tipcast_api_withdrawal_approve", ctx(path={"id": wid}, webhooks=True))["body"]
    assert a["state"] == "approved" and a["decided_by"] == "fin1" and a["decided_at"]
    e = refused("tipcast_api_withdrawal_approve", ctx(path={"id": wid}), "invalid_state")
    assert "approved" in e.detail
    refused("tipcast_api_withdrawal_pay", ctx(path={"id": wid}, body={}), "bad_field", "payout_reference")
    p = call("tipcast_api_withdrawal_pay", ctx(path={"id": wid}, webhooks=True, body={"payout_reference": "bank-1"}))
    assert p["body"]["state"] == "paid" and p["body"]["payout_reference"] == "bank-1" and p["body"]["paid_at"]
    refused("tipcast_api_withdrawal_reject", ctx(path={"id": wid}, body={"reason": "late"}), "invalid_state")
    assert psql(f"SELECT string_agg(account || '=' || delta, ',' ORDER BY account) FROM ledger "
                f"WHERE movement_id = 'withdrawal:{wid}'") == f"creator:{c}=-6000,payout=6000"
    b = check_invariant(c)
    assert (b["available"], b["frozen"], b["paid_out"], b["withdrawable"]) == (4000, 4000, 6000, 0)
    refused("tipcast_api_withdrawal_reject", ctx(path={"id": wid2}, body={}), "bad_field", "reason")
    rj = call("tipcast_api_withdrawal_reject", ctx(path={"id": wid2}, webhooks=True, body={"reason": "kyc"}))["body"]
    assert rj["state"] == "rejected" and rj["reason"] == "kyc"
    b = check_invariant(c)
    assert (b["available"], b["frozen"], b["withdrawable"]) == (4000, 0, 4000)
    refused("tipcast_api_withdrawal_approve", ctx(path={"id": wid2}), "invalid_state")
    refused("tipcast_api_withdrawal_approve", ctx(path={"id": "999999999999"}), "not_found")
    for action, target in (("withdrawal.approve", wid), ("withdrawal.pay", wid), ("withdrawal.reject", wid2)):
        rows = audit_rows(action, target)
        assert len(rows) == 1 and rows[0]["before"]["state"] != rows[0]["after"]["state"]
    events = psql(f"SELECT string_agg(event, ',' ORDER BY id) FROM webhook_outbox "
                  f"WHERE payload->'data'->>'creator' = '{c}'")
    assert events == "withdrawal.requested,withdrawal.approved,withdrawal.paid,withdrawal.rejected"
    # Listing: a creator sees only its own, whatever ?creator= says.
    other = uid("c")
    mine = call("tipcast_api_withdrawals_list", ctx(**me, query={"creator": other}))["body"]["items"]
    assert [x["id"] for x in mine] == [w2["id"], wd["id"]]
    page = call("tipcast_api_withdrawals_list", ctx(query={"creator": c, "limit": "1"}))["body"]
    assert [x["id"] for x in page["items"]] == [w2["id"]] and page["next"]
    page2 = call("tipcast_api_withdrawals_list", ctx(query={"creator": c, "limit": "1", "after": page["next"]}))["body"]
    assert [x["id"] for x in page2["items"]] == [wd["id"]] and page2["next"] is None
    assert [x["id"] for x in call("tipcast_api_withdrawals_list", ctx(query={"creator": c, "state": "paid"}))[
        "body"]["items"]] == [wd["id"]]
    refused("tipcast_api_creator_balance", ctx(actor=other, role="creator", path={"id": c}), "forbidden")


def test_50_concurrent_withdrawals_never_freeze_more_than_available():
    start, cutoff = past_window()
    c = uid("c")
    add_order(uid("o"), uid("u"), c, 23456, created_at=start)
    call("tipcast_api_settlement_run", ctx(body={"cutoff": cutoff_text(cutoff)}))
    res = threads_call("tipcast_api_withdrawal_request", [
        ctx(actor=c, role="creator", body={"amount": 1000 + 37 * i, "request_id": f"w{i}"}) for i in range(50)])
    ok = [r for r in res if isinstance(r, dict)]
    bad = [r for r in res if isinstance(r, Refused)]
    assert all(r.code == "insufficient_available" for r in bad), bad
    frozen = sum(r["body"]["amount"] for r in ok)
    b = check_invariant(c)
    assert b["frozen"] == frozen <= b["available"] == 23456
    assert len(ok) >= 10 and bad
    assert int(psql(f"SELECT count(*) FROM withdrawals WHERE creator = '{c}'")) == len(ok)


def test_concurrent_retries_of_one_withdrawal_freeze_once():
    start, cutoff = past_window()
    c = uid("c")
    add_order(uid("o"), uid("u"), c, 5000, created_at=start)
    call("tipcast_api_settlement_run", ctx(body={"cutoff": cutoff_text(cutoff)}))
    res = threads_call("tipcast_api_withdrawal_request", [
        ctx(actor=c, role="creator", body={"amount": 3000, "request_id": "same"}) for _ in range(10)])
    assert sorted(r["status"] for r in res) == [200] * 9 + [201], res
    assert len({r["body"]["id"] for r in res}) == 1
    assert check_invariant(c)["frozen"] == 3000
    assert audit_count("withdrawal.request", str(res[0]["body"]["id"])) == 1


def test_refund_of_settled_order_after_payout_is_a_debt_recovered_later():
    start, cutoff = past_window()
    c = uid("c")
    sender = uid("u")
    oid = uid("o")
    add_order(oid, sender, c, 5000, fee=1000, created_at=start)
    call("tipcast_api_settlement_run", ctx(body={"cutoff": cutoff_text(cutoff)}))
    w = call("tipcast_api_withdrawal_request", ctx(actor=c, role="creator",
                                                   body={"amount": 4000, "request_id": "all"}))["body"]
    call("tipcast_api_withdrawal_approve", ctx(path={"id": str(w["id"])}))
    call("tipcast_api_withdrawal_pay", ctx(path={"id": str(w["id"])}, body={"payout_reference": "b"}))
    assert check_invariant(c)["available"] == 0
    fid = uid("f")
    r = call("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": fid, "reason": "chargeback"}))
    assert r["body"]["refund"]["creator_net"] == 4000
    assert psql(f"SELECT settled FROM refunds WHERE id = '{fid}'") == "t"
    credit_refund(fid)
    b = check_invariant(c)
    assert (b["available"], b["debt"], b["withdrawable"], b["paid_out"]) == (-4000, 4000, 0, 4000)
    refused("tipcast_api_withdrawal_request", ctx(actor=c, role="creator", body={"amount": 1000, "request_id": "x"}),
            "insufficient_available")
    # Later earnings settle into the debt first.
    start2 = f"{cutoff} + interval '1 hour'"
    add_order(uid("o"), uid("u"), c, 6000, created_at=start2)
    call("tipcast_api_settlement_run", ctx(body={"cutoff": cutoff_text(f"{start2} + interval '1 hour'")}))
    b = check_invariant(c)
    assert (b["available"], b["debt"], b["withdrawable"], b["pending"]) == (2000, 0, 2000, 0)
    assert psql(f"SELECT sum(delta) FROM ledger WHERE account = 'user:{sender}'") == "0"


def test_pay_refused_when_refunds_left_less_available():
    start, cutoff = past_window()
    c = uid("c")
    oid = uid("o")
    add_order(oid, uid("u"), c, 3000, created_at=start)
    call("tipcast_api_settlement_run", ctx(body={"cutoff": cutoff_text(cutoff)}))
    w = call("tipcast_api_withdrawal_request", ctx(actor=c, role="creator",
                                                   body={"amount": 2000, "request_id": "a"}))["body"]
    call("tipcast_api_withdrawal_approve", ctx(path={"id": str(w["id"])}))
    fid = uid("f")
    call("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": fid, "amount": 1500, "reason": "x"}))
    credit_refund(fid)
    refused("tipcast_api_withdrawal_pay", ctx(path={"id": str(w["id"])}, body={"payout_reference": "b"}),
            "insufficient_available")
    call("tipcast_api_withdrawal_reject", ctx(path={"id": str(w["id"])}, body={"reason": "refunds"}))
    b = check_invariant(c)
    assert (b["available"], b["frozen"]) == (1500, 0)


# ---- statements ---------------------------------------------------------------------------------

def test_user_transactions_income_profit_audit_and_alerts():
    u, c = uid("u"), uid("c")
    oids = [uid("o") for _ in range(5)]
    for i, oid in enumerate(oids):
        add_order(oid, u, c, 100 + i, fee=10, created_at=f"now() - interval '{5 - i} minutes'")
    page1 = call("tipcast_api_user_transactions", ctx(path={"id": u}, query={"limit": "3"}))["body"]
    assert [x["movement_id"] for x in page1["items"]] == oids[::-1][:3]
    assert set(page1["items"][0]) == {"movement_id", "kind", "delta", "note", "created_at"}
    assert page1["items"][0]["delta"] == -104 and page1["next"]
    page2 = call("tipcast_api_user_transactions", ctx(path={"id": u}, query={"limit": "3",
                                                                           "after": page1["next"]}))["body"]
    assert [x["movement_id"] for x in page2["items"]] == oids[::-1][3:] and page2["next"] is None
    assert call("tipcast_api_user_transactions", ctx(actor=u, role="viewer", path={"id": u}))["status"] == 200
    refused("tipcast_api_user_transactions", ctx(actor="someone", role="viewer", path={"id": u}), "forbidden")
    # Income, newest first, in pages.
    got, after = [], None
    while True:
        q = {"limit": "2"}
        if after:
            q["after"] = after
        p = call("tipcast_api_creator_income", ctx(actor=c, role="creator", path={"id": c}, query=q))["body"]
        got += p["items"]
        after = p["next"]
        if not after:
            break
    assert [x["order_id"] for x in got] == oids[::-1]
    assert set(got[0]) == {"order_id", "kind", "sender", "amount", "platform_fee", "agency_share", "creator_net",
                           "refunded", "state", "created_at", "settled"}
    assert got[0]["creator_net"] == 94 and got[0]["settled"] is False
    # Profit: today's row counts these orders.
    today = psql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
    prof = call("tipcast_api_platform_profit", ctx(query={"from": today, "to": today}))["body"]["items"]
    assert len(prof) == 1 and prof[0]["day"] == today
    assert set(prof[0]) == {"day", "gross", "platform_fee", "agency_share", "creator_net", "refunded_fee",
                            "recharged_coins", "orders"}
    assert prof[0]["orders"] >= 5 and prof[0]["gross"] >= 510
    assert prof[0]["gross"] == prof[0]["platform_fee"] + prof[0]["agency_share"] + prof[0]["creator_net"]
    assert len(call("tipcast_api_platform_profit", ctx())["body"]["items"]) == 30
    refused("tipcast_api_platform_profit", ctx(query={"from": "2020-01-01", "to": "2026-01-01"}), "bad_field", "from")
    # Audit with filters, in pages.
    pid = uid("p")
    for coins in (1, 2, 3):
        call("tipcast_api_package_put", ctx(actor="aud_" + pid, path={"id": pid},
                                            body={"currency": "USD", "amount_minor": 1, "coins": coins}))
    a1 = call("tipcast_api_audit_list", ctx(role="auditor", query={"target": pid, "limit": "2"}))["body"]
    assert [x["after"]["coins"] for x in a1["items"]] == [3, 2] and a1["next"]
    a2 = call("tipcast_api_audit_list", ctx(role="auditor", query={"target": pid, "limit": "2",
                                                                   "after": a1["next"]}))["body"]
    assert [x["after"]["coins"] for x in a2["items"]] == [1] and a2["next"] is None
    assert set(a2["items"][0]) == {"id", "at", "actor", "role", "action", "target", "before", "after", "request_id",
                                   "client_addr", "outcome"}
    assert a2["items"][0]["request_id"].startswith("req") and a2["items"][0]["client_addr"] == "127.0.0.1"
    by_actor = call("tipcast_api_audit_list", ctx(query={"actor": "aud_" + pid, "action": "package.put"}))["body"]
    assert len(by_actor["items"]) == 3
    assert call("tipcast_api_audit_list", ctx(query={"target": pid, "from": "2000-01-01",
                                                     "to": "2000-01-02"}))["body"]["items"] == []
    # Alerts.
    rc = new_recharge(700)
    call("tipcast_api_payment_callback", cb(rc, uid("pay"), amount=1))
    al = call("tipcast_api_alerts_list", ctx(query={"kind": "recharge_amount_mismatch", "limit": "1"}))["body"]
    assert al["items"][0]["subject"] == rc["id"] and al["items"][0]["severity"] == "critical"
    assert set(al["items"][0]) == {"id", "at", "kind", "severity", "subject", "detail"}


def test_wallet_redrive_lists_credits_not_yet_landed():
    rc = new_recharge(300)
    call("tipcast_api_payment_callback", cb(rc, uid("pay")))
    oid, fid = uid("o"), uid("f")
    add_order(oid, uid("u"), uid("c"), 100)
    call("tipcast_api_order_refund", ctx(path={"id": oid}, body={"refund_id": fid, "reason": "x"}))

    def due(seconds):
        out = psql(f"SELECT coalesce(jsonb_agg(w), '[]') FROM tipcast_wallet_redrive({seconds}, 100000) w")
        return {w["ref"]: w for w in json.loads(out)}

    assert rc["id"] not in due(3600) and fid not in due(3600)
    time.sleep(1.1)
    d = due(1)
    assert d[rc["id"]] == {"kind": "recharge", "user": rc["user"], "amount": 300, "ref": rc["id"]}
    assert d[fid]["kind"] == "refund" and d[fid]["amount"] == 100 and "order_ts_ms" in d[fid]
    credit_refund(fid)
    psql(f"UPDATE recharges SET state = 'credited', credited_at = now() WHERE id = '{rc['id']}'")
    d = due(0)
    assert rc["id"] not in d and fid not in d
