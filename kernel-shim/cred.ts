import { CAP, type CapName } from './uapi/linux.ts';

/** Every capability (what root has by default). */
export const ALL_CAPS: readonly CapName[] = Object.keys(CAP) as CapName[];

/**
 * A task's credentials: ids and effective capabilities. Root gets every capability unless told otherwise;
 * any other uid gets none (a non-root process given `caps` holds exactly those, as with file capabilities).
 */
export class Cred {
  readonly uid: number;
  readonly gid: number;
  readonly #caps: ReadonlySet<CapName>;

  constructor(uid: number, gid: number, caps?: readonly CapName[]) {
    this.uid = uid;
    this.gid = gid;
    this.#caps = new Set(caps ?? (uid === 0 ? ALL_CAPS : []));
  }

  /** Linux `capable(CAP_x)`. */
  capable(cap: CapName): boolean {
    return this.#caps.has(cap);
  }

  /** The capabilities held, in `CAP` order. */
  get caps(): readonly CapName[] {
    return ALL_CAPS.filter((c) => this.#caps.has(c));
  }
}
