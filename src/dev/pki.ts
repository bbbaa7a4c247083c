// Certificates for `vecgate dev`, the tests and the benchmarks: an ECDSA P-256 CA and
// server certificates signed by it (@peculiar/x509 over Node's WebCrypto; no openssl CLI).
import { createPrivateKey, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
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
/** notBefore is set this far in the past so a peer whose clock is a little behind accepts a fresh certificate. */
const CLOCK_SKEW_MS = 60 * 60 * 1000;
/** Names every dev and test server certificate carries. */
export const LOOPBACK_DNS_NAMES = ['localhost'];
export const LOOPBACK_IPS = ['127.0.0.1', '::1'];

export interface CertAndKey {
  certPem: string;
  keyPem: string; // PKCS#8
}

/** A CA that can sign: its certificate and key pair (the PEMs are what gets written to disk). */
export interface CaHandle extends CertAndKey {
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

// A positive 96-bit serial: DER INTEGERs are signed, so the top bit must be clear.
function serial(): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(12))).toString('hex').replace(/^[89a-f]/, '1');
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const notBefore = new Date(Date.now() - CLOCK_SKEW_MS);
  return { notBefore, notAfter: new Date(notBefore.getTime() + days * 86_400_000) };
}

/**
 * A self-signed ECDSA P-256 CA (pathLen 0: it signs leaf certificates only).
 * @example const ca = await createCa({ commonName: 'vecgate dev CA' });
 */
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

/**
 * A server certificate signed by `ca`: ECDSA P-256, serverAuth (and clientAuth, for mutual-TLS
 * tests) EKU, and the names in the SAN, which is what OpenSSL, libpq and Node check.
 * @example const leaf = await issueServerCert(ca, { commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1'] });
 */
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

function readCert(file: string): NodeX509 | null {
  try {
    return new NodeX509(readFileSync(file));
  } catch {
    return null;
  }
}

function validLongEnough(c: NodeX509): boolean {
  return new Date(c.validTo).getTime() - Date.now() > DEV_CERT_RENEW_BEFORE_MS && new Date(c.validFrom).getTime() <= Date.now();
}

// The existing server certificate is kept only if it chains to `ca`, still has time left,
// names every loopback address, and matches the key beside it.
function serverCertReusable(certFile: string, keyFile: string, ca: NodeX509): boolean {
  const leaf = readCert(certFile);
  if (!leaf || !validLongEnough(leaf) || !leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) return false;
  if (!LOOPBACK_DNS_NAMES.every((n) => leaf.checkHost(n)) || !LOOPBACK_IPS.every((ip) => leaf.checkIP(ip))) return false;
  try {
    return leaf.checkPrivateKey(createPrivateKey(readFileSync(keyFile)));
  } catch {
    return false;
  }
}

function writeSecret(file: string, pem: string): void {
  writeFileSync(file, pem, { mode: 0o600 });
  chmodSync(file, 0o600); // the mode option applies only when the file is created
}

export interface DevPki {
  /** Absolute paths. */
  caCert: string;
  serverCert: string;
  serverKey: string;
}

/**
 * The dev CA and a server certificate for localhost, 127.0.0.1 and ::1 under `dir/tls/`
 * (ca.pem, ca-key.pem, server.pem, server-key.pem; keys mode 0600). Files that parse, chain
 * and are valid for more than a day are reused, so clients keep trusting the same CA.
 * @example const { caCert } = await ensureDevPki('.vecgate-dev');
 */
export async function ensureDevPki(dir: string): Promise<DevPki> {
  const tls = path.resolve(dir, 'tls');
  mkdirSync(tls, { recursive: true, mode: 0o700 });
  const out: DevPki = { caCert: path.join(tls, 'ca.pem'), serverCert: path.join(tls, 'server.pem'), serverKey: path.join(tls, 'server-key.pem') };
  const caKey = path.join(tls, 'ca-key.pem');
  let ca: CaHandle | null = null;
  const existingCa = readCert(out.caCert);
  if (existingCa && existingCa.ca && validLongEnough(existingCa)) {
    try {
      ca = await loadCa(readFileSync(out.caCert, 'utf8'), readFileSync(caKey, 'utf8'));
      if (!existingCa.checkPrivateKey(createPrivateKey(ca.keyPem))) ca = null;
    } catch {
      ca = null; // missing or unreadable key: make a new CA
    }
  }
  if (!ca) {
    ca = await createCa({ commonName: 'vecgate dev CA' });
    writeFileSync(out.caCert, ca.certPem);
    writeSecret(caKey, ca.keyPem);
  }
  if (!serverCertReusable(out.serverCert, out.serverKey, new NodeX509(ca.certPem))) {
    const leaf = await issueServerCert(ca, { commonName: 'localhost', dnsNames: LOOPBACK_DNS_NAMES, ips: LOOPBACK_IPS });
    writeFileSync(out.serverCert, leaf.certPem);
    writeSecret(out.serverKey, leaf.keyPem);
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
  /** localhost/127.0.0.1/::1, but signed by the unrelated CA: untrusted for clients of `caCert`. */
  untrustedServerCert: string;
  untrustedServerKey: string;
  /** Signed by the right CA for the wrong name (wrong.example). */
  wrongNameCert: string;
  wrongNameKey: string;
}

/**
 * Writes a fresh set of test certificates into `dir` (created if needed) and returns their
 * absolute paths: a CA with a localhost/127.0.0.1/::1 server pair (and a second pair for
 * rotation), an unrelated CA, and a wrong.example certificate signed by the right CA.
 */
export async function writeTestPki(dir: string): Promise<TestPki> {
  dir = path.resolve(dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = (name: string) => path.join(dir, name);
  const ca = await createCa({ commonName: 'vecgate test CA' });
  const server = await issueServerCert(ca, { commonName: 'localhost', dnsNames: LOOPBACK_DNS_NAMES, ips: LOOPBACK_IPS });
  const alt = await issueServerCert(ca, { commonName: 'localhost', dnsNames: LOOPBACK_DNS_NAMES, ips: LOOPBACK_IPS });
  const wrongName = await issueServerCert(ca, { commonName: 'wrong.example', dnsNames: ['wrong.example'], ips: [] });
  const wrongCa = await createCa({ commonName: 'unrelated CA' });
  const untrusted = await issueServerCert(wrongCa, { commonName: 'localhost', dnsNames: LOOPBACK_DNS_NAMES, ips: LOOPBACK_IPS });
  const pki: TestPki = {
    dir,
    caCert: f('ca.pem'),
    caKey: f('ca-key.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server-key.pem'),
    altServerCert: f('alt-server.pem'),
    altServerKey: f('alt-server-key.pem'),
    wrongCaCert: f('wrong-ca.pem'),
    untrustedServerCert: f('untrusted-server.pem'),
    untrustedServerKey: f('untrusted-server-key.pem'),
    wrongNameCert: f('wrong-name.pem'),
    wrongNameKey: f('wrong-name-key.pem'),
  };
  writeFileSync(pki.caCert, ca.certPem);
  writeSecret(pki.caKey, ca.keyPem);
  writeFileSync(pki.serverCert, server.certPem);
  writeSecret(pki.serverKey, server.keyPem);
  writeFileSync(pki.altServerCert, alt.certPem);
  writeSecret(pki.altServerKey, alt.keyPem);
  writeFileSync(pki.wrongCaCert, wrongCa.certPem);
  writeFileSync(pki.untrustedServerCert, untrusted.certPem);
  writeSecret(pki.untrustedServerKey, untrusted.keyPem);
  writeFileSync(pki.wrongNameCert, wrongName.certPem);
  writeSecret(pki.wrongNameKey, wrongName.keyPem);
  return pki;
}
