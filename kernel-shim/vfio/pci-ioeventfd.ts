import { E } from '../errno.ts';
import { EventfdCtx } from '../fs/eventfd.ts';
import { IORESOURCE } from '../pci/regs.ts';
import type { Current } from '../task/current.ts';
import { memoryEnabled } from './pci-config.ts';
import type { VfioPciState } from './pci-state.ts';

/**
 * `VFIO_DEVICE_IOEVENTFD` (Linux `vfio_pci_ioctl_ioeventfd`, `vfio_pci_ioeventfd`): an eventfd whose every
 * signal writes `data` (1, 2, 4 or 8 bytes) at an offset of a BAR, as if user space had written it through
 * the region (a doorbell a hypervisor or another thread can ring by eventfd). Registered through the
 * virqfd mechanism; the same (BAR, offset, data, size) with fd -1 removes it.
 */

/** `offsetofend(struct vfio_device_ioeventfd, fd)`. */
const MINSZ = 28;
/** `VFIO_DEVICE_IOEVENTFD_SIZE_MASK`. */
const SIZE_MASK = 0xf;
/** `VFIO_PCI_IOEVENTFD_MAX`. */
export const IOEVENTFD_MAX = 1000;
/** `VFIO_PCI_OFFSET_SHIFT`. */
const SHIFT = 40n;

/** One registered ioeventfd. */
export interface PciIoeventfd {
  readonly bar: number;
  readonly pos: number;
  readonly data: bigint;
  readonly count: number;
  readonly remove: () => void;
}

/** The write an ioeventfd's signal makes (`vfio_pci_ioeventfd_do_write`): dropped while memory decode is off. */
function doWrite(st: VfioPciState, e: { bar: number; pos: number; data: bigint; count: number }): void {
  const r = st.pdev.resources[e.bar];
  if (r === undefined || ((r.flags & IORESOURCE.MEM) !== 0 && !memoryEnabled(st))) return;
  const mmio = st.pdev.kernel.machine.mmio;
  const a = r.start + e.pos;
  if (e.count === 8) mmio.write64(a, e.data);
  else mmio.write(a, e.count, Number(BigInt.asUintN(8 * e.count, e.data)));
}

/** Linux `vfio_pci_ioctl_ioeventfd` + `vfio_pci_ioeventfd`. */
export function ioeventfdIoctl(st: VfioPciState, cur: Current, arg: number): number {
  const b = new Uint8Array(MINSZ);
  if (cur.mm.copyFromUser(arg, b) < 0) return E.EFAULT;
  const dv = new DataView(b.buffer);
  const argsz = dv.getUint32(0, true);
  const flags = dv.getUint32(4, true);
  const offset = dv.getBigUint64(8, true);
  const data = dv.getBigUint64(16, true);
  const fd = dv.getInt32(24, true);
  if (argsz < MINSZ) return E.EINVAL;
  if ((flags & ~SIZE_MASK) !== 0) return E.EINVAL;
  const count = flags & SIZE_MASK;
  if (![1, 2, 4, 8].includes(count) || fd < -1) return E.EINVAL;
  const bar = Number(offset >> SHIFT);
  const pos = Number(offset & ((1n << SHIFT) - 1n));
  // Only BARs; within the BAR; not over the MSI-X table.
  if (bar > 5) return E.EINVAL;
  if (pos + count > st.pdev.resourceLen(bar)) return E.EINVAL;
  if (bar === st.msixBar && !(pos + count <= st.msixOffset || pos >= st.msixOffset + st.msixSize)) return E.EINVAL;
  // vfio_pci_setup_barmap: the BAR must be a memory BAR that is assigned.
  const res = st.pdev.resources[bar];
  if (res === undefined || res.flags === 0 || res.start === 0) return E.EINVAL;
  const list = st.ioeventfds;
  const same = list.findIndex((e) => e.pos === pos && e.bar === bar && e.data === data && e.count === count);
  if (same >= 0) {
    if (fd !== -1) return E.EEXIST;
    (list[same] as PciIoeventfd).remove();
    list.splice(same, 1);
    return 0;
  }
  if (fd < 0) return E.ENODEV;
  if (list.length >= IOEVENTFD_MAX) return E.ENOSPC;
  // vfio_virqfd_enable: EBADF for no file, EINVAL for a non-eventfd.
  const f = cur.task.fds.get(fd);
  if (f === undefined) return E.EBADF;
  const efd = f.private;
  if (!(efd instanceof EventfdCtx)) return E.EINVAL;
  const e = { bar, pos, data, count };
  const wakeup = (): void => {
    if (efd.count === 0n) return;
    efd.count -= efd.semaphore ? 1n : efd.count;
    doWrite(st, e);
  };
  list.push({ ...e, remove: efd.wq.addPoller(wakeup) });
  if (efd.count > 0n) doWrite(st, e);
  return 0;
}

/** Linux `vfio_pci_ioeventfds_remove` at close. */
export function ioeventfdsTeardown(st: VfioPciState): void {
  for (const e of st.ioeventfds.splice(0)) e.remove();
}
