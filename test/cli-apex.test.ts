import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from './cli-harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'dmasim-apex-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dmasim run apex-direct', () => {
  it('resets the Apex, runs a checked matmul, faults, recovers, with and without VT-d, the same way every time', async () => {
    const trace = join(dir, 'apex.json');
    const a = await cli('run', 'apex-direct', '--trace', trace);
    expect(a.err).not.toMatch(/Error/);
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/probe: 1ac1:089a class 0x0000ff, MSI-X 128 entries, Apex/);
    expect(a.out).toMatch(/SCU: GCB out of reset .* PAGE_TABLE_INIT 1, MSIX_TABLE_INIT 1/);
    expect(a.out).toMatch(/page table: 6144 simple slots \+ 2048 extended/);
    expect(a.out).toMatch(/job 1: SC_HOST_0 interrupt \(vector 0x44\).*SC_HOST_INT_STATUS 0x1 -> 0x0 \(W0C\)/);
    expect(a.out.match(/C matches the TypeScript product in 96\/96 elements/g)).toHaveLength(4);
    expect(a.out).toMatch(/job 2: FATAL_ERR interrupt \(vector 0x4c\); HIB_ERROR_STATUS 0x1 \(inbound page fault\), first 0x1, PAGE_FAULT_ADDRESS 0x64080, IQ_STATUS 0x3/);
    expect(a.out).toMatch(/done at \d+ ns of virtual time \(01:00\.0, no IOMMU\): OK/);
    expect(a.out).toMatch(/done at \d+ ns of virtual time \(01:00\.0, behind VT-d\): OK/);
    expect(a.out).toMatch(/IOMMU translating: domain 1/);
    expect(a.out.match(/5 interrupts, 0 spurious/g)).toHaveLength(2);
    const again = join(dir, 'apex2.json');
    expect((await cli('run', 'apex-direct', '--trace', again)).out).toBe(a.out);
    expect(readFileSync(again, 'utf8')).toBe(readFileSync(trace, 'utf8'));
    const events = JSON.parse(readFileSync(trace, 'utf8')) as { ph: string; name: string; args?: { name?: string } }[];
    const tracks = events.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args?.name);
    expect(tracks).toEqual(expect.arrayContaining(['root-complex', 'intc', 'apex@01:00.0', 'driver', 'driver: queue 0 (doorbell to SC_HOST_0)']));
    // The device's own tracks: its queue, its DMA engine, its interrupts.
    expect(tracks).toEqual(expect.arrayContaining(['apex@01:00.0/queue0', 'apex@01:00.0/dma', 'apex@01:00.0/irq']));
    expect(events.some((e) => e.name === 'hib-error')).toBe(true);
    // Per good job SC_HOST_0 then INSTR_QUEUE, plus FATAL_ERR for the faulting one.
    expect(events.filter((e) => e.name === 'msix')).toHaveLength(5);
  });
});
