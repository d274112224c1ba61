/**
 * Model-based property test of the VFIO compat MAP_DMA/UNMAP_DMA on `/dev/iommu` (fast-check
 * `fc.commands`; Linux `vfio_compat.c` over `io_pagetable.c`): random fixed-IOVA maps, unmaps (exact,
 * cutting, spanning, nothing) and UNMAP_ALL against a plain model of areas that predicts each errno and the
 * `size` written back.
 * - `v2`: the same commands also go to a native type1 v2 container (`/dev/vfio/vfio` with the edu's group),
 *   whose own model differs where Linux's do: a cut is `EINVAL` there and `ENOENT` here (where the whole
 *   mappings before it are already gone), and nothing mapped is success with size 0 there, `ENOENT` here.
 * - `v1`: SET_IOMMU(TYPE1) with the edu attached to the compat IOAS: every unmap first splits the areas at
 *   its ends, so it never cuts; the model also predicts the pinned pages and what the device reads.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { iommufdFromFile, type IommufdCtx } from '../kernel-shim/iommufd/index.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import { IOMMUFD, IOMMU_VFIO_IOAS, VFIO, VFIO_DMA_MAP_FLAG, VFIO_DMA_UNMAP_FLAG, VFIO_EXT } from '../kernel-shim/uapi/index.ts';
import { MAP, O, PROT } from '../kernel-shim/uapi/linux.ts';
import { DmaStatus } from '../sim/index.ts';
import { devicePort } from './dma-port.ts';
import { fcOptions } from './fc.ts';
import { errnoOf } from './sys-errno.ts';
import { boot, EDU, openChain, run, type Booted } from './vfio-fixture.ts';

const PG = 4096n;
const BUF_PAGES = 16;
const RW = VFIO_DMA_MAP_FLAG.READ | VFIO_DMA_MAP_FLAG.WRITE;
const marker = (vaPage: number): number => (0xb100_0000 | vaPage) >>> 0;

/** One mapping: `[start, last]` over buffer pages from `vaPage`, in page store `pagesId` from `pageIdx`. */
interface MArea {
  readonly start: bigint;
  readonly last: bigint;
  readonly vaPage: number;
  readonly pagesId: number;
  readonly pageIdx: number;
}

interface Model {
  readonly compat: MArea[];
  readonly native: MArea[];
  readonly v1: boolean;
  nextPages: number;
}

interface Real {
  readonly sys: Sys;
  readonly b: Booted;
  readonly fd: number;
  readonly ctx: IommufdCtx;
  /** The native type1 v2 container (v2 variant only). */
  readonly container: number | null;
  readonly buf: bigint;
}

const bytes = (a: MArea): bigint => a.last - a.start + 1n;
const sortAreas = (l: MArea[]): void => {
  l.sort((x, y) => (x.start < y.start ? -1 : 1));
};
const hit = (a: MArea, s: bigint, l: bigint): boolean => a.start <= l && s <= a.last;

/** iommufd's `iopt_unmap_iova_range`: lowest first, an area sticking out stops it with ENOENT, nothing is ENOENT. */
function compatUnmap(areas: MArea[], s: bigint, l: bigint): { e: string; n: bigint } {
  let n = 0n;
  for (;;) {
    const i = areas.findIndex((a) => hit(a, s, l));
    if (i < 0) break;
    const a = areas[i] as MArea;
    if (a.start < s || a.last > l) return { e: 'ENOENT', n };
    areas.splice(i, 1);
    n += bytes(a);
  }
  return { e: n > 0n ? 'success' : 'ENOENT', n };
}

/** Native type1 v2 (`vfio_dma_do_unmap`): a cut at either end is EINVAL, else every mapping inside goes (0 is fine). */
function nativeUnmap(areas: MArea[], s: bigint, l: bigint): { e: string; n: bigint } {
  if (areas.some((a) => a.start < s && s <= a.last) || areas.some((a) => a.start <= l && l < a.last)) return { e: 'EINVAL', n: 0n };
  let n = 0n;
  for (let i = areas.length - 1; i >= 0; i--) {
    const a = areas[i] as MArea;
    if (hit(a, s, l)) {
      n += bytes(a);
      areas.splice(i, 1);
    }
  }
  return { e: 'success', n };
}

/** `iopt_area_split` of the area holding `x` so that it ends at `x` (page-aligned IOVAs: never refused). */
function modelCut(areas: MArea[], x: bigint): void {
  const i = areas.findIndex((a) => a.start <= x && x <= a.last);
  const a = areas[i];
  if (a === undefined || x === a.start || x === a.last) return;
  const k = Number((x + 1n - a.start) / PG);
  areas.splice(i, 1, { ...a, last: x }, { start: x + 1n, last: a.last, vaPage: a.vaPage + k, pagesId: a.pagesId, pageIdx: a.pageIdx + k });
}

function modelPinned(m: Model): number {
  if (!m.v1) return 0;
  const s = new Set<string>();
  for (const a of m.compat) for (let i = 0; i < Number(bytes(a) / PG); i++) s.add(`${a.pagesId}:${a.pageIdx + i}`);
  return s.size;
}

async function compare(m: Model, r: Real, probe: number, what: string): Promise<void> {
  expect(r.ctx.vfioIoas?.iopt.areas.map((a) => [a.start, a.last]), what).toEqual(m.compat.map((a) => [a.start, a.last]));
  if (!m.v1) return;
  expect(r.b.kernel.userPages.pinned, what).toBe(modelPinned(m));
  const iova = BigInt(probe) * PG;
  const a = m.compat.find((x) => x.start <= iova && iova <= x.last);
  const res = devicePort(r.b.machine, '00:03.0').read(Number(iova), 4);
  if (a === undefined) expect(res.status, `${what}: probe p${probe}`).not.toBe(DmaStatus.OK);
  else {
    expect(res.status, `${what}: probe p${probe}`).toBe(DmaStatus.OK);
    expect(new DataView(res.bytes.buffer).getUint32(0, true), `${what}: probe p${probe}`).toBe(marker(a.vaPage + Number((iova - a.start) / PG)));
  }
}

type Cmd = fc.AsyncCommand<Model, Real>;

class MapCmd implements Cmd {
  constructor(readonly vaPage: number, readonly npages: number, readonly iovaPage: number, readonly probe: number) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    const iova = BigInt(this.iovaPage) * PG;
    const size = BigInt(this.npages) * PG;
    const last = iova + size - 1n;
    const arg = () => ({ argsz: 32, flags: RW, vaddr: r.buf + BigInt(this.vaPage) * PG, iova, size });
    const area: MArea = { start: iova, last, vaPage: this.vaPage, pagesId: m.nextPages, pageIdx: 0 };
    const wantC = m.compat.some((a) => hit(a, iova, last)) ? 'EEXIST' : 'success';
    expect(await errnoOf(r.sys.ioctl(r.fd, VFIO.IOMMU_MAP_DMA, arg())), `compat ${this.toString()}`).toBe(wantC);
    if (wantC === 'success') {
      m.compat.push(area);
      m.nextPages++;
      sortAreas(m.compat);
    }
    if (r.container !== null) {
      const wantN = m.native.some((a) => hit(a, iova, last)) ? 'EEXIST' : 'success';
      expect(await errnoOf(r.sys.ioctl(r.container, VFIO.IOMMU_MAP_DMA, arg())), `native ${this.toString()}`).toBe(wantN);
      if (wantN === 'success') {
        m.native.push(area);
        sortAreas(m.native);
      }
    }
    await compare(m, r, this.probe, this.toString());
  }
  toString(): string {
    return `map(va=p${this.vaPage}, ${this.npages}p, iova=p${this.iovaPage})`;
  }
}

class UnmapCmd implements Cmd {
  constructor(readonly iovaPage: number, readonly npages: number, readonly probe: number) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    const iova = BigInt(this.iovaPage) * PG;
    const size = BigInt(this.npages) * PG;
    const last = iova + size - 1n;
    if (m.v1) {
      // iommufd_vfio_unmap_dma cuts at the last byte and before the first (none before IOVA 0), even for size 0.
      modelCut(m.compat, BigInt.asUintN(64, last));
      if (iova !== 0n) modelCut(m.compat, iova - 1n);
    }
    const wantC = size === 0n ? { e: 'EINVAL', n: 0n } : compatUnmap(m.compat, iova, last);
    const ca = { argsz: 24, flags: 0, iova, size };
    expect(await errnoOf(r.sys.ioctl(r.fd, VFIO.IOMMU_UNMAP_DMA, ca)), `compat ${this.toString()}`).toBe(wantC.e);
    expect(ca.size, `compat ${this.toString()}: size written back`).toBe(wantC.n);
    if (r.container !== null) {
      const wantN = size === 0n ? { e: 'EINVAL', n: 0n } : nativeUnmap(m.native, iova, last);
      const na = { argsz: 24, flags: 0, iova, size };
      expect(await errnoOf(r.sys.ioctl(r.container, VFIO.IOMMU_UNMAP_DMA, na)), `native ${this.toString()}`).toBe(wantN.e);
      if (wantN.e === 'success') expect(na.size, `native ${this.toString()}: size written back`).toBe(wantN.n);
    }
    await compare(m, r, this.probe, this.toString());
  }
  toString(): string {
    return `unmap(iova=p${this.iovaPage}, ${this.npages}p)`;
  }
}

class UnmapAllCmd implements Cmd {
  constructor(readonly probe: number) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    for (const [fd, areas, who] of [[r.fd, m.compat, 'compat'], [r.container, m.native, 'native']] as const) {
      if (fd === null) continue;
      const n = areas.reduce((s, a) => s + bytes(a), 0n);
      areas.length = 0;
      const arg = { argsz: 24, flags: VFIO_DMA_UNMAP_FLAG.ALL, iova: 0n, size: 0n };
      await r.sys.ioctl(fd, VFIO.IOMMU_UNMAP_DMA, arg);
      expect(arg.size, `${who} unmap-all`).toBe(n);
    }
    await compare(m, r, this.probe, 'unmap-all');
  }
  toString(): string {
    return 'unmap-all';
  }
}

const probeArb = fc.integer({ min: 0, max: 24 });
const commands: fc.Arbitrary<Cmd>[] = [
  fc.tuple(fc.integer({ min: 0, max: BUF_PAGES - 4 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 20 }), probeArb).map(([v, n, i, p]) => new MapCmd(v, n, i, p)),
  fc.tuple(fc.integer({ min: 0, max: BUF_PAGES - 4 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 20 }), probeArb).map(([v, n, i, p]) => new MapCmd(v, n, i, p)),
  fc.tuple(fc.integer({ min: 0, max: 24 }), fc.integer({ min: 0, max: 8 }), probeArb).map(([i, n, p]) => new UnmapCmd(i, n, p)),
  fc.tuple(fc.integer({ min: 0, max: 24 }), fc.integer({ min: 0, max: 8 }), probeArb).map(([i, n, p]) => new UnmapCmd(i, n, p)),
  probeArb.map((p) => new UnmapAllCmd(p)),
];

async function setup(sys: Sys, b: Booted, v1: boolean): Promise<Real> {
  const container = v1 ? null : (await openChain(sys, VFIO_EXT.TYPE1v2_IOMMU)).container;
  const fd = await sys.open('/dev/iommu', O.RDWR);
  const alloc = { size: 12, flags: 0, out_ioas_id: 0 };
  await sys.ioctl(fd, IOMMUFD.IOAS_ALLOC, alloc);
  await sys.ioctl(fd, IOMMUFD.VFIO_IOAS, { size: 12, ioas_id: alloc.out_ioas_id, op: IOMMU_VFIO_IOAS.SET, __reserved: 0 });
  await sys.ioctl(fd, VFIO.SET_IOMMU, v1 ? VFIO_EXT.TYPE1_IOMMU : VFIO_EXT.TYPE1v2_IOMMU);
  const file = b.kernel.task(await sys.getpid())?.fds.get(fd);
  const ctx = file === undefined ? undefined : iommufdFromFile(file);
  if (ctx === undefined || typeof ctx === 'number') throw new Error('no iommufd context');
  const m = await sys.mmap(null, BUF_PAGES * 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.POPULATE);
  for (let i = 0; i < BUF_PAGES; i++) m.write32(i * 4096, marker(i));
  if (v1) {
    const pdev = b.kernel.pci.device(EDU);
    if (pdev === undefined) throw new Error('no edu');
    pdev.setMaster();
    const idev = ctx.bindDevice(pdev);
    if (typeof idev === 'number') throw new Error(`bind ${idev}`);
    expect(ctx.attachDevice(idev, alloc.out_ioas_id)).toBeGreaterThan(0);
  }
  return { sys, b, fd, ctx, container, buf: m.addr };
}

describe.each([['v2, side by side with a native type1 v2 container', false, 25], ['v1 with the edu attached', true, 20]] as const)(
  'VFIO compat MAP_DMA/UNMAP_DMA against a plain model, %s (fc.commands)', (_name, v1, runs) => {
    it('every result (errno, size written back), the areas, and with the device the pins and its view match', async () => {
      await fc.assert(
        fc.asyncProperty(fc.commands(commands, { maxCommands: 30, size: 'max' }), async (cmds) => {
          const b = boot();
          await run(async (sys) => {
            const real = await setup(sys, b, v1);
            await fc.asyncModelRun(() => ({ model: { compat: [], native: [], v1, nextPages: 0 }, real }), cmds);
            await sys.close(real.fd);
            for (const o of real.ctx.objects.values()) if (o.type === 'device') real.ctx.unbindDevice(o);
            return 0;
          }, { booted: b, spawn: { uid: 0, caps: [] } });
          expect(b.kernel.userPages.pinned).toBe(0);
          expect(b.kernel.log.dmesg()).not.toMatch(/WARNING|BUG|unaligned/);
        }),
        fcOptions(runs),
      );
    });
  },
);
