/**
 * A simulator bug or a misuse of the simulator's own API (not of the simulated hardware or kernel).
 * Thrown loudly, with a message that names the culprit, so that it is never mistaken for guest behaviour.
 */
export class SimInvariantError extends Error {
  override name = 'SimInvariantError';
}

/** Throws a {@link SimInvariantError} with `message` unless `cond` holds. */
export function invariant(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new SimInvariantError(typeof message === 'string' ? message : message());
}
