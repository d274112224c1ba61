import { E } from '../errno.ts';
import type { Mm } from '../mm/mm.ts';
import type { Current } from '../task/current.ts';
import { copyArgszFromUser, copyStructToUser, userAddr } from '../uapi/codec.ts';
import { PAGE_SIZE } from '../uapi/linux.ts';
import { DMASIM_TEST_PIN_FLAG, dmasim_test_pin } from '../uapi/testdev.ts';

/** One pinned range of an open file. */
interface Pin {
  readonly start: bigint;
  readonly length: bigint;
  readonly mm: Mm;
  readonly frames: readonly number[];
}

const PAGE = BigInt(PAGE_SIZE);
const U64_MAX = (1n << 64n) - 1n;

/**
 * The pins one open file of the test device holds (type1's `vfio_dma` list, reduced): every range is
 * pinned page by page and counted against `RLIMIT_MEMLOCK` as `vfio_pin_pages_remote` does; closing the
 * file unpins and unaccounts everything.
 */
export class PinSet {
  readonly #pins: Pin[] = [];

  /** Pages held. */
  get pages(): number {
    return this.#pins.reduce((n, p) => n + p.frames.length, 0);
  }

  /**
   * `DMASIM_TEST_PIN`. Checks in type1 `MAP_DMA` order: `argsz < 24` or an unknown flag (`EINVAL`); length 0
   * or vaddr/length not page-aligned (`EINVAL`); wrap past 2^64 (`EINVAL`); overlap with a range this file
   * pinned (`EEXIST`); then page by page: the page (`EFAULT` if unmapped, or read-only for a WRITE pin), then
   * the limit (`ENOMEM` past `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK`). A failure unpins what it pinned.
   */
  pin(cur: Current, arg: bigint): number {
    const c = copyArgszFromUser(cur.mm, arg, dmasim_test_pin);
    if (typeof c === 'number') return c;
    const { flags, vaddr, length } = c.value;
    if ((flags & ~DMASIM_TEST_PIN_FLAG.WRITE) !== 0) return E.EINVAL;
    if (length === 0n || vaddr % PAGE !== 0n || length % PAGE !== 0n) return E.EINVAL;
    if (vaddr > U64_MAX - (length - 1n)) return E.EINVAL;
    if (this.#pins.some((p) => p.start < vaddr + length && vaddr < p.start + p.length)) return E.EEXIST;
    const mm = cur.mm;
    const lockCap = cur.cred.capable('IPC_LOCK');
    const limit = Math.floor(mm.memlockLimit / PAGE_SIZE);
    const base = userAddr(vaddr);
    const npages = length / PAGE;
    const frames: number[] = [];
    const fail = (e: number): number => {
      mm.unpinPages(frames);
      return e;
    };
    for (let i = 0n; i < npages; i++) {
      const a = base < 0 ? -1 : base + Number(i) * PAGE_SIZE;
      const f = mm.pinPages(a, 1, (flags & DMASIM_TEST_PIN_FLAG.WRITE) !== 0);
      if (typeof f === 'number') return fail(f);
      frames.push(...f);
      if (!lockCap && mm.lockedVm + frames.length > limit) return fail(E.ENOMEM);
    }
    const r = mm.accountLocked(frames.length, cur.cred);
    if (r < 0) return fail(r);
    this.#pins.push({ start: vaddr, length, mm, frames });
    return 0;
  }

  /**
   * `DMASIM_TEST_UNPIN`: the range must be one this file pinned, exactly (`ENOENT` otherwise); `ALL` with
   * vaddr and length 0 unpins everything. `length` is written back as the bytes unpinned. `argsz < 24`, an
   * unknown flag, ALL with a range, or a zero or misaligned range without ALL: `EINVAL`.
   */
  unpin(cur: Current, arg: bigint): number {
    const c = copyArgszFromUser(cur.mm, arg, dmasim_test_pin);
    if (typeof c === 'number') return c;
    const v = c.value;
    if ((v.flags & ~DMASIM_TEST_PIN_FLAG.ALL) !== 0) return E.EINVAL;
    let done = 0n;
    if ((v.flags & DMASIM_TEST_PIN_FLAG.ALL) !== 0) {
      if (v.vaddr !== 0n || v.length !== 0n) return E.EINVAL;
      for (const p of this.#pins) done += p.length;
      this.release();
    } else {
      if (v.length === 0n || v.vaddr % PAGE !== 0n || v.length % PAGE !== 0n) return E.EINVAL;
      const i = this.#pins.findIndex((p) => p.start === v.vaddr && p.length === v.length);
      if (i < 0) return E.ENOENT;
      const [p] = this.#pins.splice(i, 1);
      if (p !== undefined) {
        drop(p);
        done = p.length;
      }
    }
    v.length = done;
    return copyStructToUser(cur.mm, arg, dmasim_test_pin, v, c.usize);
  }

  /** Unpins and unaccounts everything (the file's release). */
  release(): void {
    for (const p of this.#pins.splice(0)) drop(p);
  }
}

function drop(p: Pin): void {
  p.mm.unpinPages(p.frames);
  p.mm.unaccountLocked(p.frames.length);
}
