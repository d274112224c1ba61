import { SimInvariantError, type PhysicalMemory } from '../../sim/index.ts';
import {
  IommuProt,
  PgtError,
  gatherAddRange,
  type IoLeaf,
  type IoPageTableOps,
  type IotlbGather,
  type PgtResult,
  type TablePageAllocator,
} from './types.ts';
import { SL_ENTRIES, SL_ENTRY_SIZE, SL_PTE_PS, SL_PTE_R, SL_PTE_SNP, SL_PTE_W, slEntryAddr, slMakeHi, slMakeLo } from './vtd-sl-entry.ts';

/**
 * The VT-d second-level page-table format (legacy mode) as an {@link IoPageTableOps}: what Linux's
 * intel-iommu does in `__domain_mapping` / `domain_unmap`, written against tables in simulated memory so
 * the hardware walker in `iommu/vtd/` reads exactly what this library wrote.
 *
 * Semantics, and where they come from:
 * - **Page-size choice** (`iommu_pgsize`): each step uses the largest size in `pgsizeBitmap` to which the
 *   IOVA and the physical address are both aligned and that fits in the remaining length. Runs of entries
 *   in one table are written without re-walking.
 * - **Map over a mapping** fails with EXIST and rolls back everything the call did, table pages included
 *   (Linux's `iommu_map` unrolls with `iommu_unmap`; io-pgtable-arm: "We require an unmap first"). Where a
 *   superpage would go but a lower table already sits (left by earlier 4 KiB maps), the library maps
 *   through that table with smaller pages instead of replacing it: the translation is the same and no
 *   paging-structure invalidation is needed inside `map`. (Linux's generic_pt frees such empty tables and
 *   flushes from inside `map_pages`; here only `unmap` unlinks tables, into the caller's gather.)
 * - **Unmap stops at the first hole** and returns the bytes unmapped before it (`__iommu_unmap`: "Keep
 *   iterating until we either unmap 'size' bytes (or more) or we hit an area that isn't mapped"), so an
 *   unmap starting at a hole returns 0.
 * - **Unmap never splits a superpage**: a range that starts or ends inside a 2 MiB / 1 GiB leaf it would
 *   reach fails with SPLIT and changes nothing. Linux differs by version: intel-iommu up to 6.x rounds the
 *   request up to the whole superpage; generic_pt refuses a start inside a large entry and rounds up an
 *   end inside one. dmasim refuses both, the full-cover rule that VFIO, iommufd and virtio-iommu apply
 *   above this layer, so a caller never loses more than it asked for.
 * - **Table pages are unlinked only when an unmap covers a table's whole span** (intel-iommu
 *   `dma_pte_clear_level`, generic_pt `fully_covered`), and only when the caller passes a gather: the pages
 *   go on `gather.freelist` for the caller to free after invalidating, because the IOMMU's
 *   paging-structure caches may still point at them. Tables emptied piecemeal stay until `destroy`.
 * - **Intermediate entries grant R and W** (as intel-iommu writes them): VT-d stacks permissions down the
 *   walk, so the leaf alone decides.
 */

const SZ_4K = 0x1000;
const SZ_2M = 0x20_0000;
const SZ_1G = 0x4000_0000;
const SZ_512G = 2 ** 39;
const RW = SL_PTE_R | SL_PTE_W;
/** Internal: a lower table occupies the slot a superpage would take; retry with smaller pages. */
const FALLBACK = -100;

/** The page sizes VT-d second-level tables support: 4 KiB, 2 MiB and 1 GiB. */
export const VTD_SL_PGSIZES = SZ_4K | SZ_2M | SZ_1G;

/** Bytes one entry at `level` spans. */
function lvlSize(level: number): number {
  return level === 1 ? SZ_4K : level === 2 ? SZ_2M : level === 3 ? SZ_1G : SZ_512G;
}

/** Index of `va` in a level-`level` table. `& 511` is exact: the quotient is an integer below 2^53. */
function lvlIndex(va: number, level: number): number {
  return Math.floor(va / lvlSize(level)) & (SL_ENTRIES - 1);
}

/** The little-endian dword at byte `o` of a frame's bytes (as `PhysicalMemory.read32` reads it). */
function dwordAt(f: Uint8Array, o: number): number {
  return ((f[o] as number) | ((f[o + 1] as number) << 8) | ((f[o + 2] as number) << 16) | ((f[o + 3] as number) << 24)) >>> 0;
}

/** Stores `v` little-endian at byte `o` of a frame's bytes (as `PhysicalMemory.write32` does). */
function putDword(f: Uint8Array, o: number, v: number): void {
  f[o] = v;
  f[o + 1] = v >>> 8;
  f[o + 2] = v >>> 16;
  f[o + 3] = v >>> 24;
}

const NO_FRAME = new Uint8Array(0);

/** Parameters of {@link createVtdSlPageTable}. */
export interface VtdSlOptions {
  /** The memory the tables live in (the same the IOMMU walks). */
  readonly mem: PhysicalMemory;
  /** Where table pages come from and go back to. */
  readonly alloc: TablePageAllocator;
  /** 3 levels (AW = 1, 39-bit IOVA) or 4 (AW = 2, 48-bit). Default 4. */
  readonly levels?: 3 | 4;
  /** Page sizes to use: a subset of {@link VTD_SL_PGSIZES} holding 4 KiB (CAP.SLLPS). Default all. */
  readonly pgsizeBitmap?: number;
  /** Output address bits (the unit's host address width), 32 to 52. Default 48. */
  readonly oasBits?: number;
}

/**
 * Builds an empty VT-d second-level table (allocating and zeroing its root page), or returns why it
 * cannot: INVAL for bad options, NOMEM when the allocator has no page.
 */
export function createVtdSlPageTable(opts: VtdSlOptions): VtdSlPageTable | PgtError {
  const levels = opts.levels ?? 4;
  const bitmap = opts.pgsizeBitmap ?? VTD_SL_PGSIZES;
  const oas = opts.oasBits ?? 48;
  if (levels !== 3 && levels !== 4) return PgtError.INVAL;
  if ((bitmap & SZ_4K) === 0 || (bitmap & ~VTD_SL_PGSIZES) !== 0) return PgtError.INVAL;
  if (!Number.isInteger(oas) || oas < 32 || oas > 52) return PgtError.INVAL;
  const root = opts.alloc.allocTablePage();
  if (root < 0) return PgtError.NOMEM;
  return new VtdSlPageTable(opts.mem, opts.alloc, levels, bitmap, oas, root);
}

/** A VT-d second-level page table in simulated memory. Build it with {@link createVtdSlPageTable}. */
export class VtdSlPageTable implements IoPageTableOps {
  readonly format = 'vtd-sl';
  readonly pgsizeBitmap: number;
  readonly iasBits: number;
  readonly oasBits: number;
  readonly levels: number;
  readonly root: number;
  /** VT-d's AW field for the context entry: 1 for 3 levels, 2 for 4. */
  readonly aw: number;
  readonly #mem: PhysicalMemory;
  readonly #alloc: TablePageAllocator;
  /** 2^iasBits and 2^oasBits: first address past each space. */
  readonly #iasLimit: number;
  readonly #oasLimit: number;
  /** Highest level that may hold a leaf, given the bitmap. */
  readonly #maxLeafLevel: number;
  #tablePages = 1;
  #destroyed = false;

  /** Tables created by the current `map` call and the entries linking them, for rollback. */
  readonly #newTables: number[] = [];
  readonly #newLinks: number[] = [];
  /** Bytes the last {@link #mapRun} wrote, whatever it returned. */
  #runBytes = 0;

  /** Outcome of {@link #findLeaf}. */
  #leafLevel = 0;
  #leafBase = 0;
  #leafPhys = 0;
  #leafLo = 0;
  /** Physical address of the leaf entry. */
  #leafEa = 0;

  /** State of one {@link #clearRange}. */
  #unmapped = 0;
  #gather: IotlbGather | null = null;

  /**
   * Walk cache of the single-4 KiB-page paths: the level-1 table of the 2 MiB span last reached
   * (`#wcSpan`, -1 when none), with the level-2 entry linking it (frame bytes, offset and value), so a
   * map or unmap of one page in the same span reads that link instead of walking from the root. Checked
   * against memory on every use and dropped whenever this library unlinks a table.
   */
  #wcSpan = -1;
  #wcLink: Uint8Array = NO_FRAME;
  #wcLinkFn = -1;
  #wcLinkOff = 0;
  #wcLinkLo = 0;
  #wcLinkHi = 0;
  #wcFn = -1;
  #wcTable: Uint8Array = NO_FRAME;

  /** @internal Use {@link createVtdSlPageTable}. */
  constructor(mem: PhysicalMemory, alloc: TablePageAllocator, levels: number, bitmap: number, oas: number, root: number) {
    this.#mem = mem;
    this.#alloc = alloc;
    this.levels = levels;
    this.aw = levels - 2;
    this.iasBits = 12 + 9 * levels;
    this.oasBits = oas;
    this.pgsizeBitmap = bitmap;
    this.#iasLimit = 2 ** this.iasBits;
    this.#oasLimit = 2 ** oas;
    this.#maxLeafLevel = (bitmap & SZ_1G) !== 0 ? 3 : (bitmap & SZ_2M) !== 0 ? 2 : 1;
    this.#checkPage(root);
    mem.fill(root, 0, SZ_4K);
    this.root = root;
  }

  get tablePages(): number {
    return this.#tablePages;
  }

  map(iova: number, paddr: number, size: number, prot: number): PgtResult {
    this.#live();
    if (!(Number.isSafeInteger(iova) && Number.isSafeInteger(paddr) && Number.isSafeInteger(size))) {
      return Number.isInteger(iova) && Number.isInteger(paddr) && Number.isInteger(size) && iova >= 0 && paddr >= 0 && size > 0
        ? PgtError.RANGE
        : PgtError.INVAL;
    }
    if (iova < 0 || paddr < 0 || size <= 0) return PgtError.INVAL;
    // Bitwise ops take the value modulo 2^32, which keeps the low 12 bits exact.
    if (((iova | paddr | size) & (SZ_4K - 1)) !== 0) return PgtError.INVAL;
    if (iova + size > this.#iasLimit || paddr + size > this.#oasLimit) return PgtError.RANGE;
    if (!Number.isInteger(prot) || (prot & RW) === 0) return PgtError.INVAL;
    const leafBits = (prot & RW) | ((prot & IommuProt.CACHE) !== 0 ? SL_PTE_SNP : 0);

    // Only a map that allocated tables leaves these non-empty (setting a length costs even when unchanged).
    if (this.#newTables.length !== 0) {
      this.#newTables.length = 0;
      this.#newLinks.length = 0;
    }
    if (size === SZ_4K) {
      // One page below existing tables: what #mapRun does at level 1, without walking from the root.
      const f = this.#leafTable(iova);
      if (f !== undefined) {
        const o = (Math.floor(iova / SZ_4K) & (SL_ENTRIES - 1)) * SL_ENTRY_SIZE;
        if ((dwordAt(f, o) & RW) !== 0) return PgtError.EXIST;
        putDword(f, o + 4, slMakeHi(paddr));
        putDword(f, o, slMakeLo(paddr, leafBits, false));
        return size;
      }
    }
    let done = 0;
    let cap = this.#maxLeafLevel;
    while (done < size) {
      const va = iova + done;
      const pa = paddr + done;
      const rem = size - done;
      let level = cap;
      while (level > 1) {
        const sz = lvlSize(level);
        // Masks below 2^30 fit in 32 bits, so the bitwise alignment test is exact.
        if ((this.pgsizeBitmap & sz) !== 0 && ((va | pa) & (sz - 1)) === 0 && rem >= sz) break;
        level--;
      }
      const r = this.#mapRun(va, pa, rem, level, leafBits);
      done += this.#runBytes;
      if (r === 0) {
        cap = this.#maxLeafLevel;
      } else if (r === FALLBACK) {
        cap = level - 1;
      } else {
        this.#rollback(iova, done);
        return r;
      }
    }
    return size;
  }

  /**
   * Walks to the level-`level` table holding `va` (creating tables on the way) and writes consecutive
   * leaves there while they fit in `rem` and in the table. Sets {@link #runBytes}; returns 0, FALLBACK
   * (a table occupies the first superpage slot) or an error.
   */
  #mapRun(va: number, pa: number, rem: number, level: number, leafBits: number): number {
    const mem = this.#mem;
    this.#runBytes = 0;
    let table = this.root;
    for (let l = this.levels; l > level; l--) {
      const ea = table + lvlIndex(va, l) * SL_ENTRY_SIZE;
      const lo = mem.read32(ea);
      if ((lo & RW) === 0) {
        table = this.#newTable(ea);
        if (table < 0) return PgtError.NOMEM;
      } else if ((lo & SL_PTE_PS) !== 0) {
        return PgtError.EXIST;
      } else {
        table = slEntryAddr(lo, mem.read32(ea + 4));
      }
    }
    const sz = lvlSize(level);
    const superpage = level > 1;
    let n = 0;
    for (let i = lvlIndex(va, level); i < SL_ENTRIES && n + sz <= rem; i++) {
      const ea = table + i * SL_ENTRY_SIZE;
      const lo = mem.read32(ea);
      if ((lo & RW) !== 0) {
        this.#runBytes = n;
        // A lower table where a superpage would go: map through it. A leaf: already mapped.
        if (superpage && (lo & SL_PTE_PS) === 0) return n > 0 ? 0 : FALLBACK;
        return PgtError.EXIST;
      }
      const p = pa + n;
      mem.write32(ea + 4, slMakeHi(p));
      mem.write32(ea, slMakeLo(p, leafBits, superpage));
      n += sz;
    }
    this.#runBytes = n;
    return 0;
  }

  /** Allocates a zeroed table page and links it from the entry at `linkEa`; -1 when out of pages. */
  #newTable(linkEa: number): number {
    const t = this.#alloc.allocTablePage();
    if (t < 0) return -1;
    this.#checkPage(t);
    const mem = this.#mem;
    mem.fill(t, 0, SZ_4K);
    mem.write32(linkEa + 4, slMakeHi(t));
    mem.write32(linkEa, slMakeLo(t, RW, false));
    this.#newTables.push(t);
    this.#newLinks.push(linkEa);
    this.#tablePages++;
    return t;
  }

  /**
   * Undoes a failed map: clears the `done` bytes it mapped at `iova`, then unlinks and frees the tables it
   * created, newest first. Freeing at once is safe: `map` is synchronous, so no DMA can have walked them.
   */
  #rollback(iova: number, done: number): void {
    if (done > 0) this.#clearRange(iova, iova + done - 1, null);
    const mem = this.#mem;
    this.#wcSpan = -1;
    for (let k = this.#newTables.length - 1; k >= 0; k--) {
      const link = this.#newLinks[k] as number;
      mem.write32(link, 0);
      mem.write32(link + 4, 0);
      this.#alloc.freeTablePage(this.#newTables[k] as number);
      this.#tablePages--;
    }
    this.#newTables.length = 0;
    this.#newLinks.length = 0;
  }

  unmap(iova: number, size: number, gather: IotlbGather | null): PgtResult {
    this.#live();
    if (!(Number.isSafeInteger(iova) && Number.isSafeInteger(size))) {
      return Number.isInteger(iova) && Number.isInteger(size) && iova >= 0 && size > 0 ? PgtError.RANGE : PgtError.INVAL;
    }
    if (iova < 0 || size <= 0 || ((iova | size) & (SZ_4K - 1)) !== 0) return PgtError.INVAL;
    if (iova + size > this.#iasLimit) return PgtError.RANGE;
    const last = iova + size - 1;

    if (size === SZ_4K) {
      // One page below existing tables: the exact-leaf case below, without walking from the root.
      const f = this.#leafTable(iova);
      if (f !== undefined) {
        const o = (Math.floor(iova / SZ_4K) & (SL_ENTRIES - 1)) * SL_ENTRY_SIZE;
        if ((dwordAt(f, o) & RW) === 0) return 0;
        putDword(f, o, 0);
        putDword(f, o + 4, 0);
        if (gather !== null) gatherAddRange(gather, iova, last, size);
        return size;
      }
    }

    // Refuse before touching anything if the unmap would reach a superpage it covers only in part.
    if (!this.#findLeaf(iova)) return 0;
    let leafLast = this.#leafBase + lvlSize(this.#leafLevel) - 1;
    if (this.#leafLevel > 1 && (this.#leafBase !== iova || last < leafLast)) return PgtError.SPLIT;
    if (this.#leafBase === iova && leafLast === last) {
      // Exactly the leaf just found (the common single-page unmap): what #clearRange would do, without walking
      // again. Every table above spans more than the leaf, so none is left empty by this unmap.
      const mem = this.#mem;
      mem.write32(this.#leafEa, 0);
      mem.write32(this.#leafEa + 4, 0);
      if (gather !== null) gatherAddRange(gather, iova, last, size);
      return size;
    }
    if (last > leafLast && this.#findLeaf(last) && this.#leafLevel > 1) {
      const base = this.#leafBase;
      leafLast = base + lvlSize(this.#leafLevel) - 1;
      // Cut at its end: an error only if the unmap would get there, i.e. no hole comes first.
      if (leafLast !== last && !this.#hasHole(iova, base - 1)) return PgtError.SPLIT;
    }
    return this.#clearRange(iova, last, gather);
  }

  /**
   * The bytes of the level-1 table that holds `va`'s leaf, when every level above is a present table
   * entry (no superpage, no hole); else undefined. Uses and refills the walk cache.
   */
  #leafTable(va: number): Uint8Array | undefined {
    const span = Math.floor(va / SZ_2M);
    const mem = this.#mem;
    if (span === this.#wcSpan) {
      const l = this.#wcLink;
      const o = this.#wcLinkOff;
      if (dwordAt(l, o) === this.#wcLinkLo && dwordAt(l, o + 4) === this.#wcLinkHi
        && mem.peekFrame(this.#wcLinkFn) === l && mem.peekFrame(this.#wcFn) === this.#wcTable) return this.#wcTable;
    }
    let table = this.root;
    let ea = 0;
    let lo = 0;
    let hi = 0;
    for (let l = this.levels; l >= 2; l--) {
      ea = table + lvlIndex(va, l) * SL_ENTRY_SIZE;
      lo = mem.read32(ea);
      if ((lo & RW) === 0 || (lo & SL_PTE_PS) !== 0) return undefined;
      hi = mem.read32(ea + 4);
      table = slEntryAddr(lo, hi);
    }
    // A link out of memory, or a table never written (reads as zeros), is left to the general path.
    if (!mem.contains(table, SZ_4K)) return undefined;
    const linkFn = Math.floor(ea / SZ_4K);
    const link = mem.peekFrame(linkFn);
    const t = mem.peekFrame(table / SZ_4K);
    if (link === undefined || t === undefined) return undefined;
    this.#wcSpan = span;
    this.#wcLinkFn = linkFn;
    this.#wcLink = link;
    this.#wcLinkOff = ea % SZ_4K;
    this.#wcLinkLo = lo;
    this.#wcLinkHi = hi;
    this.#wcFn = table / SZ_4K;
    this.#wcTable = t;
    return t;
  }

  /** Clears leaves from `start` to `last` up to the first hole; returns the bytes cleared. */
  #clearRange(start: number, last: number, gather: IotlbGather | null): number {
    this.#unmapped = 0;
    this.#gather = gather;
    this.#clearLevel(this.root, this.levels, 0, start, last);
    this.#gather = null;
    return this.#unmapped;
  }

  /**
   * Clears `[start, last]` (inside the span of `table`, a level-`level` table whose first entry maps IOVA
   * `base`). Returns false at a hole. Lower tables whose whole span was cleared are unlinked into the
   * gather when there is one.
   */
  #clearLevel(table: number, level: number, base: number, start: number, last: number): boolean {
    const mem = this.#mem;
    const sz = lvlSize(level);
    const iLast = lvlIndex(last, level);
    for (let i = lvlIndex(start, level); i <= iLast; i++) {
      const ea = table + i * SL_ENTRY_SIZE;
      const lo = mem.read32(ea);
      if ((lo & RW) === 0) return false;
      const eStart = base + i * sz;
      const eLast = eStart + sz - 1;
      if (level === 1 || (lo & SL_PTE_PS) !== 0) {
        if (eStart < start || eLast > last) {
          throw new SimInvariantError(`vtd-sl unmap reached a ${sz}-byte leaf at 0x${eStart.toString(16)} it covers only in part`);
        }
        mem.write32(ea, 0);
        mem.write32(ea + 4, 0);
        this.#unmapped += sz;
        if (this.#gather !== null) gatherAddRange(this.#gather, eStart, eLast, sz);
        continue;
      }
      const cs = start > eStart ? start : eStart;
      const cl = last < eLast ? last : eLast;
      const child = slEntryAddr(lo, mem.read32(ea + 4));
      if (!this.#clearLevel(child, level - 1, eStart, cs, cl)) return false;
      const g = this.#gather;
      if (g !== null && cs === eStart && cl === eLast) {
        // The whole span is gone: unlink the table; the caller frees it once the caches forget it.
        mem.write32(ea, 0);
        mem.write32(ea + 4, 0);
        this.#wcSpan = -1;
        g.freelist.push(child);
        gatherAddRange(g, eStart, eLast, 0);
        this.#tablePages--;
      }
    }
    return true;
  }

  /** Walks to the leaf mapping `va`; sets {@link #leafLevel} (0 for a hole), base and physical address. */
  #findLeaf(va: number): boolean {
    const mem = this.#mem;
    let table = this.root;
    for (let l = this.levels; l >= 1; l--) {
      const ea = table + lvlIndex(va, l) * SL_ENTRY_SIZE;
      const lo = mem.read32(ea);
      if ((lo & RW) === 0) {
        this.#leafLevel = 0;
        return false;
      }
      const addr = slEntryAddr(lo, mem.read32(ea + 4));
      if (l === 1 || (lo & SL_PTE_PS) !== 0) {
        this.#leafLevel = l;
        this.#leafEa = ea;
        this.#leafBase = va - (va % lvlSize(l));
        this.#leafPhys = addr;
        this.#leafLo = lo;
        return true;
      }
      table = addr;
    }
    this.#leafLevel = 0;
    return false;
  }

  /** Whether `[from, to]` holds an unmapped page (leaf by leaf; only on the rare end-inside-superpage path). */
  #hasHole(from: number, to: number): boolean {
    let va = from;
    while (va <= to) {
      if (!this.#findLeaf(va)) return true;
      va = this.#leafBase + lvlSize(this.#leafLevel);
    }
    return false;
  }

  iovaToPhys(iova: number): number {
    this.#live();
    if (!(Number.isSafeInteger(iova) && iova >= 0 && iova < this.#iasLimit)) return -1;
    if (!this.#findLeaf(iova)) return -1;
    return this.#leafPhys + (iova - this.#leafBase);
  }

  leafAt(iova: number): IoLeaf | null {
    this.#live();
    if (!(Number.isSafeInteger(iova) && iova >= 0 && iova < this.#iasLimit)) return null;
    if (!this.#findLeaf(iova)) return null;
    const prot = (this.#leafLo & RW) | ((this.#leafLo & SL_PTE_SNP) !== 0 ? IommuProt.CACHE : 0);
    return { iova: this.#leafBase, phys: this.#leafPhys, size: lvlSize(this.#leafLevel), level: this.#leafLevel, prot };
  }

  destroy(): void {
    this.#live();
    this.#wcSpan = -1;
    this.#freeTree(this.root, this.levels);
    this.#alloc.freeTablePage(this.root);
    this.#tablePages = 0;
    this.#destroyed = true;
  }

  #freeTree(table: number, level: number): void {
    if (level === 1) return;
    const mem = this.#mem;
    for (let i = 0; i < SL_ENTRIES; i++) {
      const ea = table + i * SL_ENTRY_SIZE;
      const lo = mem.read32(ea);
      if ((lo & RW) === 0 || (lo & SL_PTE_PS) !== 0) continue;
      const child = slEntryAddr(lo, mem.read32(ea + 4));
      this.#freeTree(child, level - 1);
      this.#alloc.freeTablePage(child);
      this.#tablePages--;
    }
  }

  #live(): void {
    if (this.#destroyed) throw new SimInvariantError('vtd-sl page table used after destroy()');
  }

  #checkPage(addr: number): void {
    if (!(Number.isSafeInteger(addr) && addr % SZ_4K === 0 && this.#mem.contains(addr, SZ_4K))) {
      throw new SimInvariantError(`table-page allocator returned 0x${addr.toString(16)}: not a 4 KiB page of memory`);
    }
  }
}
