// Tests for the typed-message reader: fixtures built with the serializer, read back whole
// and split at every byte offset; lengths below 4 or over the cap fail closed and stay
// failed; a fast-check property that any split of any valid sequence reads the same.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MessageReader, type ReadResult } from '../../../workers/pg/message-reader.js';
import { BufferWriter } from '../../../workers/pg/buffer-writer.js';
import * as ser from '../../../workers/pg/serializer.js';

type Ok = Extract<ReadResult, { status: 'ok' }>;

/** Pushes each piece and drains after each push, as the sessions do. */
function readAll(pieces: Buffer[], max = 1 << 16): { messages: Ok[]; end: ReadResult; pending: number } {
  const r = new MessageReader(max);
  const messages: Ok[] = [];
  let end: ReadResult = { status: 'need-more' };
  for (const p of pieces) {
    r.push(p);
    for (;;) {
      end = r.next();
      if (end.status !== 'ok') break;
      // Copy: bodies may share memory with pushed chunks, and the test keeps them.
      messages.push({ status: 'ok', type: end.type, body: Buffer.from(end.body) });
    }
    if (end.status === 'error') break;
  }
  return { messages, end, pending: r.pending() };
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const sorted = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of sorted) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out;
}

const fixture = Buffer.concat([
  ser.authenticationOk(),
  ser.parameterStatus('server_version', '15.8'),
  ser.backendKeyData(42, 0x01020304),
  ser.readyForQuery('I'),
  ser.terminate(),
]);

describe('MessageReader', () => {
  it('reads a sequence whole, with type, body and nothing pending', () => {
    const { messages, end, pending } = readAll([fixture]);
    assert.deepEqual(
      messages.map((m) => [String.fromCharCode(m.type), m.body.toString('hex')]),
      [
        ['R', '00000000'],
        ['S', Buffer.from('server_version\x0015.8\x00').toString('hex')],
        ['K', '0000002a01020304'],
        ['Z', '49'],
        ['X', ''],
      ],
    );
    assert.deepEqual(end, { status: 'need-more' });
    assert.equal(pending, 0);
  });

  it('gives the same messages split at every offset, and one byte at a time', () => {
    const whole = readAll([fixture]);
    for (let k = 0; k <= fixture.length; k++) {
      assert.deepEqual(readAll([fixture.subarray(0, k), fixture.subarray(k)]), whole, `split at ${k}`);
    }
    assert.deepEqual(readAll([...fixture].map((b) => Buffer.from([b]))), whole);
  });

  it('counts pending bytes and hands the rest over with takeRest()', () => {
    const r = new MessageReader(1024);
    const tail = ser.readyForQuery().subarray(0, 4); // a message not yet complete
    r.push(fixture.subarray(0, 3));
    assert.equal(r.pending(), 3);
    r.push(Buffer.concat([fixture.subarray(3), tail]));
    let n = 0;
    while (r.next().status === 'ok') n++;
    assert.equal(n, 5);
    assert.equal(r.pending(), tail.length);
    assert.deepEqual(r.takeRest(), tail);
    assert.equal(r.pending(), 0);
    assert.deepEqual(r.takeRest(), Buffer.alloc(0));
  });

  it('accepts a message exactly at the cap and refuses one byte over, from the header alone', () => {
    const body = Buffer.alloc(96, 1);
    const m = new BufferWriter().bytes(body).frame(0x64); // length field 100
    assert.equal(readAll([m], 100).messages.length, 1);
    const over = readAll([m.subarray(0, 5)], 99); // only the header has arrived
    assert.equal(over.end.status, 'error');
    assert.match((over.end as { message: string }).message, /0x64 of 100 bytes is over the limit of 99/);
  });

  it('refuses lengths below 4 (including negative) and stays failed', () => {
    for (const len of [0, 3, -1, -2147483648]) {
      const bad = Buffer.concat([new BufferWriter().byte(0x52).int32(len).take(), ser.readyForQuery()]);
      for (let k = 0; k <= bad.length; k++) {
        const { end, messages } = readAll([bad.subarray(0, k), bad.subarray(k)]);
        // Whatever the split, the stream is refused once the header is complete.
        assert.equal(end.status, 'error', `len ${len} split ${k}`);
        assert.match((end as { message: string }).message, /invalid message length/);
        assert.equal(messages.length, 0);
      }
    }
    const r = new MessageReader(100);
    r.push(new BufferWriter().byte(0x52).int32(2).take());
    assert.equal(r.next().status, 'error');
    r.push(ser.readyForQuery());
    assert.equal(r.next().status, 'error', 'a failed reader never recovers');
    assert.equal(r.pending(), 0, 'a failed reader buffers nothing');
  });

  it('a valid message after a good one, then garbage: good ones come out, then the error', () => {
    const stream = Buffer.concat([ser.readyForQuery(), Buffer.from([0x45, 0x7f, 0xff, 0xff, 0xff])]);
    const { messages, end } = readAll([stream], 1000);
    assert.equal(messages.length, 1);
    assert.equal(end.status, 'error');
  });

  it('a nonsense cap is a programmer error and throws', () => {
    assert.throws(() => new MessageReader(3), RangeError);
    assert.throws(() => new MessageReader(Number.NaN), RangeError);
  });
});

describe('MessageReader: properties', () => {
  const message = fc.tuple(fc.integer({ min: 0x20, max: 0x7e }), fc.uint8Array({ maxLength: 200 })).map(([t, body]) => new BufferWriter().bytes(body).frame(t));

  it('any split of any valid sequence reads the same as the whole', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (msgs, cuts) => {
        const whole = Buffer.concat(msgs);
        const expected = readAll([whole]);
        assert.equal(expected.messages.length, msgs.length);
        assert.deepEqual(readAll(splitAt(whole, cuts)), expected);
      }),
      { numRuns: 500 },
    );
  });

  it('arbitrary bytes in arbitrary chunks never throw, never return more than was pushed', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 10 }), fc.integer({ min: 4, max: 300 }), (chunks, max) => {
        const total = chunks.reduce((n, c) => n + c.length, 0);
        const { messages, pending } = readAll(chunks.map((c) => Buffer.from(c)), max);
        const used = messages.reduce((n, m) => n + 5 + m.body.length, 0);
        assert.ok(used + pending <= total);
        for (const m of messages) assert.ok(m.body.length + 4 <= max);
      }),
      { numRuns: 1000 },
    );
  });
});
