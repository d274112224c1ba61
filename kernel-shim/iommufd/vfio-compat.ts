import { IommuProt } from '../../iommu/index.ts';
import { E } from '../errno.ts';
import type { Current } from '../task/current.ts';
import { copyArgszFromUser, copyBytesToUser, copyStructToUser, encode } from '../uapi/codec.ts';
import { PAGE_SIZE } from '../uapi/linux.ts';
import {
  VFIO, VFIO_API_VERSION, VFIO_DMA_MAP_FLAG, VFIO_DMA_UNMAP_FLAG, VFIO_EXT, VFIO_IOMMU_INFO, VFIO_IOMMU_TYPE1_INFO_CAP,
  vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info, vfio_iommu_type1_info_cap_iova_range,
  vfio_iommu_type1_info_dma_avail, vfio_iova_range,
} from '../uapi/vfio.ts';
import { IoPagetable, ULONG_MAX, type IovaRange } from './io-pagetable.ts';
import type { IommufdCtx } from './main.ts';
import type { IoasObject } from './objects.ts';

/**
 * The VFIO container ioctls on `/dev/iommu` (Linux `drivers/iommu/iommufd/vfio_compat.c`), acting on the
 * context's compat IOAS (`ctx.vfioIoas`, set by IOMMU_VFIO_IOAS or by a VFIO group attaching): every call
 * but GET_API_VERSION and CHECK_EXTENSION of the plain types needs it (`ENODEV` without one, where native
 * VFIO says `EINVAL` before SET_IOMMU). MAP/UNMAP are the IOAS's own operations with type1's argument
 * structs, so their errnos are iommufd's: a v2 unmap cutting a mapping is `ENOENT` (native type1:
 * `EINVAL`), and type1 v1 is emulated by disabling large pages so that an unmap can split an area.
 */

const PAGE = BigInt(PAGE_SIZE);
const PAGE_MASK = ULONG_MAX ^ (PAGE - 1n);
const U32_MAX = 0xffff_ffff;

/** Linux `get_compat_ioas`: the compat IOAS, or `-ENODEV`. */
function compatIoas(ctx: IommufdCtx): IoasObject | number {
  return ctx.vfioIoas ?? E.ENODEV;
}

/**
 * Linux `iommufd_vfio_check_extension`: 1 for TYPE1, TYPE1v2 and UNMAP_ALL; NOIOMMU 1 (dmasim's kernel is
 * built with `CONFIG_VFIO_NOIOMMU`, as distribution kernels are); DMA_CC_IOMMU from the compat IOAS
 * (`iommufd_vfio_cc_iommu`: `ENODEV` without one, else 1 unless one of its HWPTs does not enforce cache
 * coherency); 0 for UPDATE_VADDR, the nesting type and anything else.
 */
function checkExtension(ctx: IommufdCtx, type: bigint): number {
  switch (type) {
    case BigInt(VFIO_EXT.TYPE1_IOMMU):
    case BigInt(VFIO_EXT.TYPE1v2_IOMMU):
    case BigInt(VFIO_EXT.UNMAP_ALL):
      return 1;
    case BigInt(VFIO_EXT.NOIOMMU_IOMMU):
      return 1;
    case BigInt(VFIO_EXT.DMA_CC_IOMMU): {
      const ioas = compatIoas(ctx);
      if (typeof ioas === 'number') return ioas;
      return ioas.hwpts.every((h) => h.enforceCacheCoherency) ? 1 : 0;
    }
    default:
      return 0;
  }
}

/**
 * Linux `iommufd_vfio_set_iommu`: a type other than TYPE1 / TYPE1v2 `EINVAL` (NOIOMMU is accepted only in
 * no-IOMMU mode, which needs a no-IOMMU device bound to the context: dmasim's cdev never binds one);
 * no compat IOAS `ENODEV`; TYPE1 disables large pages (`iopt_disable_large_pages`: `EINVAL` once a
 * domain holds areas, `EADDRINUSE` for areas off page alignment). May be repeated.
 */
function setIommu(ctx: IommufdCtx, type: bigint): number {
  if (type !== BigInt(VFIO_EXT.TYPE1_IOMMU) && type !== BigInt(VFIO_EXT.TYPE1v2_IOMMU)) return E.EINVAL;
  const ioas = compatIoas(ctx);
  if (typeof ioas === 'number') return ioas;
  return type === BigInt(VFIO_EXT.TYPE1_IOMMU) ? ioas.iopt.disableLarge() : 0;
}

/**
 * Linux `iommufd_get_pagesizes`: the AND of the domains' page sizes (all ones with none), bits below
 * PAGE_SIZE folded into PAGE_SIZE (as `vfio_update_pgsize_bitmap`), at least the IOVA alignment.
 */
function pageSizes(ioas: IoasObject): bigint {
  let bitmap = ULONG_MAX;
  for (const h of ioas.hwpts) bitmap &= BigInt(h.domain.table?.pgsizeBitmap ?? PAGE_SIZE);
  if ((bitmap & ~PAGE_MASK) !== 0n) bitmap = (bitmap & PAGE_MASK) | PAGE;
  return bitmap > ioas.iopt.iovaAlignment ? bitmap : ioas.iopt.iovaAlignment;
}

/** A capability filler: writes what fits in `avail` bytes at `arg + at` and returns the capability's full size. */
type FillCap = (cur: Current, ioas: IoasObject, arg: bigint, at: number, avail: number) => number;

/** Linux `iommufd_fill_cap_dma_avail`: DMA_AVAIL with `avail = U32_MAX` (iommufd has no entry limit). */
const fillDmaAvail: FillCap = (cur, _ioas, arg, at, avail) => {
  const size = vfio_iommu_type1_info_dma_avail.size;
  if (avail >= size) {
    const b = encode(vfio_iommu_type1_info_dma_avail, { header: { id: VFIO_IOMMU_TYPE1_INFO_CAP.DMA_AVAIL, version: 1, next: 0 }, avail: U32_MAX });
    const r = copyBytesToUser(cur.mm, arg, at, b);
    if (r < 0) return r;
  }
  return size;
};

/**
 * Linux `iommufd_fill_cap_iova`: IOVA_RANGE with the holes of the reserved ranges; each range is written
 * if the buffer holds it, the header only if the whole capability fits.
 */
const fillIova: FillCap = (cur, ioas, arg, at, avail) => {
  const head = vfio_iommu_type1_info_cap_iova_range.size;
  const ranges = ioas.iopt.iovaRanges();
  for (let i = 0; i < ranges.length; i++) {
    const r = ranges[i] as IovaRange;
    if (avail < head + (i + 1) * vfio_iova_range.size) continue;
    const w = copyBytesToUser(cur.mm, arg, at + head + i * vfio_iova_range.size, encode(vfio_iova_range, { start: r.start, end: r.last }));
    if (w < 0) return w;
  }
  const size = head + ranges.length * vfio_iova_range.size;
  if (avail >= size) {
    const b = encode(vfio_iommu_type1_info_cap_iova_range, {
      header: { id: VFIO_IOMMU_TYPE1_INFO_CAP.IOVA_RANGE, version: 1, next: 0 }, nr_iovas: ranges.length, reserved: 0,
    });
    const r = copyBytesToUser(cur.mm, arg, at, b);
    if (r < 0) return r;
  }
  return size;
};

/** The capabilities in Linux's order (`fill_fns`). */
const FILL_CAPS: readonly FillCap[] = [fillDmaAvail, fillIova];

/**
 * Linux `iommufd_vfio_iommu_get_info`: `argsz` below 16 `EINVAL`; no compat IOAS `ENODEV`; flags
 * PGSIZES|CAPS, the page sizes, then DMA_AVAIL and IOVA_RANGE, each 8-byte aligned and linked by `next`
 * as far as `argsz` holds them. A short buffer is not an error: `argsz` comes back as the size needed and
 * `cap_offset` 0. `min(argsz, 24)` bytes of the struct are written back.
 */
function getInfo(ctx: IommufdCtx, cur: Current, arg: bigint): number {
  const c = copyArgszFromUser(cur.mm, arg, vfio_iommu_type1_info);
  if (typeof c === 'number') return c;
  const info = c.value;
  const ioas = compatIoas(ctx);
  if (typeof ioas === 'number') return ioas;
  info.flags = VFIO_IOMMU_INFO.PGSIZES;
  info.iova_pgsizes = pageSizes(ioas);
  info.cap_offset = 0;
  info.pad = 0;
  const argsz = info.argsz;
  let total = vfio_iommu_type1_info.size;
  let lastCap = -1;
  for (const fill of FILL_CAPS) {
    let size = fill(cur, ioas, arg, total, argsz > total ? argsz - total : 0);
    if (size < 0) return size;
    size = Math.ceil(size / 8) * 8;
    if (lastCap >= 0 && argsz >= total) {
      const next = new Uint8Array(4);
      new DataView(next.buffer).setUint32(0, total, true);
      const r = copyBytesToUser(cur.mm, arg, lastCap + 4, next);
      if (r < 0) return r;
    }
    lastCap = total;
    total += size;
  }
  if (argsz >= total) info.cap_offset = vfio_iommu_type1_info.size;
  info.argsz = total;
  info.flags |= VFIO_IOMMU_INFO.CAPS;
  return copyStructToUser(cur.mm, arg, vfio_iommu_type1_info, info, argsz);
}

/**
 * Linux `iommufd_vfio_map_dma`: `argsz` below 32 or a flag other than READ/WRITE (VADDR included)
 * `EINVAL`; no compat IOAS `ENODEV`; then IOAS_MAP's page store and `iopt_map_pages` at the fixed `iova`
 * (length 0 or off the alignment `EINVAL`, a reserved range `EINVAL`, wrap `EOVERFLOW`, overlap
 * `EEXIST`, `EFAULT`/`ENOMEM` when pinning for an attached device). Neither READ nor WRITE is not refused
 * here: with a domain the IOMMU driver rejects the empty protection (`EINVAL`). Pages are accounted as the
 * context says (RLIMIT_MODE), as Linux's `iopt_map_user_pages` does.
 */
function mapDma(ctx: IommufdCtx, cur: Current, arg: bigint): number {
  const c = copyArgszFromUser(cur.mm, arg, vfio_iommu_type1_dma_map);
  if (typeof c === 'number') return c;
  const map = c.value;
  if ((map.flags & ~(VFIO_DMA_MAP_FLAG.READ | VFIO_DMA_MAP_FLAG.WRITE)) !== 0) return E.EINVAL;
  const prot = ((map.flags & VFIO_DMA_MAP_FLAG.READ) !== 0 ? IommuProt.READ : 0) | ((map.flags & VFIO_DMA_MAP_FLAG.WRITE) !== 0 ? IommuProt.WRITE : 0);
  const ioas = compatIoas(ctx);
  if (typeof ioas === 'number') return ioas;
  const p = IoPagetable.checkPagesRange(map.vaddr, map.size);
  if (p < 0) return p;
  const pages = ctx.newPages(cur, map.vaddr, map.size, (prot & IommuProt.WRITE) !== 0);
  const r = ioas.iopt.mapPages([{ pages, startByte: map.vaddr - pages.uptr, length: map.size }], map.size, map.iova, prot, cur.thread);
  return typeof r === 'number' ? r : 0;
}

/**
 * Linux `iommufd_vfio_unmap_dma`: `argsz` below 24 or a flag other than ALL (DIRTY_BITMAP and VADDR
 * included) `EINVAL`; no compat IOAS `ENODEV`; ALL with a nonzero `iova` or `size` `EINVAL`, else
 * everything goes (success when empty). Otherwise, for type1 v1 (large pages off) the areas holding the
 * request's first and last byte are split there first (`iopt_cut_iova`: `EINVAL` off the alignment), then
 * `iopt_unmap_iova` (size 0 `EINVAL`, wrap `EOVERFLOW`, nothing there or a mapping cut `ENOENT`). `size`
 * becomes the bytes removed and the struct is written back, after an `ENOENT` too.
 */
function unmapDma(ctx: IommufdCtx, cur: Current, arg: bigint): number {
  const c = copyArgszFromUser(cur.mm, arg, vfio_iommu_type1_dma_unmap);
  if (typeof c === 'number') return c;
  const unmap = c.value;
  if ((unmap.flags & ~VFIO_DMA_UNMAP_FLAG.ALL) !== 0) return E.EINVAL;
  const ioas = compatIoas(ctx);
  if (typeof ioas === 'number') return ioas;
  let rc = 0;
  let unmapped: bigint;
  if ((unmap.flags & VFIO_DMA_UNMAP_FLAG.ALL) !== 0) {
    if (unmap.iova !== 0n || unmap.size !== 0n) return E.EINVAL;
    unmapped = ioas.iopt.unmapAll(cur.thread);
  } else {
    if (ioas.iopt.disableLargePages) {
      // Cut at the last byte and before the first; an IOVA of 0 has nothing before it.
      const cuts = [BigInt.asUintN(64, unmap.iova + unmap.size - 1n), BigInt.asUintN(64, unmap.iova - 1n)];
      const r = ioas.iopt.cutIova(unmap.iova !== 0n ? cuts : cuts.slice(0, 1));
      if (r < 0) return r;
    }
    const u = ioas.iopt.unmapIova(unmap.iova, unmap.size, cur.thread);
    rc = u.rc;
    unmapped = u.unmapped;
  }
  unmap.size = unmapped;
  const w = copyStructToUser(cur.mm, arg, vfio_iommu_type1_dma_unmap, unmap, vfio_iommu_type1_dma_unmap.minsz);
  return w < 0 ? w : rc;
}

/**
 * Linux `iommufd_vfio_ioctl`: the container ioctls by their full request number; DIRTY_PAGES and anything
 * else `ENOTTY` (`-ENOIOCTLCMD`). `arg` is the ioctl's `unsigned long`.
 */
export function iommufdVfioIoctl(ctx: IommufdCtx, cur: Current, request: number, arg: bigint): number {
  switch (request >>> 0) {
    case VFIO.GET_API_VERSION:
      return VFIO_API_VERSION;
    case VFIO.SET_IOMMU:
      return setIommu(ctx, arg);
    case VFIO.CHECK_EXTENSION:
      return checkExtension(ctx, arg);
    case VFIO.IOMMU_GET_INFO:
      return getInfo(ctx, cur, arg);
    case VFIO.IOMMU_MAP_DMA:
      return mapDma(ctx, cur, arg);
    case VFIO.IOMMU_UNMAP_DMA:
      return unmapDma(ctx, cur, arg);
    default:
      return E.ENOTTY;
  }
}
