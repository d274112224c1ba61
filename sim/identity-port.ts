import { DmaStatus, failDma, failDmaWide, type DmaPort, type DmaResult } from './dma.ts';
import type { PhysicalMemory } from './memory.ts';

/**
 * The untranslated path: bus address = physical address. An access that runs past the end of memory
 * moves the bytes inside it and reports `UNSUPPORTED` at the first byte outside (a PCIe Unsupported
 * Request from the root complex). The bytes that reach memory are reported to its
 * `PhysicalMemory.dmaObserver`, if any.
 */
export class IdentityDmaPort implements DmaPort {
  readonly #mem: PhysicalMemory;
  /** Virtual nanoseconds per access (memory latency), added to `costNs`. */
  readonly accessNs: number;

  constructor(mem: PhysicalMemory, accessNs = 0) {
    this.#mem = mem;
    this.accessNs = accessNs;
  }

  /** The memory behind the port (a translating stage in front may copy frames directly when it is its own). */
  get memory(): PhysicalMemory {
    return this.#mem;
  }

  read(requester: number, addr: number, dst: Uint8Array, dstOff: number, len: number, res: DmaResult): void {
    res.costNs += this.accessNs;
    const ok = this.#inside(addr, len);
    if (ok > 0) {
      this.#mem.read(addr, dst, dstOff, ok);
      const o = this.#mem.dmaObserver;
      if (o !== null) o.dmaAccess(requester, addr, ok, false);
    }
    this.#finish(addr, len, ok, res);
  }

  write(requester: number, addr: number, src: Uint8Array, srcOff: number, len: number, res: DmaResult): void {
    res.costNs += this.accessNs;
    const ok = this.#inside(addr, len);
    if (ok > 0) {
      this.#mem.write(addr, src, srcOff, ok);
      const o = this.#mem.dmaObserver;
      if (o !== null) o.dmaAccess(requester, addr, ok, true);
    }
    this.#finish(addr, len, ok, res);
  }

  readWide(requester: number, addr: bigint, dst: Uint8Array, dstOff: number, len: number, res: DmaResult): void {
    if (addr >= 0n && addr < BigInt(this.#mem.size)) this.read(requester, Number(addr), dst, dstOff, len, res);
    else failDmaWide(res, DmaStatus.UNSUPPORTED, addr, 0);
  }

  writeWide(requester: number, addr: bigint, src: Uint8Array, srcOff: number, len: number, res: DmaResult): void {
    if (addr >= 0n && addr < BigInt(this.#mem.size)) this.write(requester, Number(addr), src, srcOff, len, res);
    else failDmaWide(res, DmaStatus.UNSUPPORTED, addr, 0);
  }

  /** Bytes of `[addr, addr + len)` that lie inside memory, from the start. */
  #inside(addr: number, len: number): number {
    if (addr < 0 || addr >= this.#mem.size) return 0;
    return Math.min(len, this.#mem.size - addr);
  }

  #finish(addr: number, len: number, ok: number, res: DmaResult): void {
    if (ok === len) {
      res.status = DmaStatus.OK;
      res.bytesDone = len;
      res.faultReason = 0;
    } else {
      failDma(res, DmaStatus.UNSUPPORTED, addr + ok, 0, ok);
    }
  }
}
