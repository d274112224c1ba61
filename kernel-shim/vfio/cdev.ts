import { E } from '../errno.ts';
import { File, type FileOperations } from '../fs/file.ts';
import { fileInode } from '../fs/inode.ts';
import { relativeLink, sysfsAttr } from '../fs/sysfs.ts';
import { attachDevice, bindDevice, unbindDevice } from '../iommufd/device.ts';
import { iommufdFromFile, type DeviceObject, type IommufdCtx } from '../iommufd/index.ts';
import type { Kernel } from '../kernel.ts';
import type { Current } from '../task/current.ts';
import { copyStructFromUser, userAddr } from '../uapi/codec.ts';
import { VFIO, VFIO_DEVICE_ATTACH_FLAG, VFIO_DEVICE_BIND_FLAG, vfio_device_bind_iommufd } from '../uapi/vfio.ts';
import type { VfioDevice } from './device.ts';
import { vfioDeviceFeature } from './feature.ts';
import type { VfioGroup } from './group.ts';

/**
 * The VFIO device cdev (Linux `drivers/vfio/device_cdev.c`, the cdev half of `vfio_main.c`; spec section
 * 1.9): `/dev/vfio/devices/vfio<X>` per registered device (Linux 6.6+), usable only after
 * `VFIO_DEVICE_BIND_IOMMUFD` binds it to an iommufd, then `ATTACH_IOMMUFD_PT` / `DETACH_IOMMUFD_PT`; every
 * other ioctl, read, write and mmap is the bus driver's, as on a group-obtained fd. A device's group and
 * its cdev exclude each other: BIND while the group is open, or opening the group while a cdev is bound,
 * is `EBUSY` (`vfio_device_block_group`).
 */

/**
 * The char major of `vfio-dev` (Linux `alloc_chrdev_region(..., "vfio-dev")`, a dynamic major): the one
 * after the group nodes' 511, as the second dynamic region dmasim registers.
 */
export const VFIO_CDEV_MAJOR = 510;

/** Whether `kernel` has VFIO device cdevs. */
export function hasVfioCdev(kernel: Kernel): boolean {
  return kernel.behaviour.vfioDeviceCdev;
}

/** A registered device's node. */
interface DeviceCdev {
  readonly vdev: VfioDevice;
  readonly group: VfioGroup;
  /** `X` of `vfio<X>` (the lowest free, as Linux's `vfio.device_ida` hands them out). */
  readonly index: number;
}

const registered = new WeakMap<Kernel, Map<VfioDevice, DeviceCdev>>();
/** Per group, the cdevs bound (`cdev_device_open_cnt`). */
const bound = new WeakMap<VfioGroup, number>();

/** How many of the group's devices are bound through their cdev (group open is `EBUSY` while any is). */
export function vfioCdevBoundCount(group: VfioGroup): number {
  return bound.get(group) ?? 0;
}

/** `/dev/vfio/devices/vfio<X>` of `vdev`, if it has one. */
export function vfioCdevPath(kernel: Kernel, vdev: VfioDevice): string | undefined {
  const c = registered.get(kernel)?.get(vdev);
  return c === undefined ? undefined : `/dev/vfio/devices/vfio${c.index}`;
}

/**
 * Linux `vfio_device_add` (cdev part): the node `/dev/vfio/devices/vfio<X>` (0600 root), and in sysfs
 * `<pci device>/vfio-dev/vfio<X>/dev` and `/sys/class/vfio-dev/vfio<X>`. Nothing before 6.6.
 */
export function vfioCdevAdd(kernel: Kernel, vdev: VfioDevice, group: VfioGroup): void {
  if (!hasVfioCdev(kernel)) return;
  let map = registered.get(kernel);
  if (map === undefined) registered.set(kernel, (map = new Map()));
  const used = new Set([...map.values()].map((c) => c.index));
  let index = 0;
  while (used.has(index)) index++;
  const c: DeviceCdev = { vdev, group, index };
  map.set(vdev, c);
  const vfs = kernel.vfs;
  vfs.add(`/dev/vfio/devices/vfio${index}`, fileInode('chr', cdevFops, 0o600, { rdev: { major: VFIO_CDEV_MAJOR, minor: index }, data: c }));
  const dir = `${vdev.pdev.sysfsPath}/vfio-dev/vfio${index}`;
  vfs.add(`${dir}/dev`, sysfsAttr(0o444, { show: () => `${VFIO_CDEV_MAJOR}:${index}\n` }));
  vfs.mkdirp('/sys/class/vfio-dev');
  vfs.symlink(`/sys/class/vfio-dev/vfio${index}`, relativeLink('/sys/class/vfio-dev', dir));
}

/** Linux `vfio_device_del` (cdev part): the node and its sysfs entries go; open fds answer `ENODEV`. */
export function vfioCdevRemove(kernel: Kernel, vdev: VfioDevice): void {
  const map = registered.get(kernel);
  const c = map?.get(vdev);
  if (map === undefined || c === undefined) return;
  map.delete(vdev);
  const vfs = kernel.vfs;
  vfs.remove(`/dev/vfio/devices/vfio${c.index}`);
  // devtmpfs removes the directories a node's path created once they are empty.
  if (map.size === 0) vfs.remove('/dev/vfio/devices');
  vfs.remove(`/sys/class/vfio-dev/vfio${c.index}`);
  vfs.remove(`${vdev.pdev.sysfsPath}/vfio-dev`);
}

/** What a cdev file holds (`struct vfio_device_file` of the cdev path). */
interface CdevFile {
  readonly cdev: DeviceCdev;
  /** After BIND_IOMMUFD: the iommufd context, its file (held), and the device object. */
  binding: { readonly ctx: IommufdCtx; readonly ictxFile: File; readonly idev: DeviceObject } | null;
}

function stateOf(file: File): CdevFile | undefined {
  const s = file.private as CdevFile | undefined;
  return s !== undefined && typeof s === 'object' && 'cdev' in s ? s : undefined;
}

/** The registered device behind a cdev file, or undefined once it is gone. */
function live(kernel: Kernel, s: CdevFile): boolean {
  return registered.get(kernel)?.get(s.cdev.vdev) === s.cdev;
}

/** `offsetofend(struct vfio_device_attach_iommufd_pt, pt_id)`. */
const ATTACH_MINSZ = 12;
/** `offsetofend(struct vfio_device_detach_iommufd_pt, flags)`. */
const DETACH_MINSZ = 8;

/**
 * Linux `vfio_df_ioctl_bind_iommufd`, in spec 1.9's order: the struct (`EINVAL` below 16, `E2BIG` for a
 * non-zero tail), `iommufd < 0` or unknown flags `EINVAL`, the group open `EBUSY`, already bound `EINVAL`,
 * the fd (`EBADF`, `EBADFD` for no iommufd), TOKEN on a device with no VF token `EINVAL`; then
 * `iommufd_device_bind` (DMA ownership) and the device's first open; `out_devid` written back.
 */
async function bind(s: CdevFile, cur: Current, arg: bigint): Promise<number> {
  const c = copyStructFromUser(cur.mm, arg, vfio_device_bind_iommufd);
  if (typeof c === 'number') return c;
  const b = c.value;
  if (b.iommufd < 0 || (b.flags & ~VFIO_DEVICE_BIND_FLAG.TOKEN) !== 0) return E.EINVAL;
  const { vdev, group } = s.cdev;
  if (group.openedFile !== null) return E.EBUSY;
  if (s.binding !== null) return E.EINVAL;
  const f = cur.task.fds.get(b.iommufd);
  if (f === undefined) return E.EBADF;
  const ctx = iommufdFromFile(f);
  if (typeof ctx === 'number') return ctx;
  // vfio-pci keeps a VF token only for an SR-IOV PF, which no dmasim device is.
  if ((b.flags & VFIO_DEVICE_BIND_FLAG.TOKEN) !== 0) return E.EINVAL;
  const idev = bindDevice(ctx, vdev.pdev, cur.thread);
  if (typeof idev === 'number') return idev;
  if (vdev.openCount === 0) {
    vdev.openCount = 1;
    let r = vdev.ops.openDevice(vdev, cur);
    if (typeof r !== 'number') r = await r;
    if (r < 0) {
      vdev.openCount = 0;
      unbindDevice(ctx, idev, cur.thread);
      return r;
    }
  } else {
    vdev.openCount++;
  }
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, idev.id, true);
  const a = userAddr(arg);
  if (cur.mm.copyToUser(a < 0 ? -1 : a + 12, out) < 0) {
    closeDevice(s, ctx, idev, cur);
    return E.EFAULT;
  }
  f.get();
  s.binding = { ctx, ictxFile: f, idev };
  bound.set(group, vfioCdevBoundCount(group) + 1);
  return 0;
}

/**
 * The device's last close and the iommufd unbind (`vfio_df_close`, `vfio_df_iommufd_unbind`). A device
 * whose driver went away was closed then (`vfioRevokeDevice`), so only the count drops.
 */
function closeDevice(s: CdevFile, ctx: IommufdCtx, idev: DeviceObject, cur?: Current): void {
  const vdev = s.cdev.vdev;
  if (--vdev.openCount === 0 && live(s.cdev.group.kernel, s)) vdev.ops.closeDevice(vdev);
  unbindDevice(ctx, idev, cur?.thread);
}

/**
 * Linux `vfio_df_ioctl_attach_pt`: `EINVAL` below 12 bytes or for unknown flags, `EOPNOTSUPP` for PASID
 * (vfio-pci has no `pasid_attach_ioas` here), the attach's errno (`ENOENT` for an unknown id); the HWPT's
 * id is written back into `pt_id`. Attaching again replaces the attachment.
 */
function attachPt(s: CdevFile, cur: Current, arg: bigint): number {
  const b = s.binding as NonNullable<CdevFile['binding']>;
  const buf = new Uint8Array(ATTACH_MINSZ);
  const a = userAddr(arg);
  if (cur.mm.copyFromUser(a, buf) < 0) return E.EFAULT;
  const dv = new DataView(buf.buffer);
  const flags = dv.getUint32(4, true);
  if (dv.getUint32(0, true) < ATTACH_MINSZ) return E.EINVAL;
  if ((flags & ~VFIO_DEVICE_ATTACH_FLAG.PASID) !== 0) return E.EINVAL;
  if ((flags & VFIO_DEVICE_ATTACH_FLAG.PASID) !== 0) return E.EOPNOTSUPP;
  const hwpt = attachDevice(b.ctx, b.idev, dv.getUint32(8, true), cur.thread);
  if (hwpt < 0) return hwpt;
  dv.setUint32(8, hwpt, true);
  if (cur.mm.copyToUser(a + 8, buf.subarray(8, 12)) < 0) {
    b.ctx.detachDevice(b.idev, cur.thread);
    return E.EFAULT;
  }
  return 0;
}

/** Linux `vfio_df_ioctl_detach_pt`: `EINVAL` below 8 bytes or for any flag; detaching nothing succeeds. */
function detachPt(s: CdevFile, cur: Current, arg: bigint): number {
  const b = s.binding as NonNullable<CdevFile['binding']>;
  const buf = new Uint8Array(DETACH_MINSZ);
  if (cur.mm.copyFromUser(userAddr(arg), buf) < 0) return E.EFAULT;
  const dv = new DataView(buf.buffer);
  if (dv.getUint32(0, true) < DETACH_MINSZ || dv.getUint32(4, true) !== 0) return E.EINVAL;
  b.ctx.detachDevice(b.idev, cur.thread);
  return 0;
}

/** Linux `vfio_device_fops` on the cdev path: `EINVAL` for everything but BIND until bound. */
const cdevFops: FileOperations = {
  pread: true,
  open(file) {
    const ino = file.inode;
    const c = ino.kind === 'file' ? (ino.data as DeviceCdev | undefined) : undefined;
    if (c === undefined || registered.get(c.group.kernel)?.get(c.vdev) !== c) return E.ENODEV;
    file.private = { cdev: c, binding: null } satisfies CdevFile;
    return 0;
  },
  release(file) {
    const s = stateOf(file);
    if (s === undefined) return;
    file.private = undefined;
    const b = s.binding;
    if (b === null) return;
    s.binding = null;
    closeDevice(s, b.ctx, b.idev);
    const g = s.cdev.group;
    bound.set(g, Math.max(0, vfioCdevBoundCount(g) - 1));
    b.ictxFile.put();
  },
  ioctl(file, cur, request, arg) {
    const s = stateOf(file);
    if (s === undefined || !live(s.cdev.group.kernel, s)) return E.ENODEV;
    if (request === VFIO.DEVICE_BIND_IOMMUFD) return bind(s, cur, arg);
    if (s.binding === null) return E.EINVAL;
    const vdev = s.cdev.vdev;
    switch (request) {
      case VFIO.DEVICE_ATTACH_IOMMUFD_PT: return attachPt(s, cur, arg);
      case VFIO.DEVICE_DETACH_IOMMUFD_PT: return detachPt(s, cur, arg);
      case VFIO.DEVICE_FEATURE: return vfioDeviceFeature(vdev, cur, arg);
      default: return vdev.ops.ioctl(vdev, cur, request, arg);
    }
  },
  read(file, cur, buf, pos) {
    const s = stateOf(file);
    if (s === undefined || !live(s.cdev.group.kernel, s)) return E.ENODEV;
    return s.binding === null ? E.EINVAL : s.cdev.vdev.ops.read(s.cdev.vdev, cur, buf, pos);
  },
  write(file, cur, buf, pos) {
    const s = stateOf(file);
    if (s === undefined || !live(s.cdev.group.kernel, s)) return E.ENODEV;
    return s.binding === null ? E.EINVAL : s.cdev.vdev.ops.write(s.cdev.vdev, cur, buf, pos);
  },
  mmap(file, cur, vma) {
    const s = stateOf(file);
    if (s === undefined || !live(s.cdev.group.kernel, s)) return E.ENODEV;
    return s.binding === null ? E.EINVAL : s.cdev.vdev.ops.mmap(s.cdev.vdev, cur, vma);
  },
};
