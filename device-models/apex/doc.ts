import { renderTable } from '../pci/index.ts';
import { APEX_REGS } from './regs.ts';

/** The Apex BAR2 register table for its README, rendered from {@link APEX_REGS}. */
export function apexRegisterTable(): string {
  return renderTable(
    APEX_REGS.map((r) => ({
      offset: `0x${r.offset.toString(16).padStart(5, '0')}`,
      name: r.name,
      width: `${r.width}`,
      access: r.domain === 'aon' ? `${r.access} (aon)` : r.access,
      reset: `0x${r.reset.toString(16)}`,
      desc: r.desc,
      fields: r.fields,
    })),
  );
}

/** The generated sections of device-models/apex/README.md, by key. */
export function apexReadmeSections(): Record<string, string> {
  return { 'apex-regs': apexRegisterTable() };
}
