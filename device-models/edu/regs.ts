import { bit, bits } from '../../sim/index.ts';
import { fld, type RegField } from '../pci/index.ts';

/**
 * QEMU's `edu` register block (BAR0) as data, register for register from hw/misc/edu.c and
 * docs/specs/edu.rst (QEMU 7.2). MMIO dispatch (device.ts) and the README's table come from {@link EDU_REGS}.
 * A register is reached only at its own offset: the upper dword of a 64-bit register (0x84, ...) is not
 * a register, as in QEMU's `switch (addr)`.
 */

/** One edu register. */
export interface EduReg {
  readonly name: string;
  readonly offset: number;
  /** Bits: 64-bit registers also take 4-byte accesses (the low half; a 4-byte write zero-extends). */
  readonly width: 32 | 64;
  /** Summary for the table; the fields hold the exact semantics. */
  readonly access: 'RO' | 'RW' | 'WO';
  readonly reset: bigint;
  readonly desc: string;
  readonly fields: Readonly<Record<string, RegField>>;
}

/** Vendor (QEMU), device, revision and class of edu. */
export const EDU_ID = { vendorId: 0x1234, deviceId: 0x11e8, revision: 0x10, classCode: 0x00ff00 } as const;
/** QEMU's default subsystem ids (Red Hat / QEMU), which edu inherits. */
export const EDU_SUBSYSTEM = { subsystemVendorId: 0x1af4, subsystemId: 0x1100 } as const;
/** BAR0 size: 1 MiB. */
export const EDU_BAR_SIZE = 1 << 20;
/** Interrupt status bit raised when a factorial finishes (with STATUS.IRQ_FACT). */
export const FACT_IRQ = 0x001;
/** Interrupt status bit raised when a DMA transfer finishes (with DMA_CMD.IRQ). */
export const DMA_IRQ = 0x100;
/** Device-side address of the DMA buffer. */
export const DMA_START = 0x40000;
/** Bytes of the DMA buffer. */
export const DMA_SIZE = 4096;
/** Virtual time from the command write to the transfer: QEMU's `timer_mod(..., now_ms + 100)`. */
export const DMA_DELAY_NS = 100_000_000;
/**
 * Virtual time a factorial takes (dmasim's choice: QEMU computes it at once on a worker thread, so a driver
 * sees COMPUTING for a few microseconds at most; 1 us keeps polling loops short and still observable).
 */
export const FACTORIAL_NS = 1_000;
/** Default DMA address mask: 28 bits (QEMU's `dma_mask` property). */
export const EDU_DMA_MASK = (1n << 28n) - 1n;
/** Offsets below this accept only 4-byte accesses; from here 4 or 8 (edu_mmio_read's size checks). */
export const EDU_WIDE_FROM = 0x80;

/** STATUS (0x20) fields. */
export const EDU_STATUS = {
  COMPUTING: fld(bit(0), 'HW', 'a factorial is being computed'),
  IRQ_FACT: fld(bit(7), 'RW', 'raise interrupt 0x001 when the factorial finishes'),
} as const;

/** DMA_CMD (0x98) fields. */
export const EDU_DMA_CMD = {
  RUN: fld(bit(0), 'RW', 'start; cleared by the device when the transfer is done. A write without it is ignored'),
  DIR: fld(bit(1), 'RW', 'direction: 0 RAM -> edu (src is a bus address), 1 edu -> RAM (dst is a bus address)'),
  IRQ: fld(bit(2), 'RW', 'raise interrupt 0x100 when done'),
} as const;

/** The register block. */
export const EDU_REGS = [
  { name: 'ID', offset: 0x00, width: 32, access: 'RO', reset: 0x010000edn, desc: 'Identification: major 1, minor 0',
    fields: { MAGIC: fld(bits(15, 0), 'RO', '0x00ed'), MINOR: fld(bits(23, 16), 'RO', 'minor version'), MAJOR: fld(bits(31, 24), 'RO', 'major version') } },
  { name: 'LIVENESS', offset: 0x04, width: 32, access: 'RW', reset: 0n, desc: 'Liveness check: reads the inverse of the last write',
    fields: { VALUE: fld(bits(31, 0), 'RW', 'stores ~value') } },
  { name: 'FACTORIAL', offset: 0x08, width: 32, access: 'RW', reset: 0n, desc: 'Factorial: write n (ignored while computing), read n! (32-bit wrap)',
    fields: { VALUE: fld(bits(31, 0), 'RW', 'the input while computing, the result after') } },
  { name: 'STATUS', offset: 0x20, width: 32, access: 'RW', reset: 0n, desc: 'Status', fields: EDU_STATUS },
  { name: 'IRQ_STATUS', offset: 0x24, width: 32, access: 'RO', reset: 0n, desc: 'Interrupt status: raised sources (any bit may be raised through IRQ_RAISE)',
    fields: { FACT: fld(bit(0), 'RO', 'factorial done (0x001)'), DMA: fld(bit(8), 'RO', 'DMA done (0x100)') } },
  { name: 'IRQ_RAISE', offset: 0x60, width: 32, access: 'WO', reset: 0n, desc: 'Raise: status |= value, then signal if status != 0 (on every write)',
    fields: { VALUE: fld(bits(31, 0), 'WO', 'bits to raise') } },
  { name: 'IRQ_ACK', offset: 0x64, width: 32, access: 'WO', reset: 0n, desc: 'Acknowledge: status &= ~value; INTx drops when status is 0',
    fields: { VALUE: fld(bits(31, 0), 'WO', 'bits to clear') } },
  { name: 'DMA_SRC', offset: 0x80, width: 64, access: 'RW', reset: 0n, desc: 'DMA source (bus address, or 0x40000.. in edu). Ignored while running',
    fields: { ADDRESS: fld(bits(63, 0), 'RW', 'source address') } },
  { name: 'DMA_DST', offset: 0x88, width: 64, access: 'RW', reset: 0n, desc: 'DMA destination. Ignored while running',
    fields: { ADDRESS: fld(bits(63, 0), 'RW', 'destination address') } },
  { name: 'DMA_COUNT', offset: 0x90, width: 64, access: 'RW', reset: 0n, desc: 'DMA byte count. Ignored while running',
    fields: { COUNT: fld(bits(63, 0), 'RW', 'bytes') } },
  { name: 'DMA_CMD', offset: 0x98, width: 64, access: 'RW', reset: 0n, desc: 'DMA command; the transfer runs 100 ms after the write', fields: EDU_DMA_CMD },
] as const satisfies readonly EduReg[];

/** Name of an edu register. */
export type EduRegName = (typeof EDU_REGS)[number]['name'];

/** Index of each register in {@link EDU_REGS}, the numbers MMIO dispatch switches on. */
export const EDU: Readonly<Record<EduRegName, number>> = Object.fromEntries(EDU_REGS.map((r, i) => [r.name, i])) as Record<EduRegName, number>;

/** Register index by dword of the first 256 bytes (-1: no register starts there). */
export const EDU_REG_AT: Int8Array = (() => {
  const at = new Int8Array(0x100 / 4).fill(-1);
  EDU_REGS.forEach((r, i) => {
    at[r.offset / 4] = i;
  });
  return at;
})();
