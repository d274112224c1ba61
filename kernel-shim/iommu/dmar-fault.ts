import { bit, bits, get32, get64, invariant, mask32, mask64 } from '../../sim/index.ts';
import { faultReasonText } from '../../iommu/index.ts';
import { IRQ_HANDLED } from '../irq.ts';
import type { KernelLog } from '../log.ts';

/** Linux `HZ` (CONFIG_HZ_1000): jiffies tick every millisecond of virtual time. */
export const HZ = 1000;
/** Linux `DEFAULT_RATELIMIT_INTERVAL`: 5 * HZ jiffies. */
export const DEFAULT_RATELIMIT_INTERVAL = 5 * HZ;
/** Linux `DEFAULT_RATELIMIT_BURST`. */
export const DEFAULT_RATELIMIT_BURST = 10;

const NSEC_PER_JIFFY = 1_000_000_000 / HZ;

/**
 * The driver's view of the registers it touches (Linux `drivers/iommu/intel/iommu.h`): offsets in the unit's
 * block and fields in [hi:lo] numbering. FRCD fields are numbered within the 32-bit dword they are read from.
 */
export const DMAR_FAULT_REGS = {
  /** DMAR_CAP_REG. */
  CAP: 0x08,
  /** DMAR_FSTS_REG. */
  FSTS: 0x34,
  /** cap_fault_reg_offset: bits 33:24, in units of 16 bytes. */
  CAP_FRO: bits(33, 24),
  /** cap_num_fault_regs: bits 47:40, plus one. */
  CAP_NFR: bits(47, 40),
  /** DMA_FSTS_PFO: primary fault overflow. */
  FSTS_PFO: bit(0),
  /** DMA_FSTS_PPF: primary pending fault. */
  FSTS_PPF: bit(1),
  /** DMA_FSTS_PRO: page request overflow. */
  FSTS_PRO: bit(7),
  /** dma_fsts_fault_record_index. */
  FSTS_FRI: bits(15, 8),
  /** PRIMARY_FAULT_REG_LEN: bytes per fault recording register. */
  FRCD_LEN: 16,
  /** Dword +12: DMA_FRCD_F, fault recorded. */
  FRCD_F: bit(31),
  /** Dword +12: dma_frcd_type, 1 = read. */
  FRCD_T: bit(30),
  /** Dword +12: dma_frcd_pasid_value. */
  FRCD_PV: bits(27, 8),
  /** Dword +12: dma_frcd_fault_reason. */
  FRCD_FR: bits(7, 0),
  /** Dword +8: dma_frcd_pasid_present. */
  FRCD_PP: bit(31),
  /** Dword +8: dma_frcd_source_id. */
  FRCD_SID: bits(15, 0),
} as const;

const R = DMAR_FAULT_REGS;
/** dma_frcd_page_addr: the low 64 bits with the page offset cleared. */
const PAGE_ADDR_MASK = mask64(bits(63, 12));

/** Register access to one DMAR unit's register block (offsets from its base). */
export interface DmarRegAccess {
  read32(off: number): number;
  write32(off: number, v: number): void;
  read64(off: number): bigint;
}

/** A clock in virtual ns. */
export interface DmarClock {
  readonly now: number;
}

/** What a {@link RatelimitState} works on. */
export interface RatelimitOptions {
  /** Virtual ns; jiffies derive from it at {@link HZ}. */
  readonly clock: DmarClock;
  /** Where the "callbacks suppressed" message goes. */
  readonly log: KernelLog;
  /** Jiffies; default {@link DEFAULT_RATELIMIT_INTERVAL}. */
  readonly interval?: number;
  /** Default {@link DEFAULT_RATELIMIT_BURST}. */
  readonly burst?: number;
}

/**
 * Linux `struct ratelimit_state` and `___ratelimit`: at most `burst` callbacks per `interval` jiffies. The
 * kernel's `dmar_fault` keeps one (function-static) for every DMAR unit; pass the same instance to each
 * unit's {@link DmarFault} to share it the same way.
 */
export class RatelimitState {
  readonly #clock: DmarClock;
  readonly #log: KernelLog;
  readonly #interval: number;
  readonly #burst: number;
  #initialized = false;
  #begin = 0;
  #printed = 0;
  #missed = 0;

  /** A state that has not begun an interval yet (Linux `DEFINE_RATELIMIT_STATE`). */
  constructor(o: RatelimitOptions) {
    this.#clock = o.clock;
    this.#log = o.log;
    this.#interval = o.interval ?? DEFAULT_RATELIMIT_INTERVAL;
    this.#burst = o.burst ?? DEFAULT_RATELIMIT_BURST;
  }

  /** Callbacks suppressed since the last "callbacks suppressed" message. */
  get missed(): number {
    return this.#missed;
  }

  /** `___ratelimit(rs, func)`: true = go ahead, false = suppressed. `func` names the caller in the message. */
  check(func: string): boolean {
    // Zero interval never limits; a non-positive burst always does.
    if (this.#interval <= 0 || this.#burst <= 0) {
      const ok = this.#interval === 0 || this.#burst > 0;
      if (!ok) this.#missed++;
      return ok;
    }
    const jiffies = Math.floor(this.#clock.now / NSEC_PER_JIFFY);
    if (!this.#initialized) {
      this.#initialized = true;
      this.#begin = jiffies;
    }
    if (jiffies > this.#begin + this.#interval) {
      if (this.#missed !== 0) {
        this.#log.printk('warn', `${func}: ${this.#missed} callbacks suppressed`);
        this.#missed = 0;
      }
      this.#begin = jiffies;
      this.#printed = 0;
    }
    if (this.#printed < this.#burst) {
      this.#printed++;
      return true;
    }
    this.#missed++;
    return false;
  }
}

/** What {@link DmarFault.handle} has done so far. */
export interface DmarFaultCounts {
  /** Calls of handle(). */
  readonly irqs: number;
  /** Fault records cleared (F written back), printed or not. */
  readonly records: number;
  /** Fault records printed. */
  readonly logged: number;
  /** Fault records cleared without a message because the ratelimit was exhausted. */
  readonly suppressed: number;
  /** Calls that found FSTS.PFO set: the unit dropped at least one fault. */
  readonly overflows: number;
}

/** What a {@link DmarFault} works on. */
export interface DmarFaultOptions {
  readonly regs: DmarRegAccess;
  /** The CAP register. */
  readonly cap: bigint;
  readonly log: KernelLog;
  /** Virtual ns. */
  readonly clock: DmarClock;
  /** The ratelimit state; default a fresh one. Share one across units to match Linux's single static state. */
  readonly ratelimit?: RatelimitState;
}

/** One decoded fault record (`dmar_fault_do_one`'s arguments). */
interface FaultRecord {
  readonly read: boolean;
  readonly reason: number;
  /** -1 when the record carries no PASID (IOMMU_PASID_INVALID). */
  readonly pasid: number;
  readonly sid: number;
  readonly addr: bigint;
}

/** Linux `__ratelimit` passes `__func__`: every message is charged to `dmar_fault`. */
const FUNC = 'dmar_fault';

/**
 * The DMAR fault interrupt handler of one remapping unit: Linux `drivers/iommu/intel/dmar.c` `dmar_fault` and
 * `dmar_fault_do_one`, with `lib/ratelimit.c` `___ratelimit` under it.
 *
 * One call of {@link DmarFault.handle} does what the hard-IRQ handler does:
 * 1. Read FSTS. If it is non-zero and the ratelimit allows, print `DMAR: DRHD: handling fault status reg %x`.
 * 2. If FSTS.PPF is clear, return: nothing else is read or written (an IQE-only status stays set).
 * 3. From FSTS.FRI, walk the fault recording registers (CAP.FRO * 16, 16 bytes each, CAP.NFR + 1 of them,
 *    wrapping to 0): each pass takes one ratelimit token first, then reads the record's top dword and stops
 *    once its F bit is clear. A full record is decoded (only when not ratelimited), cleared by writing F back,
 *    and printed as
 *    `DMAR: [DMA Read NO_PASID] Request device [bb:ss.f] fault addr 0x... [fault reason 0xrr] text`.
 * 4. Write PFO | PPF | PRO to FSTS and return IRQ_HANDLED.
 *
 * Ratelimit: one state (interval 5 s, burst 10) for every message, the status line included; the token taken
 * by the pass that finds F clear counts too, so an interrupt with k records takes k + 2 tokens. A record seen
 * while ratelimited is still cleared, just not printed. Once the interval has passed, the next check prints
 * `dmar_fault: N callbacks suppressed` (KERN_WARNING, no `DMAR: ` prefix: `lib/ratelimit.c` prints it) before
 * the message it lets through. Time is jiffies at {@link HZ} from the virtual clock, and a new interval starts
 * only when jiffies is strictly after begin + interval (`time_is_before_jiffies`).
 *
 * Overflow (FSTS.PFO: a fault arrived while the next recording register was still full and was dropped):
 * Linux prints nothing beyond the status line, whose value shows bit 0 (`handling fault status reg 3`), logs
 * the records that did get recorded, and clears PFO with its final FSTS write. The dropped faults are lost.
 *
 * Modelled as Linux built without CONFIG_DMAR_DEBUG, where `dmar_fault_dump_ptes` is empty. Reason texts come
 * from the VT-d model's DMA-remapping table ({@link faultReasonText}); interrupt-remapping reasons (0x20..0x26,
 * Linux's `[INTR-REMAP] ... fault index` line) and scalable-mode reasons (0x30 and up) are not decoded here
 * and print as DMA faults with 'Unknown'. A record with PASID-present set prints `[DMA Read PASID 0x..]`.
 */
export class DmarFault {
  readonly #regs: DmarRegAccess;
  readonly #log: KernelLog;
  readonly #rs: RatelimitState;
  /** Byte offset of fault recording register 0. */
  readonly #frcd: number;
  readonly #nfr: number;
  readonly #counts = { irqs: 0, records: 0, logged: 0, suppressed: 0, overflows: 0 };

  constructor(o: DmarFaultOptions) {
    this.#regs = o.regs;
    this.#log = o.log;
    this.#rs = o.ratelimit ?? new RatelimitState({ clock: o.clock, log: o.log });
    this.#frcd = Number(get64(o.cap, R.CAP_FRO)) * R.FRCD_LEN;
    this.#nfr = Number(get64(o.cap, R.CAP_NFR)) + 1;
  }

  /** Counters for tests and summaries (live: read after handle()). */
  get counts(): DmarFaultCounts {
    return this.#counts;
  }

  /** The hard-IRQ handler body (`dmar_fault`); returns IRQ_HANDLED. */
  handle(): number {
    const c = this.#counts;
    c.irqs++;
    const fsts = this.#regs.read32(R.FSTS) >>> 0;
    if (fsts !== 0 && this.#rs.check(FUNC)) {
      this.#log.printk('err', `DMAR: DRHD: handling fault status reg ${fsts.toString(16)}`);
    }
    if (get32(fsts, R.FSTS_PFO) !== 0) c.overflows++;
    // Linux ignores the advanced fault log; no primary fault pending means nothing to walk or clear.
    if (get32(fsts, R.FSTS_PPF) === 0) return IRQ_HANDLED;

    let index = get32(fsts, R.FSTS_FRI);
    for (let passes = 0; ; passes++) {
      // Each record has been cleared by the time the walk comes back to it, so the walk ends within NFR + 1 passes.
      invariant(passes <= this.#nfr, () => `dmar_fault: fault record ${index} still has F set after a full walk`);
      const ratelimited = !this.#rs.check(FUNC);
      const at = this.#frcd + index * R.FRCD_LEN;
      const hi = this.#regs.read32(at + 12) >>> 0;
      if (get32(hi, R.FRCD_F) === 0) break;
      let rec: FaultRecord | undefined;
      if (!ratelimited) {
        const sidDword = this.#regs.read32(at + 8) >>> 0;
        rec = {
          read: get32(hi, R.FRCD_T) !== 0,
          reason: get32(hi, R.FRCD_FR),
          pasid: get32(sidDword, R.FRCD_PP) !== 0 ? get32(hi, R.FRCD_PV) : -1,
          sid: get32(sidDword, R.FRCD_SID),
          addr: this.#regs.read64(at) & PAGE_ADDR_MASK,
        };
      }
      this.#regs.write32(at + 12, mask32(R.FRCD_F));
      c.records++;
      if (rec !== undefined) {
        this.#log.printk('err', faultLine(rec));
        c.logged++;
      } else {
        c.suppressed++;
      }
      index++;
      if (index >= this.#nfr) index = 0;
    }
    this.#regs.write32(R.FSTS, (mask32(R.FSTS_PFO) | mask32(R.FSTS_PPF) | mask32(R.FSTS_PRO)) >>> 0);
    return IRQ_HANDLED;
  }
}

/** `dmar_fault_do_one`'s message for a DMA-remapping fault. */
function faultLine(r: FaultRecord): string {
  const kind = r.read ? 'DMA Read' : 'DMA Write';
  const tag = r.pasid < 0 ? `${kind} NO_PASID` : `${kind} PASID 0x${r.pasid.toString(16)}`;
  const bus = hex2(r.sid >>> 8);
  const slot = hex2((r.sid >>> 3) & 0x1f);
  const fn = r.sid & 7;
  return `DMAR: [${tag}] Request device [${bus}:${slot}.${fn}] fault addr 0x${r.addr.toString(16)} ` +
    `[fault reason 0x${hex2(r.reason)}] ${faultReasonText(r.reason)}`;
}

function hex2(v: number): string {
  return v.toString(16).padStart(2, '0');
}
