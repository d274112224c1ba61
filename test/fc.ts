/**
 * fast-check settings shared by every property test, so that one command sets the tier:
 * - `FC_SEED` (default 42): the seed of every property; fast-check prints it (and the shrunk path) on failure,
 *   so `FC_SEED=<seed> npx vitest run test/<file>` replays a failure.
 * - `FC_SCALE` (default 1): multiplies each property's own run count (`npm run test:long` sets it).
 * - `FC_NUM_RUNS`: overrides every property's run count outright.
 */

/** The seed and run count for a property whose default budget is `numRuns`. */
export function fcOptions(numRuns: number): { seed: number; numRuns: number } {
  return { seed: envInt('FC_SEED', 42), numRuns: runs(numRuns) };
}

function runs(numRuns: number): number {
  const fixed = process.env['FC_NUM_RUNS'];
  if (fixed !== undefined && fixed !== '') return envInt('FC_NUM_RUNS', numRuns);
  const scale = Number(process.env['FC_SCALE'] ?? '1');
  if (!(Number.isFinite(scale) && scale > 0)) throw new Error(`FC_SCALE must be a positive number, got ${process.env['FC_SCALE']}`);
  return Math.max(1, Math.round(numRuns * scale));
}

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isSafeInteger(v)) throw new Error(`${name} must be an integer, got ${raw}`);
  return v;
}
