// The keep-alive pool of verified TLS connections to one HTTP upstream (one pool per
// connection per worker), and the mapping of upstream failures to 502/504 answers that say
// which check failed. Connections are the native addon's (TLS in C++ over Node's OpenSSL,
// chain verified against `upstream.tls.ca` or the system store, host name or IP checked by
// OpenSSL); requests are serialized here and responses parsed by upstream-response-parser.ts.
// The benchmark chose this over node:https (bench/README.md, "HTTP upstream leg").
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import type { HttpConnectionConfig } from '../../src/config/types.js';
import { VgError } from '../../src/errors.js';
import { native } from '../../src/native.js';
import type { Connection, TlsContext } from '../../src/native.js';
import { HTTP_TOKEN, UNSENDABLE_FIELD_VALUE } from './request-framing.js';
import { ResponseParser, UpstreamProtocolError } from './upstream-response-parser.js';
import type { ResponseHead } from './upstream-response-parser.js';

/** Most upstream connections per connection per worker; more requests wait for one. */
export const DEFAULT_UPSTREAM_MAX_SOCKETS = 64;
/** Idle keep-alive connections kept per connection per worker. */
export const DEFAULT_UPSTREAM_MAX_FREE_SOCKETS = 32;
/** An idle pooled connection is closed after this long (below common upstream keep-alive timeouts). */
export const DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS = 30_000;
/** Longest wait for the TCP connect and TLS handshake of a new upstream connection; then 504. */
export const DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;
/** A request body write reports backpressure above this many queued bytes (the addon's drain mark). */
const WRITE_HIGH_WATER_BYTES = 64 * 1024;
/** How often idle connections are checked against the idle timeout. */
const IDLE_SWEEP_MS = 1_000;

export interface UpstreamPoolLimits {
  maxSockets: number;
  maxFreeSockets: number;
  idleTimeoutMs: number;
  connectTimeoutMs?: number;
}

export type { ResponseHead } from './upstream-response-parser.js';

/** What the pool reports about one request; each is called at most once except `data`/`drain`. */
export interface UpstreamHandlers {
  response(head: ResponseHead): void;
  /** Response body bytes, valid only during the call (they are in the connection's read buffer): copy what is kept. */
  data(chunk: Buffer): void;
  end(): void;
  /** Before or after `response`, never after `end`. `err.code` is for describeUpstreamFailure. */
  error(err: NodeJS.ErrnoException): void;
  /** The upstream took the queued request body: `write` may be called again. */
  drain(): void;
}

export interface UpstreamRequest {
  /** Sends body bytes (Content-Length bodies as they are, chunked ones framed); false: wait for `drain`. */
  write(chunk: Buffer): boolean;
  /**
   * `write` for bytes valid only during this call: they are sent (encrypted, or copied by the
   * connection) before it returns. null when the request has no connection yet and would have
   * to keep them: copy them and use `write`.
   */
  writeNow(chunk: Buffer): boolean | null;
  /** The body is complete (`chunk`: its last or only part). */
  end(chunk?: Buffer): void;
  /** Abandons the request; with `err`, `error(err)` is reported (unless the response already ended). */
  destroy(err?: NodeJS.ErrnoException): void;
  /** Response body flow control: no `data` while paused. */
  pause(): void;
  resume(): void;
}

export interface UpstreamPool {
  /** Value for the Host header sent upstream. */
  readonly hostHeader: string;
  /**
   * Starts a request; `path` is the client's path + query, joined to the upstream URL's base
   * path. `body`: the whole body (Content-Length in `headers`; the request is then complete),
   * 'none' (complete), or 'length' / 'chunked' for a body streamed with write()/end().
   * Handlers are never called from inside this call.
   */
  request(method: string, path: string, headers: Record<string, string | string[]>, body: Buffer | 'none' | 'length' | 'chunked', handlers: UpstreamHandlers): UpstreamRequest;
  /** Closes idle connections and keeps none from now on; requests in flight finish. */
  close(): void;
  /** Closes every connection now (requests in flight fail). */
  destroy(): void;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
/** RFC 9110 §9.2.2: a request that failed on a reused connection before any answer may be sent again. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
/** Request targets are sent as they came from uWS; these could split the request line (U+FFFD: bytes that were not UTF-8). */
const UNSAFE_TARGET = /[\x00-\x20\x7f\ufffd]/;

/** An Error with a `code`, the shape describeUpstreamFailure reads. */
export function errnoError(message: string, code: string): NodeJS.ErrnoException {
  const e = new Error(message) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

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
  const serverName = cfg.upstream.tls.serverName || hostname;
  const connectTimeoutMs = limits.connectTimeoutMs ?? DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS;
  let tlsCtx: TlsContext | null = null;
  if (!plaintext) {
    let ca: Buffer | string;
    try {
      ca = cfg.upstream.tls.ca ? readFileSync(cfg.upstream.tls.ca) : rootCertificates.join('\n');
    } catch (err) {
      throw new VgError('ERR_VG_TLS_FILES', `connections.${cfg.name}.upstream.tls.ca cannot be read: ${(err as Error).message}`);
    }
    try {
      tlsCtx = native().createClientContext({ ca, profile: 'intermediate' });
    } catch (err) {
      throw new VgError('ERR_VG_TLS_FILES', `connections.${cfg.name}.upstream.tls.ca holds no usable CA certificate: ${(err as Error).message}`);
    }
  }

  const idle: PooledConnection[] = []; // most recently used last (LIFO reuse)
  const waiting: Exchange[] = [];
  const live = new Set<PooledConnection>();
  let opening = 0;
  let closed = false;
  let sweep: NodeJS.Timeout | null = null;

  /** Resolves the upstream's addresses for each new connection (DNS may change; keep-alive makes this rare). */
  async function addresses(): Promise<string[]> {
    if (isIP(hostname)) return [hostname];
    const all = await lookup(hostname, { all: true });
    if (all.length === 0) throw errnoError(`${hostname} has no address`, 'ENOTFOUND');
    return all.map((a) => a.address);
  }

  /** Opens a connection for `owner` (or whoever waits when it is ready). */
  function open(owner: Exchange): void {
    opening++;
    owner.opening = true;
    const conn = new PooledConnection();
    let settled = false;
    const timer = setTimeout(() => fail(errnoError(`connect and TLS handshake took over ${connectTimeoutMs} ms`, 'ERR_VG_UPSTREAM_TIMEOUT')), connectTimeoutMs);
    const fail = (err: NodeJS.ErrnoException): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opening--;
      conn.native?.destroy();
      owner.opening = false;
      if (!owner.finished && owner.conn === null) {
        removeWaiting(owner);
        owner.fail(err);
      }
      serveWaiting();
    };
    const ready = (c: Connection): void => {
      if (settled) {
        c.destroy();
        return;
      }
      settled = true;
      clearTimeout(timer);
      opening--;
      owner.opening = false;
      conn.attach(c, onConnectionClosed, tlsCtx !== null);
      live.add(conn);
      // The owner if it still waits, else the longest waiter, else the idle list.
      if (!owner.finished && owner.conn === null) {
        removeWaiting(owner);
        conn.assign(owner);
      } else release(conn);
    };
    const tryConnect = (ips: string[], i: number, lastErr: NodeJS.ErrnoException | null): void => {
      if (settled) return;
      if (i >= ips.length) {
        fail(lastErr ?? errnoError('no address to connect to', 'ENOTFOUND'));
        return;
      }
      let c: Connection;
      try {
        c = native().connect(ips[i]!, port, (err, connected) => {
          if (err || !connected) {
            c.destroy();
            tryConnect(ips, i + 1, (err ?? errnoError('connect failed', 'ECONNREFUSED')) as NodeJS.ErrnoException);
            return;
          }
          if (settled) {
            connected.destroy();
            return;
          }
          if (tlsCtx === null) {
            ready(connected);
            return;
          }
          connected.startTls(tlsCtx, serverName, ['http/1.1'], (tlsErr) => {
            if (tlsErr) fail(tlsHandshakeError(tlsErr.message));
            else ready(connected);
          });
        });
      } catch (err) {
        tryConnect(ips, i + 1, err as NodeJS.ErrnoException);
        return;
      }
      conn.native = c;
      // Failures after connect but before `ready` (TLS alert, reset) arrive here. The close of
      // an attempt already given up (refused, next address being tried) arrives here too, later:
      // only the current attempt may fail the open, or one refused address would end the fallback.
      c.setCallbacks(
        () => {},
        (reason, detail) => {
          if (!settled && conn.native === c && reason !== 'tls-handshake') fail(errnoError(`the upstream closed the connection during setup (${reason}${detail ? `: ${detail}` : ''})`, 'ECONNRESET'));
        },
      );
    };
    addresses().then(
      (ips) => tryConnect(ips, 0, null),
      (err: NodeJS.ErrnoException) => fail(err),
    );
  }

  function onConnectionClosed(conn: PooledConnection): void {
    live.delete(conn);
    const i = idle.indexOf(conn);
    if (i >= 0) idle.splice(i, 1);
    serveWaiting();
  }

  /** A connection finished its exchange and can take another. */
  function release(conn: PooledConnection): void {
    while (waiting.length > 0) {
      const next = waiting.shift()!;
      if (next.finished) continue;
      conn.assign(next);
      return;
    }
    if (closed || idle.length >= limits.maxFreeSockets) {
      conn.close();
      return;
    }
    conn.idleSince = Date.now();
    idle.push(conn);
    if (sweep === null) {
      sweep = setInterval(sweepIdle, IDLE_SWEEP_MS);
      sweep.unref();
    }
  }

  function sweepIdle(): void {
    const cutoff = Date.now() - limits.idleTimeoutMs;
    while (idle.length > 0 && idle[0]!.idleSince <= cutoff) idle.shift()!.close();
    if (idle.length === 0 && sweep !== null) {
      clearInterval(sweep);
      sweep = null;
    }
  }

  function removeWaiting(ex: Exchange): void {
    const i = waiting.indexOf(ex);
    if (i >= 0) waiting.splice(i, 1);
  }

  /** Starts connections for waiters while there is room (after a close or a failed open). */
  function serveWaiting(): void {
    if (closed) return;
    for (const ex of waiting) {
      if (live.size + opening >= limits.maxSockets) return;
      if (!ex.finished && !ex.opening) open(ex);
    }
  }

  function acquire(ex: Exchange): void {
    if (closed) {
      // Not from inside request(): the caller has not seen its request object yet.
      queueMicrotask(() => ex.fail(errnoError('the gateway is shutting down this connection', 'ECONNRESET')));
      return;
    }
    const conn = idle.pop();
    if (conn) {
      conn.assign(ex);
      return;
    }
    waiting.push(ex);
    if (live.size + opening < limits.maxSockets) open(ex);
  }

  const ops: PoolOps = { acquire, release, removeWaiting };
  const pool: UpstreamPool = {
    hostHeader: url.host,
    request(method, path, headers, body, handlers) {
      const target = basePath + path;
      if (UNSAFE_TARGET.test(target)) throw new VgError('ERR_VG_HTTP_BAD_REQUEST', 'the request target has a character that cannot be sent upstream');
      const ex = new Exchange(method, serializeHead(method, target, headers), body === 'chunked', handlers, ops);
      if (body === 'none') ex.end();
      else if (typeof body !== 'string') ex.end(body);
      acquire(ex);
      return ex;
    },
    close() {
      closed = true;
      for (const c of idle.splice(0)) c.close();
      if (sweep !== null) clearInterval(sweep);
      sweep = null;
    },
    destroy() {
      pool.close();
      for (const ex of waiting.splice(0)) ex.fail(errnoError('the gateway closed this connection', 'ECONNRESET'));
      for (const c of [...live]) {
        // Failed here, not from the connection's close: a read-until-close body would otherwise
        // look complete, and an idempotent request on a reused connection would be retried.
        c.exchange?.destroy(errnoError('the gateway closed this connection', 'ECONNRESET'));
        c.destroy();
      }
    },
  };
  return pool;
}

function serializeHead(method: string, target: string, headers: Record<string, string | string[]>): Buffer {
  // Names and values are written as given: a CR or LF in one would end the head early and let
  // the rest be read upstream as headers or as another request.
  if (!HTTP_TOKEN.test(method)) throw new VgError('ERR_VG_HTTP_BAD_REQUEST', 'the request method cannot be sent upstream');
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (const name in headers) {
    if (!HTTP_TOKEN.test(name)) throw new VgError('ERR_VG_HTTP_BAD_REQUEST', `the header name ${JSON.stringify(name.slice(0, 40))} cannot be sent upstream`);
    const v = headers[name]!;
    for (const one of typeof v === 'string' ? [v] : v) {
      if (UNSENDABLE_FIELD_VALUE.test(one)) throw new VgError('ERR_VG_HTTP_BAD_REQUEST', `the ${name} header has a character that cannot be sent upstream`);
      head += `${name}: ${one}\r\n`;
    }
  }
  // UTF-8: uWS decoded the client's bytes as UTF-8, so this sends those same bytes on.
  return Buffer.from(head + '\r\n', 'utf8');
}

/** The native handshake error as a code describeUpstreamFailure understands. */
function tlsHandshakeError(message: string): NodeJS.ErrnoException {
  let code = 'ERR_VG_TLS_HANDSHAKE';
  if (/hostname mismatch|IP address mismatch/i.test(message)) code = 'ERR_TLS_CERT_ALTNAME_INVALID';
  else if (/certificate has expired/i.test(message)) code = 'CERT_HAS_EXPIRED';
  else if (/certificate is not yet valid/i.test(message)) code = 'CERT_NOT_YET_VALID';
  else if (/certificate verify failed/i.test(message)) code = 'ERR_VG_UPSTREAM_CHAIN';
  const e = errnoError(message, code);
  return e;
}

interface PoolOps {
  acquire(ex: Exchange): void;
  release(conn: PooledConnection): void;
  removeWaiting(ex: Exchange): void;
}

/** One keep-alive connection: carries one exchange at a time. */
class PooledConnection {
  native: Connection | null = null;
  exchange: Exchange | null = null;
  idleSince = 0;
  /** Requests this connection has carried (a failure on a reused one may be retried). */
  uses = 0;
  private onClosed: ((c: PooledConnection) => void) | null = null;
  private gone = false;

  attach(c: Connection, onClosed: (c: PooledConnection) => void, tls: boolean): void {
    this.native = c;
    this.onClosed = onClosed;
    // Reads are lent, not copied: the parser and the relay use them at once, and the few
    // places that keep bytes (held body chunks, a partial head or chunk line) copy them.
    c.setLentCallbacks(
      (bytes, length) => {
        if (this.exchange) this.exchange.onData(bytes.subarray(0, length));
        else c.destroy(); // bytes nobody asked for: this connection's framing cannot be trusted
      },
      (reason, detail) => {
        this.gone = true;
        const ex = this.exchange;
        this.exchange = null;
        // Only an orderly end by the upstream can end a read-until-close body: over TLS that is
        // its close_notify (a bare TCP close may be a truncation), in plaintext the EOF.
        ex?.onClose(reason, detail, reason === 'eof' && (!tls || detail === 'close_notify'));
        this.onClosed?.(this);
        this.onClosed = null;
      },
      () => this.exchange?.onDrain(),
    );
    // Idle connections read too: an upstream closing one is noticed at once, not at next use.
    c.resume();
  }

  assign(ex: Exchange): void {
    this.exchange = ex;
    this.uses++;
    ex.start(this);
  }

  /** The exchange is over and left the connection reusable. */
  detach(pool: PoolOps): void {
    this.exchange = null;
    if (this.gone) return;
    this.native!.resume();
    pool.release(this);
  }

  close(): void {
    this.exchange = null;
    if (!this.gone) this.native?.close();
  }

  destroy(): void {
    if (!this.gone) this.native?.destroy();
  }

  get alive(): boolean {
    return !this.gone;
  }
}

/** One request and its response. */
class Exchange implements UpstreamRequest {
  conn: PooledConnection | null = null;
  opening = false;
  /** Over: answered completely, failed, or destroyed. */
  finished = false;
  private parser: ResponseParser;
  /** Body parts written before a connection was assigned (and, while replayable, after). */
  private pendingOut: Buffer[] = [];
  private ended = false;
  /** The whole request is in `pendingOut`/`replay` and can be sent again on a fresh connection. */
  private replay: Buffer[] | null = null;
  private sentAll = false;
  private responseStarted = false;
  private responseEnded = false;
  private keepAlive = false;
  private paused = false;
  private held: Buffer[] = [];
  private heldEnd = false;
  private waitingDrain = false;
  private retried = false;
  /** Response bytes received on the current connection. */
  private received = 0;

  constructor(
    readonly method: string,
    private readonly head: Buffer,
    private readonly chunked: boolean,
    private readonly handlers: UpstreamHandlers,
    private readonly pool: PoolOps,
  ) {
    this.parser = this.newParser();
  }

  private newParser(): ResponseParser {
    return new ResponseParser(this.method, {
      head: (h) => {
        this.responseStarted = true;
        this.keepAlive = h.keepAlive;
        this.handlers.response(h);
      },
      body: (chunk) => {
        if (this.finished) return;
        if (this.paused || this.held.length > 0) this.held.push(Buffer.from(chunk)); // lent bytes: keep a copy
        else this.handlers.data(chunk);
      },
      end: (rest) => {
        this.responseEnded = true;
        if (rest !== null) this.keepAlive = false; // bytes after the response: the upstream's framing is not to be trusted
        if (this.held.length > 0 || this.paused) this.heldEnd = true;
        else this.finishResponse();
      },
    });
  }

  /** A connection was assigned: send what is known of the request. */
  start(conn: PooledConnection): void {
    this.conn = conn;
    if (this.paused) conn.native!.pause(); // paused before a connection came (or before a retry)
    const parts = [this.head, ...this.pendingOut];
    this.pendingOut = [];
    if (this.ended && IDEMPOTENT.has(this.method)) this.replay = parts;
    conn.native!.write(parts.length === 1 ? parts[0]! : parts);
    if (this.ended) this.sentAll = true;
    else if (this.waitingDrain && conn.native!.writeQueueSize <= WRITE_HIGH_WATER_BYTES) {
      // Handlers run outside request(), and the caller may have written before a connection came.
      queueMicrotask(() => this.onDrain());
    }
  }

  write(chunk: Buffer): boolean {
    if (this.finished || this.ended || chunk.length === 0) return true;
    const framed = this.frame(chunk);
    if (this.conn === null) {
      this.pendingOut.push(...framed);
      this.waitingDrain = true; // `drain` comes when a connection takes the request
      return false;
    }
    for (const b of framed) this.conn.native!.write(b);
    if (this.conn.native!.writeQueueSize > WRITE_HIGH_WATER_BYTES) {
      this.waitingDrain = true;
      return false;
    }
    return true;
  }

  writeNow(chunk: Buffer): boolean | null {
    if (this.conn === null && !this.finished && !this.ended) return null;
    return this.write(chunk);
  }

  end(chunk?: Buffer): void {
    if (this.finished || this.ended) return;
    this.ended = true;
    const framed = [...(chunk && chunk.length > 0 ? this.frame(chunk) : []), ...(this.chunked ? [LAST_CHUNK] : [])];
    if (this.conn === null) {
      this.pendingOut.push(...framed);
      return;
    }
    for (const b of framed) this.conn.native!.write(b);
    this.sentAll = true;
    if (this.responseEnded && !this.heldEnd) this.finishResponse();
  }

  private frame(chunk: Buffer): Buffer[] {
    if (!this.chunked) return [chunk];
    return [Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'), chunk, CRLF];
  }

  destroy(err?: NodeJS.ErrnoException): void {
    if (this.finished) return;
    this.finished = true;
    this.pool.removeWaiting(this);
    const conn = this.conn;
    this.conn = null;
    if (conn) {
      conn.exchange = null;
      conn.destroy();
    }
    if (err) this.handlers.error(err);
  }

  /** Failure before any response (connect, TLS, closed pool). */
  fail(err: NodeJS.ErrnoException): void {
    if (this.finished) return;
    this.finished = true;
    this.handlers.error(err);
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.conn?.native?.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    while (this.held.length > 0 && !this.paused && !this.finished) this.handlers.data(this.held.shift()!);
    if (this.paused || this.finished) return;
    if (this.heldEnd) {
      this.heldEnd = false;
      this.finishResponse();
      return;
    }
    this.conn?.native?.resume();
  }

  onData(chunk: Buffer): void {
    if (this.finished) return;
    if (this.parser.done) {
      // More bytes after a complete response whose end is held for a paused consumer: the
      // parser ignores them, and the connection's framing can no longer be trusted.
      this.keepAlive = false;
      return;
    }
    this.received += chunk.length;
    try {
      this.parser.feed(chunk);
    } catch (err) {
      if (err instanceof UpstreamProtocolError) {
        this.destroy(errnoError(err.message, 'ERR_VG_UPSTREAM_PROTOCOL'));
        return;
      }
      throw err;
    }
  }

  onDrain(): void {
    if (!this.waitingDrain || this.finished) return;
    this.waitingDrain = false;
    this.handlers.drain();
  }

  onClose(reason: string, detail: string, clean: boolean): void {
    const conn = this.conn;
    this.conn = null;
    if (this.finished) return;
    if (this.received === 0 && this.replay !== null && !this.retried && conn !== null && conn.uses > 1) {
      // The upstream closed a reused keep-alive connection as this request went out (its idle
      // timeout raced our reuse): an idempotent request with nothing answered is sent again.
      const parts = this.replay;
      this.replay = null;
      this.retried = true;
      this.pendingOut = parts.slice(1);
      this.sentAll = false;
      this.parser = this.newParser();
      this.pool.acquire(this);
      return;
    }
    if (this.parser.untilClose && !clean) {
      this.finished = true;
      const why = reason === 'eof' ? 'without a TLS close_notify' : `(${reason}${detail ? `: ${detail}` : ''})`;
      this.handlers.error(errnoError(`the upstream closed the connection ${why} during a body framed by the close: it may be truncated`, 'ERR_VG_UPSTREAM_PROTOCOL'));
      return;
    }
    try {
      this.parser.finish(); // ends a read-until-close body
      return;
    } catch (err) {
      const code = reason === 'tls-error' || /tls|ssl/i.test(reason) ? 'EPROTO' : this.responseStarted ? 'ERR_VG_UPSTREAM_PROTOCOL' : 'ECONNRESET';
      const msg = (err as Error).message + (detail ? ` (${detail})` : '');
      this.finished = true;
      this.handlers.error(errnoError(msg, code));
    }
  }

  private finishResponse(): void {
    if (this.finished) return;
    this.finished = true;
    const conn = this.conn;
    this.conn = null;
    // The connection goes back first, so a request the caller starts from `end` can reuse it.
    if (conn !== null) {
      if (this.keepAlive && this.sentAll && conn.alive) conn.detach(this.pool);
      else {
        conn.exchange = null;
        conn.destroy(); // an early answer (request body not all sent) or a non-reusable response
      }
    }
    this.handlers.end();
  }
}

const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');

export interface UpstreamFailure {
  status: 502 | 504;
  code: 'ERR_VG_UPSTREAM_CONNECT' | 'ERR_VG_UPSTREAM_TLS' | 'ERR_VG_UPSTREAM_PROTOCOL' | 'ERR_VG_UPSTREAM_TIMEOUT';
  message: string;
}

const CHAIN_CODES = new Set([
  'ERR_VG_UPSTREAM_CHAIN',
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
  const detail = typeof e?.message === 'string' ? e.message : '';
  const where = `upstream ${cfg.upstream.url} of connection "${cfg.name}"`;
  if (code === 'ERR_VG_UPSTREAM_TIMEOUT') return { status: 504, code: 'ERR_VG_UPSTREAM_TIMEOUT', message: `${where} did not answer in time` };
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return { status: 502, code: 'ERR_VG_UPSTREAM_TLS', message: `${where}: host name check failed: its certificate does not name "${cfg.upstream.tls.serverName || new URL(cfg.upstream.url).hostname}"` };
  }
  if (CHAIN_CODES.has(code)) {
    const reason = code === 'ERR_VG_UPSTREAM_CHAIN' ? detail.replace(/^certificate verify failed: /, '') : code;
    return { status: 502, code: 'ERR_VG_UPSTREAM_TLS', message: `${where}: certificate chain check failed (${reason}): it is not signed by the configured CA${cfg.upstream.tls.ca ? '' : ' (system trust store)'}` };
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return { status: 502, code: 'ERR_VG_UPSTREAM_TLS', message: `${where}: certificate validity check failed (${code})` };
  }
  if (code === 'ERR_VG_TLS_HANDSHAKE') return { status: 502, code: 'ERR_VG_UPSTREAM_TLS', message: `${where}: TLS handshake failed (${detail})` };
  if (code.startsWith('ERR_SSL_') || code === 'EPROTO' || code.startsWith('ERR_TLS_')) {
    return { status: 502, code: 'ERR_VG_UPSTREAM_TLS', message: `${where}: TLS failed (${detail || code})` };
  }
  if (code === 'ETIMEDOUT') return { status: 504, code: 'ERR_VG_UPSTREAM_TIMEOUT', message: `${where}: connect timed out` };
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EAI_AGAIN') {
    return { status: 502, code: 'ERR_VG_UPSTREAM_CONNECT', message: `${where} cannot be reached (${code})` };
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') return { status: 502, code: 'ERR_VG_UPSTREAM_PROTOCOL', message: `${where} closed the connection before answering` };
  if (code === 'ERR_VG_UPSTREAM_PROTOCOL') return { status: 502, code: 'ERR_VG_UPSTREAM_PROTOCOL', message: `${where} sent a malformed or cut HTTP response: ${detail}` };
  return { status: 502, code: 'ERR_VG_UPSTREAM_PROTOCOL', message: `${where} failed${code ? ` (${code})` : ''}` };
}
