// Certificates for `vecgate dev`, the tests and the benchmarks: an ECDSA P-256 CA and
// server certificates signed by it (@peculiar/x509 over Node's WebCrypto; no openssl CLI).
import { webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { X509Certificate as NodeX509 } from 'node:crypto';
import 'reflect-metadata'; // @peculiar/x509 needs the Reflect metadata polyfill
import * as x509 from '@peculiar/x509';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as never);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
/** Lifetime of dev and test certificates. */
export const DEV_CERT_DAYS = 90;
/** A dev certificate is re-issued when it has less than this left. */
export const DEV_CERT_RENEW_BEFORE_MS = 24 * 3600 * 1000;

export interface CertAndKey {
  certPem: string;
  keyPem: string; // PKCS#8
}

interface CaHandle extends CertAndKey {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function importKeyPem(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decode(pem)[0]!;
  return (await webcrypto.subtle.importKey('pkcs8', der, ALG, true, ['sign'])) as unknown as CryptoKey;
}

function serial(): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(12))).toString('hex').replace(/^[89a-f]/, '1');
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const notBefore = new Date(Date.now() - 60 * 60 * 1000);
  return { notBefore, notAfter: new Date(notBefore.getTime() + days * 86_400_000) };
}

export async function createCa(opts: { commonName: string; days?: number }): Promise<CaHandle> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${opts.commonName}`,
    ...validity(opts.days ?? DEV_CERT_DAYS),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys, certPem: cert.toString('pem') + '\n', keyPem: await exportKeyPem(keys.privateKey) };
}

async function loadCa(certPem: string, keyPem: string): Promise<CaHandle> {
  const cert = new x509.X509Certificate(certPem);
  const privateKey = await importKeyPem(keyPem);
  const publicKey = await cert.publicKey.export(ALG, ['verify']);
  return { cert, keys: { privateKey, publicKey } as CryptoKeyPair, certPem, keyPem };
}

export async function issueServerCert(
  ca: CaHandle,
  opts: { commonName: string; dnsNames: string[]; ips: string[]; days?: number },
): Promise<CertAndKey> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
  const names: x509.JsonGeneralName[] = [
    ...opts.dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...opts.ips.map((value) => ({ type: 'ip' as const, value })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${opts.commonName}`,
    issuer: ca.cert.subject,
    ...validity(opts.days ?? DEV_CERT_DAYS),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportKeyPem(keys.privateKey) };
}

function stillValid(file: string): boolean {
  try {
    const c = new NodeX509(readFileSync(file));
    return new Date(c.validTo).getTime() - Date.now() > DEV_CERT_RENEW_BEFORE_MS;
  } catch {
    return false;
  }
}

export interface DevPki {
  caCert: string;
  serverCert: string;
  serverKey: string;
}

/** The dev CA and a server certificate for localhost, 127.0.0.1 and ::1 under `dir/tls/`, reused while valid. */
export async function ensureDevPki(dir: string): Promise<DevPki> {
  const tls = path.join(dir, 'tls');
  mkdirSync(tls, { recursive: true, mode: 0o700 });
  const out: DevPki = { caCert: path.join(tls, 'ca.pem'), serverCert: path.join(tls, 'server.pem'), serverKey: path.join(tls, 'server-key.pem') };
  const caKey = path.join(tls, 'ca-key.pem');
  let ca: CaHandle;
  if (stillValid(out.caCert) && existsSync(caKey)) {
    ca = await loadCa(readFileSync(out.caCert, 'utf8'), readFileSync(caKey, 'utf8'));
  } else {
    ca = await createCa({ commonName: 'vecgate dev CA' });
    writeFileSync(out.caCert, ca.certPem);
    writeFileSync(caKey, ca.keyPem, { mode: 0o600 });
  }
  const chainOk = stillValid(out.serverCert) && existsSync(out.serverKey) && new NodeX509(readFileSync(out.serverCert)).checkIssued(new NodeX509(ca.certPem));
  if (!chainOk) {
    const leaf = await issueServerCert(ca, { commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1', '::1'] });
    writeFileSync(out.serverCert, leaf.certPem);
    writeFileSync(out.serverKey, leaf.keyPem, { mode: 0o600 });
  }
  return out;
}

export interface TestPki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string; // localhost, 127.0.0.1, ::1
  serverKey: string;
  /** A second pair for the same names (certificate rotation tests). */
  altServerCert: string;
  altServerKey: string;
  /** An unrelated CA: verifying the server against it must fail. */
  wrongCaCert: string;
  /** Signed by the right CA for the wrong name (wrong.example). */
  wrongNameCert: string;
  wrongNameKey: string;
}

/** Writes a complete set of test certificates into `dir` (created if needed). */
export async function writeTestPki(dir: string): Promise<TestPki> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = (name: string) => path.join(dir, name);
  const ca = await createCa({ commonName: 'vecgate test CA' });
  const server = await issueServerCert(ca, { commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1', '::1'] });
  const alt = await issueServerCert(ca, { commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1', '::1'] });
  const wrongName = await issueServerCert(ca, { commonName: 'wrong.example', dnsNames: ['wrong.example'], ips: [] });
  const wrongCa = await createCa({ commonName: 'unrelated CA' });
  const pki: TestPki = {
    dir,
    caCert: f('ca.pem'),
    caKey: f('ca-key.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server-key.pem'),
    altServerCert: f('alt-server.pem'),
    altServerKey: f('alt-server-key.pem'),
    wrongCaCert: f('wrong-ca.pem'),
    wrongNameCert: f('wrong-name.pem'),
    wrongNameKey: f('wrong-name-key.pem'),
  };
  writeFileSync(pki.caCert, ca.certPem);
  writeFileSync(pki.caKey, ca.keyPem, { mode: 0o600 });
  writeFileSync(pki.serverCert, server.certPem);
  writeFileSync(pki.serverKey, server.keyPem, { mode: 0o600 });
  writeFileSync(pki.altServerCert, alt.certPem);
  writeFileSync(pki.altServerKey, alt.keyPem, { mode: 0o600 });
  writeFileSync(pki.wrongCaCert, wrongCa.certPem);
  writeFileSync(pki.wrongNameCert, wrongName.certPem);
  writeFileSync(pki.wrongNameKey, wrongName.keyPem, { mode: 0o600 });
  return pki;
}
