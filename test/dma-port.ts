import type { Machine } from '../machine/index.ts';
import { createDmaResult } from '../sim/index.ts';

/** Device-side DMA of one function through the machine's real path (bus-master gate, root complex, IOMMU). */
export interface DevicePort {
  /** The requester id its DMA carries. */
  readonly rid: number;
  /** A device read of `len` bytes at bus address `addr`. */
  read(addr: number, len?: number): { status: number; reason: number; bytes: Uint8Array };
  /** A device write of `bytes` at bus address `addr`. */
  write(addr: number, bytes: Uint8Array): { status: number; reason: number };
}

/** The DMA port of the function at `bdf` (`'00:03.0'`); throws when there is none. */
export function devicePort(machine: Machine, bdf: string): DevicePort {
  const slot = machine.pci.find(bdf);
  if (slot === undefined) throw new Error(`no device at ${bdf}`);
  const res = createDmaResult();
  return {
    rid: slot.requesterId,
    read(addr, len = 8) {
      const bytes = new Uint8Array(len);
      slot.fn.dma.read(slot.requesterId, addr, bytes, 0, len, res);
      return { status: res.status, reason: res.faultReason, bytes };
    },
    write(addr, bytes) {
      slot.fn.dma.write(slot.requesterId, addr, bytes, 0, bytes.length, res);
      return { status: res.status, reason: res.faultReason };
    },
  };
}
