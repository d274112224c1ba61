import cliProgress from 'cli-progress';
import type { BenchmarkDef, BenchReport } from '../bench/index.ts';
import { CliError, type CliIo } from './io.ts';

/** Options of `dmasim bench`. */
export interface BenchCommandOptions {
  readonly json?: boolean;
  readonly list?: boolean;
}

/** Report keys every benchmark has; anything else is an extra figure. */
const STANDARD = new Set(['name', 'value', 'unit', 'min', 'max', 'runs', 'target', 'meetsTarget', 'ratioTarget', 'meetsRatioTarget']);

function fmt(x: number): string {
  if (Number.isInteger(x) || Math.abs(x) >= 1000) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(3);
}

/** The target column and whether it is met, from the report's `target` or an extra `ratioTarget`. */
function targetOf(r: BenchReport): [string, string] {
  if (r.target !== undefined) return [`${fmt(r.target)} ${r.unit}`, r.meetsTarget === true ? 'yes' : 'NO'];
  if (typeof r['ratioTarget'] === 'number') {
    return [`ratio >= ${r['ratioTarget']}`, r['meetsRatioTarget'] === 'yes' ? 'yes' : 'NO'];
  }
  return ['-', '-'];
}

/** The readable table of `dmasim bench`: median, min-max, target and whether it is met, extra figures. */
export function formatBenchTable(reports: readonly BenchReport[]): string {
  const head = ['benchmark', 'median', 'min-max', 'unit', 'target', 'meets', 'extra'];
  const rows = reports.map((r) => {
    const [target, meets] = targetOf(r);
    const extra = Object.entries(r)
      .filter(([k]) => !STANDARD.has(k))
      .map(([k, v]) => `${k}=${typeof v === 'number' ? fmt(v) : String(v)}`)
      .join(' ');
    return [r.name, fmt(r.value), `${fmt(r.min)}-${fmt(r.max)}`, r.unit, target, meets, extra];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === 1 || i === 2 ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/**
 * `dmasim bench [names...]`: runs the selected benchmarks (`des` selects `des.hold` and `des.process`).
 * With `json`, one JSON object per line on stdout, exactly as the harness returns it; otherwise a table,
 * with a progress bar on stderr when it is a terminal.
 */
export async function benchCommand(selectors: readonly string[], options: BenchCommandOptions, io: CliIo): Promise<void> {
  const { BENCHMARKS, selectBenchmarks, runBenchmark } = await import('../bench/index.ts');
  const names = BENCHMARKS.map((b) => b.name);
  const unknown = selectors.filter((s) => selectBenchmarks(BENCHMARKS, [s]).length === 0);
  if (unknown.length > 0) throw new CliError(`no benchmark matches ${unknown.map((u) => `'${u}'`).join(', ')}; benchmarks:\n  ${names.join('\n  ')}`);
  const defs: BenchmarkDef[] = selectBenchmarks(BENCHMARKS, selectors);
  if (options.list === true) {
    const w = Math.max(...defs.map((d) => d.name.length));
    for (const d of defs) io.stdout(`${d.name.padEnd(w)}  ${d.description}\n`);
    return;
  }
  const bar =
    io.progressStream === undefined
      ? undefined
      : new cliProgress.SingleBar(
          { format: 'bench [{bar}] {value}/{total} {name}', stream: io.progressStream, hideCursor: true, clearOnComplete: true },
          cliProgress.Presets.shades_classic,
        );
  bar?.start(defs.length, 0, { name: defs[0]?.name ?? '' });
  const reports: BenchReport[] = [];
  try {
    for (const [i, d] of defs.entries()) {
      bar?.update(i, { name: d.name });
      const r = await runBenchmark(d);
      reports.push(r);
      if (options.json === true) io.stdout(`${JSON.stringify(r)}\n`);
    }
    bar?.update(defs.length, { name: 'done' });
  } finally {
    bar?.stop();
  }
  if (options.json !== true) io.stdout(`${formatBenchTable(reports)}\n`);
}
