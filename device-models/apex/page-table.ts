import { DmaStatus, createDmaResult, resetDmaResult, type DmaPort, type TraceBus } from '../../sim/index.ts';
import type { ApexCsr } from './csr.ts';
import { ApexLink } from './link.ts';
import { APEX, APEX_PAGE_TABLE, HIB_ERROR } from './regs.ts';

const TWO32 = 0x1_0000_0000;
const PAGE = 4096;
const SIMPLE_LIMIT = 1 << 25;
const SLOTS = APEX_PAGE_TABLE.entries;

/** hib_error_status bits the translation path sets. */
export const PT_ERR = {
  SIMPLE: 1 << HIB_ERROR.INBOUND_PAGE_FAULT.lsb,
  EXTENDED: 1 << HIB_ERROR.EXTENDED_PAGE_FAULT.lsb,
  AXI_WRITE: 1 << HIB_ERROR.AXI_WRITE.lsb,
  AXI_READ: 1 << HIB_ERROR.AXI_READ.lsb,
} as const;

/** Where translation and DMA errors go: the device latches them and halts the queue. */
export interface FaultSink {
  /**
   * Latches `bits` of hib_error_status. `hi:lo` is the device address of an address error (translation,
   * AXI), latched in PAGE_FAULT_ADDRESS; `hi` < 0 for errors without one (queue configuration, commands).
   */
  hibError(bits: number, hi: number, lo: number): void;
}

/**
 * The gasket page table (spec/devices.md section 2): 8192 64-bit slots at BAR2 0x50000. EXTENDED_TABLE
 * holds the number of simple slots; the extended level-0 slots are the rest.
 * - Simple address: bit 63 = 0, bits 62:25 = 0, slot = bits 24:12, offset bits 11:0; the slot must be below
 *   the simple count.
 * - Extended address: bit 63 = 1, bits 62:34 = 0, level-0 index bits 33:21 (slot simple + index, below
 *   8192), level-1 index bits 20:12 into a 4 KiB subtable of 512 u64 in host memory, which the device
 *   reads by DMA through its port (so through the IOMMU) on every access: dmasim has no translation cache,
 *   as the driver issues no flush.
 * - An entry is valid with bit 0 set; bits 63:12 are the bus page.
 * dmasim's fault rule: any failure translating a simple address sets hib_error_status bit 0, an extended
 * one (either level, or out of range) bit 1; a subtable read the bus refuses is an AXI read error (bit 4).
 * An entry whose bus page is at or past 2^53 is refused as the bus would refuse it (AXI error).
 */
export class GasketPageTable {
  readonly lo = new Uint32Array(SLOTS);
  readonly hi = new Uint32Array(SLOTS);
  /** Translations and subtable fetches. */
  readonly counters = { translations: 0, subtableReads: 0 };
  /** Virtual ns the last translation spent reading subtables: the link's 8-byte read plus the port's `costNs`. */
  lastCostNs = 0;
  readonly #csr: ApexCsr;
  readonly #port: DmaPort;
  readonly #sink: FaultSink;
  readonly #subtableReadNs: number;
  readonly #buf = new Uint8Array(8);
  readonly #res = createDmaResult();

  constructor(csr: ApexCsr, port: DmaPort, sink: FaultSink, link: ApexLink = new ApexLink()) {
    this.#csr = csr;
    this.#port = port;
    this.#sink = sink;
    this.#subtableReadNs = link.readNs(8);
  }

  /** The number of simple slots (EXTENDED_TABLE). */
  get simpleCount(): number {
    return this.#csr.get(APEX.EXTENDED_TABLE);
  }

  /** Every slot invalid. */
  clear(): void {
    this.lo.fill(0);
    this.hi.fill(0);
  }

  /** The bus address of device address `hi:lo` (u32 halves), or -1 after reporting the fault to the sink. */
  translate(hi: number, lo: number): number {
    return this.translateIn(hi, lo, 0, SLOTS, true, this.#sink);
  }

  /**
   * {@link translate} through a queue's window: simple slot s means slot `first + s`, and s must be below
   * `count`; extended addresses fault unless `extended`. Faults go to `sink`.
   */
  translateIn(hi: number, lo: number, first: number, count: number, extended: boolean, sink: FaultSink): number {
    this.counters.translations++;
    this.lastCostNs = 0;
    const simple = this.simpleCount;
    if (hi >>> 31 === 0) {
      const rel = lo >>> 12;
      const slot = first + rel;
      if (hi !== 0 || lo >= SIMPLE_LIMIT || rel >= count || slot >= simple || ((this.lo[slot] as number) & 1) === 0) return fault(sink, PT_ERR.SIMPLE, hi, lo);
      return this.#bus(this.hi[slot] as number, this.lo[slot] as number, lo, hi, sink);
    }
    const lvl0 = ((hi & 3) << 11) | (lo >>> 21);
    const slot = simple + lvl0;
    if (!extended || (hi & 0x7fff_fffc) !== 0 || slot >= SLOTS || ((this.lo[slot] as number) & 1) === 0) return fault(sink, PT_ERR.EXTENDED, hi, lo);
    const sub = this.#page(this.hi[slot] as number, this.lo[slot] as number);
    if (sub < 0) return fault(sink, PT_ERR.AXI_READ, hi, lo);
    const res = this.#res;
    resetDmaResult(res);
    this.counters.subtableReads++;
    this.#port.read(0, sub + 8 * ((lo >>> 12) & 0x1ff), this.#buf, 0, 8, res);
    this.lastCostNs = this.#subtableReadNs + res.costNs;
    if (res.status !== DmaStatus.OK) return fault(sink, PT_ERR.AXI_READ, hi, lo);
    const b = this.#buf;
    const elo = ((b[0] as number) | ((b[1] as number) << 8) | ((b[2] as number) << 16) | ((b[3] as number) << 24)) >>> 0;
    const ehi = ((b[4] as number) | ((b[5] as number) << 8) | ((b[6] as number) << 16) | ((b[7] as number) << 24)) >>> 0;
    if ((elo & 1) === 0) return fault(sink, PT_ERR.EXTENDED, hi, lo);
    return this.#bus(ehi, elo, lo, hi, sink);
  }

  /** The bus page of entry `ehi:elo`, or -1 if it is at or past 2^53. */
  #page(ehi: number, elo: number): number {
    return ehi >= 0x20_0000 ? -1 : ehi * TWO32 + ((elo & ~0xfff) >>> 0);
  }

  #bus(ehi: number, elo: number, lo: number, hi: number, sink: FaultSink): number {
    const p = this.#page(ehi, elo);
    return p < 0 ? fault(sink, PT_ERR.AXI_READ, hi, lo) : p + (lo & 0xfff);
  }
}

function fault(sink: FaultSink, bits: number, hi: number, lo: number): number {
  sink.hibError(bits, hi, lo);
  return -1;
}

/** Where a {@link GasketDma}'s window lives: queue q's window registers, and whether it may use extended addresses. */
export interface GasketWindow {
  readonly firstReg: number;
  readonly countReg: number;
  readonly extended: boolean;
}

/** Where a {@link GasketDma} traces its transfers: the bus and the track (`${name}/dma`). */
export interface GasketDmaTrace {
  readonly bus: TraceBus;
  readonly source: string;
  /** The queue the transfers belong to (a record field). */
  readonly queue: number;
}

/**
 * The device's DMA through the gasket table: an access at a device address is split at 4 KiB pages, each
 * page translated, then moved through the port. A refused transfer is an AXI error (bit 4 read, bit 3
 * write) at the device address of the first failing byte. Costs accumulate in {@link costNs}, which the
 * caller zeroes: per page, the link's cost of the transfer ({@link ApexLink}), the port's `costNs` (IOMMU
 * walks) and the translation's subtable read.
 */
export class GasketDma {
  costNs = 0;
  /** Bytes moved. */
  bytes = 0;
  /** Where transfers are traced (while its bus is active), or none. */
  trace: GasketDmaTrace | undefined;
  /**
   * Trace only: the virtual time (ns) the next transfer starts at. The engine moves data at once and
   * charges the time afterwards, so the queue and the commands place each transfer on this cursor; every
   * transfer advances it by its cost. Never read by the timing model.
   */
  traceAtNs = 0;
  readonly #pt: GasketPageTable;
  readonly #port: DmaPort;
  readonly #sink: FaultSink;
  readonly #link: ApexLink;
  readonly #csr: ApexCsr | undefined;
  readonly #window: GasketWindow | undefined;
  readonly #res = createDmaResult();

  /** With `csr` and `window`, simple addresses go through that queue window (read at every access). */
  constructor(pt: GasketPageTable, port: DmaPort, sink: FaultSink, link: ApexLink = new ApexLink(), csr?: ApexCsr, window?: GasketWindow) {
    this.#pt = pt;
    this.#port = port;
    this.#sink = sink;
    this.#link = link;
    this.#csr = csr;
    this.#window = window;
  }

  /** Reads `len` bytes at device address `hi:lo` into `dst` at `off`; false after a fault. */
  read(hi: number, lo: number, dst: Uint8Array, off: number, len: number): boolean {
    return this.#move(false, hi, lo, dst, off, len);
  }

  /** Writes `len` bytes of `src` from `off` at device address `hi:lo`; false after a fault. */
  write(hi: number, lo: number, src: Uint8Array, off: number, len: number): boolean {
    return this.#move(true, hi, lo, src, off, len);
  }

  #move(write: boolean, hi: number, lo: number, buf: Uint8Array, off: number, len: number): boolean {
    const pt = this.#pt;
    const port = this.#port;
    const res = this.#res;
    const w = this.#window;
    const csr = this.#csr;
    const first = w === undefined || csr === undefined ? 0 : csr.get(w.firstReg);
    const count = w === undefined || csr === undefined ? SLOTS : csr.get(w.countReg);
    const extended = w === undefined ? true : w.extended;
    const trace = this.trace;
    const traced = trace !== undefined && trace.bus.active;
    const cost0 = this.costNs;
    let linkNs = 0;
    let done = 0;
    while (done < len) {
      let l = lo + done;
      let h = hi;
      if (l >= TWO32) {
        l -= TWO32;
        h = (h + 1) >>> 0;
      }
      const chunk = Math.min(len - done, PAGE - (l & 0xfff));
      const bus = pt.translateIn(h, l, first, count, extended, this.#sink);
      this.costNs += pt.lastCostNs;
      if (bus < 0) {
        if (traced) this.#traced(trace, write, hi, lo, done, cost0, linkNs, false);
        return false;
      }
      resetDmaResult(res);
      if (write) port.write(0, bus, buf, off + done, chunk, res);
      else port.read(0, bus, buf, off + done, chunk, res);
      const ln = write ? this.#link.writeNs(chunk) : this.#link.readNs(chunk);
      this.costNs += res.costNs + ln;
      if (traced) linkNs += ln;
      if (res.status !== DmaStatus.OK) {
        // Trace first: the fault halts the queue, whose records follow the transfer's.
        if (traced) this.#traced(trace, write, hi, lo, done + res.bytesDone, cost0, linkNs, false);
        this.#sink.hibError(write ? PT_ERR.AXI_WRITE : PT_ERR.AXI_READ, h, l + res.bytesDone);
        return false;
      }
      done += chunk;
      this.bytes += chunk;
    }
    if (traced) this.#traced(trace, write, hi, lo, done, cost0, linkNs, true);
    return true;
  }

  /** One `dma.read` / `dma.write` span on the cursor, lasting the transfer's cost; advances the cursor. */
  #traced(trace: GasketDmaTrace, write: boolean, hi: number, lo: number, bytes: number, cost0: number, linkNs: number, ok: boolean): void {
    const dur = this.costNs - cost0;
    const address = (BigInt(hi) << 32n) | BigInt(lo);
    trace.bus.span(this.traceAtNs, dur, trace.source, write ? 'dma.write' : 'dma.read', { queue: trace.queue, address, bytes, linkNs, ok });
    this.traceAtNs += dur;
  }
}
