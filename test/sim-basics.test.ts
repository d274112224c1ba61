import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bit, bits, get32, get64, invariant, mask32, mask64, numRangeOf, rangeContains, rangeLength, rangeOf, rangesOverlap, Rng, set32, set64, SimInvariantError, Stats, toExactNumber, TraceBus, U64_MAX, type TraceRecord } from '../sim/index.ts';

describe('bitfields', () => {
  it('use the specs [hi:lo] numbering', () => {
    expect(bits(15, 8)).toEqual({ lsb: 8, width: 8 });
    expect(mask32(bits(15, 8))).toBe(0xff00);
    expect(mask32(bits(31, 0))).toBe(0xffffffff);
    expect(mask32(bit(31))).toBe(0x80000000);
    expect(get32(0xdeadbeef, bits(31, 16))).toBe(0xdead);
    expect(set32(0xdeadbeef, bits(7, 4), 0x0)).toBe(0xdeadbe0f);
    expect(set32(0, bits(7, 4), 0x1ff)).toBe(0xf0);
    expect(mask64(bit(63))).toBe(1n << 63n);
    expect(get64(U64_MAX, bits(63, 60))).toBe(0xfn);
    expect(set64(U64_MAX, bits(63, 32), 0n)).toBe(0xffffffffn);
    expect(() => bits(3, 4)).toThrow(RangeError);
    expect(() => bits(64, 0)).toThrow(RangeError);
    expect(() => mask32(bits(40, 8))).toThrow(RangeError);
  });

  it('set then get returns the value truncated to the field', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 31 }), fc.integer({ min: 1, max: 32 }), fc.nat(), fc.nat(), (lo, w, word, v) => {
        const hi = Math.min(31, lo + w - 1);
        const f = bits(hi, lo);
        const out = set32(word >>> 0, f, v);
        expect(get32(out, f)).toBe((v & (f.width === 32 ? 0xffffffff : (1 << f.width) - 1)) >>> 0);
        expect((out & ~mask32(f)) >>> 0).toBe((word & ~mask32(f)) >>> 0);
      }),
      { seed: 42, numRuns: 300 },
    );
  });

  it('converts bigint to number only when exact', () => {
    expect(toExactNumber(2n ** 53n - 1n)).toBe(2 ** 53 - 1);
    expect(toExactNumber(2n ** 53n)).toBe(-1);
    expect(toExactNumber(-1n)).toBe(-1);
  });
});

describe('ranges', () => {
  it('are inclusive, reject zero length and overflow, and allow the last byte of the space', () => {
    expect(rangeOf(0x1000n, 0x1000n)).toEqual({ start: 0x1000n, last: 0x1fffn });
    expect(rangeOf(0n, 0n)).toBe('zero-length');
    expect(rangeOf(U64_MAX, 1n)).toEqual({ start: U64_MAX, last: U64_MAX });
    expect(rangeOf(U64_MAX, 2n)).toBe('overflow');
    expect(rangeOf(0n, 2n ** 64n)).toEqual({ start: 0n, last: U64_MAX });
    expect(rangeOf(1n, 2n ** 64n)).toBe('overflow');
    expect(rangeOf(2n ** 48n - 0x1000n, 0x1000n, 48)).toEqual({ start: 2n ** 48n - 0x1000n, last: 2n ** 48n - 1n });
    expect(rangeOf(2n ** 48n, 1n, 48)).toBe('overflow');
    expect(rangeOf(-1n, 1n)).toBe('negative');
    expect(numRangeOf(2 ** 53 - 2, 1)).toEqual({ start: 2 ** 53 - 2, last: 2 ** 53 - 2 });
    expect(numRangeOf(2 ** 53 - 1, 2)).toBe('overflow');
    expect(numRangeOf(0, 0)).toBe('zero-length');
    expect(numRangeOf(0.5, 1)).toBe('overflow');
    const a = { start: 0n, last: 9n };
    expect(rangeLength(a)).toBe(10n);
    expect(rangesOverlap(a, { start: 9n, last: 20n })).toBe(true);
    expect(rangesOverlap(a, { start: 10n, last: 20n })).toBe(false);
    expect(rangeContains(a, { start: 2n, last: 9n })).toBe(true);
    expect(rangeContains(a, { start: 2n, last: 10n })).toBe(false);
  });
});

describe('rng', () => {
  it('is deterministic per seed and independent per fork', () => {
    const a = new Rng(5);
    const b = new Rng(5);
    const xs = Array.from({ length: 100 }, () => a.int(0, 1000));
    expect(Array.from({ length: 100 }, () => b.int(0, 1000))).toEqual(xs);
    expect(Array.from({ length: 100 }, () => new Rng(6).int(0, 1000))).not.toEqual(xs);
    for (const x of xs) expect(x >= 0 && x <= 1000).toBe(true);
    const f1 = new Rng(9).fork();
    const f2 = new Rng(9).fork();
    expect(f1.u32()).toBe(f2.u32());
    expect(new Rng(1).shuffle([1, 2, 3, 4, 5, 6, 7, 8]).sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

describe('trace bus and counters', () => {
  it('is inactive without listeners, delivers records to each listener, and stops on unsubscribe', () => {
    const bus = new TraceBus();
    expect(bus.active).toBe(false);
    bus.emit(1, 'x', 'nobody');
    const got: TraceRecord[] = [];
    const off = bus.subscribe((r) => got.push(r));
    expect(bus.active).toBe(true);
    bus.emit(5, 'iommu', 'fault', { reason: 6, addr: 0x3000n });
    bus.span(6, 10, 'edu', 'dma');
    off();
    expect(bus.active).toBe(false);
    bus.emit(7, 'iommu', 'late');
    expect(got).toEqual([
      { time: 5, source: 'iommu', kind: 'fault', fields: { reason: 6, addr: 0x3000n } },
      { time: 6, source: 'edu', kind: 'dma', durNs: 10, fields: {} },
    ]);
  });

  it('keeps counters per component, created at zero', () => {
    const s = new Stats();
    const hit = s.counter('iommu', 'iotlb.hit');
    hit.value += 3;
    s.counter('edu', 'irq').value++;
    expect(s.counter('iommu', 'iotlb.hit')).toBe(hit);
    expect(s.snapshot()).toEqual({ edu: { irq: 1 }, iommu: { 'iotlb.hit': 3 } });
  });

  it('invariant throws SimInvariantError with the message', () => {
    expect(() => invariant(false, 'boom')).toThrow(SimInvariantError);
    expect(() => invariant(0, () => 'lazy')).toThrow('lazy');
    expect(() => invariant(1, 'fine')).not.toThrow();
  });
});
