/** Device models: the PCI function and the devices built on it. They see only sim/ (a DmaPort, an MsiSink). */
export * from './pci/index.ts';
export * from './edu/index.ts';
export * from './testdev/index.ts';
export * from './apex/index.ts';
