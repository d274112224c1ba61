import { createDmaResult, get32, invariant, mask32, resetDmaResult, type Counter, type DmaPort, type MsiSink, type Scheduler } from '../../sim/index.ts';
import { barBase, defineBars, validateBars, type BarSpec } from './bar.ts';
import {
  buildChain, msiLayout, msixLayout, pcieLayout, pmLayout, PCIE_DEVCTL_FLR, PMCSR,
  type CapabilityLayout, type CapabilityOffsets, type MsiOptions, type MsixOptions,
} from './capabilities.ts';
import { ConfigSpace } from './config-space.ts';
import { BusMasterGate, type GateOwner } from './gate.ts';
import { GuestErrors } from './guest-errors.ts';
import { ALL_ONES_64, ANY_SIZE, allOnes, type MmioHandler } from './mmio.ts';
import { Msi, type MessagePath } from './msi.ts';
import { Msix } from './msix.ts';
import { COMMAND, PCI_BAR0, PCI_COMMAND, PCI_CONFIG_SIZE, PCI_STATUS, PCIE_CONFIG_SIZE, STATUS, TYPE0_HEADER } from './regs.ts';

/** Receives the function's INTx pin level (the machine maps the pin to an interrupt controller input). */
export interface IntxSink {
  /** `pin` is 1..4 (INTA..INTD) as the function's Interrupt Pin register says. */
  intx(requester: number, pin: number, asserted: boolean): void;
}

/** What the machine connects when it places the function in its topology. */
export interface PciAttachment {
  /** `bus << 8 | devfn`, assigned by the machine. */
  readonly requesterId: number;
  /** Upstream of the bus-master gate: the root complex (and the IOMMU or identity port behind it). */
  readonly dma: DmaPort;
  /** Every MSI/MSI-X message write (the machine routes the interrupt window to its interrupt controller). */
  readonly msi: MsiSink;
  /** The INTx pin, if the machine wires it. */
  readonly intx?: IntxSink;
  /** Called when a BAR or the Command decode bits change, so the machine can remap the function. */
  readonly onMappingChange?: () => void;
}

/** A PCI function's fixed description. */
export interface PciFunctionSpec {
  /** Component name for traces and counters, e.g. `edu@00:03.0`. */
  readonly name: string;
  readonly vendorId: number;
  readonly deviceId: number;
  readonly revision: number;
  /** Base class << 16 | subclass << 8 | programming interface. */
  readonly classCode: number;
  readonly subsystemVendorId?: number;
  readonly subsystemId?: number;
  /** 0 none, 1..4 INTA..INTD. */
  readonly interruptPin?: number;
  readonly multifunction?: boolean;
  /** A PCI Express function (4 KiB config space, PCIe capability), with or without FLR. */
  readonly express?: { readonly flr: boolean };
  /** A power management capability (D0 and D3hot). */
  readonly pm?: boolean;
  readonly msi?: MsiOptions;
  readonly msix?: MsixOptions;
  /** BARs by index; a 64-bit BAR leaves the next index empty. */
  readonly bars: readonly (BarSpec | undefined)[];
}

/** Why a function was reset: PCI RST# (machine reset) or a Function Level Reset. */
export type ResetKind = 'reset' | 'flr';

const PCI_GUEST_ERRORS = {
  'config-access': ['offset', 'size'],
  'mmio-no-bar': ['bar', 'offset', 'size'],
  'mmio-decode-off': ['bar', 'offset', 'size'],
  'mmio-range': ['bar', 'offset', 'size'],
  'mmio-size': ['bar', 'offset', 'size'],
  'mmio-unclaimed': ['bar', 'offset', 'size'],
  'msix-access': ['bar', 'offset', 'size'],
  'msix-pba-write': ['offset', 'value'],
  'dma-bus-master-off': ['addr', 'len', 'write'],
  'msi-bus-master-off': ['addressLo', 'addressHi', 'data'],
  'pm-state': ['state'],
  'flr-unsupported': [],
} as const;
/** Guest errors a PCI function itself records. */
export type PciGuestError = keyof typeof PCI_GUEST_ERRORS;

const CMD_IO = mask32(COMMAND.IO);
const CMD_MEMORY = mask32(COMMAND.MEMORY);
const CMD_MASTER = mask32(COMMAND.MASTER);
const CMD_INTX_DISABLE = mask32(COMMAND.INTX_DISABLE);
const STATUS_INTX = mask32(STATUS.INTX);
const FLR_MASK = mask32(PCIE_DEVCTL_FLR);
const TWO32 = 0x1_0000_0000;

/** Reads all-ones and drops writes: BAR space no device register claims. */
class Unclaimed implements MmioHandler {
  readonly accessSizes = ANY_SIZE;
  readonly #fn: PciFunction;
  readonly #bar: number;
  constructor(fn: PciFunction, bar: number) {
    this.#fn = fn;
    this.#bar = bar;
  }
  read(offset: number, size: number): number {
    this.#fn.errors.report('mmio-unclaimed', this.#bar, offset, size);
    return allOnes(size);
  }
  write(offset: number, size: number): void {
    this.#fn.errors.report('mmio-unclaimed', this.#bar, offset, size);
  }
  read64(offset: number): bigint {
    this.#fn.errors.report('mmio-unclaimed', this.#bar, offset, 8);
    return ALL_ONES_64;
  }
  write64(offset: number): void {
    this.#fn.errors.report('mmio-unclaimed', this.#bar, offset, 8);
  }
}

interface BarSlot {
  readonly spec: BarSpec;
  readonly decode: number;
  handler: MmioHandler;
}

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
  readonly #bars: (BarSlot | undefined)[] = [];
  #command = 0;
  #lowPower = false;
  #intxRequested = false;
  #intxPin = false;
  #msiSink: MsiSink | undefined;
  #intx: IntxSink | undefined;
  #onMapping: (() => void) | undefined;
  readonly #msixTable: { bar: number; start: number; end: number };
  readonly #msixPba: { bar: number; start: number; end: number };
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
    spec.bars.forEach((b, i) => {
      if (b !== undefined) this.#bars[i] = { spec: b, decode: b.kind === 'io' ? CMD_IO : CMD_MEMORY, handler: new Unclaimed(this, i) };
    });
    this.#msixTable = { bar: -1, start: 0, end: 0 };
    this.#msixPba = { bar: -1, start: 0, end: 0 };
    const mx = this.msix;
    if (mx !== undefined) {
      const o = mx.options;
      this.#msixTable = { bar: o.tableBar, start: o.tableOffset, end: o.tableOffset + mx.tableBytes };
      this.#msixPba = { bar: o.pbaBar, start: o.pbaOffset, end: o.pbaOffset + mx.pbaBytes };
      for (const [what, r] of [['table', this.#msixTable], ['PBA', this.#msixPba]] as const) {
        const b = spec.bars[r.bar];
        invariant(b !== undefined && b.kind === 'mem' && r.end <= b.size, `MSI-X ${what} must lie inside a memory BAR (BAR${r.bar})`);
      }
      const t = this.#msixTable;
      const p = this.#msixPba;
      invariant(t.bar !== p.bar || t.end <= p.start || p.end <= t.start, 'MSI-X table and PBA overlap');
    }
  }

  /** Installs the device's registers behind BAR `i`. */
  setBarHandler(i: number, handler: MmioHandler): void {
    const slot = this.#bars[i];
    invariant(slot !== undefined, () => `${this.name} has no BAR${i}`);
    slot.handler = handler;
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
    return this.#bars[i]?.spec;
  }

  /** The base address BAR `i` decodes (-1 if at or past 2^53, or no such BAR). */
  barBase(i: number): number {
    const slot = this.#bars[i];
    return slot === undefined ? -1 : barBase(this.config, i, slot.spec);
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
  }

  // MMIO.

  /** A read of 1, 2 or 4 bytes at `offset` in BAR `bar`. Misuse reads all-ones and is a guest error. */
  mmioRead(bar: number, offset: number, size: number): number {
    const slot = this.#check(bar, offset, size);
    if (slot === undefined) return allOnes(size);
    if (bar === this.#msixTable.bar && offset >= this.#msixTable.start && offset < this.#msixTable.end) {
      return this.#msixOk(bar, offset, size) ? (this.msix as Msix).readTable(offset - this.#msixTable.start) : allOnes(size);
    }
    if (bar === this.#msixPba.bar && offset >= this.#msixPba.start && offset < this.#msixPba.end) {
      return this.#msixOk(bar, offset, size) ? (this.msix as Msix).readPba(offset - this.#msixPba.start) : allOnes(size);
    }
    if (((slot.handler.accessSizes >>> size) & 1) === 0) {
      this.errors.report('mmio-size', bar, offset, size);
      return allOnes(size);
    }
    return slot.handler.read(offset, size);
  }

  /** A write of 1, 2 or 4 bytes. Misuse is dropped and is a guest error. */
  mmioWrite(bar: number, offset: number, size: number, value: number): void {
    const slot = this.#check(bar, offset, size);
    if (slot === undefined) return;
    if (bar === this.#msixTable.bar && offset >= this.#msixTable.start && offset < this.#msixTable.end) {
      if (this.#msixOk(bar, offset, size)) (this.msix as Msix).writeTable(offset - this.#msixTable.start, value);
      return;
    }
    if (bar === this.#msixPba.bar && offset >= this.#msixPba.start && offset < this.#msixPba.end) {
      if (this.#msixOk(bar, offset, size)) this.errors.report('msix-pba-write', offset - this.#msixPba.start, value);
      return;
    }
    if (((slot.handler.accessSizes >>> size) & 1) === 0) {
      this.errors.report('mmio-size', bar, offset, size);
      return;
    }
    slot.handler.write(offset, size, value);
  }

  /** An 8-byte read. */
  mmioRead64(bar: number, offset: number): bigint {
    const slot = this.#check(bar, offset, 8);
    if (slot === undefined) return ALL_ONES_64;
    if (this.#inMsix(bar, offset)) {
      this.errors.report('msix-access', bar, offset, 8);
      return ALL_ONES_64;
    }
    if (((slot.handler.accessSizes >>> 8) & 1) === 0) {
      this.errors.report('mmio-size', bar, offset, 8);
      return ALL_ONES_64;
    }
    return slot.handler.read64(offset);
  }

  /** An 8-byte write. */
  mmioWrite64(bar: number, offset: number, value: bigint): void {
    const slot = this.#check(bar, offset, 8);
    if (slot === undefined) return;
    if (this.#inMsix(bar, offset)) {
      this.errors.report('msix-access', bar, offset, 8);
      return;
    }
    if (((slot.handler.accessSizes >>> 8) & 1) === 0) {
      this.errors.report('mmio-size', bar, offset, 8);
      return;
    }
    slot.handler.write64(offset, BigInt.asUintN(64, value));
  }

  /** The BAR if the access may reach it (decode on, D0, sane size, aligned, inside), else a guest error. */
  #check(bar: number, offset: number, size: number): BarSlot | undefined {
    const slot = this.#bars[bar];
    if (slot === undefined) {
      this.errors.report('mmio-no-bar', bar, offset, size);
      return undefined;
    }
    if ((this.#command & slot.decode) === 0 || this.#lowPower) {
      this.errors.report('mmio-decode-off', bar, offset, size);
      return undefined;
    }
    if (!(size === 4 || size === 8 || size === 1 || size === 2)) {
      this.errors.report('mmio-size', bar, offset, size);
      return undefined;
    }
    if (!(offset >= 0 && offset + size <= slot.spec.size && offset % size === 0)) {
      this.errors.report('mmio-range', bar, offset, size);
      return undefined;
    }
    return slot;
  }

  #inMsix(bar: number, offset: number): boolean {
    const t = this.#msixTable;
    const p = this.#msixPba;
    return (bar === t.bar && offset + 8 > t.start && offset < t.end) || (bar === p.bar && offset + 8 > p.start && offset < p.end);
  }

  /** QEMU accepts only aligned 32-bit accesses to the MSI-X table and PBA. */
  #msixOk(bar: number, offset: number, size: number): boolean {
    if (size === 4) return true;
    this.errors.report('msix-access', bar, offset, size);
    return false;
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
    this.msix?.reset();
    this.#intxRequested = false;
    this.#updatePin();
    const trace = this.#sim.trace;
    if (trace.active) trace.emit(this.#sim.now, this.name, kind === 'flr' ? 'flr' : 'reset');
    this.onReset?.(kind);
    this.#onMapping?.();
  }
}
