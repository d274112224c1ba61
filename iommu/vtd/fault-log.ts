import type { RegisterFile } from './register-file.ts';
import { REG, fmask } from './regs.ts';

const PFO = fmask('FSTS', 'PFO');
const PPF = fmask('FSTS', 'PPF');
const IQE = fmask('FSTS', 'IQE');
const FRI = fmask('FSTS', 'FRI');
const FRI_SHIFT = 8;
const FECTL_IM = fmask('FECTL', 'IM');
const FECTL_IP = fmask('FECTL', 'IP');
/** F (bit 127) and T (bit 126) are bits 31 and 30 of the FRCD's last dword; FR is its bits 7:0. */
const FRCD_F = fmask('FRCD_HI', 'F');
const FRCD_T = fmask('FRCD_HI', 'T');
const FRCD_FR = fmask('FRCD_HI', 'FR');
const FRCD_SID = fmask('FRCD_HI', 'SID');

/** Delivers the interrupt whose message address and data live in the registers at these offsets. */
export type RaiseInterrupt = (addrReg: number, dataReg: number) => void;

/**
 * Primary fault logging (VT-d 7.3): the fault recording registers used round-robin from FRI, FSTS.PPF while
 * any holds a fault, FSTS.PFO when the next one is still full, and the fault event through FECTL, FEDATA and
 * FEADDR. Like QEMU (vtd_report_dmar_fault) an event is raised only when no earlier condition (PPF, PFO,
 * IQE) is still pending; unlike QEMU, faults from one requester are not collapsed, so each is visible.
 */
export class FaultLog {
  readonly #regs: RegisterFile;
  readonly #nfr: number;
  readonly #raise: RaiseInterrupt;
  /** The register the next fault goes to. */
  #next = 0;

  constructor(regs: RegisterFile, nfr: number, raise: RaiseInterrupt) {
    this.#regs = regs;
    this.#nfr = nfr;
    this.#raise = raise;
  }

  #frcd(n: number): number {
    return REG.FRCD_LO + 16 * n;
  }

  /**
   * Logs a primary fault: requester `sid`, faulting address as 32-bit halves, reason, write or read.
   * Returns whether it went into a fault recording register (false on overflow).
   */
  record(sid: number, addrLo: number, addrHi: number, reason: number, isWrite: boolean): boolean {
    const fsts = this.#regs.get(REG.FSTS);
    if ((fsts & PFO) !== 0) return false;
    const at = this.#frcd(this.#next);
    if ((this.#regs.get(at + 12) & FRCD_F) !== 0) {
      this.#regs.update(REG.FSTS, 0, PFO);
      return false;
    }
    this.#regs.set(at, (addrLo & 0xffff_f000) >>> 0);
    this.#regs.set(at + 4, addrHi >>> 0);
    this.#regs.set(at + 8, sid & FRCD_SID);
    this.#regs.set(at + 12, ((reason & FRCD_FR) | (isWrite ? 0 : FRCD_T) | FRCD_F) >>> 0);
    if ((fsts & PPF) === 0) this.#regs.update(REG.FSTS, FRI, (this.#next << FRI_SHIFT) & FRI);
    this.#next = (this.#next + 1) % this.#nfr;
    this.updatePpf();
    if ((fsts & PPF) === 0) this.event(fsts);
    return true;
  }

  /** Sets FSTS.IQE (an invalidation queue error) and raises the fault event. */
  queueError(): void {
    const fsts = this.#regs.get(REG.FSTS);
    this.#regs.update(REG.FSTS, 0, IQE);
    this.event(fsts);
  }

  /** The fault event, given FSTS before the condition was set: masked -> FECTL.IP stays set. */
  event(preFsts: number): void {
    if ((preFsts & (PPF | PFO | IQE)) !== 0) return;
    this.#regs.update(REG.FECTL, 0, FECTL_IP);
    if ((this.#regs.get(REG.FECTL) & FECTL_IM) === 0) {
      this.#raise(REG.FEADDR, REG.FEDATA);
      this.#regs.update(REG.FECTL, FECTL_IP, 0);
    }
  }

  /** Recomputes FSTS.PPF from the F bits. */
  updatePpf(): void {
    let any = 0;
    for (let n = 0; n < this.#nfr; n++) if ((this.#regs.get(this.#frcd(n) + 12) & FRCD_F) !== 0) any = PPF;
    this.#regs.update(REG.FSTS, PPF, any);
  }

  /** After a guest write of FSTS: IP clears once every status condition has been serviced. */
  onFstsWrite(): void {
    if ((this.#regs.get(REG.FECTL) & FECTL_IP) !== 0 && (this.#regs.get(REG.FSTS) & (PFO | PPF | IQE)) === 0) {
      this.#regs.update(REG.FECTL, FECTL_IP, 0);
    }
  }

  /** After a guest write of FECTL: unmasking with an event pending delivers it. */
  onFectlWrite(): void {
    const v = this.#regs.get(REG.FECTL);
    if ((v & FECTL_IP) !== 0 && (v & FECTL_IM) === 0) {
      this.#raise(REG.FEADDR, REG.FEDATA);
      this.#regs.update(REG.FECTL, FECTL_IP, 0);
    }
  }

  /** Translation disabled: the next fault goes to register 0 again (QEMU vtd_handle_gcmd_te). */
  resetIndex(): void {
    this.#next = 0;
  }

  /** Index of the register the next fault goes to. */
  get nextIndex(): number {
    return this.#next;
  }
}
