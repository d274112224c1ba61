import { invariant, type Counter } from '../../sim/index.ts';

/**
 * The IOTLB: a set-associative cache of leaf translations tagged by domain id, LRU within a set. A superpage
 * is cached as one entry of its own size (level 2: 2 MiB, level 3: 1 GiB), placed in the set its page number
 * at that level selects, so a lookup probes one set per level that currently holds entries. Typed arrays only:
 * lookups and fills allocate nothing.
 *
 * Like real hardware it knows nothing of the tables: an entry stays until an invalidation or an eviction
 * removes it, however the tables change meanwhile.
 */
export class Iotlb {
  /** Total entries (0: no IOTLB, every access walks). */
  readonly entries: number;
  readonly ways: number;
  readonly sets: number;
  /** sets - 1 when sets is a power of two (then a mask selects the set), else -1. */
  readonly #setMask: number;
  /** Domain id of each way, -1 when empty. */
  readonly #did: Int32Array;
  /** IOVA of the start of the cached page. */
  readonly #iova: Float64Array;
  /** Physical address of the start of the cached page. */
  readonly #phys: Float64Array;
  /** Leaf level (1, 2, 3). */
  readonly #level: Uint8Array;
  /** R (1) and W (2) granted. */
  readonly #perm: Uint8Array;
  /** Physical address of the leaf entry the translation came from. */
  readonly #leaf: Float64Array;
  /** LRU stamps. */
  readonly #stamp: Float64Array;
  #tick = 0;
  /** Valid entries per level (index 1..3), so lookups skip levels that hold nothing. */
  readonly #perLevel = new Int32Array(4);
  readonly #hits: Counter;
  readonly #misses: Counter;
  readonly #evictions: Counter;

  /** Way index of the last successful {@link lookup}. */
  lastWay = -1;

  constructor(entries: number, ways: number, hits: Counter, misses: Counter, evictions: Counter) {
    invariant(Number.isInteger(entries) && entries >= 0 && Number.isInteger(ways) && ways > 0, `bad IOTLB geometry ${entries}/${ways}`);
    invariant(entries % ways === 0, `IOTLB entries ${entries} must be a multiple of the associativity ${ways}`);
    this.entries = entries;
    this.ways = ways;
    this.sets = entries / ways;
    this.#setMask = this.sets > 0 && (this.sets & (this.sets - 1)) === 0 ? this.sets - 1 : -1;
    this.#did = new Int32Array(entries).fill(-1);
    this.#iova = new Float64Array(entries);
    this.#phys = new Float64Array(entries);
    this.#level = new Uint8Array(entries);
    this.#perm = new Uint8Array(entries);
    this.#leaf = new Float64Array(entries);
    this.#stamp = new Float64Array(entries);
    this.#hits = hits;
    this.#misses = misses;
    this.#evictions = evictions;
  }

  /** Valid entries. */
  get size(): number {
    return (this.#perLevel[1] as number) + (this.#perLevel[2] as number) + (this.#perLevel[3] as number);
  }

  #setOf(lo: number, hi: number, level: number): number {
    let pn: number;
    if (level === 1) pn = (lo >>> 12) | (hi << 20);
    else if (level === 2) pn = (lo >>> 21) | (hi << 11);
    else pn = (lo >>> 30) | (hi << 2);
    const h = (pn + (level - 1) * 0x9e37) >>> 0;
    return this.#setMask >= 0 ? h & this.#setMask : h % this.sets;
  }

  /**
   * The way holding a translation of `iova` for domain `did` that grants `need` (R 1, W 2), or -1. A hit
   * makes the entry most recently used and counts; `touch` false is a side-effect-free peek (explainer).
   */
  lookup(did: number, iova: number, need: number, touch: boolean): number {
    if (this.entries === 0) return -1;
    const lo = iova >>> 0;
    const hi = (iova - lo) / 0x1_0000_0000;
    for (let level = 1; level <= 3; level++) {
      if (this.#perLevel[level] === 0) continue;
      const offMask = level === 1 ? 0xfff : level === 2 ? 0x1f_ffff : 0x3fff_ffff;
      const base = iova - (lo & offMask);
      const first = this.#setOf(lo, hi, level) * this.ways;
      for (let w = first; w < first + this.ways; w++) {
        if (this.#did[w] === did && this.#iova[w] === base && this.#level[w] === level) {
          // A cached translation without the permission is a miss: the unit re-walks for the current answer.
          if (((this.#perm[w] as number) & need) !== need) break;
          if (touch) {
            this.#stamp[w] = ++this.#tick;
            this.#hits.value++;
          }
          this.lastWay = w;
          return w;
        }
      }
    }
    if (touch) this.#misses.value++;
    return -1;
  }

  /** Physical address that way `w` maps `iova` to. */
  physOf(w: number, iova: number): number {
    return (this.#phys[w] as number) + (iova - (this.#iova[w] as number));
  }

  /** Bytes from `iova` to the end of way `w`'s page. */
  extentOf(w: number, iova: number): number {
    return (this.#iova[w] as number) + pageSize(this.#level[w] as number) - iova;
  }

  /** Physical address of the leaf entry way `w` was filled from. */
  leafOf(w: number): number {
    return this.#leaf[w] as number;
  }

  /** Level of way `w`. */
  levelOf(w: number): number {
    return this.#level[w] as number;
  }

  /** Permissions of way `w`. */
  permOf(w: number): number {
    return this.#perm[w] as number;
  }

  /** Caches a translation: the LRU (or an empty) way of its set is replaced. */
  fill(did: number, iovaBase: number, physBase: number, level: number, perm: number, leafAddr: number): void {
    if (this.entries === 0) return;
    const lo = iovaBase >>> 0;
    const hi = (iovaBase - lo) / 0x1_0000_0000;
    const first = this.#setOf(lo, hi, level) * this.ways;
    let victim = -1;
    let lru = first;
    let oldest = Infinity;
    for (let w = first; w < first + this.ways; w++) {
      if (this.#did[w] === did && this.#iova[w] === iovaBase && this.#level[w] === level) {
        victim = w;
        break;
      }
      if (this.#did[w] === -1) {
        if (victim < 0) victim = w;
      } else if ((this.#stamp[w] as number) < oldest) {
        oldest = this.#stamp[w] as number;
        lru = w;
      }
    }
    if (victim < 0) {
      victim = lru;
      this.#evictions.value++;
    }
    if (this.#did[victim] !== -1) this.#drop(victim);
    this.#did[victim] = did;
    this.#iova[victim] = iovaBase;
    this.#phys[victim] = physBase;
    this.#level[victim] = level;
    this.#perm[victim] = perm;
    this.#leaf[victim] = leafAddr;
    this.#stamp[victim] = ++this.#tick;
    this.#perLevel[level] = (this.#perLevel[level] as number) + 1;
  }

  #drop(w: number): void {
    const lvl = this.#level[w] as number;
    this.#perLevel[lvl] = (this.#perLevel[lvl] as number) - 1;
    this.#did[w] = -1;
  }

  /** Global invalidation: drops every entry. */
  invalidateAll(): void {
    this.#did.fill(-1);
    this.#perLevel.fill(0);
  }

  /** Domain-selective invalidation. */
  invalidateDomain(did: number): void {
    for (let w = 0; w < this.entries; w++) if (this.#did[w] === did) this.#drop(w);
  }

  /**
   * Page-selective invalidation of domain `did`: every entry whose page overlaps the 2^am pages at `addr`
   * (aligned down to that size) goes, superpages included.
   */
  invalidatePages(did: number, addr: number, am: number): void {
    const size = 4096 * 2 ** am;
    const start = addr - (addr % size);
    const last = start + size - 1;
    if (this.entries === 0 || this.size === 0) return;
    if (am <= 4) {
      // A few pages: probe only the sets their 4 KiB, 2 MiB and 1 GiB entries can live in.
      for (let level = 1; level <= 3; level++) {
        if (this.#perLevel[level] === 0) continue;
        const step = pageSize(level);
        for (let b = start - (start % step); b <= last; b += step) this.#dropInSet(did, b, level);
      }
      return;
    }
    for (let w = 0; w < this.entries; w++) {
      if (this.#did[w] !== did) continue;
      const b = this.#iova[w] as number;
      if (b <= last && start <= b + pageSize(this.#level[w] as number) - 1) this.#drop(w);
    }
  }

  #dropInSet(did: number, base: number, level: number): void {
    const lo = base >>> 0;
    const first = this.#setOf(lo, (base - lo) / 0x1_0000_0000, level) * this.ways;
    for (let w = first; w < first + this.ways; w++) {
      if (this.#did[w] === did && this.#iova[w] === base && this.#level[w] === level) this.#drop(w);
    }
  }

  /** Every valid entry, for tests and the explainer: `[did, iovaBase, physBase, level, perm]`. */
  dump(): [number, number, number, number, number][] {
    const out: [number, number, number, number, number][] = [];
    for (let w = 0; w < this.entries; w++) {
      if (this.#did[w] !== -1) out.push([this.#did[w] as number, this.#iova[w] as number, this.#phys[w] as number, this.#level[w] as number, this.#perm[w] as number]);
    }
    return out;
  }
}

/** Bytes mapped by a leaf at `level` (1: 4 KiB, 2: 2 MiB, 3: 1 GiB). */
export function pageSize(level: number): number {
  return level === 1 ? 0x1000 : level === 2 ? 0x20_0000 : 0x4000_0000;
}
