import { E } from '../errno.ts';
import type { Current } from '../task/current.ts';
import type { Vma } from '../mm/vma.ts';
import type { WaitHead } from '../wait.ts';
import type { Inode } from './inode.ts';

/** What copies to and from a process's memory (its `Mm`). */
export interface UserCopy {
  copyFromUser(addr: number, dst: Uint8Array): number;
  copyToUser(addr: number, src: Uint8Array): number;
}

/**
 * The user buffer of a `read` or `write` (Linux's `char __user *buf, size_t count`): handlers check
 * `length` first, as Linux's do, then copy with {@link copyOut} / {@link copyIn}, each returning 0 or
 * `-EFAULT` for a bad user range (so the order of checks is the handler's own, as on Linux). A buffer
 * given as a `Uint8Array` never faults.
 */
export class UserBuf {
  /** Bytes the caller asked for (`count`). */
  readonly length: number;
  readonly #copy: UserCopy | undefined;
  readonly #addr: number;
  readonly #array: Uint8Array | undefined;

  private constructor(length: number, array: Uint8Array | undefined, copy: UserCopy | undefined, addr: number) {
    this.length = length;
    this.#array = array;
    this.#copy = copy;
    this.#addr = addr;
  }

  /** A buffer over a `Uint8Array` of the calling program. */
  static of(array: Uint8Array): UserBuf {
    return new UserBuf(array.length, array, undefined, 0);
  }

  /** A buffer at user address `addr` in `mm` (-1: an address no process can have). */
  static at(mm: UserCopy, addr: number, length: number): UserBuf {
    return new UserBuf(length, undefined, mm, addr);
  }

  /** Copies `src` into the user buffer at `off` (Linux `copy_to_user`). */
  copyOut(src: Uint8Array, off = 0): number {
    if (off + src.length > this.length) return E.EFAULT;
    if (this.#array !== undefined) {
      this.#array.set(src, off);
      return 0;
    }
    return this.#addr < 0 ? E.EFAULT : (this.#copy as UserCopy).copyToUser(this.#addr + off, src);
  }

  /** Copies from the user buffer at `off` into `dst` (Linux `copy_from_user`). */
  copyIn(dst: Uint8Array, off = 0): number {
    if (off + dst.length > this.length) return E.EFAULT;
    if (this.#array !== undefined) {
      dst.set(this.#array.subarray(off, off + dst.length));
      return 0;
    }
    return this.#addr < 0 ? E.EFAULT : (this.#copy as UserCopy).copyFromUser(this.#addr + off, dst);
  }

  /** The whole buffer copied in, or `-EFAULT`. */
  bytes(): Uint8Array | number {
    if (this.#array !== undefined) return this.#array;
    const out = new Uint8Array(this.length);
    const r = this.copyIn(out);
    return r < 0 ? r : out;
  }
}

/**
 * A poll table (Linux `poll_table`): a file's `poll` calls {@link PollTable.wait} for each wait head whose
 * wake-up may change its mask, then returns the mask.
 */
export interface PollTable {
  wait(head: WaitHead): void;
}

/**
 * What a file does (Linux `struct file_operations`). Every handler returns Linux's value: a count or 0 on
 * success, `-errno` on failure. A handler that must sleep returns a promise (it waits with
 * {@link Current.waitEvent}); one that never sleeps returns the number directly, so the syscall path awaits
 * nothing extra. Absent handlers get the VFS default (e.g. no `read` -> `EINVAL`, no `ioctl` -> `ENOTTY`,
 * no `mmap` -> `ENODEV`).
 */
export interface FileOperations {
  /** At open, after the permission check; may refuse with `-errno`. */
  open?: (file: File, cur: Current) => number | Promise<number>;
  /** At the last close of the open file (every fd and mapping gone). */
  release?: (file: File) => void;
  /** Reads into `buf` at position `pos` (the caller moves `file.pos` by the count for `read`). */
  read?: (file: File, cur: Current, buf: UserBuf, pos: number) => number | Promise<number>;
  /** Writes from `buf` at `pos`. */
  write?: (file: File, cur: Current, buf: UserBuf, pos: number) => number | Promise<number>;
  /** Returns the new position or `-errno`; absent: the generic rules over `size`. */
  llseek?: (file: File, offset: number, whence: number) => number;
  /**
   * Positional I/O (`pread`/`pwrite`) allowed although the file is not a regular one: Linux's
   * `FMODE_PREAD`/`FMODE_PWRITE`, which anon-inode files lack unless their driver sets them (VFIO device
   * fds do). Without it an anon-inode file gives `ESPIPE`, whatever its `llseek`.
   */
  pread?: boolean;
  /** `arg` is Linux's `unsigned long`: a value or a user address, as the request defines. */
  ioctl?: (file: File, cur: Current, request: number, arg: bigint) => number | Promise<number>;
  /** Sets up `vma` (its backing and flags) or refuses with `-errno`. */
  mmap?: (file: File, cur: Current, vma: Vma) => number;
  /** The current event mask; registers wait heads with `pt`. */
  poll?: (file: File, cur: Current, pt: PollTable) => number;
  /** Current size, for `SEEK_END` and `ftruncate` (regular files). */
  size?: (file: File) => number;
  /** `ftruncate`; absent: `EINVAL`. */
  truncate?: (file: File, cur: Current, length: number) => number;
}

/** An open file description (Linux `struct file`), shared by `dup`ed fds and by mappings of it. */
export class File {
  /** The inode it was opened from (anonymous inodes for eventfd, memfd). */
  readonly inode: Inode;
  readonly ops: FileOperations;
  /** The path it was opened by (for `/proc/self/fd` and traces). */
  readonly path: string;
  /** `O_*` status flags (access mode, `O_NONBLOCK`, `O_APPEND`); `fcntl(F_SETFL)` changes some. */
  flags: number;
  /** Current position. */
  pos = 0;
  /** Driver-private state (Linux `file->private_data`). */
  private: unknown = undefined;
  /** References: fds and mappings. The last `put` calls `release`. */
  refs = 1;

  constructor(inode: Inode, ops: FileOperations, path: string, flags: number) {
    this.inode = inode;
    this.ops = ops;
    this.path = path;
    this.flags = flags;
  }

  /** Whether the access mode allows reading. */
  get readable(): boolean {
    return (this.flags & 3) !== 1;
  }

  /** Whether the access mode allows writing. */
  get writable(): boolean {
    return (this.flags & 3) !== 0;
  }

  /** Takes a reference. */
  get(): this {
    this.refs++;
    return this;
  }

  /** Drops a reference; the last one releases the file. */
  put(): void {
    if (--this.refs === 0) this.ops.release?.(this);
  }
}
