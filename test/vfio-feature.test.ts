/**
 * VFIO_DEVICE_FEATURE (spec section 1.10; Linux `vfio_ioctl_device_feature`, `vfio_check_feature`,
 * `vfio_pci_core_ioctl_feature`): the core's checks in order, features without ops, and vfio-pci's low
 * power entry / exit with and without a wake eventfd.
 */
import { describe, expect, it } from 'vitest';
import { SysError, type Sys } from '../kernel-shim/index.ts';
import { VFIO, VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_FLAG, vfio_device_feature, withLayout } from '../kernel-shim/uapi/index.ts';
import { VfioPciDevice, withMachine } from '../userspace/index.ts';
import { errnoOf } from './sys-errno.ts';

const { GET, SET, PROBE } = VFIO_DEVICE_FEATURE_FLAG;
const F = VFIO_DEVICE_FEATURE;
const EDU_CFG = { iommu: { enabled: true }, pci: { devices: [{ type: 'edu' as const, bdf: '00:03.0' }] } };

/** DEVICE_FEATURE with `flags` and `data`; `argsz` defaults to the header plus the data. */
function feature(sys: Sys, fd: number, flags: number, data: Uint8Array = new Uint8Array(0), argsz = 8 + data.length): Promise<number> {
  return sys.ioctl(fd, VFIO.DEVICE_FEATURE, withLayout(vfio_device_feature, { argsz, flags, data }));
}

const s32 = (v: number): Uint8Array => new Uint8Array(Int32Array.of(v, 0).buffer);

/** Whether BAR0's mapping can be read (a zapped mapping faults: dmasim's SIGBUS is `EFAULT`). */
function barWorks(bar: { read32(o: number): number }): boolean {
  try {
    return bar.read32(0) >>> 0 === 0x010000ed;
  } catch (e) {
    if (e instanceof SysError && e.code === 'EFAULT') return false;
    throw e;
  }
}

describe('VFIO_DEVICE_FEATURE', () => {
  it('the core checks: argsz, unknown flags, GET with SET; features without ops ENOTTY; vfio_check_feature per feature', async () => {
    await withMachine(EDU_CFG, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        const dev = await VfioPciDevice.open(sys, '00:03.0');
        const fd = dev.fd;
        expect(await errnoOf(feature(sys, fd, SET | F.LOW_POWER_ENTRY, new Uint8Array(0), 7))).toBe('EINVAL');
        expect(await errnoOf(feature(sys, fd, (1 << 19) | SET | F.LOW_POWER_ENTRY))).toBe('EINVAL');
        expect(await errnoOf(feature(sys, fd, GET | SET | F.LOW_POWER_ENTRY))).toBe('EINVAL');
        expect(await errnoOf(feature(sys, fd, SET | 0x7ff0))).toBe('ENOTTY');
        for (const f of [F.MIGRATION, F.MIG_DEVICE_STATE, F.MIG_DATA_SIZE, F.DMA_LOGGING_START, F.DMA_LOGGING_STOP, F.DMA_LOGGING_REPORT]) {
          expect(await errnoOf(feature(sys, fd, GET | f))).toBe('ENOTTY');
        }
        expect(await errnoOf(feature(sys, fd, GET | F.PCI_VF_TOKEN))).toBe('ENOTTY');
        // vfio_check_feature: GET where only SET is supported, even with PROBE; PROBE alone 0; neither EINVAL.
        expect(await errnoOf(feature(sys, fd, GET | SET | PROBE | F.LOW_POWER_EXIT))).toBe('EINVAL');
        expect(await feature(sys, fd, SET | PROBE | F.LOW_POWER_ENTRY)).toBe(0);
        expect(await feature(sys, fd, PROBE | F.LOW_POWER_ENTRY_WITH_WAKEUP)).toBe(0);
        expect(await errnoOf(feature(sys, fd, F.LOW_POWER_EXIT))).toBe('EINVAL');
        // Data shorter than the feature's struct.
        expect(await errnoOf(feature(sys, fd, SET | F.LOW_POWER_ENTRY_WITH_WAKEUP, new Uint8Array(4)))).toBe('EINVAL');
        await dev.close();
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    });
  });

  it('LOW_POWER_ENTRY zaps the BAR mappings until LOW_POWER_EXIT; a second entry EINVAL; with a wake eventfd the next device ioctl signals it and leaves low power', async () => {
    await withMachine(EDU_CFG, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        const dev = await VfioPciDevice.open(sys, '00:03.0');
        const fd = dev.fd;
        await dev.enableBusMaster();
        const bar = await dev.mapRegion(0);
        expect(barWorks(bar)).toBe(true);
        expect(await feature(sys, fd, SET | F.LOW_POWER_ENTRY)).toBe(0);
        expect(barWorks(bar)).toBe(false);
        expect(await errnoOf(feature(sys, fd, SET | F.LOW_POWER_ENTRY))).toBe('EINVAL');
        // Without a wake eventfd an ioctl wakes the device only for itself.
        await sys.ioctl(fd, VFIO.DEVICE_GET_INFO, { argsz: 24, flags: 0, num_regions: 0, num_irqs: 0, cap_offset: 0, pad: 0 });
        expect(barWorks(bar)).toBe(false);
        expect(await feature(sys, fd, SET | F.LOW_POWER_EXIT)).toBe(0);
        expect(barWorks(bar)).toBe(true);
        // Exit when not in low power: nothing to do.
        expect(await feature(sys, fd, SET | F.LOW_POWER_EXIT)).toBe(0);

        const efd = await sys.eventfd(0, 0);
        expect(await errnoOf(feature(sys, fd, SET | F.LOW_POWER_ENTRY_WITH_WAKEUP, s32(-1)))).toBe('EINVAL');
        expect(await errnoOf(feature(sys, fd, SET | F.LOW_POWER_ENTRY_WITH_WAKEUP, s32(999)))).toBe('EBADF');
        expect(await errnoOf(feature(sys, fd, SET | F.LOW_POWER_ENTRY_WITH_WAKEUP, s32(fd)))).toBe('EINVAL');
        expect(await feature(sys, fd, SET | F.LOW_POWER_ENTRY_WITH_WAKEUP, s32(efd))).toBe(0);
        expect(barWorks(bar)).toBe(false);
        await sys.ioctl(fd, VFIO.DEVICE_GET_INFO, { argsz: 24, flags: 0, num_regions: 0, num_irqs: 0, cap_offset: 0, pad: 0 });
        expect(await dev.waitIrq(efd)).toBe(1n);
        expect(barWorks(bar)).toBe(true);
        await sys.close(efd);
        await dev.close();
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    });
  });
});

describe('VFIO_DEVICE_IOEVENTFD (vfio_pci_ioctl_ioeventfd)', () => {
  it('a signal writes the data into the BAR; the same tuple EEXIST, fd -1 removes it (ENODEV when absent); size, offset and fd rules', async () => {
    await withMachine(EDU_CFG, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        const dev = await VfioPciDevice.open(sys, '00:03.0');
        await dev.enableBusMaster();
        const bar = await dev.mapRegion(0);
        const bar0 = (await dev.region(0)).offset;
        const ioe = (flags: number, offset: bigint, data: bigint, fd: number, argsz = 32) =>
          sys.ioctl(dev.fd, VFIO.DEVICE_IOEVENTFD, { argsz, flags, offset, data, fd, reserved: 0 });
        const efd = await sys.eventfd(0, 0);
        const ring = (fd: number) => sys.write(fd, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
        expect(await errnoOf(ioe(4, bar0 + 4n, 0x1234n, efd, 27))).toBe('EINVAL');
        expect(await errnoOf(ioe(0x14, bar0 + 4n, 0x1234n, efd))).toBe('EINVAL');
        expect(await errnoOf(ioe(3, bar0 + 4n, 0x1234n, efd))).toBe('EINVAL');
        expect(await errnoOf(ioe(4, bar0 + 4n, 0x1234n, -2))).toBe('EINVAL');
        expect(await errnoOf(ioe(4, (6n << 40n) + 4n, 0x1234n, efd))).toBe('EINVAL');
        expect(await errnoOf(ioe(4, bar0 + (1n << 20n) - 2n, 0x1234n, efd))).toBe('EINVAL');
        expect(await errnoOf(ioe(4, bar0 + 4n, 0x1234n, -1))).toBe('ENODEV');
        expect(await errnoOf(ioe(4, bar0 + 4n, 0x1234n, 999))).toBe('EBADF');
        expect(await errnoOf(ioe(4, bar0 + 4n, 0x1234n, dev.fd))).toBe('EINVAL');
        expect(await ioe(4, bar0 + 4n, 0x1234n, efd)).toBe(0);
        expect(await errnoOf(ioe(4, bar0 + 4n, 0x1234n, efd))).toBe('EEXIST');
        // edu's liveness register stores the inverse of what is written.
        expect(bar.read32(4) >>> 0).toBe(0);
        await ring(efd);
        expect(bar.read32(4) >>> 0).toBe(~0x1234 >>> 0);
        bar.write32(4, 0);
        await ring(efd);
        expect(bar.read32(4) >>> 0).toBe(~0x1234 >>> 0);
        expect(await ioe(4, bar0 + 4n, 0x1234n, -1)).toBe(0);
        bar.write32(4, 0);
        await ring(efd);
        expect(bar.read32(4) >>> 0).toBe(~0 >>> 0);
        await sys.close(efd);
        await dev.close();
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    });
  });
});
