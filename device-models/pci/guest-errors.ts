import type { Counter, Scheduler, TraceValue } from '../../sim/index.ts';

/**
 * Guest errors: a driver misprogramming a device. The device does what hardware does; this records it, as
 * QEMU's `LOG_GUEST_ERROR`: a `guest-error` trace record (only while the trace is active) and counters
 * `guest-errors` (total) and `guest-error.<kind>` under the device's component name.
 *
 * Each kind declares the names of up to three numeric details, so that reporting allocates nothing unless
 * someone is listening to the trace.
 */
export class GuestErrors<K extends string> {
  /** All guest errors of this component. */
  readonly total: Counter;
  readonly #sim: Scheduler;
  readonly #source: string;
  readonly #fields: Readonly<Record<K, readonly string[]>>;
  readonly #counters: Record<K, Counter>;

  /** `fields[kind]` names the details {@link report} passes for that kind. */
  constructor(sim: Scheduler, source: string, fields: Readonly<Record<K, readonly string[]>>) {
    this.#sim = sim;
    this.#source = source;
    this.#fields = fields;
    this.total = sim.stats.counter(source, 'guest-errors');
    const counters = {} as Record<K, Counter>;
    for (const k of Object.keys(fields) as K[]) counters[k] = sim.stats.counter(source, `guest-error.${k}`);
    this.#counters = counters;
  }

  /** Counts a guest error of `kind` and traces it with its details. */
  report(kind: K, a = 0, b = 0, c = 0): void {
    this.total.value++;
    this.#counters[kind].value++;
    const trace = this.#sim.trace;
    if (!trace.active) return;
    const names = this.#fields[kind];
    const rec: Record<string, TraceValue> = { what: kind };
    if (names[0] !== undefined) rec[names[0]] = a;
    if (names[1] !== undefined) rec[names[1]] = b;
    if (names[2] !== undefined) rec[names[2]] = c;
    trace.emit(this.#sim.now, this.#source, 'guest-error', rec);
  }

  /** How many errors of `kind` were reported. */
  count(kind: K): number {
    return this.#counters[kind].value;
  }
}
