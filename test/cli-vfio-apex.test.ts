import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from './cli-harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'dmasim-vfio-apex-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dmasim run vfio-apex (the flagship, npm start)', () => {
  it('runs the user-space Apex driver through VFIO: jobs checked, the fault after unmap in dmesg and on FATAL_ERR, recovery, nothing left pinned', async () => {
    const a = await cli('run', 'vfio-apex');
    expect(a.err).toBe('');
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/0000:01:00\.0: group \d+, device fd \d+, 9 regions, 5 irq indexes, VFIO_DEVICE_RESET by bus reset \(the kernel did one at open\)/);
    expect(a.out).toMatch(/container IOVA ranges: 0x0-0xfedfffff, 0xfef00000-0x[0-9a-f]+/);
    expect(a.out).toMatch(/SCU: GCB out of reset .* PAGE_TABLE_INIT 1, MSIX_TABLE_INIT 1/);
    for (let j = 1; j <= 16; j++) expect(a.out).toMatch(new RegExp(`job ${j}: MATMUL_I8 8x16 \\* 16x12 done in [0-9.]+ us \\(SC_HOST_0 eventfd, W0C\\), status block head ${j}; C matches in 96/96`));
    expect(a.out).toMatch(/bug: slot (\d+) still holds IOVA (0x[0-9a-f]+), which UNMAP_DMA just removed/);
    const iova = /still holds IOVA (0x[0-9a-f]+)/.exec(a.out)?.[1];
    expect(a.out).toMatch(/COPY from slot \d+: FATAL_ERR eventfd; HIB_ERROR_STATUS 0x10 \(AXI read error: the IOMMU refused the read\), IQ_STATUS 0x3 \(halted\)/);
    expect(a.out).toContain(`DMAR: [DMA Read NO_PASID] Request device [01:00.0] fault addr ${iova} [fault reason 0x06] PTE Read access is not set`);
    expect(a.out).toMatch(/MSI-X entry 4 address\/data after the reset 0x0\/0x0, after SET_IRQS 0xfee00000\/0x[0-9a-f]+/);
    expect(a.out).toMatch(/job 18: MATMUL_I8 .* status block head 1; C matches in 96\/96/);
    expect(a.out).toMatch(/VmLck: 0 kB/);
    expect(a.out).toMatch(/summary: 18 jobs \(17 checked good, 1 faulted as intended\), 18 interrupts, virtual time [0-9.]+ ms, IOTLB hit rate [0-9.]+% \(\d+ hits, \d+ misses\), 1 DMAR fault\(s\), 0 spurious MSI, 0 pages pinned after exit/);
    // Ring, status block, command page, A, B, C: the faulted COPY reached nothing.
    expect(a.out).toMatch(/isolation: the Apex's DMA reached 6 distinct frames \(\d+ frame accesses\), every one pinned for its container at that instant/);
    expect(a.out).toMatch(/\nOK\n$/);
    // Deterministic: the same run prints the same story, to the nanosecond.
    expect((await cli('run', 'vfio-apex')).out).toBe(a.out);
  });

  it('--trace writes a Chrome/Perfetto trace of the run', async () => {
    const f = join(dir, 't.json');
    const r = await cli('run', 'vfio-apex', '--trace', f);
    expect(r.code).toBe(0);
    const t = JSON.parse(readFileSync(f, 'utf8')) as { name?: string; args?: { text?: string } }[];
    expect(t.some((e) => e.name === 'dma.read')).toBe(true);
    expect(t.some((e) => e.name === 'irq')).toBe(true);
    expect(t.some((e) => e.name === 'printk' && (e.args?.text ?? '').includes('DMAR: [DMA Read NO_PASID]'))).toBe(true);
  });

  it('--iommufd: the same driver through the device cdev bound to /dev/iommu, the same jobs, fault and recovery', async () => {
    const a = await cli('run', 'vfio-apex', '--iommufd');
    expect(a.err).toBe('');
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/0000:01:00\.0: cdev fd \d+ bound to \/dev\/iommu \(IOAS \d+, HWPT \d+\), 9 regions, 5 irq indexes/);
    expect(a.out).toMatch(/IOAS IOVA ranges: 0x0-0xfedfffff, 0xfef00000-0x[0-9a-f]+/);
    expect(a.out).toMatch(/IOAS_MAP: queue 136 KiB at IOVA/);
    for (let j = 1; j <= 16; j++) expect(a.out).toMatch(new RegExp(`job ${j}: MATMUL_I8 .* C matches in 96/96`));
    expect(a.out).toMatch(/which IOAS_UNMAP just removed/);
    expect(a.out).toMatch(/DMAR: \[DMA Read NO_PASID\] Request device \[01:00\.0\] fault addr 0x[0-9a-f]+ \[fault reason 0x06\]/);
    expect(a.out).toMatch(/job 18: MATMUL_I8 .* C matches in 96\/96/);
    expect(a.out).toMatch(/closed the cdev and \/dev\/iommu/);
    expect(a.out).toMatch(/summary: 18 jobs \(17 checked good, 1 faulted as intended\), 18 interrupts, .* 1 DMAR fault\(s\), 0 spurious MSI, 0 pages pinned after exit/);
    expect(a.out).toMatch(/every one pinned for its IOAS at that instant/);
    expect(a.out).toMatch(/\nOK\n$/);
  });

  it('--iommufd is refused by a scenario without that variant', async () => {
    const r = await cli('run', 'demo', '--iommufd');
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/scenario 'demo' has no --iommufd variant/);
  });
});
