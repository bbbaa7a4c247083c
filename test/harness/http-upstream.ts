// Test fixtures for the HTTP data path: a throwaway PKI made with the openssl CLI, and a
// fixture upstream (node:https on loopback) answering the Qdrant and Chroma REST subset the
// official JS clients call, in memory, with real vector math and realistic payload sizes
// (1536-dim vectors as JSON). It checks the injected upstream credential like the real servers
// do, and records what reached it so tests can prove what was (not) forwarded.
import { writeTestPki } from '../../src/dev/pki.js';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface TestPki {
  dir: string;
  caFile: string;
  /** localhost / 127.0.0.1 / ::1 leaf signed by the CA (gateway and upstream). */
  certFile: string;
  keyFile: string;
  /** A leaf for "wrong.invalid" only, signed by the same CA: fails the host name check. */
  wrongHostCertFile: string;
  wrongHostKeyFile: string;
  /** A self-signed localhost cert not from the CA: fails the chain check. */
  otherCaCertFile: string;
  otherCaKeyFile: string;
  cleanup(): void;
}

/** A CA and leaves on P-256 (the one test PKI of src/dev/pki.ts), in a temp dir that `cleanup()` removes. */
export async function makeTestPki(): Promise<TestPki> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vg-http-pki-'));
  const pki = await writeTestPki(dir);
  return {
    dir,
    caFile: pki.caCert,
    certFile: pki.serverCert,
    keyFile: pki.serverKey,
    wrongHostCertFile: pki.wrongNameCert,
    wrongHostKeyFile: pki.wrongNameKey,
    otherCaCertFile: pki.untrustedServerCert,
    otherCaKeyFile: pki.untrustedServerKey,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** One 1536-dim vector: the size of an OpenAI text-embedding-3-small embedding. */
export const FIXTURE_DIM = 1536;

export function fixtureVector(seed: number, dim = FIXTURE_DIM): number[] {
  const v: number[] = new Array(dim);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < dim; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    v[i] = (x / 0xffffffff) * 2 - 1;
  }
  return v;
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  bodyBytes: number;
}

export interface FixtureUpstreamOptions {
  certFile: string;
  keyFile: string;
  /** Header the upstream requires (like Qdrant `api-key`), checked on every request. */
  credential: { header: string; value: string } | null;
}

export interface FixtureUpstream {
  port: number;
  url: string;
  /** Every request that reached the upstream, in order. */
  seen: SeenRequest[];
  /** Sockets the upstream accepted (keep-alive reuse shows as fewer sockets than requests). */
  sockets(): number;
  /** Bytes of /__big responses the upstream has handed to its socket so far. */
  bigBytesSent(): number;
  close(): Promise<void>;
}

interface QPoint {
  id: string | number;
  vector: number[];
  payload: Record<string, unknown>;
}

interface ChromaCollection {
  id: string;
  name: string;
  metadata: Record<string, unknown> | null;
  records: Map<string, { embedding: number[]; document: string | null; metadata: Record<string, unknown> | null }>;
}

function dot(a: number[], b: number[]): number {
  let s = 0;
  for (let i = 0; i < a.length && i < b.length; i++) s += a[i]! * b[i]!;
  return s;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-upstream': 'fixture' });
  res.end(text);
}

export async function startFixtureUpstream(opts: FixtureUpstreamOptions): Promise<FixtureUpstream> {
  const seen: SeenRequest[] = [];
  const qdrant = new Map<string, { size: number; points: Map<string, QPoint> }>();
  const chroma = new Map<string, ChromaCollection>();
  let socketCount = 0;
  let bigSent = 0;

  const server = https.createServer({ cert: readFileSync(opts.certFile), key: readFileSync(opts.keyFile), keepAliveTimeout: 30_000 }, (req, res) => {
    void handle(req, res).catch((err: Error) => {
      if (!res.headersSent) json(res, 500, { status: { error: err.message } });
      else res.destroy();
    });
  });
  server.on('connection', () => socketCount++);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://fixture');
    const p = url.pathname;
    // Test hooks that must not read the body first.
    if (p === '/__hang') return; // never answers: the gateway's response timeout must fire
    const body = await readBody(req);
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: body.length });
    if (opts.credential && req.headers[opts.credential.header.toLowerCase()] !== opts.credential.value) {
      json(res, 401, { status: { error: 'Must provide an API key or an Authorization bearer token' } });
      return;
    }
    const doc = body.length > 0 && (req.headers['content-type'] ?? '').includes('json') ? (JSON.parse(body.toString('utf8')) as Record<string, any>) : {};
    if (p === '/__echo') {
      // Like a real server, never reflect the credential (tests read it from `seen`).
      const { [opts.credential?.header.toLowerCase() ?? '']: _secret, ...headers } = req.headers;
      json(res, 200, { method: req.method, bodyBytes: body.length, bodySha256: createHash('sha256').update(body).digest('hex'), headers });
      return;
    }
    if (p === '/__big') {
      // Streams N bytes in 64 KB writes, honouring backpressure; chunked unless ?length=1.
      const n = Number(url.searchParams.get('bytes') ?? '0');
      const withLength = url.searchParams.get('length') === '1';
      res.writeHead(200, withLength ? { 'content-type': 'application/octet-stream', 'content-length': n } : { 'content-type': 'application/octet-stream' });
      const block = Buffer.alloc(64 * 1024, 0x61);
      let left = n;
      const more = (): void => {
        while (left > 0) {
          const c = block.subarray(0, Math.min(block.length, left));
          left -= c.length;
          bigSent += c.length;
          if (!res.write(c)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
      return;
    }
    if (p === '/__cut') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1_000_000 });
      res.write(Buffer.alloc(1000));
      setTimeout(() => res.destroy(), 20);
      return;
    }
    if (p.startsWith('/api/')) return chromaRoute(req.method ?? 'GET', p, doc, res);
    return qdrantRoute(req.method ?? 'GET', p, url, doc, res);
  }

  function qok(res: ServerResponse, result: unknown): void {
    json(res, 200, { result, status: 'ok', time: 0.0001 });
  }

  function qdrantRoute(method: string, p: string, url: URL, doc: Record<string, any>, res: ServerResponse): void {
    const s = p.split('/').filter(Boolean);
    if (s.length === 0) return json(res, 200, { title: 'qdrant - vector search engine', version: '1.17.0', commit: 'fixture' });
    if (s[0] !== 'collections') return json(res, 404, { status: { error: `Not found: ${p}` } });
    if (s.length === 1) return qok(res, { collections: [...qdrant.keys()].map((name) => ({ name })) });
    const name = decodeURIComponent(s[1]!);
    const coll = qdrant.get(name);
    if (s.length === 2) {
      if (method === 'PUT') {
        const size = Number(doc.vectors?.size ?? FIXTURE_DIM);
        qdrant.set(name, { size, points: new Map() });
        return qok(res, true);
      }
      if (method === 'DELETE') return qok(res, qdrant.delete(name));
      if (!coll) return json(res, 404, { status: { error: `Collection \`${name}\` doesn't exist!` } });
      return qok(res, { status: 'green', optimizer_status: 'ok', points_count: coll.points.size, indexed_vectors_count: 0, segments_count: 1, config: { params: { vectors: { size: coll.size, distance: 'Dot' } } }, payload_schema: {} });
    }
    if (s[2] === 'exists') return qok(res, { exists: coll !== undefined });
    if (!coll) return json(res, 404, { status: { error: `Collection \`${name}\` doesn't exist!` } });
    const rest = s.slice(3).join('/');
    const shape = (pt: QPoint, score?: number) => {
      const withVector = doc.with_vector ?? doc.with_vectors ?? false;
      const withPayload = doc.with_payload ?? (rest === 'search' || rest === 'query' ? false : true);
      return { id: pt.id, version: 0, ...(score !== undefined ? { score } : {}), payload: withPayload ? pt.payload : null, vector: withVector ? pt.vector : null };
    };
    const ranked = (q: number[], limit: number) =>
      [...coll.points.values()]
        .map((pt) => ({ pt, score: dot(q, pt.vector) }))
        .sort((a, b) => b.score - a.score)
        .slice(0, limit)
        .map(({ pt, score }) => shape(pt, score));
    if (s[2] === 'points') {
      if (s.length === 3 && method === 'PUT') {
        for (const pt of doc.points as QPoint[]) coll.points.set(String(pt.id), { id: pt.id, vector: pt.vector, payload: pt.payload ?? {} });
        return qok(res, { operation_id: 1, status: url.searchParams.get('wait') === 'true' ? 'completed' : 'acknowledged' });
      }
      if (s.length === 3 && method === 'POST') return qok(res, (doc.ids as (string | number)[]).map((id) => coll.points.get(String(id))).filter((x): x is QPoint => !!x).map((pt) => shape(pt)));
      if (s.length === 4 && method === 'GET' && rest !== 'count') {
        const pt = coll.points.get(decodeURIComponent(s[3]!));
        if (!pt) return json(res, 404, { status: { error: 'Not found' } });
        return qok(res, { id: pt.id, payload: pt.payload, vector: pt.vector });
      }
      switch (s.slice(3).join('/')) {
        case 'search':
          return qok(res, ranked(doc.vector as number[], Number(doc.limit ?? 10)));
        case 'query':
          return qok(res, { points: ranked(doc.query as number[], Number(doc.limit ?? 10)) });
        case 'scroll': {
          const all = [...coll.points.values()].slice(0, Number(doc.limit ?? 10));
          return qok(res, { points: all.map((pt) => shape(pt)), next_page_offset: null });
        }
        case 'count':
          return qok(res, { count: coll.points.size });
        case 'delete':
          for (const id of (doc.points ?? []) as (string | number)[]) coll.points.delete(String(id));
          return qok(res, { operation_id: 2, status: 'completed' });
      }
    }
    return json(res, 404, { status: { error: `Not found: ${p}` } });
  }

  function chromaCollectionJson(c: ChromaCollection) {
    return { id: c.id, name: c.name, metadata: c.metadata, configuration_json: {}, tenant: 'default_tenant', database: 'default_database', dimension: FIXTURE_DIM, log_position: 0, version: 0 };
  }

  function chromaRoute(method: string, p: string, doc: Record<string, any>, res: ServerResponse): void {
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
        const existing = [...chroma.values()].find((c) => c.name === doc.name);
        if (existing && doc.get_or_create) return json(res, 200, chromaCollectionJson(existing));
        const c: ChromaCollection = { id: randomUUID(), name: String(doc.name), metadata: doc.metadata ?? null, records: new Map() };
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
      const include: string[] = doc.include ?? ['documents', 'metadatas'];
      switch (s[8]) {
        case 'add':
        case 'upsert':
          (doc.ids as string[]).forEach((id, i) => c.records.set(id, { embedding: doc.embeddings[i], document: doc.documents?.[i] ?? null, metadata: doc.metadatas?.[i] ?? null }));
          return json(res, 201, {});
        case 'count':
          return json(res, 200, c.records.size);
        case 'delete':
          for (const id of (doc.ids ?? []) as string[]) c.records.delete(id);
          return json(res, 200, {});
        case 'get': {
          const ids = (doc.ids as string[] | undefined) ?? [...c.records.keys()];
          const rows = ids.filter((id) => c.records.has(id)).slice(0, doc.limit ?? undefined);
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
          const n = Number(doc.n_results ?? 10);
          const per = (q: number[]) => [...c.records.entries()].map(([id, r]) => ({ id, r, d: -dot(q, r.embedding) })).sort((a, b) => a.d - b.d).slice(0, n);
          const results = (doc.query_embeddings as number[][]).map(per);
          const inc: string[] = doc.include ?? ['metadatas', 'documents', 'distances'];
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

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `https://127.0.0.1:${port}`,
    seen,
    sockets: () => socketCount,
    bigBytesSent: () => bigSent,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface DevAuthContext {
  ctx: import('../../workers/http/http-proxy.js').HttpWorkerContext;
  issuer: import('../../src/identity/dev-issuer.js').DevIssuer;
  /** Every log line the data path wrote, serialized, for secret-leak checks. */
  logs: string[];
  mint(user: string, groups: string[]): Promise<string>;
  cleanup(): void;
}

/**
 * A real HttpWorkerContext: tokens verified by TokenVerifier against the dev issuer, access
 * decided by the compiled policy, exactly as the primary does for a worker.
 */
export async function devAuthContext(opts: {
  certFile: string;
  keyFile: string;
  profile: 'modern' | 'intermediate';
  policies: import('../../src/config/types.js').PolicyConfig[];
  limits?: import('../../workers/http/http-proxy.js').HttpWorkerContext['limits'];
}): Promise<DevAuthContext> {
  const { DevIssuer } = await import('../../src/identity/dev-issuer.js');
  const { TokenVerifier } = await import('../../src/identity/token-verifier.js');
  const { compilePolicy } = await import('../../src/policy/policy.js');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vg-http-dev-'));
  const issuer = await DevIssuer.open(dir);
  const verifier = new TokenVerifier([issuer.issuerConfig()]);
  const policy = compilePolicy(opts.policies);
  const logs: string[] = [];
  const ctx: DevAuthContext['ctx'] = {
    certFile: opts.certFile,
    keyFile: opts.keyFile,
    profile: opts.profile,
    limits: opts.limits,
    log(level, msg, fields) {
      logs.push(JSON.stringify({ level, msg, ...fields }));
    },
    async authorize(token, connection) {
      let principal;
      try {
        principal = await verifier.verify(token);
      } catch (err) {
        const e = err as { code?: string; message: string };
        return { ok: false, code: e.code ?? 'ERR_VG_TOKEN_MALFORMED', sqlstate: '28P01', message: e.message };
      }
      const decision = policy.decide(principal.groups, connection);
      if (!decision) {
        return { ok: false, code: 'ERR_VG_ACCESS_DENIED', sqlstate: '28000', message: `${principal.subject} (groups: ${principal.groups.join(', ') || 'none'}) has no access to connection "${connection}"` };
      }
      return { ok: true, subject: principal.subject, username: principal.username, issuer: principal.issuer, groups: principal.groups, access: decision.access, rules: decision.rules, credential: { user: '', password: '' }, expiresAt: principal.expiresAt };
    },
  };
  return {
    ctx,
    issuer,
    logs,
    mint: (user, groups) => issuer.mint({ user, groups, ttlSec: 600 }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
