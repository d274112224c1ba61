import type { BenchmarkDef } from './harness.ts';

/** Every benchmark, in the order `dmasim bench` runs them. Each module adds its own. */
export const BENCHMARKS: BenchmarkDef[] = [];

/** Registers benchmarks (called by each bench module at import). */
export function registerBenchmarks(...defs: BenchmarkDef[]): void {
  BENCHMARKS.push(...defs);
}

/** The benchmarks a selector list names: `des` selects `des.hold` and `des.process`; none selects all. */
export function selectBenchmarks(all: readonly BenchmarkDef[], selectors: readonly string[]): BenchmarkDef[] {
  if (selectors.length === 0) return [...all];
  return all.filter((b) => selectors.some((s) => b.name === s || b.name.startsWith(`${s}.`)));
}
