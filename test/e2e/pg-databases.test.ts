// One listener, several databases (issue #18): `upstream.databases` names the other databases
// on the same server a client may ask for with dbname; the connection name (or `database`)
// still gives `database`; anything else is 3D000 naming what is served. Against PostgreSQL 15.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

let dir: string;
let pki: TestPki;
let cluster: PgCluster;
let gw: GatewayFixture;
let token: string;

async function currentDatabase(dbname: string): Promise<string> {
  const c = new pg.Client({ host: 'localhost', port: gw.port, database: dbname, user: 'ignored', password: token, ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' } });
  await c.connect();
  try {
    return (await c.query('SELECT current_database() AS db')).rows[0].db as string;
  } finally {
    await c.end();
  }
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-databases-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  cluster = await startPgCluster({ pki });
  await cluster.psql(`CREATE DATABASE analytics OWNER ${cluster.roles.rw.user}`);
  await cluster.psql(`CREATE DATABASE staging OWNER ${cluster.roles.rw.user}`);
  gw = await startGatewayFixture({
    dir,
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', databases: ['analytics'], tls: { mode: 'verify-full', ca: pki.caCert } },
    credentials: { read: cluster.roles.rw, write: cluster.roles.rw },
  });
  token = await gw.token('writer@example.com', ['ml-writers']);
});

after(async () => {
  await gw?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('dbname picks the upstream database among those the connection serves', async () => {
  assert.equal(await currentDatabase('vectors'), 'vectors');
  assert.equal(await currentDatabase('analytics'), 'analytics');
  // Sessions on one database never get a parked upstream of the other (the pool keys hold the database).
  for (let i = 0; i < 3; i++) {
    assert.equal(await currentDatabase('analytics'), 'analytics');
    assert.equal(await currentDatabase('vectors'), 'vectors');
  }
});

test('a database the connection does not serve is 3D000 naming the ones it does', async () => {
  await assert.rejects(currentDatabase('staging'), (err: Error & { code?: string }) => {
    assert.equal(err.code, '3D000');
    assert.equal(err.message, 'database "staging" is not served on this port: use dbname=vectors, dbname=analytics');
    return true;
  });
});
