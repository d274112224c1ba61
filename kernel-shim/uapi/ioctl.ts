/**
 * ioctl request numbers as Linux encodes them (`include/uapi/asm-generic/ioctl.h`, which x86-64 uses):
 * bits [7:0] the command number, [15:8] the type byte, [29:16] the argument size, [31:30] the direction.
 * Every helper returns an unsigned 32-bit `number`, the value `sys.ioctl` takes.
 */

/** Width of each field of a request number. */
export const IOC_NRBITS = 8;
/** Width of the type byte. */
export const IOC_TYPEBITS = 8;
/** Width of the size field (asm-generic: 14 bits). */
export const IOC_SIZEBITS = 14;
/** Width of the direction field. */
export const IOC_DIRBITS = 2;

/** Bit positions of the fields. */
export const IOC_NRSHIFT = 0;
/** Position of the type byte. */
export const IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS;
/** Position of the size field. */
export const IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS;
/** Position of the direction field. */
export const IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS;

/** Directions, from user space's point of view: `_IOC_WRITE` means the kernel reads the argument. */
export const IOC_NONE = 0;
/** User space writes the argument (the kernel reads it). */
export const IOC_WRITE = 1;
/** User space reads the argument (the kernel writes it). */
export const IOC_READ = 2;

const NR_MASK = (1 << IOC_NRBITS) - 1;
const TYPE_MASK = (1 << IOC_TYPEBITS) - 1;
const SIZE_MASK = (1 << IOC_SIZEBITS) - 1;
const DIR_MASK = (1 << IOC_DIRBITS) - 1;

/** A type byte given as a one-character string (`';'`, `'b'`) or a number. */
export type IocType = string | number;

function typeByte(t: IocType): number {
  const v = typeof t === 'string' ? t.charCodeAt(0) : t;
  if (!(Number.isInteger(v) && v >= 0 && v <= TYPE_MASK)) throw new RangeError(`ioctl type must be one byte, got ${String(t)}`);
  return v;
}

/**
 * Linux `_IOC(dir, type, nr, size)`. Out-of-range fields are a programming error in a uAPI table, so they
 * throw a `RangeError` (the C macros would silently corrupt the number; the kernel's `_IOC_TYPECHECK` refuses
 * sizes that do not fit at compile time).
 */
export function _IOC(dir: number, type: IocType, nr: number, size: number): number {
  if (!(Number.isInteger(dir) && dir >= 0 && dir <= DIR_MASK)) throw new RangeError(`ioctl dir out of range: ${dir}`);
  if (!(Number.isInteger(nr) && nr >= 0 && nr <= NR_MASK)) throw new RangeError(`ioctl nr out of range: ${nr}`);
  if (!(Number.isInteger(size) && size >= 0 && size <= SIZE_MASK)) throw new RangeError(`ioctl size out of range: ${size}`);
  return ((dir << IOC_DIRSHIFT) | (typeByte(type) << IOC_TYPESHIFT) | (nr << IOC_NRSHIFT) | (size << IOC_SIZESHIFT)) >>> 0;
}

/** Linux `_IO(type, nr)`: no argument (or one passed by value), no size. */
export function _IO(type: IocType, nr: number): number {
  return _IOC(IOC_NONE, type, nr, 0);
}

/** Linux `_IOR(type, nr, T)` with `size = sizeof(T)`: the kernel writes the argument. */
export function _IOR(type: IocType, nr: number, size: number): number {
  return _IOC(IOC_READ, type, nr, size);
}

/** Linux `_IOW(type, nr, T)` with `size = sizeof(T)`: the kernel reads the argument. */
export function _IOW(type: IocType, nr: number, size: number): number {
  return _IOC(IOC_WRITE, type, nr, size);
}

/** Linux `_IOWR(type, nr, T)` with `size = sizeof(T)`: the kernel reads and writes the argument. */
export function _IOWR(type: IocType, nr: number, size: number): number {
  return _IOC(IOC_READ | IOC_WRITE, type, nr, size);
}

/** Linux `_IOC_DIR(nr)`. */
export function _IOC_DIR(req: number): number {
  return (req >>> IOC_DIRSHIFT) & DIR_MASK;
}

/** Linux `_IOC_TYPE(nr)`. */
export function _IOC_TYPE(req: number): number {
  return (req >>> IOC_TYPESHIFT) & TYPE_MASK;
}

/** Linux `_IOC_NR(nr)`. */
export function _IOC_NR(req: number): number {
  return (req >>> IOC_NRSHIFT) & NR_MASK;
}

/** Linux `_IOC_SIZE(nr)`. */
export function _IOC_SIZE(req: number): number {
  return (req >>> IOC_SIZESHIFT) & SIZE_MASK;
}
