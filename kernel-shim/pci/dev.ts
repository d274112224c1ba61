import { E } from '../errno.ts';
import type { Device } from '../base/device.ts';
import type { Kernel } from '../kernel.ts';
import type { IrqDesc } from '../irq.ts';
import type { PciDriver } from './driver.ts';
import {
  IORESOURCE, MSI_ADDRESS_BASE, PCI, PCI_BASE_ADDRESS, PCI_CAP_ID, PCI_COMMAND, PCI_EXP, PCI_MSI, PCI_MSIX, PCI_PM, PCI_STATUS,
} from './regs.ts';

/** A Linux `struct resource` of a PCI device: `[start, end]` inclusive, as sysfs `resource` prints it. */
export interface PciResource {
  readonly start: number;
  readonly end: number;
  /** `IORESOURCE_*` flags with the BAR's low bits, as Linux keeps them; 0 for an unused slot. */
  readonly flags: number;
}

/** Resource slots Linux prints in sysfs `resource` for an endpoint: 6 BARs, the ROM, 6 SR-IOV BARs. */
export const PCI_BRIDGE_RESOURCES = 13;
/** Slot of the expansion ROM. */
export const PCI_ROM_RESOURCE = 6;

/** `pci_alloc_irq_vectors` flags. */
export const PCI_IRQ = { INTX: 1, MSI: 2, MSIX: 4, ALL_TYPES: 7 } as const;

/** Linux reset methods in the order Linux tries them (`pci_reset_fn_methods`), as far as dmasim models them. */
export type PciResetMethod = 'flr' | 'pm' | 'bus';

/** Formats a bus/device/function as Linux names it: `0000:00:03.0`. */
export function pciName(bdf: number): string {
  const bus = (bdf >> 8) & 0xff;
  const dev = (bdf >> 3) & 0x1f;
  const fn = bdf & 7;
  return `0000:${bus.toString(16).padStart(2, '0')}:${dev.toString(16).padStart(2, '0')}.${fn}`;
}

/**
 * A PCI function as the kernel knows it (Linux `struct pci_dev`): identity and resources read from
 * configuration space at enumeration, capability offsets, the bound driver, and the services drivers call
 * (`pci_enable_device`, `pci_set_master`, INTx masking, MSI / MSI-X vectors, function reset). Every access
 * goes through configuration cycles or MMIO, as a real kernel's does.
 */
export class PciDev implements Device {
  readonly kernel: Kernel;
  readonly bdf: number;
  readonly name: string;
  readonly sysfsPath: string;
  readonly parent: Device | undefined = undefined;
  readonly vendor: number;
  readonly device: number;
  readonly subsystemVendor: number;
  readonly subsystemDevice: number;
  /** 24-bit class code (`0x00ff00`). */
  readonly classCode: number;
  readonly revision: number;
  readonly headerType: number;
  /** Interrupt Pin (0 none, 1..4 INTA..INTD). */
  readonly pin: number;
  /** The INTx irq (the line firmware routed, from Interrupt Line), or 0 without a pin; while MSI is on, its irq. */
  irq: number;
  /** The INTx irq, kept while MSI replaces {@link irq}. */
  readonly intxIrq: number;
  /** 256 for conventional PCI, 4096 for PCI Express. */
  readonly cfgSize: number;
  /** Capability offsets (0: absent). */
  readonly msiCap: number;
  readonly msixCap: number;
  readonly pcieCap: number;
  readonly pmCap: number;
  readonly resources: PciResource[];
  /** INTx masking through Command bit 10 does not stick (`pci_intx_mask_broken`). */
  readonly brokenIntxMasking: boolean;
  readonly resetMethods: readonly PciResetMethod[];
  /** The bound driver. */
  driver: PciDriver | undefined;
  /** Driver-private data (`pci_set_drvdata`). */
  driverData: unknown;
  /** sysfs `driver_override`. */
  driverOverride: string | undefined;
  /** `pci_enable_device` nesting count (sysfs `enable`). */
  enableCnt = 0;
  msiEnabled = false;
  msixEnabled = false;
  /** The irqs of the allocated MSI / MSI-X vectors. */
  #vectors: IrqDesc[] = [];
  #cpuVectors: number[] = [];

  constructor(kernel: Kernel, bdf: number) {
    this.kernel = kernel;
    this.bdf = bdf;
    this.name = pciName(bdf);
    this.sysfsPath = `/sys/devices/pci0000:${this.name.slice(5, 7)}/${this.name}`;
    const id = this.cfgRead(PCI.VENDOR_ID, 4);
    this.vendor = id & 0xffff;
    this.device = id >>> 16;
    const cr = this.cfgRead(PCI.CLASS_REVISION, 4);
    this.classCode = cr >>> 8;
    this.revision = cr & 0xff;
    this.headerType = this.cfgRead(PCI.HEADER_TYPE, 1) & 0x7f;
    this.subsystemVendor = this.cfgRead(PCI.SUBSYSTEM_VENDOR_ID, 2);
    this.subsystemDevice = this.cfgRead(PCI.SUBSYSTEM_ID, 2);
    this.pin = this.cfgRead(PCI.INTERRUPT_PIN, 1);
    this.intxIrq = this.pin === 0 ? 0 : this.cfgRead(PCI.INTERRUPT_LINE, 1);
    this.irq = this.intxIrq;
    this.msiCap = this.findCapability(PCI_CAP_ID.MSI);
    this.msixCap = this.findCapability(PCI_CAP_ID.MSIX);
    this.pcieCap = this.findCapability(PCI_CAP_ID.EXP);
    this.pmCap = this.findCapability(PCI_CAP_ID.PM);
    this.cfgSize = this.pcieCap !== 0 ? PCI.CFG_SPACE_EXP_SIZE : PCI.CFG_SPACE_SIZE;
    this.resources = this.#readBars();
    this.brokenIntxMasking = this.#intxMaskBroken();
    const methods: PciResetMethod[] = [];
    if (this.pcieCap !== 0 && (this.cfgRead(this.pcieCap + PCI_EXP.DEVCAP, 4) & PCI_EXP.DEVCAP_FLR) !== 0) methods.push('flr');
    if (this.pmCap !== 0 && (this.cfgRead(this.pmCap + PCI_PM.CTRL, 2) & PCI_PM.CTRL_NO_SOFT_RESET) === 0) methods.push('pm');
    if (this.#busResettable()) methods.push('bus');
    this.resetMethods = methods;
  }

  /**
   * Linux `pci_parent_bus_reset`'s probe: not on the root bus, below a bridge, and alone on its bus (no
   * other function, no bridge beside it).
   */
  #busResettable(): boolean {
    const bus = this.bdf >>> 8;
    const pci = this.kernel.machine.pci;
    if (bus === 0 || pci.bridgeTo(bus) === undefined) return false;
    const others = pci.functions.filter((f) => f.bdf >>> 8 === bus && f.bdf !== this.bdf).length
      + this.kernel.machine.config.pci.bridges.filter((b) => b.bdf >>> 8 === bus).length;
    return others === 0;
  }

  /** A configuration read (Linux `pci_read_config_*`). */
  cfgRead(offset: number, size: number): number {
    return this.kernel.machine.pci.configRead(this.bdf, offset, size);
  }

  /** A configuration write. */
  cfgWrite(offset: number, size: number, value: number): void {
    this.kernel.machine.pci.configWrite(this.bdf, offset, size, value);
  }

  /** Linux `pci_find_capability`: the offset of capability `id`, or 0 (the walk stops after 48 entries, as Linux's does). */
  findCapability(id: number): number {
    if ((this.cfgRead(PCI.STATUS, 2) & PCI_STATUS.CAP_LIST) === 0) return 0;
    let pos = this.cfgRead(PCI.CAPABILITY_LIST, 1);
    for (let ttl = 48; ttl > 0 && pos >= 0x40; ttl--) {
      pos &= ~3;
      const hdr = this.cfgRead(pos, 2);
      if ((hdr & 0xff) === 0xff) break;
      if ((hdr & 0xff) === id) return pos;
      pos = hdr >>> 8;
    }
    return 0;
  }

  /** Linux `__pci_read_base` for each BAR: keeps firmware's address, sizes it with decode off. */
  #readBars(): PciResource[] {
    const res: PciResource[] = Array.from({ length: PCI_BRIDGE_RESOURCES }, () => ({ start: 0, end: 0, flags: 0 }));
    const cmd = this.cfgRead(PCI.COMMAND, 2);
    const decode = PCI_COMMAND.IO | PCI_COMMAND.MEMORY;
    if ((cmd & decode) !== 0) this.cfgWrite(PCI.COMMAND, 2, cmd & ~decode);
    for (let i = 0; i < 6; i++) {
      const at = PCI.BASE_ADDRESS_0 + 4 * i;
      const lo = this.cfgRead(at, 4);
      this.cfgWrite(at, 4, 0xffff_ffff);
      const szLo = this.cfgRead(at, 4);
      this.cfgWrite(at, 4, lo);
      if (szLo === 0 || szLo === 0xffff_ffff) continue;
      if ((lo & PCI_BASE_ADDRESS.SPACE_IO) !== 0) {
        const size = (~(szLo & PCI_BASE_ADDRESS.IO_MASK) & 0xffff) + 1;
        const start = lo & PCI_BASE_ADDRESS.IO_MASK;
        res[i] = { start, end: start + size - 1, flags: IORESOURCE.IO | IORESOURCE.SIZEALIGN | (lo & 3) };
        continue;
      }
      const is64 = (lo & PCI_BASE_ADDRESS.MEM_TYPE_MASK) === PCI_BASE_ADDRESS.MEM_TYPE_64;
      let start = (lo & PCI_BASE_ADDRESS.MEM_MASK) >>> 0;
      let size = ((~(szLo & PCI_BASE_ADDRESS.MEM_MASK) >>> 0) + 1) >>> 0;
      if (is64) {
        const hiAt = at + 4;
        const hi = this.cfgRead(hiAt, 4);
        this.cfgWrite(hiAt, 4, 0xffff_ffff);
        const szHi = this.cfgRead(hiAt, 4);
        this.cfgWrite(hiAt, 4, hi);
        start += hi * 2 ** 32;
        const mask = (BigInt(szHi) << 32n) | BigInt((szLo & PCI_BASE_ADDRESS.MEM_MASK) >>> 0);
        size = Number((~mask & 0xffff_ffff_ffff_ffffn) + 1n);
      }
      if (size === 0) size = 2 ** 32;
      let flags = IORESOURCE.MEM | IORESOURCE.SIZEALIGN | (lo & 0xf);
      if ((lo & PCI_BASE_ADDRESS.MEM_PREFETCH) !== 0) flags |= IORESOURCE.PREFETCH;
      if (is64) flags |= IORESOURCE.MEM_64;
      res[i] = { start, end: start + size - 1, flags };
      if (is64) i++;
    }
    if ((cmd & decode) !== 0) this.cfgWrite(PCI.COMMAND, 2, cmd);
    return res;
  }

  /** Linux `pci_intx_mask_broken`: toggles INTx Disable and checks it sticks. */
  #intxMaskBroken(): boolean {
    const orig = this.cfgRead(PCI.COMMAND, 2);
    const toggle = orig ^ PCI_COMMAND.INTX_DISABLE;
    this.cfgWrite(PCI.COMMAND, 2, toggle);
    const now = this.cfgRead(PCI.COMMAND, 2);
    this.cfgWrite(PCI.COMMAND, 2, orig);
    return now !== toggle;
  }

  /** Size of resource `i` (0 if unused). */
  resourceLen(i: number): number {
    const r = this.resources[i];
    return r === undefined || r.flags === 0 ? 0 : r.end - r.start + 1;
  }

  /** Linux `pci_enable_device`: turns on decode for the BARs present and clears INTx Disable (first enable only). */
  enable(): number {
    if (++this.enableCnt > 1) return 0;
    let cmd = this.cfgRead(PCI.COMMAND, 2);
    const old = cmd;
    for (let i = 0; i < 6; i++) {
      const f = this.resources[i]?.flags ?? 0;
      if ((f & IORESOURCE.IO) !== 0) cmd |= PCI_COMMAND.IO;
      if ((f & IORESOURCE.MEM) !== 0) cmd |= PCI_COMMAND.MEMORY;
    }
    if (cmd !== old) this.cfgWrite(PCI.COMMAND, 2, cmd);
    if (!this.msiEnabled && !this.msixEnabled && this.pin !== 0 && (cmd & PCI_COMMAND.INTX_DISABLE) !== 0) {
      this.cfgWrite(PCI.COMMAND, 2, cmd & ~PCI_COMMAND.INTX_DISABLE);
    }
    return 0;
  }

  /** Linux `pci_disable_device`: at the last disable, bus mastering goes off. */
  disable(): void {
    if (this.enableCnt === 0) {
      this.kernel.log.printk('warn', `pci ${this.name}: disabling already-disabled device`);
      return;
    }
    if (--this.enableCnt > 0) return;
    this.#setCommandBit(PCI_COMMAND.MASTER, false);
  }

  /** Linux `pci_set_master`. */
  setMaster(): void {
    this.#setCommandBit(PCI_COMMAND.MASTER, true);
  }

  /** Linux `pci_clear_master`. */
  clearMaster(): void {
    this.#setCommandBit(PCI_COMMAND.MASTER, false);
  }

  /** Linux `pci_intx`: enables (or masks) INTx through Command bit 10. */
  intx(enable: boolean): void {
    this.#setCommandBit(PCI_COMMAND.INTX_DISABLE, !enable);
  }

  #setCommandBit(bit: number, on: boolean): void {
    const cmd = this.cfgRead(PCI.COMMAND, 2);
    const next = on ? cmd | bit : cmd & ~bit;
    if (next !== cmd) this.cfgWrite(PCI.COMMAND, 2, next);
  }

  /** Linux `pci_intx_mask_supported`. */
  intxMaskSupported(): boolean {
    return !this.brokenIntxMasking;
  }

  /**
   * Linux `pci_check_and_mask_intx`: if Status reports an interrupt, sets INTx Disable and returns true;
   * otherwise (not this device's interrupt) returns false and changes nothing.
   */
  checkAndMaskIntx(): boolean {
    return this.#checkAndSetIntxMask(true);
  }

  /** Linux `pci_check_and_unmask_intx`: clears INTx Disable unless an interrupt is already pending. */
  checkAndUnmaskIntx(): boolean {
    return this.#checkAndSetIntxMask(false);
  }

  #checkAndSetIntxMask(mask: boolean): boolean {
    const dword = this.cfgRead(PCI.COMMAND, 4);
    const pending = ((dword >>> 16) & PCI_STATUS.INTERRUPT) !== 0;
    if (mask !== pending) return false;
    const orig = dword & 0xffff;
    const next = mask ? orig | PCI_COMMAND.INTX_DISABLE : orig & ~PCI_COMMAND.INTX_DISABLE;
    if (next !== orig) this.cfgWrite(PCI.COMMAND, 2, next);
    return true;
  }

  /** MSI-X table size, MSI vector capacity (0 without the capability). */
  get msixVectorCount(): number {
    return this.msixCap === 0 ? 0 : (this.cfgRead(this.msixCap + PCI_MSIX.FLAGS, 2) & PCI_MSIX.FLAGS_QSIZE) + 1;
  }

  get msiVectorCount(): number {
    return this.msiCap === 0 ? 0 : 1 << ((this.cfgRead(this.msiCap + PCI_MSI.FLAGS, 2) & PCI_MSI.FLAGS_QMASK) >> 1);
  }

  /**
   * Linux `pci_alloc_irq_vectors(dev, min, max, flags)`: MSI-X first, then MSI, then INTx, as `flags`
   * allow; returns the number of vectors or `-errno` (`-ERANGE` for `max < min` asked of MSI or MSI-X, as
   * `__pci_enable_msi{,x}_range` check first; `-EINVAL` for other bad bounds or vectors already on;
   * `-ENOSPC` when no type gives `min`).
   */
  allocIrqVectors(min: number, max: number, flags: number): number {
    if (Number.isInteger(min) && Number.isInteger(max) && max < min && (flags & (PCI_IRQ.MSI | PCI_IRQ.MSIX)) !== 0) return E.ERANGE;
    if (!(Number.isInteger(min) && Number.isInteger(max)) || min < 1 || max < min) return E.EINVAL;
    if (this.msiEnabled || this.msixEnabled) return E.EINVAL;
    if ((flags & PCI_IRQ.MSIX) !== 0 && this.msixCap !== 0) {
      const n = Math.min(max, this.msixVectorCount);
      if (n >= min) {
        const r = this.#enableMsix(n);
        if (r >= 0) return r;
      }
    }
    if ((flags & PCI_IRQ.MSI) !== 0 && this.msiCap !== 0) {
      // Linux allocates a power of two of MSI vectors, at most the capability's.
      let n = 1;
      while (n * 2 <= Math.min(max, this.msiVectorCount)) n *= 2;
      if (n >= min) {
        const r = this.#enableMsi(n);
        if (r >= 0) return r;
      }
    }
    if ((flags & PCI_IRQ.INTX) !== 0 && min === 1 && this.intxIrq !== 0) {
      this.kernel.irq.intxDesc(this.intxIrq);
      return 1;
    }
    return E.ENOSPC;
  }

  /** Linux `pci_irq_vector(dev, nr)`: the irq of vector `nr`, or `-EINVAL`. */
  irqVector(nr: number): number {
    if (this.msiEnabled || this.msixEnabled) return this.#vectors[nr]?.irq ?? E.EINVAL;
    return nr === 0 && this.intxIrq !== 0 ? this.intxIrq : E.EINVAL;
  }

  /** Linux `pci_free_irq_vectors`: turns MSI / MSI-X off and frees their irqs (their handlers must be freed). */
  freeIrqVectors(): void {
    if (this.msixEnabled) {
      // pci_msix_shutdown: every entry masked, MSI-X Enable off, INTx back on (pci_intx_for_msi).
      for (const d of this.#vectors) d.mask?.(true);
      const flags = this.cfgRead(this.msixCap + PCI_MSIX.FLAGS, 2);
      this.cfgWrite(this.msixCap + PCI_MSIX.FLAGS, 2, flags & ~(PCI_MSIX.FLAGS_ENABLE | PCI_MSIX.FLAGS_MASKALL));
      this.msixEnabled = false;
      this.intx(true);
    }
    if (this.msiEnabled) {
      const flags = this.cfgRead(this.msiCap + PCI_MSI.FLAGS, 2);
      this.cfgWrite(this.msiCap + PCI_MSI.FLAGS, 2, flags & ~PCI_MSI.FLAGS_ENABLE);
      this.msiEnabled = false;
      this.irq = this.intxIrq;
      this.intx(true);
    }
    for (const d of this.#vectors) this.kernel.irq.freeEdge(d.irq);
    for (const v of this.#cpuVectors) this.kernel.pci.freeCpuVector(v);
    this.#vectors = [];
    this.#cpuVectors = [];
  }

  #allocVectors(n: number, chip: (i: number) => string): boolean {
    const descs: IrqDesc[] = [];
    const cpu: number[] = [];
    for (let i = 0; i < n; i++) {
      const v = this.kernel.pci.allocCpuVector();
      if (v < 0) {
        for (const x of cpu) this.kernel.pci.freeCpuVector(x);
        for (const d of descs) this.kernel.irq.freeEdge(d.irq);
        return false;
      }
      const d = this.kernel.irq.allocEdge(chip(i));
      this.kernel.machine.intc.onVector(v, () => this.kernel.irq.edge(d));
      cpu.push(v);
      descs.push(d);
    }
    this.#vectors = descs;
    this.#cpuVectors = cpu;
    return true;
  }

  #enableMsi(n: number): number {
    if (!this.#allocVectors(n, (i) => `PCI-MSI ${(this.bdf << 11) + i}-edge`)) return E.ENOSPC;
    const cap = this.msiCap;
    const flags = this.cfgRead(cap + PCI_MSI.FLAGS, 2);
    const is64 = (flags & PCI_MSI.FLAGS_64BIT) !== 0;
    this.cfgWrite(cap + PCI_MSI.ADDRESS_LO, 4, MSI_ADDRESS_BASE);
    if (is64) this.cfgWrite(cap + PCI_MSI.ADDRESS_HI, 4, 0);
    this.cfgWrite(cap + (is64 ? PCI_MSI.DATA_64 : PCI_MSI.DATA_32), 2, this.#cpuVectors[0] as number);
    const qsize = Math.log2(n) << 4;
    this.intx(false);
    this.cfgWrite(cap + PCI_MSI.FLAGS, 2, (flags & ~PCI_MSI.FLAGS_QSIZE) | qsize | PCI_MSI.FLAGS_ENABLE);
    this.msiEnabled = true;
    this.irq = (this.#vectors[0] as IrqDesc).irq;
    return n;
  }

  /** Linux `msix_capability_init`: enable with all masked, program each entry (masked until its irq is requested), unmask the function. */
  #enableMsix(n: number): number {
    const cap = this.msixCap;
    const tableReg = this.cfgRead(cap + PCI_MSIX.TABLE, 4);
    const bir = tableReg & PCI_MSIX.BIR_MASK;
    const bar = this.resources[bir];
    if (bar === undefined || (bar.flags & IORESOURCE.MEM) === 0) return E.EINVAL;
    if (!this.#allocVectors(n, (i) => `PCI-MSIX-${this.name} ${i}-edge`)) return E.ENOSPC;
    const flags = this.cfgRead(cap + PCI_MSIX.FLAGS, 2);
    this.cfgWrite(cap + PCI_MSIX.FLAGS, 2, flags | PCI_MSIX.FLAGS_ENABLE | PCI_MSIX.FLAGS_MASKALL);
    const mmio = this.kernel.machine.mmio;
    const table = bar.start + (tableReg & ~PCI_MSIX.BIR_MASK);
    for (let i = 0; i < n; i++) {
      const e = table + i * PCI_MSIX.ENTRY_SIZE;
      mmio.write32(e + PCI_MSIX.ENTRY_VECTOR_CTRL, PCI_MSIX.ENTRY_CTRL_MASKBIT);
      mmio.write32(e + PCI_MSIX.ENTRY_LOWER_ADDR, MSI_ADDRESS_BASE);
      mmio.write32(e + PCI_MSIX.ENTRY_UPPER_ADDR, 0);
      mmio.write32(e + PCI_MSIX.ENTRY_DATA, this.#cpuVectors[i] as number);
      const d = this.#vectors[i] as IrqDesc;
      d.mask = (masked: boolean): void => mmio.write32(e + PCI_MSIX.ENTRY_VECTOR_CTRL, masked ? PCI_MSIX.ENTRY_CTRL_MASKBIT : 0);
    }
    this.intx(false);
    this.cfgWrite(cap + PCI_MSIX.FLAGS, 2, (flags | PCI_MSIX.FLAGS_ENABLE) & ~PCI_MSIX.FLAGS_MASKALL);
    this.msixEnabled = true;
    return n;
  }

  /**
   * Linux `pci_reset_function`: the first reset method that applies (FLR, then PM D3hot -> D0, then a
   * secondary bus reset through the parent bridge when the device is alone on its bus), with the
   * device's configuration header saved and restored around it. `-ENOTTY` without a method.
   */
  async reset(delay: (ns: number) => Promise<unknown>): Promise<number> {
    const method = this.resetMethods[0];
    if (method === undefined) return E.ENOTTY;
    const saved = this.saveHeader();
    if (method === 'flr') {
      const ctl = this.cfgRead(this.pcieCap + PCI_EXP.DEVCTL, 2);
      this.cfgWrite(this.pcieCap + PCI_EXP.DEVCTL, 2, ctl | PCI_EXP.DEVCTL_BCR_FLR);
      await delay(100_000_000);
    } else if (method === 'bus') {
      // pci_reset_secondary_bus: SBR held 2 ms, then pci_bridge_wait_for_secondary_bus's 100 ms.
      this.kernel.machine.pci.secondaryBusReset(this.kernel.machine.pci.bridgeTo(this.bdf >>> 8) as number);
      await delay(2_000_000);
      await delay(100_000_000);
    } else {
      const ctl = this.cfgRead(this.pmCap + PCI_PM.CTRL, 2);
      this.cfgWrite(this.pmCap + PCI_PM.CTRL, 2, (ctl & ~PCI_PM.CTRL_STATE_MASK) | 3);
      await delay(10_000_000);
      this.cfgWrite(this.pmCap + PCI_PM.CTRL, 2, ctl & ~PCI_PM.CTRL_STATE_MASK);
      await delay(10_000_000);
    }
    this.restoreHeader(saved);
    return 0;
  }

  /** `pci_save_state`'s header part: the 16 dwords of the type 0 header. */
  saveHeader(): Uint32Array {
    const saved = new Uint32Array(16);
    for (let i = 0; i < 16; i++) saved[i] = this.cfgRead(i * 4, 4);
    return saved;
  }

  /** `pci_restore_state`'s header part: BARs and the rest of the header from the top, Command last. */
  restoreHeader(saved: Uint32Array): void {
    for (let i = 15; i >= 1; i--) if (i !== 3) this.cfgWrite(i * 4, 4, saved[i] as number);
    this.cfgWrite(PCI.COMMAND, 2, (saved[1] as number) & 0xffff);
  }
}
