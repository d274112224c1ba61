/**
 * A device in the kernel's device model (Linux `struct device`), as the pieces that hang off it see it:
 * its name, where it lives in sysfs, and the driver bound to it. PCI devices, UIO devices and VFIO devices
 * are all one of these.
 */
export interface Device {
  /** `dev_name()`, e.g. `0000:00:03.0` or `uio0`. */
  readonly name: string;
  /** Absolute sysfs path of its directory, e.g. `/sys/devices/pci0000:00/0000:00:03.0`. */
  readonly sysfsPath: string;
  /** The parent device, if any. */
  readonly parent: Device | undefined;
}

/** `dev_info`-style prefix: `<driver or bus> <name>: `. */
export function devPrefix(subsystem: string, dev: Device): string {
  return `${subsystem} ${dev.name}: `;
}
