import { describe, expect, it } from 'vitest';
import { Rng, type TraceRecord } from '../sim/index.ts';
import { createMachine, type Machine, type MachineConfigInput } from '../machine/index.ts';
import { DMA_DELAY_NS, DMA_START, FACTORIAL_NS } from '../device-models/index.ts';
import { IommuProt, REG, fmask } from '../iommu/index.ts';
import { VtdTestDriver } from './vtd-driver.ts';

/**
 * The machine's PCI side driven through `machine.mmio` on physical addresses: QEMU's edu spec steps with
 * and without the IOMMU, MSI delivery to the interrupt controller, the interrupt window on the DMA path,
 * Command gating, firmware's BAR assignment, and random MMIO.
 */

const EDU = 0x18; // 00:03.0
const VECTOR = 0x41;
const MSI_CAP = 0x40;

function board(extra: MachineConfigInput = {}, dmaMask?: string) {
  const m = createMachine({
    memory: { size: '64MiB', placement: 'sequential' },
    pci: { devices: [{ type: 'edu', bdf: '00:03.0', ...(dmaMask === undefined ? {} : { dmaMask }) }] },
    ...extra,
  });
  const bar = m.pci.bars.find((b) => b.bdf === EDU && b.bar === 0)?.base as number;
  const r32 = (off: number) => m.mmio.read32(bar + off);
  const w32 = (off: number, v: number) => m.mmio.write32(bar + off, v);
  const w64 = (off: number, v: bigint | number) => m.mmio.write64(bar + off, BigInt(v));
  const advance = (ns: number) => m.sim.runSync({ until: m.sim.now + ns });
  const vectors: number[] = [];
  m.intc.onVector(VECTOR, (v) => vectors.push(v));
  /** What a driver does: bus master on (firmware left memory decode on), MSI to vector 0x41 on APIC 0. */
  const enable = () => {
    m.pci.configWrite(EDU, 0x04, 2, m.pci.configRead(EDU, 0x04, 2) | 0x4);
    m.pci.configWrite(EDU, MSI_CAP + 4, 4, 0xfee0_0000);
    m.pci.configWrite(EDU, MSI_CAP + 8, 4, 0);
    m.pci.configWrite(EDU, MSI_CAP + 12, 2, VECTOR);
    m.pci.configWrite(EDU, MSI_CAP + 2, 2, 1);
  };
  return { m, bar, r32, w32, w64, advance, vectors, enable };
}

function records(m: Machine): TraceRecord[] {
  const out: TraceRecord[] = [];
  m.trace.subscribe((r) => out.push(r));
  return out;
}

/** Steps 2, 4, 5 and 6 of edu's programming sequence; returns the bytes edu wrote back. */
function eduSequence(b: ReturnType<typeof board>, src: number, dst: number, len: number, dstPhys = dst): Uint8Array {
  const { r32, w32, w64, advance, vectors } = b;
  expect(r32(0x00)).toBe(0x0100_00ed);
  w32(0x04, 0x1234_5678);
  expect(r32(0x04)).toBe(0xedcb_a987);
  w32(0x20, 0x80);
  w32(0x08, 5);
  expect(r32(0x20)).toBe(0x81);
  advance(FACTORIAL_NS);
  expect(r32(0x08)).toBe(120);
  expect(r32(0x24)).toBe(0x001);
  expect(vectors).toEqual([VECTOR]);
  w32(0x64, 0x001);
  w64(0x80, src);
  w64(0x88, DMA_START);
  w64(0x90, len);
  w64(0x98, 0x5);
  advance(DMA_DELAY_NS);
  expect(r32(0x24)).toBe(0x100);
  w32(0x64, 0x100);
  w64(0x80, DMA_START);
  w64(0x88, dst);
  w64(0x90, len);
  w64(0x98, 0x7);
  advance(DMA_DELAY_NS);
  expect(r32(0x24)).toBe(0x100);
  w32(0x64, 0x100);
  expect(vectors).toEqual([VECTOR, VECTOR, VECTOR]);
  const out = new Uint8Array(len);
  b.m.memory.read(dstPhys, out, 0, len);
  return out;
}

describe('edu through machine.mmio', () => {
  it('replays the spec without an IOMMU: identity DMA, MSI to the programmed vector', () => {
    const b = board();
    b.enable();
    const data = Uint8Array.from({ length: 256 }, (_, i) => (i * 7) & 0xff);
    b.m.memory.write(0x10_0000, data, 0, data.length);
    expect(eduSequence(b, 0x10_0000, 0x20_0000, data.length)).toEqual(data);
    expect(b.m.intc.delivered[VECTOR]).toBe(3);
    expect(b.m.intc.spurious).toBe(0);
  });

  it('replays the spec through the IOMMU; an unmapped IOVA faults, is recorded, and edu still completes', () => {
    const b = board({ iommu: { enabled: true, qiDescriptorNs: 0 } });
    const { m } = b;
    const unit = m.iommu;
    if (unit === undefined) throw new Error('expected an IOMMU');
    const base = m.config.iommu.base;
    const drv = new VtdTestDriver(unit, m.memory, m.frames, m.sim);
    drv.init();
    const dom = drv.domain();
    const srcPa = m.frames.alloc() * 4096;
    const dstPa = m.frames.alloc() * 4096;
    expect(dom.map(0x0100_0000, srcPa, 4096, IommuProt.READ)).toBe(4096);
    expect(dom.map(0x0100_1000, dstPa, 4096, IommuProt.READ | IommuProt.WRITE)).toBe(4096);
    drv.setContext(EDU, { did: 1, ptr: dom.root, aw: 2 });
    drv.invalidateAll();
    // The fault event goes through the same MsiSink: program it to vector 0x30 through the machine's MMIO.
    const faults: number[] = [];
    m.intc.onVector(0x30, (v) => faults.push(v));
    m.mmio.write32(base + REG.FEDATA, 0x30);
    m.mmio.write32(base + REG.FEADDR, 0xfee0_0000);
    m.mmio.write32(base + REG.FECTL, 0);
    drv.enableTranslation();
    expect(m.mmio.read32(base + REG.GSTS) & fmask('GSTS', 'TES')).not.toBe(0);
    b.enable();
    const data = Uint8Array.from({ length: 128 }, (_, i) => 255 - i);
    m.memory.write(srcPa, data, 0, data.length);
    expect(eduSequence(b, 0x0100_0000, 0x0100_1000, data.length, dstPa)).toEqual(data);

    // DMA from an unmapped IOVA: the IOMMU records a fault for 00:03.0; edu completes with zeros.
    b.w64(0x80, 0x0200_0000);
    b.w64(0x88, DMA_START);
    b.w64(0x90, 64);
    b.w64(0x98, 0x5);
    b.advance(DMA_DELAY_NS);
    expect(b.r32(0x24)).toBe(0x100);
    expect(m.mmio.read32(base + REG.FSTS) & fmask('FSTS', 'PPF')).not.toBe(0);
    const hi = m.mmio.read64(base + 0x228);
    expect(hi >> 63n).toBe(1n);
    expect(Number(hi & 0xffffn)).toBe(EDU);
    expect(Number((hi >> 32n) & 0xffn)).toBe(0x6); // read permission fault on a not-present entry
    expect(m.mmio.read64(base + 0x220) & ~0xfffn).toBe(0x0200_0000n);
    expect(faults).toEqual([0x30]);
    expect(b.vectors.length).toBe(4);
  });
});

describe('the DMA path and interrupts', () => {
  it('a DMA write into 0xFEE00000 is an MSI, never a memory write; a DMA read there is an Unsupported Request', () => {
    const b = board({ memory: { size: '64MiB' } }, '0xffffffff');
    b.enable();
    const { m } = b;
    const rec = records(m);
    m.memory.write32(0x10_0000, 0x0000_0052);
    m.intc.onVector(0x52, (v) => b.vectors.push(v));
    b.w64(0x80, 0x10_0000);
    b.w64(0x88, DMA_START);
    b.w64(0x90, 4);
    b.w64(0x98, 0x1);
    b.advance(DMA_DELAY_NS);
    b.w64(0x80, DMA_START);
    b.w64(0x88, 0xfee0_0000);
    b.w64(0x90, 4);
    b.w64(0x98, 0x3);
    b.advance(DMA_DELAY_NS);
    expect(b.vectors).toEqual([0x52]);
    expect(rec.some((r) => r.source === 'intc' && r.kind === 'msi' && r.fields['vector'] === 0x52 && r.fields['requester'] === EDU)).toBe(true);
    // A read of the window completes nothing.
    b.w64(0x80, 0xfee0_0000);
    b.w64(0x88, DMA_START);
    b.w64(0x98, 0x1);
    b.advance(DMA_DELAY_NS);
    expect(rec.some((r) => r.kind === 'dma.window-read')).toBe(true);
  });

  it('an unhandled vector is spurious and traced', () => {
    const b = board();
    const rec = records(b.m);
    b.m.rootComplex.msi(EDU, 0xfee0_1000, 0x99);
    expect(b.m.intc.spurious).toBe(1);
    expect(rec.find((r) => r.kind === 'spurious')?.fields).toMatchObject({ vector: 0x99, destination: 1 });
  });

  it('INTx: edu without MSI asserts its swizzled, shared line until acknowledged', () => {
    const b = board();
    const slot = b.m.pci.find('00:03.0');
    expect(slot?.intxLine).toBe(16 + ((3 + 0) % 4));
    expect(b.m.pci.configRead(EDU, 0x3c, 1)).toBe(slot?.intxLine);
    const levels: boolean[] = [];
    b.m.intc.onIntx(slot?.intxLine as number, (_l, level) => levels.push(level));
    b.w32(0x60, 0x8);
    expect(b.m.intc.intxLevel(19)).toBe(true);
    b.w32(0x64, 0x8);
    expect(levels).toEqual([true, false]);
  });

  it('Command gates MMIO (memory decode) and DMA (bus master) through the machine', () => {
    const b = board();
    const rec = records(b.m);
    expect(b.m.pci.configRead(EDU, 0x04, 2)).toBe(0x2); // firmware: memory decode on, bus master off
    expect(b.r32(0x00)).toBe(0x0100_00ed);
    b.m.memory.write32(0x10_0000, 0xabcd);
    b.w64(0x80, 0x10_0000);
    b.w64(0x88, DMA_START);
    b.w64(0x90, 4);
    b.w64(0x98, 0x1);
    b.advance(DMA_DELAY_NS);
    expect(b.m.pci.edu(EDU).dma.buffer[0]).toBe(0);
    expect(rec.some((r) => r.fields['what'] === 'dma-bus-master-off')).toBe(true);
    b.m.pci.configWrite(EDU, 0x04, 2, 0);
    expect(b.r32(0x00)).toBe(0xffff_ffff);
    expect(rec.some((r) => r.source === 'mmio' && r.fields['what'] === 'mmio-miss')).toBe(true);
    b.m.pci.configWrite(EDU, 0x04, 2, 0x6);
    expect(b.r32(0x00)).toBe(0x0100_00ed);
    // Moving the BAR moves the window.
    b.m.pci.configWrite(EDU, 0x10, 4, 0xd000_0000);
    expect(b.m.mmio.read32(0xd000_0000)).toBe(0x0100_00ed);
    expect(b.r32(0x00)).toBe(0xffff_ffff);
  });
});

describe('firmware BAR assignment', () => {
  it('sizes every BAR, aligns it naturally, largest first, 32-bit below 4 GiB and 64-bit above', () => {
    const m = createMachine({
      memory: { size: '16MiB' },
      pci: {
        devices: [
          { type: 'edu', bdf: '00:03.0' },
          { type: 'testdev', bdf: '00:04.0' },
          { type: 'edu', bdf: '00:05.0' },
          { type: 'testdev', bdf: '00:06.0' },
        ],
      },
    });
    const bars = m.pci.bars;
    expect(bars.length).toBe(2 + 4 * 2);
    for (const b of bars) {
      expect(b.base % b.size).toBe(0);
      if (b.kind === 'mem32') expect(b.base >= 0xc000_0000 && b.base + b.size <= 0xfec0_0000).toBe(true);
      if (b.kind === 'mem64') expect(b.base >= 2 ** 32).toBe(true);
      if (b.kind === 'io') expect(b.base >= 0xc000 && b.base < 0x1_0000).toBe(true);
    }
    const mem = bars.filter((b) => b.kind !== 'io').sort((a, b) => a.base - b.base);
    for (let i = 1; i < mem.length; i++) expect((mem[i - 1] as { base: number; size: number }).base + (mem[i - 1] as { size: number }).size <= (mem[i] as { base: number }).base).toBe(true);
    // Largest first within a window: edu's 1 MiB BARs come before the 4 KiB ones.
    const w32 = bars.filter((b) => b.kind === 'mem32').sort((a, b) => a.base - b.base).map((b) => b.size);
    expect(w32).toEqual([...w32].sort((a, b) => b - a));
    // The 8 GiB BAR4 of the first test device sits at the 64-bit window's start.
    expect(bars.find((b) => b.bdf === 0x20 && b.bar === 4)?.base).toBe(0x80_0000_0000);
    // Written through configuration space: BAR2 is 64-bit prefetchable, upper half in BAR3.
    const b2 = bars.find((b) => b.bdf === 0x20 && b.bar === 2);
    expect(m.pci.configRead(0x20, 0x18, 4)).toBe(((b2?.base as number) % 2 ** 32) | 0xc);
    expect(m.pci.configRead(0x20, 0x1c, 4)).toBe(Math.floor((b2?.base as number) / 2 ** 32));
    expect(m.pci.configRead(0x20, 0x04, 2) & 0x7).toBe(0x3);
    expect(m.mmio.read32((bars.find((b) => b.bdf === 0x28)?.base as number) + 0)).toBe(0x0100_00ed);
  });

  it('refuses a window too small for the BARs, and windows that overlap RAM', () => {
    expect(() => createMachine({ memory: { size: '16MiB' }, pci: { mmio32: { start: 0xc000_0000, size: 0x1000 }, devices: [{ type: 'edu', bdf: '00:03.0' }] } })).toThrow(/does not fit/);
    expect(() => createMachine({ memory: { size: '4GiB' }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } })).toThrow(/pci\.mmio32: overlaps RAM/);
    expect(() => createMachine({ pci: { devices: [{ type: 'edu', bdf: '00:03.0' }, { type: 'edu', bdf: '00:03.0' }] } })).toThrow(/already used/);
    expect(() => createMachine({ pci: { devices: [{ type: 'edu', bdf: '05:00.0' }] } })).toThrow(/bus 5/);
    expect(() => createMachine({ pci: { devices: [{ type: 'edu', bdf: '00:33.0' }] } })).toThrow(/past 31/);
  });
});

describe('topologies: the isolation graph and groups', () => {
  const groupsOf = (pci: MachineConfigInput['pci']) => {
    const m = createMachine({ memory: { size: '16MiB' }, pci });
    const g = m.groups();
    if (!g.ok) throw new Error(g.message);
    return { m, groups: g.groups.map((x) => x.members) };
  };

  it('multifunction without ACS shares a group; with ACS each function is alone', () => {
    const two = (acs: boolean) => ({ devices: [{ type: 'testdev' as const, bdf: '00:04.0', acs }, { type: 'testdev' as const, bdf: '00:04.1', acs }] });
    const without = groupsOf(two(false));
    expect(without.groups).toEqual([[0x20, 0x21]]);
    expect(without.m.isolationGraph().nodes.every((n) => n.multifunction === true)).toBe(true);
    expect(groupsOf(two(true)).groups).toEqual([[0x20], [0x21]]);
  });

  it('root ports isolate (ACS on by default); without ACS the port and what is below share a group', () => {
    const pci = (acs: boolean) => ({
      bridges: [
        { kind: 'root-port' as const, bdf: '00:1c.0', secondaryBus: 1, acs },
        { kind: 'root-port' as const, bdf: '00:1c.1', secondaryBus: 2, acs },
      ],
      devices: [{ type: 'testdev' as const, bdf: '01:00.0' }, { type: 'testdev' as const, bdf: '02:00.0' }],
    });
    const on = groupsOf(pci(true));
    expect(on.groups).toEqual([[0xe0], [0xe1], [0x100], [0x200]]);
    expect(on.m.pci.functions.map((f) => f.bdf)).toEqual([0x100, 0x200]);
    const off = groupsOf(pci(false));
    expect(off.groups).toEqual([[0xe0, 0xe1, 0x100, 0x200]]);
  });

  it('behind a PCIe-to-PCI bridge everything is one group and DMA carries the alias requester id', () => {
    const { m, groups } = groupsOf({
      bridges: [
        { kind: 'root-port', bdf: '00:1c.0', secondaryBus: 1 },
        { kind: 'pcie-to-pci-bridge', bdf: '01:00.0', secondaryBus: 2 },
      ],
      devices: [{ type: 'edu', bdf: '02:01.0' }, { type: 'edu', bdf: '02:02.0' }],
    });
    expect(groups).toEqual([[0xe0], [0x100, 0x208, 0x210]]);
    expect(m.pci.find('02:01.0')?.requesterId).toBe(0x200);
    // Swizzle: pin A of device 1 behind the bridge (device 0) behind the root port (device 0x1c).
    const line = m.pci.find('02:01.0')?.intxLine;
    expect(line).toBe(16 + ((0x1c + ((((1 - 1 + 1) % 4) + 1 - 1 + 0) % 4) + 1 - 1) % 4));
    // The message the function sends carries the alias too.
    const seen: number[] = [];
    m.intc.onVector(0x60, (_v, _d, rid) => seen.push(rid));
    m.pci.configWrite(0x208, 0x04, 2, 0x6);
    m.pci.configWrite(0x208, MSI_CAP + 4, 4, 0xfee0_0000);
    m.pci.configWrite(0x208, MSI_CAP + 12, 2, 0x60);
    m.pci.configWrite(0x208, MSI_CAP + 2, 2, 1);
    m.pci.edu('02:01.0').raise(1);
    expect(seen).toEqual([0x200]);
  });
});

describe('random MMIO', () => {
  it('never throws anywhere in the address space (seed 7)', () => {
    const m = createMachine({
      memory: { size: '16MiB' },
      iommu: { enabled: true },
      pci: { devices: [{ type: 'edu', bdf: '00:03.0' }, { type: 'testdev', bdf: '00:04.0' }] },
    });
    const rng = new Rng(7);
    const hot = [...m.mmio.windows.map((w) => w.start), 0xfed9_0000, 0, 0xfee0_0000];
    const addr = (): number => {
      const k = rng.u32() % 4;
      if (k === 0) return (rng.u32() % 2 ** 20) * 2 ** 32 + rng.u32();
      if (k === 1) return rng.u32();
      return (hot[rng.u32() % hot.length] as number) + (rng.u32() % 0x2000);
    };
    for (let i = 0; i < 20_000; i++) {
      const a = addr();
      const v = rng.u32();
      switch (rng.u32() % 8) {
        case 0: m.mmio.read8(a); break;
        case 1: m.mmio.read16(a); break;
        case 2: m.mmio.read32(a); break;
        case 3: m.mmio.read64(a); break;
        case 4: m.mmio.write8(a, v & 0xff); break;
        case 5: m.mmio.write32(a, v); break;
        case 6: m.mmio.write64(a, (BigInt(v) << 32n) | BigInt(rng.u32())); break;
        default: m.pci.configWrite(rng.u32() % 2 === 0 ? 0x18 : 0x20, rng.u32() % 0x100 & ~3, 4, v);
      }
      if (i % 1000 === 0) m.sim.runSync({ until: m.sim.now + 1000 });
    }
    expect(m.mmio.read32(Number.NaN)).toBe(0xffff_ffff);
    expect(m.mmio.read32(-4)).toBe(0xffff_ffff);
    expect(m.mmio.read32(2 ** 60)).toBe(0xffff_ffff);
  });
});
