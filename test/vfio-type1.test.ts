/**
 * The VFIO type1 IOMMU driver (spec/linux-uapi.md 1.7): every MAP_DMA / UNMAP_DMA / GET_INFO rule with its
 * errno in Linux's check order (drivers/vfio/vfio_iommu_type1.c: vfio_iommu_type1_map_dma, vfio_dma_do_map,
 * vfio_pin_pages_remote, vfio_iommu_type1_unmap_dma, vfio_dma_do_unmap, vfio_iommu_type1_get_info), device
 * DMA through the mapped IOVAs (and its DMAR faults once unmapped), and the accounting of pins and
 * `locked_vm` through MAP, UNMAP, every close order and exit. The model-based property test is in
 * vfio-type1-model.test.ts.
 *
 * Where two checks give the same errno their order cannot be seen from user space; each order test
 * therefore pairs checks with different errnos (EINVAL before EEXIST before ENOSPC before the IOVA-range
 * EINVAL before the pinning EFAULT/ENOMEM).
 */
import { describe, expect, it } from 'vitest';
import { errnoOf } from './sys-errno.ts';
import { boot, eduDma, EDU, iommuGroupOf, openChain, run, type Booted } from './vfio-fixture.ts';
import {
  getInfo, mapDma, PG, R, RW, settle, type1Of, U64_MAX, unmanagedDomains, unmapDma, W,
} from './vfio-type1-fixture.ts';
import type { Behaviour } from '../kernel-shim/versions.ts';
import { dmaEntryLimit } from '../kernel-shim/vfio/type1.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import { MAP, O, PROT } from '../kernel-shim/uapi/linux.ts';
import { VFIO, VFIO_DMA_MAP_FLAG, VFIO_DMA_UNMAP_FLAG, VFIO_EXT, VFIO_IOMMU_DIRTY_PAGES_FLAG, VFIO_IOMMU_TYPE1_INFO_CAP, vfio_group_status, vfio_iommu_type1_dirty_bitmap } from '../kernel-shim/uapi/vfio.ts';
import { withLayout } from '../kernel-shim/uapi/registry.ts';
import type { Mapping } from '../kernel-shim/mm/mapping.ts';
import { DmaStatus } from '../sim/index.ts';

const UF = VFIO_DMA_UNMAP_FLAG;
const IOVA = 0x10_0000n;
const cstr = (s: string): Uint8Array => new TextEncoder().encode(`${s}\0`);

/** An anonymous RW buffer of `pages` pages, each page's first word its index | 0xa5000000. */
async function buffer(sys: Sys, pages: number, prot = PROT.READ | PROT.WRITE): Promise<Mapping> {
  const m = await sys.mmap(null, pages * 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
  for (let i = 0; i < pages; i++) m.write32(i * 4096, (0xa500_0000 | i) >>> 0);
  if (prot !== (PROT.READ | PROT.WRITE)) await sys.mprotect(m.addr, pages * 4096, prot);
  return m;
}

/** The device's read of the first word at `iova`: the word, or 'fault' with the fault reason. */
function devRead(b: Booted, iova: bigint): number | string {
  const r = eduDma(b).read(Number(iova), 4);
  if (r.res.status !== DmaStatus.OK) return `fault 0x${r.res.faultReason.toString(16).padStart(2, '0')}`;
  return new DataView(r.data.buffer).getUint32(0, true);
}

function devWrite(b: Booted, iova: bigint, v: number): string {
  const d = new Uint8Array(4);
  new DataView(d.buffer).setUint32(0, v, true);
  const r = eduDma(b).write(Number(iova), d);
  return r.status === DmaStatus.OK ? 'ok' : `fault 0x${r.faultReason.toString(16).padStart(2, '0')}`;
}

async function lockedVm(sys: Sys, kernel: Booted['kernel']): Promise<number> {
  return kernel.task(await sys.getpid())?.mm.lockedVm ?? -1;
}

/** Kernel state after everything was released. */
function expectClean(b: Booted): void {
  expect(b.kernel.userPages.pinned).toBe(0);
  expect(unmanagedDomains(b.kernel)).toBe(0);
  expect(type1Of(b.kernel)).toBeUndefined();
}


describe('MAP_DMA (vfio_iommu_type1_map_dma, vfio_dma_do_map)', () => {
  it('before SET_IOMMU every type1 ioctl is the container\'s EINVAL (vfio_fops_unl_ioctl)', async () => {
    await run(async (sys) => {
      const { container } = await openChain(sys, 0);
      const m = await buffer(sys, 1);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: PG })).toBe('EINVAL');
      expect((await unmapDma(sys, container, { iova: IOVA, size: PG })).e).toBe('EINVAL');
      expect((await getInfo(sys, container)).e).toBe('EINVAL');
      await sys.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: PG })).toBe('success');
    });
  });

  it('step 1: a bad pointer EFAULT (copy_from_user of minsz), argsz < 32 and unknown flag bits EINVAL; a larger argsz is fine', async () => {
    await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 2);
      const base = { vaddr: m.addr, iova: IOVA, size: PG };
      expect(await errnoOf(sys.ioctl(container, VFIO.IOMMU_MAP_DMA, 0))).toBe('EFAULT');
      expect(await mapDma(sys, container, { ...base, argsz: 31 })).toBe('EINVAL');
      expect(await mapDma(sys, container, { ...base, argsz: 0 })).toBe('EINVAL');
      for (const bit of [3, 4, 8, 31]) expect(await mapDma(sys, container, { ...base, flags: (RW | (1 << bit)) >>> 0 })).toBe('EINVAL');
      expect(type1Of(kernel)?.dmas.length).toBe(0);
      expect(await mapDma(sys, container, { ...base, argsz: 4096 })).toBe('success');
      expect(type1Of(kernel)?.dmas.length).toBe(1);
    });
  });

  it('step 2: neither READ nor WRITE, or VADDR with either, is EINVAL; READ-only and WRITE-only map', async () => {
    await run(async (sys) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 2);
      const V = VFIO_DMA_MAP_FLAG.VADDR;
      for (const flags of [0, V | R, V | W, V | RW]) expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: PG, flags })).toBe('EINVAL');
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: PG, flags: R })).toBe('success');
      expect(await mapDma(sys, container, { vaddr: m.addr + PG, iova: IOVA + PG, size: PG, flags: W })).toBe('success');
    });
  });

  it('step 3: size 0 and iova, vaddr or size off the smallest page (4 KiB) are EINVAL, before the overlap check (EEXIST)', async () => {
    await run(async (sys) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 8);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 4n * PG })).toBe('success');
      // Every request below overlaps the mapping: had the overlap been checked first it would be EEXIST.
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 0n })).toBe('EINVAL');
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA + 0x800n, size: PG })).toBe('EINVAL');
      expect(await mapDma(sys, container, { vaddr: m.addr + 0x800n, iova: IOVA, size: PG })).toBe('EINVAL');
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 0x1800n })).toBe('EINVAL');
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 1n })).toBe('EINVAL');
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: PG })).toBe('EEXIST');
      // The granule is the smallest page size only: 4 KiB-aligned iovas need no 2 MiB alignment.
      expect(await mapDma(sys, container, { vaddr: m.addr + 4n * PG, iova: 0x20_1000n, size: 3n * PG })).toBe('success');
    });
  });

  for (const linux of ['6.1', '6.12'] as const) {
    it(`step 4 (${linux}): an iova or vaddr range wrapping past 2^64 is EINVAL, after alignment and before the overlap and pinning checks`, async () => {
      await run(async (sys, { kernel }) => {
        expect(kernel.behaviour.vfioWrapErrno).toBe('EINVAL');
        const { container } = await openChain(sys);
        const m = await buffer(sys, 2);
        expect(await mapDma(sys, container, { vaddr: m.addr, iova: 0n, size: PG })).toBe('success');
        // [2^64 - 4K, 2^64 + 4K) wraps onto [0, 4K): C's vfio_find_dma would see the mapping at 0 (EEXIST).
        expect(await mapDma(sys, container, { vaddr: m.addr, iova: U64_MAX - PG + 1n, size: 2n * PG })).toBe('EINVAL');
        // A wrapping vaddr: EINVAL, not the pinning EFAULT.
        expect(await mapDma(sys, container, { vaddr: U64_MAX - PG + 1n, iova: IOVA, size: 2n * PG })).toBe('EINVAL');
        expect((await unmapDma(sys, container, { iova: U64_MAX - PG + 1n, size: 2n * PG })).e).toBe('EINVAL');
        // The last page itself does not wrap: it is refused by the IOVA ranges (48-bit aperture), still EINVAL.
        expect(await mapDma(sys, container, { vaddr: m.addr + PG, iova: U64_MAX - PG + 1n, size: PG })).toBe('EINVAL');
        expect(type1Of(kernel)?.dmas.length).toBe(1);
      }, { kernel: { linux } });
    });
  }

  it('step 4 with the 2025 overflow series (behaviour vfioWrapErrno EOVERFLOW): wrapping is EOVERFLOW, checked before alignment', async () => {
    const b = boot();
    const patched: Behaviour = { ...b.kernel.behaviour, vfioWrapErrno: 'EOVERFLOW' };
    Object.defineProperty(b.kernel, 'behaviour', { value: patched });
    await run(async (sys) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 1);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: U64_MAX - PG + 1n, size: 2n * PG })).toBe('EOVERFLOW');
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: U64_MAX - 0x7ffn, size: 0x1800n })).toBe('EOVERFLOW');
      expect(await mapDma(sys, container, { vaddr: U64_MAX, iova: IOVA, size: 2n * PG })).toBe('EOVERFLOW');
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 0n })).toBe('EINVAL');
      expect((await unmapDma(sys, container, { iova: U64_MAX - PG + 1n, size: 2n * PG })).e).toBe('EOVERFLOW');
    }, { booted: b });
  });

  it('step 5: VADDR: ENOENT with no mapping; EINVAL for a valid one or another iova/size; success once invalidated (UNMAP VADDR), pages stay mapped meanwhile', async () => {
    const b = await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      expect(await sys.ioctl(container, VFIO.CHECK_EXTENSION, VFIO_EXT.UPDATE_VADDR)).toBe(1);
      const m = await buffer(sys, 4);
      const m2 = await buffer(sys, 4);
      const V = VFIO_DMA_MAP_FLAG.VADDR;
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 2n * PG, flags: V })).toBe('ENOENT');
      // Alignment is checked first: EINVAL, not ENOENT.
      expect(await mapDma(sys, container, { vaddr: m.addr + 1n, iova: IOVA, size: 2n * PG, flags: V })).toBe('EINVAL');
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 2n * PG })).toBe('success');
      expect(await mapDma(sys, container, { vaddr: m2.addr, iova: IOVA, size: 2n * PG, flags: V })).toBe('EINVAL');
      expect(await unmapDma(sys, container, { iova: IOVA, size: 2n * PG, flags: UF.VADDR })).toEqual({ e: 'success', size: 2n * PG });
      // Invalidating the vaddr does not unmap: the device still reads the old pages; nothing is unpinned.
      expect(kernel.userPages.pinned).toBe(2);
      expect(devRead(b0(kernel), IOVA + PG)).toBe(0xa500_0001);
      expect(await mapDma(sys, container, { vaddr: m2.addr, iova: IOVA, size: PG, flags: V })).toBe('EINVAL');
      expect(await mapDma(sys, container, { vaddr: m2.addr, iova: IOVA + PG, size: PG, flags: V })).toBe('EINVAL');
      expect(await mapDma(sys, container, { vaddr: m2.addr, iova: IOVA + 8n * PG, size: PG, flags: V })).toBe('ENOENT');
      // Invalidating again is EINVAL.
      expect((await unmapDma(sys, container, { iova: IOVA, size: 2n * PG, flags: UF.VADDR })).e).toBe('EINVAL');
      expect(await mapDma(sys, container, { vaddr: m2.addr, iova: IOVA, size: 2n * PG, flags: V })).toBe('success');
      expect(await mapDma(sys, container, { vaddr: m2.addr, iova: IOVA, size: 2n * PG, flags: V })).toBe('EINVAL');
      // Only the vaddr changed: the device sees the pages pinned at MAP time.
      expect(devRead(b0(kernel), IOVA)).toBe(0xa500_0000);
      expect(type1Of(kernel)?.dmas[0]?.vaddr).toBe(m2.addr);
    });
    expectClean(b);
  });

  it('step 5: UNMAP VADDR meeting an invalidated mapping is EINVAL and restores the ones it invalidated; ALL|VADDR invalidates every mapping', async () => {
    await run(async (sys) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 3);
      const V = VFIO_DMA_MAP_FLAG.VADDR;
      for (let i = 0n; i < 3n; i++) expect(await mapDma(sys, container, { vaddr: m.addr + i * PG, iova: IOVA + i * PG, size: PG })).toBe('success');
      expect((await unmapDma(sys, container, { iova: IOVA + PG, size: PG, flags: UF.VADDR })).size).toBe(PG);
      const r = await unmapDma(sys, container, { iova: IOVA, size: 3n * PG, flags: UF.VADDR });
      expect(r).toEqual({ e: 'EINVAL', size: 3n * PG });
      // The first mapping was rolled back to valid: a VADDR update of it is EINVAL; the second is still invalid.
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: PG, flags: V })).toBe('EINVAL');
      expect(await mapDma(sys, container, { vaddr: m.addr + PG, iova: IOVA + PG, size: PG, flags: V })).toBe('success');
      expect(await unmapDma(sys, container, { iova: 0n, size: 0n, flags: UF.ALL | UF.VADDR })).toEqual({ e: 'success', size: 3n * PG });
      for (let i = 0n; i < 3n; i++) expect(await mapDma(sys, container, { vaddr: m.addr + i * PG, iova: IOVA + i * PG, size: PG, flags: V })).toBe('success');
      // An invalidated mapping can be unmapped for good.
      expect(await unmapDma(sys, container, { iova: IOVA + 2n * PG, size: PG, flags: UF.VADDR })).toEqual({ e: 'success', size: PG });
      expect(await unmapDma(sys, container, { iova: IOVA + 2n * PG, size: PG })).toEqual({ e: 'success', size: PG });
    });
  });

  it('step 6: any overlap is EEXIST; adjacent mappings are separate entries (not merged)', async () => {
    await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 8);
      const at = (i: bigint, n: bigint): { vaddr: bigint; iova: bigint; size: bigint } => ({ vaddr: m.addr, iova: IOVA + i * PG, size: n * PG });
      expect(await mapDma(sys, container, at(2n, 4n))).toBe('success');
      for (const [i, n] of [[1n, 2n], [5n, 2n], [0n, 8n], [3n, 1n], [2n, 4n], [5n, 1n]] as const) expect(await mapDma(sys, container, at(i, n))).toBe('EEXIST');
      expect(await mapDma(sys, container, at(0n, 2n))).toBe('success');
      expect(await mapDma(sys, container, at(6n, 1n))).toBe('success');
      expect(type1Of(kernel)?.dmas.map((d) => [d.iova - IOVA, d.size])).toEqual([[0n, 2n * PG], [2n * PG, 4n * PG], [6n * PG, PG]]);
      expect((await getInfo(sys, container)).avail).toBe(65535 - 3);
      expect(await unmapDma(sys, container, { iova: IOVA, size: 7n * PG })).toEqual({ e: 'success', size: 7n * PG });
      expect((await getInfo(sys, container)).avail).toBe(65535);
    });
  });

  it('step 7: dma_entry_limit entries, then ENOSPC: after EEXIST, before the IOVA-range EINVAL and pinning; unmaps and failed maps give entries back', async () => {
    await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 4);
      expect((await getInfo(sys, container)).avail).toBe(3);
      for (let i = 0n; i < 3n; i++) expect(await mapDma(sys, container, { vaddr: m.addr + i * PG, iova: IOVA + i * PG, size: PG })).toBe('success');
      expect((await getInfo(sys, container)).avail).toBe(0);
      expect(await mapDma(sys, container, { vaddr: m.addr + 3n * PG, iova: IOVA + 3n * PG, size: PG })).toBe('ENOSPC');
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: PG })).toBe('EEXIST');
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: 0xfee0_0000n, size: PG })).toBe('ENOSPC');
      expect(await mapDma(sys, container, { vaddr: 0x1000n, iova: IOVA + 8n * PG, size: PG })).toBe('ENOSPC');
      expect(await unmapDma(sys, container, { iova: IOVA + PG, size: PG })).toEqual({ e: 'success', size: PG });
      expect((await getInfo(sys, container)).avail).toBe(1);
      // A map that fails while pinning takes its entry back.
      expect(await mapDma(sys, container, { vaddr: 0x1000n, iova: IOVA + 8n * PG, size: PG })).toBe('EFAULT');
      expect((await getInfo(sys, container)).avail).toBe(1);
      expect(await mapDma(sys, container, { vaddr: m.addr + 3n * PG, iova: IOVA + 3n * PG, size: PG })).toBe('success');
      expect(type1Of(kernel)?.dmaAvail).toBe(0);
    }, { kernel: { cmdline: 'quiet vfio_iommu_type1.dma_entry_limit=3' } });
  });

  it('dma_entry_limit as parse_args and param_set_uint take it: base 0 (hex, octal), dashes for underscores, bad values ignored, the last good one wins', () => {
    expect(dmaEntryLimit('')).toBe(65535);
    expect(dmaEntryLimit('vfio_iommu_type1.dma_entry_limit=3')).toBe(3);
    expect(dmaEntryLimit('vfio_iommu_type1.dma_entry_limit=0x10')).toBe(16);
    expect(dmaEntryLimit('vfio_iommu_type1.dma_entry_limit=010')).toBe(8);
    expect(dmaEntryLimit('vfio_iommu_type1.dma_entry_limit=+7')).toBe(7);
    expect(dmaEntryLimit('vfio-iommu-type1.dma-entry-limit=5')).toBe(5);
    expect(dmaEntryLimit('vfio_iommu_type1.dma_entry_limit=0')).toBe(0);
    expect(dmaEntryLimit('vfio_iommu_type1.dma_entry_limit=4294967295')).toBe(0xffff_ffff);
    for (const bad of ['4294967296', '-1', '12abc', '0x', '09', '', 'ten']) expect(dmaEntryLimit(`vfio_iommu_type1.dma_entry_limit=${bad}`)).toBe(65535);
    expect(dmaEntryLimit('vfio_iommu_type1.dma_entry_limit=9 quiet vfio_iommu_type1.dma_entry_limit=x vfio_iommu_type1.dma_entry_limit=2')).toBe(2);
    expect(dmaEntryLimit('vfio_iommu_type1.dma_entry_limit=2 vfio_iommu_type1.dma_entry_limit=bad')).toBe(2);
    expect(dmaEntryLimit('xvfio_iommu_type1.dma_entry_limit=2 vfio_iommu_type1.dma_entry_limits=2')).toBe(65535);
  });

  it('dma_entry_limit=0: every MAP is ENOSPC (after the overlap check)', async () => {
    await run(async (sys) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 1);
      expect((await getInfo(sys, container)).avail).toBe(0);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: PG })).toBe('ENOSPC');
    }, { kernel: { cmdline: 'vfio-iommu-type1.dma_entry_limit=0x0' } });
  });

  it('step 8: outside the IOVA ranges (the MSI window 0xfee00000-0xfeefffff, past the 48-bit aperture) is EINVAL, before pinning', async () => {
    await run(async (sys) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 2);
      const top = 1n << 48n;
      for (const [iova, n] of [[0xfee0_0000n, 1n], [0xfedf_f000n, 2n], [0xfeef_f000n, 2n], [0xfeef_f000n, 1n], [top, 1n], [top - PG, 2n]] as const) {
        expect(await mapDma(sys, container, { vaddr: m.addr, iova, size: n * PG })).toBe('EINVAL');
      }
      // The range check comes before pinning: an unmapped vaddr there is still EINVAL.
      expect(await mapDma(sys, container, { vaddr: 0x1000n, iova: 0xfee0_0000n, size: PG })).toBe('EINVAL');
      for (const iova of [0n, 0xfedf_f000n, 0xfef0_0000n, top - PG]) expect(await mapDma(sys, container, { vaddr: m.addr, iova, size: PG })).toBe('success');
    });
  });

  it('step 9: an unmapped vaddr, a PROT_NONE page, or a WRITE mapping of read-only memory is EFAULT; what was pinned is given back', async () => {
    const b = await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 4);
      await sys.munmap(m.addr + 3n * PG, PG);
      expect(await mapDma(sys, container, { vaddr: 0x1000n, iova: IOVA, size: PG })).toBe('EFAULT');
      // Three pages pin, the fourth is gone: the whole map fails and the three are unpinned and unmapped.
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 4n * PG })).toBe('EFAULT');
      expect(kernel.userPages.pinned).toBe(0);
      expect(await lockedVm(sys, kernel)).toBe(0);
      expect(type1Of(kernel)?.dmas).toEqual([]);
      expect(type1Of(kernel)?.domain?.mappedBytes).toBe(0);
      expect(devRead(b0(kernel), IOVA)).toBe('fault 0x06');
      const ro = await buffer(sys, 2, PROT.READ);
      expect(await mapDma(sys, container, { vaddr: ro.addr, iova: IOVA, size: PG, flags: RW })).toBe('EFAULT');
      expect(await mapDma(sys, container, { vaddr: ro.addr, iova: IOVA, size: PG, flags: W })).toBe('EFAULT');
      // READ means the device reads: read-only memory is fine.
      expect(await mapDma(sys, container, { vaddr: ro.addr, iova: IOVA, size: 2n * PG, flags: R })).toBe('success');
      expect(devRead(b0(kernel), IOVA + PG)).toBe(0xa500_0001);
      const none = await buffer(sys, 1, PROT.NONE);
      expect(await mapDma(sys, container, { vaddr: none.addr, iova: IOVA + 4n * PG, size: PG, flags: R })).toBe('EFAULT');
      expect(kernel.userPages.pinned).toBe(2);
    });
    expectClean(b);
  });

  it('step 9: past RLIMIT_MEMLOCK without CAP_IPC_LOCK is ENOMEM (vfio_pin_pages_remote warns); CAP_IPC_LOCK skips the limit but is still accounted', async () => {
    const limit = 4 * 4096;
    const b = boot();
    await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 8);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 3n * PG })).toBe('success');
      expect(await lockedVm(sys, kernel)).toBe(3);
      // The fifth page crosses the limit: the two-page map fails whole, its first page unpinned again.
      expect(await mapDma(sys, container, { vaddr: m.addr + 3n * PG, iova: IOVA + 3n * PG, size: 2n * PG })).toBe('ENOMEM');
      expect(await lockedVm(sys, kernel)).toBe(3);
      expect(kernel.userPages.pinned).toBe(3);
      expect(type1Of(kernel)?.dmaAvail).toBe(65534);
      expect(await mapDma(sys, container, { vaddr: m.addr + 3n * PG, iova: IOVA + 3n * PG, size: PG })).toBe('success');
      expect(await lockedVm(sys, kernel)).toBe(4);
      expect(await mapDma(sys, container, { vaddr: m.addr + 4n * PG, iova: IOVA + 4n * PG, size: PG })).toBe('ENOMEM');
      // The same page mapped twice is pinned and charged twice (type1 does not share pins between mappings).
      expect(await unmapDma(sys, container, { iova: IOVA + 3n * PG, size: PG })).toEqual({ e: 'success', size: PG });
      expect(await mapDma(sys, container, { vaddr: m.addr + PG, iova: IOVA + 16n * PG, size: PG })).toBe('success');
      expect(await lockedVm(sys, kernel)).toBe(4);
      expect(type1Of(kernel)?.pinnedPages).toBe(4);
      expect(await unmapDma(sys, container, { iova: 0n, size: 0n, flags: UF.ALL })).toEqual({ e: 'success', size: 4n * PG });
      expect(await lockedVm(sys, kernel)).toBe(0);
    }, { booted: b, spawn: { uid: 0, caps: [], rlimits: { memlock: limit } } });
    expect(b.kernel.log.dmesg()).toContain(`vfio_pin_pages_remote: RLIMIT_MEMLOCK (${limit}) exceeded`);
    expectClean(b);
    await run(async (sys, { kernel }) => {
      // Bound already by the first process: open the chain without new_id.
      const container = await sys.open('/dev/vfio/vfio', O.RDWR);
      const group = await sys.open(`/dev/vfio/${await iommuGroupOf(sys)}`, O.RDWR);
      await sys.ioctl(group, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container));
      await sys.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU);
      const m = await buffer(sys, 8);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 8n * PG })).toBe('success');
      expect(await lockedVm(sys, kernel)).toBe(8);
    }, { booted: b, spawn: { uid: 0, caps: ['IPC_LOCK'], rlimits: { memlock: limit } } });
    expectClean(b);
  });

  it('step 9: a PFNMAP range that is not RAM (the edu BAR through the device fd) maps without a pin or locked_vm', async () => {
    await run(async (sys, { kernel }) => {
      const { container, group } = await openChain(sys);
      const dev = await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
      const bar = await sys.mmap(null, 4096, PROT.READ | PROT.WRITE, MAP.SHARED, dev, 0);
      expect(await mapDma(sys, container, { vaddr: bar.addr, iova: IOVA, size: PG })).toBe('success');
      expect(kernel.userPages.pinned).toBe(0);
      expect(await lockedVm(sys, kernel)).toBe(0);
      expect(type1Of(kernel)?.domain?.mappedBytes).toBe(4096);
      expect(await unmapDma(sys, container, { iova: IOVA, size: PG })).toEqual({ e: 'success', size: PG });
    });
  });
});

/** The fixture handle a `run` body needs for device DMA (its kernel's machine). */
function b0(kernel: Booted['kernel']): Booted {
  return { machine: kernel.machine, kernel };
}

describe('UNMAP_DMA (vfio_iommu_type1_unmap_dma, vfio_dma_do_unmap)', () => {
  it('argument checks, each EINVAL with the caller\'s size left as it was (the kernel copies back only on success)', async () => {
    await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 2);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 2n * PG })).toBe('success');
      expect(await errnoOf(sys.ioctl(container, VFIO.IOMMU_UNMAP_DMA, 0))).toBe('EFAULT');
      const bad: { iova: bigint; size: bigint; flags?: number; argsz?: number }[] = [
        { iova: IOVA, size: 2n * PG, argsz: 23 },
        { iova: IOVA, size: 2n * PG, flags: 1 << 3 },
        { iova: IOVA, size: 2n * PG, flags: UF.GET_DIRTY_BITMAP | UF.ALL },
        { iova: IOVA, size: 2n * PG, flags: UF.GET_DIRTY_BITMAP | UF.VADDR },
        // GET_DIRTY_BITMAP needs a vfio_bitmap after the struct (argsz >= 48).
        { iova: IOVA, size: 2n * PG, flags: UF.GET_DIRTY_BITMAP },
        { iova: IOVA + 0x800n, size: 2n * PG },
        { iova: PG, size: 0n, flags: UF.ALL },
        { iova: 0n, size: PG, flags: UF.ALL },
        { iova: IOVA, size: 0n },
        { iova: IOVA, size: 2n * PG - 1n },
        { iova: U64_MAX - PG + 1n, size: 2n * PG },
      ];
      for (const u of bad) expect(await unmapDma(sys, container, u)).toEqual({ e: 'EINVAL', size: u.size });
      expect(type1Of(kernel)?.dmas.length).toBe(1);
      expect(devRead(b0(kernel), IOVA)).toBe(0xa500_0000);
      // A larger argsz is accepted.
      expect(await unmapDma(sys, container, { iova: IOVA, size: 2n * PG, argsz: 4096 })).toEqual({ e: 'success', size: 2n * PG });
    });
  });

  it('v2: nothing in the range is success with size 0; a range cutting a mapping at either end EINVAL; whole mappings with holes between go together', async () => {
    await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 4);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 2n * PG })).toBe('success');
      expect(await mapDma(sys, container, { vaddr: m.addr + 2n * PG, iova: IOVA + 4n * PG, size: 2n * PG })).toBe('success');
      const u = async (i: bigint, n: bigint): Promise<{ e: string; size: bigint }> => unmapDma(sys, container, { iova: IOVA + i * PG, size: n * PG });
      expect(await u(8n, 4n)).toEqual({ e: 'success', size: 0n });
      expect(await u(2n, 2n)).toEqual({ e: 'success', size: 0n });
      for (const [i, n] of [[1n, 1n], [0n, 1n], [-1n, 2n], [1n, 4n], [5n, 4n], [3n, 2n], [-4n, 9n]] as const) {
        expect(await u(i, n)).toEqual({ e: 'EINVAL', size: n * PG });
      }
      expect(type1Of(kernel)?.dmas.length).toBe(2);
      expect(devRead(b0(kernel), IOVA + PG)).toBe(0xa500_0001);
      expect(await u(-4n, 12n)).toEqual({ e: 'success', size: 4n * PG });
      expect(type1Of(kernel)?.dmas).toEqual([]);
      expect(kernel.userPages.pinned).toBe(0);
    });
  });

  it('v1 (TYPE1_IOMMU): a request starting inside a mapping succeeds with size 0; one covering a mapping\'s first iova removes all of it', async () => {
    await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys, VFIO_EXT.TYPE1_IOMMU);
      const m = await buffer(sys, 8);
      const u = async (i: bigint, n: bigint): Promise<{ e: string; size: bigint }> => unmapDma(sys, container, { iova: IOVA + i * PG, size: n * PG });
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 4n * PG })).toBe('success');
      expect(await u(1n, 1n)).toEqual({ e: 'success', size: 0n });
      expect(await u(2n, 8n)).toEqual({ e: 'success', size: 0n });
      expect(devRead(b0(kernel), IOVA + 3n * PG)).toBe(0xa500_0003);
      expect(await u(-1n, 2n)).toEqual({ e: 'success', size: 4n * PG });
      expect(devRead(b0(kernel), IOVA + 3n * PG)).toBe('fault 0x06');
      // The walk stops at the first mapping the request starts inside, even if a later one is covered.
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 2n * PG })).toBe('success');
      expect(await mapDma(sys, container, { vaddr: m.addr + 2n * PG, iova: IOVA + 2n * PG, size: 2n * PG })).toBe('success');
      expect(await u(1n, 8n)).toEqual({ e: 'success', size: 0n });
      expect(type1Of(kernel)?.dmas.length).toBe(2);
      // Alignment and size are still checked.
      expect(await u(0n, 0n)).toEqual({ e: 'EINVAL', size: 0n });
      expect((await unmapDma(sys, container, { iova: IOVA + 1n, size: PG })).e).toBe('EINVAL');
      expect(await unmapDma(sys, container, { iova: 0n, size: 0n, flags: UF.ALL })).toEqual({ e: 'success', size: 4n * PG });
      // DIRTY_PAGES is v2 only.
      expect(await errnoOf(sys.ioctl(container, VFIO.IOMMU_DIRTY_PAGES, { argsz: 8, flags: 1 }))).toBe('EACCES');
    });
  });

  it('UNMAP_ALL removes every mapping and reports their total; with nothing mapped it is success with size 0', async () => {
    const b = await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      expect(await sys.ioctl(container, VFIO.CHECK_EXTENSION, VFIO_EXT.UNMAP_ALL)).toBe(1);
      expect(await unmapDma(sys, container, { iova: 0n, size: 0n, flags: UF.ALL })).toEqual({ e: 'success', size: 0n });
      const m = await buffer(sys, 6);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: 0n, size: PG })).toBe('success');
      expect(await mapDma(sys, container, { vaddr: m.addr + PG, iova: IOVA, size: 2n * PG })).toBe('success');
      expect(await mapDma(sys, container, { vaddr: m.addr + 3n * PG, iova: (1n << 48n) - 3n * PG, size: 3n * PG })).toBe('success');
      expect(kernel.userPages.pinned).toBe(6);
      expect(await unmapDma(sys, container, { iova: 0n, size: 0n, flags: UF.ALL })).toEqual({ e: 'success', size: 6n * PG });
      expect(kernel.userPages.pinned).toBe(0);
      expect(await lockedVm(sys, kernel)).toBe(0);
      expect(type1Of(kernel)?.domain?.mappedBytes).toBe(0);
      expect((await getInfo(sys, container)).avail).toBe(65535);
    });
    expectClean(b);
  });
});

describe('DIRTY_PAGES (vfio_iommu_type1_dirty_pages)', () => {
  it('v1 is EACCES before the argument is read; argsz < 8, unknown flags, or not exactly one of START, STOP, GET_BITMAP EINVAL', async () => {
    await run(async (sys) => {
      const { container } = await openChain(sys);
      const dirty = (argsz: number, flags: number): Promise<string> => errnoOf(sys.ioctl(container, VFIO.IOMMU_DIRTY_PAGES, withLayout(vfio_iommu_type1_dirty_bitmap, { argsz, flags })));
      const D = VFIO_IOMMU_DIRTY_PAGES_FLAG;
      expect(await dirty(7, D.START)).toBe('EINVAL');
      for (const f of [0, D.START | D.STOP, D.STOP | D.GET_BITMAP, 1 << 3, D.START | (1 << 3)]) expect(await dirty(8, f)).toBe('EINVAL');
      expect(await dirty(8, D.START)).toBe('success');
      expect(await dirty(8, D.STOP)).toBe('success');
      expect(await dirty(8, D.STOP)).toBe('success');
    });
    await run(async (sys) => {
      const { container } = await openChain(sys, VFIO_EXT.TYPE1_IOMMU);
      expect(await errnoOf(sys.ioctl(container, VFIO.IOMMU_DIRTY_PAGES, 0))).toBe('EACCES');
      // GET_INFO is the same on v1.
      const i = await getInfo(sys, container);
      expect(i.caps.map((c) => c.id)).toEqual([2, 3, 1]);
    });
  });
});

describe('GET_INFO (vfio_iommu_type1_get_info)', () => {
  it('argsz < 16 EINVAL; flags PGSIZES|CAPS; iova_pgsizes is PAGE_MASK & the domain\'s sizes (granule 4 KiB); caps MIGRATION, DMA_AVAIL, IOVA_RANGE', async () => {
    await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      expect((await getInfo(sys, container, 15)).e).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(container, VFIO.IOMMU_GET_INFO, 0))).toBe('EFAULT');
      const i = await getInfo(sys, container, 120);
      expect(i.e).toBe('success');
      expect(i.flags).toBe(3);
      const unit = BigInt(kernel.iommu?.unit.caps.pgsizeBitmap ?? 0);
      expect(i.pgsizes).toBe(unit & ~0xfffn);
      expect(i.pgsizes & -i.pgsizes).toBe(4096n);
      expect(i.capOffset).toBe(24);
      // Each cap 8-byte aligned, `next` from the buffer start: 32 + 16 (12 rounded up) + 16 + 2 * 16 bytes.
      expect(i.caps.map((c) => [c.id, c.version, c.at, c.next])).toEqual([
        [VFIO_IOMMU_TYPE1_INFO_CAP.MIGRATION, 1, 24, 56],
        [VFIO_IOMMU_TYPE1_INFO_CAP.DMA_AVAIL, 1, 56, 72],
        [VFIO_IOMMU_TYPE1_INFO_CAP.IOVA_RANGE, 1, 72, 0],
      ]);
      expect(i.argsz).toBe(120);
      expect(i.migration).toEqual({ flags: 0, pgsize: 4096n, maxBitmap: ((2n ** 31n - 1n + 63n) / 64n) * 8n });
      expect(i.avail).toBe(65535);
      // The aperture (48 bits) less the MSI window, end inclusive.
      expect(i.ranges).toEqual([{ start: 0n, end: 0xfedf_ffffn }, { start: 0xfef0_0000n, end: (1n << 48n) - 1n }]);
      for (const r of i.ranges ?? []) expect(r.start <= 0xfee0_0000n && r.end >= 0xfeef_ffffn).toBe(false);
    });
  });

  it('a buffer too small for the caps is success: CAPS set, argsz raised to the size needed, cap_offset 0 (or not written below 20 bytes), the caps not copied', async () => {
    await run(async (sys) => {
      const { container } = await openChain(sys);
      for (const argsz of [16, 20, 24, 119]) {
        const i = await getInfo(sys, container, argsz, 0xee, 128);
        expect(i.e).toBe('success');
        expect(i.flags).toBe(3);
        expect(i.argsz).toBe(120);
        expect(i.caps).toEqual([]);
        // cap_offset is output only from argsz 20 on (offsetofend(cap_offset)); below it stays the caller's.
        expect(i.capOffset).toBe(argsz < 20 ? 0xeeee_eeee : 0);
        expect([...i.buf.subarray(24)].every((x) => x === 0xee)).toBe(true);
      }
    });
  });

  it('DMA_AVAIL follows MAP and UNMAP', async () => {
    await run(async (sys) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 3);
      for (let i = 0n; i < 3n; i++) expect(await mapDma(sys, container, { vaddr: m.addr + i * PG, iova: IOVA + i * PG, size: PG })).toBe('success');
      expect((await getInfo(sys, container)).avail).toBe(65532);
      await unmapDma(sys, container, { iova: IOVA, size: 2n * PG });
      expect((await getInfo(sys, container)).avail).toBe(65534);
    });
  });
});

describe('device DMA through the IOMMU', () => {
  it('reads and writes at a mapped IOVA reach the pinned pages; after UNMAP_DMA they fault in the IOMMU and dmesg has the DMAR lines', async () => {
    await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 4);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 4n * PG })).toBe('success');
      const b = b0(kernel);
      for (let i = 0n; i < 4n; i++) expect(devRead(b, IOVA + i * PG)).toBe((0xa500_0000 | Number(i)) >>> 0);
      expect(devWrite(b, IOVA + 2n * PG + 8n, 0xdead_beef)).toBe('ok');
      expect(m.read32(2 * 4096 + 8)).toBe(0xdead_beef);
      // Never mapped: a fault.
      expect(devRead(b, IOVA + 4n * PG)).toBe('fault 0x06');
      expect(await unmapDma(sys, container, { iova: IOVA, size: 4n * PG })).toEqual({ e: 'success', size: 4n * PG });
      expect(devRead(b, IOVA)).toBe('fault 0x06');
      expect(devWrite(b, IOVA + 2n * PG, 1)).toBe('fault 0x05');
      await settle(sys);
      const log = kernel.log.dmesg();
      expect(log).toContain('DMAR: [DMA Read NO_PASID] Request device [00:03.0] fault addr 0x100000 [fault reason 0x06] PTE Read access is not set');
      expect(log).toContain('DMAR: [DMA Write NO_PASID] Request device [00:03.0] fault addr 0x102000 [fault reason 0x05] PTE Write access is not set');
      expect(m.read32(2 * 4096)).toBe(0xa500_0002);
    });
  });

  it('a READ-only mapping faults device writes (0x05), a WRITE-only one device reads (0x06)', async () => {
    await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 2);
      const b = b0(kernel);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: PG, flags: R })).toBe('success');
      expect(await mapDma(sys, container, { vaddr: m.addr + PG, iova: IOVA + PG, size: PG, flags: W })).toBe('success');
      expect(devRead(b, IOVA)).toBe(0xa500_0000);
      expect(devWrite(b, IOVA, 7)).toBe('fault 0x05');
      expect(m.read32(0)).toBe(0xa500_0000);
      expect(devWrite(b, IOVA + PG, 7)).toBe('ok');
      expect(m.read32(4096)).toBe(7);
      expect(devRead(b, IOVA + PG)).toBe('fault 0x06');
      await settle(sys);
      expect(kernel.log.dmesg()).toContain('DMAR: [DMA Write NO_PASID] Request device [00:03.0] fault addr 0x100000 [fault reason 0x05] PTE Write access is not set');
    });
  });

  it('the pin outlives munmap: the device keeps reading the pages until UNMAP_DMA frees them', async () => {
    await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      const live0 = kernel.userPages.live;
      const m = await buffer(sys, 2);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 2n * PG })).toBe('success');
      await sys.munmap(m.addr, 2 * 4096);
      expect(devRead(b0(kernel), IOVA + PG)).toBe(0xa500_0001);
      expect(kernel.userPages.live).toBe(live0 + 2);
      expect(await unmapDma(sys, container, { iova: IOVA, size: 2n * PG })).toEqual({ e: 'success', size: 2n * PG });
      expect(kernel.userPages.live).toBe(live0);
      expect(kernel.userPages.pinned).toBe(0);
    });
  });
});

describe('accounting and teardown', () => {
  it('locked_vm, pins and domain mappings rise on MAP and fall on UNMAP', async () => {
    await run(async (sys, { kernel }) => {
      const { container } = await openChain(sys);
      const m = await buffer(sys, 5);
      const t = (): { locked: number; pinned: number; mapped: number | undefined; dmas: number } => ({
        locked: kernel.task(pid)?.mm.lockedVm ?? -1, pinned: kernel.userPages.pinned, mapped: type1Of(kernel)?.domain?.mappedBytes, dmas: type1Of(kernel)?.pinnedPages ?? -1,
      });
      const pid = await sys.getpid();
      expect(t()).toEqual({ locked: 0, pinned: 0, mapped: 0, dmas: 0 });
      await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 3n * PG });
      expect(t()).toEqual({ locked: 3, pinned: 3, mapped: 3 * 4096, dmas: 3 });
      await mapDma(sys, container, { vaddr: m.addr + 3n * PG, iova: 0x4000_0000n, size: 2n * PG });
      expect(t()).toEqual({ locked: 5, pinned: 5, mapped: 5 * 4096, dmas: 5 });
      const status = await sys.open('/proc/self/status', O.RDONLY);
      const text = new Uint8Array(4096);
      const n = await sys.read(status, text);
      expect(new TextDecoder().decode(text.subarray(0, n))).toMatch(/VmLck:\s+20 kB/);
      await unmapDma(sys, container, { iova: IOVA, size: 3n * PG });
      expect(t()).toEqual({ locked: 2, pinned: 2, mapped: 2 * 4096, dmas: 2 });
      await unmapDma(sys, container, { iova: 0n, size: 0n, flags: UF.ALL });
      expect(t()).toEqual({ locked: 0, pinned: 0, mapped: 0, dmas: 0 });
    });
  });

  type Fd = 'container' | 'group' | 'device';
  const orders: Fd[][] = [
    ['container', 'group'], ['group', 'container'],
    ['container', 'group', 'device'], ['container', 'device', 'group'], ['group', 'container', 'device'],
    ['group', 'device', 'container'], ['device', 'container', 'group'], ['device', 'group', 'container'],
  ];
  for (const order of orders) {
    it(`closing ${order.join(', ')}: the mappings live while the group is attached (group fd or a device fd open), then nothing is left`, async () => {
      const b = await run(async (sys, { kernel }) => {
        const { container, group, groupId } = await openChain(sys);
        const fds: Record<Fd, number> = { container, group, device: -1 };
        if (order.includes('device')) fds.device = await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
        const m = await buffer(sys, 2);
        expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 2n * PG })).toBe('success');
        const open = new Set<Fd>(order);
        for (const f of order) {
          await sys.close(fds[f]);
          open.delete(f);
          const attached = open.has('group') || open.has('device');
          expect(devRead(b0(kernel), IOVA + PG)).toBe(attached ? 0xa500_0001 : 'fault 0x06');
          expect(kernel.userPages.pinned).toBe(attached ? 2 : 0);
          expect(await lockedVm(sys, kernel)).toBe(attached ? 2 : 0);
          expect(unmanagedDomains(kernel)).toBe(attached ? 1 : 0);
        }
        // The group is free again.
        await sys.close(await sys.open(`/dev/vfio/${groupId}`, O.RDWR));
      });
      expectClean(b);
      const pdev = b.kernel.pci.device(EDU);
      const ig = pdev === undefined ? undefined : b.kernel.iommu?.groupOf(pdev);
      expect(ig?.owner).toBeUndefined();
    });
  }

  it('exit with everything open (container, group, device, mappings) leaves no pin, mapping or frame', async () => {
    const b = boot();
    const live0 = b.kernel.userPages.live;
    await run(async (sys, { kernel }) => {
      const { container, group } = await openChain(sys);
      await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
      const m = await buffer(sys, 6);
      await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 4n * PG });
      await mapDma(sys, container, { vaddr: m.addr + 4n * PG, iova: 0n, size: 2n * PG, flags: R });
      await unmapDma(sys, container, { iova: IOVA, size: 4n * PG, flags: UF.VADDR });
      expect(kernel.userPages.pinned).toBe(6);
    }, { booted: b });
    expectClean(b);
    expect(b.kernel.userPages.live).toBe(live0);
    expect(devRead(b, 0n)).toBe('fault 0x06');
  });

  it('unbinding the last device with the group fd open detaches the group (vfio_device_remove_group): every mapping dropped', async () => {
    await run(async (sys, { kernel }) => {
      const { container, group } = await openChain(sys);
      const m = await buffer(sys, 2);
      await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 2n * PG });
      const fd = await sys.open(`/sys/bus/pci/devices/${EDU}/driver/unbind`, O.WRONLY);
      await sys.write(fd, EDU);
      await sys.close(fd);
      expect(kernel.userPages.pinned).toBe(0);
      expect(await lockedVm(sys, kernel)).toBe(0);
      expect(unmanagedDomains(kernel)).toBe(0);
      // vfio_group_ioctl_get_status: no iommu_group any more, ENODEV; UNSET_CONTAINER: no container, EINVAL.
      expect(await errnoOf(sys.ioctl(group, VFIO.GROUP_GET_STATUS, withLayout(vfio_group_status, { argsz: 8, flags: 0 })))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(group, VFIO.GROUP_UNSET_CONTAINER))).toBe('EINVAL');
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: PG })).toBe('EINVAL');
      await sys.close(group);
      await sys.close(container);
    });
  });

  it('the last group leaving (UNSET_CONTAINER) drops every mapping; set up again the container starts empty', async () => {
    await run(async (sys, { kernel }) => {
      const { container, group } = await openChain(sys);
      const m = await buffer(sys, 3);
      await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 3n * PG });
      expect(await sys.ioctl(group, VFIO.GROUP_UNSET_CONTAINER)).toBe(0);
      expect(kernel.userPages.pinned).toBe(0);
      expect(await lockedVm(sys, kernel)).toBe(0);
      expect(unmanagedDomains(kernel)).toBe(0);
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: PG })).toBe('EINVAL');
      await sys.ioctl(group, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container));
      await sys.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU);
      expect((await getInfo(sys, container)).avail).toBe(65535);
      expect(devRead(b0(kernel), IOVA)).toBe('fault 0x06');
      expect(await mapDma(sys, container, { vaddr: m.addr, iova: IOVA, size: 3n * PG })).toBe('success');
      expect(devRead(b0(kernel), IOVA + 2n * PG)).toBe(0xa500_0002);
    });
  });
});
