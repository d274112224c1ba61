import { E } from '../errno.ts';
import type { Kernel } from '../kernel.ts';
import { PAGE_SIZE } from '../uapi/linux.ts';

/**
 * Kernel memory a driver exposes through UIO as `LOGICAL`, `VIRTUAL` or `DMA_COHERENT` (Linux
 * `kzalloc` / `vzalloc` / `dma_alloc_coherent` buffers): page frames of physical memory, zeroed, with
 * their bytes in one buffer. The kernel holds one reference on each frame; each user mapping takes its
 * own, so a mapping outlives {@link freeKernelPages} as a Linux page would.
 */
export interface KernelPages {
  /** The pages' bytes, page after page. */
  readonly buffer: ArrayBuffer;
  /** The frame of each page (physically scattered, as `vmalloc` memory is). */
  readonly frames: Int32Array;
  /** Bytes allocated (a multiple of the page size). */
  readonly size: number;
}

/** Allocates `size` bytes (rounded up to pages) of zeroed kernel memory, or `-ENOMEM`. */
export function allocKernelPages(kernel: Kernel, size: number): KernelPages | number {
  if (!(Number.isSafeInteger(size) && size > 0)) return E.EINVAL;
  const n = Math.ceil(size / PAGE_SIZE);
  const buffer = new ArrayBuffer(n * PAGE_SIZE);
  const frames = new Int32Array(n).fill(-1);
  for (let i = 0; i < n; i++) {
    const f = kernel.userPages.alloc(new Uint8Array(buffer, i * PAGE_SIZE, PAGE_SIZE));
    if (f < 0) {
      for (let j = 0; j < i; j++) kernel.userPages.put(frames[j] as number);
      return E.ENOMEM;
    }
    frames[i] = f;
  }
  return { buffer, frames, size: n * PAGE_SIZE };
}

/** Drops the kernel's reference on each page (pages still mapped by a process live on until unmapped). */
export function freeKernelPages(kernel: Kernel, pages: KernelPages): void {
  const frames = pages.frames;
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i] as number;
    frames[i] = -1;
    if (f >= 0) kernel.userPages.put(f);
  }
}
