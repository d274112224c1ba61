import type { SimProcess } from '../../sim/index.ts';
import {
  createGather,
  createVtdSlPageTable,
  frameTableAllocator,
  gatherIsEmpty,
  isPgtError,
  pgtErrno,
  releaseGather,
  resetGather,
  type IotlbGather,
  type TablePageAllocator,
} from '../../iommu/index.ts';
import { E } from '../errno.ts';
import type { Kernel } from '../kernel.ts';
import type { PciDev } from '../pci/dev.ts';
import { DOMAIN_TYPE_LOG, IommuDomain, type IommuDomainType } from './domain.ts';
import { IommuGroupK, type ResvRegion } from './group.ts';
import { CONTEXT_TT, IntelIommu } from './intel.ts';
import { parseIommuParams, type IommuParams } from './options.ts';
import { addIommuSysfs } from './sysfs.ts';
import { IommuDma } from './dma-iommu.ts';

/** The interrupt window every domain keeps unmapped (x86 `IOAPIC_RANGE_START`..`END`, an `msi` region). */
export const MSI_WINDOW: ResvRegion = { start: 0xfee0_0000, last: 0xfeef_ffff, type: 'msi' };

/**
 * The kernel's IOMMU layer (Linux `drivers/iommu/iommu.c` over intel-iommu): IOMMU groups from the
 * machine's topology, a default domain per group (translated, or identity with `iommu=pt`), attach and
 * detach by group, map and unmap through the page-table format library, and strict invalidation: an
 * unmap returns only after the unit has invalidated the range, so its caller may then unpin or free the
 * pages. DMA-API default domains may instead be lazy (`iommu.strict=0`): see `flush-queue.ts`.
 *
 * This is the interface VFIO and iommufd use: {@link allocDomain}, {@link attachGroup},
 * {@link detachGroup}, {@link map}, {@link unmap}, {@link freeDomain}.
 */
export class IommuCore {
  readonly kernel: Kernel;
  readonly unit: IntelIommu;
  readonly params: IommuParams;
  readonly groups: readonly IommuGroupK[];
  /** The DMA-API side (IOVA allocation, flush queues) of the default DMA domains. */
  readonly dma: IommuDma;
  readonly #byDev = new Map<PciDev, IommuGroupK>();
  readonly #tables: TablePageAllocator;
  readonly #gather: IotlbGather = createGather();
  #nextDomainId = 0;
  /** Live domains. */
  readonly domains = new Set<IommuDomain>();
  /** The type default domains get. */
  readonly defaultType: IommuDomainType;

  private constructor(kernel: Kernel, unit: IntelIommu, params: IommuParams) {
    this.kernel = kernel;
    this.unit = unit;
    this.params = params;
    this.#tables = frameTableAllocator(kernel.machine.frames);
    this.dma = new IommuDma(this);
    let strict = params.strict;
    if (!strict && unit.caps.cachingMode) {
      // intel-iommu: batching would leave not-present entries cached by a virtual IOMMU.
      kernel.log.printk('info', 'DMAR: IOMMU batching disallowed due to virtualization');
      strict = true;
    }
    this.defaultType = params.passthrough ? 'IDENTITY' : strict ? 'DMA' : 'DMA_FQ';
    this.groups = this.#buildGroups();
  }

  /**
   * Linux's IOMMU initialisation for the machine's unit (`intel_iommu_init` + `iommu_subsys_init` +
   * `bus_iommu_probe`): returns null when there is no unit or `intel_iommu=off`; otherwise the unit is
   * probed, every group gets its default domain, translation is enabled and the DMA API is routed.
   */
  static init(kernel: Kernel): IommuCore | null {
    const m = kernel.machine;
    const params = parseIommuParams(kernel.cmdline);
    const log = kernel.log;
    if (m.iommu === undefined) return null;
    const base = m.config.iommu.base;
    log.printk('info', `DMAR: Host address width ${Number((m.mmio.read64(base + 0x08) >> 16n) & 0x3fn) + 1}`);
    log.printk('info', `DMAR: DRHD base: 0x${base.toString(16).padStart(14, '0')} flags: 0x1`);
    if (params.disabled) {
      log.printk('info', 'DMAR: IOMMU disabled');
      return null;
    }
    if (params.forcedOn) log.printk('info', 'DMAR: IOMMU enabled');
    const unit = IntelIommu.probe(kernel, base, 0);
    if (unit === null) return null;
    const type = params.passthrough ? 'IDENTITY' : 'DMA';
    log.printk('info', `iommu: Default domain type: ${DOMAIN_TYPE_LOG[type]}${params.passthroughFromCmdline ? ' (set via kernel command line)' : ''}`);
    if (!params.passthrough) {
      log.printk('info', `iommu: DMA domain TLB invalidation policy: ${params.strict ? 'strict' : 'lazy'} mode${params.strictFromCmdline ? ' (set via kernel command line)' : ''}`);
    }
    const core = new IommuCore(kernel, unit, params);
    for (const g of core.groups) {
      const d = core.allocDomain(core.defaultType);
      if (d === null) {
        log.printk('err', `iommu: Failed to allocate default IOMMU domain of type ${core.defaultType} for group ${g.id}`);
        continue;
      }
      g.defaultDomain = d;
      core.#attach(d, g, undefined);
    }
    unit.enableTranslation();
    log.printk('info', 'DMAR: Intel(R) Virtualization Technology for Directed I/O');
    addIommuSysfs(core);
    kernel.dma.setOpsResolver((dev) => {
      const g = core.#byDev.get(dev);
      return g?.defaultDomain?.isDma === true ? core.dma.ops : kernel.dma.direct;
    });
    return core;
  }

  #buildGroups(): IommuGroupK[] {
    const k = this.kernel;
    const r = k.machine.groups();
    if (!r.ok) {
      k.log.printk('err', `iommu: cannot compute IOMMU groups: ${r.message}`);
      return [];
    }
    const out: IommuGroupK[] = r.groups.map((g) => new IommuGroupK(g.id));
    for (const info of r.devices) {
      const dev = k.pci.devices.find((d) => d.bdf === info.bdf);
      const g = out[info.group];
      if (dev === undefined || g === undefined) continue;
      g.devices.push(dev);
      for (const rid of info.dmaAliases) if (!g.rids.includes(rid)) g.rids.push(rid);
      this.#byDev.set(dev, g);
      k.log.printk('info', `pci ${dev.name}: Adding to iommu group ${g.id}`);
    }
    return out;
  }

  /** The group of `dev` (undefined for a device the IOMMU does not cover). */
  groupOf(dev: PciDev): IommuGroupK | undefined {
    return this.#byDev.get(dev);
  }

  /** Linux `iommu_get_group_resv_regions`: the interrupt window (intel-iommu has no RMRRs here). */
  resvRegions(_group?: IommuGroupK): readonly ResvRegion[] {
    return [MSI_WINDOW];
  }

  /**
   * Linux `iommu_domain_alloc` / `iommu_paging_domain_alloc`: a domain with a domain id and, unless it is
   * an identity domain on a unit with pass-through or a blocking domain, an empty 4-level (or 3-level)
   * table. Null when domain ids or memory run out.
   */
  allocDomain(type: IommuDomainType): IommuDomain | null {
    const did = this.unit.allocDid();
    if (did < 0) return null;
    let table = null;
    const needsTable = type !== 'BLOCKED' && !(type === 'IDENTITY' && this.unit.caps.passThrough);
    if (needsTable) {
      const t = createVtdSlPageTable({
        mem: this.kernel.machine.memory,
        alloc: this.#tables,
        levels: this.unit.agaw === 2 ? 4 : 3,
        pgsizeBitmap: this.unit.caps.pgsizeBitmap,
        oasBits: this.unit.caps.mgaw,
      });
      if (typeof t === 'number') {
        this.unit.freeDid(did);
        return null;
      }
      table = t;
    }
    const d = new IommuDomain(this.#nextDomainId++, type, did, table);
    if (type === 'IDENTITY' && table !== null) {
      // si_domain without hardware pass-through: all of RAM mapped 1:1.
      table.map(0, 0, this.kernel.machine.memory.size, 3);
    }
    this.domains.add(d);
    if (d.isDma) this.dma.initDomain(d);
    return d;
  }

  /** Linux `iommu_domain_free`: the domain must have no group attached. Frees its table and domain id. */
  freeDomain(d: IommuDomain, cpu?: SimProcess): void {
    if (d.freed) return;
    if (d.isDma) this.dma.destroyDomain(d, cpu);
    d.freed = true;
    this.domains.delete(d);
    // Its id may still tag IOTLB entries: flush them before the id (and the table pages) can be reused.
    this.unit.flushIotlbDomain(d.did, cpu);
    d.table?.destroy();
    this.unit.freeDid(d.did);
  }

  /** Points every requester id of `g` at `d`. */
  #attach(d: IommuDomain, g: IommuGroupK, cpu: SimProcess | undefined): void {
    const passThrough = d.type === 'IDENTITY' && d.table === null;
    for (const rid of g.rids) {
      if (d.type === 'BLOCKED') this.unit.clearContext(rid, cpu);
      else this.unit.setContext(rid, d.did, passThrough ? CONTEXT_TT.PASS_THROUGH : CONTEXT_TT.MULTI_LEVEL, d.table?.root ?? 0, cpu);
    }
    g.domain?.groups.delete(g);
    g.domain = d;
    d.groups.add(g);
  }

  /**
   * Linux `iommu_attach_group`: attaches `g` to `d`. `-EBUSY` when the group is attached to a domain
   * other than its default one (someone else owns it), `-EINVAL` for a freed or DMA-API domain.
   */
  attachGroup(d: IommuDomain, g: IommuGroupK, cpu?: SimProcess): number {
    if (d.freed || d.isDma) return E.EINVAL;
    if (g.domain !== undefined && g.domain !== g.defaultDomain && g.domain !== g.blockingDomain && g.domain !== d) return E.EBUSY;
    if (g.domain === d) return 0;
    this.#attach(d, g, cpu);
    return 0;
  }

  /** Linux `iommu_detach_group`: `g` goes back to its default domain (its blocking domain while it has a DMA owner). */
  detachGroup(d: IommuDomain, g: IommuGroupK, cpu?: SimProcess): void {
    if (g.domain !== d) return;
    const def = g.owner !== undefined ? (g.blockingDomain ?? g.defaultDomain) : g.defaultDomain;
    if (def !== undefined) this.#attach(def, g, cpu);
    else {
      for (const rid of g.rids) this.unit.clearContext(rid, cpu);
      d.groups.delete(g);
      g.domain = undefined;
    }
  }

  /**
   * Linux `iommu_map`: maps `size` bytes at `iova` to `phys` with `prot` (`IommuProt`). 0, or `-EINVAL`
   * (not aligned to the smallest page size, a domain without a table, a bad range), `-EEXIST`, `-ENOMEM`,
   * `-ERANGE` from the format library. Nothing is mapped on failure. With caching mode the new range is
   * flushed (`iotlb_sync_map`).
   */
  map(d: IommuDomain, iova: number, phys: number, size: number, prot: number, cpu?: SimProcess): number {
    const t = d.table;
    if (t === null || d.freed || d.type === 'IDENTITY') return E.EINVAL;
    if (iova % 4096 !== 0 || phys % 4096 !== 0 || size % 4096 !== 0 || size === 0) {
      this.kernel.log.printk('err', `iommu: unaligned: iova 0x${iova.toString(16)} pa 0x${phys.toString(16).padStart(16, '0')} size 0x${size.toString(16)} min_pagesz 0x1000`);
      return E.EINVAL;
    }
    const r = t.map(iova, phys, size, prot);
    if (isPgtError(r)) return -pgtErrno(r);
    d.mappedBytes += size;
    if (this.unit.caps.cachingMode) this.unit.flushIotlbRange(d.did, iova, iova + size - 1, true, cpu);
    return 0;
  }

  /**
   * Linux `iommu_unmap`: unmaps up to `size` bytes at `iova` (stopping at the first hole), invalidates the
   * unmapped range and waits for it, then frees the table pages the unmap unlinked. Returns the bytes
   * unmapped; 0 for a misaligned request (Linux logs "unaligned") or nothing mapped at `iova`.
   */
  unmap(d: IommuDomain, iova: number, size: number, cpu?: SimProcess): number {
    const g = this.#gather;
    const n = this.unmapNoSync(d, iova, size, g);
    if (n > 0) this.syncGather(d, g, cpu);
    return n;
  }

  /** Linux `iommu_unmap_fast`: clears the entries into `gather` without invalidating (the caller syncs). */
  unmapNoSync(d: IommuDomain, iova: number, size: number, gather: IotlbGather): number {
    const t = d.table;
    if (t === null || d.freed || d.type === 'IDENTITY') return 0;
    if (iova % 4096 !== 0 || size % 4096 !== 0) {
      this.kernel.log.printk('err', `iommu: unaligned: iova 0x${iova.toString(16)} size 0x${size.toString(16)} min_pagesz 0x1000`);
      return 0;
    }
    const r = t.unmap(iova, size, gather);
    if (r <= 0) return 0;
    d.mappedBytes -= r;
    return r;
  }

  /**
   * Linux `iommu_iotlb_sync` (intel `intel_iommu_tlb_sync`): invalidates the gather's range (IH set when no
   * table page was unlinked), waits, then frees the unlinked table pages and resets the gather.
   */
  syncGather(d: IommuDomain, gather: IotlbGather, cpu?: SimProcess): void {
    if (gatherIsEmpty(gather)) return;
    this.unit.flushIotlbRange(d.did, gather.start, gather.last, gather.freelist.length === 0, cpu);
    if (gather.freelist.length !== 0) releaseGather(gather, this.#tables);
    resetGather(gather);
  }

  /** Frees table pages a gather collected, once their invalidation completed (flush queues). */
  releaseTablePages(gather: IotlbGather): void {
    releaseGather(gather, this.#tables);
  }

  // --- DMA ownership (Linux 5.19+: VFIO and iommufd claim a group; kernel DMA drivers use its default domain)

  /**
   * Linux `iommu_device_use_default_domain`, at the probe of a driver that uses the DMA API: `-EBUSY` when
   * a user-space owner holds the group (or it is attached to another domain); else counts the user.
   */
  useDefaultDomain(dev: PciDev): number {
    const g = this.#byDev.get(dev);
    if (g === undefined) return 0;
    if (g.ownerCount !== 0 && (g.domain !== g.defaultDomain || g.owner !== undefined)) return E.EBUSY;
    g.ownerCount++;
    return 0;
  }

  /** Linux `iommu_device_unuse_default_domain`, at that driver's unbind. */
  unuseDefaultDomain(dev: PciDev): void {
    const g = this.#byDev.get(dev);
    if (g !== undefined && g.ownerCount > 0 && g.owner === undefined) g.ownerCount--;
  }

  /**
   * Linux `iommu_group_claim_dma_owner`: `-EPERM` when any kernel driver uses the group's default domain
   * or another owner holds it, `-EBUSY` when the group is attached to a non-default domain; otherwise the
   * group is attached to a blocking domain (its devices' DMA faults until the owner attaches a domain of
   * its own) and belongs to `owner`.
   */
  claimDmaOwner(g: IommuGroupK, owner: unknown, cpu?: SimProcess): number {
    if (owner === undefined) return E.EINVAL;
    if (g.ownerCount !== 0) return E.EPERM;
    if (g.domain !== undefined && g.domain !== g.defaultDomain) return E.EBUSY;
    const blocking = this.#blocking(g);
    if (blocking === null) return E.ENOMEM;
    this.#attach(blocking, g, cpu);
    g.owner = owner;
    g.ownerCount = 1;
    return 0;
  }

  /** Linux `iommu_group_release_dma_owner`: back to the default domain, no owner. */
  releaseDmaOwner(g: IommuGroupK, cpu?: SimProcess): void {
    if (g.owner === undefined) return;
    g.owner = undefined;
    g.ownerCount = 0;
    if (g.defaultDomain !== undefined) this.#attach(g.defaultDomain, g, cpu);
  }

  /** The group's blocking domain (made on first use, as `__iommu_group_alloc_blocking_domain`). */
  #blocking(g: IommuGroupK): IommuDomain | null {
    g.blockingDomain ??= this.allocDomain('BLOCKED') ?? undefined;
    return g.blockingDomain ?? null;
  }

  /** Linux `iommu_iova_to_phys`: -1 when unmapped; the IOVA itself in a pass-through domain. */
  iovaToPhys(d: IommuDomain, iova: number): number {
    if (d.type === 'IDENTITY' && d.table === null) return iova;
    return d.table?.iovaToPhys(iova) ?? -1;
  }
}
