import type { Kernel } from './kernel.ts';
import { uioApexDriver } from './uio/apex.ts';

/**
 * Loadable modules: drivers that are not built in, loaded at boot when `KernelOptions.modules` names them
 * (what `modprobe` at boot does). Each entry registers its drivers with the kernel; an unknown name is a
 * configuration error (`modprobe: FATAL: Module x not found`).
 */
export const MODULES: Readonly<Record<string, (kernel: Kernel) => void>> = {
  /** The Apex through UIO, one device per interrupt source (kernel-shim/uio/apex.ts). */
  uio_apex: (kernel) => kernel.pci.registerDriver(uioApexDriver(kernel)),
};

/** Loads the module `name`; throws a `RangeError` naming the known modules when there is none. */
export function loadModule(kernel: Kernel, name: string): void {
  const init = MODULES[name];
  if (init === undefined) throw new RangeError(`modules: no module ${JSON.stringify(name)} (known: ${Object.keys(MODULES).join(', ') || 'none'})`);
  init(kernel);
}
