import { FrameAllocator, IdentityDmaPort, PhysicalMemory, Scheduler, type MsiSink } from '../../sim/index.ts';
import { IommuProt, createVtdSlPageTable, frameTableAllocator } from '../format/index.ts';
import { VtdDmaPort } from './port.ts';
import { REG, fmask } from './regs.ts';
import { VtdUnit } from './unit.ts';

/** One mapping of the built-in example. */
export interface ExampleMapping {
  readonly iova: number;
  readonly phys: number;
  readonly size: number;
  readonly prot: 'r' | 'rw';
}

/** The built-in example `dmasim explain` uses: a live unit with tables for one requester. */
export interface VtdExample {
  readonly mem: PhysicalMemory;
  readonly sched: Scheduler;
  readonly unit: VtdUnit;
  readonly port: VtdDmaPort;
  /** The requester with a context: 0x0100 (01:00.0), domain 1, 4-level table. */
  readonly rid: number;
  readonly mappings: readonly ExampleMapping[];
  /** An IOVA inside the mapped region that is not mapped (a walk ends in a not-present entry). */
  readonly hole: number;
  /** MSI messages the unit sent (its fault events). */
  readonly interrupts: { requester: number; address: number; data: number }[];
}

/**
 * Builds the example: 16 MiB of memory, a VT-d unit programmed through its registers (root table, SRTP,
 * fault event address, TE), and for rid 0x0100 four 4 KiB read-write pages at 0x10_0000, a read-only page
 * at 0x10_5000 after a hole at 0x10_4000, and a 2 MiB superpage at 0x20_0000.
 */
export function buildExplainExample(): VtdExample {
  const mem = new PhysicalMemory(16 * 1024 * 1024);
  const sched = new Scheduler();
  const interrupts: { requester: number; address: number; data: number }[] = [];
  const msi: MsiSink = { msi: (requester, address, data) => interrupts.push({ requester, address, data }) };
  const unit = new VtdUnit({ mem, clock: sched, msi, trace: sched.trace, stats: sched.stats });
  const port = new VtdDmaPort(unit, new IdentityDmaPort(mem));
  // Frame 0 stays unused; tables come from the first megabyte, data pages sit above it.
  const frames = new FrameAllocator(mem.frameCount, 'sequential', undefined, [[0, 0], [256, mem.frameCount - 1]]);
  const alloc = frameTableAllocator(frames);
  const root = alloc.allocTablePage();
  const ctx = alloc.allocTablePage();
  const table = createVtdSlPageTable({ mem, alloc, levels: 4 });
  if (typeof table === 'number' || root < 0 || ctx < 0) throw new RangeError('example: no table pages');
  const rid = 0x0100;
  const mappings: ExampleMapping[] = [
    { iova: 0x10_0000, phys: 0x80_0000, size: 0x4000, prot: 'rw' },
    { iova: 0x10_5000, phys: 0x90_0000, size: 0x1000, prot: 'r' },
    { iova: 0x20_0000, phys: 0x40_0000, size: 0x20_0000, prot: 'rw' },
  ];
  for (const m of mappings) {
    table.map(m.iova, m.phys, m.size, m.prot === 'rw' ? IommuProt.READ | IommuProt.WRITE : IommuProt.READ);
  }
  mem.fill(root, 0, 4096);
  mem.fill(ctx, 0, 4096);
  mem.write64(root + (rid >>> 8) * 16, BigInt(ctx) | 1n);
  // Context entry: P, TT = 0 (multi-level), SLPTPTR; AW = 2 (48-bit), DID = 1.
  mem.write64(ctx + (rid & 0xff) * 16, BigInt(table.root) | 1n);
  mem.write64(ctx + (rid & 0xff) * 16 + 8, BigInt(table.aw) | (1n << 8n));
  unit.write64(REG.RTADDR, BigInt(root));
  unit.write32(REG.GCMD, fmask('GCMD', 'SRTP'));
  unit.write32(REG.FEDATA, 0x30);
  unit.write32(REG.FEADDR, 0xfee0_0000);
  unit.write32(REG.FECTL, 0);
  unit.write32(REG.GCMD, fmask('GCMD', 'TE'));
  return { mem, sched, unit, port, rid, mappings, hole: 0x10_4000, interrupts };
}
