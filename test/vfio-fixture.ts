/**
 * Shared setup of the VFIO tests: a machine with an edu at 00:03.0 behind a translating VT-d unit, booted,
 * and process-side helpers that bind the edu to vfio-pci and open the container/group/device chain
 * through the public process API only.
 */
import { expect } from 'vitest';
import { createMachine, type Machine } from '../machine/index.ts';
import { bootKernel, type Kernel, type KernelOptions } from '../kernel-shim/kernel.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import type { SpawnOptions } from '../kernel-shim/task/task.ts';
import { O } from '../kernel-shim/uapi/linux.ts';
import { VFIO, VFIO_EXT } from '../kernel-shim/uapi/vfio.ts';
import { createDmaResult, resetDmaResult, type DmaResult } from '../sim/index.ts';

export const EDU = '0000:00:03.0';
export const EDU_SYSFS = `/sys/bus/pci/devices/${EDU}`;
export const PAGE = 4096;

/** A booted machine. */
export interface Booted {
  readonly machine: Machine;
  readonly kernel: Kernel;
}

/** Boots the fixture machine (`iommu: false` for one without an IOMMU). */
export function boot(kernelOptions: KernelOptions = {}, iommu = true, memory = 64 << 20): Booted {
  const machine = createMachine({ memory: { size: memory }, iommu: { enabled: iommu }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } });
  return { machine, kernel: bootKernel(machine, kernelOptions) };
}

/** Runs `main` as a process on a fresh (or given) machine; fails the test if it throws or exits non-zero. */
export async function run(
  main: (sys: Sys, b: Booted) => Promise<unknown>,
  opts: { spawn?: SpawnOptions; kernel?: KernelOptions; booted?: Booted } = {},
): Promise<Booted> {
  const b = opts.booted ?? boot(opts.kernel);
  const p = b.kernel.spawn({ comm: 't', ...opts.spawn }, (sys) => main(sys, b));
  await b.machine.sim.run();
  if (p.error !== undefined) throw p.error;
  expect(await p.exited).toBe(0);
  return b;
}

/** Writes `text` to a sysfs file. */
export async function sysfsWrite(sys: Sys, path: string, text: string): Promise<void> {
  const fd = await sys.open(path, O.WRONLY);
  try {
    await sys.write(fd, text);
  } finally {
    await sys.close(fd);
  }
}

/** Binds the edu to vfio-pci with `new_id` (as spec 1.1) and returns its IOMMU group number. */
export async function bindVfio(sys: Sys): Promise<number> {
  await sysfsWrite(sys, '/sys/bus/pci/drivers/vfio-pci/new_id', '1234 11e8');
  return iommuGroupOf(sys);
}

/** The IOMMU group number of the edu, from its `iommu_group` link. */
export async function iommuGroupOf(sys: Sys): Promise<number> {
  const link = await sys.readlink(`${EDU_SYSFS}/iommu_group`);
  return Number(link.split('/').pop());
}

/** The fds of an opened VFIO chain. */
export interface Chain {
  readonly container: number;
  readonly group: number;
  readonly groupId: number;
}

/** Binds, opens the container and the group, SET_CONTAINER, then SET_IOMMU(`type`) unless it is 0. */
export async function openChain(sys: Sys, type: number = VFIO_EXT.TYPE1v2_IOMMU): Promise<Chain> {
  const groupId = await bindVfio(sys);
  const container = await sys.open('/dev/vfio/vfio', O.RDWR);
  const group = await sys.open(`/dev/vfio/${groupId}`, O.RDWR);
  await sys.ioctl(group, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container));
  if (type !== 0) await sys.ioctl(container, VFIO.SET_IOMMU, type);
  return { container, group, groupId };
}

/** The edu's function, for DMA through its port as the device would do it. */
export function eduDma(b: Booted): { read(iova: number, len: number): { res: DmaResult; data: Uint8Array }; write(iova: number, data: Uint8Array): DmaResult } {
  const slot = b.machine.pci.find('00:03.0');
  if (slot === undefined) throw new Error('no edu');
  const pdev = b.kernel.pci.device(EDU);
  if (pdev === undefined) throw new Error('no edu pdev');
  return {
    read(iova, len) {
      // Bus mastering: vfio-pci's config-space emulation is another engineer's; set it as the PCI core would.
      pdev.setMaster();
      const res = createDmaResult();
      resetDmaResult(res);
      const data = new Uint8Array(len);
      slot.fn.dma.read(slot.requesterId, iova, data, 0, len, res);
      return { res, data };
    },
    write(iova, data) {
      pdev.setMaster();
      const res = createDmaResult();
      resetDmaResult(res);
      slot.fn.dma.write(slot.requesterId, iova, data, 0, data.length, res);
      return res;
    },
  };
}
