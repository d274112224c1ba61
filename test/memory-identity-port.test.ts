import { describe, expect, it } from 'vitest';
import { createDmaResult, DmaStatus, FRAME_SIZE, IdentityDmaPort, PhysicalMemory, resetDmaResult } from '../sim/index.ts';

const SIZE = 16 * FRAME_SIZE;
const RID = 0x0100;

describe('IdentityDmaPort', () => {
  it('moves bytes at bus address = physical address and adds its cost', () => {
    const mem = new PhysicalMemory(SIZE);
    const port = new IdentityDmaPort(mem, 25);
    const res = createDmaResult();
    const src = Uint8Array.from({ length: 2 * FRAME_SIZE }, (_, i) => i & 0xff);
    port.write(RID, FRAME_SIZE - 8, src, 8, 100, res);
    expect(res).toMatchObject({ status: DmaStatus.OK, bytesDone: 100, faultReason: 0, costNs: 25 });
    expect(mem.read8(FRAME_SIZE - 8)).toBe(8);
    expect(mem.read8(FRAME_SIZE + 91)).toBe(107);

    const dst = new Uint8Array(104);
    port.read(RID, FRAME_SIZE - 8, dst, 4, 100, res);
    expect(res).toMatchObject({ status: DmaStatus.OK, bytesDone: 100, costNs: 50 });
    expect([...dst.subarray(4)]).toEqual([...src.subarray(8, 108)]);
    resetDmaResult(res);
    expect(res.costNs).toBe(0);
  });

  it('running past the end of memory moves what is inside and reports UNSUPPORTED at the first byte outside', () => {
    const mem = new PhysicalMemory(SIZE);
    const port = new IdentityDmaPort(mem);
    const res = createDmaResult();
    const src = new Uint8Array(64).fill(0xee);
    port.write(RID, SIZE - 16, src, 0, 64, res);
    expect(res).toMatchObject({ status: DmaStatus.UNSUPPORTED, bytesDone: 16, faultAddr: SIZE, faultAddrWide: BigInt(SIZE) });
    expect(mem.read8(SIZE - 1)).toBe(0xee);
    expect(mem.read8(SIZE - 17)).toBe(0);

    const dst = new Uint8Array(64);
    resetDmaResult(res);
    port.read(RID, SIZE - 8, dst, 0, 64, res);
    expect(res).toMatchObject({ status: DmaStatus.UNSUPPORTED, bytesDone: 8, faultAddr: SIZE });
    expect(dst[7]).toBe(0xee);

    // Wholly outside: nothing moves.
    resetDmaResult(res);
    port.read(RID, SIZE + FRAME_SIZE, dst, 0, 4, res);
    expect(res).toMatchObject({ status: DmaStatus.UNSUPPORTED, bytesDone: 0, faultAddr: SIZE + FRAME_SIZE });
    resetDmaResult(res);
    port.write(RID, 0xfee0_0000, src, 0, 4, res);
    expect(res).toMatchObject({ status: DmaStatus.UNSUPPORTED, bytesDone: 0, faultAddr: 0xfee0_0000 });
    expect(mem.materialisedFrames).toBe(1);
  });

  it('a success after a failure clears the failure fields it owns', () => {
    const mem = new PhysicalMemory(SIZE);
    const port = new IdentityDmaPort(mem);
    const res = createDmaResult();
    const buf = new Uint8Array(8);
    port.read(RID, SIZE, buf, 0, 8, res);
    expect(res.status).toBe(DmaStatus.UNSUPPORTED);
    port.read(RID, 0, buf, 0, 8, res);
    expect(res).toMatchObject({ status: DmaStatus.OK, bytesDone: 8, faultReason: 0 });
  });

  it('wide addresses: in memory they move data, beyond 2^53 they fault with the exact address', () => {
    const mem = new PhysicalMemory(SIZE);
    const port = new IdentityDmaPort(mem, 3);
    const res = createDmaResult();
    const src = Uint8Array.of(1, 2, 3, 4);
    port.writeWide(RID, 0x40n, src, 0, 4, res);
    expect(res).toMatchObject({ status: DmaStatus.OK, bytesDone: 4 });
    const dst = new Uint8Array(4);
    port.readWide(RID, 0x40n, dst, 0, 4, res);
    expect([...dst]).toEqual([1, 2, 3, 4]);

    for (const addr of [2n ** 64n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n]) {
      resetDmaResult(res);
      port.readWide(RID, addr, dst, 0, 4, res);
      expect(res).toMatchObject({ status: DmaStatus.UNSUPPORTED, bytesDone: 0, faultAddr: -1, faultAddrWide: addr });
      resetDmaResult(res);
      port.writeWide(RID, addr, src, 0, 4, res);
      expect(res).toMatchObject({ status: DmaStatus.UNSUPPORTED, bytesDone: 0, faultAddr: -1, faultAddrWide: addr });
    }
    // Just below 2^53 but outside memory: the number form is exact.
    resetDmaResult(res);
    port.readWide(RID, 2n ** 53n - 1n, dst, 0, 4, res);
    expect(res).toMatchObject({ status: DmaStatus.UNSUPPORTED, faultAddr: 2 ** 53 - 1, faultAddrWide: 2n ** 53n - 1n });
    // The wide path runs past the end like the narrow one.
    resetDmaResult(res);
    port.writeWide(RID, BigInt(SIZE - 2), src, 0, 4, res);
    expect(res).toMatchObject({ status: DmaStatus.UNSUPPORTED, bytesDone: 2, faultAddr: SIZE, faultAddrWide: BigInt(SIZE) });
    expect(mem.read16(SIZE - 2)).toBe(0x0201);
  });
});

describe('PhysicalMemory.observeDma', () => {
  it('reports the bytes that reach memory (requester, physical address, length, direction), to every observer until detached', () => {
    const mem = new PhysicalMemory(SIZE);
    const port = new IdentityDmaPort(mem);
    const res = createDmaResult();
    const a: unknown[] = [];
    const b: unknown[] = [];
    expect(mem.dmaObserver).toBeNull();
    const offA = mem.observeDma({ dmaAccess: (...x) => a.push(x) });
    port.write(RID, FRAME_SIZE - 4, new Uint8Array(8), 0, 8, res);
    const offB = mem.observeDma({ dmaAccess: (...x) => b.push(x) });
    // Past the end: only the bytes inside memory are reported; a miss entirely outside is not.
    port.read(RID + 1, SIZE - 2, new Uint8Array(6), 0, 6, res);
    port.read(RID, SIZE + 64, new Uint8Array(4), 0, 4, res);
    port.writeWide(RID, 2n ** 60n, new Uint8Array(4), 0, 4, res);
    offA();
    offA();
    port.read(RID, 0, new Uint8Array(1), 0, 1, res);
    offB();
    port.read(RID, 0, new Uint8Array(1), 0, 1, res);
    // CPU-side accesses are not DMA.
    mem.write8(0, 1);
    expect(a).toEqual([[RID, FRAME_SIZE - 4, 8, true], [RID + 1, SIZE - 2, 2, false]]);
    expect(b).toEqual([[RID + 1, SIZE - 2, 2, false], [RID, 0, 1, false]]);
    expect(mem.dmaObserver).toBeNull();
  });
});
