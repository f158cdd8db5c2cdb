// tipcast.d.ts - the TypeScript declarations of the tipcast JavaScript SDK
// (src/tipcast.js and src/msgpack.js). The messages are those of
// docs/protocol.md; the SDK's behaviour is described in docs/clients.md.

// ---- messages from the server ---------------------------------------------------

/** A user's total on a leaderboard, coins. */
export interface BoardEntry {
  user: string;
  total: number;
}

/** Coins of all gifts and tips to a room in each period (refunds lower them). */
export interface RoomTotals {
  all: number;
  day: number;
  week: number;
  month: number;
}

interface EventBase {
  type: "event";
  room: string;
  /** The room's sequence number: 1, 2, 3, ... with no gaps. */
  seq: number;
  from: string;
  /** Server time of the event, ms since the epoch. */
  ts: number;
}

export interface NoticeEvent extends EventBase {
  kind: "notice";
  role: string;
  text: string;
}

export interface GiftEvent extends EventBase {
  kind: "gift";
  role: string;
  order: string;
  gift: number;
  name: string;
  animation: string;
  count: number;
  /** The sender's combo id, "" when none. */
  combo: string;
  /** Coins debited: price x count. */
  amount: number;
}

export interface TipEvent extends EventBase {
  kind: "tip";
  order: string;
  amount: number;
  /** The tip's message, may be "". */
  text: string;
}

/** A room event. Newer servers may send other kinds: check `kind`. */
export type RoomEvent = NoticeEvent | GiftEvent | TipEvent;

export interface Limits {
  max_frame_bytes: number;
  max_msgs_per_s: number;
  max_burst: number;
  max_rooms: number;
  max_text_bytes: number;
}

export interface Welcome {
  type: "welcome";
  id?: string;
  user: string;
  role: "viewer" | "creator" | "admin" | "overlay";
  exp: number;
  /** The overlay token's room (role "overlay" only). */
  room?: string;
  limits: Limits;
}

/** The snapshot answered to `join`, and emitted as the "snapshot" event. */
export interface Joined {
  type: "joined";
  id?: string;
  room: string;
  owner: string;
  live: boolean;
  members: number;
  /** The room's latest event when the snapshot was read (0: none yet). */
  seq: number;
  board: BoardEntry[];
  day: BoardEntry[];
  week: BoardEntry[];
  month: BoardEntry[];
  totals?: RoomTotals;
  /** Up to `snapshot-events` latest events, oldest first. */
  events: RoomEvent[];
  /** Set by the SDK on the "snapshot" event that follows `history_gone` (or a room
   *  whose seq went backwards): events were missed and cannot be had; start over from it. */
  reset?: true;
}

export interface HistoryReply {
  type: "history";
  id: string;
  room: string;
  /** The room's latest event as the answering node knows it. */
  seq: number;
  /** Oldest first, at most 100. */
  events: RoomEvent[];
}

export interface Leaderboard {
  type: "leaderboard";
  /** Present on the answer to leaderboard(), absent on a push. */
  id?: string;
  room: string;
  period: "all";
  top: BoardEntry[];
  day: BoardEntry[];
  week: BoardEntry[];
  month: BoardEntry[];
  totals?: RoomTotals;
}

/** A room's live status changed. */
export interface RoomStatus {
  type: "room";
  room: string;
  live: boolean;
}

export interface Gift {
  id: number;
  name: string;
  price: number;
  animation: string;
  tier: number;
}

export interface Catalog {
  version: number;
  gifts: Gift[];
}

export interface Earnings {
  creator: string;
  total: number;
  orders: number;
}

/** The answer to a gift or a tip. */
export interface MoneyAck {
  type: "ack";
  id: string;
  order: string;
  amount: number;
  /** The sender's balance right after it. */
  balance: number;
  /** True when the request id had been taken before: no money moved this time. */
  replayed: boolean;
}

/** The answer to a notice. */
export interface NoticeAck {
  type: "ack";
  id: string;
  room: string;
  seq: number;
}

export interface Left {
  type: "left";
  id?: string;
  room: string;
}

export interface Pong {
  type: "pong";
  id: string;
  ts: number;
}

// ---- errors ---------------------------------------------------------------------

/** The server's error codes (docs/protocol.md, "error"). */
export type ServerErrorCode =
  | "bad_message" | "wrong_frame_type" | "bad_field" | "unknown_type" | "auth_required" | "auth_expired"
  | "auth_invalid" | "already_authenticated" | "forbidden" | "not_member" | "too_many_rooms" | "room_full"
  | "rate_limited" | "history_gone" | "insufficient_balance" | "unknown_gift" | "room_not_live"
  | "idempotency_conflict" | "backlogged" | "unavailable" | "internal" | "account_frozen"
  | "risk_rate_limited" | "spend_cap_exceeded";

/** The SDK's own codes: no answer in time, the connection lost or closed, not connected. */
export type SdkErrorCode = "timeout" | "closed" | "not_connected";

export type ErrorCode = ServerErrorCode | SdkErrorCode;

export class TipcastError extends Error {
  constructor(code: ErrorCode | string, message?: string, extra?: Record<string, unknown>);
  name: "TipcastError";
  code: ErrorCode | string;
  /** The offending field (bad_field, unknown_type, unknown_gift). */
  field?: string;
  /** rate_limited, backlogged, unavailable, risk_rate_limited. */
  retryAfterMs?: number;
  /** history_gone. */
  oldestSeq?: number;
  /** insufficient_balance: the balance. */
  balance?: number;
  /** spend_cap_exceeded: what may still be spent this UTC day. */
  remaining?: number;
  /** The request that failed (as sent). */
  request?: Record<string, unknown>;
  /** The WebSocket close code, when the error comes from a closed connection. */
  closeCode?: number;
}

// ---- the client -----------------------------------------------------------------

export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface ReconnectOptions {
  /** First wait, ms (250). */
  minMs?: number;
  /** Longest wait, ms (30000). */
  maxMs?: number;
  /** Growth per attempt (2). */
  factor?: number;
  /** Up to this part of each wait is taken off at random, 0..1 (0.5). */
  jitter?: number;
}

/** The minimal WebSocket the SDK needs: the browser's, or the `ws` package's. */
export interface WebSocketLike {
  binaryType: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: {data: unknown}) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onclose: ((ev: {code: number; reason: string}) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ClientOptions {
  /** ws://HOST:PORT/ws or wss://... */
  url: string;
  /** A JWT, or a function giving one; a function is called before every (re)connect. */
  token: string | (() => string | Promise<string>);
  /** "json" (tipcast.v1.json, text frames) or "msgpack" (tipcast.v1.msgpack, binary frames). Default "json". */
  protocol?: "json" | "msgpack";
  /** The WebSocket constructor; default globalThis.WebSocket (Node 20: pass the `ws` package). */
  WebSocket?: WebSocketConstructor | unknown;
  /** Reconnect settings, or false for none (a lost connection then closes the client). */
  reconnect?: ReconnectOptions | false;
  /** How long a request waits for its answer, ms (10000). A gift or tip is resent instead. */
  requestTimeoutMs?: number;
  /** How long a gift or tip is resent (same id) before it rejects, ms (120000). */
  moneyRetryMs?: number;
  /** An application ping this often, ms (25000; 0: none); no pong within requestTimeoutMs drops the connection. */
  pingIntervalMs?: number;
}

export interface StateChange {
  state: ClientState;
  /** Reconnect attempts since the last welcome. */
  attempt: number;
  /** The wait before the next attempt (state "reconnecting"), ms. */
  delayMs: number;
  /** The close code of the connection that was lost (state "reconnecting"). */
  closeCode?: number;
  /** Why the client closed (state "closed", other than close()). */
  error?: TipcastError;
}

export interface ClientEvents {
  /** Every room event, exactly once per room, in seq order, across reconnects. */
  event: RoomEvent;
  /** After each join answer, including the rejoin after a reconnect; `reset` after history_gone. */
  snapshot: Joined;
  /** Leaderboard pushes (not the answers to leaderboard()). */
  leaderboard: Leaderboard;
  /** A room's live status changed. */
  room: RoomStatus;
  /** After each successful authentication. */
  welcome: Welcome;
  state: StateChange;
  /** Unsolicited errors: a refused token, a room that could not be joined again, an undecodable frame. */
  error: TipcastError;
}

export interface GiftRequest {
  room: string;
  /** A gift id of the catalog. */
  gift: number;
  /** 1..gift-max-count (default 1). */
  count?: number;
  /** The client's id for a streak of taps, carried to the event. */
  combo?: string;
  /** The idempotency key (default: a fresh id). Keep it to retry the same gift yourself. */
  id?: string;
}

export interface TipRequest {
  room: string;
  amount: number;
  /** At most 200 bytes of UTF-8. */
  text?: string;
  id?: string;
}

export interface JoinOptions {
  /** Resume from this seq (the last one this app delivered, e.g. with an earlier client):
   *  the events after it are delivered first, or a snapshot with reset if they are gone. */
  afterSeq?: number;
}

export const SUBPROTOCOLS: Readonly<{json: "tipcast.v1.json"; msgpack: "tipcast.v1.msgpack"}>;
export const FATAL_CLOSE_CODES: readonly number[];
export const RETRYABLE_MONEY_CODES: readonly string[];

export class TipcastClient {
  constructor(options: ClientOptions);
  readonly url: string;
  readonly protocol: "json" | "msgpack";
  /** The current state. */
  readonly state: ClientState;
  /** The latest welcome (null before the first). */
  readonly welcome: Welcome | null;
  requestTimeoutMs: number;
  moneyRetryMs: number;
  pingIntervalMs: number;

  /** Resolves with the welcome of the first successful connection (retrying per `reconnect`);
   *  rejects on a refused token (auth_invalid / auth_expired) or close(). */
  connect(): Promise<Welcome>;
  /** For good: no reconnect; pending requests reject with `closed`. */
  close(): void;
  on<K extends keyof ClientEvents>(name: K, fn: (arg: ClientEvents[K]) => void): this;
  off<K extends keyof ClientEvents>(name: K, fn: (arg: ClientEvents[K]) => void): this;
  /** A fresh request id: `${prefix}-` and a random UUID. */
  newId(prefix?: string): string;

  join(room: string, options?: JoinOptions): Promise<Joined>;
  leave(room: string): Promise<Left>;
  /** The joined rooms and the last seq delivered in each. */
  rooms(): Record<string, number>;
  history(room: string, afterSeq?: number): Promise<HistoryReply>;
  leaderboard(room: string): Promise<Leaderboard>;
  catalog(): Promise<Catalog>;
  balance(): Promise<number>;
  earnings(user?: string): Promise<Earnings>;
  notice(room: string, text: string): Promise<NoticeAck>;
  gift(request: GiftRequest): Promise<MoneyAck>;
  tip(request: TipRequest): Promise<MoneyAck>;
  ping(): Promise<Pong>;
  /** Any request (a map with `type`; an `id` is added when absent); resolves with its answer. */
  request<T = Record<string, unknown>>(msg: {type: string; id?: string; [key: string]: unknown}): Promise<T>;
}

export default TipcastClient;
