// Tampering and crashes, done to real segment files: a flipped byte, a deleted or reordered
// record, a cut file, a removed segment, a removed head and a chain rebuilt and re-signed
// with another key are each reported with the right kind, file, offset and sequence number.
// A crash's torn tail is reported as non-fatal, can be repaired, and recording goes on after it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { appendFileSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { Recorder } from '../../src/recording/recorder.js';
import { BODY_FIXED_BYTES, encodeFrame, FRAME_PREFIX_BYTES, FrameKind, packr, scanSegment, signedBytes, ZERO_HASH, type SignedPayload } from '../../src/recording/segment-format.js';
import { repairTornTails, verifyRecordings, type VerifyIssue } from '../../src/recording/verify-recordings.js';
import { ev, framesOf, recordSegments, rel, segmentFiles, sessionEvents, tempDir, writeBytes } from './recording-fixture.js';

const cleanups: (() => void)[] = [];
after(() => cleanups.forEach((c) => c()));

async function recorded(segments = 3): Promise<{ dir: string; files: string[] }> {
  const t = tempDir();
  cleanups.push(t.cleanup);
  await recordSegments(t.dir, segments);
  const files = segmentFiles(t.dir);
  assert.equal((await verifyRecordings(t.dir)).ok, true, 'intact before tampering');
  return { dir: t.dir, files };
}

async function firstBad(dir: string): Promise<VerifyIssue> {
  const report = await verifyRecordings(dir);
  assert.equal(report.ok, false, 'tampering must be detected');
  assert.equal(report.firstBad.length, 1);
  return report.firstBad[0]!;
}

describe('verifyRecordings detects', () => {
  it('a flipped byte', async () => {
    const { dir, files } = await recorded();
    const { buf, frames } = framesOf(files[1]!);
    const target = frames[3]!;
    buf[target.offset + FRAME_PREFIX_BYTES + BODY_FIXED_BYTES + 2]! ^= 0x01;
    writeBytes(files[1]!, buf);
    const bad = await firstBad(dir);
    assert.deepEqual([bad.kind, bad.file, bad.offset, bad.seq], ['bad-crc', rel(dir, files[1]!), target.offset, target.seq]);
  });

  it('a flipped bit in a sequence number', async () => {
    const { dir, files } = await recorded();
    const { buf, frames } = framesOf(files[0]!);
    const target = frames[2]!;
    buf[target.offset + FRAME_PREFIX_BYTES + 8]! ^= 0x04; // low byte of the u64 sequence
    writeBytes(files[0]!, buf);
    const bad = await firstBad(dir);
    assert.deepEqual([bad.kind, bad.file, bad.offset, bad.seq], ['bad-crc', rel(dir, files[0]!), target.offset, target.seq]);
  });

  it('a deleted record', async () => {
    const { dir, files } = await recorded();
    const { buf, frames } = framesOf(files[1]!);
    const gone = frames[4]!;
    writeBytes(files[1]!, Buffer.concat([buf.subarray(0, gone.offset), buf.subarray(gone.offset + gone.size)]));
    const bad = await firstBad(dir);
    assert.deepEqual([bad.kind, bad.file, bad.offset, bad.seq], ['bad-sequence', rel(dir, files[1]!), gone.offset, gone.seq]);
  });

  it('reordered records', async () => {
    const { dir, files } = await recorded();
    const { buf, frames } = framesOf(files[2]!);
    const [a, b] = [frames[5]!, frames[6]!];
    const swapped = Buffer.concat([buf.subarray(0, a.offset), buf.subarray(b.offset, b.offset + b.size), buf.subarray(a.offset, a.offset + a.size), buf.subarray(b.offset + b.size)]);
    writeBytes(files[2]!, swapped);
    const bad = await firstBad(dir);
    assert.deepEqual([bad.kind, bad.file, bad.offset, bad.seq], ['bad-sequence', rel(dir, files[2]!), a.offset, a.seq]);
  });

  it('a sealed segment cut short in the middle of the chain', async () => {
    const { dir, files } = await recorded();
    const { frames } = framesOf(files[0]!);
    const seal = frames[frames.length - 1]!;
    const lastEvent = frames[frames.length - 2]!;
    truncateSync(files[0]!, lastEvent.offset + 5); // the seal and most of the last event are gone
    const bad = await firstBad(dir);
    assert.deepEqual([bad.kind, bad.file, bad.offset, bad.seq], ['truncated', rel(dir, files[0]!), lastEvent.offset, lastEvent.seq]);
    assert.ok(seal.seq > lastEvent.seq);
  });

  it('the last segment cut short (whole records removed from the end)', async () => {
    const { dir, files } = await recorded();
    const last = files[2]!;
    const { frames } = framesOf(last);
    const cut = frames[frames.length - 3]!;
    truncateSync(last, cut.offset); // a clean cut at a record boundary: no torn bytes to see
    const bad = await firstBad(dir);
    assert.equal(bad.kind, 'truncated');
    assert.equal(bad.seq, frames[frames.length - 1]!.seq, 'names the signed sequence that is gone');
  });

  it('a removed segment in the middle', async () => {
    const { dir, files } = await recorded();
    rmSync(files[1]!);
    const bad = await firstBad(dir);
    assert.equal(bad.kind, 'segment-missing');
    assert.equal(bad.file, rel(dir, files[2]!));
    assert.equal(bad.seq, framesOf(files[2]!).frames[0]!.seq);
    assert.match(bad.detail, /segment 2 /);
  });

  it('a removed first segment', async () => {
    const { dir, files } = await recorded();
    rmSync(files[0]!);
    const bad = await firstBad(dir);
    assert.deepEqual([bad.kind, bad.file], ['segment-missing', rel(dir, files[1]!)]);
  });

  it('a removed last segment', async () => {
    const { dir, files } = await recorded();
    rmSync(files[2]!);
    const bad = await firstBad(dir);
    assert.equal(bad.kind, 'segment-missing');
    assert.match(bad.detail, /names segment 3/);
  });

  it('a removed head', async () => {
    const { dir } = await recorded(1);
    rmSync(path.join(dir, 'pg', 'head.vghead'));
    assert.equal((await firstBad(dir)).kind, 'head-missing');
  });

  it('an edited event with the whole chain rebuilt and re-signed by another key', async () => {
    const { dir, files } = await recorded();
    const forger = generateKeyPairSync('ed25519').privateKey;
    let prevHash: Buffer = ZERO_HASH;
    let edited: { file: string; offset: number; seq: number } | null = null;
    for (const file of files) {
      const buf = readFileSync(file);
      const out: Buffer[] = [buf.subarray(0, 8)];
      let offset = 8;
      for (const f of scanSegment(buf).frames) {
        let payload: Buffer = Buffer.from(f.payload);
        if (f.kind === FrameKind.Event && file === files[0] && f.seq === 4) payload = packr.pack({ ...(packr.unpack(payload) as object), sql: 'SELECT innocent' });
        if (f.kind === FrameKind.Checkpoint || f.kind === FrameKind.Seal) {
          const p = packr.unpack(payload) as SignedPayload;
          const { sign } = await import('node:crypto');
          payload = packr.pack({ ...p, sig: sign(null, signedBytes(f.kind, f.seq, prevHash), forger) });
          if (edited === null) edited = { file, offset, seq: f.seq };
        }
        const enc = encodeFrame(f.kind, f.seq, prevHash, payload);
        out.push(enc.bytes);
        offset += enc.bytes.length;
        prevHash = enc.hash;
      }
      writeBytes(file, Buffer.concat(out));
    }
    const bad = await firstBad(dir);
    assert.deepEqual([bad.kind, bad.file, bad.offset, bad.seq], ['bad-signature', rel(dir, edited!.file), edited!.offset, edited!.seq]);
  });

  it('a segment signed by a key other than the trusted one', async () => {
    const { dir } = await recorded(1);
    const other = tempDir();
    cleanups.push(other.cleanup);
    const pub = path.join(other.dir, 'auditor.pub.pem');
    appendFileSync(pub, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
    const report = await verifyRecordings(dir, { publicKeyPath: pub });
    assert.equal(report.ok, false);
    assert.equal(report.firstBad[0]!.kind, 'head-bad');
    assert.ok(report.connections[0]!.issues.some((i) => i.kind === 'key-mismatch'));
  });
});

describe('a crash mid-write', () => {
  it('leaves a torn tail that is reported, not fatal, repairable, and recording goes on', async () => {
    const t = tempDir();
    cleanups.push(t.cleanup);
    const dir = t.dir;
    // A real process records in strict mode and dies without closing (no seal).
    const recorderUrl = new URL('../../src/recording/recorder.js', import.meta.url).href;
    const events = sessionEvents('crashy', 1000, 3);
    const script = `import { Recorder } from ${JSON.stringify(recorderUrl)};
      const r = await Recorder.open({ dir: ${JSON.stringify(dir)}, durability: 'strict', retentionMs: 86400000 });
      await r.append(${JSON.stringify(events)});
      process.exit(0);`;
    execFileSync(process.execPath, ['--input-type=module', '-e', script], { stdio: 'pipe' });
    const [file] = segmentFiles(dir);
    const intactSize = readFileSync(file!).length;
    // The write in flight when it died reached the disk only in part.
    const partial = encodeFrame(FrameKind.Event, 999, ZERO_HASH, packr.pack(ev('statement', 'crashy', 2000, { sql: 'SELECT lost' })));
    appendFileSync(file!, partial.bytes.subarray(0, 20));

    const report = await verifyRecordings(dir);
    assert.equal(report.ok, true, JSON.stringify(report.firstBad));
    assert.equal(report.tornTails.length, 1);
    const torn = report.tornTails[0]!;
    assert.deepEqual([torn.kind, torn.fatal, torn.file, torn.offset, torn.seq], ['torn-tail', false, rel(dir, file!), intactSize, events.length + 2]);

    // The next process chains after the last whole record, leaving the torn file as it is.
    const r = await Recorder.open({ dir, durability: 'strict', retentionMs: 86_400_000 });
    await r.append(sessionEvents('after', 5000, 1));
    await r.close();
    const again = await verifyRecordings(dir);
    assert.equal(again.ok, true, JSON.stringify(again.firstBad));
    assert.equal(again.tornTails.length, 1);
    assert.equal(again.events, events.length + 4);

    const { repaired } = await repairTornTails(dir);
    assert.deepEqual(repaired, [{ file: rel(dir, file!), truncatedTo: intactSize, removedBytes: 20 }]);
    const clean = await verifyRecordings(dir);
    assert.equal(clean.ok, true);
    assert.equal(clean.tornTails.length, 0);
  });
});
