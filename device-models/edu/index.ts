/** QEMU's educational PCI device: registers, the factorial and interrupt logic, and the DMA engine. */
export * from './regs.ts';
export * from './dma.ts';
export * from './device.ts';
export * from './doc.ts';
