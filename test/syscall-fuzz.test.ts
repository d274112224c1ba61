/**
 * Random syscall sequences with random arguments against a process on a booted kernel (with the test
 * device and a PCI function whose BAR sysfs maps): nothing but `SysError` may come out of a syscall or a
 * user-memory accessor, the kernel's pin and locked-page accounting must agree after every call, and once
 * the process is gone it must have left no fd, mapping, pin or frame behind. fast-check prints the seed
 * and the shrunk sequence on failure (`FC_SEED=<seed> npx vitest run test/syscall-fuzz.test.ts`).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createMachine } from '../machine/index.ts';
import { bootKernel, type Kernel } from '../kernel-shim/kernel.ts';
import { SysError } from '../kernel-shim/errno.ts';
import type { Mapping } from '../kernel-shim/mm/mapping.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import type { Task } from '../kernel-shim/task/task.ts';
import { testDevFile } from '../kernel-shim/testdev/index.ts';
import { DMASIM_TEST } from '../kernel-shim/uapi/testdev.ts';
import { CLOCK, EFD, F, MAP, MFD, O, PROT } from '../kernel-shim/uapi/linux.ts';
import { fcOptions } from './fc.ts';

const PAGE = 4096;
const TASK_SIZE = 0x7fff_ffff_f000;
const EDU = '/sys/bus/pci/devices/0000:00:03.0';

const PATHS = [
  '/dev/dmasim-test', '/proc/self/pagemap', '/proc/self/maps', '/proc/self/status', '/proc/self/comm', '/proc/self',
  `${EDU}/resource0`, `${EDU}/config`, `${EDU}/enable`, `${EDU}/driver_override`, `${EDU}/vendor`, '/dev', '/sys/bus/pci',
  '/nope', '', '/proc/self/fd', '/proc/self/fd/0', '/dev/dmasim-test/x', `/${'x'.repeat(300)}`,
];
const OPEN_FLAGS = [O.RDONLY, O.WRONLY, O.RDWR, 3, O.NONBLOCK, O.CREAT, O.EXCL, O.DIRECTORY, O.NOFOLLOW, O.CLOEXEC, O.APPEND, O.TRUNC, O.PATH];
const MAP_FLAGS = [MAP.SHARED, MAP.PRIVATE, MAP.SHARED_VALIDATE, MAP.FIXED, MAP.ANONYMOUS, MAP.LOCKED, MAP.POPULATE, MAP.FIXED_NOREPLACE, MAP.NORESERVE, MAP.HUGETLB, MAP.SYNC, MAP.GROWSDOWN];
const LENGTHS: readonly (number | bigint)[] = [
  0, 1, 7, 8, 9, 16, 24, 32, 100, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE, 3 * PAGE, 8 * PAGE, 64 * PAGE, 1 << 20,
  1 << 30, 2 ** 40, TASK_SIZE, 2 ** 53, -1, -PAGE, Number.NaN, 1.5, 2n ** 64n - 1n, 2n ** 64n, -1n, 2n ** 63n,
];
const WEIRD_FDS = [-1, 99, 1 << 20, 1.5, Number.NaN, 2 ** 31];
const IOCTLS: readonly number[] = [...Object.values(DMASIM_TEST), 0, 0xffff_ffff, 0x5451, 0x541b, 0xd5ff, 0x4018_d5ff];
const WEIRD_ADDRS: readonly (number | bigint)[] = [0, 1, 0x1000, 0x2000_0000, TASK_SIZE - PAGE, TASK_SIZE, 2 ** 47, 2 ** 53, -1, -PAGE, 2n ** 64n - 4096n, 2n ** 64n, -1n, Number.NaN];

/** Raw random choices of one step, resolved against the process's state when the step runs. */
interface Step {
  readonly op: number;
  readonly s: readonly number[];
  readonly big: bigint;
  readonly bytes: Uint8Array;
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  op: fc.nat({ max: 40 }),
  s: fc.array(fc.nat({ max: 0x7fff_ffff }), { minLength: 8, maxLength: 8 }),
  big: fc.bigInt({ min: -(2n ** 65n), max: 2n ** 65n }),
  bytes: fc.uint8Array({ maxLength: 48 }),
});

interface World {
  readonly fds: number[];
  readonly maps: Mapping[];
  readonly pid: number;
}

function pick<T>(xs: readonly T[], sel: number): T {
  return xs[sel % xs.length] as T;
}

function fd(w: World, sel: number): number {
  if (sel % 8 === 7 || w.fds.length === 0) return pick(WEIRD_FDS, sel >>> 3);
  return pick(w.fds, sel >>> 3);
}

/** A user address: usually inside or just around a mapping the process made, sometimes anything. */
function addr(w: World, sel: number, sel2: number): number | bigint {
  if (sel % 4 === 3 || w.maps.length === 0) return pick(WEIRD_ADDRS, sel >>> 2);
  const m = pick(w.maps, sel >>> 2);
  const off = sel2 % 3 === 0 ? 0 : sel2 % 3 === 1 ? (sel2 >>> 2) % (m.length + PAGE) : Math.floor(((sel2 >>> 2) % (m.length / PAGE + 1))) * PAGE;
  return Number(m.addr) + off - (sel2 % 7 === 0 ? PAGE : 0);
}

function len(sel: number): number | bigint {
  return pick(LENGTHS, sel);
}

function bits<T extends number>(xs: readonly T[], sel: number): number {
  let f = 0;
  for (let i = 0; i < xs.length; i++) if ((sel >>> i) & 1) f |= xs[i] as number;
  return f;
}

/** A user buffer: a program array, or an address in the process. */
function buf(w: World, st: Step): Uint8Array | { addr: number | bigint; length: number } {
  const [, , , , , , a, b] = st.s as [number, number, number, number, number, number, number, number];
  if (a % 3 === 0) return st.bytes.length > 0 ? st.bytes.slice() : new Uint8Array(a % 16);
  const l = len(b);
  return { addr: addr(w, a >>> 2, b), length: typeof l === 'number' && Number.isSafeInteger(l) && l >= 0 ? Math.min(l, 1 << 20) : 8 };
}

/** The object argument of a struct ioctl, with random field values (sometimes sensible ones). */
function ioctlObject(w: World, st: Step, req: number): object | undefined {
  const [, , , c, d, e] = st.s as [number, number, number, number, number, number];
  const argsz = pick([0, 4, 8, 16, 23, 24, 32, 40, 4096, 0xffff_ffff], c);
  const m = w.maps.length > 0 ? pick(w.maps, d) : undefined;
  switch (req) {
    case DMASIM_TEST.PIN:
    case DMASIM_TEST.UNPIN:
      return {
        argsz: c % 4 === 0 ? argsz : 24, flags: e % 5 === 0 ? e & 7 : req === DMASIM_TEST.PIN ? e & 1 : (e & 1) << 1,
        vaddr: m === undefined || d % 5 === 0 ? BigInt.asUintN(64, st.big) : m.addr + BigInt(PAGE * ((e >>> 3) % 4)),
        length: d % 6 === 0 ? BigInt.asUintN(64, st.big) : BigInt(PAGE * ((e >>> 5) % 5)),
      };
    case DMASIM_TEST.GET_INFO:
      return { argsz, flags: e % 3 === 0 ? e : 0, index: d % 7 };
    case DMASIM_TEST.SIZED:
      return { size: pick([0, 16, 24, 32, 40, 64], c), flags: e & 7, __reserved: d % 4 === 0 ? 1 : 0, in_value: d, out_value: 0n, out_extra: 0n };
    case DMASIM_TEST.XFORM:
      return { argsz, flags: e % 5 === 0 ? 1 : 0, count: e % 9, data: new Uint32Array(d % 6) };
    case DMASIM_TEST.SLEEP:
      return { argsz, flags: e % 7 === 0 ? 1 : 0, ns: BigInt(d % 5000) };
    default:
      return undefined;
  }
}

type Op = (sys: Sys, w: World, st: Step) => unknown;

const OPS: readonly Op[] = [
  async (sys, w, st) => w.fds.push(await sys.open(pick(PATHS, st.s[0] ?? 0), bits(OPEN_FLAGS, st.s[1] ?? 0))),
  (sys, w, st) => sys.close(fd(w, st.s[0] ?? 0)),
  (sys, w, st) => sys.read(fd(w, st.s[0] ?? 0), buf(w, st) as Uint8Array),
  (sys, w, st) => sys.write(fd(w, st.s[0] ?? 0), buf(w, st)),
  (sys, w, st) => sys.pread(fd(w, st.s[0] ?? 0), buf(w, st) as Uint8Array, len(st.s[1] ?? 0)),
  (sys, w, st) => sys.pwrite(fd(w, st.s[0] ?? 0), buf(w, st), len(st.s[1] ?? 0)),
  (sys, w, st) => sys.lseek(fd(w, st.s[0] ?? 0), (st.s[1] ?? 0) % 3 === 0 ? st.big : len(st.s[1] ?? 0), (st.s[2] ?? 0) % 6),
  async (sys, w, st) => {
    const [a, b, c, d, e, f] = st.s as [number, number, number, number, number, number];
    const anon = a % 3 !== 0;
    const flags = (anon ? MAP.ANONYMOUS : 0) | (b % 4 === 0 ? bits(MAP_FLAGS, c) : pick([MAP.SHARED, MAP.PRIVATE], c));
    const prot = d % 5 === 0 ? d & 0xff : d & 7;
    const off = e % 4 === 0 ? len(e >>> 2) : PAGE * ((e >>> 2) % 3);
    const where = b % 3 === 0 ? addr(w, f, e) : null;
    w.maps.push(await sys.mmap(where, len(f >>> 4), prot, flags, fd(w, a), off));
  },
  async (sys, w, st) => {
    const [a, b, c, d, e, f] = st.s as [number, number, number, number, number, number];
    const l = (c & 1) === 0 ? pick([PAGE, 2 * PAGE, 3 * PAGE, 8 * PAGE, 16 * PAGE], d) : len(d);
    const flags = MAP.ANONYMOUS | pick([MAP.PRIVATE, MAP.SHARED], e) | (f % 5 === 0 ? MAP.POPULATE : 0) | (f % 7 === 0 ? MAP.LOCKED : 0);
    w.maps.push(await sys.mmap((a & 1) === 0 ? null : addr(w, b, c), l, PROT.READ | PROT.WRITE, flags));
  },
  (sys, w, st) => sys.munmap(addr(w, st.s[0] ?? 0, st.s[1] ?? 0), (st.s[2] ?? 0) % 2 === 0 ? PAGE * ((st.s[3] ?? 0) % 4) : len(st.s[3] ?? 0)),
  (sys, w, st) => sys.mprotect(addr(w, st.s[0] ?? 0, st.s[1] ?? 0), (st.s[2] ?? 0) % 2 === 0 ? PAGE * ((st.s[3] ?? 0) % 4) : len(st.s[3] ?? 0), (st.s[4] ?? 0) % 4 === 0 ? st.s[4] ?? 0 : (st.s[4] ?? 0) & 7),
  (sys, w, st) => sys.mlock(addr(w, st.s[0] ?? 0, st.s[1] ?? 0), (st.s[2] ?? 0) % 2 === 0 ? PAGE * ((st.s[3] ?? 0) % 8) : len(st.s[3] ?? 0)),
  (sys, w, st) => sys.munlock(addr(w, st.s[0] ?? 0, st.s[1] ?? 0), (st.s[2] ?? 0) % 2 === 0 ? PAGE * ((st.s[3] ?? 0) % 8) : len(st.s[3] ?? 0)),
  // ioctl with a struct object (the sensible path: pins happen here)
  (sys, w, st) => {
    const req = pick([DMASIM_TEST.PIN, DMASIM_TEST.PIN, DMASIM_TEST.UNPIN, DMASIM_TEST.GET_INFO, DMASIM_TEST.SIZED, DMASIM_TEST.XFORM, DMASIM_TEST.SLEEP], st.s[1] ?? 0);
    return sys.ioctl(fd(w, st.s[0] ?? 0), req, ioctlObject(w, st, req) ?? 0);
  },
  // ioctl with a raw number / address argument (random bytes behind it)
  (sys, w, st) => {
    const a = addr(w, st.s[2] ?? 0, st.s[3] ?? 0);
    try {
      sys.mem.writeBytes(a, st.bytes);
    } catch (e) {
      if (!(e instanceof SysError)) throw e;
    }
    const arg = (st.s[4] ?? 0) % 3 === 0 ? st.big : a;
    return sys.ioctl(fd(w, st.s[0] ?? 0), pick(IOCTLS, st.s[1] ?? 0) + ((st.s[5] ?? 0) % 9 === 0 ? (st.s[5] ?? 0) : 0), arg);
  },
  (sys, w, st) => {
    const n = (st.s[0] ?? 0) % 5;
    const fds = Array.from({ length: n }, (_, i) => ({ fd: fd(w, st.s[i + 1] ?? 0), events: (st.s[i + 1] ?? 0) & 0xffff }));
    return sys.poll(fds, pick([0, 0, 1, 5, -1], st.s[7] ?? 0));
  },
  async (sys, w, st) => w.fds.push(await sys.eventfd((st.s[0] ?? 0) % 4 === 0 ? st.s[0] ?? 0 : (st.s[0] ?? 0) % 3, (st.s[1] ?? 0) % 5 === 0 ? st.s[1] ?? 0 : bits([EFD.NONBLOCK, EFD.SEMAPHORE, EFD.CLOEXEC], st.s[1] ?? 0))),
  async (sys, w, st) => w.fds.push(await sys.memfd_create(pick(['m', '', 'x'.repeat(250), 'a/b'], st.s[0] ?? 0), (st.s[1] ?? 0) % 5 === 0 ? st.s[1] ?? 0 : bits([MFD.CLOEXEC, MFD.ALLOW_SEALING, MFD.NOEXEC_SEAL, MFD.EXEC, MFD.HUGETLB], st.s[1] ?? 0))),
  (sys, w, st) => sys.ftruncate(fd(w, st.s[0] ?? 0), (st.s[1] ?? 0) % 3 === 0 ? st.big : len(st.s[1] ?? 0)),
  async (sys, w, st) => {
    const cmd = pick([F.DUPFD, F.DUPFD_CLOEXEC, F.GETFD, F.SETFD, F.GETFL, F.SETFL, F.ADD_SEALS, F.ADD_SEALS, F.GET_SEALS, 9999, -1], st.s[1] ?? 0);
    const arg = cmd === F.ADD_SEALS ? bits([F.SEAL_SEAL, F.SEAL_SHRINK, F.SEAL_GROW, F.SEAL_WRITE, F.SEAL_FUTURE_WRITE, F.SEAL_EXEC, 0x100], st.s[2] ?? 0) : (st.s[2] ?? 0) % 70000;
    const r = await sys.fcntl(fd(w, st.s[0] ?? 0), cmd, arg);
    if (cmd === F.DUPFD || cmd === F.DUPFD_CLOEXEC) w.fds.push(r);
  },
  async (sys, w, st) => w.fds.push(await sys.dup(fd(w, st.s[0] ?? 0))),
  async (sys, w, st) => w.fds.push(await sys.dup2(fd(w, st.s[0] ?? 0), (st.s[1] ?? 0) % 4 === 0 ? fd(w, st.s[2] ?? 0) : (st.s[1] ?? 0) % 40)),
  (sys, _w, st) => sys.readlink(pick(PATHS, st.s[0] ?? 0)),
  (sys, _w, st) => sys.readdir(pick(PATHS, st.s[0] ?? 0)),
  (sys, _w, st) => sys.nanosleep(pick([0, 1, 1000, -1, Number.NaN, 5n, Number.POSITIVE_INFINITY], st.s[0] ?? 0)),
  (sys, _w, st) => sys.clock_gettime(pick([CLOCK.MONOTONIC, CLOCK.REALTIME, CLOCK.BOOTTIME, 5, -1, 99], st.s[0] ?? 0)),
  (sys, w, st) => sys.kill(pick([w.pid, 99999, 0, -1, w.pid], st.s[0] ?? 0), pick([0, 0, 0, 65, -1, 1.5, 9, 15], st.s[1] ?? 0)),
  (sys) => sys.sched_yield(),
  // user-memory accessors
  (_sys, w, st) => {
    if (w.maps.length === 0) return;
    const m = pick(w.maps, st.s[0] ?? 0);
    const off = (st.s[1] ?? 0) % (m.length + 16) - ((st.s[2] ?? 0) % 5 === 0 ? 8 : 0);
    const k = (st.s[3] ?? 0) % 9;
    if (k === 0) return m.read32(off);
    if (k === 1) return m.write32(off, st.s[4] ?? 0);
    if (k === 2) return m.read8(off);
    if (k === 3) return m.write64(off, st.big);
    if (k === 4) return m.read64(BigInt(off));
    if (k === 5) return m.bytes?.[0];
    if (k === 6) return m.write16(off, st.s[4] ?? 0);
    if (k === 7) return m.bytes?.set(st.bytes.subarray(0, Math.min(st.bytes.length, m.bytes.length)));
    return m.read16(off);
  },
  (sys, w, st) => {
    const a = addr(w, st.s[0] ?? 0, st.s[1] ?? 0);
    const k = (st.s[2] ?? 0) % 4;
    if (k === 0) return sys.mem.read64(a);
    if (k === 1) return sys.mem.write32(a, st.s[3] ?? 0);
    if (k === 2) return sys.mem.readBytes(a, (st.s[3] ?? 0) % 64);
    return sys.mem.writeBytes(a, st.bytes);
  },
  // plausible sequences, so that the rarer states (sealed memfds, pinned pages, shared maps) are reached
  async (sys, w, st) => {
    const m = await sys.memfd_create('s', MFD.ALLOW_SEALING);
    w.fds.push(m);
    await sys.ftruncate(m, PAGE * (1 + ((st.s[0] ?? 0) % 4)));
    w.maps.push(await sys.mmap(null, PAGE * (1 + ((st.s[1] ?? 0) % 4)), (st.s[2] ?? 0) & 3, pick([MAP.SHARED, MAP.PRIVATE], st.s[3] ?? 0), m));
    await sys.fcntl(m, F.ADD_SEALS, bits([F.SEAL_SHRINK, F.SEAL_GROW, F.SEAL_WRITE, F.SEAL_FUTURE_WRITE, F.SEAL_SEAL], st.s[4] ?? 0));
  },
  async (sys, w, st) => {
    const d = await sys.open('/dev/dmasim-test', O.RDWR);
    w.fds.push(d);
    const m = await sys.mmap(null, PAGE * (1 + ((st.s[0] ?? 0) % 4)), PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
    w.maps.push(m);
    await sys.ioctl(d, DMASIM_TEST.PIN, { argsz: 24, flags: (st.s[1] ?? 0) & 1, vaddr: m.addr, length: BigInt(m.length) });
  },
  async (sys, w, st) => {
    const r = await sys.open(`${EDU}/resource0`, pick([O.RDONLY, O.RDWR], st.s[0] ?? 0));
    w.fds.push(r);
    w.maps.push(await sys.mmap(null, PAGE, (st.s[1] ?? 0) & 3, pick([MAP.SHARED, MAP.PRIVATE], st.s[2] ?? 0), r, (st.s[3] ?? 0) % 3 === 0 ? PAGE : 0));
  },
  async (sys, w, st) => {
    const e = await sys.eventfd(0, EFD.NONBLOCK);
    w.fds.push(e);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, st.big), true);
    await sys.write(e, b);
    await sys.read(e, w.maps.length > 0 && (st.s[0] ?? 0) % 2 === 0 ? { addr: addr(w, st.s[1] ?? 0, st.s[2] ?? 0), length: 8 } : b);
  },
];

/** Pages counted in `locked_vm`: mlocked VMAs plus every pin the test device holds. */
function checkAccounting(kernel: Kernel, task: Task): void {
  const files = new Set(task.fds.fds().map((n) => task.fds.get(n)));
  let pins = 0;
  for (const f of files) if (f !== undefined) pins += testDevFile(f)?.pins.pages ?? 0;
  expect(kernel.userPages.pinned, 'pins held by the kernel vs. pins the open files hold').toBe(pins);
  const locked = task.mm.vmas.reduce((n, v) => n + (v.locked ? (v.end - v.start) / PAGE : 0), 0);
  expect(task.mm.lockedVm, 'locked_vm vs. mlocked pages plus pins').toBe(locked + pins);
  expect(kernel.userPages.live).toBeLessThanOrEqual(kernel.machine.memory.frameCount);
}

/** Runs `steps` on one thread of the process; returns early once the task is dead. */
async function runSteps(sys: Sys, kernel: Kernel, t: Task, w: World, steps: readonly Step[]): Promise<void> {
  for (const st of steps) {
    const op = OPS[st.op % OPS.length] as Op;
    try {
      await op(sys, w, st);
    } catch (e) {
      // A dead task unwinds with TaskExit; anything else that is not a SysError is a kernel bug.
      if (t.dead) throw e;
      if (!(e instanceof SysError)) throw e;
      expect(e.errno).toBeGreaterThan(0);
      expect(e.errno).toBeLessThan(512);
    }
    if (t.dead) return;
    checkAccounting(kernel, t);
  }
}

/**
 * One process running `steps` (split between its main thread and a second thread sharing fds and memory
 * when `threads`), with a watchdog that kills it if it blocks; then the post-exit checks.
 */
async function fuzz(steps: readonly Step[], uid: number, memlock: number, threads = false): Promise<void> {
  const machine = createMachine({ memory: { size: 32 << 20 }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } });
  const kernel = bootKernel(machine, { testDevice: true });
  const free0 = machine.frames.freeFrames;
  let task: Task | undefined;
  const proc = kernel.spawn({ comm: 'fuzz', uid, rlimits: { memlock, nofile: 64 } }, async (sys) => {
    const t = task as Task;
    const w: World = { fds: [], maps: [], pid: sys.pid };
    if (!threads) {
      await runSteps(sys, kernel, t, w, steps);
      return 0;
    }
    let finished = false;
    sys.thread(async (s2) => {
      await runSteps(s2, kernel, t, w, steps.filter((_, i) => i % 2 === 1));
      finished = true;
    });
    await runSteps(sys, kernel, t, w, steps.filter((_, i) => i % 2 === 0));
    // Wait for the thread with simulator waits only (its `done` promise is not one); returning ends it.
    while (!finished && !t.dead) await sys.nanosleep(10_000);
    return 0;
  });
  task = kernel.task(proc.pid);
  // Blocking calls with nobody to wake them (a read of an empty eventfd, poll forever) end by SIGKILL.
  kernel.spawn({ comm: 'watchdog' }, async (sys) => {
    await sys.nanosleep(5e9);
    await sys.kill(proc.pid, 9).catch(() => undefined);
  });
  await machine.sim.run();
  if (proc.error !== undefined) throw proc.error;
  await proc.exited;
  const t = task as Task;
  expect(t.dead).toBe(true);
  expect(t.fds.fds()).toEqual([]);
  expect(t.mm.vmas).toEqual([]);
  expect(t.mm.lockedVm).toBe(0);
  expect(kernel.tasks).toEqual([]);
  expect(kernel.userPages.pinned).toBe(0);
  expect(kernel.userPages.live).toBe(0);
  expect(machine.frames.freeFrames).toBe(free0);
}

describe('syscall fuzz', () => {
  it('random syscall sequences (one or two threads): only SysError, consistent accounting, nothing left after exit', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(stepArb, { minLength: 1, maxLength: 60 }),
        fc.constantFrom(0, 1000),
        fc.constantFrom(0, 4 * PAGE, 64 * PAGE, 8 << 20),
        fc.boolean(),
        async (steps, uid, memlock, threads) => fuzz(steps, uid, memlock, threads),
      ),
      fcOptions(150),
    );
  }, 120_000);

  it('keeps going with poll and sleeps that block (the watchdog kills the process)', async () => {
    const st = (op: number, ...s: number[]): Step => ({ op, s: [...s, 0, 0, 0, 0, 0, 0, 0, 0].slice(0, 8), big: 0n, bytes: new Uint8Array(0) });
    // a blocking eventfd with count 0, then an 8-byte read of it: blocks until SIGKILL; teardown must be clean
    await fuzz([st(16, 3, 4), st(2, 0, 0, 0, 0, 0, 0, 1, 3)], 1000, 4 * PAGE);
    // poll forever on nothing ready
    await fuzz([st(16, 3, 4), st(15, 1, 0, 0, 0, 0, 0, 0, 4)], 0, 8 << 20);
    // pin pages through the test device, then SIGKILL ourselves while they are pinned
    await fuzz([st(31, 3), st(26, 0, 6)], 0, 8 << 20);
  });
});
