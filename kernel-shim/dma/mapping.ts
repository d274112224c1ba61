import type { SimProcess } from '../../sim/index.ts';
import { E } from '../errno.ts';
import type { Kernel } from '../kernel.ts';
import type { PciDev } from '../pci/dev.ts';
import { PAGE_SIZE } from '../uapi/linux.ts';
import { freeKernelPages, type KernelPages } from '../uio/kmem.ts';

/**
 * The DMA API for kernel drivers (Linux `include/linux/dma-mapping.h`, `kernel/dma/mapping.c`): streaming
 * mappings of pages and scatter lists, coherent allocations, and the device's DMA mask. Each device's
 * calls go to its DMA ops: `dma-direct` (bus address = physical address) when the IOMMU is off or the
 * device's group is in a pass-through (identity) domain, `iommu-dma` (an IOVA in the group's default DMA
 * domain) when it translates. Addresses are `number`s (below 2^53); failure is {@link DMA_MAPPING_ERROR}.
 *
 * The optional `cpu` argument is the thread the caller runs on (a syscall's `cur.thread`): time the
 * kernel spends waiting for the IOMMU's invalidations is charged to it. Without one (boot, tests driving
 * the kernel directly) the wait runs the hardware's events on the global clock; never call the DMA API
 * without `cpu` from inside an event callback.
 */

/** `enum dma_data_direction`. */
export const DMA_DIR = { BIDIRECTIONAL: 0, TO_DEVICE: 1, FROM_DEVICE: 2, NONE: 3 } as const;
/** A value of {@link DMA_DIR}. */
export type DmaDir = (typeof DMA_DIR)[keyof typeof DMA_DIR];

/** Linux `DMA_MAPPING_ERROR`, `(dma_addr_t)~0`; dmasim's DMA addresses are numbers, so it is -1 here. */
export const DMA_MAPPING_ERROR = -1;

/** The kernel virtual address base of the direct map on x86-64 (`PAGE_OFFSET` without KASLR). */
export const PAGE_OFFSET = 0xffff_8880_0000_0000n;
/** The start of the vmalloc area on x86-64 (`VMALLOC_START` without KASLR). */
export const VMALLOC_START = 0xffff_c900_0000_0000n;

/** One scatterlist entry (Linux `struct scatterlist`): the caller fills `phys` and `length`; mapping fills the DMA side. */
export interface ScatterEntry {
  /** Physical address of the segment's first byte (kernel memory). */
  phys: number;
  /** Bytes. */
  length: number;
  /** `sg_dma_address`: filled by {@link DmaApi.mapSg} for the first `n` entries it returns. */
  dmaAddress: number;
  /** `sg_dma_len`. */
  dmaLength: number;
}

/** A coherent buffer from {@link DmaApi.allocCoherent} (Linux's `cpu_addr` and `dma_handle`). */
export interface CoherentBuffer {
  /** The kernel pages (for UIO `DMA_COHERENT` maps and kernel access). */
  readonly pages: KernelPages;
  /** The bus address the device uses. */
  readonly dma: number;
  /** The kernel virtual address (`cpu_addr`): in the direct map, or in the vmalloc area when remapped. */
  readonly cpuAddr: bigint;
  /** Bytes asked for. */
  readonly size: number;
}

/** The DMA ops one device uses (Linux `struct dma_map_ops`, plus dma-direct behind the same shape). */
export interface DmaOps {
  readonly name: 'dma-direct' | 'iommu-dma';
  mapPhys(dev: PciDev, phys: number, size: number, dir: DmaDir, cpu: SimProcess | undefined): number;
  unmapPhys(dev: PciDev, dma: number, size: number, dir: DmaDir, cpu: SimProcess | undefined): void;
  mapSg(dev: PciDev, sg: ScatterEntry[], nents: number, dir: DmaDir, cpu: SimProcess | undefined): number;
  unmapSg(dev: PciDev, sg: ScatterEntry[], nents: number, dir: DmaDir, cpu: SimProcess | undefined): void;
  allocCoherent(dev: PciDev, size: number, cpu: SimProcess | undefined): CoherentBuffer | null;
  freeCoherent(dev: PciDev, buf: CoherentBuffer, cpu: SimProcess | undefined): void;
}

/** The highest address a mask of `bits` bits allows (2^53 - 1 for 53 bits and more). */
export function maskLimit(bits: number): number {
  return bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** bits - 1;
}

/** Per-device DMA state (Linux `dev->dma_mask`, `coherent_dma_mask`, `dma_ops`). */
interface DevDma {
  maskBits: number;
  coherentBits: number;
  /** {@link maskLimit} of `maskBits`, kept for the hot path. */
  limit: number;
}

/**
 * The DMA API, one per kernel (`kernel.dma`). Which ops a device gets is decided by the IOMMU layer
 * (`setOpsResolver`); without one every device is direct.
 */
export class DmaApi {
  readonly #kernel: Kernel;
  readonly #state = new WeakMap<PciDev, DevDma>();
  #resolve: (dev: PciDev) => DmaOps;
  /** The direct ops (bus address = physical). */
  readonly direct: DmaOps;

  constructor(kernel: Kernel) {
    this.#kernel = kernel;
    this.direct = directOps(kernel, this);
    this.#resolve = () => this.direct;
  }

  /** @internal The IOMMU layer installs the per-device choice of ops. */
  setOpsResolver(resolve: (dev: PciDev) => DmaOps): void {
    this.#resolve = resolve;
  }

  /** The ops `dev` uses now. */
  ops(dev: PciDev): DmaOps {
    return this.#resolve(dev);
  }

  #dev(dev: PciDev): DevDma {
    let s = this.#state.get(dev);
    if (s === undefined) {
      // PCI devices start with 32-bit masks (pci_setup_device: dev->dma_mask = 0xffffffff).
      s = { maskBits: 32, coherentBits: 32, limit: maskLimit(32) };
      this.#state.set(dev, s);
    }
    return s;
  }

  /** The streaming DMA mask, in bits. */
  maskBits(dev: PciDev): number {
    return this.#dev(dev).maskBits;
  }

  /** The highest bus address the streaming mask allows. */
  maskLimitOf(dev: PciDev): number {
    return this.#dev(dev).limit;
  }

  /** The coherent DMA mask, in bits. */
  coherentMaskBits(dev: PciDev): number {
    return this.#dev(dev).coherentBits;
  }

  /**
   * Linux `dma_set_mask_and_coherent(dev, DMA_BIT_MASK(bits))`: 0, or `-EIO` when the mask cannot be
   * supported (fewer than 24 bits, as `dma_direct_supported` refuses for x86's ZONE_DMA; or not 1..64).
   */
  setMaskAndCoherent(dev: PciDev, bits: number): number {
    const r = this.setMask(dev, bits);
    return r < 0 ? r : this.setCoherentMask(dev, bits);
  }

  /** Linux `dma_set_mask`: 0 or `-EIO`. */
  setMask(dev: PciDev, bits: number): number {
    if (!(Number.isInteger(bits) && bits >= 24 && bits <= 64)) return E.EIO;
    const s = this.#dev(dev);
    s.maskBits = bits;
    s.limit = maskLimit(bits);
    return 0;
  }

  /** Linux `dma_set_coherent_mask`: 0 or `-EIO`. */
  setCoherentMask(dev: PciDev, bits: number): number {
    if (!(Number.isInteger(bits) && bits >= 24 && bits <= 64)) return E.EIO;
    this.#dev(dev).coherentBits = bits;
    return 0;
  }

  /**
   * Linux `dma_map_page_attrs` / `dma_map_single`: maps `size` bytes of kernel memory at physical address
   * `phys` for the device; returns the bus address or {@link DMA_MAPPING_ERROR}.
   */
  mapPage(dev: PciDev, phys: number, size: number, dir: DmaDir, cpu?: SimProcess): number {
    if (!validDir(dir) || dir === DMA_DIR.NONE || !(Number.isSafeInteger(phys) && phys >= 0 && Number.isSafeInteger(size) && size > 0)) return DMA_MAPPING_ERROR;
    return this.#resolve(dev).mapPhys(dev, phys, size, dir, cpu);
  }

  /** Linux `dma_unmap_page_attrs`: `dma` and `size` as the mapping returned and asked. */
  unmapPage(dev: PciDev, dma: number, size: number, dir: DmaDir, cpu?: SimProcess): void {
    this.#resolve(dev).unmapPhys(dev, dma, size, dir, cpu);
  }

  /**
   * Linux `dma_map_sg_attrs`: maps the first `nents` entries (default all); returns the number of DMA
   * segments filled in (`dmaAddress`/`dmaLength` of the first ones; iommu-dma merges the list into one
   * contiguous IOVA range), or 0 on failure.
   */
  mapSg(dev: PciDev, sg: ScatterEntry[], dir: DmaDir, nents = sg.length, cpu?: SimProcess): number {
    if (!validDir(dir) || dir === DMA_DIR.NONE || !(Number.isInteger(nents) && nents > 0 && nents <= sg.length)) return 0;
    for (let i = 0; i < nents; i++) {
      const e = sg[i] as ScatterEntry;
      if (!(Number.isSafeInteger(e.phys) && e.phys >= 0 && Number.isSafeInteger(e.length) && e.length > 0)) return 0;
    }
    return this.#resolve(dev).mapSg(dev, sg, nents, dir, cpu);
  }

  /** Linux `dma_unmap_sg_attrs`: `nents` is what was passed to {@link mapSg}, not what it returned. */
  unmapSg(dev: PciDev, sg: ScatterEntry[], dir: DmaDir, nents = sg.length, cpu?: SimProcess): void {
    this.#resolve(dev).unmapSg(dev, sg, nents, dir, cpu);
  }

  /**
   * Linux `dma_alloc_coherent`: zeroed memory the device and the CPU share, its bus address and its kernel
   * address; null when memory (or bus address space below the coherent mask) runs out.
   */
  allocCoherent(dev: PciDev, size: number, cpu?: SimProcess): CoherentBuffer | null {
    if (!(Number.isSafeInteger(size) && size > 0)) return null;
    return this.#resolve(dev).allocCoherent(dev, size, cpu);
  }

  /** Linux `dma_free_coherent`. */
  freeCoherent(dev: PciDev, buf: CoherentBuffer, cpu?: SimProcess): void {
    this.#resolve(dev).freeCoherent(dev, buf, cpu);
  }

  /** @internal For the ops: the kernel. */
  get kernel(): Kernel {
    return this.#kernel;
  }
}

function validDir(dir: number): dir is DmaDir {
  return dir === 0 || dir === 1 || dir === 2 || dir === 3;
}

/** Pages needed for `size` bytes starting at `addr`'s offset in its page. */
export function pagesSpanned(addr: number, size: number): number {
  return Math.ceil(((addr % PAGE_SIZE) + size) / PAGE_SIZE);
}

/**
 * dma-direct (`kernel/dma/direct.c`): the bus address is the physical address. A buffer the mask cannot
 * reach fails (`dma_direct_map_page` without swiotlb: "DMA addr ... overflow"); coherent memory is one
 * physically contiguous run in the direct map.
 */
function directOps(kernel: Kernel, api: DmaApi): DmaOps {
  const overflow = (dev: PciDev, addr: number, size: number, bits: number): void => {
    kernel.log.printk('err', `${dev.driver?.name ?? 'pci'} ${dev.name}: DMA addr 0x${addr.toString(16).padStart(16, '0')}+${size} overflow (mask ${maskHex(bits)}, bus limit 0).`);
  };
  return {
    name: 'dma-direct',
    mapPhys(dev, phys, size, _dir) {
      if (phys + size - 1 > api.maskLimitOf(dev)) {
        overflow(dev, phys, size, api.maskBits(dev));
        return DMA_MAPPING_ERROR;
      }
      return phys;
    },
    unmapPhys() {
      // Nothing to undo: no bounce buffers.
    },
    mapSg(dev, sg, nents) {
      const lim = api.maskLimitOf(dev);
      for (let i = 0; i < nents; i++) {
        const e = sg[i] as ScatterEntry;
        if (e.phys + e.length - 1 > lim) {
          overflow(dev, e.phys, e.length, api.maskBits(dev));
          return 0;
        }
        e.dmaAddress = e.phys;
        e.dmaLength = e.length;
      }
      return nents;
    },
    unmapSg() {
      // Nothing to undo.
    },
    allocCoherent(dev, size) {
      const n = Math.ceil(size / PAGE_SIZE);
      const pages = allocContiguousKernelPages(kernel, n, maskLimit(api.coherentMaskBits(dev)));
      if (pages === null) return null;
      const phys = (pages.frames[0] as number) * PAGE_SIZE;
      return { pages, dma: phys, cpuAddr: PAGE_OFFSET + BigInt(phys), size };
    },
    freeCoherent(_dev, buf) {
      freeKernelPages(kernel, buf.pages);
    },
  };
}

function maskHex(bits: number): string {
  return bits >= 64 ? 'ffffffffffffffff' : (2n ** BigInt(bits) - 1n).toString(16);
}

/**
 * `n` zeroed, physically contiguous kernel pages ending at or below `limit`, or null (Linux
 * `dma_direct_alloc` from `__dma_direct_alloc_pages`, which retries in ZONE_DMA32 when the mask needs it;
 * dmasim simply fails when the run it finds lies above the mask).
 */
export function allocContiguousKernelPages(kernel: Kernel, n: number, limit: number): KernelPages | null {
  const frames = kernel.machine.frames;
  const first = frames.allocContiguous(n, 1);
  if (first < 0) return null;
  if ((first + n) * PAGE_SIZE - 1 > limit) {
    for (let f = first; f < first + n; f++) frames.free(f);
    return null;
  }
  const buffer = new ArrayBuffer(n * PAGE_SIZE);
  const list = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    list[i] = first + i;
    kernel.userPages.adopt(first + i, new Uint8Array(buffer, i * PAGE_SIZE, PAGE_SIZE));
  }
  return { buffer, frames: list, size: n * PAGE_SIZE };
}
