/**
 * Every benchmark module, imported for its registrations, in the order `dmasim bench` runs them; and the
 * harness and registry the CLI drives them through. A new `bench/*.bench.ts` is added here by name.
 */
import './des.bench.ts';
import './memory.bench.ts';
import './iommu-format.bench.ts';
import './iommu.bench.ts';
import './pci.bench.ts';
import './apex.bench.ts';
import './kernel.bench.ts';
import './dmaapi.bench.ts';
import './vfio.bench.ts';
import './iommufd.bench.ts';
import './e2e.bench.ts';

export { BENCHMARKS, selectBenchmarks } from './registry.ts';
export { runBenchmark, RUNS, type BenchmarkDef, type BenchReport, type RunResult } from './harness.ts';
