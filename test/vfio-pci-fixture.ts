/** Shared set-up of the vfio-pci ops tests: a booted machine with edu, two testdevs and the Apex, each behind a forwarding char device. */
import type { FileOperations } from '../kernel-shim/fs/file.ts';
import { fileInode } from '../kernel-shim/fs/inode.ts';
import type { Kernel } from '../kernel-shim/kernel.ts';
import type { PciDev } from '../kernel-shim/pci/dev.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import { O, PROT } from '../kernel-shim/uapi/linux.ts';
import { VFIO_IRQ_SET } from '../kernel-shim/uapi/vfio.ts';
import type { VfioDevice } from '../kernel-shim/vfio/device.ts';
import { vfioPciOps } from '../kernel-shim/vfio/pci-ops.ts';
import type { MachineConfigInput, Machine } from '../machine/index.ts';
import { withMachine } from '../userspace/index.ts';

/**
 * vfio-pci's device ops, driven through a test-only character device per function (`/dev/vfio-test-<name>`:
 * edu, td (testdev with FLR), tdnoflr, apex) that forwards open / release / ioctl / pread / pwrite / mmap to
 * `vfioPciOps` as the VFIO core's device fd does (open count 0 -> 1 opens the device, 1 -> 0 closes it).
 */

const SHIFT = 2n ** 40n;
/** File offset of region `index` plus `o`. */
export const off = (index: number, o = 0): bigint => BigInt(index) * SHIFT + BigInt(o);
/** Read and write. */
export const RW = PROT.READ | PROT.WRITE;
/** SET_IRQS flag bits. */
export const { DATA_NONE, DATA_BOOL, DATA_EVENTFD, ACTION_MASK, ACTION_UNMASK, ACTION_TRIGGER } = VFIO_IRQ_SET;

/** The machine. */
export const CONFIG: MachineConfigInput = {
  memory: { size: '128MiB' },
  iommu: { enabled: true },
  pci: {
    bridges: [{ kind: 'root-port' as const, bdf: 0xe0, secondaryBus: 1 }],
    devices: [{ type: 'edu', bdf: '00:03.0' }, { type: 'testdev', bdf: '00:04.0' }, { type: 'testdev', bdf: '00:05.0', flr: false }, { type: 'apex', bdf: 0x0100, acs: false }],
  },
};

/** Registers a forwarding char device for `pdev` at `path`. */
export function devNode(kernel: Kernel, pdev: PciDev, path: string): VfioDevice {
  const vdev: VfioDevice = { pdev, ops: vfioPciOps, openCount: 0, priv: undefined };
  const ops: FileOperations = {
    pread: true,
    llseek: (f, o) => o,
    async open(_f, cur) {
      if (vdev.openCount++ > 0) return 0;
      const r = await vdev.ops.openDevice(vdev, cur);
      if (r < 0) vdev.openCount--;
      return r;
    },
    release() {
      if (--vdev.openCount === 0) vdev.ops.closeDevice(vdev);
    },
    ioctl: (_f, cur, req, arg) => vdev.ops.ioctl(vdev, cur, req, arg),
    read: (_f, cur, buf, pos) => vdev.ops.read(vdev, cur, buf, pos),
    write: (_f, cur, buf, pos) => vdev.ops.write(vdev, cur, buf, pos),
    mmap: (_f, cur, vma) => vdev.ops.mmap(vdev, cur, vma),
  };
  kernel.vfs.add(path, fileInode('chr', ops, 0o666, { rdev: { major: 240, minor: pdev.bdf & 0xff } }));
  return vdev;
}

/** What a test body gets. */
export interface Ctx { sys: Sys; kernel: Kernel; machine: Machine; vdevs: Record<string, VfioDevice> }

/** Runs `body` in a process on a fresh machine; rethrows its failure. */
export async function onVfio(body: (c: Ctx) => Promise<void>): Promise<void> {
  await withMachine(CONFIG, async ({ machine, kernel, spawn, run }) => {
    const vdevs: Record<string, VfioDevice> = {};
    for (const [name, bdf] of [['edu', '0000:00:03.0'], ['td', '0000:00:04.0'], ['tdnoflr', '0000:00:05.0'], ['apex', '0000:01:00.0']] as const) {
      const pdev = kernel.pci.devices.find((d) => d.name === bdf) as PciDev;
      vdevs[name] = devNode(kernel, pdev, `/dev/vfio-test-${name}`);
    }
    let err: unknown;
    const p = spawn('vfio', async (sys) => {
      try {
        await body({ sys, kernel, machine, vdevs });
      } catch (e) {
        err = e;
      }
      return 0;
    });
    await run();
    await p.exited;
    if (err !== undefined) throw err;
  });
}

/** Opens the node of a device. */
export const open = (sys: Sys, name: string): Promise<number> => sys.open(`/dev/vfio-test-${name}`, O.RDWR);

/** A `vfio_irq_set` object. */
export function irqSet(flags: number, index: number, start: number, count: number, data?: Uint8Array | Int32Array) {
  const bytes = data === undefined ? 0 : data.byteLength;
  return { argsz: 20 + bytes, flags, index, start, count, ...(data === undefined ? {} : { data }) };
}

/** Reads an eventfd's count. */
export async function readEventfd(sys: Sys, fd: number): Promise<bigint> {
  const b = new Uint8Array(8);
  await sys.read(fd, b);
  return new DataView(b.buffer).getBigUint64(0, true);
}

