import { describe, expect, it } from 'vitest';
import {
  DmaStatus, FRAME_SIZE, IdentityDmaPort, PhysicalMemory, Simulator, failDma,
  type DmaPort, type DmaResult, type TraceRecord,
} from '../sim/index.ts';
import {
  DMA_DELAY_NS, DMA_IRQ, DMA_START, EDU_REGS, EduDevice, FACTORIAL_NS, FACT_IRQ, StandaloneHost, type EduOptions,
} from '../device-models/index.ts';

/**
 * QEMU's docs/specs/edu.rst replayed step by step through MMIO on a bare host: edu's function wired to
 * physical memory through an identity port, messages into the interrupt window collected.
 */

const MiB = 1 << 20;
const MSI_ADDR = 0xfee0_0000;
const MSI_DATA = 0x4041;

function board(options: EduOptions = {}) {
  const sim = new Simulator();
  const mem = new PhysicalMemory(64 * MiB);
  const edu = new EduDevice(sim, options);
  const host = new StandaloneHost(sim, mem, edu.fn);
  const fn = edu.fn;
  const records: TraceRecord[] = [];
  sim.trace.subscribe((r) => records.push(r));
  const r32 = (off: number) => fn.mmioRead(0, off, 4);
  const w32 = (off: number, v: number) => fn.mmioWrite(0, off, 4, v);
  const w64 = (off: number, v: bigint) => fn.mmioWrite64(0, off, v);
  const r64 = (off: number) => fn.mmioRead64(0, off);
  const advance = (ns: number) => sim.runSync({ until: sim.now + ns });
  const guestErrors = (what: string) => records.filter((r) => r.kind === 'guest-error' && r.fields['what'] === what).length;
  /** Command: memory space + bus master, as a driver's pci_enable_device + pci_set_master does. */
  const enable = () => fn.configWrite(0x04, 2, 0x0006);
  const enableMsi = () => {
    const cap = fn.configRead(0x34, 1);
    fn.configWrite(cap + 4, 4, MSI_ADDR);
    fn.configWrite(cap + 8, 4, 0);
    fn.configWrite(cap + 12, 2, MSI_DATA);
    fn.configWrite(cap + 2, 2, 0x0001);
  };
  return { sim, mem, edu, host, fn, records, r32, w32, r64, w64, advance, guestErrors, enable, enableMsi };
}

describe('edu configuration space (QEMU 7.2)', () => {
  it('identifies as 1234:11e8 rev 0x10, class 0x00ff00, subsystem 1af4:1100, INTA', () => {
    const { fn } = board();
    expect(fn.configRead(0x00, 4)).toBe(0x11e8_1234);
    expect(fn.configRead(0x08, 4)).toBe(0x00ff_0010);
    expect(fn.configRead(0x0e, 1)).toBe(0);
    expect(fn.configRead(0x2c, 4)).toBe(0x1100_1af4);
    expect(fn.configRead(0x3d, 1)).toBe(1);
    expect(fn.configRead(0x04, 2)).toBe(0);
    expect(fn.config.size).toBe(256);
  });

  it('has one 1 MiB 32-bit non-prefetchable memory BAR0 and no other BAR', () => {
    const { fn } = board();
    expect(fn.configRead(0x10, 4)).toBe(0);
    fn.configWrite(0x10, 4, 0xffff_ffff);
    expect(fn.configRead(0x10, 4)).toBe(0xfff0_0000);
    fn.configWrite(0x10, 4, 0xfea0_0000);
    expect(fn.barBase(0)).toBe(0xfea0_0000);
    for (let off = 0x14; off <= 0x24; off += 4) {
      fn.configWrite(off, 4, 0xffff_ffff);
      expect(fn.configRead(off, 4)).toBe(0);
    }
  });

  it('lists exactly one capability: MSI at 0x40, one 64-bit vector, no masking, no PCI Express', () => {
    const { fn } = board();
    expect(fn.configRead(0x06, 2) & 0x10).toBe(0x10);
    expect(fn.configRead(0x34, 1)).toBe(0x40);
    expect(fn.configRead(0x40, 1)).toBe(0x05);
    expect(fn.configRead(0x41, 1)).toBe(0);
    expect(fn.configRead(0x42, 2)).toBe(0x0080);
    // Multiple-message enable is clamped to what the function offers (one vector).
    fn.configWrite(0x42, 2, 0x0071);
    expect(fn.configRead(0x42, 2)).toBe(0x0081);
    // Conventional: nothing at 0x100, the access is a guest error that reads all-ones.
    expect(fn.configRead(0x100, 4)).toBe(0xffff_ffff);
  });
});

describe('edu MMIO, step by step (docs/specs/edu.rst)', () => {
  it('reads all-ones and drops writes until memory space is enabled', () => {
    const b = board();
    expect(b.r32(0x00)).toBe(0xffff_ffff);
    b.w32(0x04, 1);
    expect(b.guestErrors('mmio-decode-off')).toBe(2);
    b.enable();
    expect(b.r32(0x04)).toBe(0);
  });

  it('0x00 identification is 0x010000ED', () => {
    const b = board();
    b.enable();
    expect(b.r32(0x00)).toBe(0x0100_00ed);
    b.w32(0x00, 0);
    expect(b.r32(0x00)).toBe(0x0100_00ed);
    expect(b.guestErrors('read-only')).toBe(1);
  });

  it('0x04 liveness reads the inverse of the last write', () => {
    const b = board();
    b.enable();
    expect(b.r32(0x04)).toBe(0);
    b.w32(0x04, 0x1234_5678);
    expect(b.r32(0x04)).toBe(0xedcb_a987);
    b.w32(0x04, 0xffff_ffff);
    expect(b.r32(0x04)).toBe(0);
  });

  it('0x08 factorial without interrupt: COMPUTING while busy, the input reads back, then n!', () => {
    const b = board();
    b.enable();
    b.w32(0x08, 5);
    expect(b.r32(0x20) & 0x01).toBe(1);
    expect(b.r32(0x08)).toBe(5);
    b.w32(0x08, 7);
    expect(b.guestErrors('fact-busy')).toBe(1);
    b.advance(FACTORIAL_NS);
    expect(b.r32(0x20)).toBe(0);
    expect(b.r32(0x08)).toBe(120);
    expect(b.r32(0x24)).toBe(0);
    expect(b.host.intxLevel).toBe(false);
    expect(b.host.messages).toHaveLength(0);
    // 32-bit wrap, and n! mod 2^32 = 0 from 34! on.
    b.w32(0x08, 13);
    b.advance(FACTORIAL_NS);
    expect(b.r32(0x08)).toBe(Number(6227020800n % 2n ** 32n));
    b.w32(0x08, 0xffff_ffff);
    b.advance(FACTORIAL_NS);
    expect(b.r32(0x08)).toBe(0);
  });

  it('0x08 factorial with interrupt (status 0x80) over INTx, then acknowledge at 0x64', () => {
    const b = board();
    b.enable();
    b.w32(0x20, 0x80);
    expect(b.r32(0x20)).toBe(0x80);
    b.w32(0x08, 4);
    expect(b.host.intxLevel).toBe(false);
    b.advance(FACTORIAL_NS);
    expect(b.r32(0x08)).toBe(24);
    expect(b.r32(0x24)).toBe(FACT_IRQ);
    expect(b.host.intxLevel).toBe(true);
    expect(b.fn.configRead(0x06, 2) & 0x08).toBe(0x08);
    b.w32(0x64, FACT_IRQ);
    expect(b.r32(0x24)).toBe(0);
    expect(b.host.intxLevel).toBe(false);
    expect(b.fn.configRead(0x06, 2) & 0x08).toBe(0);
  });

  it('INTx disable keeps the pin low while Status.INTX still reports the request', () => {
    const b = board();
    b.enable();
    b.fn.configWrite(0x04, 2, 0x0406);
    b.w32(0x60, 1);
    expect(b.host.intxLevel).toBe(false);
    expect(b.fn.configRead(0x06, 2) & 0x08).toBe(0x08);
    b.fn.configWrite(0x04, 2, 0x0006);
    expect(b.host.intxLevel).toBe(true);
  });

  it('0x08 factorial with interrupt over MSI: one message write into the interrupt window', () => {
    const b = board();
    b.enable();
    b.enableMsi();
    b.w32(0x20, 0x80);
    b.w32(0x08, 3);
    b.advance(FACTORIAL_NS);
    expect(b.r32(0x08)).toBe(6);
    expect(b.host.messages).toEqual([{ time: FACTORIAL_NS, requester: 0x18, address: MSI_ADDR, data: MSI_DATA }]);
    expect(b.host.intxLevel).toBe(false);
    b.w32(0x64, FACT_IRQ);
    expect(b.r32(0x24)).toBe(0);
  });

  it('0x60 raise signals on every write while the status is nonzero; 0x64 clears', () => {
    const b = board();
    b.enable();
    b.enableMsi();
    b.w32(0x60, 0x2);
    b.w32(0x60, 0x4);
    expect(b.r32(0x24)).toBe(0x6);
    expect(b.host.messages).toHaveLength(2);
    b.w32(0x60, 0);
    expect(b.host.messages).toHaveLength(3);
    b.w32(0x64, 0x6);
    b.w32(0x60, 0);
    expect(b.host.messages).toHaveLength(3);
    expect(b.r32(0x60)).toBe(0xffff_ffff);
    expect(b.guestErrors('write-only')).toBe(1);
  });

  it('enabling MSI drops a pending INTx request', () => {
    const b = board();
    b.enable();
    b.w32(0x60, 1);
    expect(b.host.intxLevel).toBe(true);
    b.enableMsi();
    expect(b.host.intxLevel).toBe(false);
  });
});

describe('edu DMA', () => {
  const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

  it('RAM -> edu buffer, completing 100 ms after the command with interrupt 0x100', () => {
    const b = board();
    b.enable();
    b.enableMsi();
    const data = pattern(64, 3);
    b.mem.write(0x10000, data, 0, 64);
    b.w64(0x80, 0x10000n);
    b.w64(0x88, BigInt(DMA_START));
    b.w64(0x90, 64n);
    b.w64(0x98, 0x1n | 0x4n);
    expect(b.r64(0x98) & 1n).toBe(1n);
    b.advance(DMA_DELAY_NS - 1);
    expect(b.r32(0x98) & 1).toBe(1);
    expect(b.edu.dma.buffer.subarray(0, 64)).toEqual(new Uint8Array(64));
    b.advance(1);
    expect(b.r32(0x98)).toBe(0x4);
    expect(b.edu.dma.buffer.subarray(0, 64)).toEqual(data);
    expect(b.r32(0x24)).toBe(DMA_IRQ);
    expect(b.host.messages).toHaveLength(1);
    b.w32(0x64, DMA_IRQ);
    expect(b.r32(0x24)).toBe(0);
  });

  it('edu buffer -> RAM (cmd bit 1), with the completion interrupt over INTx', () => {
    const b = board();
    b.enable();
    const data = pattern(128, 9);
    b.edu.dma.buffer.set(data, 0x100);
    b.w64(0x80, BigInt(DMA_START + 0x100));
    b.w64(0x88, 0x2_0000n);
    b.w64(0x90, 128n);
    b.w64(0x98, 0x1n | 0x2n | 0x4n);
    b.advance(DMA_DELAY_NS);
    const got = new Uint8Array(128);
    b.mem.read(0x2_0000, got, 0, 128);
    expect(got).toEqual(data);
    expect(b.host.intxLevel).toBe(true);
  });

  it('without cmd bit 2 the transfer completes silently', () => {
    const b = board();
    b.enable();
    b.w64(0x80, 0n);
    b.w64(0x88, BigInt(DMA_START));
    b.w64(0x90, 16n);
    b.w64(0x98, 1n);
    b.advance(DMA_DELAY_NS);
    expect(b.r32(0x98)).toBe(0);
    expect(b.r32(0x24)).toBe(0);
    expect(b.host.intxLevel).toBe(false);
  });

  it('ignores DMA register writes while running, and a cmd write without RUN', () => {
    const b = board();
    b.enable();
    b.w64(0x98, 0x4n);
    expect(b.r32(0x98)).toBe(0);
    expect(b.guestErrors('dma-cmd-no-run')).toBe(1);
    b.w64(0x80, 0x1000n);
    b.w64(0x88, BigInt(DMA_START));
    b.w64(0x90, 8n);
    b.w64(0x98, 1n);
    b.w64(0x80, 0x2000n);
    b.w32(0x90, 99);
    b.w64(0x98, 3n);
    expect(b.r64(0x80)).toBe(0x1000n);
    expect(b.r64(0x90)).toBe(8n);
    expect(b.guestErrors('dma-busy')).toBe(3);
    b.advance(DMA_DELAY_NS);
    b.w64(0x80, 0x2000n);
    expect(b.r64(0x80)).toBe(0x2000n);
  });

  it('a 4096-byte transfer fills the whole buffer; one byte more is skipped with a guest error', () => {
    const b = board();
    b.enable();
    const data = pattern(4096, 1);
    b.mem.write(0x30000, data, 0, 4096);
    b.w64(0x80, 0x30000n);
    b.w64(0x88, BigInt(DMA_START));
    b.w64(0x90, 4096n);
    b.w64(0x98, 5n);
    b.advance(DMA_DELAY_NS);
    expect(b.edu.dma.buffer).toEqual(data);
    b.edu.dma.buffer.fill(0);
    b.w64(0x90, 4097n);
    b.w64(0x98, 5n);
    b.advance(DMA_DELAY_NS);
    expect(b.guestErrors('dma-range')).toBe(1);
    expect(b.edu.dma.buffer).toEqual(new Uint8Array(4096));
    expect(b.r32(0x98) & 1).toBe(0);
    expect(b.r32(0x24)).toBe(DMA_IRQ);
  });

  it('clamps RAM-side addresses to the 28-bit DMA mask (configurable)', () => {
    const b = board();
    b.enable();
    b.mem.write(0x10000, pattern(16, 5), 0, 16);
    b.w64(0x80, 0x1_0001_0000n);
    b.w64(0x88, BigInt(DMA_START));
    b.w64(0x90, 16n);
    b.w64(0x98, 1n);
    b.advance(DMA_DELAY_NS);
    expect(b.guestErrors('dma-clamp')).toBe(1);
    expect(b.edu.dma.buffer.subarray(0, 16)).toEqual(pattern(16, 5));
    const wide = board({ dmaMask: (1n << 32n) - 1n });
    wide.enable();
    wide.mem.write(0x100_0000, pattern(16, 6), 0, 16);
    wide.w64(0x80, 0x100_0000n);
    wide.w64(0x88, BigInt(DMA_START));
    wide.w64(0x90, 16n);
    wide.w64(0x98, 1n);
    wide.advance(DMA_DELAY_NS);
    expect(wide.guestErrors('dma-clamp')).toBe(0);
    expect(wide.edu.dma.buffer.subarray(0, 16)).toEqual(pattern(16, 6));
  });

  it('a RAM address past 2^53 (64-bit DMA mask) reaches nothing: zeros arrive, the transfer completes', () => {
    const b = board({ dmaMask: (1n << 64n) - 1n });
    b.enable();
    b.edu.dma.buffer.fill(0xaa);
    b.w64(0x80, 0xffff_0000_0000_0000n);
    b.w64(0x88, BigInt(DMA_START));
    b.w64(0x90, 64n);
    b.w64(0x98, 5n);
    b.advance(DMA_DELAY_NS);
    expect(b.edu.dma.buffer.subarray(0, 64)).toEqual(new Uint8Array(64));
    expect(b.edu.dma.buffer[64]).toBe(0xaa);
    expect(b.r32(0x24)).toBe(DMA_IRQ);
    expect(b.r64(0x98)).toBe(4n);
  });

  it('with bus mastering off: no data moves, the completion MSI is dropped and never replayed', () => {
    const b = board();
    b.enable();
    b.enableMsi();
    b.fn.configWrite(0x04, 2, 0x0002);
    b.edu.dma.buffer.fill(0xaa);
    b.mem.write(0x10000, pattern(32, 2), 0, 32);
    b.w64(0x80, 0x10000n);
    b.w64(0x88, BigInt(DMA_START));
    b.w64(0x90, 32n);
    b.w64(0x98, 5n);
    b.advance(DMA_DELAY_NS);
    expect(b.edu.dma.buffer.subarray(0, 32)).toEqual(new Uint8Array(32));
    expect(b.guestErrors('dma-bus-master-off')).toBe(1);
    expect(b.guestErrors('msi-bus-master-off')).toBe(1);
    expect(b.r32(0x24)).toBe(DMA_IRQ);
    b.fn.configWrite(0x04, 2, 0x0006);
    b.advance(1000);
    expect(b.host.messages).toHaveLength(0);
  });

  it('an IOMMU fault on one page: that page reads as zeros, the rest arrives, the IRQ is raised', () => {
    const b = board();
    const identity = new IdentityDmaPort(b.mem);
    const faultPage = 0x11000;
    // A port that refuses one page, as a translating port does (bytes before the page move).
    const faulty: DmaPort = {
      read(q: number, addr: number, dst: Uint8Array, off: number, len: number, res: DmaResult) {
        if (addr < faultPage + FRAME_SIZE && addr + len > faultPage) {
          const ok = Math.max(0, faultPage - addr);
          if (ok > 0) identity.read(q, addr, dst, off, ok, res);
          failDma(res, DmaStatus.FAULT, addr + ok, 6, ok);
          return;
        }
        identity.read(q, addr, dst, off, len, res);
      },
      write: (q, a, s, o, l, r) => identity.write(q, a, s, o, l, r),
      readWide: (q, a, d, o, l, r) => identity.readWide(q, a, d, o, l, r),
      writeWide: (q, a, s, o, l, r) => identity.writeWide(q, a, s, o, l, r),
    };
    b.fn.attach({ requesterId: 0x18, dma: faulty, msi: b.host, intx: b.host });
    b.enable();
    b.enableMsi();
    const data = pattern(3 * 1024, 4);
    b.mem.write(0x10c00, data, 0, data.length);
    b.edu.dma.buffer.fill(0xee);
    // 0x10c00..0x11bff: 1 KiB before the faulting page, 2 KiB inside it.
    b.w64(0x80, 0x10c00n);
    b.w64(0x88, BigInt(DMA_START));
    b.w64(0x90, BigInt(data.length));
    b.w64(0x98, 5n);
    b.advance(DMA_DELAY_NS);
    expect(b.edu.dma.buffer.subarray(0, 1024)).toEqual(data.subarray(0, 1024));
    expect(b.edu.dma.buffer.subarray(1024, 3072)).toEqual(new Uint8Array(2048));
    expect(b.r32(0x24)).toBe(DMA_IRQ);
    expect(b.host.messages).toHaveLength(1);
    // Across the page: the page after the faulting one still arrives.
    const tail = pattern(1024, 8);
    b.mem.write(faultPage + FRAME_SIZE, tail, 0, 1024);
    b.w64(0x80, BigInt(faultPage + FRAME_SIZE - 512));
    b.w64(0x90, 1536n);
    b.w64(0x98, 1n);
    b.advance(DMA_DELAY_NS);
    expect(b.edu.dma.buffer.subarray(0, 512)).toEqual(new Uint8Array(512));
    expect(b.edu.dma.buffer.subarray(512, 1536)).toEqual(tail);
  });
});

describe('edu access sizes (edu_mmio_read/write)', () => {
  it('offsets below 0x80 take only 4 bytes; 0x80 and up take 4 or 8', () => {
    const b = board();
    b.enable();
    b.w32(0x04, 0);
    expect(b.r64(0x00)).toBe(0xffff_ffff_ffff_ffffn);
    b.w64(0x08, 5n);
    expect(b.r32(0x20) & 1).toBe(0);
    expect(b.guestErrors('access-size')).toBe(2);
    // An unaligned 8-byte access never reaches edu.
    b.w64(0x04, 5n);
    expect(b.guestErrors('mmio-range')).toBe(1);
    expect(b.fn.mmioRead(0, 0x04, 2)).toBe(0xffff);
    expect(b.fn.mmioRead(0, 0x04, 1)).toBe(0xff);
    expect(b.guestErrors('mmio-size')).toBe(2);
    b.w64(0x80, 0x1234_5678_9abc_def0n);
    expect(b.r64(0x80)).toBe(0x1234_5678_9abc_def0n);
    expect(b.r32(0x80)).toBe(0x9abc_def0);
    // The upper dword of a 64-bit register is not a register.
    expect(b.r32(0x84)).toBe(0xffff_ffff);
    expect(b.guestErrors('unhandled')).toBe(1);
    // A 4-byte write stores the zero-extended value.
    b.w32(0x80, 0x55);
    expect(b.r64(0x80)).toBe(0x55n);
  });

  it('unhandled offsets read all-ones, and the DMA buffer is not visible through BAR0', () => {
    const b = board();
    b.enable();
    for (const off of [0x0c, 0x10, 0x28, 0xa0, 0x100, DMA_START, 0xffffc]) expect(b.r32(off)).toBe(0xffff_ffff);
    expect(b.fn.mmioRead(0, 1 << 20, 4)).toBe(0xffff_ffff);
    expect(b.guestErrors('mmio-range')).toBe(1);
  });

  it('every register of the table answers at its offset', () => {
    const b = board();
    b.enable();
    for (const r of EDU_REGS) {
      const v = b.r32(r.offset);
      if (r.access === 'WO') expect(v).toBe(0xffff_ffff);
      else expect(v).toBe(Number(r.reset & 0xffff_ffffn));
    }
  });
});
