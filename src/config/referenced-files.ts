// Deep checks of the files a config points at, for `vecgate check-config`: the server
// certificate and key parse and match, CA bundles hold certificates, pinned JWKS files hold
// keys. `loadConfig` only checks that they are readable; this opens them. It reads the raw
// document, so it runs even when other keys are invalid and its findings are listed with theirs.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { formatPath, type ConfigIssue } from './config-issues.js';
import { inspectServerTlsFiles, MAX_TLS_FILE_BYTES } from './server-tls-files.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function readSmall(file: string, at: string): Buffer | ConfigIssue {
  try {
    const buf = readFileSync(file);
    if (buf.length > MAX_TLS_FILE_BYTES) return { path: at, message: `${file} is larger than ${MAX_TLS_FILE_BYTES} bytes; is it the right file?` };
    return buf;
  } catch (err) {
    return { path: at, message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  }
}

function checkCaBundle(file: string, at: string): ConfigIssue | null {
  const buf = readSmall(file, at);
  if (!Buffer.isBuffer(buf)) return buf;
  const pems = buf.toString('utf8').match(PEM_CERT) ?? [];
  if (pems.length === 0) return { path: at, message: `${file} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)` };
  for (const [i, pem] of pems.entries()) {
    try {
      new X509Certificate(pem);
    } catch {
      return { path: at, message: `${file}: certificate ${i + 1} of ${pems.length} does not parse` };
    }
  }
  return null;
}

function checkJwksFile(file: string, at: string): ConfigIssue | null {
  const buf = readSmall(file, at);
  if (!Buffer.isBuffer(buf)) return buf;
  let doc: unknown;
  try {
    doc = JSON.parse(buf.toString('utf8'));
  } catch {
    return { path: at, message: `${file} is not JSON (expected a JWKS: {"keys": [...]})` };
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) return { path: at, message: `${file} has no keys (expected a JWKS: {"keys": [...]})` };
  return null;
}

type Raw = Record<string, unknown>;
const asMap = (v: unknown): Raw | null => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Raw) : null);

/**
 * Problems inside the files the raw config names. `reported` holds key paths that already have
 * an issue (an unreadable file, a wrong type): those are not opened again.
 */
export function checkReferencedFiles(raw: unknown, baseDir: string, reported: ReadonlySet<string>): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  /** The file at a key path, resolved as the schema resolves it; null when absent or already reported. */
  const fileAt = (at: string, v: unknown): string | null => (typeof v === 'string' && v.trim() !== '' && !reported.has(at) ? path.resolve(baseDir, v) : null);
  const root = asMap(raw) ?? {};
  const tls = asMap(asMap(root['server'])?.['tls']);
  if (tls !== null) {
    const cert = fileAt('server.tls.cert', tls['cert']);
    const key = fileAt('server.tls.key', tls['key']);
    if (cert !== null || key !== null) issues.push(...inspectServerTlsFiles(cert, key).issues);
  }
  const issuers = asMap(root['identity'])?.['issuers'];
  (Array.isArray(issuers) ? issuers : []).forEach((entry, i) => {
    const iss = asMap(entry);
    if (iss === null) return;
    const caAt = formatPath(['identity', 'issuers', i, 'ca']);
    const ca = fileAt(caAt, iss['ca']);
    if (ca !== null) issues.push(...[checkCaBundle(ca, caAt)].filter((x) => x !== null));
    const jwksAt = formatPath(['identity', 'issuers', i, 'jwks']);
    const jwks = /^[a-z][a-z0-9+.-]*:\/\//i.test(String(iss['jwks'])) ? null : fileAt(jwksAt, iss['jwks']);
    if (jwks !== null) issues.push(...[checkJwksFile(jwks, jwksAt)].filter((x) => x !== null));
  });
  for (const [name, conn] of Object.entries(asMap(root['connections']) ?? {})) {
    const caAt = formatPath(['connections', name, 'upstream', 'tls', 'ca']);
    const ca = fileAt(caAt, asMap(asMap(asMap(conn)?.['upstream'])?.['tls'])?.['ca']);
    if (ca !== null) issues.push(...[checkCaBundle(ca, caAt)].filter((x) => x !== null));
  }
  return issues;
}
