import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BENCHMARKS } from '../bench/registry.ts';
import type { BenchmarkDef, BenchReport } from '../bench/harness.ts';
import { formatBenchTable } from '../cli/main.ts';
import { cli } from './cli-harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'dmasim-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dmasim', () => {
  it('--help lists the commands and exits 0; no arguments prints it and exits 2', async () => {
    const r = await cli('--help');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Usage: dmasim/);
    for (const c of ['run', 'bench', 'explain']) expect(r.out).toContain(c);
    expect((await cli()).code).toBe(2);
    const sub = await cli('run', '--help');
    expect(sub.code).toBe(0);
    expect(sub.out).toMatch(/Scenarios:\n {2}demo {2}/);
    expect((await cli('bench', '--help')).out).toMatch(/--json/);
    expect((await cli('explain', '--help')).out).toMatch(/--iova/);
  });

  it('an unknown command or option is a usage error (exit 2)', async () => {
    expect((await cli('frobnicate')).code).toBe(2);
    const r = await cli('run', 'demo', '--bogus');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown option '--bogus'/);
    expect((await cli('run', 'demo', '--seed', '-3')).code).toBe(2);
  });
});

describe('dmasim run', () => {
  it('runs the demo and prints a short, deterministic summary', async () => {
    const a = await cli('run', 'demo');
    expect(a.err).toBe('');
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/seed 1, 1GiB of memory, scatter frames/);
    expect(a.out).toMatch(/virtual time \d+ ns, \d+ events dispatched, copy verified/);
    expect(a.out).toMatch(/engine\/pages=8/);
    expect((await cli('run', 'demo')).out).toBe(a.out);
    const b = await cli('run', 'demo', '--seed', '2');
    expect(b.out).toMatch(/seed 2,/);
    expect(b.out.match(/source pages at .*/)?.[0]).not.toBe(a.out.match(/source pages at .*/)?.[0]);
  });

  it('an unknown scenario lists the registered ones and exits 2', async () => {
    const r = await cli('run', 'nosuch');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown scenario 'nosuch'; registered scenarios:\n {2}demo /);
    const mod = await cli('run', './driver.ts');
    expect(mod.code).toBe(2);
    expect(mod.err).toMatch(/no such driver module: \.\/driver\.ts/);
  });

  it('--trace writes a Chrome trace of the run', async () => {
    const file = join(dir, 'demo.json');
    const r = await cli('run', 'demo', '--trace', file);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/trace: \d+ events written to .*demo\.json/);
    const evs = JSON.parse(readFileSync(file, 'utf8')) as { ph: string; name: string; args: { name?: string } }[];
    const tracks = evs.filter((e) => e.name === 'thread_name').map((e) => e.args.name);
    expect(tracks).toEqual(expect.arrayContaining(['engine', 'heartbeat', 'proc:driver']));
    expect(evs.filter((e) => e.ph === 'X' && e.name === 'dma.copy')).toHaveLength(8);
    expect(evs.some((e) => e.ph === 'C')).toBe(true);
    const bad = await cli('run', 'demo', '--trace', join(dir, 'no', 'such', 'dir.json'));
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/cannot write trace/);
  });

  it('--machine reads a configuration; --seed overrides its seed', async () => {
    const file = join(dir, 'm.json');
    writeFileSync(file, JSON.stringify({ name: 'small', seed: 11, memory: { size: '64MiB', placement: 'sequential' } }));
    const r = await cli('run', 'demo', '--machine', file);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/machine 'small', seed 11, 64MiB of memory, sequential frames/);
    // Sequential placement after reserved frame 0: the driver's frames alternate source, destination.
    expect(r.out).toMatch(/source pages at 0x1000 0x3000 /);
    expect((await cli('run', 'demo', '--machine', file, '--seed', '12')).out).toMatch(/seed 12,/);
  });

  it('a bad machine file is reported with the field path and exits 2', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ memory: { size: '3KiB', placment: 'scatter' } }));
    const r = await cli('run', 'demo', '--machine', file);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/invalid .*bad\.json:/);
    expect(r.err).toMatch(/memory\.size: must be a positive multiple of 4096/);
    expect(r.err).toMatch(/memory: Unrecognized key: "placment"/);
    writeFileSync(file, '{ "seed": ');
    expect((await cli('run', 'demo', '--machine', file)).err).toMatch(/not valid JSON/);
    const missing = await cli('run', 'demo', '--machine', join(dir, 'missing.json'));
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/cannot read machine configuration .*missing\.json/);
  });
});

describe('dmasim bench', () => {
  const fake: BenchmarkDef = {
    name: 'zz-test.fake',
    unit: 'ops/s',
    description: 'a benchmark that measures nothing, for the CLI test',
    target: 5,
    prepare: () => {
      let i = 0;
      return () => ({ value: ++i, ms: 1, extra: { note: 'x' } });
    },
  };

  it('selects by name or prefix, lists, and refuses unknown names', async () => {
    const list = await cli('bench', 'des', '--list');
    expect(list.code).toBe(0);
    const names = list.out.trim().split('\n').map((l) => l.split(/\s+/)[0]);
    expect(names).toEqual(expect.arrayContaining(['des.hold', 'des.process']));
    expect(names.every((n) => n?.startsWith('des.'))).toBe(true);
    expect((await cli('bench', 'mem', '--list')).out).toMatch(/^mem\.copy\.4k .*\nmem\.copy\.64k .*\nmem\.copy\.1m /);
    const bad = await cli('bench', 'nosuch');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/no benchmark matches 'nosuch'; benchmarks:\n {2}des\.hold/);
  });

  it('--json prints one report per line exactly as the harness returns it; otherwise a table', async () => {
    // Loading the CLI's bench index first, so the fake lands after the real ones.
    await cli('bench', '--list');
    BENCHMARKS.push(fake);
    try {
      const json = await cli('bench', 'zz-test', '--json');
      expect(json.code).toBe(0);
      const lines = json.out.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0] as string)).toEqual({
        name: 'zz-test.fake',
        value: 3,
        unit: 'ops/s',
        min: 1,
        max: 5,
        runs: [1, 2, 3, 4, 5],
        target: 5,
        meetsTarget: false,
        note: 'x',
      });
      const table = await cli('bench', 'zz-test.fake');
      expect(table.out).toMatch(/^benchmark +median +min-max +unit +target +meets +extra\n/);
      expect(table.out).toMatch(/zz-test\.fake +3 +1-5 +ops\/s +5 ops\/s +NO +note=x/);
    } finally {
      BENCHMARKS.splice(BENCHMARKS.indexOf(fake), 1);
    }
  });

  it('the table shows a ratio target from the extra figures', () => {
    const r: BenchReport = { name: 'mem.copy.1m', value: 22000, unit: 'MB/s', min: 21000, max: 23000, runs: [], rawMBps: 29000, ratio: 0.76, ratioTarget: 0.7, meetsRatioTarget: 'yes' };
    expect(formatBenchTable([r])).toMatch(/mem\.copy\.1m +22000 +21000-23000 +MB\/s +ratio >= 0\.7 +yes +rawMBps=29000 ratio=0\.760$/);
  });
});

describe('dmasim explain', () => {
  it('walks the built-in example for a mapped address, a hole and a bad argument', async () => {
    const ok = await cli('explain', '--rid', '0x0100', '--iova', '0x100123');
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/L1\[0x100\]/);
    expect(ok.out).toMatch(/=> phys 0x0000_0000_0080_0123/);
    const hole = await cli('explain', '--rid', '01:00.0', '--iova', '0x104000', '--write');
    expect(hole.out).toMatch(/=> FAULT/);
    const bad = await cli('explain', '--rid', '0x10000', '--iova', '0');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/16-bit requester id/);
    expect((await cli('explain', '--rid', '1')).code).toBe(2);
  });
});

describe('bin.mjs', () => {
  it('node cli/bin.mjs --help runs through tsx and exits 0', () => {
    const root = resolve(import.meta.dirname, '..');
    const r = spawnSync(process.execPath, [join(root, 'cli', 'bin.mjs'), '--help'], { cwd: root, encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Usage: dmasim/);
  });
});
