import { E } from '../errno.ts';
import { putShm, resizeShm, shmPage, createShm } from '../mm/shm.ts';
import type { UserPages } from '../mm/pages.ts';
import type { ShmObject, Vma } from '../mm/vma.ts';
import type { Current } from '../task/current.ts';
import { F, MAP, O, PAGE_SIZE, PROT } from '../uapi/linux.ts';
import { File, type UserBuf, type FileOperations } from './file.ts';
import { fileInode } from './inode.ts';

/** The memfd behind an open file. */
export interface Memfd {
  readonly obj: ShmObject;
  readonly pages: UserPages;
}

function io(file: File, ubuf: UserBuf, pos: number, write: boolean): number {
  let buf: Uint8Array;
  if (write) {
    const b = ubuf.bytes();
    if (typeof b === 'number') return b;
    buf = b;
  } else buf = new Uint8Array(Math.max(0, Math.min(ubuf.length, (file.private as Memfd).obj.size - pos)));
  const n = ioBytes(file, buf, pos, write);
  if (n <= 0 || write) return n;
  const r = ubuf.copyOut(buf.subarray(0, n));
  return r < 0 ? r : n;
}

function ioBytes(file: File, buf: Uint8Array, pos: number, write: boolean): number {
  const m = file.private as Memfd;
  const obj = m.obj;
  let len = write ? buf.length : Math.min(buf.length, obj.size - pos);
  if (write) {
    // generic_write_checks: a zero count returns 0 before shmem_write_begin looks at the seals.
    if (len === 0) return 0;
    if ((obj.seals & (F.SEAL_WRITE | F.SEAL_FUTURE_WRITE)) !== 0) return E.EPERM;
    const end = pos + len;
    if (end > obj.size) {
      if ((obj.seals & F.SEAL_GROW) !== 0) {
        // generic_perform_write goes page by page; shmem_write_begin refuses the first chunk that would
        // pass i_size, so the whole pages before it are written (a short count), else EPERM.
        const firstChunkEnd = Math.min(end, (Math.floor(pos / PAGE_SIZE) + 1) * PAGE_SIZE);
        if (firstChunkEnd > obj.size) return E.EPERM;
        len = Math.floor(obj.size / PAGE_SIZE) * PAGE_SIZE - pos;
      } else {
        const r = resizeShm(obj, end, m.pages);
        if (r < 0) return r;
      }
    }
  } else if (pos >= obj.size) return 0;
  for (let done = 0; done < len;) {
    const a = pos + done;
    const page = shmPage(obj, Math.floor(a / PAGE_SIZE), m.pages);
    if (typeof page === 'number') return done > 0 ? done : page;
    const off = a % PAGE_SIZE;
    const n = Math.min(len - done, PAGE_SIZE - off);
    if (write) page.set(buf.subarray(done, done + n), off);
    else buf.set(page.subarray(off, off + n), done);
    done += n;
  }
  return len;
}

const memfdOps: FileOperations = {
  read: (file: File, _cur: Current, buf: UserBuf, pos: number): number => io(file, buf, pos, false),
  write: (file: File, _cur: Current, buf: UserBuf, pos: number): number => io(file, buf, pos, true),
  size: (file: File): number => (file.private as Memfd).obj.size,
  truncate(file: File, _cur: Current, length: number): number {
    const m = file.private as Memfd;
    const obj = m.obj;
    if (length < obj.size && (obj.seals & F.SEAL_SHRINK) !== 0) return E.EPERM;
    if (length > obj.size && (obj.seals & F.SEAL_GROW) !== 0) return E.EPERM;
    return resizeShm(obj, length, m.pages);
  },
  mmap(file: File, _cur: Current, vma: Vma): number {
    const m = file.private as Memfd;
    const shared = (vma.flags & MAP.TYPE) !== MAP.PRIVATE;
    // memfd's seals: no new writable shared mapping once F_SEAL_WRITE or F_SEAL_FUTURE_WRITE is set.
    if (shared && (vma.prot & PROT.WRITE) !== 0 && (m.obj.seals & (F.SEAL_WRITE | F.SEAL_FUTURE_WRITE)) !== 0) return E.EPERM;
    const len = vma.end - vma.start;
    // A private mapping gets its own buffer: more than all of RAM is ENOMEM (see Mm.mmap).
    if (!shared && len / PAGE_SIZE > m.pages.totalPages) return E.ENOMEM;
    // seal_check_write (6.7+): a read-only shared mapping of a write-sealed memfd loses VM_MAYWRITE.
    if (shared && (m.obj.seals & (F.SEAL_WRITE | F.SEAL_FUTURE_WRITE)) !== 0) vma.noMayWrite = true;
    m.obj.refs++;
    if (shared) vma.backing = { kind: 'shm', obj: m.obj };
    else {
      vma.backing = { kind: 'anon', buffer: new ArrayBuffer(len), bufferOffset: 0, frames: new Int32Array(len / PAGE_SIZE).fill(-1), cow: { obj: m.obj } };
    }
    return 0;
  },
  release(file: File): void {
    const m = file.private as Memfd;
    putShm(m.obj, m.pages);
  },
};

/** A new memfd file (`/memfd:<name> (deleted)`, `O_RDWR`), sealable when `allowSealing`. */
export function createMemfd(name: string, allowSealing: boolean, pages: UserPages, flags: number): File {
  const obj = createShm(`/memfd:${name}`, allowSealing ? 0 : F.SEAL_SEAL);
  const f = new File(fileInode('reg', memfdOps, 0o777), memfdOps, `/memfd:${name} (deleted)`, O.RDWR | flags);
  f.private = { obj, pages } satisfies Memfd;
  return f;
}

/** The memfd behind `file`, if it is one. */
export function memfdOf(file: File): Memfd | undefined {
  return file.ops === memfdOps ? (file.private as Memfd) : undefined;
}

/**
 * `fcntl(F_ADD_SEALS)` (Linux `memfd_add_seals`, in its order): `EPERM` without write access, `EINVAL`
 * for unknown bits, `EINVAL` for a file that is no memfd, `EPERM` once sealed with `F_SEAL_SEAL`, `EBUSY` for
 * `F_SEAL_WRITE` while writable shared mappings or pinned pages exist.
 */
export function addSeals(file: File, seals: number): number {
  const known = F.SEAL_SEAL | F.SEAL_SHRINK | F.SEAL_GROW | F.SEAL_WRITE | F.SEAL_FUTURE_WRITE | F.SEAL_EXEC;
  // memfd_add_seals checks FMODE_WRITE and the bits before memfd_file_seals_ptr: a read-only non-memfd is EPERM.
  if (!file.writable) return E.EPERM;
  if ((seals & ~known) !== 0) return E.EINVAL;
  const m = memfdOf(file);
  if (m === undefined) return E.EINVAL;
  if ((m.obj.seals & F.SEAL_SEAL) !== 0) return E.EPERM;
  if ((seals & F.SEAL_WRITE) !== 0 && (m.obj.seals & F.SEAL_WRITE) === 0) {
    // mapping_deny_writable, then memfd_wait_for_pins: a pinned page (DMA in flight) makes it EBUSY too.
    if (m.obj.writableMaps > 0 || m.obj.frames.some((f) => f >= 0 && m.pages.pinCount(f) > 0)) return E.EBUSY;
  }
  m.obj.seals |= seals;
  return 0;
}
