import {
  DmaStatus, FRAME_SIZE, Priority, createDmaResult, resetDmaResult, toExactNumber,
  type DmaPort, type Scheduler, type Timer,
} from '../../sim/index.ts';
import type { GuestErrors } from '../pci/index.ts';
import { DMA_DELAY_NS, DMA_IRQ, DMA_SIZE, DMA_START, EDU_DMA_CMD } from './regs.ts';

const RUN = 1n << BigInt(EDU_DMA_CMD.RUN.lsb);
const DIR = 1n << BigInt(EDU_DMA_CMD.DIR.lsb);
const IRQ = 1n << BigInt(EDU_DMA_CMD.IRQ.lsb);
const DMA_END = BigInt(DMA_START + DMA_SIZE);

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
  /** Register contents (64-bit). */
  src = 0n;
  dst = 0n;
  count = 0n;
  cmd = 0n;
  /** The device-side buffer. */
  readonly buffer = new Uint8Array(DMA_SIZE);
  /** Mask applied to RAM-side addresses. */
  readonly mask: bigint;
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
    this.mask = mask;
    this.#timer = sim.timer(() => this.#run(), Priority.HARDWARE);
  }

  /** Whether a transfer is in flight (cmd.RUN). */
  get running(): boolean {
    return (this.cmd & RUN) !== 0n;
  }

  /** A guest write to src/dst/count (register `offset` for the error record); ignored while running. */
  writeReg(which: 'src' | 'dst' | 'count', offset: number, value: bigint): void {
    if (this.running) {
      this.#owner.errors.report('dma-busy', offset);
      return;
    }
    this[which] = value;
  }

  /** A guest write to cmd: starts a transfer if it has RUN and none is running. */
  writeCmd(offset: number, value: bigint): void {
    if ((value & RUN) === 0n) {
      this.#owner.errors.report('dma-cmd-no-run', Number(value & 0xffff_ffffn));
      return;
    }
    if (this.running) {
      this.#owner.errors.report('dma-busy', offset);
      return;
    }
    this.cmd = value;
    this.#timer.schedule(DMA_DELAY_NS);
  }

  #run(): void {
    if (!this.running) return;
    const toRam = (this.cmd & DIR) !== 0n;
    const dev = toRam ? this.src : this.dst;
    const ram = toRam ? this.dst : this.src;
    const cnt = this.count;
    let status: number = DmaStatus.OK;
    if (!(dev >= BigInt(DMA_START) && dev + cnt <= DMA_END)) {
      this.#owner.errors.report('dma-range', Number(BigInt.asUintN(52, dev)), Number(BigInt.asUintN(52, cnt)));
    } else {
      const bus = ram & this.mask;
      if (bus !== ram) this.#owner.errors.report('dma-clamp', Number(BigInt.asUintN(52, ram)), Number(BigInt.asUintN(52, bus)));
      status = this.#transfer(toRam, bus, Number(dev) - DMA_START, Number(cnt));
    }
    const trace = this.#sim.trace;
    if (trace.active) {
      trace.emit(this.#sim.now, this.#source, 'dma.done', { toRam, ram: ram & this.mask, device: dev, count: cnt, status });
    }
    this.cmd &= ~RUN;
    if ((this.cmd & IRQ) !== 0n) this.#owner.raise(DMA_IRQ);
  }

  /** Moves `len` bytes between the buffer at `off` and bus address `bus`; returns the first failure's status. */
  #transfer(toRam: boolean, bus: bigint, off: number, len: number): number {
    const res = this.#res;
    const buf = this.buffer;
    let first: number = DmaStatus.OK;
    let done = 0;
    while (done < len) {
      resetDmaResult(res);
      const wide = bus + BigInt(done);
      const a = toExactNumber(wide);
      const n = len - done;
      if (toRam) {
        if (a >= 0) this.#port.write(0, a, buf, off + done, n, res);
        else this.#port.writeWide(0, wide, buf, off + done, n, res);
      } else if (a >= 0) this.#port.read(0, a, buf, off + done, n, res);
      else this.#port.readWide(0, wide, buf, off + done, n, res);
      if (res.status === DmaStatus.OK) return first;
      if (first === DmaStatus.OK) first = res.status;
      done += res.bytesDone;
      // An IOMMU fault costs the failing page only; anything else ends the data movement.
      const failAt = a >= 0 ? a + res.bytesDone : -1;
      const skip = res.status === DmaStatus.FAULT && failAt >= 0 ? Math.min(len - done, FRAME_SIZE - (failAt % FRAME_SIZE)) : len - done;
      if (!toRam) buf.fill(0, off + done, off + done + skip);
      done += skip;
    }
    return first;
  }

  /** Cancels a transfer in flight (device reset). */
  cancel(): void {
    this.#timer.cancel();
    this.cmd &= ~RUN;
  }
}
