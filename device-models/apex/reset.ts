import { Priority, get32, type Scheduler, type Timer } from '../../sim/index.ts';
import type { ApexCsr } from './csr.ts';
import { APEX, SCU_2, SCU_3 } from './regs.ts';

/**
 * Virtual delays of the SCU state machine (dmasim's values; the hardware's are unrecorded). They are short
 * against the driver's 120 ms poll interval but non-zero, so a poll loop observes every transition.
 */
export const APEX_RESET_TIMING = {
  /** rg_rst_gcb = 1 to cur_rst_gcb = 1. */
  resetEnterNs: 1_000,
  /** rg_rst_gcb != 1 (with the RAMs on) to cur_rst_gcb = 0. */
  resetExitNs: 2_000,
  /** rg_force_ram_sd = 3 to cur_ram_sd = 1. */
  ramShutdownNs: 2_000,
  /** rg_force_ram_sd != 3 to cur_ram_sd = 0. */
  ramPowerUpNs: 5_000,
  /** Leaving reset to PAGE_TABLE_INIT / MSIX_TABLE_INIT = 1 (8192 slots cleared). */
  tableInitNs: 20_000,
  /** USER_HIB_DMA_PAUSE = 1 to DMA_PAUSED = 1 (once no descriptor is in flight). */
  dmaPauseNs: 500,
} as const;

/** What the SCU drives in the rest of the device. */
export interface ResetOwner {
  /** The GCB entered reset: GCB registers to reset values, engines stopped, INIT registers 0. */
  gcbEnterReset(): void;
  /** The GCB left reset: the page table and MSI-X table are cleared (INIT follows after tableInitNs). */
  gcbExitReset(): void;
}

const RST_FORCE = 1;
const RAM_SD_FORCE = 3;
const CUR_RST = 1 << SCU_3.CUR_RST_GCB.lsb;
const CUR_RAM_SD = 1 << SCU_3.CUR_RAM_SD.lsb;

/**
 * The system control unit's reset and RAM power state (spec/devices.md section 1.4): SCU_2[3:2]
 * rg_rst_gcb and SCU_3[15:14] rg_force_ram_sd are requests; SCU_3 bit 4 (cur_rst_gcb) and bit 6
 * (cur_ram_sd) follow them after {@link APEX_RESET_TIMING}. The GCB leaves reset only with its RAMs on,
 * which is the order quit_reset polls in (bit 6 to 0, then bit 4 to 0). Power-on state: out of reset, RAMs
 * on, tables initialised.
 */
export class ApexScu {
  readonly #csr: ApexCsr;
  readonly #owner: ResetOwner;
  readonly #ramTimer: Timer;
  readonly #rstTimer: Timer;
  readonly #initTimer: Timer;

  constructor(sim: Scheduler, csr: ApexCsr, owner: ResetOwner) {
    this.#csr = csr;
    this.#owner = owner;
    this.#ramTimer = sim.timer(() => this.#ramSettled(), Priority.HARDWARE);
    this.#rstTimer = sim.timer(() => this.#rstSettled(), Priority.HARDWARE);
    this.#initTimer = sim.timer(() => this.#initDone(), Priority.HARDWARE);
  }

  /** Whether the GCB is in reset (SCU_3.cur_rst_gcb). */
  get inReset(): boolean {
    return (this.#csr.get(APEX.SCU_3) & CUR_RST) !== 0;
  }

  get #ramOff(): boolean {
    return (this.#csr.get(APEX.SCU_3) & CUR_RAM_SD) !== 0;
  }

  #wantReset(): boolean {
    return get32(this.#csr.get(APEX.SCU_2), SCU_2.RG_RST_GCB) === RST_FORCE;
  }

  #wantRamOff(): boolean {
    return get32(this.#csr.get(APEX.SCU_3), SCU_3.RG_FORCE_RAM_SD) === RAM_SD_FORCE;
  }

  /** After a guest write to SCU_2 or SCU_3: start whatever transition the requests now ask for. */
  update(): void {
    if (this.#wantRamOff() !== this.#ramOff) {
      if (!this.#ramTimer.pending) this.#ramTimer.schedule(this.#wantRamOff() ? APEX_RESET_TIMING.ramShutdownNs : APEX_RESET_TIMING.ramPowerUpNs);
    } else {
      this.#ramTimer.cancel();
    }
    this.#scheduleReset();
  }

  #scheduleReset(): void {
    const want = this.#wantReset();
    if (want === this.inReset || (!want && this.#ramOff)) {
      this.#rstTimer.cancel();
      return;
    }
    if (!this.#rstTimer.pending) this.#rstTimer.schedule(want ? APEX_RESET_TIMING.resetEnterNs : APEX_RESET_TIMING.resetExitNs);
  }

  #setStatus(bit: number, on: boolean): void {
    const csr = this.#csr;
    const v = csr.get(APEX.SCU_3);
    csr.set(APEX.SCU_3, on ? v | bit : v & ~bit);
  }

  #ramSettled(): void {
    this.#setStatus(CUR_RAM_SD, this.#wantRamOff());
    this.#scheduleReset();
  }

  #rstSettled(): void {
    const want = this.#wantReset();
    if (want === this.inReset || (!want && this.#ramOff)) return;
    this.#setStatus(CUR_RST, want);
    if (want) {
      this.#initTimer.cancel();
      this.#csr.set(APEX.PAGE_TABLE_INIT, 0);
      this.#csr.set(APEX.MSIX_TABLE_INIT, 0);
      this.#owner.gcbEnterReset();
    } else {
      this.#owner.gcbExitReset();
      this.#initTimer.schedule(APEX_RESET_TIMING.tableInitNs);
    }
  }

  #initDone(): void {
    this.#csr.set(APEX.PAGE_TABLE_INIT, 1);
    this.#csr.set(APEX.MSIX_TABLE_INIT, 1);
  }

  /** Power-on (PCI RST#): every timer stopped; the caller has restored the registers. */
  powerOn(): void {
    this.#ramTimer.cancel();
    this.#rstTimer.cancel();
    this.#initTimer.cancel();
  }
}
