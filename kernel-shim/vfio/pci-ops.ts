import { E } from '../errno.ts';
import { EventfdCtx, eventfdSignal } from '../fs/eventfd.ts';
import type { UserBuf } from '../fs/file.ts';
import type { Vma } from '../mm/vma.ts';
import { PCI_ROM_RESOURCE, type PciDev } from '../pci/dev.ts';
import { IORESOURCE, PCI, PCI_COMMAND, PCI_EXP, PCI_MSIX, PCI_PM } from '../pci/regs.ts';
import type { Current } from '../task/current.ts';
import { buildCapChain } from '../uapi/capchain.ts';
import { userAddr } from '../uapi/codec.ts';
import { struct } from '../uapi/layout.ts';
import { MAP, PAGE_SHIFT, PAGE_SIZE } from '../uapi/linux.ts';
import {
  VFIO, VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_FLAG, VFIO_DEVICE_FLAGS, VFIO_PCI_REGION, VFIO_REGION_INFO_CAP, VFIO_REGION_INFO_FLAG, vfio_device_info, vfio_info_cap_header,
  vfio_region_info,
} from '../uapi/vfio.ts';
import { WaitHead } from '../wait.ts';
import type { VfioDevice, VfioDeviceOps } from './device.ts';
import { vfioCheckFeature } from './feature.ts';
import { configInit, configRw, memoryEnabled, type ConfigHooks } from './pci-config.ts';
import { getHotResetInfo, hotReset, type HotResetHooks } from './pci-hot-reset.ts';
import { ioeventfdIoctl, ioeventfdsTeardown } from './pci-ioeventfd.ts';
import { getIrqInfo, irqsTeardown, setIrqs } from './pci-irqs.ts';
import type { BarMapping, VfioPciState } from './pci-state.ts';

/**
 * vfio-pci's device operations (Linux `vfio_pci_core.c`, `vfio_pci_rdwr.c`): GET_INFO, GET_REGION_INFO,
 * GET_IRQ_INFO / SET_IRQS (`pci-irqs.ts`), RESET, GET_PCI_HOT_RESET_INFO / PCI_HOT_RESET (`pci-hot-reset.ts`), region read / write (BARs through the machine's MMIO,
 * config through `pci-config.ts`) and BAR mmap. Region `i` sits at file offset `i << 40`.
 *
 * Reset follows `pci_reset_function`'s choice through `PciDev.reset` (FLR, then PM, then a secondary bus
 * reset when the device is alone below its bridge); without a method the device has no RESET flag and
 * `DEVICE_RESET` is `EINVAL`. A reset, and user space clearing Memory in Command,
 * zap the BAR mappings (their VMAs lose their backing, so an access faults with `EFAULT`, dmasim's SIGBUS);
 * they come back when memory is enabled again (Linux's fault handler inserting the pfns at the next touch).
 * `DEVICE_RESET` keeps interrupts set up as Linux does (`pci_reset_function` restores the MSI / MSI-X state;
 * dmasim rewrites the MSI-X table and Enable from what it read before the reset).
 */

/** `VFIO_PCI_OFFSET_SHIFT`. */
export const VFIO_PCI_OFFSET_SHIFT = 40;
const OFFSET_MASK = 2 ** VFIO_PCI_OFFSET_SHIFT - 1;
const PGOFF_SHIFT = VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT;

/** The MSIX_MAPPABLE capability: a bare header. */
const vfio_region_info_cap_msix = struct('vfio_region_info_cap_msix', [['header', vfio_info_cap_header]], { expectSize: 8 });

function stateOf(vdev: VfioDevice): VfioPciState | undefined {
  return vdev.priv as VfioPciState | undefined;
}

const sleep = (cur: Current, ns: number): Promise<number> => cur.waitEvent(new WaitHead('vfio-pci reset'), () => false, 'vfio-pci reset', ns);

// --- BAR mappings -------------------------------------------------------------------------------------

function zap(st: VfioPciState): void {
  for (const m of st.maps) {
    if (m.vma.backing.kind === 'none') continue;
    m.vma.backing = { kind: 'none' };
    // unmap_mapping_range: accessors re-validate (the Mapping fast path is keyed to the layout generation).
    m.mm.layoutGen++;
  }
}

function unzap(st: VfioPciState): void {
  // vfio_pci_mmap_fault: SIGBUS while memory is off or the device is in low power.
  if (!memoryEnabled(st) || st.pmEngaged) return;
  for (const m of st.maps) {
    if (m.vma.backing.kind !== 'none') continue;
    m.vma.backing = { kind: 'io', phys: m.phys };
    m.mm.layoutGen++;
  }
}

const hooks: ConfigHooks = { zap, restore: unzap };

// --- reset --------------------------------------------------------------------------------------------

/** Saves what `pci_save_state` keeps of MSI-X beyond the header (Enable and the table). */
function saveMsix(pdev: PciDev): (() => void) | undefined {
  if (!pdev.msixEnabled) return undefined;
  const cap = pdev.msixCap;
  const flags = pdev.cfgRead(cap + PCI_MSIX.FLAGS, 2);
  const tbl = pdev.cfgRead(cap + PCI_MSIX.TABLE, 4);
  const bar = pdev.resources[tbl & PCI_MSIX.BIR_MASK];
  if (bar === undefined) return undefined;
  const base = bar.start + (tbl & ~PCI_MSIX.BIR_MASK);
  const mmio = pdev.kernel.machine.mmio;
  const n = pdev.msixVectorCount * 4;
  const words = new Uint32Array(n);
  for (let i = 0; i < n; i++) words[i] = mmio.read32(base + 4 * i);
  return () => {
    pdev.cfgWrite(cap + PCI_MSIX.FLAGS, 2, flags | PCI_MSIX.FLAGS_ENABLE | PCI_MSIX.FLAGS_MASKALL);
    for (let i = 0; i < n; i++) mmio.write32(base + 4 * i, words[i] as number);
    pdev.cfgWrite(cap + PCI_MSIX.FLAGS, 2, flags);
  };
}

/** Linux `vfio_pci_ioctl_reset`: zap, `pci_try_reset_function`, mappings back. */
async function deviceReset(st: VfioPciState, cur: Current): Promise<number> {
  if (!st.resetWorks) return E.EINVAL;
  zap(st);
  const restoreMsix = saveMsix(st.pdev);
  const r = await st.pdev.reset((ns) => sleep(cur, ns));
  restoreMsix?.();
  unzap(st);
  return r;
}

const hotResetHooks: HotResetHooks = { stateOf, zap, unzap, saveMsix };

// --- low power (DEVICE_FEATURE) -----------------------------------------------------------------------

/** Linux `vfio_pci_runtime_pm_entry`: `EINVAL` if engaged already; mappings zapped until the exit. */
function pmEntry(st: VfioPciState, wake: EventfdCtx | undefined): number {
  if (st.pmEngaged) return E.EINVAL;
  zap(st);
  st.pmEngaged = true;
  st.pmWake = wake;
  return 0;
}

/** Linux `__vfio_pci_runtime_pm_exit`: out of low power; BAR mappings come back at the next touch. */
function pmExit(st: VfioPciState): void {
  if (!st.pmEngaged) return;
  st.pmEngaged = false;
  st.pmWake = undefined;
  unzap(st);
}

/**
 * The pm-runtime wrapper every device ioctl runs in (`vfio_device_pm_runtime_get`): waking a device in low
 * power with a wake eventfd signals it and leaves low power (`vfio_pci_core_runtime_resume`); without one the
 * device goes back to low power after the ioctl.
 */
function pmWakeForIoctl(st: VfioPciState): void {
  const w = st.pmWake;
  if (!st.pmEngaged || w === undefined) return;
  eventfdSignal(w);
  pmExit(st);
}

/** `struct vfio_device_low_power_entry_with_wakeup` (s32 wakeup_eventfd, u32 reserved). */
const LOW_POWER_WAKEUP_SIZE = 8;

/**
 * Linux `vfio_pci_core_ioctl_feature`: LOW_POWER_ENTRY, LOW_POWER_ENTRY_WITH_WAKEUP and LOW_POWER_EXIT (SET
 * only); PCI_VF_TOKEN is `ENOTTY` (no function here is an SR-IOV PF with a token); others `ENOTTY`. The low
 * power state is the driver's bookkeeping (mappings unusable, the wake eventfd): dmasim does not move the
 * function to D3hot.
 */
function feature(vdev: VfioDevice, cur: Current, flags: number, data: number, len: number): number {
  const st = stateOf(vdev);
  if (st === undefined) return E.ENOTTY;
  const SET = VFIO_DEVICE_FEATURE_FLAG.SET;
  switch (flags & VFIO_DEVICE_FEATURE_FLAG.MASK) {
    case VFIO_DEVICE_FEATURE.LOW_POWER_ENTRY: {
      const r = vfioCheckFeature(flags, len, SET, 0);
      return r !== 1 ? r : pmEntry(st, undefined);
    }
    case VFIO_DEVICE_FEATURE.LOW_POWER_ENTRY_WITH_WAKEUP: {
      const r = vfioCheckFeature(flags, len, SET, LOW_POWER_WAKEUP_SIZE);
      if (r !== 1) return r;
      const b = new Uint8Array(LOW_POWER_WAKEUP_SIZE);
      if (cur.mm.copyFromUser(data, b) < 0) return E.EFAULT;
      const fd = new DataView(b.buffer).getInt32(0, true);
      if (fd < 0) return E.EINVAL;
      const f = cur.task.fds.get(fd);
      if (f === undefined) return E.EBADF;
      if (!(f.private instanceof EventfdCtx)) return E.EINVAL;
      return pmEntry(st, f.private);
    }
    case VFIO_DEVICE_FEATURE.LOW_POWER_EXIT: {
      const r = vfioCheckFeature(flags, len, SET, 0);
      if (r !== 1) return r;
      pmExit(st);
      return 0;
    }
    default:
      return E.ENOTTY;
  }
}

// --- ioctls -------------------------------------------------------------------------------------------

/** Linux `vfio_pci_ioctl_get_info`. */
function getInfo(st: VfioPciState, cur: Current, arg: number): number {
  const minsz = 16;
  const buf = new Uint8Array(vfio_device_info.size);
  if (cur.mm.copyFromUser(arg, buf.subarray(0, minsz)) < 0) return E.EFAULT;
  const dv = new DataView(buf.buffer);
  const argsz = dv.getUint32(0, true);
  if (argsz < minsz) return E.EINVAL;
  dv.setUint32(4, VFIO_DEVICE_FLAGS.PCI | (st.resetWorks ? VFIO_DEVICE_FLAGS.RESET : 0), true);
  dv.setUint32(8, VFIO_PCI_REGION.NUM_REGIONS, true);
  dv.setUint32(12, 5, true);
  return cur.mm.copyToUser(arg, buf.subarray(0, Math.min(argsz, buf.length))) < 0 ? E.EFAULT : 0;
}

/** Whether BAR `i` may be mapped (`vfio_pci_probe_mmaps`: memory BARs, page-sized or page-aligned). */
function barMmappable(pdev: PciDev, i: number): boolean {
  const r = pdev.resources[i];
  if (r === undefined || (r.flags & IORESOURCE.MEM) === 0 || pdev.resourceLen(i) === 0) return false;
  return pdev.resourceLen(i) >= PAGE_SIZE || r.start % PAGE_SIZE === 0;
}

/** Linux `vfio_pci_ioctl_get_region_info`. */
function getRegionInfo(st: VfioPciState, cur: Current, arg: number): number {
  const minsz = vfio_region_info.size;
  const buf = new Uint8Array(minsz);
  if (cur.mm.copyFromUser(arg, buf) < 0) return E.EFAULT;
  const dv = new DataView(buf.buffer);
  const argsz = dv.getUint32(0, true);
  if (argsz < minsz) return E.EINVAL;
  const index = dv.getUint32(8, true);
  const pdev = st.pdev;
  let flags = 0;
  let size = 0;
  let caps: Uint8Array | undefined;
  if (index <= VFIO_PCI_REGION.BAR5) {
    size = pdev.resourceLen(index);
    if (size !== 0) {
      flags = VFIO_REGION_INFO_FLAG.READ | VFIO_REGION_INFO_FLAG.WRITE;
      if (barMmappable(pdev, index)) {
        flags |= VFIO_REGION_INFO_FLAG.MMAP;
        if (index === st.msixBar) {
          caps = buildCapChain(minsz, [{ layout: vfio_region_info_cap_msix, value: { header: { id: VFIO_REGION_INFO_CAP.MSIX_MAPPABLE, version: 1 } } }]);
        }
      }
    }
  } else if (index === VFIO_PCI_REGION.ROM) {
    // No device model has an expansion ROM: size 0, flags 0.
    size = pdev.resourceLen(PCI_ROM_RESOURCE);
    if (size !== 0) flags = VFIO_REGION_INFO_FLAG.READ;
  } else if (index === VFIO_PCI_REGION.CONFIG) {
    size = pdev.cfgSize;
    flags = VFIO_REGION_INFO_FLAG.READ | VFIO_REGION_INFO_FLAG.WRITE;
  } else {
    // VGA: no dmasim device is VGA class (vfio_pci_is_vga); past the last region likewise EINVAL.
    return E.EINVAL;
  }
  dv.setBigUint64(24, BigInt(index) << BigInt(VFIO_PCI_OFFSET_SHIFT), true);
  dv.setBigUint64(16, BigInt(size), true);
  if (caps !== undefined) {
    flags |= VFIO_REGION_INFO_FLAG.CAPS;
    if (argsz < minsz + caps.length) {
      dv.setUint32(0, minsz + caps.length, true);
      dv.setUint32(12, 0, true);
    } else {
      if (cur.mm.copyToUser(arg + minsz, caps) < 0) return E.EFAULT;
      dv.setUint32(12, minsz, true);
    }
  }
  dv.setUint32(4, flags, true);
  return cur.mm.copyToUser(arg, buf) < 0 ? E.EFAULT : 0;
}

// --- region access ------------------------------------------------------------------------------------

/** Linux `vfio_pci_bar_rw` + `vfio_pci_core_do_io_rw`: aligned 8/4/2/1 chunks, the MSI-X table skipped. */
function barRw(st: VfioPciState, bar: number, buf: UserBuf, off: number, write: boolean): number {
  const pdev = st.pdev;
  const r = pdev.resources[bar];
  if (r === undefined || r.flags === 0 || r.start === 0) return E.EINVAL;
  const end = pdev.resourceLen(bar);
  if (off >= end) return E.EINVAL;
  let count = Math.min(buf.length, end - off);
  const isMem = (r.flags & IORESOURCE.MEM) !== 0;
  const xStart = bar === st.msixBar ? st.msixOffset : 0;
  const xEnd = bar === st.msixBar ? st.msixOffset + st.msixSize : 0;
  const mmio = pdev.kernel.machine.mmio;
  const tmp = new Uint8Array(8);
  const tv = new DataView(tmp.buffer);
  let done = 0;
  while (count > 0) {
    const fillable = off < xStart ? Math.min(count, xStart - off) : off >= xEnd ? count : 0;
    let n: number;
    if (fillable === 0) {
      n = Math.min(count, xEnd - off);
      if (!write) {
        const ff = new Uint8Array(n).fill(0xff);
        if (buf.copyOut(ff, done) < 0) return E.EFAULT;
      }
    } else {
      n = fillable >= 8 && off % 8 === 0 ? 8 : fillable >= 4 && off % 4 === 0 ? 4 : fillable >= 2 && off % 2 === 0 ? 2 : 1;
      // vfio_pci_iordwr*: memory BARs need memory decode on (the user's view), else EIO.
      if (isMem && !memoryEnabled(st)) return E.EIO;
      const t = tmp.subarray(0, n);
      const a = r.start + off;
      if (write) {
        if (buf.copyIn(t, done) < 0) return E.EFAULT;
        if (!isMem) {
          // I/O space: the machine routes no port I/O; the write is dropped as a master abort.
        } else if (n === 8) mmio.write64(a, tv.getBigUint64(0, true));
        else mmio.write(a, n, n === 4 ? tv.getUint32(0, true) : n === 2 ? tv.getUint16(0, true) : tv.getUint8(0));
      } else {
        if (!isMem) tmp.fill(0xff);
        else if (n === 8) tv.setBigUint64(0, mmio.read64(a), true);
        else {
          const v = mmio.read(a, n);
          if (n === 4) tv.setUint32(0, v, true);
          else if (n === 2) tv.setUint16(0, v, true);
          else tv.setUint8(0, v);
        }
        if (buf.copyOut(t, done) < 0) return E.EFAULT;
      }
    }
    count -= n;
    done += n;
    off += n;
  }
  return done;
}

/** Linux `vfio_pci_rw`. */
function rw(vdev: VfioDevice, buf: UserBuf, pos: number, write: boolean): number {
  if (buf.length === 0) return 0;
  const st = stateOf(vdev);
  const index = Math.floor(pos / 2 ** VFIO_PCI_OFFSET_SHIFT);
  if (st === undefined || index >= VFIO_PCI_REGION.NUM_REGIONS) return E.EINVAL;
  const off = pos % 2 ** VFIO_PCI_OFFSET_SHIFT;
  switch (index) {
    case VFIO_PCI_REGION.CONFIG: return configRw(st, buf, off & OFFSET_MASK, write, hooks);
    case VFIO_PCI_REGION.ROM: return write ? E.EINVAL : barRw(st, PCI_ROM_RESOURCE, buf, off, false);
    case VFIO_PCI_REGION.VGA: return E.EINVAL;
    default: return barRw(st, index, buf, off, write);
  }
}

/** Linux `vfio_pci_core_mmap`. */
function mmap(vdev: VfioDevice, cur: Current, vma: Vma): number {
  const st = stateOf(vdev);
  const index = Math.floor(vma.pgoff / 2 ** PGOFF_SHIFT);
  if (st === undefined || index >= VFIO_PCI_REGION.NUM_REGIONS) return E.EINVAL;
  if (vma.end < vma.start) return E.EINVAL;
  if ((vma.flags & MAP.SHARED) === 0) return E.EINVAL;
  if (index >= VFIO_PCI_REGION.ROM) return E.EINVAL;
  const pdev = st.pdev;
  if (!barMmappable(pdev, index)) return E.EINVAL;
  const physLen = Math.ceil(pdev.resourceLen(index) / PAGE_SIZE) * PAGE_SIZE;
  const reqStart = (vma.pgoff % 2 ** PGOFF_SHIFT) * PAGE_SIZE;
  if (reqStart + (vma.end - vma.start) > physLen) return E.EINVAL;
  const phys = (pdev.resources[index]?.start ?? 0) + reqStart;
  const m: BarMapping = { vma, mm: cur.mm, phys };
  st.maps.add(m);
  vma.backing = memoryEnabled(st) ? { kind: 'io', phys } : { kind: 'none' };
  vma.onClose = () => st.maps.delete(m);
  return 0;
}

// --- open / close -------------------------------------------------------------------------------------

/** Linux `vfio_pci_core_enable`: enable, reset (which decides `reset_works`), save state, virtualise config. */
async function openDevice(vdev: VfioDevice, cur: Current): Promise<number> {
  const pdev = vdev.pdev;
  pdev.clearMaster();
  const r = pdev.enable();
  if (r < 0) return r;
  const resetWorks = pdev.resetMethods.length > 0 && (await pdev.reset((ns) => sleep(cur, ns))) === 0;
  const saved = pdev.saveHeader();
  const pci23 = pdev.intxMaskSupported();
  const cmd = pdev.cfgRead(PCI.COMMAND, 2);
  if (pci23 && (cmd & PCI_COMMAND.INTX_DISABLE) !== 0) pdev.cfgWrite(PCI.COMMAND, 2, cmd & ~PCI_COMMAND.INTX_DISABLE);
  let msixBar = -1;
  let msixOffset = 0;
  let msixSize = 0;
  if (pdev.msixCap !== 0) {
    const tbl = pdev.cfgRead(pdev.msixCap + PCI_MSIX.TABLE, 4);
    msixBar = tbl & PCI_MSIX.BIR_MASK;
    msixOffset = (tbl & ~PCI_MSIX.BIR_MASK) >>> 0;
    msixSize = pdev.msixVectorCount * PCI_MSIX.ENTRY_SIZE;
  }
  const st: VfioPciState = {
    pdev, irqType: undefined, intx: undefined, vectors: new Map(), msiNvec: 0, errTrigger: undefined, reqTrigger: undefined,
    pci23, virqDisabled: false, resetWorks, pmEngaged: false, pmWake: undefined, ioeventfds: [], vconfig: new Uint8Array(pdev.cfgSize), rbar: new Uint32Array(7), bardirty: true,
    msixBar, msixOffset, msixSize, maps: new Set(), saved,
  };
  configInit(pdev, st.vconfig, st.rbar);
  vdev.priv = st;
  return 0;
}

/** `__pci_reset_function_locked` without its waits: FLR, else PM D3hot -> D0, else the parent bridge's secondary bus reset. */
function resetNow(pdev: PciDev): void {
  if (pdev.resetMethods[0] === 'flr') {
    const ctl = pdev.cfgRead(pdev.pcieCap + PCI_EXP.DEVCTL, 2);
    pdev.cfgWrite(pdev.pcieCap + PCI_EXP.DEVCTL, 2, ctl | PCI_EXP.DEVCTL_BCR_FLR);
  } else if (pdev.resetMethods[0] === 'pm') {
    const ctl = pdev.cfgRead(pdev.pmCap + PCI_PM.CTRL, 2);
    pdev.cfgWrite(pdev.pmCap + PCI_PM.CTRL, 2, (ctl & ~PCI_PM.CTRL_STATE_MASK) | 3);
    pdev.cfgWrite(pdev.pmCap + PCI_PM.CTRL, 2, ctl & ~PCI_PM.CTRL_STATE_MASK);
  } else if (pdev.resetMethods[0] === 'bus') {
    const pci = pdev.kernel.machine.pci;
    pci.secondaryBusReset(pci.bridgeTo(pdev.bdf >>> 8) as number);
  }
}

/**
 * Linux `vfio_pci_core_disable`: bus mastering off, interrupts torn down, the saved state restored around
 * a reset (run at once: close has no caller to sleep in), then `pci_disable_device`.
 */
function closeDevice(vdev: VfioDevice): void {
  const st = stateOf(vdev);
  const pdev = vdev.pdev;
  pdev.clearMaster();
  if (st !== undefined) {
    ioeventfdsTeardown(st);
    irqsTeardown(st);
    zap(st);
    st.maps.clear();
    pdev.cfgWrite(PCI.COMMAND, 2, PCI_COMMAND.INTX_DISABLE);
    if (st.resetWorks) resetNow(pdev);
    pdev.restoreHeader(st.saved);
  }
  vdev.priv = undefined;
  pdev.disable();
}

/** vfio-pci's `vfio_device_ops`. */
export const vfioPciOps: VfioDeviceOps = {
  name: 'vfio-pci',
  openDevice,
  closeDevice,
  ioctl(vdev, cur, request, arg) {
    const st = stateOf(vdev);
    if (st === undefined) return E.ENOTTY;
    const a = userAddr(arg);
    pmWakeForIoctl(st);
    switch (request) {
      case VFIO.DEVICE_GET_INFO: return getInfo(st, cur, a);
      case VFIO.DEVICE_GET_REGION_INFO: return getRegionInfo(st, cur, a);
      case VFIO.DEVICE_GET_IRQ_INFO: return getIrqInfo(st, cur, a);
      case VFIO.DEVICE_SET_IRQS: return setIrqs(st, cur, a);
      case VFIO.DEVICE_RESET: return deviceReset(st, cur);
      case VFIO.DEVICE_GET_PCI_HOT_RESET_INFO: return getHotResetInfo(st, cur, a);
      case VFIO.DEVICE_PCI_HOT_RESET: return hotReset(st, cur, a, hotResetHooks);
      case VFIO.DEVICE_IOEVENTFD: return ioeventfdIoctl(st, cur, a);
      default: return E.ENOTTY;
    }
  },
  read: (vdev, _cur, buf, pos) => rw(vdev, buf, pos, false),
  write: (vdev, _cur, buf, pos) => rw(vdev, buf, pos, true),
  mmap,
  feature(vdev, cur, flags, data, len) {
    const st = stateOf(vdev);
    if (st !== undefined) pmWakeForIoctl(st);
    return feature(vdev, cur, flags, data, len);
  },
};
