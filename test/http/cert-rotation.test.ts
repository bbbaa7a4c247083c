// rotateCertificate on one HTTP listener (this thread's uWS app): the new pair is served to new
// connections, a connection opened before keeps working, and a pair that does not match or
// cannot be read is refused with the current certificate kept.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { HttpConnectionConfig, PolicyConfig } from '../../src/config/types.js';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { startHttpConnection, type HttpConnectionHandle } from '../../workers/http/http-proxy.js';
import { devAuthContext, startFixtureUpstream, type DevAuthContext, type FixtureUpstream } from '../harness/http-upstream.js';
import { freePort } from '../harness/free-port.js';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const POLICIES: PolicyConfig[] = [{ name: 'a', groups: ['ml-admins'], connections: ['qdrant'], access: 'admin' }];
let dir: string;
let pki: TestPki;
let up: FixtureUpstream;
let dev: DevAuthContext;
let token = '';
const handles: HttpConnectionHandle[] = [];

function cfg(port: number): HttpConnectionConfig {
  return {
    name: 'qdrant',
    protocol: 'http',
    flavor: 'qdrant',
    listen: { host: '127.0.0.1', port },
    upstream: { url: up.url, tls: { mode: 'verify-full', ca: pki.caCert, serverName: '' } },
    credentials: null,
    guard: { returnVectors: null, maxLimit: null },
    recording: 'off',
  };
}

const fp = (file: string) => new X509Certificate(readFileSync(file)).fingerprint256;

function connect(port: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(pki.caCert) }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Sends one GET on the socket and resolves with the status line once the whole answer is in. */
function roundTrip(s: tls.TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = Number(/content-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
      if (buf.length < end + 4 + len) return;
      s.off('data', onData);
      resolve(buf.slice(0, buf.indexOf('\r\n')));
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error(`closed after ${JSON.stringify(buf.slice(0, 80))}`)));
    s.write(`GET /collections HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  });
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-http-certrot-'));
  pki = await writeTestPki(dir);
  up = await startFixtureUpstream({ certFile: pki.serverCert, keyFile: pki.serverKey, credential: null });
  dev = await devAuthContext({ certFile: pki.serverCert, keyFile: pki.serverKey, profile: 'modern', policies: POLICIES });
  token = await dev.mint('ada', ['ml-admins']);
});

after(async () => {
  for (const h of handles) h.closeAll();
  await up?.close();
  dev?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe('rotateCertificate', () => {
  it('serves the new pair to new connections while an old connection keeps its own', async () => {
    const h = await startHttpConnection(dev.ctx, cfg(await freePort()));
    handles.push(h);
    const old = await connect(h.port);
    assert.equal(old.getPeerCertificate().fingerprint256, fp(pki.serverCert));
    assert.match(await roundTrip(old), /^HTTP\/1\.1 200/);
    h.rotateCertificate(pki.altServerCert, pki.altServerKey);
    const fresh = await connect(h.port);
    assert.equal(fresh.getPeerCertificate().fingerprint256, fp(pki.altServerCert));
    assert.match(await roundTrip(fresh), /^HTTP\/1\.1 200/);
    assert.match(await roundTrip(old), /^HTTP\/1\.1 200/, 'the connection from before the rotation still works');
    // Rotating twice works the same way (a third app; the second one retires).
    h.rotateCertificate(pki.serverCert, pki.serverKey);
    const third = await connect(h.port);
    assert.equal(third.getPeerCertificate().fingerprint256, fp(pki.serverCert));
    for (const s of [old, fresh, third]) s.destroy();
  });

  it('refuses a key that does not match, or a file that cannot be read, and keeps serving the current pair', async () => {
    const h = await startHttpConnection(dev.ctx, cfg(await freePort()));
    handles.push(h);
    assert.throws(() => h.rotateCertificate(pki.altServerCert, pki.serverKey), (e: { code?: string; message: string }) => e.code === 'ERR_VG_TLS_FILES' && /does not belong/.test(e.message));
    assert.throws(() => h.rotateCertificate(path.join(dir, 'missing.pem'), pki.serverKey), (e: { code?: string }) => e.code === 'ERR_VG_TLS_FILES');
    const s = await connect(h.port);
    assert.equal(s.getPeerCertificate().fingerprint256, fp(pki.serverCert));
    assert.match(await roundTrip(s), /^HTTP\/1\.1 200/);
    s.destroy();
  });

  it('says why when the listener has no fixed port (uWS sets SO_REUSEPORT only for one)', async () => {
    const h = await startHttpConnection(dev.ctx, cfg(0));
    handles.push(h);
    assert.throws(() => h.rotateCertificate(pki.altServerCert, pki.altServerKey), (e: { code?: string; message: string }) => e.code === 'ERR_VG_LISTEN' && /SO_REUSEPORT/.test(e.message));
    const s = await connect(h.port);
    assert.equal(s.getPeerCertificate().fingerprint256, fp(pki.serverCert), 'the current certificate is kept');
    s.destroy();
  });
});
