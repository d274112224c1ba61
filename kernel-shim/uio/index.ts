/**
 * The generic UIO core (Linux `drivers/uio/uio.c`): register a {@link UioInfo} under a parent device to
 * get `/dev/uioN` and `/sys/class/uio/uioN`. Drivers built on it (uio_pci_generic) live beside it.
 */
export {
  UIO_MAX_DEVICES, UioDevice, uioDeviceOf, uioDevices, uioEventNotify, uioInit, uioRegisterDevice, uioUnregisterDevice,
} from './core.ts';
export { uioFileOperations, type UioListener } from './fops.ts';
export {
  MAX_UIO_MAPS, MAX_UIO_PORT_REGIONS, UIO_IRQ_CUSTOM, UIO_IRQ_NONE, UIO_MAJOR, UIO_MEM, UIO_PORT,
  type UioInfo, type UioMem, type UioPort,
} from './info.ts';
export { allocKernelPages, freeKernelPages, type KernelPages } from './kmem.ts';
export { relativeLink } from './sysfs.ts';
