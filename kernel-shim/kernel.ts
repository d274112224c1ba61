import type { SimProcess, Simulator } from '../sim/index.ts';
import type { Machine } from '../machine/index.ts';
import { Vfs } from './fs/vfs.ts';
import { KernelLog } from './log.ts';
import { addProcDir, addProcSysKernel, removeProcDir } from './fs/procfs.ts';
import { UserPages } from './mm/pages.ts';
import { PciCore } from './pci/core.ts';
import { IrqCore } from './irq.ts';
import { DmaApi } from './dma/mapping.ts';
import { IommuCore } from './iommu/core.ts';
import { registerTestDevice } from './testdev/index.ts';
import { loadModule } from './modules.ts';
import { uioInit } from './uio/core.ts';
import { uioPciGenericDriver } from './uio/pci-generic.ts';
import { vfioInit } from './vfio/core.ts';
import { vfioPciDriver } from './vfio/pci-driver.ts';
import { iommufdInit } from './iommufd/index.ts';
import { Sys, type Thread } from './task/sys.ts';
import { Task, TaskExit, type Proc, type SpawnOptions } from './task/task.ts';
import { BEHAVIOUR, LINUX_VERSIONS, type Behaviour, type LinuxVersion } from './versions.ts';

/** Linux's taint flags (`include/linux/panic.h`): bit numbers of {@link Kernel.tainted}. */
export const TAINT = {
  /** `TAINT_USER` ('U'): user space did something the kernel cannot vouch for (VFIO no-IOMMU). */
  USER: 6,
} as const;

/** Options of {@link bootKernel}. */
export interface KernelOptions {
  /** Which Linux to behave as where versions differ (default `'6.12'`). */
  readonly linux?: LinuxVersion;
  /** Kernel command line, as `/proc/cmdline` shows it (default empty). */
  readonly cmdline?: string;
  /** Adds the test-only character device `/dev/dmasim-test` (uAPI marshalling tests). */
  readonly testDevice?: boolean;
  /** Modules to load at boot, after the built-in drivers (see `modules.ts`), e.g. `['uio_apex']`. */
  readonly modules?: readonly string[];
}

/**
 * The mock Linux kernel running on a {@link Machine}: the VFS (`/dev`, `/sys`, `/proc`), the kernel log,
 * the PCI core with its drivers, and processes. Subsystems hang off it; user space reaches it only through
 * syscalls.
 */
export class Kernel {
  readonly machine: Machine;
  readonly sim: Simulator;
  readonly version: LinuxVersion;
  /** Every version-dependent behaviour (see `versions.ts`). */
  readonly behaviour: Behaviour;
  readonly cmdline: string;
  readonly log: KernelLog;
  readonly vfs: Vfs;
  /** The PCI core: enumerated devices, drivers, binding. */
  readonly pci: PciCore;
  /** The generic IRQ layer: descriptors, handlers, the spurious check. */
  readonly irq: IrqCore;
  /** Reference and pin counts of every frame given to user memory. */
  readonly userPages: UserPages;
  /** The DMA API kernel drivers map buffers with. */
  readonly dma: DmaApi;
  /** The IOMMU layer, when the machine has a unit and the command line does not disable it. */
  readonly iommu: IommuCore | null;
  /**
   * Linux's `tainted_mask`: one bit per `TAINT_*` flag ({@link TAINT}), set by {@link addTaint} and never
   * cleared; `/proc/sys/kernel/tainted` reads it in decimal.
   */
  tainted = 0;
  readonly #tasks = new Map<number, Task>();
  #nextPid = 100;
  #nextTid = 1;

  constructor(machine: Machine, options: KernelOptions = {}) {
    const version = options.linux ?? '6.12';
    if (!LINUX_VERSIONS.includes(version)) throw new RangeError(`linux: must be one of ${LINUX_VERSIONS.join(', ')}, got ${String(version)}`);
    this.machine = machine;
    this.sim = machine.sim;
    this.version = version;
    this.behaviour = BEHAVIOUR[version];
    this.cmdline = options.cmdline ?? '';
    this.log = new KernelLog(machine.sim);
    this.userPages = new UserPages(machine.memory, machine.frames);
    this.vfs = new Vfs();
    for (const d of ['dev', 'sys/bus', 'sys/class', 'sys/devices', 'sys/kernel', 'proc']) this.vfs.mkdirp(d);
    this.log.printk('notice', `Linux version ${this.behaviour.release} (dmasim) #1 SMP`);
    this.log.printk('info', `Command line: ${this.cmdline}`);
    addProcSysKernel(this.vfs, () => this.tainted);
    this.irq = new IrqCore(this);
    this.dma = new DmaApi(this);
    this.pci = new PciCore(this);
    this.pci.enumerate();
    this.iommu = IommuCore.init(this);
    uioInit(this);
    this.pci.registerDriver(uioPciGenericDriver(this));
    vfioInit(this);
    this.pci.registerDriver(vfioPciDriver(this));
    iommufdInit(this);
    if (options.testDevice === true) registerTestDevice(this);
    for (const m of options.modules ?? []) loadModule(this, m);
  }

  /**
   * Starts a process running `main(sys)` at the current instant. Its exit status is what `main` returns
   * (a number; otherwise 0), or what it passes to `sys.exit`; returning ends every thread. If `main` throws
   * anything but a kernel signal, the process dies with status 1, `proc.error` holds the error, and the
   * simulation run rejects with it, so a crashing driver fails the test that ran it.
   */
  spawn(opts: SpawnOptions, main: (sys: Sys) => unknown): Proc {
    const pid = this.#nextPid++;
    const task = new Task(this, pid, opts);
    this.#tasks.set(pid, task);
    addProcDir(this.vfs, task);
    task.onExit(() => {
      removeProcDir(this.vfs, task);
      this.#tasks.delete(pid);
    });
    this.startThread(task, main, undefined);
    return {
      pid,
      comm: task.comm,
      exited: task.exited,
      kill: (signal = 9) => task.exit(128 + signal, signal),
      get dead() {
        return task.dead;
      },
      get error() {
        return task.error;
      },
    };
  }

  /** @internal Starts a thread of `task` (its main thread when `parent` is undefined). */
  startThread(task: Task, fn: (sys: Sys) => unknown, parent: SimProcess | undefined): Thread {
    const main = parent === undefined;
    const tid = main ? task.pid : task.pid * 1000 + this.#nextTid++;
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => {
      resolveDone = r;
    });
    const body = async (p: SimProcess): Promise<void> => {
      task.threads.add(p);
      task.running = p;
      try {
        if (task.dead) return;
        const r = await fn(new Sys(this, task, p));
        if (main) task.exit(typeof r === 'number' ? r : 0);
      } catch (e) {
        if (e instanceof TaskExit && task.dead) return;
        task.error = e;
        this.log.printk('err', `${task.comm}[${task.pid}]: terminated by an uncaught ${e instanceof Error ? e.name : 'exception'}`);
        task.exit(1);
        throw e;
      } finally {
        task.threads.delete(p);
        resolveDone();
      }
    };
    const name = main ? `${task.comm}[${task.pid}]` : `${task.comm}[${task.pid}] thread ${tid}`;
    if (main) this.sim.process(name, body);
    else (parent as SimProcess).spawn(name, body);
    return { tid, done };
  }

  /** Linux `add_taint(flag, LOCKDEP_STILL_OK)`: sets bit `flag` of {@link tainted} (Linux prints nothing here). */
  addTaint(flag: number): void {
    this.tainted |= 2 ** flag;
  }

  /** The live process with `pid`. */
  task(pid: number): Task | undefined {
    return this.#tasks.get(pid);
  }

  /** Live processes, by pid. */
  get tasks(): readonly Task[] {
    return [...this.#tasks.values()];
  }
}

/** Boots the kernel on `machine`: enumerates PCI (keeping firmware's BARs), registers the built-in drivers. */
export function bootKernel(machine: Machine, options: KernelOptions = {}): Kernel {
  return new Kernel(machine, options);
}
