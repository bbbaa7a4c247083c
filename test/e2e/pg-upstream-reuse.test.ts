// Upstream reuse (upstream.pool) end to end against PostgreSQL 15: a session that ends idle
// leaves its upstream reset (DISCARD ALL) and parked; the same subject's next session gets
// that very backend with nothing of the last session's state; another subject, a session
// that ended inside a transaction, a parked backend that was terminated, and `max_idle: 0`
// each get a fresh upstream. The backend is identified by pg_backend_pid() through the gateway.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/** How long a test waits for the gateway to park or drop an upstream (it takes one round trip). */
const SETTLE_TIMEOUT_MS = 10_000;

let dir: string;
let pki: TestPki;
let cluster: PgCluster;
let gw: GatewayFixture;

async function session<T>(g: GatewayFixture, token: string, fn: (c: pg.Client) => Promise<T>, app = 'reuse-test'): Promise<T> {
  const c = new pg.Client({ host: 'localhost', port: g.port, database: 'vectors', user: 'ignored', password: token, application_name: app, ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' } });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

const backendPid = async (c: pg.Client): Promise<number> => (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;

/** Waits until PostgreSQL shows `pid` idle after the gateway's reset, i.e. parked. */
async function parked(pid: number): Promise<void> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  for (;;) {
    const r = await cluster.psql(`SELECT state || '/' || query FROM pg_stat_activity WHERE pid = ${pid}`);
    if (r.trim() === 'idle/DISCARD ALL') return;
    if (Date.now() > deadline) throw new Error(`backend ${pid} was not parked (pg_stat_activity: "${r.trim()}")`);
    await new Promise((r2) => setTimeout(r2, 50));
  }
}

/** Waits until backend `pid` is gone. */
async function gone(pid: number): Promise<void> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  while ((await cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)).trim() !== '0') {
    if (Date.now() > deadline) throw new Error(`backend ${pid} is still there`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-reuse-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  cluster = await startPgCluster({ pki });
  mkdirSync(path.join(dir, 'gw'));
  gw = await startGatewayFixture({
    dir: path.join(dir, 'gw'),
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    workers: 1, // one worker: every session of a test sees the same pool
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert } },
    credentials: { read: cluster.roles.ro, write: cluster.roles.rw },
  });
});

after(async () => {
  await gw?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('upstream reuse', () => {
  test('the same subject gets the parked backend back, with nothing of the last session left', async () => {
    const alice = await gw.token('alice@example.com', ['ml-writers']);
    const pid = await session(gw, alice, async (c) => {
      await c.query('CREATE TEMP TABLE reuse_tmp (x int)');
      await c.query("SET statement_timeout = '1234s'");
      await c.query('PREPARE reuse_p AS SELECT 1');
      await c.query('SELECT pg_advisory_lock(4242)');
      await c.query('LISTEN reuse_chan');
      await c.query('DECLARE reuse_cur CURSOR WITH HOLD FOR SELECT 1');
      return backendPid(c);
    });
    await parked(pid);
    await session(gw, alice, async (c) => {
      assert.equal(await backendPid(c), pid, 'the parked backend is reused');
      assert.equal((await c.query("SELECT to_regclass('pg_temp.reuse_tmp') IS NULL AS gone")).rows[0].gone, true, 'temporary table dropped');
      assert.equal((await c.query('SHOW statement_timeout')).rows[0].statement_timeout, '0', 'settings reset');
      assert.equal((await c.query('SELECT count(*)::int AS n FROM pg_prepared_statements')).rows[0].n, 0, 'prepared statements deallocated');
      assert.equal((await c.query('SELECT count(*)::int AS n FROM pg_listening_channels()')).rows[0].n, 0, 'LISTENs gone');
      assert.equal((await c.query('SELECT count(*)::int AS n FROM pg_cursors')).rows[0].n, 0, 'cursors closed');
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'")).rows[0].n, 0, 'advisory locks released');
      assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, cluster.roles.rw.user);
    });
    assert.match(gw.logs(), /"upstreamReused":true/);
  });

  test('another subject, or another application_name, never gets it', async () => {
    const bob = await gw.token('bob@example.com', ['ml-writers']);
    const pid = await session(gw, bob, backendPid);
    await parked(pid);
    const carol = await gw.token('carol@example.com', ['ml-writers']);
    assert.notEqual(await session(gw, carol, backendPid), pid, 'a different subject gets a fresh upstream');
    assert.notEqual(await session(gw, bob, backendPid, 'other-app'), pid, 'different startup parameters get a fresh upstream');
    assert.equal(await session(gw, bob, backendPid), pid, 'still parked for bob');
  });

  test('read sessions (statements inspected in the pump) are reused too, after a refusal', async () => {
    const gina = await gw.token('gina@example.com', ['ml-readers']);
    const pid = await session(gw, gina, async (c) => {
      await assert.rejects(c.query("DELETE FROM docs WHERE body = 'nothing'"), /read access/);
      assert.equal((await c.query('SELECT 2 AS two')).rows[0].two, 2);
      return backendPid(c);
    });
    await parked(pid);
    await session(gw, gina, async (c) => {
      assert.equal(await backendPid(c), pid);
      assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, cluster.roles.ro.user);
    });
  });

  test('a session that ends inside a transaction is not reused, and its work is rolled back', async () => {
    const dave = await gw.token('dave@example.com', ['ml-writers']);
    const pid = await session(gw, dave, async (c) => {
      await c.query('BEGIN');
      await c.query("INSERT INTO docs (body) VALUES ('reuse-uncommitted')");
      return backendPid(c);
    });
    await gone(pid);
    assert.equal((await cluster.psql("SELECT count(*) FROM docs WHERE body = 'reuse-uncommitted'", 'vectors')).trim(), '0');
    assert.notEqual(await session(gw, dave, backendPid), pid);
  });

  test('a parked backend that is terminated is dropped; the next session gets a working one', async () => {
    const erin = await gw.token('erin@example.com', ['ml-writers']);
    const pid = await session(gw, erin, backendPid);
    await parked(pid);
    await cluster.psql(`SELECT pg_terminate_backend(${pid})`);
    await gone(pid);
    const next = await session(gw, erin, async (c) => {
      assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
      return backendPid(c);
    });
    assert.notEqual(next, pid);
  });

  test('max_idle: 0 turns reuse off', async () => {
    mkdirSync(path.join(dir, 'gw-off'));
    const off = await startGatewayFixture({
      dir: path.join(dir, 'gw-off'),
      serverCert: pki.serverCert,
      serverKey: pki.serverKey,
      workers: 1,
      upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert }, pool: { max_idle: 0 } },
      credentials: { read: cluster.roles.ro, write: cluster.roles.rw },
    });
    try {
      const frank = await off.token('frank@example.com', ['ml-writers']);
      const pid = await session(off, frank, backendPid);
      await gone(pid);
      assert.notEqual(await session(off, frank, backendPid), pid);
    } finally {
      await off.stop();
    }
  });
});
