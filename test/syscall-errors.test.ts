/**
 * Error paths of every syscall of `Sys`, with the errno Linux gives and, where two errors compete, in Linux's
 * check order. Each expectation names the Linux function that decides it (6.12 unless noted).
 */
import { describe, expect, it } from 'vitest';
import { createMachine } from '../machine/index.ts';
import { bootKernel, type Kernel } from '../kernel-shim/kernel.ts';
import { SysError } from '../kernel-shim/errno.ts';
import { errnoOf } from './sys-errno.ts';
import type { PollFd, Sys } from '../kernel-shim/task/sys.ts';
import type { SpawnOptions } from '../kernel-shim/task/task.ts';
import { DMASIM_TEST } from '../kernel-shim/uapi/testdev.ts';
import { CLOCK, EFD, F, MAP, MFD, O, POLL, PROT, SEEK } from '../kernel-shim/uapi/linux.ts';

const PAGE = 4096;
const RW = PROT.READ | PROT.WRITE;
const ANON = MAP.PRIVATE | MAP.ANONYMOUS;
const TESTDEV = '/dev/dmasim-test';
const EDU = '/sys/bus/pci/devices/0000:00:03.0';
/** An address below TASK_SIZE that nothing maps (the fixtures never map this low). */
const HOLE = 0x2000_0000;

async function run(main: (sys: Sys, kernel: Kernel) => Promise<unknown>, opts: SpawnOptions = {}): Promise<void> {
  const machine = createMachine({ memory: { size: 64 << 20 }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } });
  const kernel = bootKernel(machine, { testDevice: true });
  const p = kernel.spawn({ comm: 't', ...opts }, (sys) => main(sys, kernel));
  await machine.sim.run();
  if (p.error !== undefined) throw p.error;
  expect(await p.exited).toBe(0);
}

const u64 = (v: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
};
const user = { uid: 1000 } as const;

describe('open / close', () => {
  it('lookup errors: ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG (link_path_walk, do_open)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.open('/dev/nope'))).toBe('ENOENT');
      expect(await errnoOf(sys.open(''))).toBe('ENOENT');
      expect(await errnoOf(sys.open(`${TESTDEV}/x`))).toBe('ENOTDIR');
      expect(await errnoOf(sys.open(TESTDEV, O.RDONLY | O.DIRECTORY))).toBe('ENOTDIR');
      expect(await errnoOf(sys.open('/proc/self', O.RDONLY | O.NOFOLLOW))).toBe('ELOOP');
      expect(await errnoOf(sys.open(`/dev/${'a'.repeat(256)}`))).toBe('ENAMETOOLONG');
      expect(await errnoOf(sys.open(`/${'a/'.repeat(2048)}`))).toBe('ENAMETOOLONG');
    });
  });

  it('a directory opens only for reading: EISDIR for O_WRONLY / O_RDWR (may_open)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.open('/dev', O.WRONLY))).toBe('EISDIR');
      expect(await errnoOf(sys.open('/dev', O.RDWR))).toBe('EISDIR');
      const fd = await sys.open('/dev', O.RDONLY | O.DIRECTORY);
      // generic_read_dir
      expect(await errnoOf(sys.read(fd, new Uint8Array(8)))).toBe('EISDIR');
      await sys.close(fd);
    });
  });

  it('O_CREAT: EEXIST with O_EXCL on an existing name; EACCES creating in /dev without write permission (may_o_create)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.open(TESTDEV, O.RDWR | O.CREAT | O.EXCL))).toBe('EEXIST');
    });
    await run(async (sys) => {
      expect(await errnoOf(sys.open('/dev/newfile', O.RDWR | O.CREAT))).toBe('EACCES');
      expect(await errnoOf(sys.open('/proc/newfile', O.RDWR | O.CREAT))).toBe('EACCES');
    }, user);
  });

  it('permission: an unprivileged process cannot open root-only nodes (generic_permission)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.open(`${EDU}/resource0`, O.RDWR))).toBe('EACCES');
      expect(await errnoOf(sys.open(`${EDU}/config`, O.RDWR))).toBe('EACCES');
      // config is 0644: readable by anyone
      await sys.close(await sys.open(`${EDU}/config`, O.RDONLY));
    }, user);
  });

  it('EMFILE comes before any lookup error (get_unused_fd_flags runs first)', async () => {
    await run(async (sys) => {
      for (let i = 0; i < 4; i++) await sys.eventfd(0, 0);
      expect(await errnoOf(sys.open('/dev/nope'))).toBe('EMFILE');
      expect(await errnoOf(sys.eventfd(0, 0))).toBe('EMFILE');
      expect(await errnoOf(sys.memfd_create('x', 0))).toBe('EMFILE');
      expect(await errnoOf(sys.dup(0))).toBe('EMFILE');
      expect(await errnoOf(sys.fcntl(0, F.DUPFD, 0))).toBe('EMFILE');
    }, { rlimits: { nofile: 4 } });
  });

  it('close: EBADF for a closed, negative or never-opened fd (close_fd)', async () => {
    await run(async (sys) => {
      const fd = await sys.eventfd(0, 0);
      await sys.close(fd);
      expect(await errnoOf(sys.close(fd))).toBe('EBADF');
      expect(await errnoOf(sys.close(-1))).toBe('EBADF');
      expect(await errnoOf(sys.close(1 << 20))).toBe('EBADF');
      expect(await errnoOf(sys.close(1.5))).toBe('EBADF');
    });
  });
});

describe('read / write / pread / pwrite / lseek', () => {
  it('access mode: EBADF reading an O_WRONLY fd, writing an O_RDONLY fd (vfs_read, vfs_write)', async () => {
    await run(async (sys) => {
      const w = await sys.open(TESTDEV, O.WRONLY);
      expect(await errnoOf(sys.read(w, new Uint8Array(4)))).toBe('EBADF');
      const r = await sys.open('/proc/self/status', O.RDONLY);
      expect(await errnoOf(sys.write(r, 'x'))).toBe('EBADF');
      expect(await errnoOf(sys.read(99, new Uint8Array(4)))).toBe('EBADF');
      expect(await errnoOf(sys.write(-1, 'x'))).toBe('EBADF');
      // No read/write handler: FMODE_CAN_READ / FMODE_CAN_WRITE unset, EINVAL.
      const rw = await sys.open(TESTDEV, O.RDWR);
      expect(await errnoOf(sys.read(rw, new Uint8Array(4)))).toBe('EINVAL');
      expect(await errnoOf(sys.write(rw, 'x'))).toBe('EINVAL');
    });
  });

  it('EFAULT for a buffer at an unmapped or read-only address', async () => {
    await run(async (sys) => {
      const mfd = await sys.memfd_create('m', 0);
      await sys.write(mfd, 'hello');
      expect(await errnoOf(sys.pread(mfd, { addr: HOLE, length: 5 }, 0))).toBe('EFAULT');
      expect(await errnoOf(sys.write(mfd, { addr: HOLE, length: 5 }))).toBe('EFAULT');
      const ro = await sys.mmap(null, PAGE, PROT.READ, ANON);
      expect(await errnoOf(sys.pread(mfd, ro, 0, 5))).toBe('EFAULT');
      expect(await sys.pwrite(mfd, ro, 0, 5)).toBe(5);
      const none = await sys.mmap(null, PAGE, PROT.NONE, ANON);
      expect(await errnoOf(sys.pwrite(mfd, none, 0, 5))).toBe('EFAULT');
    });
  });

  it('pread/pwrite: negative position EINVAL before EBADF; ESPIPE on an anonymous inode (ksys_pread64: FMODE_PREAD)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.pread(99, new Uint8Array(8), -1))).toBe('EINVAL');
      expect(await errnoOf(sys.pwrite(99, new Uint8Array(8), -1n))).toBe('EINVAL');
      expect(await errnoOf(sys.pread(99, new Uint8Array(8), 0))).toBe('EBADF');
      const efd = await sys.eventfd(1, 0);
      expect(await errnoOf(sys.pread(efd, new Uint8Array(8), 0))).toBe('ESPIPE');
      expect(await errnoOf(sys.pwrite(efd, u64(1n), 0))).toBe('ESPIPE');
      // a char device keeps FMODE_PREAD (do_dentry_open); with no read handler vfs_read gives EINVAL
      const dev = await sys.open(TESTDEV, O.RDWR);
      expect(await errnoOf(sys.pread(dev, new Uint8Array(8), 0))).toBe('EINVAL');
    });
  });

  it('lseek: EBADF; a char device without llseek ESPIPE; bad whence / negative result EINVAL', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.lseek(99, 0, SEEK.SET))).toBe('EBADF');
      // do_dentry_open clears FMODE_LSEEK when f_op->llseek is NULL: vfs_llseek gives ESPIPE.
      const dev = await sys.open(TESTDEV, O.RDWR);
      expect(await errnoOf(sys.lseek(dev, 0, SEEK.SET))).toBe('ESPIPE');
      const mfd = await sys.memfd_create('m', 0);
      await sys.write(mfd, 'abcd');
      expect(await errnoOf(sys.lseek(mfd, 0, 7))).toBe('EINVAL');
      expect(await errnoOf(sys.lseek(mfd, -5, SEEK.END))).toBe('EINVAL');
      expect(await errnoOf(sys.lseek(mfd, -1, SEEK.SET))).toBe('EINVAL');
      expect(await sys.lseek(mfd, -1, SEEK.END)).toBe(3);
      expect(await sys.lseek(mfd, 10, SEEK.SET)).toBe(10);
    });
  });
});

describe('eventfd', () => {
  it('eventfd2: unknown flags EINVAL (EFD_FLAGS_SET)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.eventfd(0, 0o10))).toBe('EINVAL');
      expect(await errnoOf(sys.eventfd(0, O.RDWR))).toBe('EINVAL');
      await sys.close(await sys.eventfd(0, EFD.CLOEXEC | EFD.NONBLOCK | EFD.SEMAPHORE));
    });
  });

  it('read and write of fewer than 8 bytes EINVAL; writing ULLONG_MAX EINVAL; non-blocking EAGAIN (eventfd_read, eventfd_write)', async () => {
    await run(async (sys) => {
      const fd = await sys.eventfd(3, EFD.NONBLOCK);
      expect(await errnoOf(sys.read(fd, new Uint8Array(7)))).toBe('EINVAL');
      expect(await errnoOf(sys.write(fd, new Uint8Array(4)))).toBe('EINVAL');
      expect(await errnoOf(sys.write(fd, u64(0xffff_ffff_ffff_ffffn)))).toBe('EINVAL');
      // the count check comes before the copy: a short bad buffer is EINVAL, not EFAULT
      expect(await errnoOf(sys.read(fd, { addr: HOLE, length: 4 }))).toBe('EINVAL');
      expect(await errnoOf(sys.write(fd, { addr: HOLE, length: 8 }))).toBe('EFAULT');
      const b = new Uint8Array(8);
      expect(await sys.read(fd, b)).toBe(8);
      expect(new DataView(b.buffer).getBigUint64(0, true)).toBe(3n);
      expect(await errnoOf(sys.read(fd, b))).toBe('EAGAIN');
      // a write that would pass ULLONG_MAX - 1 blocks; non-blocking: EAGAIN
      expect(await sys.write(fd, u64(0xffff_ffff_ffff_fffen))).toBe(8);
      expect(await errnoOf(sys.write(fd, u64(1n)))).toBe('EAGAIN');
      // eventfd_poll: EPOLLOUT only while ULLONG_MAX - 1 > count
      const p: PollFd[] = [{ fd, events: POLL.IN | POLL.OUT }];
      expect(await sys.poll(p, 0)).toBe(1);
      expect(p[0]?.revents).toBe(POLL.IN);
    });
  });

  it('read into a bad buffer: EFAULT after the count is consumed (eventfd_ctx_do_read, then copy_to_iter)', async () => {
    await run(async (sys) => {
      const fd = await sys.eventfd(5, EFD.NONBLOCK);
      expect(await errnoOf(sys.read(fd, { addr: HOLE, length: 8 }))).toBe('EFAULT');
      expect(await errnoOf(sys.read(fd, new Uint8Array(8)))).toBe('EAGAIN');
    });
  });
});

describe('mmap / munmap / mprotect', () => {
  it('mmap check order: unaligned offset EINVAL, then fget EBADF, then length 0 EINVAL (sys_mmap, ksys_mmap_pgoff, do_mmap)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.mmap(null, 0, RW, MAP.SHARED, 99, 1))).toBe('EINVAL');
      expect(await errnoOf(sys.mmap(null, PAGE, RW, MAP.SHARED, 99, 0))).toBe('EBADF');
      expect(await errnoOf(sys.mmap(null, 0, RW, MAP.SHARED, 99, 0))).toBe('EBADF');
      expect(await errnoOf(sys.mmap(null, 0, RW, ANON))).toBe('EINVAL');
      expect(await errnoOf(sys.mmap(null, PAGE, RW, ANON, -1, 100))).toBe('EINVAL');
      // the fd is ignored with MAP_ANONYMOUS
      (await sys.mmap(null, PAGE, RW, ANON, 99, 0)).write32(0, 1);
    });
  });

  it('mmap: ENOMEM past TASK_SIZE; EINVAL for a bad map type; MAP_FIXED unaligned EINVAL; MAP_FIXED_NOREPLACE EEXIST', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.mmap(null, 1n << 47n, RW, ANON))).toBe('ENOMEM');
      expect(await errnoOf(sys.mmap(null, 2n ** 64n - 1n, RW, ANON))).toBe('ENOMEM');
      expect(await errnoOf(sys.mmap(null, PAGE, RW, MAP.ANONYMOUS))).toBe('EINVAL');
      expect(await errnoOf(sys.mmap(null, PAGE, RW, MAP.SHARED_VALIDATE | MAP.ANONYMOUS))).toBe('EINVAL');
      expect(await errnoOf(sys.mmap(0x1000_0001, PAGE, RW, ANON | MAP.FIXED))).toBe('EINVAL');
      const m = await sys.mmap(null, 2 * PAGE, RW, ANON);
      expect(await errnoOf(sys.mmap(m.addr + 4096n, PAGE, RW, ANON | MAP.FIXED_NOREPLACE))).toBe('EEXIST');
      const efd = await sys.eventfd(0, 0);
      expect(await errnoOf(sys.mmap(null, PAGE, RW, 0, efd))).toBe('EINVAL');
    });
  });

  it('mmap of a file: EACCES for PROT_WRITE|MAP_SHARED on O_RDONLY and for any map of O_WRONLY; ENODEV without an mmap handler', async () => {
    await run(async (sys) => {
      const ro = await sys.open(`${EDU}/resource0`, O.RDONLY);
      expect(await errnoOf(sys.mmap(null, PAGE, RW, MAP.SHARED, ro))).toBe('EACCES');
      expect(await errnoOf(sys.mmap(null, PAGE, PROT.WRITE, MAP.SHARED_VALIDATE, ro))).toBe('EACCES');
      // read-only shared is fine, and so is a private writable mapping
      const m = await sys.mmap(null, PAGE, PROT.READ, MAP.SHARED, ro);
      // mprotect cannot add write: VM_MAYWRITE was cleared (do_mprotect_pkey)
      expect(await errnoOf(sys.mprotect(m.addr, PAGE, RW))).toBe('EACCES');
      const w = await sys.open(TESTDEV, O.WRONLY);
      expect(await errnoOf(sys.mmap(null, PAGE, PROT.READ, MAP.PRIVATE, w))).toBe('EACCES');
      // EACCES (no FMODE_READ) is checked before ENODEV (no ->mmap)
      const rw = await sys.open(TESTDEV, O.RDWR);
      expect(await errnoOf(sys.mmap(null, PAGE, RW, MAP.SHARED, rw))).toBe('ENODEV');
      const efd = await sys.eventfd(0, 0);
      expect(await errnoOf(sys.mmap(null, PAGE, RW, MAP.SHARED, efd))).toBe('ENODEV');
    });
  });

  it('MAP_LOCKED past RLIMIT_MEMLOCK without CAP_IPC_LOCK: EAGAIN (mlock_future_ok)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.mmap(null, 8 * PAGE, RW, ANON | MAP.LOCKED))).toBe('EAGAIN');
      await sys.mmap(null, 4 * PAGE, RW, ANON | MAP.LOCKED);
      expect(await errnoOf(sys.mmap(null, PAGE, RW, ANON | MAP.LOCKED))).toBe('EAGAIN');
    }, { uid: 1000, rlimits: { memlock: 4 * PAGE } });
  });

  it('munmap: unaligned, zero length or past TASK_SIZE EINVAL; nothing mapped is success (do_vmi_munmap)', async () => {
    await run(async (sys) => {
      const m = await sys.mmap(null, 2 * PAGE, RW, ANON);
      expect(await errnoOf(sys.munmap(m.addr + 1n, PAGE))).toBe('EINVAL');
      expect(await errnoOf(sys.munmap(m.addr, 0))).toBe('EINVAL');
      expect(await errnoOf(sys.munmap(0x7fff_ffff_f000 + PAGE, PAGE))).toBe('EINVAL');
      expect(await errnoOf(sys.munmap(m.addr, 2n ** 64n - 1n))).toBe('EINVAL');
      expect(await errnoOf(sys.munmap(-4096, PAGE))).toBe('EINVAL');
      await sys.munmap(HOLE, PAGE);
      await sys.munmap(m.addr, PAGE + 1);
      expect(() => m.read32(0)).toThrow(SysError);
    });
  });

  it('mprotect: unaligned EINVAL; zero length succeeds; unmapped ENOMEM; unknown bits EINVAL', async () => {
    await run(async (sys) => {
      const m = await sys.mmap(null, 2 * PAGE, RW, ANON);
      expect(await errnoOf(sys.mprotect(m.addr + 8n, PAGE, PROT.READ))).toBe('EINVAL');
      await sys.mprotect(m.addr, 0, PROT.READ);
      expect(await errnoOf(sys.mprotect(HOLE, PAGE, PROT.READ))).toBe('ENOMEM');
      expect(await errnoOf(sys.mprotect(m.addr, 3 * PAGE, PROT.READ))).toBe('ENOMEM');
      expect(await errnoOf(sys.mprotect(m.addr, PAGE, 0x40))).toBe('EINVAL');
      await sys.mprotect(m.addr, PAGE, PROT.READ);
      expect(() => m.write32(0, 1)).toThrow(SysError);
      m.write32(PAGE, 1);
    });
  });
});

describe('mlock / munlock', () => {
  it('past RLIMIT_MEMLOCK without CAP_IPC_LOCK: ENOMEM; pages already locked are not counted twice (do_mlock)', async () => {
    await run(async (sys) => {
      const m = await sys.mmap(null, 8 * PAGE, RW, ANON);
      expect(await errnoOf(sys.mlock(m.addr, 8 * PAGE))).toBe('ENOMEM');
      await sys.mlock(m.addr, 4 * PAGE);
      await sys.mlock(m.addr, 4 * PAGE);
      await sys.mlock(m.addr + 1n, 100);
      expect(await errnoOf(sys.mlock(m.addr + 4096n * 4n, PAGE))).toBe('ENOMEM');
      await sys.munlock(m.addr, 2 * PAGE);
      await sys.mlock(m.addr + 4096n * 4n, 2 * PAGE);
    }, { uid: 1000, rlimits: { memlock: 4 * PAGE } });
  });

  it('CAP_IPC_LOCK ignores the limit; RLIMIT_MEMLOCK 0 without it is EPERM (can_do_mlock)', async () => {
    await run(async (sys) => {
      const m = await sys.mmap(null, 8 * PAGE, RW, ANON);
      await sys.mlock(m.addr, 8 * PAGE);
    }, { uid: 1000, caps: ['IPC_LOCK'], rlimits: { memlock: PAGE } });
    await run(async (sys) => {
      const m = await sys.mmap(null, PAGE, RW, ANON);
      expect(await errnoOf(sys.mlock(m.addr, PAGE))).toBe('EPERM');
    }, { uid: 1000, rlimits: { memlock: 0 } });
  });

  it('an unmapped part: ENOMEM (apply_vma_lock_flags)', async () => {
    await run(async (sys) => {
      const m = await sys.mmap(null, PAGE, RW, ANON);
      expect(await errnoOf(sys.mlock(HOLE, PAGE))).toBe('ENOMEM');
      expect(await errnoOf(sys.mlock(m.addr, 2 * PAGE))).toBe('ENOMEM');
      expect(await errnoOf(sys.munlock(HOLE, PAGE))).toBe('ENOMEM');
    });
  });
});

describe('ioctl / poll', () => {
  it('ioctl: EBADF for a bad fd; ENOTTY for a file without ioctl or an unknown request', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.ioctl(99, DMASIM_TEST.VALUE, 0))).toBe('EBADF');
      const efd = await sys.eventfd(0, 0);
      expect(await errnoOf(sys.ioctl(efd, DMASIM_TEST.VALUE, 0))).toBe('ENOTTY');
      const dev = await sys.open(TESTDEV, O.RDWR);
      expect(await errnoOf(sys.ioctl(dev, 0xd5ff, 0))).toBe('ENOTTY');
      expect(await sys.ioctl(dev, DMASIM_TEST.VALUE, 0xffn)).toBe(8);
      // a struct ioctl whose argument points nowhere: EFAULT
      expect(await errnoOf(sys.ioctl(dev, DMASIM_TEST.GET_INFO, HOLE))).toBe('EFAULT');
    });
  });

  it('poll: nfds past RLIMIT_NOFILE EINVAL; a closed fd POLLNVAL; a negative fd is ignored', async () => {
    await run(async (sys) => {
      const fds = Array.from({ length: 9 }, () => ({ fd: -1, events: POLL.IN }));
      expect(await errnoOf(sys.poll(fds, 0))).toBe('EINVAL');
      const efd = await sys.eventfd(1, 0);
      const p: PollFd[] = [{ fd: 7, events: POLL.IN }, { fd: -3, events: POLL.IN }, { fd: efd, events: POLL.IN | POLL.OUT }];
      expect(await sys.poll(p, 0)).toBe(2);
      expect(p.map((x) => x.revents)).toEqual([POLL.NVAL, 0, POLL.IN | POLL.OUT]);
    }, { rlimits: { nofile: 8 } });
  });
});

describe('memfd_create and sealing', () => {
  it('memfd_create: unknown flags, a name over 249 bytes, MFD_EXEC with MFD_NOEXEC_SEAL: EINVAL', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.memfd_create('x', 0x100))).toBe('EINVAL');
      expect(await errnoOf(sys.memfd_create('x'.repeat(250), 0))).toBe('EINVAL');
      await sys.close(await sys.memfd_create('x'.repeat(249), 0));
      expect(await errnoOf(sys.memfd_create('x', MFD.EXEC | MFD.NOEXEC_SEAL))).toBe('EINVAL');
    });
  });

  it('without MFD_ALLOW_SEALING, F_SEAL_SEAL is set: F_ADD_SEALS is EPERM (memfd_create, memfd_add_seals)', async () => {
    await run(async (sys) => {
      const fd = await sys.memfd_create('m', 0);
      expect(await sys.fcntl(fd, F.GET_SEALS)).toBe(F.SEAL_SEAL);
      expect(await errnoOf(sys.fcntl(fd, F.ADD_SEALS, F.SEAL_WRITE))).toBe('EPERM');
      // unknown seal bits are checked before F_SEAL_SEAL
      expect(await errnoOf(sys.fcntl(fd, F.ADD_SEALS, 0x100))).toBe('EINVAL');
    });
  });

  it('F_ADD_SEALS check order: EPERM without FMODE_WRITE, EINVAL for unknown bits, EINVAL for a non-memfd, then EPERM after F_SEAL_SEAL', async () => {
    await run(async (sys) => {
      const ro = await sys.open('/proc/self/status', O.RDONLY);
      expect(await errnoOf(sys.fcntl(ro, F.ADD_SEALS, F.SEAL_WRITE))).toBe('EPERM');
      expect(await errnoOf(sys.fcntl(ro, F.GET_SEALS))).toBe('EINVAL');
      const efd = await sys.eventfd(0, 0);
      expect(await errnoOf(sys.fcntl(efd, F.ADD_SEALS, 0x100))).toBe('EINVAL');
      expect(await errnoOf(sys.fcntl(efd, F.ADD_SEALS, F.SEAL_WRITE))).toBe('EINVAL');
      expect(await errnoOf(sys.fcntl(efd, F.GET_SEALS))).toBe('EINVAL');
      const fd = await sys.memfd_create('m', MFD.ALLOW_SEALING);
      expect(await sys.fcntl(fd, F.GET_SEALS)).toBe(0);
      await sys.fcntl(fd, F.ADD_SEALS, F.SEAL_SEAL);
      expect(await errnoOf(sys.fcntl(fd, F.ADD_SEALS, F.SEAL_SHRINK))).toBe('EPERM');
      expect(await errnoOf(sys.fcntl(fd, F.ADD_SEALS, 0x100))).toBe('EINVAL');
    });
  });

  it('F_SEAL_WRITE: write EPERM (a zero-length write still succeeds), writable shared mmap EPERM, EBUSY while a writable shared mapping exists', async () => {
    await run(async (sys) => {
      const fd = await sys.memfd_create('m', MFD.ALLOW_SEALING);
      await sys.ftruncate(fd, 2 * PAGE);
      const m = await sys.mmap(null, PAGE, RW, MAP.SHARED, fd);
      expect(await errnoOf(sys.fcntl(fd, F.ADD_SEALS, F.SEAL_WRITE))).toBe('EBUSY');
      await sys.munmap(m.addr, PAGE);
      await sys.fcntl(fd, F.ADD_SEALS, F.SEAL_WRITE);
      expect(await errnoOf(sys.write(fd, 'x'))).toBe('EPERM');
      expect(await errnoOf(sys.pwrite(fd, 'x', 0))).toBe('EPERM');
      // generic_write_checks returns 0 for a zero count before shmem_write_begin sees the seal
      expect(await sys.write(fd, '')).toBe(0);
      expect(await errnoOf(sys.mmap(null, PAGE, RW, MAP.SHARED, fd))).toBe('EPERM');
      await sys.mmap(null, PAGE, PROT.READ, MAP.SHARED, fd);
      await sys.mmap(null, PAGE, RW, MAP.PRIVATE, fd);
    });
  });

  it('write seals clear VM_MAYWRITE of read-only shared mappings: mprotect to PROT_WRITE is EACCES (seal_check_write)', async () => {
    await run(async (sys) => {
      const fd = await sys.memfd_create('m', MFD.ALLOW_SEALING);
      await sys.ftruncate(fd, PAGE);
      const before = await sys.mmap(null, PAGE, RW, MAP.SHARED, fd);
      // F_SEAL_FUTURE_WRITE allows writable maps made before it
      await sys.fcntl(fd, F.ADD_SEALS, F.SEAL_FUTURE_WRITE);
      before.write32(0, 1);
      expect(await errnoOf(sys.mmap(null, PAGE, RW, MAP.SHARED, fd))).toBe('EPERM');
      const ro = await sys.mmap(null, PAGE, PROT.READ, MAP.SHARED, fd);
      expect(await errnoOf(sys.mprotect(ro.addr, PAGE, RW))).toBe('EACCES');
      // a private mapping keeps VM_MAYWRITE
      const priv = await sys.mmap(null, PAGE, PROT.READ, MAP.PRIVATE, fd);
      await sys.mprotect(priv.addr, PAGE, RW);
      priv.write32(0, 2);
      expect(ro.read32(0)).toBe(1);
    });
  });

  it('F_SEAL_WRITE while a page is pinned (DMA in flight): EBUSY (memfd_wait_for_pins)', async () => {
    await run(async (sys) => {
      const fd = await sys.memfd_create('m', MFD.ALLOW_SEALING);
      await sys.ftruncate(fd, PAGE);
      const m = await sys.mmap(null, PAGE, RW, MAP.SHARED, fd);
      const dev = await sys.open(TESTDEV, O.RDWR);
      await sys.ioctl(dev, DMASIM_TEST.PIN, { argsz: 24, flags: 1, vaddr: m.addr, length: BigInt(PAGE) });
      await sys.munmap(m.addr, PAGE);
      expect(await errnoOf(sys.fcntl(fd, F.ADD_SEALS, F.SEAL_WRITE))).toBe('EBUSY');
      await sys.close(dev);
      await sys.fcntl(fd, F.ADD_SEALS, F.SEAL_WRITE);
    });
  });

  it('F_SEAL_SHRINK: ftruncate smaller EPERM; F_SEAL_GROW: growing by ftruncate or write EPERM (shmem_setattr, shmem_write_begin)', async () => {
    await run(async (sys) => {
      const fd = await sys.memfd_create('m', MFD.ALLOW_SEALING);
      await sys.ftruncate(fd, 2 * PAGE);
      await sys.fcntl(fd, F.ADD_SEALS, F.SEAL_SHRINK);
      expect(await errnoOf(sys.ftruncate(fd, PAGE))).toBe('EPERM');
      await sys.ftruncate(fd, 2 * PAGE);
      await sys.ftruncate(fd, 3 * PAGE);
      await sys.fcntl(fd, F.ADD_SEALS, F.SEAL_GROW);
      expect(await errnoOf(sys.ftruncate(fd, 4 * PAGE))).toBe('EPERM');
      expect(await errnoOf(sys.pwrite(fd, 'x', 3 * PAGE))).toBe('EPERM');
      expect(await sys.pwrite(fd, 'x', 3 * PAGE - 1)).toBe(1);
      expect(await sys.fcntl(fd, F.GET_SEALS)).toBe(F.SEAL_SHRINK | F.SEAL_GROW);
    });
  });

  it('F_SEAL_GROW: a write crossing the end writes the pages inside it, then stops (generic_perform_write)', async () => {
    await run(async (sys) => {
      const fd = await sys.memfd_create('m', MFD.ALLOW_SEALING);
      await sys.ftruncate(fd, PAGE);
      await sys.fcntl(fd, F.ADD_SEALS, F.SEAL_GROW);
      expect(await sys.pwrite(fd, new Uint8Array(2 * PAGE).fill(7), 0)).toBe(PAGE);
      expect(await sys.pwrite(fd, new Uint8Array(200), PAGE - 100)).toBe(100);
      expect(await errnoOf(sys.pwrite(fd, new Uint8Array(200), PAGE))).toBe('EPERM');
      // a chunk (within one page) that would pass the end is refused whole
      const g = await sys.memfd_create('g', MFD.ALLOW_SEALING);
      await sys.ftruncate(g, 100);
      await sys.fcntl(g, F.ADD_SEALS, F.SEAL_GROW);
      expect(await errnoOf(sys.pwrite(g, new Uint8Array(200), 0))).toBe('EPERM');
      expect(await sys.pwrite(g, new Uint8Array(100), 0)).toBe(100);
    });
  });
});

describe('ftruncate / fcntl / dup / dup2', () => {
  it('ftruncate: a negative length EINVAL before EBADF; EINVAL unless a regular file open for writing (do_sys_ftruncate, do_ftruncate)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.ftruncate(99, -1))).toBe('EINVAL');
      expect(await errnoOf(sys.ftruncate(99, 0))).toBe('EBADF');
      const efd = await sys.eventfd(0, 0);
      expect(await errnoOf(sys.ftruncate(efd, 0))).toBe('EINVAL');
      const ro = await sys.open('/proc/self/status', O.RDONLY);
      expect(await errnoOf(sys.ftruncate(ro, 0))).toBe('EINVAL');
      const dev = await sys.open(TESTDEV, O.RDWR);
      expect(await errnoOf(sys.ftruncate(dev, 0))).toBe('EINVAL');
      const m = await sys.memfd_create('m', 0);
      expect(await errnoOf(sys.ftruncate(m, -4096n))).toBe('EINVAL');
      await sys.ftruncate(m, 10);
    });
  });

  it('fcntl: EBADF; unknown command EINVAL; F_SETFL keeps the access mode; F_DUPFD past RLIMIT_NOFILE EINVAL', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.fcntl(99, F.GETFL))).toBe('EBADF');
      const efd = await sys.eventfd(0, 0);
      expect(await errnoOf(sys.fcntl(efd, 9999))).toBe('EINVAL');
      expect((await sys.fcntl(efd, F.GETFL)) & O.ACCMODE).toBe(O.RDWR);
      await sys.fcntl(efd, F.SETFL, O.NONBLOCK | O.WRONLY);
      expect((await sys.fcntl(efd, F.GETFL)) & (O.ACCMODE | O.NONBLOCK)).toBe(O.RDWR | O.NONBLOCK);
      expect(await errnoOf(sys.read(efd, new Uint8Array(8)))).toBe('EAGAIN');
      await sys.fcntl(efd, F.SETFL, 0);
      expect((await sys.fcntl(efd, F.GETFL)) & O.NONBLOCK).toBe(0);
      expect(await errnoOf(sys.fcntl(efd, F.DUPFD, 16))).toBe('EINVAL');
      expect(await sys.fcntl(efd, F.DUPFD, 10)).toBe(10);
      expect(await sys.fcntl(efd, F.DUPFD_CLOEXEC, 3)).toBe(3);
      expect(await sys.fcntl(3, F.GETFD)).toBe(F.FD_CLOEXEC);
      expect(await sys.fcntl(efd, F.GETFD)).toBe(0);
    }, { rlimits: { nofile: 16 } });
  });

  it('dup / dup2: EBADF for a bad old fd or a new fd past RLIMIT_NOFILE; dup2 of an fd onto itself returns it (ksys_dup3, do_dup2)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.dup(99))).toBe('EBADF');
      expect(await errnoOf(sys.dup2(99, 3))).toBe('EBADF');
      expect(await errnoOf(sys.dup2(99, 99))).toBe('EBADF');
      const efd = await sys.eventfd(0, 0);
      expect(await errnoOf(sys.dup2(efd, 16))).toBe('EBADF');
      expect(await errnoOf(sys.dup2(efd, -1))).toBe('EBADF');
      expect(await sys.dup2(efd, efd)).toBe(efd);
      const m = await sys.memfd_create('m', 0);
      expect(await sys.dup2(efd, m)).toBe(m);
      // m now names the eventfd: no seals
      expect(await errnoOf(sys.fcntl(m, F.GET_SEALS))).toBe('EINVAL');
    }, { rlimits: { nofile: 16 } });
  });
});

describe('readlink / readdir', () => {
  it('readlink: EINVAL on a non-link; ENOENT; ENOTDIR (do_readlinkat)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.readlink('/dev'))).toBe('EINVAL');
      expect(await errnoOf(sys.readlink(TESTDEV))).toBe('EINVAL');
      expect(await errnoOf(sys.readlink('/nope'))).toBe('ENOENT');
      expect(await errnoOf(sys.readlink(`${TESTDEV}/x`))).toBe('ENOTDIR');
      expect(await sys.readlink('/proc/self')).toBe(String(sys.pid));
    });
  });

  it('readdir: ENOTDIR on a file; ENOENT; EACCES on a directory the caller cannot read', async () => {
    const machine = createMachine({ memory: { size: 64 << 20 } });
    const kernel = bootKernel(machine, { testDevice: true });
    const root = kernel.spawn({ comm: 'root' }, async (sys) => {
      await sys.nanosleep(1e6);
    });
    const p = kernel.spawn({ comm: 'user', uid: 1000 }, async (sys) => {
      expect(await errnoOf(sys.readdir(TESTDEV))).toBe('ENOTDIR');
      expect(await errnoOf(sys.readdir('/nope'))).toBe('ENOENT');
      expect(await errnoOf(sys.readdir(`/proc/${root.pid}/fd`))).toBe('EACCES');
      expect(await sys.readdir(`/proc/${sys.pid}/fd`)).toEqual([]);
    });
    await machine.sim.run();
    if (p.error !== undefined) throw p.error;
    expect(await p.exited).toBe(0);
  });
});

describe('nanosleep / clock_gettime / kill', () => {
  it('nanosleep: negative or non-finite EINVAL; clock_gettime: unknown clock EINVAL', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.nanosleep(-1))).toBe('EINVAL');
      expect(await errnoOf(sys.nanosleep(Number.NaN))).toBe('EINVAL');
      expect(await errnoOf(sys.clock_gettime(99))).toBe('EINVAL');
      expect(await errnoOf(sys.clock_gettime(-1))).toBe('EINVAL');
      const t0 = await sys.clock_gettime(CLOCK.MONOTONIC);
      await sys.nanosleep(1000);
      expect(await sys.clock_gettime(CLOCK.BOOTTIME)).toBeGreaterThanOrEqual(t0 + 1000);
    });
  });

  it('kill: ESRCH for no such process (before the signal check), EINVAL for a bad signal, EPERM for another user (kill_pid_info, check_kill_permission)', async () => {
    const machine = createMachine({ memory: { size: 64 << 20 } });
    const kernel = bootKernel(machine);
    const victim = kernel.spawn({ comm: 'root' }, async (sys) => {
      await sys.nanosleep(1e6);
    });
    const p = kernel.spawn({ comm: 'user', uid: 1000 }, async (sys) => {
      expect(await errnoOf(sys.kill(99999, 9))).toBe('ESRCH');
      expect(await errnoOf(sys.kill(99999, 1000))).toBe('ESRCH');
      expect(await errnoOf(sys.kill(victim.pid, 1000))).toBe('EINVAL');
      expect(await errnoOf(sys.kill(victim.pid, -1))).toBe('EINVAL');
      expect(await errnoOf(sys.kill(victim.pid, 9))).toBe('EPERM');
      expect(await errnoOf(sys.kill(victim.pid, 0))).toBe('EPERM');
      await sys.kill(sys.pid, 0);
    });
    await machine.sim.run();
    if (p.error !== undefined) throw p.error;
    expect(await p.exited).toBe(0);
    expect(await victim.exited).toBe(0);
  });
});

describe('check-order details', () => {
  it('open(O_CREAT): missing directory ENOENT, existing directory EISDIR after EEXIST (lookup_open, do_open)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.open('/dev/nodir/x', O.RDWR | O.CREAT))).toBe('ENOENT');
      expect(await errnoOf(sys.open('/dev/newfile', O.RDWR | O.CREAT))).toBe('EACCES');
      expect(await errnoOf(sys.open('/dev', O.RDONLY | O.CREAT))).toBe('EISDIR');
      expect(await errnoOf(sys.open('/dev', O.RDONLY | O.CREAT | O.EXCL))).toBe('EEXIST');
    });
  });

  it('mprotect: length 0 is 0 before the prot check; PROT_SEM accepted; GROWSDOWN|GROWSUP EINVAL (do_mprotect_pkey)', async () => {
    await run(async (sys) => {
      await sys.mprotect(HOLE, 0, 0x40);
      const m = await sys.mmap(null, PAGE, RW, ANON);
      await sys.mprotect(m.addr, PAGE, PROT.READ | 0x8);
      expect(await errnoOf(sys.mprotect(m.addr, PAGE, PROT.READ | 0x0300_0000))).toBe('EINVAL');
      expect(await errnoOf(sys.mprotect(m.addr + 1n, 0, PROT.READ))).toBe('EINVAL');
      expect(await errnoOf(sys.mprotect(m.addr, PAGE, 0x40))).toBe('EINVAL');
    });
  });

  it('mlock: a zero RLIMIT_MEMLOCK without CAP_IPC_LOCK is EPERM even for length 0 (can_do_mlock first)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.mlock(HOLE, 0))).toBe('EPERM');
    }, { uid: 1000, rlimits: { memlock: 0 } });
  });

  it('eventfd: lseek is noop_llseek (returns the position), pread/pwrite ESPIPE (no FMODE_PREAD)', async () => {
    await run(async (sys) => {
      const efd = await sys.eventfd(3, 0);
      expect(await sys.lseek(efd, 100, SEEK.SET)).toBe(0);
      expect(await errnoOf(sys.pread(efd, new Uint8Array(8), 0))).toBe('ESPIPE');
      expect(await errnoOf(sys.pwrite(efd, u64(1n), 0))).toBe('ESPIPE');
    });
  });
});
