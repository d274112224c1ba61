import { Simulator, TraceBus, type Timer } from '../sim/index.ts';
import type { BenchmarkDef, RunResult } from './harness.ts';
import { registerBenchmarks } from './registry.ts';

/** Callbacks (or processes) in the des.hold workload, as in ../shared/anchors. */
const P = 1000;

/**
 * The xorshift32 state is kept as an int32 (the same 32 bits as the anchors' `uint32_t`): a uint32 above
 * 2^31 is not a small integer in V8 and would box on every store. `next` returns the anchors' `s`, as unsigned.
 */
function seed(i: number): number {
  return (2463534242 + i * 7919) | 1;
}

/** One xorshift32 step on the int32 state (bit for bit the anchors' `s ^= s << 13; s ^= s >> 17; s ^= s << 5`). */
function step(s: number): number {
  s ^= s << 13;
  s ^= s >>> 17;
  return s ^ (s << 5);
}

/**
 * des.hold through the public scheduler: P reusable timers, each rescheduling itself after `1 + s % 100` ns
 * with an xorshift32 step per firing. Returns the wall-clock ms from `runSync` until the `events`-th event.
 */
export function desHold(events: number): { ms: number; simNs: number } {
  const sim = new Simulator({ trace: new TraceBus() });
  let count = 0;
  const timers: Timer[] = [];
  for (let i = 0; i < P; i++) {
    let s = seed(i);
    const t: Timer = sim.timer(() => {
      if (++count >= events) {
        sim.stop();
        return;
      }
      s = step(s);
      t.schedule(1 + ((s >>> 0) % 100));
    });
    timers.push(t);
    t.schedule(0);
  }
  const t0 = performance.now();
  sim.runSync();
  const ms = performance.now() - t0;
  if (count !== events) throw new Error(`des.hold counted ${count} events, expected ${events}`);
  return { ms, simNs: sim.now };
}

/**
 * des.process: P processes each looping `advance s; await delay(1 + s % 100); count`, driven by
 * `await sim.run()`, until the `events`-th count.
 */
export async function desProcess(events: number): Promise<{ ms: number; events: number; simNs: number }> {
  const sim = new Simulator({ trace: new TraceBus() });
  let count = 0;
  for (let i = 0; i < P; i++) {
    let s = seed(i);
    sim.process(`p${i}`, async (p) => {
      while (count < events) {
        s = step(s);
        await p.delay(1 + ((s >>> 0) % 100));
        if (++count >= events) sim.stop();
      }
    });
  }
  const t0 = performance.now();
  await sim.run();
  const ms = performance.now() - t0;
  // Processes released at the stopping instant finish their step, as SystemC's sc_stop finishes the delta.
  if (count < events) throw new Error(`des.process counted ${count} events, expected ${events}`);
  return { ms, events: count, simNs: sim.now };
}

/** des.process with generator bodies (`yield p.delay(n)`), which the simulator resumes with no promise. */
export async function desProcessGen(events: number): Promise<{ ms: number; events: number; simNs: number }> {
  const sim = new Simulator({ trace: new TraceBus() });
  let count = 0;
  for (let i = 0; i < P; i++) {
    let s = seed(i);
    sim.process(`p${i}`, function* (p) {
      while (count < events) {
        s = step(s);
        yield p.delay(1 + ((s >>> 0) % 100));
        if (++count >= events) sim.stop();
      }
    });
  }
  const t0 = performance.now();
  await sim.run();
  const ms = performance.now() - t0;
  if (count !== events) throw new Error(`des.process.gen counted ${count} events, expected ${events}`);
  return { ms, events: count, simNs: sim.now };
}

const HOLD_EVENTS = 10_000_000;
const PROCESS_EVENTS = 3_000_000;

const hold: BenchmarkDef = {
  name: 'des.hold',
  unit: 'Mevents/s',
  description: `P=${P} self-rescheduling callbacks through the public scheduler, ${HOLD_EVENTS} events (SystemC SC_METHOD ~8.1)`,
  target: 25,
  prepare() {
    desHold(1_000_000);
    return (): RunResult => {
      const r = desHold(HOLD_EVENTS);
      return { value: HOLD_EVENTS / r.ms / 1000, ms: r.ms, extra: { events: HOLD_EVENTS, simNs: r.simNs } };
    };
  },
};

const proc: BenchmarkDef = {
  name: 'des.process',
  unit: 'Mevents/s',
  description: `P=${P} processes awaiting delays under sim.run(), ${PROCESS_EVENTS} events (SystemC SC_THREAD ~6.3)`,
  target: 6.3,
  async prepare() {
    await desProcess(300_000);
    return async (): Promise<RunResult> => {
      const r = await desProcess(PROCESS_EVENTS);
      return { value: r.events / r.ms / 1000, ms: r.ms, extra: { events: r.events, simNs: r.simNs } };
    };
  },
};

const procGen: BenchmarkDef = {
  name: 'des.process.gen',
  unit: 'Mevents/s',
  description: `des.process with generator bodies (yield p.delay), resumed synchronously without promises`,
  async prepare() {
    await desProcessGen(300_000);
    return async (): Promise<RunResult> => {
      const r = await desProcessGen(PROCESS_EVENTS);
      return { value: r.events / r.ms / 1000, ms: r.ms, extra: { events: r.events, simNs: r.simNs } };
    };
  },
};

registerBenchmarks(hold, proc, procGen);
