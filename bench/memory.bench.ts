import { FRAME_SIZE, FrameAllocator, PhysicalMemory, Rng } from '../sim/index.ts';
import type { BenchmarkDef, RunResult } from './harness.ts';
import { registerBenchmarks } from './registry.ts';

/** Physical memory of the copy benchmarks: 1 GiB with scattered frames, as the default machine has. */
const MEMORY_BYTES = 1 << 30;
/** Wall-clock milliseconds each timed run aims for (per side: dmasim, then the raw baseline). */
const RUN_MS = 100;

/**
 * How a DMA engine moves one frame through PhysicalMemory:
 * - `copy`: `PhysicalMemory.copy` frame to frame (the path devices use);
 * - `staged`: `read` into a staging buffer then `write` out of it, as an engine with an internal FIFO would.
 */
export type CopyPath = 'copy' | 'staged';

/** Two equally sized buffers of scattered frames in one physical memory, and the raw arrays to compare with. */
export interface CopyWorld {
  readonly mem: PhysicalMemory;
  readonly bytes: number;
  readonly src: Float64Array;
  readonly dst: Float64Array;
  readonly rawSrc: Uint8Array;
  readonly rawDst: Uint8Array;
  readonly staging: Uint8Array;
}

/** Builds a {@link CopyWorld} of `bytes` per buffer, frames taken from a seeded scatter allocator. */
export function copyWorld(bytes: number, seed = 1): CopyWorld {
  const mem = new PhysicalMemory(MEMORY_BYTES);
  const frames = new FrameAllocator(mem.frameCount, 'scatter', new Rng(seed));
  const n = bytes / FRAME_SIZE;
  const src = new Float64Array(n);
  const dst = new Float64Array(n);
  const pattern = new Uint8Array(FRAME_SIZE);
  for (let i = 0; i < FRAME_SIZE; i++) pattern[i] = (i * 31 + 7) & 0xff;
  for (let i = 0; i < n; i++) {
    src[i] = frames.alloc() * FRAME_SIZE;
    dst[i] = frames.alloc() * FRAME_SIZE;
    mem.write(src[i] as number, pattern, 0, FRAME_SIZE);
  }
  const rawSrc = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) rawSrc[i] = (i * 31 + 7) & 0xff;
  return { mem, bytes, src, dst, rawSrc, rawDst: new Uint8Array(bytes), staging: new Uint8Array(FRAME_SIZE) };
}

/** One DMA-style copy of the whole buffer, frame by frame from source frames to destination frames. */
export function dmaCopy(w: CopyWorld, path: CopyPath): void {
  const { mem, src, dst, staging } = w;
  if (path === 'copy') {
    for (let i = 0; i < src.length; i++) mem.copy(dst[i] as number, src[i] as number, FRAME_SIZE);
  } else {
    for (let i = 0; i < src.length; i++) {
      mem.read(src[i] as number, staging, 0, FRAME_SIZE);
      mem.write(dst[i] as number, staging, 0, FRAME_SIZE);
    }
  }
}

function timeLoop(iterations: number, body: () => void): number {
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) body();
  return performance.now() - t0;
}

/** Iterations of `body` that take about {@link RUN_MS} (calibrated after warm-up). */
function calibrate(body: () => void): number {
  let n = 1;
  for (;;) {
    const ms = timeLoop(n, body);
    if (ms >= 20) return Math.max(1, Math.ceil((n * RUN_MS) / ms));
    n *= 4;
  }
}

/** MB/s (10^6 bytes per second). */
function mbps(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

/** The timed-run function of one copy benchmark (exported for measuring the staged path from a script). */
export function prepareCopy(bytes: number, path: CopyPath = 'copy'): () => RunResult {
  const w = copyWorld(bytes);
  const sim = (): void => dmaCopy(w, path);
  const raw = (): void => w.rawDst.set(w.rawSrc);
  // Warm-up: materialises the destination frames and lets the JIT settle both loops.
  timeLoop(20, sim);
  timeLoop(20, raw);
  const simIters = calibrate(sim);
  const rawIters = calibrate(raw);
  for (let i = 0; i < w.src.length; i++) {
    const a = new Uint8Array(FRAME_SIZE);
    w.mem.read(w.dst[i] as number, a, 0, FRAME_SIZE);
    if (a[FRAME_SIZE - 1] !== (((FRAME_SIZE - 1) * 31 + 7) & 0xff)) throw new Error(`mem.copy: frame ${i} was not copied`);
  }
  return () => {
    const simMs = timeLoop(simIters, sim);
    const rawMs = timeLoop(rawIters, raw);
    const value = mbps(bytes * simIters, simMs);
    const rawMBps = mbps(bytes * rawIters, rawMs);
    return { value, ms: simMs, extra: { rawMBps: Math.round(rawMBps), ratio: Math.round((value / rawMBps) * 1000) / 1000 } };
  };
}

/** The target for the 64 KiB and 1 MiB copies: at least 0.7 of a raw `Uint8Array.set`. */
const RATIO_TARGET = 0.7;

function copyBench(label: string, bytes: number, ratioTarget?: number): BenchmarkDef {
  const size = bytes >= 1 << 20 ? `${bytes >> 20} MiB` : `${bytes >> 10} KiB`;
  return {
    name: `mem.copy.${label}`,
    unit: 'MB/s',
    description:
      `DMA-style copy of ${size} between scattered 4 KiB frames of 1 GiB memory (PhysicalMemory.copy per frame); ` +
      `extra: rawMBps of Uint8Array.set of ${size} in the same run, ratio = value / rawMBps` +
      (ratioTarget === undefined ? '' : ` (target: ratio >= ${ratioTarget})`),
    prepare: () => {
      const run = prepareCopy(bytes);
      if (ratioTarget === undefined) return run;
      return () => {
        const r = run();
        const ratio = r.extra?.['ratio'] as number;
        return { ...r, extra: { ...r.extra, ratioTarget, meetsRatioTarget: ratio >= ratioTarget ? 'yes' : 'no' } };
      };
    },
  };
}

registerBenchmarks(copyBench('4k', 4 * 1024), copyBench('64k', 64 * 1024, RATIO_TARGET), copyBench('1m', 1024 * 1024, RATIO_TARGET));
