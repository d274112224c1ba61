import { FRAME_SIZE, SimInvariantError, type PhysicalMemory, type SimProcess, type Simulator } from '../../sim/index.ts';
import { REG, fmask, type RegName, type VtdUnit } from '../../iommu/index.ts';
import type { Kernel } from '../kernel.ts';
import { DmarFault, type DmarRegAccess } from './dmar-fault.ts';
import { IRQ_HANDLED } from '../irq.ts';

/**
 * The hardware side of Linux's intel-iommu driver (`drivers/iommu/intel/{iommu,dmar,qi}.c`) for one DMAR
 * unit in legacy mode: it reads CAP/ECAP, owns the root and context tables in physical memory, enables
 * queued invalidation and translation through the unit's registers (MMIO at the unit's base), allocates
 * domain ids, writes and clears context entries with the invalidations Linux issues, and submits
 * invalidation descriptors, waiting for each batch's wait descriptor to write its status word before it
 * returns (`qi_submit_sync`). Everything goes through registers and memory: no shortcut into the model.
 */

/** Invalidation-queue entries (Linux `QI_LENGTH`). */
const QI_LENGTH = 256;
/** A busy-wait step while polling the wait descriptor's status word (a `cpu_relax` loop iteration), in ns. */
export const QI_POLL_NS = 50;
/** Poll steps before the driver declares the invalidation queue hung (a simulator bug, never guest-reachable). */
const QI_MAX_POLLS = 10_000_000;

/** Context-entry translation types (VT-d `TT`). */
export const CONTEXT_TT = { MULTI_LEVEL: 0, PASS_THROUGH: 2 } as const;

const GSTS_TES = fmask('GSTS', 'TES');
const GSTS_QIES = fmask('GSTS', 'QIES');
const GSTS_RTPS = fmask('GSTS', 'RTPS');
const FSTS_IQE = fmask('FSTS', 'IQE');

/** Stores `v` little-endian at byte `o` of a page's bytes. */
function putDword(f: Uint8Array, o: number, v: number): void {
  f[o] = v;
  f[o + 1] = v >>> 8;
  f[o + 2] = v >>> 16;
  f[o + 3] = v >>> 24;
}

/** The CAP register's fields Linux reads (`cap_*` macros in `include/linux/intel-iommu.h`). */
export interface DmarCaps {
  readonly cap: bigint;
  readonly ecap: bigint;
  /** Domain ids the unit supports (`cap_ndoms`: 2^(4 + 2·ND)). */
  readonly ndoms: number;
  /** SAGAW bitmap: bit 1 = 39-bit (3 levels), bit 2 = 48-bit (4 levels). */
  readonly sagaw: number;
  /** Maximum guest address width (MGAW + 1). */
  readonly mgaw: number;
  /** Page sizes the second level supports (4 KiB plus SLLPS). */
  readonly pgsizeBitmap: number;
  /** Page-selective invalidation, and its largest address mask. */
  readonly psi: boolean;
  readonly mamv: number;
  /** Caching mode: not-present entries may be cached (Linux then flushes on every map). */
  readonly cachingMode: boolean;
  readonly qi: boolean;
  readonly passThrough: boolean;
  /** Fault recording registers. */
  readonly nfr: number;
}

function field(v: bigint, lo: number, width: number): number {
  return Number((v >> BigInt(lo)) & ((1n << BigInt(width)) - 1n));
}

/** Decodes CAP and ECAP. */
export function decodeCaps(cap: bigint, ecap: bigint): DmarCaps {
  const sllps = field(cap, 34, 4);
  return {
    cap, ecap,
    ndoms: 2 ** (4 + 2 * field(cap, 0, 3)),
    sagaw: field(cap, 8, 5),
    mgaw: field(cap, 16, 6) + 1,
    pgsizeBitmap: 0x1000 | ((sllps & 1) !== 0 ? 0x20_0000 : 0) | ((sllps & 2) !== 0 ? 0x4000_0000 : 0),
    psi: field(cap, 39, 1) === 1,
    mamv: field(cap, 48, 6),
    cachingMode: field(cap, 7, 1) === 1,
    qi: field(ecap, 1, 1) === 1,
    passThrough: field(ecap, 6, 1) === 1,
    nfr: field(cap, 40, 8) + 1,
  };
}

/** One DMAR unit, driven by the kernel. Build it with {@link IntelIommu.probe}. */
export class IntelIommu {
  /** `dmar0`, as Linux names units. */
  readonly name: string;
  /** Physical address of the register block. */
  readonly base: number;
  readonly caps: DmarCaps;
  /** The AGAW the driver uses for its domains: 2 (48-bit, 4 levels) when supported, else 1 (39-bit). */
  readonly agaw: number;
  /** Invalidation descriptors submitted, and batches waited for. */
  descriptors = 0;
  syncs = 0;
  readonly #kernel: Kernel;
  readonly #mem: PhysicalMemory;
  readonly #sim: Simulator;
  readonly #regs: DmarRegAccess;
  /**
   * The unit's model, used only as a timing oracle by {@link #wait} (when the descriptor waited for will
   * have been processed), so that polling skips steps that could see nothing new; never to program it.
   */
  readonly #hw: VtdUnit | undefined;
  #root = -1;
  readonly #ctxTables = new Map<number, number>();
  #iq = -1;
  #tail = 0;
  #status = -1;
  #token = 0;
  /** Domain-id bitmap (1 = in use); id 0 is reserved, as Linux reserves it. */
  readonly #dids: Uint8Array;
  #fault: DmarFault | undefined;

  private constructor(kernel: Kernel, base: number, index: number) {
    this.#kernel = kernel;
    this.#mem = kernel.machine.memory;
    this.#sim = kernel.sim;
    this.base = base;
    this.name = `dmar${index}`;
    const mmio = kernel.machine.mmio;
    this.#hw = kernel.machine.iommu;
    this.#regs = {
      read32: (off) => mmio.read32(base + off),
      write32: (off, v) => mmio.write32(base + off, v),
      read64: (off) => mmio.read64(base + off),
    };
    this.caps = decodeCaps(mmio.read64(base + REG.CAP), mmio.read64(base + REG.ECAP));
    this.agaw = (this.caps.sagaw & 4) !== 0 ? 2 : 1;
    this.#dids = new Uint8Array(this.caps.ndoms);
    this.#dids[0] = 1;
  }

  /**
   * Linux `alloc_iommu` + `init_dmars` for the unit at `base`: logs it as Linux does, allocates the root
   * table, sets it, enables queued invalidation, invalidates the caches globally and sets up the fault
   * interrupt. Translation stays off until {@link enableTranslation}. Returns null (and logs why) when the
   * unit is unusable (no queued invalidation or no usable AGAW).
   */
  static probe(kernel: Kernel, base: number, index: number): IntelIommu | null {
    const u = new IntelIommu(kernel, base, index);
    const log = kernel.log;
    const ver = u.#regs.read32(REG.VER);
    log.printk('info', `DMAR: ${u.name}: reg_base_addr ${base.toString(16)} ver ${(ver >> 4) & 0xf}:${ver & 0xf} cap ${u.caps.cap.toString(16)} ecap ${u.caps.ecap.toString(16)}`);
    if ((u.caps.sagaw & 6) === 0) {
      log.printk('err', `DMAR: ${u.name}: Cannot get a valid agaw`);
      return null;
    }
    if (!u.caps.qi) {
      log.printk('err', `DMAR: ${u.name}: queued invalidation not supported: dmasim's driver needs it`);
      return null;
    }
    u.#root = u.#zeroedPage();
    u.#setRootEntry();
    u.#enableQi();
    u.flushContextGlobal();
    u.flushIotlbGlobal();
    u.#setupFaultIrq();
    return u;
  }

  #zeroedPage(): number {
    const f = this.#kernel.machine.frames.alloc();
    if (f < 0) throw new SimInvariantError(`${this.name}: out of memory for IOMMU tables at boot`);
    const a = f * FRAME_SIZE;
    this.#mem.fill(a, 0, FRAME_SIZE);
    return a;
  }

  #gcmd(bit: number): void {
    const keep = this.#regs.read32(REG.GSTS) & (GSTS_TES | GSTS_QIES);
    this.#regs.write32(REG.GCMD, keep | bit);
  }

  /** Linux `iommu_set_root_entry`: RTADDR, then SRTP, polling RTPS. */
  #setRootEntry(): void {
    this.#kernel.machine.mmio.write64(this.base + REG.RTADDR, BigInt(this.#root));
    this.#gcmd(fmask('GCMD', 'SRTP'));
    this.#pollGsts(GSTS_RTPS, true);
  }

  #pollGsts(mask: number, set: boolean): void {
    // The unit updates GSTS synchronously with the GCMD write; one read confirms it.
    const ok = ((this.#regs.read32(REG.GSTS) & mask) !== 0) === set;
    if (!ok) throw new SimInvariantError(`${this.name}: GSTS did not follow GCMD (mask 0x${mask.toString(16)})`);
  }

  /** Linux `dmar_enable_qi`: a zeroed queue page, IQT = 0, IQA, then QIE. */
  #enableQi(): void {
    this.#iq = this.#zeroedPage();
    this.#status = this.#zeroedPage();
    const mmio = this.#kernel.machine.mmio;
    mmio.write64(this.base + REG.IQT, 0n);
    mmio.write64(this.base + REG.IQA, BigInt(this.#iq));
    this.#tail = 0;
    this.#gcmd(fmask('GCMD', 'QIE'));
    this.#pollGsts(GSTS_QIES, true);
  }

  /** Linux `dmar_set_interrupt`: an MSI vector for fault events, FEDATA / FEADDR, then FECTL unmasked. */
  #setupFaultIrq(): void {
    const k = this.#kernel;
    const fault = new DmarFault({ regs: this.#regs, cap: this.caps.cap, log: k.log, clock: k.sim });
    this.#fault = fault;
    const vector = k.pci.allocCpuVector();
    if (vector < 0) {
      k.log.printk('err', `DMAR: ${this.name}: no vector for the fault interrupt`);
      return;
    }
    const desc = k.irq.allocEdge('DMAR-MSI');
    k.machine.intc.onVector(vector, () => k.irq.edge(desc));
    k.irq.request(desc.irq, () => {
      fault.handle();
      return IRQ_HANDLED;
    }, 0, this.name, this);
    this.#regs.write32(REG.FEDATA, vector);
    this.#regs.write32(REG.FEADDR, 0xfee0_0000);
    this.#regs.write32(REG.FECTL, 0);
    // Faults recorded before the handler existed (Linux clears them in dmar_set_interrupt).
    fault.handle();
  }

  /** The fault handler (its counters). */
  get fault(): DmarFault | undefined {
    return this.#fault;
  }

  /** Linux `iommu_enable_translation`: GCMD.TE, polling TES. */
  enableTranslation(): void {
    this.#gcmd(fmask('GCMD', 'TE'));
    this.#pollGsts(GSTS_TES, true);
  }

  /** Whether translation is on (GSTS.TES). */
  get translating(): boolean {
    return (this.#regs.read32(REG.GSTS) & GSTS_TES) !== 0;
  }

  /** Reads a register (for explainers and tests). */
  readReg(name: RegName): number {
    return this.#regs.read32(REG[name]);
  }

  // --- domain ids -------------------------------------------------------------------------------------

  /** The lowest free domain id (Linux `ida_alloc_range(&iommu->domain_ida, 1, ndoms - 1)`), or -1. */
  allocDid(): number {
    const d = this.#dids;
    for (let i = 1; i < d.length; i++) {
      if (d[i] === 0) {
        d[i] = 1;
        return i;
      }
    }
    return -1;
  }

  /** Frees a domain id. */
  freeDid(did: number): void {
    this.#dids[did] = 0;
  }

  // --- context entries --------------------------------------------------------------------------------

  #contextAddr(rid: number, create: boolean): number {
    const bus = rid >>> 8;
    let ct = this.#ctxTables.get(bus);
    if (ct === undefined) {
      if (!create) return -1;
      ct = this.#zeroedPage();
      this.#ctxTables.set(bus, ct);
      this.#mem.write64(this.#root + bus * 16 + 8, 0n);
      this.#mem.write64(this.#root + bus * 16, BigInt(ct) | 1n);
    }
    return ct + (rid & 0xff) * 16;
  }

  /** Whether requester `rid` has a present context entry. */
  contextPresent(rid: number): boolean {
    const a = this.#contextAddr(rid, false);
    return a >= 0 && (this.#mem.read64(a) & 1n) === 1n;
  }

  /**
   * Linux `domain_context_mapping_one`: writes `rid`'s context entry (high quadword first, present bit
   * last) for domain `did` with a multi-level table at `pgd`, or pass-through. A present entry is cleared
   * first (with its invalidations, as `domain_context_clear_one`); with caching mode the not-present entry
   * may be cached, so the context cache and IOTLB are flushed for it, as Linux does.
   */
  setContext(rid: number, did: number, tt: number, pgd: number, cpu: SimProcess | undefined): void {
    if (this.contextPresent(rid)) this.clearContext(rid, cpu);
    const a = this.#contextAddr(rid, true);
    const aw = tt === CONTEXT_TT.PASS_THROUGH ? this.agaw : this.agaw;
    this.#mem.write64(a + 8, BigInt(aw) | (BigInt(did) << 8n));
    this.#mem.write64(a, BigInt(pgd) | (BigInt(tt) << 2n) | 1n);
    if (this.caps.cachingMode) {
      // The not-present entry may be cached with domain id 0 (Linux flushes the context with did 0).
      this.#postCtx(3, 0, rid);
      this.#postIotlb(2, did, 0, 0, false);
      this.#sync(cpu);
    }
  }

  /**
   * Linux `domain_context_clear_one`: clears the entry, then a device-selective context-cache
   * invalidation and a domain-selective IOTLB invalidation for the domain it pointed at, waited for.
   */
  clearContext(rid: number, cpu: SimProcess | undefined): void {
    const a = this.#contextAddr(rid, false);
    if (a < 0) return;
    const hi = this.#mem.read64(a + 8);
    const did = Number((hi >> 8n) & 0xffffn);
    this.#mem.write64(a, 0n);
    this.#mem.write64(a + 8, 0n);
    this.#postCtx(3, did, rid);
    this.#postIotlb(2, did, 0, 0, false);
    this.#sync(cpu);
  }

  // --- invalidation -----------------------------------------------------------------------------------

  /** Context-cache global invalidation, waited for. */
  flushContextGlobal(cpu?: SimProcess): void {
    this.#postCtx(1, 0, 0);
    this.#sync(cpu);
  }

  /** IOTLB global invalidation, waited for. */
  flushIotlbGlobal(cpu?: SimProcess): void {
    this.#postIotlb(1, 0, 0, 0, false);
    this.#sync(cpu);
  }

  /** Domain-selective IOTLB invalidation (Linux `iommu_flush_iotlb_all` for a domain), waited for. */
  flushIotlbDomain(did: number, cpu: SimProcess | undefined): void {
    this.#postIotlb(2, did, 0, 0, false);
    this.#sync(cpu);
  }

  /**
   * Linux `iommu_flush_iotlb_psi` as 6.12 computes it (`calculate_psi_aligned_address`): the smallest
   * naturally aligned power-of-two block of pages covering `[start, last]`, page-selective when the unit
   * has PSI and the mask fits MAMV, else domain-selective. `ih` (no paging-structure entry changed) is
   * passed through. Waits for completion.
   */
  flushIotlbRange(did: number, start: number, last: number, ih: boolean, cpu: SimProcess | undefined): void {
    const c = this.#psiAligned(start, last);
    if (c < 0) this.#postIotlb(2, did, 0, 0, false);
    else this.#postIotlb(3, did, this.#psiAddr, c, ih);
    this.#sync(cpu);
  }

  /** Posts the same flush as {@link flushIotlbRange} without waiting; returns the token {@link done} tests. */
  postIotlbRange(did: number, start: number, last: number): number {
    const c = this.#psiAligned(start, last);
    if (c < 0) this.#postIotlb(2, did, 0, 0, false);
    else this.#postIotlb(3, did, this.#psiAddr, c, false);
    return this.#postWait();
  }

  /** Posts a domain-selective IOTLB flush without waiting; returns its token. */
  postIotlbDomain(did: number): number {
    this.#postIotlb(2, did, 0, 0, false);
    return this.#postWait();
  }

  #psiAddr = 0;

  /** The PSI mask for `[start, last]` (and the aligned address in `#psiAddr`), or -1 for a domain flush. */
  #psiAligned(start: number, last: number): number {
    if (!this.caps.psi) return -1;
    const first = Math.floor(start / FRAME_SIZE);
    const lastPfn = Math.floor(last / FRAME_SIZE);
    let mask = 0;
    let base = first;
    // Grow the aligned block until it covers the last page.
    while (base + 2 ** mask - 1 < lastPfn) {
      mask++;
      base = Math.floor(first / 2 ** mask) * 2 ** mask;
    }
    if (mask > this.caps.mamv) return -1;
    this.#psiAddr = base * FRAME_SIZE;
    return mask;
  }

  /** Whether the batch with `token` has completed (its wait descriptor wrote its status). */
  done(token: number): boolean {
    // The status word is the first dword of its own page: read from the page's bytes (zero until written).
    const f = this.#statusBytes ?? (this.#statusBytes = this.#mem.peekFrame(this.#status / FRAME_SIZE));
    const v = f === undefined ? 0 : ((f[0] as number) | ((f[1] as number) << 8) | ((f[2] as number) << 16) | ((f[3] as number) << 24));
    return ((v - token) | 0) >= 0;
  }

  /** The bytes of the queue page and of the status page (kernel pages, never freed), once materialised. */
  #iqBytes: Uint8Array | undefined;
  #statusBytes: Uint8Array | undefined;

  /** Writes one descriptor (four dwords, low first, as `PhysicalMemory.write32` stores them) at the tail. */
  #post(lo0: number, lo1: number, hi0: number, hi1: number): void {
    const f = this.#iqBytes ?? (this.#iqBytes = this.#mem.frame(this.#iq / FRAME_SIZE));
    const o = this.#tail * 16;
    putDword(f, o, lo0);
    putDword(f, o + 4, lo1);
    putDword(f, o + 8, hi0);
    putDword(f, o + 12, hi1);
    this.#tail = (this.#tail + 1) & (QI_LENGTH - 1);
    this.descriptors++;
  }

  /** Posts a context-cache invalidation descriptor (type 1): granularity 1 global, 2 domain, 3 device. */
  #postCtx(g: number, did: number, sid: number): void {
    this.#post((1 | (g << 4) | (did << 16)) >>> 0, sid & 0xffff, 0, 0);
  }

  /** Posts an IOTLB invalidation descriptor (type 2): granularity 1 global, 2 domain, 3 page-selective at `addr` with mask `am`. */
  #postIotlb(g: number, did: number, addr: number, am: number, ih: boolean): void {
    const lo = addr % 2 ** 32;
    this.#post((2 | (g << 4) | (did << 16)) >>> 0, 0, (lo | (ih ? 0x40 : 0) | am) >>> 0, (addr - lo) / 2 ** 32);
  }

  /** Posts the wait descriptor (a status write of a new token) and moves IQT (a 32-bit write, as Linux's `writel`); returns the token. */
  #postWait(): number {
    const token = (this.#token = (this.#token + 1) | 0);
    const st = this.#status;
    this.#post(5 | (1 << 5), token >>> 0, st % 2 ** 32, Math.floor(st / 2 ** 32));
    this.#regs.write32(REG.IQT, this.#tail << 4);
    return token;
  }

  /** Linux `qi_submit_sync` for what was posted: a wait descriptor, then polling until it has written. */
  #sync(cpu: SimProcess | undefined): void {
    const token = this.#postWait();
    this.#wait(token, (this.#tail + QI_LENGTH - 1) & (QI_LENGTH - 1), cpu);
  }

  /**
   * Polls for `token`, whose wait descriptor sits at ring index `index`, in `QI_POLL_NS` steps charged to
   * `cpu` (or running the hardware on the global clock). The virtual times are those of polling step by step;
   * the host cost is not: the steps before the first poll that can see the status write (the descriptor's
   * due time, from the unit's model, rounded up to the poll grid) are taken in one, since a poll in between
   * sees an unwritten status word and a clear FSTS (reads without side effects), and the unit is told it
   * may process the descriptors up to there in one event.
   */
  #wait(token: number, index: number, cpu: SimProcess | undefined): void {
    this.syncs++;
    const sim = this.#sim;
    const hw = this.#hw;
    for (let i = 0; i < QI_MAX_POLLS;) {
      if (this.done(token)) return;
      // qi_check_fault reads FSTS on every iteration; the unit raises IQE only for a descriptor the driver
      // got wrong, so reading it every 16th poll changes nothing but the cost.
      if ((i & 15) === 15 && (this.#regs.read32(REG.FSTS) & FSTS_IQE) !== 0) {
        throw new SimInvariantError(`${this.name}: invalidation queue error (IQE) on a descriptor the kernel built`);
      }
      let steps = 1;
      if (hw !== undefined) {
        const now = cpu !== undefined ? cpu.localTime : sim.now;
        const due = hw.qiDueTime(index);
        if (due > now + QI_POLL_NS && due !== Infinity) {
          steps = Math.ceil((due - now) / QI_POLL_NS);
          // Never past the next poll that checks FSTS.
          const toCheck = 15 - ((i + 1) & 15) + 1;
          if (steps > toCheck) steps = toCheck;
          hw.qiRunAhead(now + steps * QI_POLL_NS);
        }
      }
      if (cpu !== undefined) cpu.consume(steps * QI_POLL_NS);
      else sim.catchUp(sim.now + steps * QI_POLL_NS);
      i += steps;
    }
    throw new SimInvariantError(`${this.name}: qi_submit_sync timed out`);
  }
}
