import type { SimProcess } from '../../sim/index.ts';
import { COST } from '../costs.ts';
import { E, SysError } from '../errno.ts';
import { createEventfd } from '../fs/eventfd.ts';
import { File, UserBuf, type PollTable } from '../fs/file.ts';
import { addSeals, createMemfd, memfdOf } from '../fs/memfd.ts';
import { dirEntries, MAY, permission } from '../fs/vfs.ts';
import type { Kernel } from '../kernel.ts';
import { Mapping, UserMemory } from '../mm/mapping.ts';
import { TASK_SIZE } from '../mm/mm.ts';
import { CLOCK, EFD, F, MAP, MFD, O, PAGE_SIZE, POLL, PROT, SEEK } from '../uapi/linux.ts';
import { WaitHead } from '../wait.ts';
import type { Current } from './current.ts';
import { TaskExit, type Task } from './task.ts';
import { marshalIoctl } from './ioctl.ts';

/** `Number.MAX_SAFE_INTEGER` as a bigint, made once (address checks run on every access). */
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/** A user buffer given by address: `{ addr, length }` (a {@link Mapping} is one). */
export interface UserPtr {
  readonly addr: number | bigint;
  readonly length: number;
}

/** One entry of `poll`'s array (Linux `struct pollfd`); `revents` is filled in. */
export interface PollFd {
  fd: number;
  events: number;
  revents?: number;
}

/** A thread started with {@link Sys.thread}. */
export interface Thread {
  readonly tid: number;
  /** Resolves when the thread's function returns (or the process exits). */
  readonly done: Promise<void>;
}

const encoder = new TextEncoder();
/** Linux `MFD_NAME_MAX_LEN`: `NAME_MAX` less `strlen("memfd:")`. */
const MFD_NAME_MAX_LEN = 249;
/** The `F_SETFL` flags Linux lets change (`SETFL_MASK`, those dmasim models). */
const SETFL_MASK = O.APPEND | O.NONBLOCK | O.DIRECT;

function addrOf(a: number | bigint | null | undefined): number {
  if (a === null || a === undefined) return 0;
  if (typeof a === 'bigint') return a >= 0n && a <= MAX_SAFE_BIG ? Number(a) : -1;
  return Number.isSafeInteger(a) && a >= 0 ? a : -1;
}

/** After a blocking read or write at the file position: moves it past what was transferred. */
function advancePos(file: File, at: number, n: number): number {
  if (n > 0) file.pos = at + n;
  return n;
}

function sizeOf(n: number | bigint): number {
  if (typeof n === 'bigint') return n >= 0n && n <= MAX_SAFE_BIG ? Number(n) : Number.POSITIVE_INFINITY;
  return Number.isSafeInteger(n) && n >= 0 ? n : Number.POSITIVE_INFINITY;
}

/**
 * The syscall interface one thread of a process sees (`main(sys)`): Linux's calls under their Linux names
 * and semantics. Every call is async, costs virtual time and is a synchronisation point: the calling
 * thread's local time is reached before the call runs, and other processes may run meanwhile. Failures
 * throw {@link SysError} (`code`, `errno`, `syscall`); nothing else is thrown for bad arguments.
 *
 * User buffers are `Uint8Array`s of the program, or `{ addr, length }` in the process's memory (a
 * {@link Mapping}), which the kernel copies with Linux's `EFAULT` rules.
 */
export class Sys {
  readonly #kernel: Kernel;
  readonly #task: Task;
  readonly #thread: SimProcess;
  readonly #cur: Current;
  /** Typed access at user addresses (`EFAULT` as a `SysError`). */
  readonly mem: UserMemory;
  #sleep: WaitHead | undefined;

  /** @internal Made by the kernel for each thread. */
  constructor(kernel: Kernel, task: Task, thread: SimProcess) {
    this.#kernel = kernel;
    this.#task = task;
    this.#thread = thread;
    this.mem = new UserMemory(task.mm, task);
    this.#cur = {
      kernel, task, thread, cred: task.cred, mm: task.mm,
      waitEvent: (head, cond, what, timeoutNs) => this.#waitEvent(head, cond, what, timeoutNs),
    };
  }

  /** The process id. */
  get pid(): number {
    return this.#task.pid;
  }

  // --- the syscall path -------------------------------------------------------------------------------

  /** Entry: the syscall's cost, then a synchronisation point (other threads and processes may run). */
  #enter(): Promise<void> | undefined {
    const t = this.#thread;
    t.consume(COST.syscall);
    if (!t.canPassSync()) return this.#enterSlow();
    this.#task.running = t;
    if (this.#task.dead) throw new TaskExit(this.#task.pid);
    return undefined;
  }

  async #enterSlow(): Promise<void> {
    const t = this.#thread;
    await t.sync();
    this.#task.running = t;
    if (this.#task.dead) throw new TaskExit(this.#task.pid);
  }

  /** Exit: a dead task unwinds; `-errno` becomes a `SysError`. */
  #ret(r: number, syscall: string): number {
    this.#task.running = this.#thread;
    if (this.#task.dead) throw new TaskExit(this.#task.pid);
    if (r < 0) throw SysError.fromReturn(r, syscall);
    return r;
  }

  async #waitEvent(head: WaitHead, cond: () => boolean, what: string, timeoutNs?: number): Promise<number> {
    const t = this.#thread;
    const deadline = timeoutNs === undefined ? Number.POSITIVE_INFINITY : t.localTime + timeoutNs;
    let slept = false;
    while (!cond()) {
      if (this.#task.dead) return E.EINTR;
      const left = deadline - t.localTime;
      if (left <= 0) return E.ETIMEDOUT;
      slept = true;
      await t.wait(head.queue, what, left === Number.POSITIVE_INFINITY ? undefined : left);
      this.#task.running = t;
      if (this.#task.dead) return E.EINTR;
    }
    if (slept) t.consume(COST.wakeup);
    return 0;
  }

  #file(fd: number): File | number {
    return this.#task.fds.get(fd) ?? E.EBADF;
  }

  #buf(b: Uint8Array | UserPtr | string, len?: number): UserBuf {
    if (typeof b === 'string') return UserBuf.of(encoder.encode(b));
    if (b instanceof Uint8Array) return UserBuf.of(len === undefined ? b : b.subarray(0, Math.max(0, Math.min(len, b.length))));
    const a = addrOf(b.addr);
    const n = sizeOf(len ?? b.length);
    return UserBuf.at(this.#task.mm, a, Number.isFinite(n) ? n : 0);
  }

  // --- files ------------------------------------------------------------------------------------------

  /** `open(2)`; returns the fd. `mode` is accepted for `O_CREAT`, which dmasim's file systems refuse. */
  async open(path: string, flags: number = O.RDONLY, _mode = 0o666): Promise<number> {
    await this.#enter();
    return this.#ret(await this.#open(String(path), flags | 0), 'open');
  }

  async #open(path: string, flags: number): Promise<number> {
    const task = this.#task;
    const cur = this.#cur;
    // Linux reserves the fd first (get_unused_fd_flags), so EMFILE comes before any lookup error.
    if (task.fds.fds().length >= task.fds.limit) return E.EMFILE;
    const r = this.#kernel.vfs.lookup(path, { cred: task.cred, pid: task.pid }, (flags & O.NOFOLLOW) === 0);
    if (typeof r === 'number') {
      if (r !== E.ENOENT || (flags & O.CREAT) === 0) return r;
      // O_CREAT of a missing name: ENOENT unless its directory exists; then dmasim's file systems refuse.
      const slash = path.lastIndexOf('/');
      const parent = this.#kernel.vfs.lookup(slash <= 0 ? '/' : path.slice(0, slash), { cred: task.cred, pid: task.pid }, true);
      return typeof parent !== 'number' && parent.inode.kind === 'dir' ? E.EACCES : E.ENOENT;
    }
    const { inode } = r;
    if ((flags & (O.CREAT | O.EXCL)) === (O.CREAT | O.EXCL)) return E.EEXIST;
    // do_open: O_CREAT on an existing directory is EISDIR.
    if ((flags & O.CREAT) !== 0 && inode.kind === 'dir') return E.EISDIR;
    if (inode.kind === 'symlink') return E.ELOOP;
    const acc = flags & O.ACCMODE;
    if (inode.kind === 'dir') {
      if (acc !== O.RDONLY) return E.EISDIR;
    } else if ((flags & O.DIRECTORY) !== 0) return E.ENOTDIR;
    const mask = (acc !== O.WRONLY ? MAY.READ : 0) | (acc !== O.RDONLY ? MAY.WRITE : 0);
    const perm = permission(inode, mask, task.cred);
    if (perm < 0) return perm;
    const ops = inode.kind === 'file' ? inode.ops : {};
    if (inode.kind === 'file' && inode.openCheck !== undefined) {
      const c = inode.openCheck(flags, cur);
      if (c < 0) return c;
    }
    const file = new File(inode, ops, r.path, flags & ~(O.CREAT | O.EXCL | O.NOCTTY | O.TRUNC | O.CLOEXEC));
    if (ops.open !== undefined) {
      let o = ops.open(file, cur);
      if (typeof o !== 'number') o = await o;
      if (o < 0) return o;
    }
    const fd = task.fds.install(file, (flags & O.CLOEXEC) !== 0);
    if (fd < 0) file.put();
    return fd;
  }

  /** `close(2)`. */
  async close(fd: number): Promise<void> {
    await this.#enter();
    const f = this.#task.fds.remove(fd);
    this.#ret(f === undefined ? E.EBADF : 0, 'close');
    f?.put();
  }

  #rw(fd: number, buf: UserBuf, pos: number | undefined, write: boolean): number | Promise<number> {
    const file = this.#file(fd);
    if (typeof file === 'number') return file;
    if (write ? !file.writable : !file.readable) return E.EBADF;
    if (file.inode.kind === 'dir') return E.EISDIR;
    const op = write ? file.ops.write : file.ops.read;
    if (op === undefined) return E.EINVAL;
    let at = pos ?? file.pos;
    if (pos !== undefined) {
      const ino = file.inode;
      if (ino.kind === 'file' && ino.fileKind !== 'reg' && file.ops.pread !== true && (ino.fileKind === 'anon' || file.ops.llseek === undefined)) return E.ESPIPE;
      if (!(pos >= 0)) return E.EINVAL;
    } else if (write && (file.flags & O.APPEND) !== 0) at = file.ops.size?.(file) ?? at;
    const r = op(file, this.#cur, buf, at);
    if (typeof r !== 'number') return pos === undefined ? r.then((n) => advancePos(file, at, n)) : r;
    if (r > 0 && pos === undefined) file.pos = at + r;
    return r;
  }

  /** `read(2)` into `buf` (up to its length, or `len` bytes of it); returns the count read. */
  async read(fd: number, buf: Uint8Array | UserPtr, len?: number): Promise<number> {
    const e = this.#enter();
    if (e !== undefined) await e;
    const r = this.#rw(fd, this.#buf(buf, len), undefined, false);
    return this.#ret(typeof r === 'number' ? r : await r, 'read');
  }

  /** `write(2)` of `data` (a string is written as UTF-8); returns the count written. */
  async write(fd: number, data: Uint8Array | UserPtr | string, len?: number): Promise<number> {
    const e = this.#enter();
    if (e !== undefined) await e;
    const r = this.#rw(fd, this.#buf(data, len), undefined, true);
    return this.#ret(typeof r === 'number' ? r : await r, 'write');
  }

  /** `pread64(2)`: reads at `pos` without moving the file position. */
  async pread(fd: number, buf: Uint8Array | UserPtr, pos: number | bigint, len?: number): Promise<number> {
    const e = this.#enter();
    if (e !== undefined) await e;
    const p = sizeOf(pos);
    const r = Number.isFinite(p) ? this.#rw(fd, this.#buf(buf, len), p, false) : E.EINVAL;
    return this.#ret(typeof r === 'number' ? r : await r, 'pread');
  }

  /** `pwrite64(2)`: writes at `pos` without moving the file position. */
  async pwrite(fd: number, data: Uint8Array | UserPtr | string, pos: number | bigint, len?: number): Promise<number> {
    const e = this.#enter();
    if (e !== undefined) await e;
    const p = sizeOf(pos);
    const r = Number.isFinite(p) ? this.#rw(fd, this.#buf(data, len), p, true) : E.EINVAL;
    return this.#ret(typeof r === 'number' ? r : await r, 'pwrite');
  }

  /** `lseek(2)`; returns the new position. */
  async lseek(fd: number, offset: number | bigint, whence: number): Promise<number> {
    await this.#enter();
    return this.#ret(this.#lseek(fd, typeof offset === 'bigint' ? Number(offset) : offset, whence), 'lseek');
  }

  #lseek(fd: number, offset: number, whence: number): number {
    const file = this.#file(fd);
    if (typeof file === 'number') return file;
    if (file.ops.llseek !== undefined) return file.ops.llseek(file, offset, whence);
    if (file.inode.kind !== 'dir' && (file.inode.kind !== 'file' || file.inode.fileKind !== 'reg')) return E.ESPIPE;
    if (!Number.isSafeInteger(offset)) return E.EINVAL;
    let base: number;
    if (whence === SEEK.SET) base = 0;
    else if (whence === SEEK.CUR) base = file.pos;
    else if (whence === SEEK.END) base = file.ops.size?.(file) ?? 0;
    else return E.EINVAL;
    const p = base + offset;
    if (p < 0) return E.EINVAL;
    file.pos = p;
    return p;
  }

  /**
   * `ioctl(2)`. A `number`/`bigint` argument is Linux's `unsigned long` (a value or a user address); an
   * object argument is encoded into scratch memory of the process by its uAPI layout (found from the
   * request number), passed by address, and the kernel's write-back is decoded into the same object.
   */
  async ioctl(fd: number, request: number, arg?: number | bigint | object): Promise<number> {
    const e = this.#enter();
    if (e !== undefined) await e;
    const file = this.#file(fd);
    if (typeof file === 'number') return this.#ret(file, 'ioctl');
    const req = Number(request) >>> 0;
    let r: number;
    if (arg === undefined || typeof arg === 'number' || typeof arg === 'bigint') {
      // The direct form (a value or a user address): no closure, and no promise unless the driver returns one.
      const a = arg === undefined ? 0n : BigInt.asUintN(64, typeof arg === 'bigint' ? arg : BigInt(Number.isSafeInteger(arg) ? arg : 0));
      const op = file.ops.ioctl;
      const v = op === undefined ? E.ENOTTY : op(file, this.#cur, req, a);
      r = typeof v === 'number' ? v : await v;
    } else {
      r = await marshalIoctl(this.#task.mm, this.#cur, req, arg, async (a: bigint): Promise<number> => {
        const op = file.ops.ioctl;
        if (op === undefined) return E.ENOTTY;
        const v = op(file, this.#cur, req, a);
        return typeof v === 'number' ? v : await v;
      });
    }
    return this.#ret(r, 'ioctl');
  }

  /** `fcntl(2)`: `F_DUPFD(_CLOEXEC)`, `F_GETFD/SETFD`, `F_GETFL/SETFL`, `F_ADD_SEALS/GET_SEALS`. */
  async fcntl(fd: number, cmd: number, arg = 0): Promise<number> {
    await this.#enter();
    return this.#ret(this.#fcntl(fd, cmd, arg), 'fcntl');
  }

  #fcntl(fd: number, cmd: number, arg: number): number {
    const fds = this.#task.fds;
    const file = this.#file(fd);
    if (typeof file === 'number') return file;
    switch (cmd) {
      case F.DUPFD:
      case F.DUPFD_CLOEXEC: {
        const nfd = fds.install(file, cmd === F.DUPFD_CLOEXEC, arg);
        if (nfd >= 0) file.get();
        return nfd;
      }
      case F.GETFD:
        return fds.cloexec(fd) ? F.FD_CLOEXEC : 0;
      case F.SETFD:
        fds.setCloexec(fd, (arg & F.FD_CLOEXEC) !== 0);
        return 0;
      case F.GETFL:
        return file.flags;
      case F.SETFL:
        file.flags = (file.flags & ~SETFL_MASK) | (arg & SETFL_MASK);
        return 0;
      case F.ADD_SEALS:
        return addSeals(file, arg);
      case F.GET_SEALS: {
        const m = memfdOf(file);
        return m === undefined ? E.EINVAL : m.obj.seals;
      }
      default:
        return E.EINVAL;
    }
  }

  /** `dup(2)`. */
  async dup(fd: number): Promise<number> {
    await this.#enter();
    const file = this.#file(fd);
    if (typeof file === 'number') return this.#ret(file, 'dup');
    const nfd = this.#task.fds.install(file, false);
    if (nfd >= 0) file.get();
    return this.#ret(nfd, 'dup');
  }

  /** `dup2(2)`: `newfd` is closed first if open; the same fd returns itself. */
  async dup2(oldfd: number, newfd: number): Promise<number> {
    await this.#enter();
    const fds = this.#task.fds;
    const file = this.#file(oldfd);
    if (typeof file === 'number') return this.#ret(file, 'dup2');
    if (!(Number.isInteger(newfd) && newfd >= 0 && newfd < fds.limit)) return this.#ret(E.EBADF, 'dup2');
    if (newfd === oldfd) return this.#ret(newfd, 'dup2');
    fds.remove(newfd)?.put();
    file.get();
    return this.#ret(fds.install(file, false, newfd), 'dup2');
  }

  /** `ftruncate(2)`. */
  async ftruncate(fd: number, length: number | bigint): Promise<void> {
    await this.#enter();
    const file = this.#file(fd);
    let r: number;
    const len = typeof length === 'bigint' ? Number(length) : length;
    if (!(Number.isSafeInteger(len) && len >= 0)) r = E.EINVAL;
    else if (typeof file === 'number') r = file;
    else if (file.inode.kind !== 'file' || file.inode.fileKind !== 'reg' || !file.writable) r = E.EINVAL;
    else r = file.ops.truncate === undefined ? E.EINVAL : file.ops.truncate(file, this.#cur, len);
    this.#ret(r, 'ftruncate');
  }

  /** `readlink(2)`: the link's target. */
  async readlink(path: string): Promise<string> {
    await this.#enter();
    const task = this.#task;
    const r = this.#kernel.vfs.lookup(String(path), { cred: task.cred, pid: task.pid }, false);
    if (typeof r === 'number') this.#ret(r, 'readlink');
    else if (r.inode.kind !== 'symlink') this.#ret(E.EINVAL, 'readlink');
    else {
      this.#ret(0, 'readlink');
      const t = r.inode.target;
      return typeof t === 'string' ? t : t(task.pid);
    }
    return '';
  }

  /** The names in a directory (`getdents64(2)` on an `O_DIRECTORY` open), sorted, without `.` and `..`. */
  async readdir(path: string): Promise<string[]> {
    await this.#enter();
    const task = this.#task;
    const r = this.#kernel.vfs.lookup(String(path), { cred: task.cred, pid: task.pid }, true);
    if (typeof r === 'number') return (this.#ret(r, 'readdir'), []);
    if (r.inode.kind !== 'dir') return (this.#ret(E.ENOTDIR, 'readdir'), []);
    const perm = permission(r.inode, MAY.READ, task.cred);
    this.#ret(perm, 'readdir');
    return [...dirEntries(r.inode).keys()].sort();
  }

  // --- memory -----------------------------------------------------------------------------------------

  /**
   * `mmap(2)`: returns a {@link Mapping}. Checks in Linux's order: offset not page-aligned `EINVAL`; a file
   * mapping needs an open fd (`EBADF`); zero length `EINVAL`; wrap `ENOMEM`; the map type (`EINVAL`);
   * `EACCES` for a file not open for reading, or writable shared over a read-only open; no `mmap` handler
   * `ENODEV`; then the driver's own checks.
   */
  async mmap(addr: number | bigint | null, length: number | bigint, prot: number, flags: number, fd = -1, offset: number | bigint = 0): Promise<Mapping> {
    await this.#enter();
    const r = this.#mmap(addrOf(addr), sizeOf(length), prot | 0, flags | 0, fd, sizeOf(offset));
    this.#ret(typeof r === 'number' ? r : 0, 'mmap');
    return r as Mapping;
  }

  #mmap(addr: number, length: number, prot: number, flags: number, fd: number, offset: number): Mapping | number {
    const task = this.#task;
    if (!Number.isFinite(offset) || offset % PAGE_SIZE !== 0) return E.EINVAL;
    let file: File | undefined;
    if ((flags & MAP.ANONYMOUS) === 0) {
      const f = this.#file(fd);
      if (typeof f === 'number') return f;
      file = f;
    }
    if (length === 0) return E.EINVAL;
    if (addr < 0) addr = 0;
    const len = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    if (!Number.isFinite(len) || len > TASK_SIZE) return E.ENOMEM;
    const pgoff = offset / PAGE_SIZE;
    const type = flags & MAP.TYPE;
    if (file !== undefined) {
      if (type !== MAP.SHARED && type !== MAP.SHARED_VALIDATE && type !== MAP.PRIVATE) return E.EINVAL;
      if (!file.readable) return E.EACCES;
      if (type !== MAP.PRIVATE && (prot & PROT.WRITE) !== 0 && !file.writable) return E.EACCES;
      if (file.ops.mmap === undefined) return E.ENODEV;
    } else if (type !== MAP.SHARED && type !== MAP.PRIVATE) return E.EINVAL;
    const mmapOp = file?.ops.mmap;
    const a = task.mm.mmap(
      { addr, length: len, prot, flags, file, pgoff: file === undefined ? 0 : pgoff },
      task.cred,
      file === undefined || mmapOp === undefined ? undefined : (vma) => mmapOp(file, this.#cur, vma),
    );
    if (a < 0) return a;
    const vma = task.mm.find(a);
    if (vma === undefined) return E.ENOMEM;
    return new Mapping(task.mm, task, vma);
  }

  /** Validates a page-aligned range: returns `[start, len]` or `-EINVAL` (Linux's munmap/mprotect rules). */
  #range(addr: number | bigint, length: number | bigint, roundStart: boolean): [number, number] | number {
    let a = addrOf(addr);
    let n = sizeOf(length);
    if (a < 0 || !Number.isFinite(n)) return E.EINVAL;
    if (roundStart) {
      n += a % PAGE_SIZE;
      a -= a % PAGE_SIZE;
    } else if (a % PAGE_SIZE !== 0) return E.EINVAL;
    n = Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
    if (a > TASK_SIZE || n > TASK_SIZE - a) return E.ENOMEM;
    return [a, n];
  }

  /** `munmap(2)`: unmapping nothing succeeds. */
  async munmap(addr: number | bigint, length: number | bigint): Promise<void> {
    await this.#enter();
    const r = this.#range(addr, length, false);
    if (typeof r === 'number') return void this.#ret(E.EINVAL, 'munmap');
    if (r[1] === 0) return void this.#ret(E.EINVAL, 'munmap');
    this.#task.mm.unmap(r[0], r[1]);
    this.#ret(0, 'munmap');
  }

  /** `mprotect(2)`. */
  async mprotect(addr: number | bigint, length: number | bigint, prot: number): Promise<void> {
    await this.#enter();
    // do_mprotect_pkey: GROWSDOWN|GROWSUP together EINVAL, unaligned EINVAL, length 0 is 0, wrap ENOMEM,
    // then arch_validate_prot (READ|WRITE|EXEC|SEM; PROT.SEM means nothing on x86).
    const grows = prot & (PROT.GROWSDOWN | PROT.GROWSUP);
    if (grows === (PROT.GROWSDOWN | PROT.GROWSUP)) return void this.#ret(E.EINVAL, 'mprotect');
    const p = prot & ~grows;
    const a = addrOf(addr);
    if (a >= 0 && a % PAGE_SIZE === 0 && sizeOf(length) === 0) return void this.#ret(0, 'mprotect');
    const r = this.#range(addr, length, false);
    if (typeof r === 'number') return void this.#ret(r, 'mprotect');
    if ((p & ~(PROT.READ | PROT.WRITE | PROT.EXEC | PROT.SEM)) !== 0) return void this.#ret(E.EINVAL, 'mprotect');
    this.#ret(r[1] === 0 ? 0 : this.#task.mm.protect(r[0], r[1], p & ~PROT.SEM), 'mprotect');
  }

  /** `mlock(2)`: counts against `RLIMIT_MEMLOCK` unless `CAP_IPC_LOCK`. */
  async mlock(addr: number | bigint, length: number | bigint): Promise<void> {
    await this.#enter();
    // do_mlock: can_do_mlock() first (a zero limit without CAP_IPC_LOCK is EPERM, whatever the range).
    const task = this.#task;
    if (task.mm.memlockLimit === 0 && !task.cred.capable('IPC_LOCK')) return void this.#ret(E.EPERM, 'mlock');
    const r = this.#range(addr, length, true);
    if (typeof r === 'number') return void this.#ret(r === E.EINVAL ? E.ENOMEM : r, 'mlock');
    this.#ret(r[1] === 0 ? 0 : this.#task.mm.lock(r[0], r[1], true, this.#task.cred), 'mlock');
  }

  /** `munlock(2)`. */
  async munlock(addr: number | bigint, length: number | bigint): Promise<void> {
    await this.#enter();
    const r = this.#range(addr, length, true);
    if (typeof r === 'number') return void this.#ret(r === E.EINVAL ? E.ENOMEM : r, 'munlock');
    this.#ret(r[1] === 0 ? 0 : this.#task.mm.lock(r[0], r[1], false, this.#task.cred), 'munlock');
  }

  // --- waiting and events -----------------------------------------------------------------------------

  /**
   * `poll(2)`: fills each entry's `revents` and returns how many are ready; `timeoutMs` < 0 waits forever,
   * 0 returns at once. An fd that is not open reports `POLLNVAL`.
   */
  async poll(fds: PollFd[], timeoutMs: number): Promise<number> {
    await this.#enter();
    if (!Array.isArray(fds) || fds.length > this.#task.fds.limit) return this.#ret(E.EINVAL, 'poll');
    const heads = new Set<WaitHead>();
    const pt: PollTable = { wait: (h) => heads.add(h) };
    const scan = (): number => {
      let ready = 0;
      for (const p of fds) {
        const file = p.fd < 0 ? undefined : this.#task.fds.get(p.fd);
        let m = 0;
        if (p.fd < 0) m = 0;
        else if (file === undefined) m = POLL.NVAL;
        else m = (file.ops.poll?.(file, this.#cur, pt) ?? (POLL.IN | POLL.OUT | POLL.RDNORM | POLL.WRNORM)) & ((p.events | 0) | POLL.ERR | POLL.HUP | POLL.NVAL);
        p.revents = m;
        if (m !== 0) ready++;
      }
      return ready;
    };
    let ready = scan();
    if (ready > 0 || timeoutMs === 0) return this.#ret(ready, 'poll');
    const wake = new WaitHead('poll');
    const removers = [...heads].map((h) => h.addPoller(() => wake.wake()));
    const timeout = Number.isFinite(timeoutMs) && timeoutMs > 0 ? Math.round(timeoutMs * 1e6) : undefined;
    const fdList = fds.map((p) => p.fd).join(', ');
    const r = await this.#waitEvent(wake, () => (ready = scan()) > 0, `poll(fds ${fdList})`, timeout);
    for (const rm of removers) rm();
    return this.#ret(r === E.ETIMEDOUT ? 0 : r < 0 ? r : ready, 'poll');
  }

  /** `eventfd2(2)`; returns the fd. */
  async eventfd(initval = 0, flags = 0): Promise<number> {
    await this.#enter();
    if ((flags & ~(EFD.CLOEXEC | EFD.NONBLOCK | EFD.SEMAPHORE)) !== 0) return this.#ret(E.EINVAL, 'eventfd');
    const f = createEventfd(Math.max(0, initval >>> 0), (flags & EFD.SEMAPHORE) !== 0, flags & O.NONBLOCK);
    const fd = this.#task.fds.install(f, (flags & EFD.CLOEXEC) !== 0);
    if (fd < 0) f.put();
    return this.#ret(fd, 'eventfd');
  }

  /** `memfd_create(2)`; returns the fd. */
  async memfd_create(name: string, flags = 0): Promise<number> {
    await this.#enter();
    const b = this.#kernel.behaviour;
    const known = MFD.CLOEXEC | MFD.ALLOW_SEALING | (b.memfdExecFlags ? MFD.NOEXEC_SEAL | MFD.EXEC : 0);
    const n = String(name);
    let r: number;
    if ((flags & ~known) !== 0 || (flags & MFD.HUGETLB) !== 0) r = E.EINVAL;
    else if ((flags & MFD.NOEXEC_SEAL) !== 0 && (flags & MFD.EXEC) !== 0) r = E.EINVAL;
    else if (encoder.encode(n).length > MFD_NAME_MAX_LEN) r = E.EINVAL;
    else {
      if (b.memfdExecFlags && (flags & (MFD.EXEC | MFD.NOEXEC_SEAL)) === 0) {
        this.#kernel.log.printk('warn', `${this.#task.comm}[${this.#task.pid}]: memfd_create() called without MFD_EXEC or MFD_NOEXEC_SEAL set`);
      }
      const sealing = (flags & (MFD.ALLOW_SEALING | MFD.NOEXEC_SEAL)) !== 0;
      const f = createMemfd(n, sealing, this.#kernel.userPages, 0);
      r = this.#task.fds.install(f, (flags & MFD.CLOEXEC) !== 0);
      if (r < 0) f.put();
    }
    return this.#ret(r, 'memfd_create');
  }

  /** `nanosleep(2)` for `ns` virtual nanoseconds. */
  async nanosleep(ns: number | bigint): Promise<void> {
    await this.#enter();
    const n = typeof ns === 'bigint' ? Number(ns) : ns;
    if (!(Number.isFinite(n) && n >= 0)) return void this.#ret(E.EINVAL, 'nanosleep');
    this.#sleep ??= new WaitHead(`nanosleep(${this.#thread.name})`);
    const r = await this.#waitEvent(this.#sleep, () => false, `nanosleep(${n} ns)`, Math.round(n));
    this.#ret(r === E.ETIMEDOUT ? 0 : r, 'nanosleep');
  }

  /** `clock_gettime(2)`: virtual time in ns (every clock counts from boot). */
  async clock_gettime(clock: number = CLOCK.MONOTONIC): Promise<number> {
    await this.#enter();
    const ok = (Object.values(CLOCK) as number[]).includes(clock);
    return this.#ret(ok ? this.#thread.localTime : E.EINVAL, 'clock_gettime');
  }

  /** `sched_yield(2)`: lets every other runnable thread run. */
  async sched_yield(): Promise<void> {
    await this.#enter();
    await this.#thread.delay(0);
    this.#ret(0, 'sched_yield');
  }

  /** `getpid(2)`. */
  async getpid(): Promise<number> {
    await this.#enter();
    return this.#ret(this.#task.pid, 'getpid');
  }

  /** `getuid(2)`. */
  async getuid(): Promise<number> {
    await this.#enter();
    return this.#ret(this.#task.cred.uid, 'getuid');
  }

  /** `kill(2)`: signal 0 checks only; every other known signal terminates the target. */
  async kill(pid: number, signal: number): Promise<void> {
    await this.#enter();
    const target = this.#kernel.task(pid);
    let r = 0;
    if (target === undefined || target.dead) r = E.ESRCH;
    else if (!(Number.isInteger(signal) && signal >= 0 && signal <= 64)) r = E.EINVAL;
    else if (target.cred.uid !== this.#task.cred.uid && !this.#task.cred.capable('KILL')) r = E.EPERM;
    else if (signal !== 0) target.exit(128 + signal, signal);
    this.#ret(r, 'kill');
  }

  /** `exit_group(2)`: ends every thread of the process with `status`. */
  async exit(status = 0): Promise<never> {
    await this.#enter();
    this.#task.exit(status);
    throw new TaskExit(this.#task.pid);
  }

  /**
   * Starts a thread sharing this process's fds and memory (`pthread_create`); its blocking calls block
   * only itself. The process ends when `main` returns, whatever its threads are doing (as `exit()` does).
   */
  thread(fn: (sys: Sys) => Promise<unknown>): Thread {
    const t = this.#kernel.startThread(this.#task, fn, this.#thread);
    return t;
  }
}
