// GET a small JSON document (OIDC discovery, JWKS) over HTTPS with an optional extra CA,
// a hard timeout and a size cap. Plain http is allowed only to loopback addresses (a local
// test or dev identity provider); redirects are not followed.
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import tls from 'node:tls';

export interface JsonFetchOptions {
  /** PEM of an extra CA trusted in addition to the system roots; null = system roots only. */
  caPem: string | null;
  timeoutMs: number;
  maxBytes: number;
}

/** Thrown for every fetch failure; the message is operator detail (never shown to token holders). */
export class JsonFetchError extends Error {
  override readonly name = 'JsonFetchError';
}

function isLoopbackHost(hostname: string): boolean {
  const h = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1';
  return false;
}

/** Root store once per process: `tls.rootCertificates` is a fixed list. */
let systemRoots: readonly string[] | undefined;

export function fetchJson(urlText: string, opts: JsonFetchOptions): Promise<unknown> {
  let url: URL;
  try {
    url = new URL(urlText);
  } catch {
    return Promise.reject(new JsonFetchError(`not a URL: ${urlText}`));
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
    return Promise.reject(new JsonFetchError(`refusing to fetch ${url.href}: only https (or http to loopback) is allowed`));
  }
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (msg: string, cause?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(new JsonFetchError(msg, cause === undefined ? undefined : { cause }));
    };
    const headers = { accept: 'application/json, application/jwk-set+json', 'user-agent': 'vecgate' };
    const onResponse = (res: http.IncomingMessage): void => {
      if (res.statusCode !== 200) {
        res.resume();
        fail(`GET ${url.href} answered HTTP ${res.statusCode ?? '?'}${res.headers.location ? ` (redirect to ${res.headers.location} not followed)` : ''}`);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > opts.maxBytes) {
          fail(`GET ${url.href}: response larger than ${opts.maxBytes} bytes`);
          return;
        }
        chunks.push(chunk);
      });
      res.on('error', (err) => fail(`GET ${url.href}: ${err.message}`, err));
      res.on('end', () => {
        if (settled) return;
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch (err) {
          fail(`GET ${url.href}: response is not JSON`, err);
          return;
        }
        settled = true;
        clearTimeout(timer);
        resolve(body);
      });
    };
    let req: http.ClientRequest;
    if (url.protocol === 'https:') {
      let ca: string[] | undefined;
      if (opts.caPem !== null) {
        // `ca` replaces the default roots in Node; the configured CA is an addition to them.
        systemRoots ??= tls.rootCertificates;
        ca = [...systemRoots, opts.caPem];
      }
      req = https.request(url, { method: 'GET', headers, ca, agent: false }, onResponse);
    } else {
      req = http.request(url, { method: 'GET', headers, agent: false }, onResponse);
    }
    req.on('error', (err) => fail(`GET ${url.href}: ${err.message}`, err));
    const timer = setTimeout(() => fail(`GET ${url.href}: no complete answer within ${opts.timeoutMs} ms`), opts.timeoutMs);
    req.end();
  });
}
