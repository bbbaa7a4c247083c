// vecgate dev's embedded vector API on its own (src/dev/vector-api.ts): the key it requires,
// the Qdrant semantics it implements (distances, filters, upsert forms) and the errors it
// gives for what it does not do, instead of a silently wrong answer.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { writeTestPki } from '../../src/dev/pki.js';
import { startVectorApiUpstream, type VectorApiUpstream } from '../../src/dev/vector-api.js';

let dir: string;
let ca: Buffer;
let api: VectorApiUpstream;

function call(method: string, urlPath: string, body?: unknown, opts: { key?: string | null; raw?: string } = {}): Promise<{ status: number; json: any }> {
  const data = opts.raw !== undefined ? Buffer.from(opts.raw) : body === undefined ? null : Buffer.from(JSON.stringify(body));
  const key = opts.key === undefined ? api.apiKey : opts.key;
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: api.port, servername: 'localhost', method, path: urlPath, ca, headers: { ...(key ? { 'api-key': key } : {}), ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}) } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(parts).toString('utf8')) }));
      },
    );
    req.on('error', reject);
    req.end(data ?? undefined);
  });
}

describe('dev vector API', () => {
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vg-vector-api-'));
    const pki = await writeTestPki(dir);
    ca = readFileSync(pki.caCert);
    api = await startVectorApiUpstream({ certFile: pki.serverCert, keyFile: pki.serverKey });
  });

  after(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('requires its api-key, like Qdrant', async () => {
    assert.equal((await call('GET', '/collections', undefined, { key: null })).status, 401);
    assert.equal((await call('GET', '/collections', undefined, { key: 'wrong' })).status, 401);
    const ok = await call('GET', '/collections');
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json.result.collections, [{ name: 'items' }]);
  });

  test('the seeded items collection: 10 points, cosine similarity, closest first', async () => {
    const info = await call('GET', '/collections/items');
    assert.equal(info.json.result.points_count, 10);
    assert.deepEqual(info.json.result.config.params.vectors, { size: 3, distance: 'Cosine' });
    const hits = await call('POST', '/collections/items/points/search', { vector: [0.1, 0.2, 1], limit: 2, with_payload: true });
    assert.deepEqual(hits.json.result.map((h: any) => h.payload.title), ['blueberry', 'grape']);
    assert.ok(Math.abs(hits.json.result[0].score - 1) < 1e-9);
    assert.equal(hits.json.result[0].vector, null);
  });

  test('Euclid ranks the nearest first (lowest distance); Dot by the highest product', async () => {
    assert.equal((await call('PUT', '/collections/e', { vectors: { size: 2, distance: 'Euclid' } })).status, 200);
    assert.equal((await call('PUT', '/collections/e/points?wait=true', { batch: { ids: [1, 2, 3], vectors: [[0, 0], [3, 4], [10, 10]] } })).status, 200);
    const e = await call('POST', '/collections/e/points/search', { vector: [3, 3], limit: 3 });
    assert.deepEqual(e.json.result.map((h: any) => h.id), [2, 1, 3]);
    assert.equal(e.json.result[0].score, 1);
    assert.equal((await call('PUT', '/collections/d', { vectors: { size: 2, distance: 'Dot' } })).status, 200);
    await call('PUT', '/collections/d/points', { points: [{ id: 'a', vector: [1, 0] }, { id: 'b', vector: [5, 5] }] });
    const d = await call('POST', '/collections/d/points/query', { query: { nearest: [1, 1] }, limit: 1 });
    assert.deepEqual(d.json.result.points.map((h: any) => h.id), ['b']);
  });

  test('payload filters: must, should, must_not, match value/any, range, has_id, nested keys', async () => {
    await call('PUT', '/collections/f', { vectors: { size: 2, distance: 'Dot' } });
    const points = Array.from({ length: 6 }, (_, i) => ({ id: i + 1, vector: [1, i], payload: { n: i + 1, kind: i % 2 === 0 ? 'odd' : 'even', meta: { lang: i < 3 ? 'en' : 'de' } } }));
    await call('PUT', '/collections/f/points?wait=true', { points });
    const count = async (filter: unknown) => (await call('POST', '/collections/f/points/count', { filter })).json.result.count;
    assert.equal(await count({ must: [{ key: 'kind', match: { value: 'odd' } }] }), 3);
    assert.equal(await count({ must: [{ key: 'n', range: { gte: 2, lt: 5 } }] }), 3);
    assert.equal(await count({ must_not: [{ key: 'meta.lang', match: { value: 'en' } }] }), 3);
    assert.equal(await count({ should: [{ key: 'n', match: { any: [1, 6] } }, { has_id: [3] }] }), 3);
    assert.equal(await count({ must: [{ key: 'kind', match: { value: 'even' } }, { should: [{ key: 'n', match: { value: 2 } }, { key: 'n', match: { value: 6 } }] }] }), 2);
    const scrolled = await call('POST', '/collections/f/points/scroll', { filter: { must: [{ key: 'n', match: { except: [1, 2, 3, 4] } }] }, limit: 10 });
    assert.deepEqual(scrolled.json.result.points.map((p: any) => p.id), [5, 6]);
    await call('POST', '/collections/f/points/delete', { filter: { must: [{ key: 'kind', match: { value: 'even' } }] } });
    assert.equal(await count(undefined), 3);
  });

  test('what it does not do is a 400 that says so, not a wrong answer', async () => {
    const unsupported = await call('POST', '/collections/items/points/count', { filter: { min_should: { conditions: [] } } });
    assert.equal(unsupported.status, 400);
    assert.match(unsupported.json.status.error, /min_should.*not supported/);
    const geo = await call('POST', '/collections/items/points/search', { vector: [1, 0, 0], filter: { must: [{ key: 'loc', geo_radius: {} }] } });
    assert.equal(geo.status, 400);
    const dim = await call('POST', '/collections/items/points/search', { vector: [1, 0], limit: 1 });
    assert.equal(dim.status, 400);
    assert.match(dim.json.status.error, /expected dim: 3, got 2/);
    const named = await call('PUT', '/collections/n', { vectors: { text: { size: 4, distance: 'Dot' } } });
    assert.equal(named.status, 400);
    const bad = await call('POST', '/collections/items/points/search', undefined, { raw: '{"vector": [1,' });
    assert.equal(bad.status, 400);
    assert.match(bad.json.status.error, /not valid JSON/);
    assert.equal((await call('PUT', '/collections/items', { vectors: { size: 3 } })).status, 400); // already exists
    assert.equal((await call('POST', '/collections/nope/points/search', { vector: [1] })).status, 404);
    assert.equal((await call('GET', '/snapshots')).status, 404);
  });
});
