import { describe, expect, it } from 'vitest';
import { DmaStatus } from '../sim/index.ts';
import { REG, fmask } from '../iommu/vtd/index.ts';
import { Desc, makeRig, type VtdRig } from './vtd-driver.ts';

const RID = 0x0100;
const IOVA = 0x40_0000;
const PHYS = 0x100_0000;

function rig(opts: Parameters<typeof makeRig>[0] = {}): VtdRig & { unmap(iova: number): void } {
  const r = makeRig(opts);
  r.drv.init();
  const dom = r.drv.domain();
  expect(dom.map(IOVA, PHYS, 0x4000, 3)).toBe(0x4000);
  r.drv.setContext(RID, { did: 1, ptr: dom.root });
  r.drv.enableTranslation();
  return Object.assign(r, {
    unmap(iova: number) {
      expect(dom.unmap(iova, 0x1000, null)).toBe(0x1000);
    },
  });
}

const IQE = fmask('FSTS', 'IQE');

describe('VT-d queued invalidation', () => {
  it('GSTS reflects QIE; the queue registers read back', () => {
    const r = rig();
    expect(r.unit.read32(REG.GSTS) & fmask('GSTS', 'QIES')).not.toBe(0);
    expect(r.unit.read64(REG.IQA)).toBe(BigInt(r.drv.iq));
    expect(r.unit.read64(REG.IQH)).toBe(0n);
  });

  it('processes descriptors on scheduled events, one per qiDescriptorNs', () => {
    const r = rig({ qiDescriptorNs: 100 });
    r.drv.post(Desc.iotlb(1), Desc.wait({ sw: true, data: 7, addr: r.drv.statusAddr }));
    expect(r.unit.read64(REG.IQH)).toBe(0n);
    expect(r.unit.queueBusy).toBe(true);
    r.sched.runSync({ until: 100 });
    expect(r.unit.read64(REG.IQH)).toBe(1n << 4n);
    expect(r.mem.read32(r.drv.statusAddr)).toBe(0);
    r.sched.runSync({ until: 200 });
    expect(r.unit.read64(REG.IQH)).toBe(2n << 4n);
    expect(r.mem.read32(r.drv.statusAddr)).toBe(7);
    expect(r.unit.queueBusy).toBe(false);
  });

  it('qiDescriptorNs 0 processes synchronously at the IQT write', () => {
    const r = rig({ qiDescriptorNs: 0 });
    r.drv.post(Desc.wait({ sw: true, data: 9, addr: r.drv.statusAddr }));
    expect(r.mem.read32(r.drv.statusAddr)).toBe(9);
    expect(r.unit.read64(REG.IQH)).toBe(1n << 4n);
  });

  it('page-selective IOTLB invalidation drops exactly the pages in range', () => {
    const r = rig();
    for (let p = 0; p < 4; p++) expect(r.read32(RID, IOVA + p * 0x1000)).toBe(0);
    expect(r.unit.iotlb.size).toBe(4);
    r.unmap(IOVA + 0x1000);
    // Stale until invalidated.
    expect(r.read32(RID, IOVA + 0x1000)).toBe(0);
    expect(r.drv.invalidatePages(1, IOVA + 0x1000)).toBe(true);
    expect(r.unit.iotlb.size).toBe(3);
    expect(r.read32(RID, IOVA + 0x1000)).toBe(-1);
    expect(r.res.faultReason).toBe(6);
    // AM = 2: four pages at the aligned base.
    expect(r.drv.invalidatePages(1, IOVA + 0x3000, 2)).toBe(true);
    expect(r.unit.iotlb.size).toBe(0);
  });

  it('page-selective invalidation in another domain leaves the entry', () => {
    const r = rig();
    r.read32(RID, IOVA);
    expect(r.drv.invalidatePages(2, IOVA)).toBe(true);
    expect(r.unit.iotlb.size).toBe(1);
    expect(r.drv.invalidateDomain(1)).toBe(true);
    expect(r.unit.iotlb.size).toBe(0);
  });

  it('global IOTLB and context-cache invalidation', () => {
    const r = rig();
    r.read32(RID, IOVA);
    expect(r.unit.contextCacheSize).toBe(1);
    // The context entry changes (device moved to a not-present entry): cached until invalidated.
    r.drv.setContext(RID, { did: 1, present: false });
    expect(r.read32(RID, IOVA)).toBe(0);
    expect(r.drv.sync(Desc.context(1))).toBe(true);
    expect(r.unit.contextCacheSize).toBe(0);
    // The IOTLB still holds the translation (DID tagged): VT-d requires an IOTLB invalidation as well.
    expect(r.read32(RID, IOVA)).toBe(-1);
    expect(r.res.faultReason).toBe(2);
    expect(r.unit.iotlb.size).toBe(1);
    expect(r.drv.sync(Desc.iotlb(1))).toBe(true);
    expect(r.unit.iotlb.size).toBe(0);
  });

  it('context-cache invalidation: domain-selective and device-selective with a function mask', () => {
    const r = rig();
    const dom2 = r.drv.domain();
    for (const rid of [0x0100, 0x0101, 0x0102, 0x0105]) r.drv.setContext(rid, { did: rid === 0x0105 ? 2 : 1, ptr: dom2.root });
    for (const rid of [0x0100, 0x0101, 0x0102, 0x0105]) r.read32(rid, 0);
    expect(r.unit.contextCacheSize).toBe(4);
    expect(r.drv.sync(Desc.context(2, 2))).toBe(true);
    expect(r.unit.contextCacheSize).toBe(3);
    // Device 0x0102 with FM = 1 (ignore devfn bit 2): 0x0102 and 0x0106.
    expect(r.drv.sync(Desc.context(3, 0, 0x0102, 1))).toBe(true);
    expect(r.unit.contextCacheSize).toBe(2);
    expect(r.drv.sync(Desc.context(3, 0, 0x0100, 3))).toBe(true);
    expect(r.unit.contextCacheSize).toBe(0);
  });

  it('wait with IF sets ICS.IWC and raises the completion event through IEADDR/IEDATA', () => {
    const r = rig();
    r.unit.write32(REG.IEDATA, 0x51);
    r.unit.write32(REG.IEADDR, 0xfee0_2000);
    r.unit.write32(REG.IECTL, 0);
    r.drv.post(Desc.wait({ intr: true, fn: true }));
    r.sched.runSync();
    expect(r.unit.read32(REG.ICS)).toBe(1);
    expect(r.msi.got).toEqual([{ requester: 0, address: 0xfee0_2000, data: 0x51 }]);
    // Another completion while IWC is set raises nothing; clearing IWC re-arms.
    r.drv.post(Desc.wait({ intr: true }));
    r.sched.runSync();
    expect(r.msi.got.length).toBe(1);
    r.unit.write32(REG.ICS, 1);
    expect(r.unit.read32(REG.ICS)).toBe(0);
    r.drv.post(Desc.wait({ intr: true, sw: true, data: 3, addr: r.drv.statusAddr }));
    r.sched.runSync();
    expect(r.msi.got.length).toBe(2);
    expect(r.mem.read32(r.drv.statusAddr)).toBe(3);
  });

  it('completion event masked: IECTL.IP set, delivered on unmask', () => {
    const r = rig();
    r.unit.write32(REG.IEADDR, 0xfee0_0000);
    r.drv.post(Desc.wait({ intr: true }));
    r.sched.runSync();
    expect(r.unit.read32(REG.IECTL)).toBe(0xc000_0000);
    expect(r.msi.got).toEqual([]);
    r.unit.write32(REG.IECTL, 0);
    expect(r.msi.got.length).toBe(1);
    expect(r.unit.read32(REG.IECTL)).toBe(0);
  });

  it.each([
    ['unknown type', [0xfn, 0n]],
    ['device-IOTLB (unsupported)', [3n, 0n]],
    ['context-cache reserved bits', [Desc.context(1)[0] | (1n << 8n), 0n]],
    ['context-cache granularity 0', [1n, 0n]],
    ['context-cache hi not zero', [Desc.context(1)[0], 1n]],
    ['IOTLB reserved bits', [Desc.iotlb(1)[0] | (1n << 40n), 0n]],
    ['IOTLB AM beyond MAMV', Desc.iotlb(3, 1, 0, 19)],
    ['IOTLB hi reserved', [Desc.iotlb(3, 1)[0], 1n << 8n]],
    ['wait reserved bits', [Desc.wait({ sw: true })[0] | (1n << 9n), 0x1000n]],
    ['wait status address misaligned', [Desc.wait({ sw: true })[0], 0x1001n]],
    ['wait status address beyond memory', [Desc.wait({ sw: true, data: 1 })[0], 1n << 40n]],
  ] as const)('IQE on a malformed descriptor: %s', (_name, bad) => {
    const r = rig();
    r.unit.write32(REG.FEADDR, 0xfee0_0000);
    r.unit.write32(REG.FECTL, 0);
    r.read32(RID, IOVA);
    expect(r.drv.sync(Desc.iotlb(2, 7), [bad[0], bad[1]], Desc.iotlb(1))).toBe(false);
    expect(r.unit.read32(REG.FSTS) & IQE).not.toBe(0);
    // The queue stopped at the bad descriptor: IQH points at it, later ones did not run.
    expect(r.unit.read64(REG.IQH)).toBe(1n << 4n);
    expect(r.unit.iotlb.size).toBe(1);
    expect(r.msi.got.length).toBe(1);
    // Linux's recovery: overwrite the bad descriptor with a wait, clear IQE; fetching resumes.
    r.mem.write64(r.drv.iq + 16, Desc.wait({})[0]);
    r.mem.write64(r.drv.iq + 24, 0n);
    r.unit.write32(REG.FSTS, IQE);
    r.sched.runSync();
    expect(r.unit.read32(REG.FSTS) & IQE).toBe(0);
    expect(r.unit.iotlb.size).toBe(0);
    expect(r.mem.read32(r.drv.statusAddr)).not.toBe(0);
  });

  it('an IQT beyond the queue sets IQE', () => {
    const r = rig();
    r.unit.write64(REG.IQT, 300n << 4n);
    expect(r.unit.read32(REG.FSTS) & IQE).not.toBe(0);
  });

  it('a queue based beyond memory sets IQE on the first fetch', () => {
    const r = makeRig();
    r.unit.write64(REG.IQA, BigInt(r.mem.size));
    r.drv.gcmd(fmask('GCMD', 'QIE'));
    r.unit.write64(REG.IQT, 1n << 4n);
    r.sched.runSync();
    expect(r.unit.read32(REG.FSTS) & IQE).not.toBe(0);
    expect(r.unit.read64(REG.IQH)).toBe(0n);
  });

  it('QIE clears only with the queue empty; IQH resets', () => {
    const r = rig();
    expect(r.drv.sync()).toBe(true);
    expect(r.unit.read64(REG.IQH)).toBe(1n << 4n);
    r.unit.write32(REG.GCMD, fmask('GCMD', 'TE'));
    expect(r.unit.read32(REG.GSTS) & fmask('GSTS', 'QIES')).toBe(0);
    expect(r.unit.read64(REG.IQH)).toBe(0n);
  });

  it('the queue wraps around', () => {
    const r = rig({ qiDescriptorNs: 0 });
    for (let i = 0; i < 300; i++) expect(r.drv.sync(Desc.iotlb(1))).toBe(true);
    expect(r.unit.read64(REG.IQH)).toBe(BigInt((600 % 256) << 4));
  });
});

describe('VT-d register-based invalidation', () => {
  it('CCMD and IOTLB registers invalidate when QI is off, and report the actual granularity', () => {
    const r = makeRig();
    r.drv.rootTable = r.drv.page();
    r.unit.write64(REG.RTADDR, BigInt(r.drv.rootTable));
    r.drv.gcmd(fmask('GCMD', 'SRTP'));
    const dom = r.drv.domain();
    expect(dom.map(IOVA, PHYS, 0x1000, 3)).toBe(0x1000);
    r.drv.setContext(RID, { did: 1, ptr: dom.root });
    r.drv.enableTranslation();
    expect(r.read32(RID, IOVA)).toBe(0);
    expect(r.unit.iotlb.size).toBe(1);
    // Page-selective through IVA + IOTLB: IVT set, IIRG 3, DID 1.
    r.unit.write64(REG.IVA, BigInt(IOVA));
    r.unit.write64(REG.IOTLB, (1n << 63n) | (3n << 60n) | (1n << 32n));
    expect(r.unit.iotlb.size).toBe(0);
    const v = r.unit.read64(REG.IOTLB);
    expect(v >> 63n).toBe(0n);
    expect((v >> 57n) & 3n).toBe(3n);
    expect(r.unit.read64(REG.IVA)).toBe(0n); // write-only
    // Global context invalidation through CCMD.
    expect(r.unit.contextCacheSize).toBe(1);
    r.unit.write64(REG.CCMD, (1n << 63n) | (1n << 61n));
    expect(r.unit.contextCacheSize).toBe(0);
    expect((r.unit.read64(REG.CCMD) >> 59n) & 3n).toBe(1n);
    expect(r.unit.read64(REG.CCMD) >> 63n).toBe(0n);
  });

  it('register-based invalidation with QI enabled is ignored (ICC stays set)', () => {
    const r = rig();
    r.read32(RID, IOVA);
    r.unit.write64(REG.CCMD, (1n << 63n) | (1n << 61n));
    expect(r.unit.read64(REG.CCMD) >> 63n).toBe(1n);
    expect(r.unit.contextCacheSize).toBe(1);
    r.unit.write64(REG.IOTLB, (1n << 63n) | (1n << 60n));
    expect(r.unit.iotlb.size).toBe(1);
    expect(r.write32(RID, IOVA, 1)).toBe(DmaStatus.OK);
  });
});
