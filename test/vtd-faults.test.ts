import { describe, expect, it } from 'vitest';
import { DmaStatus, createDmaResult } from '../sim/index.ts';
import { FaultReason, REG, fmask, faultReasonText } from '../iommu/vtd/index.ts';
import { makeRig, type VtdRig } from './vtd-driver.ts';

const RID = 0x0100;
const IOVA = 0x40_0000;
const PHYS = 0x100_0000;

/** A rig with rid 0x0100 in domain 1: 0x40_0000 -> 0x100_0000 read-write, 0x40_1000 read-only, 0x40_2000 write-only. */
function rig(opts: Parameters<typeof makeRig>[0] = {}): VtdRig & { ptr: number } {
  const r = makeRig(opts);
  r.drv.init();
  const dom = r.drv.domain();
  expect(dom.map(IOVA, PHYS, 0x1000, 3)).toBe(0x1000);
  expect(dom.map(IOVA + 0x1000, PHYS + 0x1000, 0x1000, 1)).toBe(0x1000);
  expect(dom.map(IOVA + 0x2000, PHYS + 0x2000, 0x1000, 2)).toBe(0x1000);
  r.drv.setContext(RID, { did: 1, ptr: dom.root });
  r.drv.enableTranslation();
  return Object.assign(r, { ptr: dom.root });
}

function frcd(r: VtdRig, n: number): { fi: bigint; sid: number; fr: number; t: number; f: number } {
  const lo = r.unit.read64(REG.FRCD_LO + 16 * n);
  const hi = r.unit.read64(REG.FRCD_HI + 16 * n);
  return { fi: lo, sid: Number(hi & 0xffffn), fr: Number((hi >> 32n) & 0xffn), t: Number((hi >> 62n) & 1n), f: Number(hi >> 63n) };
}

function expectFault(r: VtdRig, reason: number, write: boolean, iova: number, rid = RID): void {
  const st = write ? r.write32(rid, iova, 1) : (r.read32(rid, iova), r.res.status);
  expect(st).toBe(DmaStatus.FAULT);
  expect(r.res.faultReason).toBe(reason);
  expect(r.res.faultAddr).toBe(iova);
  expect(r.res.bytesDone).toBe(0);
  const rec = frcd(r, 0);
  expect(rec).toEqual({ fi: BigInt(iova - (iova % 4096)), sid: rid, fr: reason, t: write ? 0 : 1, f: 1 });
  expect(r.unit.read32(REG.FSTS) & fmask('FSTS', 'PPF')).not.toBe(0);
}

describe('VT-d fault reasons', () => {
  it('translates a mapped page', () => {
    const r = rig();
    r.mem.write32(PHYS + 8, 0x1234_5678);
    expect(r.read32(RID, IOVA + 8)).toBe(0x1234_5678);
    expect(r.write32(RID, IOVA + 12, 7)).toBe(DmaStatus.OK);
    expect(r.mem.read32(PHYS + 12)).toBe(7);
    expect(r.unit.read32(REG.FSTS)).toBe(0);
  });

  it('0x1 root entry not present', () => {
    const r = rig();
    expectFault(r, FaultReason.ROOT_ENTRY_P, false, IOVA, 0x0208);
  });

  it('0x2 context entry not present', () => {
    const r = rig();
    expectFault(r, FaultReason.CONTEXT_ENTRY_P, true, IOVA, 0x0108);
  });

  it('0x3 invalid context entry: unsupported AW, device-IOTLB TT, unreadable table pointer', () => {
    const r = rig();
    r.drv.setContext(0x0101, { did: 2, ptr: r.ptr, aw: 3 });
    expectFault(r, FaultReason.CONTEXT_ENTRY_INV, false, IOVA, 0x0101);
    const r2 = rig();
    r2.drv.setContext(0x0102, { did: 2, ptr: r2.ptr, tt: 1 });
    expectFault(r2, FaultReason.CONTEXT_ENTRY_INV, false, IOVA, 0x0102);
    const r3 = rig();
    r3.drv.setContext(0x0103, { did: 2, ptr: r3.mem.size });
    expectFault(r3, FaultReason.CONTEXT_ENTRY_INV, false, IOVA, 0x0103);
  });

  it('0x4 address beyond the domain width or MGAW', () => {
    const r = rig();
    expectFault(r, FaultReason.ADDR_BEYOND_MGAW, false, 2 ** 48);
    const r2 = rig();
    r2.drv.setContext(0x0104, { did: 3, ptr: r2.drv.domain(3).root, aw: 1 });
    expectFault(r2, FaultReason.ADDR_BEYOND_MGAW, true, 2 ** 39, 0x0104);
    const r3 = rig({ addressWidth: 39 });
    expectFault(r3, FaultReason.CONTEXT_ENTRY_INV, false, IOVA);
  });

  it('0x4 for a wide address, recording the exact value', () => {
    const r = rig();
    const res = createDmaResult();
    const wide = (1n << 60n) + 0x1234_5678_9000n + 0xabcn;
    r.port.writeWide(RID, wide, new Uint8Array(8), 0, 8, res);
    expect(res).toMatchObject({ status: DmaStatus.FAULT, faultReason: 4, faultAddrWide: wide, faultAddr: -1, bytesDone: 0 });
    expect(frcd(r, 0)).toEqual({ fi: wide & ~0xfffn, sid: RID, fr: 4, t: 0, f: 1 });
    // 2^64 - 1: still one defined outcome.
    r.port.readWide(RID, (1n << 64n) - 1n, new Uint8Array(8), 0, 8, res);
    expect(res.faultReason).toBe(4);
  });

  it('0x5 write without write permission, a not-present entry included', () => {
    expectFault(rig(), FaultReason.WRITE, true, IOVA + 0x1000);
    expectFault(rig(), FaultReason.WRITE, true, IOVA + 0x5000);
  });

  it('0x6 read without read permission, a not-present entry included', () => {
    expectFault(rig(), FaultReason.READ, false, IOVA + 0x2000);
    expectFault(rig(), FaultReason.READ, false, 0x7000_0000);
  });

  it('0x7 next-level pointer beyond memory', () => {
    const r = rig();
    // L4[1] -> a table beyond memory, granting RW.
    r.mem.write64(r.ptr + 8, BigInt(r.mem.size) | 3n);
    expectFault(r, FaultReason.PAGING_ENTRY_INV, false, 2 ** 39);
  });

  it('0x8 root table address beyond memory', () => {
    const r = rig();
    r.unit.write64(REG.RTADDR, BigInt(r.mem.size));
    r.drv.gcmd(fmask('GCMD', 'SRTP'));
    expectFault(r, FaultReason.ROOT_TABLE_INV, false, IOVA);
    const r2 = rig();
    r2.unit.write64(REG.RTADDR, 1n << 50n);
    r2.drv.gcmd(fmask('GCMD', 'SRTP'));
    expectFault(r2, FaultReason.ROOT_TABLE_INV, true, IOVA);
  });

  it('0x9 context-table pointer beyond memory', () => {
    const r = rig();
    r.mem.write64(r.drv.rootTable + 5 * 16, BigInt(r.mem.size) | 1n);
    expectFault(r, FaultReason.CONTEXT_TABLE_INV, false, IOVA, 0x0500);
  });

  it('0xa reserved bits in a present root entry', () => {
    const r = rig();
    r.mem.write64(r.drv.rootTable + 6 * 16, 0x8000n | 3n);
    expectFault(r, FaultReason.ROOT_ENTRY_RSVD, false, IOVA, 0x0600);
    const r2 = rig();
    r2.mem.write64(r2.drv.rootTable + 6 * 16 + 8, 1n);
    r2.mem.write64(r2.drv.rootTable + 6 * 16, 0x8000n | 1n);
    expectFault(r2, FaultReason.ROOT_ENTRY_RSVD, false, IOVA, 0x0600);
  });

  it('0xb reserved bits in a present context entry', () => {
    const r = rig();
    r.drv.writeContextRaw(0x0110, BigInt(r.ptr) | 0x10n | 1n, 2n | (1n << 8n));
    expectFault(r, FaultReason.CONTEXT_ENTRY_RSVD, false, IOVA, 0x0110);
    const r2 = rig();
    r2.drv.writeContextRaw(0x0111, BigInt(r2.ptr) | 1n, 2n | (1n << 8n) | (1n << 40n));
    expectFault(r2, FaultReason.CONTEXT_ENTRY_RSVD, false, IOVA, 0x0111);
  });

  it('0xc reserved bits in a present page-table entry', () => {
    const r = rig();
    const leaf = r.unit.explain(RID, IOVA).steps.at(-1);
    expect(leaf?.entry).toBe('pte');
    r.mem.write64(leaf?.addr ?? 0, BigInt(PHYS) | 3n | (1n << 62n));
    expectFault(r, FaultReason.PAGING_ENTRY_RSVD, false, IOVA);
    const r2 = rig();
    // A PS bit in a level-4 entry is reserved.
    r2.mem.write64(r2.ptr, r2.mem.read64(r2.ptr) | 0x80n);
    expectFault(r2, FaultReason.PAGING_ENTRY_RSVD, false, IOVA);
  });

  it('every reason has Linux text', () => {
    expect(faultReasonText(5)).toBe('PTE Write access is not set');
    expect(faultReasonText(0x40)).toBe('Unknown');
  });
});

describe('VT-d fault recording', () => {
  it('fills the recording registers round-robin, then sets PFO and drops faults', () => {
    const r = rig({ faultRecords: 2 });
    expect(r.read32(RID, 0x7000_0000)).toBe(-1);
    expect(r.write32(RID, IOVA + 0x1000, 1)).toBe(DmaStatus.FAULT);
    expect(r.unit.read32(REG.FSTS) & fmask('FSTS', 'PFO')).toBe(0);
    expect(r.read32(RID, 0x7100_0000)).toBe(-1);
    const fsts = r.unit.read32(REG.FSTS);
    expect(fsts & fmask('FSTS', 'PFO')).not.toBe(0);
    expect((fsts >>> 8) & 0xff).toBe(0); // FRI: the first pending record
    expect(frcd(r, 0).fr).toBe(6);
    expect(frcd(r, 1)).toMatchObject({ fr: 5, t: 0, f: 1 });
    // The access still reports its fault.
    expect(r.res.faultReason).toBe(6);
    const stats = r.sched.stats.snapshot().iommu;
    expect(stats?.faults).toBe(3);
    expect(stats?.['faults.recorded']).toBe(2);
    // Software clears F in both and PFO: recording resumes at the next index (0).
    r.unit.write32(REG.FRCD_HI + 4, 0x8000_0000);
    r.unit.write32(REG.FRCD_HI + 16 + 4, 0x8000_0000);
    expect(r.unit.read32(REG.FSTS) & fmask('FSTS', 'PPF')).toBe(0);
    r.unit.write32(REG.FSTS, fmask('FSTS', 'PFO'));
    expect(r.unit.read32(REG.FSTS)).toBe(0);
    expect(r.read32(RID, 0x7200_0000)).toBe(-1);
    expect(frcd(r, 0)).toMatchObject({ fi: 0x7200_0000n, fr: 6, f: 1 });
  });

  it('FPD suppresses qualified faults but not the DMA error', () => {
    const r = rig();
    r.drv.setContext(0x0120, { did: 1, ptr: r.ptr, fpd: true });
    expect(r.read32(0x0120, 0x7000_0000)).toBe(-1);
    expect(r.res.faultReason).toBe(6);
    expect(r.unit.read32(REG.FSTS)).toBe(0);
    // A not-present context entry with FPD set suppresses reason 2 as well.
    r.drv.setContext(0x0121, { did: 1, fpd: true, present: false });
    expect(r.read32(0x0121, IOVA)).toBe(-1);
    expect(r.res.faultReason).toBe(2);
    expect(r.unit.read32(REG.FSTS)).toBe(0);
  });

  it('raises the fault event through FEADDR/FEDATA once per pending condition', () => {
    const r = rig();
    r.unit.write32(REG.FEDATA, 0x41);
    r.unit.write32(REG.FEADDR, 0xfee0_1000);
    r.unit.write32(REG.FECTL, 0);
    expect(r.read32(RID, 0x7000_0000)).toBe(-1);
    expect(r.msi.got).toEqual([{ requester: 0, address: 0xfee0_1000, data: 0x41 }]);
    expect(r.unit.read32(REG.FECTL) & fmask('FECTL', 'IP')).toBe(0);
    // A second fault while PPF is still set raises nothing.
    expect(r.read32(RID, 0x7100_0000)).toBe(-1);
    expect(r.msi.got.length).toBe(1);
    // Software services both records; the next fault interrupts again.
    r.unit.write32(REG.FRCD_HI + 4, 0x8000_0000);
    r.unit.write32(REG.FRCD_HI + 16 + 4, 0x8000_0000);
    expect(r.read32(RID, 0x7200_0000)).toBe(-1);
    expect(r.msi.got.length).toBe(2);
  });

  it('masked: IP stays set and the event is delivered on unmask', () => {
    const r = rig();
    r.unit.write32(REG.FEDATA, 0x42);
    r.unit.write32(REG.FEADDR, 0xfee0_0000);
    expect(r.unit.read32(REG.FECTL)).toBe(0x8000_0000); // IM set at reset
    expect(r.read32(RID, 0x7000_0000)).toBe(-1);
    expect(r.msi.got).toEqual([]);
    expect(r.unit.read32(REG.FECTL)).toBe(0xc000_0000);
    r.unit.write32(REG.FECTL, 0);
    expect(r.msi.got).toEqual([{ requester: 0, address: 0xfee0_0000, data: 0x42 }]);
    expect(r.unit.read32(REG.FECTL)).toBe(0);
  });

  it('masked, then serviced before unmask: clearing the status clears IP and nothing is delivered', () => {
    const r = rig();
    r.unit.write32(REG.FEADDR, 0xfee0_0000);
    expect(r.read32(RID, 0x7000_0000)).toBe(-1);
    r.unit.write32(REG.FRCD_HI + 4, 0x8000_0000);
    r.unit.write32(REG.FSTS, 0xffff_ffff);
    expect(r.unit.read32(REG.FECTL)).toBe(0x8000_0000);
    r.unit.write32(REG.FECTL, 0);
    expect(r.msi.got).toEqual([]);
  });

  it('an event address outside the interrupt window is dropped as a guest error', () => {
    const r = rig();
    r.unit.write32(REG.FEADDR, 0x1000);
    r.unit.write32(REG.FECTL, 0);
    expect(r.read32(RID, 0x7000_0000)).toBe(-1);
    expect(r.msi.got).toEqual([]);
    expect(r.sched.stats.snapshot().iommu?.['guest-errors']).toBe(1);
  });

  it('disabling translation passes DMA through and restarts the record index', () => {
    const r = rig();
    expect(r.read32(RID, 0x7000_0000)).toBe(-1);
    r.drv.enableTranslation(false);
    r.mem.write32(0x7000_0000 % r.mem.size, 5);
    expect(r.read32(RID, 0x7000_0000 % r.mem.size)).toBe(5);
  });

  it('bytesDone counts the pages before the first failing one', () => {
    const r = rig();
    const res = createDmaResult();
    // 0x40_0000 (RW) and 0x40_1000 (R only): a write across them stops at the second page.
    r.port.write(RID, IOVA + 0xff0, new Uint8Array(0x20), 0, 0x20, res);
    expect(res).toMatchObject({ status: DmaStatus.FAULT, bytesDone: 0x10, faultAddr: IOVA + 0x1000, faultReason: 5 });
    // A read across RW, R and W-only pages stops at the third.
    r.port.read(RID, IOVA + 0x800, new Uint8Array(0x1000 * 2), 0, 0x1000 * 2, res);
    expect(res).toMatchObject({ status: DmaStatus.FAULT, bytesDone: 0x1800, faultAddr: IOVA + 0x2000, faultReason: 6 });
  });

  it('a translation to a page beyond memory is the completer error, reported at the IOVA', () => {
    const r = rig();
    const dom = r.drv.domain();
    expect(dom.map(0x1000_0000, r.mem.size - 0x1000, 0x2000, 3)).toBe(0x2000);
    r.drv.setContext(0x0130, { did: 9, ptr: dom.root });
    const res = createDmaResult();
    r.port.read(0x0130, 0x1000_0f00, new Uint8Array(0x200), 0, 0x200, res);
    expect(res).toMatchObject({ status: DmaStatus.UNSUPPORTED, bytesDone: 0x100, faultAddr: 0x1000_1000 });
  });
});
