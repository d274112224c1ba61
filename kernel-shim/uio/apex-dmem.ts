import type { CoherentBuffer } from '../dma/mapping.ts';
import { E } from '../errno.ts';
import type { Kernel } from '../kernel.ts';
import type { PciDev } from '../pci/dev.ts';
import type { Current } from '../task/current.ts';
import { UIO_MEM, type UioMem } from './info.ts';

/**
 * uio_dmem_genirq's dynamic regions (Linux `drivers/uio/uio_dmem_genirq.c`, spec/linux-uapi.md 5.4) for one
 * UIO device: coherent DMA buffers allocated at the first open of `/dev/uioN` and freed at the last
 * close. While nothing has the device open, `maps/mapN/addr` reads {@link DMEM_MAP_ERROR} (`~0`) and the
 * size is still shown. While open, what `addr` holds depends on the Linux version
 * (`behaviour.uioDmaCoherentMemtype`): up to 6.8 the DMA address with memtype `PHYS`, so user space can
 * program the device with it and `mmap` maps it as a physical address (`remap_pfn_range`: with a
 * translating IOMMU that address is an IOVA, and the mapping shows whatever physical memory sits at that
 * number, which is why 6.9 changed it); from 6.9 the kernel virtual address with memtype `DMA_COHERENT`,
 * mapped from the buffer's pages, so user space no longer learns the DMA address.
 */

/** `addr` of an unallocated region (Linux `DMEM_MAP_ERROR`, `~0`). */
export const DMEM_MAP_ERROR = 0xffff_ffff_ffff_ffffn;

/** One dynamic region: its UIO map and, while allocated, its buffer. */
interface Region {
  readonly mem: UioMem;
  buf: CoherentBuffer | null;
}

/** The dynamic regions of one UIO device and the open count that allocates and frees them. */
export class DmemRegions {
  readonly #kernel: Kernel;
  readonly #pdev: PciDev;
  readonly #regions: Region[];
  #opens = 0;

  /** Regions named and sized as `sizes` (bytes, page multiples); their maps are {@link maps}. */
  constructor(kernel: Kernel, pdev: PciDev, sizes: readonly { readonly name: string; readonly size: number }[]) {
    this.#kernel = kernel;
    this.#pdev = pdev;
    const memtype = kernel.behaviour.uioDmaCoherentMemtype ? UIO_MEM.DMA_COHERENT : UIO_MEM.PHYS;
    this.#regions = sizes.map((s) => ({ mem: { name: s.name, memtype, addr: DMEM_MAP_ERROR, size: s.size }, buf: null }));
  }

  /** The regions' UIO maps, to follow the static ones in `info.mem`. */
  get maps(): readonly UioMem[] {
    return this.#regions.map((r) => r.mem);
  }

  /** Whether the buffers are allocated (some file has the device open). */
  get allocated(): boolean {
    return this.#regions.some((r) => r.buf !== null);
  }

  /** `uio_dmem_genirq_open`: the first open allocates every region (`-ENOMEM` undoes it). */
  open(cur: Current): number {
    if (this.#opens++ > 0) return 0;
    const coherent = this.#kernel.behaviour.uioDmaCoherentMemtype;
    for (const r of this.#regions) {
      const buf = this.#kernel.dma.allocCoherent(this.#pdev, r.mem.size, cur.thread);
      if (buf === null) {
        this.#opens--;
        this.free();
        return E.ENOMEM;
      }
      r.buf = buf;
      r.mem.addr = coherent ? buf.cpuAddr : buf.dma;
      if (coherent) r.mem.pages = buf.pages;
    }
    return 0;
  }

  /** `uio_dmem_genirq_release`: the last close frees every region. */
  release(): number {
    if (this.#opens === 0) return 0;
    if (--this.#opens === 0) this.free();
    return 0;
  }

  /**
   * Frees every allocated buffer and shows `~0` again (also at unbind with files still open, which never
   * reach `release` once the device is unregistered). A `DMA_COHERENT` mapping keeps its pages until it
   * goes; a `PHYS` mapping holds none, as a Linux PFN mapping does not.
   */
  free(): void {
    for (const r of this.#regions) {
      if (r.buf !== null) this.#kernel.dma.freeCoherent(this.#pdev, r.buf);
      r.buf = null;
      r.mem.addr = DMEM_MAP_ERROR;
      delete r.mem.pages;
    }
    this.#opens = 0;
  }
}
