import { invariant } from '../../sim/index.ts';
import type { ConfigSpace } from './config-space.ts';
import { BAR_FIELDS, PCI_BAR0 } from './regs.ts';

/**
 * Base address registers: type bits, the sizing protocol and decoding. A BAR of `size` bytes (a power of 2)
 * has writable mask `~(size - 1)` over its address bits and read-only type bits, so writing all-ones and
 * reading back yields `~(size - 1) | type` ([L] drivers/pci/probe.c `__pci_read_base`). A 64-bit BAR takes
 * two slots; its upper half is fully writable up to the size.
 */

/** What one BAR decodes. */
export interface BarSpec {
  /** Memory or I/O space. */
  readonly kind: 'mem' | 'io';
  /** Bytes: a power of 2, at least 16 (memory) or 4 (I/O), at most 256 for I/O. */
  readonly size: number;
  /** Memory only: a 64-bit BAR (uses the next slot for the upper half). */
  readonly is64?: boolean;
  /** Memory only: prefetchable. */
  readonly prefetchable?: boolean;
}

const TWO32 = 0x1_0000_0000;

/** The read-only low bits of a BAR: space, type and prefetchable. */
export function barTypeBits(spec: BarSpec): number {
  if (spec.kind === 'io') return 1 << BAR_FIELDS.SPACE.lsb;
  return ((spec.is64 === true ? 2 : 0) << BAR_FIELDS.TYPE.lsb) | ((spec.prefetchable === true ? 1 : 0) << BAR_FIELDS.PREFETCH.lsb);
}

/** Writable masks of the low dword and (64-bit BARs) the high dword. */
export function barMasks(spec: BarSpec): { lo: number; hi: number } {
  const typeMask = spec.kind === 'io' ? 0x3 : 0xf;
  if (spec.size >= TWO32) return { lo: 0, hi: (~(spec.size / TWO32 - 1)) >>> 0 };
  return { lo: (~(spec.size - 1) & ~typeMask) >>> 0, hi: spec.is64 === true ? 0xffffffff : 0 };
}

/** Checks a function's BAR list (sizes, kinds, 64-bit pairs); throws {@link SimInvariantError} on misuse. */
export function validateBars(bars: readonly (BarSpec | undefined)[]): void {
  invariant(bars.length <= 6, `a type-0 function has 6 BARs, got ${bars.length}`);
  bars.forEach((b, i) => {
    if (b === undefined) return;
    const pow2 = Number.isSafeInteger(b.size) && b.size > 0 && 2 ** Math.round(Math.log2(b.size)) === b.size;
    invariant(pow2, `BAR${i} size ${b.size} is not a power of 2`);
    if (b.kind === 'io') {
      invariant(b.size >= 4 && b.size <= 256, `BAR${i}: an I/O BAR is 4..256 bytes, got ${b.size}`);
      invariant(b.is64 !== true && b.prefetchable !== true, `BAR${i}: an I/O BAR is neither 64-bit nor prefetchable`);
    } else {
      invariant(b.size >= 16, `BAR${i}: a memory BAR is at least 16 bytes, got ${b.size}`);
      invariant(b.is64 === true || b.size <= 0x8000_0000, `BAR${i}: a 32-bit BAR holds at most 2 GiB`);
    }
    if (b.is64 === true) {
      invariant(i < 5 && bars[i + 1] === undefined, `BAR${i} is 64-bit, so BAR${i + 1} must be free for its upper half`);
    }
  });
}

/** Sets reset values and writable masks of every BAR slot (unused slots read 0 and ignore writes). */
export function defineBars(cfg: ConfigSpace, bars: readonly (BarSpec | undefined)[]): void {
  for (let i = 0; i < 6; i++) {
    const b = bars[i];
    const at = PCI_BAR0 + 4 * i;
    if (b === undefined) {
      const prev = bars[i - 1];
      if (!(prev !== undefined && prev.is64 === true)) {
        cfg.set32(at, 0);
        cfg.setWmask(at, 4, 0);
      }
      continue;
    }
    const m = barMasks(b);
    cfg.set32(at, barTypeBits(b));
    cfg.setWmask(at, 4, m.lo);
    if (b.is64 === true) {
      cfg.set32(at + 4, 0);
      cfg.setWmask(at + 4, 4, m.hi);
    }
  }
}

/**
 * The base address BAR `i` decodes, from the register contents, or -1 when it is at or past 2^53 (no
 * simulated bus reaches it). The caller checks that the slot holds a BAR.
 */
export function barBase(cfg: ConfigSpace, i: number, spec: BarSpec): number {
  const at = PCI_BAR0 + 4 * i;
  const lo = cfg.get32(at) & (spec.kind === 'io' ? ~0x3 : ~0xf);
  if (spec.is64 !== true) return lo >>> 0;
  const hi = cfg.get32(at + 4);
  if (hi >= 0x20_0000) return -1;
  return hi * TWO32 + (lo >>> 0);
}
