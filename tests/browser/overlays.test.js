// overlays.test.js - drives the OBS overlays (clients/web/overlay-*.html) in a
// real browser (Debian's Chromium under playwright-core), with an overlay
// token of room alice from /demo/token (tipcastd runs with demo on).
//
//   node overlays.test.js --url http://127.0.0.1:PORT/ --out DIR
//
// bob (on the viewer demo page) taps the Rose 5 times and tips 50 coins with
// a message. Checked, as the stream shows it:
//   - the alert box shows ONE alert for the combo, its counter reaching ×5,
//     then the tip's alert with its message (two alerts in all); a second
//     box opened with ?sound=1 beeps for each, the first never;
//   - the leaderboard widget (period day, n 5) lists bob with his day total
//     grown by what he sent, at most 5 rows, and the room's day total;
//   - the goal bar shows the room's day total, the target and the percent
//     floor(total * 100 / target), its fill as wide;
//   - a goal bar without a target says what is missing.
// Screenshots are taken with omitBackground (what OBS composes) into
// DIR/overlay-*.png and checked: transparent corners, something drawn.
// Exit 0 pass, 1 fail, 2 usage.
"use strict";

const path = require("path");
const {check, newPage, parseArgs, pngPixels, runTest, sleep} = require("./lib");

const TOTAL_TIMEOUT_MS = 120000;
const ROSE_ID = process.env.TIPCAST_TEST_COMBO_GIFT_ID || "1";
const COMBO_TAPS = 5;
const TIP = 50;
const TIP_TEXT = "gg from the overlay test";
const BOARD_N = 5;
// The goal is this far above the room's day total when the bar opens.
const GOAL_HEADROOM = 1000;
const opts = parseArgs(process.argv, "node overlays.test.js --url http://HOST:PORT/ [--out DIR]", ["url"],
  {out: process.cwd()});

// The overlay's screenshot over nothing: its corners must be see-through
// and something must be drawn.
async function transparentShot(page, name) {
  const file = path.join(opts.out, name);
  // Finite animations jump to their end: an alert fading in is drawn whole.
  const png = await page.screenshot({path: file, omitBackground: true, animations: "disabled"});
  const px = await pngPixels(page, png);
  const c = px.corners;
  check(c.every((p) => p[3] === 0), `${name}: the corners are transparent (alpha ${c.map((p) => p[3]).join(",")})`);
  check(px.opaque > 20, `${name}: the overlay is drawn (${px.opaque} opaque samples)`);
}

async function openOverlay(context, log, name, query) {
  const page = await newPage(context, name, log);
  await page.setViewportSize({width: 640, height: 360});
  const url = new URL(name + ".html?" + query, opts.url);
  // The base URL's settings (?ws=, ?protocol=) go on.
  for (const [k, v] of new URL(opts.url).searchParams) url.searchParams.set(k, v);
  await page.goto(url.toString());
  return page;
}

runTest({out: opts.out, prefix: "overlays", totalMs: TOTAL_TIMEOUT_MS}, async (context, log) => {
  const r = await fetch(new URL("/demo/token?user=alice&role=overlay", opts.url));
  const tok = await r.json();
  check(r.status === 200 && tok.role === "overlay" && tok.room === "alice", `an overlay token for room alice (${tok.role}, ${tok.room})`);
  const T = "token=" + encodeURIComponent(tok.token);

  const board = await openOverlay(context, log, "overlay-board", `${T}&period=day&n=${BOARD_N}`);
  await board.waitForSelector('body[data-joined="alice"]', {state: "attached"});
  await board.waitForFunction(() => document.getElementById("board-total").dataset.total !== "");
  const day0 = Number(await board.getAttribute("#board-total", "data-total"));
  const bobLine = '#board li[data-user="bob"]';
  const bob0 = await board.locator(bobLine).count() ? Number(await board.getAttribute(bobLine, "data-total")) : 0;
  check(Number.isInteger(day0), `the board shows the room's day total (${day0}) and bob at ${bob0}`);

  const target = day0 + GOAL_HEADROOM;
  const goal = await openOverlay(context, log, "overlay-goal", `${T}&target=${target}&period=day&title=Daily%20goal`);
  await goal.waitForSelector(`#goal[data-total="${day0}"]`);
  const p0 = Number(await goal.getAttribute("#goal", "data-percent"));
  check(p0 === Math.floor(day0 * 100 / target), `the goal bar starts at ${p0}% of ${target}`);

  const alerts = await openOverlay(context, log, "overlay-alerts", T);
  await alerts.waitForSelector('body[data-joined="alice"]', {state: "attached"});
  check(await alerts.getAttribute("body", "data-shown") === "0", "the alert box waits, empty");
  // A second alert box with its sound on (WebAudio; Chromium may play
  // without a click with --autoplay-policy=no-user-gesture-required).
  const loud = await openOverlay(context, log, "overlay-alerts", T + "&sound=1");
  await loud.waitForSelector('body[data-joined="alice"]', {state: "attached"});

  // bob, on the viewer page.
  const bob = await newPage(context, "bob", log);
  const demo = new URL(opts.url);
  demo.searchParams.set("user", "bob");
  await bob.goto(demo.toString());
  await bob.waitForSelector('body[data-user="bob"][data-joined="alice"]');
  const rose = bob.locator(`#gifts button[data-gift-id="${ROSE_ID}"]`);
  const rosePrice = Number(await rose.getAttribute("data-price"));
  const roseName = (await rose.locator(".gift-name").innerText()).trim();
  for (let i = 0; i < COMBO_TAPS; i++) {
    await rose.click();
    await sleep(120);
  }

  // One alert for the combo; its counter reaches ×5.
  await alerts.waitForSelector(`#alert:not([hidden])[data-kind="gift"][data-from="bob"][data-count="${COMBO_TAPS}"]`);
  await transparentShot(alerts, "overlay-alerts-combo.png");
  const comboText = (await alerts.innerText("#alert")).replace(/\s+/g, " ");
  const shown = await alerts.getAttribute("body", "data-shown");
  check(comboText.includes(`bob sent ${roseName}`) && comboText.includes("×" + COMBO_TAPS),
    `the alert reads "${comboText}"`);
  check(shown === "1", `the ${COMBO_TAPS} Roses made one alert (alerts shown: ${shown})`);

  await bob.fill("#tip-amount", String(TIP));
  await bob.fill("#tip-text", TIP_TEXT);
  await bob.click("#tip-send");
  // The tip waits for the combo's alert to end, then shows with its message.
  await alerts.waitForSelector('#alert:not([hidden])[data-kind="tip"][data-from="bob"]', {timeout: 15000});
  // The picture first: the alert is on screen for 5 s only, and a loaded
  // machine can take that long over the checks below.
  await transparentShot(alerts, "overlay-alerts-tip.png");
  const tipText = (await alerts.innerText("#alert")).replace(/\s+/g, " ");
  check(tipText.includes("bob tipped") && tipText.includes(TIP_TEXT) && tipText.includes(String(TIP)),
    `the tip's alert reads "${tipText}"`);
  check(await alerts.getAttribute("body", "data-shown") === "2", "two alerts in all");

  await loud.waitForSelector('body[data-shown="2"][data-beeps="2"]', {state: "attached"});
  check(await alerts.getAttribute("body", "data-beeps") === null,
    "the box with ?sound=1 beeped once an alert (2), the one without never");

  // The board and the goal, from the room's pushes.
  const spent = COMBO_TAPS * rosePrice + TIP;
  await board.waitForSelector(`${bobLine}[data-total="${bob0 + spent}"]`);
  await board.waitForSelector(`#board-total[data-total="${day0 + spent}"]`);
  const rows = await board.locator("#board li").count();
  check(rows >= 1 && rows <= BOARD_N, `the board shows bob at ${bob0 + spent} today, ${rows} rows (n=${BOARD_N})`);
  const foot = await board.innerText("#board-total");
  check(foot.replace(/\D/g, "") === String(day0 + spent), `the board's foot reads "${foot}"`);
  await transparentShot(board, "overlay-board.png");

  const total = day0 + spent;
  const percent = Math.floor(total * 100 / target);
  await goal.waitForSelector(`#goal[data-total="${total}"][data-percent="${percent}"]`);
  const goalText = (await goal.innerText("#goal")).replace(/\s+/g, " ");
  check(goalText.includes("Daily goal") && goalText.includes(percent + "%") &&
    goalText.includes(total.toLocaleString("en-US") + " / " + target.toLocaleString("en-US")),
  `the goal bar reads "${goalText}"`);
  const width = await goal.evaluate(() => document.getElementById("goal-fill").style.width);
  check(width === Math.min(100, percent) + "%", `its fill is ${width} wide`);
  await transparentShot(goal, "overlay-goal.png");

  const bad = await openOverlay(context, log, "overlay-goal", T);
  await bad.waitForSelector("#overlay-error:not([hidden])");
  const said = await bad.innerText("#overlay-error");
  check(/target/.test(said), `a goal bar without a target says "${said}"`);
});
