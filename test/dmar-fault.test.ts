import { describe, expect, it } from 'vitest';
import { DmaStatus, bit, createDmaResult, mask32 } from '../sim/index.ts';
import { FRCD_OFFSET, FaultReason, REG, fmask, regDef } from '../iommu/vtd/index.ts';
import { KernelLog } from '../kernel-shim/log.ts';
import { IRQ_HANDLED } from '../kernel-shim/irq.ts';
import {
  DEFAULT_RATELIMIT_BURST,
  DEFAULT_RATELIMIT_INTERVAL,
  DMAR_FAULT_REGS,
  DmarFault,
  HZ,
  RatelimitState,
  type DmarRegAccess,
} from '../kernel-shim/iommu/dmar-fault.ts';
import { makeRig, type VtdRig } from './vtd-driver.ts';

const RID = 0x0100;
const IOVA = 0x40_0000;
const PHYS = 0x100_0000;
const SEC = 1_000_000_000;

interface FaultRig extends VtdRig {
  readonly ptr: number;
  readonly log: KernelLog;
  readonly dmar: DmarFault;
  /** The log lines so far, then forgets them. */
  take(): string[];
  /** Moves virtual time forward by `ns`. */
  advance(ns: number): void;
}

/**
 * The vtd-faults rig (rid 0x0100 in domain 1: IOVA RW, IOVA + 0x1000 read-only, IOVA + 0x2000 write-only) with
 * the handler on the unit's registers. FECTL stays masked, so nothing but the test calls handle().
 */
function rig(opts: Parameters<typeof makeRig>[0] = {}): FaultRig {
  const r = makeRig(opts);
  r.drv.init();
  const dom = r.drv.domain();
  expect(dom.map(IOVA, PHYS, 0x1000, 3)).toBe(0x1000);
  expect(dom.map(IOVA + 0x1000, PHYS + 0x1000, 0x1000, 1)).toBe(0x1000);
  expect(dom.map(IOVA + 0x2000, PHYS + 0x2000, 0x1000, 2)).toBe(0x1000);
  r.drv.setContext(RID, { did: 1, ptr: dom.root });
  r.drv.enableTranslation();
  const log = new KernelLog(r.sched);
  const u = r.unit;
  const regs: DmarRegAccess = { read32: (o) => u.read32(o), write32: (o, v) => u.write32(o, v), read64: (o) => u.read64(o) };
  const dmar = new DmarFault({ regs, cap: u.read64(REG.CAP), log, clock: r.sched });
  let seen = 0;
  return Object.assign(r, {
    ptr: dom.root,
    log,
    dmar,
    take(): string[] {
      const out = log.records.slice(seen).map((x) => x.text);
      seen = log.records.length;
      return out;
    },
    advance(ns: number): void {
      r.sched.schedule(ns, () => {});
      r.sched.runSync();
    },
  });
}

/** One faulting 4-byte DMA. */
function fault(r: VtdRig, rid: number, iova: number, write: boolean): void {
  const st = write ? r.write32(rid, iova, 1) : (r.read32(rid, iova), r.res.status);
  expect(st).toBe(DmaStatus.FAULT);
}

function fHi(r: VtdRig, n: number): number {
  return r.unit.read32(REG.FRCD_HI + 16 * n + 4);
}

function line(read: boolean, bdf: string, addr: string, reason: number, text: string): string {
  const hex = reason.toString(16).padStart(2, '0');
  return `DMAR: [DMA ${read ? 'Read' : 'Write'} NO_PASID] Request device [${bdf}] fault addr ${addr} [fault reason 0x${hex}] ${text}`;
}

const STATUS_PPF = 'DMAR: DRHD: handling fault status reg 2';

/** How vtd-faults.test.ts provokes each reason: set-up on the rig, then the faulting access. */
const REASONS: readonly {
  readonly reason: number;
  readonly text: string;
  readonly rid: number;
  readonly iova: number;
  readonly write: boolean;
  readonly opts?: Parameters<typeof makeRig>[0];
  readonly setup?: (r: FaultRig) => void;
}[] = [
  { reason: FaultReason.ROOT_ENTRY_P, text: 'Present bit in root entry is clear', rid: 0x0208, iova: IOVA, write: false },
  { reason: FaultReason.CONTEXT_ENTRY_P, text: 'Present bit in context entry is clear', rid: 0x0108, iova: IOVA, write: true },
  { reason: FaultReason.CONTEXT_ENTRY_INV, text: 'Invalid context entry', rid: 0x0101, iova: IOVA, write: false,
    setup: (r) => r.drv.setContext(0x0101, { did: 2, ptr: r.ptr, aw: 3 }) },
  { reason: FaultReason.ADDR_BEYOND_MGAW, text: 'Access beyond MGAW', rid: RID, iova: 2 ** 48, write: false },
  { reason: FaultReason.WRITE, text: 'PTE Write access is not set', rid: RID, iova: IOVA + 0x1000, write: true },
  { reason: FaultReason.READ, text: 'PTE Read access is not set', rid: RID, iova: IOVA + 0x2000, write: false },
  { reason: FaultReason.PAGING_ENTRY_INV, text: 'Next page table ptr is invalid', rid: RID, iova: 2 ** 39, write: false,
    setup: (r) => r.mem.write64(r.ptr + 8, BigInt(r.mem.size) | 3n) },
  { reason: FaultReason.ROOT_TABLE_INV, text: 'Root table address invalid', rid: RID, iova: IOVA, write: true,
    setup: (r) => {
      r.unit.write64(REG.RTADDR, BigInt(r.mem.size));
      r.drv.gcmd(fmask('GCMD', 'SRTP'));
    } },
  { reason: FaultReason.CONTEXT_TABLE_INV, text: 'Context table ptr is invalid', rid: 0x0500, iova: IOVA, write: false,
    setup: (r) => r.mem.write64(r.drv.rootTable + 5 * 16, BigInt(r.mem.size) | 1n) },
  { reason: FaultReason.ROOT_ENTRY_RSVD, text: 'non-zero reserved fields in RTP', rid: 0x0600, iova: IOVA, write: false,
    setup: (r) => r.mem.write64(r.drv.rootTable + 6 * 16, 0x8000n | 3n) },
  { reason: FaultReason.CONTEXT_ENTRY_RSVD, text: 'non-zero reserved fields in CTP', rid: 0x0110, iova: IOVA, write: false,
    setup: (r) => r.drv.writeContextRaw(0x0110, BigInt(r.ptr) | 0x10n | 1n, 2n | (1n << 8n)) },
  { reason: FaultReason.PAGING_ENTRY_RSVD, text: 'non-zero reserved fields in PTE', rid: RID, iova: IOVA, write: true,
    setup: (r) => r.mem.write64(r.ptr, r.mem.read64(r.ptr) | 0x80n) },
];

function bdf(rid: number): string {
  const h = (v: number): string => v.toString(16).padStart(2, '0');
  return `${h(rid >>> 8)}:${h((rid >>> 3) & 0x1f)}.${rid & 7}`;
}

describe('dmar_fault: one record per reason', () => {
  it.each(REASONS.map((c) => [`0x${c.reason.toString(16)} ${c.text}`, c] as const))('%s', (_name, c) => {
    const r = rig(c.opts);
    c.setup?.(r);
    fault(r, c.rid, c.iova, c.write);
    expect(r.res.faultReason).toBe(c.reason);
    expect(fHi(r, 0) >>> 31).toBe(1);
    expect(r.dmar.handle()).toBe(IRQ_HANDLED);
    expect(r.take()).toEqual([STATUS_PPF, line(!c.write, bdf(c.rid), `0x${c.iova.toString(16)}`, c.reason, c.text)]);
    expect(r.log.records.every((x) => x.level === 'err')).toBe(true);
    // The record and the status are clear: the next fault records again at index 1.
    expect(fHi(r, 0) >>> 31).toBe(0);
    expect(r.unit.read32(REG.FSTS)).toBe(0);
    expect(r.dmar.counts).toEqual({ irqs: 1, records: 1, logged: 1, suppressed: 0, overflows: 0 });
  });

  it('the read and write of one page differ only in the type', () => {
    const r = rig();
    fault(r, RID, 0x7000_0abc, false);
    fault(r, RID, 0x7000_0abc, true);
    r.dmar.handle();
    expect(r.take()).toEqual([
      STATUS_PPF,
      line(true, '01:00.0', '0x70000000', 6, 'PTE Read access is not set'),
      line(false, '01:00.0', '0x70000000', 5, 'PTE Write access is not set'),
    ]);
  });

  it('formats the requester as bus:slot.func', () => {
    const r = rig();
    fault(r, 0x0118, IOVA, false); // bus 1 has a context table: entry 0x18 is not present
    fault(r, 0xffff, IOVA, true); // bus 0xff has no root entry
    fault(r, 0x00fa, IOVA, false);
    r.dmar.handle();
    expect(r.take()).toEqual([
      STATUS_PPF,
      line(true, '01:03.0', '0x400000', 2, 'Present bit in context entry is clear'),
      line(false, 'ff:1f.7', '0x400000', 1, 'Present bit in root entry is clear'),
      line(true, '00:1f.2', '0x400000', 1, 'Present bit in root entry is clear'),
    ]);
  });

  it('prints the whole 64-bit page address, lower case, without padding', () => {
    const r = rig();
    const res = createDmaResult();
    r.port.writeWide(RID, (1n << 60n) + 0xabcd_1234_5fffn, new Uint8Array(8), 0, 8, res);
    r.port.readWide(RID, (1n << 64n) - 1n, new Uint8Array(8), 0, 8, res);
    fault(r, 0x0108, 0x1000, false);
    r.dmar.handle();
    expect(r.take()).toEqual([
      STATUS_PPF,
      line(false, '01:00.0', '0x1000abcd12345000', 4, 'Access beyond MGAW'),
      line(true, '01:00.0', '0xfffffffffffff000', 4, 'Access beyond MGAW'),
      line(true, '01:01.0', '0x1000', 2, 'Present bit in context entry is clear'),
    ]);
  });
});

describe('dmar_fault: the walk', () => {
  it('with nothing pending: returns IRQ_HANDLED and neither prints nor writes', () => {
    const r = rig();
    const writes: number[] = [];
    const u = r.unit;
    const d = new DmarFault({
      regs: { read32: (o) => u.read32(o), write32: (o) => writes.push(o), read64: (o) => u.read64(o) },
      cap: u.read64(REG.CAP), log: r.log, clock: r.sched,
    });
    expect(d.handle()).toBe(IRQ_HANDLED);
    expect(d.handle()).toBe(IRQ_HANDLED);
    expect(r.take()).toEqual([]);
    expect(writes).toEqual([]);
    expect(d.counts).toEqual({ irqs: 2, records: 0, logged: 0, suppressed: 0, overflows: 0 });
  });

  it('logs the records in FRI order, wrapping at NFR', () => {
    const r = rig();
    for (let i = 0; i < 3; i++) fault(r, RID, 0x7000_0000 + i * 0x1000, false);
    r.dmar.handle();
    expect(r.take()).toHaveLength(4);
    r.advance(6 * SEC); // a fresh ratelimit interval for the 9 tokens below
    // The unit records the next fault at index 3: FRI = 3, then 4..7, 0, 1.
    for (let i = 0; i < 7; i++) fault(r, RID, 0x7100_0000 + i * 0x1000, i % 2 === 0);
    const fsts = r.unit.read32(REG.FSTS);
    expect(fsts).toBe(0x0302);
    r.dmar.handle();
    expect(r.take()).toEqual([
      'DMAR: DRHD: handling fault status reg 302',
      ...Array.from({ length: 7 }, (_, i) =>
        i % 2 === 0
          ? line(false, '01:00.0', `0x${(0x7100_0000 + i * 0x1000).toString(16)}`, 5, 'PTE Write access is not set')
          : line(true, '01:00.0', `0x${(0x7100_0000 + i * 0x1000).toString(16)}`, 6, 'PTE Read access is not set')),
    ]);
    for (let n = 0; n < 8; n++) expect(fHi(r, n) >>> 31).toBe(0);
    expect(r.unit.read32(REG.FSTS) & ~fmask('FSTS', 'FRI')).toBe(0);
  });

  it('overflow: PFO shows in the status line, the dropped faults are not logged, PFO is cleared', () => {
    const r = rig();
    for (let i = 0; i < 11; i++) fault(r, RID, 0x7000_0000 + i * 0x1000, false);
    expect(r.unit.read32(REG.FSTS)).toBe(0x3);
    r.dmar.handle();
    const got = r.take();
    expect(got[0]).toBe('DMAR: DRHD: handling fault status reg 3');
    expect(got.slice(1)).toEqual(Array.from({ length: 8 }, (_, i) =>
      line(true, '01:00.0', `0x${(0x7000_0000 + i * 0x1000).toString(16)}`, 6, 'PTE Read access is not set')));
    expect(r.unit.read32(REG.FSTS)).toBe(0);
    expect(r.dmar.counts).toEqual({ irqs: 1, records: 8, logged: 8, suppressed: 0, overflows: 1 });
    // Recording resumes: the next fault is logged (in a fresh ratelimit interval).
    r.advance(6 * SEC);
    fault(r, RID, 0x7800_0000, true);
    r.dmar.handle();
    expect(r.take()).toEqual([STATUS_PPF, line(false, '01:00.0', '0x78000000', 5, 'PTE Write access is not set')]);
  });

  it('with one fault recording register', () => {
    const r = rig({ faultRecords: 1 });
    fault(r, RID, 0x7000_0000, false);
    fault(r, RID, 0x7100_0000, false);
    expect(r.unit.read32(REG.FSTS)).toBe(0x3);
    r.dmar.handle();
    expect(r.take()).toEqual(['DMAR: DRHD: handling fault status reg 3', line(true, '01:00.0', '0x70000000', 6, 'PTE Read access is not set')]);
    expect(r.unit.read32(REG.FSTS)).toBe(0);
  });

  it('status without PPF (an invalidation queue error): the status line only, FSTS left as it is', () => {
    const r = rig();
    expect(r.drv.sync([0xfn, 0n])).toBe(false);
    const iqe = fmask('FSTS', 'IQE');
    expect(r.unit.read32(REG.FSTS)).toBe(iqe);
    r.dmar.handle();
    expect(r.take()).toEqual([`DMAR: DRHD: handling fault status reg ${iqe.toString(16)}`]);
    expect(r.unit.read32(REG.FSTS)).toBe(iqe);
    expect(r.dmar.counts.records).toBe(0);
  });
});

describe('dmar_fault: ratelimit', () => {
  const ms = SEC / HZ;

  it('10 tokens per 5 s, one per message and one per walk end; suppressed records are still cleared', () => {
    const r = rig();
    // 8 records: status + 8 lines + the pass that finds F clear = the whole burst, 9 lines printed.
    for (let i = 0; i < 8; i++) fault(r, RID, 0x7000_0000 + i * 0x1000, false);
    r.dmar.handle();
    expect(r.take()).toHaveLength(9);
    // Within the interval nothing more is printed, but the records are cleared and FSTS is reset.
    r.advance(SEC);
    for (let i = 0; i < 3; i++) fault(r, RID, 0x7100_0000 + i * 0x1000, true);
    r.dmar.handle();
    expect(r.take()).toEqual([]);
    for (let n = 0; n < 8; n++) expect(fHi(r, n) >>> 31).toBe(0);
    expect(r.unit.read32(REG.FSTS) & ~fmask('FSTS', 'FRI')).toBe(0);
    expect(r.dmar.counts).toEqual({ irqs: 2, records: 11, logged: 8, suppressed: 3, overflows: 0 });
    // Exactly 5 s after the interval began (t = 0) is still inside it: jiffies must be after begin + interval.
    r.advance(4 * SEC);
    fault(r, RID, 0x7200_0000, false);
    r.dmar.handle();
    expect(r.take()).toEqual([]);
    // One jiffy later a new interval starts: the suppressed count (status + 3 + end, then status + 1 + end) first.
    r.advance(ms);
    fault(r, RID, 0x7300_0000, false);
    r.dmar.handle();
    const recs = r.log.records.slice(-3);
    expect(recs.map((x) => [x.level, x.text])).toEqual([
      ['warn', 'dmar_fault: 8 callbacks suppressed'],
      ['err', 'DMAR: DRHD: handling fault status reg 402'],
      ['err', line(true, '01:00.0', '0x73000000', 6, 'PTE Read access is not set')],
    ]);
    expect(recs[0]?.time).toBe(5 * SEC + ms);
    expect(r.dmar.counts).toEqual({ irqs: 4, records: 13, logged: 9, suppressed: 4, overflows: 0 });
  });

  it('a burst exhausted mid-walk: the status line and the first records print, the rest are cleared silently', () => {
    const r = rig();
    for (let i = 0; i < 5; i++) fault(r, RID, 0x7000_0000 + i * 0x1000, false);
    r.dmar.handle(); // 7 tokens
    expect(r.take()).toHaveLength(6);
    for (let i = 0; i < 5; i++) fault(r, RID, 0x7100_0000 + i * 0x1000, false);
    r.dmar.handle(); // status + 2 records, then 3 records and the end suppressed
    expect(r.take()).toEqual([
      'DMAR: DRHD: handling fault status reg 502',
      line(true, '01:00.0', '0x71000000', 6, 'PTE Read access is not set'),
      line(true, '01:00.0', '0x71001000', 6, 'PTE Read access is not set'),
    ]);
    expect(r.dmar.counts).toEqual({ irqs: 2, records: 10, logged: 7, suppressed: 3, overflows: 0 });
    expect(r.unit.read32(REG.FSTS) & ~fmask('FSTS', 'FRI')).toBe(0);
  });

  it('a handle() with nothing pending takes no token', () => {
    const r = rig();
    for (let i = 0; i < 20; i++) r.dmar.handle();
    for (let i = 0; i < 8; i++) fault(r, RID, 0x7000_0000 + i * 0x1000, false);
    r.dmar.handle();
    expect(r.take()).toHaveLength(9);
  });

  it('one state shared by two units, as Linux\'s function-static one', () => {
    const a = rig();
    const b = rig();
    const rs = new RatelimitState({ clock: a.sched, log: a.log });
    const regsOf = (x: VtdRig): DmarRegAccess => ({ read32: (o) => x.unit.read32(o), write32: (o, v) => x.unit.write32(o, v), read64: (o) => x.unit.read64(o) });
    const da = new DmarFault({ regs: regsOf(a), cap: a.unit.read64(REG.CAP), log: a.log, clock: a.sched, ratelimit: rs });
    const db = new DmarFault({ regs: regsOf(b), cap: b.unit.read64(REG.CAP), log: a.log, clock: a.sched, ratelimit: rs });
    for (let i = 0; i < 6; i++) fault(a, RID, 0x7000_0000 + i * 0x1000, false);
    da.handle(); // 8 tokens
    fault(b, RID, 0x7000_0000, false);
    db.handle(); // status + record print, the end is suppressed
    expect(a.take()).toHaveLength(7 + 2);
    expect(rs.missed).toBe(1);
    expect(db.counts.logged).toBe(1);
  });

  it('___ratelimit edge cases: a zero interval never limits, a zero burst always does', () => {
    const sched = rig().sched;
    const log = new KernelLog(sched);
    const never = new RatelimitState({ clock: sched, log, interval: 0 });
    const always = new RatelimitState({ clock: sched, log, burst: 0 });
    for (let i = 0; i < 50; i++) {
      expect(never.check('f')).toBe(true);
      expect(always.check('f')).toBe(false);
    }
    expect(always.missed).toBe(50);
    expect(log.records).toEqual([]);
    expect([DEFAULT_RATELIMIT_INTERVAL, DEFAULT_RATELIMIT_BURST]).toEqual([5 * HZ, 10]);
  });
});

/** A register block of plain words for records the VT-d model cannot produce. */
function fakeRegs(nfr: number): { regs: DmarRegAccess; cap: bigint; words: Map<number, number>; sticky: { f: boolean } } {
  const words = new Map<number, number>();
  const sticky = { f: false };
  const regs: DmarRegAccess = {
    read32: (o) => words.get(o) ?? 0,
    write32: (o, v) => {
      if (o === REG.FSTS) words.set(o, (words.get(o) ?? 0) & ~v & ~0x2);
      else if (!sticky.f) words.set(o, (words.get(o) ?? 0) & ~v);
    },
    read64: (o) => BigInt(words.get(o) ?? 0) | (BigInt(words.get(o + 4) ?? 0) << 32n),
  };
  const cap = (BigInt(FRCD_OFFSET / 16) << 24n) | (BigInt(nfr - 1) << 40n);
  return { regs, cap, words, sticky };
}

function putRecord(words: Map<number, number>, n: number, o: { addr: bigint; sid: number; pp?: boolean; pasid?: number; reason: number; read: boolean }): void {
  const at = FRCD_OFFSET + 16 * n;
  words.set(at, Number(o.addr & 0xffff_ffffn));
  words.set(at + 4, Number(o.addr >> 32n));
  words.set(at + 8, (o.sid | (o.pp === true ? 0x8000_0000 : 0)) >>> 0);
  words.set(at + 12, (0x8000_0000 | (o.read ? 0x4000_0000 : 0) | ((o.pasid ?? 0) << 8) | o.reason) >>> 0);
}

describe('dmar_fault: records beyond the model', () => {
  it('PASID present, reasons without text, an address with its page offset set', () => {
    const sched = rig().sched;
    const log = new KernelLog(sched);
    const { regs, cap, words } = fakeRegs(4);
    putRecord(words, 2, { addr: 0x1234_5abcn, sid: 0x0310, pp: true, pasid: 0xfffff, reason: 6, read: true });
    putRecord(words, 3, { addr: 0x2000n, sid: 0x0310, reason: 0x0e, read: false });
    putRecord(words, 0, { addr: 0x3000n, sid: 0x0310, reason: 0x20, read: true });
    words.set(REG.FSTS, 0x0202);
    new DmarFault({ regs, cap, log, clock: sched }).handle();
    expect(log.records.map((x) => x.text)).toEqual([
      'DMAR: DRHD: handling fault status reg 202',
      'DMAR: [DMA Read PASID 0xfffff] Request device [03:02.0] fault addr 0x12345000 [fault reason 0x06] PTE Read access is not set',
      'DMAR: [DMA Write NO_PASID] Request device [03:02.0] fault addr 0x2000 [fault reason 0x0e] Unknown',
      'DMAR: [DMA Read NO_PASID] Request device [03:02.0] fault addr 0x3000 [fault reason 0x20] Unknown',
    ]);
    expect(words.get(FRCD_OFFSET + 16 * 2 + 12)).toBe(0x4fff_ff06);
    expect(words.get(REG.FSTS)).toBe(0x0200);
  });

  it('a unit whose F bit does not clear is a simulator bug, not an endless loop', () => {
    const sched = rig().sched;
    const { regs, cap, words, sticky } = fakeRegs(2);
    putRecord(words, 0, { addr: 0n, sid: 0, reason: 1, read: true });
    putRecord(words, 1, { addr: 0n, sid: 0, reason: 1, read: true });
    words.set(REG.FSTS, 0x2);
    sticky.f = true;
    expect(() => new DmarFault({ regs, cap, log: new KernelLog(sched), clock: sched }).handle()).toThrow(/still has F set/);
  });

  it('the driver\'s register view matches the VT-d unit\'s register table', () => {
    const R = DMAR_FAULT_REGS;
    expect([R.CAP, R.FSTS]).toEqual([REG.CAP, REG.FSTS]);
    const cap = regDef('CAP').fields;
    expect([R.CAP_FRO, R.CAP_NFR]).toEqual([cap.FRO, cap.NFR].map((f) => ({ lsb: f?.lsb, width: f?.width })));
    expect(mask32(R.FSTS_PFO)).toBe(fmask('FSTS', 'PFO'));
    expect(mask32(R.FSTS_PPF)).toBe(fmask('FSTS', 'PPF'));
    expect(mask32(R.FSTS_FRI)).toBe(fmask('FSTS', 'FRI'));
    expect(mask32(R.FRCD_F)).toBe(fmask('FRCD_HI', 'F'));
    expect(mask32(R.FRCD_T)).toBe(fmask('FRCD_HI', 'T'));
    expect(mask32(R.FRCD_FR)).toBe(fmask('FRCD_HI', 'FR'));
    expect(mask32(R.FRCD_SID)).toBe(fmask('FRCD_HI', 'SID'));
    expect(R.FSTS_PRO).toEqual(bit(7));
    expect(R.FRCD_LEN).toBe(16);
  });
});
