import { rangeOf, type NumRange } from '../../sim/index.ts';
import { PgtError, type IoPageTableOps, type IotlbGather, type PgtResult } from './types.ts';

/**
 * Checked `bigint` entry points for uAPI callers (VFIO and iommufd pass `u64` IOVAs and lengths). Each
 * range is built with the inclusive, overflow-checked constructor first, so a length that wraps past
 * 2^64 is RANGE rather than a small number, and only then narrowed to `number`s for the format.
 * Format-independent: they work on any {@link IoPageTableOps}.
 */

/**
 * The `[iova, iova + size - 1]` range of a `bits`-bit space as numbers, or why it is refused: INVAL for a
 * negative start or zero length, RANGE when it wraps past 2^64 or leaves the space.
 */
export function checkedRange(iova: bigint, size: bigint, bits: number): NumRange | PgtError {
  const r = rangeOf(iova, size, 64);
  if (r === 'negative' || r === 'zero-length') return PgtError.INVAL;
  if (r === 'overflow') return PgtError.RANGE;
  if (r.last >= 1n << BigInt(bits)) return PgtError.RANGE;
  return { start: Number(r.start), last: Number(r.last) };
}

/** {@link IoPageTableOps.map} for `bigint` arguments. */
export function mapWide(ops: IoPageTableOps, iova: bigint, paddr: bigint, size: bigint, prot: number): PgtResult {
  const v = checkedRange(iova, size, ops.iasBits);
  if (typeof v === 'number') return v;
  const p = checkedRange(paddr, size, ops.oasBits);
  if (typeof p === 'number') return p;
  return ops.map(v.start, p.start, v.last - v.start + 1, prot);
}

/** {@link IoPageTableOps.unmap} for `bigint` arguments. */
export function unmapWide(ops: IoPageTableOps, iova: bigint, size: bigint, gather: IotlbGather | null): PgtResult {
  const v = checkedRange(iova, size, ops.iasBits);
  if (typeof v === 'number') return v;
  return ops.unmap(v.start, v.last - v.start + 1, gather);
}

/** {@link IoPageTableOps.iovaToPhys} for a `bigint` IOVA: the physical address, or -1n if unmapped. */
export function iovaToPhysWide(ops: IoPageTableOps, iova: bigint): bigint {
  if (iova < 0n || iova >= 1n << BigInt(ops.iasBits)) return -1n;
  const p = ops.iovaToPhys(Number(iova));
  return p < 0 ? -1n : BigInt(p);
}
