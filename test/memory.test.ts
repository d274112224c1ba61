import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FRAME_SIZE, PhysicalMemory, SimInvariantError } from '../sim/index.ts';
import { fcOptions } from './fc.ts';

/** 64 KiB: 16 frames, small enough to compare in full after every sequence. */
const SIZE = 64 * 1024;
const FRAMES = SIZE / FRAME_SIZE;

/** Addresses biased to within a few bytes of a frame boundary, where the per-frame loops split. */
const addr = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.integer({ min: 0, max: FRAMES }), fc.integer({ min: -9, max: 9 })).map(([f, d]) => clampAddr(f * FRAME_SIZE + d)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: SIZE - 1 }) },
);
const len = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 16 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 3 * FRAME_SIZE + 17 }) },
  { weight: 1, arbitrary: fc.constantFrom(FRAME_SIZE, 2 * FRAME_SIZE) },
);

function clampAddr(a: number): number {
  return Math.min(Math.max(a, 0), SIZE - 1);
}

type Op =
  | { op: 'write'; addr: number; len: number; seed: number; srcOff: number }
  | { op: 'read'; addr: number; len: number; dstOff: number }
  | { op: 'fill'; addr: number; len: number; value: number }
  | { op: 'copy'; dst: number; src: number; len: number }
  | { op: 'write8' | 'write16' | 'write32'; addr: number; value: number }
  | { op: 'write64'; addr: number; value: bigint }
  | { op: 'read8' | 'read16' | 'read32' | 'read64'; addr: number };

const byte = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('write' as const), addr, len, seed: fc.integer(), srcOff: fc.integer({ min: 0, max: 5 }) }),
  fc.record({ op: fc.constant('read' as const), addr, len, dstOff: fc.integer({ min: 0, max: 5 }) }),
  fc.record({ op: fc.constant('fill' as const), addr, len, value: byte }),
  fc.record({ op: fc.constant('copy' as const), dst: addr, src: addr, len }),
  fc.record({ op: fc.constantFrom('write8' as const, 'write16' as const, 'write32' as const), addr, value: fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }) }),
  fc.record({ op: fc.constant('write64' as const), addr, value: fc.bigInt(-(2n ** 64n), 2n ** 65n) }),
  fc.record({ op: fc.constantFrom('read8' as const, 'read16' as const, 'read32' as const, 'read64' as const), addr }),
);

const WIDTH = { read8: 1, read16: 2, read32: 4, read64: 8, write8: 1, write16: 2, write32: 4, write64: 8 } as const;

function pattern(seed: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  let s = seed | 1;
  for (let i = 0; i < n; i++) {
    s = (s ^ (s << 13)) | 0;
    s = (s ^ (s >>> 17)) | 0;
    s = (s ^ (s << 5)) | 0;
    b[i] = s & 0xff;
  }
  return b;
}

/** Index of the first byte where `a` and `b` differ, or -1 (vitest's deep equality is slow on 64 KiB). */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Little-endian value of `w` bytes at `a` in the flat model. */
function modelRead(model: Uint8Array, a: number, w: number): bigint {
  let v = 0n;
  for (let i = w - 1; i >= 0; i--) v = (v << 8n) | BigInt(model[a + i] as number);
  return v;
}

function modelWrite(model: Uint8Array, a: number, w: number, v: bigint): void {
  let x = BigInt.asUintN(w * 8, v);
  for (let i = 0; i < w; i++) {
    model[a + i] = Number(x & 0xffn);
    x >>= 8n;
  }
}

/** Marks the frames of `[a, a + n)` as written (n > 0). */
function touch(written: Set<number>, a: number, n: number): void {
  if (n <= 0) return;
  for (let f = Math.floor(a / FRAME_SIZE); f <= Math.floor((a + n - 1) / FRAME_SIZE); f++) written.add(f);
}

/** Applies `o` to memory and model, checking every value read; ranges are clipped to memory. */
function apply(mem: PhysicalMemory, model: Uint8Array, written: Set<number>, o: Op): void {
  switch (o.op) {
    case 'write': {
      const n = Math.min(o.len, SIZE - o.addr);
      const src = pattern(o.seed, n + o.srcOff);
      mem.write(o.addr, src, o.srcOff, n);
      model.set(src.subarray(o.srcOff, o.srcOff + n), o.addr);
      touch(written, o.addr, n);
      return;
    }
    case 'read': {
      const n = Math.min(o.len, SIZE - o.addr);
      const dst = new Uint8Array(n + o.dstOff + 3).fill(0xa5);
      mem.read(o.addr, dst, o.dstOff, n);
      expect(firstDifference(dst.subarray(o.dstOff, o.dstOff + n), model.subarray(o.addr, o.addr + n))).toBe(-1);
      // Bytes around the destination window are untouched.
      expect([...dst.subarray(0, o.dstOff), ...dst.subarray(o.dstOff + n)].every((b) => b === 0xa5)).toBe(true);
      return;
    }
    case 'fill': {
      const n = Math.min(o.len, SIZE - o.addr);
      mem.fill(o.addr, o.value, n);
      model.fill(o.value, o.addr, o.addr + n);
      // Filling with zeros never materialises a frame: it already reads as zeros.
      if (o.value !== 0) touch(written, o.addr, n);
      return;
    }
    case 'copy': {
      const n = Math.min(o.len, SIZE - o.dst, SIZE - o.src);
      mem.copy(o.dst, o.src, n);
      model.copyWithin(o.dst, o.src, o.src + n);
      touch(written, o.dst, n);
      return;
    }
    case 'write8':
    case 'write16':
    case 'write32': {
      const w = WIDTH[o.op];
      const a = Math.min(o.addr, SIZE - w);
      mem[o.op](a, o.value);
      modelWrite(model, a, w, BigInt(o.value));
      touch(written, a, w);
      return;
    }
    case 'write64': {
      const a = Math.min(o.addr, SIZE - 8);
      mem.write64(a, o.value);
      modelWrite(model, a, 8, o.value);
      touch(written, a, 8);
      return;
    }
    case 'read64': {
      const a = Math.min(o.addr, SIZE - 8);
      expect(mem.read64(a)).toBe(modelRead(model, a, 8));
      return;
    }
    case 'read8':
    case 'read16':
    case 'read32': {
      const w = WIDTH[o.op];
      const a = Math.min(o.addr, SIZE - w);
      expect(mem[o.op](a)).toBe(Number(modelRead(model, a, w)));
      return;
    }
  }
}

describe('PhysicalMemory', () => {
  it('any sequence of accesses matches a flat byte array', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        const mem = new PhysicalMemory(SIZE);
        const model = new Uint8Array(SIZE);
        const written = new Set<number>();
        for (const o of ops) apply(mem, model, written, o);
        const all = new Uint8Array(SIZE);
        mem.read(0, all, 0, SIZE);
        expect(firstDifference(all, model)).toBe(-1);
        // Exactly the frames something was stored into hold data; reading materialised nothing.
        expect(mem.materialisedFrames).toBe(written.size);
        for (let f = 0; f < FRAMES; f++) expect(mem.peekFrame(f) !== undefined).toBe(written.has(f));
      }),
      fcOptions(300),
    );
  });

  it('never-written frames read as zero and stay unmaterialised', () => {
    const mem = new PhysicalMemory(SIZE);
    const buf = new Uint8Array(3 * FRAME_SIZE).fill(7);
    mem.read(FRAME_SIZE - 5, buf, 0, buf.length);
    expect(buf.every((b) => b === 0)).toBe(true);
    expect(mem.read8(SIZE - 1)).toBe(0);
    expect(mem.read16(FRAME_SIZE - 1)).toBe(0);
    expect(mem.read32(2 * FRAME_SIZE - 2)).toBe(0);
    expect(mem.read64(3 * FRAME_SIZE - 4)).toBe(0n);
    mem.fill(0, 0, SIZE);
    mem.write(5, buf, 0, 0);
    expect(mem.materialisedFrames).toBe(0);
    expect(mem.peekFrame(3)).toBeUndefined();
    // Asking for a frame's bytes is a materialisation, and only of that frame.
    expect(mem.frame(3).every((b) => b === 0)).toBe(true);
    expect(mem.materialisedFrames).toBe(1);
    expect(mem.peekFrame(3)).toBe(mem.frame(3));
  });

  it('writes through a frame view are visible to the accessors', () => {
    const mem = new PhysicalMemory(SIZE);
    mem.frame(2)[FRAME_SIZE - 1] = 0x12;
    mem.frame(3)[0] = 0x34;
    expect(mem.read16(3 * FRAME_SIZE - 1)).toBe(0x3412);
  });

  it('copy is a memmove across frames, in both directions, and copies zeros from unwritten frames', () => {
    for (const [dst, src] of [
      [FRAME_SIZE - 100, FRAME_SIZE - 3000],
      [FRAME_SIZE - 3000, FRAME_SIZE - 100],
    ] as const) {
      const mem = new PhysicalMemory(SIZE);
      const model = new Uint8Array(SIZE);
      const p = pattern(dst, 3 * FRAME_SIZE);
      mem.write(0, p, 0, p.length);
      model.set(p);
      mem.copy(dst, src, 2 * FRAME_SIZE + 5);
      model.copyWithin(dst, src, src + 2 * FRAME_SIZE + 5);
      const all = new Uint8Array(SIZE);
      mem.read(0, all, 0, SIZE);
      expect(firstDifference(all, model)).toBe(-1);
    }
    const mem = new PhysicalMemory(SIZE);
    mem.fill(8 * FRAME_SIZE, 0xff, 2 * FRAME_SIZE);
    mem.copy(8 * FRAME_SIZE + 10, 2 * FRAME_SIZE, FRAME_SIZE);
    expect(mem.read8(8 * FRAME_SIZE + 9)).toBe(0xff);
    expect(mem.read8(8 * FRAME_SIZE + 10)).toBe(0);
    expect(mem.read8(9 * FRAME_SIZE + 9)).toBe(0);
    expect(mem.read8(9 * FRAME_SIZE + 10)).toBe(0xff);
    expect(mem.peekFrame(2)).toBeUndefined();
  });

  it('wide values wrap as little-endian registers do', () => {
    const mem = new PhysicalMemory(SIZE);
    mem.write64(FRAME_SIZE - 3, 2n ** 64n - 1n);
    expect(mem.read64(FRAME_SIZE - 3)).toBe(2n ** 64n - 1n);
    expect(mem.read32(FRAME_SIZE - 3)).toBe(0xffffffff);
    mem.write64(0, 2n ** 64n + 5n);
    expect(mem.read64(0)).toBe(5n);
    mem.write64(16, -1n);
    expect(mem.read64(16)).toBe(2n ** 64n - 1n);
    mem.write32(32, -1);
    expect(mem.read32(32)).toBe(0xffffffff);
    mem.write16(FRAME_SIZE - 1, 0x1_beef);
    expect(mem.read16(FRAME_SIZE - 1)).toBe(0xbeef);
  });

  it('an access outside memory is a simulator bug', () => {
    const mem = new PhysicalMemory(SIZE);
    const buf = new Uint8Array(16);
    const bad: (() => unknown)[] = [
      () => mem.read(SIZE - 1, buf, 0, 2),
      () => mem.read(-1, buf, 0, 1),
      () => mem.write(SIZE, buf, 0, 0 + 1),
      () => mem.write(1.5, buf, 0, 1),
      () => mem.fill(SIZE - 4, 1, 5),
      () => mem.copy(0, SIZE - 2, 4),
      () => mem.copy(SIZE - 2, 0, 4),
      () => mem.read8(SIZE),
      () => mem.read16(SIZE - 1),
      () => mem.read32(SIZE - 3),
      () => mem.read64(SIZE - 7),
      () => mem.write8(SIZE, 0),
      () => mem.write16(SIZE - 1, 0),
      () => mem.write32(SIZE - 2, 0),
      () => mem.write64(SIZE - 4, 0n),
      () => mem.read8(Number.NaN),
      () => mem.read(0, buf, 0, -1),
      () => mem.frame(FRAMES),
      () => mem.frame(-1),
    ];
    for (const f of bad) expect(f).toThrow(SimInvariantError);
    // Nothing was stored by the refused accesses.
    expect(mem.materialisedFrames).toBe(0);
    expect(() => new PhysicalMemory(4097)).toThrow(SimInvariantError);
    expect(() => new PhysicalMemory(0)).toThrow(SimInvariantError);
  });

  it('contains() is the bus-side range check', () => {
    const mem = new PhysicalMemory(SIZE);
    expect(mem.contains(0, SIZE)).toBe(true);
    expect(mem.contains(SIZE, 0)).toBe(true);
    expect(mem.contains(SIZE - 1, 2)).toBe(false);
    expect(mem.contains(-1, 1)).toBe(false);
    expect(mem.contains(0.5, 1)).toBe(false);
  });
});
