/**
 * The trace bus: typed records `(time, source, kind, fields)` that components emit and tools (the Chrome
 * trace writer, tests, the teaching views) subscribe to. Free when nobody listens: emitters test
 * {@link TraceBus.active} before building a record, so a hot path pays one field load.
 */

/** Field values a record may carry: JSON-friendly scalars (bigints are written as hex strings). */
export type TraceValue = number | bigint | string | boolean | null | readonly TraceValue[];

/** One trace record. */
export interface TraceRecord {
  /** Virtual time in nanoseconds at which the thing happened (or began). */
  readonly time: number;
  /** The component that emitted it, e.g. `iommu`, `edu@00:03.0`, `proc:driver`; one track per source. */
  readonly source: string;
  /** What happened, e.g. `dma.read`, `walk.step`, `fault`. */
  readonly kind: string;
  /** Duration in nanoseconds for a span (absent for an instant). */
  readonly durNs?: number;
  /** Details. */
  readonly fields: Readonly<Record<string, TraceValue>>;
}

/** A subscriber to the trace bus. */
export type TraceListener = (record: TraceRecord) => void;

const NO_FIELDS: Readonly<Record<string, TraceValue>> = Object.freeze({});

/** The bus one machine's components emit on. No global instance: each machine owns its own. */
export class TraceBus {
  /** True while at least one listener is subscribed. Emitters check it before building a record. */
  active = false;
  #listeners: TraceListener[] = [];

  /** Subscribes `fn`; returns the function that unsubscribes it. */
  subscribe(fn: TraceListener): () => void {
    this.#listeners = [...this.#listeners, fn];
    this.active = true;
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== fn);
      this.active = this.#listeners.length > 0;
    };
  }

  /** Emits an instant record (no-op without listeners). */
  emit(time: number, source: string, kind: string, fields: Readonly<Record<string, TraceValue>> = NO_FIELDS): void {
    if (!this.active) return;
    const rec: TraceRecord = { time, source, kind, fields };
    for (const l of this.#listeners) l(rec);
  }

  /** Emits a span of `durNs` starting at `time` (no-op without listeners). */
  span(time: number, durNs: number, source: string, kind: string, fields: Readonly<Record<string, TraceValue>> = NO_FIELDS): void {
    if (!this.active) return;
    const rec: TraceRecord = { time, source, kind, durNs, fields };
    for (const l of this.#listeners) l(rec);
  }
}

/** A counter: components keep the object and bump `value` directly on hot paths. */
export interface Counter {
  value: number;
}

/** Counters per component (`iommu` / `iotlb.hit`), for statistics and the benchmark reports. */
export class Stats {
  readonly #components = new Map<string, Map<string, Counter>>();

  /** The counter `name` of `component`, created at zero on first use. */
  counter(component: string, name: string): Counter {
    let c = this.#components.get(component);
    if (c === undefined) {
      c = new Map();
      this.#components.set(component, c);
    }
    let k = c.get(name);
    if (k === undefined) {
      k = { value: 0 };
      c.set(name, k);
    }
    return k;
  }

  /** All counters as `{ component: { name: value } }`, components and names sorted. */
  snapshot(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const comp of [...this.#components.keys()].sort()) {
      const m = this.#components.get(comp) as Map<string, Counter>;
      const o: Record<string, number> = {};
      for (const name of [...m.keys()].sort()) o[name] = (m.get(name) as Counter).value;
      out[comp] = o;
    }
    return out;
  }
}
