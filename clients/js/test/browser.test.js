// The SDK in a real browser: Debian's Chromium under playwright-core (no
// browser is downloaded). tipcastd serves a small test page (its web-root, a
// temporary directory) and the SDK itself (web-sdk-root = clients/js/src, at
// /sdk/); the page imports /sdk/tipcast.js as an app's page would, and on
// each subprotocol connects, joins, sends a gift, sees its event, gets a
// refused tip as a TipcastError, and survives a restart of tipcastd (the
// page reconnects by itself and delivers the events it missed, in order).
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {after, before, test} from "node:test";
import {chromium} from "playwright-core";

import {GIFTS, PRICES, SDK_SRC, Server, client, credit, mintToken, seedRoom, tmpDir, unique, waitRoomReady, closeAll}
  from "./harness.js";

const CHROMIUM = process.env.TIPCAST_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [ // as tests/browser/demo.test.js
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

// tipcastd's pages are under a Content-Security-Policy of script-src 'self':
// the page's script is a file of its own.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>tipcast SDK test</title></head>
<body><pre id="log"></pre><script type="module" src="/page.js"></script></body></html>
`;
const PAGE_JS = `import {TipcastClient, TipcastError} from "/sdk/tipcast.js";
const log = (s) => { document.getElementById("log").textContent += s + "\\n"; };
const until = async (pred, ms = 10000) => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
};
const clients = {};
window.sdkStart = async ({protocol, token, room}) => {
  const c = new TipcastClient({url: "ws://" + location.host + "/ws", token, protocol,
    reconnect: {minMs: 100, maxMs: 500, factor: 2, jitter: 0.3}});
  const rec = {c, events: [], snapshots: [], states: []};
  clients[protocol] = rec;
  c.on("event", (ev) => { rec.events.push(ev); log(protocol + " event " + ev.seq + " " + ev.kind); });
  c.on("snapshot", (s) => rec.snapshots.push(s));
  c.on("state", (s) => rec.states.push(s.state));
  const welcome = await c.connect();
  const snap = await c.join(room);
  return {welcome, seq: snap.seq, live: snap.live};
};
window.sdkGift = async ({protocol, room, gift}) => {
  const rec = clients[protocol];
  const ack = await rec.c.gift({room, gift, combo: "page"});
  await until(() => rec.events.some((e) => e.order === ack.order));
  let refused = null;
  try {
    await rec.c.tip({room, amount: 1000000, text: "too much"});
  } catch (e) {
    refused = {isTipcastError: e instanceof TipcastError, code: e.code, balance: e.balance};
  }
  return {ack, event: rec.events.find((e) => e.order === ack.order), refused, balance: await rec.c.balance()};
};
window.sdkWaitSeq = async ({protocol, room, seq}) => {
  const rec = clients[protocol];
  await until(() => rec.c.rooms()[room] >= seq, 20000);
  return {seqs: rec.events.map((e) => e.seq), states: rec.states, snapshots: rec.snapshots.length};
};
window.sdkClose = (protocol) => { clients[protocol].c.close(); return clients[protocol].c.state; };
document.body.dataset.ready = "1";
`;

let srv;
let webRoot;
before(async () => {
  webRoot = tmpDir("tipcast-sdk-page-");
  fs.writeFileSync(path.join(webRoot, "index.html"), PAGE);
  fs.writeFileSync(path.join(webRoot, "page.js"), PAGE_JS);
  srv = await new Server({"web-root": webRoot, "web-sdk-root": SDK_SRC, demo: 1}).start();
});
after(closeAll);
after(async () => {
  await srv.stop();
  fs.rmSync(webRoot, {recursive: true, force: true});
});

test("tipcastd serves the SDK at /sdk/ byte for byte", async () => {
  for (const name of ["tipcast.js", "msgpack.js"]) {
    const res = await fetch(`http://127.0.0.1:${srv.port}/sdk/${name}`);
    assert.equal(res.status, 200, name);
    assert.match(res.headers.get("content-type"), /^text\/javascript/);
    assert.equal(await res.text(), fs.readFileSync(path.join(SDK_SRC, name), "utf8"));
  }
});

test("the SDK in Chromium: join, gift, event, a refused tip, resume after a restart; both subprotocols", async () => {
  fs.accessSync(CHROMIUM, fs.constants.X_OK); // scripts/deps.sh installs Debian's chromium
  const room = unique("web");
  seedRoom(room);
  const owner = client(srv.url, mintToken(room, "creator"));
  await owner.connect();
  await waitRoomReady(owner, room);
  const users = {json: unique("bj"), msgpack: unique("bm")};
  for (const u of Object.values(users)) await credit(srv.url, u, 1000);

  const profile = tmpDir("tipcast-chromium-");
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30000,
  });
  const log = [];
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    page.on("console", (m) => log.push(`[console.${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => log.push(`[pageerror] ${e.message}`));
    const frames = {"tipcast.v1.json": [], "tipcast.v1.msgpack": []};
    page.on("websocket", (ws) => {
      ws.on("framereceived", (f) => {
        // Which socket is which: the first answer names its subprotocol by its type.
        (typeof f.payload === "string" ? frames["tipcast.v1.json"] : frames["tipcast.v1.msgpack"]).push(f.payload);
      });
    });
    await page.goto(`http://127.0.0.1:${srv.port}/`);
    await page.waitForSelector("body[data-ready='1']", {state: "attached"});

    for (const protocol of ["json", "msgpack"]) {
      const user = users[protocol];
      const start = await page.evaluate((a) => window.sdkStart(a), {protocol, token: mintToken(user), room});
      assert.equal(start.welcome.user, user);
      assert.equal(start.live, true);
      const r = await page.evaluate((a) => window.sdkGift(a), {protocol, room, gift: GIFTS.ROCKET});
      assert.equal(r.ack.amount, PRICES[GIFTS.ROCKET]);
      assert.equal(r.ack.balance, 1000 - PRICES[GIFTS.ROCKET]);
      assert.equal(r.ack.replayed, false);
      assert.equal(r.event.kind, "gift");
      assert.equal(r.event.from, user);
      assert.equal(r.event.combo, "page");
      assert.equal(r.event.seq > start.seq, true);
      assert.deepEqual(r.refused, {isTipcastError: true, code: "insufficient_balance", balance: 500});
      assert.equal(r.balance, 500);
    }
    // The msgpack client's frames were binary, the json client's text.
    assert.ok(frames["tipcast.v1.json"].length > 0 && frames["tipcast.v1.msgpack"].length > 0);
    assert.ok(frames["tipcast.v1.msgpack"].every((p) => Buffer.isBuffer(p)));
    assert.ok(frames["tipcast.v1.json"].some((p) => p.includes('"type":"welcome"')));

    // tipcastd restarts (same port); the owner sends notices while the pages are away.
    await srv.stop();
    await srv.start();
    await owner.connect(); // it reconnects by itself; this waits for its welcome
    let last = 0;
    for (let i = 0; i < 30; i++) last = (await owner.notice(room, `n${i}`)).seq;
    for (const protocol of ["json", "msgpack"]) {
      const w = await page.evaluate((a) => window.sdkWaitSeq(a), {protocol, room, seq: last});
      assert.ok(w.states.includes("reconnecting"), `${protocol}: the page reconnected`);
      assert.ok(w.snapshots >= 2, `${protocol}: joined again`);
      // Every seq once, in order, from the first event the page saw.
      const want = Array.from({length: w.seqs.length}, (_, i) => w.seqs[0] + i);
      assert.deepEqual(w.seqs, want, `${protocol}: no gap, no duplicate`);
      assert.equal(w.seqs.at(-1), last);
      assert.equal(await page.evaluate((p) => window.sdkClose(p), protocol), "closed");
    }
    await page.screenshot({path: path.join(os.tmpdir(), "tipcast-sdk-browser.png")});
  } catch (e) {
    e.message += "\n--- page log ---\n" + log.join("\n");
    throw e;
  } finally {
    owner.close();
    await context.close();
    fs.rmSync(profile, {recursive: true, force: true});
  }
});
