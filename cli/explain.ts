import { CliError, type CliIo } from './io.ts';

/** Options of `dmasim explain`. */
export interface ExplainCommandOptions {
  readonly rid: number;
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
  const { buildExplainExample, formatExplain } = await import('../iommu/vtd/index.ts');
  const ex = buildExplainExample();
  io.stdout(`built-in example: a VT-d unit with translation on; rid 0x${ex.rid.toString(16).padStart(4, '0')} (domain 1, 4-level table) maps\n`);
  for (const m of ex.mappings) {
    io.stdout(`  iova ${hex(m.iova)}-${hex(m.iova + m.size - 1)} -> phys ${hex(m.phys)} ${m.prot}\n`);
  }
  io.stdout(`  (${hex(ex.hole)} is a hole; any other rid has no context entry)\n\n`);
  io.stdout(`${formatExplain(ex.unit.explain(options.rid, options.iova, options.write === true ? 'write' : 'read'))}\n`);
}
