// The `vecgate dev` state-directory lock (src/dev/dev-dir-lock.ts over src/pid-lock.ts): a
// live owner blocks, a dead one's lock is taken over, release removes it; and the
// recordings-style options: a lock from another host blocks until it goes stale.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEV_LOCK_FILE, lockDevDir } from '../../src/dev/dev-dir-lock.js';
import { takePidLock } from '../../src/pid-lock.js';

test('dev dir lock: held by a live process refuses, a dead one is taken over, release removes it', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vg-devlock-'));
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const file = path.join(dir, DEV_LOCK_FILE);
    writeFileSync(file, JSON.stringify({ host: os.hostname(), pid: sleeper.pid }));
    assert.throws(() => lockDevDir(dir), new RegExp(`another vecgate dev \\(pid ${sleeper.pid}\\) is using`));
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).pid, sleeper.pid, 'a live owner keeps its lock');
    const gone = new Promise((r) => sleeper.once('exit', r));
    sleeper.kill('SIGKILL');
    await gone;
    const release = lockDevDir(dir);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { host: os.hostname(), pid: process.pid });
    release();
    assert.equal(existsSync(file), false);
  } finally {
    if (sleeper.exitCode === null && sleeper.signalCode === null) sleeper.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pid lock: a lock from another host blocks while refreshed, is taken over once stale; the heartbeat refreshes ours', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vg-pidlock-'));
  try {
    const file = path.join(dir, 'writer.lock');
    writeFileSync(file, JSON.stringify({ host: 'some-other-pod', pid: 1 }));
    const held = (o: { host: string; pid: number }) => new Error(`held by ${o.host}/${o.pid}`);
    assert.throws(() => takePidLock(file, { staleMs: 60_000, held }), /held by some-other-pod\/1/);
    const old = new Date(Date.now() - 120_000);
    utimesSync(file, old, old);
    const lock = takePidLock(file, { staleMs: 60_000, heartbeatMs: 50, held });
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).host, os.hostname());
    utimesSync(file, old, old);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(Date.now() - statSync(file).mtimeMs < 10_000, 'the heartbeat refreshed the lock');
    lock.release();
    assert.equal(existsSync(file), false);
    // A lock file without a readable owner is left alone while young (its creator may be
    // writing it), taken over once old.
    writeFileSync(file, '');
    assert.throws(() => takePidLock(file, { held }), /held by unknown \(starting\)\/0/);
    const older = new Date(Date.now() - 10_000);
    utimesSync(file, older, older);
    takePidLock(file, { held }).release();
    assert.equal(existsSync(file), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
