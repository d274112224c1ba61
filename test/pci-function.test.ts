import { describe, expect, it } from 'vitest';
import { DmaStatus, PhysicalMemory, Simulator, type TraceRecord } from '../sim/index.ts';
import { StandaloneHost, TD, TESTDEV_REGS, TestDevice, type TestDevOptions } from '../device-models/index.ts';

/** The PCI function on dmasim's PCIe test device: header masks, BAR sizing, capabilities, gating, PM, FLR. */

const reg = (name: keyof typeof TD) => (TESTDEV_REGS[TD[name]] as { offset: number }).offset;

function board(options: TestDevOptions = {}) {
  const sim = new Simulator();
  const mem = new PhysicalMemory(1 << 24);
  const dev = new TestDevice(sim, options);
  const host = new StandaloneHost(sim, mem, dev.fn);
  const fn = dev.fn;
  const records: TraceRecord[] = [];
  sim.trace.subscribe((r) => records.push(r));
  const guestErrors = (what: string) => records.filter((r) => r.kind === 'guest-error' && r.fields['what'] === what).length;
  const cap = (id: number): number => {
    let p = fn.configRead(0x34, 1);
    for (let ttl = 48; p !== 0 && ttl > 0; ttl--) {
      if (fn.configRead(p, 1) === id) return p;
      p = fn.configRead(p + 1, 1) & 0xfc;
    }
    return -1;
  };
  return { sim, mem, dev, host, fn, records, guestErrors, cap };
}

/** Linux's __pci_read_base: write all-ones (both halves), read back, restore; returns the size. */
function sizeBar(fn: TestDevice['fn'], i: number): { size: bigint; flags: number } {
  const at = 0x10 + 4 * i;
  const lo = fn.configRead(at, 4);
  fn.configWrite(at, 4, 0xffff_ffff);
  const szLo = fn.configRead(at, 4);
  fn.configWrite(at, 4, lo);
  const io = (lo & 1) === 1;
  const is64 = !io && ((lo >>> 1) & 3) === 2;
  let mask = BigInt((szLo & (io ? ~0x3 : ~0xf)) >>> 0);
  if (is64) {
    const hi = fn.configRead(at + 4, 4);
    fn.configWrite(at + 4, 4, 0xffff_ffff);
    mask |= BigInt(fn.configRead(at + 4, 4)) << 32n;
    fn.configWrite(at + 4, 4, hi);
  } else {
    mask |= 0xffff_ffff_0000_0000n;
  }
  return { size: BigInt.asUintN(64, ~mask) + 1n, flags: lo & (io ? 0x3 : 0xf) };
}

describe('type-0 header', () => {
  it('keeps read-only registers read-only and masks Command to its writable bits', () => {
    const { fn } = board();
    const before = Uint8Array.from(fn.config.bytes);
    for (let off = 0; off < 0x40; off += 4) fn.configWrite(off, 4, 0xffff_ffff);
    expect(fn.configRead(0x00, 4)).toBe(before[0]! | (before[1]! << 8) | (before[2]! << 16) | ((before[3]! << 24) >>> 0));
    // IO | MEMORY | MASTER | SERR | INTX_DISABLE, as QEMU's pci_init_wmask.
    expect(fn.configRead(0x04, 2)).toBe(0x0507);
    expect(fn.configRead(0x08, 4)).toBe(fn.config.get32(0x08));
    expect(fn.configRead(0x0c, 1)).toBe(0xff);
    expect(fn.configRead(0x0d, 1)).toBe(0);
    expect(fn.configRead(0x3c, 1)).toBe(0xff);
    expect(fn.configRead(0x3d, 1)).toBe(1);
    expect(fn.configRead(0x34, 1)).toBe(0x40);
    expect(fn.configRead(0x30, 4)).toBe(0);
  });

  it('clears Status error bits by writing 1 and leaves hardware bits alone', () => {
    const { fn } = board();
    fn.config.set16(0x06, fn.config.get16(0x06) | 0x2000 | 0x0100);
    fn.configWrite(0x06, 2, 0x2000);
    expect(fn.configRead(0x06, 2) & 0x2100).toBe(0x0100);
    fn.configWrite(0x06, 2, 0xffff);
    expect(fn.configRead(0x06, 2)).toBe(0x0010);
  });

  it('answers accesses outside the space or of odd sizes with all-ones, as guest errors', () => {
    const b = board();
    expect(b.fn.configRead(0x1000, 4)).toBe(0xffff_ffff);
    expect(b.fn.configRead(0xffe, 4)).toBe(0xffff_ffff);
    expect(b.fn.configRead(0, 3)).toBe(0xffff_ffff);
    expect(b.fn.configRead(-1, 1)).toBe(0xff);
    b.fn.configWrite(0x04, 8, 0xffff);
    expect(b.fn.command).toBe(0);
    expect(b.guestErrors('config-access')).toBe(5);
  });

  it('keeps unclaimed device-specific bytes as scratch, as QEMU does, and 0x100 read-only 0', () => {
    const { fn } = board();
    fn.configWrite(0xf0, 4, 0xdead_beef);
    expect(fn.configRead(0xf0, 4)).toBe(0xdead_beef);
    fn.configWrite(0x100, 4, 0xffff_ffff);
    expect(fn.configRead(0x100, 4)).toBe(0);
  });
});

describe('BAR sizing (write ~0, read back, restore)', () => {
  it('sizes every BAR kind: 32-bit memory, I/O, 64-bit prefetchable, 64-bit above 4 GiB', () => {
    const { fn } = board();
    expect(sizeBar(fn, 0)).toEqual({ size: 4096n, flags: 0x0 });
    expect(sizeBar(fn, 1)).toEqual({ size: 32n, flags: 0x1 });
    expect(sizeBar(fn, 2)).toEqual({ size: 16384n, flags: 0xc });
    expect(sizeBar(fn, 4)).toEqual({ size: 8n << 30n, flags: 0x4 });
    // Raw readbacks: type bits survive, bits below the size read 0.
    fn.configWrite(0x10, 4, 0xffff_ffff);
    expect(fn.configRead(0x10, 4)).toBe(0xffff_f000);
    fn.configWrite(0x14, 4, 0xffff_ffff);
    expect(fn.configRead(0x14, 4)).toBe(0xffff_ffe1);
    fn.configWrite(0x18, 4, 0xffff_ffff);
    fn.configWrite(0x1c, 4, 0xffff_ffff);
    expect([fn.configRead(0x18, 4), fn.configRead(0x1c, 4)]).toEqual([0xffff_c00c, 0xffff_ffff]);
    fn.configWrite(0x20, 4, 0xffff_ffff);
    fn.configWrite(0x24, 4, 0xffff_ffff);
    expect([fn.configRead(0x20, 4), fn.configRead(0x24, 4)]).toEqual([0x0000_0004, 0xffff_fffe]);
  });

  it('decodes assigned addresses, 64-bit ones from both halves, and reports the change', () => {
    const sim = new Simulator();
    const dev = new TestDevice(sim);
    let changes = 0;
    const mem = new PhysicalMemory(1 << 20);
    const host = new StandaloneHost(sim, mem, dev.fn);
    dev.fn.attach({ requesterId: 0x20, dma: host.port, msi: host, onMappingChange: () => changes++ });
    dev.fn.configWrite(0x10, 4, 0xfe00_0123);
    expect(dev.fn.barBase(0)).toBe(0xfe00_0000);
    dev.fn.configWrite(0x14, 4, 0xc000);
    expect(dev.fn.barBase(1)).toBe(0xc000);
    dev.fn.configWrite(0x18, 4, 0x8000_0000);
    dev.fn.configWrite(0x1c, 4, 0x40);
    expect(dev.fn.barBase(2)).toBe(0x40_8000_0000);
    dev.fn.configWrite(0x20, 4, 0);
    dev.fn.configWrite(0x24, 4, 0x2);
    expect(dev.fn.barBase(4)).toBe(0x2_0000_0000);
    expect(dev.fn.barBase(3)).toBe(-1);
    dev.fn.configWrite(0x04, 2, 0x0002);
    expect(changes).toBe(7);
  });
});

describe('capabilities', () => {
  it('chains PM -> MSI -> MSI-X -> PCI Express from 0x40', () => {
    const { fn } = board();
    const ids: number[] = [];
    for (let p = fn.configRead(0x34, 1); p !== 0; p = fn.configRead(p + 1, 1)) ids.push(fn.configRead(p, 1));
    expect(ids).toEqual([0x01, 0x05, 0x11, 0x10]);
    expect(fn.configRead(0x06, 2) & 0x10).toBe(0x10);
  });

  it('describes MSI-X: 64 vectors, table at BAR2+0, PBA at BAR2+0x800', () => {
    const b = board();
    const p = b.cap(0x11);
    expect(b.fn.configRead(p + 2, 2)).toBe(63);
    expect(b.fn.configRead(p + 4, 4)).toBe(0x0000_0002);
    expect(b.fn.configRead(p + 8, 4)).toBe(0x0000_0802);
    b.fn.configWrite(p + 2, 2, 0xffff);
    expect(b.fn.configRead(p + 2, 2)).toBe(0xc03f);
  });

  it('MSI with per-vector masking pends a masked vector and delivers it once on unmask', () => {
    const b = board();
    const p = b.cap(0x05);
    b.fn.configWrite(0x04, 2, 0x0006);
    expect(b.fn.configRead(p + 2, 2)).toBe(0x0184);
    b.fn.configWrite(p + 4, 4, 0xfee0_0000);
    b.fn.configWrite(p + 12, 2, 0x40);
    b.fn.configWrite(p + 16, 4, 0b0010);
    b.fn.configWrite(p + 2, 2, 0x0021);
    b.fn.mmioWrite(0, reg('MSI_NOTIFY'), 4, 1);
    b.fn.mmioWrite(0, reg('MSI_NOTIFY'), 4, 1);
    expect(b.host.messages).toHaveLength(0);
    expect(b.fn.configRead(p + 20, 4)).toBe(0b0010);
    b.fn.mmioWrite(0, reg('MSI_NOTIFY'), 4, 0);
    b.fn.configWrite(p + 16, 4, 0);
    expect(b.host.messages.map((m) => m.data)).toEqual([0x40, 0x41]);
    expect(b.fn.configRead(p + 20, 4)).toBe(0);
  });

  it('offers FLR in DevCap; DevCtl.BCR_FLR reads 0', () => {
    const b = board();
    const p = b.cap(0x10);
    expect((b.fn.configRead(p + 4, 4) >>> 28) & 1).toBe(1);
    expect(b.fn.configRead(p + 8, 2)).toBe(0x2810);
    expect(board({ flr: false }).fn.configRead(p + 4, 4) & (1 << 28)).toBe(0);
  });
});

describe('Command register gating', () => {
  it('memory space off: MMIO reads all-ones and writes are dropped; I/O BARs follow the I/O bit', () => {
    const b = board();
    b.fn.configWrite(0x04, 2, 0x0002);
    b.fn.mmioWrite(0, reg('SCRATCH'), 4, 0x1234);
    expect(b.fn.mmioRead(0, reg('SCRATCH'), 4)).toBe(0x1234);
    b.fn.configWrite(0x04, 2, 0x0000);
    expect(b.fn.mmioRead(0, reg('SCRATCH'), 4)).toBe(0xffff_ffff);
    b.fn.mmioWrite(0, reg('SCRATCH'), 4, 0x9999);
    expect(b.fn.mmioRead(1, 0, 4)).toBe(0xffff_ffff);
    b.fn.configWrite(0x04, 2, 0x0003);
    expect(b.fn.mmioRead(0, reg('SCRATCH'), 4)).toBe(0x1234);
    expect(b.guestErrors('mmio-decode-off')).toBe(3);
    expect(b.fn.mmioRead(1, 0, 4)).toBe(0xffff_ffff);
    expect(b.guestErrors('mmio-unclaimed')).toBe(1);
  });

  it('bus master off: DMA reports UNSUPPORTED with 0 bytes and moves nothing', () => {
    const b = board();
    b.mem.write32(0x1000, 0xcafe_f00d);
    b.fn.configWrite(0x04, 2, 0x0002);
    b.fn.mmioWrite(0, reg('DMA_ADDR_LO'), 4, 0x1000);
    b.fn.mmioWrite(0, reg('DMA_LEN'), 4, 4);
    b.fn.mmioWrite(0, reg('DMA_CMD'), 4, 1);
    expect(b.fn.mmioRead(0, reg('DMA_STATUS'), 4)).toBe(DmaStatus.UNSUPPORTED);
    expect(b.fn.mmioRead(0, reg('DMA_DONE'), 4)).toBe(0);
    expect(b.dev.buffer[0]).toBe(0);
    expect(b.guestErrors('dma-bus-master-off')).toBe(1);
    b.fn.configWrite(0x04, 2, 0x0006);
    b.fn.mmioWrite(0, reg('DMA_CMD'), 4, 1);
    expect(b.fn.mmioRead(0, reg('DMA_STATUS'), 4)).toBe(DmaStatus.OK);
    expect(b.fn.mmioRead(0, reg('DMA_DONE'), 4)).toBe(4);
    expect(b.dev.buffer[0]).toBe(0x0d);
  });

  it('bus master off: an MSI-X message is dropped, not pended, and not replayed', () => {
    const b = board();
    const p = b.cap(0x11);
    b.fn.configWrite(0x04, 2, 0x0002);
    b.fn.mmioWrite(2, 0x10, 4, 0xfee0_0000);
    b.fn.mmioWrite(2, 0x18, 4, 0x31);
    b.fn.mmioWrite(2, 0x1c, 4, 0);
    b.fn.configWrite(p + 2, 2, 0x8000);
    b.fn.mmioWrite(0, reg('MSIX_NOTIFY'), 4, 1);
    expect(b.guestErrors('msi-bus-master-off')).toBe(1);
    expect(b.fn.mmioRead(2, 0x800, 4)).toBe(0);
    b.fn.configWrite(0x04, 2, 0x0006);
    b.fn.configWrite(p + 2, 2, 0xc000);
    b.fn.configWrite(p + 2, 2, 0x8000);
    expect(b.host.messages).toHaveLength(0);
    b.fn.mmioWrite(0, reg('MSIX_NOTIFY'), 4, 1);
    expect(b.host.messages.map((m) => m.data)).toEqual([0x31]);
  });

  it('enabling MSI-X deasserts INTx; the PBA is read-only; table and PBA take only 32-bit accesses', () => {
    const b = board();
    const p = b.cap(0x11);
    b.fn.configWrite(0x04, 2, 0x0006);
    b.fn.mmioWrite(0, reg('INTX'), 4, 1);
    expect(b.host.intxLevel).toBe(true);
    b.fn.configWrite(p + 2, 2, 0xc000);
    expect(b.host.intxLevel).toBe(false);
    b.fn.mmioWrite(0, reg('MSIX_NOTIFY'), 4, 3);
    expect(b.fn.mmioRead(2, 0x800, 4)).toBe(0b1000);
    b.fn.mmioWrite(2, 0x800, 4, 0);
    expect(b.fn.mmioRead(2, 0x800, 4)).toBe(0b1000);
    expect(b.guestErrors('msix-pba-write')).toBe(1);
    expect(b.fn.mmioRead(2, 0x0c, 2)).toBe(0xffff);
    expect(b.fn.mmioRead64(2, 0x0)).toBe(0xffff_ffff_ffff_ffffn);
    expect(b.guestErrors('msix-access')).toBe(2);
    expect(b.fn.mmioRead(2, 0x3c, 4)).toBe(1);
  });
});

describe('power management', () => {
  it('D3hot makes BARs unreachable; D1/D2 writes are ignored', () => {
    const b = board();
    const pm = b.cap(0x01);
    b.fn.configWrite(0x04, 2, 0x0002);
    b.fn.configWrite(pm + 4, 2, 3);
    expect(b.fn.mmioRead(0, 0, 4)).toBe(0xffff_ffff);
    b.fn.configWrite(pm + 4, 2, 1);
    expect(b.fn.configRead(pm + 4, 2) & 3).toBe(3);
    expect(b.guestErrors('pm-state')).toBe(1);
    b.fn.configWrite(pm + 4, 2, 0);
    expect(b.fn.mmioRead(0, 0, 4)).toBe(0x7e57_0001);
  });
});

describe('Function Level Reset', () => {
  it('returns the whole function to its reset state and calls the device hook', () => {
    const b = board();
    const fresh = board();
    const msix = b.cap(0x11);
    const msi = b.cap(0x05);
    const exp = b.cap(0x10);
    b.fn.configWrite(0x04, 2, 0x0507);
    b.fn.configWrite(0x10, 4, 0xfe00_0000);
    b.fn.configWrite(0x18, 4, 0xfd00_0000);
    b.fn.configWrite(msi + 4, 4, 0xfee0_0000);
    b.fn.configWrite(msi + 2, 2, 0x0001);
    b.fn.configWrite(msix + 2, 2, 0x8000);
    b.fn.mmioWrite(2, 0x00, 4, 0xfee0_1000);
    b.fn.mmioWrite(2, 0x0c, 4, 0);
    b.fn.mmioWrite(2, 0x1c, 4, 1);
    b.fn.mmioWrite(0, reg('MSIX_NOTIFY'), 4, 1);
    b.fn.mmioWrite(0, reg('SCRATCH'), 4, 0x5555);
    b.fn.configWrite(0x04, 2, 0x0107);
    b.fn.mmioWrite(0, reg('INTX'), 4, 1);
    expect(b.host.intxLevel).toBe(true);
    b.fn.configWrite(exp + 8, 2, 0x2810 | 0x8000);
    expect(b.dev.resets.flr).toBe(1);
    expect(Array.from(b.fn.config.bytes)).toEqual(Array.from(fresh.fn.config.bytes));
    expect(b.fn.command).toBe(0);
    expect(b.host.intxLevel).toBe(false);
    expect(Array.from(b.fn.msix?.table ?? [])).toEqual(Array.from(fresh.fn.msix?.table ?? []));
    expect(b.fn.msix?.isPending(1)).toBe(false);
    b.fn.configWrite(0x04, 2, 0x0002);
    expect(b.fn.mmioRead(0, reg('SCRATCH'), 4)).toBe(0);
  });

  it('is not offered without FLR: the bit is ignored, as a guest error', () => {
    const b = board({ flr: false });
    const exp = b.cap(0x10);
    b.fn.configWrite(0x04, 2, 0x0002);
    b.fn.mmioWrite(0, reg('SCRATCH'), 4, 7);
    b.fn.configWrite(exp + 8, 2, 0x8000);
    expect(b.dev.resets.flr).toBe(0);
    expect(b.fn.command).toBe(2);
    expect(b.guestErrors('flr-unsupported')).toBe(1);
  });

  it('PCI reset (RST#) does the same through reset()', () => {
    const b = board();
    b.fn.configWrite(0x04, 2, 0x0006);
    b.fn.reset();
    expect(b.fn.command).toBe(0);
    expect(b.dev.resets.reset).toBe(1);
  });
});

describe('wide message addresses', () => {
  it('a message address past 2^53 goes upstream as a failing wide write, without throwing', () => {
    const b = board();
    const p = b.cap(0x11);
    b.fn.configWrite(0x04, 2, 0x0006);
    b.fn.mmioWrite(2, 0x00, 4, 0);
    b.fn.mmioWrite(2, 0x04, 4, 0xffff_ffff);
    b.fn.mmioWrite(2, 0x0c, 4, 0);
    b.fn.configWrite(p + 2, 2, 0x8000);
    b.fn.mmioWrite(0, reg('MSIX_NOTIFY'), 4, 0);
    expect(b.host.messages).toHaveLength(0);
    expect(b.fn.counters.msixSent.value).toBe(1);
  });
});
