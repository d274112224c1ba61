import { bit, bits, type BitField } from '../../sim/index.ts';

/**
 * Configuration-space registers as data: the type-0 header here, the capabilities in `capabilities.ts`.
 * {@link ConfigSpace.define} turns each table into per-byte masks (writable, write-1-to-clear, write-0-to-clear,
 * write-only), the scheme QEMU's PCIDevice keeps in `wmask`/`w1cmask`; the README tables are rendered from
 * the same data. Offsets and bits follow Linux include/uapi/linux/pci_regs.h and the PCI Local Bus spec 3.0.
 */

/**
 * Access kind of a field. `RO` read-only (writes ignored), `RW` read-write, `WO` write-only (reads 0; the
 * write is an action), `W1C` write 1 to clear, `W0C` write 0 to clear, `HW` read-only but changed by the
 * function itself (status bits, pending bits). Bits not covered by a field are read-only at their reset value.
 */
export type FieldAccess = 'RO' | 'RW' | 'WO' | 'W1C' | 'W0C' | 'HW';

/** A named bitfield of a register with its access kind. */
export interface RegField extends BitField {
  readonly access: FieldAccess;
  readonly desc: string;
}

/** Where a register's reset value comes from: a constant, or the function's own description (ids, class). */
export type ConfigReset = number | 'device';

/** One configuration register (offset relative to its block: 0 for the header, the capability's offset for one). */
export interface ConfigReg {
  readonly name: string;
  readonly offset: number;
  /** Bytes: 1, 2 or 4. */
  readonly width: 1 | 2 | 4;
  readonly reset: ConfigReset;
  readonly desc: string;
  readonly fields: Readonly<Record<string, RegField>>;
}

/** A field of `access` over `f` with its description. */
export function fld(f: BitField, access: FieldAccess, desc: string): RegField {
  return { lsb: f.lsb, width: f.width, access, desc };
}

/** Command register (0x04) fields. */
export const COMMAND = {
  IO: fld(bit(0), 'RW', 'I/O space decode'),
  MEMORY: fld(bit(1), 'RW', 'memory space decode: off -> MMIO reads all-ones, writes dropped'),
  MASTER: fld(bit(2), 'RW', 'bus master: off -> no DMA and no MSI/MSI-X'),
  SPECIAL: fld(bit(3), 'RO', 'special cycles (not implemented, 0)'),
  INVALIDATE: fld(bit(4), 'RO', 'memory write and invalidate (not implemented, 0)'),
  VGA_PALETTE: fld(bit(5), 'RO', 'VGA palette snoop (not implemented, 0)'),
  PARITY: fld(bit(6), 'RO', 'parity error response (QEMU keeps it read-only)'),
  SERR: fld(bit(8), 'RW', 'SERR# enable'),
  FAST_BACK: fld(bit(9), 'RO', 'fast back-to-back (0)'),
  INTX_DISABLE: fld(bit(10), 'RW', 'INTx disable: the pin stays deasserted, Status.INTX still reports'),
} as const;

/** Status register (0x06) fields. */
export const STATUS = {
  INTX: fld(bit(3), 'HW', 'INTx status: the function requests an interrupt (regardless of INTX_DISABLE)'),
  CAP_LIST: fld(bit(4), 'RO', 'capability list present'),
  MHZ66: fld(bit(5), 'RO', '66 MHz capable (0)'),
  FAST_BACK: fld(bit(7), 'RO', 'fast back-to-back capable (0)'),
  PARITY: fld(bit(8), 'W1C', 'master data parity error'),
  DEVSEL: fld(bits(10, 9), 'RO', 'DEVSEL timing (0 = fast)'),
  SIG_TARGET_ABORT: fld(bit(11), 'W1C', 'signalled target abort'),
  REC_TARGET_ABORT: fld(bit(12), 'W1C', 'received target abort'),
  REC_MASTER_ABORT: fld(bit(13), 'W1C', 'received master abort'),
  SIG_SYSTEM_ERROR: fld(bit(14), 'W1C', 'signalled system error'),
  DETECTED_PARITY: fld(bit(15), 'W1C', 'detected parity error'),
} as const;

/** BAR register fields; `ADDRESS` is narrowed per BAR to `~(size - 1)` (the sizing protocol). */
export const BAR_FIELDS = {
  SPACE: fld(bit(0), 'RO', '0 memory, 1 I/O'),
  TYPE: fld(bits(2, 1), 'RO', 'memory: 00 32-bit, 10 64-bit (the next BAR holds the upper half)'),
  PREFETCH: fld(bit(3), 'RO', 'memory: prefetchable'),
  ADDRESS: fld(bits(31, 4), 'RW', 'base address; bits below the size read 0 (sizing: write ~0, read ~(size-1))'),
} as const;

function barReg(n: number): ConfigReg {
  return { name: `BAR${n}`, offset: 0x10 + 4 * n, width: 4, reset: 'device', desc: `Base address register ${n}`, fields: BAR_FIELDS };
}

/** Offset of the Command register. */
export const PCI_COMMAND = 0x04;
/** Offset of the Status register. */
export const PCI_STATUS = 0x06;
/** Offset of BAR0. */
export const PCI_BAR0 = 0x10;
/** Offset of the capabilities pointer. */
export const PCI_CAP_PTR = 0x34;
/** Offset of the interrupt pin register. */
export const PCI_INTERRUPT_PIN = 0x3d;
/** Bytes of the type-0 header; capabilities start here. */
export const PCI_HEADER_SIZE = 0x40;
/** Conventional configuration space size. */
export const PCI_CONFIG_SIZE = 0x100;
/** PCI Express configuration space size. */
export const PCIE_CONFIG_SIZE = 0x1000;

/** The type-0 header (PCI Local Bus 3.0 section 6.1; Linux pci_regs.h). */
export const TYPE0_HEADER = [
  { name: 'VENDOR_ID', offset: 0x00, width: 2, reset: 'device', desc: 'Vendor id', fields: {} },
  { name: 'DEVICE_ID', offset: 0x02, width: 2, reset: 'device', desc: 'Device id', fields: {} },
  { name: 'COMMAND', offset: PCI_COMMAND, width: 2, reset: 0, desc: 'Command', fields: COMMAND },
  { name: 'STATUS', offset: PCI_STATUS, width: 2, reset: 'device', desc: 'Status', fields: STATUS },
  { name: 'REVISION', offset: 0x08, width: 1, reset: 'device', desc: 'Revision id', fields: {} },
  { name: 'PROG_IF', offset: 0x09, width: 1, reset: 'device', desc: 'Class code: programming interface', fields: {} },
  { name: 'SUBCLASS', offset: 0x0a, width: 1, reset: 'device', desc: 'Class code: subclass', fields: {} },
  { name: 'BASE_CLASS', offset: 0x0b, width: 1, reset: 'device', desc: 'Class code: base class', fields: {} },
  { name: 'CACHE_LINE', offset: 0x0c, width: 1, reset: 0, desc: 'Cache line size (scratch)',
    fields: { SIZE: fld(bits(7, 0), 'RW', 'in dwords; no effect') } },
  { name: 'LATENCY', offset: 0x0d, width: 1, reset: 0, desc: 'Latency timer (0 on PCI Express)', fields: {} },
  { name: 'HEADER_TYPE', offset: 0x0e, width: 1, reset: 'device', desc: 'Header type: 0, bit 7 multifunction',
    fields: { LAYOUT: fld(bits(6, 0), 'RO', '0 = type-0 header'), MULTI: fld(bit(7), 'RO', 'multifunction device') } },
  { name: 'BIST', offset: 0x0f, width: 1, reset: 0, desc: 'Built-in self test (none)', fields: {} },
  barReg(0), barReg(1), barReg(2), barReg(3), barReg(4), barReg(5),
  { name: 'CARDBUS_CIS', offset: 0x28, width: 4, reset: 0, desc: 'CardBus CIS pointer (none)', fields: {} },
  { name: 'SUBSYS_VENDOR_ID', offset: 0x2c, width: 2, reset: 'device', desc: 'Subsystem vendor id', fields: {} },
  { name: 'SUBSYS_ID', offset: 0x2e, width: 2, reset: 'device', desc: 'Subsystem id', fields: {} },
  { name: 'ROM_ADDRESS', offset: 0x30, width: 4, reset: 0, desc: 'Expansion ROM base (no ROM: reads 0)', fields: {} },
  { name: 'CAP_PTR', offset: PCI_CAP_PTR, width: 1, reset: 'device', desc: 'First capability (0 if none)', fields: {} },
  { name: 'INTERRUPT_LINE', offset: 0x3c, width: 1, reset: 0, desc: 'Interrupt line (firmware scratch)',
    fields: { LINE: fld(bits(7, 0), 'RW', 'written by firmware, no effect on the function') } },
  { name: 'INTERRUPT_PIN', offset: PCI_INTERRUPT_PIN, width: 1, reset: 'device', desc: 'Interrupt pin: 0 none, 1 INTA .. 4 INTD', fields: {} },
  { name: 'MIN_GNT', offset: 0x3e, width: 1, reset: 0, desc: 'Minimum grant (0)', fields: {} },
  { name: 'MAX_LAT', offset: 0x3f, width: 1, reset: 0, desc: 'Maximum latency (0)', fields: {} },
] as const satisfies readonly ConfigReg[];
