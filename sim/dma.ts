/**
 * The consumer-side interfaces of the DMA and interrupt paths (DESIGN.md "Interfaces between the parts").
 * Devices take a {@link DmaPort}; the machine composes ports (function gate -> root complex -> IOMMU or
 * identity -> memory). Every call is synchronous and allocation-free: results go into a caller-owned
 * {@link DmaResult} that the initiator reuses.
 */

/** Outcome of a DMA access. */
export const DmaStatus = {
  /** Every byte moved. */
  OK: 0,
  /** The IOMMU refused the access (translation or permission fault); `faultReason` says why. */
  FAULT: 1,
  /** No completer: address outside memory, bus mastering off, or a request the fabric cannot route. */
  UNSUPPORTED: 2,
} as const;
/** A value of {@link DmaStatus}. */
export type DmaStatus = (typeof DmaStatus)[keyof typeof DmaStatus];

/**
 * The caller-owned record a {@link DmaPort} fills. Ports overwrite `status`, `bytesDone`, `faultAddr`,
 * `faultAddrWide` and `faultReason`, and *add* the virtual time they took to `costNs`, which the initiator
 * zeroes before the access (so composed stages sum their costs).
 */
export interface DmaResult {
  status: DmaStatus;
  /** Bytes moved before the first failing page (all of them on success). */
  bytesDone: number;
  /** Bus address of the first failing byte as a `number` (-1 when it does not fit below 2^53). */
  faultAddr: number;
  /** The exact bus address of the first failing byte. Only meaningful when `status !== OK`. */
  faultAddrWide: bigint;
  /** Fault reason code of the port that refused (for the IOMMU: VT-d's fault reason), 0 if none. */
  faultReason: number;
  /** Virtual nanoseconds the access took, accumulated across stages. */
  costNs: number;
}

/** A fresh, zeroed result record. Allocate once per initiator and reuse it. */
export function createDmaResult(): DmaResult {
  return { status: DmaStatus.OK, bytesDone: 0, faultAddr: 0, faultAddrWide: 0n, faultReason: 0, costNs: 0 };
}

/** Zeroes a result record before an access. */
export function resetDmaResult(res: DmaResult): void {
  res.status = DmaStatus.OK;
  res.bytesDone = 0;
  res.faultAddr = 0;
  res.faultAddrWide = 0n;
  res.faultReason = 0;
  res.costNs = 0;
}

/** Records a failure at bus address `addr` in `res`. */
export function failDma(res: DmaResult, status: DmaStatus, addr: number, reason: number, bytesDone: number): void {
  res.status = status;
  res.bytesDone = bytesDone;
  res.faultAddr = addr;
  res.faultAddrWide = BigInt(addr);
  res.faultReason = reason;
}

/** Records a failure at a bus address that may be wider than 2^53. */
export function failDmaWide(res: DmaResult, status: DmaStatus, addr: bigint, reason: number): void {
  res.status = status;
  res.bytesDone = 0;
  res.faultAddr = addr <= 9007199254740991n ? Number(addr) : -1;
  res.faultAddrWide = addr;
  res.faultReason = reason;
}

/**
 * A bus a device masters: reads and writes at bus addresses on behalf of a PCI requester id
 * (`bus << 8 | devfn`). `addr` is below 2^53; wider addresses use the `Wide` variants, which never move
 * data for addresses at or past 2^53 but fault and record the exact value.
 */
export interface DmaPort {
  read(requester: number, addr: number, dst: Uint8Array, dstOff: number, len: number, res: DmaResult): void;
  write(requester: number, addr: number, src: Uint8Array, srcOff: number, len: number, res: DmaResult): void;
  readWide(requester: number, addr: bigint, dst: Uint8Array, dstOff: number, len: number, res: DmaResult): void;
  writeWide(requester: number, addr: bigint, src: Uint8Array, srcOff: number, len: number, res: DmaResult): void;
}

/**
 * Sees device DMA where it reaches `PhysicalMemory`: after the IOMMU (or the identity path) and the
 * root complex, so `addr` is physical and `requester` the id the root complex saw (an alias behind a
 * bridge). Called once per contiguous piece that moved, only for bytes that really moved (a faulting page,
 * the interrupt window or an address past memory never reaches it). The IOMMU's own table walks and
 * status writes and the CPU's accesses are not DMA and are not reported. Attach one with
 * `PhysicalMemory.observeDma`; the hot path pays one null check when none is attached.
 */
export interface DmaObserver {
  /** `len` (> 0) bytes at physical `addr` were read (`write` false) or written by `requester`. */
  dmaAccess(requester: number, addr: number, len: number, write: boolean): void;
}

/** The first bus address of the interrupt window (x86 MSI address range 0xFEE00000-0xFEEFFFFF). */
export const MSI_WINDOW_START = 0xfee0_0000;
/** The last bus address of the interrupt window, inclusive. */
export const MSI_WINDOW_LAST = 0xfeef_ffff;

/** Receives memory writes into the interrupt window: a message-signalled interrupt. */
export interface MsiSink {
  /** `address` is the written bus address in the window, `data` the 32-bit message data. */
  msi(requester: number, address: number, data: number): void;
}
