import { SimInvariantError } from './errors.ts';
import { Priority, Scheduler, type RunOptions, type Timer } from './scheduler.ts';

/** Where a process is in its life. */
export type ProcessState = 'starting' | 'runnable' | 'blocked' | 'done' | 'failed';

/** Thrown (as the rejection of {@link Simulator.run}) when every process is blocked and nothing is pending. */
export class DeadlockError extends SimInvariantError {
  override name = 'DeadlockError';
  /** Each blocked process and what it is blocked in. */
  readonly blocked: readonly { readonly name: string; readonly waitingFor: string }[];
  /** Virtual time of the deadlock. */
  readonly time: number;

  constructor(time: number, blocked: readonly { readonly name: string; readonly waitingFor: string }[]) {
    super(
      `deadlock at ${time} ns: every process is blocked and no event is pending\n` +
        blocked.map((b) => `  ${b.name}: blocked in ${b.waitingFor}`).join('\n'),
    );
    this.blocked = blocked;
    this.time = time;
  }
}

type Resume = (value: boolean) => void;

/**
 * A process body: an async function (drivers, anything that awaits syscalls), or a generator function that
 * yields the waits (`yield p.delay(10)`), which the simulator resumes synchronously with no promise at all
 * (device-side processes on hot paths).
 */
export type ProcessBody = ((p: SimProcess) => Promise<void>) | ((p: SimProcess) => Generator<Wait, void, boolean>);

/**
 * What a wait returns: a promise for async bodies (resolving to `true`, or `false` when a {@link
 * SimProcess.wait} timed out), and the token a generator body yields.
 */
export type Wait = PromiseLike<boolean>;

/** The token generator bodies yield; `await`ing it outside a generator body is a misuse. */
const YIELDED: Wait = Object.freeze({
  // oxlint-disable-next-line unicorn/no-thenable -- deliberately thenable: awaiting it fails with a clear message
  then(): never {
    throw new SimInvariantError('a generator process must `yield` its waits, not await them');
  },
});

function isGeneratorFunction(f: ProcessBody): f is (p: SimProcess) => Generator<Wait, void, boolean> {
  return Object.prototype.toString.call(f) === '[object GeneratorFunction]';
}

/**
 * A simulated process: an async body driven by the simulator. It is also the context its body receives:
 * `await p.delay(ns)`, `await p.wait(queue)`. Time never advances while any process is runnable; a process
 * runs until it awaits one of these (or finishes), as on a single CPU.
 *
 * **Temporal decoupling.** A process has a local time, at or ahead of the global clock. A synchronous
 * hardware access calls {@link consume}: the cost moves the local time on, and every event due up to it runs
 * before the access returns, so a driver polling a status register sees the device progress. {@link sync}
 * (each syscall's first step) waits until the global clock reaches the local time.
 */
export class SimProcess {
  /** The name given at creation; deadlock and invariant errors name processes by it. */
  readonly name: string;
  /** Unique id within its simulator, in creation order. */
  readonly id: number;
  /** The process this one was started from with {@link spawn}, if any (threads of one program). */
  readonly parent: SimProcess | undefined;
  /** Life-cycle state. */
  state: ProcessState = 'starting';
  #waitWhat: string | undefined = undefined;
  #waitArg = 0;
  /** The error a failed body threw. */
  error: unknown = undefined;
  readonly #sim: Simulator;
  readonly #body: ProcessBody;
  #gen: Generator<Wait, void, boolean> | null = null;
  readonly #wake: Timer;
  #local = 0;
  #resume: Resume | null = null;
  #queue: WaitQueue | null = null;
  #timedOut = false;
  #timeout: Timer | null = null;
  /** The executor of every wait's promise, made once: creating the promise parks the process. */
  readonly #parkExecutor: (resolve: Resume) => void;

  /** @internal Use {@link Simulator.process}. */
  constructor(sim: Simulator, id: number, name: string, body: ProcessBody, parent: SimProcess | undefined) {
    this.#sim = sim;
    this.id = id;
    this.name = name;
    this.#body = body;
    this.parent = parent;
    this.#wake = sim.timer(() => this.#onWake(), Priority.PROCESS);
    this.#parkExecutor = (resolve: Resume): void => this.#park(resolve);
  }

  /** What the process is blocked in, for deadlock reports (e.g. `delay(100)`, `read(fd 3) on /dev/uio0`). */
  get waitingFor(): string {
    if (this.state !== 'blocked') return '';
    // Formatted only when asked, so that a wait allocates no string.
    return this.#waitWhat ?? (this.#queue === null ? `delay until ${this.#waitArg} ns` : `wait(${this.#queue.name})`);
  }

  /** The simulator. */
  get sim(): Simulator {
    return this.#sim;
  }

  /** Global virtual time. */
  get now(): number {
    return this.#sim.now;
  }

  /** This process's local time: the global time plus the cost of synchronous accesses not yet synced. */
  get localTime(): number {
    return this.#local > this.#sim.now ? this.#local : this.#sim.now;
  }

  /** Resumes after `ns` virtual nanoseconds (0 yields to the other processes runnable at this instant). */
  delay(ns: number): Wait {
    this.#block(undefined);
    this.#waitArg = this.localTime + ns;
    return this.#sleep();
  }

  /** Resumes at absolute virtual time `time` (now if it has passed). */
  waitUntil(time: number): Wait {
    this.#block(undefined);
    const t = this.localTime;
    this.#waitArg = time > t ? time : t;
    return this.#sleep();
  }

  /**
   * Sleeps until `#waitArg`. An async body joins the simulator's wake group for that instant (one promise
   * shared by every process waking then); a generator body has its own timer.
   */
  #sleep(): Wait {
    if (this.#gen !== null) {
      this.#wake.scheduleAt(this.#waitArg);
      return YIELDED;
    }
    return this.#sim.joinWakeGroup(this, this.#waitArg);
  }

  /**
   * Blocks on `queue` until it is woken; with `timeoutNs`, gives up after that long. Resolves to `true` when
   * woken, `false` on timeout. `what` names the wait in deadlock reports (e.g. `read(fd 3) on /dev/uio0`).
   */
  wait(queue: WaitQueue, what?: string, timeoutNs?: number): Wait {
    this.#block(what);
    this.#queue = queue;
    queue.enqueue(this);
    if (timeoutNs !== undefined) {
      this.#timeout ??= this.#sim.timer(() => this.#onTimeout(), Priority.PROCESS);
      this.#timeout.scheduleAt(this.localTime + timeoutNs);
    }
    return this.#parked();
  }

  /** The value a wait returns: the generator token, or a promise whose creation parks the process. */
  #parked(): Wait {
    return this.#gen !== null ? YIELDED : new Promise<boolean>(this.#parkExecutor);
  }

  /**
   * Accounts `ns` of synchronous work (an MMIO access) to the local time and runs every event due up to it,
   * so the hardware has caught up when the access returns. Never yields to other processes.
   */
  consume(ns: number): void {
    const sim = this.#sim;
    const now = sim.now;
    const t = (this.#local > now ? this.#local : now) + ns;
    this.#local = t;
    sim.catchUp(t);
  }

  /**
   * Whether a synchronisation point may be passed at once (see {@link sync}): true when this process is the
   * only one runnable, the clock is at its local time and nothing is pending at this instant, so that
   * parking would resume it next with nothing run in between. Callers skip the `await` then.
   */
  canPassSync(): boolean {
    return this.state === 'runnable' && this.#sim.maySkipSync(this);
  }

  /** Waits until the global clock reaches this process's local time (a synchronisation point). */
  sync(): Wait {
    return this.waitUntil(this.localTime);
  }

  /** Starts another process (a thread of the same program) beside this one. */
  spawn(name: string, body: ProcessBody): SimProcess {
    return this.#sim.startProcess(name, body, this);
  }

  /** @internal Starts the body (at its start event). */
  start(): void {
    if (isGeneratorFunction(this.#body)) {
      this.#sim.checkRunning(this);
      this.#gen = this.#body(this);
      this.state = 'runnable';
      this.#step(true);
      return;
    }
    const body = this.#body;
    this.#sim.onRunnable(this);
    this.state = 'runnable';
    // The body starts in a microtask, not inside the start event's dispatch, so that nothing it does
    // synchronously (a hardware access catching up) re-enters the event loop.
    Promise.resolve(this).then(body).then(
      () => this.#finish('done', undefined),
      (e: unknown) => this.#finish('failed', e),
    );
  }

  /**
   * Wakes the process out of a queue wait as if it had timed out (the wait resolves to `false`): how a
   * kernel delivers a fatal signal to a sleeping thread. Returns whether it was in a queue wait; a process
   * sleeping on time (`delay`, `waitUntil`) is left to wake on its own.
   */
  interrupt(): boolean {
    if (this.state !== 'blocked' || this.#queue === null) return false;
    this.#queue.remove(this);
    this.#queue = null;
    this.#timeout?.cancel();
    this.#timedOut = true;
    this.#wakeNow();
    return true;
  }

  /** @internal Woken by a queue. */
  wakeFromQueue(): void {
    this.#queue = null;
    this.#timeout?.cancel();
    this.#wakeNow();
  }

  /** Schedules this process's own wake-up at the current instant (after a queue wake or a timeout). */
  #wakeNow(): void {
    // Later sleepers until now must resume after this one, as their own timers would: close now's group.
    if (this.#gen === null) this.#sim.closeWakeGroup(this.#sim.now);
    this.#wake.scheduleAt(this.#sim.now);
  }

  #block(what: string | undefined): void {
    if (this.state !== 'runnable') {
      throw new SimInvariantError(`process ${this.name} waited while ${this.state}: a process may wait only from its own body, once at a time`);
    }
    this.state = 'blocked';
    this.#waitWhat = what;
    this.#timedOut = false;
  }

  #park(resolve: Resume): void {
    this.#resume = resolve;
    this.#sim.onParked(this);
  }

  /** Resumes a generator body until its next wait or its end. */
  #step(value: boolean): void {
    const gen = this.#gen as Generator<Wait, void, boolean>;
    let r: IteratorResult<Wait, void>;
    try {
      r = gen.next(value);
    } catch (e) {
      this.#finishGen('failed', e);
      return;
    }
    if (r.done === true) this.#finishGen('done', undefined);
    else if (r.value !== YIELDED || this.state !== 'blocked') {
      this.#finishGen('failed', new SimInvariantError(`generator process ${this.name} yielded something other than one of its own waits`));
    }
  }

  #finishGen(state: 'done' | 'failed', error: unknown): void {
    this.state = state;
    this.error = error;
    this.#sim.onGeneratorFinished(this);
  }

  #onWake(): void {
    if (this.#gen !== null) {
      this.state = 'runnable';
      this.#step(!this.#timedOut);
      return;
    }
    const r = this.#resume;
    if (r === null) throw new SimInvariantError(`process ${this.name} woken before it parked`);
    this.#resume = null;
    this.state = 'runnable';
    this.#sim.onRunnable(this);
    r(!this.#timedOut);
  }

  #onTimeout(): void {
    this.#timedOut = true;
    this.#queue?.remove(this);
    this.#queue = null;
    this.#wakeNow();
  }

  #finish(state: 'done' | 'failed', error: unknown): void {
    this.state = state;
    this.error = error;
    this.#sim.onFinished(this);
  }
}

/**
 * A wait queue (Linux `wait_queue_head_t`): processes block on it with {@link SimProcess.wait}; hardware or
 * another process wakes them. Woken processes resume at the current instant, in the order they waited.
 */
export class WaitQueue {
  /** Name for deadlock reports. */
  readonly name: string;
  #waiters: SimProcess[] = [];

  constructor(name: string) {
    this.name = name;
  }

  /** Processes blocked on it. */
  get length(): number {
    return this.#waiters.length;
  }

  /** Wakes every waiter; returns how many. */
  wakeAll(): number {
    const w = this.#waiters;
    if (w.length === 0) return 0;
    this.#waiters = [];
    for (const p of w) p.wakeFromQueue();
    return w.length;
  }

  /** Wakes the longest waiter; returns whether there was one. */
  wakeOne(): boolean {
    const p = this.#waiters.shift();
    if (p === undefined) return false;
    p.wakeFromQueue();
    return true;
  }

  /** @internal */
  enqueue(p: SimProcess): void {
    this.#waiters.push(p);
  }

  /** @internal */
  remove(p: SimProcess): void {
    const i = this.#waiters.indexOf(p);
    if (i >= 0) this.#waiters.splice(i, 1);
  }
}

/**
 * The simulator: the event {@link Scheduler} plus processes. Once a process exists, drive it with
 * `await sim.run()`; `runSync()` and `step()` remain for process-free use.
 *
 * How a run proceeds: events are dispatched in order until one wakes a process; every further event due at
 * the same instant is dispatched too (so all wake-ups of one instant are released together); then the
 * processes run, in wake order, each until it parks (awaits a simulator wait) or finishes, as in SystemC's
 * evaluation phase. When the last of them parks, dispatch resumes right there, inside the parking call,
 * so the loop costs no promise of its own: one promise per process wake-up is all a run allocates.
 */
export class Simulator extends Scheduler {
  readonly #processes: SimProcess[] = [];
  #nextId = 1;
  #runnable = 0;
  #live = 0;
  #syncOnly = false;
  #sawProcess = false;
  #pumping = false;
  #run: ActiveRun | null = null;
  /** The open wake group of each instant that async sleepers join. */
  readonly #groups = new Map<number, WakeGroup>();
  readonly #groupPool: WakeGroup[] = [];
  #madeResolve: ((v: boolean) => void) | null = null;
  readonly #groupExecutor = (resolve: (v: boolean) => void): void => {
    this.#madeResolve = resolve;
  };
  readonly #pumpTask = (): void => {
    if (this.#runnable === 0) this.#pump();
  };

  /** Every process created, in creation order. */
  get processes(): readonly SimProcess[] {
    return this.#processes;
  }

  /** Starts a process running `body` at the current instant (after the events already due now). */
  process(name: string, body: ProcessBody): SimProcess {
    return this.startProcess(name, body, undefined);
  }

  /** @internal */
  startProcess(name: string, body: ProcessBody, parent: SimProcess | undefined): SimProcess {
    const p = new SimProcess(this, this.#nextId++, name, body, parent);
    this.#processes.push(p);
    this.#live++;
    this.#sawProcess = true;
    this.schedule(0, () => p.start(), Priority.PROCESS);
    return p;
  }

  override runSync(options: RunOptions = {}): void {
    this.#syncOnly = true;
    try {
      super.runSync(options);
    } finally {
      this.#syncOnly = false;
    }
  }

  override step(): boolean {
    this.#syncOnly = true;
    try {
      return super.step();
    } finally {
      this.#syncOnly = false;
    }
  }

  /**
   * Runs the simulation: until `until` (then the clock stays there), or until every process has finished,
   * or until no event is pending, or until {@link Scheduler.stop}. Rejects with the error of a process whose
   * body threw, with a {@link DeadlockError} when processes remain blocked and nothing is pending, and with
   * a {@link SimInvariantError} naming any process still waiting on a promise the simulator does not own.
   */
  run(options: RunOptions = {}): Promise<void> {
    if (this.#run !== null) return Promise.reject(new SimInvariantError('sim.run() is already running'));
    const until = options.until ?? Infinity;
    if (until < this.now) return Promise.reject(new SimInvariantError(`run until ${until} ns is in the past (now ${this.now} ns)`));
    this.clearStop();
    this.#sawProcess = this.#live > 0;
    return new Promise<void>((resolve, reject) => {
      // The whole simulation runs in microtasks, so a macrotask runs only when every runnable process is
      // stuck on something the simulator does not own.
      // eslint-disable-next-line no-restricted-globals -- not time: detects foreign promises once microtasks drain
      const watchdog = setImmediate(() => this.#end(this.#foreignPromiseError()));
      this.#run = { until, resolve, reject, watchdog };
      if (this.#runnable === 0) this.#pump();
    });
  }

  /** Dispatches events until a process is released or the run ends. Runs only while nothing is runnable. */
  #pump(): void {
    const run = this.#run;
    if (run === null || this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#run === run) {
        if (this.#sawProcess && this.#live === 0) return this.#end(undefined);
        if (this.stopRequested) {
          this.clearStop();
          return this.#end(undefined);
        }
        const t0 = this.now;
        if (!this.dispatchNext(run.until)) {
          if (run.until !== Infinity) {
            this.advanceTo(run.until);
            return this.#end(undefined);
          }
          if (this.#live > 0) return this.#end(this.#deadlockError());
          return this.#end(undefined);
        }
        if (this.#runnable > 0) {
          // Release every other wake-up due at this instant, then let the processes run.
          while (this.nextEventTime === t0 && this.dispatchNext(t0)) {
            // dispatched
          }
          return;
        }
      }
    } catch (e) {
      this.#end(e);
    } finally {
      this.#pumping = false;
    }
  }

  #end(error: unknown): void {
    const run = this.#run;
    if (run === null) return;
    this.#run = null;
    clearImmediate(run.watchdog);
    if (error === undefined) run.resolve();
    else run.reject(error);
  }

  /**
   * @internal Whether `p` may pass a synchronisation point without parking: a run is active and reaches
   * this instant, no stop is pending, `p` is the only runnable process, the clock stands at its local time
   * and no event is pending now. Parking would then resume `p` next with nothing run in between, so
   * skipping the round trip through the event loop changes nothing but the cost.
   */
  maySkipSync(p: SimProcess): boolean {
    const run = this.#run;
    return run !== null && this.#runnable === 1 && !this.stopRequested && p.localTime <= this.now && this.now <= run.until && !this.hasEventNow();
  }

  /** @internal Runs every event due up to `time` for a process's synchronous access. */
  catchUp(time: number): void {
    if (this.advanceIfIdle(time)) return;
    while (this.dispatchNext(time)) {
      // dispatched
    }
    this.advanceTo(time);
  }

  /** @internal */
  onRunnable(p: SimProcess): void {
    this.checkRunning(p);
    this.#runnable++;
  }

  /**
   * @internal Parks `p` until `time` in that instant's wake group: every async process sleeping until one
   * instant awaits one promise, resolved once, and resumes in the order it joined (the order its own timer
   * would have had). One promise per instant instead of one per process halves the cost of a wake-up.
   */
  joinWakeGroup(p: SimProcess, time: number): Wait {
    let g = this.#groups.get(time);
    if (g === undefined) {
      g = this.#groupPool.pop() ?? new WakeGroup(this);
      g.promise = new Promise<boolean>(this.#groupExecutor);
      g.resolve = this.#madeResolve as (v: boolean) => void;
      g.time = time;
      g.timer.scheduleAt(time);
      this.#groups.set(time, g);
    }
    g.procs.push(p);
    this.onParked(p);
    return g.promise as Promise<boolean>;
  }

  /** @internal No further sleeper joins the group of `time` (a later one gets a new group and timer). */
  closeWakeGroup(time: number): void {
    this.#groups.delete(time);
  }

  /** @internal A wake group's timer fired: its processes become runnable, its promise resolves. */
  fireWakeGroup(g: WakeGroup): void {
    if (this.#groups.get(g.time) === g) this.#groups.delete(g.time);
    const procs = g.procs;
    this.checkRunning(procs[0] as SimProcess);
    for (let i = 0; i < procs.length; i++) (procs[i] as SimProcess).state = 'runnable';
    this.#runnable += procs.length;
    const resolve = g.resolve;
    procs.length = 0;
    g.resolve = null;
    this.#groupPool.push(g);
    resolve?.(true);
  }

  /** @internal */
  checkRunning(p: SimProcess): void {
    if (this.#syncOnly || this.#run === null) {
      throw new SimInvariantError(`process ${p.name} can run only under await sim.run(), not runSync()/step()`);
    }
  }

  /** @internal A generator body ended (it was never counted runnable: it runs inside event dispatch). */
  onGeneratorFinished(p: SimProcess): void {
    this.#live--;
    if (p.state === 'failed') this.#end(p.error);
  }

  /** @internal */
  onParked(_p: SimProcess): void {
    // Parking happens as the wait's promise is made, just before the body awaits it: dispatch resumes in a
    // microtask, once the body has really suspended.
    if (--this.#runnable === 0) queueMicrotask(this.#pumpTask);
  }

  /** @internal */
  onFinished(p: SimProcess): void {
    this.#live--;
    this.#runnable--;
    if (p.state === 'failed') this.#end(p.error);
    else if (this.#runnable === 0) this.#pump();
  }

  #deadlockError(): DeadlockError {
    return new DeadlockError(
      this.now,
      this.#processes.filter((p) => p.state === 'blocked').map((p) => ({ name: p.name, waitingFor: p.waitingFor })),
    );
  }

  #foreignPromiseError(): SimInvariantError {
    const stuck = this.#processes.filter((p) => p.state === 'runnable').map((p) => p.name);
    return new SimInvariantError(
      `process${stuck.length > 1 ? 'es' : ''} ${stuck.join(', ')} awaited a promise the simulator does not own ` +
        `(at ${this.now} ns): a simulated process may await only simulator waits (delay, wait, syscalls)`,
    );
  }
}

/** The processes sleeping until one instant, sharing one promise and one timer (pooled by the simulator). */
class WakeGroup {
  time = 0;
  promise: Promise<boolean> | null = null;
  resolve: ((v: boolean) => void) | null = null;
  readonly procs: SimProcess[] = [];
  readonly timer: Timer;

  constructor(sim: Simulator) {
    this.timer = sim.timer(() => sim.fireWakeGroup(this), Priority.PROCESS);
  }
}

interface ActiveRun {
  readonly until: number;
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
  readonly watchdog: NodeJS.Immediate;
}
