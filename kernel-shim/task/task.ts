import type { SimProcess } from '../../sim/index.ts';
import { Cred } from '../cred.ts';
import type { Kernel } from '../kernel.ts';
import { Mm } from '../mm/mm.ts';
import type { CapName } from '../uapi/linux.ts';
import { FdTable } from './fdtable.ts';

/** Resource limits a process starts with (soft = hard). */
export interface Rlimits {
  /** `RLIMIT_MEMLOCK` in bytes (Linux's default: 8 MiB). */
  readonly memlock: number;
  /** `RLIMIT_NOFILE` (default 1024). */
  readonly nofile: number;
}

/** Linux's defaults since 5.16 (`MLOCK_LIMIT` 8 MiB) and the usual soft `nofile`. */
export const DEFAULT_RLIMITS: Rlimits = { memlock: 8 << 20, nofile: 1024 };

/** What `kernel.spawn` takes. */
export interface SpawnOptions {
  /** The process name (`comm`, 15 characters at most as Linux keeps it). Default `'driver'`. */
  readonly comm?: string;
  /** Default 0 (root). */
  readonly uid?: number;
  /** Default: the uid. */
  readonly gid?: number;
  /** Effective capabilities; default every one for uid 0, none otherwise. */
  readonly caps?: readonly CapName[];
  readonly rlimits?: Partial<Rlimits>;
}

/**
 * Thrown through a thread's user code when its task exits or is killed, so that the code unwinds; the
 * kernel's thread wrapper swallows it. User code that catches it gets it again at its next syscall.
 */
export class TaskExit extends Error {
  override name = 'TaskExit';
  constructor(readonly pid: number) {
    super(`process ${pid} has exited`);
  }
}

/** A process (Linux's thread group with its `task_struct`s): credentials, fds, address space, threads. */
export class Task {
  readonly kernel: Kernel;
  readonly pid: number;
  readonly comm: string;
  readonly cred: Cred;
  readonly rlimits: Rlimits;
  readonly mm: Mm;
  readonly fds: FdTable;
  /** Live threads (the simulator processes running its code). */
  readonly threads = new Set<SimProcess>();
  /** The thread that ran last: the one whose local time a synchronous access advances. */
  running!: SimProcess;
  /** Set once the task exits: its threads unwind at their next syscall or wake-up. */
  dead = false;
  /** Exit status (`0..255`, or `128 + signal`). */
  status = 0;
  /** The signal that killed it, if one did. */
  signal: number | undefined = undefined;
  /** The error that crashed it, if user code threw one. */
  error: unknown = undefined;
  readonly exited: Promise<number>;
  #resolveExit!: (status: number) => void;
  readonly #onExit: ((t: Task) => void)[] = [];

  constructor(kernel: Kernel, pid: number, opts: SpawnOptions) {
    this.kernel = kernel;
    this.pid = pid;
    this.comm = (opts.comm ?? 'driver').slice(0, 15);
    const uid = opts.uid ?? 0;
    this.cred = new Cred(uid, opts.gid ?? uid, opts.caps);
    this.rlimits = { ...DEFAULT_RLIMITS, ...opts.rlimits };
    this.mm = new Mm(kernel.userPages, kernel.machine.mmio, this.rlimits.memlock);
    this.fds = new FdTable(this.rlimits.nofile);
    this.exited = new Promise<number>((r) => {
      this.#resolveExit = r;
    });
  }

  /** Runs `f` when the task exits (after its fds and mappings are gone). */
  onExit(f: (t: Task) => void): void {
    this.#onExit.push(f);
  }

  /**
   * Linux `do_exit` for the whole group: marks the task dead, wakes every sleeping thread (each unwinds
   * with {@link TaskExit}), closes every fd and drops every mapping (unpinning what the drivers release at
   * close), and resolves {@link exited}.
   */
  exit(status: number, signal?: number): void {
    if (this.dead) return;
    this.dead = true;
    this.status = status & 0xff;
    this.signal = signal;
    for (const t of this.threads) t.interrupt();
    this.fds.closeAll();
    this.mm.teardown();
    for (const f of this.#onExit) f(this);
    this.#resolveExit(this.status);
  }
}

/** What `kernel.spawn` returns: the user's handle on a process. */
export interface Proc {
  readonly pid: number;
  readonly comm: string;
  /** Resolves to the exit status (`128 + signal` for a killed process) once the process is gone. */
  readonly exited: Promise<number>;
  /** Sends a signal (default `SIGKILL`); every signal dmasim knows terminates the process. */
  kill(signal?: number): void;
  /** Whether it has exited. */
  readonly dead: boolean;
  /** The error its code threw, if it crashed. */
  readonly error: unknown;
}
