// HTTP under `recordings.durability: strict` fails closed like PostgreSQL: a request is
// forwarded only once its `request` record is on disk, and gets 503 with a JSON error, with
// nothing forwarded, while the recorder cannot write. The whole gateway (primary, workers,
// recorder) in front of the fixture upstream (Qdrant flavor).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { startGateway, type GatewayHandle } from '../../src/gateway/gateway.js';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { DevIssuer } from '../../src/identity/dev-issuer.js';
import { connectionDirName } from '../../src/recording/segment-format.js';
import { fixtureVector, startFixtureUpstream, type FixtureUpstream } from '../harness/http-upstream.js';
import { freePort } from '../harness/free-port.js';
import { httpsJson, type HttpsReply } from '../harness/https-json.js';

let dir: string;
let recordings: string;
let pki: TestPki;
let upstream: FixtureUpstream;
let issuer: DevIssuer;
let gw: GatewayHandle;
let port: number;

function request(method: string, urlPath: string, token: string, body?: unknown): Promise<HttpsReply> {
  return httpsJson({ port, ca: readFileSync(pki.caCert), method, path: urlPath, token, body, agent: false });
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-http-strict-'));
  recordings = path.join(dir, 'recordings');
  pki = await writeTestPki(path.join(dir, 'pki'));
  upstream = await startFixtureUpstream({ certFile: pki.serverCert, keyFile: pki.serverKey, credential: null });
  issuer = await DevIssuer.open(dir);
  port = await freePort();
  const file = path.join(dir, 'vecgate.yaml');
  writeFileSync(
    file,
    stringify({
      server: { tls: { cert: pki.serverCert, key: pki.serverKey }, workers: 2 },
      identity: { issuers: [{ issuer: issuer.issuer, audience: 'vecgate', jwks: issuer.jwksPath }] },
      policies: [{ name: 'admin', groups: ['ml-admins'], connections: ['qdrant'], access: 'admin' }],
      connections: {
        qdrant: {
          protocol: 'http',
          flavor: 'qdrant',
          listen: `127.0.0.1:${port}`,
          upstream: { url: upstream.url, tls: { mode: 'verify-full', ca: pki.caCert } },
          recording: 'queries',
        },
      },
      recordings: { dir: recordings, durability: 'strict' },
    }),
  );
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  gw = await startGateway(await loadConfig(file), { logger: pino({ level: 'info' }, sink) });
});

after(async () => {
  await gw?.stop({ drainMs: 200 });
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('strict: 503 with a JSON error and nothing forwarded while the recorder cannot write; served again once it can', async () => {
  const admin = await issuer.mint({ user: 'ada@example.com', groups: ['ml-admins'], ttlSec: 600 });
  // The connection's recording directory is a file: no segment can be opened (root ignores permissions).
  mkdirSync(recordings, { recursive: true });
  const blocker = path.join(recordings, connectionDirName('qdrant'));
  writeFileSync(blocker, 'not a directory');
  const before = upstream.seen.length;
  for (const [method, p, body] of [
    ['PUT', '/collections/docs', { vectors: { size: 1536, distance: 'Dot' } }],
    ['POST', '/collections/docs/points/search', { vector: fixtureVector(1), limit: 3 }],
    ['GET', '/collections', undefined],
  ] as const) {
    const r = await request(method, p, admin, body);
    assert.equal(r.status, 503, `${method} ${p}: ${r.body}`);
    assert.equal(r.headers['content-type'], 'application/json');
    const e = (JSON.parse(r.body) as { error: { code: string; message: string } }).error;
    assert.equal(e.code, 'ERR_VG_RECORDING_FAILED');
    assert.match(e.message, /recorder cannot write/);
  }
  assert.equal(upstream.seen.length, before, 'nothing reached the upstream');

  rmSync(blocker);
  const created = await request('PUT', '/collections/docs', admin, { vectors: { size: 1536, distance: 'Dot' } });
  assert.equal(created.status, 200, created.body);
  assert.equal(upstream.seen.length, before + 1);
});
