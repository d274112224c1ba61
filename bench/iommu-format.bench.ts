import { FrameAllocator, PhysicalMemory } from '../sim/index.ts';
import { IommuProt, createGather, createVtdSlPageTable, frameTableAllocator, resetGather, type VtdSlPageTable } from '../iommu/format/index.ts';
import type { BenchmarkDef, RunResult } from './harness.ts';
import { registerBenchmarks } from './registry.ts';

/**
 * The format library alone (no IOMMU unit, no invalidation): single 4 KiB map and unmap calls over PAGES
 * distinct contiguous IOVAs whose table pages already exist, the steady state of a DMA-API driver.
 */
const PAGES = 1024;
const ROUNDS = 400;
const IOVA_BASE = 0x1_0000_0000;
const PHYS_BASE = 0x100_0000;

function world(): VtdSlPageTable {
  const mem = new PhysicalMemory(256 * 1024 * 1024);
  const frames = new FrameAllocator(mem.frameCount, 'sequential', undefined, [[0, PHYS_BASE / 4096 + PAGES]]);
  const t = createVtdSlPageTable({ mem, alloc: frameTableAllocator(frames) });
  if (typeof t === 'number') throw new Error(`createVtdSlPageTable failed: ${t}`);
  // Builds the tables once; 4 KiB unmaps never cover a whole table, so they stay.
  mapAll(t);
  unmapAll(t);
  return t;
}

function mapAll(t: VtdSlPageTable): void {
  for (let i = 0; i < PAGES; i++) {
    if (t.map(IOVA_BASE + i * 4096, PHYS_BASE + i * 4096, 4096, IommuProt.READ | IommuProt.WRITE) !== 4096) throw new Error('map failed');
  }
}

const gather = createGather();
function unmapAll(t: VtdSlPageTable): void {
  for (let i = 0; i < PAGES; i++) {
    resetGather(gather);
    if (t.unmap(IOVA_BASE + i * 4096, 4096, gather) !== 4096) throw new Error('unmap failed');
  }
}

/** Runs ROUNDS rounds of map-all / unmap-all and returns the ms spent in the timed half. */
function rounds(t: VtdSlPageTable, timeMap: boolean): number {
  let ms = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    mapAll(t);
    const t1 = performance.now();
    unmapAll(t);
    const t2 = performance.now();
    ms += timeMap ? t1 - t0 : t2 - t1;
  }
  return ms;
}

function def(name: string, what: string, timeMap: boolean): BenchmarkDef {
  return {
    name,
    unit: 'Mops/s',
    description: `${what} of single 4 KiB pages over ${PAGES} contiguous IOVAs with tables present, ${ROUNDS * PAGES} ops (VT-d SL, 4 levels)`,
    target: 2,
    prepare() {
      const t = world();
      rounds(t, timeMap);
      return (): RunResult => {
        const ms = rounds(t, timeMap);
        return { value: (ROUNDS * PAGES) / ms / 1000, ms, extra: { ops: ROUNDS * PAGES } };
      };
    },
  };
}

registerBenchmarks(def('iommu.format.map4k', 'map', true), def('iommu.format.unmap4k', 'unmap', false));
