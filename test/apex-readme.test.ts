import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PhysicalMemory, Simulator } from '../sim/index.ts';
import { StandaloneHost, generatedSection } from '../device-models/pci/index.ts';
import { ApexDevice, ApexOp, apexReadmeSections } from '../device-models/apex/index.ts';

/** device-models/apex/README.md: the register table is what the data renders, and the worked sequence runs as written. */

const readme = readFileSync(join(import.meta.dirname, '..', 'device-models', 'apex', 'README.md'), 'utf8');

describe('apex/README.md', () => {
  it('the generated register table matches APEX_REGS', () => {
    for (const [key, table] of Object.entries(apexReadmeSections())) expect(generatedSection(readme, key), key).toBe(table);
  });

  it('capabilities sit where the identity table says: PM 0x40, MSI-X 0x48, PCI Express after', () => {
    const fn = new ApexDevice(new Simulator()).fn;
    expect(fn.configRead(0x34, 1)).toBe(0x40);
    expect(fn.configRead(0x40, 1)).toBe(0x01);
    expect(fn.configRead(0x41, 1)).toBe(0x48);
    expect(fn.configRead(0x48, 1)).toBe(0x11);
    expect(fn.configRead(fn.configRead(0x49, 1), 1)).toBe(0x10);
  });

  it('the worked programming sequence behaves as written', () => {
    const sim = new Simulator();
    const mem = new PhysicalMemory(64 << 20);
    const apex = new ApexDevice(sim);
    const host = new StandaloneHost(sim, mem, apex.fn);
    const fn = apex.fn;
    const r32 = (o: number) => fn.mmioRead(2, o, 4);
    const w32 = (o: number, v: number) => fn.mmioWrite(2, o, 4, v);
    const r64 = (o: number) => fn.mmioRead64(2, o);
    const w64 = (o: number, v: bigint | number) => fn.mmioWrite64(2, o, BigInt(v));
    const rmw32 = (o: number, v: number, width: number, shift: number) => {
      const m = ((1 << width) - 1) << shift;
      w32(o, ((r32(o) & ~m) | ((v << shift) & m)) >>> 0);
    };
    const poll = (o: number, mask: number, want: number) => {
      for (let i = 0; i < 100 && (r32(o) & mask) !== want; i++) sim.runSync({ until: sim.now + 1000 });
      expect(r32(o) & mask).toBe(want);
    };
    // 1. Probe and apex_reset.
    fn.configWrite(0x04, 2, 0x0006);
    expect(fn.configRead(0, 4)).toBe(0x089a_1ac1);
    expect(r32(0x1a318) & 0x10).toBe(0);
    w64(0x4a000, r64(0x4a000) & ~(1n << 32n));
    w64(0x486d8, 1);
    poll(0x486e0, 1, 1);
    rmw32(0x1a314, 1, 2, 2);
    rmw32(0x1a314, 1, 2, 18);
    rmw32(0x1a318, 3, 2, 14);
    poll(0x1a318, 0x40, 0x40);
    rmw32(0x1a318, 0, 2, 14);
    rmw32(0x1a314, 0, 2, 18);
    rmw32(0x1a314, 2, 2, 2);
    poll(0x1a318, 0x40, 0);
    poll(0x1a318, 0x10, 0);
    rmw32(0x1a318, 2, 2, 26);
    // 2. Tables ready.
    poll(0x46078, 1, 1);
    poll(0x46080, 1, 1);
    // 3. MSI-X: entry i -> data 0x40 + i; INTVECCTLs; masks cleared.
    fn.configWrite(0x48 + 2, 2, 0x8000);
    for (let i = 0; i < 13; i++) {
      w32(0x46800 + 16 * i, 0xfee0_0000);
      w32(0x46800 + 16 * i + 8, 0x40 + i);
    }
    for (let i = 0; i < 4; i++) w64(0x46018 + 8 * i, i);
    for (let k = 0; k < 4; k++) {
      for (const [reg, base] of [[0x46038, 4], [0x46040, 8]] as const) {
        const m = 0xffffn << BigInt(7 * k);
        w64(reg, (r64(reg) & ~m) | (BigInt(base + k) << BigInt(7 * k)));
      }
    }
    w64(0x46048, 12);
    for (let i = 0; i < 13; i++) w32(0x46800 + 16 * i + 12, 0);
    // 4. Partition.
    w64(0x46008, 8192);
    w64(0x46008, 6144);
    // 5. Map: ring at slot 0, status block at slot 1, a command buffer at slot 2, data at slot 3.
    const page = (slot: number) => 0x10_0000 + slot * 4096;
    for (let s = 0; s < 4; s++) w64(0x50000 + 8 * s, BigInt(page(s)) | 1n);
    // 6. Queue.
    expect(r64(0x48578)).toBe(16n);
    w64(0x48590, 0x0000);
    w64(0x48598, 0x1000);
    w64(0x485a0, 256);
    w64(0x48568, 0b101);
    poll(0x48570, 1, 1);
    // 7. Run and interrupts on.
    w64(0x44018, 1);
    w64(0x486e8, 0);
    w64(0x485c0, 1);
    w64(0x486a0, 0xf);
    w64(0x486c0, 1);
    // 8. Enqueue one FILL of 16 bytes at device 0x3000.
    mem.write32(page(2), ApexOp.FILL);
    mem.write32(page(2) + 4, 16);
    mem.write64(page(2) + 24, 0x3000n);
    mem.write32(page(2) + 32, 0x0403_0201);
    mem.write64(page(0), 0x2000n);
    mem.write32(page(0) + 8, 48);
    w64(0x485a8, 1);
    sim.runSync({ until: sim.now + 10_000 });
    // 9. Complete.
    expect(host.messages.map((m) => m.data - 0x40)).toEqual([4, 0]);
    w64(0x486a8, 0xe);
    expect(r64(0x486d0) & 0xffffn).toBe(1n);
    expect(mem.read32(page(1))).toBe(1);
    expect(mem.read32(page(3) + 12)).toBe(0x0403_0201);
    w64(0x485c8, 0);
    expect(r64(0x485c8)).toBe(0n);
    expect(r64(0x486f0)).toBe(0n);
  });
});
