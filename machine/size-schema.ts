import { z } from 'zod';
import { parseSize } from './size.ts';

/** A size or address: a non-negative integer, a hex string or a size with a binary unit (see `parseSize`). */
export const sizeSchema = z.union([z.number(), z.string()]).transform((v, ctx): number => {
  const n = typeof v === 'number' ? v : parseSize(v);
  if (typeof n === 'object') {
    ctx.addIssue({ code: 'custom', message: n.error });
    return z.NEVER;
  }
  if (!Number.isSafeInteger(n) || n < 0) {
    ctx.addIssue({ code: 'custom', message: `${String(v)} is not a non-negative whole number of bytes` });
    return z.NEVER;
  }
  return n;
});

