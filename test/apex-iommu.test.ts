import { describe, expect, it } from 'vitest';
import { REG } from '../iommu/vtd/index.ts';
import { APEX, APEX_COMMAND_SIZE, APEX_OFFSET, ApexDevice, ApexIrq, ApexOp, type ApexRegName } from '../device-models/apex/index.ts';
import { makeRig, type RecordingMsi } from './vtd-driver.ts';

/**
 * The Apex behind a VT-d unit: page-table entries hold IOVAs, the extended level-1 subtable is read by DMA
 * through the IOMMU, and an IOMMU fault on any of the device's accesses becomes an AXI error in the HIB.
 */

const RID = 0x0100;
const off = (n: ApexRegName) => APEX_OFFSET[APEX[n]] as number;
const IOVA = 0x4000_0000;
const PHYS = 0x100_0000;

function board() {
  const r = makeRig();
  r.drv.init();
  const dom = r.drv.domain();
  const apex = new ApexDevice(r.sched);
  const msi: RecordingMsi = r.msi;
  apex.fn.attach({ requesterId: RID, dma: r.port, msi });
  r.drv.setContext(RID, { did: 1, ptr: dom.root });
  r.drv.enableTranslation();
  const fn = apex.fn;
  fn.configWrite(0x04, 2, 0x0006);
  const w64 = (o: number, v: bigint | number) => fn.mmioWrite64(2, o, BigInt(v));
  const r64 = (o: number) => fn.mmioRead64(2, o);
  /** IOVA page k -> PHYS page k, with `prot` (1 read, 2 write, 3 both). */
  const map = (k: number, prot = 3) => expect(dom.map(IOVA + k * 4096, PHYS + k * 4096, 4096, prot)).toBe(4096);
  // Extended only: slot 0 is level-0 index 0; its subtable is IOVA page 0, read-only to the device.
  w64(off('EXTENDED_TABLE'), 0);
  map(0, 1);
  w64(0x50000, BigInt(IOVA) | 1n);
  /** Level-1 entry l -> IOVA page k (device address 1 << 63 | l << 12). */
  const l1 = (l: number, k: number) => r.mem.write64(PHYS + 8 * l, BigInt(IOVA + k * 4096) | 1n);
  const dev = (l: number) => (1n << 63n) | BigInt(l << 12);
  // Ring (l1 1 -> page 1), status block (2 -> 2), command buffer (3 -> 3).
  for (const k of [1, 2, 3]) {
    map(k);
    l1(k, k);
  }
  w64(off('IQ_BASE'), dev(1));
  w64(off('IQ_STATUS_BLOCK_BASE'), dev(2));
  w64(off('IQ_SIZE'), 16);
  w64(off('IQ_CONTROL'), 0b101);
  w64(off('FATAL_ERR_INT_CONTROL'), 1);
  const run = (cmd: { op: number; len: number; a?: bigint; c?: bigint; pattern?: number }) => {
    const o = PHYS + 3 * 4096;
    r.mem.write32(o, cmd.op);
    r.mem.write32(o + 4, cmd.len);
    r.mem.write64(o + 8, cmd.a ?? 0n);
    r.mem.write64(o + 24, cmd.c ?? 0n);
    r.mem.write32(o + 32, cmd.pattern ?? 0);
    r.mem.write64(PHYS + 4096, dev(3));
    r.mem.write32(PHYS + 4096 + 8, APEX_COMMAND_SIZE);
    w64(off('IQ_TAIL'), 1);
    r.sched.runSync({ until: r.sched.now + 100_000 });
  };
  return { r, apex, dom, map, l1, dev, w64, r64, run };
}

describe('Apex behind VT-d', () => {
  it('runs an extended FILL whose every access (descriptor, subtable, buffer, data) is translated', () => {
    const b = board();
    b.map(10);
    b.l1(10, 10);
    b.run({ op: ApexOp.FILL, len: 64, c: b.dev(10), pattern: 0xa5a5_0001 });
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(0n);
    expect(b.r.mem.read32(PHYS + 10 * 4096 + 60)).toBe(0xa5a5_0001);
    expect(b.r.mem.read32(PHYS + 2 * 4096)).toBe(1);
    expect(b.r.unit.read32(REG.FSTS)).toBe(0);
  });

  it('an unmapped data page: the IOMMU records the fault, the HIB an AXI write error at the device address', () => {
    const b = board();
    b.l1(11, 11);
    b.run({ op: ApexOp.FILL, len: 8, c: b.dev(11) | 0x40n });
    expect(b.r.unit.read32(REG.FSTS) & 2).toBe(2);
    expect(Number((b.r.unit.read64(REG.FRCD_HI) >> 32n) & 0xffn)).not.toBe(0);
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(1n << 3n);
    expect(b.r64(off('PAGE_FAULT_ADDRESS'))).toBe(b.dev(11) | 0x40n);
    expect(b.apex.irq.raised[ApexIrq.FATAL_ERR]).toBe(1);
    expect(b.r64(off('IQ_STATUS')) & 2n).toBe(2n);
  });

  it('the subtable is read through the IOMMU: once its IOVA is unmapped and invalidated, an AXI read error', () => {
    const b = board();
    b.map(12);
    b.l1(12, 12);
    // A COPY within the mapped page works; then the subtable's IOVA is unmapped and invalidated, as the
    // kernel would (without the invalidation the unit's IOTLB could still translate it).
    b.run({ op: ApexOp.COPY, len: 16, a: b.dev(12), c: b.dev(12) | 0x100n });
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(0n);
    expect(b.dom.unmap(IOVA, 4096, null)).toBe(4096);
    expect(b.r.drv.invalidateAll()).toBe(true);
    b.r.mem.write64(PHYS + 4096 + 16, b.dev(3));
    b.r.mem.write32(PHYS + 4096 + 24, APEX_COMMAND_SIZE);
    b.w64(off('IQ_TAIL'), 2);
    b.r.sched.runSync({ until: b.r.sched.now + 100_000 });
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(1n << 4n);
  });
});
