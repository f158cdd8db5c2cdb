// Resume across a crash: tipcastd is killed with SIGKILL in the middle of a
// steady stream of notices and gifts, and started again on the same port.
// Two viewers (json and msgpack) must deliver every event of the room exactly
// once, in seq order: compared, at the end, with the room's whole history.
// The viewers come back only once 150 more notices have been sent (their
// token function waits for it), so that their resume has to fetch a gap of
// more than one history page while live events keep arriving.
import assert from "node:assert/strict";
import {after, test} from "node:test";

import {GIFTS, Server, client, credit, fullHistory, mintToken, seedRoom, sleep, unique, waitFor, waitRoomReady, closeAll}
  from "./harness.js";

const MISSED_NOTICES = 150; // sent while the viewers are away (> one history page of 100)

let srv;
after(closeAll);
after(async () => { if (srv) await srv.stop(); });

function gate() {
  let open;
  const p = new Promise((r) => { open = r; });
  return {p, open};
}

test("kill -9 and restart mid-stream: every event exactly once, in seq order", async () => {
  // snapshot-events 5: the resume's gap comes mostly from history, not from the join's events.
  srv = await new Server({"history-len": 5000, "snapshot-events": 5}).start();
  const room = unique("crash");
  seedRoom(room);
  const gifter = unique("g");
  const startBalance = await credit(srv.url, gifter, 100000);

  const owner = client(srv.url, mintToken(room, "creator"), {reconnect: {minMs: 20, maxMs: 100, factor: 2, jitter: 0.2}});
  const giver = client(srv.url, mintToken(gifter), {reconnect: {minMs: 20, maxMs: 100, factor: 2, jitter: 0.2}});
  await owner.connect();
  await giver.connect();
  await waitRoomReady(giver, room);

  const back = gate();
  const viewers = [];
  for (const protocol of ["json", "msgpack"]) {
    const user = unique("v");
    const token = mintToken(user);
    const v = {protocol, calls: 0, events: [], snapshots: [], states: [], lastAtLoss: null};
    v.c = client(srv.url, async () => {
      // Called before every (re)connect: after the crash, held back until the room moved on.
      if (v.calls++ > 0) await back.p;
      return token;
    }, {protocol});
    v.c.on("event", (ev) => v.events.push(ev));
    v.c.on("snapshot", (s) => v.snapshots.push(s));
    v.c.on("state", (s) => {
      v.states.push(s.state);
      if (s.state === "reconnecting" && v.lastAtLoss === null) v.lastAtLoss = v.c.rooms()[room];
    });
    await v.c.connect();
    v.joinSeq = (await v.c.join(room)).seq;
    viewers.push(v);
  }
  const joinSeq = Math.min(...viewers.map((v) => v.joinSeq));

  // The stream: the owner's notices and the gifter's roses, back to back.
  let running = true;
  let restartedAt = Infinity;
  let noticesAfterRestart = 0;
  const giftAcks = [];
  const failures = [];
  const noticeLoop = (async () => {
    for (let i = 0; running; i++) {
      try {
        await owner.notice(room, `n${i}`);
        if (Date.now() > restartedAt) noticesAfterRestart++;
      } catch (e) {
        if (e.code !== "closed" && e.code !== "not_connected" && e.code !== "timeout") failures.push(e);
        await sleep(20); // a notice is not money: it is simply sent again (as a new notice)
      }
      await sleep(2);
    }
  })();
  const giftLoop = (async () => {
    for (let i = 0; running; i++) {
      try {
        // Money: a gift unanswered when the node died is resent with its id after the reconnect.
        giftAcks.push(await giver.gift({room, gift: GIFTS.ROSE, combo: `c${i}`}));
      } catch (e) {
        failures.push(e);
        await sleep(20);
      }
      await sleep(2);
    }
  })();

  await waitFor(() => viewers.every((v) => v.events.length >= 100), {what: "100 events at each viewer"});
  await srv.kill9();
  await sleep(300);
  await srv.start();
  restartedAt = Date.now();
  await waitFor(() => noticesAfterRestart >= MISSED_NOTICES, {what: `${MISSED_NOTICES} notices after the restart`});
  back.open();
  await waitFor(() => viewers.every((v) => v.c.state === "open" && v.snapshots.length >= 2),
    {what: "the viewers to rejoin"});
  await sleep(500); // the stream goes on while they catch up
  running = false;
  await Promise.all([noticeLoop, giftLoop]);
  assert.deepEqual(failures, []);

  // The room's whole history since the viewers joined; every acked gift is in it.
  const orders = new Set(giftAcks.map((a) => a.order));
  assert.equal(orders.size, giftAcks.length, "each gift acked with its own order");
  let full;
  await waitFor(async () => {
    full = await fullHistory(srv.url, room, joinSeq);
    const seen = new Set(full.filter((e) => e.kind === "gift").map((e) => e.order));
    return [...orders].every((o) => seen.has(o));
  }, {what: "every acked gift in the room's history"});
  const lastSeq = full[full.length - 1].seq;
  for (const v of viewers) {
    await waitFor(() => v.c.rooms()[room] === lastSeq, {what: `the ${v.protocol} viewer to reach seq ${lastSeq}`});
  }
  await sleep(200);

  // Exactly once, in order: the same list as the history (no duplicate, no gap).
  const key = (e) => `${e.seq}|${e.kind}|${e.from}|${e.text ?? ""}|${e.order ?? ""}|${e.amount ?? ""}`;
  for (const v of viewers) {
    const want = full.filter((e) => e.seq > v.joinSeq).map(key);
    // Events may go on after the history was read (the combo of the last
    // gifts closes with a combo_end a window later): those come after it,
    // still in order and without a gap.
    const later = v.events.filter((e) => e.seq > lastSeq);
    assert.deepEqual(later.map((e) => e.seq), later.map((_, i) => lastSeq + 1 + i), `${v.protocol}: later events in order`);
    const got = v.events.filter((e) => e.seq <= lastSeq);
    assert.equal(got.length, want.length, `${v.protocol}: as many events as the history`);
    assert.deepEqual(got.map(key), want, `${v.protocol}: the same events in the same order`);
    // It really was cut off, and resumed over a gap of more than one history page.
    assert.ok(v.states.includes("reconnecting"), `${v.protocol} reconnected`);
    const resumed = v.snapshots[1];
    assert.notEqual(resumed.reset, true);
    assert.ok(resumed.seq - v.lastAtLoss > 100,
      `${v.protocol}: gap at resume ${resumed.seq - v.lastAtLoss} events (last ${v.lastAtLoss}, room at ${resumed.seq})`);
    assert.ok(v.calls >= 2, "the token function was called again for the reconnect");
  }

  // Money: each acked gift once in the room, and debited once.
  const giftEvents = full.filter((e) => e.kind === "gift" && e.from === gifter);
  assert.equal(giftEvents.length, giftAcks.length, "one gift event per acked gift");
  assert.equal(await giver.balance(), startBalance - giftAcks.length);
  const replayed = giftAcks.filter((a) => a.replayed).length;
  console.log(`# ${full.length} events, ${giftAcks.length} gifts (${replayed} acked replayed after the crash), ` +
    `gaps at resume: ${viewers.map((v) => v.snapshots[1].seq - v.lastAtLoss).join(", ")}`);

  for (const v of viewers) v.c.close();
  owner.close();
  giver.close();
});
