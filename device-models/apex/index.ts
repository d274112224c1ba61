/** The Apex (Coral Edge TPU): CSRs, interrupts, SCU reset, gasket page table, instruction queue, commands. */
export * from './regs.ts';
export * from './csr.ts';
export * from './interrupts.ts';
export * from './reset.ts';
export * from './link.ts';
export * from './thermal.ts';
export * from './page-table.ts';
export * from './commands.ts';
export * from './queue.ts';
export * from './device.ts';
export * from './doc.ts';
