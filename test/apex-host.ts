import { PhysicalMemory, Simulator } from '../sim/index.ts';
import { StandaloneHost, type StandaloneOptions } from '../device-models/pci/index.ts';
import { APEX, APEX_OFFSET, ApexDevice, type ApexOptions, type ApexRegName } from '../device-models/apex/index.ts';

/** BAR2 offset of a named Apex CSR. */
export const apexOff = (n: ApexRegName): number => APEX_OFFSET[APEX[n]] as number;

/**
 * An Apex on a {@link StandaloneHost} with `memBytes` of memory, set up as every driver starts: memory space
 * and bus mastering on, MSI-X enabled, and MSI-X entries 0..12 unmasked with entry i sending vector i.
 */
export function openApex(memBytes: number, options: ApexOptions = {}, hostOptions: StandaloneOptions = {}) {
  const sim = new Simulator();
  const mem = new PhysicalMemory(memBytes);
  const apex = new ApexDevice(sim, options);
  const host = new StandaloneHost(sim, mem, apex.fn, hostOptions);
  const fn = apex.fn;
  const w64 = (o: number, v: bigint | number): void => fn.mmioWrite64(2, o, BigInt(v));
  const r64 = (o: number): bigint => fn.mmioRead64(2, o);
  fn.configWrite(0x04, 2, 0x0006);
  fn.configWrite(0x48 + 2, 2, 0x8000);
  for (let i = 0; i < 13; i++) {
    fn.mmioWrite(2, 0x46800 + 16 * i, 4, 0xfee0_0000);
    fn.mmioWrite(2, 0x46800 + 16 * i + 8, 4, i);
    fn.mmioWrite(2, 0x46800 + 16 * i + 12, 4, 0);
  }
  return { sim, mem, apex, host, fn, w64, r64 };
}
