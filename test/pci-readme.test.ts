import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PhysicalMemory, Simulator } from '../sim/index.ts';
import { StandaloneHost, TestDevice, eduReadmeSections, generatedSection, pciReadmeSections, testdevReadmeSections } from '../device-models/index.ts';

/** The device READMEs' register tables are what the register data renders, and their examples run. */

const root = join(import.meta.dirname, '..', 'device-models');

describe('device READMEs', () => {
  for (const [file, sections] of [['edu/README.md', eduReadmeSections()], ['pci/README.md', pciReadmeSections()], ['testdev/README.md', testdevReadmeSections()]] as const) {
    it(`${file}: generated tables match the register data`, () => {
      const text = readFileSync(join(root, file), 'utf8');
      for (const [key, table] of Object.entries(sections)) expect(generatedSection(text, key), `${file} section ${key}`).toBe(table);
    });
  }

  it('pci/README.md: the worked sequence behaves as written', () => {
    const sim = new Simulator();
    const dev = new TestDevice(sim);
    const host = new StandaloneHost(sim, new PhysicalMemory(1 << 24), dev.fn);
    const fn = dev.fn;
    expect(fn.configRead(0x00, 4)).toBe(0x7e57_1b36);
    fn.configWrite(0x10, 4, 0xffff_ffff);
    expect(fn.configRead(0x10, 4)).toBe(0xffff_f000);
    fn.configWrite(0x10, 4, 0xfe00_0000);
    fn.configWrite(0x04, 2, 0x0006);
    let cap = fn.configRead(0x34, 1);
    while (fn.configRead(cap, 1) !== 0x11) cap = fn.configRead(cap + 1, 1);
    fn.mmioWrite(2, 0x00, 4, 0xfee0_0000);
    fn.mmioWrite(2, 0x08, 4, 0x41);
    fn.configWrite(cap + 2, 2, 0x8000);
    fn.mmioWrite(0, 0x08, 4, 0);
    expect(host.messages).toEqual([]);
    expect(fn.mmioRead(2, 0x800, 4)).toBe(1);
    fn.mmioWrite(2, 0x0c, 4, 0);
    expect(host.messages).toEqual([{ address: 0xfee0_0000, data: 0x41, requester: 0x18, time: 0 }]);
  });
});
