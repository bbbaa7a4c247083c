// The keep-alive pool of verified TLS connections to one HTTP upstream (one per connection
// per worker), and the mapping of upstream failures to 502/504 answers that say which check
// failed. node:https with a keep-alive Agent: chain verified against `upstream.tls.ca` (or the
// system store), host name checked by Node's default checkServerIdentity.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import tls from 'node:tls';
import type { HttpConnectionConfig } from '../../src/config/types.js';
import { VgError } from '../../src/errors.js';

/** Most upstream sockets per connection per worker (Agent maxSockets). */
export const DEFAULT_UPSTREAM_MAX_SOCKETS = 64;
/** Idle keep-alive sockets kept per connection per worker. */
export const DEFAULT_UPSTREAM_MAX_FREE_SOCKETS = 32;
/** An idle pooled socket is closed after this long (below common upstream keep-alive timeouts). */
export const DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS = 30_000;

export interface UpstreamPoolLimits {
  maxSockets: number;
  maxFreeSockets: number;
  idleTimeoutMs: number;
}

export interface UpstreamPool {
  /** Value for the Host header sent upstream. */
  readonly hostHeader: string;
  /** Starts a request; `path` is the client's path + query, joined to the upstream URL's base path. */
  request(method: string, path: string, headers: Record<string, string | string[]>): http.ClientRequest;
  close(): void;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function createUpstreamPool(cfg: HttpConnectionConfig, limits: UpstreamPoolLimits): UpstreamPool {
  let url: URL;
  try {
    url = new URL(cfg.upstream.url);
  } catch {
    throw new VgError('ERR_VG_CONFIG', `connections.${cfg.name}.upstream.url is not a URL: ${cfg.upstream.url}`);
  }
  const plaintext = cfg.upstream.tls.mode === 'insecure-plaintext';
  if (plaintext && (url.protocol !== 'http:' || !LOOPBACK.has(url.hostname.replace(/^\[|\]$/g, '')))) {
    throw new VgError('ERR_VG_CONFIG', `connections.${cfg.name}: insecure-plaintext is only allowed for an http:// upstream on loopback, got ${cfg.upstream.url}`);
  }
  if (!plaintext && url.protocol !== 'https:') {
    throw new VgError('ERR_VG_CONFIG', `connections.${cfg.name}.upstream.url must be https:// (verify-full); got ${cfg.upstream.url}`);
  }
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  const port = url.port ? Number(url.port) : plaintext ? 80 : 443;
  const basePath = url.pathname.replace(/\/+$/, '');
  const hostHeader = url.host;

  const common = { keepAlive: true, maxSockets: limits.maxSockets, maxFreeSockets: limits.maxFreeSockets, timeout: limits.idleTimeoutMs, scheduling: 'lifo' as const };
  let agent: http.Agent;
  if (plaintext) {
    agent = new http.Agent(common);
  } else {
    const serverName = cfg.upstream.tls.serverName || hostname;
    let ca: Buffer | undefined;
    if (cfg.upstream.tls.ca) {
      try {
        ca = readFileSync(cfg.upstream.tls.ca);
      } catch (err) {
        throw new VgError('ERR_VG_TLS_FILES', `connections.${cfg.name}.upstream.tls.ca cannot be read: ${(err as Error).message}`);
      }
    }
    agent = new https.Agent({
      ...common,
      ca, // undefined: Node's bundled roots
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
      // SNI cannot carry an IP address (RFC 6066); the identity check still uses serverName.
      servername: isIP(serverName) ? '' : serverName,
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(serverName, cert),
    });
  }
  const mod = plaintext ? http : https;
  return {
    hostHeader,
    request(method, path, headers) {
      return mod.request({ agent, host: hostname, port, method, path: basePath + path, headers, setHost: false });
    },
    close() {
      agent.destroy();
    },
  };
}

export interface UpstreamFailure {
  status: 502 | 504;
  code: 'ERR_VG_UPSTREAM_CONNECT' | 'ERR_VG_UPSTREAM_TLS' | 'ERR_VG_UPSTREAM_PROTOCOL' | 'ERR_VG_UPSTREAM_TIMEOUT';
  message: string;
}

const CHAIN_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
]);

/** Names the failed check in the client's and the operator's terms; never includes secrets. */
export function describeUpstreamFailure(err: unknown, cfg: HttpConnectionConfig): UpstreamFailure {
  const e = err as NodeJS.ErrnoException & { code?: string };
  const code = typeof e?.code === 'string' ? e.code : '';
  const where = `upstream ${cfg.upstream.url} of connection "${cfg.name}"`;
  if (code === 'ERR_VG_UPSTREAM_TIMEOUT') return { status: 504, code: 'ERR_VG_UPSTREAM_TIMEOUT', message: `${where} did not answer in time` };
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return { status: 502, code: 'ERR_VG_UPSTREAM_TLS', message: `${where}: host name check failed: its certificate does not name "${cfg.upstream.tls.serverName || new URL(cfg.upstream.url).hostname}"` };
  }
  if (CHAIN_CODES.has(code)) {
    return { status: 502, code: 'ERR_VG_UPSTREAM_TLS', message: `${where}: certificate chain check failed (${code}): it is not signed by the configured CA${cfg.upstream.tls.ca ? '' : ' (system trust store)'}` };
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return { status: 502, code: 'ERR_VG_UPSTREAM_TLS', message: `${where}: certificate validity check failed (${code})` };
  }
  if (code.startsWith('ERR_SSL_') || code === 'EPROTO' || code.startsWith('ERR_TLS_')) {
    return { status: 502, code: 'ERR_VG_UPSTREAM_TLS', message: `${where}: TLS handshake failed (${code})` };
  }
  if (code === 'ETIMEDOUT') return { status: 504, code: 'ERR_VG_UPSTREAM_TIMEOUT', message: `${where}: connect timed out` };
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EAI_AGAIN') {
    return { status: 502, code: 'ERR_VG_UPSTREAM_CONNECT', message: `${where} cannot be reached (${code})` };
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') return { status: 502, code: 'ERR_VG_UPSTREAM_PROTOCOL', message: `${where} closed the connection before answering` };
  if (code.startsWith('HPE_')) return { status: 502, code: 'ERR_VG_UPSTREAM_PROTOCOL', message: `${where} sent a malformed HTTP response (${code})` };
  return { status: 502, code: 'ERR_VG_UPSTREAM_PROTOCOL', message: `${where} failed${code ? ` (${code})` : ''}` };
}
