import { SimInvariantError } from './errors.ts';
import type { Stats, TraceBus, TraceRecord, TraceValue } from './trace.ts';

/**
 * Chrome trace-event JSON (the "JSON Array Format" that Perfetto and chrome://tracing open), written from
 * {@link TraceBus} records. One process (pid) per machine, one thread track (tid) per record `source`,
 * named by `thread_name` metadata in order of first appearance. Instants become `ph: 'i'` events scoped to
 * their thread, spans `ph: 'X'` complete events; the final counters become `ph: 'C'` events.
 *
 * Timestamps are microseconds, as the format requires: `ts = ns / 1000`, fractional digits kept, so
 * nanosecond ordering survives. `bigint` fields are written as hex strings (`0x...`), since JSON numbers
 * cannot hold them exactly. The writer does no I/O: it hands chunks to a sink, or collects the document.
 */

/** Receives the document in pieces, in order; concatenated they are the whole JSON text. */
export type TraceSink = (chunk: string) => void;

/** Options of a {@link ChromeTraceWriter}. */
export interface ChromeTraceOptions {
  /** Name of the one process track, e.g. the machine's name (default `dmasim`). */
  readonly processName?: string;
  /** The pid every event carries (default 1). */
  readonly pid?: number;
  /**
   * Where chunks go. Without one, the writer keeps the document and {@link ChromeTraceWriter.finish}
   * returns it.
   */
  readonly sink?: TraceSink;
  /** Characters buffered before a chunk goes to the sink (default 64 KiB). */
  readonly chunkChars?: number;
}

/** What {@link ChromeTraceWriter.finish} appends before closing the array. */
export interface ChromeTraceFinish {
  /** Counters to write as `ph: 'C'` events, one per component, each counter a series. */
  readonly stats?: Stats;
  /** Virtual time (ns) of the counter samples (default: the latest time seen). */
  readonly timeNs?: number;
}

/** A JSON-ready field value. */
type JsonValue = number | string | boolean | null | JsonValue[];

/** Converts a trace field to JSON: bigints as hex strings, non-finite numbers as strings. */
export function traceValueToJson(v: TraceValue): JsonValue {
  if (typeof v === 'bigint') return v < 0n ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (Array.isArray(v)) return (v as readonly TraceValue[]).map(traceValueToJson);
  return v as string | boolean | null;
}

/** Virtual nanoseconds to the format's microseconds, keeping the fraction. */
export function nsToUs(ns: number): number {
  return ns / 1000;
}

/**
 * Streams one Chrome trace. Subscribe it to a bus with {@link ChromeTraceWriter.attach} (or feed records to
 * {@link ChromeTraceWriter.record}), then call {@link ChromeTraceWriter.finish} once.
 */
export class ChromeTraceWriter {
  readonly #pid: number;
  readonly #sink: TraceSink | undefined;
  readonly #chunkChars: number;
  readonly #tids = new Map<string, number>();
  #parts: string[] = [];
  #buffered = 0;
  #first = true;
  #finished = false;
  #lastTime = 0;
  #events = 0;

  constructor(options: ChromeTraceOptions = {}) {
    this.#pid = options.pid ?? 1;
    this.#sink = options.sink;
    this.#chunkChars = options.chunkChars ?? 65536;
    this.#push('[');
    this.#event({ name: 'process_name', ph: 'M', pid: this.#pid, tid: 0, args: { name: options.processName ?? 'dmasim' } });
  }

  /** Trace events written so far (metadata included). */
  get eventCount(): number {
    return this.#events;
  }

  /** The tid of each source seen so far, in order of first appearance. */
  get tracks(): ReadonlyMap<string, number> {
    return this.#tids;
  }

  /** Subscribes to `bus`; returns the function that unsubscribes. */
  attach(bus: TraceBus): () => void {
    return bus.subscribe((r) => this.record(r));
  }

  /** Writes one record: an instant, or a complete event when it has `durNs`. */
  record(r: TraceRecord): void {
    if (this.#finished) throw new SimInvariantError(`trace record ${r.source}/${r.kind} after the Chrome trace was finished`);
    const tid = this.#tid(r.source);
    const end = r.durNs === undefined ? r.time : r.time + r.durNs;
    if (end > this.#lastTime) this.#lastTime = end;
    const args: Record<string, JsonValue> = {};
    for (const k of Object.keys(r.fields)) args[k] = traceValueToJson(r.fields[k] as TraceValue);
    if (r.durNs === undefined) {
      this.#event({ name: r.kind, cat: r.source, ph: 'i', s: 't', ts: nsToUs(r.time), pid: this.#pid, tid, args });
    } else {
      this.#event({ name: r.kind, cat: r.source, ph: 'X', ts: nsToUs(r.time), dur: nsToUs(r.durNs), pid: this.#pid, tid, args });
    }
  }

  /**
   * Writes the counters (if given), closes the array and flushes. Returns the whole document when the
   * writer has no sink, else the empty string.
   */
  finish(options: ChromeTraceFinish = {}): string {
    if (this.#finished) throw new SimInvariantError('Chrome trace finished twice');
    if (options.stats !== undefined) {
      const ts = nsToUs(options.timeNs ?? this.#lastTime);
      const snap = options.stats.snapshot();
      for (const component of Object.keys(snap)) {
        this.#event({ name: component, ph: 'C', ts, pid: this.#pid, args: snap[component] as Record<string, number> });
      }
    }
    this.#finished = true;
    this.#push('\n]\n');
    this.#flush();
    if (this.#sink !== undefined) return '';
    const doc = this.#parts.join('');
    this.#parts = [];
    return doc;
  }

  #tid(source: string): number {
    let tid = this.#tids.get(source);
    if (tid === undefined) {
      tid = this.#tids.size + 1;
      this.#tids.set(source, tid);
      this.#event({ name: 'thread_name', ph: 'M', pid: this.#pid, tid, args: { name: source } });
      // Keep tracks in order of first appearance rather than Perfetto's default sort by tid name.
      this.#event({ name: 'thread_sort_index', ph: 'M', pid: this.#pid, tid, args: { sort_index: tid } });
    }
    return tid;
  }

  #event(e: Record<string, unknown>): void {
    this.#push(this.#first ? '\n' : ',\n');
    this.#first = false;
    this.#push(JSON.stringify(e));
    this.#events++;
  }

  #push(s: string): void {
    this.#parts.push(s);
    this.#buffered += s.length;
    if (this.#sink !== undefined && this.#buffered >= this.#chunkChars) this.#flush();
  }

  #flush(): void {
    if (this.#sink === undefined || this.#parts.length === 0) return;
    const chunk = this.#parts.join('');
    this.#parts = [];
    this.#buffered = 0;
    this.#sink(chunk);
  }
}
