import { invariant, type FrameAllocator, type PhysicalMemory } from '../../sim/index.ts';

/**
 * The kernel's view of user pages (Linux `struct page` refcounts): every frame given to user memory has a
 * reference count (one per mapping or shared object holding it, one per pin) and a pin count. A frame
 * goes back to the allocator, its bytes forgotten, when its last reference drops, so a page pinned for
 * DMA outlives the mapping it came from, as on Linux.
 */
export class UserPages {
  readonly #memory: PhysicalMemory;
  readonly #frames: FrameAllocator;
  readonly #refs: Int32Array;
  readonly #pins: Int32Array;
  #pinned = 0;
  #live = 0;

  constructor(memory: PhysicalMemory, frames: FrameAllocator) {
    this.#memory = memory;
    this.#frames = frames;
    this.#refs = new Int32Array(memory.frameCount);
    this.#pins = new Int32Array(memory.frameCount);
  }

  /** A new frame holding `storage` (4096 bytes), with one reference; -1 when memory is exhausted. */
  alloc(storage: Uint8Array): number {
    const f = this.#frames.alloc();
    if (f < 0) return -1;
    this.#memory.attachFrame(f, storage);
    this.#refs[f] = 1;
    this.#live++;
    return f;
  }

  /** Gives the already allocated frame `f` (from the allocator) to the kernel's pages with `storage` and one reference. */
  adopt(f: number, storage: Uint8Array): void {
    invariant(this.#refs[f] === 0, () => `adopt of live frame ${f}`);
    this.#memory.attachFrame(f, storage);
    this.#refs[f] = 1;
    this.#live++;
  }

  /** Takes a reference on `f`. */
  get(f: number): void {
    invariant((this.#refs[f] as number) > 0, () => `get of free user frame ${f}`);
    this.#refs[f] = (this.#refs[f] as number) + 1;
  }

  /** Drops a reference; the last frees the frame. */
  put(f: number): void {
    const r = (this.#refs[f] as number) - 1;
    invariant(r >= 0, () => `put of free user frame ${f}`);
    this.#refs[f] = r;
    if (r === 0) {
      invariant(this.#pins[f] === 0, () => `user frame ${f} freed while pinned`);
      this.#memory.releaseFrame(f);
      this.#frames.free(f);
      this.#live--;
    }
  }

  /** Pins `f` (a pin is also a reference). */
  pin(f: number): void {
    this.get(f);
    this.#pins[f] = (this.#pins[f] as number) + 1;
    this.#pinned++;
  }

  /** Unpins `f`. */
  unpin(f: number): void {
    invariant((this.#pins[f] as number) > 0, () => `unpin of unpinned frame ${f}`);
    this.#pins[f] = (this.#pins[f] as number) - 1;
    this.#pinned--;
    this.put(f);
  }

  /** Pins of frame `f`. */
  pinCount(f: number): number {
    return this.#pins[f] ?? 0;
  }

  /** References of frame `f`. */
  refCount(f: number): number {
    return this.#refs[f] ?? 0;
  }

  /** Total pins outstanding. */
  get pinned(): number {
    return this.#pinned;
  }

  /**
   * Physical memory (RAM) itself, for a PFN mapping (`io` backing) whose pages are RAM rather than a BAR:
   * the CPU reaches them as memory, as Linux's `remap_pfn_range` of a RAM pfn does.
   */
  get memory(): PhysicalMemory {
    return this.#memory;
  }

  /** Every frame of physical memory (Linux `totalram_pages`, with no swap). */
  get totalPages(): number {
    return this.#memory.frameCount;
  }

  /** Frames currently given to user memory. */
  get live(): number {
    return this.#live;
  }
}
