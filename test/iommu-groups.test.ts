import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  PciAcs,
  REQ_ACS_FLAGS,
  bdfOf,
  computeGroups,
  formatBdf,
  type GroupsResult,
  type IsolationGraph,
  type IsolationNode,
  type PciNodeKind,
} from '../iommu/groups.ts';

/** ACS with everything Linux requires advertised and enabled. */
const ACS = { cap: REQ_ACS_FLAGS | PciAcs.TB | PciAcs.EC, ctrl: REQ_ACS_FLAGS } as const;
/** An ACS capability present but switched off. */
const ACS_OFF = { cap: REQ_ACS_FLAGS, ctrl: 0 } as const;

/** Parses `bb:dd.f`. */
function b(s: string): number {
  const m = /^([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/.exec(s);
  if (m === null) throw new Error(`bad bdf ${s}`);
  return bdfOf(parseInt(m[1] as string, 16), parseInt(m[2] as string, 16), parseInt(m[3] as string, 16));
}

type NodeOpts = Partial<Omit<IsolationNode, 'bdf' | 'kind' | 'parent'>>;
function node(bdf: string, kind: PciNodeKind, parent: string | null, opts: NodeOpts = {}): IsolationNode {
  return { bdf: b(bdf), kind, parent: parent === null ? null : b(parent), ...opts };
}

function groups(graph: IsolationGraph): GroupsResult {
  const r = computeGroups(graph);
  if (!r.ok) throw new Error(`${r.error}: ${r.message}`);
  return r;
}

/** The partition as sorted lists of `bb:dd.f`, for comparing with Linux's `/sys/kernel/iommu_groups`. */
function partition(r: GroupsResult): string[][] {
  return r.groups.map((g) => g.members.map(formatBdf));
}

function groupOf(r: GroupsResult, bdf: string): number {
  return (r.byBdf.get(b(bdf)) as { group: number }).group;
}

describe('IOMMU groups: devices on the root bus', () => {
  it('root-complex integrated endpoints each get their own group, in probe order', () => {
    const r = groups({ nodes: [node('00:03.0', 'rc-endpoint', null), node('00:02.0', 'rc-endpoint', null), node('00:04.0', 'pci-endpoint', null)] });
    expect(partition(r)).toEqual([['00:02.0'], ['00:03.0'], ['00:04.0']]);
    expect(r.groups.map((g) => g.id)).toEqual([0, 1, 2]);
    expect(r.byBdf.get(b('00:03.0'))).toEqual({ bdf: b('00:03.0'), group: 1, dmaAliases: [b('00:03.0')], requesterId: b('00:03.0') });
  });

  it('functions of a multifunction device without ACS share one group', () => {
    const mf = { multifunction: true };
    const r = groups({
      nodes: [node('00:1f.0', 'rc-endpoint', null, mf), node('00:1f.2', 'rc-endpoint', null, mf), node('00:1f.3', 'rc-endpoint', null, mf), node('00:02.0', 'rc-endpoint', null)],
    });
    expect(partition(r)).toEqual([['00:02.0'], ['00:1f.0', '00:1f.2', '00:1f.3']]);
  });

  it('functions with ACS are isolated; the others of the slot still share', () => {
    const r = groups({
      nodes: [
        node('00:1f.0', 'rc-endpoint', null, { multifunction: true, acs: ACS }),
        node('00:1f.1', 'rc-endpoint', null, { multifunction: true }),
        node('00:1f.2', 'rc-endpoint', null, { multifunction: true, acs: ACS_OFF }),
        node('00:1f.3', 'rc-endpoint', null, { multifunction: true, acs: ACS }),
      ],
    });
    expect(partition(r)).toEqual([['00:1f.0'], ['00:1f.1', '00:1f.2'], ['00:1f.3']]);
  });

  it('ACS flags the capability does not advertise count as hard-wired on', () => {
    const hardwired = { cap: PciAcs.SV, ctrl: PciAcs.SV };
    const missing = { cap: REQ_ACS_FLAGS, ctrl: REQ_ACS_FLAGS & ~PciAcs.UF };
    const r = groups({
      nodes: [
        node('00:1f.0', 'rc-endpoint', null, { multifunction: true, acs: hardwired }),
        node('00:1f.1', 'rc-endpoint', null, { multifunction: true, acs: missing }),
        node('00:1f.2', 'rc-endpoint', null, { multifunction: true, acs: missing }),
      ],
    });
    expect(partition(r)).toEqual([['00:1f.0'], ['00:1f.1', '00:1f.2']]);
  });

  it('conventional PCI multifunction devices never have ACS, whatever the graph says', () => {
    const r = groups({ nodes: [node('00:05.0', 'pci-endpoint', null, { multifunction: true, acs: ACS }), node('00:05.1', 'pci-endpoint', null, { multifunction: true, acs: ACS })] });
    expect(partition(r)).toEqual([['00:05.0', '00:05.1']]);
  });

  it('DMA alias quirks put a function and its alias in one group', () => {
    const r = groups({ nodes: [node('00:05.0', 'rc-endpoint', null, { dmaAliasDevfns: [b('00:06.0') & 0xff] }), node('00:06.0', 'rc-endpoint', null), node('00:07.0', 'rc-endpoint', null)] });
    expect(partition(r)).toEqual([['00:05.0', '00:06.0'], ['00:07.0']]);
    expect(r.byBdf.get(b('00:05.0'))?.dmaAliases).toEqual([b('00:05.0'), b('00:06.0')]);
    expect(r.byBdf.get(b('00:05.0'))?.requesterId).toBe(b('00:05.0'));
  });
});

describe('IOMMU groups: root ports', () => {
  it('a root port with ACS isolates what is below it', () => {
    const r = groups({
      nodes: [
        node('00:1c.0', 'root-port', null, { secondaryBus: 1, acs: ACS }),
        node('01:00.0', 'endpoint', '00:1c.0', { multifunction: true }),
        node('01:00.1', 'endpoint', '00:1c.0', { multifunction: true }),
        node('00:1c.1', 'root-port', null, { secondaryBus: 2, acs: ACS }),
        node('02:00.0', 'endpoint', '00:1c.1'),
      ],
    });
    expect(partition(r)).toEqual([['00:1c.0'], ['00:1c.1'], ['01:00.0', '01:00.1'], ['02:00.0']]);
    expect(r.byBdf.get(b('02:00.0'))?.requesterId).toBe(b('02:00.0'));
  });

  it('a root port without ACS shares its group with everything below it', () => {
    const r = groups({
      nodes: [node('00:1c.0', 'root-port', null, { secondaryBus: 1 }), node('01:00.0', 'endpoint', '00:1c.0'), node('00:1d.0', 'root-port', null, { secondaryBus: 2, acs: ACS_OFF }), node('02:00.0', 'endpoint', '00:1d.0')],
    });
    expect(partition(r)).toEqual([['00:1c.0', '01:00.0'], ['00:1d.0', '02:00.0']]);
  });

  it('multifunction root ports without ACS (a PCH without ACS) share one group with all below them', () => {
    const mf = { multifunction: true };
    const r = groups({
      nodes: [
        node('00:1c.0', 'root-port', null, { secondaryBus: 1, ...mf }),
        node('00:1c.4', 'root-port', null, { secondaryBus: 2, ...mf }),
        node('01:00.0', 'endpoint', '00:1c.0'),
        node('02:00.0', 'endpoint', '00:1c.4'),
        node('00:1f.0', 'rc-endpoint', null),
      ],
    });
    expect(partition(r)).toEqual([['00:1c.0', '00:1c.4', '01:00.0', '02:00.0'], ['00:1f.0']]);
  });
});

describe('IOMMU groups: PCIe switches', () => {
  /** Root port -> switch (upstream port 01:00.0, downstream ports 02:00.0 and 02:01.0) -> endpoints. */
  function sw(rootAcs: boolean, dsp0Acs: boolean, dsp1Acs: boolean): IsolationGraph {
    const acs = (on: boolean): NodeOpts => (on ? { acs: ACS } : {});
    return {
      nodes: [
        node('00:01.0', 'root-port', null, { secondaryBus: 1, ...acs(rootAcs) }),
        node('01:00.0', 'upstream-port', '00:01.0', { secondaryBus: 2 }),
        node('02:00.0', 'downstream-port', '01:00.0', { secondaryBus: 3, ...acs(dsp0Acs) }),
        node('02:01.0', 'downstream-port', '01:00.0', { secondaryBus: 4, ...acs(dsp1Acs) }),
        node('03:00.0', 'endpoint', '02:00.0'),
        node('04:00.0', 'endpoint', '02:01.0', { multifunction: true }),
        node('04:00.1', 'endpoint', '02:01.0', { multifunction: true }),
      ],
    };
  }

  it('ACS everywhere: every port and device on its own (functions of one non-ACS device together)', () => {
    expect(partition(groups(sw(true, true, true)))).toEqual([['00:01.0'], ['01:00.0'], ['02:00.0'], ['02:01.0'], ['03:00.0'], ['04:00.0', '04:00.1']]);
  });

  it('a downstream port without ACS: the devices below it join its group; its peer port stays isolated', () => {
    const r = groups(sw(true, true, false));
    expect(partition(r)).toEqual([['00:01.0'], ['01:00.0'], ['02:00.0'], ['02:01.0', '04:00.0', '04:00.1'], ['03:00.0']]);
  });

  it('no ACS at the root port: the whole switch and everything below it is one group', () => {
    const r = groups(sw(false, true, true));
    expect(partition(r)).toEqual([['00:01.0', '01:00.0', '02:00.0', '02:01.0', '03:00.0', '04:00.0', '04:00.1']]);
    expect(groupOf(r, '03:00.0')).toBe(groupOf(r, '00:01.0'));
  });

  it('a multifunction upstream port needs ACS of its own', () => {
    const g = sw(true, true, true);
    const nodes = g.nodes.map((n) => (n.bdf === b('01:00.0') ? { ...n, multifunction: true } : n));
    const r = groups({ nodes });
    // The upstream port fails ACS, so the downstream ports (and all below) fall into its group.
    expect(partition(r)).toEqual([['00:01.0'], ['01:00.0', '02:00.0', '02:01.0', '03:00.0', '04:00.0', '04:00.1']]);
  });
});

describe('IOMMU groups: PCIe-to-PCI and PCI bridges', () => {
  const graph: IsolationGraph = {
    nodes: [
      node('00:1e.0', 'root-port', null, { secondaryBus: 1, acs: ACS }),
      node('01:00.0', 'pcie-to-pci-bridge', '00:1e.0', { secondaryBus: 2 }),
      node('02:00.0', 'pci-endpoint', '01:00.0'),
      node('02:01.0', 'pci-endpoint', '01:00.0'),
      node('02:02.0', 'pci-bridge', '01:00.0', { secondaryBus: 3 }),
      node('03:04.0', 'pci-endpoint', '02:02.0'),
      node('00:02.0', 'rc-endpoint', null),
    ],
  };

  it('everything behind a PCIe-to-PCI bridge shares the bridge\'s group', () => {
    const r = groups(graph);
    expect(partition(r)).toEqual([['00:02.0'], ['00:1e.0'], ['01:00.0', '02:00.0', '02:01.0', '02:02.0', '03:04.0']]);
  });

  it('requester ids alias to the bridge\'s secondary bus, devfn 00.0 (and to a PCI bridge\'s own id)', () => {
    const r = groups(graph);
    expect(r.byBdf.get(b('02:01.0'))?.dmaAliases).toEqual([b('02:01.0'), b('02:00.0')]);
    expect(r.byBdf.get(b('02:01.0'))?.requesterId).toBe(0x0200);
    expect(r.byBdf.get(b('03:04.0'))?.dmaAliases).toEqual([b('03:04.0'), b('02:02.0'), b('02:00.0')]);
    expect(r.byBdf.get(b('03:04.0'))?.requesterId).toBe(0x0200);
    // The bridge itself and the port above it use their own ids.
    expect(r.byBdf.get(b('01:00.0'))?.requesterId).toBe(b('01:00.0'));
    expect(r.byBdf.get(b('00:1e.0'))?.dmaAliases).toEqual([b('00:1e.0')]);
  });

  it('a conventional PCI bridge on the root bus groups everything behind it under its own id', () => {
    const r = groups({ nodes: [node('00:1e.0', 'pci-bridge', null, { secondaryBus: 5 }), node('05:00.0', 'pci-endpoint', '00:1e.0'), node('05:01.0', 'pci-endpoint', '00:1e.0')] });
    expect(partition(r)).toEqual([['00:1e.0', '05:00.0', '05:01.0']]);
    expect(r.byBdf.get(b('05:01.0'))?.requesterId).toBe(b('00:1e.0'));
  });
});

describe('IOMMU groups: malformed graphs are refused, never thrown at', () => {
  const rp = node('00:1c.0', 'root-port', null, { secondaryBus: 1 });
  const cases: [string, IsolationGraph, string][] = [
    ['duplicate-bdf', { nodes: [rp, rp] }, 'duplicate-bdf'],
    ['unknown parent', { nodes: [node('01:00.0', 'endpoint', '00:1c.0')] }, 'unknown-parent'],
    ['parent is an endpoint', { nodes: [node('00:02.0', 'endpoint', null), node('01:00.0', 'endpoint', '00:02.0')] }, 'parent-not-bridge'],
    ['wrong bus for the parent', { nodes: [rp, node('02:00.0', 'endpoint', '00:1c.0')] }, 'bus-mismatch'],
    ['no parent on a bridged bus', { nodes: [rp, node('01:00.0', 'endpoint', null)] }, 'bus-mismatch'],
    ['bridge without secondary bus', { nodes: [node('00:1c.0', 'root-port', null)] }, 'bad-secondary-bus'],
    ['endpoint with a secondary bus', { nodes: [node('00:02.0', 'endpoint', null, { secondaryBus: 3 })] }, 'bad-secondary-bus'],
    ['two bridges to one bus', { nodes: [rp, node('00:1c.1', 'root-port', null, { secondaryBus: 1 })] }, 'duplicate-bus'],
    [
      'a cycle of bridges',
      { nodes: [node('01:00.0', 'pci-bridge', '02:00.0', { secondaryBus: 2 }), node('02:00.0', 'pci-bridge', '01:00.0', { secondaryBus: 1 })] },
      'cycle',
    ],
    ['bad kind', { nodes: [{ bdf: 0, kind: 'gpu' as PciNodeKind, parent: null }] }, 'bad-node'],
    ['bad bdf', { nodes: [{ bdf: 0x10000, kind: 'endpoint', parent: null }] }, 'bad-node'],
    ['no nodes array', {} as IsolationGraph, 'bad-node'],
  ];
  for (const [name, graph, code] of cases) {
    it(name, () => {
      const r = computeGroups(graph);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toBe(code);
    });
  }

  it('an empty graph has no groups', () => {
    expect(groups({ nodes: [] }).groups).toEqual([]);
  });
});

describe('IOMMU groups: properties over random topologies', () => {
  const kinds: PciNodeKind[] = ['endpoint', 'rc-endpoint', 'pci-endpoint', 'root-port', 'upstream-port', 'downstream-port', 'pcie-to-pci-bridge', 'pci-bridge'];
  const bridges = new Set<PciNodeKind>(['root-port', 'upstream-port', 'downstream-port', 'pcie-to-pci-bridge', 'pci-bridge']);

  /** A random valid tree: each node goes on the root bus or below an earlier bridge. */
  const treeArb = fc
    .array(
      fc.record({
        kind: fc.constantFrom(...kinds),
        under: fc.nat(),
        dev: fc.integer({ min: 0, max: 3 }),
        fn: fc.integer({ min: 0, max: 2 }),
        mf: fc.boolean(),
        acs: fc.constantFrom(undefined, ACS, ACS_OFF),
      }),
      { maxLength: 14 },
    )
    .map((specs) => {
      const nodes: IsolationNode[] = [];
      const bridgeList: IsolationNode[] = [];
      let nextBus = 1;
      const used = new Set<number>();
      for (const s of specs) {
        const parent = s.under % (bridgeList.length + 1) === 0 ? undefined : bridgeList[(s.under % (bridgeList.length + 1)) - 1];
        const bus = parent === undefined ? 0 : (parent.secondaryBus as number);
        const bdf = bdfOf(bus, s.dev, s.fn);
        if (used.has(bdf)) continue;
        used.add(bdf);
        const n: IsolationNode = {
          bdf,
          kind: s.kind,
          parent: parent === undefined ? null : parent.bdf,
          multifunction: s.mf,
          ...(s.acs === undefined ? {} : { acs: s.acs }),
          ...(bridges.has(s.kind) ? { secondaryBus: nextBus++ } : {}),
        };
        nodes.push(n);
        if (bridges.has(s.kind)) bridgeList.push(n);
      }
      return nodes;
    });

  it('every function is in exactly one group; input order does not matter; aliases end at the requester id', () => {
    fc.assert(
      fc.property(treeArb, fc.integer(), (nodes, seed) => {
        const r = groups({ nodes });
        const seen = r.groups.flatMap((g) => g.members);
        expect([...seen].sort((x, y) => x - y)).toEqual(nodes.map((n) => n.bdf).sort((x, y) => x - y));
        for (const g of r.groups) expect(g.members.length).toBeGreaterThan(0);
        for (const d of r.devices) {
          expect(r.groups[d.group]?.members).toContain(d.bdf);
          expect(d.dmaAliases[0]).toBe(d.bdf);
          if (d.dmaAliases.length > 1) expect(d.requesterId).toBe(d.dmaAliases[d.dmaAliases.length - 1]);
        }
        // Linux probes in bus order, so a shuffled description gives the same answer.
        const shuffled = [...nodes].sort((x, y) => ((x.bdf * 2654435761 + seed) >>> 0) - ((y.bdf * 2654435761 + seed) >>> 0));
        expect(partition(groups({ nodes: shuffled }))).toEqual(partition(r));
        // Behind a PCIe-to-PCI or PCI bridge, a function is always in its bridge's group.
        for (const n of nodes) {
          if (n.parent === null) continue;
          const p = nodes.find((x) => x.bdf === n.parent) as IsolationNode;
          if (p.kind === 'pcie-to-pci-bridge' || p.kind === 'pci-bridge') expect(r.byBdf.get(n.bdf)?.group).toBe(r.byBdf.get(p.bdf)?.group);
        }
      }),
      { seed: 42, numRuns: 300 },
    );
  });

  it('arbitrary junk never throws', () => {
    const junk = fc.anything({ maxDepth: 3 });
    fc.assert(
      fc.property(fc.oneof(junk, fc.record({ nodes: fc.array(fc.oneof(junk, fc.record({ bdf: fc.integer({ min: -1, max: 0x10000 }), kind: fc.constantFrom(...kinds, 'x'), parent: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 0x300 })), secondaryBus: fc.integer({ min: -1, max: 4 }) }, { requiredKeys: ['bdf', 'kind', 'parent'] })), { maxLength: 8 }) })), (g) => {
        const r = computeGroups(g as IsolationGraph);
        expect(typeof r.ok).toBe('boolean');
      }),
      { seed: 42, numRuns: 400 },
    );
  });
});
