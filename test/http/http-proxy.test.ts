// The HTTP data path end to end: uWS SSLApp gateway in this thread, a fixture Qdrant/Chroma
// upstream over verified TLS, real dev-issuer tokens and compiled policy. Covers 401/403/413/
// 502/504, the guard, credential injection (and that the canary never comes back), streaming
// both ways, keep-alive reuse, slow clients and the TLS profiles.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { HttpConnectionConfig, PolicyConfig } from '../../src/config/types.js';
import { startHttpConnection } from '../../workers/http/http-proxy.js';
import type { HttpConnectionHandle, HttpWorkerContext } from '../../workers/http/http-proxy.js';
import type { AuthResult } from '../../workers/messages.js';
import { bigBodyMismatch, devAuthContext, fixtureVector, makeTestPki, startFixtureUpstream } from '../harness/http-upstream.js';
import type { DevAuthContext, FixtureUpstream, TestPki } from '../harness/http-upstream.js';

const CANARY = `CANARY-upstream-key-${createHash('sha256').update(String(Math.random())).digest('hex').slice(0, 16)}`;
const INSPECT_CAP = 256 * 1024;

const POLICIES: PolicyConfig[] = [
  { name: 'r', groups: ['ml-readers'], connections: ['qdrant', 'qdrant-bad'], access: 'read' },
  { name: 'w', groups: ['ml-writers'], connections: ['qdrant', 'early'], access: 'write' },
  { name: 'a', groups: ['ml-admins'], connections: ['qdrant', 'qdrant-bad', 'utf8'], access: 'admin' },
];

function qdrantCfg(name: string, upstreamUrl: string, ca: string, extra: Partial<HttpConnectionConfig> = {}): HttpConnectionConfig {
  return {
    name,
    protocol: 'http',
    flavor: 'qdrant',
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { url: upstreamUrl, tls: { mode: 'verify-full', ca, serverName: '' } },
    credentials: { header: 'api-key', value: CANARY },
    guard: { returnVectors: ['ml-writers'], maxLimit: 100 },
    recording: 'off',
    ...extra,
  };
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

let pki: TestPki;
let upstream: FixtureUpstream;
let dev: DevAuthContext;
let gw: HttpConnectionHandle;
const handles: HttpConnectionHandle[] = [];
const agent = () => new https.Agent({ keepAlive: true });
let clientAgent: https.Agent;
let reader = '';
let writer = '';
let admin = '';
const seenBody: Buffer[] = []; // every byte the client received, for the canary check

/**
 * Starts `server` (a scripted TLS upstream) on a free loopback port and a Qdrant connection
 * named `name` in front of it; the handle is closed with the others after the tests.
 */
async function proxyTo(server: tls.Server, name: string): Promise<HttpConnectionHandle> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const h = await startHttpConnection(dev.ctx, qdrantCfg(name, `https://localhost:${port}`, pki.caFile));
  handles.push(h);
  return h;
}

function call(port: number, method: string, path: string, opts: { token?: string; body?: Buffer | string | object; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
    if (body) {
      headers['content-type'] ??= 'application/json';
      headers['content-length'] = String(body.length);
    }
    const req = https.request({ host: '127.0.0.1', port, method, path, headers, ca: readFileSync(pki.caFile), servername: 'localhost', agent: clientAgent }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const b = Buffer.concat(parts);
        seenBody.push(b, Buffer.from(JSON.stringify(res.headers)));
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const errorOf = (r: Reply) => (JSON.parse(r.body.toString()) as { error: { code: string; message: string } }).error;

before(async () => {
  pki = await makeTestPki();
  clientAgent = agent();
  upstream = await startFixtureUpstream({ certFile: pki.certFile, keyFile: pki.keyFile, credential: { header: 'api-key', value: CANARY } });
  dev = await devAuthContext({
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    profile: 'modern',
    policies: POLICIES,
    limits: { maxInspectBodyBytes: INSPECT_CAP, upstreamResponseTimeoutMs: 1500 },
    credentials: Object.fromEntries(['qdrant', 'qdrant-bad', 'utf8'].map((n) => [n, { header: 'api-key', value: CANARY }])),
  });
  gw = await startHttpConnection(dev.ctx, qdrantCfg('qdrant', upstream.url, pki.caFile));
  handles.push(gw);
  [reader, writer, admin] = await Promise.all([dev.mint('rita', ['ml-readers']), dev.mint('will', ['ml-writers']), dev.mint('ada', ['ml-admins'])]);
  const created = await call(gw.port, 'PUT', '/collections/docs', { token: admin, body: { vectors: { size: 1536, distance: 'Dot' } } });
  assert.equal(created.status, 200, created.body.toString());
  const points = Array.from({ length: 20 }, (_, i) => ({ id: i + 1, vector: fixtureVector(i + 1), payload: { n: i + 1 } }));
  const up = await call(gw.port, 'PUT', '/collections/docs/points?wait=true', { token: writer, body: { points } });
  assert.equal(up.status, 200, up.body.toString());
});

after(async () => {
  for (const h of handles) h.close();
  clientAgent?.destroy();
  await upstream?.close();
  dev?.cleanup();
  pki?.cleanup();
});

describe('authentication', () => {
  it('401 with WWW-Authenticate when the token is missing, and nothing reaches the upstream', async () => {
    const before = upstream.seen.length;
    const r = await call(gw.port, 'POST', '/collections/docs/points/search', { body: { vector: fixtureVector(1), limit: 3 } });
    assert.equal(r.status, 401);
    assert.match(String(r.headers['www-authenticate']), /^Bearer error="invalid_token", error_description="[^"]+"$/);
    assert.equal(errorOf(r).code, 'ERR_VG_TOKEN_MISSING');
    assert.equal(upstream.seen.length, before);
  });

  it('401 naming the reason for a tampered token', async () => {
    const [h, p, s] = reader.split('.');
    const tampered = `${h}.${p}.${s!.slice(0, -4)}AAAA`;
    const r = await call(gw.port, 'GET', '/collections', { token: tampered });
    assert.equal(r.status, 401);
    assert.match(String(r.headers['www-authenticate']), /error="invalid_token"/);
    assert.match(errorOf(r).code, /^ERR_VG_TOKEN_/);
  });

  it('403 for a valid token whose groups have no access to the connection', async () => {
    const stranger = await dev.mint('sam', ['marketing']);
    const r = await call(gw.port, 'GET', '/collections', { token: stranger });
    assert.equal(r.status, 403);
    assert.match(errorOf(r).message, /no access to connection "qdrant"/);
  });
  it('goes on at once with a decision the worker has cached (granted or refused), without asking again', async () => {
    const cache = new Map<string, AuthResult>();
    let asked = 0;
    const ctx: HttpWorkerContext = {
      ...dev.ctx,
      async authorize(token, connection, client) {
        asked++;
        const result = await dev.ctx.authorize(token, connection, client);
        cache.set(`${connection}\0${token}`, result);
        return result;
      },
      cachedAuthorization: (token, connection) => cache.get(`${connection}\0${token}`) ?? null,
    };
    const h = await startHttpConnection(ctx, qdrantCfg('qdrant', upstream.url, pki.caFile));
    handles.push(h);
    const search = () => call(h.port, 'POST', '/collections/docs/points/search', { token: reader, body: { vector: fixtureVector(2), limit: 2 } });
    const first = await search();
    const second = await search();
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.deepEqual(second.body, first.body);
    const upsert = await call(h.port, 'PUT', '/collections/docs/points', { token: reader, body: { points: [] } });
    assert.equal(upsert.status, 403); // cached read access: the route needs write
    assert.match(errorOf(upsert).message, /needs write access/);
    assert.equal(asked, 1);
    const stranger = await dev.mint('sue', ['marketing']);
    for (let i = 0; i < 2; i++) {
      const r = await call(h.port, 'GET', '/collections', { token: stranger });
      assert.equal(r.status, 403);
      assert.match(errorOf(r).message, /no access to connection "qdrant"/);
    }
    assert.equal(asked, 2);
  });
});

describe('per-route access', () => {
  it('a reader can search and gets scores, not vectors', async () => {
    const r = await call(gw.port, 'POST', '/collections/docs/points/search', { token: reader, body: { vector: fixtureVector(3), limit: 5 } });
    assert.equal(r.status, 200);
    const result = (JSON.parse(r.body.toString()) as { result: { id: number; vector: unknown }[] }).result;
    assert.equal(result.length, 5);
    assert.equal(result[0]!.id, 3);
    assert.equal(result[0]!.vector, null);
  });

  it('a guarded search body gives the same answer whole and trickled in small pieces', async () => {
    const body = Buffer.from(JSON.stringify({ vector: fixtureVector(7), limit: 4 }));
    const whole = await call(gw.port, 'POST', '/collections/docs/points/search', { token: reader, body });
    assert.equal(whole.status, 200);
    // The first piece is one byte: the gateway holds the body as separate chunks (no buffer of
    // the announced size for a client that has sent almost nothing) and joins them for the guard.
    const trickled = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port: gw.port, method: 'POST', path: '/collections/docs/points/search', ca: readFileSync(pki.caFile), servername: 'localhost', headers: { authorization: `Bearer ${reader}`, 'content-type': 'application/json', 'content-length': body.length } },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
        },
      );
      req.on('error', reject);
      const pieces = [body.subarray(0, 1), body.subarray(1, 100), body.subarray(100, 5000), body.subarray(5000)];
      const next = (): void => {
        const p = pieces.shift();
        if (p === undefined) return void req.end();
        req.write(p, () => setTimeout(next, 20));
      };
      next();
    });
    assert.equal(trickled.status, 200, trickled.body.toString());
    assert.deepEqual(JSON.parse(trickled.body.toString()).result, JSON.parse(whole.body.toString()).result);
    assert.equal((JSON.parse(whole.body.toString()) as { result: { id: number }[] }).result[0]!.id, 7);
  });

  it('a reader cannot upsert (403 naming write) and nothing is forwarded', async () => {
    const before = upstream.seen.length;
    const r = await call(gw.port, 'PUT', '/collections/docs/points', { token: reader, body: { points: [{ id: 99, vector: fixtureVector(99) }] } });
    assert.equal(r.status, 403);
    const e = errorOf(r);
    assert.equal(e.code, 'ERR_VG_ACCESS_DENIED');
    assert.match(e.message, /points\.upsert on "docs"\) needs write access/);
    assert.match(e.message, /has read access/);
    assert.equal(upstream.seen.length, before);
  });

  it('a writer cannot drop a collection (admin) but an admin can manage collections', async () => {
    const r = await call(gw.port, 'DELETE', '/collections/docs', { token: writer });
    assert.equal(r.status, 403);
    assert.match(errorOf(r).message, /needs admin access/);
    const tmp = await call(gw.port, 'PUT', '/collections/tmp', { token: admin, body: { vectors: { size: 4, distance: 'Dot' } } });
    assert.equal(tmp.status, 200);
    const del = await call(gw.port, 'DELETE', '/collections/tmp', { token: admin });
    assert.equal(del.status, 200);
  });

  it('refuses paths with encoded separators or dot segments before classifying them', async () => {
    for (const p of ['/collections/docs/points/search/../../points', '/collections/docs%2Fpoints/search', '/collections//docs']) {
      const r = await call(gw.port, 'POST', p, { token: admin, body: {} });
      assert.equal(r.status, 400, p);
    }
  });
});

describe('guard', () => {
  it('refuses with_vector for groups outside return_vectors and says how to ask without them', async () => {
    const before = upstream.seen.length;
    const r = await call(gw.port, 'POST', '/collections/docs/points/search', { token: reader, body: { vector: fixtureVector(1), limit: 3, with_vector: true } });
    assert.equal(r.status, 403);
    assert.match(errorOf(r).message, /raw vectors.*with_vector.*only groups ml-writers.*omit with_vector/s);
    assert.equal(upstream.seen.length, before);
    const nested = await call(gw.port, 'POST', '/collections/docs/points/query', { token: reader, body: { query: fixtureVector(1), prefetch: [{ query: fixtureVector(2), with_vectors: ['text'] }] } });
    assert.equal(nested.status, 403);
  });

  it('lets return_vectors groups have vectors', async () => {
    const r = await call(gw.port, 'POST', '/collections/docs/points/search', { token: writer, body: { vector: fixtureVector(2), limit: 2, with_vector: true } });
    assert.equal(r.status, 200);
    const result = (JSON.parse(r.body.toString()) as { result: { vector: number[] }[] }).result;
    assert.equal(result[0]!.vector.length, 1536);
  });

  it('refuses GET of one point (always returns vectors) for readers', async () => {
    const r = await call(gw.port, 'GET', '/collections/docs/points/1', { token: reader });
    assert.equal(r.status, 403);
    assert.match(errorOf(r).message, /POST \/collections\/\{name\}\/points/);
  });

  it('refuses a limit above max_limit with 403 (not clamped)', async () => {
    const r = await call(gw.port, 'POST', '/collections/docs/points/scroll', { token: reader, body: { limit: 5000 } });
    assert.equal(r.status, 403);
    assert.match(errorOf(r).message, /limit=5000.*max_limit of 100/);
    const ok = await call(gw.port, 'POST', '/collections/docs/points/scroll', { token: reader, body: { limit: 100 } });
    assert.equal(ok.status, 200);
  });

  it('does not trust JSON types: with_vector 1 or "true" asks for vectors (403), a limit that is not a number is refused (400); nothing forwarded', async () => {
    const before = upstream.seen.length;
    for (const v of [1, 'true', 'false', 0, [], {}]) {
      const r = await call(gw.port, 'POST', '/collections/docs/points/search', { token: reader, body: { vector: fixtureVector(1), limit: 3, with_vector: v } });
      assert.equal(r.status, 403, `with_vector: ${JSON.stringify(v)}`);
      assert.equal(errorOf(r).code, 'ERR_VG_ACCESS_DENIED');
    }
    const plural = await call(gw.port, 'POST', '/collections/docs/points/scroll', { token: reader, body: { limit: 3, with_vectors: 'yes' } });
    assert.equal(plural.status, 403);
    for (const limit of ['1000', '5', true, [1000], { n: 1000 }]) {
      const r = await call(gw.port, 'POST', '/collections/docs/points/search', { token: reader, body: { vector: fixtureVector(1), limit } });
      assert.equal(r.status, 400, `limit: ${JSON.stringify(limit)}`);
      assert.equal(r.headers['content-type'], 'application/json');
      assert.equal(errorOf(r).code, 'ERR_VG_HTTP_BAD_REQUEST');
      assert.match(errorOf(r).message, /limit in the body of points\.search must be a JSON number/);
    }
    assert.equal(upstream.seen.length, before, 'nothing reached the upstream');
    // false and null are "no vectors" / "no limit", as for the upstream.
    const ok = await call(gw.port, 'POST', '/collections/docs/points/scroll', { token: reader, body: { limit: null, with_vector: null, with_vectors: false } });
    assert.equal(ok.status, 200, ok.body.toString());
  });

  it('413 when an inspected body is over max_inspect_body, 400 when it is not JSON', async () => {
    const big = JSON.stringify({ vector: fixtureVector(1), limit: 3, pad: 'x'.repeat(INSPECT_CAP) });
    const r = await call(gw.port, 'POST', '/collections/docs/points/search', { token: reader, body: big });
    assert.equal(r.status, 413);
    assert.equal(errorOf(r).code, 'ERR_VG_HTTP_BODY_TOO_LARGE');
    const bad = await call(gw.port, 'POST', '/collections/docs/points/search', { token: reader, body: '{"vector": [1,2' });
    assert.equal(bad.status, 400);
  });

  it('guarded bodies many at once each reach the upstream as sent (body buffers are reused between requests)', async () => {
    // Each search is answered as it was when sent alone: a body another request's bytes had
    // overwritten would search for another vector or limit. 19 KB bodies: the reused 32 KB class.
    const bodies = Array.from({ length: 20 }, (_, i) => ({ vector: fixtureVector(i + 1), limit: (i % 7) + 1 }));
    const alone: string[] = [];
    for (const b of bodies) {
      const r = await call(gw.port, 'POST', '/collections/docs/points/search', { token: reader, body: b });
      assert.equal(r.status, 200, r.body.toString());
      alone.push(JSON.stringify((JSON.parse(r.body.toString()) as { result: unknown }).result));
    }
    for (let round = 0; round < 3; round++) {
      const replies = await Promise.all(bodies.map((b) => call(gw.port, 'POST', '/collections/docs/points/search', { token: reader, body: b })));
      replies.forEach((r, i) => {
        assert.equal(r.status, 200, r.body.toString());
        assert.equal(JSON.stringify((JSON.parse(r.body.toString()) as { result: unknown }).result), alone[i], `search ${i + 1} in round ${round + 1}`);
      });
    }
    // Upstream connections the bursts started may still be opening: let them settle before
    // the next tests count sockets.
    for (let last = -1; upstream.sockets() !== last; ) {
      last = upstream.sockets();
      await new Promise((r) => setTimeout(r, 300));
    }
  });
});

describe('credentials and forwarding', () => {
  it('injects the upstream credential, drops the client Authorization and any client api-key, sets X-Forwarded-For', async () => {
    const r = await call(gw.port, 'POST', '/__echo', { token: admin, body: { a: 1 }, headers: { 'api-key': 'client-forged', 'x-forwarded-for': '6.6.6.6', connection: 'x-secret-hop', 'x-secret-hop': '1' } });
    assert.equal(r.status, 200);
    const last = upstream.seen[upstream.seen.length - 1]!;
    assert.equal(last.headers['api-key'], CANARY);
    assert.equal(last.headers['authorization'], undefined);
    assert.equal(last.headers['x-forwarded-for'], '127.0.0.1');
    assert.match(String(last.headers['forwarded']), /^for=127\.0\.0\.1;proto=https/);
    assert.equal(last.headers['x-secret-hop'], undefined);
    assert.equal(r.headers['x-upstream'], 'fixture');
  });

  it('reuses pooled upstream connections', async () => {
    const before = upstream.sockets();
    for (let i = 0; i < 10; i++) assert.equal((await call(gw.port, 'POST', '/collections/docs/points/count', { token: reader, body: {} })).status, 200);
    assert.ok(upstream.sockets() - before <= 1, `opened ${upstream.sockets() - before} upstream sockets for 10 sequential requests`);
  });
});

describe('streaming', () => {
  it('streams a 24 MB upload to the upstream byte for byte (not buffered by the guard: admin route)', async () => {
    const body = randomBytes(24 * 1024 * 1024);
    const r = await call(gw.port, 'POST', '/__echo', { token: admin, body, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(r.status, 200);
    const echo = JSON.parse(r.body.toString()) as { bodyBytes: number; bodySha256: string };
    assert.equal(echo.bodyBytes, body.length);
    assert.equal(echo.bodySha256, createHash('sha256').update(body).digest('hex'));
  });

  it('refuses a chunked upload with 411 before any of it is forwarded (uWS cannot check chunked framing)', async () => {
    const before = upstream.seen.length;
    const r = await new Promise<Reply>((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port: gw.port, method: 'POST', path: '/__echo', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/octet-stream' }, ca: readFileSync(pki.caFile), servername: 'localhost', agent: false },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
        },
      );
      req.on('error', reject);
      req.write(randomBytes(1000)); // no Content-Length: Node sends it chunked
      req.end();
    });
    assert.equal(r.status, 411);
    assert.equal(errorOf(r).code, 'ERR_VG_HTTP_LENGTH_REQUIRED');
    assert.equal(upstream.seen.length, before);
  });

  for (const withLength of [true, false]) {
    it(`streams a 48 MB response ${withLength ? 'with Content-Length' : 'chunked'}`, async () => {
      const n = 48 * 1024 * 1024;
      const r = await call(gw.port, 'GET', `/__big?bytes=${n}&length=${withLength ? 1 : 0}`, { token: admin });
      assert.equal(r.status, 200);
      assert.equal(r.body.length, n);
      assert.equal(bigBodyMismatch(r.body, 0), -1, 'the body as the upstream sent it');
    });
  }

  it('a client that stops reading holds the upstream back (backpressure), then gets every byte', async () => {
    const n = 256 * 1024 * 1024;
    const sentBefore = upstream.bigBytesSent();
    const received = await new Promise<number>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port: gw.port, path: `/__big?bytes=${n}&length=1`, headers: { authorization: `Bearer ${admin}` }, ca: readFileSync(pki.caFile), servername: 'localhost' }, (res) => {
        res.pause();
        // While the client reads nothing, the upstream must stall far below the total.
        setTimeout(() => {
          const sent = upstream.bigBytesSent() - sentBefore;
          try {
            assert.ok(sent < n / 4, `upstream sent ${sent} of ${n} bytes to a client that read nothing`);
          } catch (err) {
            reject(err);
            return;
          }
          let got = 0;
          let mismatch = -1;
          res.on('data', (c: Buffer) => {
            if (mismatch < 0) mismatch = bigBodyMismatch(c, got);
            got += c.length;
          });
          res.on('end', () => (mismatch < 0 ? resolve(got) : reject(new Error(`body differs from the upstream's at byte ${mismatch}`))));
          res.resume();
        }, 1000);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(received, n);
  });

  it('cuts the client connection when the upstream dies mid-body (no short body taken as whole)', async () => {
    await assert.rejects(call(gw.port, 'GET', '/__cut', { token: admin }));
  });
});

describe('upstream failures', () => {
  it('504 with a JSON body when the upstream does not answer in time', async () => {
    const r = await call(gw.port, 'GET', '/__hang', { token: admin });
    assert.equal(r.status, 504);
    assert.equal(errorOf(r).code, 'ERR_VG_UPSTREAM_TIMEOUT');
  });

  it('502 naming the failed check: refused connection, host name, chain', async () => {
    const wrongHost = await startFixtureUpstream({ certFile: pki.wrongHostCertFile, keyFile: pki.wrongHostKeyFile, credential: null });
    const otherCa = await startFixtureUpstream({ certFile: pki.otherCaCertFile, keyFile: pki.otherCaKeyFile, credential: null });
    const dead = await startFixtureUpstream({ certFile: pki.certFile, keyFile: pki.keyFile, credential: null });
    const deadUrl = dead.url;
    await dead.close();
    try {
      const cases: [string, RegExp][] = [
        [deadUrl, /cannot be reached \(ECONNREFUSED\)/],
        [wrongHost.url, /host name check failed/],
        [otherCa.url, /certificate chain check failed/],
      ];
      for (const [url, expected] of cases) {
        const h = await startHttpConnection(dev.ctx, qdrantCfg('qdrant-bad', url, pki.caFile));
        handles.push(h);
        const r = await call(h.port, 'GET', '/collections', { token: admin });
        assert.equal(r.status, 502, url);
        assert.match(errorOf(r).message, expected);
        h.close();
      }
      assert.equal(wrongHost.seen.length + otherCa.seen.length, 0, 'no request reached an unverified upstream');
    } finally {
      await wrongHost.close();
      await otherCa.close();
    }
  });
});

describe('TLS profiles', () => {
  const handshake = (port: number, maxVersion: tls.SecureVersion): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(pki.caFile), maxVersion }, () => {
        const v = s.getProtocol() ?? '';
        s.end();
        resolve(v);
      });
      s.on('error', reject);
    });

  it('modern offers TLS 1.3 only', async () => {
    assert.equal(await handshake(gw.port, 'TLSv1.3'), 'TLSv1.3');
    await assert.rejects(handshake(gw.port, 'TLSv1.2'), /handshake failure|alert/i);
  });

  it('intermediate also accepts TLS 1.2 with an ECDHE AEAD suite', async () => {
    const ctx = { ...dev.ctx, profile: 'intermediate' as const };
    const h = await startHttpConnection(ctx, qdrantCfg('qdrant', upstream.url, pki.caFile));
    handles.push(h);
    assert.equal(await handshake(h.port, 'TLSv1.2'), 'TLSv1.2');
    h.close();
  });
});

describe('secrets', () => {
  it('the upstream credential canary never reached the client or the logs', () => {
    const all = Buffer.concat(seenBody).toString('latin1');
    assert.ok(seenBody.length > 10);
    assert.equal(all.includes(CANARY), false);
    assert.equal(dev.logs.join('\n').includes(CANARY), false);
    assert.equal(dev.logs.join('\n').includes(reader), false, 'tokens are not logged');
  });
});

describe('early upstream answers', () => {
  it('an early 403 while the client is still sending its body reaches the client, and the gateway keeps serving', async () => {
    const https = await import('node:https');
    const { readFileSync } = await import('node:fs');
    // Answers at once, with a body and Content-Length, without reading the request body (legal HTTP).
    const early = https.createServer({ cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) }, (req, res) => {
      const body = JSON.stringify({ status: { error: 'forbidden' } });
      res.writeHead(403, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      req.on('data', () => {});
      req.on('error', () => {});
    });
    try {
      const h = await proxyTo(early, 'early');
      // The client sends the head and a first part of a 1 MB body, then waits for the answer
      // before sending the rest: the upstream's 403 arrives while the body is still coming.
      const [status, answer] = await new Promise<[number, string]>((resolve, reject) => {
        const total = 1024 * 1024;
        const req = https.request({ host: '127.0.0.1', port: h.port, servername: 'localhost', ca: readFileSync(pki.caFile), method: 'PUT', path: '/collections/early/points', headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/json', 'content-length': total } }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve([res.statusCode ?? 0, body]));
          setTimeout(() => req.end(Buffer.alloc(total - 64 * 1024, 0x20)), 50);
        });
        req.on('error', (e) => reject(e));
        req.write(Buffer.concat([Buffer.from('{"points":[]}'), Buffer.alloc(64 * 1024 - 13, 0x20)]));
      });
      assert.equal(status, 403);
      assert.deepEqual(JSON.parse(answer), { status: { error: 'forbidden' } }, 'the upstream\'s answer, not a gateway refusal');
      await new Promise((r) => setTimeout(r, 300));
      // Still serving: a normal request through the same worker works.
      const ok = await call(gw.port, 'POST', '/collections/docs/points/search', { token: reader, body: { vector: fixtureVector(1), limit: 3 } });
      assert.equal(ok.status, 200);
    } finally {
      early.close();
    }
  });
});

describe('non-ASCII header values', () => {
  it('a response header reaches the client as the bytes the upstream sent', async () => {
    const text = 'José € 東京';
    // A raw TLS server, so the header bytes are exactly these (node:http would re-encode them).
    const echo = tls.createServer({ cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) }, (sock) => {
      sock.once('data', () => sock.write(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nx-answer: '), Buffer.from(text, 'utf8'), Buffer.from('\r\ncontent-length: 2\r\n\r\nok')])));
      sock.on('error', () => {});
    });
    try {
      const h = await proxyTo(echo, 'utf8');
      const answer = await new Promise<Buffer | null>((resolve, reject) => {
        const req = https.request({ host: '127.0.0.1', port: h.port, servername: 'localhost', ca: readFileSync(pki.caFile), method: 'GET', path: '/collections', headers: { authorization: `Bearer ${admin}` } }, (res) => {
          res.resume();
          assert.equal(res.statusCode, 200);
          // node:http reads header bytes one char per byte (latin1).
          const a = res.headers['x-answer'];
          resolve(typeof a === 'string' ? Buffer.from(a, 'latin1') : null);
        });
        req.on('error', reject);
        req.end();
      });
      assert.deepEqual(answer, Buffer.from(text, 'utf8'));
    } finally {
      echo.close();
    }
  });
});
