// features.test.js - the live-room features of issue 14 as a person sees them
// on the pages of clients/web, in a real browser (Debian's Chromium under
// playwright-core).
//
//   node features.test.js --url http://127.0.0.1:PORT/ --admin http://127.0.0.1:ADMIN_PORT
//                         --rival ROOM --out DIR
//   (TIPCAST_TEST_ADMIN_TOKEN: an admin's JWT for the admin API)
//
// Pages: viewers bob and carol and the creator alice on the demo page, alice's
// dashboard, and the goal and PK overlays of alice's room. Checked:
//   - combos: bob taps the Rose N times; carol's feed has ONE line for the
//     server's combo (combo_id) whose counter reads ×N, closed (combo_end) once
//     the combo's window has passed;
//   - fan badges: the badge beside bob's name on that line and on the all-time
//     board is the one his all-time total (on the board) earns with the default
//     fan-levels (1 Fan, 1000 Silver, 10000 Gold, 100000 VIP);
//   - pins: bob's tip of 1000 coins shows as pinned on carol's page (with the
//     time left) and in alice's dashboard; carol has no unpin button, alice
//     has; alice unpins it and it is gone from every page;
//   - the goal: alice sets a goal of 1000 coins on her dashboard; carol's page
//     and the goal overlay (no ?target=: the room's goal) show 0%, 50% after a
//     Rocket, then 100% and "reached" after another; cleared, it disappears;
//   - moderators: alice adds carol on the dashboard (listed), then removes her;
//   - PK: staff start a battle of alice against the rival room; bob sends a
//     Rocket to alice (the page) and a Rose to the rival (the SDK in his page);
//     carol's page and the PK overlay show both rooms' scores, then the result
//     ("alice wins!");
//   - a campaign of alice (created and approved through the admin API) shows
//     as a card on bob's page; bob pledges 300 coins with its form: his balance
//     drops by 300 and the card's numbers count the pledge.
// Screenshots go to DIR (features-*.png, overlay-*-room.png) and are checked
// not to be blank. Exit status 0 = pass, 1 = fail, 2 = bad usage.
"use strict";

const path = require("path");
const {check, newPage, parseArgs, pngPixels, runTest, sleep} = require("./lib");

const TOTAL_TIMEOUT_MS = 130000;
const ROCKET_ID = process.env.TIPCAST_TEST_GIFT_ID || "3";
const ROSE_ID = process.env.TIPCAST_TEST_COMBO_GIFT_ID || "1";
const COMBO_TAPS = 4;
const PIN_TIP = 1000;          // pin-min-amount's default: pinned for 60 s
const GOAL = 1000;             // two Rockets of 500
const PLEDGE = 300;
const PK_SECONDS = 8;
// The server's default fan levels.
const LEVELS = [[100000, "VIP"], [10000, "Gold"], [1000, "Silver"], [1, "Fan"]];
// Waits longer than the library's default step (the combo window, a PK battle).
const LONG_WAIT_MS = 30000;

const opts = parseArgs(process.argv,
  "node features.test.js --url http://HOST:PORT/ --admin http://HOST:PORT --rival ROOM [--out DIR]",
  ["url", "admin", "rival"], {out: process.cwd()});
const ADMIN_TOKEN = process.env.TIPCAST_TEST_ADMIN_TOKEN;
if (!ADMIN_TOKEN) {
  console.error("TIPCAST_TEST_ADMIN_TOKEN is required");
  process.exit(2);
}

function badgeFor(total) {
  for (const [min, name] of LEVELS) if (total >= min) return name;
  return "";
}

async function adminApi(method, p, body) {
  const r = await fetch(opts.admin + p, {
    method,
    headers: {"authorization": "Bearer " + ADMIN_TOKEN, "content-type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json();
  if (r.status >= 300) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

function pageUrl(file, params) {
  const u = new URL(file, opts.url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

async function openDemo(context, user, log) {
  const page = await newPage(context, user, log);
  await page.goto(pageUrl("/", {user}));
  await page.waitForSelector(`body[data-user="${user}"][data-joined="alice"]`);
  if (user !== "alice") {
    await page.waitForSelector("#gifts button[data-gift-id]");
    await page.waitForFunction(() => document.getElementById("balance").dataset.balance !== "");
  }
  return page;
}

// A person's tap: the page comes to the front first (a tab in the background
// may have its animation frames held back, and a click waits for them).
async function tap(page, sel) {
  await page.bringToFront();
  await page.click(sel);
}

async function balanceOf(page) {
  return Number(await page.getAttribute("#balance", "data-balance"));
}

// Waits until a page's balance is `want` (the ack of the latest request).
async function balanceIs(page, want) {
  await page.waitForFunction((w) => document.getElementById("balance").dataset.balance === String(w), want);
}

async function shot(page, file, omitBackground) {
  const png = await page.screenshot({path: file, omitBackground: !!omitBackground, animations: "disabled"});
  const px = await pngPixels(page, png);
  check(px.distinct >= 8 && px.opaque > 0, `${path.basename(file)} is not blank (${px.distinct} colours)`);
}

runTest({out: opts.out, prefix: "features", totalMs: TOTAL_TIMEOUT_MS}, async (context, log) => {
  const bob = await openDemo(context, "bob", log);
  const carol = await openDemo(context, "carol", log);
  const alice = await openDemo(context, "alice", log);
  const dash = await newPage(context, "dashboard", log);
  await dash.goto(pageUrl("/dashboard.html", {user: "alice", admin: opts.admin}));
  await dash.waitForSelector('body[data-joined="alice"]');
  const goalOverlay = await newPage(context, "overlay-goal", log);
  await goalOverlay.goto(pageUrl("/overlay-goal.html", {demo: "alice"}));
  await goalOverlay.waitForSelector('body[data-joined="alice"]', {state: "attached"});
  const pkOverlay = await newPage(context, "overlay-pk", log);
  await pkOverlay.goto(pageUrl("/overlay-pk.html", {demo: "alice"}));
  await pkOverlay.waitForSelector('body[data-joined="alice"]', {state: "attached"});
  console.log("ok: the pages joined room alice");

  // A goal left by an earlier run would change what the pages show: clear it.
  if (await dash.isEnabled("#room-goal-clear")) {
    await tap(dash, "#room-goal-clear");
    await carol.waitForSelector("#goal", {state: "hidden"});
  }

  // ---- combos and badges ----
  let balance = await balanceOf(bob);
  const roseButton = `#gifts button[data-gift-id="${ROSE_ID}"]`;
  const rosePrice = Number(await bob.getAttribute(roseButton, "data-price"));
  for (let i = 0; i < COMBO_TAPS; i++) await tap(bob, roseButton);
  balance -= COMBO_TAPS * rosePrice;
  await balanceIs(bob, balance);
  const comboLine = `#feed li[data-kind="gift"][data-from="bob"][data-gift="${ROSE_ID}"][data-combo-id]`;
  await carol.waitForFunction(([sel, n]) => {
    const li = document.querySelector(sel);
    return li && li.dataset.count === String(n);
  }, [comboLine, COMBO_TAPS]);
  const combo = await carol.$eval(comboLine, (li) => ({
    id: li.dataset.comboId, count: li.dataset.count, counter: li.querySelector(".combo").textContent,
    badge: (li.querySelector(".badge") || {}).textContent || "", lines: document.querySelectorAll(
      `#feed li[data-combo-id="${li.dataset.comboId}"]`).length,
  }));
  check(combo.lines === 1 && combo.counter === "×" + COMBO_TAPS,
    `carol's feed: one line for bob's ${COMBO_TAPS} Roses, counter "${combo.counter}"`);
  await carol.waitForSelector(`#feed li[data-combo-id="${combo.id}"][data-ended="1"]`, {timeout: LONG_WAIT_MS});
  check(true, "the combo's line is closed by its combo_end");
  // The board: bob's all-time total and badge (pushes follow the gifts within board-push-ms).
  await carol.waitForFunction(() => {
    const li = document.querySelector('#boards .period[data-period="all"] li[data-user="bob"]');
    return li && li.dataset.badge;
  });
  const board = await carol.$eval('#boards .period[data-period="all"] li[data-user="bob"]', (li) => ({
    total: Number(li.dataset.total), badge: li.querySelector(".badge").textContent,
  }));
  const want = badgeFor(board.total);
  check(board.badge === want, `bob's badge on the all-time board is "${board.badge}" for ${board.total} coins`);
  check(combo.badge === want, `the badge on bob's feed line is "${combo.badge}"`);

  // ---- a pinned tip, removed by the owner ----
  await bob.fill("#tip-amount", String(PIN_TIP));
  await bob.fill("#tip-text", "pin me please");
  await tap(bob, "#tip-send");
  balance -= PIN_TIP;
  await balanceIs(bob, balance);
  // The newest pin ends last: the list's last line (a pin of an earlier run may still be up).
  const pinSel = '#pins li[data-from="bob"]:last-child';
  await carol.waitForFunction(() => {
    const li = document.querySelector('#pins li[data-from="bob"]:last-child q');
    return li && li.textContent === "pin me please" && /^(5\d s|1:00)$/.test(li.nextSibling.textContent);
  });
  const pin = await carol.$eval(pinSel, (li) => ({
    order: li.dataset.order, text: li.querySelector("q").textContent, left: li.querySelector(".pin-left").textContent,
    unpin: !!li.querySelector("button.unpin"),
  }));
  check(pin.text === "pin me please" && /^(5\d s|1:00)$/.test(pin.left),
    `carol sees bob's tip pinned ("${pin.text}", ${pin.left} left)`);
  check(!pin.unpin, "carol (a viewer) has no unpin button");
  await dash.waitForSelector(`#room-pins li[data-order="${pin.order}"]`);
  check(true, "alice's dashboard lists the pinned tip");
  await tap(alice, `#pins li[data-order="${pin.order}"] button.unpin`);
  for (const [name, page, sel] of [["carol", carol, "#pins"], ["bob", bob, "#pins"], ["dashboard", dash, "#room-pins"]]) {
    await page.waitForSelector(`${sel} li[data-order="${pin.order}"]`, {state: "detached"});
    console.log(`ok: the pin is gone from ${name}'s page`);
  }

  // ---- moderators ----
  await dash.fill("#mod-user", "carol");
  await tap(dash, "#mod-add");
  await dash.waitForSelector('#mods li[data-user="carol"]');
  check(true, "the dashboard lists carol as a moderator");
  await tap(dash, '#mods li[data-user="carol"] button.mod-remove');
  await dash.waitForSelector('#mods li[data-user="carol"]', {state: "detached"});
  check(true, "carol removed from the moderators");

  // ---- the goal ----
  await dash.fill("#room-goal-amount", String(GOAL));
  await dash.fill("#room-goal-text", "new mic");
  await tap(dash, "#room-goal-set");
  const goalIs = async (page, sel, percent) => page.waitForFunction(([s, p]) => {
    const b = document.querySelector(s);
    return b && !b.hidden && b.dataset.percent === String(p);
  }, [sel, percent]);
  await goalIs(carol, "#goal", 0);
  await goalIs(goalOverlay, "#goal", 0);
  check((await carol.textContent("#goal-title")) === "new mic", "carol sees the goal's title");
  const rocket = `#gifts button[data-gift-id="${ROCKET_ID}"]`;
  const rocketPrice = Number(await bob.getAttribute(rocket, "data-price"));
  await tap(bob, rocket);
  balance -= rocketPrice;
  await balanceIs(bob, balance);
  const half = Math.floor(rocketPrice * 100 / GOAL);
  await goalIs(carol, "#goal", half);
  await goalIs(goalOverlay, "#goal", half);
  check((await carol.textContent("#goal-numbers")) === `${rocketPrice} / 1,000 coins`,
    `carol's goal reads ${await carol.textContent("#goal-numbers")} (${half}%)`);
  check(await carol.isHidden("#goal-reached"), "not reached yet");
  await sleep(3200); // past the combo window: the next Rocket is its own combo
  await tap(bob, rocket);
  balance -= rocketPrice;
  await balanceIs(bob, balance);
  await goalIs(carol, "#goal", 100);
  await carol.waitForSelector("#goal-reached", {state: "visible"});
  await goalIs(goalOverlay, "#goal", 100);
  await goalOverlay.waitForSelector("#goal.reached");
  check((await carol.textContent("#goal-percent")) === "100%" &&
    (await goalOverlay.getAttribute("#goal", "data-source")) === "room",
  "carol's page and the goal overlay (the room's goal) read 100%, reached");
  await carol.waitForSelector('#feed li[data-kind="goal_reached"]');
  await dash.waitForFunction(() => /reached!/.test(document.getElementById("room-goal-now").textContent));
  await shot(goalOverlay, path.join(opts.out, "overlay-goal-room.png"), true);
  await shot(carol, path.join(opts.out, "features-carol.png"));
  await shot(dash, path.join(opts.out, "features-dashboard.png"));
  await tap(dash, "#room-goal-clear");
  await carol.waitForSelector("#goal", {state: "hidden"});
  check(true, "the cleared goal is gone from carol's page");
  // The one rule every page follows (common.js), at its edges: a late push
  // does not take back progress or "reached", goal_reached and goal_cleared
  // of another goal leave the shown one alone.
  const rule = await carol.evaluate(async () => {
    const {goalAfterEvent, mergeGoal} = await import("/common.js");
    const g = goalAfterEvent(null, {kind: "goal", goal_id: 7, target: 100, title: "t"});
    const reached = mergeGoal(g, goalAfterEvent(g, {kind: "goal_reached", goal_id: 7, progress: 100}));
    const afterOldPush = mergeGoal(reached, {goal_id: 7, target: 100, progress: 40, reached: false});
    return {
      fresh: g.progress === 0 && !g.reached && g.gift === 0 && g.title === "t",
      keeps: afterOldPush.progress === 100 && afterOldPush.reached,
      otherReached: goalAfterEvent(g, {kind: "goal_reached", goal_id: 8, progress: 5}) === g,
      otherCleared: goalAfterEvent(g, {kind: "goal_cleared", goal_id: 8}) === g,
      cleared: goalAfterEvent(g, {kind: "goal_cleared", goal_id: 7}) === null,
      notGoal: goalAfterEvent(g, {kind: "gift"}) === undefined,
      newGoal: mergeGoal(reached, goalAfterEvent(reached, {kind: "goal", goal_id: 9, target: 5})).progress === 0,
    };
  });
  check(Object.values(rule).every(Boolean), `the goal rule of common.js: ${JSON.stringify(rule)}`);

  // ---- a PK battle ----
  const battle = await adminApi("POST", "/api/v1/pk", {room_a: "alice", room_b: opts.rival, seconds: PK_SECONDS});
  check(battle.state === "running", `PK battle ${battle.id} running`);
  await sleep(300);
  await tap(bob, rocket);
  balance -= rocketPrice;
  await balanceIs(bob, balance);
  // bob's Rose to the rival, through the SDK in his page (the demo page only pays alice).
  const rivalAck = await bob.evaluate(async ([room, gift]) => {
    const {TipcastClient} = await import("/sdk/tipcast.js");
    const token = (await (await fetch("/demo/token?user=bob")).json()).token;
    const c = new TipcastClient({url: `ws://${location.host}/ws`, token});
    await c.connect();
    try {
      return await c.gift({room, gift: Number(gift)});
    } finally {
      c.close();
    }
  }, [opts.rival, ROSE_ID]);
  balance -= rivalAck.amount;
  const scoresAre = (page, a, b) => page.waitForFunction(([x, y]) => {
    const box = document.getElementById("pk");
    return !box.hidden && box.dataset.scoreA === String(x) && box.dataset.scoreB === String(y);
  }, [a, b], {timeout: LONG_WAIT_MS});
  await scoresAre(carol, rocketPrice, rivalAck.amount);
  await scoresAre(pkOverlay, rocketPrice, rivalAck.amount);
  check((await carol.textContent("#pk-name-b")) === opts.rival && (await carol.textContent("#pk-score-a")) ===
    String(rocketPrice), `carol sees the PK scores alice ${rocketPrice} – ${rivalAck.amount} ${opts.rival}`);
  await shot(pkOverlay, path.join(opts.out, "overlay-pk-room.png"), true);
  await carol.waitForFunction(() => document.getElementById("pk").dataset.result !== "", null, {timeout: LONG_WAIT_MS});
  const result = await carol.textContent("#pk-result");
  check(result === "alice wins!", `carol sees the result: "${result}"`);
  await pkOverlay.waitForFunction(() => document.getElementById("pk").dataset.result === "a", null, {timeout: LONG_WAIT_MS});
  check(true, "the PK overlay shows alice's win");

  // ---- a campaign ----
  const deadline = new Date(Date.now() + 3600000).toISOString();
  const camp = await adminApi("POST", "/api/v1/campaigns", {request_id: "browser-" + Date.now(), creator: "alice",
    title: "new album", description: "ten songs", target: 2000, deadline, mode: "flexible", tiers: []});
  await adminApi("POST", `/api/v1/campaigns/${camp.id}/approve`, {});
  await bob.waitForSelector(`#campaign[data-campaign="${camp.id}"][data-state="open"]`, {timeout: LONG_WAIT_MS});
  check(true, `bob's page shows campaign ${camp.id} as open`);
  check(await alice.isHidden("#pledge-form"), "alice (the creator) has no pledge form");
  await bob.fill("#pledge-amount", String(PLEDGE));
  await tap(bob, "#pledge-send");
  balance -= PLEDGE;
  await balanceIs(bob, balance);
  await bob.waitForSelector(`#campaign[data-campaign="${camp.id}"][data-pledged="${PLEDGE}"][data-backers="1"]`,
    {timeout: LONG_WAIT_MS});
  const numbers = await bob.textContent("#campaign-numbers");
  check(numbers === "300 / 2,000 coins (15%)" && (await bob.textContent("#campaign-backers")) === "1 backer",
    `bob's campaign card reads "${numbers}", 1 backer`);
  await carol.waitForSelector(`#campaign[data-campaign="${camp.id}"][data-pledged="${PLEDGE}"]`);
  check(true, "carol's card counts the pledge too");
  await shot(bob, path.join(opts.out, "features-bob.png"));
  await shot(alice, path.join(opts.out, "features-alice.png"));
});
