import { bit, bits, mask32, type PhysicalMemory } from '../../sim/index.ts';
import { SL_PTE_PS, SL_PTE_R, SL_PTE_W, slEntryAddr } from '../format/vtd-sl-entry.ts';
import { FaultReason } from './faults.ts';

/**
 * The hardware's table walk in legacy mode: root entry (by bus) -> context entry (by devfn) -> second-level
 * page table, every entry read from {@link PhysicalMemory} as 32-bit halves. Allocation-free: results go into
 * caller-owned records, and an optional {@link WalkRecorder} sees each entry read (the trace, the explainer).
 */

/** Root entry, legacy mode (128 bits; the upper 64 are reserved). Bits as VT-d 9.1 numbers them. */
export const RootEntry = {
  P: bit(0),
  /** Context-table pointer, bits 63:12. */
  CTP: bits(63, 12),
} as const;

/** Context entry, legacy mode (128 bits). Bits 127:64 are numbered 63:0 of the `hi` quadword here. */
export const ContextEntry = {
  P: bit(0),
  /** Fault processing disable. */
  FPD: bit(1),
  /** Translation type: 0 multi-level, 1 multi-level with device IOTLB, 2 pass-through. */
  TT: bits(3, 2),
  /** Second-level page-table pointer, bits 63:12. */
  SLPTPTR: bits(63, 12),
  /** In `hi`: adjusted guest address width, 1 = 39-bit (3 levels), 2 = 48-bit (4 levels). */
  AW: bits(2, 0),
  /** In `hi`: domain id. */
  DID: bits(23, 8),
} as const;

/** Translation types of {@link ContextEntry.TT}. */
export const TranslationType = { MULTI_LEVEL: 0, DEV_IOTLB: 1, PASS_THROUGH: 2 } as const;

const P = mask32(RootEntry.P);
const CE_FPD = mask32(ContextEntry.FPD);
const ADDR_LO = 0xffff_f000;
/** Root entry lo bits 11:1, context entry lo bits 11:4: reserved. */
const ROOT_RSVD_LO = 0xffe;
const CE_RSVD_LO = 0xff0;
/** Context hi bits 31:24 and 7 reserved; AVAIL 6:3 ignored. */
const CE_RSVD_HI = 0xff00_0080;
/** Second-level entry hi bits 63 and 61:52 are ignored; 62 (TM) is reserved without device-TLB support. */
const PTE_IGNORED_HI = 0xbff0_0000;
/** Reserved `lo` bits of a superpage leaf at level 2 (address bits 20:12) and level 3 (29:12). */
const PTE_RSVD_LO_2M = 0x001f_f000;
const PTE_RSVD_LO_1G = 0x3fff_f000;

/** Kinds of entry a {@link WalkRecorder} sees. */
export const EntryKind = { ROOT: 0, CONTEXT: 1, PTE: 2 } as const;

/**
 * Observer of each entry read. `w2`/`w3` are the upper quadword's halves of 128-bit root and context entries
 * (0 for page-table entries); `level` is the page-table level (0 for root and context).
 */
export interface WalkRecorder {
  entry(kind: number, level: number, index: number, addr: number, w0: number, w1: number, w2: number, w3: number): void;
}

/** Decoded context entry: the outcome of {@link readContext}. */
export class ContextResult {
  /** 0 on success, else the fault reason. */
  fault = 0;
  /** FPD of the context entry read (meaningful even when not present, as VT-d and QEMU honour it). */
  fpd = false;
  did = 0;
  tt = 0;
  /** Page-table levels: 3 or 4. */
  levels = 0;
  /** Adjusted guest address width in bits (39 or 48). */
  agaw = 0;
  /** Second-level page-table root. */
  ptr = 0;
  /** Entries read from memory. */
  reads = 0;
}

/** Outcome of {@link walkSecondLevel}. */
export class WalkResult {
  /** 0 on success, else the fault reason. */
  fault = 0;
  /** Physical address of the start of the page (or superpage) that maps the IOVA. */
  pageBase = 0;
  /** IOVA of the start of that page. */
  iovaBase = 0;
  /** Level of the leaf: 1 (4 KiB), 2 (2 MiB) or 3 (1 GiB). */
  level = 0;
  /** R (bit 0) and W (bit 1) granted by every level. */
  perm = 0;
  /** Physical address of the leaf entry. */
  leafAddr = 0;
  /** Entries read from memory. */
  reads = 0;
}

/** Per-unit parameters of the walk. */
export interface WalkParams {
  /** Mask of valid address bits 51:32 in an entry's upper half: bits above the host address width are reserved. */
  readonly hawHiMask: number;
  /** CAP.SAGAW: bit n set when AW = n is supported. */
  readonly sagaw: number;
}

/**
 * Reads the root and context entries for `rid` from the root table at `root` (-1 when the latched root
 * pointer is invalid) into `out`. Returns whether a usable context was found; otherwise `out.fault` says why.
 */
export function readContext(mem: PhysicalMemory, p: WalkParams, root: number, rid: number, out: ContextResult, rec: WalkRecorder | null): boolean {
  out.reads = 0;
  out.fpd = false;
  const bus = rid >>> 8;
  const devfn = rid & 0xff;
  const ra = root + bus * 16;
  if (root < 0 || ra + 16 > mem.size) return fail(out, FaultReason.ROOT_TABLE_INV);
  const r0 = mem.read32(ra);
  const r1 = mem.read32(ra + 4);
  const r2 = mem.read32(ra + 8);
  const r3 = mem.read32(ra + 12);
  out.reads++;
  if (rec !== null) rec.entry(EntryKind.ROOT, 0, bus, ra, r0, r1, r2, r3);
  if ((r0 & P) === 0) return fail(out, FaultReason.ROOT_ENTRY_P);
  if ((r0 & ROOT_RSVD_LO) !== 0 || (r1 & ~p.hawHiMask) !== 0 || r2 !== 0 || r3 !== 0) return fail(out, FaultReason.ROOT_ENTRY_RSVD);
  const ca = slEntryAddr(r0 & ADDR_LO, r1) + devfn * 16;
  if (ca + 16 > mem.size) return fail(out, FaultReason.CONTEXT_TABLE_INV);
  const c0 = mem.read32(ca);
  const c1 = mem.read32(ca + 4);
  const c2 = mem.read32(ca + 8);
  const c3 = mem.read32(ca + 12);
  out.reads++;
  if (rec !== null) rec.entry(EntryKind.CONTEXT, 0, devfn, ca, c0, c1, c2, c3);
  out.fpd = (c0 & CE_FPD) !== 0;
  if ((c0 & P) === 0) return fail(out, FaultReason.CONTEXT_ENTRY_P);
  if ((c0 & CE_RSVD_LO) !== 0 || (c1 & ~p.hawHiMask) !== 0 || (c2 & CE_RSVD_HI) !== 0 || c3 !== 0) {
    return fail(out, FaultReason.CONTEXT_ENTRY_RSVD);
  }
  const aw = c2 & 7;
  const tt = (c0 >>> 2) & 3;
  if ((p.sagaw & (1 << aw)) === 0) return fail(out, FaultReason.CONTEXT_ENTRY_INV);
  if (tt !== TranslationType.MULTI_LEVEL && tt !== TranslationType.PASS_THROUGH) return fail(out, FaultReason.CONTEXT_ENTRY_INV);
  out.fault = 0;
  out.tt = tt;
  out.did = (c2 >>> 8) & 0xffff;
  out.levels = aw + 2;
  out.agaw = 30 + 9 * aw;
  out.ptr = slEntryAddr(c0 & ADDR_LO, c1);
  return true;
}

function fail(out: { fault: number }, reason: number): false {
  out.fault = reason;
  return false;
}

/** Index bits of `iova` (given as its 32-bit halves) for page-table `level`. */
export function levelIndex(lo: number, hi: number, level: number): number {
  switch (level) {
    case 1:
      return (lo >>> 12) & 511;
    case 2:
      return (lo >>> 21) & 511;
    case 3:
      return ((lo >>> 30) | (hi << 2)) & 511;
    default:
      return (hi >>> (7 + 9 * (level - 4))) & 511;
  }
}

/**
 * Walks the second-level table at `ptr` with `levels` levels for `iova` (below 2^AGAW: the caller checks the
 * width) and an access needing `need` (R = 1, W = 2). Permissions stack: every level must grant `need`.
 * Returns whether the walk reached a leaf; otherwise `out.fault` says why.
 */
export function walkSecondLevel(
  mem: PhysicalMemory,
  p: WalkParams,
  ptr: number,
  levels: number,
  iova: number,
  need: number,
  out: WalkResult,
  rec: WalkRecorder | null,
): boolean {
  const lo = iova >>> 0;
  const hi = (iova - lo) / 0x1_0000_0000;
  const rsvdHi = ~(p.hawHiMask | PTE_IGNORED_HI);
  let table = ptr;
  let perm = SL_PTE_R | SL_PTE_W;
  out.reads = 0;
  for (let level = levels; level >= 1; level--) {
    const idx = levelIndex(lo, hi, level);
    const ea = table + idx * 8;
    // A top-level pointer that cannot be read is a bad context entry; a lower one, a bad next-level pointer.
    if (ea + 8 > mem.size) return fail(out, level === levels ? FaultReason.CONTEXT_ENTRY_INV : FaultReason.PAGING_ENTRY_INV);
    const e0 = mem.read32(ea);
    const e1 = mem.read32(ea + 4);
    out.reads++;
    if (rec !== null) rec.entry(EntryKind.PTE, level, idx, ea, e0, e1, 0, 0);
    perm &= e0;
    if ((e0 & need) === 0) return fail(out, need === SL_PTE_W ? FaultReason.WRITE : FaultReason.READ);
    const leaf = level === 1 || ((e0 & SL_PTE_PS) !== 0 && level <= 3);
    let rsvdLo = 0;
    if (level === 4 || level === 5) rsvdLo = SL_PTE_PS;
    else if (leaf && level === 2) rsvdLo = PTE_RSVD_LO_2M;
    else if (leaf && level === 3) rsvdLo = PTE_RSVD_LO_1G;
    if ((e0 & rsvdLo) !== 0 || (e1 & rsvdHi) !== 0) return fail(out, FaultReason.PAGING_ENTRY_RSVD);
    if (leaf) {
      out.fault = 0;
      out.level = level;
      out.perm = perm & (SL_PTE_R | SL_PTE_W);
      out.pageBase = slEntryAddr(e0, e1);
      out.leafAddr = ea;
      // The page's IOVA base: clear the offset bits (12, 21 or 30 of them, all within the low half).
      const offMask = level === 1 ? 0xfff : level === 2 ? 0x1f_ffff : 0x3fff_ffff;
      out.iovaBase = iova - (lo & offMask);
      return true;
    }
    table = slEntryAddr(e0, e1);
  }
  return fail(out, FaultReason.PAGING_ENTRY_INV);
}
