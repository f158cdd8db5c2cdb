// tipcast.d.ts - the TypeScript declarations of the tipcast JavaScript SDK
// (src/tipcast.js and src/msgpack.js). The messages are those of
// docs/protocol.md; the SDK's behaviour is described in docs/clients.md.

// ---- messages from the server ---------------------------------------------------

/** A user's total on a leaderboard, coins. */
export interface BoardEntry {
  user: string;
  total: number;
  /** The sender's fan level in the room (entries of the all-time list only: `board`, `top`). */
  level?: number;
  /** The fan level's badge, "" below the first level (all-time entries only). */
  badge?: string;
}

/** A room's goal (docs/protocol.md, "Goals"), in `joined` and `leaderboard`. */
export interface Goal {
  /** "g" and the seq of the goal's event. */
  goal_id: string;
  target: number;
  /** Coins counted since the goal was set (goes on past the target). */
  progress: number;
  /** Only this gift counts; 0: any gift or tip. */
  gift: number;
  /** ms since the epoch; 0: none. */
  deadline: number;
  reached: boolean;
  title: string;
}

/** A pinned tip (docs/protocol.md, "Pinned tips"). */
export interface Pin {
  order: string;
  from: string;
  amount: number;
  /** The tip's message. */
  text: string;
  /** Pinned until, ms since the epoch: drop it then. */
  until: number;
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
  /** Server time of the event, ms since the epoch. */
  ts: number;
}

export interface NoticeEvent extends EventBase {
  kind: "notice";
  from: string;
  role: string;
  text: string;
}

export interface GiftEvent extends EventBase {
  kind: "gift";
  from: string;
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
  /** The server's combo of this gift: the order id of its first gift. */
  combo_id: string;
  /** The combo's running count (the sum of the counts of its gifts up to this one). */
  combo_count: number;
  /** The sender's fan level in this room, counting this gift. */
  level: number;
  badge: string;
}

export interface TipEvent extends EventBase {
  kind: "tip";
  from: string;
  order: string;
  amount: number;
  /** The tip's message, may be "". */
  text: string;
  level: number;
  badge: string;
  /** Pinned until (ms since the epoch); 0 when not pinned. */
  pinned_until: number;
}

/** A combo ended: its totals. */
export interface ComboEndEvent extends EventBase {
  kind: "combo_end";
  from: string;
  combo_id: string;
  gift: number;
  /** The combo's final combo_count. */
  count: number;
  /** Gift orders (requests) in the combo. */
  orders: number;
  amount: number;
  /** Times of its first and last gift, ms. */
  started: number;
  ended: number;
}

/** The room's owner (or an admin) set a goal. */
export interface GoalEvent extends EventBase {
  kind: "goal";
  from: string;
  role: string;
  goal_id: string;
  target: number;
  gift?: number;
  deadline?: number;
  title?: string;
}

/** The order `order` took the goal's progress to its target. */
export interface GoalReachedEvent extends EventBase {
  kind: "goal_reached";
  goal_id: string;
  target: number;
  progress: number;
  by: string;
  order: string;
}

export interface GoalClearedEvent extends EventBase {
  kind: "goal_cleared";
  from: string;
  role: string;
  goal_id: string;
  progress: number;
}

/** The room's pinned tips changed; `pins` is the whole list now, ending first first. */
export interface PinsEvent extends EventBase {
  kind: "pins";
  change: "pinned" | "removed";
  order: string;
  /** Who removed it ("removed"). */
  by?: string;
  pins: Pin[];
}

/** A PK battle was decided (final scores). */
export interface PkEndEvent extends EventBase {
  kind: "pk_end";
  pk: number;
  room_a: string;
  room_b: string;
  score_a: number;
  score_b: number;
  /** The winning room, "" for a draw. */
  winner: string;
  result: "a" | "b" | "draw";
}

export type CampaignState = "open" | "closing" | "succeeded" | "refunding" | "refunded";

/** A campaign of the room's creator: its totals or state changed. */
export interface CampaignProgressEvent extends EventBase {
  kind: "campaign_progress";
  campaign: number;
  state: CampaignState;
  pledged: number;
  backers: number;
  target: number;
  refunded: number;
  deadline_ms: number;
}

/** An update the creator posted to the campaign's backers. */
export interface CampaignUpdateEvent extends EventBase {
  kind: "campaign_update";
  campaign: number;
  update: number;
  title: string;
  text: string;
}

/** A room event. Newer servers may send other kinds: check `kind`. */
export type RoomEvent = NoticeEvent | GiftEvent | TipEvent | ComboEndEvent | GoalEvent | GoalReachedEvent
  | GoalClearedEvent | PinsEvent | PkEndEvent | CampaignProgressEvent | CampaignUpdateEvent;

/** A PK battle's live scores, pushed to the members of both rooms (not a room event: no seq). */
export interface PkScore {
  type: "pk_score";
  /** The member's room. */
  room: string;
  pk: number;
  room_a: string;
  room_b: string;
  /** room_a's and room_b's coins since the battle started. */
  scores: [number, number];
  /** The battle's end, ms since the epoch. */
  ends_at: number;
}

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
  /** The room's goal; absent when it has none. */
  goal?: Goal;
  /** The pinned tips still pinned, ending first first. */
  pins: Pin[];
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
  /** The room's goal with its progress, when it has one. */
  goal?: Goal;
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
  /** A gift with a coupon: the coins the coupon took off (the platform paid them). */
  discount?: number;
}

/** The answer to notice, goal, goalClear and unpin: the seq of the event it made. */
export interface RoomAck {
  type: "ack";
  id: string;
  room: string;
  seq: number;
}

/** The answer to moderatorAdd / moderatorRemove / moderators: the room's moderators (after the change), sorted. */
export interface Moderators {
  type: "moderators";
  id: string;
  room: string;
  moderators: string[];
}

export type GlobalPeriod = "day" | "week" | "month";

export interface GlobalBoard {
  type: "global_board";
  id: string;
  period: GlobalPeriod;
  /** When the node read the boards from PostgreSQL, ms since the epoch. */
  ts: number;
  creators: BoardEntry[];
  gifters: BoardEntry[];
  gifts: {gift: number; name: string; count: number; coins: number}[];
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
  | "risk_rate_limited" | "spend_cap_exceeded" | "coupon_invalid" | "coupon_used" | "campaign_not_found"
  | "campaign_closed" | "tier_sold_out" | "below_tier_minimum";

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
  /** below_tier_minimum: the tier's min_amount. */
  minimum?: number;
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
  /** A PK battle's live scores, for a joined room in a battle. */
  pk_score: PkScore;
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
  /** A gift coupon's code: the coupon's discount is taken off (once). */
  coupon?: string;
  /** The idempotency key (default: a fresh id). Keep it to retry the same gift yourself. */
  id?: string;
}

export interface PledgeRequest {
  campaign: number;
  /** Coins; at least the tier's min_amount when a tier is named. */
  amount: number;
  /** A reward tier (1, 2, ... as the campaign lists them). */
  tier?: number;
  /** The idempotency key (default: a fresh id). */
  id?: string;
}

export interface GoalRequest {
  room: string;
  /** The target, coins. */
  amount: number;
  /** Only this gift counts. */
  gift?: number;
  /** ms since the epoch, ahead. */
  deadline?: number;
  /** The goal's title, at most 100 bytes. */
  text?: string;
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
  /** A money request like gift and tip (resent with its id until answered). */
  pledge(request: PledgeRequest): Promise<MoneyAck>;
  goal(request: GoalRequest): Promise<RoomAck>;
  goalClear(room: string): Promise<RoomAck>;
  unpin(room: string, order: string): Promise<RoomAck>;
  moderatorAdd(room: string, user: string): Promise<Moderators>;
  moderatorRemove(room: string, user: string): Promise<Moderators>;
  moderators(room: string): Promise<Moderators>;
  globalBoard(period?: GlobalPeriod): Promise<GlobalBoard>;
  ping(): Promise<Pong>;
  /** Any request (a map with `type`; an `id` is added when absent); resolves with its answer. */
  request<T = Record<string, unknown>>(msg: {type: string; id?: string; [key: string]: unknown}): Promise<T>;
}

export default TipcastClient;
