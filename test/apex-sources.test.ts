import { describe, expect, it } from 'vitest';
import { PhysicalMemory, Simulator } from '../sim/index.ts';
import { StandaloneHost } from '../device-models/pci/index.ts';
import { APEX, APEX_OFFSET, ApexDevice, ApexIrq, apexTempToAdc, type ApexOptions, type ApexRegName } from '../device-models/apex/index.ts';

/** TOP_LEVEL_0..3 from their causes (device-models/apex/README.md, Interrupts): thermal trace, link error, MBIST. */

const off = (n: ApexRegName) => APEX_OFFSET[APEX[n]] as number;

function open(options: ApexOptions = {}) {
  const sim = new Simulator();
  const apex = new ApexDevice(sim, options);
  const host = new StandaloneHost(sim, new PhysicalMemory(1 << 20), apex.fn);
  const fn = apex.fn;
  const w32 = (o: number, v: number) => fn.mmioWrite(2, o, 4, v >>> 0);
  const r32 = (o: number) => fn.mmioRead(2, o, 4);
  const w64 = (o: number, v: number) => fn.mmioWrite64(2, o, BigInt(v));
  fn.configWrite(0x04, 2, 0x0006);
  fn.configWrite(0x48 + 2, 2, 0x8000);
  for (let i = 0; i < 13; i++) {
    fn.mmioWrite(2, 0x46800 + 16 * i, 4, 0xfee0_0000);
    fn.mmioWrite(2, 0x46800 + 16 * i + 8, 4, i);
    fn.mmioWrite(2, 0x46800 + 16 * i + 12, 4, 0);
  }
  w64(off('TOP_LEVEL_INTVECCTL'), 8 | (9 << 7) | (10 << 14) | (11 << 21));
  w64(off('TOP_LEVEL_INT_CONTROL'), 0xf);
  const at = (v: number) => host.messages.filter((m) => m.data === v).map((m) => m.time);
  const adc = () => (r32(off('OMC0_DC')) >>> 16) & 0x3ff;
  return { sim, apex, host, w32, r32, w64, at, adc };
}

const warn = (milliC: number) => ((1 << 31) | (apexTempToAdc(milliC) << 16)) >>> 0;

describe('Apex thermal sources', () => {
  it('the sensor follows the trace; warn1 raises TOP_LEVEL_3 and warn2 TOP_LEVEL_0 at each crossing', () => {
    const trace = [
      { atNs: 1_000, milliC: 80_000 },
      { atNs: 5_000, milliC: 91_000 },
      { atNs: 9_000, milliC: 101_000 },
      { atNs: 12_000, milliC: 70_000 },
      { atNs: 20_000, milliC: 95_000 },
    ];
    const b = open({ thermal: trace });
    expect(b.adc()).toBe(484);
    // As apex_driver.c programs them: warn1 at 90 °C, warn2 (shutdown) at 100 °C.
    b.w32(off('OMC0_D4'), warn(90_000));
    b.w32(off('OMC0_D8'), warn(100_000));
    for (const p of trace) {
      b.sim.runSync({ until: p.atNs });
      expect(b.adc()).toBe(apexTempToAdc(p.milliC));
      expect((662 - b.adc()) * 250 + 550).toBeGreaterThan(p.milliC - 250);
    }
    b.sim.runSync({ until: 30_000 });
    expect(b.at(ApexIrq.TOP_LEVEL_3)).toEqual([5_000, 20_000]);
    expect(b.at(ApexIrq.TOP_LEVEL_0)).toEqual([9_000]);
    expect(Number(b.apex.fn.mmioRead64(2, off('TOP_LEVEL_INT_STATUS')))).toBe(0b1001);
    expect(b.at(ApexIrq.TOP_LEVEL_1)).toEqual([]);
    expect(b.at(ApexIrq.TOP_LEVEL_2)).toEqual([]);
  });

  it('enabling a warning while already hot raises it once; disabled warnings never fire', () => {
    const b = open({ thermal: [{ atNs: 0, milliC: 96_000 }] });
    b.w32(off('OMC0_D4'), warn(90_000) & 0x7fff_ffff);
    b.sim.runSync({ until: 1_000 });
    expect(b.at(ApexIrq.TOP_LEVEL_3)).toEqual([]);
    b.w32(off('OMC0_D4'), warn(90_000));
    b.w32(off('OMC0_D4'), warn(90_000));
    expect(b.at(ApexIrq.TOP_LEVEL_3)).toEqual([1_000]);
  });
});

describe('Apex injected sources', () => {
  it('injectLinkError raises TOP_LEVEL_1; injectMbistFailure TOP_LEVEL_2, deferred to reset exit while in reset', () => {
    const b = open();
    b.apex.injectLinkError();
    expect(b.at(ApexIrq.TOP_LEVEL_1)).toEqual([0]);
    b.apex.injectMbistFailure();
    expect(b.at(ApexIrq.TOP_LEVEL_2)).toEqual([0]);
    // Enter reset (SCU_2 rg_rst_gcb = 1), inject, leave reset: the status latches at exit (enables reset to 0).
    b.w32(off('SCU_2'), 1 << 2);
    b.sim.runSync({ until: 10_000 });
    expect(b.apex.scu.inReset).toBe(true);
    b.apex.injectLinkError();
    b.apex.injectMbistFailure();
    expect(b.apex.irq.raised[ApexIrq.TOP_LEVEL_1]).toBe(1);
    b.w32(off('SCU_2'), 2 << 2);
    b.sim.runSync({ until: 20_000 });
    expect(b.apex.scu.inReset).toBe(false);
    expect(Number(b.apex.fn.mmioRead64(2, off('TOP_LEVEL_INT_STATUS')))).toBe(0b100);
    expect(b.apex.irq.raised[ApexIrq.TOP_LEVEL_2]).toBe(2);
  });
});
