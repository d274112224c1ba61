/** The PCI function: configuration space, capabilities, BARs, MSI, MSI-X, INTx, bus-master gating, resets. */
export * from './regs.ts';
export * from './config-space.ts';
export * from './capabilities.ts';
export * from './bar.ts';
export * from './mmio.ts';
export * from './guest-errors.ts';
export * from './gate.ts';
export * from './msi.ts';
export * from './msix.ts';
export * from './spec.ts';
export * from './bar-dispatch.ts';
export * from './function.ts';
export * from './standalone.ts';
export * from './doc-table.ts';
