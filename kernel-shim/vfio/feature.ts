import { E } from '../errno.ts';
import type { Current } from '../task/current.ts';
import { userAddr } from '../uapi/codec.ts';
import { VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_FLAG } from '../uapi/vfio.ts';
import type { VfioDevice } from './device.ts';

/**
 * `VFIO_DEVICE_FEATURE` in the VFIO core (Linux `vfio_ioctl_device_feature`, spec section 1.10): the basic
 * checks, then the core's own features (migration and DMA logging: no device here has their ops, so
 * `ENOTTY`), then the bus driver's `feature` (none: `EINVAL`).
 */

/** `offsetofend(struct vfio_device_feature, flags)`. */
const MINSZ = 8;
const { MASK, GET, SET, PROBE } = VFIO_DEVICE_FEATURE_FLAG;

/**
 * Linux `vfio_check_feature`: `EINVAL` for an op the feature lacks, 0 for PROBE, `EINVAL` for neither GET nor
 * SET or data shorter than `minsz`; 1 to go on.
 */
export function vfioCheckFeature(flags: number, argsz: number, supported: number, minsz: number): number {
  if ((flags & (GET | SET) & ~supported) !== 0) return E.EINVAL;
  if ((flags & PROBE) !== 0) return 0;
  if ((flags & (GET | SET)) === 0) return E.EINVAL;
  if (argsz < minsz) return E.EINVAL;
  return 1;
}

/** Linux `vfio_ioctl_device_feature`. */
export function vfioDeviceFeature(dev: VfioDevice, cur: Current, arg: bigint): number | Promise<number> {
  const a = userAddr(arg);
  const hdr = new Uint8Array(MINSZ);
  if (cur.mm.copyFromUser(a, hdr) < 0) return E.EFAULT;
  const dv = new DataView(hdr.buffer);
  const argsz = dv.getUint32(0, true);
  const flags = dv.getUint32(4, true);
  if (argsz < MINSZ) return E.EINVAL;
  if ((flags >>> 0 & ~(MASK | SET | GET | PROBE)) !== 0) return E.EINVAL;
  if ((flags & PROBE) === 0 && (flags & SET) !== 0 && (flags & GET) !== 0) return E.EINVAL;
  switch (flags & MASK) {
    case VFIO_DEVICE_FEATURE.MIGRATION:
    case VFIO_DEVICE_FEATURE.MIG_DEVICE_STATE:
    case VFIO_DEVICE_FEATURE.MIG_DATA_SIZE:
    case VFIO_DEVICE_FEATURE.DMA_LOGGING_START:
    case VFIO_DEVICE_FEATURE.DMA_LOGGING_STOP:
    case VFIO_DEVICE_FEATURE.DMA_LOGGING_REPORT:
      return E.ENOTTY;
    default: {
      if (dev.ops.feature === undefined) return E.EINVAL;
      return dev.ops.feature(dev, cur, flags >>> 0, a + MINSZ, argsz - MINSZ);
    }
  }
}
