import { E } from '../errno.ts';
import type { UserCopy } from '../fs/file.ts';
import type { AnyLayout, ArrayValue, FlexField, ScalarType, StructLayout } from './layout.ts';

/** `Number.MAX_SAFE_INTEGER` as a bigint, made once (address checks run on every access). */
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Encoding and decoding of uAPI structs by their layouts (little-endian, x86-64), and the copy helpers kernel
 * drivers use to read an ioctl argument with Linux's size rules (spec/linux-uapi.md section 0):
 * {@link copyArgszFromUser} (VFIO `argsz`), {@link copyStructFromUser} (iommufd `size`,
 * `copy_struct_from_user`), {@link copyStructToUser} (write back only what fits).
 *
 * Encoding is C assignment: a value is truncated to the field's width (`-1` in a `u32` is `0xffffffff`),
 * a missing field is zero, and anything that is not a number or bigint encodes as zero, so an object from
 * user code can never make the codec throw.
 */

/** A loose object as user code passes it: any field may be missing or of the wrong type. */
export type LooseStruct = Readonly<Record<string, unknown>>;

type TypedArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | BigUint64Array | BigInt64Array;

const TYPED: { readonly [K in ScalarType]: { new (n: number): TypedArray; readonly BYTES_PER_ELEMENT: number } } = {
  u8: Uint8Array, s8: Int8Array, u16: Uint16Array, s16: Int16Array, u32: Uint32Array, s32: Int32Array,
  u64: BigUint64Array, s64: BigInt64Array,
};

const BITS: { readonly [K in ScalarType]: number } = { u8: 8, s8: 8, u16: 16, s16: 16, u32: 32, s32: 32, u64: 64, s64: 64 };

/** The value as an unsigned bigint of `bits` (C truncation); non-numeric values are 0. */
function toBits(v: unknown, bits: number): bigint {
  if (typeof v === 'bigint') return BigInt.asUintN(bits, v);
  if (typeof v === 'number' && Number.isFinite(v)) return BigInt.asUintN(bits, BigInt(Math.trunc(v)));
  if (typeof v === 'boolean') return v ? 1n : 0n;
  return 0n;
}

function putScalar(dv: DataView, off: number, t: ScalarType, v: unknown): void {
  const bits = BITS[t];
  if (bits === 64) {
    dv.setBigUint64(off, toBits(v, 64), true);
    return;
  }
  const n = typeof v === 'number' && Number.isSafeInteger(v) ? v : Number(toBits(v, bits));
  if (bits === 8) dv.setUint8(off, n & 0xff);
  else if (bits === 16) dv.setUint16(off, n & 0xffff, true);
  else dv.setUint32(off, n >>> 0, true);
}

function getScalar(dv: DataView, off: number, t: ScalarType): number | bigint {
  switch (t) {
    case 'u8': return dv.getUint8(off);
    case 's8': return dv.getInt8(off);
    case 'u16': return dv.getUint16(off, true);
    case 's16': return dv.getInt16(off, true);
    case 'u32': return dv.getUint32(off, true);
    case 's32': return dv.getInt32(off, true);
    case 'u64': return dv.getBigUint64(off, true);
    case 's64': return dv.getBigInt64(off, true);
  }
}

function isArrayLike(v: unknown): v is ArrayLike<unknown> {
  return Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));
}

/**
 * A typed array of another kind than the field's (an `Int32Array` of eventfds for `vfio_irq_set`'s
 * `__u8 data[]`, a `Uint8Array` for a `__u32` array) stands for raw memory: its bytes, as a C cast would
 * see them. Returns that byte view, or `undefined` when `v` is to be taken element by element.
 */
function rawBytes(type: ScalarType | AnyLayout, v: unknown): Uint8Array | undefined {
  if (typeof type !== 'string' || !ArrayBuffer.isView(v) || v instanceof TYPED[type]) return undefined;
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function elemSize(type: ScalarType | AnyLayout): number {
  return typeof type === 'string' ? TYPED[type].BYTES_PER_ELEMENT : type.size;
}

/** Encodes `count` elements of `type` from `v` (an array, a typed array of the type, or raw bytes). */
function putArray(dv: DataView, off: number, type: ScalarType | AnyLayout, count: number, v: unknown): void {
  const raw = rawBytes(type, v);
  if (raw !== undefined) {
    const n = Math.min(count * elemSize(type), raw.length);
    for (let i = 0; i < n; i++) dv.setUint8(off + i, raw[i] as number);
    return;
  }
  if (!isArrayLike(v)) return;
  const size = elemSize(type);
  const n = Math.min(count, v.length);
  for (let i = 0; i < n; i++) putElem(dv, off + i * size, type, v[i]);
}

function putElem(dv: DataView, off: number, type: ScalarType | AnyLayout, v: unknown): void {
  if (typeof type === 'string') putScalar(dv, off, type, v);
  else if (typeof v === 'object' && v !== null) encodeAt(type, v as LooseStruct, dv, off);
}

function encodeAt(layout: AnyLayout, obj: LooseStruct, dv: DataView, base: number): void {
  for (const f of layout.fields) {
    const v = obj[f.name];
    if (f.count === undefined) putElem(dv, base + f.offset, f.type, v);
    else putArray(dv, base + f.offset, f.type, f.count, v);
  }
}

/** Elements in the object's flexible array (0 if it has none or it is not an array). */
export function flexCount(layout: AnyLayout, obj: LooseStruct): number {
  const fx = layout.flex;
  if (fx === undefined) return 0;
  const v = obj[fx.name];
  const raw = rawBytes(fx.type, v);
  if (raw !== undefined) return Math.floor(raw.length / fx.elemSize);
  return isArrayLike(v) ? v.length : 0;
}

/** Bytes `obj` encodes to: `sizeof`, or the flexible array's end if that is further. */
export function encodedLength(layout: AnyLayout, obj: LooseStruct): number {
  const fx = layout.flex;
  if (fx === undefined) return layout.size;
  return Math.max(layout.size, fx.offset + flexCount(layout, obj) * fx.elemSize);
}

/**
 * Encodes `obj` into `dst` at `offset` (the fixed part and, if present, the flexible array). Bytes not
 * covered by a field are left as they are, so a zeroed `dst` gives C's zeroed padding. Elements that would
 * run past `dst` are dropped.
 */
export function encodeInto(layout: AnyLayout, obj: LooseStruct, dst: Uint8Array, offset = 0): void {
  const need = encodedLength(layout, obj);
  const room = dst.length - offset;
  if (room >= need) {
    const dv = new DataView(dst.buffer, dst.byteOffset + offset, need);
    encodeAt(layout, obj, dv, 0);
    const fx = layout.flex;
    if (fx !== undefined) putArray(dv, fx.offset, fx.type, flexCount(layout, obj), obj[fx.name]);
    return;
  }
  // A short destination: encode into a full-size scratch and keep the prefix.
  const tmp = encode(layout, obj);
  dst.set(tmp.subarray(0, Math.max(0, room)), offset);
}

/** Encodes `obj` into a new zeroed buffer of `max(length, encodedLength)` bytes. */
export function encode(layout: AnyLayout, obj: LooseStruct, length = 0): Uint8Array {
  const out = new Uint8Array(Math.max(length, encodedLength(layout, obj)));
  const dv = new DataView(out.buffer);
  encodeAt(layout, obj, dv, 0);
  const fx = layout.flex;
  if (fx !== undefined) putArray(dv, fx.offset, fx.type, flexCount(layout, obj), obj[fx.name]);
  return out;
}

function getElem(dv: DataView, off: number, type: ScalarType | AnyLayout, into: unknown): unknown {
  if (typeof type === 'string') return getScalar(dv, off, type);
  const target = typeof into === 'object' && into !== null && !isArrayLike(into) ? (into as Record<string, unknown>) : {};
  return decodeAt(type, dv, off, target);
}

/** Decodes `count` elements; a typed array (or array) of the right kind and length in `into` is refilled in place. */
function getArray(dv: DataView, off: number, type: ScalarType | AnyLayout, count: number, into: unknown): unknown {
  if (typeof type === 'string') {
    const C = TYPED[type];
    const arr = into instanceof C && into.length === count ? into : new C(count);
    const size = C.BYTES_PER_ELEMENT;
    for (let i = 0; i < count; i++) (arr as unknown as { [i: number]: unknown })[i] = getScalar(dv, off + i * size, type);
    return arr;
  }
  const prev = Array.isArray(into) && into.length === count ? (into as unknown[]) : undefined;
  const arr: unknown[] = prev ?? [];
  for (let i = 0; i < count; i++) arr[i] = getElem(dv, off + i * type.size, type, prev?.[i]);
  return arr;
}

function decodeAt(layout: AnyLayout, dv: DataView, base: number, into: Record<string, unknown>): Record<string, unknown> {
  for (const f of layout.fields) {
    if (base + f.offset + f.size > dv.byteLength) continue;
    into[f.name] = f.count === undefined
      ? getElem(dv, base + f.offset, f.type, into[f.name])
      : getArray(dv, base + f.offset, f.type, f.count, into[f.name]);
  }
  return into;
}

function decodeFlex(fx: FlexField, dv: DataView, into: Record<string, unknown>): void {
  const prev = into[fx.name];
  const avail = Math.max(0, Math.floor((dv.byteLength - fx.offset) / fx.elemSize));
  const raw = rawBytes(fx.type, prev);
  if (raw !== undefined) {
    // Raw memory given by the caller gets the kernel's bytes back in place.
    const n = Math.min(Math.floor(raw.length / fx.elemSize), avail) * fx.elemSize;
    for (let i = 0; i < n; i++) raw[i] = dv.getUint8(fx.offset + i);
  } else if (isArrayLike(prev)) {
    // The caller's array keeps its length: the kernel's write-back lands in the elements it passed.
    into[fx.name] = getArray(dv, fx.offset, fx.type, Math.min(prev.length, avail), prev.length <= avail ? prev : undefined);
  } else if (avail > 0) {
    into[fx.name] = getArray(dv, fx.offset, fx.type, avail, undefined);
  }
}

/**
 * Decodes `bytes` by `layout` into `into` (updated in place and returned) or a new object. Fields that lie
 * past the end of `bytes` keep their value in `into`. Fixed arrays of scalars decode to typed arrays (refilled
 * in place when `into` has one of the same kind and length); the flexible array decodes into the caller's
 * typed array if it has one, else into a new one covering the bytes past the fixed part.
 */
export function decode<T>(layout: StructLayout<T>, bytes: Uint8Array, into?: object): T {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const target = (into ?? {}) as Record<string, unknown>;
  decodeAt(layout, dv, 0, target);
  if (layout.flex !== undefined) decodeFlex(layout.flex, dv, target);
  return target as T;
}

/** Decodes `count` elements of `type` from `bytes` at `offset` (a typed array, or an array of structs). */
export function decodeArray<T extends ScalarType | AnyLayout>(type: T, bytes: Uint8Array, count: number, offset = 0): ArrayValue<T> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  return getArray(dv, offset, type, count, undefined) as ArrayValue<T>;
}

// --- user copies --------------------------------------------------------------------------------------

/** The `number` address of a user pointer, or -1 (which every copy rejects with `EFAULT`). */
export function userAddr(arg: bigint | number): number {
  if (typeof arg === 'number') return Number.isSafeInteger(arg) && arg >= 0 ? arg : -1;
  return arg >= 0n && arg <= MAX_SAFE_BIG ? Number(arg) : -1;
}

function at(addr: number, off: number): number {
  return addr < 0 ? -1 : addr + off;
}

/** Linux `get_user(u32)`: the u32 at `arg`, or `-EFAULT` (as a negative number: check with `< 0`). */
export function getUserU32(mm: UserCopy, arg: bigint | number): { value: number } | number {
  const b = new Uint8Array(4);
  const r = mm.copyFromUser(userAddr(arg), b);
  if (r < 0) return r;
  return { value: new DataView(b.buffer).getUint32(0, true) };
}

/** A struct copied in, and the size user space declared for it (`argsz` or `size`). */
export interface CopiedStruct<T> {
  readonly value: T;
  /** `argsz` / `size` as user space gave it. */
  readonly usize: number;
}

/**
 * The VFIO pattern (`vfio_pci_ioctl_get_info` and its kind): `copy_from_user(&info, arg, minsz)`, then
 * `argsz < minsz` gives `-EINVAL`. Fields past `minsz` are zero in the returned value, as in the kernel's
 * copy. Order of errors: `EFAULT` (the copy) before `EINVAL`. Flag checks are the driver's next step.
 *
 * @example
 * // A driver's ioctl handler (FileOperations.ioctl gets the user address as a bigint):
 * ioctl(file, cur, request, arg) {
 *   if (request !== VFIO.DEVICE_GET_IRQ_INFO) return E.ENOTTY;
 *   const c = copyArgszFromUser(cur.mm, arg, vfio_irq_info);
 *   if (typeof c === 'number') return c;                 // -EFAULT or -EINVAL
 *   const info = c.value;                                // typed: { argsz: number, flags: number, ... }
 *   if (info.index >= VFIO_PCI_IRQ.NUM_IRQS) return E.EINVAL;
 *   info.flags = VFIO_IRQ_INFO.EVENTFD;
 *   info.count = 1;
 *   return copyStructToUser(cur.mm, arg, vfio_irq_info, info, c.usize);
 * }
 */
export function copyArgszFromUser<T>(mm: UserCopy, arg: bigint | number, layout: StructLayout<T>): CopiedStruct<T> | number {
  const buf = new Uint8Array(layout.size);
  const r = mm.copyFromUser(userAddr(arg), buf.subarray(0, layout.minsz));
  if (r < 0) return r;
  const usize = new DataView(buf.buffer).getUint32(0, true);
  if (usize < layout.minsz) return E.EINVAL;
  return { value: decode(layout, buf), usize };
}

/**
 * Linux `check_zeroed_user`: whether `len` bytes at `addr` are all zero (1), not (0), or `-EFAULT`. Reads a
 * page at a time so a huge declared size costs no huge allocation.
 */
export function checkZeroedUser(mm: UserCopy, addr: number, len: number): number {
  const chunk = new Uint8Array(Math.min(len, 4096));
  for (let done = 0; done < len;) {
    const n = Math.min(chunk.length, len - done);
    const view = chunk.subarray(0, n);
    const r = mm.copyFromUser(at(addr, done), view);
    if (r < 0) return r;
    for (const b of view) if (b !== 0) return 0;
    done += n;
  }
  return 1;
}

/**
 * The iommufd pattern (`iommufd_fops_ioctl` + `copy_struct_from_user`): reads the `u32 size` first
 * (`-EFAULT`, so a NULL argument is `EFAULT`), `size < min_size` gives `-EINVAL`, a user struct larger than
 * the kernel's must be zero past `sizeof` (`-E2BIG`; `-EFAULT` if that tail is unreadable), a smaller one is
 * zero-extended. Unknown flags and nonzero `__reserved` (`EOPNOTSUPP`) are the driver's next step.
 */
export function copyStructFromUser<T>(mm: UserCopy, arg: bigint | number, layout: StructLayout<T>): CopiedStruct<T> | number {
  const addr = userAddr(arg);
  const sz = getUserU32(mm, addr);
  if (typeof sz === 'number') return sz;
  const usize = sz.value;
  if (usize < layout.minsz) return E.EINVAL;
  const ksize = layout.size;
  if (usize > ksize) {
    const z = checkZeroedUser(mm, at(addr, ksize), usize - ksize);
    if (z < 0) return z;
    if (z === 0) return E.E2BIG;
  }
  const buf = new Uint8Array(ksize);
  const r = mm.copyFromUser(addr, buf.subarray(0, Math.min(usize, ksize)));
  if (r < 0) return r;
  return { value: decode(layout, buf), usize };
}

/**
 * Writes `value` back: only `min(usize, sizeof)` bytes (VFIO's `copy_to_user(arg, &info, min(argsz,
 * sizeof))`, iommufd's `iommufd_ucmd_respond`). 0 or `-EFAULT`.
 */
export function copyStructToUser<T>(mm: UserCopy, arg: bigint | number, layout: StructLayout<T>, value: T, usize: number): number {
  const bytes = encode(layout, value as LooseStruct);
  return mm.copyToUser(userAddr(arg), bytes.subarray(0, Math.max(0, Math.min(usize, layout.size))));
}

/** Reads `count` elements of `type` at `arg + offset` (a flexible array): the typed array / structs, or `-EFAULT`. */
export function copyArrayFromUser<T extends ScalarType | AnyLayout>(
  mm: UserCopy, arg: bigint | number, offset: number, type: T, count: number,
): ArrayValue<T> | number {
  const t: ScalarType | AnyLayout = type;
  const size = typeof t === 'string' ? TYPED[t].BYTES_PER_ELEMENT : t.size;
  const buf = new Uint8Array(size * count);
  const r = mm.copyFromUser(at(userAddr(arg), offset), buf);
  if (r < 0) return r;
  return decodeArray(type, buf, count);
}

/** Writes raw `bytes` at `arg + offset` (a capability chain, a flexible array): 0 or `-EFAULT`. */
export function copyBytesToUser(mm: UserCopy, arg: bigint | number, offset: number, bytes: Uint8Array): number {
  return mm.copyToUser(at(userAddr(arg), offset), bytes);
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

/**
 * Linux `strndup_user(arg, n)`: the NUL-terminated string at `arg`, at most `n` bytes including the NUL.
 * `-EFAULT` if a byte before the NUL is unreadable; `-EINVAL` if there is no NUL within `n` bytes (as
 * `GROUP_GET_DEVICE_FD` with `PAGE_SIZE` and `DMA_BUF_SET_NAME` with 32 see it). The bytes are decoded as
 * UTF-8, invalid sequences replaced.
 */
export function strndupUser(mm: UserCopy, arg: bigint | number, n: number): string | number {
  const b = strndupUserBytes(mm, arg, n);
  return typeof b === 'number' ? b : utf8.decode(b);
}

/** {@link strndupUser} without the UTF-8 decoding: the bytes before the NUL. */
export function strndupUserBytes(mm: UserCopy, arg: bigint | number, n: number): Uint8Array | number {
  const addr = userAddr(arg);
  if (addr < 0) return E.EFAULT;
  const out: number[] = [];
  let a = addr;
  while (out.length < n) {
    const chunk = new Uint8Array(Math.min(n - out.length, 4096 - (a % 4096)));
    const r = mm.copyFromUser(a, chunk);
    if (r < 0) return r;
    const z = chunk.indexOf(0);
    if (z >= 0) {
      for (let i = 0; i < z; i++) out.push(chunk[i] as number);
      return new Uint8Array(out);
    }
    for (const b of chunk) out.push(b);
    a += chunk.length;
  }
  return E.EINVAL;
}
