import type { DmaPort, MsiSink } from '../../sim/index.ts';
import type { BarSpec } from './bar.ts';
import type { MsiOptions, MsixOptions } from './capabilities.ts';

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

/** Guest errors a PCI function records, with the names of their details. */
export const PCI_GUEST_ERRORS = {
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
