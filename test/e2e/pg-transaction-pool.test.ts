// upstream.pool.mode: transaction against PostgreSQL 15 (issue #18): many client sessions
// share few upstream backends, each holding one only inside a transaction; session state
// (SET, SQL PREPARE, ...) pins a session to its backend and never reaches
// another client; a session that finds every backend busy waits, then gets 53300. Backends
// are identified by pg_backend_pid() through the gateway and counted in pg_stat_activity.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { runPgbench } from '../harness/run-tool.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

const SIZE = 2;
const APP = 'tx-pool-test';

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

const backends = async () => Number((await cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE application_name = '${APP}'`)).trim());

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-tx-pool-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  cluster = await startPgCluster({ pki });
  await cluster.psql(`CREATE SCHEMA pinned_schema; GRANT USAGE ON SCHEMA pinned_schema TO ${cluster.roles.rw.user};
    CREATE TABLE tx_items (id int PRIMARY KEY, v text); ALTER TABLE tx_items OWNER TO ${cluster.roles.rw.user};`);
  mkdirSync(path.join(dir, 'gw'));
  mkdirSync(path.join(dir, 'gw2'));
  gw = await startGatewayFixture({
    dir: path.join(dir, 'gw'),
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    workers: 1, // one worker holds the whole size: the counts are exact
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert }, pool: { mode: 'transaction', size: SIZE, wait_timeout: '2s' } },
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

test(`eight sessions, ${SIZE} backends: every query answered right, never more than ${SIZE} backends`, async () => {
  const clients = await Promise.all(Array.from({ length: 8 }, () => client()));
  try {
    const pids = new Set<number>();
    let most = 0;
    await Promise.all(
      clients.map(async (c, i) => {
        for (let k = 0; k < 15; k++) {
          // Extended protocol with an unnamed statement (node-postgres with parameters).
          const r = await c.query('SELECT pg_backend_pid() AS pid, $1::int * 2 AS n', [i * 100 + k]);
          assert.equal(r.rows[0].n, (i * 100 + k) * 2);
          pids.add(r.rows[0].pid as number);
          const simple = await c.query(`SELECT ${i} AS i`);
          assert.equal(simple.rows[0].i, i);
        }
        most = Math.max(most, await backends());
      }),
    );
    assert.ok(pids.size <= SIZE, `backends seen: ${[...pids].join(', ')}`);
    assert.ok(most <= SIZE, `backends open at once: ${most}`);
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
});

test('a transaction keeps its backend from BEGIN to COMMIT while other sessions run', async () => {
  const [a, b] = [await client(), await client()];
  try {
    await a.query('BEGIN');
    const first = (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await a.query('INSERT INTO tx_items VALUES (1, $1)', ['in a transaction']);
    for (let i = 0; i < 5; i++) await b.query('SELECT 1');
    assert.equal((await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, first);
    // Not visible to the other session until COMMIT: it is one server transaction.
    assert.equal((await b.query('SELECT count(*)::int AS n FROM tx_items WHERE id = 1')).rows[0].n, 0);
    await a.query('COMMIT');
    assert.equal((await b.query('SELECT count(*)::int AS n FROM tx_items WHERE id = 1')).rows[0].n, 1);
    // A failed transaction keeps it too, until ROLLBACK.
    await a.query('BEGIN');
    await assert.rejects(a.query('SELECT 1/0'), /division by zero/);
    await assert.rejects(a.query('SELECT 1'), /current transaction is aborted/);
    await a.query('ROLLBACK');
    assert.equal((await a.query('SELECT 2 AS x')).rows[0].x, 2);
  } finally {
    await a.end();
    await b.end();
  }
});

test('session state pins the session to its backend and never reaches another session', async () => {
  const a = await client();
  const b = await client();
  try {
    await a.query('SET search_path = pinned_schema');
    const pidA = (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    for (let i = 0; i < 5; i++) {
      assert.equal((await a.query('SHOW search_path')).rows[0].search_path, 'pinned_schema');
      assert.equal((await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, pidA);
      const other = await b.query('SELECT current_setting($1) AS s, pg_backend_pid() AS pid', ['search_path']);
      assert.equal(other.rows[0].s, '"$user", public');
      assert.notEqual(other.rows[0].pid, pidA);
    }
    // A named prepared statement (protocol level) does not pin: it moves with the session
    // (test/e2e/pg-prepared-statements.test.ts), and works.
    const q = { name: 'by_id', text: 'SELECT $1::int + 1 AS n', values: [41] };
    assert.equal((await b.query(q)).rows[0].n, 42);
    assert.equal((await b.query({ ...q, values: [1] })).rows[0].n, 2);
  } finally {
    await a.end();
    await b.end();
  }
  // The pinned backends carried session state: they are closed, not handed to anyone.
  for (let i = 0; i < 50 && (await backends()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
  const c = await client();
  try {
    assert.equal((await c.query('SHOW search_path')).rows[0].search_path, '"$user", public');
  } finally {
    await c.end();
  }
});

test(`every backend pinned: the next session waits, then gets 53300 naming the limit`, async () => {
  const pinned = await Promise.all(Array.from({ length: SIZE }, () => client()));
  try {
    for (const p of pinned) await p.query('SET statement_timeout = 60000');
    const started = Date.now();
    await assert.rejects(client(), (err: Error & { code?: string }) => {
      assert.equal(err.code, '53300');
      assert.match(err.message, /upstream connections? .* stayed busy .*upstream\.pool\.size 2/);
      return true;
    });
    assert.ok(Date.now() - started >= 1900, 'it waited for wait_timeout');
  } finally {
    await Promise.all(pinned.map((p) => p.end().catch(() => {})));
  }
  // The backends are free again: sessions get them.
  const c = await client();
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
  await c.end();
});

test('read sessions in transaction mode: writes still refused, reads answered', async () => {
  const r = await client(reader);
  try {
    await assert.rejects(r.query('DELETE FROM tx_items'), (err: Error & { code?: string }) => err.code === '42501');
    assert.equal((await r.query('SELECT count(*)::int AS n FROM tx_items')).rows[0].n, 1);
    assert.equal((await r.query('SHOW default_transaction_read_only')).rows[0].default_transaction_read_only, 'on');
  } finally {
    await r.end();
  }
  // A writer sharing the same upstream role does not get the reader's read-only backend.
  const w = await client();
  try {
    assert.equal((await w.query('SHOW default_transaction_read_only')).rows[0].default_transaction_read_only, 'off');
  } finally {
    await w.end();
  }
});

test('pgbench, simple and extended protocol, 6 clients over 2 backends: no errors', async () => {
  const init = await runPgbench(['-i', '-s', '1', '-q', `host=${cluster.socketDir} port=${cluster.port} dbname=vectors user=${cluster.superuser}`]);
  assert.equal(init.status, 0, init.out);
  await cluster.psql(`GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers TO ${cluster.roles.rw.user}`);
  const dsn = `host=localhost port=${gw.port} dbname=vectors user=me sslmode=verify-full sslrootcert=${pki.caCert} application_name=${APP}`;
  for (const mode of ['simple', 'extended']) {
    const r = await runPgbench(['-n', '-S', '-M', mode, '-c', '6', '-j', '2', '-t', '100', dsn], writer);
    assert.equal(r.status, 0, `${mode}: ${r.out}`);
    assert.match(r.out, /number of transactions actually processed: 600\/600/);
  }
});


test('/metrics: pool connections by state, waiting sessions, waits and their timeouts, pins by reason', async () => {
  const value = async (name: string, labels: string): Promise<number | null> => {
    const text = await gw.handle.metrics.registry.metrics();
    const m = new RegExp(`^${name}\\{${labels}\\} ([0-9.e+-]+)$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  const deadline = Date.now() + 5000;
  for (;;) {
    // Workers report within a second of a change (POOL_STATS_FLUSH_MS).
    const pins = await value('vecgate_upstream_pool_pins_total', 'connection="vectors",reason="SET"');
    const timeouts = await value('vecgate_upstream_pool_wait_timeouts_total', 'connection="vectors"');
    const waiting = await value('vecgate_upstream_pool_waiting_sessions', 'connection="vectors"');
    if ((pins ?? 0) >= 3 && (timeouts ?? 0) >= 1 && waiting === 0) break;
    if (Date.now() > deadline) assert.fail(`pins ${pins}, timeouts ${timeouts}, waiting ${waiting}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // Three sessions ran SET above (one in the pin test, two in the 53300 test); the named
  // prepared statement pinned nothing; every wait that timed out was counted, with its time.
  assert.equal(await value('vecgate_upstream_pool_pins_total', 'connection="vectors",reason="named prepared statement"'), null);
  assert.ok((await value('vecgate_upstream_pool_waits_total', 'connection="vectors"'))! >= 1);
  assert.ok((await value('vecgate_upstream_pool_wait_seconds_total', 'connection="vectors"'))! >= 1.9);
  const idle = (await value('vecgate_upstream_pool_connections', 'connection="vectors",state="idle"')) ?? 0;
  const busy = (await value('vecgate_upstream_pool_connections', 'connection="vectors",state="busy"')) ?? 0;
  assert.ok(idle + busy <= SIZE, `idle ${idle} + busy ${busy}`);
});

/** Sends a CancelRequest with a session's key, as libpq's PQcancel does; resolves when the gateway closes it. */
function sendCancel(port: number, processId: number, secretKey: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port }, () => {
      const b = Buffer.alloc(16);
      b.writeInt32BE(16, 0);
      b.writeInt32BE(80877102, 4);
      b.writeUInt32BE(processId >>> 0, 8);
      b.writeUInt32BE(secretKey >>> 0, 12);
      sock.write(b);
    });
    sock.on('close', () => resolve());
    sock.on('error', reject);
  });
}

type Keyed = pg.Client & { processID: number; secretKey: number };

async function cancelWorks(port: number, connect: () => Promise<pg.Client>): Promise<void> {
  const a = (await connect()) as Keyed;
  const b = await connect();
  try {
    assert.ok(Number.isInteger(a.processID) && a.processID !== 0, 'the session got a cancel key');
    // Between transactions nothing runs: a cancel then touches no one, not even another
    // session that is running a statement on what was this session's backend.
    const other = b.query('SELECT pg_sleep(0.3) AS slept');
    await new Promise((r) => setTimeout(r, 50));
    await sendCancel(port, a.processID, a.secretKey);
    assert.ok((await other).rows.length === 1, "another session's statement is not cancelled");
    // While it runs, the cancel reaches this session's statement.
    const long = assert.rejects(a.query('SELECT pg_sleep(10)'), (err: Error & { code?: string }) => err.code === '57014');
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    await sendCancel(port, a.processID, a.secretKey);
    await long;
    assert.ok(Date.now() - started < 5000);
    assert.equal((await a.query('SELECT 1 AS one')).rows[0].one, 1);
  } finally {
    await a.end();
    await b.end();
  }
}

test('cancel: the key names the session; a cancel reaches the statement it runs now, and nothing else', async () => {
  await cancelWorks(gw.port, () => client());
});

test('cancel across workers: whichever worker the CancelRequest reaches, it is routed to the one holding the session', async () => {
  const gw2 = await startGatewayFixture({
    dir: path.join(dir, 'gw2'),
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    workers: 2,
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert }, pool: { mode: 'transaction', size: 4 } },
    credentials: { read: cluster.roles.rw, write: cluster.roles.rw },
  });
  try {
    const token = await gw2.token('writer@example.com', ['ml-writers']);
    const connect = async () => {
      const c = new pg.Client({ host: 'localhost', port: gw2.port, database: 'vectors', user: 'ignored', password: token, ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' } });
      await c.connect();
      return c;
    };
    // The kernel spreads connections over the workers' listeners: four tries make it all but
    // certain that some cancels arrive at the other worker (each must work either way).
    for (let i = 0; i < 4; i++) await cancelWorks(gw2.port, connect);
  } finally {
    await gw2.stop();
  }
});

test('on_pin: refuse: what would pin is refused with 0A000 naming why; the session keeps sharing backends and SET LOCAL works', async () => {
  mkdirSync(path.join(dir, 'gw3'));
  const gw3 = await startGatewayFixture({
    dir: path.join(dir, 'gw3'),
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    workers: 1,
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert }, pool: { mode: 'transaction', size: 2, on_pin: 'refuse' } },
    credentials: { read: cluster.roles.rw, write: cluster.roles.rw },
  });
  try {
    const token = await gw3.token('writer@example.com', ['ml-writers']);
    const c = new pg.Client({ host: 'localhost', port: gw3.port, database: 'vectors', user: 'ignored', password: token, ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' } });
    await c.connect();
    try {
      await assert.rejects(c.query('SET search_path = pinned_schema'), (e: pg.DatabaseError) => e.code === '0A000' && /\(SET\)/.test(e.message) && /on_pin: refuse/.test(e.message));
      await assert.rejects(c.query('LISTEN ch'), (e: pg.DatabaseError) => e.code === '0A000' && /\(LISTEN\)/.test(e.message));
      // Nothing ran: the setting is the default, and the session is not pinned (its backends vary).
      assert.equal((await c.query('SHOW search_path')).rows[0].search_path, '"$user", public');
      await c.query('BEGIN');
      await c.query('SET LOCAL search_path = pinned_schema');
      assert.equal((await c.query('SHOW search_path')).rows[0].search_path, 'pinned_schema');
      await c.query('COMMIT');
      // Named statements move between backends: not a pin, so not refused.
      assert.equal((await c.query({ name: 'n', text: 'SELECT $1::int AS n', values: [5] })).rows[0].n, 5);
    } finally {
      await c.end();
    }
    const m = await gw3.handle.metrics.registry.metrics();
    assert.doesNotMatch(m, /vecgate_upstream_pool_pins_total\{[^}]*\} [1-9]/);
  } finally {
    await gw3.stop();
  }
});
