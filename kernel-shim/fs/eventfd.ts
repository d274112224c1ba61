import { E } from '../errno.ts';
import type { Current } from '../task/current.ts';
import { O, POLL } from '../uapi/linux.ts';
import { WaitHead } from '../wait.ts';
import { File, type UserBuf, type FileOperations, type PollTable } from './file.ts';
import { fileInode } from './inode.ts';

/** Linux `ULLONG_MAX`: a write keeps the count below it; `eventfd_signal` saturates at it (`EPOLLERR`). */
const ULLONG_MAX = 0xffff_ffff_ffff_ffffn;

/** An eventfd's state (Linux `struct eventfd_ctx`): kernel code signals it with {@link eventfdSignal}. */
export class EventfdCtx {
  count: bigint;
  readonly semaphore: boolean;
  readonly wq = new WaitHead('eventfd');
  /** A blocked read's wake condition, made once (the read path is hot: one per interrupt waited for). */
  readonly readable = (): boolean => this.count > 0n;
  constructor(count: bigint, semaphore: boolean) {
    this.count = count;
    this.semaphore = semaphore;
  }
}

/**
 * Linux `eventfd_signal(ctx)`: adds `n` (1 by default) and wakes readers and pollers; from interrupt
 * context, so it never sleeps (a count that would pass the maximum saturates it, as the kernel's does).
 */
export function eventfdSignal(ctx: EventfdCtx, n = 1n): void {
  ctx.count = ctx.count + n > ULLONG_MAX ? ULLONG_MAX : ctx.count + n;
  ctx.wq.wake();
}

const scratch = new Uint8Array(8);
const scratchView = new DataView(scratch.buffer);

/**
 * Takes the count (or 1 in semaphore mode) into `buf`. Linux consumes first (`eventfd_ctx_do_read` under
 * the lock), then `copy_to_iter`: a bad buffer gets `EFAULT` and the count is gone.
 */
function takeCount(ctx: EventfdCtx, buf: UserBuf): number {
  const v = ctx.semaphore ? 1n : ctx.count;
  ctx.count -= v;
  ctx.wq.wake();
  scratchView.setBigUint64(0, v, true);
  const r = buf.copyOut(scratch);
  return r < 0 ? r : 8;
}

function addCount(ctx: EventfdCtx, v: bigint): number {
  ctx.count += v;
  ctx.wq.wake();
  return 8;
}

// Module-level functions, not per-call closures: the hot path of every eventfd read and write.
async function readBlocking(ctx: EventfdCtx, cur: Current, buf: UserBuf): Promise<number> {
  const r = await cur.waitEvent(ctx.wq, ctx.readable, 'read on eventfd');
  return r < 0 ? r : takeCount(ctx, buf);
}

async function writeBlocking(ctx: EventfdCtx, cur: Current, v: bigint): Promise<number> {
  const r = await cur.waitEvent(ctx.wq, () => ULLONG_MAX - ctx.count > v, 'write on eventfd');
  return r < 0 ? r : addCount(ctx, v);
}

const eventfdOps: FileOperations = {
  // noop_llseek: lseek succeeds and returns the position; pread stays ESPIPE (no FMODE_PREAD).
  llseek: (file: File) => file.pos,
  read(file: File, cur: Current, buf: UserBuf): number | Promise<number> {
    const ctx = file.private as EventfdCtx;
    if (buf.length < 8) return E.EINVAL;
    if (ctx.count > 0n) return takeCount(ctx, buf);
    if ((file.flags & O.NONBLOCK) !== 0) return E.EAGAIN;
    return readBlocking(ctx, cur, buf);
  },
  write(file: File, cur: Current, buf: UserBuf): number | Promise<number> {
    const ctx = file.private as EventfdCtx;
    if (buf.length < 8) return E.EINVAL;
    const c = buf.copyIn(scratch);
    if (c < 0) return c;
    const v = scratchView.getBigUint64(0, true);
    if (v === 0xffff_ffff_ffff_ffffn) return E.EINVAL;
    // eventfd_write: `ULLONG_MAX - ctx->count > ucnt`, so the count tops out at ULLONG_MAX - 1.
    if (ULLONG_MAX - ctx.count > v) return addCount(ctx, v);
    if ((file.flags & O.NONBLOCK) !== 0) return E.EAGAIN;
    return writeBlocking(ctx, cur, v);
  },
  poll(file: File, _cur: Current, pt: PollTable): number {
    const ctx = file.private as EventfdCtx;
    pt.wait(ctx.wq);
    let mask = 0;
    if (ctx.count > 0n) mask |= POLL.IN | POLL.RDNORM;
    if (ctx.count === ULLONG_MAX) mask |= POLL.ERR;
    if (ULLONG_MAX - 1n > ctx.count) mask |= POLL.OUT | POLL.WRNORM;
    return mask;
  },
};

const eventfdInode = fileInode('anon', eventfdOps, 0o600);

/** A new eventfd file (`anon_inode:[eventfd]`) with `initval` and `O_RDWR` plus `flags`. */
export function createEventfd(initval: number, semaphore: boolean, flags: number): File {
  const f = new File(eventfdInode, eventfdOps, 'anon_inode:[eventfd]', O.RDWR | flags);
  f.private = new EventfdCtx(BigInt(initval), semaphore);
  return f;
}
