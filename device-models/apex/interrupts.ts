import { mask32, type Scheduler } from '../../sim/index.ts';
import type { GuestErrors, PciFunction } from '../pci/index.ts';
import type { ApexCsr } from './csr.ts';
import { APEX, APEX_IRQ_COUNT, APEX_IRQ_NAMES, ApexIrq, INTVECCTL, INTVECCTL_PACKED } from './regs.ts';

/** Where a source's status, enable and MSI-X entry live: register indices and bit positions. */
export interface SourceWiring {
  /** Status register index (-1: none; every Apex source has one). */
  readonly status: number;
  readonly control: number;
  readonly bit: number;
  readonly vecReg: number;
  readonly vecLsb: number;
}

/** Mask of one INTVECCTL field (7 bits: `interrupt_pack_width`), taken from the register data. */
const VEC_MASK = mask32(INTVECCTL.VECTOR);
const PACK_LSB = [INTVECCTL_PACKED.PACK_0.lsb, INTVECCTL_PACKED.PACK_1.lsb, INTVECCTL_PACKED.PACK_2.lsb, INTVECCTL_PACKED.PACK_3.lsb] as const;

/**
 * The 13 sources as data (spec/devices.md section 1.2): status (W0C) and enable bits, and the INTVECCTL
 * field naming the MSI-X entry; SC_HOST and TOP_LEVEL share one packed register, 7 bits per source.
 */
export const APEX_SOURCES: readonly SourceWiring[] = (() => {
  const w: SourceWiring[] = [];
  const one = (status: number, control: number, bit: number, vecReg: number, vecLsb: number) => w.push({ status, control, bit, vecReg, vecLsb });
  one(APEX.IQ_INT_STATUS, APEX.IQ_INT_CONTROL, 0, APEX.INSTR_QUEUE_INTVECCTL, 0);
  // dmasim: sources 1-3 are queues 1-3 (their own INT_STATUS / INT_CONTROL).
  one(APEX.Q1_INT_STATUS, APEX.Q1_INT_CONTROL, 0, APEX.INPUT_ACTV_QUEUE_INTVECCTL, 0);
  one(APEX.Q2_INT_STATUS, APEX.Q2_INT_CONTROL, 0, APEX.PARAM_QUEUE_INTVECCTL, 0);
  one(APEX.Q3_INT_STATUS, APEX.Q3_INT_CONTROL, 0, APEX.OUTPUT_ACTV_QUEUE_INTVECCTL, 0);
  for (let k = 0; k < 4; k++) one(APEX.SC_HOST_INT_STATUS, APEX.SC_HOST_INT_CONTROL, k, APEX.SC_HOST_INTVECCTL, PACK_LSB[k] as number);
  for (let k = 0; k < 4; k++) one(APEX.TOP_LEVEL_INT_STATUS, APEX.TOP_LEVEL_INT_CONTROL, k, APEX.TOP_LEVEL_INTVECCTL, PACK_LSB[k] as number);
  one(APEX.FATAL_ERR_INT_STATUS, APEX.FATAL_ERR_INT_CONTROL, 0, APEX.FATAL_ERR_INTVECCTL, 0);
  return w;
})();

/** Guest errors of the interrupt logic. */
export const APEX_IRQ_ERRORS = { 'msix-vector': ['source', 'vector'] } as const;

/**
 * The Apex interrupt logic. Raising a source sets its status bit (W0C, sticky until the host clears it);
 * if its enable bit is set, the MSI-X entry its INTVECCTL field names is notified, once per event (MSI-X
 * is edge-like; a masked entry pends in the PBA). Without MSI-X enabled the sources drive the INTx wire:
 * WIRE_INT_PENDING_BIT_ARRAY bit i is set while source i has status and enable set, and the pin is asserted
 * while any pending bit is not masked in WIRE_INT_MASK_ARRAY (libedgetpu's wire mode).
 */
export class ApexInterrupts {
  /** Raises per source. */
  readonly raised = new Uint32Array(APEX_IRQ_COUNT);
  readonly #csr: ApexCsr;
  readonly #fn: PciFunction;
  readonly #errors: GuestErrors<keyof typeof APEX_IRQ_ERRORS>;
  readonly #sim: Scheduler | undefined;
  /** The trace track, `${name}/irq`. */
  readonly #source: string;

  /** With `sim`, every raise is traced on `${name}/irq` while its trace bus is active. */
  constructor(csr: ApexCsr, fn: PciFunction, errors: GuestErrors<keyof typeof APEX_IRQ_ERRORS>, sim?: Scheduler, name = 'apex') {
    this.#csr = csr;
    this.#fn = fn;
    this.#errors = errors;
    this.#sim = sim;
    this.#source = `${name}/irq`;
  }

  /** The MSI-X entry source `src` is routed to (its INTVECCTL field). */
  vectorOf(src: number): number {
    const s = APEX_SOURCES[src] as SourceWiring;
    return (this.#csr.get(s.vecReg) >>> s.vecLsb) & VEC_MASK;
  }

  /** A cause of source `src` occurred. */
  raise(src: number): void {
    const s = APEX_SOURCES[src] as SourceWiring;
    const csr = this.#csr;
    this.raised[src] = ((this.raised[src] as number) + 1) >>> 0;
    let enabled = true;
    if (s.status >= 0) {
      csr.set(s.status, csr.get(s.status) | (1 << s.bit), csr.hi[s.status]);
      enabled = ((csr.get(s.control) >>> s.bit) & 1) !== 0;
    }
    if (src >= ApexIrq.SC_HOST_0 && src <= ApexIrq.SC_HOST_3) this.#count(src - ApexIrq.SC_HOST_0);
    const msix = this.#fn.msix;
    const sim = this.#sim;
    if (sim !== undefined && sim.trace.active) {
      // Where the raise goes: the MSI-X entry, 'masked' (it pends in the PBA), 'disabled' (enable bit
      // clear), 'intx' (MSI-X off: the wire), before notify changes the PBA.
      const v = this.vectorOf(src);
      let entry: number | string = v;
      if (!enabled) entry = 'disabled';
      else if (msix === undefined || !msix.enabled) entry = 'intx';
      else if (v < msix.options.vectors && msix.isMasked(v)) entry = 'masked';
      sim.trace.emit(sim.now, this.#source, APEX_IRQ_NAMES[src] ?? `source${src}`, { source: src, entry, vector: v });
    }
    if (enabled && msix !== undefined && msix.enabled) {
      const v = this.vectorOf(src);
      // 7-bit fields reach entries 0..127, all inside the 128-entry table; the check guards smaller tables.
      if (v < msix.options.vectors) msix.notify(v);
      else this.#errors.report('msix-vector', src, v);
    }
    this.updateWire();
  }

  /** Bumps SC_HOST_INT_COUNT's 16-bit counter `k`. */
  #count(k: number): void {
    const csr = this.#csr;
    const r = APEX.SC_HOST_INT_COUNT;
    const word = k < 2 ? csr.lo : csr.hi;
    const sh = 16 * (k & 1);
    const v = word[r] as number;
    const c = (((v >>> sh) & 0xffff) + 1) & 0xffff;
    word[r] = ((v & ~(0xffff << sh)) | (c << sh)) >>> 0;
  }

  /** Recomputes the wire pending array and the INTx level (after a status, enable or mask change). */
  updateWire(): void {
    const csr = this.#csr;
    let pending = 0;
    for (let i = 0; i < APEX_IRQ_COUNT; i++) {
      const s = APEX_SOURCES[i] as SourceWiring;
      if (s.status < 0) continue;
      if ((((csr.get(s.status) & csr.get(s.control)) >>> s.bit) & 1) !== 0) pending |= 1 << i;
    }
    csr.set(APEX.WIRE_INT_PENDING_BIT_ARRAY, pending);
    const msix = this.#fn.msix;
    const wire = (pending & ~csr.get(APEX.WIRE_INT_MASK_ARRAY)) !== 0 && !(msix !== undefined && msix.enabled);
    this.#fn.setIrq(wire);
  }
}
