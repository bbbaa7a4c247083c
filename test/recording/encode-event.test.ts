// Workers encode their own events (encode-event.ts) and the primary appends the bytes: the
// payload is already redacted when it leaves the worker, malformed and oversized events are
// refused with ERR_VG_RECORDING, and encoded batches land in the right chains in order.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { encodeEvent, MAX_EVENT_BYTES } from '../../src/recording/encode-event.js';
import type { RecordEvent } from '../../src/recording/record-event.js';
import { Recorder } from '../../src/recording/recorder.js';
import { packr } from '../../src/recording/segment-format.js';
import { replaySession } from '../../src/recording/session-index.js';
import { allBytes, tempDir } from './recording-fixture.js';

const CANARY = 'CanaryEnc0ded';
const cleanups: (() => void)[] = [];
after(() => cleanups.forEach((c) => c()));

describe('encodeEvent', () => {
  it('returns the redacted event as msgpack', () => {
    const e: RecordEvent = { type: 'statement', ts: 1, session: 's', connection: 'c', sql: `ALTER ROLE r PASSWORD '${CANARY}'`, note: 'visible-marker' };
    const bytes = encodeEvent(e);
    assert.ok(!Buffer.from(bytes).toString('latin1').includes(CANARY));
    const back = packr.unpack(bytes) as RecordEvent;
    assert.equal(back.sql, "ALTER ROLE r PASSWORD '[redacted]'");
    assert.equal(back.note, 'visible-marker');
  });

  it('refuses malformed and oversized events', () => {
    assert.throws(() => encodeEvent({ type: 'statement', ts: 1, session: 's', connection: '' }), { code: 'ERR_VG_RECORDING' });
    assert.throws(() => encodeEvent({ type: 'statement', ts: 'x' as unknown as number, session: 's', connection: 'c' }), { code: 'ERR_VG_RECORDING' });
    const big = 'x'.repeat(MAX_EVENT_BYTES + 1);
    assert.throws(() => encodeEvent({ type: 'statement', ts: 1, session: 's', connection: 'c', sql: big }), /over the \d+-byte limit/);
  });
});

describe('Recorder.appendEncoded', () => {
  it('writes encoded events to their connections in order, and refuses mismatched batches', async () => {
    const t = tempDir();
    cleanups.push(t.cleanup);
    const dir = t.dir;
    const rec = await Recorder.open({ dir, durability: 'strict', retentionMs: 86_400_000 });
    const mk = (connection: string, seq: number): RecordEvent => ({ type: 'statement', ts: 1000 + seq, session: `${connection}-s`, connection, seq, protocol: 'simple', sql: `SELECT ${seq}`, refused: null });
    const events = [mk('a', 1), mk('b', 1), mk('a', 2), mk('b', 2), mk('a', 3)];
    // As a worker sends them: bytes cross threads as Uint8Array, not Buffer.
    await rec.appendEncoded(events.map((e) => e.connection), events.map((e) => new Uint8Array(encodeEvent(e))));
    await assert.rejects(rec.appendEncoded(['a'], []), { code: 'ERR_VG_RECORDING' });
    await rec.close();
    const sqlOf = async (id: string) => {
      const out: unknown[] = [];
      for await (const e of replaySession(dir, id)) if (e.type === 'statement') out.push(e.sql);
      return out;
    };
    assert.deepEqual(await sqlOf('a-s'), ['SELECT 1', 'SELECT 2', 'SELECT 3']);
    assert.deepEqual(await sqlOf('b-s'), ['SELECT 1', 'SELECT 2']);
    assert.ok(allBytes(dir).includes('SELECT 3'));
  });
});
