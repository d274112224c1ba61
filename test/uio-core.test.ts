import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fcOptions } from './fc.ts';
import { SysError } from '../kernel-shim/errno.ts';
import { createMachine, type Machine } from '../machine/index.ts';
import { bootKernel, type Kernel } from '../kernel-shim/kernel.ts';
import type { Device } from '../kernel-shim/base/device.ts';
import { E } from '../kernel-shim/errno.ts';
import { IRQ_HANDLED, IRQ_NONE, IRQF } from '../kernel-shim/irq.ts';
import type { PollFd, Sys } from '../kernel-shim/task/sys.ts';
import { MAP, O, PAGE_SIZE, POLL, PROT } from '../kernel-shim/uapi/linux.ts';
import {
  allocKernelPages, freeKernelPages, UIO_IRQ_CUSTOM, UIO_IRQ_NONE, UIO_MEM, UIO_PORT, UioDevice, uioEventNotify,
  uioRegisterDevice, uioUnregisterDevice, type KernelPages, type UioInfo,
} from '../kernel-shim/uio/index.ts';

const EDU_ID = 0x0100_00ed;
const REG = { ID: 0x00, FACTORIAL: 0x08, STATUS: 0x20, IRQ_STATUS: 0x24, IRQ_ACK: 0x64 } as const;
const STATUS_IRQ_FACT = 0x80;
const decoder = new TextDecoder();

interface Calls {
  open: number;
  release: number;
  handled: number;
  unhandled: number;
  irqcontrol: number[];
}

/** A booted machine with an edu at 00:03.0 and a tiny in-kernel driver exposing it through UIO. */
function boot() {
  const machine: Machine = createMachine({ memory: { size: '64MiB' }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } });
  const kernel: Kernel = bootKernel(machine);
  const slot = machine.pci.find('00:03.0');
  if (slot === undefined) throw new Error('no edu');
  const bar0 = machine.pci.bars.find((b) => b.bdf === slot.bdf && b.bar === 0);
  if (bar0 === undefined) throw new Error('no BAR0');
  const line = slot.intxLine;
  kernel.irq.intxDesc(line);
  const parent: Device = { name: '0000:00:03.0', sysfsPath: '/sys/devices/pci0000:00/0000:00:03.0', parent: undefined };
  kernel.vfs.mkdirp(parent.sysfsPath);
  const calls: Calls = { open: 0, release: 0, handled: 0, unhandled: 0, irqcontrol: [] };
  const info: UioInfo = {
    name: 'edu-uio',
    version: '0.0.1',
    mem: [{ name: 'edu-bar0', addr: BigInt(bar0.base), size: bar0.size, memtype: UIO_MEM.PHYS }],
    irq: line,
    irqFlags: IRQF.SHARED,
    handler: () => {
      const st = machine.mmio.read32(bar0.base + REG.IRQ_STATUS);
      if (st === 0) {
        calls.unhandled++;
        return IRQ_NONE;
      }
      machine.mmio.write32(bar0.base + REG.IRQ_ACK, st);
      calls.handled++;
      return IRQ_HANDLED;
    },
    open: () => (calls.open++, 0),
    release: () => (calls.release++, 0),
  };
  const idev = uioRegisterDevice(kernel, parent, info);
  if (!(idev instanceof UioDevice)) throw new Error(`register: ${idev}`);
  /** Runs processes to completion; returns their exit statuses. */
  const run = async (...mains: ((sys: Sys) => Promise<unknown>)[]): Promise<number[]> => {
    const procs = mains.map((m, i) => kernel.spawn({ comm: `t${i}` }, m));
    await machine.sim.run();
    return Promise.all(procs.map((p) => p.exited));
  };
  return { machine, kernel, slot, bar0, line, parent, calls, info, idev, run };
}

async function cat(sys: Sys, path: string): Promise<string> {
  const fd = await sys.open(path, O.RDONLY);
  const b = new Uint8Array(4096);
  const n = await sys.read(fd, b);
  await sys.close(fd);
  return decoder.decode(b.subarray(0, n));
}

function s32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
}

function count(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset).getInt32(0, true);
}

const pa = (v: number): string => `0x${v.toString(16).padStart(16, '0')}\n`;

describe('UIO core: registration and sysfs', () => {
  it('lays out /dev/uio0 and /sys/class/uio/uio0 as Linux does', async () => {
    const { kernel, bar0, parent, run } = boot();
    const dev = kernel.vfs.lookup('/dev/uio0', undefined);
    expect(typeof dev).not.toBe('number');
    if (typeof dev !== 'number' && dev.inode.kind === 'file') {
      expect(dev.inode.fileKind).toBe('chr');
      expect(dev.inode.mode).toBe(0o600);
      expect(dev.inode.uid).toBe(0);
      expect(dev.inode.rdev).toEqual({ major: 243, minor: 0 });
    }
    const status = await run(async (sys) => {
      expect(await sys.readlink('/sys/class/uio/uio0')).toBe('../../devices/pci0000:00/0000:00:03.0/uio/uio0');
      const d = `${parent.sysfsPath}/uio/uio0`;
      expect(await sys.readlink(`${d}/device`)).toBe('../../../0000:00:03.0');
      expect(await sys.readlink(`${d}/subsystem`)).toBe('../../../../../class/uio');
      expect(await cat(sys, '/sys/class/uio/uio0/name')).toBe('edu-uio\n');
      expect(await cat(sys, '/sys/class/uio/uio0/version')).toBe('0.0.1\n');
      expect(await cat(sys, '/sys/class/uio/uio0/event')).toBe('0\n');
      expect(await cat(sys, '/sys/class/uio/uio0/dev')).toBe('243:0\n');
      expect(await sys.readdir('/sys/class/uio/uio0/maps')).toEqual(['map0']);
      expect(await cat(sys, '/sys/class/uio/uio0/maps/map0/name')).toBe('edu-bar0\n');
      expect(await cat(sys, '/sys/class/uio/uio0/maps/map0/addr')).toBe(pa(bar0.base));
      expect(await cat(sys, '/sys/class/uio/uio0/maps/map0/size')).toBe(pa(bar0.size));
      expect(await cat(sys, '/sys/class/uio/uio0/maps/map0/offset')).toBe('0x0\n');
      // The device link reaches the parent's directory.
      expect(await sys.readdir('/sys/class/uio/uio0/device/uio')).toEqual(['uio0']);
      // No portio regions: no portio directory.
      await expect(sys.readdir('/sys/class/uio/uio0/portio')).rejects.toMatchObject({ code: 'ENOENT' });
      return 0;
    });
    expect(status).toEqual([0]);
  });

  it('lists maps up to the first of size 0, prints offsets and port regions, and reuses the lowest free minor', async () => {
    const { kernel, parent, info, run } = boot();
    const second: UioInfo = {
      name: 'second', version: '2',
      mem: [
        { addr: 0xfe00_0000n, offs: 0x80, size: 0x1000, memtype: UIO_MEM.PHYS },
        { name: 'later', addr: 0xfe00_1000n, size: 0x2000, memtype: UIO_MEM.PHYS },
        { addr: 0, size: 0, memtype: UIO_MEM.NONE },
        { name: 'hidden', addr: 0xfe00_4000n, size: 0x1000, memtype: UIO_MEM.PHYS },
      ],
      port: [{ name: 'ioports', start: 0xc000, size: 0x20, porttype: UIO_PORT.X86 }],
      irq: UIO_IRQ_NONE,
    };
    const d1 = uioRegisterDevice(kernel, parent, second) as UioDevice;
    expect(d1.name).toBe('uio1');
    await run(async (sys) => {
      expect(await sys.readdir('/sys/class/uio')).toEqual(['uio0', 'uio1']);
      expect(await sys.readdir('/sys/class/uio/uio1/maps')).toEqual(['map0', 'map1']);
      expect(await cat(sys, '/sys/class/uio/uio1/maps/map0/name')).toBe('\n');
      expect(await cat(sys, '/sys/class/uio/uio1/maps/map0/offset')).toBe('0x80\n');
      expect(await cat(sys, '/sys/class/uio/uio1/maps/map1/addr')).toBe('0x00000000fe001000\n');
      expect(await cat(sys, '/sys/class/uio/uio1/maps/map1/size')).toBe('0x0000000000002000\n');
      expect(await cat(sys, '/sys/class/uio/uio1/portio/port0/name')).toBe('ioports\n');
      expect(await cat(sys, '/sys/class/uio/uio1/portio/port0/start')).toBe('0xc000\n');
      expect(await cat(sys, '/sys/class/uio/uio1/portio/port0/size')).toBe('0x20\n');
      expect(await cat(sys, '/sys/class/uio/uio1/portio/port0/porttype')).toBe('port_x86\n');
    });
    uioUnregisterDevice(info);
    expect(kernel.vfs.exists('/dev/uio0')).toBe(false);
    expect(kernel.vfs.exists('/sys/class/uio/uio0')).toBe(false);
    const again = uioRegisterDevice(kernel, parent, { name: 'third', version: '3', irq: UIO_IRQ_NONE }) as UioDevice;
    expect(again.name).toBe('uio0');
    expect(kernel.vfs.exists('/dev/uio0')).toBe(true);
  });

  it('refuses bad registrations and undoes everything when request_irq fails', () => {
    const { kernel, parent, line } = boot();
    expect(uioRegisterDevice(kernel, parent, { name: 'x', version: undefined as unknown as string, irq: 0 })).toBe(E.EINVAL);
    expect(uioRegisterDevice(kernel, parent, { name: 'nohandler', version: '1', irq: line })).toBe(E.EINVAL);
    // The edu's line is taken with IRQF_SHARED; a non-shared request is EBUSY.
    expect(uioRegisterDevice(kernel, parent, { name: 'busy', version: '1', irq: line, handler: () => IRQ_NONE })).toBe(E.EBUSY);
    // An irq without a descriptor.
    expect(uioRegisterDevice(kernel, parent, { name: 'nodesc', version: '1', irq: 200, handler: () => IRQ_NONE })).toBe(E.EINVAL);
    expect(kernel.vfs.exists('/dev/uio1')).toBe(false);
    expect(kernel.vfs.exists('/sys/class/uio/uio1')).toBe(false);
    expect(kernel.vfs.exists('/sys/devices/pci0000:00/0000:00:03.0/uio/uio1')).toBe(false);
    expect(kernel.irq.desc(line)?.actions.length).toBe(1);
  });

  it('lets only root open /dev/uio0 (mode 0600)', async () => {
    const { kernel, machine } = boot();
    const p = kernel.spawn({ comm: 'user', uid: 1000 }, async (sys) => {
      await expect(sys.open('/dev/uio0', O.RDWR)).rejects.toMatchObject({ code: 'EACCES' });
    });
    await machine.sim.run();
    expect(await p.exited).toBe(0);
  });
});

describe('UIO core: read, write and poll', () => {
  it('checks read and write arguments in uio.c order', async () => {
    const { kernel, parent, run, calls } = boot();
    const noIrq: UioInfo = { name: 'noirq', version: '1', irq: UIO_IRQ_NONE, irqcontrol: (_i, v) => (calls.irqcontrol.push(v), 0) };
    uioRegisterDevice(kernel, parent, noIrq);
    const custom: UioInfo = {
      name: 'custom', version: '1', irq: UIO_IRQ_CUSTOM,
      irqcontrol: (_i, v) => (calls.irqcontrol.push(v), v === 7 ? E.EBUSY : 0),
    };
    uioRegisterDevice(kernel, parent, custom);
    await run(async (sys) => {
      const a = await sys.open('/dev/uio0', O.RDWR);
      const b = await sys.open('/dev/uio1', O.RDWR);
      const c = await sys.open('/dev/uio2', O.RDWR);
      const bad = { addr: 0x1000, length: 4 };
      // read: the size comes first, even without an irq.
      await expect(sys.read(a, new Uint8Array(8))).rejects.toMatchObject({ code: 'EINVAL', syscall: 'read' });
      await expect(sys.read(b, new Uint8Array(3))).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(sys.read(b, new Uint8Array(4))).rejects.toMatchObject({ code: 'EIO' });
      // write: size, then the copy, then irq, then irqcontrol.
      await expect(sys.write(b, new Uint8Array(8))).rejects.toMatchObject({ code: 'EINVAL', syscall: 'write' });
      await expect(sys.write(b, bad)).rejects.toMatchObject({ code: 'EFAULT' });
      await expect(sys.write(b, s32(1))).rejects.toMatchObject({ code: 'EIO' });
      await expect(sys.write(a, bad)).rejects.toMatchObject({ code: 'EFAULT' });
      await expect(sys.write(a, s32(1))).rejects.toMatchObject({ code: 'ENOSYS', errno: 38 });
      expect(await sys.write(c, s32(1))).toBe(4);
      expect(await sys.write(c, s32(-1))).toBe(4);
      await expect(sys.write(c, s32(7))).rejects.toMatchObject({ code: 'EBUSY' });
      // poll: no irq is POLLERR (uio.c returns -EIO as the mask); nothing pending is 0.
      const fds: PollFd[] = [{ fd: a, events: POLL.IN }, { fd: b, events: POLL.IN }, { fd: c, events: POLL.IN }];
      expect(await sys.poll(fds, 0)).toBe(1);
      expect(fds[0]?.revents).toBe(0);
      // -EIO as a mask keeps the asked-for POLLIN and adds POLLERR | POLLHUP, as Linux's do_pollfd filter does.
      expect(fds[1]?.revents).toBe(POLL.IN | POLL.ERR | POLL.HUP);
      expect(fds[2]?.revents).toBe(0);
      // A custom-irq device counts what the driver notifies.
      uioEventNotify(custom);
      expect(await sys.poll(fds, 0)).toBe(2);
      expect(fds[2]?.revents).toBe(POLL.IN);
      const r = new Uint8Array(4);
      expect(await sys.read(c, r)).toBe(4);
      expect(count(r)).toBe(1);
      // The position stays 0 (noop_llseek).
      expect(await sys.lseek(c, 0, 1)).toBe(0);
      for (const fd of [a, b, c]) await sys.close(fd);
    });
    expect(calls.irqcontrol).toEqual([1, -1, 7]);
    expect(calls.open).toBe(1);
    expect(calls.release).toBe(1);
  });

  it('blocks a read until the edu factorial interrupt, with a baseline per open', async () => {
    const { run, calls, bar0, machine } = boot();
    let woke = -1;
    const [status] = await run(async (sys) => {
      const a = await sys.open('/dev/uio0', O.RDWR);
      const m = await sys.mmap(null, PAGE_SIZE, PROT.READ | PROT.WRITE, MAP.SHARED, a, 0);
      expect(m.read32(REG.ID)).toBe(EDU_ID);
      expect(m.bytes).toBeUndefined();
      m.write32(REG.STATUS, STATUS_IRQ_FACT);
      m.write32(REG.FACTORIAL, 5);
      const started = await sys.clock_gettime();
      const r = new Uint8Array(4);
      expect(await sys.read(a, r)).toBe(4);
      woke = (await sys.clock_gettime()) - started;
      expect(count(r)).toBe(1);
      expect(m.read32(REG.FACTORIAL)).toBe(120);
      expect(m.read32(REG.IRQ_STATUS)).toBe(0);
      expect(await cat(sys, '/sys/class/uio/uio0/event')).toBe('1\n');
      // A later open starts from the count at its open.
      const b = await sys.open('/dev/uio0', O.RDWR | O.NONBLOCK);
      await expect(sys.read(b, r)).rejects.toMatchObject({ code: 'EAGAIN', errno: 11 });
      const fds: PollFd[] = [{ fd: a, events: POLL.IN | POLL.RDNORM }, { fd: b, events: POLL.IN | POLL.RDNORM }];
      expect(await sys.poll(fds, 0)).toBe(0);
      m.write32(REG.FACTORIAL, 4);
      expect(await sys.poll(fds, -1)).toBe(2);
      expect(fds.map((f) => f.revents)).toEqual([POLL.IN | POLL.RDNORM, POLL.IN | POLL.RDNORM]);
      // Both see the cumulative count, not the difference.
      expect(await sys.read(b, r)).toBe(4);
      expect(count(r)).toBe(2);
      expect(await sys.read(a, r)).toBe(4);
      expect(count(r)).toBe(2);
      await expect(sys.read(b, r)).rejects.toMatchObject({ code: 'EAGAIN' });
      return 0;
    });
    expect(status).toBe(0);
    expect(woke).toBeGreaterThan(0);
    expect(calls.handled).toBe(2);
    expect(machine.mmio.read32(bar0.base + REG.IRQ_STATUS)).toBe(0);
    expect(calls.open).toBe(2);
    expect(calls.release).toBe(2);
  });

  it('keeps the baseline when the copy to user space faults', async () => {
    const { run } = boot();
    await run(async (sys) => {
      const fd = await sys.open('/dev/uio0', O.RDWR | O.NONBLOCK);
      const m = await sys.mmap(null, PAGE_SIZE, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0);
      m.write32(REG.STATUS, STATUS_IRQ_FACT);
      m.write32(REG.FACTORIAL, 3);
      expect(await sys.poll([{ fd, events: POLL.IN }], -1)).toBe(1);
      await expect(sys.read(fd, { addr: 0x10, length: 4 })).rejects.toMatchObject({ code: 'EFAULT', syscall: 'read' });
      const r = new Uint8Array(4);
      expect(await sys.read(fd, r)).toBe(4);
      expect(count(r)).toBe(1);
      await expect(sys.read(fd, r)).rejects.toMatchObject({ code: 'EAGAIN' });
    });
  });

  it('ends a read blocked in a killed process, closing its file', async () => {
    const { kernel, machine, calls } = boot();
    let reached = false;
    const blocked = kernel.spawn({ comm: 'reader' }, async (sys) => {
      const fd = await sys.open('/dev/uio0', O.RDONLY);
      await sys.read(fd, new Uint8Array(4));
      reached = true;
    });
    const killer = kernel.spawn({ comm: 'killer' }, async (sys) => {
      await sys.nanosleep(10_000);
      await sys.kill(blocked.pid, 9);
    });
    await machine.sim.run();
    expect(await blocked.exited).toBe(137);
    expect(await killer.exited).toBe(0);
    expect(reached).toBe(false);
    expect(calls.release).toBe(1);
  });

  it('names the blocking read in a deadlock report', async () => {
    const { kernel, machine } = boot();
    kernel.spawn({ comm: 'stuck' }, async (sys) => {
      const fd = await sys.open('/dev/uio0', O.RDONLY);
      expect(fd).toBe(0);
      await sys.read(fd, new Uint8Array(4));
    });
    await expect(machine.sim.run()).rejects.toThrow('stuck[100]: blocked in read(fd 0) on /dev/uio0');
  });
});

describe('UIO core: interrupts and driver hooks', () => {
  it('counts an event only on IRQ_HANDLED, with two devices sharing the INTx line', async () => {
    const { kernel, parent, line, run } = boot();
    let asked = 0;
    const other: UioInfo = { name: 'other', version: '1', irq: line, irqFlags: IRQF.SHARED, handler: () => (asked++, IRQ_NONE) };
    const d1 = uioRegisterDevice(kernel, parent, other) as UioDevice;
    expect(kernel.irq.desc(line)?.actions.length).toBe(2);
    await run(async (sys) => {
      const fd = await sys.open('/dev/uio0', O.RDWR);
      const m = await sys.mmap(null, PAGE_SIZE, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0);
      // IRQ_RAISE (0x60) raises the interrupt at once.
      m.write32(0x60, 0x1);
      expect(await sys.read(fd, new Uint8Array(4))).toBe(4);
      expect(await cat(sys, '/sys/class/uio/uio0/event')).toBe('1\n');
      expect(await cat(sys, '/sys/class/uio/uio1/event')).toBe('0\n');
      expect(m.read32(REG.IRQ_STATUS)).toBe(0);
    });
    expect(asked).toBeGreaterThan(0);
    expect(d1.event).toBe(0);
  });

  it('fails the open when info.open refuses, without calling release', async () => {
    const { kernel, parent, run } = boot();
    let opens = 0;
    let releases = 0;
    const excl: UioInfo = {
      name: 'excl', version: '1', irq: UIO_IRQ_NONE,
      open: () => (opens++ === 0 ? 0 : E.EBUSY),
      release: () => (releases++, 0),
    };
    uioRegisterDevice(kernel, parent, excl);
    await run(async (sys) => {
      const fd = await sys.open('/dev/uio1', O.RDWR);
      await expect(sys.open('/dev/uio1', O.RDWR)).rejects.toMatchObject({ code: 'EBUSY', syscall: 'open' });
      const dup = await sys.dup(fd);
      await sys.close(fd);
      expect(releases).toBe(0);
      await sys.close(dup);
      expect(releases).toBe(1);
    });
    expect(opens).toBe(2);
  });
});

describe('UIO core: mmap', () => {
  function withMaps() {
    const b = boot();
    const pages = allocKernelPages(b.kernel, 2 * PAGE_SIZE) as KernelPages;
    const info: UioInfo = {
      name: 'maps', version: '1', irq: UIO_IRQ_NONE,
      mem: [
        { addr: b.bar0.base, size: b.bar0.size, memtype: UIO_MEM.PHYS },
        { addr: b.bar0.base + 0x10, size: PAGE_SIZE, memtype: UIO_MEM.PHYS },
        { addr: b.bar0.base, size: 0x100, memtype: UIO_MEM.PHYS },
        { addr: 0x1000, size: PAGE_SIZE, memtype: UIO_MEM.NONE },
        { addr: 0xffff_c900_0000_0000n, size: 2 * PAGE_SIZE, memtype: UIO_MEM.VIRTUAL, pages },
      ],
    };
    uioRegisterDevice(b.kernel, b.parent, info);
    return { ...b, pages, maps: info };
  }

  it('checks the map index, the size and the alignment in uio.c order', async () => {
    const { run, bar0, kernel, parent } = withMaps();
    uioRegisterDevice(kernel, parent, { name: 'gap', version: '1', irq: 0, mem: [{ addr: bar0.base, size: PAGE_SIZE, memtype: UIO_MEM.PHYS }, { addr: 0, size: 0, memtype: UIO_MEM.PHYS }] });
    await run(async (sys) => {
      const fd = await sys.open('/dev/uio1', O.RDWR);
      const gap = await sys.open('/dev/uio2', O.RDWR);
      const mmap = (f: number, len: number, n: number) => sys.mmap(null, len, PROT.READ | PROT.WRITE, MAP.SHARED, f, n * PAGE_SIZE);
      await expect(mmap(fd, PAGE_SIZE, 5)).rejects.toMatchObject({ code: 'EINVAL', syscall: 'mmap' });
      await expect(mmap(fd, PAGE_SIZE, 9)).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(mmap(gap, PAGE_SIZE, 1)).rejects.toMatchObject({ code: 'EINVAL' });
      // More pages than the map covers.
      await expect(mmap(fd, bar0.size + PAGE_SIZE, 0)).rejects.toMatchObject({ code: 'EINVAL' });
      // Map 1 starts 0x10 into a page: it covers two pages, so three are too many (EINVAL) and one is misaligned (ENODEV).
      await expect(mmap(fd, 3 * PAGE_SIZE, 1)).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(mmap(fd, PAGE_SIZE, 1)).rejects.toMatchObject({ code: 'ENODEV', errno: 19 });
      // Map 2 is smaller than a page: uio_mmap_physical refuses a mapping longer than the size.
      await expect(mmap(fd, PAGE_SIZE, 2)).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(mmap(fd, PAGE_SIZE, 3)).rejects.toMatchObject({ code: 'EINVAL' });
      const bar = await mmap(fd, bar0.size, 0);
      expect(bar.read32(REG.ID)).toBe(EDU_ID);
      expect(bar.length).toBe(bar0.size);
      const small = await mmap(gap, PAGE_SIZE, 0);
      expect(small.read32(REG.ID)).toBe(EDU_ID);
      // The file is no longer open through an fd, but the mapping keeps working.
      await sys.close(fd);
      expect(bar.read32(REG.ID)).toBe(EDU_ID);
    });
  });

  it('maps kernel pages of a VIRTUAL region as RAM shared with the kernel', async () => {
    const { run, pages, kernel } = withMaps();
    const kview = new Uint8Array(pages.buffer);
    kview[PAGE_SIZE + 5] = 0xab;
    await run(async (sys) => {
      const fd = await sys.open('/dev/uio1', O.RDWR);
      const m = await sys.mmap(null, 2 * PAGE_SIZE, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 4 * PAGE_SIZE);
      expect(m.read8(PAGE_SIZE + 5)).toBe(0xab);
      m.write32(8, 0x1234_5678);
      expect(new DataView(pages.buffer).getUint32(8, true)).toBe(0x1234_5678);
      expect(m.bytes?.length).toBe(2 * PAGE_SIZE);
      await expect(sys.mmap(null, 3 * PAGE_SIZE, PROT.READ, MAP.SHARED, fd, 4 * PAGE_SIZE)).rejects.toMatchObject({ code: 'EINVAL' });
      // The kernel frees its buffer; the mapping holds its own page references.
      freeKernelPages(kernel, pages);
      expect(m.read32(8)).toBe(0x1234_5678);
      await sys.munmap(m.addr, m.length);
      await sys.close(fd);
    });
    expect(kernel.userPages.live).toBe(0);
  });
});

describe('UIO core: unregister while open', () => {
  it('wakes the blocked reader with EIO and turns every call on the old file into uio.c errors', async () => {
    const { run, info, kernel, parent, calls, line } = boot();
    await run(async (sys) => {
      const fd = await sys.open('/dev/uio0', O.RDWR);
      const attr = await sys.open('/sys/class/uio/uio0/name', O.RDONLY);
      const m = await sys.mmap(null, PAGE_SIZE, PROT.READ, MAP.SHARED, fd, 0);
      let readerSaw = '';
      sys.thread(async (t) => {
        readerSaw = await t.read(fd, new Uint8Array(4)).then(String, (e: { code: string }) => e.code);
      });
      await sys.nanosleep(5_000);
      expect(readerSaw).toBe('');
      uioUnregisterDevice(info);
      await sys.nanosleep(5_000);
      expect(readerSaw).toBe('EIO');
      expect(kernel.irq.desc(line)?.actions.length).toBe(0);
      await expect(sys.read(fd, new Uint8Array(8))).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(sys.read(fd, new Uint8Array(4))).rejects.toMatchObject({ code: 'EIO' });
      await expect(sys.write(fd, s32(1))).rejects.toMatchObject({ code: 'EINVAL' });
      const fds: PollFd[] = [{ fd, events: POLL.IN }];
      expect(await sys.poll(fds, 0)).toBe(1);
      expect((fds[0]?.revents ?? 0) & POLL.ERR).toBe(POLL.ERR);
      await expect(sys.mmap(null, PAGE_SIZE, PROT.READ, MAP.SHARED, fd, 0)).rejects.toMatchObject({ code: 'EINVAL' });
      // The old BAR mapping stays (a PFN mapping outlives the device).
      expect(m.read32(REG.ID)).toBe(EDU_ID);
      // An attribute opened before reads ENODEV: kernfs refuses a removed node.
      await expect(sys.read(attr, new Uint8Array(64))).rejects.toMatchObject({ code: 'ENODEV' });
      await expect(sys.open('/dev/uio0', O.RDWR)).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(sys.readdir('/sys/class/uio')).resolves.toEqual([]);
      expect(await sys.readdir('/sys/devices/pci0000:00/0000:00:03.0')).not.toContain('uio');
      await sys.close(fd);
      await sys.munmap(m.addr, m.length);
      // The minor is free again while nothing of the old device is left.
      const d = uioRegisterDevice(kernel, parent, { name: 'next', version: '1', irq: UIO_IRQ_NONE }) as UioDevice;
      expect(d.name).toBe('uio0');
      expect(await cat(sys, '/sys/class/uio/uio0/name')).toBe('next\n');
    });
    // release was not called: the device was gone when the last reference dropped.
    expect(calls.release).toBe(0);
    expect(calls.open).toBe(1);
  });
});

describe('UIO core: random syscall sequences', () => {
  type Op =
    | { k: 'read'; fd: number; len: number; bad: boolean }
    | { k: 'write'; fd: number; len: number; v: number; bad: boolean }
    | { k: 'poll'; fd: number }
    | { k: 'mmap'; fd: number; pages: number; map: number; write: boolean }
    | { k: 'munmap'; i: number }
    | { k: 'irq' }
    | { k: 'open' }
    | { k: 'close'; fd: number }
    | { k: 'unregister' };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ k: fc.constant('read' as const), fd: fc.nat(3), len: fc.constantFrom(0, 3, 4, 5, 8), bad: fc.boolean() }),
    fc.record({ k: fc.constant('write' as const), fd: fc.nat(3), len: fc.constantFrom(0, 4, 8), v: fc.integer(), bad: fc.boolean() }),
    fc.record({ k: fc.constant('poll' as const), fd: fc.nat(3) }),
    fc.record({ k: fc.constant('mmap' as const), fd: fc.nat(3), pages: fc.integer({ min: 1, max: 3 }), map: fc.nat(6), write: fc.boolean() }),
    fc.record({ k: fc.constant('munmap' as const), i: fc.nat(4) }),
    fc.constant({ k: 'irq' as const }),
    fc.constant({ k: 'open' as const }),
    fc.record({ k: fc.constant('close' as const), fd: fc.nat(3) }),
    fc.constant({ k: 'unregister' as const }),
  );

  it('never throws anything but SysError and leaks no pages, fds or mappings', async () => {
    await fc.assert(fc.asyncProperty(fc.array(op, { maxLength: 30 }), async (ops) => {
      const b = boot();
      const pages = allocKernelPages(b.kernel, PAGE_SIZE) as KernelPages;
      b.info.mem?.push({ addr: 0xffff_c900_0000_0000n, size: PAGE_SIZE, memtype: UIO_MEM.VIRTUAL, pages });
      // Re-register so that the added map is visible (the info is read at registration for sysfs).
      uioUnregisterDevice(b.info);
      expect(uioRegisterDevice(b.kernel, b.parent, b.info)).toBeInstanceOf(UioDevice);
      let other: unknown;
      const [status] = await b.run(async (sys) => {
        const fds: number[] = [await sys.open('/dev/uio0', O.RDWR | O.NONBLOCK)];
        const maps: { addr: bigint; length: number }[] = [];
        for (const o of ops) {
          const fd = fds[('fd' in o ? o.fd : 0) % Math.max(1, fds.length)] ?? 99;
          try {
            if (o.k === 'read') await sys.read(fd, o.bad ? { addr: 0x10, length: o.len } : new Uint8Array(o.len));
            else if (o.k === 'write') await sys.write(fd, o.bad ? { addr: 0x10, length: o.len } : s32(o.v), o.len);
            else if (o.k === 'poll') await sys.poll([{ fd, events: POLL.IN }], 0);
            else if (o.k === 'mmap') {
              const m = await sys.mmap(null, o.pages * PAGE_SIZE, PROT.READ | (o.write ? PROT.WRITE : 0), MAP.SHARED, fd, o.map * PAGE_SIZE);
              maps.push(m);
              m.read32(0);
            } else if (o.k === 'munmap') {
              const m = maps.splice(o.i % Math.max(1, maps.length), 1)[0];
              if (m !== undefined) await sys.munmap(m.addr, m.length);
            } else if (o.k === 'irq') b.machine.mmio.write32(b.bar0.base + 0x60, 1);
            else if (o.k === 'open') fds.push(await sys.open('/dev/uio0', O.RDWR | O.NONBLOCK));
            else if (o.k === 'close') {
              fds.splice(fds.indexOf(fd), 1);
              await sys.close(fd);
            } else uioUnregisterDevice(b.info);
          } catch (e) {
            if (!(e instanceof SysError)) other = e;
          }
        }
        for (const m of maps) await sys.munmap(m.addr, m.length);
        for (const fd of fds) await sys.close(fd).catch(() => undefined);
        return 0;
      });
      expect(other).toBeUndefined();
      expect(status).toBe(0);
      expect(b.calls.open).toBeGreaterThanOrEqual(b.calls.release);
      uioUnregisterDevice(b.info);
      freeKernelPages(b.kernel, pages);
      expect(b.kernel.userPages.live).toBe(0);
    }), fcOptions(40));
  });
});
