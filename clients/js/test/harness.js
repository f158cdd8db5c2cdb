// harness.js - what the SDK tests share: a real tipcastd they start, kill
// (SIGKILL) and restart on the same port, JWTs minted here, rows written
// with psql, and a TCP proxy that can cut or blackhole a client's connection.
//
// Environment (as tests/conftest.py reads it; scripts/test.sh and CTest set it):
//   TIPCAST_TEST_BIN    tipcastd (default: build/server/tipcastd of the repo)
//   TIPCAST_REDIS_HOST  (127.0.0.1)   TIPCAST_REDIS_PORT (6392)
//   TIPCAST_PG          libpq conninfo (host=127.0.0.1 port=5492 dbname=tipcast user=postgres)
// Not a test file itself: node --test is given the *.test.js files.

import {spawn, execFileSync} from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";
import WebSocket from "ws";

import {TipcastClient} from "../src/tipcast.js";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "..", "..", "..");
export const SDK_SRC = path.resolve(HERE, "..", "src");
export const TEST_SECRET = "tipcast-test-secret-0123456789abcdef"; // as tests/conftest.py
// The wallet shards of every test node: recorded in the shared test Redis by
// the first node and checked by the later ones (tests/conftest.py).
const WALLET_SHARDS = 4;
export const REDIS_HOST = process.env.TIPCAST_REDIS_HOST || "127.0.0.1";
export const REDIS_PORT = process.env.TIPCAST_REDIS_PORT || "6392";
export const PG = process.env.TIPCAST_PG || "host=127.0.0.1 port=5492 dbname=tipcast user=postgres";
const SANITIZED = process.env.TIPCAST_TEST_SANITIZED === "1";
const READY_TIMEOUT_MS = SANITIZED ? 20000 : 10000;
const SANITIZER_MARKERS = ["ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"];

// Gifts of the SDK tests (the catalog is shared by every test of the repo).
// Ids no other test uses (the test database is shared by every test file).
export const GIFTS = {ROSE: 9451, ROCKET: 9453};
export const PRICES = {[GIFTS.ROSE]: 1, [GIFTS.ROCKET]: 500};

export function binary() {
  const bin = process.env.TIPCAST_TEST_BIN || path.join(REPO, "build", "server", "tipcastd");
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    throw new Error(`no tipcastd at ${bin}: build it or set TIPCAST_TEST_BIN`);
  }
  return bin;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(pred, {timeoutMs = 15000, intervalMs = 20, what = "condition"} = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

let serial = 0;
export function unique(prefix) {
  serial++;
  return `${prefix}${process.pid.toString(36)}${Date.now().toString(36)}${serial}`;
}

// A port that was free a moment ago, below the ephemeral range (as conftest.py).
export async function freePort() {
  let lo = 32768;
  try {
    lo = Number(fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/)[0]) || lo;
  } catch { /* keep the default */ }
  for (let i = 0; i < 200; i++) {
    const port = Math.max(1024, lo - 12000) + Math.floor(Math.random() * Math.min(12000, lo - 1024));
    const ok = await new Promise((resolve) => {
      const s = net.createServer();
      s.once("error", () => resolve(false));
      s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error("no free TCP port");
}

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/** An HS256 JWT made here, independently of the server's code. */
export function mintToken(sub, role = "viewer", {expIn = 3600, extra = {}, secret = TEST_SECRET} = {}) {
  const header = b64url(JSON.stringify({alg: "HS256", typ: "JWT"}));
  const claims = b64url(JSON.stringify({sub, role, exp: Math.floor(Date.now() / 1000) + expIn, ...extra}));
  const sig = crypto.createHmac("sha256", secret).update(`${header}.${claims}`).digest();
  return `${header}.${claims}.${b64url(sig)}`;
}

export function psql(sql) {
  return execFileSync("psql", [PG, "-X", "-v", "ON_ERROR_STOP=1", "-qAtc", sql], {encoding: "utf8"}).trim();
}

/** The SDK's test gifts in the catalog, and `room` as a live creator. */
export function seedRoom(room) {
  psql(`INSERT INTO gifts (id, name, price, animation, tier, enabled, sort_order) VALUES
        (${GIFTS.ROSE}, 'SDK Rose', 1, 'rose', 1, true, 901), (${GIFTS.ROCKET}, 'SDK Rocket', 500, 'rocket', 2, true, 903)
        ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, price = EXCLUDED.price, animation = EXCLUDED.animation,
        tier = EXCLUDED.tier, enabled = true`);
  psql(`INSERT INTO creators (id, live) VALUES ('${room}', true) ON CONFLICT (id) DO UPDATE SET live = true`);
}

/** One tipcastd, started with the test settings plus `flags` ({"history-len": 20, ...}). */
export class Server {
  constructor(flags = {}) {
    this.flags = flags;
    this.port = 0;
    this.proc = null;
    this.log = "";
    this.exits = [];
  }

  async start() {
    if (!this.port) this.port = await freePort();
    const settings = {
      port: this.port,
      "listen-addr": "127.0.0.1",
      "redis-host": REDIS_HOST,
      "redis-port": REDIS_PORT,
      pg: PG,
      "jwt-secret": TEST_SECRET,
      "wallet-shards": WALLET_SHARDS,
      "admin-listen": "",
      "max-msgs-per-s": 10000,
      "max-burst": 10000,
      ...this.flags,
    };
    const args = Object.entries(settings).filter(([, v]) => v !== null).map(([k, v]) => `--${k}=${v}`);
    const proc = spawn(binary(), args, {stdio: ["ignore", "pipe", "pipe"]});
    this.proc = proc;
    const keep = (d) => { this.log = (this.log + d.toString()).slice(-200000); };
    proc.stdout.on("data", keep);
    proc.stderr.on("data", keep);
    proc.on("exit", (code, signal) => this.exits.push({code, signal}));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`tipcastd exited while starting (${proc.exitCode ?? proc.signalCode})\n${this.log}`);
      }
      if (await this.healthy()) return this;
      if (Date.now() > deadline) throw new Error(`tipcastd not ready in ${READY_TIMEOUT_MS} ms\n${this.log}`);
      await sleep(50);
    }
  }

  healthy() {
    return new Promise((resolve) => {
      const req = http.get({host: "127.0.0.1", port: this.port, path: "/healthz", timeout: 1000}, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on("error", () => resolve(false));
      req.on("timeout", () => { req.destroy(); resolve(false); });
    });
  }

  get url() { return `ws://127.0.0.1:${this.port}/ws`; }

  /** SIGKILL: the node dies at once, its sockets are reset by the kernel. */
  async kill9() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await exited;
  }

  /** SIGTERM and wait; returns the exit code (null when it had to be killed).
   *  Throws when a sanitized build (TIPCAST_TEST_SANITIZED=1) reported a fault. */
  async stop(timeoutMs = 15000) {
    const proc = this.proc;
    let code = proc ? proc.exitCode : null;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once("exit", (c) => r(c)));
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
      code = await exited;
      clearTimeout(t);
    }
    const fault = SANITIZED && SANITIZER_MARKERS.find((m) => this.log.includes(m));
    if (fault) throw new Error(`tipcastd: sanitizer report (${fault})\n${this.log}`);
    return code;
  }
}

/** A TCP forwarder on 127.0.0.1 in front of a port. cut() resets every
 *  forwarded connection and refuses new ones until restore(); blackhole()
 *  stops forwarding the server's bytes to the clients (the requests still
 *  reach the server, the answers are lost). */
export class Proxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.pairs = new Set();
    this.refusing = false;
    this.holes = false;
    this.server = net.createServer((client) => this._accept(client));
  }

  async listen() {
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = this.server.address().port;
    return this;
  }

  get url() { return `ws://127.0.0.1:${this.port}/ws`; }

  _accept(client) {
    if (this.refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.targetPort, "127.0.0.1");
    const pair = {client, upstream};
    this.pairs.add(pair);
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d) => { if (!this.holes) client.write(d); });
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  }

  blackhole() { this.holes = true; }

  cut() {
    this.refusing = true;
    this.holes = false;
    for (const {client, upstream} of this.pairs) {
      client.resetAndDestroy ? client.resetAndDestroy() : client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  restore() { this.refusing = false; }

  close() {
    this.cut();
    return new Promise((r) => this.server.close(r));
  }
}

const opened = new Set();

/** Closes every client that client() made: a test that failed half-way
 * leaves none reconnecting, which would keep the test process alive. */
export function closeAll() {
  for (const c of opened) c.close();
  opened.clear();
}

/** A TipcastClient for Node with the test's defaults (the `ws` package, quick reconnects). */
export function client(url, token, opts = {}) {
  const c = new TipcastClient({
    url,
    token,
    WebSocket,
    reconnect: {minMs: 50, maxMs: 400, factor: 2, jitter: 0.3},
    requestTimeoutMs: 5000,
    ...opts,
  });
  opened.add(c);
  return c;
}

/** Credits `user` with `amount` coins through an admin connection; returns the new balance. */
export async function credit(url, user, amount) {
  const admin = client(url, mintToken(unique("admin"), "admin"));
  await admin.connect();
  try {
    const ack = await admin.request({type: "credit", user, amount});
    return ack.balance;
  } finally {
    admin.close();
  }
}

/** Waits until the node's catalog has the SDK's test gifts and `room` takes gifts (it is live there). */
export async function waitRoomReady(c, room) {
  await waitFor(async () => {
    const cat = await c.catalog();
    return cat.gifts.some((g) => g.id === GIFTS.ROCKET && g.price === PRICES[GIFTS.ROCKET]);
  }, {what: "the catalog to hold the SDK's gifts", intervalMs: 100});
  // An unknown gift id is checked after liveness: room_not_live until the creator is known live.
  await waitFor(async () => {
    try {
      await c.gift({room, gift: 1999999999});
    } catch (e) {
      return e.code !== "room_not_live";
    }
    throw new Error("a gift of an unknown id was taken");
  }, {what: `room ${room} to be live`, intervalMs: 100});
}

/** Every event of `room` after `afterSeq`, read page by page with history on a fresh connection. */
export async function fullHistory(url, room, afterSeq) {
  const c = client(url, mintToken(unique("reader")));
  await c.connect();
  try {
    const out = [];
    let after = afterSeq;
    for (;;) {
      const reply = await c.history(room, after);
      out.push(...reply.events);
      if (!reply.events.length || reply.events[reply.events.length - 1].seq >= reply.seq) return out;
      after = reply.events[reply.events.length - 1].seq;
    }
  } finally {
    c.close();
  }
}

export function tmpDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
