// One recorder per recordings directory: a second process's Recorder.open on a directory a
// live recorder is writing is refused (two writers would break each other's hash chains);
// so is `verify-recordings --repair`; once that process is gone (kill -9, no release) the
// directory is taken over; close() releases it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { Recorder, WRITER_LOCK_FILE } from '../../src/recording/recorder.js';
import { repairTornTails } from '../../src/recording/verify-recordings.js';
import { DAY, tempDirsRemovedAfter } from './recording-fixture.js';

const dirFor = tempDirsRemovedAfter();
const recorderModule = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'recording', 'recorder.js');

describe('recordings writer lock', () => {
  it('refuses a second writer while the first lives, takes over after kill -9, releases on close', async () => {
    const dir = dirFor();
    const script = `import { Recorder } from ${JSON.stringify(recorderModule)};
await Recorder.open({ dir: ${JSON.stringify(dir)}, durability: 'async', retentionMs: ${DAY} });
console.log('open');
setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => d.toString().includes('open') && resolve());
        child.once('exit', (c) => reject(new Error(`the writer exited (${c})`)));
      });
      assert.equal(JSON.parse(readFileSync(path.join(dir, WRITER_LOCK_FILE), 'utf8')).pid, child.pid);
      await assert.rejects(Recorder.open({ dir, durability: 'async', retentionMs: DAY }), (e: Error) => {
        assert.match(e.message, new RegExp(`is being written by another vecgate \\(host .+, pid ${child.pid}, seen \\d+ s ago\\): two writers would break each other's hash chains`));
        return true;
      });
      // verify-recordings --repair would cut records the live writer is still writing: refused too.
      await assert.rejects(repairTornTails(dir), /is being written by another vecgate .*: stop it before --repair/);
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
      const r = await Recorder.open({ dir, durability: 'async', retentionMs: DAY });
      assert.equal(JSON.parse(readFileSync(path.join(dir, WRITER_LOCK_FILE), 'utf8')).pid, process.pid);
      await r.close();
      assert.equal(existsSync(path.join(dir, WRITER_LOCK_FILE)), false);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
