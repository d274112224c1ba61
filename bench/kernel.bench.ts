import { createMachine } from '../machine/index.ts';
import { bootKernel, type Mapping, type Sys } from '../kernel-shim/index.ts';
import type { BenchmarkDef, RunResult } from './harness.ts';
import { registerBenchmarks } from './registry.ts';

/**
 * kernel.syscall: one process doing `write(efd, 8 bytes)` then `read(efd, 8 bytes)` on an eventfd, `n`
 * times, under `sim.run()`. Returns the wall-clock ms of the run (from spawn to the process's exit).
 */
export async function eventfdRoundTrips(n: number): Promise<{ ms: number; simNs: number }> {
  const machine = createMachine({ memory: { size: 16 << 20 } });
  const kernel = bootKernel(machine);
  let done = 0;
  const p = kernel.spawn({ comm: 'bench' }, async (sys) => {
    const efd = await sys.eventfd(0, 0);
    const w = new Uint8Array(8);
    new DataView(w.buffer).setBigUint64(0, 1n, true);
    const r = new Uint8Array(8);
    for (let i = 0; i < n; i++) {
      await sys.write(efd, w);
      await sys.read(efd, r);
      done++;
    }
    return 0;
  });
  const t0 = performance.now();
  await machine.sim.run();
  const ms = performance.now() - t0;
  const status = await p.exited;
  if (status !== 0 || done !== n) throw new Error(`kernel.syscall: ${done}/${n} round trips, exit status ${status}`);
  return { ms, simNs: machine.sim.now };
}

const ROUND_TRIPS = 300_000;

const syscall: BenchmarkDef = {
  name: 'kernel.syscall',
  unit: 'Mround-trips/s',
  description: `eventfd write + read round trips from one process through Sys, ${ROUND_TRIPS} of them`,
  target: 1,
  async prepare() {
    await eventfdRoundTrips(30_000);
    return async (): Promise<RunResult> => {
      const r = await eventfdRoundTrips(ROUND_TRIPS);
      return { value: ROUND_TRIPS / r.ms / 1000, ms: r.ms, extra: { roundTrips: ROUND_TRIPS, simNs: r.simNs } };
    };
  },
};

registerBenchmarks(syscall);

const EDU_LIVENESS = 0x04;
const EDU_FACTORIAL = 0x08;
const EDU_STATUS = 0x20;
const EDU_IRQ_ACK = 0x64;

/**
 * Boots a kernel on a machine with an edu at 00:03.0, binds `uio_pci_generic` to it through `new_id` and
 * runs `body` as root with `/dev/uio0` open, BAR0 mapped and the function's `config` open; resolves to
 * `body`'s result once the process has exited.
 */
async function onUioEdu<T>(body: (sys: Sys, ufd: number, bar: Mapping, cfd: number) => Promise<T>): Promise<T> {
  const machine = createMachine({ memory: { size: 64 << 20 }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } });
  const kernel = bootKernel(machine);
  let out: { v: T } | undefined;
  const p = kernel.spawn({ comm: 'bench' }, async (sys) => {
    const id = await sys.open('/sys/bus/pci/drivers/uio_pci_generic/new_id', 1);
    await sys.write(id, '1234 11e8');
    await sys.close(id);
    const ufd = await sys.open('/dev/uio0', 2);
    const bar = await sys.mmap(null, 4096, 3, 1, ufd, 0);
    const cfd = await sys.open('/sys/bus/pci/devices/0000:00:03.0/config', 2);
    const cmd = new Uint8Array([0x06]);
    await sys.pwrite(cfd, cmd, 4);
    out = { v: await body(sys, ufd, bar, cfd) };
    return 0;
  });
  await machine.sim.run();
  const status = await p.exited;
  if (status !== 0 || out === undefined) throw new Error(`uio bench: the process exited with status ${status}`);
  return out.v;
}

/** uio.mmio: `n` reads of edu's liveness register through BAR0 mapped from `/dev/uio0`; wall ms of the loop. */
export function uioMmioReads(n: number): Promise<{ ms: number; sum: number }> {
  return onUioEdu(async (_sys, _ufd, bar) => {
    bar.write32(EDU_LIVENESS, 0x1234_5678);
    let sum = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) sum = (sum + bar.read32(EDU_LIVENESS)) | 0;
    const ms = performance.now() - t0;
    return { ms, sum };
  });
}

/**
 * uio.irq: `n` edu factorials with the completion interrupt through `uio_pci_generic`, back to back: write
 * the input, block in `read(/dev/uio0)`, acknowledge on edu, re-enable INTx through `config` byte 5. Wall
 * ms of the loop, and virtual ns it took.
 */
export function uioIrqRoundTrips(n: number): Promise<{ ms: number; simNs: number }> {
  return onUioEdu(async (sys, ufd, bar, cfd) => {
    const cnt = new Uint8Array(4);
    const hi = new Uint8Array(1);
    bar.write32(EDU_STATUS, 0x80);
    const s0 = await sys.clock_gettime();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      bar.write32(EDU_FACTORIAL, 5 + (i & 7));
      await sys.read(ufd, cnt);
      bar.write32(EDU_IRQ_ACK, 1);
      await sys.pread(cfd, hi, 5);
      hi[0] = hi[0]! & ~0x4;
      await sys.pwrite(cfd, hi, 5);
    }
    const ms = performance.now() - t0;
    const count = new DataView(cnt.buffer).getUint32(0, true);
    if (count !== n) throw new Error(`uio.irq: ${count} interrupts counted for ${n} factorials`);
    return { ms, simNs: (await sys.clock_gettime()) - s0 };
  });
}

const MMIO_READS = 20_000_000;

const uioMmio: BenchmarkDef = {
  name: 'uio.mmio',
  unit: 'Mreads/s',
  description: `${MMIO_READS / 1e6} M reads of edu's liveness register from a process through BAR0 mapped from /dev/uio0`,
  target: 60,
  async prepare() {
    await uioMmioReads(2_000_000);
    return async (): Promise<RunResult> => {
      const r = await uioMmioReads(MMIO_READS);
      return { value: MMIO_READS / r.ms / 1000, ms: r.ms, extra: { reads: MMIO_READS } };
    };
  },
};

const IRQ_ROUND_TRIPS = 100_000;

const uioIrq: BenchmarkDef = {
  name: 'uio.irq',
  unit: 'kround-trips/s',
  description: `${IRQ_ROUND_TRIPS / 1000} k edu factorial interrupts through uio_pci_generic (write, blocking read, ack, INTx re-enable through config)`,
  target: 200,
  async prepare() {
    await uioIrqRoundTrips(10_000);
    return async (): Promise<RunResult> => {
      const r = await uioIrqRoundTrips(IRQ_ROUND_TRIPS);
      return { value: IRQ_ROUND_TRIPS / r.ms, ms: r.ms, extra: { roundTrips: IRQ_ROUND_TRIPS, simNs: r.simNs } };
    };
  },
};

registerBenchmarks(uioMmio, uioIrq);
