/**
 * IOMMU groups from a plain isolation graph, by the rules of Linux's `pci_device_group()`
 * (drivers/iommu/iommu.c) as 6.1 and 6.12 have them. A group is the smallest set of functions the IOMMU
 * can tell apart from everything else: devices that can reach each other without going through the
 * IOMMU (no ACS on the way), or whose DMA the IOMMU sees under one requester id (a conventional PCI bus).
 *
 * Linux's algorithm, which {@link computeGroups} follows step by step for each function in probe order
 * (each step may find a function that already has a group, and then joins it):
 * 1. **DMA aliases** (`pci_for_each_dma_alias`, drivers/pci/search.c): the function's own id, its quirk
 *    aliases, then for each bridge on the way up: PCIe ports add nothing; a PCIe-to-PCI bridge adds
 *    (its secondary bus, devfn 00.0), because such a bridge takes ownership of the transactions it
 *    forwards (PCIe-to-PCI/X Bridge spec 1.0, 2.3); a conventional PCI bridge adds its own id. The walk
 *    stops at the first alias device that has a group; otherwise the last device seen is the new start.
 * 2. **ACS path** (`pci_acs_path_enabled(bus->self, NULL, REQ_ACS_FLAGS)`): from there go up while the
 *    bridge above is not isolated all the way to the root; each such bridge is the new start, and if
 *    it has a group, join it. So everything below a port without ACS lands in that port's group.
 * 3. **Alias quirks** (`get_pci_alias_group`): a function on the same bus that aliases us or that we alias.
 * 4. **Functions of one slot** (`get_pci_function_alias_group`): a multifunction function without ACS
 *    joins any other function of its slot that also lacks ACS.
 * 5. Otherwise a new group (ids from 0 in allocation order, as /sys/kernel/iommu_groups numbers them).
 *
 * ACS (`pci_acs_enabled`): conventional PCI functions and PCIe-to-PCI bridges never have it; root and
 * downstream ports need SV, RR, CR and UF enabled in their ACS capability; endpoints, RC-integrated
 * endpoints and upstream ports need it only when multifunction (a single function has no peer to reach).
 * A flag the capability register does not advertise counts as hard-wired on, as Linux assumes.
 *
 * Newer kernels (the "pcie_switch_groups" rework) treat a switch whose downstream ports are not all
 * isolated as one group; 6.1 and 6.12, modelled here, give each non-ACS downstream port its own group.
 */

/** What a node in the isolation graph is (its PCIe device/port type, or conventional PCI). */
export type PciNodeKind =
  /** PCIe endpoint (PCI_EXP_TYPE_ENDPOINT). */
  | 'endpoint'
  /** Root-complex integrated endpoint (PCI_EXP_TYPE_RC_END), on a root bus. */
  | 'rc-endpoint'
  /** Conventional PCI / PCI-X function, no PCI Express capability (QEMU's edu). */
  | 'pci-endpoint'
  /** PCIe root port. */
  | 'root-port'
  /** Switch upstream port. */
  | 'upstream-port'
  /** Switch downstream port. */
  | 'downstream-port'
  /** PCIe-to-PCI/PCI-X bridge (PCI_EXP_TYPE_PCI_BRIDGE). */
  | 'pcie-to-pci-bridge'
  /** Conventional PCI-to-PCI bridge (no PCI Express capability). */
  | 'pci-bridge';

const BRIDGE_KINDS: ReadonlySet<string> = new Set(['root-port', 'upstream-port', 'downstream-port', 'pcie-to-pci-bridge', 'pci-bridge']);
const KINDS: ReadonlySet<string> = new Set([...BRIDGE_KINDS, 'endpoint', 'rc-endpoint', 'pci-endpoint']);

/** ACS capability and control bits (include/uapi/linux/pci_regs.h `PCI_ACS_*`). */
export const PciAcs = {
  /** Source Validation. */
  SV: 0x01,
  /** Translation Blocking. */
  TB: 0x02,
  /** P2P Request Redirect. */
  RR: 0x04,
  /** P2P Completion Redirect. */
  CR: 0x08,
  /** Upstream Forwarding. */
  UF: 0x10,
  /** P2P Egress Control. */
  EC: 0x20,
  /** Direct Translated P2P. */
  DT: 0x40,
} as const;

/**
 * The ACS flags Linux requires to call a function isolated: requester ids cannot be spoofed, requests
 * and completions cannot be redirected to a peer, and everything is forwarded upstream.
 */
export const REQ_ACS_FLAGS = PciAcs.SV | PciAcs.RR | PciAcs.CR | PciAcs.UF;

/** A function's ACS extended capability: the capability and control registers (16 bits each). */
export interface AcsCapability {
  readonly cap: number;
  readonly ctrl: number;
}

/** One PCI function of the isolation graph. */
export interface IsolationNode {
  /** Requester id: `bus << 8 | device << 3 | function`. */
  readonly bdf: number;
  readonly kind: PciNodeKind;
  /** The bridge or port whose secondary bus this function sits on (its `bdf`), or null on a root bus. */
  readonly parent: number | null;
  /** Bridges and ports: the bus number right below. */
  readonly secondaryBus?: number;
  /** Header type bit 7. */
  readonly multifunction?: boolean;
  /** The ACS capability, absent when the function has none. */
  readonly acs?: AcsCapability;
  /** DMA alias quirks (`pci_add_dma_alias`): other devfns on the same bus this function also uses. */
  readonly dmaAliasDevfns?: readonly number[];
}

/** The graph the machine emits: its PCI functions, in any order. */
export interface IsolationGraph {
  readonly nodes: readonly IsolationNode[];
}

/** One IOMMU group. */
export interface IommuGroup {
  /** Group number, from 0 in allocation order. */
  readonly id: number;
  /** Member requester ids, in probe order. */
  readonly members: readonly number[];
}

/** Where one function ended up. */
export interface DeviceGroupInfo {
  readonly bdf: number;
  /** Its group's id. */
  readonly group: number;
  /**
   * Every requester id its DMA may carry, in `pci_for_each_dma_alias` order: its own, its quirk
   * aliases, then the aliases bridges on the way up impose. The IOMMU driver programs a context entry
   * for each, as intel-iommu's `domain_context_mapping` does.
   */
  readonly dmaAliases: readonly number[];
  /**
   * The requester id its DMA carries at the root complex: the last topological alias (behind a
   * PCIe-to-PCI bridge, the bridge's secondary bus with devfn 00.0; behind a conventional PCI bridge, that
   * bridge's id), or its own id when no bridge aliases it.
   */
  readonly requesterId: number;
}

/** The groups of a graph. */
export interface GroupsResult {
  readonly ok: true;
  readonly groups: readonly IommuGroup[];
  /** Every function, in probe order. */
  readonly devices: readonly DeviceGroupInfo[];
  /** The same records by requester id. */
  readonly byBdf: ReadonlyMap<number, DeviceGroupInfo>;
}

/** Why a graph was refused. */
export type GroupsErrorCode =
  | 'bad-node'
  | 'duplicate-bdf'
  | 'unknown-parent'
  | 'parent-not-bridge'
  | 'bus-mismatch'
  | 'bad-secondary-bus'
  | 'duplicate-bus'
  | 'cycle';

/** A refused graph: the code, the function at fault and a readable message. */
export interface GroupsError {
  readonly ok: false;
  readonly error: GroupsErrorCode;
  readonly bdf: number;
  readonly message: string;
}

/** `bb:dd.f`, as lspci prints a requester id. */
export function formatBdf(bdf: number): string {
  const hex = (v: number, w: number): string => v.toString(16).padStart(w, '0');
  return `${hex(bdf >>> 8, 2)}:${hex((bdf >>> 3) & 0x1f, 2)}.${bdf & 7}`;
}

/** Requester id of bus/device/function. */
export function bdfOf(bus: number, dev: number, fn: number): number {
  return ((bus & 0xff) << 8) | ((dev & 0x1f) << 3) | (fn & 7);
}

function isU(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

/**
 * Computes the IOMMU groups of `graph` as Linux's `pci_device_group()` would, probing functions in
 * Linux's enumeration order (each bus's functions by devfn, then the buses below its bridges in turn).
 * Returns an error for a malformed graph; never throws for any input.
 */
export function computeGroups(graph: IsolationGraph): GroupsResult | GroupsError {
  const checked = validate(graph);
  if (!checked.ok) return checked;
  return new Grouper(checked.nodes).run();
}

interface Valid {
  readonly ok: true;
  readonly nodes: readonly IsolationNode[];
}

function fail(error: GroupsErrorCode, bdf: number, message: string): GroupsError {
  return { ok: false, error, bdf, message };
}

function validate(graph: IsolationGraph): Valid | GroupsError {
  const nodes: unknown = (graph as { nodes?: unknown } | null | undefined)?.nodes;
  if (!Array.isArray(nodes)) return fail('bad-node', -1, 'graph.nodes is not an array');
  const byBdf = new Map<number, IsolationNode>();
  for (const raw of nodes as unknown[]) {
    const n = raw as Partial<IsolationNode> | null;
    if (n === null || typeof n !== 'object' || !isU(n.bdf, 0xffff)) return fail('bad-node', -1, 'a node has no valid bdf (0..0xffff)');
    const where = formatBdf(n.bdf);
    if (typeof n.kind !== 'string' || !KINDS.has(n.kind)) return fail('bad-node', n.bdf, `${where}: unknown kind ${String(n.kind)}`);
    if (n.parent !== null && !isU(n.parent, 0xffff)) return fail('bad-node', n.bdf, `${where}: parent must be a bdf or null`);
    if (n.multifunction !== undefined && typeof n.multifunction !== 'boolean') return fail('bad-node', n.bdf, `${where}: multifunction must be boolean`);
    if (n.acs !== undefined && (n.acs === null || typeof n.acs !== 'object' || !isU(n.acs.cap, 0xffff) || !isU(n.acs.ctrl, 0xffff))) {
      return fail('bad-node', n.bdf, `${where}: acs needs 16-bit cap and ctrl`);
    }
    if (n.dmaAliasDevfns !== undefined && (!Array.isArray(n.dmaAliasDevfns) || !n.dmaAliasDevfns.every((d) => isU(d, 0xff)))) {
      return fail('bad-node', n.bdf, `${where}: dmaAliasDevfns must be devfns (0..255)`);
    }
    if (BRIDGE_KINDS.has(n.kind)) {
      if (!isU(n.secondaryBus, 0xff)) return fail('bad-secondary-bus', n.bdf, `${where}: a ${n.kind} needs a secondaryBus (0..255)`);
    } else if (n.secondaryBus !== undefined) {
      return fail('bad-secondary-bus', n.bdf, `${where}: a ${n.kind} has no secondary bus`);
    }
    if (byBdf.has(n.bdf)) return fail('duplicate-bdf', n.bdf, `${where} appears twice`);
    byBdf.set(n.bdf, n as IsolationNode);
  }
  const busOwner = new Map<number, number>();
  for (const n of byBdf.values()) {
    if (n.secondaryBus === undefined) continue;
    const prev = busOwner.get(n.secondaryBus);
    if (prev !== undefined) return fail('duplicate-bus', n.bdf, `bus ${n.secondaryBus} is below both ${formatBdf(prev)} and ${formatBdf(n.bdf)}`);
    busOwner.set(n.secondaryBus, n.bdf);
  }
  for (const n of byBdf.values()) {
    const where = formatBdf(n.bdf);
    const bus = n.bdf >>> 8;
    if (n.parent === null) {
      const owner = busOwner.get(bus);
      if (owner !== undefined) return fail('bus-mismatch', n.bdf, `${where} has no parent but bus ${bus} is below ${formatBdf(owner)}`);
      continue;
    }
    const p = byBdf.get(n.parent);
    if (p === undefined) return fail('unknown-parent', n.bdf, `${where}: parent ${formatBdf(n.parent)} is not in the graph`);
    if (!BRIDGE_KINDS.has(p.kind)) return fail('parent-not-bridge', n.bdf, `${where}: parent ${formatBdf(p.bdf)} is a ${p.kind}`);
    if (p.secondaryBus !== bus) return fail('bus-mismatch', n.bdf, `${where} is on bus ${bus} but ${formatBdf(p.bdf)} bridges to bus ${p.secondaryBus}`);
  }
  // Every chain of parents must reach a root bus.
  for (const n of byBdf.values()) {
    let cur: IsolationNode | undefined = n;
    for (let hops = 0; cur !== undefined && cur.parent !== null; hops++) {
      if (hops > byBdf.size) return fail('cycle', n.bdf, `${formatBdf(n.bdf)}: its parents form a cycle`);
      cur = byBdf.get(cur.parent);
    }
  }
  return { ok: true, nodes: [...byBdf.values()] };
}

/** One run of the grouping: the graph indexed, the groups so far. */
class Grouper {
  readonly #byBdf = new Map<number, IsolationNode>();
  /** The bridge above each non-root bus (`bus->self`). */
  readonly #busSelf = new Map<number, IsolationNode>();
  /** Functions in probe order (`for_each_pci_dev`). */
  readonly #order: IsolationNode[] = [];
  readonly #groupOf = new Map<number, number>();
  readonly #members: number[][] = [];

  constructor(nodes: readonly IsolationNode[]) {
    const byBus = new Map<number, IsolationNode[]>();
    for (const n of nodes) {
      this.#byBdf.set(n.bdf, n);
      if (n.secondaryBus !== undefined) this.#busSelf.set(n.secondaryBus, n);
      const list = byBus.get(n.bdf >>> 8);
      if (list === undefined) byBus.set(n.bdf >>> 8, [n]);
      else list.push(n);
    }
    for (const list of byBus.values()) list.sort((a, b) => a.bdf - b.bdf);
    // pci_bus_add_devices: a bus's functions first, then each bridge's bus below, depth first.
    const visit = (bus: number): void => {
      const list = byBus.get(bus) ?? [];
      this.#order.push(...list);
      for (const n of list) if (n.secondaryBus !== undefined) visit(n.secondaryBus);
    };
    const roots = [...new Set(nodes.filter((n) => n.parent === null).map((n) => n.bdf >>> 8))].sort((a, b) => a - b);
    for (const bus of roots) visit(bus);
  }

  run(): GroupsResult {
    const devices: DeviceGroupInfo[] = [];
    const byBdf = new Map<number, DeviceGroupInfo>();
    for (const n of this.#order) {
      const group = this.#deviceGroup(n);
      this.#groupOf.set(n.bdf, group);
      (this.#members[group] as number[]).push(n.bdf);
      const aliases = this.#dmaAliases(n);
      const topo = aliases.filter((a) => a.dev !== n);
      const info: DeviceGroupInfo = {
        bdf: n.bdf,
        group,
        dmaAliases: aliases.map((a) => a.rid),
        requesterId: topo.length > 0 ? (topo[topo.length - 1] as Alias).rid : n.bdf,
      };
      devices.push(info);
      byBdf.set(n.bdf, info);
    }
    const groups = this.#members.map((members, id) => ({ id, members }));
    return { ok: true, groups, devices, byBdf };
  }

  /** `pci_device_group()`. */
  #deviceGroup(dev: IsolationNode): number {
    // Step 1: the upstream DMA alias; a function must not be aliased by topology to have its own group.
    let pdev = dev;
    for (const a of this.#dmaAliases(dev)) {
      pdev = a.dev;
      const g = this.#groupOf.get(a.dev.bdf);
      if (g !== undefined) return g;
    }
    // Step 2: up to the point where peer-to-peer DMA is stopped by ACS.
    for (let bus = pdev.bdf >>> 8; !this.#isRootBus(bus); ) {
      const self = this.#busSelf.get(bus) as IsolationNode;
      if (this.#acsPathEnabled(self, REQ_ACS_FLAGS)) break;
      pdev = self;
      const g = this.#groupOf.get(pdev.bdf);
      if (g !== undefined) return g;
      bus = self.bdf >>> 8;
    }
    // Steps 3 and 4 share one visited set of devfns, as Linux's bitmap.
    const visited = new Set<number>();
    const g = this.#aliasGroup(pdev, visited) ?? this.#functionAliasGroup(pdev, visited);
    if (g !== undefined) return g;
    this.#members.push([]);
    return this.#members.length - 1;
  }

  #isRootBus(bus: number): boolean {
    return !this.#busSelf.has(bus);
  }

  /** `pci_for_each_dma_alias`: (device, requester id) pairs from the function up to the root bus. */
  #dmaAliases(dev: IsolationNode): Alias[] {
    const bus = dev.bdf >>> 8;
    const out: Alias[] = [{ dev, rid: dev.bdf }];
    for (const devfn of [...new Set(dev.dmaAliasDevfns ?? [])].sort((a, b) => a - b)) out.push({ dev, rid: (bus << 8) | devfn });
    for (let b = bus; !this.#isRootBus(b); ) {
      const tmp = this.#busSelf.get(b) as IsolationNode;
      if (tmp.kind === 'pcie-to-pci-bridge') out.push({ dev: tmp, rid: (tmp.secondaryBus as number) << 8 });
      else if (tmp.kind === 'pci-bridge') out.push({ dev: tmp, rid: tmp.bdf });
      b = tmp.bdf >>> 8;
    }
    return out;
  }

  /** `pci_acs_enabled`. */
  #acsEnabled(n: IsolationNode, flags: number): boolean {
    switch (n.kind) {
      case 'pci-endpoint':
      case 'pci-bridge':
      case 'pcie-to-pci-bridge':
        return false;
      case 'root-port':
      case 'downstream-port':
        return acsFlagsEnabled(n, flags);
      case 'endpoint':
      case 'rc-endpoint':
      case 'upstream-port':
        return n.multifunction === true ? acsFlagsEnabled(n, flags) : true;
    }
  }

  /** `pci_acs_path_enabled(start, NULL, flags)`: ACS on `start` and every bridge above it. */
  #acsPathEnabled(start: IsolationNode, flags: number): boolean {
    for (let pdev = start; ; ) {
      if (!this.#acsEnabled(pdev, flags)) return false;
      const bus = pdev.bdf >>> 8;
      if (this.#isRootBus(bus)) return true;
      pdev = this.#busSelf.get(bus) as IsolationNode;
    }
  }

  /** `get_pci_alias_group`: an existing group of `pdev`, or of a quirk alias of it on its bus. */
  #aliasGroup(pdev: IsolationNode, visited: Set<number>): number | undefined {
    const devfn = pdev.bdf & 0xff;
    if (visited.has(devfn)) return undefined;
    visited.add(devfn);
    const own = this.#groupOf.get(pdev.bdf);
    if (own !== undefined) return own;
    for (const tmp of this.#order) {
      if (tmp === pdev || tmp.bdf >>> 8 !== pdev.bdf >>> 8 || !areDmaAliases(pdev, tmp)) continue;
      const g = this.#aliasGroup(tmp, visited) ?? this.#functionAliasGroup(tmp, visited);
      if (g !== undefined) return g;
    }
    return undefined;
  }

  /** `get_pci_function_alias_group`: another non-isolated function of the same slot with a group. */
  #functionAliasGroup(pdev: IsolationNode, visited: Set<number>): number | undefined {
    if (pdev.multifunction !== true || this.#acsEnabled(pdev, REQ_ACS_FLAGS)) return undefined;
    for (const tmp of this.#order) {
      if (tmp === pdev || tmp.bdf >>> 8 !== pdev.bdf >>> 8 || tmp.bdf >>> 3 !== pdev.bdf >>> 3) continue;
      if (this.#acsEnabled(tmp, REQ_ACS_FLAGS)) continue;
      const g = this.#aliasGroup(tmp, visited);
      if (g !== undefined) return g;
    }
    return undefined;
  }
}

interface Alias {
  readonly dev: IsolationNode;
  readonly rid: number;
}

/** `pci_acs_flags_enabled`: flags the capability does not list are hard-wired on. */
function acsFlagsEnabled(n: IsolationNode, flags: number): boolean {
  if (n.acs === undefined) return false;
  const need = flags & (n.acs.cap | PciAcs.EC);
  return (n.acs.ctrl & need) === need;
}

/** `pci_devs_are_dma_aliases`: either function lists the other's devfn as a quirk alias. */
function areDmaAliases(a: IsolationNode, b: IsolationNode): boolean {
  return (a.dmaAliasDevfns?.includes(b.bdf & 0xff) ?? false) || (b.dmaAliasDevfns?.includes(a.bdf & 0xff) ?? false);
}
