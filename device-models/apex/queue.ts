import { Priority, type Scheduler, type Timer } from '../../sim/index.ts';
import { APEX_COMMAND_BUFFER_MAX, APEX_COMMAND_SIZE, CMD_INVALID, type ApexCommands } from './commands.ts';
import type { ApexCsr } from './csr.ts';
import type { ApexInterrupts } from './interrupts.ts';
import type { FaultSink, GasketDma } from './page-table.ts';
import { APEX, ApexIrq, HIB_ERROR, IQ_CONTROL, IQ_STATUS } from './regs.ts';

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
const BAD_CONFIG = 1 << HIB_ERROR.QUEUE_BAD_CONFIG.lsb;
const INVALID = 1 << HIB_ERROR.QUEUE_INVALID.lsb;
const LENGTH_0 = 1 << HIB_ERROR.LENGTH_0_DMA.lsb;
const TWO32 = 0x1_0000_0000;

/** What the queue needs from the device besides its registers. */
export interface QueueOwner extends FaultSink {
  /** DMA is paused (USER_HIB_DMA_PAUSE): start no descriptor. */
  readonly dmaPaused: boolean;
  /** The queue has nothing in flight (for DMA_PAUSED). */
  queueIdle(): void;
}

/**
 * Instruction queue 0 (spec/devices.md sections 1.6 and 7): a power-of-two ring of 16-byte descriptors at
 * IQ_BASE, all addresses gasket device addresses. The tail write is the doorbell. One descriptor at a
 * time: {@link APEX_FETCH_NS} after the doorbell the descriptor and its command buffer are read, the
 * commands run (their effects land in memory then), and the completion follows after the time the
 * commands took: completed head advances, the status block is written if SB_WR_ENABLE, SC_HOST_0 and
 * INSTR_QUEUE are raised. Any error latches in hib_error_status, raises FATAL_ERR and halts the queue
 * (status HALTED; the status block gets fatal_error = 1).
 */
export class InstructionQueue {
  /** Descriptors completed. */
  completedCount = 0;
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

  constructor(sim: Scheduler, csr: ApexCsr, dma: GasketDma, cmds: ApexCommands, irq: ApexInterrupts, owner: QueueOwner) {
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
    return this.#csr.get(APEX.IQ_STATUS);
  }

  get #size(): number {
    return this.#csr.num(APEX.IQ_SIZE);
  }

  /** After a guest write to IQ_CONTROL (`old` = its previous low dword). */
  controlWritten(old: number): void {
    const csr = this.#csr;
    const now = csr.get(APEX.IQ_CONTROL);
    if ((old & ENABLE) === 0 && (now & ENABLE) !== 0) {
      const size = this.#size;
      const ok = size >= csr.num(APEX.IQ_MINIMUM_SIZE) && size <= csr.num(APEX.IQ_MAXIMUM_SIZE) && (size & (size - 1)) === 0;
      if (!ok) {
        // The queue stays disabled; the error is latched (and raises FATAL_ERR if unmasked).
        csr.set(APEX.IQ_CONTROL, now & ~ENABLE);
        this.#owner.hibError(BAD_CONFIG, -1, 0);
        return;
      }
      csr.set(APEX.IQ_TAIL, 0);
      csr.set(APEX.IQ_FETCHED_HEAD, 0);
      csr.set(APEX.IQ_COMPLETED_HEAD, 0);
      csr.set(APEX.IQ_STATUS, ST_ENABLED);
    } else if ((old & ENABLE) !== 0 && (now & ENABLE) === 0) {
      this.stop();
      csr.set(APEX.IQ_STATUS, 0);
    }
  }

  /** After a guest write to IQ_TAIL: the doorbell. */
  tailWritten(): void {
    if ((this.#status & ST_ENABLED) === 0) return;
    if (this.#csr.num(APEX.IQ_TAIL) >= this.#size) {
      this.#owner.hibError(INVALID, -1, 0);
      return;
    }
    this.kick();
  }

  /** Schedules the next fetch if there is work and nothing stops it. */
  kick(): void {
    const csr = this.#csr;
    if (this.#busy || this.#fetch.pending || (this.#status & (ST_ENABLED | ST_HALTED)) !== ST_ENABLED || this.#owner.dmaPaused) return;
    if (csr.num(APEX.IQ_FETCHED_HEAD) === csr.num(APEX.IQ_TAIL)) return;
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
    csr.set(APEX.IQ_STATUS, this.#status | ST_HALTED);
    if ((csr.get(APEX.IQ_CONTROL) & SB_WR) !== 0) this.#writeStatusBlock(1);
    this.#owner.queueIdle();
  }

  #step(): void {
    const csr = this.#csr;
    if (this.#owner.dmaPaused || (this.#status & (ST_ENABLED | ST_HALTED)) !== ST_ENABLED) return;
    const head = csr.num(APEX.IQ_FETCHED_HEAD);
    const dma = this.#dma;
    dma.costNs = 0;
    const off = csr.get(APEX.IQ_BASE) + head * APEX_DESCRIPTOR_SIZE;
    const baseHi = off >= TWO32 ? (csr.hi[APEX.IQ_BASE] as number) + 1 : (csr.hi[APEX.IQ_BASE] as number);
    if (!dma.read(baseHi >>> 0, off % TWO32, this.#desc, 0, APEX_DESCRIPTOR_SIZE)) return;
    this.#next = (head + 1) & (this.#size - 1);
    csr.set(APEX.IQ_FETCHED_HEAD, this.#next);
    const d = this.#descView;
    const lo = d.getUint32(0, true);
    const hi = d.getUint32(4, true);
    const len = d.getUint32(8, true);
    if (len === 0) {
      this.#owner.hibError(LENGTH_0, -1, 0);
      return;
    }
    if (len > APEX_COMMAND_BUFFER_MAX || len % APEX_COMMAND_SIZE !== 0) {
      this.#owner.hibError(INVALID, -1, 0);
      return;
    }
    if (!dma.read(hi, lo, this.#cmdBuf, 0, len)) return;
    // The commands zero and reuse the DMA cost, each returning its own.
    const fetchNs = dma.costNs;
    const ns = this.#cmds.run(this.#cmdView, len / APEX_COMMAND_SIZE);
    if (ns < 0) {
      if (ns === CMD_INVALID) this.#owner.hibError(INVALID, -1, 0);
      return;
    }
    this.#busy = true;
    this.#done.schedule(fetchNs + ns);
  }

  /** The command buffer finished: SC_HOST_0, completed head advances, the status block is written. */
  #complete(): void {
    const csr = this.#csr;
    this.#irq.raise(ApexIrq.SC_HOST_0);
    csr.set(APEX.IQ_COMPLETED_HEAD, this.#next);
    this.completedCount++;
    if ((csr.get(APEX.IQ_CONTROL) & SB_WR) === 0) {
      this.#notified();
      return;
    }
    const dma = this.#dma;
    dma.costNs = 0;
    if (!this.#writeStatusBlock(0)) return;
    this.#notify.schedule(dma.costNs);
  }

  /** The status block write has landed: INSTR_QUEUE, then the next descriptor. */
  #notified(): void {
    this.#busy = false;
    this.#irq.raise(ApexIrq.INSTR_QUEUE);
    this.#owner.queueIdle();
    this.kick();
  }

  #writeStatusBlock(fatal: number): boolean {
    const csr = this.#csr;
    const v = this.#sbView;
    v.setUint32(0, csr.get(APEX.IQ_COMPLETED_HEAD), true);
    v.setUint32(4, fatal, true);
    v.setUint32(8, 0, true);
    v.setUint32(12, 0, true);
    return this.#dma.write(csr.hi[APEX.IQ_STATUS_BLOCK_BASE] as number, csr.get(APEX.IQ_STATUS_BLOCK_BASE), this.#sb, 0, APEX_STATUS_BLOCK_SIZE);
  }
}
