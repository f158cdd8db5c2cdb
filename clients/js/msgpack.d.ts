// msgpack.d.ts - declarations of src/msgpack.js, the SDK's MessagePack codec.

/** Deepest nesting decode accepts. */
export const MAX_DEPTH: number;

/** A value the codec carries: nil, bool, numbers (BigInt past 2^53), str, bin, array, map. */
export type MsgpackValue =
  | null | boolean | number | bigint | string | Uint8Array
  | MsgpackValue[] | {[key: string]: MsgpackValue | undefined};

/** Encodes one value (undefined map values are left out). Throws TypeError on what it cannot encode. */
export function encode(value: unknown): Uint8Array;

/** Decodes exactly one value. Throws RangeError on malformed input, trailing bytes or deep nesting. */
export function decode(bytes: Uint8Array | ArrayBuffer | ArrayBufferView): MsgpackValue;
