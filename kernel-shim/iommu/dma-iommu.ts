import type { SimProcess } from '../../sim/index.ts';
import { IommuProt, createGather, resetGather, type IotlbGather } from '../../iommu/index.ts';
import { DMA_DIR, DMA_MAPPING_ERROR, VMALLOC_START, maskLimit, type CoherentBuffer, type DmaDir, type DmaOps, type ScatterEntry } from '../dma/mapping.ts';
import type { PciDev } from '../pci/dev.ts';
import { allocKernelPages, freeKernelPages } from '../uio/kmem.ts';
import type { IommuCore } from './core.ts';
import type { IommuDomain } from './domain.ts';
import { FlushQueue } from './flush-queue.ts';
import { IovaDomain } from './iova.ts';

const PAGE = 4096;
/** `dma_get_max_seg_size` of a PCI device (`pci_device_add` sets 64 KiB). */
const MAX_SEG_SIZE = 0x1_0000;
/** The last pfn below 4 GiB. */
const PFN_32BIT = 0xf_ffff;

/** A DMA domain's IOVA space and, when lazy, its flush queue (Linux `struct iommu_dma_cookie`). */
interface Cookie {
  readonly iovad: IovaDomain;
  readonly fq: FlushQueue | null;
  /** The last pfn the domain's aperture allows. */
  readonly aperturePfn: number;
}

/** Linux `dma_info_to_prot`: what the device may do with the buffer. */
function protOf(dir: DmaDir): number {
  return dir === DMA_DIR.TO_DEVICE ? IommuProt.READ : dir === DMA_DIR.FROM_DEVICE ? IommuProt.WRITE : IommuProt.READ | IommuProt.WRITE;
}

/**
 * iommu-dma (Linux `drivers/iommu/dma-iommu.c`): the DMA API over a device's default translated domain.
 * Mapping allocates an IOVA (below 4 GiB first for PCI devices with wider masks, the "SAC" workaround;
 * reserved regions and PCI windows never handed out) and maps it through {@link IommuCore.map};
 * unmapping clears the entries and, in a strict domain, invalidates and waits before the IOVA can be
 * reused; in a lazy (`DMA_FQ`) domain it queues the range in the flush queue instead. Coherent buffers are
 * scattered kernel pages behind one contiguous IOVA range and one vmalloc-area kernel address.
 */
export class IommuDma {
  readonly #core: IommuCore;
  readonly #cookies = new Map<IommuDomain, Cookie>();
  /** Each DMA domain with its cookie, made once so that the map/unmap path allocates nothing. */
  readonly #pairs = new Map<IommuDomain, { readonly d: IommuDomain; readonly c: Cookie }>();
  readonly #gather: IotlbGather = createGather();
  /** Devices that still try 32-bit IOVAs first (`dev->iommu->pci_32bit_workaround`). */
  readonly #sacOff = new WeakSet<PciDev>();
  /** Allocated vmalloc areas: start offset (pages from VMALLOC_START) -> pages, guard page included. */
  readonly #vmAreas = new Map<number, number>();
  readonly ops: DmaOps;

  constructor(core: IommuCore) {
    this.#core = core;
    this.ops = {
      name: 'iommu-dma',
      mapPhys: (dev, phys, size, dir, cpu) => this.#mapPhys(dev, phys, size, dir, cpu),
      unmapPhys: (dev, dma, size, _dir, cpu) => this.#unmap(dev, dma, size, cpu),
      mapSg: (dev, sg, nents, dir, cpu) => this.#mapSg(dev, sg, nents, dir, cpu),
      unmapSg: (dev, sg, nents, _dir, cpu) => this.#unmapSg(dev, sg, nents, cpu),
      allocCoherent: (dev, size, cpu) => this.#allocCoherent(dev, size, cpu),
      freeCoherent: (dev, buf, cpu) => this.#freeCoherent(dev, buf, cpu),
    };
  }

  /** Linux `iommu_get_dma_cookie` + `iommu_dma_init_domain`: the IOVA space with its reserved ranges. */
  initDomain(d: IommuDomain): void {
    const iovad = new IovaDomain(1);
    const m = this.#core.kernel.machine;
    // iova_reserve_pci_windows: the host bridge's memory windows; iova_reserve_iommu_regions: the MSI window.
    for (const w of [m.config.pci.mmio32, m.config.pci.mmio64]) iovad.reserve(Math.floor(w.start / PAGE), Math.floor((w.start + w.size - 1) / PAGE));
    for (const r of this.#core.resvRegions()) iovad.reserve(Math.floor(r.start / PAGE), Math.floor(r.last / PAGE));
    const aperturePfn = Math.floor(((d.table?.iasBits ?? 48) >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** (d.table?.iasBits ?? 48) - 1) / PAGE);
    const c: Cookie = { iovad, fq: d.type === 'DMA_FQ' ? new FlushQueue(this.#core, d, iovad) : null, aperturePfn };
    this.#cookies.set(d, c);
    this.#pairs.set(d, { d, c });
  }

  /** Tears down a DMA domain's cookie (its flush queue flushed first). */
  destroyDomain(d: IommuDomain, cpu: SimProcess | undefined): void {
    const c = this.#cookies.get(d);
    c?.fq?.destroy(cpu);
    this.#cookies.delete(d);
    this.#pairs.delete(d);
  }

  /** The flush queue of `dev`'s default domain (lazy mode), for tests and summaries. */
  flushQueueOf(dev: PciDev): FlushQueue | null {
    const d = this.#core.groupOf(dev)?.defaultDomain;
    return d === undefined ? null : (this.#cookies.get(d)?.fq ?? null);
  }

  #domain(dev: PciDev): { d: IommuDomain; c: Cookie } | null {
    const d = this.#core.groupOf(dev)?.defaultDomain;
    if (d === undefined) return null;
    return this.#pairs.get(d) ?? null;
  }

  /** Linux `iommu_dma_alloc_iova`: a pfn for `pages` pages within `maskBits` and the aperture, or -1. */
  #allocIova(dev: PciDev, c: Cookie, pages: number, limit: number): number {
    const limitPfn = Math.min(Math.floor(limit / PAGE), c.aperturePfn);
    if (limitPfn > PFN_32BIT && !this.#sacOff.has(dev)) {
      const pfn = c.iovad.allocFast(pages, PFN_32BIT);
      if (pfn >= 0) return pfn;
      this.#sacOff.add(dev);
      // bits_per(dma_limit) after the limit was clamped to the aperture (force_aperture): 48, not the mask's 64.
      const bits = Math.ceil(Math.log2((limitPfn + 1) * PAGE));
      this.#core.kernel.log.printk('notice', `${dev.driver?.name ?? 'pci'} ${dev.name}: Using ${bits}-bit DMA addresses`);
    }
    return c.iovad.allocFast(pages, limitPfn);
  }

  #mapPhys(dev: PciDev, phys: number, size: number, dir: DmaDir, cpu: SimProcess | undefined): number {
    const dc = this.#domain(dev);
    if (dc === null) return DMA_MAPPING_ERROR;
    const off = phys % PAGE;
    const len = Math.ceil((off + size) / PAGE) * PAGE;
    const pfn = this.#allocIova(dev, dc.c, len / PAGE, this.#core.kernel.dma.maskLimitOf(dev));
    if (pfn < 0) return DMA_MAPPING_ERROR;
    if (this.#core.map(dc.d, pfn * PAGE, phys - off, len, protOf(dir), cpu) < 0) {
      dc.c.iovad.freeFast(pfn, len / PAGE);
      return DMA_MAPPING_ERROR;
    }
    return pfn * PAGE + off;
  }

  /** Linux `__iommu_dma_unmap`: clears the range, then invalidates (strict) or queues it (lazy). */
  #unmap(dev: PciDev, dma: number, size: number, cpu: SimProcess | undefined): void {
    const dc = this.#domain(dev);
    if (dc === null || !(Number.isSafeInteger(dma) && dma >= 0 && Number.isSafeInteger(size) && size > 0)) return;
    const off = dma % PAGE;
    const iova = dma - off;
    const len = Math.ceil((off + size) / PAGE) * PAGE;
    const g = this.#gather;
    const core = this.#core;
    const n = core.unmapNoSync(dc.d, iova, len, g);
    if (n !== len) {
      // WARN_ON(unmapped != size): a driver bug; Linux would go on to free an IOVA that may not be its own.
      core.kernel.log.printk('warn', `WARNING: CPU: 0 PID: 0 at drivers/iommu/dma-iommu.c __iommu_dma_unmap: ${dev.name}: unmapped 0x${n.toString(16)} of 0x${len.toString(16)} at 0x${iova.toString(16)}`);
      core.syncGather(dc.d, g, cpu);
      return;
    }
    const fq = dc.c.fq;
    if (fq === null) {
      core.syncGather(dc.d, g, cpu);
      dc.c.iovad.freeFast(iova / PAGE, len / PAGE);
    } else {
      fq.queue(iova / PAGE, len / PAGE, g.freelist, cpu);
      resetGather(g);
    }
  }

  /** Linux `iommu_dma_map_sg`: one IOVA range for the whole list, segments merged by `__finalise_sg`. */
  #mapSg(dev: PciDev, sg: ScatterEntry[], nents: number, dir: DmaDir, cpu: SimProcess | undefined): number {
    const dc = this.#domain(dev);
    if (dc === null) return 0;
    let total = 0;
    for (let i = 0; i < nents; i++) {
      const e = sg[i] as ScatterEntry;
      total += Math.ceil(((e.phys % PAGE) + e.length) / PAGE) * PAGE;
    }
    const pfn = this.#allocIova(dev, dc.c, total / PAGE, this.#core.kernel.dma.maskLimitOf(dev));
    if (pfn < 0) return 0;
    const base = pfn * PAGE;
    let at = base;
    for (let i = 0; i < nents; i++) {
      const e = sg[i] as ScatterEntry;
      const off = e.phys % PAGE;
      const len = Math.ceil((off + e.length) / PAGE) * PAGE;
      if (this.#core.map(dc.d, at, e.phys - off, len, protOf(dir), cpu) < 0) {
        if (at > base) this.#core.unmap(dc.d, base, at - base, cpu);
        dc.c.iovad.freeFast(pfn, total / PAGE);
        return 0;
      }
      at += len;
    }
    // __finalise_sg: a segment joins the previous output segment when it starts on a page boundary, the
    // previous one ended on one, and the result stays within the device's maximum segment size.
    let count = 0;
    let curLen = 0;
    let cur = -1;
    let dma = base;
    for (let i = 0; i < nents; i++) {
      const e = sg[i] as ScatterEntry;
      const off = e.phys % PAGE;
      const iovaLen = Math.ceil((off + e.length) / PAGE) * PAGE;
      e.dmaAddress = DMA_MAPPING_ERROR;
      e.dmaLength = 0;
      if (curLen !== 0 && off === 0 && dma % 2 ** 32 !== 0 && MAX_SEG_SIZE - curLen >= e.length) {
        curLen += e.length;
      } else {
        cur = count++;
        curLen = e.length;
        (sg[cur] as ScatterEntry).dmaAddress = dma + off;
      }
      (sg[cur] as ScatterEntry).dmaLength = curLen;
      dma += iovaLen;
      if (e.length + off < iovaLen) curLen = 0;
    }
    return count;
  }

  /** Linux `iommu_dma_unmap_sg`: the whole IOVA range from the first DMA segment to the end of the last. */
  #unmapSg(dev: PciDev, sg: ScatterEntry[], nents: number, cpu: SimProcess | undefined): void {
    const first = sg[0];
    if (first === undefined || first.dmaAddress === DMA_MAPPING_ERROR) return;
    let end = first.dmaAddress;
    for (let i = 0; i < nents; i++) {
      const e = sg[i] as ScatterEntry;
      if (e.dmaLength === 0) break;
      end = e.dmaAddress + e.dmaLength;
    }
    const start = first.dmaAddress - (first.dmaAddress % PAGE);
    this.#unmap(dev, start, end - start, cpu);
  }

  /** Linux `iommu_dma_alloc` (remap path): scattered pages, one IOVA range, a vmalloc-area address. */
  #allocCoherent(dev: PciDev, size: number, cpu: SimProcess | undefined): CoherentBuffer | null {
    const dc = this.#domain(dev);
    if (dc === null) return null;
    const k = this.#core.kernel;
    const pages = allocKernelPages(k, size);
    if (typeof pages === 'number') return null;
    const n = pages.frames.length;
    const pfn = this.#allocIova(dev, dc.c, n, maskLimit(k.dma.coherentMaskBits(dev)));
    if (pfn < 0) {
      freeKernelPages(k, pages);
      return null;
    }
    for (let i = 0; i < n; i++) {
      if (this.#core.map(dc.d, (pfn + i) * PAGE, (pages.frames[i] as number) * PAGE, PAGE, IommuProt.READ | IommuProt.WRITE, cpu) < 0) {
        if (i > 0) this.#core.unmap(dc.d, pfn * PAGE, i * PAGE, cpu);
        dc.c.iovad.freeFast(pfn, n);
        freeKernelPages(k, pages);
        return null;
      }
    }
    return { pages, dma: pfn * PAGE, cpuAddr: this.#vmap(n), size };
  }

  #freeCoherent(dev: PciDev, buf: CoherentBuffer, cpu: SimProcess | undefined): void {
    this.#unmap(dev, buf.dma, buf.pages.size, cpu);
    this.#vunmap(buf.cpuAddr);
    freeKernelPages(this.#core.kernel, buf.pages);
  }

  /** The lowest free vmalloc-area range of `n` pages plus a guard page (Linux `alloc_vmap_area`). */
  #vmap(n: number): bigint {
    let at = 0;
    const areas = [...this.#vmAreas.entries()].sort((a, b) => a[0] - b[0]);
    for (const [start, len] of areas) {
      if (at + n + 1 <= start) break;
      at = Math.max(at, start + len);
    }
    this.#vmAreas.set(at, n + 1);
    return VMALLOC_START + BigInt(at * PAGE);
  }

  #vunmap(addr: bigint): void {
    this.#vmAreas.delete(Number((addr - VMALLOC_START) / BigInt(PAGE)));
  }
}
