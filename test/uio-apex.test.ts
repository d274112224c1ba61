import { describe, expect, it } from 'vitest';
import { APEX, APEX_IRQ_COUNT, APEX_MSIX_PBA, APEX_OFFSET, ApexIrq, type ApexRegName } from '../device-models/index.ts';
import type { Kernel } from '../kernel-shim/kernel.ts';
import type { Mapping } from '../kernel-shim/mm/mapping.ts';
import type { PollFd, Sys } from '../kernel-shim/task/sys.ts';
import { MAP, O, PAGE_SIZE, POLL, PROT } from '../kernel-shim/uapi/linux.ts';
import { DMEM_MAP_ERROR } from '../kernel-shim/uio/apex-dmem.ts';
import { PAGE_OFFSET } from '../kernel-shim/dma/mapping.ts';
import type { LinuxVersion } from '../kernel-shim/versions.ts';
import type { Machine, MachineConfigInput } from '../machine/index.ts';
import { withMachine } from '../userspace/index.ts';
import { errnoOf } from './sys-errno.ts';

/** The Apex at 01:00.0 below a root port, no IOMMU translation, `uio_apex` loaded. */
const CONFIG = {
  memory: { size: '256MiB' },
  iommu: { enabled: false },
  pci: { bridges: [{ kind: 'root-port' as const, bdf: 0xe0, secondaryBus: 1 }], devices: [{ type: 'apex' as const, bdf: 0x0100, acs: false }] },
};
const BDF = '01:00.0';
const off = (n: ApexRegName): number => APEX_OFFSET[APEX[n]] as number;
const PROT_RW = PROT.READ | PROT.WRITE;
const decoder = new TextDecoder();

interface Ctx {
  sys: Sys;
  machine: Machine;
  kernel: Kernel;
}

/** Runs `body` as root on a booted machine (leak-checked by withMachine) and expects it to return 0. */
async function onApex(body: (c: Ctx) => Promise<number>, linux: LinuxVersion = '6.1', config: MachineConfigInput = CONFIG): Promise<void> {
  await withMachine(config, async ({ machine, kernel, spawn, run }) => {
    const p = spawn('apex-uio', (sys) => body({ sys, machine, kernel }));
    await run();
    expect(await p.exited).toBe(0);
  }, { modules: ['uio_apex'], linux });
}

async function cat(sys: Sys, path: string): Promise<string> {
  const fd = await sys.open(path, O.RDONLY);
  const b = new Uint8Array(256);
  const n = await sys.read(fd, b);
  await sys.close(fd);
  return decoder.decode(b.subarray(0, n)).trim();
}

const s32 = (v: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
};
const count = (b: Uint8Array): number => new DataView(b.buffer).getInt32(0, true);

/** Opens every /dev/uioN, maps BAR2 through /dev/uio0 and enables every source at the device. */
async function openAll(sys: Sys): Promise<{ fds: number[]; bar: Mapping }> {
  const fds: number[] = [];
  for (let i = 0; i < APEX_IRQ_COUNT; i++) fds.push(await sys.open(`/dev/uio${i}`, O.RDWR));
  const bar = await sys.mmap(null, 1 << 20, PROT_RW, MAP.SHARED, fds[0] as number, 0);
  for (const r of ['IQ_INT_CONTROL', 'Q1_INT_CONTROL', 'Q2_INT_CONTROL', 'Q3_INT_CONTROL', 'FATAL_ERR_INT_CONTROL'] as const) bar.write64(off(r), 1n);
  bar.write64(off('SC_HOST_INT_CONTROL'), 0xfn);
  bar.write64(off('TOP_LEVEL_INT_CONTROL'), 0xfn);
  return { fds, bar };
}

/** The /dev/uioN (by index) that poll reports readable now. */
async function readable(sys: Sys, fds: readonly number[]): Promise<number[]> {
  const p: PollFd[] = fds.map((fd) => ({ fd, events: POLL.IN }));
  await sys.poll(p, 0);
  return p.flatMap((e, i) => ((e.revents ?? 0) & POLL.IN ? [i] : []));
}

describe('uio_apex: one UIO device per interrupt source', () => {
  it('registers /dev/uio0..12 in source order with BAR2 as map0 and programs INTVECCTL entry = source', async () => {
    await onApex(async ({ sys, machine }) => {
      const names = [];
      for (let i = 0; i < APEX_IRQ_COUNT; i++) names.push(await cat(sys, `/sys/class/uio/uio${i}/name`));
      expect(names).toEqual([
        'apex_instr_queue', 'apex_input_actv_queue', 'apex_param_queue', 'apex_output_actv_queue',
        'apex_sc_host_0', 'apex_sc_host_1', 'apex_sc_host_2', 'apex_sc_host_3',
        'apex_top_level_0', 'apex_top_level_1', 'apex_top_level_2', 'apex_top_level_3', 'apex_fatal_err',
      ]);
      const bar2 = machine.pci.bars.find((b) => b.bar === 2);
      expect(await cat(sys, '/sys/class/uio/uio7/maps/map0/addr')).toBe(`0x${(bar2?.base ?? 0).toString(16).padStart(16, '0')}`);
      expect(await cat(sys, '/sys/class/uio/uio7/maps/map0/size')).toBe('0x0000000000100000');
      expect(await sys.readdir('/sys/class/uio/uio7/maps')).toEqual(['map0']);
      expect(await sys.readdir('/sys/class/uio/uio0/maps')).toEqual(['map0', 'map1', 'map2']);
      const apex = machine.pci.apex(BDF);
      for (let i = 0; i < APEX_IRQ_COUNT; i++) expect(apex.irq.vectorOf(i)).toBe(i);
      expect(apex.fn.mmioRead64(2, off('SC_HOST_INTVECCTL'))).toBe(BigInt(4 | (5 << 7) | (6 << 14) | (7 << 21)));
      expect(apex.fn.mmioRead64(2, off('TOP_LEVEL_INTVECCTL'))).toBe(BigInt(8 | (9 << 7) | (10 << 14) | (11 << 21)));
      return 0;
    });
  });

  it('source i increments only /dev/uio<i>\'s event count and wakes only its reader', async () => {
    await onApex(async ({ sys, machine }) => {
      const { fds, bar } = await openAll(sys);
      const woken: number[] = [];
      const threads = fds.map((fd, i) => sys.thread(async (t) => {
        const b = new Uint8Array(4);
        await t.read(fd, b);
        woken.push(i);
        expect(count(b)).toBe(1);
      }));
      await sys.nanosleep(1000);
      const order = [12, 4, 0, 9, 7, 1, 11, 2, 5, 8, 3, 10, 6];
      for (const [k, src] of order.entries()) {
        machine.pci.apex(BDF).irq.raise(src);
        await sys.nanosleep(1000);
        expect(woken).toEqual(order.slice(0, k + 1));
        for (let i = 0; i < APEX_IRQ_COUNT; i++) expect(await cat(sys, `/sys/class/uio/uio${i}/event`)).toBe(order.slice(0, k + 1).includes(i) ? '1' : '0');
      }
      await Promise.all(threads.map((t) => t.done));
      expect(await readable(sys, fds)).toEqual([]);
      bar.write64(off('SC_HOST_INT_STATUS'), 0n);
      return 0;
    });
  });

  it('irqcontrol(0) masks only that vector (PBA pending, no event); irqcontrol(1) delivers it; both idempotent', async () => {
    await onApex(async ({ sys, machine }) => {
      const { fds, bar } = await openAll(sys);
      const apex = machine.pci.apex(BDF);
      const fd4 = fds[ApexIrq.SC_HOST_0] as number;
      expect(await sys.write(fd4, s32(0))).toBe(4);
      expect(await sys.write(fd4, s32(0))).toBe(4);
      apex.irq.raise(ApexIrq.SC_HOST_0);
      apex.irq.raise(ApexIrq.SC_HOST_1);
      await sys.nanosleep(1000);
      expect(await readable(sys, fds)).toEqual([ApexIrq.SC_HOST_1]);
      expect(bar.read32(APEX_MSIX_PBA)).toBe(1 << ApexIrq.SC_HOST_0);
      expect(await sys.write(fd4, s32(1))).toBe(4);
      await sys.nanosleep(1000);
      expect(bar.read32(APEX_MSIX_PBA)).toBe(0);
      expect(await readable(sys, fds)).toEqual([ApexIrq.SC_HOST_0, ApexIrq.SC_HOST_1]);
      expect(await sys.write(fd4, s32(1))).toBe(4);
      const b = new Uint8Array(4);
      await sys.read(fd4, b);
      expect(count(b)).toBe(1);
      // A second unmask delivers nothing more; the next raise arrives as usual.
      expect(await readable(sys, [fd4])).toEqual([]);
      apex.irq.raise(ApexIrq.SC_HOST_0);
      await sys.read(fd4, b);
      expect(count(b)).toBe(2);
      return 0;
    });
  });

  it('write of anything but 0 or 1 is EINVAL, of other than 4 bytes EINVAL (the core)', async () => {
    await onApex(async ({ sys }) => {
      const fd = await sys.open('/dev/uio12', O.RDWR);
      for (const v of [2, -1, 0x100, 0x7fff_ffff]) expect(await errnoOf(sys.write(fd, s32(v)))).toBe('EINVAL');
      expect(await errnoOf(sys.write(fd, new Uint8Array(3)))).toBe('EINVAL');
      expect(await errnoOf(sys.write(fd, new Uint8Array(8)))).toBe('EINVAL');
      return 0;
    });
  });

  it('irqcontrol(1) re-arms an entry and its INTVECCTL field after a device reset cleared them', async () => {
    await onApex(async ({ sys, machine }) => {
      const apex = machine.pci.apex(BDF);
      const { fds, bar } = await openAll(sys);
      // Into reset and out again through the SCU: the MSI-X table and INTVECCTLs are cleared.
      bar.write32(off('SCU_2'), 1 << 2);
      await sys.nanosleep(20_000);
      bar.write32(off('SCU_2'), 2 << 2);
      await sys.nanosleep(50_000);
      expect(apex.irq.vectorOf(ApexIrq.TOP_LEVEL_2)).toBe(0);
      expect(await sys.write(fds[ApexIrq.TOP_LEVEL_2] as number, s32(1))).toBe(4);
      expect(apex.irq.vectorOf(ApexIrq.TOP_LEVEL_2)).toBe(ApexIrq.TOP_LEVEL_2);
      expect(apex.irq.vectorOf(ApexIrq.TOP_LEVEL_1)).toBe(0);
      bar.write64(off('TOP_LEVEL_INT_CONTROL'), 0xfn);
      apex.injectMbistFailure();
      await sys.nanosleep(1000);
      expect(await readable(sys, fds)).toEqual([ApexIrq.TOP_LEVEL_2]);
      return 0;
    });
  });
});

describe('uio_apex: coherent DMA regions on /dev/uio0', () => {
  const maps = async (sys: Sys): Promise<string[]> => {
    const out = [];
    for (const n of [1, 2]) out.push(`${await cat(sys, `/sys/class/uio/uio0/maps/map${n}/name`)} ${await cat(sys, `/sys/class/uio/uio0/maps/map${n}/addr`)} ${await cat(sys, `/sys/class/uio/uio0/maps/map${n}/size`)}`);
    return out;
  };
  const NONE = `0x${DMEM_MAP_ERROR.toString(16)}`;

  it('allocates at the first open, keeps them across opens, frees at the last close (frames back)', async () => {
    await onApex(async ({ sys, kernel }) => {
      expect(await maps(sys)).toEqual([`apex_queue ${NONE} 0x0000000000010000`, `apex_data ${NONE} 0x0000000000100000`]);
      const base = kernel.userPages.live;
      const other = await sys.open('/dev/uio4', O.RDWR);
      expect(kernel.userPages.live).toBe(base);
      const a = await sys.open('/dev/uio0', O.RDWR);
      const open1 = await maps(sys);
      expect(open1[0]).not.toContain(NONE);
      expect(kernel.userPages.live).toBe(base + 16 + 256);
      const b = await sys.open('/dev/uio0', O.RDONLY);
      await sys.close(a);
      expect(await maps(sys)).toEqual(open1);
      const m = await sys.mmap(null, 64 << 10, PROT.READ, MAP.SHARED, b, PAGE_SIZE);
      await sys.close(b);
      // The mapping holds the file: still allocated until it goes.
      expect(await maps(sys)).toEqual(open1);
      await sys.munmap(m.addr, m.length);
      expect(await maps(sys)).toEqual([`apex_queue ${NONE} 0x0000000000010000`, `apex_data ${NONE} 0x0000000000100000`]);
      expect(kernel.userPages.live).toBe(base);
      const c = await sys.open('/dev/uio0', O.RDWR);
      expect((await maps(sys))[1]).not.toContain(NONE);
      await sys.close(c);
      await sys.close(other);
      expect(kernel.userPages.live).toBe(base);
      return 0;
    });
  });

  it("6.1 shows the DMA address with memtype PHYS; mmap reaches that RAM, which the device's DMA sees", async () => {
    await onApex(async ({ sys, machine }) => {
      const fd = await sys.open('/dev/uio0', O.RDWR);
      const dma = Number(await cat(sys, '/sys/class/uio/uio0/maps/map2/addr'));
      expect(dma % PAGE_SIZE).toBe(0);
      expect(dma + (1 << 20)).toBeLessThanOrEqual(machine.memory.size);
      const m = await sys.mmap(null, 1 << 20, PROT_RW, MAP.SHARED, fd, 2 * PAGE_SIZE);
      expect(m.bytes).toBeUndefined();
      m.write32(0x1234 * 4, 0xdead_beef);
      expect(machine.memory.read32(dma + 0x1234 * 4)).toBe(0xdead_beef);
      machine.memory.write32(dma + (1 << 20) - 4, 0x600d_f00d);
      expect(m.read32((1 << 20) - 4)).toBe(0x600d_f00d);
      expect(sys.mem.read32(m.addr + BigInt((1 << 20) - 4))).toBe(0x600d_f00d);
      expect(await errnoOf(sys.mmap(null, (1 << 20) + PAGE_SIZE, PROT_RW, MAP.SHARED, fd, 2 * PAGE_SIZE))).toBe('EINVAL');
      expect(await errnoOf(sys.mmap(null, PAGE_SIZE, PROT_RW, MAP.SHARED, fd, 3 * PAGE_SIZE))).toBe('EINVAL');
      const fd1 = await sys.open('/dev/uio1', O.RDWR);
      expect(await errnoOf(sys.mmap(null, PAGE_SIZE, PROT_RW, MAP.SHARED, fd1, PAGE_SIZE))).toBe('EINVAL');
      await sys.munmap(m.addr, m.length);
      return 0;
    }, '6.1');
  });

  it('6.1 behind a translating IOMMU: addr is an IOVA, and mmap maps whatever sits at that physical address, not the buffer', async () => {
    await onApex(async ({ sys, machine, kernel }) => {
      const fd = await sys.open('/dev/uio0', O.RDWR);
      const iova = Number(await cat(sys, '/sys/class/uio/uio0/maps/map1/addr'));
      const pdev = kernel.pci.device('0000:01:00.0');
      const dom = pdev === undefined ? undefined : kernel.iommu?.groupOf(pdev)?.defaultDomain;
      const phys = dom === undefined ? -1 : (kernel.iommu?.iovaToPhys(dom, iova) ?? -1);
      expect(phys).toBeGreaterThanOrEqual(0);
      expect(phys).not.toBe(iova);
      // The IOVA lies above the 256 MiB of RAM: the PFN mapping reaches no memory (reads all-ones, writes dropped).
      expect(iova).toBeGreaterThanOrEqual(machine.memory.size);
      const m = await sys.mmap(null, 64 << 10, PROT_RW, MAP.SHARED, fd, PAGE_SIZE);
      m.write32(0, 0xabcd_1234);
      expect(m.read32(0)).toBe(0xffff_ffff);
      expect(machine.memory.read32(phys)).toBe(0);
      await sys.munmap(m.addr, m.length);
      return 0;
    }, '6.1', { ...CONFIG, iommu: { enabled: true } });
  });

  it('6.12 shows the kernel virtual address (DMA_COHERENT); mmap maps the buffer pages', async () => {
    await onApex(async ({ sys, machine }) => {
      expect(await cat(sys, '/sys/class/uio/uio0/maps/map1/addr')).toBe(NONE);
      const fd = await sys.open('/dev/uio0', O.RDWR);
      const va = BigInt(await cat(sys, '/sys/class/uio/uio0/maps/map1/addr'));
      expect(va >= PAGE_OFFSET).toBe(true);
      const m = await sys.mmap(null, 64 << 10, PROT_RW, MAP.SHARED, fd, PAGE_SIZE);
      m.write32(8, 0x1234_5678);
      expect(m.bytes?.length).toBe(64 << 10);
      // dma-direct: the direct map's address less PAGE_OFFSET is the physical (= bus) address.
      expect(machine.memory.read32(Number(va - PAGE_OFFSET) + 8)).toBe(0x1234_5678);
      await sys.munmap(m.addr, m.length);
      return 0;
    }, '6.12');
  });

  it('unbind while open: readers get EIO, the nodes, regions and vectors go; closing later is harmless', async () => {
    await onApex(async ({ sys, kernel, machine }) => {
      const base = kernel.userPages.live;
      const fd0 = await sys.open('/dev/uio0', O.RDWR);
      const fd4 = await sys.open('/dev/uio4', O.RDWR);
      const m = await sys.mmap(null, 64 << 10, PROT_RW, MAP.SHARED, fd0, PAGE_SIZE);
      let got = '';
      const t = sys.thread(async (th) => {
        got = await errnoOf(th.read(fd4, new Uint8Array(4)));
      });
      await sys.nanosleep(1000);
      const u = await sys.open('/sys/bus/pci/drivers/uio_apex/unbind', O.WRONLY);
      await sys.write(u, '0000:01:00.0');
      await sys.close(u);
      await t.done;
      expect(got).toBe('EIO');
      expect(await sys.readdir('/sys/class/uio')).toEqual([]);
      expect(await errnoOf(sys.open('/dev/uio0', O.RDWR))).toBe('ENOENT');
      expect(await errnoOf(sys.write(fd4, s32(1)))).toBe('EINVAL');
      expect(kernel.userPages.live).toBe(base);
      expect(machine.pci.apex(BDF).fn.msix?.enabled).toBe(false);
      await sys.munmap(m.addr, m.length);
      await sys.close(fd0);
      await sys.close(fd4);
      return 0;
    });
  });
});
