/**
 * VFIO's no-IOMMU mode (spec/linux-uapi.md 1.8): the module parameter, the fake group with its sysfs and
 * node, the taint, CAP_SYS_RAWIO at group open, SET_CONTAINER, SET_IOMMU and device open, the No-IOMMU
 * driver's ioctls, and the container never mixing real and fake groups. Each expectation names the Linux
 * function that decides it (drivers/vfio/{group,container}.c, 6.12).
 */
import { describe, expect, it } from 'vitest';
import { errnoOf } from './sys-errno.ts';
import { boot, EDU, EDU_SYSFS, run, sysfsWrite, type Booted } from './vfio-fixture.ts';
import { TAINT } from '../kernel-shim/kernel.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import { Cred } from '../kernel-shim/cred.ts';
import { IommuGroupK } from '../kernel-shim/iommu/group.ts';
import { O, type CapName } from '../kernel-shim/uapi/linux.ts';
import { VfioContainer } from '../kernel-shim/vfio/container.ts';
import { VfioGroup } from '../kernel-shim/vfio/group.ts';
import { VFIO, VFIO_EXT, VFIO_GROUP_FLAGS, vfio_group_status } from '../kernel-shim/uapi/vfio.ts';
import { withLayout } from '../kernel-shim/uapi/registry.ts';
import { vfioGroups } from '../kernel-shim/vfio/core.ts';
import { noiommuEnabled } from '../kernel-shim/vfio/noiommu.ts';

const NOIOMMU = 'vfio.enable_unsafe_noiommu_mode=1';
const cstr = (s: string): Uint8Array => new TextEncoder().encode(`${s}\0`);
const TAINT_LINE = `vfio-pci ${EDU}: Adding kernel taint for vfio-noiommu group on device`;

/** A machine without an IOMMU, booted with `cmdline`. */
const bootNoiommu = (cmdline = NOIOMMU): Booted => boot({ cmdline }, false);

async function readText(sys: Sys, path: string): Promise<string> {
  const fd = await sys.open(path, O.RDONLY);
  const buf = new Uint8Array(256);
  const n = await sys.read(fd, buf);
  await sys.close(fd);
  return new TextDecoder().decode(buf.subarray(0, n));
}

async function bindNoiommu(sys: Sys): Promise<void> {
  await sysfsWrite(sys, '/sys/bus/pci/drivers/vfio-pci/new_id', '1234 11e8');
}

/** Opens container and group, SET_CONTAINER, SET_IOMMU(8) (each step only if asked). */
async function chain(sys: Sys, setIommu = true): Promise<{ container: number; group: number }> {
  await bindNoiommu(sys);
  const container = await sys.open('/dev/vfio/vfio', O.RDWR);
  const group = await sys.open('/dev/vfio/noiommu-0', O.RDWR);
  await sys.ioctl(group, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container));
  if (setIommu) expect(await sys.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.NOIOMMU_IOMMU)).toBe(0);
  return { container, group };
}

describe('the module parameter (param_set_bool, parse_args)', () => {
  it('kstrtobool values, a bare name, - for _, the last valid one wins, off by default', () => {
    expect(noiommuEnabled('')).toBe(false);
    for (const v of ['1', 'y', 'Y', 'on', 'true', 'T']) expect(noiommuEnabled(`vfio.enable_unsafe_noiommu_mode=${v}`)).toBe(true);
    for (const v of ['0', 'n', 'N', 'off', 'false']) expect(noiommuEnabled(`vfio.enable_unsafe_noiommu_mode=${v}`)).toBe(false);
    expect(noiommuEnabled('vfio.enable_unsafe_noiommu_mode')).toBe(true);
    expect(noiommuEnabled('vfio.enable-unsafe-noiommu-mode=1')).toBe(true);
    expect(noiommuEnabled('vfio.enable_unsafe_noiommu_mode=1 vfio.enable_unsafe_noiommu_mode=x')).toBe(true);
    expect(noiommuEnabled('vfio.enable_unsafe_noiommu_mode=1 vfio.enable_unsafe_noiommu_mode=0')).toBe(false);
    expect(noiommuEnabled('enable_unsafe_noiommu_mode=1')).toBe(false);
  });

  it('without it nothing changes: no IOMMU group means EINVAL at probe, no taint', async () => {
    const b = bootNoiommu('');
    await run(async (sys) => {
      await bindNoiommu(sys);
      expect(await sys.readdir('/dev/vfio')).toEqual(['vfio']);
      expect(await readText(sys, '/proc/sys/kernel/tainted')).toBe('0\n');
    }, { booted: b });
    expect(b.kernel.tainted).toBe(0);
    expect(b.kernel.log.dmesg()).toMatch(/vfio-pci 0000:00:03.0: probe with driver vfio-pci failed with error -22/);
  });

  it('a machine with an IOMMU keeps real groups: no fake group, no taint', async () => {
    const b = boot({ cmdline: NOIOMMU });
    await run(async (sys) => {
      await bindNoiommu(sys);
      expect((await sys.readdir('/dev/vfio')).some((n) => n.startsWith('noiommu'))).toBe(false);
    }, { booted: b });
    expect(b.kernel.tainted).toBe(0);
  });
});

describe('the fake group (vfio_group_find_or_alloc, vfio_noiommu_group_alloc)', () => {
  it('/dev/vfio/noiommu-0, iommu group 0 named vfio-noiommu, the device link; TAINT_USER and its log line', async () => {
    const b = bootNoiommu();
    expect(b.kernel.tainted).toBe(0);
    await run(async (sys, { kernel }) => {
      await bindNoiommu(sys);
      expect(await sys.readdir('/dev/vfio')).toEqual(['noiommu-0', 'vfio']);
      const g = kernel.vfs.lookup('/dev/vfio/noiommu-0', undefined);
      if (typeof g === 'number' || g.inode.kind !== 'file') throw new Error('no group node');
      expect(g.inode.rdev).toEqual({ major: 511, minor: 0 });
      expect(g.inode.mode).toBe(0o600);
      expect(await sys.readlink(`${EDU_SYSFS}/iommu_group`)).toBe('../../../kernel/iommu_groups/0');
      expect(await readText(sys, '/sys/kernel/iommu_groups/0/name')).toBe('vfio-noiommu\n');
      expect(await readText(sys, '/sys/kernel/iommu_groups/0/type')).toBe('unknown\n');
      expect(await sys.readdir('/sys/kernel/iommu_groups/0/devices')).toEqual([EDU]);
      expect(await readText(sys, '/sys/class/vfio/noiommu-0/dev')).toBe('511:0\n');
      // add_taint(TAINT_USER): bit 6, 64 in /proc/sys/kernel/tainted.
      expect(await readText(sys, '/proc/sys/kernel/tainted')).toBe('64\n');
      // No cdev for a noiommu device (spec 1.8).
      expect(await errnoOf(sys.readdir('/dev/vfio/devices'))).toBe('ENOENT');
    }, { booted: b });
    expect(b.kernel.tainted).toBe(1 << TAINT.USER);
    const lines = b.kernel.log.records.filter((r) => r.text === TAINT_LINE);
    expect(lines.map((r) => r.level)).toEqual(['warn']);
    // iommu_group_add_device's line comes first, as in a real boot's dmesg.
    expect(b.kernel.log.dmesg()).toMatch(/vfio-pci 0000:00:03\.0: Adding to iommu group 0\n.*vfio-pci 0000:00:03\.0: Adding kernel taint for vfio-noiommu group on device/);
    expect(vfioGroups(b.kernel).map((g) => [g.name, g.type])).toEqual([['noiommu-0', 'noiommu']]);
  });

  it('unbinding removes the group and its sysfs; the taint stays; rebinding taints (and logs) again', async () => {
    const b = bootNoiommu();
    await run(async (sys) => {
      await bindNoiommu(sys);
      await sysfsWrite(sys, `${EDU_SYSFS}/driver/unbind`, EDU);
      expect(await sys.readdir('/dev/vfio')).toEqual(['vfio']);
      expect(await errnoOf(sys.readlink(`${EDU_SYSFS}/iommu_group`))).toBe('ENOENT');
      expect(await errnoOf(sys.readdir('/sys/kernel/iommu_groups/0'))).toBe('ENOENT');
      expect(await readText(sys, '/proc/sys/kernel/tainted')).toBe('64\n');
      await sysfsWrite(sys, '/sys/bus/pci/drivers/vfio-pci/bind', EDU);
      expect(await sys.readdir('/dev/vfio')).toEqual(['noiommu-0', 'vfio']);
    }, { booted: b });
    expect(b.kernel.log.records.filter((r) => r.text === TAINT_LINE)).toHaveLength(2);
    expect(b.kernel.log.dmesg()).toMatch(/vfio-pci 0000:00:03\.0: Removing from iommu group 0/);
  });
});

describe('CAP_SYS_RAWIO (vfio_group_fops_open, vfio_container_attach_group, vfio_noiommu_open)', () => {
  const noRawio = { uid: 0, caps: ['DAC_OVERRIDE', 'SYS_ADMIN'] as CapName[] };

  it('group open without it: EPERM, before EBUSY (the group is held open by another process)', async () => {
    const b = bootNoiommu();
    const holder = b.kernel.spawn({ comm: 'holder' }, async (sys) => {
      await bindNoiommu(sys);
      await sys.open('/dev/vfio/noiommu-0', O.RDWR);
      expect(await errnoOf(sys.open('/dev/vfio/noiommu-0', O.RDWR))).toBe('EBUSY');
      await sys.nanosleep(1_000_000);
    });
    const other = b.kernel.spawn({ comm: 'other', ...noRawio }, async (sys) => {
      await sys.nanosleep(500_000);
      expect(await errnoOf(sys.open('/dev/vfio/noiommu-0', O.RDWR))).toBe('EPERM');
    });
    await b.machine.sim.run();
    for (const p of [holder, other]) {
      if (p.error !== undefined) throw p.error;
      expect(await p.exited).toBe(0);
    }
  });

  it('SET_CONTAINER, SET_IOMMU(8) and GET_DEVICE_FD without it: EPERM (a thread that dropped it, on fds opened with it)', async () => {
    // dmasim has no capset(2): the test gives the task credentials without CAP_SYS_RAWIO while a thread
    // runs (it takes them at its start; the main thread keeps its own, as capabilities are per thread).
    const b = bootNoiommu();
    await run(async (sys, { kernel }) => {
      await bindNoiommu(sys);
      const task = kernel.task(sys.pid);
      if (task === undefined) throw new Error('no task');
      const full = task.cred;
      const dropped = new Cred(0, 0, full.caps.filter((c) => c !== 'SYS_RAWIO'));
      const unprivileged = async (fn: (t: Sys) => Promise<void>): Promise<void> => {
        let finished = false;
        (task as { cred: Cred }).cred = dropped;
        const th = sys.thread(async (t) => {
          await fn(t);
          finished = true;
        });
        while (!finished) await sys.nanosleep(1000);
        (task as { cred: Cred }).cred = full;
        await th.done;
      };
      const container = await sys.open('/dev/vfio/vfio', O.RDWR);
      const group = await sys.open('/dev/vfio/noiommu-0', O.RDWR);
      await unprivileged(async (t) => {
        expect(await errnoOf(t.ioctl(group, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container)))).toBe('EPERM');
      });
      expect(await sys.ioctl(group, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container))).toBe(0);
      await unprivileged(async (t) => {
        // vfio_noiommu_open: arg checked first (EINVAL), then the capability.
        expect(await errnoOf(t.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.NOIOMMU_IOMMU))).toBe('EPERM');
      });
      expect(await sys.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.NOIOMMU_IOMMU)).toBe(0);
      await unprivileged(async (t) => {
        expect(await errnoOf(t.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU)))).toBe('EPERM');
      });
      expect(await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU))).toBeGreaterThan(0);
      // The check is the first open's (vfio_df_device_first_open -> vfio_group_use_container): a further fd is not refused.
      await unprivileged(async (t) => {
        expect(await t.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU))).toBeGreaterThan(0);
      });
    }, { booted: b });
    expect(b.kernel.log.records.filter((r) => r.text.includes('vfio-noiommu device opened by user'))).toHaveLength(2);
  });

  it('a non-root process: EACCES first (the node is 0600 root)', async () => {
    const b = bootNoiommu();
    await run(async (sys) => {
      await bindNoiommu(sys);
    }, { booted: b });
    await run(async (sys) => {
      expect(await errnoOf(sys.open('/dev/vfio/noiommu-0', O.RDWR))).toBe('EACCES');
    }, { booted: b, spawn: { uid: 1000, caps: ['SYS_RAWIO'] } });
  });

  it('real and fake groups never share a container: EPERM (vfio_container_attach_group)', async () => {
    // A machine with an IOMMU gives the edu a real group; a container holding a noiommu group refuses it and
    // the other way round. dmasim machines have one IOMMU or none, so the mix is made in the kernel directly.
    const b = bootNoiommu();
    await run(async (sys) => {
      await bindNoiommu(sys);
    }, { booted: b });
    const fake = vfioGroups(b.kernel)[0];
    if (fake === undefined) throw new Error('no group');
    const real = new VfioGroup(b.kernel, new IommuGroupK(7), 9);
    const c = new VfioContainer(b.kernel);
    expect(c.attachGroup(fake)).toBe(0);
    expect(c.attachGroup(real)).toBe(-1);
    c.detachGroup(fake);
    const c2 = new VfioContainer(b.kernel);
    c2.groups.push(real);
    expect(c2.attachGroup(fake)).toBe(-1);
  });
});

describe('the No-IOMMU driver (vfio_noiommu_ops, vfio_iommu_driver_allowed)', () => {
  it('CHECK_EXTENSION(8) is 1 with the mode on, 0 without; TYPE1 is 0 on a noiommu container', async () => {
    await run(async (sys) => {
      const c = await sys.open('/dev/vfio/vfio', O.RDWR);
      expect(await sys.ioctl(c, VFIO.CHECK_EXTENSION, VFIO_EXT.NOIOMMU_IOMMU)).toBe(1);
      // No group yet: every driver is asked, type1 answers for TYPE1v2.
      expect(await sys.ioctl(c, VFIO.CHECK_EXTENSION, VFIO_EXT.TYPE1v2_IOMMU)).toBe(1);
      const { container } = await chain(sys, false);
      // A noiommu group attached: only the No-IOMMU driver is asked.
      expect(await sys.ioctl(container, VFIO.CHECK_EXTENSION, VFIO_EXT.TYPE1v2_IOMMU)).toBe(0);
      expect(await sys.ioctl(container, VFIO.CHECK_EXTENSION, VFIO_EXT.NOIOMMU_IOMMU)).toBe(1);
    }, { booted: bootNoiommu() });
    await run(async (sys) => {
      const c = await sys.open('/dev/vfio/vfio', O.RDWR);
      expect(await sys.ioctl(c, VFIO.CHECK_EXTENSION, VFIO_EXT.NOIOMMU_IOMMU)).toBe(0);
    });
  });

  it('SET_IOMMU: TYPE1 on a noiommu container ENODEV, 8 works, then GET_INFO / MAP_DMA / UNMAP_DMA are ENOTTY', async () => {
    await run(async (sys) => {
      const { container } = await chain(sys, false);
      expect(await errnoOf(sys.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(container, VFIO.IOMMU_MAP_DMA, 0))).toBe('EINVAL');
      expect(await sys.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.NOIOMMU_IOMMU)).toBe(0);
      expect(await errnoOf(sys.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.NOIOMMU_IOMMU))).toBe('EINVAL');
      expect(await sys.ioctl(container, VFIO.GET_API_VERSION)).toBe(0);
      expect(await sys.ioctl(container, VFIO.CHECK_EXTENSION, VFIO_EXT.NOIOMMU_IOMMU)).toBe(1);
      expect(await sys.ioctl(container, VFIO.CHECK_EXTENSION, VFIO_EXT.TYPE1_IOMMU)).toBe(0);
      for (const req of [VFIO.IOMMU_GET_INFO, VFIO.IOMMU_MAP_DMA, VFIO.IOMMU_UNMAP_DMA]) {
        expect(await errnoOf(sys.ioctl(container, req, 0))).toBe('ENOTTY');
      }
    }, { booted: bootNoiommu() });
  });

  it('SET_IOMMU(8) on a container of real groups: ENODEV', async () => {
    await run(async (sys) => {
      await sysfsWrite(sys, '/sys/bus/pci/drivers/vfio-pci/new_id', '1234 11e8');
      const n = Number((await sys.readlink(`${EDU_SYSFS}/iommu_group`)).split('/').pop());
      const container = await sys.open('/dev/vfio/vfio', O.RDWR);
      const group = await sys.open(`/dev/vfio/${n}`, O.RDWR);
      await sys.ioctl(group, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container));
      expect(await sys.ioctl(container, VFIO.CHECK_EXTENSION, VFIO_EXT.NOIOMMU_IOMMU)).toBe(0);
      expect(await errnoOf(sys.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.NOIOMMU_IOMMU))).toBe('ENODEV');
    }, { kernel: { cmdline: NOIOMMU } });
  });

  it('GET_STATUS: viable without a container (no DMA ownership to claim), CONTAINER_SET after', async () => {
    await run(async (sys) => {
      await bindNoiommu(sys);
      const group = await sys.open('/dev/vfio/noiommu-0', O.RDWR);
      const st = withLayout(vfio_group_status, { argsz: 8, flags: 0 });
      await sys.ioctl(group, VFIO.GROUP_GET_STATUS, st);
      expect(st.flags).toBe(VFIO_GROUP_FLAGS.VIABLE);
      const container = await sys.open('/dev/vfio/vfio', O.RDWR);
      await sys.ioctl(group, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container));
      await sys.ioctl(group, VFIO.GROUP_GET_STATUS, st);
      expect(st.flags).toBe(VFIO_GROUP_FLAGS.VIABLE | VFIO_GROUP_FLAGS.CONTAINER_SET);
    }, { booted: bootNoiommu() });
  });
});

describe('GET_DEVICE_FD on a noiommu group (vfio_device_open_file)', () => {
  it('opens the device and logs "vfio-noiommu device opened by user (comm:pid)" for each fd', async () => {
    const b = bootNoiommu();
    let pid = 0;
    await run(async (sys) => {
      pid = sys.pid;
      const { group } = await chain(sys);
      const d1 = await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
      const d2 = await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU));
      expect(d1).toBeGreaterThan(0);
      expect(d2).toBeGreaterThan(d1);
    }, { booted: b, spawn: { comm: 'eductl' } });
    const lines = b.kernel.log.records.filter((r) => r.text === `vfio-pci ${EDU}: vfio-noiommu device opened by user (eductl:${pid})`);
    expect(lines.map((r) => r.level)).toEqual(['warn', 'warn']);
  });

  it('before SET_IOMMU: EINVAL, no log line', async () => {
    const b = bootNoiommu();
    await run(async (sys) => {
      const { group } = await chain(sys, false);
      expect(await errnoOf(sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(EDU)))).toBe('EINVAL');
    }, { booted: b });
    expect(b.kernel.log.dmesg()).not.toMatch(/device opened by user/);
  });
});
