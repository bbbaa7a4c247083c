// Tests for the settings rules every way of setting a PostgreSQL setting shares (startup packet,
// `options`, SET / SET NAMES, set_config): client encodings, lexing switches, read-only switches,
// the read allowlist, and the `options` parser; then a real PostgreSQL 15 as the oracle: every
// setting allowed for read is USERSET and accepted in a read-only transaction, every refused
// encoding is one PostgreSQL would accept, and `options` means the same to both.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import {
  isReadableClientEncoding,
  parseBool,
  parseStartupOptions,
  READ_SAFE_SETTINGS,
  READ_SAFE_SETTINGS_LATER_VERSIONS,
  settingRefusal,
  type SessionAccess,
  type SettingSource,
} from '../../src/policy/session-settings.js';
import { classifyStatement, initStatementClassifier } from '../../src/policy/statement-classifier.js';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';

/** Client-only encodings where 0x5c or 0x27 can be a multibyte character's trailing byte, with their encnames.c aliases. */
const UNREADABLE_ENCODINGS = [
  'SJIS', 'sjis', 'Shift_JIS', 'SHIFT-JIS', 'shiftjis', 'mskanji', 'MS_Kanji', 'win932', 'WIN-932', 'windows932', 'Windows-932',
  'SHIFT_JIS_2004', 'shiftjis2004',
  'BIG5', 'big-5', 'win950', 'windows950', 'Windows_950',
  'GBK', 'gbk', 'win936', 'windows936', 'Windows-936',
  'UHC', 'uhc', 'win949', 'windows949',
  'GB18030', 'gb-18030',
  'JOHAB', 'johab',
];
/** Encodings where every byte of a multibyte character is >= 0x80, in various spellings. */
const READABLE_ENCODINGS = [
  'UTF8', 'utf-8', 'UTF_8', 'Unicode', 'SQL_ASCII', 'sql-ascii',
  'EUC_JP', 'euc-jp', 'EUC_CN', 'EUC_KR', 'EUC_TW', 'EUC_JIS_2004',
  'LATIN1', 'latin-1', 'ISO-8859-1', 'iso_8859_1', 'ISO88591', 'LATIN2', 'LATIN3', 'LATIN4', 'LATIN5', 'iso8859-9', 'LATIN6', 'iso8859_10',
  'LATIN7', 'iso885913', 'LATIN8', 'iso8859-14', 'LATIN9', 'ISO-8859-15', 'LATIN10', 'iso-8859-16',
  'ISO_8859_5', 'ISO_8859_6', 'ISO_8859_7', 'ISO_8859_8',
  'WIN1250', 'windows-1250', 'WIN1251', 'win', 'WIN1252', 'WIN1253', 'WIN1254', 'WIN1255', 'WIN1256', 'WIN1257', 'WIN1258', 'abc', 'tcvn', 'TCVN5712', 'vscii',
  'WIN866', 'alt', 'windows866', 'WIN874', 'windows-874',
  'KOI8R', 'KOI8-R', 'koi8', 'KOI8U', 'koi8-u',
];
/** Names PostgreSQL (UTF8 server) does not know or will not convert: refused either way. */
const UNKNOWN_ENCODINGS = ['', 'auto', 'utf16', 'UTF-16LE', 'utf8x', 'ascii', 'latin11', 'lätin1', 'utf8\u0000', 'x'.repeat(64)];

const ALL_SOURCES: SettingSource[] = ['startup', 'options', 'SET', 'set_config'];
const ALL_ACCESS: SessionAccess[] = ['read', 'write', 'admin'];

/** A SQL string literal (standard_conforming_strings on). */
const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;

before(async () => {
  await initStatementClassifier();
});

describe('client encodings', () => {
  test('client-only multibyte encodings and their aliases are refused for read, every way', () => {
    for (const enc of UNREADABLE_ENCODINGS) {
      assert.equal(isReadableClientEncoding(enc), false, enc);
      for (const source of ALL_SOURCES) {
        const r = settingRefusal('client_encoding', enc, 'read', source);
        assert.ok(r, `${source} ${enc}`);
        assert.equal(r.sqlstate, '42501');
        assert.match(r.message, /client_encoding/);
        assert.match(r.message, /multibyte/);
      }
      const opts = parseStartupOptions(`-c client_encoding=${enc.replace(/ /g, '\\ ')}`);
      assert.ok(opts.ok);
      assert.deepEqual(opts.settings, [['client_encoding', enc]]);
      for (const sql of [`SET client_encoding = ${lit(enc)}`, `SET NAMES ${lit(enc)}`, `SET LOCAL client_encoding TO ${lit(enc)}`, `SELECT set_config('client_encoding', ${lit(enc)}, false)`]) {
        const c = classifyStatement(sql);
        assert.equal(c.kind, 'admin', `${sql}: ${JSON.stringify(c)}`);
      }
    }
  });

  test('encodings the gateway reads exactly are allowed, in any spelling PostgreSQL accepts', () => {
    for (const enc of READABLE_ENCODINGS) {
      assert.equal(isReadableClientEncoding(enc), true, enc);
      for (const source of ALL_SOURCES) assert.equal(settingRefusal('client_encoding', enc, 'read', source), null, `${source} ${enc}`);
      assert.equal(classifyStatement(`SET NAMES ${lit(enc)}`).kind, 'read', enc);
      assert.equal(classifyStatement(`SELECT set_config('client_encoding', ${lit(enc)}, true)`).kind, 'read', enc);
    }
  });

  test('unknown, non-ASCII and over-long names are refused (fail closed)', () => {
    for (const enc of UNKNOWN_ENCODINGS) assert.equal(isReadableClientEncoding(enc), false, JSON.stringify(enc));
  });

  test('DEFAULT and RESET of client_encoding are fine', () => {
    assert.equal(settingRefusal('client_encoding', null, 'read', 'SET'), null);
    for (const sql of ['SET client_encoding TO DEFAULT', 'RESET client_encoding', 'SET NAMES DEFAULT']) assert.equal(classifyStatement(sql).kind, 'read', sql);
  });

  test('write and admin sessions may choose any encoding (their statements are not inspected)', () => {
    for (const access of ['write', 'admin'] as const) {
      for (const source of ALL_SOURCES) assert.equal(settingRefusal('client_encoding', 'SJIS', access, source), null);
    }
  });
});

describe('settings that change lexing or lift read-only', () => {
  test('standard_conforming_strings: only on, every way', () => {
    for (const source of ALL_SOURCES) {
      for (const v of ['off', 'OFF', 'of', 'false', 'f', 'no', '0', 'o', 'maybe', '']) {
        const r = settingRefusal('standard_conforming_strings', v, 'read', source);
        assert.ok(r, `${source} ${v}`);
        assert.match(r.message, /standard_conforming_strings/);
      }
      for (const v of ['on', 'ON', 'true', 'tr', 'yes', 'y', '1']) assert.equal(settingRefusal('standard_conforming_strings', v, 'read', source), null, `${source} ${v}`);
    }
    assert.equal(classifyStatement('SET standard_conforming_strings = off').kind, 'admin');
    assert.equal(classifyStatement("SET standard_conforming_strings TO 'false'").kind, 'admin');
    assert.equal(classifyStatement("SELECT set_config('standard_conforming_strings', 'off', false)").kind, 'admin');
    assert.equal(classifyStatement('SET standard_conforming_strings = on').kind, 'read');
    const opts = parseStartupOptions('-c standard_conforming_strings=off');
    assert.ok(opts.ok);
    assert.ok(settingRefusal(...opts.settings[0]!, 'read', 'options'));
  });

  test('backslash_quote and session_replication_role are refused whatever the value', () => {
    for (const name of ['backslash_quote', 'session_replication_role', 'BACKSLASH_QUOTE']) {
      for (const v of ['on', 'off', 'safe_encoding', 'origin', 'replica']) {
        for (const source of ALL_SOURCES) assert.ok(settingRefusal(name, v, 'read', source), `${name}=${v} ${source}`);
      }
    }
  });

  test('default_transaction_read_only and transaction_read_only: only turning read-only on', () => {
    for (const name of ['default_transaction_read_only', 'transaction_read_only', 'Transaction_Read_Only']) {
      for (const v of ['on', 'On', 'true', 't', 'TRU', 'yes', 'ye', 'y', '1']) assert.equal(settingRefusal(name, v, 'read', 'SET'), null, `${name}=${v}`);
      for (const v of ['off', 'of', 'o', 'false', 'f', 'no', 'n', '0', 'onn', 'true ', ' on', '2', '']) assert.ok(settingRefusal(name, v, 'read', 'SET'), `${name}=${v}`);
    }
    // RESET goes back to the start value (on, set by the gateway) ...
    assert.equal(settingRefusal('default_transaction_read_only', null, 'read', 'SET'), null);
    // ... except transaction_read_only, which PostgreSQL 15 resets to off (tested against PG below).
    assert.ok(settingRefusal('transaction_read_only', null, 'read', 'SET'));
  });

  test('parseBool is PostgreSQL\'s parse_bool', () => {
    const cases: [string, boolean | undefined][] = [
      ['on', true], ['ON', true], ['off', false], ['of', false], ['o', undefined], ['onx', undefined], ['offx', undefined],
      ['t', true], ['true', true], ['truex', undefined], ['f', false], ['FALSE', false], ['y', true], ['yes', true], ['n', false], ['no', false],
      ['1', true], ['0', false], ['01', undefined], ['', undefined], [' on', undefined], ['2', undefined],
    ];
    for (const [v, want] of cases) assert.equal(parseBool(v), want, JSON.stringify(v));
  });
});

describe('startup-only refusals, for every access level', () => {
  const cases: [string, string, RegExp][] = [
    ['role', 'postgres', /chooses the role/],
    ['session_authorization', 'postgres', /chooses the role/],
    ['Role', 'postgres', /chooses the role/],
    ['replication', 'database', /replication/],
    ['_pq_.compression', 'on', /protocol extensions/],
    ['local_preload_libraries', 'x', /server code/],
    ['session_preload_libraries', 'x', /server code/],
  ];
  for (const access of ALL_ACCESS) {
    test(`${access}`, () => {
      for (const [name, value, why] of cases) {
        for (const source of ['startup', 'options'] as const) {
          const r = settingRefusal(name, value, access, source);
          assert.ok(r, `${access} ${source} ${name}`);
          assert.match(r.message, why);
          assert.ok(r.message.includes(name), r.message);
          assert.equal(r.sqlstate, name === 'replication' || name.startsWith('_pq_') ? '0A000' : '42501');
        }
      }
      // Other settings at startup are a read-only question only.
      if (access !== 'read') {
        for (const name of ['log_statement', 'app.tenant', 'standard_conforming_strings']) assert.equal(settingRefusal(name, 'off', access, 'startup'), null);
      }
    });
  }
  test('as statements, write and admin sessions are not inspected', () => {
    for (const access of ['write', 'admin'] as const) {
      for (const source of ['SET', 'set_config'] as const) assert.equal(settingRefusal('role', 'postgres', access, source), null);
    }
  });
});

describe('the read allowlist', () => {
  test('allows reads\' knobs, case-insensitively, every way', () => {
    const allowed: [string, string][] = [
      ['statement_timeout', '5s'], ['STATEMENT_TIMEOUT', '0'], ['lock_timeout', '1s'], ['idle_in_transaction_session_timeout', '10s'], ['idle_session_timeout', '0'],
      ['DateStyle', 'ISO, MDY'], ['TimeZone', 'UTC'], ['IntervalStyle', 'iso_8601'], ['extra_float_digits', '3'], ['search_path', 'app, public'],
      ['application_name', 'psql'], ['work_mem', '64MB'], ['jit', 'off'], ['enable_seqscan', 'off'], ['enable_memoize', 'on'], ['random_page_cost', '1.1'],
      ['default_transaction_isolation', 'serializable'], ['transaction_isolation', 'repeatable read'], ['plan_cache_mode', 'force_generic_plan'],
      ['client_min_messages', 'warning'], ['bytea_output', 'hex'], ['row_security', 'off'], ['escape_string_warning', 'off'],
      ['ivfflat.probes', '10'], ['hnsw.ef_search', '100'], ['HNSW.EF_SEARCH', '100'], ['debug_parallel_query', 'off'],
    ];
    for (const [name, value] of allowed) {
      for (const source of ALL_SOURCES) assert.equal(settingRefusal(name, value, 'read', source), null, `${source} ${name}=${value}`);
    }
  });

  test('refuses everything else for read, naming the setting', () => {
    const refused: [string, RegExp][] = [
      ['log_statement', /shape how reads run/],
      ['synchronous_commit', /shape how reads run/],
      ['temp_tablespaces', /shape how reads run/],
      ['enable_x.y', /row-level security/],
      ['app.tenant_id', /row-level security/],
      ['my.custom_setting', /row-level security/],
    ];
    for (const [name, why] of refused) {
      for (const source of ALL_SOURCES) {
        const r = settingRefusal(name, '1', 'read', source);
        assert.ok(r, `${source} ${name}`);
        assert.equal(r.sqlstate, '42501');
        assert.match(r.message, why);
        assert.ok(r.message.includes(name), r.message);
        assert.match(r.message, / is not allowed: /);
        assert.ok(r.reason.includes(name));
      }
    }
  });

  test('RESET and DEFAULT of any setting return to the gateway\'s start values', () => {
    for (const name of ['app.tenant_id', 'log_statement', 'role', 'session_authorization', 'standard_conforming_strings']) {
      assert.equal(settingRefusal(name, null, 'read', 'SET'), null, name);
    }
    for (const sql of ['RESET ALL', 'RESET app.tenant_id', 'SET app.tenant_id TO DEFAULT', 'RESET ROLE', 'SET ROLE NONE']) assert.equal(classifyStatement(sql).kind, 'read', sql);
  });

  test('messages name the source', () => {
    assert.match(settingRefusal('log_statement', 'all', 'read', 'startup')!.message, /^startup parameter log_statement=all is not allowed/);
    assert.match(settingRefusal('log_statement', 'all', 'read', 'options')!.message, /^"-c log_statement=all" in the options startup parameter is not allowed/);
    assert.match(settingRefusal('log_statement', 'all', 'read', 'SET')!.message, /^SET log_statement = all is not allowed/);
    assert.match(settingRefusal('log_statement', 'all', 'read', 'set_config')!.message, /^set_config\('log_statement', 'all'\) is not allowed/);
    assert.match(settingRefusal('role', 'x', 'read', 'SET')!.message, /^SET ROLE is not allowed/);
  });
});

describe('parseStartupOptions', () => {
  const ok: [string, [string, string][]][] = [
    ['', []],
    ['   \t ', []],
    ['-c statement_timeout=5s', [['statement_timeout', '5s']]],
    ['-cstatement_timeout=5s', [['statement_timeout', '5s']]],
    ['--statement-timeout=5s', [['statement_timeout', '5s']]],
    ['-c lock-timeout=1s', [['lock_timeout', '1s']]],
    ['  -c a=1\t\n-c  b=2  --c=3 ', [['a', '1'], ['b', '2'], ['c', '3']]],
    ['-c search_path=app,\\ public', [['search_path', 'app, public']]],
    ['-c application_name=a\\\\b', [['application_name', 'a\\b']]],
    ['-c x=a=b', [['x', 'a=b']]],
    ['-c x=', [['x', '']]],
    ['-c datestyle=iso\\,\\ mdy', [['datestyle', 'iso, mdy']]],
    ['-c a=1 --', [['a', '1']]],
    ['-c app.x-y=1', [['app.x_y', '1']]],
  ];
  for (const [input, settings] of ok) {
    test(`reads ${JSON.stringify(input)}`, () => {
      assert.deepEqual(parseStartupOptions(input), { ok: true, settings });
    });
  }
  const bad: [string, RegExp][] = [
    ['-c statement_timeout', /-c statement_timeout requires a value/],
    ['--statement_timeout', /--statement_timeout requires a value/],
    ['-c', /-c requires a setting/],
    ['-c =1', /no setting name/],
    ['-d 5', /"-d"/],
    ['-B 100', /"-B"/],
    ['-e', /"-e"/],
    ['-F', /"-F"/],
    ['-c a=1 -E', /"-E"/],
    ['-o x', /"-o"/],
    ['vectors', /"vectors"/],
    ['-c a=1 extra', /"extra"/],
    ['-- -c a=1', /"-c"/],
    ['-c a=1 \\', /invalid command-line argument ""/], // pg_split_opts makes an empty word of a lone backslash
  ];
  for (const [input, message] of bad) {
    test(`refuses ${JSON.stringify(input)}`, () => {
      const r = parseStartupOptions(input);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.message, message);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// PostgreSQL 15 as the oracle

describe('PostgreSQL 15 agrees', () => {
  let tmp: string;
  let pki: TestPki;
  let cluster: PgCluster;
  const clients: pg.Client[] = [];
  const connect = async (extra: Partial<pg.ClientConfig> = {}) => {
    const c = new pg.Client({
      host: cluster.host,
      port: cluster.port,
      database: cluster.database,
      ...cluster.roles.rw,
      ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' },
      ...extra,
    });
    clients.push(c);
    c.on('error', () => {});
    await c.connect();
    return c;
  };

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vg-settings-'));
    pki = await writeTestPki(path.join(tmp, 'pki'));
    cluster = await startPgCluster({ pki });
  });
  after(async () => {
    for (const c of clients) await c.end().catch(() => {});
    await cluster?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('every setting allowed for read is USERSET and accepted in a read-only transaction', async () => {
    const c = await connect();
    const { rows } = await c.query<{ name: string; context: string }>('SELECT lower(name) AS name, context FROM pg_settings');
    const context = new Map(rows.map((r) => [r.name, r.context]));
    const builtIn = [...READ_SAFE_SETTINGS].filter((n) => !n.includes('.'));
    // Planner switches come by prefix: all of PG 15's enable_* must be USERSET too.
    const planner = [...context.keys()].filter((n) => n.startsWith('enable_'));
    assert.ok(planner.length >= 20);
    for (const name of [...builtIn, ...planner]) {
      assert.equal(context.get(name), 'user', `${name}: context ${context.get(name)}`);
      assert.equal(settingRefusal(name, 'x', 'read', 'SET'), null, name);
    }
    for (const name of READ_SAFE_SETTINGS_LATER_VERSIONS) assert.equal(context.has(name), false, `${name} exists in PG 15: list it with the others`);
    // Each set to its own value by a SET LOCAL in a fresh read-only transaction (transaction_*
    // settings must come before the transaction's first query).
    const { rows: current } = await c.query<{ name: string; v: string }>('SELECT lower(name) AS name, current_setting(name) AS v FROM pg_settings');
    const value = new Map(current.map((r) => [r.name, r.v]));
    for (const name of [...builtIn, ...planner]) {
      await c.query(`BEGIN READ ONLY; SET LOCAL "${name}" = ${lit(value.get(name)!)}; ROLLBACK`);
    }
  });

  test('PostgreSQL accepts every client-only encoding the gateway refuses (they are real escape hatches) and every readable one', async () => {
    const c = await connect();
    for (const enc of [...UNREADABLE_ENCODINGS, ...READABLE_ENCODINGS]) {
      await c.query('SELECT set_config($1, $2, false)', ['client_encoding', enc]);
      // Back to UTF8 before node-postgres reads text again.
      await c.query("SET client_encoding = 'UTF8'");
    }
    for (const enc of ['auto', 'utf16', 'utf8x', 'latin11']) {
      await assert.rejects(c.query('SELECT set_config($1, $2, false)', ['client_encoding', enc]), { code: '22023' });
    }
  });

  test('PostgreSQL 15 lifts read-only on RESET transaction_read_only, which the rules refuse', async () => {
    const c = await connect();
    await c.query('CREATE TEMP TABLE w (a int)');
    await c.query('SET default_transaction_read_only = on');
    await c.query('BEGIN');
    await c.query('RESET transaction_read_only');
    await c.query('INSERT INTO w VALUES (1)'); // no 25006: the transaction became read-write
    await c.query('ROLLBACK');
    assert.equal(classifyStatement('RESET transaction_read_only').kind, 'admin');
    // RESET ALL leaves it alone (GUC_NO_RESET_ALL), so RESET ALL stays a read.
    await c.query('BEGIN');
    await c.query('RESET ALL');
    const { rows } = await c.query<{ transaction_read_only: string }>('SHOW transaction_read_only');
    assert.equal(rows[0]!.transaction_read_only, 'on');
    await c.query('ROLLBACK');
  });

  test('`options` means the same to PostgreSQL as to parseStartupOptions', async () => {
    const options = '-c statement_timeout=5s --lock-timeout=7s -capplication_name=a\\ b\\\\c  -c search-path=app,\\ public';
    const parsed = parseStartupOptions(options);
    assert.ok(parsed.ok);
    const c = await connect({ options });
    for (const [name, value] of parsed.settings) {
      const { rows } = await c.query<{ v: string }>('SELECT current_setting($1) AS v', [name]);
      assert.equal(rows[0]!.v, value, name);
    }
    // A switch without "=" is refused by both.
    assert.equal(parseStartupOptions('-c statement_timeout').ok, false);
    await assert.rejects(connect({ options: '-c statement_timeout' }), /requires a value/);
  });
});
