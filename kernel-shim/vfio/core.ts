import { E } from '../errno.ts';
import { fileInode } from '../fs/inode.ts';
import { relativeLink, sysfsAttr } from '../fs/sysfs.ts';
import type { Kernel } from '../kernel.ts';
import { vfioContainerFops } from './container.ts';
import type { VfioDevice } from './device.ts';
import { vfioCdevAdd, vfioCdevRemove } from './cdev.ts';
import { VfioGroup, vfioGroupFops, vfioRevokeDevice } from './group.ts';
import { noiommuEnabled, noiommuGroupAlloc, noiommuGroupFree, noiommuGroupOf } from './noiommu.ts';
import { TAINT } from '../kernel.ts';

/**
 * The VFIO core (Linux `drivers/vfio/vfio_main.c` + `group.c`'s registration side): `/dev/vfio/vfio`, the
 * container node (misc major 10, minor {@link VFIO_MINOR}, mode 0666), and one `/dev/vfio/<N>` per IOMMU
 * group with a VFIO device (major {@link VFIO_GROUP_MAJOR}, minors from 0 in creation order, mode 0600
 * root), created at the group's first device and removed with its last. sysfs: `/sys/class/vfio/<N>`
 * (a link to `/sys/devices/virtual/vfio/<N>` with `dev`) and `/sys/class/misc/vfio`.
 */

/** Linux `VFIO_MINOR` (`include/linux/miscdevice.h`). */
export const VFIO_MINOR = 196;
/** `MISC_MAJOR`. */
export const MISC_MAJOR = 10;
/**
 * The char major of group nodes: Linux allocates it dynamically (`alloc_chrdev_region`); dmasim fixes
 * 511, the first of the extended dynamic range, so nodes are the same on every boot.
 */
export const VFIO_GROUP_MAJOR = 511;

/** The VFIO state of one kernel. */
interface VfioCore {
  /** Groups by IOMMU group id. */
  readonly groups: Map<number, VfioGroup>;
  readonly devices: Set<VfioDevice>;
}

const cores = new WeakMap<Kernel, VfioCore>();

/** Linux `vfio_init`: the container node and the class directories. Idempotent. */
export function vfioInit(kernel: Kernel): void {
  if (cores.has(kernel)) return;
  cores.set(kernel, { groups: new Map(), devices: new Set() });
  const vfs = kernel.vfs;
  vfs.add('/dev/vfio/vfio', fileInode('chr', vfioContainerFops, 0o666, { rdev: { major: MISC_MAJOR, minor: VFIO_MINOR } }));
  vfs.mkdirp('/sys/class/vfio');
  const misc = '/sys/devices/virtual/misc/vfio';
  vfs.add(`${misc}/dev`, sysfsAttr(0o444, { show: () => `${MISC_MAJOR}:${VFIO_MINOR}\n` }));
  vfs.symlink('/sys/class/misc/vfio', relativeLink('/sys/class/misc', misc));
}

/** The VFIO groups of `kernel` that have devices, by group id. */
export function vfioGroups(kernel: Kernel): readonly VfioGroup[] {
  const c = cores.get(kernel);
  return c === undefined ? [] : [...c.groups.values()].sort((a, b) => a.id - b.id);
}

/**
 * Linux `vfio_register_group_dev` (`vfio_group_find_or_alloc`): adds `vdev` to the VFIO group of its IOMMU
 * group, creating the group (and `/dev/vfio/<N>`) with its first device. A device without an IOMMU group
 * is `-EINVAL`, unless `vfio.enable_unsafe_noiommu_mode` is on: then it gets a fake IOMMU group of its own
 * (`vfio-noiommu`, node `/dev/vfio/noiommu-<N>`), the kernel is tainted (`TAINT_USER`) and the log says
 * `Adding kernel taint for vfio-noiommu group on device`. The cdev path does not serve noiommu devices
 * (spec 1.8). `-EEXIST` if it is registered already.
 */
export function vfioRegisterGroupDev(kernel: Kernel, vdev: VfioDevice): number {
  vfioInit(kernel);
  const core = cores.get(kernel) as VfioCore;
  if (core.devices.has(vdev)) return E.EEXIST;
  let ig = kernel.iommu?.groupOf(vdev.pdev);
  let g: VfioGroup | undefined;
  if (ig === undefined) {
    if (!noiommuEnabled(kernel.cmdline)) return E.EINVAL;
    ig = noiommuGroupAlloc(kernel, vdev.pdev);
    g = addGroup(kernel, core, new VfioGroup(kernel, ig, lowestFreeMinor(core), 'noiommu'));
    kernel.addTaint(TAINT.USER);
    kernel.log.printk('warn', `vfio-pci ${vdev.pdev.name}: Adding kernel taint for vfio-noiommu group on device`);
  } else {
    g = core.groups.get(ig.id) ?? addGroup(kernel, core, new VfioGroup(kernel, ig, lowestFreeMinor(core)));
  }
  g.devices.push(vdev);
  core.devices.add(vdev);
  if (g.type === 'iommu') vfioCdevAdd(kernel, vdev, g);
  return 0;
}

function lowestFreeMinor(core: VfioCore): number {
  const used = new Set([...core.groups.values()].map((x) => x.minor));
  let minor = 0;
  while (used.has(minor)) minor++;
  return minor;
}

/** `vfio_create_group`: the node `/dev/vfio/<name>`, `/sys/devices/virtual/vfio/<name>/dev` and the class link. */
function addGroup(kernel: Kernel, core: VfioCore, g: VfioGroup): VfioGroup {
  core.groups.set(g.id, g);
  const vfs = kernel.vfs;
  const minor = g.minor;
  vfs.add(g.devPath, fileInode('chr', vfioGroupFops, 0o600, { rdev: { major: VFIO_GROUP_MAJOR, minor }, data: g }));
  const dir = `/sys/devices/virtual/vfio/${g.name}`;
  vfs.add(`${dir}/dev`, sysfsAttr(0o444, { show: () => `${VFIO_GROUP_MAJOR}:${minor}\n` }));
  vfs.symlink(`/sys/class/vfio/${g.name}`, relativeLink('/sys/class/vfio', dir));
  return g;
}

/**
 * Linux `vfio_unregister_group_dev`. Linux blocks here until user space closes the device's fds (asking
 * it through the REQ interrupt); dmasim does not wait: an open device is closed now (`closeDevice`), and
 * its fds stay as they are (the container use and group file they hold go with them). The last device
 * removes the group node and detaches the group from its container, so an open group fd then answers
 * `ENODEV`.
 */
export function vfioUnregisterGroupDev(kernel: Kernel, vdev: VfioDevice): void {
  const core = cores.get(kernel);
  if (core === undefined || !core.devices.delete(vdev)) return;
  const ig = kernel.iommu?.groupOf(vdev.pdev) ?? noiommuGroupOf(kernel, vdev.pdev);
  const g = ig === undefined ? undefined : core.groups.get(ig.id);
  vfioCdevRemove(kernel, vdev);
  vfioRevokeDevice(vdev);
  if (g === undefined) return;
  const i = g.devices.indexOf(vdev);
  if (i >= 0) g.devices.splice(i, 1);
  if (g.devices.length > 0) return;
  const vfs = kernel.vfs;
  vfs.remove(g.devPath);
  vfs.remove(`/sys/class/vfio/${g.name}`);
  vfs.remove(`/sys/devices/virtual/vfio/${g.name}`);
  core.groups.delete(g.id);
  // Revoke every user of the IOMMU group: no device is active any more.
  if (g.container !== null && g.containerUsers <= 1) g.container.detachGroup(g);
  if (g.containerUsers <= 1) g.iommuGroup = null;
  // vfio_device_remove_group: a fake group loses its device (and so its sysfs) with it.
  if (g.type === 'noiommu' && ig !== undefined) noiommuGroupFree(kernel, ig);
}
