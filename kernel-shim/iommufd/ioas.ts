import { IommuProt } from '../../iommu/index.ts';
import { E } from '../errno.ts';
import type { Current } from '../task/current.ts';
import { copyArrayFromUser, copyBytesToUser, copyStructToUser, encode, type CopiedStruct } from '../uapi/codec.ts';
import {
  IOMMU_IOAS_MAP, IOMMU_OPTION_OP, iommu_ioas_alloc, iommu_ioas_allow_iovas, iommu_ioas_copy, iommu_ioas_iova_ranges,
  iommu_ioas_map, iommu_ioas_unmap, iommu_iova_range, type iommu_option,
} from '../uapi/iommufd.ts';
import { offsetof, type ValueOf } from '../uapi/layout.ts';
import { IoPagetable, ULONG_MAX, type IovaRange } from './io-pagetable.ts';
import type { IommufdCtx } from './main.ts';
import type { IoasObject } from './objects.ts';

/**
 * The IOAS ioctls (Linux `drivers/iommu/iommufd/ioas.c`), each in Linux's check order. A handler gets the
 * struct as `copy_struct_from_user` left it and the user address to answer at (`iommufd_ucmd_respond`
 * writes back `min(size, sizeof)` bytes).
 */

const MAP_FLAGS = IOMMU_IOAS_MAP.FIXED_IOVA | IOMMU_IOAS_MAP.WRITEABLE | IOMMU_IOAS_MAP.READABLE;

/** `conv_iommu_prot`. */
function prot(flags: number): number {
  return ((flags & IOMMU_IOAS_MAP.WRITEABLE) !== 0 ? IommuProt.WRITE : 0) | ((flags & IOMMU_IOAS_MAP.READABLE) !== 0 ? IommuProt.READ : 0);
}

/** Linux `iommufd_get_ioas`: the IOAS with `id`, or `-ENOENT` (missing, or another kind of object). */
export function getIoas(ctx: IommufdCtx, id: number): IoasObject | number {
  const o = ctx.objects.get(id);
  return o?.type === 'ioas' ? o : E.ENOENT;
}

/**
 * `iommufd_ucmd_respond` when the call changed one `u64` field, which `size >= min_size` always covers:
 * the other bytes would be written back as they were read, so only the field is stored.
 */
function respondU64(cur: Current, arg: bigint, offset: number, v: bigint): number {
  u64View.setBigUint64(0, v, true);
  return copyBytesToUser(cur.mm, arg, offset, u64Bytes);
}

/** The u64 a respond writes (copied out at once). */
const u64Bytes = new Uint8Array(8);
const u64View = new DataView(u64Bytes.buffer);
/** Offsets of the fields MAP, COPY and UNMAP write back. */
const MAP_IOVA_OFF = offsetof(iommu_ioas_map, 'iova');
const COPY_DST_OFF = offsetof(iommu_ioas_copy, 'dst_iova');
const UNMAP_LENGTH_OFF = offsetof(iommu_ioas_unmap, 'length');

/** `iommufd_ucmd_respond`. */
function respond<T>(cur: Current, arg: bigint, layout: Parameters<typeof copyStructToUser<T>>[2], c: CopiedStruct<T>): number {
  return copyStructToUser(cur.mm, arg, layout, c.value, c.usize);
}

/** IOMMU_IOAS_ALLOC: flags `EOPNOTSUPP`; a new IOAS, its id written back. */
export function ioasAlloc(ctx: IommufdCtx, cur: Current, arg: bigint, c: CopiedStruct<ValueOf<typeof iommu_ioas_alloc>>): number {
  if (c.value.flags !== 0) return E.EOPNOTSUPP;
  const ioas = ctx.newIoas();
  c.value.out_ioas_id = ioas.id;
  const r = respond(cur, arg, iommu_ioas_alloc, c);
  if (r < 0) ctx.destroyObject(ioas, cur.thread);
  return r;
}

/**
 * IOMMU_IOAS_IOVA_RANGES: `__reserved` `EOPNOTSUPP`; unknown IOAS `ENOENT`; the holes of the reserved
 * ranges are written to `allowed_iovas` as far as `num_iovas` allows, `num_iovas` becomes the count and
 * `out_iova_alignment` the alignment; a short array gives `EMSGSIZE` after the write-back.
 */
export function ioasIovaRanges(ctx: IommufdCtx, cur: Current, arg: bigint, c: CopiedStruct<ValueOf<typeof iommu_ioas_iova_ranges>>): number {
  const cmd = c.value;
  if (cmd.__reserved !== 0) return E.EOPNOTSUPP;
  const ioas = getIoas(ctx, cmd.ioas_id);
  if (typeof ioas === 'number') return ioas;
  const max = cmd.num_iovas;
  const ranges = ioas.iopt.iovaRanges();
  cmd.out_iova_alignment = ioas.iopt.iovaAlignment;
  for (let i = 0; i < ranges.length && i < max; i++) {
    const r = ranges[i] as IovaRange;
    const b = encode(iommu_iova_range, { start: r.start, last: r.last });
    const w = copyBytesToUser(cur.mm, cmd.allowed_iovas, i * iommu_iova_range.size, b);
    if (w < 0) return w;
  }
  cmd.num_iovas = ranges.length;
  const r = respond(cur, arg, iommu_ioas_iova_ranges, c);
  if (r < 0) return r;
  return ranges.length > max ? E.EMSGSIZE : 0;
}

/**
 * IOMMU_IOAS_ALLOW_IOVAS: `__reserved` `EOPNOTSUPP`; unknown IOAS `ENOENT`; each range read in turn
 * (`EFAULT`), `start >= last` `EINVAL`, overlapping an earlier one `EINVAL`; then a range crossing a
 * reserved one `EADDRINUSE`. `num_iovas` 0 clears the list.
 */
export function ioasAllowIovas(ctx: IommufdCtx, cur: Current, _arg: bigint, c: CopiedStruct<ValueOf<typeof iommu_ioas_allow_iovas>>): number {
  const cmd = c.value;
  if (cmd.__reserved !== 0) return E.EOPNOTSUPP;
  const ioas = getIoas(ctx, cmd.ioas_id);
  if (typeof ioas === 'number') return ioas;
  const list: IovaRange[] = [];
  for (let i = 0; i < cmd.num_iovas; i++) {
    const got = copyArrayFromUser(cur.mm, cmd.allowed_iovas, i * iommu_iova_range.size, iommu_iova_range, 1);
    if (typeof got === 'number') return got;
    const r = got[0] as { start: bigint; last: bigint };
    if (r.start >= r.last) return E.EINVAL;
    if (list.some((x) => x.start <= r.last && r.start <= x.last)) return E.EINVAL;
    list.push({ start: r.start, last: r.last });
  }
  return ioas.iopt.setAllowed(list);
}

/**
 * IOMMU_IOAS_MAP: unknown flags or `__reserved` `EOPNOTSUPP`; `iova` or `length` at ULONG_MAX
 * `EOVERFLOW`; neither READABLE nor WRITEABLE `EINVAL`; unknown IOAS `ENOENT`; then the page store
 * (`iopt_alloc_pages`: a length within a page of SIZE_MAX `EINVAL`, `user_va + length` wrapping
 * `EOVERFLOW`) and {@link IoPagetable.mapPages}. The IOVA is written back.
 */
export function ioasMap(ctx: IommufdCtx, cur: Current, arg: bigint, c: CopiedStruct<ValueOf<typeof iommu_ioas_map>>): number {
  const cmd = c.value;
  if ((cmd.flags & ~MAP_FLAGS) !== 0 || cmd.__reserved !== 0) return E.EOPNOTSUPP;
  if (cmd.iova >= ULONG_MAX || cmd.length >= ULONG_MAX) return E.EOVERFLOW;
  if ((cmd.flags & (IOMMU_IOAS_MAP.WRITEABLE | IOMMU_IOAS_MAP.READABLE)) === 0) return E.EINVAL;
  const ioas = getIoas(ctx, cmd.ioas_id);
  if (typeof ioas === 'number') return ioas;
  const p = IoPagetable.checkPagesRange(cmd.user_va, cmd.length);
  if (p < 0) return p;
  const pages = ctx.newPages(cur, cmd.user_va, cmd.length, (cmd.flags & IOMMU_IOAS_MAP.WRITEABLE) !== 0);
  const fixed = (cmd.flags & IOMMU_IOAS_MAP.FIXED_IOVA) !== 0 ? cmd.iova : undefined;
  const iova = ioas.iopt.mapPages([{ pages, startByte: cmd.user_va - pages.uptr, length: cmd.length }], cmd.length, fixed, prot(cmd.flags), cur.thread);
  if (typeof iova === 'number') return iova;
  cmd.iova = iova;
  return respondU64(cur, arg, MAP_IOVA_OFF, iova);
}

/**
 * IOMMU_IOAS_COPY: unknown flags `EOPNOTSUPP`; `length`, `src_iova` or `dst_iova` at ULONG_MAX
 * `EOVERFLOW`; neither READABLE nor WRITEABLE `EINVAL`; unknown source IOAS `ENOENT`; the source range
 * (`iopt_get_pages`: length 0 `EINVAL`, wrap `EOVERFLOW`, a hole `ENOENT`); unknown destination `ENOENT`;
 * then MAP's rules at the destination (`EPERM` for WRITEABLE over read-only pages). The pages are shared.
 */
export function ioasCopy(ctx: IommufdCtx, cur: Current, arg: bigint, c: CopiedStruct<ValueOf<typeof iommu_ioas_copy>>): number {
  const cmd = c.value;
  if ((cmd.flags & ~MAP_FLAGS) !== 0) return E.EOPNOTSUPP;
  if (cmd.length >= ULONG_MAX || cmd.src_iova >= ULONG_MAX || cmd.dst_iova >= ULONG_MAX) return E.EOVERFLOW;
  if ((cmd.flags & (IOMMU_IOAS_MAP.WRITEABLE | IOMMU_IOAS_MAP.READABLE)) === 0) return E.EINVAL;
  const src = getIoas(ctx, cmd.src_ioas_id);
  if (typeof src === 'number') return src;
  const slices = src.iopt.getPages(cmd.src_iova, cmd.length);
  if (typeof slices === 'number') return slices;
  const dst = getIoas(ctx, cmd.dst_ioas_id);
  if (typeof dst === 'number') return dst;
  const fixed = (cmd.flags & IOMMU_IOAS_MAP.FIXED_IOVA) !== 0 ? cmd.dst_iova : undefined;
  const iova = dst.iopt.mapPages(slices, cmd.length, fixed, prot(cmd.flags), cur.thread);
  if (typeof iova === 'number') return iova;
  cmd.dst_iova = iova;
  return respondU64(cur, arg, COPY_DST_OFF, iova);
}

/**
 * IOMMU_IOAS_UNMAP: unknown IOAS `ENOENT`; `(0, U64_MAX)` removes everything (success on an empty IOAS);
 * otherwise `iova` or `length` at ULONG_MAX `EOVERFLOW`, then {@link IoPagetable.unmapIova} (length 0
 * `EINVAL`, wrap `EOVERFLOW`, nothing there or an area cut `ENOENT`). `length` becomes the bytes removed.
 */
export function ioasUnmap(ctx: IommufdCtx, cur: Current, arg: bigint, c: CopiedStruct<ValueOf<typeof iommu_ioas_unmap>>): number {
  const cmd = c.value;
  const ioas = getIoas(ctx, cmd.ioas_id);
  if (typeof ioas === 'number') return ioas;
  let unmapped: bigint;
  if (cmd.iova === 0n && cmd.length === ULONG_MAX) unmapped = ioas.iopt.unmapAll(cur.thread);
  else {
    if (cmd.iova >= ULONG_MAX || cmd.length >= ULONG_MAX) return E.EOVERFLOW;
    const r = ioas.iopt.unmapIova(cmd.iova, cmd.length, cur.thread);
    if (r.rc < 0) return r.rc;
    unmapped = r.unmapped;
  }
  cmd.length = unmapped;
  return respondU64(cur, arg, UNMAP_LENGTH_OFF, unmapped);
}

/**
 * IOMMU_OPTION_HUGE_PAGES on an IOAS (`iommufd_ioas_option`): unknown IOAS `ENOENT`; GET gives 1 unless
 * large pages are disabled; SET 0 disables them (`EINVAL` once a domain has areas, `EADDRINUSE` for areas
 * not page-aligned), SET 1 enables them, other values `EINVAL`; another op `EOPNOTSUPP`.
 */
export function ioasOptionHugePages(ctx: IommufdCtx, cmd: ValueOf<typeof iommu_option>): number {
  const ioas = getIoas(ctx, cmd.object_id);
  if (typeof ioas === 'number') return ioas;
  if (cmd.op === IOMMU_OPTION_OP.GET) {
    cmd.val64 = ioas.iopt.disableLargePages ? 0n : 1n;
    return 0;
  }
  if (cmd.op === IOMMU_OPTION_OP.SET) {
    if (cmd.val64 === 0n) return ioas.iopt.disableLarge();
    if (cmd.val64 === 1n) {
      ioas.iopt.enableLarge();
      return 0;
    }
    return E.EINVAL;
  }
  return E.EOPNOTSUPP;
}
