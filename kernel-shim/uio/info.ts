import type { Current } from '../task/current.ts';
import type { Vma } from '../mm/vma.ts';
import type { KernelPages } from './kmem.ts';

/**
 * What a UIO driver hands the UIO core (Linux `include/linux/uio_driver.h`): constants and the
 * `struct uio_info` / `struct uio_mem` / `struct uio_port` shapes, under camel-case names.
 */

/** The character major of `/dev/uioN` (Linux allocates it dynamically; 243 is what a typical x86-64 box gets). */
export const UIO_MAJOR = 243;

/** Memory regions a UIO device can expose (Linux `MAX_UIO_MAPS`). */
export const MAX_UIO_MAPS = 5;
/** Port regions a UIO device can expose (Linux `MAX_UIO_PORT_REGIONS`). */
export const MAX_UIO_PORT_REGIONS = 5;

/** `uio_mem.memtype` values (Linux `UIO_MEM_*`). */
export const UIO_MEM = { NONE: 0, PHYS: 1, LOGICAL: 2, VIRTUAL: 3, IOVA: 4, DMA_COHERENT: 5 } as const;

/** `uio_port.porttype` values (Linux `UIO_PORT_*`). */
export const UIO_PORT = { NONE: 0, X86: 1, GPIO: 2, OTHER: 3 } as const;

/** `uio_info.irq`: no interrupt (read and write give `EIO`, poll `EPOLLERR`). */
export const UIO_IRQ_NONE = 0;
/** `uio_info.irq`: the driver handles its interrupt itself and calls `uioEventNotify`. */
export const UIO_IRQ_CUSTOM = -1;

/** One memory region (Linux `struct uio_mem`). */
export interface UioMem {
  /** Shown in `maps/mapN/name` (empty when absent). */
  name?: string;
  /**
   * The region's address: physical for `PHYS` (a BAR), a bus address for `IOVA`, the kernel address for
   * `LOGICAL` / `VIRTUAL` / `DMA_COHERENT`. Shown as `0x%016llx`.
   */
  addr: number | bigint;
  /** Offset of the device's registers within the first page (`maps/mapN/offset`); user space adds it. */
  offs?: number;
  /** Size in bytes; 0 ends the list of maps, as in Linux. */
  size: number;
  /** One of {@link UIO_MEM}. */
  memtype: number;
  /**
   * For `LOGICAL`, `VIRTUAL` and `DMA_COHERENT` regions: the kernel pages behind `addr` (from
   * {@link allocKernelPages}), which `mmap` maps as RAM. dmasim has no kernel address space, so the core
   * cannot find the pages from `addr` as Linux's `virt_to_page` / `vmalloc_to_page` do.
   */
  pages?: KernelPages;
}

/** One port region (Linux `struct uio_port`). */
export interface UioPort {
  name?: string;
  start: number;
  size: number;
  /** One of {@link UIO_PORT}. */
  porttype: number;
}

/** The driver's side of a UIO device (Linux `struct uio_info`). `name` and `version` are required. */
export interface UioInfo {
  /** `name` attribute (and the irq's name in `/proc/interrupts`). */
  name: string;
  /** `version` attribute. */
  version: string;
  /** Up to {@link MAX_UIO_MAPS} regions; the list ends at the first of size 0. */
  mem?: UioMem[];
  /** Up to {@link MAX_UIO_PORT_REGIONS} port regions; the list ends at the first of size 0. */
  port?: UioPort[];
  /** A Linux irq number (its descriptor must exist), {@link UIO_IRQ_NONE} or {@link UIO_IRQ_CUSTOM}. */
  irq: number;
  /** `request_irq` flags (`IRQF.SHARED` for a shared INTx line). */
  irqFlags?: number;
  /**
   * The hard-IRQ handler: returns `IRQ_HANDLED` when its device interrupted (the core then counts an event
   * and wakes readers) or `IRQ_NONE`. Required when `irq` is a real irq.
   */
  handler?: (irq: number, info: UioInfo) => number;
  /** What `write()` of an s32 does (0 disable, 1 enable by convention); 0 or `-errno`. */
  irqcontrol?: (info: UioInfo, irqOn: number) => number;
  /** At each open of `/dev/uioN`; 0 or `-errno` (which fails the open). */
  open?: (info: UioInfo, cur: Current) => number;
  /** At the last close of each open file of `/dev/uioN` (every fd and mapping gone); runs without a caller. */
  release?: (info: UioInfo) => number;
  /** Replaces the core's `mmap` (after its index and size checks), as Linux's `info->mmap`. */
  mmap?: (info: UioInfo, vma: Vma, cur: Current) => number;
}
