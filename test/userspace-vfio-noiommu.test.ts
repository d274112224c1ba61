/**
 * The user-space VFIO library in no-IOMMU mode (userspace/vfio.ts): the explicit opt-in, VFIO_NOIOMMU_IOMMU,
 * buffers addressed by the physical addresses /proc/self/pagemap gives, the contiguity rule, and edu DMA
 * reaching them untranslated.
 */
import { describe, expect, it } from 'vitest';
import { VfioPciDevice, VfioSetupError, physAddr, withMachine } from '../userspace/index.ts';
import { EDU, eduDma } from './edu-dma.ts';

const NOIOMMU_CFG = { memory: { size: 64 << 20 }, iommu: { enabled: false }, pci: { devices: [{ type: 'edu' as const, bdf: '00:03.0' }] } };
const CMDLINE = { cmdline: 'vfio.enable_unsafe_noiommu_mode=1' };


/** The error `p` rejects with. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('userspace VFIO library, no-IOMMU mode', () => {
  it('refuses a no-IOMMU group unless asked, naming the risk; asking for it on a real group is refused too', async () => {
    await withMachine(NOIOMMU_CFG, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        const e = await rejection(VfioPciDevice.open(sys, '00:03.0'));
        expect(e).toBeInstanceOf(VfioSetupError);
        expect(String(e)).toMatch(/no-IOMMU group noiommu-0: nothing translates or isolates its DMA.*\{ noiommu: true \}/);
        // Nothing was left open.
        expect((await sys.readdir('/proc/self/fd')).length).toBe(0);
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    }, CMDLINE);
    await withMachine({ ...NOIOMMU_CFG, iommu: { enabled: true } }, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        const e = await rejection(VfioPciDevice.open(sys, '00:03.0', { noiommu: true }));
        expect(e).toBeInstanceOf(VfioSetupError);
        expect(String(e)).toMatch(/not a no-IOMMU group/);
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    }, CMDLINE);
  });

  it('opens with { noiommu: true }: no IOVA ranges, buffers at their physical addresses, edu DMA round-trips', async () => {
    await withMachine(NOIOMMU_CFG, async ({ spawn, run, kernel }) => {
      const p = spawn('drv', async (sys) => {
        const dev = await VfioPciDevice.open(sys, '00:03.0', { noiommu: true });
        expect(dev.noiommu).toBe(true);
        expect(dev.groupId).toBe(0);
        expect(dev.iovaRanges).toEqual([]);
        expect(await dev.dmaAvail()).toBeUndefined();
        await dev.enableBusMaster();
        const bar = await dev.mapRegion(0);
        const src = await dev.allocDma(4096);
        const dst = await dev.allocDma(4096);
        expect(src.iova).toBe(await physAddr(sys, src.vaddr));
        expect(src.pages).toEqual([src.iova]);
        expect(src.contiguous).toBe(true);
        // The frame really is the one the kernel gave the process.
        expect(BigInt(kernel.task(sys.pid)?.mm.presentFrame(Number(src.vaddr)) ?? -1) * 4096n).toBe(src.iova);
        for (let i = 0; i < 1024; i++) src.map.write32(4 * i, (i * 2654435761) >>> 0);
        await eduDma(sys, bar, src.iova, BigInt(EDU.buf), 4096, 0);
        await eduDma(sys, bar, BigInt(EDU.buf), dst.iova, 4096, 1);
        for (let i = 0; i < 1024; i++) expect(dst.map.read32(4 * i) >>> 0).toBe((i * 2654435761) >>> 0);
        // A multi-page buffer page by page: each page's own frame.
        const big = await dev.allocDma(4 * 4096, { pageByPage: true });
        expect(big.pages).toHaveLength(4);
        for (let i = 0; i < 4; i++) expect(big.pages[i]).toBe(await physAddr(sys, big.vaddr + BigInt(i * 4096)));
        await dev.close();
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
      expect(kernel.log.dmesg()).toMatch(/vfio-pci 0000:00:03.0: vfio-noiommu device opened by user \(drv:\d+\)/);
    }, CMDLINE);
  });

  it('a multi-page buffer on scattered frames is refused without pageByPage (the memory freed), accepted with it', async () => {
    await withMachine({ ...NOIOMMU_CFG, memory: { size: 64 << 20, placement: 'scatter' } }, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        const dev = await VfioPciDevice.open(sys, '00:03.0', { noiommu: true });
        const e = await rejection(dev.allocDma(8 * 4096));
        expect(e).toBeInstanceOf(VfioSetupError);
        expect(String(e)).toMatch(/not physically contiguous/);
        const buf = await dev.allocDma(8 * 4096, { pageByPage: true });
        expect(buf.contiguous).toBe(false);
        expect(new Set(buf.pages).size).toBe(8);
        await dev.close();
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    }, CMDLINE);
  });

  it('with the mode off the device never reaches vfio-pci: the open fails at the group link', async () => {
    await withMachine(NOIOMMU_CFG, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        const e = await rejection(VfioPciDevice.open(sys, '00:03.0', { noiommu: true }));
        expect((e as { code?: string }).code).toBe('ENOENT');
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    });
  });
});
