import { IdentityDmaPort, PhysicalMemory, Scheduler, Stats, type MsiSink } from '../sim/index.ts';
import { APEX, APEX_COMMAND_SIZE, APEX_MSIX_TABLE, APEX_OFFSET, ApexDevice, ApexIrq, ApexOp, type ApexRegName } from '../device-models/index.ts';
import { REG, VtdDmaPort, VtdUnit, fmask } from '../iommu/index.ts';
import type { BenchmarkDef, RunResult } from './harness.ts';
import { registerBenchmarks } from './registry.ts';
import { vtdWorld } from './vtd-world.ts';

/**
 * The Apex's queue 0 behind a VT-d unit (IOTLB at its default geometry), driven process-free: the driver
 * writes descriptors and the doorbell through the function's BAR2, then `runSync` runs the device until
 * idle and the MSI-X callback on SC_HOST_0 (entry 4) is the driver's wake-up; INSTR_QUEUE's interrupt is
 * disabled. Every gasket slot holds an IOVA mapped 4 KiB at a time with the format library.
 *
 * - `apex.copy`: 4 MiB source and 4 MiB destination, 1024 simple slots each; a pass is 16 descriptors,
 *   each pointing at its own command buffer with one 256 KiB COPY, one doorbell, one wait; 16 passes (64 MiB)
 *   timed after one untimed pass, whose destination bytes are checked. MB = 10^6 bytes per wall-clock second.
 * - `apex.copy.ext`: the same with source and destination at extended addresses (bit 63 set): EXTENDED_TABLE
 *   = 4096 simple slots (ring, command buffers and status block stay simple), 4 level-0 slots of the extended
 *   partition (2 per buffer) each holding the IOVA of a level-1 subtable in host memory, itself mapped 4 KiB
 *   through VT-d, whose 512 entries each map one 4 KiB page (the same IOVAs and frames as `apex.copy`). Every
 *   page the COPY touches costs the device one 8-byte subtable read through the IOMMU.
 * - `apex.jobs`: one descriptor -> one command buffer with one 4 KiB COPY, one doorbell, wait for SC_HOST_0,
 *   acknowledge it (W0C) before the next submit; queue depth 1. `apex.jobs.depth32`: 32 descriptors per
 *   doorbell, one wait.
 */

const MiB = 1 << 20;
const RID = 0x0100;
const off = (n: ApexRegName): number => APEX_OFFSET[APEX[n]] as number;
const IQ_TAIL = off('IQ_TAIL');
const SC_HOST_INT_STATUS = off('SC_HOST_INT_STATUS');
const IOVA_BASE = 0x4000_0000;
const COPY_BYTES = 4 * MiB;
const COPY_SLOTS = COPY_BYTES / 4096;
const SRC_SLOT = 0;
const DST_SLOT = COPY_SLOTS;
const RING_SLOT = 2 * COPY_SLOTS;
const CMD_SLOT = RING_SLOT + 1;
const SB_SLOT = RING_SLOT + 2;
const RING = 256;
const PASS_DESCS = 16;
const PASS_CHUNK = COPY_BYTES / PASS_DESCS;
const PASSES = 16;
/** Pages behind source and destination (device page p: source p < COPY_SLOTS, destination after). */
const DATA_PAGES = 2 * COPY_SLOTS;
/** Extended mode: simple slots (EXTENDED_TABLE); the extended level-0 slots follow. */
const EXT_SIMPLE = 4096;
/** Extended mode: level-1 subtables (512 entries, 2 MiB each) behind the data pages. */
const SUBTABLES = DATA_PAGES / 512;
/** Extended mode: IOVA page index of subtable k is SUB_PAGE + k (after the simple slots' pages). */
const SUB_PAGE = SB_SLOT + 1;
const EXT_BIT = 1n << 63n;

/** How the world's data pages are addressed through the gasket table. */
type GasketMode = 'simple' | 'extended';

/** The world: memory, a translating VT-d unit, an Apex attached through it, everything mapped. */
interface ApexWorld {
  readonly sched: Scheduler;
  readonly mem: PhysicalMemory;
  readonly apex: ApexDevice;
  readonly unit: VtdUnit;
  readonly stats: Stats;
  /** Physical address behind slot s (a data page below DATA_PAGES, or RING_SLOT, CMD_SLOT, SB_SLOT). */
  phys(slot: number): number;
  /** Device address of data page p (below DATA_PAGES): simple slot p, or extended level-0 p / 512, level-1 p % 512. */
  dev(page: number): bigint;
  /** SC_HOST_0 messages received. */
  sc0(): number;
  tail: number;
}

function apexWorld(mode: GasketMode = 'simple'): ApexWorld {
  const { mem, sched, stats, unit, frames, table } = vtdWorld(64 * MiB, RID, 1, 0);
  unit.write32(REG.GCMD, fmask('GCMD', 'TE'));

  const apex = new ApexDevice(sched);
  let sc0 = 0;
  const sink: MsiSink = {
    msi: (_r, _a, data) => {
      if (data === ApexIrq.SC_HOST_0) sc0++;
    },
  };
  const fn = apex.fn;
  fn.attach({ requesterId: RID, dma: new VtdDmaPort(unit, new IdentityDmaPort(mem)), msi: sink });
  fn.configWrite(0x04, 2, 0x0006);
  fn.configWrite((fn.caps['MSI-X'] as number) + 2, 2, 0x8000);
  const w64 = (o: number, v: number | bigint): void => fn.mmioWrite64(2, o, BigInt(v));
  // MSI-X entry 4 (SC_HOST_0's) with data 4; SC_HOST_0 routed there (PACK_0), enabled; INSTR_QUEUE off.
  const e = APEX_MSIX_TABLE + 16 * ApexIrq.SC_HOST_0;
  fn.mmioWrite(2, e, 4, 0xfee0_0000);
  fn.mmioWrite(2, e + 4, 4, 0);
  fn.mmioWrite(2, e + 8, 4, ApexIrq.SC_HOST_0);
  fn.mmioWrite(2, e + 12, 4, 0);
  w64(off('SC_HOST_INTVECCTL'), ApexIrq.SC_HOST_0);
  w64(off('SC_HOST_INT_CONTROL'), 1);
  w64(off('IQ_INT_CONTROL'), 0);
  w64(off('FATAL_ERR_INT_CONTROL'), 1);
  // Page s -> its own IOVA page -> a physical frame. Simple mode: every page in simple slot s. Extended
  // mode: the ring, command and status-block pages in their simple slots, the data pages in the subtables.
  const extended = mode === 'extended';
  if (extended) w64(off('EXTENDED_TABLE'), EXT_SIMPLE);
  const mapPage = (s: number): { phys: number; iova: number } => {
    const f = frames.alloc();
    if (f < 0) throw new Error('apex bench: out of frames');
    const iova = IOVA_BASE + s * 4096;
    if (table.map(iova, f * 4096, 4096, 3) !== 4096) throw new Error('apex bench: IOMMU map failed');
    return { phys: f * 4096, iova };
  };
  const subPhys: number[] = [];
  if (extended) {
    for (let k = 0; k < SUBTABLES; k++) {
      const sub = mapPage(SUB_PAGE + k);
      mem.fill(sub.phys, 0, 4096);
      subPhys[k] = sub.phys;
      w64(0x50000 + 8 * (EXT_SIMPLE + k), BigInt(sub.iova) | 1n);
    }
  }
  const physOf: number[] = [];
  for (let s = 0; s <= SB_SLOT; s++) {
    const { phys, iova } = mapPage(s);
    physOf[s] = phys;
    if (extended && s < DATA_PAGES) mem.write64((subPhys[s >>> 9] as number) + 8 * (s & 511), BigInt(iova) | 1n);
    else w64(0x50000 + 8 * s, BigInt(iova) | 1n);
  }
  const dev = extended ? (p: number): bigint => EXT_BIT | BigInt(((p >>> 9) << 21) + ((p & 511) << 12)) : (p: number): bigint => BigInt(p << 12);
  w64(off('IQ_BASE'), RING_SLOT << 12);
  w64(off('IQ_STATUS_BLOCK_BASE'), SB_SLOT << 12);
  w64(off('IQ_SIZE'), RING);
  w64(off('IQ_CONTROL'), 0b101);
  return { sched, mem, apex, unit, stats, phys: (s) => physOf[s] as number, dev, sc0: () => sc0, tail: 0 };
}

/** Writes a COPY command at physical `at` (device addresses `src`, `dst`). */
function writeCopy(mem: PhysicalMemory, at: number, src: bigint, dst: bigint, len: number): void {
  mem.fill(at, 0, APEX_COMMAND_SIZE);
  mem.write32(at, ApexOp.COPY);
  mem.write32(at + 4, len);
  mem.write64(at + 8, src);
  mem.write64(at + 24, dst);
}

/** Writes descriptor `{dev, len}` at the ring's tail and advances it (no doorbell). */
function queue(w: ApexWorld, dev: number, len: number): void {
  const at = w.phys(RING_SLOT) + 16 * w.tail;
  w.mem.write32(at, dev);
  w.mem.write32(at + 4, 0);
  w.mem.write32(at + 8, len);
  w.mem.write32(at + 12, 0);
  w.tail = (w.tail + 1) & (RING - 1);
}

/** Rings the doorbell, runs until SC_HOST_0 for `descs` completions arrived, acknowledges it (W0C). */
function doorbellAndWait(w: ApexWorld, descs: number): void {
  const fn = w.apex.fn;
  const want = w.sc0() + descs;
  fn.mmioWrite(2, IQ_TAIL, 4, w.tail);
  // The device runs until idle; the driver wakes once, on the last SC_HOST_0 message.
  w.sched.runSync();
  if (w.sc0() !== want) throw new Error(`apex bench: ${w.sc0() - want + descs} of ${descs} SC_HOST_0 messages (HIB ${fn.mmioRead64(2, off('HIB_ERROR_STATUS'))})`);
  fn.mmioWrite(2, SC_HOST_INT_STATUS, 4, 0);
}

function iotlbHitRate(w: ApexWorld): { hits: number; misses: number } {
  return { hits: w.stats.counter(w.unit.name, 'iotlb.hit').value, misses: w.stats.counter(w.unit.name, 'iotlb.miss').value };
}

function copy(name: string, mode: GasketMode): BenchmarkDef {
  const through = mode === 'simple' ? '1024 simple gasket slots each' : 'extended addresses, 2 level-0 slots -> 2 IOMMU-mapped subtables of 512 entries each';
  return {
    name,
    unit: 'MB/s',
    target: 1000,
    description: `${PASSES} passes of 16 x 256 KiB COPY descriptors (4 MiB -> 4 MiB, ${through}, over 4 KiB VT-d mappings), one doorbell and one SC_HOST_0 wait per pass`,
    prepare() {
      const w = apexWorld(mode);
      const cb = w.phys(CMD_SLOT);
      for (let i = 0; i < PASS_DESCS; i++) {
        writeCopy(w.mem, cb + i * 64, w.dev(SRC_SLOT) + BigInt(i * PASS_CHUNK), w.dev(DST_SLOT) + BigInt(i * PASS_CHUNK), PASS_CHUNK);
      }
      const src = new Uint8Array(COPY_BYTES);
      for (let i = 0; i < COPY_BYTES; i++) src[i] = (i * 2654435761) >>> 24;
      for (let s = 0; s < COPY_SLOTS; s++) w.mem.write(w.phys(SRC_SLOT + s), src, s * 4096, 4096);
      const pass = (): void => {
        for (let i = 0; i < PASS_DESCS; i++) queue(w, (CMD_SLOT << 12) + i * 64, APEX_COMMAND_SIZE);
        doorbellAndWait(w, PASS_DESCS);
      };
      const subtableReads0 = w.apex.pageTable.counters.subtableReads;
      pass();
      // Every destination byte, and (extended) one subtable read per source and destination page at least.
      const check = new Uint8Array(4096);
      for (let s = 0; s < COPY_SLOTS; s++) {
        w.mem.read(w.phys(DST_SLOT + s), check, 0, 4096);
        for (let i = 0; i < 4096; i++) if (check[i] !== src[s * 4096 + i]) throw new Error(`${name}: destination page ${s} differs at ${i}`);
      }
      const subtableReads = w.apex.pageTable.counters.subtableReads - subtableReads0;
      if (mode === 'extended' ? subtableReads < DATA_PAGES : subtableReads !== 0) throw new Error(`${name}: ${subtableReads} subtable reads in a pass`);
      // The same bytes through Uint8Array.prototype.set, for the ratio.
      const dst = new Uint8Array(COPY_BYTES);
      const setMs = (): number => {
        const t0 = performance.now();
        for (let p = 0; p < PASSES; p++) dst.set(src);
        return performance.now() - t0;
      };
      setMs();
      return (): RunResult => {
        const before = iotlbHitRate(w);
        const sim0 = w.sched.now;
        const t0 = performance.now();
        for (let p = 0; p < PASSES; p++) pass();
        const ms = performance.now() - t0;
        const after = iotlbHitRate(w);
        const hits = after.hits - before.hits;
        const lookups = hits + after.misses - before.misses;
        const bytes = PASSES * COPY_BYTES;
        const set = setMs();
        return {
          value: bytes / 1e6 / (ms / 1000), ms,
          extra: { ratioToSet: Math.round((set / ms) * 1000) / 1000, iotlbHitRate: Math.round((hits / lookups) * 10000) / 10000, simulatedUs: (w.sched.now - sim0) / 1000, bytes },
        };
      };
    },
  };
}

function jobs(name: string, depth: number, target?: number): BenchmarkDef {
  const JOBS = 200_000;
  return {
    name,
    unit: 'kjobs/s',
    ...(target === undefined ? {} : { target }),
    description: `${JOBS} one-COPY (4 KiB) command buffers behind VT-d, ${depth} descriptor${depth === 1 ? '' : 's'} per doorbell, one SC_HOST_0 wait and W0C acknowledge per doorbell`,
    prepare() {
      const w = apexWorld();
      writeCopy(w.mem, w.phys(CMD_SLOT), w.dev(SRC_SLOT), w.dev(DST_SLOT), 4096);
      const batch = (): void => {
        for (let i = 0; i < depth; i++) queue(w, CMD_SLOT << 12, APEX_COMMAND_SIZE);
        doorbellAndWait(w, depth);
      };
      const runJobs = (n: number): number => {
        const t0 = performance.now();
        for (let j = 0; j < n; j += depth) batch();
        return performance.now() - t0;
      };
      runJobs(20_000);
      return (): RunResult => {
        const sim0 = w.sched.now;
        const ms = runJobs(JOBS);
        return { value: JOBS / ms, ms, extra: { jobs: JOBS, depth, simulatedUs: (w.sched.now - sim0) / 1000 } };
      };
    },
  };
}

registerBenchmarks(copy('apex.copy', 'simple'), copy('apex.copy.ext', 'extended'), jobs('apex.jobs', 1, 400), jobs('apex.jobs.depth32', 32));
