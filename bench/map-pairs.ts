import type { Kernel, Mapping, Sys } from '../kernel-shim/index.ts';

/**
 * The timed loop `vfio.map4k` and `iommufd.map4k` share: MAP + UNMAP pairs of one 4 KiB page over `pages`
 * distinct IOVAs and the pages of one buffer, each ioctl given the user address of its argument struct,
 * encoded once in the driver's page `args`; between calls only the IOVA and the user address are rewritten,
 * through the driver's own mapping of that page (a plain store in C).
 */
export interface PairLoop {
  readonly sys: Sys;
  /** The fd both ioctls go to (the container, or `/dev/iommu`). */
  readonly fd: number;
  readonly mapRequest: number;
  readonly unmapRequest: number;
  /** The page holding the MAP struct at offset 0 and the UNMAP struct at offset 64. */
  readonly args: Mapping;
  /** Offsets in the MAP struct of the user address and the IOVA, and of the IOVA in the UNMAP struct. */
  readonly mapVaOff: number;
  readonly mapIovaOff: number;
  readonly unmapIovaOff: number;
  /** The buffer's first page and the first IOVA; `pages` of each (a power of two). */
  readonly buf: bigint;
  readonly iovaBase: bigint;
  readonly pages: number;
}

/** What {@link timePairs} measured. */
export interface PairTiming {
  readonly ms: number;
  readonly simNs: number;
  readonly syncs: number;
}

/** Offset of the UNMAP struct in the argument page. */
export const UNMAP_AT = 64;

/**
 * `warm` untimed pairs, then `n` timed ones (wall clock, virtual time, invalidation waits); throws if a
 * page is left pinned.
 */
export async function timePairs(kernel: Kernel, l: PairLoop, n: number, warm: number, name: string): Promise<PairTiming> {
  const iommu = kernel.iommu;
  if (iommu === null) throw new Error(`${name}: no IOMMU`);
  const vas: bigint[] = [];
  const iovas: bigint[] = [];
  for (let i = 0; i < l.pages; i++) {
    vas.push(l.buf + BigInt(i * 4096));
    iovas.push(l.iovaBase + BigInt(i * 4096));
  }
  await mapUnmapPairs(l, vas, iovas, warm);
  const syncs0 = iommu.unit.syncs;
  const sim0 = kernel.sim.now;
  const t0 = performance.now();
  await mapUnmapPairs(l, vas, iovas, n);
  const ms = performance.now() - t0;
  if (kernel.userPages.pinned !== 0) throw new Error(`${name}: pages left pinned`);
  return { ms, simNs: kernel.sim.now - sim0, syncs: iommu.unit.syncs - syncs0 };
}

/** Runs `count` MAP + UNMAP pairs. */
async function mapUnmapPairs(l: PairLoop, vas: readonly bigint[], iovas: readonly bigint[], count: number): Promise<void> {
  const mask = iovas.length - 1;
  const mapAt = l.args.addr;
  const unmapAt = l.args.addr + BigInt(UNMAP_AT);
  const unmapIova = UNMAP_AT + l.unmapIovaOff;
  for (let i = 0; i < count; i++) {
    const k = i & mask;
    const iova = iovas[k] as bigint;
    l.args.write64(l.mapVaOff, vas[k] as bigint);
    l.args.write64(l.mapIovaOff, iova);
    await l.sys.ioctl(l.fd, l.mapRequest, mapAt);
    l.args.write64(unmapIova, iova);
    await l.sys.ioctl(l.fd, l.unmapRequest, unmapAt);
  }
}
