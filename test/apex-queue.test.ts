import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { APEX_COMMAND_SIZE, ApexIrq, ApexOp } from '../device-models/apex/index.ts';
import { fcOptions } from './fc.ts';
import { apexOff, openApex } from './apex-host.ts';

/**
 * Instruction queue 0 under random driver behaviour: a well-behaved driver against a plain model (every
 * descriptor completes once, in order, with one INSTR_QUEUE message each), and a careless one (random
 * command buffers, pauses, disables, resets of status) that must never make the model throw or lie.
 */

const off = apexOff;
const PHYS = 0x40_0000;
const RING = 8;

function open() {
  const { sim, mem, apex, host, w64, r64 } = openApex(32 << 20);
  for (let i = 0; i < 4; i++) w64(0x46018 + 8 * i, i);
  w64(off('SC_HOST_INTVECCTL'), 4 | (5 << 7) | (6 << 14) | (7 << 21));
  w64(off('FATAL_ERR_INTVECCTL'), 12);
  // Slots 0..63 map PHYS onwards: ring at 0x0, status block at 0x1000, command buffers 0x2000.., data 0x20000...
  for (let s = 0; s < 64; s++) w64(0x50000 + 8 * s, BigInt(PHYS + s * 4096) | 1n);
  w64(off('IQ_STATUS_BLOCK_BASE'), 0x1000);
  w64(off('IQ_SIZE'), RING);
  w64(off('IQ_CONTROL'), 0b101);
  w64(off('IQ_INT_CONTROL'), 1);
  w64(off('SC_HOST_INT_CONTROL'), 0xf);
  w64(off('FATAL_ERR_INT_CONTROL'), 1);
  let tail = 0;
  const enqueue = (dev: number, size: number) => {
    mem.write64(PHYS + 16 * tail, BigInt(dev));
    mem.write32(PHYS + 16 * tail + 8, size);
    tail = (tail + 1) % RING;
    w64(off('IQ_TAIL'), tail);
  };
  const full = () => (tail + 1) % RING === Number(r64(off('IQ_COMPLETED_HEAD')));
  const count = (v: number) => host.messages.filter((m) => m.data === v).length;
  return { sim, mem, apex, w64, r64, enqueue, full, count, tail: () => tail };
}

describe('instruction queue under a well-behaved driver', () => {
  it('completes every descriptor once, in order, one INSTR_QUEUE message each', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 3000 })), { minLength: 1, maxLength: 40 }), (steps) => {
        const q = open();
        let submitted = 0;
        for (const [cmds, wait] of steps) {
          if (!q.full()) {
            // Command buffer k (of up to 4 FILLs) writes sequence number `submitted` into word `submitted`.
            const buf = PHYS + 0x2000 + (submitted % RING) * 256;
            for (let c = 0; c < cmds; c++) {
              const o = buf + c * APEX_COMMAND_SIZE;
              q.mem.write32(o, ApexOp.FILL);
              q.mem.write32(o + 4, 4);
              q.mem.write64(o + 24, BigInt(0x20000 + 4 * submitted));
              q.mem.write32(o + 32, submitted + 1);
            }
            q.enqueue(0x2000 + (submitted % RING) * 256, cmds * APEX_COMMAND_SIZE);
            submitted++;
          }
          q.sim.runSync({ until: q.sim.now + wait });
          const done = q.apex.queue.completedCount;
          expect(done).toBeLessThanOrEqual(submitted);
          expect(Number(q.r64(off('IQ_COMPLETED_HEAD')))).toBe(done % RING);
        }
        q.sim.runSync({ until: q.sim.now + 1_000_000 });
        expect(q.apex.queue.completedCount).toBe(submitted);
        expect(q.count(ApexIrq.INSTR_QUEUE)).toBe(submitted);
        expect(q.count(ApexIrq.SC_HOST_0)).toBe(submitted);
        expect(q.mem.read32(PHYS + 0x1000)).toBe(submitted % RING);
        expect(Number(q.r64(off('SC_HOST_INT_COUNT')) & 0xffffn)).toBe(submitted);
        for (let i = 0; i < submitted; i++) expect(q.mem.read32(PHYS + 0x20000 + 4 * i)).toBe(i + 1);
        expect(q.r64(off('HIB_ERROR_STATUS'))).toBe(0n);
      }),
      fcOptions(40),
    );
  });
});

describe('instruction queue under a careless driver', () => {
  it('never throws; a halted queue always has a latched error; FATAL_ERR messages match the errors', () => {
    const action = fc.oneof(
      fc.record({ kind: fc.constant('enqueue' as const), op: fc.integer({ min: 0, max: 6 }), len: fc.integer({ min: 0, max: 9000 }),
        a: fc.integer({ min: 0, max: 0x8_0000 }), c: fc.integer({ min: 0, max: 0x8_0000 }), size: fc.constantFrom(0, 48, 96, 50, 70_000), ext: fc.boolean() }),
      fc.record({ kind: fc.constant('wait' as const), ns: fc.integer({ min: 0, max: 20_000 }) }),
      fc.record({ kind: fc.constantFrom('pause' as const, 'resume' as const, 'disable' as const, 'enable' as const, 'ack' as const) }),
    );
    fc.assert(
      fc.property(fc.array(action, { maxLength: 60 }), (actions) => {
        const q = open();
        let errors = 0;
        for (const x of actions) {
          if (x.kind === 'enqueue') {
            const buf = PHYS + 0x2000;
            q.mem.write32(buf, x.op);
            q.mem.write32(buf + 4, x.len);
            q.mem.write64(buf + 8, BigInt(x.a) | (x.ext ? 1n << 63n : 0n));
            q.mem.write64(buf + 24, BigInt(x.c));
            q.mem.write32(buf + 32, 1 + (x.len % 9));
            q.mem.write32(buf + 36, 1 + (x.a % 7));
            q.mem.write32(buf + 40, 1 + (x.c % 5));
            q.enqueue(0x2000, x.size);
          } else if (x.kind === 'wait') q.sim.runSync({ until: q.sim.now + x.ns });
          else if (x.kind === 'pause') q.w64(off('USER_HIB_DMA_PAUSE'), 1);
          else if (x.kind === 'resume') q.w64(off('USER_HIB_DMA_PAUSE'), 0);
          else if (x.kind === 'disable') q.w64(off('IQ_CONTROL'), 0b100);
          else if (x.kind === 'enable') q.w64(off('IQ_CONTROL'), 0b101);
          else {
            if (q.r64(off('HIB_ERROR_STATUS')) !== 0n) errors++;
            q.w64(off('HIB_ERROR_STATUS'), 0);
            q.w64(off('FATAL_ERR_INT_STATUS'), 0);
          }
          const st = q.r64(off('IQ_STATUS'));
          if ((st & 2n) !== 0n) expect(q.r64(off('HIB_ERROR_STATUS')) !== 0n || errors > 0).toBe(true);
          expect(q.r64(off('IQ_FETCHED_HEAD'))).toBeLessThan(BigInt(RING));
        }
        if (q.r64(off('HIB_ERROR_STATUS')) !== 0n) errors++;
        expect(q.count(ApexIrq.FATAL_ERR) > 0).toBe(errors > 0);
      }),
      fcOptions(80),
    );
  });
});
