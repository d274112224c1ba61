import { MSI_WINDOW_LAST, MSI_WINDOW_START, Stats, type Counter, type DmaPort, type MsiSink, type PhysicalMemory, type TraceBus } from '../../sim/index.ts';
import type { ExplainView } from './explain.ts';
import { FaultLog } from './fault-log.ts';
import { Iotlb } from './iotlb.ts';
import { VTD_DEFAULTS, type VtdClock, type VtdOptions } from './options.ts';
import type { RegisterFile } from './register-file.ts';
import { REG } from './regs.ts';
import { ContextResult, EntryKind, TranslationType, WalkResult, type WalkParams, type WalkRecorder } from './walker.ts';

const KIND_NAMES = ['root', 'context', 'pte'] as const;

/** The unit's counters (`Stats`, component = the unit's name), beside the IOTLB's own. */
export type VtdCounters = Readonly<Record<'ctxHit' | 'ctxMiss' | 'reads' | 'faults' | 'recorded' | 'stale' | 'desc' | 'irq' | 'guest', Counter>>;

/**
 * The state of one VT-d unit shared by its concerns: register behaviour (`unit.ts`), queued invalidation and
 * cache invalidation (`invalidation.ts`) and the DMA translation path (`translate.ts`). A plain object with
 * public fields, so the translation hot path reads them without private-field brand checks; only the
 * {@link VtdUnit} that owns it (and the modules above) ever see it.
 */
export class VtdState {
  readonly mem: PhysicalMemory;
  readonly name: string;
  readonly addressWidth: 39 | 48;
  readonly faultRecords: number;
  readonly iotlb: Iotlb;
  readonly clock: VtdClock;
  readonly msi: MsiSink;
  readonly trace: TraceBus | undefined;
  readonly regs: RegisterFile;
  readonly faults: FaultLog;
  readonly params: WalkParams;
  readonly memReadNs: number;
  readonly lookupNs: number;
  readonly qiNs: number;
  readonly priority: number;
  readonly sourceId: number;
  readonly c: VtdCounters;
  /** Emits `walk.read` records (passed to the walker only while the trace is active). */
  readonly traceRec: WalkRecorder;
  /** What `explain` sees of the unit. */
  readonly view: ExplainView;

  /** GSTS.TES. */
  te = false;
  /** The latched root-table pointer (-1: beyond the host address width). */
  root = 0;
  // Context cache: direct-mapped by requester id; an entry is valid when its generation is current.
  readonly ccOn: boolean;
  readonly ccGen: Int32Array;
  readonly ccDid: Uint16Array;
  readonly ccTT: Uint8Array;
  readonly ccLevels: Uint8Array;
  readonly ccFpd: Uint8Array;
  readonly ccPtr: Float64Array;
  gen = 1;
  // The current access: its context, the limit of its address space, the extent and fault of the last page.
  readonly ctx = new ContextResult();
  readonly walk = new WalkResult();
  readonly oCtx = new ContextResult();
  readonly oWalk = new WalkResult();
  limit = 0;
  /** Requester whose cached context `ctx` holds (-1: none); valid while its context-cache entry is. */
  curRid = -1;
  /** `curRid` when its context is multi-level and the stale oracle is off (the fast path's case), else -1. */
  hotRid = -1;
  oracle: boolean;
  /** The last downstream port found to be an identity port onto {@link mem}. */
  memoryPort: DmaPort | null = null;
  /** Its `accessNs`. */
  memoryNs = 0;
  extent = 0;
  reason = 0;

  /** `o` must have passed `checkVtdOptions`; `registers` makes the register file (CAP and ECAP from the configuration). */
  constructor(o: VtdOptions, registers: (addressWidth: 39 | 48, faultRecords: number, params: WalkParams) => RegisterFile) {
    this.mem = o.mem;
    this.clock = o.clock;
    this.msi = o.msi;
    this.trace = o.trace;
    this.name = o.name ?? VTD_DEFAULTS.name;
    this.addressWidth = o.addressWidth ?? VTD_DEFAULTS.addressWidth;
    this.faultRecords = o.faultRecords ?? VTD_DEFAULTS.faultRecords;
    this.memReadNs = o.memReadNs ?? VTD_DEFAULTS.memReadNs;
    this.lookupNs = o.iotlbLookupNs ?? VTD_DEFAULTS.iotlbLookupNs;
    this.qiNs = o.qiDescriptorNs ?? VTD_DEFAULTS.qiDescriptorNs;
    this.priority = o.priority ?? VTD_DEFAULTS.priority;
    this.sourceId = o.sourceId ?? VTD_DEFAULTS.sourceId;
    this.oracle = o.staleOracle ?? VTD_DEFAULTS.staleOracle;
    const stats = o.stats ?? new Stats();
    const ctr = (n: string): Counter => stats.counter(this.name, n);
    this.c = {
      ctxHit: ctr('ctx.hit'), ctxMiss: ctr('ctx.miss'), reads: ctr('walk.reads'), faults: ctr('faults'), recorded: ctr('faults.recorded'),
      stale: ctr('stale'), desc: ctr('qi.descriptors'), irq: ctr('irq'), guest: ctr('guest-errors'),
    };
    this.iotlb = new Iotlb(o.iotlbEntries ?? VTD_DEFAULTS.iotlbEntries, o.iotlbWays ?? VTD_DEFAULTS.iotlbWays, ctr('iotlb.hit'), ctr('iotlb.miss'), ctr('iotlb.evict'));
    this.params = { hawHiMask: (1 << (this.addressWidth - 32)) - 1, sagaw: this.addressWidth === 48 ? 0b110 : 0b010 };
    this.regs = registers(this.addressWidth, this.faultRecords, this.params);
    this.faults = new FaultLog(this.regs, this.faultRecords, (a, d) => raise(this, a, d));
    this.ccOn = o.contextCache ?? VTD_DEFAULTS.contextCache;
    const n = this.ccOn ? 0x1_0000 : 0;
    this.ccGen = new Int32Array(n);
    this.ccDid = new Uint16Array(n);
    this.ccTT = new Uint8Array(n);
    this.ccLevels = new Uint8Array(n);
    this.ccFpd = new Uint8Array(n);
    this.ccPtr = new Float64Array(n);
    this.traceRec = {
      entry: (kind, level, index, addr, w0, w1, w2, w3) => {
        const t = this.trace as TraceBus;
        t.emit(this.clock.now, this.name, 'walk.read', { entry: KIND_NAMES[kind] ?? 'pte', level, index, addr, lo: hex64(w0, w1), hi: kind === EntryKind.PTE ? null : hex64(w2, w3) });
      },
    };
    this.view = {
      mem: this.mem,
      params: this.params,
      root: () => this.root,
      translationEnabled: () => this.te,
      addressWidth: this.addressWidth,
      peekIotlb: (did, iova, need) => {
        const w = this.iotlb.lookup(did, iova, need, false);
        return w < 0 ? -1 : this.iotlb.physOf(w, iova);
      },
    };
  }
}

/** Makes `rid` (-1: none) the requester whose cached context `s.ctx` holds. */
export function setCurrent(s: VtdState, rid: number): void {
  s.curRid = rid;
  s.hotRid = rid >= 0 && s.ctx.tt === TranslationType.MULTI_LEVEL && !s.oracle ? rid : -1;
}

/** A driver misprogramming the unit: counted and traced, never thrown. */
export function guestError(s: VtdState, what: string): void {
  s.c.guest.value++;
  s.trace?.emit(s.clock.now, s.name, 'guest-error', { what });
}

/** Delivers the interrupt whose message address and data live in the registers at these offsets. */
export function raise(s: VtdState, addrReg: number, dataReg: number): void {
  const addr = s.regs.get(addrReg);
  const data = s.regs.get(dataReg);
  if (addr < MSI_WINDOW_START || addr > MSI_WINDOW_LAST) {
    guestError(s, `interrupt message address 0x${addr.toString(16)} is outside the interrupt window: dropped`);
    return;
  }
  s.c.irq.value++;
  s.trace?.emit(s.clock.now, s.name, 'irq', { addr, data, event: addrReg === REG.FEADDR ? 'fault' : 'invalidation-completion' });
  s.msi.msi(s.sourceId, addr, data);
}

export function hex64(lo: number, hi: number): string {
  return `0x${(hi >>> 0).toString(16).padStart(8, '0')}_${(lo >>> 0).toString(16).padStart(8, '0')}`;
}
