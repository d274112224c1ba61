import { z } from 'zod';
import { checkVtdOptions, type VtdOptions } from '../../iommu/index.ts';
import { sizeSchema } from '../size-schema.ts';

/**
 * The `pci` and `iommu` parts of the machine configuration: the PCI topology (bridges and ports with their
 * secondary buses, devices at bus:device.function addresses), the firmware's MMIO windows, and the VT-d
 * unit's parameters. Cross-checks that need the whole topology (a bus nobody provides, a duplicate BDF, a
 * window that overlaps RAM) run in the machine schema's refinement (`validatePci`).
 */

/** `bb:dd.f` (hex bus and device, function 0..7) -> requester id; the message says what is wrong otherwise. */
export function parseBdf(text: string): number | { error: string } {
  const m = /^([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$/i.exec(text.trim());
  if (m === null) return { error: `'${text}' is not a bus:device.function address (write e.g. '00:03.0')` };
  const dev = Number.parseInt(m[2] as string, 16);
  if (dev > 31) return { error: `'${text}': device ${dev} is past 31 (0x1f)` };
  return (Number.parseInt(m[1] as string, 16) << 8) | (dev << 3) | Number(m[3]);
}

/** A bus:device.function string (or a requester id), resolved to its 16-bit requester id. */
export const bdfSchema = z.union([z.string(), z.number()]).transform((v, ctx): number => {
  // A number is an already resolved requester id (a resolved configuration is a valid input).
  const r = typeof v === 'number' ? (Number.isInteger(v) && v >= 0 && v <= 0xffff ? v : { error: `${v} is not a 16-bit requester id` }) : parseBdf(v);
  if (typeof r === 'object') {
    ctx.addIssue({ code: 'custom', message: r.error });
    return z.NEVER;
  }
  return r;
});

/** A DMA mask: a number or hex string of a mask of low bits (`0xffffffff`), resolved to a bigint. */
const dmaMaskSchema = z.union([z.number(), z.string(), z.bigint()]).transform((v, ctx): bigint => {
  let b: bigint;
  try {
    b = typeof v === 'bigint' ? v : BigInt(typeof v === 'number' ? (Number.isSafeInteger(v) ? v : -1) : v.trim());
  } catch {
    b = -1n;
  }
  if (b <= 0n || b >= 1n << 64n || (b & (b + 1n)) !== 0n) {
    ctx.addIssue({ code: 'custom', message: `${String(v)} is not a mask of low bits below 2^64 (e.g. '0xffffffff')` });
    return z.NEVER;
  }
  return b;
});

/** QEMU's edu: `{ type: 'edu', bdf: '00:03.0', dmaMask?: '0xfffffff' }`. */
export const eduDeviceSchema = z.strictObject({
  type: z.literal('edu'),
  bdf: bdfSchema,
  /** RAM-side DMA address mask (QEMU's `dma_mask`; default 28 bits). */
  dmaMask: dmaMaskSchema.optional(),
  /** Virtual ns a factorial takes (default 1 us). */
  factorialNs: z.number().int().min(0).optional(),
  /** The function has an ACS capability with Linux's required controls enabled (isolation graph only). */
  acs: z.boolean().default(false),
});

/** dmasim's PCIe test device (device-models/testdev). */
export const testdevDeviceSchema = z.strictObject({
  type: z.literal('testdev'),
  bdf: bdfSchema,
  /** Offer Function Level Reset (default true). */
  flr: z.boolean().default(true),
  /** The function has an ACS capability with Linux's required controls enabled (isolation graph only). */
  acs: z.boolean().default(false),
});

/**
 * The Coral Edge TPU (device-models/apex): a PCI Express endpoint, 1ac1:089a, whose two 64-bit prefetchable
 * BARs firmware places in the 64-bit window. `{ type: 'apex', bdf: '01:00.0' }`.
 */
export const apexDeviceSchema = z.strictObject({
  type: z.literal('apex'),
  bdf: bdfSchema,
  /** The function has an ACS capability with Linux's required controls enabled (isolation graph only). */
  acs: z.boolean().default(false),
});

/** A device in the topology. */
export const pciDeviceSchema = z.discriminatedUnion('type', [eduDeviceSchema, testdevDeviceSchema, apexDeviceSchema]);

/** Bridge and port kinds, as `iommu/groups.ts` names them. */
export const BRIDGE_KINDS = ['root-port', 'upstream-port', 'downstream-port', 'pcie-to-pci-bridge', 'pci-bridge'] as const;

/**
 * A bridge or PCIe port: its own address and the bus below it. Root and downstream ports have ACS (SV, RR,
 * CR, UF) unless `acs: false`, as QEMU's pcie-root-port and xio3130 downstream ports and Linux's
 * `pci_enable_acs` leave them; other kinds have none unless `acs: true`.
 */
export const pciBridgeSchema = z.strictObject({
  kind: z.enum(BRIDGE_KINDS),
  bdf: bdfSchema,
  /** The bus number right below (1..255). */
  secondaryBus: z.number().int().min(1).max(255),
  acs: z.boolean().optional(),
});

/** A firmware MMIO window: `{ start, size }` in bytes. */
export const windowSchema = z.strictObject({ start: sizeSchema, size: sizeSchema.refine((n) => n > 0, { message: 'must be positive' }) });

/** Where firmware's windows start by default: the 32-bit hole below the IOAPIC (QEMU q35), and 512 GiB up. */
export const PCI_DEFAULTS = {
  mmio32: { start: 0xc000_0000, size: 0xfec0_0000 - 0xc000_0000 },
  mmio64: { start: 0x80_0000_0000, size: 0x80_0000_0000 },
  io: { start: 0xc000, size: 0x4000 },
} as const;

/** The PCI topology and firmware's windows. */
export const pciSchema = z.strictObject({
  /** 32-bit BARs go here (below 4 GiB; default 0xC000_0000-0xFEBF_FFFF). */
  mmio32: windowSchema.default(PCI_DEFAULTS.mmio32),
  /** 64-bit BARs go here (default 512 GiB, 512 GiB long: above any RAM a machine may have). */
  mmio64: windowSchema.default(PCI_DEFAULTS.mmio64),
  /** I/O BARs go here (default 0xC000-0xFFFF, as SeaBIOS). */
  io: windowSchema.default(PCI_DEFAULTS.io),
  /** Bridges and ports. */
  bridges: z.array(pciBridgeSchema).default([]),
  /** Devices (one entry per function). */
  devices: z.array(pciDeviceSchema).default([]),
});

/** The default register block address of the VT-d unit: QEMU's DMAR at 0xFED9_0000. */
export const IOMMU_DEFAULT_BASE = 0xfed9_0000;

/** The IOMMU: off by default; its parameters are the VT-d unit's options (iommu/vtd/options.ts). */
export const iommuSchema = z
  .strictObject({
    /** Put a VT-d unit between the root complex and memory (default false: identity DMA). */
    enabled: z.boolean().default(false),
    /** Physical address of its 4 KiB-aligned register block (default 0xFED9_0000). */
    base: sizeSchema.default(IOMMU_DEFAULT_BASE),
    addressWidth: z.union([z.literal(39), z.literal(48)]).optional(),
    faultRecords: z.number().optional(),
    iotlbEntries: z.number().optional(),
    iotlbWays: z.number().optional(),
    contextCache: z.boolean().optional(),
    memReadNs: z.number().optional(),
    iotlbLookupNs: z.number().optional(),
    qiDescriptorNs: z.number().optional(),
    cachingMode: z.boolean().optional(),
  })
  .superRefine((o, ctx) => {
    if (o.base % 4096 !== 0) ctx.addIssue({ code: 'custom', path: ['base'], message: 'must be 4 KiB aligned' });
    for (const m of checkVtdOptions(vtdOptionsOf(o))) ctx.addIssue({ code: 'custom', message: m });
  });

/** A resolved `pci` part. */
export type PciConfig = z.output<typeof pciSchema>;
/** A resolved device entry. */
export type PciDeviceConfig = z.output<typeof pciDeviceSchema>;
/** A resolved bridge entry. */
export type PciBridgeConfig = z.output<typeof pciBridgeSchema>;
/** A resolved `iommu` part. */
export type IommuConfig = z.output<typeof iommuSchema>;

/** The VT-d unit options an `iommu` part sets (absent fields take the unit's defaults). */
export function vtdOptionsOf(o: IommuConfig): Omit<VtdOptions, 'mem' | 'clock' | 'msi'> {
  const { enabled: _e, base: _b, ...rest } = o;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest)) if (v !== undefined) out[k] = v;
  return out as Omit<VtdOptions, 'mem' | 'clock' | 'msi'>;
}
