import { APEX_MASKS, APEX_REGS, type ApexDomain } from './regs.ts';

/**
 * The values of the BAR2 registers of {@link APEX_REGS}, as low and high dwords (no bigint on the device's
 * own paths), and the write rule the field tables imply: RW bits take the written value, W0C bits clear
 * where the write has a 0, everything else keeps its value.
 */
export class ApexCsr {
  readonly lo = new Uint32Array(APEX_REGS.length);
  readonly hi = new Uint32Array(APEX_REGS.length);

  constructor() {
    this.reset('aon');
    this.reset('gcb');
  }

  /** Returns every register of `domain` to its reset value. */
  reset(domain: ApexDomain): void {
    APEX_REGS.forEach((r, i) => {
      if (r.domain !== domain) return;
      this.lo[i] = Number(r.reset & 0xffff_ffffn);
      this.hi[i] = Number(r.reset >> 32n);
    });
  }

  /** The low dword of register `i`. */
  get(i: number): number {
    return this.lo[i] as number;
  }

  /** Sets register `i` (device side, no masks). */
  set(i: number, lo: number, hi = 0): void {
    this.lo[i] = lo >>> 0;
    this.hi[i] = hi >>> 0;
  }

  /** Register `i` as a number (the device's own counters and heads stay far below 2^53). */
  num(i: number): number {
    return (this.hi[i] as number) * 0x1_0000_0000 + (this.lo[i] as number);
  }

  /** A guest write of `lo`/`hi` to register `i` through its field masks. */
  guestWrite(i: number, lo: number, hi: number): void {
    const rw = APEX_MASKS.rw;
    const w0c = APEX_MASKS.w0c;
    this.lo[i] = merge(this.lo[i] as number, lo, rw[2 * i] as number, w0c[2 * i] as number);
    this.hi[i] = merge(this.hi[i] as number, hi, rw[2 * i + 1] as number, w0c[2 * i + 1] as number);
  }
}

function merge(old: number, v: number, rw: number, w0c: number): number {
  return ((old & ~(rw | w0c)) | (v & rw) | (old & v & w0c)) >>> 0;
}
