/**
 * dmasim: a full-system simulator of a PCI accelerator behind an IOMMU, with a mock Linux kernel on top.
 * The one public entry point: sim, the machine, the IOMMU hardware and format library (and, as they land,
 * the kernel's process API, and userspace: withMachine).
 */
export * from './sim/index.ts';
export * from './machine/index.ts';
export * from './iommu/index.ts';
export * from './kernel-shim/index.ts';
export * from './userspace/index.ts';
