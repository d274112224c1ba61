import {
  FrameAllocator,
  IdentityDmaPort,
  PhysicalMemory,
  Scheduler,
  createDmaResult,
  resetDmaResult,
  type DmaResult,
  type MsiSink,
} from '../sim/index.ts';
import { createVtdSlPageTable, frameTableAllocator, type TablePageAllocator, type VtdSlPageTable } from '../iommu/format/index.ts';
import { REG, VtdDmaPort, VtdUnit, fmask, type VtdOptions } from '../iommu/vtd/index.ts';

/**
 * A minimal, test-only VT-d driver: it writes root and context tables into PhysicalMemory, programs the
 * unit through its registers and posts queued-invalidation descriptors, as the kernel's driver will.
 */

/** An MsiSink that records every message. */
export class RecordingMsi implements MsiSink {
  readonly got: { requester: number; address: number; data: number }[] = [];
  msi(requester: number, address: number, data: number): void {
    this.got.push({ requester, address, data });
  }
}

/** Descriptor builders (128-bit, as lo/hi bigints). */
export const Desc = {
  context(g: number, did = 0, sid = 0, fm = 0): [bigint, bigint] {
    return [1n | (BigInt(g) << 4n) | (BigInt(did) << 16n) | (BigInt(sid) << 32n) | (BigInt(fm) << 48n), 0n];
  },
  iotlb(g: number, did = 0, addr = 0, am = 0, ih = false): [bigint, bigint] {
    return [2n | (BigInt(g) << 4n) | (BigInt(did) << 16n), BigInt(addr) | (ih ? 1n << 6n : 0n) | BigInt(am)];
  },
  wait(opts: { sw?: boolean; intr?: boolean; fn?: boolean; data?: number; addr?: number }): [bigint, bigint] {
    const lo = 5n | (opts.intr === true ? 1n << 4n : 0n) | (opts.sw === true ? 1n << 5n : 0n) | (opts.fn === true ? 1n << 6n : 0n) | (BigInt(opts.data ?? 0) << 32n);
    return [lo, BigInt(opts.addr ?? 0)];
  },
};

/** Context-entry parameters. */
export interface CtxParams {
  readonly did: number;
  readonly ptr?: number;
  readonly aw?: number;
  readonly tt?: number;
  readonly fpd?: boolean;
  readonly present?: boolean;
}

/** The test driver. */
export class VtdTestDriver {
  readonly unit: VtdUnit;
  readonly mem: PhysicalMemory;
  readonly frames: FrameAllocator;
  readonly sched: Scheduler;
  readonly tables: TablePageAllocator;
  /** Physical address of the root table. */
  rootTable = -1;
  readonly #ctxTables = new Map<number, number>();
  iq = -1;
  iqEntries = 256;
  tail = 0;
  statusAddr = -1;
  #token = 0;

  constructor(unit: VtdUnit, mem: PhysicalMemory, frames: FrameAllocator, sched: Scheduler) {
    this.unit = unit;
    this.mem = mem;
    this.frames = frames;
    this.sched = sched;
    this.tables = frameTableAllocator(frames);
  }

  page(): number {
    const f = this.frames.alloc();
    if (f < 0) throw new Error('test driver: out of frames');
    this.mem.fill(f * 4096, 0, 4096);
    return f * 4096;
  }

  gcmd(bits: number): void {
    const keep = this.unit.read32(REG.GSTS) & (fmask('GSTS', 'TES') | fmask('GSTS', 'QIES'));
    this.unit.write32(REG.GCMD, keep | bits);
  }

  /** Root table + SRTP, then the invalidation queue (QIE). Translation stays off. */
  init(qs = 0): void {
    this.rootTable = this.page();
    this.unit.write64(REG.RTADDR, BigInt(this.rootTable));
    this.gcmd(fmask('GCMD', 'SRTP'));
    this.iqEntries = 256 * 2 ** qs;
    const f = this.frames.allocContiguous(2 ** qs, 2 ** qs);
    this.iq = f * 4096;
    this.mem.fill(this.iq, 0, 4096 * 2 ** qs);
    this.statusAddr = this.page();
    this.unit.write64(REG.IQT, 0n);
    this.unit.write64(REG.IQA, BigInt(this.iq) | BigInt(qs));
    this.gcmd(fmask('GCMD', 'QIE'));
  }

  enableTranslation(on = true): void {
    const keep = this.unit.read32(REG.GSTS) & fmask('GSTS', 'QIES');
    this.unit.write32(REG.GCMD, keep | (on ? fmask('GCMD', 'TE') : 0));
  }

  /** Writes the context entry of `rid` (creating the bus's context table on first use). */
  setContext(rid: number, p: CtxParams): void {
    const bus = rid >>> 8;
    let ct = this.#ctxTables.get(bus);
    if (ct === undefined) {
      ct = this.page();
      this.#ctxTables.set(bus, ct);
      this.mem.write64(this.rootTable + bus * 16, BigInt(ct) | 1n);
      this.mem.write64(this.rootTable + bus * 16 + 8, 0n);
    }
    const lo = BigInt(p.ptr ?? 0) | (BigInt(p.tt ?? 0) << 2n) | (p.fpd === true ? 2n : 0n) | (p.present === false ? 0n : 1n);
    const hi = BigInt(p.aw ?? 2) | (BigInt(p.did) << 8n);
    this.mem.write64(ct + (rid & 0xff) * 16, lo);
    this.mem.write64(ct + (rid & 0xff) * 16 + 8, hi);
  }

  /** Raw context entry write. */
  writeContextRaw(rid: number, lo: bigint, hi: bigint): void {
    this.setContext(rid, { did: 0 });
    const ct = this.#ctxTables.get(rid >>> 8) as number;
    this.mem.write64(ct + (rid & 0xff) * 16, lo);
    this.mem.write64(ct + (rid & 0xff) * 16 + 8, hi);
  }

  /** A fresh domain page table through the format library. */
  domain(levels: 3 | 4 = 4): VtdSlPageTable {
    const t = createVtdSlPageTable({ mem: this.mem, alloc: this.tables, levels });
    if (typeof t === 'number') throw new Error(`createVtdSlPageTable: ${t}`);
    return t;
  }

  /** Writes descriptors at the tail and bumps IQT (processing starts on the unit's schedule). */
  post(...descs: [bigint, bigint][]): void {
    for (const [lo, hi] of descs) {
      const a = this.iq + this.tail * 16;
      this.mem.write64(a, lo);
      this.mem.write64(a + 8, hi);
      this.tail = (this.tail + 1) % this.iqEntries;
    }
    this.unit.write64(REG.IQT, BigInt(this.tail << 4));
  }

  /** Posts `descs` plus a status-write wait and polls the status word, running the scheduler. */
  sync(...descs: [bigint, bigint][]): boolean {
    const token = ++this.#token;
    this.mem.write32(this.statusAddr, 0);
    this.post(...descs, Desc.wait({ sw: true, data: token, addr: this.statusAddr }));
    for (;;) {
      if (this.mem.read32(this.statusAddr) === token) return true;
      if ((this.unit.read32(REG.FSTS) & fmask('FSTS', 'IQE')) !== 0) return false;
      if (!this.sched.step()) return false;
    }
  }

  invalidatePages(did: number, iova: number, am = 0, ih = false): boolean {
    return this.sync(Desc.iotlb(3, did, iova, am, ih));
  }

  invalidateDomain(did: number): boolean {
    return this.sync(Desc.iotlb(2, did));
  }

  invalidateAll(): boolean {
    return this.sync(Desc.context(1), Desc.iotlb(1));
  }
}

/** A unit on a machine-less board: memory, scheduler, MSI recorder, frames, the port and the driver. */
export interface VtdRig {
  readonly mem: PhysicalMemory;
  readonly sched: Scheduler;
  readonly msi: RecordingMsi;
  readonly unit: VtdUnit;
  readonly port: VtdDmaPort;
  readonly drv: VtdTestDriver;
  readonly res: DmaResult;
  /** A 4-byte DMA read; returns the value or -1 (see `res`). */
  read32(rid: number, iova: number): number;
  /** A 4-byte DMA write; returns the status. */
  write32(rid: number, iova: number, v: number): number;
}

/** Builds a rig with `memSize` bytes of memory (default 64 MiB) and unit options. */
export function makeRig(opts: Partial<Omit<VtdOptions, 'mem' | 'clock' | 'msi'>> & { memSize?: number } = {}): VtdRig {
  const { memSize, ...uo } = opts;
  const mem = new PhysicalMemory(memSize ?? 64 * 1024 * 1024);
  const sched = new Scheduler();
  const msi = new RecordingMsi();
  const unit = new VtdUnit({ mem, clock: sched, msi, trace: sched.trace, stats: sched.stats, ...uo });
  const port = new VtdDmaPort(unit, new IdentityDmaPort(mem));
  const frames = new FrameAllocator(mem.frameCount, 'sequential', undefined, [[0, 0]]);
  const drv = new VtdTestDriver(unit, mem, frames, sched);
  const res = createDmaResult();
  const buf = new Uint8Array(4);
  const dv = new DataView(buf.buffer);
  return {
    mem, sched, msi, unit, port, drv, res,
    read32(rid, iova) {
      resetDmaResult(res);
      port.read(rid, iova, buf, 0, 4, res);
      return res.status === 0 ? dv.getUint32(0, true) : -1;
    },
    write32(rid, iova, v) {
      resetDmaResult(res);
      dv.setUint32(0, v, true);
      port.write(rid, iova, buf, 0, 4, res);
      return res.status;
    },
  };
}
