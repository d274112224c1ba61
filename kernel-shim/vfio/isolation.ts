import { FRAME_SIZE, type DmaObserver } from '../../sim/index.ts';
import type { Kernel } from '../kernel.ts';
import { IommufdCtx } from '../iommufd/index.ts';
import { vfioGroups } from './core.ts';
import { Type1Iommu } from './type1.ts';

/**
 * DMA isolation watched from below, for tests, scenarios and teaching: an observer on physical memory
 * (`machine.memory.observeDma`) that checks every frame a requester's DMA reaches, after translation,
 * against the frames it may reach at that instant, and records each one outside them.
 */

/** One frame a requester touched outside the frames it may reach. */
export interface IsolationViolation {
  readonly rid: number;
  readonly frame: number;
  readonly write: boolean;
  /** Virtual time of the access, ns. */
  readonly time: number;
}

/**
 * Checks every DMA piece reaching memory against `allowed(rid)`, the frames requester `rid` may touch at
 * this instant; records each frame outside it. Frames are counted per access (a piece spans one or two).
 */
export class IsolationObserver implements DmaObserver {
  readonly violations: IsolationViolation[] = [];
  /** Frames touched, counted per access. */
  touches = 0;
  /** The distinct frames touched. */
  readonly frames = new Set<number>();
  readonly #allowed: (rid: number) => ReadonlySet<number>;
  readonly #now: () => number;

  constructor(allowed: (rid: number) => ReadonlySet<number>, now: () => number) {
    this.#allowed = allowed;
    this.#now = now;
  }

  dmaAccess(rid: number, addr: number, len: number, write: boolean): void {
    const ok = this.#allowed(rid);
    const last = Math.floor((addr + len - 1) / FRAME_SIZE);
    for (let f = Math.floor(addr / FRAME_SIZE); f <= last; f++) {
      this.touches++;
      this.frames.add(f);
      if (!ok.has(f)) this.violations.push({ rid, frame: f, write, time: this.#now() });
    }
  }
}

/**
 * The frames the kernel holds for the container of IOMMU group `groupId`, read from its type1 state: every
 * frame of every `vfio_dma` run that the kernel's page counts also show pinned. Empty without a type1
 * container.
 */
export function containerPinnedFrames(kernel: Kernel, groupId: number): Set<number> {
  const out = new Set<number>();
  const g = vfioGroups(kernel).find((x) => x.id === groupId);
  const data = g?.container?.data;
  if (!(data instanceof Type1Iommu)) return out;
  for (const d of data.dmas) {
    for (const r of d.runs) {
      for (const f of r.frames ?? []) if (kernel.userPages.pinCount(f) > 0) out.add(f);
    }
  }
  return out;
}

/**
 * Watches requester `rid` against the frames pinned for the container of group `groupId()` (re-read at every
 * access; any other requester may touch nothing). Returns the observer and the function that detaches it.
 */
export function watchContainerIsolation(kernel: Kernel, rid: number, groupId: () => number): { observer: IsolationObserver; detach: () => void } {
  const none = new Set<number>();
  const observer = new IsolationObserver((r) => (r === rid ? containerPinnedFrames(kernel, groupId()) : none), () => kernel.sim.now);
  return { observer, detach: kernel.machine.memory.observeDma(observer) };
}

/**
 * The frames pinned for the user-space owner of `groupId`'s DMA, whichever API holds it: its type1
 * container ({@link containerPinnedFrames}), or, for a device bound through its cdev, every area of every
 * IOAS of the iommufd context that claimed the group.
 */
export function ownerPinnedFrames(kernel: Kernel, groupId: number): Set<number> {
  const out = containerPinnedFrames(kernel, groupId);
  const g = kernel.iommu?.groups.find((x) => x.id === groupId);
  const owner = g?.owner;
  if (!(owner instanceof IommufdCtx)) return out;
  for (const o of owner.objects.values()) {
    if (o.type !== 'ioas') continue;
    for (const a of o.iopt.areas) for (const f of a.frames ?? []) if (kernel.userPages.pinCount(f) > 0) out.add(f);
  }
  return out;
}

/** {@link watchContainerIsolation} against {@link ownerPinnedFrames}: type1 and iommufd alike. */
export function watchOwnerIsolation(kernel: Kernel, rid: number, groupId: () => number): { observer: IsolationObserver; detach: () => void } {
  const none = new Set<number>();
  const observer = new IsolationObserver((r) => (r === rid ? ownerPinnedFrames(kernel, groupId()) : none), () => kernel.sim.now);
  return { observer, detach: kernel.machine.memory.observeDma(observer) };
}
