import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DmaStatus, PhysicalMemory, Simulator, failDma, type DmaPort, type DmaResult } from '../sim/index.ts';
import { StandaloneHost } from '../device-models/pci/index.ts';
import { APEX, APEX_OFFSET, ApexDevice, ApexIrq, ApexOp } from '../device-models/apex/index.ts';
import { fcOptions } from './fc.ts';

/**
 * The gasket page table against a plain bigint model of spec/devices.md section 2.1, and the device's
 * subtable reads seen on its DMA port.
 */

const HIB = APEX_OFFSET[APEX.HIB_ERROR_STATUS] as number;
const FAULT_ADDR = APEX_OFFSET[APEX.PAGE_FAULT_ADDRESS] as number;
const MEM = 64 << 20;

/** The reference walk: the bus address, or 'simple' / 'extended' for the fault bit it sets. */
function model(slots: Map<number, bigint>, mem: PhysicalMemory, simple: number, addr: bigint): bigint | 'simple' | 'extended' {
  const valid = (e: bigint | undefined) => e !== undefined && (e & 1n) === 1n;
  if ((addr >> 63n) === 0n) {
    const slot = Number((addr >> 12n) & 0x1fffn);
    if ((addr >> 25n) !== 0n || slot >= simple || !valid(slots.get(slot))) return 'simple';
    return (slots.get(slot)! & ~0xfffn) | (addr & 0xfffn);
  }
  const rest = addr & ~(1n << 63n);
  if ((rest >> 34n) !== 0n) return 'extended';
  const l0 = Number((rest >> 21n) & 0x1fffn);
  const l1 = Number((rest >> 12n) & 0x1ffn);
  if (simple + l0 >= 8192 || !valid(slots.get(simple + l0))) return 'extended';
  const sub = Number(slots.get(simple + l0)! & ~0xfffn);
  const e = mem.read64(sub + 8 * l1);
  if ((e & 1n) === 0n) return 'extended';
  return (e & ~0xfffn) | (addr & 0xfffn);
}

function board(port?: (inner: DmaPort) => DmaPort) {
  const sim = new Simulator();
  const mem = new PhysicalMemory(MEM);
  const apex = new ApexDevice(sim);
  const host = new StandaloneHost(sim, mem, apex.fn);
  if (port !== undefined) apex.fn.dma.upstream = port(host.port);
  apex.fn.configWrite(0x04, 2, 0x0006);
  return { sim, mem, apex, host, w64: (o: number, v: bigint) => apex.fn.mmioWrite64(2, o, v), r64: (o: number) => apex.fn.mmioRead64(2, o) };
}

describe('gasket page table against the reference walk', () => {
  it('translates or faults exactly as the model says, for any partition, entries and address', () => {
    const page = fc.integer({ min: 0, max: MEM / 4096 - 1 }).map((p) => BigInt(p) * 4096n);
    const entry = fc.tuple(page, fc.boolean()).map(([p, v]) => p | (v ? 1n : 0n));
    const addr = fc.oneof(
      fc.bigInt({ min: 0n, max: (1n << 25n) - 1n }),
      fc.bigInt({ min: 0n, max: (1n << 34n) - 1n }).map((a) => a | (1n << 63n)),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 8192 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 8191 }), entry), { maxLength: 40 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 511 }), entry), { maxLength: 40 }), fc.array(addr, { minLength: 1, maxLength: 30 }),
        (simple, entries, subEntries, addrs) => {
          const b = board();
          b.w64(APEX_OFFSET[APEX.EXTENDED_TABLE] as number, BigInt(simple));
          const slots = new Map<number, bigint>();
          for (const [s, e] of entries) {
            b.w64(0x50000 + 8 * s, e);
            slots.set(s, e);
          }
          // Every valid entry's page may serve as a subtable: write level-1 entries into a few of them.
          const subs = [...slots.values()].filter((e) => (e & 1n) === 1n).map((e) => Number(e & ~0xfffn));
          subEntries.forEach(([i, e], k) => {
            const sub = subs[k % Math.max(1, subs.length)];
            if (sub !== undefined) b.mem.write64(sub + 8 * i, e);
          });
          for (const a of addrs) {
            const want = model(slots, b.mem, simple, a);
            b.w64(HIB, 0n);
            const got = b.apex.pageTable.translate(Number(a >> 32n), Number(a & 0xffff_ffffn));
            if (typeof want === 'bigint') {
              expect(got).toBe(Number(want));
              expect(b.r64(HIB)).toBe(0n);
            } else {
              expect(got).toBe(-1);
              expect(b.r64(HIB)).toBe(want === 'simple' ? 1n : 2n);
              expect(b.r64(FAULT_ADDR)).toBe(a);
            }
          }
        },
      ),
      fcOptions(100),
    );
  });

  it('the edges: last simple slot, last extended slot, 2^64 - 1', () => {
    const b = board();
    b.w64(APEX_OFFSET[APEX.EXTENDED_TABLE] as number, 6144n);
    b.w64(0x50000 + 8 * 6143, 0x1000n | 1n);
    expect(b.apex.pageTable.translate(0, 6143 * 4096 + 0xfff)).toBe(0x1fff);
    b.w64(0x50000 + 8 * 8191, 0x2000n | 1n);
    b.mem.write64(0x2000 + 8 * 511, 0x5000n | 1n);
    // Level-0 index 2047 (slot 8191), level-1 index 511.
    const lo = ((2047 << 21) | (511 << 12) | 0xabc) >>> 0;
    expect(b.apex.pageTable.translate(0x8000_0000, lo)).toBe(0x5abc);
    expect(b.apex.pageTable.translate(0x8000_0001, 0)).toBe(-1);
    expect(b.apex.pageTable.translate(0xffff_ffff, 0xffff_ffff)).toBe(-1);
    expect(b.r64(FAULT_ADDR)).toBe((1n << 64n) - 1n);
    // With no simple slots, slot 0 is level-0 index 0.
    b.w64(APEX_OFFSET[APEX.EXTENDED_TABLE] as number, 0n);
    expect(b.apex.pageTable.translate(0, 0)).toBe(-1);
    // A partition above 8192 is ignored.
    b.w64(APEX_OFFSET[APEX.EXTENDED_TABLE] as number, 8193n);
    expect(b.r64(APEX_OFFSET[APEX.EXTENDED_TABLE] as number)).toBe(0n);
    expect(b.apex.errors.count('bad-partition')).toBe(1);
  });
});

describe('subtable reads go through the device DMA port', () => {
  it('each extended access reads its level-1 entry under the function requester id; a refused read is an AXI read error', () => {
    const seen: { requester: number; addr: number; len: number }[] = [];
    let refuse = -1;
    const b = board((inner) => ({
      read(q: number, addr: number, d: Uint8Array, o: number, l: number, res: DmaResult) {
        seen.push({ requester: q, addr, len: l });
        if (addr >= refuse && addr < refuse + 4096) failDma(res, DmaStatus.FAULT, addr, 5, 0);
        else inner.read(q, addr, d, o, l, res);
      },
      write: (q, a, s, o, l, res) => inner.write(q, a, s, o, l, res),
      readWide: (q, a, d, o, l, res) => inner.readWide(q, a, d, o, l, res),
      writeWide: (q, a, s, o, l, res) => inner.writeWide(q, a, s, o, l, res),
    } satisfies DmaPort));
    b.w64(APEX_OFFSET[APEX.EXTENDED_TABLE] as number, 8000n);
    b.w64(0x50000 + 8 * 8000, 0x30000n | 1n);
    b.mem.write64(0x30000 + 8 * 3, 0x7000n | 1n);
    expect(b.apex.pageTable.translate(0x8000_0000, 0x3010)).toBe(0x7010);
    expect(seen).toEqual([{ requester: 0x18, addr: 0x30018, len: 8 }]);
    refuse = 0x30000;
    expect(b.apex.pageTable.translate(0x8000_0000, 0x3010)).toBe(-1);
    expect(b.r64(HIB)).toBe(1n << 4n);
  });

  it('bus mastering off: the queue cannot fetch; an AXI read error, FATAL_ERR over INTx', () => {
    const b = board();
    const w = (name: keyof typeof APEX, v: bigint) => b.w64(APEX_OFFSET[APEX[name]] as number, v);
    for (let s = 0; s < 3; s++) b.w64(0x50000 + 8 * s, BigInt(0x10_0000 + s * 4096) | 1n);
    w('IQ_SIZE', 16n);
    w('IQ_CONTROL', 1n);
    w('FATAL_ERR_INT_CONTROL', 1n);
    b.mem.write64(0x10_0000, 0x2000n);
    b.mem.write32(0x10_0008, 48);
    b.mem.write32(0x10_2000, ApexOp.NOP);
    b.apex.fn.configWrite(0x04, 2, 0x0002);
    w('IQ_TAIL', 1n);
    b.sim.runSync({ until: 10_000 });
    expect(b.r64(HIB)).toBe(1n << 4n);
    expect(b.r64(FAULT_ADDR)).toBe(0n);
    expect(b.apex.irq.raised[ApexIrq.FATAL_ERR]).toBe(1);
    expect(b.host.intxLevel).toBe(true);
    expect(b.apex.fn.errors.count('dma-bus-master-off')).toBe(1);
  });
});
