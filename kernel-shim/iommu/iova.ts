/**
 * The IOVA allocator of a DMA domain (Linux `drivers/iommu/iova.c`), in page frame numbers: ranges are
 * taken top-down below a limit, size-aligned (a range of n pages starts at a multiple of n rounded up to a
 * power of two), never at pfn 0 (`start_pfn` 1), with reserved ranges (the MSI window, PCI windows) held
 * as permanent allocations. Freed ranges of up to 32 pages go to a range cache first (`iova_rcache`), from
 * which the next allocation of that size is served LIFO, so a map/unmap loop reuses one IOVA, as Linux's
 * does.
 */

/** Sizes the range cache holds: 2^0 .. 2^(RCACHE_ORDERS - 1) pages (Linux `IOVA_RANGE_CACHE_MAX_SIZE` 6). */
const RCACHE_ORDERS = 6;
/** Ranges one cache order holds (Linux: two per-CPU magazines of 127 plus a depot; one CPU here). */
const RCACHE_DEPTH = 1024;

export class IovaDomain {
  /** Allocated ranges, sorted by first pfn: `lo[i]..hi[i]` inclusive. */
  readonly #lo: number[] = [];
  readonly #hi: number[] = [];
  readonly #rcache: number[][] = Array.from({ length: RCACHE_ORDERS }, () => []);
  readonly startPfn: number;

  constructor(startPfn = 1) {
    this.startPfn = startPfn;
  }

  /** Ranges allocated (reserved ones and cached ones included). */
  get ranges(): number {
    return this.#lo.length;
  }

  /** Linux `reserve_iova`: marks `[loPfn, hiPfn]` used (merging with what overlaps). */
  reserve(loPfn: number, hiPfn: number): void {
    let i = this.#find(loPfn);
    // Merge every overlapping or adjacent range into one.
    let lo = loPfn;
    let hi = hiPfn;
    if (i > 0 && (this.#hi[i - 1] as number) >= lo - 1) i--;
    let j = i;
    while (j < this.#lo.length && (this.#lo[j] as number) <= hi + 1) {
      lo = Math.min(lo, this.#lo[j] as number);
      hi = Math.max(hi, this.#hi[j] as number);
      j++;
    }
    this.#lo.splice(i, j - i, lo);
    this.#hi.splice(i, j - i, hi);
  }

  /** The first index whose range starts at or after `pfn`. */
  #find(pfn: number): number {
    let a = 0;
    let b = this.#lo.length;
    while (a < b) {
      const m = (a + b) >>> 1;
      if ((this.#lo[m] as number) < pfn) a = m + 1;
      else b = m;
    }
    return a;
  }

  /**
   * Linux `alloc_iova_fast`: `pages` pages at or below `limitPfn`, from the cache when the size is small;
   * returns the first pfn or -1. Sizes below 32 pages are rounded up to a power of two.
   */
  allocFast(pages: number, limitPfn: number): number {
    if (pages === 1) {
      const c0 = this.#rcache[0] as number[];
      const n = c0.length;
      if (n !== 0 && (c0[n - 1] as number) <= limitPfn) return c0.pop() as number;
    }
    let size = pages;
    if (size < 2 ** (RCACHE_ORDERS - 1)) size = 2 ** Math.ceil(Math.log2(size));
    const order = Math.log2(size);
    if (Number.isInteger(order) && order < RCACHE_ORDERS) {
      const c = this.#rcache[order] as number[];
      for (let i = c.length - 1; i >= 0; i--) {
        const pfn = c[i] as number;
        if (pfn + size - 1 <= limitPfn) {
          c.splice(i, 1);
          return pfn;
        }
      }
    }
    return this.alloc(size, limitPfn);
  }

  /** Linux `alloc_iova(size_aligned = true)`: the highest free, size-aligned range at or below `limitPfn`, or -1. */
  alloc(pages: number, limitPfn: number): number {
    const align = 2 ** Math.ceil(Math.log2(pages));
    const lo = this.#lo;
    const hi = this.#hi;
    for (let i = lo.length; i >= 0; i--) {
      // The gap below range i (above range i - 1), clipped to the limit.
      const bottom = i === 0 ? this.startPfn : (hi[i - 1] as number) + 1;
      if (bottom > limitPfn) continue;
      const top = i === lo.length ? limitPfn : Math.min(limitPfn, (lo[i] as number) - 1);
      const start = Math.floor((top + 1 - pages) / align) * align;
      if (start >= bottom) {
        lo.splice(i, 0, start);
        hi.splice(i, 0, start + pages - 1);
        return start;
      }
    }
    return -1;
  }

  /** Linux `free_iova_fast`: small sizes go to the cache (still allocated in the tree), others are freed. */
  freeFast(pfn: number, pages: number): void {
    if (pages === 1) {
      const c0 = this.#rcache[0] as number[];
      if (c0.length < RCACHE_DEPTH) {
        c0.push(pfn);
        return;
      }
    }
    let size = pages;
    if (size < 2 ** (RCACHE_ORDERS - 1)) size = 2 ** Math.ceil(Math.log2(size));
    const order = Math.log2(size);
    if (Number.isInteger(order) && order < RCACHE_ORDERS) {
      const c = this.#rcache[order] as number[];
      if (c.length < RCACHE_DEPTH) {
        c.push(pfn);
        return;
      }
    }
    this.free(pfn);
  }

  /** Linux `free_iova`: removes the range starting at `pfn`. Freeing what is not allocated is a kernel bug. */
  free(pfn: number): boolean {
    const i = this.#find(pfn);
    if (this.#lo[i] !== pfn) return false;
    this.#lo.splice(i, 1);
    this.#hi.splice(i, 1);
    return true;
  }

  /** Empties the range cache into the tree (Linux `free_cpu_cached_iovas`, at domain teardown). */
  flushRcache(): void {
    for (const c of this.#rcache) {
      for (const pfn of c) this.free(pfn);
      c.length = 0;
    }
  }
}
