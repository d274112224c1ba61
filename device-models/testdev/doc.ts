import { renderTable } from '../pci/index.ts';
import { TESTDEV_REGS } from './regs.ts';

/** The generated sections of device-models/testdev/README.md, by key. */
export function testdevReadmeSections(): Record<string, string> {
  return {
    'testdev-regs': renderTable(
      TESTDEV_REGS.map((r) => ({
        offset: `0x${r.offset.toString(16).padStart(2, '0')}`,
        name: r.name,
        width: '32',
        access: r.access,
        reset: `0x${r.reset.toString(16).padStart(8, '0')}`,
        desc: r.desc,
        fields: r.fields,
      })),
    ),
  };
}
