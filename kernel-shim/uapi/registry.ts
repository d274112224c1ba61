import { DMA_BUF_IOCTLS } from './dma-buf.ts';
import { IOMMUFD_IOCTLS } from './iommufd.ts';
import type { AnyLayout, IoctlDef } from './layout.ts';
import { DMASIM_TEST_IOCTLS } from './testdev.ts';
import { UIO_IOCTLS } from './uio.ts';
import { VFIO_IOCTLS } from './vfio.ts';

/**
 * The ioctl registry: request number -> the uAPI struct its argument points to, built from every header
 * table. `sys.ioctl(fd, request, object)` finds the layout here. A header table added to dmasim joins
 * {@link IOCTL_TABLES}; the registry is constant data shared by every machine.
 */

/** Every header's ioctl table. */
export const IOCTL_TABLES: readonly (readonly IoctlDef[])[] = [VFIO_IOCTLS, IOMMUFD_IOCTLS, DMA_BUF_IOCTLS, UIO_IOCTLS, DMASIM_TEST_IOCTLS];

const BY_REQUEST: ReadonlyMap<number, readonly IoctlDef[]> = (() => {
  const m = new Map<number, IoctlDef[]>();
  for (const t of IOCTL_TABLES) {
    for (const d of t) {
      const list = m.get(d.request) ?? [];
      list.push(d);
      m.set(d.request, list);
    }
  }
  return m;
})();

/**
 * A symbol an object argument may carry to name its layout, for request numbers that mean different
 * structs on different fd types (VFIO's 0x3B70-0x3B78). See {@link withLayout}.
 */
export const UAPI_LAYOUT: unique symbol = Symbol('dmasim.uapiLayout');

/** Tags `obj` with `layout` (a non-enumerable property) and returns it. */
export function withLayout<T extends object>(layout: AnyLayout, obj: T): T {
  Object.defineProperty(obj, UAPI_LAYOUT, { value: layout, enumerable: false, configurable: true });
  return obj;
}

/** The ioctls registered under `request` (several where VFIO reuses a number across fd types). */
export function ioctlDefs(request: number): readonly IoctlDef[] {
  return BY_REQUEST.get(request >>> 0) ?? [];
}

function isLayout(v: unknown): v is AnyLayout {
  return typeof v === 'object' && v !== null && 'byName' in v && 'fields' in v && 'size' in v;
}

function score(layout: AnyLayout, keys: readonly string[]): number {
  let s = 0;
  for (const k of keys) s += layout.byName.has(k) || layout.flex?.name === k ? 1 : -1;
  return s;
}

/**
 * The layout of `request`'s struct argument, or `undefined` if it takes none dmasim knows. A layout `arg`
 * names with {@link withLayout} wins (so a driver's own ioctls can be marshalled too); where the number has
 * several structs, the one whose fields best
 * match `arg`'s own keys (ties: the first table's).
 */
export function ioctlLayout(request: number, arg?: object): AnyLayout | undefined {
  const tagged = arg === undefined ? undefined : (arg as { [UAPI_LAYOUT]?: unknown })[UAPI_LAYOUT];
  const cands = ioctlDefs(request).flatMap((d) => (d.arg === 'struct' && d.layout !== undefined ? [d.layout] : []));
  if (isLayout(tagged)) return tagged;
  if (cands.length <= 1 || arg === undefined) return cands[0];
  const keys = Object.keys(arg);
  let best = cands[0];
  let bestScore = Number.NEGATIVE_INFINITY;
  for (const c of cands) {
    const s = score(c, keys);
    if (s > bestScore) {
      best = c;
      bestScore = s;
    }
  }
  return best;
}
