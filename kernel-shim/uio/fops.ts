import { invariant } from '../../sim/index.ts';
import { E } from '../errno.ts';
import type { File, FileOperations, PollTable, UserBuf } from '../fs/file.ts';
import type { Vma } from '../mm/vma.ts';
import type { Current } from '../task/current.ts';
import { O, PAGE_SHIFT, PAGE_SIZE, POLL } from '../uapi/linux.ts';
import type { UioDevice } from './core.ts';
import { MAX_UIO_MAPS, UIO_MEM, type UioMem } from './info.ts';

/** One open file of `/dev/uioN` (Linux `struct uio_listener`): the event count it last returned. */
export interface UioListener {
  readonly dev: UioDevice;
  eventCount: number;
  /** The wake-up condition of a blocked read, made once per open (not per read). */
  ready?: () => boolean;
}

/** Bytes a read or write of `/dev/uioN` must ask for (`sizeof(s32)`). */
const S32 = 4;
const PAGE_MASK = BigInt(PAGE_SIZE - 1);

function listenerOf(file: File): UioListener {
  const l = file.private as UioListener | undefined;
  invariant(l !== undefined, () => `${file.path}: no uio listener`);
  return l;
}

/** The lowest fd of the calling process holding `file`, for wait descriptions. */
function fdOf(file: File, cur: Current): number {
  const fds = cur.task.fds;
  return fds.fds().find((n) => fds.get(n) === file) ?? -1;
}

/** Linux `uio_open`: the listener's baseline is the count now; then `info->open`. */
function uioOpen(file: File, cur: Current): number {
  const idev = (file.inode.kind === 'file' ? file.inode.data : undefined) as UioDevice | undefined;
  // The node goes at unregister, so only an inode looked up before then can get here: Linux's idr miss.
  if (idev === undefined) return E.ENODEV;
  const listener: UioListener = { dev: idev, eventCount: idev.event };
  const info = idev.info;
  if (info === null) return E.EINVAL;
  if (info.open !== undefined) {
    const r = info.open(info, cur);
    if (r !== 0) return r;
  }
  file.private = listener;
  return 0;
}

/** Linux `uio_release`: `info->release` if the device is still registered. */
function uioRelease(file: File): void {
  const l = file.private as UioListener | undefined;
  if (l === undefined) return;
  const info = l.dev.info;
  if (info !== null && info.release !== undefined) info.release(info);
  file.private = undefined;
}

/**
 * Linux `uio_read`, in its order: `count != 4` `EINVAL`; then, in a loop, no device or no irq `EIO`; a count
 * differing from the listener's is copied out (`EFAULT` leaves the baseline) and returns 4; `O_NONBLOCK`
 * `EAGAIN`; otherwise sleep until an event or unregister (a kill gives `-ERESTARTSYS`).
 */
function uioRead(file: File, cur: Current, buf: UserBuf): number | Promise<number> {
  const l = listenerOf(file);
  if (buf.length !== S32) return E.EINVAL;
  const r = uioReadNow(file, l, buf);
  return r !== BLOCK ? r : uioReadBlocking(file, cur, l, buf);
}

/** Returned by {@link uioReadNow} when the read has to sleep. */
const BLOCK = 1;
const countOut = new DataView(new ArrayBuffer(S32));
const countBytes = new Uint8Array(countOut.buffer);

/** One pass of `uio_read`'s loop: a result, or {@link BLOCK}. */
function uioReadNow(file: File, l: UioListener, buf: UserBuf): number {
  const idev = l.dev;
  const info = idev.info;
  if (info === null || info.irq === 0) return E.EIO;
  const count = idev.event;
  if (count !== l.eventCount) {
    countOut.setInt32(0, count, true);
    if (buf.copyOut(countBytes) < 0) return E.EFAULT;
    l.eventCount = count;
    return S32;
  }
  if ((file.flags & O.NONBLOCK) !== 0) return E.EAGAIN;
  return BLOCK;
}

async function uioReadBlocking(file: File, cur: Current, l: UioListener, buf: UserBuf): Promise<number> {
  const idev = l.dev;
  l.ready ??= () => idev.info === null || idev.info.irq === 0 || idev.event !== l.eventCount;
  for (;;) {
    const w = await cur.waitEvent(idev.wait, l.ready, `read(fd ${fdOf(file, cur)}) on ${file.path}`);
    if (w < 0) return E.ERESTARTSYS;
    const r = uioReadNow(file, l, buf);
    if (r !== BLOCK) return r;
  }
}

/**
 * Linux `uio_write`, in its order: `count != 4` `EINVAL`; a bad buffer `EFAULT`; unregistered `EINVAL`; no
 * irq `EIO`; no `irqcontrol` `ENOSYS`; else `irqcontrol`'s result, or 4 when that is 0.
 */
function uioWrite(file: File, _cur: Current, buf: UserBuf): number {
  const idev = listenerOf(file).dev;
  if (buf.length !== S32) return E.EINVAL;
  const v = new Uint8Array(S32);
  if (buf.copyIn(v) < 0) return E.EFAULT;
  const info = idev.info;
  if (info === null) return E.EINVAL;
  if (info.irq === 0) return E.EIO;
  if (info.irqcontrol === undefined) return E.ENOSYS;
  const r = info.irqcontrol(info, new DataView(v.buffer).getInt32(0, true));
  return r !== 0 ? r : S32;
}

/**
 * Linux `uio_poll`. Without a device or irq it returns `-EIO` as the mask, as uio.c does; `poll(2)` keeps
 * the requested bits of that value plus `POLLERR | POLLHUP` (never `POLLNVAL`, which is not in Linux's
 * filter), so callers see `POLLERR`. Otherwise `POLLIN | POLLRDNORM` while the count differs from the
 * listener's.
 */
function uioPoll(file: File, _cur: Current, pt: PollTable): number {
  const l = listenerOf(file);
  const idev = l.dev;
  if (idev.info === null || idev.info.irq === 0) return (E.EIO & ~POLL.NVAL) >>> 0;
  pt.wait(idev.wait);
  return l.eventCount !== idev.event ? POLL.IN | POLL.RDNORM : 0;
}

/** Linux `uio_find_mem_index`: the map `vm_pgoff` names, or -1 (past the maps, or of size 0). */
function memIndex(mem: readonly UioMem[] | undefined, vma: Vma): number {
  if (vma.pgoff >= MAX_UIO_MAPS) return -1;
  const m = mem?.[vma.pgoff];
  return m === undefined || m.size === 0 ? -1 : vma.pgoff;
}

/** Linux `uio_mmap_physical`: device memory, through the MMIO router (`VM_IO | VM_PFNMAP`, uncached). */
function mmapPhysical(m: UioMem, vma: Vma): number {
  const addr = BigInt.asUintN(64, BigInt(m.addr));
  if ((addr & PAGE_MASK) !== 0n) return E.ENODEV;
  if (vma.end - vma.start > m.size) return E.EINVAL;
  invariant(addr <= BigInt(Number.MAX_SAFE_INTEGER), () => `uio map at ${addr} beyond 2^53`);
  vma.backing = { kind: 'io', phys: Number(addr) };
  return 0;
}

/**
 * Linux `uio_mmap_logical` / `uio_mmap_dma_coherent`: the region's kernel pages mapped as RAM, from the
 * region's first page (the fault handler subtracts the map index from `vm_pgoff`). Each VMA holds its own
 * reference on every page.
 */
function mmapKernelPages(idev: UioDevice, m: UioMem, vma: Vma, coherent: boolean): number {
  if (coherent && (BigInt.asUintN(64, BigInt(m.addr)) & PAGE_MASK) !== 0n) return E.ENODEV;
  const pages = m.pages;
  // A coherent region without its pages is Linux's missing `dma_device`; a logical one would SIGBUS at the first touch.
  if (pages === undefined) return coherent ? E.ENODEV : E.EINVAL;
  const n = (vma.end - vma.start) >> PAGE_SHIFT;
  if (coherent && vma.end - vma.start > m.size) return E.EINVAL;
  if (n > pages.frames.length) return E.EINVAL;
  const frames = pages.frames.slice(0, n);
  for (const f of frames) {
    invariant(f >= 0, () => `uio ${idev.name}: mapping freed kernel pages`);
    idev.kernel.userPages.get(f);
  }
  vma.backing = { kind: 'anon', buffer: pages.buffer, bufferOffset: 0, frames };
  return 0;
}

/**
 * Linux `uio_mmap`, in its order: unregistered `EINVAL`; `vm_pgoff` not a map (index ≥ 5 or size 0)
 * `EINVAL`; more pages than the map covers (`(addr & ~PAGE_MASK) + size`, rounded up) `EINVAL`; the
 * driver's `mmap` if it has one; else by memtype: `PHYS` / `IOVA` map device memory (`ENODEV` if `addr` is
 * not page-aligned, `EINVAL` if the mapping is longer than `size`), `LOGICAL` / `VIRTUAL` / `DMA_COHERENT`
 * map the region's kernel pages, `NONE` `EINVAL`.
 */
function uioMmap(file: File, cur: Current, vma: Vma): number {
  const idev = listenerOf(file).dev;
  const info = idev.info;
  if (info === null) return E.EINVAL;
  const mi = memIndex(info.mem, vma);
  if (mi < 0) return E.EINVAL;
  const m = (info.mem as UioMem[])[mi] as UioMem;
  const requested = (vma.end - vma.start) >> PAGE_SHIFT;
  const inPage = Number(BigInt.asUintN(64, BigInt(m.addr)) & PAGE_MASK);
  const actual = Math.floor((inPage + m.size + PAGE_SIZE - 1) / PAGE_SIZE);
  if (requested > actual) return E.EINVAL;
  if (info.mmap !== undefined) return info.mmap(info, vma, cur);
  switch (m.memtype) {
    case UIO_MEM.IOVA:
    case UIO_MEM.PHYS:
      return mmapPhysical(m, vma);
    case UIO_MEM.LOGICAL:
    case UIO_MEM.VIRTUAL:
      return mmapKernelPages(idev, m, vma, false);
    case UIO_MEM.DMA_COHERENT:
      return mmapKernelPages(idev, m, vma, true);
    default:
      return E.EINVAL;
  }
}

/** `/dev/uioN`'s file operations (Linux `uio_fops`); `llseek` is `noop_llseek` (the position stays 0). */
export const uioFileOperations: FileOperations = {
  open: uioOpen,
  release: uioRelease,
  read: uioRead,
  write: uioWrite,
  poll: uioPoll,
  mmap: uioMmap,
  llseek: () => 0,
};
