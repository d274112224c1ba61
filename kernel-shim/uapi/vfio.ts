import { _IO } from './ioctl.ts';
import { struct, type IoctlDef } from './layout.ts';

/**
 * `include/uapi/linux/vfio.h` (spec/linux-uapi.md section 1): request numbers, flags and struct layouts.
 * Every VFIO ioctl is `_IO(';', 100 + n)`: no size or direction bits, and the same number means different
 * things on container, group and device fds, so drivers dispatch by fd type.
 *
 * dmasim addition: the info structs that return a capability chain (`vfio_device_info`,
 * `vfio_region_info`, `vfio_iommu_type1_info`) declare the bytes past the struct as a flexible `u8 caps[]`,
 * so an object argument with `argsz` larger than the struct gets the chain back in `caps`
 * (`caps[cap_offset - sizeof]` is the first header). Linux's structs have no such member; the memory layout
 * is the same.
 */

/** `VFIO_TYPE` (`';'`). */
export const VFIO_TYPE = 0x3b;
/** `VFIO_BASE`. */
export const VFIO_BASE = 100;
/** `VFIO_API_VERSION`. */
export const VFIO_API_VERSION = 0;

const v = (n: number): number => _IO(VFIO_TYPE, VFIO_BASE + n);

/** Request numbers (`_IO(';', 100 + n)`), by Linux name less the `VFIO_` prefix. */
export const VFIO = {
  GET_API_VERSION: v(0),
  CHECK_EXTENSION: v(1),
  SET_IOMMU: v(2),
  GROUP_GET_STATUS: v(3),
  GROUP_SET_CONTAINER: v(4),
  GROUP_UNSET_CONTAINER: v(5),
  GROUP_GET_DEVICE_FD: v(6),
  DEVICE_GET_INFO: v(7),
  DEVICE_GET_REGION_INFO: v(8),
  DEVICE_GET_IRQ_INFO: v(9),
  DEVICE_SET_IRQS: v(10),
  DEVICE_RESET: v(11),
  DEVICE_GET_PCI_HOT_RESET_INFO: v(12),
  DEVICE_PCI_HOT_RESET: v(13),
  DEVICE_QUERY_GFX_PLANE: v(14),
  DEVICE_GET_GFX_DMABUF: v(15),
  DEVICE_IOEVENTFD: v(16),
  DEVICE_FEATURE: v(17),
  DEVICE_BIND_IOMMUFD: v(18),
  DEVICE_ATTACH_IOMMUFD_PT: v(19),
  DEVICE_DETACH_IOMMUFD_PT: v(20),
  IOMMU_GET_INFO: v(12),
  IOMMU_MAP_DMA: v(13),
  IOMMU_UNMAP_DMA: v(14),
  IOMMU_SPAPR_TCE_GET_INFO: v(12),
  IOMMU_ENABLE: v(15),
  IOMMU_DISABLE: v(16),
  IOMMU_DIRTY_PAGES: v(17),
} as const;

/** Extension ids for `CHECK_EXTENSION` / `SET_IOMMU`. */
export const VFIO_EXT = {
  TYPE1_IOMMU: 1, SPAPR_TCE_IOMMU: 2, TYPE1v2_IOMMU: 3, DMA_CC_IOMMU: 4, EEH: 5, TYPE1_NESTING_IOMMU: 6,
  SPAPR_TCE_v2_IOMMU: 7, NOIOMMU_IOMMU: 8, UNMAP_ALL: 9, UPDATE_VADDR: 10,
} as const;

/** `vfio_group_status.flags`. */
export const VFIO_GROUP_FLAGS = { VIABLE: 1 << 0, CONTAINER_SET: 1 << 1 } as const;

/** `vfio_device_info.flags`. */
export const VFIO_DEVICE_FLAGS = {
  RESET: 1 << 0, PCI: 1 << 1, PLATFORM: 1 << 2, AMBA: 1 << 3, CCW: 1 << 4, AP: 1 << 5, FSL_MC: 1 << 6, CAPS: 1 << 7, CDX: 1 << 8,
} as const;

/** `vfio_region_info.flags`. */
export const VFIO_REGION_INFO_FLAG = { READ: 1 << 0, WRITE: 1 << 1, MMAP: 1 << 2, CAPS: 1 << 3 } as const;

/** Region capability ids. */
export const VFIO_REGION_INFO_CAP = { SPARSE_MMAP: 1, TYPE: 2, MSIX_MAPPABLE: 3 } as const;

/** `vfio_irq_info.flags`. */
export const VFIO_IRQ_INFO = { EVENTFD: 1 << 0, MASKABLE: 1 << 1, AUTOMASKED: 1 << 2, NORESIZE: 1 << 3 } as const;

/** `vfio_irq_set.flags`: one data type and one action. */
export const VFIO_IRQ_SET = {
  DATA_NONE: 1 << 0, DATA_BOOL: 1 << 1, DATA_EVENTFD: 1 << 2,
  ACTION_MASK: 1 << 3, ACTION_UNMASK: 1 << 4, ACTION_TRIGGER: 1 << 5,
  DATA_TYPE_MASK: 0x7, ACTION_TYPE_MASK: 0x38,
} as const;

/** vfio-pci region indexes (`VFIO_PCI_*_REGION_INDEX`). */
export const VFIO_PCI_REGION = { BAR0: 0, BAR1: 1, BAR2: 2, BAR3: 3, BAR4: 4, BAR5: 5, ROM: 6, CONFIG: 7, VGA: 8, NUM_REGIONS: 9 } as const;

/** vfio-pci IRQ indexes (`VFIO_PCI_*_IRQ_INDEX`). */
export const VFIO_PCI_IRQ = { INTX: 0, MSI: 1, MSIX: 2, ERR: 3, REQ: 4, NUM_IRQS: 5 } as const;

/** `vfio_iommu_type1_info.flags`. */
export const VFIO_IOMMU_INFO = { PGSIZES: 1 << 0, CAPS: 1 << 1 } as const;

/** Type1 info capability ids. */
export const VFIO_IOMMU_TYPE1_INFO_CAP = { IOVA_RANGE: 1, MIGRATION: 2, DMA_AVAIL: 3 } as const;

/** `vfio_iommu_type1_dma_map.flags`. */
export const VFIO_DMA_MAP_FLAG = { READ: 1 << 0, WRITE: 1 << 1, VADDR: 1 << 2 } as const;

/** `vfio_iommu_type1_dma_unmap.flags`. */
export const VFIO_DMA_UNMAP_FLAG = { GET_DIRTY_BITMAP: 1 << 0, ALL: 1 << 1, VADDR: 1 << 2 } as const;

/** `vfio_iommu_type1_dirty_bitmap.flags`. */
export const VFIO_IOMMU_DIRTY_PAGES_FLAG = { START: 1 << 0, STOP: 1 << 1, GET_BITMAP: 1 << 2 } as const;

/** `vfio_device_bind_iommufd.flags`. */
export const VFIO_DEVICE_BIND_FLAG = { TOKEN: 1 << 0 } as const;

/** `vfio_device_attach_iommufd_pt.flags`. */
export const VFIO_DEVICE_ATTACH_FLAG = { PASID: 1 << 0 } as const;

/** `vfio_device_feature.flags`: bits 0-15 the feature, then GET, SET, PROBE. */
export const VFIO_DEVICE_FEATURE_FLAG = { MASK: 0xffff, GET: 1 << 16, SET: 1 << 17, PROBE: 1 << 18 } as const;

/** Feature ids of `DEVICE_FEATURE`. */
export const VFIO_DEVICE_FEATURE = {
  PCI_VF_TOKEN: 0, MIGRATION: 1, MIG_DEVICE_STATE: 2, LOW_POWER_ENTRY: 3, LOW_POWER_ENTRY_WITH_WAKEUP: 4,
  LOW_POWER_EXIT: 5, DMA_LOGGING_START: 6, DMA_LOGGING_STOP: 7, DMA_LOGGING_REPORT: 8, MIG_DATA_SIZE: 9,
  BUS_MASTER: 10, DMA_BUF: 11,
} as const;

// --- structs ------------------------------------------------------------------------------------------

/** `struct vfio_info_cap_header` (each capability of a chain starts with it; `next` is from the buffer start). */
export const vfio_info_cap_header = struct('vfio_info_cap_header', [['id', 'u16'], ['version', 'u16'], ['next', 'u32']], { expectSize: 8 });

/** `struct vfio_group_status`. */
export const vfio_group_status = struct('vfio_group_status', [['argsz', 'u32'], ['flags', 'u32']], { expectSize: 8 });

/** `struct vfio_device_info` (minsz: through `num_irqs`). */
export const vfio_device_info = struct('vfio_device_info', [
  ['argsz', 'u32'], ['flags', 'u32'], ['num_regions', 'u32'], ['num_irqs', 'u32'], ['cap_offset', 'u32'], ['pad', 'u32'],
], { minEnd: 'num_irqs', flex: ['caps', 'u8'], expectSize: 24 });

/** `struct vfio_region_info`. */
export const vfio_region_info = struct('vfio_region_info', [
  ['argsz', 'u32'], ['flags', 'u32'], ['index', 'u32'], ['cap_offset', 'u32'], ['size', 'u64'], ['offset', 'u64'],
], { flex: ['caps', 'u8'], expectSize: 32 });

/** `struct vfio_region_sparse_mmap_area`. */
export const vfio_region_sparse_mmap_area = struct('vfio_region_sparse_mmap_area', [['offset', 'u64'], ['size', 'u64']], { expectSize: 16 });

/** `struct vfio_region_info_cap_sparse_mmap` (cap id SPARSE_MMAP). */
export const vfio_region_info_cap_sparse_mmap = struct('vfio_region_info_cap_sparse_mmap', [
  ['header', vfio_info_cap_header], ['nr_areas', 'u32'], ['reserved', 'u32'],
], { flex: ['areas', vfio_region_sparse_mmap_area], expectSize: 16 });

/** `struct vfio_region_info_cap_type` (cap id TYPE). */
export const vfio_region_info_cap_type = struct('vfio_region_info_cap_type', [
  ['header', vfio_info_cap_header], ['type', 'u32'], ['subtype', 'u32'],
], { expectSize: 16 });

/** `struct vfio_irq_info`. */
export const vfio_irq_info = struct('vfio_irq_info', [['argsz', 'u32'], ['flags', 'u32'], ['index', 'u32'], ['count', 'u32']], { expectSize: 16 });

/** `struct vfio_irq_set`: `data` is one u8 (BOOL) or one s32 (EVENTFD) per vector; an `Int32Array` is taken as its bytes. */
export const vfio_irq_set = struct('vfio_irq_set', [
  ['argsz', 'u32'], ['flags', 'u32'], ['index', 'u32'], ['start', 'u32'], ['count', 'u32'],
], { flex: ['data', 'u8'], expectSize: 20 });

/** `struct vfio_iommu_type1_info` (minsz: through `iova_pgsizes`). */
export const vfio_iommu_type1_info = struct('vfio_iommu_type1_info', [
  ['argsz', 'u32'], ['flags', 'u32'], ['iova_pgsizes', 'u64'], ['cap_offset', 'u32'], ['pad', 'u32'],
], { minEnd: 'iova_pgsizes', flex: ['caps', 'u8'], expectSize: 24 });

/** `struct vfio_iova_range` (`end` inclusive). */
export const vfio_iova_range = struct('vfio_iova_range', [['start', 'u64'], ['end', 'u64']], { expectSize: 16 });

/** `struct vfio_iommu_type1_info_cap_iova_range` (cap id IOVA_RANGE). */
export const vfio_iommu_type1_info_cap_iova_range = struct('vfio_iommu_type1_info_cap_iova_range', [
  ['header', vfio_info_cap_header], ['nr_iovas', 'u32'], ['reserved', 'u32'],
], { flex: ['iova_ranges', vfio_iova_range], expectSize: 16 });

/** `struct vfio_iommu_type1_info_cap_migration` (cap id MIGRATION). */
export const vfio_iommu_type1_info_cap_migration = struct('vfio_iommu_type1_info_cap_migration', [
  ['header', vfio_info_cap_header], ['flags', 'u32'], ['pgsize_bitmap', 'u64'], ['max_dirty_bitmap_size', 'u64'],
], { expectSize: 32 });

/** `struct vfio_iommu_type1_info_dma_avail` (cap id DMA_AVAIL). */
export const vfio_iommu_type1_info_dma_avail = struct('vfio_iommu_type1_info_dma_avail', [
  ['header', vfio_info_cap_header], ['avail', 'u32'],
], { expectSize: 12 });

/** `struct vfio_iommu_type1_dma_map`. */
export const vfio_iommu_type1_dma_map = struct('vfio_iommu_type1_dma_map', [
  ['argsz', 'u32'], ['flags', 'u32'], ['vaddr', 'u64'], ['iova', 'u64'], ['size', 'u64'],
], { expectSize: 32 });

/** `struct vfio_bitmap`. */
export const vfio_bitmap = struct('vfio_bitmap', [['pgsize', 'u64'], ['size', 'u64'], ['data', 'u64']], { expectSize: 24 });

/** `struct vfio_iommu_type1_dma_unmap` (`data` carries a `vfio_bitmap` with GET_DIRTY_BITMAP). */
export const vfio_iommu_type1_dma_unmap = struct('vfio_iommu_type1_dma_unmap', [
  ['argsz', 'u32'], ['flags', 'u32'], ['iova', 'u64'], ['size', 'u64'],
], { flex: ['data', 'u8'], expectSize: 24 });

/** `struct vfio_iommu_type1_dirty_bitmap`. */
export const vfio_iommu_type1_dirty_bitmap = struct('vfio_iommu_type1_dirty_bitmap', [
  ['argsz', 'u32'], ['flags', 'u32'],
], { flex: ['data', 'u8'], expectSize: 8 });

/** `struct vfio_device_bind_iommufd` (minsz: through `out_devid`; `token_uuid_ptr` only with TOKEN). */
export const vfio_device_bind_iommufd = struct('vfio_device_bind_iommufd', [
  ['argsz', 'u32'], ['flags', 'u32'], ['iommufd', 's32'], ['out_devid', 'u32'], ['token_uuid_ptr', 'u64'],
], { minEnd: 'out_devid', expectSize: 24 });

/** `struct vfio_device_attach_iommufd_pt` (minsz: through `pt_id`). */
export const vfio_device_attach_iommufd_pt = struct('vfio_device_attach_iommufd_pt', [
  ['argsz', 'u32'], ['flags', 'u32'], ['pt_id', 'u32'], ['pasid', 'u32'],
], { minEnd: 'pt_id', expectSize: 16 });

/** `struct vfio_device_detach_iommufd_pt` (minsz: through `flags`). */
export const vfio_device_detach_iommufd_pt = struct('vfio_device_detach_iommufd_pt', [
  ['argsz', 'u32'], ['flags', 'u32'], ['pasid', 'u32'],
], { minEnd: 'flags', expectSize: 12 });

/** `struct vfio_device_feature`. */
export const vfio_device_feature = struct('vfio_device_feature', [['argsz', 'u32'], ['flags', 'u32']], { flex: ['data', 'u8'], expectSize: 8 });

/** `struct vfio_region_dma_range` (DMA_BUF feature). */
export const vfio_region_dma_range = struct('vfio_region_dma_range', [['offset', 'u64'], ['length', 'u64']], { expectSize: 16 });

/** `struct vfio_device_feature_dma_buf` (the data of feature DMA_BUF, spec section 6.5). */
export const vfio_device_feature_dma_buf = struct('vfio_device_feature_dma_buf', [
  ['region_index', 'u32'], ['open_flags', 'u32'], ['flags', 'u32'], ['nr_ranges', 'u32'],
], { flex: ['dma_ranges', vfio_region_dma_range], expectSize: 16 });

/** `struct vfio_device_ioeventfd` (minsz: through `fd`); `flags` is the access size, 1, 2, 4 or 8. */
export const vfio_device_ioeventfd = struct('vfio_device_ioeventfd', [
  ['argsz', 'u32'], ['flags', 'u32'], ['offset', 'u64'], ['data', 'u64'], ['fd', 's32'], ['reserved', 'u32'],
], { minEnd: 'fd', expectSize: 32 });

/** `struct vfio_pci_dependent_device` (`group_id`, or `devid` with `VFIO_PCI_HOT_RESET_FLAG_DEV_ID`). */
export const vfio_pci_dependent_device = struct('vfio_pci_dependent_device', [
  ['group_id', 'u32'], ['segment', 'u16'], ['bus', 'u8'], ['devfn', 'u8'],
], { expectSize: 8 });

/** `struct vfio_pci_hot_reset_info` (minsz: through `count`). */
export const vfio_pci_hot_reset_info = struct('vfio_pci_hot_reset_info', [
  ['argsz', 'u32'], ['flags', 'u32'], ['count', 'u32'],
], { flex: ['devices', vfio_pci_dependent_device], expectSize: 12 });

/** `struct vfio_pci_hot_reset`: the group fds that own every affected device. */
export const vfio_pci_hot_reset = struct('vfio_pci_hot_reset', [
  ['argsz', 'u32'], ['flags', 'u32'], ['count', 'u32'],
], { flex: ['group_fds', 's32'], expectSize: 12 });

/** `vfio_pci_hot_reset_info.flags`. */
export const VFIO_PCI_HOT_RESET_FLAG = { DEV_ID: 1 << 0, DEV_ID_OWNED: 1 << 1 } as const;

/** Every VFIO ioctl with its argument, for the ioctl registry. */
export const VFIO_IOCTLS: readonly IoctlDef[] = [
  { name: 'VFIO_GET_API_VERSION', request: VFIO.GET_API_VERSION, arg: 'none', fd: 'container' },
  { name: 'VFIO_CHECK_EXTENSION', request: VFIO.CHECK_EXTENSION, arg: 'value', fd: 'container' },
  { name: 'VFIO_SET_IOMMU', request: VFIO.SET_IOMMU, arg: 'value', fd: 'container' },
  { name: 'VFIO_GROUP_GET_STATUS', request: VFIO.GROUP_GET_STATUS, arg: 'struct', layout: vfio_group_status, fd: 'group' },
  { name: 'VFIO_GROUP_SET_CONTAINER', request: VFIO.GROUP_SET_CONTAINER, arg: 'pointer', fd: 'group' },
  { name: 'VFIO_GROUP_UNSET_CONTAINER', request: VFIO.GROUP_UNSET_CONTAINER, arg: 'none', fd: 'group' },
  { name: 'VFIO_GROUP_GET_DEVICE_FD', request: VFIO.GROUP_GET_DEVICE_FD, arg: 'pointer', fd: 'group' },
  { name: 'VFIO_DEVICE_GET_INFO', request: VFIO.DEVICE_GET_INFO, arg: 'struct', layout: vfio_device_info, fd: 'device' },
  { name: 'VFIO_DEVICE_GET_REGION_INFO', request: VFIO.DEVICE_GET_REGION_INFO, arg: 'struct', layout: vfio_region_info, fd: 'device' },
  { name: 'VFIO_DEVICE_GET_IRQ_INFO', request: VFIO.DEVICE_GET_IRQ_INFO, arg: 'struct', layout: vfio_irq_info, fd: 'device' },
  { name: 'VFIO_DEVICE_SET_IRQS', request: VFIO.DEVICE_SET_IRQS, arg: 'struct', layout: vfio_irq_set, fd: 'device' },
  { name: 'VFIO_DEVICE_RESET', request: VFIO.DEVICE_RESET, arg: 'none', fd: 'device' },
  { name: 'VFIO_IOMMU_GET_INFO', request: VFIO.IOMMU_GET_INFO, arg: 'struct', layout: vfio_iommu_type1_info, fd: 'container' },
  { name: 'VFIO_IOMMU_MAP_DMA', request: VFIO.IOMMU_MAP_DMA, arg: 'struct', layout: vfio_iommu_type1_dma_map, fd: 'container' },
  { name: 'VFIO_IOMMU_UNMAP_DMA', request: VFIO.IOMMU_UNMAP_DMA, arg: 'struct', layout: vfio_iommu_type1_dma_unmap, fd: 'container' },
  { name: 'VFIO_IOMMU_DIRTY_PAGES', request: VFIO.IOMMU_DIRTY_PAGES, arg: 'struct', layout: vfio_iommu_type1_dirty_bitmap, fd: 'container' },
  { name: 'VFIO_DEVICE_FEATURE', request: VFIO.DEVICE_FEATURE, arg: 'struct', layout: vfio_device_feature, fd: 'device' },
  { name: 'VFIO_DEVICE_BIND_IOMMUFD', request: VFIO.DEVICE_BIND_IOMMUFD, arg: 'struct', layout: vfio_device_bind_iommufd, fd: 'device' },
  { name: 'VFIO_DEVICE_ATTACH_IOMMUFD_PT', request: VFIO.DEVICE_ATTACH_IOMMUFD_PT, arg: 'struct', layout: vfio_device_attach_iommufd_pt, fd: 'device' },
  { name: 'VFIO_DEVICE_DETACH_IOMMUFD_PT', request: VFIO.DEVICE_DETACH_IOMMUFD_PT, arg: 'struct', layout: vfio_device_detach_iommufd_pt, fd: 'device' },
  // After the container's IOMMU_GET_INFO / MAP_DMA, which share their numbers: a tie in ioctlLayout keeps those.
  { name: 'VFIO_DEVICE_GET_PCI_HOT_RESET_INFO', request: VFIO.DEVICE_GET_PCI_HOT_RESET_INFO, arg: 'struct', layout: vfio_pci_hot_reset_info, fd: 'device' },
  { name: 'VFIO_DEVICE_IOEVENTFD', request: VFIO.DEVICE_IOEVENTFD, arg: 'struct', layout: vfio_device_ioeventfd, fd: 'device' },
  { name: 'VFIO_DEVICE_PCI_HOT_RESET', request: VFIO.DEVICE_PCI_HOT_RESET, arg: 'struct', layout: vfio_pci_hot_reset, fd: 'device' },
];
