// app.js - the tipcast demo page: one viewer (or the creator) in room alice.
//
// Talks the tipcast.v1.json protocol (docs/protocol.md) to the tipcastd that
// served this page. Everything here is plain DOM code; text from the wire is
// only ever put into the page with textContent, never parsed as HTML.
"use strict";

(function () {
  const ROOM = "alice";
  const SUBPROTOCOL = "tipcast.v1.json";
  // Reconnect backoff: doubles from the first delay up to the cap, with
  // jitter so that many pages do not all come back in the same instant.
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  // Taps of the same gift closer than this form one combo.
  const COMBO_WINDOW_MS = 3000;
  // Lines kept in the feed; older ones are dropped from the page.
  const FEED_MAX = 200;
  // Animations shown at once; more are skipped (the feed still shows them).
  const ANIMATIONS_MAX = 12;
  // Animations run side by side in this many lanes across the stage, and
  // their captions at this many heights, so that they do not cover each other.
  const ANIMATION_LANES = 3;
  const CAPTION_ROWS = 4;
  // Combo streaks remembered for their running count in the feed.
  const COMBOS_MAX = 256;
  // How long a gift's animation stays on the stage.
  const ANIMATION_MS = 4000;
  // A money request unanswered this long is reported as unknown; it is
  // still retried with the same id (so it can never be paid twice).
  const REQUEST_SLOW_MS = 8000;
  // Money requests waiting for an answer; more taps are refused until some
  // answer arrives.
  const PENDING_MAX = 32;

  const ERROR_TEXT = {
    insufficient_balance: "Insufficient balance",
    unknown_gift: "That gift is not in the catalog any more",
    bad_field: "The request was refused",
    room_not_live: "alice is not live right now",
    rate_limited: "Slow down: too many requests",
    idempotency_conflict: "This request id was already used for something else",
    backlogged: "The server is catching up; try again in a moment",
    unavailable: "The server cannot reach its database; try again in a moment",
    forbidden: "You are not allowed to do that",
    history_gone: "Some events are too old to recover",
    internal: "The server failed; nothing was charged",
  };

  const $ = (id) => document.getElementById(id);
  const els = {
    user: $("user"), status: $("status"), balance: $("balance"),
    earnings: $("earnings"), earningsPill: $("earnings-pill"),
    stage: $("stage"), error: $("error"), gifts: $("gifts"), feed: $("feed"),
    board: $("board"), boardEmpty: $("board-empty"), boardTabs: $("board-tabs"),
    tipForm: $("tip-form"), tipAmount: $("tip-amount"), tipText: $("tip-text"),
    noticeForm: $("notice-form"), noticeText: $("notice-text"),
    viewerActions: $("viewer-actions"), creatorActions: $("creator-actions"),
  };

  const state = {
    ws: null,
    user: null,
    role: null,
    authed: false,
    backoffMs: BACKOFF_FIRST_MS,
    retryTimer: null,
    reqCounter: 0,
    catalog: new Map(),     // gift id -> gift
    lastSeq: null,          // latest room event applied; null before the first join
    parked: new Map(),      // seq -> event that arrived ahead of a gap
    historyPending: false,
    pending: new Map(),     // request id -> {msg, sentAt, label}
    combo: null,            // {gift, id, count, last}: this page's current streak
    comboCounts: new Map(), // combo id -> gifts seen in that streak (any sender)
    animCounter: 0,
    boards: {top: [], day: [], week: [], month: []},
    period: "top",
    earningsTimer: null,    // a pending refresh of the creator's earnings
  };

  // ---- helpers ------------------------------------------------------------

  function nextId(prefix) {
    state.reqCounter += 1;
    return prefix + "-" + Date.now().toString(36) + "-" + state.reqCounter.toString(36);
  }

  function randomToken() {
    const b = new Uint8Array(8);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function coins(n) {
    return Number(n).toLocaleString("en-US");
  }

  function coinsText(n) {
    return coins(n) + (Number(n) === 1 ? " coin" : " coins");
  }

  function setStatus(st, text) {
    els.status.dataset.state = st;
    els.status.textContent = text;
  }

  function setBalance(b) {
    if (typeof b !== "number") return;
    els.balance.textContent = coins(b);
    els.balance.dataset.balance = String(b);
  }

  // A creator's earnings are what PostgreSQL holds (the `earnings` request):
  // asked at connect and again a moment after each gift or tip to their
  // room, once the ledger has written it.
  const EARNINGS_REFRESH_MS = 1000;

  function setEarnings(m) {
    if (typeof m.total !== "number") return;
    els.earnings.textContent = coins(m.total);
    els.earnings.dataset.earnings = String(m.total);
  }

  function refreshEarningsSoon() {
    if (state.user !== ROOM || state.role !== "creator" || state.earningsTimer) return;
    state.earningsTimer = setTimeout(() => {
      state.earningsTimer = null;
      send({type: "earnings", id: nextId("earn")});
    }, EARNINGS_REFRESH_MS);
  }

  let errorTimer = null;
  function showError(text, code) {
    els.error.textContent = text;
    els.error.dataset.code = code || "";
    els.error.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(() => { els.error.hidden = true; }, 8000);
  }

  function describeError(m, label) {
    let text = ERROR_TEXT[m.code] || ("Error: " + m.code);
    if (m.code === "insufficient_balance" && typeof m.balance === "number") {
      text += ": you have " + coinsText(m.balance);
      if (label) text += ", " + label;
    } else if (m.code === "bad_field" && m.field && !m.message) {
      text += " (" + m.field + ")";
    }
    if (typeof m.retry_after_ms === "number") text += "; retry in " + Math.ceil(m.retry_after_ms / 1000) + " s";
    // The server's own words where ours are too general.
    if (m.message && (!ERROR_TEXT[m.code] || m.code === "forbidden" || m.code === "bad_field")) {
      text += ": " + m.message;
    }
    return text + ".";
  }

  function send(msg) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
    state.ws.send(JSON.stringify(msg));
    return true;
  }

  // ---- connection -----------------------------------------------------------

  async function fetchToken(user) {
    const r = await fetch("/demo/token?user=" + encodeURIComponent(user), {cache: "no-store"});
    if (!r.ok) throw new Error("token: HTTP " + r.status);
    const body = await r.json();
    if (typeof body.token !== "string") throw new Error("token: no token in the answer");
    return body;
  }

  function scheduleReconnect(why) {
    if (state.retryTimer) return;
    const base = state.backoffMs;
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    state.backoffMs = Math.min(base * 2, BACKOFF_MAX_MS);
    setStatus("retrying", why + "; reconnecting in " + (delay / 1000).toFixed(1) + " s");
    state.retryTimer = setTimeout(() => { state.retryTimer = null; connect(); }, delay);
  }

  async function connect() {
    const user = els.user.value;
    setStatus("connecting", "connecting as " + user + "…");
    let tok;
    try {
      tok = await fetchToken(user);
    } catch (e) {
      scheduleReconnect("no token (" + e.message + ")");
      return;
    }
    if (els.user.value !== user) return; // switched meanwhile; that switch connects
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(proto + "//" + location.host + "/ws", SUBPROTOCOL);
    } catch (e) {
      scheduleReconnect("cannot open the WebSocket");
      return;
    }
    state.ws = ws;
    state.authed = false;
    // The token goes in the first message rather than the URL, so that it
    // stays out of access logs.
    ws.onopen = () => { ws.send(JSON.stringify({type: "auth", id: nextId("auth"), token: tok.token})); };
    ws.onmessage = (ev) => {
      if (ws !== state.ws) return;
      let m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m && typeof m === "object") onMessage(m);
    };
    ws.onclose = (ev) => {
      if (ws !== state.ws) return;
      state.ws = null;
      state.authed = false;
      delete document.body.dataset.joined;
      const why = ev.code === 1013 ? "server busy" : ev.code === 1001 ? "server restarting"
        : ev.code === 4003 ? "authentication failed" : "disconnected (" + ev.code + ")";
      scheduleReconnect(why);
    };
  }

  // Switching user: close the current connection and start afresh. The room
  // feed stays (it is the same room), the balance is the new user's.
  function switchUser() {
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    state.backoffMs = BACKOFF_FIRST_MS;
    state.pending.clear();
    state.combo = null;
    delete document.body.dataset.joined;
    els.balance.textContent = "–";
    els.balance.dataset.balance = "";
    const old = state.ws;
    state.ws = null;
    if (old) old.close(1000, "switching user");
    connect();
  }

  // ---- messages from the server ----------------------------------------------

  function onMessage(m) {
    switch (m.type) {
      case "welcome": return onWelcome(m);
      case "catalog": return onCatalog(m);
      case "balance": return setBalance(m.balance);
      case "earnings": return setEarnings(m);
      case "joined": return onJoined(m);
      case "history": return onHistory(m);
      case "event": return deliver(m, true);
      // Several events at once, for a member that is behind (protocol.md).
      case "events": return m.events.forEach((ev) => deliver(ev, true));
      case "leaderboard": return onLeaderboard(m);
      case "ack": return onAck(m);
      case "error": return onError(m);
      default: return undefined;
    }
  }

  function onWelcome(m) {
    state.authed = true;
    state.user = m.user;
    state.role = m.role;
    state.backoffMs = BACKOFF_FIRST_MS;
    state.historyPending = false; // a request lost with the old connection
    setStatus("live", "connected as " + m.user);
    document.body.dataset.user = m.user;
    // A creator cannot pay their own room; they post notices instead.
    const owner = m.user === ROOM;
    els.viewerActions.hidden = owner;
    els.creatorActions.hidden = !(owner || m.role === "admin");
    send({type: "catalog", id: nextId("cat")});
    send({type: "balance", id: nextId("bal")});
    const creator = m.role === "creator" && owner;
    els.earningsPill.hidden = !creator;
    if (creator) send({type: "earnings", id: nextId("earn")});
    send({type: "join", id: nextId("join"), room: ROOM});
    // Money requests that were never answered go again with the same id:
    // the server answers a replay with the first result, so nothing is paid
    // twice.
    for (const p of state.pending.values()) send(p.msg);
  }

  function onCatalog(m) {
    if (!Array.isArray(m.gifts)) return;
    state.catalog.clear();
    els.gifts.textContent = "";
    for (const g of m.gifts) {
      state.catalog.set(g.id, g);
      const b = document.createElement("button");
      b.type = "button";
      b.className = "gift tier-" + (g.tier | 0);
      b.dataset.giftId = String(g.id);
      b.dataset.animation = g.animation;
      b.dataset.price = String(g.price);
      b.append(span("gift-icon icon-" + g.animation), span("gift-name", g.name),
        span("gift-price", coinsText(g.price)), span("gift-combo"));
      b.addEventListener("click", () => sendGift(g, b));
      els.gifts.append(b);
    }
    if (m.gifts.length === 0) {
      const p = document.createElement("p");
      p.className = "hint";
      p.textContent = "The catalog is empty.";
      els.gifts.append(p);
    }
  }

  function onJoined(m) {
    if (m.room !== ROOM) return;
    // The snapshot carries every period: board (all time), day, week, month.
    if (Array.isArray(m.board)) state.boards.top = m.board;
    for (const k of ["day", "week", "month"]) if (Array.isArray(m[k])) state.boards[k] = m[k];
    renderBoard();
    const events = Array.isArray(m.events) ? m.events : [];
    document.body.dataset.joined = m.room;
    if (state.lastSeq === null) {
      // First join: the snapshot is the starting point. Its events are
      // history, shown without animations.
      state.lastSeq = events.length ? events[0].seq - 1 : m.seq;
      for (const e of events) deliver(e, false);
      state.lastSeq = Math.max(state.lastSeq, m.seq);
      flushParked();
      return;
    }
    // A reconnect: what happened while we were away comes from history,
    // asked from the last seq we applied (the snapshot may not reach back
    // that far); events found in both are applied once.
    if (m.seq > state.lastSeq) askHistory();
    for (const e of events) deliver(e, false);
  }

  function askHistory() {
    if (state.historyPending || state.lastSeq === null) return;
    state.historyPending = true;
    send({type: "history", id: nextId("hist"), room: ROOM, after_seq: state.lastSeq});
  }

  function onHistory(m) {
    state.historyPending = false;
    const events = Array.isArray(m.events) ? m.events : [];
    for (const e of events) deliver(e, false);
    // At most 100 events per answer: ask on until we reach the room's seq.
    if (typeof m.seq === "number" && state.lastSeq !== null && m.seq > state.lastSeq && events.length) askHistory();
  }

  // Applies room events in seq order, each once: older ones are dropped,
  // early ones wait until the gap before them is filled from history.
  function deliver(e, live) {
    if (e.room !== undefined && e.room !== ROOM) return;
    if (typeof e.seq !== "number") return;
    if (state.lastSeq !== null && e.seq <= state.lastSeq) return;
    state.parked.set(e.seq, {e, live});
    if (state.lastSeq === null) return; // before the first snapshot
    flushParked();
    if (state.parked.size) askHistory();
  }

  function flushParked() {
    for (const seq of Array.from(state.parked.keys())) {
      if (seq <= state.lastSeq) state.parked.delete(seq);
    }
    while (state.parked.has(state.lastSeq + 1)) {
      const p = state.parked.get(state.lastSeq + 1);
      state.parked.delete(state.lastSeq + 1);
      state.lastSeq += 1;
      applyEvent(p.e, p.live);
    }
  }

  function applyEvent(e, live) {
    const li = document.createElement("li");
    li.className = "ev ev-" + e.kind;
    li.dataset.seq = String(e.seq);
    li.dataset.kind = e.kind;
    if (e.order) li.dataset.order = e.order;
    const who = document.createElement("b");
    who.textContent = e.from || "?";
    const what = span("what");
    if (e.kind === "gift") {
      li.dataset.gift = String(e.gift);
      const count = e.count > 1 ? " ×" + e.count : "";
      what.textContent = " sent " + (e.name || "a gift") + count;
      li.append(iconFor(e.animation), who, what, span("amount", coinsText(e.amount)));
      if (e.combo) {
        li.dataset.combo = e.combo;
        const n = (state.comboCounts.get(e.combo) || 0) + (e.count > 0 ? e.count : 1);
        state.comboCounts.delete(e.combo); // re-insert: the map stays in recency order
        state.comboCounts.set(e.combo, n);
        if (state.comboCounts.size > COMBOS_MAX) state.comboCounts.delete(state.comboCounts.keys().next().value);
        if (n > 1) {
          what.after(span("combo", "combo ×" + n));
        }
      }
    } else if (e.kind === "tip") {
      what.textContent = " tipped";
      li.append(iconFor("tip"), who, what, span("amount", coinsText(e.amount)));
    } else {
      what.textContent = e.kind === "notice" ? ": " + (e.text || "") : " (" + e.kind + ")";
      li.append(iconFor(e.kind === "notice" ? "notice" : "other"), who, what);
    }
    li.append(span("seq", "#" + e.seq));
    if (e.kind === "tip" && e.text) {
      const t = document.createElement("q");
      t.textContent = e.text;
      li.append(t);
    }
    els.feed.prepend(li);
    while (els.feed.children.length > FEED_MAX) els.feed.lastElementChild.remove();
    if (live && (e.kind === "gift" || e.kind === "tip")) {
      animate(e);
      refreshEarningsSoon();
    }
  }

  function iconFor(key) {
    return span("icon icon-" + String(key).replace(/[^a-z0-9_-]/gi, ""));
  }

  // A <span> with a class and, optionally, text (never HTML).
  function span(className, text) {
    const s = document.createElement("span");
    s.className = className;
    if (text !== undefined) s.textContent = text;
    return s;
  }

  // A gift's animation: a CSS animation chosen by the gift's animation key
  // (style.css draws rose, heart, rocket and castle; anything else gets the
  // generic sparkle).
  function animate(e) {
    if (els.stage.querySelectorAll(".anim").length >= ANIMATIONS_MAX) return;
    const key = e.kind === "tip" ? "tip" : String(e.animation || "generic").replace(/[^a-z0-9_-]/gi, "");
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

  function onLeaderboard(m) {
    if (m.room !== ROOM) return;
    for (const k of ["top", "day", "week", "month"]) if (Array.isArray(m[k])) state.boards[k] = m[k];
    renderBoard();
  }

  function renderBoard() {
    const rows = state.boards[state.period] || [];
    els.board.textContent = "";
    rows.forEach((r, i) => {
      const li = document.createElement("li");
      li.dataset.user = r.user;
      li.dataset.total = String(r.total);
      if (r.user === state.user) li.className = "me";
      li.append(span("rank", String(i + 1)), span("who", r.user), span("total", coins(r.total)));
      els.board.append(li);
    });
    els.boardEmpty.hidden = rows.length > 0;
  }

  function onAck(m) {
    const p = state.pending.get(m.id);
    if (!p) return;
    state.pending.delete(m.id);
    p.button && p.button.classList.remove("busy");
    if (typeof m.balance === "number") setBalance(m.balance);
  }

  function onError(m) {
    const p = m.id ? state.pending.get(m.id) : undefined;
    if (p) {
      state.pending.delete(m.id);
      p.button && p.button.classList.remove("busy");
    }
    if (m.code === "insufficient_balance" && typeof m.balance === "number") setBalance(m.balance);
    if (m.code === "history_gone") {
      // The events we missed are gone: start again from a fresh snapshot.
      state.historyPending = false;
      state.parked.clear();
      state.lastSeq = null;
      const li = document.createElement("li");
      li.className = "ev ev-gap";
      li.textContent = "Some events were missed while you were away.";
      els.feed.prepend(li);
      send({type: "join", id: nextId("join"), room: ROOM});
      return;
    }
    if (m.code === "auth_invalid" || m.code === "auth_expired") {
      showError("Authentication failed (" + m.code + ").", m.code);
      return;
    }
    showError(describeError(m, p && p.label), m.code);
  }

  // ---- requests from the page ---------------------------------------------------

  function sendMoney(msg, label, button) {
    if (!state.authed) {
      showError("Not connected yet; try again in a moment.", "offline");
      return;
    }
    if (state.pending.size >= PENDING_MAX) {
      showError("Waiting for the server to answer earlier requests.", "busy");
      return;
    }
    state.pending.set(msg.id, {msg, sentAt: Date.now(), label, button});
    if (button) button.classList.add("busy");
    send(msg);
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
    const badge = button.querySelector(".gift-combo");
    badge.textContent = c.count > 1 ? "×" + c.count : "";
    button.classList.remove("tapped");
    void button.offsetWidth; // restart the tap animation
    button.classList.add("tapped");
    sendMoney({type: "gift", id: nextId("gift"), room: ROOM, gift: g.id, count: 1, combo: c.id},
      g.name + " costs " + coins(g.price), button);
  }

  els.tipForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const amount = Number(els.tipAmount.value);
    if (!Number.isInteger(amount) || amount < 1) {
      showError("A tip is a whole number of coins, at least 1.", "bad_amount");
      return;
    }
    const msg = {type: "tip", id: nextId("tip"), room: ROOM, amount};
    const text = els.tipText.value.trim();
    if (text) msg.text = text;
    sendMoney(msg, "the tip is " + coins(amount), null);
    els.tipText.value = "";
  });

  els.noticeForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = els.noticeText.value.trim();
    if (!text) return;
    send({type: "notice", id: nextId("notice"), room: ROOM, text});
    els.noticeText.value = "";
  });

  els.boardTabs.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-period]");
    if (!b) return;
    state.period = b.dataset.period;
    for (const x of els.boardTabs.querySelectorAll("button")) x.classList.toggle("on", x === b);
    renderBoard();
  });

  // Requests nobody answered for a while: tell the user, keep the request
  // (it is sent again, with the same id, after a reconnect).
  setInterval(() => {
    const now = Date.now();
    for (const p of state.pending.values()) {
      if (!p.warned && now - p.sentAt > REQUEST_SLOW_MS) {
        p.warned = true;
        showError("No answer from the server yet; the request will be retried safely.", "slow");
      }
    }
  }, 1000);

  // ?user=carol picks the demo user (handy for opening two pages side by side).
  const wanted = new URLSearchParams(location.search).get("user");
  if (wanted && Array.from(els.user.options).some((o) => o.value === wanted)) els.user.value = wanted;
  els.user.addEventListener("change", switchUser);
  connect();
})();
