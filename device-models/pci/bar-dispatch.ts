import { invariant, mask32 } from '../../sim/index.ts';
import type { BarSpec } from './bar.ts';
import type { GuestErrors } from './guest-errors.ts';
import { ALL_ONES_64, ANY_SIZE, allOnes, type MmioHandler } from './mmio.ts';
import type { Msix } from './msix.ts';
import { COMMAND } from './regs.ts';
import type { PciGuestError } from './spec.ts';

const CMD_IO = mask32(COMMAND.IO);
const CMD_MEMORY = mask32(COMMAND.MEMORY);

/** Reads all-ones and drops writes: BAR space no device register claims. */
class Unclaimed implements MmioHandler {
  readonly accessSizes = ANY_SIZE;
  readonly #errors: GuestErrors<PciGuestError>;
  readonly #bar: number;
  constructor(errors: GuestErrors<PciGuestError>, bar: number) {
    this.#errors = errors;
    this.#bar = bar;
  }
  read(offset: number, size: number): number {
    this.#errors.report('mmio-unclaimed', this.#bar, offset, size);
    return allOnes(size);
  }
  write(offset: number, size: number): void {
    this.#errors.report('mmio-unclaimed', this.#bar, offset, size);
  }
  read64(offset: number): bigint {
    this.#errors.report('mmio-unclaimed', this.#bar, offset, 8);
    return ALL_ONES_64;
  }
  write64(offset: number): void {
    this.#errors.report('mmio-unclaimed', this.#bar, offset, 8);
  }
}

interface BarSlot {
  readonly spec: BarSpec;
  /** Bytes, copied from the spec for the fast path. */
  readonly size: number;
  /** The Command bit that enables its decoding. */
  readonly decode: number;
  /** Whether the MSI-X table or PBA lives in it. */
  readonly msix: boolean;
  handler: MmioHandler;
  /** `handler.accessSizes`, cached. */
  sizes: number;
}

interface BarSlot {
  readonly spec: BarSpec;
  /** Bytes, copied from the spec for the fast path. */
  readonly size: number;
  /** The Command bit that enables its decoding. */
  readonly decode: number;
  /** Whether the MSI-X table or PBA lives in it. */
  readonly msix: boolean;
  handler: MmioHandler;
  /** `handler.accessSizes`, cached. */
  sizes: number;
}

/**
 * BAR access dispatch for one function: decode enable, size, alignment and range checks, the MSI-X table
 * and PBA windows, then the device's {@link MmioHandler}. The common case is one test and a call; anything
 * unusual goes through a slow path that records which guest error it was.
 */
export class BarDispatch {
  /** Command decode bits, or 0 while the function is in a low-power state (kept by the function). */
  decode = 0;
  readonly #slots: (BarSlot | undefined)[] = [];
  readonly #errors: GuestErrors<PciGuestError>;
  readonly #msix: Msix | undefined;
  readonly #msixTable: { bar: number; start: number; end: number } = { bar: -1, start: 0, end: 0 };
  readonly #msixPba: { bar: number; start: number; end: number } = { bar: -1, start: 0, end: 0 };

  constructor(bars: readonly (BarSpec | undefined)[], msix: Msix | undefined, errors: GuestErrors<PciGuestError>) {
    this.#errors = errors;
    this.#msix = msix;
    if (msix !== undefined) {
      const o = msix.options;
      this.#msixTable = { bar: o.tableBar, start: o.tableOffset, end: o.tableOffset + msix.tableBytes };
      this.#msixPba = { bar: o.pbaBar, start: o.pbaOffset, end: o.pbaOffset + msix.pbaBytes };
      for (const [what, r] of [['table', this.#msixTable], ['PBA', this.#msixPba]] as const) {
        const b = bars[r.bar];
        invariant(b !== undefined && b.kind === 'mem' && r.end <= b.size, `MSI-X ${what} must lie inside a memory BAR (BAR${r.bar})`);
      }
      const t = this.#msixTable;
      const p = this.#msixPba;
      invariant(t.bar !== p.bar || t.end <= p.start || p.end <= t.start, 'MSI-X table and PBA overlap');
    }
    for (let i = 0; i < 6; i++) {
      const b = bars[i];
      const handler = new Unclaimed(errors, i);
      this.#slots.push(b === undefined ? undefined : {
        spec: b, size: b.size, decode: b.kind === 'io' ? CMD_IO : CMD_MEMORY,
        msix: i === this.#msixTable.bar || i === this.#msixPba.bar, handler, sizes: handler.accessSizes,
      });
    }
  }

  /** BAR `i`'s description, or undefined for an empty slot. */
  spec(i: number): BarSpec | undefined {
    return this.#slots[i]?.spec;
  }

  /** Installs the device's registers behind BAR `i` (an existing BAR). */
  setHandler(i: number, handler: MmioHandler): boolean {
    const slot = this.#slots[i];
    if (slot === undefined) return false;
    slot.handler = handler;
    slot.sizes = handler.accessSizes;
    return true;
  }

  /** A read of 1, 2 or 4 bytes at `offset` in BAR `bar`. Misuse reads all-ones and is a guest error. */
  read(bar: number, offset: number, size: number): number {
    const slot = this.#slots[bar];
    // The common case in one test; anything unusual takes the slow path, which says what was wrong.
    if (
      slot !== undefined && (this.decode & slot.decode) !== 0 && (size === 4 || size === 1 || size === 2) &&
      ((slot.sizes >>> size) & 1) === 1 && offset >= 0 && offset + size <= slot.size && offset % size === 0 && !slot.msix
    ) {
      return slot.handler.read(offset, size);
    }
    return this.#slowRead(bar, offset, size);
  }

  /** A write of 1, 2 or 4 bytes. Misuse is dropped and is a guest error. */
  write(bar: number, offset: number, size: number, value: number): void {
    const slot = this.#slots[bar];
    if (
      slot !== undefined && (this.decode & slot.decode) !== 0 && (size === 4 || size === 1 || size === 2) &&
      ((slot.sizes >>> size) & 1) === 1 && offset >= 0 && offset + size <= slot.size && offset % size === 0 && !slot.msix
    ) {
      slot.handler.write(offset, size, value);
      return;
    }
    this.#slowWrite(bar, offset, size, value);
  }

  #slowRead(bar: number, offset: number, size: number): number {
    const slot = this.#check(bar, offset, size);
    if (slot === undefined || size === 8) {
      if (slot !== undefined) this.#errors.report('mmio-size', bar, offset, size);
      return allOnes(size);
    }
    const t = this.#msixTable;
    if (bar === t.bar && offset >= t.start && offset < t.end) {
      return this.#msixOk(bar, offset, size) ? (this.#msix as Msix).readTable(offset - t.start) : allOnes(size);
    }
    const p = this.#msixPba;
    if (bar === p.bar && offset >= p.start && offset < p.end) {
      return this.#msixOk(bar, offset, size) ? (this.#msix as Msix).readPba(offset - p.start) : allOnes(size);
    }
    if (((slot.sizes >>> size) & 1) === 0) {
      this.#errors.report('mmio-size', bar, offset, size);
      return allOnes(size);
    }
    return slot.handler.read(offset, size);
  }

  #slowWrite(bar: number, offset: number, size: number, value: number): void {
    const slot = this.#check(bar, offset, size);
    if (slot === undefined || size === 8) {
      if (slot !== undefined) this.#errors.report('mmio-size', bar, offset, size);
      return;
    }
    const t = this.#msixTable;
    if (bar === t.bar && offset >= t.start && offset < t.end) {
      if (this.#msixOk(bar, offset, size)) (this.#msix as Msix).writeTable(offset - t.start, value);
      return;
    }
    const p = this.#msixPba;
    if (bar === p.bar && offset >= p.start && offset < p.end) {
      if (this.#msixOk(bar, offset, size)) this.#errors.report('msix-pba-write', offset - p.start, value);
      return;
    }
    if (((slot.sizes >>> size) & 1) === 0) {
      this.#errors.report('mmio-size', bar, offset, size);
      return;
    }
    slot.handler.write(offset, size, value);
  }

  /** An 8-byte read. */
  read64(bar: number, offset: number): bigint {
    const slot = this.#check(bar, offset, 8);
    if (slot === undefined) return ALL_ONES_64;
    if (this.#inMsix(bar, offset)) {
      this.#errors.report('msix-access', bar, offset, 8);
      return ALL_ONES_64;
    }
    if (((slot.sizes >>> 8) & 1) === 0) {
      this.#errors.report('mmio-size', bar, offset, 8);
      return ALL_ONES_64;
    }
    return slot.handler.read64(offset);
  }

  /** An 8-byte write. */
  write64(bar: number, offset: number, value: bigint): void {
    const slot = this.#check(bar, offset, 8);
    if (slot === undefined) return;
    if (this.#inMsix(bar, offset)) {
      this.#errors.report('msix-access', bar, offset, 8);
      return;
    }
    if (((slot.sizes >>> 8) & 1) === 0) {
      this.#errors.report('mmio-size', bar, offset, 8);
      return;
    }
    slot.handler.write64(offset, BigInt.asUintN(64, value));
  }

  /** The BAR if the access may reach it (decode on, D0, sane size, aligned, inside), else a guest error. */
  #check(bar: number, offset: number, size: number): BarSlot | undefined {
    const slot = this.#slots[bar];
    if (slot === undefined) {
      this.#errors.report('mmio-no-bar', bar, offset, size);
      return undefined;
    }
    if ((this.decode & slot.decode) === 0) {
      this.#errors.report('mmio-decode-off', bar, offset, size);
      return undefined;
    }
    if (!(size === 4 || size === 8 || size === 1 || size === 2)) {
      this.#errors.report('mmio-size', bar, offset, size);
      return undefined;
    }
    if (!(offset >= 0 && offset + size <= slot.size && offset % size === 0)) {
      this.#errors.report('mmio-range', bar, offset, size);
      return undefined;
    }
    return slot;
  }

  #inMsix(bar: number, offset: number): boolean {
    const t = this.#msixTable;
    const p = this.#msixPba;
    return (bar === t.bar && offset + 8 > t.start && offset < t.end) || (bar === p.bar && offset + 8 > p.start && offset < p.end);
  }

  /** QEMU accepts only aligned 32-bit accesses to the MSI-X table and PBA. */
  #msixOk(bar: number, offset: number, size: number): boolean {
    if (size === 4) return true;
    this.#errors.report('msix-access', bar, offset, size);
    return false;
  }
}
