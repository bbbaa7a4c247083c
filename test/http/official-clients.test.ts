// The official JS clients, unmodified, through the gateway over HTTPS to the fixture upstream:
// @qdrant/js-client-rest and chromadb. Each runs in a child Node process that trusts the test CA
// through NODE_EXTRA_CA_CERTS, exactly as a user would configure it; only the URL and an
// Authorization header change.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { HttpConnectionConfig, PolicyConfig } from '../../src/config/types.js';
import { startHttpConnection } from '../../workers/http/http-proxy.js';
import type { HttpConnectionHandle } from '../../workers/http/http-proxy.js';
import { devAuthContext, makeTestPki, startFixtureUpstream } from '../harness/http-upstream.js';
import type { DevAuthContext, FixtureUpstream, TestPki } from '../harness/http-upstream.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const QDRANT_KEY = 'CANARY-qdrant-key-7f3a';
const CHROMA_KEY = 'CANARY-chroma-token-91bc';

const POLICIES: PolicyConfig[] = [
  { name: 'readers', groups: ['ml-readers'], connections: ['qdrant', 'chroma'], access: 'read' },
  { name: 'admins', groups: ['ml-admins'], connections: ['qdrant', 'chroma'], access: 'admin' },
];

function cfg(name: string, flavor: 'qdrant' | 'chroma', url: string, ca: string, header: string, value: string): HttpConnectionConfig {
  return {
    name,
    protocol: 'http',
    flavor,
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { url, tls: { mode: 'verify-full', ca, serverName: '' } },
    credentials: { header, value },
    guard: { returnVectors: ['ml-admins'], maxLimit: 50 },
    recording: 'off',
  };
}

/** Runs an ESM script in a child Node with the test CA trusted; resolves with its JSON stdout. */
function runClient(script: string, env: Record<string, string>): Promise<{ code: number; out: unknown; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      let out: unknown = null;
      try {
        out = JSON.parse(stdout.trim().split('\n').pop() ?? 'null');
      } catch {
        out = stdout;
      }
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out, stderr });
    });
  });
}

let pki: TestPki;
let qUp: FixtureUpstream;
let cUp: FixtureUpstream;
let dev: DevAuthContext;
let q: HttpConnectionHandle;
let c: HttpConnectionHandle;

before(async () => {
  pki = await makeTestPki();
  qUp = await startFixtureUpstream({ certFile: pki.certFile, keyFile: pki.keyFile, credential: { header: 'api-key', value: QDRANT_KEY } });
  cUp = await startFixtureUpstream({ certFile: pki.certFile, keyFile: pki.keyFile, credential: { header: 'x-chroma-token', value: CHROMA_KEY } });
  dev = await devAuthContext({
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    profile: 'modern',
    policies: POLICIES,
    credentials: { qdrant: { header: 'api-key', value: QDRANT_KEY }, chroma: { header: 'x-chroma-token', value: CHROMA_KEY } },
  });
  q = await startHttpConnection(dev.ctx, cfg('qdrant', 'qdrant', qUp.url, pki.caFile, 'api-key', QDRANT_KEY));
  c = await startHttpConnection(dev.ctx, cfg('chroma', 'chroma', cUp.url, pki.caFile, 'x-chroma-token', CHROMA_KEY));
});

after(async () => {
  q?.close();
  c?.close();
  await qUp?.close();
  await cUp?.close();
  dev?.cleanup();
  pki?.cleanup();
});

const QDRANT_SCRIPT = `
import { QdrantClient } from '@qdrant/js-client-rest';
const vec = (s) => Array.from({ length: 1536 }, (_, i) => Math.sin(s * 7 + i));
const admin = new QdrantClient({ url: 'https://localhost:' + process.env.PORT, headers: { authorization: 'Bearer ' + process.env.ADMIN }, checkCompatibility: false });
const reader = new QdrantClient({ url: 'https://localhost:' + process.env.PORT, headers: { authorization: 'Bearer ' + process.env.READER }, checkCompatibility: false });
const out = {};
await admin.createCollection('docs', { vectors: { size: 1536, distance: 'Dot' } });
await admin.upsert('docs', { wait: true, points: Array.from({ length: 200 }, (_, i) => ({ id: i + 1, vector: vec(i + 1), payload: { title: 'doc ' + (i + 1) } })) });
out.collections = (await reader.getCollections()).collections.map((c) => c.name);
const hits = await reader.search('docs', { vector: vec(42), limit: 10, with_payload: true });
out.top = hits[0].id; out.hits = hits.length; out.vectorInHit = hits[0].vector ?? null;
out.queryTop = (await reader.query('docs', { query: vec(7), limit: 5 })).points[0].id;
out.count = (await reader.count('docs', {})).count;
out.scroll = (await reader.scroll('docs', { limit: 20 })).points.length;
try { await reader.upsert('docs', { points: [{ id: 999, vector: vec(999) }] }); out.readerUpsert = 'allowed'; } catch (e) { out.readerUpsert = e.status ?? String(e); }
try { await reader.search('docs', { vector: vec(1), limit: 5, with_vector: true }); out.readerVectors = 'allowed'; } catch (e) { out.readerVectors = e.status ?? String(e); }
const withVectors = await admin.search('docs', { vector: vec(1), limit: 2, with_vector: true });
out.adminVectorLen = withVectors[0].vector.length;
try { await reader.deleteCollection('docs'); out.readerDrop = 'allowed'; } catch (e) { out.readerDrop = e.status ?? String(e); }
console.log(JSON.stringify(out));
`;

const CHROMA_SCRIPT = `
import { ChromaClient } from 'chromadb';
const vec = (s) => Array.from({ length: 1536 }, (_, i) => Math.cos(s * 3 + i));
const mk = (t) => new ChromaClient({ host: 'localhost', port: Number(process.env.PORT), ssl: true, headers: { Authorization: 'Bearer ' + t } });
const admin = mk(process.env.ADMIN), reader = mk(process.env.READER);
const out = {};
out.heartbeat = typeof (await reader.heartbeat());
const coll = await admin.createCollection({ name: 'docs', embeddingFunction: null });
await coll.add({ ids: Array.from({ length: 100 }, (_, i) => 'd' + i), embeddings: Array.from({ length: 100 }, (_, i) => vec(i)), documents: Array.from({ length: 100 }, (_, i) => 'document ' + i) });
const rc = await reader.getCollection({ name: 'docs', embeddingFunction: null });
out.count = await rc.count();
const res = await rc.query({ queryEmbeddings: [vec(17)], nResults: 5 });
out.top = res.ids[0][0]; out.n = res.ids[0].length;
try { await rc.query({ queryEmbeddings: [vec(1)], nResults: 5, include: ['embeddings'] }); out.readerEmbeddings = 'allowed'; } catch (e) { out.readerEmbeddings = String(e.message ?? e).slice(0, 200); }
try { await rc.add({ ids: ['x'], embeddings: [vec(1)] }); out.readerAdd = 'allowed'; } catch (e) { out.readerAdd = String(e.message ?? e).slice(0, 200); }
try { await rc.query({ queryEmbeddings: [vec(1)], nResults: 500 }); out.readerTopK = 'allowed'; } catch (e) { out.readerTopK = String(e.message ?? e).slice(0, 200); }
const got = await rc.get({ ids: ['d1', 'd2'] });
out.got = got.ids.length;
console.log(JSON.stringify(out));
`;

describe('official clients through the gateway', () => {
  it('@qdrant/js-client-rest: create, upsert 200 x 1536-dim, search, query, count, scroll; refusals surface as HTTP errors', async () => {
    const [admin, reader] = await Promise.all([dev.mint('ada', ['ml-admins']), dev.mint('rita', ['ml-readers'])]);
    const r = await runClient(QDRANT_SCRIPT, { NODE_EXTRA_CA_CERTS: pki.caFile, PORT: String(q.port), ADMIN: admin, READER: reader });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.out, {
      collections: ['docs'],
      top: 42,
      hits: 10,
      vectorInHit: null,
      queryTop: 7,
      count: 200,
      scroll: 20,
      readerUpsert: 403,
      readerVectors: 403,
      adminVectorLen: 1536,
      readerDrop: 403,
    });
    assert.ok(qUp.seen.every((s) => s.headers['api-key'] === QDRANT_KEY && s.headers['authorization'] === undefined));
  });

  it('chromadb: create, add 100 x 1536-dim, query, get, count; refusals for embeddings, add and top-k', async () => {
    const [admin, reader] = await Promise.all([dev.mint('ada', ['ml-admins']), dev.mint('rita', ['ml-readers'])]);
    const r = await runClient(CHROMA_SCRIPT, { NODE_EXTRA_CA_CERTS: pki.caFile, PORT: String(c.port), ADMIN: admin, READER: reader });
    assert.equal(r.code, 0, r.stderr);
    const out = r.out as Record<string, unknown>;
    assert.equal(out.heartbeat, 'number');
    assert.equal(out.count, 100);
    assert.equal(out.top, 'd17');
    assert.equal(out.n, 5);
    assert.equal(out.got, 2);
    for (const k of ['readerEmbeddings', 'readerAdd', 'readerTopK']) assert.notEqual(out[k], 'allowed', k);
    assert.ok(cUp.seen.every((s) => s.headers['x-chroma-token'] === CHROMA_KEY && s.headers['authorization'] === undefined));
    assert.equal(JSON.stringify(out).includes(CHROMA_KEY), false);
  });
});
