import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { REG, VTD_REGS, fmask, registerTableMarkdown } from '../iommu/vtd/index.ts';
import { makeRig } from './vtd-driver.ts';

describe('VT-d register block', () => {
  it('resets as QEMU does: VER, CAP, ECAP, FECTL/IECTL masked', () => {
    const { unit } = makeRig();
    expect(unit.read32(REG.VER)).toBe(0x10);
    const cap = unit.read64(REG.CAP);
    const f = (lo: number, w: number): number => Number((cap >> BigInt(lo)) & ((1n << BigInt(w)) - 1n));
    expect(f(0, 3)).toBe(6); // ND
    expect(f(8, 5)).toBe(0b110); // SAGAW 39 + 48
    expect(f(16, 6)).toBe(47); // MGAW
    expect(f(24, 10)).toBe(0x22); // FRO
    expect(f(34, 4)).toBe(0b11); // SLLPS 2M + 1G
    expect(f(39, 1)).toBe(1); // PSI
    expect(f(40, 8)).toBe(7); // NFR - 1
    expect(f(48, 6)).toBe(18); // MAMV
    expect(unit.read64(REG.ECAP)).toBe((1n << 1n) | (1n << 6n) | (1n << 7n) | (0xfn << 8n));
    expect(unit.read32(REG.FECTL)).toBe(0x8000_0000);
    expect(unit.read32(REG.IECTL)).toBe(0x8000_0000);
    for (const r of ['GSTS', 'FSTS', 'ICS', 'IQH', 'IQT', 'IQA', 'RTADDR'] as const) expect(unit.read32(REG[r])).toBe(0);
    expect(unit.mmioSize).toBe(0x220 + 16 * 8);
  });

  it('39-bit units advertise only 3-level tables', () => {
    const { unit } = makeRig({ addressWidth: 39, faultRecords: 1 });
    const cap = unit.read64(REG.CAP);
    expect(Number((cap >> 8n) & 0x1fn)).toBe(0b010);
    expect(Number((cap >> 16n) & 0x3fn)).toBe(38);
    expect(Number((cap >> 40n) & 0xffn)).toBe(0);
  });

  it('GCMD is write-only; TE and QIE act on change, SRTP is one-shot', () => {
    const { unit, drv } = makeRig();
    unit.write32(REG.GCMD, fmask('GCMD', 'TE'));
    expect(unit.read32(REG.GCMD)).toBe(0);
    expect(unit.read32(REG.GSTS)).toBe(fmask('GSTS', 'TES'));
    expect(unit.translationEnabled).toBe(true);
    unit.write64(REG.RTADDR, 0x5000n | 0xfffn);
    expect(unit.read64(REG.RTADDR)).toBe(0x5000n);
    unit.write32(REG.GCMD, fmask('GCMD', 'TE') | fmask('GCMD', 'SRTP'));
    expect(unit.read32(REG.GSTS)).toBe((fmask('GSTS', 'TES') | fmask('GSTS', 'RTPS')) >>> 0);
    unit.write32(REG.GCMD, 0);
    expect(unit.translationEnabled).toBe(false);
    expect(unit.read32(REG.GSTS)).toBe(fmask('GSTS', 'RTPS'));
    drv.init();
    expect(unit.read32(REG.GSTS) & fmask('GSTS', 'QIES')).not.toBe(0);
  });

  it('W1C and RO fields hold against writes', () => {
    const { unit } = makeRig();
    unit.write32(REG.FSTS, 0xffff_ffff);
    expect(unit.read32(REG.FSTS)).toBe(0);
    unit.write32(REG.FECTL, 0xffff_ffff);
    expect(unit.read32(REG.FECTL)).toBe(0x8000_0000);
    unit.write32(REG.FEADDR, 0xfee0_0003);
    expect(unit.read32(REG.FEADDR)).toBe(0xfee0_0000);
    unit.write32(REG.FEDATA, 0x1234_5678);
    expect(unit.read32(REG.FEDATA)).toBe(0x5678);
    unit.write64(REG.CAP, 0n);
    expect(unit.read64(REG.CAP)).not.toBe(0n);
    unit.write64(REG.IQH, 0x10n);
    expect(unit.read64(REG.IQH)).toBe(0n);
    // A 64-bit write over FEADDR + FEUADDR writes both (FEUADDR is reserved here).
    unit.write64(REG.FEADDR, 0x1_fee0_1000n);
    expect(unit.read32(REG.FEADDR)).toBe(0xfee0_1000);
    expect(unit.read32(REG.FEUADDR)).toBe(0);
  });

  it('unknown, misaligned and wrongly sized accesses read 0, are ignored and traced', () => {
    const { unit, sched } = makeRig();
    const seen: string[] = [];
    sched.trace.subscribe((rec) => {
      if (rec.kind === 'guest-error') seen.push(String(rec.fields.what));
    });
    expect(unit.read32(0x30)).toBe(0);
    expect(unit.read32(0x09)).toBe(0);
    expect(unit.read64(0x0c)).toBe(0n);
    expect(unit.read32(0x10_0000)).toBe(0);
    expect(unit.read(0x0, 2)).toBe(0n);
    unit.write32(0x30, 1);
    unit.write(0x18, 1, 0xff);
    unit.write32(-4, 1);
    unit.write32(Number.NaN, 1);
    expect(unit.read32(REG.GSTS)).toBe(0);
    expect(seen.length).toBe(9);
  });

  it('random register writes of any offset, size and value never throw', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            offset: fc.oneof(fc.integer({ min: 0, max: 0x2a0 }), fc.integer(), fc.constantFrom(...VTD_REGS.map((r) => r.offset))),
            size: fc.constantFrom(1, 2, 4, 8, 3, 16),
            value: fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }),
            dma: fc.integer({ min: 0, max: 0x4000_0000 }),
          }),
          { maxLength: 60 },
        ),
        (ops) => {
          const r = makeRig({ memSize: 1 << 22, qiDescriptorNs: 0 });
          r.drv.init();
          for (const op of ops) {
            if (op.offset % 8 === 0 && op.size === 8) r.unit.write64(op.offset, op.value);
            else r.unit.write(op.offset, op.size, op.value);
            r.unit.read(op.offset, op.size);
            r.read32(op.dma & 0xffff, op.dma);
            r.unit.explain(op.dma & 0xffff, BigInt(op.dma) * 4096n);
            r.sched.runSync();
          }
          // Status registers hold only their defined bits.
          expect(r.unit.read32(REG.GSTS) & ~(fmask('GSTS', 'TES') | fmask('GSTS', 'RTPS') | fmask('GSTS', 'QIES'))).toBe(0);
          expect(r.unit.read32(REG.FSTS) & ~0xff13).toBe(0);
        },
      ),
      { seed: 42, numRuns: 150 },
    );
  });

  it('README.md carries the register table generated from the data', () => {
    const readme = readFileSync(resolve(import.meta.dirname, '../iommu/vtd/README.md'), 'utf8');
    const m = /<!-- regs:begin -->\n([\s\S]*?)\n<!-- regs:end -->/.exec(readme);
    expect(m?.[1]).toBe(registerTableMarkdown());
  });
});
