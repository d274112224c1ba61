import { DmaStatus, failDma, failDmaWide, type DmaPort, type DmaResult } from '../../sim/index.ts';

/** What the gate asks of its function. */
export interface GateOwner {
  /** Command.MASTER is set (and the function may master the bus). */
  readonly busMaster: boolean;
  /** The requester id the machine assigned (`bus << 8 | devfn`). */
  readonly requesterId: number;
  /** Records a DMA the gate refused. */
  dmaBlocked(addr: number, len: number, write: boolean): void;
}

/** A port with nothing behind it: every access is an Unsupported Request (a function not yet attached). */
export const NO_BUS: DmaPort = {
  read(_q, addr, _d, _o, _l, res) {
    failDma(res, DmaStatus.UNSUPPORTED, addr, 0, 0);
  },
  write(_q, addr, _s, _o, _l, res) {
    failDma(res, DmaStatus.UNSUPPORTED, addr, 0, 0);
  },
  readWide(_q, addr, _d, _o, _l, res) {
    failDmaWide(res, DmaStatus.UNSUPPORTED, addr, 0);
  },
  writeWide(_q, addr, _s, _o, _l, res) {
    failDmaWide(res, DmaStatus.UNSUPPORTED, addr, 0);
  },
};

/**
 * The function's side of the DMA path: the port its engines use. With bus mastering off nothing leaves the
 * function: the access reports `UNSUPPORTED` with 0 bytes moved and the function records a guest error.
 * Otherwise the access goes upstream (the root complex the machine attached) under the function's own
 * requester id, whatever id the engine passed: a function cannot master as another.
 */
export class BusMasterGate implements DmaPort {
  /** Where accesses go when bus mastering is on. */
  upstream: DmaPort = NO_BUS;
  readonly #owner: GateOwner;

  constructor(owner: GateOwner) {
    this.#owner = owner;
  }

  read(_requester: number, addr: number, dst: Uint8Array, dstOff: number, len: number, res: DmaResult): void {
    const o = this.#owner;
    if (!o.busMaster) {
      o.dmaBlocked(addr, len, false);
      failDma(res, DmaStatus.UNSUPPORTED, addr, 0, 0);
      return;
    }
    this.upstream.read(o.requesterId, addr, dst, dstOff, len, res);
  }

  write(_requester: number, addr: number, src: Uint8Array, srcOff: number, len: number, res: DmaResult): void {
    const o = this.#owner;
    if (!o.busMaster) {
      o.dmaBlocked(addr, len, true);
      failDma(res, DmaStatus.UNSUPPORTED, addr, 0, 0);
      return;
    }
    this.upstream.write(o.requesterId, addr, src, srcOff, len, res);
  }

  readWide(_requester: number, addr: bigint, dst: Uint8Array, dstOff: number, len: number, res: DmaResult): void {
    const o = this.#owner;
    if (!o.busMaster) {
      o.dmaBlocked(-1, len, false);
      failDmaWide(res, DmaStatus.UNSUPPORTED, addr, 0);
      return;
    }
    this.upstream.readWide(o.requesterId, addr, dst, dstOff, len, res);
  }

  writeWide(_requester: number, addr: bigint, src: Uint8Array, srcOff: number, len: number, res: DmaResult): void {
    const o = this.#owner;
    if (!o.busMaster) {
      o.dmaBlocked(-1, len, true);
      failDmaWide(res, DmaStatus.UNSUPPORTED, addr, 0);
      return;
    }
    this.upstream.writeWide(o.requesterId, addr, src, srcOff, len, res);
  }
}
