// upstream.pool.max_idle_total end to end against PostgreSQL 15: with a pool key per subject,
// many users would each leave parked backends behind; the cap holds the connection's parked
// backends to max_idle_total, closing the least recently used first, and /metrics shows the
// count (vecgate_upstream_parked_connections) and the evictions. Backends are identified by
// pg_backend_pid() through the gateway and checked in pg_stat_activity.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

const SETTLE_TIMEOUT_MS = 10_000;
const MAX_IDLE_TOTAL = 3;

let dir: string;
let pki: TestPki;
let cluster: PgCluster;
let gw: GatewayFixture;

async function backendOf(subject: string): Promise<number> {
  const token = await gw.token(subject, ['ml-writers']);
  const c = new pg.Client({ host: 'localhost', port: gw.port, database: 'vectors', user: 'ignored', password: token, application_name: 'cap-test', ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' } });
  await c.connect();
  try {
    return (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  } finally {
    await c.end().catch(() => {});
  }
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const state = async (pid: number) => (await cluster.psql(`SELECT coalesce(max(state || '/' || query), 'gone') FROM pg_stat_activity WHERE pid = ${pid}`)).trim();
const parked = (pid: number) => until(`backend ${pid} is parked`, async () => (await state(pid)) === 'idle/DISCARD ALL');
const gone = (pid: number) => until(`backend ${pid} is closed`, async () => (await state(pid)) === 'gone');
const parkedBackends = async () => Number((await cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE usename = '${cluster.roles.rw.user}' AND state = 'idle' AND query = 'DISCARD ALL'`)).trim());

async function metric(name: string): Promise<number | null> {
  const text = await gw.handle.metrics.registry.metrics();
  const m = new RegExp(`^${name}\\{connection="vectors"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-pool-cap-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  cluster = await startPgCluster({ pki });
  mkdirSync(path.join(dir, 'gw'));
  gw = await startGatewayFixture({
    dir: path.join(dir, 'gw'),
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    workers: 1, // one worker holds the whole cap: the eviction order is deterministic
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert }, pool: { max_idle: 8, max_idle_total: MAX_IDLE_TOTAL } },
    credentials: { read: cluster.roles.ro, write: cluster.roles.rw },
  });
});

after(async () => {
  await gw?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('many subjects: parked backends stay at max_idle_total, the least recently used is closed, /metrics counts them', async () => {
  assert.equal(await metric('vecgate_upstream_parked_connections'), 0, 'the gauge starts at 0 for a postgres connection');
  const subjects = Array.from({ length: 6 }, (_, i) => `user${i}@example.com`);
  const pids: number[] = [];
  for (const s of subjects) {
    const pid = await backendOf(s);
    pids.push(pid);
    await parked(pid);
  }
  // The first three were parked least recently: each was closed to make room for a later one.
  for (const pid of pids.slice(0, 3)) await gone(pid);
  for (const pid of pids.slice(3)) assert.equal(await state(pid), 'idle/DISCARD ALL');
  assert.equal(await parkedBackends(), MAX_IDLE_TOTAL);
  await until('the gauge shows the cap', async () => (await metric('vecgate_upstream_parked_connections')) === MAX_IDLE_TOTAL);
  await until('the evictions are counted', async () => (await metric('vecgate_upstream_parked_evictions_total')) === 3);

  // Used again, user3's backend becomes the most recently parked: the next eviction takes user4's.
  assert.equal(await backendOf(subjects[3]!), pids[3], 'a parked backend is still reused');
  await parked(pids[3]!);
  const newcomer = await backendOf('user6@example.com');
  await parked(newcomer);
  await gone(pids[4]!);
  assert.equal(await state(pids[3]!), 'idle/DISCARD ALL', 'the recently used one stays');
  assert.equal(await state(pids[5]!), 'idle/DISCARD ALL');
  assert.equal(await parkedBackends(), MAX_IDLE_TOTAL);
  await until('the evictions are counted', async () => (await metric('vecgate_upstream_parked_evictions_total')) === 4);
  assert.equal(await metric('vecgate_upstream_parked_connections'), MAX_IDLE_TOTAL);
});
