import type { SimProcess } from '../../sim/index.ts';
import { IommuProt } from '../../iommu/index.ts';
import { E } from '../errno.ts';
import type { IommuDomain } from '../iommu/domain.ts';
import type { IommuGroupK } from '../iommu/group.ts';
import type { Kernel } from '../kernel.ts';
import type { Mm } from '../mm/mm.ts';
import type { Current } from '../task/current.ts';
import { buildCapChain, type CapSpec } from '../uapi/capchain.ts';
import { copyArgszFromUser, copyStructToUser, userAddr } from '../uapi/codec.ts';
import { PAGE_SIZE, PROT } from '../uapi/linux.ts';
import {
  VFIO, VFIO_DMA_MAP_FLAG, VFIO_DMA_UNMAP_FLAG, VFIO_EXT, VFIO_IOMMU_DIRTY_PAGES_FLAG, VFIO_IOMMU_INFO,
  VFIO_IOMMU_TYPE1_INFO_CAP, vfio_bitmap, vfio_iommu_type1_dirty_bitmap, vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info, vfio_iommu_type1_info_cap_iova_range,
  vfio_iommu_type1_info_cap_migration, vfio_iommu_type1_info_dma_avail,
} from '../uapi/vfio.ts';
import type { VfioIommuData, VfioIommuDriver } from './container.ts';

/**
 * The type1 IOMMU driver (Linux `drivers/vfio/vfio_iommu_type1.c`, spec/linux-uapi.md 1.7), v1 and v2:
 * user mappings (`vfio_dma`) of pinned process memory into one UNMANAGED domain shared by every group of
 * the container. Pages are pinned one by one and charged to the mapping process's `locked_vm` against
 * `RLIMIT_MEMLOCK` unless it had `CAP_IPC_LOCK` at MAP time; PFNMAP ranges (a BAR mapped through sysfs or
 * a VFIO region) are mapped by physical address without a pin. Unmapping is strict: the IOMMU layer
 * invalidates the IOTLB and waits before `unmap` returns, and only then are the pages unpinned.
 *
 * Module parameter (kernel command line): `vfio_iommu_type1.dma_entry_limit=N` (default 65535).
 */

const PAGE = BigInt(PAGE_SIZE);
const U64_MAX = (1n << 64n) - 1n;
/** Linux `PAGE_MASK` as an unsigned long: every page size from 4 KiB up. */
const PAGE_MASK = U64_MAX & ~(PAGE - 1n);
/** Linux `DIRTY_BITMAP_BYTES(DIRTY_BITMAP_PAGES_MAX)` (INT_MAX pages, one bit each, in u64 words). */
const DIRTY_BITMAP_SIZE_MAX = ((2n ** 31n - 1n + 63n) / 64n) * 8n;

/** The default `dma_entry_limit` (`U16_MAX`). */
export const DMA_ENTRY_LIMIT_DEFAULT = 65535;

/**
 * `dma_entry_limit` from the command line (`vfio_iommu_type1.dma_entry_limit=N`), else the default. As
 * Linux's `parse_args` and `param_set_uint` take it: `-` and `_` are the same in the name (`parameq`), the
 * value is `kstrtouint(val, 0)` (decimal, `0x` hex or leading-`0` octal, an optional `+`); a value that
 * does not parse or does not fit 32 bits is refused and leaves the previous one; the last valid one wins.
 */
export function dmaEntryLimit(cmdline: string): number {
  let v = DMA_ENTRY_LIMIT_DEFAULT;
  for (const w of cmdline.split(/\s+/)) {
    const eq = w.indexOf('=');
    if (eq < 0 || w.slice(0, eq).replaceAll('-', '_') !== 'vfio_iommu_type1.dma_entry_limit') continue;
    const n = kstrtouint(w.slice(eq + 1));
    if (n !== null) v = n;
  }
  return v;
}

/** Linux `kstrtouint(s, 0, &res)`: the value, or null for `-EINVAL` / `-ERANGE`. */
function kstrtouint(s: string): number | null {
  const t = s.startsWith('+') ? s.slice(1) : s;
  const m = /^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\n?$/.exec(t);
  if (m === null) return null;
  const digits = m[1] as string;
  const n = /^0[xX]/.test(digits) ? BigInt(digits) : digits.length > 1 && digits.startsWith('0') ? BigInt(`0o${digits.slice(1)}`) : BigInt(digits);
  return n > 0xffff_ffffn ? null : Number(n);
}

/** A contiguous piece of one mapping as it went into the domain: pinned frames, or a PFNMAP range (no frames). */
interface Run {
  readonly iova: number;
  readonly phys: number;
  len: number;
  /** Frames pinned for it; null for a PFNMAP (reserved) range. */
  readonly frames: number[] | null;
}

/** One user mapping (Linux `struct vfio_dma`). */
interface VfioDma {
  readonly iova: bigint;
  readonly size: bigint;
  vaddr: bigint;
  /** `IOMMU_READ` / `IOMMU_WRITE`. */
  readonly prot: number;
  /** The address space of the task that mapped it (`dma->task->mm`). */
  readonly mm: Mm;
  /** `CAP_IPC_LOCK` at MAP time. */
  readonly lockCap: boolean;
  vaddrInvalid: boolean;
  readonly runs: Run[];
  /** Pages charged to `mm.lockedVm`. */
  locked: number;
}

/** An inclusive IOVA range. */
interface IovaRange {
  readonly start: bigint;
  readonly last: bigint;
}

/** Lowest set bit of a nonzero bigint. */
function lowestBit(v: bigint): bigint {
  return v & -v;
}

function log2(v: bigint): bigint {
  let n = 0n;
  while (v > 1n) {
    v >>= 1n;
    n++;
  }
  return n;
}

/** Linux `DIRTY_BITMAP_BYTES(n)`. */
function bitmapBytes(npages: bigint): bigint {
  return ((npages + 63n) / 64n) * 8n;
}

/** One type1 container instance (Linux `struct vfio_iommu`). */
export class Type1Iommu implements VfioIommuData {
  readonly kernel: Kernel;
  readonly v2: boolean;
  /** Mappings, sorted by iova, never overlapping. */
  readonly dmas: VfioDma[] = [];
  /** Entries left (`dma_avail`). */
  dmaAvail: number;
  /** `pgsize_bitmap`: `PAGE_MASK` ANDed with each attached domain's. */
  pgsizeBitmap = PAGE_MASK;
  /** Valid IOVA ranges (`iova_list`): the aperture less reserved regions; empty before a domain exists. */
  iovaList: IovaRange[] = [];
  /** Dirty page tracking started (`VFIO_IOMMU_DIRTY_PAGES_FLAG_START`). */
  dirtyTracking = false;
  #domain: IommuDomain | null = null;
  readonly #groups = new Set<IommuGroupK>();

  constructor(kernel: Kernel, v2: boolean) {
    this.kernel = kernel;
    this.v2 = v2;
    this.dmaAvail = dmaEntryLimit(kernel.cmdline);
  }

  /** The domain every group of the container is attached to (null until the first attach). */
  get domain(): IommuDomain | null {
    return this.#domain;
  }

  /** Linux `vfio_iommu_type1_check_extension` with an instance. */
  checkExtension(arg: bigint): number {
    return type1CheckExtension(this, arg);
  }

  /** Linux `vfio_iommu_type1_ioctl`: unknown requests `-ENOTTY`. */
  ioctl(cur: Current, request: number, arg: bigint): number {
    switch (request) {
      case VFIO.CHECK_EXTENSION: return this.checkExtension(arg);
      case VFIO.IOMMU_GET_INFO: return this.#getInfo(cur, arg);
      case VFIO.IOMMU_MAP_DMA: return this.#mapDma(cur, arg);
      case VFIO.IOMMU_UNMAP_DMA: return this.#unmapDma(cur, arg);
      case VFIO.IOMMU_DIRTY_PAGES: return this.#dirtyPages(cur, arg);
      default: return E.ENOTTY;
    }
  }

  /**
   * Linux `vfio_iommu_type1_attach_group`: the first group gets a new UNMANAGED domain (its page sizes
   * narrow `pgsize_bitmap`, its aperture less the reserved regions becomes the IOVA list); later groups
   * join it. `-EINVAL` for a group already attached; the IOMMU layer's error otherwise.
   */
  attachGroup(g: IommuGroupK, cpu?: SimProcess): number {
    const iommu = this.kernel.iommu;
    if (iommu === null) return E.ENODEV;
    if (this.#groups.has(g)) return E.EINVAL;
    let d = this.#domain;
    const fresh = d === null;
    if (d === null) {
      d = iommu.allocDomain('UNMANAGED');
      if (d === null) return E.ENOMEM;
    }
    const r = iommu.attachGroup(d, g, cpu);
    if (r < 0) {
      if (fresh) iommu.freeDomain(d, cpu);
      return r;
    }
    this.#groups.add(g);
    if (fresh) {
      this.#domain = d;
      this.pgsizeBitmap &= BigInt(iommu.unit.caps.pgsizeBitmap);
      const width = Math.min(iommu.unit.agaw === 2 ? 48 : 39, iommu.unit.caps.mgaw);
      this.iovaList = excludeRegions({ start: 0n, last: (1n << BigInt(width)) - 1n }, iommu.resvRegions(g).map((x) => ({ start: BigInt(x.start), last: BigInt(x.last) })));
    }
    return 0;
  }

  /**
   * Linux `vfio_iommu_type1_detach_group`: the group goes back to its blocking domain; when the last one
   * leaves, every mapping is unmapped and unpinned and the domain freed.
   */
  detachGroup(g: IommuGroupK, cpu?: SimProcess): void {
    const iommu = this.kernel.iommu;
    const d = this.#domain;
    if (iommu === null || d === null || !this.#groups.delete(g)) return;
    iommu.detachGroup(d, g, cpu);
    if (this.#groups.size === 0) {
      this.#unmapUnpinAll(cpu);
      iommu.freeDomain(d, cpu);
      this.#domain = null;
      this.iovaList = [];
      this.pgsizeBitmap = PAGE_MASK;
    }
  }

  /** Linux `vfio_iommu_type1_release`: everything unmapped and unpinned, the domain freed. */
  release(cpu?: SimProcess): void {
    this.#unmapUnpinAll(cpu);
    for (const g of Array.from(this.#groups)) this.detachGroup(g, cpu);
  }

  /** Pages pinned by all mappings (for tests and summaries). */
  get pinnedPages(): number {
    let n = 0;
    for (const d of this.dmas) for (const r of d.runs) n += r.frames?.length ?? 0;
    return n;
  }

  // --- GET_INFO ------------------------------------------------------------------------------------

  /**
   * Linux `vfio_iommu_type1_get_info`: `argsz < 16` `EINVAL`; flags `PGSIZES|CAPS`; caps MIGRATION,
   * DMA_AVAIL, IOVA_RANGE, copied only when the whole chain fits (else `argsz` is raised, `cap_offset` 0).
   * `cap_offset` is written only when `argsz` covers it (the backward-compatible `capsz`).
   */
  #getInfo(cur: Current, arg: bigint): number {
    const c = copyArgszFromUser(cur.mm, arg, vfio_iommu_type1_info);
    if (typeof c === 'number') return c;
    const info = c.value;
    const capsz = 20;
    let minsz = 16;
    if (info.argsz >= capsz) {
      minsz = capsz;
      info.cap_offset = 0;
    }
    info.flags = VFIO_IOMMU_INFO.PGSIZES;
    info.iova_pgsizes = this.pgsizeBitmap;
    const caps: CapSpec[] = [
      {
        layout: vfio_iommu_type1_info_cap_migration,
        value: {
          header: { id: VFIO_IOMMU_TYPE1_INFO_CAP.MIGRATION, version: 1 }, flags: 0,
          pgsize_bitmap: lowestBit(this.pgsizeBitmap), max_dirty_bitmap_size: DIRTY_BITMAP_SIZE_MAX,
        },
      },
      { layout: vfio_iommu_type1_info_dma_avail, value: { header: { id: VFIO_IOMMU_TYPE1_INFO_CAP.DMA_AVAIL, version: 1 }, avail: this.dmaAvail } },
    ];
    // vfio_iommu_iova_build_caps: no capability for an empty list (an mdev-only container).
    if (this.iovaList.length > 0) {
      caps.push({
        layout: vfio_iommu_type1_info_cap_iova_range,
        value: {
          header: { id: VFIO_IOMMU_TYPE1_INFO_CAP.IOVA_RANGE, version: 1 }, nr_iovas: this.iovaList.length,
          iova_ranges: this.iovaList.map((r) => ({ start: r.start, end: r.last })),
        },
      });
    }
    const base = vfio_iommu_type1_info.size;
    const chain = buildCapChain(base, caps);
    info.flags |= VFIO_IOMMU_INFO.CAPS;
    if (info.argsz < base + chain.length) {
      info.argsz = base + chain.length;
    } else {
      const a = userAddr(arg);
      const r = cur.mm.copyToUser(a < 0 ? -1 : a + base, chain);
      if (r < 0) return r;
      info.cap_offset = base;
    }
    return copyStructToUser(cur.mm, arg, vfio_iommu_type1_info, info, minsz);
  }

  // --- MAP_DMA -------------------------------------------------------------------------------------

  /**
   * The MAP/UNMAP argument, copied in by hand (the hot path of every map/unmap loop): what
   * `copyArgszFromUser` does for these two fixed layouts, without a decoded object per call.
   */
  readonly #arg = new Uint8Array(vfio_iommu_type1_dma_map.size);
  readonly #argView = new DataView(this.#arg.buffer);

  #mapDma(cur: Current, arg: bigint): number {
    // copy_from_user(&map, arg, minsz) (minsz is the whole struct), then argsz < minsz.
    if (cur.mm.copyFromUser(userAddr(arg), this.#arg) < 0) return E.EFAULT;
    const v = this.#argView;
    if (v.getUint32(0, true) < vfio_iommu_type1_dma_map.minsz) return E.EINVAL;
    const flags = v.getUint32(4, true);
    if ((flags & ~(VFIO_DMA_MAP_FLAG.READ | VFIO_DMA_MAP_FLAG.WRITE | VFIO_DMA_MAP_FLAG.VADDR)) !== 0) return E.EINVAL;
    return this.#doMap(cur, flags, v.getBigUint64(16, true), v.getBigUint64(8, true), v.getBigUint64(24, true));
  }

  /** Linux `vfio_dma_do_map`, checks in its order (spec 1.7 MAP_DMA 2-9). */
  #doMap(cur: Current, flags: number, iova: bigint, vaddr: bigint, size: bigint): number {
    const overflowFirst = this.kernel.behaviour.vfioWrapErrno === 'EOVERFLOW';
    const wraps = iova + size - 1n > U64_MAX || vaddr + size - 1n > U64_MAX;
    if (overflowFirst) {
      if (size === 0n) return E.EINVAL;
      if (wraps) return E.EOVERFLOW;
    }
    const setVaddr = (flags & VFIO_DMA_MAP_FLAG.VADDR) !== 0;
    // READ/WRITE from the device's point of view.
    let prot = 0;
    if ((flags & VFIO_DMA_MAP_FLAG.WRITE) !== 0) prot |= IommuProt.WRITE;
    if ((flags & VFIO_DMA_MAP_FLAG.READ) !== 0) prot |= IommuProt.READ;
    if ((prot !== 0 && setVaddr) || (prot === 0 && !setVaddr)) return E.EINVAL;
    const mask = lowestBit(this.pgsizeBitmap) - 1n;
    if (size === 0n || ((size | iova | vaddr) & mask) !== 0n) return E.EINVAL;
    // Don't allow IOVA or virtual address wrap.
    if (!overflowFirst && wraps) return E.EINVAL;
    const dma = this.#find(iova, size);
    if (setVaddr) {
      if (dma === undefined) return E.ENOENT;
      if (!dma.vaddrInvalid || dma.iova !== iova || dma.size !== size) return E.EINVAL;
      dma.vaddr = vaddr;
      dma.vaddrInvalid = false;
      return 0;
    }
    if (dma !== undefined) return E.EEXIST;
    if (this.dmaAvail === 0) return E.ENOSPC;
    if (!this.#iovaValid(iova, iova + size - 1n)) return E.EINVAL;
    const nd: VfioDma = {
      iova, size, vaddr, prot, mm: cur.mm, lockCap: cur.cred.capable('IPC_LOCK'), vaddrInvalid: false, runs: [], locked: 0,
    };
    this.dmaAvail--;
    this.#link(nd);
    const r = this.#pinMap(cur, nd);
    if (r < 0) this.#removeDma(nd, cur.thread);
    return r;
  }

  /**
   * Linux `vfio_pin_map_dma` + `vfio_pin_pages_remote`: page by page, the page (`EFAULT` for an unmapped
   * address, a write mapping of read-only memory, or a PFNMAP page that is RAM), then the limit (`ENOMEM`
   * past `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK`); contiguous pages of one kind go into the domain as one
   * run. On failure the caller removes the mapping, which unmaps and unpins what was done.
   */
  #pinMap(cur: Current, dma: VfioDma): number {
    const mm = cur.mm;
    const iommu = this.kernel.iommu;
    const d = this.#domain;
    if (iommu === null || d === null) return 0;
    const write = (dma.prot & IommuProt.WRITE) !== 0;
    const limit = Math.floor(mm.memlockLimit / PAGE_SIZE);
    const npages = Number(dma.size / PAGE);
    const iova0 = Number(dma.iova);
    // The run being gathered (contiguous pages of one kind), not yet in the domain.
    let run: Run | null = null;
    const va0 = userAddr(dma.vaddr);
    for (let i = 0; i < npages; i++) {
      const va = va0 < 0 ? -1 : va0 + i * PAGE_SIZE;
      const vma = va < 0 ? undefined : mm.find(va);
      let phys: number;
      let frame = -1;
      if (vma !== undefined && vma.backing.kind === 'io') {
        // VM_PFNMAP (follow_fault_pfn): a RAM pfn is refused; device memory is mapped unpinned, unaccounted.
        phys = vma.backing.phys + (va - vma.start);
        const ram = this.kernel.userPages.memory.contains(phys, PAGE_SIZE);
        if (ram || vma.prot === PROT.NONE || (write && (vma.prot & PROT.WRITE) === 0)) return this.#abortRun(mm, dma, run, E.EFAULT);
      } else {
        const f = mm.pinPage(va, write);
        if (f < 0) return this.#abortRun(mm, dma, run, f);
        frame = f;
        phys = frame * PAGE_SIZE;
        if (!dma.lockCap && mm.lockedVm + 1 > limit) {
          mm.pages.unpin(f);
          // pr_warn("%s: RLIMIT_MEMLOCK (%ld) exceeded\n", __func__, limit << PAGE_SHIFT) (no pr_fmt in the file).
          this.kernel.log.printk('warn', `vfio_pin_pages_remote: RLIMIT_MEMLOCK (${limit * PAGE_SIZE}) exceeded`);
          return this.#abortRun(mm, dma, run, E.ENOMEM);
        }
        mm.lockedVm++;
        dma.locked++;
      }
      const rsvd = frame < 0;
      if (run !== null && run.phys + run.len === phys && (run.frames === null) === rsvd) {
        run.len += PAGE_SIZE;
        run.frames?.push(frame);
        continue;
      }
      const r = this.#flushRun(cur, dma, run);
      if (r < 0) {
        if (!rsvd) {
          mm.unpinPages([frame]);
          mm.unaccountLocked(1);
          dma.locked--;
        }
        return r;
      }
      run = { iova: iova0 + i * PAGE_SIZE, phys, len: PAGE_SIZE, frames: rsvd ? null : [frame] };
    }
    return this.#flushRun(cur, dma, run);
  }

  /** Maps a gathered run into the domain and records it; on failure gives back its pins. */
  #flushRun(cur: Current, dma: VfioDma, run: Run | null): number {
    if (run === null) return 0;
    const r = (this.kernel.iommu as NonNullable<Kernel['iommu']>).map(this.#domain as IommuDomain, run.iova, run.phys, run.len, dma.prot, cur.thread);
    if (r < 0) return this.#abortRun(cur.mm, dma, run, r);
    dma.runs.push(run);
    return 0;
  }

  /** A run not yet in the domain is given back here; the caller's vfio_remove_dma undoes the others. */
  #abortRun(mm: Mm, dma: VfioDma, run: Run | null, e: number): number {
    if (run?.frames) {
      mm.unpinPages(run.frames);
      mm.unaccountLocked(run.frames.length);
      dma.locked -= run.frames.length;
    }
    return e;
  }

  // --- UNMAP_DMA -----------------------------------------------------------------------------------

  /**
   * Linux `vfio_iommu_type1_unmap_dma`: `argsz < 24` or unknown flags `EINVAL`; GET_DIRTY_BITMAP with ALL
   * or VADDR `EINVAL`; with GET_DIRTY_BITMAP, the `vfio_bitmap` after the struct (`argsz` must cover it,
   * `EINVAL`; unreadable `EFAULT`; a bitmap out of the address space or the wrong size `EINVAL`). On
   * success `size` is written back as the bytes unmapped; on failure nothing is written.
   */
  #unmapDma(cur: Current, arg: bigint): number {
    const mm = cur.mm;
    const minsz = vfio_iommu_type1_dma_unmap.size;
    const raw = this.#arg.subarray(0, minsz);
    if (mm.copyFromUser(userAddr(arg), raw) < 0) return E.EFAULT;
    const v = this.#argView;
    const argsz = v.getUint32(0, true);
    if (argsz < minsz) return E.EINVAL;
    const u = { flags: v.getUint32(4, true), iova: v.getBigUint64(8, true), size: v.getBigUint64(16, true) };
    const F = VFIO_DMA_UNMAP_FLAG;
    if ((u.flags & ~(F.GET_DIRTY_BITMAP | F.ALL | F.VADDR)) !== 0) return E.EINVAL;
    const dirty = (u.flags & F.GET_DIRTY_BITMAP) !== 0;
    if (dirty && (u.flags & (F.ALL | F.VADDR)) !== 0) return E.EINVAL;
    let bitmap: { pgsize: bigint; size: bigint; data: bigint } | undefined;
    if (dirty) {
      if (argsz < minsz + vfio_bitmap.size) return E.EINVAL;
      const a = userAddr(arg);
      const b = copyArgszLess(mm, a < 0 ? -1 : a + minsz);
      if (typeof b === 'number') return b;
      if (!accessOk(b.data, b.size)) return E.EINVAL;
      if (b.pgsize === 0n) return E.EINVAL;
      const r = verifyBitmapSize(u.size >> log2(lowestBit(b.pgsize)), b.size);
      if (r < 0) return r;
      bitmap = b;
    }
    const res = this.#doUnmap(cur, u.flags, u.iova, u.size, bitmap);
    if (res < 0) return res;
    // copy_to_user(arg, &unmap, minsz) with the bytes unmapped in `size` (#doUnmap left the scratch alone).
    v.setBigUint64(16, this.#lastUnmapped, true);
    return mm.copyToUser(userAddr(arg), raw) < 0 ? E.EFAULT : 0;
  }

  #lastUnmapped = 0n;

  /** Linux `vfio_dma_do_unmap` (spec 1.7 UNMAP_DMA 3-7); sets {@link #lastUnmapped}. */
  #doUnmap(cur: Current, flags: number, iova: bigint, size: bigint, bitmap: { pgsize: bigint; size: bigint; data: bigint } | undefined): number {
    this.#lastUnmapped = 0n;
    const F = VFIO_DMA_UNMAP_FLAG;
    const unmapAll = (flags & F.ALL) !== 0;
    const invalidateVaddr = (flags & F.VADDR) !== 0;
    // (VADDR with an emulated (mdev) group present is EBUSY here in Linux; dmasim has no mdev yet.)
    const pgsize = lowestBit(this.pgsizeBitmap);
    if ((iova & (pgsize - 1n)) !== 0n) return E.EINVAL;
    if (unmapAll) {
      if (iova !== 0n || size !== 0n) return E.EINVAL;
      size = U64_MAX;
    } else {
      if (size === 0n || (size & (pgsize - 1n)) !== 0n) return E.EINVAL;
      if (iova + size - 1n > U64_MAX) return this.kernel.behaviour.vfioWrapErrno === 'EOVERFLOW' ? E.EOVERFLOW : E.EINVAL;
    }
    // When dirty tracking is enabled, allow only the minimum page size.
    if (bitmap !== undefined && (!this.dirtyTracking || bitmap.pgsize !== pgsize)) return E.EINVAL;
    const end = iova + size;
    if (this.v2 && !unmapAll) {
      // v2: the range must not bisect a mapping, at either end.
      let d = this.#find(iova, 1n);
      if (d !== undefined && d.iova !== iova) return E.EINVAL;
      d = this.#findContaining(end - 1n);
      if (d !== undefined && d.iova + d.size !== end) return E.EINVAL;
    }
    let unmapped = 0n;
    let first = -1;
    for (let i = 0; i < this.dmas.length && first < 0; i++) {
      const d = this.dmas[i] as VfioDma;
      if (d.iova + d.size > iova && d.iova < end) first = i;
    }
    if (first < 0) return 0;
    const victims: VfioDma[] = [];
    for (let i = first; i < this.dmas.length; i++) {
      const d = this.dmas[i] as VfioDma;
      if (d.iova >= end) break;
      // v1: a request starting inside a mapping unmaps nothing.
      if (!this.v2 && iova > d.iova) break;
      // (Linux up to 5.19 also stopped here at a mapping of another address space, `dma->task->mm !=
      // current->mm`; 6.0 dropped that check, so 6.1 and 6.12 unmap whoever mapped it.)
      if (invalidateVaddr) {
        if (d.vaddrInvalid) {
          for (const v of victims) v.vaddrInvalid = false;
          return E.EINVAL;
        }
        d.vaddrInvalid = true;
        victims.push(d);
        unmapped += d.size;
        continue;
      }
      victims.push(d);
      unmapped += d.size;
    }
    if (!invalidateVaddr) {
      if (bitmap !== undefined) {
        const r = this.#reportDirty(cur, bitmap, iova, victims);
        if (r < 0) return r;
      }
      for (const d of victims) this.#removeDma(d, cur.thread);
    }
    this.#lastUnmapped = unmapped;
    return 0;
  }

  // --- DIRTY_PAGES ---------------------------------------------------------------------------------

  /**
   * Linux `vfio_iommu_type1_dirty_pages`: v1 `EACCES` (before anything is read); `argsz < 8` or unknown
   * flags `EINVAL`; exactly one of START, STOP, GET_BITMAP, else `EINVAL`. Every page of a pinned
   * mapping counts as dirty (vfio-pci devices do not report their writes), as Linux reports them.
   */
  #dirtyPages(cur: Current, arg: bigint): number {
    if (!this.v2) return E.EACCES;
    const c = copyArgszFromUser(cur.mm, arg, vfio_iommu_type1_dirty_bitmap);
    if (typeof c === 'number') return c;
    const D = VFIO_IOMMU_DIRTY_PAGES_FLAG;
    const flags = c.value.flags;
    if ((flags & ~(D.START | D.STOP | D.GET_BITMAP)) !== 0) return E.EINVAL;
    if (flags === 0 || (flags & (flags - 1)) !== 0) return E.EINVAL;
    if (flags === D.START) {
      this.dirtyTracking = true;
      return 0;
    }
    if (flags === D.STOP) {
      this.dirtyTracking = false;
      return 0;
    }
    // GET_BITMAP: struct vfio_iommu_type1_dirty_bitmap_get { u64 iova, size; struct vfio_bitmap bitmap; }.
    const minsz = vfio_iommu_type1_dirty_bitmap.size;
    if (c.usize - minsz < 40) return E.EINVAL;
    const a = userAddr(arg);
    const raw = new Uint8Array(40);
    const r = cur.mm.copyFromUser(a < 0 ? -1 : a + minsz, raw);
    if (r < 0) return r;
    const dv = new DataView(raw.buffer);
    const iova = dv.getBigUint64(0, true);
    const size = dv.getBigUint64(8, true);
    const bm = { pgsize: dv.getBigUint64(16, true), size: dv.getBigUint64(24, true), data: dv.getBigUint64(32, true) };
    if (iova + size > U64_MAX) return E.EINVAL;
    if (!accessOk(bm.data, bm.size)) return E.EINVAL;
    if (bm.pgsize === 0n) return E.EINVAL;
    const v = verifyBitmapSize(size >> log2(lowestBit(bm.pgsize)), bm.size);
    if (v < 0) return v;
    const pgsize = lowestBit(this.pgsizeBitmap);
    if (bm.pgsize !== pgsize || (iova & (pgsize - 1n)) !== 0n || size === 0n || (size & (pgsize - 1n)) !== 0n) return E.EINVAL;
    if (!this.dirtyTracking) return E.EINVAL;
    // vfio_iova_dirty_bitmap: the range must not bisect a mapping.
    let d = this.#find(iova, 1n);
    if (d !== undefined && d.iova !== iova) return E.EINVAL;
    d = this.#findContaining(iova + size - 1n);
    if (d !== undefined && d.iova + d.size !== iova + size) return E.EINVAL;
    const inRange = this.dmas.filter((x) => x.iova >= iova && x.iova <= iova + size - 1n);
    return this.#reportDirty(cur, bm, iova, inRange);
  }

  /** Writes a bitmap of `[iova, iova + size)` with every page of `dmas` set (one bit per `pgsize` page). */
  #reportDirty(cur: Current, bm: { pgsize: bigint; size: bigint; data: bigint }, iova: bigint, dmas: readonly VfioDma[]): number {
    const pgsize = lowestBit(this.pgsizeBitmap);
    const span = dmas.reduce((m, d) => (d.iova + d.size > m ? d.iova + d.size : m), iova);
    const npages = (span - iova) / pgsize;
    const bytes = new Uint8Array(Number(bitmapBytes(npages < 0n ? 0n : npages)));
    for (const d of dmas) {
      const from = (d.iova - iova) / pgsize;
      const n = d.size / pgsize;
      for (let i = from; i < from + n; i++) bytes[Number(i >> 3n)] = (bytes[Number(i >> 3n)] as number) | (1 << Number(i & 7n));
    }
    if (bytes.length === 0) return 0;
    return cur.mm.copyToUser(userAddr(bm.data), bytes);
  }

  // --- the mapping list ----------------------------------------------------------------------------

  /** Linux `vfio_find_dma`: a mapping overlapping `[start, start + size)`. */
  #find(start: bigint, size: bigint): VfioDma | undefined {
    // Loops, not closures: these run on every MAP and UNMAP.
    const end = start + size;
    for (const d of this.dmas) if (start < d.iova + d.size && end > d.iova) return d;
    return undefined;
  }

  /** Linux `vfio_find_dma(iommu, addr, 0)`: a mapping that holds `addr` past its first byte. */
  #findContaining(addr: bigint): VfioDma | undefined {
    for (const d of this.dmas) if (addr > d.iova && addr < d.iova + d.size) return d;
    return undefined;
  }

  #link(d: VfioDma): void {
    let i = 0;
    while (i < this.dmas.length && (this.dmas[i] as VfioDma).iova < d.iova) i++;
    this.dmas.splice(i, 0, d);
  }

  /** Linux `vfio_iommu_iova_dma_valid`: inside one range (an empty list accepts everything). */
  #iovaValid(start: bigint, last: bigint): boolean {
    if (this.iovaList.length === 0) return true;
    for (const r of this.iovaList) if (start >= r.start && last <= r.last) return true;
    return false;
  }

  /**
   * Linux `vfio_remove_dma` (`vfio_unmap_unpin`): each run leaves the domain (strict: invalidated and
   * waited for), then its pages are unpinned and unaccounted; the entry goes back to `dma_avail`.
   */
  #removeDma(d: VfioDma, cpu?: SimProcess): void {
    const iommu = this.kernel.iommu;
    const dom = this.#domain;
    for (const r of d.runs) {
      if (iommu !== null && dom !== null) iommu.unmap(dom, r.iova, r.len, cpu);
      if (r.frames !== null) d.mm.unpinPages(r.frames);
    }
    d.runs.length = 0;
    if (d.locked > 0) d.mm.unaccountLocked(d.locked);
    d.locked = 0;
    const i = this.dmas.indexOf(d);
    if (i >= 0) this.dmas.splice(i, 1);
    this.dmaAvail++;
  }

  #unmapUnpinAll(cpu?: SimProcess): void {
    while (this.dmas.length > 0) this.#removeDma(this.dmas[0] as VfioDma, cpu);
  }
}

/** `struct vfio_bitmap` at `addr`, or `-EFAULT`. */
function copyArgszLess(mm: Mm, addr: number): { pgsize: bigint; size: bigint; data: bigint } | number {
  const raw = new Uint8Array(vfio_bitmap.size);
  const r = mm.copyFromUser(addr, raw);
  if (r < 0) return r;
  const dv = new DataView(raw.buffer);
  return { pgsize: dv.getBigUint64(0, true), size: dv.getBigUint64(8, true), data: dv.getBigUint64(16, true) };
}

/** Linux `access_ok`: the range lies below `TASK_SIZE`. */
function accessOk(addr: bigint, size: bigint): boolean {
  return addr + size <= 0x7fff_ffff_f000n;
}

/** Linux `verify_bitmap_size`. */
function verifyBitmapSize(npages: bigint, bitmapSize: bigint): number {
  if (npages === 0n || bitmapSize === 0n || bitmapSize > DIRTY_BITMAP_SIZE_MAX || bitmapSize < bitmapBytes(npages)) return E.EINVAL;
  return 0;
}

/** `range` less every region in `resv` (Linux `vfio_iommu_resv_exclude`), in order. */
function excludeRegions(range: IovaRange, resv: readonly IovaRange[]): IovaRange[] {
  let out: IovaRange[] = [range];
  for (const r of resv) {
    const next: IovaRange[] = [];
    for (const x of out) {
      if (r.last < x.start || r.start > x.last) {
        next.push(x);
        continue;
      }
      if (r.start > x.start) next.push({ start: x.start, last: r.start - 1n });
      if (r.last < x.last) next.push({ start: r.last + 1n, last: x.last });
    }
    out = next;
  }
  return out;
}

/**
 * Linux `vfio_iommu_type1_check_extension`: TYPE1, TYPE1v2 and UNMAP_ALL 1; UPDATE_VADDR 1 only with an
 * instance and no emulated (mdev) group (6.2+: 0 when asked before SET_IOMMU); DMA_CC 1 only with an
 * instance whose domains enforce cache coherency (intel: ECAP.SC); anything else 0. dmasim has no
 * nesting support: TYPE1_NESTING_IOMMU answers 0.
 */
function type1CheckExtension(iommu: Type1Iommu | null, arg: bigint): number {
  switch (arg) {
    case BigInt(VFIO_EXT.TYPE1_IOMMU):
    case BigInt(VFIO_EXT.TYPE1v2_IOMMU):
    case BigInt(VFIO_EXT.UNMAP_ALL):
      return 1;
    case BigInt(VFIO_EXT.UPDATE_VADDR):
      return iommu === null ? 0 : 1;
    case BigInt(VFIO_EXT.DMA_CC_IOMMU): {
      if (iommu === null) return 0;
      const u = iommu.kernel.iommu?.unit;
      return u !== undefined && ((u.caps.ecap >> 7n) & 1n) === 1n ? 1 : 0;
    }
    default:
      return 0;
  }
}

/** The type1 driver (`vfio_iommu_driver_ops_type1`): opens for TYPE1 and TYPE1v2, `-EINVAL` for any other type. */
export const type1Driver: VfioIommuDriver = {
  name: 'vfio-iommu-type1',
  checkExtension: (_kernel, arg) => type1CheckExtension(null, arg),
  open(kernel, arg) {
    if (arg === BigInt(VFIO_EXT.TYPE1_IOMMU)) return new Type1Iommu(kernel, false);
    if (arg === BigInt(VFIO_EXT.TYPE1v2_IOMMU)) return new Type1Iommu(kernel, true);
    return E.EINVAL;
  },
};
