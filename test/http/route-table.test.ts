// Every flavor's route table: read / write / admin, the collection, and what the guard inspects.
// Unknown routes must come out admin.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { accessAllows, classifyRoute, unsafePathReason } from '../../workers/http/route-table.js';
import type { HttpFlavor } from '../../workers/http/route-table.js';

type Row = [method: string, path: string, access: 'read' | 'write' | 'admin', collection?: string | null];

function check(flavor: HttpFlavor, rows: Row[]): void {
  for (const [method, path, access, collection] of rows) {
    const d = classifyRoute(flavor, method, path);
    assert.equal(d.access, access, `${flavor} ${method} ${path} -> ${d.operation}`);
    if (collection !== undefined) assert.equal(d.collection, collection, `${flavor} ${method} ${path} collection`);
  }
}

describe('route tables', () => {
  it('qdrant', () => {
    check('qdrant', [
      ['GET', '/', 'read'],
      ['GET', '/collections', 'read'],
      ['GET', '/collections/docs', 'read', 'docs'],
      ['POST', '/collections/docs/points/search', 'read', 'docs'],
      ['POST', '/collections/docs/points/search/batch', 'read', 'docs'],
      ['POST', '/collections/docs/points/query', 'read', 'docs'],
      ['POST', '/collections/docs/points/scroll', 'read', 'docs'],
      ['POST', '/collections/docs/points/recommend', 'read', 'docs'],
      ['POST', '/collections/docs/points/discover', 'read', 'docs'],
      ['POST', '/collections/docs/points/count', 'read', 'docs'],
      ['POST', '/collections/docs/points', 'read', 'docs'],
      ['GET', '/collections/docs/points/7', 'read', 'docs'],
      ['PUT', '/collections/docs/points', 'write', 'docs'],
      ['POST', '/collections/docs/points/delete', 'write'],
      ['POST', '/collections/docs/points/payload', 'write'],
      ['PUT', '/collections/docs/points/payload', 'write'],
      ['POST', '/collections/docs/points/payload/delete', 'write'],
      ['PUT', '/collections/docs/points/vectors', 'write'],
      ['PUT', '/collections/docs', 'admin', 'docs'],
      ['PATCH', '/collections/docs', 'admin', 'docs'],
      ['DELETE', '/collections/docs', 'admin', 'docs'],
      ['PUT', '/collections/docs/index', 'admin', 'docs'],
      ['POST', '/collections/docs/snapshots', 'admin', 'docs'],
      ['GET', '/collections/docs/snapshots', 'admin', 'docs'],
      ['POST', '/collections/aliases', 'admin', null],
      ['GET', '/cluster', 'admin'],
      ['DELETE', '/collections/docs/points/search', 'admin'],
      ['GET', '/telemetry', 'admin'],
    ]);
    assert.equal(classifyRoute('qdrant', 'POST', '/collections/docs/points/search').inspect, 'json');
    assert.equal(classifyRoute('qdrant', 'GET', '/collections/docs/points/7').inspect, 'returns-vectors');
    assert.equal(classifyRoute('qdrant', 'PUT', '/collections/docs/points').inspect, null);
  });

  it('chroma v1 and v2', () => {
    const c = '/api/v2/tenants/default_tenant/databases/default_database/collections';
    check('chroma', [
      ['GET', '/api/v2/heartbeat', 'read'],
      ['GET', '/api/v2/version', 'read'],
      ['GET', '/api/v2/auth/identity', 'read'],
      ['GET', c, 'read'],
      ['POST', c, 'admin'],
      ['GET', `${c}/abc`, 'read', 'abc'],
      ['PUT', `${c}/abc`, 'admin', 'abc'],
      ['DELETE', `${c}/abc`, 'admin', 'abc'],
      ['POST', `${c}/abc/query`, 'read', 'abc'],
      ['POST', `${c}/abc/get`, 'read', 'abc'],
      ['GET', `${c}/abc/count`, 'read', 'abc'],
      ['POST', `${c}/abc/add`, 'write', 'abc'],
      ['POST', `${c}/abc/upsert`, 'write', 'abc'],
      ['POST', `${c}/abc/update`, 'write', 'abc'],
      ['POST', `${c}/abc/delete`, 'write', 'abc'],
      ['POST', `${c}/abc/fork`, 'admin', 'abc'],
      ['POST', '/api/v2/tenants', 'admin'],
      ['POST', '/api/v2/tenants/t/databases', 'admin'],
      ['DELETE', '/api/v2/tenants/t/databases/d', 'admin'],
      ['POST', '/api/v2/reset', 'admin'],
      ['GET', '/api/v1/heartbeat', 'read'],
      ['GET', '/api/v1/version', 'read'],
      ['POST', '/api/v1/collections/abc/query', 'read', 'abc'],
      ['POST', '/api/v1/collections/abc/get', 'read', 'abc'],
      ['GET', '/api/v1/collections/abc/count', 'read', 'abc'],
      ['POST', '/api/v1/collections/abc/add', 'write', 'abc'],
      ['POST', '/api/v1/collections/abc/upsert', 'write', 'abc'],
      ['POST', '/api/v1/collections/abc/delete', 'write', 'abc'],
      ['POST', '/api/v1/collections', 'admin'],
      ['DELETE', '/api/v1/collections/abc', 'admin', 'abc'],
      ['POST', '/api/v1/tenants', 'admin'],
      ['POST', '/api/v1/databases', 'admin'],
    ]);
  });

  it('weaviate', () => {
    check('weaviate', [
      ['POST', '/v1/graphql', 'read'],
      ['GET', '/v1/meta', 'read'],
      ['GET', '/v1/objects/Article/1', 'read', 'Article'],
      ['POST', '/v1/objects', 'write'],
      ['PUT', '/v1/objects/Article/1', 'write', 'Article'],
      ['DELETE', '/v1/objects/Article/1', 'write', 'Article'],
      ['POST', '/v1/batch/objects', 'write'],
      ['DELETE', '/v1/batch/objects', 'write'],
      ['GET', '/v1/schema', 'read'],
      ['POST', '/v1/schema', 'admin'],
      ['DELETE', '/v1/schema/Article', 'admin', 'Article'],
      ['PUT', '/v1/schema/Article', 'admin', 'Article'],
      ['POST', '/v1/backups/filesystem', 'admin'],
    ]);
  });

  it('milvus REST v2', () => {
    check('milvus', [
      ['POST', '/v2/vectordb/entities/search', 'read'],
      ['POST', '/v2/vectordb/entities/query', 'read'],
      ['POST', '/v2/vectordb/entities/get', 'read'],
      ['POST', '/v2/vectordb/entities/insert', 'write'],
      ['POST', '/v2/vectordb/entities/upsert', 'write'],
      ['POST', '/v2/vectordb/entities/delete', 'write'],
      ['POST', '/v2/vectordb/collections/create', 'admin'],
      ['POST', '/v2/vectordb/collections/drop', 'admin'],
      ['POST', '/v2/vectordb/collections/describe', 'read'],
      ['POST', '/v2/vectordb/indexes/create', 'admin'],
      ['GET', '/v2/vectordb/entities/search', 'admin'],
    ]);
  });

  it('opensearch', () => {
    check('opensearch', [
      ['GET', '/docs/_search', 'read', 'docs'],
      ['POST', '/docs/_search', 'read', 'docs'],
      ['POST', '/_search', 'read', null],
      ['POST', '/_msearch', 'read'],
      ['GET', '/docs/_count', 'read', 'docs'],
      ['GET', '/docs/_doc/1', 'read', 'docs'],
      ['PUT', '/docs/_doc/1', 'write', 'docs'],
      ['POST', '/docs/_doc', 'write', 'docs'],
      ['DELETE', '/docs/_doc/1', 'write', 'docs'],
      ['POST', '/_bulk', 'write'],
      ['POST', '/docs/_bulk', 'write', 'docs'],
      ['POST', '/docs/_update/1', 'write', 'docs'],
      ['PUT', '/docs', 'admin', 'docs'],
      ['DELETE', '/docs', 'admin', 'docs'],
      ['PUT', '/docs/_mapping', 'admin', 'docs'],
      ['GET', '/docs/_mapping', 'admin', 'docs'],
      ['PUT', '/docs/_settings', 'admin', 'docs'],
      ['GET', '/_cat/indices', 'admin'],
      // `_search` is never an index name: /_search/_doc/1 is not a document read.
      ['GET', '/_search/_doc/1', 'admin'],
    ]);
  });

  it('generic', () => {
    check('generic', [
      ['GET', '/anything', 'read'],
      ['HEAD', '/anything', 'read'],
      ['POST', '/anything', 'write'],
      ['DELETE', '/anything', 'write'],
    ]);
  });

  it('access ranks', () => {
    assert.equal(accessAllows('read', 'read'), true);
    assert.equal(accessAllows('read', 'write'), false);
    assert.equal(accessAllows('write', 'admin'), false);
    assert.equal(accessAllows('admin', 'write'), true);
  });

  it('refuses paths whose routing could differ upstream', () => {
    for (const p of ['/collections/a%2Fb/points/search', '/collections/a/points/%2e%2e', '/a/../b', '/a/./b', '//a', '/a\\b', 'a', '/a b'])
      assert.notEqual(unsafePathReason(p), null, p);
    for (const p of ['/collections/docs/points/search', '/api/v2/tenants/t/databases/d/collections/x/query', '/docs/_search', '/'])
      assert.equal(unsafePathReason(p), null, p);
  });

  it('repeats give the same frozen decision; flavor, method and path each still count', () => {
    const path = '/collections/docs/points/search';
    const first = classifyRoute('qdrant', 'POST', path);
    assert.equal(classifyRoute('qdrant', 'POST', path), first);
    assert.ok(Object.isFrozen(first));
    assert.equal(classifyRoute('qdrant', 'DELETE', path).access, 'admin'); // unlisted method on that path
    assert.equal(classifyRoute('generic', 'POST', path).access, 'write');
    assert.equal(classifyRoute('qdrant', 'POST', '/collections/other/points/search').collection, 'other');
    // More distinct routes than the cache keeps, then the first again: still right.
    for (let i = 0; i < 1500; i++) assert.equal(classifyRoute('qdrant', 'GET', `/collections/c${i}/points/${i}`).collection, `c${i}`);
    assert.deepEqual(classifyRoute('qdrant', 'POST', path), first);
    const long = `/collections/${'x'.repeat(300)}/points/search`;
    assert.equal(classifyRoute('qdrant', 'POST', long).collection, 'x'.repeat(300));
  });
});
