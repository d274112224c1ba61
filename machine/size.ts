/**
 * Byte sizes and addresses as configurations write them: a non-negative integer, a hex string
 * (`'0xfee00000'`), or a number with a binary unit (`'64KiB'`, `'1 GiB'`, `'2M'`; K/M/G/T are binary, as in
 * QEMU's `-m 2G`). Decimal units (`MB`) are refused rather than guessed.
 */

const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 2 ** 10,
  kib: 2 ** 10,
  m: 2 ** 20,
  mib: 2 ** 20,
  g: 2 ** 30,
  gib: 2 ** 30,
  t: 2 ** 40,
  tib: 2 ** 40,
};

/** Bytes in `text`, or a message saying why it is not a size. */
export function parseSize(text: string): number | { error: string } {
  const s = text.trim();
  if (/^0x[0-9a-f]+$/i.test(s)) return exact(Number.parseInt(s.slice(2), 16), text);
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(s);
  if (m === null) return { error: `'${text}' is not a size (write e.g. 4096, '0x1000', '64KiB', '1GiB')` };
  const unit = UNITS[(m[2] ?? '').toLowerCase()];
  if (unit === undefined) return { error: `'${text}': unknown unit '${m[2]}' (use B, KiB, MiB, GiB, TiB or K, M, G, T)` };
  return exact(Number(m[1]) * unit, text);
}

function exact(v: number, text: string): number | { error: string } {
  if (!Number.isSafeInteger(v)) return { error: `'${text}' is not a whole number of bytes below 2^53` };
  return v;
}

/** `bytes` in the largest binary unit that divides it, e.g. `1GiB`, `12KiB`, `4097B`. */
export function formatSize(bytes: number): string {
  for (const [unit, scale] of [
    ['TiB', 2 ** 40],
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const) {
    if (bytes >= scale && bytes % scale === 0) return `${bytes / scale}${unit}`;
  }
  return `${bytes}B`;
}
