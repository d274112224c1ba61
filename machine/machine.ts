import { FRAME_SIZE, FrameAllocator, PhysicalMemory, Rng, Simulator, Stats, TraceBus } from '../sim/index.ts';
import { ChromeTraceWriter, type TraceSink } from '../sim/trace-chrome.ts';
import type { GroupsError, GroupsResult, IsolationGraph, VtdUnit } from '../iommu/index.ts';
import { resolveMachineConfig, type MachineConfig, type MachineConfigInput } from './config.ts';
import { buildPci, type InterruptController, type MmioRouter, type PciBus, type RootComplex } from './pci/index.ts';

/** A Chrome trace being recorded from a machine's trace bus; see {@link Machine.recordChromeTrace}. */
export interface ChromeTraceRecording {
  /** The writer (its track table, event count). */
  readonly writer: ChromeTraceWriter;
  /**
   * Unsubscribes, writes the counters (when the configuration asks for them) at the current virtual time
   * and closes the document; returns it when recording without a sink, else the empty string.
   */
  finish(): string;
}

/**
 * The board: memory, frames, the scheduler, the seeded generator, the trace bus and counters, wired from
 * one resolved configuration, with the PCI side (root complex, IOMMU, devices, interrupt controller). Each machine owns all
 * of its state: two machines in one worker are independent.
 */
export interface Machine {
  /** The resolved configuration (defaults filled in). */
  readonly config: MachineConfig;
  /** The scheduler and virtual clock. */
  readonly sim: Simulator;
  /**
   * Physical memory. `memory.observeDma(observer)` reports every piece of device DMA that reaches it (after
   * the IOMMU: physical addresses, with the requester id), e.g. to check isolation.
   */
  readonly memory: PhysicalMemory;
  /** The allocator of physical frames. */
  readonly frames: FrameAllocator;
  /** The machine's generator, for whatever needs randomness (fork it per consumer). */
  readonly rng: Rng;
  /** The trace bus every component emits on. */
  readonly trace: TraceBus;
  /** Counters per component. */
  readonly stats: Stats;
  /** Starts recording a Chrome trace of everything emitted from now on, to `sink` or into a string. */
  recordChromeTrace(sink?: TraceSink): ChromeTraceRecording;
  /** The PCI functions, their configuration space and firmware's BAR assignment. */
  readonly pci: PciBus;
  /** The CPU's MMIO space: BARs and the IOMMU's registers at physical addresses. */
  readonly mmio: MmioRouter;
  /** The interrupt controller behind the root complex's MsiSink, with the INTx lines. */
  readonly intc: InterruptController;
  /** The root complex: the DMA path's interrupt-window split and the MsiSink the functions message. */
  readonly rootComplex: RootComplex;
  /** The VT-d unit when `iommu.enabled`, its registers at `iommu.base` in {@link mmio}. */
  readonly iommu: VtdUnit | undefined;
  /** The plain isolation graph of the PCI topology, as `computeGroups` reads it. */
  isolationGraph(): IsolationGraph;
  /** The IOMMU groups of the topology (Linux's `pci_device_group` rules). */
  groups(): GroupsResult | GroupsError;
}

/**
 * Builds a machine from `config` (validated; a bad field throws a `ConfigError` naming its path). The frame
 * allocator draws from its own fork of the machine's generator, so frame placement depends only on the seed
 * and the sequence of allocations, never on other consumers of randomness.
 */
export function createMachine(config: MachineConfigInput | MachineConfig = {}): Machine {
  const resolved = resolveMachineConfig(config);
  const trace = new TraceBus();
  const stats = new Stats();
  const sim = new Simulator({ trace, stats });
  const rng = new Rng(resolved.seed);
  const memory = new PhysicalMemory(resolved.memory.size);
  const reserved = resolved.memory.reserved.map((r) => [r.start / FRAME_SIZE, (r.start + r.size) / FRAME_SIZE - 1] as const);
  const frames = new FrameAllocator(memory.frameCount, resolved.memory.placement, rng.fork(), reserved);
  const board = buildPci(sim, memory, resolved.pci, resolved.iommu);
  const machine: Machine = {
    config: resolved,
    pci: board.pci,
    mmio: board.mmio,
    intc: board.intc,
    rootComplex: board.rootComplex,
    iommu: board.iommu,
    isolationGraph: () => board.graph,
    groups: () => board.groups,
    sim,
    memory,
    frames,
    rng,
    trace,
    stats,
    recordChromeTrace(sink?: TraceSink): ChromeTraceRecording {
      const writer = new ChromeTraceWriter({ processName: resolved.name, ...(sink === undefined ? {} : { sink }) });
      const detach = writer.attach(trace);
      return {
        writer,
        finish(): string {
          detach();
          return writer.finish(resolved.trace.counters ? { stats, timeNs: sim.now } : { timeNs: sim.now });
        },
      };
    },
  };
  return machine;
}
