import { E } from '../errno.ts';
import { File, type FileOperations } from '../fs/file.ts';
import { fileInode } from '../fs/inode.ts';
import type { IommuGroupK } from '../iommu/group.ts';
import type { Kernel } from '../kernel.ts';
import type { Current } from '../task/current.ts';
import { copyArgszFromUser, copyStructFromUser, copyStructToUser, getUserU32, userAddr } from '../uapi/codec.ts';
import { O, PAGE_SIZE } from '../uapi/linux.ts';
import { VFIO, VFIO_GROUP_FLAGS, vfio_device_bind_iommufd, vfio_group_status } from '../uapi/vfio.ts';
import { vfioContainerFromFile, type VfioContainer } from './container.ts';
import { vfioCdevBoundCount } from './cdev.ts';
import type { VfioDevice } from './device.ts';
import { vfioDeviceFeature } from './feature.ts';

/**
 * VFIO groups (Linux `drivers/vfio/group.c`, spec/linux-uapi.md 1.6): `/dev/vfio/<N>` for IOMMU group N,
 * opened once at a time; it joins a container, and hands out device fds once the container has an IOMMU.
 * A device fd holds the group file (so closing the group fd first does not detach it) and counts as a
 * container user (so UNSET_CONTAINER is `EBUSY` while any device is open).
 */

/**
 * A group's type (Linux `enum vfio_group_type`): `iommu` for a real IOMMU group, `noiommu` for the fake
 * group no-IOMMU mode gives a device without one (`VFIO_NO_IOMMU`).
 */
export type VfioGroupType = 'iommu' | 'noiommu';

/** One VFIO group (Linux `struct vfio_group`). */
export class VfioGroup {
  readonly kernel: Kernel;
  /** The IOMMU group id: the node is `/dev/vfio/<id>` (`/dev/vfio/noiommu-<id>`). */
  readonly id: number;
  readonly type: VfioGroupType;
  /** The char device minor (lowest free, as Linux's IDR hands them out). */
  readonly minor: number;
  /** The IOMMU group; null once the last device is gone (ioctls then answer `ENODEV`). */
  iommuGroup: IommuGroupK | null;
  /** Registered devices, in registration order. */
  readonly devices: VfioDevice[] = [];
  /** The open group file (`opened_file`): a second open is `EBUSY`. */
  openedFile: File | null = null;
  container: VfioContainer | null = null;
  /** 1 for the group itself plus one per open device (`container_users`). */
  containerUsers = 0;

  constructor(kernel: Kernel, iommuGroup: IommuGroupK, minor: number, type: VfioGroupType = 'iommu') {
    this.kernel = kernel;
    this.id = iommuGroup.id;
    this.type = type;
    this.minor = minor;
    this.iommuGroup = iommuGroup;
  }

  /** The group device's name (`vfio_create_group`'s `"%s%d"`): `<id>`, or `noiommu-<id>`. */
  get name(): string {
    return this.type === 'noiommu' ? `noiommu-${this.id}` : String(this.id);
  }

  /** `/dev/vfio/<name>`. */
  get devPath(): string {
    return `/dev/vfio/${this.name}`;
  }
}

/** The group of a group file, if it is one (Linux `vfio_file_is_group` + its private data). */
export function vfioGroupFromFile(file: File): VfioGroup | undefined {
  return groupOf(file);
}

function groupOf(file: File): VfioGroup | undefined {
  return file.private instanceof VfioGroup ? file.private : undefined;
}

/**
 * Linux `vfio_group_fops_open`: `-ENODEV` for a group whose devices are gone, `-EPERM` for a noiommu
 * group without `CAP_SYS_RAWIO`, `-EBUSY` when it is open already. Permissions (0600 root) are the VFS's.
 */
function groupOpen(file: File, cur: Current): number {
  const ino = file.inode;
  const g = ino.kind === 'file' ? ino.data : undefined;
  if (!(g instanceof VfioGroup) || g.iommuGroup === null) return E.ENODEV;
  if (g.type === 'noiommu' && !cur.cred.capable('SYS_RAWIO')) return E.EPERM;
  // A device of the group bound through its cdev (`cdev_device_open_cnt`).
  if (vfioCdevBoundCount(g) > 0) return E.EBUSY;
  if (g.openedFile !== null) return E.EBUSY;
  g.openedFile = file;
  file.private = g;
  return 0;
}

/** Linux `vfio_group_fops_release`: runs only with no device fd open (they hold the file); detaches the container. */
function groupRelease(file: File): void {
  const g = groupOf(file);
  if (g === undefined) return;
  g.container?.detachGroup(g);
  g.openedFile = null;
  file.private = undefined;
}

/** Linux `vfio_group_ioctl_get_status`. */
function getStatus(g: VfioGroup, cur: Current, arg: bigint): number {
  const c = copyArgszFromUser(cur.mm, arg, vfio_group_status);
  if (typeof c === 'number') return c;
  const s = c.value;
  s.flags = 0;
  const ig = g.iommuGroup;
  if (ig === null) return E.ENODEV;
  if (g.container !== null) s.flags |= VFIO_GROUP_FLAGS.VIABLE | VFIO_GROUP_FLAGS.CONTAINER_SET;
  // iommu_group_dma_owner_claimed: no kernel DMA driver (and no other owner) uses the group.
  else if (ig.ownerCount === 0) s.flags |= VFIO_GROUP_FLAGS.VIABLE;
  return copyStructToUser(cur.mm, arg, vfio_group_status, s, vfio_group_status.size);
}

/**
 * Linux `vfio_group_ioctl_set_container`: the fd (`EFAULT` unreadable, `EBADF` not open), `EINVAL` with a
 * container already set, `ENODEV` for a dead group, `EBADFD` for an fd that is not a container; then
 * the container's attach (`EPERM` not viable).
 */
function setContainer(g: VfioGroup, cur: Current, arg: bigint): number {
  const v = getUserU32(cur.mm, arg);
  if (typeof v === 'number') return v;
  const f = cur.task.fds.get(v.value | 0);
  if (f === undefined) return E.EBADF;
  if (g.container !== null) return E.EINVAL;
  if (g.iommuGroup === null) return E.ENODEV;
  const c = vfioContainerFromFile(f);
  if (c === undefined) return E.EBADFD;
  return c.attachGroup(g, cur.thread, cur);
}

/** Linux `vfio_group_ioctl_unset_container`: `EINVAL` without a container, `EBUSY` while a device is open. */
function unsetContainer(g: VfioGroup, cur: Current): number {
  const c = g.container;
  if (c === null) return E.EINVAL;
  if (g.containerUsers !== 1) return E.EBUSY;
  c.detachGroup(g, cur.thread);
  return 0;
}

/** Linux `strndup_user(arg, PAGE_SIZE)`: the NUL-terminated string, `-EFAULT`, or `-EINVAL` with no NUL in a page. */
function strndupUser(cur: Current, arg: bigint): string | number {
  const a = userAddr(arg);
  const bytes: number[] = [];
  const b = new Uint8Array(1);
  for (let i = 0; i < PAGE_SIZE; i++) {
    const r = cur.mm.copyFromUser(a < 0 ? -1 : a + i, b);
    if (r < 0) return r;
    if (b[0] === 0) return new TextDecoder().decode(new Uint8Array(bytes));
    bytes.push(b[0] as number);
  }
  return E.EINVAL;
}

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/;

/**
 * vfio-pci's `match` (`vfio_pci_core_match`): 1 when `buf` is the device's name, optionally followed by
 * spaces and one ` vf_token=<uuid>`; 0 for another name; `-EINVAL` for an unknown or repeated option or a
 * malformed uuid, and for a token given to a device that is neither a PF with VFs nor a VF
 * (`vfio_pci_validate_vf_token`; dmasim has no SR-IOV, so a wrong token's `EACCES` cannot arise yet).
 */
export function vfioPciMatch(name: string, buf: string): number {
  if (!buf.startsWith(name)) return 0;
  let rest = buf.slice(name.length);
  let token = false;
  if (rest.length > 0) {
    if (!rest.startsWith(' ')) return 0;
    while (rest.length > 0) {
      if (rest.startsWith(' ')) {
        rest = rest.slice(1);
        continue;
      }
      if (!token && rest.startsWith('vf_token=')) {
        rest = rest.slice('vf_token='.length);
        if (rest.length < 36 || !UUID_RE.test(rest)) return E.EINVAL;
        token = true;
        rest = rest.slice(36);
      } else {
        return E.EINVAL;
      }
    }
  }
  // Not a PF or VF: "VF token incorrectly provided".
  if (token) return E.EINVAL;
  return 1;
}

/**
 * Linux `vfio_group_ioctl_get_device_fd`: the name (`strndup_user`), the device (`ENODEV` if none
 * matches, the match's error), an fd (`EMFILE`), then the open: `EINVAL` without a container or before
 * SET_IOMMU, then the driver's `openDevice` at the device's first open. The fd is `O_CLOEXEC`.
 *
 * A noiommu group's device also needs `CAP_SYS_RAWIO` at its first open (`vfio_group_use_container`:
 * after the SET_IOMMU `EINVAL`, `EPERM`), as spec 1.8 records. Each device fd opened from a noiommu group
 * logs `vfio-noiommu device opened by user (<comm>:<pid>)` (`vfio_device_open_file`, after the open).
 */
async function getDeviceFd(g: VfioGroup, cur: Current, arg: bigint): Promise<number> {
  const buf = strndupUser(cur, arg);
  if (typeof buf === 'number') return buf;
  let dev: VfioDevice | undefined;
  for (const d of g.devices) {
    const m = vfioPciMatch(d.pdev.name, buf);
    if (m < 0) return m;
    if (m > 0) {
      dev = d;
      break;
    }
  }
  if (dev === undefined) return E.ENODEV;
  const fds = cur.task.fds;
  if (fds.fds().length >= fds.limit) return E.EMFILE;
  const noiommu = g.type === 'noiommu';
  // vfio_df_group_open / vfio_group_use_container.
  if (g.container === null || g.container.data === null) return E.EINVAL;
  const groupFile = g.openedFile;
  if (groupFile === null) return E.EINVAL;
  if (dev.openCount === 0) {
    if (noiommu && !cur.cred.capable('SYS_RAWIO')) return E.EPERM;
    groupFile.get();
    g.containerUsers++;
    dev.openCount = 1;
    let r = dev.ops.openDevice(dev, cur);
    if (typeof r !== 'number') r = await r;
    if (r < 0) {
      dev.openCount = 0;
      g.containerUsers--;
      groupFile.put();
      return r;
    }
  } else {
    dev.openCount++;
  }
  const file = new File(deviceInode, deviceFops, 'anon_inode:[vfio-device]', O.RDWR);
  file.private = { dev, group: g, groupFile } satisfies DeviceFileState;
  const fd = fds.install(file, true);
  if (fd < 0) file.put();
  else if (noiommu) cur.kernel.log.printk('warn', `vfio-pci ${dev.pdev.name}: vfio-noiommu device opened by user (${cur.task.comm}:${cur.task.pid})`);
  return fd;
}

/**
 * `vfio_df_ioctl_bind_iommufd` on a device fd from a group: the struct's checks, then `EINVAL` (BIND is for
 * cdev fds only).
 */
function bindOnGroupFd(cur: Current, arg: bigint): number {
  const c = copyStructFromUser(cur.mm, arg, vfio_device_bind_iommufd);
  return typeof c === 'number' ? c : E.EINVAL;
}

/** What a device file holds. */
interface DeviceFileState {
  readonly dev: VfioDevice;
  readonly group: VfioGroup;
  readonly groupFile: File;
}

/** Devices whose driver went away while they were open (their fds answer `ENODEV`). */
const revoked = new WeakSet<VfioDevice>();

/** Closes an open device whose driver is being removed; its fds then answer `ENODEV` and close quietly. */
export function vfioRevokeDevice(dev: VfioDevice): void {
  if (dev.openCount === 0 || revoked.has(dev)) return;
  revoked.add(dev);
  dev.ops.closeDevice(dev);
}

function stateOf(file: File): DeviceFileState | undefined {
  const s = file.private as DeviceFileState | undefined;
  if (s === undefined || typeof s !== 'object' || !('dev' in s)) return undefined;
  return s;
}

function liveState(file: File): DeviceFileState | undefined {
  const s = stateOf(file);
  return s === undefined || revoked.has(s.dev) ? undefined : s;
}

/** The device of a VFIO device file (for the bus driver's tests and siblings), if it is one. */
export function vfioDeviceFromFile(file: File): VfioDevice | undefined {
  return file.ops === deviceFops ? stateOf(file)?.dev : undefined;
}

/**
 * Linux `vfio_device_fops`: everything but release goes to the bus driver's ops; the last close of the
 * device runs `closeDevice` and gives back the container use and the group file reference.
 */
const deviceFops: FileOperations = {
  pread: true,
  release(file) {
    const s = stateOf(file);
    if (s === undefined) return;
    file.private = undefined;
    const { dev, group, groupFile } = s;
    if (--dev.openCount === 0) {
      if (revoked.has(dev)) revoked.delete(dev);
      else dev.ops.closeDevice(dev);
      group.containerUsers--;
      groupFile.put();
    }
  },
  ioctl(file, cur, request, arg) {
    const s = liveState(file);
    if (s === undefined) return E.ENODEV;
    if (request === VFIO.DEVICE_FEATURE) return vfioDeviceFeature(s.dev, cur, arg);
    if (request === VFIO.DEVICE_BIND_IOMMUFD) return bindOnGroupFd(cur, arg);
    return s.dev.ops.ioctl(s.dev, cur, request, arg);
  },
  read(file, cur, buf, pos) {
    const s = liveState(file);
    return s === undefined ? E.ENODEV : s.dev.ops.read(s.dev, cur, buf, pos);
  },
  write(file, cur, buf, pos) {
    const s = liveState(file);
    return s === undefined ? E.ENODEV : s.dev.ops.write(s.dev, cur, buf, pos);
  },
  mmap(file, cur, vma) {
    const s = liveState(file);
    return s === undefined ? E.ENODEV : s.dev.ops.mmap(s.dev, cur, vma);
  },
};

const deviceInode = fileInode('anon', deviceFops, 0o600);

/**
 * `/dev/vfio/<N>`'s file operations (Linux `vfio_group_fops`): GET_STATUS, SET_CONTAINER,
 * UNSET_CONTAINER, GET_DEVICE_FD; anything else `-ENOTTY`.
 */
export const vfioGroupFops: FileOperations = {
  open: groupOpen,
  release: groupRelease,
  ioctl(file, cur, request, arg) {
    const g = groupOf(file);
    if (g === undefined) return E.ENODEV;
    switch (request) {
      case VFIO.GROUP_GET_STATUS: return getStatus(g, cur, arg);
      case VFIO.GROUP_SET_CONTAINER: return setContainer(g, cur, arg);
      case VFIO.GROUP_UNSET_CONTAINER: return unsetContainer(g, cur);
      case VFIO.GROUP_GET_DEVICE_FD: return getDeviceFd(g, cur, arg);
      default: return E.ENOTTY;
    }
  },
};
