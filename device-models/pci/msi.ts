import { get32, invariant, mask32, set32 } from '../../sim/index.ts';
import { MSI_CONTROL, msiOffsets, type MsiOptions } from './capabilities.ts';
import { ConfigSpace } from './config-space.ts';

/** What the capabilities need from their function: the gated message write and INTx deassertion. */
export interface MessagePath {
  /** Writes `data` at the 64-bit address `hi:lo` through the function's bus-master gate. */
  sendMessage(lo: number, hi: number, data: number, msix: boolean): void;
  /** Drops the INTx request (enabling MSI or MSI-X does this, PCI 3.0 section 6.8.3.3). */
  deassertIntx(): void;
}

const ENABLE = mask32(MSI_CONTROL.ENABLE);

/**
 * MSI (PCI 3.0 section 6.8.1), with QEMU's behaviour (hw/pci/msi.c): a notification of a masked vector sets
 * its pending bit; unmasking a pending vector while MSI is enabled delivers it once; the vector number goes
 * in the low MME bits of the data; MME is clamped to MMC when written larger. The registers live in config
 * space, so a reset of config space resets MSI.
 */
export class Msi {
  /** Offset of the capability in config space. */
  readonly base: number;
  readonly options: MsiOptions;
  readonly #cfg: ConfigSpace;
  readonly #path: MessagePath;
  readonly #data: number;
  readonly #mask: number;
  readonly #pending: number;

  constructor(cfg: ConfigSpace, base: number, options: MsiOptions, path: MessagePath) {
    this.#cfg = cfg;
    this.base = base;
    this.options = options;
    this.#path = path;
    const o = msiOffsets(options);
    this.#data = base + o.data;
    this.#mask = base + o.mask;
    this.#pending = base + o.pending;
  }

  /** Whether the driver enabled MSI. */
  get enabled(): boolean {
    return (this.#cfg.get16(this.base + 2) & ENABLE) !== 0;
  }

  /** Vectors the driver granted (1 << MME). */
  get vectorsEnabled(): number {
    return 1 << get32(this.#cfg.get16(this.base + 2), MSI_CONTROL.MME);
  }

  /** Whether vector `v` is masked by its per-vector mask bit (always false without masking). */
  isMasked(v: number): boolean {
    return this.options.perVectorMask && ((this.#cfg.get32(this.#mask) >>> v) & 1) === 1;
  }

  /** The pending bits (0 without masking). */
  get pending(): number {
    return this.options.perVectorMask ? this.#cfg.get32(this.#pending) : 0;
  }

  /**
   * Signals vector `v` (below the capability's vector count; a larger one is a device-model bug). With fewer
   * vectors granted, vectors alias onto the granted ones, as the data's low bits can only carry those.
   * The device calls this only while MSI is enabled, as QEMU's devices do.
   */
  notify(v: number): void {
    invariant(v >= 0 && v < this.options.vectors, () => `MSI vector ${v} out of range (${this.options.vectors})`);
    const n = this.vectorsEnabled;
    const vec = v & (n - 1);
    if (this.isMasked(vec)) {
      this.#cfg.set32(this.#pending, (this.#cfg.get32(this.#pending) | (1 << vec)) >>> 0);
      return;
    }
    this.#send(vec, n);
  }

  #send(vec: number, n: number): void {
    const cfg = this.#cfg;
    const lo = cfg.get32(this.base + 4);
    const hi = this.options.addr64 ? cfg.get32(this.base + 8) : 0;
    let data = cfg.get16(this.#data);
    if (n > 1) data = (data & ~(n - 1)) | vec;
    this.#path.sendMessage(lo, hi, data, false);
  }

  /** Config-space write hook for a guest write of `[offset, offset + size)` (msi_write_config). */
  afterWrite(offset: number, size: number): void {
    const o = msiOffsets(this.options);
    if (!ConfigSpace.overlaps(offset, size, this.base, o.length) || !this.enabled) return;
    this.#path.deassertIntx();
    const cfg = this.#cfg;
    const ctl = cfg.get16(this.base + 2);
    const mmc = get32(ctl, MSI_CONTROL.MMC);
    if (get32(ctl, MSI_CONTROL.MME) > mmc) cfg.set16(this.base + 2, set32(ctl, MSI_CONTROL.MME, mmc));
    if (!this.options.perVectorMask) return;
    const n = this.vectorsEnabled;
    // Pending bits of vectors no longer granted are discarded; unmasked pending ones are delivered.
    let pending = cfg.get32(this.#pending) & (n === 32 ? 0xffffffff : (1 << n) - 1);
    cfg.set32(this.#pending, pending >>> 0);
    for (let v = 0; v < n; v++) {
      if (((pending >>> v) & 1) === 0 || this.isMasked(v)) continue;
      pending &= ~(1 << v);
      cfg.set32(this.#pending, pending >>> 0);
      this.#send(v, n);
    }
  }
}
