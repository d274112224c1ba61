import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import { basename, extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, createMachine, loadMachineConfig, resolveMachineConfig, type Machine, type MachineConfigInput, type ChromeTraceRecording } from '../machine/index.ts';
import { ChromeTraceWriter } from '../sim/trace-chrome.ts';
import { SCENARIOS, type ScenarioContext } from '../scenarios/registry.ts';
import { DeadlockError } from '../sim/index.ts';
import { bootKernel, type Sys } from '../kernel-shim/index.ts';
import { CliError, type CliIo } from './io.ts';

/** Options of `dmasim run`. */
export interface RunCommandOptions {
  readonly seed?: number;
  readonly trace?: string;
  readonly machine?: string;
  /** `--iommu`: the scenario runs with its IOMMU variant. */
  readonly iommu?: boolean;
  /** `--iommufd`: the scenario runs with its iommufd variant. */
  readonly iommufd?: boolean;
}

/** The registered scenarios as help lines. */
export function scenarioList(): string {
  const names = [...SCENARIOS.keys()];
  const w = Math.max(...names.map((n) => n.length));
  return [...SCENARIOS].map(([n, s]) => `  ${n.padEnd(w)}  ${s.description}`).join('\n');
}

function looksLikeModule(name: string): boolean {
  return /^\.{0,2}\//.test(name) || /\.(ts|mts|js|mjs)$/.test(name);
}

function readMachineConfig(path: string | undefined): ReturnType<typeof resolveMachineConfig> {
  if (path === undefined) return resolveMachineConfig({});
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read machine configuration ${path}: ${(e as Error).message}`);
  }
  try {
    return loadMachineConfig(text, path);
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(e.message);
    throw e;
  }
}

function openTrace(path: string | undefined): number | undefined {
  if (path === undefined) return undefined;
  try {
    return openSync(path, 'w');
  } catch (e) {
    throw new CliError(`cannot write trace ${path}: ${(e as Error).message}`);
  }
}

/** The entry point a driver module run by `dmasim run ./driver.ts` exports. */
export type DriverMain = (sys: Sys, machine: Machine) => unknown;

/** How many kernel log lines `dmasim run ./driver.ts` prints after the run. */
const DMESG_TAIL = 10;

/**
 * `dmasim run ./driver.ts`: imports the module, boots the kernel on the machine of `--machine` (default
 * config otherwise), runs its `main(sys, machine)` as a root process named after the file, and resolves to
 * the process's exit status (1 if it crashed or the run deadlocked, with the error or the blocked calls on
 * standard error).
 */
export async function runModule(path: string, options: RunCommandOptions, io: CliIo): Promise<number> {
  const file = resolve(path);
  if (!existsSync(file)) throw new CliError(`no such driver module: ${path}`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (e) {
    throw new CliError(`cannot load driver module ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const entry = mod['main'] ?? (mod['default'] as Record<string, unknown> | undefined)?.['main'];
  if (typeof entry !== 'function') throw new CliError(`driver module ${path} exports no main(sys, machine) function`);
  const driverMain = entry as DriverMain;
  const config = readMachineConfig(options.machine);
  const machine = createMachine({ ...config, seed: options.seed ?? config.seed });
  const fd = openTrace(options.trace);
  const recording = fd === undefined ? undefined : machine.recordChromeTrace((chunk) => void writeSync(fd, chunk));
  const kernel = bootKernel(machine);
  const comm = basename(file, extname(file));
  const proc = kernel.spawn({ comm, uid: 0 }, (sys) => driverMain(sys, machine));
  let status: number;
  let outcome: string | undefined;
  try {
    await machine.sim.run();
    status = proc.dead ? await proc.exited : 0;
    if (!proc.dead) {
      proc.kill();
      outcome = 'was still running when the simulation ended and was killed';
      status = 1;
    }
  } catch (e) {
    if (!proc.dead) proc.kill();
    if (e instanceof DeadlockError) {
      outcome = 'deadlocked and was killed';
      io.stderr(`dmasim: deadlock at ${e.time} ns: every process is blocked and no event is pending\n`);
      for (const b of e.blocked) io.stderr(`  ${b.name}: blocked in ${b.waitingFor}\n`);
    } else {
      io.stderr(`dmasim: ${comm}[${proc.pid}] crashed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    }
    status = 1;
  } finally {
    if (fd !== undefined && recording !== undefined) {
      recording.finish();
      closeSync(fd);
      io.stderr(`trace: ${recording.writer.eventCount} events written to ${options.trace} (open it in https://ui.perfetto.dev)\n`);
    }
  }
  const tail = kernel.log.dmesg().split('\n').filter((l) => l !== '').slice(-DMESG_TAIL);
  const what = outcome === undefined ? `exited with status ${status}` : `${outcome} (exit status ${status})`;
  io.stdout(`${comm}[${proc.pid}] ${what} at ${machine.sim.now} ns (virtual)\n`);
  if (tail.length > 0) io.stdout(`dmesg (last ${tail.length} lines):\n${tail.map((l) => `  ${l}`).join('\n')}\n`);
  return status;
}

/**
 * `dmasim run <scenario | ./driver.ts>`: runs a registered scenario, or the user's driver module (see
 * {@link runModule}), writing a Chrome trace with `--trace FILE`. Resolves to the exit status.
 */
export async function runCommand(name: string, options: RunCommandOptions, io: CliIo): Promise<number> {
  const scenario = SCENARIOS.get(name);
  if (scenario === undefined) {
    if (looksLikeModule(name)) return runModule(name, options, io);
    throw new CliError(`unknown scenario '${name}'; registered scenarios:\n${scenarioList()}`);
  }
  if (options.iommu === true && scenario.iommuVariant !== true) throw new CliError(`scenario '${name}' has no --iommu variant`);
  if (options.iommufd === true && scenario.iommufdVariant !== true) throw new CliError(`scenario '${name}' has no --iommufd variant`);
  const config = readMachineConfig(options.machine);
  const machineConfig = { ...config, seed: options.seed ?? config.seed };
  const fd = openTrace(options.trace);
  const sink = (chunk: string): void => void writeSync(fd as number, chunk);
  let recording: ChromeTraceRecording | undefined;
  const ctx: ScenarioContext = {
    seed: machineConfig.seed,
    machineConfig,
    traceFile: options.trace,
    iommu: options.iommu === true,
    iommufd: options.iommufd === true,
    createMachine(config?: MachineConfigInput): Machine {
      const m = createMachine(config ?? machineConfig);
      if (fd !== undefined && recording === undefined) recording = m.recordChromeTrace(sink);
      return m;
    },
    out: { line: (text) => io.stdout(`${text}\n`) },
  };
  try {
    await scenario.run(ctx);
  } finally {
    if (fd !== undefined) {
      let events = 0;
      if (recording !== undefined) {
        recording.finish();
        events = recording.writer.eventCount;
      } else {
        // A scenario that built no machine still leaves a valid (empty) trace.
        new ChromeTraceWriter({ sink, processName: machineConfig.name }).finish();
      }
      closeSync(fd);
      io.stderr(`trace: ${events} events written to ${options.trace} (open it in https://ui.perfetto.dev)\n`);
    }
  }
  return 0;
}
