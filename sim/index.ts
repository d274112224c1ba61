/** The discrete-event core: time, events, processes, randomness, memory, the DMA and MSI interfaces, traces. */
export * from './errors.ts';
export * from './bits.ts';
export * from './range.ts';
export * from './rng.ts';
export * from './dma.ts';
export * from './memory.ts';
export * from './frames.ts';
export * from './identity-port.ts';
export * from './trace.ts';
export * from './scheduler.ts';
export * from './process.ts';
export * from './trace-chrome.ts';
