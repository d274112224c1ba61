import { E } from '../errno.ts';
import type { Current } from '../task/current.ts';
import { buildCapChain } from '../uapi/capchain.ts';
import {
  copyArgszFromUser, copyArrayFromUser, copyBytesToUser, copyStructFromUser, copyStructToUser, strndupUserBytes,
} from '../uapi/codec.ts';
import { PAGE_SIZE } from '../uapi/linux.ts';
import {
  DMASIM_TEST_CAP_SEQ, DMASIM_TEST_EXTRA, DMASIM_TEST_INFO_FLAG, DMASIM_TEST_MAX_CAPS, DMASIM_TEST_SIZED_FLAG,
  DMASIM_TEST_SLEEP_MAX, DMASIM_TEST_XFORM_MAX, dmasim_test_cap, dmasim_test_info, dmasim_test_sized,
  dmasim_test_sleep, dmasim_test_xform,
} from '../uapi/testdev.ts';
import type { WaitHead } from '../wait.ts';

const U64 = (1n << 64n) - 1n;

/**
 * `DMASIM_TEST_GET_INFO`, as `vfio_pci_ioctl_get_region_info` handles its capability chain: copy `minsz`
 * (`EFAULT`), `argsz < minsz` (`EINVAL`), input flags or `index > 4` (`EINVAL`). With caps, a buffer too
 * small for them is not an error: `CAPS` is set, `argsz` raised to the size needed and `cap_offset` 0;
 * otherwise the chain is written at `sizeof(info)`. The struct goes back as `min(argsz, sizeof)` bytes.
 */
export function getInfo(cur: Current, arg: bigint): number {
  const c = copyArgszFromUser(cur.mm, arg, dmasim_test_info);
  if (typeof c === 'number') return c;
  const info = c.value;
  if (info.flags !== 0 || info.index > DMASIM_TEST_MAX_CAPS) return E.EINVAL;
  info.value = (0xd500_0000 | info.index) >>> 0;
  info.cap_offset = 0;
  const base = dmasim_test_info.size;
  if (info.index > 0) {
    info.flags |= DMASIM_TEST_INFO_FLAG.CAPS;
    const chain = buildCapChain(base, Array.from({ length: info.index }, (_, i) => ({
      layout: dmasim_test_cap, value: { header: { id: DMASIM_TEST_CAP_SEQ, version: 1 }, seq: i },
    })));
    const total = base + chain.length;
    if (c.usize < total) info.argsz = total;
    else {
      const r = copyBytesToUser(cur.mm, arg, base, chain);
      if (r < 0) return r;
      info.cap_offset = base;
    }
  }
  return copyStructToUser(cur.mm, arg, dmasim_test_info, info, c.usize);
}

/**
 * `DMASIM_TEST_SIZED`, as an iommufd command: `copy_struct_from_user` (`EFAULT`, `EINVAL` below the min
 * size, `E2BIG` for a nonzero tail past the kernel's struct), then unknown flags or a nonzero `__reserved`
 * (`EOPNOTSUPP`). `out_value = in_value << 32 | in_value` (inverted with INVERT); `out_extra` is a fixed
 * pattern. The response is `min(size, sizeof)` bytes; with EMSGSIZE the call then fails.
 */
export function sized(cur: Current, arg: bigint): number {
  const c = copyStructFromUser(cur.mm, arg, dmasim_test_sized);
  if (typeof c === 'number') return c;
  const v = c.value;
  if ((v.flags & ~(DMASIM_TEST_SIZED_FLAG.INVERT | DMASIM_TEST_SIZED_FLAG.EMSGSIZE)) !== 0 || v.__reserved !== 0) return E.EOPNOTSUPP;
  const x = BigInt(v.in_value);
  const out = (x << 32n) | x;
  v.out_value = (v.flags & DMASIM_TEST_SIZED_FLAG.INVERT) !== 0 ? ~out & U64 : out;
  v.out_extra = DMASIM_TEST_EXTRA;
  const r = copyStructToUser(cur.mm, arg, dmasim_test_sized, v, c.usize);
  return r === 0 && (v.flags & DMASIM_TEST_SIZED_FLAG.EMSGSIZE) !== 0 ? E.EMSGSIZE : r;
}

/** `DMASIM_TEST_VALUE`: the argument by value; returns how many of its 64 bits are set. */
export function value(arg: bigint): number {
  let n = 0;
  for (let x = BigInt.asUintN(64, arg); x !== 0n; x &= x - 1n) n++;
  return n;
}

/**
 * `DMASIM_TEST_XFORM`, in the order of `vfio_set_irqs_validate_and_prepare`: copy `minsz` (`EFAULT`),
 * `argsz < minsz`, flags, `count > 1024` or `argsz - minsz < count * 4` (`EINVAL`); then the array
 * (`EFAULT`). Each element comes back doubled (mod 2^32) and `sum` is the inputs' sum (mod 2^32).
 */
export function xform(cur: Current, arg: bigint): number {
  const c = copyArgszFromUser(cur.mm, arg, dmasim_test_xform);
  if (typeof c === 'number') return c;
  const v = c.value;
  if (v.flags !== 0 || v.count > DMASIM_TEST_XFORM_MAX || c.usize - dmasim_test_xform.minsz < v.count * 4) return E.EINVAL;
  const flex = dmasim_test_xform.flex;
  if (flex === undefined) return E.EINVAL;
  const data = copyArrayFromUser(cur.mm, arg, flex.offset, 'u32', v.count);
  if (typeof data === 'number') return data;
  let sum = 0;
  for (let i = 0; i < data.length; i++) {
    const d = data[i] as number;
    sum = (sum + d) >>> 0;
    data[i] = (d * 2) >>> 0;
  }
  v.sum = sum;
  const r = copyBytesToUser(cur.mm, arg, flex.offset, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  if (r < 0) return r;
  return copyStructToUser(cur.mm, arg, dmasim_test_xform, v, c.usize);
}

/** `DMASIM_TEST_STRLEN`: `strndup_user(arg, PAGE_SIZE)` (`EFAULT`, `EINVAL` without a NUL), then the byte length. */
export function strlen(cur: Current, arg: bigint): number {
  const s = strndupUserBytes(cur.mm, arg, PAGE_SIZE);
  return typeof s === 'number' ? s : s.length;
}

/**
 * `DMASIM_TEST_SLEEP`: copy `minsz` (`EFAULT`, `EINVAL`), flags or `ns` over 1 s (`EINVAL`), then an
 * interruptible sleep on `head` (`EINTR` if the task is killed), then `ns = 0` written back (`EFAULT` if the
 * memory went away meanwhile).
 */
export async function sleep(cur: Current, arg: bigint, head: WaitHead): Promise<number> {
  const c = copyArgszFromUser(cur.mm, arg, dmasim_test_sleep);
  if (typeof c === 'number') return c;
  const v = c.value;
  if (v.flags !== 0 || v.ns > DMASIM_TEST_SLEEP_MAX) return E.EINVAL;
  const r = await cur.waitEvent(head, () => false, 'ioctl(DMASIM_TEST_SLEEP) on /dev/dmasim-test', Number(v.ns));
  if (r !== E.ETIMEDOUT) return r;
  v.ns = 0n;
  return copyStructToUser(cur.mm, arg, dmasim_test_sleep, v, c.usize);
}
