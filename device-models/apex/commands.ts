import { SimInvariantError } from '../../sim/index.ts';
import type { GasketDma } from './page-table.ts';

/**
 * dmasim's own command set (the real Apex instruction stream is undocumented). A descriptor points at a
 * command buffer of whole 48-byte commands, little-endian:
 *
 * | Offset | Field | Meaning |
 * |---|---|---|
 * | +0 | u32 opcode | {@link ApexOp} |
 * | +4 | u32 length | bytes (COPY, FILL, CRC32C) |
 * | +8 | u64 a | source device address (COPY, CRC32C), matrix A (MATMUL_I8) |
 * | +16 | u64 b | matrix B (MATMUL_I8) |
 * | +24 | u64 c | destination (COPY, FILL), result u32 (CRC32C), matrix C (MATMUL_I8) |
 * | +32 | u32 arg0 | FILL: 32-bit pattern repeated from the destination's first byte; MATMUL_I8: M |
 * | +36 | u32 arg1 | MATMUL_I8: K |
 * | +40 | u32 arg2 | MATMUL_I8: N |
 * | +44 | u32 reserved | |
 *
 * MATMUL_I8: A is M x K int8 row-major, B is K x N int8 row-major, C = A B as M x N int32 little-endian
 * row-major; 1 <= M, K, N <= 256. All addresses are gasket device addresses.
 */
export const ApexOp = { NOP: 0, COPY: 1, FILL: 2, CRC32C: 3, MATMUL_I8: 4 } as const;
/** Bytes per command. */
export const APEX_COMMAND_SIZE = 48;
/** Largest command buffer a descriptor may name (bytes). */
export const APEX_COMMAND_BUFFER_MAX = 64 * 1024;
/** Largest COPY/FILL/CRC32C length. */
export const APEX_COMMAND_LENGTH_MAX = 16 << 20;
/** Largest matrix dimension. */
export const APEX_MATMUL_MAX = 256;

/** Virtual time model of the engine (dmasim's values); data movement is charged by the DMA path (link). */
export interface ApexCommandTiming {
  /** Per command. */
  readonly setupNs: number;
  /** Compute rate of MATMUL_I8 in tera-operations per second; a multiply-accumulate is 2 operations. */
  readonly tops: number;
}

/** Default engine timing: 100 ns per command, 4 TOPS (the Edge TPU's rated int8 peak). */
export const APEX_COMMAND_TIMING: ApexCommandTiming = { setupNs: 100, tops: 4 };

/** Result of running a buffer: >= 0 the virtual ns it took; {@link CMD_INVALID} or {@link CMD_FAULT}. */
export const CMD_INVALID = -1;
/** A DMA of a command faulted (already reported by the DMA path). */
export const CMD_FAULT = -2;

const CHUNK = 4096;

/** CRC-32C (Castagnoli, reflected 0x82f63b78) table. */
const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f6_3b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** Updates a running CRC-32C (pre-inverted state) over `buf[off, off + len)`. */
export function crc32cUpdate(state: number, buf: Uint8Array, off: number, len: number): number {
  let c = state;
  for (let i = off; i < off + len; i++) c = (CRC32C_TABLE[(c ^ (buf[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return c >>> 0;
}

/** The command processor: runs a command buffer's commands in order, stopping at the first failure. */
export class ApexCommands {
  /** Commands run, by opcode. */
  readonly executed = new Uint32Array(5);
  readonly #dma: GasketDma;
  readonly #chunk = new Uint8Array(CHUNK);
  readonly #a = new Int8Array(APEX_MATMUL_MAX * APEX_MATMUL_MAX);
  readonly #b = new Int8Array(APEX_MATMUL_MAX * APEX_MATMUL_MAX);
  readonly #row = new Uint8Array(APEX_MATMUL_MAX * 4);
  readonly #rowView = new DataView(this.#row.buffer);
  readonly #aBytes = new Uint8Array(this.#a.buffer);
  readonly #bBytes = new Uint8Array(this.#b.buffer);
  readonly #crcOut = new Uint8Array(4);
  readonly #setupNs: number;
  /** Operations per virtual ns (1 TOPS = 1000 per ns). */
  readonly #opsPerNs: number;

  constructor(dma: GasketDma, timing: Partial<ApexCommandTiming> = {}) {
    this.#dma = dma;
    const t = { ...APEX_COMMAND_TIMING, ...timing };
    if (!(t.tops > 0) || !(t.setupNs >= 0)) throw new SimInvariantError(`apex commands: bad timing ${t.setupNs} ns, ${t.tops} TOPS`);
    this.#setupNs = t.setupNs;
    this.#opsPerNs = t.tops * 1000;
  }

  /** Runs the `count` commands of `buf`; returns the virtual ns taken or a negative failure. */
  run(buf: DataView, count: number): number {
    let ns = 0;
    for (let i = 0; i < count; i++) {
      const t = this.#one(buf, i * APEX_COMMAND_SIZE);
      if (t < 0) return t;
      ns += t;
    }
    return ns;
  }

  #one(v: DataView, o: number): number {
    const op = v.getUint32(o, true);
    const len = v.getUint32(o + 4, true);
    const aLo = v.getUint32(o + 8, true);
    const aHi = v.getUint32(o + 12, true);
    const cLo = v.getUint32(o + 24, true);
    const cHi = v.getUint32(o + 28, true);
    const dma = this.#dma;
    dma.costNs = 0;
    dma.bytes = 0;
    // Trace placement only: the command's setup, then its transfers, then its compute.
    if (dma.trace !== undefined) dma.traceAtNs += this.#setupNs;
    let macs = 0;
    let ok = true;
    switch (op) {
      case ApexOp.NOP:
        break;
      case ApexOp.COPY:
        if (len > APEX_COMMAND_LENGTH_MAX) return CMD_INVALID;
        ok = this.#copy(aHi, aLo, cHi, cLo, len);
        break;
      case ApexOp.FILL:
        if (len > APEX_COMMAND_LENGTH_MAX) return CMD_INVALID;
        ok = this.#fill(cHi, cLo, len, v.getUint32(o + 32, true));
        break;
      case ApexOp.CRC32C:
        if (len > APEX_COMMAND_LENGTH_MAX) return CMD_INVALID;
        ok = this.#crc(aHi, aLo, cHi, cLo, len);
        break;
      case ApexOp.MATMUL_I8: {
        const m = v.getUint32(o + 32, true);
        const k = v.getUint32(o + 36, true);
        const n = v.getUint32(o + 40, true);
        if (!(m >= 1 && k >= 1 && n >= 1 && m <= APEX_MATMUL_MAX && k <= APEX_MATMUL_MAX && n <= APEX_MATMUL_MAX)) return CMD_INVALID;
        ok = this.#matmul(aHi, aLo, v.getUint32(o + 20, true), v.getUint32(o + 16, true), cHi, cLo, m, k, n);
        macs = m * k * n;
        break;
      }
      default:
        return CMD_INVALID;
    }
    if (!ok) return CMD_FAULT;
    this.executed[op] = ((this.executed[op] as number) + 1) >>> 0;
    const computeNs = Math.ceil((2 * macs) / this.#opsPerNs);
    if (dma.trace !== undefined) dma.traceAtNs += computeNs;
    return this.#setupNs + computeNs + dma.costNs;
  }

  #copy(sHi: number, sLo: number, dHi: number, dLo: number, len: number): boolean {
    const dma = this.#dma;
    const buf = this.#chunk;
    for (let done = 0; done < len; done += CHUNK) {
      const n = Math.min(CHUNK, len - done);
      if (!dma.read(atHi(sHi, sLo, done), atLo(sLo, done), buf, 0, n)) return false;
      if (!dma.write(atHi(dHi, dLo, done), atLo(dLo, done), buf, 0, n)) return false;
    }
    return true;
  }

  #fill(dHi: number, dLo: number, len: number, pattern: number): boolean {
    const buf = this.#chunk;
    // CHUNK is a multiple of 4, so every chunk starts at pattern byte 0.
    for (let i = 0; i < CHUNK; i++) buf[i] = (pattern >>> (8 * (i & 3))) & 0xff;
    for (let done = 0; done < len; done += CHUNK) {
      if (!this.#dma.write(atHi(dHi, dLo, done), atLo(dLo, done), buf, 0, Math.min(CHUNK, len - done))) return false;
    }
    return true;
  }

  #crc(sHi: number, sLo: number, dHi: number, dLo: number, len: number): boolean {
    const buf = this.#chunk;
    let c = 0xffff_ffff;
    for (let done = 0; done < len; done += CHUNK) {
      const n = Math.min(CHUNK, len - done);
      if (!this.#dma.read(atHi(sHi, sLo, done), atLo(sLo, done), buf, 0, n)) return false;
      c = crc32cUpdate(c, buf, 0, n);
    }
    c = ~c >>> 0;
    const out = this.#crcOut;
    for (let i = 0; i < 4; i++) out[i] = (c >>> (8 * i)) & 0xff;
    return this.#dma.write(dHi, dLo, out, 0, 4);
  }

  #matmul(aHi: number, aLo: number, bHi: number, bLo: number, cHi: number, cLo: number, m: number, k: number, n: number): boolean {
    const dma = this.#dma;
    if (!dma.read(aHi, aLo, this.#aBytes, 0, m * k)) return false;
    if (!dma.read(bHi, bLo, this.#bBytes, 0, k * n)) return false;
    const a = this.#a;
    const b = this.#b;
    const row = this.#rowView;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        // |s| <= 256 * 128 * 128 = 2^22: exact in a number, no wrap.
        for (let x = 0; x < k; x++) s += (a[i * k + x] as number) * (b[x * n + j] as number);
        row.setInt32(4 * j, s, true);
      }
      if (!dma.write(atHi(cHi, cLo, i * n * 4), atLo(cLo, i * n * 4), this.#row, 0, n * 4)) return false;
    }
    return true;
  }
}

const TWO32 = 0x1_0000_0000;

/** The high dword of device address `hi:lo` + `off`. */
function atHi(hi: number, lo: number, off: number): number {
  return lo + off >= TWO32 ? (hi + 1) >>> 0 : hi;
}

/** The low dword of device address `lo` + `off`. */
function atLo(lo: number, off: number): number {
  const l = lo + off;
  return l >= TWO32 ? l - TWO32 : l;
}
