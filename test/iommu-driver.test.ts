/**
 * The kernel's IOMMU driver (`kernel-shim/iommu`) against the VT-d unit model: the tables it writes are the
 * ones the hardware walks (root and context entries read back through RTADDR, `explain()` of a mapped
 * IOVA), faults reach dmesg as Linux's DMAR lines, the boot log and sysfs look like Linux's, groups behind
 * a PCIe-to-PCI bridge get a context entry for every DMA alias, `intel_iommu=off` / no unit / `iommu=pt`
 * route the DMA API directly, and the domain API VFIO and iommufd use (allocDomain, attachGroup, map,
 * unmap, detachGroup, freeDomain) behaves as `drivers/iommu/iommu.c` does.
 */
import { devicePort } from './dma-port.ts';
import { describe, expect, it } from 'vitest';
import { createMachine, type Machine } from '../machine/index.ts';
import type { MachineConfigInput } from '../kernel-shim/index.ts';
import { bootKernel, type Kernel } from '../kernel-shim/kernel.ts';
import { E } from '../kernel-shim/errno.ts';
import { DMA_DIR } from '../kernel-shim/dma/mapping.ts';
import type { PciDev } from '../kernel-shim/pci/dev.ts';
import { allocKernelPages } from '../kernel-shim/uio/kmem.ts';
import { O } from '../kernel-shim/uapi/linux.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import { DmaStatus } from '../sim/index.ts';

const PAGE = 4096;
const RTADDR = 0x20;
const EDU_BDF = '00:03.0';

interface Rig {
  readonly machine: Machine;
  readonly kernel: Kernel;
  readonly dev: PciDev;
  readonly rid: number;
  /** A device read of `len` bytes at bus address `addr` through the real DMA path. */
  read(addr: number, len?: number): { status: number; reason: number; bytes: Uint8Array };
  /** A device write of `bytes` at bus address `addr`. */
  write(addr: number, bytes: Uint8Array): { status: number; reason: number };
}

const EDU_ONLY: MachineConfigInput = { memory: { size: '64MiB' }, iommu: { enabled: true }, pci: { devices: [{ type: 'edu', bdf: EDU_BDF }] } };

/** Boots `config` with `cmdline`; the device at `bdf` is enabled and bus-mastering. */
function rig(cmdline = '', config: MachineConfigInput = EDU_ONLY, bdf = EDU_BDF): Rig {
  const machine = createMachine(config);
  const kernel = bootKernel(machine, { cmdline });
  const dev = kernel.pci.device(`0000:${bdf}`);
  if (dev === undefined) throw new Error(`no device at ${bdf}`);
  dev.enable();
  dev.setMaster();
  return { machine, kernel, dev, ...devicePort(machine, bdf) };

}

/** One zeroed kernel page: its physical address and its bytes. */
function kpage(kernel: Kernel): { phys: number; bytes: Uint8Array } {
  const p = allocKernelPages(kernel, PAGE);
  if (typeof p === 'number') throw new Error('out of memory');
  return { phys: (p.frames[0] as number) * PAGE, bytes: new Uint8Array(p.buffer) };
}

function core(k: Kernel) {
  const c = k.iommu;
  if (c === null) throw new Error('no IOMMU');
  return c;
}

function groupOf(k: Kernel, dev: PciDev) {
  const g = core(k).groupOf(dev);
  if (g === undefined) throw new Error(`no group for ${dev.name}`);
  return g;
}

function dmesgLines(k: Kernel): string[] {
  return k.log.records.map((r) => r.text);
}

/** The 128-bit context entry of `rid` as the hardware finds it: RTADDR -> root entry -> context table. */
function contextEntry(m: Machine, rid: number): { rootLo: bigint; lo: bigint; hi: bigint } {
  const base = m.config.iommu.base;
  const rta = Number(m.mmio.read64(base + RTADDR) & ~0xfffn);
  const rootLo = m.memory.read64(rta + (rid >>> 8) * 16);
  const ctp = Number(rootLo & ~0xfffn);
  const a = ctp + (rid & 0xff) * 16;
  return { rootLo, lo: m.memory.read64(a), hi: m.memory.read64(a + 8) };
}

/** Runs the simulator until no event is left (the fault interrupt is an event). */
function settle(m: Machine): void {
  m.sim.runSync();
}

describe('the driver writes tables the hardware walks', () => {
  it('a DMA-API mapping is reachable by the device: reads and writes hit the kernel page', () => {
    const r = rig();
    const pg = kpage(r.kernel);
    pg.bytes.set([1, 2, 3, 4, 5, 6, 7, 8], 0x40);
    const dma = r.kernel.dma.mapPage(r.dev, pg.phys + 0x40, 64, DMA_DIR.BIDIRECTIONAL);
    expect(dma).toBeGreaterThan(0);
    expect(dma % PAGE).toBe(0x40);
    const rd = r.read(dma);
    expect(rd.status).toBe(DmaStatus.OK);
    expect([...rd.bytes]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(r.write(dma + 8, new Uint8Array([9, 9, 9])).status).toBe(DmaStatus.OK);
    expect([...pg.bytes.subarray(0x48, 0x4b)]).toEqual([9, 9, 9]);
    // The walk the unit does for it, without side effects.
    const ex = r.machine.iommu?.explain(r.rid, dma);
    expect(ex?.mode).toBe('translated');
    expect(ex?.ok).toBe(true);
    expect(ex?.phys).toBe(BigInt(pg.phys + 0x40));
    expect(ex?.levels).toBe(4);
    expect(ex?.steps.map((s) => s.entry)).toEqual(['root', 'context', 'pte', 'pte', 'pte', 'pte']);
    expect(ex?.perm).toEqual({ read: true, write: true });
  });

  it('root and context entries in memory point at the domain table (TT 0, AW 48-bit, the domain id)', () => {
    const r = rig();
    const g = groupOf(r.kernel, r.dev);
    const d = g.defaultDomain;
    if (d === undefined || d.table === null) throw new Error('no default table');
    const { rootLo, lo, hi } = contextEntry(r.machine, r.rid);
    expect(rootLo & 1n).toBe(1n);
    expect(lo & 1n).toBe(1n);
    expect(Number((lo >> 2n) & 3n)).toBe(0);
    expect(Number(lo & ~0xfffn)).toBe(d.table.root);
    expect(Number(hi & 7n)).toBe(2);
    expect(Number((hi >> 8n) & 0xffffn)).toBe(d.did);
    expect(d.did).toBe(1);
  });

  it('a read of an unmapped IOVA faults (0x06) and dmesg gets the DMAR lines after the fault interrupt', () => {
    const r = rig();
    const before = dmesgLines(r.kernel).length;
    const rd = r.read(0x1234_5000);
    expect(rd.status).toBe(DmaStatus.FAULT);
    expect(rd.reason).toBe(0x06);
    settle(r.machine);
    const got = dmesgLines(r.kernel).slice(before);
    expect(got).toEqual([
      'DMAR: DRHD: handling fault status reg 2',
      'DMAR: [DMA Read NO_PASID] Request device [00:03.0] fault addr 0x12345000 [fault reason 0x06] PTE Read access is not set',
    ]);
  });

  it('a write to an unmapped IOVA faults with 0x05, and to a read-only (TO_DEVICE) mapping too', () => {
    const r = rig();
    const before = dmesgLines(r.kernel).length;
    expect(r.write(0x7000, new Uint8Array(4))).toEqual({ status: DmaStatus.FAULT, reason: 0x05 });
    settle(r.machine);
    const pg = kpage(r.kernel);
    const dma = r.kernel.dma.mapPage(r.dev, pg.phys, PAGE, DMA_DIR.TO_DEVICE);
    expect(r.read(dma).status).toBe(DmaStatus.OK);
    expect(r.write(dma, new Uint8Array(4))).toEqual({ status: DmaStatus.FAULT, reason: 0x05 });
    settle(r.machine);
    const got = dmesgLines(r.kernel).slice(before);
    expect(got).toContain('DMAR: [DMA Write NO_PASID] Request device [00:03.0] fault addr 0x7000 [fault reason 0x05] PTE Write access is not set');
    expect(got).toContain(`DMAR: [DMA Write NO_PASID] Request device [00:03.0] fault addr 0x${dma.toString(16)} [fault reason 0x05] PTE Write access is not set`);
    expect(got.filter((l) => l.startsWith('DMAR: DRHD: handling fault status reg'))).toHaveLength(2);
  });
});

describe('boot log', () => {
  const common = [
    'DMAR: Host address width 48',
    'DMAR: DRHD base: 0x000000fed90000 flags: 0x1',
  ];

  it('strict translated default (Linux iommu_subsys_init and intel_iommu_init lines, in order)', () => {
    const r = rig();
    const lines = dmesgLines(r.kernel);
    const cap = r.machine.iommu?.read64(0x08).toString(16);
    const ecap = r.machine.iommu?.read64(0x10).toString(16);
    const want = [
      ...common,
      `DMAR: dmar0: reg_base_addr fed90000 ver 1:0 cap ${cap} ecap ${ecap}`,
      'iommu: Default domain type: Translated',
      'iommu: DMA domain TLB invalidation policy: strict mode',
      'pci 0000:00:03.0: Adding to iommu group 0',
      'DMAR: Intel(R) Virtualization Technology for Directed I/O',
    ];
    const at = want.map((w) => lines.indexOf(w));
    expect(at.every((i) => i >= 0), `missing: ${want.filter((_, i) => (at[i] as number) < 0).join(' | ')}`).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
  });

  it('iommu=pt: "Passthrough (set via kernel command line)", no TLB policy line', () => {
    const lines = dmesgLines(rig('iommu=pt').kernel);
    expect(lines).toContain('iommu: Default domain type: Passthrough (set via kernel command line)');
    expect(lines.some((l) => l.startsWith('iommu: DMA domain TLB invalidation policy'))).toBe(false);
  });

  it('iommu.strict=0: lazy mode (set via kernel command line)', () => {
    const lines = dmesgLines(rig('iommu.strict=0').kernel);
    expect(lines).toContain('iommu: Default domain type: Translated');
    expect(lines).toContain('iommu: DMA domain TLB invalidation policy: lazy mode (set via kernel command line)');
  });
});

async function readText(sys: Sys, path: string): Promise<string> {
  const fd = await sys.open(path, O.RDONLY);
  const b = new Uint8Array(4096);
  const n = await sys.read(fd, b);
  await sys.close(fd);
  return new TextDecoder().decode(b.subarray(0, n));
}

describe('sysfs', () => {
  async function inProcess(r: Rig, main: (sys: Sys) => Promise<void>): Promise<void> {
    let err: unknown;
    const p = r.kernel.spawn({ comm: 'cat' }, async (sys) => {
      try {
        await main(sys);
      } catch (e) {
        err = e;
      }
    });
    await r.machine.sim.run();
    expect(await p.exited).toBe(0);
    if (err !== undefined) throw err;
  }

  it('groups, links, reserved_regions and type as Linux shows them', async () => {
    const r = rig();
    await inProcess(r, async (sys) => {
      expect(await sys.readlink('/sys/kernel/iommu_groups/0/devices/0000:00:03.0')).toBe('../../../../devices/pci0000:00/0000:00:03.0');
      expect(await sys.readlink('/sys/bus/pci/devices/0000:00:03.0/iommu_group')).toBe('../../../kernel/iommu_groups/0');
      expect(await readText(sys, '/sys/kernel/iommu_groups/0/reserved_regions')).toBe('0x00000000fee00000 0x00000000feefffff msi\n');
      expect(await readText(sys, '/sys/kernel/iommu_groups/0/type')).toBe('DMA\n');
      expect(await readText(sys, '/sys/class/iommu/dmar0/intel-iommu/domains_used')).toBe('1\n');
    });
  });

  it.each([
    ['iommu.strict=0', 'DMA-FQ\n'],
    ['iommu=pt', 'identity\n'],
    ['iommu.passthrough=1', 'identity\n'],
  ])('%s: the group type is %j', async (cmdline, type) => {
    const r = rig(cmdline);
    await inProcess(r, async (sys) => {
      expect(await readText(sys, '/sys/kernel/iommu_groups/0/type')).toBe(type);
    });
  });
});

describe('groups behind a PCIe-to-PCI bridge', () => {
  const bridged: MachineConfigInput = {
    memory: { size: '64MiB' },
    iommu: { enabled: true },
    pci: {
      bridges: [
        { kind: 'root-port', bdf: '00:1c.0', secondaryBus: 1 },
        { kind: 'pcie-to-pci-bridge', bdf: '01:00.0', secondaryBus: 2 },
      ],
      devices: [{ type: 'edu', bdf: '02:01.0' }, { type: 'edu', bdf: '02:02.0' }],
    },
  };

  it('both devices share a group whose every DMA alias has a context entry for its domain; DMA translates', () => {
    const r = rig('', bridged, '02:01.0');
    const other = r.kernel.pci.device('0000:02:02.0');
    if (other === undefined) throw new Error('no second edu');
    const g = groupOf(r.kernel, r.dev);
    expect(groupOf(r.kernel, other)).toBe(g);
    expect(r.rid).toBe(0x200);
    expect(g.rids).toEqual(expect.arrayContaining([0x200, 0x208, 0x210]));
    const d = g.defaultDomain;
    if (d === undefined || d.table === null) throw new Error('no default table');
    for (const rid of g.rids) {
      const { lo, hi } = contextEntry(r.machine, rid);
      expect(lo & 1n, `rid 0x${rid.toString(16)}`).toBe(1n);
      expect(Number(lo & ~0xfffn)).toBe(d.table.root);
      expect(Number((hi >> 8n) & 0xffffn)).toBe(d.did);
    }
    const pg = kpage(r.kernel);
    pg.bytes[0] = 0xab;
    const dma = r.kernel.dma.mapPage(r.dev, pg.phys, 8, DMA_DIR.TO_DEVICE);
    expect(r.read(dma).bytes[0]).toBe(0xab);
    // The message to the fault handler names the alias requester, as Linux's would.
    const before = dmesgLines(r.kernel).length;
    expect(r.read(0x5000).status).toBe(DmaStatus.FAULT);
    settle(r.machine);
    expect(dmesgLines(r.kernel).slice(before)).toContain('DMAR: [DMA Read NO_PASID] Request device [02:00.0] fault addr 0x5000 [fault reason 0x06] PTE Read access is not set');
  });
});

describe('no translation: intel_iommu=off, no unit, iommu=pt', () => {
  it.each([
    ['intel_iommu=off', EDU_ONLY],
    ['', { memory: { size: '64MiB' }, pci: { devices: [{ type: 'edu', bdf: EDU_BDF }] } } satisfies MachineConfigInput],
  ])('%j: kernel.iommu is null, the DMA API is direct (dma == phys) and DMA reaches the page', (cmdline, config) => {
    const r = rig(cmdline, config);
    expect(r.kernel.iommu).toBeNull();
    expect(r.kernel.dma.ops(r.dev).name).toBe('dma-direct');
    const pg = kpage(r.kernel);
    pg.bytes[5] = 0x5a;
    expect(r.kernel.dma.mapPage(r.dev, pg.phys + 5, 1, DMA_DIR.TO_DEVICE)).toBe(pg.phys + 5);
    expect(r.read(pg.phys + 5, 1).bytes[0]).toBe(0x5a);
    if (cmdline === 'intel_iommu=off') expect(dmesgLines(r.kernel)).toContain('DMAR: IOMMU disabled');
  });

  it('iommu=pt: context TT = 2 (pass-through), dma == phys, DMA works', () => {
    const r = rig('iommu=pt');
    expect(r.kernel.dma.ops(r.dev).name).toBe('dma-direct');
    const { lo, hi } = contextEntry(r.machine, r.rid);
    expect(lo & 1n).toBe(1n);
    expect(Number((lo >> 2n) & 3n)).toBe(2);
    expect(Number((hi >> 8n) & 0xffffn)).toBe(groupOf(r.kernel, r.dev).defaultDomain?.did);
    const pg = kpage(r.kernel);
    const dma = r.kernel.dma.mapPage(r.dev, pg.phys, PAGE, DMA_DIR.BIDIRECTIONAL);
    expect(dma).toBe(pg.phys);
    expect(r.write(dma + 16, new Uint8Array([7])).status).toBe(DmaStatus.OK);
    expect(pg.bytes[16]).toBe(7);
    expect(r.machine.iommu?.explain(r.rid, dma).mode).toBe('pass-through');
  });
});

describe('the domain API VFIO and iommufd use', () => {
  it('allocDomain, attachGroup, map, device DMA, unmap (IOTLB entry gone), detachGroup, freeDomain', () => {
    const r = rig();
    const c = core(r.kernel);
    const unit = r.machine.iommu;
    if (unit === undefined) throw new Error('no unit');
    unit.staleOracle = true;
    const g = groupOf(r.kernel, r.dev);
    const def = g.defaultDomain;
    const d = c.allocDomain('UNMANAGED');
    if (d === null || def === undefined) throw new Error('no domain');
    expect(d.did).toBe(2);
    expect(c.attachGroup(d, g)).toBe(0);
    expect(c.attachGroup(d, g)).toBe(0);
    expect(g.domain).toBe(d);
    // A DMA-API domain cannot be attached by a user (EINVAL); another UNMANAGED one finds the group busy.
    expect(c.attachGroup(def, g)).toBe(E.EINVAL);
    const d2 = c.allocDomain('UNMANAGED');
    if (d2 === null) throw new Error('no domain');
    expect(c.attachGroup(d2, g)).toBe(E.EBUSY);
    // map: EINVAL unaligned, EEXIST overlap.
    const pg = kpage(r.kernel);
    pg.bytes.set([0xde, 0xad], 0);
    expect(c.map(d, 0x10_0800, pg.phys, PAGE, 3)).toBe(E.EINVAL);
    expect(c.map(d, 0x10_0000, pg.phys + 8, PAGE, 3)).toBe(E.EINVAL);
    expect(c.map(d, 0x10_0000, pg.phys, 100, 3)).toBe(E.EINVAL);
    expect(c.map(d, 0x10_0000, pg.phys, PAGE, 3)).toBe(0);
    expect(c.map(d, 0x10_0000, pg.phys, PAGE, 3)).toBe(E.EEXIST);
    expect(d.mappedBytes).toBe(PAGE);
    expect(c.iovaToPhys(d, 0x10_0010)).toBe(pg.phys + 0x10);
    // Device DMA goes through it (twice: the second use is an IOTLB hit).
    expect([...r.read(0x10_0000, 2).bytes]).toEqual([0xde, 0xad]);
    expect([...r.read(0x10_0000, 2).bytes]).toEqual([0xde, 0xad]);
    expect(unit.explain(r.rid, 0x10_0000).iotlb).toBe(BigInt(pg.phys));
    // unmap returns the bytes and the IOTLB entry is gone: the next DMA faults, no stale use.
    expect(c.unmap(d, 0x10_0000, PAGE)).toBe(PAGE);
    expect(c.unmap(d, 0x10_0000, PAGE)).toBe(0);
    expect(d.mappedBytes).toBe(0);
    expect(c.iovaToPhys(d, 0x10_0000)).toBe(-1);
    expect(unit.explain(r.rid, 0x10_0000).iotlb).toBeNull();
    expect(r.read(0x10_0000, 2)).toMatchObject({ status: DmaStatus.FAULT, reason: 0x06 });
    expect(r.machine.sim.stats.counter('iommu', 'stale').value).toBe(0);
    // detachGroup: back to the default domain, whose context entry the device uses again.
    c.detachGroup(d, g);
    expect(g.domain).toBe(def);
    expect(Number((contextEntry(r.machine, r.rid).hi >> 8n) & 0xffffn)).toBe(def.did);
    const dma = r.kernel.dma.mapPage(r.dev, pg.phys, 2, DMA_DIR.TO_DEVICE);
    expect([...r.read(dma, 2).bytes]).toEqual([0xde, 0xad]);
    // freeDomain releases the domain id: the lowest free one is handed out next.
    c.freeDomain(d);
    expect(d.freed).toBe(true);
    expect(c.attachGroup(d, g)).toBe(E.EINVAL);
    const d3 = c.allocDomain('UNMANAGED');
    expect(d3?.did).toBe(2);
    expect(d2.did).toBe(3);
    settle(r.machine);
  });

  it('domain ids start at 1 (the default domain), 0 is never handed out', () => {
    const r = rig();
    const c = core(r.kernel);
    expect(groupOf(r.kernel, r.dev).defaultDomain?.did).toBe(1);
    const ds = [c.allocDomain('UNMANAGED'), c.allocDomain('UNMANAGED'), c.allocDomain('UNMANAGED')];
    expect(ds.map((d) => d?.did)).toEqual([2, 3, 4]);
    const mid = ds[1];
    if (mid === null || mid === undefined) throw new Error('no domain');
    c.freeDomain(mid);
    expect(c.allocDomain('UNMANAGED')?.did).toBe(3);
    expect(c.allocDomain('UNMANAGED')?.did).toBe(5);
  });
});
