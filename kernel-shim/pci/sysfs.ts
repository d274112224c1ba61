import { E } from '../errno.ts';
import { COST } from '../costs.ts';
import type { Kernel } from '../kernel.ts';
import type { Current } from '../task/current.ts';
import { dirInode } from '../fs/inode.ts';
import { relativeLink, sysfsAttr, sysfsBinAttr } from '../fs/sysfs.ts';
import { PAGE_SIZE } from '../uapi/linux.ts';
import type { Vma } from '../mm/vma.ts';
import { PCI_BRIDGE_RESOURCES, type PciDev } from './dev.ts';
import { pciMatchDevice, type PciDeviceId, type PciDriverEntry } from './driver.ts';
import { IORESOURCE, PCI, PCI_ANY_ID } from './regs.ts';

const encoder = new TextEncoder();
/** Bytes a store consumed: the whole write, as sysfs stores return `count`. */
const consumed = (text: string): number => encoder.encode(text).length;
const hex = (n: number, w: number): string => n.toString(16).padStart(w, '0');
/** `0x%016llx`. */
const hex64 = (n: number): string => `0x${BigInt(n).toString(16).padStart(16, '0')}`;

/** `sysfs_streq`-style: the text without one trailing newline. */
function chomp(text: string): string {
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

/**
 * `sscanf(buf, "%x %x ...")`: leading hex fields separated by white space, as many as parse (glibc stops at
 * the first field that does not start with a hex digit; an optional `0x` prefix is taken).
 */
function scanHex(text: string, max: number): number[] {
  const out: number[] = [];
  let rest = text;
  while (out.length < max) {
    const m = /^\s*(?:0[xX])?([0-9a-fA-F]+)/.exec(rest);
    if (m === null) break;
    out.push(Number.parseInt((m[1] as string).slice(-8), 16) >>> 0);
    rest = rest.slice(m[0].length);
  }
  return out;
}

/** `kstrtoul(buf, 0, &val)`: a whole unsigned number in C base-0 notation with an optional trailing newline. */
function kstrtoul(text: string): number | undefined {
  const t = chomp(text);
  if (/^0[xX][0-9a-fA-F]+$/.test(t)) return Number.parseInt(t.slice(2), 16);
  if (/^0[0-7]*$/.test(t)) return Number.parseInt(t, 8);
  if (/^[1-9][0-9]*$/.test(t)) return Number.parseInt(t, 10);
  return undefined;
}

/** `kstrtobool`: the first character decides (y/Y/1/t/T on, n/N/0/f/F off, "on"/"off"). */
function kstrtobool(text: string): boolean | undefined {
  const c = text[0];
  if (c === 'y' || c === 'Y' || c === '1' || c === 't' || c === 'T') return true;
  if (c === 'n' || c === 'N' || c === '0' || c === 'f' || c === 'F') return false;
  if (c === 'o' || c === 'O') {
    const d = text[1];
    if (d === 'n' || d === 'N') return true;
    if (d === 'f' || d === 'F') return false;
  }
  return undefined;
}

/** Creates `/sys/bus/pci/{devices,drivers,drivers_probe}` and the root bus directory. */
export function addPciBusSysfs(kernel: Kernel): void {
  const vfs = kernel.vfs;
  vfs.mkdirp('/sys/bus/pci/devices');
  vfs.mkdirp('/sys/bus/pci/drivers');
  vfs.mkdirp('/sys/devices/pci0000:00');
  vfs.add('/sys/bus/pci/drivers_probe', sysfsAttr(0o200, {
    store: async (text) => {
      const dev = kernel.pci.device(chomp(text));
      if (dev === undefined) return E.ENODEV;
      await kernel.pci.deviceAttach(dev);
      return consumed(text);
    },
  }));
  vfs.add('/sys/bus/pci/drivers_autoprobe', sysfsAttr(0o644, { show: () => '1\n' }));
}

/** The `resource` file: one `start end flags` line per resource slot (`0x%016llx` each). */
function resourceText(dev: PciDev): string {
  let s = '';
  for (let i = 0; i < PCI_BRIDGE_RESOURCES; i++) {
    const r = dev.resources[i] ?? { start: 0, end: 0, flags: 0 };
    s += r.flags === 0 ? `${hex64(0)} ${hex64(0)} ${hex64(0)}\n` : `${hex64(r.start)} ${hex64(r.end)} ${hex64(r.flags)}\n`;
  }
  return s;
}

/** Linux `pci_read_config`: root (`CAP_SYS_ADMIN`) reads it all, anyone else the 64-byte header. */
function configRead(dev: PciDev, cur: Current, dst: Uint8Array, pos: number): number {
  const size = cur.cred.capable('SYS_ADMIN') ? dev.cfgSize : PCI.STD_HEADER_SIZEOF;
  if (pos > size) return 0;
  const n = Math.min(dst.length, size - pos);
  for (let i = 0; i < n; i++) dst[i] = dev.cfgRead(pos + i, 1);
  cur.thread.consume(COST.configAccess * Math.ceil(n / 4));
  return n;
}

/** Linux `pci_write_config`: clipped to the configuration space, in dword / word / byte cycles by alignment. */
function configWrite(dev: PciDev, cur: Current, src: Uint8Array, pos: number): number {
  let n = Math.min(src.length, dev.cfgSize - pos);
  if (n <= 0) return 0;
  let off = pos;
  let i = 0;
  const total = n;
  while (n > 0) {
    if ((off & 3) === 0 && n >= 4) {
      dev.cfgWrite(off, 4, ((src[i] as number) | ((src[i + 1] as number) << 8) | ((src[i + 2] as number) << 16) | ((src[i + 3] as number) << 24)) >>> 0);
      off += 4; i += 4; n -= 4;
    } else if ((off & 1) === 0 && n >= 2) {
      dev.cfgWrite(off, 2, (src[i] as number) | ((src[i + 1] as number) << 8));
      off += 2; i += 2; n -= 2;
    } else {
      dev.cfgWrite(off, 1, src[i] as number);
      off += 1; i += 1; n -= 1;
    }
    cur.thread.consume(COST.configAccess);
  }
  return total;
}

/** Linux `pci_mmap_resource`: the pages asked for must fit the BAR (`pci_mmap_fits`); only memory BARs map on x86. */
function mmapResource(dev: PciDev, bar: number, vma: Vma): number {
  const r = dev.resources[bar];
  if (r === undefined || r.flags === 0) return E.ENODEV;
  const pages = (vma.end - vma.start) / PAGE_SIZE;
  const size = Math.floor((dev.resourceLen(bar) - 1) / PAGE_SIZE) + 1;
  if (!(vma.pgoff < size && size - vma.pgoff >= pages)) return E.EINVAL;
  if ((r.flags & IORESOURCE.MEM) === 0) return E.EINVAL;
  vma.backing = { kind: 'io', phys: r.start + vma.pgoff * PAGE_SIZE };
  return 0;
}

/** Publishes `dev` in sysfs: its directory with Linux's attributes, and `/sys/bus/pci/devices/<bdf>`. */
export function addDeviceSysfs(kernel: Kernel, dev: PciDev): void {
  const vfs = kernel.vfs;
  const dir = dev.sysfsPath;
  vfs.mkdirp(dir);
  const ro = (name: string, show: () => string): void => void vfs.add(`${dir}/${name}`, sysfsAttr(0o444, { show }));
  ro('vendor', () => `0x${hex(dev.vendor, 4)}\n`);
  ro('device', () => `0x${hex(dev.device, 4)}\n`);
  ro('subsystem_vendor', () => `0x${hex(dev.subsystemVendor, 4)}\n`);
  ro('subsystem_device', () => `0x${hex(dev.subsystemDevice, 4)}\n`);
  ro('class', () => `0x${hex(dev.classCode, 6)}\n`);
  ro('revision', () => `0x${hex(dev.revision, 2)}\n`);
  ro('irq', () => `${dev.irq}\n`);
  ro('resource', () => resourceText(dev));
  ro('modalias', () => `pci:v${hex(dev.vendor, 8).toUpperCase()}d${hex(dev.device, 8).toUpperCase()}sv${hex(dev.subsystemVendor, 8).toUpperCase()}sd${hex(dev.subsystemDevice, 8).toUpperCase()}bc${hex(dev.classCode >> 16, 2).toUpperCase()}sc${hex((dev.classCode >> 8) & 0xff, 2).toUpperCase()}i${hex(dev.classCode & 0xff, 2).toUpperCase()}\n`);
  vfs.add(`${dir}/enable`, sysfsAttr(0o600, {
    show: () => `${dev.enableCnt}\n`,
    store: (text, cur) => {
      if (!cur.cred.capable('SYS_ADMIN')) return E.EPERM;
      const on = kstrtobool(text);
      if (on === undefined) return E.EINVAL;
      // enable_store: a device with a driver belongs to it.
      if (dev.driver !== undefined) return E.EBUSY;
      if (on) {
        const r = dev.enable();
        if (r < 0) return r;
      } else if (dev.enableCnt > 0) dev.disable();
      else return E.EIO;
      return consumed(text);
    },
  }));
  vfs.add(`${dir}/driver_override`, sysfsAttr(0o644, {
    show: () => `${dev.driverOverride ?? '(null)'}\n`,
    store: (text) => {
      // driver_set_override (drivers/base/driver.c): at most a page minus one; the string (up to a NUL)
      // is cut at its first newline; empty, or a newline first, clears.
      const n = consumed(text);
      if (n >= PAGE_SIZE - 1) return E.EINVAL;
      const s = text.split('\0', 1)[0] as string;
      const v = s.split('\n', 1)[0] as string;
      dev.driverOverride = v === '' ? undefined : v;
      return n;
    },
  }));
  vfs.add(`${dir}/config`, sysfsBinAttr(0o644, {
    size: dev.cfgSize,
    read: (cur, dst, pos) => configRead(dev, cur, dst, pos),
    write: (cur, src, pos) => configWrite(dev, cur, src, pos),
  }));
  for (let i = 0; i < 6; i++) {
    const r = dev.resources[i];
    if (r === undefined || r.flags === 0) continue;
    const len = dev.resourceLen(i);
    const mem = (r.flags & IORESOURCE.MEM) !== 0;
    vfs.add(`${dir}/resource${i}`, sysfsBinAttr(0o600, {
      size: len,
      ...(mem ? { mmap: (_cur: Current, vma: Vma) => mmapResource(dev, i, vma) } : {}),
    }));
    if (mem && (r.flags & IORESOURCE.PREFETCH) !== 0) {
      vfs.add(`${dir}/resource${i}_wc`, sysfsBinAttr(0o600, { size: len, mmap: (_cur: Current, vma: Vma) => mmapResource(dev, i, vma) }));
    }
  }
  if (dev.resetMethods.length > 0) {
    vfs.add(`${dir}/reset`, sysfsAttr(0o200, {
      store: async (text, cur) => {
        const v = kstrtoul(text);
        if (v === undefined || v !== 1) return E.EINVAL;
        const r = await dev.reset((ns) => (async () => { await cur.thread.delay(ns); })());
        return r < 0 ? r : consumed(text);
      },
    }));
    ro('reset_method', () => `${dev.resetMethods.join(' ')}\n`);
  }
  vfs.symlink(`${dir}/subsystem`, relativeLink(dir, '/sys/bus/pci'));
  vfs.symlink(`/sys/bus/pci/devices/${dev.name}`, relativeLink('/sys/bus/pci/devices', dir));
}

/** `driver` link in the device, `<bdf>` link in the driver's directory. */
export function linkDriver(kernel: Kernel, dev: PciDev, entry: PciDriverEntry): void {
  const drvDir = `/sys/bus/pci/drivers/${entry.driver.name}`;
  kernel.vfs.symlink(`${dev.sysfsPath}/driver`, relativeLink(dev.sysfsPath, drvDir));
  kernel.vfs.symlink(`${drvDir}/${dev.name}`, relativeLink(drvDir, dev.sysfsPath));
}

/** Removes the links {@link linkDriver} made. */
export function unlinkDriver(kernel: Kernel, dev: PciDev, entry: PciDriverEntry): void {
  const drvDir = `/sys/bus/pci/drivers/${entry.driver.name}`;
  if (kernel.vfs.exists(`${dev.sysfsPath}/driver`)) kernel.vfs.remove(`${dev.sysfsPath}/driver`);
  if (kernel.vfs.exists(`${drvDir}/${dev.name}`)) kernel.vfs.remove(`${drvDir}/${dev.name}`);
}

/** `/sys/bus/pci/drivers/<name>/{bind,unbind,new_id,remove_id}` as `drivers/base/bus.c` and `pci-driver.c` handle them. */
export function addDriverSysfs(kernel: Kernel, entry: PciDriverEntry): void {
  const vfs = kernel.vfs;
  const dir = `/sys/bus/pci/drivers/${entry.driver.name}`;
  vfs.add(dir, dirInode(0o755));
  vfs.add(`${dir}/bind`, sysfsAttr(0o200, {
    // bind_store: the device by exact name, it must match, then probe: -EBUSY if bound, else the probe's error.
    store: async (text) => {
      const dev = kernel.pci.device(chomp(text));
      if (dev === undefined) return E.ENODEV;
      const id = pciMatchDevice(entry, dev);
      if (id === undefined) return E.ENODEV;
      const r = await kernel.pci.probe(entry, dev, id);
      return r < 0 ? r : consumed(text);
    },
  }));
  vfs.add(`${dir}/unbind`, sysfsAttr(0o200, {
    store: async (text) => {
      const dev = kernel.pci.device(chomp(text));
      if (dev === undefined || dev.driver !== entry.driver) return E.ENODEV;
      await kernel.pci.release(dev);
      return consumed(text);
    },
  }));
  vfs.add(`${dir}/new_id`, sysfsAttr(0o200, {
    store: async (text) => {
      const f = scanHex(text, 7);
      if (f.length < 2) return E.EINVAL;
      const id: PciDeviceId = {
        vendor: f[0] as number, device: f[1] as number, subvendor: f[2] ?? PCI_ANY_ID, subdevice: f[3] ?? PCI_ANY_ID,
        class: f[4] ?? 0, classMask: f[5] ?? 0, driverData: f[6] ?? 0,
      };
      if (f.length !== 7) {
        const fake = {
          vendor: id.vendor, device: id.device, subsystemVendor: id.subvendor ?? PCI_ANY_ID,
          subsystemDevice: id.subdevice ?? PCI_ANY_ID, classCode: id.class ?? 0,
        };
        if (pciMatchDevice(entry, fake) !== undefined) return E.EEXIST;
      }
      const table = entry.driver.idTable;
      if (table !== undefined && !table.some((t) => (t.driverData ?? 0) === id.driverData)) return E.EINVAL;
      entry.dynids.push(id);
      await kernel.pci.driverAttach(entry);
      return consumed(text);
    },
  }));
  vfs.add(`${dir}/remove_id`, sysfsAttr(0o200, {
    store: (text) => {
      const f = scanHex(text, 6);
      if (f.length < 2) return E.EINVAL;
      // remove_id_store: vendor and device exact, an omitted (or ffffffff) subvendor / subdevice matches any,
      // the class is compared under the mask given (default 0: any).
      const [vendor, device] = f as [number, number];
      const subvendor = f[2] ?? PCI_ANY_ID;
      const subdevice = f[3] ?? PCI_ANY_ID;
      const cls = f[4] ?? 0;
      const classMask = f[5] ?? 0;
      const i = entry.dynids.findIndex((d) => d.vendor === vendor && d.device === device
        && (subvendor === PCI_ANY_ID || (d.subvendor ?? PCI_ANY_ID) === subvendor)
        && (subdevice === PCI_ANY_ID || (d.subdevice ?? PCI_ANY_ID) === subdevice)
        && ((((d.class ?? 0) ^ cls) & classMask) >>> 0) === 0);
      if (i < 0) return E.ENODEV;
      entry.dynids.splice(i, 1);
      return consumed(text);
    },
  }));
}
