import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameAllocator, Rng, SimInvariantError, type PlacementPolicy } from '../sim/index.ts';
import { fcOptions } from './fc.ts';

function drain(a: FrameAllocator): number[] {
  const out: number[] = [];
  for (let f = a.alloc(); f !== -1; f = a.alloc()) out.push(f);
  return out;
}

function take(a: FrameAllocator, n: number): number[] {
  return Array.from({ length: n }, () => a.alloc());
}

describe('FrameAllocator', () => {
  it('sequential placement hands out frames in order, next fit from a cursor that wraps', () => {
    const a = new FrameAllocator(8, 'sequential');
    expect(take(a, 5)).toEqual([0, 1, 2, 3, 4]);
    a.free(1);
    // Next fit: the cursor continues past 4 before coming back to the freed frame.
    expect(take(a, 4)).toEqual([5, 6, 7, 1]);
    expect(a.alloc()).toBe(-1);
    a.free(6);
    a.free(2);
    expect(take(a, 3)).toEqual([2, 6, -1]);
  });

  it('scatter placement is seeded: same seed same sequence, different seeds differ', () => {
    const seq = (seed: number): number[] => take(new FrameAllocator(4096, 'scatter', new Rng(seed)), 64);
    expect(seq(7)).toEqual(seq(7));
    expect(seq(7)).not.toEqual(seq(8));
    expect(seq(1)).not.toEqual(seq(2));
  });

  it('scatter placement produces non-contiguous frames and still hands out every frame once', () => {
    const a = new FrameAllocator(1 << 16, 'scatter', new Rng(3));
    const first = take(a, 256);
    const adjacent = first.slice(1).filter((f, i) => Math.abs(f - (first[i] as number)) === 1).length;
    expect(adjacent).toBeLessThan(4);
    const small = new FrameAllocator(300, 'scatter', new Rng(3));
    const all = drain(small);
    expect(all).toHaveLength(300);
    expect(new Set(all).size).toBe(300);
    expect(all).not.toEqual([...all].sort((x, y) => x - y));
  });

  it('scatter placement needs a generator', () => {
    expect(() => new FrameAllocator(8, 'scatter')).toThrow(SimInvariantError);
  });

  it.each<PlacementPolicy>(['sequential', 'scatter'])('%s: reserved ranges are never handed out, not even contiguously', (policy) => {
    const reserved = [
      [0, 0],
      [10, 19],
      [63, 63],
    ] as const;
    const a = new FrameAllocator(64, policy, new Rng(5), reserved);
    expect(a.freeFrames).toBe(64 - 12);
    for (const [first, last] of reserved) for (let f = first; f <= last; f++) expect(a.isUsed(f)).toBe(true);
    const run = a.allocContiguous(9);
    expect(run).toBe(1);
    const got = [...Array.from({ length: 9 }, (_, i) => run + i), ...drain(a)];
    expect(got.some((f) => f === 0 || f === 63 || (f >= 10 && f <= 19))).toBe(false);
    expect(new Set(got).size).toBe(64 - 12);
    expect(a.allocContiguous(1)).toBe(-1);
    expect(() => a.free(15)).toThrow(/reserved/);
  });

  it('rejects bad reserved ranges and frame counts', () => {
    expect(() => new FrameAllocator(8, 'sequential', undefined, [[4, 8]])).toThrow(SimInvariantError);
    expect(() => new FrameAllocator(8, 'sequential', undefined, [[5, 4]])).toThrow(SimInvariantError);
    expect(() => new FrameAllocator(8, 'sequential', undefined, [[-1, 2]])).toThrow(SimInvariantError);
    expect(() => new FrameAllocator(0, 'sequential')).toThrow(SimInvariantError);
    expect(() => new FrameAllocator(2.5, 'sequential')).toThrow(SimInvariantError);
  });

  it('free, double free, free outside, and out of memory', () => {
    const a = new FrameAllocator(4, 'sequential');
    expect(drain(a)).toEqual([0, 1, 2, 3]);
    expect(a.alloc()).toBe(-1);
    expect(a.freeFrames).toBe(0);
    a.free(2);
    expect(a.isUsed(2)).toBe(false);
    expect(a.freeFrames).toBe(1);
    expect(() => a.free(2)).toThrow(/double free/);
    expect(() => a.free(4)).toThrow(/outside/);
    expect(() => a.free(-1)).toThrow(SimInvariantError);
    expect(() => a.free(0.5)).toThrow(SimInvariantError);
    expect(a.alloc()).toBe(2);
  });

  it('allocContiguous honours alignment and fails with -1 when no aligned run is free', () => {
    const a = new FrameAllocator(64, 'scatter', new Rng(9));
    expect(a.allocContiguous(3, 16)).toBe(0);
    expect(a.allocContiguous(16, 16)).toBe(16);
    expect(a.allocContiguous(1, 8)).toBe(8);
    expect(a.allocContiguous(32, 32)).toBe(32);
    expect(a.allocContiguous(8, 8)).toBe(-1);
    expect(a.allocContiguous(4, 4)).toBe(4);
    expect(a.allocContiguous(4, 4)).toBe(12);
    expect(a.allocContiguous(2, 2)).toBe(10);
    expect(a.allocContiguous(65)).toBe(-1);
    expect(() => a.allocContiguous(0)).toThrow(SimInvariantError);
    expect(() => a.allocContiguous(2, 0)).toThrow(SimInvariantError);
    expect(() => a.allocContiguous(1.5)).toThrow(SimInvariantError);
  });

  type Op = { op: 'alloc' } | { op: 'free'; pick: number } | { op: 'contig'; count: number; align: number };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    { weight: 4, arbitrary: fc.constant({ op: 'alloc' as const }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('free' as const), pick: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('contig' as const), count: fc.integer({ min: 1, max: 12 }), align: fc.constantFrom(1, 2, 4, 8) }) },
  );

  it.each<PlacementPolicy>(['sequential', 'scatter'])('%s: any sequence matches a Set model', (policy) => {
    const FRAMES = 96;
    const reservedArb = fc.array(
      fc.tuple(fc.integer({ min: 0, max: FRAMES - 1 }), fc.integer({ min: 0, max: 5 })).map(([f, n]) => [f, Math.min(FRAMES - 1, f + n)] as const),
      { maxLength: 3 },
    );
    fc.assert(
      fc.property(reservedArb, fc.array(opArb, { maxLength: 200 }), fc.integer(), (reserved, ops, seed) => {
        const a = new FrameAllocator(FRAMES, policy, new Rng(seed), reserved);
        const isReserved = new Set<number>();
        for (const [first, last] of reserved) for (let f = first; f <= last; f++) isReserved.add(f);
        const allocated = new Set<number>();
        const used = (f: number): boolean => allocated.has(f) || isReserved.has(f);
        let cursor = 0;
        for (const o of ops) {
          if (o.op === 'alloc') {
            const f = a.alloc();
            if (allocated.size + isReserved.size === FRAMES) {
              expect(f).toBe(-1);
              continue;
            }
            expect(used(f)).toBe(false);
            expect(f).toBeGreaterThanOrEqual(0);
            expect(f).toBeLessThan(FRAMES);
            if (policy === 'sequential') {
              let want = cursor;
              while (used(want)) want = (want + 1) % FRAMES;
              expect(f).toBe(want);
              cursor = (f + 1) % FRAMES;
            }
            allocated.add(f);
          } else if (o.op === 'free') {
            if (allocated.size === 0) continue;
            const f = [...allocated][o.pick % allocated.size] as number;
            a.free(f);
            allocated.delete(f);
          } else {
            const got = a.allocContiguous(o.count, o.align);
            let firstFit = -1;
            for (let s = 0; s + o.count <= FRAMES && firstFit === -1; s += o.align) {
              let ok = true;
              for (let f = s; f < s + o.count; f++) if (used(f)) ok = false;
              if (ok) firstFit = s;
            }
            if (o.count === 1 && o.align === 1) {
              // A single frame is placed by the policy, not first fit.
              expect(got === -1).toBe(firstFit === -1);
              if (got !== -1) {
                expect(used(got)).toBe(false);
                allocated.add(got);
                if (policy === 'sequential') cursor = (got + 1) % FRAMES;
              }
              continue;
            }
            expect(got).toBe(firstFit);
            for (let f = got; got !== -1 && f < got + o.count; f++) allocated.add(f);
          }
          expect(a.freeFrames).toBe(FRAMES - allocated.size - isReserved.size);
        }
        for (let f = 0; f < FRAMES; f++) expect(a.isUsed(f)).toBe(used(f));
      }),
      fcOptions(100),
    );
  });
});
