import { describe, expect, it } from 'vitest';
import type { PollFd } from '../kernel-shim/task/sys.ts';
import { infoCaps } from '../kernel-shim/uapi/capchain.ts';
import { MAP, POLL } from '../kernel-shim/uapi/linux.ts';
import {
  VFIO, VFIO_DEVICE_FLAGS, VFIO_IRQ_INFO, VFIO_PCI_IRQ, VFIO_REGION_INFO_CAP, VFIO_REGION_INFO_FLAG, vfio_region_info,
} from '../kernel-shim/uapi/vfio.ts';
import { ACTION_MASK, ACTION_TRIGGER, ACTION_UNMASK, DATA_BOOL, DATA_EVENTFD, DATA_NONE, RW, irqSet, off, onVfio, open, readEventfd } from './vfio-pci-fixture.ts';
import { errnoOf } from './sys-errno.ts';

/**
 * vfio-pci's device ops on device fds from the real VFIO path (see vfio-pci-fixture.ts); each test names the
 * Linux function that decides the rule.
 */

describe('vfio-pci DEVICE_GET_INFO (vfio_pci_ioctl_get_info)', () => {
  it('flags PCI|RESET with FLR, PCI alone without a reset method; 9 regions, 5 irqs; argsz < 16 EINVAL', async () => {
    await onVfio(async ({ sys }) => {
      const td = await open(sys, 'td');
      const info = { argsz: 24, flags: 0, num_regions: 0, num_irqs: 0, cap_offset: 0, pad: 0 };
      await sys.ioctl(td, VFIO.DEVICE_GET_INFO, info);
      expect(info).toMatchObject({ flags: VFIO_DEVICE_FLAGS.PCI | VFIO_DEVICE_FLAGS.RESET, num_regions: 9, num_irqs: 5 });
      const edu = await open(sys, 'edu');
      const e = { argsz: 16, flags: 0, num_regions: 0, num_irqs: 0 };
      await sys.ioctl(edu, VFIO.DEVICE_GET_INFO, e);
      expect(e.flags).toBe(VFIO_DEVICE_FLAGS.PCI);
      expect(await errnoOf(sys.ioctl(edu, VFIO.DEVICE_GET_INFO, { argsz: 15 }))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(edu, VFIO.DEVICE_FEATURE + 100))).toBe('ENOTTY');
      await sys.close(td);
      await sys.close(edu);
    });
  });
});

describe('vfio-pci DEVICE_GET_REGION_INFO (vfio_pci_ioctl_get_region_info)', () => {
  it('BARs, the MSI-X BAR with MSIX_MAPPABLE, CONFIG 4096/256, ROM absent, VGA and index 9 EINVAL', async () => {
    await onVfio(async ({ sys }) => {
      const td = await open(sys, 'td');
      const ri = (index: number, argsz = 32) => ({ argsz, flags: 0, index, cap_offset: 0, size: 0n, offset: 0n });
      const b0 = ri(0);
      await sys.ioctl(td, VFIO.DEVICE_GET_REGION_INFO, b0);
      expect(b0).toMatchObject({ flags: VFIO_REGION_INFO_FLAG.READ | VFIO_REGION_INFO_FLAG.WRITE | VFIO_REGION_INFO_FLAG.MMAP, size: 4096n, offset: 0n });
      const b1 = ri(1);
      await sys.ioctl(td, VFIO.DEVICE_GET_REGION_INFO, b1);
      expect(b1).toMatchObject({ flags: VFIO_REGION_INFO_FLAG.READ | VFIO_REGION_INFO_FLAG.WRITE, size: 32n, offset: 1n << 40n });
      // Buffer too small for the caps: success, CAPS set, argsz raised, cap_offset 0.
      const short = ri(2);
      await sys.ioctl(td, VFIO.DEVICE_GET_REGION_INFO, short);
      expect(short).toMatchObject({ argsz: 40, cap_offset: 0, size: 16384n });
      expect(short.flags & VFIO_REGION_INFO_FLAG.CAPS).toBe(VFIO_REGION_INFO_FLAG.CAPS);
      const full = ri(2, 40);
      await sys.ioctl(td, VFIO.DEVICE_GET_REGION_INFO, full);
      expect(full.cap_offset).toBe(32);
      expect(infoCaps(vfio_region_info, full).map((c) => [c.id, c.version])).toEqual([[VFIO_REGION_INFO_CAP.MSIX_MAPPABLE, 1]]);
      const b3 = ri(3);
      await sys.ioctl(td, VFIO.DEVICE_GET_REGION_INFO, b3);
      expect(b3).toMatchObject({ flags: 0, size: 0n });
      const cfg = ri(7);
      await sys.ioctl(td, VFIO.DEVICE_GET_REGION_INFO, cfg);
      expect(cfg).toMatchObject({ size: 4096n, offset: 7n << 40n, flags: 3 });
      const rom = ri(6);
      await sys.ioctl(td, VFIO.DEVICE_GET_REGION_INFO, rom);
      expect(rom).toMatchObject({ size: 0n, flags: 0 });
      expect(await errnoOf(sys.ioctl(td, VFIO.DEVICE_GET_REGION_INFO, ri(8)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(td, VFIO.DEVICE_GET_REGION_INFO, ri(9)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(td, VFIO.DEVICE_GET_REGION_INFO, ri(0, 31)))).toBe('EINVAL');
      const edu = await open(sys, 'edu');
      const ecfg = ri(7);
      await sys.ioctl(edu, VFIO.DEVICE_GET_REGION_INFO, ecfg);
      expect(ecfg.size).toBe(256n);
      await sys.close(td);
      await sys.close(edu);
    });
  });
});

describe('vfio-pci read/write (vfio_pci_rw, vfio_pci_bar_rw, vfio_pci_config_rw)', () => {
  it('BAR0 through MMIO, the MSI-X table skipped, ROM write EINVAL, count 0, bad index EINVAL, config reads', async () => {
    await onVfio(async ({ sys, machine }) => {
      const td = await open(sys, 'td');
      const v = new Uint8Array([0x78, 0x56, 0x34, 0x12]);
      expect(await sys.pwrite(td, v, off(0, 4))).toBe(4);
      const back = new Uint8Array(4);
      expect(await sys.pread(td, back, off(0, 4))).toBe(4);
      expect([...back]).toEqual([0x78, 0x56, 0x34, 0x12]);
      const id = new Uint8Array(4);
      await sys.pread(td, id, off(0, 0));
      expect(new DataView(id.buffer).getUint32(0, true)).toBe(0x7e570001);
      // The MSI-X table (BAR2 +0, 64 entries) reads all-ones and drops writes.
      machine.pci.find('00:04.0')?.fn.mmioWrite(2, 8, 4, 0x1234);
      const t = new Uint8Array(16);
      await sys.pread(td, t, off(2, 0));
      expect([...t]).toEqual(Array(16).fill(0xff));
      await sys.pwrite(td, new Uint8Array(4), off(2, 8));
      expect(machine.pci.find('00:04.0')?.fn.mmioRead(2, 8, 4)).toBe(0x1234);
      expect(await sys.pread(td, new Uint8Array(0), off(0))).toBe(0);
      expect(await errnoOf(sys.pwrite(td, new Uint8Array(4), off(6)))).toBe('EINVAL');
      expect(await errnoOf(sys.pread(td, new Uint8Array(4), off(9)))).toBe('EINVAL');
      expect(await errnoOf(sys.pread(td, new Uint8Array(4), off(0, 4096)))).toBe('EINVAL');
      const cfg = new Uint8Array(4);
      await sys.pread(td, cfg, off(7, 0));
      expect(new DataView(cfg.buffer).getUint32(0, true)).toBe(0x7e571b36);
      // vfio_bar_fixup: BAR sizing on the virtual BAR, the real BAR untouched.
      const real = machine.pci.configRead(0x20, 0x10, 4);
      await sys.pwrite(td, new Uint8Array([0xff, 0xff, 0xff, 0xff]), off(7, 0x10));
      await sys.pread(td, cfg, off(7, 0x10));
      expect(new DataView(cfg.buffer).getUint32(0, true)).toBe(0xfffff000);
      expect(machine.pci.configRead(0x20, 0x10, 4)).toBe(real);
      expect(await errnoOf(sys.pread(td, new Uint8Array(4), off(7, 4094)))).toBe('EFAULT');
      await sys.close(td);
    });
  });
});

describe('vfio-pci mmap (vfio_pci_core_mmap)', () => {
  it('MAP_SHARED only, ROM/CONFIG EINVAL, I/O BAR EINVAL, past the BAR EINVAL; the MSI-X table is writable through the mapping', async () => {
    await onVfio(async ({ sys, machine }) => {
      const td = await open(sys, 'td');
      expect(await errnoOf(sys.mmap(null, 4096, RW, MAP.PRIVATE, td, off(0)))).toBe('EINVAL');
      expect(await errnoOf(sys.mmap(null, 4096, RW, MAP.SHARED, td, off(7)))).toBe('EINVAL');
      expect(await errnoOf(sys.mmap(null, 4096, RW, MAP.SHARED, td, off(6)))).toBe('EINVAL');
      expect(await errnoOf(sys.mmap(null, 4096, RW, MAP.SHARED, td, off(1)))).toBe('EINVAL');
      expect(await errnoOf(sys.mmap(null, 8192, RW, MAP.SHARED, td, off(0)))).toBe('EINVAL');
      const bar2 = await sys.mmap(null, 16384, RW, MAP.SHARED, td, off(2));
      bar2.write32(16 * 5 + 8, 0xabcd);
      expect(machine.pci.find('00:04.0')?.fn.mmioRead(2, 16 * 5 + 8, 4)).toBe(0xabcd);
      await sys.munmap(bar2.addr, bar2.length);
      await sys.close(td);
    });
  });
});

describe('vfio-pci interrupts (vfio_pci_ioctl_get_irq_info, vfio_pci_set_irqs_ioctl)', () => {
  it('GET_IRQ_INFO flags and counts; ERR EINVAL on conventional PCI; index 5 EINVAL', async () => {
    await onVfio(async ({ sys }) => {
      const td = await open(sys, 'td');
      const q = async (fd: number, index: number) => {
        const i = { argsz: 16, flags: 0, index, count: 0 };
        await sys.ioctl(fd, VFIO.DEVICE_GET_IRQ_INFO, i);
        return [i.flags, i.count];
      };
      const { EVENTFD, MASKABLE, AUTOMASKED, NORESIZE } = VFIO_IRQ_INFO;
      expect(await q(td, 0)).toEqual([EVENTFD | MASKABLE | AUTOMASKED, 1]);
      expect(await q(td, 1)).toEqual([EVENTFD | NORESIZE, 4]);
      expect(await q(td, 2)).toEqual([EVENTFD | NORESIZE, 64]);
      expect(await q(td, 3)).toEqual([EVENTFD | NORESIZE, 1]);
      expect(await q(td, 4)).toEqual([EVENTFD | NORESIZE, 1]);
      const edu = await open(sys, 'edu');
      expect(await errnoOf(sys.ioctl(edu, VFIO.DEVICE_GET_IRQ_INFO, { argsz: 16, index: 3 }))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(edu, VFIO.DEVICE_GET_IRQ_INFO, { argsz: 16, index: 5 }))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(edu, VFIO.DEVICE_GET_IRQ_INFO, { argsz: 15, index: 0 }))).toBe('EINVAL');
      await sys.close(td);
      await sys.close(edu);
    });
  });

  it('SET_IRQS validation order (vfio_set_irqs_validate_and_prepare) and dispatch errnos', async () => {
    await onVfio(async ({ sys }) => {
      const td = await open(sys, 'td');
      const efd = await sys.eventfd();
      const set = (o: object) => errnoOf(sys.ioctl(td, VFIO.DEVICE_SET_IRQS, o));
      expect(await set({ argsz: 19, flags: DATA_NONE | ACTION_TRIGGER, index: 2, start: 0, count: 0 })).toBe('EINVAL');
      expect(await set(irqSet(DATA_NONE | ACTION_TRIGGER, 5, 0, 0))).toBe('EINVAL');
      expect(await set(irqSet(DATA_NONE | ACTION_TRIGGER | 0x40, 2, 0, 0))).toBe('EINVAL');
      expect(await set(irqSet(DATA_NONE | ACTION_TRIGGER, 2, 64, 0))).toBe('EINVAL');
      expect(await set(irqSet(DATA_NONE | ACTION_TRIGGER, 2, 60, 5))).toBe('EINVAL');
      expect(await set(irqSet(DATA_NONE | DATA_BOOL | ACTION_TRIGGER, 2, 0, 1))).toBe('EINVAL');
      expect(await set({ argsz: 23, flags: DATA_EVENTFD | ACTION_TRIGGER, index: 2, start: 0, count: 1 })).toBe('EINVAL');
      expect(await set(irqSet(DATA_NONE | ACTION_MASK | ACTION_TRIGGER, 2, 0, 1))).toBe('ENOTTY');
      expect(await set(irqSet(DATA_NONE, 2, 0, 1))).toBe('ENOTTY');
      expect(await set(irqSet(DATA_NONE | ACTION_MASK, 2, 0, 1))).toBe('ENOTTY');
      expect(await set(irqSet(DATA_NONE | ACTION_UNMASK, 3, 0, 1))).toBe('ENOTTY');
      // eventfd_ctx_fdget: no fd EBADF, not an eventfd EINVAL.
      expect(await set(irqSet(DATA_EVENTFD | ACTION_TRIGGER, 2, 0, 1, new Int32Array([99])))).toBe('EBADF');
      expect(await set(irqSet(DATA_EVENTFD | ACTION_TRIGGER, 2, 0, 1, new Int32Array([td])))).toBe('EINVAL');
      // vfio_pci_set_msi_trigger: loopback on an index not enabled EINVAL.
      expect(await set(irqSet(DATA_NONE | ACTION_TRIGGER, 2, 0, 1))).toBe('EINVAL');
      // INTx MASK needs INTx enabled.
      expect(await set(irqSet(DATA_NONE | ACTION_MASK, 0, 0, 1))).toBe('EINVAL');
      // ERR/REQ: start 0, count <= 1; BOOL with count 0 EINVAL; NONE without a trigger EINVAL.
      expect(await set(irqSet(DATA_BOOL | ACTION_TRIGGER, 4, 0, 0))).toBe('EINVAL');
      expect(await set(irqSet(DATA_NONE | ACTION_TRIGGER, 4, 0, 1))).toBe('EINVAL');
      expect(await set(irqSet(DATA_EVENTFD | ACTION_TRIGGER, 3, 0, 1, new Int32Array([efd])))).toBe('success');
      expect(await set(irqSet(DATA_NONE | ACTION_TRIGGER, 3, 0, 1))).toBe('success');
      expect(await readEventfd(sys, efd)).toBe(1n);
      expect(await set(irqSet(DATA_EVENTFD | ACTION_TRIGGER, 3, 0, 1, new Int32Array([-1])))).toBe('success');
      expect(await set(irqSet(DATA_NONE | ACTION_TRIGGER, 3, 0, 1))).toBe('EINVAL');
      await sys.close(td);
    });
  });

  it('MSI-X: vectors on eventfds, loopback, -1 de-assigns, switching type EINVAL, disable, nothing left after close', async () => {
    await onVfio(async ({ sys, kernel, vdevs }) => {
      const td = await open(sys, 'td');
      const efds = [await sys.eventfd(), await sys.eventfd(), await sys.eventfd()];
      const set = (o: object) => sys.ioctl(td, VFIO.DEVICE_SET_IRQS, o);
      const irqsBefore = kernel.irq.descs.length;
      // Bus mastering on through the config region (Command passes through but for INTx Disable): MSI-X messages are writes.
      await sys.pwrite(td, new Uint8Array([0x06, 0x00]), off(7, 4));
      await set(irqSet(DATA_EVENTFD | ACTION_TRIGGER, VFIO_PCI_IRQ.MSIX, 0, 3, new Int32Array(efds)));
      expect(vdevs.td?.pdev.msixEnabled).toBe(true);
      await sys.pwrite(td, new Uint8Array([2, 0, 0, 0]), off(0, 8));
      expect(await readEventfd(sys, efds[2] as number)).toBe(1n);
      await set(irqSet(DATA_BOOL | ACTION_TRIGGER, VFIO_PCI_IRQ.MSIX, 0, 2, new Uint8Array([0, 1])));
      expect(await readEventfd(sys, efds[1] as number)).toBe(1n);
      expect(await errnoOf(set(irqSet(DATA_EVENTFD | ACTION_TRIGGER, VFIO_PCI_IRQ.MSI, 0, 1, new Int32Array(efds.slice(0, 1)))))).toBe('EINVAL');
      expect(await errnoOf(set(irqSet(DATA_EVENTFD | ACTION_TRIGGER, VFIO_PCI_IRQ.INTX, 0, 1, new Int32Array(efds.slice(0, 1)))))).toBe('EINVAL');
      await set(irqSet(DATA_EVENTFD | ACTION_TRIGGER, VFIO_PCI_IRQ.MSIX, 2, 1, new Int32Array([-1])));
      await sys.pwrite(td, new Uint8Array([2, 0, 0, 0]), off(0, 8));
      const pf: PollFd[] = [{ fd: efds[2] as number, events: POLL.IN }];
      await sys.poll(pf, 0);
      expect(pf[0]?.revents ?? 0).toBe(0);
      await set(irqSet(DATA_NONE | ACTION_TRIGGER, VFIO_PCI_IRQ.MSIX, 0, 0));
      expect(vdevs.td?.pdev.msixEnabled).toBe(false);
      await set(irqSet(DATA_EVENTFD | ACTION_TRIGGER, VFIO_PCI_IRQ.MSIX, 0, 1, new Int32Array(efds.slice(0, 1))));
      await sys.close(td);
      expect(vdevs.td?.pdev.msixEnabled).toBe(false);
      expect(kernel.irq.descs.length).toBe(irqsBefore);
      expect(vdevs.td?.priv).toBeUndefined();
    });
  });
});
