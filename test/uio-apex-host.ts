/** Shared set-up of the uio_apex tests: a booted machine with the Apex and helpers over the process API. */
import { expect } from 'vitest';
import { APEX, APEX_IRQ_COUNT, APEX_OFFSET, type ApexRegName } from '../device-models/index.ts';
import type { Kernel } from '../kernel-shim/kernel.ts';
import type { Mapping } from '../kernel-shim/mm/mapping.ts';
import type { PollFd, Sys } from '../kernel-shim/task/sys.ts';
import { MAP, O, POLL, PROT } from '../kernel-shim/uapi/linux.ts';
import type { LinuxVersion } from '../kernel-shim/versions.ts';
import type { Machine, MachineConfigInput } from '../machine/index.ts';
import { withMachine } from '../userspace/index.ts';

/** The Apex at 01:00.0 below a root port, no IOMMU translation, `uio_apex` loaded. */
export const CONFIG = {
  memory: { size: '256MiB' },
  iommu: { enabled: false },
  pci: { bridges: [{ kind: 'root-port' as const, bdf: 0xe0, secondaryBus: 1 }], devices: [{ type: 'apex' as const, bdf: 0x0100, acs: false }] },
};
/** The Apex's address. */
export const BDF = '01:00.0';
/** BAR2 offset of a named CSR. */
export const off = (n: ApexRegName): number => APEX_OFFSET[APEX[n]] as number;
/** Read and write. */
export const PROT_RW = PROT.READ | PROT.WRITE;
const decoder = new TextDecoder();

/** What a test body gets. */
export interface Ctx {
  sys: Sys;
  machine: Machine;
  kernel: Kernel;
}

/** Runs `body` as root on a booted machine (leak-checked by withMachine) and expects it to return 0. */
export async function onApex(body: (c: Ctx) => Promise<number>, linux: LinuxVersion = '6.1', config: MachineConfigInput = CONFIG): Promise<void> {
  await withMachine(config, async ({ machine, kernel, spawn, run }) => {
    const p = spawn('apex-uio', (sys) => body({ sys, machine, kernel }));
    await run();
    expect(await p.exited).toBe(0);
  }, { modules: ['uio_apex'], linux });
}

/** A sysfs file's text, trimmed. */
export async function cat(sys: Sys, path: string): Promise<string> {
  const fd = await sys.open(path, O.RDONLY);
  const b = new Uint8Array(256);
  const n = await sys.read(fd, b);
  await sys.close(fd);
  return decoder.decode(b.subarray(0, n)).trim();
}

/** An s32 as `write(/dev/uioN)` takes it. */
export const s32 = (v: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
};
/** The s32 a `read(/dev/uioN)` returned. */
export const count = (b: Uint8Array): number => new DataView(b.buffer).getInt32(0, true);

/** Opens every /dev/uioN, maps BAR2 through /dev/uio0 and enables every source at the device. */
export async function openAll(sys: Sys): Promise<{ fds: number[]; bar: Mapping }> {
  const fds: number[] = [];
  for (let i = 0; i < APEX_IRQ_COUNT; i++) fds.push(await sys.open(`/dev/uio${i}`, O.RDWR));
  const bar = await sys.mmap(null, 1 << 20, PROT_RW, MAP.SHARED, fds[0] as number, 0);
  for (const r of ['IQ_INT_CONTROL', 'Q1_INT_CONTROL', 'Q2_INT_CONTROL', 'Q3_INT_CONTROL', 'FATAL_ERR_INT_CONTROL'] as const) bar.write64(off(r), 1n);
  bar.write64(off('SC_HOST_INT_CONTROL'), 0xfn);
  bar.write64(off('TOP_LEVEL_INT_CONTROL'), 0xfn);
  return { fds, bar };
}

/** The /dev/uioN (by index) that poll reports readable now. */
export async function readable(sys: Sys, fds: readonly number[]): Promise<number[]> {
  const p: PollFd[] = fds.map((fd) => ({ fd, events: POLL.IN }));
  await sys.poll(p, 0);
  return p.flatMap((e, i) => ((e.revents ?? 0) & POLL.IN ? [i] : []));
}
