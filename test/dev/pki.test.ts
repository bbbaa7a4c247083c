// The dev/test PKI: certificates that Node's TLS client and OpenSSL (what libpq uses) accept
// for the right names under the right CA, and refuse otherwise; ensureDevPki reuse rules.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { createCa, ensureDevPki, issueServerCert, writeTestPki, type TestPki } from '../../src/dev/pki.js';

const OPENSSL = '/usr/bin/openssl';

/** A TLS server on 127.0.0.1:0 presenting `cert`; answers "ok" once the handshake is done. */
async function tlsServer(certFile: string, keyFile: string): Promise<{ port: number; close(): Promise<void> }> {
  const srv = tls.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (s) => s.end('ok'));
  srv.on('tlsClientError', () => {}); // refused handshakes are what some tests want
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { port: (srv.address() as net.AddressInfo).port, close: () => new Promise((r) => srv.close(() => r())) };
}

/** Connects to 127.0.0.1:port with `servername` (a host name, or undefined for an IP check against `host`). */
function handshake(port: number, caFile: string, name: string): Promise<'ok' | string> {
  return new Promise((resolve) => {
    const isIp = net.isIP(name) !== 0;
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      ca: readFileSync(caFile),
      // SNI takes host names only; for an IP the identity check uses `host`.
      ...(isIp ? {} : { servername: name }),
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert),
    });
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('end', () => resolve(data === 'ok' ? 'ok' : `unexpected: ${data}`));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

function opensslVerify(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(OPENSSL, ['verify', ...args], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('writeTestPki', () => {
  let dir: string;
  let pki: TestPki;
  let good: { port: number; close(): Promise<void> };
  let wrongName: { port: number; close(): Promise<void> };
  let untrusted: { port: number; close(): Promise<void> };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vg-pki-'));
    pki = await writeTestPki(path.join(dir, 'pki'));
    good = await tlsServer(pki.serverCert, pki.serverKey);
    wrongName = await tlsServer(pki.wrongNameCert, pki.wrongNameKey);
    untrusted = await tlsServer(pki.untrustedServerCert, pki.untrustedServerKey);
  });
  after(async () => {
    await Promise.all([good?.close(), wrongName?.close(), untrusted?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('Node TLS accepts the server certificate for localhost, 127.0.0.1 and ::1 under the CA', async () => {
    assert.equal(await handshake(good.port, pki.caCert, 'localhost'), 'ok');
    assert.equal(await handshake(good.port, pki.caCert, '127.0.0.1'), 'ok');
    assert.equal(await handshake(good.port, pki.caCert, '::1'), 'ok');
  });

  test('Node TLS refuses the server certificate under the unrelated CA', async () => {
    assert.equal(await handshake(good.port, pki.wrongCaCert, 'localhost'), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  test('Node TLS refuses a localhost certificate signed by the unrelated CA', async () => {
    assert.equal(await handshake(untrusted.port, pki.caCert, 'localhost'), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  test('Node TLS refuses a name the certificate does not carry', async () => {
    assert.equal(await handshake(good.port, pki.caCert, 'wrong.example'), 'ERR_TLS_CERT_ALTNAME_INVALID');
    assert.equal(await handshake(good.port, pki.caCert, '127.0.0.2'), 'ERR_TLS_CERT_ALTNAME_INVALID');
    assert.equal(await handshake(wrongName.port, pki.caCert, 'localhost'), 'ERR_TLS_CERT_ALTNAME_INVALID');
    assert.equal(await handshake(wrongName.port, pki.caCert, 'wrong.example'), 'ok');
  });

  test('OpenSSL verifies the chains (what libpq does) and checks names and purpose', () => {
    let r = opensslVerify(['-CAfile', pki.caCert, '-purpose', 'sslserver', pki.serverCert]);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /: OK/);
    r = opensslVerify(['-CAfile', pki.caCert, '-purpose', 'sslserver', '-verify_hostname', 'localhost', '-verify_ip', '127.0.0.1', pki.serverCert]);
    assert.equal(r.status, 0, r.out);
    r = opensslVerify(['-CAfile', pki.caCert, '-verify_ip', '::1', pki.serverCert]);
    assert.equal(r.status, 0, r.out);
    r = opensslVerify(['-CAfile', pki.wrongCaCert, pki.serverCert]);
    assert.notEqual(r.status, 0, r.out);
    r = opensslVerify(['-CAfile', pki.caCert, pki.untrustedServerCert]);
    assert.notEqual(r.status, 0, r.out);
    r = opensslVerify(['-CAfile', pki.caCert, '-verify_hostname', 'localhost', pki.wrongNameCert]);
    assert.notEqual(r.status, 0, r.out);
    assert.match(r.out, /hostname mismatch/);
  });

  test('certificates are ECDSA P-256 with the expected extensions; keys are PKCS#8 and mode 0600', () => {
    const leaf = new X509Certificate(readFileSync(pki.serverCert));
    const ca = new X509Certificate(readFileSync(pki.caCert));
    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(ca.ca, true);
    assert.equal(leaf.ca, false);
    assert.equal(leaf.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    assert.ok(leaf.keyUsage?.includes('1.3.6.1.5.5.7.3.1'), `serverAuth EKU missing: ${leaf.keyUsage}`);
    for (const key of [pki.caKey, pki.serverKey, pki.altServerKey, pki.wrongNameKey, pki.untrustedServerKey]) {
      assert.match(readFileSync(key, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
      assert.equal(statSync(key).mode & 0o777, 0o600, key);
    }
    assert.notEqual(new X509Certificate(readFileSync(pki.altServerCert)).serialNumber, leaf.serialNumber);
  });
});

describe('createCa / issueServerCert', () => {
  test('a certificate issued for given names carries exactly those names and a positive serial', async () => {
    const ca = await createCa({ commonName: 'unit CA' });
    const leaf = await issueServerCert(ca, { commonName: 'db.test', dnsNames: ['db.test', 'db2.test'], ips: ['127.0.0.5'], days: 2 });
    const c = new X509Certificate(leaf.certPem);
    assert.equal(c.subject, 'CN=db.test');
    assert.equal(c.subjectAltName, 'DNS:db.test, DNS:db2.test, IP Address:127.0.0.5');
    assert.ok(c.verify(new X509Certificate(ca.certPem).publicKey));
    assert.ok(c.checkIssued(new X509Certificate(ca.certPem)));
    const days = (Date.parse(c.validTo) - Date.parse(c.validFrom)) / 86_400_000;
    assert.equal(Math.round(days), 2);
    assert.ok(/^[0-7]/.test(c.serialNumber), `serial ${c.serialNumber} would be negative in DER`);
  });
});

describe('ensureDevPki', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vg-devpki-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('writes absolute paths under dir/tls, keys 0600, and a chain OpenSSL accepts', async () => {
    const p = await ensureDevPki(dir);
    assert.equal(p.caCert, path.join(dir, 'tls', 'ca.pem'));
    assert.equal(p.serverCert, path.join(dir, 'tls', 'server.pem'));
    assert.equal(p.serverKey, path.join(dir, 'tls', 'server-key.pem'));
    assert.equal(statSync(p.serverKey).mode & 0o777, 0o600);
    const r = opensslVerify(['-CAfile', p.caCert, '-purpose', 'sslserver', '-verify_hostname', 'localhost', p.serverCert]);
    assert.equal(r.status, 0, r.out);
  });

  test('reuses valid files, so clients keep trusting the same CA', async () => {
    const first = await ensureDevPki(dir);
    const ca1 = readFileSync(first.caCert, 'utf8');
    const leaf1 = readFileSync(first.serverCert, 'utf8');
    const second = await ensureDevPki(dir);
    assert.equal(readFileSync(second.caCert, 'utf8'), ca1);
    assert.equal(readFileSync(second.serverCert, 'utf8'), leaf1);
  });

  test('re-issues the server certificate (same CA) when it is unreadable or its key does not match', async () => {
    const p = await ensureDevPki(dir);
    const ca1 = readFileSync(p.caCert, 'utf8');
    const leaf1 = readFileSync(p.serverCert, 'utf8');
    writeFileSync(p.serverCert, 'garbage');
    await ensureDevPki(dir);
    const leaf2 = readFileSync(p.serverCert, 'utf8');
    assert.notEqual(leaf2, leaf1);
    assert.equal(readFileSync(p.caCert, 'utf8'), ca1);

    const other = await issueServerCert(await createCa({ commonName: 'x' }), { commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1', '::1'] });
    writeFileSync(p.serverKey, other.keyPem); // a key that belongs to another certificate
    await ensureDevPki(dir);
    assert.notEqual(readFileSync(p.serverCert, 'utf8'), leaf2);
    assert.ok(new X509Certificate(readFileSync(p.serverCert)).checkPrivateKey(createPrivateKey(readFileSync(p.serverKey))));
  });

  test('replaces a CA that expires within a day, and the server certificate with it', async () => {
    const p = await ensureDevPki(dir);
    const shortCa = await createCa({ commonName: 'short-lived', days: 0.5 });
    writeFileSync(p.caCert, shortCa.certPem);
    writeFileSync(path.join(dir, 'tls', 'ca-key.pem'), shortCa.keyPem);
    await ensureDevPki(dir);
    const ca = new X509Certificate(readFileSync(p.caCert));
    assert.equal(ca.subject, 'CN=vecgate dev CA');
    const r = opensslVerify(['-CAfile', p.caCert, p.serverCert]);
    assert.equal(r.status, 0, r.out);
  });
});
