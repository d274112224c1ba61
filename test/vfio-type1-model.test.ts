/**
 * Model-based property test of the type1 IOMMU driver, v2 (and v1 with fewer runs) (fast-check `fc.commands`): random MAP_DMA
 * (aligned and unaligned iova, size and vaddr, vaddrs on good, read-only, PROT_NONE and unmapped pages,
 * every flag combination including VADDR), UNMAP_DMA (exact, partial, over holes, ALL, VADDR) and GET_INFO
 * DMA_AVAIL against a plain model: a sorted list of intervals with Linux's rules (vfio_iommu_type1.c,
 * spec/linux-uapi.md 1.7) written out once more. Each step's result is predicted exactly, errno and the
 * unmapped size written back included; after each step the device's view is compared with the model (a DMA
 * read through the edu of every page of the IOVA window either returns the first word of the frame pinned
 * for it or faults), and so are the kernel's pins, `locked_vm` and entry count.
 *
 * The process has no CAP_IPC_LOCK and a 10-page RLIMIT_MEMLOCK, and the container 4 entries
 * (`vfio_iommu_type1.dma_entry_limit=4`), so ENOMEM and ENOSPC come up in short runs.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fcOptions } from './fc.ts';
import { boot, eduDma, openChain, run, type Booted } from './vfio-fixture.ts';
import { getInfo, mapDma, PG, type1Of, U64_MAX, unmapDma } from './vfio-type1-fixture.ts';
import type { Kernel } from '../kernel-shim/kernel.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import { MAP, PROT } from '../kernel-shim/uapi/linux.ts';
import { VFIO_DMA_MAP_FLAG, VFIO_DMA_UNMAP_FLAG, VFIO_EXT } from '../kernel-shim/uapi/vfio.ts';
import { DmaStatus } from '../sim/index.ts';

const ENTRY_LIMIT = 4;
const MEMLOCK_PAGES = 10;
/** The IOVA window random requests mostly fall in: `BASE` + 0..WINDOW pages. */
const BASE = 0x10_0000n;
const WINDOW = 24;
/** The buffer: 20 pages; what each page is (by index). */
const BUF_PAGES = 20;
type PageKind = 'rw' | 'ro' | 'none';
const pageKind = (i: number): PageKind => (i === 10 || i === 11 ? 'ro' : (i >= 12 && i <= 13) || i >= 16 ? 'none' : 'rw');
/** A vaddr below every mapping of the process (mmap places top-down): never mapped. */
const FAR = 0x1_0000n;
const word = (page: number): number => (0xa500_0000 | page) >>> 0;

const MSI_START = 0xfee0_0000n;
const MSI_LAST = 0xfeef_ffffn;
const TOP = 1n << 48n;
const V = VFIO_DMA_MAP_FLAG.VADDR;
const UF = VFIO_DMA_UNMAP_FLAG;

/** One user mapping of the model. */
interface MDma {
  iova: bigint;
  size: bigint;
  vaddr: bigint;
  /** VFIO READ/WRITE flags (device reads / writes). */
  flags: number;
  invalid: boolean;
  /** The buffer page behind each IOVA page, as pinned at MAP time. */
  pages: number[];
}

interface Model {
  /** TYPE1v2 (else the v1 unmap semantics). */
  readonly v2: boolean;
  dmas: MDma[];
  avail: number;
  locked: number;
}

interface Real {
  readonly sys: Sys;
  readonly kernel: Kernel;
  readonly b: Booted;
  readonly container: number;
  readonly buf: bigint;
}

const end = (d: MDma): bigint => d.iova + d.size;

/** The buffer page of a user address, or null for any address outside the buffer. */
function bufPage(r: Real, va: bigint): number | null {
  if (va < r.buf || va >= r.buf + BigInt(BUF_PAGES) * PG) return null;
  return Number((va - r.buf) / PG);
}

/** Linux vfio_dma_do_map (v2), then the pinning of vfio_pin_pages_remote, on the model. */
function predictMap(m: Model, r: Real, flags: number, vaddr: bigint, iova: bigint, size: bigint): string {
  if ((flags & ~(VFIO_DMA_MAP_FLAG.READ | VFIO_DMA_MAP_FLAG.WRITE | V)) !== 0) return 'EINVAL';
  const prot = flags & 3;
  const setVaddr = (flags & V) !== 0;
  if ((prot !== 0 && setVaddr) || (prot === 0 && !setVaddr)) return 'EINVAL';
  if (size === 0n || ((size | iova | vaddr) & (PG - 1n)) !== 0n) return 'EINVAL';
  if (iova + size - 1n > U64_MAX || vaddr + size - 1n > U64_MAX) return 'EINVAL';
  const hit = m.dmas.find((d) => iova < end(d) && iova + size > d.iova);
  if (setVaddr) {
    if (hit === undefined) return 'ENOENT';
    if (!hit.invalid || hit.iova !== iova || hit.size !== size) return 'EINVAL';
    hit.vaddr = vaddr;
    hit.invalid = false;
    return 'success';
  }
  if (hit !== undefined) return 'EEXIST';
  if (m.avail === 0) return 'ENOSPC';
  const last = iova + size - 1n;
  const inRange = (last < MSI_START) || (iova > MSI_LAST && last < TOP);
  if (!inRange) return 'EINVAL';
  const n = Number(size / PG);
  const pages: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = bufPage(r, vaddr + BigInt(i) * PG);
    const kind = p === null ? 'none' : pageKind(p);
    // The page first (EFAULT), then the limit (ENOMEM); a device-write mapping needs writable memory.
    if (kind === 'none' || (kind === 'ro' && (prot & VFIO_DMA_MAP_FLAG.WRITE) !== 0)) return 'EFAULT';
    if (m.locked + i + 1 > MEMLOCK_PAGES) return 'ENOMEM';
    pages.push(p as number);
  }
  m.dmas.push({ iova, size, vaddr, flags: prot, invalid: false, pages });
  m.dmas.sort((a, b) => (a.iova < b.iova ? -1 : 1));
  m.avail--;
  m.locked += n;
  return 'success';
}

/**
 * Linux vfio_dma_do_unmap on the model: the errno and the size written back (null: not written). v2 refuses
 * a range that cuts a mapping; v1 walks the mappings from the first one overlapping and stops at once if
 * that one starts before the request (size 0), else takes every overlapping one whole.
 */
function predictUnmap(m: Model, flags: number, iova: bigint, size: bigint): { e: string; size: bigint | null } {
  const bad = { e: 'EINVAL', size: null };
  if ((flags & ~(UF.GET_DIRTY_BITMAP | UF.ALL | UF.VADDR)) !== 0) return bad;
  const all = (flags & UF.ALL) !== 0;
  const vaddr = (flags & UF.VADDR) !== 0;
  if ((iova & (PG - 1n)) !== 0n) return bad;
  let stop: bigint;
  if (all) {
    if (iova !== 0n || size !== 0n) return bad;
    stop = U64_MAX;
  } else {
    if (size === 0n || (size & (PG - 1n)) !== 0n || iova + size - 1n > U64_MAX) return bad;
    stop = iova + size;
  }
  if (m.v2 && !all) {
    const first = m.dmas.find((d) => d.iova <= iova && iova < end(d));
    if (first !== undefined && first.iova !== iova) return bad;
    const lastD = m.dmas.find((d) => stop - 1n > d.iova && stop - 1n < end(d));
    if (lastD !== undefined && end(lastD) !== stop) return bad;
  }
  let victims = m.dmas.filter((d) => end(d) > iova && d.iova < stop);
  if (!m.v2 && victims.length > 0 && iova > (victims[0] as MDma).iova) victims = [];
  const total = victims.reduce((s, d) => s + d.size, 0n);
  if (vaddr) {
    if (victims.some((d) => d.invalid)) return bad;
    for (const d of victims) d.invalid = true;
    return { e: 'success', size: total };
  }
  m.dmas = m.dmas.filter((d) => !victims.includes(d));
  m.avail += victims.length;
  m.locked -= victims.reduce((s, d) => s + d.pages.length, 0);
  return { e: 'success', size: total };
}

/** What the device should read at the first word of IOVA page `iova`: a word, or a fault reason. */
function expectedRead(m: Model, iova: bigint): number | string {
  const d = m.dmas.find((x) => x.iova <= iova && iova < end(x));
  if (d === undefined || (d.flags & VFIO_DMA_MAP_FLAG.READ) === 0) return 'fault 0x06';
  return word(d.pages[Number((iova - d.iova) / PG)] as number);
}

function deviceRead(b: Booted, iova: bigint): number | string {
  const r = eduDma(b).read(Number(iova), 4);
  if (r.res.status !== DmaStatus.OK) return `fault 0x${r.res.faultReason.toString(16).padStart(2, '0')}`;
  return new DataView(r.data.buffer).getUint32(0, true);
}

/** After every step: the device, the kernel's mapping list, pins, locked_vm and entries against the model. */
async function compare(m: Model, r: Real, probe: bigint): Promise<void> {
  for (let i = -1; i <= WINDOW + 6; i++) {
    const iova = BASE + BigInt(i) * PG;
    expect(deviceRead(r.b, iova), `device read at 0x${iova.toString(16)}`).toEqual(expectedRead(m, iova));
  }
  for (const d of m.dmas) expect(deviceRead(r.b, d.iova), `device read at 0x${d.iova.toString(16)}`).toEqual(expectedRead(m, d.iova));
  expect(deviceRead(r.b, probe)).toEqual(expectedRead(m, probe));
  const t = type1Of(r.kernel);
  expect(t?.dmas.map((d) => ({ iova: d.iova, size: d.size, vaddr: d.vaddr, invalid: d.vaddrInvalid }))).toEqual(
    m.dmas.map((d) => ({ iova: d.iova, size: d.size, vaddr: d.vaddr, invalid: d.invalid })),
  );
  expect(t?.dmaAvail).toBe(m.avail);
  expect(t?.pinnedPages).toBe(m.locked);
  expect(r.kernel.userPages.pinned).toBe(m.locked);
  expect(r.kernel.task(await r.sys.getpid())?.mm.lockedVm).toBe(m.locked);
}

type Cmd = fc.AsyncCommand<Model, Real>;

class MapCmd implements Cmd {
  constructor(readonly flags: number, readonly vaddr: (r: Real) => bigint, readonly vdesc: string, readonly iova: bigint, readonly size: bigint, readonly probe: bigint) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    const vaddr = this.vaddr(r);
    const want = predictMap(m, r, this.flags, vaddr, this.iova, this.size);
    expect(await mapDma(r.sys, r.container, { flags: this.flags, vaddr, iova: this.iova, size: this.size }), this.toString()).toBe(want);
    await compare(m, r, this.probe);
  }
  toString(): string {
    return `map(flags=${this.flags}, vaddr=${this.vdesc}, iova=0x${this.iova.toString(16)}, size=0x${this.size.toString(16)})`;
  }
}

class UnmapCmd implements Cmd {
  constructor(readonly flags: number, readonly iova: bigint, readonly size: bigint, readonly probe: bigint) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    const want = predictUnmap(m, this.flags, this.iova, this.size);
    const got = await unmapDma(r.sys, r.container, { flags: this.flags, iova: this.iova, size: this.size });
    // On failure the kernel copies nothing back: the caller's size stays.
    expect(got, this.toString()).toEqual({ e: want.e, size: want.size ?? this.size });
    await compare(m, r, this.probe);
  }
  toString(): string {
    return `unmap(flags=${this.flags}, iova=0x${this.iova.toString(16)}, size=0x${this.size.toString(16)})`;
  }
}

/** An UNMAP aimed at the k-th mapping of the moment (so that requests meet mappings): exact, bisecting, or wider. */
class UnmapAtCmd implements Cmd {
  constructor(readonly k: number, readonly mode: 'exact' | 'head' | 'tail' | 'wider' | 'vaddr', readonly probe: bigint) {}
  check(m: Readonly<Model>): boolean {
    return m.dmas.length > 0;
  }
  async run(m: Model, r: Real): Promise<void> {
    const d = m.dmas[this.k % m.dmas.length] as MDma;
    const req: Record<UnmapAtCmd['mode'], readonly [bigint, bigint, number]> = {
      exact: [d.iova, d.size, 0],
      head: [d.iova, PG, 0],
      tail: [end(d) - PG, PG, 0],
      // (u64 arithmetic: below a mapping at 0 this wraps, which is EINVAL.)
      wider: [BigInt.asUintN(64, d.iova - PG), d.size + 2n * PG, 0],
      vaddr: [d.iova, d.size, UF.VADDR],
    };
    const [iova, size, flags] = req[this.mode];
    await new UnmapCmd(flags, iova, size, this.probe).run(m, r);
  }
  toString(): string {
    return `unmapAt(${this.k}, ${this.mode})`;
  }
}

class AvailCmd implements Cmd {
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    const i = await getInfo(r.sys, r.container);
    expect(i.e).toBe('success');
    expect(i.avail).toBe(m.avail);
  }
  toString(): string {
    return 'getInfo()';
  }
}

const misalign = fc.oneof({ weight: 20, arbitrary: fc.constant(0n) }, { weight: 1, arbitrary: fc.constantFrom(1n, 0x800n) });
const windowIova = fc.tuple(fc.integer({ min: -1, max: WINDOW }), misalign).map(([p, x]) => BASE + BigInt(p) * PG + x);
const iovaArb = fc.oneof(
  { weight: 12, arbitrary: windowIova },
  { weight: 1, arbitrary: fc.constantFrom(0n, MSI_START - PG, MSI_START, MSI_LAST + 1n - PG, MSI_LAST + 1n, TOP - PG, TOP, U64_MAX - PG + 1n) },
);
const sizeArb = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 1, max: 6 }).map((n) => BigInt(n) * PG) },
  { weight: 1, arbitrary: fc.constantFrom(0n, 0x1800n, 2n ** 63n, U64_MAX - PG + 1n) },
);
const vaddrArb: fc.Arbitrary<[(r: Real) => bigint, string]> = fc.oneof(
  // Mostly the ten good pages, so that most maps can succeed; the rest of the buffer too.
  { weight: 12, arbitrary: fc.tuple(fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 9 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: BUF_PAGES - 1 }) }), misalign).map(([p, x]): [(r: Real) => bigint, string] => [(r) => r.buf + BigInt(p) * PG + x, `buf+${p}p+${x}`]) },
  { weight: 1, arbitrary: fc.constantFrom<[(r: Real) => bigint, string]>([() => FAR, 'far'], [() => U64_MAX - PG + 1n, 'top']) },
);
const mapFlags = fc.oneof(
  { weight: 8, arbitrary: fc.constant(3) },
  { weight: 3, arbitrary: fc.constantFrom(1, 2) },
  { weight: 2, arbitrary: fc.constant(V) },
  { weight: 1, arbitrary: fc.constantFrom(0, V | 1, 3 | 8, 1 << 31) },
);
const probeArb = fc.bigInt({ min: 0n, max: TOP - 1n }).map((x) => x & ~(PG - 1n));

const mapArb = fc.tuple(mapFlags, vaddrArb, iovaArb, sizeArb, probeArb).map(([f, [va, vd], iova, size, probe]) => new MapCmd(f, va, vd, iova, size, probe));
const unmapArb = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(fc.constantFrom(0, 0, 0, UF.VADDR), iovaArb, fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 10 }).map((n) => BigInt(n) * PG) }, { weight: 1, arbitrary: sizeArb }), probeArb).map(([f, i, s, p]) => new UnmapCmd(f, i, s, p)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(UF.ALL, UF.ALL | UF.VADDR), probeArb).map(([f, p]) => new UnmapCmd(f, 0n, 0n, p)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(UF.ALL, 1 << 3, UF.GET_DIRTY_BITMAP | UF.ALL), iovaArb, sizeArb, probeArb).map(([f, i, s, p]) => new UnmapCmd(f, i, s, p)) },
);
const unmapAtArb = fc.tuple(fc.nat(7), fc.constantFrom('exact', 'exact', 'head', 'tail', 'wider', 'vaddr') as fc.Arbitrary<UnmapAtCmd['mode']>, probeArb)
  .map(([k, mode, p]) => new UnmapAtCmd(k, mode, p));
// fc.commands picks uniformly among its arbitraries: the repeats are the weights.
const commands: fc.Arbitrary<Cmd>[] = [mapArb, mapArb, mapArb, mapArb, unmapArb, unmapAtArb, fc.constant(new AvailCmd())];

/** Sets up the process side: the chain and the 20-page buffer with its read-only and PROT_NONE pages. */
async function setup(sys: Sys, kernel: Kernel, b: Booted, v2: boolean): Promise<Real> {
  const { container } = await openChain(sys, v2 ? VFIO_EXT.TYPE1v2_IOMMU : VFIO_EXT.TYPE1_IOMMU);
  const m = await sys.mmap(null, BUF_PAGES * 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
  for (let i = 0; i < BUF_PAGES; i++) m.write32(i * 4096, word(i));
  for (let i = 0; i < BUF_PAGES; i++) {
    const k = pageKind(i);
    if (k !== 'rw') await sys.mprotect(m.addr + BigInt(i) * PG, 4096, k === 'ro' ? PROT.READ : PROT.NONE);
  }
  expect(kernel.task(await sys.getpid())?.mm.find(Number(FAR))).toBeUndefined();
  return { sys, kernel, b, container, buf: m.addr };
}

describe.each([['v2', true, 40], ['v1', false, 15]] as const)('type1 %s against a plain model (fc.commands)', (_name, v2, runs) => {
  it('every MAP/UNMAP/GET_INFO result (errno, unmapped size, DMA_AVAIL) and the device\'s view match the model', async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 40, size: 'max' }), async (cmds) => {
        const b = boot({ cmdline: `vfio_iommu_type1.dma_entry_limit=${ENTRY_LIMIT}` });
        await run(async (sys, { kernel }) => {
          const real = await setup(sys, kernel, b, v2);
          await fc.asyncModelRun(() => ({ model: { v2, dmas: [], avail: ENTRY_LIMIT, locked: 0 }, real }), cmds);
        }, { booted: b, spawn: { uid: 0, caps: [], rlimits: { memlock: MEMLOCK_PAGES * 4096 } } });
        // Exit released everything, and the kernel never warned (no dma-iommu or IOMMU WARNING).
        expect(b.kernel.userPages.pinned).toBe(0);
        expect(b.kernel.log.dmesg()).not.toMatch(/WARNING|BUG/);
      }),
      fcOptions(runs),
    );
  });
});
