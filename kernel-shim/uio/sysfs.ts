import { relativeLink } from '../fs/sysfs.ts';

export { relativeLink };
import { E } from '../errno.ts';
import { sysfsAttr } from '../fs/sysfs.ts';
import { dirInode, symlinkInode, type DirInode, type FileInode } from '../fs/inode.ts';
import type { UioDevice } from './core.ts';
import { MAX_UIO_MAPS, MAX_UIO_PORT_REGIONS, UIO_MAJOR, type UioInfo, type UioMem, type UioPort } from './info.ts';

/** Linux `%pa` of a 64-bit `phys_addr_t` / `resource_size_t`: `0x` and 16 hex digits. */
function pa(v: number | bigint): string {
  return '0x' + BigInt.asUintN(64, BigInt(v)).toString(16).padStart(16, '0');
}

/** Linux `0x%lx` / `0x%llx`. */
function hex(v: number | bigint): string {
  return '0x' + BigInt.asUintN(64, BigInt(v)).toString(16);
}


/** Port type names (`port_porttype_show`). */
const PORT_TYPES = ['none', 'x86', 'gpio', 'other'] as const;

/**
 * A 0444 attribute of `idev`. Once the device is unregistered its attributes are gone: a file opened
 * before reads `ENODEV`, as kernfs answers for a removed node (uio.c's own `-EINVAL` for a missing info
 * applies only inside unregister, which is atomic here).
 */
function attr(idev: UioDevice, show: (info: UioInfo) => string): FileInode {
  return sysfsAttr(0o444, { show: () => (idev.info === null ? E.ENODEV : show(idev.info)) });
}

function mapDir(idev: UioDevice, mem: UioMem): DirInode {
  const d = dirInode(0o755);
  d.entries.set('name', attr(idev, () => `${mem.name ?? ''}\n`));
  d.entries.set('addr', attr(idev, () => `${pa(mem.addr)}\n`));
  d.entries.set('size', attr(idev, () => `${pa(mem.size)}\n`));
  d.entries.set('offset', attr(idev, () => `${hex(mem.offs ?? 0)}\n`));
  return d;
}

function portDir(idev: UioDevice, port: UioPort): DirInode {
  const d = dirInode(0o755);
  d.entries.set('name', attr(idev, () => `${port.name ?? ''}\n`));
  d.entries.set('start', attr(idev, () => `${hex(port.start)}\n`));
  d.entries.set('size', attr(idev, () => `${hex(port.size)}\n`));
  d.entries.set('porttype', attr(idev, () => `port_${PORT_TYPES[port.porttype] ?? 'none'}\n`));
  return d;
}

/**
 * The device's sysfs directory (Linux `uio_dev_add_attributes` plus what the driver core adds): `name`,
 * `version`, `event` (`%u`), `dev`, `uevent`, `device` and `subsystem` links, `maps/mapN/` for each map up
 * to the first of size 0, and `portio/portN/` likewise.
 */
export function addUioAttributes(idev: UioDevice): void {
  const r = idev.kernel.vfs.lookup(idev.sysfsPath, undefined);
  if (typeof r === 'number' || r.inode.kind !== 'dir') return;
  const dir = r.inode.entries;
  dir.set('name', attr(idev, (i) => `${i.name}\n`));
  dir.set('version', attr(idev, (i) => `${i.version}\n`));
  dir.set('event', attr(idev, () => `${idev.event >>> 0}\n`));
  dir.set('dev', attr(idev, () => `${UIO_MAJOR}:${idev.minor}\n`));
  dir.set('uevent', sysfsAttr(0o644, { show: () => idev.info === null ? E.ENODEV : `MAJOR=${UIO_MAJOR}\nMINOR=${idev.minor}\nDEVNAME=${idev.name}\n` }));
  dir.set('device', symlinkInode(relativeLink(idev.sysfsPath, idev.parent.sysfsPath)));
  dir.set('subsystem', symlinkInode(relativeLink(idev.sysfsPath, '/sys/class/uio')));
  dir.set('power', dirInode(0o755));
  const info = idev.info as UioInfo;
  const mem = info.mem ?? [];
  for (let i = 0; i < Math.min(mem.length, MAX_UIO_MAPS); i++) {
    const m = mem[i] as UioMem;
    if (m.size === 0) break;
    let maps = dir.get('maps');
    if (maps === undefined) dir.set('maps', (maps = dirInode(0o755)));
    if (maps.kind === 'dir') maps.entries.set(`map${i}`, mapDir(idev, m));
  }
  const ports = info.port ?? [];
  for (let i = 0; i < Math.min(ports.length, MAX_UIO_PORT_REGIONS); i++) {
    const p = ports[i] as UioPort;
    if (p.size === 0) break;
    let portio = dir.get('portio');
    if (portio === undefined) dir.set('portio', (portio = dirInode(0o755)));
    if (portio.kind === 'dir') portio.entries.set(`port${i}`, portDir(idev, p));
  }
}
