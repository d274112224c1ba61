import { invariant } from '../../sim/index.ts';
import type { MmioRouter } from '../../machine/index.ts';
import type { Cred } from '../cred.ts';
import { E } from '../errno.ts';
import type { File } from '../fs/file.ts';
import { MAP, PAGE_SHIFT, PAGE_SIZE, PROT } from '../uapi/linux.ts';
import type { UserPages } from './pages.ts';
import { putShm, shmPage } from './shm.ts';
import type { ShmObject, Vma, VmaBacking } from './vma.ts';

/** Linux x86-64 `TASK_SIZE`: user addresses lie below it (47 bits, less the guard page). */
export const TASK_SIZE = 0x7fff_ffff_f000;
/** Where top-down placement of mappings starts (Linux's `mmap_base`, without randomisation). */
export const MMAP_BASE = 0x7f00_0000_0000;
/** Linux `mmap_min_addr` default: hints below it are raised. */
const MMAP_MIN_ADDR = 0x10000;
/** Linux `sysctl_max_map_count` default. */
const MAX_MAP_COUNT = 65530;

const PM_PRESENT = 1n << 63n;
const PM_FILE = 1n << 61n;
const PM_MMAP_EXCLUSIVE = 1n << 56n;
const PM_SOFT_DIRTY = 1n << 55n;

/** What a page of user memory is, for the copy and access paths. */
type PageRef = { readonly bytes: Uint8Array } | { readonly phys: number };

/** One range the mapping step asks for (after the syscall's own argument checks). */
export interface MmapRequest {
  readonly addr: number;
  readonly length: number;
  readonly prot: number;
  readonly flags: number;
  readonly file: File | undefined;
  readonly pgoff: number;
}

/**
 * A process's address space (Linux `mm_struct`): sorted VMAs of 4 KiB pages, backed lazily by frames from
 * physical memory (placed by the machine's frame policy) when first touched; locked-page accounting
 * against `RLIMIT_MEMLOCK`; pinning for DMA; the copy paths kernel code uses (`EFAULT` on any unmapped or
 * forbidden byte); pagemap entries.
 *
 * `layoutGen` changes whenever a mapping is removed or its protection changes, so that user-facing
 * accessors can keep a fast path and re-validate only after a change.
 */
export class Mm {
  readonly vmas: Vma[] = [];
  /** Pages counted against `RLIMIT_MEMLOCK` (mlock and DMA pins, as Linux's `locked_vm`). */
  lockedVm = 0;
  /** The `RLIMIT_MEMLOCK` soft limit in bytes. */
  memlockLimit: number;
  /** Bumped when a range is unmapped or re-protected. */
  layoutGen = 0;
  readonly pages: UserPages;
  readonly mmio: MmioRouter;

  constructor(pages: UserPages, mmio: MmioRouter, memlockLimit: number) {
    this.pages = pages;
    this.mmio = mmio;
    this.memlockLimit = memlockLimit;
  }

  /** The last VMA {@link find} returned, valid while {@link layoutGen} is what it was then. */
  #lastVma: Vma | undefined;
  #lastGen = -1;

  /**
   * The VMA containing `addr`, if any. The last hit is remembered: accesses cluster (an ioctl argument
   * page, a buffer), and a VMA only goes away with a layout change, which every removal makes first.
   */
  find(addr: number): Vma | undefined {
    const c = this.#lastVma;
    if (c !== undefined && this.#lastGen === this.layoutGen && addr >= c.start && addr < c.end) return c;
    const m = this.#search(addr);
    if (m !== undefined) {
      this.#lastVma = m;
      this.#lastGen = this.layoutGen;
    }
    return m;
  }

  #search(addr: number): Vma | undefined {
    const v = this.vmas;
    let lo = 0;
    let hi = v.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const m = v[mid] as Vma;
      if (addr < m.start) hi = mid - 1;
      else if (addr >= m.end) lo = mid + 1;
      else return m;
    }
    return undefined;
  }

  /** Whether `[start, end)` overlaps any VMA. */
  #overlaps(start: number, end: number): boolean {
    return this.vmas.some((m) => m.start < end && start < m.end);
  }

  /** A free range of `len` bytes: the hint if it fits, else the highest gap below `MMAP_BASE`. */
  #unmappedArea(hint: number, len: number): number {
    if (hint !== 0) {
      const h = Math.max(hint, MMAP_MIN_ADDR);
      if (h + len <= TASK_SIZE && !this.#overlaps(h, h + len)) return h;
    }
    let top = MMAP_BASE;
    for (let i = this.vmas.length - 1; i >= 0; i--) {
      const m = this.vmas[i] as Vma;
      if (m.start >= top) continue;
      if (m.end <= top - len) return top - len;
      top = m.start;
    }
    return top - len >= MMAP_MIN_ADDR ? top - len : E.ENOMEM;
  }

  /**
   * Linux `do_mmap` after the syscall's checks: places the range (`MAP_FIXED` replaces what is there,
   * `MAP_FIXED_NOREPLACE` gives `EEXIST`), checks `MAP_LOCKED` against the limit (`EAGAIN`), anonymous memory
   * larger than RAM (`ENOMEM`), makes the VMA and
   * lets the file's `mmap` set it up. Returns the address or `-errno`.
   */
  mmap(req: MmapRequest, cred: Cred, setup: ((vma: Vma) => number) | undefined): number {
    const len = req.length;
    if (this.vmas.length >= MAX_MAP_COUNT) return E.ENOMEM;
    let addr: number;
    if ((req.flags & (MAP.FIXED | MAP.FIXED_NOREPLACE)) !== 0) {
      addr = req.addr;
      if (addr % PAGE_SIZE !== 0) return E.EINVAL;
      if (addr + len > TASK_SIZE || addr < MMAP_MIN_ADDR) return E.ENOMEM;
      if ((req.flags & MAP.FIXED) === 0 && this.#overlaps(addr, addr + len)) return E.EEXIST;
    } else {
      addr = this.#unmappedArea(Math.ceil(req.addr / PAGE_SIZE) * PAGE_SIZE, len);
      if (addr < 0) return addr;
    }
    const locked = (req.flags & MAP.LOCKED) !== 0;
    if (locked && !cred.capable('IPC_LOCK') && this.lockedVm + len / PAGE_SIZE > this.memlockLimit / PAGE_SIZE) return E.EAGAIN;
    // mmap_region's accounting (__vm_enough_memory, heuristic overcommit: more than all of RAM with no swap is
    // ENOMEM). dmasim keeps anonymous memory in one buffer per VMA, so it applies the limit to every anonymous
    // mapping, not only the private writable ones Linux accounts.
    if (req.file === undefined && len / PAGE_SIZE > this.pages.totalPages) return E.ENOMEM;
    const vma: Vma = {
      start: addr, end: addr + len, pgoff: req.pgoff, prot: req.prot, flags: req.flags, file: req.file,
      backing: { kind: 'none' }, locked: false,
    };
    if (req.file === undefined) {
      vma.backing = (req.flags & MAP.TYPE) === MAP.SHARED ? shmBackingAnon(len) : anonBacking(len);
    } else if (setup !== undefined) {
      const r = setup(vma);
      if (r < 0) return r;
      invariant(vma.backing.kind !== 'none', () => `mmap handler of ${req.file?.path} left the VMA without backing`);
    }
    if ((req.flags & MAP.FIXED) !== 0) this.unmap(addr, len);
    req.file?.get();
    if (vma.backing.kind === 'shm') {
      vma.backing.obj.maps++;
      if ((req.flags & MAP.TYPE) !== MAP.PRIVATE && (req.prot & PROT.WRITE) !== 0) vma.backing.obj.writableMaps++;
    }
    this.#insert(vma);
    if (locked) {
      vma.locked = true;
      this.lockedVm += len / PAGE_SIZE;
    }
    if ((req.flags & (MAP.POPULATE | MAP.LOCKED)) !== 0) {
      for (let a = addr; a < addr + len; a += PAGE_SIZE) if (this.#page(vma, a, false) === E.ENOMEM) break;
    }
    return addr;
  }

  #insert(vma: Vma): void {
    let i = 0;
    while (i < this.vmas.length && (this.vmas[i] as Vma).start < vma.start) i++;
    this.vmas.splice(i, 0, vma);
  }

  /** Makes a VMA boundary at `addr` if one VMA spans it. */
  #split(addr: number): void {
    const m = this.find(addr);
    if (m === undefined || m.start === addr) return;
    const k = (addr - m.start) / PAGE_SIZE;
    const right: Vma = { ...m, start: addr, pgoff: m.pgoff + k, backing: splitBacking(m.backing, k, 'right') };
    m.backing = splitBacking(m.backing, k, 'left');
    m.end = addr;
    m.file?.get();
    if (right.backing.kind === 'shm') {
      right.backing.obj.refs++;
      right.backing.obj.maps++;
    }
    this.#insert(right);
  }

  /** The VMAs inside `[start, end)` after splitting at both ends. */
  #range(start: number, end: number): Vma[] {
    this.#split(start);
    this.#split(end);
    return this.vmas.filter((m) => m.start >= start && m.end <= end);
  }

  /** Linux `do_munmap` of a checked, page-aligned range: drops every page reference, file and lock. */
  unmap(start: number, len: number): void {
    const end = start + len;
    if (!this.#overlaps(start, end)) return;
    for (const m of this.#range(start, end)) {
      this.vmas.splice(this.vmas.indexOf(m), 1);
      // Before the release runs anything: no lookup may see the VMA again.
      this.layoutGen++;
      this.#release(m);
    }
    this.layoutGen++;
  }

  #release(m: Vma): void {
    const b = m.backing;
    if (b.kind === 'anon') {
      for (let i = 0; i < b.frames.length; i++) {
        const f = b.frames[i] as number;
        if (f >= 0) {
          b.frames[i] = -1;
          this.pages.put(f);
        }
      }
      if (b.cow !== undefined) putShm(b.cow.obj, this.pages);
    } else if (b.kind === 'shm') {
      b.obj.maps--;
      if ((m.flags & MAP.TYPE) !== MAP.PRIVATE && (m.prot & PROT.WRITE) !== 0) b.obj.writableMaps--;
      putShm(b.obj, this.pages);
    }
    if (m.locked) this.lockedVm -= (m.end - m.start) / PAGE_SIZE;
    m.onClose?.();
    m.file?.put();
  }

  /** Every mapping removed (exit). */
  teardown(): void {
    const all = this.vmas.splice(0);
    this.layoutGen++;
    for (const m of all) this.#release(m);
    this.layoutGen++;
  }

  /**
   * Linux `mprotect` of a checked, page-aligned range: `ENOMEM` if any page is unmapped, `EACCES` for write on
   * a read-only shared file or a VMA without `VM_MAYWRITE`.
   */
  protect(start: number, len: number, prot: number): number {
    const end = start + len;
    for (let a = start; a < end;) {
      const m = this.find(a);
      if (m === undefined) return E.ENOMEM;
      if ((prot & PROT.WRITE) !== 0 && (m.flags & MAP.TYPE) !== MAP.PRIVATE && m.file !== undefined && !m.file.writable) return E.EACCES;
      if ((prot & PROT.WRITE) !== 0 && m.noMayWrite === true) return E.EACCES;
      a = m.end;
    }
    for (const m of this.#range(start, end)) {
      if (m.backing.kind === 'shm' && (m.flags & MAP.TYPE) !== MAP.PRIVATE) {
        m.backing.obj.writableMaps += ((prot & PROT.WRITE) !== 0 ? 1 : 0) - ((m.prot & PROT.WRITE) !== 0 ? 1 : 0);
      }
      m.prot = prot;
    }
    this.layoutGen++;
    return 0;
  }

  /**
   * Linux `mlock`/`munlock` of a page-aligned range: `ENOMEM` if part is unmapped; locking counts pages not
   * already locked against the limit unless `CAP_IPC_LOCK` (`ENOMEM`); `EPERM` when the limit is 0 and the
   * caller lacks the capability (`can_do_mlock`). Device mappings are skipped (`VM_SPECIAL`).
   */
  lock(start: number, len: number, on: boolean, cred: Cred): number {
    const end = start + len;
    if (on && this.memlockLimit === 0 && !cred.capable('IPC_LOCK')) return E.EPERM;
    let fresh = 0;
    for (let a = start; a < end;) {
      const m = this.find(a);
      if (m === undefined) return E.ENOMEM;
      const stop = Math.min(m.end, end);
      if (on && !m.locked && m.backing.kind !== 'io') fresh += (stop - a) / PAGE_SIZE;
      a = stop;
    }
    if (on && !cred.capable('IPC_LOCK') && this.lockedVm + fresh > Math.floor(this.memlockLimit / PAGE_SIZE)) return E.ENOMEM;
    for (const m of this.#range(start, end)) {
      if (m.backing.kind === 'io' || m.locked === on) continue;
      m.locked = on;
      this.lockedVm += ((m.end - m.start) / PAGE_SIZE) * (on ? 1 : -1);
      if (on) for (let a = m.start; a < m.end; a += PAGE_SIZE) if (this.#page(m, a, false) === E.ENOMEM) return E.ENOMEM;
    }
    return 0;
  }

  /**
   * The page at `addr` in `m`, faulted in (a frame allocated on first touch): its bytes, or the physical
   * address of device memory. `-ENOMEM` when memory is exhausted, `-EFAULT` past the end of a shared object.
   */
  #page(m: Vma, addr: number, _write: boolean): PageRef | number {
    const idx = (addr - m.start) >>> PAGE_SHIFT;
    const b = m.backing;
    if (b.kind === 'anon') {
      const off = b.bufferOffset + idx * PAGE_SIZE;
      if ((b.frames[idx] as number) < 0) {
        const storage = new Uint8Array(b.buffer, off, PAGE_SIZE);
        if (b.cow !== undefined) {
          const src = shmPage(b.cow.obj, m.pgoff + idx, this.pages);
          if (typeof src !== 'number') storage.set(src);
        }
        const f = this.pages.alloc(storage);
        if (f < 0) return E.ENOMEM;
        b.frames[idx] = f;
      }
      return { bytes: new Uint8Array(b.buffer, off, PAGE_SIZE) };
    }
    if (b.kind === 'shm') {
      const r = shmPage(b.obj, m.pgoff + idx, this.pages);
      return typeof r === 'number' ? r : { bytes: r };
    }
    if (b.kind === 'io') {
      // The CPU decodes the physical address: RAM answers below its end, the MMIO router above.
      const pa = b.phys + idx * PAGE_SIZE;
      const ram = this.pages.memory;
      return ram.contains(pa, PAGE_SIZE) ? { bytes: ram.frame(pa / PAGE_SIZE) } : { phys: pa };
    }
    return E.EFAULT;
  }

  /** The frame of the page at `addr` if it is present (no fault), or -1. */
  presentFrame(addr: number): number {
    const m = this.find(addr);
    if (m === undefined) return -1;
    const idx = (addr - m.start) >>> PAGE_SHIFT;
    const b = m.backing;
    if (b.kind === 'anon') return b.frames[idx] as number;
    if (b.kind === 'shm') return b.obj.frames[m.pgoff + idx] ?? -1;
    if (b.kind === 'io') return Math.floor(b.phys / PAGE_SIZE) + idx;
    return -1;
  }

  /**
   * Moves bytes between user memory at `addr` and `buf`: every page must be mapped with the needed
   * protection, else `-EFAULT` (nothing partial is reported: Linux's copy_*_user callers treat any
   * shortfall as EFAULT). Device pages go through the MMIO router byte by byte.
   */
  #copy(addr: number, buf: Uint8Array, toUser: boolean): number {
    let len = buf.length;
    if (len === 0) return 0;
    if (!(Number.isSafeInteger(addr) && addr >= 0 && addr + len <= TASK_SIZE)) return E.EFAULT;
    let a = addr;
    let off = 0;
    while (len > 0) {
      const m = this.find(a);
      if (m === undefined || m.prot === PROT.NONE || (toUser && (m.prot & PROT.WRITE) === 0)) return E.EFAULT;
      const pageOff = a & (PAGE_SIZE - 1);
      const n = Math.min(len, PAGE_SIZE - pageOff);
      const b = m.backing;
      if (b.kind === 'anon' && n <= 64) {
        // A small copy to or from a present anonymous page (an ioctl's struct): straight into the VMA's
        // buffer, without a page reference object.
        const idx = (a - pageOff - m.start) >>> PAGE_SHIFT;
        if ((b.frames[idx] as number) >= 0) {
          const all = wholeBuffer(b.buffer);
          const base = b.bufferOffset + idx * PAGE_SIZE + pageOff;
          if (toUser) for (let i = 0; i < n; i++) all[base + i] = buf[off + i] as number;
          else for (let i = 0; i < n; i++) buf[off + i] = all[base + i] as number;
          a += n;
          off += n;
          len -= n;
          continue;
        }
      }
      const p = this.#page(m, a - pageOff, toUser);
      if (typeof p === 'number') return E.EFAULT;
      if ('bytes' in p) {
        const pb = p.bytes;
        if (n <= 64) {
          // An ioctl's struct: a plain loop beats two subarrays.
          if (toUser) for (let i = 0; i < n; i++) pb[pageOff + i] = buf[off + i] as number;
          else for (let i = 0; i < n; i++) buf[off + i] = pb[pageOff + i] as number;
        } else if (toUser) pb.set(buf.subarray(off, off + n), pageOff);
        else buf.set(pb.subarray(pageOff, pageOff + n), off);
      } else {
        for (let i = 0; i < n; i++) {
          if (toUser) this.mmio.write8(p.phys + pageOff + i, buf[off + i] as number);
          else buf[off + i] = this.mmio.read8(p.phys + pageOff + i);
        }
      }
      a += n;
      off += n;
      len -= n;
    }
    return 0;
  }

  /** Copies user memory at `addr` into `dst`: 0, or `-EFAULT` if any byte is unmapped or unreadable. */
  copyFromUser(addr: number, dst: Uint8Array): number {
    return this.#copy(addr, dst, false);
  }

  /** Copies `src` to user memory at `addr`: 0, or `-EFAULT` if any byte is unmapped or read-only. */
  copyToUser(addr: number, src: Uint8Array): number {
    return this.#copy(addr, src, true);
  }

  /**
   * Linux `pin_user_pages(FOLL_LONGTERM)` of `npages` from page-aligned `addr`: faults each page in and pins
   * it; all or nothing. `-EFAULT` for an unmapped page, a device mapping (`VM_IO | VM_PFNMAP`), a write pin of
   * a read-only mapping or a read pin of `PROT_NONE`; `-ENOMEM` when memory runs out. Does not account
   * `locked_vm` (callers do, with {@link accountLocked}).
   */
  pinPages(addr: number, npages: number, write: boolean): number[] | number {
    if (!(Number.isSafeInteger(addr) && addr >= 0 && addr % PAGE_SIZE === 0 && addr + npages * PAGE_SIZE <= TASK_SIZE)) return E.EFAULT;
    const out: number[] = [];
    for (let i = 0; i < npages; i++) {
      const a = addr + i * PAGE_SIZE;
      const m = this.find(a);
      let e = 0;
      if (m === undefined || m.backing.kind === 'io' || m.backing.kind === 'none') e = E.EFAULT;
      else if (write ? (m.prot & PROT.WRITE) === 0 : m.prot === PROT.NONE) e = E.EFAULT;
      else {
        const p = this.#page(m, a, write);
        if (typeof p === 'number') e = p;
      }
      if (e < 0) {
        this.unpinPages(out);
        return e;
      }
      const f = this.presentFrame(a);
      this.pages.pin(f);
      out.push(f);
    }
    return out;
  }

  /** {@link pinPages} of one page, without an array: the frame, or `-errno`. */
  pinPage(addr: number, write: boolean): number {
    if (!(Number.isSafeInteger(addr) && addr >= 0 && addr % PAGE_SIZE === 0 && addr + PAGE_SIZE <= TASK_SIZE)) return E.EFAULT;
    const m = this.find(addr);
    if (m === undefined || m.backing.kind === 'io' || m.backing.kind === 'none') return E.EFAULT;
    if (write ? (m.prot & PROT.WRITE) === 0 : m.prot === PROT.NONE) return E.EFAULT;
    const p = this.#page(m, addr, write);
    if (typeof p === 'number') return p;
    const f = this.presentFrame(addr);
    this.pages.pin(f);
    return f;
  }

  /** Unpins frames returned by {@link pinPages}. */
  unpinPages(frames: readonly number[]): void {
    for (const f of frames) this.pages.unpin(f);
  }

  /**
   * Linux `account_locked_vm(mm, npages, true)`: adds to `locked_vm`, or `-ENOMEM` when that would pass
   * `RLIMIT_MEMLOCK` and the caller lacks `CAP_IPC_LOCK`.
   */
  accountLocked(npages: number, cred: Cred): number {
    if (!cred.capable('IPC_LOCK') && this.lockedVm + npages > Math.floor(this.memlockLimit / PAGE_SIZE)) return E.ENOMEM;
    this.lockedVm += npages;
    return 0;
  }

  /** Linux `account_locked_vm(mm, npages, false)`. */
  unaccountLocked(npages: number): void {
    invariant(npages <= this.lockedVm, () => `unaccountLocked(${npages}) with only ${this.lockedVm} locked`);
    this.lockedVm -= npages;
  }

  /**
   * The `/proc/<pid>/pagemap` entry of virtual page `vpn` (Linux `pte_to_pagemap_entry`): bit 63 present,
   * bit 61 file or shared page, bit 56 mapped exclusively, bit 55 soft-dirty (every new VMA is
   * `VM_SOFTDIRTY`), bits 0-54 the frame number when `showPfn` (the reader has `CAP_SYS_ADMIN`).
   */
  pagemapEntry(vpn: number, showPfn: boolean): bigint {
    const addr = vpn * PAGE_SIZE;
    const m = this.find(addr);
    if (m === undefined) return 0n;
    let e = PM_SOFT_DIRTY;
    const f = this.presentFrame(addr);
    if (f < 0) return e;
    e |= PM_PRESENT;
    if (showPfn) e |= BigInt(f);
    const b = m.backing;
    if (b.kind === 'anon') e |= PM_MMAP_EXCLUSIVE;
    else if (b.kind === 'shm') e |= PM_FILE | (b.obj.maps === 1 ? PM_MMAP_EXCLUSIVE : 0n);
    return e;
  }

  /** The page's bytes for a user-facing accessor (faulting it in), or `-errno`; `write` checks `PROT_WRITE`. */
  accessPage(addr: number, write: boolean): PageRef | number {
    const m = this.find(addr);
    if (m === undefined || m.prot === PROT.NONE || (write && (m.prot & PROT.WRITE) === 0)) return E.EFAULT;
    return this.#page(m, addr - (addr & (PAGE_SIZE - 1)), write);
  }
}

function anonBacking(len: number): VmaBacking {
  return { kind: 'anon', buffer: new ArrayBuffer(len), bufferOffset: 0, frames: new Int32Array(len / PAGE_SIZE).fill(-1) };
}

/** `MAP_SHARED | MAP_ANONYMOUS`: a private shared object (Linux's shmem file `/dev/zero (deleted)`). */
function shmBackingAnon(len: number): VmaBacking {
  const obj: ShmObject = {
    size: len, frames: Array.from<number>({ length: len / PAGE_SIZE }).fill(-1), buffer: new ArrayBuffer(len),
    seals: 0, writableMaps: 0, name: '/dev/zero (deleted)', refs: 0, maps: 0,
  };
  obj.refs++;
  return { kind: 'shm', obj };
}

function splitBacking(b: VmaBacking, k: number, side: 'left' | 'right'): VmaBacking {
  if (b.kind === 'anon') {
    const frames = side === 'left' ? b.frames.subarray(0, k) : b.frames.subarray(k);
    const bufferOffset = side === 'left' ? b.bufferOffset : b.bufferOffset + k * PAGE_SIZE;
    if (b.cow === undefined) return { kind: 'anon', buffer: b.buffer, bufferOffset, frames };
    if (side === 'right') b.cow.obj.refs++;
    return { kind: 'anon', buffer: b.buffer, bufferOffset, frames, cow: b.cow };
  }
  if (b.kind === 'io') return side === 'left' ? b : { kind: 'io', phys: b.phys + k * PAGE_SIZE };
  return b;
}

/** A `Uint8Array` over the whole of an anonymous VMA's buffer, made once per buffer. */
const wholeViews = new WeakMap<ArrayBufferLike, Uint8Array>();
function wholeBuffer(buffer: ArrayBufferLike): Uint8Array {
  let v = wholeViews.get(buffer);
  if (v === undefined) {
    v = new Uint8Array(buffer);
    wholeViews.set(buffer, v);
  }
  return v;
}
