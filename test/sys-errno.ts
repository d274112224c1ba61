import { SysError } from '../kernel-shim/errno.ts';

/** The errno name a syscall fails with (`'success'` if it does not fail); anything but a `SysError` is rethrown. */
export async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SysError) return e.code;
    throw e;
  }
  return 'success';
}
