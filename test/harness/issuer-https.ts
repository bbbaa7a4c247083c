// HTTPS on 127.0.0.1 for test OpenID issuers: a self-signed P-256 certificate for
// localhost / 127.0.0.1 (it is its own CA, passed to the code under test as the issuer CA),
// and a server whose request handler can be set once the provider exists.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface SelfSignedCert {
  certPath: string;
  keyPath: string;
  certPem: string;
  keyPem: string;
}

export function selfSignedLocalhost(dir: string, name = 'issuer'): SelfSignedCert {
  const certPath = path.join(dir, `${name}-cert.pem`);
  const keyPath = path.join(dir, `${name}-key.pem`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-days', '2', '-keyout', keyPath, '-out', certPath,
  ], { stdio: 'ignore' });
  return { certPath, keyPath, certPem: readFileSync(certPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8') };
}

export interface IssuerHttps extends SelfSignedCert {
  server: https.Server;
  /** https://127.0.0.1:PORT */
  url: string;
  setHandler(h: http.RequestListener): void;
}

/** Answers 503 until `setHandler` is called. */
export async function startIssuerHttps(dir: string): Promise<IssuerHttps> {
  const cert = selfSignedLocalhost(dir);
  let handler: http.RequestListener = (_req, res) => res.writeHead(503).end();
  const server = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    ...cert,
    server,
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setHandler: (h) => {
      handler = h;
    },
  };
}

/** oidc-provider ships no type declarations: the specifier is a string so TypeScript types it loosely. */
export async function loadOidcProvider(): Promise<new (issuer: string, config: unknown) => { callback(): http.RequestListener }> {
  const specifier: string = 'oidc-provider';
  return ((await import(specifier)) as { default: new (issuer: string, config: unknown) => { callback(): http.RequestListener } }).default;
}
