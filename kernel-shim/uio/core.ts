import { invariant } from '../../sim/index.ts';
import type { Device } from '../base/device.ts';
import { E } from '../errno.ts';
import { fileInode } from '../fs/inode.ts';
import { IRQ_HANDLED, IRQ_NONE, type IrqHandler } from '../irq.ts';
import type { Kernel } from '../kernel.ts';
import { WaitHead } from '../wait.ts';
import { uioFileOperations } from './fops.ts';
import { MAX_UIO_MAPS, MAX_UIO_PORT_REGIONS, UIO_IRQ_CUSTOM, UIO_IRQ_NONE, UIO_MAJOR, type UioInfo } from './info.ts';
import { addUioAttributes, relativeLink } from './sysfs.ts';

/**
 * The generic UIO core (Linux `drivers/uio/uio.c`): a driver registers a {@link UioInfo} under a parent
 * device and gets `/dev/uioN` (read / write / poll / mmap as Linux's `uio_fops`) and
 * `/sys/class/uio/uioN` with its attributes and maps.
 */

/** Minor numbers Linux hands out (`UIO_MAX_DEVICES`, `1 << MINORBITS`). */
export const UIO_MAX_DEVICES = 1 << 20;

/** One registered UIO device (Linux `struct uio_device`). */
export class UioDevice implements Device {
  readonly kernel: Kernel;
  /** `uioN`. */
  readonly name: string;
  readonly minor: number;
  /** `/sys/devices/.../<parent>/uio/uioN`. */
  readonly sysfsPath: string;
  readonly parent: Device;
  /** `/dev/uioN`. */
  readonly devPath: string;
  /** The driver's info; `null` once unregistered (open files then see `EIO` / `EINVAL`). */
  info: UioInfo | null;
  /** The cumulative event count (Linux `atomic_t event`, an s32 that wraps). */
  event = 0;
  /** Readers and pollers (Linux `idev->wait`). */
  readonly wait: WaitHead;
  /** Whether the core requested `info.irq` (freed at unregister). */
  irqRequested = false;

  constructor(kernel: Kernel, parent: Device, minor: number, info: UioInfo) {
    this.kernel = kernel;
    this.parent = parent;
    this.minor = minor;
    this.name = `uio${minor}`;
    this.sysfsPath = `${parent.sysfsPath}/uio/${this.name}`;
    this.devPath = `/dev/${this.name}`;
    this.info = info;
    this.wait = new WaitHead(this.name);
  }
}

/** The UIO class of one kernel: devices by minor. */
interface UioClass {
  readonly devices: Map<number, UioDevice>;
}

const classes = new WeakMap<Kernel, UioClass>();
const byInfo = new WeakMap<UioInfo, UioDevice>();

/**
 * Registers the UIO class with `kernel` (Linux `uio_init`): `/sys/class/uio`. Idempotent; the first
 * {@link uioRegisterDevice} calls it.
 */
export function uioInit(kernel: Kernel): void {
  if (classes.has(kernel)) return;
  classes.set(kernel, { devices: new Map() });
  kernel.vfs.mkdirp('/sys/class/uio');
}

/** The UIO device `info` is registered as, if it is (Linux `info->uio_dev`). */
export function uioDeviceOf(info: UioInfo): UioDevice | undefined {
  return byInfo.get(info);
}

/** The live UIO devices of `kernel`, by minor. */
export function uioDevices(kernel: Kernel): readonly UioDevice[] {
  const c = classes.get(kernel);
  return c === undefined ? [] : [...c.devices.values()].sort((a, b) => a.minor - b.minor);
}

/**
 * Linux `uio_register_device(parent, info)`: takes the lowest free minor, creates `/dev/uioN` (0600
 * root), the device's sysfs directory under `parent` with `name`, `version`, `event`, `dev`, `maps/` and
 * `portio/`, the class link `/sys/class/uio/uioN`, then requests `info.irq` (unless it is
 * {@link UIO_IRQ_NONE} or {@link UIO_IRQ_CUSTOM}) with `info.irqFlags`. Returns the device, or `-EINVAL`
 * (no name or version, a real irq without a handler), `-ENOSPC` (no minor left), or `request_irq`'s error
 * (everything undone).
 */
export function uioRegisterDevice(kernel: Kernel, parent: Device, info: UioInfo): UioDevice | number {
  uioInit(kernel);
  const cls = classes.get(kernel) as UioClass;
  // Linux: `if (!parent || !info || !info->name || !info->version) return -EINVAL;`
  if ((parent as Device | undefined) === undefined || typeof info.name !== 'string' || typeof info.version !== 'string') return E.EINVAL;
  invariant((info.mem?.length ?? 0) <= MAX_UIO_MAPS, () => `uio ${info.name}: more than ${MAX_UIO_MAPS} maps`);
  invariant((info.port?.length ?? 0) <= MAX_UIO_PORT_REGIONS, () => `uio ${info.name}: more than ${MAX_UIO_PORT_REGIONS} port regions`);
  invariant(!byInfo.has(info), () => `uio ${info.name}: info registered twice`);
  const realIrq = info.irq !== UIO_IRQ_NONE && info.irq !== UIO_IRQ_CUSTOM;
  // Linux would call a NULL handler at the first interrupt; refusing here keeps the kernel alive.
  if (realIrq && info.handler === undefined) return E.EINVAL;
  let minor = 0;
  while (cls.devices.has(minor)) minor++;
  if (minor >= UIO_MAX_DEVICES) return E.ENOSPC;
  const idev = new UioDevice(kernel, parent, minor, info);
  cls.devices.set(minor, idev);
  const vfs = kernel.vfs;
  vfs.mkdirp(idev.sysfsPath);
  addUioAttributes(idev);
  vfs.symlink(`/sys/class/uio/${idev.name}`, relativeLink('/sys/class/uio', idev.sysfsPath));
  vfs.add(idev.devPath, fileInode('chr', uioFileOperations, 0o600, { rdev: { major: UIO_MAJOR, minor }, data: idev }));
  byInfo.set(info, idev);
  if (realIrq) {
    const handler: IrqHandler = (irq) => {
      const i = idev.info;
      if (i === null || i.handler === undefined) return IRQ_NONE;
      const r = i.handler(irq, i);
      if (r === IRQ_HANDLED) uioEventNotify(i);
      return r;
    };
    const r = kernel.irq.request(info.irq, handler, info.irqFlags ?? 0, info.name, idev);
    if (r < 0) {
      byInfo.delete(info);
      removeNodes(idev);
      cls.devices.delete(minor);
      idev.info = null;
      return r;
    }
    idev.irqRequested = true;
  }
  return idev;
}

function removeNodes(idev: UioDevice): void {
  const vfs = idev.kernel.vfs;
  vfs.remove(idev.devPath);
  vfs.remove(`/sys/class/uio/${idev.name}`);
  vfs.remove(idev.sysfsPath);
  // The `uio` glue directory under the parent goes with its last device, as the driver core's does.
  const glue = `${idev.parent.sysfsPath}/uio`;
  const r = vfs.lookup(glue, undefined, false);
  if (typeof r !== 'number' && r.inode.kind === 'dir' && r.inode.entries.size === 0) vfs.remove(glue);
}

/**
 * Linux `uio_unregister_device(info)`: removes the attributes and nodes, frees the irq, detaches `info`
 * (open files then read `EIO`, write `EINVAL`, poll `EPOLLERR`, mmap `EINVAL`), wakes every reader and
 * poller, and frees the minor for reuse. Existing mappings stay, as Linux's PFN mappings do. Unknown or
 * already unregistered `info`: nothing happens.
 */
export function uioUnregisterDevice(info: UioInfo): void {
  const idev = byInfo.get(info);
  if (idev === undefined) return;
  byInfo.delete(info);
  removeNodes(idev);
  if (idev.irqRequested) {
    idev.kernel.irq.free(info.irq, idev);
    idev.irqRequested = false;
  }
  idev.info = null;
  idev.wait.wake();
  classes.get(idev.kernel)?.devices.delete(idev.minor);
}

/**
 * Linux `uio_event_notify(info)`: counts one event and wakes readers and pollers. Drivers with
 * {@link UIO_IRQ_CUSTOM} call it themselves; the core calls it when the handler returns `IRQ_HANDLED`.
 */
export function uioEventNotify(info: UioInfo): void {
  const idev = byInfo.get(info);
  invariant(idev !== undefined, () => `uio_event_notify(${info.name}) on an unregistered device`);
  idev.event = (idev.event + 1) | 0;
  const sim = idev.kernel.sim;
  const tr = sim.trace;
  if (tr.active) tr.emit(sim.now, 'kernel', 'uio.event', { dev: idev.name, event: idev.event >>> 0 });
  idev.wait.wake();
}
