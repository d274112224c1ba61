/** dmasim's PCI test device: every BAR kind, MSI, MSI-X, PM and FLR behind simple registers. */
export * from './regs.ts';
export * from './device.ts';
export * from './doc.ts';
