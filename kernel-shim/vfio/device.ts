import type { UserBuf } from '../fs/file.ts';
import type { Vma } from '../mm/vma.ts';
import type { PciDev } from '../pci/dev.ts';
import type { Current } from '../task/current.ts';

/**
 * The contract between the VFIO core (`/dev/vfio/vfio`, `/dev/vfio/<group>`, the device fd that
 * `VFIO_GROUP_GET_DEVICE_FD` returns) and a VFIO bus driver such as vfio-pci (Linux `struct vfio_device`
 * and `struct vfio_device_ops`). The core owns groups, containers and device fds; the bus driver answers
 * the device fd's ioctls, reads, writes and mmaps.
 */

/** What a bus driver implements for its devices (Linux `vfio_device_ops`). */
export interface VfioDeviceOps {
  /** `vfio-pci`. */
  readonly name: string;
  /** The first open of the device (`open_device`): enable it, set up its state; 0 or `-errno`. */
  openDevice(vdev: VfioDevice, cur: Current): number | Promise<number>;
  /** The last close (`close_device`): tear down interrupts and mappings, disable. Runs without a caller at process exit. */
  closeDevice(vdev: VfioDevice): void;
  /** Device fd ioctls other than the core's (`VFIO_DEVICE_*`); unknown ones give `-ENOTTY`. */
  ioctl(vdev: VfioDevice, cur: Current, request: number, arg: bigint): number | Promise<number>;
  /** Region access at the region offset (`index << 40` for vfio-pci), `pos` being the file offset. */
  read(vdev: VfioDevice, cur: Current, buf: UserBuf, pos: number): number | Promise<number>;
  write(vdev: VfioDevice, cur: Current, buf: UserBuf, pos: number): number | Promise<number>;
  /** Maps a region (`vma.pgoff` selects it); 0 or `-errno`. */
  mmap(vdev: VfioDevice, cur: Current, vma: Vma): number;
  /**
   * The bus driver's `DEVICE_FEATURE`s (`device_feature`), after the core's checks: `flags` as given, the
   * data at user address `data`, `dataLen` bytes of it (`argsz` less the header). Unknown features `-ENOTTY`.
   */
  feature?(vdev: VfioDevice, cur: Current, flags: number, data: number, dataLen: number): number | Promise<number>;
}

/** One device VFIO manages (Linux `struct vfio_device`). */
export interface VfioDevice {
  /** The PCI function. */
  readonly pdev: PciDev;
  readonly ops: VfioDeviceOps;
  /** Open device fds (`open_count`): `openDevice` runs at 0 -> 1, `closeDevice` at 1 -> 0. */
  openCount: number;
  /** The bus driver's state. */
  priv: unknown;
}
