// Transaction pooling carries protocol-level prepared statements between backends (issue #18,
// native/pg/prepared-statements.h) against PostgreSQL 15, with the drivers that name every
// statement: node-postgres named queries, asyncpg (the classic victim of transaction pooling),
// psycopg with prepare_threshold 0 (its cache evicts with DEALLOCATE) and pgbench -M prepared.
// Nothing pins; every answer is the one the session's own statement gives; the backends
// prepare each distinct statement once, under the gateway's names.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { runPgbench, runPython } from '../harness/run-tool.js';

const SIZE = 2;
const APP = 'tx-prepared-test';

let dir: string;
let pki: TestPki;
let cluster: PgCluster;
let gw: GatewayFixture;
let writer: string;
let reader: string;

async function client(token = writer): Promise<pg.Client> {
  const c = new pg.Client({ host: 'localhost', port: gw.port, database: 'vectors', user: 'ignored', password: token, application_name: APP, ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' } });
  await c.connect();
  return c;
}

const pyEnv = (token: string): Record<string, string> => ({
  PGHOST: 'localhost',
  PGPORT: String(gw.port),
  PGDATABASE: 'vectors',
  PGUSER: 'me',
  PGPASSWORD: token,
  PGSSLMODE: 'verify-full',
  PGSSLROOTCERT: pki.caCert,
  PGAPPNAME: APP,
});

const backends = async () => Number((await cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE application_name = '${APP}'`)).trim());

async function metric(name: string, labels: string): Promise<number | null> {
  const text = await gw.handle.metrics.registry.metrics();
  const m = new RegExp(`^${name}\\{${labels}\\} ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-tx-prepared-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  cluster = await startPgCluster({ pki });
  await cluster.psql(`CREATE TABLE ps_items (id int PRIMARY KEY, v text); ALTER TABLE ps_items OWNER TO ${cluster.roles.rw.user};
    INSERT INTO ps_items SELECT g, 'item ' || g FROM generate_series(1, 100) g;`);
  mkdirSync(path.join(dir, 'gw'));
  gw = await startGatewayFixture({
    dir: path.join(dir, 'gw'),
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    workers: 1, // one worker holds the whole size: which backend serves is observable
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert }, pool: { mode: 'transaction', size: SIZE, wait_timeout: '5s', prepared_statements: 50 } },
    credentials: { read: cluster.roles.rw, write: cluster.roles.rw },
  });
  writer = await gw.token('writer@example.com', ['ml-writers']);
  reader = await gw.token('reader@example.com', ['ml-readers']);
});

after(async () => {
  await gw?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a named statement prepared on one backend runs on the other: prepared there by the gateway, the session never pinned', async () => {
  const a = await client();
  const holders = [await client(), await client()];
  try {
    const q = (n: number) => ({ name: 'by_id', text: 'SELECT v, pg_backend_pid() AS pid FROM ps_items WHERE id = $1', values: [n] });
    const pids: number[] = [];
    // A holder keeps one backend in a transaction, so a's statement runs on the other; the
    // next holder takes that one before the last lets go, so a moves to the other backend.
    await holders[0].query('BEGIN');
    for (let i = 1; i <= 4; i++) {
      const held = (await holders[(i - 1) % 2].query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      const r = await a.query(q(i));
      assert.equal(r.rows[0].v, `item ${i}`);
      assert.notEqual(r.rows[0].pid, held);
      pids.push(r.rows[0].pid as number);
      await holders[i % 2].query('BEGIN');
      await holders[(i - 1) % 2].query('COMMIT');
    }
    await holders[0].query('COMMIT');
    assert.equal(new Set(pids).size, SIZE, `backends: ${pids.join(', ')}`);
    assert.notEqual(pids[0], pids[1]);
    // The backends prepared it under the gateway's name, once each (pg_prepared_statements
    // is per backend: read through the gateway, on each); the client's name is nowhere.
    for (let i = 0; i < SIZE; i++) {
      await holders[i].query('BEGIN');
      const rows = (await holders[i].query(`SELECT name FROM pg_prepared_statements WHERE statement LIKE 'SELECT v, pg_backend_pid()%'`)).rows;
      assert.equal(rows.length, 1, JSON.stringify(rows));
      assert.match(rows[0].name as string, /^vecgate_\d+$/);
    }
    for (const h of holders) await h.query('COMMIT');
  } finally {
    await a.end();
    for (const h of holders) await h.end();
  }
  assert.equal(await metric('vecgate_upstream_pool_pins_total', 'connection="vectors",reason="named prepared statement"'), null);
});

test('state matrix: names behave as in PostgreSQL (exists, does not exist, DEALLOCATE, DISCARD ALL, a failed Parse), per session', async () => {
  const a = await client();
  const b = await client();
  try {
    await a.query({ name: 's', text: 'SELECT 1 AS n' });
    // Another session's name is its own: the same name, another statement.
    assert.equal((await b.query({ name: 's', text: "SELECT 'b' AS n" })).rows[0].n, 'b');
    assert.equal((await a.query({ name: 's', text: 'SELECT 1 AS n' })).rows[0].n, 1);
    const c = await client();
    try {
      await c.query({ name: 'dup', text: 'SELECT 1' });
      await c.query('DEALLOCATE dup');
      // Gone: the same name may be prepared again, with another statement.
      assert.equal((await c.query({ name: 'dup2', text: 'SELECT 2 AS n' })).rows[0].n, 2);
      await assert.rejects(c.query('DEALLOCATE never_prepared'), (e: pg.DatabaseError) => e.code === '26000' && /"never_prepared" does not exist/.test(e.message));
      await c.query('DEALLOCATE ALL');
      // A Parse PostgreSQL fails leaves no name behind.
      await assert.rejects(c.query({ name: 'broken', text: 'SELEC 1' }), (e: pg.DatabaseError) => e.code === '42601');
      await c.query('BEGIN');
      await assert.rejects(c.query('SELECT 1/0'), /division by zero/);
      await assert.rejects(c.query('DEALLOCATE ALL'), (e: pg.DatabaseError) => e.code === '25P02');
      await c.query('ROLLBACK');
      await c.query('DISCARD ALL');
    } finally {
      await c.end();
    }
  } finally {
    await a.end();
    await b.end();
  }
});

test('a request the gateway answers without the server (DEALLOCATE) gives its backend back at once; the session ending then closes nobody\'s backend', async () => {
  const [a, b] = [await client(), await client()];
  try {
    await b.query('BEGIN');
    const held = (await b.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    await a.query({ name: 'x', text: 'SELECT 1' }); // on the other backend
    const open = await backends();
    assert.equal(open, SIZE);
    await a.query('DEALLOCATE x'); // attached to the other backend, answered by the gateway, released
    await a.end();
    // b's backend and the other one are both still open: a's end closed neither.
    assert.equal((await b.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, held);
    await b.query('COMMIT');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await backends(), open);
  } finally {
    await a.end().catch(() => {});
    await b.end();
  }
});

test('asyncpg: prepared statements, fetch with parameters, transactions, executemany over 2 backends, 6 connections', async () => {
  const script = `
import asyncio, asyncpg, os, sys
async def session(i):
    conn = await asyncpg.connect(server_settings={'application_name': os.environ['PGAPPNAME']})
    try:
        stmt = await conn.prepare('SELECT v FROM ps_items WHERE id = $1')
        for k in range(1, 21):
            n = (i * 20 + k) % 100 + 1
            assert await stmt.fetchval(n) == 'item %d' % n
            assert await conn.fetchval('SELECT $1::int * 2', k) == k * 2
            if k % 5 == 0:
                async with conn.transaction():
                    assert await conn.fetchval('SELECT count(*) FROM ps_items WHERE id <= $1', n) == n
                    await conn.execute('SELECT pg_sleep(0.01)')
        await conn.executemany('SELECT $1::int, $2::text', [(j, str(j)) for j in range(10)])
        rows = await conn.fetch('SELECT id, v FROM ps_items WHERE id = ANY($1::int[]) ORDER BY id', [3, 4, 5])
        assert [r['v'] for r in rows] == ['item 3', 'item 4', 'item 5'], rows
    finally:
        await conn.close()
async def main():
    await asyncio.gather(*(session(i) for i in range(6)))
    print('ok')
asyncio.run(main())
`;
  // asyncpg reads libpq's variables (PGSSLMODE verify-full with PGSSLROOTCERT).
  const r = await runPython(script, pyEnv(writer), 90_000);
  assert.equal(r.timedOut, false, r.out);
  assert.equal(r.status, 0, r.out);
  assert.equal(r.stdout.trim(), 'ok');
  assert.equal(await metric('vecgate_upstream_pool_pins_total', 'connection="vectors",reason="named prepared statement"'), null);
});

test('psycopg, prepare_threshold 0 and a cache of 2: every statement prepared, evicted with DEALLOCATE, answers right', async () => {
  const script = `
import psycopg, os
with psycopg.connect(prepare_threshold=0) as conn:
    conn.prepared_max = 2
    for k in range(1, 31):
        q = ['SELECT v FROM ps_items WHERE id = %s', 'SELECT %s::int + 1', 'SELECT length(%s::text)'][k % 3]
        got = conn.execute(q, (k,)).fetchone()[0]
        want = ['item %d' % k, k + 1, len(str(k))][k % 3]
        assert got == want, (q, got, want)
        if k % 7 == 0:
            with conn.transaction():
                conn.execute('SELECT %s::int', (k,))
print('ok')
`;
  const r = await runPython(script, pyEnv(writer), 60_000);
  assert.equal(r.timedOut, false, r.out);
  assert.equal(r.status, 0, r.out);
  assert.equal(r.stdout.trim(), 'ok');
});

test('pgbench -M prepared, 6 clients over 2 backends: no errors, no session pinned', async () => {
  const init = await runPgbench(['-i', '-s', '1', '-q', `host=${cluster.socketDir} port=${cluster.port} dbname=vectors user=${cluster.superuser}`]);
  assert.equal(init.status, 0, init.out);
  await cluster.psql(`GRANT SELECT, UPDATE, INSERT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO ${cluster.roles.rw.user}`);
  const dsn = `host=localhost port=${gw.port} dbname=vectors user=me sslmode=verify-full sslrootcert=${pki.caCert} application_name=${APP}`;
  const ro = await runPgbench(['-n', '-S', '-M', 'prepared', '-c', '6', '-j', '2', '-t', '100', dsn], writer);
  assert.equal(ro.status, 0, ro.out);
  assert.match(ro.out, /number of transactions actually processed: 600\/600/);
  // TPC-B-like: BEGIN ... END with five prepared statements per transaction. One thread per
  // client: pgbench prepares with blocking calls, so a thread whose second client waits for a
  // backend while its first holds one in a transaction stalls itself, through any pooler.
  const rw = await runPgbench(['-n', '-M', 'prepared', '-c', '4', '-j', '4', '-t', '25', dsn], writer);
  assert.equal(rw.status, 0, rw.out);
  assert.match(rw.out, /number of transactions actually processed: 100\/100/);
  assert.equal(await metric('vecgate_upstream_pool_pins_total', 'connection="vectors",reason="named prepared statement"'), null);
});

test('read sessions: a named SELECT runs on any backend, a named write is refused at Parse and leaves no name', async () => {
  const r = await client(reader);
  try {
    for (let i = 1; i <= 4; i++) assert.equal((await r.query({ name: 'read_one', text: 'SELECT v FROM ps_items WHERE id = $1', values: [i] })).rows[0].v, `item ${i}`);
    await assert.rejects(r.query({ name: 'write_one', text: 'UPDATE ps_items SET v = $1 WHERE id = 1', values: ['x'] }), (e: pg.DatabaseError) => e.code === '42501');
    await assert.rejects(r.query('DEALLOCATE write_one'), (e: pg.DatabaseError) => e.code === '26000');
  } finally {
    await r.end();
  }
  assert.equal((await cluster.psql(`SELECT v FROM ps_items WHERE id = 1`)).trim(), 'item 1');
});
