/**
 * Model-based property test of iommufd IOAS mappings (fast-check `fc.commands`): random IOAS_MAP (fixed
 * and automatic IOVA), IOAS_UNMAP (exact, partial cuts, ranges over several areas, `(0, U64_MAX)`) and
 * IOAS_COPY (within and across two IOASes) against a plain model of areas that predicts every result,
 * errno included, the IOVA written back and the bytes unmapped; after each step the kernel's areas must be
 * the model's. In the `device` variant the edu is attached to the first IOAS: the model also predicts the
 * pinned pages (shared by COPY, pinned once) and what the device's DMA reads at a probed IOVA.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fcOptions } from './fc.ts';
import { errnoOf } from './sys-errno.ts';
import { boot, EDU, run, type Booted } from './vfio-fixture.ts';
import { devicePort } from './dma-port.ts';
import { iommufdFromFile, type IommufdCtx, type IoasObject } from '../kernel-shim/iommufd/index.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import { MAP, O, PROT } from '../kernel-shim/uapi/linux.ts';
import { IOMMUFD, IOMMU_IOAS_MAP } from '../kernel-shim/uapi/iommufd.ts';
import { DmaStatus } from '../sim/index.ts';

const PG = 4096n;
const U64_MAX = (1n << 64n) - 1n;
const HPAGE = 2n << 20n;
const BUF_PAGES = 16;
const RW = IOMMU_IOAS_MAP.READABLE | IOMMU_IOAS_MAP.WRITEABLE;

/** One area: `[start, last]` over the pages object `pagesId` from buffer page `vaPage`. */
interface MArea {
  readonly start: bigint;
  readonly last: bigint;
  readonly pagesId: number;
  /** Buffer page index of the area's first byte. */
  readonly vaPage: number;
  /** Page index inside its pages object. */
  readonly pageIdx: number;
}

interface Model {
  readonly ioas: [MArea[], MArea[]];
  nextPages: number;
  readonly device: boolean;
}

interface Real {
  readonly sys: Sys;
  readonly b: Booted;
  readonly fd: number;
  readonly ids: [number, number];
  readonly ctx: IommufdCtx;
  readonly buf: bigint;
}

const sortAreas = (l: MArea[]): void => {
  l.sort((x, y) => (x.start < y.start ? -1 : 1));
};
const bytes = (a: MArea): bigint => a.last - a.start + 1n;
const lowestBit = (v: bigint): bigint => v & -v;
function pow2(v: bigint): bigint {
  let p = 1n;
  while (p < v) p <<= 1n;
  return p;
}
const alignUp = (v: bigint, a: bigint): bigint => (v + a - 1n) & ~(a - 1n);

/** The model's `iopt_alloc_iova` over page-aligned VAs with no allowed or reserved ranges in reach. */
function modelAlloc(areas: readonly MArea[], va: bigint, length: bigint): bigint {
  let align = va === 0n ? pow2(length) : (pow2(length) < lowestBit(va) ? pow2(length) : lowestBit(va));
  if (align >= HPAGE) align = HPAGE;
  let cand = alignUp(PG, align);
  for (const a of areas) {
    if (a.last < cand) continue;
    if (a.start > cand + length - 1n) break;
    cand = alignUp(a.last + 1n, align);
  }
  return cand;
}

/** Pages pinned: distinct (pages, index) under the device's IOAS. */
function modelPinned(m: Model): number {
  if (!m.device) return 0;
  const s = new Set<string>();
  for (const a of m.ioas[0]) for (let i = 0n; i < bytes(a) / PG; i++) s.add(`${a.pagesId}:${a.pageIdx + Number(i)}`);
  return s.size;
}

async function compare(m: Model, r: Real, probe: number): Promise<void> {
  for (const k of [0, 1] as const) {
    const o = r.ctx.objects.get(r.ids[k]) as IoasObject;
    expect(o.iopt.areas.map((a) => [a.start, a.last])).toEqual(m.ioas[k].map((a) => [a.start, a.last]));
  }
  expect(r.b.kernel.userPages.pinned).toBe(modelPinned(m));
  if (!m.device) return;
  const iova = BigInt(probe) * PG;
  const a = m.ioas[0].find((x) => x.start <= iova && iova <= x.last);
  const res = devicePort(r.b.machine, '00:03.0').read(Number(iova), 4);
  if (a === undefined) expect(res.status).not.toBe(DmaStatus.OK);
  else {
    expect(res.status).toBe(DmaStatus.OK);
    const vaPage = a.vaPage + Number((iova - a.start) / PG);
    expect(new DataView(res.bytes.buffer).getUint32(0, true)).toBe((0xa500_0000 | vaPage) >>> 0);
  }
}

type Cmd = fc.AsyncCommand<Model, Real>;

class MapCmd implements Cmd {
  constructor(readonly k: 0 | 1, readonly vaPage: number, readonly npages: number, readonly iovaPage: number | null, readonly probe: number) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    const areas = m.ioas[this.k];
    const len = BigInt(this.npages) * PG;
    const va = r.buf + BigInt(this.vaPage) * PG;
    let want: string;
    let iova: bigint;
    if (this.iovaPage !== null) {
      iova = BigInt(this.iovaPage) * PG;
      want = areas.some((a) => a.start <= iova + len - 1n && iova <= a.last) ? 'EEXIST' : 'success';
    } else {
      iova = modelAlloc(areas, va, len);
      want = 'success';
    }
    const arg = { size: 40, flags: RW | (this.iovaPage === null ? 0 : IOMMU_IOAS_MAP.FIXED_IOVA), ioas_id: r.ids[this.k], __reserved: 0, user_va: va, length: len, iova: this.iovaPage === null ? 0n : iova };
    expect(await errnoOf(r.sys.ioctl(r.fd, IOMMUFD.IOAS_MAP, arg)), this.toString()).toBe(want);
    if (want === 'success') {
      expect(arg.iova, this.toString()).toBe(iova);
      areas.push({ start: iova, last: iova + len - 1n, pagesId: m.nextPages++, vaPage: this.vaPage, pageIdx: 0 });
      sortAreas(areas);
    }
    await compare(m, r, this.probe);
  }
  toString(): string {
    return `map(${this.k}, va=p${this.vaPage}, ${this.npages}p, ${this.iovaPage === null ? 'auto' : `iova=p${this.iovaPage}`})`;
  }
}

/** The model's `iopt_unmap_iova_range`: lowest first; a cut area stops it with ENOENT. */
function modelUnmap(areas: MArea[], start: bigint, last: bigint): { e: string; n: bigint } {
  let n = 0n;
  for (;;) {
    const i = areas.findIndex((a) => a.start <= last && start <= a.last);
    if (i < 0) break;
    const a = areas[i] as MArea;
    if (a.start < start || a.last > last) return { e: 'ENOENT', n };
    areas.splice(i, 1);
    n += bytes(a);
  }
  return n > 0n ? { e: 'success', n } : { e: 'ENOENT', n };
}

class UnmapCmd implements Cmd {
  constructor(readonly k: 0 | 1, readonly iova: bigint, readonly length: bigint, readonly probe: number) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    const areas = m.ioas[this.k];
    let want: { e: string; n: bigint };
    if (this.iova === 0n && this.length === U64_MAX) want = { e: 'success', n: modelUnmap(areas, 0n, U64_MAX).n };
    else if (this.length === 0n) want = { e: 'EINVAL', n: 0n };
    else want = modelUnmap(areas, this.iova, this.iova + this.length - 1n);
    const arg = { size: 24, ioas_id: r.ids[this.k], iova: this.iova, length: this.length };
    expect(await errnoOf(r.sys.ioctl(r.fd, IOMMUFD.IOAS_UNMAP, arg)), this.toString()).toBe(want.e);
    expect(arg.length, this.toString()).toBe(want.e === 'success' ? want.n : this.length);
    await compare(m, r, this.probe);
  }
  toString(): string {
    return `unmap(${this.k}, 0x${this.iova.toString(16)}, 0x${this.length.toString(16)})`;
  }
}

/**
 * An UNMAP aimed at the j-th area of the moment: exact, its head page only, one page wider each side, or
 * from it into the first page of the next area (which cuts that one after removing this one).
 */
class UnmapAtCmd implements Cmd {
  constructor(readonly k: 0 | 1, readonly j: number, readonly mode: 'exact' | 'head' | 'wider' | 'span', readonly probe: number) {}
  check(m: Readonly<Model>): boolean {
    return m.ioas[this.k].length > 0;
  }
  async run(m: Model, r: Real): Promise<void> {
    const l = m.ioas[this.k];
    const a = l[this.j % l.length] as MArea;
    const next = l[(this.j % l.length) + 1];
    const [iova, len] = this.mode === 'exact' ? [a.start, bytes(a)]
      : this.mode === 'head' ? [a.start, PG]
        : this.mode === 'span' && next !== undefined ? [a.start, next.start + PG - a.start]
          : [a.start === 0n ? 0n : a.start - PG, bytes(a) + 2n * PG];
    await new UnmapCmd(this.k, iova, len, this.probe).run(m, r);
  }
  toString(): string {
    return `unmapAt(${this.k}, ${this.j}, ${this.mode})`;
  }
}

class CopyCmd implements Cmd {
  constructor(readonly src: 0 | 1, readonly dst: 0 | 1, readonly srcPage: number, readonly npages: number, readonly dstPage: number | null, readonly probe: number) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    const len = BigInt(this.npages) * PG;
    const srcIova = BigInt(this.srcPage) * PG;
    const lastIova = srcIova + len - 1n;
    // iopt_get_pages: contiguous areas from the one holding src_iova.
    const slices: { a: MArea; from: bigint; to: bigint }[] = [];
    let cur = srcIova;
    let want = 'ENOENT';
    for (;;) {
      const a = m.ioas[this.src].find((x) => x.start <= cur && cur <= x.last);
      if (a === undefined) break;
      const to = lastIova < a.last ? lastIova : a.last;
      slices.push({ a, from: cur, to });
      if (lastIova <= a.last) {
        want = 'success';
        break;
      }
      cur = a.last + 1n;
    }
    const dstAreas = m.ioas[this.dst];
    let iova = 0n;
    if (want === 'success') {
      const first = slices[0] as { a: MArea; from: bigint };
      const firstVa = r.buf + BigInt(first.a.vaPage) * PG + (first.from - first.a.start);
      if (this.dstPage !== null) {
        iova = BigInt(this.dstPage) * PG;
        if (dstAreas.some((a) => a.start <= iova + len - 1n && iova <= a.last)) want = 'EEXIST';
      } else iova = modelAlloc(dstAreas, firstVa, len);
    }
    const arg = {
      size: 40, flags: RW | (this.dstPage === null ? 0 : IOMMU_IOAS_MAP.FIXED_IOVA), dst_ioas_id: r.ids[this.dst], src_ioas_id: r.ids[this.src],
      length: len, dst_iova: this.dstPage === null ? 0n : iova, src_iova: srcIova,
    };
    expect(await errnoOf(r.sys.ioctl(r.fd, IOMMUFD.IOAS_COPY, arg)), this.toString()).toBe(want);
    if (want === 'success') {
      expect(arg.dst_iova, this.toString()).toBe(iova);
      let at = iova;
      for (const s of slices) {
        const off = Number((s.from - s.a.start) / PG);
        dstAreas.push({ start: at, last: at + (s.to - s.from), pagesId: s.a.pagesId, vaPage: s.a.vaPage + off, pageIdx: s.a.pageIdx + off });
        at += s.to - s.from + 1n;
      }
      sortAreas(dstAreas);
    }
    await compare(m, r, this.probe);
  }
  toString(): string {
    return `copy(${this.src}->${this.dst}, src=p${this.srcPage}, ${this.npages}p, ${this.dstPage === null ? 'auto' : `dst=p${this.dstPage}`})`;
  }
}

const ioasArb = fc.constantFrom<0 | 1>(0, 1);
const pageArb = fc.integer({ min: 0, max: 28 });
const probeArb = fc.integer({ min: 0, max: 32 });
const dstArb = fc.option(pageArb, { freq: 2, nil: null });
const commands: fc.Arbitrary<Cmd>[] = [
  fc.tuple(ioasArb, fc.integer({ min: 0, max: BUF_PAGES - 4 }), fc.integer({ min: 1, max: 4 }), dstArb, probeArb).map(([k, v, n, i, p]) => new MapCmd(k, v, n, i, p)),
  fc.tuple(ioasArb, fc.integer({ min: 0, max: BUF_PAGES - 4 }), fc.integer({ min: 1, max: 4 }), dstArb, probeArb).map(([k, v, n, i, p]) => new MapCmd(k, v, n, i, p)),
  fc.tuple(ioasArb, fc.integer({ min: 0, max: BUF_PAGES - 4 }), fc.integer({ min: 1, max: 4 }), dstArb, probeArb).map(([k, v, n, i, p]) => new MapCmd(k, v, n, i, p)),
  fc.tuple(ioasArb, pageArb, fc.integer({ min: 0, max: 12 }), probeArb).map(([k, i, n, p]) => new UnmapCmd(k, BigInt(i) * PG, BigInt(n) * PG, p)),
  fc.tuple(ioasArb, probeArb).map(([k, p]) => new UnmapCmd(k, 0n, U64_MAX, p)),
  fc.tuple(ioasArb, fc.nat(7), fc.constantFrom('exact', 'exact', 'head', 'wider', 'span', 'span') as fc.Arbitrary<UnmapAtCmd['mode']>, probeArb).map(([k, j, md, p]) => new UnmapAtCmd(k, j, md, p)),
  fc.tuple(ioasArb, ioasArb, pageArb, fc.integer({ min: 1, max: 6 }), dstArb, probeArb).map(([s, d, sp, n, dp, p]) => new CopyCmd(s, d, sp, n, dp, p)),
  fc.tuple(ioasArb, ioasArb, pageArb, fc.integer({ min: 1, max: 6 }), dstArb, probeArb).map(([s, d, sp, n, dp, p]) => new CopyCmd(s, d, sp, n, dp, p)),
];

async function setup(sys: Sys, b: Booted, device: boolean): Promise<Real> {
  const fd = await sys.open('/dev/iommu', O.RDWR);
  const ids: [number, number] = [0, 0];
  for (const k of [0, 1] as const) {
    const a = { size: 12, flags: 0, out_ioas_id: 0 };
    await sys.ioctl(fd, IOMMUFD.IOAS_ALLOC, a);
    ids[k] = a.out_ioas_id;
  }
  const file = b.kernel.task(await sys.getpid())?.fds.get(fd);
  const ctx = file === undefined ? undefined : iommufdFromFile(file);
  if (ctx === undefined || typeof ctx === 'number') throw new Error('no iommufd context');
  const m = await sys.mmap(null, BUF_PAGES * 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
  for (let i = 0; i < BUF_PAGES; i++) m.write32(i * 4096, (0xa500_0000 | i) >>> 0);
  if (device) {
    const pdev = b.kernel.pci.device(EDU);
    if (pdev === undefined) throw new Error('no edu');
    pdev.setMaster();
    const idev = ctx.bindDevice(pdev);
    if (typeof idev === 'number') throw new Error(`bind ${idev}`);
    expect(ctx.attachDevice(idev, ids[0])).toBeGreaterThan(0);
  }
  return { sys, b, fd, ids, ctx, buf: m.addr };
}

describe.each([['no device', false, 40], ['device on the first IOAS', true, 25]] as const)('IOAS mappings against a plain model, %s (fc.commands)', (_name, device, runs) => {
  it('every MAP/UNMAP/COPY result (errno, IOVA, bytes unmapped), the areas, the pins and the device\'s view match', async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 40, size: 'max' }), async (cmds) => {
        const b = boot();
        await run(async (sys) => {
          const real = await setup(sys, b, device);
          await fc.asyncModelRun(() => ({ model: { ioas: [[], []] as [MArea[], MArea[]], nextPages: 0, device }, real }), cmds);
          // Closing with the device still bound keeps the context (the binding holds the file).
          await sys.close(real.fd);
          for (const o of real.ctx.objects.values()) if (o.type === 'device') real.ctx.unbindDevice(o);
          expect(b.kernel.userPages.pinned).toBe(0);
        }, { booted: b, spawn: { uid: 0, caps: [] } });
        expect(b.kernel.userPages.pinned).toBe(0);
        expect(b.kernel.log.dmesg()).not.toMatch(/WARNING|BUG|unaligned/);
      }),
      fcOptions(runs),
    );
  });
});
