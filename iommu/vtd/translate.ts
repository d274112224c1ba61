import {
  DmaStatus,
  FRAME_SHIFT,
  IdentityDmaPort,
  SimInvariantError,
  failDma,
  failDmaWide,
  type DmaPort,
  type DmaResult,
} from '../../sim/index.ts';
import { explainWalk, formatExplain, type ExplainAccess, type ExplainResult } from './explain.ts';
import { faultReasonText, isQualifiedFault, FaultReason } from './faults.ts';
import { pageSize } from './iotlb.ts';
import { setCurrent, type VtdState } from './state.ts';
import { TranslationType, readContext, walkSecondLevel } from './walker.ts';

/**
 * The DMA translation path of a VT-d unit: context (context cache or root and context entries), IOTLB, walk,
 * fault logging, the transfer to the downstream port, and the hot path for small accesses that hit.
 */

const FRAME_SIZE = 1 << FRAME_SHIFT;
const FRAME_MASK = FRAME_SIZE - 1;
/** Transfers up to this many bytes PhysicalMemory copies bytewise; the unit copies them itself (see readSmall). */
const SMALL_COPY = 32;
/** 2^n for the address widths in use. */
const LIMITS: readonly number[] = Array.from({ length: 64 }, (_, n) => 2 ** n);

/**
 * One DMA access through the unit to `down` (the translating port's work). Pass-through when translation is
 * off or the context says TT = 2; else page by page, IOTLB first, then a walk. Faults are logged and
 * returned in `res` with the bytes moved before the failing page.
 */
export function accessDma(s: VtdState, down: DmaPort, rid: number, addr: number, buf: Uint8Array, off: number, len: number, res: DmaResult, write: boolean): void {
  // The common case in the fewest steps: a small transfer inside one 4 KiB page, by the requester whose
  // multi-level context is loaded (`s.hotRid`: TE on, oracle off) and still cached, hitting a 4 KiB IOTLB
  // entry, to memory through an identity port. The general path would give it the same result (argument
  // checks, counters, cost, `res`); this one skips its layers and is small enough for the engine to inline
  // whole, lookup and copy included.
  if (
    rid === s.hotRid && s.ccGen[rid] === s.gen && down === s.memoryPort &&
    len > 0 && len <= SMALL_COPY && (len | 0) === len && off >= 0 && off + len <= buf.length &&
    Number.isSafeInteger(addr) && addr >= 0 && addr < s.limit && (addr & FRAME_MASK) + len <= FRAME_SIZE
  ) {
    const tlb = s.iotlb;
    const w = tlb.find4k(s.ctx.did, addr, write ? 2 : 1);
    // The frame number straight from the entry: no float arithmetic on the way to the bytes. A page past
    // the end of memory is left to the identity port, on the general path.
    const fn = w < 0 ? -1 : tlb.frameOf(w);
    if (fn >= 0 && fn < s.mem.frameCount) {
      tlb.touch(w);
      s.c.ctxHit.value++;
      res.costNs += s.lookupNs;
      if (write) writeSmall(s, rid, fn, addr & FRAME_MASK, buf, off, len, res);
      else readSmall(s, rid, fn, addr & FRAME_MASK, buf, off, len, res);
      return;
    }
  }
  accessGeneral(s, down, rid, addr, buf, off, len, res, write);
}

/** {@link accessDma} for every case (the fast path above is one of them). */
function accessGeneral(s: VtdState, down: DmaPort, rid: number, addr: number, buf: Uint8Array, off: number, len: number, res: DmaResult, write: boolean): void {
  if (!(Number.isSafeInteger(addr) && addr >= 0 && Number.isSafeInteger(len) && len >= 0 && off >= 0 && off + len <= buf.length)) {
    throw new SimInvariantError(`DMA through ${s.name}: bad arguments addr=${addr} off=${off} len=${len} buffer=${buf.length}`);
  }
  if (!s.te) {
    if (write) down.write(rid, addr, buf, off, len, res);
    else down.read(rid, addr, buf, off, len, res);
    return;
  }
  rid &= 0xffff;
  // Fast path: the same requester as the previous access, its context-cache entry still valid.
  if (rid === s.curRid && s.ccGen[rid] === s.gen) s.c.ctxHit.value++;
  else if (!context(s, rid, res)) {
    fault(s, rid, addr >>> 0, Math.floor(addr / 0x1_0000_0000), addr, write, s.ctx.fault, s.ctx.fpd);
    failDma(res, DmaStatus.FAULT, addr, s.ctx.fault, 0);
    return;
  }
  if (s.ctx.tt === TranslationType.PASS_THROUGH) {
    if (write) down.write(rid, addr, buf, off, len, res);
    else down.read(rid, addr, buf, off, len, res);
    return;
  }
  const need = write ? 2 : 1;
  // Most DMA stays inside one 4 KiB page, hence inside the page that maps it: one translation, one transfer.
  if (len > 0 && (addr & 0xfff) + len <= 0x1000) {
    const pa = translate(s, rid, addr, need, write, res);
    if (pa < 0) failDma(res, DmaStatus.FAULT, addr, s.reason, 0);
    else if (len <= SMALL_COPY && pa + len <= s.mem.size && isMemoryPort(s, down)) {
      if (write) writeSmall(s, rid, Math.floor(pa / FRAME_SIZE), pa & FRAME_MASK, buf, off, len, res);
      else readSmall(s, rid, Math.floor(pa / FRAME_SIZE), pa & FRAME_MASK, buf, off, len, res);
    }
    else transfer(s, down, rid, addr, pa, buf, off, len, 0, res, write);
    return;
  }
  let done = 0;
  while (done < len) {
    const iova = addr + done;
    const pa = translate(s, rid, iova, need, write, res);
    if (pa < 0) {
      failDma(res, DmaStatus.FAULT, iova, s.reason, done);
      return;
    }
    const n = Math.min(len - done, s.extent);
    if (!transfer(s, down, rid, iova, pa, buf, off + done, n, done, res, write)) return;
    done += n;
  }
  res.status = DmaStatus.OK;
  res.bytesDone = len;
  res.faultReason = 0;
}

/** Whether `down` is an identity port onto this unit's memory (the machine's usual downstream). */
function isMemoryPort(s: VtdState, down: DmaPort): boolean {
  if (down === s.memoryPort) return true;
  if (!(down instanceof IdentityDmaPort && down.memory === s.mem)) return false;
  s.memoryPort = down;
  s.memoryNs = down.accessNs;
  return true;
}

/**
 * What the identity port onto memory (`s.memoryPort`) does for a read of `len` (at most
 * {@link SMALL_COPY}) bytes at offset `o` of frame `fn`, inside the frame, without its layers: its cost, the
 * bytes copied one by one as PhysicalMemory copies them, the report to memory's DMA observer, success.
 */
function readSmall(s: VtdState, rid: number, fn: number, o: number, buf: Uint8Array, off: number, len: number, res: DmaResult): void {
  res.costNs += s.memoryNs;
  const ob = s.mem.dmaObserver;
  if (ob !== null) ob.dmaAccess(rid, fn * FRAME_SIZE + o, len, false);
  const f = s.mem.peekFrame(fn);
  // A frame never written reads as zeros (a loop: fill() costs more than a few bytes).
  for (let i = 0; i < len; i++) buf[off + i] = f === undefined ? 0 : (f[o + i] as number);
  res.status = DmaStatus.OK;
  res.bytesDone = len;
  res.faultReason = 0;
}

/** The write counterpart of {@link readSmall}. */
function writeSmall(s: VtdState, rid: number, fn: number, o: number, buf: Uint8Array, off: number, len: number, res: DmaResult): void {
  res.costNs += s.memoryNs;
  const ob = s.mem.dmaObserver;
  if (ob !== null) ob.dmaAccess(rid, fn * FRAME_SIZE + o, len, true);
  const f = s.mem.frame(fn);
  // As PhysicalMemory.write: a whole source buffer goes by set(), which is memmove-safe should it alias the frame.
  if (len === buf.length) f.set(buf, o);
  else for (let i = 0; i < len; i++) f[o + i] = buf[off + i] as number;
  res.status = DmaStatus.OK;
  res.bytesDone = len;
  res.faultReason = 0;
}

/**
 * Moves `n` bytes of a translated page (IOVA `iova`, physical `pa`, after `done` bytes of the access) through
 * `down`. On a refusal `res` reports the IOVA of the first byte the completer did not take; returns whether
 * it took them all.
 */
function transfer(s: VtdState, down: DmaPort, rid: number, iova: number, pa: number, buf: Uint8Array, off: number, n: number, done: number, res: DmaResult, write: boolean): boolean {
  if (write) down.write(rid, pa, buf, off, n, res);
  else down.read(rid, pa, buf, off, n, res);
  if (res.status !== DmaStatus.OK) {
    const moved = res.bytesDone;
    res.bytesDone = done + moved;
    res.faultAddr = iova + moved;
    res.faultAddrWide = BigInt(iova + moved);
    return false;
  }
  res.bytesDone = done + n;
  res.faultReason = 0;
  return true;
}

/** A DMA at a bus address that may not fit a `number`: at or past 2^53 it faults with reason 4 (exact address). */
export function accessDmaWide(s: VtdState, down: DmaPort, rid: number, addr: bigint, buf: Uint8Array, off: number, len: number, res: DmaResult, write: boolean): void {
  if (addr >= 0n && addr <= BigInt(Number.MAX_SAFE_INTEGER)) {
    accessDma(s, down, rid, Number(addr), buf, off, len, res, write);
    return;
  }
  const a = BigInt.asUintN(64, addr);
  if (!s.te) {
    if (write) down.writeWide(rid, a, buf, off, len, res);
    else down.readWide(rid, a, buf, off, len, res);
    return;
  }
  rid &= 0xffff;
  const lo = Number(a & 0xffff_ffffn);
  const hi = Number(a >> 32n);
  let reason: number = FaultReason.ADDR_BEYOND_MGAW;
  let fpd = false;
  if (!context(s, rid, res)) {
    reason = s.ctx.fault;
    fpd = s.ctx.fpd;
  } else if (s.ctx.tt === TranslationType.PASS_THROUGH) {
    if (write) down.writeWide(rid, a, buf, off, len, res);
    else down.readWide(rid, a, buf, off, len, res);
    return;
  } else {
    fpd = s.ctx.fpd;
  }
  fault(s, rid, lo, hi, a, write, reason, fpd);
  failDmaWide(res, DmaStatus.FAULT, a, reason);
}

/** Loads `rid`'s context into `s.ctx` (context cache, else root and context entries from memory). */
function context(s: VtdState, rid: number, res: DmaResult): boolean {
  const c = s.ctx;
  if (s.ccOn && s.ccGen[rid] === s.gen) {
    s.c.ctxHit.value++;
    // The context already loaded for the previous access: nothing to copy.
    if (rid === s.curRid) return true;
    c.did = s.ccDid[rid] as number;
    c.tt = s.ccTT[rid] as number;
    c.levels = s.ccLevels[rid] as number;
    c.agaw = 12 + 9 * c.levels;
    c.fpd = s.ccFpd[rid] === 1;
    c.ptr = s.ccPtr[rid] as number;
  } else {
    s.c.ctxMiss.value++;
    setCurrent(s, -1);
    const ok = readContext(s.mem, s.params, s.root, rid, c, s.trace?.active === true ? s.traceRec : null);
    res.costNs += c.reads * s.memReadNs;
    s.c.reads.value += c.reads;
    if (!ok) return false;
    if (s.ccOn) {
      s.ccGen[rid] = s.gen;
      s.ccDid[rid] = c.did;
      s.ccTT[rid] = c.tt;
      s.ccLevels[rid] = c.levels;
      s.ccFpd[rid] = c.fpd ? 1 : 0;
      s.ccPtr[rid] = c.ptr;
    }
  }
  s.limit = c.agaw < s.addressWidth ? LIMITS[c.agaw] ?? 0 : LIMITS[s.addressWidth] ?? 0;
  setCurrent(s, s.ccOn ? rid : -1);
  return true;
}

/** Physical address of `iova` in the current context, or -1 after logging the fault (`s.reason`). */
function translate(s: VtdState, rid: number, iova: number, need: number, write: boolean, res: DmaResult): number {
  const c = s.ctx;
  if (iova >= s.limit) {
    fault(s, rid, iova >>> 0, Math.floor(iova / 0x1_0000_0000), iova, write, FaultReason.ADDR_BEYOND_MGAW, c.fpd);
    return -1;
  }
  const tlb = s.iotlb;
  if (tlb.entries > 0) {
    res.costNs += s.lookupNs;
    const w = tlb.lookup(c.did, iova, need, true);
    if (w >= 0) {
      const pa = tlb.physOf(w, iova);
      if (s.oracle) checkStale(s, rid, iova, need, pa);
      s.extent = tlb.extentOf(w, iova);
      return pa;
    }
  }
  const wr = s.walk;
  const ok = walkSecondLevel(s.mem, s.params, c.ptr, c.levels, iova, need, wr, s.trace?.active === true ? s.traceRec : null);
  res.costNs += wr.reads * s.memReadNs;
  s.c.reads.value += wr.reads;
  if (!ok) {
    fault(s, rid, iova >>> 0, Math.floor(iova / 0x1_0000_0000), iova, write, wr.fault, c.fpd);
    return -1;
  }
  tlb.fill(c.did, wr.iovaBase, wr.pageBase, wr.level, wr.perm, wr.leafAddr);
  s.extent = wr.iovaBase + pageSize(wr.level) - iova;
  return wr.pageBase + (iova - wr.iovaBase);
}

/** The oracle: what the tables say now for `iova`, against the IOTLB's `cached` answer. Free in virtual time. */
function checkStale(s: VtdState, rid: number, iova: number, need: number, cached: number): void {
  const c = s.oCtx;
  const w = s.oWalk;
  let now = -1;
  let why = '';
  if (!readContext(s.mem, s.params, s.root, rid, c, null)) why = faultReasonText(c.fault);
  else if (c.tt === TranslationType.PASS_THROUGH) now = iova;
  else if (iova >= 2 ** Math.min(c.agaw, s.addressWidth)) why = faultReasonText(FaultReason.ADDR_BEYOND_MGAW);
  else if (!walkSecondLevel(s.mem, s.params, c.ptr, c.levels, iova, need, w, null)) why = faultReasonText(w.fault);
  else now = w.pageBase + (iova - w.iovaBase);
  if (now === cached) return;
  s.c.stale.value++;
  s.trace?.emit(s.clock.now, s.name, 'stale', { rid, iova, cached, tables: now >= 0 ? now : why });
}

function fault(s: VtdState, rid: number, lo: number, hi: number, addr: number | bigint, write: boolean, reason: number, fpd: boolean): void {
  s.reason = reason;
  s.c.faults.value++;
  const suppressed = fpd && isQualifiedFault(reason);
  const recorded = !suppressed && s.faults.record(rid, lo, hi, reason, write);
  if (recorded) s.c.recorded.value++;
  const t = s.trace;
  if (t?.active === true) {
    const e = explainTranslation(s, rid, typeof addr === 'bigint' ? addr : BigInt(addr), write ? 'write' : 'read');
    t.emit(s.clock.now, s.name, 'fault', {
      rid, iova: typeof addr === 'bigint' ? addr : BigInt(addr), reason, text: faultReasonText(reason), write, recorded, suppressed, walk: formatExplain(e).split('\n'),
    });
  }
}

/**
 * The walk for `rid` and `iova` as the tables in memory give it now, step by step, with the IOTLB's view
 * beside it. No side effects: no IOTLB or context-cache fill, no fault record, no counter, no trace.
 */
export function explainTranslation(s: VtdState, rid: number, iova: number | bigint, access: ExplainAccess): ExplainResult {
  return explainWalk(s.view, rid & 0xffff, typeof iova === 'bigint' ? BigInt.asUintN(64, iova) : BigInt(Number.isSafeInteger(iova) && iova >= 0 ? iova : 0), access);
}
