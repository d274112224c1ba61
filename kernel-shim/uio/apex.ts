import { APEX_ID, APEX_IRQ_COUNT, APEX_IRQ_NAMES, APEX_MSIX_TABLE, APEX_OFFSET, APEX_SOURCES, INTVECCTL } from '../../device-models/index.ts';
import { mask32 } from '../../sim/index.ts';
import { E } from '../errno.ts';
import { IRQ_HANDLED } from '../irq.ts';
import type { Kernel } from '../kernel.ts';
import type { PciDev } from '../pci/dev.ts';
import { PCI_IRQ, type PciResource } from '../pci/dev.ts';
import type { PciDriver } from '../pci/driver.ts';
import { IORESOURCE, PCI_MSIX } from '../pci/regs.ts';
import { uioRegisterDevice, uioUnregisterDevice } from './core.ts';
import { DmemRegions } from './apex-dmem.ts';
import { UIO_MEM, type UioInfo } from './info.ts';

/** `version` of every uio_apex device. */
export const UIO_APEX_VERSION = '0.1';

/** The UIO name of interrupt source `i`: `apex_` and the source's name in lower case (`apex_sc_host_0`). */
export function uioApexName(i: number): string {
  return `apex_${(APEX_IRQ_NAMES[i] ?? `source${i}`).toLowerCase()}`;
}

/**
 * The coherent DMA regions of the first UIO device (INSTR_QUEUE's), maps 1 and 2 after BAR2: `apex_queue`
 * (64 KiB: instruction ring, status block, command buffers) and `apex_data` (1 MiB: operands and results).
 */
export const UIO_APEX_REGIONS = [
  { name: 'apex_queue', size: 64 << 10 },
  { name: 'apex_data', size: 1 << 20 },
] as const;

const BAR2 = 2;
const VEC_MASK = BigInt(mask32(INTVECCTL.VECTOR));

/** One bound Apex: its BAR2, the MSI-X messages the kernel programmed, the 13 infos, the regions. */
interface ApexUio {
  readonly bar2: number;
  /** Address low, high and data of each entry, as `msix_capability_init` wrote them. */
  readonly msg: Uint32Array;
  readonly infos: UioInfo[];
  readonly dmem: DmemRegions;
}

/**
 * The Apex UIO driver as proposed in 2018 (`uio_apex`): instead of the gasket char device, the Apex is
 * exposed through UIO, one UIO device per interrupt source (as uio_pruss registers one per event), so a
 * user-space driver (libedgetpu's role) waits on each source's `/dev/uioN`. Id table 1ac1:089a.
 *
 * Probe enables the device and bus mastering, sets a 64-bit DMA mask, allocates exactly 13 MSI-X vectors
 * and writes source i's entry number i into its INTVECCTL field (packed 7-bit fields for SC_HOST and
 * TOP_LEVEL, as gasket does), then registers `/dev/uio0` (INSTR_QUEUE) ... `/dev/uio12` (FATAL_ERR), named
 * by {@link uioApexName}. Each has map0 = BAR2 (`PHYS`, 1 MiB), its vector's irq, a handler that only
 * counts (MSI-X is edge-like; acknowledging the device's W0C status is user space's job), and `irqcontrol`:
 * 0 masks its MSI-X entry (the device then pends the message in the PBA), 1 unmasks it (a pending message
 * is delivered), anything else is `-EINVAL`; both are idempotent. Because a device reset (which user space
 * does through the SCU) clears the MSI-X table and the INTVECCTLs, 1 first rewrites the entry's address
 * and data from the kernel's copy (what `pci_restore_msi_state` does) and the source's INTVECCTL field
 * (7 bits, leaving the other sources' fields alone) when they differ.
 *
 * The first device also carries uio_dmem_genirq-style dynamic regions ({@link UIO_APEX_REGIONS}, see
 * {@link DmemRegions}): allocated at its first open, freed at its last close, their `addr` by Linux version.
 * Remove unregisters all 13, frees the regions and the vectors, and disables the device.
 */
export function uioApexDriver(kernel: Kernel): PciDriver {
  const bound = new Map<PciDev, ApexUio>();
  const mmio = kernel.machine.mmio;

  const writeVector = (a: ApexUio, i: number): void => {
    const s = APEX_SOURCES[i];
    const o = s === undefined ? undefined : APEX_OFFSET[s.vecReg];
    if (s === undefined || o === undefined) return;
    const sh = BigInt(s.vecLsb);
    const old = mmio.read64(a.bar2 + o);
    const next = (old & ~(VEC_MASK << sh)) | (BigInt(i) << sh);
    if (next !== old) mmio.write64(a.bar2 + o, next);
  };

  /** Rewrites entry `i` (masked while it changes, as the PCI spec requires) if a reset cleared it. */
  const restoreEntry = (a: ApexUio, i: number): void => {
    const e = a.bar2 + APEX_MSIX_TABLE + i * PCI_MSIX.ENTRY_SIZE;
    const lo = a.msg[3 * i] as number;
    const hi = a.msg[3 * i + 1] as number;
    const data = a.msg[3 * i + 2] as number;
    if (mmio.read32(e + PCI_MSIX.ENTRY_LOWER_ADDR) !== lo || mmio.read32(e + PCI_MSIX.ENTRY_UPPER_ADDR) !== hi || mmio.read32(e + PCI_MSIX.ENTRY_DATA) !== data) {
      mmio.write32(e + PCI_MSIX.ENTRY_VECTOR_CTRL, PCI_MSIX.ENTRY_CTRL_MASKBIT);
      mmio.write32(e + PCI_MSIX.ENTRY_LOWER_ADDR, lo);
      mmio.write32(e + PCI_MSIX.ENTRY_UPPER_ADDR, hi);
      mmio.write32(e + PCI_MSIX.ENTRY_DATA, data);
    }
    writeVector(a, i);
  };

  const infoFor = (a: ApexUio, pdev: PciDev, bar: PciResource, i: number): UioInfo => {
    const irq = pdev.irqVector(i);
    const info: UioInfo = {
      name: uioApexName(i),
      version: UIO_APEX_VERSION,
      irq,
      mem: [{ name: 'apex_bar2', memtype: UIO_MEM.PHYS, addr: bar.start, offs: 0, size: pdev.resourceLen(BAR2) }],
      handler: () => IRQ_HANDLED,
      irqcontrol: (_info, on) => {
        const mask = kernel.irq.desc(irq)?.mask;
        if (mask === undefined) return E.EIO;
        if (on === 0) mask(true);
        else if (on === 1) {
          restoreEntry(a, i);
          mask(false);
        } else return E.EINVAL;
        return 0;
      },
    };
    if (i === 0) {
      info.mem?.push(...a.dmem.maps);
      info.open = (_info, cur) => a.dmem.open(cur);
      info.release = () => a.dmem.release();
    }
    return info;
  };

  const teardown = (pdev: PciDev, a: ApexUio | undefined): void => {
    if (a !== undefined) {
      for (const info of a.infos) uioUnregisterDevice(info);
      a.dmem.free();
    }
    pdev.freeIrqVectors();
    pdev.clearMaster();
    pdev.disable();
  };

  return {
    name: 'uio_apex',
    idTable: [{ vendor: APEX_ID.vendorId, device: APEX_ID.deviceId }],
    probe(pdev: PciDev): number {
      const err = pdev.enable();
      if (err < 0) return err;
      pdev.setMaster();
      const bar = pdev.resources[BAR2];
      let r = kernel.dma.setMaskAndCoherent(pdev, 64);
      if (r === 0 && (bar === undefined || (bar.flags & IORESOURCE.MEM) === 0)) r = E.ENODEV;
      if (r === 0) {
        const n = pdev.allocIrqVectors(APEX_IRQ_COUNT, APEX_IRQ_COUNT, PCI_IRQ.MSIX);
        if (n < 0) {
          kernel.log.printk('err', `uio_apex ${pdev.name}: cannot enable ${APEX_IRQ_COUNT} MSI-X vectors: ${n}`);
          r = n;
        }
      }
      if (r < 0 || bar === undefined) {
        teardown(pdev, undefined);
        return r < 0 ? r : E.ENODEV;
      }
      const a: ApexUio = { bar2: bar.start, msg: new Uint32Array(3 * APEX_IRQ_COUNT), infos: [], dmem: new DmemRegions(kernel, pdev, UIO_APEX_REGIONS) };
      for (let i = 0; i < APEX_IRQ_COUNT; i++) {
        const e = a.bar2 + APEX_MSIX_TABLE + i * PCI_MSIX.ENTRY_SIZE;
        a.msg[3 * i] = mmio.read32(e + PCI_MSIX.ENTRY_LOWER_ADDR);
        a.msg[3 * i + 1] = mmio.read32(e + PCI_MSIX.ENTRY_UPPER_ADDR);
        a.msg[3 * i + 2] = mmio.read32(e + PCI_MSIX.ENTRY_DATA);
      }
      // gasket_interrupt_init's order, 0 to 12, so packed fields are written from field 0 up.
      for (let i = 0; i < APEX_IRQ_COUNT; i++) writeVector(a, i);
      for (let i = 0; i < APEX_IRQ_COUNT; i++) {
        const info = infoFor(a, pdev, bar, i);
        const u = uioRegisterDevice(kernel, pdev, info);
        if (typeof u === 'number') {
          teardown(pdev, a);
          return u;
        }
        a.infos.push(info);
      }
      bound.set(pdev, a);
      kernel.log.printk('info', `uio_apex ${pdev.name}: ${APEX_IRQ_COUNT} MSI-X vectors, ${APEX_IRQ_COUNT} UIO devices`);
      return 0;
    },
    remove(pdev: PciDev): void {
      teardown(pdev, bound.get(pdev));
      bound.delete(pdev);
    },
  };
}
