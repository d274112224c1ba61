import { bits } from '../../sim/index.ts';
import { fld, type RegField } from '../pci/index.ts';

/**
 * The test device's BAR0 register block as data. The device is dmasim's own (no hardware behind it): a PCI
 * Express endpoint with every feature the PCI function offers, so that tests of the function, the machine's
 * routing and the kernel's PCI core have one target with all BAR kinds, MSI, MSI-X, PM and FLR.
 */

/** One test-device register (all 32-bit). */
export interface TestDevReg {
  readonly name: string;
  readonly offset: number;
  readonly access: 'RO' | 'RW' | 'WO';
  readonly reset: number;
  readonly desc: string;
  readonly fields: Readonly<Record<string, RegField>>;
}

/** Identity of the test device (a vendor id no real device uses: 0x1b36 is QEMU's Red Hat range). */
export const TESTDEV_ID = { vendorId: 0x1b36, deviceId: 0x7e57, revision: 0x01, classCode: 0xff0000 } as const;
/** Bytes of the device's DMA buffer. */
export const TESTDEV_BUF = 256;
/** MSI-X vectors. */
export const TESTDEV_MSIX_VECTORS = 64;

/** The register block of BAR0. */
export const TESTDEV_REGS = [
  { name: 'ID', offset: 0x00, access: 'RO', reset: 0x7e570001, desc: 'Identification', fields: {} },
  { name: 'SCRATCH', offset: 0x04, access: 'RW', reset: 0, desc: 'Scratch (reset by FLR)', fields: { VALUE: fld(bits(31, 0), 'RW', 'any value') } },
  { name: 'MSIX_NOTIFY', offset: 0x08, access: 'WO', reset: 0, desc: 'Notify MSI-X vector <value> (pends while masked)',
    fields: { VECTOR: fld(bits(10, 0), 'WO', 'vector') } },
  { name: 'MSI_NOTIFY', offset: 0x0c, access: 'WO', reset: 0, desc: 'Notify MSI vector <value> (if MSI is enabled)',
    fields: { VECTOR: fld(bits(4, 0), 'WO', 'vector') } },
  { name: 'INTX', offset: 0x10, access: 'RW', reset: 0, desc: 'INTx request level (bit 0)', fields: { LEVEL: fld(bits(0, 0), 'RW', 'requested level') } },
  { name: 'DMA_ADDR_LO', offset: 0x18, access: 'RW', reset: 0, desc: 'DMA bus address [31:0]', fields: { ADDRESS: fld(bits(31, 0), 'RW', 'address') } },
  { name: 'DMA_ADDR_HI', offset: 0x1c, access: 'RW', reset: 0, desc: 'DMA bus address [63:32]', fields: { ADDRESS: fld(bits(31, 0), 'RW', 'address') } },
  { name: 'DMA_LEN', offset: 0x20, access: 'RW', reset: 0, desc: 'DMA length (at most the 256-byte buffer)', fields: { LEN: fld(bits(8, 0), 'RW', 'bytes') } },
  { name: 'DMA_CMD', offset: 0x24, access: 'WO', reset: 0, desc: 'Run a DMA now: 1 RAM -> buffer, 2 buffer -> RAM',
    fields: { OP: fld(bits(1, 0), 'WO', 'operation') } },
  { name: 'DMA_STATUS', offset: 0x28, access: 'RO', reset: 0, desc: 'DmaStatus of the last DMA (0 OK, 1 FAULT, 2 UNSUPPORTED)', fields: {} },
  { name: 'DMA_DONE', offset: 0x2c, access: 'RO', reset: 0, desc: 'Bytes the last DMA moved', fields: {} },
] as const satisfies readonly TestDevReg[];

/** Name of a test-device register. */
export type TestDevRegName = (typeof TESTDEV_REGS)[number]['name'];

/** Index of each register in {@link TESTDEV_REGS}. */
export const TD: Readonly<Record<TestDevRegName, number>> = Object.fromEntries(TESTDEV_REGS.map((r, i) => [r.name, i])) as Record<TestDevRegName, number>;
