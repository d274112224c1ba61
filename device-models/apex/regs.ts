import { bit, bits } from '../../sim/index.ts';
import { fld, type RegField } from '../pci/index.ts';

/**
 * The Apex (Coral Edge TPU) BAR2 CSR map as data, from spec/devices.md section 1.3 ([GD] apex_driver.c,
 * [LE] beagle_csr_offsets.h). MMIO dispatch (device.ts) and the README's table come from {@link APEX_REGS}.
 * The MSI-X table (0x46800) and PBA (0x46068) belong to the PCI function; the page table (0x50000) is
 * {@link APEX_PAGE_TABLE}. Registers marked dmasim in their description behave as dmasim defines.
 */

/** Summary access of an Apex register; the fields hold the exact semantics. */
export type ApexAccess = 'RO' | 'RW' | 'W0C' | 'HW';

/**
 * Reset domain: `aon` registers (SCU, thermal, efuse, idle generator) keep their values through a GCB
 * reset and accept writes while the GCB is in reset; `gcb` registers return to their reset values when the
 * GCB enters reset, and writes to them while it is in reset are dropped (a guest error).
 */
export type ApexDomain = 'aon' | 'gcb';

/** One BAR2 register. */
export interface ApexReg {
  readonly name: string;
  readonly offset: number;
  /** Bits. 64-bit registers also take 4-byte accesses to either half. */
  readonly width: 32 | 64;
  readonly access: ApexAccess;
  readonly reset: bigint;
  readonly domain: ApexDomain;
  readonly desc: string;
  readonly fields: Readonly<Record<string, RegField>>;
}

/** Identity: 1ac1:089a, class 0x0000ff as the hardware reports it (Linux's fixup ORs in 0x088000). */
export const APEX_ID = { vendorId: 0x1ac1, deviceId: 0x089a, revision: 0x00, classCode: 0x0000ff } as const;
/** Subsystem ids (dmasim's choice: the real values are not recorded). */
export const APEX_SUBSYSTEM = { subsystemVendorId: 0x1ac1, subsystemId: 0x089a } as const;
/** BAR0: 16 KiB, unused by the driver. */
export const APEX_BAR0_SIZE = 16 * 1024;
/** BAR2: 1 MiB of CSRs, page table and MSI-X. */
export const APEX_BAR2_SIZE = 1 << 20;
/**
 * MSI-X vectors advertised: 128 (dmasim's choice; the real count is unrecorded). Two PBA qwords at
 * 0x46068/0x46070 hold exactly 128 bits, and the table (128 x 16 B from 0x46800) ends at 0x47000.
 */
export const APEX_MSIX_VECTORS = 128;
/** BAR2 offset of the MSI-X table. */
export const APEX_MSIX_TABLE = 0x46800;
/** BAR2 offset of the MSI-X PBA. */
export const APEX_MSIX_PBA = 0x46068;
/** The page table: 8192 8-byte slots at BAR2 0x50000. */
export const APEX_PAGE_TABLE = { offset: 0x50000, entries: 8192 } as const;
/** The index below which registers live (the page table starts here). */
export const APEX_REGS_END = APEX_PAGE_TABLE.offset;

/** The 13 interrupt sources (apex_interrupt / DW_INTERRUPT_*): the MSI-X entry index the driver uses. */
export const ApexIrq = {
  INSTR_QUEUE: 0, INPUT_ACTV_QUEUE: 1, PARAM_QUEUE: 2, OUTPUT_ACTV_QUEUE: 3,
  SC_HOST_0: 4, SC_HOST_1: 5, SC_HOST_2: 6, SC_HOST_3: 7,
  TOP_LEVEL_0: 8, TOP_LEVEL_1: 9, TOP_LEVEL_2: 10, TOP_LEVEL_3: 11,
  FATAL_ERR: 12,
} as const;
/** Number of interrupt sources. */
export const APEX_IRQ_COUNT = 13;
/** Source names by index. */
export const APEX_IRQ_NAMES: readonly string[] = Object.keys(ApexIrq);

/** hib_error_status bits ([LE] common_csr_helper.h `HibError`). */
export const HIB_ERROR = {
  INBOUND_PAGE_FAULT: fld(bit(0), 'W0C', 'a simple-address access through an invalid or out-of-range slot'),
  EXTENDED_PAGE_FAULT: fld(bit(1), 'W0C', 'an extended-address access through an invalid level-0 or level-1 entry, or out of range'),
  CSR_PARITY: fld(bit(2), 'W0C', 'CSR parity error (never set)'),
  AXI_WRITE: fld(bit(3), 'W0C', 'AXI slave B error: a DMA write the host bus refused'),
  AXI_READ: fld(bit(4), 'W0C', 'AXI slave R error: a DMA read the host bus refused'),
  QUEUE_BAD_CONFIG: fld(bits(8, 5), 'W0C', 'queue 0..3 enabled with a bad size (bit 5 + q; dmasim: queue 0 here, queues 1-3 in their Qq_ERROR_STATUS)'),
  QUEUE_INVALID: fld(bits(12, 9), 'W0C', 'queue 0..3 invalid: tail out of range, bad descriptor or command (bit 9 + q; as above)'),
  LENGTH_0_DMA: fld(bit(13), 'W0C', 'a descriptor of size 0'),
  VIRT_TABLE_RDATA_UNCORR: fld(bit(14), 'W0C', 'uncorrectable page-table read (never set)'),
} as const;

/** SCU_2 fields used by the reset and clock-gating sequences. */
export const SCU_2 = {
  RG_RST_GCB: fld(bits(3, 2), 'RW', 'GCB reset: 1 force reset, 2 force not reset, 0/3 no force (out of reset)'),
  RG_GATED_GCB: fld(bits(19, 18), 'RW', 'GCB clock gate: 1 gated (no effect in dmasim beyond storage)'),
} as const;

/** SCU_3 fields. */
export const SCU_3 = {
  CUR_RST_GCB: fld(bit(4), 'HW', 'the GCB is in reset'),
  CUR_RAM_SD: fld(bit(6), 'HW', 'the GCB RAMs are shut down'),
  RG_FORCE_RAM_SD: fld(bits(15, 14), 'RW', 'force RAM shutdown: 3 shut down, else on'),
  RG_PWR_STATE_OVR: fld(bits(27, 26), 'RW', 'power state override (2: HW clock gating allowed)'),
  PERF: fld(bits(31, 28), 'RW', 'performance: div [29:28], axi_fixed [30], 8051_fixed [31]'),
} as const;

/** Instruction queue control fields. */
export const IQ_CONTROL = {
  ENABLE: fld(bit(0), 'RW', 'enable: 0 -> 1 checks size and resets tail and heads to 0; 1 -> 0 stops and clears HALTED'),
  SC_DESC_SELECT: fld(bit(1), 'RW', 'descriptors go to the scalar core (no effect in dmasim)'),
  SB_WR_ENABLE: fld(bit(2), 'RW', 'write the status block after every completion'),
} as const;

/** Instruction queue status fields. */
export const IQ_STATUS = {
  ENABLED: fld(bit(0), 'HW', 'the queue is enabled (what libedgetpu polls after setting control.ENABLE)'),
  HALTED: fld(bit(1), 'HW', 'dmasim: the queue stopped on an error; disable it (or reset) to recover'),
} as const;

const vec = (hi: number, lo: number, d: string) => fld(bits(hi, lo), 'RW', d);
/** An unpacked INTVECCTL register's field. */
export const INTVECCTL = { VECTOR: vec(6, 0, 'MSI-X entry for this source') } as const;
/** A packed INTVECCTL register's fields: 7 bits per source (`interrupt_pack_width`). */
export const INTVECCTL_PACKED = {
  PACK_0: vec(6, 0, 'MSI-X entry for source 0 of the group'),
  PACK_1: vec(13, 7, 'MSI-X entry for source 1'),
  PACK_2: vec(20, 14, 'MSI-X entry for source 2'),
  PACK_3: vec(27, 21, 'MSI-X entry for source 3'),
} as const;
const FOUR_W0C = (d: string) => ({ SOURCES: fld(bits(3, 0), 'W0C', d) });
const FOUR_RW = (d: string) => ({ ENABLE: fld(bits(3, 0), 'RW', d) });
const ALL64 = (access: 'RW' | 'HW' | 'RO', d: string) => ({ VALUE: fld(bits(63, 0), access, d) });
const ALL32 = (access: 'RW' | 'HW' | 'RO', d: string) => ({ VALUE: fld(bits(31, 0), access, d) });
const RUN_CONTROL = { VALUE: fld(bits(1, 0), 'RW', '0 idle, 1 run, 2 halt, 3 single-step (stored; dmasim runs commands regardless)') };
/** Fields of the thermal warning registers OMC0_D4 / OMC0_D8. */
export const OMC_WARN = {
  ADC: fld(bits(25, 16), 'RW', 'warning threshold (ADC units): fires when the reading is at or below it'),
  ENABLE: fld(bit(31), 'RW', 'warning enable'),
} as const;
/** Fields of the temperature register OMC0_DC. */
export const OMC_TEMP = { ADC: fld(bits(25, 16), 'RO', 'ADC reading; falls as temperature rises') } as const;

/** Number of instruction queues: queue 0 as on Apex, queues 1-3 dmasim's partitioning extension. */
export const APEX_QUEUES = 4;
/** BAR2 page of queue q's registers for q = 1..3 (*dmasim*): 0x4B000, 0x4C000, 0x4D000. */
export const apexQueuePage = (q: number): number => 0x4b000 + (q - 1) * 0x1000;
/** BAR2 offset of queue q's window registers (first slot, slot count), 16 bytes per queue (*dmasim*). */
export const apexQueueWindow = (q: number): number => 0x46100 + 16 * q;

const WINDOW_FIRST = { SLOT: fld(bits(12, 0), 'RW', 'first page-table slot of the window') } as const;
const WINDOW_COUNT = { SLOTS: fld(bits(13, 0), 'RW', 'slots in the window, 0..8192') } as const;

/** Queue q's window registers (dmasim): simple addresses on queue q are relative to its first slot. */
function windowRegs<Q extends 0 | 1 | 2 | 3>(q: Q) {
  const o = apexQueueWindow(q);
  const count = q === 0 ? 8192n : 0n;
  return [
    { name: `Q${q}_WINDOW_FIRST` as `Q${Q}_WINDOW_FIRST`, offset: o, width: 64, access: 'RW', reset: 0n, domain: 'gcb',
      desc: `Queue ${q} window: first slot (dmasim). Simple address slot s on queue ${q} uses slot first + s`, fields: WINDOW_FIRST },
    { name: `Q${q}_WINDOW_COUNT` as `Q${Q}_WINDOW_COUNT`, offset: o + 8, width: 64, access: 'RW', reset: count, domain: 'gcb',
      desc: `Queue ${q} window: slot count (dmasim; s must be below it and first + s below EXTENDED_TABLE)${q === 0 ? '. 8192: the whole simple partition' : '. 0: no access'}`,
      fields: WINDOW_COUNT },
  ] as const;
}

/** Queue q's registers (q = 1..3, dmasim), at the offsets queue 0's have in its page. */
function queueRegs<Q extends 1 | 2 | 3>(q: Q) {
  const p = apexQueuePage(q);
  const n = <S extends string>(s: S) => `Q${q}_${s}` as `Q${Q}_${S}`;
  const like = (r: string) => `Queue ${q}: as IQ_${r}`;
  return [
    { name: n('CONTROL'), offset: p + 0x568, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: like('CONTROL'), fields: IQ_CONTROL },
    { name: n('STATUS'), offset: p + 0x570, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: like('STATUS'), fields: IQ_STATUS },
    { name: n('DESCRIPTOR_SIZE'), offset: p + 0x578, width: 64, access: 'RO', reset: 16n, domain: 'gcb', desc: like('DESCRIPTOR_SIZE'), fields: ALL64('RO', '16') },
    { name: n('MINIMUM_SIZE'), offset: p + 0x580, width: 64, access: 'RO', reset: 4n, domain: 'gcb', desc: like('MINIMUM_SIZE'), fields: ALL64('RO', '4') },
    { name: n('MAXIMUM_SIZE'), offset: p + 0x588, width: 64, access: 'RO', reset: 4096n, domain: 'gcb', desc: like('MAXIMUM_SIZE'), fields: ALL64('RO', '4096') },
    { name: n('BASE'), offset: p + 0x590, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: like('BASE'), fields: ALL64('RW', 'device address') },
    { name: n('STATUS_BLOCK_BASE'), offset: p + 0x598, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: like('STATUS_BLOCK_BASE'), fields: ALL64('RW', 'device address') },
    { name: n('SIZE'), offset: p + 0x5a0, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: like('SIZE'), fields: ALL64('RW', 'descriptors') },
    { name: n('TAIL'), offset: p + 0x5a8, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: like('TAIL'), fields: ALL64('RW', 'next free slot') },
    { name: n('FETCHED_HEAD'), offset: p + 0x5b0, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: like('FETCHED_HEAD'), fields: ALL64('HW', 'slot') },
    { name: n('COMPLETED_HEAD'), offset: p + 0x5b8, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: like('COMPLETED_HEAD'), fields: ALL64('HW', 'slot') },
    { name: n('INT_CONTROL'), offset: p + 0x5c0, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: `Interrupt ${q} enable`, fields: { ENABLE: fld(bit(0), 'RW', 'enable') } },
    { name: n('INT_STATUS'), offset: p + 0x5c8, width: 64, access: 'W0C', reset: 0n, domain: 'gcb', desc: `Interrupt ${q} status: completed head advanced, or queue ${q} faulted`,
      fields: { PENDING: fld(bit(0), 'W0C', 'set on completion or fault') } },
    { name: n('ERROR_STATUS'), offset: p + 0x5d0, width: 64, access: 'W0C', reset: 0n, domain: 'gcb', desc: `Queue ${q} errors (dmasim), laid out as HIB_ERROR_STATUS; they raise interrupt ${q}, never FATAL_ERR`, fields: HIB_ERROR },
    { name: n('FAULT_ADDRESS'), offset: p + 0x5d8, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: `Device address of queue ${q}'s last faulting access (dmasim)`, fields: ALL64('HW', 'device address') },
  ] as const;
}

/** The BAR2 register block. */
export const APEX_REGS = [
  { name: 'OMC0_D0', offset: 0x1a0d0, width: 32, access: 'RW', reset: 0n, domain: 'aon', desc: 'Thermal sensor control (stored)', fields: ALL32('RW', 'stored') },
  { name: 'OMC0_D4', offset: 0x1a0d4, width: 32, access: 'RW', reset: 0n, domain: 'aon', desc: 'Thermal warning 1: raises TOP_LEVEL_3 (thermal) on crossing (dmasim)', fields: OMC_WARN },
  { name: 'OMC0_D8', offset: 0x1a0d8, width: 32, access: 'RW', reset: 0n, domain: 'aon', desc: 'Thermal warning 2 (shutdown alarm): raises TOP_LEVEL_0 (thermal shutdown) on crossing (dmasim)', fields: OMC_WARN },
  { name: 'OMC0_DC', offset: 0x1a0dc, width: 32, access: 'RO', reset: 484n << 16n, domain: 'aon', desc: 'Temperature: (662 - ADC) * 250 + 550 m°C; dmasim: follows the thermal trace option (45.05 °C without one)',
    fields: OMC_TEMP },
  { name: 'EFUSE_0', offset: 0x1a2dc, width: 32, access: 'RO', reset: 0x00c0_ffeen, domain: 'aon', desc: 'Unique id [31:0] (dmasim value)', fields: {} },
  { name: 'EFUSE_1', offset: 0x1a2e0, width: 32, access: 'RO', reset: 0x0d3a_5100n, domain: 'aon', desc: 'Unique id [63:32]', fields: {} },
  { name: 'EFUSE_2', offset: 0x1a2e4, width: 32, access: 'RO', reset: 0x1ac1_089an, domain: 'aon', desc: 'Unique id [95:64]', fields: {} },
  { name: 'EFUSE_3', offset: 0x1a2e8, width: 32, access: 'RO', reset: 0x0000_0001n, domain: 'aon', desc: 'Unique id [127:96]', fields: {} },
  { name: 'SCU_0', offset: 0x1a30c, width: 32, access: 'RW', reset: 0n, domain: 'aon', desc: 'System control 0 (stored)', fields: ALL32('RW', 'stored') },
  { name: 'SCU_1', offset: 0x1a310, width: 32, access: 'RW', reset: 0n, domain: 'aon', desc: 'System control 1 (stored)', fields: ALL32('RW', 'stored') },
  { name: 'SCU_2', offset: 0x1a314, width: 32, access: 'RW', reset: 0n, domain: 'aon', desc: 'System control 2: GCB reset and clock gate', fields: SCU_2 },
  { name: 'SCU_3', offset: 0x1a318, width: 32, access: 'RW', reset: 0n, domain: 'aon', desc: 'System control 3: RAM shutdown, reset status, power state, performance', fields: SCU_3 },
  { name: 'SCU_4', offset: 0x1a31c, width: 32, access: 'RW', reset: 0n, domain: 'aon', desc: 'System control 4 (stored)', fields: ALL32('RW', 'stored') },
  { name: 'SCU_5', offset: 0x1a320, width: 32, access: 'RW', reset: 0n, domain: 'aon', desc: 'System control 5 (stored)', fields: ALL32('RW', 'stored') },
  { name: 'AXI_QUIESCE', offset: 0x1a32c, width: 32, access: 'RW', reset: 0n, domain: 'aon', desc: 'AXI quiesce (SW clock gating)',
    fields: { QUIESCE: fld(bit(16), 'RW', 'quiesce the AXI bus (stored)') } },
  { name: 'SC_RUN_CONTROL', offset: 0x44018, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'scalarCoreRunControl', fields: RUN_CONTROL },
  { name: 'AVDATA_POP_RUN_CONTROL', offset: 0x44158, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'avDataPopRunControl', fields: RUN_CONTROL },
  { name: 'PARAMETER_POP_RUN_CONTROL', offset: 0x44198, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'parameterPopRunControl', fields: RUN_CONTROL },
  { name: 'SC_RUN_STATUS', offset: 0x44258, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: 'scalarCoreRunStatus: follows SC_RUN_CONTROL',
    fields: { VALUE: fld(bits(1, 0), 'HW', 'the run state last written') } },
  { name: 'PAGE_TABLE_SIZE', offset: 0x46000, width: 64, access: 'RO', reset: 8192n, domain: 'gcb', desc: 'Page table slots', fields: ALL64('RO', '8192') },
  { name: 'EXTENDED_TABLE', offset: 0x46008, width: 64, access: 'RW', reset: 8192n, domain: 'gcb', desc: 'Number of simple slots; extended level-0 slots follow. A value above 8192 is ignored',
    fields: { SIMPLE: fld(bits(13, 0), 'RW', 'simple slot count, 0..8192') } },
  { name: 'TRANSLATION_ENABLE', offset: 0x46010, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Stored; dmasim always translates', fields: ALL64('RW', 'stored') },
  { name: 'INSTR_QUEUE_INTVECCTL', offset: 0x46018, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'MSI-X entry of interrupt 0', fields: INTVECCTL },
  { name: 'INPUT_ACTV_QUEUE_INTVECCTL', offset: 0x46020, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'MSI-X entry of interrupt 1', fields: INTVECCTL },
  { name: 'PARAM_QUEUE_INTVECCTL', offset: 0x46028, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'MSI-X entry of interrupt 2', fields: INTVECCTL },
  { name: 'OUTPUT_ACTV_QUEUE_INTVECCTL', offset: 0x46030, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'MSI-X entry of interrupt 3', fields: INTVECCTL },
  { name: 'SC_HOST_INTVECCTL', offset: 0x46038, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'MSI-X entries of interrupts 4..7 (SC_HOST_0..3)', fields: INTVECCTL_PACKED },
  { name: 'TOP_LEVEL_INTVECCTL', offset: 0x46040, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'MSI-X entries of interrupts 8..11 (TOP_LEVEL_0..3)', fields: INTVECCTL_PACKED },
  { name: 'FATAL_ERR_INTVECCTL', offset: 0x46048, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'MSI-X entry of interrupt 12', fields: INTVECCTL },
  { name: 'KERNEL_DMA_PAUSE', offset: 0x46050, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Stored (no effect in dmasim)', fields: ALL64('RW', 'stored') },
  { name: 'KERNEL_DMA_PAUSE_MASK', offset: 0x46058, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Stored (no effect in dmasim)', fields: ALL64('RW', 'stored') },
  { name: 'STATUS_BLOCK_DELAY', offset: 0x46060, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Stored (no effect in dmasim)', fields: ALL64('RW', 'stored') },
  { name: 'PAGE_TABLE_INIT', offset: 0x46078, width: 64, access: 'HW', reset: 1n, domain: 'aon', desc: '1 once the page table is cleared after reset (0 from reset entry until then)',
    fields: { DONE: fld(bit(0), 'HW', 'initialised') } },
  { name: 'MSIX_TABLE_INIT', offset: 0x46080, width: 64, access: 'HW', reset: 1n, domain: 'aon', desc: '1 once the MSI-X table is cleared after reset',
    fields: { DONE: fld(bit(0), 'HW', 'initialised') } },
  ...windowRegs(0), ...windowRegs(1), ...windowRegs(2), ...windowRegs(3),
  { name: 'IQ_CONTROL', offset: 0x48568, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Instruction queue control', fields: IQ_CONTROL },
  { name: 'IQ_STATUS', offset: 0x48570, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: 'Instruction queue status', fields: IQ_STATUS },
  { name: 'IQ_DESCRIPTOR_SIZE', offset: 0x48578, width: 64, access: 'RO', reset: 16n, domain: 'gcb', desc: 'Descriptor bytes', fields: ALL64('RO', '16') },
  { name: 'IQ_MINIMUM_SIZE', offset: 0x48580, width: 64, access: 'RO', reset: 4n, domain: 'gcb', desc: 'Smallest ring, in descriptors (dmasim value)', fields: ALL64('RO', '4') },
  { name: 'IQ_MAXIMUM_SIZE', offset: 0x48588, width: 64, access: 'RO', reset: 4096n, domain: 'gcb', desc: 'Largest ring, in descriptors (dmasim value)', fields: ALL64('RO', '4096') },
  { name: 'IQ_BASE', offset: 0x48590, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Ring base: a gasket device address', fields: ALL64('RW', 'device address') },
  { name: 'IQ_STATUS_BLOCK_BASE', offset: 0x48598, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Status block: a gasket device address', fields: ALL64('RW', 'device address') },
  { name: 'IQ_SIZE', offset: 0x485a0, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Ring size in descriptors: a power of 2 within min/max', fields: ALL64('RW', 'descriptors') },
  { name: 'IQ_TAIL', offset: 0x485a8, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Tail: the doorbell. A value >= size halts the queue (QUEUE_INVALID)', fields: ALL64('RW', 'next free slot') },
  { name: 'IQ_FETCHED_HEAD', offset: 0x485b0, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: 'Next descriptor to fetch', fields: ALL64('HW', 'slot') },
  { name: 'IQ_COMPLETED_HEAD', offset: 0x485b8, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: 'Next descriptor to complete', fields: ALL64('HW', 'slot') },
  { name: 'IQ_INT_CONTROL', offset: 0x485c0, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Interrupt 0 enable', fields: { ENABLE: fld(bit(0), 'RW', 'enable') } },
  { name: 'IQ_INT_STATUS', offset: 0x485c8, width: 64, access: 'W0C', reset: 0n, domain: 'gcb', desc: 'Interrupt 0 status: completed head advanced', fields: { PENDING: fld(bit(0), 'W0C', 'set on completion') } },
  { name: 'SC_HOST_INT_CONTROL', offset: 0x486a0, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Interrupts 4..7 enables', fields: FOUR_RW('bit k enables SC_HOST_k') },
  { name: 'SC_HOST_INT_STATUS', offset: 0x486a8, width: 64, access: 'W0C', reset: 0n, domain: 'gcb', desc: 'Interrupts 4..7 status (SC_HOST_0: a command buffer finished)', fields: FOUR_W0C('bit k: SC_HOST_k raised') },
  { name: 'TOP_LEVEL_INT_CONTROL', offset: 0x486b0, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Interrupts 8..11 enables', fields: FOUR_RW('bit k enables TOP_LEVEL_k') },
  { name: 'TOP_LEVEL_INT_STATUS', offset: 0x486b8, width: 64, access: 'W0C', reset: 0n, domain: 'gcb', desc: 'Interrupts 8..11 status: 0 thermalShutdown (warn2), 1 PCIe (injectLinkError), 2 mbist (injectMbistFailure), 3 thermal (warn1)', fields: FOUR_W0C('bit k: TOP_LEVEL_k raised') },
  { name: 'FATAL_ERR_INT_CONTROL', offset: 0x486c0, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Interrupt 12 enable', fields: { ENABLE: fld(bit(0), 'RW', 'enable') } },
  { name: 'FATAL_ERR_INT_STATUS', offset: 0x486c8, width: 64, access: 'W0C', reset: 0n, domain: 'gcb', desc: 'Interrupt 12 status: a HIB error was latched', fields: { PENDING: fld(bit(0), 'W0C', 'sticky until cleared') } },
  { name: 'SC_HOST_INT_COUNT', offset: 0x486d0, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: 'Per-source raise counts (16-bit, wrapping)',
    fields: { COUNT_0: fld(bits(15, 0), 'HW', 'SC_HOST_0 raises'), COUNT_1: fld(bits(31, 16), 'HW', 'SC_HOST_1'), COUNT_2: fld(bits(47, 32), 'HW', 'SC_HOST_2'), COUNT_3: fld(bits(63, 48), 'HW', 'SC_HOST_3') } },
  { name: 'USER_HIB_DMA_PAUSE', offset: 0x486d8, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Pause DMA: the queue starts no new descriptor', fields: { PAUSE: fld(bit(0), 'RW', 'pause') } },
  { name: 'USER_HIB_DMA_PAUSED', offset: 0x486e0, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: 'DMA paused: follows PAUSE after the work in flight drains', fields: { PAUSED: fld(bit(0), 'HW', 'paused') } },
  { name: 'STATUS_BLOCK_UPDATE', offset: 0x486e8, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Periodic status-block updates (stored; dmasim writes it on completion only)', fields: ALL64('RW', 'stored') },
  { name: 'HIB_ERROR_STATUS', offset: 0x486f0, width: 64, access: 'W0C', reset: 0n, domain: 'gcb', desc: 'HIB errors (write 0 to clear, dmasim choice); an unmasked error raises interrupt 12', fields: HIB_ERROR },
  { name: 'HIB_ERROR_MASK', offset: 0x486f8, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'A set bit keeps that error from raising interrupt 12 (it still latches)',
    fields: { MASK: fld(bits(14, 0), 'RW', 'per error bit') } },
  { name: 'HIB_FIRST_ERROR_STATUS', offset: 0x48700, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: 'The error bits latched when HIB_ERROR_STATUS went non-zero', fields: ALL64('HW', 'error bits') },
  { name: 'HIB_FIRST_ERROR_TIMESTAMP', offset: 0x48708, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: 'Virtual ns of the first error (dmasim unit)', fields: ALL64('HW', 'ns') },
  { name: 'PAGE_FAULT_ADDRESS', offset: 0x48738, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: 'Device address of the last faulting access', fields: ALL64('HW', 'device address') },
  { name: 'WIRE_INT_PENDING_BIT_ARRAY', offset: 0x48778, width: 64, access: 'HW', reset: 0n, domain: 'gcb', desc: 'Bit i: source i has its status set and is enabled',
    fields: { PENDING: fld(bits(12, 0), 'HW', 'per source') } },
  { name: 'WIRE_INT_MASK_ARRAY', offset: 0x48780, width: 64, access: 'RW', reset: 0n, domain: 'gcb', desc: 'Bit i masks source i from the INTx wire',
    fields: { MASK: fld(bits(12, 0), 'RW', 'per source') } },
  { name: 'IDLEGENERATOR', offset: 0x4a000, width: 64, access: 'RW', reset: 1n << 32n, domain: 'aon', desc: 'Idle generator; bit 32 = 0 forces the GCB idle (stored)',
    fields: { NOT_FORCED_IDLE: fld(bit(32), 'RW', '0: force idle') } },
  ...queueRegs(1), ...queueRegs(2), ...queueRegs(3),
] as const satisfies readonly ApexReg[];

/** Name of an Apex register. */
export type ApexRegName = (typeof APEX_REGS)[number]['name'];

/** Index of each register in {@link APEX_REGS}. */
export const APEX: Readonly<Record<ApexRegName, number>> = Object.fromEntries(APEX_REGS.map((r, i) => [r.name, i])) as Record<ApexRegName, number>;

/** BAR2 offset of each register by index (for the device's own accesses). */
export const APEX_OFFSET: readonly number[] = APEX_REGS.map((r) => r.offset);

/** Flag in {@link APEX_REG_AT} marking the high dword of a 64-bit register. */
export const HIGH_HALF = 0x4000;

/**
 * Register index per dword below {@link APEX_REGS_END} (-1: none). A 64-bit register answers at both its
 * dwords: the high half is marked with the index + 0x4000 so that one lookup tells which half it is.
 */
export const APEX_REG_AT: Int16Array = (() => {
  const at = new Int16Array(APEX_REGS_END / 4).fill(-1);
  APEX_REGS.forEach((r, i) => {
    at[r.offset / 4] = i;
    if (r.width === 64) at[r.offset / 4 + 1] = i + HIGH_HALF;
  });
  return at;
})();


/** Per-register masks derived from the fields, as [lo, hi] dwords: writable (RW), write-0-to-clear. */
export const APEX_MASKS: { readonly rw: Uint32Array; readonly w0c: Uint32Array } = (() => {
  const rw = new Uint32Array(APEX_REGS.length * 2);
  const w0c = new Uint32Array(APEX_REGS.length * 2);
  APEX_REGS.forEach((r, i) => {
    for (const f of Object.values(r.fields) as RegField[]) {
      const m = ((1n << BigInt(f.width)) - 1n) << BigInt(f.lsb);
      const target = f.access === 'RW' ? rw : f.access === 'W0C' ? w0c : undefined;
      if (target === undefined) continue;
      target[2 * i] = ((target[2 * i] as number) | Number(m & 0xffff_ffffn)) >>> 0;
      target[2 * i + 1] = ((target[2 * i + 1] as number) | Number((m >> 32n) & 0xffff_ffffn)) >>> 0;
    }
  });
  return { rw, w0c };
})();


/** Register indices of one instruction queue (queue 0: the IQ_* registers; error registers -1). */
export interface ApexQueueRegs {
  readonly control: number;
  readonly status: number;
  readonly minimumSize: number;
  readonly maximumSize: number;
  readonly base: number;
  readonly statusBlockBase: number;
  readonly size: number;
  readonly tail: number;
  readonly fetchedHead: number;
  readonly completedHead: number;
  readonly intControl: number;
  readonly intStatus: number;
  readonly windowFirst: number;
  readonly windowCount: number;
  /** Qq_ERROR_STATUS (-1 for queue 0, whose errors go to HIB_ERROR_STATUS). */
  readonly errorStatus: number;
  /** Qq_FAULT_ADDRESS (-1 for queue 0: PAGE_FAULT_ADDRESS). */
  readonly faultAddress: number;
}

/** {@link ApexQueueRegs} of queues 0..3, looked up by name in {@link APEX_REGS}. */
export const APEX_QUEUE_REGS: readonly ApexQueueRegs[] = Array.from({ length: APEX_QUEUES }, (_, q) => {
  const idx = (name: string): number => APEX_REGS.findIndex((r) => r.name === name);
  const p = q === 0 ? 'IQ_' : `Q${q}_`;
  return {
    control: idx(`${p}CONTROL`), status: idx(`${p}STATUS`), minimumSize: idx(`${p}MINIMUM_SIZE`), maximumSize: idx(`${p}MAXIMUM_SIZE`),
    base: idx(`${p}BASE`), statusBlockBase: idx(`${p}STATUS_BLOCK_BASE`), size: idx(`${p}SIZE`), tail: idx(`${p}TAIL`),
    fetchedHead: idx(`${p}FETCHED_HEAD`), completedHead: idx(`${p}COMPLETED_HEAD`), intControl: idx(`${p}INT_CONTROL`), intStatus: idx(`${p}INT_STATUS`),
    windowFirst: idx(`Q${q}_WINDOW_FIRST`), windowCount: idx(`Q${q}_WINDOW_COUNT`),
    errorStatus: q === 0 ? -1 : idx(`Q${q}_ERROR_STATUS`), faultAddress: q === 0 ? -1 : idx(`Q${q}_FAULT_ADDRESS`),
  };
});
