import { invariant } from '../../sim/index.ts';
import { FRCD_OFFSET, VTD_REGS, fieldMaskDword, type RegDef, type RegName } from './regs.ts';

/**
 * The register block's storage, built from {@link VTD_REGS}: one 32-bit slot per dword with the write mask,
 * write-1-to-clear mask and write-only mask its fields define (the scheme QEMU's vtd_define_long uses).
 * Guest writes go through {@link RegisterFile.guestWrite32}; the unit's own updates use the raw accessors.
 */
export class RegisterFile {
  /** Bytes in the block: up to the end of the last fault recording register. */
  readonly size: number;
  readonly #csr: Uint32Array;
  readonly #wmask: Uint32Array;
  readonly #w1c: Uint32Array;
  readonly #wo: Uint32Array;
  /** Per dword: index into {@link instances} of the register it belongs to, or -1. */
  readonly #slot: Int16Array;
  /** Every register instance (repeated registers expanded): definition, byte offset and instance number. */
  readonly instances: readonly { readonly def: RegDef; readonly offset: number; readonly n: number }[];

  constructor(nfr: number, resets: Readonly<Partial<Record<RegName, bigint>>>) {
    this.size = FRCD_OFFSET + 16 * nfr;
    const dwords = this.size / 4;
    this.#csr = new Uint32Array(dwords);
    this.#wmask = new Uint32Array(dwords);
    this.#w1c = new Uint32Array(dwords);
    this.#wo = new Uint32Array(dwords);
    this.#slot = new Int16Array(dwords).fill(-1);
    const inst: { def: RegDef; offset: number; n: number }[] = [];
    for (const def of VTD_REGS as readonly RegDef[]) {
      const count = def.repeat === undefined ? 1 : nfr;
      for (let n = 0; n < count; n++) {
        const offset = def.offset + n * (def.repeat?.stride ?? 0);
        const idx = inst.length;
        inst.push({ def, offset, n });
        const reset = def.reset === 'config' ? (resets[def.name as RegName] ?? 0n) : def.reset;
        for (let dw = 0; dw < def.width / 32; dw++) {
          const s = offset / 4 + dw;
          invariant(this.#slot[s] === -1, `VT-d register ${def.name} overlaps another at 0x${offset.toString(16)}`);
          this.#slot[s] = idx;
          this.#csr[s] = Number((reset >> BigInt(32 * dw)) & 0xffff_ffffn);
          for (const fd of Object.values(def.fields)) {
            const m = fieldMaskDword(fd, dw);
            if (fd.access === 'RW' || fd.access === 'WO') this.#wmask[s] = (this.#wmask[s] as number) | m;
            if (fd.access === 'W1C') this.#w1c[s] = (this.#w1c[s] as number) | m;
            if (fd.access === 'WO') this.#wo[s] = (this.#wo[s] as number) | m;
          }
        }
      }
    }
    this.instances = inst;
  }

  /** The register instance covering byte `offset` (4-aligned, inside the block), or -1. */
  instanceAt(offset: number): number {
    return this.#slot[offset >>> 2] ?? -1;
  }

  /** What a guest read of the dword at `offset` returns (write-only bits read as 0). */
  guestRead32(offset: number): number {
    const s = offset >>> 2;
    return ((this.#csr[s] as number) & ~(this.#wo[s] as number)) >>> 0;
  }

  /** A guest write of the dword at `offset`: masked by the fields' access kinds. */
  guestWrite32(offset: number, v: number): void {
    const s = offset >>> 2;
    const old = this.#csr[s] as number;
    const wm = this.#wmask[s] as number;
    this.#csr[s] = ((old & ~wm) | (v & wm)) & ~((this.#w1c[s] as number) & v);
  }

  /** The raw dword at byte `offset`. */
  get(offset: number): number {
    return this.#csr[offset >>> 2] as number;
  }

  /** Sets the raw dword at byte `offset`. */
  set(offset: number, v: number): void {
    this.#csr[offset >>> 2] = v;
  }

  /** Sets bits `set` and clears bits `clear` of the raw dword at `offset`; returns the new value. */
  update(offset: number, clear: number, set: number): number {
    const v = (((this.#csr[offset >>> 2] as number) & ~clear) | set) >>> 0;
    this.#csr[offset >>> 2] = v;
    return v;
  }
}
