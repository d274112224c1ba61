import { bit, bits, mask32 } from '../../sim/index.ts';

/**
 * Intel VT-d second-level paging entries (legacy mode), 64 bits. Every table is a 4 KiB page of 512 entries;
 * a 4-level table translates a 48-bit IOVA with 9 index bits per level above the 12-bit page offset.
 * Level 1 entries map 4 KiB pages; with PS set, a level 2 entry maps 2 MiB and a level 3 entry 1 GiB.
 *
 * The walker (the hardware) and the format library (the driver's io-pgtable) both read entries through
 * this one definition. Entries are handled as two 32-bit halves, `lo` (bits 31:0) and `hi` (bits 63:32),
 * so hot paths never touch `bigint`.
 */
export const SlPte = {
  /** Read permission. */
  R: bit(0),
  /** Write permission. */
  W: bit(1),
  /** Execute permission (unused for DMA here). */
  X: bit(2),
  /** Page size: set in a level-2 or level-3 entry that maps a superpage. */
  PS: bit(7),
  /** Snoop behaviour. */
  SNP: bit(11),
  /** Address bits 31:12 of the next table or page (in `lo`). */
  ADDR_LO: bits(31, 12),
  /** Address bits 51:32 of the next table or page: bits 19:0 of `hi`. */
  ADDR_HI: bits(19, 0),
  /** Transient mapping (bit 62): bit 30 of `hi`. */
  TM_HI: bit(30),
} as const;

/** Masks of {@link SlPte} fields in the `lo` half. */
export const SL_PTE_R = mask32(SlPte.R);
/** Write permission mask in `lo`. */
export const SL_PTE_W = mask32(SlPte.W);
/** Page-size bit mask in `lo`. */
export const SL_PTE_PS = mask32(SlPte.PS);
/** Address mask in `lo` (bits 31:12). */
export const SL_PTE_ADDR_LO = mask32(SlPte.ADDR_LO);
/** Address mask in `hi` (bits 51:32 of the entry). */
export const SL_PTE_ADDR_HI = mask32(SlPte.ADDR_HI);

/** Index bits per level, and entries per table. */
export const SL_LEVEL_BITS = 9;
/** Entries per table page. */
export const SL_ENTRIES = 512;
/** Bytes per entry. */
export const SL_ENTRY_SIZE = 8;

/** Bytes mapped by one entry at `level` (1: 4 KiB, 2: 2 MiB, 3: 1 GiB, 4: 512 GiB). */
export function slLevelSize(level: number): number {
  return 2 ** (12 + SL_LEVEL_BITS * (level - 1));
}

/** Index into the level-`level` table for `iova` (a number below 2^53). */
export function slIndex(iova: number, level: number): number {
  return Math.floor(iova / slLevelSize(level)) % SL_ENTRIES;
}

/** The physical address an entry points at (next table or page), from its halves. */
export function slEntryAddr(lo: number, hi: number): number {
  return (hi & SL_PTE_ADDR_HI) * 0x1_0000_0000 + ((lo & SL_PTE_ADDR_LO) >>> 0);
}

/** Whether an entry is present for VT-d: it grants read or write (second-level has no P bit). */
export function slPresent(lo: number): boolean {
  return (lo & (SL_PTE_R | SL_PTE_W)) !== 0;
}

/** The `lo` half of an entry pointing at physical `addr` with permission bits `perm` (and PS if `superpage`). */
export function slMakeLo(addr: number, perm: number, superpage: boolean): number {
  return ((addr % 0x1_0000_0000) & SL_PTE_ADDR_LO | perm | (superpage ? SL_PTE_PS : 0)) >>> 0;
}

/** The `hi` half of an entry pointing at physical `addr`. */
export function slMakeHi(addr: number): number {
  return Math.floor(addr / 0x1_0000_0000) & SL_PTE_ADDR_HI;
}

/** Snoop bit mask in `lo` (bit 11): set in leaves mapped with `IOMMU_CACHE`. */
export const SL_PTE_SNP = mask32(SlPte.SNP);
