/**
 * Inclusive ranges `{ start, last }`, made by checked constructors that reject zero length and overflow
 * (Linux iommufd `check_add_overflow(iova, length - 1, &last)`). A range that ends at the very edge of
 * the address space is valid: `last` is the final byte, so it never needs a value one past the end.
 */

/** An inclusive range of `bigint` addresses (uAPI level, up to 2^64 - 1). */
export interface Range {
  readonly start: bigint;
  readonly last: bigint;
}

/** An inclusive range of `number` addresses (hot paths, below 2^53). */
export interface NumRange {
  readonly start: number;
  readonly last: number;
}

/** Why a range could not be built. */
export type RangeError_ = 'zero-length' | 'overflow' | 'negative';

/**
 * The range of `length` bytes at `start` within a `bits`-bit address space (64 by default),
 * or the reason there is none.
 */
export function rangeOf(start: bigint, length: bigint, bits = 64): Range | RangeError_ {
  if (start < 0n || length < 0n) return 'negative';
  if (length === 0n) return 'zero-length';
  const limit = (1n << BigInt(bits)) - 1n;
  if (start > limit) return 'overflow';
  // Subtracting one, because a range that ends at the very edge of the address space is still valid.
  const last = start + (length - 1n);
  if (last > limit) return 'overflow';
  return { start, last };
}

/** The range of `length` bytes at `start` with `number`s, or the reason there is none. */
export function numRangeOf(start: number, length: number): NumRange | RangeError_ {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length)) return 'overflow';
  if (start < 0 || length < 0) return 'negative';
  if (length === 0) return 'zero-length';
  const last = start + (length - 1);
  if (!Number.isSafeInteger(last)) return 'overflow';
  return { start, last };
}

/** Number of bytes in a range. */
export function rangeLength(r: Range): bigint {
  return r.last - r.start + 1n;
}

/** Whether two ranges share a byte. */
export function rangesOverlap(a: Range, b: Range): boolean {
  return a.start <= b.last && b.start <= a.last;
}

/** Whether `inner` lies wholly within `outer`. */
export function rangeContains(outer: Range, inner: Range): boolean {
  return outer.start <= inner.start && inner.last <= outer.last;
}
