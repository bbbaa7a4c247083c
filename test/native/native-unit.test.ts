// Builds and runs the pure-C++ unit tests (frame parser, the pump's transaction pooling) under
// AddressSanitizer + UBSan, and the libFuzzer targets (native/fuzz/: PostgreSQL frame parser
// and reply tracker, the pump's statement inspection and pooling fed at every split, statement
// recorder, HTTP response head, JSON number list with its AVX paths) for a short, bounded time
// each (the CI budget). The whole addon under ASan/UBSan: scripts/build-native-asan.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const native = path.join(root, 'native');
/** Seconds the fuzzer runs in `npm test`; longer runs: VECGATE_FUZZ_SECONDS=600 npm test -- native-unit. */
const FUZZ_SECONDS = Number(process.env.VECGATE_FUZZ_SECONDS ?? 15);
/** Debian 12's libcrypto 3 (package libssl3, always installed): linked by the fuzz target only, never by the addon. */
const LIBCRYPTO = '/usr/lib/x86_64-linux-gnu/libcrypto.so.3';

function compiler(): string {
  for (const c of ['clang++-14', 'clang++']) {
    if (spawnSync(c, ['--version']).status === 0) return c;
  }
  throw new Error('clang++ (Debian clang-14 + libclang-rt-14-dev) is required; scripts/ensure-system-deps.sh installs it');
}

/** Builds native/test/<name>-test.cc with `sources` under ASan/UBSan and runs it: every check must pass. */
function unitTests(name: string, sources: string[]): void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vg-native-'));
  try {
    const bin = path.join(dir, `${name}-test`);
    const cc = spawnSync(compiler(), ['-std=c++17', '-g', '-O1', '-fsanitize=address,undefined', '-fno-sanitize-recover=all', `-I${native}`,
      path.join(native, 'test', `${name}-test.cc`), ...sources.map((f) => path.join(native, f)), '-o', bin], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const run = spawnSync(bin, [], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr + run.stdout);
    assert.match(run.stdout, /all checks passed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('pg-frame-parser unit tests under ASan/UBSan', () => {
  unitTests('pg-frame-parser', ['pg/pg-frame-parser.cc']);
});

test('pump transaction-pooling unit tests under ASan/UBSan (links released between transactions, nothing lost or misrouted)', () => {
  unitTests('pump-pooling', ['session/pump.cc', 'pg/pg-frame-parser.cc', 'pg/pg-reply-tracker.cc', 'pg/session-pins.cc', 'pg/prepared-statements.cc', 'net/close-reason.cc']);
});

test('session-pins unit tests under ASan/UBSan (what pins a pooled session, read as PostgreSQL splits text)', () => {
  unitTests('session-pins', ['pg/session-pins.cc']);
});

/**
 * Builds `target` (native/fuzz/<target>.cc plus `sources`) with libFuzzer, ASan and UBSan and
 * runs it for FUZZ_SECONDS with its dictionary (native/fuzz/<dict>.dict); any finding fails.
 */
function fuzz(target: string, dict: string, sources: string[], link: { flags?: string[]; libs?: string[] } = {}): void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vg-fuzz-'));
  try {
    const bin = path.join(dir, target);
    const cc = spawnSync(compiler(), ['-std=c++17', '-g', '-O1', '-fsanitize=fuzzer,address,undefined', '-fno-sanitize-recover=all', `-I${native}`, ...(link.flags ?? []),
      path.join(native, 'fuzz', `${target}.cc`), ...sources.map((f) => path.join(native, f)), ...(link.libs ?? []), '-o', bin], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const run = spawnSync(bin, [`-max_total_time=${FUZZ_SECONDS}`, `-dict=${path.join(native, 'fuzz', `${dict}.dict`)}`, '-max_len=4096', `-artifact_prefix=${dir}/`], {
      encoding: 'utf8',
      cwd: dir,
    });
    assert.equal(run.status, 0, run.stderr.slice(-4000));
    assert.match(run.stderr, /Done \d+ runs/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test(`pg-frame-parser libFuzzer target runs ${FUZZ_SECONDS}s without a finding`, () => {
  fuzz('pg-frame-parser-fuzz', 'pg-frame-parser', ['pg/pg-frame-parser.cc']);
});

test(`http-response-head libFuzzer target runs ${FUZZ_SECONDS}s without a finding (fields inside the head, a cut head declined)`, () => {
  fuzz('http-response-head-fuzz', 'http-response-head', ['http/http-response-head.cc']);
});

test(`json-number-list libFuzzer target runs ${FUZZ_SECONDS}s without a finding (AVX-512 and AVX2 walks equal the scalar one)`, () => {
  fuzz('json-number-list-fuzz', 'json-number-list', ['http/json-number-list.cc']);
});

test(`pg-reply-tracker libFuzzer target runs ${FUZZ_SECONDS}s without a finding (arbitrary client/server type sequences)`, () => {
  fuzz('pg-reply-tracker-fuzz', 'pg-reply-tracker', ['pg/pg-reply-tracker.cc']);
});

test(`statement-recorder libFuzzer target runs ${FUZZ_SECONDS}s without a finding (events stay well-formed msgpack)`, () => {
  // Node's OpenSSL headers, the system's libcrypto 3 (same ABI) for the vector fingerprint.
  fuzz('statement-recorder-fuzz', 'statement-recorder', ['pg/statement-recorder.cc', 'recording/record-sink.cc'], { flags: ['-I/usr/include/node'], libs: [LIBCRYPTO] });
});

test(`pump-inspector libFuzzer target runs ${FUZZ_SECONDS}s without a finding (only allowed statements reach the server; any chunking gives the same bytes)`, () => {
  fuzz('pump-inspector-fuzz', 'pump-inspector', ['session/pump.cc', 'pg/pg-frame-parser.cc', 'pg/pg-reply-tracker.cc', 'pg/session-pins.cc', 'pg/prepared-statements.cc', 'net/close-reason.cc']);
});
