/**
 * `dmasim run noiommu-apex`: the flagship's Apex driver in VFIO no-IOMMU mode (jobs checked), the stale
 * physical address overwriting another process's memory (the isolation observer names exactly that frame,
 * the victim shows its bytes), then the same bug under VFIO type1 faulting in the IOMMU with the victim
 * intact; deterministic.
 */
import { describe, expect, it } from 'vitest';
import { cli } from './cli-harness.ts';

describe('dmasim run noiommu-apex', () => {
  it('tells both modes: corruption without the IOMMU, a DMAR fault with it', async () => {
    const a = await cli('run', 'noiommu-apex');
    expect(a.err).toBe('');
    expect(a.code).toBe(0);
    const [noiommu, iommu] = a.out.split('== the same driver and bug with the IOMMU: VFIO type1 ==\n');
    if (noiommu === undefined || iommu === undefined) throw new Error('both modes expected');

    // No-IOMMU: the fake group, the taint, physical addresses.
    expect(noiommu).toMatch(/noiommu: 0000:01:00\.0: group 0, device fd \d+, 9 regions, 5 irq indexes/);
    expect(noiommu).toContain('container: VFIO_NOIOMMU_IOMMU, no IOVA space');
    for (let j = 1; j <= 4; j++) expect(noiommu).toContain(`job ${j}: MATMUL_I8 8x16 * 16x12 checked good`);
    expect(noiommu).toContain('noiommu kernel: tainted 64 (TAINT_USER); dmesg: "vfio-pci 0000:01:00.0: Adding kernel taint for vfio-noiommu group on device", "vfio-pci 0000:01:00.0: vfio-noiommu device opened by user (apex-drv:');
    const bug = /frame (0x[0-9a-f]+) back to the allocator; no-IOMMU has nothing to unmap\), gasket slot (\d+) still holds its physical address (0x[0-9a-f]+)/.exec(noiommu);
    if (bug === null) throw new Error('no bug line');
    const frame = bug[1] as string;
    expect(BigInt(bug[3] as string)).toBe(BigInt(frame) * 4096n);
    expect(noiommu).toMatch(new RegExp(`victim \\(pid \\d+, uid 1000\\) maps \\d+ pages .* frame ${frame} is its page at 0x[0-9a-f]+`));
    expect(noiommu).toMatch(/COPY of 256 bytes to slot \d+: completed \(SC_HOST_0\); the device wrote to 0x[0-9a-f]+ and nothing stopped it/);
    // The victim's corrupted page is exactly the freed frame, its record replaced by the driver's output.
    const pages = [...noiommu.matchAll(/victim: page (0x[0-9a-f]+) \(frame (0x[0-9a-f]+)\): (\d+) bytes changed/g)];
    expect(pages.map((p) => p[2])).toEqual([frame]);
    expect(noiommu).toMatch(/victim: {3}was "victim record #\d+: balance 1000\.00; /);
    expect(noiommu).toContain('victim:   now "APEX OUTPUT APEX OUTPUT APEX OUTPUT APEX OUTPUT "');
    // The observer: exactly that frame outside what the driver locked, written once.
    expect(noiommu).toMatch(new RegExp(`noiommu isolation: the Apex's DMA reached \\d+ distinct frames \\(\\d+ frame accesses\\); outside the frames locked by the driver process .*: ${frame} \\(1 writes\\)\\n`));
    expect(noiommu).not.toMatch(/DMAR:/);

    // IOMMU: the stale IOVA faults, the victim (which got the freed frame too) is intact.
    expect(iommu).toMatch(/container IOVA ranges: 0x0-0xfedfffff/);
    for (let j = 1; j <= 4; j++) expect(iommu).toContain(`job ${j}: MATMUL_I8 8x16 * 16x12 checked good`);
    const iova = /gasket slot \d+ still holds its IOVA (0x[0-9a-f]+)/.exec(iommu)?.[1];
    expect(iova).toBeDefined();
    const f2 = /UNMAP_DMA, munmap: frame (0x[0-9a-f]+) back to the allocator/.exec(iommu)?.[1];
    expect(iommu).toMatch(new RegExp(`frame ${f2} is its page at 0x[0-9a-f]+`));
    expect(iommu).toContain('FATAL_ERR; HIB_ERROR_STATUS 0x8 (AXI write error: the IOMMU refused the write)');
    expect(iommu).toContain(`DMAR: [DMA Write NO_PASID] Request device [01:00.0] fault addr ${iova} [fault reason 0x05] PTE Write access is not set`);
    expect(iommu).toMatch(/victim: all \d+ records intact/);
    expect(iommu).toMatch(/iommu {3}isolation: the Apex's DMA reached \d+ distinct frames \(\d+ frame accesses\); every one pinned for its container at that instant/);
    expect(iommu).toMatch(/summary: without an IOMMU the stale physical address 0x[0-9a-f]+ let the device's 256-byte write land in another process's page .* with the IOMMU the stale IOVA faulted \(1 DMAR line\(s\)\)/);
    expect(a.out).toMatch(/\nOK\n$/);
    // Deterministic: the same run prints the same story, to the nanosecond.
    expect((await cli('run', 'noiommu-apex')).out).toBe(a.out);
  });
});
