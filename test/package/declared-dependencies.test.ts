// Every dependency package.json declares is used: named as a module specifier (an import, a
// require, a string handed to createRequire or import()) somewhere in src, workers, test,
// bench, scripts or bin. A declared but unused package is installed on every machine for
// nothing and widens the supply chain (#17: undici was declared and never imported).
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

// dist/test/package/declared-dependencies.test.js -> repository root
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Used without being named in source: why, per package. */
const USED_ELSEWHERE: Record<string, string> = {
  'node-addon-api': 'binding.gyp includes its headers',
  typescript: 'tsc builds dist/',
  '@types/node': 'type declarations',
  '@types/pg': 'type declarations',
};

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|mts|js|mjs|cjs)$/.test(e.name) || path.basename(dir) === 'bin') out.push(p);
  }
  return out;
}

test('every declared dependency is named as a module somewhere in the sources', () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
  const declared = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies });
  const text = ['src', 'workers', 'test', 'bench', 'scripts', 'bin']
    .flatMap((d) => sourceFiles(path.join(ROOT, d)))
    .map((f) => readFileSync(f, 'utf8'))
    .join('\n');
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const unused = declared.filter((name) => !(name in USED_ELSEWHERE) && !new RegExp(`['"\`]${escape(name)}(/[^'"\`]*)?['"\`]`).test(text));
  assert.deepEqual(unused, [], `declared in package.json but never imported: ${unused.join(', ')}; remove them with npm uninstall`);
});
