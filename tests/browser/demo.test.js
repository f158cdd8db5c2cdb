// demo.test.js - drives the tipcast demo page in a real browser (Debian's
// Chromium under playwright-core; nothing is downloaded).
//
//   node demo.test.js --url http://127.0.0.1:PORT/ --out DIR [--idle-s N]
//
// Two pages (viewers bob and carol) join room alice; bob taps a gift. Checked:
// bob's page plays the gift's animation and shows the balance minus the
// price; carol's page shows the same event (same seq and order id) in its
// feed; a page opened after the gift shows it on the Today board from the
// join snapshot; the creator's page shows earnings that count it; a tip larger than bob's balance is answered insufficient_balance and
// shown on the page. Then, with --idle-s N, both pages sit idle for N
// seconds (set it to a few of the server's ping intervals) and must keep
// the WebSocket they had: browsers echo the server's pings, and a ping
// payload that is not UTF-8 once got them closed with 1007. Screenshots go
// to DIR. Exit status 0 = pass, 1 = fail
// (the reason on stderr), 2 = bad usage.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const {chromium} = require("playwright-core");

const CHROMIUM = process.env.TIPCAST_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
// Bounds on every wait, and on the whole run.
const STEP_TIMEOUT_MS = 10000;
const TOTAL_TIMEOUT_MS = 90000;
// The gift the test taps: the demo catalog's Rocket (scripts/demo.sql). Its
// price and animation are read from the page, as the catalog says.
const GIFT_ID = process.env.TIPCAST_TEST_GIFT_ID || "3";

function parseArgs(argv) {
  const out = {url: null, out: process.cwd(), idleS: 0};
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--url" && i + 1 < argv.length) out.url = argv[++i];
    else if (a === "--out" && i + 1 < argv.length) out.out = argv[++i];
    else if (a === "--idle-s" && i + 1 < argv.length && /^[0-9]+$/.test(argv[i + 1])) out.idleS = Number(argv[++i]);
    else {
      console.error("usage: node demo.test.js --url http://HOST:PORT/ [--out DIR] [--idle-s N]");
      process.exit(2);
    }
  }
  if (!out.url) {
    console.error("usage: node demo.test.js --url http://HOST:PORT/ [--out DIR] [--idle-s N]");
    process.exit(2);
  }
  return out;
}

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
  console.log("ok: " + what);
}

// Opens the page as `user` and waits until it has joined the room and shows
// the catalog and a balance.
// closes[user] counts the page's WebSockets that closed.
const closes = {};

async function openAs(context, base, user, log) {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("console", (m) => log.push(`[${user} console.${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => log.push(`[${user} pageerror] ${e.message}`));
  page.on("websocket", (ws) => {
    ws.on("framesent", (f) => log.push(`[${user} ws>] ${String(f.payload).slice(0, 300)}`));
    ws.on("framereceived", (f) => log.push(`[${user} ws<] ${String(f.payload).slice(0, 300)}`));
    ws.on("close", () => {
      closes[user] = (closes[user] || 0) + 1;
      log.push(`[${user} ws closed]`);
    });
  });
  const url = new URL(base);
  url.searchParams.set("user", user);
  await page.goto(url.toString());
  await page.waitForSelector(`body[data-user="${user}"][data-joined="alice"]`);
  await page.waitForSelector("#gifts button[data-gift-id]");
  await page.waitForFunction(() => document.getElementById("balance").dataset.balance !== "");
  return page;
}

async function balanceOf(page) {
  return Number(await page.getAttribute("#balance", "data-balance"));
}

async function run(opts, log) {
  fs.mkdirSync(opts.out, {recursive: true});
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tipcast-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: {width: 1280, height: 860},
    timeout: STEP_TIMEOUT_MS * 3,
  });
  try {
    const bob = await openAs(context, opts.url, "bob", log);
    const carol = await openAs(context, opts.url, "carol", log);
    console.log("ok: both pages joined room alice");

    const gift = bob.locator(`#gifts button[data-gift-id="${GIFT_ID}"]`);
    check(await gift.count() === 1, `the catalog shows gift ${GIFT_ID}`);
    const GIFT_ANIMATION = await gift.getAttribute("data-animation");
    const price = Number(await gift.getAttribute("data-price"));
    const before = await balanceOf(bob);
    check(/^[a-z0-9_-]+$/i.test(GIFT_ANIMATION || ""), `gift ${GIFT_ID} has an animation (${GIFT_ANIMATION})`);
    check(Number.isInteger(price) && price > 0, `gift ${GIFT_ID} has a price (${price})`);
    check(before >= price, `bob can afford it (balance ${before})`);

    await gift.click();

    // Bob's page: the animation plays and the balance drops by the price.
    const anim = bob.locator(`#stage .anim-${GIFT_ANIMATION}[data-order]`).first();
    await anim.waitFor({state: "visible"});
    const order = await anim.getAttribute("data-order");
    const seq = await anim.getAttribute("data-seq");
    check(order && seq, `bob's page animates the ${GIFT_ANIMATION} (order ${order}, seq ${seq})`);
    await bob.waitForFunction((want) => document.getElementById("balance").dataset.balance === String(want),
      before - price);
    check(await balanceOf(bob) === before - price, `bob's balance went from ${before} to ${before - price}`);
    await bob.screenshot({path: path.join(opts.out, "browser-bob.png")});

    // Both feeds hold that very event: same seq, same order id.
    const sel = `#feed li[data-kind="gift"][data-order="${order}"][data-seq="${seq}"]`;
    await bob.waitForSelector(sel);
    await carol.waitForSelector(sel);
    const carolSaw = await carol.locator(sel).first().innerText();
    check(/bob/.test(carolSaw), `carol's feed shows bob's gift as seq ${seq}, order ${order}: "${carolSaw.replace(/\s+/g, " ")}"`);
    await carol.screenshot({path: path.join(opts.out, "browser-carol.png")});

    // A page opened after the gift has every period of the board from its
    // join snapshot alone (no push has come to it): Today lists bob.
    const dave = await openAs(context, opts.url, "dave", log);
    await dave.click('#board-tabs button[data-period="day"]');
    await dave.waitForSelector('#board li[data-user="bob"]');
    const daveDay = Number(await dave.getAttribute('#board li[data-user="bob"]', "data-total"));
    check(daveDay >= price, `a page opened later shows bob on the Today board (${daveDay} coins)`);
    await dave.close();

    // The creator's own page shows their earnings (from PostgreSQL), which
    // count bob's gift, and no Balance 0 in their place.
    const alice = await context.newPage();
    alice.setDefaultTimeout(STEP_TIMEOUT_MS);
    const aliceUrl = new URL(opts.url);
    aliceUrl.searchParams.set("user", "alice");
    await alice.goto(aliceUrl.toString());
    await alice.waitForSelector('body[data-user="alice"][data-joined="alice"]');
    await alice.waitForSelector("#earnings-pill:not([hidden])");
    await alice.waitForFunction((p) => Number(document.getElementById("earnings").dataset.earnings) >= p, price);
    const earned = Number(await alice.getAttribute("#earnings", "data-earnings"));
    check(earned >= price, `alice's page shows her earnings (${earned} coins)`);
    await alice.screenshot({path: path.join(opts.out, "browser-alice.png")});
    await alice.close();

    // An unaffordable tip is refused, plainly, and costs nothing.
    const now = await balanceOf(bob);
    await bob.fill("#tip-amount", String(now + 1));
    await bob.click("#tip-send");
    await bob.waitForSelector('#error[data-code="insufficient_balance"]:not([hidden])');
    const errText = await bob.innerText("#error");
    check(/insufficient balance/i.test(errText), `bob's page says "${errText}"`);
    check(await balanceOf(bob) === now, "the refused tip left the balance alone");

    if (opts.idleS > 0) {
      // Both sockets have carried text; now only the server's pings and the
      // browsers' pongs cross them.
      await new Promise((r) => setTimeout(r, opts.idleS * 1000));
      check(!closes.bob && !closes.carol,
        `both pages kept their WebSocket through ${opts.idleS} s idle (closes: bob ${closes.bob || 0}, carol ${closes.carol || 0})`);
    }
  } catch (e) {
    // What the pages looked like when it failed.
    const pages = context.pages();
    for (let i = 0; i < pages.length; i++) {
      await pages[i].screenshot({path: path.join(opts.out, `browser-failure-${i + 1}.png`)}).catch(() => {});
    }
    throw e;
  } finally {
    await context.close();
    fs.rmSync(profile, {recursive: true, force: true});
  }
}

async function main() {
  const opts = parseArgs(process.argv);
  const log = [];
  const timer = setTimeout(() => {
    console.error(`FAIL: the browser test took longer than ${TOTAL_TIMEOUT_MS} ms`);
    console.error(log.slice(-80).join("\n"));
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  try {
    await run(opts, log);
  } catch (e) {
    console.error("FAIL: " + (e && e.stack ? e.stack : e));
    console.error("--- browser log (last 80 lines) ---\n" + log.slice(-80).join("\n"));
    process.exit(1);
  }
  clearTimeout(timer);
  console.log("PASS");
}

main();
