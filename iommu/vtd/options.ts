import { Priority, type MsiSink, type PhysicalMemory, type Stats, type TraceBus } from '../../sim/index.ts';

/**
 * The part of the simulator's scheduler the unit needs (the `Simulator` satisfies it): virtual time and
 * one-shot callbacks for queued-invalidation processing.
 */
export interface VtdClock {
  readonly now: number;
  schedule(delayNs: number, cb: () => void, priority?: number): unknown;
  /** A reusable timer (the simulator's), so that a busy queue schedules without allocating; optional. */
  timer?(cb: () => void, priority?: number): VtdTimer;
  /**
   * Time of the next pending event, or `Infinity` (the simulator's). Without it (or a timer that can be
   * cancelled and moved), {@link VtdUnit.qiRunAhead} does nothing.
   */
  readonly nextEventTime?: number;
}

/** The reusable timer a {@link VtdClock} gives: `cancel` and `scheduleAt` let the queue run ahead of it. */
export interface VtdTimer {
  schedule(delayNs: number): void;
  scheduleAt?(time: number): void;
  cancel?(): boolean;
}

/** Configuration of a {@link VtdUnit}. Every field but the wiring has a default ({@link VTD_DEFAULTS}). */
export interface VtdOptions {
  /** Memory the tables, the invalidation queue and wait status words live in. */
  readonly mem: PhysicalMemory;
  readonly clock: VtdClock;
  /** Where fault and invalidation-completion events go. */
  readonly msi: MsiSink;
  readonly trace?: TraceBus;
  readonly stats?: Stats;
  /** Trace source and statistics component name. */
  readonly name?: string;
  /** MGAW and host address width in bits: 39 or 48 (QEMU's aw-bits). */
  readonly addressWidth?: 39 | 48;
  /** Number of fault recording registers (CAP.NFR + 1), 1..256. */
  readonly faultRecords?: number;
  /** IOTLB entries (0 disables the IOTLB: every access walks). */
  readonly iotlbEntries?: number;
  /** IOTLB associativity (ways per set); must divide the entries. */
  readonly iotlbWays?: number;
  /** Whether context entries are cached per requester (then context-cache invalidation matters). */
  readonly contextCache?: boolean;
  /** Virtual ns per table-entry read from memory (root, context or page-table entry). */
  readonly memReadNs?: number;
  /** Virtual ns of an IOTLB lookup (hit or miss). */
  readonly iotlbLookupNs?: number;
  /** Virtual ns per queued-invalidation descriptor; 0 processes the queue synchronously at the IQT write. */
  readonly qiDescriptorNs?: number;
  /** Requester id the unit's own interrupt messages carry. */
  readonly sourceId?: number;
  /** CAP.CM (caching mode). */
  readonly cachingMode?: boolean;
  /** Start with the stale-translation oracle on. */
  readonly staleOracle?: boolean;
  /** Scheduler priority of queue-processing events (the simulator's `Priority.HARDWARE`). */
  readonly priority?: number;
}

/** Defaults of the optional {@link VtdOptions}. */
export const VTD_DEFAULTS = {
  name: 'iommu',
  addressWidth: 48,
  faultRecords: 8,
  iotlbEntries: 512,
  iotlbWays: 8,
  contextCache: true,
  memReadNs: 80,
  iotlbLookupNs: 2,
  qiDescriptorNs: 50,
  sourceId: 0,
  cachingMode: false,
  staleOracle: false,
  priority: Priority.HARDWARE,
} as const;

/** Problems with `o` (empty when it is valid): the machine's configuration check reports them. */
export function checkVtdOptions(o: Omit<VtdOptions, 'mem' | 'clock' | 'msi'>): string[] {
  const bad: string[] = [];
  const nat = (v: number | undefined, what: string, min = 0): void => {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= min)) bad.push(`${what} must be an integer >= ${min}, got ${v}`);
  };
  if (o.addressWidth !== undefined && o.addressWidth !== 39 && o.addressWidth !== 48) bad.push(`addressWidth must be 39 or 48`);
  nat(o.faultRecords, 'faultRecords', 1);
  if (o.faultRecords !== undefined && o.faultRecords > 256) bad.push('faultRecords must be at most 256');
  nat(o.iotlbEntries, 'iotlbEntries');
  nat(o.iotlbWays, 'iotlbWays', 1);
  const e = o.iotlbEntries ?? VTD_DEFAULTS.iotlbEntries;
  const w = o.iotlbWays ?? VTD_DEFAULTS.iotlbWays;
  if (Number.isSafeInteger(e) && Number.isSafeInteger(w) && w > 0 && e % w !== 0) bad.push(`iotlbEntries ${e} must be a multiple of iotlbWays ${w}`);
  for (const k of ['memReadNs', 'iotlbLookupNs', 'qiDescriptorNs'] as const) {
    const v = o[k];
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) bad.push(`${k} must be a non-negative number`);
  }
  if (o.sourceId !== undefined && !(Number.isInteger(o.sourceId) && o.sourceId >= 0 && o.sourceId <= 0xffff)) bad.push('sourceId must be a 16-bit requester id');
  return bad;
}
