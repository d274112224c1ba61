import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from './cli-harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'dmasim-run-module-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dmasim run ./driver.ts', () => {
  it("runs main(sys, machine) as root and exits with the process's status", async () => {
    const r = await cli('run', './test/fixtures/driver-ok.ts');
    expect(r.err).toBe('');
    expect(r.code).toBe(7);
    expect(r.out).toMatch(/^driver-ok\[\d+\] exited with status 7 at \d+ ns \(virtual\)$/m);
    expect(r.out).toMatch(/dmesg \(last \d+ lines\):\n.*Linux version/);
  });

  it('boots on the machine of --machine, with --seed and --trace', async () => {
    const m = join(dir, 'm.json');
    writeFileSync(m, JSON.stringify({ memory: { size: '64M' } }));
    const trace = join(dir, 't.json');
    const r = await cli('run', './test/fixtures/driver-ok.ts', '--machine', m, '--seed', '3', '--trace', trace);
    expect(r.code).toBe(7);
    expect(r.err).toMatch(/trace: \d+ events written/);
    expect(() => JSON.parse(readFileSync(trace, 'utf8')) as unknown).not.toThrow();
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"memory": {"size": "lots"}}');
    expect((await cli('run', './test/fixtures/driver-ok.ts', '--machine', bad)).code).toBe(2);
  });

  it('a module without main, or a missing file, is bad input (exit 2)', async () => {
    const r = await cli('run', './test/fixtures/driver-no-main.ts');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/exports no main\(sys, machine\) function/);
    const missing = await cli('run', './test/fixtures/nosuch.ts');
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/no such driver module/);
  });

  it('a crash prints the error and exits 1', async () => {
    const r = await cli('run', './test/fixtures/driver-crash.ts');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/driver-crash\[\d+\] crashed: Error: driver bug: bad BAR/);
    expect(r.out).toMatch(/exited with status 1/);
  });

  it('a deadlock prints each blocked process and its call, and exits 1', async () => {
    const r = await cli('run', './test/fixtures/driver-deadlock.ts');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/deadlock at \d+ ns/);
    expect(r.err).toMatch(/driver-deadlock\[\d+\]: blocked in read on eventfd/);
    expect(r.out).toMatch(/driver-deadlock\[\d+\] deadlocked and was killed \(exit status 1\)/);
  });

  it('the help text describes driver modules', async () => {
    const r = await cli('run', '--help');
    expect(r.out).toMatch(/export async function main\(sys, machine\)/);
  });
});
