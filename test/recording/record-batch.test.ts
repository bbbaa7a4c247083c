// Record batches: RecordBatchWriter and parseRecordBatch round-trip any entries, every kind of
// malformed batch is refused with its reason, and Recorder.appendBatch writes what
// appendEncoded writes: same order per connection (also when the two are interleaved), same
// checkpoints at the same sequence numbers, files that verify, strict appends that resolve
// after one shared fdatasync.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { syncCounts } from '../../src/recording/durable-sync.js';
import { encodeEvent, MAX_EVENT_BYTES } from '../../src/recording/encode-event.js';
import {
  parseRecordBatch,
  payloadOffsetsByConnection,
  RECORD_BATCH_ENTRY_OVERHEAD,
  RECORD_BATCH_INITIAL_BYTES,
  RecordBatchWriter,
} from '../../src/recording/record-batch.js';
import type { RecordEvent } from '../../src/recording/record-event.js';
import { CHECKPOINT_EVERY_RECORDS, Recorder } from '../../src/recording/recorder.js';
import { FrameKind } from '../../src/recording/segment-format.js';
import { connectionDirName } from '../../src/recording/segment-format.js';
import { readConnectionEvents } from '../../src/recording/session-index.js';
import { verifyRecordings } from '../../src/recording/verify-recordings.js';
import { DAY, ev, framesOf, segmentFiles, tempDirsRemovedAfter } from './recording-fixture.js';

const dirFor = tempDirsRemovedAfter();

/** One entry built by hand, to write malformed batches. */
function entry(name: Uint8Array | string, payload: Uint8Array, entryLength?: number): Buffer {
  const n = typeof name === 'string' ? Buffer.from(name, 'utf8') : Buffer.from(name);
  const head = Buffer.alloc(RECORD_BATCH_ENTRY_OVERHEAD);
  head.writeUInt32BE(entryLength ?? 2 + n.length + payload.length, 0);
  head.writeUInt16BE(n.length, 4);
  return Buffer.concat([head, n, payload]);
}

function batchOf(entries: [string, Uint8Array][]): Buffer {
  const w = new RecordBatchWriter();
  for (const [c, p] of entries) w.add(c, p);
  return w.take();
}

// Names that differ by case, by length, by normalization, and outside the BMP.
const names = ['pg', 'pG', 'p', 'pgx', 'qdrant', 'é', 'e\u0301', '\ufeffpg', '数据库', '🐘'];

describe('RecordBatchWriter and parseRecordBatch', () => {
  it('round-trip any entries, connections exact, payloads in place', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...names), fc.uint8Array({ minLength: 1, maxLength: 3000 })), { maxLength: 60 }),
        (entries) => {
          const w = new RecordBatchWriter();
          for (const [c, p] of entries) w.add(c, p);
          assert.equal(w.length, entries.length);
          const expectedBytes = entries.reduce((n, [c, p]) => n + RECORD_BATCH_ENTRY_OVERHEAD + Buffer.byteLength(c) + p.length, 0);
          assert.equal(w.byteLength, expectedBytes);
          const blob = w.take();
          assert.equal(blob.length, expectedBytes);
          assert.equal(w.length, 0);
          assert.equal(w.byteLength, 0);
          // As it arrives from another thread: a Uint8Array view, here at an odd offset.
          const backing = new Uint8Array(blob.length + 5);
          backing.set(blob, 3);
          const view = backing.subarray(3, 3 + blob.length);
          const parsed = parseRecordBatch(view);
          assert.deepEqual(parseRecordBatch(blob), parsed);
          assert.equal(parsed.count, entries.length);
          assert.deepEqual(parsed.connections, [...new Set(entries.map(([c]) => c))]);
          entries.forEach(([c, p], i) => {
            assert.equal(parsed.connections[parsed.connectionIndex[i]!], c);
            assert.deepEqual(blob.subarray(parsed.offsets[2 * i], parsed.offsets[2 * i + 1]), Buffer.from(p));
          });
          // Grouped per connection, each group in batch order.
          const groups = payloadOffsetsByConnection(parsed);
          for (const [c, offsets] of groups) {
            const want = entries.filter(([n]) => n === c).map(([, p]) => Buffer.from(p).toString('hex'));
            const got = Array.from({ length: offsets.length / 2 }, (_, k) => blob.subarray(offsets[2 * k], offsets[2 * k + 1]).toString('hex'));
            assert.deepEqual(got, want);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('grows past its first buffer, starts over after take() without touching the batch it gave away, and appends batches verbatim', () => {
    const w = new RecordBatchWriter();
    const payload = (i: number) => Buffer.from(`payload ${i} `.repeat(10));
    const count = Math.ceil((4 * RECORD_BATCH_INITIAL_BYTES) / payload(0).length);
    for (let i = 0; i < count; i++) w.add('pg', payload(i));
    const first = w.take();
    assert.ok(first.length > 4 * RECORD_BATCH_INITIAL_BYTES);
    const copy = Buffer.from(first);
    w.add('qdrant', Buffer.from('after'));
    const second = w.take();
    assert.ok(first.equals(copy), 'the taken batch is not reused');
    // Its own ArrayBuffer (not the shared pool), so it can be transferred to another thread.
    assert.equal(first.byteOffset, 0);
    const moved = structuredClone(first, { transfer: [first.buffer as ArrayBuffer] });
    assert.ok(Buffer.from(moved.buffer, moved.byteOffset, moved.length).equals(copy));

    w.appendBatch(copy);
    w.add('pg', Buffer.from('tail'));
    w.appendBatch(second);
    w.appendBatch(new Uint8Array(0));
    assert.equal(w.length, count + 2);
    const all = parseRecordBatch(w.take());
    assert.equal(all.count, count + 2);
    assert.deepEqual(all.connections, ['pg', 'qdrant']);
    assert.deepEqual(Array.from(all.connectionIndex.subarray(count)), [0, 1]);
    assert.equal(w.take().length, 0);
    assert.throws(() => w.appendBatch(entry('pg', Buffer.from('x'), 50)), /entry 0 at byte 0 is 50 bytes long, past the end of the 9-byte batch/);
    assert.equal(w.length, 0, 'a refused batch adds nothing');
  });

  it('refuses every malformed batch with its reason', () => {
    const ok = entry('pg', Buffer.from('ok'));
    const big = Buffer.alloc(MAX_EVENT_BYTES + 1, 1);
    const cases: [Buffer, RegExp][] = [
      [Buffer.concat([ok, Buffer.from([0, 0, 0])]), /entry 1 at byte 10 is cut off inside its 6-byte header/],
      [entry('pg', Buffer.from('abc'), 100), /entry 0 at byte 0 is 100 bytes long, past the end of the 11-byte batch/],
      [Buffer.concat([ok, entry('pg', Buffer.from('abc'), 8)]), /entry 1 at byte 10 is 8 bytes long, past the end of the 21-byte batch/],
      [entry('', Buffer.from('abc')), /entry 0 at byte 0 has an empty connection name/],
      [entry('pg', Buffer.alloc(0)), /entry 0 at byte 0 has an empty payload/],
      [Buffer.concat([ok, (() => { const e = entry('pgpgpg', Buffer.alloc(0), 4); return e.subarray(0, 8); })()]), /entry 1 at byte 10 has a 6-byte connection name in a 4-byte entry/],
      [entry('pg', big), new RegExp(`entry 0 at byte 0 has a ${MAX_EVENT_BYTES + 1}-byte payload, over the ${MAX_EVENT_BYTES}-byte event limit`)],
      [Buffer.concat([ok, entry(Uint8Array.of(0x70, 0xc3, 0x28), Buffer.from('x'))]), /entry 1 at byte 10 has a connection name that is not UTF-8/],
    ];
    for (const [blob, message] of cases) {
      assert.throws(() => parseRecordBatch(blob), (e: unknown) => (e as { code?: string }).code === 'ERR_VG_RECORDING' && message.test((e as Error).message), String(message));
    }
    assert.equal(parseRecordBatch(new Uint8Array(0)).count, 0);
  });

  it('on arbitrary bytes, either refuses with ERR_VG_RECORDING or returns entries inside the batch', () => {
    const valid = (e: unknown) => (e as { code?: string }).code === 'ERR_VG_RECORDING' && /^malformed record batch: /.test((e as Error).message);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          // A valid batch with bytes flipped or cut: closer to what a bug would produce.
          fc.tuple(fc.array(fc.tuple(fc.constantFrom(...names), fc.uint8Array({ minLength: 1, maxLength: 40 })), { minLength: 1, maxLength: 8 }), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()).map(([entries, at, byte, cut]) => {
            const b = batchOf(entries);
            if (cut) return b.subarray(0, at % b.length);
            b[at % b.length] = byte;
            return b;
          }),
        ),
        (blob) => {
          let parsed;
          try {
            parsed = parseRecordBatch(blob);
          } catch (e) {
            assert.ok(valid(e), String(e));
            return;
          }
          let end = 0;
          for (let i = 0; i < parsed.count; i++) {
            const [s, e] = [parsed.offsets[2 * i]!, parsed.offsets[2 * i + 1]!];
            assert.ok(s > end && s < e && e <= blob.length, `entry ${i} [${s}, ${e}) after ${end} in ${blob.length}`);
            assert.ok(parsed.connectionIndex[i]! < parsed.connections.length);
            end = e;
          }
          assert.equal(end, blob.length, 'the entries cover the batch');
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('refuses entries it could not parse back, and adds nothing for them', () => {
    const w = new RecordBatchWriter();
    const bad: [() => void, RegExp][] = [
      [() => w.add('', Buffer.from('x')), /needs a connection name/],
      [() => w.add('pg', new Uint8Array(0)), /empty payload/],
      [() => w.add('pg', Buffer.alloc(MAX_EVENT_BYTES + 1)), /over the \d+-byte limit/],
      [() => w.add('x'.repeat(0x10000), Buffer.from('x')), /connection name of 65536 bytes is over the 65535-byte limit/],
    ];
    for (const [call, message] of bad) assert.throws(call, (e: unknown) => (e as { code?: string }).code === 'ERR_VG_RECORDING' && message.test((e as Error).message), String(message));
    assert.equal(w.length, 0);
    assert.equal(w.byteLength, 0);
  });
});

/** Every frame of a connection, across its segments: kind, sequence, and payload for events. */
function chainOf(dir: string, connection: string): { kinds: string; events: string[] } {
  const kinds: string[] = [];
  const events: string[] = [];
  for (const file of segmentFiles(dir, connectionDirName(connection))) {
    for (const f of framesOf(file).frames) {
      kinds.push(`${f.kind}@${f.seq}`);
      if (f.kind === FrameKind.Event) events.push(f.payload.toString('hex'));
    }
  }
  return { kinds: kinds.join(' '), events };
}

async function eventsOf(dir: string, connection: string): Promise<RecordEvent[]> {
  const out: RecordEvent[] = [];
  const dirName = connectionDirName(connection);
  for await (const { event } of readConnectionEvents(dir, { connection, dirName, path: path.join(dir, dirName) })) out.push(event);
  return out;
}

const stmt = (connection: string, i: number): RecordEvent => ev('statement', `${connection}-s`, 1000 + i, { sql: `SELECT ${i}`, n: i }, connection);

describe('Recorder.appendBatch', () => {
  it('writes batches of mixed connections in order, interleaved with appendEncoded, and the files verify', async () => {
    const dir = dirFor();
    const r = await Recorder.open({ dir, durability: 'async', retentionMs: DAY });
    const expected = new Map<string, number[]>([['pg', []], ['qdrant', []], ['数据库', []]]);
    const pending: Promise<void>[] = [];
    let i = 0;
    for (let round = 0; round < 30; round++) {
      const conns = ['pg', 'qdrant', '数据库'];
      const events = Array.from({ length: 1 + (round % 7) * 13 }, (_, k) => stmt(conns[(k * 7 + round) % 3]!, i++));
      for (const e of events) expected.get(e.connection)!.push(e['n'] as number);
      if (round % 3 === 1) {
        pending.push(r.appendEncoded(events.map((e) => e.connection), events.map((e) => new Uint8Array(encodeEvent(e)))));
      } else {
        pending.push(r.appendBatch(batchOf(events.map((e) => [e.connection, encodeEvent(e)]))));
      }
      // Some awaited (separate drains), some not (one drain groups several).
      if (round % 5 === 4) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    await r.close();
    const report = await verifyRecordings(dir);
    assert.equal(report.ok, true, JSON.stringify(report.firstBad));
    for (const [connection, ns] of expected) {
      assert.deepEqual((await eventsOf(dir, connection)).map((e) => e['n']), ns, connection);
    }
  });

  it(`puts checkpoints where appendEncoded puts them (every ${CHECKPOINT_EVERY_RECORDS} records, also inside one batch)`, async () => {
    const viaEncoded = dirFor();
    const viaBatch = dirFor();
    const a = await Recorder.open({ dir: viaEncoded, durability: 'async', retentionMs: DAY });
    const b = await Recorder.open({ dir: viaBatch, durability: 'async', retentionMs: DAY });
    // Batch sizes that cross the checkpoint boundary mid-batch, one that spans several, and
    // two connections whose counts differ.
    const C = CHECKPOINT_EVERY_RECORDS;
    const sizes = [1, Math.floor(C / 3), C - 2, 1, 1, Math.floor(C * 2.5), 17, C * 2];
    let i = 0;
    const pa: Promise<void>[] = [];
    const pb: Promise<void>[] = [];
    for (const size of sizes) {
      const events = Array.from({ length: size }, (_, k) => stmt(k % 4 === 3 ? 'qdrant' : 'pg', i++));
      const payloads = events.map((e) => encodeEvent(e));
      pa.push(a.appendEncoded(events.map((e) => e.connection), payloads));
      pb.push(b.appendBatch(batchOf(events.map((e, k) => [e.connection, payloads[k]!]))));
      if (size === Math.floor(C * 2.5)) await Promise.all([...pa.splice(0), ...pb.splice(0)]);
    }
    await Promise.all([...pa, ...pb]);
    await a.close();
    await b.close();
    for (const connection of ['pg', 'qdrant']) {
      const want = chainOf(viaEncoded, connection);
      const got = chainOf(viaBatch, connection);
      assert.equal(got.kinds, want.kinds, connection);
      assert.deepEqual(got.events, want.events, connection);
    }
    const pg = chainOf(viaBatch, 'pg').kinds.split(' ');
    const checkpoints = pg.filter((k) => k.startsWith(`${FrameKind.Checkpoint}@`));
    assert.equal(checkpoints.length, Math.floor(pg.filter((k) => k.startsWith(`${FrameKind.Event}@`)).length / CHECKPOINT_EVERY_RECORDS));
    // header at seq 1, then the first checkpoint right after event CHECKPOINT_EVERY_RECORDS
    assert.equal(checkpoints[0], `${FrameKind.Checkpoint}@${CHECKPOINT_EVERY_RECORDS + 2}`);
    for (const dir of [viaEncoded, viaBatch]) assert.equal((await verifyRecordings(dir)).ok, true);
  });

  it('strict: concurrent batches share one fdatasync and each resolves after it', async () => {
    const dir = dirFor();
    const r = await Recorder.open({ dir, durability: 'strict', retentionMs: DAY });
    await r.appendBatch(batchOf([['pg', encodeEvent(ev('session-open', 'g', 1))]]));
    const before = syncCounts.segmentData;
    const synced: number[] = [];
    await Promise.all(
      Array.from({ length: 20 }, (_, k) =>
        r.appendBatch(batchOf([['pg', encodeEvent(stmt('pg', 2 * k))], ['pg', encodeEvent(stmt('pg', 2 * k + 1))]])).then(() => synced.push(syncCounts.segmentData - before)),
      ),
    );
    assert.equal(syncCounts.segmentData - before, 1);
    assert.deepEqual(new Set(synced), new Set([1]));
    await r.close();
    assert.equal((await verifyRecordings(dir)).connections[0]!.events, 41);
  });

  it('refuses a malformed batch whole, and any batch once closed', async () => {
    const dir = dirFor();
    const r = await Recorder.open({ dir, durability: 'strict', retentionMs: DAY });
    const good = batchOf([['pg', encodeEvent(stmt('pg', 1))]]);
    await assert.rejects(r.appendBatch(Buffer.concat([good, entry('pg', Buffer.alloc(0))])), { code: 'ERR_VG_RECORDING', message: /entry 1 at byte \d+ has an empty payload/ });
    await r.appendBatch(new Uint8Array(0));
    await r.close();
    assert.equal((await verifyRecordings(dir)).connections.length, 0, 'nothing of it was written');
    await assert.rejects(r.appendBatch(good), { code: 'ERR_VG_RECORDING', message: /closed/ });
  });
});
