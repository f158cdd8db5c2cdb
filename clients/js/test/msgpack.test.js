// The SDK's msgpack codec: exact bytes for each format, round trips, and a
// cross-check against an independent implementation (@msgpack/msgpack).
import assert from "node:assert/strict";
import {test} from "node:test";
import * as ref from "@msgpack/msgpack";

import {decode, encode} from "../src/msgpack.js";

const hex = (b) => Buffer.from(b).toString("hex");

test("integers take the smallest format", () => {
  const cases = [
    [0, "00"], [127, "7f"], [128, "cc80"], [255, "ccff"], [256, "cd0100"], [65535, "cdffff"],
    [65536, "ce00010000"], [4294967295, "ceffffffff"], [4294967296, "cf0000000100000000"],
    [Number.MAX_SAFE_INTEGER, "cf001fffffffffffff"],
    [-1, "ff"], [-32, "e0"], [-33, "d0df"], [-128, "d080"], [-129, "d1ff7f"], [-32768, "d18000"],
    [-32769, "d2ffff7fff"], [-2147483648, "d280000000"], [-2147483649, "d3ffffffff7fffffff"],
    [Number.MIN_SAFE_INTEGER, "d3ffe0000000000001"],
  ];
  for (const [n, want] of cases) {
    assert.equal(hex(encode(n)), want, `encode(${n})`);
    assert.equal(decode(Buffer.from(want, "hex")), n, `decode(${want})`);
  }
});

test("64-bit values past 2^53 decode as BigInt, and BigInt encodes", () => {
  assert.equal(decode(Buffer.from("cfffffffffffffffff", "hex")), 18446744073709551615n);
  assert.equal(decode(Buffer.from("d38000000000000000", "hex")), -9223372036854775808n);
  assert.equal(decode(Buffer.from("cf0020000000000000", "hex")), 9007199254740992n);
  assert.equal(hex(encode(18446744073709551615n)), "cfffffffffffffffff");
  assert.equal(hex(encode(-9223372036854775808n)), "d38000000000000000");
  assert.equal(hex(encode(5n)), "05");
  assert.throws(() => encode(1n << 64n), TypeError);
  assert.throws(() => encode(-(1n << 63n) - 1n), TypeError);
});

test("strings, floats, nil, booleans, bin", () => {
  assert.equal(hex(encode("")), "a0");
  assert.equal(hex(encode("héllo")), "a668c3a96c6c6f");
  assert.equal(hex(encode("x".repeat(32))).slice(0, 4), "d920");
  assert.equal(hex(encode("x".repeat(256))).slice(0, 6), "da0100");
  assert.equal(hex(encode("x".repeat(65536))).slice(0, 10), "db00010000");
  assert.equal(hex(encode(1.5)), "cb3ff8000000000000");
  assert.equal(decode(Buffer.from("ca3fc00000", "hex")), 1.5); // float32
  assert.equal(hex(encode(null)), "c0");
  assert.equal(hex(encode(undefined)), "c0");
  assert.equal(hex(encode(true)), "c3");
  assert.equal(hex(encode(false)), "c2");
  assert.equal(hex(encode(new Uint8Array([1, 2, 3]))), "c403010203");
  assert.deepEqual(decode(Buffer.from("c403010203", "hex")), new Uint8Array([1, 2, 3]));
});

test("maps and arrays, with undefined values left out", () => {
  assert.equal(hex(encode({a: 1, b: undefined})), "81a16101");
  assert.equal(hex(encode([1, [2]])), "920191" + "02");
  const big = Array.from({length: 16}, (_, i) => i);
  assert.equal(hex(encode(big)).slice(0, 6), "dc0010");
  const wide = Object.fromEntries(big.map((i) => [`k${i}`, i]));
  assert.equal(hex(encode(wide)).slice(0, 6), "de0010");
  assert.deepEqual(decode(encode(wide)), wide);
  // A key named __proto__ is an own key, never the object's prototype.
  const evil = decode(Buffer.from("81a95f5f70726f746f5f5f81a17801", "hex"));
  assert.deepEqual(Object.keys(evil), ["__proto__"]);
  assert.equal(Object.getPrototypeOf(evil), Object.prototype);
  // Non-string keys become strings.
  assert.deepEqual(decode(Buffer.from("810102", "hex")), {1: 2});
});

test("malformed input is refused", () => {
  for (const bad of ["", "cd01", "a3616263" + "00", "c1", "d40100", "92", "a2c328", "dd" + "ffffffff"]) {
    assert.throws(() => decode(Buffer.from(bad, "hex")), RangeError, bad);
  }
  // Nesting deeper than MAX_DEPTH (64).
  assert.throws(() => decode(Buffer.from("91".repeat(70) + "00", "hex")), RangeError);
  assert.throws(() => encode(() => 1), TypeError);
  assert.throws(() => decode("not bytes"), TypeError);
});

test("cross-check with @msgpack/msgpack on protocol-shaped messages", () => {
  const messages = [
    {type: "gift", id: "g-7f3a", room: "alice", gift: 3, count: 2, combo: "c-91"},
    {type: "event", room: "alice", seq: 9, kind: "gift", from: "bob", role: "viewer", order: "7-1732240000000-0",
      gift: 3, name: "Rocket", animation: "rocket.webp", count: 2, combo: "c-91", amount: 1000, ts: 1732240000000},
    {type: "joined", id: "j1", room: "alice", live: true, members: 2, seq: 7, board: [{user: "bob", total: 1500}],
      events: [], nested: {deep: [null, true, false, -1, -200, 70000, -70000, 1e15, 0.25, "ü€😀"]}},
    {type: "tip", id: "t", room: "r", amount: 1000000, text: "x".repeat(300)},
  ];
  for (const m of messages) {
    assert.deepEqual(ref.decode(encode(m)), m);
    assert.deepEqual(decode(ref.encode(m)), m);
    // Same bytes as an independent encoder (both pick the smallest format).
    assert.equal(hex(encode(m)), hex(ref.encode(m)));
  }
  // Random values, both directions.
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const gen = (d) => {
    const k = Math.floor(rnd() * (d > 3 ? 6 : 8));
    switch (k) {
      case 0: return null;
      case 1: return rnd() < 0.5;
      case 2: return Math.floor((rnd() - 0.5) * 2 ** (1 + Math.floor(rnd() * 52)));
      case 3: return (rnd() - 0.5) * 1e6;
      case 4: return String.fromCharCode(...Array.from({length: Math.floor(rnd() * 40)}, () => 32 + rnd() * 2000));
      case 5: return new Uint8Array(Array.from({length: Math.floor(rnd() * 20)}, () => Math.floor(rnd() * 256)));
      case 6: return Array.from({length: Math.floor(rnd() * 20)}, () => gen(d + 1));
      default: return Object.fromEntries(Array.from({length: Math.floor(rnd() * 20)}, (_, i) => [`k${i}`, gen(d + 1)]));
    }
  };
  for (let i = 0; i < 500; i++) {
    const v = gen(0);
    assert.deepEqual(decode(ref.encode(v)), v);
    assert.deepEqual(ref.decode(encode(v)), v);
  }
});
