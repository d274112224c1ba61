import { IdentityDmaPort, invariant, type DmaPort, type MsiSink, type PhysicalMemory, type Simulator } from '../../sim/index.ts';
import { ApexDevice, EduDevice, TestDevice, type PciFunction } from '../../device-models/index.ts';
import {
  VtdDmaPort, VtdUnit, computeGroups, formatBdf,
  type GroupsError, type GroupsResult, type IsolationGraph,
} from '../../iommu/index.ts';
import { assignBars, type BarAssignment } from './bar-assign.ts';
import { AliasMsi, AliasPort, RootComplex } from './dma-path.ts';
import { InterruptController } from './intc.ts';
import { MmioRouter, type MmioTarget } from './mmio-router.ts';
import { parseBdf, vtdOptionsOf, type IommuConfig, type PciConfig, type PciDeviceConfig } from './schema.ts';
import { intxLine, isolationGraphOf, probeOrder } from './topology.ts';

/** The device models a machine can hold. */
export type PciDeviceModel = EduDevice | TestDevice | ApexDevice;

/** One device function placed in the topology. */
export interface PciSlot {
  /** Its own requester id (`bus << 8 | devfn`). */
  readonly bdf: number;
  /** `bb:dd.f`. */
  readonly address: string;
  readonly type: PciDeviceConfig['type'];
  readonly fn: PciFunction;
  /** The device model. */
  readonly device: PciDeviceModel;
  /** The requester id its DMA and messages carry at the root complex (a bridge's alias, or its own). */
  readonly requesterId: number;
  /** The interrupt line its INTx pin reaches (-1 without a pin). */
  readonly intxLine: number;
}

/** The PCI side of the machine: functions by address, configuration access, firmware's BAR assignment. */
export interface PciBus {
  /** Device functions in probe order. */
  readonly functions: readonly PciSlot[];
  /** Where firmware put each BAR, by address then BAR index. */
  readonly bars: readonly BarAssignment[];
  /** The function at `bdf` (a requester id or `'00:03.0'`), if any. */
  find(bdf: number | string): PciSlot | undefined;
  /** The edu at `bdf`; a simulator-misuse error if there is none. */
  edu(bdf: number | string): EduDevice;
  /** The Apex at `bdf`; a simulator-misuse error if there is none. */
  apex(bdf: number | string): ApexDevice;
  /** A configuration read; all-ones where no function answers (a master abort). */
  configRead(bdf: number, offset: number, size: number): number;
  /** A configuration write; dropped where no function answers. */
  configWrite(bdf: number, offset: number, size: number, value: number): void;
  /** The bridge or port whose secondary bus is `bus` (its requester id), or undefined (bus 0 is the root bus). */
  bridgeTo(bus: number): number | undefined;
  /**
   * Secondary Bus Reset on bridge `bridge` (Bridge Control bit 6 set, then cleared): every function on its
   * secondary bus and on the buses below takes RST# and returns to its power-on state. Returns how many
   * functions were reset; 0 for an address that is no bridge. dmasim's bridges have no configuration space
   * of their own, so the kernel pulses the bit through this call.
   */
  secondaryBusReset(bridge: number): number;
}

/** Everything `createMachine` wires for PCI. */
export interface PciBoard {
  readonly pci: PciBus;
  readonly mmio: MmioRouter;
  readonly intc: InterruptController;
  readonly rootComplex: RootComplex;
  readonly iommu: VtdUnit | undefined;
  readonly graph: IsolationGraph;
  readonly groups: GroupsResult | GroupsError;
}

/** The VT-d unit's register window in the MMIO router. */
class IommuTarget implements MmioTarget {
  readonly #u: VtdUnit;
  constructor(u: VtdUnit) {
    this.#u = u;
  }
  read(offset: number, size: number): number {
    return size === 4 ? this.#u.read32(offset) : Number(this.#u.read(offset, size));
  }
  write(offset: number, size: number, value: number): void {
    if (size === 4) this.#u.write32(offset, value);
    else this.#u.write(offset, size, value);
  }
  read64(offset: number): bigint {
    return this.#u.read64(offset);
  }
  write64(offset: number, value: bigint): void {
    this.#u.write64(offset, value);
  }
}

function makeDevice(sim: Simulator, d: PciDeviceConfig, name: string): PciDeviceModel {
  switch (d.type) {
    case 'edu':
      return new EduDevice(sim, { name, ...(d.dmaMask === undefined ? {} : { dmaMask: d.dmaMask }), ...(d.factorialNs === undefined ? {} : { factorialNs: d.factorialNs }) });
    case 'testdev':
      return new TestDevice(sim, { name, flr: d.flr });
    case 'apex':
      return new ApexDevice(sim, { name });
  }
}

/**
 * Builds the PCI side from a validated configuration: interrupt controller, root complex (with the IOMMU's
 * translating port or the identity port behind it), the device functions attached at their addresses, the
 * MMIO router, and firmware's BAR assignment.
 */
export function buildPci(sim: Simulator, memory: PhysicalMemory, pciConfig: PciConfig, iommuConfig: IommuConfig): PciBoard {
  const intc = new InterruptController(sim);
  const identity = new IdentityDmaPort(memory);
  let rc: RootComplex | undefined;
  // The unit's own event messages go through the root complex like any other message write.
  const lateMsi: MsiSink = { msi: (r, a, d) => rc?.msi(r, a, d) };
  const iommu = iommuConfig.enabled
    ? new VtdUnit({ mem: memory, clock: sim, msi: lateMsi, trace: sim.trace, stats: sim.stats, ...vtdOptionsOf(iommuConfig) })
    : undefined;
  const downstream: DmaPort = iommu === undefined ? identity : new VtdDmaPort(iommu, identity);
  rc = new RootComplex(sim, downstream, intc);
  const rootComplex = rc;
  const mmio = new MmioRouter(sim);
  if (iommu !== undefined) mmio.addFixed(iommu.name, iommuConfig.base, Math.ceil(iommu.mmioSize / 4096) * 4096, new IommuTarget(iommu));

  const graph = isolationGraphOf(pciConfig);
  const groups = computeGroups(graph);
  const byBdf = new Map(pciConfig.devices.map((d) => [d.bdf, d]));
  const slots: PciSlot[] = [];
  for (const bdf of probeOrder(graph)) {
    const d = byBdf.get(bdf);
    if (d === undefined) continue;
    const address = formatBdf(bdf);
    const device = makeDevice(sim, d, `${d.type}@${address}`);
    const fn = device.fn;
    const info = groups.ok ? groups.byBdf.get(bdf) : undefined;
    const requesterId = info?.requesterId ?? bdf;
    const line = intxLine(graph, bdf, fn.spec.interruptPin ?? 0);
    fn.attach({
      requesterId: bdf,
      dma: requesterId === bdf ? rootComplex : new AliasPort(rootComplex, requesterId),
      msi: requesterId === bdf ? rootComplex : new AliasMsi(rootComplex, requesterId),
      intx: { intx: (_r, _pin, asserted) => intc.setIntx(line, bdf, asserted) },
      onMappingChange: () => mmio.rebuild(),
    });
    mmio.addFunction(fn);
    slots.push({ bdf, address, type: d.type, fn, device, requesterId, intxLine: line });
  }
  const bars = assignBars(slots.map((s) => ({ bdf: s.bdf, fn: s.fn, intxLine: s.intxLine })), pciConfig);
  const slotAt = new Map(slots.map((s) => [s.bdf, s]));
  const find = (bdf: number | string): PciSlot | undefined => {
    const n = typeof bdf === 'string' ? parseBdf(bdf) : bdf;
    return typeof n === 'number' ? slotAt.get(n) : undefined;
  };
  const pci: PciBus = {
    functions: slots,
    bars,
    find,
    edu(bdf) {
      const s = find(bdf);
      const dev = s?.device;
      invariant(dev instanceof EduDevice, () => `no edu at ${String(bdf)}`);
      return dev;
    },
    apex(bdf) {
      const dev = find(bdf)?.device;
      invariant(dev instanceof ApexDevice, () => `no apex at ${String(bdf)}`);
      return dev;
    },
    configRead(bdf, offset, size) {
      const s = slotAt.get(bdf);
      return s === undefined ? (size === 1 ? 0xff : size === 2 ? 0xffff : 0xffff_ffff) : s.fn.configRead(offset, size);
    },
    configWrite(bdf, offset, size, value) {
      slotAt.get(bdf)?.fn.configWrite(offset, size, value);
    },
    bridgeTo(bus) {
      return pciConfig.bridges.find((b) => b.secondaryBus === bus)?.bdf;
    },
    secondaryBusReset(bridge) {
      const b = pciConfig.bridges.find((x) => x.bdf === bridge);
      if (b === undefined) return 0;
      // The secondary bus and every bus reached through bridges on it.
      const buses = new Set([b.secondaryBus]);
      for (let grew = true; grew;) {
        grew = false;
        for (const x of pciConfig.bridges) {
          if (buses.has(x.bdf >>> 8) && !buses.has(x.secondaryBus)) {
            buses.add(x.secondaryBus);
            grew = true;
          }
        }
      }
      let n = 0;
      for (const sl of slots) {
        if (!buses.has(sl.bdf >>> 8)) continue;
        sl.fn.reset();
        n++;
      }
      return n;
    },
  };
  return { pci, mmio, intc, rootComplex, iommu, graph, groups };
}
