import { describe, expect, it } from 'vitest';
import { withMachine, type MachineSession } from '../userspace/index.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import { E, SysError } from '../kernel-shim/errno.ts';
import { MAP, O, PAGE_SIZE, POLL, PROT } from '../kernel-shim/uapi/linux.ts';
import { PCI_IRQ } from '../kernel-shim/pci/dev.ts';
import { IRQ_HANDLED } from '../kernel-shim/irq.ts';
import type { LinuxVersion } from '../kernel-shim/versions.ts';
import type { MachineConfigInput } from '../kernel-shim/index.ts';
import { APEX, APEX_OFFSET, ApexIrq, type ApexRegName } from '../device-models/index.ts';

/**
 * The PCI core as user space sees it on a booted kernel: enumeration (dmesg), the device attributes of
 * `drivers/pci/pci-sysfs.c`, the driver core's `bind` / `unbind` / `new_id` / `remove_id` /
 * `driver_override` (`drivers/base/bus.c`, `drivers/pci/pci-driver.c`, `drivers/base/driver.c`), and
 * uio_pci_generic (`drivers/uio/uio_pci_generic.c`) driving an edu and an Apex. Everything but the MSI-X
 * allocation (a kernel-internal API) goes through syscalls of a spawned process.
 */

const EDU = '0000:00:03.0';
const EDU_DIR = `/sys/bus/pci/devices/${EDU}`;
const APEX_BDF = '0000:00:05.0';
const APEX_DIR = `/sys/bus/pci/devices/${APEX_BDF}`;
const UPG = '/sys/bus/pci/drivers/uio_pci_generic';
const EDU_ID = 0x0100_00ed;
const REG = { ID: 0x00, FACTORIAL: 0x08, STATUS: 0x20, IRQ_STATUS: 0x24, IRQ_ACK: 0x64 } as const;
const STATUS_IRQ_FACT = 0x80;
const CMD = { MEMORY: 0x2, MASTER: 0x4, INTX_DISABLE: 0x400 } as const;
const decoder = new TextDecoder();

const config: MachineConfigInput = {
  memory: { size: '64MiB' },
  pci: { devices: [{ type: 'edu', bdf: '00:03.0' }, { type: 'apex', bdf: '00:05.0' }] },
};

/** Boots `config`, runs `main` as one process (root unless `uid`), and returns its exit status. */
async function session(
  main: (sys: Sys, s: MachineSession) => Promise<unknown>,
  opts: { linux?: LinuxVersion; uid?: number } = {},
): Promise<number> {
  return withMachine(config, async (s) => {
    const p = s.spawn({ comm: 'drv', uid: opts.uid ?? 0 }, (sys) => main(sys, s));
    await s.run();
    return p.exited;
  }, opts.linux === undefined ? {} : { linux: opts.linux });
}

async function cat(sys: Sys, path: string): Promise<string> {
  const fd = await sys.open(path, O.RDONLY);
  const b = new Uint8Array(8192);
  const n = await sys.read(fd, b);
  await sys.close(fd);
  return decoder.decode(b.subarray(0, n));
}

/** `echo -n text > path` (one write of the whole text); resolves to write's return value. */
async function echo(sys: Sys, path: string, text: string): Promise<number> {
  const fd = await sys.open(path, O.WRONLY);
  try {
    return await sys.write(fd, text);
  } finally {
    await sys.close(fd);
  }
}

/** The errno code `p` rejects with, or `'ok'`. */
async function code(p: Promise<unknown>): Promise<string> {
  return p.then(() => 'ok', (e: unknown) => (e instanceof SysError ? e.code : Promise.reject(e)));
}

/** Reads the 16-bit Command register through sysfs `config`. */
async function command(sys: Sys, dir = EDU_DIR): Promise<number> {
  const fd = await sys.open(`${dir}/config`, O.RDONLY);
  const b = new Uint8Array(2);
  expect(await sys.pread(fd, b, 4)).toBe(2);
  await sys.close(fd);
  return b[0]! | (b[1]! << 8);
}

const hex64 = (n: number | bigint): string => `0x${BigInt(n).toString(16).padStart(16, '0')}`;

/** `a` as an s32 from a 4-byte buffer. */
const s32 = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset).getInt32(0, true);

describe('PCI core: enumeration', () => {
  // drivers/pci/probe.c pci_setup_device: "[%04x:%04x] type %02x class %#08x" (6.7+ adds pci_type_str);
  // __pci_read_base: "reg 0x%x: %pR" up to 6.6, "%s %pR" with pci_resource_name ("BAR 0") from 6.7.
  const expected: Record<LinuxVersion, string[]> = {
    '6.1': [
      `pci ${EDU}: [1234:11e8] type 00 class 0x00ff00`,
      `pci ${EDU}: reg 0x10: [mem 0xc0000000-0xc00fffff]`,
      `pci ${APEX_BDF}: [1ac1:089a] type 00 class 0x0000ff`,
      `pci ${APEX_BDF}: reg 0x10: [mem 0x8000100000-0x8000103fff 64bit pref]`,
      `pci ${APEX_BDF}: reg 0x18: [mem 0x8000000000-0x80000fffff 64bit pref]`,
    ],
    '6.12': [
      `pci ${EDU}: [1234:11e8] type 00 class 0x00ff00 conventional PCI endpoint`,
      `pci ${EDU}: BAR 0 [mem 0xc0000000-0xc00fffff]`,
      `pci ${APEX_BDF}: [1ac1:089a] type 00 class 0x0000ff PCIe Endpoint`,
      `pci ${APEX_BDF}: BAR 0 [mem 0x8000100000-0x8000103fff 64bit pref]`,
      `pci ${APEX_BDF}: BAR 2 [mem 0x8000000000-0x80000fffff 64bit pref]`,
    ],
  };
  for (const linux of ['6.1', '6.12'] as const) {
    it(`logs each function and its BARs as Linux ${linux} does`, async () => {
      await withMachine(config, ({ kernel }) => {
        const lines = kernel.log.records.map((r) => r.text).filter((t) => t.startsWith('pci '));
        expect(lines).toEqual(expected[linux]);
        expect(kernel.log.dmesg()).toContain(`] pci ${EDU}: [1234:11e8]`);
      }, { linux });
    });
  }

  it('lists the functions under /sys/bus/pci/devices as links into /sys/devices', async () => {
    expect(await session(async (sys) => {
      expect(await sys.readdir('/sys/bus/pci/devices')).toEqual([EDU, APEX_BDF]);
      expect(await sys.readlink(EDU_DIR)).toBe(`../../../devices/pci0000:00/${EDU}`);
      expect(await sys.readlink(`${EDU_DIR}/subsystem`)).toBe('../../../bus/pci');
      expect(await sys.readdir('/sys/bus/pci/drivers')).toContain('uio_pci_generic');
      return 0;
    })).toBe(0);
  });
});

describe('PCI core: device attributes (pci-sysfs.c)', () => {
  it('prints identity, class, irq and modalias as Linux does', async () => {
    expect(await session(async (sys) => {
      expect(await cat(sys, `${EDU_DIR}/vendor`)).toBe('0x1234\n');
      expect(await cat(sys, `${EDU_DIR}/device`)).toBe('0x11e8\n');
      expect(await cat(sys, `${EDU_DIR}/subsystem_vendor`)).toBe('0x1af4\n');
      expect(await cat(sys, `${EDU_DIR}/subsystem_device`)).toBe('0x1100\n');
      expect(await cat(sys, `${EDU_DIR}/class`)).toBe('0x00ff00\n');
      expect(await cat(sys, `${EDU_DIR}/revision`)).toBe('0x10\n');
      expect(await cat(sys, `${EDU_DIR}/irq`)).toMatch(/^\d+\n$/);
      expect(await cat(sys, `${EDU_DIR}/modalias`)).toBe('pci:v00001234d000011E8sv00001AF4sd00001100bc00scFFi00\n');
      expect(await cat(sys, `${APEX_DIR}/vendor`)).toBe('0x1ac1\n');
      expect(await cat(sys, `${APEX_DIR}/device`)).toBe('0x089a\n');
      expect(await cat(sys, `${APEX_DIR}/class`)).toBe('0x0000ff\n');
      // driver_override: "%s\n" of NULL is "(null)".
      expect(await cat(sys, `${EDU_DIR}/driver_override`)).toBe('(null)\n');
      // Unbound at boot: no driver link.
      expect(await code(sys.readlink(`${EDU_DIR}/driver`))).toBe('ENOENT');
      return 0;
    })).toBe(0);
  });

  it('prints resource as 13 lines of "0x%016llx 0x%016llx 0x%016llx" (BARs, ROM, SR-IOV BARs)', async () => {
    expect(await session(async (sys) => {
      const zero = `${hex64(0)} ${hex64(0)} ${hex64(0)}`;
      const edu = (await cat(sys, `${EDU_DIR}/resource`)).split('\n');
      expect(edu).toHaveLength(14);
      expect(edu.pop()).toBe('');
      // IORESOURCE_MEM | IORESOURCE_SIZEALIGN with the BAR's low bits (0: 32-bit, non-prefetchable).
      expect(edu[0]).toBe(`${hex64(0xc000_0000)} ${hex64(0xc00f_ffff)} ${hex64(0x40200)}`);
      expect(edu.slice(1)).toEqual(Array(12).fill(zero));
      const apex = (await cat(sys, `${APEX_DIR}/resource`)).split('\n');
      // MEM_64 | SIZEALIGN | PREFETCH | MEM, low bits 0xc (64-bit, prefetchable): 0x14220c as real Linux shows.
      expect(apex[0]).toBe(`${hex64(0x80_0010_0000)} ${hex64(0x80_0010_3fff)} ${hex64(0x14220c)}`);
      expect(apex[1]).toBe(zero);
      expect(apex[2]).toBe(`${hex64(0x80_0000_0000)} ${hex64(0x80_000f_ffff)} ${hex64(0x14220c)}`);
      expect(await sys.readdir(EDU_DIR)).toEqual(expect.arrayContaining(['config', 'resource', 'resource0']));
      expect(await sys.readdir(EDU_DIR)).not.toContain('resource1');
      // Prefetchable memory BARs also get a write-combining file.
      expect(await sys.readdir(APEX_DIR)).toEqual(expect.arrayContaining(['resource0', 'resource0_wc', 'resource2', 'resource2_wc']));
      return 0;
    })).toBe(0);
  });

  it('lets root read all of config (256 or 4096 bytes)', async () => {
    expect(await session(async (sys) => {
      const fd = await sys.open(`${EDU_DIR}/config`, O.RDONLY);
      const b = new Uint8Array(8192);
      expect(await sys.read(fd, b)).toBe(256);
      const dv = new DataView(b.buffer);
      expect(dv.getUint32(0, true)).toBe(0x11e8_1234);
      expect(dv.getUint32(8, true) >>> 8).toBe(0x00ff00);
      expect(await sys.read(fd, b)).toBe(0);
      // A read past the first 64 bytes (the MSI capability lives there).
      expect(await sys.pread(fd, b, 0x40, 16)).toBe(16);
      await sys.close(fd);
      const afd = await sys.open(`${APEX_DIR}/config`, O.RDONLY);
      expect(await sys.read(afd, b)).toBe(4096);
      expect(dv.getUint32(0, true)).toBe(0x089a_1ac1);
      await sys.close(afd);
      return 0;
    })).toBe(0);
  });

  it('gives an unprivileged reader only the 64-byte header, and no write access', async () => {
    // pci_read_config: size = 64 unless file_ns_capable(CAP_SYS_ADMIN); config is 0644.
    expect(await session(async (sys) => {
      const fd = await sys.open(`${EDU_DIR}/config`, O.RDONLY);
      const b = new Uint8Array(256);
      expect(await sys.read(fd, b)).toBe(64);
      expect(new DataView(b.buffer).getUint32(0, true)).toBe(0x11e8_1234);
      expect(await sys.read(fd, b)).toBe(0);
      expect(await sys.pread(fd, b, 60)).toBe(4);
      expect(await sys.pread(fd, b, 64)).toBe(0);
      expect(await sys.pread(fd, b, 100)).toBe(0);
      await sys.close(fd);
      const afd = await sys.open(`${APEX_DIR}/config`, O.RDONLY);
      expect(await sys.read(afd, new Uint8Array(4096))).toBe(64);
      await sys.close(afd);
      expect(await code(sys.open(`${EDU_DIR}/config`, O.RDWR))).toBe('EACCES');
      expect(await code(sys.open(`${UPG}/new_id`, O.WRONLY))).toBe('EACCES');
      expect(await code(sys.open(`${EDU_DIR}/driver_override`, O.WRONLY))).toBe('EACCES');
      return 0;
    }, { uid: 1000 })).toBe(0);
  });

  it('maps resource0 for root (edu ID 0x010000ed at offset 0); resource files are 0600', async () => {
    expect(await session(async (sys) => {
      const fd = await sys.open(`${EDU_DIR}/resource0`, O.RDWR);
      const m = await sys.mmap(null, PAGE_SIZE, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0);
      expect(m.read32(REG.ID)).toBe(EDU_ID);
      // pci_mmap_fits: the whole 1 MiB BAR maps, one page more does not; nor does an offset past it.
      const all = await sys.mmap(null, 1 << 20, PROT.READ, MAP.SHARED, fd, 0);
      expect(all.read32(0)).toBe(EDU_ID);
      expect(await code(sys.mmap(null, (1 << 20) + PAGE_SIZE, PROT.READ, MAP.SHARED, fd, 0))).toBe('EINVAL');
      expect(await code(sys.mmap(null, PAGE_SIZE, PROT.READ, MAP.SHARED, fd, 1 << 20))).toBe('EINVAL');
      // A memory BAR's file has no read: sysfs_kf_bin_read gives -EIO, but 0 at or past the end (i_size).
      expect(await code(sys.read(fd, new Uint8Array(4)))).toBe('EIO');
      expect(await sys.pread(fd, new Uint8Array(4), 1 << 20)).toBe(0);
      await sys.munmap(all.addr, all.length);
      await sys.munmap(m.addr, m.length);
      await sys.close(fd);
      return 0;
    })).toBe(0);
    expect(await session(async (sys) => {
      expect(await code(sys.open(`${EDU_DIR}/resource0`, O.RDWR))).toBe('EACCES');
      expect(await code(sys.open(`${EDU_DIR}/resource0`, O.RDONLY))).toBe('EACCES');
      return 0;
    }, { uid: 1000 })).toBe(0);
  });
});

describe('PCI core: enable', () => {
  it('enable_store: kstrtobool, -EIO disabling a disabled device, -EBUSY while a driver is bound', async () => {
    expect(await session(async (sys) => {
      expect(await cat(sys, `${EDU_DIR}/enable`)).toBe('0\n');
      expect(await code(echo(sys, `${EDU_DIR}/enable`, '0'))).toBe('EIO');
      expect(await code(echo(sys, `${EDU_DIR}/enable`, 'maybe'))).toBe('EINVAL');
      expect(await echo(sys, `${EDU_DIR}/enable`, '1\n')).toBe(2);
      expect(await cat(sys, `${EDU_DIR}/enable`)).toBe('1\n');
      expect((await command(sys)) & CMD.MEMORY).toBe(CMD.MEMORY);
      expect(await echo(sys, `${EDU_DIR}/enable`, 'n')).toBe(1);
      expect(await cat(sys, `${EDU_DIR}/enable`)).toBe('0\n');
      expect(await echo(sys, `${UPG}/new_id`, '1234 11e8')).toBe(9);
      expect(await cat(sys, `${EDU_DIR}/enable`)).toBe('1\n');
      expect(await code(echo(sys, `${EDU_DIR}/enable`, '0'))).toBe('EBUSY');
      expect(await code(echo(sys, `${EDU_DIR}/enable`, '1'))).toBe('EBUSY');
      expect(await cat(sys, `${EDU_DIR}/enable`)).toBe('1\n');
      return 0;
    })).toBe(0);
    expect(await session(async (sys) => {
      // 0600: an unprivileged user cannot even open it.
      expect(await code(sys.open(`${EDU_DIR}/enable`, O.RDONLY))).toBe('EACCES');
      return 0;
    }, { uid: 1000 })).toBe(0);
  });
});

describe('PCI core: driver core files', () => {
  it('answers bad input with the errnos of bus.c and pci-driver.c', async () => {
    expect(await session(async (sys) => {
      // bind_store / unbind_store: bus_find_device_by_name misses → -ENODEV.
      expect(await code(echo(sys, `${UPG}/bind`, '0000:00:07.0'))).toBe('ENODEV');
      expect(await code(echo(sys, `${UPG}/unbind`, '0000:00:07.0'))).toBe('ENODEV');
      // A device the driver does not match (no id, no override): driver_match_device fails → -ENODEV.
      expect(await code(echo(sys, `${UPG}/bind`, EDU))).toBe('ENODEV');
      // unbind of a device not bound to this driver → -ENODEV.
      expect(await code(echo(sys, `${UPG}/unbind`, EDU))).toBe('ENODEV');
      // new_id_store: sscanf("%x %x ...") < 2 fields → -EINVAL.
      expect(await code(echo(sys, `${UPG}/new_id`, 'garbage'))).toBe('EINVAL');
      expect(await code(echo(sys, `${UPG}/new_id`, '1234'))).toBe('EINVAL');
      expect(await code(echo(sys, `${UPG}/new_id`, '1234,11e8'))).toBe('EINVAL');
      expect(await code(echo(sys, `${UPG}/remove_id`, 'zz'))).toBe('EINVAL');
      // remove_id_store: no such dynamic id → -ENODEV.
      expect(await code(echo(sys, `${UPG}/remove_id`, '1234 11e8'))).toBe('ENODEV');
      // drivers_probe of an unknown name → -ENODEV.
      expect(await code(echo(sys, '/sys/bus/pci/drivers_probe', 'nope'))).toBe('ENODEV');
      // Write-only attributes cannot be opened for reading (kernfs: no show → -EACCES, even for root).
      expect(await code(sys.open(`${UPG}/bind`, O.RDONLY))).toBe('EACCES');
      expect(await code(sys.open(`${EDU_DIR}/vendor`, O.WRONLY))).toBe('EACCES');
      // Nothing got bound on the way.
      expect(await code(sys.readlink(`${EDU_DIR}/driver`))).toBe('ENOENT');
      return 0;
    })).toBe(0);
  });

  it('binds through new_id, links driver both ways, refuses a second bind (EBUSY), unbinds and rebinds', async () => {
    expect(await session(async (sys) => {
      expect(await echo(sys, `${UPG}/new_id`, '1234 11e8\n')).toBe(10);
      expect(await sys.readlink(`${EDU_DIR}/driver`)).toBe('../../../bus/pci/drivers/uio_pci_generic');
      expect(await sys.readlink(`${UPG}/${EDU}`)).toBe(`../../../../devices/pci0000:00/${EDU}`);
      expect(await sys.readdir(UPG)).toEqual(expect.arrayContaining(['bind', 'unbind', 'new_id', 'remove_id', EDU]));
      // The same id again: pci_match_device finds it → -EEXIST.
      expect(await code(echo(sys, `${UPG}/new_id`, '1234 11e8'))).toBe('EEXIST');
      // __driver_probe_device: dev->driver set → -EBUSY.
      expect(await code(echo(sys, `${UPG}/bind`, EDU))).toBe('EBUSY');
      // Unbind (a trailing newline is fine: sysfs_streq).
      expect(await echo(sys, `${UPG}/unbind`, `${EDU}\n`)).toBe(EDU.length + 1);
      expect(await code(sys.readlink(`${EDU_DIR}/driver`))).toBe('ENOENT');
      expect(await sys.readdir(UPG)).not.toContain(EDU);
      expect(await code(sys.open('/dev/uio0', O.RDWR))).toBe('ENOENT');
      // The dynamic id is still there: bind works again, and so does drivers_probe after an unbind.
      expect(await echo(sys, `${UPG}/bind`, EDU)).toBe(EDU.length);
      expect(await sys.readlink(`${EDU_DIR}/driver`)).toBe('../../../bus/pci/drivers/uio_pci_generic');
      expect(await echo(sys, `${UPG}/unbind`, EDU)).toBe(EDU.length);
      expect(await echo(sys, '/sys/bus/pci/drivers_probe', EDU)).toBe(EDU.length);
      expect(await sys.readlink(`${EDU_DIR}/driver`)).toBe('../../../bus/pci/drivers/uio_pci_generic');
      // remove_id does not unbind; afterwards the id is unknown (ENODEV) and new_id takes it again.
      expect(await echo(sys, `${UPG}/remove_id`, '1234 11e8')).toBe(9);
      expect(await sys.readlink(`${EDU_DIR}/driver`)).toBe('../../../bus/pci/drivers/uio_pci_generic');
      expect(await code(echo(sys, `${UPG}/remove_id`, '1234 11e8'))).toBe('ENODEV');
      expect(await echo(sys, `${UPG}/unbind`, EDU)).toBe(EDU.length);
      expect(await code(echo(sys, `${UPG}/bind`, EDU))).toBe('ENODEV');
      return 0;
    })).toBe(0);
  });

  it('remove_id matches as Linux does: an omitted subvendor/subdevice is a wildcard, class under the given mask', async () => {
    // remove_id_store: (subvendor == PCI_ANY_ID || id->subvendor == subvendor) && ... && !((id->class ^ class) & class_mask).
    expect(await session(async (sys) => {
      expect(await echo(sys, `${UPG}/new_id`, '1234 11e8 1af4 1100 00ff00 ffff00')).toBeGreaterThan(0);
      expect(await sys.readlink(`${EDU_DIR}/driver`)).toBe('../../../bus/pci/drivers/uio_pci_generic');
      expect(await code(echo(sys, `${UPG}/remove_id`, '1234 11e9'))).toBe('ENODEV');
      expect(await code(echo(sys, `${UPG}/remove_id`, '1234 11e8 1af5'))).toBe('ENODEV');
      expect(await code(echo(sys, `${UPG}/remove_id`, '1234 11e8 1af4 1100 000100 ffff00'))).toBe('ENODEV');
      expect(await echo(sys, `${UPG}/remove_id`, '1234 11e8')).toBe(9);
      expect(await code(echo(sys, `${UPG}/remove_id`, '1234 11e8'))).toBe('ENODEV');
      return 0;
    })).toBe(0);
  });

  it('driver_override: binds only to the named driver, shows the name, clears with an empty write', async () => {
    expect(await session(async (sys) => {
      expect(await echo(sys, `${EDU_DIR}/driver_override`, 'vfio-pci\n')).toBe(9);
      expect(await cat(sys, `${EDU_DIR}/driver_override`)).toBe('vfio-pci\n');
      // An override naming another driver excludes this one, even with a matching dynamic id.
      expect(await echo(sys, `${UPG}/new_id`, '1234 11e8')).toBe(9);
      expect(await code(sys.readlink(`${EDU_DIR}/driver`))).toBe('ENOENT');
      expect(await code(echo(sys, `${UPG}/bind`, EDU))).toBe('ENODEV');
      expect(await echo(sys, `${UPG}/remove_id`, '1234 11e8')).toBe(9);
      // Naming this driver: it matches with no id at all (pci_device_id_any), through bind or drivers_probe.
      expect(await echo(sys, `${EDU_DIR}/driver_override`, 'uio_pci_generic')).toBe(15);
      expect(await echo(sys, `${UPG}/bind`, EDU)).toBe(EDU.length);
      expect(await sys.readlink(`${EDU_DIR}/driver`)).toBe('../../../bus/pci/drivers/uio_pci_generic');
      expect(await echo(sys, `${UPG}/unbind`, EDU)).toBe(EDU.length);
      expect(await echo(sys, '/sys/bus/pci/drivers_probe', EDU)).toBe(EDU.length);
      expect(await sys.readlink(`${EDU_DIR}/driver`)).toBe('../../../bus/pci/drivers/uio_pci_generic');
      // driver_set_override: the text up to the first newline; "\n" alone clears; a page minus one is too long.
      expect(await echo(sys, `${EDU_DIR}/driver_override`, 'abc\ndef')).toBe(7);
      expect(await cat(sys, `${EDU_DIR}/driver_override`)).toBe('abc\n');
      expect(await code(echo(sys, `${EDU_DIR}/driver_override`, 'x'.repeat(PAGE_SIZE - 1)))).toBe('EINVAL');
      expect(await cat(sys, `${EDU_DIR}/driver_override`)).toBe('abc\n');
      expect(await echo(sys, `${EDU_DIR}/driver_override`, '\n')).toBe(1);
      expect(await cat(sys, `${EDU_DIR}/driver_override`)).toBe('(null)\n');
      // Clearing the override leaves the device bound.
      expect(await sys.readlink(`${EDU_DIR}/driver`)).toBe('../../../bus/pci/drivers/uio_pci_generic');
      return 0;
    })).toBe(0);
  });
});

describe('uio_pci_generic on edu', () => {
  it('exposes BAR0 as map0 and /dev/uio0; mmap reads the edu ID', async () => {
    expect(await session(async (sys) => {
      expect(await echo(sys, `${UPG}/new_id`, '1234 11e8')).toBe(9);
      expect(await sys.readdir('/sys/class/uio')).toEqual(['uio0']);
      expect(await sys.readlink('/sys/class/uio/uio0')).toBe(`../../devices/pci0000:00/${EDU}/uio/uio0`);
      expect(await cat(sys, '/sys/class/uio/uio0/name')).toBe('uio_pci_generic\n');
      expect(await cat(sys, '/sys/class/uio/uio0/version')).toBe('0.01.0\n');
      expect(await sys.readdir('/sys/class/uio/uio0/maps')).toEqual(['map0']);
      expect(await cat(sys, '/sys/class/uio/uio0/maps/map0/addr')).toBe(`${hex64(0xc000_0000)}\n`);
      expect(await cat(sys, '/sys/class/uio/uio0/maps/map0/size')).toBe(`${hex64(1 << 20)}\n`);
      expect(await cat(sys, '/sys/class/uio/uio0/maps/map0/offset')).toBe('0x0\n');
      // The map's name is the resource's (r->name, the device name).
      expect(await cat(sys, '/sys/class/uio/uio0/maps/map0/name')).toBe(`${EDU}\n`);
      // device/config is the PCI config space.
      const cfg = await sys.open('/sys/class/uio/uio0/device/config', O.RDONLY);
      const b = new Uint8Array(4);
      expect(await sys.pread(cfg, b, 0)).toBe(4);
      expect(new DataView(b.buffer).getUint32(0, true)).toBe(0x11e8_1234);
      await sys.close(cfg);
      // pcim_enable_device turned on memory decode.
      expect((await command(sys)) & CMD.MEMORY).toBe(CMD.MEMORY);
      const fd = await sys.open('/dev/uio0', O.RDWR);
      const m = await sys.mmap(null, 1 << 20, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0);
      expect(m.read32(REG.ID)).toBe(EDU_ID);
      // Only map0 exists: map 1 is EINVAL.
      expect(await code(sys.mmap(null, PAGE_SIZE, PROT.READ, MAP.SHARED, fd, PAGE_SIZE))).toBe('EINVAL');
      await sys.munmap(m.addr, m.length);
      await sys.close(fd);
      return 0;
    })).toBe(0);
  });

  it('counts a factorial interrupt, masks INTx, unmasks through config byte 5, and clears bus mastering at close', async () => {
    expect(await session(async (sys, { kernel }) => {
      expect(await echo(sys, `${UPG}/new_id`, '1234 11e8')).toBe(9);
      const fd = await sys.open('/dev/uio0', O.RDWR);
      const cfg = await sys.open(`${EDU_DIR}/config`, O.RDWR);
      const m = await sys.mmap(null, PAGE_SIZE, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0);
      // uio_pci_generic has no irqcontrol: write() is ENOSYS (after the count check: 8 bytes is EINVAL).
      expect(await code(sys.write(fd, new Uint8Array(4)))).toBe('ENOSYS');
      expect(await code(sys.write(fd, new Uint8Array(8)))).toBe('EINVAL');
      expect(await code(sys.read(fd, new Uint8Array(8)))).toBe('EINVAL');
      // Let the user-space driver turn bus mastering on (as a DMA-capable driver would) through config.
      const cmd0 = await command(sys);
      expect(cmd0 & CMD.INTX_DISABLE).toBe(0);
      expect(await sys.pwrite(cfg, new Uint8Array([(cmd0 | CMD.MASTER) & 0xff]), 4)).toBe(1);
      expect((await command(sys)) & CMD.MASTER).toBe(CMD.MASTER);

      const factorial = async (n: number, want: number, expectCount: number): Promise<void> => {
        m.write32(REG.STATUS, STATUS_IRQ_FACT);
        m.write32(REG.FACTORIAL, n);
        const b = new Uint8Array(4);
        expect(await sys.read(fd, b)).toBe(4);
        expect(s32(b)).toBe(expectCount);
        expect(m.read32(REG.FACTORIAL)).toBe(want);
        // pci_check_and_mask_intx set INTx Disable; the device still has its interrupt pending.
        const cmd = await command(sys);
        expect(cmd & CMD.INTX_DISABLE).toBe(CMD.INTX_DISABLE);
        expect(m.read32(REG.IRQ_STATUS) & 1).toBe(1);
        // Acknowledge in the device, then re-enable INTx as the uio howto does: byte 5 &= ~0x4.
        m.write32(REG.IRQ_ACK, m.read32(REG.IRQ_STATUS));
        const hi = new Uint8Array(1);
        expect(await sys.pread(cfg, hi, 5)).toBe(1);
        expect(hi[0]! & 0x4).toBe(0x4);
        expect(await sys.pwrite(cfg, new Uint8Array([hi[0]! & ~0x4]), 5)).toBe(1);
        expect((await command(sys)) & CMD.INTX_DISABLE).toBe(0);
      };
      await factorial(5, 120, 1);
      expect(await cat(sys, '/sys/class/uio/uio0/event')).toBe('1\n');
      await factorial(6, 720, 2);
      expect(await cat(sys, '/sys/class/uio/uio0/event')).toBe('2\n');
      // While INTx Disable is set, a device interrupt only shows in Status bit 3; no event until unmasked.
      const b5 = new Uint8Array(1);
      await sys.pread(cfg, b5, 5);
      await sys.pwrite(cfg, new Uint8Array([b5[0]! | 0x4]), 5);
      m.write32(REG.STATUS, STATUS_IRQ_FACT);
      m.write32(REG.FACTORIAL, 4);
      await sys.nanosleep(100_000);
      expect(m.read32(REG.FACTORIAL)).toBe(24);
      const st = new Uint8Array(1);
      await sys.pread(cfg, st, 6);
      expect(st[0]! & 0x08).toBe(0x08);
      const pfd = [{ fd, events: POLL.IN }];
      expect(await sys.poll(pfd, 0)).toBe(0);
      await sys.pwrite(cfg, new Uint8Array([b5[0]! & ~0x4]), 5);
      const ev = new Uint8Array(4);
      expect(await sys.read(fd, ev)).toBe(4);
      expect(s32(ev)).toBe(3);
      m.write32(REG.IRQ_ACK, m.read32(REG.IRQ_STATUS));
      await sys.pread(cfg, st, 6);
      expect(st[0]! & 0x08).toBe(0);
      // Nothing unhandled reached the line (the handler masked each interrupt before the refire).
      const irq = Number((await cat(sys, `${EDU_DIR}/irq`)).trim());
      expect(kernel.irq.desc(irq)?.nobodyCared).toBe(false);

      // release(): pci_clear_master at the last close of the file (the mapping holds it too).
      await sys.close(fd);
      expect((await command(sys)) & CMD.MASTER).toBe(CMD.MASTER);
      await sys.munmap(m.addr, m.length);
      expect((await command(sys)) & CMD.MASTER).toBe(0);
      // Memory decode stays: the device is still bound and enabled.
      expect((await command(sys)) & CMD.MEMORY).toBe(CMD.MEMORY);
      await sys.close(cfg);
      return 0;
    })).toBe(0);
  });

  it('clears bus mastering and unregisters /dev/uio0 when unbound', async () => {
    expect(await session(async (sys) => {
      expect(await echo(sys, `${UPG}/new_id`, '1234 11e8')).toBe(9);
      const cfg = await sys.open(`${EDU_DIR}/config`, O.RDWR);
      const cmd0 = await command(sys);
      await sys.pwrite(cfg, new Uint8Array([(cmd0 | CMD.MASTER) & 0xff]), 4);
      const fd = await sys.open('/dev/uio0', O.RDWR);
      expect(await echo(sys, `${UPG}/unbind`, EDU)).toBe(EDU.length);
      // The open file now reads EIO (device unregistered); the node and class link are gone.
      expect(await code(sys.read(fd, new Uint8Array(4)))).toBe('EIO');
      expect(await sys.readdir('/sys/class/uio')).toEqual([]);
      // pcim: the managed enable is undone; pci_disable_device clears bus mastering.
      expect((await command(sys)) & CMD.MASTER).toBe(0);
      await sys.close(fd);
      await sys.close(cfg);
      return 0;
    })).toBe(0);
  });
});

describe('uio_pci_generic on the Apex', () => {
  it('binds through new_id 1ac1 089a with the INTx irq and no maps (its BARs are 64-bit prefetchable)', async () => {
    // uio_pci_generic.c probe: `if (pdev->irq && !pci_intx_mask_supported(pdev)) return -ENODEV;` (the Apex
    // can mask INTx, so the probe goes on); the map loop takes only `r->flags == (IORESOURCE_SIZEALIGN |
    // IORESOURCE_MEM)`, which a 64-bit prefetchable BAR (0x14220c) is not, so the device registers with no
    // maps at all (uio_dev_add_attributes creates maps/ only for a map of nonzero size).
    expect(await session(async (sys) => {
      expect(await echo(sys, `${UPG}/new_id`, '1ac1 089a')).toBe(9);
      expect(await sys.readlink(`${APEX_DIR}/driver`)).toBe('../../../bus/pci/drivers/uio_pci_generic');
      expect(await code(sys.readlink(`${EDU_DIR}/driver`))).toBe('ENOENT');
      expect(await sys.readdir('/sys/class/uio')).toEqual(['uio0']);
      expect(await sys.readlink('/sys/class/uio/uio0')).toBe(`../../devices/pci0000:00/${APEX_BDF}/uio/uio0`);
      expect(await sys.readdir('/sys/class/uio/uio0')).not.toContain('maps');
      expect(await code(sys.readdir('/sys/class/uio/uio0/maps'))).toBe('ENOENT');
      const fd = await sys.open('/dev/uio0', O.RDWR | O.NONBLOCK);
      expect(await code(sys.mmap(null, PAGE_SIZE, PROT.READ, MAP.SHARED, fd, 0))).toBe('EINVAL');
      // It has an irq (INTA), so read waits for an event (EAGAIN non-blocking) and write is ENOSYS, not EIO.
      expect(await code(sys.read(fd, new Uint8Array(4)))).toBe('EAGAIN');
      expect(await code(sys.write(fd, new Uint8Array(4)))).toBe('ENOSYS');
      await sys.close(fd);
      // Binding the edu too gives uio1 with its map.
      expect(await echo(sys, `${UPG}/new_id`, '1234 11e8')).toBe(9);
      expect(await sys.readdir('/sys/class/uio')).toEqual(['uio0', 'uio1']);
      expect(await sys.readdir('/sys/class/uio/uio1/maps')).toEqual(['map0']);
      return 0;
    })).toBe(0);
  });
});

describe('PCI core: MSI-X vectors (pci_alloc_irq_vectors)', () => {
  const off = (n: ApexRegName): number => APEX_OFFSET[APEX[n]] as number;

  it('allocates 13 MSI-X vectors on the Apex and delivers SC_HOST_0 to the handler of its vector', async () => {
    await withMachine(config, ({ kernel, machine }) => {
      const dev = kernel.pci.device(APEX_BDF);
      if (dev === undefined) throw new Error('no apex');
      expect(dev.msixVectorCount).toBe(128);
      expect(dev.enable()).toBe(0);
      dev.setMaster();
      expect(dev.allocIrqVectors(13, 13, PCI_IRQ.MSIX)).toBe(13);
      expect(dev.msixEnabled).toBe(true);
      // Vectors are already on: a second allocation is refused.
      expect(dev.allocIrqVectors(1, 1, PCI_IRQ.MSIX)).toBe(E.EINVAL);
      const irqs = Array.from({ length: 13 }, (_, i) => dev.irqVector(i));
      expect(new Set(irqs).size).toBe(13);
      for (const irq of irqs) expect(irq).toBeGreaterThan(0);
      expect(dev.irqVector(13)).toBeLessThan(0);
      // MSI-X on: INTx is disabled in Command, MSI-X Enable set, Function Mask clear.
      expect(dev.cfgRead(0x04, 2) & CMD.INTX_DISABLE).toBe(CMD.INTX_DISABLE);
      expect(dev.cfgRead(dev.msixCap + 2, 2) & 0xc000).toBe(0x8000);
      const got: number[] = [];
      for (const irq of irqs) expect(kernel.irq.request(irq, (n) => (got.push(n), IRQ_HANDLED), 0, 'apex', dev)).toBe(0);
      const bar2 = dev.resources[2]!.start;
      // SC_HOST_0 raises through MSI-X entry 4 (its INTVECCTL field) when enabled.
      machine.mmio.write64(bar2 + off('SC_HOST_INTVECCTL'), BigInt(ApexIrq.SC_HOST_0));
      machine.mmio.write64(bar2 + off('SC_HOST_INT_CONTROL'), 1n);
      machine.pci.apex(APEX_BDF.slice(5)).irq.raise(ApexIrq.SC_HOST_0);
      expect(got).toEqual([irqs[ApexIrq.SC_HOST_0]]);
      for (const irq of irqs) kernel.irq.free(irq, dev);
      dev.freeIrqVectors();
      expect(dev.msixEnabled).toBe(false);
      expect(dev.cfgRead(dev.msixCap + 2, 2) & 0x8000).toBe(0);
      // pci_msix_shutdown: entries masked (vector control bit 0), INTx enabled again (pci_intx_for_msi).
      const table = (dev.resources[(dev.cfgRead(dev.msixCap + 4, 4) & 7)]!.start) + (dev.cfgRead(dev.msixCap + 4, 4) & ~7);
      for (let i = 0; i < 13; i++) expect(machine.mmio.read32(table + 16 * i + 12) & 1).toBe(1);
      expect(dev.cfgRead(0x04, 2) & CMD.INTX_DISABLE).toBe(0);
      // Freed: they can be allocated again; more than the table holds is ENOSPC.
      // __pci_enable_msix_range: max < min is -ERANGE; fewer entries than min is -ENOSPC; already on -EINVAL.
      expect(dev.allocIrqVectors(13, 12, PCI_IRQ.MSIX)).toBe(E.ERANGE);
      expect(dev.allocIrqVectors(129, 200, PCI_IRQ.MSIX)).toBe(E.ENOSPC);
      expect(dev.allocIrqVectors(1, 13, PCI_IRQ.MSIX)).toBe(13);
      dev.freeIrqVectors();
    });
  });
});
