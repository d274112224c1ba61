import { describe, expect, it } from 'vitest';
import { createMachine, type MachineConfigInput } from '../machine/index.ts';
import { APEX, APEX_BAR0_SIZE, APEX_BAR2_SIZE, APEX_OFFSET, ApexDevice, ApexIrq, type ApexRegName } from '../device-models/index.ts';

/**
 * The Apex as a machine device: `{ type: 'apex', bdf }` in the configuration, a PCI Express endpoint in the
 * topology, its 64-bit prefetchable BARs placed above 4 GiB by firmware, CSRs reached through
 * `machine.mmio`, and an MSI-X message reaching the interrupt controller.
 */

const APEX_BDF = 0x0100; // 01:00.0, below the root port 00:1c.0
const off = (n: ApexRegName) => APEX_OFFSET[APEX[n]] as number;
const VECTOR = 0x50;

function board(extra: MachineConfigInput = {}) {
  const m = createMachine({
    memory: { size: '64MiB', placement: 'sequential' },
    pci: {
      bridges: [{ kind: 'root-port', bdf: '00:1c.0', secondaryBus: 1 }],
      devices: [{ type: 'apex', bdf: '01:00.0' }],
    },
    ...extra,
  });
  const bar2 = m.pci.bars.find((b) => b.bdf === APEX_BDF && b.bar === 2);
  if (bar2 === undefined) throw new Error('BAR2 not assigned');
  const base = bar2.base;
  return { m, bar2, base, r64: (o: number) => m.mmio.read64(base + o), w64: (o: number, v: bigint) => m.mmio.write64(base + o, v), r32: (o: number) => m.mmio.read32(base + o), w32: (o: number, v: number) => m.mmio.write32(base + o, v) };
}

describe('machine: the Apex', () => {
  it('probes as 1ac1:089a through configuration space, a PCIe endpoint below its root port', () => {
    const { m } = board();
    expect(m.pci.configRead(APEX_BDF, 0x00, 4)).toBe(0x089a_1ac1);
    expect(m.pci.configRead(APEX_BDF, 0x08, 4) >>> 8).toBe(0x0000ff);
    const slot = m.pci.find('01:00.0');
    expect(slot?.type).toBe('apex');
    expect(slot?.device).toBeInstanceOf(ApexDevice);
    expect(m.pci.apex('01:00.0')).toBe(slot?.device);
    expect(m.isolationGraph().nodes.find((n) => n.bdf === APEX_BDF)?.kind).toBe('endpoint');
    // On the root bus it is a root-complex integrated endpoint, as QEMU reports a PCIe device on pcie.0.
    const m0 = createMachine({ pci: { devices: [{ type: 'apex', bdf: '00:05.0' }] } });
    expect(m0.isolationGraph().nodes.find((n) => n.bdf === 0x28)?.kind).toBe('rc-endpoint');
    expect(() => m0.pci.apex('00:06.0')).toThrow(/no apex/);
  });

  it('has both 64-bit prefetchable BARs placed in the 64-bit window, with memory decode on', () => {
    const { m, bar2 } = board();
    const bars = m.pci.bars.filter((b) => b.bdf === APEX_BDF);
    expect(bars.map((b) => [b.bar, b.kind, b.prefetchable, b.size])).toEqual([
      [0, 'mem64', true, APEX_BAR0_SIZE],
      [2, 'mem64', true, APEX_BAR2_SIZE],
    ]);
    for (const b of bars) {
      expect(b.base).toBeGreaterThanOrEqual(2 ** 32);
      expect(b.base % b.size).toBe(0);
      const lo = m.pci.configRead(APEX_BDF, 0x10 + 4 * b.bar, 4);
      const hi = m.pci.configRead(APEX_BDF, 0x14 + 4 * b.bar, 4);
      expect(hi * 2 ** 32 + ((lo & ~0xf) >>> 0)).toBe(b.base);
      expect(lo & 0xf).toBe(0xc);
    }
    expect(bar2.base).toBe(0x80_0000_0000);
    expect(m.pci.configRead(APEX_BDF, 0x04, 2) & 0x2).toBe(0x2);
  });

  it('reads and writes BAR2 CSRs through machine.mmio; BAR0 reads all-ones', () => {
    const { m, r64, w64, r32 } = board();
    expect(r64(off('PAGE_TABLE_SIZE'))).toBe(8192n);
    expect(r64(off('IQ_DESCRIPTOR_SIZE'))).toBe(16n);
    expect(r32(off('EFUSE_2'))).toBe(0x1ac1_089a);
    w64(off('EXTENDED_TABLE'), 6144n);
    expect(r64(off('EXTENDED_TABLE'))).toBe(6144n);
    w64(0x50000 + 8 * 5, 0x1234_5000n | 1n);
    expect(r64(0x50000 + 8 * 5)).toBe(0x1234_5001n);
    const bar0 = m.pci.bars.find((b) => b.bdf === APEX_BDF && b.bar === 0)?.base as number;
    expect(m.mmio.read32(bar0)).toBe(0xffff_ffff);
  });

  it('delivers an MSI-X message to the interrupt controller at the vector its table entry names', () => {
    const { m, r64, w64, w32 } = board();
    const got: number[] = [];
    m.intc.onVector(VECTOR, (v) => got.push(v));
    const fn = m.pci.apex(APEX_BDF).fn;
    const cap = fn.caps['MSI-X'] as number;
    m.pci.configWrite(APEX_BDF, 0x04, 2, m.pci.configRead(APEX_BDF, 0x04, 2) | 0x4);
    m.pci.configWrite(APEX_BDF, cap + 2, 2, 0x8000);
    // Entry 4 (SC_HOST_0's): address, data, unmask; SC_HOST_0 routed to entry 4 and enabled.
    const e = 0x46800 + 16 * ApexIrq.SC_HOST_0;
    w32(e, 0xfee0_0000);
    w32(e + 4, 0);
    w32(e + 8, VECTOR);
    w32(e + 12, 0);
    w64(off('SC_HOST_INTVECCTL'), BigInt(ApexIrq.SC_HOST_0));
    w64(off('SC_HOST_INT_CONTROL'), 1n);
    m.pci.apex(APEX_BDF).irq.raise(ApexIrq.SC_HOST_0);
    expect(got).toEqual([VECTOR]);
    expect(r64(off('SC_HOST_INT_STATUS'))).toBe(1n);
    w64(off('SC_HOST_INT_STATUS'), 0n);
    expect(r64(off('SC_HOST_INT_STATUS'))).toBe(0n);
    expect(m.intc.spurious).toBe(0);
  });

  it('rejects unknown apex options in the configuration', () => {
    expect(() => createMachine({ pci: { devices: [{ type: 'apex', bdf: '00:05.0', flr: true } as never] } })).toThrow();
  });
});
