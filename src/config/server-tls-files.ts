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

/** The pair, or the first problem with it (path + message, for `check-config`). */
export function checkServerTlsFiles(tls: ServerTlsConfig): ServerTlsFiles | ConfigIssue {
  const cert = readPem(tls.cert, 'server.tls.cert');
  if (!Buffer.isBuffer(cert)) return cert;
  const key = readPem(tls.key, 'server.tls.key');
  if (!Buffer.isBuffer(key)) return key;
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    return { path: 'server.tls.cert', message: `${tls.cert} does not hold a PEM certificate (expected -----BEGIN CERTIFICATE-----)` };
  }
  let certSpki: Buffer;
  let keySpki: Buffer;
  try {
    certSpki = x509.publicKey.export({ type: 'spki', format: 'der' });
  } catch {
    return { path: 'server.tls.cert', message: `${tls.cert}: the certificate's public key type is not supported` };
  }
  try {
    keySpki = createPublicKey(createPrivateKey(key)).export({ type: 'spki', format: 'der' });
  } catch (err) {
    const encrypted = /passphrase|encrypted/i.test((err as Error).message) || key.includes('ENCRYPTED');
    return {
      path: 'server.tls.key',
      message: encrypted
        ? `${tls.key} is an encrypted private key; vecgate needs it unencrypted (protect it with file permissions)`
        : `${tls.key} does not hold a PEM private key (expected -----BEGIN PRIVATE KEY----- or an RSA/EC key)`,
    };
  }
  if (!certSpki.equals(keySpki)) {
    return { path: 'server.tls.key', message: `${tls.key} does not match the certificate in ${tls.cert} (different public keys)` };
  }
  return { cert, key };
}

/** Reads and validates the server pair; throws `ERR_VG_TLS_FILES` naming the key path and file. */
export function loadServerTlsFiles(tls: ServerTlsConfig): ServerTlsFiles {
  const r = checkServerTlsFiles(tls);
  if ('path' in r) throw new VgError('ERR_VG_TLS_FILES', `${r.path}: ${r.message}`);
  return r;
}
