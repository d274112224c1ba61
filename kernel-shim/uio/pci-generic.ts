import { E } from '../errno.ts';
import { IRQ_HANDLED, IRQ_NONE, IRQF } from '../irq.ts';
import type { Kernel } from '../kernel.ts';
import type { PciDev } from '../pci/dev.ts';
import type { PciDriver } from '../pci/driver.ts';
import { IORESOURCE } from '../pci/regs.ts';
import { PAGE_SIZE } from '../uapi/linux.ts';
import { uioRegisterDevice, uioUnregisterDevice } from './core.ts';
import { MAX_UIO_MAPS, UIO_MEM, type UioInfo, type UioMem } from './info.ts';

/** `DRIVER_VERSION` of `uio_pci_generic.c`. */
export const UIO_PCI_GENERIC_VERSION = '0.01.0';

/**
 * Linux's `uio_pci_generic` (`drivers/uio/uio_pci_generic.c`): exposes a PCI function through UIO with
 * its real limits. It has no id table (bind it with `new_id` or `driver_override`); the interrupt is INTx
 * only, shared, acknowledged by masking it through Command bit 10 (`pci_check_and_mask_intx`) and
 * re-enabled by user space through sysfs `config`; there is no `irqcontrol`, so `write` on `/dev/uioN`
 * is `ENOSYS`; only 32-bit non-prefetchable memory BARs (flags exactly MEM|SIZEALIGN) become maps; closing
 * the device node clears bus mastering, so DMA is not left on after the user-space driver exits.
 */
export function uioPciGenericDriver(kernel: Kernel): PciDriver {
  const infos = new Map<PciDev, UioInfo>();
  return {
    name: 'uio_pci_generic',
    probe(pdev: PciDev): number {
      // pcim_enable_device: enabled for as long as the driver is bound.
      const err = pdev.enable();
      if (err < 0) {
        kernel.log.printk('err', `uio_pci_generic ${pdev.name}: probe: pci_enable_device failed: ${err}`);
        return err;
      }
      if (pdev.irq !== 0 && !pdev.intxMaskSupported()) {
        pdev.disable();
        return E.ENODEV;
      }
      const info: UioInfo = {
        name: 'uio_pci_generic',
        version: UIO_PCI_GENERIC_VERSION,
        irq: 0,
        release: () => {
          pdev.clearMaster();
          return 0;
        },
      };
      if (pdev.irq !== 0) {
        info.irq = pdev.irq;
        info.irqFlags = IRQF.SHARED;
        info.handler = () => (pdev.checkAndMaskIntx() ? IRQ_HANDLED : IRQ_NONE);
        kernel.irq.intxDesc(pdev.irq);
      } else {
        kernel.log.printk('warn', `uio_pci_generic ${pdev.name}: No IRQ assigned to device: no support for interrupts?`);
      }
      const mem: UioMem[] = [];
      for (let i = 0; i < MAX_UIO_MAPS; i++) {
        const r = pdev.resources[i];
        if (r === undefined || r.flags !== (IORESOURCE.SIZEALIGN | IORESOURCE.MEM)) continue;
        const offs = r.start % PAGE_SIZE;
        const addr = r.start - offs;
        const size = Math.ceil((offs + pdev.resourceLen(i)) / PAGE_SIZE) * PAGE_SIZE;
        mem.push({ name: pdev.name, memtype: UIO_MEM.PHYS, addr, offs, size });
      }
      while (mem.length < MAX_UIO_MAPS) mem.push({ memtype: UIO_MEM.NONE, addr: 0, size: 0 });
      info.mem = mem;
      const r = uioRegisterDevice(kernel, pdev, info);
      if (typeof r === 'number') {
        pdev.disable();
        return r;
      }
      infos.set(pdev, info);
      return 0;
    },
    remove(pdev: PciDev): void {
      const info = infos.get(pdev);
      if (info !== undefined) uioUnregisterDevice(info);
      infos.delete(pdev);
      pdev.disable();
    },
  };
}
