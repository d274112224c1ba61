import { Priority, mask32, type Scheduler, type Timer } from '../../sim/index.ts';
import { ALL_ONES_64, GuestErrors, PciFunction, SIZE_4_8, allOnes, type MmioHandler } from '../pci/index.ts';
import { EDU_DMA_ERRORS, EduDma, EduDmaReg } from './dma.ts';
import {
  EDU, EDU_BAR_SIZE, EDU_DMA_MASK, EDU_ID, EDU_REGS, EDU_REG_AT, EDU_STATUS, EDU_SUBSYSTEM, EDU_WIDE_FROM, FACTORIAL_NS, FACT_IRQ,
} from './regs.ts';

/** Options of an edu device. */
export interface EduOptions {
  /** Component name for traces and counters (default `edu`). */
  readonly name?: string;
  /** Mask of RAM-side DMA addresses (QEMU's `dma_mask` property; default 28 bits). */
  readonly dmaMask?: bigint;
  /** Virtual ns a factorial takes (default {@link FACTORIAL_NS}). */
  readonly factorialNs?: number;
}

const EDU_ERRORS = {
  ...EDU_DMA_ERRORS,
  'access-size': ['offset', 'size'],
  unhandled: ['offset', 'size'],
  'read-only': ['offset', 'value'],
  'write-only': ['offset'],
  'fact-busy': ['value'],
} as const;
/** Guest errors edu records. */
export type EduGuestError = keyof typeof EDU_ERRORS;

const COMPUTING = mask32(EDU_STATUS.COMPUTING);
const ID_VALUE = Number(EDU_REGS[EDU.ID]?.reset ?? 0n);
// Register indices as module constants, so the dispatch switch compares against bindings, not property loads.
const { ID, LIVENESS, FACTORIAL, STATUS, IRQ_STATUS, IRQ_RAISE, IRQ_ACK, DMA_SRC, DMA_DST, DMA_COUNT, DMA_CMD } = EDU;

/** The engine register behind edu register index `r` (one of the four DMA registers). */
function dmaReg(r: number): EduDmaReg {
  return r === DMA_SRC ? EduDmaReg.SRC : r === DMA_DST ? EduDmaReg.DST : r === DMA_COUNT ? EduDmaReg.COUNT : EduDmaReg.CMD;
}

/** Index of the register at `offset`, or -1: registers answer only at their own (aligned) offset. */
function regAt(offset: number): number {
  return offset < 0x100 && (offset & 3) === 0 ? (EDU_REG_AT[offset >>> 2] as number) : -1;
}
const IRQ_FACT = mask32(EDU_STATUS.IRQ_FACT);

/**
 * QEMU's educational PCI device (hw/misc/edu.c, QEMU 7.2) on a {@link PciFunction}: conventional PCI,
 * 1234:11e8 rev 0x10, class 0x00ff00, a 1 MiB BAR0, one 64-bit MSI vector without masking, INTA. The MMIO
 * rules are QEMU's: offsets below 0x80 take 4-byte accesses, from 0x80 on 4 or 8; anything else reads
 * all-ones and drops writes (recorded as guest errors here). As in QEMU, a PCI reset leaves edu's own
 * registers as they are.
 */
export class EduDevice implements MmioHandler {
  /** edu accepts 4- and 8-byte accesses (QEMU `.valid = { 4, 8 }`). */
  readonly accessSizes = SIZE_4_8;
  readonly fn: PciFunction;
  readonly dma: EduDma;
  readonly errors: GuestErrors<EduGuestError>;
  /** The liveness register holds the inverse of the last write. */
  liveness = 0;
  /** Factorial input while computing, result after. */
  factorial = 0;
  status = 0;
  irqStatus = 0;
  readonly factorialNs: number;
  readonly #factTimer: Timer;

  constructor(sim: Scheduler, options: EduOptions = {}) {
    const name = options.name ?? 'edu';
    this.fn = new PciFunction(sim, {
      name, ...EDU_ID, ...EDU_SUBSYSTEM, interruptPin: 1,
      msi: { vectors: 1, addr64: true, perVectorMask: false },
      bars: [{ kind: 'mem', size: EDU_BAR_SIZE }],
    });
    this.fn.setBarHandler(0, this);
    this.errors = new GuestErrors(sim, name, EDU_ERRORS);
    // The engine masters through the function's gate, which stamps the function's own requester id.
    this.dma = new EduDma(sim, this.fn.dma, this, name, options.dmaMask ?? EDU_DMA_MASK);
    this.factorialNs = options.factorialNs ?? FACTORIAL_NS;
    this.#factTimer = sim.timer(() => this.#factorialDone(), Priority.HARDWARE);
  }

  /** {@link MmioHandler}: a 4-byte read (the function has already checked alignment and range). */
  read(offset: number, size: number): number {
    const r = regAt(offset);
    if (size !== 4 || r < 0) return this.#badRead(offset, size);
    switch (r) {
      case ID:
        return ID_VALUE;
      case LIVENESS:
        return this.liveness;
      case FACTORIAL:
        return this.factorial;
      case STATUS:
        return this.status;
      case IRQ_STATUS:
        return this.irqStatus;
      case DMA_SRC:
        return this.dma.read32(EduDmaReg.SRC);
      case DMA_DST:
        return this.dma.read32(EduDmaReg.DST);
      case DMA_COUNT:
        return this.dma.read32(EduDmaReg.COUNT);
      case DMA_CMD:
        return this.dma.read32(EduDmaReg.CMD);
      default:
        this.errors.report('write-only', offset);
        return allOnes(size);
    }
  }

  /** {@link MmioHandler}: a 4-byte write. */
  write(offset: number, size: number, value: number): void {
    const r = regAt(offset);
    if (size !== 4 || r < 0) {
      this.#badWrite(offset, size);
      return;
    }
    const v = value >>> 0;
    switch (r) {
      case LIVENESS:
        this.liveness = ~v >>> 0;
        return;
      case FACTORIAL:
        this.#startFactorial(v);
        return;
      case STATUS:
        this.status = (v & IRQ_FACT) !== 0 ? (this.status | IRQ_FACT) >>> 0 : (this.status & ~IRQ_FACT) >>> 0;
        return;
      case IRQ_RAISE:
        this.raise(v);
        return;
      case IRQ_ACK:
        this.#lower(v);
        return;
      case DMA_SRC:
      case DMA_DST:
      case DMA_COUNT:
      case DMA_CMD:
        // A 4-byte write stores the zero-extended value, as QEMU's uint64_t `val` does.
        this.dma.write(dmaReg(r), offset, v, 0);
        return;
      default:
        this.errors.report('read-only', offset, v);
    }
  }

  /** {@link MmioHandler}: an 8-byte read; only the 64-bit registers (at 0x80 and up) answer. */
  read64(offset: number): bigint {
    const r = regAt(offset);
    if (offset < EDU_WIDE_FROM || r < 0) {
      this.#badRead(offset, 8);
      return ALL_ONES_64;
    }
    switch (r) {
      case DMA_SRC:
        return this.dma.read64(EduDmaReg.SRC);
      case DMA_DST:
        return this.dma.read64(EduDmaReg.DST);
      case DMA_COUNT:
        return this.dma.read64(EduDmaReg.COUNT);
      default:
        return this.dma.read64(EduDmaReg.CMD);
    }
  }

  /** {@link MmioHandler}: an 8-byte write. */
  write64(offset: number, value: bigint): void {
    const r = regAt(offset);
    if (offset < EDU_WIDE_FROM || r < 0) {
      this.#badWrite(offset, 8);
      return;
    }
    this.dma.write(dmaReg(r), offset, Number(value & 0xffff_ffffn), Number((value >> 32n) & 0xffff_ffffn));
  }

  #badRead(offset: number, size: number): number {
    this.errors.report(offset < EDU_WIDE_FROM && size !== 4 ? 'access-size' : 'unhandled', offset, size);
    return allOnes(size);
  }

  #badWrite(offset: number, size: number): void {
    this.errors.report(offset < EDU_WIDE_FROM && size !== 4 ? 'access-size' : 'unhandled', offset, size);
  }

  #startFactorial(n: number): void {
    if ((this.status & COMPUTING) !== 0) {
      this.errors.report('fact-busy', n);
      return;
    }
    this.factorial = n;
    this.status = (this.status | COMPUTING) >>> 0;
    this.#factTimer.schedule(this.factorialNs);
  }

  #factorialDone(): void {
    let n = this.factorial;
    let ret = 1;
    // n! mod 2^32 is 0 from 34! on (34! has 32 factors of two), so the loop never runs long.
    while (n > 0 && ret !== 0) ret = Math.imul(ret, n--) >>> 0;
    this.factorial = ret;
    this.status = (this.status & ~COMPUTING) >>> 0;
    if ((this.status & IRQ_FACT) !== 0) this.raise(FACT_IRQ);
  }

  /** edu_raise_irq: sets status bits and, if any is set, sends MSI vector 0 or asserts INTx (every time). */
  raise(bits: number): void {
    this.irqStatus = (this.irqStatus | bits) >>> 0;
    if (this.irqStatus === 0) return;
    const msi = this.fn.msi;
    if (msi !== undefined && msi.enabled) msi.notify(0);
    else this.fn.setIrq(true);
  }

  /** edu_lower_irq: clears status bits; INTx drops when none is left (MSI needs no deassertion). */
  #lower(bits: number): void {
    this.irqStatus = (this.irqStatus & ~bits) >>> 0;
    const msi = this.fn.msi;
    if (this.irqStatus === 0 && !(msi !== undefined && msi.enabled)) this.fn.setIrq(false);
  }
}
