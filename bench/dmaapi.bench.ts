import { createMachine } from '../machine/index.ts';
import { bootKernel } from '../kernel-shim/index.ts';
import { DMA_DIR } from '../kernel-shim/dma/mapping.ts';
import { allocKernelPages } from '../kernel-shim/uio/kmem.ts';
import type { BenchmarkDef, RunResult } from './harness.ts';
import { registerBenchmarks } from './registry.ts';

/**
 * dmaapi.map4k: a kernel driver's `dma_map_page` + `dma_unmap_page` of one 4 KiB page, `n` pairs, on a
 * machine whose edu at 00:03.0 sits in a translated default domain (the machine's default VT-d unit: queued
 * invalidation takes 50 ns per descriptor, so every strict unmap posts a page-selective invalidation and a
 * wait descriptor and polls for its status write). `lazy` boots with `iommu.strict=0`: unmaps queue in the
 * flush queue and one domain-wide invalidation every 256 of them. Called from kernel context at boot (no
 * process), as a driver's probe would.
 */
export function dmaMapPairs(n: number, lazy: boolean): { ms: number; simNs: number; syncs: number } {
  const machine = createMachine({ memory: { size: 64 << 20 }, iommu: { enabled: true }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } });
  const kernel = bootKernel(machine, { cmdline: lazy ? 'iommu.strict=0' : '' });
  const iommu = kernel.iommu;
  const dev = kernel.pci.devices.find((d) => d.vendor === 0x1234);
  const pages = allocKernelPages(kernel, 4096);
  if (iommu === null || dev === undefined || typeof pages === 'number') throw new Error('dmaapi.map4k: no IOMMU, edu or memory');
  const phys = (pages.frames[0] as number) * 4096;
  const dma = kernel.dma;
  const syncs0 = iommu.unit.syncs;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const a = dma.mapPage(dev, phys, 4096, DMA_DIR.BIDIRECTIONAL);
    if (a < 0) throw new Error(`dmaapi.map4k: mapping ${i} failed`);
    dma.unmapPage(dev, a, 4096, DMA_DIR.BIDIRECTIONAL);
  }
  const ms = performance.now() - t0;
  return { ms, simNs: machine.sim.now, syncs: iommu.unit.syncs - syncs0 };
}

const PAIRS = 300_000;

function def(lazy: boolean): BenchmarkDef {
  return {
    name: lazy ? 'dmaapi.map4k.lazy' : 'dmaapi.map4k',
    unit: 'Mpairs/s',
    description: `DMA-API map + unmap of one 4 KiB page in a translated default domain, ${lazy ? 'lazy (flush queue)' : 'strict'}, ${PAIRS} pairs`,
    ...(lazy ? {} : { target: 1 }),
    prepare() {
      dmaMapPairs(30_000, lazy);
      return (): RunResult => {
        const r = dmaMapPairs(PAIRS, lazy);
        return { value: PAIRS / r.ms / 1000, ms: r.ms, extra: { pairs: PAIRS, simNs: r.simNs, invalidationWaits: r.syncs } };
      };
    },
  };
}

registerBenchmarks(def(false), def(true));
