import type { File } from '../fs/file.ts';

/** Page-backed shared memory (memfd, `MAP_SHARED|MAP_ANONYMOUS`): one object, any number of mappings. */
export interface ShmObject {
  /** Size in bytes (a multiple of nothing in particular: mappings round up to pages). */
  size: number;
  /** Frame of each page once faulted in, -1 before. */
  frames: number[];
  /** The bytes, page-contiguous (a resizable buffer, so views of it survive growth). */
  readonly buffer: ArrayBuffer;
  /** `F_SEAL_*` seals. */
  seals: number;
  /** Mappings with `PROT_WRITE` and `MAP_SHARED` (for `F_SEAL_WRITE`'s `EBUSY`). */
  writableMaps: number;
  /** Name, for `/proc/self/maps` (`/memfd:name`). */
  readonly name: string;
  /** Holders: the memfd's open file and each VMA mapping it; the last drops every page. */
  refs: number;
  /** VMAs mapping it (for pagemap's exclusive bit). */
  maps: number;
}

/**
 * What stands behind a VMA:
 * - `anon`: private anonymous memory, one buffer for the whole VMA, a frame per page once faulted in;
 * - `shm`: pages of a {@link ShmObject} starting at `pgoff`;
 * - `io`: a PFN mapping of physical address `phys` (`VM_IO | VM_PFNMAP`: no struct page, nothing to pin,
 *   pagemap shows the pfn to root). The CPU decodes each page's address: device memory (a BAR) goes
 *   through the machine's MMIO router; RAM (a UIO PHYS map of a DMA buffer, Linux's `remap_pfn_range` of
 *   a RAM pfn) is read and written as memory. No reference is held on RAM pages mapped this way.
 */
export type VmaBacking =
  | {
    readonly kind: 'anon'; readonly buffer: ArrayBuffer; readonly bufferOffset: number; readonly frames: Int32Array;
    /** A private mapping of a shared object: a page's first fault copies it from here (copy on fault). */
    readonly cow?: { readonly obj: ShmObject };
  }
  | { readonly kind: 'shm'; readonly obj: ShmObject }
  | { readonly kind: 'io'; readonly phys: number }
  | { readonly kind: 'none' };

/** A virtual memory area (Linux `vm_area_struct`): `[start, end)` page-aligned user addresses. */
export interface Vma {
  start: number;
  end: number;
  /** File offset in pages (`vm_pgoff`). */
  pgoff: number;
  /** `PROT_*`. */
  prot: number;
  /** `MAP_*` flags the mapping was made with (`SHARED`/`PRIVATE`, `ANONYMOUS`, `LOCKED`). */
  readonly flags: number;
  /** The file mapped, if any (holds a reference). */
  readonly file: File | undefined;
  /** Set by the kernel for anonymous memory, or by the file's `mmap` handler. */
  backing: VmaBacking;
  /** `mlock`ed. */
  locked: boolean;
  /** `VM_MAYWRITE` cleared: `mprotect` may never add `PROT_WRITE` (`EACCES`), e.g. a write-sealed memfd. */
  noMayWrite?: boolean;
  /** Called when the VMA (or the last part of a split one) goes away (Linux `vm_ops->close`). */
  onClose?: () => void;
}
