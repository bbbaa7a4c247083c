// The operator logger as a child process writes it: JSON lines on stdout, the level from
// VECGATE_LOG_LEVEL, and secret-named keys redacted at any of the first levels.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';

const LOG_MODULE = pathToFileURL(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/log.js')).href;

function runLogger(script: string, env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const code = `import { createLogger } from ${JSON.stringify(LOG_MODULE)};\n${script}`;
  const base = { ...process.env };
  delete base['VECGATE_LOG_LEVEL'];
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { env: { ...base, ...env }, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('createLogger', () => {
  it('writes JSON lines to stdout with secrets redacted', () => {
    const r = runLogger(
      `createLogger().info({ user: 'ann', password: 'canary-1', client: { token: 'canary-2' }, req: { headers: { Authorization: 'Bearer canary-3' } }, a: { b: { secret: 'canary-4' } } }, 'ready');`,
    );
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 1);
    const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(rec['msg'], 'ready');
    assert.equal(rec['user'], 'ann');
    assert.equal(rec['password'], '[redacted]');
    assert.deepEqual(rec['client'], { token: '[redacted]' });
    assert.ok(!r.stdout.includes('canary'), r.stdout);
  });

  it('takes the level from VECGATE_LOG_LEVEL (default info) and refuses unknown levels', () => {
    const script = `const l = createLogger(); l.debug('dbg'); l.info('inf'); l.warn('wrn');`;
    const msgs = (out: string) => out.trimEnd().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { msg: string }).msg);
    assert.deepEqual(msgs(runLogger(script).stdout), ['inf', 'wrn']);
    assert.deepEqual(msgs(runLogger(script, { VECGATE_LOG_LEVEL: 'debug' }).stdout), ['dbg', 'inf', 'wrn']);
    assert.deepEqual(msgs(runLogger(script, { VECGATE_LOG_LEVEL: 'warn' }).stdout), ['wrn']);
    const bad = runLogger(`try { createLogger(); } catch (e) { console.error(e.code + ' ' + e.message); }`, { VECGATE_LOG_LEVEL: 'loud' });
    assert.match(bad.stderr, /^ERR_VG_USAGE log level "loud" \(VECGATE_LOG_LEVEL\) must be one of/);
  });
});
