import type { Kernel } from '../kernel.ts';

/** The PCI core (placeholder until enumeration lands). */
export class PciCore {
  readonly kernel: Kernel;
  constructor(kernel: Kernel) {
    this.kernel = kernel;
  }
  /** Enumerates the machine's PCI functions. */
  enumerate(): void {}
}
