// An in-memory vector database speaking the part of the Qdrant REST API (and Chroma's v2 API)
// that the official clients use: collections, upsert, get, search, query, scroll, count,
// delete, with payload filters. `vecgate dev` runs it over HTTPS on loopback as the embedded
// upstream of its `protocol: http` connection, and the tests use it as their HTTP upstream.
// Nothing is persisted; search is exact (every point scored), which is plenty for a few
// thousand points. Requests it does not understand get the error a real server would send
// (404 for unknown routes, 400 for what it does not support, such as named vectors), never a
// guess. The `items` demo collection holds the same ten fruits as PGlite's `items` table.
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEMO_ITEMS } from './demo-items.js';

/** Largest request body the embedded API reads (a 1,000-point upsert of 1536-dim vectors is about 19 MB). */
export const VECTOR_API_MAX_BODY_BYTES = 64 * 1024 * 1024;

type Distance = 'Cosine' | 'Dot' | 'Euclid' | 'Manhattan';
const DISTANCES: readonly Distance[] = ['Cosine', 'Dot', 'Euclid', 'Manhattan'];

interface QPoint {
  id: string | number;
  vector: number[];
  payload: Record<string, unknown>;
}

interface QCollection {
  size: number;
  distance: Distance;
  points: Map<string, QPoint>;
}

interface ChromaCollection {
  id: string;
  name: string;
  metadata: Record<string, unknown> | null;
  records: Map<string, { embedding: number[]; document: string | null; metadata: Record<string, unknown> | null }>;
}

/** A request the API refuses with 400 and this message. */
class BadRequest extends Error {}

/** Decoded JSON request body (an object, or {} when there was none). */
export type JsonDoc = Record<string, any>;

export interface VectorApi {
  /** Answers one request (Qdrant routes, or Chroma's under /api/). */
  handle(method: string, url: URL, doc: JsonDoc, res: ServerResponse): void;
  /** Creates the `items` demo collection (3-dim, Cosine, ten fruits) when it does not exist. */
  seedDemo(): void;
}

export interface VectorApiOptions {
  /** Vector size of a Qdrant collection created without one (tests); by default the size is required. */
  defaultDim?: number;
  /** Headers added to every answer (tests check that upstream headers reach the client). */
  responseHeaders?: Record<string, string>;
}

function dot(a: number[], b: number[]): number {
  let s = 0;
  for (let i = 0; i < a.length && i < b.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Qdrant's score for `distance`: higher is closer for Cosine and Dot, lower for the others. */
function score(distance: Distance, q: number[], v: number[]): number {
  switch (distance) {
    case 'Dot':
      return dot(q, v);
    case 'Cosine': {
      const n = Math.sqrt(dot(q, q) * dot(v, v));
      return n === 0 ? 0 : dot(q, v) / n;
    }
    case 'Euclid': {
      let s = 0;
      for (let i = 0; i < q.length; i++) s += (q[i]! - v[i]!) ** 2;
      return Math.sqrt(s);
    }
    case 'Manhattan': {
      let s = 0;
      for (let i = 0; i < q.length; i++) s += Math.abs(q[i]! - v[i]!);
      return s;
    }
  }
}

/** Reads a request body up to `max` bytes (VECTOR_API_MAX_BODY_BYTES); null when it is larger. */
export function readBody(req: IncomingMessage, max = VECTOR_API_MAX_BODY_BYTES): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n <= max) parts.push(c);
    });
    req.on('end', () => resolve(n > max ? null : Buffer.concat(parts)));
    req.on('error', reject);
  });
}

/** The body as JSON when it is JSON, else {}; throws BadRequest for JSON that does not parse. */
export function parseJsonBody(req: IncomingMessage, body: Buffer): JsonDoc {
  if (body.length === 0 || !(req.headers['content-type'] ?? '').includes('json')) return {};
  try {
    const doc: unknown = JSON.parse(body.toString('utf8'));
    return typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as JsonDoc) : {};
  } catch (err) {
    throw new BadRequest(`the body is not valid JSON: ${(err as Error).message}`);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function vectorOf(v: unknown, size: number, what: string): number[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) throw new BadRequest(`${what} must be an array of numbers`);
  if (v.length !== size) throw new BadRequest(`Wrong input: Vector dimension error: expected dim: ${size}, got ${v.length}`);
  return v as number[];
}

function limitOf(v: unknown, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  if (!Number.isInteger(v) || (v as number) < 0) throw new BadRequest('limit must be a non-negative integer');
  return v as number;
}

/** The value at a payload key (`a.b` reaches into nested objects). */
function payloadValue(payload: Record<string, unknown>, key: string): unknown {
  let v: unknown = payload;
  for (const part of key.split('.')) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/**
 * A Qdrant filter as a predicate: `must` / `should` / `must_not` (nested), conditions on a
 * payload `key` with `match` (`value`, `any`, `except`) or `range` (`gt`, `gte`, `lt`, `lte`),
 * and `has_id`. Anything else is refused rather than ignored.
 */
function pointFilter(f: unknown): (pt: QPoint) => boolean {
  if (f === undefined || f === null) return () => true;
  if (typeof f !== 'object' || Array.isArray(f)) throw new BadRequest('filter must be an object');
  const clauses: ((pt: QPoint) => boolean)[] = [];
  for (const [k, v] of Object.entries(f as JsonDoc)) {
    if (v === null || v === undefined) continue;
    if (k !== 'must' && k !== 'should' && k !== 'must_not') throw new BadRequest(`filter clause "${k}" is not supported by the dev vector API (must, should, must_not are)`);
    const list = (Array.isArray(v) ? v : [v]).map(condition);
    if (k === 'must') clauses.push((pt) => list.every((c) => c(pt)));
    else if (k === 'should') clauses.push((pt) => list.length === 0 || list.some((c) => c(pt)));
    else clauses.push((pt) => !list.some((c) => c(pt)));
  }
  return (pt) => clauses.every((c) => c(pt));
}

function condition(c: unknown): (pt: QPoint) => boolean {
  if (typeof c !== 'object' || c === null) throw new BadRequest('each filter condition must be an object');
  const d = c as JsonDoc;
  if ('must' in d || 'should' in d || 'must_not' in d) return pointFilter(d);
  if (Array.isArray(d['has_id'])) {
    const ids = new Set((d['has_id'] as unknown[]).map(String));
    return (pt) => ids.has(String(pt.id));
  }
  if (typeof d['key'] !== 'string') throw new BadRequest('filter conditions supported by the dev vector API: {key, match}, {key, range}, {has_id}, nested filters');
  const key = d['key'];
  const m = d['match'];
  if (m && typeof m === 'object') {
    if ('value' in m) return (pt) => payloadValue(pt.payload, key) === m.value;
    if (Array.isArray(m.any)) return (pt) => m.any.includes(payloadValue(pt.payload, key));
    if (Array.isArray(m.except)) return (pt) => !m.except.includes(payloadValue(pt.payload, key));
  }
  const r = d['range'];
  if (r && typeof r === 'object') {
    return (pt) => {
      const v = payloadValue(pt.payload, key);
      if (typeof v !== 'number') return false;
      return (r.gt === undefined || v > r.gt) && (r.gte === undefined || v >= r.gte) && (r.lt === undefined || v < r.lt) && (r.lte === undefined || v <= r.lte);
    };
  }
  throw new BadRequest(`the condition on "${key}" is not supported by the dev vector API (match value/any/except and range are)`);
}


export function createVectorApi(opts: VectorApiOptions = {}): VectorApi {
  const qdrant = new Map<string, QCollection>();
  const chroma = new Map<string, ChromaCollection>();
  const json = (res: ServerResponse, status: number, b: unknown): void => sendJson(res, status, b, opts.responseHeaders);

  function qok(res: ServerResponse, result: unknown): void {
    json(res, 200, { result, status: 'ok', time: 0.0001 });
  }

  function qdrantRoute(method: string, p: string, url: URL, doc: JsonDoc, res: ServerResponse): void {
    const s = p.split('/').filter(Boolean);
    if (s.length === 0) return json(res, 200, { title: 'qdrant - vector search engine', version: '1.17.0', commit: 'vecgate-dev' });
    if (s.length === 1 && (s[0] === 'healthz' || s[0] === 'readyz' || s[0] === 'livez')) return json(res, 200, 'healthz check passed');
    if (s[0] !== 'collections') return json(res, 404, { status: { error: `Not found: ${p}` } });
    if (s.length === 1) return qok(res, { collections: [...qdrant.keys()].map((name) => ({ name })) });
    const name = decodeURIComponent(s[1]!);
    const coll = qdrant.get(name);
    if (s.length === 2) {
      if (method === 'PUT') {
        if (coll) throw new BadRequest(`Wrong input: Collection \`${name}\` already exists!`);
        const size = doc['vectors']?.size ?? opts.defaultDim;
        if (!Number.isInteger(size) || size < 1) throw new BadRequest('vectors.size must be a positive integer (named vectors are not supported by the dev vector API)');
        const distance = doc['vectors']?.distance ?? 'Cosine';
        if (!DISTANCES.includes(distance)) throw new BadRequest(`vectors.distance must be one of ${DISTANCES.join(', ')}`);
        qdrant.set(name, { size, distance, points: new Map() });
        return qok(res, true);
      }
      if (method === 'DELETE') return qok(res, qdrant.delete(name));
      if (!coll) return json(res, 404, { status: { error: `Not found: Collection \`${name}\` doesn't exist!` } });
      return qok(res, {
        status: 'green',
        optimizer_status: 'ok',
        points_count: coll.points.size,
        indexed_vectors_count: 0,
        segments_count: 1,
        config: { params: { vectors: { size: coll.size, distance: coll.distance } } },
        payload_schema: {},
      });
    }
    if (s.length === 3 && s[2] === 'exists') return qok(res, { exists: coll !== undefined });
    if (!coll) return json(res, 404, { status: { error: `Not found: Collection \`${name}\` doesn't exist!` } });
    if (s[2] !== 'points') return json(res, 404, { status: { error: `Not found: ${p}` } });
    const rest = s.slice(3).join('/');
    const matches = pointFilter(doc['filter']);
    const selected = (): QPoint[] => [...coll.points.values()].filter(matches);
    const shape = (pt: QPoint, sc?: number) => {
      const withVector = doc['with_vector'] ?? doc['with_vectors'] ?? false;
      const withPayload = doc['with_payload'] ?? (rest === 'search' || rest === 'query' ? false : true);
      return { id: pt.id, version: 0, ...(sc !== undefined ? { score: sc } : {}), payload: withPayload ? pt.payload : null, vector: withVector ? pt.vector : null };
    };
    const ranked = (q: number[], limit: number) => {
      const closerFirst = coll.distance === 'Cosine' || coll.distance === 'Dot' ? -1 : 1;
      return selected()
        .map((pt) => ({ pt, sc: score(coll.distance, q, pt.vector) }))
        .sort((a, b) => closerFirst * (a.sc - b.sc))
        .slice(0, limit)
        .map(({ pt, sc }) => shape(pt, sc));
    };
    if (s.length === 3 && method === 'PUT') {
      const points: QPoint[] = [];
      if (Array.isArray(doc['points'])) {
        for (const pt of doc['points'] as JsonDoc[]) points.push({ id: pt['id'], vector: vectorOf(pt['vector'], coll.size, 'point vector'), payload: pt['payload'] ?? {} });
      } else if (doc['batch'] && Array.isArray(doc['batch'].ids) && Array.isArray(doc['batch'].vectors)) {
        const b = doc['batch'];
        b.ids.forEach((id: string | number, i: number) => points.push({ id, vector: vectorOf(b.vectors[i], coll.size, 'point vector'), payload: b.payloads?.[i] ?? {} }));
      } else throw new BadRequest('send points as {"points": [...]} or {"batch": {"ids": [...], "vectors": [...]}}');
      for (const pt of points) {
        if (typeof pt.id !== 'number' && typeof pt.id !== 'string') throw new BadRequest('point ids must be unsigned integers or UUID strings');
      }
      for (const pt of points) coll.points.set(String(pt.id), pt);
      return qok(res, { operation_id: 1, status: url.searchParams.get('wait') === 'true' ? 'completed' : 'acknowledged' });
    }
    if (s.length === 3 && method === 'POST') {
      if (!Array.isArray(doc['ids'])) throw new BadRequest('ids must be an array');
      const found = (doc['ids'] as (string | number)[]).map((id) => coll.points.get(String(id))).filter((x): x is QPoint => x !== undefined);
      return qok(res, found.map((pt) => shape(pt)));
    }
    if (s.length === 4 && method === 'GET' && rest !== 'count') {
      const pt = coll.points.get(decodeURIComponent(s[3]!));
      if (!pt) return json(res, 404, { status: { error: `Not found: No point with id ${s[3]} found` } });
      return qok(res, { id: pt.id, payload: pt.payload, vector: pt.vector });
    }
    if (method === 'POST') {
      switch (rest) {
        case 'search':
          return qok(res, ranked(vectorOf(doc['vector'], coll.size, 'vector'), limitOf(doc['limit'], 10)));
        case 'query': {
          const q = Array.isArray(doc['query']) ? doc['query'] : doc['query']?.nearest;
          return qok(res, { points: ranked(vectorOf(q, coll.size, 'query (a vector, or {"nearest": vector})'), limitOf(doc['limit'], 10)) });
        }
        case 'scroll': {
          const all = selected().slice(0, limitOf(doc['limit'], 10));
          return qok(res, { points: all.map((pt) => shape(pt)), next_page_offset: null });
        }
        case 'count':
          return qok(res, { count: selected().length });
        case 'delete':
          for (const id of (Array.isArray(doc['points']) ? doc['points'] : []) as (string | number)[]) coll.points.delete(String(id));
          if (doc['filter']) for (const pt of selected()) coll.points.delete(String(pt.id));
          return qok(res, { operation_id: 2, status: 'completed' });
      }
    }
    return json(res, 404, { status: { error: `Not found: ${method} ${p}` } });
  }

  function chromaCollectionJson(c: ChromaCollection) {
    const first = c.records.values().next();
    const dimension = first.done ? (opts.defaultDim ?? null) : first.value.embedding.length;
    return { id: c.id, name: c.name, metadata: c.metadata, configuration_json: {}, tenant: 'default_tenant', database: 'default_database', dimension, log_position: 0, version: 0 };
  }

  function chromaRoute(method: string, p: string, doc: JsonDoc, res: ServerResponse): void {
    const s = p.split('/').filter(Boolean); // api, v2, ...
    const tail = s.slice(2).join('/');
    if (tail === 'heartbeat') return json(res, 200, { 'nanosecond heartbeat': Date.now() * 1e6 });
    if (tail === 'version') return json(res, 200, '1.0.0');
    if (tail === 'healthcheck') return json(res, 200, { is_executor_ready: true, is_log_client_ready: true });
    if (tail === 'auth/identity') return json(res, 200, { user_id: '', tenant: 'default_tenant', databases: ['default_database'] });
    if (tail === 'pre-flight-checks') return json(res, 200, { max_batch_size: 1000, supports_base64_encoding: false });
    // api/v2/tenants/{t}/databases/{d}/collections[/{id}[/op]]
    if (s[2] === 'tenants' && s[4] === 'databases' && s[6] === 'collections') {
      if (s.length === 7 && method === 'POST') {
        const existing = [...chroma.values()].find((c) => c.name === doc['name']);
        if (existing && doc['get_or_create']) return json(res, 200, chromaCollectionJson(existing));
        if (existing) return json(res, 409, { error: 'UniqueConstraintError', message: `Collection ${existing.name} already exists` });
        if (typeof doc['name'] !== 'string' || doc['name'] === '') throw new BadRequest('name must be a non-empty string');
        const c: ChromaCollection = { id: randomUUID(), name: doc['name'], metadata: doc['metadata'] ?? null, records: new Map() };
        chroma.set(c.id, c);
        return json(res, 200, chromaCollectionJson(c));
      }
      if (s.length === 7) return json(res, 200, [...chroma.values()].map(chromaCollectionJson));
      const key = decodeURIComponent(s[7]!);
      const c = chroma.get(key) ?? [...chroma.values()].find((x) => x.name === key);
      if (!c) return json(res, 404, { error: 'NotFoundError', message: `Collection [${key}] does not exist` });
      if (s.length === 8) {
        if (method === 'DELETE') {
          chroma.delete(c.id);
          return json(res, 200, {});
        }
        return json(res, 200, chromaCollectionJson(c));
      }
      if (doc['where'] || doc['where_document']) throw new BadRequest('where filters are not supported by the dev vector API');
      const include: string[] = doc['include'] ?? ['documents', 'metadatas'];
      switch (s[8]) {
        case 'add':
        case 'upsert': {
          const ids = doc['ids'];
          const embeddings = doc['embeddings'];
          if (!Array.isArray(ids) || !Array.isArray(embeddings) || embeddings.length !== ids.length) throw new BadRequest('ids and embeddings must be arrays of the same length');
          ids.forEach((id: string, i: number) => c.records.set(String(id), { embedding: embeddings[i], document: doc['documents']?.[i] ?? null, metadata: doc['metadatas']?.[i] ?? null }));
          return json(res, 201, {});
        }
        case 'count':
          return json(res, 200, c.records.size);
        case 'delete':
          for (const id of (Array.isArray(doc['ids']) ? doc['ids'] : []) as string[]) c.records.delete(id);
          return json(res, 200, {});
        case 'get': {
          const ids = (doc['ids'] as string[] | undefined) ?? [...c.records.keys()];
          const rows = ids.filter((id) => c.records.has(id)).slice(0, doc['limit'] ?? undefined);
          return json(res, 200, {
            ids: rows,
            embeddings: include.includes('embeddings') ? rows.map((id) => c.records.get(id)!.embedding) : null,
            documents: include.includes('documents') ? rows.map((id) => c.records.get(id)!.document) : null,
            metadatas: include.includes('metadatas') ? rows.map((id) => c.records.get(id)!.metadata) : null,
            uris: null,
            include,
          });
        }
        case 'query': {
          if (!Array.isArray(doc['query_embeddings'])) throw new BadRequest('query_embeddings must be an array of vectors');
          const n = limitOf(doc['n_results'], 10);
          const per = (q: number[]) =>
            [...c.records.entries()]
              .map(([id, r]) => ({ id, r, d: -dot(q, r.embedding) }))
              .sort((a, b) => a.d - b.d)
              .slice(0, n);
          const results = (doc['query_embeddings'] as number[][]).map(per);
          const inc: string[] = doc['include'] ?? ['metadatas', 'documents', 'distances'];
          return json(res, 200, {
            ids: results.map((r) => r.map((x) => x.id)),
            distances: inc.includes('distances') ? results.map((r) => r.map((x) => x.d)) : null,
            embeddings: inc.includes('embeddings') ? results.map((r) => r.map((x) => x.r.embedding)) : null,
            documents: inc.includes('documents') ? results.map((r) => r.map((x) => x.r.document)) : null,
            metadatas: inc.includes('metadatas') ? results.map((r) => r.map((x) => x.r.metadata)) : null,
            uris: null,
            include: inc,
          });
        }
      }
    }
    return json(res, 404, { error: 'NotFoundError', message: `no route ${method} ${p}` });
  }

  return {
    handle(method, url, doc, res) {
      try {
        if (url.pathname.startsWith('/api/')) chromaRoute(method, url.pathname, doc, res);
        else qdrantRoute(method, url.pathname, url, doc, res);
      } catch (err) {
        if (!(err instanceof BadRequest)) throw err;
        if (url.pathname.startsWith('/api/')) json(res, 400, { error: 'InvalidArgumentError', message: err.message });
        else json(res, 400, { status: { error: err.message } });
      }
    },
    seedDemo() {
      if (qdrant.has('items')) return;
      const points = new Map<string, QPoint>();
      DEMO_ITEMS.forEach(([title, vector], i) => points.set(String(i + 1), { id: i + 1, vector: [...vector], payload: { title } }));
      qdrant.set('items', { size: 3, distance: 'Cosine', points });
    },
  };
}

export interface VectorApiUpstream {
  port: number;
  url: string;
  /** The `api-key` the upstream requires (like Qdrant's): the gateway injects it. */
  apiKey: string;
  close(): Promise<void>;
}

/**
 * The embedded vector API over HTTPS on loopback, requiring `api-key` on every request as
 * Qdrant does, seeded with the `items` demo collection.
 */
export async function startVectorApiUpstream(opts: { certFile: string; keyFile: string; port?: number }): Promise<VectorApiUpstream> {
  const apiKey = randomBytes(24).toString('base64url');
  const api = createVectorApi();
  api.seedDemo();
  const server = https.createServer({ cert: readFileSync(opts.certFile), key: readFileSync(opts.keyFile) }, (req, res) => {
    void (async () => {
      const body = await readBody(req);
      if (req.headers['api-key'] !== apiKey) return sendJson(res, 401, { status: { error: 'Must provide an API key or an Authorization bearer token' } });
      if (body === null) return sendJson(res, 413, { status: { error: `Payload error: the body is over ${VECTOR_API_MAX_BODY_BYTES} bytes` } });
      const url = new URL(req.url ?? '/', 'https://localhost');
      let doc: JsonDoc;
      try {
        doc = parseJsonBody(req, body);
      } catch (err) {
        return sendJson(res, 400, { status: { error: (err as Error).message } });
      }
      api.handle(req.method ?? 'GET', url, doc, res);
    })().catch((err: Error) => {
      if (!res.headersSent) sendJson(res, 500, { status: { error: err.message } });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `https://127.0.0.1:${port}`,
    apiKey,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
