import { _IO } from './ioctl.ts';
import { struct, type IoctlDef } from './layout.ts';

/**
 * `include/uapi/linux/iommufd.h` (spec/linux-uapi.md section 3): every ioctl is `_IO(';', 0x80 + n)` and
 * every struct starts with `u32 size` (the `'size'` convention: `copy_struct_from_user`, min size from
 * `IOCTL_OP(..., last)` in `main.c`). Numbers below 0x80 on `/dev/iommu` are VFIO container ioctls
 * (the compat layer; see `vfio.ts`).
 */

/** `IOMMUFD_TYPE` (`';'`). */
export const IOMMUFD_TYPE = 0x3b;
/** `IOMMUFD_CMD_BASE`. */
export const IOMMUFD_CMD_BASE = 0x80;

const c = (n: number): number => _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + n);

/** Request numbers, by Linux name less the `IOMMU_` prefix. */
export const IOMMUFD = {
  DESTROY: c(0),
  IOAS_ALLOC: c(1),
  IOAS_ALLOW_IOVAS: c(2),
  IOAS_COPY: c(3),
  IOAS_IOVA_RANGES: c(4),
  IOAS_MAP: c(5),
  IOAS_UNMAP: c(6),
  OPTION: c(7),
  VFIO_IOAS: c(8),
  HWPT_ALLOC: c(9),
  GET_HW_INFO: c(10),
  HWPT_SET_DIRTY_TRACKING: c(11),
  HWPT_GET_DIRTY_BITMAP: c(12),
  HWPT_INVALIDATE: c(13),
  FAULT_QUEUE_ALLOC: c(14),
  IOAS_MAP_FILE: c(15),
  VIOMMU_ALLOC: c(16),
  VDEVICE_ALLOC: c(17),
  IOAS_CHANGE_PROCESS: c(18),
  VEVENTQ_ALLOC: c(19),
  HW_QUEUE_ALLOC: c(20),
} as const;

/** `iommu_ioas_map.flags` (`enum iommufd_ioas_map_flags`). */
export const IOMMU_IOAS_MAP = { FIXED_IOVA: 1 << 0, WRITEABLE: 1 << 1, READABLE: 1 << 2 } as const;

/** `iommu_ioas_copy.flags` use the MAP flags. */
export const IOMMU_IOAS_COPY = IOMMU_IOAS_MAP;

/** `iommu_hwpt_alloc.flags` (`enum iommufd_hwpt_alloc_flags`). */
export const IOMMU_HWPT_ALLOC = { NEST_PARENT: 1 << 0, DIRTY_TRACKING: 1 << 1, FAULT_ID_VALID: 1 << 2, PASID: 1 << 3 } as const;

/** `iommu_option.option_id`. */
export const IOMMU_OPTION_ID = { RLIMIT_MODE: 0, HUGE_PAGES: 1 } as const;

/** `iommu_option.op`. */
export const IOMMU_OPTION_OP = { SET: 0, GET: 1 } as const;

/** `iommu_vfio_ioas.op`. */
export const IOMMU_VFIO_IOAS = { GET: 0, SET: 1, CLEAR: 2 } as const;

/** `struct iommu_destroy`. */
export const iommu_destroy = struct('iommu_destroy', [['size', 'u32'], ['id', 'u32']], { expectSize: 8 });

/** `struct iommu_ioas_alloc`. */
export const iommu_ioas_alloc = struct('iommu_ioas_alloc', [['size', 'u32'], ['flags', 'u32'], ['out_ioas_id', 'u32']], { expectSize: 12 });

/** `struct iommu_iova_range` (`last` inclusive). */
export const iommu_iova_range = struct('iommu_iova_range', [['start', 'u64'], ['last', 'u64']], { expectSize: 16 });

/** `struct iommu_ioas_iova_ranges` (`allowed_iovas` points to `num_iovas` `iommu_iova_range`s). */
export const iommu_ioas_iova_ranges = struct('iommu_ioas_iova_ranges', [
  ['size', 'u32'], ['ioas_id', 'u32'], ['num_iovas', 'u32'], ['__reserved', 'u32'], ['allowed_iovas', 'u64'], ['out_iova_alignment', 'u64'],
], { expectSize: 32 });

/** `struct iommu_ioas_allow_iovas`. */
export const iommu_ioas_allow_iovas = struct('iommu_ioas_allow_iovas', [
  ['size', 'u32'], ['ioas_id', 'u32'], ['num_iovas', 'u32'], ['__reserved', 'u32'], ['allowed_iovas', 'u64'],
], { expectSize: 24 });

/** `struct iommu_ioas_map`. */
export const iommu_ioas_map = struct('iommu_ioas_map', [
  ['size', 'u32'], ['flags', 'u32'], ['ioas_id', 'u32'], ['__reserved', 'u32'], ['user_va', 'u64'], ['length', 'u64'], ['iova', 'u64'],
], { expectSize: 40 });

/** `struct iommu_ioas_map_file`. */
export const iommu_ioas_map_file = struct('iommu_ioas_map_file', [
  ['size', 'u32'], ['flags', 'u32'], ['ioas_id', 'u32'], ['fd', 's32'], ['start', 'u64'], ['length', 'u64'], ['iova', 'u64'],
], { expectSize: 40 });

/** `struct iommu_ioas_copy`. */
export const iommu_ioas_copy = struct('iommu_ioas_copy', [
  ['size', 'u32'], ['flags', 'u32'], ['dst_ioas_id', 'u32'], ['src_ioas_id', 'u32'], ['length', 'u64'], ['dst_iova', 'u64'], ['src_iova', 'u64'],
], { expectSize: 40 });

/** `struct iommu_ioas_unmap`. */
export const iommu_ioas_unmap = struct('iommu_ioas_unmap', [
  ['size', 'u32'], ['ioas_id', 'u32'], ['iova', 'u64'], ['length', 'u64'],
], { expectSize: 24 });

/** `struct iommu_option`. */
export const iommu_option = struct('iommu_option', [
  ['size', 'u32'], ['option_id', 'u32'], ['op', 'u16'], ['__reserved', 'u16'], ['object_id', 'u32'], ['val64', 'u64'],
], { expectSize: 24 });

/** `struct iommu_vfio_ioas`. */
export const iommu_vfio_ioas = struct('iommu_vfio_ioas', [
  ['size', 'u32'], ['ioas_id', 'u32'], ['op', 'u16'], ['__reserved', 'u16'],
], { expectSize: 12 });

/** `struct iommu_hwpt_alloc` (min size: through `__reserved`; the rest came later). */
export const iommu_hwpt_alloc = struct('iommu_hwpt_alloc', [
  ['size', 'u32'], ['flags', 'u32'], ['dev_id', 'u32'], ['pt_id', 'u32'], ['out_hwpt_id', 'u32'], ['__reserved', 'u32'],
  ['data_type', 'u32'], ['data_len', 'u32'], ['data_uptr', 'u64'], ['fault_id', 'u32'], ['__reserved2', 'u32'],
], { minEnd: '__reserved', expectSize: 48 });

/** `struct iommu_hw_info` (min size: through `__reserved`). */
export const iommu_hw_info = struct('iommu_hw_info', [
  ['size', 'u32'], ['flags', 'u32'], ['dev_id', 'u32'], ['data_len', 'u32'], ['data_uptr', 'u64'],
  ['out_data_type', 'u32'], ['out_max_pasid_log2', 'u8'], ['__reserved', 'u8', 3], ['out_capabilities', 'u64'],
], { minEnd: '__reserved', expectSize: 40 });

/** Every iommufd ioctl with a layout dmasim knows, for the ioctl registry. */
export const IOMMUFD_IOCTLS: readonly IoctlDef[] = [
  { name: 'IOMMU_DESTROY', request: IOMMUFD.DESTROY, arg: 'struct', layout: iommu_destroy, fd: 'iommufd' },
  { name: 'IOMMU_IOAS_ALLOC', request: IOMMUFD.IOAS_ALLOC, arg: 'struct', layout: iommu_ioas_alloc, fd: 'iommufd' },
  { name: 'IOMMU_IOAS_ALLOW_IOVAS', request: IOMMUFD.IOAS_ALLOW_IOVAS, arg: 'struct', layout: iommu_ioas_allow_iovas, fd: 'iommufd' },
  { name: 'IOMMU_IOAS_COPY', request: IOMMUFD.IOAS_COPY, arg: 'struct', layout: iommu_ioas_copy, fd: 'iommufd' },
  { name: 'IOMMU_IOAS_IOVA_RANGES', request: IOMMUFD.IOAS_IOVA_RANGES, arg: 'struct', layout: iommu_ioas_iova_ranges, fd: 'iommufd' },
  { name: 'IOMMU_IOAS_MAP', request: IOMMUFD.IOAS_MAP, arg: 'struct', layout: iommu_ioas_map, fd: 'iommufd' },
  { name: 'IOMMU_IOAS_UNMAP', request: IOMMUFD.IOAS_UNMAP, arg: 'struct', layout: iommu_ioas_unmap, fd: 'iommufd' },
  { name: 'IOMMU_OPTION', request: IOMMUFD.OPTION, arg: 'struct', layout: iommu_option, fd: 'iommufd' },
  { name: 'IOMMU_VFIO_IOAS', request: IOMMUFD.VFIO_IOAS, arg: 'struct', layout: iommu_vfio_ioas, fd: 'iommufd' },
  { name: 'IOMMU_HWPT_ALLOC', request: IOMMUFD.HWPT_ALLOC, arg: 'struct', layout: iommu_hwpt_alloc, fd: 'iommufd' },
  { name: 'IOMMU_GET_HW_INFO', request: IOMMUFD.GET_HW_INFO, arg: 'struct', layout: iommu_hw_info, fd: 'iommufd' },
  { name: 'IOMMU_IOAS_MAP_FILE', request: IOMMUFD.IOAS_MAP_FILE, arg: 'struct', layout: iommu_ioas_map_file, fd: 'iommufd' },
];
