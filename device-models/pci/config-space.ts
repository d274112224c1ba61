import { invariant, mask32 } from '../../sim/index.ts';
import { PCI_HEADER_SIZE, type ConfigReg } from './regs.ts';

/** A register placed in the space: its block (`header`, `MSI`, ...) and absolute offset. */
export interface PlacedReg {
  readonly block: string;
  readonly base: number;
  readonly reg: ConfigReg;
}

/**
 * The bytes of a configuration space with a mask per byte, as QEMU's PCIDevice keeps them: `wmask` (bits a
 * write stores), `w1cmask` (bits a 1 clears), `w0cmask` (bits a 0 clears) and `womask` (write-only bits: the
 * write is an action, never stored, so they read 0). Everything else is read-only. Masks come from register
 * tables ({@link define}); the function and its capabilities change hardware-owned bits with the raw setters.
 *
 * As in QEMU (`pci_init_wmask`), bytes past the header that no capability claims are read-write scratch.
 */
export class ConfigSpace {
  /** 256 (conventional) or 4096 (PCI Express). */
  readonly size: number;
  /** Current contents. */
  readonly bytes: Uint8Array;
  readonly wmask: Uint8Array;
  readonly w1cmask: Uint8Array;
  readonly w0cmask: Uint8Array;
  readonly womask: Uint8Array;
  /** Every register defined, in definition order (for documentation and tests). */
  readonly registers: PlacedReg[] = [];
  readonly #resetImage: Uint8Array;

  constructor(size: 256 | 4096) {
    this.size = size;
    this.bytes = new Uint8Array(size);
    this.wmask = new Uint8Array(size);
    this.w1cmask = new Uint8Array(size);
    this.w0cmask = new Uint8Array(size);
    this.womask = new Uint8Array(size);
    this.#resetImage = new Uint8Array(size);
    this.wmask.fill(0xff, PCI_HEADER_SIZE);
  }

  /**
   * Places the registers of `block` at `base`: claims `[base, base + length)` as read-only, then sets each
   * register's reset value (`resets[name]` for `'device'` registers) and the masks its fields declare.
   */
  define(block: string, base: number, regs: readonly ConfigReg[], length: number, resets: Readonly<Record<string, number>> = {}): void {
    invariant(base >= 0 && base + length <= this.size, () => `${block} at 0x${base.toString(16)} (+${length}) is outside config space`);
    this.wmask.fill(0, base, base + length);
    for (const reg of regs) {
      const at = base + reg.offset;
      invariant(reg.offset + reg.width <= length, () => `${block}.${reg.name} lies outside its block`);
      const reset = reg.reset === 'device' ? resets[reg.name] : reg.reset;
      invariant(reset !== undefined, () => `${block}.${reg.name} needs a reset value from the device`);
      let w = 0;
      let c1 = 0;
      let c0 = 0;
      let wo = 0;
      for (const f of Object.values(reg.fields)) {
        const m = mask32(f);
        if (f.access === 'RW') w |= m;
        else if (f.access === 'W1C') c1 |= m;
        else if (f.access === 'W0C') c0 |= m;
        else if (f.access === 'WO') wo |= m;
      }
      for (let i = 0; i < reg.width; i++) {
        const sh = 8 * i;
        this.bytes[at + i] = (reset >>> sh) & 0xff;
        this.wmask[at + i] = (w >>> sh) & 0xff;
        this.w1cmask[at + i] = (c1 >>> sh) & 0xff;
        this.w0cmask[at + i] = (c0 >>> sh) & 0xff;
        this.womask[at + i] = (wo >>> sh) & 0xff;
      }
      this.registers.push({ block, base, reg });
    }
  }

  /** Replaces the writable mask of `width` bytes at `offset` (a BAR narrowed to its size). */
  setWmask(offset: number, width: number, mask: number): void {
    for (let i = 0; i < width; i++) this.wmask[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  /** Records the current contents as the reset state (after the function is built). */
  captureReset(): void {
    this.#resetImage.set(this.bytes);
  }

  /** Returns every byte to its reset value (PCI reset, FLR). */
  restoreReset(): void {
    this.bytes.set(this.#resetImage);
  }

  /** Little-endian read of `size` (1..4) bytes at `offset`; the caller has checked the range. */
  read(offset: number, size: number): number {
    const b = this.bytes;
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = (v << 8) | (b[offset + i] as number);
    return v >>> 0;
  }

  /** A guest write of `size` bytes: each byte through its masks. The caller has checked the range. */
  write(offset: number, size: number, value: number): void {
    const b = this.bytes;
    for (let i = 0; i < size; i++) {
      const o = offset + i;
      const v = (value >>> (8 * i)) & 0xff;
      const w = this.wmask[o] as number;
      let x = ((b[o] as number) & ~w) | (v & w);
      x &= ~(v & (this.w1cmask[o] as number));
      x &= ~(~v & (this.w0cmask[o] as number));
      b[o] = x;
    }
  }

  /** The write-only bits of a guest write of `size` bytes at `offset` that land in `[at, at + width)`. */
  writeOnlyBits(offset: number, size: number, value: number, at: number, width: number): number {
    let out = 0;
    for (let i = 0; i < width; i++) {
      const o = at + i;
      if (o < offset || o >= offset + size) continue;
      out |= (((value >>> (8 * (o - offset))) & (this.womask[o] as number)) & 0xff) << (8 * i);
    }
    return out >>> 0;
  }

  /** Raw byte read (the function's own view). */
  get8(offset: number): number {
    return this.bytes[offset] as number;
  }

  /** Raw 16-bit read. */
  get16(offset: number): number {
    return (this.bytes[offset] as number) | ((this.bytes[offset + 1] as number) << 8);
  }

  /** Raw 32-bit read. */
  get32(offset: number): number {
    return this.read(offset, 4);
  }

  /** Raw byte write, bypassing masks (hardware-owned bits). */
  set8(offset: number, v: number): void {
    this.bytes[offset] = v;
  }

  /** Raw 16-bit write, bypassing masks. */
  set16(offset: number, v: number): void {
    this.bytes[offset] = v;
    this.bytes[offset + 1] = v >>> 8;
  }

  /** Raw 32-bit write, bypassing masks. */
  set32(offset: number, v: number): void {
    for (let i = 0; i < 4; i++) this.bytes[offset + i] = v >>> (8 * i);
  }

  /** Whether the access `[offset, offset + size)` overlaps `[at, at + width)`. */
  static overlaps(offset: number, size: number, at: number, width: number): boolean {
    return offset < at + width && at < offset + size;
  }
}
