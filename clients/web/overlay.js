// overlay.js - the OBS overlays (browser sources with a transparent
// background): the alert box, the leaderboard widget, the goal bar and the
// PK score bar. The page says which by <body data-overlay="alerts|board|goal|pk">.
//
// Each connects through the JavaScript SDK (/sdk/tipcast.js) with the token
// of its URL (?token=): an overlay token (role overlay) names one room (the
// welcome's `room`) and may only read it: join, history, leaderboard,
// catalog. The SDK reconnects and resumes the room by itself; an overlay
// left running in OBS for days needs nothing else.
//
// Demo: ?demo=alice fetches an overlay token for alice from /demo/token.
import {TipcastClient} from "/sdk/tipcast.js";
import {
  PERIOD_NAMES, boardsOf, coins, coinsText, cssKey, demoToken, goalAfterEvent, mergeGoal, query, span, wsUrl,
} from "/common.js";

// Alert durations by the gift's catalog tier (1 the cheapest); gifts of a
// tier above the table take its last entry; tips take TIP_ALERT_MS.
const TIER_ALERT_MS = [0, 3000, 5000, 8000, 10000];
const TIP_ALERT_MS = 5000;
// A combo's next gift keeps its alert up at least this long again.
const COMBO_EXTEND_MS = 2000;
// Alerts waiting; past it the oldest waiting one is dropped (the room is
// busier than anyone can watch).
const QUEUE_MAX = 100;
// The pause between two alerts (the leaving one's fade).
const ALERT_GAP_MS = 400;
// Leaderboard rows shown: ?n=, 1..BOARD_N_MAX (the server keeps 10).
const BOARD_N_DEFAULT = 5;
const BOARD_N_MAX = 10;
// The sound of an alert (?sound=1): a short beep, higher for higher tiers.
const BEEP_MS = 180;
const BEEP_HZ = [0, 660, 880, 990, 1175];

const kind = document.body.dataset.overlay;
const errorBox = document.getElementById("overlay-error");

function showProblem(text) {
  errorBox.textContent = text;
  errorBox.hidden = false;
}

function periodParam() {
  const p = query.get("period") || "day";
  return Object.prototype.hasOwnProperty.call(PERIOD_NAMES, p) ? p : null;
}

async function tokenFn() {
  const t = query.get("token");
  if (t) return t;
  const demo = query.get("demo");
  if (demo) return (await demoToken(demo, "overlay")).token;
  throw new Error("no token in the URL (?token=)");
}

// ---- the alert box ---------------------------------------------------------

const alerts = {
  queue: [],        // alerts waiting, oldest first
  current: null,    // the alert on screen
  endAt: 0,
  timer: null,
  tiers: new Map(), // gift id -> tier, from the catalog
  shown: 0,
  audio: null,
};

// The server's combo (combo_id) groups gifts; from a server without
// combos, one sender's gifts of one gift with one non-empty client combo.
function alertKey(e) {
  if (e.kind !== "gift") return null;
  if (e.combo_id) return "s\u0000" + e.combo_id;
  return e.combo ? e.from + "\u0000" + e.gift + "\u0000" + e.combo : null;
}

// A combo's count after this gift: the server's running count when it has one.
function comboCount(a, e, n) {
  return e.combo_id && typeof e.combo_count === "number" ? e.combo_count : a.count + n;
}

function onAlertEvent(e) {
  if (e.kind !== "gift" && e.kind !== "tip") return;
  const key = alertKey(e);
  const n = e.kind === "gift" ? (e.count > 0 ? e.count : 1) : 0;
  if (key) {
    // A combo's repeat: the alert on screen (or waiting) counts it.
    const cur = alerts.current;
    if (cur && cur.key === key) {
      cur.count = comboCount(cur, e, n);
      cur.amount += Number(e.amount) || 0;
      cur.seq = e.seq;
      alerts.endAt = Math.max(alerts.endAt, Date.now() + COMBO_EXTEND_MS);
      renderAlert(cur, true);
      scheduleEnd();
      return;
    }
    const waiting = alerts.queue.find((a) => a.key === key);
    if (waiting) {
      waiting.count = comboCount(waiting, e, n);
      waiting.amount += Number(e.amount) || 0;
      waiting.seq = e.seq;
      return;
    }
  }
  const tier = e.kind === "gift" ? (alerts.tiers.get(e.gift) || 1) : 0;
  alerts.queue.push({key, kind: e.kind, from: e.from, name: e.name, animation: e.animation, tier,
    count: e.kind === "gift" ? comboCount({count: 0}, e, n) : 0, amount: Number(e.amount) || 0, text: e.text || "", seq: e.seq});
  if (alerts.queue.length > QUEUE_MAX) alerts.queue.shift();
  document.body.dataset.queued = String(alerts.queue.length);
  if (!alerts.current && !alerts.timer) nextAlert();
}

function durationOf(a) {
  if (a.kind === "tip") return TIP_ALERT_MS;
  return TIER_ALERT_MS[Math.min(Math.max(a.tier, 1), TIER_ALERT_MS.length - 1)];
}

function nextAlert() {
  alerts.timer = null;
  const a = alerts.queue.shift();
  document.body.dataset.queued = String(alerts.queue.length);
  if (!a) return;
  alerts.current = a;
  alerts.endAt = Date.now() + durationOf(a);
  alerts.shown += 1;
  document.body.dataset.shown = String(alerts.shown);
  renderAlert(a, false);
  beep(a);
  scheduleEnd();
}

function scheduleEnd() {
  clearTimeout(alerts.timer);
  alerts.timer = setTimeout(endAlert, Math.max(0, alerts.endAt - Date.now()));
}

function endAlert() {
  const box = document.getElementById("alert");
  box.classList.remove("in");
  box.classList.add("out");
  alerts.current = null;
  alerts.timer = setTimeout(() => {
    box.hidden = true;
    box.classList.remove("out");
    nextAlert();
  }, ALERT_GAP_MS);
}

function renderAlert(a, update) {
  const box = document.getElementById("alert");
  const key = a.kind === "tip" ? "tip" : cssKey(a.animation || "generic");
  box.className = "alert tier-" + a.tier + " alert-" + a.kind + " anim-" + key;
  box.dataset.kind = a.kind;
  box.dataset.from = a.from;
  box.dataset.seq = String(a.seq);
  box.dataset.tier = String(a.tier);
  box.dataset.count = String(a.count);
  box.dataset.amount = String(a.amount);
  box.querySelector(".alert-icon").className = "alert-icon icon-" + key;
  box.querySelector(".alert-from").textContent = a.from;
  box.querySelector(".alert-what").textContent = a.kind === "tip" ? "tipped" : "sent " + (a.name || "a gift");
  const counter = box.querySelector(".alert-count");
  counter.textContent = "×" + a.count;
  counter.hidden = a.kind !== "gift" || a.count <= 1;
  box.querySelector(".alert-amount").textContent = coinsText(a.amount);
  const msg = box.querySelector(".alert-message");
  msg.textContent = a.text;
  msg.hidden = !(a.kind === "tip" && a.text);
  box.hidden = false;
  if (update) {
    // The counter grew: bump it.
    counter.classList.remove("bump");
    void counter.offsetWidth;
    counter.classList.add("bump");
  } else {
    box.classList.remove("out");
    box.classList.add("in");
  }
}

// A WebAudio beep (no sound file): only with ?sound=1.
function beep(a) {
  if (query.get("sound") !== "1") return;
  try {
    if (!alerts.audio) alerts.audio = new AudioContext();
    const ctx = alerts.audio;
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = BEEP_HZ[Math.min(Math.max(a.tier, 1), BEEP_HZ.length - 1)];
    gain.gain.setValueAtTime(0.2, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + BEEP_MS / 1000);
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + BEEP_MS / 1000);
    document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  } catch (e) {
    // No audio device (or not allowed): the alert shows all the same.
  }
}

// ---- the leaderboard widget and the goal bar --------------------------------------

const room = {boards: {}, totals: {}, goal: null};

function onBoards(m) {
  // The room's own goal, when it has one, is in every snapshot and push.
  setRoomGoal(m.goal || null);
  Object.assign(room.boards, boardsOf(m));
  if (m.totals && typeof m.totals === "object") Object.assign(room.totals, m.totals);
  if (kind === "board") renderBoard();
  if (kind === "goal") renderGoal();
}

function boardN() {
  const n = Number(query.get("n") || BOARD_N_DEFAULT);
  return Number.isInteger(n) && n >= 1 ? Math.min(n, BOARD_N_MAX) : BOARD_N_DEFAULT;
}

function renderBoard() {
  const period = periodParam();
  const ol = document.getElementById("board");
  ol.textContent = "";
  const rows = (room.boards[period] || []).slice(0, boardN());
  rows.forEach((r, i) => {
    const li = document.createElement("li");
    li.dataset.user = r.user;
    li.dataset.total = String(r.total);
    li.append(span("rank", String(i + 1)), span("who", r.user), span("total", coins(r.total)));
    ol.append(li);
  });
  if (!rows.length) ol.append(span("empty", "Be the first supporter!"));
  const foot = document.getElementById("board-total");
  const t = room.totals[period];
  if (typeof t === "number") {
    foot.textContent = coinsText(t) + " " + PERIOD_NAMES[period].toLowerCase();
    foot.dataset.total = String(t);
  }
}

// The goal of the room's events (set, reached, cleared) between pushes.
function onGoalEvent(e) {
  const g = goalAfterEvent(room.goal, e);
  if (g === undefined) return;
  setRoomGoal(g);
  if (kind === "goal") renderGoal();
}

function setRoomGoal(next) {
  room.goal = mergeGoal(room.goal, next);
}

// The room's goal (set by the creator) when it has one; else the period's
// total against ?target=.
function renderGoal() {
  const box = document.getElementById("goal");
  const g = room.goal;
  if (g) {
    const percent = Math.floor(g.progress * 100 / g.target);
    box.dataset.source = "room";
    box.dataset.goalId = g.goal_id;
    box.dataset.total = String(g.progress);
    box.dataset.target = String(g.target);
    box.dataset.percent = String(percent);
    box.hidden = false;
    box.classList.toggle("reached", !!g.reached || g.progress >= g.target);
    document.getElementById("goal-title").textContent = g.title || query.get("title") || "Goal";
    document.getElementById("goal-fill").style.width = Math.min(100, percent) + "%";
    document.getElementById("goal-percent").textContent = g.reached ? percent + "% ✓" : percent + "%";
    document.getElementById("goal-numbers").textContent = coins(g.progress) + " / " + coinsText(g.target);
    errorBox.hidden = true;
    return;
  }
  const period = periodParam();
  const target = Number(query.get("target"));
  const total = room.totals[period];
  box.dataset.source = "";
  box.dataset.goalId = "";
  if (!query.get("target")) {
    // No goal of the room's and no ?target=: nothing to fill.
    box.hidden = true;
    if (document.body.dataset.joined) showProblem("the room has no goal right now (set one on the dashboard, or give ?target=)");
    return;
  }
  box.hidden = false;
  document.getElementById("goal-title").textContent = query.get("title") || "Goal";
  if (typeof total !== "number") return;
  // Whole percent, rounded down (99.9% is not reached); the bar stops at
  // 100%, the text goes on (a goal can be passed).
  const percent = Math.floor(total * 100 / target);
  box.dataset.total = String(total);
  box.dataset.target = String(target);
  box.dataset.percent = String(percent);
  box.classList.toggle("reached", total >= target);
  document.getElementById("goal-fill").style.width = Math.min(100, percent) + "%";
  document.getElementById("goal-percent").textContent = percent + "%";
  document.getElementById("goal-numbers").textContent = coins(total) + " / " + coinsText(target);
}

// ---- the PK score bar -----------------------------------------------------------

const pk = {score: null, end: null, timer: null};

function onPkScore(m) {
  if (!pk.score || pk.score.pk !== m.pk) pk.end = null;
  pk.score = m;
  renderPk();
}

function onPkEnd(e) {
  pk.score = {pk: e.pk, room_a: e.room_a, room_b: e.room_b, scores: [e.score_a, e.score_b], ends_at: e.ts};
  pk.end = e;
  renderPk();
}

function renderPk() {
  const box = document.getElementById("pk");
  const m = pk.score;
  if (!m) return;
  const [sa, sb] = m.scores;
  box.hidden = false;
  box.dataset.pk = String(m.pk);
  box.dataset.roomA = m.room_a;
  box.dataset.roomB = m.room_b;
  box.dataset.scoreA = String(sa);
  box.dataset.scoreB = String(sb);
  box.dataset.result = pk.end ? pk.end.result : "";
  document.getElementById("pk-name-a").textContent = m.room_a;
  document.getElementById("pk-name-b").textContent = m.room_b;
  document.getElementById("pk-score-a").textContent = coins(sa);
  document.getElementById("pk-score-b").textContent = coins(sb);
  const share = sa + sb > 0 ? sa * 100 / (sa + sb) : 50;
  document.getElementById("pk-fill-a").style.width = share.toFixed(1) + "%";
  document.getElementById("pk-fill-b").style.width = (100 - share).toFixed(1) + "%";
  const res = document.getElementById("pk-result");
  if (pk.end) res.textContent = pk.end.result === "draw" ? "Draw!" : pk.end.winner + " wins!";
  else {
    const s = Math.max(0, Math.ceil((m.ends_at - Date.now()) / 1000));
    res.textContent = s > 0 ? Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0") : "…";
  }
  clearTimeout(pk.timer);
  if (!pk.end) pk.timer = setTimeout(renderPk, 1000);
}

// ---- start -----------------------------------------------------------------------

function checkParams() {
  if (kind !== "board" && kind !== "goal") return true;
  const period = periodParam();
  if (!period) {
    showProblem("period must be day, week, month or all");
    return false;
  }
  if (kind === "board") {
    const title = query.get("title");
    document.getElementById("board-title").textContent = title || "Top supporters · " + PERIOD_NAMES[period];
  } else {
    // ?target= is the fallback for a room without a goal of its own.
    const target = Number(query.get("target"));
    if (query.get("target") && (!Number.isInteger(target) || target < 1)) {
      showProblem("target must be a whole number of coins, at least 1 (?target=5000)");
      return false;
    }
    document.getElementById("goal-title").textContent = query.get("title") || "Goal";
  }
  return true;
}

async function loadTiers(client) {
  const cat = await client.catalog();
  for (const g of cat.gifts || []) alerts.tiers.set(g.id, (g.tier | 0) || 1);
}

async function main() {
  if (!checkParams()) return;
  const client = new TipcastClient({url: wsUrl(), token: tokenFn});
  let roomId = null;
  client.on("snapshot", (snap) => {
    if (snap.room !== roomId) return;
    document.body.dataset.joined = snap.room;
    onBoards(snap);
    if (kind === "pk") for (const e of snap.events || []) if (e.kind === "pk_end") onPkEnd(e);
  });
  client.on("leaderboard", (m) => { if (m.room === roomId) onBoards(m); });
  client.on("event", (e) => {
    if (e.room !== roomId) return;
    if (kind === "alerts") onAlertEvent(e);
    else if (kind === "goal") onGoalEvent(e);
    else if (kind === "pk" && e.kind === "pk_end") onPkEnd(e);
  });
  client.on("pk_score", (m) => { if (kind === "pk" && m.room === roomId) onPkScore(m); });
  client.on("error", (e) => {
    if (e.code === "auth_invalid" || e.code === "auth_expired") showProblem("the overlay link is not valid (" + e.code + "): make a new one on the dashboard");
  });
  client.on("state", (s) => { document.body.dataset.state = s.state; });
  // After a reconnect the catalog may have changed (its tiers set durations).
  client.on("welcome", () => { if (kind === "alerts" && roomId) loadTiers(client).catch(() => {}); });
  try {
    const w = await client.connect();
    // An overlay token names its room; another token (a creator's) watches its own.
    roomId = w.room || w.user;
    if (kind === "alerts") await loadTiers(client);
    await client.join(roomId);
  } catch (e) {
    showProblem("cannot watch the room: " + (e.code || "") + " " + (e.message || e));
  }
}

main();
