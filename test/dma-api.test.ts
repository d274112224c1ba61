/**
 * The DMA API (`kernel.dma`) over iommu-dma and dma-direct, as `kernel/dma/mapping.c`,
 * `drivers/iommu/dma-iommu.c` and `drivers/iommu/iova.c` behave: IOVA placement (top-down below the mask,
 * reserved windows skipped, 32-bit first for wider masks), the range cache, scatterlist merging, coherent
 * buffers, masks, and dma-direct's overflow check.
 */
import { devicePort } from './dma-port.ts';
import { describe, expect, it } from 'vitest';
import { createMachine, type Machine } from '../machine/index.ts';
import type { MachineConfigInput } from '../kernel-shim/index.ts';
import { bootKernel, type Kernel } from '../kernel-shim/kernel.ts';
import { E } from '../kernel-shim/errno.ts';
import { DMA_DIR, DMA_MAPPING_ERROR, PAGE_OFFSET, VMALLOC_START, type ScatterEntry } from '../kernel-shim/dma/mapping.ts';
import type { PciDev } from '../kernel-shim/pci/dev.ts';
import { allocKernelPages } from '../kernel-shim/uio/kmem.ts';
import { DmaStatus } from '../sim/index.ts';

const PAGE = 4096;
const MiB = 1 << 20;
const GiB = 2 ** 30;

interface Rig {
  readonly machine: Machine;
  readonly kernel: Kernel;
  readonly dev: PciDev;
  read(addr: number, len: number): { status: number; bytes: Uint8Array };
}

function rig(cmdline = '', iommu = true): Rig {
  const config: MachineConfigInput = {
    memory: { size: '64MiB' },
    ...(iommu ? { iommu: { enabled: true } } : {}),
    pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] },
  };
  const machine = createMachine(config);
  const kernel = bootKernel(machine, { cmdline });
  const dev = kernel.pci.device('0000:00:03.0');
  if (dev === undefined) throw new Error('no edu');
  dev.enable();
  dev.setMaster();
  const p = devicePort(machine, '00:03.0');
  return {
    machine,
    kernel,
    dev,
    read(addr, len) {
      const r = p.read(addr, len);
      return { status: r.status, bytes: r.bytes };
    },
  };

}

/** Kernel pages: physical addresses of each page and the bytes. */
function kpages(kernel: Kernel, n: number): { phys: number[]; bytes: Uint8Array } {
  const p = allocKernelPages(kernel, n * PAGE);
  if (typeof p === 'number') throw new Error('out of memory');
  return { phys: [...p.frames].map((f) => f * PAGE), bytes: new Uint8Array(p.buffer) };
}

function sgOf(list: readonly { phys: number; length: number }[]): ScatterEntry[] {
  return list.map((e) => ({ ...e, dmaAddress: DMA_MAPPING_ERROR, dmaLength: 0 }));
}

function overlaps(a: number, aLen: number, b: number, bLen: number): boolean {
  return a < b + bLen && b < a + aLen;
}

describe('IOVA allocation', () => {
  it('top-down from 0xfffff000 for a 32-bit mask, the in-page offset preserved', () => {
    const r = rig();
    const [a, b, c] = kpages(r.kernel, 3).phys as [number, number, number];
    expect(r.kernel.dma.mapPage(r.dev, a + 0x123, 16, DMA_DIR.TO_DEVICE)).toBe(0xffff_f123);
    expect(r.kernel.dma.mapPage(r.dev, b, PAGE, DMA_DIR.TO_DEVICE)).toBe(0xffff_e000);
    // Two pages are size-aligned (a power-of-two range at a multiple of its size): 0xffffc000.
    expect(r.kernel.dma.mapPage(r.dev, c + 0xfff, 2, DMA_DIR.TO_DEVICE)).toBe(0xffff_cfff);
  });

  it('never hands out the MSI window or the PCI memory windows', () => {
    const r = rig();
    const cfg = r.machine.config.pci;
    const forbidden = [
      { start: 0xfee0_0000, len: MiB },
      { start: cfg.mmio32.start, len: cfg.mmio32.size },
      { start: cfg.mmio64.start, len: cfg.mmio64.size },
    ];
    let lowest = Infinity;
    // 1 MiB at a time until the allocations have gone below the 32-bit window.
    while (lowest > cfg.mmio32.start) {
      const dma = r.kernel.dma.mapPage(r.dev, 0, MiB, DMA_DIR.TO_DEVICE);
      expect(dma).not.toBe(DMA_MAPPING_ERROR);
      for (const w of forbidden) expect(overlaps(dma, MiB, w.start, w.len), `0x${dma.toString(16)}`).toBe(false);
      lowest = Math.min(lowest, dma);
    }
    expect(lowest).toBe(cfg.mmio32.start - MiB);
  });

  it('a 64-bit mask still gets 32-bit IOVAs first (SAC), then the "Using 48-bit DMA addresses" notice', () => {
    const r = rig();
    expect(r.kernel.dma.setMaskAndCoherent(r.dev, 64)).toBe(0);
    expect(r.kernel.dma.mapPage(r.dev, 0, PAGE, DMA_DIR.TO_DEVICE)).toBe(0xffff_f000);
    // Exhaust the 32-bit space with 1 GiB ranges: 0x80000000 and 0x40000000 fit (0xc0000000 holds the
    // PCI window, pfn 0 is never used), the third does not.
    expect(r.kernel.dma.mapPage(r.dev, 0, GiB, DMA_DIR.TO_DEVICE)).toBe(0x8000_0000);
    expect(r.kernel.dma.mapPage(r.dev, 0, GiB, DMA_DIR.TO_DEVICE)).toBe(0x4000_0000);
    const notices = () => r.kernel.log.records.filter((l) => l.text.includes('DMA addresses'));
    expect(notices()).toHaveLength(0);
    const high = r.kernel.dma.mapPage(r.dev, 0, GiB, DMA_DIR.TO_DEVICE);
    expect(high).toBe(2 ** 48 - GiB);
    // Linux clamps the limit to the domain's aperture (48-bit) before bits_per().
    expect(notices().map((l) => [l.level, l.text])).toEqual([['notice', 'pci 0000:00:03.0: Using 48-bit DMA addresses']]);
    // From now on the device allocates from the top of its mask, without trying 32 bits first.
    expect(r.kernel.dma.mapPage(r.dev, 0, PAGE, DMA_DIR.TO_DEVICE)).toBe(2 ** 48 - GiB - PAGE);
    expect(notices()).toHaveLength(1);
  });

  it('the range cache: an unmapped IOVA is the next one handed out (LIFO)', () => {
    const r = rig();
    const [a, b] = kpages(r.kernel, 2).phys as [number, number];
    const x = r.kernel.dma.mapPage(r.dev, a, PAGE, DMA_DIR.TO_DEVICE);
    const y = r.kernel.dma.mapPage(r.dev, b, PAGE, DMA_DIR.TO_DEVICE);
    r.kernel.dma.unmapPage(r.dev, x, PAGE, DMA_DIR.TO_DEVICE);
    r.kernel.dma.unmapPage(r.dev, y, PAGE, DMA_DIR.TO_DEVICE);
    expect(r.kernel.dma.mapPage(r.dev, a, PAGE, DMA_DIR.TO_DEVICE)).toBe(y);
    expect(r.kernel.dma.mapPage(r.dev, b, PAGE, DMA_DIR.TO_DEVICE)).toBe(x);
  });

  it('unmapPage removes the translation: the device faults and iovaToPhys says -1', () => {
    const r = rig();
    const pg = kpages(r.kernel, 1);
    const p = pg.phys[0] as number;
    pg.bytes[3] = 0x33;
    const dma = r.kernel.dma.mapPage(r.dev, p, PAGE, DMA_DIR.TO_DEVICE);
    expect(r.read(dma + 3, 1)).toEqual({ status: DmaStatus.OK, bytes: new Uint8Array([0x33]) });
    const d = r.kernel.iommu?.groupOf(r.dev)?.defaultDomain;
    if (d === undefined) throw new Error('no domain');
    expect(r.kernel.iommu?.iovaToPhys(d, dma)).toBe(p);
    expect(d.mappedBytes).toBe(PAGE);
    r.kernel.dma.unmapPage(r.dev, dma, PAGE, DMA_DIR.TO_DEVICE);
    expect(r.read(dma + 3, 1).status).toBe(DmaStatus.FAULT);
    expect(r.kernel.iommu?.iovaToPhys(d, dma)).toBe(-1);
    expect(d.mappedBytes).toBe(0);
  });
});

describe('scatterlists', () => {
  it('page-aligned segments merge into one DMA segment up to 64 KiB and split beyond', () => {
    const r = rig();
    const pg = kpages(r.kernel, 17);
    const sg = sgOf(pg.phys.map((phys) => ({ phys, length: PAGE })));
    const n = r.kernel.dma.mapSg(r.dev, sg, DMA_DIR.BIDIRECTIONAL);
    expect(n).toBe(2);
    const [s0, s1, s2] = sg as [ScatterEntry, ScatterEntry, ScatterEntry];
    expect(s0.dmaLength).toBe(0x1_0000);
    expect(s1.dmaLength).toBe(PAGE);
    expect(s1.dmaAddress).toBe(s0.dmaAddress + 0x1_0000);
    expect(s2.dmaLength).toBe(0);
    // The device sees the pages in list order through the contiguous range.
    for (let i = 0; i < 17; i++) pg.bytes[i * PAGE] = i + 1;
    for (let i = 0; i < 17; i++) expect(r.read(s0.dmaAddress + i * PAGE, 1).bytes[0]).toBe(i + 1);
    r.kernel.dma.unmapSg(r.dev, sg, DMA_DIR.BIDIRECTIONAL);
    expect(r.kernel.iommu?.groupOf(r.dev)?.defaultDomain?.mappedBytes).toBe(0);
    expect(r.read(s0.dmaAddress, 1).status).toBe(DmaStatus.FAULT);
  });

  it('sixteen pages merge into exactly one segment', () => {
    const r = rig();
    const sg = sgOf(kpages(r.kernel, 16).phys.map((phys) => ({ phys, length: PAGE })));
    expect(r.kernel.dma.mapSg(r.dev, sg, DMA_DIR.TO_DEVICE)).toBe(1);
    expect(sg[0]?.dmaLength).toBe(16 * PAGE);
  });

  it('unaligned segments are not merged; a short segment ends its output segment', () => {
    const r = rig();
    const [a, b, c, d] = kpages(r.kernel, 4).phys as [number, number, number, number];
    const sg = sgOf([
      { phys: a, length: PAGE },
      { phys: b + 0x10, length: 0x100 },
      { phys: c, length: 0x200 },
      { phys: d, length: PAGE },
    ]);
    expect(r.kernel.dma.mapSg(r.dev, sg, DMA_DIR.TO_DEVICE)).toBe(4);
    const [s0, s1, s2, s3] = sg as [ScatterEntry, ScatterEntry, ScatterEntry, ScatterEntry];
    expect(s0.dmaLength).toBe(PAGE);
    expect(s1.dmaAddress).toBe(s0.dmaAddress + PAGE + 0x10);
    expect(s1.dmaLength).toBe(0x100);
    // c starts on a page but b ended short of one: a new segment; d (page-aligned) cannot join c either, c ended short.
    expect(s2.dmaAddress).toBe(s0.dmaAddress + 2 * PAGE);
    expect(s2.dmaLength).toBe(0x200);
    expect(s3.dmaAddress).toBe(s0.dmaAddress + 3 * PAGE);
    expect(s3.dmaLength).toBe(PAGE);
    r.kernel.dma.unmapSg(r.dev, sg, DMA_DIR.TO_DEVICE);
    expect(r.kernel.iommu?.groupOf(r.dev)?.defaultDomain?.mappedBytes).toBe(0);
    // A segment starting inside a page never joins the one before, even when that one ended on a page.
    const sg2 = sgOf([
      { phys: a, length: PAGE },
      { phys: b + 0x10, length: PAGE - 0x10 },
    ]);
    expect(r.kernel.dma.mapSg(r.dev, sg2, DMA_DIR.TO_DEVICE)).toBe(2);
    expect(sg2[1]?.dmaAddress).toBe((sg2[0]?.dmaAddress ?? 0) + PAGE + 0x10);
    r.kernel.dma.unmapSg(r.dev, sg2, DMA_DIR.TO_DEVICE);
    expect(r.kernel.iommu?.groupOf(r.dev)?.defaultDomain?.mappedBytes).toBe(0);
  });

  it('dma-direct fills each entry with its physical address', () => {
    const r = rig('', false);
    const pg = kpages(r.kernel, 2).phys;
    const sg = sgOf(pg.map((phys) => ({ phys, length: PAGE })));
    expect(r.kernel.dma.mapSg(r.dev, sg, DMA_DIR.TO_DEVICE)).toBe(2);
    expect(sg.map((e) => e.dmaAddress)).toEqual(pg);
  });
});

describe('coherent buffers', () => {
  it('with the IOMMU: dma in IOVA space, cpuAddr in the vmalloc area; free returns every frame', () => {
    const r = rig();
    // Page-table pages stay once made (Linux frees a table only when an unmap covers all of it): make them first.
    const warm = r.kernel.dma.mapPage(r.dev, 0, 4 * PAGE, DMA_DIR.TO_DEVICE);
    r.kernel.dma.unmapPage(r.dev, warm, 4 * PAGE, DMA_DIR.TO_DEVICE);
    const livePages = r.kernel.userPages.live;
    const freeFrames = r.machine.frames.freeFrames;
    const buf = r.kernel.dma.allocCoherent(r.dev, 3 * PAGE);
    if (buf === null) throw new Error('no buffer');
    expect(buf.dma).toBe(0xffff_c000);
    expect(buf.cpuAddr).toBe(VMALLOC_START);
    expect(r.kernel.userPages.live).toBe(livePages + 3);
    // The device reaches the scattered pages through the contiguous range.
    const bytes = new Uint8Array(buf.pages.buffer);
    bytes[2 * PAGE + 7] = 0x77;
    expect(r.read(buf.dma + 2 * PAGE + 7, 1).bytes[0]).toBe(0x77);
    // A second buffer's kernel address leaves a guard page after the first.
    const buf2 = r.kernel.dma.allocCoherent(r.dev, PAGE);
    expect(buf2?.cpuAddr).toBe(VMALLOC_START + BigInt(4 * PAGE));
    if (buf2 === null || buf2 === undefined) throw new Error('no buffer');
    r.kernel.dma.freeCoherent(r.dev, buf);
    r.kernel.dma.freeCoherent(r.dev, buf2);
    expect(r.read(buf.dma, 1).status).toBe(DmaStatus.FAULT);
    expect(r.kernel.userPages.live).toBe(livePages);
    expect(r.machine.frames.freeFrames).toBe(freeFrames);
  });

  it('without the IOMMU: physically contiguous, dma == phys, cpuAddr in the direct map', () => {
    const r = rig('', false);
    const freeFrames = r.machine.frames.freeFrames;
    const buf = r.kernel.dma.allocCoherent(r.dev, 2 * PAGE);
    if (buf === null) throw new Error('no buffer');
    const f0 = buf.pages.frames[0] as number;
    expect(buf.pages.frames[1]).toBe(f0 + 1);
    expect(buf.dma).toBe(f0 * PAGE);
    expect(buf.cpuAddr).toBe(PAGE_OFFSET + BigInt(buf.dma));
    r.kernel.dma.freeCoherent(r.dev, buf);
    expect(r.machine.frames.freeFrames).toBe(freeFrames);
  });
});

describe('masks', () => {
  it('setMaskAndCoherent: -EIO below 24 bits or above 64, 0 otherwise', () => {
    const r = rig();
    expect(r.kernel.dma.maskBits(r.dev)).toBe(32);
    expect(r.kernel.dma.setMaskAndCoherent(r.dev, 23)).toBe(E.EIO);
    expect(r.kernel.dma.setMaskAndCoherent(r.dev, 65)).toBe(E.EIO);
    expect(r.kernel.dma.maskBits(r.dev)).toBe(32);
    expect(r.kernel.dma.setMaskAndCoherent(r.dev, 24)).toBe(0);
    expect(r.kernel.dma.maskBits(r.dev)).toBe(24);
    expect(r.kernel.dma.coherentMaskBits(r.dev)).toBe(24);
    // With the IOMMU a 24-bit mask is honoured by the IOVA, whatever the physical address.
    expect(r.kernel.dma.mapPage(r.dev, 48 * MiB, PAGE, DMA_DIR.TO_DEVICE)).toBe(0xff_f000);
  });

  it('dma-direct: a buffer above a small mask fails with the overflow error', () => {
    const r = rig('', false);
    expect(r.kernel.dma.setMaskAndCoherent(r.dev, 24)).toBe(0);
    const phys = 32 * MiB + 0x40;
    expect(r.kernel.dma.mapPage(r.dev, phys, 64, DMA_DIR.TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    expect(r.kernel.log.records.at(-1)).toMatchObject({
      level: 'err',
      text: 'pci 0000:00:03.0: DMA addr 0x0000000002000040+64 overflow (mask ffffff, bus limit 0).',
    });
    expect(r.kernel.dma.mapPage(r.dev, 0x1000, 64, DMA_DIR.TO_DEVICE)).toBe(0x1000);
  });
});
