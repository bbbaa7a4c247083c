// Request-smuggling corpus over raw TLS sockets: every ambiguous framing is refused (400/431/501
// from us, or a silent close from uWS itself) and nothing of it reaches the upstream.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { PolicyConfig } from '../../src/config/types.js';
import { startHttpConnection } from '../../workers/http/http-proxy.js';
import type { HttpConnectionHandle } from '../../workers/http/http-proxy.js';
import { devAuthContext, makeTestPki, startFixtureUpstream } from '../harness/http-upstream.js';
import type { DevAuthContext, FixtureUpstream, TestPki } from '../harness/http-upstream.js';

const POLICIES: PolicyConfig[] = [{ name: 'a', groups: ['ml-admins'], connections: ['generic'], access: 'admin' }];

let pki: TestPki;
let up: FixtureUpstream;
let dev: DevAuthContext;
let gw: HttpConnectionHandle;
let token = '';

before(async () => {
  pki = await makeTestPki();
  up = await startFixtureUpstream({ certFile: pki.certFile, keyFile: pki.keyFile, credential: null });
  dev = await devAuthContext({ certFile: pki.certFile, keyFile: pki.keyFile, profile: 'modern', policies: POLICIES });
  gw = await startHttpConnection(dev.ctx, {
    name: 'generic',
    protocol: 'http',
    flavor: 'generic',
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { url: up.url, tls: { mode: 'verify-full', ca: pki.caFile, serverName: '' } },
    credentials: null,
    guard: { returnVectors: null, maxLimit: null },
    recording: 'off',
  });
  token = await dev.mint('ada', ['ml-admins']);
});

after(async () => {
  gw?.close();
  await up?.close();
  dev?.cleanup();
  pki?.cleanup();
});

/** Sends raw bytes over TLS and collects everything until the server closes (or 1.5 s of silence). */
function raw(payload: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: gw.port, servername: 'localhost', ca: readFileSync(pki.caFile) }, () => s.write(payload));
    let out = '';
    let idle: NodeJS.Timeout = setTimeout(() => s.destroy(), 1500);
    s.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      clearTimeout(idle);
      idle = setTimeout(() => s.destroy(), 1500);
    });
    s.on('close', () => {
      clearTimeout(idle);
      resolve(out);
    });
    s.on('error', (e) => (out ? undefined : reject(e)));
  });
}

describe('framing', () => {
  const auth = () => `Authorization: Bearer ${token}\r\n`;
  const cases: [name: string, payload: () => string | Buffer, expect: RegExp | 'closed'][] = [
    ['CL + TE', () => `POST /__echo HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /__echo HTTP/1.1\r\nHost: x\r\n\r\n`, 'closed'],
    ['duplicate Content-Length (different)', () => `POST /__echo HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`, /^HTTP\/1\.1 400 /],
    ['duplicate Content-Length (same)', () => `POST /__echo HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd`, /^HTTP\/1\.1 400 /],
    ['Content-Length list', () => `POST /__echo HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: 4, 4\r\n\r\nabcd`, 'closed'],
    ['Content-Length with sign', () => `POST /__echo HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: +4\r\n\r\nabcd`, 'closed'],
    ['bad chunk size', () => `POST /__echo HTTP/1.1\r\nHost: x\r\n${auth()}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`, 'closed'], // uWS closes in the same read, before the 411 goes
    // uWS 20.30 decodes these as a complete (cut) body: `{}`, then an empty one.
    ['chunk longer than its size', () => `POST /__echo HTTP/1.1\r\nHost: x\r\n${auth()}Transfer-Encoding: chunked\r\n\r\n2\r\n{}ab\r\n0\r\n\r\n`, /^HTTP\/1\.1 411 /],
    ['leading space in a chunk size', () => `POST /__echo HTTP/1.1\r\nHost: x\r\n${auth()}Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n`, /^HTTP\/1\.1 411 /],
    ['chunk extension', () => `POST /__echo HTTP/1.1\r\nHost: x\r\n${auth()}Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n`, /^HTTP\/1\.1 411 /],
    ['TE gzip, chunked', () => `POST /__echo HTTP/1.1\r\nHost: x\r\n${auth()}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, /^HTTP\/1\.1 501 /],
    ['obs-fold', () => `GET /__echo HTTP/1.1\r\nHost: x\r\n${auth()}X-A: b\r\n c\r\n\r\n`, 'closed'],
    ['bare LF', () => `GET /__echo HTTP/1.1\nHost: x\n${auth().replace('\r\n', '\n')}\n`, 'closed'],
    ['space before colon', () => `POST /__echo HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length : 4\r\n\r\nabcd`, 'closed'],
    ['NUL in a header', () => `GET /__echo HTTP/1.1\r\nHost: x\r\n${auth()}X-A: a\0b\r\n\r\n`, 'closed'],
    ['oversized headers', () => `GET /__echo HTTP/1.1\r\nHost: x\r\n${auth()}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`, /^HTTP\/1\.1 431 /],
    ['two Host headers', () => `GET /__echo HTTP/1.1\r\nHost: x\r\nHost: y\r\n${auth()}\r\n`, /^HTTP\/1\.1 400 /],
    ['HTTP/1.0', () => `GET /__echo HTTP/1.0\r\nHost: x\r\n${auth()}\r\n`, 'closed'],
    ['control character in a header value', () => `GET /__echo HTTP/1.1\r\nHost: x\r\n${auth()}X-A: a\x01b\r\n\r\n`, 'closed'],
    ['control character in the Authorization value', () => `GET /__echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token.slice(0, 20)}\x01${token.slice(20)}\r\n\r\n`, 'closed'],
    // Sent as raw bytes (latin1): uWS hands such a value over with U+FFFD, which cannot be sent on.
    ['bytes that are not UTF-8 in a header value', () => Buffer.from(`GET /__echo HTTP/1.1\r\nHost: x\r\n${auth()}X-A: a\xffb\r\n\r\n`, 'latin1'), /^HTTP\/1\.1 400 /],
    // Authorization is read as a bearer token only (never forwarded): the token pattern refuses it.
    ['bytes that are not UTF-8 in the Authorization value', () => Buffer.from(`GET /__echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token.slice(0, 20)}\xff${token.slice(20)}\r\n\r\n`, 'latin1'), /^HTTP\/1\.1 401 /],
  ];
  for (const [name, payload, expect] of cases) {
    it(`${name}: refused, nothing forwarded`, async () => {
      const before = up.seen.length;
      const out = await raw(payload());
      if (expect === 'closed') assert.equal(out, '', `expected a silent close, got ${JSON.stringify(out.slice(0, 80))}`);
      else assert.match(out, expect);
      assert.equal((out.match(/HTTP\/1\.1 /g) ?? []).length <= 1, true, 'no second (smuggled) response');
      assert.equal(up.seen.length, before, 'nothing reached the upstream');
    });
  }

  it('a chunked request, even a well-framed one, gets 411 with a JSON error and nothing is forwarded', async () => {
    // uWS cannot tell a well-framed chunked body from a malformed one (request-framing.ts).
    const before = up.seen.length;
    const out = await raw(`POST /__echo HTTP/1.1\r\nHost: x\r\n${auth()}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`);
    assert.match(out, /^HTTP\/1\.1 411 /);
    assert.match(out, /\r\n\r\n\{"error":\{"code":"ERR_VG_HTTP_LENGTH_REQUIRED","message":"chunked request bodies are not accepted by this gateway; send the body with Content-Length"\}\}$/);
    assert.equal(up.seen.length, before);
  });

  // Limits of uWebSockets.js 20.30 that no JavaScript can reach; the native front (#19) fixes them.
  it('49 or more header fields get 431', { todo: 'uWS 20.30 holds 48 fields (HttpRequest::MAX_HEADERS 50): it waits for the rest of a head it cannot hold and closes after its 10 s idle timeout, without calling the request handler' }, async () => {
    const many = Array.from({ length: 48 }, (_, i) => `X-${i}: v\r\n`).join('');
    const out = await raw(`GET /__echo HTTP/1.1\r\nHost: x\r\n${auth()}${many}\r\n`);
    assert.match(out, /^HTTP\/1\.1 431 /);
  });

  it('two pipelined requests in one write are both answered, in order', { todo: 'uWS 20.30 (and its master) closes a connection whose next request arrives while a response is pending (HttpContext.h: "denying async pipelining"); no handler runs for the second request, and the first can no longer be answered' }, async () => {
    const req = `GET /__echo HTTP/1.1\r\nHost: x\r\n${auth()}\r\n`;
    const out = await raw(req + req);
    assert.equal((out.match(/HTTP\/1\.1 200 /g) ?? []).length, 2);
  });

  it('a refused HEAD request gets its status and headers, no body', async () => {
    // On a kept-alive connection a body after the head would be read as the next response.
    const out = await raw(`HEAD /__echo HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.match(out, /^HTTP\/1\.1 401 /);
    assert.match(out, /content-type: application\/json/i);
    const length = Number(/content-length: (\d+)/i.exec(out)?.[1]);
    assert.ok(length > 0, 'Content-Length of the body a GET would get');
    assert.ok(out.endsWith('\r\n\r\n'), `no body after the head: ${JSON.stringify(out.slice(-80))}`);
  });
});
