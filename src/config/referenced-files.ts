// Deep checks of the files a loaded config points at, for `vecgate check-config`: the server
// certificate and key parse and match, CA bundles hold certificates, pinned JWKS files hold
// keys. `loadConfig` only checks that they are readable; this opens them.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { formatPath, type ConfigIssue } from './config-issues.js';
import { checkServerTlsFiles, MAX_TLS_FILE_BYTES } from './server-tls-files.js';
import type { VecgateConfig } from './types.js';

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

export function checkReferencedFiles(config: VecgateConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const tls = checkServerTlsFiles(config.server.tls);
  if ('path' in tls) issues.push(tls);
  config.identity.issuers.forEach((iss, i) => {
    if (iss.ca !== null) issues.push(...[checkCaBundle(iss.ca, formatPath(['identity', 'issuers', i, 'ca']))].filter((x) => x !== null));
    if (iss.jwks !== null && !/^https?:\/\//.test(iss.jwks)) issues.push(...[checkJwksFile(iss.jwks, formatPath(['identity', 'issuers', i, 'jwks']))].filter((x) => x !== null));
  });
  for (const [name, conn] of Object.entries(config.connections)) {
    const ca = conn.upstream.tls.ca;
    if (ca !== null) issues.push(...[checkCaBundle(ca, formatPath(['connections', name, 'upstream', 'tls', 'ca']))].filter((x) => x !== null));
  }
  return issues;
}
