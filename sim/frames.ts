import { SimInvariantError } from './errors.ts';
import type { Rng } from './rng.ts';

const USED_ALLOCATED = 1;
const USED_RESERVED = 2;

/**
 * Where the frame allocator places single frames:
 * - `sequential`: next fit from a cursor, so consecutive allocations are usually contiguous;
 * - `scatter`: uniformly at random among free frames (seeded), so code that assumes physically
 *   contiguous buffers breaks as it does on a long-running real machine.
 */
export type PlacementPolicy = 'sequential' | 'scatter';

/**
 * Allocates and frees 4 KiB frames of a {@link PhysicalMemory}-sized address space. O(1) single-frame
 * allocation and free for both policies; contiguous runs (page tables, rings, coherent buffers) by a scan.
 */
export class FrameAllocator {
  readonly frameCount: number;
  readonly policy: PlacementPolicy;
  readonly #rng: Rng | undefined;
  /** 0 free, {@link USED_ALLOCATED} or {@link USED_RESERVED}. */
  readonly #used: Uint8Array;
  /** Free frames, in no particular order; `#pos[f]` is f's index in it, or -1. */
  readonly #free: Int32Array;
  readonly #pos: Int32Array;
  #freeCount: number;
  #cursor = 0;

  /**
   * @param frameCount frames managed (numbers `0 .. frameCount - 1`)
   * @param policy placement of single frames
   * @param rng required for `scatter`
   * @param reserved frame ranges `[first, last]` inclusive that are never handed out (firmware, holes)
   */
  constructor(frameCount: number, policy: PlacementPolicy, rng?: Rng, reserved: readonly (readonly [number, number])[] = []) {
    if (!Number.isInteger(frameCount) || frameCount <= 0) throw new SimInvariantError(`bad frame count ${frameCount}`);
    if (policy === 'scatter' && rng === undefined) throw new SimInvariantError('scatter placement needs a seeded Rng');
    this.frameCount = frameCount;
    this.policy = policy;
    this.#rng = rng;
    this.#used = new Uint8Array(frameCount);
    for (const [first, last] of reserved) {
      if (!(first >= 0 && last < frameCount && first <= last)) throw new SimInvariantError(`bad reserved range [${first}, ${last}]`);
      this.#used.fill(USED_RESERVED, first, last + 1);
    }
    this.#free = new Int32Array(frameCount);
    this.#pos = new Int32Array(frameCount).fill(-1);
    let n = 0;
    for (let f = 0; f < frameCount; f++) {
      if (this.#used[f] === 0) {
        this.#free[n] = f;
        this.#pos[f] = n++;
      }
    }
    this.#freeCount = n;
  }

  /** Frames currently free. */
  get freeFrames(): number {
    return this.#freeCount;
  }

  /** Whether frame `f` is allocated or reserved. */
  isUsed(f: number): boolean {
    return this.#used[f] !== 0;
  }

  /** Allocates one frame; returns its number, or -1 when memory is exhausted. */
  alloc(): number {
    if (this.#freeCount === 0) return -1;
    let f: number;
    if (this.policy === 'scatter') {
      f = this.#free[(this.#rng as Rng).int(0, this.#freeCount - 1)] as number;
    } else {
      f = this.#cursor;
      while (this.#used[f] !== 0) f = f + 1 === this.frameCount ? 0 : f + 1;
      this.#cursor = f + 1 === this.frameCount ? 0 : f + 1;
    }
    this.#take(f);
    return f;
  }

  /**
   * Allocates `count` physically contiguous frames whose first frame number is a multiple of `align`;
   * returns the first frame, or -1 when no such run is free.
   */
  allocContiguous(count: number, align = 1): number {
    if (!(Number.isInteger(count) && count > 0 && Number.isInteger(align) && align > 0)) {
      throw new SimInvariantError(`allocContiguous(${count}, ${align}): need positive integers`);
    }
    if (count === 1 && align === 1) return this.alloc();
    for (let start = 0; start + count <= this.frameCount; start += align) {
      let ok = true;
      for (let f = start + count - 1; f >= start; f--) {
        if (this.#used[f] !== 0) {
          ok = false;
          break;
        }
      }
      if (ok) {
        for (let f = start; f < start + count; f++) this.#take(f);
        return start;
      }
    }
    return -1;
  }

  /** Frees one allocated frame. Freeing a free or reserved frame is a simulator bug. */
  free(f: number): void {
    if (!(Number.isInteger(f) && f >= 0 && f < this.frameCount)) throw new SimInvariantError(`free of frame ${f}: outside memory`);
    if (this.#used[f] === USED_RESERVED) throw new SimInvariantError(`free of reserved frame ${f}`);
    if (this.#used[f] !== USED_ALLOCATED) throw new SimInvariantError(`double free of frame ${f}`);
    this.#used[f] = 0;
    this.#free[this.#freeCount] = f;
    this.#pos[f] = this.#freeCount++;
  }

  #take(f: number): void {
    const i = this.#pos[f] as number;
    const lastIdx = --this.#freeCount;
    const moved = this.#free[lastIdx] as number;
    this.#free[i] = moved;
    this.#pos[moved] = i;
    this.#pos[f] = -1;
    this.#used[f] = USED_ALLOCATED;
  }
}
