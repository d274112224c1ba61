import { msiLayout, msixLayout, pcieLayout, pmLayout, type CapabilityLayout } from './capabilities.ts';
import { TYPE0_HEADER, type ConfigReg, type RegField } from './regs.ts';

/**
 * Markdown register tables rendered from the register data, for the device READMEs. A README holds each
 * table between `<!-- BEGIN GENERATED: <key> -->` and `<!-- END GENERATED -->`; a test checks that the text
 * there is what the data renders, so the documentation cannot drift from the dispatch tables.
 */

/** One row of a register table. */
export interface TableRow {
  readonly offset: string;
  readonly name: string;
  readonly width: string;
  readonly access: string;
  readonly reset: string;
  readonly desc: string;
  readonly fields: Readonly<Record<string, RegField>>;
}

function hex(v: number | bigint, digits: number): string {
  return `0x${v.toString(16).padStart(digits, '0')}`;
}

function fieldList(fields: Readonly<Record<string, RegField>>): string {
  return Object.entries(fields)
    .map(([name, f]) => {
      const at = f.width === 1 ? `${f.lsb}` : `${f.lsb + f.width - 1}:${f.lsb}`;
      return `\`${name}\` [${at}] ${f.access}: ${f.desc}`;
    })
    .join('<br>');
}

/** A table cell: pipes escaped so that `status |= value` stays in its cell. */
function cell(text: string): string {
  return text.replaceAll('|', '\\|');
}

/** Renders rows as a Markdown table. */
export function renderTable(rows: readonly TableRow[]): string {
  const lines = ['| Offset | Register | Width | Access | Reset | Description | Fields |', '|---|---|---|---|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.offset} | ${r.name} | ${r.width} | ${r.access} | ${r.reset} | ${cell(r.desc)} | ${cell(fieldList(r.fields))} |`);
  return lines.join('\n');
}

/** A config register's summary access: the kinds its fields use (RO when it has none). */
function summaryAccess(reg: ConfigReg): string {
  const kinds = [...new Set(Object.values(reg.fields).map((f) => f.access))];
  return kinds.length === 0 ? 'RO' : kinds.join('/');
}

function configRows(regs: readonly ConfigReg[], prefix: string): TableRow[] {
  return regs.map((r) => ({
    offset: `${prefix}${hex(r.offset, 2)}`,
    name: r.name,
    width: `${r.width * 8}`,
    access: summaryAccess(r),
    reset: r.reset === 'device' ? 'device' : hex(r.reset, r.width * 2),
    desc: r.desc,
    fields: r.fields,
  }));
}

/** The type-0 header table. */
export function headerTable(): string {
  return renderTable(configRows(TYPE0_HEADER, ''));
}

/** A capability's table, offsets relative to the capability. */
export function capabilityTable(layout: CapabilityLayout): string {
  return renderTable(configRows(layout.regs, '+'));
}

/** The generated sections of device-models/pci/README.md, by key. */
export function pciReadmeSections(): Record<string, string> {
  return {
    'pci-header': headerTable(),
    'pci-pm': capabilityTable(pmLayout()),
    'pci-msi': capabilityTable(msiLayout({ vectors: 4, addr64: true, perVectorMask: true })),
    'pci-msix': capabilityTable(msixLayout({ vectors: 64, tableBar: 2, tableOffset: 0, pbaBar: 2, pbaOffset: 0x800 })),
    'pci-express': capabilityTable(pcieLayout(true)),
  };
}

/** The text between the markers of section `key` in `readme`, or undefined if the markers are missing. */
export function generatedSection(readme: string, key: string): string | undefined {
  const begin = `<!-- BEGIN GENERATED: ${key} -->\n`;
  const i = readme.indexOf(begin);
  if (i < 0) return undefined;
  const j = readme.indexOf('\n<!-- END GENERATED -->', i + begin.length);
  return j < 0 ? undefined : readme.slice(i + begin.length, j);
}
