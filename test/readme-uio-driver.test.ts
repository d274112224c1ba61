import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../cli/main.ts';

const dir = mkdtempSync(join(tmpdir(), 'dmasim-readme-uio-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The README's fenced block that starts with `// <name>`. */
function block(name: string): string {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const m = new RegExp('```(?:ts|sh)\\n(// ' + name.replace('.', '\\.') + '\\n[\\s\\S]*?)```').exec(readme);
  if (m === null) throw new Error(`README has no block for ${name}`);
  return m[1] as string;
}

describe('README: a first UIO driver', () => {
  it('runs as printed, with the machine configuration printed beside it', async () => {
    writeFileSync(join(dir, 'uio-driver.ts'), block('uio-driver.ts'));
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const cfg = /echo '(\{.*\})' > edu\.json/.exec(readme);
    expect(cfg).not.toBeNull();
    writeFileSync(join(dir, 'edu.json'), (cfg as RegExpExecArray)[1] as string);
    let out = '';
    let err = '';
    const logs: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => void logs.push(a.join(' '));
    let code: number;
    try {
      code = await main(['run', join(dir, 'uio-driver.ts'), '--machine', join(dir, 'edu.json')], { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
    } finally {
      console.log = log;
    }
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(logs).toContain('5! = 120 after interrupt 1');
    expect(out).toMatch(/exited with status 0/);
  });
});
