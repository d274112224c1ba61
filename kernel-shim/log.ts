import type { Scheduler } from '../sim/index.ts';

/** printk levels (`KERN_EMERG` 0 .. `KERN_DEBUG` 7). */
export type LogLevel = 'emerg' | 'alert' | 'crit' | 'err' | 'warn' | 'notice' | 'info' | 'debug';

/** One kernel log record. */
export interface LogRecord {
  /** Virtual time in ns. */
  readonly time: number;
  readonly level: LogLevel;
  /** The message as `dmesg` prints it after the timestamp, e.g. `pci 0000:00:03.0: [1234:11e8] type 00 class 0x00ff00`. */
  readonly text: string;
}

/**
 * The kernel log ring (`dmesg`). Each record also goes on the trace bus as source `kernel`, kind `printk`.
 */
export class KernelLog {
  readonly #sim: Scheduler;
  readonly #records: LogRecord[] = [];

  constructor(sim: Scheduler) {
    this.#sim = sim;
  }

  /** Linux `printk`: appends a record at the current virtual time. */
  printk(level: LogLevel, text: string): void {
    const time = this.#sim.now;
    this.#records.push({ time, level, text });
    const tr = this.#sim.trace;
    if (tr.active) tr.emit(time, 'kernel', 'printk', { level, text });
  }

  /** Every record so far. */
  get records(): readonly LogRecord[] {
    return this.#records;
  }

  /** The log as `dmesg` prints it: `[    0.000123] text` per line. */
  dmesg(): string {
    return this.#records.map((r) => `[${formatStamp(r.time)}] ${r.text}\n`).join('');
  }
}

/** Seconds with six decimals, right-aligned in 12 columns, as dmesg prints its timestamps. */
function formatStamp(ns: number): string {
  const us = Math.floor(ns / 1000);
  const s = `${Math.floor(us / 1e6)}.${String(us % 1e6).padStart(6, '0')}`;
  return s.padStart(12, ' ');
}
