import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { ConfigError, createMachine, loadMachineConfig, resolveMachineConfig, type Machine, type MachineConfigInput, type ChromeTraceRecording } from '../machine/index.ts';
import { ChromeTraceWriter } from '../sim/trace-chrome.ts';
import { SCENARIOS, type ScenarioContext } from '../scenarios/registry.ts';
import { CliError, type CliIo } from './io.ts';

/** Options of `dmasim run`. */
export interface RunCommandOptions {
  readonly seed?: number;
  readonly trace?: string;
  readonly machine?: string;
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

/** `dmasim run <scenario>`: runs a registered scenario, writing its Chrome trace with `--trace FILE`. */
export async function runCommand(name: string, options: RunCommandOptions, io: CliIo): Promise<void> {
  const scenario = SCENARIOS.get(name);
  if (scenario === undefined) {
    if (looksLikeModule(name)) {
      throw new CliError(`running your own driver module (${name}) is not supported yet; registered scenarios:\n${scenarioList()}`);
    }
    throw new CliError(`unknown scenario '${name}'; registered scenarios:\n${scenarioList()}`);
  }
  const config = readMachineConfig(options.machine);
  const machineConfig = { ...config, seed: options.seed ?? config.seed };
  let fd: number | undefined;
  if (options.trace !== undefined) {
    try {
      fd = openSync(options.trace, 'w');
    } catch (e) {
      throw new CliError(`cannot write trace ${options.trace}: ${(e as Error).message}`);
    }
  }
  const sink = (chunk: string): void => void writeSync(fd as number, chunk);
  let recording: ChromeTraceRecording | undefined;
  const ctx: ScenarioContext = {
    seed: machineConfig.seed,
    machineConfig,
    traceFile: options.trace,
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
}
