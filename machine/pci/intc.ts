import { invariant, type Counter, type MsiSink, type Scheduler } from '../../sim/index.ts';

/** Called for a delivered MSI: the vector, the destination APIC id, and the requester id that sent it. */
export type VectorHandler = (vector: number, destination: number, requester: number) => void;
/** Called when a shared INTx line changes level (true: at least one function asserts it). */
export type IntxHandler = (line: number, level: boolean) => void;

/** Vectors 0..15 are reserved on x86 (the local APIC flags them as illegal). */
const FIRST_LEGAL_VECTOR = 16;
/** Interrupt lines (IOAPIC inputs) the controller has. */
export const INTX_LINES = 24;

/**
 * The interrupt controller behind the root complex's `MsiSink`: a local APIC's view of x86 MSI (address
 * 0xFEEx_xxxx: destination APIC id = address[19:12]; data: vector = data[7:0], delivery mode and trigger
 * ignored: fixed, edge) and an IOAPIC's level-triggered, shared INTx lines. Handlers are hooks the kernel's
 * IRQ layer (later) and bare-hardware scenarios install; a message for a vector nobody handles, or an
 * illegal vector (0..15), is counted as spurious and traced, and a legal one goes to the
 * {@link InterruptController.onUnhandled} hook. Delivery is synchronous, at the sender's time.
 */
export class InterruptController implements MsiSink {
  /** Messages delivered per vector. */
  readonly delivered = new Uint32Array(256);
  // Counters are made on first use, so that a machine without interrupts reports none.
  #spurious: Counter | undefined;
  #received: Counter | undefined;
  readonly #sim: Scheduler;
  readonly #handlers: (VectorHandler | undefined)[] = Array.from({ length: 256 }, () => undefined);
  #unhandled: VectorHandler | undefined;
  readonly #intxHandlers: (IntxHandler | undefined)[] = Array.from({ length: INTX_LINES }, () => undefined);
  /** Requester ids asserting each line (INTx is wired-OR: the line is high while any of them asserts). */
  readonly #asserting: Set<number>[] = Array.from({ length: INTX_LINES }, () => new Set<number>());
  readonly #name: string;

  constructor(sim: Scheduler, name = 'intc') {
    this.#sim = sim;
    this.#name = name;
  }

  /** Installs (or with undefined removes) the handler of `vector` (0..255); returns the previous one. */
  onVector(vector: number, handler: VectorHandler | undefined): VectorHandler | undefined {
    invariant(Number.isInteger(vector) && vector >= 0 && vector <= 255, () => `vector must be 0..255, got ${vector}`);
    const prev = this.#handlers[vector];
    this.#handlers[vector] = handler;
    return prev;
  }

  /**
   * Installs (or with undefined removes) what runs for a message on a legal vector that has no handler,
   * after it is counted as spurious: the CPU's own entry for a vector nothing claimed (the kernel logs it);
   * returns the previous one. Illegal vectors (0..15) never reach it.
   */
  onUnhandled(handler: VectorHandler | undefined): VectorHandler | undefined {
    const prev = this.#unhandled;
    this.#unhandled = handler;
    return prev;
  }

  /** Installs (or removes) the handler of INTx line `line` (0..23); returns the previous one. */
  onIntx(line: number, handler: IntxHandler | undefined): IntxHandler | undefined {
    invariant(Number.isInteger(line) && line >= 0 && line < INTX_LINES, () => `INTx line must be 0..${INTX_LINES - 1}, got ${line}`);
    const prev = this.#intxHandlers[line];
    this.#intxHandlers[line] = handler;
    return prev;
  }

  /** {@link MsiSink}: a write of `data` at `address` in the interrupt window. */
  msi(requester: number, address: number, data: number): void {
    (this.#received ??= this.#sim.stats.counter(this.#name, 'msi')).value++;
    const vector = data & 0xff;
    const destination = (address >>> 12) & 0xff;
    const trace = this.#sim.trace;
    const h = vector >= FIRST_LEGAL_VECTOR ? this.#handlers[vector] : undefined;
    if (h === undefined) {
      (this.#spurious ??= this.#sim.stats.counter(this.#name, 'spurious')).value++;
      if (trace.active) trace.emit(this.#sim.now, this.#name, 'spurious', { vector, destination, requester, address, data });
      if (vector >= FIRST_LEGAL_VECTOR) this.#unhandled?.(vector, destination, requester);
      return;
    }
    this.delivered[vector] = (this.delivered[vector] as number) + 1;
    if (trace.active) trace.emit(this.#sim.now, this.#name, 'msi', { vector, destination, requester });
    h(vector, destination, requester);
  }

  /** A function's pin reaching `line` changed level (the machine's INTx wiring calls it). */
  setIntx(line: number, requester: number, asserted: boolean): void {
    const set = this.#asserting[line];
    if (set === undefined) return;
    const before = set.size > 0;
    if (asserted) set.add(requester);
    else set.delete(requester);
    const after = set.size > 0;
    if (before === after) return;
    const trace = this.#sim.trace;
    if (trace.active) trace.emit(this.#sim.now, this.#name, after ? 'intx.assert' : 'intx.deassert', { line, requester });
    this.#intxHandlers[line]?.(line, after);
  }

  /** Messages nobody handled (or with an illegal vector) so far. */
  get spurious(): number {
    return this.#spurious?.value ?? 0;
  }

  /** The level of INTx line `line`. */
  intxLevel(line: number): boolean {
    return (this.#asserting[line]?.size ?? 0) > 0;
  }
}
