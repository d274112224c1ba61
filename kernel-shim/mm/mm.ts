/**
 * A process's address space (Linux `mm_struct`). Implementation lands with the process core; the
 * signatures below are what drivers call.
 */
export class Mm {
  /** Copies user memory at `addr` into `dst`: 0, or `-EFAULT` if any byte is unmapped or unreadable. */
  copyFromUser(_addr: number, _dst: Uint8Array): number {
    return -14;
  }

  /** Copies `src` to user memory at `addr`: 0, or `-EFAULT`. */
  copyToUser(_addr: number, _src: Uint8Array): number {
    return -14;
  }
}
