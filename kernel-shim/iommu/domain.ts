import type { VtdSlPageTable } from '../../iommu/index.ts';
import type { IommuGroupK } from './group.ts';

/**
 * Domain types (Linux `IOMMU_DOMAIN_*`): `DMA` and `DMA_FQ` are default domains the DMA API allocates
 * IOVAs in (strict, or lazy with a flush queue); `IDENTITY` passes DMA through (`iommu=pt`); `UNMANAGED`
 * is a domain its user maps (VFIO, iommufd); `BLOCKED` translates nothing.
 */
export type IommuDomainType = 'DMA' | 'DMA_FQ' | 'IDENTITY' | 'UNMANAGED' | 'BLOCKED';

/** How `/sys/kernel/iommu_groups/N/type` names a default domain's type (`iommu_group_show_type`). */
export const DOMAIN_TYPE_SYSFS: Readonly<Record<IommuDomainType, string>> = {
  BLOCKED: 'blocked',
  IDENTITY: 'identity',
  UNMANAGED: 'unmanaged',
  DMA: 'DMA',
  DMA_FQ: 'DMA-FQ',
};

/** How the boot log names the default type (`iommu_domain_type_str`). */
export const DOMAIN_TYPE_LOG: Readonly<Record<IommuDomainType, string>> = {
  BLOCKED: 'Blocked',
  IDENTITY: 'Passthrough',
  UNMANAGED: 'Unmanaged',
  DMA: 'Translated',
  DMA_FQ: 'Translated',
};

/**
 * One IOMMU domain (Linux `struct iommu_domain` + intel-iommu's `dmar_domain`): its type, its domain id on
 * the unit, its page table (none for pass-through and blocked domains) and the groups attached to it.
 */
export class IommuDomain {
  readonly id: number;
  type: IommuDomainType;
  /** The domain id on the unit (allocated at creation). */
  readonly did: number;
  /** The second-level table; null for pass-through and blocking domains. */
  readonly table: VtdSlPageTable | null;
  /** Groups attached now. */
  readonly groups = new Set<IommuGroupK>();
  /** Mapped bytes (for summaries and leak checks). */
  mappedBytes = 0;
  /** Set when freed: any use after is a kernel bug. */
  freed = false;

  constructor(id: number, type: IommuDomainType, did: number, table: VtdSlPageTable | null) {
    this.id = id;
    this.type = type;
    this.did = did;
    this.table = table;
  }

  /** Whether DMA-API IOVAs live in it (a default translated domain). */
  get isDma(): boolean {
    return this.type === 'DMA' || this.type === 'DMA_FQ';
  }
}
