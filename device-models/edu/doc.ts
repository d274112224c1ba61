import { renderTable } from '../pci/index.ts';
import { EDU_REGS } from './regs.ts';

/** edu's BAR0 register table for its README, rendered from {@link EDU_REGS}. */
export function eduRegisterTable(): string {
  return renderTable(
    EDU_REGS.map((r) => ({
      offset: `0x${r.offset.toString(16).padStart(2, '0')}`,
      name: r.name,
      width: `${r.width}`,
      access: r.access,
      reset: `0x${r.reset.toString(16).padStart(r.width / 4, '0')}`,
      desc: r.desc,
      fields: r.fields,
    })),
  );
}

/** The generated sections of device-models/edu/README.md, by key. */
export function eduReadmeSections(): Record<string, string> {
  return { 'edu-regs': eduRegisterTable() };
}
