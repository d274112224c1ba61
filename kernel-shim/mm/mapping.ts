import type { SimProcess } from '../../sim/index.ts';
import { COST } from '../costs.ts';
import { SysError, userErrno } from '../errno.ts';
import { PAGE_SIZE, PROT } from '../uapi/linux.ts';
import type { Mm } from './mm.ts';
import type { Vma, VmaBacking } from './vma.ts';

/** `Number.MAX_SAFE_INTEGER` as a bigint, made once (address checks run on every access). */
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/** Who is running user code right now, for the cost of a synchronous access (temporal decoupling). */
export interface Runner {
  /** The thread whose local time an access advances. */
  readonly running: SimProcess;
}

/** Typed little-endian access to user memory: offsets for a {@link Mapping}, addresses for `sys.mem`. */
export interface MemoryAccess {
  read8(at: number | bigint): number;
  read16(at: number | bigint): number;
  read32(at: number | bigint): number;
  read64(at: number | bigint): bigint;
  write8(at: number | bigint, v: number): void;
  write16(at: number | bigint, v: number): void;
  write32(at: number | bigint, v: number): void;
  write64(at: number | bigint, v: bigint): void;
}

function fault(e: number, what: string): never {
  throw new SysError(userErrno(-e), what);
}

const scratch = new Uint8Array(8);
const scratchView = new DataView(scratch.buffer);

/**
 * The generic path: an access of `size` bytes at user address `addr` (it may cross pages), through the
 * VMA it lands in: RAM is read from the page's bytes, device memory through the MMIO router at the
 * runner's local time plus the access's cost. A bad address is a `SysError` `EFAULT` named after the
 * accessor (the process would take SIGSEGV on Linux).
 */
export function userRead(mm: Mm, runner: Runner, addr: number, size: 1 | 2 | 4 | 8, what: string): number | bigint {
  if (!(Number.isSafeInteger(addr) && addr >= 0)) fault(-14, what);
  const p = mm.accessPage(addr, false);
  if (typeof p === 'number') fault(p, what);
  const off = addr & (PAGE_SIZE - 1);
  if ('phys' in p) {
    runner.running.consume(size === 8 ? COST.mmioRead64 : COST.mmioRead);
    const a = p.phys + off;
    if (size === 8) return mm.mmio.read64(a);
    return mm.mmio.read(a, size);
  }
  if (off + size <= PAGE_SIZE) {
    for (let i = 0; i < size; i++) scratch[i] = p.bytes[off + i] as number;
  } else {
    for (let i = 0; i < size; i++) scratch[i] = userRead(mm, runner, addr + i, 1, what) as number;
  }
  return size === 1 ? scratchView.getUint8(0) : size === 2 ? scratchView.getUint16(0, true) : size === 4 ? scratchView.getUint32(0, true) : scratchView.getBigUint64(0, true);
}

/** The generic write path (see {@link userRead}). */
export function userWrite(mm: Mm, runner: Runner, addr: number, size: 1 | 2 | 4 | 8, v: number | bigint, what: string): void {
  if (!(Number.isSafeInteger(addr) && addr >= 0)) fault(-14, what);
  const p = mm.accessPage(addr, true);
  if (typeof p === 'number') fault(p, what);
  const off = addr & (PAGE_SIZE - 1);
  if ('phys' in p) {
    runner.running.consume(COST.mmioWrite);
    const a = p.phys + off;
    if (size === 8) mm.mmio.write64(a, BigInt.asUintN(64, BigInt(v)));
    else mm.mmio.write(a, size, Number(v) >>> 0);
    return;
  }
  if (size === 8) scratchView.setBigUint64(0, BigInt.asUintN(64, BigInt(v)), true);
  else if (size === 4) scratchView.setUint32(0, Number(v) >>> 0, true);
  else if (size === 2) scratchView.setUint16(0, Number(v) & 0xffff, true);
  else scratchView.setUint8(0, Number(v) & 0xff);
  if (off + size <= PAGE_SIZE) {
    for (let i = 0; i < size; i++) p.bytes[off + i] = scratch[i] as number;
  } else {
    const bytes = scratch.slice(0, size);
    for (let i = 0; i < size; i++) userWrite(mm, runner, addr + i, 1, bytes[i] as number, what);
  }
}

function toAddr(at: number | bigint): number {
  return typeof at === 'bigint' ? (at >= 0n && at <= MAX_SAFE_BIG ? Number(at) : -1) : at;
}

/** `sys.mem`: typed access at user addresses (the generic path). */
export class UserMemory implements MemoryAccess {
  readonly #mm: Mm;
  readonly #runner: Runner;
  constructor(mm: Mm, runner: Runner) {
    this.#mm = mm;
    this.#runner = runner;
  }
  read8(at: number | bigint): number {
    return userRead(this.#mm, this.#runner, toAddr(at), 1, 'read8') as number;
  }
  read16(at: number | bigint): number {
    return userRead(this.#mm, this.#runner, toAddr(at), 2, 'read16') as number;
  }
  read32(at: number | bigint): number {
    return userRead(this.#mm, this.#runner, toAddr(at), 4, 'read32') as number;
  }
  read64(at: number | bigint): bigint {
    return userRead(this.#mm, this.#runner, toAddr(at), 8, 'read64') as bigint;
  }
  write8(at: number | bigint, v: number): void {
    userWrite(this.#mm, this.#runner, toAddr(at), 1, v, 'write8');
  }
  write16(at: number | bigint, v: number): void {
    userWrite(this.#mm, this.#runner, toAddr(at), 2, v, 'write16');
  }
  write32(at: number | bigint, v: number): void {
    userWrite(this.#mm, this.#runner, toAddr(at), 4, v, 'write32');
  }
  write64(at: number | bigint, v: bigint): void {
    userWrite(this.#mm, this.#runner, toAddr(at), 8, v, 'write64');
  }
  /** Copies `len` bytes at `at` out of user memory (`EFAULT` on a bad range). */
  readBytes(at: number | bigint, len: number): Uint8Array {
    const out = new Uint8Array(len);
    const r = this.#mm.copyFromUser(toAddr(at), out);
    if (r < 0) fault(r, 'readBytes');
    return out;
  }
  /** Copies `data` into user memory at `at`. */
  writeBytes(at: number | bigint, data: Uint8Array): void {
    const r = this.#mm.copyToUser(toAddr(at), data);
    if (r < 0) fault(r, 'writeBytes');
  }
}

/**
 * What `mmap` returns: the range's address and length, typed accessors by offset from its start, and for
 * RAM-backed mappings a `Uint8Array` view of the same bytes the device's DMA reaches (faulting every page
 * in when first asked for). Device mappings (a BAR) make each access an MMIO access at the calling thread's
 * local time, advancing it by the access's cost (temporal decoupling). Offsets outside the mapping, or
 * into a part since unmapped or protected against the access, throw `SysError` `EFAULT`.
 */
export class Mapping implements MemoryAccess {
  /** The user address. */
  readonly addr: bigint;
  /** Length in bytes (a multiple of the page size). */
  readonly length: number;
  readonly #start: number;
  readonly #mm: Mm;
  readonly #runner: Runner;
  /** The layout generation the fast path was last checked at. */
  #gen: number;
  readonly #prot: number;
  readonly #read: boolean;
  readonly #write: boolean;
  /** Device memory: the physical address of offset 0, else -1. */
  readonly #phys: number;
  readonly #vma: Vma;
  /** Anonymous memory: the frame of each page (-1 until faulted), captured before any split. */
  readonly #frames: Int32Array | undefined;
  readonly #backing: VmaBacking;
  #bytes: Uint8Array | undefined;
  #view: DataView | undefined;

  constructor(mm: Mm, runner: Runner, vma: Vma) {
    this.#mm = mm;
    this.#runner = runner;
    this.#vma = vma;
    this.#start = vma.start;
    this.addr = BigInt(vma.start);
    this.length = vma.end - vma.start;
    this.#gen = mm.layoutGen;
    this.#prot = vma.prot;
    this.#read = vma.prot !== PROT.NONE;
    this.#write = (vma.prot & PROT.WRITE) !== 0;
    // A PFN mapping of RAM (a UIO PHYS map of a DMA buffer) takes the generic path, which reaches RAM.
    this.#phys = vma.backing.kind === 'io' && !mm.pages.memory.contains(vma.backing.phys, 1) ? vma.backing.phys : -1;
    const b = vma.backing;
    this.#backing = b;
    this.#frames = b.kind === 'anon' ? b.frames : undefined;
    if (b.kind === 'anon') this.#view = new DataView(b.buffer, b.bufferOffset, this.length);
  }

  /** Whether the fast path still holds for `size` bytes at `off`. */
  #fast(off: number, size: number, write: boolean): boolean {
    return off >= 0 && off + size <= this.length && Math.floor(off) === off && (write ? this.#write : this.#read) && (this.#gen === this.#mm.layoutGen || this.#revalidate());
  }

  /**
   * After the layout changed somewhere in the process (any munmap or mprotect, including the scratch areas
   * of object-form ioctls): the fast path holds again if this mapping's VMA is still the same object, whole,
   * with the same protection and backing; else every access takes the checked path.
   */
  #revalidate(): boolean {
    const v = this.#mm.find(this.#start);
    if (v !== this.#vma || v.start !== this.#start || v.end - v.start !== this.length || v.prot !== this.#prot || v.backing !== this.#backing) return false;
    this.#gen = this.#mm.layoutGen;
    return true;
  }

  /** Faults in the pages an access of `size` at `off` touches (RAM mappings). */
  #touch(off: number, size: number, write: boolean, what: string): void {
    const f = this.#frames;
    if (f !== undefined && (f[off >>> 12] as number) >= 0 && (f[(off + size - 1) >>> 12] as number) >= 0) return;
    for (const a of new Set([this.#start + off, this.#start + off + size - 1])) {
      const p = this.#mm.accessPage(a - (a & (PAGE_SIZE - 1)), write);
      if (typeof p === 'number') fault(p, what);
    }
  }

  #slowRead(off: number, size: 1 | 2 | 4 | 8, what: string): number | bigint {
    if (!(Number.isSafeInteger(off) && off >= 0 && off + size <= this.length)) fault(-14, what);
    return userRead(this.#mm, this.#runner, this.#start + off, size, what);
  }

  #slowWrite(off: number, size: 1 | 2 | 4 | 8, v: number | bigint, what: string): void {
    if (!(Number.isSafeInteger(off) && off >= 0 && off + size <= this.length)) fault(-14, what);
    userWrite(this.#mm, this.#runner, this.#start + off, size, v, what);
  }

  read32(at: number | bigint): number {
    const off = typeof at === 'number' ? at : toAddr(at);
    if (this.#fast(off, 4, false)) {
      if (this.#phys >= 0) {
        this.#runner.running.consume(COST.mmioRead);
        return this.#mm.mmio.read32(this.#phys + off);
      }
      const v = this.#view;
      if (v !== undefined) {
        this.#touch(off, 4, false, 'read32');
        return v.getUint32(off, true);
      }
    }
    return this.#slowRead(off, 4, 'read32') as number;
  }

  write32(at: number | bigint, value: number): void {
    const off = typeof at === 'number' ? at : toAddr(at);
    if (this.#fast(off, 4, true)) {
      if (this.#phys >= 0) {
        this.#runner.running.consume(COST.mmioWrite);
        this.#mm.mmio.write32(this.#phys + off, value >>> 0);
        return;
      }
      const v = this.#view;
      if (v !== undefined) {
        this.#touch(off, 4, true, 'write32');
        v.setUint32(off, value >>> 0, true);
        return;
      }
    }
    this.#slowWrite(off, 4, value, 'write32');
  }

  read8(at: number | bigint): number {
    return this.#slowRead(toAddr(at), 1, 'read8') as number;
  }
  read16(at: number | bigint): number {
    return this.#slowRead(toAddr(at), 2, 'read16') as number;
  }
  read64(at: number | bigint): bigint {
    const off = typeof at === 'number' ? at : toAddr(at);
    // The fast path takes an access within one page, as the generic path would (a split one goes there).
    if (this.#fast(off, 8, false) && (off & (PAGE_SIZE - 1)) <= PAGE_SIZE - 8) {
      if (this.#phys >= 0) {
        this.#runner.running.consume(COST.mmioRead64);
        return this.#mm.mmio.read64(this.#phys + off);
      }
      const v = this.#view;
      if (v !== undefined) {
        this.#touch(off, 8, false, 'read64');
        return v.getBigUint64(off, true);
      }
    }
    return this.#slowRead(off, 8, 'read64') as bigint;
  }
  write8(at: number | bigint, v: number): void {
    this.#slowWrite(toAddr(at), 1, v, 'write8');
  }
  write16(at: number | bigint, v: number): void {
    this.#slowWrite(toAddr(at), 2, v, 'write16');
  }
  write64(at: number | bigint, v: bigint): void {
    const off = typeof at === 'number' ? at : toAddr(at);
    if (this.#fast(off, 8, true) && (off & (PAGE_SIZE - 1)) <= PAGE_SIZE - 8) {
      if (this.#phys >= 0) {
        this.#runner.running.consume(COST.mmioWrite);
        this.#mm.mmio.write64(this.#phys + off, BigInt.asUintN(64, v));
        return;
      }
      const view = this.#view;
      if (view !== undefined) {
        this.#touch(off, 8, true, 'write64');
        view.setBigUint64(off, BigInt.asUintN(64, v), true);
        return;
      }
    }
    this.#slowWrite(off, 8, v, 'write64');
  }

  /**
   * A `Uint8Array` of the mapping's bytes for RAM-backed mappings (every page faulted in on first use);
   * `undefined` for device memory. It stays valid while the mapping exists; after `munmap` its bytes are no
   * longer the process's memory.
   */
  get bytes(): Uint8Array | undefined {
    if (this.#bytes !== undefined) return this.#bytes;
    const b: VmaBacking = this.#backing;
    if (b.kind === 'io' || b.kind === 'none') return undefined;
    for (let a = this.#start; a < this.#start + this.length; a += PAGE_SIZE) {
      const p = this.#mm.accessPage(a, false);
      if (typeof p === 'number') fault(p, 'bytes');
    }
    this.#bytes = b.kind === 'anon'
      ? new Uint8Array(b.buffer, b.bufferOffset, this.length)
      : new Uint8Array(b.obj.buffer, this.#vma.pgoff * PAGE_SIZE, Math.min(this.length, b.obj.buffer.byteLength - this.#vma.pgoff * PAGE_SIZE));
    return this.#bytes;
  }
}
