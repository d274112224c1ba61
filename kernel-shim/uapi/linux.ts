/**
 * Generic Linux x86-64 constants the process API takes and returns: `fcntl.h`, `mman.h`, `poll.h`,
 * `eventfd.h`, `memfd.h`, `time.h`, `resource.h`, `signal.h`, `capability.h`. Values are Linux's.
 */

/** `open(2)` flags (octal, as in `asm-generic/fcntl.h`). */
export const O = {
  RDONLY: 0o0, WRONLY: 0o1, RDWR: 0o2, ACCMODE: 0o3, CREAT: 0o100, EXCL: 0o200, NOCTTY: 0o400, TRUNC: 0o1000,
  APPEND: 0o2000, NONBLOCK: 0o4000, DSYNC: 0o10000, DIRECT: 0o40000, LARGEFILE: 0o100000, DIRECTORY: 0o200000,
  NOFOLLOW: 0o400000, CLOEXEC: 0o2000000, SYNC: 0o4010000, PATH: 0o10000000,
} as const;

/** `fcntl(2)` commands and flags. */
export const F = {
  DUPFD: 0, GETFD: 1, SETFD: 2, GETFL: 3, SETFL: 4, DUPFD_CLOEXEC: 1030, ADD_SEALS: 1033, GET_SEALS: 1034,
  FD_CLOEXEC: 1,
  SEAL_SEAL: 0x1, SEAL_SHRINK: 0x2, SEAL_GROW: 0x4, SEAL_WRITE: 0x8, SEAL_FUTURE_WRITE: 0x10, SEAL_EXEC: 0x20,
} as const;

/** `lseek(2)` whence. */
export const SEEK = { SET: 0, CUR: 1, END: 2, DATA: 3, HOLE: 4 } as const;

/** `mmap(2)` protections (asm-generic/mman-common.h); `SEM` and the `GROWS*` flags matter only to `mprotect`. */
export const PROT = { NONE: 0, READ: 1, WRITE: 2, EXEC: 4, SEM: 0x8, GROWSDOWN: 0x0100_0000, GROWSUP: 0x0200_0000 } as const;

/** `mmap(2)` flags. */
export const MAP = {
  SHARED: 0x01, PRIVATE: 0x02, SHARED_VALIDATE: 0x03, TYPE: 0x0f, FIXED: 0x10, ANONYMOUS: 0x20,
  GROWSDOWN: 0x100, DENYWRITE: 0x800, EXECUTABLE: 0x1000, LOCKED: 0x2000, NORESERVE: 0x4000, POPULATE: 0x8000,
  NONBLOCK: 0x10000, STACK: 0x20000, HUGETLB: 0x40000, SYNC: 0x80000, FIXED_NOREPLACE: 0x100000,
} as const;

/** `poll(2)` events. */
export const POLL = {
  IN: 0x001, PRI: 0x002, OUT: 0x004, ERR: 0x008, HUP: 0x010, NVAL: 0x020, RDNORM: 0x040, RDBAND: 0x080,
  WRNORM: 0x100, WRBAND: 0x200, MSG: 0x400, RDHUP: 0x2000,
} as const;

/** `eventfd(2)` flags. */
export const EFD = { SEMAPHORE: 0o1, CLOEXEC: 0o2000000, NONBLOCK: 0o4000 } as const;

/** `memfd_create(2)` flags. */
export const MFD = { CLOEXEC: 0x1, ALLOW_SEALING: 0x2, HUGETLB: 0x4, NOEXEC_SEAL: 0x8, EXEC: 0x10 } as const;

/** Clocks for `clock_gettime(2)`. */
export const CLOCK = { REALTIME: 0, MONOTONIC: 1, PROCESS_CPUTIME_ID: 2, THREAD_CPUTIME_ID: 3, MONOTONIC_RAW: 4, BOOTTIME: 7 } as const;

/** Signals (x86-64). */
export const SIG = { HUP: 1, INT: 2, KILL: 9, TERM: 15 } as const;

/** Capabilities (`linux/capability.h`). */
export const CAP = {
  CHOWN: 0, DAC_OVERRIDE: 1, DAC_READ_SEARCH: 2, FOWNER: 3, KILL: 5, SETUID: 7, SYS_RAWIO: 17, SYS_ADMIN: 21,
  SYS_RESOURCE: 24, IPC_LOCK: 14, SYS_NICE: 23,
} as const;

/** A capability name, e.g. `'SYS_ADMIN'`. */
export type CapName = keyof typeof CAP;

/** Page size and shift (x86-64). */
export const PAGE_SIZE = 4096;
/** log2 of {@link PAGE_SIZE}. */
export const PAGE_SHIFT = 12;

/** File-type bits of `st_mode`. */
export const S = {
  IFMT: 0o170000, IFSOCK: 0o140000, IFLNK: 0o120000, IFREG: 0o100000, IFDIR: 0o040000, IFCHR: 0o020000,
  IRUGO: 0o444, IWUGO: 0o222, IXUGO: 0o111,
} as const;
