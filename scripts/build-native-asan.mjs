#!/usr/bin/env node
// Builds the whole addon (every native/**/*.cc, the same sources as binding.gyp) with
// AddressSanitizer and UndefinedBehaviorSanitizer into build/Asan/vecgate.node, with
// clang++-14, for `npm test` to run the end-to-end PostgreSQL and HTTP tests against it.
//
// Load it with VECGATE_NATIVE_BUILD=asan (src/native.ts) in a plain `node` that preloads
// clang's ASan runtime; `node scripts/build-native-asan.mjs --env` prints that environment:
//   LD_PRELOAD=$(clang-14 -print-file-name=libclang_rt.asan-x86_64.so), kept for node
//   processes only (NODE_OPTIONS=--require scripts/asan-node-only.cjs)
//   ASAN_OPTIONS=detect_leaks=0 (V8 and OpenSSL keep allocations for the process's life)
//   UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
// Usage: node scripts/build-native-asan.mjs [--root DIR] [--if-stale] [--env]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const root = args.includes('--root') ? path.resolve(args[args.indexOf('--root') + 1]) : here;

function compiler() {
  for (const c of ['clang++-14', 'clang++']) if (spawnSync(c, ['--version']).status === 0) return c;
  throw new Error('clang++ (Debian clang-14 + libclang-rt-14-dev) is required; scripts/ensure-system-deps.sh installs it');
}

/** The environment a `node` process needs to load build/Asan/vecgate.node. */
export function asanEnv(base = process.env) {
  const cc = compiler().replace('++', '');
  const runtime = spawnSync(cc, ['-print-file-name=libclang_rt.asan-x86_64.so'], { encoding: 'utf8' }).stdout.trim();
  if (!existsSync(runtime)) throw new Error(`clang's ASan runtime not found (${runtime}); install libclang-rt-14-dev`);
  // Only node processes keep the preload (scripts/asan-node-only.cjs): PostgreSQL and the
  // other programs the tests start hang with it.
  const shim = path.join(here, 'scripts', 'asan-node-only.cjs');
  return {
    ...base,
    VECGATE_NATIVE_BUILD: 'asan',
    LD_PRELOAD: runtime,
    VECGATE_ASAN_RUNTIME: runtime,
    NODE_OPTIONS: `${base.NODE_OPTIONS ?? ''} --require ${shim}`.trim(),
    // detect_leaks=0: V8 and OpenSSL keep allocations for the process's life.
    // The gateway's workers are threads of one process: one report fails the run.
    ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=0',
    UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
  };
}

function sources(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    // native/test and native/fuzz hold standalone programs, not addon sources
    if (e.isDirectory()) {
      if (e.name !== 'test' && e.name !== 'fuzz') out.push(...sources(p));
    } else if (e.name.endsWith('.cc')) out.push(p);
  }
  return out.sort();
}

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newest(p));
    else if (e.name.endsWith('.cc') || e.name.endsWith('.h')) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

async function build() {
  const nativeDir = path.join(root, 'native');
  const outDir = path.join(root, 'build', 'Asan');
  const out = path.join(outDir, 'vecgate.node');
  if (args.includes('--if-stale') && existsSync(out) && statSync(out).mtimeMs >= newest(nativeDir)) return;
  mkdirSync(path.join(outDir, 'obj'), { recursive: true });
  const cxx = compiler();
  const require = createRequire(path.join(root, 'package.json'));
  const napiInclude = require('node-addon-api').include_dir;
  const nodeInclude = path.join(path.dirname(path.dirname(process.execPath)), 'include', 'node');
  const flags = [
    '-std=c++17', '-O1', '-g', '-fno-omit-frame-pointer', '-fPIC', '-fno-exceptions',
    '-fsanitize=address,undefined', '-fno-sanitize-recover=all',
    // vptr checks need the C++ UBSan runtime, which the preloaded ASan runtime does not carry
    '-fno-sanitize=vptr',
    '-DNAPI_VERSION=8', '-DNAPI_DISABLE_CPP_EXCEPTIONS', '-DNODE_ADDON_API_DISABLE_DEPRECATED', '-DNODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS',
    '-DBUILDING_NODE_EXTENSION', `-I${nativeDir}`, `-I${napiInclude}`, `-I${nodeInclude}`,
  ];
  const files = sources(nativeDir);
  const objects = [];
  const jobs = Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  let next = 0;
  const failures = [];
  async function worker() {
    while (next < files.length) {
      const f = files[next++];
      const o = path.join(outDir, 'obj', path.relative(nativeDir, f).replace(/[\\/]/g, '_').replace(/\.cc$/, '.o'));
      objects.push(o);
      const code = await new Promise((resolve) => {
        const p = spawn(cxx, [...flags, '-c', f, '-o', o], { stdio: 'inherit' });
        p.on('exit', (c) => resolve(c));
      });
      if (code !== 0) failures.push(f);
    }
  }
  await Promise.all(Array.from({ length: jobs }, worker));
  if (failures.length) throw new Error(`ASan build: ${failures.join(', ')} did not compile`);
  // -shared-libasan: the runtime comes from LD_PRELOAD at load time, as the node binary is
  // not instrumented; Node's own OpenSSL and libuv symbols resolve from the node binary.
  const link = spawnSync(cxx, ['-shared', '-fsanitize=address,undefined', '-shared-libasan', '-o', out, ...objects.sort()], { stdio: 'inherit' });
  if (link.status !== 0) throw new Error('ASan build: link failed');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (args.includes('--env')) {
    const e = asanEnv({});
    for (const k of Object.keys(e)) process.stdout.write(`${k}=${e[k]}\n`);
  } else {
    build().catch((err) => {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    });
  }
}
