// Reads the server certificate chain and private key and checks that they parse and belong
// together. Used at start, by `check-config`, and on every certificate rotation (a pair that
// fails here is refused and the current one kept).
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { VgError } from '../errors.js';
import type { ConfigIssue } from './config-issues.js';
import type { ServerTlsConfig } from './types.js';

/** A certificate chain or key file larger than this is not one. */
export const MAX_TLS_FILE_BYTES = 1024 * 1024;

export type ServerTlsFiles = { cert: Buffer; key: Buffer };

function readPem(file: string, keyPath: string): Buffer | ConfigIssue {
  try {
    const st = statSync(file);
    if (!st.isFile()) return { path: keyPath, message: `${file} is not a regular file` };
    if (st.size > MAX_TLS_FILE_BYTES) return { path: keyPath, message: `${file} is larger than ${MAX_TLS_FILE_BYTES} bytes; is it the right file?` };
    return readFileSync(file);
  } catch (err) {
    return { path: keyPath, message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  }
}

/**
 * Every problem with the pair that can be seen: the certificate and the key each parse (each
 * checked even when the other is bad), then belong together. A null path was already reported
 * (unreadable, per the schema) and is skipped; the pair is returned when there is no problem.
 */
export function inspectServerTlsFiles(certFile: string | null, keyFile: string | null): { files: ServerTlsFiles | null; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = [];
  let certSpki: Buffer | null = null;
  let keySpki: Buffer | null = null;
  const cert = certFile === null ? null : readPem(certFile, 'server.tls.cert');
  const key = keyFile === null ? null : readPem(keyFile, 'server.tls.key');
  if (cert !== null && !Buffer.isBuffer(cert)) issues.push(cert);
  if (key !== null && !Buffer.isBuffer(key)) issues.push(key);
  if (Buffer.isBuffer(cert)) {
    let x509: X509Certificate | null = null;
    try {
      x509 = new X509Certificate(cert);
    } catch {
      issues.push({ path: 'server.tls.cert', message: `${certFile} does not hold a PEM certificate (expected -----BEGIN CERTIFICATE-----)` });
    }
    try {
      if (x509 !== null) certSpki = x509.publicKey.export({ type: 'spki', format: 'der' });
    } catch {
      issues.push({ path: 'server.tls.cert', message: `${certFile}: the certificate's public key type is not supported` });
    }
  }
  if (Buffer.isBuffer(key)) {
    try {
      keySpki = createPublicKey(createPrivateKey(key)).export({ type: 'spki', format: 'der' });
    } catch (err) {
      const encrypted = /passphrase|encrypted/i.test((err as Error).message) || key.includes('ENCRYPTED');
      issues.push({
        path: 'server.tls.key',
        message: encrypted
          ? `${keyFile} is an encrypted private key; vecgate needs it unencrypted (protect it with file permissions)`
          : `${keyFile} does not hold a PEM private key (expected -----BEGIN PRIVATE KEY----- or an RSA/EC key)`,
      });
    }
  }
  if (certSpki !== null && keySpki !== null && !certSpki.equals(keySpki)) {
    issues.push({ path: 'server.tls.key', message: `${keyFile} does not match the certificate in ${certFile} (different public keys)` });
  }
  const files = issues.length === 0 && Buffer.isBuffer(cert) && Buffer.isBuffer(key) ? { cert, key } : null;
  return { files, issues };
}

/** The pair, or the first problem with it (path + message). */
export function checkServerTlsFiles(tls: ServerTlsConfig): ServerTlsFiles | ConfigIssue {
  const r = inspectServerTlsFiles(tls.cert, tls.key);
  return r.files ?? r.issues[0]!;
}

/** Reads and validates the server pair; throws `ERR_VG_TLS_FILES` naming the key path and file. */
export function loadServerTlsFiles(tls: ServerTlsConfig): ServerTlsFiles {
  const r = checkServerTlsFiles(tls);
  if ('path' in r) throw new VgError('ERR_VG_TLS_FILES', `${r.path}: ${r.message}`);
  return r;
}
