import type { Kernel } from './kernel.ts';
import { E } from './errno.ts';
import { RatelimitState } from './iommu/dmar-fault.ts';

/** Handler results (Linux `irqreturn_t`). */
export const IRQ_NONE = 0;
export const IRQ_HANDLED = 1;

/** `request_irq` flags used here (Linux `include/linux/interrupt.h`). */
export const IRQF = {
  SHARED: 0x80,
  ONESHOT: 0x2000,
  NO_THREAD: 0x10000,
} as const;

/** A hard-IRQ handler: runs in event context at the instant of the interrupt, returns {@link IRQ_HANDLED} or {@link IRQ_NONE}. */
export type IrqHandler = (irq: number, devId: unknown) => number;

/** Linux irq numbers: 0..23 are the INTx lines (IOAPIC GSIs); MSI and MSI-X irqs are allocated from here. */
export const FIRST_DYNAMIC_IRQ = 24;

/** x86 `FIRST_EXTERNAL_VECTOR`: vectors below are exceptions. */
const FIRST_EXTERNAL_VECTOR = 0x20;
/** x86 `FIRST_SYSTEM_VECTOR` (`LOCAL_TIMER_VECTOR`): vectors from here have their own entry points (not modelled). */
const FIRST_SYSTEM_VECTOR = 0xec;

/** Interrupts counted on one irq before the spurious check decides (Linux `note_interrupt`). */
const SPURIOUS_WINDOW = 100_000;
/** Unhandled interrupts within the window that disable the line ("nobody cared"). */
const SPURIOUS_LIMIT = 99_900;
/** Delay before a level-triggered line that is still asserted after its handlers ran is delivered again (EOI and re-entry). */
const LEVEL_REFIRE_NS = 1_000;

interface Action {
  readonly handler: IrqHandler;
  readonly flags: number;
  readonly name: string;
  readonly devId: unknown;
}

/** One Linux irq descriptor (`struct irq_desc`). */
export interface IrqDesc {
  readonly irq: number;
  /** `'level'` for INTx, `'edge'` for MSI / MSI-X. */
  readonly trigger: 'level' | 'edge';
  /** What the line is in `/proc/interrupts` (`IO-APIC 11-fasteoi`, `PCI-MSI 49152-edge`). */
  readonly chip: string;
  readonly actions: Action[];
  /** `disable_irq` nesting depth; also 1 after the spurious check disabled the line. */
  depth: number;
  /** Interrupts delivered (handled or not). */
  count: number;
  /** Within the current spurious window. */
  windowCount: number;
  windowUnhandled: number;
  /** A level interrupt arrived while disabled; replayed on enable (Linux `IRQS_PENDING`). */
  pending: boolean;
  /** For level lines: whether the line is asserted now. */
  level: boolean;
  /** A re-delivery of a still-asserted level line is scheduled. */
  refireScheduled: boolean;
  /** The spurious check disabled it. */
  nobodyCared: boolean;
  /** The irq chip's mask / unmask (an MSI-X entry's mask bit): unmasked at the first `request`, masked at the last `free`. */
  mask?: (masked: boolean) => void;
}

/**
 * The kernel's generic IRQ layer (Linux `kernel/irq/`): irq descriptors for INTx lines and for MSI / MSI-X
 * vectors, `request_irq` / `free_irq` with `IRQF_SHARED` sharing rules, `disable_irq` / `enable_irq`, and
 * the spurious-interrupt check that disables a line nobody handles ("irq N: nobody cared"). Hard handlers
 * run synchronously at the virtual instant the interrupt reaches the CPU. A level-triggered line that is
 * still asserted once its handlers have run is delivered again after a short EOI delay, as a real
 * level-triggered IOAPIC line would.
 */
export class IrqCore {
  readonly #kernel: Kernel;
  readonly #descs = new Map<number, IrqDesc>();
  #nextIrq = FIRST_DYNAMIC_IRQ;
  /** Vectors freed since their last message (Linux `VECTOR_SHUTDOWN` in `vector_irq`). */
  readonly #shutdown = new Set<number>();
  /** `pr_emerg_ratelimited`'s per-call-site state (`DEFAULT_RATELIMIT_INTERVAL`, `DEFAULT_RATELIMIT_BURST`). */
  readonly #noHandlerRs: RatelimitState;
  #noHandler = 0;

  constructor(kernel: Kernel) {
    this.#kernel = kernel;
    this.#noHandlerRs = new RatelimitState({ clock: kernel.sim, log: kernel.log });
    kernel.machine.intc.onUnhandled((vector) => this.#commonInterrupt(vector));
  }

  /**
   * Messages that reached an external vector no irq owned and were logged as "No irq handler for vector"
   * (whether or not the ratelimit printed them). Linux keeps no such counter (neither `ERR:` nor `SPU:` in
   * `/proc/interrupts` counts this path); it is dmasim's, beside the interrupt controller's `spurious`.
   */
  get noHandler(): number {
    return this.#noHandler;
  }

  /**
   * Linux `clear_irq_vector`: the freed CPU vector is `VECTOR_SHUTDOWN`, so one stray message on it (the
   * device may still send one) is taken quietly before the vector counts as unused again.
   */
  vectorShutdown(vector: number): void {
    this.#shutdown.add(vector);
  }

  /** An allocated vector got an irq again (`apic_update_vector`): no longer shut down. */
  vectorInUse(vector: number): void {
    this.#shutdown.delete(vector);
  }

  /**
   * x86 `common_interrupt` for a vector whose `vector_irq` slot holds no irq (6.1 `__common_interrupt`, 6.10+
   * `call_irq_handler`): EOI; a `VECTOR_SHUTDOWN` slot becomes `VECTOR_UNUSED` silently, an unused one is
   * logged at KERN_EMERG through `pr_emerg_ratelimited` (10 per 5 s, then "N callbacks suppressed"). The
   * CPU number is 0 (one CPU). System vectors (0xec..0xff) and exception vectors are not modelled here.
   */
  #commonInterrupt(vector: number): void {
    if (vector < FIRST_EXTERNAL_VECTOR || vector >= FIRST_SYSTEM_VECTOR) return;
    if (this.#shutdown.delete(vector)) return;
    this.#noHandler++;
    const func = this.#kernel.behaviour.noIrqHandlerFunc;
    if (this.#noHandlerRs.check(func)) this.#kernel.log.printk('emerg', `${func}: 0.${vector} No irq handler for vector`);
  }

  /** The descriptor of `irq`, if it exists. */
  desc(irq: number): IrqDesc | undefined {
    return this.#descs.get(irq);
  }

  /** Every descriptor, by irq number. */
  get descs(): readonly IrqDesc[] {
    return [...this.#descs.values()].sort((a, b) => a.irq - b.irq);
  }

  /** Creates the descriptor of an INTx line `line` (its irq number is the line) and wires it to the interrupt controller. */
  intxDesc(line: number): IrqDesc {
    const found = this.#descs.get(line);
    if (found !== undefined) return found;
    const d = this.#newDesc(line, 'level', `IO-APIC ${line}-fasteoi`);
    this.#kernel.machine.intc.onIntx(line, (_l, level) => this.#levelChange(d, level));
    d.level = this.#kernel.machine.intc.intxLevel(line);
    return d;
  }

  /** Allocates an edge irq for an MSI / MSI-X message (`chip` as `/proc/interrupts` names it). */
  allocEdge(chip: string): IrqDesc {
    const d = this.#newDesc(this.#nextIrq++, 'edge', chip);
    return d;
  }

  /** Frees an irq made by {@link allocEdge} (its actions must be gone). */
  freeEdge(irq: number): void {
    this.#descs.delete(irq);
  }

  #newDesc(irq: number, trigger: 'level' | 'edge', chip: string): IrqDesc {
    const d: IrqDesc = {
      irq, trigger, chip, actions: [], depth: 0, count: 0, windowCount: 0, windowUnhandled: 0,
      pending: false, level: false, refireScheduled: false, nobodyCared: false,
    };
    this.#descs.set(irq, d);
    return d;
  }

  /**
   * Linux `request_irq`: 0, or `-EINVAL` (no such irq, no handler, `IRQF_SHARED` without a `devId`),
   * `-EBUSY` (the line is taken and not both sides share).
   */
  request(irq: number, handler: IrqHandler | undefined, flags: number, name: string, devId: unknown): number {
    const d = this.#descs.get(irq);
    if (d === undefined) return E.EINVAL;
    if ((flags & IRQF.SHARED) !== 0 && devId === undefined) return E.EINVAL;
    if (handler === undefined) return E.EINVAL;
    const first = d.actions[0];
    if (first !== undefined && ((first.flags & flags & IRQF.SHARED) === 0)) return E.EBUSY;
    d.actions.push({ handler, flags, name, devId });
    if (d.actions.length === 1) {
      d.depth = 0;
      d.nobodyCared = false;
      d.windowCount = 0;
      d.windowUnhandled = 0;
      d.mask?.(false);
      if (d.trigger === 'level' && d.level) this.#deliver(d);
    }
    return 0;
  }

  /** Linux `free_irq`: removes the action registered with `devId`. */
  free(irq: number, devId: unknown): void {
    const d = this.#descs.get(irq);
    if (d === undefined) return;
    const i = d.actions.findIndex((a) => a.devId === devId);
    if (i < 0) {
      this.#kernel.log.printk('warn', `Trying to free already-free IRQ ${irq}`);
      return;
    }
    d.actions.splice(i, 1);
    if (d.actions.length === 0) d.mask?.(true);
  }

  /** Linux `disable_irq` (nesting). */
  disable(irq: number): void {
    const d = this.#descs.get(irq);
    if (d !== undefined) d.depth++;
  }

  /** Linux `enable_irq`: a level line still asserted, or an edge that came while disabled, is delivered now. */
  enable(irq: number): void {
    const d = this.#descs.get(irq);
    if (d === undefined || d.depth === 0) {
      this.#kernel.log.printk('warn', `Unbalanced enable for IRQ ${irq}`);
      return;
    }
    d.depth--;
    if (d.depth > 0) return;
    if ((d.trigger === 'level' && d.level) || d.pending) {
      d.pending = false;
      this.#deliver(d);
    }
  }

  /** An edge interrupt (an MSI / MSI-X message) reached the CPU for `irq`. */
  edge(d: IrqDesc): void {
    if (d.depth > 0) {
      d.pending = true;
      return;
    }
    this.#deliver(d);
  }

  #levelChange(d: IrqDesc, level: boolean): void {
    d.level = level;
    // A line with no action is masked at the IOAPIC (Linux `irq_shutdown` on the last `free_irq`).
    if (level && d.depth === 0 && !d.refireScheduled && d.actions.length > 0) this.#deliver(d);
  }

  #deliver(d: IrqDesc): void {
    d.count++;
    let ret = IRQ_NONE;
    for (const a of d.actions) ret |= a.handler(d.irq, a.devId);
    const sim = this.#kernel.sim;
    const tr = sim.trace;
    if (tr.active) tr.emit(sim.now, 'kernel', 'irq', { irq: d.irq, handled: ret !== IRQ_NONE, handlers: d.actions.length });
    this.#noteInterrupt(d, ret);
    if (d.trigger === 'level' && d.level && d.depth === 0 && !d.refireScheduled) {
      d.refireScheduled = true;
      sim.schedule(LEVEL_REFIRE_NS, () => {
        d.refireScheduled = false;
        if (d.level && d.depth === 0 && d.actions.length > 0) this.#deliver(d);
      });
    }
  }

  /** Linux `note_interrupt`: after 100,000 interrupts of which 99,900 went unhandled, the line is disabled. */
  #noteInterrupt(d: IrqDesc, ret: number): void {
    if (ret === IRQ_NONE) d.windowUnhandled++;
    if (++d.windowCount < SPURIOUS_WINDOW) return;
    if (d.windowUnhandled > SPURIOUS_LIMIT) {
      const log = this.#kernel.log;
      log.printk('emerg', `irq ${d.irq}: nobody cared (try booting with the "irqpoll" option)`);
      log.printk('err', 'handlers:');
      for (const a of d.actions) log.printk('err', `[<0>] ${a.name}`);
      log.printk('emerg', 'Disabling IRQ #' + d.irq);
      d.nobodyCared = true;
      d.depth++;
    }
    d.windowCount = 0;
    d.windowUnhandled = 0;
  }
}
