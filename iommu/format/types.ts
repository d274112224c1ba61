import type { FrameAllocator } from '../../sim/index.ts';
import { FRAME_SHIFT } from '../../sim/index.ts';

/**
 * The format-independent side of the page-table library, as Linux's io-pgtable splits it: an ops table
 * (`map`/`unmap`/`iovaToPhys`/`destroy`) that the kernel's IOMMU driver calls without knowing the entry
 * layout, a caller-supplied allocator for table pages, and the gather record an unmap fills so that the
 * caller invalidates the IOTLB before it frees page-table pages.
 *
 * Results are plain numbers so hot paths allocate nothing: a value >= 0 is a byte count, a negative value
 * is one of {@link PgtError}.
 */

/** Why a page-table operation was refused. Every refusal leaves the tables exactly as they were. */
export const PgtError = {
  /** Unaligned to 4 KiB, zero length, not an integer, negative, or no read/write permission. */
  INVAL: -1,
  /** The range goes past the input address width (IAS), past 2^64, or the output past the OAS. */
  RANGE: -2,
  /** Part of the range is already mapped ("We require an unmap first", io-pgtable-arm). */
  EXIST: -3,
  /** The table-page allocator ran dry. */
  NOMEM: -4,
  /** The unmap would cut a superpage in two: unmap the whole superpage instead. */
  SPLIT: -5,
} as const;
/** A value of {@link PgtError}. */
export type PgtError = (typeof PgtError)[keyof typeof PgtError];

/**
 * Bytes (>= 0) or a {@link PgtError} (< 0): what `map` and `unmap` return. A plain `number` so that the
 * success path needs no object.
 */
export type PgtResult = number;

const ERRNO: Readonly<Record<PgtError, number>> = {
  [PgtError.INVAL]: 22, // EINVAL
  [PgtError.RANGE]: 34, // ERANGE, as io-pgtable-arm and generic_pt map_pages refuse an out-of-range IOVA/PA
  [PgtError.EXIST]: 17, // EEXIST, io-pgtable-arm's answer to a map over a live entry
  [PgtError.NOMEM]: 12, // ENOMEM
  [PgtError.SPLIT]: 22, // EINVAL, as generic_pt's unmap refuses to start inside a large IOPTE
};

const NAMES: Readonly<Record<PgtError, string>> = {
  [PgtError.INVAL]: 'EINVAL',
  [PgtError.RANGE]: 'ERANGE',
  [PgtError.EXIST]: 'EEXIST',
  [PgtError.NOMEM]: 'ENOMEM',
  [PgtError.SPLIT]: 'SPLIT',
};

/** Whether a {@link PgtResult} is an error. */
export function isPgtError(r: PgtResult): r is PgtError {
  return r < 0;
}

/** The positive Linux errno the kernel should report for a page-table error (SPLIT reports EINVAL). */
export function pgtErrno(e: PgtError): number {
  return ERRNO[e];
}

/** A short name for an error, for messages and test output. */
export function pgtErrorName(e: PgtError): string {
  return NAMES[e];
}

/** `prot` flags of `map`, with Linux's `IOMMU_*` values (include/linux/iommu.h). */
export const IommuProt = {
  READ: 1,
  WRITE: 2,
  /** Coherent with the CPU caches: VT-d sets SNP in the leaf. */
  CACHE: 4,
} as const;

/**
 * Where page-table pages come from. `allocTablePage` returns the physical address of a 4 KiB-aligned page
 * inside the table's {@link PhysicalMemory} (its old contents do not matter: the format zeroes it), or -1
 * when there is none; `freeTablePage` takes back a page the format no longer links from its tables.
 */
export interface TablePageAllocator {
  allocTablePage(): number;
  freeTablePage(addr: number): void;
}

/** A {@link TablePageAllocator} over a {@link FrameAllocator} (one frame per table page). */
export function frameTableAllocator(frames: FrameAllocator): TablePageAllocator {
  return {
    allocTablePage(): number {
      const f = frames.alloc();
      return f < 0 ? -1 : f * 2 ** FRAME_SHIFT;
    },
    freeTablePage(addr: number): void {
      frames.free(addr / 2 ** FRAME_SHIFT);
    },
  };
}

/**
 * What an unmap touched (Linux `struct iommu_iotlb_gather`): the IOVA range whose translations the caller
 * must invalidate, the largest page size among them (the invalidation granularity hint), and the table
 * pages that the unmap unlinked. Those pages may still sit in the IOMMU's paging-structure caches, so the
 * caller frees them ({@link releaseGather}) only after the invalidation has completed, as Linux's
 * `iommu_iotlb_sync` frees `gather->freelist` after the flush. A non-empty freelist also means non-leaf
 * entries changed, so VT-d's invalidation hint (IH) must be 0.
 *
 * One gather may collect several unmaps; the range grows to cover them all.
 */
export interface IotlbGather {
  /** First IOVA touched, or -1 when nothing was. */
  start: number;
  /** Last IOVA touched, inclusive (-1 when nothing was). */
  last: number;
  /** Largest leaf size cleared, in bytes (0 when none). */
  pgsize: number;
  /** Table pages unlinked by the unmaps, to free after invalidation. */
  readonly freelist: number[];
}

/** A fresh, empty gather. Allocate once and {@link resetGather} it between uses. */
export function createGather(): IotlbGather {
  return { start: -1, last: -1, pgsize: 0, freelist: [] };
}

/** Empties a gather whose range has been invalidated and whose pages were released. */
export function resetGather(g: IotlbGather): void {
  g.start = -1;
  g.last = -1;
  g.pgsize = 0;
  // Setting an array's length is costly even when nothing changes; unmap-heavy loops reset gathers often.
  if (g.freelist.length !== 0) g.freelist.length = 0;
}

/** Whether a gather holds nothing to invalidate. */
export function gatherIsEmpty(g: IotlbGather): boolean {
  return g.start < 0;
}

/** Grows a gather to cover `[start, last]` cleared with pages of `pgsize` bytes. */
export function gatherAddRange(g: IotlbGather, start: number, last: number, pgsize: number): void {
  if (g.start < 0 || start < g.start) g.start = start;
  if (last > g.last) g.last = last;
  if (pgsize > g.pgsize) g.pgsize = pgsize;
}

/**
 * Frees every page on the gather's freelist through `alloc` and empties the list. Call it after the
 * invalidation of the gather's range has completed; the range is left for the caller to reset.
 */
export function releaseGather(g: IotlbGather, alloc: TablePageAllocator): number {
  const n = g.freelist.length;
  for (let i = 0; i < n; i++) alloc.freeTablePage(g.freelist[i] as number);
  g.freelist.length = 0;
  return n;
}

/** One leaf mapping, as {@link IoPageTableOps.leafAt} reports it. */
export interface IoLeaf {
  /** IOVA of the first byte the leaf maps. */
  readonly iova: number;
  /** Physical address it maps to. */
  readonly phys: number;
  /** Bytes it maps (one of the sizes in `pgsizeBitmap`). */
  readonly size: number;
  /** Table level holding it (1 for 4 KiB). */
  readonly level: number;
  /** {@link IommuProt} flags it grants. */
  readonly prot: number;
}

/**
 * An I/O page-table format (Linux `struct io_pgtable_ops` plus its `io_pgtable_cfg`): the only interface
 * the IOMMU driver uses to change translations. Addresses and sizes are `number`s; anything that is not a
 * non-negative integer below 2^53 is refused with an error, never thrown at (see `wide.ts` for `bigint`
 * callers). Using a table after {@link IoPageTableOps.destroy} is a simulator bug.
 */
export interface IoPageTableOps {
  /** Format name, e.g. `vtd-sl`. */
  readonly format: string;
  /** Page sizes `map` may use, as a bitmap of sizes (4 KiB | 2 MiB | 1 GiB for VT-d second level). */
  readonly pgsizeBitmap: number;
  /** Input (IOVA) address bits: 39 for a 3-level VT-d table, 48 for 4 levels. */
  readonly iasBits: number;
  /** Output (physical) address bits the entries may hold. */
  readonly oasBits: number;
  /** Table levels. */
  readonly levels: number;
  /** Physical address of the top-level table page (what the context entry points at). */
  readonly root: number;
  /** Table pages currently owned, the root included. */
  readonly tablePages: number;
  /**
   * Maps `size` bytes at `iova` to `paddr` with `prot` ({@link IommuProt}), using the largest page size
   * the alignment of iova, paddr and the remaining size allows at each step. Returns `size`, or an error
   * with nothing changed.
   */
  map(iova: number, paddr: number, size: number, prot: number): PgtResult;
  /**
   * Unmaps `size` bytes at `iova`, stopping at the first hole as Linux's `iommu_unmap` does. Returns the
   * bytes unmapped (0 if `iova` itself is not mapped), or an error with nothing changed. The cleared
   * range and the unlinked table pages go into `gather`; with no gather, tables are never unlinked.
   */
  unmap(iova: number, size: number, gather: IotlbGather | null): PgtResult;
  /** The physical address `iova` translates to, or -1 if it is not mapped. */
  iovaToPhys(iova: number): number;
  /** The leaf that maps `iova`, or null (for explainers and tests; allocates, so not for hot paths). */
  leafAt(iova: number): IoLeaf | null;
  /**
   * Frees every table page, the root included. The caller must already have detached the table from
   * the hardware and invalidated its caches.
   */
  destroy(): void;
}
