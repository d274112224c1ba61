import { invariant, type Counter, type Scheduler } from '../../sim/index.ts';
import { ALL_ONES_64, allOnes, type PciFunction } from '../../device-models/index.ts';

/** Something behind a window of the CPU's physical address space; offsets are from the window's base. */
export interface MmioTarget {
  read(offset: number, size: number): number;
  write(offset: number, size: number, value: number): void;
  read64(offset: number): bigint;
  write64(offset: number, value: bigint): void;
}

/** One BAR of one function: the function applies its own decode, size and range checks. */
class BarTarget implements MmioTarget {
  readonly fn: PciFunction;
  readonly bar: number;
  constructor(fn: PciFunction, bar: number) {
    this.fn = fn;
    this.bar = bar;
  }
  read(offset: number, size: number): number {
    return this.fn.mmioRead(this.bar, offset, size);
  }
  write(offset: number, size: number, value: number): void {
    this.fn.mmioWrite(this.bar, offset, size, value);
  }
  read64(offset: number): bigint {
    return this.fn.mmioRead64(this.bar, offset);
  }
  write64(offset: number, value: bigint): void {
    this.fn.mmioWrite64(this.bar, offset, value);
  }
}

/** A decoded window: `[start, end)` and what answers there. */
export interface MmioWindow {
  readonly start: number;
  /** One past the last byte. */
  readonly end: number;
  readonly target: MmioTarget;
  /** For traces and `dmasim` listings, e.g. `edu@00:03.0 BAR0` or `iommu`. */
  readonly name: string;
}

const NO_TARGET: MmioTarget = {
  read: (_o, size) => allOnes(size),
  write: () => {},
  read64: () => ALL_ONES_64,
  write64: () => {},
};

/**
 * The CPU's MMIO address space: physical addresses -> BARs (each function's current BAR values, only while
 * its Command register enables memory decode) and fixed windows (the IOMMU's registers). The decoded windows
 * are cached in sorted typed arrays and rebuilt when a function reports a BAR or Command change
 * (`onMappingChange`); an access first tries the window of the previous access, then binary-searches, and
 * allocates nothing. A miss reads all-ones and drops the write, with a `guest-error` trace record (kind
 * `mmio-miss`) and the `mmio/guest-error.mmio-miss` counter. RAM is not here: it is `machine.memory`.
 * Overlapping windows: the first in priority order (fixed windows, then functions in probe order) keeps the
 * range, the other is not decoded, and the overlap is recorded as `mmio-overlap`.
 */
export class MmioRouter {
  readonly #sim: Scheduler;
  readonly #functions: { readonly fn: PciFunction; readonly targets: readonly (BarTarget | undefined)[] }[] = [];
  readonly #fixed: MmioWindow[] = [];
  #starts = new Float64Array(0);
  #ends = new Float64Array(0);
  #targets: MmioTarget[] = [];
  #windows: MmioWindow[] = [];
  #lastStart = 0;
  #lastEnd = 0;
  #lastTarget: MmioTarget = NO_TARGET;
  // Counters are made on first use, so that a machine without PCI traffic reports none.
  #misses: Counter | undefined;
  #missTotal: Counter | undefined;
  #overlaps: Counter | undefined;

  constructor(sim: Scheduler) {
    this.#sim = sim;
  }

  /** Adds a fixed window (device registers at a chipset address). */
  addFixed(name: string, start: number, size: number, target: MmioTarget): void {
    invariant(Number.isSafeInteger(start) && start >= 0 && Number.isSafeInteger(size) && size > 0, `bad fixed window ${name}`);
    this.#fixed.push({ name, start, end: start + size, target });
    this.rebuild();
  }

  /** Adds a function whose memory BARs the router decodes; call {@link rebuild} from its `onMappingChange`. */
  addFunction(fn: PciFunction): void {
    const targets: (BarTarget | undefined)[] = [];
    for (let i = 0; i < 6; i++) targets.push(fn.bar(i)?.kind === 'mem' ? new BarTarget(fn, i) : undefined);
    this.#functions.push({ fn, targets });
    this.rebuild();
  }

  /** Re-decodes every window from the functions' current BAR and Command values. */
  rebuild(): void {
    const all: MmioWindow[] = [...this.#fixed];
    for (const { fn, targets } of this.#functions) {
      if (!fn.memoryEnabled) continue;
      for (let i = 0; i < 6; i++) {
        const t = targets[i];
        const spec = fn.bar(i);
        if (t === undefined || spec === undefined) continue;
        const base = fn.barBase(i);
        if (base < 0 || base + spec.size > Number.MAX_SAFE_INTEGER) continue;
        all.push({ name: `${fn.name} BAR${i}`, start: base, end: base + spec.size, target: t });
      }
    }
    const kept: MmioWindow[] = [];
    for (const w of all) {
      const clash = kept.find((k) => w.start < k.end && k.start < w.end);
      if (clash !== undefined) {
        (this.#overlaps ??= this.#sim.stats.counter('mmio', 'guest-error.mmio-overlap')).value++;
        (this.#missTotal ??= this.#sim.stats.counter('mmio', 'guest-errors')).value++;
        const tr = this.#sim.trace;
        if (tr.active) tr.emit(this.#sim.now, 'mmio', 'guest-error', { what: 'mmio-overlap', window: w.name, with: clash.name, start: w.start });
        continue;
      }
      kept.push(w);
    }
    kept.sort((a, b) => a.start - b.start);
    this.#windows = kept;
    this.#starts = Float64Array.from(kept, (w) => w.start);
    this.#ends = Float64Array.from(kept, (w) => w.end);
    this.#targets = kept.map((w) => w.target);
    this.#lastStart = 0;
    this.#lastEnd = 0;
    this.#lastTarget = NO_TARGET;
  }

  /** The decoded windows, sorted by address. */
  get windows(): readonly MmioWindow[] {
    return this.#windows;
  }

  /** Index of the window holding `addr`, or -1. Remembers it for the next access. */
  #find(addr: number): number {
    const s = this.#starts;
    let lo = 0;
    let hi = s.length - 1;
    // Greatest start <= addr; NaN and other non-addresses never compare true and end at -1.
    let at = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if ((s[mid] as number) <= addr) {
        at = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (at < 0 || !(addr < (this.#ends[at] as number))) return -1;
    this.#lastStart = s[at] as number;
    this.#lastEnd = this.#ends[at] as number;
    this.#lastTarget = this.#targets[at] as MmioTarget;
    return at;
  }

  #miss(addr: number, size: number, write: boolean): void {
    (this.#misses ??= this.#sim.stats.counter('mmio', 'guest-error.mmio-miss')).value++;
    (this.#missTotal ??= this.#sim.stats.counter('mmio', 'guest-errors')).value++;
    const tr = this.#sim.trace;
    if (tr.active) tr.emit(this.#sim.now, 'mmio', 'guest-error', { what: 'mmio-miss', addr: typeof addr === 'number' ? addr : String(addr), size, write });
  }

  /** A read of `size` (1, 2, 4) bytes at physical address `addr`; a miss reads all-ones. */
  read(addr: number, size: number): number {
    if (addr >= this.#lastStart && addr < this.#lastEnd) return this.#lastTarget.read(addr - this.#lastStart, size);
    if (this.#find(addr) < 0) {
      this.#miss(addr, size, false);
      return allOnes(size);
    }
    return this.#lastTarget.read(addr - this.#lastStart, size);
  }

  /** A write of `size` (1, 2, 4) bytes; a miss is dropped. */
  write(addr: number, size: number, value: number): void {
    if (addr >= this.#lastStart && addr < this.#lastEnd) {
      this.#lastTarget.write(addr - this.#lastStart, size, value);
      return;
    }
    if (this.#find(addr) < 0) {
      this.#miss(addr, size, true);
      return;
    }
    this.#lastTarget.write(addr - this.#lastStart, size, value);
  }

  /** A 4-byte read. */
  read32(addr: number): number {
    if (addr >= this.#lastStart && addr < this.#lastEnd) return this.#lastTarget.read(addr - this.#lastStart, 4);
    return this.read(addr, 4);
  }

  /** A 4-byte write. */
  write32(addr: number, value: number): void {
    this.write(addr, 4, value);
  }

  /** A 2-byte read. */
  read16(addr: number): number {
    return this.read(addr, 2);
  }

  /** A 2-byte write. */
  write16(addr: number, value: number): void {
    this.write(addr, 2, value);
  }

  /** A 1-byte read. */
  read8(addr: number): number {
    return this.read(addr, 1);
  }

  /** A 1-byte write. */
  write8(addr: number, value: number): void {
    this.write(addr, 1, value);
  }

  /** An 8-byte read; a miss reads all-ones. */
  read64(addr: number): bigint {
    if (!(addr >= this.#lastStart && addr < this.#lastEnd) && this.#find(addr) < 0) {
      this.#miss(addr, 8, false);
      return ALL_ONES_64;
    }
    return this.#lastTarget.read64(addr - this.#lastStart);
  }

  /** An 8-byte write; a miss is dropped. */
  write64(addr: number, value: bigint): void {
    if (!(addr >= this.#lastStart && addr < this.#lastEnd) && this.#find(addr) < 0) {
      this.#miss(addr, 8, true);
      return;
    }
    this.#lastTarget.write64(addr - this.#lastStart, typeof value === 'bigint' ? value : 0n);
  }
}
