import type { IommuDomain } from '../iommu/domain.ts';
import type { IommuGroupK } from '../iommu/group.ts';
import type { PciDev } from '../pci/dev.ts';
import type { IoPagetable } from './io-pagetable.ts';

/**
 * The objects of an iommufd context (Linux `struct iommufd_object` and its kinds). Every object starts
 * with one user, the table's own (`users`); an object that another holds (an IOAS under a HWPT, a HWPT
 * with a device attached, a device bound by a driver) has more, so DESTROY (`refcount_dec_if_one`) gives
 * `EBUSY` until they go.
 */

interface ObjectBase {
  readonly id: number;
  /** Linux `obj->users`. */
  users: number;
}

/** `IOMMUFD_OBJ_IOAS`. */
export interface IoasObject extends ObjectBase {
  readonly type: 'ioas';
  readonly iopt: IoPagetable;
  /** Its HWPT_PAGING objects (`ioas->hwpt_list`). */
  readonly hwpts: HwptPagingObject[];
}

/** `IOMMUFD_OBJ_HWPT_PAGING`: a domain whose mappings are the IOAS's. */
export interface HwptPagingObject extends ObjectBase {
  readonly type: 'hwpt_paging';
  readonly ioas: IoasObject;
  readonly domain: IommuDomain;
  /** Made by attaching an IOAS id (destroyed when its last device detaches). */
  readonly autoDomain: boolean;
  /**
   * Linux `enforce_cache_coherency`: set when the first device's IOMMU reports
   * `IOMMU_CAP_ENFORCE_CACHE_COHERENCY` (VT-d: ECAP.SC), so the domain forces snooping.
   */
  readonly enforceCacheCoherency: boolean;
  /** Devices attached now. */
  readonly devices: Set<DeviceObject>;
}

/** `IOMMUFD_OBJ_DEVICE`: a PCI function bound to the context (the VFIO cdev's BIND_IOMMUFD). */
export interface DeviceObject extends ObjectBase {
  readonly type: 'device';
  readonly pdev: PciDev;
  readonly group: IommuGroupK;
  /** The HWPT it is attached to, if any. */
  hwpt: HwptPagingObject | null;
}

/** Any object. */
export type IommufdObject = IoasObject | HwptPagingObject | DeviceObject;
