import type { Mapping, Sys } from '../kernel-shim/index.ts';

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
  /** The buffer's page addresses and the IOVAs, one per page (a power of two of them). */
  readonly vas: readonly bigint[];
  readonly iovas: readonly bigint[];
}

/** Offset of the UNMAP struct in the argument page. */
export const UNMAP_AT = 64;

/** Runs `count` MAP + UNMAP pairs. */
export async function mapUnmapPairs(l: PairLoop, count: number): Promise<void> {
  const mask = l.iovas.length - 1;
  const mapAt = l.args.addr;
  const unmapAt = l.args.addr + BigInt(UNMAP_AT);
  const unmapIova = UNMAP_AT + l.unmapIovaOff;
  for (let i = 0; i < count; i++) {
    const k = i & mask;
    const iova = l.iovas[k] as bigint;
    l.args.write64(l.mapVaOff, l.vas[k] as bigint);
    l.args.write64(l.mapIovaOff, iova);
    await l.sys.ioctl(l.fd, l.mapRequest, mapAt);
    l.args.write64(unmapIova, iova);
    await l.sys.ioctl(l.fd, l.unmapRequest, unmapAt);
  }
}
