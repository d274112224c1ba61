import { decode, encode, type LooseStruct } from './codec.ts';
import type { AnyLayout } from './layout.ts';
import { vfio_info_cap_header } from './vfio.ts';

/**
 * VFIO capability chains (`vfio_main.c`: `vfio_info_cap_add`, `vfio_info_cap_shift`; spec section 1.3):
 * each capability starts with a `vfio_info_cap_header`, is 8-byte aligned, and its `next` is an offset
 * from the start of the whole buffer (0 ends the chain); the first sits at `sizeof(info)`.
 */

/** One capability to put in a chain: its struct (whose first field is the `header`) and value. */
export interface CapSpec {
  readonly layout: AnyLayout;
  /** The capability's fields; `header.next` is filled in. `header` must hold `id` and `version`. */
  readonly value: LooseStruct & { readonly header: { readonly id: number; readonly version: number } };
}

/** A chain built for a buffer whose caps start at `base`: the bytes to copy to `arg + base`. */
export function buildCapChain(base: number, caps: readonly CapSpec[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let off = 0;
  for (let i = 0; i < caps.length; i++) {
    const c = caps[i] as CapSpec;
    const bytes = encode(c.layout, c.value);
    const len = Math.ceil(bytes.length / 8) * 8;
    const padded = new Uint8Array(len);
    padded.set(bytes);
    const next = i + 1 < caps.length ? base + off + len : 0;
    new DataView(padded.buffer).setUint32(4, next, true);
    parts.push(padded);
    off += len;
  }
  const out = new Uint8Array(off);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A capability found in a chain: its header and where it starts (from the start of the buffer). */
export interface CapRef {
  readonly id: number;
  readonly version: number;
  readonly offset: number;
}

/**
 * Walks the chain in `buf` (the whole argument buffer, struct included) from `capOffset`. Stops at `next`
 * 0, at a header that would run past `buf`, or at a `next` that does not move forward (a loop).
 */
export function walkCapChain(buf: Uint8Array, capOffset: number): CapRef[] {
  const out: CapRef[] = [];
  let off = capOffset;
  while (off !== 0 && off + vfio_info_cap_header.size <= buf.length) {
    const h = decode(vfio_info_cap_header, buf.subarray(off, off + vfio_info_cap_header.size));
    out.push({ id: h.id, version: h.version, offset: off });
    if (h.next <= off) break;
    off = h.next;
  }
  return out;
}

/**
 * The capabilities of an info object returned through `sys.ioctl` with its `caps` tail (see `vfio.ts`):
 * each decoded by `layouts[id]` when given, else just its header; a flexible array member takes the bytes up
 * to the next capability (or the end). `info` is e.g. a `vfio_region_info` object.
 */
export function infoCaps(
  layout: AnyLayout, info: { readonly cap_offset?: number; readonly caps?: Uint8Array }, layouts: Readonly<Record<number, AnyLayout>> = {},
): { readonly id: number; readonly version: number; readonly offset: number; readonly value: Record<string, unknown> }[] {
  const caps = info.caps;
  const capOffset = info.cap_offset ?? 0;
  if (caps === undefined || capOffset < layout.size) return [];
  const buf = new Uint8Array(layout.size + caps.length);
  buf.set(caps, layout.size);
  const refs = walkCapChain(buf, capOffset);
  return refs.map((c, i) => {
    const l = layouts[c.id] ?? vfio_info_cap_header;
    // A flexible array (sparse mmap areas, IOVA ranges) runs to the next capability or the buffer's end.
    const limit = refs[i + 1]?.offset ?? buf.length;
    const end = l.flex === undefined ? Math.min(limit, c.offset + l.size) : Math.max(c.offset, limit);
    return { ...c, value: decode(l, buf.subarray(c.offset, end)) as Record<string, unknown> };
  });
}
