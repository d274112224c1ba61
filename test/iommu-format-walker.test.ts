import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameAllocator, PhysicalMemory } from '../sim/index.ts';
import { IommuProt, createVtdSlPageTable, frameTableAllocator } from '../iommu/format/index.ts';
import { WalkResult, walkSecondLevel } from '../iommu/vtd/index.ts';

const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;

/** The format library writes what the hardware walker reads: both sides of the shared entry layout agree. */
describe('format library against the VT-d walker', () => {
  for (const levels of [3, 4] as const) {
    it(`every translation the format reports, the walker finds, with the same permissions (${levels} levels)`, () => {
      const mapArb = fc.record({
        iova: fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 511 }), fc.constantFrom(0, 1, 511)),
        pages: fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 1, max: 3 })),
        delta: fc.constantFrom(0, M2, K4),
        prot: fc.constantFrom(IommuProt.READ, IommuProt.WRITE, IommuProt.READ | IommuProt.WRITE),
      });
      fc.assert(
        fc.property(fc.array(mapArb, { maxLength: 12 }), fc.array(fc.integer({ min: 0, max: 4 * G1 - 1 }), { maxLength: 40 }), (maps, probes) => {
          const mem = new PhysicalMemory(32 * 1024 * 1024);
          const t = createVtdSlPageTable({ mem, alloc: frameTableAllocator(new FrameAllocator(mem.frameCount, 'sequential')), levels });
          if (typeof t === 'number') throw new Error('create failed');
          const probe: number[] = [...probes];
          for (const m of maps) {
            const iova = m.iova[0] * G1 + m.iova[1] * M2 + m.iova[2] * K4;
            const size = (m.delta === K4 ? 0 : m.pages[0]) * G1 + m.pages[1] * M2 + m.pages[2] * K4;
            if (t.map(iova, iova + m.delta + 8 * G1, size, m.prot) === size) probe.push(iova, iova + size - 1);
          }
          const out = new WalkResult();
          const params = { hawHiMask: 0xffff, sagaw: 0b110 };
          for (const va of probe) {
            const leaf = t.leafAt(va);
            for (const need of [IommuProt.READ, IommuProt.WRITE]) {
              const ok = walkSecondLevel(mem, params, t.root, levels, va, need, out, null);
              const granted = leaf !== null && (leaf.prot & need) !== 0;
              expect(ok).toBe(granted);
              if (ok && leaf !== null) {
                expect(out.pageBase + (va - out.iovaBase)).toBe(t.iovaToPhys(va));
                expect(out.level).toBe(leaf.level);
                expect(out.iovaBase).toBe(leaf.iova);
              }
            }
          }
        }),
        { seed: 42, numRuns: 60 },
      );
    });
  }
});
