// The audit commands as the CLI calls them (vecgate sessions / replay / verify-recordings),
// with their output captured: tables and JSON, replay lines in order, argument errors, and
// verify's OK / BAD / TORN lines and exit code.
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runReplay } from '../../src/cli/replay-command.js';
import { parseSince, runSessions } from '../../src/cli/sessions-command.js';
import { runVerifyRecordings } from '../../src/cli/verify-recordings-command.js';
import { Recorder } from '../../src/recording/recorder.js';
import { summarizeVector } from '../../src/recording/summarize-vector.js';
import { ev, framesOf, segmentFiles, sessionEvents, tempDir } from './recording-fixture.js';

let dir: string;
let cleanup: () => void;
const T0 = Date.parse('2024-05-01T10:00:00Z');

function capture(): { lines: string[]; out: (l: string) => void } {
  const lines: string[] = [];
  return { lines, out: (l) => lines.push(l) };
}

before(async () => {
  ({ dir, cleanup } = tempDir());
  const r = await Recorder.open({ dir, durability: 'strict', retentionMs: 86_400_000 });
  await r.append(sessionEvents('sess-a', T0, 2, 'pg', 'alice'));
  await r.append(sessionEvents('sess-b', T0 + 3_600_000, 1, 'pg', 'bob'));
  await r.append([ev('session-open', 'sess-c', T0 + 7_200_000, { subject: 'alice', vector: summarizeVector([3, 4]), raw: new Float32Array([3, 4]) }, 'qdrant')]);
  await r.close();
});
after(() => cleanup());

describe('vecgate sessions', () => {
  it('prints a table', async () => {
    const c = capture();
    assert.equal(await runSessions({ dir, out: c.out }), 0);
    assert.match(c.lines[0]!, /^ID\s+SUBJECT\s+CONNECTION\s+STARTED\s+ENDED\s+STATEMENTS\s+REFUSALS$/);
    assert.equal(c.lines.length, 4);
    assert.match(c.lines[1]!, /^sess-a\s+alice\s+pg\s+2024-05-01T10:00:00Z\s+2024-05-01T10:00:00Z\s+2\s+0$/);
    assert.match(c.lines[3]!, /^sess-c\s+alice\s+qdrant\s+2024-05-01T12:00:00Z\s+open\s+0\s+0$/);
  });

  it('prints JSON with filters', async () => {
    const c = capture();
    await runSessions({ dir, json: true, user: 'alice', since: '2024-05-01T10:30:00Z', out: c.out });
    const rows = JSON.parse(c.lines.join('\n')) as { id: string; connection: string; ended_at: number | null }[];
    assert.deepEqual(rows.map((r) => [r.id, r.connection, r.ended_at]), [['sess-c', 'qdrant', null]]);
    const d = capture();
    await runSessions({ dir, json: true, connection: 'pg', since: '90m', now: T0 + 7_200_000, out: d.out });
    assert.deepEqual((JSON.parse(d.lines.join('\n')) as { id: string }[]).map((r) => r.id), ['sess-b']);
  });

  it('rejects a --since it cannot read', async () => {
    assert.throws(() => parseSince('yesterday', 0), { code: 'ERR_VG_USAGE' });
    assert.equal(parseSince('2h', 10 * 3_600_000), 8 * 3_600_000);
  });
});

describe('vecgate replay', () => {
  it('prints the events in order as lines and as JSON lines', async () => {
    const c = capture();
    assert.equal(await runReplay({ dir, id: 'sess-a', out: c.out }), 0);
    assert.equal(c.lines.length, 6);
    assert.match(c.lines[0]!, /^2024-05-01T10:00:00.000Z\s+\+0.000s\s+session-open\s+\{"subject":"alice","groups":\["analysts"\]\}$/);
    assert.match(c.lines[1]!, /\+0.001s\s+statement\s+SELECT 0$/);
    const j = capture();
    await runReplay({ dir, id: 'sess-c', json: true, speed: '1000', out: j.out });
    const e = JSON.parse(j.lines[0]!) as { type: string; vector: { dims: number; norm: number }; raw: unknown };
    assert.equal(e.type, 'session-open');
    assert.deepEqual([e.vector.dims, e.vector.norm], [2, 5]);
    assert.deepEqual(e.raw, { bytes: 8 });
  });

  it('rejects a bad speed and an unknown session', async () => {
    await assert.rejects(runReplay({ dir, id: 'sess-a', speed: 'fast' }), { code: 'ERR_VG_USAGE' });
    await assert.rejects(runReplay({ dir, id: 'nope', out: () => undefined }), { code: 'ERR_VG_RECORDING', message: /no recorded session "nope"/ });
  });
});

describe('vecgate verify-recordings', () => {
  it('says OK per connection and exits 0', async () => {
    const c = capture();
    assert.equal(await runVerifyRecordings({ dir, out: c.out }), 0);
    assert.deepEqual(c.lines.slice(0, 2).map((l) => l.slice(0, 12)), ['OK   pg: 1 s', 'OK   qdrant:']);
    assert.match(c.lines[2]!, /^recordings OK: 2 segments, 11 events$/);
  });

  it('reports a torn tail, repairs it with --repair, then reports damage with exit 1', async () => {
    const t = tempDir();
    try {
      const r = await Recorder.open({ dir: t.dir, durability: 'strict', retentionMs: 86_400_000 });
      await r.append(sessionEvents('s', T0, 3));
      await r.close();
      const [file] = segmentFiles(t.dir);
      appendFileSync(file!, Buffer.from([0, 0, 1, 0, 9, 9]));
      const c = capture();
      assert.equal(await runVerifyRecordings({ dir: t.dir, out: c.out }), 0);
      assert.ok(c.lines.some((l) => /^TORN pg: pg\/\d{4}-\d{2}-\d{2}\/seg-00000001\.vgrec offset \d+ seq \d+: torn-tail: .*--repair/.test(l)), c.lines.join('\n'));
      const rep = capture();
      assert.equal(await runVerifyRecordings({ dir: t.dir, repair: true, out: rep.out }), 0);
      assert.match(rep.lines[0]!, /^repaired pg\/.*seg-00000001\.vgrec: removed 6 bytes/);

      const { buf, frames } = framesOf(file!);
      buf[frames[2]!.offset + 20]! ^= 0xff;
      writeFileSync(file!, buf);
      const bad = capture();
      const code = await runVerifyRecordings({ dir: t.dir, out: bad.out });
      assert.equal(code, 1);
      assert.equal(process.exitCode, 1);
      process.exitCode = undefined; // the test run itself passed
      assert.match(bad.lines[0]!, new RegExp(`^BAD  pg: pg/.*seg-00000001\\.vgrec offset ${frames[2]!.offset} seq ${frames[2]!.seq}: bad-crc: `));
      assert.match(bad.lines[bad.lines.length - 1]!, /^recordings DAMAGED in 1 of 1 connection/);
      assert.ok(readFileSync(file!).length > 0);
    } finally {
      t.cleanup();
    }
  });
});

describe('vecgate verify-recordings --repair, a missing head (#17 item 7)', () => {
  it('re-signs a head the recorder could not write, says so, and the recordings verify', async () => {
    const t = tempDir();
    try {
      // The recorder wrote segments but not the head (the state requests served while it
      // could not write leave behind): two segments, the head gone.
      const r = await Recorder.open({ dir: t.dir, durability: 'strict', retentionMs: 86_400_000 });
      await r.append(sessionEvents('s1', T0, 2, 'http'));
      await r.close();
      const r2 = await Recorder.open({ dir: t.dir, durability: 'strict', retentionMs: 86_400_000 });
      await r2.append(sessionEvents('s2', T0 + 1000, 2, 'http'));
      await r2.close();
      rmSync(path.join(t.dir, 'http', 'head.vghead'));
      const before = capture();
      assert.equal(await runVerifyRecordings({ dir: t.dir, out: before.out }), 1);
      process.exitCode = undefined;
      assert.match(before.lines[0]!, /^BAD  http: head-missing: /);

      const rep = capture();
      assert.equal(await runVerifyRecordings({ dir: t.dir, repair: true, out: rep.out }), 0, rep.lines.join('\n'));
      assert.match(rep.lines[0]!, /^repaired http\/head\.vghead: the signed head was missing .* seq \d+ in segment 2, the last record on disk/);
      assert.match(rep.lines[1]!, /^OK   http: 2 segments, 12 events/);

      const after = capture();
      assert.equal(await runVerifyRecordings({ dir: t.dir, out: after.out }), 0, after.lines.join('\n'));
      // The recorder picks the chain up again from the rebuilt head.
      const r3 = await Recorder.open({ dir: t.dir, durability: 'strict', retentionMs: 86_400_000 });
      await r3.append(sessionEvents('s3', T0 + 2000, 1, 'http'));
      await r3.close();
      assert.equal(await runVerifyRecordings({ dir: t.dir, out: capture().out }), 0);
    } finally {
      t.cleanup();
    }
  });

  it('leaves a missing head alone when records are damaged too, and without the signing key', async () => {
    const t = tempDir();
    try {
      const r = await Recorder.open({ dir: t.dir, durability: 'strict', retentionMs: 86_400_000 });
      await r.append(sessionEvents('s1', T0, 2, 'http'));
      await r.close();
      rmSync(path.join(t.dir, 'http', 'head.vghead'));
      renameSync(path.join(t.dir, 'signing-key.pem'), path.join(t.dir, 'elsewhere.pem'));
      const rep = capture();
      assert.equal(await runVerifyRecordings({ dir: t.dir, repair: true, out: rep.out }), 1);
      process.exitCode = undefined;
      assert.match(rep.lines[0]!, /^NOT REPAIRED http: .*pass --signing-key FILE/);
      const withKey = capture();
      assert.equal(await runVerifyRecordings({ dir: t.dir, repair: true, signingKey: path.join(t.dir, 'elsewhere.pem'), out: withKey.out }), 0, withKey.lines.join('\n'));

      rmSync(path.join(t.dir, 'http', 'head.vghead'));
      const [file] = segmentFiles(t.dir, 'http');
      const { buf, frames } = framesOf(file!);
      buf[frames[2]!.offset + 20]! ^= 0xff;
      writeFileSync(file!, buf);
      const bad = capture();
      assert.equal(await runVerifyRecordings({ dir: t.dir, repair: true, signingKey: path.join(t.dir, 'elsewhere.pem'), out: bad.out }), 1);
      process.exitCode = undefined;
      assert.ok(!bad.lines.some((l) => l.startsWith('repaired')), bad.lines.join('\n'));
    } finally {
      t.cleanup();
    }
  });
});
