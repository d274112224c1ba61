import { APEX, APEX_IRQ_COUNT, APEX_OFFSET, ApexIrq, type ApexRegName } from '../device-models/index.ts';
import type { MachineConfig } from '../machine/index.ts';

/**
 * What the Apex scenarios share, whoever reaches the registers (machine MMIO in apex-direct, a UIO
 * mapping of BAR2 in uio-apex): the machine with an Apex, the SCU reset sequence of apex_driver.c, and
 * the matrix multiply and its reference.
 */

/** BAR2 offset of a named CSR. */
export const off = (n: ApexRegName): number => APEX_OFFSET[APEX[n]] as number;

/** `0x` and hex digits. */
export function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

/** The configuration with an Apex at 01:00.0 below a root port at 00:1c.0 (unless it has one), IOMMU on or off. */
export function withApex(c: MachineConfig, iommu: boolean): MachineConfig {
  const base = { ...c, iommu: { ...c.iommu, enabled: iommu } };
  if (c.pci.devices.some((d) => d.type === 'apex')) return base;
  const port = c.pci.bridges.some((b) => b.secondaryBus === 1) ? [] : [{ kind: 'root-port' as const, bdf: 0xe0, secondaryBus: 1 }];
  return { ...base, pci: { ...c.pci, bridges: [...c.pci.bridges, ...port], devices: [...c.pci.devices, { type: 'apex', bdf: 0x0100, acs: false }] } };
}

/** The matrix multiply both scenarios run: C (M x N int32) = A (M x K int8) B (K x N int8). */
export const MATMUL = { M: 8, K: 16, N: 12 } as const;

/** C = A B over int8 inputs, int32 results, row-major: the plain computation the device's result must equal. */
export function matmulRef(a: Int8Array, b: Int8Array): Int32Array {
  const { M, K, N } = MATMUL;
  const c = new Int32Array(M * N);
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += (a[i * K + k] as number) * (b[k * N + j] as number);
    c[i * N + j] = s;
  }
  return c;
}

/** 32- and 64-bit access to BAR2 by offset, and a way to let virtual time pass. */
export interface ApexBar {
  r32(o: number): number;
  w32(o: number, v: number): void;
  r64(o: number): bigint;
  w64(o: number, v: bigint | number): void;
  /** Waits `ns` of virtual time. */
  delay(ns: number): PromiseLike<unknown>;
}

/** apex_driver.c's `rmw32(reg, value, width, shift)`. */
export function rmw32(bar: ApexBar, o: number, v: number, width: number, shift: number): void {
  const mask = ((1 << width) - 1) << shift;
  bar.w32(o, ((bar.r32(o) & ~mask) | ((v << shift) & mask)) >>> 0);
}

/** The 64-bit variant. */
export function rmw64(bar: ApexBar, o: number, v: bigint, width: number, shift: number): void {
  const mask = ((1n << BigInt(width)) - 1n) << BigInt(shift);
  bar.w64(o, (bar.r64(o) & ~mask) | ((v << BigInt(shift)) & mask));
}

/** gasket's poll, in 1 us steps of virtual time; returns the microseconds it took. */
export async function poll(bar: ApexBar, o: number, mask: number, want: number, what: string): Promise<number> {
  for (let i = 0; i < 1000; i++) {
    if ((bar.r32(o) & mask) === want) return i;
    await bar.delay(1000);
  }
  throw new Error(`apex: ${what} never happened`);
}

/**
 * apex_reset (spec/devices.md 1.4): enter reset if the GCB is not in it (force idle, pause DMA, reset,
 * clock gate, RAM shutdown), then quit it (RAMs on, out of reset, power state 2) and wait for both tables
 * to be initialised. `say` gets one line per phase.
 */
export async function apexReset(bar: ApexBar, say: (t: string) => void): Promise<void> {
  const SCU_2 = off('SCU_2');
  const SCU_3 = off('SCU_3');
  if ((bar.r32(SCU_3) & 0x10) === 0) {
    rmw64(bar, off('IDLEGENERATOR'), 0n, 1, 32);
    bar.w64(off('USER_HIB_DMA_PAUSE'), 1);
    await poll(bar, off('USER_HIB_DMA_PAUSED'), 1, 1, 'DMA paused');
    rmw32(bar, SCU_2, 1, 2, 2);
    rmw32(bar, SCU_2, 1, 2, 18);
    rmw32(bar, SCU_3, 3, 2, 14);
    await poll(bar, SCU_3, 0x40, 0x40, 'RAM shutdown');
    say(`SCU: GCB in reset (SCU_3 ${hex(bar.r32(SCU_3))})`);
  }
  rmw32(bar, SCU_3, 0, 2, 14);
  rmw32(bar, SCU_2, 0, 2, 18);
  rmw32(bar, SCU_2, 2, 2, 2);
  await poll(bar, SCU_3, 0x40, 0, 'RAM power-up');
  await poll(bar, SCU_3, 0x10, 0, 'GCB out of reset');
  rmw32(bar, SCU_3, 2, 2, 26);
  await poll(bar, off('PAGE_TABLE_INIT'), 1, 1, 'page table init');
  await poll(bar, off('MSIX_TABLE_INIT'), 1, 1, 'MSI-X table init');
  say(`SCU: GCB out of reset (SCU_3 ${hex(bar.r32(SCU_3))}), PAGE_TABLE_INIT ${bar.r64(off('PAGE_TABLE_INIT'))}, MSIX_TABLE_INIT ${bar.r64(off('MSIX_TABLE_INIT'))}`);
}

/**
 * gasket_interrupt_init's INTVECCTL half: source i names MSI-X entry i (the queues' own registers, FATAL_ERR's,
 * then SC_HOST_0-3 and TOP_LEVEL_0-3 packed 7 bits each).
 */
export function programIntvecctl(bar: ApexBar): void {
  for (let i = 0; i < APEX_IRQ_COUNT; i++) {
    if (i < 4) bar.w64(off('INSTR_QUEUE_INTVECCTL') + 8 * i, i);
    else if (i === ApexIrq.FATAL_ERR) bar.w64(off('FATAL_ERR_INTVECCTL'), i);
    else rmw64(bar, i < 8 ? off('SC_HOST_INTVECCTL') : off('TOP_LEVEL_INTVECCTL'), BigInt(i), 7, 7 * ((i - 4) % 4));
  }
}

/**
 * libedgetpu's queue-0 start: descriptor size checked, ring and status block at their device addresses,
 * `ring` descriptors, enabled (waiting for IQ_STATUS), the scalar core running, status block updates on, and
 * the queue (`iqInterrupt`), SC_HOST and FATAL_ERR interrupt controls set.
 */
export async function startQueue0(bar: ApexBar, ringAddr: number | bigint, statusAddr: number | bigint, ring: number, iqInterrupt: boolean): Promise<void> {
  if (bar.r64(off('IQ_DESCRIPTOR_SIZE')) !== 16n) throw new Error('apex: descriptor size is not 16');
  bar.w64(off('IQ_BASE'), ringAddr);
  bar.w64(off('IQ_STATUS_BLOCK_BASE'), statusAddr);
  bar.w64(off('IQ_SIZE'), ring);
  bar.w64(off('IQ_CONTROL'), 0b101);
  await poll(bar, off('IQ_STATUS'), 1, 1, 'queue enabled');
  bar.w64(off('SC_RUN_CONTROL'), 1);
  bar.w64(off('STATUS_BLOCK_UPDATE'), 0);
  bar.w64(off('IQ_INT_CONTROL'), iqInterrupt ? 1 : 0);
  bar.w64(off('SC_HOST_INT_CONTROL'), 0xf);
  bar.w64(off('FATAL_ERR_INT_CONTROL'), 1);
}
