import { _IOWR } from './ioctl.ts';
import { struct, type IoctlDef } from './layout.ts';

/**
 * UIO has no ioctls in mainline Linux (`/dev/uioN` is read/write/poll/mmap only). This records the 2019
 * dma-buf import RFC that was never merged (spec/linux-uapi.md section 5.5: Hyun Kwon, Xilinx tree,
 * `include/uapi/linux/uio/uio.h`), for scenarios that show why it was refused.
 */

/** `struct uio_dmabuf_args` (RFC; `dma_addr` is written back). */
export const uio_dmabuf_args = struct('uio_dmabuf_args', [
  ['dbuf_fd', 's32'], ['dma_addr', 'u64'], ['size', 'u64'], ['dir', 'u32'],
], { expectSize: 32 });

/** RFC request numbers. */
export const UIO_IOC = {
  /** `UIO_IOC_MAP_DMABUF` = `_IOWR('U', 1, struct uio_dmabuf_args)`. */
  MAP_DMABUF: _IOWR('U', 1, uio_dmabuf_args.size),
  /** `UIO_IOC_UNMAP_DMABUF` = `_IOWR('U', 2, struct uio_dmabuf_args)`. */
  UNMAP_DMABUF: _IOWR('U', 2, uio_dmabuf_args.size),
} as const;

/** `uio_dmabuf_args.dir` (RFC). */
export const UIO_DMABUF_DIR = { BIDIR: 1, TO_DEV: 2, FROM_DEV: 3, NONE: 4 } as const;

/** The RFC's ioctls, for the ioctl registry. */
export const UIO_IOCTLS: readonly IoctlDef[] = [
  { name: 'UIO_IOC_MAP_DMABUF', request: UIO_IOC.MAP_DMABUF, arg: 'struct', layout: uio_dmabuf_args, fd: 'uio' },
  { name: 'UIO_IOC_UNMAP_DMABUF', request: UIO_IOC.UNMAP_DMABUF, arg: 'struct', layout: uio_dmabuf_args, fd: 'uio' },
];
