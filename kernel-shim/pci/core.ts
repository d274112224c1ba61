import { E } from '../errno.ts';
import type { Kernel } from '../kernel.ts';
import { PciDev } from './dev.ts';
import { pciMatchDevice, type PciDeviceId, type PciDriver, type PciDriverEntry } from './driver.ts';
import { addDeviceSysfs, addDriverSysfs, addPciBusSysfs, linkDriver, unlinkDriver } from './sysfs.ts';
import { IORESOURCE, PCI_EXP } from './regs.ts';

/** CPU interrupt vectors Linux hands to devices on x86 (after the exception vectors, below the system vectors). */
const FIRST_DEVICE_VECTOR = 0x21;
const LAST_DEVICE_VECTOR = 0xeb;
const SYSCALL_VECTOR = 0x80;

/** Linux `pci_type_str` (6.7+ `drivers/pci/probe.c`): the PCIe Device/Port Type, else the header type's kind. */
const PCIE_TYPE_STR = [
  'PCIe Endpoint', 'PCIe Legacy Endpoint', 'PCIe unknown', 'PCIe unknown', 'PCIe Root Port', 'PCIe Switch Upstream Port',
  'PCIe Switch Downstream Port', 'PCIe to PCI/PCI-X bridge', 'PCI/PCI-X to PCIe bridge', 'PCIe Root Complex Integrated Endpoint',
  'PCIe Root Complex Event Collector',
] as const;

function pciTypeStr(dev: PciDev): string {
  if (dev.pcieCap !== 0) return PCIE_TYPE_STR[(dev.cfgRead(dev.pcieCap + PCI_EXP.FLAGS, 2) & PCI_EXP.FLAGS_TYPE) >> 4] ?? 'PCIe unknown';
  return ['conventional PCI endpoint', 'conventional PCI bridge', 'CardBus bridge'][dev.headerType] ?? 'conventional PCI';
}

/**
 * The PCI core (Linux `drivers/pci/`): enumerates the machine's functions by configuration cycles (keeping
 * firmware's BAR assignment), publishes them in sysfs, and binds drivers to them as the driver core does:
 * id tables, dynamic ids (`new_id` / `remove_id`), `driver_override`, `bind` / `unbind`. It also owns the
 * CPU interrupt vectors MSI and MSI-X messages target.
 */
export class PciCore {
  readonly kernel: Kernel;
  readonly #devices: PciDev[] = [];
  readonly #drivers = new Map<string, PciDriverEntry>();
  readonly #vectorsUsed = new Set<number>();

  constructor(kernel: Kernel) {
    this.kernel = kernel;
  }

  /** Enumerated functions, in bus order. */
  get devices(): readonly PciDev[] {
    return this.#devices;
  }

  /** The function named `name` (`0000:00:03.0`), or at requester id `bdf`. */
  device(name: string | number): PciDev | undefined {
    return this.#devices.find((d) => (typeof name === 'number' ? d.bdf === name : d.name === name));
  }

  /** Registered drivers by name. */
  driver(name: string): PciDriverEntry | undefined {
    return this.#drivers.get(name);
  }

  /** Scans bus 0 (Linux `pci_scan_root_bus`): each function that answers its vendor id becomes a {@link PciDev}. */
  enumerate(): void {
    const log = this.kernel.log;
    const b = this.kernel.behaviour;
    addPciBusSysfs(this.kernel);
    log.printk('info', 'PCI host bridge to bus 0000:00');
    const bdfs = this.kernel.machine.pci.functions.map((s) => s.bdf).sort((x, y) => x - y);
    for (const bdf of bdfs) {
      if ((this.kernel.machine.pci.configRead(bdf, 0, 2) & 0xffff) === 0xffff) continue;
      const dev = new PciDev(this.kernel, bdf);
      this.#devices.push(dev);
      const hex = (n: number, w: number): string => n.toString(16).padStart(w, '0');
      const kind = pciTypeStr(dev);
      log.printk('info', `pci ${dev.name}: [${hex(dev.vendor, 4)}:${hex(dev.device, 4)}] type ${hex(dev.headerType, 2)} class 0x${hex(dev.classCode, 6)}${b.pciEnumKind ? ` ${kind}` : ''}`);
      for (let i = 0; i < 6; i++) {
        const r = dev.resources[i];
        if (r === undefined || r.flags === 0) continue;
        const io = (r.flags & IORESOURCE.IO) !== 0;
        const range = `[${io ? 'io ' : 'mem'} 0x${hex(r.start, io ? 4 : 8)}-0x${hex(r.end, io ? 4 : 8)}${(r.flags & IORESOURCE.MEM_64) !== 0 ? ' 64bit' : ''}${(r.flags & IORESOURCE.PREFETCH) !== 0 ? ' pref' : ''}]`;
        log.printk('info', b.pciBarLogStyle === 'bar' ? `pci ${dev.name}: BAR ${i} ${range}` : `pci ${dev.name}: reg 0x${(0x10 + 4 * i).toString(16)}: ${range}`);
      }
      addDeviceSysfs(this.kernel, dev);
    }
  }

  /**
   * Linux `pci_register_driver`: registers `driver` and probes every unbound device it matches (in a kernel
   * worker, since probes may sleep; `settled` resolves when they are done). Returns 0, or `-EEXIST` for a
   * name already registered.
   */
  registerDriver(driver: PciDriver): number {
    if (this.#drivers.has(driver.name)) return E.EEXIST;
    const entry: PciDriverEntry = { driver, dynids: [], devices: new Set() };
    this.#drivers.set(driver.name, entry);
    addDriverSysfs(this.kernel, entry);
    if (this.#devices.some((d) => d.driver === undefined && pciMatchDevice(entry, d) !== undefined)) {
      const done = new Promise<void>((resolve, reject) => {
        this.kernel.sim.process(`kworker/probe:${driver.name}`, async () => {
          try {
            await this.driverAttach(entry);
            resolve();
          } catch (e) {
            reject(e);
            throw e;
          }
        });
      });
      const before = this.#settled;
      this.#settled = Promise.all([before, done]).then(() => undefined);
    }
    return 0;
  }

  #settled: Promise<void> = Promise.resolve();

  /** Resolves once every boot-time probe started by {@link registerDriver} has finished. */
  get settled(): Promise<void> {
    return this.#settled;
  }

  /** Linux `pci_unregister_driver`: unbinds every device, then forgets the driver. */
  async unregisterDriver(name: string): Promise<void> {
    const entry = this.#drivers.get(name);
    if (entry === undefined) return;
    for (const dev of Array.from(entry.devices)) await this.release(dev);
    this.kernel.vfs.remove(`/sys/bus/pci/drivers/${name}`);
    this.#drivers.delete(name);
  }

  /** Linux `driver_attach`: tries `entry` on every unbound device it matches (probe failures are logged, not returned). */
  async driverAttach(entry: PciDriverEntry): Promise<void> {
    for (const dev of this.#devices) {
      if (dev.driver !== undefined) continue;
      const id = pciMatchDevice(entry, dev);
      if (id !== undefined) await this.probe(entry, dev, id);
    }
  }

  /** Linux `device_attach`: the first driver (in registration order) that matches and probes successfully. */
  async deviceAttach(dev: PciDev): Promise<number> {
    if (dev.driver !== undefined) return 1;
    for (const entry of this.#drivers.values()) {
      const id = pciMatchDevice(entry, dev);
      if (id === undefined) continue;
      if ((await this.probe(entry, dev, id)) === 0) return 1;
    }
    return 0;
  }

  /**
   * Linux `__driver_probe_device` + `really_probe`: `-EBUSY` if the device has a driver, or if the driver
   * uses the DMA API and a user-space owner holds the device's IOMMU group; else the probe's result. A failed probe leaves the device unbound, logged unless it is `-ENODEV`/`-ENXIO` (a rejected match).
   */
  async probe(entry: PciDriverEntry, dev: PciDev, id: PciDeviceId): Promise<number> {
    if (dev.driver !== undefined) return E.EBUSY;
    // pci_dma_configure: a driver that uses the DMA API takes the group's default domain first.
    const managed = entry.driver.driverManagedDma === true;
    const iommu = this.kernel.iommu;
    if (!managed && iommu !== null) {
      const u = iommu.useDefaultDomain(dev);
      if (u < 0) return u;
    }
    dev.driver = entry.driver;
    const r = await entry.driver.probe(dev, id);
    if (r < 0) {
      if (!managed) iommu?.unuseDefaultDomain(dev);
      dev.driver = undefined;
      dev.driverData = undefined;
      if (r !== E.ENODEV && r !== E.ENXIO) {
        this.kernel.log.printk('warn', `${entry.driver.name} ${dev.name}: probe with driver ${entry.driver.name} failed with error ${r}`);
      }
      return r;
    }
    entry.devices.add(dev);
    linkDriver(this.kernel, dev, entry);
    return 0;
  }

  /** Linux `device_release_driver`: the driver's `remove`, then the device is unbound. */
  async release(dev: PciDev): Promise<void> {
    const drv = dev.driver;
    if (drv === undefined) return;
    const entry = this.#drivers.get(drv.name);
    await drv.remove(dev);
    if (drv.driverManagedDma !== true) this.kernel.iommu?.unuseDefaultDomain(dev);
    dev.driver = undefined;
    dev.driverData = undefined;
    if (entry !== undefined) {
      entry.devices.delete(dev);
      unlinkDriver(this.kernel, dev, entry);
    }
  }

  /** A free CPU vector for an MSI / MSI-X message, or -1. */
  allocCpuVector(): number {
    for (let v = FIRST_DEVICE_VECTOR; v <= LAST_DEVICE_VECTOR; v++) {
      if (v === SYSCALL_VECTOR || this.#vectorsUsed.has(v)) continue;
      this.#vectorsUsed.add(v);
      this.kernel.irq.vectorInUse(v);
      return v;
    }
    return -1;
  }

  /** Returns `v` to the pool and removes its handler; the vector is shut down (one stray message is quiet). */
  freeCpuVector(v: number): void {
    this.#vectorsUsed.delete(v);
    this.kernel.machine.intc.onVector(v, undefined);
    this.kernel.irq.vectorShutdown(v);
  }
}
