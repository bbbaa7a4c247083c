// The C++ statement recorder (native/pg/statement-recorder.h) must write what the JavaScript one
// (workers/pg-statement-recorder.ts, then encode-event.ts's redaction) writes, event for
// event: the same captured messages go through both and the decoded events are compared,
// for hand-picked cases (secrets, embeddings, cut bodies, non-ASCII) and generated ones.
import assert from 'node:assert/strict';
import { describe, it, before } from 'node:test';
import fc from 'fast-check';
import { native } from '../../src/native.js';
import { encodeEvent } from '../../src/recording/encode-event.js';
import type { RecordEvent } from '../../src/recording/record-event.js';
import { setSensitiveSettings } from '../../src/recording/redact-event.js';
import { initSqlRedaction } from '../../src/recording/redact-sql.js';
import { packr } from '../../src/recording/segment-format.js';
import { PgStatementRecorder, renderForNativeRecording, type PendingStatementSweep } from '../../workers/pg-statement-recorder.js';

type Capture = [boolean, string, Buffer, number];
const base = { session: 'sess-1', connection: 'pg main' };

const sweep: PendingStatementSweep = { hold() {}, release() {} };

/** Events as the JavaScript recorder + worker encoding write them (decoded again). */
function viaJs(captures: Capture[]): RecordEvent[] {
  const out: RecordEvent[] = [];
  const r = new PgStatementRecorder((e) => out.push(packr.unpack(encodeEvent(e)) as RecordEvent), base, 'queries', sweep);
  for (const [fromClient, type, body, length] of captures) r.onCapture(fromClient, type, body, length);
  r.flushPending();
  return out;
}

/** Events as the C++ recorder writes them: the record batch's entries, decoded. */
function viaNative(captures: Capture[]): RecordEvent[] {
  const batch = native().recordCapturesForTest(base.session, base.connection, captures, true);
  const out: RecordEvent[] = [];
  if (batch === null) return out;
  let at = 0;
  while (at < batch.length) {
    const entry = batch.readUInt32BE(at);
    const connLen = batch.readUInt16BE(at + 4);
    assert.equal(batch.toString('utf8', at + 6, at + 6 + connLen), base.connection);
    out.push(packr.unpack(batch.subarray(at + 6 + connLen, at + 4 + entry)) as RecordEvent);
    at += 4 + entry;
  }
  assert.equal(at, batch.length, 'entries fill the batch exactly');
  return out;
}

/** Clock-dependent fields must be numbers; their values differ by microseconds between the two runs. */
function timeless(events: RecordEvent[]): unknown[] {
  return events.map((e) => {
    assert.equal(typeof e.ts, 'number');
    const copy: Record<string, unknown> = { ...e, ts: 0 };
    for (const holder of [copy, copy['result']] as Record<string, unknown>[]) {
      if (holder && typeof holder === 'object' && 'durationMs' in holder) {
        assert.equal(typeof holder['durationMs'], 'number');
        holder['durationMs'] = 0;
      }
    }
    if (copy['result']) copy['result'] = { ...(copy['result'] as object), durationMs: 0 };
    return copy;
  });
}

function same(captures: Capture[]): RecordEvent[] {
  const js = viaJs(captures);
  const cpp = viaNative(captures);
  assert.deepEqual(timeless(cpp), timeless(js));
  return cpp;
}

const q = (sql: string | Buffer): Capture => {
  const body = Buffer.concat([Buffer.isBuffer(sql) ? sql : Buffer.from(sql), Buffer.from([0])]);
  return [true, 'Q', body, body.length];
};
const parse = (name: string, sql: string): Capture => {
  const body = Buffer.concat([Buffer.from(`${name}\0${sql}\0`), Buffer.from([0, 0])]);
  return [true, 'P', body, body.length];
};
type Param = string | null | { binary: Buffer };
function bindBody(statement: string, params: Param[], formats: number[] = []): Buffer {
  const parts: Buffer[] = [Buffer.from(`portal\0${statement}\0`)];
  const f = Buffer.alloc(2 + formats.length * 2);
  f.writeUInt16BE(formats.length);
  formats.forEach((x, i) => f.writeUInt16BE(x, 2 + i * 2));
  parts.push(f, Buffer.from([params.length >> 8, params.length & 0xff]));
  for (const p of params) {
    const len = Buffer.alloc(4);
    if (p === null) {
      len.writeInt32BE(-1);
      parts.push(len);
      continue;
    }
    const bytes = typeof p === 'string' ? Buffer.from(p) : p.binary;
    len.writeInt32BE(bytes.length);
    parts.push(len, bytes);
  }
  parts.push(Buffer.from([0, 0]));
  return Buffer.concat(parts);
}
const bind = (statement: string, params: Param[], formats: number[] = []): Capture => {
  const body = bindBody(statement, params, formats);
  return [true, 'B', body, body.length];
};
const complete = (tag: string | Buffer): Capture => {
  const body = Buffer.concat([Buffer.isBuffer(tag) ? tag : Buffer.from(tag), Buffer.from([0])]);
  return [false, 'C', body, body.length];
};
const error = (fields: [string, string][]): Capture => {
  const body = Buffer.concat([...fields.map(([c, v]) => Buffer.from(`${c}${v}\0`)), Buffer.from([0])]);
  return [false, 'E', body, body.length];
};
/** A capture cut short by the capture limit, as the pump delivers it. */
const cut = ([c, t, body]: Capture, keep: number): Capture => [c, t, body.subarray(0, keep), body.length];

const vector = (n: number, f: (i: number) => number) => `[${Array.from({ length: n }, (_, i) => f(i)).join(',')}]`;

describe('C++ statement recorder', () => {
  before(async () => {
    // Workers load the parser before they record (the redaction reads the parse tree).
    await initSqlRedaction();
    setSensitiveSettings(['my.secret']);
    native().setRecordRenderer(renderForNativeRecording);
  });

  it('simple queries: one event each with the result summary', () => {
    const events = same([q('SELECT 1'), complete('SELECT 1'), q('INSERT INTO t VALUES (1)'), complete('INSERT 0 1'), q('BEGIN'), complete('BEGIN')]);
    assert.equal(events.length, 3);
    assert.deepEqual(events[1]!['result'] && { ...(events[1]!['result'] as object), durationMs: 0 }, { tag: 'INSERT 0 1', rows: 1, durationMs: 0 });
    assert.equal(events[2]!['seq'], 3);
  });

  it('extended protocol: parameters merged into the statement; later binds of a prepared statement are their own events', () => {
    same([
      parse('s1', 'SELECT * FROM docs WHERE id = $1 AND tag = $2'),
      bind('s1', ['42', null, 'x'.repeat(300)]),
      complete('SELECT 3'),
      bind('s1', [{ binary: Buffer.alloc(8) }, '7'], [1, 0]),
      complete('SELECT 1'),
      bind('s1', [{ binary: Buffer.alloc(3) }, { binary: Buffer.alloc(2) }], [1]),
      error([['S', 'ERROR'], ['C', '22P02'], ['M', 'invalid input syntax']]),
    ]);
  });

  it('embeddings in parameters are summarized (dims, norm, hash), like the JavaScript renderer', () => {
    const events = same([
      parse('', 'SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 10'),
      bind('', [vector(1536, (i) => Math.sin(i) / 3), vector(8, (i) => i - 4), '{1,2,3,4,5,6,7,8,9}', '(1.5e3, -2E-2, 3,4,5,6,7,8)', vector(7, (i) => i), '[1,2,3,4,5,6,7,8', '1, 2, 3, 4, 5, 6, 7, 8, 1e999', '[1,,2,3,4,5,6,7,8]', vector(9, () => 1e39), '[-0,0,0,0,0,0,0,0]']),
      complete('SELECT 10'),
    ]);
    const params = events[0]!['params'] as unknown[];
    assert.deepEqual(Object.keys(params[0] as object), ['vector']);
    assert.equal((params[0] as { vector: { dims: number } }).vector.dims, 1536);
  });

  it('secrets and non-ASCII text go through the JavaScript redaction', () => {
    const events = same([
      q("ALTER ROLE app PASSWORD 'hunter2'"),
      complete('ALTER ROLE'),
      q("ALTER SYSTEM SET my.secret = 'abc'"),
      complete('ALTER SYSTEM'),
      q('UPDATE t SET x = 1'),
      complete('UPDATE 1'),
      q("SELECT set_config('app.token', 'tok-9f8e', false)"),
      complete('SELECT 1'),
      q('SELECT \'Authorization: Bearer abc.def\''),
      error([['C', '28P01'], ['M', 'password authentication failed for user "x"']]),
      parse('', "SELECT 'naïve — 日本語'"),
      bind('', ['😀 emoji', 'password=abc', `${'é'.repeat(200)}`, 'Basic dXNlcjpwYXNz']),
      complete('SELECT 1'),
      q(Buffer.from([0x53, 0x45, 0xff, 0xfe, 0x4c])), // invalid UTF-8
      complete('SELECT 0'),
    ]);
    const text = JSON.stringify(events);
    for (const secret of ['hunter2', "'abc'", 'abc.def', 'dXNlcjpwYXNz', 'tok-9f8e']) assert.ok(!text.includes(secret), `${secret} was recorded`);
  });

  it('cut captures: long statements marked with their size, cut Bind bodies marked truncated', () => {
    const long = q(`SELECT '${'a'.repeat(5000)}'`);
    const b = bind('', ['1', 'y'.repeat(1000), '3']);
    same([cut(long, 100), complete('SELECT 1'), parse('', 'SELECT $1, $2, $3'), cut(b, 40), complete('SELECT 1'), cut(b, 5), complete('SELECT 1'), cut(b, 600), complete('SELECT 1')]);
  });

  it('results without a statement, several results per query, function calls, odd tags', () => {
    same([
      complete('SET'),
      q('SELECT 1; SELECT 2'),
      complete('SELECT 1'),
      complete('SELECT 1'),
      [true, 'F', Buffer.from([0, 0, 0, 1, 0, 0]), 6],
      complete('SELECT 00012345678901234567890'),
      q('COPY t FROM STDIN'),
      complete(''),
      error([]),
      error([['C', 'X'], ['C', 'Y'], ['M', 'a'], ['M', 'b']]),
    ]);
  });

  it('generated sessions: the same events as the JavaScript recorder', () => {
    const text = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.string({ unit: 'grapheme', maxLength: 20 }),
      fc.constantFrom('password', 'SET x', 'reset', 'settings', "set_config('a.token', 'x', false)", 'Bearer x', 'identified by', 'basically', 'offset 5', '[1,2,3]'),
      fc.array(fc.double({ noNaN: true }), { minLength: 2, maxLength: 20 }).map((a) => `[${a.join(',')}]`),
      fc.array(fc.integer({ min: -1000, max: 1000 }), { minLength: 7, maxLength: 12 }).map((a) => `{${a.join(', ')}}`),
      fc.string({ minLength: 250, maxLength: 300 }),
    );
    const capture: fc.Arbitrary<Capture> = fc.oneof(
      text.map((s) => q(s.replace(/\0/g, ''))),
      fc.tuple(text, text).map(([n, s]) => parse(n.replace(/\0/g, ''), s.replace(/\0/g, ''))),
      fc.tuple(fc.array(fc.oneof(text.map((s): Param => s), fc.constant(null), fc.uint8Array({ maxLength: 8 }).map((b): Param => ({ binary: Buffer.from(b) }))), { maxLength: 5 }), fc.array(fc.integer({ min: 0, max: 1 }), { maxLength: 3 })).map(([params, formats]) => bind('', params, formats)),
      text.map((t) => complete(t.replace(/\0/g, ''))),
      fc.array(fc.tuple(fc.constantFrom('C', 'M', 'S', 'D'), text.map((s) => s.replace(/\0/g, ''))), { maxLength: 4 }).map(error),
    );
    const maybeCut = fc.tuple(capture, fc.option(fc.nat(), { nil: undefined })).map(([c, keep]) => (keep === undefined || keep >= c[2].length ? c : cut(c, keep)));
    fc.assert(
      fc.property(fc.array(maybeCut, { maxLength: 12 }), (captures) => {
        same(captures);
      }),
      { numRuns: 400 },
    );
  });
});
