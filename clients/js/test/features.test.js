// The live-room features through the SDK, against a real tipcastd (docs/protocol.md,
// "Room features", "Campaigns", `global_board`): a pledge resent with its id is
// answered replayed and debited once; a goal set by the owner, reached by a
// viewer's gifts (the goal_reached event, the boards' goal); a pinned tip removed
// by a moderator (not by a viewer); the server's combo counters; the global boards.
import assert from "node:assert/strict";
import {after, before, test} from "node:test";

import {GIFTS, PRICES, Server, client, credit, freePort, mintToken, psql, seedRoom, sleep, unique, waitFor,
  waitRoomReady} from "./harness.js";

let srv;
let adminPort;
before(async () => {
  adminPort = await freePort();
  srv = await new Server({"admin-listen": `127.0.0.1:${adminPort}`, "campaign-interval-ms": 200}).start();
});
after(async () => { await srv.stop(); });

async function api(method, path, token, body) {
  const r = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
    method,
    headers: {"authorization": `Bearer ${token}`, "content-type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return {status: r.status, body: await r.json()};
}

// Events of `room` as a member sees them.
async function watch(room) {
  const c = client(srv.url, mintToken(unique("w")));
  const events = [];
  const pk = [];
  c.on("event", (ev) => { if (ev.room === room) events.push(ev); });
  c.on("pk_score", (m) => pk.push(m));
  await c.connect();
  const snap = await c.join(room);
  return {c, events, pk, snap};
}

test("pledge: resent with its id, replayed, debited once; the room hears campaign_progress", async () => {
  const room = unique("camp");
  seedRoom(room);
  const user = unique("v");
  await credit(srv.url, user, 2000);
  const deadline = new Date(Date.now() + 600000).toISOString();
  const created = await api("POST", "/api/v1/campaigns", mintToken(room, "creator"),
    {request_id: unique("cq"), title: "new mic", description: "a better mic", target: 5000, deadline,
      mode: "flexible", tiers: [{min_amount: 100, title: "thanks", stock: 10}]});
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const cid = created.body.id;
  const approved = await api("POST", `/api/v1/campaigns/${cid}/approve`, mintToken(unique("ops"), "operations"), {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  const w = await watch(room);
  const c = client(srv.url, mintToken(user));
  try {
    await c.connect();
    // Open on every wallet shard within a run or two of the campaign job.
    const id = c.newId("pl");
    const ack = await waitFor(async () => {
      try {
        return await c.pledge({campaign: cid, amount: 300, tier: 1, id});
      } catch (e) {
        if (e.code === "campaign_not_found") return null;
        throw e;
      }
    }, {what: "the campaign to open", intervalMs: 100});
    assert.equal(ack.replayed, false);
    assert.equal(ack.amount, 300);
    assert.equal(ack.balance, 1700);
    const again = await c.pledge({campaign: cid, amount: 300, tier: 1, id});
    assert.equal(again.replayed, true);
    assert.equal(again.order, ack.order);
    assert.equal(again.balance, 1700);
    assert.equal(await c.balance(), 1700, "debited once");
    // The same id with another amount is another request.
    await assert.rejects(c.pledge({campaign: cid, amount: 301, tier: 1, id}), {code: "idempotency_conflict"});
    await assert.rejects(c.pledge({campaign: cid, amount: 50, tier: 1}), {code: "below_tier_minimum", minimum: 100});
    await assert.rejects(c.pledge({campaign: 999999999, amount: 10}), {code: "campaign_not_found"});
    const prog = await waitFor(() => w.events.find((e) => e.kind === "campaign_progress" && e.campaign === cid &&
      e.pledged === 300), {what: "campaign_progress with the pledge"});
    assert.equal(prog.backers, 1);
    assert.equal(prog.target, 5000);
    assert.equal(prog.state, "open");
    // The ledger has one debit of the user's wallet (the outbox writes it within moments).
    await waitFor(() => psql(`SELECT count(*) FROM ledger WHERE account = 'user:${user}' AND delta < 0`) !== "0",
      {what: "the pledge in the ledger"});
    await sleep(300);
    assert.equal(psql(`SELECT count(*) || ' ' || sum(delta) FROM ledger WHERE account = 'user:${user}' AND delta < 0`),
      "1 -300", "one ledger debit of the pledge");
  } finally {
    c.close();
    w.c.close();
  }
});

test("goal: set by the owner, reached by a viewer's gifts; joined and the pushes carry it", async () => {
  const room = unique("goal");
  seedRoom(room);
  const user = unique("v");
  await credit(srv.url, user, 5000);
  const owner = client(srv.url, mintToken(room, "creator"));
  const v = client(srv.url, mintToken(user));
  const w = await watch(room);
  const pushes = [];
  w.c.on("leaderboard", (m) => pushes.push(m));
  try {
    await owner.connect();
    await v.connect();
    await waitRoomReady(v, room);
    await assert.rejects(v.goal({room, amount: 1000}), {code: "forbidden"});
    const set = await owner.goal({room, amount: 1000, gift: GIFTS.ROCKET, text: "new mic"});
    assert.equal(set.room, room);
    const ev = await waitFor(() => w.events.find((e) => e.kind === "goal"), {what: "the goal event"});
    assert.equal(ev.seq, set.seq);
    assert.equal(ev.goal_id, `g${set.seq}`);
    assert.equal(ev.target, 1000);
    assert.equal(ev.title, "new mic");
    // A Rose does not count (the goal is of Rockets); two Rockets reach it.
    await v.gift({room, gift: GIFTS.ROSE});
    await v.gift({room, gift: GIFTS.ROCKET});
    const second = await v.gift({room, gift: GIFTS.ROCKET});
    const reached = await waitFor(() => w.events.find((e) => e.kind === "goal_reached"), {what: "goal_reached"});
    assert.equal(reached.by, user);
    assert.equal(reached.order, second.order);
    assert.equal(reached.progress, 2 * PRICES[GIFTS.ROCKET]);
    const giftEv = w.events.find((e) => e.kind === "gift" && e.order === second.order);
    assert.equal(reached.seq, giftEv.seq + 1, "just after its order's event");
    await waitFor(() => pushes.some((m) => m.goal && m.goal.reached && m.goal.progress === 1000),
      {what: "a push with the goal reached"});
    const late = client(srv.url, mintToken(unique("late")));
    await late.connect();
    const j = await late.join(room);
    late.close();
    assert.deepEqual({...j.goal}, {goal_id: `g${set.seq}`, target: 1000, progress: 1000, gift: GIFTS.ROCKET,
      deadline: 0, reached: true, title: "new mic"});
    const cleared = await owner.goalClear(room);
    const gone = await waitFor(() => w.events.find((e) => e.kind === "goal_cleared"), {what: "goal_cleared"});
    assert.equal(gone.seq, cleared.seq);
    assert.equal((await v.leaderboard(room)).goal, undefined);
    await assert.rejects(owner.goalClear(room), {code: "bad_field"});
  } finally {
    owner.close();
    v.close();
    w.c.close();
  }
});

test("pins: a big tip is pinned; a viewer may not unpin, a moderator may", async () => {
  const room = unique("pin");
  seedRoom(room);
  const user = unique("v");
  const mod = unique("mod");
  await credit(srv.url, user, 5000);
  const owner = client(srv.url, mintToken(room, "creator"));
  const v = client(srv.url, mintToken(user));
  const m = client(srv.url, mintToken(mod));
  const w = await watch(room);
  try {
    await owner.connect();
    await v.connect();
    await m.connect();
    await waitRoomReady(v, room);
    const small = await v.tip({room, amount: 999, text: "not pinned"});
    const big = await v.tip({room, amount: 1000, text: "gg!"});
    const pinned = await waitFor(() => w.events.find((e) => e.kind === "pins" && e.change === "pinned"),
      {what: "the pins event"});
    const tipEv = w.events.find((e) => e.kind === "tip" && e.order === big.order);
    const smallEv = w.events.find((e) => e.kind === "tip" && e.order === small.order);
    assert.equal(smallEv.pinned_until, 0);
    assert.ok(tipEv.pinned_until >= tipEv.ts + 59000 && tipEv.pinned_until <= tipEv.ts + 61000, String(tipEv.pinned_until));
    assert.deepEqual(pinned.pins.map((p) => [p.order, p.from, p.amount, p.text]), [[big.order, user, 1000, "gg!"]]);
    const j = await v.join(room);
    assert.deepEqual(j.pins.map((p) => p.order), [big.order]);

    await assert.rejects(m.unpin(room, big.order), {code: "forbidden"});
    await assert.rejects(v.moderatorAdd(room, mod), {code: "forbidden"});
    const mods = await owner.moderatorAdd(room, mod);
    assert.deepEqual(mods.moderators, [mod]);
    const ack = await m.unpin(room, big.order);
    const removed = await waitFor(() => w.events.find((e) => e.kind === "pins" && e.change === "removed"),
      {what: "the removal"});
    assert.equal(removed.seq, ack.seq);
    assert.equal(removed.by, mod);
    assert.deepEqual(removed.pins, []);
    await assert.rejects(m.unpin(room, big.order), {code: "bad_field"});
    assert.deepEqual((await owner.moderatorRemove(room, mod)).moderators, []);
    assert.deepEqual((await v.join(room)).pins, []);
  } finally {
    owner.close();
    v.close();
    m.close();
    w.c.close();
  }
});

test("combos: the server's combo_id and combo_count; combo_end closes it", async () => {
  const room = unique("combo");
  seedRoom(room);
  const user = unique("v");
  await credit(srv.url, user, 100);
  const v = client(srv.url, mintToken(user));
  const w = await watch(room);
  try {
    await v.connect();
    await waitRoomReady(v, room);
    const acks = [];
    for (let i = 0; i < 4; i++) acks.push(await v.gift({room, gift: GIFTS.ROSE, count: i === 3 ? 3 : 1}));
    const gifts = await waitFor(() => {
      const g = w.events.filter((e) => e.kind === "gift");
      return g.length === 4 ? g : null;
    }, {what: "4 gift events"});
    assert.deepEqual(gifts.map((g) => g.combo_count), [1, 2, 3, 6]);
    assert.ok(gifts.every((g) => g.combo_id === acks[0].order), "the combo's id is its first order");
    assert.ok(gifts.every((g) => g.level === 1 && g.badge === "Fan"), JSON.stringify(gifts.map((g) => g.badge)));
    const end = await waitFor(() => w.events.find((e) => e.kind === "combo_end"), {what: "combo_end", timeoutMs: 10000});
    assert.equal(end.combo_id, acks[0].order);
    assert.equal(end.count, 6);
    assert.equal(end.orders, 4);
    assert.equal(end.amount, 6 * PRICES[GIFTS.ROSE]);
  } finally {
    v.close();
    w.c.close();
  }
});

test("global_board: the day's boards name the room and its sender with their coins", async () => {
  const room = unique("gb");
  seedRoom(room);
  const user = unique("v");
  // Big enough to stand in the platform's top 10 of the test database.
  const amount = 1000000;
  await credit(srv.url, user, amount);
  const v = client(srv.url, mintToken(user));
  try {
    await v.connect();
    await waitRoomReady(v, room);
    await v.tip({room, amount});
    await assert.rejects(v.globalBoard("year"), {code: "bad_field"});
    const board = await waitFor(async () => {
      const b = await v.globalBoard("day");
      return b.creators.some((e) => e.user === room) ? b : null;
    }, {what: "the room on the global board (read at most every 5 s)", timeoutMs: 20000, intervalMs: 500});
    assert.equal(board.period, "day");
    assert.equal(board.creators.find((e) => e.user === room).total, amount);
    assert.equal(board.gifters.find((e) => e.user === user).total, amount);
    const week = await v.globalBoard("week");
    assert.equal(week.period, "week");
    assert.ok(Array.isArray(week.gifts));
  } finally {
    v.close();
  }
});
