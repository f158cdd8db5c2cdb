// The money rule: a gift whose ack was lost with the connection is resent
// with the same id after the reconnect, answered `replayed: true`, and the
// money moves once. The connection goes through a TCP proxy that first
// swallows the server's answers (the gift reaches tipcastd and is taken,
// the ack never reaches the client) and then cuts the connection.
import assert from "node:assert/strict";
import {after, before, test} from "node:test";

import {GIFTS, PRICES, Proxy, Server, client, credit, mintToken, seedRoom, sleep, unique, waitFor, waitRoomReady, closeAll}
  from "./harness.js";

let srv;
before(async () => { srv = await new Server().start(); });
after(closeAll);
after(async () => { await srv.stop(); });

for (const protocol of ["json", "msgpack"]) {
  test(`${protocol}: a gift whose ack was lost is resent, acked replayed, debited once`, async () => {
    const room = unique("money");
    seedRoom(room);
    const user = unique("v");
    await credit(srv.url, user, 1000);
    const proxy = await new Proxy(srv.port).listen();
    let tokenCalls = 0;
    const c = client(proxy.url, () => { tokenCalls++; return mintToken(user); }, {protocol});
    const direct = client(srv.url, mintToken(user));
    const watcher = client(srv.url, mintToken(unique("w")));
    try {
      await c.connect();
      await direct.connect();
      await watcher.connect();
      await waitRoomReady(direct, room);
      const gifts = [];
      watcher.on("event", (ev) => { if (ev.kind === "gift") gifts.push(ev); });
      await watcher.join(room);
      const states = [];
      c.on("state", (s) => states.push(s.state));

      proxy.blackhole();
      const id = c.newId("g");
      const pending = c.gift({room, gift: GIFTS.ROCKET, id, combo: "x"});
      // The server took it (the balance moved) but the client heard nothing.
      await waitFor(async () => (await direct.balance()) === 1000 - PRICES[GIFTS.ROCKET],
        {what: "the first send to be debited"});
      let settled = false;
      pending.then(() => { settled = true; }, () => { settled = true; });
      await sleep(100);
      assert.equal(settled, false, "no answer reached the client yet");
      proxy.cut(); // the connection drops; the client reconnects while the proxy refuses
      await sleep(150);
      proxy.restore();

      const ack = await pending;
      assert.equal(ack.type, "ack");
      assert.equal(ack.id, id);
      assert.equal(ack.replayed, true, "the resend is answered as a replay");
      assert.equal(ack.amount, PRICES[GIFTS.ROCKET]);
      assert.equal(ack.balance, 1000 - PRICES[GIFTS.ROCKET]);
      assert.ok(states.includes("reconnecting") && states.at(-1) === "open", states.join(","));
      assert.ok(tokenCalls >= 2, "authenticated again with a fresh token");

      // Debited once, and one gift in the room with the ack's order.
      await waitFor(() => gifts.length >= 1, {what: "the gift event"});
      await sleep(300);
      assert.equal(gifts.length, 1);
      assert.equal(gifts[0].order, ack.order);
      assert.equal(await direct.balance(), 1000 - PRICES[GIFTS.ROCKET]);
      assert.equal(await c.balance(), 1000 - PRICES[GIFTS.ROCKET]);
    } finally {
      c.close();
      direct.close();
      watcher.close();
      await proxy.close();
    }
  });
}

// A live room and a viewer with 100 coins, connected (and the room ready)
// through a proxy the test controls.
async function viewerBehindProxy() {
  const room = unique("money");
  seedRoom(room);
  const user = unique("v");
  await credit(srv.url, user, 100);
  const proxy = await new Proxy(srv.port).listen();
  const c = client(proxy.url, mintToken(user));
  await c.connect();
  await waitRoomReady(c, room);
  return {room, user, proxy, c};
}

test("non-money requests reject with closed on a lost connection; money waits", async () => {
  const {room, proxy, c} = await viewerBehindProxy();
  try {
    proxy.blackhole();
    const bal = c.balance();
    const tip = c.tip({room, amount: 3, text: "hi"});
    await sleep(100);
    proxy.cut();
    await assert.rejects(bal, (e) => e.code === "closed");
    proxy.restore();
    const ack = await tip;
    assert.equal(ack.balance, 97);
    assert.equal(typeof ack.replayed, "boolean");
    assert.equal(await c.balance(), 97, "one tip debited");
  } finally {
    c.close();
    await proxy.close();
  }
});

test("a gift sent while reconnecting waits and goes out after the welcome; close() rejects it", async () => {
  const {room, user, proxy, c} = await viewerBehindProxy();
  try {
    proxy.cut();
    await waitFor(() => c.state === "reconnecting", {what: "reconnecting"});
    const queued = c.gift({room, gift: GIFTS.ROSE});
    await assert.rejects(c.balance(), (e) => e.code === "not_connected");
    await sleep(100);
    proxy.restore();
    const ack = await queued;
    assert.equal(ack.replayed, false);
    assert.equal(ack.balance, 99);

    proxy.cut();
    await waitFor(() => c.state === "reconnecting", {what: "reconnecting"});
    const doomed = c.gift({room, gift: GIFTS.ROSE});
    c.close();
    await assert.rejects(doomed, (e) => e.code === "closed");
    assert.equal(c.state, "closed");
  } finally {
    c.close();
    await proxy.close();
  }
  const check = client(srv.url, mintToken(user));
  await check.connect();
  assert.equal(await check.balance(), 99);
  check.close();
});

test("a gift or tip never answered rejects with timeout after moneyRetryMs, not before", async () => {
  // On a connection that never answers, the tip is resent (same id) every requestTimeoutMs
  // and given up only when moneyRetryMs has passed.
  const user = unique("v");
  const proxy = await new Proxy(srv.port).listen();
  const c = client(proxy.url, mintToken(user), {moneyRetryMs: 600, requestTimeoutMs: 200});
  try {
    await c.connect();
    proxy.blackhole();
    const t0 = Date.now();
    await assert.rejects(c.tip({room: unique("nowhere"), amount: 1}), (e) => e.code === "timeout");
    const took = Date.now() - t0;
    assert.ok(took >= 550 && took < 2000, `rejected after moneyRetryMs (${took} ms)`);
  } finally {
    c.close();
    await proxy.close();
  }
});
