/**
 * DMA isolation under VFIO, watched from below: an observer on physical memory (`memory.observeDma`) sees
 * every frame the edu's requester id touches after translation, and compares it, at that instant, with the
 * frames the kernel's type1 driver holds pinned for the edu's container (its `vfio_dma` runs, each frame
 * also pinned in the kernel's page counts). Random edu DMA programs, written through the BAR mmap of the
 * device fd, aim at mapped, unmapped, just-unmapped and arbitrary IOVAs, interleaved with MAP/UNMAP: the
 * observer must never see a touch outside the pinned set. Control cases show it does report touches when
 * isolation is broken (a frame mapped without a pin, no IOMMU at all).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Sys } from '../kernel-shim/task/sys.ts';
import type { Mapping } from '../kernel-shim/mm/mapping.ts';
import { MAP, O, PROT } from '../kernel-shim/uapi/linux.ts';
import { VFIO } from '../kernel-shim/uapi/vfio.ts';
import { IsolationObserver, watchOwnerIsolation } from '../kernel-shim/vfio/isolation.ts';
import { IOMMUFD, IOMMU_IOAS_MAP } from '../kernel-shim/uapi/iommufd.ts';
import { IommuProt } from '../iommu/index.ts';
import { createMachine, type Machine } from '../machine/index.ts';
import { fcOptions } from './fc.ts';
import { bindVfio, boot, EDU, EDU_SYSFS, openChain, type Booted } from './vfio-fixture.ts';

const PAGE = 4096;
/** edu's registers (device-models/edu/regs.ts, spec/devices.md section 4). */
const DMA_SRC = 0x80;
const DMA_DST = 0x88;
const DMA_COUNT = 0x90;
const DMA_CMD = 0x98;
/** cmd: RUN | DIR (edu -> RAM). */
const CMD_TO_RAM = 0x3;
/** cmd: RUN (RAM -> edu). */
const CMD_FROM_RAM = 0x1;
const EDU_BUF = 0x40000;
/** The edu's transfer runs this long after the command. */
const DMA_DELAY_NS = 100_000_000;
/** The test's IOVA layout: {@link SLOTS} slots of two pages each, slot i backed by pages 2i, 2i+1 of the buffer. */
const IOVA_BASE = 0x10_0000;
const SLOTS = 3;
const SLOT_BYTES = 2 * PAGE;

/** A NUL-terminated `char *` argument. */
const cstr = (s: string): Uint8Array => new TextEncoder().encode(`${s}\0`);

/** Attaches an observer allowing the edu exactly its container's pinned frames (any other requester nothing). */
function watchEdu(b: Booted, groupId: () => number): { obs: IsolationObserver; detach: () => void; rid: number } {
  const slot = b.machine.pci.find('00:03.0');
  if (slot === undefined) throw new Error('no edu');
  const rid = slot.requesterId;
  const w = watchOwnerIsolation(b.kernel, rid, groupId);
  return { obs: w.observer, detach: w.detach, rid };
}

/** The device fd, its BAR0 mapped, bus mastering on through the config region. */
async function openEdu(sys: Sys, group: number): Promise<{ dev: number; bar: Mapping }> {
  return mapEdu(sys, await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU)));
}

/** BAR0 of device fd `dev` mapped, bus mastering on through the config region. */
async function mapEdu(sys: Sys, dev: number): Promise<{ dev: number; bar: Mapping }> {
  const ri = (index: number) => ({ argsz: 32, flags: 0, index, cap_offset: 0, size: 0n, offset: 0n });
  const bar0 = ri(0);
  await sys.ioctl(dev, VFIO.DEVICE_GET_REGION_INFO, bar0);
  const cfg = ri(7);
  await sys.ioctl(dev, VFIO.DEVICE_GET_REGION_INFO, cfg);
  const cmd = new Uint8Array(2);
  await sys.pread(dev, cmd, cfg.offset + 4n);
  // PCI_COMMAND: memory space and bus master, as a driver's pci_set_master does.
  await sys.pwrite(dev, Uint8Array.of((cmd[0] as number) | 0x06, cmd[1] as number), cfg.offset + 4n);
  const bar = await sys.mmap(null, PAGE, PROT.READ | PROT.WRITE, MAP.SHARED, dev, bar0.offset);
  return { dev, bar };
}

/** Programs one edu transfer: `toRam` writes the device buffer at `devOff` to `iova`, else reads `iova` into it. */
function program(bar: Mapping, toRam: boolean, iova: number, devOff: number, count: number): void {
  bar.write64(DMA_SRC, BigInt(toRam ? EDU_BUF + devOff : iova));
  bar.write64(DMA_DST, BigInt(toRam ? iova : EDU_BUF + devOff));
  bar.write64(DMA_COUNT, BigInt(count));
  bar.write64(DMA_CMD, BigInt(toRam ? CMD_TO_RAM : CMD_FROM_RAM));
}

const dmaMap = (vaddr: bigint, iova: number, size: number, flags: number) => ({ argsz: 32, flags, vaddr, iova: BigInt(iova), size: BigInt(size) });
const dmaUnmap = (iova: number, size: number) => ({ argsz: 24, flags: 0, iova: BigInt(iova), size: BigInt(size) });

/** The IOMMU's fault counter (how many DMA pieces it refused). */
const faults = (m: Machine): number => (m.iommu === undefined ? 0 : m.stats.counter(m.iommu.name, 'faults').value);

type Target =
  | { kind: 'slot'; slot: number; page: number; off: number }
  | { kind: 'just-unmapped'; off: number }
  | { kind: 'any'; iova: number };
type Op =
  | { op: 'map'; slot: number; pages: number; flags: number }
  | { op: 'unmap'; slot: number }
  | { op: 'dma'; toRam: boolean; target: Target; devOff: number; count: number; inRange: boolean; waitNs: number };

const targetArb: fc.Arbitrary<Target> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('slot' as const), slot: fc.integer({ min: 0, max: SLOTS }), page: fc.integer({ min: 0, max: 1 }), off: fc.integer({ min: 0, max: PAGE - 1 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('just-unmapped' as const), off: fc.integer({ min: 0, max: SLOT_BYTES - 1 }) }) },
  // Anywhere the edu's 28-bit mask reaches, and past it (the device clamps).
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('any' as const), iova: fc.integer({ min: 0, max: 2 ** 29 - 1 }) }) },
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('map' as const), slot: fc.integer({ min: 0, max: SLOTS - 1 }), pages: fc.integer({ min: 1, max: 2 }), flags: fc.constantFrom(1, 2, 3, 3) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('unmap' as const), slot: fc.integer({ min: 0, max: SLOTS - 1 }) }) },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('dma' as const),
      toRam: fc.boolean(),
      target: targetArb,
      devOff: fc.integer({ min: 0, max: PAGE - 1 }),
      count: fc.integer({ min: 1, max: PAGE }),
      inRange: fc.constantFrom(true, true, true, false),
      // No wait (the transfer lands during later MAP/UNMAPs), part of the delay, or past it.
      waitNs: fc.constantFrom(0, DMA_DELAY_NS / 2, DMA_DELAY_NS + 1, DMA_DELAY_NS + 1),
    }),
  },
);

/** How the program reaches the device: the group and a type1 container, or the cdev bound to iommufd with one IOAS. */
type Path = 'type1' | 'iommufd';

/** The DMA mapping calls of one path: MAP of `size` at `iova`, UNMAP returning the bytes removed. */
interface Mapper {
  map(vaddr: bigint, iova: number, size: number, flags: number): Promise<number>;
  /** UNMAP of `[iova, iova + size)`: the bytes removed (iommufd's "nothing there" ENOENT counts as 0). */
  unmap(iova: number, size: number): Promise<bigint>;
}

/** Opens the edu on `path`; returns its BAR0, the mapper and the group id. */
async function openPath(sys: Sys, path: Path): Promise<{ bar: Mapping; mapper: Mapper; groupId: number }> {
  if (path === 'type1') {
    const chain = await openChain(sys);
    const { bar } = await openEdu(sys, chain.group);
    return {
      bar, groupId: chain.groupId,
      mapper: {
        map: (vaddr, iova, size, flags) => sys.ioctl(chain.container, VFIO.IOMMU_MAP_DMA, dmaMap(vaddr, iova, size, flags)),
        async unmap(iova, size) {
          const u = dmaUnmap(iova, size);
          await sys.ioctl(chain.container, VFIO.IOMMU_UNMAP_DMA, u);
          return u.size;
        },
      },
    };
  }
  const groupId = await bindVfio(sys);
  const cdev = (await sys.readdir(`${EDU_SYSFS}/vfio-dev`))[0] as string;
  const dev = await sys.open(`/dev/vfio/devices/${cdev}`, O.RDWR);
  const ifd = await sys.open('/dev/iommu', O.RDWR);
  await sys.ioctl(dev, VFIO.DEVICE_BIND_IOMMUFD, { argsz: 24, flags: 0, iommufd: ifd, out_devid: 0, token_uuid_ptr: 0n });
  const alloc = { size: 12, flags: 0, out_ioas_id: 0 };
  await sys.ioctl(ifd, IOMMUFD.IOAS_ALLOC, alloc);
  await sys.ioctl(dev, VFIO.DEVICE_ATTACH_IOMMUFD_PT, { argsz: 12, flags: 0, pt_id: alloc.out_ioas_id });
  const { bar } = await mapEdu(sys, dev);
  const M = IOMMU_IOAS_MAP;
  return {
    bar, groupId,
    mapper: {
      // VFIO's READ (1) / WRITE (2) as iommufd's READABLE / WRITEABLE.
      map: (vaddr, iova, size, flags) => sys.ioctl(ifd, IOMMUFD.IOAS_MAP, {
        size: 40, flags: M.FIXED_IOVA | ((flags & 1) !== 0 ? M.READABLE : 0) | ((flags & 2) !== 0 ? M.WRITEABLE : 0),
        ioas_id: alloc.out_ioas_id, __reserved: 0, user_va: vaddr, length: BigInt(size), iova: BigInt(iova),
      }),
      async unmap(iova, size) {
        const u = { size: 24, ioas_id: alloc.out_ioas_id, iova: BigInt(iova), length: BigInt(size) };
        try {
          await sys.ioctl(ifd, IOMMUFD.IOAS_UNMAP, u);
        } catch (e) {
          if ((e as { code?: string }).code === 'ENOENT') return 0n;
          throw e;
        }
        return u.length;
      },
    },
  };
}

/** Runs `ops` in one process on a fresh machine; returns the observer and the IOMMU's fault count. */
async function runProgram(ops: readonly Op[], path: Path = 'type1'): Promise<{ obs: IsolationObserver; faults: number }> {
  const b = boot();
  let groupId = -1;
  const w = watchEdu(b, () => groupId);
  let err: unknown;
  const p = b.kernel.spawn({ comm: 'iso' }, async (sys) => {
    try {
      const opened = await openPath(sys, path);
      groupId = opened.groupId;
      const { bar, mapper } = opened;
      const buf = await sys.mmap(null, SLOTS * SLOT_BYTES, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      const mapped = new Map<number, number>();
      let justUnmapped = IOVA_BASE;
      for (const o of ops) {
        if (o.op === 'map') {
          const iova = IOVA_BASE + o.slot * SLOT_BYTES;
          const r = mapper.map(buf.addr + BigInt(o.slot * SLOT_BYTES), iova, o.pages * PAGE, o.flags);
          if (mapped.has(o.slot)) await expect(r).rejects.toMatchObject({ code: 'EEXIST' });
          else {
            await r;
            mapped.set(o.slot, o.pages);
          }
        } else if (o.op === 'unmap') {
          const iova = IOVA_BASE + o.slot * SLOT_BYTES;
          expect(await mapper.unmap(iova, SLOT_BYTES)).toBe(BigInt((mapped.get(o.slot) ?? 0) * PAGE));
          if (mapped.delete(o.slot)) justUnmapped = iova;
        } else {
          const t = o.target;
          const iova = t.kind === 'slot' ? IOVA_BASE + t.slot * SLOT_BYTES + t.page * PAGE + t.off : t.kind === 'just-unmapped' ? justUnmapped + t.off : t.iova;
          // A driver waits for the engine to be idle (a busy engine ignores the registers); the previous
          // transfer thus lands after whatever MAP/UNMAP came since it was programmed.
          while ((bar.read32(DMA_CMD) & 1) !== 0) await sys.nanosleep(DMA_DELAY_NS / 4);
          program(bar, o.toRam, iova, o.devOff, o.inRange ? Math.min(o.count, PAGE - o.devOff) : o.count);
          if (o.waitNs > 0) await sys.nanosleep(o.waitNs);
        }
      }
      // Let the last transfer land while the mappings are still there, then tear down by exit.
      await sys.nanosleep(DMA_DELAY_NS + 1);
    } catch (e) {
      err = e;
    }
    return 0;
  });
  await b.machine.sim.run();
  await p.exited;
  w.detach();
  if (err !== undefined) throw err;
  expect(b.kernel.userPages.pinned).toBe(0);
  return { obs: w.obs, faults: faults(b.machine) };
}

describe('VFIO isolation seen from physical memory', () => {
  it.each(['type1', 'iommufd'] as const)('random edu DMA programs interleaved with MAP/UNMAP (%s) never touch a frame outside what is pinned for the owner', async (path) => {
    let touches = 0;
    let faultCount = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(1, 2, 3, 3, 3), { minLength: SLOTS, maxLength: SLOTS }), fc.array(opArb, { minLength: 4, maxLength: 32 }), async (flags, ops) => {
        // Every slot starts mapped (with random permissions), so the program has something to lose.
        const r = await runProgram([...flags.map((f, slot): Op => ({ op: 'map', slot, pages: 1 + (slot % 2), flags: f })), ...ops], path);
        expect(r.obs.violations).toEqual([]);
        touches += r.obs.touches;
        faultCount += r.faults;
      }),
      fcOptions(40),
    );
    // Not vacuous: transfers reached pinned frames, and others were refused by the IOMMU.
    expect(touches).toBeGreaterThan(0);
    expect(faultCount).toBeGreaterThan(0);
  });

  it('a transfer programmed to a mapped IOVA and unmapped before it runs touches nothing (the IOMMU refuses it)', async () => {
    const r = await runProgram([
      { op: 'map', slot: 0, pages: 2, flags: 3 },
      { op: 'dma', toRam: true, target: { kind: 'slot', slot: 0, page: 0, off: 0 }, devOff: 0, count: PAGE, inRange: true, waitNs: 0 },
      { op: 'unmap', slot: 0 },
      { op: 'dma', toRam: false, target: { kind: 'just-unmapped', off: 0 }, devOff: 0, count: PAGE, inRange: true, waitNs: DMA_DELAY_NS + 1 },
    ]);
    expect(r.obs.touches).toBe(0);
    expect(r.obs.violations).toEqual([]);
    expect(r.faults).toBeGreaterThan(0);
  });

  it('a transfer after UNMAP to an IOVA the device used before touches nothing (the unmap invalidated its IOTLB entry)', async () => {
    const r = await runProgram([
      { op: 'map', slot: 2, pages: 1, flags: 3 },
      { op: 'dma', toRam: true, target: { kind: 'slot', slot: 2, page: 0, off: 0 }, devOff: 0, count: 64, inRange: true, waitNs: DMA_DELAY_NS + 1 },
      { op: 'unmap', slot: 2 },
      { op: 'dma', toRam: true, target: { kind: 'just-unmapped', off: 0 }, devOff: 0, count: 64, inRange: true, waitNs: DMA_DELAY_NS + 1 },
      { op: 'dma', toRam: false, target: { kind: 'just-unmapped', off: 0x100 }, devOff: 0, count: 64, inRange: true, waitNs: DMA_DELAY_NS + 1 },
    ]);
    expect(r.obs.touches).toBe(1);
    expect(r.obs.violations).toEqual([]);
    expect(r.faults).toBe(2);
  });

  it('a mapped transfer is seen: every frame it touches is pinned, and the observer sees them all', async () => {
    const r = await runProgram([
      { op: 'map', slot: 1, pages: 2, flags: 3 },
      // 4096 bytes from the middle of the first page: two frames.
      { op: 'dma', toRam: true, target: { kind: 'slot', slot: 1, page: 0, off: 0x800 }, devOff: 0, count: PAGE, inRange: true, waitNs: DMA_DELAY_NS + 1 },
    ]);
    expect(r.obs.touches).toBe(2);
    expect(r.obs.violations).toEqual([]);
  });
});

describe('the observer catches broken isolation (controls)', () => {
  it('a frame the kernel maps into the container\'s domain without pinning it is reported when the edu reaches it', async () => {
    const b = boot();
    let groupId = -1;
    const w = watchEdu(b, () => groupId);
    const stray = b.machine.frames.alloc();
    let err: unknown;
    const p = b.kernel.spawn({ comm: 'iso' }, async (sys) => {
      try {
        const chain = await openChain(sys);
        groupId = chain.groupId;
        const { bar } = await openEdu(sys, chain.group);
        const buf = await sys.mmap(null, PAGE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
        await sys.ioctl(chain.container, VFIO.IOMMU_MAP_DMA, dmaMap(buf.addr, IOVA_BASE, PAGE, 3));
        // The injected bug: an IOMMU mapping of a frame nobody pinned, behind type1's back.
        const pdev = b.kernel.pci.device(EDU);
        const dom = pdev === undefined ? undefined : b.kernel.iommu?.groupOf(pdev)?.domain;
        if (dom === undefined || dom === null) throw new Error('no domain');
        expect(b.kernel.iommu?.map(dom, 0x20_0000, stray * PAGE, PAGE, IommuProt.READ | IommuProt.WRITE)).toBe(0);
        program(bar, true, IOVA_BASE, 0, PAGE);
        await sys.nanosleep(DMA_DELAY_NS + 1);
        program(bar, true, 0x20_0000 + 0x10, 0, 64);
        await sys.nanosleep(DMA_DELAY_NS + 1);
      } catch (e) {
        err = e;
      }
      return 0;
    });
    await b.machine.sim.run();
    await p.exited;
    w.detach();
    if (err !== undefined) throw err;
    expect(w.obs.touches).toBe(2);
    expect(w.obs.violations).toEqual([{ rid: w.rid, frame: stray, write: true, time: expect.any(Number) as number }]);
  });

  it('without an IOMMU, a device reaches any frame: the observer reports each one (bare machine, nothing pinned)', () => {
    const m = createMachine({ memory: { size: 16 << 20 }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } });
    const slot = m.pci.find('00:03.0');
    const bar = m.pci.bars.find((x) => x.bdf === slot?.bdf && x.bar === 0);
    if (slot === undefined || bar === undefined) throw new Error('no edu');
    const obs = new IsolationObserver(() => new Set(), () => m.sim.now);
    const detach = m.memory.observeDma(obs);
    m.pci.configWrite(slot.bdf, 4, 2, m.pci.configRead(slot.bdf, 4, 2) | 0x06);
    // edu -> RAM across a frame boundary at physical 0x5ff00, then RAM -> edu from 0x9000.
    m.mmio.write64(bar.base + DMA_SRC, BigInt(EDU_BUF));
    m.mmio.write64(bar.base + DMA_DST, 0x5ff00n);
    m.mmio.write64(bar.base + DMA_COUNT, 0x200n);
    m.mmio.write64(bar.base + DMA_CMD, BigInt(CMD_TO_RAM));
    m.sim.runSync({ until: DMA_DELAY_NS + 1 });
    m.mmio.write64(bar.base + DMA_SRC, 0x9000n);
    m.mmio.write64(bar.base + DMA_DST, BigInt(EDU_BUF));
    m.mmio.write64(bar.base + DMA_COUNT, 0x10n);
    m.mmio.write64(bar.base + DMA_CMD, BigInt(CMD_FROM_RAM));
    m.sim.runSync({ until: 2 * DMA_DELAY_NS + 2 });
    expect(obs.violations.map((v) => [v.rid, v.frame, v.write])).toEqual([[slot.requesterId, 0x5f, true], [slot.requesterId, 0x60, true], [slot.requesterId, 0x9, false]]);
    detach();
    // Detached: nothing more is seen.
    m.mmio.write64(bar.base + DMA_CMD, BigInt(CMD_FROM_RAM));
    m.sim.runSync({ until: 3 * DMA_DELAY_NS + 3 });
    expect(obs.touches).toBe(3);
  });
});
