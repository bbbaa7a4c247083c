// Certificate rotation for the HTTP listeners through the whole gateway (primary + two
// workers): the certificate files are replaced and reloaded while clients keep opening new TLS
// connections; not one request fails, new connections get the new certificate, and a
// keep-alive connection opened before the rotation keeps working on the old one.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import tls from 'node:tls';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { startGateway, type GatewayHandle } from '../../src/gateway/gateway.js';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { DevIssuer } from '../../src/identity/dev-issuer.js';
import { startFixtureUpstream, type FixtureUpstream } from '../harness/http-upstream.js';
import { freePort } from '../harness/free-port.js';

/** Parallel request loops during the rotation (each request on a new TLS connection). */
const LOAD_LOOPS = 4;
/** Requests every loop still makes once the new certificate is being served. */
const REQUESTS_AFTER_ROTATION = 25;
/** Upper bounds so the load always stops by itself. */
const MAX_REQUESTS_PER_LOOP = 2_000;
const MAX_LOAD_MS = 60_000;

let dir: string;
let pki: TestPki;
let certFile: string;
let keyFile: string;
let upstream: FixtureUpstream;
let issuer: DevIssuer;
let gw: GatewayHandle;
let port: number;
let token: string;
const logLines: string[] = [];

const fingerprint = (file: string) => new X509Certificate(readFileSync(file)).fingerprint256;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-http-rot-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  // The gateway's own copies: the test replaces them in place.
  certFile = path.join(dir, 'server.pem');
  keyFile = path.join(dir, 'server-key.pem');
  copyFileSync(pki.serverCert, certFile);
  copyFileSync(pki.serverKey, keyFile);
  upstream = await startFixtureUpstream({ certFile: pki.serverCert, keyFile: pki.serverKey, credential: { header: 'api-key', value: 'k' } });
  issuer = await DevIssuer.open(dir);
  // A fixed port: a second listener on it needs SO_REUSEPORT, which uWS sets only for a fixed port.
  port = await freePort();
  const file = path.join(dir, 'vecgate.yaml');
  writeFileSync(
    file,
    stringify({
      server: { tls: { cert: certFile, key: keyFile }, workers: 2 },
      identity: { issuers: [{ issuer: issuer.issuer, audience: 'vecgate', jwks: issuer.jwksPath }] },
      policies: [{ name: 'admin', groups: ['ml-admins'], connections: ['qdrant'], access: 'admin' }],
      connections: {
        qdrant: {
          protocol: 'http',
          flavor: 'qdrant',
          listen: `127.0.0.1:${port}`,
          upstream: { url: upstream.url, tls: { mode: 'verify-full', ca: pki.caCert } },
          credentials: { header: 'api-key', value: 'k' },
        },
      },
      recordings: { dir: path.join(dir, 'recordings') },
    }),
  );
  const sink = new Writable({ write(c, _e, cb) { logLines.push(String(c)); cb(); } });
  gw = await startGateway(await loadConfig(file), { logger: pino({ level: 'info' }, sink) });
  token = await issuer.mint({ user: 'ada@example.com', groups: ['ml-admins'], ttlSec: 600 });
  const created = await get('PUT', '/collections/docs', JSON.stringify({ vectors: { size: 4, distance: 'Dot' } }));
  assert.equal(created.status, 200);
});

after(async () => {
  await gw?.stop({ drainMs: 200 });
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One request on a new TLS connection; resolves with the status and the certificate that connection saw. */
function get(method = 'GET', urlPath = '/collections/docs', body?: string): Promise<{ status: number; cert: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        method,
        path: urlPath,
        ca: readFileSync(pki.caCert),
        agent: false,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) },
      },
      (res) => {
        const cert = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, cert }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A hand-driven keep-alive connection: one TLS socket, requests sent one after another. */
async function keepAliveConnection(): Promise<{ cert: string; request(): Promise<number>; close(): void }> {
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(pki.caCert) }, () => resolve(s));
    s.once('error', reject);
  });
  let buf = '';
  let wake: (() => void) | null = null;
  socket.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    wake?.();
  });
  socket.on('close', () => wake?.());
  return {
    cert: socket.getPeerCertificate().fingerprint256,
    async request() {
      socket.write(`GET /collections/docs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
      for (;;) {
        const m = /^HTTP\/1\.1 (\d+)[^\r]*\r\n([\s\S]*?)\r\n\r\n/.exec(buf);
        if (m) {
          const len = Number(/content-length: *(\d+)/i.exec(m[2]!)?.[1] ?? 0);
          if (buf.length >= m[0].length + len) {
            buf = buf.slice(m[0].length + len);
            return Number(m[1]);
          }
        }
        if (socket.destroyed) throw new Error('the keep-alive connection was closed');
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
    },
    close: () => socket.destroy(),
  };
}

/** Linux moves connections queued on a closing SO_REUSEPORT listener to another one only with this set. */
function kernelMigratesQueuedConnections(): boolean {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

test('rotation under load: no failed request, the new certificate served, old connections keep working', async (t) => {
  const oldCert = fingerprint(pki.serverCert);
  const newCert = fingerprint(pki.altServerCert);
  assert.notEqual(oldCert, newCert);
  const before = await get();
  assert.equal(before.cert, oldCert);
  const kept = await keepAliveConnection();
  assert.equal(kept.cert, oldCert);
  assert.equal(await kept.request(), 200);

  let rotated = false;
  let stop = false;
  const failures: string[] = [];
  const seen = { old: 0, new: 0, total: 0 };
  const started = Date.now();
  const loop = async () => {
    let afterRotation = 0;
    for (let i = 0; i < MAX_REQUESTS_PER_LOOP && !stop && Date.now() - started < MAX_LOAD_MS; i++) {
      try {
        const r = await get();
        seen.total++;
        if (r.status !== 200) failures.push(`status ${r.status}`);
        if (r.cert === newCert) seen.new++;
        else seen.old++;
      } catch (err) {
        // The code too: Node words a reset during the TLS handshake as "Client network socket
        // disconnected before secure TLS connection was established" (code ECONNRESET).
        const e = err as NodeJS.ErrnoException;
        failures.push(e.code ? `${e.code}: ${e.message}` : e.message);
      }
      if (rotated && ++afterRotation >= REQUESTS_AFTER_ROTATION) return;
    }
  };
  const load = Array.from({ length: LOAD_LOOPS }, loop);

  // Let the load run on the old certificate, then replace both files (each by rename, so no
  // reader sees half a file) and reload, as SIGHUP does.
  while (seen.total < 40 && Date.now() - started < MAX_LOAD_MS) await new Promise((r) => setTimeout(r, 10));
  writeFileSync(certFile + '.new', readFileSync(pki.altServerCert));
  writeFileSync(keyFile + '.new', readFileSync(pki.altServerKey), { mode: 0o600 });
  renameSync(keyFile + '.new', keyFile);
  renameSync(certFile + '.new', certFile);
  assert.equal(gw.reloadTls(), true);
  // Both workers apply the 'tls' message; new connections see the new certificate from then on.
  const until = Date.now() + MAX_LOAD_MS;
  while (Date.now() < until && logLines.filter((l) => l.includes('"msg":"server certificate rotated"')).length < 2) await new Promise((r) => setTimeout(r, 10));
  let consecutiveNew = 0;
  while (consecutiveNew < 10 && Date.now() < until) consecutiveNew = (await get()).cert === newCert ? consecutiveNew + 1 : 0;
  rotated = true;
  await Promise.all(load);
  stop = true;

  // A connection the kernel queued on a worker's old listener in the instant before it closed is
  // reset (before any HTTP was exchanged) unless net.ipv4.tcp_migrate_req=1; every other failure counts.
  const resets = failures.filter((f) => /ECONNRESET/.test(f));
  t.diagnostic(`${seen.total} requests, ${resets.length} reset connections, tcp_migrate_req=${kernelMigratesQueuedConnections() ? 1 : 0}`);
  assert.deepEqual(failures.filter((f) => !/ECONNRESET/.test(f)), [], `${failures.length} of ${seen.total} requests failed during the rotation`);
  if (kernelMigratesQueuedConnections()) assert.deepEqual(resets, [], 'with tcp_migrate_req=1 not even a queued connection is lost');
  assert.ok(seen.old > 0 && seen.new > 0, `the load spanned the rotation (old ${seen.old}, new ${seen.new})`);
  assert.equal(consecutiveNew, 10, 'new connections get the new certificate');
  assert.ok(!logLines.join('').includes('http listener kept its current certificate'), logLines.filter((l) => l.includes('kept')).join(''));
  // The connection opened before the rotation goes on, on its own (old) certificate.
  assert.equal(await kept.request(), 200);
  assert.equal(await kept.request(), 200);
  kept.close();
});

test('a key that does not match the certificate changes nothing and says so', async () => {
  const current = (await get()).cert;
  // The primary checks the pair before it tells the workers (and each HTTP listener checks it again).
  writeFileSync(keyFile + '.new', readFileSync(pki.wrongNameKey), { mode: 0o600 });
  renameSync(keyFile + '.new', keyFile);
  assert.equal(gw.reloadTls(), false, 'the primary keeps the current pair');
  const r = await get();
  assert.equal(r.status, 200);
  assert.equal(r.cert, current);
  // Put the matching key back for the next reader of these files.
  writeFileSync(keyFile + '.new', readFileSync(pki.altServerKey), { mode: 0o600 });
  renameSync(keyFile + '.new', keyFile);
});
