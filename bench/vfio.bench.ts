import { createMachine } from '../machine/index.ts';
import { bootKernel, type Sys } from '../kernel-shim/index.ts';
import { encode } from '../kernel-shim/uapi/codec.ts';
import { MAP, O, PROT } from '../kernel-shim/uapi/linux.ts';
import { VFIO, VFIO_DMA_MAP_FLAG, VFIO_EXT, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap } from '../kernel-shim/uapi/vfio.ts';
import type { BenchmarkDef, RunResult } from './harness.ts';
import { timePairs, UNMAP_AT, type PairTiming } from './map-pairs.ts';
import { registerBenchmarks } from './registry.ts';

/**
 * vfio.map4k: one process (root) with an edu at 00:03.0 behind VT-d bound to vfio-pci, a type1 v2
 * container and a 4 MiB anonymous buffer faulted in; then `VFIO_IOMMU_MAP_DMA` + `VFIO_IOMMU_UNMAP_DMA`
 * pairs of one 4 KiB page each, cycling over 1024 distinct IOVAs and the buffer's 1024 pages (strict
 * invalidation: every unmap posts an IOTLB invalidation and a wait descriptor and polls for it before the
 * page is unpinned). Each ioctl is given the `bigint` user address of a struct encoded once into the
 * process's own memory; between calls only its `iova` and `vaddr` fields are rewritten through the driver's mapping of that page.
 */
const BUF_PAGES = 1024;
const BUF_BYTES = BUF_PAGES * 4096;
const IOVA_BASE = 0x1_0000_0000n;
const EDU_ID = '1234 11e8';

/** Offsets of the fields rewritten between calls. */
const MAP_VADDR = vfio_iommu_type1_dma_map.byName.get('vaddr')?.offset ?? -1;
const MAP_IOVA = vfio_iommu_type1_dma_map.byName.get('iova')?.offset ?? -1;
const UNMAP_IOVA = vfio_iommu_type1_dma_unmap.byName.get('iova')?.offset ?? -1;

async function sysfsWrite(sys: Sys, path: string, text: string): Promise<void> {
  const fd = await sys.open(path, O.WRONLY);
  await sys.write(fd, text);
  await sys.close(fd);
}

/** Runs `n` MAP + UNMAP pairs (after `warm` untimed ones) and times the `n`. */
export async function vfioMapPairs(n: number, warm: number): Promise<PairTiming> {
  const machine = createMachine({ memory: { size: 64 << 20 }, iommu: { enabled: true }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } });
  const kernel = bootKernel(machine);
  const iommu = kernel.iommu;
  if (iommu === null) throw new Error('vfio.map4k: no IOMMU');
  let out: PairTiming | undefined;
  const p = kernel.spawn({ comm: 'bench' }, async (sys) => {
    await sysfsWrite(sys, '/sys/bus/pci/drivers/vfio-pci/new_id', EDU_ID);
    const link = await sys.readlink('/sys/bus/pci/devices/0000:00:03.0/iommu_group');
    const groupId = Number(link.split('/').pop());
    const container = await sys.open('/dev/vfio/vfio', O.RDWR);
    const group = await sys.open(`/dev/vfio/${groupId}`, O.RDWR);
    await sys.ioctl(group, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container));
    await sys.ioctl(container, VFIO.SET_IOMMU, VFIO_EXT.TYPE1v2_IOMMU);
    const buf = await sys.mmap(null, BUF_BYTES, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
    for (let i = 0; i < BUF_PAGES; i++) buf.write32(i * 4096, i);
    // The two structs, encoded once into a page of the driver's own memory.
    const args = await sys.mmap(null, 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
    const mapAt = args.addr;
    const unmapAt = args.addr + BigInt(UNMAP_AT);
    sys.mem.writeBytes(mapAt, encode(vfio_iommu_type1_dma_map, {
      argsz: vfio_iommu_type1_dma_map.size, flags: VFIO_DMA_MAP_FLAG.READ | VFIO_DMA_MAP_FLAG.WRITE, vaddr: buf.addr, iova: IOVA_BASE, size: 4096n,
    }));
    sys.mem.writeBytes(unmapAt, encode(vfio_iommu_type1_dma_unmap, { argsz: vfio_iommu_type1_dma_unmap.size, flags: 0, iova: IOVA_BASE, size: 4096n }));
    out = await timePairs(kernel, {
      sys, fd: container, mapRequest: VFIO.IOMMU_MAP_DMA, unmapRequest: VFIO.IOMMU_UNMAP_DMA, args,
      mapVaOff: MAP_VADDR, mapIovaOff: MAP_IOVA, unmapIovaOff: UNMAP_IOVA, buf: buf.addr, iovaBase: IOVA_BASE, pages: BUF_PAGES,
    }, n, warm, 'vfio.map4k');
    return 0;
  });
  await machine.sim.run();
  if (p.error !== undefined) throw p.error;
  const status = await p.exited;
  if (status !== 0 || out === undefined) throw new Error(`vfio.map4k: the process exited with status ${status}`);
  return out;
}

const PAIRS = 100_000;

const map4k: BenchmarkDef = {
  name: 'vfio.map4k',
  unit: 'kpairs/s',
  description: `VFIO type1 MAP_DMA + UNMAP_DMA of one 4 KiB page (pinned, strict invalidation) from one process, ioctl arguments by user address, ${PAIRS} pairs`,
  target: 350,
  async prepare() {
    await vfioMapPairs(10_000, 2048);
    return async (): Promise<RunResult> => {
      const r = await vfioMapPairs(PAIRS, 4096);
      return { value: PAIRS / r.ms, ms: r.ms, extra: { pairs: PAIRS, simNs: r.simNs, invalidationWaits: r.syncs } };
    };
  },
};

registerBenchmarks(map4k);
