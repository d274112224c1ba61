import { SimInvariantError } from './errors.ts';
import { Stats, TraceBus } from './trace.ts';

/**
 * Named event priorities. At one instant events run in ascending priority, then in the order they were
 * scheduled (SimPy's `(time, priority, eid)`; gem5's named priorities). Each has its reason.
 */
export const Priority = {
  /** Interrupt delivery comes first, so a handler that runs at an instant sees the interrupt raised in it. */
  INTERRUPT: 10,
  /** Device state changes (a DMA completing, a register latching) come before anything that observes them. */
  HARDWARE: 20,
  /** Everything else. */
  DEFAULT: 50,
  /** Process wake-ups come last, so a woken driver sees the hardware as it is at the end of the instant. */
  PROCESS: 80,
} as const;

const IDLE = 0;
const IN_WHEEL = 1;
const IN_HEAP = 2;

/** log2 of the timing wheel's slot count; one slot per nanosecond. */
const WHEEL_BITS = 12;
const WHEEL_SIZE = 1 << WHEEL_BITS;
const WHEEL_MASK = WHEEL_SIZE - 1;
const WORDS = WHEEL_SIZE >>> 5;
const WORD_MASK = WORDS - 1;

/**
 * A reusable event: scheduling it again while pending moves it (at most one pending occurrence), so devices
 * keep one per concern and the hot path allocates nothing. Made by {@link Scheduler.timer}.
 */
export class Timer {
  /** Virtual time at which it fires (meaningful while {@link pending}). */
  time = 0;
  /** Its priority (see {@link Priority}). */
  readonly priority: number;
  /** What runs when it fires. */
  readonly callback: () => void;
  /** @internal Sequence number of the current occurrence. */
  seq = 0;
  /** @internal Wheel list links. */
  next: Timer | null = null;
  /** @internal Wheel list links. */
  prev: Timer | null = null;
  /** @internal Index in the overflow heap. */
  heapIndex = -1;
  /** @internal Where it is queued. */
  where = IDLE;
  readonly #sim: Scheduler;

  /** @internal Use {@link Scheduler.timer}. */
  constructor(sim: Scheduler, callback: () => void, priority: number) {
    this.#sim = sim;
    this.callback = callback;
    this.priority = priority;
  }

  /** Whether it is scheduled and has not fired or been cancelled. */
  get pending(): boolean {
    return this.where !== IDLE;
  }

  /** Fires `delayNs` (a non-negative integer) after now, replacing any pending occurrence. */
  schedule(delayNs: number): void {
    this.#sim.scheduleTimerAt(this, this.#sim.now + delayNs);
  }

  /** Fires at absolute virtual time `time` (not in the past), replacing any pending occurrence. */
  scheduleAt(time: number): void {
    this.#sim.scheduleTimerAt(this, time);
  }

  /** Cancels the pending occurrence; returns whether there was one. */
  cancel(): boolean {
    return this.#sim.cancelTimer(this);
  }
}

/** Options of `runSync` and `run`. */
export interface RunOptions {
  /** Run events due at or before this virtual time, then leave the clock there. */
  readonly until?: number;
}

/** Options of a {@link Scheduler}. */
export interface SimulatorOptions {
  /** The trace bus components emit on (a fresh one if absent). */
  readonly trace?: TraceBus;
  /** Counters (a fresh set if absent). */
  readonly stats?: Stats;
}

/**
 * The discrete-event scheduler: an integer-nanosecond virtual clock and an event queue ordered by
 * (time, priority, sequence). Near-future events (within {@link WHEEL_SIZE} ns) live in a timing wheel of
 * per-nanosecond slots, each a list kept in (priority, seq) order, with a bitmap to find the next busy slot;
 * farther events wait in a binary heap and move into the wheel as the clock approaches them. Scheduling and
 * dispatch of near events are O(1) amortized.
 *
 * Processes (`process`, `run`) are layered on it by `Simulator` in `process.ts`; this class holds only what
 * events need.
 */
export class Scheduler {
  /** The trace bus. */
  readonly trace: TraceBus;
  /** Counters. */
  readonly stats: Stats;
  /** Events dispatched so far. */
  dispatched = 0;
  private _now = 0;
  private _seq = 0;
  private _nowSlot = 0;
  private _inWheel = 0;
  private readonly _heads: (Timer | null)[] = Array.from<Timer | null>({ length: WHEEL_SIZE }).fill(null);
  private readonly _tails: (Timer | null)[] = Array.from<Timer | null>({ length: WHEEL_SIZE }).fill(null);
  private readonly _busy = new Uint32Array(WORDS);
  private readonly _heap: Timer[] = [];
  private _dispatching = false;
  private _stopRequested = false;

  constructor(options: SimulatorOptions = {}) {
    this.trace = options.trace ?? new TraceBus();
    this.stats = options.stats ?? new Stats();
  }

  /** Current virtual time in nanoseconds. */
  get now(): number {
    return this._now;
  }

  /** Events waiting to fire. */
  get pendingEvents(): number {
    return this._inWheel + this._heap.length;
  }

  /** @internal Whether an event is pending at the current instant. */
  hasEventNow(): boolean {
    return this._heads[this._nowSlot] !== null;
  }

  /** Time of the next pending event, or `Infinity`. */
  get nextEventTime(): number {
    if (this._inWheel > 0) return this._now + this._nextBusyDistance();
    const h = this._heap[0];
    return h === undefined ? Infinity : h.time;
  }

  /** A reusable event that runs `callback` at `priority` each time it fires. */
  timer(callback: () => void, priority: number = Priority.DEFAULT): Timer {
    checkPriority(priority);
    return new Timer(this, callback, priority);
  }

  /** Runs `callback` once, `delayNs` from now (allocates a {@link Timer}; devices should keep their own). */
  schedule(delayNs: number, callback: () => void, priority: number = Priority.DEFAULT): Timer {
    const t = this.timer(callback, priority);
    this.scheduleTimerAt(t, this._now + delayNs);
    return t;
  }

  /** Runs `callback` once at absolute `time`. */
  scheduleAt(time: number, callback: () => void, priority: number = Priority.DEFAULT): Timer {
    const t = this.timer(callback, priority);
    this.scheduleTimerAt(t, time);
    return t;
  }

  /** @internal Queues `t` at `time`, moving it if pending. */
  scheduleTimerAt(t: Timer, time: number): void {
    const delta = time - this._now;
    if (!(delta >= 0 && time <= 9007199254740991 && Math.floor(time) === time)) {
      throw new SimInvariantError(
        delta < 0
          ? `event scheduled in the past: at ${time} ns, now is ${this._now} ns`
          : `event time must be a safe integer number of ns, got ${time}`,
      );
    }
    if (t.where !== IDLE) this._remove(t);
    t.time = time;
    t.seq = this._seq++;
    if (delta < WHEEL_SIZE) this._wheelInsert(t, (this._nowSlot + delta) & WHEEL_MASK);
    else this._heapPush(t);
  }

  /** @internal Dequeues `t`; returns whether it was pending. */
  cancelTimer(t: Timer): boolean {
    if (t.where === IDLE) return false;
    this._remove(t);
    return true;
  }

  /**
   * Dispatches events in order until none is due at or before `until` (all of them without `until`), then
   * leaves the clock at `until` if given. For process-free use: devices and callbacks only.
   */
  runSync(options: RunOptions = {}): void {
    const until = options.until ?? Infinity;
    if (until < this._now) throw new SimInvariantError(`runSync until ${until} ns is in the past (now ${this._now} ns)`);
    if (this._dispatching) throw new SimInvariantError('runSync called from inside an event callback');
    this._dispatching = true;
    this._stopRequested = false;
    try {
      while (!this._stopRequested && this.dispatchNext(until)) {
        // dispatchNext did the work.
      }
    } finally {
      this._dispatching = false;
    }
    if (this._stopRequested) this._stopRequested = false;
    else if (until !== Infinity) this.advanceTo(until);
  }

  /**
   * Asks the running `runSync`/`run` to return after the current event (SystemC `sc_stop`); the clock stays
   * at the instant of that event and pending events stay queued.
   */
  stop(): void {
    this._stopRequested = true;
  }

  /** @internal Whether {@link stop} was called and not yet honoured. */
  get stopRequested(): boolean {
    return this._stopRequested;
  }

  /** @internal Clears a pending stop request. */
  clearStop(): void {
    this._stopRequested = false;
  }

  /** Dispatches the next event if any; returns whether it did. */
  step(): boolean {
    return this.dispatchNext(Infinity);
  }

  /** @internal Dispatches the earliest event if it is due at or before `until`; returns whether it did. */
  dispatchNext(until: number): boolean {
    let slot = this._nowSlot;
    let t = this._heads[slot] as Timer | null;
    if (t === null) {
      // Nothing more at this instant: move the clock to the next event, if one is due by `until`.
      if (!this._advanceToNext(until)) return false;
      slot = this._nowSlot;
      t = this._heads[slot] as Timer;
    } else if (this._now > until) {
      return false;
    }
    const n = t.next;
    this._heads[slot] = n;
    if (n === null) {
      this._tails[slot] = null;
      this._busy[slot >>> 5] = (this._busy[slot >>> 5] as number) & ~(1 << (slot & 31));
    } else {
      n.prev = null;
      t.next = null;
    }
    this._inWheel--;
    t.where = IDLE;
    this.dispatched++;
    t.callback();
    return true;
  }

  /** Advances the clock to the next busy slot or the first far event; false if none is due by `until`. */
  private _advanceToNext(until: number): boolean {
    if (this._inWheel > 0) {
      const d = this._nextBusyDistance();
      if (this._now + d > until) return false;
      this._advanceBy(d);
      return true;
    }
    const h = this._heap[0];
    if (h === undefined || h.time > until) return false;
    this._advanceBy(h.time - this._now);
    return true;
  }

  /**
   * @internal The fast path of a synchronous access's catch-up: when the wheel is empty and no far event is
   * due by `time`, moves the clock there and returns true; otherwise returns false (the caller dispatches).
   */
  advanceIfIdle(time: number): boolean {
    if (this._inWheel !== 0) return false;
    const h = this._heap[0];
    if (h !== undefined && h.time <= time) return false;
    if (time > this._now) this._advanceBy(time - this._now);
    return true;
  }

  /** @internal Moves the clock forward to `time` (no event may be due before it). */
  advanceTo(time: number): void {
    if (time > this._now) this._advanceBy(time - this._now);
  }

  private _advanceBy(d: number): void {
    this._now += d;
    this._nowSlot = d < WHEEL_SIZE ? (this._nowSlot + d) & WHEEL_MASK : (this._nowSlot + (d % WHEEL_SIZE)) & WHEEL_MASK;
    // Far events that the wheel's window now reaches move into it.
    const heap = this._heap;
    const horizon = this._now + WHEEL_SIZE;
    while (heap.length > 0 && (heap[0] as Timer).time < horizon) {
      const t = this._heapPop();
      this._wheelInsert(t, (this._nowSlot + (t.time - this._now)) & WHEEL_MASK);
    }
  }

  /** Distance in ns from now to the first busy slot; the wheel must be non-empty. */
  private _nextBusyDistance(): number {
    const busy = this._busy;
    const s = this._nowSlot;
    let w = s >>> 5;
    let word = (busy[w] as number) & (~0 << (s & 31));
    let scanned = 0;
    while (word === 0) {
      w = (w + 1) & WORD_MASK;
      word = busy[w] as number;
      if (++scanned === WORDS) {
        // Wrapped to the first word: only its bits below `s` (times near the far edge) remain.
        word &= ~(~0 << (s & 31));
        break;
      }
    }
    const slot = (w << 5) | (31 - Math.clz32(word & -word));
    return (slot - s) & WHEEL_MASK;
  }

  private _wheelInsert(t: Timer, slot: number): void {
    t.where = IN_WHEEL;
    this._inWheel++;
    let tail = this._tails[slot] ?? null;
    if (tail === null) {
      t.prev = null;
      t.next = null;
      this._heads[slot] = t;
      this._tails[slot] = t;
      this._busy[slot >>> 5] = (this._busy[slot >>> 5] as number) | (1 << (slot & 31));
      return;
    }
    // Keep the slot in (priority, seq) order; the common case appends at the tail.
    const p = t.priority;
    const seq = t.seq;
    if (tail.priority === p && tail.seq < seq) {
      t.prev = tail;
      t.next = null;
      tail.next = t;
      this._tails[slot] = t;
      return;
    }
    while (tail !== null && (tail.priority > p || (tail.priority === p && tail.seq > seq))) tail = tail.prev;
    if (tail === null) {
      const head = this._heads[slot] as Timer;
      t.prev = null;
      t.next = head;
      head.prev = t;
      this._heads[slot] = t;
    } else {
      const n = tail.next;
      t.prev = tail;
      t.next = n;
      tail.next = t;
      if (n === null) this._tails[slot] = t;
      else n.prev = t;
    }
  }

  private _remove(t: Timer): void {
    if (t.where === IN_HEAP) {
      this._heapRemove(t);
    } else {
      const slot = (this._nowSlot + (t.time - this._now)) & WHEEL_MASK;
      const p = t.prev;
      const n = t.next;
      if (p === null) this._heads[slot] = n;
      else p.next = n;
      if (n === null) this._tails[slot] = p;
      else n.prev = p;
      if (this._heads[slot] === null) this._busy[slot >>> 5] = (this._busy[slot >>> 5] as number) & ~(1 << (slot & 31));
      t.prev = null;
      t.next = null;
      this._inWheel--;
    }
    t.where = IDLE;
  }

  // The overflow heap, ordered by (time, priority, seq).

  private _heapPush(t: Timer): void {
    t.where = IN_HEAP;
    const heap = this._heap;
    t.heapIndex = heap.length;
    heap.push(t);
    this._siftUp(t.heapIndex);
  }

  private _heapPop(): Timer {
    const heap = this._heap;
    const top = heap[0] as Timer;
    const last = heap.pop() as Timer;
    if (last !== top) {
      heap[0] = last;
      last.heapIndex = 0;
      this._siftDown(0);
    }
    top.heapIndex = -1;
    top.where = IDLE;
    return top;
  }

  private _heapRemove(t: Timer): void {
    const heap = this._heap;
    const i = t.heapIndex;
    const last = heap.pop() as Timer;
    if (last !== t) {
      heap[i] = last;
      last.heapIndex = i;
      this._siftDown(i);
      this._siftUp(last.heapIndex);
    }
    t.heapIndex = -1;
  }

  private _siftUp(i: number): void {
    const heap = this._heap;
    const t = heap[i] as Timer;
    while (i > 0) {
      const pi = (i - 1) >> 1;
      const p = heap[pi] as Timer;
      if (!before(t, p)) break;
      heap[i] = p;
      p.heapIndex = i;
      i = pi;
    }
    heap[i] = t;
    t.heapIndex = i;
  }

  private _siftDown(i: number): void {
    const heap = this._heap;
    const n = heap.length;
    const t = heap[i] as Timer;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && before(heap[r] as Timer, heap[l] as Timer) ? r : l;
      const ct = heap[c] as Timer;
      if (!before(ct, t)) break;
      heap[i] = ct;
      ct.heapIndex = i;
      i = c;
    }
    heap[i] = t;
    t.heapIndex = i;
  }
}

function before(a: Timer, b: Timer): boolean {
  return a.time < b.time || (a.time === b.time && (a.priority < b.priority || (a.priority === b.priority && a.seq < b.seq)));
}

function checkPriority(p: number): void {
  if (!Number.isInteger(p)) throw new SimInvariantError(`event priority must be an integer, got ${p}`);
}
