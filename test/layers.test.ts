import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The import graph is the architecture (DESIGN.md): sim <- {iommu, device-models} <- machine <-
 * kernel-shim <- userspace <- scenarios <- cli. Each layer may import itself and what it lists here;
 * test/ and bench/ may import anything. Only cli/ imports scenarios/.
 */
const ALLOWED: Record<string, readonly string[]> = {
  sim: [],
  iommu: ['sim'],
  'device-models': ['sim'],
  machine: ['sim', 'iommu', 'device-models'],
  'kernel-shim': ['sim', 'iommu', 'device-models', 'machine'],
  userspace: ['sim', 'kernel-shim'],
  scenarios: ['sim', 'machine', 'kernel-shim', 'userspace', 'iommu', 'device-models'],
  cli: ['sim', 'iommu', 'device-models', 'machine', 'kernel-shim', 'userspace', 'scenarios', 'bench', 'root'],
  root: ['sim', 'machine', 'kernel-shim', 'userspace', 'iommu', 'device-models'],
};

const ROOT = resolve(import.meta.dirname, '..');

function layerOf(file: string): string {
  const rel = relative(ROOT, file);
  const top = rel.split(/[\\/]/)[0] ?? '';
  return rel.includes('/') || rel.includes('\\') ? top : 'root';
}

function sources(dir: string): string[] {
  const out: string[] = [];
  // A layer with no code yet has no folder in a fresh clone (git keeps no empty folders).
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (/\.(ts|mts|mjs)$/.test(name)) out.push(p);
  }
  return out;
}

/** Every relative import specifier in a source file (static, dynamic and re-exports). */
function importsOf(src: string): string[] {
  const specs: string[] = [];
  const re = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|import\s+['"]([^'"]+)['"]/g;
  for (const m of src.matchAll(re)) {
    const s = m[1] ?? m[2] ?? m[3];
    if (s !== undefined) specs.push(s);
  }
  return specs;
}

describe('layering', () => {
  const files = [...Object.keys(ALLOWED).filter((l) => l !== 'root').flatMap((l) => sources(join(ROOT, l))), join(ROOT, 'index.ts')];

  it('every import points down the DAG', () => {
    const bad: string[] = [];
    for (const f of files) {
      const from = layerOf(f);
      for (const spec of importsOf(readFileSync(f, 'utf8'))) {
        if (!spec.startsWith('.')) continue;
        const to = layerOf(resolve(dirname(f), spec));
        if (to !== from && !(ALLOWED[from] ?? []).includes(to)) bad.push(`${relative(ROOT, f)} imports ${spec} (${from} -> ${to})`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('the checker sees imports of every form', () => {
    expect(importsOf(`import { a } from '../x.ts';\nexport * from "./y.ts";\nconst m = await import('../z.ts');\nimport './w.ts';`)).toEqual([
      '../x.ts',
      './y.ts',
      '../z.ts',
      './w.ts',
    ]);
  });
});
