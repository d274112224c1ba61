/**
 * VFIO_DEVICE_RESET by secondary bus reset (Linux `pci_parent_bus_reset`, `pci_reset_secondary_bus`): a
 * function with neither FLR nor a PM reset, alone on the secondary bus of a bridge, is reset by pulsing the
 * bridge's Secondary Bus Reset; on the root bus, or with a neighbour on its bus, it has no reset at all.
 */
import { describe, expect, it } from 'vitest';
import { APEX_MSIX_TABLE, APEX_PAGE_TABLE } from '../device-models/index.ts';
import { O, SysError, type Sys } from '../kernel-shim/index.ts';
import { VFIO, vfio_pci_hot_reset, vfio_pci_hot_reset_info, withLayout } from '../kernel-shim/uapi/index.ts';
import { VfioPciDevice, withMachine } from '../userspace/index.ts';
import { errnoOf } from './sys-errno.ts';

const PORT = { kind: 'root-port' as const, bdf: 0xe0, secondaryBus: 1 };

async function readText(sys: Sys, path: string): Promise<string> {
  const fd = await sys.open(path, O.RDONLY);
  const b = new Uint8Array(256);
  const n = await sys.read(fd, b);
  await sys.close(fd);
  return new TextDecoder().decode(b.subarray(0, n));
}

describe('vfio-pci reset by secondary bus reset', () => {
  it('the Apex alone below a root port: reset_method "bus", the RESET flag, and DEVICE_RESET returns the device to its power-on state, its MSI-X and Command restored', async () => {
    await withMachine({ iommu: { enabled: true }, pci: { bridges: [PORT], devices: [{ type: 'apex', bdf: 0x0100, acs: false }] } }, async ({ spawn, run, machine }) => {
      const p = spawn('drv', async (sys) => {
        expect(await readText(sys, '/sys/bus/pci/devices/0000:01:00.0/reset_method')).toBe('bus\n');
        const t0 = machine.sim.now;
        const dev = await VfioPciDevice.open(sys, '01:00.0');
        // vfio_pci_core_enable reset the device once: SBR 2 ms, then 100 ms for the link.
        expect(machine.sim.now - t0).toBeGreaterThanOrEqual(102_000_000);
        expect(dev.canReset).toBe(true);
        expect(await dev.resetMethods()).toEqual(['bus']);
        await dev.enableBusMaster();
        const bar = await dev.mapRegion(2);
        await dev.enableMsix(13);
        const entry = APEX_MSIX_TABLE + 16 * 4;
        const msg = [bar.read32(entry), bar.read32(entry + 8)];
        expect(msg[0]).toBe(0xfee0_0000);
        bar.write64(APEX_PAGE_TABLE.offset + 8 * 7, 0x1234_5001n);
        expect(bar.read64(APEX_PAGE_TABLE.offset + 8 * 7)).toBe(0x1234_5001n);
        const t1 = machine.sim.now;
        await dev.reset();
        expect(machine.sim.now - t1).toBeGreaterThanOrEqual(102_000_000);
        // RST# cleared the device's own state; the kernel restored the header and the MSI-X table.
        expect(bar.read64(APEX_PAGE_TABLE.offset + 8 * 7)).toBe(0n);
        expect([bar.read32(entry), bar.read32(entry + 8)]).toEqual(msg);
        expect((await dev.configRead(4, 2)) & 0x6).toBe(0x6);
        await dev.close();
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    });
  });

  it('no bus reset on the root bus (edu at 00:03.0), nor with a neighbour on the bus: no reset_method, no RESET flag, DEVICE_RESET EINVAL', async () => {
    await withMachine({ iommu: { enabled: true }, pci: { bridges: [PORT], devices: [{ type: 'edu', bdf: '00:03.0' }, { type: 'apex', bdf: 0x0100, acs: false }, { type: 'edu', bdf: '01:01.0' }] } }, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        for (const bdf of ['0000:00:03.0', '0000:01:00.0']) {
          const e = await sys.open(`/sys/bus/pci/devices/${bdf}/reset_method`, O.RDONLY).catch((x: unknown) => x);
          expect((e as SysError).code).toBe('ENOENT');
        }
        const dev = await VfioPciDevice.open(sys, '00:03.0');
        expect(dev.canReset).toBe(false);
        expect(await errnoOf(sys.ioctl(dev.fd, VFIO.DEVICE_RESET))).toBe('EINVAL');
        await dev.close();
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    });
  });

  it('GET_PCI_HOT_RESET_INFO: the functions below the bridge with their groups (ENOSPC with the count when short); PCI_HOT_RESET with the group fd resets them all; each rule with its errno', async () => {
    await withMachine({ iommu: { enabled: true }, pci: { bridges: [PORT], devices: [{ type: 'edu', bdf: '00:03.0' }, { type: 'apex', bdf: 0x0100, acs: false }, { type: 'apex', bdf: 0x0101, acs: false }] } }, async ({ spawn, run, machine }) => {
      const p = spawn('drv', async (sys) => {
        // While 01:00.1 is bound to no driver the group is viable, but the bus reset would reach a function
        // vfio-pci does not own (vfio_pci_dev_set_resettable): EINVAL.
        const first = await VfioPciDevice.open(sys, '01:00.0');
        expect(await errnoOf(sys.ioctl(first.fd, VFIO.DEVICE_PCI_HOT_RESET, withLayout(vfio_pci_hot_reset, { argsz: 16, flags: 0, count: 1, group_fds: Int32Array.of(first.group) })))).toBe('EINVAL');
        await first.close();
        // Bind the second function to vfio-pci too (the library's open binds it; closing keeps the binding).
        await (await VfioPciDevice.open(sys, '01:00.1')).close();
        const dev = await VfioPciDevice.open(sys, '01:00.0');
        const info = (argsz: number) => withLayout(vfio_pci_hot_reset_info, { argsz, flags: 7, count: 0, devices: [] as { group_id: number; segment: number; bus: number; devfn: number }[] });
        expect(await errnoOf(sys.ioctl(dev.fd, VFIO.DEVICE_GET_PCI_HOT_RESET_INFO, info(11)))).toBe('EINVAL');
        const short = info(12);
        expect(await errnoOf(sys.ioctl(dev.fd, VFIO.DEVICE_GET_PCI_HOT_RESET_INFO, short))).toBe('ENOSPC');
        expect(short).toMatchObject({ flags: 0, count: 2 });
        const full = info(12 + 2 * 8);
        full.devices = [{ group_id: 0, segment: 0, bus: 0, devfn: 0 }, { group_id: 0, segment: 0, bus: 0, devfn: 0 }];
        await sys.ioctl(dev.fd, VFIO.DEVICE_GET_PCI_HOT_RESET_INFO, full);
        expect(full.count).toBe(2);
        expect(full.devices).toEqual([{ group_id: dev.groupId, segment: 0, bus: 1, devfn: 0 }, { group_id: dev.groupId, segment: 0, bus: 1, devfn: 1 }]);
        const reset = (fds: number[], flags = 0) => sys.ioctl(dev.fd, VFIO.DEVICE_PCI_HOT_RESET, withLayout(vfio_pci_hot_reset, { argsz: 12 + 4 * fds.length, flags, count: fds.length, group_fds: Int32Array.from(fds) }));
        expect(await errnoOf(reset([dev.group], 1))).toBe('EINVAL');
        expect(await errnoOf(reset([]))).toBe('EINVAL');
        expect(await errnoOf(reset([dev.group, dev.group, dev.group]))).toBe('EINVAL');
        expect(await errnoOf(reset([999]))).toBe('EBADF');
        expect(await errnoOf(reset([dev.container]))).toBe('EINVAL');
        const bar = await dev.mapRegion(2);
        bar.write64(APEX_PAGE_TABLE.offset + 8 * 3, 0x7001n);
        const t0 = machine.sim.now;
        await reset([dev.group]);
        expect(machine.sim.now - t0).toBeGreaterThanOrEqual(102_000_000);
        expect(bar.read64(APEX_PAGE_TABLE.offset + 8 * 3)).toBe(0n);
        await dev.close();
        // The edu on the root bus: no bus to reset.
        const edu = await VfioPciDevice.open(sys, '00:03.0');
        expect(await errnoOf(sys.ioctl(edu.fd, VFIO.DEVICE_GET_PCI_HOT_RESET_INFO, info(64)))).toBe('ENODEV');
        expect(await errnoOf(sys.ioctl(edu.fd, VFIO.DEVICE_PCI_HOT_RESET, withLayout(vfio_pci_hot_reset, { argsz: 16, flags: 0, count: 1, group_fds: Int32Array.of(edu.group) })))).toBe('ENODEV');
        await edu.close();
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    });
  });
});
