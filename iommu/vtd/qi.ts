import { bit, bits, mask32, type PhysicalMemory } from '../../sim/index.ts';
import { MAMV } from './regs.ts';

/**
 * Queued invalidation (VT-d 6.5.2): 128-bit descriptors in a ring at IQA, consumed from IQH up to IQT.
 * Descriptor fields below are numbered within the low (`lo`) or high (`hi`) quadword.
 */
export const InvDesc = {
  /** Descriptor type, bits 3:0 of `lo`. */
  TYPE: bits(3, 0),
  /** Granularity, bits 5:4 of `lo` (context-cache: 1 global, 2 domain, 3 device; IOTLB: 1 global, 2 domain, 3 page). */
  G: bits(5, 4),
  /** Domain id, bits 31:16 of `lo`. */
  DID: bits(31, 16),
  /** Context-cache: source id, bits 47:32 of `lo`. */
  CC_SID: bits(47, 32),
  /** Context-cache: function mask, bits 49:48 of `lo`. */
  CC_FM: bits(49, 48),
  /** IOTLB: drain reads / writes, bits 7 and 6 of `lo`. */
  IOTLB_DR: bit(7),
  IOTLB_DW: bit(6),
  /** IOTLB page-selective: address mask bits 5:0, invalidation hint bit 6, address 63:12 of `hi`. */
  IOTLB_AM: bits(5, 0),
  IOTLB_IH: bit(6),
  IOTLB_ADDR: bits(63, 12),
  /** Wait: interrupt flag, status write, fence (bits 4, 5, 6 of `lo`); status data 63:32 of `lo`. */
  WAIT_IF: bit(4),
  WAIT_SW: bit(5),
  WAIT_FN: bit(6),
  WAIT_DATA: bits(63, 32),
  /** Wait: status address, bits 63:2 of `hi`. */
  WAIT_ADDR: bits(63, 2),
} as const;

/** Descriptor types this unit implements (legacy mode, no device-TLB, no interrupt remapping). */
export const InvDescType = { CONTEXT_CACHE: 1, IOTLB: 2, WAIT: 5 } as const;

const G_MASK = mask32(InvDesc.G);
const WAIT_IF = mask32(InvDesc.WAIT_IF);
const WAIT_SW = mask32(InvDesc.WAIT_SW);
const AM_MASK = mask32(InvDesc.IOTLB_AM);
const IH_MASK = mask32(InvDesc.IOTLB_IH);
/** Reserved bits (as QEMU's VTD_INV_DESC_*_RSVD masks), split into the four dwords lo0, lo1, hi0, hi1. */
const CC_RSVD_LO0 = 0x0000_ffc0;
const CC_RSVD_LO1 = 0xfffc_0000;
const IOTLB_RSVD_LO0 = 0x0000_ff00;
const IOTLB_RSVD_HI0 = 0x0000_0f80;
const WAIT_RSVD_LO0 = 0xffff_ff80;
const WAIT_RSVD_HI0 = 0x0000_0003;

/** What processing a descriptor needs from the unit. */
export interface QiHost {
  readonly mem: PhysicalMemory;
  /** Context-cache invalidation: granularity 1 global, 2 domain `did`, 3 device `sid` with function mask `fm`. */
  invalidateContext(g: number, did: number, sid: number, fm: number): void;
  /** IOTLB invalidation: 1 global, 2 domain, 3 the 2^am pages at `addr` in domain `did`. */
  invalidateIotlb(g: number, did: number, addr: number, am: number, ih: boolean): void;
  /** The invalidation-completion event (ICS.IWC, IECTL). */
  completion(): void;
  /** Emits a trace record of a processed descriptor (only called while the trace is active). */
  traceDescriptor(index: number, type: number, ok: boolean, lo0: number, lo1: number, hi0: number, hi1: number): void;
}

/**
 * Executes the descriptor `lo0, lo1, hi0, hi1` (dwords in ring order). Returns false for a malformed one
 * (unknown type, reserved bits, an AM beyond MAMV, a status write outside memory): the caller raises IQE.
 */
export function executeDescriptor(h: QiHost, lo0: number, lo1: number, hi0: number, hi1: number): boolean {
  const type = lo0 & 0xf;
  const g = (lo0 & G_MASK) >>> 4;
  const did = lo0 >>> 16;
  switch (type) {
    case InvDescType.CONTEXT_CACHE:
      if ((lo0 & CC_RSVD_LO0) !== 0 || (lo1 & CC_RSVD_LO1) !== 0 || hi0 !== 0 || hi1 !== 0 || g === 0) return false;
      h.invalidateContext(g, did, lo1 & 0xffff, (lo1 >>> 16) & 3);
      return true;
    case InvDescType.IOTLB: {
      if ((lo0 & IOTLB_RSVD_LO0) !== 0 || lo1 !== 0 || (hi0 & IOTLB_RSVD_HI0) !== 0 || g === 0) return false;
      const am = hi0 & AM_MASK;
      if (g === 3 && am > MAMV) return false;
      h.invalidateIotlb(g, did, hi1 * 0x1_0000_0000 + ((hi0 & 0xffff_f000) >>> 0), am, (hi0 & IH_MASK) !== 0);
      return true;
    }
    case InvDescType.WAIT: {
      if ((lo0 & WAIT_RSVD_LO0) !== 0 || (hi0 & WAIT_RSVD_HI0) !== 0) return false;
      if ((lo0 & WAIT_SW) !== 0) {
        const addr = hi1 * 0x1_0000_0000 + ((hi0 & 0xffff_fffc) >>> 0);
        if (addr + 4 > h.mem.size) return false;
        h.mem.write32(addr, lo1);
      }
      // VT-d allows SW and IF together (QEMU does not); FN needs nothing more, as descriptors run in order.
      if ((lo0 & WAIT_IF) !== 0) h.completion();
      return true;
    }
    default:
      return false;
  }
}
