import { SimInvariantError } from '../../sim/index.ts';

/**
 * The PCIe link between the Apex and its root port, as dmasim's timing model sees it (all *dmasim*
 * definitions). The Coral M.2 and mini-PCIe cards train at Gen2 x1, the default.
 */
export interface ApexLinkOptions {
  /** PCIe generation 1..5 (2.5, 5, 8, 16, 32 GT/s per lane). */
  readonly generation: 1 | 2 | 3 | 4 | 5;
  /** Lanes. */
  readonly width: 1 | 2 | 4 | 8 | 16;
  /** Max_Payload_Size: bytes per write TLP and per read completion. */
  readonly maxPayloadBytes: number;
  /** Max_Read_Request_Size: bytes per read request. */
  readonly maxReadRequestBytes: number;
  /** Bytes each TLP adds on the wire (framing, sequence number, 4-DW header, LCRC). */
  readonly tlpOverheadBytes: number;
  /** Virtual ns from a read request leaving the device to its first completion arriving (round trip). */
  readonly readLatencyNs: number;
}

/** Default link: Gen2 x1, MPS 128 (Linux's default), MRRS 512, 24 bytes per TLP, 600 ns read round trip. */
export const APEX_LINK_DEFAULTS: ApexLinkOptions = {
  generation: 2,
  width: 1,
  maxPayloadBytes: 128,
  maxReadRequestBytes: 512,
  tlpOverheadBytes: 24,
  readLatencyNs: 600,
};

/**
 * Usable bits per ns per lane after line coding: 8b/10b for Gen1-2, 128b/130b from Gen3, as a fraction
 * `[numerator, denominator]` so that costs are exact integers.
 */
const LANE_BITS_PER_NS: Readonly<Record<ApexLinkOptions['generation'], readonly [number, number]>> = {
  1: [2, 1],
  2: [4, 1],
  3: [8 * 128, 130],
  4: [16 * 128, 130],
  5: [32 * 128, 130],
};

/**
 * Link cost of DMA transfers (*dmasim*'s model). The link is full duplex but the engine moves one transfer
 * at a time, so costs add up.
 * - A **write** of n bytes is ceil(n / MPS) posted TLPs: ns = ceil((n + TLPs x overhead) x 8 / rate).
 * - A **read** of n bytes is ceil(n / MRRS) requests, issued one at a time (one read outstanding); each
 *   costs the round trip plus the serialization of its completions, split at MPS:
 *   ns = sum over requests of (readLatencyNs + ceil((bytes + completions x overhead) x 8 / rate)).
 * - rate = lanes x per-lane rate after line coding (Gen2 x1: 4 bits per ns).
 * The request TLPs travel the other direction and are not charged; neither is the MSI-X write.
 */
export class ApexLink {
  readonly options: ApexLinkOptions;
  readonly #num: number;
  readonly #den: number;

  constructor(options: Partial<ApexLinkOptions> = {}) {
    const o: ApexLinkOptions = { ...APEX_LINK_DEFAULTS, ...options };
    const rate = LANE_BITS_PER_NS[o.generation] as readonly [number, number] | undefined;
    if (rate === undefined || ![1, 2, 4, 8, 16].includes(o.width)) throw new SimInvariantError(`apex link: bad generation ${o.generation} or width ${o.width}`);
    for (const k of ['maxPayloadBytes', 'maxReadRequestBytes'] as const) {
      const v = o[k];
      if (!(Number.isInteger(v) && v >= 128 && v <= 4096 && (v & (v - 1)) === 0)) throw new SimInvariantError(`apex link: ${k} ${v} is not a power of 2 in 128..4096`);
    }
    if (!(Number.isInteger(o.tlpOverheadBytes) && o.tlpOverheadBytes >= 0 && Number.isInteger(o.readLatencyNs) && o.readLatencyNs >= 0)) {
      throw new SimInvariantError('apex link: overhead and latency must be non-negative integers');
    }
    this.options = o;
    this.#num = rate[0] * o.width;
    this.#den = rate[1];
  }

  /** Virtual ns to serialize `bytes` on the link. */
  #wire(bytes: number): number {
    return Math.ceil((bytes * 8 * this.#den) / this.#num);
  }

  /** Virtual ns of a DMA write of `n` bytes. */
  writeNs(n: number): number {
    if (n <= 0) return 0;
    const o = this.options;
    return this.#wire(n + Math.ceil(n / o.maxPayloadBytes) * o.tlpOverheadBytes);
  }

  /** Virtual ns of a DMA read of `n` bytes. */
  readNs(n: number): number {
    const o = this.options;
    let ns = 0;
    for (let done = 0; done < n; done += o.maxReadRequestBytes) {
      const r = Math.min(o.maxReadRequestBytes, n - done);
      ns += o.readLatencyNs + this.#wire(r + Math.ceil(r / o.maxPayloadBytes) * o.tlpOverheadBytes);
    }
    return ns;
  }
}
