/** Intel VT-d DMA-remapping hardware (legacy mode, second-level translation). */
export * from './regs.ts';
export * from './faults.ts';
export * from './options.ts';
export * from './walker.ts';
export * from './iotlb.ts';
export * from './qi.ts';
export * from './fault-log.ts';
export * from './register-file.ts';
export * from './explain.ts';
export * from './unit.ts';
export * from './port.ts';
export * from './readme.ts';
export * from './example.ts';
