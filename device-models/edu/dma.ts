import {
  DmaStatus, FRAME_SIZE, Priority, createDmaResult, resetDmaResult,
  type DmaPort, type Scheduler, type Timer,
} from '../../sim/index.ts';
import type { GuestErrors } from '../pci/index.ts';
import { DMA_DELAY_NS, DMA_IRQ, DMA_SIZE, DMA_START, EDU_DMA_CMD } from './regs.ts';

const RUN = 1 << EDU_DMA_CMD.RUN.lsb;
const DIR = 1 << EDU_DMA_CMD.DIR.lsb;
const IRQ = 1 << EDU_DMA_CMD.IRQ.lsb;
const DMA_END = DMA_START + DMA_SIZE;
const TWO32 = 0x1_0000_0000;

/** Index of each register's low half in {@link EduDma.regs}; the high half follows it. */
export const EduDmaReg = { SRC: 0, DST: 2, COUNT: 4, CMD: 6 } as const;
/** A value of {@link EduDmaReg}. */
export type EduDmaReg = (typeof EduDmaReg)[keyof typeof EduDmaReg];

/** Guest errors of the edu DMA engine and their details. */
export const EDU_DMA_ERRORS = {
  'dma-busy': ['offset'],
  'dma-cmd-no-run': ['value'],
  'dma-range': ['deviceAddress', 'count'],
  'dma-clamp': ['address', 'masked'],
} as const;

/** What the engine needs from its device. */
export interface EduDmaOwner {
  readonly errors: GuestErrors<keyof typeof EDU_DMA_ERRORS>;
  /** Raises interrupt status bits (edu_raise_irq). */
  raise(bits: number): void;
}

/**
 * edu's DMA engine (edu_dma_timer): src/dst/count/cmd registers, the 4 KiB buffer at device address
 * 0x40000, and a transfer that runs {@link DMA_DELAY_NS} after the command.
 *
 * dmasim's documented choices where QEMU versions differ or the path fails:
 * - A transfer whose device-side range is not inside the buffer is skipped with a guest error (QEMU 7.2
 *   aborts the emulator; later versions skip). The command still completes: RUN clears, the IRQ is raised.
 * - The RAM-side address is ANDed with the DMA mask (a guest error when that changes it).
 * - A page the IOMMU refuses (`FAULT`) is skipped and the transfer continues at the next page, as QEMU's
 *   page-by-page translation does: the buffer gets zeros for unreadable bytes, writes to RAM are dropped.
 *   Any other failure (bus mastering off, no memory there) ends the data movement the same way. Either way
 *   the transfer completes and raises its interrupt; the fault is what the IOMMU recorded.
 */
export class EduDma {
  /** The 64-bit registers as 32-bit halves, low first (see {@link EduDmaReg}): no bigint on the DMA path. */
  readonly regs = new Uint32Array(8);
  /** The device-side buffer. */
  readonly buffer = new Uint8Array(DMA_SIZE);
  /** Mask applied to RAM-side addresses. */
  readonly mask: bigint;
  readonly #maskLo: number;
  readonly #maskHi: number;
  readonly #sim: Scheduler;
  readonly #port: DmaPort;
  readonly #owner: EduDmaOwner;
  readonly #source: string;
  readonly #timer: Timer;
  readonly #res = createDmaResult();

  constructor(sim: Scheduler, port: DmaPort, owner: EduDmaOwner, source: string, mask: bigint) {
    this.#sim = sim;
    this.#port = port;
    this.#owner = owner;
    this.#source = source;
    this.mask = BigInt.asUintN(64, mask);
    this.#maskLo = Number(this.mask & 0xffff_ffffn);
    this.#maskHi = Number(this.mask >> 32n);
    this.#timer = sim.timer(() => this.#run(), Priority.HARDWARE);
  }

  /** Whether a transfer is in flight (cmd.RUN). */
  get running(): boolean {
    return ((this.regs[EduDmaReg.CMD] as number) & RUN) !== 0;
  }

  /** The low 32 bits of register `r` (a 4-byte read). */
  read32(r: EduDmaReg): number {
    return this.regs[r] as number;
  }

  /** Register `r` (an 8-byte read). */
  read64(r: EduDmaReg): bigint {
    return (BigInt(this.regs[r + 1] as number) << 32n) | BigInt(this.regs[r] as number);
  }

  /**
   * A guest write of `lo`/`hi` to register `r` at `offset` (a 4-byte write passes `hi` = 0: QEMU's uint64_t
   * `val` is zero-extended). src/dst/count are ignored while running; cmd starts a transfer if it has RUN
   * and none is running.
   */
  write(r: EduDmaReg, offset: number, lo: number, hi: number): void {
    if (r === EduDmaReg.CMD && (lo & RUN) === 0) {
      this.#owner.errors.report('dma-cmd-no-run', lo);
      return;
    }
    if (this.running) {
      this.#owner.errors.report('dma-busy', offset);
      return;
    }
    this.regs[r] = lo;
    this.regs[r + 1] = hi;
    if (r === EduDmaReg.CMD) this.#timer.schedule(DMA_DELAY_NS);
  }

  #run(): void {
    if (!this.running) return;
    const g = this.regs;
    const cmd = g[EduDmaReg.CMD] as number;
    const toRam = (cmd & DIR) !== 0;
    const dev = toRam ? EduDmaReg.SRC : EduDmaReg.DST;
    const ram = toRam ? EduDmaReg.DST : EduDmaReg.SRC;
    const devLo = g[dev] as number;
    const cntLo = g[EduDmaReg.COUNT] as number;
    let status: number = DmaStatus.OK;
    // Inside the buffer only if both upper halves are 0, so the range check is exact in numbers.
    if (!((g[dev + 1] as number) === 0 && (g[EduDmaReg.COUNT + 1] as number) === 0 && devLo >= DMA_START && devLo + cntLo <= DMA_END)) {
      this.#owner.errors.report('dma-range', (g[dev + 1] as number) * TWO32 + devLo, (g[EduDmaReg.COUNT + 1] as number) * TWO32 + cntLo);
    } else {
      const lo = g[ram] as number;
      const hi = g[ram + 1] as number;
      const mlo = (lo & this.#maskLo) >>> 0;
      const mhi = (hi & this.#maskHi) >>> 0;
      if (mlo !== lo || mhi !== hi) this.#owner.errors.report('dma-clamp', hi * TWO32 + lo, mhi * TWO32 + mlo);
      status = this.#transfer(toRam, mlo, mhi, devLo - DMA_START, cntLo);
    }
    const trace = this.#sim.trace;
    if (trace.active) {
      trace.emit(this.#sim.now, this.#source, 'dma.done', { toRam, ram: this.read64(ram) & this.mask, device: devLo, count: this.read64(EduDmaReg.COUNT), status });
    }
    g[EduDmaReg.CMD] = cmd & ~RUN;
    if ((cmd & IRQ) !== 0) this.#owner.raise(DMA_IRQ);
  }

  /** Moves `len` bytes between the buffer at `off` and bus address `hi:lo`; returns the first failure's status. */
  #transfer(toRam: boolean, lo: number, hi: number, off: number, len: number): number {
    const res = this.#res;
    const buf = this.buffer;
    const port = this.#port;
    // The requester id passed is irrelevant: the function's gate stamps its own.
    if (hi >= 0x20_0000) {
      // At or past 2^53: nothing is there; the wide call reports it (a rare path, so its bigint is fine).
      resetDmaResult(res);
      const wide = (BigInt(hi) << 32n) | BigInt(lo);
      if (toRam) port.writeWide(0, wide, buf, off, len, res);
      else port.readWide(0, wide, buf, off, len, res);
      if (!toRam && res.status !== DmaStatus.OK) buf.fill(0, off, off + len);
      return res.status;
    }
    const bus = hi * TWO32 + lo;
    let first: number = DmaStatus.OK;
    let done = 0;
    while (done < len) {
      resetDmaResult(res);
      const a = bus + done;
      if (toRam) port.write(0, a, buf, off + done, len - done, res);
      else port.read(0, a, buf, off + done, len - done, res);
      if (res.status === DmaStatus.OK) return first;
      if (first === DmaStatus.OK) first = res.status;
      done += res.bytesDone;
      // An IOMMU fault costs the failing page only; anything else ends the data movement.
      const failAt = a + res.bytesDone;
      const skip = res.status === DmaStatus.FAULT ? Math.min(len - done, FRAME_SIZE - (failAt % FRAME_SIZE)) : len - done;
      if (!toRam) buf.fill(0, off + done, off + done + skip);
      done += skip;
    }
    return first;
  }

  /** Cancels a transfer in flight (device reset). */
  cancel(): void {
    this.#timer.cancel();
    this.regs[EduDmaReg.CMD] = (this.regs[EduDmaReg.CMD] as number) & ~RUN;
  }
}
