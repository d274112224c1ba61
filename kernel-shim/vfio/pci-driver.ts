import type { Kernel } from '../kernel.ts';
import type { PciDev } from '../pci/dev.ts';
import type { PciDriver } from '../pci/driver.ts';
import { vfioRegisterGroupDev, vfioUnregisterGroupDev } from './core.ts';
import type { VfioDevice } from './device.ts';
import { vfioPciOps } from './pci-ops.ts';

/**
 * The `vfio-pci` PCI driver (Linux `drivers/vfio/pci/vfio_pci.c` + `vfio_pci_core_register_device`): no
 * id table (bind it with `new_id` or `driver_override`), `driver_managed_dma` (binding does not take the
 * DMA API's default domain, so the group stays viable). Probe registers a {@link VfioDevice} with
 * {@link vfioPciOps}; a device without an IOMMU group is refused with `-EINVAL` unless no-IOMMU mode
 * gives it a fake group (`noiommu.ts`). Remove unregisters it.
 */
export function vfioPciDriver(kernel: Kernel): PciDriver {
  const vdevs = new Map<PciDev, VfioDevice>();
  return {
    name: 'vfio-pci',
    driverManagedDma: true,
    probe(pdev: PciDev): number {
      const vdev: VfioDevice = { pdev, ops: vfioPciOps, openCount: 0, priv: undefined };
      const r = vfioRegisterGroupDev(kernel, vdev);
      if (r < 0) return r;
      vdevs.set(pdev, vdev);
      return 0;
    },
    remove(pdev: PciDev): void {
      const vdev = vdevs.get(pdev);
      if (vdev === undefined) return;
      vdevs.delete(pdev);
      vfioUnregisterGroupDev(kernel, vdev);
    },
  };
}
