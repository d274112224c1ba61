import type { SimProcess, Timer } from '../../sim/index.ts';
import type { IommuCore } from './core.ts';
import type { IommuDomain } from './domain.ts';
import { QI_POLL_NS } from './intel.ts';
import type { IovaDomain } from './iova.ts';

/** Slots of one flush queue's ring (Linux `IOVA_DEFAULT_FQ_SIZE`); one stays free, so it holds 255 entries. */
export const FQ_SIZE = 256;
/** Virtual ns after the first queued entry at which the queue is flushed (Linux `IOVA_FQ_TIMEOUT`, 10 ms). */
export const FQ_TIMEOUT_NS = 10_000_000;

interface FqEntry {
  pfn: number;
  pages: number;
  /** Table pages the unmap unlinked, freed only after the flush. */
  freelist: number[];
}

/**
 * The lazy-invalidation flush queue of one `DMA_FQ` default domain (Linux `dma-iommu.c` `queue_iova`,
 * `fq_flush_timeout`, `fq_ring_free`), one CPU's worth: an unmap clears the page-table entries but leaves
 * the IOTLB alone and queues its IOVA range (and any unlinked table pages); the range is neither reused nor
 * its table pages freed until one domain-wide invalidation has completed. That happens when the queue is
 * full (at once, in the unmapping caller) or when the timer started by the first queued entry fires 10 ms
 * later. Until then a device may still reach the unmapped pages through stale IOTLB entries: the window
 * lazy mode trades for speed, and the only place the stale-translation oracle may fire.
 *
 * The timer runs in event context, where the kernel cannot spin: it posts the flush and polls the status
 * word on later events, then frees what was queued before the flush was posted.
 */
export class FlushQueue {
  readonly #core: IommuCore;
  readonly #domain: IommuDomain;
  readonly #iovad: IovaDomain;
  readonly #ring: FqEntry[] = [];
  readonly #timer: Timer;
  #polling: Timer | undefined;
  /** The token of the flush posted by the timer, and how many entries it covers. */
  #token = 0;
  #covers = 0;
  /** Flushes done (full queue, timer), for summaries and tests. */
  flushes = 0;

  constructor(core: IommuCore, domain: IommuDomain, iovad: IovaDomain) {
    this.#core = core;
    this.#domain = domain;
    this.#iovad = iovad;
    this.#timer = core.kernel.sim.timer(() => this.#timeout());
  }

  /** Entries waiting for a flush. */
  get length(): number {
    return this.#ring.length;
  }

  /** Whether the IOVA page `pfn` is inside a queued (unmapped, not yet invalidated) range. */
  holds(pfn: number): boolean {
    for (const e of this.#ring) if (pfn >= e.pfn && pfn < e.pfn + e.pages) return true;
    return false;
  }

  /**
   * Linux `queue_iova`: flush first if full, then queue; the first entry starts the timer. The ring keeps
   * one slot free to tell full from empty (`fq_full`: `tail + 1 == head`), so it holds `FQ_SIZE - 1`.
   */
  queue(pfn: number, pages: number, freelist: readonly number[], cpu: SimProcess | undefined): void {
    if (this.#ring.length >= FQ_SIZE - 1) this.flushNow(cpu);
    this.#ring.push({ pfn, pages, freelist: freelist.length === 0 ? EMPTY : [...freelist] });
    if (!this.#timer.pending && this.#polling === undefined) this.#timer.schedule(FQ_TIMEOUT_NS);
  }

  /** `fq_flush_iotlb` + `fq_ring_free` in the caller's context: a domain flush, waited for, then frees everything queued. */
  flushNow(cpu: SimProcess | undefined): void {
    if (this.#ring.length === 0) return;
    this.#core.unit.flushIotlbDomain(this.#domain.did, cpu);
    this.flushes++;
    this.#free(this.#ring.length);
    // A flush the timer posted covered a prefix of what has just been freed.
    this.#covers = 0;
  }

  #timeout(): void {
    if (this.#ring.length === 0) return;
    this.#covers = this.#ring.length;
    this.#token = this.#core.unit.postIotlbDomain(this.#domain.did);
    this.#poll();
  }

  #poll(): void {
    if (!this.#core.unit.done(this.#token)) {
      this.#polling = this.#core.kernel.sim.schedule(QI_POLL_NS, () => this.#poll());
      return;
    }
    this.#polling = undefined;
    this.flushes++;
    this.#free(Math.min(this.#covers, this.#ring.length));
    this.#covers = 0;
    if (this.#ring.length !== 0) this.#timer.schedule(FQ_TIMEOUT_NS);
  }

  #free(n: number): void {
    const done = this.#ring.splice(0, n);
    for (const e of done) {
      this.#iovad.freeFast(e.pfn, e.pages);
      if (e.freelist.length !== 0) this.#core.releaseTablePages({ start: -1, last: -1, pgsize: 0, freelist: e.freelist });
    }
  }

  /** At domain teardown: flushes and frees everything, and stops the timer. */
  destroy(cpu: SimProcess | undefined): void {
    this.#timer.cancel();
    if (this.#polling !== undefined) {
      this.#polling.cancel();
      this.#polling = undefined;
    }
    this.flushNow(cpu);
  }
}

const EMPTY: number[] = [];
