/**
 * dmasim: a full-system simulator of a PCI accelerator behind an IOMMU, with a mock Linux kernel on top.
 * The one public entry point: sim, machine, the kernel's process API and userspace.
 */
export * from './sim/index.ts';
