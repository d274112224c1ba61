import { E } from '../errno.ts';
import type { PciDev } from '../pci/dev.ts';
import type { Current } from '../task/current.ts';
import { WaitHead } from '../wait.ts';
import { vfioGroups } from './core.ts';
import type { VfioDevice } from './device.ts';
import { vfioGroupFromFile, type VfioGroup } from './group.ts';
import type { VfioPciState } from './pci-state.ts';

/**
 * vfio-pci's bus reset ioctls (Linux `vfio_pci_ioctl_get_pci_hot_reset_info`,
 * `vfio_pci_ioctl_pci_hot_reset`, `vfio_pci_dev_set_hot_reset`): a secondary bus reset of the bridge above
 * the device, which resets every function on that bus and below, so user space must prove it owns them
 * all by passing their group fds. dmasim has no hotplug slots, so the slot reset never applies
 * (`pci_probe_reset_slot` fails) and the bus reset decides: `ENODEV` on the root bus.
 */

/** `offsetofend(struct vfio_pci_hot_reset_info, count)`, also `vfio_pci_hot_reset`'s. */
const MINSZ = 12;
/** `sizeof(struct vfio_pci_dependent_device)`. */
const DEP_SIZE = 8;

/** What the reset needs from vfio-pci's device operations (kept there: mappings and MSI-X state). */
export interface HotResetHooks {
  /** vfio-pci's state of an open device, or undefined. */
  stateOf(vdev: VfioDevice): VfioPciState | undefined;
  zap(st: VfioPciState): void;
  unzap(st: VfioPciState): void;
  /** `pci_save_state`'s MSI-X part; the returned function restores it. */
  saveMsix(pdev: PciDev): (() => void) | undefined;
}

/** The functions a bus reset above `pdev` reaches (`pci_walk_bus` of its bus): requester ids, bridges included. */
function affected(pdev: PciDev): number[] {
  const m = pdev.kernel.machine;
  const buses = new Set([pdev.bdf >>> 8]);
  for (let grew = true; grew;) {
    grew = false;
    for (const b of m.config.pci.bridges) {
      if (buses.has(b.bdf >>> 8) && !buses.has(b.secondaryBus)) {
        buses.add(b.secondaryBus);
        grew = true;
      }
    }
  }
  const out = [...m.pci.functions.map((f) => f.bdf), ...m.config.pci.bridges.map((b) => b.bdf)].filter((b) => buses.has(b >>> 8));
  return out.sort((a, b) => a - b);
}

/** Linux `pci_probe_reset_bus` (`pci_bus_reset` probe): the bus has a bridge above it. */
function busResettable(pdev: PciDev): boolean {
  const bus = pdev.bdf >>> 8;
  return bus !== 0 && pdev.kernel.machine.pci.bridgeTo(bus) !== undefined;
}

/** The VFIO device of each affected function bound to vfio-pci (the `dev_set`), by requester id. */
function devSet(pdev: PciDev): Map<number, { vdev: VfioDevice; group: VfioGroup }> {
  const out = new Map<number, { vdev: VfioDevice; group: VfioGroup }>();
  for (const g of vfioGroups(pdev.kernel)) for (const d of g.devices) out.set(d.pdev.bdf, { vdev: d, group: g });
  return out;
}

/** `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: the affected functions with their IOMMU group ids; `ENOSPC` with the count when they do not fit. */
export function getHotResetInfo(st: VfioPciState, cur: Current, arg: number): number {
  const hdr = new Uint8Array(MINSZ);
  if (cur.mm.copyFromUser(arg, hdr) < 0) return E.EFAULT;
  const dv = new DataView(hdr.buffer);
  const argsz = dv.getUint32(0, true);
  if (argsz < MINSZ) return E.EINVAL;
  dv.setUint32(4, 0, true);
  const pdev = st.pdev;
  if (!busResettable(pdev)) return E.ENODEV;
  const devs = affected(pdev);
  let ret = 0;
  if (argsz < MINSZ + devs.length * DEP_SIZE) {
    dv.setUint32(8, devs.length, true);
    ret = E.ENOSPC;
  } else {
    const body = new Uint8Array(devs.length * DEP_SIZE);
    const bv = new DataView(body.buffer);
    const iommu = pdev.kernel.iommu;
    for (let i = 0; i < devs.length; i++) {
      const bdf = devs[i] as number;
      const d = pdev.kernel.pci.devices.find((x) => x.bdf === bdf);
      const g = d === undefined ? undefined : iommu?.groupOf(d);
      // vfio_pci_fill_devs: a device without an IOMMU group is -EPERM.
      if (g === undefined) return E.EPERM;
      bv.setUint32(i * DEP_SIZE, g.id, true);
      bv.setUint16(i * DEP_SIZE + 4, 0, true);
      bv.setUint8(i * DEP_SIZE + 6, bdf >>> 8);
      bv.setUint8(i * DEP_SIZE + 7, bdf & 0xff);
    }
    dv.setUint32(8, devs.length, true);
    if (cur.mm.copyToUser(arg + MINSZ, body) < 0) return E.EFAULT;
  }
  return cur.mm.copyToUser(arg, hdr) < 0 ? E.EFAULT : ret;
}

const sleep = (cur: Current, ns: number): Promise<number> => cur.waitEvent(new WaitHead('vfio-pci hot reset'), () => false, 'vfio-pci hot reset', ns);

/**
 * `VFIO_DEVICE_PCI_HOT_RESET` with group fds: `EINVAL` for a short argsz, flags or no groups; `ENODEV` on the
 * root bus; `EINVAL` for more fds than affected functions; `EFAULT`; `EBADF` / `EINVAL` for an fd that is
 * no group; `EINVAL` unless every affected function is bound to vfio-pci and in one of the groups. Then
 * every open device's BAR mappings are zapped, each function's header saved, the bridge's Secondary Bus
 * Reset pulsed (2 ms, then 100 ms for the link), and the headers, MSI-X state and mappings restored.
 */
export async function hotReset(st: VfioPciState, cur: Current, arg: number, hooks: HotResetHooks): Promise<number> {
  const hdr = new Uint8Array(MINSZ);
  if (cur.mm.copyFromUser(arg, hdr) < 0) return E.EFAULT;
  const dv = new DataView(hdr.buffer);
  const argsz = dv.getUint32(0, true);
  const flags = dv.getUint32(4, true);
  const count = dv.getUint32(8, true);
  if (argsz < MINSZ || flags !== 0) return E.EINVAL;
  // A zero-length array is only for cdev-opened devices (vfio_device_cdev_opened); this one came from a group.
  if (count === 0) return E.EINVAL;
  const pdev = st.pdev;
  if (!busResettable(pdev)) return E.ENODEV;
  const devs = affected(pdev);
  if (count > devs.length) return E.EINVAL;
  const fdsBuf = new Uint8Array(4 * count);
  if (cur.mm.copyFromUser(arg + MINSZ, fdsBuf) < 0) return E.EFAULT;
  const fv = new DataView(fdsBuf.buffer);
  const groups = new Set<VfioGroup>();
  for (let i = 0; i < count; i++) {
    const f = cur.task.fds.get(fv.getInt32(4 * i, true));
    if (f === undefined) return E.EBADF;
    const g = vfioGroupFromFile(f);
    if (g === undefined) return E.EINVAL;
    groups.add(g);
  }
  const set = devSet(pdev);
  // vfio_pci_dev_set_resettable: every affected function is in the dev_set; then each is owned by a group given.
  for (const bdf of devs) {
    const e = set.get(bdf);
    if (e === undefined || !groups.has(e.group)) return E.EINVAL;
  }
  const parts = devs.map((bdf) => {
    const e = set.get(bdf) as { vdev: VfioDevice };
    const s = hooks.stateOf(e.vdev);
    const dev = e.vdev.pdev;
    if (s !== undefined) hooks.zap(s);
    return { dev, s, header: dev.saveHeader(), msix: hooks.saveMsix(dev) };
  });
  const pci = pdev.kernel.machine.pci;
  pci.secondaryBusReset(pci.bridgeTo(pdev.bdf >>> 8) as number);
  await sleep(cur, 2_000_000);
  await sleep(cur, 100_000_000);
  for (const p of parts) {
    p.dev.restoreHeader(p.header);
    p.msix?.();
    if (p.s !== undefined) hooks.unzap(p.s);
  }
  return 0;
}
