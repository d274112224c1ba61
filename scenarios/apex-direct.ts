import { WaitQueue, type SimProcess } from '../sim/index.ts';
import {
  APEX_COMMAND_SIZE, APEX_IRQ_COUNT, APEX_IRQ_NAMES, APEX_MSIX_TABLE, APEX_PAGE_TABLE, ApexIrq, ApexOp, HIB_ERROR,
} from '../device-models/index.ts';
import { REG, createVtdSlPageTable, fmask, formatBdf, frameTableAllocator, type VtdSlPageTable } from '../iommu/index.ts';
import type { Machine } from '../machine/index.ts';
import { MATMUL, apexReset, hex, matmulRef, off, programIntvecctl, rmw64, startQueue0, withApex, type ApexBar } from './apex-common.ts';
import type { Scenario, ScenarioContext } from './scenario.ts';

/** Message data of source i's MSI-X entry: vector 0x40 + i (gasket's one vector per source). */
const VECTOR_BASE = 0x40;
const MSIX_CAP_ID = 0x11;
/** Simple slots the partition leaves; slots from here on are extended level-0 entries. */
const SIMPLE_SLOTS = 6144;
const RING = 256;
/** Simple slots of the driver's buffers: device address = slot << 12. */
const SLOT = { ring: 0, status: 16, cmd: 32, a: 48, b: 49, c: 50, copySrc: 64, copyDst: 65 } as const;
/** A slot the driver never maps: the fault-and-reset job points its source here. */
const UNMAPPED_SLOT = 100;
const { M, K, N } = MATMUL;
/** Where IOVAs start when the IOMMU translates (one IOVA page per gasket slot mapped). */
const IOVA_BASE = 0x4000_0000;


/**
 * The bus addresses the Apex's DMA carries: physical addresses with the IOMMU absent (or not translating),
 * IOVAs mapped 4 KiB at a time in a second-level table when the scenario's own VT-d set-up made it translate.
 */
interface BusMap {
  readonly label: string;
  /** A bus address for physical page `phys`. */
  bus(phys: number): number;
}

/**
 * A few lines of VT-d driver, through machine MMIO: a root table with one context table, the requester's
 * context entry (domain 1, 4-level second-level table written with the format library), SRTP, TE. The
 * caches start empty, so nothing needs invalidating before first use.
 */
function vtdIdentity(m: Machine, rid: number): BusMap {
  const unit = m.iommu;
  if (unit === undefined) return { label: 'IOMMU absent: bus addresses are physical', bus: (p) => p };
  const base = m.config.iommu.base;
  const page = (): number => {
    const f = m.frames.alloc();
    if (f < 0) throw new Error('apex-direct: out of frames');
    m.memory.fill(f * 4096, 0, 4096);
    return f * 4096;
  };
  const root = page();
  const ctx = page();
  const alloc = frameTableAllocator(m.frames);
  const t = createVtdSlPageTable({ mem: m.memory, alloc, levels: 4 });
  if (typeof t === 'number') throw new Error(`apex-direct: createVtdSlPageTable: ${t}`);
  const dom: VtdSlPageTable = t;
  m.memory.write64(root + (rid >>> 8) * 16, BigInt(ctx) | 1n);
  m.memory.write64(ctx + (rid & 0xff) * 16, BigInt(dom.root) | 1n);
  m.memory.write64(ctx + (rid & 0xff) * 16 + 8, 2n | (1n << 8n));
  m.mmio.write64(base + REG.RTADDR, BigInt(root));
  m.mmio.write32(base + REG.GCMD, fmask('GCMD', 'SRTP'));
  m.mmio.write32(base + REG.GCMD, fmask('GCMD', 'TE'));
  if ((m.mmio.read32(base + REG.GSTS) & fmask('GSTS', 'TES')) === 0) throw new Error('apex-direct: VT-d translation did not turn on');
  let next = IOVA_BASE;
  const iovaOf = new Map<number, number>();
  return {
    label: `IOMMU translating: domain 1, gasket entries hold IOVAs from ${hex(IOVA_BASE)}`,
    bus(phys) {
      const known = iovaOf.get(phys);
      if (known !== undefined) return known;
      const iova = next;
      next += 4096;
      if (dom.map(iova, phys, 4096, 3) !== 4096) throw new Error(`apex-direct: IOMMU map ${hex(iova)} failed`);
      iovaOf.set(phys, iova);
      return iova;
    },
  };
}

/** The driver: everything apex_driver.c and libedgetpu do for one queue, on BAR2 through machine MMIO. */
class ApexDirectDriver implements ApexBar {
  readonly #m: Machine;
  readonly #p: SimProcess;
  readonly #bar2: number;
  readonly #bdf: number;
  readonly #say: (t: string) => void;
  readonly #bus: BusMap;
  readonly #irq = new WaitQueue('apex MSI-X');
  /** Interrupt sources seen and not yet consumed by a wait. */
  readonly #pending = new Set<number>();
  /** Physical pages behind the driver's slots. */
  readonly phys = new Map<number, number>();
  interrupts = 0;
  tail = 0;

  constructor(m: Machine, p: SimProcess, bdf: number, bar2: number, bus: BusMap, say: (t: string) => void) {
    this.#m = m;
    this.#p = p;
    this.#bdf = bdf;
    this.#bar2 = bar2;
    this.#bus = bus;
    this.#say = say;
    for (let i = 0; i < APEX_IRQ_COUNT; i++) {
      m.intc.onVector(VECTOR_BASE + i, () => {
        this.interrupts++;
        if (m.trace.active) m.trace.emit(m.sim.now, 'driver', 'irq', { source: APEX_IRQ_NAMES[i] ?? '?', vector: VECTOR_BASE + i });
        this.#pending.add(i);
        this.#irq.wakeAll();
      });
    }
    for (const s of Object.values(SLOT)) {
      const f = m.frames.alloc();
      if (f < 0) throw new Error('apex-direct: out of frames');
      this.phys.set(s, f * 4096);
    }
  }

  r32(o: number): number {
    return this.#m.mmio.read32(this.#bar2 + o);
  }
  w32(o: number, v: number): void {
    this.#m.mmio.write32(this.#bar2 + o, v);
  }
  r64(o: number): bigint {
    return this.#m.mmio.read64(this.#bar2 + o);
  }
  w64(o: number, v: bigint | number): void {
    this.#m.mmio.write64(this.#bar2 + o, BigInt(v));
  }
  rmw64(o: number, v: bigint, width: number, shift: number): void {
    rmw64(this, o, v, width, shift);
  }
  delay(ns: number): PromiseLike<unknown> {
    return this.#p.delay(ns);
  }

  /** apex_pci_probe: identity, memory decode + bus mastering, MSI-X enabled. */
  probe(): boolean {
    const pci = this.#m.pci;
    const id = pci.configRead(this.#bdf, 0x00, 4);
    const cls = pci.configRead(this.#bdf, 0x08, 4) >>> 8;
    pci.configWrite(this.#bdf, 0x04, 2, pci.configRead(this.#bdf, 0x04, 2) | 0x6);
    let cap = pci.configRead(this.#bdf, 0x34, 1);
    while (cap !== 0 && pci.configRead(this.#bdf, cap, 1) !== MSIX_CAP_ID) cap = pci.configRead(this.#bdf, cap + 1, 1);
    const vectors = (pci.configRead(this.#bdf, cap + 2, 2) & 0x7ff) + 1;
    pci.configWrite(this.#bdf, cap + 2, 2, 0x8000);
    const ok = id === 0x089a_1ac1 && cls === 0x0000ff;
    const h4 = (n: number): string => n.toString(16).padStart(4, '0');
    this.#say(`probe: ${h4(id & 0xffff)}:${h4(id >>> 16)} class 0x${cls.toString(16).padStart(6, '0')}, MSI-X ${vectors} entries, ${ok ? 'Apex' : 'NOT an Apex'}; page table ${this.r64(off('PAGE_TABLE_SIZE'))} slots`);
    return ok;
  }

  /** apex_reset: enter reset if not in it, then quit it; then both tables initialised. */
  reset(): Promise<void> {
    return apexReset(this, this.#say);
  }

  /** gasket_interrupt_init: entry i -> vector 0x40 + i on APIC 0, INTVECCTLs, unmask. */
  setupInterrupts(): void {
    for (let i = 0; i < APEX_IRQ_COUNT; i++) {
      const e = APEX_MSIX_TABLE + 16 * i;
      this.w32(e, 0xfee0_0000);
      this.w32(e + 4, 0);
      this.w32(e + 8, VECTOR_BASE + i);
    }
    programIntvecctl(this);
    for (let i = 0; i < APEX_IRQ_COUNT; i++) this.w32(APEX_MSIX_TABLE + 16 * i + 12, 0);
  }

  /** Partition, mappings, queue 0 of {@link RING} descriptors, run controls and interrupts on. */
  async setupQueue(): Promise<void> {
    this.w64(off('EXTENDED_TABLE'), APEX_PAGE_TABLE.entries);
    this.w64(off('EXTENDED_TABLE'), SIMPLE_SLOTS);
    for (const [s, p] of this.phys) this.w64(APEX_PAGE_TABLE.offset + 8 * s, BigInt(this.#bus.bus(p)) | 1n);
    this.#say(`page table: ${this.r64(off('EXTENDED_TABLE'))} simple slots + ${APEX_PAGE_TABLE.entries - SIMPLE_SLOTS} extended; ${this.phys.size} slots mapped (${this.#bus.label})`);
    await startQueue0(this, SLOT.ring << 12, SLOT.status << 12, RING, true);
    this.tail = 0;
    this.#say(`queue 0: ${RING} descriptors at device ${hex(SLOT.ring << 12)}, status block at ${hex(SLOT.status << 12)}, IQ_STATUS ${hex(this.r64(off('IQ_STATUS')))}`);
  }

  /** Writes one command into the command buffer and its descriptor, then rings the doorbell. */
  submit(op: number, fields: { len?: number; a?: bigint; b?: bigint; c?: bigint; args?: readonly number[] }): number {
    const mem = this.#m.memory;
    const cb = this.phys.get(SLOT.cmd) as number;
    mem.fill(cb, 0, APEX_COMMAND_SIZE);
    mem.write32(cb, op);
    mem.write32(cb + 4, fields.len ?? 0);
    mem.write64(cb + 8, fields.a ?? 0n);
    mem.write64(cb + 16, fields.b ?? 0n);
    mem.write64(cb + 24, fields.c ?? 0n);
    for (let k = 0; k < 3; k++) mem.write32(cb + 32 + 4 * k, fields.args?.[k] ?? 0);
    const ring = this.phys.get(SLOT.ring) as number;
    mem.write64(ring + 16 * this.tail, BigInt(SLOT.cmd << 12));
    mem.write32(ring + 16 * this.tail + 8, APEX_COMMAND_SIZE);
    mem.write32(ring + 16 * this.tail + 12, 0);
    this.tail = (this.tail + 1) % RING;
    const t = this.#m.sim.now;
    this.w64(off('IQ_TAIL'), this.tail);
    return t;
  }

  /** Waits for one of `sources`; returns the one that arrived first (by source number among those pending). */
  async waitIrq(sources: readonly number[], what: string): Promise<number> {
    for (;;) {
      for (const s of sources) {
        if (this.#pending.delete(s)) return s;
      }
      await this.#p.wait(this.#irq, what);
    }
  }

  /** The job's completion: SC_HOST_0 cleared (W0C), count read, status block read, INSTR_QUEUE acknowledged. */
  acknowledge(): { completedHead: number; fatal: number; count: number } {
    this.w64(off('SC_HOST_INT_STATUS'), 0xe);
    const count = Number(this.r64(off('SC_HOST_INT_COUNT')) & 0xffffn);
    const sb = this.phys.get(SLOT.status) as number;
    const completedHead = this.#m.memory.read32(sb);
    const fatal = this.#m.memory.read32(sb + 4);
    this.w64(off('IQ_INT_STATUS'), 0);
    this.#pending.delete(ApexIrq.INSTR_QUEUE);
    return { completedHead, fatal, count };
  }

  /** The driver's queue-0 view, on its own track (the device emits no queue records of its own). */
  traceJob(start: number, name: string): void {
    const m = this.#m;
    if (m.trace.active) m.trace.span(start, m.sim.now - start, 'driver: queue 0 (doorbell to SC_HOST_0)', name, { tail: this.tail });
  }
}

async function runOn(ctx: ScenarioContext, m: Machine, withIommu: boolean): Promise<boolean> {
  const { sim, pci, memory } = m;
  const slot = pci.functions.find((f) => f.type === 'apex');
  if (slot === undefined) throw new Error('apex-direct: no Apex in the machine');
  const bar = pci.bars.find((b) => b.bdf === slot.bdf && b.bar === 2);
  if (bar === undefined) throw new Error('apex-direct: Apex BAR2 was not assigned');
  const say = (text: string): void => ctx.out.line(`[${(sim.now / 1000).toFixed(3).padStart(12)} us] ${text}`);
  let ok = false;
  sim.process('driver', async (p) => {
    const bus = withIommu ? vtdIdentity(m, slot.requesterId) : { label: m.iommu === undefined ? 'no IOMMU: bus addresses are physical' : 'IOMMU present, translation off: bus addresses are physical', bus: (x: number) => x };
    const d = new ApexDirectDriver(m, p, slot.bdf, bar.base, bus, say);
    say(`Apex at ${slot.address} (requester id ${hex(slot.requesterId)}), BAR2 ${hex(bar.base)} (${bar.size >>> 20} MiB, 64-bit prefetchable)`);
    const probed = d.probe();
    await d.reset();
    d.setupInterrupts();
    await d.setupQueue();

    // A matrix multiply: A and B from the seeded generator, C checked against matmulRef.
    const a = new Int8Array(M * K);
    const b = new Int8Array(K * N);
    for (let i = 0; i < a.length; i++) a[i] = (m.rng.u32() & 0xff) - 128;
    for (let i = 0; i < b.length; i++) b[i] = (m.rng.u32() & 0xff) - 128;
    memory.write(d.phys.get(SLOT.a) as number, new Uint8Array(a.buffer), 0, a.length);
    memory.write(d.phys.get(SLOT.b) as number, new Uint8Array(b.buffer), 0, b.length);
    const want = matmulRef(a, b);
    const matmul = async (label: string): Promise<boolean> => {
      memory.fill(d.phys.get(SLOT.c) as number, 0, 4 * M * N);
      const t0 = d.submit(ApexOp.MATMUL_I8, { a: BigInt(SLOT.a << 12), b: BigInt(SLOT.b << 12), c: BigInt(SLOT.c << 12), args: [M, K, N] });
      say(`${label}: MATMUL_I8 ${M}x${K} * ${K}x${N} submitted, doorbell IQ_TAIL = ${d.tail}`);
      await d.waitIrq([ApexIrq.SC_HOST_0], 'SC_HOST_0');
      d.traceJob(t0, 'MATMUL_I8');
      const tSc = sim.now;
      const st = d.r64(off('SC_HOST_INT_STATUS'));
      // gasket's order: SC_HOST_0 then INSTR_QUEUE; the queue interrupt is acknowledged once it has arrived.
      await d.waitIrq([ApexIrq.INSTR_QUEUE], 'INSTR_QUEUE');
      const ack = d.acknowledge();
      const got = new Int32Array(M * N);
      memory.read(d.phys.get(SLOT.c) as number, new Uint8Array(got.buffer), 0, 4 * M * N);
      let same = 0;
      for (let i = 0; i < got.length; i++) if (got[i] === want[i]) same++;
      say(`${label}: SC_HOST_0 interrupt (vector ${hex(VECTOR_BASE + ApexIrq.SC_HOST_0)}) after ${((tSc - t0) / 1000).toFixed(3)} us, INSTR_QUEUE (${hex(VECTOR_BASE + ApexIrq.INSTR_QUEUE)}) ${sim.now - tSc} ns later; SC_HOST_INT_STATUS ${hex(st)} -> ${hex(d.r64(off('SC_HOST_INT_STATUS')))} (W0C), count ${ack.count}, status block head ${ack.completedHead} fatal ${ack.fatal}, IQ_INT_STATUS ${hex(d.r64(off('IQ_INT_STATUS')))}`);
      say(`${label}: C matches the TypeScript product in ${same}/${got.length} elements (C[0][0] = ${got[0]}, C[${M - 1}][${N - 1}] = ${got[M * N - 1]})`);
      return same === got.length && ack.fatal === 0 && ack.completedHead === d.tail;
    };
    const first = await matmul('job 1');

    // Fault and reset: a COPY whose source is a slot the driver never mapped.
    const badAddr = BigInt(UNMAPPED_SLOT << 12) | 0x80n;
    const t0 = d.submit(ApexOp.COPY, { len: 256, a: badAddr, c: BigInt(SLOT.copyDst << 12) });
    say(`job 2: COPY 256 bytes from device ${hex(badAddr)} (slot ${UNMAPPED_SLOT}, never mapped)`);
    await d.waitIrq([ApexIrq.FATAL_ERR], 'FATAL_ERR');
    d.traceJob(t0, 'COPY (faults)');
    d.w64(off('FATAL_ERR_INT_CONTROL'), 0);
    d.w64(off('FATAL_ERR_INT_STATUS'), 0);
    const hib = d.r64(off('HIB_ERROR_STATUS'));
    const first_ = d.r64(off('HIB_FIRST_ERROR_STATUS'));
    const fault = d.r64(off('PAGE_FAULT_ADDRESS'));
    const iq = d.r64(off('IQ_STATUS'));
    const sbFatal = memory.read32((d.phys.get(SLOT.status) as number) + 4);
    say(`job 2: FATAL_ERR interrupt (vector ${hex(VECTOR_BASE + ApexIrq.FATAL_ERR)}); HIB_ERROR_STATUS ${hex(hib)} (inbound page fault), first ${hex(first_)}, PAGE_FAULT_ADDRESS ${hex(fault)}, IQ_STATUS ${hex(iq)} (halted), status block fatal ${sbFatal}`);
    const faulted = hib === 1n << BigInt(HIB_ERROR.INBOUND_PAGE_FAULT.lsb) && fault === badAddr && (iq & 2n) === 2n && sbFatal === 1;
    say('recovery: reset, interrupts, partition, mappings and queue again');
    await d.reset();
    d.setupInterrupts();
    await d.setupQueue();
    const again = await matmul('job 3');
    ok = probed && first && faulted && again && m.intc.spurious === 0;
    say(`${d.interrupts} interrupts, ${m.intc.spurious} spurious`);
  });
  await sim.run();
  ctx.out.line(`done at ${sim.now} ns of virtual time (${formatBdf(slot.bdf)}, ${withIommu ? 'behind VT-d' : 'no IOMMU'}): ${ok ? 'OK' : 'FAILED'}`);
  return ok;
}

/**
 * The Apex programmed directly through the machine's MMIO, with no kernel: probe, the SCU reset sequence,
 * MSI-X, the page-table partition, queue 0, a matrix multiply checked against a plain computation and
 * completed by the SC_HOST_0 interrupt (acknowledged W0C), then a job that faults on an unmapped gasket
 * slot (HIB error bits, FATAL_ERR, a halted queue), a reset and a good job again. Run first with the
 * IOMMU as configured but untouched (bus addresses are physical), then on a second machine whose VT-d
 * unit the scenario itself programs (gasket entries hold IOVAs). The trace records the first run.
 */
async function runApexDirect(ctx: ScenarioContext): Promise<void> {
  ctx.out.line('== Apex without translation ==');
  const a = await runOn(ctx, ctx.createMachine(withApex(ctx.machineConfig, ctx.machineConfig.iommu.enabled)), false);
  ctx.out.line('== Apex behind VT-d (the scenario programs the unit) ==');
  const b = await runOn(ctx, ctx.createMachine(withApex(ctx.machineConfig, true)), true);
  if (!a || !b) throw new Error('apex-direct: a check failed');
}

/** The `apex-direct` scenario. */
export const apexDirect: Scenario = {
  description: 'the Apex (Edge TPU) driven through machine MMIO (no kernel): reset, queue 0, matmul with MSI-X, fault and reset; also behind VT-d',
  run: runApexDirect,
};
