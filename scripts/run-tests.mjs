#!/usr/bin/env node
// `npm test`: installs the system packages the tests need (Debian, as root), builds the
// addon and the TypeScript when they are missing or stale, then runs every test file under
// dist/test with Node's test runner (one file at a time: the integration tests start real
// PostgreSQL clusters and gateways, and the machine has two cores). Then it runs the tests
// that exercise the native code most again against the ASan/UBSan build of the addon
// (ASAN_E2E below; scripts/build-native-asan.mjs): any sanitizer report fails the run.
// VECGATE_SKIP_ASAN=1 skips that pass (local iterations only).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { asanEnv } from './build-native-asan.mjs';

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
if (r.status !== 0) process.exit(r.status ?? 1);

// The ASan/UBSan pass: the PostgreSQL and HTTP end-to-end files that drive the addon hardest
// (TLS both ways, the pump with inspection and holds, upstream reuse, transaction pooling's
// links handed between pumps, lent HTTP reads, response heads), the native guards (type confusion, re-entrancy from callbacks) and the
// native recorder, parsers and framing. The child and everything it starts preload clang's
// ASan runtime and load build/Asan/vecgate.node (VECGATE_NATIVE_BUILD=asan).
const ASAN_E2E = [
  'native/native-guards',
  'native/statement-recorder',
  'native/json-number-list',
  'native/http-response-head',
  'recording/record-frame',
  'e2e/pg-gateway',
  'e2e/pg-fidelity',
  'e2e/pg-upstream-reuse',
  'e2e/http-gateway',
  'native/pump-pooling',
  'e2e/pg-transaction-pool',
  'e2e/pg-prepared-statements',
  'e2e/pg-pool-chaos',
];
if (process.env.VECGATE_SKIP_ASAN !== '1' && !only.length) {
  run(process.execPath, ['scripts/build-native-asan.mjs', '--if-stale']);
  const asanFiles = files.filter((f) => ASAN_E2E.some((n) => f.endsWith(path.join('dist', 'test', `${n}.test.js`))));
  process.stdout.write(`\nnpm test: again under ASan/UBSan (build/Asan/vecgate.node): ${asanFiles.join(' ')}\n`);
  const a = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...asanFiles], { stdio: 'inherit', env: asanEnv() });
  process.exit(a.status ?? 1);
}
process.exit(0);
