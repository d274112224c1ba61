import { apexOff, openApex } from './apex-host.ts';
import { describe, expect, it } from 'vitest';
import { type TraceRecord } from '../sim/index.ts';
import { APEX_COMMAND_SIZE, ApexDevice, ApexIrq, ApexOp } from '../device-models/apex/index.ts';

/**
 * The Apex's device-side trace records (device-models/apex/README.md, Trace): one 4 KiB COPY job, traced on
 * `${name}/queue0`, `${name}/dma` and `${name}/irq`, in order and at the times of the timing model
 * (test/apex-timing.test.ts: identity port at 7 ns per access, Gen2 x1).
 */

const NAME = 'apex@01:00.0';
const off = apexOff;
const PHYS = 0x10_0000;

/** Ring slot 0, status block slot 1, command buffer slot 2, data slots 3.. (as in apex-timing). */
function copyJob(trace: boolean, setup: (w64: (o: number, v: number) => void, fn: ApexDevice['fn']) => void = () => {}) {
  const { sim, mem, apex, host, fn, w64 } = openApex(16 << 20, { name: NAME }, { accessNs: 7 });
  w64(off('SC_HOST_INTVECCTL'), 4);
  for (let s = 0; s < 16; s++) w64(0x50000 + 8 * s, PHYS + s * 4096 + 1);
  w64(off('IQ_STATUS_BLOCK_BASE'), 0x1000);
  w64(off('IQ_SIZE'), 4);
  w64(off('IQ_CONTROL'), 0b101);
  w64(off('IQ_INT_CONTROL'), 1);
  w64(off('SC_HOST_INT_CONTROL'), 1);
  setup(w64, fn);
  const o = PHYS + 2 * 4096;
  mem.write32(o, ApexOp.COPY);
  mem.write32(o + 4, 4096);
  mem.write64(o + 8, 0x3000n);
  mem.write64(o + 24, 0x4000n);
  mem.write64(PHYS, 0x2000n);
  mem.write32(PHYS + 8, APEX_COMMAND_SIZE);
  const records: TraceRecord[] = [];
  if (trace) {
    sim.trace.subscribe((r) => {
      if (r.source.startsWith(`${NAME}/`)) records.push(r);
    });
  }
  const t0 = sim.now;
  w64(off('IQ_TAIL'), 1);
  sim.runSync({ until: t0 + 10_000_000 });
  const scHost = (host.messages.find((m) => m.data === ApexIrq.SC_HOST_0)?.time ?? NaN) - t0;
  return { t0, records, scHost, stats: sim.stats.snapshot(), completed: apex.queue.completedCount };
}

describe('Apex trace records', () => {
  it('a COPY job traces doorbell, its DMA spans, the descriptor span, SC_HOST_0, the status block and INSTR_QUEUE, in order', () => {
    const { t0, records, scHost, stats, completed } = copyJob(true);
    const plain = copyJob(false);
    // Tracing changes nothing: timing, counters, work done.
    expect(scHost).toBe(26008);
    expect(plain.scHost).toBe(scHost);
    expect(plain.stats).toEqual(stats);
    expect(plain.completed).toBe(completed);
    expect(plain.records).toEqual([]);
    const rows = records.map((r) => [r.source.slice(NAME.length + 1), r.kind, r.time - t0, r.durNs, r.fields]);
    const q = 'queue0';
    expect(rows).toEqual([
      [q, 'doorbell', 0, undefined, { tail: 1 }],
      // Descriptor 16 B, command buffer 48 B; then 100 ns setup, the COPY's 4 KiB read and write.
      ['dma', 'dma.read', 200, 687, { queue: 0, address: 0n, bytes: 16, linkNs: 680, ok: true }],
      ['dma', 'dma.read', 887, 751, { queue: 0, address: 0x2000n, bytes: 48, linkNs: 744, ok: true }],
      ['dma', 'dma.read', 1738, 14535, { queue: 0, address: 0x3000n, bytes: 4096, linkNs: 14528, ok: true }],
      ['dma', 'dma.write', 16273, 9735, { queue: 0, address: 0x4000n, bytes: 4096, linkNs: 9728, ok: true }],
      [q, 'descriptor', 200, 25808, { index: 0, commands: 1, bytes: 48 }],
      ['irq', 'SC_HOST_0', 26008, undefined, { source: ApexIrq.SC_HOST_0, entry: 4, vector: 4 }],
      [q, 'status-block', 26008, undefined, { completedHead: 1, fatal: 0 }],
      ['dma', 'dma.write', 26008, 87, { queue: 0, address: 0x1000n, bytes: 16, linkNs: 80, ok: true }],
      ['irq', 'INSTR_QUEUE', 26095, undefined, { source: ApexIrq.INSTR_QUEUE, entry: 0, vector: 0 }],
    ]);
  });

  it("marks a raise whose MSI-X entry is masked 'masked' and one whose source is not enabled 'disabled'", () => {
    const { records } = copyJob(true, (w64, fn) => {
      w64(off('IQ_INT_CONTROL'), 0);
      // Entry 4 (SC_HOST_0's) masked: vector control bit 0 (the table takes 32-bit accesses).
      fn.mmioWrite(2, 0x46800 + 16 * 4 + 12, 4, 1);
    });
    const irq = records.filter((r) => r.source === `${NAME}/irq`).map((r) => [r.kind, r.fields.entry]);
    expect(irq).toEqual([['SC_HOST_0', 'masked'], ['INSTR_QUEUE', 'disabled']]);
  });
});
