import { Priority, type Scheduler, type Timer } from '../../sim/index.ts';
import { ALL_ONES_64, GuestErrors, MSIX_VECTOR_MASKED, MsixEntry, PciFunction, SIZE_4_8, allOnes, type MmioHandler } from '../pci/index.ts';
import { ApexCommands, type ApexCommandTiming } from './commands.ts';
import { ApexCsr } from './csr.ts';
import { APEX_IRQ_ERRORS, ApexInterrupts } from './interrupts.ts';
import { ApexLink, type ApexLinkOptions } from './link.ts';
import { GasketDma, GasketPageTable, type FaultSink } from './page-table.ts';
import { InstructionQueue, type QueueOwner } from './queue.ts';
import {
  APEX, APEX_BAR0_SIZE, APEX_BAR2_SIZE, APEX_ID, APEX_MSIX_PBA, APEX_MSIX_TABLE, APEX_MSIX_VECTORS, APEX_PAGE_TABLE,
  APEX_QUEUES, APEX_QUEUE_REGS, APEX_REGS, APEX_REGS_END, APEX_REG_AT, APEX_SUBSYSTEM, ApexIrq, HIGH_HALF,
} from './regs.ts';
import { APEX_RESET_TIMING, ApexScu, type ResetOwner } from './reset.ts';
import { ApexThermal, type ApexThermalPoint, type ThermalOwner } from './thermal.ts';

/** Options of an Apex device. */
export interface ApexOptions {
  /** Component name for traces and counters (default `apex`). */
  readonly name?: string;
  /** The PCIe link the timing model charges DMA to (default Gen2 x1: {@link APEX_LINK_DEFAULTS}). */
  readonly link?: Partial<ApexLinkOptions>;
  /** Command engine timing (default {@link APEX_COMMAND_TIMING}: 100 ns per command, 4 TOPS). */
  readonly compute?: Partial<ApexCommandTiming>;
  /**
   * The die temperature over virtual time: a step trace, sorted by `atNs` (45.05 °C before its first point
   * and without one). The thermal sensor reports it and the warnings fire from it (see {@link ApexThermal}).
   */
  readonly thermal?: readonly ApexThermalPoint[];
}

const APEX_ERRORS = {
  ...APEX_IRQ_ERRORS,
  unhandled: ['offset', 'size'],
  'read-only': ['offset', 'value'],
  'in-reset': ['offset'],
  'bad-partition': ['value'],
  'hib-error': ['bits', 'addressHi', 'addressLo'],
  'queue-error': ['queue', 'addressHi', 'addressLo'],
} as const;
/** TOP_LEVEL_INT_STATUS-side causes dmasim injects (trace kinds). */
const INJECT = { link: 'link-error', mbist: 'mbist-failure' } as const;
/** Guest errors the Apex records. */
export type ApexGuestError = keyof typeof APEX_ERRORS;

/** Forwards a queue's DMA faults to the queue, which is made after its DMA. */
class FaultRelay implements FaultSink {
  target: FaultSink | undefined;
  hibError(bits: number, hi: number, lo: number): void {
    this.target?.hibError(bits, hi, lo);
  }
}

const PT_START = APEX_PAGE_TABLE.offset;
const PT_END = PT_START + 8 * APEX_PAGE_TABLE.entries;
const TWO32 = 0x1_0000_0000;

/**
 * The Apex (Coral Edge TPU) on a {@link PciFunction}: PCI Express without FLR, 1ac1:089a, class 0x0000ff,
 * PM, INTA (for libedgetpu's wire mode), MSI-X with {@link APEX_MSIX_VECTORS} entries (table BAR2+0x46800,
 * PBA BAR2+0x46068); BAR0 64-bit prefetchable 16 KiB (unused: reads all-ones), BAR2 64-bit prefetchable
 * 1 MiB: the CSRs of {@link APEX_REGS}, the gasket page table at 0x50000. Registers take 4- and 8-byte
 * accesses; a 4-byte access reaches either half of a 64-bit register (a write merges with the other half).
 */
export class ApexDevice implements MmioHandler, ResetOwner, QueueOwner, FaultSink, ThermalOwner {
  readonly accessSizes = SIZE_4_8;
  readonly fn: PciFunction;
  readonly csr = new ApexCsr();
  readonly errors: GuestErrors<ApexGuestError>;
  readonly irq: ApexInterrupts;
  readonly scu: ApexScu;
  readonly pageTable: GasketPageTable;
  readonly gasketDma: GasketDma;
  readonly commands: ApexCommands;
  /** Instruction queue 0 (= `queues[0]`). */
  readonly queue: InstructionQueue;
  /** Instruction queues 0..3 (1-3: dmasim's partitioning extension). */
  readonly queues: readonly InstructionQueue[];
  /** The link model DMA costs come from. */
  readonly link: ApexLink;
  /** The thermal sensor and its warnings. */
  readonly thermal: ApexThermal;
  readonly #sim: Scheduler;
  readonly #name: string;
  readonly #pauseTimer: Timer;
  readonly #hooks: ((old: number) => void)[] = [];
  #mbistPending = false;

  constructor(sim: Scheduler, options: ApexOptions = {}) {
    const name = options.name ?? 'apex';
    this.#sim = sim;
    this.#name = name;
    this.fn = new PciFunction(sim, {
      name, ...APEX_ID, ...APEX_SUBSYSTEM, interruptPin: 1, express: { flr: false }, pm: true,
      msix: { vectors: APEX_MSIX_VECTORS, tableBar: 2, tableOffset: APEX_MSIX_TABLE, pbaBar: 2, pbaOffset: APEX_MSIX_PBA },
      bars: [
        { kind: 'mem', size: APEX_BAR0_SIZE, is64: true, prefetchable: true },
        undefined,
        { kind: 'mem', size: APEX_BAR2_SIZE, is64: true, prefetchable: true },
      ],
    });
    this.fn.setBarHandler(2, this);
    this.errors = new GuestErrors(sim, name, APEX_ERRORS);
    this.irq = new ApexInterrupts(this.csr, this.fn, this.errors, sim, name);
    this.scu = new ApexScu(sim, this.csr, this);
    this.link = new ApexLink(options.link);
    this.pageTable = new GasketPageTable(this.csr, this.fn.dma, this, this.link);
    const window = (q: number) => {
      const r = APEX_QUEUE_REGS[q] as (typeof APEX_QUEUE_REGS)[number];
      // Queues 1-3 are confined to their simple windows: extended addresses would reach shared subtables.
      return { firstReg: r.windowFirst, countReg: r.windowCount, extended: q === 0 };
    };
    this.gasketDma = new GasketDma(this.pageTable, this.fn.dma, this, this.link, this.csr, window(0));
    this.commands = new ApexCommands(this.gasketDma, options.compute);
    this.queue = new InstructionQueue(sim, this.csr, this.gasketDma, this.commands, this.irq, this, 0, name);
    const queues = [this.queue];
    for (let q = 1; q < APEX_QUEUES; q++) {
      const relay = new FaultRelay();
      const dma = new GasketDma(this.pageTable, this.fn.dma, relay, this.link, this.csr, window(q));
      const queue = new InstructionQueue(sim, this.csr, dma, new ApexCommands(dma, options.compute), this.irq, this, q, name);
      relay.target = queue;
      queues.push(queue);
    }
    this.queues = queues;
    this.#pauseTimer = sim.timer(() => this.#pauseSettled(), Priority.HARDWARE);
    this.thermal = new ApexThermal(sim, this.csr, this, options.thermal);
    this.fn.onReset = () => this.#powerOn();
    this.#installHooks();
  }

  #installHooks(): void {
    const h = this.#hooks;
    const scu = () => this.scu.update();
    const wire = () => this.irq.updateWire();
    h[APEX.OMC0_D4] = () => this.thermal.evaluate();
    h[APEX.OMC0_D8] = () => this.thermal.evaluate();
    h[APEX.SCU_2] = scu;
    h[APEX.SCU_3] = scu;
    for (const q of this.queues) {
      const r = APEX_QUEUE_REGS[q.index] as (typeof APEX_QUEUE_REGS)[number];
      h[r.control] = (old) => q.controlWritten(old);
      h[r.tail] = () => q.tailWritten();
      h[r.intStatus] = wire;
      h[r.intControl] = wire;
    }
    for (const r of [APEX.SC_HOST_INT_STATUS, APEX.SC_HOST_INT_CONTROL, APEX.TOP_LEVEL_INT_STATUS,
      APEX.TOP_LEVEL_INT_CONTROL, APEX.FATAL_ERR_INT_STATUS, APEX.FATAL_ERR_INT_CONTROL, APEX.WIRE_INT_MASK_ARRAY]) h[r] = wire;
    h[APEX.USER_HIB_DMA_PAUSE] = () => this.#pauseWritten();
    h[APEX.SC_RUN_CONTROL] = () => this.csr.set(APEX.SC_RUN_STATUS, this.csr.get(APEX.SC_RUN_CONTROL) & 3);
    h[APEX.EXTENDED_TABLE] = (old) => {
      if (this.csr.get(APEX.EXTENDED_TABLE) <= APEX_PAGE_TABLE.entries) return;
      this.errors.report('bad-partition', this.csr.get(APEX.EXTENDED_TABLE));
      this.csr.set(APEX.EXTENDED_TABLE, old);
    };
  }

  // MMIO.

  /** {@link MmioHandler}: a 4-byte read (alignment and range already checked by the function). */
  read(offset: number, size: number): number {
    if (offset >= PT_START && offset < PT_END) {
      const slot = (offset - PT_START) >>> 3;
      return (offset & 4) === 0 ? (this.pageTable.lo[slot] as number) : (this.pageTable.hi[slot] as number);
    }
    const at = size === 4 && offset < APEX_REGS_END ? (APEX_REG_AT[offset >>> 2] as number) : -1;
    if (at < 0) {
      this.errors.report('unhandled', offset, size);
      return allOnes(size);
    }
    return at >= HIGH_HALF ? (this.csr.hi[at - HIGH_HALF] as number) : this.csr.get(at);
  }

  /** {@link MmioHandler}: a 4-byte write. */
  write(offset: number, size: number, value: number): void {
    const v = value >>> 0;
    if (offset >= PT_START && offset < PT_END) {
      if (this.#refuseInReset(offset)) return;
      const slot = (offset - PT_START) >>> 3;
      if ((offset & 4) === 0) this.pageTable.lo[slot] = v;
      else this.pageTable.hi[slot] = v;
      return;
    }
    const at = size === 4 && offset < APEX_REGS_END ? (APEX_REG_AT[offset >>> 2] as number) : -1;
    if (at < 0) {
      this.errors.report('unhandled', offset, size);
      return;
    }
    if (at >= HIGH_HALF) this.#write(at - HIGH_HALF, offset, this.csr.get(at - HIGH_HALF), v);
    else this.#write(at, offset, v, this.csr.hi[at] as number);
  }

  /** {@link MmioHandler}: an 8-byte read; 64-bit registers and page-table slots only. */
  read64(offset: number): bigint {
    if (offset >= PT_START && offset < PT_END) {
      const slot = (offset - PT_START) >>> 3;
      return (BigInt(this.pageTable.hi[slot] as number) << 32n) | BigInt(this.pageTable.lo[slot] as number);
    }
    const at = this.#reg64(offset);
    if (at < 0) return ALL_ONES_64;
    return (BigInt(this.csr.hi[at] as number) << 32n) | BigInt(this.csr.get(at));
  }

  /** {@link MmioHandler}: an 8-byte write. */
  write64(offset: number, value: bigint): void {
    const lo = Number(value & 0xffff_ffffn);
    const hi = Number(value >> 32n);
    if (offset >= PT_START && offset < PT_END) {
      if (this.#refuseInReset(offset)) return;
      const slot = (offset - PT_START) >>> 3;
      this.pageTable.lo[slot] = lo;
      this.pageTable.hi[slot] = hi;
      return;
    }
    const at = this.#reg64(offset);
    if (at >= 0) this.#write(at, offset, lo, hi);
  }

  #reg64(offset: number): number {
    const at = offset < APEX_REGS_END ? (APEX_REG_AT[offset >>> 2] as number) : -1;
    if (at < 0 || at >= HIGH_HALF || APEX_REGS[at]?.width !== 64) {
      this.errors.report('unhandled', offset, 8);
      return -1;
    }
    return at;
  }

  #refuseInReset(offset: number): boolean {
    if (!this.scu.inReset) return false;
    this.errors.report('in-reset', offset);
    return true;
  }

  #write(i: number, offset: number, lo: number, hi: number): void {
    const reg = APEX_REGS[i];
    if (reg === undefined) return;
    if (reg.domain === 'gcb' && this.#refuseInReset(offset)) return;
    if (reg.access === 'RO' || reg.access === 'HW') {
      this.errors.report('read-only', offset, lo);
      return;
    }
    const old = this.csr.get(i);
    this.csr.guestWrite(i, lo, hi);
    this.#hooks[i]?.(old);
  }

  // Injected causes.

  /** {@link ThermalOwner}: the GCB is in reset. */
  get inReset(): boolean {
    return this.scu.inReset;
  }

  /** {@link ThermalOwner}: raises source `src`. */
  raise(src: number): void {
    this.irq.raise(src);
  }

  /**
   * A PCIe link error (*dmasim*'s cause of TOP_LEVEL_1, e.g. a replay timeout or a receiver error the test
   * injects): raises TOP_LEVEL_1, unless the GCB is in reset (it is then dropped).
   */
  injectLinkError(): void {
    this.#injected(INJECT.link);
    if (!this.scu.inReset) this.irq.raise(ApexIrq.TOP_LEVEL_1);
  }

  /**
   * A memory built-in self-test failure (*dmasim*'s cause of TOP_LEVEL_2): raised now if the GCB is out of
   * reset, else when it next leaves reset (the self-test result of its RAM power-up).
   */
  injectMbistFailure(): void {
    this.#injected(INJECT.mbist);
    if (this.scu.inReset) this.#mbistPending = true;
    else this.irq.raise(ApexIrq.TOP_LEVEL_2);
  }

  #injected(kind: string): void {
    const trace = this.#sim.trace;
    if (trace.active) trace.emit(this.#sim.now, this.#name, kind, {});
  }

  // Errors, pause, reset.

  /** {@link FaultSink}: latch HIB error `bits` (address `hi:lo` unless `hi` < 0), raise FATAL_ERR, halt queue 0. */
  hibError(bits: number, hi: number, lo: number): void {
    const csr = this.csr;
    const st = csr.get(APEX.HIB_ERROR_STATUS);
    if (st === 0) {
      csr.set(APEX.HIB_FIRST_ERROR_STATUS, bits);
      const now = this.#sim.now;
      csr.set(APEX.HIB_FIRST_ERROR_TIMESTAMP, now % TWO32, Math.floor(now / TWO32));
    }
    csr.set(APEX.HIB_ERROR_STATUS, st | bits);
    if (hi >= 0) csr.set(APEX.PAGE_FAULT_ADDRESS, lo, hi);
    this.errors.report('hib-error', bits, hi, lo);
    const trace = this.#sim.trace;
    if (trace.active) trace.emit(this.#sim.now, this.#name, 'hib-error', { bits, address: hi < 0 ? -1 : hi * TWO32 + lo });
    if ((bits & ~csr.get(APEX.HIB_ERROR_MASK)) !== 0) this.irq.raise(ApexIrq.FATAL_ERR);
    this.queue.halt();
  }

  /** {@link QueueOwner}: USER_HIB_DMA_PAUSE is set. */
  get dmaPaused(): boolean {
    return (this.csr.get(APEX.USER_HIB_DMA_PAUSE) & 1) !== 0;
  }

  /** {@link QueueOwner}: a queue has nothing in flight; a pending pause completes once none has. */
  queueIdle(): void {
    if (this.dmaPaused && !this.#pauseTimer.pending && !this.#anyBusy()) this.csr.set(APEX.USER_HIB_DMA_PAUSED, 1);
  }

  /** {@link QueueOwner}: queue `q` (1..3) latched an error: logged and traced (no FATAL_ERR). */
  queueFault(q: number, bits: number, hi: number, lo: number): void {
    this.errors.report('queue-error', q, hi, lo);
    const trace = this.#sim.trace;
    if (trace.active) trace.emit(this.#sim.now, this.#name, 'queue-error', { queue: q, bits, address: hi < 0 ? -1 : hi * TWO32 + lo });
  }

  #anyBusy(): boolean {
    for (const q of this.queues) if (q.busy) return true;
    return false;
  }

  #pauseWritten(): void {
    if (this.dmaPaused) {
      if (this.csr.get(APEX.USER_HIB_DMA_PAUSED) === 0 && !this.#pauseTimer.pending) this.#pauseTimer.schedule(APEX_RESET_TIMING.dmaPauseNs);
      return;
    }
    this.#pauseTimer.cancel();
    this.csr.set(APEX.USER_HIB_DMA_PAUSED, 0);
    for (const q of this.queues) q.kick();
  }

  #pauseSettled(): void {
    if (this.dmaPaused && !this.#anyBusy()) this.csr.set(APEX.USER_HIB_DMA_PAUSED, 1);
  }

  /** {@link ResetOwner}: GCB registers to reset values, the queue stopped, the wire dropped. */
  gcbEnterReset(): void {
    this.csr.reset('gcb');
    for (const q of this.queues) q.stop();
    this.#pauseTimer.cancel();
    this.irq.updateWire();
  }

  /**
   * {@link ResetOwner}: leaving reset clears the page table and the MSI-X table (every entry zeroed and
   * masked, PBA clear; MSI-X enable in config space is untouched). dmasim's decision, from gasket
   * re-initialising MSI-X and rewriting the page table after every reset.
   */
  gcbExitReset(): void {
    this.pageTable.clear();
    if (this.#mbistPending) {
      this.#mbistPending = false;
      this.irq.raise(ApexIrq.TOP_LEVEL_2);
    }
    const msix = this.fn.msix;
    if (msix === undefined) return;
    msix.table.fill(0);
    for (let v = 0; v < msix.options.vectors; v++) msix.table[v * 4 + MsixEntry.VECTOR_CTRL] = MSIX_VECTOR_MASKED;
    msix.pba.fill(0);
  }

  /** PCI RST#: the whole device at its power-on state (out of reset, tables initialised). */
  #powerOn(): void {
    this.csr.reset('aon');
    this.csr.reset('gcb');
    this.scu.powerOn();
    for (const q of this.queues) q.stop();
    this.#pauseTimer.cancel();
    this.pageTable.clear();
    this.#mbistPending = false;
    this.thermal.powerOn();
    this.irq.updateWire();
  }
}
