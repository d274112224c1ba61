/**
 * The user-space VFIO library (userspace/vfio.ts) end to end on an edu behind VT-d: open by BDF (binding
 * through driver_override), config access, BAR mapping, DMA buffers at library-chosen IOVAs that the
 * device's DMA engine reaches, MSI on an eventfd, and a close that leaves nothing pinned, mapped or open.
 */
import { describe, expect, it } from 'vitest';
import { SysError } from '../kernel-shim/index.ts';
import { VfioPciDevice, VfioSetupError, withMachine } from '../userspace/index.ts';
import { EDU, eduDma } from './edu-dma.ts';

const EDU_CFG = { memory: { size: 64 << 20 }, iommu: { enabled: true }, pci: { devices: [{ type: 'edu' as const, bdf: '00:03.0' }] } };
/** edu registers (spec/devices.md, QEMU edu). */


describe('userspace VFIO library', () => {
  it('opens the edu by BDF, reads config, maps BAR0, and DMA round-trips through two library IOVAs', async () => {
    await withMachine(EDU_CFG, async ({ spawn, run, kernel }) => {
      const p = spawn('drv', async (sys) => {
        const dev = await VfioPciDevice.open(sys, '00:03.0');
        expect(await sys.readlink('/sys/bus/pci/devices/0000:00:03.0/driver')).toMatch(/vfio-pci$/);
        expect(await dev.configRead(0)).toBe(0x11e8_1234);
        expect(dev.iovaRanges.some((r) => r.start <= 0xfee0_0000n && r.end >= 0xfee0_0000n)).toBe(false);
        await dev.enableBusMaster();
        expect((await dev.configRead(4, 2)) & 0x6).toBe(0x6);
        const bar = await dev.mapRegion(0);
        expect(bar.read32(0) >>> 0).toBe(0x010000ed);
        const src = await dev.allocDma(4096);
        const dst = await dev.allocDma(4096);
        expect(src.iova).not.toBe(dst.iova);
        expect(src.iova).not.toBe(0n);
        for (let i = 0; i < 1024; i++) src.map.write32(4 * i, (i * 2654435761) >>> 0);
        await eduDma(sys, bar, src.iova, BigInt(EDU.buf), 4096, 0);
        await eduDma(sys, bar, BigInt(EDU.buf), dst.iova, 4096, 1);
        for (let i = 0; i < 1024; i++) expect(dst.map.read32(4 * i)).toBe((i * 2654435761) >>> 0);
        expect(kernel.userPages.pinned).toBe(2);
        expect(await dev.dmaAvail()).toBe(65535 - 2);
        await dev.freeDma(src);
        expect(kernel.userPages.pinned).toBe(1);
        await dev.close();
        await dev.close();
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
      expect(kernel.userPages.pinned).toBe(0);
    });
  });

  it('routes MSI to an eventfd and waits on it; re-enabling replaces the eventfds', async () => {
    await withMachine(EDU_CFG, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        const dev = await VfioPciDevice.open(sys, '0000:00:03.0');
        const bar = await dev.mapRegion(0);
        const [efd] = await dev.enableIrqs(1, 1);
        // Without bus mastering the function may not send its MSI (the write is refused, as QEMU drops it).
        bar.write32(EDU.raise, 1);
        expect(await dev.waitAny([efd as number], 5)).toEqual([]);
        bar.write32(EDU.ack, 1);
        await dev.enableBusMaster();
        bar.write32(EDU.raise, 1);
        expect(await dev.waitIrq(efd as number)).toBe(1n);
        bar.write32(EDU.ack, 1);
        bar.write32(EDU.raise, 2);
        bar.write32(EDU.raise, 2);
        expect(await dev.waitAny([efd as number], 10)).toEqual([efd]);
        bar.write32(EDU.ack, 2);
        expect(await dev.waitAny([efd as number], 1)).toEqual([]);
        const [efd2] = await dev.enableIrqs(1, 1);
        bar.write32(EDU.raise, 4);
        expect(await dev.waitIrq(efd2 as number)).toBe(1n);
        await dev.close();
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    });
  });

  it('fails with the kernel errno: no IOMMU (no iommu_group), unprivileged open, explicit IOVA clash; a failed open closes what it opened', async () => {
    await withMachine({ ...EDU_CFG, iommu: { enabled: false } }, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        const e = await VfioPciDevice.open(sys, '00:03.0').catch((x: unknown) => x);
        expect(e).toBeInstanceOf(SysError);
        expect((e as SysError).code).toBe('ENOENT');
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    });
    await withMachine(EDU_CFG, async ({ spawn, run }) => {
      const p = spawn({ comm: 'user', uid: 1000, gid: 1000 }, async (sys) => {
        const e = await VfioPciDevice.open(sys, '00:03.0').catch((x: unknown) => x);
        expect((e as SysError).code).toBe('EACCES');
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    });
    await withMachine(EDU_CFG, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        const dev = await VfioPciDevice.open(sys, '00:03.0');
        const a = await dev.allocDma(8192, { iova: 0x10_0000n });
        const e = await dev.allocDma(4096, { iova: 0x10_1000n }).catch((x: unknown) => x);
        expect((e as SysError).code).toBe('EEXIST');
        const b = await dev.allocDma(4096);
        expect(b.iova < 0x10_0000n || b.iova >= 0x10_2000n).toBe(true);
        expect(a.iova).toBe(0x10_0000n);
        // A second open of the same group: the group is already open (EBUSY), and the first open's fds stay.
        const e2 = await VfioPciDevice.open(sys, '00:03.0').catch((x: unknown) => x);
        expect((e2 as SysError).code).toBe('EBUSY');
        await dev.close();
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    });
    expect(VfioSetupError.name).toBe('VfioSetupError');
  });

  it('the iommufd path: the cdev bound to /dev/iommu with one IOAS, the same DMA round trip and MSI, nothing left; 6.1 has no cdev', async () => {
    await withMachine(EDU_CFG, async ({ spawn, run, kernel }) => {
      const p = spawn('drv', async (sys) => {
        const dev = await VfioPciDevice.open(sys, '00:03.0', { iommufd: true });
        expect(dev.iommufd).toBeGreaterThanOrEqual(0);
        expect(dev.container).toBe(-1);
        expect(dev.ioasId).toBeGreaterThan(0);
        expect(dev.hwptId).toBeGreaterThan(dev.ioasId);
        // Attached to VT-d: the ranges lose the MSI window.
        expect(dev.iovaRanges.some((r) => r.start <= 0xfee0_0000n && r.end >= 0xfee0_0000n)).toBe(false);
        await dev.enableBusMaster();
        const bar = await dev.mapRegion(0);
        const [efd] = await dev.enableIrqs(1, 1);
        const src = await dev.allocDma(4096);
        const dst = await dev.allocDma(4096);
        src.map.write32(0, 0xabad_cafe);
        await eduDma(sys, bar, src.iova, BigInt(EDU.buf), 4, 0);
        await eduDma(sys, bar, BigInt(EDU.buf), dst.iova, 4, 1);
        expect(dst.map.read32(0) >>> 0).toBe(0xabad_cafe);
        bar.write32(EDU.raise, 1);
        expect(await dev.waitIrq(efd as number)).toBe(1n);
        expect(kernel.userPages.pinned).toBe(2);
        await dev.freeDma(dst);
        expect(kernel.userPages.pinned).toBe(1);
        await dev.close();
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
      expect(kernel.userPages.pinned).toBe(0);
    });
    await withMachine(EDU_CFG, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        const e = await VfioPciDevice.open(sys, '00:03.0', { iommufd: true }).catch((x: unknown) => x);
        expect(e).toBeInstanceOf(VfioSetupError);
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    }, { linux: '6.1' });
  });
});
