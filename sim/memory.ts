import type { DmaObserver } from './dma.ts';
import { SimInvariantError } from './errors.ts';

/** Bytes in a frame (a 4 KiB page). */
export const FRAME_SIZE = 4096;
/** log2 of {@link FRAME_SIZE}. */
export const FRAME_SHIFT = 12;
const FRAME_MASK = FRAME_SIZE - 1;
/** Accesses up to this many bytes within a frame copy bytewise instead of through a subarray view. */
const SMALL_COPY = 32;
/** Frames are carved out of chunks of this many, so that materialising memory allocates rarely. */
const FRAMES_PER_CHUNK = 64;

/**
 * Sparse simulated physical memory: a `size`-byte address space in 4 KiB frames, materialised on first
 * write (a never-written frame reads as zeros). Addresses are `number`s below 2^53; every access must lie
 * inside `[0, size)`, else it is a simulator bug ({@link SimInvariantError}): bus-level range checks
 * belong to the ports in front of memory, which use {@link PhysicalMemory.contains}.
 *
 * Typed accessors are little-endian: 8/16/32-bit as `number`, 64-bit as `bigint`.
 */
export class PhysicalMemory {
  /** Size of the address space in bytes (a multiple of 4 KiB). */
  readonly size: number;
  /** Number of frames. */
  readonly frameCount: number;
  readonly #frames: (Uint8Array | undefined)[];
  #chunk: ArrayBuffer | undefined;
  #chunkUsed = FRAMES_PER_CHUNK;
  #materialised = 0;
  readonly #observers: DmaObserver[] = [];
  /**
   * What the DMA paths onto this memory call for every piece of device DMA that reaches it (see
   * {@link DmaObserver}), `null` when nothing observes. Maintained by {@link observeDma}; read it, do not set it.
   */
  dmaObserver: DmaObserver | null = null;

  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size <= 0 || size % FRAME_SIZE !== 0) {
      throw new SimInvariantError(`PhysicalMemory size must be a positive multiple of 4096, got ${size}`);
    }
    this.size = size;
    this.frameCount = size / FRAME_SIZE;
    this.#frames = Array.from<Uint8Array | undefined>({ length: this.frameCount }).fill(undefined);
  }

  /** Number of frames that hold data (have been written). */
  get materialisedFrames(): number {
    return this.#materialised;
  }

  /**
   * Starts reporting every piece of device DMA that reaches this memory to `observer` (after translation:
   * physical addresses, with the requester id), until the returned function is called. Several observers
   * may be attached; each sees every access, in attach order. Costs nothing once all are detached.
   */
  observeDma(observer: DmaObserver): () => void {
    this.#observers.push(observer);
    this.#updateObserver();
    let attached = true;
    return () => {
      if (!attached) return;
      attached = false;
      this.#observers.splice(this.#observers.indexOf(observer), 1);
      this.#updateObserver();
    };
  }

  #updateObserver(): void {
    const list = [...this.#observers];
    this.dmaObserver = list.length === 0 ? null : list.length === 1 ? (list[0] as DmaObserver) : {
      dmaAccess(requester, addr, len, write) {
        for (const o of list) o.dmaAccess(requester, addr, len, write);
      },
    };
  }

  /** Whether `[addr, addr + len)` lies inside memory. */
  contains(addr: number, len: number): boolean {
    return addr >= 0 && len >= 0 && addr + len <= this.size && Number.isSafeInteger(addr);
  }

  /**
   * The frame's bytes, materialising it. The returned view stays valid for the memory's life: hot paths
   * (a device copying within one page) may hold on to it.
   */
  frame(frameNumber: number): Uint8Array {
    const f = this.#frames[frameNumber];
    if (f !== undefined) return f;
    if (!(frameNumber >= 0 && frameNumber < this.frameCount && Number.isInteger(frameNumber))) {
      throw new SimInvariantError(`frame ${frameNumber} is outside physical memory (${this.frameCount} frames)`);
    }
    return this.#materialise(frameNumber);
  }

  /** The frame's bytes if it was ever written, else `undefined` (it reads as zeros). */
  peekFrame(frameNumber: number): Uint8Array | undefined {
    return this.#frames[frameNumber];
  }

  /**
   * Makes `storage` (4096 bytes, e.g. a page of a process's mapping) the frame's bytes, so that what the
   * CPU side writes into the view and what DMA writes into the frame are the same bytes. The frame must not
   * be attached already; its previous contents are dropped.
   */
  attachFrame(frameNumber: number, storage: Uint8Array): void {
    if (!(frameNumber >= 0 && frameNumber < this.frameCount && Number.isInteger(frameNumber)) || storage.length !== FRAME_SIZE) {
      throw new SimInvariantError(`attachFrame(${frameNumber}): frame outside memory or storage not ${FRAME_SIZE} bytes`);
    }
    if (this.#frames[frameNumber] === undefined) this.#materialised++;
    this.#frames[frameNumber] = storage;
  }

  /** Forgets the frame's bytes (it reads as zeros again), e.g. when its page is freed. */
  releaseFrame(frameNumber: number): void {
    if (this.#frames[frameNumber] === undefined) return;
    this.#frames[frameNumber] = undefined;
    this.#materialised--;
  }

  #materialise(frameNumber: number): Uint8Array {
    if (this.#chunkUsed === FRAMES_PER_CHUNK || this.#chunk === undefined) {
      this.#chunk = new ArrayBuffer(FRAME_SIZE * FRAMES_PER_CHUNK);
      this.#chunkUsed = 0;
    }
    const f = new Uint8Array(this.#chunk, this.#chunkUsed * FRAME_SIZE, FRAME_SIZE);
    this.#chunkUsed++;
    this.#frames[frameNumber] = f;
    this.#materialised++;
    return f;
  }

  #check(addr: number, len: number, what: string): void {
    if (!(addr >= 0 && len >= 0 && addr + len <= this.size && Number.isSafeInteger(addr) && Number.isSafeInteger(len))) {
      throw new SimInvariantError(
        `PhysicalMemory.${what}(0x${addr.toString(16)}, ${len}) is outside memory of 0x${this.size.toString(16)} bytes`,
      );
    }
  }

  /** Copies `len` bytes at physical `addr` into `dst[dstOff..]`. */
  read(addr: number, dst: Uint8Array, dstOff: number, len: number): void {
    this.#check(addr, len, 'read');
    let fn = Math.floor(addr / FRAME_SIZE);
    let off = addr - fn * FRAME_SIZE;
    while (len > 0) {
      const n = Math.min(len, FRAME_SIZE - off);
      const f = this.#frames[fn];
      if (f === undefined) dst.fill(0, dstOff, dstOff + n);
      else if (n === FRAME_SIZE) dst.set(f, dstOff);
      // Small accesses copy bytewise: a subarray view per access would allocate on the DMA hot path.
      else if (n <= SMALL_COPY) for (let i = 0; i < n; i++) dst[dstOff + i] = f[off + i] as number;
      else dst.set(f.subarray(off, off + n), dstOff);
      dstOff += n;
      len -= n;
      fn++;
      off = 0;
    }
  }

  /** Copies `len` bytes from `src[srcOff..]` to physical `addr`. */
  write(addr: number, src: Uint8Array, srcOff: number, len: number): void {
    this.#check(addr, len, 'write');
    let fn = Math.floor(addr / FRAME_SIZE);
    let off = addr - fn * FRAME_SIZE;
    while (len > 0) {
      const n = Math.min(len, FRAME_SIZE - off);
      const f = this.#frames[fn] ?? this.#materialise(fn);
      if (n <= SMALL_COPY && n !== src.length) for (let i = 0; i < n; i++) f[off + i] = src[srcOff + i] as number;
      else f.set(n === src.length && srcOff === 0 ? src : src.subarray(srcOff, srcOff + n), off);
      srcOff += n;
      len -= n;
      fn++;
      off = 0;
    }
  }

  /** Fills `len` bytes at physical `addr` with `value`. */
  fill(addr: number, value: number, len: number): void {
    this.#check(addr, len, 'fill');
    let fn = Math.floor(addr / FRAME_SIZE);
    let off = addr - fn * FRAME_SIZE;
    while (len > 0) {
      const n = Math.min(len, FRAME_SIZE - off);
      const f = this.#frames[fn];
      if (f !== undefined) f.fill(value, off, off + n);
      else if (value !== 0) this.#materialise(fn).fill(value, off, off + n);
      len -= n;
      fn++;
      off = 0;
    }
  }

  /** Copies `len` bytes from physical `src` to physical `dst` (the ranges may overlap, as with memmove). */
  copy(dst: number, src: number, len: number): void {
    // The common DMA case, one whole aligned frame to another, with one combined check.
    const dfn = dst / FRAME_SIZE;
    const sfn = src / FRAME_SIZE;
    if (len === FRAME_SIZE && (dfn | 0) === dfn && (sfn | 0) === sfn && dfn !== sfn && dfn >= 0 && sfn >= 0 && dfn < this.frameCount && sfn < this.frameCount) {
      const df = this.#frames[dfn] ?? this.#materialise(dfn);
      const sf = this.#frames[sfn];
      if (sf === undefined) df.fill(0);
      else df.set(sf);
      return;
    }
    this.#check(src, len, 'copy');
    this.#check(dst, len, 'copy');
    if (len === 0) return;
    if (dst > src && dst < src + len) {
      // A forward copy would overwrite source bytes before reading them; stage the (rare) overlap.
      const tmp = new Uint8Array(len);
      this.read(src, tmp, 0, len);
      this.write(dst, tmp, 0, len);
      return;
    }
    // Frame to frame, in pieces bounded by both sides' frame edges: no staging buffer, one memcpy per piece.
    while (len > 0) {
      const so = src & FRAME_MASK;
      const dOff = dst & FRAME_MASK;
      const n = Math.min(len, FRAME_SIZE - so, FRAME_SIZE - dOff);
      const dfn = Math.floor(dst / FRAME_SIZE);
      const df = this.#frames[dfn] ?? this.#materialise(dfn);
      const sf = this.#frames[Math.floor(src / FRAME_SIZE)];
      if (sf === undefined) df.fill(0, dOff, dOff + n);
      else if (n === FRAME_SIZE) df.set(sf);
      else df.set(sf.subarray(so, so + n), dOff);
      src += n;
      dst += n;
      len -= n;
    }
  }

  /** Reads the byte at `addr`. */
  read8(addr: number): number {
    this.#check(addr, 1, 'read8');
    const f = this.#frames[Math.floor(addr / FRAME_SIZE)];
    return f === undefined ? 0 : (f[addr & FRAME_MASK] as number);
  }

  /** Reads the little-endian 16-bit value at `addr`. */
  read16(addr: number): number {
    return this.read8(addr) | (this.read8(addr + 1) << 8);
  }

  /** Reads the little-endian unsigned 32-bit value at `addr`. */
  read32(addr: number): number {
    this.#check(addr, 4, 'read32');
    const off = addr & FRAME_MASK;
    if (off <= FRAME_SIZE - 4) {
      const f = this.#frames[Math.floor(addr / FRAME_SIZE)];
      if (f === undefined) return 0;
      return ((f[off] as number) | ((f[off + 1] as number) << 8) | ((f[off + 2] as number) << 16) | ((f[off + 3] as number) << 24)) >>> 0;
    }
    return (this.read16(addr) | (this.read16(addr + 2) << 16)) >>> 0;
  }

  /** Reads the little-endian 64-bit value at `addr`. */
  read64(addr: number): bigint {
    return BigInt(this.read32(addr)) | (BigInt(this.read32(addr + 4)) << 32n);
  }

  /** Writes the byte `v` (truncated to 8 bits) at `addr`. */
  write8(addr: number, v: number): void {
    this.#check(addr, 1, 'write8');
    const fn = Math.floor(addr / FRAME_SIZE);
    const f = this.#frames[fn] ?? this.#materialise(fn);
    f[addr & FRAME_MASK] = v;
  }

  /** Writes the little-endian 16-bit `v` at `addr`. */
  write16(addr: number, v: number): void {
    this.#check(addr, 2, 'write16');
    this.write8(addr, v & 0xff);
    this.write8(addr + 1, (v >>> 8) & 0xff);
  }

  /** Writes the little-endian 32-bit `v` at `addr`. */
  write32(addr: number, v: number): void {
    this.#check(addr, 4, 'write32');
    const off = addr & FRAME_MASK;
    if (off <= FRAME_SIZE - 4) {
      const fn = Math.floor(addr / FRAME_SIZE);
      const f = this.#frames[fn] ?? this.#materialise(fn);
      f[off] = v;
      f[off + 1] = v >>> 8;
      f[off + 2] = v >>> 16;
      f[off + 3] = v >>> 24;
      return;
    }
    this.write16(addr, v & 0xffff);
    this.write16(addr + 2, (v >>> 16) & 0xffff);
  }

  /** Writes the little-endian 64-bit `v` (taken modulo 2^64) at `addr`. */
  write64(addr: number, v: bigint): void {
    this.#check(addr, 8, 'write64');
    this.write32(addr, Number(v & 0xffffffffn));
    this.write32(addr + 4, Number((v >> 32n) & 0xffffffffn));
  }
}
