/**
 * The VFIO container and group (spec/linux-uapi.md 1.1, 1.6): nodes, every ioctl's rules with Linux's
 * errno and check order, the vfio-pci binding, and teardown by close in any order and by exit. Each
 * expectation names the Linux function that decides it (drivers/vfio/{container,group,vfio_main}.c,
 * vfio_iommu_type1.c, drivers/vfio/pci/vfio_pci_core.c; 6.12 unless noted).
 */
import { describe, expect, it } from 'vitest';
import { errnoOf } from './sys-errno.ts';
import { boot, bindVfio, EDU, EDU_SYSFS, openChain, run, sysfsWrite } from './vfio-fixture.ts';
import { MAP, O, PROT } from '../kernel-shim/uapi/linux.ts';
import { VFIO, VFIO_EXT, VFIO_GROUP_FLAGS, vfio_group_status } from '../kernel-shim/uapi/vfio.ts';
import { withLayout } from '../kernel-shim/uapi/registry.ts';
import { vfioGroups } from '../kernel-shim/vfio/core.ts';

/** A NUL-terminated `char *` argument. */
const cstr = (s: string): Uint8Array => new TextEncoder().encode(`${s}\0`);

const status = (): { argsz: number; flags: number } => withLayout(vfio_group_status, { argsz: 8, flags: 0 });

describe('nodes (vfio_init, vfio_group_alloc)', () => {
  it('/dev/vfio/vfio is misc 10:196, 0666; a group node appears at the first vfio-pci device and goes with it', async () => {
    const b = await run(async (sys, { kernel }) => {
      const node = kernel.vfs.lookup('/dev/vfio/vfio', undefined);
      if (typeof node === 'number' || node.inode.kind !== 'file') throw new Error('no /dev/vfio/vfio');
      expect(node.inode.rdev).toEqual({ major: 10, minor: 196 });
      expect(node.inode.mode).toBe(0o666);
      expect(await sys.readdir('/dev/vfio')).toEqual(['vfio']);
      const n = await bindVfio(sys);
      // 6.12 also gives the device its cdev, /dev/vfio/devices/vfio0 (vfio-cdev.test.ts).
      expect(await sys.readdir('/dev/vfio')).toEqual([String(n), 'devices', 'vfio'].sort());
      const g = kernel.vfs.lookup(`/dev/vfio/${n}`, undefined);
      if (typeof g === 'number' || g.inode.kind !== 'file') throw new Error('no group node');
      expect(g.inode.rdev).toEqual({ major: 511, minor: 0 });
      expect(g.inode.mode).toBe(0o600);
      expect(await sys.readlink(`${EDU_SYSFS}/driver`)).toMatch(/drivers\/vfio-pci$/);
      const dev = await sys.open(`/sys/class/vfio/${n}/dev`, O.RDONLY);
      const buf = new Uint8Array(16);
      const len = await sys.read(dev, buf);
      expect(new TextDecoder().decode(buf.subarray(0, len))).toBe('511:0\n');
      await sys.close(dev);
      await sysfsWrite(sys, `${EDU_SYSFS}/driver/unbind`, EDU);
      expect(await sys.readdir('/dev/vfio')).toEqual(['vfio']);
    });
    expect(vfioGroups(b.kernel)).toEqual([]);
  });

  it('group nodes are root-only (0600): EACCES for an unprivileged process (generic_permission)', async () => {
    const b = boot();
    await run(async (sys) => {
      await bindVfio(sys);
    }, { booted: b });
    await run(async (sys) => {
      const n = vfioGroups(b.kernel)[0]?.id;
      expect(await errnoOf(sys.open(`/dev/vfio/${n}`, O.RDWR))).toBe('EACCES');
      // The container node is world-usable.
      await sys.close(await sys.open('/dev/vfio/vfio', O.RDWR));
    }, { booted: b, spawn: { uid: 1000 } });
  });

  it('vfio-pci refuses a device without an IOMMU group: EINVAL (vfio_iommu_group_get)', async () => {
    const b = boot({}, false);
    await run(async (sys) => {
      await sysfsWrite(sys, '/sys/bus/pci/drivers/vfio-pci/new_id', '1234 11e8');
      expect(await errnoOf(sys.readlink(`${EDU_SYSFS}/driver`))).toBe('ENOENT');
      expect(await sys.readdir('/dev/vfio')).toEqual(['vfio']);
    }, { booted: b });
    expect(b.kernel.log.dmesg()).toMatch(/vfio-pci 0000:00:03.0: probe with driver vfio-pci failed with error -22/);
  });
});

describe('container (vfio_fops_unl_ioctl)', () => {
  it('GET_API_VERSION is 0; each open is a new container', async () => {
    await run(async (sys) => {
      const a = await sys.open('/dev/vfio/vfio', O.RDWR);
      const c = await sys.open('/dev/vfio/vfio', O.RDWR);
      expect(await sys.ioctl(a, VFIO.GET_API_VERSION)).toBe(0);
      expect(await sys.ioctl(c, VFIO.GET_API_VERSION)).toBe(0);
      // A group set on one container leaves the other without one: SET_IOMMU there is EINVAL.
      const n = await bindVfio(sys);
      const g = await sys.open(`/dev/vfio/${n}`, O.RDWR);
      await sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(a));
      expect(await errnoOf(sys.ioctl(c, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU))).toBe('EINVAL');
      expect(await sys.ioctl(a, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU)).toBe(0);
    });
  });

  it('CHECK_EXTENSION before SET_IOMMU asks every driver (vfio_container_ioctl_check_extension, vfio_iommu_type1_check_extension)', async () => {
    await run(async (sys) => {
      const c = await sys.open('/dev/vfio/vfio', O.RDWR);
      const ext = async (e: number | bigint): Promise<number> => sys.ioctl(c, VFIO.CHECK_EXTENSION, e);
      expect(await ext(VFIO_EXT.TYPE1_IOMMU)).toBe(1);
      expect(await ext(VFIO_EXT.TYPE1v2_IOMMU)).toBe(1);
      expect(await ext(VFIO_EXT.UNMAP_ALL)).toBe(1);
      // Asked with no instance: UPDATE_VADDR and DMA_CC are 0.
      expect(await ext(VFIO_EXT.UPDATE_VADDR)).toBe(0);
      expect(await ext(VFIO_EXT.DMA_CC_IOMMU)).toBe(0);
      // No vfio.enable_unsafe_noiommu_mode: the no-IOMMU driver does not answer.
      expect(await ext(VFIO_EXT.NOIOMMU_IOMMU)).toBe(0);
      expect(await ext(VFIO_EXT.SPAPR_TCE_IOMMU)).toBe(0);
      expect(await ext(0)).toBe(0);
      // The argument is an unsigned long: 2^32 + 1 is not TYPE1.
      expect(await ext(2n ** 32n + 1n)).toBe(0);
    });
  });

  it('CHECK_EXTENSION after SET_IOMMU asks the chosen driver: UPDATE_VADDR becomes 1', async () => {
    await run(async (sys) => {
      const { container } = await openChain(sys);
      expect(await sys.ioctl(container, VFIO.CHECK_EXTENSION, VFIO_EXT.UPDATE_VADDR)).toBe(1);
      expect(await sys.ioctl(container, VFIO.CHECK_EXTENSION, VFIO_EXT.TYPE1_IOMMU)).toBe(1);
      expect(await sys.ioctl(container, VFIO.CHECK_EXTENSION, VFIO_EXT.NOIOMMU_IOMMU)).toBe(0);
    });
  });

  it('SET_IOMMU: EINVAL without a group or when set; ENODEV for a type no driver answers; EINVAL for one type1 answers but cannot open (vfio_ioctl_set_iommu, vfio_iommu_type1_open)', async () => {
    await run(async (sys) => {
      const c = await sys.open('/dev/vfio/vfio', O.RDWR);
      expect(await errnoOf(sys.ioctl(c, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU))).toBe('EINVAL');
      const n = await bindVfio(sys);
      const g = await sys.open(`/dev/vfio/${n}`, O.RDWR);
      await sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(c));
      expect(await errnoOf(sys.ioctl(c, VFIO.SET_IOMMU, VFIO_EXT.SPAPR_TCE_IOMMU))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(c, VFIO.SET_IOMMU, VFIO_EXT.NOIOMMU_IOMMU))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(c, VFIO.SET_IOMMU, 77))).toBe('ENODEV');
      // UNMAP_ALL is an extension type1 answers for, but not a type it opens as.
      expect(await errnoOf(sys.ioctl(c, VFIO.SET_IOMMU, VFIO_EXT.UNMAP_ALL))).toBe('EINVAL');
      expect(await sys.ioctl(c, VFIO.SET_IOMMU, VFIO_EXT.TYPE1_IOMMU)).toBe(0);
      expect(await errnoOf(sys.ioctl(c, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU))).toBe('EINVAL');
    });
  });

  it('other ioctls: EINVAL before SET_IOMMU (not ENOTTY), the driver\'s ENOTTY after', async () => {
    await run(async (sys) => {
      const c = await sys.open('/dev/vfio/vfio', O.RDWR);
      expect(await errnoOf(sys.ioctl(c, VFIO.IOMMU_GET_INFO, { argsz: 24 }))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(c, VFIO.IOMMU_MAP_DMA, { argsz: 32, flags: 3, vaddr: 0n, iova: 0n, size: 4096n }))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(c, VFIO.GROUP_GET_STATUS, 0))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(c, 0x1234))).toBe('EINVAL');
      const n = await bindVfio(sys);
      const g = await sys.open(`/dev/vfio/${n}`, O.RDWR);
      await sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(c));
      expect(await errnoOf(sys.ioctl(c, 0x1234))).toBe('EINVAL');
      await sys.ioctl(c, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU);
      expect(await errnoOf(sys.ioctl(c, 0x1234))).toBe('ENOTTY');
      expect(await errnoOf(sys.ioctl(c, VFIO.GROUP_GET_STATUS, 0))).toBe('ENOTTY');
      expect(await errnoOf(sys.ioctl(c, VFIO.IOMMU_ENABLE))).toBe('ENOTTY');
    });
  });
});

describe('group (vfio_group_fops)', () => {
  it('a second open is EBUSY while the first is open (vfio_group_fops_open)', async () => {
    await run(async (sys) => {
      const n = await bindVfio(sys);
      const g = await sys.open(`/dev/vfio/${n}`, O.RDWR);
      expect(await errnoOf(sys.open(`/dev/vfio/${n}`, O.RDWR))).toBe('EBUSY');
      await sys.close(g);
      await sys.close(await sys.open(`/dev/vfio/${n}`, O.RDWR));
    });
  });

  it('GET_STATUS: argsz < 8 EINVAL; VIABLE when no kernel DMA driver uses the group; VIABLE|CONTAINER_SET with a container (vfio_group_ioctl_get_status)', async () => {
    await run(async (sys) => {
      const n = await bindVfio(sys);
      const g = await sys.open(`/dev/vfio/${n}`, O.RDWR);
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_GET_STATUS, withLayout(vfio_group_status, { argsz: 7, flags: 0 })))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_GET_STATUS, 0))).toBe('EFAULT');
      const s = status();
      expect(await sys.ioctl(g, VFIO.GROUP_GET_STATUS, s)).toBe(0);
      expect(s.flags).toBe(VFIO_GROUP_FLAGS.VIABLE);
      const c = await sys.open('/dev/vfio/vfio', O.RDWR);
      await sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(c));
      await sys.ioctl(g, VFIO.GROUP_GET_STATUS, s);
      expect(s.flags).toBe(VFIO_GROUP_FLAGS.VIABLE | VFIO_GROUP_FLAGS.CONTAINER_SET);
    });
  });

  it('a group with a member on a kernel DMA driver is not viable: GET_STATUS 0, SET_CONTAINER EPERM (iommu_group_claim_dma_owner)', async () => {
    const b = boot();
    await run(async (sys, { kernel }) => {
      const n = await bindVfio(sys);
      const g = await sys.open(`/dev/vfio/${n}`, O.RDWR);
      // A kernel driver that uses the DMA API claims the group's default domain (as another member would).
      const pdev = kernel.pci.device(EDU);
      const ig = pdev === undefined ? undefined : kernel.iommu?.groupOf(pdev);
      if (ig === undefined) throw new Error('no group');
      ig.ownerCount++;
      const s = status();
      await sys.ioctl(g, VFIO.GROUP_GET_STATUS, s);
      expect(s.flags).toBe(0);
      const c = await sys.open('/dev/vfio/vfio', O.RDWR);
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(c)))).toBe('EPERM');
      ig.ownerCount--;
      expect(await sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(c))).toBe(0);
    }, { booted: b });
  });

  it('SET_CONTAINER: EFAULT, EBADF, EINVAL when set, EBADFD for a non-container fd, in that order (vfio_group_ioctl_set_container)', async () => {
    await run(async (sys) => {
      const n = await bindVfio(sys);
      const g = await sys.open(`/dev/vfio/${n}`, O.RDWR);
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, 0))).toBe('EFAULT');
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(99)))).toBe('EBADF');
      const c = await sys.open('/dev/vfio/vfio', O.RDWR);
      const closed = await sys.open('/dev/vfio/vfio', O.RDWR);
      await sys.close(closed);
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(closed)))).toBe('EBADF');
      const efd = await sys.eventfd(0, 0);
      const e = await errnoOf(sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(efd)));
      expect(e).toBe('EBADFD');
      // The group's own fd is not a container either.
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(g)))).toBe('EBADFD');
      expect(await sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(c))).toBe(0);
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(c)))).toBe('EINVAL');
      // Already set wins over a bad fd: EBADF is checked first, then EINVAL, then the fd's kind.
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(efd)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(99)))).toBe('EBADF');
    });
  });

  it('SET_CONTAINER on a container with an IOMMU attaches the group at once (vfio_container_attach_group)', async () => {
    await run(async (sys, { kernel }) => {
      const { container, group } = await openChain(sys);
      await sys.ioctl(group, VFIO.GROUP_UNSET_CONTAINER);
      // The last group left: the container is unset again.
      expect(await errnoOf(sys.ioctl(container, 0x1234))).toBe('EINVAL');
      await sys.ioctl(group, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container));
      await sys.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.TYPE1_IOMMU);
      const pdev = kernel.pci.device(EDU);
      const ig = pdev === undefined ? undefined : kernel.iommu?.groupOf(pdev);
      expect(ig?.domain?.type).toBe('UNMANAGED');
    });
  });

  it('UNSET_CONTAINER: EINVAL without one, EBUSY while a device fd is open (vfio_group_ioctl_unset_container)', async () => {
    await run(async (sys) => {
      const n = await bindVfio(sys);
      const g = await sys.open(`/dev/vfio/${n}`, O.RDWR);
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_UNSET_CONTAINER))).toBe('EINVAL');
      const c = await sys.open('/dev/vfio/vfio', O.RDWR);
      await sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(c));
      await sys.ioctl(c, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU);
      const d = await sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
      const d2 = await sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_UNSET_CONTAINER))).toBe('EBUSY');
      await sys.close(d);
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_UNSET_CONTAINER))).toBe('EBUSY');
      await sys.close(d2);
      expect(await sys.ioctl(g, VFIO.GROUP_UNSET_CONTAINER)).toBe(0);
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_UNSET_CONTAINER))).toBe('EINVAL');
    });
  });

  it('GET_DEVICE_FD: ENODEV for no match (checked before the container), EINVAL without container or IOMMU (vfio_group_ioctl_get_device_fd, vfio_group_use_container)', async () => {
    await run(async (sys) => {
      const n = await bindVfio(sys);
      const g = await sys.open(`/dev/vfio/${n}`, O.RDWR);
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, cstr('0000:00:04.0')))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU)))).toBe('EINVAL');
      const c = await sys.open('/dev/vfio/vfio', O.RDWR);
      await sys.ioctl(g, VFIO.GROUP_SET_CONTAINER, Int32Array.of(c));
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, cstr('0000:00:04.0')))).toBe('ENODEV');
      await sys.ioctl(c, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU);
      // strndup_user: a bad pointer is EFAULT; a name is matched by prefix only when a space follows.
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, 0))).toBe('EFAULT');
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, cstr(`${EDU}x`)))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, cstr('0000:00:03')))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, cstr('')))).toBe('ENODEV');
      const fd = await sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
      expect(fd).toBeGreaterThanOrEqual(0);
      // O_CLOEXEC, and a second fd for the same device is allowed.
      expect(await sys.fcntl(fd, 1)).toBe(1);
      const fd2 = await sys.ioctl(g, VFIO.GROUP_GET_DEVICE_FD, cstr(`${EDU}   `));
      expect(fd2).not.toBe(fd);
      expect(await sys.readlink(`/proc/self/fd/${fd}`)).toBe('anon_inode:[vfio-device]');
    });
  });

  it('GET_DEVICE_FD with " vf_token=": malformed EINVAL; a token for a device that is neither PF nor VF EINVAL (vfio_pci_core_match, vfio_pci_validate_vf_token)', async () => {
    await run(async (sys) => {
      const { group } = await openChain(sys);
      const uuid = '2ab74924-c335-45f4-9b16-8569e5b08258';
      expect(await errnoOf(sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(`${EDU} vf_token=xyz`)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(`${EDU} vf_token=${uuid.replace('2', 'g')}`)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(`${EDU} bogus=1`)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(`${EDU} vf_token=${uuid} vf_token=${uuid}`)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(`${EDU} vf_token=${uuid}`)))).toBe('EINVAL');
    });
  });

  it('unknown group ioctls are ENOTTY; device fd ioctls go to the bus driver', async () => {
    await run(async (sys) => {
      const { group } = await openChain(sys);
      expect(await errnoOf(sys.ioctl(group, VFIO.GET_API_VERSION))).toBe('ENOTTY');
      expect(await errnoOf(sys.ioctl(group, VFIO.IOMMU_MAP_DMA, 0))).toBe('ENOTTY');
      expect(await errnoOf(sys.ioctl(group, 0x1234))).toBe('ENOTTY');
      const d = await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
      expect(await errnoOf(sys.ioctl(d, 0x1234))).toBe('ENOTTY');
    });
  });
});

describe('lifetimes', () => {
  it('device fds hold the group: closing the group fd first keeps it attached; the device opens once and closes at its last fd', async () => {
    await run(async (sys, { kernel }) => {
      const { container, group, groupId } = await openChain(sys);
      const pdev = kernel.pci.device(EDU);
      if (pdev === undefined) throw new Error('no edu');
      const d1 = await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
      expect(pdev.enableCnt).toBeGreaterThan(0);
      const d2 = await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
      await sys.close(group);
      // Still attached: the node cannot be opened again yet.
      expect(await errnoOf(sys.open(`/dev/vfio/${groupId}`, O.RDWR))).toBe('EBUSY');
      expect(await sys.ioctl(container, VFIO.CHECK_EXTENSION, VFIO_EXT.UPDATE_VADDR)).toBe(1);
      await sys.close(d1);
      expect(pdev.enableCnt).toBeGreaterThan(0);
      await sys.close(d2);
      expect(pdev.enableCnt).toBe(0);
      // The group file is gone: the container is unset and the group opens again.
      expect(await errnoOf(sys.ioctl(container, 0x1234))).toBe('EINVAL');
      await sys.close(await sys.open(`/dev/vfio/${groupId}`, O.RDWR));
    });
  });

  it('exit releases the chain: group ownership given back, no pinned page, no locked_vm', async () => {
    const b = boot();
    await run(async (sys) => {
      const { container, group } = await openChain(sys);
      await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
      const m = await sys.mmap(null, 8 * 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      await sys.ioctl(container, VFIO.IOMMU_MAP_DMA, { argsz: 32, flags: 3, vaddr: m.addr, iova: 0x10_0000n, size: 8n * 4096n });
      expect(b.kernel.userPages.pinned).toBe(8);
      // exit without closing anything
    }, { booted: b });
    expect(b.kernel.userPages.pinned).toBe(0);
    const pdev = b.kernel.pci.device(EDU);
    const ig = pdev === undefined ? undefined : b.kernel.iommu?.groupOf(pdev);
    expect(ig?.owner).toBeUndefined();
    expect(ig?.domain).toBe(ig?.defaultDomain);
    expect([...(b.kernel.iommu?.domains ?? [])].filter((d) => d.type === 'UNMANAGED')).toEqual([]);
  });

  it('unbinding an open device revokes it: its fd answers ENODEV, the node goes, closing later is quiet', async () => {
    await run(async (sys, { kernel }) => {
      const { group } = await openChain(sys);
      const d = await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
      await sysfsWrite(sys, `${EDU_SYSFS}/driver/unbind`, EDU);
      expect(kernel.pci.device(EDU)?.enableCnt).toBe(0);
      expect(await errnoOf(sys.ioctl(d, 0x3b6b))).toBe('ENODEV');
      expect(await sys.readdir('/dev/vfio')).toEqual(['vfio']);
      await sys.close(d);
      await sys.close(group);
    });
  });
});
