// app.js - the tipcast demo page: one viewer (or the creator) in room alice.
//
// Built on the JavaScript SDK (/sdk/tipcast.js, clients/js): the SDK holds
// the connection, reconnects, resumes the room without gaps or duplicates,
// and retries gifts and tips with their ids. This file only draws: the
// catalog, the balance, the feed (combos as one growing line), the
// animations and the four leaderboards with the room's totals.
import {TipcastClient} from "/sdk/tipcast.js";
import {
  Feed, PERIODS, boardsOf, coins, coinsText, cssKey, demoToken, describeError, query, span, wsUrl,
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

const $ = (id) => document.getElementById(id);
const els = {
  user: $("user"), status: $("status"), balance: $("balance"),
  earnings: $("earnings"), earningsPill: $("earnings-pill"),
  stage: $("stage"), error: $("error"), gifts: $("gifts"), feed: $("feed"),
  boards: $("boards"),
  tipForm: $("tip-form"), tipAmount: $("tip-amount"), tipText: $("tip-text"),
  noticeForm: $("notice-form"), noticeText: $("notice-text"),
  viewerActions: $("viewer-actions"), creatorActions: $("creator-actions"),
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

let errorTimer = null;
function showError(text, code) {
  els.error.textContent = text;
  els.error.dataset.code = code || "";
  els.error.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { els.error.hidden = true; }, ERROR_SHOW_MS);
}

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
  for (const e of snap.events || []) feed.add(e);
  onLeaderboard(snap);
}

function onEvent(e) {
  if (e.room !== ROOM) return;
  document.body.dataset.seq = String(e.seq);
  if (!feed.add(e)) return;
  if (e.kind === "gift" || e.kind === "tip") {
    animate(e);
    refreshEarningsSoon();
  }
}

function onLeaderboard(m) {
  if (m.room !== ROOM) return;
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
      li.append(span("rank", String(i + 1)), span("who", r.user), span("total", coins(r.total)));
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
