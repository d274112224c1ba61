import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Simulator } from '../sim/index.ts';
import { APEX_COMMAND_SIZE, ApexDevice, ApexIrq, ApexOp, type ApexRegName } from '../device-models/apex/index.ts';
import { fcOptions } from './fc.ts';
import { apexOff, openApex } from './apex-host.ts';

/**
 * Queues 1-3 (dmasim's partitioning extension, device-models/apex/README.md): their registers, windows,
 * interrupts and faults, and that windows isolate the queues from each other.
 */

const off = apexOff;
const PHYS = 0x20_0000;
const RING = 4;
/** Slots per window; windows are adjacent, so a queue escaping its window would land in its neighbour's. */
const WIN = 32;
const FIRST = [0, 100, 100 + WIN, 100 + 2 * WIN] as const;
/** Page-table slots 100 .. 100 + 3 * WIN + 8 map PHYS + slot pages (the last 8 are a guard past queue 3). */
const LAST_SLOT = 100 + 3 * WIN + 8;
const reg = (q: number, r: string) => (q === 0 ? off(`IQ_${r}` as ApexRegName) : off(`Q${q}_${r}` as ApexRegName));
const page = (slot: number) => PHYS + slot * 4096;

function open() {
  const { sim, mem, apex, host, w64, r64 } = openApex(8 << 20);
  for (let i = 0; i < 4; i++) w64(0x46018 + 8 * i, i);
  w64(off('SC_HOST_INTVECCTL'), 4 | (5 << 7) | (6 << 14) | (7 << 21));
  w64(off('FATAL_ERR_INTVECCTL'), 12);
  w64(off('SC_HOST_INT_CONTROL'), 0xf);
  w64(off('FATAL_ERR_INT_CONTROL'), 1);
  for (let s = 100; s < LAST_SLOT; s++) w64(0x50000 + 8 * s, page(s) + 1);
  const tails = [0, 0, 0, 0];
  /** Queue q: window [FIRST[q], +WIN), ring at relative slot 0, status block 1, command buffer 2, data from 3. */
  const enableQueue = (q: number) => {
    w64(reg(q, 'CONTROL'), 0);
    w64(reg(q, 'BASE'), 0);
    w64(reg(q, 'STATUS_BLOCK_BASE'), 0x1000);
    w64(reg(q, 'SIZE'), RING);
    w64(reg(q, 'CONTROL'), 0b101);
    w64(reg(q, 'INT_CONTROL'), 1);
    tails[q] = 0;
  };
  for (let q = 1; q < 4; q++) {
    w64(off(`Q${q}_WINDOW_FIRST` as ApexRegName), FIRST[q] as number);
    w64(off(`Q${q}_WINDOW_COUNT` as ApexRegName), WIN);
    enableQueue(q);
  }
  /** One FILL of `len` bytes at relative device address `dev` with `pattern`, on queue q. */
  const fill = (q: number, dev: number, len: number, pattern: number) => {
    const f = FIRST[q] as number;
    const cmd = page(f + 2) + 64 * (tails[q] as number);
    mem.write32(cmd, ApexOp.FILL);
    mem.write32(cmd + 4, len);
    mem.write64(cmd + 24, BigInt(dev));
    mem.write32(cmd + 32, pattern);
    const d = page(f) + 16 * (tails[q] as number);
    mem.write64(d, BigInt(0x2000 + 64 * (tails[q] as number)));
    mem.write32(d + 8, APEX_COMMAND_SIZE);
    tails[q] = ((tails[q] as number) + 1) % RING;
    w64(reg(q, 'TAIL'), tails[q] as number);
  };
  const count = (v: number) => host.messages.filter((m) => m.data === v).length;
  const statusBlock = (q: number) => ({ head: mem.read32(page((FIRST[q] as number) + 1)), fatal: mem.read32(page((FIRST[q] as number) + 1) + 4) });
  return { sim, mem, apex, w64, r64, fill, count, statusBlock, enableQueue };
}

describe('Apex queues 1-3', () => {
  it('have queue 0 layout in pages 0x4B000/0x4C000/0x4D000 and windows at 0x46100 + 16q; queue 0 defaults to the whole simple partition', () => {
    for (let q = 1; q < 4; q++) {
      expect(off(`Q${q}_CONTROL` as ApexRegName)).toBe(0x4a000 + q * 0x1000 + 0x568);
      expect(off(`Q${q}_INT_STATUS` as ApexRegName) - off(`Q${q}_CONTROL` as ApexRegName)).toBe(off('IQ_INT_STATUS') - off('IQ_CONTROL'));
    }
    for (let q = 0; q < 4; q++) expect(off(`Q${q}_WINDOW_FIRST` as ApexRegName)).toBe(0x46100 + 16 * q);
    const b = new ApexDevice(new Simulator());
    b.fn.configWrite(0x04, 2, 0x0002);
    expect(b.fn.mmioRead64(2, off('Q0_WINDOW_COUNT'))).toBe(8192n);
    expect(b.fn.mmioRead64(2, off('Q1_WINDOW_COUNT'))).toBe(0n);
    expect(b.fn.mmioRead64(2, off('Q1_DESCRIPTOR_SIZE'))).toBe(16n);
  });

  it('queue q completes through its window: SC_HOST_q, then source q after the status block; count field q', () => {
    const b = open();
    for (let q = 1; q < 4; q++) b.fill(q, 0x3010, 16, 0x5000_0000 + q);
    b.sim.runSync({ until: 1_000_000 });
    for (let q = 1; q < 4; q++) {
      expect(b.mem.read32(page((FIRST[q] as number) + 3) + 0x10)).toBe(0x5000_0000 + q);
      expect(b.statusBlock(q)).toEqual({ head: 1, fatal: 0 });
      expect(b.count(q)).toBe(1);
      expect(b.count(ApexIrq.SC_HOST_0 + q)).toBe(1);
      expect(Number((b.r64(off('SC_HOST_INT_COUNT')) >> BigInt(16 * q)) & 0xffffn)).toBe(1);
      expect(b.r64(reg(q, 'INT_STATUS'))).toBe(1n);
      expect(b.apex.queues[q]?.completedCount).toBe(1);
    }
    expect(b.count(ApexIrq.INSTR_QUEUE)).toBe(0);
  });

  it('a fault on queue 2 halts queue 2 only: fatal_error in its status block, Q2_FAULT_ADDRESS, source 2, no FATAL_ERR', () => {
    const b = open();
    b.fill(2, WIN * 4096 - 8, 16, 0x2222_2222);
    b.fill(1, 0x3000, 4, 0x1111_1111);
    b.sim.runSync({ until: 1_000_000 });
    expect(b.r64(reg(2, 'STATUS'))).toBe(0b11n);
    expect(b.statusBlock(2).fatal).toBe(1);
    expect(b.r64(off('Q2_ERROR_STATUS'))).toBe(1n);
    expect(b.r64(off('Q2_FAULT_ADDRESS'))).toBe(BigInt(WIN * 4096));
    expect(b.count(2)).toBe(1);
    expect(b.count(ApexIrq.SC_HOST_2)).toBe(0);
    expect(b.count(ApexIrq.FATAL_ERR)).toBe(0);
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(0n);
    expect(b.r64(off('PAGE_FAULT_ADDRESS'))).toBe(0n);
    // The bytes inside the window landed; queue 3's ring (the next slot) is untouched; queue 1 ran.
    expect(b.mem.read32(page((FIRST[2] as number) + WIN) - 8)).toBe(0x2222_2222);
    expect(b.mem.read32(page(FIRST[3] as number))).toBe(0);
    expect(b.statusBlock(1)).toEqual({ head: 1, fatal: 0 });
    expect(b.apex.errors.count('queue-error')).toBe(1);
    // Disable and enable recover it.
    b.w64(off('Q2_ERROR_STATUS'), 0);
    b.enableQueue(2);
    b.fill(2, 0x3000, 4, 0x2222_0000);
    b.sim.runSync({ until: 2_000_000 });
    expect(b.statusBlock(2)).toEqual({ head: 1, fatal: 0 });
  });

  it('queues 1-3 cannot use extended addresses; queue 0 faults as on Apex (FATAL_ERR, HIB error)', () => {
    const b = open();
    b.fill(3, 2 ** 63, 4, 0x3333_3333);
    b.sim.runSync({ until: 1_000_000 });
    expect(b.r64(off('Q3_ERROR_STATUS'))).toBe(2n);
    expect(b.count(3)).toBe(1);
    expect(b.count(ApexIrq.FATAL_ERR)).toBe(0);
  });

  it('windows isolate queues 1-3: random FILLs land only in their own window, out-of-window ones fault that queue alone', () => {
    const cmd = fc.record({ rel: fc.integer({ min: 3, max: WIN + 6 }), word: fc.integer({ min: 0, max: 1023 }), len: fc.integer({ min: 1, max: 2048 }) });
    fc.assert(
      fc.property(fc.array(fc.tuple(cmd, cmd, cmd), { minLength: 1, maxLength: 6 }), (rounds) => {
        const b = open();
        const done = [0, 0, 0, 0];
        let n = 0;
        for (const round of rounds) {
          const faults: boolean[] = [];
          round.forEach((c, i) => {
            const q = i + 1;
            if ((b.r64(reg(q, 'STATUS')) & 2n) !== 0n) {
              b.w64(off(`Q${q}_ERROR_STATUS` as ApexRegName), 0);
              b.enableQueue(q);
              done[q] = 0;
            }
            const dev = c.rel * 4096 + 4 * c.word;
            const len = 4 * c.len;
            faults[q] = dev + len > WIN * 4096;
            b.fill(q, dev, len, ((q << 28) | ++n) >>> 0);
          });
          b.sim.runSync({ until: b.sim.now + 2_000_000 });
          for (let q = 1; q < 4; q++) {
            const c = round[q - 1] as { rel: number; word: number; len: number };
            if (faults[q]) {
              expect(b.r64(reg(q, 'STATUS'))).toBe(0b11n);
              expect(b.statusBlock(q).fatal).toBe(1);
              expect(b.r64(off(`Q${q}_FAULT_ADDRESS` as ApexRegName))).toBe(BigInt(Math.max(WIN * 4096, c.rel * 4096 + 4 * c.word)));
            } else {
              done[q] = (done[q] as number) + 1;
              expect(b.r64(reg(q, 'STATUS'))).toBe(1n);
              expect(b.statusBlock(q)).toEqual({ head: (done[q] as number) % RING, fatal: 0 });
            }
          }
          expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(0n);
          expect(b.count(ApexIrq.FATAL_ERR)).toBe(0);
        }
        // Every word a queue wrote (its pattern's top nibble) is inside its own window's data pages.
        for (let s = 100; s < LAST_SLOT; s++) {
          for (let w = 0; w < 1024; w++) {
            const v = b.mem.read32(page(s) + 4 * w);
            const q = v >>> 28;
            if (q === 0) continue;
            const rel = s - (FIRST[q] as number);
            expect(rel >= 2 && rel < WIN, `queue ${q} wrote slot ${s}`).toBe(true);
          }
        }
      }),
      fcOptions(15),
    );
  });

  it('random MMIO to the queue and window registers, with time passing, never throws and never raises FATAL_ERR', () => {
    const names = ['CONTROL', 'BASE', 'STATUS_BLOCK_BASE', 'SIZE', 'TAIL', 'INT_CONTROL', 'INT_STATUS', 'ERROR_STATUS'];
    const op = fc.record({
      q: fc.integer({ min: 1, max: 3 }), r: fc.integer({ min: 0, max: names.length + 1 }),
      v: fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.integer({ min: 0, max: 64 }).map(BigInt)), ns: fc.integer({ min: 0, max: 50_000 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const b = open();
        for (const o of ops) {
          const at = o.r < names.length ? reg(o.q, names[o.r] as string) : off(`Q${o.q}_WINDOW_${o.r === names.length ? 'FIRST' : 'COUNT'}` as ApexRegName);
          b.apex.fn.mmioWrite64(2, at, o.v);
          b.sim.runSync({ until: b.sim.now + o.ns });
        }
        expect(b.count(ApexIrq.FATAL_ERR)).toBe(0);
        expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(0n);
      }),
      fcOptions(40),
    );
  });
});
