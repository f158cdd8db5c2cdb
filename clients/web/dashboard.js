// dashboard.js - the creator dashboard.
//
// Two sources: the room's live events through the JavaScript SDK
// (/sdk/tipcast.js), and the creator's figures from the admin API
// (docs/admin-api.md), called from the browser with the creator's own token:
//   GET  /api/v1/me                          who the token is (the creator id)
//   GET  /api/v1/creators/{id}/stats         earnings per UTC day and hour, NET
//                                            of the platform fee and the agency
//                                            share (and of refunds), top supporters
//   GET  /api/v1/creators/{id}/balance       pending / available / withdrawable
//   POST /api/v1/withdrawals, GET /api/v1/withdrawals
//   POST /api/v1/creators/{id}/overlay-token the OBS overlay links
// and, over the WebSocket, the room's goal (goal, goal_clear), its pinned
// tips (unpin) and moderators (moderators, moderator_add, moderator_remove).
// The stats route is the one that gives net earnings by period: the balance
// route has net totals but no periods, and the WebSocket `earnings` request
// counts gross coins.
//
// Query: ?user=alice (demo: tokens from /demo/token) or ?token=JWT; ?admin=
// the admin API's base URL (default this host, port 8081); ?ws= the WebSocket.
import {TipcastClient} from "/sdk/tipcast.js";
import {
  $, Feed, adminBase, coins, coinsText, demoToken, describeError, el, errorBox, goalAfterEvent, mergeGoal, query, span,
  timeLeft, wsUrl,
} from "/common.js";

// The figures are read again this long after a gift or tip to the room (the
// ledger writes an order a few milliseconds after its ack; the rollups move
// with it), and in any case this often.
const STATS_AFTER_EVENT_MS = 1200;
const STATS_POLL_MS = 30000;
const STATS_RETRY_MS = 3000;
// A demo token is fetched again when older than this (they live an hour).
const DEMO_TOKEN_MAX_AGE_MS = 10 * 60 * 1000;
// An admin API call that takes longer is abandoned (and said so).
const API_TIMEOUT_MS = 15000;
const DAY_MS = 86400000;
const HOUR_MS = 3600000;
// Withdrawals listed (the newest).
const WITHDRAWALS_SHOWN = 20;
const TOP_SUPPORTERS = 10;
const ERROR_SHOW_MS = 10000;

const els = {
  creator: $("creator"), status: $("status"), live: $("live-pill"), error: $("error"),
  feed: $("feed"), feedEmpty: $("feed-empty"),
  supporters: $("supporters"), supportersEmpty: $("supporters-empty"),
  chart: $("chart"), chartTotal: $("chart-total"),
  withdrawForm: $("withdraw-form"), withdrawAmount: $("withdraw-amount"), withdrawSend: $("withdraw-send"),
  withdrawResult: $("withdraw-result"), withdrawals: $("withdrawals"), withdrawalsEmpty: $("withdrawals-empty"),
  overlayMint: $("overlay-mint"), overlayLinks: $("overlay-links"), overlayExp: $("overlay-exp"),
  goalTarget: $("goal-target"), overlayPeriod: $("overlay-period"),
};

const state = {
  id: null,          // the creator (the token's sub)
  client: null,
  statsTimer: null,
  goal: null,        // the room's goal ({goal_id, target, progress, reached, title}) or null
  pins: [],          // the room's pinned tips
  overlay: null,     // the minted overlay token's answer
  tokenCache: null,  // {token, at} in demo mode
};
const feed = new Feed(els.feed);

// ---- tokens and the admin API ----------------------------------------------------

const demoUser = query.get("user");
const givenToken = query.get("token");

async function token() {
  if (givenToken) return givenToken;
  if (!demoUser) throw new Error("no token: open the dashboard with ?token=JWT (or ?user=alice in the demo)");
  const c = state.tokenCache;
  if (c && Date.now() - c.at < DEMO_TOKEN_MAX_AGE_MS) return c.token;
  const t = await demoToken(demoUser);
  state.tokenCache = {token: t.token, at: Date.now()};
  return t.token;
}

// An admin API error: code, message, field and HTTP status, like the
// answer's {"error": {...}}.
class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || "HTTP " + status);
    this.status = status;
    this.code = e.code || "http_" + status;
    this.field = e.field;
  }
}

async function api(method, path, body) {
  const headers = {Authorization: "Bearer " + await token()};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), API_TIMEOUT_MS);
  let r;
  try {
    r = await fetch(adminBase() + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", signal: ctl.signal,
    });
  } catch (e) {
    throw Object.assign(new Error("the admin API at " + adminBase() + " cannot be reached (" + e.message + ")"),
      {code: "network"});
  } finally {
    clearTimeout(timer);
  }
  let answer = null;
  try { answer = await r.json(); } catch (e) { answer = null; }
  if (!r.ok) throw new ApiError(r.status, answer);
  return answer;
}

const showError = errorBox(els.error, ERROR_SHOW_MS);

function apiErrorText(e) {
  return (e.code ? e.code + ": " : "") + e.message;
}

// ---- earnings, supporters, chart ------------------------------------------------------

// UTC period starts (the stats route's periods are UTC).
function utcStarts(now) {
  const d = new Date(now);
  const today = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  const week = today - ((d.getUTCDay() + 6) % 7) * DAY_MS; // from Monday
  const month = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  return {today, week, month};
}

function isoDate(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

function setCard(id, net, sub, attrs) {
  const card = $(id);
  card.querySelector(".card-net").textContent = coinsText(net);
  card.querySelector(".card-sub").textContent = sub;
  for (const [k, v] of Object.entries(attrs)) card.dataset[k] = String(v);
}

async function refreshStats() {
  if (!state.id) return;
  const base = "/api/v1/creators/" + encodeURIComponent(state.id);
  const now = Date.now();
  const s = utcStarts(now);
  try {
    // One call for the three periods: the days from the earlier of this
    // week's Monday and the month's first day, summed here.
    const [days, hours, bal] = await Promise.all([
      api("GET", base + "/stats?granularity=day&from=" + isoDate(Math.min(s.week, s.month)) + "&top=" + TOP_SUPPORTERS),
      api("GET", base + "/stats?granularity=hour&from=" + new Date(Math.floor(now / HOUR_MS) * HOUR_MS - 23 * HOUR_MS)
        .toISOString().replace(".000Z", "Z")),
      api("GET", base + "/balance"),
    ]);
    const sum = {day: zero(), week: zero(), month: zero()};
    for (const it of days.items) {
      const start = Date.parse(it.period);
      if (start >= s.today) add(sum.day, it);
      if (start >= s.week) add(sum.week, it);
      if (start >= s.month) add(sum.month, it);
    }
    for (const [k, card] of [["day", "earn-day"], ["week", "earn-week"], ["month", "earn-month"]]) {
      const x = sum[k];
      setCard(card, x.net, "from " + coinsText(x.gross) + " gross · " + x.orders + (x.orders === 1 ? " order" : " orders"),
        {net: x.net, gross: x.gross, orders: x.orders});
    }
    setCard("earn-balance", bal.withdrawable, "pending " + coins(bal.pending) + " · available " + coins(bal.available),
      {withdrawable: bal.withdrawable, pending: bal.pending, available: bal.available});
    showSupporters(days.top_supporters);
    drawChart(hours.items);
    document.body.dataset.stats = String(++statsRound);
  } catch (e) {
    showError("Earnings: " + apiErrorText(e), e.code);
    // The admin API may be starting or briefly away: ask again soon rather
    // than at the next poll.
    if (!state.statsTimer) {
      state.statsTimer = setTimeout(() => { state.statsTimer = null; refreshStats(); }, STATS_RETRY_MS);
    }
  }
}
let statsRound = 0;

function zero() { return {net: 0, gross: 0, orders: 0}; }
function add(acc, it) {
  acc.net += Number(it.net) || 0;
  acc.gross += Number(it.gross) || 0;
  acc.orders += Number(it.orders) || 0;
}

function refreshStatsSoon() {
  if (state.statsTimer) return;
  state.statsTimer = setTimeout(() => { state.statsTimer = null; refreshStats(); }, STATS_AFTER_EVENT_MS);
}

function showSupporters(list) {
  els.supporters.textContent = "";
  (list || []).forEach((s, i) => {
    const li = el("li");
    li.dataset.user = s.user;
    li.dataset.net = String(s.net);
    li.append(span("rank", String(i + 1)), span("who", s.user),
      span("orders", s.orders + (s.orders === 1 ? " order" : " orders")), span("total", coins(s.net)));
    els.supporters.append(li);
  });
  els.supportersEmpty.hidden = (list || []).length > 0;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// Net income per hour as bars, drawn in SVG (no chart library): the
// tallest bar fills the height; hours are labelled every 4 bars in the
// viewer's local time.
function drawChart(items) {
  const c = els.chart;
  // Drawn at the element's own width, so that the text is not stretched.
  const W = Math.max(240, Math.round(c.clientWidth || 720)), H = 200, TOP = 14, BOTTOM = 22, LEFT = 8, RIGHT = 8;
  c.setAttribute("viewBox", `0 0 ${W} ${H}`);
  c.textContent = "";
  const n = items.length || 1;
  const max = Math.max(1, ...items.map((it) => Number(it.net) || 0));
  const slot = (W - LEFT - RIGHT) / n;
  const plotH = H - TOP - BOTTOM;
  c.append(svg("line", {x1: LEFT, x2: W - RIGHT, y1: H - BOTTOM, y2: H - BOTTOM, class: "axis"}));
  let total = 0;
  items.forEach((it, i) => {
    const net = Number(it.net) || 0;
    total += net;
    const h = net > 0 ? Math.max(2, plotH * net / max) : 0;
    const x = LEFT + i * slot + slot * 0.15;
    const bar = svg("rect", {x: x.toFixed(1), y: (H - BOTTOM - h).toFixed(1), width: (slot * 0.7).toFixed(1),
      height: h.toFixed(1), class: "bar", "data-period": it.period, "data-net": net, "data-gross": it.gross});
    const when = new Date(Date.parse(it.period));
    bar.append(svg("title", {}, when.toLocaleString([], {hour: "2-digit", minute: "2-digit"}) + ": " +
      coinsText(net) + " net (" + coins(it.gross) + " gross)"));
    c.append(bar);
    if (i % 4 === 0) {
      c.append(svg("text", {x: (x + slot * 0.35).toFixed(1), y: H - 6, class: "tick", "text-anchor": "middle"},
        when.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"})));
    }
  });
  c.append(svg("text", {x: W - RIGHT, y: TOP - 2, class: "tick", "text-anchor": "end"}, "max " + coins(max) + " / h"));
  els.chartTotal.textContent = coinsText(total) + " net";
  els.chartTotal.dataset.net = String(total);
}

// ---- withdrawals -----------------------------------------------------------------

async function refreshWithdrawals() {
  try {
    const page = await api("GET", "/api/v1/withdrawals?limit=" + WITHDRAWALS_SHOWN);
    const tbody = els.withdrawals.querySelector("tbody");
    tbody.textContent = "";
    for (const w of page.items) {
      const tr = el("tr");
      tr.dataset.id = String(w.id);
      tr.dataset.amount = String(w.amount);
      tr.dataset.state = w.state;
      tr.append(el("td", "", w.id), el("td", "num", coins(w.amount)), el("td", "state state-" + w.state, w.state),
        el("td", "", new Date(Date.parse(w.requested_at)).toLocaleString()));
      tbody.append(tr);
    }
    els.withdrawalsEmpty.hidden = page.items.length > 0;
  } catch (e) {
    showError("Withdrawals: " + apiErrorText(e), e.code);
  }
}

els.withdrawForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const amount = Number(els.withdrawAmount.value);
  if (!Number.isInteger(amount) || amount < 1) {
    showWithdrawResult("A withdrawal is a whole number of coins, at least 1.", "bad_amount");
    return;
  }
  els.withdrawSend.disabled = true;
  try {
    // A fresh idempotency key per request: the route answers a repeat of
    // the same key with the same withdrawal.
    const w = await api("POST", "/api/v1/withdrawals", {amount, request_id: "dash-" + crypto.randomUUID()});
    showWithdrawResult("Withdrawal #" + w.id + " of " + coinsText(w.amount) + ": " + w.state + ".", w.state, w.id);
  } catch (e) {
    showWithdrawResult("Refused: " + apiErrorText(e), e.code);
  } finally {
    els.withdrawSend.disabled = false;
  }
  refreshWithdrawals();
  refreshStats();
});

function showWithdrawResult(text, st, id) {
  els.withdrawResult.textContent = text;
  els.withdrawResult.dataset.state = st || "";
  els.withdrawResult.dataset.id = id === undefined ? "" : String(id);
  els.withdrawResult.className = "result " + (id === undefined ? "bad" : "ok");
  els.withdrawResult.hidden = false;
}

// ---- overlay links -----------------------------------------------------------------

function overlayUrls() {
  const o = state.overlay;
  if (!o) return;
  const base = location.origin + "/";
  const t = "token=" + encodeURIComponent(o.token);
  const period = els.overlayPeriod.value;
  const target = Math.max(1, Math.floor(Number(els.goalTarget.value) || 5000));
  const title = period === "all" ? "Goal" : period === "day" ? "Daily goal" : period === "week" ? "Weekly goal" : "Monthly goal";
  $("url-alerts").value = base + "overlay-alerts.html?" + t;
  $("url-board").value = base + "overlay-board.html?" + t + "&period=" + period + "&n=5";
  $("url-goal").value = base + "overlay-goal.html?" + t + "&target=" + target + "&period=" + period +
    "&title=" + encodeURIComponent(title);
  $("url-pk").value = base + "overlay-pk.html?" + t;
  els.overlayExp.textContent = "The links work until " + new Date(o.exp * 1000).toLocaleString() +
    " (room " + o.room + "). Create new links to replace them.";
  els.overlayLinks.hidden = false;
}

els.overlayMint.addEventListener("click", async () => {
  els.overlayMint.disabled = true;
  try {
    state.overlay = await api("POST", "/api/v1/creators/" + encodeURIComponent(state.id) + "/overlay-token", {});
    overlayUrls();
  } catch (e) {
    showError("Overlay links: " + apiErrorText(e), e.code);
  } finally {
    els.overlayMint.disabled = false;
  }
});
els.goalTarget.addEventListener("input", overlayUrls);
els.overlayPeriod.addEventListener("change", overlayUrls);

els.overlayLinks.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-copy]");
  if (!b) return;
  const input = $(b.dataset.copy);
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    b.textContent = "Copied";
  } catch (e) {
    b.textContent = "Select + copy";
  }
  setTimeout(() => { b.textContent = "Copy"; }, 1500);
});

// ---- the live room -----------------------------------------------------------------

function setStatus(st, text) {
  els.status.dataset.state = st;
  els.status.textContent = text;
}

function setLive(live) {
  els.live.dataset.live = String(!!live);
  els.live.textContent = live ? "you are live" : "not live";
}

async function connectRoom() {
  const client = new TipcastClient({url: wsUrl(), token});
  state.client = client;
  client.on("state", (s) => {
    if (s.state === "open") setStatus("live", "connected");
    else if (s.state === "reconnecting") setStatus("retrying", "reconnecting…");
    else if (s.state === "connecting") setStatus("connecting", "connecting…");
    else if (s.state === "closed") setStatus("retrying", "closed");
  });
  client.on("snapshot", (snap) => {
    if (snap.room !== state.id) return;
    document.body.dataset.joined = snap.room;
    setLive(snap.live);
    if (snap.reset) feed.reset(snap, "Some events were missed while the dashboard was away.");
    for (const e of snap.events || []) showEvent(e);
    setRoomGoal(snap.goal || null);
    setRoomPins(snap.pins || []);
    client.moderators(state.id).then((m) => showMods(m.moderators),
      (e) => showError("Moderators: " + describeError(e), e.code));
  });
  client.on("leaderboard", (m) => { if (m.room === state.id) setRoomGoal(m.goal || null); });
  client.on("event", (e) => {
    if (e.room !== state.id) return;
    onRoomFeature(e);
    showEvent(e);
    if (e.kind === "gift" || e.kind === "tip") refreshStatsSoon();
  });
  client.on("room", (m) => { if (m.room === state.id) setLive(m.live); });
  client.on("error", (e) => showError(describeError(e), e.code));
  await client.connect();
  await client.join(state.id);
}

// ---- the room's goal, pins and moderators --------------------------------------

function onRoomFeature(e) {
  const g = goalAfterEvent(state.goal, e);
  if (g !== undefined) {
    setRoomGoal(g);
  } else if (e.kind === "pins") {
    setRoomPins(e.pins || []);
  }
}

function setRoomGoal(next) {
  const g = state.goal = mergeGoal(state.goal, next);
  const box = $("room-goal");
  const now = $("room-goal-now");
  $("room-goal-none").hidden = !!g;
  now.hidden = !g;
  $("room-goal-clear").disabled = !g;
  box.dataset.goalId = g ? g.goal_id : "";
  box.dataset.progress = g ? String(g.progress) : "";
  box.dataset.target = g ? String(g.target) : "";
  if (g) {
    now.textContent = (g.title ? g.title + ": " : "") + coins(g.progress) + " / " + coinsText(g.target) + " (" +
      Math.floor(g.progress * 100 / g.target) + "%)" + (g.reached ? ", reached!" : "");
  }
}

$("room-goal-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const amount = Number($("room-goal-amount").value);
  if (!Number.isInteger(amount) || amount < 1) {
    showError("A goal is a whole number of coins, at least 1.", "bad_amount");
    return;
  }
  const req = {room: state.id, amount};
  const text = $("room-goal-text").value.trim();
  if (text) req.text = text;
  try {
    await state.client.goal(req); // the goal event shows it
  } catch (e) {
    showError("Goal: " + describeError(e), e.code);
  }
});

$("room-goal-clear").addEventListener("click", async () => {
  try {
    await state.client.goalClear(state.id);
  } catch (e) {
    showError("Goal: " + describeError(e), e.code);
  }
});

function setRoomPins(pins) {
  state.pins = pins;
  renderRoomPins();
}

function renderRoomPins() {
  const now = Date.now();
  state.pins = state.pins.filter((p) => p.until > now);
  const ol = $("room-pins");
  // The same pins as drawn: only the time left changes.
  const key = state.pins.map((p) => p.order).join(" ");
  if (key === ol.dataset.key) {
    ol.querySelectorAll("li").forEach((li, i) => {
      li.querySelector(".pin-left").textContent = timeLeft(state.pins[i].until, now);
    });
    return;
  }
  ol.dataset.key = key;
  ol.textContent = "";
  for (const p of state.pins) {
    const li = el("li", "pin");
    li.dataset.order = p.order;
    li.dataset.from = p.from;
    li.append(span("who", p.from), span("amount", coinsText(p.amount)));
    if (p.text) li.append(el("q", "", p.text));
    li.append(span("pin-left", timeLeft(p.until, now)));
    const b = el("button", "unpin", "Remove");
    b.type = "button";
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        await state.client.unpin(state.id, p.order); // the pins event redraws the list
      } catch (e) {
        b.disabled = false;
        showError("Unpin: " + describeError(e), e.code);
      }
    });
    li.append(b);
    ol.append(li);
  }
  $("room-pins-empty").hidden = state.pins.length > 0;
}
setInterval(() => { if (state.pins.length) renderRoomPins(); }, 1000);

function showMods(list) {
  const ul = $("mods");
  ul.textContent = "";
  for (const u of list) {
    const li = el("li", "mod");
    li.dataset.user = u;
    const b = el("button", "mod-remove", "Remove");
    b.type = "button";
    b.addEventListener("click", async () => {
      try {
        showMods((await state.client.moderatorRemove(state.id, u)).moderators);
      } catch (e) {
        showError("Moderators: " + describeError(e), e.code);
      }
    });
    li.append(span("who", u), b);
    ul.append(li);
  }
  ul.dataset.count = String(list.length);
}

$("mod-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const user = $("mod-user").value.trim();
  if (!user) return;
  try {
    showMods((await state.client.moderatorAdd(state.id, user)).moderators);
    $("mod-user").value = "";
  } catch (e) {
    showError("Moderators: " + describeError(e), e.code);
  }
});

function showEvent(e) {
  if (feed.add(e)) els.feedEmpty.hidden = true;
}

// ---- start ----------------------------------------------------------------------------

async function main() {
  try {
    const me = await api("GET", "/api/v1/me");
    if (me.role !== "creator") throw Object.assign(new Error("this token is a " + me.role + "'s, not a creator's"), {code: "forbidden"});
    state.id = me.sub;
    els.creator.textContent = me.sub;
    document.body.dataset.creator = me.sub;
  } catch (e) {
    setStatus("retrying", "no access");
    showError("The dashboard cannot start: " + apiErrorText(e), e.code);
    return;
  }
  refreshStats();
  refreshWithdrawals();
  setInterval(refreshStats, STATS_POLL_MS);
  try {
    await connectRoom();
  } catch (e) {
    showError("Live feed: " + describeError(e), e.code);
  }
}

main();
