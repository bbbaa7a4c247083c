// The recorder against a real directory: appends verify, strict appends that arrive together
// share one fdatasync, async ones do not wait for it, chains continue across restarts,
// signed checkpoints appear every N records, retention deletes whole expired segments and
// records that it did, and the read side (listSessions, replaySession) finds what was written.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { syncCounts } from '../../src/recording/durable-sync.js';
import { CHECKPOINT_EVERY_RECORDS, FRAME_BUFFER_MAX_BYTES, Recorder } from '../../src/recording/recorder.js';
import { FrameKind } from '../../src/recording/segment-format.js';
import { listSegments } from '../../src/recording/segment-store.js';
import { listSessions, readConnectionEvents, replaySession } from '../../src/recording/session-index.js';
import type { RecordEvent } from '../../src/recording/record-event.js';
import { verifyRecordings } from '../../src/recording/verify-recordings.js';
import { DAY, ev, framesOf, recordSegments, segmentFiles, sessionEvents, tempDirsRemovedAfter } from './recording-fixture.js';

const dirFor = tempDirsRemovedAfter();

describe('Recorder', () => {
  it('appends events that verify, with the key files in place', async () => {
    const dir = dirFor();
    const r = await Recorder.open({ dir, durability: 'strict', retentionMs: DAY });
    await r.append(sessionEvents('s1', 1000, 3));
    await r.append(sessionEvents('t1', 2000, 2, 'qdrant'));
    await r.close();
    const report = await verifyRecordings(dir);
    assert.equal(report.ok, true, JSON.stringify(report.firstBad));
    assert.deepEqual(report.connections.map((c) => [c.connection, c.events]), [['pg', 8], ['qdrant', 6]]);
    assert.equal(statSync(path.join(dir, 'signing-key.pem')).mode & 0o777, 0o600);
    assert.ok(statSync(path.join(dir, 'signing-key.pub.pem')).isFile());
    await assert.rejects(r.append([ev('statement', 's1', 5000)]), { code: 'ERR_VG_RECORDING' });
  });

  it('rejects malformed events without writing anything', async () => {
    const dir = dirFor();
    const r = await Recorder.open({ dir, durability: 'strict', retentionMs: DAY });
    await assert.rejects(r.append([{ type: 'statement', ts: 1, session: 's' } as never]), { code: 'ERR_VG_RECORDING' });
    await r.close();
    assert.equal((await verifyRecordings(dir)).connections.length, 0);
  });

  it('strict: concurrent appends share one fdatasync, and each resolves after it', async () => {
    const dir = dirFor();
    const r = await Recorder.open({ dir, durability: 'strict', retentionMs: DAY });
    await r.append([ev('session-open', 'g', 1)]); // creates the segment (its own syncs)
    const before = syncCounts.segmentData;
    const synced: number[] = [];
    await Promise.all(
      Array.from({ length: 25 }, (_, i) => r.append([ev('statement', 'g', 2 + i, { sql: `SELECT ${i}` })]).then(() => synced.push(syncCounts.segmentData - before))),
    );
    assert.equal(syncCounts.segmentData - before, 1);
    assert.deepEqual(new Set(synced), new Set([1]), 'every append resolved after the shared fdatasync');
    // A later append is a new group: one more.
    await r.append([ev('session-close', 'g', 100)]);
    assert.equal(syncCounts.segmentData - before, 2);
    await r.close();
    assert.equal((await verifyRecordings(dir)).ok, true);
  });

  it('async: appends do not wait for fdatasync', async () => {
    const dir = dirFor();
    const r = await Recorder.open({ dir, durability: 'async', retentionMs: DAY });
    await r.append([ev('session-open', 'a', 1)]);
    const before = syncCounts.segmentData;
    await Promise.all(Array.from({ length: 10 }, (_, i) => r.append([ev('statement', 'a', 2 + i)])));
    assert.equal(syncCounts.segmentData - before, 0);
    await r.close(); // the seal is synced
    assert.equal(syncCounts.segmentData - before, 1);
    assert.equal((await verifyRecordings(dir)).ok, true);
  });

  it('continues the chain across restarts, one segment per process', async () => {
    const dir = dirFor();
    await recordSegments(dir, 3);
    const files = segmentFiles(dir);
    assert.equal(files.length, 3);
    assert.deepEqual(files.map((f) => path.basename(f)), ['seg-00000001.vgrec', 'seg-00000002.vgrec', 'seg-00000003.vgrec']);
    const report = await verifyRecordings(dir);
    assert.equal(report.ok, true, JSON.stringify(report.firstBad));
    assert.equal(report.connections[0]!.events, 30);
    // header + 10 events + seal per segment, one sequence across all of them
    assert.equal(report.connections[0]!.lastSeq, 36);
  });

  it(`writes a signed checkpoint every ${CHECKPOINT_EVERY_RECORDS} records`, async () => {
    const dir = dirFor();
    const r = await Recorder.open({ dir, durability: 'async', retentionMs: DAY });
    const events = Array.from({ length: CHECKPOINT_EVERY_RECORDS + 5 }, (_, i) => ev('statement', 'c', i, { sql: `SELECT ${i}` }));
    await r.append(events);
    await r.close();
    const { frames } = framesOf(segmentFiles(dir)[0]!);
    const kinds = frames.map((f) => f.kind);
    assert.equal(kinds.indexOf(FrameKind.Checkpoint), 1 + CHECKPOINT_EVERY_RECORDS);
    assert.equal(kinds[kinds.length - 1], FrameKind.Seal);
    assert.equal((await verifyRecordings(dir)).ok, true);
  });

  it('frames batches of every size through its reused frame buffer: small, growing, two connections at once, over the buffer limit, small again', async () => {
    const dir = dirFor();
    const r = await Recorder.open({ dir, durability: 'async', retentionMs: DAY });
    const big = 'x'.repeat(4000);
    const batches: RecordEvent[][] = [
      [ev('statement', 'b', 1, { sql: 'SELECT 1' })],
      Array.from({ length: 100 }, (_, i) => ev('statement', 'b', 2 + i, { sql: `${i} ${big}` })), // ~400 kB: the buffer grows
      Array.from({ length: 3 }, (_, i) => ev('statement', 'b', 200 + i, { sql: `small ${i}` })),
      Array.from({ length: Math.ceil((FRAME_BUFFER_MAX_BYTES * 1.5) / 4000) }, (_, i) => ev('statement', 'b', 300 + i, { sql: `${i} ${big}` })), // over the limit
      [ev('statement', 'b', 5000, { sql: 'SELECT last' })],
    ];
    for (const b of batches) await r.append(b);
    // Appends made together are one drain: both connections frame into the same buffer.
    await Promise.all([r.append([ev('statement', 'c', 1, { sql: 'on pg' })]), r.append([ev('statement', 'c', 2, { sql: 'on qdrant' }, 'qdrant')])]);
    await r.close();
    const report = await verifyRecordings(dir);
    assert.equal(report.ok, true, JSON.stringify(report.firstBad));
    const sqlsOf = async (connection: string): Promise<unknown[]> => {
      const out: unknown[] = [];
      for await (const { event } of readConnectionEvents(dir, { connection, dirName: connection, path: path.join(dir, connection) })) if (event.type === 'statement') out.push(event.sql);
      return out;
    };
    assert.deepEqual(await sqlsOf('pg'), [...batches.flat().map((e) => e.sql), 'on pg']);
    assert.deepEqual(await sqlsOf('qdrant'), ['on qdrant']);
  });

  it('retention deletes expired segments, records a retention event, and still verifies', async () => {
    const dir = dirFor();
    await recordSegments(dir, 2);
    const r = await Recorder.open({ dir, durability: 'strict', retentionMs: DAY });
    assert.deepEqual((await r.enforceRetention(Date.now())).deleted, [], 'nothing is old yet');
    await r.append(sessionEvents('late', 5_000_000, 1));
    const res = await r.enforceRetention(Date.now() + 2 * DAY);
    await r.close();
    assert.equal(res.deleted.length, 2);
    assert.ok(res.deleted.every((f) => /pg\/\d{4}-\d{2}-\d{2}\/seg-0000000[12]\.vgrec$/.test(f)), res.deleted.join());
    const left = await listSegments(dir, path.join(dir, 'pg'));
    assert.deepEqual(left.map((s) => s.segment), [3]);
    const report = await verifyRecordings(dir);
    assert.equal(report.ok, true, JSON.stringify(report.firstBad));
    const retention = [];
    for await (const { event } of readConnectionEvents(dir, { connection: 'pg', dirName: 'pg', path: path.join(dir, 'pg') })) if (event.type === 'retention') retention.push(event);
    assert.equal(retention.length, 1);
    assert.deepEqual(retention[0]!['segments'], [1, 2]);
    assert.deepEqual(retention[0]!['deleted'], res.deleted);
    // The session in the segment being written is still there.
    assert.deepEqual((await listSessions(dir)).map((s) => s.id), ['late']);
  });

  it('replays a session in time order and lists sessions by filter', async () => {
    const dir = dirFor();
    const r = await Recorder.open({ dir, durability: 'strict', retentionMs: DAY });
    // Two workers hand in batches out of time order; replay sorts by time.
    await r.append([ev('session-open', 'x', 100, { subject: 'alice' }), ev('result', 'x', 300, { rows: 1 })]);
    await r.append([ev('statement', 'x', 200, { sql: 'SELECT 1' }), ev('session-close', 'x', 400)]);
    await r.append(sessionEvents('y', 1000, 2, 'pg', 'bob'));
    await r.append(sessionEvents('z', 5000, 1, 'qdrant', 'alice'));
    await r.append([ev('session-open', 'open', 9000, { subject: 'carol' }, 'qdrant'), ev('refusal', 'open', 9001, { reason: 'read-only' }, 'qdrant')]);
    await r.close();

    const types = [];
    for await (const e of replaySession(dir, 'x')) types.push(`${e.ts}:${e.type}`);
    assert.deepEqual(types, ['100:session-open', '200:statement', '300:result', '400:session-close']);
    await assert.rejects(async () => {
      for await (const _ of replaySession(dir, 'nope')) void _;
    }, { code: 'ERR_VG_RECORDING' });

    const all = await listSessions(dir);
    assert.deepEqual(all.map((s) => s.id), ['x', 'y', 'z', 'open']);
    assert.deepEqual(all[0], { id: 'x', subject: 'alice', connection: 'pg', started_at: 100, ended_at: 400, statements: 1, refusals: 0 });
    assert.equal(all[3]!.ended_at, null);
    assert.equal(all[3]!.refusals, 1);
    assert.deepEqual((await listSessions(dir, { user: 'alice' })).map((s) => s.id), ['x', 'z']);
    assert.deepEqual((await listSessions(dir, { connection: 'qdrant' })).map((s) => s.id), ['z', 'open']);
    assert.deepEqual((await listSessions(dir, { since: 1000 })).map((s) => s.id), ['y', 'z', 'open']);
    assert.deepEqual((await listSessions(dir, { since: 1000, user: 'alice', connection: 'qdrant' })).map((s) => s.id), ['z']);
  });

  it('refuses a configured signing key that is not Ed25519, and a key other than the recordings were signed with', async () => {
    const dir = dirFor();
    const { generateKeyPairSync } = await import('node:crypto');
    const { writeFileSync } = await import('node:fs');
    const ec = path.join(dir, 'ec.pem');
    writeFileSync(ec, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await assert.rejects(Recorder.open({ dir, durability: 'strict', retentionMs: DAY, signingKeyPath: ec }), /must be an Ed25519 key/);
    await (await Recorder.open({ dir, durability: 'strict', retentionMs: DAY })).close();
    const other = path.join(dir, 'other.pem');
    writeFileSync(other, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await assert.rejects(Recorder.open({ dir, durability: 'strict', retentionMs: DAY, signingKeyPath: other }), /signed with another key/);
  });
});
