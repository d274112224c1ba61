/**
 * The VFIO container ioctls on `/dev/iommu` (spec section 3.2 "VFIO compat"; Linux
 * `drivers/iommu/iommufd/vfio_compat.c`): each rule with its errno in Linux's check order, the GET_INFO
 * capability chain iommufd builds, type1 v1 emulated by splitting areas, and the edu behind VT-d bound
 * through its VFIO device cdev to the compat IOAS, whose MAP_DMA reaches the pinned page and whose
 * UNMAP_DMA makes it fault.
 */
import { describe, expect, it } from 'vitest';
import { iommufdFromFile, type IommufdCtx } from '../kernel-shim/iommufd/index.ts';
import { MAP, O, PROT, type Sys } from '../kernel-shim/index.ts';
import {
  IOMMUFD, IOMMU_VFIO_IOAS, VFIO, VFIO_DMA_MAP_FLAG, VFIO_DMA_UNMAP_FLAG, VFIO_EXT, ioctlLayout, vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info,
} from '../kernel-shim/uapi/index.ts';
import { bindVfioPci, withMachine } from '../userspace/index.ts';
import { devicePort } from './dma-port.ts';
import { errnoOf } from './sys-errno.ts';
import { boot, run, type Booted } from './vfio-fixture.ts';

const PAGE = 4096;
const PG = 4096n;
const U64_MAX = (1n << 64n) - 1n;
const RW = VFIO_DMA_MAP_FLAG.READ | VFIO_DMA_MAP_FLAG.WRITE;

const mapArg = (vaddr: bigint, iova: bigint, size: bigint, flags: number = RW, argsz = 32) => ({ argsz, flags, vaddr, iova, size });
const unmapArg = (iova: bigint, size: bigint, flags = 0, argsz = 24) => ({ argsz, flags, iova, size });

/** Opens `/dev/iommu`, allocates an IOAS and (unless `compat` is false) makes it the compat IOAS. */
async function openCompat(sys: Sys, b: Booted, compat = true): Promise<{ fd: number; ioasId: number; ctx: IommufdCtx }> {
  const fd = await sys.open('/dev/iommu', O.RDWR);
  const alloc = { size: 12, flags: 0, out_ioas_id: 0 };
  await sys.ioctl(fd, IOMMUFD.IOAS_ALLOC, alloc);
  if (compat) await sys.ioctl(fd, IOMMUFD.VFIO_IOAS, { size: 12, ioas_id: alloc.out_ioas_id, op: IOMMU_VFIO_IOAS.SET, __reserved: 0 });
  const file = b.kernel.task(await sys.getpid())?.fds.get(fd);
  const ctx = file === undefined ? undefined : iommufdFromFile(file);
  if (ctx === undefined || typeof ctx === 'number') throw new Error('no iommufd context');
  return { fd, ioasId: alloc.out_ioas_id, ctx };
}

const areasOf = (ctx: IommufdCtx): string[] => (ctx.vfioIoas?.iopt.areas ?? []).map((a) => `${a.start.toString(16)}-${a.last.toString(16)}`);

describe('VFIO compat on /dev/iommu: the rules', () => {
  it('object-form arguments pick the container structs where device-fd ioctls share the numbers', () => {
    // 0x3B70/0x3B71 are also GET_PCI_HOT_RESET_INFO / PCI_HOT_RESET on a device fd: the fields decide.
    expect(ioctlLayout(VFIO.IOMMU_MAP_DMA, mapArg(0n, 0n, PG))).toBe(vfio_iommu_type1_dma_map);
    expect(ioctlLayout(VFIO.IOMMU_UNMAP_DMA, unmapArg(0n, PG))).toBe(vfio_iommu_type1_dma_unmap);
    expect(ioctlLayout(VFIO.IOMMU_GET_INFO, { argsz: 16, flags: 0, iova_pgsizes: 0n })).toBe(vfio_iommu_type1_info);
  });

  it('GET_API_VERSION, CHECK_EXTENSION, SET_IOMMU, and ENOTTY for the rest', async () => {
    const b = boot();
    await run(async (sys) => {
      const { fd } = await openCompat(sys, b, false);
      expect(await sys.ioctl(fd, VFIO.GET_API_VERSION, 0)).toBe(0);
      // iommufd_vfio_check_extension: TYPE1, TYPE1v2, UNMAP_ALL (and NOIOMMU with CONFIG_VFIO_NOIOMMU).
      for (const [ext, want] of [
        [VFIO_EXT.TYPE1_IOMMU, 1], [VFIO_EXT.TYPE1v2_IOMMU, 1], [VFIO_EXT.UNMAP_ALL, 1], [VFIO_EXT.NOIOMMU_IOMMU, 1],
        [VFIO_EXT.UPDATE_VADDR, 0], [VFIO_EXT.SPAPR_TCE_IOMMU, 0], [VFIO_EXT.TYPE1_NESTING_IOMMU, 0], [VFIO_EXT.EEH, 0], [77, 0],
      ] as const) {
        expect(await sys.ioctl(fd, VFIO.CHECK_EXTENSION, ext), `ext ${ext}`).toBe(want);
      }
      // DMA_CC asks the compat IOAS (iommufd_vfio_cc_iommu): ENODEV without one.
      expect(await errnoOf(sys.ioctl(fd, VFIO.CHECK_EXTENSION, VFIO_EXT.DMA_CC_IOMMU))).toBe('ENODEV');
      // SET_IOMMU: the type first (EINVAL even without an IOAS), then the compat IOAS (ENODEV).
      expect(await errnoOf(sys.ioctl(fd, VFIO.SET_IOMMU, VFIO_EXT.NOIOMMU_IOMMU))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(fd, VFIO.SET_IOMMU, VFIO_EXT.SPAPR_TCE_IOMMU))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(fd, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(fd, VFIO.SET_IOMMU, VFIO_EXT.TYPE1_IOMMU))).toBe('ENODEV');
      // MAP/UNMAP/GET_INFO without a compat IOAS: ENODEV, after their argsz and flag checks.
      const m = await sys.mmap(null, PAGE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      expect(await errnoOf(sys.ioctl(fd, VFIO.IOMMU_MAP_DMA, mapArg(m.addr, 0n, PG)))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(fd, VFIO.IOMMU_MAP_DMA, mapArg(m.addr, 0n, PG, VFIO_DMA_MAP_FLAG.VADDR)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(fd, VFIO.IOMMU_UNMAP_DMA, unmapArg(0n, PG)))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(fd, VFIO.IOMMU_UNMAP_DMA, unmapArg(0n, PG, VFIO_DMA_UNMAP_FLAG.VADDR)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(fd, VFIO.IOMMU_GET_INFO, { argsz: 16, flags: 0, iova_pgsizes: 0n }))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(fd, VFIO.IOMMU_GET_INFO, { argsz: 15, flags: 0, iova_pgsizes: 0n }))).toBe('EINVAL');
      // A bad pointer: the copy of minsz fails first.
      expect(await errnoOf(sys.ioctl(fd, VFIO.IOMMU_MAP_DMA, 8n))).toBe('EFAULT');
      // Other VFIO numbers, DIRTY_PAGES and the group's and device's: ENOTTY; so is a number past iommufd's table.
      for (const req of [VFIO.IOMMU_DIRTY_PAGES, VFIO.GROUP_GET_STATUS, VFIO.GROUP_SET_CONTAINER, VFIO.DEVICE_GET_INFO, VFIO.DEVICE_BIND_IOMMUFD, VFIO.IOMMU_ENABLE, 0x3b8f]) {
        expect(await errnoOf(sys.ioctl(fd, req, 0n)), `request 0x${req.toString(16)}`).toBe('ENOTTY');
      }
      // With a compat IOAS: SET_IOMMU succeeds (again and again); DMA_CC is 1 with no HWPT to disagree.
      const a = { size: 12, flags: 0, out_ioas_id: 0 };
      await sys.ioctl(fd, IOMMUFD.IOAS_ALLOC, a);
      await sys.ioctl(fd, IOMMUFD.VFIO_IOAS, { size: 12, ioas_id: a.out_ioas_id, op: IOMMU_VFIO_IOAS.SET, __reserved: 0 });
      expect(await sys.ioctl(fd, VFIO.CHECK_EXTENSION, VFIO_EXT.DMA_CC_IOMMU)).toBe(1);
      expect(await sys.ioctl(fd, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU)).toBe(0);
      expect(await sys.ioctl(fd, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU)).toBe(0);
      expect(await errnoOf(sys.ioctl(fd, VFIO.SET_IOMMU, 0))).toBe('EINVAL');
      // CLEAR takes it away again.
      await sys.ioctl(fd, IOMMUFD.VFIO_IOAS, { size: 12, ioas_id: 0, op: IOMMU_VFIO_IOAS.CLEAR, __reserved: 0 });
      expect(await errnoOf(sys.ioctl(fd, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU))).toBe('ENODEV');
      await sys.close(fd);
    }, { booted: b });
  });

  it('GET_INFO: page sizes, then DMA_AVAIL (U32_MAX) and IOVA_RANGE, 8-byte aligned; a short buffer gets the size needed', async () => {
    const b = boot();
    await run(async (sys) => {
      const { fd } = await openCompat(sys, b);
      // The header alone: argsz comes back as 24 + 16 (DMA_AVAIL padded) + 32 (IOVA_RANGE with one range).
      const short = new Uint8Array(16);
      new DataView(short.buffer).setUint32(0, 16, true);
      await sys.ioctl(fd, VFIO.IOMMU_GET_INFO, short);
      const sv = new DataView(short.buffer);
      expect(sv.getUint32(0, true)).toBe(72);
      expect(sv.getUint32(4, true)).toBe(3);
      // No domain: every size from PAGE_SIZE up (ULONG_MAX folded at PAGE_SIZE).
      expect(sv.getBigUint64(8, true)).toBe(U64_MAX ^ (PG - 1n));
      // The full chain.
      const full = new Uint8Array(72);
      const fv = new DataView(full.buffer);
      fv.setUint32(0, 72, true);
      await sys.ioctl(fd, VFIO.IOMMU_GET_INFO, full);
      expect([fv.getUint32(0, true), fv.getUint32(4, true), fv.getUint32(16, true)]).toEqual([72, 3, 24]);
      // DMA_AVAIL at 24: id 3, version 1, next 40, avail U32_MAX.
      expect([fv.getUint16(24, true), fv.getUint16(26, true), fv.getUint32(28, true), fv.getUint32(32, true)]).toEqual([3, 1, 40, 0xffff_ffff]);
      // IOVA_RANGE at 40: id 1, version 1, last (next 0), one range [0, U64_MAX].
      expect([fv.getUint16(40, true), fv.getUint16(42, true), fv.getUint32(44, true), fv.getUint32(48, true)]).toEqual([1, 1, 0, 1]);
      expect([fv.getBigUint64(56, true), fv.getBigUint64(64, true)]).toEqual([0n, U64_MAX]);
      // Room for DMA_AVAIL only: it is written, IOVA_RANGE is not, cap_offset stays 0.
      const mid = new Uint8Array(56).fill(0xee);
      new DataView(mid.buffer).setUint32(0, 56, true);
      await sys.ioctl(fd, VFIO.IOMMU_GET_INFO, mid);
      const mv = new DataView(mid.buffer);
      expect([mv.getUint32(0, true), mv.getUint32(16, true), mv.getUint16(24, true), mv.getUint32(28, true)]).toEqual([72, 0, 3, 40]);
      expect(mv.getUint32(40, true)).toBe(0xeeee_eeee);
      // TYPE1 (large pages off) raises the alignment to PAGE_SIZE: the same page sizes.
      await sys.ioctl(fd, VFIO.SET_IOMMU, VFIO_EXT.TYPE1_IOMMU);
      const info = { argsz: 16, flags: 0, iova_pgsizes: 0n };
      await sys.ioctl(fd, VFIO.IOMMU_GET_INFO, info);
      expect(info.iova_pgsizes).toBe(U64_MAX ^ (PG - 1n));
      await sys.close(fd);
    }, { booted: b });
  });

  it('MAP_DMA: argsz and flags EINVAL, then the IOAS\'s rules at a fixed IOVA (object-form marshalling)', async () => {
    const b = boot();
    await run(async (sys) => {
      const { fd, ctx } = await openCompat(sys, b);
      const m = await sys.mmap(null, 8 * PAGE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      const map = (a: object) => sys.ioctl(fd, VFIO.IOMMU_MAP_DMA, a);
      expect(await errnoOf(map(mapArg(m.addr, 0x10_0000n, PG, RW, 31)))).toBe('EINVAL');
      expect(await errnoOf(map(mapArg(m.addr, 0x10_0000n, PG, RW | VFIO_DMA_MAP_FLAG.VADDR)))).toBe('EINVAL');
      expect(await errnoOf(map(mapArg(m.addr, 0x10_0000n, PG, 8)))).toBe('EINVAL');
      expect(await errnoOf(map(mapArg(m.addr, 0x10_0000n, 0n)))).toBe('EINVAL');
      // iopt_alloc_pages: a length within a page of SIZE_MAX EINVAL, vaddr + size wrapping EOVERFLOW.
      expect(await errnoOf(map(mapArg(m.addr, 0n, U64_MAX - PG + 1n)))).toBe('EINVAL');
      expect(await errnoOf(map(mapArg(U64_MAX - PG + 1n, 0x10_0000n, 2n * PG)))).toBe('EOVERFLOW');
      // iopt_check_iova: iova + size - 1 past U64_MAX EOVERFLOW (no ULONG_MAX pre-check here, unlike IOAS_MAP).
      expect(await errnoOf(map(mapArg(m.addr, U64_MAX - PG + 2n, PG)))).toBe('EOVERFLOW');
      // The object marshals as vfio_iommu_type1_dma_map (not the device fd's PCI_HOT_RESET on the same number).
      await map(mapArg(m.addr, 0x10_0000n, 2n * PG));
      expect(areasOf(ctx)).toEqual(['100000-101fff']);
      expect(await errnoOf(map(mapArg(m.addr + 2n * PG, 0x10_1000n, PG)))).toBe('EEXIST');
      // No device: the IOAS's alignment is 1 and pinning is lazy, so an odd IOVA and an unmapped vaddr map.
      await map(mapArg(m.addr + 3n * PG, 0x20_0001n, PG));
      await map(mapArg(0x7000_0000n, 0x30_0000n, PG));
      // Neither READ nor WRITE is not refused by the compat layer (the IOMMU driver would, with a domain).
      await map(mapArg(m.addr + 4n * PG, 0x40_0000n, PG, 0));
      expect(areasOf(ctx)).toEqual(['100000-101fff', '200001-201000', '300000-300fff', '400000-400fff']);
      // TYPE1 cannot disable large pages over an area off page alignment: EADDRINUSE.
      expect(await errnoOf(sys.ioctl(fd, VFIO.SET_IOMMU, VFIO_EXT.TYPE1_IOMMU))).toBe('EADDRINUSE');
      await sys.ioctl(fd, VFIO.IOMMU_UNMAP_DMA, unmapArg(0x20_0001n, PG));
      await sys.ioctl(fd, VFIO.SET_IOMMU, VFIO_EXT.TYPE1_IOMMU);
      expect(await errnoOf(map(mapArg(m.addr + 5n * PG, 0x50_0800n, PG)))).toBe('EINVAL');
      expect(await errnoOf(map(mapArg(m.addr + 5n * PG, 0x50_0000n, PG / 2n)))).toBe('EINVAL');
      await sys.close(fd);
    }, { booted: b });
  });

  it('UNMAP_DMA: flags, ALL, and iommufd\'s ENOENT for nothing mapped and for a v2 cut (native type1: success / EINVAL)', async () => {
    const b = boot();
    await run(async (sys) => {
      const { fd, ctx } = await openCompat(sys, b);
      await sys.ioctl(fd, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU);
      const m = await sys.mmap(null, 8 * PAGE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      const unmap = (a: object) => sys.ioctl(fd, VFIO.IOMMU_UNMAP_DMA, a);
      expect(await errnoOf(unmap(unmapArg(0n, PG, 0, 23)))).toBe('EINVAL');
      expect(await errnoOf(unmap(unmapArg(0n, PG, VFIO_DMA_UNMAP_FLAG.GET_DIRTY_BITMAP)))).toBe('EINVAL');
      expect(await errnoOf(unmap(unmapArg(0n, PG, VFIO_DMA_UNMAP_FLAG.VADDR)))).toBe('EINVAL');
      expect(await errnoOf(unmap(unmapArg(0n, 0n, 8)))).toBe('EINVAL');
      // ALL: iova and size must be 0; an empty IOAS is success with size 0.
      expect(await errnoOf(unmap(unmapArg(PG, 0n, VFIO_DMA_UNMAP_FLAG.ALL)))).toBe('EINVAL');
      expect(await errnoOf(unmap(unmapArg(0n, PG, VFIO_DMA_UNMAP_FLAG.ALL)))).toBe('EINVAL');
      const all0 = unmapArg(0n, 0n, VFIO_DMA_UNMAP_FLAG.ALL);
      await unmap(all0);
      expect(all0.size).toBe(0n);
      // Nothing mapped: ENOENT (native type1 v2: success, size 0). Size 0 EINVAL, wrap EOVERFLOW.
      expect(await errnoOf(unmap(unmapArg(0x10_0000n, PG)))).toBe('ENOENT');
      expect(await errnoOf(unmap(unmapArg(0x10_0000n, 0n)))).toBe('EINVAL');
      expect(await errnoOf(unmap(unmapArg(2n * PG, U64_MAX)))).toBe('EOVERFLOW');
      for (const [i, iova] of [0x10_0000n, 0x10_2000n, 0x10_6000n].entries()) {
        await sys.ioctl(fd, VFIO.IOMMU_MAP_DMA, mapArg(m.addr + BigInt(2 * i) * PG, iova, 2n * PG));
      }
      // A v2 unmap that cuts a mapping: ENOENT (native: EINVAL), nothing removed, size written back 0.
      const cut = unmapArg(0x10_1000n, PG);
      expect(await errnoOf(unmap(cut))).toBe('ENOENT');
      expect(cut.size).toBe(0n);
      // A range whose last mapping sticks out: the whole ones before it go, size says how much, then ENOENT.
      const over = unmapArg(0x10_0000n, 0x7000n);
      expect(await errnoOf(unmap(over))).toBe('ENOENT');
      expect(over.size).toBe(0x4000n);
      expect(areasOf(ctx)).toEqual(['106000-107fff']);
      // Whole mappings with a hole between them: success, the bytes removed.
      await sys.ioctl(fd, VFIO.IOMMU_MAP_DMA, mapArg(m.addr, 0x10_0000n, PG));
      const span = unmapArg(0x10_0000n, 0x8000n);
      await unmap(span);
      expect(span.size).toBe(0x3000n);
      expect(areasOf(ctx)).toEqual([]);
      // ALL removes everything and says how much.
      await sys.ioctl(fd, VFIO.IOMMU_MAP_DMA, mapArg(m.addr, 0x10_0000n, 3n * PG));
      await sys.ioctl(fd, VFIO.IOMMU_MAP_DMA, mapArg(m.addr, 0x20_0000n, PG));
      const all = unmapArg(0n, 0n, VFIO_DMA_UNMAP_FLAG.ALL);
      await unmap(all);
      expect(all.size).toBe(0x4000n);
      // DESTROY of the compat IOAS (it holds only mappings) leaves no compat IOAS: ENODEV.
      const ioasId = ctx.vfioIoas?.id ?? 0;
      await sys.ioctl(fd, IOMMUFD.DESTROY, { size: 8, id: ioasId });
      expect(await errnoOf(unmap(all))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(fd, VFIO.IOMMU_MAP_DMA, mapArg(m.addr, 0n, PG)))).toBe('ENODEV');
      await sys.close(fd);
    }, { booted: b });
  });

  it('TYPE1 (v1): large pages off, an unmap splits the areas at its ends; a cut off the alignment is EINVAL', async () => {
    const b = boot();
    await run(async (sys) => {
      const { fd, ctx } = await openCompat(sys, b);
      await sys.ioctl(fd, VFIO.SET_IOMMU, VFIO_EXT.TYPE1_IOMMU);
      expect(ctx.vfioIoas?.iopt.disableLargePages).toBe(true);
      const m = await sys.mmap(null, 8 * PAGE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      await sys.ioctl(fd, VFIO.IOMMU_MAP_DMA, mapArg(m.addr, 0x10_0000n, 4n * PG));
      const mid = unmapArg(0x10_1000n, PG);
      await sys.ioctl(fd, VFIO.IOMMU_UNMAP_DMA, mid);
      expect(mid.size).toBe(PG);
      expect(areasOf(ctx)).toEqual(['100000-100fff', '102000-103fff']);
      // A cut whose second half would start off PAGE_SIZE: EINVAL before anything is unmapped.
      expect(await errnoOf(sys.ioctl(fd, VFIO.IOMMU_UNMAP_DMA, unmapArg(0x10_2000n, 0x800n)))).toBe('EINVAL');
      expect(areasOf(ctx)).toEqual(['100000-100fff', '102000-103fff']);
      // Size 0 still cuts before iopt_unmap_iova refuses it (EINVAL): the split stays, nothing is removed.
      expect(await errnoOf(sys.ioctl(fd, VFIO.IOMMU_UNMAP_DMA, unmapArg(0x10_3000n, 0n)))).toBe('EINVAL');
      expect(areasOf(ctx)).toEqual(['100000-100fff', '102000-102fff', '103000-103fff']);
      // The tail of a mapping, and a range starting at IOVA 0 (one cut only).
      await sys.ioctl(fd, VFIO.IOMMU_MAP_DMA, mapArg(m.addr, 0n, 2n * PG));
      await sys.ioctl(fd, VFIO.IOMMU_UNMAP_DMA, unmapArg(0n, PG));
      expect(areasOf(ctx)).toEqual(['1000-1fff', '100000-100fff', '102000-102fff', '103000-103fff']);
      await sys.close(fd);
    }, { booted: b });
  });
});

describe('VFIO compat on /dev/iommu: the edu through its VFIO device cdev on the compat IOAS', () => {
  it('MAP_DMA reaches the pinned page, UNMAP_DMA makes it fault, v1 splits keep the rest mapped; close leaves nothing', async () => {
    await withMachine({ iommu: { enabled: true }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } }, async ({ spawn, run: go, machine, kernel }) => {
      const p = spawn('drv', async (sys) => {
        await bindVfioPci(sys, '00:03.0');
        const dev = await sys.open('/dev/vfio/devices/vfio0', O.RDWR);
        const iommufd = await sys.open('/dev/iommu', O.RDWR);
        const bind = { argsz: 16, flags: 0, iommufd, out_devid: 0, token_uuid_ptr: 0n };
        await sys.ioctl(dev, VFIO.DEVICE_BIND_IOMMUFD, bind);
        const alloc = { size: 12, flags: 0, out_ioas_id: 0 };
        await sys.ioctl(iommufd, IOMMUFD.IOAS_ALLOC, alloc);
        await sys.ioctl(iommufd, IOMMUFD.VFIO_IOAS, { size: 12, ioas_id: alloc.out_ioas_id, op: IOMMU_VFIO_IOAS.SET, __reserved: 0 });
        const get = { size: 12, ioas_id: 0, op: IOMMU_VFIO_IOAS.GET, __reserved: 0 };
        await sys.ioctl(iommufd, IOMMUFD.VFIO_IOAS, get);
        expect(get.ioas_id).toBe(alloc.out_ioas_id);
        const at = { argsz: 12, flags: 0, pt_id: alloc.out_ioas_id };
        await sys.ioctl(dev, VFIO.DEVICE_ATTACH_IOMMUFD_PT, at);
        expect(at.pt_id).not.toBe(alloc.out_ioas_id);
        // Attached: VT-d's page sizes and its IOVA ranges (the MSI window and the aperture reserved).
        const info = new Uint8Array(128);
        const iv = new DataView(info.buffer);
        iv.setUint32(0, 128, true);
        await sys.ioctl(iommufd, VFIO.IOMMU_GET_INFO, info);
        const pgsizes = iv.getBigUint64(8, true);
        expect(pgsizes & 0xfffn).toBe(0n);
        expect(pgsizes & PG).toBe(PG);
        const nr = iv.getUint32(48, true);
        const ranges = Array.from({ length: nr }, (_, i) => [iv.getBigUint64(56 + 16 * i, true), iv.getBigUint64(64 + 16 * i, true)]);
        expect(ranges[0]).toEqual([0n, 0xfedf_ffffn]);
        expect(iv.getUint32(0, true)).toBe(24 + 16 + 16 + 16 * nr);
        // VT-d without snoop control does not enforce cache coherency: DMA_CC is 0 once a HWPT exists.
        const sc = ((kernel.iommu?.unit.caps.ecap ?? 0n) >> 7n) & 1n;
        expect(await sys.ioctl(iommufd, VFIO.CHECK_EXTENSION, VFIO_EXT.DMA_CC_IOMMU)).toBe(Number(sc));
        // SET_IOMMU(TYPE1) before any mapping (iopt_disable_large_pages refuses once a domain holds areas).
        await sys.ioctl(iommufd, VFIO.SET_IOMMU, VFIO_EXT.TYPE1_IOMMU);
        const buf = await sys.mmap(null, 4 * PAGE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.POPULATE);
        for (let i = 0; i < 4; i++) buf.write32(i * PAGE, 0xc0de_0000 + i);
        const iova = 0x20_0000n;
        const pinnedBefore = kernel.userPages.pinned;
        await sys.ioctl(iommufd, VFIO.IOMMU_MAP_DMA, mapArg(buf.addr, iova, 4n * PG));
        expect(kernel.userPages.pinned - pinnedBefore).toBe(4);
        // A mapping of unmapped memory with a device attached pins at once: EFAULT.
        expect(await errnoOf(sys.ioctl(iommufd, VFIO.IOMMU_MAP_DMA, mapArg(0x7000_0000n, 0x40_0000n, PG)))).toBe('EFAULT');
        // Neither READ nor WRITE: the VT-d driver refuses the empty protection.
        expect(await errnoOf(sys.ioctl(iommufd, VFIO.IOMMU_MAP_DMA, mapArg(buf.addr, 0x40_0000n, PG, 0)))).toBe('EINVAL');
        // Over the MSI window: a reserved range, EINVAL.
        expect(await errnoOf(sys.ioctl(iommufd, VFIO.IOMMU_MAP_DMA, mapArg(buf.addr, 0xfee0_0000n, PG)))).toBe('EINVAL');
        await sys.pwrite(dev, new Uint8Array([0x06, 0x00]), (7n << 40n) + 4n);
        const port = devicePort(machine, '00:03.0');
        for (let i = 0; i < 4; i++) {
          const r = port.read(Number(iova) + i * PAGE, 4);
          expect(r.status, `page ${i}`).toBe(0);
          expect(new DataView(r.bytes.buffer).getUint32(0, true)).toBe(0xc0de_0000 + i);
        }
        // The device writes into the pinned page; the process sees it.
        expect(port.write(Number(iova) + 8, Uint8Array.of(0x5a)).status).toBe(0);
        expect(buf.read8(8)).toBe(0x5a);
        // v1: unmap the second page only; it faults, its neighbours still reach their pages.
        const mid = unmapArg(iova + PG, PG);
        await sys.ioctl(iommufd, VFIO.IOMMU_UNMAP_DMA, mid);
        expect(mid.size).toBe(PG);
        expect(port.read(Number(iova) + PAGE, 4).status).not.toBe(0);
        expect(port.read(Number(iova), 4).status).toBe(0);
        expect(new DataView(port.read(Number(iova) + 2 * PAGE, 4).bytes.buffer).getUint32(0, true)).toBe(0xc0de_0002);
        expect(kernel.userPages.pinned - pinnedBefore).toBe(3);
        // UNMAP_ALL: every page faults and is unpinned.
        const all = unmapArg(0n, 0n, VFIO_DMA_UNMAP_FLAG.ALL);
        await sys.ioctl(iommufd, VFIO.IOMMU_UNMAP_DMA, all);
        expect(all.size).toBe(3n * PG);
        for (let i = 0; i < 4; i++) expect(port.read(Number(iova) + i * PAGE, 4).status, `page ${i}`).not.toBe(0);
        expect(kernel.userPages.pinned).toBe(pinnedBefore);
        // Map again, then close everything with the mapping in place.
        await sys.ioctl(iommufd, VFIO.IOMMU_MAP_DMA, mapArg(buf.addr, iova, PG));
        expect(port.read(Number(iova), 4).status).toBe(0);
        await sys.close(dev);
        await sys.close(iommufd);
        return 0;
      });
      await go();
      expect(await p.exited).toBe(0);
      expect(kernel.userPages.pinned).toBe(0);
    });
  });
});
