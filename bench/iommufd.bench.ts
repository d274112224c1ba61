import { createMachine } from '../machine/index.ts';
import { bootKernel, type Sys } from '../kernel-shim/index.ts';
import { encode } from '../kernel-shim/uapi/codec.ts';
import { IOMMUFD, IOMMU_IOAS_MAP, iommu_ioas_map, iommu_ioas_unmap } from '../kernel-shim/uapi/iommufd.ts';
import { MAP, O, PROT } from '../kernel-shim/uapi/linux.ts';
import { VFIO } from '../kernel-shim/uapi/vfio.ts';
import type { BenchmarkDef, RunResult } from './harness.ts';
import { timePairs, UNMAP_AT, type PairTiming } from './map-pairs.ts';
import { registerBenchmarks } from './registry.ts';

/**
 * iommufd.map4k: `vfio.map4k` through iommufd: one process (root) with an edu at 00:03.0 behind VT-d bound
 * to vfio-pci and opened through its device cdev, bound to `/dev/iommu` and attached to one IOAS (so every
 * map pins and reaches the domain at once), a 4 MiB anonymous buffer faulted in; then `IOMMU_IOAS_MAP`
 * (FIXED_IOVA, read-write) + `IOMMU_IOAS_UNMAP` pairs of one 4 KiB page, over 1024 distinct IOVAs and the
 * buffer's 1024 pages, strict invalidation. Arguments by user address, encoded once into a page of the
 * driver's memory; only `iova` and `user_va` are rewritten between calls, through the driver's mapping.
 */
const BUF_PAGES = 1024;
const BUF_BYTES = BUF_PAGES * 4096;
const IOVA_BASE = 0x1_0000_0000n;

const MAP_VA = iommu_ioas_map.byName.get('user_va')?.offset ?? -1;
const MAP_IOVA = iommu_ioas_map.byName.get('iova')?.offset ?? -1;
const UNMAP_IOVA = iommu_ioas_unmap.byName.get('iova')?.offset ?? -1;

async function sysfsWrite(sys: Sys, path: string, text: string): Promise<void> {
  const fd = await sys.open(path, O.WRONLY);
  await sys.write(fd, text);
  await sys.close(fd);
}

/** Runs `n` MAP + UNMAP pairs (after `warm` untimed ones) and times the `n`. */
export async function iommufdMapPairs(n: number, warm: number): Promise<PairTiming> {
  const machine = createMachine({ memory: { size: 64 << 20 }, iommu: { enabled: true }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } });
  const kernel = bootKernel(machine);
  const iommu = kernel.iommu;
  if (iommu === null) throw new Error('iommufd.map4k: no IOMMU');
  let out: PairTiming | undefined;
  const p = kernel.spawn({ comm: 'bench' }, async (sys) => {
    await sysfsWrite(sys, '/sys/bus/pci/drivers/vfio-pci/new_id', '1234 11e8');
    const cdev = (await sys.readdir('/sys/bus/pci/devices/0000:00:03.0/vfio-dev'))[0] as string;
    const dev = await sys.open(`/dev/vfio/devices/${cdev}`, O.RDWR);
    const iommufd = await sys.open('/dev/iommu', O.RDWR);
    await sys.ioctl(dev, VFIO.DEVICE_BIND_IOMMUFD, { argsz: 24, flags: 0, iommufd, out_devid: 0, token_uuid_ptr: 0n });
    const alloc = { size: 12, flags: 0, out_ioas_id: 0 };
    await sys.ioctl(iommufd, IOMMUFD.IOAS_ALLOC, alloc);
    await sys.ioctl(dev, VFIO.DEVICE_ATTACH_IOMMUFD_PT, { argsz: 12, flags: 0, pt_id: alloc.out_ioas_id });
    const buf = await sys.mmap(null, BUF_BYTES, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
    for (let i = 0; i < BUF_PAGES; i++) buf.write32(i * 4096, i);
    const args = await sys.mmap(null, 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
    const mapAt = args.addr;
    const unmapAt = args.addr + BigInt(UNMAP_AT);
    const M = IOMMU_IOAS_MAP;
    sys.mem.writeBytes(mapAt, encode(iommu_ioas_map, {
      size: iommu_ioas_map.size, flags: M.FIXED_IOVA | M.READABLE | M.WRITEABLE, ioas_id: alloc.out_ioas_id, __reserved: 0, user_va: buf.addr, length: 4096n, iova: IOVA_BASE,
    }));
    sys.mem.writeBytes(unmapAt, encode(iommu_ioas_unmap, { size: iommu_ioas_unmap.size, ioas_id: alloc.out_ioas_id, iova: IOVA_BASE, length: 4096n }));
    out = await timePairs(kernel, {
      sys, fd: iommufd, mapRequest: IOMMUFD.IOAS_MAP, unmapRequest: IOMMUFD.IOAS_UNMAP, args,
      mapVaOff: MAP_VA, mapIovaOff: MAP_IOVA, unmapIovaOff: UNMAP_IOVA, buf: buf.addr, iovaBase: IOVA_BASE, pages: BUF_PAGES,
    }, n, warm, 'iommufd.map4k');
    await sys.close(dev);
    await sys.close(iommufd);
    return 0;
  });
  await machine.sim.run();
  if (p.error !== undefined) throw p.error;
  const status = await p.exited;
  if (status !== 0 || out === undefined) throw new Error(`iommufd.map4k: the process exited with status ${status}`);
  return out;
}

const PAIRS = 100_000;

const map4k: BenchmarkDef = {
  name: 'iommufd.map4k',
  unit: 'kpairs/s',
  description: `iommufd IOAS_MAP (FIXED_IOVA) + IOAS_UNMAP of one 4 KiB page with a device attached (pinned, strict invalidation), arguments by user address, ${PAIRS} pairs`,
  target: 250,
  async prepare() {
    await iommufdMapPairs(10_000, 2048);
    return async (): Promise<RunResult> => {
      const r = await iommufdMapPairs(PAIRS, 4096);
      return { value: PAIRS / r.ms, ms: r.ms, extra: { pairs: PAIRS, simNs: r.simNs, invalidationWaits: r.syncs } };
    };
  },
};

registerBenchmarks(map4k);
