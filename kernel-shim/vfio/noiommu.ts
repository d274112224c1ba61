import { E } from '../errno.ts';
import { relativeLink, sysfsAttr } from '../fs/sysfs.ts';
import { IommuGroupK } from '../iommu/group.ts';
import type { Kernel } from '../kernel.ts';
import type { PciDev } from '../pci/dev.ts';
import type { Current } from '../task/current.ts';
import { VFIO, VFIO_EXT } from '../uapi/vfio.ts';
import { IsolationObserver } from './isolation.ts';
import type { VfioIommuData, VfioIommuDriver } from './container.ts';

/**
 * VFIO's no-IOMMU mode (Linux `drivers/vfio/group.c` `vfio_noiommu_group_alloc`, `container.c`
 * `vfio_noiommu_ops`, spec/linux-uapi.md 1.8): with the module parameter
 * `vfio.enable_unsafe_noiommu_mode=1`, a device without an IOMMU group gets a fake one named
 * `vfio-noiommu` (node `/dev/vfio/noiommu-<N>`), the kernel is tainted (`TAINT_USER`), and the only IOMMU
 * driver such a container accepts is `vfio_noiommu_ops` (type 8), which maps nothing: the device's DMA carries
 * physical addresses, unprotected.
 */

/**
 * `vfio.enable_unsafe_noiommu_mode` from the command line (default off), as `parse_args` and
 * `param_set_bool` take it: `-` and `_` are the same in the name, the value is `kstrtobool`'s (`y`/`Y`/`1`/
 * `t`/`T`/`on` true, `n`/`N`/`0`/`f`/`F`/`off` false, only the first one or two characters count), a bare
 * name sets it, a value that does not parse is refused and leaves the previous one; the last valid one wins.
 */
export function noiommuEnabled(cmdline: string): boolean {
  let v = false;
  for (const w of cmdline.split(/\s+/)) {
    const eq = w.indexOf('=');
    const name = eq < 0 ? w : w.slice(0, eq);
    if (name.replaceAll('-', '_') !== 'vfio.enable_unsafe_noiommu_mode') continue;
    if (eq < 0) {
      v = true;
      continue;
    }
    const b = kstrtobool(w.slice(eq + 1));
    if (b !== null) v = b;
  }
  return v;
}

/** Linux `kstrtobool`: true, false, or null for `-EINVAL`. */
function kstrtobool(s: string): boolean | null {
  const c = s[0];
  if (c === 'y' || c === 'Y' || c === '1' || c === 't' || c === 'T') return true;
  if (c === 'n' || c === 'N' || c === '0' || c === 'f' || c === 'F') return false;
  if (c === 'o' || c === 'O') {
    const d = s[1];
    if (d === 'n' || d === 'N') return true;
    if (d === 'f' || d === 'F') return false;
  }
  return null;
}

/** The noiommu IOMMU groups of each kernel, by id (Linux keeps them in the IOMMU core's group ida). */
const fakeGroups = new WeakMap<Kernel, Map<number, IommuGroupK>>();

/** The noiommu IOMMU group of `pdev`, if it has one. */
export function noiommuGroupOf(kernel: Kernel, pdev: PciDev): IommuGroupK | undefined {
  for (const g of fakeGroups.get(kernel)?.values() ?? []) if (g.devices.includes(pdev)) return g;
  return undefined;
}

/** Whether `g` is a fake group made by {@link noiommuGroupAlloc}. */
export function isNoiommuGroup(kernel: Kernel, g: IommuGroupK): boolean {
  return fakeGroups.get(kernel)?.get(g.id) === g;
}

/**
 * Linux `vfio_noiommu_group_alloc`'s IOMMU side: `iommu_group_alloc` (the lowest id no IOMMU group
 * uses: from 0 on a machine without an IOMMU), `iommu_group_set_name(.., "vfio-noiommu")`,
 * `iommu_group_add_device` (its `Adding to iommu group <N>` line, under the driver probing the device).
 * sysfs as Linux shows it: `/sys/kernel/iommu_groups/<N>/{name, type
 * ("unknown": no default domain), reserved_regions (empty), devices/<bdf>}` and the device's
 * `iommu_group` link.
 */
export function noiommuGroupAlloc(kernel: Kernel, pdev: PciDev): IommuGroupK {
  let map = fakeGroups.get(kernel);
  if (map === undefined) fakeGroups.set(kernel, (map = new Map()));
  const used = new Set([...map.keys(), ...(kernel.iommu?.groups.map((g) => g.id) ?? [])]);
  let id = 0;
  while (used.has(id)) id++;
  const g = new IommuGroupK(id);
  g.devices.push(pdev);
  g.rids.push(pdev.bdf);
  map.set(id, g);
  const vfs = kernel.vfs;
  const dir = g.sysfsPath;
  vfs.mkdirp(dir.slice(1) + '/devices');
  const ro = (text: string) => sysfsAttr(0o444, { show: () => text });
  vfs.add(`${dir}/name`, ro('vfio-noiommu\n'));
  vfs.add(`${dir}/type`, ro('unknown\n'));
  vfs.add(`${dir}/reserved_regions`, ro(''));
  vfs.symlink(`${dir}/devices/${pdev.name}`, relativeLink(`${dir}/devices`, pdev.sysfsPath));
  vfs.symlink(`${pdev.sysfsPath}/iommu_group`, relativeLink(pdev.sysfsPath, dir));
  kernel.log.printk('info', `vfio-pci ${pdev.name}: Adding to iommu group ${id}`);
  return g;
}

/**
 * Linux `iommu_group_remove_device` for a fake group (`vfio_device_remove_group`): `Removing from iommu
 * group <N>`, then the device's link and the group's directory go (its last device, the last reference).
 */
export function noiommuGroupFree(kernel: Kernel, g: IommuGroupK): void {
  const map = fakeGroups.get(kernel);
  if (map?.get(g.id) !== g) return;
  map.delete(g.id);
  const vfs = kernel.vfs;
  for (const d of g.devices) {
    kernel.log.printk('info', `vfio-pci ${d.name}: Removing from iommu group ${g.id}`);
    vfs.remove(`${d.sysfsPath}/iommu_group`);
  }
  vfs.remove(g.sysfsPath);
}

/** The no-IOMMU driver's instance: nothing to hold (Linux's `open` returns NULL). */
class NoIommuData implements VfioIommuData {
  readonly #kernel: Kernel;

  constructor(kernel: Kernel) {
    this.#kernel = kernel;
  }

  checkExtension(arg: bigint): number {
    return noiommuCheckExtension(this.#kernel, arg);
  }

  /** `vfio_noiommu_ioctl`: only CHECK_EXTENSION (answered by the container), everything else `-ENOTTY`. */
  ioctl(_cur: Current, request: number, arg: bigint): number {
    return request === VFIO.CHECK_EXTENSION ? this.checkExtension(arg) : E.ENOTTY;
  }

  /** `vfio_noiommu_attach_group`: nothing to attach. */
  attachGroup(): number {
    return 0;
  }

  detachGroup(): void {}

  release(): void {}
}

function noiommuCheckExtension(kernel: Kernel, arg: bigint): number {
  return noiommuEnabled(kernel.cmdline) && arg === BigInt(VFIO_EXT.NOIOMMU_IOMMU) ? 1 : 0;
}

/**
 * Linux `vfio_noiommu_ops` (name "vfio-noiommu"): CHECK_EXTENSION answers 1 for `VFIO_NOIOMMU_IOMMU` (8) when the
 * mode is on, 0 otherwise; `open(arg)` is `-EINVAL` for any other type and `-EPERM` without
 * `CAP_SYS_RAWIO`. The container offers it only to containers of noiommu groups
 * (`vfio_iommu_driver_allowed`).
 */
export const noiommuDriver: VfioIommuDriver = {
  name: 'vfio-noiommu',
  noiommu: true,
  checkExtension: noiommuCheckExtension,
  open(kernel: Kernel, arg: bigint, cur?: Current): VfioIommuData | number {
    if (arg !== BigInt(VFIO_EXT.NOIOMMU_IOMMU)) return E.EINVAL;
    if (cur !== undefined && !cur.cred.capable('SYS_RAWIO')) return E.EPERM;
    return new NoIommuData(kernel);
  },
};

/**
 * The frames a no-IOMMU driver has handed its device, as the kernel sees them: every present frame of the
 * process's `mlock`ed anonymous mappings (what `VfioPciDevice.allocDma` locks for DMA). Without a
 * container nothing in the kernel records what the device may reach; this is the closest boundary a
 * process draws, and the one a no-IOMMU device's DMA should stay inside. Empty for a dead process.
 */
export function processLockedFrames(kernel: Kernel, pid: number): Set<number> {
  const out = new Set<number>();
  const task = kernel.task(pid);
  if (task === undefined) return out;
  for (const v of task.mm.vmas) {
    if (!v.locked || v.backing.kind !== 'anon') continue;
    for (const f of v.backing.frames) if (f >= 0) out.add(f);
  }
  return out;
}

/**
 * Watches requester `rid` against the frames process `pid()` has locked ({@link processLockedFrames},
 * re-read at every access; any other requester may touch nothing): the isolation a no-IOMMU driver
 * promises and nothing enforces. Returns the observer and the function that detaches it.
 */
export function watchProcessIsolation(kernel: Kernel, rid: number, pid: () => number): { observer: IsolationObserver; detach: () => void } {
  const none = new Set<number>();
  const observer = new IsolationObserver((r) => (r === rid ? processLockedFrames(kernel, pid()) : none), () => kernel.sim.now);
  return { observer, detach: kernel.machine.memory.observeDma(observer) };
}
