/**
 * Shared set-up of the vfio-pci tests: a booted machine with edu, two testdevs and the Apex, each bound to
 * vfio-pci and opened through the real VFIO path: `/dev/vfio/vfio` container, `/dev/vfio/<group>`,
 * `VFIO_GROUP_SET_CONTAINER`, `VFIO_SET_IOMMU(TYPE1v2)`, `VFIO_GROUP_GET_DEVICE_FD` with the BDF.
 */
import type { Kernel, KernelOptions } from '../kernel-shim/kernel.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import { O, PROT } from '../kernel-shim/uapi/linux.ts';
import { VFIO, VFIO_EXT, VFIO_IRQ_SET } from '../kernel-shim/uapi/vfio.ts';
import { vfioGroups } from '../kernel-shim/vfio/core.ts';
import type { VfioDevice } from '../kernel-shim/vfio/device.ts';
import type { MachineConfigInput, Machine } from '../machine/index.ts';
import { withMachine } from '../userspace/index.ts';

const SHIFT = 2n ** 40n;
/** File offset of region `index` plus `o` (vfio-pci's `index << 40`, as GET_REGION_INFO reports it). */
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

/** The test's names for the functions, and their BDFs. */
export const DEVICES = { edu: '0000:00:03.0', td: '0000:00:04.0', tdnoflr: '0000:00:05.0', apex: '0000:01:00.0' } as const;
/** A name of {@link DEVICES}. */
export type DeviceName = keyof typeof DEVICES;

/** What a test body gets: `vdevs` are the VFIO devices vfio-pci registered, by name. */
export interface Ctx { sys: Sys; kernel: Kernel; machine: Machine; vdevs: Partial<Record<DeviceName, VfioDevice>> }

/** The VFIO chain of one process: one container per group, opened on first use. */
const chains = new WeakMap<Sys, Map<number, { container: number; group: number }>>();

async function sysfsWrite(sys: Sys, path: string, text: string): Promise<void> {
  const fd = await sys.open(path, O.WRONLY);
  try {
    await sys.write(fd, text);
  } finally {
    await sys.close(fd);
  }
}

/** Binds `bdf` to vfio-pci with `driver_override` (unbinding any driver it has first). */
async function bindVfioPci(sys: Sys, bdf: string): Promise<void> {
  const dir = `/sys/bus/pci/devices/${bdf}`;
  await sysfsWrite(sys, `${dir}/driver_override`, 'vfio-pci');
  const bound = await sys.readlink(`${dir}/driver`).then(() => true, () => false);
  if (bound) await sysfsWrite(sys, `${dir}/driver/unbind`, bdf);
  await sysfsWrite(sys, '/sys/bus/pci/drivers/vfio-pci/bind', bdf);
}

/** Runs `body` in a process on a fresh machine whose four functions are bound to vfio-pci; rethrows its failure. */
export async function onVfio(body: (c: Ctx) => Promise<void>, kernelOptions: KernelOptions = {}): Promise<void> {
  await withMachine(CONFIG, async ({ machine, kernel, spawn, run }) => {
    let err: unknown;
    const p = spawn('vfio', async (sys) => {
      try {
        for (const bdf of Object.values(DEVICES)) await bindVfioPci(sys, bdf);
        const vdevs: Ctx['vdevs'] = {};
        const all = vfioGroups(kernel).flatMap((g) => g.devices);
        for (const [name, bdf] of Object.entries(DEVICES) as [DeviceName, string][]) {
          const v = all.find((d) => d.pdev.name === bdf);
          if (v === undefined) throw new Error(`${bdf} is not a VFIO device after binding vfio-pci`);
          vdevs[name] = v;
        }
        await body({ sys, kernel, machine, vdevs });
      } catch (e) {
        err = e;
      }
      return 0;
    });
    await run();
    await p.exited;
    if (err !== undefined) throw err;
  }, kernelOptions);
}

/**
 * A device fd for `name`, through the real path: its group (from `iommu_group`) opened and put in a new
 * type1v2 container the first time, then `VFIO_GROUP_GET_DEVICE_FD` with the BDF (several fds per device
 * are allowed).
 */
export async function open(sys: Sys, name: DeviceName): Promise<number> {
  const bdf = DEVICES[name];
  const link = await sys.readlink(`/sys/bus/pci/devices/${bdf}/iommu_group`);
  const groupId = Number(link.split('/').pop());
  let byGroup = chains.get(sys);
  if (byGroup === undefined) chains.set(sys, (byGroup = new Map()));
  let chain = byGroup.get(groupId);
  if (chain === undefined) {
    const container = await sys.open('/dev/vfio/vfio', O.RDWR);
    const group = await sys.open(`/dev/vfio/${groupId}`, O.RDWR);
    await sys.ioctl(group, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container));
    await sys.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU);
    chain = { container, group };
    byGroup.set(groupId, chain);
  }
  return sys.ioctl(chain.group, VFIO.GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${bdf}\0`));
}

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
