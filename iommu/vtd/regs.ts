import { bit, bits, invariant, type BitField } from '../../sim/index.ts';

/**
 * The VT-d remapping unit's register block as data (VT-d spec chapter 11; offsets and reset values as QEMU's
 * hw/i386/intel_iommu_internal.h and vtd_init define them). MMIO dispatch and the README's register table are
 * both derived from {@link VTD_REGS}.
 *
 * Access kinds of a field: `RO` read-only (writes ignored), `RW` read-write, `WO` write-only (reads as 0),
 * `W1C` write 1 to clear. Bits not covered by a field are reserved: they read 0 and writes are ignored.
 */
export type FieldAccess = 'RO' | 'RW' | 'WO' | 'W1C';

/** A named bitfield of a register with its access kind. */
export interface RegField extends BitField {
  readonly access: FieldAccess;
  readonly desc: string;
}

/** Where a register's reset value comes from: a constant, or the unit's configuration (CAP, ECAP). */
export type RegReset = bigint | 'config';

/** One register of the block. */
export interface RegDef {
  readonly name: string;
  /** Byte offset in the block (for a repeated register: of instance 0). */
  readonly offset: number;
  /** 32 or 64 bits. */
  readonly width: 32 | 64;
  /** Summary for documentation (the fields hold the exact semantics). */
  readonly access: string;
  readonly reset: RegReset;
  readonly fields: Readonly<Record<string, RegField>>;
  readonly desc: string;
  /** Repeated once per fault recording register, `stride` bytes apart (the FRCD halves). */
  readonly repeat?: { readonly count: 'NFR'; readonly stride: number };
}

function f(field: BitField, access: FieldAccess, desc: string): RegField {
  return { lsb: field.lsb, width: field.width, access, desc };
}

/** Byte offset of the first fault recording register (QEMU's DMAR_FRCD_REG_OFFSET); CAP.FRO = this / 16. */
export const FRCD_OFFSET = 0x220;
/** Byte offset of the IOTLB registers (IVA, then IOTLB at +8); ECAP.IRO = this / 16. */
export const IOTLB_REG_OFFSET = 0xf0;
/** Maximum address-mask value for page-selective invalidation (CAP.MAMV; QEMU's VTD_MAMV). */
export const MAMV = 18;

/** The register block. Offsets follow QEMU (0x220 for the fault recording registers). */
export const VTD_REGS = [
  { name: 'VER', offset: 0x00, width: 32, access: 'RO', reset: 0x10n, desc: 'Version: architecture 1.0',
    fields: { MIN: f(bits(3, 0), 'RO', 'minor version'), MAX: f(bits(7, 4), 'RO', 'major version') } },
  { name: 'CAP', offset: 0x08, width: 64, access: 'RO', reset: 'config', desc: 'Capability',
    fields: {
      ND: f(bits(2, 0), 'RO', 'number of domains: 6 = 16-bit domain ids'),
      CM: f(bit(7), 'RO', 'caching mode'),
      SAGAW: f(bits(12, 8), 'RO', 'supported adjusted guest address widths: bit 1 39-bit (3-level), bit 2 48-bit (4-level)'),
      MGAW: f(bits(21, 16), 'RO', 'maximum guest address width minus one'),
      FRO: f(bits(33, 24), 'RO', 'fault recording register offset / 16'),
      SLLPS: f(bits(37, 34), 'RO', 'second-level large page support: bit 0 2 MiB, bit 1 1 GiB'),
      PSI: f(bit(39), 'RO', 'page-selective invalidation'),
      NFR: f(bits(47, 40), 'RO', 'number of fault recording registers minus one'),
      MAMV: f(bits(53, 48), 'RO', 'maximum address mask value'),
    } },
  { name: 'ECAP', offset: 0x10, width: 64, access: 'RO', reset: 'config', desc: 'Extended capability',
    fields: {
      QI: f(bit(1), 'RO', 'queued invalidation'),
      PT: f(bit(6), 'RO', 'pass-through (context TT = 2)'),
      SC: f(bit(7), 'RO', 'snoop control (SNP in leaf entries)'),
      IRO: f(bits(17, 8), 'RO', 'IOTLB register offset / 16'),
    } },
  { name: 'GCMD', offset: 0x18, width: 32, access: 'WO', reset: 0n, desc: 'Global command',
    fields: {
      QIE: f(bit(26), 'WO', 'queued invalidation enable'),
      SRTP: f(bit(30), 'WO', 'set root table pointer (one-shot)'),
      TE: f(bit(31), 'WO', 'translation enable'),
    } },
  { name: 'GSTS', offset: 0x1c, width: 32, access: 'RO', reset: 0n, desc: 'Global status',
    fields: {
      QIES: f(bit(26), 'RO', 'queued invalidation enabled'),
      RTPS: f(bit(30), 'RO', 'root table pointer set'),
      TES: f(bit(31), 'RO', 'translation enabled'),
    } },
  { name: 'RTADDR', offset: 0x20, width: 64, access: 'RW', reset: 0n, desc: 'Root table address (latched by GCMD.SRTP)',
    fields: { RTA: f(bits(63, 12), 'RW', 'root table physical address, 4 KiB aligned') } },
  { name: 'CCMD', offset: 0x28, width: 64, access: 'RW', reset: 0n, desc: 'Context command (register-based context-cache invalidation)',
    fields: {
      DID: f(bits(15, 0), 'RW', 'domain id'),
      SID: f(bits(31, 16), 'RW', 'source id'),
      FM: f(bits(33, 32), 'RW', 'function mask'),
      CAIG: f(bits(60, 59), 'RO', 'actual granularity'),
      CIRG: f(bits(62, 61), 'RW', 'requested granularity: 1 global, 2 domain, 3 device'),
      ICC: f(bit(63), 'RW', 'invalidate context cache; cleared by hardware when done'),
    } },
  { name: 'FSTS', offset: 0x34, width: 32, access: 'RW1C', reset: 0n, desc: 'Fault status',
    fields: {
      PFO: f(bit(0), 'W1C', 'primary fault overflow'),
      PPF: f(bit(1), 'RO', 'primary pending fault (some FRCD has F set)'),
      IQE: f(bit(4), 'W1C', 'invalidation queue error'),
      FRI: f(bits(15, 8), 'RO', 'fault record index'),
    } },
  { name: 'FECTL', offset: 0x38, width: 32, access: 'RW', reset: 0x8000_0000n, desc: 'Fault event control',
    fields: { IP: f(bit(30), 'RO', 'interrupt pending'), IM: f(bit(31), 'RW', 'interrupt mask') } },
  { name: 'FEDATA', offset: 0x3c, width: 32, access: 'RW', reset: 0n, desc: 'Fault event interrupt data',
    fields: { IMD: f(bits(15, 0), 'RW', 'interrupt message data') } },
  { name: 'FEADDR', offset: 0x40, width: 32, access: 'RW', reset: 0n, desc: 'Fault event interrupt address',
    fields: { MA: f(bits(31, 2), 'RW', 'message address bits 31:2') } },
  { name: 'FEUADDR', offset: 0x44, width: 32, access: 'RO', reset: 0n, desc: 'Fault event upper address (reserved without ECAP.EIM)', fields: {} },
  { name: 'IQH', offset: 0x80, width: 64, access: 'RO', reset: 0n, desc: 'Invalidation queue head',
    fields: { QH: f(bits(18, 4), 'RO', 'index of the next descriptor hardware fetches') } },
  { name: 'IQT', offset: 0x88, width: 64, access: 'RW', reset: 0n, desc: 'Invalidation queue tail',
    fields: { QT: f(bits(18, 4), 'RW', 'index one past the last descriptor software posted') } },
  { name: 'IQA', offset: 0x90, width: 64, access: 'RW', reset: 0n, desc: 'Invalidation queue address',
    fields: {
      QS: f(bits(2, 0), 'RW', 'queue size: 2^QS pages of 256 descriptors'),
      IQA: f(bits(63, 12), 'RW', 'queue base physical address, 4 KiB aligned'),
    } },
  { name: 'ICS', offset: 0x9c, width: 32, access: 'RW1C', reset: 0n, desc: 'Invalidation completion status',
    fields: { IWC: f(bit(0), 'W1C', 'invalidation wait descriptor complete') } },
  { name: 'IECTL', offset: 0xa0, width: 32, access: 'RW', reset: 0x8000_0000n, desc: 'Invalidation event control',
    fields: { IP: f(bit(30), 'RO', 'interrupt pending'), IM: f(bit(31), 'RW', 'interrupt mask') } },
  { name: 'IEDATA', offset: 0xa4, width: 32, access: 'RW', reset: 0n, desc: 'Invalidation event data',
    fields: { IMD: f(bits(31, 0), 'RW', 'interrupt message data') } },
  { name: 'IEADDR', offset: 0xa8, width: 32, access: 'RW', reset: 0n, desc: 'Invalidation event address',
    fields: { MA: f(bits(31, 2), 'RW', 'message address bits 31:2') } },
  { name: 'IEUADDR', offset: 0xac, width: 32, access: 'RO', reset: 0n, desc: 'Invalidation event upper address (reserved without ECAP.EIM)', fields: {} },
  { name: 'IVA', offset: IOTLB_REG_OFFSET, width: 64, access: 'WO', reset: 0n, desc: 'Invalidate address (for IOTLB page-selective)',
    fields: {
      AM: f(bits(5, 0), 'WO', 'address mask: 2^AM pages'),
      IH: f(bit(6), 'WO', 'invalidation hint'),
      ADDR: f(bits(63, 12), 'WO', 'page address'),
    } },
  { name: 'IOTLB', offset: IOTLB_REG_OFFSET + 8, width: 64, access: 'RW', reset: 0n, desc: 'IOTLB invalidate (register-based)',
    fields: {
      DID: f(bits(47, 32), 'RW', 'domain id'),
      DW: f(bit(48), 'RW', 'drain writes'),
      DR: f(bit(49), 'RW', 'drain reads'),
      IAIG: f(bits(58, 57), 'RO', 'actual granularity'),
      IIRG: f(bits(61, 60), 'RW', 'requested granularity: 1 global, 2 domain, 3 page'),
      IVT: f(bit(63), 'RW', 'invalidate IOTLB; cleared by hardware when done'),
    } },
  { name: 'FRCD_LO', offset: FRCD_OFFSET, width: 64, access: 'RO', reset: 0n, desc: 'Fault recording register n, bits 63:0',
    repeat: { count: 'NFR', stride: 16 },
    fields: { FI: f(bits(63, 12), 'RO', 'faulting page address') } },
  { name: 'FRCD_HI', offset: FRCD_OFFSET + 8, width: 64, access: 'RW1C', reset: 0n, desc: 'Fault recording register n, bits 127:64',
    repeat: { count: 'NFR', stride: 16 },
    fields: {
      SID: f(bits(15, 0), 'RO', 'source id (requester bus << 8 | devfn)'),
      FR: f(bits(39, 32), 'RO', 'fault reason'),
      T: f(bit(62), 'RO', 'type: 0 write, 1 read'),
      F: f(bit(63), 'W1C', 'fault recorded'),
    } },
] as const satisfies readonly RegDef[];

/** A register name of {@link VTD_REGS}. */
export type RegName = (typeof VTD_REGS)[number]['name'];

/** The definition of register `name`. */
export function regDef(name: RegName): RegDef {
  const r = VTD_REGS.find((d) => d.name === name);
  invariant(r !== undefined, `no VT-d register ${name}`);
  return r;
}

/** Bit mask of field `fd` within dword `dw` of its register (0 = bits 31:0, 1 = bits 63:32). */
export function fieldMaskDword(fd: BitField, dw: number): number {
  const lo = Math.max(fd.lsb, dw * 32);
  const hi = Math.min(fd.lsb + fd.width - 1, dw * 32 + 31);
  if (hi < lo) return 0;
  const w = hi - lo + 1;
  const m = w === 32 ? 0xffffffff : (1 << w) - 1;
  return (m << (lo - dw * 32)) >>> 0;
}

/** The mask of field `fieldName` of register `name` within the dword holding it, and that dword (0 or 1). */
export function regField(name: RegName, fieldName: string): { readonly dw: number; readonly mask: number; readonly shift: number } {
  const fd = regDef(name).fields[fieldName];
  invariant(fd !== undefined, `no field ${fieldName} in VT-d register ${name}`);
  const dw = fd.lsb >= 32 ? 1 : 0;
  return { dw, mask: fieldMaskDword(fd, dw), shift: fd.lsb - dw * 32 };
}

/** Byte offset of each register (instance 0 for the repeated fault recording registers). */
export const REG: Readonly<Record<RegName, number>> = Object.fromEntries(VTD_REGS.map((r) => [r.name, r.offset])) as Record<RegName, number>;

/** Mask of a field of a 32-bit register (or of the dword holding it in a 64-bit one), for hot paths. */
export function fmask(name: RegName, fieldName: string): number {
  return regField(name, fieldName).mask;
}
