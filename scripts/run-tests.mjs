#!/usr/bin/env node
// `npm test`: installs the system packages the tests need (Debian, as root), builds the
// addon and the TypeScript when they are missing or stale, then runs every test file under
// dist/test with Node's test runner (one file at a time: the integration tests start real
// PostgreSQL clusters and gateways, and the machine has two cores).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.status !== 0) {
    process.stderr.write(`npm test: \`${cmd} ${args.join(' ')}\` failed (exit ${r.status ?? r.signal})\n`);
    process.exit(r.status ?? 1);
  }
}

function newest(dir, exts) {
  let t = 0;
  if (!existsSync(dir)) return t;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newest(p, exts));
    else if (exts.some((x) => e.name.endsWith(x))) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

run('bash', ['scripts/ensure-system-deps.sh', 'test']);

const addon = path.join(root, 'build', 'Release', 'vecgate.node');
if (!existsSync(addon) || statSync(addon).mtimeMs < Math.max(newest('native', ['.cc', '.h']), statSync('binding.gyp').mtimeMs)) {
  run('npm', ['run', '--silent', 'build:native']);
}
run(path.join('node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json']);

function testFiles(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...testFiles(p));
    else if (e.name.endsWith('.test.js')) out.push(p);
  }
  return out.sort();
}

const only = process.argv.slice(2);
let files = testFiles(path.join('dist', 'test'));
if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)));
if (!files.length) {
  process.stderr.write('npm test: no test files found under dist/test\n');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
