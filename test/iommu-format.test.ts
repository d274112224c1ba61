import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameAllocator, PhysicalMemory, SimInvariantError } from '../sim/index.ts';
import {
  IommuProt,
  PgtError,
  VTD_SL_PGSIZES,
  createGather,
  createVtdSlPageTable,
  frameTableAllocator,
  gatherIsEmpty,
  iovaToPhysWide,
  mapWide,
  pgtErrno,
  releaseGather,
  resetGather,
  unmapWide,
  type TablePageAllocator,
  type VtdSlOptions,
  type VtdSlPageTable,
} from '../iommu/format/index.ts';

const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;
const RW = IommuProt.READ | IommuProt.WRITE;

/** 64 MiB of memory is plenty for tables: mapped physical addresses need not exist in it. */
function setup(opts: Partial<Omit<VtdSlOptions, 'mem' | 'alloc'>> = {}, memBytes = 64 * 1024 * 1024) {
  const mem = new PhysicalMemory(memBytes);
  const frames = new FrameAllocator(mem.frameCount, 'sequential');
  const alloc = frameTableAllocator(frames);
  const initialFree = frames.freeFrames;
  const t = createVtdSlPageTable({ mem, alloc, ...opts });
  if (typeof t === 'number') throw new Error(`create failed: ${t}`);
  return { mem, frames, alloc, t, initialFree };
}

/**
 * An independent reading of the VT-d second-level layout (spec 9.8): walks the table in memory with
 * 64-bit reads, as the hardware does, and returns the leaf for `iova` or null. Cross-checks the bytes.
 */
function specWalk(mem: PhysicalMemory, root: number, levels: number, iova: bigint): { phys: bigint; level: number; perm: number } | null {
  let table = BigInt(root);
  let perm = 3;
  for (let level = levels; level >= 1; level--) {
    const shift = BigInt(12 + 9 * (level - 1));
    const idx = (iova >> shift) & 511n;
    const e = mem.read64(Number(table + idx * 8n));
    if ((e & 3n) === 0n) return null;
    perm &= Number(e & 3n);
    const addr = e & 0x000f_ffff_ffff_f000n;
    if (level === 1 || (e & 0x80n) !== 0n) {
      const off = iova & ((1n << shift) - 1n);
      return { phys: addr + off, level, perm };
    }
    table = addr;
  }
  return null;
}

describe('VT-d second-level format: spec-style examples', () => {
  it('maps one 4 KiB page: 4 levels of tables, leaf at level 1, edges and offsets', () => {
    const { t, mem } = setup();
    expect(t.levels).toBe(4);
    expect(t.iasBits).toBe(48);
    expect(t.aw).toBe(2);
    expect(t.pgsizeBitmap).toBe(K4 | M2 | G1);
    expect(t.tablePages).toBe(1);
    // Step 1: map IOVA 0x1000 -> PA 0x5000, read+write.
    expect(t.map(0x1000, 0x5000, K4, RW)).toBe(K4);
    expect(t.tablePages).toBe(4);
    // Step 2: translations at the page's first byte, an offset, its last byte, and just outside.
    expect(t.iovaToPhys(0x1000)).toBe(0x5000);
    expect(t.iovaToPhys(0x1abc)).toBe(0x5abc);
    expect(t.iovaToPhys(0x1fff)).toBe(0x5fff);
    expect(t.iovaToPhys(0x0fff)).toBe(-1);
    expect(t.iovaToPhys(0x2000)).toBe(-1);
    expect(t.leafAt(0x1234)).toEqual({ iova: 0x1000, phys: 0x5000, size: K4, level: 1, prot: RW });
    // Step 3: the bytes in memory are what the hardware walks.
    expect(specWalk(mem, t.root, 4, 0x1abcn)).toEqual({ phys: 0x5abcn, level: 1, perm: 3 });
    // Intermediate entries grant R and W so the leaf alone decides (permissions stack in VT-d).
    expect(mem.read32(t.root) & 3).toBe(3);
    // Step 4: unmap it.
    const g = createGather();
    expect(t.unmap(0x1000, K4, g)).toBe(K4);
    expect(g).toEqual({ start: 0x1000, last: 0x1fff, pgsize: K4, freelist: [] });
    expect(t.iovaToPhys(0x1000)).toBe(-1);
    expect(specWalk(mem, t.root, 4, 0x1000n)).toBeNull();
  });

  it('maps a 2 MiB superpage with PS at level 2', () => {
    const { t, mem } = setup();
    expect(t.map(0x20_0000, 0x4000_0000, M2, IommuProt.READ)).toBe(M2);
    expect(t.tablePages).toBe(3);
    expect(t.iovaToPhys(0x20_0000)).toBe(0x4000_0000);
    expect(t.iovaToPhys(0x3f_ffff)).toBe(0x401f_ffff);
    expect(t.iovaToPhys(0x40_0000)).toBe(-1);
    expect(t.leafAt(0x30_0000)).toEqual({ iova: 0x20_0000, phys: 0x4000_0000, size: M2, level: 2, prot: IommuProt.READ });
    expect(specWalk(mem, t.root, 4, 0x2f_0001n)).toEqual({ phys: 0x400f_0001n, level: 2, perm: 1 });
  });

  it('maps a 1 GiB superpage with PS at level 3', () => {
    const { t, mem } = setup();
    expect(t.map(G1, 3 * G1, G1, IommuProt.WRITE)).toBe(G1);
    expect(t.tablePages).toBe(2);
    expect(t.iovaToPhys(G1 + 0x1234_5678)).toBe(3 * G1 + 0x1234_5678);
    expect(t.iovaToPhys(2 * G1 - 1)).toBe(4 * G1 - 1);
    expect(t.iovaToPhys(2 * G1)).toBe(-1);
    expect(specWalk(mem, t.root, 4, BigInt(G1))).toEqual({ phys: BigInt(3 * G1), level: 3, perm: 2 });
  });

  it('picks the largest page size that alignment of iova, paddr and the remaining size allow', () => {
    const { t } = setup();
    // 4 KiB up to the 2 MiB boundary, then one 2 MiB page, then 4 KiB pages for the tail.
    expect(t.map(M2 - K4, M2 - K4, K4 + M2 + 2 * K4, RW)).toBe(K4 + M2 + 2 * K4);
    expect(t.leafAt(M2 - K4)?.size).toBe(K4);
    expect(t.leafAt(M2)?.size).toBe(M2);
    expect(t.leafAt(2 * M2)?.size).toBe(K4);
    expect(t.leafAt(2 * M2 + K4)?.size).toBe(K4);
    // Physical misalignment forces 4 KiB pages even where the IOVA is 2 MiB aligned.
    expect(t.map(8 * M2, 8 * M2 + K4, M2, RW)).toBe(M2);
    expect(t.leafAt(8 * M2)?.size).toBe(K4);
    expect(t.iovaToPhys(9 * M2 - 1)).toBe(9 * M2 + K4 - 1);
    // 1 GiB where both are aligned and the size allows; 2 MiB pages for the rest.
    expect(t.map(4 * G1, 8 * G1, G1 + 2 * M2, RW)).toBe(G1 + 2 * M2);
    expect(t.leafAt(4 * G1)?.size).toBe(G1);
    expect(t.leafAt(5 * G1 + M2)?.size).toBe(M2);
  });

  it('uses only the page sizes in the bitmap (CAP.SLLPS)', () => {
    const { t } = setup({ pgsizeBitmap: K4 | M2 });
    expect(t.map(G1, G1, G1, RW)).toBe(G1);
    expect(t.leafAt(G1)?.size).toBe(M2);
    const s = setup({ pgsizeBitmap: K4 });
    expect(s.t.map(M2, M2, M2, RW)).toBe(M2);
    expect(s.t.leafAt(M2)?.size).toBe(K4);
    expect(s.t.leafAt(2 * M2 - 1)?.size).toBe(K4);
  });

  it('maps a superpage through a table left by earlier 4 KiB mappings', () => {
    const { t } = setup();
    expect(t.map(M2, 0x10_0000_0000, K4, RW)).toBe(K4);
    expect(t.unmap(M2, K4, createGather())).toBe(K4);
    // The level-1 table is still linked (not fully covered): the 2 MiB map goes through it as 4 KiB pages.
    expect(t.map(M2, 2 * M2, M2, RW)).toBe(M2);
    expect(t.leafAt(M2)?.size).toBe(K4);
    expect(t.iovaToPhys(2 * M2 - 1)).toBe(3 * M2 - 1);
    // Unmapping the whole 2 MiB unlinks that table; the next 2 MiB map is a real superpage.
    const g = createGather();
    expect(t.unmap(M2, M2, g)).toBe(M2);
    expect(g.freelist).toHaveLength(1);
    expect(t.map(M2, 2 * M2, M2, RW)).toBe(M2);
    expect(t.leafAt(M2)?.size).toBe(M2);
  });

  it('sets SNP for IOMMU_CACHE', () => {
    const { t, mem } = setup();
    expect(t.map(0, 0x8000, K4, RW | IommuProt.CACHE)).toBe(K4);
    expect(t.leafAt(0)?.prot).toBe(RW | IommuProt.CACHE);
    const leaf = specWalk(mem, t.root, 4, 0n);
    expect(leaf?.level).toBe(1);
  });

  it('refuses to map over an existing mapping and changes nothing (rolls back partial work)', () => {
    const { t, frames } = setup();
    expect(t.map(0x3000, 0x9000, K4, RW)).toBe(K4);
    const pages = t.tablePages;
    const free = frames.freeFrames;
    // Overlap at the end of a multi-page request: the first pages were written, then undone.
    expect(t.map(0x1000, 0x1_0000, 3 * K4, RW)).toBe(PgtError.EXIST);
    expect(t.iovaToPhys(0x1000)).toBe(-1);
    expect(t.iovaToPhys(0x2000)).toBe(-1);
    expect(t.iovaToPhys(0x3000)).toBe(0x9000);
    // A 2 MiB request over a 4 KiB page, and a 4 KiB request inside a 2 MiB page.
    expect(t.map(0, 0, M2, RW)).toBe(PgtError.EXIST);
    expect(t.map(G1, G1, M2, RW)).toBe(M2);
    const pages2 = t.tablePages;
    expect(t.map(G1 + 5 * K4, 0, K4, RW)).toBe(PgtError.EXIST);
    expect(t.map(0, 0, 2 * G1, RW)).toBe(PgtError.EXIST);
    expect(t.tablePages).toBe(pages2);
    expect(t.iovaToPhys(0)).toBe(-1);
    expect(t.iovaToPhys(G1 + 5 * K4)).toBe(G1 + 5 * K4);
    // Tables created by a failed call were freed: a map that built new tables before failing.
    expect(t.map(0x10_0000_0000 - K4, 0, 2 * K4, RW)).toBe(2 * K4);
    const pages3 = t.tablePages;
    const free3 = frames.freeFrames;
    expect(t.map(0x08_0000_0000, 0, 0x08_0000_0000 + K4, RW)).toBe(PgtError.EXIST);
    expect(t.tablePages).toBe(pages3);
    expect(frames.freeFrames).toBe(free3);
    expect(pages3).toBeGreaterThan(pages);
    expect(free3).toBeLessThan(free);
  });

  it('refuses unaligned, empty, non-integer, permissionless requests', () => {
    const { t } = setup();
    expect(t.map(0x1001, 0x2000, K4, RW)).toBe(PgtError.INVAL);
    expect(t.map(0x1000, 0x2001, K4, RW)).toBe(PgtError.INVAL);
    expect(t.map(0x1000, 0x2000, K4 + 1, RW)).toBe(PgtError.INVAL);
    expect(t.map(0x1000, 0x2000, 0, RW)).toBe(PgtError.INVAL);
    expect(t.map(-K4, 0x2000, K4, RW)).toBe(PgtError.INVAL);
    expect(t.map(0x1000, 0x2000, K4, 0)).toBe(PgtError.INVAL);
    expect(t.map(0x1000, 0x2000, K4, IommuProt.CACHE)).toBe(PgtError.INVAL);
    expect(t.map(Number.NaN, 0, K4, RW)).toBe(PgtError.INVAL);
    expect(t.map(4096.5, 0, K4, RW)).toBe(PgtError.INVAL);
    expect(t.unmap(0x1001, K4, null)).toBe(PgtError.INVAL);
    expect(t.unmap(0x1000, 0x800, null)).toBe(PgtError.INVAL);
    expect(t.unmap(0x1000, 0, null)).toBe(PgtError.INVAL);
    expect(t.tablePages).toBe(1);
    expect(pgtErrno(PgtError.INVAL)).toBe(22);
  });

  it('refuses ranges past the input width, past 2^53, past 2^64 and past the output width', () => {
    const { t } = setup();
    const top = 2 ** 48;
    expect(t.map(top, 0, K4, RW)).toBe(PgtError.RANGE);
    expect(t.map(top - K4, 0, 2 * K4, RW)).toBe(PgtError.RANGE);
    expect(t.map(2 ** 60, 0, K4, RW)).toBe(PgtError.RANGE);
    expect(t.map(0, 2 ** 48, K4, RW)).toBe(PgtError.RANGE);
    expect(t.unmap(top - K4, 2 * K4, null)).toBe(PgtError.RANGE);
    // uAPI-width callers: 2^64 - 4096 + 8192 wraps, and 2^64 - 1 is far past the width.
    expect(mapWide(t, 2n ** 64n - 4096n, 0n, 8192n, RW)).toBe(PgtError.RANGE);
    expect(mapWide(t, 2n ** 64n - 1n, 0n, 1n, RW)).toBe(PgtError.RANGE);
    expect(mapWide(t, 0n, 2n ** 64n - 4096n, 8192n, RW)).toBe(PgtError.RANGE);
    expect(mapWide(t, 0n, 0n, 0n, RW)).toBe(PgtError.INVAL);
    expect(mapWide(t, -4096n, 0n, 4096n, RW)).toBe(PgtError.INVAL);
    expect(unmapWide(t, 2n ** 64n - 4096n, 8192n, null)).toBe(PgtError.RANGE);
    expect(iovaToPhysWide(t, 2n ** 64n - 1n)).toBe(-1n);
    expect(t.iovaToPhys(top)).toBe(-1);
    expect(t.tablePages).toBe(1);
    // The 3-level table ends at 2^39.
    const s = setup({ levels: 3 });
    expect(s.t.iasBits).toBe(39);
    expect(s.t.aw).toBe(1);
    expect(s.t.map(2 ** 39, 0, K4, RW)).toBe(PgtError.RANGE);
    expect(s.t.map(2 ** 39 - K4, 0, 2 * K4, RW)).toBe(PgtError.RANGE);
  });

  it('maps and unmaps the last page and the last 1 GiB of the address space', () => {
    for (const levels of [3, 4] as const) {
      const { t, mem, frames, initialFree } = setup({ levels });
      const top = 2 ** t.iasBits;
      expect(t.map(top - K4, 0x7000, K4, RW)).toBe(K4);
      expect(t.iovaToPhys(top - 1)).toBe(0x7fff);
      expect(specWalk(mem, t.root, levels, BigInt(top - 1))).toEqual({ phys: 0x7fffn, level: 1, perm: 3 });
      expect(iovaToPhysWide(t, BigInt(top - 1))).toBe(0x7fffn);
      expect(mapWide(t, BigInt(top - G1), BigInt(G1), BigInt(G1 - M2), RW)).toBe(G1 - M2);
      expect(t.leafAt(top - G1)?.size).toBe(M2);
      const g = createGather();
      // A hole in the last 2 MiB stops the unmap there; fill it so the last 1 GiB is hole-free.
      expect(unmapWide(t, BigInt(top - G1), BigInt(G1), null)).toBe(G1 - M2);
      expect(t.map(top - G1, G1, G1 - M2, RW)).toBe(G1 - M2);
      expect(t.map(top - M2, 0x10_0000, M2 - K4, RW)).toBe(M2 - K4);
      expect(unmapWide(t, BigInt(top - G1), BigInt(G1), g)).toBe(G1);
      expect(g.start).toBe(top - G1);
      expect(g.last).toBe(top - 1);
      releaseGather(g, frameTableAllocator(frames));
      expect(t.tablePages).toBe(levels === 4 ? 2 : 1);
      expect(t.map(top - G1, 0, G1, RW)).toBe(G1);
      expect(t.leafAt(top - 1)).toEqual({ iova: top - G1, phys: 0, size: G1, level: 3, prot: RW });
      t.destroy();
      expect(frames.freeFrames).toBe(initialFree);
    }
  });

  it('refuses an unmap that would split a superpage, at either end, and changes nothing', () => {
    const { t } = setup();
    expect(t.map(M2, 0x8000_0000, M2, RW)).toBe(M2);
    expect(t.map(M2 - K4, 0x10_0000, K4, RW)).toBe(K4);
    expect(t.unmap(M2, K4, null)).toBe(PgtError.SPLIT);
    expect(t.unmap(M2 + K4, K4, null)).toBe(PgtError.SPLIT);
    expect(t.unmap(M2 + K4, M2, null)).toBe(PgtError.SPLIT);
    // Ends inside the superpage: refused before the 4 KiB page in front of it is touched.
    expect(t.unmap(M2 - K4, 2 * K4, null)).toBe(PgtError.SPLIT);
    expect(t.iovaToPhys(M2 - K4)).toBe(0x10_0000);
    expect(t.iovaToPhys(M2)).toBe(0x8000_0000);
    expect(pgtErrno(PgtError.SPLIT)).toBe(22);
    // The whole superpage, and more past it, is fine (the unmap stops at the hole after it).
    expect(t.unmap(M2 - K4, K4 + 2 * M2, null)).toBe(K4 + M2);
    expect(t.iovaToPhys(M2)).toBe(-1);
  });

  it('stops at the first hole, as iommu_unmap does; a hole before a would-be split is not a split', () => {
    const { t } = setup();
    expect(t.unmap(0x1000, K4, null)).toBe(0);
    expect(t.map(0x1000, 0x1000, K4, RW)).toBe(K4);
    expect(t.map(0x3000, 0x3000, K4, RW)).toBe(K4);
    expect(t.unmap(0x1000, 3 * K4, null)).toBe(K4);
    expect(t.iovaToPhys(0x3000)).toBe(0x3000);
    expect(t.unmap(0x2000, 2 * K4, null)).toBe(0);
    expect(t.unmap(0x3000, K4, null)).toBe(K4);
    // A hole at M2 - 2 pages, then the superpage whose middle the request ends in: unmap up to the hole.
    expect(t.map(M2 - 3 * K4, 0, K4, RW)).toBe(K4);
    expect(t.map(M2, M2, M2, RW)).toBe(M2);
    expect(t.unmap(M2 - 3 * K4, 3 * K4 + K4, null)).toBe(K4);
    expect(t.iovaToPhys(M2)).toBe(M2);
  });

  it('gathers the touched range and the unlinked tables; the caller frees them after invalidation', () => {
    const { t, frames, alloc, initialFree } = setup();
    // 4 KiB pages (physically misaligned) over [G1, G1 + 4 MiB): two level-1 tables under one level-2 table.
    expect(t.map(G1, 0x2000_1000, 2 * M2, RW)).toBe(2 * M2);
    expect(t.tablePages).toBe(5);
    const g = createGather();
    // Partial: no table is fully covered, so none is unlinked.
    expect(t.unmap(G1, M2 / 2, g)).toBe(M2 / 2);
    expect(g.freelist).toEqual([]);
    expect(g.pgsize).toBe(K4);
    // The rest of the first 2 MiB is a hole-free run but the table's span began earlier: still linked.
    expect(t.unmap(G1 + M2 / 2, M2 / 2, g)).toBe(M2 / 2);
    expect(g.freelist).toEqual([]);
    expect(g.start).toBe(G1);
    expect(g.last).toBe(G1 + M2 - 1);
    resetGather(g);
    expect(gatherIsEmpty(g)).toBe(true);
    // The second 2 MiB in one call: its level-1 table goes on the freelist, unlinked but not yet freed.
    const before = frames.freeFrames;
    expect(t.unmap(G1 + M2, M2, g)).toBe(M2);
    expect(g.freelist).toHaveLength(1);
    expect(t.tablePages).toBe(4);
    expect(frames.freeFrames).toBe(before);
    expect(releaseGather(g, alloc)).toBe(1);
    expect(frames.freeFrames).toBe(before + 1);
    // Without a gather, tables are never unlinked.
    expect(t.map(2 * G1, 0x1000, M2, RW)).toBe(M2);
    const pages = t.tablePages;
    expect(t.unmap(2 * G1, M2, null)).toBe(M2);
    expect(t.tablePages).toBe(pages);
    t.destroy();
    expect(frames.freeFrames).toBe(initialFree);
    expect(() => t.iovaToPhys(0)).toThrow(SimInvariantError);
  });

  it('unlinks a whole subtree when an unmap covers it, children before parents', () => {
    const { t, alloc, frames, initialFree } = setup();
    expect(t.map(0, 0x1000, 2 * K4, RW)).toBe(2 * K4);
    expect(t.map(M2, 0x1000_0000, M2, RW)).toBe(M2);
    expect(t.map(G1 - K4, 0x1000, K4, RW)).toBe(K4);
    expect(t.tablePages).toBe(5);
    // Holes inside stop the unmap: map the rest so [0, 1 GiB) is hole-free.
    expect(t.map(2 * K4, 0x20_0000 + 2 * K4, M2 - 2 * K4, RW)).toBe(M2 - 2 * K4);
    expect(t.map(2 * M2, 2 * M2, G1 - 2 * M2 - M2, RW)).toBe(G1 - 3 * M2);
    expect(t.map(G1 - M2, 0x5000_0000, M2 - K4, RW)).toBe(M2 - K4);
    const g = createGather();
    expect(t.unmap(0, G1, g)).toBe(G1);
    // Two level-1 tables and the level-2 table; the level-3 table's span (512 GiB) was not covered.
    expect(g.freelist).toHaveLength(3);
    expect(t.tablePages).toBe(2);
    releaseGather(g, alloc);
    t.destroy();
    expect(frames.freeFrames).toBe(initialFree);
  });

  it('fails with NOMEM when table pages run out, freeing what the call allocated', () => {
    const mem = new PhysicalMemory(16 * 1024 * 1024);
    const frames = new FrameAllocator(mem.frameCount, 'sequential');
    let budget = 3;
    const inner = frameTableAllocator(frames);
    const alloc: TablePageAllocator = {
      allocTablePage: () => {
        if (budget <= 0) return -1;
        budget--;
        return inner.allocTablePage();
      },
      freeTablePage: (a) => {
        budget++;
        inner.freeTablePage(a);
      },
    };
    const t = createVtdSlPageTable({ mem, alloc });
    if (typeof t === 'number') throw new Error('create failed');
    // Root plus two of the three tables a 4 KiB map needs.
    expect(t.map(0, 0, K4, RW)).toBe(PgtError.NOMEM);
    expect(t.tablePages).toBe(1);
    expect(budget).toBe(2);
    expect(pgtErrno(PgtError.NOMEM)).toBe(12);
    budget = 0;
    expect(createVtdSlPageTable({ mem, alloc })).toBe(PgtError.NOMEM);
  });

  it('validates its options', () => {
    const mem = new PhysicalMemory(1024 * 1024);
    const alloc = frameTableAllocator(new FrameAllocator(mem.frameCount, 'sequential'));
    expect(createVtdSlPageTable({ mem, alloc, levels: 5 as 4 })).toBe(PgtError.INVAL);
    expect(createVtdSlPageTable({ mem, alloc, pgsizeBitmap: M2 })).toBe(PgtError.INVAL);
    expect(createVtdSlPageTable({ mem, alloc, pgsizeBitmap: VTD_SL_PGSIZES | 0x1000_0000 })).toBe(PgtError.INVAL);
    expect(createVtdSlPageTable({ mem, alloc, oasBits: 53 })).toBe(PgtError.INVAL);
    const bad: TablePageAllocator = { allocTablePage: () => 0x123, freeTablePage: () => undefined };
    expect(() => createVtdSlPageTable({ mem, alloc: bad })).toThrow(SimInvariantError);
  });
});

// ---------------------------------------------------------------------------------------------------
// Model-based test: the table against a plain Map of leaves, over a small IOVA window so that maps
// collide, superpages get split requests and tables get reused and unlinked.

interface Leaf {
  base: number;
  size: number;
  phys: number;
}

class Model {
  readonly leaves = new Map<number, Leaf>();
  /** Slots (by their IOVA base) that hold a lower table: level-1 tables per 2 MiB, level-2 per 1 GiB, level-3 per 512 GiB. */
  readonly t2m = new Set<number>();
  readonly t1g = new Set<number>();
  readonly t512g = new Set<number>();

  constructor(readonly levels: 3 | 4) {}

  tablePages(): number {
    return 1 + this.t2m.size + this.t1g.size + (this.levels === 4 ? this.t512g.size : 0);
  }

  leafAt(va: number): Leaf | undefined {
    for (const sz of [K4, M2, G1]) {
      const l = this.leaves.get(va - (va % sz));
      if (l !== undefined && l.size === sz) return l;
    }
    return undefined;
  }

  map(iova: number, paddr: number, size: number): number {
    for (const l of this.leaves.values()) if (l.base < iova + size && iova < l.base + l.size) return PgtError.EXIST;
    let done = 0;
    while (done < size) {
      const va = iova + done;
      const pa = paddr + done;
      const rem = size - done;
      let sz = [G1, M2, K4].find((s) => va % s === 0 && pa % s === 0 && rem >= s) as number;
      if (sz === G1 && this.t1g.has(va)) sz = M2;
      if (sz === M2 && this.t2m.has(va)) sz = K4;
      this.leaves.set(va, { base: va, size: sz, phys: pa });
      this.t512g.add(va - (va % 2 ** 39));
      if (sz <= M2) this.t1g.add(va - (va % G1));
      if (sz === K4) this.t2m.add(va - (va % M2));
      done += sz;
    }
    return size;
  }

  unmap(iova: number, size: number, gather: boolean): number {
    const last = iova + size - 1;
    const first = this.leafAt(iova);
    if (first === undefined) return 0;
    if (first.size > K4 && (first.base !== iova || last < first.base + first.size - 1)) return PgtError.SPLIT;
    if (last > first.base + first.size - 1) {
      const end = this.leafAt(last);
      if (end !== undefined && end.size > K4 && end.base + end.size - 1 !== last) {
        let va = iova;
        let hole = false;
        while (va < end.base) {
          const l = this.leafAt(va);
          if (l === undefined) {
            hole = true;
            break;
          }
          va = l.base + l.size;
        }
        if (!hole) return PgtError.SPLIT;
      }
    }
    let va = iova;
    let n = 0;
    while (va <= last) {
      const l = this.leafAt(va);
      if (l === undefined) break;
      this.leaves.delete(l.base);
      n += l.size;
      va = l.base + l.size;
    }
    if (gather && n > 0) {
      const end = iova + n;
      for (const [set, span] of [[this.t2m, M2], [this.t1g, G1], [this.t512g, 2 ** 39]] as const) {
        for (const b of set) if (b >= iova && b + span <= end) set.delete(b);
      }
    }
    return n;
  }

  phys(va: number): number {
    const l = this.leafAt(va);
    return l === undefined ? -1 : l.phys + (va - l.base);
  }
}

interface Real {
  t: VtdSlPageTable;
  alloc: TablePageAllocator;
  gather: ReturnType<typeof createGather>;
}

function check(m: Model, r: Real): void {
  expect(r.t.tablePages).toBe(m.tablePages());
}

class MapCmd implements fc.Command<Model, Real> {
  constructor(readonly iova: number, readonly paddr: number, readonly size: number) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    expect(r.t.map(this.iova, this.paddr, this.size, RW)).toBe(m.map(this.iova, this.paddr, this.size));
    check(m, r);
  }
  toString(): string {
    return `map(0x${this.iova.toString(16)}, 0x${this.paddr.toString(16)}, 0x${this.size.toString(16)})`;
  }
}

class UnmapCmd implements fc.Command<Model, Real> {
  constructor(readonly iova: number, readonly size: number, readonly gather: boolean) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const got = r.t.unmap(this.iova, this.size, this.gather ? r.gather : null);
    expect(got).toBe(m.unmap(this.iova, this.size, this.gather));
    // Invalidation is the driver's business; here the pages go straight back.
    releaseGather(r.gather, r.alloc);
    resetGather(r.gather);
    check(m, r);
  }
  toString(): string {
    return `unmap(0x${this.iova.toString(16)}, 0x${this.size.toString(16)}, ${this.gather ? 'gather' : 'null'})`;
  }
}

class LookupCmd implements fc.Command<Model, Real> {
  constructor(readonly va: number) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    expect(r.t.iovaToPhys(this.va)).toBe(m.phys(this.va));
  }
  toString(): string {
    return `iovaToPhys(0x${this.va.toString(16)})`;
  }
}

/**
 * IOVAs in [0, 2 GiB) built from few choices per level, so requests collide, straddle superpages, reuse
 * tables left behind and cover whole tables.
 */
const iovaArb = fc
  .tuple(fc.integer({ min: 0, max: 1 }), fc.constantFrom(0, 1, 511), fc.constantFrom(0, 0, 1, 511))
  .map(([g, m, k]) => g * G1 + m * M2 + k * K4);

/** Sizes mixing the three page sizes; physical offsets that allow 1 GiB, only 2 MiB, or only 4 KiB pages. */
const mapArb = fc
  .tuple(iovaArb, fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 3 }), fc.constantFrom(4 * G1, M2, K4))
  .filter(([, g, m, k]) => g + m + k > 0)
  .map(([iova, g, m, k, delta]) => new MapCmd(iova, iova + delta, (delta === K4 ? 0 : g) * G1 + m * M2 + k * K4 || K4));

const unmapArb = fc
  .tuple(iovaArb, fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 3 }), fc.boolean())
  .filter(([, g, m, k]) => g + m + k > 0)
  .map(([iova, g, m, k, gather]) => new UnmapCmd(iova, g * G1 + m * M2 + k * K4, gather));

const lookupArb = fc.tuple(iovaArb, fc.integer({ min: 0, max: M2 - 1 })).map(([iova, off]) => new LookupCmd(iova + off));

describe('VT-d second-level format: model-based', () => {
  for (const levels of [4, 3] as const) {
    it(`random map/unmap/iovaToPhys sequences match a Map of leaves (${levels} levels), and everything is freed`, () => {
      fc.assert(
        fc.property(fc.commands([mapArb, unmapArb, lookupArb], { maxCommands: 50 }), (cmds) => {
          const { t, alloc, frames, initialFree } = setup({ levels });
          const model = new Model(levels);
          const real: Real = { t, alloc, gather: createGather() };
          fc.modelRun(() => ({ model, real }), cmds);
          // Unmap every leaf (tables stay: single leaves never cover a table), then destroy frees them all.
          for (const l of model.leaves.values()) expect(t.unmap(l.base, l.size, null)).toBe(l.size);
          expect(t.tablePages).toBe(model.tablePages());
          expect(t.unmap(0, 4 * G1, real.gather)).toBe(0);
          t.destroy();
          expect(frames.freeFrames).toBe(initialFree);
        }),
        { seed: 42, numRuns: levels === 4 ? 150 : 60 },
      );
    });
  }
});

describe('VT-d second-level format: random inputs never throw', () => {
  const anyNum = fc.oneof(
    fc.double(),
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
    fc.constantFrom(0, K4, M2, G1, 2 ** 48 - K4, 2 ** 48, 2 ** 53, 2 ** 53 - 1, -1, Number.NaN, Infinity, -Infinity, 2 ** 64),
    fc.integer({ min: 0, max: 2 ** 20 }).map((p) => p * K4),
  );
  const anyBig = fc.oneof(fc.bigInt({ min: -(2n ** 65n), max: 2n ** 65n }), fc.constantFrom(0n, 4096n, 2n ** 64n - 4096n, 2n ** 64n - 1n, 2n ** 48n));

  it('map/unmap/iovaToPhys/leafAt with arbitrary numbers and bigints return values, not throws', () => {
    const { t, frames, initialFree, alloc } = setup();
    const g = createGather();
    fc.assert(
      fc.property(anyNum, anyNum, anyNum, fc.integer({ min: -1, max: 8 }), anyBig, anyBig, (a, b, c, prot, x, y) => {
        const m = t.map(a, b, c, prot);
        expect(Number.isInteger(m)).toBe(true);
        if (m >= 0) expect(m).toBe(c);
        const u = t.unmap(a, c, g);
        expect(Number.isInteger(u)).toBe(true);
        expect(typeof t.iovaToPhys(a)).toBe('number');
        t.leafAt(b);
        const mw = mapWide(t, x, y, x, prot);
        expect(Number.isInteger(mw)).toBe(true);
        expect(Number.isInteger(unmapWide(t, x, y, g))).toBe(true);
        expect(typeof iovaToPhysWide(t, y)).toBe('bigint');
        releaseGather(g, alloc);
        resetGather(g);
      }),
      { seed: 42, numRuns: 300 },
    );
    t.destroy();
    expect(frames.freeFrames).toBe(initialFree);
  });
});
