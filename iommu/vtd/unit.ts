import {
  DmaStatus,
  FRAME_SHIFT,
  IdentityDmaPort,
  MSI_WINDOW_LAST,
  MSI_WINDOW_START,
  SimInvariantError,
  Stats,
  failDma,
  failDmaWide,
  set64,
  type Counter,
  type DmaPort,
  type DmaResult,
  type MsiSink,
  type PhysicalMemory,
  type TraceBus,
} from '../../sim/index.ts';
import { explainWalk, formatExplain, type ExplainAccess, type ExplainResult, type ExplainView } from './explain.ts';
import { FaultLog } from './fault-log.ts';
import { faultReasonText, isQualifiedFault, FaultReason } from './faults.ts';
import { Iotlb, pageSize } from './iotlb.ts';
import { VTD_DEFAULTS, checkVtdOptions, type VtdClock, type VtdOptions } from './options.ts';
import { executeDescriptor, type QiHost } from './qi.ts';
import { RegisterFile } from './register-file.ts';
import { FRCD_OFFSET, IOTLB_REG_OFFSET, MAMV, REG, fmask, regDef, type RegName } from './regs.ts';
import { ContextResult, EntryKind, TranslationType, WalkResult, readContext, walkSecondLevel, type WalkParams, type WalkRecorder } from './walker.ts';

const GCMD_TE = fmask('GCMD', 'TE');
const GCMD_SRTP = fmask('GCMD', 'SRTP');
const GCMD_QIE = fmask('GCMD', 'QIE');
const GSTS_TES = fmask('GSTS', 'TES');
const GSTS_RTPS = fmask('GSTS', 'RTPS');
const GSTS_QIES = fmask('GSTS', 'QIES');
const FSTS_IQE = fmask('FSTS', 'IQE');
const ICS_IWC = fmask('ICS', 'IWC');
const IECTL_IM = fmask('IECTL', 'IM');
const IECTL_IP = fmask('IECTL', 'IP');
const IQA_QS = fmask('IQA', 'QS');
const CCMD_ICC = fmask('CCMD', 'ICC');
const CCMD_CIRG = fmask('CCMD', 'CIRG');
const CCMD_CAIG = fmask('CCMD', 'CAIG');
const IOTLB_IVT = fmask('IOTLB', 'IVT');
const IOTLB_IIRG = fmask('IOTLB', 'IIRG');
const IOTLB_IAIG = fmask('IOTLB', 'IAIG');
const NO_ROOT = -1;
const FRAME_SIZE = 1 << FRAME_SHIFT;
const FRAME_MASK = FRAME_SIZE - 1;
/** Transfers up to this many bytes PhysicalMemory copies bytewise; the unit copies them itself (see #readSmall). */
const SMALL_COPY = 32;
/** 2^n for the address widths in use. */
const LIMITS: readonly number[] = Array.from({ length: 64 }, (_, n) => 2 ** n);
const KIND_NAMES = ['root', 'context', 'pte'] as const;

/**
 * One Intel VT-d DMA-remapping hardware unit in legacy mode: the register block (an MMIO target), the
 * context cache and the domain-tagged IOTLB, queued invalidation, fault recording, and the translation
 * engine behind {@link VtdDmaPort}s. A kernel driver programs it only through registers and in-memory tables.
 */
export class VtdUnit {
  readonly mem: PhysicalMemory;
  readonly name: string;
  /** Size of the register block in bytes (the MMIO window the machine maps). */
  readonly mmioSize: number;
  readonly addressWidth: 39 | 48;
  readonly faultRecords: number;
  readonly iotlb: Iotlb;

  readonly #clock: VtdClock;
  readonly #msi: MsiSink;
  readonly #trace: TraceBus | undefined;
  readonly #regs: RegisterFile;
  readonly #faults: FaultLog;
  readonly #params: WalkParams;
  readonly #memReadNs: number;
  readonly #lookupNs: number;
  readonly #qiNs: number;
  readonly #priority: number;
  readonly #sourceId: number;
  /** The behaviour of each register instance written (by index into the register file's instances). */
  readonly #onWrite: readonly ((() => void) | undefined)[];
  readonly #c: Readonly<Record<'ctxHit' | 'ctxMiss' | 'reads' | 'faults' | 'recorded' | 'stale' | 'desc' | 'irq' | 'guest', Counter>>;
  readonly #traceRec: WalkRecorder;
  readonly #qiHost: QiHost;
  readonly #qiStep: () => void;
  readonly #view: ExplainView;

  #te = false;
  #root = 0;
  // Context cache: direct-mapped by requester id; an entry is valid when its generation is current.
  readonly #ccOn: boolean;
  readonly #ccGen: Int32Array;
  readonly #ccDid: Uint16Array;
  readonly #ccTT: Uint8Array;
  readonly #ccLevels: Uint8Array;
  readonly #ccFpd: Uint8Array;
  readonly #ccPtr: Float64Array;
  #gen = 1;
  // The current access: its context, the limit of its address space, the extent and fault of the last page.
  readonly #ctx = new ContextResult();
  readonly #walk = new WalkResult();
  readonly #oCtx = new ContextResult();
  readonly #oWalk = new WalkResult();
  #limit = 0;
  /** Requester whose cached context `#ctx` holds (-1: none); valid while its context-cache entry is. */
  #curRid = -1;
  /** `#curRid` when its context is multi-level and the stale oracle is off (the fast path's case), else -1. */
  #hotRid = -1;
  #oracle = false;
  /** The last downstream port found to be an identity port onto {@link mem}. */
  #memoryPort: DmaPort | null = null;
  /** Its `accessNs`. */
  #memoryNs = 0;
  #extent = 0;
  #reason = 0;
  // Queued invalidation.
  #qiOn = false;
  #iqBase = 0;
  #iqSize = 0;
  #iqHead = 0;
  #iqTail = 0;
  #qiPending = false;

  constructor(o: VtdOptions) {
    const bad = checkVtdOptions(o);
    if (bad.length > 0) throw new SimInvariantError(`VT-d unit options: ${bad.join('; ')}`);
    this.mem = o.mem;
    this.#clock = o.clock;
    this.#msi = o.msi;
    this.#trace = o.trace;
    this.name = o.name ?? VTD_DEFAULTS.name;
    this.addressWidth = o.addressWidth ?? VTD_DEFAULTS.addressWidth;
    this.faultRecords = o.faultRecords ?? VTD_DEFAULTS.faultRecords;
    this.#memReadNs = o.memReadNs ?? VTD_DEFAULTS.memReadNs;
    this.#lookupNs = o.iotlbLookupNs ?? VTD_DEFAULTS.iotlbLookupNs;
    this.#qiNs = o.qiDescriptorNs ?? VTD_DEFAULTS.qiDescriptorNs;
    this.#priority = o.priority ?? VTD_DEFAULTS.priority;
    this.#sourceId = o.sourceId ?? VTD_DEFAULTS.sourceId;
    this.#oracle = o.staleOracle ?? VTD_DEFAULTS.staleOracle;
    const stats = o.stats ?? new Stats();
    const ctr = (n: string): Counter => stats.counter(this.name, n);
    this.#c = {
      ctxHit: ctr('ctx.hit'), ctxMiss: ctr('ctx.miss'), reads: ctr('walk.reads'), faults: ctr('faults'), recorded: ctr('faults.recorded'),
      stale: ctr('stale'), desc: ctr('qi.descriptors'), irq: ctr('irq'), guest: ctr('guest-errors'),
    };
    this.iotlb = new Iotlb(o.iotlbEntries ?? VTD_DEFAULTS.iotlbEntries, o.iotlbWays ?? VTD_DEFAULTS.iotlbWays, ctr('iotlb.hit'), ctr('iotlb.miss'), ctr('iotlb.evict'));
    this.#params = { hawHiMask: (1 << (this.addressWidth - 32)) - 1, sagaw: this.addressWidth === 48 ? 0b110 : 0b010 };
    this.#regs = new RegisterFile(this.faultRecords, { CAP: this.#capValue(o.cachingMode ?? false), ECAP: ecapValue() });
    this.mmioSize = this.#regs.size;
    this.#faults = new FaultLog(this.#regs, this.faultRecords, (a, d) => this.#raise(a, d));
    this.#ccOn = o.contextCache ?? VTD_DEFAULTS.contextCache;
    const n = this.#ccOn ? 0x1_0000 : 0;
    this.#ccGen = new Int32Array(n);
    this.#ccDid = new Uint16Array(n);
    this.#ccTT = new Uint8Array(n);
    this.#ccLevels = new Uint8Array(n);
    this.#ccFpd = new Uint8Array(n);
    this.#ccPtr = new Float64Array(n);
    const handlers: Partial<Record<RegName, () => void>> = {
      GCMD: () => this.#onGcmd(),
      CCMD: () => this.#onCcmd(),
      IOTLB: () => this.#onIotlbReg(),
      FSTS: () => this.#onFsts(),
      FECTL: () => this.#faults.onFectlWrite(),
      FRCD_HI: () => this.#faults.updatePpf(),
      IQT: () => this.#onIqt(),
      ICS: () => this.#onIcs(),
      IECTL: () => this.#onIectl(),
    };
    this.#onWrite = this.#regs.instances.map((inst) => handlers[inst.def.name as RegName]);
    this.#traceRec = {
      entry: (kind, level, index, addr, w0, w1, w2, w3) => {
        const t = this.#trace as TraceBus;
        t.emit(this.#clock.now, this.name, 'walk.read', { entry: KIND_NAMES[kind] ?? 'pte', level, index, addr, lo: hex64(w0, w1), hi: kind === EntryKind.PTE ? null : hex64(w2, w3) });
      },
    };
    this.#qiHost = {
      mem: this.mem,
      invalidateContext: (g, did, sid, fm) => this.#invalidateContext(g, did, sid, fm),
      invalidateIotlb: (g, did, addr, am) => this.#invalidateIotlb(g, did, addr, am),
      completion: () => this.#completion(),
      traceDescriptor: (index, type, ok, lo0, lo1, hi0, hi1) => {
        this.#trace?.emit(this.#clock.now, this.name, 'qi.descriptor', { index, type, ok, lo: hex64(lo0, lo1), hi: hex64(hi0, hi1) });
      },
    };
    this.#view = {
      mem: this.mem,
      params: this.#params,
      root: () => this.#root,
      translationEnabled: () => this.#te,
      addressWidth: this.addressWidth,
      peekIotlb: (did, iova, need) => {
        const w = this.iotlb.lookup(did, iova, need, false);
        return w < 0 ? -1 : this.iotlb.physOf(w, iova);
      },
    };
    this.#qiStep = () => {
      this.#qiPending = false;
      if (this.#processOne()) this.#kick();
    };
  }

  /** When true, every IOTLB hit re-walks the tables (for free) and flags translations they no longer give. */
  get staleOracle(): boolean {
    return this.#oracle;
  }

  set staleOracle(on: boolean) {
    this.#oracle = on;
    this.#setCurrent(this.#curRid);
  }

  #capValue(cm: boolean): bigint {
    const F = regDef('CAP').fields;
    let v = 0n;
    const put = (k: string, x: number): void => {
      const fd = F[k];
      if (fd !== undefined) v = set64(v, fd, BigInt(x));
    };
    put('ND', 6);
    put('CM', cm ? 1 : 0);
    put('SAGAW', this.#params.sagaw);
    put('MGAW', this.addressWidth - 1);
    put('FRO', FRCD_OFFSET / 16);
    put('SLLPS', 0b11);
    put('PSI', 1);
    put('NFR', this.faultRecords - 1);
    put('MAMV', MAMV);
    return v;
  }

  // ---------------------------------------------------------------- MMIO

  /** Reads the 32-bit register dword at `offset`; unknown or misaligned offsets read 0 (a guest error). */
  read32(offset: number): number {
    if (!this.#mmioOk(offset, 4, 'read')) return 0;
    return this.#regs.guestRead32(offset);
  }

  /** Writes a 32-bit register dword: masked by the fields' access kinds, then the register's behaviour runs. */
  write32(offset: number, value: number): void {
    if (!this.#mmioOk(offset, 4, 'write')) return;
    this.#regs.guestWrite32(offset, value >>> 0);
    this.#afterWrite(this.#regs.instanceAt(offset));
  }

  /** Reads 64 bits at an 8-aligned `offset` (two dwords, low first). */
  read64(offset: number): bigint {
    if (!this.#mmioOk(offset, 8, 'read')) return 0n;
    return BigInt(this.#readDw(offset)) | (BigInt(this.#readDw(offset + 4)) << 32n);
  }

  /** Writes 64 bits at an 8-aligned `offset`: both dwords, then the behaviour of each register written. */
  write64(offset: number, value: bigint): void {
    if (!this.#mmioOk(offset, 8, 'write')) return;
    const v = BigInt.asUintN(64, value);
    const i0 = this.#regs.instanceAt(offset);
    const i1 = this.#regs.instanceAt(offset + 4);
    if (i0 >= 0) this.#regs.guestWrite32(offset, Number(v & 0xffff_ffffn));
    if (i1 >= 0) this.#regs.guestWrite32(offset + 4, Number(v >> 32n));
    this.#afterWrite(i0);
    if (i1 !== i0) this.#afterWrite(i1);
  }

  /** Size-generic read (4 or 8 bytes); other sizes read 0. */
  read(offset: number, size: number): bigint {
    if (size === 4) return BigInt(this.read32(offset));
    if (size === 8) return this.read64(offset);
    this.#guestError(`read of size ${size} at 0x${hexOff(offset)}`);
    return 0n;
  }

  /** Size-generic write (4 or 8 bytes); other sizes are ignored. */
  write(offset: number, size: number, value: number | bigint): void {
    const v = typeof value === 'bigint' ? value : BigInt.asUintN(64, BigInt(Number.isSafeInteger(value) ? value : 0));
    if (size === 4) this.write32(offset, Number(v & 0xffff_ffffn));
    else if (size === 8) this.write64(offset, v);
    else this.#guestError(`write of size ${size} at 0x${hexOff(offset)}`);
  }

  #readDw(offset: number): number {
    return this.#regs.instanceAt(offset) >= 0 ? this.#regs.guestRead32(offset) : 0;
  }

  #mmioOk(offset: number, size: number, what: string): boolean {
    if (Number.isInteger(offset) && offset >= 0 && offset % size === 0 && offset + size <= this.mmioSize && (size === 8 || this.#regs.instanceAt(offset) >= 0)) {
      return true;
    }
    this.#guestError(`${what}${size * 8} of unknown or misaligned offset 0x${hexOff(offset)}`);
    return false;
  }

  #afterWrite(inst: number): void {
    if (inst < 0) return;
    this.#onWrite[inst]?.();
  }

  #guestError(what: string): void {
    this.#c.guest.value++;
    this.#trace?.emit(this.#clock.now, this.name, 'guest-error', { what });
  }

  #onGcmd(): void {
    const cmd = this.#regs.get(REG.GCMD);
    const changed = cmd ^ this.#regs.get(REG.GSTS);
    if ((changed & GCMD_TE) !== 0) {
      this.#te = (cmd & GCMD_TE) !== 0;
      this.#regs.update(REG.GSTS, GSTS_TES, this.#te ? GSTS_TES : 0);
      if (!this.#te) this.#faults.resetIndex();
      this.#resetCaches();
    }
    if ((cmd & GCMD_SRTP) !== 0) {
      const lo = this.#regs.get(REG.RTADDR) & 0xffff_f000;
      const hi = this.#regs.get(REG.RTADDR + 4);
      // A pointer beyond the host address width can never be read: every walk faults with reason 8.
      this.#root = (hi & ~this.#params.hawHiMask) !== 0 ? NO_ROOT : hi * 0x1_0000_0000 + (lo >>> 0);
      this.#regs.update(REG.GSTS, 0, GSTS_RTPS);
      this.#resetCaches();
    }
    if ((changed & GCMD_QIE) !== 0) {
      if ((cmd & GCMD_QIE) !== 0) {
        const lo = this.#regs.get(REG.IQA);
        this.#iqBase = (this.#regs.get(REG.IQA + 4) & this.#params.hawHiMask) * 0x1_0000_0000 + ((lo & 0xffff_f000) >>> 0);
        this.#iqSize = 2 ** ((lo & IQA_QS) + 8);
        this.#qiOn = true;
        this.#regs.update(REG.GSTS, 0, GSTS_QIES);
        this.#kick();
      } else if (this.#iqHead === this.#iqTail && !this.#qiPending) {
        this.#qiOn = false;
        this.#iqHead = 0;
        this.#regs.set(REG.IQH, 0);
        this.#regs.update(REG.GSTS, GSTS_QIES, 0);
      } else {
        this.#guestError('QIE cleared while descriptors are pending');
      }
    }
  }

  #onCcmd(): void {
    const hi = this.#regs.get(REG.CCMD + 4);
    if ((hi & CCMD_ICC) === 0) return;
    if (this.#qiOn) {
      this.#guestError('register-based context invalidation while queued invalidation is enabled');
      return;
    }
    const lo = this.#regs.get(REG.CCMD);
    const g = (hi & CCMD_CIRG) >>> 29;
    if (g !== 0) this.#invalidateContext(g, lo & 0xffff, lo >>> 16, hi & 3);
    this.#regs.update(REG.CCMD + 4, CCMD_ICC | CCMD_CAIG, (g << 27) & CCMD_CAIG);
  }

  #onIotlbReg(): void {
    const at = REG.IOTLB + 4;
    const hi = this.#regs.get(at);
    if ((hi & IOTLB_IVT) === 0) return;
    if (this.#qiOn) {
      this.#guestError('register-based IOTLB invalidation while queued invalidation is enabled');
      return;
    }
    let g = (hi & IOTLB_IIRG) >>> 28;
    const ivaLo = this.#regs.get(IOTLB_REG_OFFSET);
    const am = ivaLo & 0x3f;
    if (g === 3 && am > MAMV) g = 0;
    if (g !== 0) this.#invalidateIotlb(g, hi & 0xffff, this.#regs.get(IOTLB_REG_OFFSET + 4) * 0x1_0000_0000 + ((ivaLo & 0xffff_f000) >>> 0), am);
    this.#regs.update(at, IOTLB_IVT | IOTLB_IAIG, (g << 25) & IOTLB_IAIG);
  }

  #onFsts(): void {
    this.#faults.onFstsWrite();
    // Linux recovers from IQE by rewriting the bad descriptor and clearing IQE: fetching resumes at IQH.
    if ((this.#regs.get(REG.FSTS) & FSTS_IQE) === 0) this.#kick();
  }

  #onIqt(): void {
    this.#iqTail = (this.#regs.get(REG.IQT) >>> 4) & 0x7fff;
    this.#kick();
  }

  #onIcs(): void {
    if ((this.#regs.get(REG.IECTL) & IECTL_IP) !== 0 && (this.#regs.get(REG.ICS) & ICS_IWC) === 0) this.#regs.update(REG.IECTL, IECTL_IP, 0);
  }

  #onIectl(): void {
    const v = this.#regs.get(REG.IECTL);
    if ((v & IECTL_IP) !== 0 && (v & IECTL_IM) === 0) {
      this.#raise(REG.IEADDR, REG.IEDATA);
      this.#regs.update(REG.IECTL, IECTL_IP, 0);
    }
  }

  #raise(addrReg: number, dataReg: number): void {
    const addr = this.#regs.get(addrReg);
    const data = this.#regs.get(dataReg);
    if (addr < MSI_WINDOW_START || addr > MSI_WINDOW_LAST) {
      this.#guestError(`interrupt message address 0x${addr.toString(16)} is outside the interrupt window: dropped`);
      return;
    }
    this.#c.irq.value++;
    this.#trace?.emit(this.#clock.now, this.name, 'irq', { addr, data, event: addrReg === REG.FEADDR ? 'fault' : 'invalidation-completion' });
    this.#msi.msi(this.#sourceId, addr, data);
  }

  #completion(): void {
    if ((this.#regs.get(REG.ICS) & ICS_IWC) !== 0) return;
    this.#regs.update(REG.ICS, 0, ICS_IWC);
    this.#regs.update(REG.IECTL, 0, IECTL_IP);
    if ((this.#regs.get(REG.IECTL) & IECTL_IM) === 0) {
      this.#raise(REG.IEADDR, REG.IEDATA);
      this.#regs.update(REG.IECTL, IECTL_IP, 0);
    }
  }

  // ---------------------------------------------------------------- queued invalidation

  #kick(): void {
    if (!this.#qiOn || this.#qiPending || (this.#regs.get(REG.FSTS) & FSTS_IQE) !== 0 || this.#iqHead === this.#iqTail) return;
    if (this.#iqTail >= this.#iqSize) {
      this.#guestError(`IQT ${this.#iqTail} is beyond the queue of ${this.#iqSize} descriptors`);
      this.#faults.queueError();
      return;
    }
    if (this.#qiNs === 0) {
      while (this.#processOne());
    } else {
      this.#qiPending = true;
      this.#clock.schedule(this.#qiNs, this.#qiStep, this.#priority);
    }
  }

  /** Processes the descriptor at IQH; returns whether another may follow. */
  #processOne(): boolean {
    if (!this.#qiOn || (this.#regs.get(REG.FSTS) & FSTS_IQE) !== 0 || this.#iqHead === this.#iqTail) return false;
    const a = this.#iqBase + this.#iqHead * 16;
    let ok = a + 16 <= this.mem.size;
    let lo0 = 0;
    let lo1 = 0;
    let hi0 = 0;
    let hi1 = 0;
    if (ok) {
      // A descriptor is 16-byte aligned, so inside one frame: its four dwords straight from the frame's bytes.
      const o = a & FRAME_MASK;
      const f = this.mem.peekFrame((a - o) / FRAME_SIZE);
      if (f !== undefined) {
        lo0 = dwordAt(f, o);
        lo1 = dwordAt(f, o + 4);
        hi0 = dwordAt(f, o + 8);
        hi1 = dwordAt(f, o + 12);
      }
      ok = executeDescriptor(this.#qiHost, lo0, lo1, hi0, hi1);
    }
    this.#c.desc.value++;
    if (this.#trace?.active === true) this.#qiHost.traceDescriptor(this.#iqHead, lo0 & 0xf, ok, lo0, lo1, hi0, hi1);
    if (!ok) {
      // The queue stops at the bad descriptor: IQH keeps pointing at it.
      this.#faults.queueError();
      return false;
    }
    this.#iqHead = (this.#iqHead + 1) % this.#iqSize;
    this.#regs.set(REG.IQH, this.#iqHead << 4);
    return this.#iqHead !== this.#iqTail;
  }

  // ---------------------------------------------------------------- invalidation

  #resetCaches(): void {
    this.iotlb.invalidateAll();
    this.#invalidateContext(1, 0, 0, 0);
    this.#setCurrent(-1);
  }

  #invalidateContext(g: number, did: number, sid: number, fm: number): void {
    if (!this.#ccOn) return;
    if (g === 1) {
      this.#gen++;
      if (this.#gen === 0x7fff_ffff) {
        this.#ccGen.fill(0);
        this.#gen = 1;
      }
    } else if (g === 2) {
      for (let r = 0; r < 0x1_0000; r++) if (this.#ccGen[r] === this.#gen && this.#ccDid[r] === did) this.#ccGen[r] = 0;
    } else {
      // The function mask drops low devfn bits from the comparison: 1 bit 2, 2 bits 2:1, 3 bits 2:0.
      const ignore = fm === 0 ? 0 : fm === 1 ? 4 : fm === 2 ? 6 : 7;
      const base = sid & ~ignore & 0xffff;
      for (let i = 0; i <= ignore; i++) if ((i & ~ignore) === 0) this.#ccGen[base | i] = 0;
    }
  }

  #invalidateIotlb(g: number, did: number, addr: number, am: number): void {
    if (g === 1) this.iotlb.invalidateAll();
    else if (g === 2) this.iotlb.invalidateDomain(did);
    else this.iotlb.invalidatePages(did, addr, am);
  }

  // ---------------------------------------------------------------- translation

  /** Whether GSTS.TES is set. */
  get translationEnabled(): boolean {
    return this.#te;
  }

  /**
   * One DMA access through the unit to `down` (the translating port's work). Pass-through when translation is
   * off or the context says TT = 2; else page by page, IOTLB first, then a walk. Faults are logged and
   * returned in `res` with the bytes moved before the failing page.
   */
  access(down: DmaPort, rid: number, addr: number, buf: Uint8Array, off: number, len: number, res: DmaResult, write: boolean): void {
    // The common case in the fewest steps: a small transfer inside one 4 KiB page, by the requester whose
    // multi-level context is loaded (#hotRid: TE on, oracle off) and still cached, hitting a 4 KiB IOTLB
    // entry, to memory through an identity port. The general path would give it the same result (argument
    // checks, counters, cost, `res`); this one skips its layers and is small enough for the engine to inline
    // whole, lookup and copy included.
    if (
      rid === this.#hotRid && this.#ccGen[rid] === this.#gen && down === this.#memoryPort &&
      len > 0 && len <= SMALL_COPY && (len | 0) === len && off >= 0 && off + len <= buf.length &&
      Number.isSafeInteger(addr) && addr >= 0 && addr < this.#limit && (addr & FRAME_MASK) + len <= FRAME_SIZE
    ) {
      const tlb = this.iotlb;
      const w = tlb.find4k(this.#ctx.did, addr, write ? 2 : 1);
      // The frame number straight from the entry: no float arithmetic on the way to the bytes. A page past
      // the end of memory is left to the identity port, on the general path.
      const fn = w < 0 ? -1 : tlb.frameOf(w);
      if (fn >= 0 && fn < this.mem.frameCount) {
        tlb.touch(w);
        this.#c.ctxHit.value++;
        res.costNs += this.#lookupNs;
        if (write) this.#writeSmall(fn, addr & FRAME_MASK, buf, off, len, res);
        else this.#readSmall(fn, addr & FRAME_MASK, buf, off, len, res);
        return;
      }
    }
    this.#accessGeneral(down, rid, addr, buf, off, len, res, write);
  }

  /** {@link access} for every case (the fast path above is one of them). */
  #accessGeneral(down: DmaPort, rid: number, addr: number, buf: Uint8Array, off: number, len: number, res: DmaResult, write: boolean): void {
    if (!(Number.isSafeInteger(addr) && addr >= 0 && Number.isSafeInteger(len) && len >= 0 && off >= 0 && off + len <= buf.length)) {
      throw new SimInvariantError(`DMA through ${this.name}: bad arguments addr=${addr} off=${off} len=${len} buffer=${buf.length}`);
    }
    if (!this.#te) {
      if (write) down.write(rid, addr, buf, off, len, res);
      else down.read(rid, addr, buf, off, len, res);
      return;
    }
    rid &= 0xffff;
    // Fast path: the same requester as the previous access, its context-cache entry still valid.
    if (rid === this.#curRid && this.#ccGen[rid] === this.#gen) this.#c.ctxHit.value++;
    else if (!this.#context(rid, res)) {
      this.#fault(rid, addr >>> 0, Math.floor(addr / 0x1_0000_0000), addr, write, this.#ctx.fault, this.#ctx.fpd);
      failDma(res, DmaStatus.FAULT, addr, this.#ctx.fault, 0);
      return;
    }
    if (this.#ctx.tt === TranslationType.PASS_THROUGH) {
      if (write) down.write(rid, addr, buf, off, len, res);
      else down.read(rid, addr, buf, off, len, res);
      return;
    }
    const need = write ? 2 : 1;
    // Most DMA stays inside one 4 KiB page, hence inside the page that maps it: one translation, one transfer.
    if (len > 0 && (addr & 0xfff) + len <= 0x1000) {
      const pa = this.#translate(rid, addr, need, write, res);
      if (pa < 0) failDma(res, DmaStatus.FAULT, addr, this.#reason, 0);
      else if (len <= SMALL_COPY && pa + len <= this.mem.size && this.#isMemoryPort(down)) {
        if (write) this.#writeSmall(Math.floor(pa / FRAME_SIZE), pa & FRAME_MASK, buf, off, len, res);
        else this.#readSmall(Math.floor(pa / FRAME_SIZE), pa & FRAME_MASK, buf, off, len, res);
      }
      else this.#transfer(down, rid, addr, pa, buf, off, len, 0, res, write);
      return;
    }
    let done = 0;
    while (done < len) {
      const iova = addr + done;
      const pa = this.#translate(rid, iova, need, write, res);
      if (pa < 0) {
        failDma(res, DmaStatus.FAULT, iova, this.#reason, done);
        return;
      }
      const n = Math.min(len - done, this.#extent);
      if (!this.#transfer(down, rid, iova, pa, buf, off + done, n, done, res, write)) return;
      done += n;
    }
    res.status = DmaStatus.OK;
    res.bytesDone = len;
    res.faultReason = 0;
  }

  /** Whether `down` is an identity port onto this unit's memory (the machine's usual downstream). */
  #isMemoryPort(down: DmaPort): boolean {
    if (down === this.#memoryPort) return true;
    if (!(down instanceof IdentityDmaPort && down.memory === this.mem)) return false;
    this.#memoryPort = down;
    this.#memoryNs = down.accessNs;
    return true;
  }

  /**
   * What the identity port onto memory ({@link #memoryPort}) does for a read of `len` (at most
   * {@link SMALL_COPY}) bytes at offset `o` of frame `fn`, inside the frame, without its layers: its cost, the
   * bytes copied one by one as PhysicalMemory copies them, success.
   */
  #readSmall(fn: number, o: number, buf: Uint8Array, off: number, len: number, res: DmaResult): void {
    res.costNs += this.#memoryNs;
    const f = this.mem.peekFrame(fn);
    // A frame never written reads as zeros (a loop: fill() costs more than a few bytes).
    for (let i = 0; i < len; i++) buf[off + i] = f === undefined ? 0 : (f[o + i] as number);
    res.status = DmaStatus.OK;
    res.bytesDone = len;
    res.faultReason = 0;
  }

  /** The write counterpart of {@link #readSmall}. */
  #writeSmall(fn: number, o: number, buf: Uint8Array, off: number, len: number, res: DmaResult): void {
    res.costNs += this.#memoryNs;
    const f = this.mem.frame(fn);
    // As PhysicalMemory.write: a whole source buffer goes by set(), which is memmove-safe should it alias the frame.
    if (len === buf.length) f.set(buf, o);
    else for (let i = 0; i < len; i++) f[o + i] = buf[off + i] as number;
    res.status = DmaStatus.OK;
    res.bytesDone = len;
    res.faultReason = 0;
  }

  /**
   * Moves `n` bytes of a translated page (IOVA `iova`, physical `pa`, after `done` bytes of the access) through
   * `down`. On a refusal `res` reports the IOVA of the first byte the completer did not take; returns whether
   * it took them all.
   */
  #transfer(down: DmaPort, rid: number, iova: number, pa: number, buf: Uint8Array, off: number, n: number, done: number, res: DmaResult, write: boolean): boolean {
    if (write) down.write(rid, pa, buf, off, n, res);
    else down.read(rid, pa, buf, off, n, res);
    if (res.status !== DmaStatus.OK) {
      const moved = res.bytesDone;
      res.bytesDone = done + moved;
      res.faultAddr = iova + moved;
      res.faultAddrWide = BigInt(iova + moved);
      return false;
    }
    res.bytesDone = done + n;
    res.faultReason = 0;
    return true;
  }

  /** A DMA at a bus address that may not fit a `number`: at or past 2^53 it faults with reason 4 (exact address). */
  accessWide(down: DmaPort, rid: number, addr: bigint, buf: Uint8Array, off: number, len: number, res: DmaResult, write: boolean): void {
    if (addr >= 0n && addr <= BigInt(Number.MAX_SAFE_INTEGER)) {
      this.access(down, rid, Number(addr), buf, off, len, res, write);
      return;
    }
    const a = BigInt.asUintN(64, addr);
    if (!this.#te) {
      if (write) down.writeWide(rid, a, buf, off, len, res);
      else down.readWide(rid, a, buf, off, len, res);
      return;
    }
    rid &= 0xffff;
    const lo = Number(a & 0xffff_ffffn);
    const hi = Number(a >> 32n);
    let reason: number = FaultReason.ADDR_BEYOND_MGAW;
    let fpd = false;
    if (!this.#context(rid, res)) {
      reason = this.#ctx.fault;
      fpd = this.#ctx.fpd;
    } else if (this.#ctx.tt === TranslationType.PASS_THROUGH) {
      if (write) down.writeWide(rid, a, buf, off, len, res);
      else down.readWide(rid, a, buf, off, len, res);
      return;
    } else {
      fpd = this.#ctx.fpd;
    }
    this.#fault(rid, lo, hi, a, write, reason, fpd);
    failDmaWide(res, DmaStatus.FAULT, a, reason);
  }

  /** Loads `rid`'s context into `#ctx` (context cache, else root and context entries from memory). */
  #context(rid: number, res: DmaResult): boolean {
    const c = this.#ctx;
    if (this.#ccOn && this.#ccGen[rid] === this.#gen) {
      this.#c.ctxHit.value++;
      // The context already loaded for the previous access: nothing to copy.
      if (rid === this.#curRid) return true;
      c.did = this.#ccDid[rid] as number;
      c.tt = this.#ccTT[rid] as number;
      c.levels = this.#ccLevels[rid] as number;
      c.agaw = 12 + 9 * c.levels;
      c.fpd = this.#ccFpd[rid] === 1;
      c.ptr = this.#ccPtr[rid] as number;
    } else {
      this.#c.ctxMiss.value++;
      this.#setCurrent(-1);
      const ok = readContext(this.mem, this.#params, this.#root, rid, c, this.#trace?.active === true ? this.#traceRec : null);
      res.costNs += c.reads * this.#memReadNs;
      this.#c.reads.value += c.reads;
      if (!ok) return false;
      if (this.#ccOn) {
        this.#ccGen[rid] = this.#gen;
        this.#ccDid[rid] = c.did;
        this.#ccTT[rid] = c.tt;
        this.#ccLevels[rid] = c.levels;
        this.#ccFpd[rid] = c.fpd ? 1 : 0;
        this.#ccPtr[rid] = c.ptr;
      }
    }
    this.#limit = c.agaw < this.addressWidth ? LIMITS[c.agaw] ?? 0 : LIMITS[this.addressWidth] ?? 0;
    this.#setCurrent(this.#ccOn ? rid : -1);
    return true;
  }

  /** Makes `rid` (-1: none) the requester whose cached context `#ctx` holds. */
  #setCurrent(rid: number): void {
    this.#curRid = rid;
    this.#hotRid = rid >= 0 && this.#ctx.tt === TranslationType.MULTI_LEVEL && !this.#oracle ? rid : -1;
  }

  /** Physical address of `iova` in the current context, or -1 after logging the fault (`#reason`). */
  #translate(rid: number, iova: number, need: number, write: boolean, res: DmaResult): number {
    const c = this.#ctx;
    if (iova >= this.#limit) {
      this.#fault(rid, iova >>> 0, Math.floor(iova / 0x1_0000_0000), iova, write, FaultReason.ADDR_BEYOND_MGAW, c.fpd);
      return -1;
    }
    const tlb = this.iotlb;
    if (tlb.entries > 0) {
      res.costNs += this.#lookupNs;
      const w = tlb.lookup(c.did, iova, need, true);
      if (w >= 0) {
        const pa = tlb.physOf(w, iova);
        if (this.#oracle) this.#checkStale(rid, iova, need, pa);
        this.#extent = tlb.extentOf(w, iova);
        return pa;
      }
    }
    const wr = this.#walk;
    const ok = walkSecondLevel(this.mem, this.#params, c.ptr, c.levels, iova, need, wr, this.#trace?.active === true ? this.#traceRec : null);
    res.costNs += wr.reads * this.#memReadNs;
    this.#c.reads.value += wr.reads;
    if (!ok) {
      this.#fault(rid, iova >>> 0, Math.floor(iova / 0x1_0000_0000), iova, write, wr.fault, c.fpd);
      return -1;
    }
    tlb.fill(c.did, wr.iovaBase, wr.pageBase, wr.level, wr.perm, wr.leafAddr);
    this.#extent = wr.iovaBase + pageSize(wr.level) - iova;
    return wr.pageBase + (iova - wr.iovaBase);
  }

  /** The oracle: what the tables say now for `iova`, against the IOTLB's `cached` answer. Free in virtual time. */
  #checkStale(rid: number, iova: number, need: number, cached: number): void {
    const c = this.#oCtx;
    const w = this.#oWalk;
    let now = -1;
    let why = '';
    if (!readContext(this.mem, this.#params, this.#root, rid, c, null)) why = faultReasonText(c.fault);
    else if (c.tt === TranslationType.PASS_THROUGH) now = iova;
    else if (iova >= 2 ** Math.min(c.agaw, this.addressWidth)) why = faultReasonText(FaultReason.ADDR_BEYOND_MGAW);
    else if (!walkSecondLevel(this.mem, this.#params, c.ptr, c.levels, iova, need, w, null)) why = faultReasonText(w.fault);
    else now = w.pageBase + (iova - w.iovaBase);
    if (now === cached) return;
    this.#c.stale.value++;
    this.#trace?.emit(this.#clock.now, this.name, 'stale', { rid, iova, cached, tables: now >= 0 ? now : why });
  }

  #fault(rid: number, lo: number, hi: number, addr: number | bigint, write: boolean, reason: number, fpd: boolean): void {
    this.#reason = reason;
    this.#c.faults.value++;
    const suppressed = fpd && isQualifiedFault(reason);
    const recorded = !suppressed && this.#faults.record(rid, lo, hi, reason, write);
    if (recorded) this.#c.recorded.value++;
    const t = this.#trace;
    if (t?.active === true) {
      const e = this.explain(rid, typeof addr === 'bigint' ? addr : BigInt(addr), write ? 'write' : 'read');
      t.emit(this.#clock.now, this.name, 'fault', {
        rid, iova: typeof addr === 'bigint' ? addr : BigInt(addr), reason, text: faultReasonText(reason), write, recorded, suppressed, walk: formatExplain(e).split('\n'),
      });
    }
  }

  // ---------------------------------------------------------------- inspection

  /** The requester ids whose context is cached (tests, teaching views). */
  get contextCacheSize(): number {
    let n = 0;
    for (let r = 0; r < this.#ccGen.length; r++) if (this.#ccGen[r] === this.#gen) n++;
    return n;
  }

  /** Descriptor index hardware fetches next (IQH.QH). */
  get queueHead(): number {
    return this.#iqHead;
  }

  /** Whether queue processing is scheduled but not yet run. */
  get queueBusy(): boolean {
    return this.#qiPending;
  }

  /**
   * The walk for `rid` and `iova` as the tables in memory give it now, step by step, with the IOTLB's view
   * beside it. No side effects: no IOTLB or context-cache fill, no fault record, no counter, no trace.
   */
  explain(rid: number, iova: number | bigint, access: ExplainAccess = 'read'): ExplainResult {
    return explainWalk(this.#view, rid & 0xffff, typeof iova === 'bigint' ? BigInt.asUintN(64, iova) : BigInt(Number.isSafeInteger(iova) && iova >= 0 ? iova : 0), access);
  }

}

function ecapValue(): bigint {
  const F = regDef('ECAP').fields;
  let v = 0n;
  for (const [k, x] of [['QI', 1], ['PT', 1], ['SC', 1], ['IRO', IOTLB_REG_OFFSET / 16]] as const) {
    const fd = F[k];
    if (fd !== undefined) v = set64(v, fd, BigInt(x));
  }
  return v;
}

/** The little-endian dword at byte `o` of frame `f`, as PhysicalMemory.read32 reads it. */
function dwordAt(f: Uint8Array, o: number): number {
  return ((f[o] as number) | ((f[o + 1] as number) << 8) | ((f[o + 2] as number) << 16) | ((f[o + 3] as number) << 24)) >>> 0;
}

function hex64(lo: number, hi: number): string {
  return `0x${(hi >>> 0).toString(16).padStart(8, '0')}_${(lo >>> 0).toString(16).padStart(8, '0')}`;
}

function hexOff(offset: number): string {
  return Number.isFinite(offset) ? Math.trunc(offset).toString(16) : String(offset);
}
