/**
 * uAPI struct layouts as data: each C struct is a {@link StructLayout} built once by {@link struct} from its
 * fields in declaration order, with offsets, padding and `sizeof` computed by the x86-64 C rules (every
 * scalar aligned to its size, `__aligned_u64` included). The codec (`codec.ts`) encodes and decodes by it;
 * the uAPI tables (`vfio.ts`, `iommufd.ts`, ...) declare one per Linux struct.
 */

/** A scalar field type: Linux's `__u8` ... `__s64`. 64-bit fields are `bigint` in objects. */
export type ScalarType = 'u8' | 'u16' | 'u32' | 'u64' | 's8' | 's16' | 's32' | 's64';

/** Bytes of each scalar type (also its alignment on x86-64). */
export const SCALAR_SIZE: { readonly [K in ScalarType]: number } = {
  u8: 1, s8: 1, u16: 2, s16: 2, u32: 4, s32: 4, u64: 8, s64: 8,
};

/** How a struct says how big the caller's buffer is. */
export type SizeConvention =
  /** VFIO: `u32 argsz` first; the kernel copies `minsz` and writes back `min(argsz, sizeof)`. */
  | 'argsz'
  /** iommufd: `u32 size` first; `copy_struct_from_user` (zero-extend, `E2BIG` for a nonzero tail). */
  | 'size'
  /** The size is the one the request number encodes or the driver knows. */
  | 'fixed';

/** A field declaration: `[name, type]`, or `[name, type, count]` for a fixed-size array. */
export type FieldDef = readonly [name: string, type: ScalarType | AnyLayout, count?: number];

/** A laid-out field. */
export interface Field {
  readonly name: string;
  /** Byte offset from the start of the struct. */
  readonly offset: number;
  readonly type: ScalarType | AnyLayout;
  /** Element count for a fixed-size array; `undefined` for a single value. */
  readonly count: number | undefined;
  /** Bytes the field occupies (`count * element size`). */
  readonly size: number;
}

/** The trailing flexible array member (`__u8 data[]`) of a struct. */
export interface FlexField {
  readonly name: string;
  /** Where the first element sits (the end of the fixed part, aligned to the element). */
  readonly offset: number;
  readonly type: ScalarType | AnyLayout;
  /** Bytes per element. */
  readonly elemSize: number;
}

/**
 * A struct layout. `T` is the decoded object's type (phantom: only the type checker sees it).
 */
export interface StructLayout<T = Record<string, unknown>> {
  /** The C name, e.g. `vfio_region_info`. */
  readonly name: string;
  /** `sizeof(struct)`, tail padding included. */
  readonly size: number;
  /** Alignment of the struct. */
  readonly align: number;
  readonly fields: readonly Field[];
  /** Fields by name. */
  readonly byName: ReadonlyMap<string, Field>;
  /** The smallest size the kernel accepts: VFIO `minsz` / iommufd `min_size` (`offsetofend` of a field). */
  readonly minsz: number;
  readonly convention: SizeConvention;
  readonly flex: FlexField | undefined;
  /** Phantom member carrying `T`; never present at run time. */
  readonly __value?: T;
}

/** A layout of any value type. */
// oxlint-disable-next-line typescript/no-explicit-any -- variance escape for nested layouts of any shape
export type AnyLayout = StructLayout<any>;

/** The value type a layout decodes to. */
export type ValueOf<L> = L extends StructLayout<infer T> ? T : never;

type TypedArrayOf<T extends ScalarType> =
  T extends 'u8' ? Uint8Array : T extends 's8' ? Int8Array : T extends 'u16' ? Uint16Array : T extends 's16' ? Int16Array
    : T extends 'u32' ? Uint32Array : T extends 's32' ? Int32Array : T extends 'u64' ? BigUint64Array : BigInt64Array;

type ScalarValue<T extends ScalarType> = T extends 'u64' | 's64' ? bigint : number;

/** The value of a scalar or struct element. */
export type ElemValue<T> = T extends ScalarType ? ScalarValue<T> : T extends StructLayout<infer V> ? V : never;

/** The value of an array of `T`: a typed array of scalars, or an array of decoded structs. */
export type ArrayValue<T> = T extends ScalarType ? TypedArrayOf<T> : T extends StructLayout<infer V> ? V[] : never;

type FieldValue<D> = D extends readonly [string, infer T, number] ? ArrayValue<T> : D extends readonly [string, infer T] ? ElemValue<T> : never;

/** The object type of a field list. */
export type StructValue<F extends readonly FieldDef[]> = { -readonly [D in F[number] as D[0]]: FieldValue<D> };

/** Options of {@link struct}. */
export interface StructOptions<FN extends string = string, FT extends ScalarType | AnyLayout = ScalarType | AnyLayout> {
  /** The size convention; default `'argsz'` if the first field is `argsz`, `'size'` if it is a `u32 size`, else `'fixed'`. */
  readonly convention?: SizeConvention;
  /** The last mandatory field (`minsz = offsetofend(struct, field)`); default: the whole struct. */
  readonly minEnd?: string;
  /** The trailing flexible array member. */
  readonly flex?: readonly [name: FN, type: FT];
  /** Expected `sizeof`, checked at definition (the size the spec or the C compiler records). */
  readonly expectSize?: number;
}

function elemInfo(t: ScalarType | AnyLayout): { size: number; align: number } {
  return typeof t === 'string' ? { size: SCALAR_SIZE[t], align: SCALAR_SIZE[t] } : { size: t.size, align: t.align };
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/**
 * Lays out a C struct from its fields in order. A definition that contradicts `expectSize`, names a field
 * twice or names an unknown `minEnd` is a bug in a uAPI table and throws a `RangeError` at module load.
 *
 * @example
 * const VFIO_IRQ_INFO = struct('vfio_irq_info', [['argsz', 'u32'], ['flags', 'u32'], ['index', 'u32'], ['count', 'u32']]);
 */
export function struct<const F extends readonly FieldDef[], const FN extends string = never, const FT extends ScalarType | AnyLayout = 'u8'>(
  name: string, defs: F, opts: StructOptions<FN, FT> = {},
): StructLayout<StructValue<F> & { [K in FN]?: ArrayValue<FT> }> {
  const fields: Field[] = [];
  const byName = new Map<string, Field>();
  let off = 0;
  let align = 1;
  for (const [fname, type, count] of defs) {
    if (byName.has(fname)) throw new RangeError(`struct ${name}: field ${fname} declared twice`);
    if (count !== undefined && !(Number.isInteger(count) && count > 0)) throw new RangeError(`struct ${name}: ${fname}[${count}]`);
    const e = elemInfo(type);
    off = alignUp(off, e.align);
    const f: Field = { name: fname, offset: off, type, count, size: e.size * (count ?? 1) };
    fields.push(f);
    byName.set(fname, f);
    off += f.size;
    align = Math.max(align, e.align);
  }
  let flex: FlexField | undefined;
  if (opts.flex !== undefined) {
    const [fname, type] = opts.flex;
    const e = elemInfo(type);
    flex = { name: fname, offset: alignUp(off, e.align), type, elemSize: e.size };
    align = Math.max(align, e.align);
  }
  const size = alignUp(off, align);
  if (opts.expectSize !== undefined && opts.expectSize !== size) throw new RangeError(`struct ${name}: sizeof ${size}, expected ${opts.expectSize}`);
  let minsz = size;
  if (opts.minEnd !== undefined) {
    const f = byName.get(opts.minEnd);
    if (f === undefined) throw new RangeError(`struct ${name}: minEnd ${opts.minEnd} is not a field`);
    minsz = f.offset + f.size;
  }
  const first = fields[0];
  const convention = opts.convention
    ?? (first?.name === 'argsz' ? 'argsz' : first?.name === 'size' && first.type === 'u32' ? 'size' : 'fixed');
  return { name, size, align, fields, byName, minsz, convention, flex };
}

/** Linux `offsetofend(struct, field)`. */
export function offsetofend(layout: AnyLayout, field: string): number {
  const f = layout.byName.get(field);
  if (f === undefined) throw new RangeError(`struct ${layout.name} has no field ${field}`);
  return f.offset + f.size;
}

/** Linux `offsetof(struct, field)` (the flexible array member included). */
export function offsetof(layout: AnyLayout, field: string): number {
  if (layout.flex?.name === field) return layout.flex.offset;
  const f = layout.byName.get(field);
  if (f === undefined) throw new RangeError(`struct ${layout.name} has no field ${field}`);
  return f.offset;
}

/** `sizeof(struct)`. */
export function sizeof(layout: AnyLayout): number {
  return layout.size;
}

/** How an ioctl's `unsigned long` argument is used. */
export type IoctlArg =
  /** Ignored. */
  | 'none'
  /** A value (`CHECK_EXTENSION`, `SET_IOMMU`). */
  | 'value'
  /** A pointer to a struct with the given layout. */
  | 'struct'
  /** A pointer to something without a struct layout (`int32 *`, `char *`); pass a typed array. */
  | 'pointer';

/** One ioctl of a uAPI header: its Linux name, request number and argument. */
export interface IoctlDef {
  /** Linux's macro name, e.g. `VFIO_DEVICE_GET_REGION_INFO`. */
  readonly name: string;
  readonly request: number;
  readonly arg: IoctlArg;
  /** The struct of a `'struct'` argument. */
  readonly layout?: AnyLayout;
  /** The fd type it belongs to where numbers repeat across fd types (VFIO): `container`, `group`, `device`... */
  readonly fd?: string;
}
