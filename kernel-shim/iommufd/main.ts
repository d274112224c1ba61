import type { SimProcess } from '../../sim/index.ts';
import { E } from '../errno.ts';
import type { File, FileOperations } from '../fs/file.ts';
import type { Kernel } from '../kernel.ts';
import type { PciDev } from '../pci/dev.ts';
import type { Current } from '../task/current.ts';
import { checkZeroedUser, copyBytesToUser, copyStructToUser, decode, userAddr, type CopiedStruct } from '../uapi/codec.ts';
import { _IOC_NR } from '../uapi/ioctl.ts';
import {
  IOMMUFD, IOMMUFD_CMD_BASE, IOMMU_HWPT_ALLOC, IOMMU_OPTION_ID, IOMMU_OPTION_OP, IOMMU_VFIO_IOAS, iommu_destroy,
  iommu_hw_info, iommu_hwpt_alloc, iommu_ioas_alloc, iommu_ioas_allow_iovas, iommu_ioas_copy, iommu_ioas_iova_ranges,
  iommu_ioas_map, iommu_ioas_unmap, iommu_option, iommu_vfio_ioas,
} from '../uapi/iommufd.ts';
import { offsetof, struct, type AnyLayout, type ValueOf } from '../uapi/layout.ts';
import { attachDevice, bindDevice, destroyHwpt, detachDevice, unbindDevice } from './device.ts';
import { IoPagetable } from './io-pagetable.ts';
import { ioasAlloc, ioasAllowIovas, ioasCopy, ioasIovaRanges, ioasMap, ioasOptionHugePages, ioasUnmap } from './ioas.ts';
import type { DeviceObject, IoasObject, IommufdObject } from './objects.ts';
import { IoptPages, type AccountMode } from './pages.ts';
import { iommufdVfioIoctl } from './vfio-compat.ts';

/**
 * The iommufd context and `/dev/iommu`'s file operations (Linux `drivers/iommu/iommufd/main.c`): each open
 * is a context with its own object table (ids from 1, the lowest free one, as `xa_alloc` with
 * `XA_FLAGS_ALLOC1`); ioctls go through one table indexed by `nr - 0x80`. Closing the fd destroys every
 * object, leaves first (devices bound by a driver hold the file open, as `iommufd_ctx_get` does).
 */

/** One iommufd context (Linux `struct iommufd_ctx`). */
export class IommufdCtx {
  readonly kernel: Kernel;
  /** The `/dev/iommu` file it belongs to (null for a context made without one, in tests). */
  readonly file: File | null;
  readonly objects = new Map<number, IommufdObject>();
  /** IOMMU_OPTION_RLIMIT_MODE: `user` (0, the default) or `mm` (1). */
  accountMode: 'user' | 'mm' = 'user';
  /** The IOAS VFIO compat ioctls use (`ictx->vfio_ioas`). */
  vfioIoas: IoasObject | null = null;

  constructor(kernel: Kernel, file: File | null) {
    this.kernel = kernel;
    this.file = file;
  }

  /** `xa_alloc(..., xa_limit_31b)` with ALLOC1: the lowest free id from 1. */
  allocId(): number {
    let id = 1;
    while (this.objects.has(id)) id++;
    return id;
  }

  /** Puts a finished object in the table (`iommufd_object_finalize`). */
  insert(o: IommufdObject): void {
    this.objects.set(o.id, o);
  }

  /** Linux `iommufd_ioas_alloc`. */
  newIoas(): IoasObject {
    const ioas: IoasObject = { type: 'ioas', id: this.allocId(), users: 1, iopt: new IoPagetable(this.kernel.iommu), hwpts: [] };
    this.insert(ioas);
    return ioas;
  }

  /** Linux `iopt_alloc_pages` for the calling task: accounted per user unless RLIMIT_MODE says mm, none with `CAP_IPC_LOCK`. */
  newPages(cur: Current, uptr: bigint, length: bigint, writable: boolean): IoptPages {
    const mode: AccountMode = cur.cred.capable('IPC_LOCK') ? 'none' : this.accountMode;
    return new IoptPages({ kernel: this.kernel, mm: cur.mm, uid: cur.cred.uid }, uptr, length, writable, mode);
  }

  /** Runs an object's destroy op (Linux `iommufd_object_ops[type].destroy`) after it left the table. */
  destroyObject(o: IommufdObject, cpu?: SimProcess): void {
    this.objects.delete(o.id);
    if (this.vfioIoas === o) this.vfioIoas = null;
    if (o.type === 'ioas') o.iopt.unmapAll(cpu);
    else if (o.type === 'hwpt_paging') destroyHwpt(this, o, cpu);
  }

  /** Linux `iommufd_object_remove` for DESTROY: `-ENOENT` unknown, `-EBUSY` while another object or a driver holds it. */
  remove(id: number, cpu?: SimProcess): number {
    const o = this.objects.get(id);
    if (o === undefined) return E.ENOENT;
    if (o.users !== 1) return E.EBUSY;
    this.destroyObject(o, cpu);
    return 0;
  }

  /** Linux `iommufd_fops_release`: destroys objects whose only user is the table until none is left. */
  release(cpu?: SimProcess): void {
    while (this.objects.size > 0) {
      let destroyed = 0;
      for (const o of this.objects.values()) {
        if (o.users !== 1 || this.objects.get(o.id) !== o) continue;
        this.destroyObject(o, cpu);
        destroyed++;
      }
      if (destroyed === 0) break;
    }
  }

  // --- the in-kernel API (VFIO device cdev) --------------------------------------------------------

  /**
   * Linux `iommufd_device_bind`: binds `pdev` (claiming DMA ownership of its group for this context) and
   * returns the device object, whose `id` is BIND_IOMMUFD's `out_devid`; or `-ENODEV` (no IOMMU group),
   * `-EPERM` (a kernel driver or another owner uses the group).
   */
  bindDevice(pdev: PciDev, cpu?: SimProcess): DeviceObject | number {
    return bindDevice(this, pdev, cpu);
  }

  /** Linux `iommufd_device_unbind`: detaches and releases the claim; the context's file is dropped. */
  unbindDevice(idev: DeviceObject, cpu?: SimProcess): void {
    unbindDevice(this, idev, cpu);
  }

  /**
   * Linux `iommufd_device_attach` / `_replace`: attaches to an IOAS (automatic HWPT_PAGING) or a HWPT id.
   * Returns the HWPT id (ATTACH_IOMMUFD_PT's written-back `pt_id`) or `-errno`: `-ENOENT` for an unknown id,
   * `-EADDRINUSE` for areas in the way of a reserved region, the aperture or the 4096 alignment,
   * `-EFAULT` for areas whose memory has gone, `-ENOMEM` past `RLIMIT_MEMLOCK`.
   */
  attachDevice(idev: DeviceObject, ptId: number, cpu?: SimProcess): number {
    return attachDevice(this, idev, ptId, cpu);
  }

  /** Linux `iommufd_device_detach`: the device's DMA is blocked again; an unused automatic HWPT goes. */
  detachDevice(idev: DeviceObject, cpu?: SimProcess): void {
    detachDevice(this, idev, cpu);
  }
}

/** The context of an iommufd file (Linux `iommufd_ctx_from_file`); `-EBADFD` for any other file. */
export function iommufdFromFile(file: File): IommufdCtx | number {
  return file.ops === iommufdFops && file.private instanceof IommufdCtx ? file.private : E.EBADFD;
}

// --- ioctls ------------------------------------------------------------------------------------------

/** `struct iommu_hwpt_set_dirty_tracking`. */
const iommu_hwpt_set_dirty_tracking = struct('iommu_hwpt_set_dirty_tracking', [['size', 'u32'], ['flags', 'u32'], ['hwpt_id', 'u32'], ['__reserved', 'u32']], { expectSize: 16 });
/** `struct iommu_hwpt_get_dirty_bitmap`. */
const iommu_hwpt_get_dirty_bitmap = struct('iommu_hwpt_get_dirty_bitmap', [
  ['size', 'u32'], ['hwpt_id', 'u32'], ['flags', 'u32'], ['__reserved', 'u32'], ['iova', 'u64'], ['length', 'u64'], ['page_size', 'u64'], ['data', 'u64'],
], { expectSize: 48 });
/** `struct iommu_hwpt_invalidate`. */
const iommu_hwpt_invalidate = struct('iommu_hwpt_invalidate', [
  ['size', 'u32'], ['hwpt_id', 'u32'], ['data_uptr', 'u64'], ['data_type', 'u32'], ['entry_len', 'u32'], ['entry_num', 'u32'], ['__reserved', 'u32'],
], { expectSize: 32 });
/** `struct iommu_fault_alloc`. */
const iommu_fault_alloc = struct('iommu_fault_alloc', [['size', 'u32'], ['flags', 'u32'], ['out_fault_id', 'u32'], ['out_fault_fd', 'u32']], { expectSize: 16 });

type Exec = (ctx: IommufdCtx, cur: Current, arg: bigint, c: CopiedStruct<Record<string, unknown>>) => number;

interface IoctlOp {
  readonly request: number;
  readonly layout: AnyLayout;
  readonly exec: Exec;
  /**
   * For the map/unmap loop's two structs: the fields read by hand from the copied bytes (what `decode`
   * gives, without the generic walk). The bytes are a buffer of the op's own, reused.
   */
  readonly fast?: (v: DataView) => Record<string, unknown>;
}

/** IOAS_MAP's fields (`struct iommu_ioas_map`, all little-endian). */
const mapFields = (v: DataView): Record<string, unknown> => ({
  size: v.getUint32(0, true), flags: v.getUint32(4, true), ioas_id: v.getUint32(8, true), __reserved: v.getUint32(12, true),
  user_va: v.getBigUint64(16, true), length: v.getBigUint64(24, true), iova: v.getBigUint64(32, true),
});

/** IOAS_UNMAP's fields (`struct iommu_ioas_unmap`). */
const unmapFields = (v: DataView): Record<string, unknown> => ({
  size: v.getUint32(0, true), ioas_id: v.getUint32(4, true), iova: v.getBigUint64(8, true), length: v.getBigUint64(16, true),
});

/** IOMMU_DESTROY. */
const destroy: Exec = (ctx, cur, _arg, c) => ctx.remove((c.value as ValueOf<typeof iommu_destroy>).id, cur.thread);

/**
 * IOMMU_OPTION (`iommufd_option`): `__reserved` `EOPNOTSUPP`; RLIMIT_MODE (`object_id` nonzero
 * `EOPNOTSUPP`; GET 1 for mm accounting; SET needs `CAP_SYS_RESOURCE` `EPERM`, an empty object table
 * `EBUSY`, a value 0 or 1 `EINVAL`); HUGE_PAGES on an IOAS; other options and ops `EOPNOTSUPP`. Only
 * `val64` is written back, on success.
 */
const option: Exec = (ctx, cur, arg, c) => {
  const cmd = c.value as ValueOf<typeof iommu_option>;
  if (cmd.__reserved !== 0) return E.EOPNOTSUPP;
  let rc: number;
  if (cmd.option_id === IOMMU_OPTION_ID.RLIMIT_MODE) rc = rlimitMode(ctx, cur, cmd);
  else if (cmd.option_id === IOMMU_OPTION_ID.HUGE_PAGES) rc = ioasOptionHugePages(ctx, cmd);
  else return E.EOPNOTSUPP;
  if (rc < 0) return rc;
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, cmd.val64, true);
  return copyBytesToUser(cur.mm, arg, offsetof(iommu_option, 'val64'), b);
};

function rlimitMode(ctx: IommufdCtx, cur: Current, cmd: ValueOf<typeof iommu_option>): number {
  if (cmd.object_id !== 0) return E.EOPNOTSUPP;
  if (cmd.op === IOMMU_OPTION_OP.GET) {
    cmd.val64 = ctx.accountMode === 'mm' ? 1n : 0n;
    return 0;
  }
  if (cmd.op !== IOMMU_OPTION_OP.SET) return E.EOPNOTSUPP;
  if (!cur.cred.capable('SYS_RESOURCE')) return E.EPERM;
  if (ctx.objects.size > 0) return E.EBUSY;
  if (cmd.val64 === 0n) ctx.accountMode = 'user';
  else if (cmd.val64 === 1n) ctx.accountMode = 'mm';
  else return E.EINVAL;
  return 0;
}

/**
 * IOMMU_VFIO_IOAS (`iommufd_vfio_ioas`): `__reserved` `EOPNOTSUPP`; GET the compat IOAS's id (`ENODEV`
 * without one); SET it to an IOAS (`ENOENT`); CLEAR it; another op `EOPNOTSUPP`.
 */
const vfioIoas: Exec = (ctx, cur, arg, c) => {
  const cmd = c.value as ValueOf<typeof iommu_vfio_ioas>;
  if (cmd.__reserved !== 0) return E.EOPNOTSUPP;
  switch (cmd.op) {
    case IOMMU_VFIO_IOAS.GET:
      if (ctx.vfioIoas === null) return E.ENODEV;
      cmd.ioas_id = ctx.vfioIoas.id;
      return copyStructToUser(cur.mm, arg, iommu_vfio_ioas, cmd, c.usize);
    case IOMMU_VFIO_IOAS.SET: {
      const o = ctx.objects.get(cmd.ioas_id);
      if (o?.type !== 'ioas') return E.ENOENT;
      ctx.vfioIoas = o;
      return 0;
    }
    case IOMMU_VFIO_IOAS.CLEAR:
      ctx.vfioIoas = null;
      return 0;
    default:
      return E.EOPNOTSUPP;
  }
};

/**
 * What dmasim does not build (HWPT_ALLOC, GET_HW_INFO, dirty tracking, HWPT_INVALIDATE, fault queues):
 * the size rule and the flag/reserved checks as Linux makes them, `ENOENT` for an unknown object the
 * call names, then `EOPNOTSUPP`.
 */
function unsupported(flagsOk: (v: Record<string, unknown>) => boolean, idField: string | undefined, kinds: readonly string[]): Exec {
  return (ctx, _cur, _arg, c) => {
    if (!flagsOk(c.value)) return E.EOPNOTSUPP;
    if (idField !== undefined) {
      const o = ctx.objects.get(Number(c.value[idField]));
      if (o === undefined || !kinds.includes(o.type)) return E.ENOENT;
    }
    return E.EOPNOTSUPP;
  };
}

const zero = (...names: string[]) => (v: Record<string, unknown>): boolean => names.every((n) => v[n] === 0);
const HWPT_FLAGS = IOMMU_HWPT_ALLOC.NEST_PARENT | IOMMU_HWPT_ALLOC.DIRTY_TRACKING | IOMMU_HWPT_ALLOC.FAULT_ID_VALID;

/**
 * Linux 6.12's `iommufd_ioctl_ops` (DESTROY .. FAULT_QUEUE_ALLOC, 0x80-0x8e; IOAS_MAP_FILE and the vIOMMU
 * calls came in 6.13), indexed by `nr - 0x80`.
 */
const OPS: readonly IoctlOp[] = [
  { request: IOMMUFD.DESTROY, layout: iommu_destroy, exec: destroy },
  { request: IOMMUFD.IOAS_ALLOC, layout: iommu_ioas_alloc, exec: ioasAlloc as Exec },
  { request: IOMMUFD.IOAS_ALLOW_IOVAS, layout: iommu_ioas_allow_iovas, exec: ioasAllowIovas as Exec },
  { request: IOMMUFD.IOAS_COPY, layout: iommu_ioas_copy, exec: ioasCopy as Exec },
  { request: IOMMUFD.IOAS_IOVA_RANGES, layout: iommu_ioas_iova_ranges, exec: ioasIovaRanges as Exec },
  { request: IOMMUFD.IOAS_MAP, layout: iommu_ioas_map, exec: ioasMap as Exec, fast: mapFields },
  { request: IOMMUFD.IOAS_UNMAP, layout: iommu_ioas_unmap, exec: ioasUnmap as Exec, fast: unmapFields },
  { request: IOMMUFD.OPTION, layout: iommu_option, exec: option },
  { request: IOMMUFD.VFIO_IOAS, layout: iommu_vfio_ioas, exec: vfioIoas },
  {
    request: IOMMUFD.HWPT_ALLOC, layout: iommu_hwpt_alloc,
    exec: unsupported((v) => ((v['flags'] as number) & ~HWPT_FLAGS) === 0 && v['__reserved'] === 0, 'dev_id', ['device']),
  },
  { request: IOMMUFD.GET_HW_INFO, layout: iommu_hw_info, exec: unsupported(zero('flags'), 'dev_id', ['device']) },
  { request: IOMMUFD.HWPT_SET_DIRTY_TRACKING, layout: iommu_hwpt_set_dirty_tracking, exec: unsupported((v) => ((v['flags'] as number) & ~1) === 0 && v['__reserved'] === 0, 'hwpt_id', ['hwpt_paging']) },
  { request: IOMMUFD.HWPT_GET_DIRTY_BITMAP, layout: iommu_hwpt_get_dirty_bitmap, exec: unsupported((v) => ((v['flags'] as number) & ~1) === 0 && v['__reserved'] === 0, 'hwpt_id', ['hwpt_paging']) },
  { request: IOMMUFD.HWPT_INVALIDATE, layout: iommu_hwpt_invalidate, exec: unsupported(zero('__reserved'), 'hwpt_id', ['hwpt_paging']) },
  { request: IOMMUFD.FAULT_QUEUE_ALLOC, layout: iommu_fault_alloc, exec: unsupported(zero('flags'), undefined, []) },
];

/**
 * Linux `iommufd_fops_ioctl`: a number below 0x80 or past the table goes to the VFIO compat handler; then
 * the `u32 size` is read (`EFAULT`), a number whose full value is not the table's gives `ENOTTY`
 * (`-ENOIOCTLCMD`), `size` below the minimum `EINVAL`, a nonzero tail past the struct `E2BIG`.
 */
function iommufdIoctl(ctx: IommufdCtx, cur: Current, request: number, arg: bigint): number {
  const nr = _IOC_NR(request);
  const op = nr >= IOMMUFD_CMD_BASE ? OPS[nr - IOMMUFD_CMD_BASE] : undefined;
  if (op === undefined) return iommufdVfioIoctl(ctx, cur, request, arg);
  const addr = userAddr(arg);
  const rs = cur.mm.copyFromUser(addr, sizeWord);
  if (rs < 0) return rs;
  if (op.request !== request >>> 0) return E.ENOTTY;
  const usize = sizeView.getUint32(0, true);
  const c = copyStructAfterSize(cur, addr, usize, op.layout, op.fast);
  if (typeof c === 'number') return c;
  return op.exec(ctx, cur, arg, c);
}

/** The struct bytes of a `fast` op (at most 40): read into one buffer, decoded at once. */
const fastBytes = new Uint8Array(64);
const fastView = new DataView(fastBytes.buffer);

/** The `u32 size` word, read into one buffer (each read is used at once, before anything else runs). */
const sizeWord = new Uint8Array(4);
const sizeView = new DataView(sizeWord.buffer);

/** `copy_struct_from_user` once the size is known: `EINVAL` below the minimum, `E2BIG` for a nonzero tail. */
function copyStructAfterSize(cur: Current, addr: number, usize: number, layout: AnyLayout, fast?: (v: DataView) => Record<string, unknown>): CopiedStruct<Record<string, unknown>> | number {
  if (usize < layout.minsz) return E.EINVAL;
  const ksize = layout.size;
  if (usize > ksize) {
    const z = checkZeroedUser(cur.mm, addr < 0 ? -1 : addr + ksize, usize - ksize);
    if (z < 0) return z;
    if (z === 0) return E.E2BIG;
  }
  if (fast !== undefined && ksize <= fastBytes.length) {
    // A smaller user struct is zero-extended, as copy_struct_from_user does.
    fastBytes.fill(0, 0, ksize);
    const r = cur.mm.copyFromUser(addr, fastBytes.subarray(0, Math.min(usize, ksize)));
    if (r < 0) return r;
    return { value: fast(fastView), usize };
  }
  const buf = new Uint8Array(ksize);
  const r = cur.mm.copyFromUser(addr, buf.subarray(0, Math.min(usize, ksize)));
  if (r < 0) return r;
  return { value: decode(layout, buf) as Record<string, unknown>, usize };
}

/** `/dev/iommu`'s file operations (Linux `iommufd_fops`). */
export const iommufdFops: FileOperations = {
  open(file: File, cur: Current): number {
    file.private = new IommufdCtx(cur.kernel, file);
    return 0;
  },
  release(file: File): void {
    const ctx = iommufdFromFile(file);
    if (typeof ctx !== 'number') ctx.release();
    file.private = undefined;
  },
  ioctl(file: File, cur: Current, request: number, arg: bigint): number {
    const ctx = iommufdFromFile(file);
    if (typeof ctx === 'number') return E.EBADF;
    return iommufdIoctl(ctx, cur, request, arg);
  },
};
