// verify-recordings on the piscina pool (one task per connection's chain, #17 item 16) gives
// the report the single-thread path gives, byte for byte, on intact, torn and tampered
// recordings; a tampered record is still named with its file, offset and sequence number.
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { runVerifyRecordings } from '../../src/cli/verify-recordings-command.js';
import { FRAME_PREFIX_BYTES, BODY_FIXED_BYTES } from '../../src/recording/segment-format.js';
import { verifyRecordings, verifyRecordingsOnThisThread, type ConnectionVerifyReport } from '../../src/recording/verify-recordings.js';
import { framesOf, recordSegments, rel, segmentFiles, tempDirsRemovedAfter, writeBytes } from './recording-fixture.js';

const newDir = tempDirsRemovedAfter();
const CONNECTIONS = ['c1', 'c2', 'c3', 'c4', 'c5'];

async function severalConnections(segments = 3): Promise<string> {
  const dir = newDir();
  for (const c of CONNECTIONS) await recordSegments(dir, segments, c);
  return dir;
}

describe('verifyRecordings on the pool', () => {
  it('gives the single-thread report for several intact connections, and reports each one done', async () => {
    const dir = await severalConnections();
    const seen: string[] = [];
    const parallel = await verifyRecordings(dir, { jobs: 3, onConnection: (r: ConnectionVerifyReport, done, total) => seen.push(`${r.connection} ${done}/${total}`) });
    const single = await verifyRecordingsOnThisThread(dir);
    assert.equal(parallel.ok, true);
    assert.equal(parallel.connections.length, CONNECTIONS.length);
    assert.deepEqual(parallel, single); // strict: tip hashes come back as Buffers
    assert.ok(Buffer.isBuffer(parallel.connections[0]!.tip!.hash));
    assert.deepEqual(seen.map((s) => s.split(' ')[0]).sort(), CONNECTIONS);
    assert.deepEqual(seen.map((s) => s.split(' ')[1]), CONNECTIONS.map((_, i) => `${i + 1}/${CONNECTIONS.length}`));
  });

  it('gives the single-thread report when one connection has a torn tail and another a flipped byte', async () => {
    const dir = await severalConnections();
    appendFileSync(segmentFiles(dir, 'c2').at(-1)!, Buffer.from([0, 0, 1, 0, 9]));
    const file = segmentFiles(dir, 'c4')[1]!;
    const { buf, frames } = framesOf(file);
    buf[frames[3]!.offset + FRAME_PREFIX_BYTES + BODY_FIXED_BYTES + 2]! ^= 0x01;
    writeBytes(file, buf);
    const parallel = await verifyRecordings(dir, { jobs: 4 });
    assert.deepEqual(parallel, await verifyRecordingsOnThisThread(dir));
    assert.equal(parallel.ok, false);
    assert.equal(parallel.tornTails.length, 1);
    assert.equal(parallel.tornTails[0]!.connection, 'c2');
  });

  it('names a tampered record in one connection with its sequence number', async () => {
    const dir = await severalConnections();
    const file = segmentFiles(dir, 'c3')[1]!;
    const { buf, frames } = framesOf(file);
    const target = frames[4]!;
    buf[target.offset + FRAME_PREFIX_BYTES + BODY_FIXED_BYTES + 2]! ^= 0x01;
    writeBytes(file, buf);

    const report = await verifyRecordings(dir, { jobs: 2 });
    assert.equal(report.ok, false);
    assert.equal(report.firstBad.length, 1);
    const bad = report.firstBad[0]!;
    assert.deepEqual([bad.connection, bad.kind, bad.file, bad.offset, bad.seq], ['c3', 'bad-crc', rel(dir, file), target.offset, target.seq]);
    assert.deepEqual(report.connections.filter((c) => c.firstBad === null).map((c) => c.connection), ['c1', 'c2', 'c4', 'c5']);

    const out: string[] = [];
    const err: string[] = [];
    assert.equal(await runVerifyRecordings({ dir, jobs: 2, progress: true, out: (l) => out.push(l), err: (l) => err.push(l) }), 1);
    process.exitCode = undefined; // the test run itself passed
    assert.match(out[2]!, new RegExp(`^BAD  c3: c3/.*seg-00000002\\.vgrec offset ${target.offset} seq ${target.seq}: bad-crc: `));
    assert.match(out.at(-1)!, /^recordings DAMAGED in 1 of 5 connections: 15 segments, /);
    assert.equal(err.length, CONNECTIONS.length, err.join('\n'));
    assert.ok(err.some((l) => /^verify-recordings: \d\/5 connections checked: c3 BAD \(bad-crc\)/.test(l)), err.join('\n'));
  });

  it('prints the same lines with --jobs 1 and --jobs 3, and no per-connection lines without --progress', async () => {
    const dir = await severalConnections(2);
    const lines = async (jobs: number) => {
      const out: string[] = [];
      const err: string[] = [];
      assert.equal(await runVerifyRecordings({ dir, jobs, out: (l) => out.push(l), err: (l) => err.push(l) }), 0);
      assert.deepEqual(err, []);
      return out;
    };
    assert.deepEqual(await lines(3), await lines(1));
  });

  it('rejects a pool size out of bounds', async () => {
    const dir = await severalConnections(1);
    for (const jobs of [0, 1.5, 1000]) await assert.rejects(verifyRecordings(dir, { jobs }), { code: 'ERR_VG_USAGE' });
  });
});
