import { _IO, _IOW, _IOWR } from './ioctl.ts';
import { struct, type IoctlDef } from './layout.ts';
import { vfio_info_cap_header } from './vfio.ts';

/**
 * dmasim's own test device `/dev/dmasim-test` (not Linux): one ioctl per uAPI pattern the real drivers use,
 * so the marshalling and the copy helpers can be tested without a device model. Type byte 0xd5.
 *
 * - `GET_INFO`: VFIO-style `argsz` info struct with a capability chain (`_IO`, no size bits, as VFIO).
 * - `SIZED`: iommufd-style `size` struct (`copy_struct_from_user`).
 * - `VALUE`: argument by value; returns the number of set bits of the 64-bit argument.
 * - `PIN` / `UNPIN`: pin user pages with `RLIMIT_MEMLOCK` accounting, as type1 `MAP_DMA` does.
 * - `XFORM`: an `argsz` struct with a flexible `u32` array, read and written back.
 * - `STRLEN`: a `char *` argument read with `strndup_user(arg, PAGE_SIZE)`; returns its length in bytes.
 * - `SLEEP`: an `argsz` struct read, then a sleep of `ns` virtual nanoseconds (interruptible), then the
 *   write-back: a blocking ioctl, for marshalling across other threads' calls and a kill mid-call.
 */

/** The type byte. */
export const DMASIM_TEST_TYPE = 0xd5;

/** `struct dmasim_test_info`: `index` asks for that many capabilities (0-4); minsz through `value`. */
export const dmasim_test_info = struct('dmasim_test_info', [
  ['argsz', 'u32'], ['flags', 'u32'], ['index', 'u32'], ['value', 'u32'], ['cap_offset', 'u32'], ['pad', 'u32'],
], { minEnd: 'value', flex: ['caps', 'u8'], expectSize: 24 });

/** `struct dmasim_test_cap`: one capability of the chain (id {@link DMASIM_TEST_CAP_SEQ}, version 1). */
export const dmasim_test_cap = struct('dmasim_test_cap', [
  ['header', vfio_info_cap_header], ['seq', 'u32'], ['pad', 'u32'],
], { expectSize: 16 });

/** The capability id of {@link dmasim_test_cap}. */
export const DMASIM_TEST_CAP_SEQ = 1;
/** Most capabilities `GET_INFO` reports. */
export const DMASIM_TEST_MAX_CAPS = 4;

/** `dmasim_test_info.flags` (output; any input bit is `EINVAL`). */
export const DMASIM_TEST_INFO_FLAG = { CAPS: 1 << 0 } as const;

/** `struct dmasim_test_sized`: min size through `out_value`; `out_extra` is the newer field. */
export const dmasim_test_sized = struct('dmasim_test_sized', [
  ['size', 'u32'], ['flags', 'u32'], ['in_value', 'u32'], ['__reserved', 'u32'], ['out_value', 'u64'], ['out_extra', 'u64'],
], { minEnd: 'out_value', expectSize: 32 });

/**
 * `dmasim_test_sized.flags`: INVERT gives `~out_value`; EMSGSIZE writes the response and then fails with
 * `EMSGSIZE`, as `IOAS_IOVA_RANGES` does when its array is too small. Other bits are `EOPNOTSUPP`.
 */
export const DMASIM_TEST_SIZED_FLAG = { INVERT: 1 << 0, EMSGSIZE: 1 << 1 } as const;

/** What `SIZED` puts in `out_extra` (when the caller's struct has it). */
export const DMASIM_TEST_EXTRA = 0xd5d5_0000_0000_d5d5n;

/** `struct dmasim_test_pin` (PIN and UNPIN). */
export const dmasim_test_pin = struct('dmasim_test_pin', [
  ['argsz', 'u32'], ['flags', 'u32'], ['vaddr', 'u64'], ['length', 'u64'],
], { expectSize: 24 });

/** `dmasim_test_pin.flags`: PIN takes WRITE; UNPIN takes ALL (with vaddr and length 0). */
export const DMASIM_TEST_PIN_FLAG = { WRITE: 1 << 0, ALL: 1 << 1 } as const;

/** `struct dmasim_test_xform`: `data` holds `count` u32s; each comes back doubled, `sum` is their sum (mod 2^32). */
export const dmasim_test_xform = struct('dmasim_test_xform', [
  ['argsz', 'u32'], ['flags', 'u32'], ['count', 'u32'], ['sum', 'u32'],
], { flex: ['data', 'u32'], expectSize: 16 });

/** Most elements `XFORM` takes. */
export const DMASIM_TEST_XFORM_MAX = 1024;

/** `struct dmasim_test_sleep`: `ns` to sleep (at most {@link DMASIM_TEST_SLEEP_MAX}); written back as 0. */
export const dmasim_test_sleep = struct('dmasim_test_sleep', [['argsz', 'u32'], ['flags', 'u32'], ['ns', 'u64']], { expectSize: 16 });

/** Longest `SLEEP` (1 s of virtual time). */
export const DMASIM_TEST_SLEEP_MAX = 1_000_000_000n;

/** Request numbers. */
export const DMASIM_TEST = {
  GET_INFO: _IO(DMASIM_TEST_TYPE, 0),
  SIZED: _IO(DMASIM_TEST_TYPE, 1),
  VALUE: _IO(DMASIM_TEST_TYPE, 2),
  PIN: _IOW(DMASIM_TEST_TYPE, 3, dmasim_test_pin.size),
  UNPIN: _IOWR(DMASIM_TEST_TYPE, 4, dmasim_test_pin.size),
  XFORM: _IOWR(DMASIM_TEST_TYPE, 5, dmasim_test_xform.size),
  STRLEN: _IO(DMASIM_TEST_TYPE, 6),
  SLEEP: _IOWR(DMASIM_TEST_TYPE, 7, dmasim_test_sleep.size),
} as const;

/** The test device's ioctls, for the ioctl registry. */
export const DMASIM_TEST_IOCTLS: readonly IoctlDef[] = [
  { name: 'DMASIM_TEST_GET_INFO', request: DMASIM_TEST.GET_INFO, arg: 'struct', layout: dmasim_test_info },
  { name: 'DMASIM_TEST_SIZED', request: DMASIM_TEST.SIZED, arg: 'struct', layout: dmasim_test_sized },
  { name: 'DMASIM_TEST_VALUE', request: DMASIM_TEST.VALUE, arg: 'value' },
  { name: 'DMASIM_TEST_PIN', request: DMASIM_TEST.PIN, arg: 'struct', layout: dmasim_test_pin },
  { name: 'DMASIM_TEST_UNPIN', request: DMASIM_TEST.UNPIN, arg: 'struct', layout: dmasim_test_pin },
  { name: 'DMASIM_TEST_XFORM', request: DMASIM_TEST.XFORM, arg: 'struct', layout: dmasim_test_xform },
  { name: 'DMASIM_TEST_STRLEN', request: DMASIM_TEST.STRLEN, arg: 'pointer' },
  { name: 'DMASIM_TEST_SLEEP', request: DMASIM_TEST.SLEEP, arg: 'struct', layout: dmasim_test_sleep },
];
