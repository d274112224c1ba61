/**
 * What separates processes: an unprivileged process (uid 1000, no capabilities) cannot open root-only
 * nodes, cannot reach another process's memory, and sees no frame numbers in its own pagemap.
 */
import { describe, expect, it } from 'vitest';
import { createMachine } from '../machine/index.ts';
import { bootKernel, type Kernel } from '../kernel-shim/kernel.ts';
import { SysError } from '../kernel-shim/errno.ts';
import { errnoOf } from './sys-errno.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import type { SpawnOptions } from '../kernel-shim/task/task.ts';
import { MAP, O, PROT } from '../kernel-shim/uapi/linux.ts';

const PAGE = 4096;
const RW = PROT.READ | PROT.WRITE;
const ANON = MAP.PRIVATE | MAP.ANONYMOUS;
const EDU = '/sys/bus/pci/devices/0000:00:03.0';
const PM_PRESENT = 1n << 63n;
const PFN_MASK = (1n << 55n) - 1n;

function boot(): Kernel {
  const machine = createMachine({ memory: { size: 64 << 20 }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } });
  return bootKernel(machine, { testDevice: true });
}

/** Runs every spawned process to its end; a crash (including a failed expect) fails the test. */
async function runAll(kernel: Kernel, procs: { opts: SpawnOptions; main: (sys: Sys) => Promise<unknown> }[]): Promise<void> {
  const ps = procs.map((p) => kernel.spawn({ comm: 't', ...p.opts }, p.main));
  await kernel.sim.run();
  for (const p of ps) {
    if (p.error !== undefined) throw p.error;
    expect(await p.exited).toBe(0);
  }
}

/** The pagemap entry of the page at `addr`, read through `/proc/self/pagemap`. */
async function pagemap(sys: Sys, addr: bigint): Promise<bigint> {
  const fd = await sys.open('/proc/self/pagemap', O.RDONLY);
  const e = new Uint8Array(8);
  expect(await sys.pread(fd, e, Number(addr / 4096n) * 8)).toBe(8);
  await sys.close(fd);
  return new DataView(e.buffer).getBigUint64(0, true);
}

const user: SpawnOptions = { uid: 1000 };

describe('isolation', () => {
  it('an unprivileged process cannot open root-only nodes: EACCES (generic_permission)', async () => {
    const kernel = boot();
    await runAll(kernel, [{
      opts: user,
      main: async (sys) => {
        // resource<N> is 0600 root: neither mapping the BAR nor reading it
        expect(await errnoOf(sys.open(`${EDU}/resource0`, O.RDWR))).toBe('EACCES');
        expect(await errnoOf(sys.open(`${EDU}/resource0`, O.RDONLY))).toBe('EACCES');
        // config is 0644: readable, not writable
        expect(await errnoOf(sys.open(`${EDU}/config`, O.WRONLY))).toBe('EACCES');
        await sys.close(await sys.open(`${EDU}/config`, O.RDONLY));
        // driver_override and enable are root-writable only
        expect(await errnoOf(sys.open(`${EDU}/driver_override`, O.WRONLY))).toBe('EACCES');
        expect(await errnoOf(sys.open(`${EDU}/enable`, O.RDONLY))).toBe('EACCES');
        expect(await errnoOf(sys.open('/sys/bus/pci/drivers_probe', O.WRONLY))).toBe('EACCES');
        // the test device is 0666 by design
        await sys.close(await sys.open('/dev/dmasim-test', O.RDWR));
      },
    }, {
      opts: {},
      main: async (sys) => {
        // root opens them (CAP_DAC_OVERRIDE aside, it owns them)
        await sys.close(await sys.open(`${EDU}/resource0`, O.RDWR));
      },
    }]);
  });

  it("cannot reach another process's memory: its addresses fault with EFAULT in the caller's own address space", async () => {
    const kernel = boot();
    let secretAt = 0n;
    await runAll(kernel, [{
      opts: { comm: 'owner' },
      main: async (sys) => {
        const m = await sys.mmap(null, 2 * PAGE, RW, ANON);
        m.write32(0, 0x5ec2e7);
        secretAt = m.addr;
        await sys.nanosleep(1e6);
        expect(m.read32(0)).toBe(0x5ec2e7);
      },
    }, {
      opts: { ...user, comm: 'snoop' },
      main: async (sys) => {
        await sys.nanosleep(1000);
        expect(secretAt).not.toBe(0n);
        expect(() => sys.mem.read32(secretAt)).toThrow(SysError);
        expect(() => sys.mem.write32(secretAt, 0)).toThrow(SysError);
        let code = '';
        try {
          sys.mem.readBytes(secretAt, 4);
        } catch (e) {
          code = (e as SysError).code;
        }
        expect(code).toBe('EFAULT');
        // a kernel copy from that address in this process: EFAULT too
        const mfd = await sys.memfd_create('m', 0);
        expect(await errnoOf(sys.write(mfd, { addr: secretAt, length: 4 }))).toBe('EFAULT');
        // and mapping the same address gives this process its own (zeroed) page
        const mine = await sys.mmap(secretAt, PAGE, RW, ANON | MAP.FIXED_NOREPLACE);
        expect(mine.addr).toBe(secretAt);
        expect(mine.read32(0)).toBe(0);
        mine.write32(0, 1);
      },
    }]);
  });

  it("cannot open another user's /proc/<pid>/pagemap, maps or fd (proc_mem_open: ptrace_may_access)", async () => {
    const kernel = boot();
    let rootPid = 0;
    let userPid = 0;
    await runAll(kernel, [{
      opts: { comm: 'root' },
      main: async (sys) => {
        rootPid = sys.pid;
        await sys.eventfd(0, 0);
        await sys.nanosleep(1e6);
        // root may look at the user's process
        await sys.close(await sys.open(`/proc/${userPid}/pagemap`, O.RDONLY));
        await sys.close(await sys.open(`/proc/${userPid}/maps`, O.RDONLY));
      },
    }, {
      opts: { ...user, comm: 'user' },
      main: async (sys) => {
        userPid = sys.pid;
        await sys.sched_yield();
        expect(await errnoOf(sys.open(`/proc/${rootPid}/pagemap`, O.RDONLY))).toBe('EACCES');
        expect(await errnoOf(sys.open(`/proc/${rootPid}/maps`, O.RDONLY))).toBe('EACCES');
        expect(await errnoOf(sys.readdir(`/proc/${rootPid}/fd`))).toBe('EACCES');
        expect(await errnoOf(sys.readlink(`/proc/${rootPid}/fd/0`))).toBe('EACCES');
        // status is world-readable on Linux too
        await sys.close(await sys.open(`/proc/${rootPid}/status`, O.RDONLY));
        await sys.close(await sys.open('/proc/self/maps', O.RDONLY));
        await sys.nanosleep(2e6);
      },
    }]);
  });

  it('/proc/self/pagemap: present pages show PFN 0 without CAP_SYS_ADMIN, the real frame with it (pagemap_read: show_pfn)', async () => {
    const kernel = boot();
    const frames: bigint[] = [];
    const check = (who: 'user' | 'admin') => async (sys: Sys): Promise<void> => {
      const m = await sys.mmap(null, PAGE, RW, ANON);
      const before = await pagemap(sys, m.addr);
      // not yet faulted in: not present, no frame for anyone
      expect(before & PM_PRESENT).toBe(0n);
      expect(before & PFN_MASK).toBe(0n);
      m.write32(0, 1);
      const e = await pagemap(sys, m.addr);
      expect(e & PM_PRESENT).toBe(PM_PRESENT);
      const pfn = e & PFN_MASK;
      if (who === 'user') expect(pfn).toBe(0n);
      else {
        expect(pfn).not.toBe(0n);
        frames.push(pfn);
      }
    };
    await runAll(kernel, [
      { opts: user, main: check('user') },
      { opts: { uid: 1000, caps: ['SYS_ADMIN'] }, main: check('admin') },
      { opts: {}, main: check('admin') },
    ]);
    // the two privileged readers saw different frames: their own pages
    expect(frames).toHaveLength(2);
    expect(frames[0]).not.toBe(frames[1]);
  });

  it('root sees the frame the kernel gave the page', async () => {
    const kernel = boot();
    await runAll(kernel, [{
      opts: {},
      main: async (sys) => {
        const m = await sys.mmap(null, PAGE, RW, ANON | MAP.POPULATE);
        const fd = await sys.open('/proc/self/pagemap', O.RDONLY);
        const e = new Uint8Array(8);
        await sys.pread(fd, e, Number(m.addr / 4096n) * 8);
        const v = new DataView(e.buffer).getBigUint64(0, true);
        expect(v & PM_PRESENT).toBe(PM_PRESENT);
        expect(v & PFN_MASK).toBe(BigInt(kernel.tasks.find((t) => t.pid === sys.pid)?.mm.presentFrame(Number(m.addr)) ?? -1));
      },
    }]);
  });
});
