import { bootKernel, MAP, O, PAGE_SIZE, POLL, PROT, type LinuxVersion, type Mapping, type PollFd, type Sys } from '../kernel-shim/index.ts';
import { APEX_COMMAND_SIZE, APEX_PAGE_TABLE, ApexOp } from '../device-models/index.ts';
import type { Machine, MachineConfig } from '../machine/index.ts';
import { MATMUL, apexReset, hex, matmulRef, off, startQueue0, withApex, type ApexBar } from './apex-common.ts';
import type { Scenario, ScenarioContext } from './scenario.ts';
import { readText } from '../userspace/index.ts';

const PROT_RW = PROT.READ | PROT.WRITE;
const { M, K, N } = MATMUL;
const SIMPLE_SLOTS = 6144;
const RING = 256;
/** uio_apex's nodes: the queue's source, SC_HOST_0 (job done) and FATAL_ERR. */
const UIO = { instrQueue: 0, scHost0: 4, fatal: 12 } as const;
/** Pages of the queue region (map1): ring, status block, command buffer; of the data region (map2): A, B, C. */
const Q = { ring: 0, status: 1, cmd: 2 } as const;
const D = { a: 0, b: 1, c: 2 } as const;
/** Simple slots: the queue region's pages first, then the data region's. */
const DATA_SLOT0 = 16;


/** One map of /dev/uio0 as sysfs shows it. */
interface UioMap {
  name: string;
  addr: bigint;
  size: number;
}

async function readMap(sys: Sys, n: number): Promise<UioMap> {
  const d = `/sys/class/uio/uio0/maps/map${n}`;
  return { name: await readText(sys, `${d}/name`), addr: BigInt(await readText(sys, `${d}/addr`)), size: Number(await readText(sys, `${d}/size`)) };
}

const show = (m: UioMap): string => `${m.name} addr ${hex(m.addr)} size ${m.size >>> 10} KiB`;

/** The scenario's machine: the configuration's with an Apex, the IOMMU off (as 2018 hosts ran it) unless `iommu`. */
function uioApexMachine(c: MachineConfig, iommu: boolean): MachineConfig {
  return withApex(c, iommu);
}

const s32 = (v: number): Uint8Array => new Uint8Array(new Int32Array([v]).buffer);

/**
 * The user-space driver: everything libedgetpu does for one job, through /dev/uio0, uio4 and uio12. With
 * `translating` (the IOMMU on) the job is expected to fail: the device reaches the buffers by IOVA, but the
 * CPU's mapping of that number as a physical address misses them, so the device reads a zeroed ring.
 */
async function driver(sys: Sys, m: Machine, w: (t: string) => void, translating: boolean): Promise<boolean> {
  const names: string[] = [];
  const nodes = (await sys.readdir('/sys/class/uio')).sort((x, y) => Number(x.slice(3)) - Number(y.slice(3)));
  for (const u of nodes) names.push(`${u} ${await readText(sys, `/sys/class/uio/${u}/name`)}`);
  w(`${names.length} UIO devices, one per interrupt source: ${names[0]} .. ${names[names.length - 1]}`);
  const before = await readMap(sys, 1);
  w(`closed: map1 ${show(before)} (~0: not allocated)`);
  const u0 = await sys.open(`/dev/uio${UIO.instrQueue}`, O.RDWR);
  const u4 = await sys.open(`/dev/uio${UIO.scHost0}`, O.RDWR);
  const u12 = await sys.open(`/dev/uio${UIO.fatal}`, O.RDWR);
  const bar2 = await readMap(sys, 0);
  const qm = await readMap(sys, 1);
  const dm = await readMap(sys, 2);
  w(`opened /dev/uio0: map0 ${show(bar2)}; map1 ${show(qm)}; map2 ${show(dm)} (DMA addresses: the first open allocated them)`);
  const regs: Mapping = await sys.mmap(null, bar2.size, PROT_RW, MAP.SHARED, u0, 0);
  const qmap: Mapping = await sys.mmap(null, qm.size, PROT_RW, MAP.SHARED, u0, PAGE_SIZE);
  const dmap: Mapping = await sys.mmap(null, dm.size, PROT_RW, MAP.SHARED, u0, 2 * PAGE_SIZE);
  w(`mmap: BAR2 at ${hex(regs.addr)}, queue region at ${hex(qmap.addr)}, data region at ${hex(dmap.addr)}`);
  const bar: ApexBar = {
    r32: (o) => regs.read32(o), w32: (o, v) => regs.write32(o, v), r64: (o) => regs.read64(o), w64: (o, v) => regs.write64(o, BigInt(v)),
    delay: (ns) => sys.nanosleep(ns),
  };

  await apexReset(bar, w);
  // The reset cleared the MSI-X table and INTVECCTLs: writing 1 makes uio_apex re-arm and unmask each vector.
  for (const fd of [u0, u4, u12]) await sys.write(fd, s32(1));
  w(`write(1) to /dev/uio0, uio4, uio12: MSI-X entries and INTVECCTL re-armed (SC_HOST_INTVECCTL ${hex(bar.r64(off('SC_HOST_INTVECCTL')))}: SC_HOST_0 -> entry 4)`);

  bar.w64(off('EXTENDED_TABLE'), APEX_PAGE_TABLE.entries);
  bar.w64(off('EXTENDED_TABLE'), SIMPLE_SLOTS);
  const slot = (s: number, dma: bigint): void => bar.w64(APEX_PAGE_TABLE.offset + 8 * s, dma | 1n);
  for (let p = 0; p < qm.size / PAGE_SIZE; p++) slot(p, qm.addr + BigInt(p * PAGE_SIZE));
  for (let p = 0; p < dm.size / PAGE_SIZE; p++) slot(DATA_SLOT0 + p, dm.addr + BigInt(p * PAGE_SIZE));
  const dev = { q: (p: number) => p << 12, d: (p: number) => (DATA_SLOT0 + p) << 12 };
  w(`page table: ${bar.r64(off('EXTENDED_TABLE'))} simple slots; slots 0-${qm.size / PAGE_SIZE - 1} -> map1, ${DATA_SLOT0}-${DATA_SLOT0 + dm.size / PAGE_SIZE - 1} -> map2 (entries hold the sysfs DMA addresses)`);

  await startQueue0(bar, dev.q(Q.ring), dev.q(Q.status), RING, true);
  w(`queue 0: ${RING} descriptors at device ${hex(dev.q(Q.ring))} (map1 page ${Q.ring}), status block at ${hex(dev.q(Q.status))}, IQ_STATUS ${hex(bar.r64(off('IQ_STATUS')))}`);

  const a = new Int8Array(M * K);
  const b = new Int8Array(K * N);
  for (let i = 0; i < a.length; i++) a[i] = (m.rng.u32() & 0xff) - 128;
  for (let i = 0; i < b.length; i++) b[i] = (m.rng.u32() & 0xff) - 128;
  sys.mem.writeBytes(dmap.addr + BigInt(D.a * PAGE_SIZE), new Uint8Array(a.buffer));
  sys.mem.writeBytes(dmap.addr + BigInt(D.b * PAGE_SIZE), new Uint8Array(b.buffer));
  const cb = Q.cmd * PAGE_SIZE;
  qmap.write32(cb, ApexOp.MATMUL_I8);
  qmap.write64(cb + 8, BigInt(dev.d(D.a)));
  qmap.write64(cb + 16, BigInt(dev.d(D.b)));
  qmap.write64(cb + 24, BigInt(dev.d(D.c)));
  [M, K, N].forEach((v, k) => qmap.write32(cb + 32 + 4 * k, v));
  qmap.write64(Q.ring * PAGE_SIZE, BigInt(dev.q(Q.cmd)));
  qmap.write32(Q.ring * PAGE_SIZE + 8, APEX_COMMAND_SIZE);
  bar.w64(off('IQ_TAIL'), 1);
  w(`MATMUL_I8 ${M}x${K} * ${K}x${N}: command at device ${hex(dev.q(Q.cmd))}, A/B/C at ${hex(dev.d(D.a))}/${hex(dev.d(D.b))}/${hex(dev.d(D.c))}; doorbell IQ_TAIL = 1; blocking in poll(/dev/uio4, /dev/uio12)`);

  const finish = async (): Promise<UioMap> => {
    for (const map of [regs, qmap, dmap]) await sys.munmap(map.addr, map.length);
    for (const fd of [u0, u4, u12]) await sys.close(fd);
    const after = await readMap(sys, 1);
    w(`unmapped and closed: map1 ${show(after)} (the last close freed the regions)`);
    return after;
  };
  const cnt = new Uint8Array(4);
  const waitFor: PollFd[] = [{ fd: u4, events: POLL.IN }, { fd: u12, events: POLL.IN }];
  await sys.poll(waitFor, -1);
  if (((waitFor[1]?.revents ?? 0) & POLL.IN) !== 0) {
    await sys.read(u12, cnt);
    const hib = bar.r64(off('HIB_ERROR_STATUS'));
    bar.w64(off('FATAL_ERR_INT_CONTROL'), 0);
    bar.w64(off('FATAL_ERR_INT_STATUS'), 0);
    w(`/dev/uio12 (apex_fatal_err) event ${new DataView(cnt.buffer).getInt32(0, true)}: HIB_ERROR_STATUS ${hex(hib)} (length-0 DMA), IQ_STATUS ${hex(bar.r64(off('IQ_STATUS')))}; the device read the real, zeroed ring through the IOMMU, while the CPU wrote to physical ${hex(qm.addr)}: ${qm.addr < BigInt(m.memory.size) ? 'some other page' : 'no RAM there'}`);
    await finish();
    return translating;
  }
  await sys.read(u4, cnt);
  const ev4 = new DataView(cnt.buffer).getInt32(0, true);
  // libedgetpu: clear SC_HOST_0's status first (W0C), then read its count.
  const st = bar.r64(off('SC_HOST_INT_STATUS'));
  bar.w64(off('SC_HOST_INT_STATUS'), 0xe);
  const count = Number(bar.r64(off('SC_HOST_INT_COUNT')) & 0xffffn);
  w(`/dev/uio4 (apex_sc_host_0) event ${ev4}: job finished; SC_HOST_INT_STATUS ${hex(st)} -> ${hex(bar.r64(off('SC_HOST_INT_STATUS')))} (W0C), count ${count}`);
  await sys.read(u0, cnt);
  const ev0 = new DataView(cnt.buffer).getInt32(0, true);
  const head = qmap.read32(Q.status * PAGE_SIZE);
  const fatal = qmap.read32(Q.status * PAGE_SIZE + 4);
  bar.w64(off('IQ_INT_STATUS'), 0);
  w(`/dev/uio0 (apex_instr_queue) event ${ev0}: status block completed_head ${head}, fatal ${fatal}; IQ_INT_STATUS written 0`);

  const got = new Int32Array(sys.mem.readBytes(dmap.addr + BigInt(D.c * PAGE_SIZE), 4 * M * N).buffer);
  const want = matmulRef(a, b);
  let same = 0;
  for (let i = 0; i < got.length; i++) if (got[i] === want[i]) same++;
  w(`C matches the TypeScript product in ${same}/${got.length} elements (C[0][0] = ${got[0]}, C[${M - 1}][${N - 1}] = ${got[M * N - 1]})`);
  const fatalEvents = Number(await readText(sys, `/sys/class/uio/uio${UIO.fatal}/event`));

  const after = await finish();
  return !translating && same === got.length && head === 1 && fatal === 0 && count === 1 && fatalEvents === 0 && after.addr === before.addr;
}

/** Boots `linux` with uio_apex, runs `main` as root, returns its result and the kernel log's uio_apex lines. */
async function onKernel<T>(ctx: ScenarioContext, linux: LinuxVersion, iommu: boolean, main: (sys: Sys, m: Machine, w: (t: string) => void) => Promise<T>): Promise<{ r: T; log: string[] }> {
  const m = ctx.createMachine(uioApexMachine(ctx.machineConfig, iommu));
  const kernel = bootKernel(m, { linux, modules: ['uio_apex'] });
  const w = (t: string): void => ctx.out.line(`[${(m.sim.now / 1000).toFixed(3).padStart(12)} us] apex-uio: ${t}`);
  let r: T | undefined;
  const p = kernel.spawn({ comm: 'apex-uio' }, async (sys) => {
    r = await main(sys, m, w);
    return 0;
  });
  await m.sim.run();
  if ((await p.exited) !== 0 || r === undefined) throw new Error(`uio-apex: the driver on ${linux} failed`);
  return { r, log: kernel.log.dmesg().split('\n').filter((l) => l.includes('uio_apex')) };
}

/** On 6.1 with the IOMMU translating: `addr` is an IOVA, and mmap maps that number as a physical address. */
async function on61Iommu(sys: Sys, m: Machine, w: (t: string) => void): Promise<boolean> {
  const fd = await sys.open('/dev/uio0', O.RDWR);
  const q = await readMap(sys, 1);
  const map = await sys.mmap(null, q.size, PROT_RW, MAP.SHARED, fd, PAGE_SIZE);
  map.write32(0, 0x1234_5678);
  const back = map.read32(0);
  await sys.munmap(map.addr, map.length);
  await sys.close(fd);
  const ram = q.addr < BigInt(m.memory.size);
  w(`opened /dev/uio0: map1 ${show(q)}: an IOVA, right for the page table; but mmap maps it as a physical address (${ram ? 'some other page of RAM' : 'no RAM there'}): wrote 0x12345678, read back ${hex(back)}`);
  return back !== 0x1234_5678 || ram;
}

/** On 6.12: what sysfs shows for the same regions. */
async function on612(sys: Sys, _m: Machine, w: (t: string) => void): Promise<boolean> {
  const fd = await sys.open('/dev/uio0', O.RDWR);
  const q = await readMap(sys, 1);
  const d = await readMap(sys, 2);
  w(`opened /dev/uio0: map1 ${show(q)}; map2 ${show(d)}`);
  const map = await sys.mmap(null, q.size, PROT_RW, MAP.SHARED, fd, PAGE_SIZE);
  map.write32(0, 1);
  await sys.munmap(map.addr, map.length);
  await sys.close(fd);
  const kva = q.addr >= 0xffff_8000_0000_0000n;
  w(`map1 addr is ${kva ? 'a kernel virtual address' : 'NOT a kernel address'} (memtype DMA_COHERENT): mmap still works, but no bus address reaches user space, so it cannot fill the page table`);
  return kva;
}

/**
 * The Apex through the `uio_apex` module (the 2018 UIO proposal) on Linux 6.1 with the IOMMU off, the way
 * such a user-space driver ran: it opens /dev/uio0 (which allocates the coherent regions), learns their
 * DMA addresses from sysfs `maps/mapN/addr`, maps BAR2 and the regions, resets the device through the SCU,
 * re-arms the vectors, fills the gasket page table with the regions' DMA addresses, puts queue 0's ring,
 * status block and command in the queue region and the operands in the data region, submits a matrix
 * multiply, waits on /dev/uio4 (SC_HOST_0: execution completion), acknowledges (W0C), reads the status
 * block after /dev/uio0 (INSTR_QUEUE) and checks C. Then it boots 6.12 to show what changed in 6.9, and 6.1
 * with the IOMMU translating to show why: `addr` is then an IOVA, which mmap maps as a physical address.
 * With `--iommu` the first run is behind the translating IOMMU too, and its job faults (FATAL_ERR).
 */
async function runUioApex(ctx: ScenarioContext): Promise<void> {
  ctx.out.line(ctx.iommu ? '== Linux 6.1, IOMMU translating (--iommu): uio_apex ==' : '== Linux 6.1, IOMMU off: uio_apex ==');
  const a = await onKernel(ctx, '6.1', ctx.iommu, (sys, m, w) => driver(sys, m, w, ctx.iommu));
  ctx.out.line('dmesg:');
  for (const l of a.log) ctx.out.line(`  ${l}`);
  ctx.out.line('== Linux 6.12: the same regions (uio_dmem_genirq style, changed in 6.9) ==');
  const b = await onKernel(ctx, '6.12', false, on612);
  ctx.out.line('== Linux 6.1 with the IOMMU translating: what 6.9 fixed ==');
  const c = await onKernel(ctx, '6.1', true, on61Iommu);
  ctx.out.line('note: since 6.9 a dynamic region is UIO_MEM_DMA_COHERENT with the kernel address in addr and is mapped from its pages; the DMA address the 6.1 driver programmed is no longer shown (behind an IOMMU it was an IOVA, which mmap took for a physical address)');
  const ok = a.r && b.r && c.r;
  ctx.out.line(ok ? 'OK' : 'FAILED');
  if (!ok) throw new Error('uio-apex: a check failed');
}

/** The `uio-apex` scenario. */
export const uioApex: Scenario = {
  description: 'the Apex through uio_apex (the 2018 UIO proposal) on 6.1, IOMMU off: coherent regions from sysfs, reset, page table, matmul completed on /dev/uio4; what 6.12 shows instead',
  run: runUioApex,
  iommuVariant: true,
};
