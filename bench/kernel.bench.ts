import { createMachine } from '../machine/index.ts';
import { bootKernel } from '../kernel-shim/index.ts';
import type { BenchmarkDef, RunResult } from './harness.ts';
import { registerBenchmarks } from './registry.ts';

/**
 * kernel.syscall: one process doing `write(efd, 8 bytes)` then `read(efd, 8 bytes)` on an eventfd, `n`
 * times, under `sim.run()`. Returns the wall-clock ms of the run (from spawn to the process's exit).
 */
export async function eventfdRoundTrips(n: number): Promise<{ ms: number; simNs: number }> {
  const machine = createMachine({ memory: { size: 16 << 20 } });
  const kernel = bootKernel(machine);
  let done = 0;
  const p = kernel.spawn({ comm: 'bench' }, async (sys) => {
    const efd = await sys.eventfd(0, 0);
    const w = new Uint8Array(8);
    new DataView(w.buffer).setBigUint64(0, 1n, true);
    const r = new Uint8Array(8);
    for (let i = 0; i < n; i++) {
      await sys.write(efd, w);
      await sys.read(efd, r);
      done++;
    }
    return 0;
  });
  const t0 = performance.now();
  await machine.sim.run();
  const ms = performance.now() - t0;
  const status = await p.exited;
  if (status !== 0 || done !== n) throw new Error(`kernel.syscall: ${done}/${n} round trips, exit status ${status}`);
  return { ms, simNs: machine.sim.now };
}

const ROUND_TRIPS = 300_000;

const syscall: BenchmarkDef = {
  name: 'kernel.syscall',
  unit: 'Mround-trips/s',
  description: `eventfd write + read round trips from one process through Sys, ${ROUND_TRIPS} of them`,
  target: 1,
  async prepare() {
    await eventfdRoundTrips(30_000);
    return async (): Promise<RunResult> => {
      const r = await eventfdRoundTrips(ROUND_TRIPS);
      return { value: ROUND_TRIPS / r.ms / 1000, ms: r.ms, extra: { roundTrips: ROUND_TRIPS, simNs: r.simNs } };
    };
  },
};

registerBenchmarks(syscall);
