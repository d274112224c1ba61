import { E } from '../errno.ts';
import type { Mm } from '../mm/mm.ts';
import type { Current } from './current.ts';

/**
 * Marshals an object argument of `sys.ioctl` (DESIGN.md): encodes it into scratch memory of the process by
 * the request's uAPI layout, calls the handler with the address, and decodes the write-back into the
 * object. A request with no known layout cannot take an object: `ENOTTY`.
 */
export async function marshalIoctl(
  _mm: Mm, _cur: Current, _request: number, _arg: object, _call: (addr: bigint) => Promise<number>,
): Promise<number> {
  return E.ENOTTY;
}
