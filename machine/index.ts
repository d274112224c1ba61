/** The board: `createMachine(config)` and its validated configuration. */
export * from './config.ts';
export * from './size.ts';
export * from './machine.ts';
export * from './pci/index.ts';
