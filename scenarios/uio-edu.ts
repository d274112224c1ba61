import { bootKernel, MAP, O, PAGE_SIZE, PROT, type Kernel, type Mapping, type Sys } from '../kernel-shim/index.ts';
import { DMA_IRQ, DMA_START, EDU_DMA_MASK, EDU_REGS, FACT_IRQ, type EduRegName } from '../device-models/index.ts';
import type { Machine, MachineConfig } from '../machine/index.ts';
import type { Scenario, ScenarioContext } from './scenario.ts';
import { readText, writeText } from '../userspace/index.ts';

const PROT_RW = PROT.READ | PROT.WRITE;
const MAP_PRIVATE_ANON = MAP.PRIVATE | MAP.ANONYMOUS;
const PAGE = PAGE_SIZE;

/** edu's register offsets by name (`device-models/edu/regs.ts`). */
const EDU = Object.fromEntries(EDU_REGS.map((r) => [r.name, r.offset])) as Record<EduRegName, number>;
/** STATUS bit 7 and DMA_CMD bits 0-2 (spec/devices.md, QEMU `hw/misc/edu.c`). */
const STATUS_IRQ_FACT = 0x80;
const DMA_CMD_START = 0x1;
const DMA_CMD_TO_RAM = 0x2;
const DMA_CMD_IRQ = 0x4;

const SECRET = 'victim: my private key is 0xfeedface';

function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

/**
 * The scenario's machine: the given one with 256 MiB of memory, an edu (added at 00:03.0 unless present)
 * and the IOMMU off, or on (a translated default domain) for the `--iommu` variant.
 */
function uioEduMachine(c: MachineConfig, iommu: boolean): MachineConfig {
  const devices = c.pci.devices.some((d) => d.type === 'edu') ? c.pci.devices : [...c.pci.devices, { type: 'edu' as const, bdf: 0x18, acs: false }];
  return { ...c, memory: { ...c.memory, size: 256 << 20 }, iommu: { ...c.iommu, enabled: iommu }, pci: { ...c.pci, devices } };
}



/** The physical address behind user address `va`, from `/proc/<pid>/pagemap` (PFN in bits 0-54, present bit 63). */
async function physOf(sys: Sys, pid: number | 'self', va: bigint): Promise<bigint> {
  const fd = await sys.open(`/proc/${pid}/pagemap`, O.RDONLY);
  const entry = new Uint8Array(8);
  await sys.pread(fd, entry, (va / BigInt(PAGE)) * 8n);
  await sys.close(fd);
  const e = new DataView(entry.buffer).getBigUint64(0, true);
  if ((e >> 63n) === 0n) throw new Error(`uio-edu: page at ${hex(va)} is not present`);
  return (e & ((1n << 55n) - 1n)) * BigInt(PAGE) + (va % BigInt(PAGE));
}

/**
 * A user-space driver for edu through `uio_pci_generic`, the way the UIO HOWTO writes one, on a machine
 * with the IOMMU off and 256 MiB of memory (so every frame is inside edu's 28-bit DMA mask). As root it
 * binds the driver with `new_id`, maps BAR0 from `/dev/uio0`, turns on bus mastering through `config`,
 * computes 10! with the completion interrupt (blocking `read` of `/dev/uio0`, acknowledge, re-enable INTx
 * through Command bit 10 in `config`), then DMAs into its own buffer at the physical address that
 * `/proc/self/pagemap` shows root. Finally it shows why UIO gives no isolation: with the physical address
 * of another user's page (again from pagemap), the device reads and overwrites it, and nothing stops it.
 */
async function runUioEdu(ctx: ScenarioContext): Promise<void> {
  const iommu = ctx.iommu;
  const m: Machine = ctx.createMachine(uioEduMachine(ctx.machineConfig, iommu));
  const slot = m.pci.functions.find((f) => f.type === 'edu');
  if (slot === undefined) throw new Error('uio-edu: no edu in the machine');
  const kernel: Kernel = bootKernel(m);
  const say = (who: string, text: string): void => ctx.out.line(`[${(m.sim.now / 1000).toFixed(3).padStart(12)} us] ${who}: ${text}`);
  let logSeen = kernel.log.records.length;
  /** Prints the kernel's DMAR lines logged since the last call (the IOMMU's fault reports). */
  const dmarLines = (): number => {
    const recs = kernel.log.records;
    let n = 0;
    for (; logSeen < recs.length; logSeen++) {
      const r = recs[logSeen];
      if (r !== undefined && r.text.startsWith('DMAR: [')) {
        say('kernel', r.text);
        n++;
      }
    }
    return n;
  };
  if (iommu) {
    const type = (kernel.iommu?.groupOf(kernel.pci.devices.find((d) => d.bdf === slot.bdf) as never)?.defaultDomain?.type) ?? 'none';
    say('kernel', `IOMMU on: edu's group has a default domain of type ${type} (translated; strict invalidation); nothing is mapped in it`);
  }
  const name = `0000:${slot.address}`;
  const dev = `/sys/bus/pci/devices/${name}`;
  let victimVa = -1n;
  let victimDone = false;
  let ok = false;

  const victim = kernel.spawn({ comm: 'victim', uid: 1000 }, async (sys: Sys) => {
    const page = await sys.mmap(null, PAGE, PROT_RW, MAP_PRIVATE_ANON);
    sys.mem.writeBytes(page.addr, new TextEncoder().encode(SECRET));
    victimVa = page.addr;
    say('victim', `uid 1000 keeps "${SECRET}" at ${hex(page.addr)} in its private memory`);
    while (!victimDone) await sys.nanosleep(50_000);
    const now = new TextDecoder().decode(sys.mem.readBytes(page.addr, SECRET.length));
    say('victim', `its memory now reads "${now}"`);
    // Without an IOMMU the device overwrites it (the point of the story); with one it must stay intact.
    return (now === SECRET) === iommu ? 0 : 1;
  });

  const driver = kernel.spawn({ comm: 'edu-uio' }, async (sys: Sys) => {
    const w = (s: string): void => say('edu-uio', s);
    w(`edu at ${name}: vendor ${await readText(sys, `${dev}/vendor`)}, device ${await readText(sys, `${dev}/device`)}, no driver bound`);
    await writeText(sys, '/sys/bus/pci/drivers/uio_pci_generic/new_id', '1234 11e8');
    const link = await sys.readlink(`${dev}/driver`);
    const uio = (await sys.readdir(`${dev}/uio`))[0] ?? 'none';
    const map0 = `/sys/class/uio/${uio}/maps/map0`;
    const maps = await sys.readdir(`/sys/class/uio/${uio}/maps`);
    const size = Number(await readText(sys, `${map0}/size`));
    w(`new_id "1234 11e8": driver -> ${link}, /dev/${uio} (${await readText(sys, `/sys/class/uio/${uio}/name`)} ${await readText(sys, `/sys/class/uio/${uio}/version`)}), maps: ${maps.join(' ')} (map0 ${await readText(sys, `${map0}/addr`)}, ${size >>> 20} MiB: BAR0)`);

    const ufd = await sys.open(`/dev/${uio}`, O.RDWR);
    const bar: Mapping = await sys.mmap(null, size, PROT_RW, MAP.SHARED, ufd, 0);
    const cfd = await sys.open(`${dev}/config`, O.RDWR);
    const id = bar.read32(EDU.ID);
    bar.write32(EDU.LIVENESS, 0x1234_5678);
    const live = bar.read32(EDU.LIVENESS);
    w(`BAR0 mapped at ${hex(bar.addr)}: ID ${hex(id)}, liveness 0x12345678 -> ${hex(live)}`);

    const cmd = new Uint8Array(2);
    await sys.pread(cfd, cmd, 4);
    const before = cmd[0]! | (cmd[1]! << 8);
    cmd[0] = cmd[0]! | 0x4;
    await sys.pwrite(cfd, cmd.subarray(0, 1), 4);
    w(`Command ${hex(before)}: bus mastering on through config (uio_pci_generic leaves it to user space)`);

    const hi = new Uint8Array(1);
    /** Waits for the next interrupt, acknowledges it on edu and re-enables INTx (Command bit 10) as the UIO HOWTO does. */
    const interrupt = async (what: string, bit: number): Promise<number> => {
      const cnt = new Uint8Array(4);
      await sys.read(ufd, cnt);
      const count = new DataView(cnt.buffer).getUint32(0, true);
      const st = bar.read32(EDU.IRQ_STATUS);
      await sys.pread(cfd, hi, 5);
      const masked = (hi[0]! & 0x4) !== 0;
      bar.write32(EDU.IRQ_ACK, bit);
      hi[0] = hi[0]! & ~0x4;
      await sys.pwrite(cfd, hi, 5);
      w(`interrupt ${count} (${what}): IRQ_STATUS ${hex(st)}, INTx ${masked ? 'masked by uio_pci_generic' : 'NOT masked'}; acknowledged, INTx re-enabled through config byte 5`);
      return count;
    };

    bar.write32(EDU.STATUS, STATUS_IRQ_FACT);
    bar.write32(EDU.FACTORIAL, 10);
    w('factorial: wrote 10 with the completion interrupt on; blocking in read(/dev/uio0)');
    await interrupt('factorial', FACT_IRQ);
    const fact = bar.read32(EDU.FACTORIAL);
    w(`10! = ${fact}`);

    // DMA into our own buffer, found through pagemap: Linux shows frame numbers only to CAP_SYS_ADMIN.
    const buf = await sys.mmap(null, PAGE, PROT_RW, MAP_PRIVATE_ANON);
    buf.write32(0, 0);
    await sys.mlock(buf.addr, PAGE);
    const phys = await physOf(sys, 'self', buf.addr);
    if (phys > EDU_DMA_MASK) throw new Error(`uio-edu: buffer at ${hex(phys)} is beyond edu's 28-bit DMA mask`);
    const pattern = new Uint8Array(256);
    for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7 + 3) & 0xff;
    sys.mem.writeBytes(buf.addr, pattern);
    const dma = async (src: bigint, dst: bigint, n: number, toRam: boolean, what: string): Promise<void> => {
      bar.write64(EDU.DMA_SRC, src);
      bar.write64(EDU.DMA_DST, dst);
      bar.write64(EDU.DMA_COUNT, BigInt(n));
      bar.write64(EDU.DMA_CMD, BigInt(DMA_CMD_START | DMA_CMD_IRQ | (toRam ? DMA_CMD_TO_RAM : 0)));
      w(`DMA ${what}: ${hex(src)} -> ${hex(dst)}, ${n} bytes`);
      await interrupt(`DMA ${what}`, DMA_IRQ);
      dmarLines();
    };
    w(iommu
      ? `buffer at ${hex(buf.addr)}, locked; /proc/self/pagemap says physical ${hex(phys)}; but the IOMMU translates edu's DMA, and no IOVA maps to it: uio_pci_generic maps nothing in the device's domain and gives user space no way to`
      : `buffer at ${hex(buf.addr)}, locked; /proc/self/pagemap says physical ${hex(phys)} (inside edu's 28-bit DMA mask; the device needs the physical address: no IOMMU, no IOVA)`);
    await dma(phys, BigInt(DMA_START), pattern.length, false, 'RAM -> edu');
    sys.mem.writeBytes(buf.addr, new Uint8Array(pattern.length));
    await dma(BigInt(DMA_START), phys, pattern.length, true, 'edu -> RAM');
    const back = sys.mem.readBytes(buf.addr, pattern.length);
    let same = 0;
    for (let i = 0; i < pattern.length; i++) if (back[i] === pattern[i]) same++;
    w(`round trip through edu's buffer: ${same}/${pattern.length} bytes match${iommu ? ' (both DMAs faulted in the IOMMU: edu read zeros and wrote nothing)' : ''}`);

    // No isolation: the device reaches any physical address its driver names, another user's page included.
    while (victimVa < 0n) await sys.nanosleep(10_000);
    const theirs = await physOf(sys, victim.pid, victimVa);
    w(`/proc/${victim.pid}/pagemap: the victim's page at ${hex(victimVa)} is physical ${hex(theirs)}`);
    const slot2 = BigInt(DMA_START) + 0x800n;
    sys.mem.writeBytes(buf.addr, new Uint8Array(SECRET.length));
    await dma(theirs, slot2, SECRET.length, false, 'victim -> edu');
    await dma(slot2, phys, SECRET.length, true, 'edu -> our buffer');
    const stolen = new TextDecoder().decode(sys.mem.readBytes(buf.addr, SECRET.length));
    w(iommu ? `our buffer holds ${stolen === SECRET ? `the victim's bytes: "${stolen}"` : 'none of the victim\'s bytes: the IOMMU refused the read'}` : `our buffer now holds the victim's bytes: "${stolen}"`);
    sys.mem.writeBytes(buf.addr, new TextEncoder().encode('overwritten by a DMA from edu!'.padEnd(SECRET.length, '.')));
    await dma(phys, slot2, SECRET.length, false, 'our buffer -> edu');
    await dma(slot2, theirs, SECRET.length, true, 'edu -> victim');
    w(iommu
      ? 'every DMA to a physical address faulted: the IOMMU isolates the device, and with it a UIO driver cannot do DMA at all. UIO and an IOMMU do not mix: UIO has no interface to map user memory into the device\'s domain; VFIO has (VFIO_IOMMU_MAP_DMA: pin, map an IOVA, then DMA to the IOVA)'
      : 'nothing checked either transfer: with UIO the device can read and write all of memory (an IOMMU and VFIO give isolation)');
    victimDone = true;

    await sys.munlock(buf.addr, PAGE);
    await sys.close(cfd);
    // The mapping holds /dev/uio0 open as on Linux: release (and pci_clear_master) runs once both are gone.
    await sys.munmap(bar.addr, bar.length);
    await sys.close(ufd);
    const after = new Uint8Array(2);
    const cfd2 = await sys.open(`${dev}/config`, O.RDONLY);
    await sys.pread(cfd2, after, 4);
    await sys.close(cfd2);
    const cmdAfter = after[0]! | (after[1]! << 8);
    w(`unmapped BAR0 and closed /dev/${uio}: Command ${hex(cmdAfter)} (bus mastering ${(cmdAfter & 0x4) === 0 ? 'cleared by uio_pci_generic on release' : 'STILL ON'})`);
    const faults = kernel.iommu?.unit.fault?.counts.records ?? 0;
    if (iommu) w(`the IOMMU recorded ${faults} faults, one per DMA; dmesg shows the first ones: Linux ratelimits the DMAR fault handler's messages (10 per 5 s)`);
    const dmaOk = iommu ? same < pattern.length && stolen !== SECRET && faults === 6 : same === pattern.length && stolen === SECRET;
    ok = id === 0x0100_00ed && live === 0xedcb_a987 && fact === 3_628_800 && dmaOk && (cmdAfter & 0x4) === 0;
    return 0;
  });

  await m.sim.run();
  const statuses = [await driver.exited, await victim.exited];
  ctx.out.line('dmesg:');
  for (const l of kernel.log.dmesg().split('\n')) if (l !== '') ctx.out.line(`  ${l}`);
  ctx.out.line(`done at ${m.sim.now} ns of virtual time: ${ok && statuses.every((s) => s === 0) ? 'OK' : 'FAILED'}`);
  if (!ok || statuses.some((s) => s !== 0)) throw new Error('uio-edu: a check failed');
}

/** The `uio-edu` scenario. */
export const uioEdu: Scenario = {
  description: 'a user-space edu driver through uio_pci_generic (IOMMU off, 256 MiB): factorial with INTx, DMA via pagemap, and why UIO gives no isolation; --iommu: the same driver with a translating IOMMU, where every DMA faults',
  iommuVariant: true,
  run: runUioEdu,
};
