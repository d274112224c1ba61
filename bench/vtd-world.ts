import { FrameAllocator, PhysicalMemory, Scheduler, Stats } from '../sim/index.ts';
import { createVtdSlPageTable, frameTableAllocator, type VtdSlPageTable } from '../iommu/format/index.ts';
import { REG, VtdUnit, fmask, type VtdOptions } from '../iommu/vtd/index.ts';

/** What {@link vtdWorld} builds. */
export interface VtdWorld {
  readonly mem: PhysicalMemory;
  readonly sched: Scheduler;
  readonly stats: Stats;
  readonly unit: VtdUnit;
  readonly frames: FrameAllocator;
  /** A zeroed 4 KiB page from the table allocator. */
  readonly page: () => number;
  /** The requester's domain table. */
  readonly table: VtdSlPageTable;
}

/**
 * The benchmarks' bare-metal VT-d set-up: memory, a unit, and one requester attached through root and context
 * entries to a fresh 4-level table in domain `did`, with the root table pointer set (translation still off:
 * each benchmark enables what it needs). Frames 0..`reservedLastFrame` are kept out of the allocator.
 */
export function vtdWorld(
  memBytes: number,
  rid: number,
  did: number,
  reservedLastFrame: number,
  unitOptions: Partial<Omit<VtdOptions, 'mem' | 'clock' | 'msi' | 'stats'>> = {},
): VtdWorld {
  const mem = new PhysicalMemory(memBytes);
  const sched = new Scheduler();
  const stats = new Stats();
  const unit = new VtdUnit({ ...unitOptions, mem, clock: sched, msi: { msi: () => {} }, stats });
  const frames = new FrameAllocator(mem.frameCount, 'sequential', undefined, [[0, reservedLastFrame]]);
  const alloc = frameTableAllocator(frames);
  const page = (): number => {
    const p = alloc.allocTablePage();
    mem.fill(p, 0, 4096);
    return p;
  };
  const root = page();
  const ctx = page();
  const table = createVtdSlPageTable({ mem, alloc });
  if (typeof table === 'number') throw new Error(`createVtdSlPageTable: ${table}`);
  mem.write64(root + (rid >>> 8) * 16, BigInt(ctx) | 1n);
  mem.write64(ctx + (rid & 0xff) * 16, BigInt(table.root) | 1n);
  mem.write64(ctx + (rid & 0xff) * 16 + 8, 2n | (BigInt(did) << 8n));
  unit.write64(REG.RTADDR, BigInt(root));
  unit.write32(REG.GCMD, fmask('GCMD', 'SRTP'));
  return { mem, sched, stats, unit, frames, page, table };
}
