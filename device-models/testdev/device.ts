import { DmaStatus, createDmaResult, resetDmaResult, toExactNumber, type Scheduler } from '../../sim/index.ts';
import { ALL_ONES_64, GuestErrors, PciFunction, SIZE_4, allOnes, type MmioHandler, type ResetKind } from '../pci/index.ts';
import { TD, TESTDEV_BUF, TESTDEV_ID, TESTDEV_MSIX_VECTORS, TESTDEV_REGS } from './regs.ts';

/** Options of a test device. */
export interface TestDevOptions {
  readonly name?: string;
  /** Offer Function Level Reset in the PCIe capability (default true). */
  readonly flr?: boolean;
}

const ERRORS = { unhandled: ['offset', 'size'], 'read-only': ['offset'], 'write-only': ['offset'], vector: ['vector'] } as const;

/** Register index per dword of BAR0's first 64 bytes (-1: none). */
const REG_AT = (() => {
  const at = new Int8Array(16).fill(-1);
  TESTDEV_REGS.forEach((r, i) => {
    at[r.offset / 4] = i;
  });
  return at;
})();

/**
 * dmasim's PCI test device (no hardware behind it): a PCI Express endpoint with PM, MSI (4 vectors, per-vector
 * masking), MSI-X ({@link TESTDEV_MSIX_VECTORS} vectors, table at BAR2 + 0, PBA at BAR2 + 0x800) and FLR, and
 * one BAR of every kind: BAR0 32-bit memory 4 KiB (registers), BAR1 I/O 32 bytes, BAR2 64-bit prefetchable
 * 16 KiB (MSI-X), BAR4 64-bit 8 GiB (sizing above 4 GiB). Its registers notify vectors, drive INTx and run
 * immediate DMAs, so tests can exercise every path of the function.
 */
export class TestDevice implements MmioHandler {
  readonly accessSizes = SIZE_4;
  readonly fn: PciFunction;
  readonly errors: GuestErrors<keyof typeof ERRORS>;
  /** The DMA buffer. */
  readonly buffer = new Uint8Array(TESTDEV_BUF);
  /** Resets the device saw, by kind. */
  readonly resets: { reset: number; flr: number } = { reset: 0, flr: 0 };
  readonly #values = new Uint32Array(TESTDEV_REGS.length);
  readonly #res = createDmaResult();

  constructor(sim: Scheduler, options: TestDevOptions = {}) {
    const name = options.name ?? 'testdev';
    this.fn = new PciFunction(sim, {
      name, ...TESTDEV_ID, interruptPin: 1, express: { flr: options.flr ?? true }, pm: true,
      msi: { vectors: 4, addr64: true, perVectorMask: true },
      msix: { vectors: TESTDEV_MSIX_VECTORS, tableBar: 2, tableOffset: 0, pbaBar: 2, pbaOffset: 0x800 },
      bars: [
        { kind: 'mem', size: 4096 },
        { kind: 'io', size: 32 },
        { kind: 'mem', size: 16384, is64: true, prefetchable: true },
        undefined,
        { kind: 'mem', size: 8 * 2 ** 30, is64: true },
      ],
    });
    this.fn.setBarHandler(0, this);
    this.errors = new GuestErrors(sim, name, ERRORS);
    this.fn.onReset = (kind) => this.#reset(kind);
    this.#reset(undefined);
  }

  #reset(kind: ResetKind | undefined): void {
    TESTDEV_REGS.forEach((r, i) => {
      this.#values[i] = r.reset;
    });
    this.buffer.fill(0);
    if (kind !== undefined) this.resets[kind]++;
  }

  /** {@link MmioHandler}. */
  read(offset: number, size: number): number {
    const r = offset < 64 ? (REG_AT[offset >>> 2] as number) : -1;
    if (r < 0) {
      this.errors.report('unhandled', offset, size);
      return allOnes(size);
    }
    if (TESTDEV_REGS[r]?.access === 'WO') {
      this.errors.report('write-only', offset);
      return allOnes(size);
    }
    return this.#values[r] as number;
  }

  /** {@link MmioHandler}. */
  write(offset: number, size: number, value: number): void {
    const r = offset < 64 ? (REG_AT[offset >>> 2] as number) : -1;
    if (r < 0) {
      this.errors.report('unhandled', offset, size);
      return;
    }
    const reg = TESTDEV_REGS[r];
    if (reg?.access === 'RO') {
      this.errors.report('read-only', offset);
      return;
    }
    const v = value >>> 0;
    if (r === TD.MSIX_NOTIFY) this.#notifyMsix(v);
    else if (r === TD.MSI_NOTIFY) this.#notifyMsi(v);
    else if (r === TD.DMA_CMD) this.#dma(v & 3);
    else {
      this.#values[r] = v;
      if (r === TD.INTX) this.fn.setIrq((v & 1) !== 0);
    }
  }

  /** {@link MmioHandler}: 8-byte accesses are refused by {@link accessSizes} before they get here. */
  read64(): bigint {
    return ALL_ONES_64;
  }

  /** {@link MmioHandler}. */
  write64(): void {}

  #notifyMsix(v: number): void {
    if (v >= TESTDEV_MSIX_VECTORS) this.errors.report('vector', v);
    else this.fn.msix?.notify(v);
  }

  #notifyMsi(v: number): void {
    const msi = this.fn.msi;
    if (msi === undefined || v >= msi.options.vectors) this.errors.report('vector', v);
    else if (msi.enabled) msi.notify(v);
  }

  #dma(op: number): void {
    if (op !== 1 && op !== 2) return;
    const len = Math.min(this.#values[TD.DMA_LEN] as number, TESTDEV_BUF);
    const wide = (BigInt(this.#values[TD.DMA_ADDR_HI] as number) << 32n) | BigInt(this.#values[TD.DMA_ADDR_LO] as number);
    const a = toExactNumber(wide);
    const res = this.#res;
    resetDmaResult(res);
    const port = this.fn.dma;
    if (op === 1) {
      if (a >= 0) port.read(0, a, this.buffer, 0, len, res);
      else port.readWide(0, wide, this.buffer, 0, len, res);
    } else if (a >= 0) port.write(0, a, this.buffer, 0, len, res);
    else port.writeWide(0, wide, this.buffer, 0, len, res);
    this.#values[TD.DMA_STATUS] = res.status;
    this.#values[TD.DMA_DONE] = res.status === DmaStatus.OK ? len : res.bytesDone;
  }
}
