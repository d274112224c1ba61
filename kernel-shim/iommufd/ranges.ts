/**
 * Inclusive IOVA ranges over the `unsigned long` space and the interval arithmetic iommufd's IO page
 * table needs (Linux's interval-tree span iterators, `ALIGN`, `roundup_pow_of_two`, `__ffs64`).
 */

/** An inclusive range. */
export interface IovaRange {
  readonly start: bigint;
  readonly last: bigint;
}

/** Linux `roundup_pow_of_two`. */
export function roundupPow2(v: bigint): bigint {
  let p = 1n;
  while (p < v) p <<= 1n;
  return p;
}

/** The lowest set bit of a nonzero value (`1 << __ffs64(v)`). */
export function lowestBit(v: bigint): bigint {
  return v & -v;
}

/** C `ALIGN(v, a) | off` on an unsigned long. */
export function alignUp(v: bigint, a: bigint, off: bigint): bigint {
  return BigInt.asUintN(64, (v + a - 1n) & ~(a - 1n)) | off;
}

/** Sorted union of ranges, touching ones merged (an interval-tree span iterator's "used" spans). */
export function union(ranges: readonly IovaRange[]): IovaRange[] {
  const s = [...ranges].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: { start: bigint; last: bigint }[] = [];
  for (const r of s) {
    const top = out[out.length - 1];
    if (top !== undefined && r.start <= top.last + 1n) {
      if (r.last > top.last) top.last = r.last;
    } else out.push({ start: r.start, last: r.last });
  }
  return out;
}

/** Holes of `used` inside `[from, to]`. */
export function holes(used: readonly IovaRange[], from: bigint, to: bigint): IovaRange[] {
  const out: IovaRange[] = [];
  let cur = from;
  for (const u of union(used)) {
    if (u.last < cur) continue;
    if (u.start > to) break;
    if (u.start > cur) out.push({ start: cur, last: u.start - 1n });
    if (u.last >= to) return out;
    cur = u.last + 1n;
  }
  if (cur <= to) out.push({ start: cur, last: to });
  return out;
}

/** Whether `a` intersects `[start, last]`. */
export const overlaps = (a: IovaRange, start: bigint, last: bigint): boolean => a.start <= last && start <= a.last;
