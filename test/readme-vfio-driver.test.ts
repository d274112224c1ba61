import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../cli/main.ts';

// Inside the package, so that the driver's `import ... from 'dmasim'` resolves to this checkout (self-reference).
const dir = mkdtempSync(join(fileURLToPath(new URL('..', import.meta.url)), '.readme-vfio-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** The README's fenced block that starts with `// <name>`. */
function block(name: string): string {
  const m = new RegExp('```ts\\n(// ' + name.replace('.', '\\.') + '\\n[\\s\\S]*?)```').exec(readme);
  if (m === null) throw new Error(`README has no block for ${name}`);
  return m[1] as string;
}

/** Runs `dmasim run <file> --machine <json>`; returns the exit code, stdout, stderr and console lines. */
async function runDriver(file: string, machineJson: string): Promise<{ code: number; out: string; err: string; logs: string[] }> {
  writeFileSync(join(dir, 'm.json'), machineJson);
  let out = '';
  let err = '';
  const logs: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => void logs.push(a.join(' '));
  try {
    const code = await main(['run', file, '--machine', join(dir, 'm.json')], { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
    return { code, out, err, logs };
  } finally {
    console.log = log;
  }
}

describe('README: a first VFIO driver', () => {
  it('is about twenty lines and runs as printed, with the machine configuration printed beside it', async () => {
    const src = block('vfio-driver.ts');
    const body = src.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('//') && !l.startsWith('import'));
    expect(body.length).toBeLessThanOrEqual(24);
    writeFileSync(join(dir, 'vfio-driver.ts'), src);
    const cfg = /echo '(\{.*\})' > edu-iommu\.json/.exec(readme);
    expect(cfg).not.toBeNull();
    const r = await runDriver(join(dir, 'vfio-driver.ts'), (cfg as RegExpExecArray)[1] as string);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.logs).toContainEqual(expect.stringMatching(/^0xc0ffee went through the device: IOVA 0x[0-9a-f]+ -> 0x[0-9a-f]+$/));
    expect(r.out).toMatch(/exited with status 0/);
  });

  it('the same driver with a wrong IOVA faults in the IOMMU instead of reading memory', async () => {
    const src = block('vfio-driver.ts').replace('await dma(src.iova, 0x40000n, 0)', 'await dma(src.iova + 0x100000n, 0x40000n, 0)');
    writeFileSync(join(dir, 'vfio-bad.ts'), src);
    const r = await runDriver(join(dir, 'vfio-bad.ts'), '{ "iommu": { "enabled": true }, "pci": { "devices": [{ "type": "edu", "bdf": "00:03.0" }] } }');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/DMAR: \[DMA Read NO_PASID\] Request device \[00:03\.0\] fault addr 0x[0-9a-f]+ \[fault reason 0x0[0-9a-f]\]/);
  });
});
