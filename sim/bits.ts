/**
 * Bitfields in the specs' [hi:lo] numbering. A field is `{ lsb, width }`; masks derive from positions.
 * `number` helpers are for fields of registers at most 32 bits wide (or the low 32 bits of a wider one);
 * `bigint` helpers for 64-bit registers and uAPI `u64` values.
 */

/** A bitfield: least significant bit and width in bits. */
export interface BitField {
  readonly lsb: number;
  readonly width: number;
}

/** The field spanning bits `hi` down to `lo` inclusive, as specs write `[hi:lo]`. */
export function bits(hi: number, lo: number): BitField {
  if (!(Number.isInteger(hi) && Number.isInteger(lo) && hi >= lo && lo >= 0 && hi < 64)) {
    throw new RangeError(`bits(${hi}, ${lo}): need 63 >= hi >= lo >= 0`);
  }
  return { lsb: lo, width: hi - lo + 1 };
}

/** The one-bit field at `n`. */
export function bit(n: number): BitField {
  return bits(n, n);
}

/** Mask of a field within a 32-bit word, as an unsigned number. */
export function mask32(f: BitField): number {
  if (f.lsb + f.width > 32) throw new RangeError(`field [${f.lsb + f.width - 1}:${f.lsb}] is wider than 32 bits`);
  return f.width === 32 ? 0xffffffff : (((1 << f.width) - 1) << f.lsb) >>> 0;
}

/** Extracts a field from a 32-bit value. */
export function get32(value: number, f: BitField): number {
  return ((value & mask32(f)) >>> f.lsb) >>> 0;
}

/** Returns `value` with field `f` replaced by `v` (truncated to the field's width). */
export function set32(value: number, f: BitField, v: number): number {
  const m = mask32(f);
  return ((value & ~m) | ((v << f.lsb) & m)) >>> 0;
}

/** Mask of a field within a 64-bit word. */
export function mask64(f: BitField): bigint {
  return ((1n << BigInt(f.width)) - 1n) << BigInt(f.lsb);
}

/** Extracts a field from a 64-bit value. */
export function get64(value: bigint, f: BitField): bigint {
  return (value & mask64(f)) >> BigInt(f.lsb);
}

/** Returns `value` with field `f` replaced by `v` (truncated to the field's width). */
export function set64(value: bigint, f: BitField, v: bigint): bigint {
  const m = mask64(f);
  return (value & ~m & U64_MAX) | ((v << BigInt(f.lsb)) & m);
}

/** 2^64 - 1. */
export const U64_MAX = (1n << 64n) - 1n;

/** Largest integer a `number` holds exactly (2^53 - 1). */
export const MAX_EXACT = Number.MAX_SAFE_INTEGER;

/**
 * Converts a `bigint` to a `number` when it is exact (below 2^53), else returns -1.
 * The explicit, checked conversion hot paths use before leaving bigint land.
 */
export function toExactNumber(v: bigint): number {
  return v >= 0n && v <= 9007199254740991n ? Number(v) : -1;
}
