import type { SimProcess } from '../../sim/index.ts';
import { E } from '../errno.ts';
import type { File, FileOperations } from '../fs/file.ts';
import type { IommuGroupK } from '../iommu/group.ts';
import type { Kernel } from '../kernel.ts';
import type { Current } from '../task/current.ts';
import { VFIO, VFIO_API_VERSION } from '../uapi/vfio.ts';
import type { VfioGroup } from './group.ts';
import { noiommuDriver } from './noiommu.ts';
import { type1Driver } from './type1.ts';

/**
 * The VFIO container (Linux `drivers/vfio/container.c`, spec/linux-uapi.md 1.6): every open of
 * `/dev/vfio/vfio` is a new container; groups join it with `VFIO_GROUP_SET_CONTAINER`, and once it has
 * one, `VFIO_SET_IOMMU` picks the IOMMU driver that answers for the type. The container lives while its
 * fd or any group holds it.
 */

/** One IOMMU driver instance of a container (Linux `iommu_data` with `vfio_iommu_driver_ops`). */
export interface VfioIommuData {
  /** `CHECK_EXTENSION` once set. */
  checkExtension(arg: bigint): number;
  /** Every container ioctl other than GET_API_VERSION, CHECK_EXTENSION and SET_IOMMU. */
  ioctl(cur: Current, request: number, arg: bigint): number | Promise<number>;
  attachGroup(g: IommuGroupK, cpu?: SimProcess): number;
  detachGroup(g: IommuGroupK, cpu?: SimProcess): void;
  /** Drops every mapping and the domains. */
  release(cpu?: SimProcess): void;
}

/** An IOMMU driver VFIO knows (Linux `vfio_register_iommu_driver`). */
export interface VfioIommuDriver {
  readonly name: string;
  /** The no-IOMMU driver (`ops == &vfio_noiommu_ops`): the only one a container of noiommu groups accepts. */
  readonly noiommu?: boolean;
  /** `ops->ioctl(NULL, VFIO_CHECK_EXTENSION, arg)`. */
  checkExtension(kernel: Kernel, arg: bigint): number;
  /** `ops->open(arg)` in the context of `cur` (its `capable()`): an instance, or `-errno`. */
  open(kernel: Kernel, arg: bigint, cur?: Current): VfioIommuData | number;
}

/** The IOMMU drivers, in the order VFIO asks them: type1, then vfio-noiommu (Linux's `list_add` puts the later-registered type1 module first). */
export const VFIO_IOMMU_DRIVERS: readonly VfioIommuDriver[] = [type1Driver, noiommuDriver];

/** One container (Linux `struct vfio_container`). */
export class VfioContainer {
  readonly kernel: Kernel;
  /** Groups attached, in attach order. */
  readonly groups: VfioGroup[] = [];
  driver: VfioIommuDriver | null = null;
  data: VfioIommuData | null = null;
  /** Whether its groups are noiommu groups (`container->noiommu`, set by each attach). */
  noiommu = false;

  constructor(kernel: Kernel) {
    this.kernel = kernel;
  }

  /**
   * Linux `vfio_iommu_driver_allowed`: a container of noiommu groups accepts only the vfio-noiommu driver,
   * any other container never does.
   */
  driverAllowed(d: VfioIommuDriver): boolean {
    return this.noiommu === (d.noiommu === true);
  }

  /**
   * Linux `vfio_container_ioctl_check_extension`: before SET_IOMMU every driver (only the allowed ones once
   * a group is attached; the first positive answer), then the chosen one.
   */
  checkExtension(arg: bigint): number {
    if (this.data !== null) return this.data.checkExtension(arg);
    let r = 0;
    for (const d of VFIO_IOMMU_DRIVERS) {
      if (this.groups.length > 0 && !this.driverAllowed(d)) continue;
      r = d.checkExtension(this.kernel, arg);
      if (r > 0) break;
    }
    return r;
  }

  /**
   * Linux `vfio_ioctl_set_iommu`: `-EINVAL` with no group or an IOMMU already set; each allowed driver
   * that answers `CHECK_EXTENSION(arg)` is opened (in the context of `cur`) and every group attached to
   * it; the first that succeeds is kept. `-ENODEV` when none answers; else the last failure (`open`'s
   * `-EINVAL` for UNMAP_ALL, vfio-noiommu's `-EPERM` without `CAP_SYS_RAWIO`, an attach error).
   */
  setIommu(arg: bigint, cpu?: SimProcess, cur?: Current): number {
    if (this.groups.length === 0 || this.driver !== null) return E.EINVAL;
    let ret = E.ENODEV;
    for (const d of VFIO_IOMMU_DRIVERS) {
      if (!this.driverAllowed(d)) continue;
      if (d.checkExtension(this.kernel, arg) <= 0) continue;
      const data = d.open(this.kernel, arg, cur);
      if (typeof data === 'number') {
        ret = data;
        continue;
      }
      ret = 0;
      for (const g of this.groups) {
        const ig = g.iommuGroup;
        const r = ig === null ? E.ENODEV : data.attachGroup(ig, cpu);
        if (r < 0) {
          ret = r;
          break;
        }
      }
      if (ret < 0) {
        data.release(cpu);
        continue;
      }
      this.driver = d;
      this.data = data;
      break;
    }
    return ret;
  }

  /**
   * Linux `vfio_container_attach_group` after the group's checks: a noiommu group without `CAP_SYS_RAWIO`
   * is `-EPERM`, and so is mixing noiommu and real groups in one container; a real group's DMA ownership
   * is claimed (`-EPERM` while a kernel DMA driver uses it; a noiommu group claims nothing: there is no
   * IOMMU to block its DMA); it is attached at once if an IOMMU is set (releasing the claim if that
   * fails), and added.
   */
  attachGroup(g: VfioGroup, cpu?: SimProcess, cur?: Current): number {
    const ig = g.iommuGroup;
    const fake = g.type === 'noiommu';
    if (fake && cur !== undefined && !cur.cred.capable('SYS_RAWIO')) return E.EPERM;
    // Real groups and fake groups cannot mix.
    if (this.groups.length > 0 && this.noiommu !== fake) return E.EPERM;
    const iommu = fake ? null : this.kernel.iommu;
    if ((!fake && iommu === null) || ig === null) return E.ENODEV;
    if (iommu !== null) {
      const c = iommu.claimDmaOwner(ig, g, cpu);
      if (c < 0) return c;
    }
    if (this.data !== null) {
      const r = this.data.attachGroup(ig, cpu);
      if (r < 0) {
        iommu?.releaseDmaOwner(ig, cpu);
        return r;
      }
    }
    g.container = this;
    g.containerUsers = 1;
    this.noiommu = fake;
    this.groups.push(g);
    return 0;
  }

  /**
   * Linux `vfio_group_detach_container`: detaches from the IOMMU driver, releases DMA ownership, and when
   * the last group leaves, releases the driver instance (every mapping unmapped and unpinned, the domain
   * freed): the container returns to its unset state.
   */
  detachGroup(g: VfioGroup, cpu?: SimProcess): void {
    const i = this.groups.indexOf(g);
    if (i < 0) return;
    const ig = g.iommuGroup;
    if (ig !== null) {
      this.data?.detachGroup(ig, cpu);
      if (g.type !== 'noiommu') this.kernel.iommu?.releaseDmaOwner(ig, cpu);
    }
    g.container = null;
    g.containerUsers = 0;
    this.groups.splice(i, 1);
    if (this.groups.length === 0 && this.data !== null) {
      this.data.release(cpu);
      this.data = null;
      this.driver = null;
    }
  }
}

/** The container of a container file (Linux `vfio_container_from_file`), if it is one. */
export function vfioContainerFromFile(file: File): VfioContainer | undefined {
  return file.ops === vfioContainerFops && file.private instanceof VfioContainer ? file.private : undefined;
}

/**
 * `/dev/vfio/vfio`'s file operations (Linux `vfio_fops`): GET_API_VERSION (0), CHECK_EXTENSION and
 * SET_IOMMU (argument by value); every other request goes to the IOMMU driver once one is set
 * (`-ENOTTY` there for unknown ones), and is `-EINVAL` before.
 */
export const vfioContainerFops: FileOperations = {
  open(file: File, cur: Current): number {
    file.private = new VfioContainer(cur.kernel);
    return 0;
  },
  release(file: File): void {
    // The container itself lives on while groups hold it (vfio_container_put).
    file.private = undefined;
  },
  ioctl(file: File, cur: Current, request: number, arg: bigint): number | Promise<number> {
    const c = vfioContainerFromFile(file);
    if (c === undefined) return E.EINVAL;
    switch (request) {
      case VFIO.GET_API_VERSION: return VFIO_API_VERSION;
      case VFIO.CHECK_EXTENSION: return c.checkExtension(arg);
      case VFIO.SET_IOMMU: return c.setIommu(arg, cur.thread, cur);
      default: return c.data === null ? E.EINVAL : c.data.ioctl(cur, request, arg);
    }
  },
};
