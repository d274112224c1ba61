import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PhysicalMemory, Simulator, type TraceRecord } from '../sim/index.ts';
import { StandaloneHost } from '../device-models/pci/index.ts';
import {
  APEX, APEX_COMMAND_SIZE, APEX_IRQ_NAMES, APEX_OFFSET, APEX_RESET_TIMING, ApexDevice, ApexIrq, ApexOp, crc32cUpdate, type ApexRegName,
} from '../device-models/apex/index.ts';
import { fcOptions } from './fc.ts';

/**
 * The Apex driven as gasket's apex_driver.c and libedgetpu drive it (spec/devices.md sections 1-3), through
 * the PCI function on a bare host: identity DMA, interrupt-window writes collected.
 */

const MiB = 1 << 20;
const off = (name: ApexRegName) => APEX_OFFSET[APEX[name]] as number;
const SCU_2 = off('SCU_2');
const SCU_3 = off('SCU_3');
/** Physical pages the tests map: slot s of the simple space -> PHYS + s * 4 KiB. */
const PHYS = 0x100_0000;

function board() {
  const sim = new Simulator();
  const mem = new PhysicalMemory(64 * MiB);
  const apex = new ApexDevice(sim);
  const host = new StandaloneHost(sim, mem, apex.fn);
  const fn = apex.fn;
  const records: TraceRecord[] = [];
  sim.trace.subscribe((r) => records.push(r));
  const r32 = (o: number) => fn.mmioRead(2, o, 4);
  const w32 = (o: number, v: number) => fn.mmioWrite(2, o, 4, v);
  const r64 = (o: number) => fn.mmioRead64(2, o);
  const w64 = (o: number, v: bigint) => fn.mmioWrite64(2, o, v);
  const advance = (ns: number) => sim.runSync({ until: sim.now + ns });
  /** The driver's rmw32: replace `width` bits at `shift`. */
  const rmw32 = (o: number, v: number, width: number, shift: number) => {
    const m = ((1 << width) - 1) << shift;
    w32(o, ((r32(o) & ~m) | ((v << shift) & m)) >>> 0);
  };
  const rmw64 = (o: number, v: bigint, width: number, shift: number) => {
    const m = ((1n << BigInt(width)) - 1n) << BigInt(shift);
    w64(o, (r64(o) & ~m) | ((v << BigInt(shift)) & m));
  };
  /** gasket's poll: every 120 ms of virtual time (here 1 us steps), up to 100 tries; returns the tries used. */
  const poll = (o: number, mask: number, want: number) => {
    for (let i = 0; i < 100; i++) {
      if ((r32(o) & mask) === want) return i;
      advance(1_000);
    }
    throw new Error(`poll 0x${o.toString(16)} & 0x${mask.toString(16)} never became 0x${want.toString(16)}`);
  };
  const enterReset = () => {
    rmw64(off('IDLEGENERATOR'), 0n, 1, 32);
    w64(off('USER_HIB_DMA_PAUSE'), 1n);
    poll(off('USER_HIB_DMA_PAUSED'), 1, 1);
    rmw32(SCU_2, 1, 2, 2);
    rmw32(SCU_2, 1, 2, 18);
    rmw32(SCU_3, 3, 2, 14);
    return poll(SCU_3, 1 << 6, 1 << 6);
  };
  const quitReset = () => {
    rmw32(SCU_3, 0, 2, 14);
    rmw32(SCU_2, 0, 2, 18);
    rmw32(SCU_2, 2, 2, 2);
    poll(SCU_3, 1 << 6, 0);
    poll(SCU_3, 1 << 4, 0);
    rmw32(SCU_3, 2, 2, 26);
  };
  const apexReset = () => {
    if ((r32(SCU_3) & 0x10) === 0) enterReset();
    quitReset();
  };
  const enable = () => fn.configWrite(0x04, 2, 0x0006);
  const msixCap = () => {
    let cap = fn.configRead(0x34, 1);
    while (fn.configRead(cap, 1) !== 0x11) cap = fn.configRead(cap + 1, 1);
    return cap;
  };
  /** gasket_interrupt_init: 13 vectors (message data 0x40 + i), INTVECCTLs written, masks cleared. */
  const setupMsix = () => {
    const cap = msixCap();
    fn.configWrite(cap + 2, 2, 0x8000);
    for (let i = 0; i < 13; i++) {
      fn.mmioWrite(2, 0x46800 + 16 * i, 4, 0xfee0_0000);
      fn.mmioWrite(2, 0x46800 + 16 * i + 4, 4, 0);
      fn.mmioWrite(2, 0x46800 + 16 * i + 8, 4, 0x40 + i);
    }
    for (let i = 0; i < 13; i++) {
      const reg = i < 4 ? 0x46018 + 8 * i : i < 8 ? 0x46038 : i < 12 ? 0x46040 : 0x46048;
      if (i < 4 || i === 12) w64(reg, BigInt(i));
      else rmw64(reg, BigInt(i), 16, 7 * ((i - 4) % 4));
    }
    for (let i = 0; i < 13; i++) if (fn.mmioRead(2, 0x46800 + 16 * i + 12, 4) & 1) fn.mmioWrite(2, 0x46800 + 16 * i + 12, 4, 0);
  };
  /** Maps simple slot `s` to physical page PHYS + s * 4 KiB. */
  const mapSlot = (s: number) => w64(0x50000 + 8 * s, BigInt(PHYS + s * 4096) | 1n);
  const vectors = () => host.messages.map((m) => m.data - 0x40);
  const guestErrors = (what: string) => records.filter((r) => r.kind === 'guest-error' && r.fields['what'] === what).length;
  return { sim, mem, apex, host, fn, records, r32, w32, r64, w64, advance, rmw32, rmw64, poll, enterReset, quitReset, apexReset, enable, msixCap, setupMsix, mapSlot, vectors, guestErrors };
}
type Board = ReturnType<typeof board>;

/** Probe as apex_pci_probe does it, then open as libedgetpu: reset, partition, queue of 256, interrupts on. */
function openDevice(b: Board, ringSize = 256) {
  b.enable();
  b.apexReset();
  b.poll(off('PAGE_TABLE_INIT'), 1, 1);
  b.poll(off('MSIX_TABLE_INIT'), 1, 1);
  b.setupMsix();
  b.w64(off('EXTENDED_TABLE'), 8192n);
  b.w64(off('EXTENDED_TABLE'), 6144n);
  // Ring at device 0x0 (slot 0..), status block at device 0x10000 (slot 16); command buffers from slot 32.
  const ringPages = Math.ceil((ringSize * 16) / 4096);
  for (let s = 0; s < ringPages; s++) b.mapSlot(s);
  b.mapSlot(16);
  expect(b.r64(off('IQ_DESCRIPTOR_SIZE'))).toBe(16n);
  b.w64(off('IQ_BASE'), 0n);
  b.w64(off('IQ_STATUS_BLOCK_BASE'), 0x10000n);
  b.w64(off('IQ_SIZE'), BigInt(ringSize));
  b.w64(off('IQ_CONTROL'), 0b101n);
  b.poll(off('IQ_STATUS'), 1, 1);
  b.w64(off('SC_RUN_CONTROL'), 1n);
  b.w64(off('STATUS_BLOCK_UPDATE'), 0n);
  b.w64(off('IQ_INT_CONTROL'), 1n);
  b.w64(off('SC_HOST_INT_CONTROL'), 0xfn);
  b.w64(off('FATAL_ERR_INT_CONTROL'), 1n);
  let tail = 0;
  /** Writes a descriptor for a command buffer at device address `dev` of `size` bytes and rings the doorbell. */
  const enqueue = (dev: bigint, size: number) => {
    const at = PHYS + tail * 16;
    b.mem.write64(at, dev);
    b.mem.write32(at + 8, size);
    b.mem.write32(at + 12, 0);
    tail = (tail + 1) % ringSize;
    b.w64(off('IQ_TAIL'), BigInt(tail));
  };
  const statusBlock = () => ({ completedHead: b.mem.read32(PHYS + 16 * 4096), fatalError: b.mem.read32(PHYS + 16 * 4096 + 4) });
  return { enqueue, statusBlock };
}

/** Writes commands (48-byte records) at physical `at`. */
function writeCommands(mem: PhysicalMemory, at: number, cmds: readonly { op: number; len?: number; a?: bigint; b?: bigint; c?: bigint; args?: readonly number[] }[]): number {
  cmds.forEach((c, i) => {
    const o = at + i * APEX_COMMAND_SIZE;
    mem.write32(o, c.op);
    mem.write32(o + 4, c.len ?? 0);
    mem.write64(o + 8, c.a ?? 0n);
    mem.write64(o + 16, c.b ?? 0n);
    mem.write64(o + 24, c.c ?? 0n);
    for (let k = 0; k < 4; k++) mem.write32(o + 32 + 4 * k, c.args?.[k] ?? 0);
  });
  return cmds.length * APEX_COMMAND_SIZE;
}

describe('Apex identity and BARs', () => {
  it('is 1ac1:089a, class 0x0000ff, PCI Express without FLR, INTA', () => {
    const { fn } = board();
    expect(fn.configRead(0x00, 4)).toBe(0x089a_1ac1);
    expect(fn.configRead(0x08, 4) >>> 8).toBe(0x0000ff);
    expect(fn.config.size).toBe(4096);
    expect(fn.configRead(0x3d, 1)).toBe(1);
    let cap = fn.configRead(0x34, 1);
    const ids: number[] = [];
    while (cap !== 0) {
      ids.push(fn.configRead(cap, 1));
      if (fn.configRead(cap, 1) === 0x10) expect((fn.configRead(cap + 4, 4) >>> 28) & 1).toBe(0);
      cap = fn.configRead(cap + 1, 1);
    }
    expect(ids).toEqual([0x01, 0x11, 0x10]);
  });

  it('has BAR0 16 KiB and BAR2 1 MiB, both 64-bit prefetchable', () => {
    const { fn } = board();
    for (const [bar, size] of [[0, 0x4000], [2, 0x10_0000]] as const) {
      const o = 0x10 + 4 * bar;
      fn.configWrite(o, 4, 0xffff_ffff);
      fn.configWrite(o + 4, 4, 0xffff_ffff);
      expect(fn.configRead(o, 4)).toBe((~(size - 1) | 0xc) >>> 0);
      expect(fn.configRead(o + 4, 4)).toBe(0xffff_ffff);
    }
    expect(fn.bar(1)).toBeUndefined();
    expect(fn.bar(4)).toBeUndefined();
  });

  it('advertises 128 MSI-X entries with the table at BAR2+0x46800 and the PBA at BAR2+0x46068', () => {
    const b = board();
    const cap = b.msixCap();
    expect((b.fn.configRead(cap + 2, 2) & 0x7ff) + 1).toBe(128);
    expect(b.fn.configRead(cap + 4, 4)).toBe(0x46800 | 2);
    expect(b.fn.configRead(cap + 8, 4)).toBe(0x46068 | 2);
    b.enable();
    expect(b.fn.mmioRead(2, 0x46800 + 12, 4)).toBe(1);
    expect(b.r64(off('PAGE_TABLE_SIZE'))).toBe(8192n);
    expect(b.r64(off('EXTENDED_TABLE'))).toBe(8192n);
  });

  it('leaves BAR0 unclaimed: reads all-ones, a guest error', () => {
    const b = board();
    b.enable();
    expect(b.fn.mmioRead(0, 0, 4)).toBe(0xffff_ffff);
    expect(b.fn.errors.count('mmio-unclaimed')).toBe(1);
  });
});

describe('Apex MMIO rules', () => {
  it('a 4-byte access reaches either half of a 64-bit register; a write merges with the other half', () => {
    const b = board();
    b.enable();
    const pt = 0x50000 + 8 * 7;
    b.w32(pt + 4, 0x8000_0001);
    b.w32(pt, 0x1234_5001);
    expect(b.r64(pt)).toBe(0x8000_0001_1234_5001n);
    expect(b.r32(pt + 4)).toBe(0x8000_0001);
    const ctl = off('IDLEGENERATOR');
    b.w32(ctl, 0xffff_ffff);
    expect(b.r64(ctl)).toBe(1n << 32n);
    b.w32(ctl + 4, 0);
    expect(b.r64(ctl)).toBe(0n);
    // W0C through the low half: bits written 1 stay, the high half is untouched.
    b.apex.irq.raise(ApexIrq.SC_HOST_0);
    b.apex.irq.raise(ApexIrq.SC_HOST_3);
    b.w32(off('SC_HOST_INT_STATUS'), 0x8);
    expect(b.r64(off('SC_HOST_INT_STATUS'))).toBe(0x8n);
  });

  it('read-only registers and unclaimed offsets drop writes as guest errors; 8-byte access to a 32-bit register is refused', () => {
    const b = board();
    b.enable();
    b.w64(off('PAGE_TABLE_SIZE'), 5n);
    expect(b.r64(off('PAGE_TABLE_SIZE'))).toBe(8192n);
    expect(b.guestErrors('read-only')).toBe(1);
    expect(b.r32(0x46090)).toBe(0xffff_ffff);
    expect(b.r64(SCU_2 & ~7)).toBe((1n << 64n) - 1n);
    expect(b.guestErrors('unhandled')).toBe(2);
    // FLR is not offered: the DevCtl bit is ignored (the PCI function's guest error).
    let cap = b.fn.configRead(0x34, 1);
    while (b.fn.configRead(cap, 1) !== 0x10) cap = b.fn.configRead(cap + 1, 1);
    b.fn.configWrite(cap + 8, 2, 0x8000);
    expect(b.fn.errors.count('flr-unsupported')).toBe(1);
    expect(b.fn.command).toBe(0x0006);
  });

  it('PCI RST# returns the whole device to power-on: out of reset, tables clear and initialised', () => {
    const b = board();
    openDevice(b);
    b.mapSlot(3);
    b.enterReset();
    b.fn.reset();
    expect(b.fn.command).toBe(0);
    b.enable();
    expect(b.r32(SCU_3)).toBe(0);
    expect(b.r32(SCU_2)).toBe(0);
    expect(b.r64(off('PAGE_TABLE_INIT'))).toBe(1n);
    expect(b.r64(0x50000 + 8 * 3)).toBe(0n);
    expect(b.r64(off('IQ_STATUS'))).toBe(0n);
    expect(b.r64(off('IDLEGENERATOR'))).toBe(1n << 32n);
  });
});

describe('Apex reset and power (apex_driver.c)', () => {
  it('enter_reset and quit_reset: every polled bit moves after a virtual delay', () => {
    const b = board();
    b.enable();
    expect(b.r32(SCU_3) & 0x10).toBe(0);
    const t0 = b.sim.now;
    expect(b.enterReset()).toBeGreaterThan(0);
    expect(b.r32(SCU_3) & 0x50).toBe(0x50);
    expect(b.sim.now - t0).toBeGreaterThanOrEqual(APEX_RESET_TIMING.ramShutdownNs);
    expect(b.r64(off('PAGE_TABLE_INIT'))).toBe(0n);
    expect(b.r64(off('MSIX_TABLE_INIT'))).toBe(0n);
    // Writes to GCB registers are dropped while in reset.
    b.w64(off('EXTENDED_TABLE'), 100n);
    expect(b.r64(off('EXTENDED_TABLE'))).toBe(8192n);
    expect(b.guestErrors('in-reset')).toBe(1);
    b.quitReset();
    expect(b.r32(SCU_3) & 0x50).toBe(0);
    expect((b.r32(SCU_3) >>> 26) & 3).toBe(2);
    expect(b.r64(off('PAGE_TABLE_INIT'))).toBe(0n);
    expect(b.poll(off('PAGE_TABLE_INIT'), 1, 1)).toBeGreaterThan(0);
    expect(b.r64(off('MSIX_TABLE_INIT'))).toBe(1n);
  });

  it('the GCB leaves reset only once its RAMs are on', () => {
    const b = board();
    b.enable();
    b.enterReset();
    b.rmw32(SCU_2, 2, 2, 2);
    b.advance(100_000);
    expect(b.r32(SCU_3) & 0x10).toBe(0x10);
    b.rmw32(SCU_3, 0, 2, 14);
    b.advance(100_000);
    expect(b.r32(SCU_3) & 0x50).toBe(0);
  });

  it('reset clears the page table, the MSI-X table and the GCB registers, keeping the SCU', () => {
    const b = board();
    openDevice(b);
    b.mapSlot(40);
    b.w64(off('HIB_ERROR_MASK'), 0x7n);
    expect(b.fn.mmioRead(2, 0x46800 + 8, 4)).toBe(0x40);
    b.apexReset();
    b.poll(off('PAGE_TABLE_INIT'), 1, 1);
    expect(b.r64(0x50000 + 8 * 40)).toBe(0n);
    expect(b.fn.mmioRead(2, 0x46800 + 8, 4)).toBe(0);
    expect(b.fn.mmioRead(2, 0x46800 + 12, 4)).toBe(1);
    expect(b.r64(off('HIB_ERROR_MASK'))).toBe(0n);
    expect(b.r64(off('IQ_STATUS'))).toBe(0n);
    expect(b.r64(off('EXTENDED_TABLE'))).toBe(8192n);
    expect(b.r64(off('SC_HOST_INTVECCTL'))).toBe(0n);
    expect((b.r32(SCU_3) >>> 26) & 3).toBe(2);
  });

  it('DMA pause waits for the descriptor in flight', () => {
    const b = board();
    const q = openDevice(b);
    b.mapSlot(32);
    const len = writeCommands(b.mem, PHYS + 32 * 4096, [{ op: ApexOp.FILL, len: 4096 * 4, c: 0x21000n, args: [0] }]);
    for (let s = 33; s < 37; s++) b.mapSlot(s);
    q.enqueue(0x20000n, len);
    b.advance(300);
    expect(b.apex.queue.busy).toBe(true);
    b.w64(off('USER_HIB_DMA_PAUSE'), 1n);
    b.advance(APEX_RESET_TIMING.dmaPauseNs);
    expect(b.r64(off('USER_HIB_DMA_PAUSED'))).toBe(0n);
    b.advance(100_000);
    expect(b.r64(off('USER_HIB_DMA_PAUSED'))).toBe(1n);
  });
});

describe('Apex interrupts', () => {
  it('names the 13 sources as apex_interrupt does', () => {
    expect(APEX_IRQ_NAMES).toEqual([
      'INSTR_QUEUE', 'INPUT_ACTV_QUEUE', 'PARAM_QUEUE', 'OUTPUT_ACTV_QUEUE', 'SC_HOST_0', 'SC_HOST_1', 'SC_HOST_2', 'SC_HOST_3',
      'TOP_LEVEL_0', 'TOP_LEVEL_1', 'TOP_LEVEL_2', 'TOP_LEVEL_3', 'FATAL_ERR',
    ]);
  });

  it('routes each source to the MSI-X entry its INTVECCTL field names (packed 7-bit fields)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 127 }), { minLength: 13, maxLength: 13 }), fc.integer({ min: 0, max: 12 }), (vecs, src) => {
        const b = board();
        b.enable();
        const cap = b.msixCap();
        b.fn.configWrite(cap + 2, 2, 0x8000);
        for (let v = 0; v < 128; v++) {
          b.fn.mmioWrite(2, 0x46800 + 16 * v, 4, 0xfee0_0000);
          b.fn.mmioWrite(2, 0x46800 + 16 * v + 8, 4, 0x1000 + v);
          b.fn.mmioWrite(2, 0x46800 + 16 * v + 12, 4, 0);
        }
        const packed = (k0: number) => BigInt(vecs[k0]! | (vecs[k0 + 1]! << 7) | (vecs[k0 + 2]! << 14) | (vecs[k0 + 3]! << 21));
        for (let i = 0; i < 4; i++) b.w64(0x46018 + 8 * i, BigInt(vecs[i]!));
        b.w64(0x46038, packed(4));
        b.w64(0x46040, packed(8));
        b.w64(0x46048, BigInt(vecs[12]!));
        const controls = ['IQ_INT_CONTROL', 'Q1_INT_CONTROL', 'Q2_INT_CONTROL', 'Q3_INT_CONTROL', 'SC_HOST_INT_CONTROL', 'TOP_LEVEL_INT_CONTROL', 'FATAL_ERR_INT_CONTROL'] as const;
        for (const r of controls) b.w64(off(r), 0xfn);
        expect(b.apex.irq.vectorOf(src)).toBe(vecs[src]);
        b.apex.irq.raise(src);
        expect(b.host.messages.map((m) => m.data - 0x1000)).toEqual([vecs[src]]);
      }),
      fcOptions(40),
    );
  });

  it('status registers are write-0-to-clear; control gates the message; SC_HOST counts', () => {
    const b = board();
    openDevice(b);
    b.apex.irq.raise(ApexIrq.SC_HOST_1);
    b.apex.irq.raise(ApexIrq.SC_HOST_2);
    expect(b.r64(off('SC_HOST_INT_STATUS'))).toBe(0b110n);
    expect(b.r64(off('SC_HOST_INT_COUNT'))).toBe((1n << 16n) | (1n << 32n));
    // libedgetpu clears bit i with ((1 << n) - 1) & ~(1 << i).
    b.w64(off('SC_HOST_INT_STATUS'), BigInt(0xf & ~(1 << 1)));
    expect(b.r64(off('SC_HOST_INT_STATUS'))).toBe(0b100n);
    b.w64(off('SC_HOST_INT_STATUS'), 0xfn);
    expect(b.r64(off('SC_HOST_INT_STATUS'))).toBe(0b100n);
    b.w64(off('SC_HOST_INT_CONTROL'), 0n);
    b.apex.irq.raise(ApexIrq.SC_HOST_3);
    expect(b.vectors()).toEqual([5, 6]);
    expect(b.r64(off('SC_HOST_INT_STATUS'))).toBe(0b1100n);
  });

  it('without MSI-X the sources drive INTx through the wire pending and mask arrays', () => {
    const b = board();
    b.enable();
    b.w64(off('SC_HOST_INT_CONTROL'), 0xfn);
    b.w64(off('FATAL_ERR_INT_CONTROL'), 1n);
    b.apex.irq.raise(ApexIrq.SC_HOST_0);
    expect(b.r64(off('WIRE_INT_PENDING_BIT_ARRAY'))).toBe(1n << 4n);
    expect(b.host.intxLevel).toBe(true);
    b.w64(off('WIRE_INT_MASK_ARRAY'), 1n << 4n);
    expect(b.host.intxLevel).toBe(false);
    b.w64(off('WIRE_INT_MASK_ARRAY'), 0n);
    expect(b.host.intxLevel).toBe(true);
    b.w64(off('SC_HOST_INT_STATUS'), 0n);
    expect(b.r64(off('WIRE_INT_PENDING_BIT_ARRAY'))).toBe(0n);
    expect(b.host.intxLevel).toBe(false);
  });
});

describe('Apex instruction queue (libedgetpu host queue)', () => {
  it('enqueue -> completion: status block, completed head, INSTR_QUEUE and SC_HOST_0, W0C acknowledge', () => {
    const b = board();
    const q = openDevice(b);
    for (let s = 32; s < 36; s++) b.mapSlot(s);
    const data = Uint8Array.from({ length: 300 }, (_, i) => (i * 13 + 1) & 0xff);
    b.mem.write(PHYS + 33 * 4096 + 100, data, 0, data.length);
    const len = writeCommands(b.mem, PHYS + 32 * 4096, [{ op: ApexOp.NOP }, { op: ApexOp.COPY, len: 300, a: 0x21064n, c: 0x22ff0n }]);
    q.enqueue(0x20000n, len);
    expect(b.r64(off('IQ_FETCHED_HEAD'))).toBe(0n);
    b.advance(100_000);
    expect(b.r64(off('IQ_FETCHED_HEAD'))).toBe(1n);
    expect(b.r64(off('IQ_COMPLETED_HEAD'))).toBe(1n);
    expect(q.statusBlock()).toEqual({ completedHead: 1, fatalError: 0 });
    const out = new Uint8Array(300);
    b.mem.read(PHYS + 35 * 4096 - 16, out, 0, 300);
    expect(out).toEqual(data);
    expect(b.vectors()).toEqual([ApexIrq.SC_HOST_0, ApexIrq.INSTR_QUEUE]);
    expect(b.r64(off('IQ_INT_STATUS'))).toBe(1n);
    // The host clears SC_HOST status first, then reads count 0.
    b.w64(off('SC_HOST_INT_STATUS'), 0xen);
    expect(b.r64(off('SC_HOST_INT_COUNT')) & 0xffffn).toBe(1n);
    b.w64(off('IQ_INT_STATUS'), 0n);
    expect(b.r64(off('IQ_INT_STATUS'))).toBe(0n);
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(0n);
  });

  it('runs a full ring of descriptors in order, keeping one slot empty, wrapping around', () => {
    const b = board();
    const q = openDevice(b, 4);
    b.mapSlot(32);
    b.mapSlot(33);
    for (let round = 0; round < 3; round++) {
      for (let k = 0; k < 3; k++) {
        const len = writeCommands(b.mem, PHYS + 32 * 4096 + 256 * k, [{ op: ApexOp.FILL, len: 4, c: BigInt(0x21000 + 4 * (3 * round + k)), args: [3 * round + k + 1] }]);
        q.enqueue(BigInt(0x20000 + 256 * k), len);
      }
      b.advance(100_000);
      expect(q.statusBlock().completedHead).toBe((3 * (round + 1)) % 4);
    }
    for (let i = 0; i < 9; i++) expect(b.mem.read32(PHYS + 33 * 4096 + 4 * i)).toBe(i + 1);
    expect(b.apex.queue.completedCount).toBe(9);
  });

  it('refuses a ring size that is not a power of two (QUEUE_BAD_CONFIG, FATAL_ERR)', () => {
    const b = board();
    b.enable();
    b.setupMsix();
    b.w64(off('FATAL_ERR_INT_CONTROL'), 1n);
    b.w64(off('IQ_SIZE'), 100n);
    b.w64(off('IQ_CONTROL'), 1n);
    expect(b.r64(off('IQ_STATUS'))).toBe(0n);
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(1n << 5n);
    expect(b.vectors()).toEqual([ApexIrq.FATAL_ERR]);
  });

  it('an unknown opcode halts the queue with QUEUE_INVALID', () => {
    const b = board();
    const q = openDevice(b);
    b.mapSlot(32);
    q.enqueue(0x20000n, writeCommands(b.mem, PHYS + 32 * 4096, [{ op: 99 }]));
    b.advance(100_000);
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(1n << 9n);
    expect(b.r64(off('IQ_STATUS'))).toBe(3n);
    expect(q.statusBlock()).toEqual({ completedHead: 0, fatalError: 1 });
    expect(b.vectors()).toEqual([ApexIrq.FATAL_ERR]);
  });
});

describe('Apex gasket page table faults', () => {
  it('simple space: an invalid slot sets bit 0, latches the address, raises FATAL_ERR, halts the queue', () => {
    const b = board();
    const q = openDevice(b);
    b.mapSlot(32);
    q.enqueue(0x20000n, writeCommands(b.mem, PHYS + 32 * 4096, [{ op: ApexOp.FILL, len: 16, c: 0x5_0123n }]));
    b.advance(100_000);
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(1n);
    expect(b.r64(off('HIB_FIRST_ERROR_STATUS'))).toBe(1n);
    expect(b.r64(off('PAGE_FAULT_ADDRESS'))).toBe(0x5_0123n);
    expect(b.r64(off('IQ_STATUS')) & 2n).toBe(2n);
    expect(b.vectors()).toEqual([ApexIrq.FATAL_ERR]);
    // A slot at or past the simple count faults too, even if its entry is valid.
    b.w64(off('FATAL_ERR_INT_STATUS'), 0n);
    b.w64(off('HIB_ERROR_STATUS'), 0n);
    b.mapSlot(6144);
    expect(b.apex.pageTable.translate(0, 6144 * 4096)).toBe(-1);
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(1n);
  });

  it('extended space: level-0 slot after the simple ones, level-1 subtable read by DMA from host memory', () => {
    const b = board();
    openDevice(b);
    const sub = 0x200_0000;
    const lvl0 = 5;
    const lvl1 = 77;
    b.w64(0x50000 + 8 * (6144 + lvl0), BigInt(sub) | 1n);
    b.mem.write64(sub + 8 * lvl1, 0x30_0000n | 1n);
    const hi = (0x8000_0000 | (lvl0 >>> 11)) >>> 0;
    const lo = ((lvl0 << 21) | (lvl1 << 12) | 0x345) >>> 0;
    const reads = b.apex.pageTable.counters.subtableReads;
    expect(b.apex.pageTable.translate(hi, lo)).toBe(0x30_0345);
    expect(b.apex.pageTable.counters.subtableReads).toBe(reads + 1);
    // An invalid level-1 entry: bit 1, address latched.
    expect(b.apex.pageTable.translate(hi, (lo + 0x1000) >>> 0)).toBe(-1);
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(2n);
    expect(b.r64(off('PAGE_FAULT_ADDRESS'))).toBe((BigInt(hi) << 32n) | BigInt((lo + 0x1000) >>> 0));
    // An invalid level-0 slot, and bits 62:34 set.
    b.w64(off('HIB_ERROR_STATUS'), 0n);
    expect(b.apex.pageTable.translate(hi, ((lvl0 + 1) << 21) >>> 0)).toBe(-1);
    expect(b.apex.pageTable.translate(0x8000_0004, lo)).toBe(-1);
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(2n);
    // The highest extended address: level-0 index 8191 - 6144 + ... is past the 2048 extended slots.
    expect(b.apex.pageTable.translate(0x8000_0003, 0xffff_f000)).toBe(-1);
  });

  it('an extended command buffer runs end to end', () => {
    const b = board();
    const q = openDevice(b);
    const sub = 0x200_0000;
    b.w64(0x50000 + 8 * 6144, BigInt(sub) | 1n);
    for (let i = 0; i < 4; i++) b.mem.write64(sub + 8 * i, BigInt(PHYS + (100 + i) * 4096) | 1n);
    const len = writeCommands(b.mem, PHYS + 100 * 4096, [{ op: ApexOp.FILL, len: 8192, c: 0x8000_0000_0000_1000n, args: [0xdead_beef] }]);
    q.enqueue(0x8000_0000_0000_0000n, len);
    b.advance(100_000);
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(0n);
    expect(b.mem.read32(PHYS + 101 * 4096)).toBe(0xdead_beef);
    expect(b.mem.read32(PHYS + 103 * 4096 - 4)).toBe(0xdead_beef);
    expect(q.statusBlock().completedHead).toBe(1);
  });

  it('a DMA the bus refuses is an AXI error: bit 4 on a read, bit 3 on a write', () => {
    const b = board();
    const q = openDevice(b);
    b.mapSlot(32);
    // Slot 40 points past the end of memory.
    b.w64(0x50000 + 8 * 40, BigInt(128 * MiB) | 1n);
    q.enqueue(0x20000n, writeCommands(b.mem, PHYS + 32 * 4096, [{ op: ApexOp.COPY, len: 8, a: 0x28000n, c: 0x20800n }]));
    b.advance(100_000);
    expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(1n << 4n);
    expect(b.r64(off('PAGE_FAULT_ADDRESS'))).toBe(0x28000n);
    const b2 = board();
    const q2 = openDevice(b2);
    b2.mapSlot(32);
    b2.w64(0x50000 + 8 * 40, BigInt(128 * MiB) | 1n);
    q2.enqueue(0x20000n, writeCommands(b2.mem, PHYS + 32 * 4096, [{ op: ApexOp.FILL, len: 8, c: 0x28010n }]));
    b2.advance(100_000);
    expect(b2.r64(off('HIB_ERROR_STATUS'))).toBe(1n << 3n);
    expect(b2.r64(off('PAGE_FAULT_ADDRESS'))).toBe(0x28010n);
    expect(b2.vectors()).toEqual([ApexIrq.FATAL_ERR]);
  });
});

/** Plain TypeScript references for the command set. */
function crc32cRef(data: Uint8Array): number {
  let c = 0xffff_ffff;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f6_3b78 : c >>> 1;
  }
  return ~c >>> 0;
}

describe('Apex command set against plain computations', () => {
  it('CRC-32C of "123456789" is 0xe3069283', () => {
    const s = new TextEncoder().encode('123456789');
    expect(~crc32cUpdate(0xffff_ffff, s, 0, s.length) >>> 0).toBe(0xe306_9283);
    expect(crc32cRef(s)).toBe(0xe306_9283);
  });

  it('COPY, FILL, CRC32C and MATMUL_I8 match the reference', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 9000 }), fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 12 }), fc.integer(),
        (data, srcOff, dstOff, pattern, m, k, n, seed) => {
          const b = board();
          const q = openDevice(b);
          for (let s = 32; s < 64; s++) b.mapSlot(s);
          const src = 0x21000 + srcOff;
          const dst = 0x25000 + dstOff;
          const fill = 0x29000 + dstOff;
          const crc = 0x2d000;
          b.mem.write(PHYS + src, data, 0, data.length);
          const rnd = (i: number) => ((Math.imul(seed ^ i, 0x9e37_79b1) >>> 24) << 24) >> 24;
          const A = Int8Array.from({ length: m * k }, (_, i) => rnd(i));
          const B = Int8Array.from({ length: k * n }, (_, i) => rnd(1000 + i));
          b.mem.write(PHYS + 0x30000, new Uint8Array(A.buffer), 0, A.length);
          b.mem.write(PHYS + 0x31000, new Uint8Array(B.buffer), 0, B.length);
          const len = writeCommands(b.mem, PHYS + 0x20000, [
            { op: ApexOp.COPY, len: data.length, a: BigInt(src), c: BigInt(dst) },
            { op: ApexOp.FILL, len: 1 + (data.length % 5000), c: BigInt(fill), args: [pattern] },
            { op: ApexOp.CRC32C, len: data.length, a: BigInt(src), c: BigInt(crc) },
            { op: ApexOp.MATMUL_I8, a: 0x30000n, b: 0x31000n, c: 0x32000n, args: [m, k, n] },
          ]);
          q.enqueue(0x20000n, len);
          b.advance(1_000_000);
          expect(b.r64(off('HIB_ERROR_STATUS'))).toBe(0n);
          const out = new Uint8Array(data.length);
          b.mem.read(PHYS + dst, out, 0, out.length);
          expect(out).toEqual(data);
          const fillLen = 1 + (data.length % 5000);
          const f = new Uint8Array(fillLen);
          b.mem.read(PHYS + fill, f, 0, fillLen);
          expect(f).toEqual(Uint8Array.from({ length: fillLen }, (_, i) => (pattern >>> (8 * (i & 3))) & 0xff));
          expect(b.mem.read32(PHYS + crc)).toBe(crc32cRef(data));
          for (let i = 0; i < m; i++) {
            for (let j = 0; j < n; j++) {
              let s = 0;
              for (let x = 0; x < k; x++) s += A[i * k + x]! * B[x * n + j]!;
              expect(b.mem.read32(PHYS + 0x32000 + 4 * (i * n + j)) | 0).toBe(s);
            }
          }
          expect(q.statusBlock().completedHead).toBe(1);
        },
      ),
      fcOptions(25),
    );
  });
});

describe('Apex random MMIO', () => {
  it('never throws, whatever the offsets, sizes and values', () => {
    const interesting = [...APEX_OFFSET, 0x46068, 0x46070, 0x46800, 0x4680c, 0x50000, 0x5fff8, 0xffffc, 0x1_00000];
    const access = fc.record({
      at: fc.oneof(fc.constantFrom(...interesting), fc.integer({ min: 0, max: 0x10_0000 })),
      delta: fc.constantFrom(0, 4),
      size: fc.constantFrom(1, 2, 4, 8),
      value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      write: fc.boolean(),
      bar: fc.constantFrom(0, 2, 2, 2),
      wait: fc.integer({ min: 0, max: 5000 }),
    });
    fc.assert(
      fc.property(fc.array(access, { maxLength: 200 }), (ops) => {
        const b = board();
        b.enable();
        b.setupMsix();
        for (const o of ops) {
          const a = o.at + o.delta;
          if (o.size === 8) {
            if (o.write) b.fn.mmioWrite64(o.bar, a, o.value);
            else b.fn.mmioRead64(o.bar, a);
          } else if (o.write) b.fn.mmioWrite(o.bar, a, o.size, Number(o.value & 0xffff_ffffn));
          else b.fn.mmioRead(o.bar, a, o.size);
          b.advance(o.wait);
        }
      }),
      fcOptions(60),
    );
  });
});
