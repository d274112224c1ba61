import { E } from '../errno.ts';
import type { File } from '../fs/file.ts';

/** A process's file descriptors (Linux `files_struct`): lowest free number first, `FD_CLOEXEC` per fd. */
export class FdTable {
  readonly #files: (File | undefined)[] = [];
  readonly #cloexec: boolean[] = [];
  /** `RLIMIT_NOFILE`: fds at or above it cannot be allocated (`EMFILE`). */
  limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** The open file at `fd`. */
  get(fd: number): File | undefined {
    return Number.isInteger(fd) && fd >= 0 ? this.#files[fd] : undefined;
  }

  /** Installs `file` at the lowest free fd at or above `min` (the table takes the caller's reference). */
  install(file: File, cloexec: boolean, min = 0): number {
    if (!(Number.isInteger(min) && min >= 0)) return E.EINVAL;
    if (min >= this.limit) return E.EINVAL;
    let fd = min;
    while (this.#files[fd] !== undefined) fd++;
    if (fd >= this.limit) return E.EMFILE;
    this.#files[fd] = file;
    this.#cloexec[fd] = cloexec;
    return fd;
  }

  /** Removes `fd`, returning its file (the caller drops the reference), or undefined. */
  remove(fd: number): File | undefined {
    const f = this.get(fd);
    if (f !== undefined) {
      this.#files[fd] = undefined;
      this.#cloexec[fd] = false;
    }
    return f;
  }

  /** `FD_CLOEXEC` of `fd`. */
  cloexec(fd: number): boolean {
    return this.#cloexec[fd] ?? false;
  }

  /** Sets `FD_CLOEXEC` of `fd`. */
  setCloexec(fd: number, on: boolean): void {
    this.#cloexec[fd] = on;
  }

  /** Open fds, ascending. */
  fds(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.#files.length; i++) if (this.#files[i] !== undefined) out.push(i);
    return out;
  }

  /** Closes every fd (exit). */
  closeAll(): void {
    for (const fd of this.fds()) this.remove(fd)?.put();
  }
}
