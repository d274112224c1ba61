import { describe, expect, it } from 'vitest';
import { createMachine } from '../machine/index.ts';
import { bootKernel, type Kernel } from '../kernel-shim/kernel.ts';
import { E } from '../kernel-shim/errno.ts';
import { PCI_DEVICE_ID_ANY } from '../kernel-shim/pci/driver.ts';
import { devicePort } from './dma-port.ts';

/** A machine with an edu at 00:03.0 behind a translating VT-d unit, booted. */
function boot(): { kernel: Kernel; dmaRead: (iova: number) => { status: number; reason: number } } {
  const machine = createMachine({ memory: { size: '64MiB' }, iommu: { enabled: true }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } });
  const kernel = bootKernel(machine);
  const port = devicePort(machine, '00:03.0');
  return { kernel, dmaRead: (iova) => { const r = port.read(iova, 4); return { status: r.status, reason: r.reason }; } };
}

describe('IOMMU group DMA ownership (the claim VFIO and iommufd make)', () => {
  it('a kernel DMA driver and a user-space owner exclude each other, with Linux errnos', async () => {
    const { kernel } = boot();
    const core = kernel.iommu;
    if (core === null) throw new Error('no IOMMU');
    const dev = kernel.pci.device('0000:00:03.0');
    if (dev === undefined) throw new Error('no edu');
    const g = core.groupOf(dev);
    if (g === undefined) throw new Error('no group');
    const entry = kernel.pci.driver('uio_pci_generic');
    if (entry === undefined) throw new Error('no uio_pci_generic');
    // Bound to a driver that uses the DMA API: the claim is refused (iommu_group_claim_dma_owner: -EPERM).
    expect(await kernel.pci.probe(entry, dev, PCI_DEVICE_ID_ANY)).toBe(0);
    expect(g.ownerCount).toBe(1);
    expect(core.claimDmaOwner(g, 'vfio')).toBe(E.EPERM);
    await kernel.pci.release(dev);
    expect(g.ownerCount).toBe(0);
    // Unbound: the claim succeeds; a DMA-API driver's probe is then refused (-EBUSY) and leaves it unbound.
    expect(core.claimDmaOwner(g, 'vfio')).toBe(0);
    expect(core.claimDmaOwner(g, 'other')).toBe(E.EPERM);
    expect(g.domain?.type).toBe('BLOCKED');
    expect(await kernel.pci.probe(entry, dev, PCI_DEVICE_ID_ANY)).toBe(E.EBUSY);
    expect(dev.driver).toBeUndefined();
    core.releaseDmaOwner(g);
    expect(g.domain).toBe(g.defaultDomain);
    expect(await kernel.pci.probe(entry, dev, PCI_DEVICE_ID_ANY)).toBe(0);
  });

  it("the owner's blocking domain stops DMA (context not present) until it attaches its own domain", () => {
    const { kernel, dmaRead } = boot();
    const core = kernel.iommu;
    const dev = kernel.pci.device('0000:00:03.0');
    if (core === null || dev === undefined) throw new Error('no IOMMU or edu');
    dev.enable();
    dev.setMaster();
    const g = core.groupOf(dev);
    if (g === undefined) throw new Error('no group');
    const page = kernel.machine.frames.alloc() * 4096;
    kernel.machine.memory.write32(page, 0x1234_5678);
    expect(core.claimDmaOwner(g, 'vfio')).toBe(0);
    expect(dmaRead(0x10_0000)).toEqual({ status: 1, reason: 0x2 });
    const d = core.allocDomain('UNMANAGED');
    if (d === null) throw new Error('no domain');
    expect(core.attachGroup(d, g)).toBe(0);
    expect(core.map(d, 0x10_0000, page, 4096, 1)).toBe(0);
    expect(dmaRead(0x10_0000).status).toBe(0);
    // Detaching while owned returns the group to its blocking domain, not to the DMA API's.
    core.detachGroup(d, g);
    expect(g.domain).toBe(g.blockingDomain);
    expect(dmaRead(0x10_0000)).toEqual({ status: 1, reason: 0x2 });
    core.freeDomain(d);
    core.releaseDmaOwner(g);
    expect(g.domain?.type).toBe('DMA');
  });
});
