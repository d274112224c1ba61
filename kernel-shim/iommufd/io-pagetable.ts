import type { SimProcess } from '../../sim/index.ts';
import { createGather } from '../../iommu/index.ts';
import { E } from '../errno.ts';
import type { IommuCore } from '../iommu/core.ts';
import type { IommuDomain } from '../iommu/domain.ts';
import { PAGE_SIZE } from '../uapi/linux.ts';
import type { IoptPages } from './pages.ts';
import { alignUp, holes, lowestBit, overlaps, roundupPow2, union, type IovaRange } from './ranges.ts';

export type { IovaRange } from './ranges.ts';

/**
 * The IO page table of one IOAS (Linux `drivers/iommu/iommufd/io_pagetable.c`, `struct io_pagetable`):
 * the areas (IOVA ranges over pinned-page stores), the allowed ranges (ALLOW_IOVAS: where automatic IOVAs
 * may go), the reserved ranges (a domain's aperture complement and each attached device's reserved
 * regions, tagged by owner), the IOVA alignment (1 with no domain, the smallest IOMMU page with one) and
 * the domains every area is mapped into. IOVAs are `bigint` over the whole `unsigned long` space.
 */

const PAGE = BigInt(PAGE_SIZE);
/** `ULONG_MAX` (x86-64). */
export const ULONG_MAX = (1n << 64n) - 1n;
/** `SIZE_MAX`. */
const SIZE_MAX = ULONG_MAX;
/** x86 `HPAGE_SIZE`: the cap on an automatic IOVA's alignment (`max_alignment` with THP). */
const HPAGE = 2n << 20n;

/** A reserved range and who reserved it (a domain or a device). */
interface Reserved extends IovaRange {
  readonly owner: unknown;
}

/** Linux `struct iopt_area`: `[iova, last]` over `pages` from byte `startByte`. */
export interface IoptArea extends IovaRange {
  readonly pages: IoptPages;
  readonly startByte: bigint;
  /** `IOMMU_READ` / `IOMMU_WRITE` (`IommuProt`). */
  readonly prot: number;
  /** Frames pinned for it while the table has a domain (null: not pinned). */
  frames: number[] | null;
}

/** One piece of a COPY source (Linux `struct iopt_pages_list`). */
export interface PagesSlice {
  readonly pages: IoptPages;
  readonly startByte: bigint;
  readonly length: bigint;
}


/** Linux `struct io_pagetable`. */
export class IoPagetable {
  readonly iommu: IommuCore | null;
  /** Areas sorted by IOVA, never overlapping. */
  readonly areas: IoptArea[] = [];
  /** ALLOW_IOVAS ranges (empty: no restriction). */
  allowed: IovaRange[] = [];
  readonly reserved: Reserved[] = [];
  readonly domains: IommuDomain[] = [];
  iovaAlignment = 1n;
  disableLargePages = false;

  constructor(iommu: IommuCore | null) {
    this.iommu = iommu;
  }

  /** The first area intersecting `[start, last]`. */
  areaIterFirst(start: bigint, last: bigint): IoptArea | undefined {
    return this.areas.find((a) => overlaps(a, start, last));
  }

  #reservedHit(start: bigint, last: bigint): boolean {
    return this.reserved.some((r) => overlaps(r, start, last));
  }

  /** IOAS_IOVA_RANGES: the holes of the reserved ranges over `[0, ULONG_MAX]`. */
  iovaRanges(): IovaRange[] {
    return holes(this.reserved, 0n, ULONG_MAX);
  }

  /**
   * Linux `iopt_alloc_iova`: a free IOVA for `length` bytes of user memory at `uptr`, never 0 (the search
   * runs over `[PAGE_SIZE, ULONG_MAX - PAGE_SIZE]`), aligned to `roundup_pow_of_two(length)` capped by the
   * lowest set bit of `uptr` and by the huge-page size, keeping `uptr`'s page offset; inside the allowed
   * ranges if there are any, outside reserved ranges and areas. `-EOVERFLOW` for a huge length, `-EINVAL`
   * for an alignment below the table's, `-ENOSPC` when nothing fits.
   */
  allocIova(uptr: bigint, length: bigint): bigint | number {
    const pageOffset = uptr % PAGE;
    if (length === 0n || length >= ULONG_MAX / 2n) return E.EOVERFLOW;
    let align = uptr === 0n ? roundupPow2(length) : (roundupPow2(length) < lowestBit(uptr) ? roundupPow2(length) : lowestBit(uptr));
    if (align >= HPAGE) align = HPAGE;
    if (align < this.iovaAlignment) return E.EINVAL;
    const lo = PAGE;
    const hi = ULONG_MAX - PAGE;
    const spans = this.allowed.length === 0
      ? [{ start: lo, last: hi }]
      : union(this.allowed).flatMap((r) => (r.last < lo || r.start > hi ? [] : [{ start: r.start < lo ? lo : r.start, last: r.last > hi ? hi : r.last }]));
    const used: IovaRange[] = [...this.reserved, ...this.areas];
    for (const span of spans) {
      if (span.last - span.start < length - 1n) continue;
      const s = alignUp(span.start, align, pageOffset);
      if (s > span.last || span.last - s < length - 1n) continue;
      for (const h of holes(used, s, span.last)) {
        if (h.last - h.start < length - 1n) continue;
        const hs = alignUp(h.start, align, pageOffset);
        if (hs > h.last || h.last - hs < length - 1n) continue;
        return hs;
      }
    }
    return E.ENOSPC;
  }

  /** Linux `iopt_check_iova`: alignment `EINVAL`, wrap `EOVERFLOW`, reserved `EINVAL`, overlap `EEXIST`. */
  checkIova(iova: bigint, length: bigint): number {
    if ((iova & (this.iovaAlignment - 1n)) !== 0n) return E.EINVAL;
    const last = iova + length - 1n;
    if (last > ULONG_MAX) return E.EOVERFLOW;
    if (this.#reservedHit(iova, last)) return E.EINVAL;
    if (this.areaIterFirst(iova, last) !== undefined) return E.EEXIST;
    return 0;
  }

  /**
   * Linux `iopt_map_pages` (`iopt_alloc_area_pages` + `iopt_fill_domains_pages`): `length` zero or not a
   * multiple of the alignment `EINVAL`; an automatic IOVA (`fixed` undefined) from {@link allocIova} or the
   * fixed one checked; each slice becomes an area (`EPERM` for a writeable area over read-only pages,
   * `EINVAL` for a page offset below the alignment); then every area is pinned and mapped into every
   * domain (`EFAULT`, `ENOMEM`), all or nothing. Returns the IOVA.
   */
  mapPages(slices: readonly PagesSlice[], length: bigint, fixed: bigint | undefined, prot: number, cpu?: SimProcess): bigint | number {
    if ((length & (this.iovaAlignment - 1n)) !== 0n || length === 0n) return E.EINVAL;
    const first = slices[0];
    if (first === undefined) return E.EINVAL;
    let iova: bigint;
    if (fixed === undefined) {
      const r = this.allocIova(first.pages.uptr + first.startByte, length);
      if (typeof r === 'number') return r;
      iova = r;
    } else {
      const r = this.checkIova(fixed, length);
      if (r < 0) return r;
      iova = fixed;
    }
    const made: IoptArea[] = [];
    let at = iova;
    for (const s of slices) {
      if ((prot & 2) !== 0 && !s.pages.writable) return E.EPERM;
      if (((s.startByte % PAGE) & (this.iovaAlignment - 1n)) !== 0n) return E.EINVAL;
      if (at + s.length - 1n > ULONG_MAX) return E.EOVERFLOW;
      made.push({ start: at, last: at + s.length - 1n, pages: s.pages, startByte: s.startByte, prot, frames: null });
      at += s.length;
    }
    for (const a of made) {
      a.pages.refs++;
      this.#link(a);
    }
    for (let i = 0; i < made.length; i++) {
      const r = this.#fillArea(made[i] as IoptArea, cpu);
      if (r < 0) {
        for (const a of made) this.#removeArea(a, cpu);
        return r;
      }
    }
    return iova;
  }

  #link(a: IoptArea): void {
    let i = 0;
    while (i < this.areas.length && (this.areas[i] as IoptArea).start < a.start) i++;
    this.areas.splice(i, 0, a);
  }

  /** Page indexes of an area in its pages. */
  static span(a: IoptArea): [number, number] {
    return [Number(a.startByte / PAGE), Number((a.startByte + (a.last - a.start)) / PAGE)];
  }

  /** Pins `a` and maps it into every domain (nothing to do with no domain: pinning is lazy). */
  #fillArea(a: IoptArea, cpu?: SimProcess): number {
    if (this.domains.length === 0) return 0;
    const r = this.#pinArea(a);
    if (r < 0) return r;
    for (let i = 0; i < this.domains.length; i++) {
      const m = this.#mapArea(a, this.domains[i] as IommuDomain, cpu);
      if (m < 0) {
        for (let j = 0; j < i; j++) this.#unmapArea(a, this.domains[j] as IommuDomain, cpu);
        this.#unpinArea(a);
        return m;
      }
    }
    return 0;
  }

  #pinArea(a: IoptArea): number {
    if (a.frames !== null) return 0;
    const [f, l] = IoPagetable.span(a);
    const frames = a.pages.pin(f, l);
    if (typeof frames === 'number') return frames;
    a.frames = frames;
    return 0;
  }

  #unpinArea(a: IoptArea): void {
    if (a.frames === null) return;
    const [f, l] = IoPagetable.span(a);
    a.pages.unpin(f, l);
    a.frames = null;
  }

  /**
   * Maps a pinned area into `d`, physically contiguous frames as one run; with large pages disabled one
   * page at a time (Linux `batch_iommu_map_small`), so no IOPTE spans a later split.
   */
  #mapArea(a: IoptArea, d: IommuDomain, cpu?: SimProcess): number {
    const iommu = this.iommu;
    const frames = a.frames;
    if (iommu === null || frames === null) return E.EINVAL;
    const base = Number(a.start);
    const small = this.disableLargePages;
    let runStart = 0;
    for (let i = 1; i <= frames.length; i++) {
      if (!small && i < frames.length && frames[i] === (frames[i - 1] as number) + 1) continue;
      const r = iommu.map(d, base + runStart * PAGE_SIZE, (frames[runStart] as number) * PAGE_SIZE, (i - runStart) * PAGE_SIZE, a.prot, cpu);
      if (r < 0) {
        if (runStart > 0) iommu.unmap(d, base, runStart * PAGE_SIZE, cpu);
        return r;
      }
      runStart = i;
    }
    return 0;
  }

  /** Strict unmap of an area from `d`: invalidated and waited for before the caller unpins. */
  #unmapArea(a: IoptArea, d: IommuDomain, cpu?: SimProcess): void {
    const iommu = this.iommu;
    if (iommu === null || a.frames === null) return;
    const g = createGather();
    iommu.unmapNoSync(d, Number(a.start), Number(a.last - a.start + 1n), g);
    iommu.syncGather(d, g, cpu);
  }

  /** Removes an area: out of every domain (strict), unpinned, unlinked, its pages released. */
  #removeArea(a: IoptArea, cpu?: SimProcess): void {
    const i = this.areas.indexOf(a);
    if (i < 0) return;
    for (const d of this.domains) this.#unmapArea(a, d, cpu);
    this.#unpinArea(a);
    this.areas.splice(i, 1);
    a.pages.refs--;
  }

  /**
   * Linux `iopt_unmap_iova_range`: removes, lowest first, every area inside `[start, last]`; an area that
   * sticks out of the range stops it with `-ENOENT` (areas removed before it stay removed); nothing at all
   * is `-ENOENT`. Returns the bytes removed.
   */
  unmapRange(start: bigint, last: bigint, cpu?: SimProcess): { rc: number; unmapped: bigint } {
    let unmapped = 0n;
    for (;;) {
      const a = this.areaIterFirst(start, last);
      if (a === undefined) break;
      if (a.start < start || a.last > last) return { rc: E.ENOENT, unmapped };
      this.#removeArea(a, cpu);
      unmapped += a.last - a.start + 1n;
    }
    return { rc: unmapped > 0n ? 0 : E.ENOENT, unmapped };
  }

  /**
   * Linux `iopt_area_split`: `a` becomes `[a.start, iova]` and `[iova + 1, a.last]` over the same pages
   * (nothing to do when `iova` is the area's first or last byte). `-EINVAL` when the second part's IOVA or
   * page offset breaks the alignment, or when a domain holds the area and large pages are on (an IOPTE
   * could span the cut). The domains' IOPTEs stay as they are.
   */
  #splitArea(a: IoptArea, iova: bigint): number {
    if (iova === a.start || iova === a.last) return 0;
    const newStart = iova + 1n;
    const m = this.iovaAlignment - 1n;
    const rhsByte = a.startByte + (newStart - a.start);
    if ((newStart & m) !== 0n || (rhsByte & m) !== 0n) return E.EINVAL;
    if (a.frames !== null && !this.disableLargePages) return E.EINVAL;
    const lhs: IoptArea = { start: a.start, last: iova, pages: a.pages, startByte: a.startByte, prot: a.prot, frames: null };
    const rhs: IoptArea = { start: newStart, last: a.last, pages: a.pages, startByte: rhsByte, prot: a.prot, frames: null };
    if (a.frames !== null) {
      const [lf, ll] = IoPagetable.span(lhs);
      const [rf] = IoPagetable.span(rhs);
      lhs.frames = a.frames.slice(0, ll - lf + 1);
      rhs.frames = a.frames.slice(rf - lf);
      // A page both halves cover (possible only below page alignment) needs a pin reference per half.
      if (rf === ll) a.pages.pin(rf, rf);
    }
    const i = this.areas.indexOf(a);
    this.areas.splice(i, 1, lhs, rhs);
    a.pages.refs++;
    return 0;
  }

  /**
   * Linux `iopt_cut_iova`: splits the area holding each of `iovas` so that it ends there (the type1 v1
   * emulation cuts at both ends of an unmap request). Stops at the first error.
   */
  cutIova(iovas: readonly bigint[]): number {
    for (const iova of iovas) {
      const a = this.areaIterFirst(iova, iova);
      if (a === undefined) continue;
      const r = this.#splitArea(a, iova);
      if (r < 0) return r;
    }
    return 0;
  }

  /** Linux `iopt_unmap_iova`: length 0 `EINVAL`, wrap `EOVERFLOW`, then {@link unmapRange}. */
  unmapIova(iova: bigint, length: bigint, cpu?: SimProcess): { rc: number; unmapped: bigint } {
    if (length === 0n) return { rc: E.EINVAL, unmapped: 0n };
    const last = iova + length - 1n;
    if (last > ULONG_MAX) return { rc: E.EOVERFLOW, unmapped: 0n };
    return this.unmapRange(iova, last, cpu);
  }

  /** Linux `iopt_unmap_all`: everything; an empty table is success. */
  unmapAll(cpu?: SimProcess): bigint {
    return this.unmapRange(0n, ULONG_MAX, cpu).unmapped;
  }

  /**
   * Linux `iopt_get_pages`: the slices behind `[iova, iova + length)`, which must be covered by areas
   * without a hole (the first may start before `iova`, the last end after): length 0 `EINVAL`, wrap
   * `EOVERFLOW`, a hole `ENOENT`.
   */
  getPages(iova: bigint, length: bigint): PagesSlice[] | number {
    if (length === 0n) return E.EINVAL;
    const lastIova = iova + length - 1n;
    if (lastIova > ULONG_MAX) return E.EOVERFLOW;
    const out: PagesSlice[] = [];
    let cur = iova;
    let a = this.areaIterFirst(iova, iova);
    while (a !== undefined) {
      const last = lastIova < a.last ? lastIova : a.last;
      out.push({ pages: a.pages, startByte: a.startByte + (cur - a.start), length: last - cur + 1n });
      if (lastIova <= a.last) return out;
      cur = a.last + 1n;
      const next = this.areaIterFirst(cur, cur);
      a = next !== undefined && next.start === cur ? next : undefined;
    }
    return E.ENOENT;
  }

  /**
   * Linux `iopt_set_allow_iova` after `iommufd_ioas_load_iovas`: replaces the allowed list; any allowed
   * range crossing a reserved one `-EADDRINUSE` (the old list stays).
   */
  setAllowed(ranges: IovaRange[]): number {
    if (ranges.some((r) => this.#reservedHit(r.start, r.last))) return E.EADDRINUSE;
    this.allowed = ranges;
    return 0;
  }

  /** Linux `iopt_reserve_iova`: `-EADDRINUSE` over an area or an allowed range. */
  reserve(start: bigint, last: bigint, owner: unknown): number {
    if (this.areaIterFirst(start, last) !== undefined || this.allowed.some((r) => overlaps(r, start, last))) return E.EADDRINUSE;
    this.reserved.push({ start, last, owner });
    return 0;
  }

  /** Linux `iopt_remove_reserved_iova`. */
  removeReserved(owner: unknown): void {
    for (let i = this.reserved.length - 1; i >= 0; i--) if ((this.reserved[i] as Reserved).owner === owner) this.reserved.splice(i, 1);
  }

  /** Linux `iopt_check_iova_alignment`: every area's IOVA, length and page offset. */
  #checkAlignment(align: bigint): number {
    const m = align - 1n;
    for (const a of this.areas) if ((a.start & m) !== 0n || ((a.last - a.start + 1n) & m) !== 0n || ((a.startByte % PAGE) & m) !== 0n) return E.EADDRINUSE;
    return 0;
  }

  /**
   * Linux `iopt_table_add_domain`: the alignment rises to the domain's smallest page (existing areas must
   * conform, `-EADDRINUSE`), the complement of its aperture `[0, apertureEnd]` is reserved (`-EADDRINUSE`
   * over an area or allowed range), then every area is pinned (the first domain) and mapped into it
   * (`-EFAULT` for an address that has gone, `-ENOMEM`). On failure nothing changes.
   */
  addDomain(d: IommuDomain, apertureEnd: bigint, cpu?: SimProcess): number {
    const newAlign = this.iovaAlignment > PAGE ? this.iovaAlignment : PAGE;
    if (newAlign !== this.iovaAlignment) {
      const r = this.#checkAlignment(newAlign);
      if (r < 0) return r;
    }
    if (apertureEnd !== ULONG_MAX) {
      const r = this.reserve(apertureEnd + 1n, ULONG_MAX, d);
      if (r < 0) return r;
    }
    const first = this.domains.length === 0;
    for (let i = 0; i < this.areas.length; i++) {
      const a = this.areas[i] as IoptArea;
      let r = first ? this.#pinArea(a) : 0;
      if (r === 0) {
        r = this.#mapArea(a, d, cpu);
        if (r < 0 && first) this.#unpinArea(a);
      }
      if (r < 0) {
        for (let j = 0; j < i; j++) {
          const b = this.areas[j] as IoptArea;
          this.#unmapArea(b, d, cpu);
          if (first) this.#unpinArea(b);
        }
        this.removeReserved(d);
        return r;
      }
    }
    this.iovaAlignment = newAlign;
    this.domains.push(d);
    return 0;
  }

  /** Linux `iopt_table_remove_domain`: unmapped from it, unpinned with the last domain, alignment recomputed. */
  removeDomain(d: IommuDomain, cpu?: SimProcess): void {
    const i = this.domains.indexOf(d);
    if (i < 0) return;
    for (const a of this.areas) this.#unmapArea(a, d, cpu);
    this.domains.splice(i, 1);
    if (this.domains.length === 0) for (const a of this.areas) this.#unpinArea(a);
    this.removeReserved(d);
    this.#calculateAlignment();
  }

  /** Linux `iopt_calculate_iova_alignment`: PAGE_SIZE with large pages off or a domain, else 1. */
  #calculateAlignment(): number {
    const align = this.disableLargePages || this.domains.length > 0 ? PAGE : 1n;
    if (align > this.iovaAlignment) {
      const r = this.#checkAlignment(align);
      if (r < 0) return r;
    }
    this.iovaAlignment = align;
    return 0;
  }

  /** Linux `iopt_disable_large_pages`: `-EINVAL` when domains already have areas; `-EADDRINUSE` for misaligned areas. */
  disableLarge(): number {
    if (this.disableLargePages) return 0;
    if (this.domains.length > 0 && this.areas.length > 0) return E.EINVAL;
    this.disableLargePages = true;
    const r = this.#calculateAlignment();
    if (r < 0) this.disableLargePages = false;
    return r;
  }

  /** Linux `iopt_enable_large_pages`. */
  enableLarge(): void {
    this.disableLargePages = false;
    this.#calculateAlignment();
  }

  /** Whether `length` from `iopt_alloc_pages` is acceptable: `> SIZE_MAX - PAGE_SIZE` `EINVAL`, `uptr + length` wrap `EOVERFLOW`. */
  static checkPagesRange(uptr: bigint, length: bigint): number {
    if (length > SIZE_MAX - PAGE) return E.EINVAL;
    if (uptr + length > ULONG_MAX) return E.EOVERFLOW;
    return 0;
  }
}
