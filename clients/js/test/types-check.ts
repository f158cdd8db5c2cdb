// types-check.ts - compiled (not run) by types.test.js with tsc --strict: the
// declarations must accept the documented uses and refuse wrong ones
// (each @ts-expect-error line must be an error, or tsc fails).
import {TipcastClient, TipcastError, type Joined, type MoneyAck, type RoomEvent} from "tipcast";
import {decode, encode} from "tipcast/msgpack";

async function main(): Promise<void> {
  const c = new TipcastClient({
    url: "ws://127.0.0.1:8080/ws",
    token: async () => "jwt",
    protocol: "msgpack",
    WebSocket: globalThis.WebSocket,
    reconnect: {minMs: 250, maxMs: 30000, factor: 2, jitter: 0.5},
    requestTimeoutMs: 10000,
    moneyRetryMs: 120000,
  });
  const w = await c.connect();
  const user: string = w.user;
  c.on("event", (ev: RoomEvent) => {
    if (ev.kind === "gift") {
      const n: number = ev.count * ev.amount;
      const o: string = ev.order;
      void n; void o;
      const cc: number = ev.combo_count;
      const cid: string = ev.combo_id;
      const badge: string = ev.badge;
      void cc; void cid; void badge;
    } else if (ev.kind === "tip") {
      const t: string = ev.text;
      const until: number = ev.pinned_until;
      void t; void until;
    } else if (ev.kind === "pins") {
      const first: string | undefined = ev.pins[0]?.order;
      void first;
    } else if (ev.kind === "pk_end") {
      const r: "a" | "b" | "draw" = ev.result;
      void r;
    } else if (ev.kind === "campaign_progress") {
      const p: number = ev.pledged + ev.backers;
      void p;
    } else if (ev.kind === "combo_end") {
      const total: number = ev.count;
      void total;
    }
  });
  c.on("pk_score", (s) => { const [a, b]: [number, number] = s.scores; void a; void b; });
  c.on("snapshot", (s: Joined) => { if (s.reset) void s.seq; });
  c.on("state", ({state, attempt, delayMs}) => { const x: string = state; void x; void attempt; void delayMs; });
  c.on("error", (e) => { const code: string = e.code; void code; });
  const snap = await c.join("alice", {afterSeq: 41});
  const top: number = snap.board[0].total;
  const ack: MoneyAck = await c.gift({room: "alice", gift: 3, count: 2, combo: "c-1", id: c.newId("g")});
  const replayed: boolean = ack.replayed;
  const ack2 = await c.tip({room: "alice", amount: 100, text: "gg"});
  const bal: number = (await c.balance()) + ack2.balance;
  const cat = await c.catalog();
  const price: number = cat.gifts[0].price;
  const earn = await c.earnings("alice");
  const h = await c.history("alice", 5);
  const lb = await c.leaderboard("alice");
  const n = await c.notice("alice", "hi");
  const g = await c.goal({room: "alice", amount: 5000, gift: 3, text: "new mic"});
  await c.goalClear("alice");
  await c.unpin("alice", "2-1-0");
  const mods: string[] = (await c.moderatorAdd("alice", "carol")).moderators;
  await c.moderatorRemove("alice", "carol");
  const gb = await c.globalBoard("week");
  const pl: MoneyAck = await c.pledge({campaign: 42, amount: 300, tier: 1, id: c.newId("pl")});
  const cp = await c.gift({room: "alice", gift: 3, coupon: "xmas-bob"});
  const goalNow: number | undefined = snap.goal?.progress;
  const pinUntil: number | undefined = snap.pins[0]?.until;
  void [g.seq, mods, gb.creators, pl.replayed, cp.discount, goalNow, pinUntil];
  try {
    await c.pledge({campaign: 42, amount: 1});
  } catch (e) {
    if (e instanceof TipcastError && e.code === "below_tier_minimum") void (e.minimum ?? 0);
  }
  try {
    await c.gift({room: "alice", gift: 1});
  } catch (e) {
    if (e instanceof TipcastError && e.code === "insufficient_balance") void (e.balance ?? 0);
  }
  void [user, top, replayed, bal, price, earn.total, h.events.length, lb.top, n.seq, c.state, c.rooms()];
  const bytes: Uint8Array = encode({a: 1});
  void decode(bytes);
  // @ts-expect-error: a gift needs a room
  await c.gift({gift: 3});
  // @ts-expect-error: a pledge needs a campaign
  await c.pledge({amount: 300});
  // @ts-expect-error: no such global board period
  await c.globalBoard("year");
  // @ts-expect-error: the protocol is "json" or "msgpack"
  new TipcastClient({url: "x", token: "t", protocol: "xml"});
  // @ts-expect-error: no such event
  c.on("gifts", () => {});
  c.close();
}
void main;
