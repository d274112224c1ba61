import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DmaStatus, createDmaResult, resetDmaResult, type DmaPort, type DmaResult } from '../sim/index.ts';
import { IommuProt, type VtdSlPageTable } from '../iommu/format/index.ts';
import { VtdDmaPort, faultReasonText } from '../iommu/vtd/index.ts';
import { makeRig, type VtdRig } from './vtd-driver.ts';

/** A completer that moves nothing and remembers the physical address it was given. */
class SpyPort implements DmaPort {
  last = -1;
  read(_r: number, addr: number, _b: Uint8Array, _o: number, len: number, res: DmaResult): void {
    this.last = addr;
    res.status = DmaStatus.OK;
    res.bytesDone = len;
  }
  write(r: number, addr: number, b: Uint8Array, o: number, len: number, res: DmaResult): void {
    this.read(r, addr, b, o, len, res);
  }
  readWide(): void {}
  writeWide(): void {}
}

/** How often a run saw a stale use and a correct translation (the test checks it exercised both). */
const seen = { stale: 0, ok: 0 };

const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;
const RID = 0x0100;
const RID2 = 0x0108; // same domain: shares IOTLB entries
const DID = 1;

interface Mapping {
  iova: number;
  size: number;
  phys: number;
  perm: number;
}

interface Model {
  maps: Mapping[];
  /** Ranges whose translations changed since an invalidation covered them: the IOTLB may still hold them. */
  dirty: { start: number; last: number }[];
}

interface Real {
  rig: VtdRig;
  dom: VtdSlPageTable;
  port: VtdDmaPort;
  spy: SpyPort;
  res: DmaResult;
  buf: Uint8Array;
}

function lookup(m: Model, iova: number): Mapping | undefined {
  return m.maps.find((x) => iova >= x.iova && iova < x.iova + x.size);
}

const overlaps = (a: number, alast: number, b: number, blast: number): boolean => a <= blast && b <= alast;

function iovaOf(region: number, i2m: number, i4k: number): number {
  return region * G1 + i2m * M2 + i4k * K4;
}

class MapCmd implements fc.Command<Model, Real> {
  constructor(readonly size: number, readonly region: number, readonly i2m: number, readonly i4k: number, readonly physSlot: number, readonly perm: number) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const iova = this.size === G1 ? iovaOf(this.region, 0, 0) : this.size === M2 ? iovaOf(this.region, this.i2m, 0) : iovaOf(this.region, this.i2m, this.i4k);
    const phys = (this.physSlot + 1) * G1 + (this.size === G1 ? 0 : this.size === M2 ? this.i2m * M2 : this.i2m * M2 + this.i4k * K4 + 0x40_0000 * this.physSlot);
    const free = !m.maps.some((x) => overlaps(x.iova, x.iova + x.size - 1, iova, iova + this.size - 1));
    const got = r.dom.map(iova, phys, this.size, this.perm);
    if (free) {
      expect(got).toBe(this.size);
      m.maps.push({ iova, size: this.size, phys, perm: this.perm });
    } else {
      expect(got).toBeLessThan(0);
    }
  }
  toString(): string {
    return `map(${this.size.toString(16)}, r${this.region} ${this.i2m} ${this.i4k}, slot ${this.physSlot}, perm ${this.perm})`;
  }
}

class UnmapCmd implements fc.Command<Model, Real> {
  constructor(readonly pick: number) {}
  check(m: Readonly<Model>): boolean {
    return m.maps.length > 0;
  }
  run(m: Model, r: Real): void {
    const i = this.pick % m.maps.length;
    const x = m.maps[i] as Mapping;
    expect(r.dom.unmap(x.iova, x.size, null)).toBe(x.size);
    m.maps.splice(i, 1);
    m.dirty.push({ start: x.iova, last: x.iova + x.size - 1 });
  }
  toString(): string {
    return `unmap(#${this.pick})`;
  }
}

class TranslateCmd implements fc.Command<Model, Real> {
  constructor(readonly rid: number, readonly region: number, readonly i2m: number, readonly i4k: number, readonly off: number, readonly write: boolean) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const iova = iovaOf(this.region, this.i2m, this.i4k) + this.off;
    const x = lookup(m, iova);
    const need = this.write ? IommuProt.WRITE : IommuProt.READ;
    const expected = x !== undefined && (x.perm & need) !== 0 ? x.phys + (iova - x.iova) : -1;
    const stats = r.rig.sched.stats.counter('iommu', 'stale');
    const before = stats.value;
    // The explainer, on the same state, before the access.
    const e = r.rig.unit.explain(this.rid, iova, this.write ? 'write' : 'read');
    resetDmaResult(r.res);
    r.spy.last = -1;
    if (this.write) r.port.write(this.rid, iova, r.buf, 0, 4, r.res);
    else r.port.read(this.rid, iova, r.buf, 0, 4, r.res);
    const actual = r.res.status === DmaStatus.OK ? r.spy.last : -1;
    const flagged = stats.value - before;
    if (actual === expected) {
      expect(flagged).toBe(0);
      if (actual >= 0) seen.ok++;
    } else {
      // Only a translation whose tables changed without an invalidation may differ, and the oracle flags it.
      expect(m.dirty.some((d) => iova >= d.start && iova <= d.last)).toBe(true);
      expect(actual).toBeGreaterThanOrEqual(0);
      expect(flagged).toBe(1);
      seen.stale++;
      expect(e.stale).toBe(true);
      expect(e.iotlb).toBe(BigInt(actual));
    }
    // The explainer agrees with the tables, and with the access whenever the IOTLB is not stale.
    expect(e.phys === null ? -1 : Number(e.phys)).toBe(expected);
    if (expected < 0) {
      expect(e.fault?.reason).toBe(this.write ? 5 : 6);
      if (actual < 0) expect(r.res.faultReason).toBe(e.fault?.reason);
    }
  }
  toString(): string {
    return `${this.write ? 'write' : 'read'}(${this.rid.toString(16)}, r${this.region} ${this.i2m} ${this.i4k} +${this.off.toString(16)})`;
  }
}

class InvalidateCmd implements fc.Command<Model, Real> {
  constructor(readonly kind: 'page' | 'domain' | 'global' | 'other-domain', readonly pick: number) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const drv = r.rig.drv;
    if (this.kind === 'global') {
      expect(drv.invalidateAll()).toBe(true);
      m.dirty = [];
    } else if (this.kind === 'domain') {
      expect(drv.invalidateDomain(DID)).toBe(true);
      m.dirty = [];
    } else if (this.kind === 'other-domain') {
      expect(drv.invalidateDomain(DID + 1)).toBe(true);
    } else if (m.dirty.length > 0) {
      // The whole changed range, or a 4 KiB or 2 MiB block inside it (a superpage entry overlapping it goes too).
      const d = m.dirty[this.pick % m.dirty.length] as { start: number; last: number };
      const size = d.last - d.start + 1;
      const mode = (this.pick >>> 4) % 3;
      const block = mode === 0 ? 2 ** Math.floor(Math.log2(size)) : mode === 1 ? K4 : M2;
      // A block the translations' grid touches (2 MiB and 4 KiB indexes 0..2).
      const at = d.start + (((this.pick % 3) * M2 + ((this.pick >>> 2) % 3) * K4) % size);
      const start = at - (at % block);
      expect(drv.invalidatePages(DID, start, Math.log2(block / K4))).toBe(true);
      const last = start + block - 1;
      // Only the invalidated block is known clean now: subtract it from every dirty range.
      m.dirty = m.dirty.flatMap((x) => {
        if (!overlaps(x.start, x.last, start, last)) return [x];
        const keep: { start: number; last: number }[] = [];
        if (x.start < start) keep.push({ start: x.start, last: start - 1 });
        if (x.last > last) keep.push({ start: last + 1, last: x.last });
        return keep;
      });
    }
  }
  toString(): string {
    return `invalidate(${this.kind} #${this.pick})`;
  }
}

const small = fc.integer({ min: 0, max: 2 });
const cmdArbs = [
  fc.tuple(fc.constantFrom(K4, K4, M2, G1), fc.integer({ min: 0, max: 1 }), small, small, fc.integer({ min: 0, max: 3 }), fc.constantFrom(1, 2, 3)).map(
    ([s, rg, a, b, p, perm]) => new MapCmd(s, rg, a, b, p, perm),
  ),
  fc.nat().map((p) => new UnmapCmd(p)),
  fc
    .tuple(fc.constantFrom(RID, RID2), fc.integer({ min: 0, max: 1 }), small, small, fc.constantFrom(0, 0x10, 0xffc), fc.boolean())
    .map(([rid, rg, a, b, off, w]) => new TranslateCmd(rid, rg, a, b, off, w)),
  fc.tuple(fc.constantFrom('page', 'page', 'domain', 'global', 'other-domain' as const), fc.nat()).map(([k, p]) => new InvalidateCmd(k, p)),
] as const;
/** Weighted: maps and translations are the common case, so that stale uses arise between invalidations. */
const commands = [cmdArbs[0], cmdArbs[0], cmdArbs[1], cmdArbs[2], cmdArbs[2], cmdArbs[2], cmdArbs[3]];

function setup(entries: number, ways: number): Real {
  const rig = makeRig({ iotlbEntries: entries, iotlbWays: ways, staleOracle: true, memSize: 16 * 1024 * 1024 });
  rig.drv.init();
  const dom = rig.drv.domain();
  rig.drv.setContext(RID, { did: DID, ptr: dom.root });
  rig.drv.setContext(RID2, { did: DID, ptr: dom.root });
  rig.drv.enableTranslation();
  const spy = new SpyPort();
  return { rig, dom, spy, port: new VtdDmaPort(rig.unit, spy), res: createDmaResult(), buf: new Uint8Array(4) };
}

describe('VT-d against a Map model (fc.commands)', () => {
  for (const [entries, ways] of [
    [512, 8],
    [8, 2],
    [0, 1],
  ] as const) {
    it(`map/unmap/translate/invalidate over 4K/2M/1G pages, IOTLB ${entries}/${ways}`, () => {
      seen.ok = 0;
      seen.stale = 0;
      fc.assert(
        fc.property(fc.commands(commands, { maxCommands: 60, size: 'max' }), (cmds) => {
          fc.modelRun(() => ({ model: { maps: [], dirty: [] }, real: setup(entries, ways) }), cmds);
        }),
        { seed: 42, numRuns: 300 },
      );
      expect(seen.ok).toBeGreaterThan(400);
      if (entries > 0) expect(seen.stale).toBeGreaterThan(40);
      else expect(seen.stale).toBe(0);
    });
  }

  it('without the oracle the IOTLB still serves stale translations, unflagged and free', () => {
    const r = setup(512, 8);
    r.rig.unit.staleOracle = false;
    expect(r.dom.map(0x10_0000, 0x80_0000, K4, 3)).toBe(K4);
    r.port.read(RID, 0x10_0000, r.buf, 0, 4, r.res);
    expect(r.spy.last).toBe(0x80_0000);
    expect(r.dom.unmap(0x10_0000, K4, null)).toBe(K4);
    resetDmaResult(r.res);
    r.port.read(RID, 0x10_0000, r.buf, 0, 4, r.res);
    expect(r.res.status).toBe(DmaStatus.OK);
    expect(r.spy.last).toBe(0x80_0000);
    expect(r.rig.sched.stats.snapshot().iommu?.stale).toBe(0);
    const e = r.rig.unit.explain(RID, 0x10_0000);
    expect(e.stale).toBe(true);
    expect(e.fault?.text).toBe(faultReasonText(6));
  });
});
