import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { benchCommand, type BenchCommandOptions } from './bench.ts';
import { explainCommand, parseIova, parseRid } from './explain.ts';
import { CliError, processIo, type CliIo } from './io.ts';
import { runCommand, scenarioList, type RunCommandOptions } from './run.ts';

export { processIo, type CliIo } from './io.ts';
export { formatBenchTable } from './bench.ts';

function parseSeed(text: string): number {
  const v = Number(text);
  if (!(Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff)) throw new InvalidArgumentError('expected an unsigned 32-bit integer.');
  return v;
}

/** Commander parsers must throw its own error type to get its usage message. */
function asArgument<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (e) {
      throw new InvalidArgumentError(e instanceof CliError ? e.message : String(e));
    }
  };
}

function program(io: CliIo, setStatus: (status: number) => void): Command {
  const cmd = new Command('dmasim')
    .description('A full-system simulator of a PCI accelerator behind an IOMMU, in virtual time, deterministic from a seed.')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError('(add --help for usage)');

  cmd
    .command('run')
    .description('run a registered scenario, or your own driver module (./driver.ts exporting main(sys, machine)) as a root process')
    .argument('<scenario>', 'scenario name, or a path to a driver module (./driver.ts); exits with its exit status')
    .option('--seed <n>', 'seed of the machine generator (overrides the machine configuration)', parseSeed)
    .option('--trace <file>', 'write a Chrome trace of the run (open it in https://ui.perfetto.dev)')
    .option('--machine <file>', 'machine configuration (JSON)')
    .option('--iommu', 'for scenarios that offer it (uio-edu): run on a machine whose IOMMU translates')
    .option('--iommufd', 'for scenarios that offer it (vfio-apex): use the VFIO device cdev and iommufd instead of the group and container')
    .addHelpText(
      'after',
      () =>
        `\nScenarios:\n${scenarioList()}\n\nA driver module: export async function main(sys, machine) { ... } (a .ts file works);\n` +
        `  dmasim run ./driver.ts --machine m.json boots the kernel on that machine, runs main as root, prints\n` +
        `  its exit status, the virtual time and the dmesg tail, and exits with that status (1 on crash or deadlock).`,
    )
    .action(async (name: string, opts: RunCommandOptions) => {
      setStatus(await runCommand(name, opts, io));
    });

  cmd
    .command('bench')
    .description('run benchmarks: all, or those named (a prefix such as `des` selects des.hold and des.process)')
    .argument('[names...]', 'benchmark names or dotted prefixes')
    .option('--json', 'one JSON object per benchmark per line on stdout')
    .option('--list', 'list the selected benchmarks without running them')
    .action(async (names: string[], opts: BenchCommandOptions) => benchCommand(names, opts, io));

  cmd
    .command('explain')
    .description("explain how the IOMMU translates one access, entry by entry: on the built-in VT-d example's tables (--rid) or on a machine's function (--bdf, --machine)")
    .option('--rid <rid>', 'requester id in the built-in example: 0x0100 or bus:device.function (01:00.0)', asArgument(parseRid))
    .option('--bdf <b:d.f>', "a function of the machine (e.g. 00:03.0); its DMA's requester id is explained on the machine's IOMMU", asArgument(parseRid))
    .option('--machine <file>', 'machine configuration (JSON) for --bdf (default: the default machine)')
    .requiredOption('--iova <addr>', 'I/O virtual address, e.g. 0x100000', asArgument(parseIova))
    .option('--write', 'explain a write (default: a read)')
    .action(async (opts: { rid?: number; bdf?: number; machine?: string; iova: bigint; write?: boolean }) => explainCommand(opts, io));

  return cmd;
}

/**
 * Runs the CLI on `argv` (the arguments after `node bin.mjs`), writing through `io`; resolves to the exit
 * status: 0 on success (and for `--help`), 2 for bad usage or input (an unknown scenario, a bad machine
 * file), 1 when the run itself failed; for `run ./driver.ts`, the driver process's exit status.
 */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  let status = 0;
  const cmd = program(io, (s) => {
    status = s;
  });
  try {
    if (argv.length === 0) {
      cmd.outputHelp();
      return 2;
    }
    await cmd.parseAsync([...argv], { from: 'user' });
    return status;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has already printed the message (or the help).
      return e.exitCode === 0 ? 0 : 2;
    }
    if (e instanceof CliError) {
      io.stderr(`dmasim: ${e.message}\n`);
      return e.exitCode;
    }
    io.stderr(`dmasim: the run failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}
