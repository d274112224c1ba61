import { CliError, type CliIo } from './io.ts';

/** Options of `dmasim explain`. */
export interface ExplainCommandOptions {
  /** A requester id in the built-in example. */
  readonly rid?: number;
  /** A function of the machine built from {@link machine} (or the default configuration). */
  readonly bdf?: number;
  /** Path of a machine configuration (JSON), with `bdf`. */
  readonly machine?: string;
  readonly iova: bigint;
  readonly write?: boolean;
}

/** Parses a requester id: a number (`0x0100`, `256`) or a bus:device.function (`01:00.0`). */
export function parseRid(text: string): number {
  const bdf = /^([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$/i.exec(text.trim());
  const v = bdf === null ? Number(text) : (Number.parseInt(bdf[1] as string, 16) << 8) | (Number.parseInt(bdf[2] as string, 16) << 3) | Number(bdf[3]);
  if (!(Number.isInteger(v) && v >= 0 && v <= 0xffff) || (bdf !== null && Number.parseInt(bdf[2] as string, 16) > 31)) {
    throw new CliError(`--rid ${text}: expected a 16-bit requester id (0x0100) or bus:device.function (01:00.0)`);
  }
  return v;
}

/** Parses an IOVA: a non-negative integer below 2^64, decimal or `0x` hex. */
export function parseIova(text: string): bigint {
  let v: bigint;
  try {
    v = BigInt(text.trim());
  } catch {
    throw new CliError(`--iova ${text}: expected an address, e.g. 0x100000`);
  }
  if (v < 0n || v >= 1n << 64n) throw new CliError(`--iova ${text}: must be in [0, 2^64)`);
  return v;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/**
 * `dmasim explain --rid R --iova A`: walks the built-in VT-d example's tables for one access and prints each
 * entry read (root, context, every page-table level) and the outcome, as the hardware would see it.
 */
export async function explainCommand(options: ExplainCommandOptions, io: CliIo): Promise<void> {
  if (options.bdf !== undefined) {
    await explainOnMachine(options.bdf, options, io);
    return;
  }
  if (options.rid === undefined) throw new CliError('explain needs --rid (the built-in example) or --bdf (a machine)');
  if (options.machine !== undefined) throw new CliError('--machine goes with --bdf; --rid explains the built-in example');
  const { buildExplainExample, formatExplain } = await import('../iommu/vtd/index.ts');
  const ex = buildExplainExample();
  io.stdout(`built-in example: a VT-d unit with translation on; rid 0x${ex.rid.toString(16).padStart(4, '0')} (domain 1, 4-level table) maps\n`);
  for (const m of ex.mappings) {
    io.stdout(`  iova ${hex(m.iova)}-${hex(m.iova + m.size - 1)} -> phys ${hex(m.phys)} ${m.prot}\n`);
  }
  io.stdout(`  (${hex(ex.hole)} is a hole; any other rid has no context entry)\n\n`);
  io.stdout(`${formatExplain(ex.unit.explain(options.rid, options.iova, options.write === true ? 'write' : 'read'))}\n`);
}

/**
 * `dmasim explain --bdf B:D.F --iova A [--machine m.json]`: builds the machine and explains the access on
 * its IOMMU as the unit stands after firmware. No kernel programs the unit yet, so this shows the honest
 * state: no IOMMU (identity DMA), or translation disabled / no root table / context not present. Once the
 * kernel's IOMMU driver (a later issue) attaches domains, the same command shows real walks.
 */
async function explainOnMachine(bdf: number, options: ExplainCommandOptions, io: CliIo): Promise<void> {
  const { readFileSync } = await import('node:fs');
  const { ConfigError, createMachine, loadMachineConfig, resolveMachineConfig } = await import('../machine/index.ts');
  const { formatBdf, formatExplain } = await import('../iommu/index.ts');
  let m;
  try {
    let config = resolveMachineConfig({});
    if (options.machine !== undefined) {
      let text: string;
      try {
        text = readFileSync(options.machine, 'utf8');
      } catch (e) {
        throw new CliError(`cannot read machine configuration ${options.machine}: ${(e as Error).message}`);
      }
      config = loadMachineConfig(text, options.machine);
    }
    m = createMachine(config);
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(e.message);
    throw e;
  }
  const slot = m.pci.find(bdf);
  const where = options.machine ?? 'the default machine';
  if (slot === undefined) {
    const have = m.pci.functions.map((f) => `${f.address} (${f.type})`).join(', ');
    throw new CliError(`no function at ${formatBdf(bdf)} in ${where}; functions: ${have === '' ? 'none' : have}`);
  }
  const rid = slot.requesterId;
  io.stdout(`${where}: ${slot.type} at ${slot.address}, DMA requester id ${formatBdf(rid)}${rid === bdf ? '' : ' (a bridge alias)'}\n`);
  const unit = m.iommu;
  if (unit === undefined) {
    io.stdout(`no IOMMU (iommu.enabled is false): its DMA is untranslated, bus address ${hex(Number(options.iova))} = physical address\n`);
    return;
  }
  io.stdout('as firmware leaves the IOMMU: no kernel has programmed it yet (root table, domains and TE come with the kernel\'s IOMMU driver)\n\n');
  io.stdout(`${formatExplain(unit.explain(rid, options.iova, options.write === true ? 'write' : 'read'))}\n`);
}
