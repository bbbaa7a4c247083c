// Transaction pooling when backends die (issue #18): a backend terminated under a busy session
// (pg_terminate_backend) and a PostgreSQL restart fail what was in flight with the server's
// error (or the gateway's 08006 when the server said nothing) and nothing else: the client
// sessions stay connected, idle ones never notice, the next transaction runs on a new backend,
// and the pool never holds more than its size. PostgreSQL 15, node-postgres.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

const SIZE = 3;
const APP = 'tx-pool-chaos';

let dir: string;
let pki: TestPki;
let cluster: PgCluster;
let gw: GatewayFixture;
let writer: string;

async function client(): Promise<pg.Client> {
  const c = new pg.Client({ host: 'localhost', port: gw.port, database: 'vectors', user: 'ignored', password: writer, application_name: APP, ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' } });
  await c.connect();
  return c;
}

const backendsOpen = async () => Number((await cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE application_name = '${APP}'`)).trim());

async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-tx-chaos-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  cluster = await startPgCluster({ pki });
  await cluster.psql(`CREATE TABLE chaos_items (id int PRIMARY KEY); ALTER TABLE chaos_items OWNER TO ${cluster.roles.rw.user};`);
  mkdirSync(path.join(dir, 'gw'));
  gw = await startGatewayFixture({
    dir: path.join(dir, 'gw'),
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    workers: 1,
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert }, pool: { mode: 'transaction', size: SIZE, wait_timeout: '5s' } },
    credentials: { read: cluster.roles.rw, write: cluster.roles.rw },
  });
  writer = await gw.token('writer@example.com', ['ml-writers']);
});

after(async () => {
  await gw?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('pg_terminate_backend of a busy backend fails that transaction with the server\'s error; the session and the others go on', async () => {
  const [a, b] = [await client(), await client()];
  try {
    await a.query('BEGIN');
    await a.query('INSERT INTO chaos_items VALUES (1)');
    const pid = (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    // Settled at once so the rejection is never unhandled while the test waits.
    const sleeping = a.query('SELECT pg_sleep(30)').then(() => null, (e: pg.DatabaseError) => e);
    await until('the sleep to start', async () => (await cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid} AND query LIKE 'SELECT pg_sleep%'`)).trim() === '1');
    // Another session keeps working through it all.
    const others = (async () => {
      for (let i = 0; i < 20; i++) assert.equal((await b.query('SELECT $1::int AS n', [i])).rows[0].n, i);
    })();
    await cluster.psql(`SELECT pg_terminate_backend(${pid})`);
    const err = await sleeping;
    assert.equal(err?.code, '57P01');
    assert.match(err.message, /terminating connection/);
    await others;
    // The transaction went with its backend; the session did not.
    const after = await a.query('SELECT count(*)::int AS n, pg_backend_pid() AS pid FROM chaos_items');
    assert.equal(after.rows[0].n, 0);
    assert.notEqual(after.rows[0].pid, pid);
    await a.query('INSERT INTO chaos_items VALUES (2)');
    assert.equal((await b.query('SELECT count(*)::int AS n FROM chaos_items WHERE id = 2')).rows[0].n, 1);
  } finally {
    await a.end();
    await b.end();
  }
  assert.ok((await backendsOpen()) <= SIZE);
});

test('a PostgreSQL restart: the busy session gets the error, the one idle in a transaction gets it at its next statement, idle ones never notice', async () => {
  const [idle, inTx, busy] = [await client(), await client(), await client()];
  try {
    assert.equal((await idle.query('SELECT 1 AS n')).rows[0].n, 1);
    await inTx.query('BEGIN');
    await inTx.query('INSERT INTO chaos_items VALUES (3)');
    const busyPid = (await busy.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    const sleeping = busy.query('SELECT pg_sleep(30)').then(() => null, (e: pg.DatabaseError) => e);
    await until('the sleep to start', async () => (await cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE application_name = '${APP}' AND query LIKE 'SELECT pg_sleep%'`)).trim() === '1');
    assert.ok(busyPid > 0);
    await cluster.restart();
    const err = await sleeping;
    assert.ok(err?.code === '57P01' || err?.code === '08006', String(err));
    // The server's FATAL came while nothing was asked: held back, it answers the next statement.
    await assert.rejects(inTx.query('INSERT INTO chaos_items VALUES (4)'), (e: pg.DatabaseError) => e.code === '57P01');
    // After the error each session runs on a fresh backend, outside any transaction.
    assert.equal((await inTx.query('SELECT count(*)::int AS n FROM chaos_items WHERE id IN (3, 4)')).rows[0].n, 0);
    assert.equal((await busy.query('SELECT 2 AS n')).rows[0].n, 2);
    assert.equal((await idle.query('SELECT 3 AS n')).rows[0].n, 3);
    for (let i = 0; i < 10; i++) await Promise.all([idle, inTx, busy].map((c) => c.query('SELECT pg_backend_pid()')));
  } finally {
    await Promise.all([idle, inTx, busy].map((c) => c.end().catch(() => {})));
  }
  await until('links at most the pool size', async () => (await backendsOpen()) <= SIZE);
  const m = await gw.handle.metrics.registry.metrics();
  assert.doesNotMatch(m, /vecgate_upstream_pool_wait_timeouts_total\{connection="vectors"\} [1-9]/);
});
