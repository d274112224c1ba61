/**
 * Helpers of the type1 tests (vfio-type1.test.ts, vfio-type1-model.test.ts): MAP/UNMAP/GET_INFO through
 * `sys.ioctl` with the uAPI structs, the GET_INFO capability chain parsed from the raw buffer, and the
 * kernel-side state a test compares against (the container's type1 instance, its domain).
 */
import { errnoOf } from './sys-errno.ts';
import type { Kernel } from '../kernel-shim/kernel.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import { withLayout } from '../kernel-shim/uapi/registry.ts';
import {
  VFIO, VFIO_DMA_MAP_FLAG, VFIO_IOMMU_TYPE1_INFO_CAP, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap,
} from '../kernel-shim/uapi/vfio.ts';
import { vfioGroups } from '../kernel-shim/vfio/core.ts';
import type { Type1Iommu } from '../kernel-shim/vfio/type1.ts';

export const R = VFIO_DMA_MAP_FLAG.READ;
export const W = VFIO_DMA_MAP_FLAG.WRITE;
export const RW = R | W;
export const PG = 4096n;
export const U64_MAX = (1n << 64n) - 1n;

/** A MAP_DMA request; `flags` defaults to READ|WRITE, `argsz` to 32. */
export interface MapReq {
  readonly vaddr: bigint;
  readonly iova: bigint;
  readonly size: bigint;
  readonly flags?: number;
  readonly argsz?: number;
}

/** `VFIO_IOMMU_MAP_DMA`: `'success'` or the errno name. */
export async function mapDma(sys: Sys, container: number, m: MapReq): Promise<string> {
  const arg = withLayout(vfio_iommu_type1_dma_map, { argsz: m.argsz ?? 32, flags: m.flags ?? RW, vaddr: m.vaddr, iova: m.iova, size: m.size });
  return errnoOf(sys.ioctl(container, VFIO.IOMMU_MAP_DMA, arg));
}

/** An UNMAP_DMA request; `flags` defaults to 0, `argsz` to 24. */
export interface UnmapReq {
  readonly iova: bigint;
  readonly size: bigint;
  readonly flags?: number;
  readonly argsz?: number;
}

/** `VFIO_IOMMU_UNMAP_DMA`: the errno name and the `size` field as the kernel left it. */
export async function unmapDma(sys: Sys, container: number, u: UnmapReq): Promise<{ e: string; size: bigint }> {
  const arg = withLayout(vfio_iommu_type1_dma_unmap, { argsz: u.argsz ?? 24, flags: u.flags ?? 0, iova: u.iova, size: u.size });
  const e = await errnoOf(sys.ioctl(container, VFIO.IOMMU_UNMAP_DMA, arg));
  return { e, size: BigInt(arg.size) };
}

/** One capability of a GET_INFO chain: its header and the offset it sits at. */
export interface Cap {
  readonly id: number;
  readonly version: number;
  readonly at: number;
  readonly next: number;
}

/** What GET_INFO wrote back into a raw buffer. */
export interface Type1Info {
  readonly e: string;
  readonly argsz: number;
  readonly flags: number;
  readonly pgsizes: bigint;
  readonly capOffset: number;
  /** The raw buffer after the call. */
  readonly buf: Uint8Array;
  readonly caps: readonly Cap[];
  /** DMA_AVAIL's `avail`, when the chain has it. */
  readonly avail?: number;
  /** IOVA_RANGE's ranges (`end` inclusive), when the chain has it. */
  readonly ranges?: readonly { start: bigint; end: bigint }[];
  /** MIGRATION's `pgsize_bitmap` and `max_dirty_bitmap_size`. */
  readonly migration?: { flags: number; pgsize: bigint; maxBitmap: bigint };
}

/**
 * `VFIO_IOMMU_GET_INFO` with a raw buffer of `len` bytes (default `argsz`) whose first word is `argsz` and
 * the rest `fill`; the capability chain is walked from `cap_offset` through each `next`.
 */
export async function getInfo(sys: Sys, container: number, argsz = 256, fill = 0, len = Math.max(argsz, 24)): Promise<Type1Info> {
  const buf = new Uint8Array(len).fill(fill);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, argsz, true);
  const e = await errnoOf(sys.ioctl(container, VFIO.IOMMU_GET_INFO, buf));
  const capOffset = dv.getUint32(16, true);
  const caps: Cap[] = [];
  let avail: number | undefined;
  let ranges: { start: bigint; end: bigint }[] | undefined;
  let migration: { flags: number; pgsize: bigint; maxBitmap: bigint } | undefined;
  const flags = dv.getUint32(4, true);
  if (e === 'success' && (flags & 2) !== 0 && capOffset !== 0 && capOffset < len) {
    for (let at = capOffset; at !== 0 && caps.length < 16;) {
      const c = { id: dv.getUint16(at, true), version: dv.getUint16(at + 2, true), at, next: dv.getUint32(at + 4, true) };
      caps.push(c);
      if (c.id === VFIO_IOMMU_TYPE1_INFO_CAP.DMA_AVAIL) avail = dv.getUint32(at + 8, true);
      if (c.id === VFIO_IOMMU_TYPE1_INFO_CAP.MIGRATION) {
        migration = { flags: dv.getUint32(at + 8, true), pgsize: dv.getBigUint64(at + 16, true), maxBitmap: dv.getBigUint64(at + 24, true) };
      }
      if (c.id === VFIO_IOMMU_TYPE1_INFO_CAP.IOVA_RANGE) {
        const n = dv.getUint32(at + 8, true);
        ranges = [];
        for (let i = 0; i < n; i++) ranges.push({ start: dv.getBigUint64(at + 16 + 16 * i, true), end: dv.getBigUint64(at + 24 + 16 * i, true) });
      }
      at = c.next;
    }
  }
  return {
    e, argsz: dv.getUint32(0, true), flags, pgsizes: dv.getBigUint64(8, true), capOffset, buf, caps,
    ...(avail === undefined ? {} : { avail }), ...(ranges === undefined ? {} : { ranges }), ...(migration === undefined ? {} : { migration }),
  };
}

/** The type1 instance of the (only) VFIO group's container, if an IOMMU is set. */
export function type1Of(kernel: Kernel): Type1Iommu | undefined {
  return vfioGroups(kernel)[0]?.container?.data as Type1Iommu | undefined;
}

/** UNMANAGED domains alive on the IOMMU (VFIO's). */
export function unmanagedDomains(kernel: Kernel): number {
  return [...(kernel.iommu?.domains ?? [])].filter((d) => d.type === 'UNMANAGED' && !d.freed).length;
}

/** Lets the simulator deliver pending interrupts (the DMAR fault handler logs from its IRQ). */
export async function settle(sys: Sys): Promise<void> {
  await sys.nanosleep(1_000_000);
}
