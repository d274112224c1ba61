import { E } from '../errno.ts';
import type { Kernel } from '../kernel.ts';
import type { Mm } from '../mm/mm.ts';
import { PAGE_SIZE } from '../uapi/linux.ts';

/** `Number.MAX_SAFE_INTEGER` as a bigint, made once. */
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * The pinned-page store of iommufd (Linux `drivers/iommu/iommufd/pages.c`, `struct iopt_pages`): one
 * linear chunk of a process's virtual memory that one or more IOAS areas point into (a COPY shares it, so
 * a page is pinned and accounted once however many areas and IOASes use it). Pages are pinned lazily:
 * only when an area over them is put into a domain, one reference per area holding them; the last
 * reference unpins and unaccounts.
 *
 * Accounting (`enum iopt_pages_account_mode`), fixed when the pages are created by IOAS_MAP:
 * - `user` (the default, "the modern method used by io_uring"): the mapping user's `locked_vm` (one counter
 *   per uid and kernel, {@link userLockedVm}) against the mapping task's `RLIMIT_MEMLOCK`;
 * - `mm` (OPTION RLIMIT_MODE = 1, and what VFIO's type1 does): the mapping process's `mm->locked_vm`
 *   (`/proc/<pid>/status` `VmLck`) against the same limit;
 * - `none`: the mapping task had `CAP_IPC_LOCK`.
 * Past the limit a pin gives `ENOMEM`.
 */

/** `IOPT_PAGES_ACCOUNT_*`. */
export type AccountMode = 'none' | 'user' | 'mm';

const PAGE = BigInt(PAGE_SIZE);

/** The per-uid `user_struct.locked_vm` counters of each kernel (iommufd is their only user in dmasim). */
const userLocked = new WeakMap<Kernel, Map<number, number>>();

/** Pages `uid` has locked through iommufd's `user` accounting on `kernel` (Linux `user->locked_vm`). */
export function userLockedVm(kernel: Kernel, uid: number): number {
  return userLocked.get(kernel)?.get(uid) ?? 0;
}

function addUserLocked(kernel: Kernel, uid: number, delta: number): void {
  let m = userLocked.get(kernel);
  if (m === undefined) {
    m = new Map();
    userLocked.set(kernel, m);
  }
  const v = (m.get(uid) ?? 0) + delta;
  if (v === 0) m.delete(uid);
  else m.set(uid, v);
}

/** One pinned page: its frame and how many areas hold it. */
interface PinnedPage {
  readonly frame: number;
  refs: number;
}

/** Who created the pages (Linux `source_task`, `source_mm`, `source_user`). */
export interface PagesSource {
  readonly kernel: Kernel;
  readonly mm: Mm;
  readonly uid: number;
}

/** Linux `struct iopt_pages`. */
export class IoptPages {
  readonly source: PagesSource;
  /** The first byte's page (`ALIGN_DOWN(uptr, PAGE_SIZE)`). */
  readonly uptr: bigint;
  /** Pages spanned (page indexes run from 0). */
  readonly npages: number;
  /** Pinned for write (`IOMMU_WRITE` at MAP): read-only pages cannot back a writeable area (`EPERM`). */
  readonly writable: boolean;
  readonly accountMode: AccountMode;
  /** Areas pointing into it (Linux `kref`). */
  refs = 0;
  readonly #pinned = new Map<number, PinnedPage>();

  constructor(source: PagesSource, uptr: bigint, length: bigint, writable: boolean, accountMode: AccountMode) {
    this.source = source;
    this.uptr = uptr - (uptr % PAGE);
    this.npages = Number((length + (uptr - this.uptr) + PAGE - 1n) / PAGE);
    this.writable = writable;
    this.accountMode = accountMode;
  }

  /** Pages pinned now. */
  get pinnedCount(): number {
    return this.#pinned.size;
  }

  /**
   * Takes a pin reference on each page of `[first, last]` (indexes) and returns their frames, or
   * `-EFAULT` (an unmapped address, a device mapping, read-only memory for writable pages) or `-ENOMEM`
   * (past `RLIMIT_MEMLOCK`). All or nothing: on failure the references taken here are dropped again.
   */
  pin(first: number, last: number): number[] | number {
    const out: number[] = [];
    for (let i = first; i <= last; i++) {
      const f = this.#pinOne(i);
      if (f < 0) {
        this.unpin(first, i - 1);
        return f;
      }
      out.push(f);
    }
    return out;
  }

  #pinOne(i: number): number {
    const have = this.#pinned.get(i);
    if (have !== undefined) {
      have.refs++;
      return have.frame;
    }
    const va = this.uptr + BigInt(i) * PAGE;
    const mm = this.source.mm;
    const frame = mm.pinPage(va > MAX_SAFE_BIG ? -1 : Number(va), this.writable);
    if (frame < 0) return frame;
    const a = this.#account(1);
    if (a < 0) {
      mm.pages.unpin(frame);
      return a;
    }
    this.#pinned.set(i, { frame, refs: 1 });
    return frame;
  }

  /** Drops a pin reference on each page of `[first, last]`; the last one unpins and unaccounts the page. */
  unpin(first: number, last: number): void {
    for (let i = first; i <= last; i++) {
      const p = this.#pinned.get(i);
      if (p === undefined) continue;
      if (--p.refs > 0) continue;
      this.#pinned.delete(i);
      this.source.mm.pages.unpin(p.frame);
      this.#unaccount(1);
    }
  }

  /** Linux `iopt_pages_update_pinned` (increment): `-ENOMEM` past the limit. */
  #account(n: number): number {
    const { kernel, mm, uid } = this.source;
    const limit = Math.floor(mm.memlockLimit / PAGE_SIZE);
    if (this.accountMode === 'user') {
      if (userLockedVm(kernel, uid) + n > limit) return E.ENOMEM;
      addUserLocked(kernel, uid, n);
    } else if (this.accountMode === 'mm') {
      if (mm.lockedVm + n > limit) return E.ENOMEM;
      mm.lockedVm += n;
    }
    return 0;
  }

  #unaccount(n: number): void {
    const { kernel, mm, uid } = this.source;
    if (this.accountMode === 'user') addUserLocked(kernel, uid, -n);
    else if (this.accountMode === 'mm') mm.unaccountLocked(n);
  }
}
