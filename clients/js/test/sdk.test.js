// The SDK against a real tipcastd, Redis and PostgreSQL, on both
// subprotocols: join, events, gifts and tips, balances, refused requests as
// TipcastError with the server's code and extra keys, and the states.
import assert from "node:assert/strict";
import {after, before, describe, test} from "node:test";

import {TipcastClient, TipcastError} from "../src/tipcast.js";
import {GIFTS, PRICES, Server, client, credit, mintToken, seedRoom, sleep, unique, waitFor, waitRoomReady, closeAll}
  from "./harness.js";

let srv;
before(async () => { srv = await new Server().start(); });
after(closeAll);
after(async () => {
  const code = await srv.stop();
  assert.equal(code, 0, "tipcastd exits cleanly on SIGTERM\n" + srv.log);
});

for (const protocol of ["json", "msgpack"]) {
  describe(`subprotocol ${protocol}`, () => {
    test("join, gift, tip and notice: acks, events in seq order, balance", async () => {
      const room = unique("sdk");
      seedRoom(room);
      const viewer = unique("v");
      await credit(srv.url, viewer, 2000);
      const v = client(srv.url, mintToken(viewer), {protocol});
      const owner = client(srv.url, mintToken(room, "creator"), {protocol});
      const states = [];
      v.on("state", (s) => states.push(s.state));
      assert.equal(v.state, "idle");
      const welcome = await v.connect();
      assert.equal(welcome.type, "welcome");
      assert.equal(welcome.user, viewer);
      assert.equal(welcome.role, "viewer");
      assert.equal(v.state, "open");
      assert.deepEqual(states, ["connecting", "open"]);
      await owner.connect();
      await waitRoomReady(v, room);

      const events = [];
      const snaps = [];
      v.on("event", (ev) => events.push(ev));
      v.on("snapshot", (s) => snaps.push(s));
      const boards = [];
      v.on("leaderboard", (m) => boards.push(m));
      const snap = await v.join(room);
      assert.equal(snap.type, "joined");
      assert.equal(snap.room, room);
      assert.equal(snap.live, true);
      assert.equal(snaps.length, 1);
      assert.equal(snaps[0].seq, snap.seq);
      const seq0 = snap.seq;

      const ack = await v.gift({room, gift: GIFTS.ROCKET, count: 2, combo: "c-1"});
      assert.equal(ack.type, "ack");
      assert.equal(ack.amount, 2 * PRICES[GIFTS.ROCKET]);
      assert.equal(ack.balance, 1000);
      assert.equal(ack.replayed, false);
      assert.match(ack.order, /^\d+-\d+-\d+$/);
      const tack = await v.tip({room, amount: 7, text: "gg"});
      assert.equal(tack.balance, 993);
      const nack = await owner.notice(room, "hello ü");
      assert.equal(nack.type, "ack");
      assert.equal(nack.room, room);

      await waitFor(() => events.length >= 3, {what: "three events"});
      await sleep(100); // and no more
      assert.deepEqual(events.map((e) => e.seq), [seq0 + 1, seq0 + 2, seq0 + 3]);
      const byKind = Object.fromEntries(events.map((e) => [e.kind, e]));
      assert.equal(byKind.gift.order, ack.order);
      assert.equal(byKind.gift.from, viewer);
      assert.equal(byKind.gift.count, 2);
      assert.equal(byKind.gift.combo, "c-1");
      assert.equal(byKind.gift.amount, 1000);
      assert.equal(byKind.gift.name, "SDK Rocket");
      assert.equal(byKind.tip.order, tack.order);
      assert.equal(byKind.tip.text, "gg");
      assert.equal(byKind.notice.text, "hello ü");
      assert.equal(byKind.notice.room, room);

      assert.equal(await v.balance(), 993);
      const cat = await v.catalog();
      assert.ok(Number.isInteger(cat.version));
      assert.ok(cat.gifts.some((g) => g.id === GIFTS.ROSE && g.price === 1 && g.name === "SDK Rose"));

      const lb = await v.leaderboard(room);
      assert.equal(lb.type, "leaderboard");
      // All-time entries carry the fan level: 1007 coins pass the 1000 of Silver (level 2).
      assert.deepEqual(lb.top, [{user: viewer, total: 1007, level: 2, badge: "Silver"}]);
      await waitFor(() => boards.length > 0, {what: "a leaderboard push"});
      assert.equal(boards[0].room, room);
      assert.equal(boards[0].id, undefined);

      const hist = await v.history(room, seq0);
      assert.deepEqual(hist.events.map((e) => e.seq), [seq0 + 1, seq0 + 2, seq0 + 3]);

      const earn = await owner.earnings();
      assert.equal(earn.creator, room);
      await waitFor(async () => (await owner.earnings()).total === 1007, {what: "the ledger to count both orders"});
      assert.deepEqual(await owner.earnings(), {creator: room, total: 1007, orders: 2});

      assert.deepEqual(v.rooms(), {[room]: seq0 + 3});
      const left = await v.leave(room);
      assert.equal(left.type, "left");
      assert.deepEqual(v.rooms(), {});
      await owner.notice(room, "after leave");
      await sleep(150);
      assert.equal(events.length, 3, "no event of a room left");

      v.close();
      owner.close();
      assert.equal(v.state, "closed");
      await assert.rejects(v.balance(), (e) => e instanceof TipcastError && e.code === "not_connected");
    });

    test("refused requests reject with TipcastError and the server's code", async () => {
      const room = unique("sdk");
      seedRoom(room);
      const viewer = unique("v");
      await credit(srv.url, viewer, 100);
      const v = client(srv.url, mintToken(viewer), {protocol});
      await v.connect();
      await waitRoomReady(v, room);

      // The money rule: insufficient_balance is not retried, it rejects at once with the balance.
      const t0 = Date.now();
      await assert.rejects(v.gift({room, gift: GIFTS.ROCKET}), (e) => {
        assert.ok(e instanceof TipcastError);
        assert.equal(e.code, "insufficient_balance");
        assert.equal(e.balance, 100);
        assert.equal(e.request.type, "gift");
        assert.equal(e.request.gift, GIFTS.ROCKET);
        return true;
      });
      assert.ok(Date.now() - t0 < 2000);
      await assert.rejects(v.gift({room, gift: 1999999999}),
        (e) => e.code === "unknown_gift" && e.field === "gift");
      await assert.rejects(v.notice(room, "not mine"), (e) => e.code === "forbidden" && typeof e.message === "string");
      await assert.rejects(v.tip({room, amount: 0}), (e) => e.code === "bad_field" && e.field === "amount");
      await assert.rejects(v.earnings(), (e) => e.code === "forbidden");
      await assert.rejects(v.leave(room), (e) => e.code === "not_member");
      await assert.rejects(v.join("bad room!"), (e) => e.code === "bad_field" && e.field === "room");
      assert.deepEqual(v.rooms(), {}, "a refused join leaves no room behind");
      // A room that is not live.
      const dark = unique("dark");
      await assert.rejects(v.tip({room: dark, amount: 1}), (e) => e.code === "room_not_live");
      // The same id twice for different requests: idempotency_conflict, no money moved.
      const id = v.newId("g");
      const ack = await v.gift({room, gift: GIFTS.ROSE, id});
      assert.equal(ack.balance, 99);
      await assert.rejects(v.gift({room, gift: GIFTS.ROSE, count: 2, id}), (e) => e.code === "idempotency_conflict");
      const again = await v.gift({room, gift: GIFTS.ROSE, id});
      assert.equal(again.replayed, true);
      assert.equal(again.order, ack.order);
      assert.equal(await v.balance(), 99);
      v.close();
    });
  });
}

test("join with afterSeq: a new client resumes from a seq an earlier one saw", async () => {
  const room = unique("sdk");
  seedRoom(room);
  const owner = client(srv.url, mintToken(room, "creator"));
  await owner.connect();
  const seqs = [];
  for (let i = 0; i < 8; i++) seqs.push((await owner.notice(room, `n${i}`)).seq);
  for (const protocol of ["json", "msgpack"]) {
    const c = client(srv.url, mintToken(unique("v")), {protocol});
    const events = [];
    const snaps = [];
    c.on("event", (ev) => events.push(ev));
    c.on("snapshot", (s) => snaps.push(s));
    await c.connect();
    const snap = await c.join(room, {afterSeq: seqs[1]});
    assert.equal(snap.seq, seqs.at(-1));
    const want = seqs.length - 2;
    await waitFor(() => events.length === want, {what: `the ${want} events after afterSeq`});
    seqs.push((await owner.notice(room, `live ${protocol}`)).seq);
    await waitFor(() => events.length === want + 1, {what: "the live event"});
    await sleep(100);
    assert.deepEqual(events.map((e) => e.seq), seqs.slice(2));
    assert.equal(events.at(-1).text, `live ${protocol}`);
    assert.equal(events[0].text, "n2");
    assert.equal(snaps.length, 1);
    assert.notEqual(snaps[0].reset, true);
    await assert.rejects(c.join("bad room!", {afterSeq: 3}), (e) => e.code === "bad_field");
    assert.deepEqual(Object.keys(c.rooms()), [room]);
    c.close();
  }
  owner.close();
});

test("an overlay token: reads its own room through the SDK, anything else is forbidden", async () => {
  const room = unique("ov");
  seedRoom(room);
  const owner = client(srv.url, mintToken(room, "creator"));
  await owner.connect();
  const ov = client(srv.url, mintToken(room, "overlay", {extra: {room}}), {protocol: "msgpack"});
  const events = [];
  ov.on("event", (ev) => events.push(ev));
  const w = await ov.connect();
  assert.equal(w.role, "overlay");
  assert.equal(w.room, room);
  const snap = await ov.join(w.room);
  const n = await owner.notice(room, "hi overlay");
  await waitFor(() => events.length === 1, {what: "the overlay's event"});
  assert.equal(events[0].seq, n.seq);
  assert.equal(events[0].seq, snap.seq + 1);
  assert.ok(Array.isArray((await ov.leaderboard(room)).top));
  await assert.rejects(ov.join(unique("other")), (e) => e.code === "forbidden");
  await assert.rejects(ov.balance(), (e) => e.code === "forbidden");
  await assert.rejects(ov.tip({room, amount: 1}), (e) => e.code === "forbidden");
  ov.close();
  owner.close();
});

test("a refused token: connect rejects, state closed, no reconnect", async () => {
  const states = [];
  const errors = [];
  let calls = 0;
  const c = client(srv.url, () => { calls++; return "not.a.jwt"; });
  c.on("state", (s) => states.push(s.state));
  c.on("error", (e) => errors.push(e));
  await assert.rejects(c.connect(), (e) => e instanceof TipcastError && e.code === "auth_invalid");
  assert.equal(c.state, "closed");
  await sleep(500);
  assert.equal(calls, 1, "the token function is not called again: no reconnect after 4003");
  assert.deepEqual(states, ["connecting", "closed"]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "auth_invalid");
  assert.equal(errors[0].closeCode, 4003);

  const expired = client(srv.url, mintToken(unique("v"), "viewer", {expIn: -3600}));
  await assert.rejects(expired.connect(), (e) => e.code === "auth_expired");
  assert.equal(expired.state, "closed");
});

test("an expired token from a token function: one fresh attempt at once, then closed", async () => {
  const user = unique("v");
  let calls = 0;
  const c = client(srv.url, () => (++calls === 1 ? mintToken(user, "viewer", {expIn: -3600}) : mintToken(user)));
  const w = await c.connect();
  assert.equal(w.user, user);
  assert.equal(calls, 2);
  c.close();

  let n = 0;
  const stale = client(srv.url, () => { n++; return mintToken(user, "viewer", {expIn: -3600}); });
  await assert.rejects(stale.connect(), (e) => e.code === "auth_expired" && e.closeCode === 4003);
  await sleep(300);
  assert.equal(n, 2, "one retry, no loop");
  assert.equal(stale.state, "closed");
});

test("timeouts, not_connected, ids, request ids echoed", async () => {
  const c = client(srv.url, mintToken(unique("v")), {requestTimeoutMs: 1});
  await assert.rejects(c.balance(), (e) => e.code === "not_connected");
  assert.match(c.newId("g"), /^g-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(c.newId(), c.newId());
  c.requestTimeoutMs = 5000;
  await c.connect();
  const pong = await c.request({type: "ping", id: "my-own-id"});
  assert.equal(pong.type, "pong");
  assert.equal(pong.id, "my-own-id");
  // Requests the server cannot answer within 1 ms, since it is stopped
  // (SIGSTOP) meanwhile: each rejects with timeout, and the late answers
  // that come once it runs again are ignored.
  c.requestTimeoutMs = 1;
  srv.proc.kill("SIGSTOP");
  let results;
  try {
    results = await Promise.allSettled(Array.from({length: 20}, () => c.catalog()));
  } finally {
    srv.proc.kill("SIGCONT");
  }
  assert.ok(results.every((r) => r.status === "rejected" && r.reason.code === "timeout"), "all timed out");
  c.requestTimeoutMs = 5000;
  await sleep(100);
  assert.equal(typeof (await c.balance()), "number");
  c.close();
});

test("no WebSocket constructor: a clear TypeError", () => {
  const saved = globalThis.WebSocket;
  try {
    globalThis.WebSocket = undefined;
    assert.throws(() => new TipcastClient({url: srv.url, token: "x"}), /WebSocket/);
  } finally {
    globalThis.WebSocket = saved;
  }
});
