import { SimInvariantError } from '../sim/index.ts';

/**
 * Linux's errno values on x86-64 (spec/linux-uapi.md section 7) and the `SysError` the process API throws.
 * Kernel code returns `-errno` as Linux does; only the syscall boundary turns it into an exception.
 */

/** errno names -> Linux x86-64 values. */
export const Errno = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, ENOEXEC: 8, EBADF: 9, ECHILD: 10,
  EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16, EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20,
  EISDIR: 21, EINVAL: 22, ENFILE: 23, EMFILE: 24, ENOTTY: 25, ETXTBSY: 26, EFBIG: 27, ENOSPC: 28, ESPIPE: 29,
  EROFS: 30, EMLINK: 31, EPIPE: 32, ERANGE: 34, EDEADLK: 35, ENAMETOOLONG: 36, ENOSYS: 38, ENOTEMPTY: 39,
  ELOOP: 40, ENOMSG: 42, ENODATA: 61, EOVERFLOW: 75, EBADFD: 77, EUSERS: 87, EMSGSIZE: 90, EOPNOTSUPP: 95,
  EADDRINUSE: 98, ETIMEDOUT: 110,
  // Kernel-internal codes (include/linux/errno.h): never allowed to reach user space.
  ERESTARTSYS: 512, ENOIOCTLCMD: 515, EPROBE_DEFER: 517, ENOTSUPP: 524,
} as const;

/** An errno name. */
export type ErrnoCode = keyof typeof Errno;

/** Codes only the kernel may see; the syscall boundary maps them (ENOIOCTLCMD -> ENOTTY, ERESTARTSYS -> EINTR). */
export const KERNEL_ONLY_ERRNOS: ReadonlySet<number> = new Set([512, 515, 517, 524]);

const NAMES: ReadonlyMap<number, ErrnoCode> = new Map(
  (Object.entries(Errno) as [ErrnoCode, number][]).map(([k, v]) => [v, k] as const),
);

/** Messages as Node prints them (libuv's strings; strerror's, lower-cased, where libuv has none). */
const MESSAGES: Partial<Record<ErrnoCode, string>> = {
  EPERM: 'operation not permitted', ENOENT: 'no such file or directory', ESRCH: 'no such process',
  EINTR: 'interrupted system call', EIO: 'i/o error', ENXIO: 'no such device or address',
  E2BIG: 'argument list too long', ENOEXEC: 'exec format error', EBADF: 'bad file descriptor',
  ECHILD: 'no child processes', EAGAIN: 'resource temporarily unavailable', ENOMEM: 'not enough memory',
  EACCES: 'permission denied', EFAULT: 'bad address in system call argument', EBUSY: 'resource busy or locked',
  EEXIST: 'file already exists', EXDEV: 'cross-device link not permitted', ENODEV: 'no such device',
  ENOTDIR: 'not a directory', EISDIR: 'illegal operation on a directory', EINVAL: 'invalid argument',
  ENFILE: 'file table overflow', EMFILE: 'too many open files', ENOTTY: 'inappropriate ioctl for device',
  ETXTBSY: 'text file is busy', EFBIG: 'file too large', ENOSPC: 'no space left on device',
  ESPIPE: 'invalid seek', EROFS: 'read-only file system', EMLINK: 'too many links', EPIPE: 'broken pipe',
  ERANGE: 'result too large', EDEADLK: 'resource deadlock avoided', ENAMETOOLONG: 'name too long',
  ENOSYS: 'function not implemented', ENOTEMPTY: 'directory not empty',
  ELOOP: 'too many symbolic links encountered', ENOMSG: 'no message of desired type', ENODATA: 'no data available',
  EOVERFLOW: 'value too large for defined data type', EBADFD: 'file descriptor in bad state',
  EUSERS: 'too many users', EMSGSIZE: 'message too long', EOPNOTSUPP: 'operation not supported on socket',
  EADDRINUSE: 'address already in use', ETIMEDOUT: 'connection timed out',
};

/** The name of errno value `errno` (e.g. 22 -> 'EINVAL'), or `undefined` for a value Linux does not define here. */
export function errnoName(errno: number): ErrnoCode | undefined {
  return NAMES.get(errno);
}

/**
 * The error every syscall of the process API throws, shaped like Node's fs errors: `code: 'EINVAL'`,
 * `errno: 22` (Linux's positive value), `syscall: 'ioctl'`, message `'EINVAL: invalid argument, ioctl'`.
 */
export class SysError extends Error {
  override name = 'SysError';
  /** The errno name. */
  readonly code: ErrnoCode;
  /** Linux's positive errno value. */
  readonly errno: number;
  /** The syscall that failed. */
  readonly syscall: string;

  constructor(code: ErrnoCode, syscall: string) {
    super(`${code}: ${MESSAGES[code] ?? code.toLowerCase()}, ${syscall}`);
    this.code = code;
    this.errno = Errno[code];
    this.syscall = syscall;
  }

  /** The error for a kernel return value `-errno` (kernel-only codes mapped as the syscall exit path does). */
  static fromReturn(ret: number, syscall: string): SysError {
    return new SysError(userErrno(-ret), syscall);
  }
}

/** The errno user space sees for kernel code `errno`: ENOIOCTLCMD -> ENOTTY, ERESTARTSYS -> EINTR. */
export function userErrno(errno: number): ErrnoCode {
  if (errno === Errno.ENOIOCTLCMD) return 'ENOTTY';
  if (errno === Errno.ERESTARTSYS) return 'EINTR';
  const name = NAMES.get(errno);
  // Any other kernel-only or unknown code escaping a handler is a bug in the mock kernel, not an errno.
  if (name === undefined || KERNEL_ONLY_ERRNOS.has(errno)) throw new SimInvariantError(`kernel returned errno ${errno} to user space`);
  return name;
}

/** `-Errno[code]`, for kernel code that returns errors as Linux does (`return -EINVAL`). */
export const E = Object.fromEntries(
  (Object.entries(Errno) as [ErrnoCode, number][]).map(([k, v]) => [k, -v]),
) as { readonly [K in ErrnoCode]: number };
