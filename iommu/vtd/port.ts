import type { DmaPort, DmaResult } from '../../sim/index.ts';
import type { VtdUnit } from './unit.ts';

/**
 * The translating {@link DmaPort} the machine puts in front of memory: every access goes through the VT-d
 * unit (context, IOTLB, walk, fault logging) and, translated, to `downstream` (memory's IdentityDmaPort).
 * Allocation-free; the unit adds its cost (IOTLB lookups, entry reads) to `res.costNs`.
 */
export class VtdDmaPort implements DmaPort {
  readonly unit: VtdUnit;
  readonly downstream: DmaPort;

  constructor(unit: VtdUnit, downstream: DmaPort) {
    this.unit = unit;
    this.downstream = downstream;
  }

  read(requester: number, addr: number, dst: Uint8Array, dstOff: number, len: number, res: DmaResult): void {
    this.unit.access(this.downstream, requester, addr, dst, dstOff, len, res, false);
  }

  write(requester: number, addr: number, src: Uint8Array, srcOff: number, len: number, res: DmaResult): void {
    this.unit.access(this.downstream, requester, addr, src, srcOff, len, res, true);
  }

  readWide(requester: number, addr: bigint, dst: Uint8Array, dstOff: number, len: number, res: DmaResult): void {
    this.unit.accessWide(this.downstream, requester, addr, dst, dstOff, len, res, false);
  }

  writeWide(requester: number, addr: bigint, src: Uint8Array, srcOff: number, len: number, res: DmaResult): void {
    this.unit.accessWide(this.downstream, requester, addr, src, srcOff, len, res, true);
  }
}
