import { E } from '../errno.ts';
import type { UserBuf } from '../fs/file.ts';
import { PCI_ROM_RESOURCE, type PciDev } from '../pci/dev.ts';
import { IORESOURCE, PCI, PCI_BASE_ADDRESS, PCI_CAP_ID, PCI_COMMAND, PCI_MSI, PCI_STATUS } from '../pci/regs.ts';
import { intxMask, intxUnmask } from './pci-irqs.ts';
import type { VfioPciState } from './pci-state.ts';

/**
 * vfio-pci's configuration region (Linux `vfio_pci_config.c`), as far as dmasim virtualises it:
 * - the type 0 header by Linux's `init_pci_cap_basic_perm` table: vendor/device, the Status capability bit,
 *   the capability pointer, Interrupt Line and Pin read from `vconfig`; the BARs and ROM BAR fully virtual
 *   (sizing works: all-ones reads back the size mask, `vfio_bar_fixup`); Command written to hardware except
 *   INTx Disable, which is virtual and masks / unmasks INTx; clearing Memory zaps the BAR mappings, setting
 *   it restores them (and the real BARs if a backdoor reset cleared them, `vfio_bar_restore`);
 * - capabilities read directly from hardware, writes dropped (Linux's default `cap_perms`; the PM, PCIe
 *   and MSI permission tables are not modelled: dmasim keeps them read-only);
 * - the gaps between capabilities raw read / write (`unassigned_perms`).
 * Accesses are split into aligned 4/2/1-byte chunks; a range past `cfg_size` is `-EFAULT`.
 */

type Perm = { virt: Uint8Array; write: Uint8Array };

/** `init_pci_cap_basic_perm`. */
const BASIC: Perm = (() => {
  const virt = new Uint8Array(PCI.STD_HEADER_SIZEOF);
  const write = new Uint8Array(PCI.STD_HEADER_SIZEOF);
  const set = (off: number, len: number, v: number, w: number): void => {
    for (let i = 0; i < len; i++) {
      virt[off + i] = (v >>> (8 * i)) & 0xff;
      write[off + i] = (w >>> (8 * i)) & 0xff;
    }
  };
  set(PCI.VENDOR_ID, 2, 0xffff, 0);
  set(PCI.DEVICE_ID, 2, 0xffff, 0);
  set(PCI.COMMAND, 2, PCI_COMMAND.INTX_DISABLE, 0xffff);
  set(PCI.STATUS, 2, PCI_STATUS.CAP_LIST, 0);
  set(0x0c, 1, 0, 0xff);
  set(0x0d, 1, 0, 0xff);
  set(0x0f, 1, 0, 0xff);
  for (let b = 0; b < 6; b++) set(PCI.BASE_ADDRESS_0 + 4 * b, 4, 0xffff_ffff, 0xffff_ffff);
  set(PCI.ROM_ADDRESS, 4, 0xffff_ffff, 0xffff_ffff);
  set(PCI.CAPABILITY_LIST, 1, 0xff, 0);
  set(PCI.INTERRUPT_LINE, 1, 0xff, 0xff);
  set(PCI.INTERRUPT_PIN, 1, 0xff, 0);
  return { virt, write };
})();

const MAP_BASIC = 1;
const MAP_CAP = 2;
const MAP_RAW = 0;

/** Which bytes of standard config space belong to a capability (Linux `pci_config_map`). */
export function configMap(pdev: PciDev): Uint8Array {
  const map = new Uint8Array(pdev.cfgSize);
  map.fill(MAP_BASIC, 0, PCI.STD_HEADER_SIZEOF);
  const len = (id: number, pos: number): number => {
    switch (id) {
      case PCI_CAP_ID.PM: return 8;
      case PCI_CAP_ID.MSIX: return 12;
      case PCI_CAP_ID.EXP: return 60;
      case PCI_CAP_ID.MSI: {
        const f = pdev.cfgRead(pos + PCI_MSI.FLAGS, 2);
        return 10 + ((f & PCI_MSI.FLAGS_64BIT) !== 0 ? 4 : 0) + ((f & PCI_MSI.FLAGS_MASKBIT) !== 0 ? 10 : 0);
      }
      default: return 4;
    }
  };
  if ((pdev.cfgRead(PCI.STATUS, 2) & PCI_STATUS.CAP_LIST) === 0) return map;
  let pos = pdev.cfgRead(PCI.CAPABILITY_LIST, 1) & ~3;
  for (let ttl = 48; ttl > 0 && pos >= 0x40; ttl--) {
    const hdr = pdev.cfgRead(pos, 2);
    map.fill(MAP_CAP, pos, Math.min(PCI.CFG_SPACE_SIZE, pos + ((len(hdr & 0xff, pos) + 3) & ~3)));
    pos = (hdr >>> 8) & ~3;
  }
  return map;
}

/** `vfio_config_init`: `vconfig` is the device's config space as open found it; BARs saved as `rbar`. */
export function configInit(pdev: PciDev, vconfig: Uint8Array, rbar: Uint32Array): void {
  const dv = new DataView(vconfig.buffer, vconfig.byteOffset, vconfig.byteLength);
  for (let o = 0; o < vconfig.length; o += 4) dv.setUint32(o, pdev.cfgRead(o, 4), true);
  for (let i = 0; i < 7; i++) rbar[i] = dv.getUint32(i < 6 ? PCI.BASE_ADDRESS_0 + 4 * i : PCI.ROM_ADDRESS, true);
}

/** `vfio_bar_fixup`: the virtual BARs read back their size mask and flags. */
function barFixup(st: VfioPciState): void {
  if (!st.bardirty) return;
  const pdev = st.pdev;
  const dv = new DataView(st.vconfig.buffer, st.vconfig.byteOffset);
  for (let i = 0; i < 6; i++) {
    const at = PCI.BASE_ADDRESS_0 + 4 * i;
    const r = pdev.resources[i];
    if (r === undefined || r.flags === 0 || r.start === 0) {
      dv.setUint32(at, 0, true);
      continue;
    }
    const len = BigInt(pdev.resourceLen(i));
    const mask = BigInt.asUintN(64, ~(len - 1n));
    let flags = 0;
    if ((r.flags & IORESOURCE.IO) !== 0) flags = PCI_BASE_ADDRESS.SPACE_IO;
    else {
      if ((r.flags & IORESOURCE.PREFETCH) !== 0) flags |= PCI_BASE_ADDRESS.MEM_PREFETCH;
      if ((r.flags & IORESOURCE.MEM_64) !== 0) flags |= PCI_BASE_ADDRESS.MEM_TYPE_64;
    }
    const v = ((dv.getUint32(at, true) & Number(mask & 0xffff_ffffn)) | flags) >>> 0;
    dv.setUint32(at, v, true);
    if ((flags & PCI_BASE_ADDRESS.MEM_TYPE_64) !== 0 && i < 5) {
      dv.setUint32(at + 4, (dv.getUint32(at + 4, true) & Number(mask >> 32n)) >>> 0, true);
      i++;
    }
  }
  if (pdev.resourceLen(PCI_ROM_RESOURCE) === 0) dv.setUint32(PCI.ROM_ADDRESS, 0, true);
  st.bardirty = false;
}

function isBar(off: number): boolean {
  return (off >= PCI.BASE_ADDRESS_0 && off < PCI.BASE_ADDRESS_0 + 24) || (off >= PCI.ROM_ADDRESS && off < PCI.ROM_ADDRESS + 4);
}

function getN(b: Uint8Array, off: number, n: number): number {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = (v * 256) + (b[off + i] as number);
  return v >>> 0;
}

function putN(b: Uint8Array, off: number, n: number, v: number): void {
  for (let i = 0; i < n; i++) b[off + i] = (v >>> (8 * i)) & 0xff;
}

/** Hooks the config region calls back into the rest of vfio-pci (BAR mappings). */
export interface ConfigHooks {
  zap(st: VfioPciState): void;
  restore(st: VfioPciState): void;
}

function readChunk(st: VfioPciState, map: Uint8Array, pos: number, n: number): number {
  const pdev = st.pdev;
  if (map[pos] === MAP_BASIC) {
    if (isBar(pos)) barFixup(st);
    const virt = getN(BASIC.virt, pos, n);
    const phys = virt === 2 ** (8 * n) - 1 ? 0 : pdev.cfgRead(pos, n);
    return ((phys & ~virt) | (getN(st.vconfig, pos, n) & virt)) >>> 0;
  }
  return pdev.cfgRead(pos, n);
}

function writeChunk(st: VfioPciState, map: Uint8Array, pos: number, n: number, val: number, hooks: ConfigHooks): void {
  const pdev = st.pdev;
  if (map[pos] === MAP_CAP) return;
  if (map[pos] === MAP_RAW) {
    pdev.cfgWrite(pos, n, val);
    return;
  }
  // vfio_basic_config_write.
  const isCmd = pos === PCI.COMMAND;
  const newMem = (val & PCI_COMMAND.MEMORY) !== 0;
  if (isCmd) {
    const phys = pdev.cfgRead(PCI.COMMAND, 2);
    const virtCmd = getN(st.vconfig, PCI.COMMAND, 2);
    if (!newMem) hooks.zap(st);
    const needRestore = st.rbar.some((v, i) => i < 6 && v !== 0 && pdev.cfgRead(PCI.BASE_ADDRESS_0 + 4 * i, 4) !== v);
    if ((newMem && (virtCmd & PCI_COMMAND.MEMORY) !== 0 && (phys & PCI_COMMAND.MEMORY) === 0)
      || ((val & PCI_COMMAND.IO) !== 0 && (virtCmd & PCI_COMMAND.IO) !== 0 && (phys & PCI_COMMAND.IO) === 0) || needRestore) {
      pdev.kernel.log.printk('info', `vfio-pci ${pdev.name}: vfio_bar_restore: reset recovery - restoring BARs`);
      for (let i = 0; i < 6; i++) pdev.cfgWrite(PCI.BASE_ADDRESS_0 + 4 * i, 4, st.rbar[i] as number);
      pdev.cfgWrite(PCI.ROM_ADDRESS, 4, st.rbar[6] as number);
    }
  }
  // vfio_default_config_write.
  const write = getN(BASIC.write, pos, n);
  const virt = getN(BASIC.virt, pos, n);
  if (write !== 0) {
    if ((write & virt) !== 0) putN(st.vconfig, pos, n, ((getN(st.vconfig, pos, n) & ~(write & virt)) | (val & write & virt)) >>> 0);
    if ((write & ~virt) !== 0) {
      const phys = pdev.cfgRead(pos, n);
      pdev.cfgWrite(pos, n, ((phys & ~(write & ~virt)) | (val & write & ~virt)) >>> 0);
    }
  }
  if (isCmd) {
    const mask = PCI_COMMAND.MEMORY | PCI_COMMAND.IO;
    putN(st.vconfig, PCI.COMMAND, 2, (getN(st.vconfig, PCI.COMMAND, 2) & ~mask) | (val & mask));
    if (newMem) hooks.restore(st);
  }
  if (pos >= PCI.COMMAND && pos <= PCI.COMMAND + 1) {
    const dis = (getN(st.vconfig, PCI.COMMAND, 2) & PCI_COMMAND.INTX_DISABLE) !== 0;
    if (dis && !st.virqDisabled) {
      st.virqDisabled = true;
      intxMask(st);
    } else if (!dis && st.virqDisabled) {
      st.virqDisabled = false;
      intxUnmask(st);
    }
  }
  if (isBar(pos)) st.bardirty = true;
}

/** Linux `vfio_pci_config_rw`: any chunk's error is the call's. */
export function configRw(st: VfioPciState, buf: UserBuf, off: number, write: boolean, hooks: ConfigHooks): number {
  const size = st.pdev.cfgSize;
  const map = configMap(st.pdev);
  let done = 0;
  let count = buf.length;
  let pos = off;
  const tmp = new Uint8Array(4);
  while (count > 0) {
    if (pos < 0 || pos >= size || pos + count > size) return E.EFAULT;
    const n = count >= 4 && pos % 4 === 0 ? 4 : count >= 2 && pos % 2 === 0 ? 2 : 1;
    const t = tmp.subarray(0, n);
    if (write) {
      if (buf.copyIn(t, done) < 0) return E.EFAULT;
      writeChunk(st, map, pos, n, getN(t, 0, n), hooks);
    } else {
      putN(t, 0, n, readChunk(st, map, pos, n));
      if (buf.copyOut(t, done) < 0) return E.EFAULT;
    }
    count -= n;
    done += n;
    pos += n;
  }
  return done;
}

/** Whether user space has memory decode on (`__vfio_pci_memory_enabled`). */
export function memoryEnabled(st: VfioPciState): boolean {
  return (getN(st.vconfig, PCI.COMMAND, 2) & PCI_COMMAND.MEMORY) !== 0;
}
