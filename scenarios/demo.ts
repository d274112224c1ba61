import { createDmaResult, DmaStatus, FRAME_SIZE, IdentityDmaPort, Priority, resetDmaResult, SimInvariantError, WaitQueue, type SimProcess } from '../sim/index.ts';
import { formatSize } from '../machine/index.ts';
import type { Scenario, ScenarioContext } from './scenario.ts';

/** Pages the demo's engine copies. */
const PAGES = 8;
/** Requester id of the pretend engine (bus 1, device 0, function 0). */
const RID = 0x0100;
/** Memory latency per access of the identity port, ns. */
const ACCESS_NS = 60;
/** Link time per byte moved, ns (about 4 GB/s). */
const PS_PER_BYTE = 250;
/** Period of the hardware heartbeat, ns. */
const TICK_NS = 1000;

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/**
 * The bare-machine demo: no devices yet. A "driver" process allocates two scattered buffers and fills the
 * source from the machine's generator; a generator-bodied "engine" process copies it page by page through an
 * identity DMA port, spending the port's cost plus link time in virtual time; a hardware heartbeat timer
 * ticks until the copy is done. The driver waits for completion on a wait queue, checks the copy and the
 * summary prints the virtual time, events dispatched and the counters.
 */
async function runDemo(ctx: ScenarioContext): Promise<void> {
  const m = ctx.createMachine();
  const { sim, memory, frames, trace, stats } = m;
  const port = new IdentityDmaPort(memory, ACCESS_NS);
  const bytesMoved = stats.counter('engine', 'bytes');
  const pagesMoved = stats.counter('engine', 'pages');
  const ticks = stats.counter('heartbeat', 'ticks');
  const done = new WaitQueue('engine completion');
  const src: number[] = [];
  const dst: number[] = [];
  let finished = false;

  const heartbeat = sim.timer(() => {
    ticks.value++;
    if (trace.active) trace.emit(sim.now, 'heartbeat', 'tick', { n: ticks.value });
    if (!finished) heartbeat.schedule(TICK_NS);
  }, Priority.HARDWARE);
  heartbeat.schedule(TICK_NS);

  const engine = function* (p: SimProcess): Generator<PromiseLike<boolean>, void, boolean> {
    const staging = new Uint8Array(FRAME_SIZE);
    const res = createDmaResult();
    // Wait for the driver to post the buffers, as an engine waits for a doorbell.
    while (src.length < PAGES) yield p.delay(100);
    for (let i = 0; i < PAGES; i++) {
      const start = sim.now;
      resetDmaResult(res);
      port.read(RID, src[i] as number, staging, 0, FRAME_SIZE, res);
      if (res.status !== DmaStatus.OK) throw new SimInvariantError(`demo: DMA read of ${hex(src[i] as number)} failed`);
      port.write(RID, dst[i] as number, staging, 0, FRAME_SIZE, res);
      if (res.status !== DmaStatus.OK) throw new SimInvariantError(`demo: DMA write of ${hex(dst[i] as number)} failed`);
      yield p.delay(res.costNs + Math.ceil((2 * FRAME_SIZE * PS_PER_BYTE) / 1000));
      bytesMoved.value += FRAME_SIZE;
      pagesMoved.value++;
      if (trace.active) trace.span(start, sim.now - start, 'engine', 'dma.copy', { src: BigInt(src[i] as number), dst: BigInt(dst[i] as number), len: FRAME_SIZE });
    }
    finished = true;
    done.wakeAll();
  };

  let mismatches = -1;
  sim.process('driver', async (p) => {
    const pattern = new Uint8Array(FRAME_SIZE);
    for (let i = 0; i < PAGES; i++) {
      const s = frames.alloc();
      const d = frames.alloc();
      if (s < 0 || d < 0) throw new SimInvariantError('demo: out of memory');
      for (let j = 0; j < FRAME_SIZE; j += 4) {
        const v = m.rng.u32();
        pattern[j] = v;
        pattern[j + 1] = v >>> 8;
        pattern[j + 2] = v >>> 16;
        pattern[j + 3] = v >>> 24;
      }
      memory.write(s * FRAME_SIZE, pattern, 0, FRAME_SIZE);
      src.push(s * FRAME_SIZE);
      dst.push(d * FRAME_SIZE);
      await p.delay(50);
    }
    if (trace.active) trace.emit(sim.now, 'proc:driver', 'buffers.posted', { pages: PAGES });
    if (!finished) await p.wait(done, 'wait(engine completion)');
    const a = new Uint8Array(FRAME_SIZE);
    const b = new Uint8Array(FRAME_SIZE);
    mismatches = 0;
    for (let i = 0; i < PAGES; i++) {
      memory.read(src[i] as number, a, 0, FRAME_SIZE);
      memory.read(dst[i] as number, b, 0, FRAME_SIZE);
      for (let j = 0; j < FRAME_SIZE; j++) if (a[j] !== b[j]) mismatches++;
    }
    if (trace.active) trace.emit(sim.now, 'proc:driver', 'verified', { mismatches });
  });
  sim.process('engine', engine);

  await sim.run();
  if (mismatches !== 0) throw new SimInvariantError(`demo: the copy differs from its source in ${mismatches} bytes`);

  const out = ctx.out;
  const cfg = m.config;
  out.line(`dmasim demo: machine '${cfg.name}', seed ${cfg.seed}, ${formatSize(cfg.memory.size)} of memory, ${cfg.memory.placement} frames`);
  out.line(`  copied ${PAGES} pages (${formatSize(PAGES * FRAME_SIZE)}) between scattered frames through an identity DMA port`);
  out.line(`  source pages at ${src.map(hex).join(' ')}`);
  out.line(`  dest pages at   ${dst.map(hex).join(' ')}`);
  out.line(`  virtual time ${sim.now} ns, ${sim.dispatched} events dispatched, copy verified`);
  const snap = stats.snapshot();
  out.line(`  counters ${Object.entries(snap).map(([c, o]) => Object.entries(o).map(([k, v]) => `${c}/${k}=${v}`).join(' ')).join(' ')}`);
}

/** The `demo` scenario. */
export const demo: Scenario = {
  description: 'a bare machine: a driver and a DMA engine process copy scattered pages, a hardware timer ticks',
  run: runDemo,
};
