import { createDmaResult, get32, invariant, mask32, resetDmaResult, type Counter, type MsiSink, type Scheduler } from '../../sim/index.ts';
import { barBase, defineBars, validateBars, type BarSpec } from './bar.ts';
import { BarDispatch } from './bar-dispatch.ts';
import {
  buildChain, msiLayout, msixLayout, pcieLayout, pmLayout, PCIE_DEVCTL_FLR, PMCSR,
  type CapabilityLayout, type CapabilityOffsets,
} from './capabilities.ts';
import { ConfigSpace } from './config-space.ts';
import { BusMasterGate, type GateOwner } from './gate.ts';
import { GuestErrors } from './guest-errors.ts';
import { allOnes, type MmioHandler } from './mmio.ts';
import { Msi, type MessagePath } from './msi.ts';
import { Msix } from './msix.ts';
import { COMMAND, PCI_BAR0, PCI_COMMAND, PCI_CONFIG_SIZE, PCI_STATUS, PCIE_CONFIG_SIZE, STATUS, TYPE0_HEADER } from './regs.ts';
import { PCI_GUEST_ERRORS, type IntxSink, type PciAttachment, type PciFunctionSpec, type PciGuestError, type ResetKind } from './spec.ts';

const CMD_IO = mask32(COMMAND.IO);
const CMD_MEMORY = mask32(COMMAND.MEMORY);
const CMD_MASTER = mask32(COMMAND.MASTER);
const CMD_INTX_DISABLE = mask32(COMMAND.INTX_DISABLE);
const STATUS_INTX = mask32(STATUS.INTX);
const FLR_MASK = mask32(PCIE_DEVCTL_FLR);
const TWO32 = 0x1_0000_0000;

/**
 * One PCI function: its configuration space (type-0 header, capabilities, per-byte masks), BARs, MSI,
 * MSI-X, INTx, bus-master gating and resets. A device model builds one, installs a handler per BAR and uses
 * {@link dma} for its engines and {@link msi}/{@link msix}/{@link setIrq} for interrupts; the machine calls
 * {@link attach}, {@link configRead}/{@link configWrite} and the MMIO entry points.
 */
export class PciFunction implements GateOwner, MessagePath {
  readonly name: string;
  readonly spec: PciFunctionSpec;
  readonly config: ConfigSpace;
  /** Where each capability landed in config space. */
  readonly caps: CapabilityOffsets;
  readonly msi: Msi | undefined;
  readonly msix: Msix | undefined;
  /** The port the function's DMA engines use: gated by Command.MASTER. */
  readonly dma: BusMasterGate;
  readonly errors: GuestErrors<PciGuestError>;
  /** Messages sent, messages refused for want of bus mastering. */
  readonly counters: { readonly msiSent: Counter; readonly msixSent: Counter };
  /** The requester id the machine assigned (0 until attached). */
  requesterId = 0;
  /** The device's reset hook: FLR and RST# return device state to its reset values here. */
  onReset: ((kind: ResetKind) => void) | undefined;
  readonly #sim: Scheduler;
  readonly #mmio: BarDispatch;
  #command = 0;
  #lowPower = false;
  #intxRequested = false;
  #intxPin = false;
  #msiSink: MsiSink | undefined;
  #intx: IntxSink | undefined;
  #onMapping: (() => void) | undefined;
  readonly #wideBuf = new Uint8Array(4);
  readonly #wideRes = createDmaResult();

  constructor(sim: Scheduler, spec: PciFunctionSpec) {
    validateBars(spec.bars);
    const pin = spec.interruptPin ?? 0;
    invariant(pin >= 0 && pin <= 4, `interrupt pin must be 0..4, got ${pin}`);
    this.#sim = sim;
    this.name = spec.name;
    this.spec = spec;
    this.errors = new GuestErrors(sim, spec.name, PCI_GUEST_ERRORS);
    this.counters = { msiSent: sim.stats.counter(spec.name, 'msi.sent'), msixSent: sim.stats.counter(spec.name, 'msix.sent') };
    this.dma = new BusMasterGate(this);
    const cfg = new ConfigSpace(spec.express === undefined ? PCI_CONFIG_SIZE : PCIE_CONFIG_SIZE);
    this.config = cfg;
    cfg.define('header', 0, TYPE0_HEADER, 0x40, {
      VENDOR_ID: spec.vendorId, DEVICE_ID: spec.deviceId, STATUS: 0, REVISION: spec.revision,
      PROG_IF: spec.classCode & 0xff, SUBCLASS: (spec.classCode >>> 8) & 0xff, BASE_CLASS: (spec.classCode >>> 16) & 0xff,
      HEADER_TYPE: spec.multifunction === true ? 0x80 : 0, SUBSYS_VENDOR_ID: spec.subsystemVendorId ?? 0,
      SUBSYS_ID: spec.subsystemId ?? 0, CAP_PTR: 0, INTERRUPT_PIN: pin,
      BAR0: 0, BAR1: 0, BAR2: 0, BAR3: 0, BAR4: 0, BAR5: 0,
    });
    defineBars(cfg, spec.bars);
    const layouts: CapabilityLayout[] = [];
    if (spec.pm === true) layouts.push(pmLayout());
    if (spec.msi !== undefined) layouts.push(msiLayout(spec.msi));
    if (spec.msix !== undefined) layouts.push(msixLayout(spec.msix));
    if (spec.express !== undefined) layouts.push(pcieLayout(spec.express.flr));
    this.caps = buildChain(cfg, layouts);
    // No extended capabilities: the header at 0x100 reads 0 and is read-only.
    if (spec.express !== undefined) cfg.define('extended', 0x100, [], 4);
    cfg.captureReset();
    this.msi = spec.msi === undefined ? undefined : new Msi(cfg, this.caps.MSI as number, spec.msi, this);
    this.msix = spec.msix === undefined ? undefined : new Msix(cfg, this.caps['MSI-X'] as number, spec.msix, this);
    this.#mmio = new BarDispatch(spec.bars, this.msix, this.errors);
  }

  /** Installs the device's registers behind BAR `i`. */
  setBarHandler(i: number, handler: MmioHandler): void {
    invariant(this.#mmio.setHandler(i, handler), () => `${this.name} has no BAR${i}`);
  }

  /** Connects the function to the machine. */
  attach(a: PciAttachment): void {
    invariant(Number.isInteger(a.requesterId) && a.requesterId >= 0 && a.requesterId <= 0xffff, `requester id must be 16-bit, got ${a.requesterId}`);
    this.requesterId = a.requesterId;
    this.dma.upstream = a.dma;
    this.#msiSink = a.msi;
    this.#intx = a.intx;
    this.#onMapping = a.onMappingChange;
  }

  /** The Command register. */
  get command(): number {
    return this.#command;
  }

  /** Command.MEMORY. */
  get memoryEnabled(): boolean {
    return (this.#command & CMD_MEMORY) !== 0;
  }

  /** Command.MASTER: the function may issue DMA and MSI/MSI-X writes. */
  get busMaster(): boolean {
    return (this.#command & CMD_MASTER) !== 0;
  }

  /** The level the INTx pin drives (requested and not disabled). */
  get intxAsserted(): boolean {
    return this.#intxPin;
  }

  /** BAR `i`'s description, or undefined for an empty slot (or the upper half of a 64-bit BAR). */
  bar(i: number): BarSpec | undefined {
    return this.#mmio.spec(i);
  }

  /** The base address BAR `i` decodes (-1 if at or past 2^53, or no such BAR). */
  barBase(i: number): number {
    const spec = this.#mmio.spec(i);
    return spec === undefined ? -1 : barBase(this.config, i, spec);
  }

  // Configuration space.

  /** A configuration read of `size` (1, 2, 4) bytes at `offset`; all-ones for an access outside the space. */
  configRead(offset: number, size: number): number {
    if (!this.#configOk(offset, size)) return allOnes(size);
    return this.config.read(offset, size);
  }

  /** A configuration write; an access outside the space is dropped. */
  configWrite(offset: number, size: number, value: number): void {
    if (!this.#configOk(offset, size)) return;
    const cfg = this.config;
    const exp = this.caps.PCIe;
    const pm = this.caps.PM;
    const oldPower = pm === undefined ? 0 : cfg.get16(pm + 4);
    let flr = 0;
    if (exp !== undefined) {
      flr = cfg.writeOnlyBits(offset, size, value, exp + 8, 2) & FLR_MASK;
      const wroteFlr = ConfigSpace.overlaps(offset, size, exp + 9, 1) && ((value >>> (8 * (exp + 9 - offset))) & 0x80) !== 0;
      if (wroteFlr && this.spec.express?.flr !== true) this.errors.report('flr-unsupported');
    }
    cfg.write(offset, size, value);
    if (ConfigSpace.overlaps(offset, size, PCI_COMMAND, 2)) this.#commandChanged();
    else if (ConfigSpace.overlaps(offset, size, PCI_BAR0, 24)) this.#onMapping?.();
    if (pm !== undefined && ConfigSpace.overlaps(offset, size, pm + 4, 2)) this.#powerChanged(oldPower);
    this.msi?.afterWrite(offset, size);
    this.msix?.afterWrite(offset, size);
    if (flr !== 0) this.#functionReset('flr');
  }

  #configOk(offset: number, size: number): boolean {
    if ((size === 1 || size === 2 || size === 4) && offset >= 0 && Number.isInteger(offset) && offset + size <= this.config.size) return true;
    this.errors.report('config-access', offset, size);
    return false;
  }

  #commandChanged(): void {
    const old = this.#command;
    this.#command = this.config.get16(PCI_COMMAND);
    this.#mmio.decode = this.#lowPower ? 0 : this.#command;
    if ((old ^ this.#command) & (CMD_IO | CMD_MEMORY)) this.#onMapping?.();
    if ((old ^ this.#command) & CMD_INTX_DISABLE) this.#updatePin();
  }

  #powerChanged(old: number): void {
    const pm = this.caps.PM as number;
    const v = this.config.get16(pm + 4);
    const state = get32(v, PMCSR.POWER_STATE);
    if (state === 1 || state === 2) {
      // Unsupported D-states: the write does not change the state (PCI PM 1.2 section 5.4.1).
      this.errors.report('pm-state', state);
      this.config.set16(pm + 4, (v & ~0x3) | (old & 0x3));
    }
    this.#lowPower = get32(this.config.get16(pm + 4), PMCSR.POWER_STATE) !== 0;
    this.#mmio.decode = this.#lowPower ? 0 : this.#command;
  }

  // MMIO.

  /** A read of 1, 2 or 4 bytes at `offset` in BAR `bar`. Misuse reads all-ones and is a guest error. */
  mmioRead(bar: number, offset: number, size: number): number {
    return this.#mmio.read(bar, offset, size);
  }

  /** A write of 1, 2 or 4 bytes. Misuse is dropped and is a guest error. */
  mmioWrite(bar: number, offset: number, size: number, value: number): void {
    this.#mmio.write(bar, offset, size, value);
  }

  /** An 8-byte read. */
  mmioRead64(bar: number, offset: number): bigint {
    return this.#mmio.read64(bar, offset);
  }

  /** An 8-byte write. */
  mmioWrite64(bar: number, offset: number, value: bigint): void {
    this.#mmio.write64(bar, offset, value);
  }

  // Interrupts and DMA.

  /** Drives the function's INTx request (pci_set_irq). Status.INTX follows it; the pin also needs INTx enabled. */
  setIrq(level: boolean): void {
    invariant(this.spec.interruptPin !== undefined && this.spec.interruptPin !== 0, () => `${this.name} has no INTx pin`);
    if (this.#intxRequested === level) return;
    this.#intxRequested = level;
    const st = this.config.get16(PCI_STATUS);
    this.config.set16(PCI_STATUS, level ? st | STATUS_INTX : st & ~STATUS_INTX);
    this.#updatePin();
  }

  /** @internal {@link MessagePath}: enabling MSI or MSI-X drops any INTx request. */
  deassertIntx(): void {
    if (this.#intxRequested) this.setIrq(false);
  }

  #updatePin(): void {
    const level = this.#intxRequested && (this.#command & CMD_INTX_DISABLE) === 0;
    if (level === this.#intxPin) return;
    this.#intxPin = level;
    this.#intx?.intx(this.requesterId, this.spec.interruptPin ?? 0, level);
  }

  /** @internal {@link MessagePath}: an MSI/MSI-X memory write of `data` at `hi:lo`, if bus mastering is on. */
  sendMessage(lo: number, hi: number, data: number, msix: boolean): void {
    if (!this.busMaster) {
      // Not latched anywhere: a message dropped here is never replayed, as on QEMU.
      this.errors.report('msi-bus-master-off', lo, hi, data);
      return;
    }
    (msix ? this.counters.msixSent : this.counters.msiSent).value++;
    const trace = this.#sim.trace;
    if (trace.active) trace.emit(this.#sim.now, this.name, msix ? 'msix' : 'msi', { address: hi * TWO32 + lo, data });
    if (hi < 0x20_0000) {
      this.#msiSink?.msi(this.requesterId, hi * TWO32 + lo, data);
      return;
    }
    // Past 2^53 nothing decodes the write; it goes upstream as a wide write, which reports the failure.
    const b = this.#wideBuf;
    b[0] = data;
    b[1] = data >>> 8;
    b[2] = data >>> 16;
    b[3] = data >>> 24;
    resetDmaResult(this.#wideRes);
    this.dma.upstream.writeWide(this.requesterId, (BigInt(hi) << 32n) | BigInt(lo), b, 0, 4, this.#wideRes);
  }

  /** @internal {@link GateOwner}: a DMA refused because bus mastering is off. */
  dmaBlocked(addr: number, len: number, write: boolean): void {
    this.errors.report('dma-bus-master-off', addr, len, write ? 1 : 0);
  }

  // Reset.

  /** PCI RST#: the function and its device return to their reset state. */
  reset(): void {
    this.#functionReset('reset');
  }

  #functionReset(kind: ResetKind): void {
    this.config.restoreReset();
    this.#command = 0;
    this.#lowPower = false;
    this.#mmio.decode = 0;
    this.msix?.reset();
    this.#intxRequested = false;
    this.#updatePin();
    const trace = this.#sim.trace;
    if (trace.active) trace.emit(this.#sim.now, this.name, kind === 'flr' ? 'flr' : 'reset');
    this.onReset?.(kind);
    this.#onMapping?.();
  }
}
