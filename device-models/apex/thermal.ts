import { Priority, SimInvariantError, get32, type Scheduler, type Timer } from '../../sim/index.ts';
import type { ApexCsr } from './csr.ts';
import { APEX, ApexIrq, OMC_TEMP, OMC_WARN } from './regs.ts';

/** One point of a temperature trace: from virtual time `atNs` on, the die is at `milliC` m°C. */
export interface ApexThermalPoint {
  readonly atNs: number;
  readonly milliC: number;
}

/** The ADC code of a temperature: the inverse of the driver's `(662 - adc) * 250 + 550` m°C, rounded, 0..1023. */
export function apexTempToAdc(milliC: number): number {
  return Math.min(1023, Math.max(0, Math.round(662 - (milliC - 550) / 250)));
}

/** Temperature before any trace point (and without a trace): 45.05 °C, ADC 484. */
export const APEX_DEFAULT_MILLI_C = 45_050;

/** What the thermal model drives. */
export interface ThermalOwner {
  /** The GCB is in reset (its interrupt status registers are held). */
  readonly inReset: boolean;
  /** Raise an interrupt source. */
  raise(src: number): void;
}

/**
 * The thermal sensor (*dmasim*): the die temperature follows a step trace of {@link ApexThermalPoint}s
 * (device option `thermal`), OMC0_DC[25:16] reports its ADC code, and each enabled warning (OMC0_D4 warn1,
 * OMC0_D8 warn2) fires when the reading reaches its threshold (ADC at or below the warning's ADC code, as
 * the code falls while the temperature rises): warn1 raises TOP_LEVEL_3 (thermal), warn2 TOP_LEVEL_0
 * (thermal shutdown). Each fires once per crossing: it re-arms when the reading goes back above the
 * threshold or the warning is disabled. A crossing while the GCB is in reset is not raised.
 */
export class ApexThermal {
  readonly #sim: Scheduler;
  readonly #csr: ApexCsr;
  readonly #owner: ThermalOwner;
  readonly #trace: readonly ApexThermalPoint[];
  readonly #timer: Timer;
  #next = 0;
  #adc = apexTempToAdc(APEX_DEFAULT_MILLI_C);
  #hot1 = false;
  #hot2 = false;

  constructor(sim: Scheduler, csr: ApexCsr, owner: ThermalOwner, trace: readonly ApexThermalPoint[] = []) {
    for (let i = 0; i < trace.length; i++) {
      const p = trace[i] as ApexThermalPoint;
      if (!(Number.isSafeInteger(p.atNs) && p.atNs >= 0 && Number.isFinite(p.milliC)) || (i > 0 && p.atNs < (trace[i - 1] as ApexThermalPoint).atNs)) {
        throw new SimInvariantError(`apex thermal: trace point ${i} must have a non-decreasing integer atNs >= 0 and a finite milliC`);
      }
    }
    this.#sim = sim;
    this.#csr = csr;
    this.#owner = owner;
    this.#trace = trace;
    this.#timer = sim.timer(() => this.#advance(), Priority.HARDWARE);
    this.#advance();
  }

  /** The die temperature now, in m°C (the trace value, before ADC rounding). */
  get milliC(): number {
    return this.#next === 0 ? APEX_DEFAULT_MILLI_C : (this.#trace[this.#next - 1] as ApexThermalPoint).milliC;
  }

  /** Applies every trace point due by now, then waits for the next one. */
  #advance(): void {
    const now = this.#sim.now;
    while (this.#next < this.#trace.length && (this.#trace[this.#next] as ApexThermalPoint).atNs <= now) this.#next++;
    this.#adc = apexTempToAdc(this.milliC);
    this.restore();
    const p = this.#trace[this.#next];
    if (p !== undefined) this.#timer.schedule(p.atNs - now);
  }

  /** Writes the reading into OMC0_DC (after power-on reset) and re-evaluates the warnings. */
  restore(): void {
    const csr = this.#csr;
    const dc = csr.get(APEX.OMC0_DC);
    const m = ((1 << OMC_TEMP.ADC.width) - 1) << OMC_TEMP.ADC.lsb;
    csr.set(APEX.OMC0_DC, ((dc & ~m) | (this.#adc << OMC_TEMP.ADC.lsb)) >>> 0);
    this.evaluate();
  }

  /** After the reading or a warning register changed: raise on a crossing, re-arm below it. */
  evaluate(): void {
    const hot1 = this.#hot(APEX.OMC0_D4);
    const hot2 = this.#hot(APEX.OMC0_D8);
    const owner = this.#owner;
    if (hot1 && !this.#hot1 && !owner.inReset) owner.raise(ApexIrq.TOP_LEVEL_3);
    if (hot2 && !this.#hot2 && !owner.inReset) owner.raise(ApexIrq.TOP_LEVEL_0);
    this.#hot1 = hot1;
    this.#hot2 = hot2;
  }

  #hot(reg: number): boolean {
    const v = this.#csr.get(reg);
    return get32(v, OMC_WARN.ENABLE) === 1 && this.#adc <= get32(v, OMC_WARN.ADC);
  }

  /** Power-on: the trace keeps its place (time does not restart), warnings re-arm. */
  powerOn(): void {
    this.#hot1 = false;
    this.#hot2 = false;
    this.restore();
  }
}
