/**
 * VT-d DMA-remapping fault reasons (VT-d spec appendix A; the names QEMU's VTDFaultReason uses, the texts
 * Linux's drivers/iommu/intel/dmar.c `dma_remap_fault_reasons` prints).
 */
export const FaultReason = {
  /** The Present field of the root entry for the requester's bus is clear. */
  ROOT_ENTRY_P: 0x1,
  /** The Present field of the context entry for the requester's devfn is clear. */
  CONTEXT_ENTRY_P: 0x2,
  /** Invalid context entry: unsupported AW or TT, or its second-level table pointer cannot be read. */
  CONTEXT_ENTRY_INV: 0x3,
  /** The address is above 2^min(AGAW, MGAW) - 1. */
  ADDR_BEYOND_MGAW: 0x4,
  /** A write through an entry without W (a not-present entry included). */
  WRITE: 0x5,
  /** A read through an entry without R (a not-present entry included). */
  READ: 0x6,
  /** A non-top-level paging entry cannot be read: the next-level pointer is beyond memory. */
  PAGING_ENTRY_INV: 0x7,
  /** The root entry cannot be read: the root table address is beyond memory or the host address width. */
  ROOT_TABLE_INV: 0x8,
  /** The context entry cannot be read: the context-table pointer is beyond memory. */
  CONTEXT_TABLE_INV: 0x9,
  /** A reserved field of a present root entry is set. */
  ROOT_ENTRY_RSVD: 0xa,
  /** A reserved field of a present context entry is set. */
  CONTEXT_ENTRY_RSVD: 0xb,
  /** A reserved field of a present (R or W) second-level paging entry is set. */
  PAGING_ENTRY_RSVD: 0xc,
} as const;
/** A value of {@link FaultReason}. */
export type FaultReason = (typeof FaultReason)[keyof typeof FaultReason];

/** Linux's text for each DMA-remapping fault reason, indexed by code. */
export const FAULT_REASON_TEXT: readonly string[] = [
  'Software',
  'Present bit in root entry is clear',
  'Present bit in context entry is clear',
  'Invalid context entry',
  'Access beyond MGAW',
  'PTE Write access is not set',
  'PTE Read access is not set',
  'Next page table ptr is invalid',
  'Root table address invalid',
  'Context table ptr is invalid',
  'non-zero reserved fields in RTP',
  'non-zero reserved fields in CTP',
  'non-zero reserved fields in PTE',
  'PCE for translation request specifies blocking',
];

/** The text for fault reason `code` ('Unknown' outside the table). */
export function faultReasonText(code: number): string {
  return FAULT_REASON_TEXT[code] ?? 'Unknown';
}

/**
 * Whether a fault with reason `code` is "qualified": recorded only when the context entry's FPD is clear
 * (VT-d 7.1.3; QEMU's vtd_qualified_faults). Faults found before a context entry is read never are.
 */
export function isQualifiedFault(code: number): boolean {
  return code >= FaultReason.CONTEXT_ENTRY_P && code <= FaultReason.PAGING_ENTRY_INV || code === FaultReason.PAGING_ENTRY_RSVD;
}
