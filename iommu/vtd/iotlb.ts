import { invariant, type Counter } from '../../sim/index.ts';

/** 2^-32: `(x - lo) * INV_2_32` gives the high word of an integer `x` below 2^53 exactly, and sooner than a division. */
const INV_2_32 = 2 ** -32;
/** Physical addresses of 4 KiB entries below this have a frame number that fits an Int32Array. */
const FRAME_LIMIT = 2 ** 43;

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
  /** IOVA of the start of the cached page plus its level: one compare matches both (the base's low 12 bits are 0). */
  readonly #tag: Float64Array;
  /** IOVA of the start of the cached page. */
  readonly #iova: Float64Array;
  /** Physical address of the start of the cached page. */
  readonly #phys: Float64Array;
  /** For a 4 KiB page, its physical frame number when below 2^31 (an integer index), else -1. */
  readonly #frame: Int32Array;
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
    this.#tag = new Float64Array(entries);
    this.#iova = new Float64Array(entries);
    this.#phys = new Float64Array(entries);
    this.#frame = new Int32Array(entries);
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
    const hi = (iova - lo) * INV_2_32;
    const n = this.#perLevel;
    // Smallest pages first; a level holding no entries costs one test.
    let w = n[1] === 0 ? -1 : this.#probe(did, iova - (lo & 0xfff) + 1, this.#setOf(lo, hi, 1), need);
    if (w < 0 && n[2] !== 0) w = this.#probe(did, iova - (lo & 0x1f_ffff) + 2, this.#setOf(lo, hi, 2), need);
    if (w < 0 && n[3] !== 0) w = this.#probe(did, iova - (lo & 0x3fff_ffff) + 3, this.#setOf(lo, hi, 3), need);
    if (w < 0) {
      if (touch) this.#misses.value++;
      return -1;
    }
    if (touch) this.touch(w);
    else this.lastWay = w;
    return w;
  }

  /**
   * The way holding a 4 KiB translation of `iova` for domain `did` that grants `need`, or -1: the first probe
   * {@link lookup} makes, without its side effects. A caller that uses the way calls {@link touch}; one that
   * finds none goes on to a full lookup. Small, for the unit's hit path.
   */
  find4k(did: number, iova: number, need: number): number {
    if (this.entries === 0) return -1;
    const lo = iova >>> 0;
    // As #setOf and #probe for level 1, written out: this runs on every hit.
    const tag = iova - (lo & 0xfff) + 1;
    const h = ((lo >>> 12) | (((iova - lo) * INV_2_32) << 20)) >>> 0;
    const first = (this.#setMask >= 0 ? h & this.#setMask : h % this.sets) * this.ways;
    for (let w = first; w < first + this.ways; w++) {
      if (this.#tag[w] === tag && this.#did[w] === did) return ((this.#perm[w] as number) & need) === need ? w : -1;
    }
    return -1;
  }

  /** A hit on way `w`: it becomes the most recently used of its set, and counts. */
  touch(w: number): void {
    this.#stamp[w] = ++this.#tick;
    this.#hits.value++;
    this.lastWay = w;
  }

  /** The way of `set` holding `tag` for `did` with the permissions `need`, or -1. */
  #probe(did: number, tag: number, set: number, need: number): number {
    const first = set * this.ways;
    const end = first + this.ways;
    const tags = this.#tag;
    for (let w = first; w < end; w++) {
      if (tags[w] === tag && this.#did[w] === did) {
        // A cached translation without the permission is a miss: the unit re-walks for the current answer.
        return ((this.#perm[w] as number) & need) === need ? w : -1;
      }
    }
    return -1;
  }

  /** Physical address that way `w` maps `iova` to. */
  physOf(w: number, iova: number): number {
    return (this.#phys[w] as number) + (iova - (this.#iova[w] as number));
  }

  /** Physical frame number of way `w`, a 4 KiB entry found by {@link find4k}: -1 when at or past 2^31. */
  frameOf(w: number): number {
    return this.#frame[w] as number;
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

  /**
   * Caches a translation: the LRU (or an empty) way of its set is replaced. `iovaBase` is aligned to the page
   * size of `level` (so its low 12 bits are free for the level in the tag).
   */
  fill(did: number, iovaBase: number, physBase: number, level: number, perm: number, leafAddr: number): void {
    if (this.entries === 0) return;
    const lo = iovaBase >>> 0;
    const hi = (iovaBase - lo) * INV_2_32;
    const first = this.#setOf(lo, hi, level) * this.ways;
    let victim = -1;
    let lru = first;
    let oldest = Infinity;
    for (let w = first; w < first + this.ways; w++) {
      if (this.#did[w] === did && this.#tag[w] === iovaBase + level) {
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
    this.#tag[victim] = iovaBase + level;
    this.#iova[victim] = iovaBase;
    this.#phys[victim] = physBase;
    this.#frame[victim] = level === 1 && physBase < FRAME_LIMIT ? physBase / 4096 : -1;
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
    // An empty IOTLB (the common case while a driver maps and unmaps without DMA) costs two tests.
    if (this.entries === 0 || this.size === 0) return;
    const size = 4096 * 2 ** am;
    const start = addr - (addr % size);
    const last = start + size - 1;
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
    const first = this.#setOf(lo, (base - lo) * INV_2_32, level) * this.ways;
    for (let w = first; w < first + this.ways; w++) {
      if (this.#did[w] === did && this.#tag[w] === base + level) this.#drop(w);
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
