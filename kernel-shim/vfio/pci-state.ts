import type { EventfdCtx } from '../fs/eventfd.ts';
import type { Mm } from '../mm/mm.ts';
import type { Vma } from '../mm/vma.ts';
import type { PciDev } from '../pci/dev.ts';
import type { PciIoeventfd } from './pci-ioeventfd.ts';

/** A BAR mapping of a device fd: zapped (`backing` none) while memory is off or during a reset. */
export interface BarMapping {
  readonly vma: Vma;
  readonly mm: Mm;
  /** Physical address of the VMA's first page (what the fault handler would insert again). */
  readonly phys: number;
}

/** vfio-pci's per-device state while open (Linux `struct vfio_pci_core_device`, the parts dmasim keeps). */
export interface VfioPciState {
  readonly pdev: PciDev;
  /** The enabled interrupt index (`irq_type`), undefined for none (`VFIO_PCI_NUM_IRQS`). */
  irqType: number | undefined;
  /** INTx: its trigger and whether it is masked. */
  intx: {
    trigger: EventfdCtx | undefined;
    masked: boolean;
    readonly devId: object;
    /** The unmask virqfd (`ctx[0].unmask`): an eventfd whose signal unmasks INTx, and its poll hook's removal. */
    unmask: { readonly ctx: EventfdCtx; readonly remove: () => void } | undefined;
  } | undefined;
  /** MSI / MSI-X vectors with a trigger (the object is also the irq's dev_id). */
  readonly vectors: Map<number, { readonly trigger: EventfdCtx }>;
  msiNvec: number;
  errTrigger: EventfdCtx | undefined;
  reqTrigger: EventfdCtx | undefined;
  /** INTx masking through Command works (`pci_2_3`). */
  readonly pci23: boolean;
  /** The user's virtual INTx Disable is set (`virq_disabled`). */
  virqDisabled: boolean;
  /** `reset_works`: the open-time reset succeeded. */
  resetWorks: boolean;
  /** The virtualised configuration space (`vconfig`). */
  readonly vconfig: Uint8Array;
  /** The BAR values to restore after a backdoor reset (`rbar`). */
  readonly rbar: Uint32Array;
  bardirty: boolean;
  /** MSI-X table BAR (-1 without MSI-X), its offset and size in bytes. */
  readonly msixBar: number;
  readonly msixOffset: number;
  readonly msixSize: number;
  /** Live BAR mappings. */
  readonly maps: Set<BarMapping>;
  /** Registered `VFIO_DEVICE_IOEVENTFD`s. */
  readonly ioeventfds: PciIoeventfd[];
  /** `pm_runtime_engaged`: user space asked for low power (DEVICE_FEATURE LOW_POWER_ENTRY*); BAR mappings stay zapped. */
  pmEngaged: boolean;
  /** `pm_wake_eventfd_ctx`: signalled, and low power left, when the next device ioctl wakes the device. */
  pmWake: EventfdCtx | undefined;
  /** Saved header dwords from open (`pci_saved_state`), restored at close. */
  readonly saved: Uint32Array;
}
