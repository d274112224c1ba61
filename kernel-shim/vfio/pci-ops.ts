import { E } from '../errno.ts';
import type { VfioDeviceOps } from './device.ts';

/**
 * vfio-pci's device operations (Linux `vfio_pci_core.c`): what a device fd of a PCI function does.
 * Built so far: opening enables the function and closing disables it; the device ioctls, region access
 * and mmap are not implemented yet and answer as Linux answers an unknown request (`ENOTTY`) or an invalid
 * region (`EINVAL`).
 */
export const vfioPciOps: VfioDeviceOps = {
  name: 'vfio-pci',
  openDevice(vdev) {
    const r = vdev.pdev.enable();
    return r < 0 ? r : 0;
  },
  closeDevice(vdev) {
    vdev.pdev.clearMaster();
    vdev.pdev.disable();
  },
  ioctl() {
    return E.ENOTTY;
  },
  read() {
    return E.EINVAL;
  },
  write() {
    return E.EINVAL;
  },
  mmap() {
    return E.EINVAL;
  },
};
