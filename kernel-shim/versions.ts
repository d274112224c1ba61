/** The Linux versions whose behaviour the kernel can take. */
export const LINUX_VERSIONS = ['6.1', '6.12'] as const;
/** One of {@link LINUX_VERSIONS}. */
export type LinuxVersion = (typeof LINUX_VERSIONS)[number];

/**
 * Every behaviour that differs between the supported Linux versions, in one table. Code asks
 * `kernel.behaviour.x`, never the version string.
 */
export interface Behaviour {
  /** `uname -r`-style release string. */
  readonly release: string;
  /** `MFD_EXEC` / `MFD_NOEXEC_SEAL` exist (6.3+), and memfd_create without either logs a warning. */
  readonly memfdExecFlags: boolean;
  /** Enumeration names the function's kind (`conventional PCI endpoint`, `PCIe Endpoint`; 6.7+). */
  readonly pciEnumKind: boolean;
  /** How enumeration logs a BAR: `reg 0x10: [mem ...]` (up to 6.6) or `BAR 0 [mem ...]` (6.7+). */
  readonly pciBarLogStyle: 'reg' | 'bar';
  /**
   * UIO dynamic DMA regions (uio_dmem_genirq, uio_apex) are `UIO_MEM_DMA_COHERENT` with the kernel virtual
   * address in `addr` (6.9+: user space no longer learns the DMA address); before, `UIO_MEM_PHYS` with the
   * DMA address in `addr`, which `mmap` maps as a physical address.
   */
  readonly uioDmaCoherentMemtype: boolean;
  /**
   * What type1 `MAP_DMA` / `UNMAP_DMA` give for an iova or vaddr range that wraps past 2^64
   * (spec/linux-uapi.md 1.7 step 4): `EINVAL`, checked after the alignment checks, in every release up to
   * 6.18 (both 6.1 and 6.12 here); `EOVERFLOW`, checked before them, after Alex Mastro's 2025
   * "vfio/type1: sanitize for overflow using check_*_overflow" series.
   */
  readonly vfioWrapErrno: 'EINVAL' | 'EOVERFLOW';
  /**
   * The function an x86 interrupt on a vector with no irq names in its `pr_emerg_ratelimited("%s: %d.%u No
   * irq handler for vector")` (`__func__`, which also names the ratelimit's "callbacks suppressed" line):
   * `__common_interrupt`, the body of `DEFINE_IDTENTRY_IRQ(common_interrupt)`, up to 6.9; `call_irq_handler`
   * from 6.10 (Jacob Pan's posted-MSI series, "x86/irq: Factor out handler invocation from common_interrupt()").
   */
  readonly noIrqHandlerFunc: '__common_interrupt' | 'call_irq_handler';
  /** iommufd and `/dev/iommu` (merged for 6.2). */
  readonly iommufd: boolean;
  /** The VFIO device cdev `/dev/vfio/devices/vfio<X>` (`CONFIG_VFIO_DEVICE_CDEV`, 6.6). */
  readonly vfioDeviceCdev: boolean;
}

/** The table: one row per version. */
export const BEHAVIOUR: Readonly<Record<LinuxVersion, Behaviour>> = {
  '6.1': { release: '6.1.0-dmasim', memfdExecFlags: false, pciEnumKind: false, pciBarLogStyle: 'reg', uioDmaCoherentMemtype: false, vfioWrapErrno: 'EINVAL', noIrqHandlerFunc: '__common_interrupt', iommufd: false, vfioDeviceCdev: false },
  '6.12': { release: '6.12.0-dmasim', memfdExecFlags: true, pciEnumKind: true, pciBarLogStyle: 'bar', uioDmaCoherentMemtype: true, vfioWrapErrno: 'EINVAL', noIrqHandlerFunc: 'call_irq_handler', iommufd: true, vfioDeviceCdev: true },
};
