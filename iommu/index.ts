/**
 * The IOMMU: Intel VT-d hardware (`vtd/`), the page-table format library the kernel's driver writes tables
 * with (`format/`), and IOMMU group computation over the machine's isolation graph (`groups.ts`).
 */
export * from './vtd/index.ts';
export * from './format/index.ts';
export * from './groups.ts';
