// What a recorded session's statements become: with async durability one event per
// statement carrying its Bind parameters and result; separate statement/bind/result events
// where a record must be written before the result exists (strict holds, refusals, long
// queries swept, results after their statement was written). Bodies are real protocol bytes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RecordEvent } from '../../src/recording/record-event.js';
import { PgStatementRecorder, type PendingStatementSweep } from '../../workers/pg-statement-recorder.js';

const base = { session: 's1', connection: 'pg' };

function bindBody(statement: string, params: string[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`\0${statement}\0`), Buffer.from([0, 0]), Buffer.from([0, params.length])];
  for (const p of params) {
    const len = Buffer.alloc(4);
    len.writeInt32BE(Buffer.byteLength(p));
    parts.push(len, Buffer.from(p));
  }
  parts.push(Buffer.from([0, 0]));
  return Buffer.concat(parts);
}
const complete = (tag: string) => Buffer.from(`${tag}\0`);
const error = (sqlstate: string, message: string) => Buffer.from(`SERROR\0C${sqlstate}\0M${message}\0\0`);

class Sweep implements PendingStatementSweep {
  parked = new Set<PgStatementRecorder>();
  hold(r: PgStatementRecorder) {
    this.parked.add(r);
  }
  release(r: PgStatementRecorder) {
    this.parked.delete(r);
  }
}

function recorder(sweep: PendingStatementSweep | null, mode: 'queries' | 'full' = 'queries') {
  const events: RecordEvent[] = [];
  const acks: unknown[] = [];
  const r = new PgStatementRecorder((e, d) => {
    events.push(structuredClone(e));
    if (d) acks.push(d);
  }, base, mode, sweep);
  return { r, events, acks };
}

describe('PgStatementRecorder', () => {
  it('async: statement, parameters and result are one event', () => {
    const sweep = new Sweep();
    const { r, events } = recorder(sweep);
    r.statement('extended', 'SELECT * FROM docs WHERE id = $1', null);
    assert.equal(events.length, 0, 'parked until its result');
    assert.equal(sweep.parked.size, 1);
    r.onCapture(true, 'B', bindBody('', ['42']), 0);
    r.onCapture(false, 'C', complete('SELECT 1'), 0);
    assert.equal(sweep.parked.size, 0);
    assert.equal(events.length, 1);
    const e = events[0]!;
    assert.equal(e.type, 'statement');
    assert.equal(e.sql, 'SELECT * FROM docs WHERE id = $1');
    assert.deepEqual(e.params, ['42']);
    assert.deepEqual({ ...(e.result as object), durationMs: 0 }, { tag: 'SELECT 1', rows: 1, durationMs: 0 });
  });

  it('a prepared statement executed again: its Bind carries the result', () => {
    const { r, events } = recorder(new Sweep());
    r.statement('extended', 'INSERT INTO t VALUES ($1)', null);
    r.onCapture(true, 'B', bindBody('s1', ['1']), 0);
    r.onCapture(false, 'C', complete('INSERT 0 1'), 0);
    r.onCapture(true, 'B', bindBody('s1', ['2']), 0);
    r.onCapture(false, 'C', complete('INSERT 0 1'), 0);
    assert.deepEqual(events.map((e) => [e.type, e.params, (e.result as { tag: string }).tag, e.seq]), [
      ['statement', ['1'], 'INSERT 0 1', 1],
      ['bind', ['2'], 'INSERT 0 1', 1],
    ]);
    assert.equal(events[1]!.statementName, 's1');
  });

  it('a second result of one simple Query, and an error, follow as result events', () => {
    const { r, events } = recorder(new Sweep());
    r.statement('simple', 'SELECT 1; SELECT * FROM nope', null);
    r.onCapture(false, 'C', complete('SELECT 1'), 0);
    r.onCapture(false, 'E', error('42P01', 'relation "nope" does not exist'), 0);
    assert.deepEqual(events.map((e) => e.type), ['statement', 'result']);
    assert.deepEqual((events[1]!.error as { sqlstate: string }).sqlstate, '42P01');
    assert.equal(events[1]!.seq, 1);
  });

  it('a statement without a result is written when the next one starts, or by flushPending', () => {
    const { r, events } = recorder(new Sweep());
    r.statement('extended', 'SELECT 1', null); // Parse only (a prepare)
    r.statement('simple', 'SELECT 2', null);
    assert.deepEqual(events.map((e) => [e.type, e.sql, e.result]), [['statement', 'SELECT 1', undefined]]);
    r.flushPending(); // a long query swept, or the session ended
    r.onCapture(false, 'C', complete('SELECT 1'), 0);
    assert.deepEqual(events.map((e) => [e.type, e.seq]), [['statement', 1], ['statement', 2], ['result', 2]]);
  });

  it('strict (held statements) and refusals are written at once, results separately', () => {
    const { r, events, acks } = recorder(null);
    r.statement('simple', 'DELETE FROM t', null, () => {});
    assert.equal(events.length, 1);
    assert.equal(acks.length, 1, 'the hold waits on this record');
    r.onCapture(false, 'C', complete('DELETE 3'), 0);
    assert.deepEqual(events.map((e) => [e.type, e.tag ?? null]), [['statement', null], ['result', 'DELETE 3']]);
    const sweep = new Sweep();
    const async = recorder(sweep);
    async.r.statement('simple', 'DROP TABLE t', 'needs write access');
    assert.equal(async.events.length, 1);
    assert.equal(sweep.parked.size, 0);
  });

  it('statements captured after forwarding (no verdict needed) are recorded like inspected ones', () => {
    const { r, events } = recorder(new Sweep());
    assert.equal(r.capture(true).fromClient, 'BQPF');
    assert.equal(r.capture(false).fromClient, 'B');
    r.onCapture(true, 'Q', Buffer.from('SELECT 1\0'), 9);
    r.onCapture(false, 'C', complete('SELECT 1'), 0);
    r.onCapture(true, 'P', Buffer.from('stmt1\0SELECT $1::int\0\0\0'), 24);
    r.onCapture(true, 'B', bindBody('stmt1', ['7']), 0);
    r.onCapture(false, 'C', complete('SELECT 1'), 0);
    // A statement longer than the capture limit: its text is cut and its size recorded.
    r.onCapture(true, 'Q', Buffer.from('INSERT INTO t VALUES (1), (2'), 5_000_000);
    r.flushPending();
    assert.deepEqual(events.map((e) => [e.protocol, e.sql, (e.result as { tag?: string } | undefined)?.tag ?? null, e.params ?? null]), [
      ['simple', 'SELECT 1', 'SELECT 1', null],
      ['extended', 'SELECT $1::int', 'SELECT 1', ['7']],
      ['simple', 'INSERT INTO t VALUES (1), (2', null, null],
    ]);
    assert.deepEqual(events[2]!.sqlCut, { messageBytes: 5_000_000 });
  });

  it('full mode: rows ride with the result; embeddings in parameters are summarized in queries mode', () => {
    const { r, events } = recorder(new Sweep(), 'full');
    r.statement('simple', 'SELECT n FROM g', null);
    const row = (v: string) => Buffer.concat([Buffer.from([0, 1]), Buffer.from([0, 0, 0, v.length]), Buffer.from(v)]);
    r.onCapture(false, 'D', row('1'), 0);
    r.onCapture(false, 'D', row('2'), 0);
    r.onCapture(false, 'C', complete('SELECT 2'), 0);
    assert.deepEqual((events[0]!.result as { data: unknown }).data, [['1'], ['2']]);
    const q = recorder(new Sweep());
    q.r.statement('extended', 'SELECT $1::vector', null);
    q.r.onCapture(true, 'B', bindBody('', [`[${Array.from({ length: 16 }, (_, i) => i / 10).join(',')}]`]), 0);
    q.r.onCapture(false, 'C', complete('SELECT 1'), 0);
    assert.equal((q.events[0]!.params as { vector: { dims: number } }[])[0]!.vector.dims, 16);
  });
});
