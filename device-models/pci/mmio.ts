/**
 * The device side of a BAR: what a PCI function calls after its own checks (decode enabled, the BAR exists,
 * the access is aligned and inside the BAR, the size is one the device accepts, not the MSI-X table or PBA).
 */

/** Access-size bit for a size in bytes: a handler accepts `size` when `accessSizes & sizeBit(size)`. */
export function sizeBit(size: 1 | 2 | 4 | 8): number {
  return 1 << size;
}

/** Every access size. */
export const ANY_SIZE = (1 << 1) | (1 << 2) | (1 << 4) | (1 << 8);
/** 32-bit accesses only (QEMU `.valid = { .min_access_size = 4, .max_access_size = 4 }`). */
export const SIZE_4 = 1 << 4;
/** 32- and 64-bit accesses. */
export const SIZE_4_8 = (1 << 4) | (1 << 8);

/** A device's registers behind one BAR. Offsets are bytes from the BAR's base. */
export interface MmioHandler {
  /** Bitmask of accepted sizes ({@link sizeBit}); others read all-ones and drop writes, as a guest error. */
  readonly accessSizes: number;
  /** A read of 1, 2 or 4 bytes. */
  read(offset: number, size: number): number;
  /** A write of 1, 2 or 4 bytes (`value` holds the low `8 * size` bits). */
  write(offset: number, size: number, value: number): void;
  /** An 8-byte read. */
  read64(offset: number): bigint;
  /** An 8-byte write (`value` below 2^64). */
  write64(offset: number, value: bigint): void;
}

/** All-ones of `size` bytes: what a read that no device completes returns. */
export function allOnes(size: number): number {
  return size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff;
}

/** All-ones of 8 bytes. */
export const ALL_ONES_64 = 0xffff_ffff_ffff_ffffn;
