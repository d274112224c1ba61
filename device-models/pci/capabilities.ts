import { bit, bits, invariant } from '../../sim/index.ts';
import type { ConfigSpace } from './config-space.ts';
import { fld, PCI_CAP_PTR, PCI_HEADER_SIZE, PCI_STATUS, STATUS, type ConfigReg, type RegField } from './regs.ts';

/**
 * Capability structures as data: each layout lists its registers relative to the capability's offset, with
 * the same field/access tables as the header. Offsets and bits from Linux pci_regs.h; sizes from QEMU
 * (hw/pci/msi.c `PCI_MSI_*_SIZEOF`, msix.c `MSIX_CAP_LENGTH`, `PCI_EXP_VER2_SIZEOF`).
 */

/** Capability ids (PCI Code and ID Assignment). */
export const CapId = { PM: 0x01, MSI: 0x05, EXP: 0x10, MSIX: 0x11 } as const;

/** One capability's layout. */
export interface CapabilityLayout {
  readonly name: 'PM' | 'MSI' | 'MSI-X' | 'PCIe';
  readonly id: number;
  /** Bytes the structure occupies. */
  readonly length: number;
  readonly regs: readonly ConfigReg[];
  /** Reset values of its `'device'` registers (besides CAP_ID and NEXT, which the chain builder fills). */
  readonly resets: Readonly<Record<string, number>>;
}

const HEADER_REGS = [
  { name: 'CAP_ID', offset: 0, width: 1, reset: 'device', desc: 'Capability id', fields: {} },
  { name: 'NEXT', offset: 1, width: 1, reset: 'device', desc: 'Next capability (0 = last)', fields: {} },
] as const satisfies readonly ConfigReg[];

/** PM Control/Status fields (+4). */
export const PMCSR = {
  POWER_STATE: fld(bits(1, 0), 'RW', 'D-state: 0 D0, 3 D3hot (D1/D2 unsupported: such writes are ignored)'),
  NO_SOFT_RESET: fld(bit(3), 'RO', '1: D3hot -> D0 keeps the function configured'),
  PME_ENABLE: fld(bit(8), 'RO', 'PME# enable (no PME support: 0)'),
  PME_STATUS: fld(bit(15), 'W1C', 'PME status (never set)'),
} as const;

/** Power management capability, version 3, D0 and D3hot only, no PME. */
export function pmLayout(): CapabilityLayout {
  return {
    name: 'PM', id: CapId.PM, length: 8, resets: {},
    regs: [
      ...HEADER_REGS,
      { name: 'PMC', offset: 2, width: 2, reset: 0x0003, desc: 'Capabilities: version 3, no D1/D2, no PME',
        fields: { VERSION: fld(bits(2, 0), 'RO', 'PM spec version (3 = 1.2)') } },
      { name: 'PMCSR', offset: 4, width: 2, reset: 0x0008, desc: 'Control/status', fields: PMCSR },
      { name: 'DATA', offset: 7, width: 1, reset: 0, desc: 'Data (none)', fields: {} },
    ],
  };
}

/** MSI Message Control fields (+2). */
export const MSI_CONTROL = {
  ENABLE: fld(bit(0), 'RW', 'MSI enable (deasserts INTx)'),
  MMC: fld(bits(3, 1), 'RO', 'multiple message capable: log2 of vectors'),
  MME: fld(bits(6, 4), 'RW', 'multiple message enable: log2 of vectors granted (clamped to MMC)'),
  ADDR64: fld(bit(7), 'RO', '64-bit message address'),
  PVM: fld(bit(8), 'RO', 'per-vector masking'),
} as const;

/** Options of an MSI capability. */
export interface MsiOptions {
  /** Vectors requested: 1, 2, 4, 8, 16 or 32. */
  readonly vectors: number;
  readonly addr64: boolean;
  readonly perVectorMask: boolean;
}

/** Register offsets (relative) of an MSI capability with these options. */
export function msiOffsets(o: MsiOptions): { data: number; mask: number; pending: number; length: number } {
  const data = o.addr64 ? 0x0c : 0x08;
  return { data, mask: data + 4, pending: data + 8, length: o.perVectorMask ? data + 12 : data + 2 };
}

/** The MSI capability (PCI 3.0 section 6.8.1) as QEMU's msi_init lays it out. */
export function msiLayout(o: MsiOptions): CapabilityLayout {
  invariant(o.vectors >= 1 && o.vectors <= 32 && (o.vectors & (o.vectors - 1)) === 0, `MSI vectors must be a power of 2 up to 32, got ${o.vectors}`);
  const off = msiOffsets(o);
  const mmc = 31 - Math.clz32(o.vectors);
  const regs: ConfigReg[] = [
    ...HEADER_REGS,
    { name: 'CONTROL', offset: 2, width: 2, reset: 'device', desc: 'Message control', fields: MSI_CONTROL },
    { name: 'ADDRESS_LO', offset: 4, width: 4, reset: 0, desc: 'Message address [31:2]',
      fields: { ADDRESS: fld(bits(31, 2), 'RW', 'dword-aligned address') } },
  ];
  if (o.addr64) {
    regs.push({ name: 'ADDRESS_HI', offset: 8, width: 4, reset: 0, desc: 'Message address [63:32]',
      fields: { ADDRESS: fld(bits(31, 0), 'RW', 'upper address') } });
  }
  regs.push({ name: 'DATA', offset: off.data, width: 2, reset: 0, desc: 'Message data; low MME bits carry the vector',
    fields: { DATA: fld(bits(15, 0), 'RW', 'message data') } });
  if (o.perVectorMask) {
    regs.push(
      { name: 'MASK', offset: off.mask, width: 4, reset: 0, desc: 'Per-vector mask',
        fields: { MASK: fld(bits(o.vectors - 1, 0), 'RW', 'bit v masks vector v') } },
      { name: 'PENDING', offset: off.pending, width: 4, reset: 0, desc: 'Per-vector pending',
        fields: { PENDING: fld(bits(o.vectors - 1, 0), 'HW', 'set when a masked vector fires') } },
    );
  }
  const control = (mmc << MSI_CONTROL.MMC.lsb) | (o.addr64 ? 1 << MSI_CONTROL.ADDR64.lsb : 0) | (o.perVectorMask ? 1 << MSI_CONTROL.PVM.lsb : 0);
  return { name: 'MSI', id: CapId.MSI, length: off.length, regs, resets: { CONTROL: control } };
}

/** MSI-X Message Control fields (+2). */
export const MSIX_CONTROL = {
  TABLE_SIZE: fld(bits(10, 0), 'RO', 'table size minus one'),
  FUNCTION_MASK: fld(bit(14), 'RW', 'masks every vector'),
  ENABLE: fld(bit(15), 'RW', 'MSI-X enable (deasserts INTx)'),
} as const;

/** Table/PBA locator fields (+4, +8). */
export const MSIX_LOCATOR = {
  BIR: fld(bits(2, 0), 'RO', 'BAR index'),
  OFFSET: fld(bits(31, 3), 'RO', 'offset in the BAR (8-byte aligned)'),
} as const;

/** Options of an MSI-X capability: vectors and where the table and the PBA live. */
export interface MsixOptions {
  /** 1 to 2048. */
  readonly vectors: number;
  readonly tableBar: number;
  readonly tableOffset: number;
  readonly pbaBar: number;
  readonly pbaOffset: number;
}

/** The MSI-X capability (PCI 3.0 section 6.8.2). */
export function msixLayout(o: MsixOptions): CapabilityLayout {
  return {
    name: 'MSI-X', id: CapId.MSIX, length: 12,
    resets: { CONTROL: o.vectors - 1, TABLE: (o.tableOffset | o.tableBar) >>> 0, PBA: (o.pbaOffset | o.pbaBar) >>> 0 },
    regs: [
      ...HEADER_REGS,
      { name: 'CONTROL', offset: 2, width: 2, reset: 'device', desc: 'Message control', fields: MSIX_CONTROL },
      { name: 'TABLE', offset: 4, width: 4, reset: 'device', desc: 'Table offset / BIR', fields: MSIX_LOCATOR },
      { name: 'PBA', offset: 8, width: 4, reset: 'device', desc: 'Pending bit array offset / BIR', fields: MSIX_LOCATOR },
    ],
  };
}

/** PCI Express Device Control fields (+8). */
export const PCIE_DEVCTL = {
  CERE: fld(bit(0), 'RW', 'correctable error reporting enable'),
  NFERE: fld(bit(1), 'RW', 'non-fatal error reporting enable'),
  FERE: fld(bit(2), 'RW', 'fatal error reporting enable'),
  URRE: fld(bit(3), 'RW', 'unsupported request reporting enable'),
  RELAX_EN: fld(bit(4), 'RW', 'relaxed ordering enable'),
  PAYLOAD: fld(bits(7, 5), 'RW', 'max payload size'),
  EXT_TAG: fld(bit(8), 'RW', 'extended tag enable'),
  NOSNOOP_EN: fld(bit(11), 'RW', 'no snoop enable'),
  READRQ: fld(bits(14, 12), 'RW', 'max read request size'),
} as const;

/** Device Control bit 15, Initiate Function Level Reset: write-only, reads 0 (present only with FLR). */
export const PCIE_DEVCTL_FLR = fld(bit(15), 'WO', 'initiate function level reset');

/** PCI Express Device Status fields (+0xA). */
export const PCIE_DEVSTA = {
  CED: fld(bit(0), 'W1C', 'correctable error detected'),
  NFED: fld(bit(1), 'W1C', 'non-fatal error detected'),
  FED: fld(bit(2), 'W1C', 'fatal error detected'),
  URD: fld(bit(3), 'W1C', 'unsupported request detected'),
  TRPND: fld(bit(5), 'HW', 'transactions pending'),
} as const;

/** Device Capabilities bit 28: function level reset capable. */
export const PCIE_DEVCAP_FLR = fld(bit(28), 'RO', 'function level reset capable');

/** The PCI Express capability, version 2, of an endpoint on a x1 2.5 GT/s link; FLR if `flr`. */
export function pcieLayout(flr: boolean): CapabilityLayout {
  const devctl: Record<string, RegField> = { ...PCIE_DEVCTL };
  if (flr) devctl['BCR_FLR'] = PCIE_DEVCTL_FLR;
  const devcap = (1 << 15) | (flr ? 1 << PCIE_DEVCAP_FLR.lsb : 0);
  return {
    name: 'PCIe', id: CapId.EXP, length: 0x3c, resets: { DEVCAP: devcap >>> 0 },
    regs: [
      ...HEADER_REGS,
      { name: 'FLAGS', offset: 0x02, width: 2, reset: 0x0002, desc: 'Capabilities: version 2, endpoint',
        fields: { VERSION: fld(bits(3, 0), 'RO', 'capability version'), TYPE: fld(bits(7, 4), 'RO', '0 = PCI Express endpoint') } },
      { name: 'DEVCAP', offset: 0x04, width: 4, reset: 'device', desc: 'Device capabilities: 128-byte payload, role-based errors',
        fields: { PAYLOAD: fld(bits(2, 0), 'RO', 'max payload supported (0 = 128 B)'), RBER: fld(bit(15), 'RO', 'role-based error reporting'), FLR: PCIE_DEVCAP_FLR } },
      { name: 'DEVCTL', offset: 0x08, width: 2, reset: 0x2810, desc: 'Device control', fields: devctl },
      { name: 'DEVSTA', offset: 0x0a, width: 2, reset: 0, desc: 'Device status', fields: PCIE_DEVSTA },
      { name: 'LNKCAP', offset: 0x0c, width: 4, reset: 0x0011, desc: 'Link capabilities: 2.5 GT/s, x1',
        fields: { SPEED: fld(bits(3, 0), 'RO', 'max link speed'), WIDTH: fld(bits(9, 4), 'RO', 'max link width') } },
      { name: 'LNKCTL', offset: 0x10, width: 2, reset: 0, desc: 'Link control',
        fields: { ASPM: fld(bits(1, 0), 'RW', 'ASPM control'), CCC: fld(bit(6), 'RW', 'common clock'), ES: fld(bit(7), 'RW', 'extended synch') } },
      { name: 'LNKSTA', offset: 0x12, width: 2, reset: 0x0011, desc: 'Link status: 2.5 GT/s, x1', fields: {} },
      { name: 'DEVCAP2', offset: 0x24, width: 4, reset: 0, desc: 'Device capabilities 2 (none)', fields: {} },
      { name: 'DEVCTL2', offset: 0x28, width: 2, reset: 0, desc: 'Device control 2 (none)', fields: {} },
      { name: 'LNKCAP2', offset: 0x2c, width: 4, reset: 0x0002, desc: 'Link capabilities 2: 2.5 GT/s', fields: {} },
      { name: 'LNKCTL2', offset: 0x30, width: 2, reset: 0x0001, desc: 'Link control 2',
        fields: { TLS: fld(bits(3, 0), 'RW', 'target link speed') } },
    ],
  };
}

/** Where each capability of a chain landed. */
export type CapabilityOffsets = Partial<Record<CapabilityLayout['name'], number>>;

/**
 * Places `caps` one after another from 0x40 (dword aligned, as QEMU's pci_find_space allocates), links
 * them through NEXT, points the header at the first and sets Status.CAP_LIST.
 */
export function buildChain(cfg: ConfigSpace, caps: readonly CapabilityLayout[]): CapabilityOffsets {
  const at: number[] = [];
  let next = PCI_HEADER_SIZE;
  for (const c of caps) {
    at.push(next);
    next = (next + c.length + 3) & ~3;
  }
  invariant(next <= 0x100, () => `capabilities need ${next} bytes, more than conventional config space`);
  const out: CapabilityOffsets = {};
  caps.forEach((c, i) => {
    const off = at[i] as number;
    cfg.define(c.name, off, c.regs, c.length, { ...c.resets, CAP_ID: c.id, NEXT: at[i + 1] ?? 0 });
    out[c.name] = off;
  });
  cfg.set8(PCI_CAP_PTR, at[0] ?? 0);
  if (caps.length > 0) cfg.set16(PCI_STATUS, cfg.get16(PCI_STATUS) | (1 << STATUS.CAP_LIST.lsb));
  return out;
}
