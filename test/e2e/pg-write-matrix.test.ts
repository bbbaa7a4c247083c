// The write-through matrix of issue #16: every statement a read session could use to write,
// in every client encoding PostgreSQL offers, through the simple, extended and fast-path
// protocols: refused by the gateway. And the second lock: each data write, sent straight to
// PostgreSQL as the (writing) read credential with the startup settings the gateway uses for
// read sessions, fails in PostgreSQL too. Plus quote-smuggling probes per encoding (every
// high byte before a backslash-quote) that must leave the table as it was, and the database
// or role defaults (standard_conforming_strings off, a client-only client_encoding) that
// would make PostgreSQL read a statement differently from the gateway.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { upstreamStartupParameters } from '../../workers/pg/startup-parameters.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { functionCallMessage, parseMessage, queryMessage, RawPgSession, syncMessage, flushMessage, type BackendMessage } from '../harness/pg-wire.js';

/** Every client encoding of PostgreSQL 15 (pg_enc2name_tbl, those valid as client_encoding). */
const ENCODINGS = [
  'SQL_ASCII', 'EUC_JP', 'EUC_CN', 'EUC_KR', 'EUC_TW', 'EUC_JIS_2004', 'UTF8', 'MULE_INTERNAL',
  'LATIN1', 'LATIN2', 'LATIN3', 'LATIN4', 'LATIN5', 'LATIN6', 'LATIN7', 'LATIN8', 'LATIN9', 'LATIN10',
  'WIN1256', 'WIN1258', 'WIN866', 'WIN874', 'KOI8R', 'WIN1251', 'WIN1252', 'ISO_8859_5', 'ISO_8859_6',
  'ISO_8859_7', 'ISO_8859_8', 'WIN1250', 'WIN1253', 'WIN1254', 'WIN1255', 'WIN1257', 'KOI8U',
  'SJIS', 'BIG5', 'GBK', 'UHC', 'GB18030', 'JOHAB', 'SHIFT_JIS_2004',
];
/** Where an ASCII byte can be part of a multibyte character: refused for read sessions. */
const CLIENT_ONLY = new Set(['SJIS', 'BIG5', 'GBK', 'UHC', 'GB18030', 'JOHAB', 'SHIFT_JIS_2004']);

/** Statements that write data or schema: refused by the gateway, and failed by PostgreSQL's read-only mode. */
const DATA_WRITES = [
  "INSERT INTO t VALUES (9001, 'w')",
  "UPDATE t SET v = 'w' WHERE id = 1",
  'DELETE FROM t WHERE id = 1',
  "MERGE INTO t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = 'w'",
  'TRUNCATE t',
  'CREATE TABLE w1 (x int)',
  'CREATE TABLE w2 AS SELECT 1 AS x',
  'SELECT 1 AS x INTO w3',
  'DROP TABLE t',
  'ALTER TABLE t ADD COLUMN w int',
  'CREATE INDEX w4 ON t (v)',
  'CREATE VIEW w5 AS SELECT 1',
  'CREATE SEQUENCE w6',
  "SELECT nextval('s')",
  "SELECT setval('s', 42)",
  'WITH d AS (DELETE FROM t WHERE id = 2 RETURNING *) SELECT * FROM d',
  'SELECT * FROM t FOR UPDATE',
  'SELECT * FROM t FOR SHARE',
  'COPY t FROM STDIN',
  'GRANT SELECT ON t TO PUBLIC',
  'COMMENT ON TABLE t IS $$w$$',
  'REFRESH MATERIALIZED VIEW mv',
  'EXPLAIN ANALYZE DELETE FROM t WHERE id = 3',
  'CREATE FUNCTION w8() RETURNS int LANGUAGE sql AS $$SELECT 1$$',
  "DO $$BEGIN DELETE FROM t WHERE id = 4; END$$",
  'CALL p()',
];
/**
 * Escape hatches and side doors: refused by the gateway. PostgreSQL's read-only mode does not
 * stop these (measured on 15: txid_current, lo_create, LOCK ... ACCESS EXCLUSIVE, VACUUM,
 * brin_summarize_new_values, PREPARE of a write run in a read-only transaction), so the gateway is their only lock.
 */
const OTHER_REFUSED = [
  'SET ROLE vec_ro',
  'SET SESSION AUTHORIZATION vec_ro',
  'SET default_transaction_read_only = off',
  'SET transaction_read_only = off',
  'SET TRANSACTION READ WRITE',
  'SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE',
  'BEGIN READ WRITE',
  'START TRANSACTION READ WRITE',
  "SELECT set_config('default_transaction_read_only', 'off', false)",
  "SELECT set_config('transaction_read_only', 'off', true)",
  'SET standard_conforming_strings = off',
  "SELECT set_config('standard_conforming_strings', 'off', false)",
  "SET client_encoding = 'SJIS'",
  "SELECT set_config(current_setting('application_name'), 'off', false)",
  'SELECT txid_current()',
  'SELECT pg_current_xact_id()',
  'SELECT lo_create(0)',
  'LOCK TABLE t IN ACCESS EXCLUSIVE MODE',
  'PREPARE w7 AS DELETE FROM t',
  "SELECT brin_summarize_new_values('t_brin')",
  "SELECT gin_clean_pending_list('t_gin')",
  'SELECT pg_stat_reset()',
  "SELECT pg_notify('c', 'x')",
  'NOTIFY c',
  'VACUUM t',
  'ANALYZE t',
  'CHECKPOINT',
  "SELECT pg_read_file('postgresql.conf')",
  "SELECT dblink_exec('x', 'DELETE FROM t')",
  "SELECT query_to_xml('DELETE FROM t RETURNING 1', true, true, '')",
  'PREPARE TRANSACTION $$x$$',
];

let dir: string;
let pki: TestPki;
let ca: Buffer;
let cluster: PgCluster;
let gw: GatewayFixture;
let reader: string;

const errorOf = (ms: BackendMessage[]) => ms.find((m) => m.type === 'E')?.fields;

async function rowCount(): Promise<string> {
  return (await cluster.psql('SELECT count(*) || \':\' || md5(string_agg(id || v, \',\' ORDER BY id)) FROM t')).trim();
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-matrix-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  ca = readFileSync(pki.caCert);
  cluster = await startPgCluster({ pki });
  await cluster.psql(`
    CREATE TABLE t (id int PRIMARY KEY, v text);
    INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 10) g;
    CREATE SEQUENCE s;
    CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x;
    CREATE INDEX t_brin ON t USING brin (id);
    CREATE INDEX t_gin ON t USING gin (to_tsvector('simple', v));
    CREATE PROCEDURE p() LANGUAGE sql AS $$ DELETE FROM t WHERE id = 5 $$;
    ALTER TABLE t OWNER TO vec_rw; ALTER SEQUENCE s OWNER TO vec_rw; ALTER MATERIALIZED VIEW mv OWNER TO vec_rw;
    ALTER PROCEDURE p() OWNER TO vec_rw; GRANT CREATE ON SCHEMA public TO vec_rw;
  `);
  gw = await startGatewayFixture({
    dir,
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert } },
    credentials: { read: cluster.roles.rw, write: cluster.roles.rw },
  });
  reader = await gw.token('reader@example.com', ['ml-readers']);
});

after(async () => {
  await gw?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A reader session in `encoding`, or the FATAL that refused it. */
async function readerIn(encoding: string): Promise<{ session: RawPgSession } | { refused: Record<string, string> }> {
  try {
    return { session: (await RawPgSession.login(gw.port, ca, reader, { client_encoding: encoding })).session };
  } catch (err) {
    const m = /"C":"(\w+)".*"M":"([^"]*)"/.exec(String((err as Error).message));
    if (m) return { refused: { C: m[1]!, M: m[2]! } };
    throw err;
  }
}

describe('the write-through matrix', () => {
  test('every write and escape hatch, in every client encoding, simple / extended / fast-path: refused', async () => {
    const before = await rowCount();
    let checked = 0;
    for (const encoding of ENCODINGS) {
      const r = await readerIn(encoding);
      if ('refused' in r) {
        // Client-only encodings are refused at startup (the gateway cannot read them exactly);
        // MULE_INTERNAL is refused by PostgreSQL itself for a UTF8 database.
        assert.ok(CLIENT_ONLY.has(encoding) || encoding === 'MULE_INTERNAL', `${encoding} refused: ${JSON.stringify(r.refused)}`);
        continue;
      }
      assert.ok(!CLIENT_ONLY.has(encoding), `${encoding} must be refused for a read session`);
      const s = r.session;
      for (const sql of [...DATA_WRITES, ...OTHER_REFUSED]) {
        s.send(queryMessage(sql));
        const simple = await s.until('Z');
        assert.equal(errorOf(simple)?.C, '42501', `${encoding} simple ${sql}: ${JSON.stringify(errorOf(simple))}`);
        s.send(Buffer.concat([parseMessage('', sql), flushMessage()]));
        const parsed = await s.next();
        assert.equal(parsed.type, 'E', `${encoding} extended ${sql}`);
        assert.equal(parsed.fields!.C, '42501', `${encoding} extended ${sql}: ${JSON.stringify(parsed.fields)}`);
        s.send(syncMessage());
        assert.equal((await s.next()).type, 'Z');
        checked += 2;
      }
      // Fast path: nextval (OID 1574) and lo_creat (OID 957) by OID.
      for (const oid of [1574, 957]) {
        s.send(functionCallMessage(oid, oid === 1574 ? ['16384'] : ['-1']));
        const fp = await s.until('Z');
        assert.equal(errorOf(fp)?.C, '42501', `${encoding} fast-path ${oid}`);
        checked++;
      }
      s.end();
    }
    assert.ok(checked > 2000, `checked ${checked}`);
    assert.equal(await rowCount(), before, 'the table is as it was');
    assert.equal((await cluster.psql("SELECT count(*) FROM pg_class WHERE relname LIKE 'w_'")).trim(), '0');
  });

  test("the second lock: each data write fails in PostgreSQL under the read session's startup settings", async () => {
    const startup = upstreamStartupParameters(new Map([['user', 'x']]), 'read');
    assert.ok(startup.ok);
    const options = [...startup.params].map(([k, v]) => `-c ${k}=${v}`).join(' ');
    const c = new pg.Client({ host: 'localhost', port: cluster.port, database: 'vectors', ...cluster.roles.rw, ssl: { ca, servername: 'localhost' }, options });
    await c.connect();
    try {
      const stopped: string[] = [];
      for (const sql of DATA_WRITES) {
        if (sql.startsWith('COPY')) continue; // needs a COPY stream: checked below
        await c.query('BEGIN');
        const outcome = await c.query(sql).then(
          () => 'ran',
          (err: { code?: string; message: string }) => `${err.code} ${err.message}`,
        );
        await c.query('ROLLBACK');
        assert.match(outcome, /^(25006|0A000|42501) /, `PostgreSQL's read-only mode: ${sql}: ${outcome}`);
        stopped.push(sql);
      }
      await assert.rejects(c.query('COPY t FROM STDIN'), (err: { code?: string }) => err.code === '25006');
      assert.equal(stopped.length, DATA_WRITES.length - 1);
    } finally {
      await c.end();
    }
  });

  test('quote smuggling: every high byte before a backslash-quote, in every encoding a reader may use, leaves the table as it was', async () => {
    const before = await rowCount();
    for (const encoding of ENCODINGS) {
      if (CLIENT_ONLY.has(encoding) || encoding === 'MULE_INTERNAL') continue;
      const r = await readerIn(encoding);
      assert.ok('session' in r, encoding);
      const s = r.session;
      for (let b = 0x80; b <= 0xff; b++) {
        for (const prefix of ["SELECT E'", "SELECT '"]) {
          s.send(queryMessage(Buffer.concat([Buffer.from(prefix), Buffer.from([b]), Buffer.from("\\'; DELETE FROM t WHERE id = 6; --'")])));
          await s.until('Z');
        }
      }
      s.end();
    }
    assert.equal(await rowCount(), before);
  });
});

describe('database and role defaults that would make PostgreSQL read differently', () => {
  test('standard_conforming_strings off as the database default: read sessions still run with it on', async () => {
    await cluster.psql('ALTER DATABASE vectors SET standard_conforming_strings = off');
    try {
      const { session } = await RawPgSession.login(gw.port, ca, reader);
      session.send(queryMessage('SHOW standard_conforming_strings'));
      const show = await session.until('Z');
      assert.equal(show[1]!.body.subarray(6).toString(), 'on');
      // To a reader with standard_conforming_strings off, this is one SELECT and a DELETE.
      session.send(queryMessage("SELECT '\\' ; SELECT ' ; DELETE FROM t WHERE id = 7; --'"));
      await session.until('Z');
      session.end();
      assert.equal((await cluster.psql('SELECT count(*) FROM t WHERE id = 7')).trim(), '1');
    } finally {
      await cluster.psql('ALTER DATABASE vectors RESET standard_conforming_strings');
    }
  });

  test('a client-only client_encoding as the role default: the read session is refused, naming it', async () => {
    await cluster.psql('ALTER ROLE vec_rw SET client_encoding = SJIS');
    try {
      // A new application_name: a new upstream connection (a parked one keeps the settings it started with).
      await assert.rejects(RawPgSession.login(gw.port, ca, reader, { application_name: 'role-default-probe' }), /client_encoding SJIS/);
    } finally {
      await cluster.psql('ALTER ROLE vec_rw RESET client_encoding');
    }
  });
});
