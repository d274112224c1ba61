import { z } from 'zod';
import { FRAME_SIZE } from '../sim/index.ts';
import { formatSize } from './size.ts';
import { sizeSchema } from './size-schema.ts';
import { iommuSchema, pciSchema } from './pci/schema.ts';
import { checkTopology } from './pci/topology.ts';

/**
 * The machine's configuration: one validated object, one sub-schema per part of the board, each with its
 * defaults, so that a later part (IOMMU parameters, PCI topology, devices) adds its own key to
 * {@link machineConfigShape} without touching the others. Objects are strict: a misspelt key is an error
 * naming its path, not a silently ignored setting.
 */

/** Largest memory a machine may have: 64 GiB (16 Mi frames, ~150 MB of host bookkeeping). */
export const MAX_MEMORY_BYTES = 64 * 2 ** 30;

export { sizeSchema } from './size-schema.ts';

/** A size that is a positive multiple of 4 KiB. */
const frameMultiple = sizeSchema.refine((n) => n > 0 && n % FRAME_SIZE === 0, {
  message: `must be a positive multiple of ${FRAME_SIZE} (4 KiB)`,
});

/** A byte range of physical memory that the frame allocator never hands out (firmware, holes). */
export const reservedRangeSchema = z.strictObject({
  /** First byte, 4 KiB aligned. */
  start: sizeSchema.refine((n) => n % FRAME_SIZE === 0, { message: `must be ${FRAME_SIZE}-byte aligned` }),
  /** Length in bytes, a multiple of 4 KiB. */
  size: frameMultiple,
});

/** Physical memory: size, frame placement and reserved ranges. */
export const memorySchema = z
  .strictObject({
    /** Bytes of RAM (default 1 GiB). */
    size: frameMultiple.default(2 ** 30).refine((n) => n <= MAX_MEMORY_BYTES, { message: `must be at most ${formatSize(MAX_MEMORY_BYTES)}` }),
    /** Where single frames go: `scatter` (seeded random, default) or `sequential`. */
    placement: z.enum(['sequential', 'scatter']).default('scatter'),
    /**
     * Ranges never handed out. The default keeps frame 0, so that a DMA to bus address 0 (an unset
     * pointer) never lands in a buffer.
     */
    reserved: z.array(reservedRangeSchema).default([{ start: 0, size: FRAME_SIZE }]),
  })
  .superRefine((m, ctx) => {
    m.reserved.forEach((r, i) => {
      if (r.start + r.size > m.size) {
        ctx.addIssue({
          code: 'custom',
          path: ['reserved', i],
          message: `range 0x${r.start.toString(16)}+${formatSize(r.size)} ends beyond memory (${formatSize(m.size)})`,
        });
      }
    });
  });

/** Tracing: what the machine's trace output looks like. */
export const traceSchema = z.strictObject({
  /** End Chrome traces with counter tracks from the machine's statistics (default true). */
  counters: z.boolean().default(true),
});

/**
 * The parts of a machine configuration, each a sub-schema with defaults. Later parts add their keys here
 * (`iommu`, `pci`, `devices`), each with `.prefault({})` so that an absent part takes its defaults.
 */
export const machineConfigShape = {
  /** The machine's name: the process track of its Chrome trace (default `dmasim`). */
  name: z.string().min(1).max(64).default('dmasim'),
  /** Seed of the machine's generator, an unsigned 32-bit integer (default 1). */
  seed: z.number().int().min(0).max(0xffff_ffff).default(1),
  /** Physical memory. */
  memory: memorySchema.prefault({}),
  /** Tracing. */
  trace: traceSchema.prefault({}),
  /** The PCI topology, devices and firmware's MMIO windows (machine/pci/schema.ts). */
  pci: pciSchema.prefault({}),
  /** The IOMMU (off by default). */
  iommu: iommuSchema.prefault({}),
};

/** The machine configuration schema: the parts, then the checks that span parts (topology against memory). */
export const machineConfigSchema = z.strictObject(machineConfigShape).superRefine((c, ctx) => {
  for (const b of checkTopology(c.pci, c.iommu, c.memory.size)) ctx.addIssue({ code: 'custom', path: b.path, message: b.message });
});

/** A configuration as written: every field optional, sizes as numbers or strings. */
export type MachineConfigInput = z.input<typeof machineConfigSchema>;
/** A resolved configuration: defaults filled in, sizes in bytes. Also a valid {@link MachineConfigInput}. */
export type MachineConfig = z.output<typeof machineConfigSchema>;

/** A configuration that does not validate; `issues` lists each problem as `path: message`. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  /** One line per problem, each naming the field path, e.g. `memory.size: must be a positive multiple...`. */
  readonly issues: readonly string[];

  constructor(issues: readonly string[], source = 'machine configuration') {
    super(`invalid ${source}:\n${issues.map((i) => `  - ${i}`).join('\n')}`);
    this.issues = issues;
  }
}

/** `memory.reserved[0].size` from zod's path. */
function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out === '' ? '(root)' : out;
}

/** Formats zod issues as `path: message` lines. */
export function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`);
}

/** Validates `input` and fills in defaults; throws a {@link ConfigError} naming each bad field. */
export function resolveMachineConfig(input: unknown = {}, source?: string): MachineConfig {
  const r = machineConfigSchema.safeParse(input);
  if (!r.success) throw new ConfigError(formatIssues(r.error), source);
  return r.data;
}

/**
 * Parses the text of a `--machine m.json` file (a string is JSON text; anything else an already parsed value)
 * into a resolved configuration;
 * throws a {@link ConfigError} for bad JSON or a bad field.
 */
export function loadMachineConfig(json: unknown, source = 'machine configuration'): MachineConfig {
  let value: unknown = json;
  if (typeof json === 'string') {
    try {
      value = JSON.parse(json);
    } catch (e) {
      throw new ConfigError([`not valid JSON: ${(e as Error).message}`], source);
    }
  }
  return resolveMachineConfig(value, source);
}
