// The HTTP data path in front of a real TLS upstream (nginx from Debian): requests are
// re-serialized (hop-by-hop headers gone, X-Forwarded-For/Forwarded set by the gateway, the
// client's credentials replaced by the injected one), Content-Length request bodies
// arrive byte for byte, answers of realistic sizes come back whole, and the upstream pool reuses
// its keep-alive connections (nginx's $connection / $connection_requests).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { PolicyConfig } from '../../src/config/types.js';
import { startHttpConnection } from '../../workers/http/http-proxy.js';
import type { HttpConnectionHandle } from '../../workers/http/http-proxy.js';
import { devAuthContext, fixtureVector, makeTestPki } from '../harness/http-upstream.js';
import type { DevAuthContext, TestPki } from '../harness/http-upstream.js';
import { startNginxUpstream, type NginxUpstream } from '../harness/nginx-upstream.js';

const CANARY = `canary-nginx-key-${randomBytes(6).toString('hex')}`;
const POLICIES: PolicyConfig[] = [{ name: 'a', groups: ['ml-admins'], connections: ['qdrant'], access: 'admin' }];

let pki: TestPki;
let ng: NginxUpstream;
let dev: DevAuthContext;
let gw: HttpConnectionHandle;
let token = '';

before(async () => {
  pki = await makeTestPki();
  ng = await startNginxUpstream({ certFile: pki.certFile, keyFile: pki.keyFile, caFile: pki.caFile, apiKey: CANARY });
  dev = await devAuthContext({ certFile: pki.certFile, keyFile: pki.keyFile, profile: 'modern', policies: POLICIES, credentials: { qdrant: { header: 'api-key', value: CANARY } } });
  gw = await startHttpConnection(dev.ctx, {
    name: 'qdrant',
    protocol: 'http',
    flavor: 'qdrant',
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { url: ng.url, tls: { mode: 'verify-full', ca: pki.caFile, serverName: '' } },
    credentials: { header: 'api-key', value: CANARY },
    guard: { returnVectors: null, maxLimit: null },
    recording: 'off',
  });
  token = await dev.mint('ada', ['ml-admins']);
});

after(async () => {
  gw?.close();
  await ng?.stop();
  dev?.cleanup();
  pki?.cleanup();
});

interface RawReply {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
}

/**
 * A client that speaks HTTP/1.1 on one TLS connection by hand, so the test controls every
 * header byte and body chunk it sends, and can send several requests on one connection.
 */
class RawClient {
  private buf = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  private closed = false;
  private constructor(private readonly socket: tls.TLSSocket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiting?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiting?.();
    });
    socket.on('error', () => {});
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(pki.caFile) }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  close(): void {
    this.socket.destroy();
  }

  private async need(pred: () => number): Promise<number> {
    for (;;) {
      const n = pred();
      if (n >= 0) return n;
      if (this.closed) throw new Error(`connection closed; got ${this.buf.length} bytes: ${this.buf.toString('latin1').slice(0, 200)}`);
      await new Promise<void>((r) => (this.waiting = r));
      this.waiting = null;
    }
  }

  /** Reads one response (Content-Length or chunked body). */
  async response(): Promise<RawReply> {
    const headEnd = await this.need(() => this.buf.indexOf('\r\n\r\n'));
    const head = this.buf.subarray(0, headEnd).toString('latin1').split('\r\n');
    this.buf = this.buf.subarray(headEnd + 4);
    const status = Number(head[0]!.split(' ')[1]);
    const headers = new Map<string, string>();
    for (const line of head.slice(1)) {
      const i = line.indexOf(':');
      headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
    let body: Buffer;
    if (headers.has('content-length')) {
      const n = Number(headers.get('content-length'));
      await this.need(() => (this.buf.length >= n ? n : -1));
      body = this.buf.subarray(0, n);
      this.buf = this.buf.subarray(n);
    } else if (headers.get('transfer-encoding') === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const lineEnd = await this.need(() => this.buf.indexOf('\r\n'));
        const size = parseInt(this.buf.subarray(0, lineEnd).toString('latin1'), 16);
        await this.need(() => (this.buf.length >= lineEnd + 2 + size + 2 ? 0 : -1));
        parts.push(this.buf.subarray(lineEnd + 2, lineEnd + 2 + size));
        this.buf = this.buf.subarray(lineEnd + 2 + size + 2);
        if (size === 0) break;
      }
      body = Buffer.concat(parts);
    } else {
      body = Buffer.alloc(0);
    }
    return { status, headers, body: Buffer.from(body) };
  }
}

function requestHead(method: string, path: string, headers: Record<string, string>): string {
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: localhost', `Authorization: Bearer ${token}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return lines.join('\r\n') + '\r\n\r\n';
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('nginx as the TLS upstream', () => {
  it('hop-by-hop headers are dropped, forwarding headers set by the gateway, the credential replaced', async () => {
    const c = await RawClient.connect(gw.port);
    try {
      c.write(
        requestHead('POST', '/collections/docs/points/search', {
          'X-Test-Id': 'hop-1',
          'Content-Type': 'application/json',
          'Content-Length': '2',
          Connection: 'keep-alive, X-Drop-Me',
          'X-Drop-Me': 'secret-for-the-next-hop-only',
          'Keep-Alive': 'timeout=5',
          TE: 'trailers',
          'Proxy-Connection': 'keep-alive',
          'X-Forwarded-For': '6.6.6.6',
          Forwarded: 'for=6.6.6.6;proto=http',
          'X-Forwarded-Proto': 'http',
          'api-key': 'client-supplied-key',
          'X-End-To-End': 'kept',
        }) + '{}',
      );
      const r = await c.response();
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, ng.answers.search, 'the fixed search answer comes back byte for byte');
      assert.equal(r.headers.get('x-echo-forwarded-for'), '127.0.0.1');
      const seen = await ng.waitForLog('hop-1');
      assert.equal(seen.protocol, 'HTTP/1.1');
      assert.equal(seen.method, 'POST');
      assert.equal(seen.uri, '/collections/docs/points/search');
      assert.equal(seen.xForwardedFor, '127.0.0.1', 'the client-sent X-Forwarded-For is replaced, not appended to');
      assert.equal(seen.xForwardedProto, 'https');
      assert.match(seen.forwarded, /^for=127\.0\.0\.1;proto=https/);
      assert.equal(seen.xDropMe, '', 'a header named in Connection is hop-by-hop');
      assert.equal(seen.keepAlive, '');
      assert.equal(seen.te, '');
      assert.equal(seen.proxyConnection, '');
      assert.notEqual(seen.connectionHeader.toLowerCase(), 'keep-alive, x-drop-me', "the client's Connection header is not passed on");
      assert.equal(seen.xEndToEnd, 'kept', 'end-to-end headers pass');
      assert.equal(seen.apiKeyOk, 'yes', 'the injected credential replaced the one the client sent');
      assert.equal(seen.authorizationPresent, 'no', "the client's token never reaches the upstream");
      assert.equal(seen.host, new URL(ng.url).host);
      assert.equal(seen.contentLength, '2');
      assert.deepEqual(ng.body(seen), Buffer.from('{}'));
    } finally {
      c.close();
    }
  });

  it('a 4 MB Content-Length upsert arrives intact; a 250 KB answer with vectors comes back whole', async () => {
    const points = Array.from({ length: 200 }, (_, i) => ({ id: i + 1, vector: fixtureVector(i + 100), payload: { n: i } }));
    const body = Buffer.from(JSON.stringify({ points }));
    assert.ok(body.length > 4_000_000);
    const c = await RawClient.connect(gw.port);
    try {
      c.write(requestHead('PUT', '/collections/docs/points', { 'X-Test-Id': 'big-1', 'Content-Type': 'application/json', 'Content-Length': String(body.length) }));
      c.write(body);
      const r = await c.response();
      assert.equal(r.status, 200);
      const seen = await ng.waitForLog('big-1');
      assert.equal(seen.contentLength, String(body.length));
      assert.equal(sha(ng.body(seen)), sha(body));

      const scroll = '{"limit":10,"with_vector":true}';
      c.write(requestHead('POST', '/collections/docs/points/scroll', { 'X-Test-Id': 'scroll-1', 'Content-Type': 'application/json', 'Content-Length': String(scroll.length) }) + scroll);
      const s = await c.response();
      assert.equal(s.status, 200);
      assert.ok(ng.answers.scroll.length > 200_000);
      assert.equal(sha(s.body), sha(ng.answers.scroll), 'the answer with ten 1536-dim vectors is relayed byte for byte');
    } finally {
      c.close();
    }
  });

  it('the upstream pool reuses keep-alive connections (nginx $connection / $connection_requests)', async () => {
    const N = 12;
    const ids: string[] = [];
    // A new client connection per request: reuse upstream comes from the gateway's pool, not the client.
    for (let i = 0; i < N; i++) {
      const c = await RawClient.connect(gw.port);
      try {
        const id = `ka-${i}`;
        ids.push(id);
        c.write(requestHead('GET', '/collections/docs', { 'X-Test-Id': id }));
        const r = await c.response();
        assert.equal(r.status, 200);
        assert.deepEqual(r.body, ng.answers.collection);
      } finally {
        c.close();
      }
    }
    const lines = await Promise.all(ids.map((id) => ng.waitForLog(id)));
    const connections = new Set(lines.map((l) => l.connection));
    assert.ok(connections.size < N, `${N} requests used ${connections.size} upstream connections: the pool did not reuse any`);
    assert.ok(Math.max(...lines.map((l) => l.connectionRequests)) >= 2, 'some upstream connection served more than one request');
    // Requests on one connection are counted 1, 2, 3, ... by nginx: consecutive on the same socket.
    for (const conn of connections) {
      const counts = lines.filter((l) => l.connection === conn).map((l) => l.connectionRequests);
      assert.equal(new Set(counts).size, counts.length, `connection ${conn} counted each request once`);
    }
  });

  it('several requests on one client connection each reach nginx as their own re-serialized request', async () => {
    const c = await RawClient.connect(gw.port);
    try {
      for (let i = 0; i < 5; i++) {
        c.write(requestHead('POST', '/collections/docs/points/search', { 'X-Test-Id': `seq-${i}`, 'Content-Type': 'application/json', 'Content-Length': '11' }) + '{"limit":3}');
        const r = await c.response();
        assert.equal(r.status, 200);
        assert.deepEqual(r.body, ng.answers.search);
        const seen = await ng.waitForLog(`seq-${i}`);
        assert.deepEqual(ng.body(seen), Buffer.from('{"limit":3}'));
      }
    } finally {
      c.close();
    }
  });
});
