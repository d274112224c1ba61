import { describe, expect, it } from 'vitest';
import { MAP, O, PAGE_SIZE, PROT } from '../kernel-shim/uapi/linux.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import { DMEM_MAP_ERROR } from '../kernel-shim/uio/apex-dmem.ts';
import { PAGE_OFFSET } from '../kernel-shim/dma/mapping.ts';
import { errnoOf } from './sys-errno.ts';
import { BDF, CONFIG, PROT_RW, cat, onApex, s32 } from './uio-apex-host.ts';

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
