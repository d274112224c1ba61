import type { SimProcess } from '../../sim/index.ts';
import { E } from '../errno.ts';
import type { PciDev } from '../pci/dev.ts';
import { ULONG_MAX } from './io-pagetable.ts';
import type { IommufdCtx } from './main.ts';
import type { DeviceObject, HwptPagingObject, IoasObject } from './objects.ts';

/**
 * Devices and hardware page tables (Linux `drivers/iommu/iommufd/device.c`, `hw_pagetable.c`): what the
 * VFIO device cdev calls on BIND_IOMMUFD, ATTACH_IOMMUFD_PT, DETACH_IOMMUFD_PT and close. Attaching an
 * IOAS finds or makes an automatic HWPT_PAGING whose UNMANAGED domain holds the IOAS's mappings: the
 * device's reserved regions and the domain's aperture narrow the IOAS's ranges, its alignment rises to
 * 4096, and the areas mapped before are pinned now (`EFAULT` if a VA has gone).
 */

/**
 * Linux `iommufd_device_bind`: claims DMA ownership of the device's group for `ctx` (`-EPERM` while a
 * kernel driver uses it or another owner holds it; a second device of a group already owned by `ctx`
 * shares the claim), and adds a device object, which DESTROY cannot remove (`-EBUSY`). `-ENODEV` without
 * an IOMMU group. The context's file is held until {@link unbindDevice}.
 */
export function bindDevice(ctx: IommufdCtx, pdev: PciDev, cpu?: SimProcess): DeviceObject | number {
  const iommu = ctx.kernel.iommu;
  const group = iommu?.groupOf(pdev);
  if (iommu === null || group === undefined) return E.ENODEV;
  if (group.owner === ctx) group.ownerCount++;
  else {
    const r = iommu.claimDmaOwner(group, ctx, cpu);
    if (r < 0) return r;
  }
  const obj: DeviceObject = { type: 'device', id: ctx.allocId(), users: 2, pdev, group, hwpt: null };
  ctx.insert(obj);
  ctx.file?.get();
  return obj;
}

/** Linux `iommufd_device_unbind`: detaches, releases the DMA claim, removes the object, drops the file. */
export function unbindDevice(ctx: IommufdCtx, idev: DeviceObject, cpu?: SimProcess): void {
  if (ctx.objects.get(idev.id) !== idev) return;
  detachDevice(ctx, idev, cpu);
  ctx.objects.delete(idev.id);
  const iommu = ctx.kernel.iommu;
  if (iommu !== null) {
    if (idev.group.owner === ctx && idev.group.ownerCount > 1) idev.group.ownerCount--;
    else iommu.releaseDmaOwner(idev.group, cpu);
  }
  ctx.file?.put();
}

/** The domain's aperture end (`geometry.aperture_end`): the unit's address width less one. */
function apertureEnd(ctx: IommufdCtx): bigint {
  const u = ctx.kernel.iommu?.unit;
  if (u === undefined) return ULONG_MAX;
  const width = Math.min(u.agaw === 2 ? 48 : 39, u.caps.mgaw);
  return (1n << BigInt(width)) - 1n;
}

/** ECAP.SC (bit 7): intel-iommu's answer to `IOMMU_CAP_ENFORCE_CACHE_COHERENCY` (`ecap_sc_support`). */
function snoopControl(ctx: IommufdCtx): boolean {
  const u = ctx.kernel.iommu?.unit;
  return u !== undefined && ((u.caps.ecap >> 7n) & 1n) === 1n;
}

/** Linux `iopt_table_enforce_dev_resv_regions`: the group's reserved regions, owned by the device. */
function enforceResv(ioas: IoasObject, idev: DeviceObject, ctx: IommufdCtx): number {
  const iommu = ctx.kernel.iommu;
  if (iommu === null) return E.ENODEV;
  for (const r of iommu.resvRegions(idev.group)) {
    if (r.type === 'direct-relaxable') continue;
    const rc = ioas.iopt.reserve(BigInt(r.start), BigInt(r.last), idev);
    if (rc < 0) {
      ioas.iopt.removeReserved(idev);
      return rc;
    }
  }
  return 0;
}

/** Attaches the group to the HWPT's domain after enforcing the device's reserved regions. */
function attachToHwpt(ctx: IommufdCtx, idev: DeviceObject, hwpt: HwptPagingObject, cpu?: SimProcess): number {
  const iommu = ctx.kernel.iommu;
  if (iommu === null) return E.ENODEV;
  const r = enforceResv(hwpt.ioas, idev, ctx);
  if (r < 0) return r;
  const a = iommu.attachGroup(hwpt.domain, idev.group, cpu);
  if (a < 0) {
    hwpt.ioas.iopt.removeReserved(idev);
    return a;
  }
  hwpt.devices.add(idev);
  hwpt.users++;
  idev.hwpt = hwpt;
  return 0;
}

/**
 * Linux `iommufd_hwpt_paging_alloc` with immediate attach: a new UNMANAGED domain, the device attached,
 * then the domain added to the IOAS's table (alignment, aperture, pinning). `-ENOMEM` without a domain.
 */
function autoHwpt(ctx: IommufdCtx, idev: DeviceObject, ioas: IoasObject, cpu?: SimProcess): HwptPagingObject | number {
  const iommu = ctx.kernel.iommu;
  if (iommu === null) return E.ENODEV;
  const domain = iommu.allocDomain('UNMANAGED');
  if (domain === null) return E.ENOMEM;
  const hwpt: HwptPagingObject = {
    type: 'hwpt_paging', id: ctx.allocId(), users: 1, ioas, domain, autoDomain: true, devices: new Set(), enforceCacheCoherency: snoopControl(ctx),
  };
  const r = attachToHwpt(ctx, idev, hwpt, cpu);
  if (r < 0) {
    iommu.freeDomain(domain, cpu);
    return r;
  }
  const t = ioas.iopt.addDomain(domain, apertureEnd(ctx), cpu);
  if (t < 0) {
    detachFromHwpt(ctx, idev, cpu);
    iommu.freeDomain(domain, cpu);
    return t;
  }
  ioas.users++;
  ioas.hwpts.push(hwpt);
  ctx.insert(hwpt);
  return hwpt;
}

/** The group leaves the HWPT's domain (back to blocking), its reserved regions leave the IOAS. */
function detachFromHwpt(ctx: IommufdCtx, idev: DeviceObject, cpu?: SimProcess): HwptPagingObject | null {
  const hwpt = idev.hwpt;
  if (hwpt === null) return null;
  ctx.kernel.iommu?.detachGroup(hwpt.domain, idev.group, cpu);
  hwpt.ioas.iopt.removeReserved(idev);
  if (hwpt.devices.delete(idev)) hwpt.users--;
  idev.hwpt = null;
  return hwpt;
}

/** Linux `iommufd_hwpt_paging_destroy`: the domain leaves the IOAS (unmapped, unpinned) and is freed. */
export function destroyHwpt(ctx: IommufdCtx, hwpt: HwptPagingObject, cpu?: SimProcess): void {
  hwpt.ioas.iopt.removeDomain(hwpt.domain, cpu);
  const i = hwpt.ioas.hwpts.indexOf(hwpt);
  if (i >= 0) hwpt.ioas.hwpts.splice(i, 1);
  hwpt.ioas.users--;
  ctx.kernel.iommu?.freeDomain(hwpt.domain, cpu);
}

/**
 * Linux `iommufd_device_attach` / `iommufd_device_replace`: attaches the device to `ptId`, an IOAS (an
 * automatic HWPT of that IOAS is reused, else one is made) or a HWPT_PAGING. Returns the HWPT's id, or
 * `-ENOENT` for an id that is neither, or the errno of the attach (`-EADDRINUSE` for areas in the way of a
 * reserved region, the aperture or the alignment, `-EFAULT` for areas whose memory has gone, `-ENOMEM`
 * past the memlock limit). A device already attached elsewhere is moved (its old attachment comes back
 * if the new one fails); attaching where it is already is a no-op.
 */
export function attachDevice(ctx: IommufdCtx, idev: DeviceObject, ptId: number, cpu?: SimProcess): number {
  const pt = ctx.objects.get(ptId);
  if (pt === undefined || (pt.type !== 'ioas' && pt.type !== 'hwpt_paging')) return E.ENOENT;
  const old = idev.hwpt;
  if (old !== null && (old === pt || (pt.type === 'ioas' && old.ioas === pt))) return old.id;
  if (old !== null) detachFromHwpt(ctx, idev, cpu);
  const undo = (e: number): number => {
    if (old !== null) attachToHwpt(ctx, idev, old, cpu);
    return e;
  };
  let hwptId: number;
  if (pt.type === 'hwpt_paging') {
    const r = attachToHwpt(ctx, idev, pt, cpu);
    if (r < 0) return undo(r);
    hwptId = pt.id;
  } else {
    const reuse = pt.hwpts.find((h) => h.autoDomain);
    if (reuse !== undefined) {
      const r = attachToHwpt(ctx, idev, reuse, cpu);
      if (r < 0) return undo(r);
      hwptId = reuse.id;
    } else {
      const h = autoHwpt(ctx, idev, pt, cpu);
      if (typeof h === 'number') return undo(h);
      hwptId = h.id;
    }
  }
  if (old !== null) putAutoHwpt(ctx, old, cpu);
  return hwptId;
}

/** An automatic HWPT goes when its last device leaves (`iommufd_hw_pagetable_put`). */
function putAutoHwpt(ctx: IommufdCtx, hwpt: HwptPagingObject, cpu?: SimProcess): void {
  if (!hwpt.autoDomain || hwpt.users !== 1 || ctx.objects.get(hwpt.id) !== hwpt) return;
  ctx.objects.delete(hwpt.id);
  destroyHwpt(ctx, hwpt, cpu);
}

/** Linux `iommufd_device_detach`: back to the blocking domain; an automatic HWPT left without devices is destroyed. */
export function detachDevice(ctx: IommufdCtx, idev: DeviceObject, cpu?: SimProcess): void {
  const hwpt = detachFromHwpt(ctx, idev, cpu);
  if (hwpt !== null) putAutoHwpt(ctx, hwpt, cpu);
}
