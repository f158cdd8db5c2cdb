// msgpack.js - the small MessagePack codec of the tipcast SDK (no dependency).
//
// It covers what the tipcast protocol carries: nil, bool, integers up to 64
// bits, float64 (float32 is decoded too), str, bin, array and map. Extension
// types are refused. A decoded 64-bit integer is a Number when it is a safe
// integer (|n| <= 2^53 - 1), else a BigInt. A map decodes to a plain object
// whose keys are strings (a key of another type is turned into a string).
//
//   encode(value) -> Uint8Array      throws TypeError on a value it cannot encode
//   decode(bytes) -> value           throws RangeError on malformed input
//
// Bounds: decode refuses nesting deeper than MAX_DEPTH, lengths running past
// the input, and trailing bytes after the one value.

export const MAX_DEPTH = 64;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", {fatal: true});

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.len = 0;
  }

  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v) { this.reserve(1); this.buf[this.len++] = v; }
  u16(v) { this.reserve(2); this.view.setUint16(this.len, v); this.len += 2; }
  u32(v) { this.reserve(4); this.view.setUint32(this.len, v); this.len += 4; }
  bytes(b) { this.reserve(b.length); this.buf.set(b, this.len); this.len += b.length; }
  f64(v) { this.reserve(9); this.buf[this.len++] = 0xcb; this.view.setFloat64(this.len, v); this.len += 8; }

  big(tag, v) { // tag 0xcf (uint64) or 0xd3 (int64)
    this.reserve(9);
    this.buf[this.len++] = tag;
    if (tag === 0xcf) this.view.setBigUint64(this.len, v);
    else this.view.setBigInt64(this.len, v);
    this.len += 8;
  }
}

const UINT64_MAX = (1n << 64n) - 1n;
const INT64_MIN = -(1n << 63n);

function encodeInt(w, n) {
  // n is a safe integer here.
  if (n >= 0) {
    if (n < 0x80) w.u8(n);
    else if (n < 0x100) { w.u8(0xcc); w.u8(n); }
    else if (n < 0x10000) { w.u8(0xcd); w.u16(n); }
    else if (n < 0x100000000) { w.u8(0xce); w.u32(n); }
    else w.big(0xcf, BigInt(n));
  } else {
    if (n >= -32) w.u8(n & 0xff);
    else if (n >= -0x80) { w.u8(0xd0); w.u8(n & 0xff); }
    else if (n >= -0x8000) { w.u8(0xd1); w.u16(n & 0xffff); }
    else if (n >= -0x80000000) { w.u8(0xd2); w.u32(n >>> 0); }
    else w.big(0xd3, BigInt(n));
  }
}

function encodeStr(w, s) {
  const b = textEncoder.encode(s);
  const n = b.length;
  if (n < 32) w.u8(0xa0 | n);
  else if (n < 0x100) { w.u8(0xd9); w.u8(n); }
  else if (n < 0x10000) { w.u8(0xda); w.u16(n); }
  else { w.u8(0xdb); w.u32(n); }
  w.bytes(b);
}

function encodeValue(w, v, depth) {
  if (depth > MAX_DEPTH) throw new TypeError("msgpack: nesting deeper than " + MAX_DEPTH);
  if (v === null || v === undefined) { w.u8(0xc0); return; }
  switch (typeof v) {
    case "boolean": w.u8(v ? 0xc3 : 0xc2); return;
    case "number":
      if (Number.isSafeInteger(v)) encodeInt(w, v);
      else w.f64(v); // fractions, NaN, infinities and integers past 2^53 (not exact anyway)
      return;
    case "bigint":
      if (v >= 0n) {
        if (v > UINT64_MAX) throw new TypeError("msgpack: BigInt larger than uint64");
        if (v <= BigInt(Number.MAX_SAFE_INTEGER)) encodeInt(w, Number(v));
        else w.big(0xcf, v);
      } else {
        if (v < INT64_MIN) throw new TypeError("msgpack: BigInt smaller than int64");
        if (v >= BigInt(Number.MIN_SAFE_INTEGER)) encodeInt(w, Number(v));
        else w.big(0xd3, v);
      }
      return;
    case "string": encodeStr(w, v); return;
    case "object": break;
    default: throw new TypeError("msgpack: cannot encode a " + typeof v);
  }
  if (v instanceof Uint8Array || v instanceof ArrayBuffer) {
    const b = v instanceof ArrayBuffer ? new Uint8Array(v) : v;
    const n = b.length;
    if (n < 0x100) { w.u8(0xc4); w.u8(n); }
    else if (n < 0x10000) { w.u8(0xc5); w.u16(n); }
    else { w.u8(0xc6); w.u32(n); }
    w.bytes(b);
    return;
  }
  if (Array.isArray(v)) {
    const n = v.length;
    if (n < 16) w.u8(0x90 | n);
    else if (n < 0x10000) { w.u8(0xdc); w.u16(n); }
    else { w.u8(0xdd); w.u32(n); }
    for (const x of v) encodeValue(w, x, depth + 1);
    return;
  }
  // A plain object: keys whose value is undefined are left out, as JSON.stringify does.
  const keys = Object.keys(v).filter((k) => v[k] !== undefined);
  const n = keys.length;
  if (n < 16) w.u8(0x80 | n);
  else if (n < 0x10000) { w.u8(0xde); w.u16(n); }
  else { w.u8(0xdf); w.u32(n); }
  for (const k of keys) {
    encodeStr(w, k);
    encodeValue(w, v[k], depth + 1);
  }
}

/** Encodes one value; returns a new Uint8Array. */
export function encode(value) {
  const w = new Writer();
  encodeValue(w, value, 0);
  return w.buf.slice(0, w.len);
}

class Reader {
  constructor(bytes) {
    this.buf = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (this.pos + n > this.buf.length) throw new RangeError("msgpack: truncated input");
  }

  u8() { this.need(1); return this.buf[this.pos++]; }
  u16() { this.need(2); const v = this.view.getUint16(this.pos); this.pos += 2; return v; }
  u32() { this.need(4); const v = this.view.getUint32(this.pos); this.pos += 4; return v; }

  take(n) {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
}

function int64ToValue(big) {
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

function decodeStr(r, n) {
  try {
    return textDecoder.decode(r.take(n));
  } catch (e) {
    if (e instanceof RangeError) throw e;
    throw new RangeError("msgpack: a str that is not valid UTF-8");
  }
}

function decodeArray(r, n, depth) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = decodeValue(r, depth + 1);
  return out;
}

function decodeMap(r, n, depth) {
  const out = {};
  for (let i = 0; i < n; i++) {
    const k = decodeValue(r, depth + 1);
    const key = typeof k === "string" ? k : String(k);
    // defineProperty: a key named "__proto__" is an own key, never the prototype.
    Object.defineProperty(out, key, {value: decodeValue(r, depth + 1), enumerable: true, writable: true,
      configurable: true});
  }
  return out;
}

function decodeValue(r, depth) {
  if (depth > MAX_DEPTH) throw new RangeError("msgpack: nesting deeper than " + MAX_DEPTH);
  const t = r.u8();
  if (t < 0x80) return t;
  if (t >= 0xe0) return t - 0x100;
  if (t >= 0x80 && t <= 0x8f) return decodeMap(r, t & 0x0f, depth);
  if (t >= 0x90 && t <= 0x9f) return decodeArray(r, t & 0x0f, depth);
  if (t >= 0xa0 && t <= 0xbf) return decodeStr(r, t & 0x1f);
  let v;
  switch (t) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return new Uint8Array(r.take(r.u8()));
    case 0xc5: return new Uint8Array(r.take(r.u16()));
    case 0xc6: return new Uint8Array(r.take(r.u32()));
    case 0xca: r.need(4); v = r.view.getFloat32(r.pos); r.pos += 4; return v;
    case 0xcb: r.need(8); v = r.view.getFloat64(r.pos); r.pos += 8; return v;
    case 0xcc: return r.u8();
    case 0xcd: return r.u16();
    case 0xce: return r.u32();
    case 0xcf: r.need(8); v = r.view.getBigUint64(r.pos); r.pos += 8; return int64ToValue(v);
    case 0xd0: r.need(1); v = r.view.getInt8(r.pos); r.pos += 1; return v;
    case 0xd1: r.need(2); v = r.view.getInt16(r.pos); r.pos += 2; return v;
    case 0xd2: r.need(4); v = r.view.getInt32(r.pos); r.pos += 4; return v;
    case 0xd3: r.need(8); v = r.view.getBigInt64(r.pos); r.pos += 8; return int64ToValue(v);
    case 0xd9: return decodeStr(r, r.u8());
    case 0xda: return decodeStr(r, r.u16());
    case 0xdb: return decodeStr(r, r.u32());
    case 0xdc: return decodeArray(r, r.u16(), depth);
    case 0xdd: return decodeArray(r, r.u32(), depth);
    case 0xde: return decodeMap(r, r.u16(), depth);
    case 0xdf: return decodeMap(r, r.u32(), depth);
    default:
      // 0xc1 (never used), bin/ext types 0xc7-0xc9 and 0xd4-0xd8
      throw new RangeError("msgpack: unsupported type byte 0x" + t.toString(16));
  }
}

/** Decodes exactly one value from bytes (a Uint8Array, any ArrayBuffer view, or an ArrayBuffer). */
export function decode(bytes) {
  let b;
  if (bytes instanceof Uint8Array) b = bytes;
  else if (bytes instanceof ArrayBuffer) b = new Uint8Array(bytes);
  else if (ArrayBuffer.isView(bytes)) b = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  else throw new TypeError("msgpack: decode takes bytes");
  const r = new Reader(b);
  const v = decodeValue(r, 0);
  if (r.pos !== b.length) throw new RangeError("msgpack: trailing bytes after the value");
  return v;
}
