/**
 * The configuration-space offsets and bits the kernel's PCI code uses, as Linux's
 * `include/uapi/linux/pci_regs.h` names them. The kernel reads devices only through configuration cycles
 * and MMIO; it never looks inside a device model.
 */
export const PCI = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  CLASS_REVISION: 0x08,
  HEADER_TYPE: 0x0e,
  BASE_ADDRESS_0: 0x10,
  SUBSYSTEM_VENDOR_ID: 0x2c,
  SUBSYSTEM_ID: 0x2e,
  ROM_ADDRESS: 0x30,
  CAPABILITY_LIST: 0x34,
  INTERRUPT_LINE: 0x3c,
  INTERRUPT_PIN: 0x3d,
  /** Bytes of configuration space an unprivileged reader of sysfs `config` sees (type 0 header). */
  STD_HEADER_SIZEOF: 64,
  CFG_SPACE_SIZE: 256,
  CFG_SPACE_EXP_SIZE: 4096,
} as const;

/** Command register bits. */
export const PCI_COMMAND = { IO: 0x1, MEMORY: 0x2, MASTER: 0x4, INTX_DISABLE: 0x400 } as const;
/** Status register bits. */
export const PCI_STATUS = { INTERRUPT: 0x08, CAP_LIST: 0x10 } as const;

/** BAR low bits. */
export const PCI_BASE_ADDRESS = {
  SPACE_IO: 0x01,
  MEM_TYPE_MASK: 0x06,
  MEM_TYPE_64: 0x04,
  MEM_PREFETCH: 0x08,
  MEM_MASK: 0xffff_fff0,
  IO_MASK: 0xffff_fffc,
} as const;

/** Capability ids. */
export const PCI_CAP_ID = { PM: 0x01, MSI: 0x05, EXP: 0x10, MSIX: 0x11 } as const;

/** MSI capability registers (offsets from the capability). */
export const PCI_MSI = {
  FLAGS: 0x02,
  FLAGS_ENABLE: 0x0001,
  FLAGS_QMASK: 0x000e,
  FLAGS_QSIZE: 0x0070,
  FLAGS_64BIT: 0x0080,
  FLAGS_MASKBIT: 0x0100,
  ADDRESS_LO: 0x04,
  ADDRESS_HI: 0x08,
  DATA_32: 0x08,
  DATA_64: 0x0c,
} as const;

/** MSI-X capability registers and table entry layout. */
export const PCI_MSIX = {
  FLAGS: 0x02,
  FLAGS_QSIZE: 0x07ff,
  FLAGS_MASKALL: 0x4000,
  FLAGS_ENABLE: 0x8000,
  TABLE: 0x04,
  PBA: 0x08,
  BIR_MASK: 0x7,
  ENTRY_SIZE: 16,
  ENTRY_LOWER_ADDR: 0,
  ENTRY_UPPER_ADDR: 4,
  ENTRY_DATA: 8,
  ENTRY_VECTOR_CTRL: 12,
  ENTRY_CTRL_MASKBIT: 1,
} as const;

/** PCI Express capability: Device Capabilities and Control (offsets from the capability). */
export const PCI_EXP = {
  FLAGS: 0x02,
  FLAGS_TYPE: 0x00f0,
  DEVCAP: 0x04,
  DEVCAP_FLR: 0x1000_0000,
  DEVCTL: 0x08,
  DEVCTL_BCR_FLR: 0x8000,
  DEVSTA: 0x0a,
  DEVSTA_TRPND: 0x0020,
} as const;

/** Power management capability. */
export const PCI_PM = {
  CTRL: 0x04,
  CTRL_STATE_MASK: 0x0003,
  CTRL_NO_SOFT_RESET: 0x0008,
} as const;

/** Linux `struct resource` flags (`include/linux/ioport.h`). */
export const IORESOURCE = {
  IO: 0x0000_0100,
  MEM: 0x0000_0200,
  PREFETCH: 0x0000_2000,
  READONLY: 0x0000_4000,
  SIZEALIGN: 0x0004_0000,
  MEM_64: 0x0010_0000,
  UNSET: 0x2000_0000,
  DISABLED: 0x1000_0000,
} as const;

/** MSI message address window on x86 (`0xfee00000 | dest << 12`). */
export const MSI_ADDRESS_BASE = 0xfee0_0000;

/** `PCI_ANY_ID`. */
export const PCI_ANY_ID = 0xffff_ffff;
