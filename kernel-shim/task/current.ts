import type { SimProcess } from '../../sim/index.ts';
import type { Cred } from '../cred.ts';
import type { Kernel } from '../kernel.ts';
import type { Mm } from '../mm/mm.ts';
import type { WaitHead } from '../wait.ts';
import type { Task } from './task.ts';

/**
 * The calling context of kernel code (Linux `current`): the task, the thread running the syscall, its
 * credentials and address space. Handlers receive it; nothing keeps it past the call.
 */
export interface Current {
  readonly kernel: Kernel;
  readonly task: Task;
  /** The simulator process of the calling thread. */
  readonly thread: SimProcess;
  readonly cred: Cred;
  readonly mm: Mm;
  /**
   * Linux `wait_event_interruptible(head, cond)`: returns 0 once `cond()` holds (checked first, and after
   * each wake-up), `-EINTR` if the task is killed meanwhile, `-ETIMEDOUT` after `timeoutNs`. `what` names the
   * wait in deadlock reports, e.g. `read(fd 3) on /dev/uio0`.
   */
  waitEvent(head: WaitHead, cond: () => boolean, what: string, timeoutNs?: number): Promise<number>;
}
