// PostgreSQL fidelity through the gateway (issue #16), against a real PostgreSQL 15 with TLS
// and SCRAM, probed the way attackers and drivers do: separate TLS writes with TCP_NODELAY,
// pipelining, Flush without Sync, Terminate followed by more, startup parameters and options.
// The read credential here CAN write (it is the rw role), so a statement that gets past the
// gateway's check would really run: only the gateway, and PostgreSQL's read-only mode that the
// gateway sets for read sessions, stand in the way.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { runPgbench, runPython } from '../harness/run-tool.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import {
  bindMessage,
  collect,
  connectPlain,
  describeMessage,
  executeMessage,
  flushMessage,
  functionCallMessage,
  parseMessage,
  passwordMessage,
  queryMessage,
  RawPgSession,
  syncMessage,
  terminateMessage,
  type BackendMessage,
} from '../harness/pg-wire.js';

let dir: string;
let pki: TestPki;
let ca: Buffer;
let cluster: PgCluster;
let gw: GatewayFixture;
let reader: string;
let writer: string;

const types = (ms: BackendMessage[]) => ms.map((m) => m.type).join('');
const errorOf = (ms: BackendMessage[]) => ms.find((m) => m.type === 'E')?.fields;

async function rows(sql: string): Promise<string> {
  return (await cluster.psql(sql)).trim();
}

/** One simple Query on a logged-in raw session: every message up to ReadyForQuery. */
async function simple(s: RawPgSession, sql: string | Buffer): Promise<BackendMessage[]> {
  s.send(queryMessage(sql));
  return s.until('Z');
}

async function login(token: string, params: Record<string, string> = {}, afterPassword?: Buffer) {
  return RawPgSession.login(gw.port, ca, token, params, afterPassword);
}

/** The FATAL a startup gets instead of a session (null when the session opened). */
async function startupRefusal(token: string, params: Record<string, string>): Promise<Record<string, string> | null> {
  const s = await RawPgSession.open(gw.port, ca, { user: 'me', database: 'vectors', ...params });
  try {
    const auth = await s.next();
    if (auth.type === 'E') return auth.fields!;
    s.send(passwordMessage(token));
    for (;;) {
      const m = await s.next();
      if (m.type === 'E') return m.fields!;
      if (m.type === 'Z') return null;
    }
  } finally {
    s.end();
  }
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-fidelity-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  ca = readFileSync(pki.caCert);
  cluster = await startPgCluster({ pki });
  await cluster.psql(`
    CREATE TABLE t (id int PRIMARY KEY, v text);
    ALTER TABLE t OWNER TO vec_rw;
    INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 10) g;
    CREATE FUNCTION my_writer() RETURNS int LANGUAGE sql AS $$ INSERT INTO t VALUES (1000, 'written by a function') RETURNING 1 $$;
    ALTER FUNCTION my_writer() OWNER TO vec_rw;
    CREATE INDEX t_brin ON t USING brin (id);
    ALTER INDEX t_brin OWNER TO vec_rw;
  `);
  gw = await startGatewayFixture({
    dir,
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert } },
    // The read credential can write: only the gateway and PostgreSQL's read-only mode stop writes.
    credentials: { read: cluster.roles.rw, write: cluster.roles.rw },
  });
  reader = await gw.token('reader@example.com', ['ml-readers']);
  writer = await gw.token('writer@example.com', ['ml-writers']);
});

after(async () => {
  await gw?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('nothing reaches the upstream except through the statement check', () => {
  test('a write pipelined after the password, before AuthenticationOk, is checked like any other (16 tries)', async () => {
    for (let i = 0; i < 16; i++) {
      const { session, startup } = await login(reader, {}, queryMessage(`CREATE TABLE early_${i} (x int)`));
      assert.equal(startup.at(-1)!.type, 'Z');
      const answer = await session.until('Z');
      assert.equal(errorOf(answer)?.C, '42501', `try ${i}: ${JSON.stringify(answer)}`);
      session.end();
    }
    assert.equal(await rows(`SELECT count(*) FROM pg_class WHERE relname LIKE 'early_%'`), '0');
  });

  test('a read pipelined after the password runs once the session is up', async () => {
    const { session } = await login(reader, {}, queryMessage('SELECT 41 + 1'));
    const answer = await session.until('Z');
    assert.equal(types(answer), 'TDCZ');
    assert.equal(answer[1]!.body.subarray(6).toString(), '42');
    session.end();
  });

  test('nothing after Terminate runs, in the same write or a later one; the gateway closes the client', async () => {
    for (const token of [reader, writer]) {
      const { session } = await login(token);
      session.send(Buffer.concat([terminateMessage(), queryMessage(`INSERT INTO t VALUES (2001, 'after terminate')`)]));
      const end = await session.waitClosed(5000);
      assert.equal(end.closed, true, 'closed after Terminate');
      assert.deepEqual(end.messages.map((m) => m.type), []);

      const second = (await login(token)).session;
      second.send(terminateMessage());
      await new Promise((r) => setTimeout(r, 50));
      if (!second.closed) second.send(queryMessage(`INSERT INTO t VALUES (2002, 'after terminate, later write')`));
      assert.equal((await second.waitClosed(5000)).closed, true);
    }
    assert.equal(await rows('SELECT count(*) FROM t WHERE id IN (2001, 2002)'), '0');
  });

  test('Terminate during COPY FROM STDIN: the backend ends too (psycopg closing after a refused copy)', async () => {
    const { session } = await login(writer, { application_name: 'copy-terminate' });
    session.send(queryMessage('COPY t FROM STDIN'));
    assert.equal((await session.next()).type, 'G');
    session.send(terminateMessage());
    assert.equal((await session.waitClosed(5000)).closed, true);
    let left = '1';
    for (let i = 0; i < 50 && left !== '0'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      // The backend may be parked for reuse (idle); it must not be left inside the COPY.
      left = await rows(`SELECT count(*) FROM pg_stat_activity WHERE application_name = 'copy-terminate' AND state <> 'idle'`);
    }
    assert.equal(left, '0', 'no backend left waiting in COPY');
    assert.equal(await rows(`SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'COPY t FROM STDIN%' AND state = 'active'`), '0');
  });

  test('Terminate after a query in flight: the answer arrives, then the connection closes', async () => {
    const { session } = await login(writer);
    session.send(Buffer.concat([queryMessage('SELECT pg_sleep(0.2), 7'), terminateMessage()]));
    const end = await session.waitClosed(5000);
    assert.equal(end.closed, true);
    assert.equal(types(end.messages), 'TDCZ');
  });
});

describe('cancel', () => {
  test('the cancel connection closes once the cancel reached the server, so it cannot hit the next statement', async () => {
    for (let i = 0; i < 10; i++) {
      const { session, startup } = await login(writer);
      const key = startup.find((m) => m.type === 'K')!.body;
      const cancel = Buffer.alloc(16);
      cancel.writeInt32BE(16, 0);
      cancel.writeInt32BE(80877102, 4);
      key.copy(cancel, 8, 0, 8);
      const sock = await connectPlain(gw.port);
      sock.write(cancel);
      const got = await collect(sock, 5000);
      assert.equal(got.closed, true);
      // Idle when the cancel came: PostgreSQL ignores it, and so must the next statement.
      const r = await simple(session, 'SELECT pg_sleep(0.05)');
      assert.equal(errorOf(r), undefined, `try ${i}: ${JSON.stringify(errorOf(r))}`);
      session.end();
    }
  });
});

describe('refusals behave like PostgreSQL errors', () => {
  test('a refused Parse is answered at Flush, without Sync (asyncpg, postgres.js); Sync then gives ReadyForQuery', async () => {
    const { session } = await login(reader);
    session.send(Buffer.concat([parseMessage('', 'DELETE FROM t WHERE id = 1'), describeMessage('S', ''), flushMessage()]));
    const err = await session.next(3000);
    assert.equal(err.type, 'E');
    assert.equal(err.fields!.C, '42501');
    assert.match(err.fields!.M!, /read access.*DELETE/);
    session.send(syncMessage());
    const z = await session.next();
    assert.equal(z.type, 'Z');
    assert.equal(z.text, 'I');
    assert.equal(types(await simple(session, 'SELECT 1')), 'TDCZ', 'the session goes on');
    session.end();
    assert.equal(await rows('SELECT count(*) FROM t WHERE id = 1'), '1');
  });

  test('a refusal inside an extended batch: earlier messages answered, later ones skipped to Sync', async () => {
    const { session } = await login(reader);
    session.send(
      Buffer.concat([
        parseMessage('ok', 'SELECT $1::int * 2', [23]),
        bindMessage('', 'ok', ['21']),
        executeMessage(),
        parseMessage('', 'UPDATE t SET v = $1', [25]),
        bindMessage('', '', ['x']),
        executeMessage(),
        parseMessage('', 'SELECT 1'),
        syncMessage(),
      ]),
    );
    const answer = await session.until('Z');
    assert.equal(types(answer), '12DCEZ');
    assert.equal(answer[2]!.body.subarray(6).toString(), '42');
    assert.equal(errorOf(answer)!.C, '42501');
    session.end();
  });

  test('a refused statement inside a transaction aborts it, as an error does in PostgreSQL', async () => {
    const { session } = await login(reader);
    assert.equal((await simple(session, 'BEGIN')).at(-1)!.text, 'T');
    const refused = await simple(session, `DELETE FROM t WHERE id = 2`);
    assert.equal(errorOf(refused)!.C, '42501');
    assert.equal(refused.at(-1)!.text, 'E', 'transaction status: failed');
    const next = await simple(session, 'SELECT 1');
    assert.equal(errorOf(next)!.C, '25P02');
    const commit = await simple(session, 'COMMIT');
    assert.equal(commit.find((m) => m.type === 'C')!.text, 'ROLLBACK');
    assert.equal(commit.at(-1)!.text, 'I');
    session.end();
  });

  test('a refused fast-path function call is an error that keeps the session', async () => {
    const { session } = await login(reader);
    session.send(functionCallMessage(1, ['x']));
    const answer = await session.until('Z');
    assert.equal(types(answer), 'EZ');
    assert.equal(errorOf(answer)!.C, '42501');
    assert.equal(types(await simple(session, 'SELECT 1')), 'TDCZ');
    session.end();
  });
});

describe("PostgreSQL's read-only mode is the second lock", () => {
  test('read sessions start with default_transaction_read_only on; a writing function fails in PostgreSQL (25006)', async () => {
    const { session } = await login(reader);
    const show = await simple(session, 'SHOW default_transaction_read_only');
    assert.equal(show[1]!.body.subarray(6).toString(), 'on');
    const w = await simple(session, 'SELECT my_writer()');
    assert.equal(errorOf(w)?.C, '25006', JSON.stringify(w));
    for (const sql of ['SET default_transaction_read_only = off', 'SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', 'BEGIN READ WRITE', "SELECT set_config('default_transaction_read_only', 'off', false)", 'SET transaction_read_only = off']) {
      const r = await simple(session, sql);
      assert.equal(errorOf(r)?.C, '42501', sql);
      if (r.at(-1)!.text !== 'I') await simple(session, 'ROLLBACK');
    }
    session.end();
    assert.equal(await rows('SELECT count(*) FROM t WHERE id = 1000'), '0');
  });

  test('brin_summarize_new_values (which read-only mode does not stop) is refused', async () => {
    const { session } = await login(reader);
    const r = await simple(session, "SELECT brin_summarize_new_values('t_brin')");
    assert.equal(errorOf(r)?.C, '42501');
    session.end();
  });

  test('writers keep their session settings', async () => {
    const { session } = await login(writer);
    const show = await simple(session, 'SHOW default_transaction_read_only');
    assert.equal(show[1]!.body.subarray(6).toString(), 'off');
    session.end();
  });
});

describe('startup parameters and options', () => {
  test('parameters PostgreSQL accepts are forwarded, not dropped', async () => {
    const { session } = await login(writer, { statement_timeout: '1234', lock_timeout: '2s', idle_in_transaction_session_timeout: '60000' });
    for (const [name, want] of [['statement_timeout', '1234ms'], ['lock_timeout', '2s'], ['idle_in_transaction_session_timeout', '1min']]) {
      const r = await simple(session, `SHOW ${name}`);
      assert.equal(r[1]!.body.subarray(6).toString(), want, name);
    }
    session.end();
  });

  test('options -c switches are forwarded for what the rules allow', async () => {
    const { session } = await login(reader, { options: '-c statement_timeout=4321 --lock_timeout=3s' });
    assert.equal((await simple(session, 'SHOW statement_timeout'))[1]!.body.subarray(6).toString(), '4321ms');
    assert.equal((await simple(session, 'SHOW lock_timeout'))[1]!.body.subarray(6).toString(), '3s');
    session.end();
  });

  test('application_name stays empty when the client sends none, as with PostgreSQL', async () => {
    const { session } = await login(writer);
    const r = await simple(session, 'SHOW application_name');
    assert.equal(r[1]!.body.subarray(6).toString(), '');
    session.end();
  });

  test('settings a read session may not change are refused by name at startup, in options too', async () => {
    const cases: Record<string, string>[] = [
      { options: '-c standard_conforming_strings=off' },
      { standard_conforming_strings: 'off' },
      { options: '-c default_transaction_read_only=off' },
      { default_transaction_read_only: 'off' },
      { client_encoding: 'SJIS' },
      { options: '-c client_encoding=BIG5' },
      { role: 'postgres' },
    ];
    for (const params of cases) {
      const f = await startupRefusal(reader, params);
      assert.ok(f, `refused: ${JSON.stringify(params)}`);
      assert.equal(f!.S, 'FATAL');
      const name = (Object.keys(params)[0] === 'options' ? params.options!.split(/[ =]/)[1] : Object.keys(params)[0])!;
      assert.ok(f!.M!.includes(name), `${f!.M} names ${name}`);
    }
    // Nobody picks the role the session runs as: the gateway does.
    const w = await startupRefusal(writer, { role: 'postgres' });
    assert.ok(w && w.M!.includes('role'));
  });

  test('a first packet that is no startup packet is closed without a word, as PostgreSQL does', async () => {
    const sock = await connectPlain(gw.port);
    sock.write(terminateMessage());
    const got = await collect(sock, 3000);
    assert.equal(got.closed, true);
    assert.equal(got.data.length, 0);
  });
});

describe('client encodings the gateway cannot read are refused for read sessions', () => {
  test('SJIS, BIG5, GBK, UHC, GB18030, JOHAB, SHIFT_JIS_2004 and aliases: at startup, by SET, SET NAMES and set_config', async () => {
    const { session } = await login(reader);
    for (const enc of ['SJIS', 'BIG5', 'GBK', 'UHC', 'GB18030', 'JOHAB', 'SHIFT_JIS_2004', 'win932', 'Shift-JIS', 'windows936', 'WIN949', 'mskanji']) {
      for (const sql of [`SET client_encoding = '${enc}'`, `SET NAMES '${enc}'`, `SELECT set_config('client_encoding', '${enc}', false)`]) {
        const r = await simple(session, sql);
        assert.equal(errorOf(r)?.C, '42501', `${sql}: ${JSON.stringify(errorOf(r))}`);
      }
      assert.ok(await startupRefusal(reader, { client_encoding: enc }), `startup client_encoding=${enc}`);
    }
    // The attack of the issue: in SJIS 0x95 0x5c is one character, to a UTF-8 reader 0x5c escapes the quote.
    const attack = Buffer.concat([Buffer.from("SELECT E'"), Buffer.from([0x95, 0x5c]), Buffer.from("'; DELETE FROM t WHERE id = 3; --'")]);
    const r = await simple(session, attack);
    assert.ok(errorOf(r), 'refused or failed');
    session.end();
    assert.equal(await rows('SELECT count(*) FROM t WHERE id = 3'), '1');
  });

  test('server-safe encodings stay available to readers (LATIN1, EUC_JP, WIN1252)', async () => {
    const { session } = await login(reader, { client_encoding: 'LATIN1' });
    for (const enc of ['EUC_JP', 'WIN1252', 'UTF8']) {
      const r = await simple(session, `SET client_encoding = '${enc}'`);
      assert.equal(errorOf(r), undefined, enc);
    }
    session.end();
  });

  test('writers may use any encoding PostgreSQL offers', async () => {
    const { session } = await login(writer, { client_encoding: 'SJIS' });
    const r = await simple(session, 'SHOW client_encoding');
    assert.equal(r[1]!.body.subarray(6).toString(), 'SJIS');
    session.end();
  });
});

describe('read access allows what a PostgreSQL read-only transaction allows', () => {
  test("asyncpg's pool reset, LISTEN/UNLISTEN, set_config of a plain setting, advisory locks", async () => {
    const { session } = await login(reader);
    for (const sql of [
      'SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;',
      'LISTEN jobs',
      'UNLISTEN jobs',
      "SELECT set_config('jit', 'off', false)",
      'SELECT pg_advisory_lock(42), pg_advisory_unlock(42)',
      'PREPARE q AS SELECT $1::int + 1',
      'EXECUTE q(41)',
      'DEALLOCATE q',
    ]) {
      const r = await simple(session, sql);
      assert.equal(errorOf(r), undefined, `${sql}: ${JSON.stringify(errorOf(r))}`);
    }
    session.end();
  });

  test('a typo gets the syntax error PostgreSQL gives (42601, its message and position)', async () => {
    const { session } = await login(reader);
    const r = await simple(session, 'SELEC 1');
    const f = errorOf(r)!;
    assert.equal(f.C, '42601');
    assert.equal(f.M, 'syntax error at or near "SELEC"');
    assert.equal(f.P, '1');
    session.end();
  });
});

describe('pgbench through the gateway in all three protocol modes', () => {
  test('select-only as a reader and TPC-B-like as a writer, simple / extended / prepared', async () => {
    const init = await runPgbench(['-i', '-s', '1', '-q', `host=${cluster.socketDir} port=${cluster.port} dbname=vectors user=${cluster.superuser}`]);
    assert.equal(init.status, 0, init.stderr);
    await cluster.psql('ALTER TABLE pgbench_accounts OWNER TO vec_rw; ALTER TABLE pgbench_branches OWNER TO vec_rw; ALTER TABLE pgbench_tellers OWNER TO vec_rw; ALTER TABLE pgbench_history OWNER TO vec_rw;');
    const dsn = `host=localhost port=${gw.port} dbname=vectors user=me sslmode=verify-full sslrootcert=${pki.caCert}`;
    for (const mode of ['simple', 'extended', 'prepared']) {
      const ro = await runPgbench(['-n', '-S', '-M', mode, '-c', '2', '-t', '50', dsn], reader);
      assert.equal(ro.status, 0, `${mode} -S: ${ro.stderr}`);
      assert.match(ro.stdout, /number of transactions actually processed: 100\/100/);
      const rw = await runPgbench(['-n', '-M', mode, '-c', '2', '-t', '20', dsn], writer);
      assert.equal(rw.status, 0, `${mode} tpcb: ${rw.stderr}`);
      assert.match(rw.stdout, /number of transactions actually processed: 40\/40/);
      // A reader running the writing script is refused, not hung.
      const denied = await runPgbench(['-n', '-M', mode, '-c', '1', '-t', '1', dsn], reader);
      assert.notEqual(denied.status, 0);
      assert.match(denied.stderr, /read access/);
    }
  });
});

describe('large results reach every driver', () => {
  const big = "select repeat('x', 2750) from generate_series(1, 400)"; // ~1.1 MB of DataRows

  test('TLS records to a PostgreSQL client carry at most 8 KB, as PostgreSQL\'s own do', async () => {
    // A relay between client and gateway reads the TLS record headers the gateway writes.
    const sizes: number[] = [];
    const relay = net.createServer((c) => {
      const up = net.connect({ host: '127.0.0.1', port: gw.port });
      c.pipe(up);
      let pending = Buffer.alloc(0);
      let sawSslAnswer = false;
      up.on('data', (d: Buffer) => {
        c.write(d);
        pending = Buffer.concat([pending, d]);
        if (!sawSslAnswer && pending.length > 0) {
          pending = pending.subarray(1); // the 'S' answering SSLRequest
          sawSslAnswer = true;
        }
        while (pending.length >= 5 && pending.length >= 5 + pending.readUInt16BE(3)) {
          if (pending[0] === 23) sizes.push(pending.readUInt16BE(3)); // application_data
          pending = pending.subarray(5 + pending.readUInt16BE(3));
        }
      });
      up.on('end', () => c.end());
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    try {
      const { session } = await RawPgSession.login((relay.address() as net.AddressInfo).port, ca, reader);
      const answer = await simple(session, big);
      assert.equal(answer.filter((m) => m.type === 'D').length, 400);
      session.end();
    } finally {
      relay.close();
    }
    const largest = Math.max(...sizes);
    // 8 KB of plaintext plus the record's own overhead (TLS 1.3: content type and AEAD tag).
    assert.ok(largest > 8192 && largest <= 8192 + 64, `largest record ${largest} bytes of ${sizes.length}`);
  });

  test('psycopg (non-blocking libpq waiting with select()) receives the end of large results', async () => {
    // Issue #16 B3: with 16 KB records, libpq (which reads with 8 KB free) left the rest of a
    // record in OpenSSL's buffer, where psycopg's select() on the socket never saw it.
    const script = `
import psycopg
for i in range(6):
    with psycopg.connect() as c:
        assert len(c.execute(${JSON.stringify(big)}).fetchall()) == 400
        with c.cursor().copy("copy (select repeat('x', 2750) from generate_series(1, 20)) to stdout") as cp:
            assert sum(len(b) for b in cp) == 20 * 2751
print("ok")
`;
    const r = await runPython(script, {
      PGHOST: 'localhost',
      PGPORT: String(gw.port),
      PGDATABASE: 'vectors',
      PGUSER: 'me',
      PGPASSWORD: reader,
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: pki.caCert,
    }, 30_000);
    assert.equal(r.timedOut, false, 'psycopg waited forever for the end of a result');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'ok');
  });
});
