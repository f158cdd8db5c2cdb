// dashboard.test.js - drives the creator dashboard (clients/web/dashboard.html)
// in a real browser (Debian's Chromium under playwright-core).
//
//   node dashboard.test.js --url http://127.0.0.1:PORT/ --admin http://127.0.0.1:ADMIN_PORT --out DIR
//   environment: TIPCAST_TEST_ADMIN_TOKEN  an admin's token for the admin API,
//                used by the test itself to read what the dashboard should show
//
// tipcastd must run with demo on, settlement-delay-days 0 and withdrawal-min
// at most 100 (tests/test_browser.py does). Checked, as alice sees it:
//   - bob's Rocket (sent from the viewer demo page) shows in the live feed
//     with its order id;
//   - Today, This week and This month each grow by exactly the order's
//     creator_net, which the admin API's order split says and which equals
//     the revenue rule applied to the price (fee and agency share rounded
//     down); bob's line in the top supporters grows by the price; the
//     chart's last hour and its 24 h total grow by the net too;
//   - after a settlement run (by the test, through the admin API), a
//     withdrawal of 100 is answered "requested", its row appears in the list,
//     and Withdrawable equals the admin API's balance; one above it is
//     refused insufficient_available, on the page;
//   - "Create overlay links" shows three overlay URLs on this host, holding
//     an overlay token for room alice.
// The page's figures at the end are printed as a line "FIGURES {json}" for
// tests/test_browser.py to hold against PostgreSQL. Screenshots:
// DIR/dashboard*.png, checked not blank. Exit 0 pass, 1 fail, 2 usage.
"use strict";

const path = require("path");
const {check, newPage, parseArgs, pngPixels, runTest, sleep} = require("./lib");

const TOTAL_TIMEOUT_MS = 120000;
const ROCKET_ID = process.env.TIPCAST_TEST_GIFT_ID || "3";
const WITHDRAW = 100;
const opts = parseArgs(process.argv,
  "node dashboard.test.js --url http://HOST:PORT/ --admin http://HOST:ADMIN_PORT [--out DIR]",
  ["url", "admin"], {out: process.cwd()});
const ADMIN_TOKEN = process.env.TIPCAST_TEST_ADMIN_TOKEN;
if (!ADMIN_TOKEN) {
  console.error("TIPCAST_TEST_ADMIN_TOKEN is not set");
  process.exit(2);
}

// The admin API as the test calls it (Node's fetch; no browser).
async function admin(method, p, body) {
  const r = await fetch(opts.admin + p, {
    method,
    headers: Object.assign({Authorization: "Bearer " + ADMIN_TOKEN},
      body === undefined ? {} : {"Content-Type": "application/json"}),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${p}: HTTP ${r.status} ${text}`);
  return JSON.parse(text);
}

async function figures(page) {
  return page.evaluate(() => {
    const n = (sel, key) => Number(document.querySelector(sel).dataset[key]);
    const sup = document.querySelector('#supporters li[data-user="bob"]');
    const bars = document.querySelectorAll("#chart rect.bar");
    return {
      day: n("#earn-day", "net"), week: n("#earn-week", "net"), month: n("#earn-month", "net"),
      withdrawable: n("#earn-balance", "withdrawable"),
      bob: sup ? Number(sup.dataset.net) : 0,
      chart: n("#chart-total", "net"),
      lastHour: bars.length ? Number(bars[bars.length - 1].dataset.net) : NaN,
      rounds: Number(document.body.dataset.stats || 0),
    };
  });
}

// What the revenue rule makes of an amount (docs/settlement.md): the tier by
// the month's volume before the order, fee and share rounded down.
function splitByRule(rule, amount, volumeBefore, hasAgency) {
  let fee = 0;
  let best = -1;
  for (const t of rule.tiers) {
    if (t.min_volume <= volumeBefore && t.min_volume > best) {
      best = t.min_volume;
      fee = t.platform_fee_bp;
    }
  }
  const platformFee = Math.floor(amount * fee / 10000);
  const agencyShare = hasAgency ? Math.floor(amount * rule.agency_share_bp / 10000) : 0;
  return {platformFee, agencyShare, net: amount - platformFee - agencyShare};
}

async function notBlank(page, file) {
  const png = await page.screenshot({path: file, fullPage: true});
  const px = await pngPixels(page, png);
  check(px.distinct >= 20, `${path.basename(file)} is not blank (${px.distinct} colours in its samples)`);
}

runTest({out: opts.out, prefix: "dashboard", totalMs: TOTAL_TIMEOUT_MS, viewport: {width: 1366, height: 900}},
  async (context, log) => {
    const dash = await newPage(context, "dashboard", log);
    const url = new URL("dashboard.html", opts.url);
    url.search = new URL(opts.url).search; // the base URL's settings (?ws=, ?protocol=) go on
    url.searchParams.set("user", "alice");
    url.searchParams.set("admin", opts.admin);
    await dash.goto(url.toString());
    await dash.waitForSelector('body[data-creator="alice"][data-joined="alice"][data-stats]');
    const f0 = await figures(dash);
    check(["day", "week", "month", "withdrawable"].every((k) => Number.isInteger(f0[k])),
      `the dashboard shows alice's earnings ${JSON.stringify(f0)}`);
    check(f0.day <= f0.week || f0.day <= f0.month, "today is within the week or the month");

    // bob sends a Rocket from the viewer page.
    const bob = await newPage(context, "bob", log);
    const demo = new URL(opts.url);
    demo.searchParams.set("user", "bob");
    await bob.goto(demo.toString());
    await bob.waitForSelector('body[data-user="bob"][data-joined="alice"]');
    const rocket = bob.locator(`#gifts button[data-gift-id="${ROCKET_ID}"]`);
    const price = Number(await rocket.getAttribute("data-price"));
    await rocket.click();
    const anim = bob.locator("#stage .anim[data-order]").first();
    await anim.waitFor({state: "visible"});
    const order = await anim.getAttribute("data-order");

    // The live feed.
    await dash.waitForSelector(`#feed li[data-kind="gift"][data-from="bob"][data-order="${order}"]`);
    check(true, `the dashboard's live feed shows bob's gift (order ${order})`);

    // What the order earned alice, by the admin API and by the rule.
    let o = null;
    for (let i = 0; i < 50; i++) {
      try {
        o = await admin("GET", "/api/v1/orders/" + encodeURIComponent(order));
        if (o.split && typeof o.split.creator_net === "number") break;
      } catch (e) {
        if (i === 49) throw e;
      }
      await sleep(200);
    }
    const rules = await admin("GET", "/api/v1/revenue-rules");
    const rule = rules.items.find((r) => r.id === o.split.rule_id);
    check(rule, `the order was split by rule ${o.split.rule_id}`);
    const want = splitByRule(rule, price, o.split.month_volume_before, !!o.split.agency_id);
    check(o.amount === price && o.split.creator_net === want.net,
      `the admin API's split of ${price}: fee ${o.split.platform_fee}, agency ${o.split.agency_share}, ` +
      `net ${o.split.creator_net} (the rule says ${want.platformFee}/${want.agencyShare}/${want.net})`);
    const net = o.split.creator_net;

    await dash.waitForFunction(({f0, net}) => {
      const n = (id) => Number(document.getElementById(id).dataset.net);
      return n("earn-day") === f0.day + net && n("earn-week") === f0.week + net && n("earn-month") === f0.month + net;
    }, {f0, net});
    const f1 = await figures(dash);
    check(f1.day === f0.day + net && f1.week === f0.week + net && f1.month === f0.month + net,
      `today ${f0.day} -> ${f1.day}, week ${f0.week} -> ${f1.week}, month ${f0.month} -> ${f1.month}: each + ${net} net`);
    const dayText = await dash.innerText("#earn-day .card-net");
    check(dayText.replace(/\D/g, "") === String(f1.day), `Today reads "${dayText}"`);
    check(f1.bob === f0.bob + price, `bob's line in the top supporters grew by ${price} (${f0.bob} -> ${f1.bob})`);
    check(f1.chart === f0.chart + net || (f1.lastHour === net && f1.chart >= net),
      `the chart's 24 h total grew by the net (${f0.chart} -> ${f1.chart}; last hour ${f1.lastHour})`);
    await notBlank(dash, path.join(opts.out, "dashboard.png"));

    // ---- withdrawal ------------------------------------------------------------
    await admin("POST", "/api/v1/settlements/run");
    const bal = await admin("GET", "/api/v1/creators/alice/balance");
    check(bal.withdrawable >= WITHDRAW, `after the settlement run alice may withdraw ${bal.withdrawable}`);
    await dash.fill("#withdraw-amount", String(WITHDRAW));
    await dash.click("#withdraw-send");
    await dash.waitForSelector('#withdraw-result[data-state="requested"]:not([hidden])');
    const wid = await dash.getAttribute("#withdraw-result", "data-id");
    const result = await dash.innerText("#withdraw-result");
    check(/requested/.test(result) && result.includes("#" + wid), `the page says "${result}"`);
    await dash.waitForSelector(`#withdrawals tr[data-id="${wid}"][data-state="requested"][data-amount="${WITHDRAW}"]`);
    check(true, `withdrawal #${wid} of ${WITHDRAW} is listed as requested`);
    const listed = await admin("GET", "/api/v1/withdrawals?creator=alice&limit=5");
    check(listed.items.some((w) => String(w.id) === wid && w.amount === WITHDRAW && w.state === "requested"),
      `the admin API has withdrawal #${wid}`);
    const bal2 = await admin("GET", "/api/v1/creators/alice/balance");
    await dash.waitForFunction((w) => Number(document.getElementById("earn-balance").dataset.withdrawable) === w,
      bal2.withdrawable);
    check(bal2.withdrawable === bal.withdrawable - WITHDRAW,
      `Withdrawable on the page is the admin API's ${bal2.withdrawable} (${bal.withdrawable} - ${WITHDRAW})`);

    await dash.fill("#withdraw-amount", String(bal2.withdrawable + 1));
    await dash.click("#withdraw-send");
    await dash.waitForSelector('#withdraw-result[data-state="insufficient_available"]:not([hidden])');
    const refused = await dash.innerText("#withdraw-result");
    check(/insufficient_available/.test(refused), `a withdrawal above it is refused: "${refused}"`);

    // ---- overlay links ---------------------------------------------------------
    await dash.click("#overlay-mint");
    await dash.waitForSelector("#overlay-links:not([hidden])");
    const links = {};
    for (const k of ["alerts", "board", "goal"]) links[k] = await dash.inputValue("#url-" + k);
    const origin = new URL(opts.url).origin;
    for (const [k, v] of Object.entries(links)) {
      check(v.startsWith(`${origin}/overlay-${k}.html?token=`), `the ${k} link is ${v.slice(0, 60)}...`);
    }
    const token = new URL(links.goal).searchParams.get("token");
    const claims = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
    check(claims.role === "overlay" && claims.room === "alice",
      `the links hold an overlay token for room alice (${JSON.stringify(claims)})`);
    check(new URL(links.goal).searchParams.get("target") === "5000" &&
      new URL(links.board).searchParams.get("period") === "day", "the goal and board links carry their settings");
    await notBlank(dash, path.join(opts.out, "dashboard-links.png"));

    const f = await figures(dash);
    console.log("FIGURES " + JSON.stringify({day: f.day, week: f.week, month: f.month, withdrawable: f.withdrawable}));
  });
