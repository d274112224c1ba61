import { fileInode } from '../fs/inode.ts';
import { relativeLink, sysfsAttr } from '../fs/sysfs.ts';
import type { Kernel } from '../kernel.ts';
import { iommufdFops } from './main.ts';

/**
 * iommufd (Linux `drivers/iommu/iommufd/`, spec/linux-uapi.md section 3): `/dev/iommu`, its IOAS objects
 * and the in-kernel API the VFIO device cdev uses ({@link IommufdCtx}, {@link iommufdFromFile}).
 */

export { IommufdCtx, iommufdFops, iommufdFromFile } from './main.ts';
export { attachDevice, bindDevice, detachDevice, unbindDevice } from './device.ts';
export type { DeviceObject, HwptPagingObject, IoasObject, IommufdObject } from './objects.ts';
export { userLockedVm, type AccountMode } from './pages.ts';

/** `MISC_MAJOR`. */
const MISC_MAJOR = 10;
/**
 * The minor of `/dev/iommu`: Linux registers it with `MISC_DYNAMIC_MINOR`, and `misc_minor_alloc` hands
 * out dynamic minors from `DYNAMIC_MINORS - 1` (127) downwards; iommufd is the first dynamic misc device
 * dmasim registers, so it gets 127 on every boot.
 */
export const IOMMUFD_MINOR = 127;

/** Whether `kernel`'s Linux version has iommufd and `/dev/iommu`. */
export function hasIommufd(kernel: Kernel): boolean {
  return kernel.behaviour.iommufd;
}

/**
 * Linux `iommufd_init`: registers the misc device `/dev/iommu` (`iommu_misc_dev`: mode 0660, root) with
 * `/sys/class/misc/iommu`. Nothing on a kernel before 6.2. Idempotent.
 */
export function iommufdInit(kernel: Kernel): void {
  if (!hasIommufd(kernel) || kernel.vfs.exists('/dev/iommu')) return;
  const vfs = kernel.vfs;
  vfs.add('/dev/iommu', fileInode('chr', iommufdFops, 0o660, { rdev: { major: MISC_MAJOR, minor: IOMMUFD_MINOR } }));
  const misc = '/sys/devices/virtual/misc/iommu';
  vfs.add(`${misc}/dev`, sysfsAttr(0o444, { show: () => `${MISC_MAJOR}:${IOMMUFD_MINOR}\n` }));
  vfs.symlink('/sys/class/misc/iommu', relativeLink('/sys/class/misc', misc));
}
