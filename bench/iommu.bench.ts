import { IdentityDmaPort, PhysicalMemory, Rng, createDmaResult } from '../sim/index.ts';
import { IommuProt, createGather, resetGather, type VtdSlPageTable } from '../iommu/format/index.ts';
import { REG, VtdDmaPort, VtdUnit, fmask } from '../iommu/vtd/index.ts';
import type { BenchmarkDef, RunResult } from './harness.ts';
import { registerBenchmarks } from './registry.ts';
import { vtdWorld } from './vtd-world.ts';

/**
 * The VT-d unit: translation through the DmaPort (IOTLB hits; full walks with no IOTLB) and the driver-side
 * map/unmap of single 4 KiB pages, unmap including a page-selective invalidation and a wait descriptor.
 */
const RID = 0x0100;
const DID = 1;
const IOVA_BASE = 0x1_0000_0000;
const PHYS_BASE = 0x100_0000;
const HIT_PAGES = 256;
const READS = 4_000_000;
const MAP_PAGES = 1024;
const MAP_ROUNDS = 200;

interface World {
  mem: PhysicalMemory;
  unit: VtdUnit;
  port: VtdDmaPort;
  table: VtdSlPageTable;
  iq: number;
  status: number;
}

/** Memory, a unit programmed through its registers (root, context, QI, TE) and one domain's table. */
function world(iotlbEntries: number): World {
  const { mem, unit, page, table } = vtdWorld(64 * 1024 * 1024, RID, DID, PHYS_BASE / 4096 + MAP_PAGES, { iotlbEntries, qiDescriptorNs: 0 });
  const iq = page();
  const status = page();
  unit.write64(REG.IQA, BigInt(iq));
  unit.write32(REG.GCMD, fmask('GCMD', 'QIE'));
  unit.write32(REG.GCMD, (fmask('GCMD', 'QIE') | fmask('GCMD', 'TE')) >>> 0);
  return { mem, unit, port: new VtdDmaPort(unit, new IdentityDmaPort(mem)), table, iq, status };
}

function translateBench(name: string, iotlbEntries: number, target: number, what: string): BenchmarkDef {
  return {
    name,
    unit: 'M/s',
    description: `${what}: 4-byte DMA reads through the VT-d DmaPort over ${HIT_PAGES} mapped 4 KiB pages in a seeded shuffle, ${READS} reads`,
    target,
    prepare() {
      const w = world(iotlbEntries);
      for (let i = 0; i < HIT_PAGES; i++) w.table.map(IOVA_BASE + i * 4096, PHYS_BASE + i * 4096, 4096, IommuProt.READ | IommuProt.WRITE);
      const order = new Rng(42).shuffle(Array.from({ length: HIT_PAGES }, (_, i) => IOVA_BASE + i * 4096 + ((i * 4) & 0xffc)));
      const iovas = Float64Array.from(order);
      const buf = new Uint8Array(4);
      const res = createDmaResult();
      const run = (n: number): number => {
        let faults = 0;
        for (let i = 0; i < n; i++) {
          w.port.read(RID, iovas[i & (HIT_PAGES - 1)] as number, buf, 0, 4, res);
          faults += res.status;
        }
        return faults;
      };
      if (run(READS / 4) !== 0) throw new Error('translation faulted');
      return (): RunResult => {
        const t0 = performance.now();
        const faults = run(READS);
        const ms = performance.now() - t0;
        if (faults !== 0) throw new Error('translation faulted');
        const s = w.unit.iotlb;
        return { value: READS / ms / 1000, ms, extra: { iotlbEntries: s.entries, iotlbValid: s.size } };
      };
    },
  };
}

const gather = createGather();

function mapAll(w: World): void {
  for (let i = 0; i < MAP_PAGES; i++) {
    if (w.table.map(IOVA_BASE + i * 4096, PHYS_BASE + i * 4096, 4096, IommuProt.READ | IommuProt.WRITE) !== 4096) throw new Error('map failed');
  }
}

/** Unmaps each page, then invalidates it (page-selective, AM 0) and waits on a status write, as a driver does. */
function unmapAll(w: World, tail: { v: number }): void {
  const { mem, unit, iq, status } = w;
  for (let i = 0; i < MAP_PAGES; i++) {
    const iova = IOVA_BASE + i * 4096;
    resetGather(gather);
    if (w.table.unmap(iova, 4096, gather) !== 4096) throw new Error('unmap failed');
    let a = iq + tail.v * 16;
    // IOTLB page-selective: type 2, G 3, DID; hi = ADDR | AM 0.
    mem.write32(a, 2 | (3 << 4) | (DID << 16));
    mem.write32(a + 4, 0);
    mem.write32(a + 8, iova >>> 0);
    mem.write32(a + 12, Math.floor(iova / 0x1_0000_0000));
    tail.v = (tail.v + 1) & 255;
    a = iq + tail.v * 16;
    // Wait: type 5, SW, status data = i + 1, status address.
    mem.write32(a, 5 | (1 << 5));
    mem.write32(a + 4, i + 1);
    mem.write32(a + 8, status);
    mem.write32(a + 12, 0);
    tail.v = (tail.v + 1) & 255;
    unit.write32(REG.IQT, tail.v << 4);
    if (mem.read32(status) !== i + 1) throw new Error('wait did not complete');
  }
}

function mapBench(name: string, timeMap: boolean): BenchmarkDef {
  return {
    name,
    unit: 'M/s',
    description: timeMap
      ? `format-library map of single 4 KiB pages over ${MAP_PAGES} contiguous IOVAs (tables present), ${MAP_ROUNDS * MAP_PAGES} ops`
      : `unmap of single 4 KiB pages + page-selective IOTLB invalidation + wait descriptor processed by the unit, ${MAP_ROUNDS * MAP_PAGES} ops`,
    target: 2,
    prepare() {
      const w = world(512);
      const tail = { v: 0 };
      mapAll(w);
      unmapAll(w, tail);
      for (let r = 0; r < 20; r++) {
        mapAll(w);
        unmapAll(w, tail);
      }
      return (): RunResult => {
        let ms = 0;
        for (let r = 0; r < MAP_ROUNDS; r++) {
          const t0 = performance.now();
          mapAll(w);
          const t1 = performance.now();
          unmapAll(w, tail);
          const t2 = performance.now();
          ms += timeMap ? t1 - t0 : t2 - t1;
        }
        return { value: (MAP_ROUNDS * MAP_PAGES) / ms / 1000, ms };
      };
    },
  };
}

registerBenchmarks(
  translateBench('iommu.translate.hit', 512, 30, 'IOTLB hits (512 entries, 8-way)'),
  translateBench('iommu.translate.walk', 0, 4, 'IOTLB disabled: a 4-level walk from memory per access'),
  mapBench('iommu.map4k', true),
  mapBench('iommu.unmap4k', false),
);
