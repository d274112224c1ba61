import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PhysicalMemory, Simulator } from '../sim/index.ts';
import { EduDevice, StandaloneHost, TestDevice, type PciFunction } from '../device-models/index.ts';
import { fcOptions } from './fc.ts';

/**
 * Random configuration and MMIO sequences never throw (cloud-hypervisor's fuzz targets): whatever a driver
 * does, the function and its device answer as hardware would, and results stay in range.
 */

type Op =
  | { readonly k: 'cfgR'; readonly off: number; readonly size: number }
  | { readonly k: 'cfgW'; readonly off: number; readonly size: number; readonly v: number }
  | { readonly k: 'mmioR'; readonly bar: number; readonly off: number; readonly size: number }
  | { readonly k: 'mmioW'; readonly bar: number; readonly off: number; readonly size: number; readonly v: number }
  | { readonly k: 'mmioR64'; readonly bar: number; readonly off: number }
  | { readonly k: 'mmioW64'; readonly bar: number; readonly off: number; readonly v: bigint }
  | { readonly k: 'run'; readonly ns: number };

const size = fc.oneof(fc.constantFrom(1, 2, 4, 8), fc.integer({ min: -2, max: 16 }));
// Mostly interesting offsets (registers, capabilities, MSI-X table and PBA), sometimes anything.
const cfgOff = fc.oneof(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0, max: 0x1003 }), fc.constantFrom(-1, 0.5, 2 ** 40));
const mmioOff = fc.oneof(
  fc.integer({ min: 0, max: 0xff }).map((x) => x & ~3),
  fc.integer({ min: 0x7f0, max: 0x80f }),
  fc.integer({ min: 0, max: 1 << 21 }),
  fc.constantFrom(-4, 0x40000, 0xffffc, 2 ** 33, 2 ** 53, Number.NaN),
);
const bar = fc.oneof(fc.integer({ min: 0, max: 5 }), fc.constantFrom(-1, 6, 1.5));
const u32 = fc.oneof(fc.constantFrom(0, 1, 3, 5, 0x8000, 0xc000, 0x0507, 0xffff_ffff, 0xfee0_0000, 0x40000), fc.nat({ max: 0xffff_ffff }));
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('cfgR' as const), off: cfgOff, size }),
  fc.record({ k: fc.constant('cfgW' as const), off: cfgOff, size, v: u32 }),
  fc.record({ k: fc.constant('mmioR' as const), bar, off: mmioOff, size }),
  fc.record({ k: fc.constant('mmioW' as const), bar, off: mmioOff, size, v: u32 }),
  fc.record({ k: fc.constant('mmioR64' as const), bar, off: mmioOff }),
  fc.record({ k: fc.constant('mmioW64' as const), bar, off: mmioOff, v: fc.bigInt({ min: -1n, max: 2n ** 64n }) }),
  fc.record({ k: fc.constant('run' as const), ns: fc.constantFrom(1, 1000, 100_000_000) }),
);

function apply(sim: Simulator, fn: PciFunction, o: Op): void {
  switch (o.k) {
    case 'cfgR': {
      const v = fn.configRead(o.off, o.size);
      expect(v >= 0 && v <= 0xffff_ffff && Number.isInteger(v)).toBe(true);
      return;
    }
    case 'cfgW':
      fn.configWrite(o.off, o.size, o.v);
      return;
    case 'mmioR': {
      const v = fn.mmioRead(o.bar, o.off, o.size);
      expect(v >= 0 && v <= 0xffff_ffff && Number.isInteger(v)).toBe(true);
      return;
    }
    case 'mmioW':
      fn.mmioWrite(o.bar, o.off, o.size, o.v);
      return;
    case 'mmioR64': {
      const v = fn.mmioRead64(o.bar, o.off);
      expect(v >= 0n && v < 2n ** 64n).toBe(true);
      return;
    }
    case 'mmioW64':
      fn.mmioWrite64(o.bar, o.off, o.v);
      return;
    case 'run':
      sim.runSync({ until: sim.now + o.ns });
  }
}

/** Turns decoding and bus mastering on first, so most accesses reach the device. */
const preamble: Op[] = [{ k: 'cfgW', off: 0x04, size: 2, v: 0x0007 }];

describe('random access sequences never throw', () => {
  it('on edu', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const sim = new Simulator();
        const edu = new EduDevice(sim);
        const host = new StandaloneHost(sim, new PhysicalMemory(1 << 20), edu.fn);
        sim.trace.subscribe(() => {});
        for (const o of [...preamble, ...ops]) apply(sim, edu.fn, o);
        sim.runSync({ until: sim.now + 200_000_000 });
        expect(host.messages.length + host.intxAssertions).toBeGreaterThanOrEqual(0);
      }),
      fcOptions(300),
    );
  });

  it('on the PCIe test device (MSI, MSI-X, PM, FLR, every BAR kind)', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const sim = new Simulator();
        const dev = new TestDevice(sim);
        new StandaloneHost(sim, new PhysicalMemory(1 << 20), dev.fn);
        for (const o of [...preamble, ...ops]) apply(sim, dev.fn, o);
        // Whatever happened, the Command register holds only its writable bits.
        expect(dev.fn.command & ~0x0507).toBe(0);
      }),
      fcOptions(300),
    );
  });
});
