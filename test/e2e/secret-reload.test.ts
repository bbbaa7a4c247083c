// A rotated `file:` secret reaches the workers on reload, for every protocol: the upstream
// credential travels with each authorization decision from the primary (which re-reads the
// config), never from the workers' own copy of it. PostgreSQL: a real PostgreSQL 15 cluster
// whose role password is changed; HTTP: the fixture upstream (Qdrant flavor) whose API key is.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { startGateway, type GatewayHandle } from '../../src/gateway/gateway.js';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { DevIssuer } from '../../src/identity/dev-issuer.js';
import { startFixtureUpstream, type FixtureUpstream } from '../harness/http-upstream.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { freePort } from '../harness/free-port.js';

let dir: string;
let pki: TestPki;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-secret-reload-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('http: a rotated file: API key', () => {
  const KEY_1 = 'api-key-before-rotation-1b9e';
  const KEY_2 = 'api-key-after-rotation-77c0';
  let upstream: FixtureUpstream;
  let issuer: DevIssuer;
  let gw: GatewayHandle;
  let port: number;
  let keyFile: string;

  // A reload also re-reads the certificate, which moves the HTTP listener to a new socket: a
  // connection queued on the old one can be reset (http-proxy.ts rotateCertificate), as a
  // client would, the request is sent again then.
  const search = async (token: string): Promise<{ status: number; body: string }> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await searchOnce(token);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET' || attempt >= 2) throw err;
      }
    }
  };
  const searchOnce = (token: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const payload = Buffer.from(JSON.stringify({ vector: [0.1, 0.2], limit: 3 }));
      const req = https.request(
        {
          host: '127.0.0.1',
          port,
          servername: 'localhost',
          method: 'POST',
          path: '/collections/docs/points/search',
          ca: readFileSync(pki.caCert),
          agent: false,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': payload.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        },
      );
      req.on('error', reject);
      req.end(payload);
    });

  before(async () => {
    const sub = path.join(dir, 'http');
    mkdirSync(sub);
    upstream = await startFixtureUpstream({ certFile: pki.serverCert, keyFile: pki.serverKey, credential: { header: 'api-key', value: KEY_1 } });
    issuer = await DevIssuer.open(sub);
    port = await freePort();
    keyFile = path.join(dir, 'qdrant-api-key');
    writeFileSync(keyFile, KEY_1);
    const file = path.join(dir, 'http.yaml');
    writeFileSync(
      file,
      stringify({
        server: { tls: { cert: pki.serverCert, key: pki.serverKey }, workers: 2 },
        identity: { issuers: [{ issuer: issuer.issuer, audience: 'vecgate', jwks: issuer.jwksPath }] },
        policies: [{ name: 'read', groups: ['ml-readers'], connections: ['qdrant'], access: 'read' }],
        connections: {
          qdrant: {
            protocol: 'http',
            flavor: 'qdrant',
            listen: `127.0.0.1:${port}`,
            upstream: { url: upstream.url, tls: { mode: 'verify-full', ca: pki.caCert } },
            credentials: { header: 'api-key', value: `file:${keyFile}` },
          },
        },
      }),
    );
    const sink = new Writable({ write: (c, _e, cb) => { if (process.env.VG_TEST_LOG) process.stderr.write(c); cb(); } });
    gw = await startGateway(await loadConfig(file), { logger: pino({ level: 'info' }, sink) });
  });

  after(async () => {
    await gw?.stop({ drainMs: 200 });
    await upstream?.close();
  });

  test('after reload the next request carries the new key (both workers)', async () => {
    const token = await issuer.mint({ user: 'r@example.com', groups: ['ml-readers'], ttlSec: 600 });
    // Warm both workers' decision caches with the old key (a fresh connection lands on either).
    for (let i = 0; i < 6; i++) assert.notEqual((await search(token)).status, 401);
    upstream.setCredential({ header: 'api-key', value: KEY_2 });
    assert.equal((await search(token)).status, 401, 'the upstream now refuses the old key');
    writeFileSync(keyFile, KEY_2);
    assert.equal(await gw.reloadConfig(), true);
    const seenBefore = upstream.seen.length;
    for (let i = 0; i < 6; i++) {
      const r = await search(token);
      assert.notEqual(r.status, 401, `request ${i} after the reload: ${r.body}`);
    }
    assert.ok(upstream.seen.slice(seenBefore).every((s) => s.headers['api-key'] === KEY_2));
  });
});

describe('postgres: a rotated file: password', () => {
  let cluster: PgCluster;
  let gw: GatewayFixture;
  let passwordFile: string;

  const session = async (token: string): Promise<string> => {
    const c = new pg.Client({ host: 'localhost', port: gw.port, database: 'vectors', user: 'ignored', password: token, ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' } });
    await c.connect();
    try {
      return (await c.query('SELECT current_user AS u')).rows[0].u as string;
    } finally {
      await c.end().catch(() => {});
    }
  };

  before(async () => {
    const sub = path.join(dir, 'pg');
    cluster = await startPgCluster({ pki });
    passwordFile = path.join(dir, 'vec-rw-password');
    writeFileSync(passwordFile, cluster.roles.rw.password);
    mkdirSync(sub);
    gw = await startGatewayFixture({
      dir: sub,
      serverCert: pki.serverCert,
      serverKey: pki.serverKey,
      upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert } },
      credentials: { read: cluster.roles.ro, write: { user: cluster.roles.rw.user, password: `file:${passwordFile}` } },
      recording: 'off',
    });
  });

  after(async () => {
    await gw?.stop();
    await cluster?.stop();
  });

  test('after reload the next session logs in with the new password', async () => {
    assert.equal(await session(await gw.token('w1@example.com', ['ml-writers'])), cluster.roles.rw.user);
    const next = 'rotated-Pw-3f9a0c';
    await cluster.psql(`ALTER ROLE ${cluster.roles.rw.user} PASSWORD '${next}'`);
    // A new subject: no parked upstream connection of an earlier session can serve it.
    await assert.rejects(session(await gw.token('w2@example.com', ['ml-writers'])), /credential/);
    writeFileSync(passwordFile, next);
    assert.equal(await gw.handle.reloadConfig(), true);
    assert.equal(await session(await gw.token('w3@example.com', ['ml-writers'])), cluster.roles.rw.user);
  });
});
