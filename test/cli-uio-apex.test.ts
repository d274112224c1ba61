import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from './cli-harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'dmasim-uio-apex-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dmasim run uio-apex', () => {
  it('drives the Apex through uio_apex on 6.1: regions from sysfs, reset, page table, matmul done on /dev/uio4; 6.12 shows kernel addresses', async () => {
    const a = await cli('run', 'uio-apex');
    expect(a.err).toBe('');
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/13 UIO devices, one per interrupt source: uio0 apex_instr_queue \.\. uio12 apex_fatal_err/);
    expect(a.out).toMatch(/closed: map1 apex_queue addr 0xffffffffffffffff size 64 KiB/);
    expect(a.out).toMatch(/opened \/dev\/uio0: map0 apex_bar2 addr 0x8000000000 size 1024 KiB; map1 apex_queue addr 0x[0-9a-f]{1,8} size 64 KiB; map2 apex_data addr 0x[0-9a-f]{1,8} size 1024 KiB/);
    expect(a.out).toMatch(/SCU: GCB out of reset .* PAGE_TABLE_INIT 1, MSIX_TABLE_INIT 1/);
    expect(a.out).toMatch(/\/dev\/uio4 \(apex_sc_host_0\) event 1: job finished; SC_HOST_INT_STATUS 0x1 -> 0x0 \(W0C\), count 1/);
    expect(a.out).toMatch(/\/dev\/uio0 \(apex_instr_queue\) event 1: status block completed_head 1, fatal 0/);
    expect(a.out).toMatch(/C matches the TypeScript product in 96\/96 elements/);
    expect(a.out).toMatch(/unmapped and closed: map1 apex_queue addr 0xffffffffffffffff/);
    expect(a.out).toMatch(/uio_apex 0000:01:00\.0: 13 MSI-X vectors, 13 UIO devices/);
    expect(a.out).toMatch(/== Linux 6\.12[^\n]*\n[^\n]*map1 apex_queue addr 0xffff8880[0-9a-f]{8} size 64 KiB/);
    expect(a.out).toMatch(/map1 addr is a kernel virtual address \(memtype DMA_COHERENT\)/);
    expect(a.out).toMatch(/== Linux 6\.1 with the IOMMU translating[^\n]*\n[^\n]*map1 apex_queue addr 0x[0-9a-f]+ size 64 KiB: an IOVA[^\n]*wrote 0x12345678, read back 0xffffffff/);
    expect(a.out).toMatch(/\nOK\n$/);
    // Deterministic: the same run prints the same story, to the nanosecond.
    expect((await cli('run', 'uio-apex')).out).toBe(a.out);
  });

  it('--iommu: the same driver behind a translating IOMMU; the CPU misses the buffers, the device reads a zeroed ring and FATAL_ERR arrives on /dev/uio12', async () => {
    const r = await cli('run', 'uio-apex', '--iommu');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/== Linux 6\.1, IOMMU translating \(--iommu\): uio_apex ==/);
    expect(r.out).toMatch(/\/dev\/uio12 \(apex_fatal_err\) event 1: HIB_ERROR_STATUS 0x2000 \(length-0 DMA\), IQ_STATUS 0x3/);
    expect(r.out).not.toMatch(/C matches/);
    expect(r.out).toMatch(/\nOK\n$/);
  });

  it('turns the IOMMU off even when the configuration enables it', async () => {
    const m = join(dir, 'm.json');
    writeFileSync(m, JSON.stringify({ iommu: { enabled: true } }));
    const r = await cli('run', 'uio-apex', '--machine', m);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/C matches the TypeScript product in 96\/96 elements/);
  });
});
