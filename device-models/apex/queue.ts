import { Priority, type Scheduler, type Timer } from '../../sim/index.ts';
import { APEX_COMMAND_BUFFER_MAX, APEX_COMMAND_SIZE, CMD_INVALID, type ApexCommands } from './commands.ts';
import type { ApexCsr } from './csr.ts';
import type { ApexInterrupts } from './interrupts.ts';
import type { FaultSink, GasketDma } from './page-table.ts';
import { APEX_QUEUE_REGS, ApexIrq, HIB_ERROR, IQ_CONTROL, IQ_STATUS, type ApexQueueRegs } from './regs.ts';

/** Bytes per descriptor `{u64 device_address, u32 size, u32 reserved}`. */
export const APEX_DESCRIPTOR_SIZE = 16;
/** Bytes of the status block `{u32 completed_head, u32 fatal_error, u64 reserved}`. */
export const APEX_STATUS_BLOCK_SIZE = 16;
/** Virtual ns from the doorbell (or the previous completion) to the next descriptor fetch (dmasim's value). */
export const APEX_FETCH_NS = 200;

const ENABLE = 1 << IQ_CONTROL.ENABLE.lsb;
const SB_WR = 1 << IQ_CONTROL.SB_WR_ENABLE.lsb;
const ST_ENABLED = 1 << IQ_STATUS.ENABLED.lsb;
const ST_HALTED = 1 << IQ_STATUS.HALTED.lsb;
const LENGTH_0 = 1 << HIB_ERROR.LENGTH_0_DMA.lsb;
const TWO32 = 0x1_0000_0000;

/** What the queue needs from the device besides its registers. */
export interface QueueOwner extends FaultSink {
  /** DMA is paused (USER_HIB_DMA_PAUSE): start no descriptor. */
  readonly dmaPaused: boolean;
  /** The queue has nothing in flight (for DMA_PAUSED). */
  queueIdle(): void;
  /**
   * Queue `q` (1..3) latched error `bits` in its Qq_ERROR_STATUS (address `hi:lo` unless `hi` < 0): for the
   * device's guest-error log and trace. Queue 0's errors go to {@link FaultSink.hibError} instead.
   */
  queueFault(q: number, bits: number, hi: number, lo: number): void;
}

/**
 * An instruction queue (spec/devices.md sections 1.6 and 7): queue 0 as on Apex, queues 1-3 dmasim's
 * partitioning extension with the same registers in their own pages ({@link APEX_QUEUE_REGS}). A
 * power-of-two ring of 16-byte descriptors at BASE, all addresses gasket device addresses, through the
 * queue's own {@link GasketDma} (its page-table window). The tail write is the doorbell. One descriptor at
 * a time: {@link APEX_FETCH_NS} after the doorbell the descriptor and its command buffer are read, the
 * commands run (their effects land in memory then), and after the time they took SC_HOST_q is raised,
 * completed head advances and the status block is written if SB_WR_ENABLE; source q follows once that
 * write has landed. An error halts the queue (status HALTED; the status block gets fatal_error = 1): on
 * queue 0 it latches in hib_error_status and raises FATAL_ERR (the device's {@link FaultSink}); on queues
 * 1-3 it latches in Qq_ERROR_STATUS / Qq_FAULT_ADDRESS and raises source q only.
 */
export class InstructionQueue implements FaultSink {
  /** Descriptors completed. */
  completedCount = 0;
  /** Queue number 0..3 (also its interrupt source; SC_HOST_q is source 4 + q). */
  readonly index: number;
  readonly #r: ApexQueueRegs;
  readonly #badConfig: number;
  readonly #invalid: number;
  readonly #csr: ApexCsr;
  readonly #dma: GasketDma;
  readonly #cmds: ApexCommands;
  readonly #irq: ApexInterrupts;
  readonly #owner: QueueOwner;
  readonly #fetch: Timer;
  readonly #done: Timer;
  readonly #notify: Timer;
  readonly #desc = new Uint8Array(APEX_DESCRIPTOR_SIZE);
  readonly #descView = new DataView(this.#desc.buffer);
  readonly #cmdBuf = new Uint8Array(APEX_COMMAND_BUFFER_MAX);
  readonly #cmdView = new DataView(this.#cmdBuf.buffer);
  readonly #sb = new Uint8Array(APEX_STATUS_BLOCK_SIZE);
  readonly #sbView = new DataView(this.#sb.buffer);
  #busy = false;
  #next = 0;
  readonly #sim: Scheduler;
  /** This queue's trace track, `${name}/queue${q}`. */
  readonly #source: string;
  // The descriptor in flight, for its trace span.
  #fetchAt = 0;
  #head = 0;
  #commands = 0;
  #bytes = 0;

  /**
   * `name` is the device's component name: the queue traces on `${name}/queue${index}` and its DMA, if
   * the caller gave it no trace, on `${name}/dma`.
   */
  constructor(sim: Scheduler, csr: ApexCsr, dma: GasketDma, cmds: ApexCommands, irq: ApexInterrupts, owner: QueueOwner, index = 0, name = 'apex') {
    this.index = index;
    this.#sim = sim;
    this.#source = `${name}/queue${index}`;
    dma.trace ??= { bus: sim.trace, source: `${name}/dma`, queue: index };
    this.#r = APEX_QUEUE_REGS[index] as ApexQueueRegs;
    this.#badConfig = 1 << (HIB_ERROR.QUEUE_BAD_CONFIG.lsb + index);
    this.#invalid = 1 << (HIB_ERROR.QUEUE_INVALID.lsb + index);
    this.#csr = csr;
    this.#dma = dma;
    this.#cmds = cmds;
    this.#irq = irq;
    this.#owner = owner;
    this.#fetch = sim.timer(() => this.#step(), Priority.HARDWARE);
    this.#done = sim.timer(() => this.#complete(), Priority.HARDWARE);
    this.#notify = sim.timer(() => this.#notified(), Priority.HARDWARE);
  }

  /** Whether a descriptor is in flight. */
  get busy(): boolean {
    return this.#busy;
  }

  get #status(): number {
    return this.#csr.get(this.#r.status);
  }

  get #size(): number {
    return this.#csr.num(this.#r.size);
  }

  /**
   * {@link FaultSink} of the queue's DMA and its own checks. Queue 0: the device's (hib_error_status,
   * FATAL_ERR, halt). Queues 1-3: latch in Qq_ERROR_STATUS (and the address in Qq_FAULT_ADDRESS), halt
   * this queue only, raise source q.
   */
  hibError(bits: number, hi: number, lo: number): void {
    if (this.index === 0) {
      this.#owner.hibError(bits, hi, lo);
      return;
    }
    const csr = this.#csr;
    const r = this.#r;
    csr.set(r.errorStatus, csr.get(r.errorStatus) | bits);
    if (hi >= 0) csr.set(r.faultAddress, lo, hi);
    this.#owner.queueFault(this.index, bits, hi, lo);
    this.halt();
    this.#irq.raise(this.index);
  }

  /** After a guest write to IQ_CONTROL (`old` = its previous low dword). */
  controlWritten(old: number): void {
    const csr = this.#csr;
    const now = csr.get(this.#r.control);
    if ((old & ENABLE) === 0 && (now & ENABLE) !== 0) {
      const size = this.#size;
      const ok = size >= csr.num(this.#r.minimumSize) && size <= csr.num(this.#r.maximumSize) && (size & (size - 1)) === 0;
      if (!ok) {
        // The queue stays disabled; the error is latched (and raises FATAL_ERR if unmasked).
        csr.set(this.#r.control, now & ~ENABLE);
        this.hibError(this.#badConfig, -1, 0);
        return;
      }
      csr.set(this.#r.tail, 0);
      csr.set(this.#r.fetchedHead, 0);
      csr.set(this.#r.completedHead, 0);
      csr.set(this.#r.status, ST_ENABLED);
    } else if ((old & ENABLE) !== 0 && (now & ENABLE) === 0) {
      this.stop();
      csr.set(this.#r.status, 0);
    }
  }

  /** After a guest write to IQ_TAIL: the doorbell. */
  tailWritten(): void {
    if ((this.#status & ST_ENABLED) === 0) return;
    const trace = this.#sim.trace;
    if (trace.active) trace.emit(this.#sim.now, this.#source, 'doorbell', { tail: this.#csr.num(this.#r.tail) });
    if (this.#csr.num(this.#r.tail) >= this.#size) {
      this.hibError(this.#invalid, -1, 0);
      return;
    }
    this.kick();
  }

  /** Schedules the next fetch if there is work and nothing stops it. */
  kick(): void {
    const csr = this.#csr;
    if (this.#busy || this.#fetch.pending || (this.#status & (ST_ENABLED | ST_HALTED)) !== ST_ENABLED || this.#owner.dmaPaused) return;
    if (csr.num(this.#r.fetchedHead) === csr.num(this.#r.tail)) return;
    this.#fetch.schedule(APEX_FETCH_NS);
  }

  /** Stops the queue (disable, reset): nothing in flight completes. */
  stop(): void {
    this.#fetch.cancel();
    this.#done.cancel();
    this.#notify.cancel();
    this.#busy = false;
  }

  /** Halts on an error: HALTED set, the status block says fatal_error = 1 (best effort). */
  halt(): void {
    const csr = this.#csr;
    // Already halted (a status-block write that faults while halting lands here again): nothing more.
    if ((this.#status & (ST_ENABLED | ST_HALTED)) !== ST_ENABLED) return;
    this.stop();
    const trace = this.#sim.trace;
    if (trace.active) trace.emit(this.#sim.now, this.#source, 'halt', { fetchedHead: csr.num(this.#r.fetchedHead), completedHead: csr.num(this.#r.completedHead) });
    csr.set(this.#r.status, this.#status | ST_HALTED);
    if ((csr.get(this.#r.control) & SB_WR) !== 0) this.#writeStatusBlock(1);
    this.#owner.queueIdle();
  }

  #step(): void {
    const csr = this.#csr;
    if (this.#owner.dmaPaused || (this.#status & (ST_ENABLED | ST_HALTED)) !== ST_ENABLED) return;
    const head = csr.num(this.#r.fetchedHead);
    const dma = this.#dma;
    dma.costNs = 0;
    const traced = this.#sim.trace.active;
    if (traced) {
      this.#fetchAt = this.#sim.now;
      dma.traceAtNs = this.#fetchAt;
    }
    const off = csr.get(this.#r.base) + head * APEX_DESCRIPTOR_SIZE;
    const baseHi = off >= TWO32 ? (csr.hi[this.#r.base] as number) + 1 : (csr.hi[this.#r.base] as number);
    if (!dma.read(baseHi >>> 0, off % TWO32, this.#desc, 0, APEX_DESCRIPTOR_SIZE)) return;
    this.#next = (head + 1) & (this.#size - 1);
    csr.set(this.#r.fetchedHead, this.#next);
    const d = this.#descView;
    const lo = d.getUint32(0, true);
    const hi = d.getUint32(4, true);
    const len = d.getUint32(8, true);
    if (len === 0) {
      this.hibError(LENGTH_0, -1, 0);
      return;
    }
    if (len > APEX_COMMAND_BUFFER_MAX || len % APEX_COMMAND_SIZE !== 0) {
      this.hibError(this.#invalid, -1, 0);
      return;
    }
    if (traced) {
      this.#head = head;
      this.#commands = len / APEX_COMMAND_SIZE;
      this.#bytes = len;
    }
    if (!dma.read(hi, lo, this.#cmdBuf, 0, len)) return;
    // The commands zero and reuse the DMA cost, each returning its own.
    const fetchNs = dma.costNs;
    const ns = this.#cmds.run(this.#cmdView, len / APEX_COMMAND_SIZE);
    if (ns < 0) {
      if (ns === CMD_INVALID) this.hibError(this.#invalid, -1, 0);
      return;
    }
    this.#busy = true;
    this.#done.schedule(fetchNs + ns);
  }

  /** The command buffer finished: SC_HOST_q, completed head advances, the status block is written. */
  #complete(): void {
    const csr = this.#csr;
    const trace = this.#sim.trace;
    if (trace.active) {
      const now = this.#sim.now;
      trace.span(this.#fetchAt, now - this.#fetchAt, this.#source, 'descriptor', { index: this.#head, commands: this.#commands, bytes: this.#bytes });
    }
    this.#irq.raise(ApexIrq.SC_HOST_0 + this.index);
    csr.set(this.#r.completedHead, this.#next);
    this.completedCount++;
    if ((csr.get(this.#r.control) & SB_WR) === 0) {
      this.#notified();
      return;
    }
    const dma = this.#dma;
    dma.costNs = 0;
    if (!this.#writeStatusBlock(0)) return;
    this.#notify.schedule(dma.costNs);
  }

  /** The status block write has landed: source q, then the next descriptor. */
  #notified(): void {
    this.#busy = false;
    this.#irq.raise(this.index);
    this.#owner.queueIdle();
    this.kick();
  }

  #writeStatusBlock(fatal: number): boolean {
    const csr = this.#csr;
    const v = this.#sbView;
    v.setUint32(0, csr.get(this.#r.completedHead), true);
    v.setUint32(4, fatal, true);
    v.setUint32(8, 0, true);
    v.setUint32(12, 0, true);
    const trace = this.#sim.trace;
    if (trace.active) {
      this.#dma.traceAtNs = this.#sim.now;
      trace.emit(this.#sim.now, this.#source, 'status-block', { completedHead: csr.num(this.#r.completedHead), fatal });
    }
    return this.#dma.write(csr.hi[this.#r.statusBlockBase] as number, csr.get(this.#r.statusBlockBase), this.#sb, 0, APEX_STATUS_BLOCK_SIZE);
  }
}
