import { SimInvariantError, set64, type DmaPort, type DmaResult, type PhysicalMemory } from '../../sim/index.ts';
import type { ExplainAccess, ExplainResult } from './explain.ts';
import type { Iotlb } from './iotlb.ts';
import { InvalidationQueue, invalidateContext, invalidateIotlb, resetCaches } from './invalidation.ts';
import { checkVtdOptions, type VtdOptions } from './options.ts';
import { RegisterFile } from './register-file.ts';
import { FRCD_OFFSET, IOTLB_REG_OFFSET, MAMV, REG, fmask, regDef, type RegName } from './regs.ts';
import { VtdState, guestError, raise, setCurrent } from './state.ts';
import { accessDma, accessDmaWide, explainTranslation } from './translate.ts';
import type { WalkParams } from './walker.ts';

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

/**
 * One Intel VT-d DMA-remapping hardware unit in legacy mode: the register block (an MMIO target), the
 * context cache and the domain-tagged IOTLB, queued invalidation, fault recording, and the translation
 * engine behind {@link VtdDmaPort}s. A kernel driver programs it only through registers and in-memory tables.
 *
 * This file holds the register behaviour; the state the concerns share is a {@link VtdState}, queued and
 * cache invalidation are in `invalidation.ts`, the DMA translation path in `translate.ts`.
 */
export class VtdUnit {
  readonly mem: PhysicalMemory;
  readonly name: string;
  /** Size of the register block in bytes (the MMIO window the machine maps). */
  readonly mmioSize: number;
  readonly addressWidth: 39 | 48;
  readonly faultRecords: number;
  readonly iotlb: Iotlb;

  readonly #s: VtdState;
  readonly #regs: RegisterFile;
  readonly #q: InvalidationQueue;
  /** The behaviour of each register instance written (by index into the register file's instances). */
  readonly #onWrite: readonly ((() => void) | undefined)[];

  constructor(o: VtdOptions) {
    const bad = checkVtdOptions(o);
    if (bad.length > 0) throw new SimInvariantError(`VT-d unit options: ${bad.join('; ')}`);
    const s = new VtdState(o, (aw, nfr, params) => new RegisterFile(nfr, { CAP: capValue(o.cachingMode ?? false, params, aw, nfr), ECAP: ecapValue() }));
    this.#s = s;
    this.#regs = s.regs;
    this.#q = new InvalidationQueue(s);
    this.mem = s.mem;
    this.name = s.name;
    this.addressWidth = s.addressWidth;
    this.faultRecords = s.faultRecords;
    this.iotlb = s.iotlb;
    this.mmioSize = s.regs.size;
    const handlers: Partial<Record<RegName, () => void>> = {
      GCMD: () => this.#onGcmd(),
      CCMD: () => this.#onCcmd(),
      IOTLB: () => this.#onIotlbReg(),
      FSTS: () => this.#onFsts(),
      FECTL: () => s.faults.onFectlWrite(),
      FRCD_HI: () => s.faults.updatePpf(),
      IQT: () => this.#onIqt(),
      ICS: () => this.#onIcs(),
      IECTL: () => this.#onIectl(),
    };
    this.#onWrite = s.regs.instances.map((inst) => handlers[inst.def.name as RegName]);
  }

  /** When true, every IOTLB hit re-walks the tables (for free) and flags translations they no longer give. */
  get staleOracle(): boolean {
    return this.#s.oracle;
  }

  set staleOracle(on: boolean) {
    this.#s.oracle = on;
    setCurrent(this.#s, this.#s.curRid);
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
    guestError(this.#s, `read of size ${size} at 0x${hexOff(offset)}`);
    return 0n;
  }

  /** Size-generic write (4 or 8 bytes); other sizes are ignored. */
  write(offset: number, size: number, value: number | bigint): void {
    const v = typeof value === 'bigint' ? value : BigInt.asUintN(64, BigInt(Number.isSafeInteger(value) ? value : 0));
    if (size === 4) this.write32(offset, Number(v & 0xffff_ffffn));
    else if (size === 8) this.write64(offset, v);
    else guestError(this.#s, `write of size ${size} at 0x${hexOff(offset)}`);
  }

  #readDw(offset: number): number {
    return this.#regs.instanceAt(offset) >= 0 ? this.#regs.guestRead32(offset) : 0;
  }

  #mmioOk(offset: number, size: number, what: string): boolean {
    if (Number.isInteger(offset) && offset >= 0 && offset % size === 0 && offset + size <= this.mmioSize && (size === 8 || this.#regs.instanceAt(offset) >= 0)) {
      return true;
    }
    guestError(this.#s, `${what}${size * 8} of unknown or misaligned offset 0x${hexOff(offset)}`);
    return false;
  }

  #afterWrite(inst: number): void {
    if (inst < 0) return;
    this.#onWrite[inst]?.();
  }

  #onGcmd(): void {
    const cmd = this.#regs.get(REG.GCMD);
    const changed = cmd ^ this.#regs.get(REG.GSTS);
    if ((changed & GCMD_TE) !== 0) {
      this.#s.te = (cmd & GCMD_TE) !== 0;
      this.#regs.update(REG.GSTS, GSTS_TES, this.#s.te ? GSTS_TES : 0);
      if (!this.#s.te) this.#s.faults.resetIndex();
      resetCaches(this.#s);
    }
    if ((cmd & GCMD_SRTP) !== 0) {
      const lo = this.#regs.get(REG.RTADDR) & 0xffff_f000;
      const hi = this.#regs.get(REG.RTADDR + 4);
      // A pointer beyond the host address width can never be read: every walk faults with reason 8.
      this.#s.root = (hi & ~this.#s.params.hawHiMask) !== 0 ? NO_ROOT : hi * 0x1_0000_0000 + (lo >>> 0);
      this.#regs.update(REG.GSTS, 0, GSTS_RTPS);
      resetCaches(this.#s);
    }
    if ((changed & GCMD_QIE) !== 0) {
      if ((cmd & GCMD_QIE) !== 0) {
        const lo = this.#regs.get(REG.IQA);
        this.#q.enable((this.#regs.get(REG.IQA + 4) & this.#s.params.hawHiMask) * 0x1_0000_0000 + ((lo & 0xffff_f000) >>> 0), 2 ** ((lo & IQA_QS) + 8));
        this.#regs.update(REG.GSTS, 0, GSTS_QIES);
        this.#q.kick();
      } else if (this.#q.idle) {
        this.#q.disable();
        this.#regs.update(REG.GSTS, GSTS_QIES, 0);
      } else {
        guestError(this.#s, 'QIE cleared while descriptors are pending');
      }
    }
  }

  #onCcmd(): void {
    const hi = this.#regs.get(REG.CCMD + 4);
    if ((hi & CCMD_ICC) === 0) return;
    if (this.#q.on) {
      guestError(this.#s, 'register-based context invalidation while queued invalidation is enabled');
      return;
    }
    const lo = this.#regs.get(REG.CCMD);
    const g = (hi & CCMD_CIRG) >>> 29;
    if (g !== 0) invalidateContext(this.#s, g, lo & 0xffff, lo >>> 16, hi & 3);
    this.#regs.update(REG.CCMD + 4, CCMD_ICC | CCMD_CAIG, (g << 27) & CCMD_CAIG);
  }

  #onIotlbReg(): void {
    const at = REG.IOTLB + 4;
    const hi = this.#regs.get(at);
    if ((hi & IOTLB_IVT) === 0) return;
    if (this.#q.on) {
      guestError(this.#s, 'register-based IOTLB invalidation while queued invalidation is enabled');
      return;
    }
    let g = (hi & IOTLB_IIRG) >>> 28;
    const ivaLo = this.#regs.get(IOTLB_REG_OFFSET);
    const am = ivaLo & 0x3f;
    if (g === 3 && am > MAMV) g = 0;
    if (g !== 0) invalidateIotlb(this.#s, g, hi & 0xffff, this.#regs.get(IOTLB_REG_OFFSET + 4) * 0x1_0000_0000 + ((ivaLo & 0xffff_f000) >>> 0), am);
    this.#regs.update(at, IOTLB_IVT | IOTLB_IAIG, (g << 25) & IOTLB_IAIG);
  }

  #onFsts(): void {
    this.#s.faults.onFstsWrite();
    // Linux recovers from IQE by rewriting the bad descriptor and clearing IQE: fetching resumes at IQH.
    if ((this.#regs.get(REG.FSTS) & FSTS_IQE) === 0) this.#q.kick();
  }

  #onIqt(): void {
    this.#q.setTail((this.#regs.get(REG.IQT) >>> 4) & 0x7fff);
  }

  #onIcs(): void {
    if ((this.#regs.get(REG.IECTL) & IECTL_IP) !== 0 && (this.#regs.get(REG.ICS) & ICS_IWC) === 0) this.#regs.update(REG.IECTL, IECTL_IP, 0);
  }

  #onIectl(): void {
    const v = this.#regs.get(REG.IECTL);
    if ((v & IECTL_IP) !== 0 && (v & IECTL_IM) === 0) {
      raise(this.#s, REG.IEADDR, REG.IEDATA);
      this.#regs.update(REG.IECTL, IECTL_IP, 0);
    }
  }

  // ---------------------------------------------------------------- translation (translate.ts)

  /** Whether GSTS.TES is set. */
  get translationEnabled(): boolean {
    return this.#s.te;
  }

  /**
   * One DMA access through the unit to `down` (the translating port's work). Pass-through when translation is
   * off or the context says TT = 2; else page by page, IOTLB first, then a walk. Faults are logged and
   * returned in `res` with the bytes moved before the failing page.
   */
  access(down: DmaPort, rid: number, addr: number, buf: Uint8Array, off: number, len: number, res: DmaResult, write: boolean): void {
    accessDma(this.#s, down, rid, addr, buf, off, len, res, write);
  }

  /** A DMA at a bus address that may not fit a `number`: at or past 2^53 it faults with reason 4 (exact address). */
  accessWide(down: DmaPort, rid: number, addr: bigint, buf: Uint8Array, off: number, len: number, res: DmaResult, write: boolean): void {
    accessDmaWide(this.#s, down, rid, addr, buf, off, len, res, write);
  }

  // ---------------------------------------------------------------- inspection

  /** The requester ids whose context is cached (tests, teaching views). */
  get contextCacheSize(): number {
    const s = this.#s;
    let n = 0;
    for (let r = 0; r < s.ccGen.length; r++) if (s.ccGen[r] === s.gen) n++;
    return n;
  }

  /** Descriptor index hardware fetches next (IQH.QH). */
  get queueHead(): number {
    return this.#q.head;
  }

  /** Whether queue processing is scheduled but not yet run. */
  get queueBusy(): boolean {
    return this.#q.pending;
  }

  /**
   * A timing oracle for a driver polling a wait descriptor (not a register: dmasim's shortcut, which changes
   * nothing the driver observes): the virtual time by which the descriptor at ring index `index` will have
   * been processed if nothing stops the queue; -1 when it is not between IQH and IQT, `Infinity` when the
   * queue is not running.
   */
  qiDueTime(index: number): number {
    return this.#q.dueTime(index);
  }

  /**
   * The polling driver's promise that it will not look at the unit, or at the memory the queue writes,
   * before the clock reaches `until` (other than from events): the queue may then process descriptors due
   * by `until` in one event instead of one each, with the same virtual times (see `InvalidationQueue`).
   */
  qiRunAhead(until: number): void {
    this.#q.runAhead(until);
  }

  /**
   * The walk for `rid` and `iova` as the tables in memory give it now, step by step, with the IOTLB's view
   * beside it. No side effects: no IOTLB or context-cache fill, no fault record, no counter, no trace.
   */
  explain(rid: number, iova: number | bigint, access: ExplainAccess = 'read'): ExplainResult {
    return explainTranslation(this.#s, rid, iova, access);
  }
}

function capValue(cm: boolean, params: WalkParams, addressWidth: number, faultRecords: number): bigint {
  const F = regDef('CAP').fields;
  let v = 0n;
  const put = (k: string, x: number): void => {
    const fd = F[k];
    if (fd !== undefined) v = set64(v, fd, BigInt(x));
  };
  put('ND', 6);
  put('CM', cm ? 1 : 0);
  put('SAGAW', params.sagaw);
  put('MGAW', addressWidth - 1);
  put('FRO', FRCD_OFFSET / 16);
  put('SLLPS', 0b11);
  put('PSI', 1);
  put('NFR', faultRecords - 1);
  put('MAMV', MAMV);
  return v;
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

function hexOff(offset: number): string {
  return Number.isFinite(offset) ? Math.trunc(offset).toString(16) : String(offset);
}
