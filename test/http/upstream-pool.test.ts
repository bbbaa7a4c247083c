// The HTTP upstream pool (workers/http/upstream-pool.ts) against real TLS servers on
// loopback: keep-alive reuse, queueing above maxSockets, response framings delivered
// byte-exact, cut and malformed responses, the retry of an idempotent request on a reused
// connection, streamed request bodies with backpressure, paused responses, the idle sweep,
// destroy(), TLS and connect failures as describeUpstreamFailure words them, and the bytes
// of the request head. Scripted servers (raw tls.createServer) send exact bytes; node:https
// servers stand in where ordinary behaviour is enough.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { HttpConnectionConfig } from '../../src/config/types.js';
import { VgError } from '../../src/errors.js';
import { createUpstreamPool, describeUpstreamFailure } from '../../workers/http/upstream-pool.js';
import type { ResponseHead, UpstreamPool, UpstreamPoolLimits, UpstreamRequest } from '../../workers/http/upstream-pool.js';
import { makeTestPki } from '../harness/http-upstream.js';
import type { TestPki } from '../harness/http-upstream.js';

/** Longest wait for an event a test expects (a hang fails the test instead of stalling the run). */
const EVENT_TIMEOUT_MS = 15_000;
const LIMITS: UpstreamPoolLimits = { maxSockets: 8, maxFreeSockets: 8, idleTimeoutMs: 30_000 };

let pki: TestPki;
const servers: net.Server[] = [];
const pools: UpstreamPool[] = [];

before(async () => {
  pki = await makeTestPki();
});

after(async () => {
  for (const p of pools) p.destroy();
  // Sockets first: close() waits for every connection to end.
  for (const s of servers) for (const sock of sockets.get(s) ?? []) sock.destroy();
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  pki?.cleanup();
});

/** Every socket each server accepted, so after() can end them all. */
const sockets = new Map<net.Server, Set<net.Socket>>();

function track<S extends net.Server>(server: S): S {
  const set = new Set<net.Socket>();
  sockets.set(server, set);
  server.on('connection', (s: net.Socket) => {
    set.add(s);
    s.on('close', () => set.delete(s));
  });
  servers.push(server);
  return server;
}

async function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

function cfgFor(url: string, tlsOpts: { ca?: string | null; serverName?: string } = {}): HttpConnectionConfig {
  return {
    name: 'vectors',
    protocol: 'http',
    flavor: 'generic',
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { url, tls: { mode: 'verify-full', ca: tlsOpts.ca === undefined ? pki.caFile : tlsOpts.ca, serverName: tlsOpts.serverName ?? '' } },
    credentials: null,
    guard: { returnVectors: null, maxLimit: null },
    recording: 'off',
  };
}

function poolFor(url: string, limits: Partial<UpstreamPoolLimits> = {}, tlsOpts: { ca?: string | null; serverName?: string } = {}): { pool: UpstreamPool; cfg: HttpConnectionConfig } {
  const cfg = cfgFor(url, tlsOpts);
  const pool = createUpstreamPool(cfg, { ...LIMITS, ...limits });
  pools.push(pool);
  return { pool, cfg };
}

function within<T>(p: Promise<T>, what: string, ms = EVENT_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]);
}

interface Outcome {
  head: ResponseHead | null;
  body: Buffer;
  error: NodeJS.ErrnoException | null;
  /** Handler calls out of contract (twice, after end, data before response, ...). */
  violations: string[];
}

interface SendOptions {
  headers?: Record<string, string | string[]>;
  body?: Buffer | 'none' | 'length' | 'chunked';
  /** Streams the body (for 'length' / 'chunked'): called with the request once it exists. */
  stream?: (req: UpstreamRequest, drained: () => Promise<void>) => void;
  onData?: (chunk: Buffer, req: UpstreamRequest) => void;
  onResponse?: (head: ResponseHead, req: UpstreamRequest) => void;
}

/** One request; resolves on `end` or `error` (never rejects), checking the handler contract. */
function send(pool: UpstreamPool, method: string, path: string, opts: SendOptions = {}): { req: UpstreamRequest; done: Promise<Outcome> } {
  const out: Outcome = { head: null, body: Buffer.alloc(0), error: null, violations: [] };
  const parts: Buffer[] = [];
  let over = false;
  let drainWaiter: (() => void) | null = null;
  let req!: UpstreamRequest;
  let inCall = true;
  const done = new Promise<Outcome>((resolve) => {
    req = pool.request(method, path, opts.headers ?? { host: pool.hostHeader }, opts.body ?? 'none', {
      response: (head) => {
        if (inCall) out.violations.push('response inside request()');
        if (over || out.head !== null) out.violations.push('response twice or after the end');
        out.head = head;
        opts.onResponse?.(head, req);
      },
      data: (chunk) => {
        if (out.head === null || over) out.violations.push('data before response or after the end');
        parts.push(Buffer.from(chunk));
        opts.onData?.(chunk, req);
      },
      end: () => {
        if (out.head === null || over) out.violations.push('end before response or twice');
        over = true;
        out.body = Buffer.concat(parts);
        resolve(out);
      },
      error: (err) => {
        if (inCall) out.violations.push('error inside request()');
        if (over) out.violations.push('error after the end');
        over = true;
        out.error = err;
        out.body = Buffer.concat(parts);
        resolve(out);
      },
      drain: () => {
        const w = drainWaiter;
        drainWaiter = null;
        w?.();
      },
    });
  });
  inCall = false;
  opts.stream?.(req, () => new Promise<void>((resolve) => (drainWaiter = resolve)));
  return { req, done: within(done, `${method} ${path}`) };
}

async function ok(pool: UpstreamPool, method: string, path: string, opts: SendOptions = {}): Promise<Outcome> {
  const o = await send(pool, method, path, opts).done;
  assert.equal(o.error, null, `${method} ${path} failed: ${o.error?.code} ${o.error?.message}`);
  assert.deepEqual(o.violations, []);
  return o;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

// ---- scripted servers -----------------------------------------------------------------------

interface ScriptedRequest {
  head: string;
  body: Buffer;
  /** 0-based index of the connection and of the request on it. */
  conn: number;
  index: number;
}

interface Scripted {
  port: number;
  url: string;
  connections: number;
  requests: ScriptedRequest[];
  sockets: tls.TLSSocket[];
}

/**
 * A TLS server that reads requests (Content-Length bodies only) one after another on each
 * connection and lets `answer` write exact bytes on the socket.
 */
async function scriptedServer(answer: (req: ScriptedRequest, sock: tls.TLSSocket) => void, certs: { cert: string; key: string } = { cert: pki.certFile, key: pki.keyFile }): Promise<Scripted> {
  const state: Scripted = { port: 0, url: '', connections: 0, requests: [], sockets: [] };
  const server = track(
    tls.createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (sock) => {
      const conn = state.connections++;
      state.sockets.push(sock);
      let index = 0;
      let buf = Buffer.alloc(0);
      sock.on('error', () => {});
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buf.toString('latin1', 0, end);
          const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
          const len = cl ? Number(cl[1]) : 0;
          if (buf.length < end + 4 + len) return;
          const req: ScriptedRequest = { head, body: buf.subarray(end + 4, end + 4 + len), conn, index: index++ };
          buf = buf.subarray(end + 4 + len);
          state.requests.push(req);
          answer(req, sock);
        }
      });
    }),
  );
  state.port = await listen(server);
  state.url = `https://127.0.0.1:${state.port}`;
  return state;
}

/** An https server whose sockets are counted (keep-alive reuse shows as one socket for many requests). */
async function httpsServer(handler: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void): Promise<{ port: number; url: string; connections: () => number; server: https.Server }> {
  let connections = 0;
  const server = track(https.createServer({ cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile), keepAliveTimeout: 60_000 }, handler));
  server.on('secureConnection', () => connections++);
  const port = await listen(server);
  return { port, url: `https://127.0.0.1:${port}`, connections: () => connections, server };
}

function readAll(req: import('node:http').IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

// ---- tests ----------------------------------------------------------------------------------

describe('keep-alive', () => {
  it('sequential requests use one TLS connection', async () => {
    const up = await httpsServer(async (req, res) => {
      const body = await readAll(req);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ url: req.url, method: req.method, bytes: body.length }));
    });
    const { pool } = poolFor(up.url);
    for (let i = 0; i < 6; i++) {
      const body = Buffer.from(`{"n":${i}}`);
      const o = await ok(pool, i % 2 ? 'POST' : 'GET', `/items/${i}`, { headers: { host: pool.hostHeader, 'content-length': String(i % 2 ? body.length : 0) }, body: i % 2 ? body : 'none' });
      assert.equal(o.head!.status, 200);
      assert.equal(o.head!.keepAlive, true);
      assert.deepEqual(JSON.parse(o.body.toString()), { url: `/items/${i}`, method: i % 2 ? 'POST' : 'GET', bytes: i % 2 ? body.length : 0 });
    }
    assert.equal(up.connections(), 1);
  });

  it('a request started from inside the previous one\'s end handler reuses its connection', async () => {
    const up = await httpsServer((req, res) => res.end(req.url));
    const { pool } = poolFor(up.url);
    const seen: string[] = [];
    await within(
      new Promise<void>((resolve, reject) => {
        const next = (i: number): void => {
          if (i === 5) return resolve();
          const parts: Buffer[] = [];
          pool.request('GET', `/chain/${i}`, { host: pool.hostHeader }, 'none', {
            response: () => {},
            data: (c) => parts.push(Buffer.from(c)),
            end: () => {
              seen.push(Buffer.concat(parts).toString());
              next(i + 1);
            },
            error: reject,
            drain: () => {},
          });
        };
        next(0);
      }),
      'the chain of requests',
    );
    assert.deepEqual(seen, ['/chain/0', '/chain/1', '/chain/2', '/chain/3', '/chain/4']);
    assert.equal(up.connections(), 1);
  });

  it('HEAD, 204, 304 and Content-Length: 0 answers release the connection', async () => {
    const up = await scriptedServer((req, sock) => {
      const path = req.head.split(' ')[1];
      if (req.head.startsWith('HEAD')) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n');
      else if (path === '/204') sock.write('HTTP/1.1 204 No Content\r\n\r\n');
      else if (path === '/304') sock.write('HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n');
      else if (path === '/empty') sock.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
      else sock.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone');
    });
    const { pool } = poolFor(up.url, { maxSockets: 1 });
    const head = await ok(pool, 'HEAD', '/x');
    assert.equal(head.head!.contentLength, 1234);
    assert.equal(head.body.length, 0);
    assert.equal((await ok(pool, 'GET', '/204')).head!.status, 204);
    assert.equal((await ok(pool, 'GET', '/304')).head!.status, 304);
    assert.equal((await ok(pool, 'GET', '/empty')).body.length, 0);
    assert.equal((await ok(pool, 'GET', '/last')).body.toString(), 'done');
    assert.equal(up.connections, 1);
  });

  it('requests above maxSockets queue, all complete, and at most maxSockets connections are open', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const up = await httpsServer((req, res) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      // Hold the answer for a moment so requests pile up behind the two connections.
      setTimeout(() => {
        inFlight--;
        res.end(`answer ${req.url}`);
      }, 10);
    });
    const { pool } = poolFor(up.url, { maxSockets: 2, maxFreeSockets: 2 });
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => ok(pool, 'GET', `/q/${i}`)));
    results.forEach((o, i) => assert.equal(o.body.toString(), `answer /q/${i}`));
    assert.ok(up.connections() <= 2, `${up.connections()} connections for maxSockets 2`);
    assert.ok(maxInFlight <= 2, `${maxInFlight} requests in flight at once`);
  });

  it('an idle connection is closed after idleTimeoutMs, and the next request opens a new one', async () => {
    let closedSockets = 0;
    let onClosed: (() => void) | null = null;
    const up = await httpsServer((req, res) => res.end('ok'));
    up.server.on('secureConnection', (s: tls.TLSSocket) =>
      s.on('close', () => {
        closedSockets++;
        onClosed?.();
      }),
    );
    const { pool } = poolFor(up.url, { idleTimeoutMs: 100 });
    await ok(pool, 'GET', '/a');
    await within(
      new Promise<void>((resolve) => {
        if (closedSockets > 0) resolve();
        else onClosed = resolve;
      }),
      'the idle sweep to close the pooled connection',
    );
    await ok(pool, 'GET', '/b');
    assert.equal(up.connections(), 2);
  });
});

describe('response framings over the wire', () => {
  it('a chunked response (extensions, trailers, odd write sizes) arrives byte-exact', async () => {
    const payload = randomBytes(300_000);
    const up = await scriptedServer((req, sock) => {
      sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
      let at = 0;
      let n = 1;
      while (at < payload.length) {
        const size = Math.min(n, payload.length - at);
        sock.write(Buffer.concat([Buffer.from(`${size.toString(16)};n=${n}\r\n`), payload.subarray(at, at + size), Buffer.from('\r\n')]));
        at += size;
        n = (n * 7 + 13) % 40_000;
      }
      sock.write('0\r\nX-Digest: abc\r\n\r\n');
    });
    const { pool } = poolFor(up.url);
    const o = await ok(pool, 'GET', '/chunked');
    assert.equal(o.body.length, payload.length);
    assert.equal(sha(o.body), sha(payload));
    assert.equal(o.head!.keepAlive, true);
    const again = await ok(pool, 'GET', '/chunked');
    assert.equal(sha(again.body), sha(payload));
    assert.equal(up.connections, 1);
  });

  it('a read-until-close response arrives byte-exact, and its connection is not reused', async () => {
    const payload = randomBytes(500_000);
    const up = await scriptedServer((req, sock) => {
      sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n');
      for (let at = 0; at < payload.length; at += 70_000) sock.write(payload.subarray(at, at + 70_000));
      sock.end(); // close_notify, then FIN
    });
    const { pool } = poolFor(up.url);
    const o = await ok(pool, 'GET', '/stream');
    assert.equal(o.head!.keepAlive, false);
    assert.equal(sha(o.body), sha(payload));
    await ok(pool, 'GET', '/stream');
    assert.equal(up.connections, 2);
  });

  it('a read-until-close response cut without close_notify is an error, not a complete body', async () => {
    const up = await scriptedServer((req, sock) => {
      sock.write('HTTP/1.1 200 OK\r\n\r\npart of the body', () => {
        // A TCP close with no TLS close_notify: the body may have been truncated on the way.
        setTimeout(() => (sock as unknown as { _parent?: net.Socket })._parent?.destroy() ?? sock.destroy(), 50);
      });
    });
    const { pool, cfg } = poolFor(up.url);
    const o = await send(pool, 'GET', '/cut').done;
    assert.deepEqual(o.violations, []);
    assert.equal(o.head?.status, 200);
    assert.ok(o.error, 'a truncated until-close body must be reported as an error');
    assert.equal(o.error.code, 'ERR_VG_UPSTREAM_PROTOCOL');
    assert.match(o.error.message, /may be truncated/);
    assert.equal(describeUpstreamFailure(o.error, cfg).status, 502);
  });

  it('a response cut short (Content-Length larger than sent, then close) fails with ERR_VG_UPSTREAM_PROTOCOL', async () => {
    const up = await scriptedServer((req, sock) => {
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n');
      sock.end('only 27 of the 1000 bytes.');
    });
    const { pool, cfg } = poolFor(up.url);
    const o = await send(pool, 'GET', '/short').done;
    assert.deepEqual(o.violations, []);
    assert.equal(o.head?.status, 200);
    assert.equal(o.body.toString(), 'only 27 of the 1000 bytes.');
    assert.equal(o.error?.code, 'ERR_VG_UPSTREAM_PROTOCOL');
    const f = describeUpstreamFailure(o.error, cfg);
    assert.equal(f.code, 'ERR_VG_UPSTREAM_PROTOCOL');
    assert.match(f.message, /before the end of the response body/);
  });

  it('a malformed response fails with ERR_VG_UPSTREAM_PROTOCOL and its connection is dropped', async () => {
    const up = await scriptedServer((req, sock) => {
      if (req.head.includes('/bad')) sock.write('HTTP/1.1 200 OK\nContent-Length: 2\n\nhi');
      else if (req.head.includes('/smuggle')) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\nhi');
      else sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const { pool, cfg } = poolFor(up.url, { maxSockets: 1 });
    for (const path of ['/bad', '/smuggle']) {
      const o = await send(pool, 'GET', path).done;
      assert.deepEqual(o.violations, []);
      assert.equal(o.head, null);
      assert.equal(o.error?.code, 'ERR_VG_UPSTREAM_PROTOCOL', path);
      assert.match(describeUpstreamFailure(o.error, cfg).message, /sent a malformed or cut HTTP response: .*(bare LF|conflicting Content-Length)/);
    }
    assert.equal((await ok(pool, 'GET', '/fine')).body.toString(), 'ok');
    assert.equal(up.connections, 3);
  });
});

describe('retry on a reused connection', () => {
  /** Connection 0 answers its first request, then reads the second and closes without answering. */
  async function closingAfterOne(): Promise<Scripted> {
    return scriptedServer((req, sock) => {
      if (req.conn === 0 && req.index === 1) {
        sock.end();
        return;
      }
      sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${req.body.length + 3}\r\n\r\nre:${req.body.toString('latin1')}`);
    });
  }

  it('a GET is sent again once on a new connection and succeeds', async () => {
    const up = await closingAfterOne();
    const { pool } = poolFor(up.url);
    await ok(pool, 'GET', '/first');
    const o = await ok(pool, 'GET', '/second');
    assert.equal(o.body.toString(), 're:');
    assert.equal(up.connections, 2);
    assert.deepEqual(
      up.requests.map((r) => [r.conn, r.head.split('\r\n')[0]]),
      [
        [0, 'GET /first HTTP/1.1'],
        [0, 'GET /second HTTP/1.1'],
        [1, 'GET /second HTTP/1.1'],
      ],
    );
  });

  it('an idempotent PUT with a body is replayed whole', async () => {
    const up = await closingAfterOne();
    const { pool } = poolFor(up.url);
    await ok(pool, 'GET', '/first');
    const body = Buffer.from('{"points":[1,2,3]}');
    const o = await ok(pool, 'PUT', '/points', { headers: { host: pool.hostHeader, 'content-length': String(body.length) }, body });
    assert.equal(o.body.toString(), `re:${body}`);
    assert.equal(up.requests.length, 3);
    assert.ok(up.requests[2]!.body.equals(body));
  });

  it('a POST is not retried and fails', async () => {
    const up = await closingAfterOne();
    const { pool, cfg } = poolFor(up.url);
    await ok(pool, 'GET', '/first');
    const body = Buffer.from('{"search":true}');
    const o = await send(pool, 'POST', '/search', { headers: { host: pool.hostHeader, 'content-length': String(body.length) }, body }).done;
    assert.deepEqual(o.violations, []);
    assert.equal(o.head, null);
    assert.ok(o.error);
    assert.match(describeUpstreamFailure(o.error, cfg).message, /closed the connection before answering/);
    assert.equal(up.requests.length, 2);
    assert.equal(up.connections, 1);
  });

  it('a GET is retried only once: a second stale connection fails it', async () => {
    // Two pooled connections, each closed by the server when its second request arrives. The
    // GET goes out on one (closed: retried), then on the other (closed again): no third try.
    const up = await scriptedServer((req, sock) => {
      if (req.index === 1) sock.end();
      else sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const { pool, cfg } = poolFor(up.url, { maxSockets: 2 });
    await Promise.all([ok(pool, 'GET', '/a'), ok(pool, 'GET', '/b')]);
    assert.equal(up.connections, 2);
    const o = await send(pool, 'GET', '/c').done;
    assert.deepEqual(o.violations, []);
    assert.ok(o.error, 'the request should fail after one retry');
    assert.match(describeUpstreamFailure(o.error, cfg).message, /closed the connection before answering/);
    assert.equal(up.requests.filter((r) => r.head.startsWith('GET /c ')).length, 2);
    assert.equal(up.connections, 2);
  });
});

describe('request bodies', () => {
  const BODY_BYTES = 8 * 1024 * 1024 + 12_345;
  const WRITE_BYTES = 64 * 1024;

  async function slowDigestServer(): Promise<{ url: string }> {
    const up = await httpsServer((req, res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      let reads = 0;
      req.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
        // A slow reader: stop now and then so the gateway's writes back up.
        if (++reads % 8 === 0) {
          req.pause();
          setTimeout(() => req.resume(), 2);
        }
      });
      req.on('end', () => res.end(JSON.stringify({ sha: hash.digest('hex'), bytes, te: req.headers['transfer-encoding'] ?? null, cl: req.headers['content-length'] ?? null })));
    });
    return up;
  }

  for (const framing of ['length', 'chunked'] as const) {
    it(`an ${BODY_BYTES}-byte body streamed as '${framing}' reaches a slow reader intact, with backpressure`, async () => {
      const up = await slowDigestServer();
      const { pool } = poolFor(up.url);
      const payload = randomBytes(BODY_BYTES);
      let refused = 0;
      let drains = 0;
      const headers: Record<string, string> = { host: pool.hostHeader };
      if (framing === 'length') headers['content-length'] = String(payload.length);
      else headers['transfer-encoding'] = 'chunked';
      const o = await ok(pool, 'PUT', '/upload', {
        headers,
        body: framing,
        stream: (req, drained) => {
          void (async () => {
            for (let at = 0; at < payload.length; at += WRITE_BYTES) {
              if (!req.write(payload.subarray(at, at + WRITE_BYTES))) {
                refused++;
                await drained();
                drains++;
              }
            }
            req.end();
          })();
        },
      });
      const got = JSON.parse(o.body.toString()) as { sha: string; bytes: number; te: string | null; cl: string | null };
      assert.equal(got.bytes, payload.length);
      assert.equal(got.sha, sha(payload));
      assert.equal(framing === 'chunked' ? got.te : got.cl, framing === 'chunked' ? 'chunked' : String(payload.length));
      assert.ok(refused > 1, `write() never reported backpressure (${refused})`);
      assert.equal(drains, refused);
    });
  }

  it('a chunked body\'s empty writes do not end it early, and end(chunk) sends the last part', async () => {
    const up = await httpsServer(async (req, res) => res.end(await readAll(req)));
    const { pool } = poolFor(up.url);
    const o = await ok(pool, 'POST', '/echo', {
      headers: { host: pool.hostHeader, 'transfer-encoding': 'chunked' },
      body: 'chunked',
      stream: (req) => {
        req.write(Buffer.from('one,'));
        req.write(Buffer.alloc(0));
        req.write(Buffer.from('two,'));
        req.end(Buffer.from('three'));
      },
    });
    assert.equal(o.body.toString(), 'one,two,three');
  });
});

describe('response flow control', () => {
  for (const framing of ['content-length', 'chunked'] as const) {
    it(`a ${framing} response of several MB arrives intact while the consumer pauses and resumes`, async () => {
      const payload = randomBytes(6 * 1024 * 1024 + 999);
      const up = await httpsServer((req, res) => {
        if (framing === 'content-length') res.setHeader('content-length', payload.length);
        for (let at = 0; at < payload.length; at += 100_000) res.write(payload.subarray(at, at + 100_000));
        res.end();
      });
      const { pool } = poolFor(up.url);
      let paused = false;
      let pauses = 0;
      let whilePaused = 0;
      const o = await ok(pool, 'GET', '/big', {
        onData: (chunk, req) => {
          if (paused) whilePaused++;
          paused = true;
          pauses++;
          req.pause();
          // Resume a little later (sometimes after a timer, sometimes on the next turn).
          const go = (): void => {
            paused = false;
            req.resume();
          };
          if (pauses % 5 === 0) setTimeout(go, 1);
          else setImmediate(go);
        },
      });
      assert.equal(whilePaused, 0, 'data was delivered while paused');
      assert.ok(pauses > 10);
      assert.equal(o.body.length, payload.length);
      assert.equal(sha(o.body), sha(payload));
      // The connection is readable again for the next exchange.
      const next = await ok(pool, 'GET', '/big');
      assert.equal(sha(next.body), sha(payload));
      assert.equal(up.connections(), 1);
    });
  }
});

describe('plaintext upstream on loopback (insecure-plaintext)', () => {
  it('a request body and a several-MB response with pauses arrive byte-exact, and the connection is reused', async () => {
    const payload = randomBytes(5 * 1024 * 1024 + 77);
    const upload = randomBytes(3 * 1024 * 1024 + 5);
    let uploaded = '';
    let connections = 0;
    const server = track(
      http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
        void readAll(req).then((body) => {
          uploaded = sha(body);
          res.setHeader('content-length', payload.length);
          for (let at = 0; at < payload.length; at += 70_000) res.write(payload.subarray(at, at + 70_000));
          res.end();
        });
      }),
    );
    server.on('connection', () => connections++);
    const port = await listen(server);
    const cfg = cfgFor(`http://127.0.0.1:${port}`);
    cfg.upstream.tls = { mode: 'insecure-plaintext', ca: null, serverName: '' };
    const pool = createUpstreamPool(cfg, LIMITS);
    pools.push(pool);
    let pauses = 0;
    const opts: SendOptions = {
      headers: { host: pool.hostHeader, 'content-length': String(upload.length) },
      body: upload,
      onData: (_chunk, req) => {
        if (++pauses % 3 !== 0) return;
        req.pause();
        setImmediate(() => req.resume());
      },
    };
    for (let i = 0; i < 2; i++) {
      const o = await ok(pool, 'POST', '/echo', opts);
      assert.equal(uploaded, sha(upload));
      assert.equal(o.body.length, payload.length);
      assert.equal(sha(o.body), sha(payload));
    }
    assert.equal(connections, 1);
  });
});

describe('destroy()', () => {
  it('fails requests in flight: waiting for the head, mid until-close body, and queued', async () => {
    const up = await scriptedServer((req, sock) => {
      if (req.head.includes('/stream')) sock.write('HTTP/1.1 200 OK\r\n\r\nfirst part of a body that never ends');
      // '/silent': read, never answered
    });
    const { pool } = poolFor(up.url, { maxSockets: 2 });
    let gotData!: () => void;
    const dataSeen = new Promise<void>((resolve) => (gotData = resolve));
    const streaming = send(pool, 'GET', '/stream', { onData: () => gotData() });
    const silent = send(pool, 'GET', '/silent');
    const queued = send(pool, 'GET', '/queued');
    await within(dataSeen, 'the first body bytes');
    await within(
      (async () => {
        while (up.requests.length < 2) await new Promise((r) => setTimeout(r, 5));
      })(),
      'both requests at the server',
    );
    pool.destroy();
    const [s, q, w] = await Promise.all([streaming.done, silent.done, queued.done]);
    for (const o of [s, q, w]) {
      assert.deepEqual(o.violations, []);
      assert.ok(o.error, 'a request in flight must fail when the pool is destroyed');
      assert.equal(o.error.code, 'ECONNRESET');
    }
    assert.equal(s.head?.status, 200);
    assert.equal(up.requests.length, 2);
    // And the pool takes no new work.
    const late = await send(pool, 'GET', '/late').done;
    assert.ok(late.error);
  });
});

describe('connect and TLS failures', () => {
  it('an upstream certificate from another CA: the chain check failed', async () => {
    const up = await scriptedServer(() => {}, { cert: pki.otherCaCertFile, key: pki.otherCaKeyFile });
    const { pool, cfg } = poolFor(up.url);
    const o = await send(pool, 'GET', '/').done;
    assert.deepEqual(o.violations, []);
    assert.ok(o.error);
    const f = describeUpstreamFailure(o.error, cfg);
    assert.equal(f.status, 502);
    assert.equal(f.code, 'ERR_VG_UPSTREAM_TLS');
    assert.match(f.message, /certificate chain check failed/);
    assert.equal(up.requests.length, 0);
  });

  it('a certificate for another host name: the host name check failed', async () => {
    const up = await scriptedServer(() => {}, { cert: pki.wrongHostCertFile, key: pki.wrongHostKeyFile });
    const { pool, cfg } = poolFor(up.url);
    const o = await send(pool, 'GET', '/').done;
    assert.ok(o.error);
    const f = describeUpstreamFailure(o.error, cfg);
    assert.equal(f.code, 'ERR_VG_UPSTREAM_TLS');
    assert.match(f.message, /host name check failed: its certificate does not name "127\.0\.0\.1"/);
    assert.equal(up.requests.length, 0);
  });

  it('tls.serverName is the name checked (and sent as SNI)', async () => {
    let sni: string | undefined;
    const up = await scriptedServer((req, sock) => {
      sni = (sock as tls.TLSSocket & { servername?: string }).servername;
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    });
    const good = poolFor(up.url, {}, { serverName: 'localhost' });
    await ok(good.pool, 'GET', '/');
    assert.equal(sni, 'localhost');
    const bad = poolFor(up.url, {}, { serverName: 'wrong.example' });
    const o = await send(bad.pool, 'GET', '/').done;
    assert.match(describeUpstreamFailure(o.error, bad.cfg).message, /host name check failed: its certificate does not name "wrong\.example"/);
  });

  it('a closed port: cannot be reached (ECONNREFUSED)', async () => {
    const probe = net.createServer();
    const port = await listen(probe);
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const { pool, cfg } = poolFor(`https://127.0.0.1:${port}`);
    const o = await send(pool, 'GET', '/').done;
    assert.deepEqual(o.violations, []);
    assert.equal(o.error?.code, 'ECONNREFUSED');
    const f = describeUpstreamFailure(o.error, cfg);
    assert.equal(f.code, 'ERR_VG_UPSTREAM_CONNECT');
    assert.match(f.message, /cannot be reached \(ECONNREFUSED\)/);
  });

  it('a server that never finishes the TLS handshake: connect timeout, 504', async () => {
    const silent = track(net.createServer((s) => s.on('error', () => {})));
    const port = await listen(silent);
    const { pool, cfg } = poolFor(`https://127.0.0.1:${port}`, { connectTimeoutMs: 300 });
    const o = await send(pool, 'GET', '/').done;
    assert.equal(o.error?.code, 'ERR_VG_UPSTREAM_TIMEOUT');
    const f = describeUpstreamFailure(o.error, cfg);
    assert.equal(f.status, 504);
  });

  it('a DNS name (localhost) is resolved and verified', async () => {
    const up = await httpsServer((req, res) => res.end(`hello ${req.headers.host}`));
    const { pool } = poolFor(`https://localhost:${up.port}`);
    assert.equal(pool.hostHeader, `localhost:${up.port}`);
    const o = await ok(pool, 'GET', '/');
    assert.equal(o.body.toString(), `hello localhost:${up.port}`);
  });
});

describe('the request head', () => {
  it('Host, the upstream credential and every header are sent as given, after the base path', async () => {
    const up = await scriptedServer((req, sock) => sock.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    const { pool } = poolFor(`${up.url}/base/`);
    assert.equal(pool.hostHeader, `127.0.0.1:${up.port}`);
    const secret = 'CANARY-api-key-0123456789';
    await ok(pool, 'GET', '/collections/docs?limit=3', { headers: { host: pool.hostHeader, 'api-key': secret, 'x-multi': ['a', 'b'] } });
    assert.deepEqual(up.requests[0]!.head.split('\r\n'), ['GET /base/collections/docs?limit=3 HTTP/1.1', `host: 127.0.0.1:${up.port}`, `api-key: ${secret}`, 'x-multi: a', 'x-multi: b']);
  });

  it('non-ASCII header values go upstream as the UTF-8 bytes the client sent', async () => {
    const up = await scriptedServer((req, sock) => sock.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    const { pool } = poolFor(up.url);
    await ok(pool, 'GET', '/utf8', { headers: { host: pool.hostHeader, 'x-name': 'José € 東京' } });
    const raw = Buffer.from(up.requests[0]!.head, 'latin1');
    assert.ok(raw.includes(Buffer.from('x-name: José € 東京', 'utf8')), raw.toString('latin1'));
  });

  it('refuses a target or header that could split the request, before sending anything', async () => {
    const up = await scriptedServer((req, sock) => sock.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    const { pool } = poolFor(up.url);
    const refused = (fn: () => void): void =>
      assert.throws(fn, (err: unknown) => {
        assert.ok(err instanceof VgError);
        assert.equal(err.code, 'ERR_VG_HTTP_BAD_REQUEST');
        return true;
      });
    const handlers = { response() {}, data() {}, end() {}, error() {}, drain() {} };
    refused(() => pool.request('GET', '/a b', { host: pool.hostHeader }, 'none', handlers));
    refused(() => pool.request('GET', '/a', { host: pool.hostHeader, 'x-a': 'v\r\nX-Injected: 1' }, 'none', handlers));
    refused(() => pool.request('GET', '/a', { host: pool.hostHeader, 'x-a': ['ok', 'v\nX-Injected: 1'] }, 'none', handlers));
    refused(() => pool.request('GET', '/a', { host: pool.hostHeader, 'x-a\r\nX-Injected': '1' }, 'none', handlers));
    refused(() => pool.request('GET /x HTTP/1.1\r\n', '/a', { host: pool.hostHeader }, 'none', handlers));
    // U+FFFD is what uWS makes of bytes that were not UTF-8: they cannot be sent on as they came.
    refused(() => pool.request('GET', '/a', { host: pool.hostHeader, 'x-a': 'bad \ufffd' }, 'none', handlers));
    await ok(pool, 'GET', '/after');
    assert.deepEqual(
      up.requests.map((r) => r.head.split('\r\n')[0]),
      ['GET /after HTTP/1.1'],
    );
  });
});
