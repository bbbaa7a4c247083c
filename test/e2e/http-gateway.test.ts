// An HTTP vector API (Qdrant flavor) through the whole gateway: the primary, two worker
// threads each running a uWebSockets.js SSLApp on the same port, token checks answered by
// the primary, the upstream credential injected, and the official Qdrant JS client unmodified.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { startGateway, type GatewayHandle } from '../../src/gateway/gateway.js';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { DevIssuer } from '../../src/identity/dev-issuer.js';
import { startFixtureUpstream, type FixtureUpstream } from '../harness/http-upstream.js';
import { freePort } from '../harness/free-port.js';
import { HTTP_STATS_FLUSH_MS } from '../../workers/http/http-stats.js';
import { httpsJson, type HttpsReply } from '../harness/https-json.js';

const CANARY = 'canary-api-key-7f3a9c';
let dir: string;
let pki: TestPki;
let upstream: FixtureUpstream;
let issuer: DevIssuer;
let gw: GatewayHandle;
let port: number;
const logLines: string[] = [];

function request(method: string, urlPath: string, token: string | null, body?: unknown): Promise<HttpsReply> {
  return httpsJson({ port, ca: readFileSync(pki.caCert), method, path: urlPath, token, body });
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-http-e2e-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  upstream = await startFixtureUpstream({ certFile: pki.serverCert, keyFile: pki.serverKey, credential: { header: 'api-key', value: CANARY } });
  issuer = await DevIssuer.open(dir);
  port = await freePort();
  const file = path.join(dir, 'vecgate.yaml');
  writeFileSync(
    file,
    stringify({
      server: { tls: { cert: pki.serverCert, key: pki.serverKey }, workers: 2 },
      identity: { issuers: [{ issuer: issuer.issuer, audience: 'vecgate', jwks: issuer.jwksPath }] },
      policies: [
        { name: 'read', groups: ['ml-readers'], connections: ['qdrant'], access: 'read' },
        { name: 'write', groups: ['ml-writers'], connections: ['qdrant'], access: 'write' },
        { name: 'admin', groups: ['ml-admins'], connections: ['qdrant'], access: 'admin' },
      ],
      connections: {
        qdrant: {
          protocol: 'http',
          flavor: 'qdrant',
          listen: `127.0.0.1:${port}`,
          upstream: { url: upstream.url, tls: { mode: 'verify-full', ca: pki.caCert } },
          credentials: { header: 'api-key', value: CANARY },
          guard: { return_vectors: ['ml-writers'], max_limit: 100 },
        },
      },
    }),
  );
  const sink = new Writable({ write(c, _e, cb) { logLines.push(String(c)); cb(); } });
  gw = await startGateway(await loadConfig(file), { logger: pino({ level: 'debug' }, sink) });
});

after(async () => {
  await gw?.stop({ drainMs: 200 });
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('qdrant through the gateway: 401 without a token, read vs write by group, guard, credential injected', async () => {
  const none = await request('POST', '/collections/docs/points/search', null, { vector: [0.1], limit: 3 });
  assert.equal(none.status, 401);
  assert.match(String(none.headers['www-authenticate']), /Bearer error="invalid_token"/);

  const writer = await issuer.mint({ user: 'w@example.com', groups: ['ml-writers'], ttlSec: 600 });
  const reader = await issuer.mint({ user: 'r@example.com', groups: ['ml-readers'], ttlSec: 600 });
  const create = await request('PUT', '/collections/docs', writer, { vectors: { size: 4, distance: 'Cosine' } });
  assert.equal(create.status, 403, 'collection creation is admin');
  const readerWrite = await request('PUT', '/collections/docs/points', reader, { points: [] });
  assert.equal(readerWrite.status, 403);
  assert.match(readerWrite.body, /write/);
  const big = await request('POST', '/collections/docs/points/search', reader, { vector: [0.1, 0.2], limit: 1000 });
  assert.equal(big.status, 403);
  const vectors = await request('POST', '/collections/docs/points/search', reader, { vector: [0.1, 0.2], limit: 3, with_vector: true });
  assert.equal(vectors.status, 403);
  assert.match(vectors.body, /with_vector/);
  for (const r of [none, create, readerWrite, big, vectors]) assert.ok(!r.body.includes(CANARY));
  assert.ok(upstream.seen.every((s) => s.headers['api-key'] === CANARY), 'every forwarded request carries the injected credential');
  assert.ok(upstream.seen.every((s) => s.headers.authorization === undefined), "the client's token never reaches the upstream");
  assert.ok(!logLines.join('').includes(CANARY));
  assert.ok(!logLines.join('').includes(writer));
});

test('the official Qdrant client works unchanged through the gateway', async () => {
  const admin = await issuer.mint({ user: 'a@example.com', groups: ['ml-admins'], ttlSec: 600 });
  const reader = await issuer.mint({ user: 'r@example.com', groups: ['ml-readers'], ttlSec: 600 });
  const script = `
    import { QdrantClient } from '@qdrant/js-client-rest';
    const opts = (t) => ({ url: 'https://localhost:${port}', headers: { Authorization: 'Bearer ' + t }, checkCompatibility: false });
    const adminClient = new QdrantClient(opts('${admin}'));
    const readClient = new QdrantClient(opts('${reader}'));
    await adminClient.createCollection('e2e', { vectors: { size: 1536, distance: 'Cosine' } });
    const pts = Array.from({ length: 50 }, (_, i) => ({ id: i + 1, vector: Array.from({ length: 1536 }, (_, j) => Math.sin((i + 1) * (j + 1))), payload: { n: i } }));
    await adminClient.upsert('e2e', { wait: true, points: pts });
    const hits = await readClient.search('e2e', { vector: pts[3].vector, limit: 3 });
    let refused = null;
    try { await readClient.upsert('e2e', { wait: true, points: pts.slice(0, 1) }); } catch (e) { refused = e.status; }
    console.log(JSON.stringify({ ids: hits.map((h) => h.id), refused }));
  `;
  const out = await new Promise<string>((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), env: { ...process.env, NODE_EXTRA_CA_CERTS: pki.caCert } });
    let o = '';
    child.stdout.on('data', (d) => (o += d));
    child.stderr.on('data', (d) => (o += d));
    child.on('close', () => resolve(o));
  });
  const result = JSON.parse(out.trim().split('\n').pop()!);
  assert.equal(result.ids[0], 4, 'the nearest point to point 4 is itself');
  assert.equal(result.ids.length, 3);
  assert.equal(result.refused, 403, 'the read group cannot upsert');
  assert.ok(!out.includes(CANARY));
});

test('answered requests show in the metrics by status class, with their body bytes', async () => {
  const reader = await issuer.mint({ user: 'r@example.com', groups: ['ml-readers'], ttlSec: 600 });
  const value = async (name: string, labels: Record<string, string>): Promise<number> => {
    const m = await gw.metrics.registry.getSingleMetric(name)!.get();
    const v = m.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
    return v?.value ?? 0;
  };
  // Tallies of the earlier tests' requests reach the primary within HTTP_STATS_FLUSH_MS: the
  // baseline is taken once the counters hold still across a whole flush interval.
  const total = async () => (await gw.metrics.registry.getSingleMetric('vecgate_http_requests_total')!.get()).values.reduce((n, v) => n + v.value, 0);
  for (let before = -1, now = await total(), tries = 0; now !== before && tries < 20; tries++) {
    await new Promise((r) => setTimeout(r, HTTP_STATS_FLUSH_MS + 200));
    before = now;
    now = await total();
  }
  const ok0 = await value('vecgate_http_requests_total', { connection: 'qdrant', status: '2xx' });
  const refused0 = await value('vecgate_http_requests_total', { connection: 'qdrant', status: '4xx' });
  const in0 = await value('vecgate_bytes_total', { connection: 'qdrant', direction: 'from_client' });
  const admin = await issuer.mint({ user: 'a@example.com', groups: ['ml-admins'], ttlSec: 600 });
  assert.equal((await request('PUT', '/collections/metrics', admin, { vectors: { size: 4, distance: 'Cosine' } })).status, 200);
  const body = { exact: true, filter: { must: [{ key: 'n', match: { value: 3 } }] } };
  for (let i = 0; i < 4; i++) assert.equal((await request('POST', '/collections/metrics/points/count', reader, body)).status, 200);
  for (let i = 0; i < 2; i++) assert.equal((await request('POST', '/collections/metrics/points/count', null, body)).status, 401);
  // Workers send their tallies every HTTP_STATS_FLUSH_MS.
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && ((await value('vecgate_http_requests_total', { connection: 'qdrant', status: '2xx' })) < ok0 + 5 || (await value('vecgate_http_requests_total', { connection: 'qdrant', status: '4xx' })) < refused0 + 2)) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(await value('vecgate_http_requests_total', { connection: 'qdrant', status: '2xx' }), ok0 + 5);
  assert.equal(await value('vecgate_http_requests_total', { connection: 'qdrant', status: '4xx' }), refused0 + 2);
  // The create and the 4 counts had their bodies forwarded; the 2 refused ones were never read.
  assert.ok((await value('vecgate_bytes_total', { connection: 'qdrant', direction: 'from_client' })) - in0 >= 4 * Buffer.byteLength(JSON.stringify(body)));
});
