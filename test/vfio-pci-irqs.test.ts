import { describe, expect, it } from 'vitest';
import { APEX, APEX_IRQ_COUNT, APEX_OFFSET, APEX_SOURCES } from '../device-models/index.ts';
import type { PollFd, Sys } from '../kernel-shim/task/sys.ts';
import { MAP, POLL } from '../kernel-shim/uapi/linux.ts';
import { VFIO, VFIO_PCI_IRQ } from '../kernel-shim/uapi/vfio.ts';
import { ACTION_MASK, ACTION_TRIGGER, ACTION_UNMASK, DATA_BOOL, DATA_EVENTFD, DATA_NONE, RW, irqSet, off, onVfio, open, readEventfd } from './vfio-pci-fixture.ts';
import { errnoOf } from './sys-errno.ts';


async function readable(sys: Sys, fd: number): Promise<boolean> {
  const p: PollFd[] = [{ fd, events: POLL.IN }];
  await sys.poll(p, 0);
  return ((p[0]?.revents ?? 0) & POLL.IN) !== 0;
}

const cmd = (sys: Sys, fd: number, v: number): Promise<number> => sys.pwrite(fd, new Uint8Array([v & 0xff, v >> 8]), off(7, 4));
const w32 = (sys: Sys, fd: number, o: number, v: number): Promise<number> => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return sys.pwrite(fd, b, off(0, o));
};

describe('vfio-pci interrupts of edu and the Apex (vfio_pci_intrs.c)', () => {
  it('edu MSI on an eventfd (vfio_msi_enable, vfio_msihandler)', async () => {
    await onVfio(async ({ sys }) => {
      const edu = await open(sys, 'edu');
      await cmd(sys, edu, 0x0006);
      const efd = await sys.eventfd();
      await sys.ioctl(edu, VFIO.DEVICE_SET_IRQS, irqSet(DATA_EVENTFD | ACTION_TRIGGER, VFIO_PCI_IRQ.MSI, 0, 1, new Int32Array([efd])));
      await w32(sys, edu, 0x60, 1);
      expect(await readEventfd(sys, efd)).toBe(1n);
      await w32(sys, edu, 0x64, 1);
      await sys.ioctl(edu, VFIO.DEVICE_SET_IRQS, irqSet(DATA_NONE | ACTION_TRIGGER, VFIO_PCI_IRQ.MSI, 0, 0));
      await sys.close(edu);
    });
  });

  it('edu INTx: automasked after each interrupt, UNMASK re-arms, a pending one re-sent; MASK by eventfd ENOTTY (vfio_intx_handler, vfio_pci_set_intx_unmask)', async () => {
    await onVfio(async ({ sys }) => {
      const edu = await open(sys, 'edu');
      const efd = await sys.eventfd();
      const set = (o: object) => sys.ioctl(edu, VFIO.DEVICE_SET_IRQS, o);
      await set(irqSet(DATA_EVENTFD | ACTION_TRIGGER, VFIO_PCI_IRQ.INTX, 0, 1, new Int32Array([efd])));
      await w32(sys, edu, 0x60, 1);
      await sys.nanosleep(10_000);
      expect(await readEventfd(sys, efd)).toBe(1n);
      // Still asserted but masked: no second event.
      await sys.nanosleep(10_000);
      expect(await readable(sys, efd)).toBe(false);
      await w32(sys, edu, 0x64, 1);
      await set(irqSet(DATA_NONE | ACTION_UNMASK, VFIO_PCI_IRQ.INTX, 0, 1));
      await w32(sys, edu, 0x60, 2);
      await sys.nanosleep(10_000);
      expect(await readEventfd(sys, efd)).toBe(1n);
      // Unmask while still asserted: the interrupt is re-sent to the user.
      await set(irqSet(DATA_BOOL | ACTION_UNMASK, VFIO_PCI_IRQ.INTX, 0, 1, new Uint8Array([1])));
      await sys.nanosleep(10_000);
      expect(await readEventfd(sys, efd)).toBe(1n);
      await w32(sys, edu, 0x64, 2);
      expect(await errnoOf(set(irqSet(DATA_EVENTFD | ACTION_MASK, VFIO_PCI_IRQ.INTX, 0, 1, new Int32Array([efd]))))).toBe('ENOTTY');
      // vfio_pci_set_intx_mask: count must be 1.
      expect(await errnoOf(set(irqSet(DATA_NONE | ACTION_MASK, VFIO_PCI_IRQ.INTX, 0, 0)))).toBe('EINVAL');
      // Loopback (TRIGGER|NONE, count 1) while not masked by the user.
      await set(irqSet(DATA_NONE | ACTION_UNMASK, VFIO_PCI_IRQ.INTX, 0, 1));
      await set(irqSet(DATA_NONE | ACTION_TRIGGER, VFIO_PCI_IRQ.INTX, 0, 1));
      expect(await readEventfd(sys, efd)).toBe(1n);
      expect(await errnoOf(set(irqSet(DATA_EVENTFD | ACTION_TRIGGER, VFIO_PCI_IRQ.MSI, 0, 1, new Int32Array([efd]))))).toBe('EINVAL');
      await set(irqSet(DATA_NONE | ACTION_TRIGGER, VFIO_PCI_IRQ.INTX, 0, 0));
      await sys.close(edu);
    });
  });

  it('edu INTx unmask by eventfd (the virqfd of vfio_pci_set_intx_unmask): each signal unmasks, a pending interrupt is re-sent; EBADF, EINVAL, EBUSY; -1 drops it', async () => {
    await onVfio(async ({ sys }) => {
      const edu = await open(sys, 'edu');
      const trig = await sys.eventfd();
      const unmask = await sys.eventfd();
      const set = (o: object) => sys.ioctl(edu, VFIO.DEVICE_SET_IRQS, o);
      const unmaskFd = (fd: number) => set(irqSet(DATA_EVENTFD | ACTION_UNMASK, VFIO_PCI_IRQ.INTX, 0, 1, new Int32Array([fd])));
      // Before INTx is set up: vfio_pci_set_intx_unmask's is_intx check.
      expect(await errnoOf(unmaskFd(unmask))).toBe('EINVAL');
      await set(irqSet(DATA_EVENTFD | ACTION_TRIGGER, VFIO_PCI_IRQ.INTX, 0, 1, new Int32Array([trig])));
      expect(await errnoOf(unmaskFd(999))).toBe('EBADF');
      expect(await errnoOf(unmaskFd(edu))).toBe('EINVAL');
      await unmaskFd(unmask);
      expect(await errnoOf(unmaskFd(unmask))).toBe('EBUSY');
      const signal = (fd: number) => sys.write(fd, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
      await w32(sys, edu, 0x60, 1);
      await sys.nanosleep(10_000);
      expect(await readEventfd(sys, trig)).toBe(1n);
      await w32(sys, edu, 0x64, 1);
      // The user's unmask is a write to the eventfd; the kernel consumes it.
      await signal(unmask);
      expect(await readable(sys, unmask)).toBe(false);
      await w32(sys, edu, 0x60, 2);
      await sys.nanosleep(10_000);
      expect(await readEventfd(sys, trig)).toBe(1n);
      // Unmasked while still asserted: the interrupt comes again.
      await signal(unmask);
      await sys.nanosleep(10_000);
      expect(await readEventfd(sys, trig)).toBe(1n);
      await w32(sys, edu, 0x64, 2);
      await signal(unmask);
      // -1 drops the virqfd: a signal then stays in the eventfd and unmasks nothing.
      await unmaskFd(-1);
      await w32(sys, edu, 0x60, 4);
      await sys.nanosleep(10_000);
      expect(await readEventfd(sys, trig)).toBe(1n);
      await w32(sys, edu, 0x64, 4);
      await signal(unmask);
      expect(await readEventfd(sys, unmask)).toBe(1n);
      await w32(sys, edu, 0x60, 8);
      await sys.nanosleep(10_000);
      expect(await readable(sys, trig)).toBe(false);
      // A count already in the eventfd at registration unmasks at once (virqfd's missed-event check).
      await signal(unmask);
      await unmaskFd(unmask);
      await sys.nanosleep(10_000);
      expect(await readEventfd(sys, trig)).toBe(1n);
      await w32(sys, edu, 0x64, 8);
      await set(irqSet(DATA_NONE | ACTION_TRIGGER, VFIO_PCI_IRQ.INTX, 0, 0));
      await sys.close(edu);
    });
  });

  it('Apex: all 13 sources on their own MSI-X vector and eventfd (vfio_msi_set_block)', async () => {
    await onVfio(async ({ sys, machine }) => {
      const apex = await open(sys, 'apex');
      await cmd(sys, apex, 0x0006);
      const efds: number[] = [];
      for (let i = 0; i < APEX_IRQ_COUNT; i++) efds.push(await sys.eventfd());
      await sys.ioctl(apex, VFIO.DEVICE_SET_IRQS, irqSet(DATA_EVENTFD | ACTION_TRIGGER, VFIO_PCI_IRQ.MSIX, 0, APEX_IRQ_COUNT, new Int32Array(efds)));
      const bar = await sys.mmap(null, 1 << 20, RW, MAP.SHARED, apex, off(2));
      for (let i = 0; i < APEX_IRQ_COUNT; i++) {
        const s = APEX_SOURCES[i];
        if (s === undefined) continue;
        const o = APEX_OFFSET[s.vecReg] as number;
        bar.write64(o, bar.read64(o) | (BigInt(i) << BigInt(s.vecLsb)));
      }
      for (const r of [APEX.IQ_INT_CONTROL, APEX.Q1_INT_CONTROL, APEX.Q2_INT_CONTROL, APEX.Q3_INT_CONTROL, APEX.FATAL_ERR_INT_CONTROL]) bar.write64(APEX_OFFSET[r] as number, 1n);
      bar.write64(APEX_OFFSET[APEX.SC_HOST_INT_CONTROL] as number, 0xfn);
      bar.write64(APEX_OFFSET[APEX.TOP_LEVEL_INT_CONTROL] as number, 0xfn);
      for (const src of [12, 4, 0, 9, 7, 1, 11, 2, 5, 8, 3, 10, 6]) {
        machine.pci.apex('01:00.0').irq.raise(src);
        await sys.nanosleep(1000);
        for (let i = 0; i < APEX_IRQ_COUNT; i++) expect(await readable(sys, efds[i] as number)).toBe(i === src);
        expect(await readEventfd(sys, efds[src] as number)).toBe(1n);
      }
      await sys.munmap(bar.addr, bar.length);
      await sys.close(apex);
    });
  });

  for (const [linux, func] of [['6.12', 'call_irq_handler'], ['6.1', '__common_interrupt']] as const) {
    it(`${linux}: an MSI-X entry pointed at a vector the kernel never allocated is spurious: "${func}: 0.NN No irq handler for vector" at KERN_EMERG, ratelimited 10 per 5 s (common_interrupt, pr_emerg_ratelimited)`, async () => {
      await onVfio(async ({ sys, machine, kernel }) => {
        const td = await open(sys, 'td');
        await cmd(sys, td, 0x0006);
        const efd = await sys.eventfd();
        await sys.ioctl(td, VFIO.DEVICE_SET_IRQS, irqSet(DATA_EVENTFD | ACTION_TRIGGER, VFIO_PCI_IRQ.MSIX, 0, 1, new Int32Array([efd])));
        // The bogus entry, written through the BAR mapping (MSIX_MAPPABLE): entry 0's data = vector 0xe0,
        // an external vector no irq owns.
        const bar2 = await sys.mmap(null, 16384, RW, MAP.SHARED, td, off(2));
        bar2.write32(8, 0xe0);
        const before = machine.intc.spurious;
        const line = `${func}: 0.224 No irq handler for vector`;
        const emerg = () => kernel.log.records.filter((r) => r.level === 'emerg' && r.text === line).length;
        const suppressed = () => kernel.log.records.filter((r) => r.level === 'warn' && r.text === `${func}: 2 callbacks suppressed`).length;
        // testdev BAR0 +8: raise MSI-X vector 0.
        await w32(sys, td, 8, 0);
        expect(machine.intc.spurious).toBe(before + 1);
        expect(kernel.irq.noHandler).toBe(1);
        expect(emerg()).toBe(1);
        expect(await readable(sys, efd)).toBe(false);
        // 12 in one burst: 10 printed, 2 suppressed; the next one after the 5 s interval says so first.
        for (let i = 1; i < 12; i++) await w32(sys, td, 8, 0);
        expect(kernel.irq.noHandler).toBe(12);
        expect(machine.intc.spurious).toBe(before + 12);
        expect(emerg()).toBe(10);
        await sys.nanosleep(5_100_000_000);
        await w32(sys, td, 8, 0);
        expect(suppressed()).toBe(1);
        expect(emerg()).toBe(11);
        expect(kernel.irq.noHandler).toBe(13);
        await sys.munmap(bar2.addr, bar2.length);
        await sys.close(td);
      }, { linux });
    });
  }
});

describe('x86 vector states (arch/x86/kernel/apic/vector.c, irq.c)', () => {
  it('a freed vector is VECTOR_SHUTDOWN: its first stray message is quiet, the next one logged; system and exception vectors are not common_interrupt\'s', async () => {
    await onVfio(async ({ machine, kernel }) => {
      const v = kernel.pci.allocCpuVector();
      kernel.pci.freeCpuVector(v);
      const logged = () => kernel.log.records.filter((r) => r.text === `call_irq_handler: 0.${v} No irq handler for vector`).length;
      machine.rootComplex.msi(0x20, 0xfee0_0000, v);
      expect([logged(), kernel.irq.noHandler]).toEqual([0, 0]);
      machine.rootComplex.msi(0x20, 0xfee0_0000, v);
      expect([logged(), kernel.irq.noHandler]).toEqual([1, 1]);
      const spurious = machine.intc.spurious;
      for (const sys of [0xec, 0xff, 0x10, 0x05]) machine.rootComplex.msi(0x20, 0xfee0_0000, sys);
      expect(machine.intc.spurious).toBe(spurious + 4);
      expect(kernel.irq.noHandler).toBe(1);
    });
  });
});

describe('vfio-pci reset and memory enable (vfio_pci_ioctl_reset, vfio_basic_config_write)', () => {
  it('RESET resets by FLR and zaps BAR mappings, which fault during it and work after; no method EINVAL', async () => {
    await onVfio(async ({ sys, machine }) => {
      const td = await open(sys, 'td');
      const bar0 = await sys.mmap(null, 4096, RW, MAP.SHARED, td, off(0));
      bar0.write32(4, 0x55);
      const dev = machine.pci.find('00:04.0')?.device as { resets: { flr: number } };
      const resets = dev.resets.flr;
      let during = '';
      const t = sys.thread(async (th) => {
        await th.nanosleep(1_000_000);
        try {
          bar0.read32(4);
          during = 'success';
        } catch (e) {
          during = (e as { code: string }).code;
        }
      });
      await sys.ioctl(td, VFIO.DEVICE_RESET);
      await t.done;
      expect(during).toBe('EFAULT');
      expect(dev.resets.flr).toBe(resets + 1);
      expect(bar0.read32(4)).toBe(0);
      expect(bar0.read32(0)).toBe(0x7e570001);
      // Memory off through Command: mappings zapped, read() EIO; on again: back.
      await cmd(sys, td, 0x0000);
      expect(() => bar0.read32(0)).toThrow(expect.objectContaining({ code: 'EFAULT' }) as Error);
      expect(await errnoOf(sys.pread(td, new Uint8Array(4), off(0)))).toBe('EIO');
      await cmd(sys, td, 0x0002);
      expect(bar0.read32(0)).toBe(0x7e570001);
      await sys.munmap(bar0.addr, bar0.length);
      await sys.close(td);
      const edu = await open(sys, 'edu');
      expect(await errnoOf(sys.ioctl(edu, VFIO.DEVICE_RESET))).toBe('EINVAL');
      await sys.close(edu);
    });
  });
});
