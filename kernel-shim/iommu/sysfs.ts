import { relativeLink, sysfsAttr } from '../fs/sysfs.ts';
import type { IommuCore } from './core.ts';
import { DOMAIN_TYPE_SYSFS } from './domain.ts';

function hex16(n: number): string {
  return `0x${n.toString(16).padStart(16, '0')}`;
}

/**
 * The IOMMU's sysfs: `/sys/kernel/iommu_groups/<n>/{devices/<bdf>, reserved_regions, type}`, each
 * device's `iommu_group` and `iommu` links, and the unit at `/sys/class/iommu/dmar0` (a link to
 * `/sys/devices/virtual/iommu/dmar0`) with `intel-iommu/{version,address,cap,ecap,domains_supported,
 * domains_used}` and `devices/` links, as Linux shows them.
 */
export function addIommuSysfs(core: IommuCore): void {
  const vfs = core.kernel.vfs;
  vfs.mkdirp('sys/kernel/iommu_groups');
  const unit = core.unit;
  const unitDir = `/sys/devices/virtual/iommu/${unit.name}`;
  vfs.mkdirp(unitDir.slice(1) + '/devices');
  vfs.symlink(`/sys/class/iommu/${unit.name}`, relativeLink('/sys/class/iommu', unitDir));
  const ro = (text: () => string) => sysfsAttr(0o444, { show: () => text() });
  vfs.add(`${unitDir}/intel-iommu/version`, ro(() => {
    const v = unit.readReg('VER');
    return `${(v >> 4) & 0xf}:${v & 0xf}\n`;
  }));
  vfs.add(`${unitDir}/intel-iommu/address`, ro(() => `${unit.base.toString(16)}\n`));
  vfs.add(`${unitDir}/intel-iommu/cap`, ro(() => `${unit.caps.cap.toString(16)}\n`));
  vfs.add(`${unitDir}/intel-iommu/ecap`, ro(() => `${unit.caps.ecap.toString(16)}\n`));
  vfs.add(`${unitDir}/intel-iommu/domains_supported`, ro(() => `${unit.caps.ndoms}\n`));
  vfs.add(`${unitDir}/intel-iommu/domains_used`, ro(() => `${core.domains.size}\n`));
  for (const g of core.groups) {
    const dir = g.sysfsPath;
    vfs.mkdirp(dir.slice(1) + '/devices');
    // iommu_group_show_resv_regions: "0x%016llx 0x%016llx %s\n" per region.
    vfs.add(`${dir}/reserved_regions`, ro(() => core.resvRegions(g).map((r) => `${hex16(r.start)} ${hex16(r.last)} ${r.type}\n`).join('')));
    vfs.add(`${dir}/type`, ro(() => `${g.defaultDomain === undefined ? 'unknown' : DOMAIN_TYPE_SYSFS[g.defaultDomain.type]}\n`));
    for (const dev of g.devices) {
      vfs.symlink(`${dir}/devices/${dev.name}`, relativeLink(`${dir}/devices`, dev.sysfsPath));
      vfs.symlink(`${dev.sysfsPath}/iommu_group`, relativeLink(dev.sysfsPath, dir));
      vfs.symlink(`${dev.sysfsPath}/iommu`, relativeLink(dev.sysfsPath, unitDir));
      vfs.symlink(`${unitDir}/devices/${dev.name}`, relativeLink(`${unitDir}/devices`, dev.sysfsPath));
    }
  }
}
