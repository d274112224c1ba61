import { bootKernel, PAGE_SIZE, type Sys } from '../kernel-shim/index.ts';
import { watchOwnerIsolation } from '../kernel-shim/vfio/index.ts';
import { APEX_MSIX_TABLE, ApexIrq, ApexOp, HIB_ERROR } from '../device-models/index.ts';
import type { Machine } from '../machine/index.ts';
import { MATMUL, hex, off, withApex } from './apex-common.ts';
import { ApexVfio, devAddr } from './apex-vfio.ts';
import { readText } from '../userspace/index.ts';
import type { Scenario, ScenarioContext } from './scenario.ts';

const { M, K, N } = MATMUL;
/** Matrix multiplies before the fault. */
const JOBS = 16;
const APEX_BDF = '0000:01:00.0';

/** The counters the summary reads: the VT-d unit's IOTLB and faults. */
function unitCounters(m: Machine): { hit: number; miss: number; faults: number } {
  const snap = m.stats.snapshot();
  for (const c of Object.values(snap)) {
    if (c['iotlb.hit'] !== undefined) return { hit: c['iotlb.hit'] ?? 0, miss: c['iotlb.miss'] ?? 0, faults: c.faults ?? 0 };
  }
  return { hit: 0, miss: 0, faults: 0 };
}

/** What the driver did, for the summary and the verdict. */
interface Outcome {
  jobs: number;
  good: number;
  faulted: boolean;
  recovered: boolean;
  interrupts: number;
}

/**
 * The driver process: open the Apex through VFIO, reset it through the SCU, arm its 13 vectors, map the
 * operand buffers, run {@link JOBS} matrix multiplies checked against the plain product, then the bug (a
 * gasket entry left pointing at an IOVA just unmapped), the fault, and recovery by reset and one more job.
 */
async function driver(sys: Sys, m: Machine, dmesg: () => string[], say: (t: string) => void, out: Outcome, iommufd: boolean): Promise<void> {
  const d = await ApexVfio.open(sys, APEX_BDF, say, { iommufd });
  await d.reset();
  await d.armInterrupts();
  say(`SET_IRQS: MSI-X entries 0-12 -> 13 eventfds; INTVECCTLs name them (SC_HOST_0 -> entry ${ApexIrq.SC_HOST_0}, FATAL_ERR -> entry ${ApexIrq.FATAL_ERR})`);
  const a = await d.dev.allocDma(PAGE_SIZE);
  const b = await d.dev.allocDma(PAGE_SIZE);
  const c = await d.dev.allocDma(PAGE_SIZE);
  const dst = await d.dev.allocDma(PAGE_SIZE);
  const slotA = d.mapBuffer(a);
  const slotB = d.mapBuffer(b);
  const slotC = d.mapBuffer(c);
  const slotDst = d.mapBuffer(dst);
  await d.startQueue();
  say(`${d.dev.iommufd >= 0 ? 'IOAS_MAP' : 'MAP_DMA'}: queue ${d.queue.size >>> 10} KiB at IOVA ${hex(d.queue.iova)}, A ${hex(a.iova)}, B ${hex(b.iova)}, C ${hex(c.iova)}, copy target ${hex(dst.iova)}; gasket slots 0-${d.queue.size / PAGE_SIZE - 1}, ${slotA}, ${slotB}, ${slotC}, ${slotDst} hold those IOVAs; queue 0 running (IQ_STATUS ${hex(d.r64(off('IQ_STATUS')))})`);

  const matmul = async (label: string): Promise<boolean> => {
    const t0 = m.sim.now;
    const { end, same, total } = await d.matmul(m.rng, { a, b, c }, { a: slotA, b: slotB, c: slotC });
    out.jobs++;
    if (end.kind !== 'done') {
      say(`${label}: FATAL_ERR instead of completion (HIB_ERROR_STATUS ${hex(end.hibError)})`);
      return false;
    }
    const ok = same === total && end.fatal === 0 && end.completedHead === d.tail;
    if (ok) out.good++;
    say(`${label}: MATMUL_I8 ${M}x${K} * ${K}x${N} done in ${((m.sim.now - t0) / 1000).toFixed(3)} us (SC_HOST_0 eventfd, W0C), status block head ${end.completedHead}; C matches in ${same}/${total}`);
    return ok;
  };
  for (let j = 1; j <= JOBS; j++) await matmul(`job ${j}`);

  // The bug: a buffer is unmapped (and freed) while a valid gasket entry still holds its IOVA.
  const stale = await d.dev.allocDma(PAGE_SIZE);
  const slotStale = d.mapBuffer(stale);
  const staleIova = stale.iova;
  await d.dev.freeDma(stale);
  say(`bug: slot ${slotStale} still holds IOVA ${hex(staleIova)}, which ${d.dev.iommufd >= 0 ? 'IOAS_UNMAP' : 'UNMAP_DMA'} just removed (the kernel invalidated the IOTLB and unpinned the page)`);
  const src = devAddr(slotStale);
  d.submit(ApexOp.COPY, { len: 256, a: src, c: devAddr(slotDst) });
  const end = await d.waitJob();
  out.jobs++;
  const dmarLines = (): string[] => dmesg().filter((l) => l.includes('DMAR: [DMA'));
  if (end.kind === 'fatal') {
    const iq = d.r64(off('IQ_STATUS'));
    const axiRead = (end.hibError & (1n << BigInt(HIB_ERROR.AXI_READ.lsb))) !== 0n;
    say(`COPY from slot ${slotStale}: FATAL_ERR eventfd; HIB_ERROR_STATUS ${hex(end.hibError)} (${axiRead ? 'AXI read error: the IOMMU refused the read' : 'unexpected'}), IQ_STATUS ${hex(iq)} (halted)`);
    for (const l of dmarLines()) say(`dmesg: ${l}`);
    out.faulted = axiRead && dmarLines().length > 0 && (iq & 2n) === 2n;
  } else {
    say(`COPY from slot ${slotStale}: completed, but it should have faulted`);
  }

  say('recovery: the SCU reset sequence (30 us, where VFIO_DEVICE_RESET would take the bus down for 100 ms); it clears the MSI-X table and the gasket table, so interrupts are re-armed through SET_IRQS, slots and queue written again');
  await d.reset();
  const entry = APEX_MSIX_TABLE + 16 * ApexIrq.SC_HOST_0;
  const cleared = `${hex(d.r32(entry))}/${hex(d.r32(entry + 8))}`;
  await d.armInterrupts();
  say(`MSI-X entry ${ApexIrq.SC_HOST_0} address/data after the reset ${cleared}, after SET_IRQS ${hex(d.r32(entry))}/${hex(d.r32(entry + 8))}`);
  await d.startQueue();
  out.recovered = await matmul(`job ${JOBS + 2}`);
  out.interrupts = d.interrupts;
  await d.close();
  say(iommufd
    ? `closed the cdev and /dev/iommu: /proc/self/status ${await lockedVm(sys)} (iommufd charges pinned pages to the user's locked_vm by default)`
    : `closed the device, group and container: /proc/self/status ${await lockedVm(sys)} (type1 charges pinned pages to locked_vm)`);
}

/** The `VmLck` line of the process's status: what the closes left charged to locked_vm. */
async function lockedVm(sys: Sys): Promise<string> {
  const line = (await readText(sys, '/proc/self/status')).split('\n').find((l) => l.startsWith('VmLck'));
  return line === undefined ? 'VmLck missing' : line.replace(/\s+/g, ' ');
}

/**
 * The flagship: a user-space driver owns the Apex through VFIO on Linux 6.12 with the IOMMU translating.
 * It resets the device through its SCU sequence, routes the 13 MSI-X vectors to eventfds, pins and maps its
 * buffers with MAP_DMA and writes their IOVAs into the gasket page table itself, runs matrix multiplies
 * completed on the SC_HOST_0 eventfd and checks each result; then a driver bug: a gasket entry still holds
 * an IOVA the driver has just unmapped, the device's read faults in the IOMMU (the DMAR line in dmesg) and
 * the device raises FATAL_ERR; the driver recovers by resetting (which clears the MSI-X table, so it
 * re-arms through SET_IRQS) and completes one more job. Prints a summary; `--trace` writes the Perfetto
 * (Chrome JSON) trace.
 */
async function runVfioApex(ctx: ScenarioContext): Promise<void> {
  const m = ctx.createMachine(withApex(ctx.machineConfig, true));
  const kernel = bootKernel(m);
  const say = (t: string): void => ctx.out.line(`[${(m.sim.now / 1000).toFixed(3).padStart(12)} us] apex-vfio: ${t}`);
  const out: Outcome = { jobs: 0, good: 0, faulted: false, recovered: false, interrupts: 0 };
  // The isolation observer: every frame the Apex's DMA reaches, checked against its container's pinned frames.
  const apex = m.pci.find(APEX_BDF.slice(5));
  if (apex === undefined) throw new Error('vfio-apex: no Apex');
  let groupId = -1;
  const iso = watchOwnerIsolation(kernel, apex.requesterId, () => groupId);
  const p = kernel.spawn({ comm: 'apex-vfio' }, async (sys) => {
    groupId = Number((await sys.readlink(`/sys/bus/pci/devices/${APEX_BDF}/iommu_group`)).split('/').pop());
    await driver(sys, m, () => kernel.log.dmesg().split('\n'), say, out, ctx.iommufd);
    return 0;
  });
  await m.sim.run();
  const status = await p.exited;
  if (p.error !== undefined) throw p.error;
  iso.detach();
  const u = unitCounters(m);
  const rate = u.hit + u.miss === 0 ? 0 : (100 * u.hit) / (u.hit + u.miss);
  ctx.out.line(`summary: ${out.jobs} jobs (${out.good} checked good, 1 faulted as intended), ${out.interrupts} interrupts, virtual time ${(m.sim.now / 1e6).toFixed(3)} ms, IOTLB hit rate ${rate.toFixed(1)}% (${u.hit} hits, ${u.miss} misses), ${u.faults} DMAR fault(s), ${m.intc.spurious} spurious MSI, ${kernel.userPages.pinned} pages pinned after exit`);
  const ok = status === 0 && iso.observer.violations.length === 0 && out.good === JOBS + 1 && out.faulted && out.recovered && kernel.userPages.pinned === 0;
  const o = iso.observer;
  const owner = ctx.iommufd ? 'its IOAS' : 'its container';
  ctx.out.line(`isolation: the Apex's DMA reached ${o.frames.size} distinct frames (${o.touches} frame accesses), ${o.violations.length === 0 ? `every one pinned for ${owner} at that instant` : `${o.violations.length} outside the frames pinned for ${owner}`}`);
  ctx.out.line(ok && o.violations.length === 0 ? 'OK' : 'FAILED');
  if (!ok) throw new Error('vfio-apex: a check failed');
}

/** The `vfio-apex` scenario: the flagship, run by `npm start`. */
export const vfioApex: Scenario = {
  description: 'the flagship: a user-space Apex driver through VFIO behind the IOMMU: SCU reset, MSI-X eventfds, MAP_DMA and the gasket table, matmul jobs, a fault after unmap, recovery (--iommufd: through the device cdev and iommufd)',
  run: runVfioApex,
  iommufdVariant: true,
};
