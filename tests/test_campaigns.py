"""Crowdfunding campaigns with escrow (docs/settlement.md, "Campaigns";
docs/protocol.md, `pledge`; docs/admin-api.md, "Campaigns"), end to end on a
real tipcastd, Redis and PostgreSQL.

- The story: a creator creates a campaign, operations approve it, viewers
  pledge over the WebSocket (idempotent, tiers with stock, bad input moves
  nothing), the room sees progress and the creator's update, the deadline
  seals it (no pledge after), the target is reached and the escrow goes to
  the creator minus campaign-fee-bp; every movement sums to zero.
- A flexible campaign below its target pays out what it raised.
- The acceptance run: an all-or-nothing campaign that misses its target is
  refunded while tipcastd is SIGKILLed during the refunds, 20 rounds; every
  backer gets every pledge back exactly once, to the coin.
- A surge of pledges raises a campaign.pledge_surge alert.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest

import admin
import helpers
from conftest import PG, REDIS_PORT, WALLET_SHARDS, free_port, mint_token
from helpers import shard_of, wait_for
from resp import Redis
from test_metrics import scrape, val
from wsclient import SUBPROTOCOL_JSON, unique

FEE_BP = 750
SETTINGS = dict(campaign_interval_ms=150, campaign_fee_bp=FEE_BP, max_msgs_per_s=10000, max_burst=10000)
# The Redis and PostgreSQL the helpers below read: the test services, or a
# world of the reconciliation test's own.
WORLD = {"pg": PG, "redis_port": int(REDIS_PORT)}


def psql(sql):
    return helpers.psql(sql, WORLD["pg"])


def wallet(uid):
    r = Redis(port=WORLD["redis_port"])
    try:
        v = r("GET", f"tc:{{w:{shard_of(uid)}}}:bal:{uid}")
    finally:
        r.close()
    return int(v) if v is not None else 0


def ledger_sum(account):
    return int(psql(f"SELECT coalesce(sum(delta), 0) FROM ledger WHERE account = '{account}'"))


def unbalanced_movements():
    return int(psql("SELECT count(*) FROM (SELECT movement_id FROM ledger GROUP BY movement_id "
                    "HAVING sum(delta) <> 0) x"))


def reconcile():
    """tipcast-admin reconcile --json over WORLD: (exit status, report)."""
    binary = os.path.join(os.path.dirname(os.environ["TIPCAST_TEST_BIN"]), "tipcast-admin")
    out = subprocess.run([binary, f"--redis-port={WORLD['redis_port']}", f"--pg={WORLD['pg']}",
                          f"--wallet-shards={WALLET_SHARDS}", "reconcile", "--json", "--no-store"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 1), (out.returncode, out.stderr)
    return out.returncode, json.loads(out.stdout)


def ws(srv, user, role="viewer"):
    c = srv.connect(subprotocol=SUBPROTOCOL_JSON, token=mint_token(user, role))
    c.expect("welcome")
    return c


def credit(c_admin, user, amount):
    r = c_admin.request({"type": "credit", "id": unique("cr"), "user": user, "amount": amount})
    assert r["type"] == "ack", r


def deadline_in(seconds):
    t = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create(api, creator, target, seconds, mode="all_or_nothing", tiers=None):
    st, _, c = api.post("/api/v1/campaigns", mint_token(creator, "creator"),
                        {"request_id": unique("cq"), "title": "A new album", "description": "ten songs",
                         "target": target, "deadline": deadline_in(seconds), "mode": mode,
                         "tiers": tiers or []})
    assert st == 201, (st, c)
    assert c["state"] == "review" and c["creator"] == creator, c
    return c


def approve(api, cid):
    st, _, c = api.post(f"/api/v1/campaigns/{cid}/approve", mint_token(unique("ops"), "operations"), {})
    assert st == 200 and c["state"] == "approved", (st, c)


def state(cid):
    return psql(f"SELECT state FROM campaigns WHERE id = {cid}")


def wait_state(cid, want, timeout=30):
    wait_for(lambda: state(cid) in want, timeout=timeout, what=f"campaign {cid} in {want} (is {state(cid)})")
    return state(cid)


def pledge(c, cid, amount, tier=None, rid=None):
    msg = {"type": "pledge", "id": rid or unique("pl"), "campaign": cid, "amount": amount}
    if tier is not None:
        msg["tier"] = tier
    return c.request(msg)


def test_campaign_story(server):
    srv, api = admin.start(server, **SETTINGS)
    wait_for(lambda: srv.http_get("/readyz")[0] == 200, what="/readyz")
    creator = unique("cr")
    # Three backers on three wallet shards (tier 1 has one reward per shard).
    backers, shards = [], set()
    while len(backers) < 3:
        b = unique("b")
        if shard_of(b) not in shards:
            shards.add(shard_of(b))
            backers.append(b)
    adm = ws(srv, unique("adm"), "admin")
    for b in backers:
        credit(adm, b, 10000)
    conns = {b: ws(srv, b) for b in backers}
    watcher = ws(srv, unique("w"))
    watcher.join(creator)

    # Tier 1: one reward per wallet shard, so one per backer (a backer's
    # pledges are all on its own shard); tier 2 unlimited.
    camp = create(api, creator, target=1500, seconds=6,
                  tiers=[{"min_amount": 100, "title": "signed CD", "stock": WALLET_SHARDS},
                         {"min_amount": 500, "title": "dinner"}])
    cid = camp["id"]
    assert [t["stock"] for t in camp["tiers"]] == [WALLET_SHARDS, None], camp
    b0 = conns[backers[0]]
    # Not open before review: nothing moves.
    r = pledge(b0, cid, 100)
    assert r["type"] == "error" and r["code"] == "campaign_not_found", r
    # A viewer cannot approve; operations can.
    st, _, e = api.post(f"/api/v1/campaigns/{cid}/approve", mint_token(backers[0], "viewer"), {})
    assert st == 403, (st, e)
    approve(api, cid)
    wait_state(cid, {"open"})

    r = pledge(b0, cid, 300, tier=1, rid="p-1")
    assert r["type"] == "ack" and r["amount"] == 300 and r["balance"] == 9700, r
    order1 = r["order"]
    again = pledge(b0, cid, 300, tier=1, rid="p-1")
    assert again["type"] == "ack" and again["order"] == order1 and again["replayed"] is True, again
    r = pledge(b0, cid, 301, tier=1, rid="p-1")
    assert r["type"] == "error" and r["code"] == "idempotency_conflict", r
    r = pledge(b0, cid, 100, tier=1)
    assert r["type"] == "error" and r["code"] == "tier_sold_out", r
    r = pledge(b0, cid, 499, tier=2)
    assert r["type"] == "error" and r["code"] == "below_tier_minimum" and r["minimum"] == 500, r
    r = pledge(b0, cid, 100, tier=3)
    assert r["type"] == "error" and r["code"] == "bad_field" and r["field"] == "tier", r
    r = pledge(b0, cid, 100000)
    assert r["type"] == "error" and r["code"] == "insufficient_balance", r
    r = b0.request({"type": "pledge", "id": unique("x"), "campaign": "one", "amount": 5})
    assert r["type"] == "error" and r["code"] == "bad_field" and r["field"] == "campaign", r
    r = pledge(b0, 999999999, 100)
    assert r["type"] == "error" and r["code"] == "campaign_not_found", r
    r = pledge(ws(srv, creator, "creator"), cid, 100)
    assert r["type"] == "error" and r["code"] == "forbidden", r
    assert wallet(backers[0]) == 9700

    r = pledge(conns[backers[1]], cid, 700, tier=2)
    assert r["type"] == "ack", r
    r = pledge(conns[backers[2]], cid, 250, tier=1)
    assert r["type"] == "ack", r
    r = pledge(conns[backers[2]], cid, 250)
    assert r["type"] == "ack", r
    total = 300 + 700 + 250 + 250

    # Progress reaches the room, coalesced: its latest says it all.
    ev = watcher.expect("event", timeout=15, kind="campaign_progress", pledged=total)
    assert ev["campaign"] == cid and ev["backers"] == 3 and ev["target"] == 1500, ev

    st, _, u = api.post(f"/api/v1/campaigns/{cid}/updates", mint_token(creator, "creator"),
                        {"request_id": unique("u"), "title": "Recording", "text": "day one in the studio"})
    assert st == 201, (st, u)
    st, _, e = api.post(f"/api/v1/campaigns/{cid}/updates", mint_token(backers[0], "creator"),
                        {"request_id": unique("u"), "title": "x", "text": "y"})
    assert st == 404, (st, e)
    ev = watcher.expect("event", timeout=15, kind="campaign_update")
    assert ev["campaign"] == cid and ev["text"] == "day one in the studio", ev

    # The deadline: sealed, then decided.
    wait_state(cid, {"closing", "succeeded"}, timeout=20)
    r = pledge(conns[backers[1]], cid, 100)
    assert r["type"] == "error" and r["code"] == "campaign_closed", r
    wait_state(cid, {"succeeded"})
    fee = total * FEE_BP // 10000
    st, _, c = api.get(f"/api/v1/campaigns/{cid}", mint_token(backers[0], "viewer"))
    assert st == 200 and c["pledged"] == total and c["platform_fee"] == fee and c["creator_net"] == total - fee, c
    assert c["tiers"][0]["taken"] == 2 and c["tiers"][1]["taken"] == 1, c
    wait_for(lambda: ledger_sum(f"creator:{creator}") == total - fee, what="the payout in the ledger")
    assert ledger_sum(f"escrow:{cid}") == 0
    assert int(psql(f"SELECT coalesce(sum(delta), 0) FROM ledger WHERE movement_id = 'campaign:{cid}' "
                    "AND account = 'platform'")) == fee
    assert psql(f"SELECT available FROM creator_balances WHERE creator = '{creator}'") == str(total - fee)
    for b in backers:
        assert ledger_sum(f"user:{b}") == wallet(b), b
    assert wallet(backers[0]) == 9700 and wallet(backers[1]) == 9300 and wallet(backers[2]) == 9500
    assert unbalanced_movements() == 0
    st, _, p = api.get(f"/api/v1/campaigns/{cid}/pledges", mint_token(creator, "creator"))
    assert st == 200 and len(p["items"]) == 4 and {i["state"] for i in p["items"]} == {"paid"}, p
    ev = watcher.expect("event", timeout=15, kind="campaign_progress", state="succeeded")
    assert ev["pledged"] == total, ev
    # The node (the only one) ran the job, opened and sealed the campaign,
    # and published its events.
    _, m = scrape(srv)
    assert val(m, "tipcast_campaign_job_runs_total", result="ok") >= 2, m
    assert val(m, "tipcast_campaign_steps_total", step="opened") >= 1
    assert val(m, "tipcast_campaign_steps_total", step="sealed") >= 1
    assert val(m, "tipcast_campaign_events_total") >= 2  # progress, the result
    assert ("tipcast_campaign_refund_credits_total", frozenset({("result", "failed")})) in m


def test_flexible_below_target_pays_out(server):
    srv, api = admin.start(server, **SETTINGS)
    wait_for(lambda: srv.http_get("/readyz")[0] == 200, what="/readyz")
    creator, b = unique("cr"), unique("b")
    adm = ws(srv, unique("adm"), "admin")
    credit(adm, b, 1000)
    c = ws(srv, b)
    cid = create(api, creator, target=100000, seconds=4, mode="flexible")["id"]
    approve(api, cid)
    wait_state(cid, {"open"})
    assert pledge(c, cid, 400)["type"] == "ack"
    wait_state(cid, {"succeeded"}, timeout=20)
    fee = 400 * FEE_BP // 10000
    wait_for(lambda: ledger_sum(f"creator:{creator}") == 400 - fee, what="the payout")
    assert ledger_sum(f"escrow:{cid}") == 0 and wallet(b) == 600 == ledger_sum(f"user:{b}")


def test_admin_input(server):
    srv, api = admin.start(server, **SETTINGS)
    creator = unique("cr")
    tok = mint_token(creator, "creator")
    base = {"request_id": unique("cq"), "title": "t", "target": 10, "deadline": deadline_in(60), "mode": "flexible"}
    for bad, field in [({"mode": "sometimes"}, "mode"), ({"target": 0}, "target"),
                       ({"deadline": "tomorrow"}, "deadline"), ({"deadline": deadline_in(-5)}, "deadline"),
                       ({"tiers": [{"min_amount": 5, "title": "a"}, {"min_amount": 5, "title": "b"}]}, "tiers")]:
        st, _, e = api.post("/api/v1/campaigns", tok, dict(base, request_id=unique("cq"), **bad))
        assert st == 400 and e["error"]["code"] == "bad_field" and e["error"]["field"] == field, (bad, st, e)
    st, _, e = api.post("/api/v1/campaigns", tok, dict(base, creator="someone-else"))
    assert st == 403, (st, e)
    st, _, c = api.post("/api/v1/campaigns", tok, base)
    assert st == 201, (st, c)
    st, _, c2 = api.post("/api/v1/campaigns", tok, base)
    assert st == 200 and c2["id"] == c["id"], (st, c2)
    st, _, e = api.post("/api/v1/campaigns", tok, dict(base, target=11))
    assert st == 409 and e["error"]["code"] == "idempotency_conflict", (st, e)
    # Rejected: never opens; a second review is invalid_state.
    ops = mint_token(unique("ops"), "operations")
    st, _, r = api.post(f"/api/v1/campaigns/{c['id']}/reject", ops, {"reason": "no"})
    assert st == 200 and r["state"] == "rejected", (st, r)
    st, _, e = api.post(f"/api/v1/campaigns/{c['id']}/approve", ops, {})
    assert st == 409 and e["error"]["code"] == "invalid_state", (st, e)
    # Another viewer does not see a rejected campaign.
    st, _, e = api.get(f"/api/v1/campaigns/{c['id']}", mint_token(unique("v"), "viewer"))
    assert st == 404, (st, e)
    st, _, lst = api.get("/api/v1/campaigns", tok)
    assert st == 200 and [x["id"] for x in lst["items"]] == [c["id"]], lst


def test_pledge_surge_raises_an_alert(server):
    srv, api = admin.start(server, campaign_surge_pledges=5, **SETTINGS)
    wait_for(lambda: srv.http_get("/readyz")[0] == 200, what="/readyz")
    creator, b = unique("cr"), unique("b")
    adm = ws(srv, unique("adm"), "admin")
    credit(adm, b, 1000)
    c = ws(srv, b)
    cid = create(api, creator, target=100, seconds=60)["id"]
    approve(api, cid)
    wait_state(cid, {"open"})
    for _ in range(6):
        assert pledge(c, cid, 10)["type"] == "ack"
    wait_for(lambda: psql(f"SELECT count(*) FROM alerts WHERE kind = 'campaign.pledge_surge' "
                          f"AND subject = '{cid}'") == "1", what="the surge alert")


def test_missed_target_refunds_exactly_once_across_sigkills(server):
    """The acceptance run: 20 rounds of an all-or-nothing campaign that
    misses its target, tipcastd SIGKILLed while it refunds."""
    # 8 refunds per 150 ms run: 120 pledges take about 2 s to refund, and
    # the kill lands somewhere in them.
    slow = dict(SETTINGS, campaign_refunds_per_tick=8)
    # Alerts of other tests (test_ledger_split raises external_twice on
    # purpose, and the database outlives a test run) are not this test's.
    since = psql("SELECT coalesce(max(id), 0) FROM alerts")
    srv, api = admin.start(server, **slow)
    rng = random.Random(14)
    killed_mid = 0
    for rnd in range(20):
        wait_for(lambda: srv.http_get("/readyz")[0] == 200, what="/readyz")
        creator = unique("cr")
        backers = [unique("b") for _ in range(4)]
        adm = ws(srv, unique("adm"), "admin")
        for b in backers:
            credit(adm, b, 100000)
        cid = create(api, creator, target=10 ** 9, seconds=3)["id"]
        approve(api, cid)
        wait_state(cid, {"open"})
        pledged = {b: 0 for b in backers}
        for b in backers:
            c = ws(srv, b)
            msgs = [{"type": "pledge", "id": f"r{rnd}-{i}", "campaign": cid, "amount": 1 + i} for i in range(30)]
            c.send_many(msgs)
            for m in msgs:
                r = c.expect(None, id=m["id"], timeout=10)
                assert r["type"] == "ack", r
                pledged[b] += m["amount"]
            c.close()
        adm.close()
        n = len(backers) * 30
        # Kill while refunding: once the first refunds are in the ledger (or
        # a moment before or after), at a random point.
        wait_state(cid, {"refunding", "refunded"}, timeout=30)
        time.sleep(rng.random() * 1.5)
        srv.signal(signal.SIGKILL)
        srv.proc.wait(10)
        srv.killed = True
        if state(cid) == "refunding":
            killed_mid += 1
        srv, api = admin.start(server, **slow)
        wait_state(cid, {"refunded"}, timeout=60)
        for b in backers:
            wait_for(lambda: ledger_sum(f"user:{b}") == wallet(b), what=f"{b}'s ledger")
            assert wallet(b) == 100000, (rnd, b, wallet(b), pledged[b])
            assert ledger_sum(f"user:{b}") == 100000
        assert ledger_sum(f"escrow:{cid}") == 0
        assert psql(f"SELECT count(*) FROM campaign_pledges WHERE campaign_id = {cid} AND state = 'refunded'") \
            == str(n)
        # Exactly once: one campaign_refund movement per pledge, no more.
        assert psql(f"SELECT count(DISTINCT movement_id) || ' ' || count(*) FROM ledger "
                    f"WHERE kind = 'campaign_refund' AND account = 'escrow:{cid}'") == f"{n} {n}"
        assert psql(f"SELECT refunded FROM campaigns WHERE id = {cid}") == str(sum(pledged.values()))
    assert unbalanced_movements() == 0
    assert psql(f"SELECT count(*) FROM alerts WHERE kind = 'ledger.external_twice' AND id > {since}") == "0"
    # Most rounds must really have been cut in the middle of their refunds.
    assert killed_mid >= 10, killed_mid


@pytest.fixture
def world(tmp_path):
    """A redis-server and a database of this test's own, so that
    reconciliation sees nothing but what the test did."""
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                              "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = "tipcast_camp_" + unique("d").replace("-", "_").lower()[-12:]
    base = PG.replace("dbname=tipcast", "dbname=postgres")
    subprocess.run(["psql", base, "-X", "-qc", f"CREATE DATABASE {db}"], check=True, capture_output=True)
    saved = dict(WORLD)
    WORLD.update(pg=PG.replace("dbname=tipcast", f"dbname={db}"), redis_port=port)

    def up():
        try:
            r = Redis(port=port)
            r("PING")
            r.close()
            return True
        except OSError:
            return False
    wait_for(up, 10, "redis-server")
    yield WORLD
    WORLD.update(saved)
    redis.terminate()
    redis.wait(10)
    subprocess.run(["psql", base, "-X", "-qc", f"DROP DATABASE {db} WITH (FORCE)"], capture_output=True)
    shutil.rmtree(tmp_path / "appendonlydir", ignore_errors=True)


def test_reconciliation_is_clean_with_campaigns(server, world):
    """A campaign paid out and one refunded, in a world of their own:
    tipcast-admin reconcile finds nothing (wallets, accounts with the payout,
    escrow accounts)."""
    srv, api = admin.start(server, pg=world["pg"], redis_port=world["redis_port"], **SETTINGS)
    wait_for(lambda: srv.http_get("/readyz")[0] == 200, what="/readyz")
    backers = [unique("b") for _ in range(3)]
    adm = ws(srv, unique("adm"), "admin")
    for b in backers:
        credit(adm, b, 5000)
    win = create(api, unique("cr"), target=300, seconds=4)["id"]
    lose = create(api, unique("cr"), target=10 ** 6, seconds=4)["id"]
    approve(api, win)
    approve(api, lose)
    wait_state(win, {"open"})
    wait_state(lose, {"open"})
    for b in backers:
        c = ws(srv, b)
        assert pledge(c, win, 150)["type"] == "ack"
        assert pledge(c, lose, 70)["type"] == "ack"
        c.close()
    # Reconciled while both are open, with pledges in escrow.
    st, rep = reconcile()
    assert st == 0, rep["findings"]
    wait_state(win, {"succeeded"}, timeout=20)
    wait_state(lose, {"refunded"}, timeout=20)
    wait_for(lambda: all(ledger_sum(f"user:{b}") == wallet(b) == 5000 - 150 for b in backers),
             what="every refund in the ledger")
    st, rep = reconcile()
    assert st == 0, rep["findings"]
    assert unbalanced_movements() == 0
