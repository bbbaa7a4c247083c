// Tests for a read session's statement check: refusal wording and SQLSTATEs, SQL-level prepared
// statements (PREPARE / EXECUTE / DEALLOCATE / DISCARD ALL in order, nothing registered by a
// refused message), and a real PostgreSQL 15 as the oracle: syntax errors read exactly as
// PostgreSQL's, and what the check allows runs in a read-only session.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { initStatementClassifier } from '../../../src/policy/statement-classifier.js';
import { ReadStatementCheck } from '../../../workers/pg/read-statement-check.js';
import { writeTestPki, type TestPki } from '../../../src/dev/pki.js';
import { startPgCluster, type PgCluster } from '../../harness/pg-cluster.js';

const WHO = 'alice@example.com';
const CONN = 'vectors';
const PREFIX = `permission denied: ${WHO} has read access to "${CONN}"; `;

const newCheck = () => new ReadStatementCheck(WHO, CONN);

before(async () => {
  await initStatementClassifier();
});

describe('refusals', () => {
  test('a write keeps today\'s wording and 42501', () => {
    assert.deepEqual(newCheck().check('Q', 'SELECT 1; DELETE FROM docs WHERE id = 1'), {
      sqlstate: '42501',
      message: `${PREFIX}DELETE from docs is not allowed (statement: DELETE FROM docs WHERE id = 1)`,
    });
    assert.deepEqual(newCheck().check('P', 'INSERT INTO docs VALUES ($1)'), {
      sqlstate: '42501',
      message: `${PREFIX}INSERT into docs is not allowed (statement: INSERT INTO docs VALUES ($1))`,
    });
  });

  test('fast-path function calls stay refused', () => {
    assert.deepEqual(newCheck().check('F', ''), {
      sqlstate: '42501',
      message: `${PREFIX}function calls over the fast-path protocol are not allowed`,
    });
  });

  test('a syntax error is PostgreSQL\'s: 42601, the parser\'s message and position, no "permission denied"', () => {
    assert.deepEqual(newCheck().check('Q', 'SELEC 1'), { sqlstate: '42601', message: 'syntax error at or near "SELEC"', position: 1 });
    assert.deepEqual(newCheck().check('P', 'SELECT * FROM docs WHERE'), { sqlstate: '42601', message: 'syntax error at end of input', position: 25 });
  });

  test('reads PostgreSQL allows in a read-only transaction pass', () => {
    const check = newCheck();
    for (const sql of [
      'SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;', // asyncpg's pool reset
      'LISTEN jobs',
      'UNLISTEN jobs',
      "SELECT set_config('jit', 'off', false)", // asyncpg's type introspection
      'SELECT pg_try_advisory_lock(42), pg_advisory_unlock(42)',
      'BEGIN; LOCK TABLE docs IN ACCESS SHARE MODE; COMMIT',
    ]) {
      assert.equal(check.check('Q', sql), null, sql);
    }
  });

  test('what writes although read-only PostgreSQL allows it is refused', () => {
    for (const [sql, reason] of [
      ["SELECT brin_summarize_new_values('docs_brin')", 'brin_summarize_new_values'],
      ["NOTIFY jobs, 'x'", 'NOTIFY'],
      ["SELECT pg_notify('jobs', 'x')", 'pg_notify'],
      ['LOCK docs IN SHARE MODE', 'LOCK ... IN SHARE MODE (blocks writers)'],
      ["SET client_encoding = 'SJIS'", 'client_encoding'],
      ['SET standard_conforming_strings = off', 'standard_conforming_strings'],
    ] as const) {
      const r = newCheck().check('Q', sql);
      assert.ok(r, sql);
      assert.equal(r.sqlstate, '42501');
      assert.ok(r.message.startsWith(PREFIX), r.message);
      assert.ok(r.message.includes(reason), r.message);
    }
  });
});

describe('SQL-level prepared statements', () => {
  test('EXECUTE after a PREPARE of a read, in the same message or a later one', () => {
    const check = newCheck();
    assert.equal(check.check('Q', 'PREPARE p AS SELECT 1; EXECUTE p'), null);
    assert.equal(check.check('Q', 'EXECUTE p'), null);
    assert.equal(check.check('P', 'EXECUTE p'), null);
    assert.equal(check.check('Q', 'PREPARE q(int) AS SELECT * FROM docs WHERE id = $1'), null);
    assert.equal(check.check('Q', 'EXECUTE q(1); EXECUTE p'), null);
  });

  test('EXECUTE of an unknown name is refused, naming it', () => {
    const r = newCheck().check('Q', 'EXECUTE nope');
    assert.deepEqual(r, {
      sqlstate: '42501',
      message: `${PREFIX}EXECUTE of "nope" (not PREPAREd as a read in this session) is not allowed (statement: EXECUTE nope)`,
    });
  });

  test('a PREPARE of a write is refused and registers nothing', () => {
    const check = newCheck();
    const r = check.check('Q', 'PREPARE w AS DELETE FROM docs');
    assert.ok(r);
    assert.match(r.message, /PREPARE of DELETE from docs is not allowed/);
    assert.ok(check.check('Q', 'EXECUTE w'));
  });

  test('a refused message registers nothing, even a read PREPARE before the refusal', () => {
    const check = newCheck();
    assert.ok(check.check('Q', 'PREPARE r AS SELECT 1; DELETE FROM docs'));
    assert.ok(check.check('Q', 'EXECUTE r'));
    // A syntax error anywhere: PostgreSQL runs nothing of the string, nor does the check remember.
    assert.equal(check.check('Q', 'PREPARE s AS SELECT 1; SELEC 2')?.sqlstate, '42601');
    assert.ok(check.check('Q', 'EXECUTE s'));
  });

  test('statements are processed in order', () => {
    const check = newCheck();
    assert.ok(check.check('Q', 'EXECUTE p; PREPARE p AS SELECT 1'));
    assert.ok(check.check('Q', 'EXECUTE p'), 'the refused message registered p');
    assert.equal(check.check('Q', 'PREPARE p AS SELECT 1'), null);
    assert.ok(check.check('Q', 'DEALLOCATE p; EXECUTE p'));
    assert.equal(check.check('Q', 'EXECUTE p'), null, 'the refused message forgot p');
  });

  test('DEALLOCATE, DEALLOCATE ALL and DISCARD ALL forget; DISCARD PLANS does not', () => {
    const check = newCheck();
    assert.equal(check.check('Q', 'PREPARE a AS SELECT 1; PREPARE b AS SELECT 2; PREPARE c AS SELECT 3'), null);
    assert.equal(check.check('Q', 'DEALLOCATE a'), null);
    assert.ok(check.check('Q', 'EXECUTE a'));
    assert.equal(check.check('Q', 'EXECUTE b; EXECUTE c'), null);
    assert.equal(check.check('Q', 'DEALLOCATE PREPARE b'), null);
    assert.ok(check.check('Q', 'EXECUTE b'));
    assert.equal(check.check('Q', 'DISCARD PLANS; EXECUTE c'), null);
    assert.equal(check.check('Q', 'DEALLOCATE ALL'), null);
    assert.ok(check.check('Q', 'EXECUTE c'));
    assert.equal(check.check('Q', 'PREPARE d AS SELECT 4'), null);
    assert.equal(check.check('Q', 'DISCARD ALL'), null);
    assert.ok(check.check('Q', 'EXECUTE d'));
  });

  test('names are identifiers as PostgreSQL folds them', () => {
    const check = newCheck();
    assert.equal(check.check('Q', 'PREPARE Foo AS SELECT 1'), null);
    assert.equal(check.check('Q', 'EXECUTE foo; EXECUTE FOO; EXECUTE "foo"'), null);
    assert.ok(check.check('Q', 'EXECUTE "Foo"'));
    assert.equal(check.check('Q', 'PREPARE "Bar" AS SELECT 1'), null);
    assert.equal(check.check('Q', 'EXECUTE "Bar"'), null);
    assert.ok(check.check('Q', 'EXECUTE bar'));
  });

  test('each session has its own names', () => {
    const a = newCheck();
    const b = newCheck();
    assert.equal(a.check('Q', 'PREPARE p AS SELECT 1'), null);
    assert.ok(b.check('Q', 'EXECUTE p'));
  });
});

// ---------------------------------------------------------------------------------------------
// PostgreSQL 15 as the oracle

describe('PostgreSQL 15 agrees', () => {
  let tmp: string;
  let pki: TestPki;
  let cluster: PgCluster;
  let rw: pg.Client;

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vg-readcheck-'));
    pki = await writeTestPki(path.join(tmp, 'pki'));
    cluster = await startPgCluster({ pki });
    rw = new pg.Client({
      host: cluster.host,
      port: cluster.port,
      database: cluster.database,
      ...cluster.roles.rw,
      ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' },
    });
    rw.on('error', () => {});
    await rw.connect();
    await rw.query("INSERT INTO docs (body) SELECT 'b' || g FROM generate_series(1, 1000) g");
    await rw.query('CREATE INDEX docs_brin ON docs USING brin (id)');
  });
  after(async () => {
    await rw?.end().catch(() => {});
    await cluster?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('syntax errors: the same SQLSTATE, message and position as PostgreSQL', async () => {
    for (const sql of [
      'SELEC 1',
      'SELECT * FORM docs',
      "SELECT 'é😀' FROM WHERE",
      'SELECT 1; DELETE FROM docs; garbage(',
      'DROP TABLE',
      "SELECT 'unterminated",
      'INSERT INTO docs VALUES (1,',
    ]) {
      let err: (Error & { code?: string; position?: string }) | undefined;
      try {
        await rw.query(sql); // the simple protocol: the whole string is parsed first
      } catch (e) {
        err = e as typeof err;
      }
      assert.ok(err, `PostgreSQL ran ${sql}`);
      const got = newCheck().check('Q', sql);
      assert.deepEqual(got, { sqlstate: err.code, message: err.message, position: Number(err.position) }, sql);
    }
  });

  test('what the check allows runs in a read-only session without 25006', async () => {
    const check = newCheck();
    await rw.query('SET default_transaction_read_only = on');
    try {
      for (const sql of [
        'SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;',
        'LISTEN jobs',
        'UNLISTEN jobs',
        "SELECT set_config('jit', 'off', false)",
        'SELECT pg_advisory_lock(7), pg_advisory_unlock(7), pg_try_advisory_xact_lock(8)',
        'BEGIN; LOCK TABLE docs IN ROW SHARE MODE; COMMIT',
        'PREPARE p AS SELECT count(*) FROM docs',
        'EXECUTE p',
        'DEALLOCATE p',
        "SET client_encoding = 'LATIN1'",
        "SET client_encoding = 'UTF8'",
      ]) {
        assert.equal(check.check('Q', sql), null, sql);
        await rw.query(sql);
      }
    } finally {
      await rw.query('RESET default_transaction_read_only');
    }
  });

  test('brin_summarize_new_values() runs in a read-only transaction: only the gateway stops it', async () => {
    await rw.query("DELETE FROM docs WHERE id > 900"); // leave unsummarized ranges behind
    await rw.query("INSERT INTO docs (body) SELECT 'c' || g FROM generate_series(1, 2000) g");
    await rw.query('BEGIN READ ONLY');
    try {
      await rw.query("SELECT brin_summarize_new_values('docs_brin')");
    } finally {
      await rw.query('ROLLBACK');
    }
    assert.ok(newCheck().check('Q', "SELECT brin_summarize_new_values('docs_brin')"));
  });
});
