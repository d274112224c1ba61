import { bootKernel, createMachine, type Kernel, type KernelOptions, type Machine, type MachineConfigInput } from '../kernel-shim/index.ts';
import type { Proc, SpawnOptions, Sys } from '../kernel-shim/index.ts';

/** Options of {@link withMachine}: how the kernel boots. */
export interface WithMachineOptions extends KernelOptions {
  /** Skip the leak check after teardown (pages still live or pinned). Default false. */
  readonly allowLeaks?: boolean;
}

/** What {@link withMachine} hands its callback. */
export interface MachineSession {
  readonly machine: Machine;
  readonly kernel: Kernel;
  /**
   * Starts a process running `main(sys)` (as `kernel.spawn`, with `opts` defaulting to root, comm
   * `'driver'`). Processes spawned here are the ones {@link run} waits for and teardown kills.
   */
  readonly spawn: (opts: SpawnOptions | string, main: (sys: Sys) => unknown) => Proc;
  /**
   * Runs the simulation until every process spawned through {@link spawn} has exited (or nothing is left to
   * run). Rejects with a crashed process's own error, or with a `DeadlockError` (from `sim/`) naming each blocked
   * process and the call it is blocked in.
   */
  readonly run: () => Promise<void>;
}

/** Thrown by {@link withMachine} when user pages are still live or pinned after every process is gone. */
export class LeakError extends Error {
  override name = 'LeakError';
  constructor(
    readonly live: number,
    readonly pinned: number,
  ) {
    super(`teardown leaked user memory: ${live} page(s) still live, ${pinned} still pinned after every process exited`);
  }
}

/**
 * Creates a machine from `config`, boots the kernel on it, and calls `fn` with the session; then, whatever
 * `fn` did, kills every process still alive, lets them unwind, and checks that no user page is left live
 * or pinned (throwing {@link LeakError} otherwise). If `fn` spawned processes and never called `run`, the
 * simulation is run after `fn` returns. Resolves to what `fn` returns; rejects with the first error: `fn`'s,
 * a crashed process's, a deadlock's, or the leak.
 *
 * @example
 * ```ts
 * await withMachine({ pci: [{ type: 'edu' }] }, async ({ spawn, run }) => {
 *   const p = spawn('drv', async (sys) => { const fd = await sys.eventfd(0, 0); await sys.close(fd); return 0; });
 *   await run();
 *   expect(await p.exited).toBe(0);
 * });
 * ```
 */
export async function withMachine<T>(
  config: MachineConfigInput,
  fn: (session: MachineSession) => T | Promise<T>,
  options: WithMachineOptions = {},
): Promise<T> {
  const machine = createMachine(config);
  const kernel = bootKernel(machine, options);
  const procs: Proc[] = [];
  let ran = false;
  const allExited = (): boolean => procs.every((p) => p.dead);
  const run = async (): Promise<void> => {
    ran = true;
    if (allExited()) return;
    await machine.sim.run();
  };
  const spawn = (opts: SpawnOptions | string, main: (sys: Sys) => unknown): Proc => {
    const p = kernel.spawn(typeof opts === 'string' ? { comm: opts } : opts, main);
    procs.push(p);
    void p.exited.then(() => {
      if (allExited()) machine.sim.stop();
    });
    return p;
  };
  let result: T;
  try {
    result = await fn({ machine, kernel, spawn, run });
    if (!ran && procs.length > 0) await run();
  } finally {
    await teardown(kernel);
  }
  if (options.allowLeaks !== true) {
    const { live, pinned } = kernel.userPages;
    if (live !== 0 || pinned !== 0) throw new LeakError(live, pinned);
  }
  return result;
}

/** Virtual time teardown gives the killed processes' releases (IOMMU invalidations and the like). */
const TEARDOWN_NS = 10_000_000;

/** Kills every live process and lets the simulation run their unwinding (errors there are not the test's). */
async function teardown(kernel: Kernel): Promise<void> {
  const tasks = kernel.tasks;
  if (tasks.length === 0) return;
  const sim = kernel.sim;
  // The kills run inside a simulation process: releasing a task's files can wait on hardware (an IOMMU
  // invalidation), which runs the event loop, and that may only happen under `sim.run`.
  sim.process('teardown', async () => {
    for (const t of tasks) t.exit(128 + 9, 9);
    await Promise.resolve();
  });
  try {
    await sim.run({ until: sim.now + TEARDOWN_NS });
  } catch {
    // A killed thread's unwinding may hit a deadlock or an error; the kill already released its resources.
  }
}
