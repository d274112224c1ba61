import { IdentityDmaPort, PhysicalMemory, Simulator, type MsiSink } from '../sim/index.ts';
import { EduDevice, TestDevice, type PciFunction } from '../device-models/index.ts';
import { createMachine, type Machine } from '../machine/index.ts';
import type { BenchmarkDef, RunResult } from './harness.ts';
import { registerBenchmarks } from './registry.ts';

/**
 * The PCI function's hot paths without a machine: BAR reads dispatched through the function to edu's
 * register table (`pci.mmio.direct`; the machine-routed `pci.mmio` adds address decoding on top and has a
 * 60 M/s target, so this path must be well above it), and MSI-X notifications of an unmasked vector through
 * the bus-master gate to an MsiSink (`pci.msix.notify.direct`).
 */

const READS = 20_000_000;
const NOTIFIES = 10_000_000;

/** An edu function with memory decode on, attached to a sink that drops messages. */
function eduWorld(): PciFunction {
  const sim = new Simulator();
  const edu = new EduDevice(sim);
  const sink: MsiSink = { msi: () => {} };
  edu.fn.attach({ requesterId: 0x18, dma: new IdentityDmaPort(new PhysicalMemory(1 << 20)), msi: sink });
  edu.fn.configWrite(0x04, 2, 0x0006);
  edu.fn.mmioWrite(0, 0x04, 4, 0x1234_5678);
  return edu.fn;
}

/** `n` 4-byte reads of edu's liveness register (0x04) through the function's BAR read path; ms taken. */
export function mmioDirect(fn: PciFunction, n: number): { ms: number; sum: number } {
  let sum = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) sum = (sum + fn.mmioRead(0, 0x04, 4)) | 0;
  const ms = performance.now() - t0;
  if (sum !== Math.imul(n, 0xedcb_a987 | 0)) throw new Error(`pci.mmio.direct read a wrong value (sum ${sum})`);
  return { ms, sum };
}

/** The test device with MSI-X enabled and vector 0 unmasked, counting messages in a sink. */
function msixWorld(): { fn: PciFunction; count: () => number } {
  const sim = new Simulator();
  const dev = new TestDevice(sim);
  let n = 0;
  const sink: MsiSink = {
    msi: () => {
      n++;
    },
  };
  const fn = dev.fn;
  fn.attach({ requesterId: 0x20, dma: new IdentityDmaPort(new PhysicalMemory(1 << 20)), msi: sink });
  fn.configWrite(0x04, 2, 0x0006);
  fn.mmioWrite(2, 0x00, 4, 0xfee0_0000);
  fn.mmioWrite(2, 0x08, 4, 0x41);
  fn.mmioWrite(2, 0x0c, 4, 0);
  fn.configWrite((fn.caps['MSI-X'] as number) + 2, 2, 0x8000);
  return { fn, count: () => n };
}

/** `n` MSI-X notifications of vector 0; ms taken. */
export function msixNotifyDirect(w: { fn: PciFunction; count: () => number }, n: number): number {
  const msix = w.fn.msix;
  if (msix === undefined) throw new Error('the test device has MSI-X');
  const before = w.count();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) msix.notify(0);
  const ms = performance.now() - t0;
  if (w.count() - before !== n) throw new Error(`pci.msix.notify.direct delivered ${w.count() - before} of ${n}`);
  return ms;
}

const mmio: BenchmarkDef = {
  name: 'pci.mmio.direct',
  unit: 'M/s',
  description: `${READS} reads of edu's liveness register through PciFunction.mmioRead (BAR checks, register dispatch)`,
  prepare() {
    const fn = eduWorld();
    mmioDirect(fn, 2_000_000);
    return (): RunResult => {
      const r = mmioDirect(fn, READS);
      return { value: READS / r.ms / 1000, ms: r.ms, extra: { reads: READS } };
    };
  },
};

const msixNotify: BenchmarkDef = {
  name: 'pci.msix.notify.direct',
  unit: 'M/s',
  description: `${NOTIFIES} MSI-X notifications of an unmasked vector through the bus-master gate to an MsiSink`,
  prepare() {
    const w = msixWorld();
    msixNotifyDirect(w, 1_000_000);
    return (): RunResult => {
      const ms = msixNotifyDirect(w, NOTIFIES);
      return { value: NOTIFIES / ms / 1000, ms, extra: { notifications: NOTIFIES } };
    };
  },
};

/** A machine with one edu at 00:03.0 (memory decode on, as firmware leaves it); returns it and BAR0's address. */
function machineWorld(): { m: Machine; addr: number } {
  const m = createMachine({ memory: { size: '16MiB' }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } });
  const bar = m.pci.bars.find((b) => b.bdf === 0x18 && b.bar === 0);
  if (bar === undefined) throw new Error('pci.mmio: edu BAR0 was not assigned');
  m.mmio.write32(bar.base + 0x04, 0x1234_5678);
  return { m, addr: bar.base + 0x04 };
}

/** `n` reads of edu's liveness register through the machine's MMIO routing; ms taken. */
export function mmioMachine(w: { m: Machine; addr: number }, n: number): number {
  const mmio = w.m.mmio;
  const addr = w.addr;
  let sum = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) sum = (sum + mmio.read32(addr)) | 0;
  const ms = performance.now() - t0;
  if (sum !== Math.imul(n, 0xedcb_a987 | 0)) throw new Error(`pci.mmio read a wrong value (sum ${sum})`);
  return ms;
}

const mmioRouted: BenchmarkDef = {
  name: 'pci.mmio',
  unit: 'M/s',
  target: 60,
  description: `${READS} reads of edu's liveness register through machine.mmio.read32 (window lookup, BAR checks, register dispatch)`,
  prepare() {
    const w = machineWorld();
    mmioMachine(w, 2_000_000);
    return (): RunResult => {
      const ms = mmioMachine(w, READS);
      return { value: READS / ms / 1000, ms, extra: { reads: READS } };
    };
  },
};

registerBenchmarks(mmioRouted, mmio, msixNotify);
