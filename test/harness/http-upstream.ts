// Test fixtures for the HTTP data path: a throwaway PKI made with the openssl CLI, and a
// fixture upstream (node:https on loopback) answering the Qdrant and Chroma REST subset the
// official JS clients call with `vecgate dev`'s embedded vector API (in memory, real vector
// math, realistic payload sizes: 1536-dim vectors as JSON) plus test hooks (/__echo, /__big,
// /__cut, /__hang). It checks the injected upstream credential like the real servers
// do, and records what reached it so tests can prove what was (not) forwarded.
import { writeTestPki } from '../../src/dev/pki.js';
import { createVectorApi, parseJsonBody, readBody, sendJson } from '../../src/dev/vector-api.js';
import { createHash } from 'node:crypto';
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

/** Every answer of the fixture carries this header (tests check upstream headers reach the client). */
const FIXTURE_HEADERS = { 'x-upstream': 'fixture' };

function json(res: ServerResponse, status: number, body: unknown): void {
  sendJson(res, status, body, FIXTURE_HEADERS);
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
  /** Requires another credential from now on (a rotated API key). */
  setCredential(credential: FixtureUpstreamOptions['credential']): void;
  close(): Promise<void>;
}

export async function startFixtureUpstream(opts: FixtureUpstreamOptions): Promise<FixtureUpstream> {
  const seen: SeenRequest[] = [];
  // The Qdrant and Chroma routes are vecgate dev's embedded vector API (src/dev/vector-api.ts).
  const api = createVectorApi({ defaultDim: FIXTURE_DIM, responseHeaders: FIXTURE_HEADERS });
  let socketCount = 0;
  let bigSent = 0;
  let credential = opts.credential;

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
    const body = (await readBody(req, Infinity))!; // the tests' bodies are read whole, however large
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: body.length });
    if (credential && req.headers[credential.header.toLowerCase()] !== credential.value) {
      json(res, 401, { status: { error: 'Must provide an API key or an Authorization bearer token' } });
      return;
    }
    const doc = parseJsonBody(req, body);
    if (p === '/__echo') {
      // Like a real server, never reflect the credential (tests read it from `seen`).
      const { [credential?.header.toLowerCase() ?? '']: _secret, ...headers } = req.headers;
      json(res, 200, { method: req.method, bodyBytes: body.length, bodySha256: createHash('sha256').update(body).digest('hex'), headers });
      return;
    }
    if (p === '/__big') {
      // Streams N bytes in 64 KB writes, honouring backpressure; chunked unless ?length=1. Byte
      // i is bigBodyByte(i): a lost, repeated or reordered stretch shows (see bigBodyMismatch).
      const n = Number(url.searchParams.get('bytes') ?? '0');
      const withLength = url.searchParams.get('length') === '1';
      res.writeHead(200, withLength ? { 'content-type': 'application/octet-stream', 'content-length': n } : { 'content-type': 'application/octet-stream' });
      const block = BIG_PATTERN;
      let left = n;
      let at = 0;
      const more = (): void => {
        while (left > 0) {
          const c = block.subarray(at % BIG_PERIOD, at % BIG_PERIOD + Math.min(64 * 1024, left));
          at += c.length;
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
    api.handle(req.method ?? 'GET', url, doc, res);
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `https://127.0.0.1:${port}`,
    seen,
    sockets: () => socketCount,
    bigBytesSent: () => bigSent,
    setCredential: (c) => {
      credential = c;
    },
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
  /** Upstream credentials by connection name, carried by its grants as the primary resolves them from config; none by default. */
  credentials?: Record<string, import('../../src/config/types.js').HttpConnectionConfig['credentials']>;
}): Promise<DevAuthContext> {
  const { credentialHeader } = await import('../../workers/http/credential-header.js');
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
      return { ok: true, subject: principal.subject, username: principal.username, issuer: principal.issuer, groups: principal.groups, access: decision.access, rules: decision.rules, credential: { user: '', password: '' }, upstreamHeader: credentialHeader(opts.credentials?.[connection] ?? null), expiresAt: principal.expiresAt };
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

/** /__big's body: byte i is i mod 251 (a prime, so no 2^k-sized stretch can go missing unseen). */
const BIG_PERIOD = 251;
const BIG_PATTERN = Buffer.from(Array.from({ length: 64 * 1024 + BIG_PERIOD }, (_, i) => i % BIG_PERIOD));

/** Where `chunk`, received at body offset `start` of a /__big answer, first differs from it; -1 if nowhere. */
export function bigBodyMismatch(chunk: Buffer, start: number): number {
  let expect = start % BIG_PERIOD;
  for (let i = 0; i < chunk.length; i++) {
    if (chunk[i] !== expect) return start + i;
    expect = expect === BIG_PERIOD - 1 ? 0 : expect + 1;
  }
  return -1;
}
