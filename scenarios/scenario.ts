import type { Machine, MachineConfig, MachineConfigInput } from '../machine/index.ts';

/** Where a scenario prints: one call per line, without the newline. */
export interface Printer {
  line(text: string): void;
}

/** What the CLI hands a scenario. */
export interface ScenarioContext {
  /** The seed of the run (`--seed`, else the machine configuration's). */
  readonly seed: number;
  /** The resolved machine configuration (`--machine m.json`, defaults otherwise), with `seed` applied. */
  readonly machineConfig: MachineConfig;
  /** The `--trace FILE` option: the Chrome trace of the first machine created goes there. */
  readonly traceFile: string | undefined;
  /** The `--iommu` option: a scenario with an IOMMU variant ({@link Scenario.iommuVariant}) runs it. */
  readonly iommu: boolean;
  /** The `--iommufd` option: a scenario with an iommufd variant ({@link Scenario.iommufdVariant}) runs it. */
  readonly iommufd: boolean;
  /**
   * Builds a machine from {@link machineConfig}, or from `config` when given (a scenario that needs devices
   * adds them to the configuration); the first one is traced when {@link traceFile} is set.
   */
  createMachine(config?: MachineConfigInput): Machine;
  /** Output. */
  readonly out: Printer;
}

/** A runnable story, registered by name in `registry.ts`. */
export interface Scenario {
  /** One line for `dmasim run --help` and the unknown-scenario message. */
  readonly description: string;
  /** Whether it has an IOMMU variant (`--iommu`); without one the option is refused. */
  readonly iommuVariant?: boolean;
  /** Whether it can run through iommufd and the VFIO device cdev (`--iommufd`); without it the option is refused. */
  readonly iommufdVariant?: boolean;
  /** Runs it; a thrown error fails the run (exit status 1). */
  run(ctx: ScenarioContext): Promise<void> | void;
}
