import { E } from '../errno.ts';
import { Mapping } from '../mm/mapping.ts';
import type { Mm } from '../mm/mm.ts';
import type { Vma } from '../mm/vma.ts';
import { decode, encode, encodedLength, type LooseStruct } from '../uapi/codec.ts';
import type { AnyLayout } from '../uapi/layout.ts';
import { MAP, PAGE_SIZE, PROT } from '../uapi/linux.ts';
import { ioctlLayout } from '../uapi/registry.ts';
import type { Current } from './current.ts';

/**
 * The largest buffer an object's own `argsz`/`size` may make the scratch area: a claim beyond it (a
 * program passing `argsz: 0xffffffff`) stands for a buffer holding only the object, followed by unmapped
 * memory, so a kernel reading that far gets `EFAULT` as it would in C.
 */
export const MAX_SCRATCH = 64 << 10;

/** Bytes of process memory an object argument stands for: its encoding, or its declared size if larger. */
export function scratchLength(layout: AnyLayout, arg: LooseStruct, encodedLen: number): number {
  if (layout.convention === 'fixed') return encodedLen;
  const first = layout.fields[0];
  const declared = first === undefined ? 0 : arg[first.name];
  const n = typeof declared === 'number' ? declared >>> 0 : typeof declared === 'bigint' ? Number(BigInt.asUintN(32, declared)) : 0;
  return n > encodedLen && n <= MAX_SCRATCH ? n : encodedLen;
}

/**
 * A scratch buffer in the process: an anonymous private mapping of the pages the buffer needs plus one
 * `PROT_NONE` guard page, with the buffer ending exactly at the guard (so a read one byte past it is
 * `EFAULT`). Freed after the call: every VMA still backed by its memory, so whatever user code put over
 * part of it meanwhile (another thread's `munmap` or `MAP_FIXED`) is left alone. Exit's teardown frees it
 * if the task dies during the call.
 */
class Scratch {
  readonly addr: number;
  readonly #mm: Mm;
  /** The anonymous memory behind the scratch VMAs: what identifies them (and any piece split off them). */
  readonly #buffer: ArrayBuffer | undefined;

  private constructor(mm: Mm, addr: number, buffer: ArrayBuffer | undefined) {
    this.#mm = mm;
    this.addr = addr;
    this.#buffer = buffer;
  }

  static alloc(mm: Mm, cur: Current, len: number): Scratch | number {
    const pages = Math.max(1, Math.ceil(len / PAGE_SIZE));
    const total = (pages + 1) * PAGE_SIZE;
    const base = mm.mmap(
      { addr: 0, length: total, prot: PROT.READ | PROT.WRITE, flags: MAP.PRIVATE | MAP.ANONYMOUS, file: undefined, pgoff: 0 },
      cur.cred, undefined,
    );
    if (base < 0) return base;
    const guard = base + pages * PAGE_SIZE;
    const p = mm.protect(guard, PAGE_SIZE, PROT.NONE);
    const b = mm.find(base)?.backing;
    const s = new Scratch(mm, guard - len, b?.kind === 'anon' ? b.buffer : undefined);
    if (p < 0) {
      s.free();
      return p;
    }
    return s;
  }

  free(): void {
    const mine = this.#mm.vmas.filter((v: Vma) => v.backing.kind === 'anon' && v.backing.buffer === this.#buffer);
    for (const v of mine) this.#mm.unmap(v.start, v.end - v.start);
  }
}

function isTypedArray(v: object): v is ArrayBufferView {
  return ArrayBuffer.isView(v);
}

const utf8 = new TextEncoder();

/** Decodes the write-back into `arg`; an object that refuses the assignment (frozen, getters) keeps its values. */
function writeBack(layout: AnyLayout, bytes: Uint8Array, arg: object): void {
  try {
    decode(layout, bytes, arg);
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
  }
}

/**
 * Marshals an object argument of `sys.ioctl` (DESIGN.md): encodes it into scratch memory of the process by
 * the request's uAPI layout (`ioctlLayout`; the object's own `argsz`/`size` sets the buffer size), calls the
 * handler with the address, and decodes the write-back into the same object (whatever the handler returned:
 * Linux handlers write back on some failures, e.g. `IOVA_RANGES` with `EMSGSIZE`). A typed array or
 * `DataView` is passed as a raw buffer (`int32 *`) and refilled in place; a string (from untyped callers) as
 * a NUL-terminated `char *`; a {@link Mapping} by its address. A request with no known layout cannot take
 * any other object: `ENOTTY`.
 */
export async function marshalIoctl(
  mm: Mm, cur: Current, request: number, arg: object, call: (addr: bigint) => Promise<number>,
): Promise<number> {
  let bytes: Uint8Array;
  let layout: AnyLayout | undefined;
  const a: unknown = arg;
  if (a instanceof Mapping) return call(a.addr);
  if (typeof a === 'string') {
    const s = utf8.encode(a);
    bytes = new Uint8Array(s.length + 1);
    bytes.set(s);
  } else if (isTypedArray(arg)) {
    bytes = new Uint8Array(arg.byteLength);
    bytes.set(new Uint8Array(arg.buffer, arg.byteOffset, arg.byteLength));
  } else {
    layout = ioctlLayout(request, arg);
    if (layout === undefined) return E.ENOTTY;
    const obj = arg as LooseStruct;
    bytes = encode(layout, obj, scratchLength(layout, obj, encodedLength(layout, obj)));
  }
  const s = Scratch.alloc(mm, cur, bytes.length);
  if (typeof s === 'number') return s;
  try {
    if (mm.copyToUser(s.addr, bytes) < 0) return E.EFAULT;
    const r = await call(BigInt(s.addr));
    // A scratch area that user code unmapped meanwhile has nothing to give back.
    if (mm.copyFromUser(s.addr, bytes) === 0) {
      if (layout !== undefined) writeBack(layout, bytes, arg);
      else if (isTypedArray(arg)) new Uint8Array(arg.buffer, arg.byteOffset, arg.byteLength).set(bytes);
    }
    return r;
  } finally {
    s.free();
  }
}
