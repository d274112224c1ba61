import { PCI_ANY_ID } from './regs.ts';
import type { PciDev } from './dev.ts';

/** One entry of a driver's id table or a dynamic id (Linux `struct pci_device_id`). */
export interface PciDeviceId {
  readonly vendor: number;
  readonly device: number;
  /** Default {@link PCI_ANY_ID}. */
  readonly subvendor?: number;
  readonly subdevice?: number;
  /** Compared under {@link classMask} (default 0: any class). */
  readonly class?: number;
  readonly classMask?: number;
  readonly driverData?: number;
}

/**
 * A PCI driver (Linux `struct pci_driver`). `probe` returns 0 or `-errno` (it may sleep); `remove` undoes
 * it. A driver without an id table binds only through `new_id` or `driver_override`, as uio_pci_generic and
 * vfio-pci do.
 */
export interface PciDriver {
  readonly name: string;
  readonly idTable?: readonly PciDeviceId[];
  probe(dev: PciDev, id: PciDeviceId): number | Promise<number>;
  remove(dev: PciDev): void | Promise<void>;
  /**
   * Linux `driver_managed_dma`: the driver does not use the DMA API's default domain (vfio-pci,
   * pci-stub); without it, binding claims the default domain (`iommu_device_use_default_domain`) and fails
   * with `-EBUSY` while a user-space owner holds the device's IOMMU group.
   */
  readonly driverManagedDma?: boolean;
}

/** The id `pci_device_id_any` a `driver_override` match probes with. */
export const PCI_DEVICE_ID_ANY: PciDeviceId = { vendor: PCI_ANY_ID, device: PCI_ANY_ID, subvendor: PCI_ANY_ID, subdevice: PCI_ANY_ID };

/** The fields of a device `pci_match_one_device` looks at. */
export interface PciIdentity {
  readonly vendor: number;
  readonly device: number;
  readonly subsystemVendor: number;
  readonly subsystemDevice: number;
  readonly classCode: number;
}

/** Linux `pci_match_one_device`. */
export function pciMatchOne(id: PciDeviceId, dev: PciIdentity): boolean {
  const any = PCI_ANY_ID;
  const sv = id.subvendor ?? any;
  const sd = id.subdevice ?? any;
  return (id.vendor === any || id.vendor === dev.vendor)
    && (id.device === any || id.device === dev.device)
    && (sv === any || sv === dev.subsystemVendor)
    && (sd === any || sd === dev.subsystemDevice)
    && (((id.class ?? 0) ^ dev.classCode) & (id.classMask ?? 0)) === 0;
}

/** A registered driver with its dynamic ids (`new_id`) and bound devices. */
export interface PciDriverEntry {
  readonly driver: PciDriver;
  readonly dynids: PciDeviceId[];
  readonly devices: Set<PciDev>;
}

/**
 * Linux `pci_match_device`: a `driver_override` naming another driver excludes; then dynamic ids, then the
 * static table; an override naming this driver matches anything.
 */
export function pciMatchDevice(entry: PciDriverEntry, dev: PciIdentity & { readonly driverOverride?: string | undefined }): PciDeviceId | undefined {
  if (dev.driverOverride !== undefined && dev.driverOverride !== entry.driver.name) return undefined;
  for (const id of entry.dynids) if (pciMatchOne(id, dev)) return id;
  for (const id of entry.driver.idTable ?? []) if (pciMatchOne(id, dev)) return id;
  if (dev.driverOverride !== undefined) return PCI_DEVICE_ID_ANY;
  return undefined;
}
