import { MSI_WINDOW_LAST, MSI_WINDOW_START } from '../../sim/index.ts';
import { REQ_ACS_FLAGS, computeGroups, formatBdf, type IsolationGraph, type IsolationNode, type PciNodeKind } from '../../iommu/index.ts';
import type { IommuConfig, PciConfig } from './schema.ts';

/**
 * The PCI topology as the configuration describes it: bridges/ports with their secondary buses and the
 * device functions, turned into the plain isolation graph `computeGroups` reads, plus the facts firmware
 * needs (probe order, INTx swizzle). Pure functions of the configuration, so the configuration check and
 * the machine use the same code.
 */

/**
 * The isolation-graph kind of a device function: edu is conventional PCI; PCIe functions (testdev, the
 * Apex) are endpoints, integrated when on bus 0.
 */
function deviceKind(type: 'edu' | 'testdev' | 'apex', bus: number): PciNodeKind {
  if (type === 'edu') return 'pci-endpoint';
  // QEMU reports a PCI Express device plugged into the root bus (pcie.0) as a root-complex integrated endpoint.
  return bus === 0 ? 'rc-endpoint' : 'endpoint';
}

const ACS_ON = { cap: REQ_ACS_FLAGS, ctrl: REQ_ACS_FLAGS } as const;

/** Requester ids of every node of `pci` (bridges and devices), for the multifunction check. */
function slotsInUse(pci: PciConfig): Map<number, number> {
  const perSlot = new Map<number, number>();
  for (const n of [...pci.bridges, ...pci.devices]) perSlot.set(n.bdf >>> 3, (perSlot.get(n.bdf >>> 3) ?? 0) + 1);
  return perSlot;
}

/**
 * The isolation graph of a topology. A function is multifunction when another function shares its slot
 * (firmware reads Header Type bit 7; the machine derives it from the configuration). Each node's parent is
 * the bridge whose secondary bus it sits on.
 */
export function isolationGraphOf(pci: PciConfig): IsolationGraph {
  const parentOfBus = new Map<number, number>();
  for (const b of pci.bridges) parentOfBus.set(b.secondaryBus, b.bdf);
  const perSlot = slotsInUse(pci);
  const nodes: IsolationNode[] = [];
  const common = (bdf: number): { parent: number | null; multifunction: boolean } => ({
    parent: bdf >>> 8 === 0 ? null : (parentOfBus.get(bdf >>> 8) ?? -1),
    multifunction: (perSlot.get(bdf >>> 3) ?? 0) > 1,
  });
  for (const b of pci.bridges) {
    const acs = b.acs ?? (b.kind === 'root-port' || b.kind === 'downstream-port');
    nodes.push({ bdf: b.bdf, kind: b.kind, secondaryBus: b.secondaryBus, ...common(b.bdf), ...(acs ? { acs: ACS_ON } : {}) });
  }
  for (const d of pci.devices) {
    nodes.push({ bdf: d.bdf, kind: deviceKind(d.type, d.bdf >>> 8), ...common(d.bdf), ...(d.acs ? { acs: ACS_ON } : {}) });
  }
  return { nodes };
}

/**
 * Problems with a topology and its windows, as `path: message`-ready pairs (empty when it is valid): BDFs
 * used twice, buses nobody provides, secondary buses used twice, graphs `computeGroups` refuses, windows
 * outside their address range or overlapping RAM, the interrupt window or the IOMMU registers.
 */
export function checkTopology(pci: PciConfig, iommu: IommuConfig, memorySize: number): { path: (string | number)[]; message: string }[] {
  const bad: { path: (string | number)[]; message: string }[] = [];
  const seen = new Map<number, string>();
  const buses = new Set<number>([0]);
  pci.bridges.forEach((b, i) => {
    if (buses.has(b.secondaryBus)) bad.push({ path: ['pci', 'bridges', i, 'secondaryBus'], message: `bus ${b.secondaryBus} is already in use` });
    buses.add(b.secondaryBus);
  });
  const visit = (list: 'bridges' | 'devices', bdf: number, i: number): void => {
    const where = `pci.${list}[${i}]`;
    const prev = seen.get(bdf);
    if (prev !== undefined) bad.push({ path: ['pci', list, i, 'bdf'], message: `${formatBdf(bdf)} is already used by ${prev}` });
    seen.set(bdf, where);
    if (!buses.has(bdf >>> 8)) bad.push({ path: ['pci', list, i, 'bdf'], message: `bus ${bdf >>> 8} is not the root bus and no bridge's secondaryBus` });
  };
  pci.bridges.forEach((b, i) => visit('bridges', b.bdf, i));
  pci.devices.forEach((d, i) => visit('devices', d.bdf, i));
  if (bad.length === 0) {
    const g = computeGroups(isolationGraphOf(pci));
    if (!g.ok) bad.push({ path: ['pci'], message: `${g.message}` });
  }
  const inUse = pci.devices.length > 0;
  const w32 = pci.mmio32;
  const w64 = pci.mmio64;
  if (w32.start + w32.size > 2 ** 32) bad.push({ path: ['pci', 'mmio32'], message: 'must lie below 4 GiB' });
  if (w64.start < 2 ** 32) bad.push({ path: ['pci', 'mmio64'], message: 'must start at or above 4 GiB' });
  if (w64.start + w64.size > 2 ** 52) bad.push({ path: ['pci', 'mmio64'], message: 'must end below 2^52' });
  if (pci.io.start + pci.io.size > 0x1_0000) bad.push({ path: ['pci', 'io'], message: 'must lie below 64 KiB' });
  const overlap = (s: number, n: number, s2: number, l2: number): boolean => s <= l2 && s2 <= s + n - 1;
  if (inUse) {
    for (const [k, w] of [['mmio32', w32], ['mmio64', w64]] as const) {
      if (overlap(w.start, w.size, 0, memorySize - 1)) bad.push({ path: ['pci', k], message: `overlaps RAM (0-0x${(memorySize - 1).toString(16)})` });
      if (overlap(w.start, w.size, MSI_WINDOW_START, MSI_WINDOW_LAST)) bad.push({ path: ['pci', k], message: 'overlaps the interrupt window 0xFEE00000-0xFEEFFFFF' });
    }
  }
  if (iommu.enabled) {
    const b = iommu.base;
    if (overlap(b, 4096, 0, memorySize - 1)) bad.push({ path: ['iommu', 'base'], message: 'overlaps RAM' });
    if (overlap(b, 4096, MSI_WINDOW_START, MSI_WINDOW_LAST)) bad.push({ path: ['iommu', 'base'], message: 'overlaps the interrupt window' });
    if (inUse && overlap(b, 4096, w32.start, w32.start + w32.size - 1)) bad.push({ path: ['iommu', 'base'], message: 'overlaps pci.mmio32' });
    if (b + 4096 > 2 ** 32) bad.push({ path: ['iommu', 'base'], message: 'must lie below 4 GiB' });
  }
  return bad;
}

/**
 * Linux's probe order (`pci_scan_child_bus`): a bus's functions by devfn, then the bus below each of its
 * bridges in turn, depth first. Returns requester ids of bridges and devices alike.
 */
export function probeOrder(graph: IsolationGraph): number[] {
  const byBus = new Map<number, IsolationNode[]>();
  for (const n of graph.nodes) {
    const l = byBus.get(n.bdf >>> 8) ?? [];
    l.push(n);
    byBus.set(n.bdf >>> 8, l);
  }
  const out: number[] = [];
  const walk = (bus: number, depth: number): void => {
    if (depth > 256) return;
    const here = [...(byBus.get(bus) ?? [])].sort((a, b) => a.bdf - b.bdf);
    for (const n of here) out.push(n.bdf);
    for (const n of here) if (n.secondaryBus !== undefined) walk(n.secondaryBus, depth + 1);
  };
  walk(0, 0);
  return out;
}

/** The first GSI of the PCI interrupt lines: the IOAPIC inputs 16..23 (PIRQA..H on q35). */
export const PCI_GSI_BASE = 16;

/**
 * The interrupt line a function's pin reaches, by the standard swizzle (PCI-to-PCI Bridge spec 1.2 section
 * 9.1, Linux `pci_swizzle_interrupt_pin`): at each bridge on the way up, pin' = ((pin - 1 + device) mod 4) + 1
 * with the device number below that bridge; on the root bus, line = 16 + ((device + pin' - 1) mod 4), the
 * four PIRQ lines that QEMU's q35 wires slot by slot to GSIs 16..19. Returns -1 for pin 0 (none).
 */
export function intxLine(graph: IsolationGraph, bdf: number, pin: number): number {
  if (pin < 1 || pin > 4) return -1;
  const byBdf = new Map(graph.nodes.map((n) => [n.bdf, n]));
  let p = pin;
  let at = bdf;
  for (let guard = 0; guard < 256; guard++) {
    const node = byBdf.get(at);
    const parent = node?.parent ?? null;
    if (parent === null) break;
    p = ((p - 1 + ((at >>> 3) & 0x1f)) % 4) + 1;
    at = parent;
  }
  return PCI_GSI_BASE + ((((at >>> 3) & 0x1f) + p - 1) % 4);
}
