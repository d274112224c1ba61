/**
 * The uAPI as data: request-number helpers, struct layouts and their codec, and one table per Linux header
 * (spec/linux-uapi.md). Drivers in the kernel and user-space code import from here.
 */
export * from './ioctl.ts';
export * from './layout.ts';
export * from './codec.ts';
export * from './capchain.ts';
export * from './registry.ts';
export * from './linux.ts';
export * from './vfio.ts';
export * from './iommufd.ts';
export * from './dma-buf.ts';
export * from './uio.ts';
export * from './testdev.ts';
