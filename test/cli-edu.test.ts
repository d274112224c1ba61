import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from './cli-harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'dmasim-edu-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dmasim run edu-direct', () => {
  it('completes a factorial with interrupt and a DMA round trip, the same way every time', async () => {
    const trace = join(dir, 'edu.json');
    const a = await cli('run', 'edu-direct', '--trace', trace);
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/ID 0x10000ed: edu 1\.0/);
    expect(a.out).toMatch(/liveness: wrote 0x12345678, read 0xedcba987/);
    expect(a.out).toMatch(/interrupt 0x41: IRQ_STATUS 0x1, 10! = 3628800/);
    expect(a.out).toMatch(/round trip: 256\/256 bytes match; 3 interrupts, 0 spurious/);
    expect(a.out).toMatch(/done at 200001000 ns of virtual time/);
    const again = join(dir, 'edu2.json');
    expect((await cli('run', 'edu-direct', '--trace', again)).out).toBe(a.out);
    // Same seed, same configuration, same driver: the same trace, bit for bit.
    expect(readFileSync(again, 'utf8')).toBe(readFileSync(trace, 'utf8'));
    // The JSON array form of the trace-event format, which Perfetto opens.
    const events = JSON.parse(readFileSync(trace, 'utf8')) as { ph: string; name: string; args?: { name?: string } }[];
    const tracks = events.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args?.name);
    expect(tracks).toEqual(expect.arrayContaining(['root-complex', 'intc']));
    expect(tracks.some((t) => t?.startsWith('edu'))).toBe(true);
  });
});

describe('dmasim explain --bdf', () => {
  it('reports the state of a configured machine honestly, and refuses an unknown function', async () => {
    const m = join(dir, 'm.json');
    writeFileSync(m, JSON.stringify({ memory: { size: '256MiB' }, iommu: { enabled: true }, pci: { devices: [{ type: 'edu', bdf: '00:03.0' }] } }));
    const r = await cli('explain', '--bdf', '00:03.0', '--iova', '0x1000', '--machine', m);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/translation disabled/i);
    const bad = await cli('explain', '--bdf', '00:09.0', '--iova', '0x1000', '--machine', m);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/00:03\.0/);
  });
});
