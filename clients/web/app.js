// app.js - the tipcast demo page: one viewer (or the creator) in room alice.
//
// Built on the JavaScript SDK (/sdk/tipcast.js, clients/js): the SDK holds
// the connection, reconnects, resumes the room without gaps or duplicates,
// and retries gifts, tips and pledges with their ids. This file only draws:
// the catalog, the balance, the feed (the server's combos as one growing
// line, fan badges), the animations, the four leaderboards with the room's
// totals, and the live-room features: the room's goal, its pinned tips
// (with an unpin button for the owner and admins), a PK battle's scores and
// an open campaign with a pledge form.
import {TipcastClient} from "/sdk/tipcast.js";
import {
  $, Feed, PERIODS, boardBadge, boardsOf, coins, coinsText, cssKey, demoToken, describeError, el, errorBox,
  goalAfterEvent, mergeGoal, query, span, timeLeft, wsUrl,
} from "/common.js";

const ROOM = "alice";
// Taps of the same gift closer than this form one combo (one combo id).
const COMBO_WINDOW_MS = 3000;
// Animations shown at once; more are skipped (the feed still shows them).
const ANIMATIONS_MAX = 12;
// Animations run side by side in this many lanes across the stage, and
// their captions at this many heights, so that they do not cover each other.
const ANIMATION_LANES = 3;
const CAPTION_ROWS = 4;
// How long a gift's animation stays on the stage.
const ANIMATION_MS = 4000;
// A money request unanswered this long is reported as slow; the SDK keeps
// retrying it with the same id (so it can never be paid twice).
const REQUEST_SLOW_MS = 8000;
// Money requests waiting for an answer; more taps are refused until some
// answer arrives.
const PENDING_MAX = 32;
// A creator's earnings are what PostgreSQL holds: asked at connect and
// again this long after each gift or tip to their room, once the ledger
// has written it.
const EARNINGS_REFRESH_MS = 1000;
// How long an error stays on the page.
const ERROR_SHOW_MS = 8000;
// Pins and the PK clock are redrawn this often (time left; expired pins go).
const TICK_MS = 1000;

const els = {
  user: $("user"), status: $("status"), balance: $("balance"),
  earnings: $("earnings"), earningsPill: $("earnings-pill"),
  stage: $("stage"), error: $("error"), gifts: $("gifts"), feed: $("feed"),
  boards: $("boards"),
  tipForm: $("tip-form"), tipAmount: $("tip-amount"), tipText: $("tip-text"),
  noticeForm: $("notice-form"), noticeText: $("notice-text"),
  viewerActions: $("viewer-actions"), creatorActions: $("creator-actions"),
  goal: $("goal"), pinsBox: $("pins-box"), pins: $("pins"), pk: $("pk"), campaign: $("campaign"),
  pledgeForm: $("pledge-form"), pledgeAmount: $("pledge-amount"), pledgeTier: $("pledge-tier"),
  pledgeResult: $("pledge-result"),
};

const state = {
  client: null,           // the TipcastClient of the current user
  user: null,
  role: null,
  pending: 0,             // money requests not answered yet
  combo: null,            // {gift, id, count, last, button}: this page's current streak
  animCounter: 0,
  boards: {all: [], day: [], week: [], month: []},
  totals: {},             // period -> the room's coins in it
  earningsTimer: null,
  goal: null,             // the room's goal: {goal_id, target, progress, gift, deadline, reached, title}
  pins: [],               // the room's pinned tips, ending first first
  pk: null,               // the latest pk_score of a battle of this room, and its end: {score, end}
  campaign: null,         // the latest campaign_progress of the room's campaign
};
const feed = new Feed(els.feed);

// ---- small things --------------------------------------------------------

function setStatus(st, text) {
  els.status.dataset.state = st;
  els.status.textContent = text;
}

function setBalance(b) {
  if (typeof b !== "number") return;
  els.balance.textContent = coins(b);
  els.balance.dataset.balance = String(b);
}

const showError = errorBox(els.error, ERROR_SHOW_MS);

function randomToken() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// ---- the connection ----------------------------------------------------------

// Starts a client for the user picked; the previous one (if any) is closed.
// Events of a closed client are ignored (each handler checks `mine()`).
async function start() {
  const user = els.user.value;
  if (state.client) state.client.close();
  clearTimeout(state.earningsTimer);
  state.earningsTimer = null;
  state.combo = null;
  state.pending = 0;
  delete document.body.dataset.joined;
  state.goal = null;
  state.pins = [];
  state.pk = null;
  state.campaign = null;
  els.balance.textContent = "–";
  els.balance.dataset.balance = "";
  const client = new TipcastClient({
    url: wsUrl(),
    // Asked before every (re)connect: a demo token lives an hour.
    token: async () => (await demoToken(user)).token,
    protocol: query.get("protocol") === "msgpack" ? "msgpack" : "json",
  });
  state.client = client;
  const mine = () => state.client === client;

  client.on("state", (s) => {
    if (!mine()) return;
    if (s.state === "open") return; // "welcome" says who we are
    delete document.body.dataset.joined;
    if (s.state === "connecting") setStatus("connecting", "connecting as " + user + "…");
    else if (s.state === "reconnecting") {
      const wait = typeof s.delayMs === "number" ? "; reconnecting in " + (s.delayMs / 1000).toFixed(1) + " s" : "";
      setStatus("retrying", "disconnected" + wait);
    } else if (s.state === "closed") setStatus("retrying", "closed");
  });
  client.on("welcome", (w) => { if (mine()) onWelcome(client, w); });
  client.on("snapshot", (snap) => { if (mine()) onSnapshot(snap); });
  client.on("event", (ev) => { if (mine()) onEvent(ev); });
  client.on("leaderboard", (m) => { if (mine()) onLeaderboard(m); });
  client.on("pk_score", (m) => { if (mine()) onPkScore(m); });
  client.on("error", (e) => { if (mine()) showError(describeError(e), e.code); });

  setStatus("connecting", "connecting as " + user + "…");
  try {
    await client.connect();
    if (!mine()) return;
    await client.join(ROOM); // the SDK joins it again after every reconnect
  } catch (e) {
    if (!mine()) return;
    showError(describeError(e), e.code || "connect");
    setStatus("retrying", "cannot connect: " + (e.code || e.message));
  }
}

// After every (re)connect: who we are, the catalog, the balance.
async function onWelcome(client, w) {
  const mine = () => state.client === client;
  state.user = w.user;
  state.role = w.role;
  setStatus("live", "connected as " + w.user);
  document.body.dataset.user = w.user;
  // A creator cannot pay their own room; they post notices instead.
  const owner = w.user === ROOM;
  els.viewerActions.hidden = owner;
  els.creatorActions.hidden = !(owner || w.role === "admin");
  const creator = w.role === "creator" && owner;
  els.earningsPill.hidden = !creator;
  renderPins();
  renderCampaign();
  try {
    const cat = await client.catalog();
    if (mine()) showCatalog(cat);
    const b = await client.balance();
    if (mine()) setBalance(b);
    if (creator && mine()) refreshEarnings(client);
  } catch (e) {
    if (mine() && e.code !== "closed") showError(describeError(e), e.code);
  }
}

async function refreshEarnings(client) {
  try {
    const m = await client.earnings();
    if (state.client !== client || typeof m.total !== "number") return;
    els.earnings.textContent = coins(m.total);
    els.earnings.dataset.earnings = String(m.total);
  } catch (e) {
    if (state.client === client && e.code !== "closed") showError(describeError(e), e.code);
  }
}

function refreshEarningsSoon() {
  if (state.user !== ROOM || state.role !== "creator" || state.earningsTimer) return;
  const client = state.client;
  state.earningsTimer = setTimeout(() => {
    state.earningsTimer = null;
    if (state.client === client) refreshEarnings(client);
  }, EARNINGS_REFRESH_MS);
}

// ---- the room ------------------------------------------------------------------

function onSnapshot(snap) {
  if (snap.room !== ROOM) return;
  document.body.dataset.joined = ROOM;
  document.body.dataset.seq = String(snap.seq);
  // history_gone: the SDK could not get every event we missed.
  if (snap.reset) feed.reset(snap, "Some events were missed while you were away.");
  // The snapshot's latest events, those the feed has not shown yet; no
  // animation for them (they are the past).
  for (const e of snap.events || []) {
    feed.add(e);
    if (e.kind === "campaign_progress" || e.kind === "pk_end") onFeatureEvent(e);
  }
  state.pins = [];
  setPins(snap.pins || []);
  onLeaderboard(snap);
}

function onEvent(e) {
  if (e.room !== ROOM) return;
  document.body.dataset.seq = String(e.seq);
  onFeatureEvent(e);
  if (!feed.add(e)) return;
  if (e.kind === "gift" || e.kind === "tip") {
    animate(e);
    refreshEarningsSoon();
  }
}

// The events of the live-room features: the goal, pins, PK end, campaign.
function onFeatureEvent(e) {
  switch (e.kind) {
    case "goal": case "goal_reached": case "goal_cleared":
      setGoal(goalAfterEvent(state.goal, e));
      break;
    case "pins": setPins(e.pins || []); break;
    case "pk_end": onPkEnd(e); break;
    case "campaign_progress": setCampaign(e); break;
    default: break;
  }
}

function onLeaderboard(m) {
  if (m.room !== ROOM) return;
  // A room with a goal has it in every push and snapshot; none: no goal.
  setGoal(m.goal || null);
  Object.assign(state.boards, boardsOf(m));
  if (m.totals && typeof m.totals === "object") Object.assign(state.totals, m.totals);
  renderBoards();
}

function renderBoards() {
  for (const period of PERIODS) {
    const box = els.boards.querySelector(`.period[data-period="${period}"]`);
    const ol = box.querySelector("ol");
    const rows = state.boards[period] || [];
    ol.textContent = "";
    rows.forEach((r, i) => {
      const li = document.createElement("li");
      li.dataset.user = r.user;
      li.dataset.total = String(r.total);
      if (r.user === state.user) li.className = "me";
      li.append(span("rank", String(i + 1)), span("who", r.user));
      const badge = period === "all" ? boardBadge(r) : null;
      if (badge) {
        li.dataset.badge = r.badge;
        li.append(badge);
      }
      li.append(span("total", coins(r.total)));
      ol.append(li);
    });
    box.querySelector(".empty").hidden = rows.length > 0;
    const t = box.querySelector(".room-total");
    const total = state.totals[period];
    if (typeof total === "number") {
      t.textContent = coinsText(total);
      t.dataset.total = String(total);
    }
  }
}

// ---- the goal ------------------------------------------------------------------

// The goal of an event, snapshot or push (mergeGoal keeps the highest progress).
function setGoal(next) {
  const g = state.goal = mergeGoal(state.goal, next);
  const box = els.goal;
  box.hidden = !g;
  if (!g) {
    box.dataset.goalId = "";
    return;
  }
  const percent = Math.floor(g.progress * 100 / g.target);
  box.dataset.goalId = g.goal_id;
  box.dataset.progress = String(g.progress);
  box.dataset.target = String(g.target);
  box.dataset.percent = String(percent);
  box.dataset.reached = g.reached ? "1" : "";
  box.classList.toggle("reached", !!g.reached);
  $("goal-title").textContent = g.title || "";
  $("goal-reached").hidden = !g.reached;
  $("goal-fill").style.width = Math.min(100, percent) + "%";
  $("goal-numbers").textContent = coins(g.progress) + " / " + coinsText(g.target);
  $("goal-percent").textContent = percent + "%";
  const extra = [];
  if (g.gift) extra.push("only " + giftName(g.gift) + " counts");
  if (g.deadline) extra.push(g.deadline > Date.now() ? timeLeft(g.deadline) + " left" : "ended");
  $("goal-extra").textContent = extra.join(" · ");
}

const giftNames = new Map(); // gift id -> name, from the catalog
function giftName(id) { return giftNames.get(id) || "gift #" + id; }

// ---- pinned tips -----------------------------------------------------------------

function canModerate() {
  // The owner and admins may unpin. (Moderators may too, but nothing tells a
  // client that it is one: their unpin is the server's to allow.)
  return state.user === ROOM || state.role === "admin";
}

function setPins(pins) {
  state.pins = pins.filter((p) => p.until > Date.now());
  renderPins();
}

function renderPins() {
  const now = Date.now();
  state.pins = state.pins.filter((p) => p.until > now);
  // The same pins as drawn: only the time left changes (the lines, and their
  // buttons, stay the same elements).
  const key = state.pins.map((p) => p.order).join(" ") + (canModerate() ? " +mod" : "");
  if (key === els.pins.dataset.key) {
    els.pins.querySelectorAll("li").forEach((li, i) => {
      li.querySelector(".pin-left").textContent = timeLeft(state.pins[i].until, now);
    });
    return;
  }
  els.pins.dataset.key = key;
  els.pins.textContent = "";
  for (const p of state.pins) {
    const li = el("li", "pin");
    li.dataset.order = p.order;
    li.dataset.from = p.from;
    li.dataset.amount = String(p.amount);
    li.append(span("who", p.from), span("amount", coinsText(p.amount)));
    if (p.text) li.append(el("q", "", p.text));
    li.append(span("pin-left", timeLeft(p.until, now)));
    if (canModerate()) {
      const b = el("button", "unpin", "Unpin");
      b.type = "button";
      b.addEventListener("click", () => unpin(p.order, b));
      li.append(b);
    }
    els.pins.append(li);
  }
  els.pinsBox.hidden = state.pins.length === 0;
  document.body.dataset.pins = String(state.pins.length);
}

async function unpin(order, button) {
  const client = state.client;
  if (!client) return;
  button.disabled = true;
  try {
    await client.unpin(ROOM, order); // the pins event redraws the list
  } catch (e) {
    if (state.client === client) showError(describeError(e), e.code);
    button.disabled = false;
  }
}

// ---- a PK battle -------------------------------------------------------------------

function onPkScore(m) {
  if (m.room !== ROOM) return;
  if (!state.pk || state.pk.score.pk !== m.pk) state.pk = {score: m, end: null};
  else state.pk.score = m;
  renderPk();
}

function onPkEnd(e) {
  if (e.room_a !== ROOM && e.room_b !== ROOM) return;
  state.pk = {score: {pk: e.pk, room_a: e.room_a, room_b: e.room_b, scores: [e.score_a, e.score_b], ends_at: e.ts},
    end: e};
  renderPk();
}

function renderPk() {
  const pk = state.pk;
  els.pk.hidden = !pk;
  if (!pk) return;
  const {room_a: a, room_b: b, scores} = pk.score;
  const [sa, sb] = scores;
  els.pk.dataset.pk = String(pk.score.pk);
  els.pk.dataset.roomA = a;
  els.pk.dataset.roomB = b;
  els.pk.dataset.scoreA = String(sa);
  els.pk.dataset.scoreB = String(sb);
  $("pk-name-a").textContent = a;
  $("pk-name-b").textContent = b;
  $("pk-score-a").textContent = coins(sa);
  $("pk-score-b").textContent = coins(sb);
  // Half and half before the first coin.
  const share = sa + sb > 0 ? sa * 100 / (sa + sb) : 50;
  $("pk-fill-a").style.width = share.toFixed(1) + "%";
  $("pk-fill-b").style.width = (100 - share).toFixed(1) + "%";
  const res = $("pk-result");
  if (pk.end) {
    els.pk.dataset.result = pk.end.result;
    els.pk.dataset.winner = pk.end.winner || "";
    res.textContent = pk.end.result === "draw" ? "A draw!" : pk.end.winner + " wins!";
    res.hidden = false;
    $("pk-left").textContent = "final";
  } else {
    els.pk.dataset.result = "";
    res.hidden = true;
    $("pk-left").textContent = pk.score.ends_at > Date.now() ? timeLeft(pk.score.ends_at) + " left" : "deciding…";
  }
}

// ---- a campaign ----------------------------------------------------------------------

function setCampaign(e) {
  state.campaign = e;
  renderCampaign();
}

const CAMPAIGN_STATES = {open: "open", closing: "closing", succeeded: "succeeded", refunding: "refunding backers",
  refunded: "refunded"};

function renderCampaign() {
  const c = state.campaign;
  const box = els.campaign;
  box.hidden = !c;
  if (!c) return;
  box.dataset.campaign = String(c.campaign);
  box.dataset.state = c.state;
  box.dataset.pledged = String(c.pledged);
  box.dataset.backers = String(c.backers);
  box.dataset.target = String(c.target);
  const percent = c.target > 0 ? Math.floor(c.pledged * 100 / c.target) : 0;
  box.dataset.percent = String(percent);
  $("campaign-state").textContent = CAMPAIGN_STATES[c.state] || c.state;
  $("campaign-fill").style.width = Math.min(100, percent) + "%";
  $("campaign-numbers").textContent = coins(c.pledged) + " / " + coinsText(c.target) + " (" + percent + "%)";
  $("campaign-backers").textContent = c.backers + (c.backers === 1 ? " backer" : " backers");
  $("campaign-deadline").textContent = c.state === "open" && c.deadline_ms > Date.now()
    ? "ends in " + timeLeft(c.deadline_ms) : (c.refunded > 0 ? coinsText(c.refunded) + " refunded" : "");
  // Viewers pledge while it is open; the creator cannot back its own.
  els.pledgeForm.hidden = c.state !== "open" || state.user === ROOM;
}

els.pledgeForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const c = state.campaign;
  if (!c) return;
  const amount = Number(els.pledgeAmount.value);
  if (!Number.isInteger(amount) || amount < 1) {
    showError("A pledge is a whole number of coins, at least 1.", "bad_amount");
    return;
  }
  const req = {campaign: c.campaign, amount};
  const tier = els.pledgeTier.value.trim();
  if (tier) req.tier = Number(tier);
  const ack = await pay((client) => client.pledge(req), "the pledge is " + coins(amount), null);
  if (ack) {
    els.pledgeResult.textContent = "You pledged " + coinsText(ack.amount) + (ack.replayed ? " (already sent)" : "") + ".";
    els.pledgeResult.dataset.order = ack.order;
    els.pledgeResult.hidden = false;
  }
});

setInterval(() => {
  if (state.pins.length) renderPins();
  if (state.pk && !state.pk.end) renderPk();
}, TICK_MS);

// A gift's animation: a CSS animation chosen by the gift's animation key
// (style.css draws rose, heart, rocket and castle; anything else gets the
// generic sparkle).
function animate(e) {
  if (els.stage.querySelectorAll(".anim").length >= ANIMATIONS_MAX) return;
  const key = e.kind === "tip" ? "tip" : cssKey(e.animation || "generic");
  const a = document.createElement("div");
  a.className = "anim anim-" + key;
  a.dataset.seq = String(e.seq);
  if (e.order) a.dataset.order = e.order;
  a.dataset.animation = key;
  const art = document.createElement("div");
  art.className = "art";
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = e.kind === "tip"
    ? e.from + " tipped " + coins(e.amount)
    : e.from + " sent " + (e.name || "a gift") + (e.count > 1 ? " ×" + e.count : "");
  a.append(art, label);
  // Lanes and caption rows in turn: simultaneous animations stay apart.
  const k = state.animCounter++;
  const lane = k % ANIMATION_LANES;
  // The castle is wide: it always takes the middle.
  const centre = key === "castle" ? 50 : (lane + 0.5) * 100 / ANIMATION_LANES;
  a.style.left = "calc(" + centre.toFixed(2) + "% - " + (key === "castle" ? 130 : 80) + "px)";
  label.style.bottom = (6 + (Math.floor(k / ANIMATION_LANES) % CAPTION_ROWS) * 26) + "px";
  els.stage.append(a);
  setTimeout(() => a.remove(), ANIMATION_MS);
}

// ---- the catalog and money -------------------------------------------------------

function showCatalog(m) {
  if (!m || !Array.isArray(m.gifts)) return;
  els.gifts.textContent = "";
  for (const g of m.gifts) giftNames.set(g.id, g.name);
  for (const g of m.gifts) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "gift tier-" + (g.tier | 0);
    b.dataset.giftId = String(g.id);
    b.dataset.animation = g.animation;
    b.dataset.price = String(g.price);
    b.append(span("gift-icon icon-" + cssKey(g.animation)), span("gift-name", g.name),
      span("gift-price", coinsText(g.price)), span("gift-combo"));
    b.addEventListener("click", () => sendGift(g, b));
    els.gifts.append(b);
  }
  if (!m.gifts.length) els.gifts.append(span("hint", "The catalog is empty."));
}

// A gift or a tip through the SDK: it keeps the request's id and sends it
// again after a reconnect until it is answered, so a tap pays once.
async function pay(request, label, button) {
  const client = state.client;
  if (!client || client.state !== "open") {
    showError("Not connected yet; try again in a moment.", "offline");
    return;
  }
  if (state.pending >= PENDING_MAX) {
    showError("Waiting for the server to answer earlier requests.", "busy");
    return;
  }
  state.pending += 1;
  if (button) button.classList.add("busy");
  const slow = setTimeout(() => {
    if (state.client === client) showError("No answer from the server yet; the request will be retried safely.", "slow");
  }, REQUEST_SLOW_MS);
  try {
    const ack = await request(client);
    if (state.client === client) setBalance(ack.balance);
    return ack;
  } catch (e) {
    if (state.client !== client) return;
    if (e.code === "insufficient_balance") setBalance(e.balance);
    showError(describeError(e, label), e.code);
  } finally {
    clearTimeout(slow);
    if (state.client === client) {
      state.pending -= 1;
      if (button && state.pending === 0) button.classList.remove("busy");
    }
  }
}

function sendGift(g, button) {
  const now = Date.now();
  let c = state.combo;
  if (!c || c.gift !== g.id || now - c.last > COMBO_WINDOW_MS) {
    if (c && c.button) c.button.querySelector(".gift-combo").textContent = "";
    c = state.combo = {gift: g.id, id: "c" + randomToken(), count: 0, last: now, button};
  }
  c.count += 1;
  c.last = now;
  button.querySelector(".gift-combo").textContent = c.count > 1 ? "×" + c.count : "";
  button.classList.remove("tapped");
  void button.offsetWidth; // restart the tap animation
  button.classList.add("tapped");
  const combo = c.id;
  pay((client) => client.gift({room: ROOM, gift: g.id, count: 1, combo}),
    g.name + " costs " + coins(g.price), button);
}

els.tipForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const amount = Number(els.tipAmount.value);
  if (!Number.isInteger(amount) || amount < 1) {
    showError("A tip is a whole number of coins, at least 1.", "bad_amount");
    return;
  }
  const text = els.tipText.value.trim();
  const tip = {room: ROOM, amount};
  if (text) tip.text = text;
  pay((client) => client.tip(tip), "the tip is " + coins(amount), null);
  els.tipText.value = "";
});

els.noticeForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = els.noticeText.value.trim();
  if (!text || !state.client) return;
  els.noticeText.value = "";
  try {
    await state.client.notice(ROOM, text);
  } catch (e) {
    showError(describeError(e), e.code);
  }
});

// ?user=carol picks the demo user (handy for opening two pages side by side).
const wanted = query.get("user");
if (wanted && Array.from(els.user.options).some((o) => o.value === wanted)) els.user.value = wanted;
els.user.addEventListener("change", start);
start();
