import { E } from '../errno.ts';
import type { File, FileOperations } from '../fs/file.ts';
import { fileInode } from '../fs/inode.ts';
import type { Kernel } from '../kernel.ts';
import { DMASIM_TEST } from '../uapi/testdev.ts';
import { getInfo, sized, sleep, strlen, value, xform } from './ioctls.ts';
import { WaitHead } from '../wait.ts';
import { PinSet } from './pin.ts';

/** The device node. */
export const TEST_DEVICE_PATH = '/dev/dmasim-test';
/** Its number: a misc device (major 10) with a minor from the dynamic range. */
export const TEST_DEVICE_RDEV = { major: 10, minor: 250 } as const;

/** The driver state of one open file. */
export interface TestDevFile {
  readonly pins: PinSet;
  /** Where `SLEEP` waits. */
  readonly sleepers: WaitHead;
}

/** The test device's state for `file` (opened on `/dev/dmasim-test`), for tests that look inside. */
export function testDevFile(file: File): TestDevFile | undefined {
  const p = file.private;
  return typeof p === 'object' && p !== null && 'pins' in p && p.pins instanceof PinSet ? (p as TestDevFile) : undefined;
}

const ops: FileOperations = {
  open(file) {
    const state: TestDevFile = { pins: new PinSet(), sleepers: new WaitHead('dmasim-test') };
    file.private = state;
    return 0;
  },
  release(file) {
    testDevFile(file)?.pins.release();
  },
  ioctl(file, cur, request, arg) {
    const st = testDevFile(file);
    if (st === undefined) return E.EBADF;
    switch (request) {
      case DMASIM_TEST.GET_INFO: return getInfo(cur, arg);
      case DMASIM_TEST.SIZED: return sized(cur, arg);
      case DMASIM_TEST.VALUE: return value(arg);
      case DMASIM_TEST.PIN: return st.pins.pin(cur, arg);
      case DMASIM_TEST.UNPIN: return st.pins.unpin(cur, arg);
      case DMASIM_TEST.XFORM: return xform(cur, arg);
      case DMASIM_TEST.STRLEN: return strlen(cur, arg);
      case DMASIM_TEST.SLEEP: return sleep(cur, arg, st.sleepers);
      default: return E.ENOTTY;
    }
  },
};

/**
 * Registers the test-only character device `/dev/dmasim-test` (mode 0666; present only when
 * `KernelOptions.testDevice` is set): one ioctl per uAPI argument pattern (see `uapi/testdev.ts`), so the
 * ioctl marshalling and the kernel's copy helpers are tested without a device model. Each open file keeps
 * its own pins, released at the last close.
 */
export function registerTestDevice(kernel: Kernel): void {
  kernel.vfs.add(TEST_DEVICE_PATH, fileInode('chr', ops, 0o666, { rdev: TEST_DEVICE_RDEV }));
  kernel.log.printk('info', `dmasim-test: ${TEST_DEVICE_PATH} registered`);
}
