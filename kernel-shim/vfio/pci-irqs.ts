import { E } from '../errno.ts';
import { EventfdCtx, eventfdSignal } from '../fs/eventfd.ts';
import { IRQ_HANDLED, IRQ_NONE, IRQF } from '../irq.ts';
import { PCI_IRQ, type PciDev } from '../pci/dev.ts';
import { PCI, PCI_COMMAND } from '../pci/regs.ts';
import type { Current } from '../task/current.ts';
import { VFIO_IRQ_INFO, VFIO_IRQ_SET, VFIO_PCI_IRQ, vfio_irq_info, vfio_irq_set } from '../uapi/vfio.ts';
import type { VfioPciState } from './pci-state.ts';

/**
 * vfio-pci's interrupts (Linux `vfio_pci_intrs.c` and the IRQ ioctls of `vfio_pci_core.c`): INTx with
 * automasking, MSI and MSI-X with one eventfd per vector, and the single ERR / REQ triggers. Check order and
 * errno as spec/linux-uapi.md section 1.5. MSI-X is not dynamic (`pci_msix_can_alloc_dyn` is false in
 * dmasim), so every index reports NORESIZE except INTx.
 */

const MINSZ_INFO = vfio_irq_info.size;
const MINSZ_SET = vfio_irq_set.size;
const U32_MAX = 0xffff_ffff;

/** Linux `vfio_pci_get_irq_count`. */
export function irqCount(pdev: PciDev, index: number): number {
  switch (index) {
    case VFIO_PCI_IRQ.INTX: return pdev.cfgRead(PCI.INTERRUPT_PIN, 1) !== 0 ? 1 : 0;
    case VFIO_PCI_IRQ.MSI: return pdev.msiVectorCount;
    case VFIO_PCI_IRQ.MSIX: return pdev.msixVectorCount;
    case VFIO_PCI_IRQ.ERR: return pdev.pcieCap !== 0 ? 1 : 0;
    case VFIO_PCI_IRQ.REQ: return 1;
    default: return 0;
  }
}

/** Linux `vfio_pci_ioctl_get_irq_info`. */
export function getIrqInfo(st: VfioPciState, cur: Current, arg: number): number {
  const buf = new Uint8Array(MINSZ_INFO);
  if (cur.mm.copyFromUser(arg, buf) < 0) return E.EFAULT;
  const dv = new DataView(buf.buffer);
  const argsz = dv.getUint32(0, true);
  const index = dv.getUint32(8, true);
  if (argsz < MINSZ_INFO || index >= VFIO_PCI_IRQ.NUM_IRQS) return E.EINVAL;
  if (index === VFIO_PCI_IRQ.ERR && st.pdev.pcieCap === 0) return E.EINVAL;
  let flags = VFIO_IRQ_INFO.EVENTFD;
  if (index === VFIO_PCI_IRQ.INTX) flags |= VFIO_IRQ_INFO.MASKABLE | VFIO_IRQ_INFO.AUTOMASKED;
  else flags |= VFIO_IRQ_INFO.NORESIZE;
  dv.setUint32(4, flags, true);
  dv.setUint32(12, irqCount(st.pdev, index), true);
  return cur.mm.copyToUser(arg, buf) < 0 ? E.EFAULT : 0;
}

/** Linux `eventfd_ctx_fdget`: `-EBADF` for no file, `-EINVAL` for a file that is not an eventfd. */
function eventfdGet(cur: Current, fd: number): EventfdCtx | number {
  const f = cur.task.fds.get(fd);
  if (f === undefined) return E.EBADF;
  return f.private instanceof EventfdCtx ? f.private : E.EINVAL;
}

/** Linux `vfio_pci_memory_lock_and_enable`: memory decode on for a table access; returns the Command to restore. */
function memoryEnable(pdev: PciDev): number {
  const cmd = pdev.cfgRead(PCI.COMMAND, 2);
  if ((cmd & PCI_COMMAND.MEMORY) === 0) pdev.cfgWrite(PCI.COMMAND, 2, cmd | PCI_COMMAND.MEMORY);
  return cmd;
}

function memoryRestore(pdev: PciDev, cmd: number): void {
  if (pdev.cfgRead(PCI.COMMAND, 2) !== cmd) pdev.cfgWrite(PCI.COMMAND, 2, cmd);
}

// --- INTx ---------------------------------------------------------------------------------------------

/** Linux `vfio_send_intx_eventfd`. */
function sendIntx(st: VfioPciState): void {
  const t = st.intx?.trigger;
  if (st.irqType === VFIO_PCI_IRQ.INTX && !st.virqDisabled && t !== undefined) eventfdSignal(t);
}

/** Linux `vfio_intx_handler`: masks (automask) and signals. */
function intxHandler(st: VfioPciState): number {
  const ctx = st.intx;
  if (ctx === undefined) return IRQ_NONE;
  let ret = IRQ_NONE;
  if (!st.pci23) {
    st.pdev.kernel.irq.disable(st.pdev.intxIrq);
    ctx.masked = true;
    ret = IRQ_HANDLED;
  } else if (!ctx.masked && st.pdev.checkAndMaskIntx()) {
    ctx.masked = true;
    ret = IRQ_HANDLED;
  }
  if (ret === IRQ_HANDLED) sendIntx(st);
  return ret;
}

/** Linux `__vfio_pci_intx_mask`. */
export function intxMask(st: VfioPciState): void {
  const ctx = st.intx;
  if (st.irqType !== VFIO_PCI_IRQ.INTX || ctx === undefined) {
    if (st.pci23) st.pdev.intx(false);
    return;
  }
  if (ctx.masked) return;
  if (st.pci23) st.pdev.intx(false);
  else st.pdev.kernel.irq.disable(st.pdev.intxIrq);
  ctx.masked = true;
}

/** Linux `__vfio_pci_intx_unmask`: a pending interrupt is re-sent to the user instead of re-raised. */
export function intxUnmask(st: VfioPciState): void {
  const ctx = st.intx;
  if (st.irqType !== VFIO_PCI_IRQ.INTX || ctx === undefined) {
    if (st.pci23) st.pdev.intx(true);
    return;
  }
  if (!ctx.masked || st.virqDisabled) return;
  let pending = false;
  if (st.pci23) pending = !st.pdev.checkAndUnmaskIntx();
  else st.pdev.kernel.irq.enable(st.pdev.intxIrq);
  ctx.masked = pending;
  if (pending) sendIntx(st);
}

/** Linux `vfio_intx_enable`. */
function intxEnable(st: VfioPciState, trigger: EventfdCtx | undefined): number {
  if (st.irqType !== undefined) return E.EINVAL;
  const pdev = st.pdev;
  if (pdev.intxIrq === 0) return E.ENODEV;
  const ctx: NonNullable<VfioPciState['intx']> = { trigger, masked: st.virqDisabled, devId: {}, unmask: undefined };
  st.intx = ctx;
  if (st.pci23) pdev.intx(!ctx.masked);
  st.irqType = VFIO_PCI_IRQ.INTX;
  const irq = pdev.kernel.irq;
  irq.intxDesc(pdev.intxIrq);
  const r = irq.request(pdev.intxIrq, () => intxHandler(st), st.pci23 ? IRQF.SHARED : 0, `vfio-intx(${pdev.name})`, ctx.devId);
  if (r < 0) {
    st.irqType = undefined;
    st.intx = undefined;
    return r;
  }
  // Linux's IRQF_NO_AUTOEN for a non-2.3 device enabled masked.
  if (!st.pci23 && ctx.masked) irq.disable(pdev.intxIrq);
  return 0;
}

/** Linux `vfio_intx_disable`. */
function intxDisable(st: VfioPciState): void {
  const ctx = st.intx;
  if (ctx !== undefined) {
    virqfdDisable(ctx);
    const irq = st.pdev.kernel.irq;
    if (!st.pci23 && ctx.masked) irq.enable(st.pdev.intxIrq);
    irq.free(st.pdev.intxIrq, ctx.devId);
  }
  st.intx = undefined;
  st.irqType = undefined;
}

function setIntxTrigger(st: VfioPciState, cur: Current, start: number, count: number, flags: number, data: Uint8Array): number {
  const isIntx = st.irqType === VFIO_PCI_IRQ.INTX;
  if (isIntx && count === 0 && (flags & VFIO_IRQ_SET.DATA_NONE) !== 0) {
    intxDisable(st);
    return 0;
  }
  if (!(isIntx || st.irqType === undefined) || start !== 0 || count !== 1) return E.EINVAL;
  if ((flags & VFIO_IRQ_SET.DATA_EVENTFD) !== 0) {
    const fd = new DataView(data.buffer, data.byteOffset).getInt32(0, true);
    let trigger: EventfdCtx | undefined;
    if (fd >= 0) {
      const t = eventfdGet(cur, fd);
      if (typeof t === 'number') return t;
      trigger = t;
    }
    if (isIntx) {
      (st.intx as NonNullable<VfioPciState['intx']>).trigger = trigger;
      return 0;
    }
    return intxEnable(st, trigger);
  }
  if (!isIntx) return E.EINVAL;
  if ((flags & VFIO_IRQ_SET.DATA_NONE) !== 0 || data[0] !== 0) sendIntx(st);
  return 0;
}

/** Linux `vfio_virqfd_disable` of the unmask virqfd. */
function virqfdDisable(ctx: NonNullable<VfioPciState['intx']>): void {
  ctx.unmask?.remove();
  ctx.unmask = undefined;
}

/**
 * Linux `vfio_virqfd_enable(vdev, vfio_pci_intx_unmask_handler, vfio_send_intx_eventfd, ..., fd)`: `EBADF`
 * for no file, `EINVAL` for a non-eventfd, `EBUSY` if one is registered. Each signal of the eventfd is
 * consumed (`eventfd_ctx_do_read` in `virqfd_wakeup`) and unmasks INTx, re-sending a still-pending one to
 * the trigger; a count already there at registration unmasks at once, without being consumed.
 */
function virqfdEnable(st: VfioPciState, cur: Current, fd: number): number {
  const ctx = st.intx as NonNullable<VfioPciState['intx']>;
  const efd = eventfdGet(cur, fd);
  if (typeof efd === 'number') return efd;
  if (ctx.unmask !== undefined) return E.EBUSY;
  const wakeup = (): void => {
    if (efd.count === 0n) return;
    efd.count -= efd.semaphore ? 1n : efd.count;
    intxUnmask(st);
  };
  ctx.unmask = { ctx: efd, remove: efd.wq.addPoller(wakeup) };
  if (efd.count > 0n) intxUnmask(st);
  return 0;
}

function setIntxMask(st: VfioPciState, cur: Current, start: number, count: number, flags: number, data: Uint8Array, unmask: boolean): number {
  if (st.irqType !== VFIO_PCI_IRQ.INTX || start !== 0 || count !== 1) return E.EINVAL;
  if ((flags & VFIO_IRQ_SET.DATA_EVENTFD) !== 0) {
    // Linux: MASK by eventfd is unimplemented (ENOTTY); UNMASK by eventfd registers (fd >= 0) or drops the virqfd.
    if (!unmask) return E.ENOTTY;
    const fd = new DataView(data.buffer, data.byteOffset).getInt32(0, true);
    if (fd >= 0) return virqfdEnable(st, cur, fd);
    virqfdDisable(st.intx as NonNullable<VfioPciState['intx']>);
    return 0;
  }
  if ((flags & VFIO_IRQ_SET.DATA_NONE) !== 0 || data[0] !== 0) {
    if (unmask) intxUnmask(st);
    else intxMask(st);
  }
  return 0;
}

// --- MSI / MSI-X --------------------------------------------------------------------------------------

/** Linux `vfio_msi_enable`: all `nvec` vectors at once; a positive return is the count the device can give. */
function msiEnable(st: VfioPciState, nvec: number, msix: boolean): number {
  if (st.irqType !== undefined) return E.EINVAL;
  const pdev = st.pdev;
  const cmd = memoryEnable(pdev);
  const r = pdev.allocIrqVectors(1, nvec, msix ? PCI_IRQ.MSIX : PCI_IRQ.MSI);
  if (r < nvec) {
    if (r > 0) pdev.freeIrqVectors();
    memoryRestore(pdev, cmd);
    return r;
  }
  memoryRestore(pdev, cmd);
  st.irqType = msix ? VFIO_PCI_IRQ.MSIX : VFIO_PCI_IRQ.MSI;
  st.msiNvec = nvec;
  return 0;
}

/** Linux `vfio_msi_set_vector_signal`. */
function msiSetVector(st: VfioPciState, cur: Current | undefined, vector: number, fd: number): number {
  const pdev = st.pdev;
  const irqs = pdev.kernel.irq;
  const old = st.vectors.get(vector);
  if (old !== undefined) {
    const cmd = memoryEnable(pdev);
    irqs.free(pdev.irqVector(vector), old);
    memoryRestore(pdev, cmd);
    st.vectors.delete(vector);
  }
  if (fd < 0 || cur === undefined) return 0;
  const irq = pdev.irqVector(vector);
  if (irq < 0) return irq;
  const t = eventfdGet(cur, fd);
  if (typeof t === 'number') return t;
  const ctx = { trigger: t };
  const cmd = memoryEnable(pdev);
  const name = `vfio-msi${st.irqType === VFIO_PCI_IRQ.MSIX ? 'x' : ''}[${vector}](${pdev.name})`;
  const r = irqs.request(irq, () => {
    eventfdSignal(t);
    return IRQ_HANDLED;
  }, 0, name, ctx);
  memoryRestore(pdev, cmd);
  if (r < 0) return r;
  st.vectors.set(vector, ctx);
  return 0;
}

/** Linux `vfio_msi_set_block`: on a failure every vector set so far is undone. */
function msiSetBlock(st: VfioPciState, cur: Current, start: number, count: number, fds: DataView): number {
  let ret = 0;
  let j = start;
  for (let i = 0; i < count && ret === 0; i++, j++) ret = msiSetVector(st, cur, j, fds.getInt32(i * 4, true));
  if (ret !== 0) for (let i = start; i < j; i++) msiSetVector(st, cur, i, -1);
  return ret;
}

/** Linux `vfio_msi_disable`. */
function msiDisable(st: VfioPciState): void {
  for (const v of Array.from(st.vectors.keys())) msiSetVector(st, undefined, v, -1);
  const cmd = memoryEnable(st.pdev);
  st.pdev.freeIrqVectors();
  memoryRestore(st.pdev, cmd);
  st.irqType = undefined;
  st.msiNvec = 0;
}

function setMsiTrigger(st: VfioPciState, cur: Current, index: number, start: number, count: number, flags: number, data: Uint8Array): number {
  const msix = index === VFIO_PCI_IRQ.MSIX;
  const isIndex = st.irqType === index;
  if (isIndex && count === 0 && (flags & VFIO_IRQ_SET.DATA_NONE) !== 0) {
    msiDisable(st);
    return 0;
  }
  if (!(isIndex || st.irqType === undefined)) return E.EINVAL;
  if ((flags & VFIO_IRQ_SET.DATA_EVENTFD) !== 0) {
    const fds = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (isIndex) {
      // Not dynamic: a vector past those enabled has no irq (pci_irq_vector's -EINVAL).
      return msiSetBlock(st, cur, start, count, fds);
    }
    const r = msiEnable(st, start + count, msix);
    if (r !== 0) return r;
    const b = msiSetBlock(st, cur, start, count, fds);
    if (b !== 0) msiDisable(st);
    return b;
  }
  if (!isIndex) return E.EINVAL;
  for (let i = start; i < start + count; i++) {
    const ctx = st.vectors.get(i);
    if (ctx === undefined) continue;
    if ((flags & VFIO_IRQ_SET.DATA_NONE) !== 0 || data[i - start] !== 0) eventfdSignal(ctx.trigger);
  }
  return 0;
}

// --- ERR / REQ ----------------------------------------------------------------------------------------

/** Linux `vfio_pci_set_ctx_trigger_single`. */
function setSingle(st: VfioPciState, cur: Current, key: 'errTrigger' | 'reqTrigger', start: number, count: number, flags: number, data: Uint8Array): number {
  if (start !== 0 || count > 1) return E.EINVAL;
  const ctx = st[key];
  if ((flags & VFIO_IRQ_SET.DATA_NONE) !== 0) {
    if (ctx !== undefined) {
      if (count !== 0) eventfdSignal(ctx);
      else st[key] = undefined;
      return 0;
    }
  } else if ((flags & VFIO_IRQ_SET.DATA_BOOL) !== 0) {
    if (count === 0) return E.EINVAL;
    if (data[0] !== 0 && ctx !== undefined) eventfdSignal(ctx);
    return 0;
  } else if ((flags & VFIO_IRQ_SET.DATA_EVENTFD) !== 0) {
    if (count === 0) return E.EINVAL;
    const fd = new DataView(data.buffer, data.byteOffset).getInt32(0, true);
    if (fd === -1) st[key] = undefined;
    else if (fd >= 0) {
      const t = eventfdGet(cur, fd);
      if (typeof t === 'number') return t;
      st[key] = t;
    }
    return 0;
  }
  return E.EINVAL;
}

/** Linux `vfio_pci_ioctl_set_irqs` with `vfio_set_irqs_validate_and_prepare` and `vfio_pci_set_irqs_ioctl`. */
export function setIrqs(st: VfioPciState, cur: Current, arg: number): number {
  const hdr = new Uint8Array(MINSZ_SET);
  if (cur.mm.copyFromUser(arg, hdr) < 0) return E.EFAULT;
  const dv = new DataView(hdr.buffer);
  const argsz = dv.getUint32(0, true);
  const flags = dv.getUint32(4, true);
  const index = dv.getUint32(8, true);
  const start = dv.getUint32(12, true);
  const count = dv.getUint32(16, true);
  const max = irqCount(st.pdev, index);
  if (argsz < MINSZ_SET || index >= VFIO_PCI_IRQ.NUM_IRQS || count >= U32_MAX - start
    || (flags & ~(VFIO_IRQ_SET.DATA_TYPE_MASK | VFIO_IRQ_SET.ACTION_TYPE_MASK)) !== 0) return E.EINVAL;
  if (start >= max || start + count > max) return E.EINVAL;
  let size: number;
  switch (flags & VFIO_IRQ_SET.DATA_TYPE_MASK) {
    case VFIO_IRQ_SET.DATA_NONE: size = 0; break;
    case VFIO_IRQ_SET.DATA_BOOL: size = 1; break;
    case VFIO_IRQ_SET.DATA_EVENTFD: size = 4; break;
    default: return E.EINVAL;
  }
  let data = new Uint8Array(4);
  if (size !== 0) {
    if (argsz - MINSZ_SET < count * size) return E.EINVAL;
    data = new Uint8Array(Math.max(4, count * size));
    if (cur.mm.copyFromUser(arg + MINSZ_SET, data.subarray(0, count * size)) < 0) return E.EFAULT;
  }
  const action = flags & VFIO_IRQ_SET.ACTION_TYPE_MASK;
  switch (index) {
    case VFIO_PCI_IRQ.INTX:
      if (action === VFIO_IRQ_SET.ACTION_MASK) return setIntxMask(st, cur, start, count, flags, data, false);
      if (action === VFIO_IRQ_SET.ACTION_UNMASK) return setIntxMask(st, cur, start, count, flags, data, true);
      if (action === VFIO_IRQ_SET.ACTION_TRIGGER) return setIntxTrigger(st, cur, start, count, flags, data);
      return E.ENOTTY;
    case VFIO_PCI_IRQ.MSI:
    case VFIO_PCI_IRQ.MSIX:
      return action === VFIO_IRQ_SET.ACTION_TRIGGER ? setMsiTrigger(st, cur, index, start, count, flags, data) : E.ENOTTY;
    case VFIO_PCI_IRQ.ERR:
      return action === VFIO_IRQ_SET.ACTION_TRIGGER && st.pdev.pcieCap !== 0 ? setSingle(st, cur, 'errTrigger', start, count, flags, data) : E.ENOTTY;
    default:
      return action === VFIO_IRQ_SET.ACTION_TRIGGER ? setSingle(st, cur, 'reqTrigger', start, count, flags, data) : E.ENOTTY;
  }
}

/** Tears down whatever interrupt type is enabled (`vfio_pci_core_disable`'s NONE|TRIGGER with count 0), and ERR/REQ. */
export function irqsTeardown(st: VfioPciState): void {
  if (st.irqType === VFIO_PCI_IRQ.INTX) intxDisable(st);
  else if (st.irqType === VFIO_PCI_IRQ.MSI || st.irqType === VFIO_PCI_IRQ.MSIX) msiDisable(st);
  st.errTrigger = undefined;
  st.reqTrigger = undefined;
}
