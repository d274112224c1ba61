import type { PciDev } from '../pci/dev.ts';
import type { IommuDomain } from './domain.ts';

/** One reserved IOVA region (Linux `struct iommu_resv_region`), as `reserved_regions` lists it. */
export interface ResvRegion {
  readonly start: number;
  /** Inclusive. */
  readonly last: number;
  /** `msi`, `direct`, `reserved`, `direct-relaxable`, `msi-sw`. */
  readonly type: string;
}

/**
 * The kernel's view of one IOMMU group (Linux `struct iommu_group`): its number, its devices, every
 * requester id their DMA carries (the context entries the driver programs), its default domain, the
 * domain attached now, and the DMA owner that has claimed it (VFIO, iommufd), if any.
 */
export class IommuGroupK {
  readonly id: number;
  readonly devices: PciDev[] = [];
  /** Requester ids of the members' DMA (aliases included), each once, in probe order. */
  readonly rids: number[] = [];
  defaultDomain: IommuDomain | undefined;
  /** The domain attached now (the default one unless an owner attached another). */
  domain: IommuDomain | undefined;
  /** The blocking domain an owner's claim attaches (made on first claim). */
  blockingDomain: IommuDomain | undefined;
  /**
   * Who claimed DMA ownership (`iommu_group_claim_dma_owner`); `ownerCount` counts it, or (without an
   * owner) the kernel drivers using the default domain (`iommu_device_use_default_domain`).
   */
  owner: unknown = undefined;
  ownerCount = 0;

  constructor(id: number) {
    this.id = id;
  }

  /** `/sys/kernel/iommu_groups/<id>`. */
  get sysfsPath(): string {
    return `/sys/kernel/iommu_groups/${this.id}`;
  }
}
