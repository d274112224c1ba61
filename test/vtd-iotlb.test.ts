import { describe, expect, it } from 'vitest';
import { createDmaResult } from '../sim/index.ts';
import { buildExplainExample, formatExplain, Iotlb, sliceIova } from '../iommu/vtd/index.ts';
import { makeRig } from './vtd-driver.ts';

const ctr = (): { value: number } => ({ value: 0 });

describe('VT-d IOTLB', () => {
  it('is set-associative with LRU replacement within a set', () => {
    const hits = ctr();
    const misses = ctr();
    const ev = ctr();
    // 4 entries, 2 ways: 2 sets; 4 KiB pages with even page numbers share set 0.
    const t = new Iotlb(4, 2, hits, misses, ev);
    t.fill(1, 0x0000, 0x10_0000, 1, 3, 0);
    t.fill(1, 0x2000, 0x20_0000, 1, 3, 0);
    expect(t.lookup(1, 0x0008, 1, true)).toBeGreaterThanOrEqual(0); // 0x0000 is now most recent
    t.fill(1, 0x4000, 0x30_0000, 1, 3, 0); // evicts 0x2000, the LRU of set 0
    expect(ev.value).toBe(1);
    expect(t.lookup(1, 0x2000, 1, true)).toBe(-1);
    expect(t.physOf(t.lookup(1, 0x0010, 1, true), 0x0010)).toBe(0x10_0010);
    expect(t.physOf(t.lookup(1, 0x4000, 1, true), 0x4abc)).toBe(0x30_0abc);
    // Set 1 is untouched by all this.
    t.fill(1, 0x1000, 0x40_0000, 1, 3, 0);
    expect(t.size).toBe(3);
    expect(hits.value).toBe(3);
    expect(misses.value).toBe(1);
  });

  it('is tagged by domain id', () => {
    const t = new Iotlb(512, 8, ctr(), ctr(), ctr());
    t.fill(1, 0x5000, 0x10_0000, 1, 3, 0);
    t.fill(2, 0x5000, 0x90_0000, 1, 3, 0);
    expect(t.physOf(t.lookup(1, 0x5000, 1, true), 0x5000)).toBe(0x10_0000);
    expect(t.physOf(t.lookup(2, 0x5000, 1, true), 0x5000)).toBe(0x90_0000);
    expect(t.lookup(3, 0x5000, 1, true)).toBe(-1);
    t.invalidateDomain(1);
    expect(t.lookup(1, 0x5000, 1, true)).toBe(-1);
    expect(t.lookup(2, 0x5000, 1, true)).toBeGreaterThanOrEqual(0);
  });

  it('caches superpages as superpages; a page-selective invalidation inside drops them', () => {
    const t = new Iotlb(512, 8, ctr(), ctr(), ctr());
    t.fill(1, 0x20_0000, 0x40_0000, 2, 3, 0);
    t.fill(1, 0x4000_0000, 0x8000_0000, 3, 1, 0);
    expect(t.size).toBe(2);
    expect(t.physOf(t.lookup(1, 0x3f_fffc, 1, true), 0x3f_fffc)).toBe(0x5f_fffc);
    expect(t.extentOf(t.lookup(1, 0x21_0000, 1, true), 0x21_0000)).toBe(0x1f_0000);
    expect(t.physOf(t.lookup(1, 0x7fff_f000, 1, true), 0x7fff_f000)).toBe(0xbfff_f000);
    // The 1 GiB entry is read-only: a write misses.
    expect(t.lookup(1, 0x4000_0000, 2, true)).toBe(-1);
    t.invalidatePages(1, 0x23_4000, 0);
    expect(t.lookup(1, 0x20_0000, 1, true)).toBe(-1);
    t.invalidatePages(1, 0x5000_0000, 9);
    expect(t.size).toBe(0);
  });

  it('through the unit: one entry per superpage, hits and misses counted, explain peeks without touching', () => {
    const r = makeRig();
    r.drv.init();
    const dom = r.drv.domain();
    expect(dom.map(0x20_0000, 0x40_0000, 0x20_0000, 3)).toBe(0x20_0000);
    r.drv.setContext(0x0100, { did: 1, ptr: dom.root });
    r.drv.setContext(0x0101, { did: 1, ptr: dom.root });
    r.drv.enableTranslation();
    for (let i = 0; i < 16; i++) r.read32(0x0100, 0x20_0000 + i * 0x1000);
    // The second requester shares domain 1, and so the entry.
    r.read32(0x0101, 0x30_0000);
    expect(r.unit.iotlb.dump()).toEqual([[1, 0x20_0000, 0x40_0000, 2, 3]]);
    const s = r.sched.stats.snapshot().iommu;
    expect(s?.['iotlb.miss']).toBe(1);
    expect(s?.['iotlb.hit']).toBe(16);
    const before = JSON.stringify(r.sched.stats.snapshot());
    const e = r.unit.explain(0x0100, 0x21_2345);
    expect(e).toMatchObject({ ok: true, phys: 0x41_2345n, pageSize: 0x20_0000, iotlb: 0x41_2345n, stale: false });
    expect(JSON.stringify(r.sched.stats.snapshot())).toBe(before);
  });
});

describe('VT-d explainer', () => {
  it('walks the built-in example: a mapping, a superpage, a hole and a permission fault', () => {
    const ex = buildExplainExample();
    const ok = ex.unit.explain(ex.rid, 0x10_2abc);
    expect(ok.steps.map((s) => s.entry)).toEqual(['root', 'context', 'pte', 'pte', 'pte', 'pte']);
    expect(ok.steps[1]?.fields).toMatchObject({ P: true, TT: 0, AW: 2, DID: 1 });
    expect(ok.phys).toBe(0x80_2abcn);
    const hole = ex.unit.explain(ex.rid, ex.hole);
    expect(hole.fault).toEqual({ reason: 6, text: 'PTE Read access is not set' });
    expect(ex.unit.explain(ex.rid, 0x10_5000, 'write').fault?.reason).toBe(5);
    expect(ex.unit.explain(ex.rid, 0x21_2345).pageSize).toBe(0x20_0000);
    expect(ex.unit.explain(0x0200, 0).fault?.reason).toBe(1);
    expect(ex.unit.explain(ex.rid, 1n << 60n).fault?.reason).toBe(4);
    const text = formatExplain(hole);
    expect(text).toContain('L1[0x104]');
    expect(text).toContain('=> FAULT reason 0x6: PTE Read access is not set');
    // No side effects: nothing recorded, nothing cached, no interrupt.
    expect(ex.unit.read32(0x34)).toBe(0);
    expect(ex.unit.iotlb.size).toBe(0);
    expect(ex.unit.contextCacheSize).toBe(0);
    expect(ex.interrupts).toEqual([]);
    // A real DMA into the hole faults and interrupts.
    const r = createDmaResult();
    ex.port.read(ex.rid, ex.hole, new Uint8Array(4), 0, 4, r);
    expect(r.faultReason).toBe(6);
    expect(ex.interrupts).toEqual([{ requester: 0, address: 0xfee0_0000, data: 0x30 }]);
  });

  it('slices the IOVA by level', () => {
    expect(sliceIova(0x12_3456_7000n, 4)).toBe('iova 0x0000_0012_3456_7000 = L4[0x000] L3[0x048] L2[0x1a2] L1[0x167] off 0x000');
    expect(sliceIova(0x7f_ffff_ffffn, 3)).toBe('iova 0x0000_007f_ffff_ffff = L3[0x1ff] L2[0x1ff] L1[0x1ff] off 0xfff');
  });

  it('the trace records every entry read and the walk of every fault', () => {
    const ex = buildExplainExample();
    const kinds: string[] = [];
    let faultWalk: readonly unknown[] = [];
    ex.sched.trace.subscribe((rec) => {
      kinds.push(rec.kind);
      if (rec.kind === 'fault') faultWalk = rec.fields.walk as readonly unknown[];
    });
    const r = createDmaResult();
    ex.port.read(ex.rid, 0x10_0000, new Uint8Array(4), 0, 4, r);
    expect(kinds.filter((k) => k === 'walk.read').length).toBe(6);
    expect(r.costNs).toBe(6 * 80 + 2);
    ex.port.read(ex.rid, ex.hole, new Uint8Array(4), 0, 4, r);
    expect(kinds).toContain('fault');
    expect(faultWalk.join('\n')).toContain('not present');
  });
});
