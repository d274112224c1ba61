/**
 * The VFIO device cdev on iommufd (spec section 1.9; Linux `device_cdev.c`, `vfio_main.c`): the node and its
 * sysfs, EINVAL for everything before BIND_IOMMUFD, BIND's checks in order, ATTACH_IOMMUFD_PT writing the
 * automatic HWPT's id back, device DMA through an IOAS mapping and its fault after unmap, DETACH, the group
 * and the cdev excluding each other, and close leaving nothing pinned or owned. Linux 6.1 has no cdev.
 */
import { describe, expect, it } from 'vitest';
import { MAP, O, PROT, type Sys } from '../kernel-shim/index.ts';
import { IOMMUFD, IOMMU_IOAS_MAP, VFIO, VFIO_DEVICE_BIND_FLAG, VFIO_DEVICE_ATTACH_FLAG } from '../kernel-shim/uapi/index.ts';
import { bindVfioPci, withMachine } from '../userspace/index.ts';
import { devicePort } from './dma-port.ts';
import { errnoOf } from './sys-errno.ts';

const EDU_CFG = { iommu: { enabled: true }, pci: { devices: [{ type: 'edu' as const, bdf: '00:03.0' }] } };
const PAGE = 4096;

const bindArg = (iommufd: number, flags = 0, argsz = 16) => ({ argsz, flags, iommufd, out_devid: 0, token_uuid_ptr: 0n });
const attachArg = (ptId: number, flags = 0, argsz = 12) => ({ argsz, flags, pt_id: ptId });

async function cdevPath(sys: Sys): Promise<string> {
  const names = await sys.readdir('/sys/bus/pci/devices/0000:00:03.0/vfio-dev');
  expect(names).toHaveLength(1);
  return `/dev/vfio/devices/${names[0] as string}`;
}

describe('VFIO device cdev + iommufd', () => {
  it('node, sysfs, EINVAL before BIND, BIND rules, ATTACH/DETACH, DMA through the IOAS, close releases everything', async () => {
    await withMachine(EDU_CFG, async ({ spawn, run, machine, kernel }) => {
      const p = spawn('drv', async (sys) => {
        await bindVfioPci(sys, '00:03.0');
        const path = await cdevPath(sys);
        expect(path).toBe('/dev/vfio/devices/vfio0');
        const devText = new TextDecoder().decode((await readAll(sys, '/sys/bus/pci/devices/0000:00:03.0/vfio-dev/vfio0/dev'))).trim();
        expect(devText).toMatch(/^\d+:0$/);
        const dev = await sys.open(path, O.RDWR);
        // Before BIND: everything else EINVAL, including read and mmap.
        expect(await errnoOf(sys.ioctl(dev, VFIO.DEVICE_GET_INFO, { argsz: 24, flags: 0, num_regions: 0, num_irqs: 0, cap_offset: 0, pad: 0 }))).toBe('EINVAL');
        expect(await errnoOf(sys.ioctl(dev, VFIO.DEVICE_ATTACH_IOMMUFD_PT, attachArg(1)))).toBe('EINVAL');
        expect(await errnoOf(sys.pread(dev, new Uint8Array(4), 7n << 40n))).toBe('EINVAL');
        expect(await errnoOf(sys.mmap(null, PAGE, PROT.READ, MAP.SHARED, dev, 0))).toBe('EINVAL');
        const iommufd = await sys.open('/dev/iommu', O.RDWR);
        const bindCall = (a: object) => sys.ioctl(dev, VFIO.DEVICE_BIND_IOMMUFD, a);
        expect(await errnoOf(bindCall(bindArg(iommufd, 0, 15)))).toBe('EINVAL');
        // copy_struct_from_user: bytes past the kernel's 24-byte struct must be zero.
        const raw = new Uint8Array(32);
        const rv = new DataView(raw.buffer);
        rv.setUint32(0, 32, true);
        rv.setInt32(8, iommufd, true);
        raw[28] = 1;
        expect(await errnoOf(bindCall(raw))).toBe('E2BIG');
        expect(await errnoOf(bindCall(bindArg(-1)))).toBe('EINVAL');
        expect(await errnoOf(bindCall(bindArg(iommufd, 2)))).toBe('EINVAL');
        expect(await errnoOf(bindCall(bindArg(999)))).toBe('EBADF');
        expect(await errnoOf(bindCall(bindArg(dev)))).toBe('EBADFD');
        expect(await errnoOf(bindCall(bindArg(iommufd, VFIO_DEVICE_BIND_FLAG.TOKEN, 24)))).toBe('EINVAL');
        // The group and the cdev exclude each other.
        const groupId = Number((await sys.readlink('/sys/bus/pci/devices/0000:00:03.0/iommu_group')).split('/').pop());
        const g = await sys.open(`/dev/vfio/${groupId}`, O.RDWR);
        expect(await errnoOf(bindCall(bindArg(iommufd)))).toBe('EBUSY');
        await sys.close(g);
        const b = bindArg(iommufd);
        await bindCall(b);
        expect(b.out_devid).toBeGreaterThan(0);
        expect(await errnoOf(bindCall(bindArg(iommufd)))).toBe('EINVAL');
        expect(await errnoOf(sys.open(`/dev/vfio/${groupId}`, O.RDWR))).toBe('EBUSY');
        // The device is open: config space reads work.
        const cfg = new Uint8Array(4);
        await sys.pread(dev, cfg, 7n << 40n);
        expect(new DataView(cfg.buffer).getUint32(0, true)).toBe(0x11e8_1234);
        // An IOAS with a buffer mapped at a fixed IOVA.
        const alloc = { size: 12, flags: 0, out_ioas_id: 0 };
        await sys.ioctl(iommufd, IOMMUFD.IOAS_ALLOC, alloc);
        const buf = await sys.mmap(null, PAGE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.POPULATE);
        buf.write32(0, 0xfeed_f00d);
        const iova = 0x10_0000n;
        await sys.ioctl(iommufd, IOMMUFD.IOAS_MAP, {
          size: 40, flags: IOMMU_IOAS_MAP.FIXED_IOVA | IOMMU_IOAS_MAP.READABLE | IOMMU_IOAS_MAP.WRITEABLE, ioas_id: alloc.out_ioas_id, __reserved: 0,
          user_va: buf.addr, length: BigInt(PAGE), iova,
        });
        const attach = (a: object) => sys.ioctl(dev, VFIO.DEVICE_ATTACH_IOMMUFD_PT, a);
        expect(await errnoOf(attach(attachArg(alloc.out_ioas_id, 0, 11)))).toBe('EINVAL');
        expect(await errnoOf(attach(attachArg(alloc.out_ioas_id, 2)))).toBe('EINVAL');
        expect(await errnoOf(attach({ ...attachArg(alloc.out_ioas_id, VFIO_DEVICE_ATTACH_FLAG.PASID), argsz: 16 }))).toBe('EOPNOTSUPP');
        expect(await errnoOf(attach(attachArg(4242)))).toBe('ENOENT');
        const at = attachArg(alloc.out_ioas_id);
        await attach(at);
        expect(at.pt_id).not.toBe(alloc.out_ioas_id);
        // The device reaches the buffer at the IOVA (bus mastering through the device's config).
        await sys.pwrite(dev, new Uint8Array([0x06, 0x00]), (7n << 40n) + 4n);
        const port = devicePort(machine, '00:03.0');
        const r = port.read(Number(iova), 4);
        expect(r.status).toBe(0);
        expect(new DataView(r.bytes.buffer).getUint32(0, true)).toBe(0xfeed_f00d);
        // Unmap: the device faults.
        await sys.ioctl(iommufd, IOMMUFD.IOAS_UNMAP, { size: 24, ioas_id: alloc.out_ioas_id, iova, length: BigInt(PAGE) });
        expect(port.read(Number(iova), 4).status).not.toBe(0);
        const det = (a: object) => sys.ioctl(dev, VFIO.DEVICE_DETACH_IOMMUFD_PT, a);
        expect(await errnoOf(det({ argsz: 7, flags: 0 }))).toBe('EINVAL');
        expect(await errnoOf(det({ argsz: 8, flags: 1 }))).toBe('EINVAL');
        await det({ argsz: 8, flags: 0 });
        await det({ argsz: 8, flags: 0 });
        expect(kernel.userPages.pinned).toBe(0);
        await sys.close(dev);
        // Unbound: the group opens again.
        await sys.close(await sys.open(`/dev/vfio/${groupId}`, O.RDWR));
        await sys.close(iommufd);
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
      expect(kernel.userPages.pinned).toBe(0);
    });
  });

  it('a device fd from the group cannot BIND (EINVAL); Linux 6.1 has no /dev/vfio/devices', async () => {
    await withMachine(EDU_CFG, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        const groupId = await bindVfioPci(sys, '00:03.0');
        const container = await sys.open('/dev/vfio/vfio', O.RDWR);
        const g = await sys.open(`/dev/vfio/${groupId}`, O.RDWR);
        await sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container));
        await sys.ioctl(container, VFIO.SET_IOMMU, 3);
        const dev = await sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, new TextEncoder().encode('0000:00:03.0\0'));
        const iommufd = await sys.open('/dev/iommu', O.RDWR);
        expect(await errnoOf(sys.ioctl(dev, VFIO.DEVICE_BIND_IOMMUFD, bindArg(iommufd)))).toBe('EINVAL');
        expect(await errnoOf(sys.ioctl(dev, VFIO.DEVICE_ATTACH_IOMMUFD_PT, attachArg(1)))).toBe('ENOTTY');
        for (const fd of [dev, g, container, iommufd]) await sys.close(fd);
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    });
    await withMachine(EDU_CFG, async ({ spawn, run }) => {
      const p = spawn('drv', async (sys) => {
        await bindVfioPci(sys, '00:03.0');
        expect(await errnoOf(sys.readdir('/dev/vfio/devices'))).toBe('ENOENT');
        expect(await errnoOf(sys.readdir('/sys/bus/pci/devices/0000:00:03.0/vfio-dev'))).toBe('ENOENT');
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
    }, { linux: '6.1' });
  });

  it.each([['cdev first'], ['iommufd first'], ['exit']] as const)('closing in any order (%s) leaves nothing pinned, owned or attached', async (order) => {
    await withMachine(EDU_CFG, async ({ spawn, run, kernel }) => {
      const p = spawn('drv', async (sys) => {
        await bindVfioPci(sys, '00:03.0');
        const dev = await sys.open(await cdevPath(sys), O.RDWR);
        const iommufd = await sys.open('/dev/iommu', O.RDWR);
        await sys.ioctl(dev, VFIO.DEVICE_BIND_IOMMUFD, bindArg(iommufd));
        const alloc = { size: 12, flags: 0, out_ioas_id: 0 };
        await sys.ioctl(iommufd, IOMMUFD.IOAS_ALLOC, alloc);
        await sys.ioctl(dev, VFIO.DEVICE_ATTACH_IOMMUFD_PT, attachArg(alloc.out_ioas_id));
        const buf = await sys.mmap(null, 4 * PAGE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.POPULATE);
        await sys.ioctl(iommufd, IOMMUFD.IOAS_MAP, {
          size: 40, flags: IOMMU_IOAS_MAP.FIXED_IOVA | IOMMU_IOAS_MAP.READABLE, ioas_id: alloc.out_ioas_id, __reserved: 0, user_va: buf.addr, length: BigInt(4 * PAGE), iova: 0x20_0000n,
        });
        expect(kernel.userPages.pinned).toBe(4);
        if (order === 'cdev first') {
          await sys.close(dev);
          await sys.close(iommufd);
        } else if (order === 'iommufd first') {
          // The bound device holds the context: nothing goes until the cdev closes too.
          await sys.close(iommufd);
          expect(kernel.userPages.pinned).toBe(4);
          await sys.close(dev);
        }
        return 0;
      });
      await run();
      expect(await p.exited).toBe(0);
      expect(kernel.userPages.pinned).toBe(0);
      expect(kernel.iommu?.groups.every((g) => g.owner === null || g.owner === undefined)).toBe(true);
    });
  });
});

async function readAll(sys: Sys, path: string): Promise<Uint8Array> {
  const fd = await sys.open(path, O.RDONLY);
  const b = new Uint8Array(256);
  const n = await sys.read(fd, b);
  await sys.close(fd);
  return b.subarray(0, n);
}
