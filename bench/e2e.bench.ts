import { createMachine, resolveMachineConfig } from '../machine/index.ts';
import { bootKernel, PAGE_SIZE } from '../kernel-shim/index.ts';
import { ApexOp } from '../device-models/index.ts';
import { withApex } from '../scenarios/apex-common.ts';
import { ApexVfio, CMD_PAGES, QSLOT, devAddr } from '../scenarios/apex-vfio.ts';
import type { BenchmarkDef, RunResult } from './harness.ts';
import { registerBenchmarks } from './registry.ts';

/**
 * e2e.apex.jobs: the `apex.jobs` job (one command buffer with one 4 KiB COPY, one doorbell, SC_HOST_0
 * acknowledged W0C before the next submit; queue depth 1) from a user-space driver through VFIO on the whole
 * stack: Linux 6.12 on a machine with the Apex behind the translating VT-d unit, the driver of the `vfio-apex`
 * scenario (BAR2 mmapped through the device fd, buffers pinned with MAP_DMA, their IOVAs in the gasket
 * table), completion read from SC_HOST_0's MSI-X eventfd. `e2e.apex.jobs.depth32`: 32 descriptors (each its
 * own command page) per doorbell, then eventfd reads until the status block's completed head reaches the
 * tail. Jobs per wall-clock second of the timed loop, which runs inside the simulated process; the first
 * run's destination is checked.
 */

const JOBS = 20_000;
const DEPTH32 = 32;

/** Runs `jobs` jobs at `depth` and returns the wall-clock milliseconds of the loop and the virtual time. */
export async function apexJobs(jobs: number, depth: number): Promise<{ ms: number; simNs: number; interrupts: number; events: number }> {
  const m = createMachine(withApex(resolveMachineConfig({ memory: { size: 64 << 20 } }), true));
  const kernel = bootKernel(m);
  let ms = -1;
  let interrupts = 0;
  let events = 0;
  let failure: unknown;
  const p = kernel.spawn({ comm: 'e2e' }, async (sys) => {
    const d = await ApexVfio.open(sys, '0000:01:00.0');
    await d.reset();
    await d.armInterrupts();
    const src = await d.dev.allocDma(PAGE_SIZE);
    const dst = await d.dev.allocDma(PAGE_SIZE);
    const s = d.mapBuffer(src);
    const t = d.mapBuffer(dst);
    await d.startQueue();
    for (let i = 0; i < PAGE_SIZE; i += 4) src.map.write32(i, (i * 2654435761) >>> 0);
    const copy = { len: PAGE_SIZE, a: devAddr(s), c: devAddr(t) };
    const statusOff = QSLOT.status * PAGE_SIZE;
    // Each command page holds the same COPY: written once, as a runtime reuses its command buffers.
    for (let k = 0; k < Math.min(depth, CMD_PAGES); k++) d.submit(ApexOp.COPY, copy, k, false);
    d.tail = 0;
    const e0 = m.sim.dispatched;
    const t0 = performance.now();
    if (depth === 1) {
      for (let j = 0; j < jobs; j++) {
        d.submitDescriptor(0);
        await d.waitDone();
      }
    } else {
      for (let j = 0; j < jobs; j += depth) {
        for (let k = 0; k < depth; k++) d.submitDescriptor(k, false);
        d.doorbell();
        do await d.waitDone();
        while (d.queue.map.read32(statusOff) !== d.tail);
      }
    }
    ms = performance.now() - t0;
    events = m.sim.dispatched - e0;
    interrupts = d.interrupts;
    for (let i = 0; i < PAGE_SIZE; i += 4) {
      if (dst.map.read32(i) !== (i * 2654435761) >>> 0) failure = new Error(`e2e.apex.jobs: destination word ${i / 4} differs`);
    }
    await d.close();
    return 0;
  });
  await m.sim.run();
  if (p.error !== undefined) throw p.error;
  if (failure !== undefined) throw failure;
  if ((await p.exited) !== 0 || ms < 0) throw new Error('e2e.apex.jobs: the driver failed');
  return { ms, simNs: m.sim.now, interrupts, events };
}

function def(depth: number): BenchmarkDef {
  return {
    name: depth === 1 ? 'e2e.apex.jobs' : `e2e.apex.jobs.depth${depth}`,
    unit: 'kjobs/s',
    description: `Apex 4 KiB COPY jobs from a VFIO user-space driver, completion on the MSI-X eventfd, depth ${depth}, ${JOBS} jobs`,
    ...(depth === 1 ? { target: 300 } : {}),
    async prepare() {
      await apexJobs(2000, depth);
      return async (): Promise<RunResult> => {
        const r = await apexJobs(JOBS, depth);
        return { value: JOBS / r.ms, ms: r.ms, extra: { jobs: JOBS, simNs: r.simNs, interrupts: r.interrupts, eventsPerJob: r.events / JOBS } };
      };
    },
  };
}

registerBenchmarks(def(1), def(DEPTH32));
