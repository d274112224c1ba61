import { E } from '../errno.ts';
import type { Current } from '../task/current.ts';
import { PAGE_SIZE, S } from '../uapi/linux.ts';
import type { Vma } from '../mm/vma.ts';
import type { File, FileOperations, UserBuf } from './file.ts';
import { fileInode, type FileInode } from './inode.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A text attribute's handlers (Linux `struct device_attribute`): both return `-errno` on failure. */
export interface AttrHandlers {
  /** The text a read returns (`sysfs_emit`), or `-errno`. */
  show?: (cur: Current) => string | number;
  /** Handles a write of `text` (at most a page, as kernfs passes it); returns the bytes consumed or `-errno`. */
  store?: (text: string, cur: Current) => number | Promise<number>;
}

/** A binary attribute's handlers (Linux `struct bin_attribute`): `config`, `resource<N>`. */
export interface BinAttrHandlers {
  /** The attribute's size (reads and writes are clipped to it; `size()` may depend on the reader). */
  size: number | ((cur: Current | undefined) => number);
  read?: (cur: Current, dst: Uint8Array, pos: number) => number;
  write?: (cur: Current, src: Uint8Array, pos: number) => number;
  mmap?: (cur: Current, vma: Vma) => number;
}

/**
 * kernfs's open check for sysfs: a write open needs a write bit in the mode and a store, a read open a read
 * bit and a show, else `EACCES` even for root (`KERNFS_ROOT_EXTRA_OPEN_PERM_CHECK`).
 */
function kernfsOpenCheck(hasRead: boolean, hasWrite: boolean, mode: number): (flags: number) => number {
  return (flags: number): number => {
    const acc = flags & 3;
    if (acc !== 0 && ((mode & S.IWUGO) === 0 || !hasWrite)) return E.EACCES;
    if (acc !== 1 && ((mode & S.IRUGO) === 0 || !hasRead)) return E.EACCES;
    return 0;
  };
}

/** A sysfs text attribute with `mode` (e.g. `0o444`, `0o200`, `0o644`). */
export function sysfsAttr(mode: number, h: AttrHandlers): FileInode {
  const ops: FileOperations = {
    read(_f: File, cur: Current, buf: UserBuf, pos: number): number {
      if (h.show === undefined) return E.EIO;
      const text = h.show(cur);
      if (typeof text === 'number') return text;
      const bytes = encoder.encode(text);
      if (pos >= bytes.length) return 0;
      const n = Math.min(buf.length, bytes.length - pos);
      const r = buf.copyOut(bytes.subarray(pos, pos + n));
      return r < 0 ? r : n;
    },
    write(_f: File, cur: Current, buf: UserBuf): number | Promise<number> {
      if (h.store === undefined) return E.EIO;
      const len = Math.min(buf.length, PAGE_SIZE);
      if (len === 0) return 0;
      const src = new Uint8Array(len);
      const r = buf.copyIn(src);
      if (r < 0) return r;
      return h.store(decoder.decode(src), cur);
    },
    // A sysfs attribute is seekable over its page.
    size: () => PAGE_SIZE,
  };
  return fileInode('reg', ops, mode, { openCheck: kernfsOpenCheck(h.show !== undefined, h.store !== undefined, mode) });
}

/** A sysfs binary attribute with `mode`. */
export function sysfsBinAttr(mode: number, h: BinAttrHandlers): FileInode {
  const sizeOf = (cur: Current | undefined): number => (typeof h.size === 'number' ? h.size : h.size(cur));
  const ops: FileOperations = {
    read(_f: File, cur: Current, buf: UserBuf, pos: number): number {
      // sysfs_kf_bin_read: nothing asked or past the end is 0, before the missing-read -EIO.
      const size = sizeOf(cur);
      if (buf.length === 0 || pos >= size) return 0;
      if (h.read === undefined) return E.EIO;
      const dst = new Uint8Array(Math.min(buf.length, size - pos));
      const n = h.read(cur, dst, pos);
      if (n <= 0) return n;
      const r = buf.copyOut(dst.subarray(0, n));
      return r < 0 ? r : n;
    },
    write(_f: File, cur: Current, buf: UserBuf, pos: number): number {
      if (h.write === undefined) return E.EIO;
      const size = sizeOf(cur);
      if (pos >= size) return buf.length === 0 ? 0 : E.EFBIG;
      const src = new Uint8Array(Math.min(buf.length, size - pos));
      const r = buf.copyIn(src);
      if (r < 0) return r;
      return h.write(cur, src, pos);
    },
    ...(h.mmap === undefined ? {} : { mmap: (_f: File, cur: Current, vma: Vma): number => (h.mmap as NonNullable<typeof h.mmap>)(cur, vma) }),
    size: () => sizeOf(undefined),
  };
  const hasRead = h.read !== undefined || h.mmap !== undefined;
  const hasWrite = h.write !== undefined || h.mmap !== undefined;
  return fileInode('reg', ops, mode, { openCheck: kernfsOpenCheck(hasRead, hasWrite, mode) });
}

/**
 * The target of a sysfs link made in directory `fromDir` to `to`, as kernfs writes it
 * (`kernfs_get_target_path`): up to the nearest directory that is a strict ancestor of the target, then
 * down, so a link to an ancestor names it (`../../../0000:00:03.0`, not `../..`).
 */
export function relativeLink(fromDir: string, to: string): string {
  const a = fromDir.split('/').filter((p) => p.length > 0);
  const b = to.split('/').filter((p) => p.length > 0);
  let i = 0;
  while (i < a.length && i < b.length - 1 && a[i] === b[i]) i++;
  return [...Array.from({ length: a.length - i }, () => '..'), ...b.slice(i)].join('/');
}
