// demo.test.js - drives the tipcast demo page (clients/web/index.html, on
// the JavaScript SDK) in a real browser (Debian's Chromium under
// playwright-core; nothing is downloaded).
//
//   node demo.test.js --url http://127.0.0.1:PORT/[?protocol=msgpack] --out DIR [--idle-s N]
//
// Two pages (viewers bob and carol) join room alice. Checked, as a person
// sees it:
//   - bob taps the Rocket: his page plays its animation and shows the
//     balance minus the price; carol's feed shows the same event (same seq
//     and order id);
//   - bob taps the Rose 5 times in a row: carol's feed has ONE line for the
//     combo whose counter reads ×5, and bob's balance went down 5 Roses;
//   - every board period (all time, today, week, month) lists bob, and each
//     room total on carol's page grew by exactly the coins of those gifts
//     (from the room's pushes); a page opened later shows the same numbers
//     from its join snapshot alone;
//   - the creator's page shows earnings that count the gifts;
//   - a tip larger than bob's balance is refused and said so, costing nothing;
//   - every frame was of the subprotocol asked for (?protocol=msgpack in the
//     URL: binary msgpack, else JSON text).
// Then, with --idle-s N, both pages sit idle for N seconds (a few of the
// server's ping intervals) and must keep their WebSocket: browsers echo the
// server's pings. Screenshots go to DIR (demo-*.png) and are checked not to
// be blank. Exit status 0 = pass, 1 = fail (the reason on stderr), 2 = bad usage.
"use strict";

const path = require("path");
const {check, newPage, parseArgs, pngPixels, runTest, sleep} = require("./lib");

const TOTAL_TIMEOUT_MS = 120000;
// The demo catalog's Rocket and Rose (scripts/demo.sql). Prices and
// animations are read from the page, as the catalog says.
const ROCKET_ID = process.env.TIPCAST_TEST_GIFT_ID || "3";
const ROSE_ID = process.env.TIPCAST_TEST_COMBO_GIFT_ID || "1";
const COMBO_TAPS = 5;
const PERIODS = ["all", "day", "week", "month"];

const opts = parseArgs(process.argv, "node demo.test.js --url http://HOST:PORT/ [--out DIR] [--idle-s N]",
  ["url"], {out: process.cwd(), idleS: "0"});
const closes = {};
// Frames the pages received, by kind: with ?protocol=msgpack in the URL all
// must be binary (tipcast.v1.msgpack), else all text (tipcast.v1.json).
const frames = {text: 0, binary: 0};
const MSGPACK = new URL(opts.url).searchParams.get("protocol") === "msgpack";

// Opens the page as `user` and waits until it has joined the room and shows
// the catalog and a balance.
async function openAs(context, user, log) {
  const page = await newPage(context, user, log);
  page.on("websocket", (ws) => {
    ws.on("close", () => { closes[user] = (closes[user] || 0) + 1; });
    ws.on("framereceived", (f) => { frames[typeof f.payload === "string" ? "text" : "binary"] += 1; });
  });
  const url = new URL(opts.url);
  url.searchParams.set("user", user);
  await page.goto(url.toString());
  await page.waitForSelector(`body[data-user="${user}"][data-joined="alice"]`);
  if (user !== "alice") {
    await page.waitForSelector("#gifts button[data-gift-id]");
    await page.waitForFunction(() => document.getElementById("balance").dataset.balance !== "");
  }
  return page;
}

async function balanceOf(page) {
  return Number(await page.getAttribute("#balance", "data-balance"));
}

// The room totals a page shows, by period (NaN before any).
async function roomTotals(page) {
  return page.evaluate((periods) => Object.fromEntries(periods.map((p) =>
    [p, Number(document.querySelector(`#boards .period[data-period="${p}"] .room-total`).dataset.total || NaN)])),
  PERIODS);
}

// Bob's total on each board of a page (0 when not listed).
async function bobTotals(page) {
  return page.evaluate((periods) => Object.fromEntries(periods.map((p) => {
    const li = document.querySelector(`#boards .period[data-period="${p}"] li[data-user="bob"]`);
    return [p, li ? Number(li.dataset.total) : 0];
  })), PERIODS);
}

async function notBlank(page, file) {
  const png = await page.screenshot({path: file});
  const px = await pngPixels(page, png);
  check(px.distinct >= 20, `${path.basename(file)} is not blank (${px.distinct} colours in its samples)`);
}

runTest({out: opts.out, prefix: "demo", totalMs: TOTAL_TIMEOUT_MS}, async (context, log) => {
  const bob = await openAs(context, "bob", log);
  const carol = await openAs(context, "carol", log);
  console.log("ok: both pages joined room alice");
  await carol.waitForFunction(() => document.querySelector('#boards .period[data-period="day"] .room-total').dataset.total !== "");
  const totals0 = await roomTotals(carol);
  const bob0 = await bobTotals(carol);
  check(PERIODS.every((p) => Number.isInteger(totals0[p])), `carol's page shows the room's totals ${JSON.stringify(totals0)}`);

  // ---- one Rocket ----------------------------------------------------------------
  const rocket = bob.locator(`#gifts button[data-gift-id="${ROCKET_ID}"]`);
  check(await rocket.count() === 1, `the catalog shows gift ${ROCKET_ID}`);
  const animation = await rocket.getAttribute("data-animation");
  const price = Number(await rocket.getAttribute("data-price"));
  const before = await balanceOf(bob);
  check(/^[a-z0-9_-]+$/i.test(animation || ""), `gift ${ROCKET_ID} has an animation (${animation})`);
  check(Number.isInteger(price) && price > 0, `gift ${ROCKET_ID} has a price (${price})`);
  check(before >= price + 100, `bob can afford it (balance ${before})`);

  await rocket.click();
  const anim = bob.locator(`#stage .anim-${animation}[data-order]`).first();
  await anim.waitFor({state: "visible"});
  const order = await anim.getAttribute("data-order");
  const seq = await anim.getAttribute("data-seq");
  check(order && seq, `bob's page animates the ${animation} (order ${order}, seq ${seq})`);
  await bob.waitForFunction((want) => document.getElementById("balance").dataset.balance === String(want), before - price);
  check(await balanceOf(bob) === before - price, `bob's balance went from ${before} to ${before - price}`);
  await notBlank(bob, path.join(opts.out, "demo-bob.png"));

  const sel = `#feed li[data-kind="gift"][data-order="${order}"][data-seq="${seq}"]`;
  await bob.waitForSelector(sel);
  await carol.waitForSelector(sel);
  const carolSaw = (await carol.locator(sel).first().innerText()).replace(/\s+/g, " ");
  check(/bob/.test(carolSaw), `carol's feed shows bob's gift as seq ${seq}, order ${order}: "${carolSaw}"`);

  // ---- a combo of Roses: one line, counter ×5 -------------------------------------
  const rose = bob.locator(`#gifts button[data-gift-id="${ROSE_ID}"]`);
  const rosePrice = Number(await rose.getAttribute("data-price"));
  const roseName = (await rose.locator(".gift-name").innerText()).trim();
  const beforeCombo = await balanceOf(bob);
  for (let i = 0; i < COMBO_TAPS; i++) {
    await rose.click();
    await sleep(120); // taps a person makes, well inside the combo window (test_browser.py gives it 10 s)
  }
  await bob.waitForFunction((want) => document.getElementById("balance").dataset.balance === String(want),
    beforeCombo - COMBO_TAPS * rosePrice);
  check(await balanceOf(bob) === beforeCombo - COMBO_TAPS * rosePrice,
    `${COMBO_TAPS} Roses cost bob ${COMBO_TAPS * rosePrice} (balance ${beforeCombo - COMBO_TAPS * rosePrice})`);
  const comboSel = `#feed li[data-kind="gift"][data-from="bob"][data-gift="${ROSE_ID}"][data-combo]`;
  await carol.waitForSelector(`${comboSel}[data-count="${COMBO_TAPS}"]`);
  const comboId = await carol.getAttribute(`${comboSel}[data-count="${COMBO_TAPS}"]`, "data-combo");
  const comboLines = await carol.locator(`#feed li[data-combo="${comboId}"]`).count();
  // The line's words without the sender's fan badge (its own element, beside the name).
  const comboText = (await carol.$eval(`#feed li[data-combo="${comboId}"]`, (li) => {
    const copy = li.cloneNode(true);
    copy.querySelectorAll(".badge").forEach((b) => b.remove());
    return copy.textContent;
  })).replace(/\s+/g, " ").replace(/ (sent|×)/g, " $1");
  check(comboLines === 1, `carol's feed shows the combo as one line (${comboLines})`);
  check(comboText.includes(`bob sent ${roseName}`) && comboText.includes("×" + COMBO_TAPS),
    `the combo line reads "${comboText}"`);
  check(await carol.locator("#feed li").first().getAttribute("data-combo") === comboId,
    "the combo line is the newest line of the feed");
  await notBlank(carol, path.join(opts.out, "demo-carol.png"));

  // ---- every board period, with the room's totals ----------------------------------
  const spent = price + COMBO_TAPS * rosePrice;
  await carol.waitForFunction(({periods, t0, spent}) => periods.every((p) =>
    Number(document.querySelector(`#boards .period[data-period="${p}"] .room-total`).dataset.total) === t0[p] + spent),
  {periods: PERIODS, t0: totals0, spent});
  const totals1 = await roomTotals(carol);
  check(PERIODS.every((p) => totals1[p] === totals0[p] + spent),
    `each room total on carol's page grew by ${spent}: ${JSON.stringify(totals0)} -> ${JSON.stringify(totals1)}`);
  const bob1 = await bobTotals(carol);
  check(PERIODS.every((p) => bob1[p] === bob0[p] + spent),
    `bob's line on each board grew by ${spent}: ${JSON.stringify(bob0)} -> ${JSON.stringify(bob1)}`);

  // A page opened now has the same numbers from its join snapshot alone.
  const dave = await openAs(context, "dave", log);
  await dave.waitForSelector('#boards .period[data-period="day"] li[data-user="bob"]');
  const daveTotals = await roomTotals(dave);
  const daveBob = await bobTotals(dave);
  check(JSON.stringify(daveTotals) === JSON.stringify(totals1) && JSON.stringify(daveBob) === JSON.stringify(bob1),
    `a page opened later shows the same totals and board lines (${JSON.stringify(daveTotals)}, bob ${JSON.stringify(daveBob)})`);
  await dave.close();

  // ---- the creator's page ---------------------------------------------------------
  const alice = await openAs(context, "alice", log);
  await alice.waitForSelector("#earnings-pill:not([hidden])");
  await alice.waitForFunction((p) => Number(document.getElementById("earnings").dataset.earnings) >= p, spent);
  const earned = Number(await alice.getAttribute("#earnings", "data-earnings"));
  check(earned >= spent, `alice's page shows her earnings (${earned} coins)`);
  await notBlank(alice, path.join(opts.out, "demo-alice.png"));
  await alice.close();

  // ---- an unaffordable tip ------------------------------------------------------------
  const now = await balanceOf(bob);
  await bob.fill("#tip-amount", String(now + 1));
  await bob.click("#tip-send");
  await bob.waitForSelector('#error[data-code="insufficient_balance"]:not([hidden])');
  const errText = await bob.innerText("#error");
  check(/insufficient balance/i.test(errText) && errText.includes(now.toLocaleString("en-US")), `bob's page says "${errText}"`);
  check(await balanceOf(bob) === now, "the refused tip left the balance alone");

  check(MSGPACK ? frames.binary > 0 && frames.text === 0 : frames.text > 0 && frames.binary === 0,
    `the pages spoke ${MSGPACK ? "tipcast.v1.msgpack" : "tipcast.v1.json"} (${frames.text} text, ${frames.binary} binary frames)`);

  const idleS = Number(opts.idleS);
  if (idleS > 0) {
    await sleep(idleS * 1000);
    check(!closes.bob && !closes.carol,
      `both pages kept their WebSocket through ${idleS} s idle (closes: bob ${closes.bob || 0}, carol ${closes.carol || 0})`);
  }
});
