// Secrets never reach the disk: redactEvent masks secret-looking keys at any depth, bearer
// credentials in text and SQL password literals in both dialects' quoting; canaries sent
// through a real Recorder are absent from every raw byte written (while a visible marker is
// present, so the grep can fail). Also: vector summaries and the CRC-32 fallback.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';
import { crc32, crc32Js } from '../../src/recording/crc32.js';
import { Recorder } from '../../src/recording/recorder.js';
import { maskSqlPasswords, REDACTED, redactEvent, redactSql } from '../../src/recording/redact-event.js';
import { initSqlRedaction } from '../../src/recording/redact-sql.js';
import { replaySession } from '../../src/recording/session-index.js';
import { summarizeVector } from '../../src/recording/summarize-vector.js';
import { allBytes, ev, tempDir } from './recording-fixture.js';

const CANARY = 'CanaryS3cret';
const cleanups: (() => void)[] = [];
after(() => cleanups.forEach((c) => c()));
before(() => initSqlRedaction());

describe('maskSqlPasswords', () => {
  const cases: [string, string][] = [
    [`ALTER ROLE x PASSWORD '${CANARY}'`, `ALTER ROLE x PASSWORD '[redacted]'`],
    [`alter user x with encrypted password '${CANARY}' valid until 'infinity'`, `alter user x with encrypted password '[redacted]' valid until 'infinity'`],
    [`CREATE USER u WITH LOGIN PASSWORD '${CANARY}''s' CREATEDB`, `CREATE USER u WITH LOGIN PASSWORD '[redacted]' CREATEDB`],
    [`CREATE ROLE r PASSWORD E'${CANARY}\\'x'`, `CREATE ROLE r PASSWORD '[redacted]'`],
    [`ALTER ROLE r PASSWORD $pw$${CANARY}$pw$`, `ALTER ROLE r PASSWORD '[redacted]'`],
    [`ALTER ROLE r PASSWORD /* why */ -- really\n '${CANARY}'`, `ALTER ROLE r PASSWORD /* why */ -- really\n '[redacted]'`],
    [`CREATE USER 'u'@'%' IDENTIFIED BY '${CANARY}'`, `CREATE USER 'u'@'%' IDENTIFIED BY '[redacted]'`],
    [`ALTER USER u IDENTIFIED WITH caching_sha2_password BY "${CANARY}"`, `ALTER USER u IDENTIFIED WITH caching_sha2_password BY '[redacted]'`],
    [`SET PASSWORD FOR u = PASSWORD('${CANARY}')`, `SET PASSWORD FOR u = PASSWORD('[redacted]')`],
    [`SET PASSWORD = '${CANARY}\\'tail'`, `SET PASSWORD = '[redacted]'`],
    // A backslash before a quote ends a PostgreSQL string but not a MySQL one: either way the later secret is masked.
    [`SELECT 'C:\\'; ALTER ROLE x PASSWORD '${CANARY}'`, `SELECT 'C:\\'; ALTER ROLE x PASSWORD '[redacted]'`],
    [`SELECT 'it\\'s'; SET PASSWORD = '${CANARY}'`, `SELECT 'it\\'s'; SET PASSWORD = '[redacted]'`],
    [`ALTER ROLE x PASSWORD '${CANARY}`, `ALTER ROLE x PASSWORD '[redacted]'`],
  ];
  for (const [sql, want] of cases) {
    it(JSON.stringify(sql), () => {
      const got = maskSqlPasswords(sql);
      assert.equal(got, want);
      assert.ok(!got.includes(CANARY));
    });
  }
  it('leaves text without a password literal alone', () => {
    for (const sql of [`SELECT 'password' AS word, "password" FROM t`, `ALTER ROLE x PASSWORD NULL`, `SELECT $1::text -- PASSWORD`, `SELECT embedding <-> '[1,2,3]' FROM items`]) {
      assert.equal(maskSqlPasswords(sql), sql);
    }
  });
});

describe('redactEvent', () => {
  it('masks secret keys at any depth and credentials in text, keeping the rest', () => {
    const e = ev('session-open', 's', 1, {
      subject: 'alice',
      password: CANARY,
      headers: { Authorization: `Bearer ${CANARY}`, 'x-api-key': CANARY, accept: 'application/json' },
      upstream: [{ user: 'svc', client_secret: CANARY }],
      access_token: CANARY,
      note: `upstream said: Bearer ${CANARY} was refused`,
      vector: new Float32Array([1, 2]),
    });
    const r = redactEvent(e);
    assert.ok(!JSON.stringify(r).includes(CANARY), JSON.stringify(r));
    assert.equal(r['password'], REDACTED);
    assert.deepEqual(r['headers'], { Authorization: REDACTED, 'x-api-key': REDACTED, accept: 'application/json' });
    assert.deepEqual(r['upstream'], [{ user: 'svc', client_secret: REDACTED }]);
    assert.equal(r['note'], `upstream said: Bearer ${REDACTED} was refused`);
    assert.equal(r['subject'], 'alice');
    assert.deepEqual(r['vector'], new Float32Array([1, 2]));
    assert.equal(e['password'], CANARY, 'the input is not changed');
  });

  it('nothing written by the recorder contains a canary', async () => {
    const t = tempDir();
    cleanups.push(t.cleanup);
    const r = await Recorder.open({ dir: t.dir, durability: 'strict', retentionMs: 86_400_000 });
    await r.append([
      ev('session-open', 'c', 1, { subject: 'alice', token: CANARY, auth: { authorization: `Basic ${CANARY}` } }),
      ev('statement', 'c', 2, { sql: `ALTER ROLE app PASSWORD '${CANARY}'` }),
      ev('statement', 'c', 3, { sql: `SELECT 'VisibleMarker'` }),
      ev('refusal', 'c', 4, { reason: 'read-only', detail: { secret: CANARY } }),
      ev('session-close', 'c', 5),
    ]);
    await r.close();
    const raw = allBytes(t.dir);
    assert.ok(raw.includes('VisibleMarker'), 'the raw grep sees recorded text');
    assert.ok(!raw.includes(CANARY), 'a canary reached the disk');
    const replayed = [];
    for await (const e of replaySession(t.dir, 'c')) replayed.push(e);
    assert.equal(replayed[1]!['sql'], "ALTER ROLE app PASSWORD '[redacted]'");
  });
});

describe('summarizeVector', () => {
  it('gives dims, L2 norm and a float32 fingerprint that matches for number[] and Float32Array', () => {
    const s = summarizeVector([3, 4]);
    assert.deepEqual(s, summarizeVector(new Float32Array([3, 4])));
    assert.equal(s.dims, 2);
    assert.equal(s.norm, 5);
    assert.match(s.hash, /^[0-9a-f]{12}$/);
    assert.notEqual(summarizeVector([3, 4.0001]).hash, s.hash);
    assert.deepEqual(summarizeVector([]), { dims: 0, norm: 0, hash: 'e3b0c44298fc' });
  });
});

describe('crc32', () => {
  it('the JavaScript fallback matches the known value and the native one', () => {
    assert.equal(crc32Js(Buffer.from('123456789')), 0xcbf43926);
    const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 31) & 0xff));
    assert.equal(crc32Js(data), crc32(data));
    const native = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;
    if (native !== undefined) assert.equal(crc32Js(data), native(data) >>> 0);
  });
});

it('values of sensitive settings in ALTER SYSTEM SET / SET are masked (recordings.redact_settings)', async () => {
  const { maskSensitiveSettings, setSensitiveSettings, redactEvent } = await import('../../src/recording/redact-event.js');
  const names = new Set(['primary_conninfo', 'my.secret']);
  const canary = 'canary-conninfo-pw-42';
  assert.equal(
    maskSensitiveSettings(`ALTER SYSTEM SET primary_conninfo = 'host=db password=${canary}'`, names),
    "ALTER SYSTEM SET primary_conninfo = '[redacted]'",
  );
  assert.equal(maskSensitiveSettings(`SET my.secret TO ${canary}; SELECT 1`, names), "SET my.secret TO '[redacted]'; SELECT 1");
  assert.equal(maskSensitiveSettings(`ALTER SYSTEM SET work_mem = '64MB'`, names), `ALTER SYSTEM SET work_mem = '64MB'`, 'other settings untouched');
  assert.equal(maskSensitiveSettings(`SELECT 'SET primary_conninfo = x'`, names), `SELECT 'SET primary_conninfo = x'`, 'inside a string literal: not a statement');
  setSensitiveSettings(['primary_conninfo']);
  try {
    const e = redactEvent({ type: 'statement', ts: 1, session: 's', connection: 'c', sql: `alter system set "primary_conninfo" to 'password=${canary}'` });
    assert.ok(!JSON.stringify(e).includes(canary));
  } finally {
    setSensitiveSettings([]);
  }
});

describe('SQL redaction by the parse tree (#17 item 9)', () => {
  // Each case: the text, and what must remain of it (the canary must not).
  const C = CANARY;
  const cases: [string, string, string][] = [
    ['U& password', `ALTER ROLE app PASSWORD U&'${C}\\0041'`, `ALTER ROLE app PASSWORD '[redacted]'`],
    ['U& password with UESCAPE', `CREATE ROLE app LOGIN ENCRYPTED PASSWORD U&'${C}!0041' UESCAPE '!' VALID UNTIL 'infinity'`, `CREATE ROLE app LOGIN ENCRYPTED PASSWORD '[redacted]' VALID UNTIL 'infinity'`],
    ['U& password whose text spells nothing', `alter user app with password u&'\\0043\\0061nary' createdb`, `alter user app with password '[redacted]' createdb`],
    ['dollar-quoted password', `CREATE USER u PASSWORD $x$${C}$x$`, `CREATE USER u PASSWORD '[redacted]'`],
    ['E string password', `ALTER ROLE r PASSWORD E'${C}\\''`, `ALTER ROLE r PASSWORD '[redacted]'`],
    ['password in a later statement, after non-ASCII text', `SELECT 'é€😀'; ALTER ROLE r PASSWORD '${C}'`, `SELECT 'é€😀'; ALTER ROLE r PASSWORD '[redacted]'`],
    ['user mapping option', `CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'remote', password '${C}')`, `CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'remote', password '[redacted]')`],
    ['set_config of a password setting', `SELECT set_config('x.password', '${C}', false)`, `SELECT set_config('x.password', '[redacted]', false)`],
    ['set_config of a token setting, schema-qualified', `SELECT pg_catalog.set_config('app.api_token', '${C}' || 'x', true)`, `SELECT pg_catalog.set_config('app.api_token', '[redacted]' || '[redacted]', true)`],
    ['set_config with a computed name', `SELECT set_config(name, '${C}', false) FROM t`, `SELECT set_config(name, '[redacted]', false) FROM t`],
    ['SET of a secret-looking name', `SET app.secret TO '${C}'`, `SET app.secret TO '[redacted]'`],
    ['SET of a secret-looking name, unquoted value', `SET LOCAL app.token = ${C}`, `SET LOCAL app.token = '[redacted]'`],
    ['ALTER ROLE ... SET of a secret-looking name', `ALTER ROLE app SET app.api_key = '${C}'`, `ALTER ROLE app SET app.api_key = '[redacted]'`],
    ['subscription conninfo', `CREATE SUBSCRIPTION s CONNECTION 'host=db password=${C}' PUBLICATION p`, `CREATE SUBSCRIPTION s CONNECTION '[redacted]' PUBLICATION p`],
    [
      'DO block: EXECUTE of a literal role statement',
      `DO $$ BEGIN EXECUTE 'ALTER ROLE app PASSWORD ''${C}'''; END $$`,
      `DO $$ BEGIN EXECUTE 'ALTER ROLE app PASSWORD ''[redacted]'''; END $$`,
    ],
    [
      'DO block: format() with the password as an argument',
      `DO $do$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', 'app', '${C}'); END $do$`,
      `DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', '[redacted]', '[redacted]'); END $$`,
    ],
    [
      'DO block: concatenation and a variable',
      `DO LANGUAGE plpgsql 'DECLARE pw text := ''${C}''; BEGIN EXECUTE ''ALTER USER app PASSWORD '' || quote_literal(pw); END'`,
      `DO LANGUAGE plpgsql $$DECLARE pw text := '[redacted]'; BEGIN EXECUTE 'ALTER USER app PASSWORD ' || quote_literal(pw); END$$`,
    ],
    ['DO block: set_config inside', `DO $$ BEGIN PERFORM set_config('app.token', '${C}', false); END $$`, `DO $$ BEGIN PERFORM set_config('app.token', '[redacted]', false); END $$`],
    [
      'DO block inside a DO block',
      `DO $a$ BEGIN EXECUTE $b$DO $c$ BEGIN EXECUTE 'ALTER ROLE x PASSWORD ''${C}'''; END $c$$b$; END $a$`,
      `DO $vg$ BEGIN EXECUTE 'DO $$ BEGIN EXECUTE ''ALTER ROLE x PASSWORD ''''[redacted]''''''; END $$'; END $vg$`,
    ],
    [
      'function body',
      `CREATE FUNCTION rotate() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN ALTER ROLE app PASSWORD '${C}'; END $f$`,
      `CREATE FUNCTION rotate() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ALTER ROLE app PASSWORD '[redacted]'; END $$`,
    ],
  ];
  for (const [name, sql, want] of cases) {
    it(name, () => {
      const got = redactSql(sql);
      assert.ok(!got.includes(CANARY) && !got.includes('Canary'), got);
      assert.equal(got, want);
      // Through an event too (the way recordings see it).
      assert.equal(redactEvent(ev('statement', 's', 1, { sql }))['sql'], want);
    });
  }

  it('leaves what holds no secret as it was', () => {
    for (const sql of [
      `SELECT 'password' AS word, "password" FROM t`,
      `ALTER ROLE x PASSWORD NULL`,
      `SET password_encryption = 'scram-sha-256'`,
      `SELECT set_config('search_path', 'public', false)`,
      `SET search_path TO app, public`,
      `DO $$ BEGIN RAISE NOTICE 'hello'; END $$`,
      `SELECT embedding <-> '[1,2,3]' FROM items WHERE note = 'set'`,
    ]) {
      assert.equal(redactSql(sql), sql);
    }
  });

  it('falls back to the patterns when the text does not parse as PostgreSQL', () => {
    assert.equal(redactSql(`CREATE USER 'u'@'%' IDENTIFIED BY '${CANARY}'`), `CREATE USER 'u'@'%' IDENTIFIED BY '[redacted]'`);
    assert.equal(redactSql(`ALTER ROLE x PASSWORD U&'${CANARY}' UESCAPE '!' garbage(`), `ALTER ROLE x PASSWORD '[redacted]' garbage(`);
  });

  it('masks what a server with standard_conforming_strings off would read as the password', () => {
    // The parser reads one string literal; with backslash escapes on, the server runs ALTER ROLE.
    const sql = `SELECT 'a\\', $$'; ALTER ROLE x PASSWORD '${CANARY}'; -- $$`;
    assert.ok(!redactSql(sql).includes(CANARY), redactSql(sql));
  });
});
