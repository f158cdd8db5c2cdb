// common.js - what the tipcast pages share: reading the page's query, demo
// tokens, the WebSocket and admin API addresses, numbers and error texts,
// and the live feed with its combo lines.
//
// Everything here is plain DOM code; text from the wire is only ever put into
// the page with textContent, never parsed as HTML. The protocol itself is the
// SDK's (/sdk/tipcast.js): nothing here builds a message.

// Lines kept in a feed; older ones are dropped from the page.
export const FEED_MAX = 200;
// Combo lines remembered for their running count (oldest forgotten first).
export const COMBOS_MAX = 256;

export const query = new URLSearchParams(location.search);

// The WebSocket of the tipcastd that served the page (?ws= overrides it).
export function wsUrl() {
  const given = query.get("ws");
  if (given) return given;
  return (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/ws";
}

// The admin API's base URL: ?admin=, else this page's host on port 8081
// (tipcastd's default admin-listen).
export function adminBase() {
  const given = query.get("admin");
  if (given) return given.replace(/\/+$/, "");
  const host = location.hostname.includes(":") ? "[" + location.hostname + "]" : location.hostname;
  return location.protocol + "//" + host + ":8081";
}

// A demo token from /demo/token (served only when tipcastd runs with demo
// on). Resolves with the endpoint's answer: {token, user, role, room?}.
export async function demoToken(user, role) {
  let url = "/demo/token?user=" + encodeURIComponent(user);
  if (role) url += "&role=" + encodeURIComponent(role);
  const r = await fetch(url, {cache: "no-store"});
  if (!r.ok) throw new Error("demo token for " + user + ": HTTP " + r.status);
  const body = await r.json();
  if (typeof body.token !== "string") throw new Error("demo token: no token in the answer");
  return body;
}

export function coins(n) {
  return Number(n).toLocaleString("en-US");
}

export function coinsText(n) {
  return coins(n) + (Number(n) === 1 ? " coin" : " coins");
}

// An element with a class and, optionally, text (never HTML).
export function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

export function span(className, text) {
  return el("span", className, text);
}

// A CSS-safe key (animation names come from the catalog).
export function cssKey(s) {
  return String(s || "").replace(/[^a-z0-9_-]/gi, "");
}

export function iconFor(key) {
  return span("icon icon-" + cssKey(key));
}

const ERROR_TEXT = {
  insufficient_balance: "Insufficient balance",
  unknown_gift: "That gift is not in the catalog any more",
  bad_field: "The request was refused",
  room_not_live: "The room is not live right now",
  rate_limited: "Slow down: too many requests",
  idempotency_conflict: "This request id was already used for something else",
  backlogged: "The server is catching up; try again in a moment",
  unavailable: "The server cannot reach its database; try again in a moment",
  forbidden: "You are not allowed to do that",
  history_gone: "Some events are too old to recover",
  internal: "The server failed; nothing was charged",
  account_frozen: "This account is frozen",
  risk_rate_limited: "Too many gifts in a short time; try again in a moment",
  spend_cap_exceeded: "The daily spending cap is reached",
  coupon_invalid: "This coupon is not valid for this gift",
  coupon_used: "This coupon was already used",
  campaign_not_found: "This campaign is not open",
  campaign_closed: "This campaign is closed",
  tier_sold_out: "This reward tier is sold out",
  below_tier_minimum: "The pledge is below the tier's minimum",
  timeout: "No answer from the server in time",
  closed: "The connection is closed",
  not_connected: "Not connected",
};

// An element of the page by its id.
export const $ = (id) => document.getElementById(id);

// The page's error line: shows text (data-code carries the error's code
// for tests and scripts) for showMs, then hides it; a newer error replaces
// an older one and restarts the clock. Returns the function that shows one.
export function errorBox(box, showMs) {
  let timer = null;
  return (text, code) => {
    box.textContent = text;
    box.dataset.code = code || "";
    box.hidden = false;
    clearTimeout(timer);
    timer = setTimeout(() => { box.hidden = true; }, showMs);
  };
}

// The text shown for a TipcastError (or any Error); label says what the
// request was about ("Rocket costs 500").
export function describeError(e, label) {
  const code = e && e.code;
  let text = (code && ERROR_TEXT[code]) || (code ? "Error: " + code : String((e && e.message) || e));
  if (code === "insufficient_balance" && typeof e.balance === "number") {
    text += ": you have " + coinsText(e.balance);
    if (label) text += ", " + label;
  } else if (code === "spend_cap_exceeded" && typeof e.remaining === "number") {
    text += ": " + coinsText(e.remaining) + " left today";
  } else if (code === "below_tier_minimum" && typeof e.minimum === "number") {
    text += ": at least " + coinsText(e.minimum);
  } else if (code === "bad_field" && e.field && !e.message) {
    text += " (" + e.field + ")";
  }
  if (typeof e.retryAfterMs === "number") text += "; retry in " + Math.ceil(e.retryAfterMs / 1000) + " s";
  // The server's own words where ours are too general.
  if (code && e.message && (!ERROR_TEXT[code] || code === "forbidden" || code === "bad_field")) {
    text += ": " + e.message;
  }
  return text + ".";
}

// The live feed of one room: newest line first, at most FEED_MAX lines.
// The gifts of one combo make ONE line whose counter grows ("bob sent Rose
// ×7"), moved to the top by each new gift of the streak: the server's combo
// (combo_id; the counter is its combo_count), whose combo_end event closes
// the line; from a server without combos, gifts of one sender, one gift and
// one non-empty client combo id. A sender's fan badge (level and badge of
// gift and tip events) is shown beside its name. Pins and campaign_progress
// events are not lines (the pages show them in their own boxes); other
// events are a line each.
//
// Each line carries what a test or a script may read: data-kind, data-from,
// data-seq and data-order (of the latest event on it), data-level and
// data-badge of the sender, and for gifts data-gift, data-count (gifts on
// the line), data-amount (their coins), data-combo-id and data-ended (the
// combo ended).
export class Feed {
  constructor(ol, opts = {}) {
    this.ol = ol;
    this.max = opts.max || FEED_MAX;
    this.combos = new Map(); // sender \0 gift \0 combo -> {li, count, amount}
    this.lastSeq = 0;        // the latest room event shown
  }

  // Shows a room event (kind gift, tip, notice, or another); events at or
  // below the last seq shown are skipped (a snapshot's events repeat ones
  // already shown). Returns the line, or null when skipped.
  add(e) {
    if (typeof e.seq === "number") {
      if (e.seq <= this.lastSeq) return null;
      this.lastSeq = e.seq;
    }
    if (e.kind === "gift" && (e.combo_id || e.combo)) return this.addCombo(e);
    if (e.kind === "combo_end") return this.endCombo(e);
    if (e.kind === "pins" || e.kind === "campaign_progress") return null;
    const li = this.line(e);
    const who = span("who", e.from);
    const what = span("what");
    if (e.kind === "gift") {
      li.dataset.gift = String(e.gift);
      li.dataset.count = String(e.count || 1);
      li.dataset.amount = String(e.amount);
      what.textContent = " sent " + (e.name || "a gift") + ((e.count || 1) > 1 ? " ×" + e.count : "");
      li.append(iconFor(e.animation), who, what, span("amount", coinsText(e.amount)));
    } else if (e.kind === "tip") {
      li.dataset.amount = String(e.amount);
      what.textContent = " tipped";
      li.append(iconFor("tip"), who, what, span("amount", coinsText(e.amount)));
      if (e.pinned_until > 0) li.append(span("pinned-mark", "pinned"));
    } else if (EVENT_TEXT[e.kind]) {
      li.append(iconFor("other"), span("what", EVENT_TEXT[e.kind](e)));
    } else {
      what.textContent = e.kind === "notice" ? ": " + (e.text || "") : " (" + e.kind + ")";
      li.append(iconFor(e.kind === "notice" ? "notice" : "other"), who, what);
    }
    if (e.kind === "gift" || e.kind === "tip") badgeOn(li, who, e);
    li.append(span("seq", "#" + e.seq));
    if (e.kind === "tip" && e.text) li.append(el("q", "", e.text));
    this.put(li);
    return li;
  }

  addCombo(e) {
    // The server's combo when the event has one; else the client's combo id.
    const key = e.combo_id ? "s\u0000" + e.combo_id : e.from + "\u0000" + e.gift + "\u0000" + e.combo;
    let c = this.combos.get(key);
    if (c && (!c.li.isConnected || c.ended)) c = null; // scrolled out of the feed: a new line
    const n = e.count > 0 ? e.count : 1;
    if (!c) {
      const li = this.line(e);
      li.dataset.gift = String(e.gift);
      if (e.combo) li.dataset.combo = e.combo;
      if (e.combo_id) li.dataset.comboId = e.combo_id;
      const who = span("who", e.from);
      c = {li, count: 0, amount: 0, what: span("what"), counter: span("combo"),
        amountEl: span("amount"), seqEl: span("seq"), who, ended: false};
      li.append(iconFor(e.animation), who, c.what, c.counter, c.amountEl, c.seqEl);
    } else {
      this.combos.delete(key); // re-inserted below: the map stays in recency order
    }
    this.combos.set(key, c);
    if (this.combos.size > COMBOS_MAX) this.combos.delete(this.combos.keys().next().value);
    // The server's running count is exact even when this page joined mid-combo.
    c.count = typeof e.combo_count === "number" && e.combo_id ? e.combo_count : c.count + n;
    c.amount += Number(e.amount) || 0;
    const li = c.li;
    badgeOn(li, c.who, e);
    li.dataset.count = String(c.count);
    li.dataset.amount = String(c.amount);
    li.dataset.seq = String(e.seq);
    if (e.order) li.dataset.order = e.order;
    c.what.textContent = " sent " + (e.name || "a gift");
    c.counter.textContent = c.count > 1 ? "×" + c.count : "";
    c.counter.hidden = c.count <= 1;
    c.amountEl.textContent = coinsText(c.amount);
    c.seqEl.textContent = "#" + e.seq;
    // Restart the highlight: the line changed.
    li.classList.remove("bump");
    void li.offsetWidth;
    li.classList.add("bump");
    this.put(li);
    return li;
  }

  // combo_end: the combo's line is closed (its final count and coins, from
  // the server); no line of its own. Null when the line is not on the page.
  endCombo(e) {
    const key = "s\u0000" + e.combo_id;
    const c = this.combos.get(key);
    if (!c || !c.li.isConnected) return null;
    c.ended = true;
    c.count = e.count;
    c.amount = Number(e.amount) || c.amount;
    const li = c.li;
    li.dataset.count = String(c.count);
    li.dataset.amount = String(c.amount);
    li.dataset.ended = "1";
    li.classList.add("ended");
    c.counter.textContent = c.count > 1 ? "×" + c.count : "";
    c.counter.hidden = c.count <= 1;
    c.amountEl.textContent = coinsText(c.amount);
    return li;
  }

  // After a snapshot with reset (history_gone, or a room whose sequence
  // started again): a line says events were lost, and when the room's seq
  // went backwards the feed takes the new numbers from there.
  reset(snap, text) {
    if (typeof snap.seq === "number" && snap.seq < this.lastSeq) this.lastSeq = 0;
    this.addGap(text);
  }

  // A line that says events were lost (after history_gone).
  addGap(text) {
    const li = el("li", "ev ev-gap", text);
    this.put(li);
  }

  line(e) {
    const li = el("li", "ev ev-" + cssKey(e.kind));
    li.dataset.kind = e.kind;
    li.dataset.from = e.from || "";
    li.dataset.seq = String(e.seq);
    if (e.order) li.dataset.order = e.order;
    return li;
  }

  put(li) {
    this.ol.prepend(li);
    while (this.ol.children.length > this.max) this.ol.lastElementChild.remove();
  }
}

// The four boards of a room from a `joined` snapshot (board, day, week,
// month) or a `leaderboard` message (top, day, week, month), with the room's
// totals when the message has them. Keys: all, day, week, month.
export function boardsOf(m) {
  const out = {};
  const all = Array.isArray(m.top) ? m.top : m.board;
  if (Array.isArray(all)) out.all = all;
  for (const k of ["day", "week", "month"]) if (Array.isArray(m[k])) out[k] = m[k];
  return out;
}

// ---- the room's goal: one rule for every page ----------------------------------
// A goal: {goal_id, target, progress, gift, deadline, reached, title}, or null.

// The goal a room event leaves, or undefined when the event is not about the
// goal. A new goal starts at 0; goal_reached marks the goal it names;
// goal_cleared clears the goal it names (or a goal not seen yet).
export function goalAfterEvent(goal, e) {
  switch (e.kind) {
    case "goal":
      return {goal_id: e.goal_id, target: e.target, progress: 0, gift: e.gift || 0, deadline: e.deadline || 0,
        reached: false, title: e.title || ""};
    case "goal_reached":
      return goal && goal.goal_id === e.goal_id ? {...goal, progress: e.progress, reached: true} : goal;
    case "goal_cleared":
      return !goal || goal.goal_id === e.goal_id ? null : goal;
    default:
      return undefined;
  }
}

// The goal to show when `next` (from an event, a snapshot or a push) comes
// after `shown`: of the same goal, the highest progress and reached stay (a
// push can be older than the goal_reached event before it).
export function mergeGoal(shown, next) {
  if (next && shown && shown.goal_id === next.goal_id) {
    return {...next, progress: Math.max(next.progress, shown.progress), reached: !!(next.reached || shown.reached)};
  }
  return next || null;
}

// The texts of the room events that are lines of their own (besides gifts, tips, notices).
const EVENT_TEXT = {
  goal: (e) => (e.from || "the creator") + " set a goal: " + (e.title ? e.title + ", " : "") + coinsText(e.target),
  goal_reached: (e) => "Goal reached! " + coins(e.progress) + " / " + coinsText(e.target) +
    (e.by ? " (" + e.by + " made it)" : ""),
  goal_cleared: (e) => (e.from || "the creator") + " ended the goal at " + coinsText(e.progress),
  pk_end: (e) => "PK battle over: " + e.room_a + " " + coins(e.score_a) + " – " + coins(e.score_b) + " " +
    e.room_b + (e.result === "draw" ? ", a draw" : ", " + e.winner + " wins"),
  campaign_update: (e) => "Campaign update: " + (e.title || "") + (e.text ? ": " + e.text : ""),
};

// The sender's fan badge beside its name on a feed line (gift and tip
// events carry `level` and `badge`; level 0 has no badge).
export function badgeOn(li, who, e) {
  if (typeof e.level !== "number") return;
  li.dataset.level = String(e.level);
  li.dataset.badge = e.badge || "";
  let b = li.querySelector(".badge");
  if (!e.badge) {
    if (b) b.remove();
    return;
  }
  if (!b) {
    b = span("badge");
    who.after(b);
  }
  b.textContent = e.badge;
  b.dataset.level = String(e.level);
  b.className = "badge badge-l" + Math.min(e.level, 4);
}

// A fan badge element for a board row (entries of the all-time list carry level and badge).
export function boardBadge(r) {
  if (!r || !r.badge) return null;
  const b = span("badge badge-l" + Math.min(Number(r.level) || 0, 4), r.badge);
  b.dataset.level = String(r.level);
  return b;
}

// "2:05" / "45 s" left until `until` (ms since the epoch).
export function timeLeft(until, now = Date.now()) {
  const s = Math.max(0, Math.ceil((until - now) / 1000));
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + ":" + String(s % 60).padStart(2, "0");
  return Math.floor(m / 60) + " h " + (m % 60) + " min";
}

export const PERIODS = ["all", "day", "week", "month"];
export const PERIOD_NAMES = {all: "All time", day: "Today", week: "This week", month: "This month"};
