// Which authentication the gateway accepts from a real PostgreSQL 15 upstream over verified
// TLS (issue #16 item 14): an upstream that asks for the cleartext password (`password` in
// pg_hba.conf) or an MD5 hash used to get it. By default only SCRAM-SHA-256 is answered; a
// connection allows others with upstream.auth_methods.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

let dir: string;
let pki: TestPki;
let cluster: PgCluster;
/** auth_methods not set: SCRAM only. */
let strict: GatewayFixture;
/** auth_methods: [scram-sha-256, md5, password]. */
let lenient: GatewayFixture;

async function connect(gw: GatewayFixture, groups: string[]): Promise<string> {
  const c = new pg.Client({
    host: 'localhost',
    port: gw.port,
    database: 'vectors',
    user: 'me',
    password: await gw.token('carol@example.com', groups),
    ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' },
  });
  c.on('error', () => {});
  await c.connect();
  try {
    return (await c.query('SELECT current_user AS u')).rows[0].u as string;
  } finally {
    await c.end().catch(() => {});
  }
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-upauth-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  // vec_ro: the server asks for the cleartext password; vec_rw: an MD5 hash (stored as MD5).
  cluster = await startPgCluster({
    pki,
    settings: { password_encryption: "'md5'" },
    hostsslRules: ['hostssl all vec_ro 127.0.0.1/32 password', 'hostssl all vec_rw 127.0.0.1/32 md5'],
  });
  const upstream = { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert } };
  const common = { serverCert: pki.serverCert, serverKey: pki.serverKey, workers: 1, credentials: { read: cluster.roles.ro, write: cluster.roles.rw }, recording: 'off' as const };
  mkdirSync(path.join(dir, 'strict'));
  mkdirSync(path.join(dir, 'lenient'));
  strict = await startGatewayFixture({ dir: path.join(dir, 'strict'), upstream, ...common });
  lenient = await startGatewayFixture({ dir: path.join(dir, 'lenient'), upstream: { ...upstream, auth_methods: ['scram-sha-256', 'md5', 'password'] }, ...common });
});

after(async () => {
  await strict?.stop();
  await lenient?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('upstream authentication methods', () => {
  for (const [method, groups, asked] of [
    ['password', ['ml-readers'], 'a cleartext password'],
    ['md5', ['ml-writers'], 'an MD5 password'],
  ] as const) {
    test(`an upstream asking for ${method} is refused by default: the client gets 08004, the operator the reason`, async () => {
      await assert.rejects(connect(strict, [...groups]), (err: Error & { code?: string }) => {
        assert.equal(err.code, '08004', err.message);
        assert.match(err.message, /authentication method this connection does not allow/);
        return true;
      });
      const line = strict
        .logs()
        .split('\n')
        .find((l) => l.includes('ERR_VG_UPSTREAM_AUTH_METHOD') && l.includes(asked));
      assert.ok(line, strict.logs());
      assert.match(line, /connections\.vectors\.upstream\.auth_methods allows only scram-sha-256/);
      // The refusal names the method, never the password.
      assert.ok(!strict.logs().includes(cluster.roles.ro.password) && !strict.logs().includes(cluster.roles.rw.password));
    });

    test(`an upstream asking for ${method} is answered when auth_methods allows it`, async () => {
      const user = await connect(lenient, [...groups]);
      assert.equal(user, method === 'password' ? cluster.roles.ro.user : cluster.roles.rw.user);
    });
  }
});
