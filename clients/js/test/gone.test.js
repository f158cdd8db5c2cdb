// history_gone: a client away while more events passed than the room keeps
// (history-len 20 here) cannot get them back. On its return the SDK takes a
// fresh join and emits `snapshot` with `reset: true`, then goes on with the
// live events, in order, from the new snapshot's seq.
// The node is restarted while the client is away: a node that kept the room
// subscribed would answer the history from its own ring of 512 events
// (docs/protocol.md, history), and nothing would be gone.
import assert from "node:assert/strict";
import {after, before, test} from "node:test";

import {Server, client, mintToken, seedRoom, sleep, unique, waitFor, closeAll} from "./harness.js";

const HISTORY_LEN = 20;

let srv;
before(async () => { srv = await new Server({"history-len": HISTORY_LEN, "snapshot-events": 5}).start(); });
after(closeAll);
after(async () => { await srv.stop(); });

for (const protocol of ["json", "msgpack"]) {
  test(`${protocol}: events lost while away -> a fresh snapshot with reset: true`, async () => {
    const room = unique("gone");
    seedRoom(room);
    const owner = client(srv.url, mintToken(room, "creator"));
    await owner.connect();
    let away = null; // while set, the token function waits: the client stays disconnected
    let calls = 0;
    const token = mintToken(unique("v"));
    const v = client(srv.url, async () => {
      calls++;
      if (away) await away.p;
      return token;
    }, {protocol});
    const events = [];
    const snaps = [];
    v.on("event", (ev) => events.push(ev));
    v.on("snapshot", (s) => snaps.push(s));
    try {
      await v.connect();
      await v.join(room);
      for (let i = 0; i < 5; i++) await owner.notice(room, `before ${i}`);
      await waitFor(() => events.length === 5, {what: "5 events"});
      const lastBefore = events[4].seq;

      let open;
      away = {p: new Promise((r) => { open = r; })};
      await srv.stop();
      await srv.start();
      await waitFor(() => v.state === "reconnecting" && owner.state === "open", {what: "the owner back, the viewer away"});
      const missed = HISTORY_LEN + 30;
      for (let i = 0; i < missed; i++) await owner.notice(room, `away ${i}`);
      away = null;
      open();

      await waitFor(() => snaps.some((s) => s.reset === true), {what: "a snapshot with reset: true"});
      const reset = snaps.find((s) => s.reset === true);
      assert.equal(reset.type, "joined");
      assert.equal(reset.room, room);
      assert.ok(reset.seq >= lastBefore + missed, `the fresh snapshot is at the room's seq (${reset.seq})`);
      assert.equal(events.length, 5, "none of the lost events was made up");
      assert.equal(v.rooms()[room], reset.seq);

      for (let i = 0; i < 5; i++) await owner.notice(room, `after ${i}`);
      await waitFor(() => events.length === 10, {what: "5 more events"});
      await sleep(100);
      assert.deepEqual(events.slice(5).map((e) => e.seq), [1, 2, 3, 4, 5].map((k) => reset.seq + k));
      assert.deepEqual(events.slice(5).map((e) => e.text), [0, 1, 2, 3, 4].map((k) => `after ${k}`));
      assert.equal(events.length, 10);
      assert.ok(calls >= 2);

      // A new client that resumes from the same old seq (join with afterSeq) is reset too.
      const late = client(srv.url, mintToken(unique("v")), {protocol});
      const lateSnaps = [];
      const lateEvents = [];
      late.on("snapshot", (s) => lateSnaps.push(s));
      late.on("event", (ev) => lateEvents.push(ev));
      await late.connect();
      await late.join(room, {afterSeq: lastBefore});
      await waitFor(() => lateSnaps.some((s) => s.reset === true), {what: "the late client's reset"});
      const lateReset = lateSnaps.find((s) => s.reset === true);
      assert.equal(lateReset.seq, events[9].seq);
      await owner.notice(room, "last");
      await waitFor(() => lateEvents.length === 1, {what: "the late client's live event"});
      assert.equal(lateEvents[0].seq, lateReset.seq + 1);
      late.close();
    } finally {
      v.close();
      owner.close();
    }
  });
}
