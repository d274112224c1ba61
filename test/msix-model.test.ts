import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PhysicalMemory, Simulator } from '../sim/index.ts';
import { StandaloneHost, TD, TESTDEV_MSIX_VECTORS, TESTDEV_REGS, TestDevice } from '../device-models/index.ts';
import { fcOptions } from './fc.ts';

/**
 * MSI-X against a plain model (fast-check `fc.commands`): for any sequence of mask / unmask / function mask /
 * enable / notify over every vector, a vector sends only while unmasked; a notification while masked sets its
 * PBA bit (notifications coalesce in the bit, as in hardware) and that bit is delivered exactly once when the
 * vector becomes unmasked; the PBA always shows exactly the undelivered ones.
 */

const N = TESTDEV_MSIX_VECTORS;
const NOTIFY = (TESTDEV_REGS[TD.MSIX_NOTIFY] as { offset: number }).offset;

interface Model {
  enabled: boolean;
  functionMask: boolean;
  readonly vectorMask: boolean[];
  readonly pending: Set<number>;
  /** Data words expected in the host's message list, in order. */
  readonly sent: number[];
  notifications: number;
}

interface Real {
  readonly dev: TestDevice;
  readonly host: StandaloneHost;
  readonly cap: number;
}

const masked = (m: Model, v: number) => !m.enabled || m.functionMask || (m.vectorMask[v] as boolean);

/** Applies a mask-state change to the model and delivers what it unmasks, in vector order as msix.c does. */
function remask(m: Model, change: () => void): void {
  const was = Array.from({ length: N }, (_, v) => masked(m, v));
  change();
  for (let v = 0; v < N; v++) {
    if (was[v] && !masked(m, v) && m.pending.has(v)) {
      m.pending.delete(v);
      m.sent.push(v);
    }
  }
}

function control(m: Model): number {
  return (m.enabled ? 0x8000 : 0) | (m.functionMask ? 0x4000 : 0);
}

function check(m: Model, r: Real): void {
  expect(r.host.messages.map((x) => x.data)).toEqual(m.sent);
  for (let dw = 0; dw < N / 32; dw++) {
    let want = 0;
    for (let b = 0; b < 32; b++) if (m.pending.has(dw * 32 + b)) want |= 1 << b;
    expect(r.dev.fn.mmioRead(2, 0x800 + 4 * dw, 4)).toBe(want >>> 0);
  }
}

class Notify implements fc.Command<Model, Real> {
  constructor(readonly v: number) {}
  check = () => true;
  run(m: Model, r: Real): void {
    m.notifications++;
    if (masked(m, this.v)) m.pending.add(this.v);
    else m.sent.push(this.v);
    r.dev.fn.mmioWrite(0, NOTIFY, 4, this.v);
    check(m, r);
  }
  toString = () => `notify(${this.v})`;
}

class VectorMask implements fc.Command<Model, Real> {
  constructor(readonly v: number, readonly on: boolean) {}
  check = () => true;
  run(m: Model, r: Real): void {
    remask(m, () => {
      m.vectorMask[this.v] = this.on;
    });
    r.dev.fn.mmioWrite(2, this.v * 16 + 12, 4, this.on ? 1 : 0);
    check(m, r);
  }
  toString = () => `${this.on ? 'mask' : 'unmask'}(${this.v})`;
}

class FunctionMask implements fc.Command<Model, Real> {
  constructor(readonly on: boolean) {}
  check = () => true;
  run(m: Model, r: Real): void {
    remask(m, () => {
      m.functionMask = this.on;
    });
    r.dev.fn.configWrite(r.cap + 2, 2, control(m));
    check(m, r);
  }
  toString = () => `functionMask(${this.on})`;
}

class Enable implements fc.Command<Model, Real> {
  constructor(readonly on: boolean) {}
  check = () => true;
  run(m: Model, r: Real): void {
    remask(m, () => {
      m.enabled = this.on;
    });
    // A 1-byte write of the control's high byte, as Linux's pci_msix_clear_and_set_ctrl does in effect.
    r.dev.fn.configWrite(r.cap + 3, 1, control(m) >>> 8);
    check(m, r);
  }
  toString = () => `enable(${this.on})`;
}

function setup(): { model: Model; real: Real } {
  const sim = new Simulator();
  const dev = new TestDevice(sim);
  const host = new StandaloneHost(sim, new PhysicalMemory(1 << 20), dev.fn);
  const fn = dev.fn;
  fn.configWrite(0x04, 2, 0x0006);
  const cap = fn.caps['MSI-X'] as number;
  // Each entry's data is its vector number, so deliveries identify themselves; entries stay masked.
  for (let v = 0; v < N; v++) {
    fn.mmioWrite(2, v * 16, 4, 0xfee0_0000);
    fn.mmioWrite(2, v * 16 + 4, 4, 0);
    fn.mmioWrite(2, v * 16 + 8, 4, v);
  }
  const model: Model = {
    enabled: false, functionMask: false, vectorMask: Array.from({ length: N }, () => true),
    pending: new Set(), sent: [], notifications: 0,
  };
  return { model, real: { dev, host, cap } };
}

const vector = fc.integer({ min: 0, max: N - 1 });
// A few hot vectors make masking and notifying the same vector likely.
const hot = fc.oneof(fc.constantFrom(0, 1, N - 1), vector);
const commands = [
  hot.map((v) => new Notify(v)),
  fc.tuple(hot, fc.boolean()).map(([v, on]) => new VectorMask(v, on)),
  fc.boolean().map((on) => new FunctionMask(on)),
  fc.boolean().map((on) => new Enable(on)),
];

describe('MSI-X against a model', () => {
  it('delivers each pending period exactly once, never while masked, with the PBA showing the rest', () => {
    fc.assert(
      fc.property(fc.commands(commands, { maxCommands: 80 }), (cmds) => {
        const { model, real } = setup();
        fc.modelRun(() => ({ model, real }), cmds);
        // Unmask everything: every notification is then accounted for, and nothing stays pending.
        new FunctionMask(false).run(model, real);
        new Enable(true).run(model, real);
        for (let v = 0; v < N; v++) new VectorMask(v, false).run(model, real);
        expect(model.pending.size).toBe(0);
        expect(real.host.messages.length).toBeLessThanOrEqual(model.notifications);
      }),
      fcOptions(300),
    );
  });

  it('a notification on a masked vector is delivered once when unmasked, not again', () => {
    const { model, real } = setup();
    const fn = real.dev.fn;
    fn.configWrite(real.cap + 2, 2, 0x8000);
    fn.mmioWrite(0, NOTIFY, 4, 5);
    fn.mmioWrite(0, NOTIFY, 4, 5);
    expect(fn.mmioRead(2, 0x800, 4)).toBe(1 << 5);
    fn.mmioWrite(2, 5 * 16 + 12, 4, 0);
    fn.mmioWrite(2, 5 * 16 + 12, 4, 1);
    fn.mmioWrite(2, 5 * 16 + 12, 4, 0);
    expect(real.host.messages.map((x) => x.data)).toEqual([5]);
    expect(fn.mmioRead(2, 0x800, 4)).toBe(0);
    expect(model.sent).toEqual([]);
  });
});
