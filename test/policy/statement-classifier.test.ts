// Tests for the read-only statement classifier: a corpus of reads, writes, DDL, admin and
// tricky statements; PostgreSQL itself (PGlite, PG 17 + pgvector) as an oracle for the corpus;
// and fast-check properties that generated writes are never classified read and generated
// reads with write words in comments and literals stay read.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import {
  classifyStatement,
  initStatementClassifier,
  isReadOnly,
  MAX_STATEMENT_EXCERPT_CHARS,
  type Classification,
  type ClassificationKind,
} from '../../src/policy/statement-classifier.js';
import { deniedFunction } from '../../src/policy/write-functions.js';

/** PGlite runs no programs: this one leaves its backend broken, so the oracle skips it. */
const COPY_TO_PROGRAM = "COPY docs TO PROGRAM 'cat > /tmp/x'";
/**
 * PGlite's in-process protocol reads only UTF-8: after a client encoding change it stops running
 * later statements, so the oracle skips these (the real-PostgreSQL tests in session-settings.test.ts cover them).
 */
const PGLITE_ENCODING_CHANGES: ReadonlySet<string> = new Set([
  "SET client_encoding = 'UTF8'",
  "SET NAMES 'UTF8'",
  "SET client_encoding = 'LATIN1'",
  "SET NAMES 'euc_jp'",
  "SET client_encoding = 'SJIS'",
  "SET NAMES 'gbk'",
  "SELECT set_config('client_encoding', 'SJIS', false)",
]);

/** [sql, expected kind, a piece of the expected reason] */
type Case = readonly [string, ClassificationKind, string?];

const READS: (readonly [string])[] = [
  ['SELECT 1'],
  ['select * from docs where id = 1'],
  ["SELECT id FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5"],
  ["SELECT id, embedding <=> '[1,2,3]'::vector AS d FROM items ORDER BY d LIMIT 10"],
  ['SELECT id FROM items ORDER BY embedding <#> $1 LIMIT 5'],
  ["SELECT id, 1 - (embedding <=> '[3,1,2]') AS similarity FROM items WHERE id > 0 ORDER BY similarity DESC"],
  ["VALUES (1, 'a'), (2, 'b')"],
  ['TABLE docs'],
  ['SHOW search_path'],
  ['SHOW ALL'],
  ['EXPLAIN SELECT * FROM docs'],
  ["EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5"],
  ['EXPLAIN (ANALYZE off) DELETE FROM docs'],
  ['EXPLAIN (ANALYZE false, COSTS off) INSERT INTO docs VALUES (9)'],
  ['EXPLAIN DELETE FROM docs'],
  ['BEGIN'],
  ['BEGIN READ ONLY'],
  ['START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY'],
  ['BEGIN; SELECT 1; COMMIT'],
  ['BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT * FROM docs; ROLLBACK'],
  ['SAVEPOINT a'],
  ['RELEASE SAVEPOINT a'],
  ['ROLLBACK TO SAVEPOINT a'],
  ['COMMIT'],
  ['ROLLBACK'],
  ['END'],
  ['ABORT'],
  ['COMMIT AND CHAIN'],
  ['SET TRANSACTION READ ONLY'],
  ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE'],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED'],
  ['SET search_path = public'],
  ["SET search_path TO app, public, '$user'"],
  ["SET SCHEMA 'public'"],
  ["SET statement_timeout = '5s'"],
  ['SET LOCAL statement_timeout TO DEFAULT'],
  ["SET client_encoding = 'UTF8'"],
  ["SET NAMES 'UTF8'"],
  ["SET TIME ZONE 'UTC'"],
  ["SET TimeZone = 'Europe/Paris'"],
  ['SET DateStyle = ISO, MDY'],
  ['SET extra_float_digits = 3'],
  ["SET application_name = 'psql'"],
  ["SET work_mem = '64MB'"],
  ['SET enable_seqscan = off'],
  ['SET ivfflat.probes = 10'],
  ['SET hnsw.ef_search = 100'],
  ['RESET ALL'],
  ['RESET search_path'],
  ['RESET ROLE'],
  ['RESET SESSION AUTHORIZATION'],
  ['DISCARD ALL'],
  ['DEALLOCATE ALL'],
  ['DEALLOCATE p'],
  ['DECLARE c CURSOR FOR SELECT * FROM docs'],
  ['DECLARE c2 SCROLL CURSOR WITH HOLD FOR SELECT id FROM items'],
  ['FETCH 10 FROM c'],
  ['MOVE NEXT IN c'],
  ['CLOSE c'],
  ['CLOSE ALL'],
  ['PREPARE q(int) AS SELECT * FROM docs WHERE id = $1'],
  ['COPY docs TO STDOUT'],
  ['COPY docs (id, body) TO STDOUT WITH (FORMAT csv, HEADER)'],
  ["COPY (SELECT id FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5) TO STDOUT WITH (FORMAT binary)"],
  ['COPY (select 1) TO STDOUT'],
  ["SELECT 'DROP TABLE x'"],
  ['SELECT $$DELETE FROM docs$$'],
  ['SELECT $tag$ INSERT INTO docs VALUES (1); $tag$ AS s'],
  ["SELECT body FROM docs WHERE body = E'\\x44ELETE' OR body LIKE '%; DROP TABLE docs; --%'"],
  ['SELECT U&"b\\006Fdy" FROM docs'],
  ['SELECT "DELETE" FROM (SELECT 1 AS "DELETE") x'],
  ['SELECT 1 AS "INSERT INTO docs VALUES (1)"'],
  ['/* DROP TABLE docs */ SELECT 1'],
  ['-- DELETE FROM docs\nSELECT 1'],
  ['SELECT 1 /* nested /* INSERT */ comment */'],
  ['WITH x AS (SELECT 1 AS a) SELECT * FROM x'],
  ['WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT sum(n) FROM r'],
  ['WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SEARCH DEPTH FIRST BY n SET o CYCLE n SET is_cycle USING path SELECT * FROM r'],
  ['SELECT * FROM docs d JOIN LATERAL (SELECT 1 AS one) x ON true LEFT JOIN items i USING (id)'],
  ['SELECT count(*) FILTER (WHERE id > 1) OVER (PARTITION BY body ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM docs'],
  ['SELECT GROUPING(id), id, count(*) FROM docs GROUP BY ROLLUP (id)'],
  ["SELECT jt.* FROM JSON_TABLE('[{\"a\":1}]', '$[*]' COLUMNS (a int PATH '$.a')) AS jt"],
  ["SELECT json_object('a': 1), JSON_QUERY('{\"a\":1}'::jsonb, '$.a'), '{}'::jsonb IS JSON OBJECT"],
  ["SELECT xmlelement(name p, xmlattributes(1 AS id), 'x'), xmlserialize(content '<a/>'::xml AS text)"],
  ['SELECT CASE WHEN id > 1 THEN 1 ELSE 2 END, COALESCE(body, \'\'), GREATEST(1, 2), NULLIF(id, 2), body IS NULL, (id > 1) IS TRUE, (ARRAY[1,2])[1], ROW(1, 2), CURRENT_TIMESTAMP, CAST(id AS text), body COLLATE "C" FROM docs'],
  ['SELECT * FROM docs WHERE id IN (SELECT id FROM items WHERE EXISTS (SELECT 1)) AND id = ANY (ARRAY[1,2])'],
  ['SELECT * FROM docs TABLESAMPLE SYSTEM (10) REPEATABLE (1)'],
  ['SELECT * FROM generate_series(1, 3) AS g(n), unnest(ARRAY[1,2]) WITH ORDINALITY u'],
  ['SELECT 1 UNION SELECT 2 INTERSECT SELECT 2 EXCEPT SELECT 3 ORDER BY 1 LIMIT 1 OFFSET 0'],
  ['SELECT DISTINCT ON (body) body FROM docs ORDER BY body, id FETCH FIRST 3 ROWS WITH TIES'],
  ['SELECT pg_sleep(0)'],
  ["SELECT currval('s')"],
  ['SELECT txid_current_if_assigned(), now(), version(), pg_backend_pid()'],
  ['SELECT public.rank_docs(1)'],
  ["SELECT count(*) FROM docs WHERE body ILIKE '%delete%'"],
  ['SELECT 1; SELECT 2; SHOW TimeZone'],
  // what a PostgreSQL read-only transaction allows (issue #16)
  ['SELECT pg_advisory_lock(1)'],
  ['SELECT pg_try_advisory_xact_lock(1)'],
  ['SELECT pg_advisory_unlock_all()'],
  ['SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;'], // asyncpg's pool reset
  ['LISTEN ch'],
  ['UNLISTEN *'],
  ['UNLISTEN ch'],
  ["SELECT set_config('jit', 'off', false)"], // asyncpg's type introspection
  ["SELECT pg_catalog.set_config('statement_timeout', '5s'::text, true)"],
  ["SELECT set_config('search_path', NULL, false)"],
  ['BEGIN; LOCK TABLE docs IN ACCESS SHARE MODE; COMMIT'],
  ['BEGIN; LOCK docs IN ROW SHARE MODE; COMMIT'],
  ['SET standard_conforming_strings = on'],
  ["SET client_encoding = 'LATIN1'"],
  ["SET NAMES 'euc_jp'"],
  ['SET default_transaction_read_only = on'],
  ['SET TIME ZONE INTERVAL \'+02:00\' HOUR TO MINUTE'],
  ['SET TIME ZONE LOCAL'],
  ['SET SESSION AUTHORIZATION DEFAULT'],
  ['SET my.custom_setting TO DEFAULT'],
  ['PREPARE p3 AS SELECT 1'],
  [''],
  ['   \n\t'],
  ['-- only a comment'],
  [';;'],
];

const REFUSED: Case[] = [
  // data
  ["INSERT INTO docs VALUES (1, 'x')", 'write', 'INSERT into docs'],
  ['insert into public.docs select * from docs', 'write', 'INSERT into public.docs'],
  ["INSERT INTO items (id, embedding) VALUES (1, '[1,2,3]') ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding", 'write', 'INSERT into items'],
  ["UPDATE docs SET body = 'x' WHERE id = 1", 'write', 'UPDATE docs'],
  ['DELETE FROM docs', 'write', 'DELETE from docs'],
  ['MERGE INTO docs d USING items i ON d.id = i.id WHEN MATCHED THEN DELETE', 'write', 'MERGE into docs'],
  ['TRUNCATE docs', 'write', 'TRUNCATE'],
  ['/* comment */ INSERT INTO docs VALUES (1)', 'write', 'INSERT into docs'],
  ['-- read only, promise\nDELETE FROM docs', 'write', 'DELETE'],
  ['WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', 'write', 'data-modifying CTE (DELETE)'],
  ['WITH u AS (UPDATE docs SET (id, body) = (1, \'x\') RETURNING *) SELECT 1', 'write', 'data-modifying CTE (UPDATE)'],
  ['SELECT * FROM (SELECT * FROM (WITH x AS (INSERT INTO docs VALUES (1) RETURNING 1) SELECT * FROM x) a) b', 'write', 'data-modifying CTE (INSERT)'],
  ['SELECT * FROM docs WHERE id = (WITH m AS (DELETE FROM docs RETURNING id) SELECT max(id) FROM m)', 'write', 'data-modifying CTE (DELETE)'],
  ['WITH a AS (WITH b AS (INSERT INTO docs VALUES (2) RETURNING id) SELECT * FROM b) SELECT * FROM a', 'write', 'data-modifying CTE (INSERT)'],
  ['WITH m AS (MERGE INTO docs USING items ON true WHEN MATCHED THEN DELETE RETURNING docs.id) SELECT * FROM m', 'write', 'data-modifying CTE (MERGE)'],
  ['SELECT 1 UNION ALL (WITH d AS (DELETE FROM docs RETURNING 1) SELECT * FROM d)', 'write', 'data-modifying CTE'],
  ['SELECT * INTO t2 FROM docs', 'ddl', 'SELECT INTO t2'],
  ['CREATE TABLE t3 AS SELECT 1', 'ddl', 'CREATE TABLE AS'],
  ['CREATE MATERIALIZED VIEW mv AS SELECT 1', 'ddl', 'CREATE MATERIALIZED VIEW'],
  ['REFRESH MATERIALIZED VIEW mv', 'write', 'REFRESH'],
  // functions that write or escape
  ["SELECT nextval('s')", 'write', 'function nextval() can write'],
  ["SELECT pg_catalog.nextval('s')", 'write', 'nextval'],
  ["SELECT \"nextval\"('s')", 'write', 'nextval'],
  ["SELECT \"NEXTVAL\"('s')", 'write', 'NEXTVAL'],
  ["SELECT U&\"nextv\\0061l\"('s')", 'write', 'nextval'],
  ["SELECT setval('s', 10)", 'write', 'setval'],
  ["SELECT * FROM docs WHERE id = nextval('s')", 'write', 'nextval'],
  ["SELECT (SELECT max(x) FROM (SELECT nextval('s') AS x) q)", 'write', 'nextval'],
  ["SELECT id FROM items ORDER BY embedding <-> '[1,2,3]', nextval('s') LIMIT 1", 'write', 'nextval'],
  ["SELECT * FROM nextval('s')", 'write', 'nextval'],
  ['SELECT brin_summarize_new_values(\'docs_pkey\')', 'write', 'brin_summarize_new_values'],
  ["SELECT gin_clean_pending_list('i'::regclass)", 'write', 'gin_clean_pending_list'],
  ['SELECT pg_stat_reset()', 'write', 'pg_stat_reset'],
  ["SELECT pg_stat_reset_shared('bgwriter')", 'write', 'pg_stat_reset_shared'],
  ["SELECT lo_import('/etc/passwd')", 'write', 'lo_import'],
  ["SELECT pg_notify('ch', 'x')", 'write', 'pg_notify'],
  ['SELECT txid_current()', 'write', 'transaction id'],
  ['SELECT pg_current_xact_id()', 'write', 'transaction id'],
  ["SELECT * FROM dblink('host=db', 'delete from docs') AS t(a int)", 'admin', 'dblink'],
  ['SELECT pg_terminate_backend(12345)', 'admin', 'pg_terminate_backend'],
  ['SELECT pg_cancel_backend(12345)', 'admin', 'pg_cancel_backend'],
  ['SELECT pg_reload_conf()', 'admin', 'pg_reload_conf'],
  ['SELECT pg_rotate_logfile()', 'admin', 'pg_rotate_logfile'],
  ["SELECT set_config('role', 'postgres', false)", 'admin', 'set_config'],
  ["SELECT set_config('default_transaction_read_only', 'off', false)", 'admin', 'default_transaction_read_only'],
  ["SELECT set_config('client_encoding', 'SJIS', false)", 'admin', 'client encoding'],
  ["SELECT set_config('app.tenant', '42', false)", 'unknown', 'row-level security'],
  ["SELECT set_config('statement_timeout', (SELECT '1'), false)", 'unknown', 'not a string constant'],
  ["SELECT set_config(current_user, 'x', false)", 'unknown', 'not a string constant'],
  ["SELECT set_config(setting_name => 'jit', new_value => 'off', is_local => false)", 'unknown', 'set_config'],
  ["SELECT set_config('jit', 'off', (SELECT nextval('s') > 0))", 'write', 'nextval'],
  ["SELECT pg_read_file('/etc/passwd')", 'admin', 'server files'],
  ["SELECT * FROM pg_ls_dir('.')", 'admin', 'pg_ls_dir'],
  ["SELECT query_to_xml('select nextval(''s'')', true, false, '')", 'admin', 'SQL text'],
  // locking
  ['SELECT * FROM docs FOR UPDATE', 'write', 'FOR UPDATE'],
  ['SELECT * FROM docs FOR SHARE', 'write', 'FOR SHARE'],
  ['SELECT * FROM docs FOR NO KEY UPDATE SKIP LOCKED', 'write', 'FOR NO KEY UPDATE'],
  ['SELECT * FROM docs FOR KEY SHARE OF docs NOWAIT', 'write', 'FOR KEY SHARE'],
  ['SELECT 1 FROM (SELECT * FROM docs FOR UPDATE) x', 'write', 'FOR UPDATE'],
  ['SELECT 1 UNION SELECT 2 FOR UPDATE', 'write', 'FOR UPDATE'],
  ['DECLARE c3 CURSOR FOR SELECT * FROM docs FOR UPDATE', 'write', 'FOR UPDATE'],
  // EXPLAIN ANALYZE runs the statement
  ['EXPLAIN ANALYZE DELETE FROM docs', 'write', 'EXPLAIN ANALYZE of DELETE from docs'],
  ['EXPLAIN (ANALYZE true, COSTS off) INSERT INTO docs VALUES (1)', 'write', 'INSERT'],
  ['EXPLAIN (ANALYZE on) UPDATE docs SET id = 1', 'write', 'UPDATE'],
  ['EXPLAIN (ANALYZE 1) DELETE FROM docs', 'write', 'DELETE'],
  ["EXPLAIN ANALYSE SELECT nextval('s')", 'write', 'nextval'],
  ['EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1', 'ddl', 'CREATE TABLE AS'],
  ['EXPLAIN ANALYZE WITH d AS (DELETE FROM docs RETURNING 1) SELECT * FROM d', 'write', 'data-modifying CTE'],
  // procedural code
  ['DO $$ BEGIN DELETE FROM docs; END $$', 'write', 'DO block'],
  ['DO LANGUAGE plpgsql $$ BEGIN PERFORM 1; END $$', 'write', 'DO block'],
  ['CALL do_things(1)', 'write', 'CALL'],
  // COPY
  ['COPY t FROM STDIN', 'write', 'COPY ... FROM'],
  ["COPY docs FROM '/tmp/docs.csv' WITH (FORMAT csv)", 'write', 'COPY ... FROM'],
  ["COPY docs TO '/tmp/x'", 'admin', "COPY ... TO 'file'"],
  [COPY_TO_PROGRAM, 'admin', 'PROGRAM'],
  ['COPY (DELETE FROM docs RETURNING *) TO STDOUT', 'write', 'DELETE'],
  ["COPY (SELECT nextval('s')) TO STDOUT", 'write', 'nextval'],
  // settings and identity
  ['SET ROLE postgres', 'admin', 'SET ROLE'],
  ['SET LOCAL ROLE postgres', 'admin', 'SET ROLE'],
  ['set session authorization x', 'admin', 'SET SESSION AUTHORIZATION'],
  ['SET default_transaction_read_only = off', 'admin', 'default_transaction_read_only'],
  ['SET transaction_read_only = off', 'admin', 'transaction_read_only'],
  ['SET session_replication_role = replica', 'admin', 'session_replication_role'],
  ['SET log_statement = none', 'unknown', 'log_statement'],
  ['SET my.custom_setting = 1', 'unknown', 'my.custom_setting'],
  ["SET client_encoding = 'SJIS'", 'admin', 'client_encoding'],
  ["SET NAMES 'gbk'", 'admin', 'client_encoding'],
  ['SET standard_conforming_strings = off', 'admin', 'standard_conforming_strings'],
  ['SET backslash_quote = on', 'admin', 'backslash_quote'],
  ['RESET transaction_read_only', 'admin', 'transaction_read_only'],
  ['SET transaction_read_only TO DEFAULT', 'admin', 'transaction_read_only'],
  ['SET LOCAL transaction_read_only = 0', 'admin', 'transaction_read_only'],
  ['SET local_preload_libraries = x', 'unknown', 'local_preload_libraries'],
  ['SET enable_x.y = 1', 'unknown', 'enable_x.y'],
  ["VALUES (nextval('s'))", 'write', 'nextval'],
  ["DECLARE c4 CURSOR FOR SELECT nextval('s')", 'write', 'nextval'],
  ['EXPLAIN ANALYZE EXECUTE p', 'unknown', 'EXECUTE'],
  ['CREATE TEMP TABLE tt (a int)', 'ddl', 'CREATE TABLE'],
  ['SELECT 1 INTO TEMP tt2', 'ddl', 'SELECT INTO'],
  ['BEGIN READ WRITE', 'write', 'READ WRITE'],
  ['START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE', 'write', 'READ WRITE'],
  ['SET TRANSACTION READ WRITE', 'write', 'READ WRITE'],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', 'write', 'READ WRITE'],
  ["PREPARE TRANSACTION 'x'", 'write', 'PREPARE TRANSACTION'],
  ["COMMIT PREPARED 'x'", 'write', 'COMMIT PREPARED'],
  ["ROLLBACK PREPARED 'x'", 'write', 'ROLLBACK PREPARED'],
  // prepared statements
  ['PREPARE p AS DELETE FROM t', 'write', 'PREPARE of DELETE from t'],
  ["PREPARE p2 AS SELECT nextval('s')", 'write', 'nextval'],
  ['EXECUTE p', 'unknown', 'EXECUTE'],
  ['EXECUTE q(1)', 'unknown', 'EXECUTE'],
  // locks, notifications, maintenance
  ['LOCK TABLE docs IN ACCESS EXCLUSIVE MODE', 'write', 'LOCK ... IN ACCESS EXCLUSIVE MODE (blocks writers)'],
  ['LOCK docs', 'write', 'ACCESS EXCLUSIVE'],
  ['LOCK docs IN SHARE MODE', 'write', 'LOCK ... IN SHARE MODE (blocks writers)'],
  ['LOCK docs IN ROW EXCLUSIVE MODE', 'write', 'ROW EXCLUSIVE'],
  ["NOTIFY ch, 'x'", 'write', 'NOTIFY'],
  ['VACUUM docs', 'admin', 'VACUUM'],
  ['VACUUM (FULL, ANALYZE) docs', 'admin', 'VACUUM'],
  ['ANALYZE docs', 'admin', 'ANALYZE'],
  ['CLUSTER docs USING docs_pkey', 'admin', 'CLUSTER'],
  ['REINDEX TABLE docs', 'admin', 'REINDEX'],
  ['CHECKPOINT', 'admin', 'CHECKPOINT'],
  ["ALTER SYSTEM SET work_mem = '64MB'", 'admin', 'ALTER SYSTEM'],
  ["LOAD 'auto_explain'", 'admin', 'LOAD'],
  // privileges and roles
  ['GRANT SELECT ON docs TO PUBLIC', 'admin', 'GRANT'],
  ['REVOKE ALL ON docs FROM PUBLIC', 'admin', 'GRANT/REVOKE'],
  ['GRANT pg_read_server_files TO someone', 'admin', 'role'],
  ['CREATE ROLE r LOGIN', 'admin', 'CREATE ROLE'],
  ['ALTER ROLE r SUPERUSER', 'admin', 'ALTER ROLE'],
  ['DROP ROLE r', 'admin', 'DROP ROLE'],
  ['CREATE DATABASE x', 'admin', 'CREATE DATABASE'],
  ['DROP DATABASE x', 'admin', 'DROP DATABASE'],
  // DDL
  ['CREATE TABLE t (a int)', 'ddl', 'CREATE TABLE'],
  ['CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)', 'ddl', 'CREATE INDEX'],
  ['CREATE INDEX CONCURRENTLY items_ivf ON items USING ivfflat (embedding vector_cosine_ops) WITH (lists = 100)', 'ddl', 'CREATE INDEX'],
  ['CREATE EXTENSION IF NOT EXISTS vector', 'ddl', 'CREATE EXTENSION'],
  ['ALTER TABLE docs ADD COLUMN x int', 'ddl', 'ALTER TABLE'],
  ['ALTER TABLE docs RENAME TO d2', 'ddl', 'RENAME'],
  ['DROP TABLE docs', 'ddl', 'DROP TABLE'],
  ['DROP INDEX IF EXISTS items_ivf', 'ddl', 'DROP INDEX'],
  ['CREATE VIEW v AS SELECT 1', 'ddl', 'CREATE VIEW'],
  ["CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", 'ddl', 'CREATE FUNCTION'],
  ['CREATE SCHEMA app', 'ddl', 'CREATE SCHEMA'],
  ["COMMENT ON TABLE docs IS 'x'", 'ddl', 'COMMENT'],
  ['CREATE SEQUENCE s2', 'ddl', 'CREATE SEQUENCE'],
  ["CREATE TYPE mood AS ENUM ('a', 'b')", 'ddl', 'ENUM'],
  ['CREATE TRIGGER trg AFTER INSERT ON docs FOR EACH ROW EXECUTE FUNCTION f()', 'ddl', 'CREATE TRIGGER'],
  ['ALTER TABLE docs OWNER TO someone', 'ddl', 'ALTER TABLE'],
  // several statements: the most restrictive wins, and its statement is reported
  ['select 1; drop table t', 'ddl', 'DROP TABLE'],
  ['SELECT 1; INSERT INTO docs VALUES (1); DROP TABLE docs', 'ddl', 'DROP TABLE'],
  ['SELECT 1; SET ROLE postgres; DELETE FROM docs', 'admin', 'SET ROLE'],
  ['BEGIN; DELETE FROM docs; COMMIT', 'write', 'DELETE from docs'],
  // cannot be parsed: refused with PostgreSQL's own syntax error
  ['this is not sql', 'unknown', 'syntax error at or near "this"'],
  ['SELEC 1', 'unknown', 'syntax error at or near "SELEC"'],
  ["SELECT 'unterminated", 'unknown', 'unterminated quoted string'],
  ['DROP TABLE', 'unknown', 'syntax error at end of input'],
  ['SELECT 1; DELETE FROM docs; garbage(', 'unknown', 'syntax error at or near "garbage"'],
  ['SELECT 1\u0000; DROP TABLE docs', 'unknown', 'NUL'],
];

const CORPUS: Case[] = [...READS.map(([sql]) => [sql, 'read'] as const), ...REFUSED];

function refusal(c: Classification): Exclude<Classification, { kind: 'read' }> {
  assert.notEqual(c.kind, 'read');
  return c as Exclude<Classification, { kind: 'read' }>;
}

before(async () => {
  await initStatementClassifier();
});

describe('statement corpus', () => {
  test('is at least 120 statements', () => {
    assert.ok(CORPUS.length >= 120, `corpus has ${CORPUS.length}`);
  });
  for (const [sql, kind, reason] of CORPUS) {
    test(`${kind}: ${JSON.stringify(sql).slice(0, 100)}`, () => {
      const c = classifyStatement(sql);
      assert.equal(c.kind, kind, `got ${JSON.stringify(c)}`);
      assert.equal(isReadOnly(c), kind === 'read');
      if (kind !== 'read') {
        const r = refusal(c);
        if (reason !== undefined) assert.ok(r.reason.includes(reason), `reason ${JSON.stringify(r.reason)} should mention ${JSON.stringify(reason)}`);
        assert.ok(r.statement.length <= MAX_STATEMENT_EXCERPT_CHARS);
      }
    });
  }
});

describe('refusal details', () => {
  test('names the offending statement of several, by byte offsets that survive non-ASCII text', () => {
    const r = refusal(classifyStatement("SELECT 'ééé 😀'; \n  drop table t  ;  SELECT 2"));
    assert.equal(r.statement, 'drop table t');
    const r2 = refusal(classifyStatement('SELECT 1; SET ROLE postgres; DELETE FROM docs'));
    assert.equal(r2.statement, 'SET ROLE postgres');
  });

  test('trims the statement excerpt to MAX_STATEMENT_EXCERPT_CHARS characters', () => {
    const long = `DELETE FROM docs WHERE body IN (${Array.from({ length: 200 }, (_, i) => `'😀${i}'`).join(', ')})`;
    const r = refusal(classifyStatement(long));
    assert.equal(r.kind, 'write');
    assert.equal([...r.statement].length, MAX_STATEMENT_EXCERPT_CHARS);
    assert.ok(long.startsWith(r.statement));
  });

  test('refuses strings over the size limit without parsing them', () => {
    const sql = `SELECT '${'x'.repeat(2000)}'`;
    assert.equal(classifyStatement(sql).kind, 'read');
    const r = refusal(classifyStatement(sql, { maxBytes: 1000 }));
    assert.equal(r.kind, 'unknown');
    assert.match(r.reason, /too large/);
  });

  test('parse errors are PostgreSQL\'s: 42601, the parser message, a 1-based character position', () => {
    const r = refusal(classifyStatement('SELECT FROM WHERE'));
    assert.equal(r.kind, 'unknown');
    assert.equal(r.sqlstate, '42601');
    assert.equal(r.reason, 'syntax error at or near "WHERE"');
    assert.equal(r.position, 13);
    // Characters, not bytes or UTF-16 units: PostgreSQL counts code points.
    assert.equal(refusal(classifyStatement("SELECT 'é😀' FROM WHERE")).position, 18);
    assert.equal(refusal(classifyStatement('DROP TABLE')).position, 11);
    assert.equal(refusal(classifyStatement('DELETE FROM docs')).sqlstate, '42501');
  });

  test('deeply nested reads do not overflow the walk', () => {
    const depth = 500;
    const sql = `${'SELECT * FROM ('.repeat(depth)}SELECT 1${') x'.repeat(depth)}`;
    const c = classifyStatement(sql);
    // PostgreSQL's parser may refuse the depth itself; either way it must not be mis-read or throw.
    assert.ok(c.kind === 'read' || c.kind === 'unknown', JSON.stringify(c).slice(0, 200));
    const withWrite = `${'SELECT * FROM ('.repeat(depth)}SELECT nextval('s')${') x'.repeat(depth)}`;
    assert.notEqual(classifyStatement(withWrite).kind, 'read');
  });

  test('the denylist matches exact names and families, case-insensitively', () => {
    assert.equal(deniedFunction('nextval')?.risk, 'write');
    assert.equal(deniedFunction('NEXTVAL')?.risk, 'write');
    assert.equal(deniedFunction('pg_advisory_xact_lock_shared'), null);
    assert.equal(deniedFunction('brin_summarize_new_values')?.risk, 'write');
    assert.equal(deniedFunction('pg_stat_reset_single_table_counters')?.risk, 'write');
    assert.equal(deniedFunction('pg_replication_origin_create')?.risk, 'admin');
    assert.equal(deniedFunction('dblink_exec')?.risk, 'admin');
    assert.equal(deniedFunction('lo_export')?.risk, 'write');
    assert.equal(deniedFunction('pg_sleep'), null);
    assert.equal(deniedFunction('currval'), null);
    assert.equal(deniedFunction('cosine_distance'), null);
  });
});

// PostgreSQL itself as an oracle: in a session whose transactions are READ ONLY, any statement
// PostgreSQL refuses with 25006 (read_only_sql_transaction) must not be classified read.
/** A clean session whose transactions are READ ONLY (DISCARD ALL cannot share a query string). */
async function resetSession(db: PGlite): Promise<void> {
  await db.exec('ROLLBACK');
  await db.exec('DISCARD ALL');
  await db.exec('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY');
}

describe('PostgreSQL agrees (PGlite, read-only session)', () => {
  let db: PGlite;
  before(async () => {
    db = await PGlite.create({ extensions: { vector } });
    await db.exec(`
      CREATE EXTENSION vector;
      CREATE TABLE docs (id int PRIMARY KEY, body text);
      CREATE TABLE t (a int, b int);
      CREATE TABLE items (id int PRIMARY KEY, embedding vector(3));
      CREATE SEQUENCE s;
      CREATE FUNCTION rank_docs(int) RETURNS int LANGUAGE sql AS 'select $1';
      INSERT INTO docs VALUES (1, 'one'), (2, 'two');
      INSERT INTO items VALUES (1, '[1,2,3]'), (2, '[3,2,1]');
    `);
  });
  after(async () => {
    await db?.close();
  });

  test('nothing PostgreSQL refuses in a read-only transaction is classified read', async () => {
    let refusedByPostgres = 0;
    for (const [sql] of CORPUS) {
      if (sql.includes('\u0000') || sql.trim() === '' || sql === ';;' || sql === COPY_TO_PROGRAM || PGLITE_ENCODING_CHANGES.has(sql)) continue;
      // Each statement starts from a clean read-only session.
      await resetSession(db);
      let code: string | undefined;
      try {
        await db.exec(sql);
      } catch (err) {
        code = (err as { code?: string }).code;
      }
      if (code === '25006') {
        refusedByPostgres++;
        assert.notEqual(classifyStatement(sql).kind, 'read', `PostgreSQL refused ${JSON.stringify(sql)} as a write, the classifier said read`);
      }
    }
    await db.exec('ROLLBACK');
    // The oracle must have had something to say, or this test checks nothing.
    assert.ok(refusedByPostgres >= 40, `PostgreSQL refused only ${refusedByPostgres} corpus statements`);
  });

  test('the read corpus runs in a read-only transaction without a 25006', async () => {
    for (const [sql] of READS) {
      if (sql.trim() === '' || sql === ';;' || PGLITE_ENCODING_CHANGES.has(sql)) continue;
      await resetSession(db);
      try {
        await db.exec(sql);
      } catch (err) {
        // Other errors (a missing cursor, a $1 without a value) are not about writing.
        assert.notEqual((err as { code?: string }).code, '25006', `${sql}: ${(err as Error).message}`);
      }
    }
    await db.exec('ROLLBACK');
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

/** Unquoted identifiers with a digit, so never a keyword; quoted ones with anything but NUL. */
const identifier = fc.oneof(
  fc
    .tuple(fc.stringMatching(/^[a-z_][a-z0-9_]{0,8}$/), fc.integer({ min: 0, max: 999 }))
    .chain(([s, n]) => fc.mixedCase(fc.constant(`${s}${n}`))),
  fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }).filter((s) => !s.includes('\u0000')).map((s) => `"${s.replace(/"/g, '""')}"`),
);
const keyword = (k: string) => fc.mixedCase(fc.constant(k));
const commentText = fc.string({ maxLength: 12 }).map((s) => s.replace(/[*/\n\r\u0000]/g, ' '));
/** What may stand between two tokens: whitespace, block comments, line comments. */
const gap = fc.oneof(
  fc.constantFrom(' ', '  ', '\t', '\n', '\r\n '),
  commentText.map((c) => ` /*${c}*/ `),
  commentText.map((c) => ` --${c}\n`),
);
const literal = fc.oneof(
  fc.integer().map(String),
  fc.string({ maxLength: 20 }).filter((s) => !s.includes('\u0000')).map((s) => `'${s.replace(/'/g, "''")}'`),
  fc.constantFrom("'DELETE FROM x'", '$$DROP TABLE y$$', "'; INSERT INTO z VALUES (1); --'"),
);

/** Joins tokens with generated gaps. */
function spaced(tokens: readonly fc.Arbitrary<string>[]): fc.Arbitrary<string> {
  return fc.tuple(fc.tuple(...tokens), fc.array(gap, { minLength: tokens.length, maxLength: tokens.length })).map(([ts, gs]) =>
    ts.map((t, i) => (i === 0 ? t : gs[i] + t)).join(''),
  );
}
const k = keyword;
const c = fc.constant;

type Gen = { kind: ClassificationKind; sql: fc.Arbitrary<string>; returning: boolean };
const dml: Gen[] = [
  { kind: 'write', returning: true, sql: spaced([k('INSERT'), k('INTO'), identifier, c('('), identifier, c(')'), k('VALUES'), c('('), literal, c(')')]) },
  { kind: 'write', returning: true, sql: spaced([k('INSERT'), k('INTO'), identifier, k('SELECT'), literal]) },
  { kind: 'write', returning: true, sql: spaced([k('UPDATE'), identifier, k('SET'), identifier, c('='), literal, k('WHERE'), identifier, c('='), literal]) },
  { kind: 'write', returning: true, sql: spaced([k('DELETE'), k('FROM'), identifier, k('WHERE'), identifier, c('<>'), literal]) },
];
const other: Gen[] = [
  { kind: 'write', returning: false, sql: spaced([k('TRUNCATE'), fc.constantFrom('', 'TABLE'), identifier]) },
  { kind: 'ddl', returning: false, sql: spaced([k('CREATE'), k('TABLE'), identifier, c('('), identifier, k('int'), c(')')]) },
  { kind: 'ddl', returning: false, sql: spaced([k('CREATE'), k('INDEX'), identifier, k('ON'), identifier, k('USING'), k('hnsw'), c('('), identifier, k('vector_l2_ops'), c(')')]) },
  { kind: 'ddl', returning: false, sql: spaced([k('CREATE'), k('VIEW'), identifier, k('AS'), k('SELECT'), literal]) },
  { kind: 'ddl', returning: false, sql: spaced([k('DROP'), fc.constantFrom('TABLE', 'INDEX', 'VIEW', 'SEQUENCE', 'SCHEMA'), fc.constantFrom('', 'IF EXISTS'), identifier]) },
  { kind: 'ddl', returning: false, sql: spaced([k('ALTER'), k('TABLE'), identifier, k('ADD'), k('COLUMN'), identifier, k('text')]) },
  { kind: 'ddl', returning: false, sql: spaced([k('ALTER'), k('TABLE'), identifier, k('RENAME'), k('TO'), identifier]) },
  { kind: 'admin', returning: false, sql: spaced([k('GRANT'), fc.constantFrom('SELECT', 'INSERT', 'ALL'), k('ON'), identifier, k('TO'), identifier]) },
  { kind: 'admin', returning: false, sql: spaced([k('REVOKE'), fc.constantFrom('SELECT', 'UPDATE'), k('ON'), identifier, k('FROM'), identifier]) },
];

/** Harmless statements to put in front of the write. */
const harmless = fc.oneof(
  spaced([k('SELECT'), literal]),
  spaced([k('SET'), k('search_path'), c('='), identifier]),
  spaced([k('SHOW'), k('work_mem')]),
  c('BEGIN'),
);

/** A DML wrapped in a CTE, possibly inside subqueries. */
function inCte(stmt: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc
    .tuple(stmt, identifier, fc.integer({ min: 0, max: 3 }), gap)
    .map(([s, name, depth, g]) => {
      let q = `WITH ${name} AS (${s}${g}RETURNING *) SELECT * FROM ${name}`;
      for (let i = 0; i < depth; i++) q = `SELECT * FROM (${q}) AS sub${i}`;
      return q;
    });
}

const generatedWrite = fc
  .tuple(
    fc.oneof(
      ...dml.map((g) => g.sql.map((sql) => ({ kind: g.kind, sql }))),
      ...dml.map((g) => inCte(g.sql).map((sql) => ({ kind: g.kind, sql }))),
      ...other.map((g) => g.sql.map((sql) => ({ kind: g.kind, sql }))),
    ),
    fc.array(harmless, { maxLength: 3 }),
    gap,
    fc.boolean(),
  )
  .map(([w, before, g, trailingSemicolon]) => ({
    kind: w.kind,
    sql: [...before, w.sql].join(`;${g}`) + (trailingSemicolon ? ';' : ''),
  }));

describe('properties', () => {
  test('no generated write, DDL or GRANT statement is ever classified read', () => {
    fc.assert(
      fc.property(generatedWrite, ({ kind, sql }) => {
        const got = classifyStatement(sql);
        // The exact kind (not just "not read"): a generator producing unparsable SQL would
        // otherwise pass as `unknown` and check nothing.
        assert.equal(got.kind, kind, `${JSON.stringify(sql)} -> ${JSON.stringify(got)}`);
        assert.equal(isReadOnly(got), false);
      }),
      { numRuns: 1500 },
    );
  });

  test('reads stay read whatever write words sit in their comments, literals and quoted names', () => {
    const read = fc.oneof(
      spaced([k('SELECT'), literal, k('AS'), identifier, k('FROM'), identifier, k('WHERE'), identifier, c('='), literal]),
      spaced([k('SELECT'), identifier, k('FROM'), identifier, k('ORDER'), k('BY'), identifier, c('<->'), c("'[1,2,3]'"), k('LIMIT'), c('5')]),
      spaced([k('VALUES'), c('('), literal, c(','), literal, c(')')]),
      spaced([k('WITH'), identifier, k('AS'), c('('), k('SELECT'), literal, c(')'), k('SELECT'), c('1')]),
    );
    fc.assert(
      fc.property(fc.array(read, { minLength: 1, maxLength: 3 }), gap, (reads, g) => {
        const sql = reads.join(`;${g}`);
        const got = classifyStatement(sql);
        assert.equal(got.kind, 'read', `${JSON.stringify(sql)} -> ${JSON.stringify(got)}`);
      }),
      { numRuns: 1000 },
    );
  });
});
