import type { Simulator } from '../sim/index.ts';
import type { Machine } from '../machine/index.ts';
import { Vfs } from './fs/vfs.ts';
import { KernelLog } from './log.ts';
import { PciCore } from './pci/core.ts';
import { BEHAVIOUR, LINUX_VERSIONS, type Behaviour, type LinuxVersion } from './versions.ts';

/** Options of {@link bootKernel}. */
export interface KernelOptions {
  /** Which Linux to behave as where versions differ (default `'6.12'`). */
  readonly linux?: LinuxVersion;
  /** Kernel command line, as `/proc/cmdline` shows it (default empty). */
  readonly cmdline?: string;
}

/**
 * The mock Linux kernel running on a {@link Machine}: the VFS (`/dev`, `/sys`, `/proc`), the kernel log,
 * the PCI core with its drivers, and processes. Subsystems hang off it; user space reaches it only through
 * syscalls.
 */
export class Kernel {
  readonly machine: Machine;
  readonly sim: Simulator;
  readonly version: LinuxVersion;
  /** Every version-dependent behaviour (see `versions.ts`). */
  readonly behaviour: Behaviour;
  readonly cmdline: string;
  readonly log: KernelLog;
  readonly vfs: Vfs;
  /** The PCI core: enumerated devices, drivers, binding, IRQs. */
  readonly pci: PciCore;

  constructor(machine: Machine, options: KernelOptions = {}) {
    const version = options.linux ?? '6.12';
    if (!LINUX_VERSIONS.includes(version)) throw new RangeError(`linux: must be one of ${LINUX_VERSIONS.join(', ')}, got ${String(version)}`);
    this.machine = machine;
    this.sim = machine.sim;
    this.version = version;
    this.behaviour = BEHAVIOUR[version];
    this.cmdline = options.cmdline ?? '';
    this.log = new KernelLog(machine.sim);
    this.vfs = new Vfs();
    for (const d of ['dev', 'sys/bus', 'sys/class', 'sys/devices', 'sys/kernel', 'proc']) this.vfs.mkdirp(d);
    this.log.printk('notice', `Linux version ${this.behaviour.release} (dmasim) #1 SMP`);
    this.log.printk('info', `Command line: ${this.cmdline}`);
    this.pci = new PciCore(this);
    this.pci.enumerate();
  }
}

/** Boots the kernel on `machine`: enumerates PCI (keeping firmware's BARs), registers the built-in drivers. */
export function bootKernel(machine: Machine, options: KernelOptions = {}): Kernel {
  return new Kernel(machine, options);
}
