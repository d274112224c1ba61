import { FRAME_SHIFT } from '../../sim/index.ts';
import { InvDescType, executeDescriptor, type QiHost } from './qi.ts';
import { REG, fmask } from './regs.ts';
import type { VtdTimer } from './options.ts';
import { guestError, hex64, raise, setCurrent, type VtdState } from './state.ts';

const FSTS_IQE = fmask('FSTS', 'IQE');
const ICS_IWC = fmask('ICS', 'IWC');
const IECTL_IM = fmask('IECTL', 'IM');
const IECTL_IP = fmask('IECTL', 'IP');
const FRAME_SIZE = 1 << FRAME_SHIFT;
const FRAME_MASK = FRAME_SIZE - 1;
/** A wait descriptor's interrupt flag (bit 4 of `lo`). */
const WAIT_IF = 1 << 4;

// ---------------------------------------------------------------- cache invalidation

/** SRTP and TE changes: the IOTLB and the whole context cache go. */
export function resetCaches(s: VtdState): void {
  s.iotlb.invalidateAll();
  invalidateContext(s, 1, 0, 0, 0);
  setCurrent(s, -1);
}

/** Context-cache invalidation: granularity 1 global, 2 domain `did`, 3 device `sid` with function mask `fm`. */
export function invalidateContext(s: VtdState, g: number, did: number, sid: number, fm: number): void {
  if (!s.ccOn) return;
  if (g === 1) {
    s.gen++;
    if (s.gen === 0x7fff_ffff) {
      s.ccGen.fill(0);
      s.gen = 1;
    }
  } else if (g === 2) {
    for (let r = 0; r < 0x1_0000; r++) if (s.ccGen[r] === s.gen && s.ccDid[r] === did) s.ccGen[r] = 0;
  } else {
    // The function mask drops low devfn bits from the comparison: 1 bit 2, 2 bits 2:1, 3 bits 2:0.
    const ignore = fm === 0 ? 0 : fm === 1 ? 4 : fm === 2 ? 6 : 7;
    const base = sid & ~ignore & 0xffff;
    for (let i = 0; i <= ignore; i++) if ((i & ~ignore) === 0) s.ccGen[base | i] = 0;
  }
}

/** IOTLB invalidation: 1 global, 2 domain, 3 the 2^am pages at `addr` in domain `did`. */
export function invalidateIotlb(s: VtdState, g: number, did: number, addr: number, am: number): void {
  if (g === 1) s.iotlb.invalidateAll();
  else if (g === 2) s.iotlb.invalidateDomain(did);
  else s.iotlb.invalidatePages(did, addr, am);
}

/** The invalidation-completion event (a wait descriptor with IF): ICS.IWC, then IECTL as FECTL for faults. */
export function completion(s: VtdState): void {
  const regs = s.regs;
  if ((regs.get(REG.ICS) & ICS_IWC) !== 0) return;
  regs.update(REG.ICS, 0, ICS_IWC);
  regs.update(REG.IECTL, 0, IECTL_IP);
  if ((regs.get(REG.IECTL) & IECTL_IM) === 0) {
    raise(s, REG.IEADDR, REG.IEDATA);
    regs.update(REG.IECTL, IECTL_IP, 0);
  }
}

// ---------------------------------------------------------------- queued invalidation

/**
 * The invalidation queue's hardware side: the ring at IQA consumed from IQH up to IQT, one descriptor per
 * `qiDescriptorNs` on scheduled events (synchronously when 0), stopping with FSTS.IQE at a bad one. The
 * unit's register behaviour enables and disables it and moves its tail.
 *
 * **Batches.** The descriptor due at `t` takes effect at `t`, but when an observer has promised (through
 * {@link runAhead}) not to look before the clock reaches a horizon, one event processes every further
 * descriptor due by then, as long as each is due strictly before the next other event and needs nothing
 * of the clock (no trace, no completion interrupt, well-formed). Nothing can tell the difference: no event
 * runs in between, and the observer looks only once the clock has passed their due times.
 */
export class InvalidationQueue {
  readonly #s: VtdState;
  readonly #host: QiHost;
  readonly #step: () => void;
  /** The reusable timer of {@link #step}, when the clock offers one. */
  readonly #timer: VtdTimer | undefined;
  #on = false;
  #base = 0;
  #size = 0;
  #head = 0;
  #tail = 0;
  #pending = false;
  /** When {@link #pending}: the time the next descriptor is processed. */
  #due = 0;
  /** See {@link runAhead}; stale (harmless) once the clock has passed it. */
  #horizon = -1;
  /** The dwords of the descriptor {@link #fetch} read. */
  #lo0 = 0;
  #lo1 = 0;
  #hi0 = 0;
  #hi1 = 0;

  constructor(s: VtdState) {
    this.#s = s;
    this.#host = {
      mem: s.mem,
      invalidateContext: (g, did, sid, fm) => invalidateContext(s, g, did, sid, fm),
      invalidateIotlb: (g, did, addr, am) => invalidateIotlb(s, g, did, addr, am),
      completion: () => completion(s),
      traceDescriptor: (index, type, ok, lo0, lo1, hi0, hi1) => {
        s.trace?.emit(s.clock.now, s.name, 'qi.descriptor', { index, type, ok, lo: hex64(lo0, lo1), hi: hex64(hi0, hi1) });
      },
    };
    this.#step = () => {
      this.#pending = false;
      if (this.#processOne() && !this.#batch()) this.kick();
    };
    this.#timer = s.clock.timer?.(this.#step, s.priority);
  }

  /** GSTS.QIES: queued invalidation is enabled (register-based invalidation is then ignored). */
  get on(): boolean {
    return this.#on;
  }

  /** Descriptor index hardware fetches next (IQH.QH). */
  get head(): number {
    return this.#head;
  }

  /** Whether processing is scheduled but not yet run. */
  get pending(): boolean {
    return this.#pending;
  }

  /**
   * The virtual time by which the descriptor at ring index `index` will have been processed if nothing
   * stops the queue: -1 when it is not between IQH and IQT (done, or never posted), `Infinity` when the
   * queue is not running (disabled, stopped by IQE, a tail beyond the ring).
   */
  dueTime(index: number): number {
    const size = this.#size;
    if (!this.#on || index < 0 || index >= size) return -1;
    const ahead = (index - this.#head + size) % size;
    if (ahead >= (this.#tail - this.#head + size) % size) return -1;
    if (!this.#pending) return Infinity;
    return this.#due + ahead * this.#s.qiNs;
  }

  /**
   * An observer's promise: it will not look at the unit or the memory the queue writes before the clock
   * reaches `until`, except from events. Until then the queue may process its due descriptors in batches
   * (see the class comment). Costs nothing to the virtual times anyone sees.
   */
  runAhead(until: number): void {
    this.#horizon = until;
  }

  /** Whether QIE may clear: nothing left between IQH and IQT, nothing scheduled. */
  get idle(): boolean {
    return this.#head === this.#tail && !this.#pending;
  }

  /** QIE set: the ring of `size` descriptors at `base`. The caller sets GSTS.QIES, then {@link kick}s. */
  enable(base: number, size: number): void {
    this.#base = base;
    this.#size = size;
    this.#on = true;
  }

  /** QIE cleared with the queue {@link idle}: IQH resets to 0. */
  disable(): void {
    this.#on = false;
    this.#head = 0;
    this.#s.regs.set(REG.IQH, 0);
  }

  /** IQT written: the new tail (descriptor index), then processing. */
  setTail(tail: number): void {
    this.#tail = tail;
    this.kick();
  }

  /** Starts processing if enabled, not stopped by IQE, not already scheduled, and there is work. */
  kick(): void {
    const s = this.#s;
    if (!this.#on || this.#pending || (s.regs.get(REG.FSTS) & FSTS_IQE) !== 0 || this.#head === this.#tail) return;
    if (this.#tail >= this.#size) {
      guestError(s, `IQT ${this.#tail} is beyond the queue of ${this.#size} descriptors`);
      s.faults.queueError();
      return;
    }
    if (s.qiNs === 0) {
      while (this.#processOne());
    } else {
      this.#pending = true;
      this.#due = s.clock.now + s.qiNs;
      if (this.#timer !== undefined) this.#timer.schedule(s.qiNs);
      else s.clock.schedule(s.qiNs, this.#step, s.priority);
    }
  }

  /** Reads the descriptor at IQH into {@link #lo0}..{@link #hi1}; false when it lies outside memory. */
  #fetch(): boolean {
    const s = this.#s;
    const a = this.#base + this.#head * 16;
    if (a + 16 > s.mem.size) return false;
    // A descriptor is 16-byte aligned, so inside one frame: its four dwords straight from the frame's bytes.
    const o = a & FRAME_MASK;
    const f = s.mem.peekFrame((a - o) / FRAME_SIZE);
    if (f === undefined) {
      this.#lo0 = this.#lo1 = this.#hi0 = this.#hi1 = 0;
    } else {
      this.#lo0 = dwordAt(f, o);
      this.#lo1 = dwordAt(f, o + 4);
      this.#hi0 = dwordAt(f, o + 8);
      this.#hi1 = dwordAt(f, o + 12);
    }
    return true;
  }

  /** Processes the descriptor at IQH; returns whether another may follow. */
  #processOne(): boolean {
    const s = this.#s;
    if (!this.#on || (s.regs.get(REG.FSTS) & FSTS_IQE) !== 0 || this.#head === this.#tail) return false;
    let ok = this.#fetch();
    if (ok) ok = executeDescriptor(this.#host, this.#lo0, this.#lo1, this.#hi0, this.#hi1);
    else this.#lo0 = this.#lo1 = this.#hi0 = this.#hi1 = 0;
    s.c.desc.value++;
    if (s.trace?.active === true) this.#host.traceDescriptor(this.#head, this.#lo0 & 0xf, ok, this.#lo0, this.#lo1, this.#hi0, this.#hi1);
    if (!ok) {
      // The queue stops at the bad descriptor: IQH keeps pointing at it.
      s.faults.queueError();
      return false;
    }
    this.#head = (this.#head + 1) % this.#size;
    s.regs.set(REG.IQH, this.#head << 4);
    return this.#head !== this.#tail;
  }

  /**
   * Inside {@link #step}, after its descriptor: processes the following ones due by the horizon, each due
   * strictly before the next other event (this event's timer is not pending, so the clock's next event is
   * someone else's) and needing nothing of the clock. Returns true when it took over scheduling (the rest
   * is queued for its own due time, or nothing is left); false leaves it to {@link kick}.
   */
  #batch(): boolean {
    const s = this.#s;
    const t = this.#timer;
    const until = this.#horizon;
    const ns = s.qiNs;
    let due = s.clock.now + ns;
    // A tail beyond the ring is kick's guest error at the time of the descriptor before it: no batch then.
    if (due > until || t === undefined || t.scheduleAt === undefined || s.trace?.active === true || this.#tail >= this.#size) return false;
    const other = s.clock.nextEventTime;
    if (other === undefined || due >= other) return false;
    let n = 0;
    while (due <= until && due < other && this.#head !== this.#tail) {
      // The IQE check and the fetch outside memory are left to the event, as is a wait with IF (its interrupt
      // is delivered at its own time) and a malformed descriptor (executeDescriptor changes nothing then).
      if (!this.#on || (s.regs.get(REG.FSTS) & FSTS_IQE) !== 0 || !this.#fetch()) break;
      if ((this.#lo0 & 0xf) === InvDescType.WAIT && (this.#lo0 & WAIT_IF) !== 0) break;
      if (!executeDescriptor(this.#host, this.#lo0, this.#lo1, this.#hi0, this.#hi1)) break;
      s.c.desc.value++;
      this.#head = (this.#head + 1) % this.#size;
      n++;
      due += ns;
    }
    if (n === 0) return false;
    s.regs.set(REG.IQH, this.#head << 4);
    if (this.#head === this.#tail) return true;
    // What kick would have scheduled after the last descriptor processed here.
    this.#pending = true;
    this.#due = due;
    t.scheduleAt(due);
    return true;
  }
}

/** The little-endian dword at byte `o` of frame `f`, as PhysicalMemory.read32 reads it. */
function dwordAt(f: Uint8Array, o: number): number {
  return ((f[o] as number) | ((f[o + 1] as number) << 8) | ((f[o + 2] as number) << 16) | ((f[o + 3] as number) << 24)) >>> 0;
}
