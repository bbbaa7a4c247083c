// Recording of HTTP vector API requests through the whole gateway (primary, two workers, the
// recorder): each request is a recorded session with a `request` event (who, route
// classification, guard decision, body summary) and a `result` event (status, bytes, duration);
// `queries` summarizes vectors, `full` keeps them, `off` records nothing; neither the upstream
// credential nor the client's token is ever in the segment files.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import https from 'node:https';
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
import type { RecordEvent } from '../../src/recording/record-event.js';
import { listSessions, replaySession } from '../../src/recording/session-index.js';
import { summarizeVector } from '../../src/recording/summarize-vector.js';
import { verifyRecordings } from '../../src/recording/verify-recordings.js';
import { fixtureVector, startFixtureUpstream, type FixtureUpstream } from '../harness/http-upstream.js';
import { freePort } from '../harness/free-port.js';

const CANARY = `canary-http-rec-${Math.random().toString(36).slice(2, 10)}`;
let dir: string;
let recordings: string;
let pki: TestPki;
let upstream: FixtureUpstream;
let issuer: DevIssuer;
let gw: GatewayHandle | null = null;
const ports: Record<string, number> = {};
const tokens: string[] = [];

function request(conn: string, method: string, urlPath: string, token: string | null, body?: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = https.request(
      {
        host: '127.0.0.1',
        port: ports[conn],
        servername: 'localhost',
        method,
        path: urlPath,
        ca: readFileSync(pki.caCert),
        agent: false,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
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
}

async function events(id: string): Promise<RecordEvent[]> {
  const out: RecordEvent[] = [];
  for await (const e of replaySession(recordings, id)) out.push(e);
  return out;
}

/** Every list of 16 or more numbers anywhere in `v` (a raw embedding). */
function rawVectors(v: unknown, out: number[][] = []): number[][] {
  if (Array.isArray(v)) {
    if (v.length >= 16 && v.every((x) => typeof x === 'number')) out.push(v as number[]);
    else for (const x of v) rawVectors(x, out);
  } else if (v !== null && typeof v === 'object') for (const x of Object.values(v)) rawVectors(x, out);
  return out;
}

const query = fixtureVector(3);

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-http-rec-'));
  recordings = path.join(dir, 'recordings');
  pki = await writeTestPki(path.join(dir, 'pki'));
  upstream = await startFixtureUpstream({ certFile: pki.serverCert, keyFile: pki.serverKey, credential: { header: 'api-key', value: CANARY } });
  issuer = await DevIssuer.open(dir);
  const connections: Record<string, unknown> = {};
  for (const [name, recording] of [['qdrant', 'queries'], ['qdrant-full', 'full'], ['qdrant-off', 'off']] as const) {
    ports[name] = await freePort();
    connections[name] = {
      protocol: 'http',
      flavor: 'qdrant',
      listen: `127.0.0.1:${ports[name]}`,
      upstream: { url: upstream.url, tls: { mode: 'verify-full', ca: pki.caCert } },
      credentials: { header: 'api-key', value: CANARY },
      guard: { return_vectors: ['ml-writers'], max_limit: 100 },
      recording,
    };
  }
  const all = Object.keys(connections);
  const file = path.join(dir, 'vecgate.yaml');
  writeFileSync(
    file,
    stringify({
      server: { tls: { cert: pki.serverCert, key: pki.serverKey }, workers: 2 },
      identity: { issuers: [{ issuer: issuer.issuer, audience: 'vecgate', jwks: issuer.jwksPath }] },
      policies: [
        { name: 'read', groups: ['ml-readers'], connections: all, access: 'read' },
        { name: 'admin', groups: ['ml-admins'], connections: all, access: 'admin' },
      ],
      connections,
      recordings: { dir: recordings },
    }),
  );
  const sink = new Writable({ write(_c, _e, cb) { cb(); } });
  gw = await startGateway(await loadConfig(file), { logger: pino({ level: 'info' }, sink) });

  const admin = await issuer.mint({ user: 'ada@example.com', groups: ['ml-admins'], ttlSec: 600 });
  const reader = await issuer.mint({ user: 'rita@example.com', groups: ['ml-readers'], ttlSec: 600 });
  tokens.push(admin, reader);
  for (const conn of ['qdrant', 'qdrant-full', 'qdrant-off']) {
    const created = await request(conn, 'PUT', '/collections/docs', admin, { vectors: { size: 1536, distance: 'Dot' } });
    assert.ok(created.status === 200 || created.status === 409 || created.status === 400, created.body);
    const points = Array.from({ length: 5 }, (_, i) => ({ id: i + 1, vector: fixtureVector(i + 1), payload: { n: i + 1 } }));
    assert.equal((await request(conn, 'PUT', '/collections/docs/points?wait=true', admin, { points })).status, 200);
    const hits = await request(conn, 'POST', '/collections/docs/points/search', reader, { vector: query, limit: 3, with_payload: true });
    assert.equal(hits.status, 200, hits.body);
  }
  // Refusals: by access level, by the guard, and without a token.
  assert.equal((await request('qdrant', 'PUT', '/collections/docs/points', reader, { points: [] })).status, 403);
  assert.equal((await request('qdrant', 'POST', '/collections/docs/points/search', reader, { vector: query, limit: 3, with_vector: true })).status, 403);
  assert.equal((await request('qdrant', 'POST', '/collections/docs/points/search', null, { vector: query, limit: 3 })).status, 401);
  // Stopping flushes the recorder: the files are complete afterwards.
  await gw.stop({ drainMs: 200 });
  gw = null;
});

after(async () => {
  await gw?.stop({ drainMs: 200 });
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('each request is a recorded session: who, classification, guard decision, then the result', async () => {
  const rita = await listSessions(recordings, { user: 'rita@example.com', connection: 'qdrant' });
  assert.equal(rita.length, 3, JSON.stringify(rita));
  const all = await Promise.all(rita.map((s) => events(s.id)));
  for (const evs of all) {
    assert.deepEqual(evs.map((e) => e.type), ['request', 'result'], 'a request event, then its result');
    assert.equal(evs[0]!.subject, 'rita@example.com');
    assert.deepEqual(evs[0]!.groups, ['ml-readers']);
    assert.equal(evs[0]!.access, 'read');
    assert.ok((evs[1]!.ts as number) >= (evs[0]!.ts as number));
  }
  const byOp = (op: string, status: number) => all.find((evs) => (evs[0]!.route as { operation?: string } | null)?.operation === op && evs[1]!.status === status);

  const search = byOp('points.search', 200)!;
  assert.ok(search, JSON.stringify(all.map((e) => e[0]!.route)));
  assert.deepEqual(search[0]!.route, { access: 'read', operation: 'points.search', collection: 'docs' });
  assert.deepEqual(search[0]!.guard, { allowed: true });
  assert.equal(search[0]!.method, 'POST');
  assert.equal(search[0]!.path, '/collections/docs/points/search');
  const result = search[1]!;
  assert.ok((result.bytesIn as number) > 20_000, 'a 1536-dim vector as JSON');
  assert.ok((result.bytesOut as number) > 0);
  assert.equal(typeof result.durationMs, 'number');
  // queries mode: the body is kept with its vector summarized, the rest as sent.
  const body = search[0]!.body as { bytes: number; vectors: number; json: { vector: { $vector: { dims: number; hash: string } }; limit: number; with_payload: boolean } };
  assert.equal(body.bytes, result.bytesIn);
  assert.equal(body.vectors, 1);
  assert.equal(body.json.limit, 3);
  assert.equal(body.json.with_payload, true);
  assert.equal(body.json.vector.$vector.dims, 1536);
  assert.equal(body.json.vector.$vector.hash, summarizeVector(query).hash, 'the auditor can match the vector by its fingerprint');

  const denied = byOp('points.upsert', 403)!;
  assert.ok(denied, 'the write attempt by a reader is recorded');
  assert.equal((denied[0]!.guard as { allowed: boolean; stage: string }).allowed, false);
  assert.equal((denied[0]!.guard as { stage: string }).stage, 'access');
  assert.equal(denied[0]!.route && (denied[0]!.route as { access: string }).access, 'write');
  assert.equal(denied[1]!.code, 'ERR_VG_ACCESS_DENIED');

  const guarded = all.find((evs) => (evs[0]!.guard as { stage?: string }).stage === 'guard')!;
  assert.ok(guarded, 'the guard refusal is recorded');
  assert.match(String((guarded[0]!.guard as { reason: string }).reason), /with_vector/);
  assert.equal(guarded[1]!.status, 403);

  const anonymous = (await listSessions(recordings, { connection: 'qdrant' })).filter((s) => s.subject === null);
  assert.equal(anonymous.length, 1, 'the request without a token is recorded too, with no subject');
  const anon = await events(anonymous[0]!.id);
  assert.equal((anon[0]!.guard as { stage: string }).stage, 'token');
  assert.equal(anon[1]!.status, 401);

  // No raw embedding anywhere in queries mode: not the 1536-dim query, not the upserted points.
  const everything = await Promise.all((await listSessions(recordings, { connection: 'qdrant' })).map((s) => events(s.id)));
  assert.deepEqual(rawVectors(everything), []);
  const upsert = everything.find((evs) => (evs[0]!.route as { operation?: string } | null)?.operation === 'points.upsert' && evs[1]!.status === 200)!;
  assert.equal((upsert[0]!.body as { vectors: number }).vectors, 5, 'the five upserted vectors are counted and summarized');
});

test('full mode keeps the vectors; off records nothing', async () => {
  const full = await listSessions(recordings, { connection: 'qdrant-full', user: 'rita@example.com' });
  assert.equal(full.length, 1);
  const evs = await events(full[0]!.id);
  const kept = rawVectors(evs[0]!.body);
  assert.equal(kept.length, 1);
  assert.equal(kept[0]!.length, 1536);
  assert.equal(summarizeVector(kept[0]!).hash, summarizeVector(query).hash);
  assert.deepEqual(await listSessions(recordings, { connection: 'qdrant-off' }), []);
});

test('neither the upstream credential nor a client token is in the recordings; the chain verifies', async () => {
  const raw = execFileSync('sh', ['-c', `cat $(find '${recordings}' -name '*.vgrec')`]);
  assert.ok(raw.length > 0);
  assert.ok(raw.includes(Buffer.from('points.search')), 'the files are the ones with the requests');
  assert.ok(!raw.includes(Buffer.from(CANARY)), 'the injected credential is never recorded');
  for (const t of tokens) {
    assert.ok(!raw.includes(Buffer.from(t)), 'no access token in the recordings');
    assert.ok(!raw.includes(Buffer.from(t.split('.')[2]!)), 'not even its signature');
  }
  const report = await verifyRecordings(recordings);
  assert.equal(report.ok, true, JSON.stringify(report.firstBad));
});

test('vecgate sessions lists HTTP requests: subject, one statement each, ended, refusals counted', async () => {
  const { listSessions } = await import('../../src/recording/session-index.js');
  const rows = await listSessions(recordings, {});
  assert.ok(rows.length > 0);
  assert.ok(rows.every((r) => r.statements === 1 && r.ended_at !== null), JSON.stringify(rows.slice(0, 3)));
  assert.ok(rows.some((r) => r.refusals === 1), 'guard and access refusals are counted');
});
