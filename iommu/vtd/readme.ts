import { FRCD_OFFSET, VTD_REGS, type RegDef } from './regs.ts';

function hex(n: number | bigint, digits: number): string {
  return `0x${n.toString(16).padStart(digits, '0')}`;
}

/**
 * The README's register table, generated from {@link VTD_REGS} (a test keeps README.md in step):
 * offset, name, width, access, reset value and fields with their bit ranges and access kinds.
 */
export function registerTableMarkdown(): string {
  const rows = ['| Offset | Register | Bits | Access | Reset | Fields |', '|---|---|---|---|---|---|'];
  for (const r of VTD_REGS as readonly RegDef[]) {
    const off = r.repeat === undefined ? hex(r.offset, 3) : `${hex(r.offset, 3)} + 16·n (n < NFR)`;
    const reset = r.reset === 'config' ? 'from configuration' : hex(r.reset, r.width / 4);
    const fields = Object.entries(r.fields)
      .map(([k, f]) => `${k}[${f.width === 1 ? f.lsb : `${f.lsb + f.width - 1}:${f.lsb}`}] ${f.access}`)
      .join(', ');
    rows.push(`| ${off} | ${r.name} | ${r.width} | ${r.access} | ${reset} | ${fields || 'reserved'} |`);
  }
  rows.push('', `Fault recording registers start at ${hex(FRCD_OFFSET, 3)} (CAP.FRO = ${hex(FRCD_OFFSET / 16, 2)}); the block ends after the last one.`);
  return rows.join('\n');
}
