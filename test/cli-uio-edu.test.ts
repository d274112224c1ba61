import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from './cli-harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'dmasim-uio-edu-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dmasim run uio-edu', () => {
  it('drives edu through uio_pci_generic: bind, factorial with INTx, DMA by pagemap, a victim overwritten, master cleared', async () => {
    const a = await cli('run', 'uio-edu');
    expect(a.err).toBe('');
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/driver -> \.\.\/\.\.\/\.\.\/bus\/pci\/drivers\/uio_pci_generic, \/dev\/uio0 \(uio_pci_generic 0\.01\.0\), maps: map0 \(map0 0x00000000c0000000, 1 MiB/);
    expect(a.out).toMatch(/ID 0x10000ed, liveness 0x12345678 -> 0xedcba987/);
    expect(a.out).toMatch(/interrupt 1 \(factorial\): IRQ_STATUS 0x1, INTx masked by uio_pci_generic/);
    expect(a.out).toMatch(/10! = 3628800/);
    expect(a.out).toMatch(/round trip through edu's buffer: 256\/256 bytes match/);
    expect(a.out).toMatch(/our buffer now holds the victim's bytes: "victim: my private key is 0xfeedface"/);
    expect(a.out).toMatch(/victim: its memory now reads "overwritten by a DMA from edu!/);
    expect(a.out).toMatch(/bus mastering cleared by uio_pci_generic on release/);
    expect(a.out).toMatch(/interrupt 7 \(DMA edu -> victim\)/);
    expect(a.out).toMatch(/pci 0000:00:03\.0: \[1234:11e8\] type 00 class 0x00ff00/);
    expect(a.out).toMatch(/: OK\n$/);
    // Deterministic: the same run prints the same story, to the nanosecond.
    expect((await cli('run', 'uio-edu')).out).toBe(a.out);
  });

  it('forces the IOMMU off and 256 MiB even when the configuration says otherwise', async () => {
    const m = join(dir, 'm.json');
    writeFileSync(m, JSON.stringify({ memory: { size: '1GiB' }, iommu: { enabled: true } }));
    const r = await cli('run', 'uio-edu', '--machine', m);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/inside edu's 28-bit DMA mask/);
  });

  it('--iommu: the same driver on a translating IOMMU; every DMA to a pagemap address faults, logged as Linux logs it', async () => {
    const a = await cli('run', 'uio-edu', '--iommu');
    expect(a.err).toBe('');
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/default domain of type DMA \(translated; strict invalidation\)/);
    expect(a.out).toMatch(/10! = 3628800/);
    expect(a.out).toMatch(/kernel: DMAR: \[DMA Read NO_PASID\] Request device \[00:03\.0\] fault addr 0x[0-9a-f]+ \[fault reason 0x06\] PTE Read access is not set/);
    expect(a.out).toMatch(/kernel: DMAR: \[DMA Write NO_PASID\] Request device \[00:03\.0\] fault addr 0x[0-9a-f]+ \[fault reason 0x05\] PTE Write access is not set/);
    expect(a.out).toMatch(/DMAR: DRHD: handling fault status reg 2\n/);
    expect(a.out).toMatch(/our buffer holds none of the victim's bytes/);
    expect(a.out).toMatch(/victim: its memory now reads "victim: my private key is 0xfeedface"/);
    expect(a.out).toMatch(/the IOMMU recorded 6 faults/);
    expect(a.out).toMatch(/UIO and an IOMMU do not mix/);
    expect(a.out).toMatch(/: OK\n$/);
    expect((await cli('run', 'uio-edu', '--iommu')).out).toBe(a.out);
  });

  it('refuses --iommu for a scenario without that variant', async () => {
    const r = await cli('run', 'apex-direct', '--iommu');
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/scenario 'apex-direct' has no --iommu variant/);
  });
});
