import { _IOW, _IOWR } from './ioctl.ts';
import { struct, type IoctlDef } from './layout.ts';

/**
 * `include/uapi/linux/dma-buf.h`, `dma-heap.h` and `udmabuf.h` (spec/linux-uapi.md section 6). These carry
 * their size in the request number (`_IOW`/`_IOWR`), so each struct has the `'fixed'` convention.
 */

/** `DMA_BUF_BASE` (`'b'`). */
export const DMA_BUF_BASE = 0x62;
/** `DMA_HEAP_IOC_MAGIC` (`'H'`). */
export const DMA_HEAP_IOC_MAGIC = 0x48;
/** udmabuf's type byte (`'u'`). */
export const UDMABUF_TYPE = 0x75;

/** `struct dma_buf_sync`. */
export const dma_buf_sync = struct('dma_buf_sync', [['flags', 'u64']], { expectSize: 8 });

/** `struct dma_buf_export_sync_file` (`fd` is written back). */
export const dma_buf_export_sync_file = struct('dma_buf_export_sync_file', [['flags', 'u32'], ['fd', 's32']], { expectSize: 8 });

/** `struct dma_buf_import_sync_file`. */
export const dma_buf_import_sync_file = struct('dma_buf_import_sync_file', [['flags', 'u32'], ['fd', 's32']], { expectSize: 8 });

/** `struct dma_heap_allocation_data` (`fd` is written back; it must be 0 on input). */
export const dma_heap_allocation_data = struct('dma_heap_allocation_data', [
  ['len', 'u64'], ['fd', 'u32'], ['fd_flags', 'u32'], ['heap_flags', 'u64'],
], { expectSize: 24 });

/** `struct udmabuf_create`. */
export const udmabuf_create = struct('udmabuf_create', [['memfd', 'u32'], ['flags', 'u32'], ['offset', 'u64'], ['size', 'u64']], { expectSize: 24 });

/** `struct udmabuf_create_item`. */
export const udmabuf_create_item = struct('udmabuf_create_item', [['memfd', 'u32'], ['__pad', 'u32'], ['offset', 'u64'], ['size', 'u64']], { expectSize: 24 });

/** `struct udmabuf_create_list` (`list` holds `count` items). */
export const udmabuf_create_list = struct('udmabuf_create_list', [['flags', 'u32'], ['count', 'u32']], {
  flex: ['list', udmabuf_create_item], expectSize: 8,
});

/** Request numbers. */
export const DMA_BUF = {
  /** `DMA_BUF_IOCTL_SYNC` = `_IOW('b', 0, struct dma_buf_sync)`. */
  IOCTL_SYNC: _IOW(DMA_BUF_BASE, 0, dma_buf_sync.size),
  /** `DMA_BUF_SET_NAME` = `_IOW('b', 1, const char *)`: the argument is a `char *` (pass a NUL-terminated `Uint8Array`). */
  SET_NAME: _IOW(DMA_BUF_BASE, 1, 8),
  /** `DMA_BUF_SET_NAME_A` = `_IOW('b', 1, __u32)`. */
  SET_NAME_A: _IOW(DMA_BUF_BASE, 1, 4),
  /** `DMA_BUF_SET_NAME_B` = `_IOW('b', 1, __u64)`. */
  SET_NAME_B: _IOW(DMA_BUF_BASE, 1, 8),
  /** `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`. */
  IOCTL_EXPORT_SYNC_FILE: _IOWR(DMA_BUF_BASE, 2, dma_buf_export_sync_file.size),
  /** `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`. */
  IOCTL_IMPORT_SYNC_FILE: _IOW(DMA_BUF_BASE, 3, dma_buf_import_sync_file.size),
  /** `DMA_HEAP_IOCTL_ALLOC`. */
  HEAP_IOCTL_ALLOC: _IOWR(DMA_HEAP_IOC_MAGIC, 0, dma_heap_allocation_data.size),
  /** `UDMABUF_CREATE`. */
  UDMABUF_CREATE: _IOW(UDMABUF_TYPE, 0x42, udmabuf_create.size),
  /** `UDMABUF_CREATE_LIST`. */
  UDMABUF_CREATE_LIST: _IOW(UDMABUF_TYPE, 0x43, udmabuf_create_list.size),
} as const;

/** `dma_buf_sync.flags` (START is 0). */
export const DMA_BUF_SYNC = { READ: 1 << 0, WRITE: 2 << 0, RW: 3, START: 0 << 2, END: 1 << 2, VALID_FLAGS_MASK: 0x7 } as const;

/** `udmabuf_create.flags`. */
export const UDMABUF_FLAGS = { CLOEXEC: 0x01 } as const;

/** Every dma-buf, dma-heap and udmabuf ioctl, for the ioctl registry. */
export const DMA_BUF_IOCTLS: readonly IoctlDef[] = [
  { name: 'DMA_BUF_IOCTL_SYNC', request: DMA_BUF.IOCTL_SYNC, arg: 'struct', layout: dma_buf_sync, fd: 'dma-buf' },
  { name: 'DMA_BUF_SET_NAME', request: DMA_BUF.SET_NAME, arg: 'pointer', fd: 'dma-buf' },
  { name: 'DMA_BUF_SET_NAME_A', request: DMA_BUF.SET_NAME_A, arg: 'pointer', fd: 'dma-buf' },
  { name: 'DMA_BUF_IOCTL_EXPORT_SYNC_FILE', request: DMA_BUF.IOCTL_EXPORT_SYNC_FILE, arg: 'struct', layout: dma_buf_export_sync_file, fd: 'dma-buf' },
  { name: 'DMA_BUF_IOCTL_IMPORT_SYNC_FILE', request: DMA_BUF.IOCTL_IMPORT_SYNC_FILE, arg: 'struct', layout: dma_buf_import_sync_file, fd: 'dma-buf' },
  { name: 'DMA_HEAP_IOCTL_ALLOC', request: DMA_BUF.HEAP_IOCTL_ALLOC, arg: 'struct', layout: dma_heap_allocation_data, fd: 'dma-heap' },
  { name: 'UDMABUF_CREATE', request: DMA_BUF.UDMABUF_CREATE, arg: 'struct', layout: udmabuf_create, fd: 'udmabuf' },
  { name: 'UDMABUF_CREATE_LIST', request: DMA_BUF.UDMABUF_CREATE_LIST, arg: 'struct', layout: udmabuf_create_list, fd: 'udmabuf' },
];
