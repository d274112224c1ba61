import { invariant, mask32 } from '../../sim/index.ts';
import { MSIX_CONTROL, type MsixOptions } from './capabilities.ts';
import { ConfigSpace } from './config-space.ts';
import type { MessagePath } from './msi.ts';

/** Bytes per MSI-X table entry. */
export const MSIX_ENTRY_SIZE = 16;
/** Dword index of each field in a table entry. */
export const MsixEntry = { ADDR_LO: 0, ADDR_HI: 1, DATA: 2, VECTOR_CTRL: 3 } as const;
/** Vector control bit 0: the vector is masked. */
export const MSIX_VECTOR_MASKED = 1;

const ENABLE_BYTE = mask32(MSIX_CONTROL.ENABLE) >>> 8;
const MASKALL_BYTE = mask32(MSIX_CONTROL.FUNCTION_MASK) >>> 8;

/**
 * MSI-X (PCI 3.0 section 6.8.2) as QEMU's hw/pci/msix.c has it. A vector is masked while MSI-X is disabled,
 * the function is masked, or its vector-control mask bit is set. Notifying a masked vector sets its bit in
 * the PBA (bit v of little-endian qword v/64) and sends nothing; when the vector becomes unmasked with its
 * bit set, the bit is cleared and the message is sent once. At reset every entry is masked and zeroed and
 * the PBA is clear. The PBA is read-only; the table holds plain 32-bit storage (QEMU stores every bit).
 */
export class Msix {
  /** Offset of the capability in config space. */
  readonly base: number;
  readonly options: MsixOptions;
  /** The vector table, four dwords per vector. */
  readonly table: Uint32Array;
  /** The pending bit array, as dwords (a multiple of two: whole qwords). */
  readonly pba: Uint32Array;
  /** Bytes of the table. */
  readonly tableBytes: number;
  /** Bytes of the PBA. */
  readonly pbaBytes: number;
  readonly #cfg: ConfigSpace;
  readonly #path: MessagePath;
  #functionMasked = true;

  constructor(cfg: ConfigSpace, base: number, options: MsixOptions, path: MessagePath) {
    invariant(options.vectors >= 1 && options.vectors <= 2048, `MSI-X vectors must be 1..2048, got ${options.vectors}`);
    invariant(((options.tableOffset | options.pbaOffset) & 7) === 0, 'MSI-X table and PBA offsets must be 8-byte aligned');
    this.#cfg = cfg;
    this.base = base;
    this.options = options;
    this.#path = path;
    this.tableBytes = options.vectors * MSIX_ENTRY_SIZE;
    this.pbaBytes = Math.ceil(options.vectors / 64) * 8;
    this.table = new Uint32Array(this.tableBytes / 4);
    this.pba = new Uint32Array(this.pbaBytes / 4);
    this.reset();
  }

  /** Whether MSI-X is enabled. */
  get enabled(): boolean {
    return (this.#cfg.get8(this.base + 3) & ENABLE_BYTE) !== 0;
  }

  /** Whether every vector is masked at function level (disabled, or the function mask is set). */
  get functionMasked(): boolean {
    return this.#functionMasked;
  }

  /** Whether vector `v` is masked. */
  isMasked(v: number): boolean {
    return this.#functionMasked || ((this.table[v * 4 + MsixEntry.VECTOR_CTRL] as number) & MSIX_VECTOR_MASKED) !== 0;
  }

  /** Whether vector `v`'s pending bit is set. */
  isPending(v: number): boolean {
    return (((this.pba[v >>> 5] as number) >>> (v & 31)) & 1) === 1;
  }

  /** Signals vector `v` (below the table size; a larger one is a device-model bug). */
  notify(v: number): void {
    invariant(v >= 0 && v < this.options.vectors, () => `MSI-X vector ${v} out of range (${this.options.vectors})`);
    if (this.isMasked(v)) {
      this.pba[v >>> 5] = ((this.pba[v >>> 5] as number) | (1 << (v & 31))) >>> 0;
      return;
    }
    this.#send(v);
  }

  #send(v: number): void {
    const t = this.table;
    const e = v * 4;
    this.#path.sendMessage(t[e + MsixEntry.ADDR_LO] as number, t[e + MsixEntry.ADDR_HI] as number, t[e + MsixEntry.DATA] as number, true);
  }

  /** Delivers `v` if it just became unmasked with its pending bit set (msix_handle_mask_update). */
  #maskUpdate(v: number, wasMasked: boolean): void {
    if (wasMasked && !this.isMasked(v) && this.isPending(v)) {
      this.pba[v >>> 5] = ((this.pba[v >>> 5] as number) & ~(1 << (v & 31))) >>> 0;
      this.#send(v);
    }
  }

  /** A dword of the table at byte offset `off` (4-aligned, inside the table). */
  readTable(off: number): number {
    return this.table[off >>> 2] as number;
  }

  /** A guest write of a table dword at byte offset `off` (4-aligned, inside the table). */
  writeTable(off: number, value: number): void {
    const v = off >>> 4;
    const was = this.isMasked(v);
    this.table[off >>> 2] = value >>> 0;
    this.#maskUpdate(v, was);
  }

  /** A dword of the PBA at byte offset `off` (4-aligned, inside the PBA). */
  readPba(off: number): number {
    return this.pba[off >>> 2] as number;
  }

  /** Config-space write hook (msix_write_config): enable and function mask live in the control's high byte. */
  afterWrite(offset: number, size: number): void {
    if (!ConfigSpace.overlaps(offset, size, this.base + 3, 1)) return;
    const was = this.#functionMasked;
    const ctl = this.#cfg.get8(this.base + 3);
    this.#functionMasked = (ctl & ENABLE_BYTE) === 0 || (ctl & MASKALL_BYTE) !== 0;
    if ((ctl & ENABLE_BYTE) === 0) return;
    this.#path.deassertIntx();
    if (this.#functionMasked === was) return;
    for (let v = 0; v < this.options.vectors; v++) {
      const vectorMasked = ((this.table[v * 4 + MsixEntry.VECTOR_CTRL] as number) & MSIX_VECTOR_MASKED) !== 0;
      this.#maskUpdate(v, was || vectorMasked);
    }
  }

  /** Reset (msix_reset): table zeroed with every vector masked, PBA clear, function masked. */
  reset(): void {
    this.table.fill(0);
    for (let v = 0; v < this.options.vectors; v++) this.table[v * 4 + MsixEntry.VECTOR_CTRL] = MSIX_VECTOR_MASKED;
    this.pba.fill(0);
    this.#functionMasked = true;
  }
}
