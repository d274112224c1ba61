import type { Cred } from '../cred.ts';
import type { Mm } from '../mm/mm.ts';

/** A process (Linux `task_struct` with its thread group). Implementation lands with the process core. */
export interface Task {
  readonly pid: number;
  readonly comm: string;
  readonly cred: Cred;
  readonly mm: Mm;
}
