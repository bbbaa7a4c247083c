// The `vecgate dev` state-directory lock (src/dev/dev-dir-lock.ts): a live owner blocks, a
// dead one's lock is taken over, release removes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEV_LOCK_FILE, lockDevDir } from '../../src/dev/dev-dir-lock.js';

test('dev dir lock: held by a live process refuses, a dead one is taken over, release removes it', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vg-devlock-'));
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const file = path.join(dir, DEV_LOCK_FILE);
    writeFileSync(file, String(sleeper.pid));
    assert.throws(() => lockDevDir(dir), new RegExp(`another vecgate dev \\(pid ${sleeper.pid}\\) is using`));
    assert.equal(readFileSync(file, 'utf8'), String(sleeper.pid), 'a live owner keeps its lock');
    const gone = new Promise((r) => sleeper.once('exit', r));
    sleeper.kill('SIGKILL');
    await gone;
    const release = lockDevDir(dir);
    assert.equal(readFileSync(file, 'utf8'), String(process.pid));
    release();
    assert.equal(existsSync(file), false);
  } finally {
    if (sleeper.exitCode === null && sleeper.signalCode === null) sleeper.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
