import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Priority, Rng, SimInvariantError, Simulator, type Timer } from '../sim/index.ts';

const SEED = 42;

interface ModelEvent {
  id: number;
  time: number;
  priority: number;
  seq: number;
}

/** The plain model: pending events in a list; the next is the minimum by (time, priority, seq). */
class QueueModel {
  now = 0;
  seq = 0;
  pending: ModelEvent[] = [];
  schedule(id: number, time: number, priority: number): void {
    this.pending = this.pending.filter((e) => e.id !== id);
    this.pending.push({ id, time, priority, seq: this.seq++ });
  }
  cancel(id: number): boolean {
    const n = this.pending.length;
    this.pending = this.pending.filter((e) => e.id !== id);
    return n !== this.pending.length;
  }
  pop(until: number): ModelEvent | undefined {
    let best: ModelEvent | undefined;
    for (const e of this.pending) {
      if (best === undefined || e.time < best.time || (e.time === best.time && (e.priority < best.priority || (e.priority === best.priority && e.seq < best.seq)))) best = e;
    }
    if (best === undefined || best.time > until) return undefined;
    this.pending = this.pending.filter((e) => e !== best);
    this.now = best.time;
    return best;
  }
}

interface Real {
  sim: Simulator;
  timers: Timer[];
  fired: number[];
}

const PRIOS = [Priority.INTERRUPT, Priority.HARDWARE, Priority.DEFAULT, Priority.PROCESS];
// Delays near, at and past the timing wheel's window (4096 ns), and far beyond it.
const delayArb = fc.oneof(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 4000, max: 4200 }), fc.integer({ min: 0, max: 20_000 }), fc.integer({ min: 1_000_000, max: 2 ** 40 }));
const N_TIMERS = 12;

class ScheduleCmd implements fc.Command<QueueModel, Real> {
  constructor(readonly id: number, readonly delay: number, readonly prio: number) {}
  check(): boolean {
    return true;
  }
  run(m: QueueModel, r: Real): void {
    const p = PRIOS[this.prio] as number;
    // A timer's priority is fixed at creation: timers id*4+prio give each (id, prio) pair its own timer.
    const t = r.timers[this.id * 4 + this.prio] as Timer;
    t.schedule(this.delay);
    m.schedule(this.id * 4 + this.prio, m.now + this.delay, p);
    expect(t.pending).toBe(true);
  }
  toString(): string {
    return `schedule(${this.id}, +${this.delay}, prio ${this.prio})`;
  }
}

class CancelCmd implements fc.Command<QueueModel, Real> {
  constructor(readonly idx: number) {}
  check(): boolean {
    return true;
  }
  run(m: QueueModel, r: Real): void {
    expect((r.timers[this.idx] as Timer).cancel()).toBe(m.cancel(this.idx));
  }
  toString(): string {
    return `cancel(${this.idx})`;
  }
}

class StepCmd implements fc.Command<QueueModel, Real> {
  check(): boolean {
    return true;
  }
  run(m: QueueModel, r: Real): void {
    const e = m.pop(Infinity);
    const did = r.sim.step();
    expect(did).toBe(e !== undefined);
    if (e !== undefined) {
      expect(r.fired.at(-1)).toBe(e.id);
      expect(r.sim.now).toBe(e.time);
    }
  }
  toString(): string {
    return 'step';
  }
}

class RunUntilCmd implements fc.Command<QueueModel, Real> {
  constructor(readonly ahead: number) {}
  check(): boolean {
    return true;
  }
  run(m: QueueModel, r: Real): void {
    const until = m.now + this.ahead;
    const expected: number[] = [];
    for (let e = m.pop(until); e !== undefined; e = m.pop(until)) expected.push(e.id);
    m.now = until;
    const before = r.fired.length;
    r.sim.runSync({ until });
    expect(r.fired.slice(before)).toEqual(expected);
    expect(r.sim.now).toBe(until);
    expect(r.sim.pendingEvents).toBe(m.pending.length);
  }
  toString(): string {
    return `runSync(+${this.ahead})`;
  }
}

describe('scheduler', () => {
  it('dispatches in (time, priority, seq) order through schedule, reschedule, cancel, step and runSync (model-based)', () => {
    const cmds = [
      fc.tuple(fc.integer({ min: 0, max: N_TIMERS - 1 }), delayArb, fc.integer({ min: 0, max: 3 })).map(([i, d, p]) => new ScheduleCmd(i, d, p)),
      fc.integer({ min: 0, max: N_TIMERS * 4 - 1 }).map((i) => new CancelCmd(i)),
      fc.constant(new StepCmd()),
      fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 2 ** 41 })).map((a) => new RunUntilCmd(a)),
    ];
    fc.assert(
      fc.property(fc.commands(cmds, { maxCommands: 120 }), (commands) => {
        const sim = new Simulator();
        const fired: number[] = [];
        const timers: Timer[] = [];
        for (let i = 0; i < N_TIMERS * 4; i++) timers.push(sim.timer(() => fired.push(i), PRIOS[i % 4]));
        fc.modelRun(() => ({ model: new QueueModel(), real: { sim, timers, fired } }), commands);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('orders a batch of events scheduled up front exactly as a sort by (time, priority, seq)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(delayArb, fc.integer({ min: 0, max: 3 })), { maxLength: 300 }), (evs) => {
        const sim = new Simulator();
        const order: number[] = [];
        evs.forEach(([d, p], i) => sim.schedule(d, () => order.push(i), PRIOS[p]));
        sim.runSync();
        const expected = evs
          .map(([d, p], i) => ({ d, p: PRIOS[p] as number, i }))
          .sort((a, b) => a.d - b.d || a.p - b.p || a.i - b.i)
          .map((e) => e.i);
        expect(order).toEqual(expected);
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it('runs a zero-delay event after the current one, never re-entrantly', () => {
    const sim = new Simulator();
    const log: string[] = [];
    sim.schedule(5, () => {
      log.push('a begin');
      sim.schedule(0, () => log.push('zero'));
      sim.schedule(0, () => log.push('zero interrupt'), Priority.INTERRUPT);
      log.push('a end');
    });
    sim.schedule(5, () => log.push('b'));
    sim.runSync();
    // `b` was already due at (5, DEFAULT) with a lower seq; the INTERRUPT one outranks both at the same instant.
    expect(log).toEqual(['a begin', 'a end', 'zero interrupt', 'b', 'zero']);
    expect(sim.now).toBe(5);
  });

  it('keeps one pending occurrence per timer: rescheduling moves it', () => {
    const sim = new Simulator();
    let n = 0;
    const t = sim.timer(() => n++);
    t.schedule(10);
    t.schedule(3);
    t.schedule(7000);
    sim.runSync({ until: 100 });
    expect(n).toBe(0);
    sim.runSync();
    expect(n).toBe(1);
    expect(sim.now).toBe(7000);
    expect(t.pending).toBe(false);
  });

  it('stops after the current event on stop(), leaving the rest queued', () => {
    const sim = new Simulator();
    const log: number[] = [];
    sim.schedule(1, () => log.push(1));
    sim.schedule(2, () => {
      log.push(2);
      sim.stop();
    });
    sim.schedule(3, () => log.push(3));
    sim.runSync();
    expect(log).toEqual([1, 2]);
    expect(sim.now).toBe(2);
    expect(sim.pendingEvents).toBe(1);
    sim.runSync();
    expect(log).toEqual([1, 2, 3]);
  });

  it('jumps straight to far events and counts dispatches', () => {
    const sim = new Simulator();
    const times: number[] = [];
    for (const d of [2 ** 45, 5, 2 ** 33, 4096, 4095]) sim.schedule(d, () => times.push(sim.now));
    expect(sim.nextEventTime).toBe(5);
    sim.runSync();
    expect(times).toEqual([5, 4095, 4096, 2 ** 33, 2 ** 45]);
    expect(sim.dispatched).toBe(5);
    expect(sim.nextEventTime).toBe(Infinity);
  });

  it('refuses misuse loudly', () => {
    const sim = new Simulator();
    sim.runSync({ until: 100 });
    expect(() => sim.scheduleAt(50, () => {})).toThrow(SimInvariantError);
    expect(() => sim.scheduleAt(50, () => {})).toThrow(/in the past: at 50 ns, now is 100 ns/);
    expect(() => sim.schedule(1.5, () => {})).toThrow(/safe integer/);
    expect(() => sim.schedule(Number.NaN, () => {})).toThrow(SimInvariantError);
    expect(() => sim.schedule(2 ** 53, () => {})).toThrow(SimInvariantError);
    expect(() => sim.timer(() => {}, 1.5)).toThrow(/priority/);
    expect(() => sim.runSync({ until: 10 })).toThrow(/past/);
    sim.schedule(1, () => sim.runSync());
    expect(() => sim.runSync()).toThrow(/inside an event callback/);
  });

  it('gives the same trace for the same seed, and another for another seed', () => {
    function trace(seed: number): string[] {
      const sim = new Simulator();
      const rng = new Rng(seed);
      const out: string[] = [];
      for (let i = 0; i < 50; i++) {
        const t = sim.timer(() => {
          out.push(`${sim.now}:${i}`);
          if (out.length < 2000) t.schedule(rng.int(0, 6000));
        }, PRIOS[rng.int(0, 3)]);
        t.schedule(rng.int(0, 100));
      }
      sim.runSync();
      return out;
    }
    expect(trace(7)).toEqual(trace(7));
    expect(trace(7)).not.toEqual(trace(8));
  });
});
