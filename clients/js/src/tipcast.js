// tipcast.js - the JavaScript client of tipcastd (docs/protocol.md, docs/clients.md).
//
// An ES module with no dependency: browsers import it as is (tipcastd serves
// it at /sdk/tipcast.js), Node 20 passes the `ws` package as the WebSocket.
//
// What it does for the application:
//   - requests as promises, each with a client-chosen id and a timeout;
//   - reconnects with exponential backoff and jitter, authenticates again
//     (a token function is called again), joins every joined room again;
//   - delivers every room event exactly once, in seq order, across
//     reconnects: it drops events it already delivered, fills gaps with
//     `history` (100 a page) while holding back later live events, and when
//     the server no longer has the missed events (`history_gone`) it takes a
//     fresh `join` and says so with a `snapshot` event whose `reset` is true;
//   - resends gifts and tips with the same id until they are answered (the
//     server's idempotency makes a resend of a taken request answer
//     `replayed: true` and move no money).
// The exact rules are written in docs/clients.md, "Reconnect and resume".

import {encode as mpEncode, decode as mpDecode} from "./msgpack.js";

export const SUBPROTOCOLS = Object.freeze({json: "tipcast.v1.json", msgpack: "tipcast.v1.msgpack"});

/** Close codes after which the client does not reconnect: 4003 (authentication failed). */
export const FATAL_CLOSE_CODES = Object.freeze([4003]);

/** Error codes of a gift, tip or pledge after which it is resent with the same id (after retry_after_ms). */
export const RETRYABLE_MONEY_CODES = Object.freeze(["unavailable", "backlogged", "risk_rate_limited", "rate_limited"]);

// Money requests: kept and resent with the same id until answered (the
// server's idempotency answers a resend `replayed`, moving no money).
const MONEY_TYPES = new Set(["gift", "tip", "pledge"]);
const HISTORY_PAGE = 100; // the server's page size (docs/protocol.md, history)
// Live events of a room held back while a gap is filled. Past it the held
// events are dropped: history brings them back, nothing is lost.
const HELD_EVENTS_MAX = 5000;
// A history reply that brings nothing while a gap is open (the answering node
// knows the room's latest event a few ms late) is asked again after this
// pause, at most this many times before the room is joined afresh.
const EMPTY_HISTORY_PAUSE_MS = 50;
const EMPTY_HISTORY_TRIES = 40;
const DEFAULT_RETRY_AFTER_MS = 1000;

const DEFAULTS = {
  protocol: "json",
  reconnect: {minMs: 250, maxMs: 30000, factor: 2, jitter: 0.5},
  requestTimeoutMs: 10000,
  moneyRetryMs: 120000,
  pingIntervalMs: 25000,
};

/** A refused or failed request. `code` is the server's error code or the SDK's own
 *  (`timeout`, `closed`, `not_connected`); the other fields are copied from the error message. */
export class TipcastError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = "TipcastError";
    this.code = code;
    if (extra.field !== undefined) this.field = extra.field;
    if (extra.retry_after_ms !== undefined) this.retryAfterMs = extra.retry_after_ms;
    if (extra.oldest_seq !== undefined) this.oldestSeq = extra.oldest_seq;
    if (extra.balance !== undefined) this.balance = extra.balance;
    if (extra.remaining !== undefined) this.remaining = extra.remaining;
    if (extra.minimum !== undefined) this.minimum = extra.minimum;
    if (extra.request !== undefined) this.request = extra.request;
    if (extra.closeCode !== undefined) this.closeCode = extra.closeCode;
  }

  static fromMessage(msg, request) {
    return new TipcastError(msg.code || "internal", msg.message, {...msg, request});
  }
}

function randomUUID() {
  const c = globalThis.crypto;
  // randomUUID exists only in secure contexts; getRandomValues everywhere.
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const b = new Uint8Array(16);
  c.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class TipcastClient {
  constructor(options = {}) {
    if (!options.url) throw new TypeError("TipcastClient: url is required");
    if (options.token === undefined) throw new TypeError("TipcastClient: token is required");
    const protocol = options.protocol || DEFAULTS.protocol;
    if (!SUBPROTOCOLS[protocol]) throw new TypeError(`TipcastClient: protocol must be "json" or "msgpack"`);
    this.url = options.url;
    this.protocol = protocol;
    this._token = options.token;
    this._WS = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WS !== "function") {
      throw new TypeError("TipcastClient: no WebSocket: pass options.WebSocket (in Node: the `ws` package)");
    }
    this._reconnect = options.reconnect === false ? false : {...DEFAULTS.reconnect, ...(options.reconnect || {})};
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
    this.moneyRetryMs = options.moneyRetryMs ?? DEFAULTS.moneyRetryMs;
    this.pingIntervalMs = options.pingIntervalMs ?? DEFAULTS.pingIntervalMs;

    this.state = "idle";
    this.welcome = null;
    this._handlers = new Map();
    this._ws = null;
    this._pending = new Map(); // id -> request record
    this._rooms = new Map(); // room -> room record (see _room)
    this._attempt = 0;
    this._timer = null; // reconnect timer
    this._pinger = null;
    this._connectWaiters = [];
    this._conn = 0; // generation of the socket, to ignore callbacks of an old one
  }

  // ---- events ------------------------------------------------------------------

  on(name, fn) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(fn);
    return this;
  }

  off(name, fn) {
    const set = this._handlers.get(name);
    if (set) set.delete(fn);
    return this;
  }

  _emit(name, arg) {
    const set = this._handlers.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (e) {
        // A handler's exception must not break the client's own bookkeeping.
        setTimeout(() => { throw e; });
      }
    }
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("state", {state, attempt: this._attempt, delayMs: 0, ...extra});
  }

  // ---- connecting --------------------------------------------------------------

  /** Connects (if not connected); resolves with the welcome of the first successful connection. */
  connect() {
    if (this.state === "open") return Promise.resolve(this.welcome);
    if (this.state === "closed") return Promise.reject(new TipcastError("closed", "the client was closed"));
    const p = new Promise((resolve, reject) => this._connectWaiters.push({resolve, reject}));
    if (this.state === "idle") this._open();
    return p;
  }

  /** Closes the connection for good: no reconnect; pending requests reject with `closed`. */
  close() {
    if (this.state === "closed") return;
    this._shutdown(new TipcastError("closed", "the client was closed"));
  }

  _shutdown(err) {
    clearTimeout(this._timer);
    this._timer = null;
    this._stopPing();
    const ws = this._ws;
    this._ws = null;
    this._conn++;
    if (ws) {
      try { ws.close(1000); } catch { /* already closing */ }
    }
    for (const rec of [...this._pending.values()]) this._fail(rec, err);
    for (const r of this._rooms.values()) r.gen++;
    this._rooms.clear();
    this._setState("closed", err.code === "closed" ? {} : {error: err});
    for (const w of this._connectWaiters.splice(0)) w.reject(err);
  }

  async _open() {
    const conn = ++this._conn;
    const state = this._attempt === 0 && !this.welcome ? "connecting" : "reconnecting";
    if (this.state !== state) this._setState(state);
    let token;
    try {
      token = typeof this._token === "function" ? await this._token() : this._token;
    } catch (e) {
      if (conn !== this._conn) return;
      this._emit("error", new TipcastError("auth_invalid", "the token function failed: " + (e && e.message)));
      this._lost(conn, 0, "token function failed");
      return;
    }
    if (conn !== this._conn) return;
    let ws;
    try {
      ws = new this._WS(this.url, SUBPROTOCOLS[this.protocol]);
    } catch (e) {
      this._lost(conn, 0, String(e && e.message));
      return;
    }
    this._ws = ws;
    ws.binaryType = "arraybuffer";
    const authId = this.newId("auth");
    let closeSeen = false;
    ws.onopen = () => {
      if (conn !== this._conn) return;
      // The token goes in the first message, not the URL: URLs end up in logs.
      this._request({type: "auth", id: authId, token}, {internal: true, auth: true})
        .then((welcome) => this._welcomed(conn, welcome))
        .catch((err) => {
          if (conn !== this._conn) return;
          if (err.code === "auth_expired" || err.code === "auth_invalid") this._authError = err;
          // Otherwise (a timeout): drop this socket and try again.
          else if (this._ws === ws) ws.close(4000);
        });
    };
    ws.onmessage = (ev) => {
      if (conn !== this._conn) return;
      this._onFrame(ev.data);
    };
    ws.onerror = () => { /* onclose follows and says what to do */ };
    ws.onclose = (ev) => {
      if (closeSeen) return;
      closeSeen = true;
      if (conn !== this._conn) return;
      this._lost(conn, ev.code, ev.reason);
    };
  }

  _welcomed(conn, welcome) {
    if (conn !== this._conn) return;
    this.welcome = welcome;
    this._attempt = 0;
    this._authError = null;
    this._expiredRetry = false;
    this._setState("open");
    this._emit("welcome", welcome);
    this._startPing(conn);
    for (const w of this._connectWaiters.splice(0)) w.resolve(welcome);
    // Resume: every room joined again, then every unanswered gift or tip resent.
    for (const r of this._rooms.values()) {
      if (r.joined) this._resume(r);
    }
    for (const rec of this._pending.values()) {
      if (rec.money && !rec.sent && !rec.waitTimer) this._send(rec);
    }
  }

  // The socket is gone: requests that cannot be resent fail, the rest wait.
  _lost(conn, code, reason) {
    if (conn !== this._conn) return;
    this._ws = null;
    this._conn++;
    this._stopPing();
    const closedErr = new TipcastError("closed", `connection lost (${code}${reason ? " " + reason : ""})`,
      {closeCode: code});
    for (const rec of [...this._pending.values()]) {
      if (rec.money) {
        rec.sent = false;
        clearTimeout(rec.timer);
        rec.timer = null;
      } else {
        this._fail(rec, closedErr);
      }
    }
    for (const r of this._rooms.values()) {
      r.gen++; // any history fill of the old socket stops
      r.syncing = false;
    }
    if (this._authError && this._authError.code === "auth_expired" && typeof this._token === "function" &&
        !this._expiredRetry) {
      // An expired token from a token function: one more attempt, at once, with a fresh
      // token; refused again, the client closes (a loop would not fix a wrong clock).
      this._expiredRetry = true;
      this._authError = null;
      this.state = "reconnecting";
      this._emit("state", {state: "reconnecting", attempt: this._attempt, delayMs: 0, closeCode: code});
      this._open();
      return;
    }
    if (FATAL_CLOSE_CODES.includes(code) || this._authError) {
      const err = this._authError ||
        new TipcastError("auth_invalid", `authentication failed (close ${code})`, {closeCode: code});
      err.closeCode = code;
      this._emit("error", err);
      this._shutdown(err);
      return;
    }
    if (!this._reconnect) {
      this._shutdown(closedErr);
      return;
    }
    this._attempt++;
    const {minMs, maxMs, factor, jitter} = this._reconnect;
    const base = Math.min(maxMs, minMs * Math.pow(factor, this._attempt - 1));
    // Jitter spreads the reconnects of many clients that lost one node at once.
    const delayMs = Math.round(base * (1 - jitter * Math.random()));
    this.state = "reconnecting";
    this._emit("state", {state: "reconnecting", attempt: this._attempt, delayMs, closeCode: code});
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this.state === "reconnecting") this._open();
    }, delayMs);
  }

  _startPing(conn) {
    this._stopPing();
    if (!this.pingIntervalMs) return;
    // An application ping finds a connection that died without a close (a
    // network that vanished): no pong within the request timeout drops it.
    this._pinger = setInterval(() => {
      if (conn !== this._conn || this.state !== "open") return;
      const ws = this._ws;
      this.ping().catch((e) => {
        if (e.code === "timeout" && ws && this._ws === ws) ws.close(4000, "no pong");
      });
    }, this.pingIntervalMs);
  }

  _stopPing() {
    clearInterval(this._pinger);
    this._pinger = null;
  }

  // ---- frames ----------------------------------------------------------------

  _encode(msg) {
    return this.protocol === "msgpack" ? mpEncode(msg) : JSON.stringify(msg);
  }

  _decode(data) {
    if (this.protocol === "msgpack") {
      if (typeof data === "string") throw new TypeError("a text frame on the msgpack subprotocol");
      return mpDecode(data);
    }
    if (typeof data !== "string") {
      if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
        throw new TypeError("a binary frame on the json subprotocol");
      }
      data = String(data);
    }
    return JSON.parse(data);
  }

  _onFrame(data) {
    let msg;
    try {
      msg = this._decode(data);
    } catch (e) {
      this._emit("error", new TipcastError("bad_message", "undecodable frame from the server: " + e.message));
      return;
    }
    if (!msg || typeof msg !== "object") return;
    const rec = msg.id !== undefined ? this._pending.get(msg.id) : undefined;
    if (rec) {
      this._answer(rec, msg);
      return;
    }
    switch (msg.type) {
      case "event": this._onEvent(msg); break;
      case "events":
        for (const ev of msg.events || []) this._onEvent({room: msg.room, ...ev});
        break;
      case "leaderboard": if (msg.id === undefined) this._emit("leaderboard", msg); break;
      case "room": this._emit("room", msg); break;
      // A PK battle's live scores (not a room event: no seq), to members of both rooms.
      case "pk_score": if (this._rooms.has(msg.room)) this._emit("pk_score", msg); break;
      case "welcome": if (msg.id === undefined) this._emit("welcome", msg); break;
      case "error":
        if (msg.id === undefined) this._emit("error", TipcastError.fromMessage(msg));
        break;
      default: break; // a late answer to a request that timed out, or a newer server's message
    }
  }

  // ---- requests ----------------------------------------------------------------

  /** A fresh request id: `prefix-` and a random UUID. */
  newId(prefix = "r") {
    return `${prefix}-${randomUUID()}`;
  }

  /** Sends any request (a map with `type`; `id` is added when absent) and resolves with its answer. */
  request(msg) {
    return this._request({...msg, id: msg.id || this.newId(msg.type ? msg.type[0] : "r")});
  }

  _request(msg, opts = {}) {
    return new Promise((resolve, reject) => {
      const money = MONEY_TYPES.has(msg.type);
      const rec = {msg, money, resolve, reject, sent: false, timer: null, waitTimer: null,
        internal: !!opts.internal, lastError: null,
        deadline: money ? Date.now() + this.moneyRetryMs : 0};
      if (this._pending.has(msg.id)) {
        reject(new TipcastError("bad_field", "a request with this id is already waiting", {field: "id", request: msg}));
        return;
      }
      const open = this.state === "open" || (opts.auth && this._ws);
      if (!open && !(money && this.state === "reconnecting" || money && this.state === "connecting")) {
        reject(new TipcastError("not_connected", `not connected (state ${this.state})`, {request: msg}));
        return;
      }
      this._pending.set(msg.id, rec);
      if (money) {
        rec.deadlineTimer = setTimeout(() => {
          this._fail(rec, rec.lastError ||
            new TipcastError("timeout", `no answer within moneyRetryMs (${this.moneyRetryMs} ms)`, {request: msg}));
        }, this.moneyRetryMs);
      }
      if (open) this._send(rec);
    });
  }

  _send(rec) {
    const ws = this._ws;
    if (!ws) return;
    try {
      ws.send(this._encode(rec.msg));
    } catch (e) {
      if (!rec.money) this._fail(rec, new TipcastError("closed", "send failed: " + e.message, {request: rec.msg}));
      return; // a money request is sent again after the reconnect
    }
    rec.sent = true;
    clearTimeout(rec.timer);
    rec.timer = setTimeout(() => {
      rec.timer = null;
      if (!rec.money) {
        this._fail(rec, new TipcastError("timeout", `no answer within ${this.requestTimeoutMs} ms`, {request: rec.msg}));
      } else if (this._ws === ws) {
        // Still connected but unanswered: the same id again (never a second payment).
        this._send(rec);
      }
    }, this.requestTimeoutMs);
  }

  _answer(rec, msg) {
    clearTimeout(rec.timer);
    rec.timer = null;
    if (msg.type !== "error") {
      this._finish(rec);
      rec.resolve(msg);
      return;
    }
    const err = TipcastError.fromMessage(msg, rec.msg);
    if (rec.money && RETRYABLE_MONEY_CODES.includes(msg.code)) {
      const wait = Number.isFinite(msg.retry_after_ms) ? msg.retry_after_ms : DEFAULT_RETRY_AFTER_MS;
      if (Date.now() + wait < rec.deadline) {
        rec.lastError = err;
        rec.sent = false;
        rec.waitTimer = setTimeout(() => {
          rec.waitTimer = null;
          if (this.state === "open") this._send(rec); // else: resent at the next welcome
        }, wait);
        return;
      }
    }
    this._fail(rec, err);
  }

  _finish(rec) {
    clearTimeout(rec.timer);
    clearTimeout(rec.waitTimer);
    clearTimeout(rec.deadlineTimer);
    this._pending.delete(rec.msg.id);
  }

  _fail(rec, err) {
    if (this._pending.get(rec.msg.id) !== rec) return;
    this._finish(rec);
    if (err.request === undefined) err.request = rec.msg;
    rec.reject(err);
  }

  // ---- the public requests -------------------------------------------------------

  ping() { return this._request({type: "ping", id: this.newId("p")}); }

  async catalog() {
    const m = await this._request({type: "catalog", id: this.newId("k")});
    return {version: m.version, gifts: m.gifts};
  }

  async balance() {
    const m = await this._request({type: "balance", id: this.newId("b")});
    return m.balance;
  }

  async earnings(user) {
    const msg = {type: "earnings", id: this.newId("e")};
    if (user !== undefined) msg.user = user;
    const m = await this._request(msg);
    return {creator: m.creator, total: m.total, orders: m.orders};
  }

  notice(room, text) { return this._request({type: "notice", id: this.newId("n"), room, text}); }

  history(room, afterSeq = 0) {
    return this._request({type: "history", id: this.newId("h"), room, after_seq: afterSeq});
  }

  leaderboard(room) { return this._request({type: "leaderboard", id: this.newId("lb"), room}); }

  gift({room, gift, count, combo, coupon, id}) {
    const msg = {type: "gift", id: id || this.newId("g"), room, gift};
    if (count !== undefined) msg.count = count;
    if (combo !== undefined) msg.combo = combo;
    if (coupon !== undefined) msg.coupon = coupon;
    return this._request(msg);
  }

  tip({room, amount, text, id}) {
    const msg = {type: "tip", id: id || this.newId("t"), room, amount};
    if (text !== undefined) msg.text = text;
    return this._request(msg);
  }

  /** Pledges coins to a campaign (a money request: resent with its id until answered). */
  pledge({campaign, amount, tier, id}) {
    const msg = {type: "pledge", id: id || this.newId("pl"), campaign, amount};
    if (tier !== undefined) msg.tier = tier;
    return this._request(msg);
  }

  /** Sets the room's goal (its owner or an admin); resolves with the ack ({room, seq}). */
  goal({room, amount, gift, deadline, text}) {
    const msg = {type: "goal", id: this.newId("goal"), room, amount};
    if (gift !== undefined) msg.gift = gift;
    if (deadline !== undefined) msg.deadline = deadline;
    if (text !== undefined) msg.text = text;
    return this._request(msg);
  }

  goalClear(room) { return this._request({type: "goal_clear", id: this.newId("gc"), room}); }

  /** Removes a pinned tip (the room's owner, an admin or a moderator). */
  unpin(room, order) { return this._request({type: "unpin", id: this.newId("u"), room, order}); }

  /** Adds a moderator; resolves with the room's moderators after the change. */
  moderatorAdd(room, user) {
    return this._request({type: "moderator_add", id: this.newId("m"), room, user});
  }

  moderatorRemove(room, user) {
    return this._request({type: "moderator_remove", id: this.newId("m"), room, user});
  }

  /** The room's moderators, sorted (anyone may read them). */
  moderators(room) {
    return this._request({type: "moderators", id: this.newId("m"), room});
  }

  /** The platform's boards of the day (default), week or month. */
  globalBoard(period) {
    const msg = {type: "global_board", id: this.newId("gb")};
    if (period !== undefined) msg.period = period;
    return this._request(msg);
  }

  // ---- rooms -------------------------------------------------------------------

  /** Joins a room; resolves with the snapshot (`joined`). From then on its events are
   *  delivered as "event", and the room is joined again after every reconnect. */
  async join(room, {afterSeq} = {}) {
    let r = this._rooms.get(room);
    if (!r && afterSeq !== undefined) {
      // Resume a room this app saw up to afterSeq (with an earlier client): the
      // events after it are delivered first, exactly as after a reconnect.
      if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) throw new TypeError("join: afterSeq must be an integer >= 0");
      r = {room, last: afterSeq, joined: true, syncing: true, held: [], gen: 0, target: 0};
      this._rooms.set(room, r);
      return this._resume(r, true);
    }
    const fresh = !r;
    if (fresh) {
      r = {room, last: null, joined: false, syncing: true, held: [], gen: 0, target: 0};
      this._rooms.set(room, r);
    }
    const gen = r.gen;
    let snap;
    try {
      snap = await this._request({type: "join", id: this.newId("j"), room});
    } catch (e) {
      if (fresh && this._rooms.get(room) === r && !r.joined) this._rooms.delete(room);
      throw e;
    }
    if (this._rooms.get(room) !== r || r.gen !== gen) return snap; // left or reconnected meanwhile
    if (!r.joined) {
      r.joined = true;
      r.last = snap.seq;
      r.syncing = false;
      this._emit("snapshot", snap);
      this._drain(r);
      this._startSync(r);
    } else {
      // A join of a room already joined: a fresh snapshot, the events go on.
      this._emit("snapshot", snap);
    }
    return snap;
  }

  /** Leaves a room: its events stop, and it is not joined again after a reconnect. */
  async leave(room) {
    const r = this._rooms.get(room);
    if (r) {
      r.gen++;
      this._rooms.delete(room);
    }
    if (this.state !== "open") return {type: "left", room};
    return this._request({type: "leave", id: this.newId("l"), room});
  }

  /** The rooms this client has joined, with the last seq delivered of each. */
  rooms() {
    const out = {};
    for (const r of this._rooms.values()) if (r.joined) out[r.room] = r.last;
    return out;
  }

  _onEvent(ev) {
    const r = this._rooms.get(ev.room);
    if (!r || typeof ev.seq !== "number") return;
    if (r.last !== null && ev.seq <= r.last) return; // already delivered
    if (!r.joined || r.syncing) {
      this._hold(r, ev);
      return;
    }
    if (ev.seq === r.last + 1) {
      this._deliver(r, ev);
      this._drain(r);
      return;
    }
    // A gap: hold this one and fill the gap from history first.
    this._hold(r, ev);
    this._startSync(r);
  }

  _hold(r, ev) {
    if (r.held.length >= HELD_EVENTS_MAX) r.held = []; // history brings them back
    r.held.push(ev);
  }

  _deliver(r, ev) {
    r.last = ev.seq;
    this._emit("event", ev);
  }

  // Delivers the held events that follow r.last without a gap; drops the old ones.
  _drain(r) {
    if (!r.held.length) return;
    r.held.sort((a, b) => a.seq - b.seq);
    let i = 0;
    for (; i < r.held.length; i++) {
      const ev = r.held[i];
      if (ev.seq <= r.last) continue;
      if (ev.seq !== r.last + 1) break;
      this._deliver(r, ev);
    }
    r.held = r.held.slice(i);
  }

  _gapOpen(r) {
    return r.last < r.target || r.held.length > 0;
  }

  _startSync(r) {
    if (r.syncing || !this._gapOpen(r)) return;
    r.syncing = true;
    this._sync(r, r.gen).catch((e) => this._emit("error", e));
  }

  // After a reconnect: join again, keep the last seq delivered, fill the gap.
  // fromUser: join(room, {afterSeq}) — the caller gets the snapshot or the error.
  async _resume(r, fromUser = false) {
    const gen = r.gen;
    r.syncing = true;
    let snap;
    try {
      snap = await this._request({type: "join", id: this.newId("j"), room: r.room}, {internal: !fromUser});
    } catch (e) {
      if (fromUser) {
        if (this._rooms.get(r.room) === r) this._rooms.delete(r.room);
        r.gen++;
        throw e;
      }
      if (r.gen === gen && e.code !== "closed") {
        // Refused (room_full, too_many_rooms...): the room is dropped and the application told.
        this._rooms.delete(r.room);
        r.gen++;
        this._emit("error", e);
      }
      return undefined;
    }
    if (r.gen !== gen || this._rooms.get(r.room) !== r) return snap;
    if (snap.seq < r.last) {
      // The room's sequence went backwards (its stored events were lost): start over from the snapshot.
      r.last = snap.seq;
      r.held = [];
      r.target = 0;
      this._emit("snapshot", {...snap, reset: true});
    } else {
      this._emit("snapshot", snap);
      r.target = Math.max(r.target, snap.seq);
      // The snapshot's own events may close the gap without a history request.
      for (const ev of snap.events || []) this._hold(r, {room: r.room, ...ev});
    }
    r.syncing = false;
    this._drain(r);
    this._startSync(r);
    return snap;
  }

  // Fills the gap after r.last from history, page by page; live events
  // arriving meanwhile are held and delivered in order after it.
  async _sync(r, gen) {
    let empty = 0;
    try {
      while (r.gen === gen && this._gapOpen(r)) {
        this._drain(r);
        if (!this._gapOpen(r)) break;
        let reply;
        try {
          reply = await this._request({type: "history", id: this.newId("h"), room: r.room, after_seq: r.last},
            {internal: true});
        } catch (e) {
          if (r.gen !== gen) return;
          if (e.code === "history_gone") {
            await this._rejoinReset(r, gen);
            continue;
          }
          if (e.code === "rate_limited" || e.code === "unavailable" || e.code === "timeout") {
            await sleep(e.retryAfterMs || 250);
            continue;
          }
          if (e.code === "closed" || e.code === "not_connected") return; // the next welcome resumes
          throw e;
        }
        if (r.gen !== gen) return;
        const before = r.last;
        for (const ev of reply.events || []) this._hold(r, {room: r.room, ...ev});
        if (typeof reply.seq === "number") r.target = Math.max(r.target, reply.seq);
        this._drain(r);
        if (r.last === before && this._gapOpen(r)) {
          // Nothing new: the node may know the room's latest event a little late.
          if (++empty > EMPTY_HISTORY_TRIES) {
            await this._rejoinReset(r, gen);
            empty = 0;
          } else {
            await sleep(EMPTY_HISTORY_PAUSE_MS);
          }
        } else {
          empty = 0;
        }
      }
    } finally {
      if (r.gen === gen) r.syncing = false;
    }
  }

  // The missed events are gone: a fresh join, delivered as a snapshot with reset: true.
  async _rejoinReset(r, gen) {
    let snap;
    try {
      snap = await this._request({type: "join", id: this.newId("j"), room: r.room}, {internal: true});
    } catch (e) {
      // Lost connection: the next welcome resumes. A timeout: the loop asks again.
      if (e.code === "closed" || e.code === "not_connected" || e.code === "timeout") return;
      throw e;
    }
    if (r.gen !== gen) return;
    r.last = snap.seq;
    r.target = 0;
    r.held = r.held.filter((ev) => ev.seq > snap.seq);
    this._emit("snapshot", {...snap, reset: true});
  }
}

export default TipcastClient;
