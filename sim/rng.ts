import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import type { JumpableRandomGenerator } from 'pure-rand/types/JumpableRandomGenerator';

/**
 * The machine's seeded generator: the only source of randomness below `scenarios/`. Hand it (or a
 * {@link Rng.fork}) to whatever needs randomness; never read `Math.random`.
 */
export class Rng {
  readonly #gen: JumpableRandomGenerator;

  /** A generator seeded with the 32-bit integer `seed`. */
  constructor(seed: number) {
    this.#gen = xoroshiro128plus(seed | 0);
  }

  /** A uniformly distributed integer in `[from, to]` inclusive. */
  int(from: number, to: number): number {
    return uniformInt(this.#gen, from, to);
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  u32(): number {
    return this.#gen.next() >>> 0;
  }

  /** An independent generator derived from this one (the parent advances by one draw). */
  fork(): Rng {
    return new Rng(this.#gen.next());
  }

  /** Shuffles `arr` in place (Fisher-Yates) and returns it. */
  shuffle<T>(arr: T[]): T[] {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      const t = arr[i] as T;
      arr[i] = arr[j] as T;
      arr[j] = t;
    }
    return arr;
  }
}
