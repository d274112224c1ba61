/** The machine's PCI side: topology and isolation graph, firmware's BAR assignment, MMIO routing, DMA path, interrupts. */
export * from './schema.ts';
export * from './topology.ts';
export * from './bar-assign.ts';
export * from './mmio-router.ts';
export * from './dma-path.ts';
export * from './intc.ts';
export * from './bus.ts';
