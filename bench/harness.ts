import { Bench, type FnReturnedObject } from 'tinybench';

/**
 * One benchmark: `prepare` builds its world and does the untimed warm-up; each `run` performs one timed
 * run and returns what it measured. The harness runs `prepare` once, then 5 timed runs, and reports the
 * median value with the min-max. Benchmarks time themselves (`performance.now()` around exactly the
 * measured work), since several must start the clock inside the simulator's own call.
 */
export interface BenchmarkDef {
  /** Dotted name, e.g. `des.hold`, `mem.copy.64k`. */
  readonly name: string;
  /** Unit of `value`, e.g. `Mevents/s`, `MB/s`. */
  readonly unit: string;
  /** One line on what it measures. */
  readonly description: string;
  /** Higher is better (rates) unless false (latencies). */
  readonly higherIsBetter?: boolean;
  /** Target from the issue, in `unit`, if any. */
  readonly target?: number;
  /** Builds the world and warms up; returns the timed-run function. */
  prepare(): TimedRun | Promise<TimedRun>;
}

/** One timed run: the measured value in the benchmark's unit, with any extra figures. */
export type TimedRun = () => RunResult | Promise<RunResult>;

/** What one timed run measured. */
export interface RunResult {
  readonly value: number;
  /** Wall-clock milliseconds of the measured work. */
  readonly ms: number;
  readonly extra?: Readonly<Record<string, number | string>>;
}

/** The report of one benchmark: one JSON line with `--json`. */
export interface BenchReport {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly min: number;
  readonly max: number;
  readonly runs: readonly number[];
  readonly target?: number;
  readonly meetsTarget?: boolean;
  readonly [extra: string]: unknown;
}

/** Timed runs per benchmark. */
export const RUNS = 5;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Runs one benchmark through tinybench (5 iterations, warm-up done by `prepare`). */
export async function runBenchmark(def: BenchmarkDef): Promise<BenchReport> {
  const timed = await def.prepare();
  const results: RunResult[] = [];
  const bench = new Bench({ iterations: RUNS, time: 0, warmup: false, throws: true });
  bench.add(
    def.name,
    async (): Promise<FnReturnedObject> => {
      const r = await timed();
      results.push(r);
      return { overriddenDuration: r.ms };
    },
    { async: true },
  );
  await bench.run();
  const values = results.map((r) => r.value);
  const value = median(values);
  const higher = def.higherIsBetter ?? true;
  // Extra figures are reported from the run whose value is the median (or nearest to it).
  const mid = results.reduce((best, r) => (Math.abs(r.value - value) < Math.abs(best.value - value) ? r : best), results[0] as RunResult);
  const report: BenchReport = {
    name: def.name,
    value: round(value),
    unit: def.unit,
    min: round(Math.min(...values)),
    max: round(Math.max(...values)),
    runs: values.map(round),
    ...(def.target === undefined ? {} : { target: def.target, meetsTarget: higher ? value >= def.target : value <= def.target }),
    ...mid.extra,
  };
  return report;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
