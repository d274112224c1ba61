import { bootKernel, PAGE_SIZE, MAP, PROT, type Kernel, type Sys } from '../kernel-shim/index.ts';
import { watchOwnerIsolation, watchProcessIsolation } from '../kernel-shim/vfio/index.ts';
import { ApexOp, HIB_ERROR } from '../device-models/index.ts';
import type { Machine } from '../machine/index.ts';
import { physAddr } from '../userspace/index.ts';
import { MATMUL, hex, withApex } from './apex-common.ts';
import { ApexVfio, devAddr } from './apex-vfio.ts';
import type { Scenario, ScenarioContext } from './scenario.ts';

const { M, K, N } = MATMUL;
/** Matrix multiplies before the bug, in each mode. */
const JOBS = 4;
const APEX_BDF = '0000:01:00.0';
/** Bytes the buggy COPY writes. */
const COPY_LEN = 256;
/** Memory of the machine: small, so the victim can take every free frame. */
const MEMORY = 8 << 20;

/**
 * How the stale frame reaches the victim deterministically: dmasim's frame allocator does not hand out
 * the most recently freed frame first (Linux's per-CPU lists do), it places by policy (`scatter` picks at
 * random, seeded). So the victim takes *every* free frame: whatever the policy and the seed, it gets the
 * one the driver freed.
 */
const VICTIM_NOTE = 'the victim takes every free frame, so it surely gets the one just freed';

/** What one mode's run found. */
interface ModeResult {
  jobsGood: number;
  /** The frame behind the stale address when it was freed. */
  staleFrame: number;
  /** Whether the victim received it. */
  victimGotIt: boolean;
  /** Victim pages whose contents changed: user address, frame, bytes changed. */
  corrupted: { vaddr: bigint; frame: number; changed: number }[];
  copyEnd: 'done' | 'fatal' | 'none';
  dmar: string[];
  violations: { frame: number; write: boolean }[];
  framesTouched: number;
  tainted: number;
}

/** The victim's record in page `i` of its memory. */
function record(i: number): Uint8Array {
  const b = new Uint8Array(PAGE_SIZE);
  const text = new TextEncoder().encode(`victim record #${i}: balance 1000.00; `);
  for (let o = 0; o < PAGE_SIZE; o += text.length) b.set(text.subarray(0, Math.min(text.length, PAGE_SIZE - o)), o);
  return b;
}

/** Whether two pages hold the same bytes (word by word where both are aligned). */
function samePage(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0) {
    const x = new Uint32Array(a.buffer, a.byteOffset, PAGE_SIZE / 4);
    const y = new Uint32Array(b.buffer, b.byteOffset, PAGE_SIZE / 4);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }
  for (let i = 0; i < PAGE_SIZE; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Printable ASCII of `b`, dots elsewhere. */
const ascii = (b: Uint8Array): string => Array.from(b, (c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '.')).join('');

/** Shared between the two processes of one run: the story's sequencing (each side polls with nanosleep). */
interface Baton {
  freed: boolean;
  victimReady: boolean;
  dmaDone: boolean;
  victimDone: boolean;
}

async function until(sys: Sys, cond: () => boolean): Promise<void> {
  while (!cond()) await sys.nanosleep(10_000);
}

/**
 * One mode: the Apex driver (the flagship's, {@link ApexVfio}) runs {@link JOBS} checked jobs, then frees a
 * buffer whose bus address a gasket slot still holds; a second process takes every free frame (so the
 * freed one too) and fills it with its records; the driver's next job COPYs its output to the stale slot.
 */
async function runMode(ctx: ScenarioContext, mode: 'noiommu' | 'iommu'): Promise<ModeResult> {
  const iommu = mode === 'iommu';
  const cfg = withApex(ctx.machineConfig, iommu);
  const m: Machine = ctx.createMachine({ ...cfg, memory: { ...cfg.memory, size: MEMORY } });
  const kernel: Kernel = bootKernel(m, iommu ? {} : { cmdline: 'vfio.enable_unsafe_noiommu_mode=1' });
  const tag = iommu ? 'iommu  ' : 'noiommu';
  const say = (t: string): void => ctx.out.line(`[${(m.sim.now / 1000).toFixed(3).padStart(12)} us] ${tag}: ${t}`);
  const apex = m.pci.find(APEX_BDF.slice(5));
  if (apex === undefined) throw new Error('noiommu-apex: no Apex');
  const res: ModeResult = { jobsGood: 0, staleFrame: -1, victimGotIt: false, corrupted: [], copyEnd: 'none', dmar: [], violations: [], framesTouched: 0, tainted: 0 };
  const baton: Baton = { freed: false, victimReady: false, dmaDone: false, victimDone: false };
  let driverPid = -1;
  let groupId = -1;
  // Without an IOMMU: the device may reach what the driver locked for it. With one: what its container pinned.
  const iso = iommu ? watchOwnerIsolation(kernel, apex.requesterId, () => groupId) : watchProcessIsolation(kernel, apex.requesterId, () => driverPid);

  const drv = kernel.spawn({ comm: 'apex-drv' }, async (sys) => {
    driverPid = sys.pid;
    const d = await ApexVfio.open(sys, APEX_BDF, say, iommu ? {} : { noiommu: true });
    groupId = d.dev.groupId;
    await d.reset();
    await d.armInterrupts();
    const [a, b, c] = [await d.dev.allocDma(PAGE_SIZE), await d.dev.allocDma(PAGE_SIZE), await d.dev.allocDma(PAGE_SIZE)];
    const slotA = d.mapBuffer(a);
    const slotB = d.mapBuffer(b);
    const slotC = d.mapBuffer(c);
    await d.startQueue();
    const what = iommu ? 'MAP_DMA IOVAs' : 'physical addresses from /proc/self/pagemap';
    say(`buffers A ${hex(a.iova)}, B ${hex(b.iova)}, C ${hex(c.iova)} (${what}) in gasket slots ${slotA}, ${slotB}, ${slotC}`);
    for (let j = 1; j <= JOBS; j++) {
      const { end, same, total } = await d.matmul(m.rng, { a, b, c }, { a: slotA, b: slotB, c: slotC });
      const ok = end.kind === 'done' && same === total;
      if (ok) res.jobsGood++;
      say(`job ${j}: MATMUL_I8 ${M}x${K} * ${K}x${N} ${ok ? 'checked good' : 'WRONG'}`);
    }

    // The bug: the output buffer is freed while its gasket slot still holds its bus address.
    const out = await d.dev.allocDma(PAGE_SIZE);
    const slotOut = d.mapBuffer(out);
    const staleAddr = out.iova;
    res.staleFrame = Number((await physAddr(sys, out.vaddr)) / BigInt(PAGE_SIZE));
    await d.dev.freeDma(out);
    say(iommu
      ? `bug: output buffer freed (UNMAP_DMA, munmap: frame ${hex(res.staleFrame)} back to the allocator), gasket slot ${slotOut} still holds its IOVA ${hex(staleAddr)}`
      : `bug: output buffer freed (munmap: frame ${hex(res.staleFrame)} back to the allocator; no-IOMMU has nothing to unmap), gasket slot ${slotOut} still holds its physical address ${hex(staleAddr)}`);
    baton.freed = true;
    await until(sys, () => baton.victimReady);
    // The driver's output: A's first bytes, which it believes go to its own buffer.
    sys.mem.writeBytes(a.vaddr, new TextEncoder().encode('APEX OUTPUT '.repeat(COPY_LEN / 12 + 1)).subarray(0, COPY_LEN));
    d.submit(ApexOp.COPY, { len: COPY_LEN, a: devAddr(slotA), c: devAddr(slotOut) });
    const end = await d.waitJob();
    res.copyEnd = end.kind;
    if (end.kind === 'done') {
      say(`COPY of ${COPY_LEN} bytes to slot ${slotOut}: completed (SC_HOST_0); the device wrote to ${hex(staleAddr)} and nothing stopped it`);
    } else {
      const axiWrite = (end.hibError & (1n << BigInt(HIB_ERROR.AXI_WRITE.lsb))) !== 0n;
      say(`COPY of ${COPY_LEN} bytes to slot ${slotOut}: FATAL_ERR; HIB_ERROR_STATUS ${hex(end.hibError)} (${axiWrite ? 'AXI write error: the IOMMU refused the write' : 'unexpected'})`);
      res.dmar = kernel.log.dmesg().split('\n').filter((l) => l.includes('DMAR: [DMA'));
      for (const l of res.dmar) say(`dmesg: ${l}`);
    }
    baton.dmaDone = true;
    await until(sys, () => baton.victimDone);
    await d.close();
    return 0;
  });

  const victim = kernel.spawn({ comm: 'victim', uid: 1000 }, async (sys) => {
    await until(sys, () => baton.freed);
    const pages = m.frames.freeFrames;
    const map = await sys.mmap(null, pages * PAGE_SIZE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.POPULATE);
    for (let i = 0; i < pages; i++) sys.mem.writeBytes(map.addr + BigInt(i * PAGE_SIZE), record(i));
    const mm = kernel.task(sys.pid)?.mm;
    const frameOf = (i: number): number => mm?.presentFrame(Number(map.addr) + i * PAGE_SIZE) ?? -1;
    let mine = -1;
    for (let i = 0; i < pages && mine < 0; i++) if (frameOf(i) === res.staleFrame) mine = i;
    res.victimGotIt = mine >= 0;
    say(`victim (pid ${sys.pid}, uid 1000) maps ${pages} pages (${VICTIM_NOTE}) and writes a record in each; frame ${hex(res.staleFrame)} is its page at ${mine < 0 ? 'nowhere' : hex(map.addr + BigInt(mine * PAGE_SIZE))}`);
    baton.victimReady = true;
    await until(sys, () => baton.dmaDone);
    for (let i = 0; i < pages; i++) {
      const va = map.addr + BigInt(i * PAGE_SIZE);
      const now = sys.mem.readBytes(va, PAGE_SIZE);
      const want = record(i);
      if (samePage(now, want)) continue;
      let changed = 0;
      let first = -1;
      for (let o = 0; o < PAGE_SIZE; o++) {
        if (now[o] !== want[o]) {
          changed++;
          if (first < 0) first = o;
        }
      }
      if (changed === 0) continue;
      res.corrupted.push({ vaddr: va, frame: frameOf(i), changed });
      say(`victim: page ${hex(va)} (frame ${hex(frameOf(i))}): ${changed} bytes changed from offset ${first}`);
      say(`victim:   was "${ascii(want.subarray(first, first + 48))}"`);
      say(`victim:   now "${ascii(now.subarray(first, first + 48))}"`);
    }
    if (res.corrupted.length === 0) say(`victim: all ${pages} records intact`);
    await sys.munmap(map.addr, map.length);
    baton.victimDone = true;
    return 0;
  });

  await m.sim.run();
  iso.detach();
  for (const p of [drv, victim]) {
    if (p.error !== undefined) throw p.error;
    if ((await p.exited) !== 0) throw new Error(`noiommu-apex: ${p.comm} exited with ${await p.exited}`);
  }
  const o = iso.observer;
  res.violations = o.violations.map((v) => ({ frame: v.frame, write: v.write }));
  res.framesTouched = o.frames.size;
  res.tainted = kernel.tainted;
  const allowed = iommu ? 'pinned for its container' : 'locked by the driver process (no container exists: that is the only boundary there is)';
  const outside = [...new Set(o.violations.map((v) => v.frame))];
  ctx.out.line(`${tag} isolation: the Apex's DMA reached ${o.frames.size} distinct frames (${o.touches} frame accesses); ${outside.length === 0 ? `every one ${allowed} at that instant` : `outside the frames ${allowed}: ${outside.map((f) => `${hex(f)} (${o.violations.filter((v) => v.frame === f).length} ${o.violations.find((v) => v.frame === f)?.write === true ? 'write' : 'read'}s)`).join(', ')}`}`);
  if (!iommu) {
    const taint = kernel.log.records.find((r) => r.text.includes('Adding kernel taint'));
    const opened = kernel.log.records.find((r) => r.text.includes('vfio-noiommu device opened by user'));
    ctx.out.line(`${tag} kernel: tainted ${kernel.tainted} (TAINT_USER); dmesg: "${taint?.text ?? ''}", "${opened?.text ?? ''}"`);
  }
  return res;
}

/**
 * VFIO's no-IOMMU mode and what it costs. The flagship's Apex driver on a machine without an IOMMU, booted
 * with `vfio.enable_unsafe_noiommu_mode=1`: the fake group, the taint, VFIO_NOIOMMU_IOMMU, buffers given to
 * the device by physical address (pagemap), jobs checked. Then a driver bug: the output buffer is freed
 * while the device's page table still holds its address; another process gets the frame, and the
 * device's next write lands in that process's memory: the isolation observer names the frame, the victim
 * shows its corrupted bytes. The same program on a machine with an IOMMU (VFIO type1): the stale IOVA was
 * unmapped, the write faults (the DMAR line), the victim is intact.
 */
async function runNoiommuApex(ctx: ScenarioContext): Promise<void> {
  ctx.out.line('== no-IOMMU: vfio.enable_unsafe_noiommu_mode=1, no IOMMU on the machine ==');
  const a = await runMode(ctx, 'noiommu');
  ctx.out.line('== the same driver and bug with the IOMMU: VFIO type1 ==');
  const b = await runMode(ctx, 'iommu');
  const noiommuOk = a.jobsGood === JOBS && a.victimGotIt && a.copyEnd === 'done' && a.corrupted.length === 1 && a.corrupted[0]?.frame === a.staleFrame
    && a.corrupted[0].changed > 0 && a.violations.length > 0 && a.violations.every((v) => v.frame === a.staleFrame && v.write) && a.tainted === 64;
  const iommuOk = b.jobsGood === JOBS && b.victimGotIt && b.copyEnd === 'fatal' && b.corrupted.length === 0 && b.dmar.length > 0 && b.violations.length === 0;
  ctx.out.line(`summary: without an IOMMU the stale physical address ${hex(a.staleFrame * PAGE_SIZE)} let the device's ${COPY_LEN}-byte write land in another process's page (${a.corrupted[0]?.changed ?? 0} bytes changed) (frame ${hex(a.staleFrame)}), reported by the isolation observer and nowhere else; with the IOMMU the stale IOVA faulted (${b.dmar.length} DMAR line(s)) and the victim's frame ${hex(b.staleFrame)} stayed intact`);
  ctx.out.line(noiommuOk && iommuOk ? 'OK' : 'FAILED');
  if (!(noiommuOk && iommuOk)) throw new Error('noiommu-apex: a check failed');
}

/** The `noiommu-apex` scenario. */
export const noiommuApex: Scenario = {
  description: 'VFIO no-IOMMU mode: the Apex driver by physical address, a stale address corrupting another process, and the same bug faulting under the IOMMU',
  run: runNoiommuApex,
};
