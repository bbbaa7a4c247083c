// The HTTP data path of one `protocol: http` connection in one worker: a uWebSockets.js SSLApp
// on the connection's listen address (SO_REUSEPORT across workers), bearer-token auth, per-route
// access (route-table.ts), the body guard (guard.ts), and streaming to and from a keep-alive
// pool of verified TLS upstream connections with backpressure both ways.
import { createPrivateKey, randomUUID, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import uWS from 'uWebSockets.js';
import type { HttpResponse, HttpRequest, us_listen_socket } from 'uWebSockets.js';
import type { HttpConnectionConfig, RecordingMode, TlsProfile } from '../../src/config/types.js';
import { VgError } from '../../src/errors.js';
import type { RecordEvent } from '../../src/recording/record-event.js';
import type { AuthClientInfo, AuthResult } from '../messages.js';
import { DEFAULT_MAX_RECORDED_BODY_BYTES, summarizeRequestBody } from './request-body-summary.js';
import { DEFAULT_MAX_INSPECT_BODY_BYTES, guardBody, guardNeedsBody, guardRoute } from './guard.js';
import { DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADER_COUNT, checkRequestFraming, clientResponseHeaders, upstreamRequestHeaders } from './request-framing.js';
import type { BodyFraming, HeaderList } from './request-framing.js';
import { accessAllows, classifyRoute, unsafePathReason } from './route-table.js';
import type { RouteDecision } from './route-table.js';
import { DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS, DEFAULT_UPSTREAM_MAX_FREE_SOCKETS, DEFAULT_UPSTREAM_MAX_SOCKETS, createUpstreamPool, describeUpstreamFailure, errnoError } from './upstream-pool.js';
import type { ResponseHead, UpstreamPool, UpstreamRequest } from './upstream-pool.js';

/** Longest wait for the upstream's response headers (config `upstream_response_timeout`); then 504. */
export const DEFAULT_UPSTREAM_RESPONSE_TIMEOUT_MS = 60_000;
/** Content-Length bodies up to this size are copied out of uWS into one buffer (not chunk by chunk, then joined). */
const CONTIGUOUS_BODY_MAX_BYTES = 1024 * 1024;
/** Request-body bytes held while the token is being verified (the socket is paused meanwhile). */
export const MAX_PREAUTH_BODY_BYTES = 1024 * 1024;

/** TLS 1.2 suites for `intermediate`: ECDHE with AEAD only. */
const INTERMEDIATE_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');
/**
 * `modern` = TLS 1.3 only. uWS exposes no minimum-version option, and its BoringSSL refuses an
 * empty TLS 1.2 suite list; so the 1.2 list holds only PSK suites, which can never be chosen
 * (no PSK callback is set): a TLS 1.2 ClientHello fails with handshake_failure, TLS 1.3 is
 * unaffected. Checked with `openssl s_client -tls1_2` in test/http/http-proxy.test.ts.
 */
const MODERN_TLS12_CIPHERS = 'PSK';

export interface HttpLimits {
  maxInspectBodyBytes: number;
  maxHeaderBytes: number;
  maxHeaderCount: number;
  upstreamResponseTimeoutMs: number;
  upstreamMaxSockets: number;
  upstreamMaxFreeSockets: number;
  upstreamIdleTimeoutMs: number;
  /** Request body bytes held for the recording's body summary (`queries`/`full`); larger bodies record their size only. */
  maxRecordedBodyBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  maxInspectBodyBytes: DEFAULT_MAX_INSPECT_BODY_BYTES,
  maxHeaderBytes: DEFAULT_MAX_HEADER_BYTES,
  maxHeaderCount: DEFAULT_MAX_HEADER_COUNT,
  upstreamResponseTimeoutMs: DEFAULT_UPSTREAM_RESPONSE_TIMEOUT_MS,
  upstreamMaxSockets: DEFAULT_UPSTREAM_MAX_SOCKETS,
  upstreamMaxFreeSockets: DEFAULT_UPSTREAM_MAX_FREE_SOCKETS,
  upstreamIdleTimeoutMs: DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS,
  maxRecordedBodyBytes: DEFAULT_MAX_RECORDED_BODY_BYTES,
};

export type HttpLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** What the HTTP data path needs from its worker. */
export interface HttpWorkerContext {
  certFile: string;
  keyFile: string;
  profile: TlsProfile;
  /** Verifies the token and applies connection-level policy (worker cache, else the primary). */
  authorize(token: string, connection: string, client: AuthClientInfo): Promise<AuthResult>;
  /** The worker cache's answer for this token, when it has one: the request goes on without waiting. */
  cachedAuthorization?(token: string, connection: string): AuthResult | null;
  log(level: HttpLogLevel, msg: string, fields: Record<string, unknown>): void;
  /**
   * Hands a recording event to the recorder (connections whose `recording` is not `off`): per
   * request a `request` event (who, route classification, guard decision, body summary in
   * `queries`/`full`) and a `result` event (status, bytes, duration). Never given a header.
   */
  record?(event: RecordEvent, onDurable?: (ok: boolean, message: string) => void): void;
  /**
   * `recordings.durability: strict`: a request goes upstream only once its `request` record is
   * on disk (`record`'s onDurable), and gets 503 when the recorder cannot write (fail closed,
   * as PostgreSQL statements are held and refused with 58030).
   */
  strictRecording?: boolean;
  /** Counts each answered (or abandoned) request for the metrics: status 0 when none was sent. */
  count?(connection: string, status: number, aborted: boolean, bytesIn: number, bytesOut: number): void;
  limits?: Partial<HttpLimits>;
}

export interface HttpConnectionHandle {
  port: number;
  /** Stops accepting; requests in flight go on. */
  close(): void;
  /** Closes every socket of the app (keep-alive clients too): before the worker thread ends. */
  closeAll(): void;
  /**
   * Serves a new certificate and key to new connections; connections already open keep theirs.
   * A second SSLApp listens on the same port (SO_REUSEPORT) before the old listen socket closes,
   * so no connection attempt finds the port closed. Throws (keeping the current pair) when the
   * files are unreadable or do not match.
   */
  rotateCertificate(certFile: string, keyFile: string): void;
}

interface ErrorAnswer {
  status: number;
  code: string;
  message: string;
  headers?: HeaderList;
}

/** Per-request state; `res` must not be touched once `done` (aborted or answered). */
interface Exchange {
  res: HttpResponse;
  method: string;
  path: string; // path + query as forwarded
  /** The path without its query: what routes are classified on. */
  rawPath: string;
  headers: HeaderList;
  clientAddress: string;
  framing: BodyFraming;
  done: boolean;
  /** True once the client's body has been read to the end (or there was none). */
  bodyEnded: boolean;
  /** Body chunks not yet forwarded or inspected (copies: uWS neuters its buffers). */
  queued: Buffer[];
  /** A Content-Length body small enough to hold whole: the chunks are views of it (copyBodyChunk). */
  body: Buffer | null;
  /** The reused buffer under `body` when it came from takeBodyBuffer (given back in settle()). */
  pooledBody: Buffer | null;
  bodyFill: number;
  queuedBytes: number;
  onBody: (() => void) | null;
  /**
   * While a body streams upstream with nothing queued: takes a chunk uWS lent for this callback
   * only (the upstream write encrypts or copies it before returning), so it is not copied
   * here; false when it cannot take it now (the caller copies and queues it).
   */
  passThrough: ((chunk: Buffer) => boolean) | null;
  upstream: UpstreamRequest | null;
  timer: NodeJS.Timeout | null;
  /** uWS 20.30: resume() on a socket that is not paused stalls the next keep-alive request, so track it. */
  paused: boolean;
  subject: string;
  route: RouteDecision | null;
  /** Status sent to the client (0 until the head is written). */
  status: number;
  /** Body bytes received from the client / response body bytes handed to the client. */
  bytesIn: number;
  bytesOut: number;
  rec: ExchangeRecording | null;
  stage: ExchangeStage;
  /** Code of the error answer or upstream failure, for the result record. */
  errorCode: string | null;
  aborted?: boolean;
  /** Hands the `request` event over once; `onDurable` (strict): called when it is on disk or cannot be; `bytes`: the body size when not all of it was read. */
  recordRequest?: (onDurable?: (ok: boolean, message: string) => void, bytes?: number) => void;
  /** Runs once when the exchange is over (recording). */
  onSettled: (() => void) | null;
  connection: string;
  count: HttpWorkerContext['count'] | null;
}

/** Recording state of one request (connections with `recording` other than `off`). */
interface ExchangeRecording {
  mode: RecordingMode;
  session: string;
  startedAt: number;
  /** The `request` event was handed over (it goes once the request is fully known). */
  requestRecorded: boolean;
  who: { subject: string; username: string; issuer: string; groups: string[]; access: string } | null;
  decision: { allowed: boolean; stage?: string; code?: string; reason?: string };
  /** Body chunks held for the summary (`queries`/`full`, up to maxRecordedBodyBytes); references to the queued copies. */
  body: Buffer[];
  bodyHeld: boolean;
}

/**
 * Starts serving connection `cfg` in this worker. Resolves when the listener accepts.
 *
 * @example
 * const h = await startHttpConnection(ctx, config.connections.qdrant as HttpConnectionConfig);
 * // ... h.close() on drain
 */
export function startHttpConnection(ctx: HttpWorkerContext, cfg: HttpConnectionConfig): Promise<HttpConnectionHandle> {
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS, ...ctx.limits };
  const pool = createUpstreamPool(cfg, { maxSockets: limits.upstreamMaxSockets, maxFreeSockets: limits.upstreamMaxFreeSockets, idleTimeoutMs: limits.upstreamIdleTimeoutMs });
  let app: uWS.TemplatedApp;
  try {
    app = createApp(ctx, cfg, limits, pool, ctx.certFile, ctx.keyFile);
  } catch (err) {
    pool.close();
    return Promise.reject(err);
  }
  return new Promise((resolve, reject) => {
    app.listen(cfg.listen.host, cfg.listen.port, (token: us_listen_socket | false) => {
      if (!token) {
        pool.close();
        reject(new VgError('ERR_VG_LISTEN', `connection "${cfg.name}" cannot listen on ${cfg.listen.host}:${cfg.listen.port} (port in use or address not local)`));
        return;
      }
      const port = uWS.us_socket_local_port(token);
      // Every app this connection has run (one more per certificate rotation): retired ones
      // no longer listen but keep serving the connections they accepted until those close.
      const apps: uWS.TemplatedApp[] = [app];
      let listening: us_listen_socket = token;
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        uWS.us_listen_socket_close(listening);
        pool.close();
      };
      resolve({
        port,
        close,
        closeAll() {
          close();
          pool.destroy();
          // A uWS socket left open when the worker's loop closes aborts the process.
          // (`close()` exists on this build's apps; its bundled typings predate it.)
          for (const a of apps) (a as unknown as { close(): void }).close();
        },
        rotateCertificate(certFile: string, keyFile: string) {
          if (closed) return;
          checkCertificatePair(cfg, certFile, keyFile);
          const next = createApp(ctx, cfg, limits, pool, certFile, keyFile);
          const nextToken = listenNow(next, cfg.listen.host, port);
          if (nextToken === false) {
            (next as unknown as { close(): void }).close();
            throw new VgError(
              'ERR_VG_LISTEN',
              `connection "${cfg.name}": the new certificate could not be put on ${cfg.listen.host}:${port} (a second listener needs SO_REUSEPORT, which uWS sets only for a fixed port); keeping the current certificate`,
            );
          }
          // The new app accepts first, then the old listen socket closes: the port is never shut.
          // Connections the kernel had already queued on the old socket but uWS had not accepted
          // yet are reset on close unless net.ipv4.tcp_migrate_req=1 moves them to the new one.
          if (!migrateWarned && readTcpMigrateReq() === '0') {
            migrateWarned = true;
            ctx.log('warn', 'certificate rotation may reset connections queued on the old listener; set sysctl net.ipv4.tcp_migrate_req=1 to have the kernel hand them to the new one', { connection: cfg.name });
          }
          uWS.us_listen_socket_close(listening);
          listening = nextToken;
          apps.push(next);
        },
      });
    });
  });
}

/** Whether this worker already warned that the kernel does not migrate queued connections (once per worker). */
let migrateWarned = false;

/** Linux's net.ipv4.tcp_migrate_req ('0' or '1'), or null where it does not exist. */
function readTcpMigrateReq(): string | null {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim();
  } catch {
    return null;
  }
}

/** One SSLApp for the connection with the given certificate files; every app shares the route handler and pool. */
function createApp(ctx: HttpWorkerContext, cfg: HttpConnectionConfig, limits: HttpLimits, pool: UpstreamPool, certFile: string, keyFile: string): uWS.TemplatedApp {
  let app: uWS.TemplatedApp;
  try {
    app = uWS.SSLApp({
      cert_file_name: certFile,
      key_file_name: keyFile,
      ssl_ciphers: ctx.profile === 'modern' ? MODERN_TLS12_CIPHERS : INTERMEDIATE_TLS12_CIPHERS,
      ssl_prefer_low_memory_usage: true,
    });
  } catch (err) {
    throw new VgError('ERR_VG_TLS_FILES', `connection "${cfg.name}": cannot use certificate ${certFile} with key ${keyFile}: ${(err as Error).message}`);
  }
  app.any('/*', (res, req) => onRequest(ctx, cfg, limits, pool, res, req));
  return app;
}

/** uWS calls the listen callback before `listen` returns; this makes that explicit. */
function listenNow(app: uWS.TemplatedApp, host: string, port: number): us_listen_socket | false {
  let result: us_listen_socket | false | undefined;
  app.listen(host, port, (token: us_listen_socket | false) => {
    result = token;
  });
  return result ?? false;
}

/** Refuses a certificate and key that are unreadable or not a pair, before any listener changes. */
function checkCertificatePair(cfg: HttpConnectionConfig, certFile: string, keyFile: string): void {
  let ok: boolean;
  try {
    ok = new X509Certificate(readFileSync(certFile)).checkPrivateKey(createPrivateKey(readFileSync(keyFile)));
  } catch (err) {
    throw new VgError('ERR_VG_TLS_FILES', `connection "${cfg.name}": cannot read certificate ${certFile} or key ${keyFile}: ${(err as Error).message}; keeping the current certificate`);
  }
  if (!ok) throw new VgError('ERR_VG_TLS_FILES', `connection "${cfg.name}": key ${keyFile} does not belong to certificate ${certFile}; keeping the current certificate`);
}

function onRequest(ctx: HttpWorkerContext, cfg: HttpConnectionConfig, limits: HttpLimits, pool: UpstreamPool, res: HttpResponse, req: HttpRequest): void {
  // Everything from `req` is read now: it is only valid during this call.
  const method = req.getMethod().toUpperCase();
  const rawPath = req.getUrl();
  const query = req.getQuery();
  const headers: HeaderList = [];
  req.forEach((k, v) => {
    headers.push([k, v]);
  });
  const ex: Exchange = {
    res,
    method,
    path: query ? `${rawPath}?${query}` : rawPath,
    rawPath,
    headers,
    clientAddress: remoteAddress(res),
    framing: { kind: 'none' },
    done: false,
    bodyEnded: true,
    queued: [],
    queuedBytes: 0,
    body: null,
    pooledBody: null,
    bodyFill: 0,
    onBody: null,
    passThrough: null,
    upstream: null,
    timer: null,
    paused: false,
    subject: '',
    route: null,
    status: 0,
    bytesIn: 0,
    bytesOut: 0,
    stage: 'framing',
    errorCode: null,
    rec: null,
    onSettled: null,
    connection: cfg.name,
    count: ctx.count ?? null,
  };
  if (cfg.recording !== 'off' && ctx.record) startRecording(ctx, cfg, limits, ex);
  res.onAborted(() => {
    if (!ex.done) {
      ex.aborted = true;
      settle(ex);
    }
    if (ex.timer) clearTimeout(ex.timer);
    ex.upstream?.destroy();
  });

  const framing = checkRequestFraming(method, headers, limits);
  if (!framing.ok) {
    ctx.log('info', 'http request refused: framing', { connection: cfg.name, client: ex.clientAddress, code: framing.code, reason: framing.message });
    // The framing is in doubt, so nothing after this request on the connection can be trusted: always close.
    ex.bodyEnded = false; // nothing of a body was read
    answerError(ex, { status: framing.status, code: framing.code, message: framing.message }, true);
    return;
  }
  ex.framing = framing.body;
  if (ex.framing.kind !== 'none') {
    ex.bodyEnded = false;
    res.onData((chunk, isLast) => {
      if (ex.done) return;
      const rec = ex.rec;
      if (chunk.byteLength > 0 && ex.passThrough !== null && (rec === null || !rec.bodyHeld) && ex.passThrough(Buffer.from(chunk))) {
        ex.bytesIn += chunk.byteLength;
      } else if (chunk.byteLength > 0) {
        const copy = copyBodyChunk(ex, chunk);
        ex.queued.push(copy);
        ex.queuedBytes += copy.length;
        ex.bytesIn += copy.length;
        if (rec !== null && rec.bodyHeld) {
          if (ex.bytesIn > limits.maxRecordedBodyBytes) {
            rec.bodyHeld = false;
            rec.body = [];
          } else rec.body.push(copy);
        }
      }
      if (isLast) ex.bodyEnded = true;
      if (ex.onBody) ex.onBody();
      else if (ex.queuedBytes > MAX_PREAUTH_BODY_BYTES) pauseClient(ex);
    });
  }

  const pathProblem = unsafePathReason(rawPath);
  if (pathProblem) {
    answerError(ex, { status: 400, code: 'ERR_VG_HTTP_BAD_REQUEST', message: pathProblem }, true);
    return;
  }

  ex.stage = 'token';
  const token = bearerToken(headers);
  if (token === null) {
    answerError(ex, unauthorized('send an access token as "Authorization: Bearer <token>" (for example from `vecgate token`)'), true);
    return;
  }
  const cached = ctx.cachedAuthorization?.(token, cfg.name) ?? null;
  if (cached !== null) {
    afterAuth(ctx, cfg, limits, pool, ex, cached);
    return;
  }
  const userAgent = headers.find(([k]) => k === 'user-agent')?.[1] ?? '';
  ctx
    .authorize(token, cfg.name, { address: ex.clientAddress, port: 0, user: '', applicationName: userAgent.slice(0, 64) })
    .then(
      (result) => afterAuth(ctx, cfg, limits, pool, ex, result),
      (err: unknown) => {
        ctx.log('error', 'http authorization failed', { connection: cfg.name, err: (err as Error)?.message });
        answerError(ex, { status: 503, code: 'ERR_VG_JWKS_UNAVAILABLE', message: 'the gateway could not check the access token right now; retry shortly' }, true);
      },
    );
}

function afterAuth(ctx: HttpWorkerContext, cfg: HttpConnectionConfig, limits: HttpLimits, pool: UpstreamPool, ex: Exchange, auth: AuthResult): void {
  if (ex.done) return;
  if (!auth.ok) {
    ctx.log('info', 'http request refused: token or policy', { connection: cfg.name, client: ex.clientAddress, code: auth.code });
    if (auth.code === 'ERR_VG_ACCESS_DENIED') answerError(ex, { status: 403, code: auth.code, message: auth.message }, true);
    else if (auth.code === 'ERR_VG_JWKS_UNAVAILABLE') answerError(ex, { status: 503, code: auth.code, message: auth.message }, true);
    else answerError(ex, { ...unauthorized(auth.message), code: auth.code }, true);
    return;
  }
  ex.subject = auth.subject;
  if (ex.rec) ex.rec.who = { subject: auth.subject, username: auth.username, issuer: auth.issuer, groups: auth.groups, access: auth.access };
  const route = classifyRoute(cfg.flavor, ex.method, ex.rawPath);
  ex.route = route;
  ex.stage = 'access';
  // Routes a flavor's table does not name are classified `unlisted` (admin): said in words here.
  const what = (): string => `${ex.method} ${ex.rawPath} (${route.operation === 'unlisted' ? 'an administrative or unknown route' : route.operation}${route.collection !== null ? ` on "${route.collection}"` : ''})`;
  if (!accessAllows(auth.access, route.access)) {
    const who = auth.username || auth.subject;
    ctx.log('info', 'http request refused: access level', { connection: cfg.name, subject: auth.subject, operation: route.operation, collection: route.collection, needed: route.access, granted: auth.access });
    answerError(
      ex,
      {
        status: 403,
        code: 'ERR_VG_ACCESS_DENIED',
        message: `${what()} needs ${route.access} access on connection "${cfg.name}"; ${who} (groups: ${auth.groups.join(', ') || 'none'}) has ${auth.access} access`,
      },
      true,
    );
    return;
  }
  ex.stage = 'guard';
  const routeRefusal = guardRoute(cfg.flavor, route, cfg.guard, auth.groups, cfg.name);
  if (routeRefusal) {
    answerError(ex, routeRefusal, true);
    return;
  }
  if (ex.framing.kind !== 'none' && guardNeedsBody(route, cfg.guard, auth.groups)) {
    const cap = limits.maxInspectBodyBytes;
    const tooLarge = (): void => {
      answerError(ex, { status: 413, code: 'ERR_VG_HTTP_BODY_TOO_LARGE', message: `${what()} has a body over ${cap} bytes (max_inspect_body); this connection's guard reads such bodies, so send smaller requests` }, true);
    };
    if (ex.framing.kind === 'length' && ex.framing.length > cap) return tooLarge();
    ex.onBody = () => {
      if (ex.done) return;
      if (ex.queuedBytes > cap) return tooLarge();
      if (!ex.bodyEnded) return;
      ex.onBody = null;
      const body = takeQueuedBody(ex);
      const refusal = guardBody(cfg.flavor, route, body, cfg.guard, auth.groups, cfg.name);
      if (refusal) {
        ctx.log('info', 'http request refused: guard', { connection: cfg.name, subject: auth.subject, operation: route.operation, reason: refusal.message });
        answerError(ex, refusal, false);
        return;
      }
      forward(ctx, cfg, limits, pool, ex, auth, body);
    };
    resumeClient(ex);
    ex.onBody();
    return;
  }
  forward(ctx, cfg, limits, pool, ex, auth, null);
}

/** Sends the request upstream; `body` is the whole body when it was buffered for the guard, else it streams from the client. */
function forward(ctx: HttpWorkerContext, cfg: HttpConnectionConfig, limits: HttpLimits, pool: UpstreamPool, ex: Exchange, auth: Extract<AuthResult, { ok: true }>, body: Buffer | null): void {
  if (ex.done) return;
  if (ex.rec) ex.rec.decision = { allowed: true };
  if (ctx.strictRecording === true && ex.rec !== null && !ex.rec.requestRecorded) {
    forwardOnceRecorded(ctx, cfg, limits, pool, ex, auth, body);
    return;
  }
  ex.stage = 'upstream';
  const host = ex.headers.find(([k]) => k === 'host')?.[1] ?? '';
  const headers = upstreamRequestHeaders(ex.headers, { clientAddress: ex.clientAddress, clientHost: host, upstreamHost: pool.hostHeader, credential: auth.upstreamHeader });
  if (body !== null) headers['content-length'] = String(body.length);
  else if (ex.framing.kind === 'length') headers['content-length'] = String(ex.framing.length);
  const relay = new ResponseRelay(ctx, cfg, ex);
  // Stream the client's body: pause the client while the upstream connection is full.
  let waitingDrain = false;
  const pump = (): void => {
    const up = ex.upstream;
    if (ex.done || waitingDrain || up === null) return;
    while (ex.queued.length > 0) {
      const chunk = ex.queued.shift()!;
      ex.queuedBytes -= chunk.length;
      if (!up.write(chunk)) {
        waitingDrain = true;
        pauseClient(ex);
        return;
      }
    }
    if (ex.bodyEnded) {
      ex.onBody = null;
      ex.passThrough = null;
      up.end();
      recordRequest(ex);
    }
  };
  const passThrough = (chunk: Buffer): boolean => {
    const up = ex.upstream;
    if (ex.done || waitingDrain || up === null || ex.queued.length > 0) return false;
    const ok = up.writeNow(chunk);
    if (ok === null) return false; // no upstream connection yet: the chunk must be kept
    if (!ok) {
      waitingDrain = true;
      pauseClient(ex);
    }
    return true;
  };
  let up: UpstreamRequest;
  try {
    up = pool.request(ex.method, ex.path, headers, body ?? (ex.framing.kind === 'none' ? 'none' : ex.framing.kind), {
      response: (head) => {
        if (ex.timer) clearTimeout(ex.timer);
        relay.start(head);
      },
      data: (chunk) => relay.data(chunk),
      end: () => relay.end(),
      error: (err) => {
        if (ex.timer) clearTimeout(ex.timer);
        if (relay.started) {
          relay.fail();
          return;
        }
        if (ex.done) return;
        const failure = describeUpstreamFailure(err, cfg);
        ctx.log('warn', 'http upstream failed', { connection: cfg.name, subject: ex.subject, code: failure.code, reason: failure.message });
        answerError(ex, failure, !ex.bodyEnded);
      },
      drain: () => {
        waitingDrain = false;
        if (ex.done) return;
        resumeClient(ex);
        pump();
      },
    });
  } catch (err) {
    // A request the pool refuses to serialize (a byte that could split it) is the client's fault.
    if (err instanceof VgError && err.code === 'ERR_VG_HTTP_BAD_REQUEST') answerError(ex, { status: 400, code: err.code, message: err.message }, true);
    else answerError(ex, { status: 502, code: 'ERR_VG_UPSTREAM_PROTOCOL', message: `the request could not be sent upstream: ${(err as Error).message}` }, true);
    return;
  }
  ex.upstream = up;
  ex.timer = setTimeout(() => {
    up.destroy(errnoError('upstream response timeout', 'ERR_VG_UPSTREAM_TIMEOUT'));
  }, limits.upstreamResponseTimeoutMs);
  if (body !== null || ex.framing.kind === 'none') {
    recordRequest(ex);
    return;
  }
  ex.onBody = pump;
  ex.passThrough = passThrough;
  resumeClient(ex);
  pump();
}

/**
 * Strict durability: the `request` record goes first and the request is forwarded only once it
 * is on disk. A body whose summary the record carries (`queries`/`full`, up to
 * max_recorded_body) is read whole first; a larger one is recorded with its declared size
 * (it streams after). When the recorder cannot write: 503, nothing forwarded.
 */
function forwardOnceRecorded(ctx: HttpWorkerContext, cfg: HttpConnectionConfig, limits: HttpLimits, pool: UpstreamPool, ex: Exchange, auth: Extract<AuthResult, { ok: true }>, body: Buffer | null): void {
  const rec = ex.rec!;
  ex.stage = 'recording';
  const declared = ex.framing.kind === 'length' ? ex.framing.length : 0;
  const summarized = body === null && ex.framing.kind === 'length' && rec.bodyHeld && declared <= limits.maxRecordedBodyBytes;
  if (summarized && !ex.bodyEnded) {
    // At most max_recorded_body bytes: held, then recorded.
    ex.onBody = () => {
      if (ex.done || !ex.bodyEnded) return;
      ex.onBody = null;
      forwardOnceRecorded(ctx, cfg, limits, pool, ex, auth, body);
    };
    resumeClient(ex);
    return;
  }
  const bytes = body !== null || ex.bodyEnded ? undefined : declared;
  ex.recordRequest!((ok, message) => {
    if (ex.done) return;
    if (!ok) {
      ctx.log('error', 'http request refused: the recorder cannot write (strict durability)', { connection: cfg.name, subject: ex.subject, error: message });
      answerError(ex, { status: 503, code: 'ERR_VG_RECORDING_FAILED', message: 'the audit recorder cannot write; requests are refused until it can (fail closed); retry later' }, true);
      return;
    }
    forward(ctx, cfg, limits, pool, ex, auth, body);
  }, bytes);
}

/**
 * The upstream's response head is decoded one char per byte (latin1); uWS would write a JS
 * string as UTF-8, turning each byte above 0x7f into two. Such text goes back as its bytes.
 */
function rawBytes(text: string): string | Buffer {
  return NON_ASCII.test(text) ? Buffer.from(text, 'latin1') : text;
}
const NON_ASCII = /[\x80-\xff]/;

/** Streams one upstream response to the client with backpressure both ways. */
class ResponseRelay {
  started = false;
  private total: number | null = null;
  private closeAfter = false;
  private headWritten = false;
  private statusLine = '';
  private headers: HeaderList = [];
  /** The tail of a chunk uWS could not take (tryEnd mode), and the write offset at which it starts. */
  private pending: Buffer | null = null;
  private pendingOffset = 0;
  /** Body bytes handed to uWS before the next chunk (its write offset while none is pending). */
  private offset = 0;
  /** onWritable is registered only once uWS pushes back: most answers never need it. */
  private watchingWritable = false;

  constructor(
    private readonly ctx: HttpWorkerContext,
    private readonly cfg: HttpConnectionConfig,
    private readonly ex: Exchange,
  ) {}

  start(head: ResponseHead): void {
    const ex = this.ex;
    if (ex.done) {
      this.ex.upstream?.destroy();
      return;
    }
    this.started = true;
    const res = ex.res;
    const status = head.status;
    this.statusLine = `${status} ${head.reason || STATUS_CODES[status] || ''}`.trim();
    this.headers = clientResponseHeaders(head.rawHeaders);
    this.total = head.contentLength;
    const noBody = ex.method === 'HEAD' || status === 204 || status === 304;
    this.closeAfter = !ex.bodyEnded; // the client is still sending a body nobody will read
    ex.status = status;
    this.ctx.log('debug', 'http request', { connection: this.cfg.name, subject: ex.subject, method: ex.method, operation: ex.route?.operation, collection: ex.route?.collection, status });
    if (noBody) {
      settle(ex);
      res.cork(() => {
        this.writeHead();
        res.endWithoutBody(this.total ?? undefined, this.closeAfter);
      });
      return;
    }
    if (this.total === 0) {
      // No body bytes will come: answer now.
      settle(ex);
      res.cork(() => {
        this.writeHead();
        res.end(undefined, this.closeAfter);
      });
    }
  }

  private writeHead(): void {
    const res = this.ex.res;
    res.writeStatus(rawBytes(this.statusLine));
    for (const [k, v] of this.headers) res.writeHeader(k, rawBytes(v));
    this.headWritten = true;
  }

  /** uWS could not take everything: from now on it says when it can take more. */
  private watchWritable(): void {
    if (this.watchingWritable) return;
    this.watchingWritable = true;
    this.ex.res.onWritable((offset) => this.writable(offset));
  }

  private writable(offset: number): boolean {
    const ex = this.ex;
    if (ex.done) return true;
    if (this.total === null) {
      // write() mode: uWS buffered everything; it drained, so read upstream again.
      this.ex.upstream?.resume();
      return true;
    }
    if (this.pending === null) return true;
    const rest = this.pending.subarray(offset - this.pendingOffset);
    let ok = false;
    let finished = false;
    ex.res.cork(() => {
      [ok, finished] = tryEndByRecord(ex.res, rest, this.total!);
    });
    if (finished) {
      settle(ex);
      this.pending = null;
      return true;
    }
    if (ok) {
      this.pending = null;
      this.ex.upstream?.resume();
    }
    return ok;
  }

  data(chunk: Buffer): void {
    const ex = this.ex;
    if (ex.done) return;
    ex.bytesOut += chunk.length;
    const res = ex.res;
    res.cork(() => {
      if (!this.headWritten) this.writeHead();
      if (this.total === null) {
        if (!res.write(chunk)) {
          this.watchWritable();
          this.ex.upstream?.pause();
        }
        return;
      }
      // One chunk per upstream read and none while one is pending (the upstream is paused
      // then): uWS's write offset is the sum of the chunks before this one.
      const offset = this.offset;
      this.offset += chunk.length;
      const [ok, finished] = tryEndByRecord(res, chunk, this.total);
      if (finished) {
        // Done: the response may not be touched again (uWS throws). A request body still
        // arriving after an early answer is read and dropped by the body handler.
        settle(ex);
        return;
      }
      if (!ok) {
        // uWS keeps its own copy only of what it accepted: the rest is ours to resend, and
        // `chunk` is lent by the upstream connection for this call only: keep a copy.
        this.pending = Buffer.from(chunk);
        this.pendingOffset = offset;
        this.watchWritable();
        this.ex.upstream?.pause();
      }
    });
  }

  end(): void {
    const ex = this.ex;
    if (ex.done) return;
    if (this.total !== null) return; // tryEnd finished it (or `pending` will)
    settle(ex);
    ex.res.cork(() => {
      if (!this.headWritten) this.writeHead();
      ex.res.end(undefined, this.closeAfter);
    });
  }

  /** The upstream failed after its response head. */
  fail(): void {
    const ex = this.ex;
    if (ex.done) return;
    ex.errorCode = 'ERR_VG_UPSTREAM_PROTOCOL';
    settle(ex);
    if (!this.headWritten) {
      ex.status = 502;
      answerErrorNow(ex.res, { status: 502, code: 'ERR_VG_UPSTREAM_PROTOCOL', message: `upstream of connection "${this.cfg.name}" failed while answering` }, true);
      return;
    }
    ex.res.close(); // mid-body: the only honest signal is a cut connection
  }
}

/**
 * uWS's tryEnd, handed at most one TLS record's worth (16 KB) per call. Handed a 64 KB chunk
 * when the client's socket was full, uWS over TLS stalled for good: every later tryEnd of the
 * rest failed while the client was reading again (a 256 MB answer stuck at 4 MB, test/http/
 * http-proxy "backpressure", whenever reads came 64 KB at a time). The likely cause is
 * OpenSSL's retry rule for a write that sent part of a multi-record buffer, which uWS's offset
 * accounting does not follow; with one record per call nothing is left half-sent across calls
 * and the stall did not occur. Returns uWS's [ok, finished]; when not ok, uWS's write offset
 * says how much it took.
 */
const TLS_RECORD_BYTES = 16 * 1024;
function tryEndByRecord(res: HttpResponse, body: Buffer, total: number): [boolean, boolean] {
  if (body.length <= TLS_RECORD_BYTES) return res.tryEnd(body, total);
  for (let at = 0; ; at += TLS_RECORD_BYTES) {
    const [ok, finished] = res.tryEnd(body.subarray(at, at + TLS_RECORD_BYTES), total);
    if (!ok || finished || at + TLS_RECORD_BYTES >= body.length) return [ok, finished];
  }
}

/**
 * Copies a body chunk out of uWS (which reuses its memory). A Content-Length body up to
 * CONTIGUOUS_BODY_MAX_BYTES whose first chunk holds at least half of it is copied into one
 * buffer of its size, so the guard reads it and the upstream write sends it without joining
 * the chunks again. The half rule keeps memory within twice what the client has sent (four
 * times for bodies up to POOLED_BODY_MAX_BYTES, whose reused buffers round up to a power of
 * two): a client announcing a large body and sending a byte gets no large buffer.
 */
function copyBodyChunk(ex: Exchange, chunk: ArrayBuffer): Buffer {
  const n = chunk.byteLength;
  const f = ex.framing;
  if (f.kind === 'length' && f.length <= CONTIGUOUS_BODY_MAX_BYTES) {
    if (ex.body === null && ex.bytesIn === 0 && n * 2 >= f.length) {
      if (f.length <= POOLED_BODY_MAX_BYTES) {
        ex.pooledBody = takeBodyBuffer(f.length);
        ex.body = ex.pooledBody.subarray(0, f.length);
      } else ex.body = Buffer.allocUnsafe(f.length);
    }
    if (ex.body !== null && ex.bodyFill + n <= ex.body.length) {
      ex.body.set(new Uint8Array(chunk), ex.bodyFill);
      ex.bodyFill += n;
      return ex.body.subarray(ex.bodyFill - n, ex.bodyFill);
    }
  }
  // Not Buffer.from(view): that zero-fills a fresh allocation before copying over it.
  const copy = Buffer.allocUnsafe(n);
  copy.set(new Uint8Array(chunk));
  return copy;
}

/** The queued body as one Buffer: the contiguous body buffer when the queue is all of it, else joined. */
function takeQueuedBody(ex: Exchange): Buffer {
  const q = ex.queued;
  const b = ex.body;
  const whole = b !== null && q.length > 0 && q[0]!.buffer === b.buffer && q[0]!.byteOffset === b.byteOffset && ex.queuedBytes === ex.bodyFill;
  const body = whole ? b.subarray(0, ex.bodyFill) : Buffer.concat(q, ex.queuedBytes);
  ex.queued = [];
  ex.queuedBytes = 0;
  return body;
}

function pauseClient(ex: Exchange): void {
  if (ex.paused || ex.done) return;
  ex.paused = true;
  ex.res.pause();
}

function resumeClient(ex: Exchange): void {
  if (!ex.paused || ex.done) return;
  ex.paused = false;
  ex.res.resume();
}

function bearerToken(headers: HeaderList): string | null {
  const values = headers.filter(([k]) => k === 'authorization');
  if (values.length !== 1) return null;
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(values[0]![1]);
  return m ? m[1]! : null;
}

function unauthorized(description: string): ErrorAnswer {
  const d = description.replace(/[\\"]/g, "'").replace(/[^\x20-\x7e]/g, '?');
  return { status: 401, code: 'ERR_VG_TOKEN_MISSING', message: description, headers: [['www-authenticate', `Bearer error="invalid_token", error_description="${d}"`]] };
}

function remoteAddress(res: HttpResponse): string {
  // The binary form first: formatting four bytes is cheaper than decoding and matching the text.
  const a = new Uint8Array(res.getRemoteAddress());
  if (a.length === 4) return `${a[0]}.${a[1]}.${a[2]}.${a[3]}`;
  if (a.length === 16 && isV4Mapped(a)) return `${a[12]}.${a[13]}.${a[14]}.${a[15]}`;
  const text = Buffer.from(res.getRemoteAddressAsText()).toString('latin1');
  // uWS reports IPv4 clients of a dual-stack socket as mapped IPv6.
  const m = /^(?:0000:0000:0000:0000:0000:ffff:|::ffff:)(\d+\.\d+\.\d+\.\d+)$/i.exec(text);
  return m ? m[1]! : text;
}

/** ::ffff:a.b.c.d, how a dual-stack socket reports an IPv4 client. */
function isV4Mapped(a: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}

/** Answers with a JSON error unless the exchange is already over. `close` ends the connection (an unread body follows). */
function answerError(ex: Exchange, e: ErrorAnswer, close: boolean): void {
  if (ex.done) return;
  if (ex.timer) clearTimeout(ex.timer);
  ex.upstream?.destroy();
  ex.status = e.status;
  ex.errorCode = e.code;
  if (ex.rec && ex.stage !== 'upstream') ex.rec.decision = { allowed: false, stage: ex.stage, code: e.code, reason: e.message };
  const bytes = answerErrorNow(ex.res, e, close && !ex.bodyEnded, ex.method === 'HEAD');
  ex.bytesOut += bytes;
  settle(ex);
}

/**
 * Writes a JSON error answer; returns the body bytes sent. The answer to a HEAD request has
 * no body (RFC 9110 §9.3.2): its Content-Length is that of the body a GET would get.
 */
function answerErrorNow(res: HttpResponse, e: ErrorAnswer, close: boolean, head = false): number {
  const body = JSON.stringify({ error: { code: e.code, message: e.message } });
  const length = Buffer.byteLength(body);
  res.cork(() => {
    res.writeStatus(`${e.status} ${STATUS_CODES[e.status] ?? ''}`.trim());
    res.writeHeader('content-type', 'application/json');
    res.writeHeader('cache-control', 'no-store');
    for (const [k, v] of e.headers ?? []) res.writeHeader(k, v);
    if (head) res.endWithoutBody(length, close);
    else res.end(body, close);
  });
  return head ? 0 : length;
}

/** Where a request is in its checks; a refusal is recorded as coming from this stage. */
type ExchangeStage = 'framing' | 'token' | 'access' | 'guard' | 'recording' | 'upstream';

function startRecording(ctx: HttpWorkerContext, cfg: HttpConnectionConfig, limits: HttpLimits, ex: Exchange): void {
  const rec: ExchangeRecording = {
    mode: cfg.recording,
    session: randomUUID(),
    startedAt: Date.now(),
    requestRecorded: false,
    who: null,
    decision: { allowed: false },
    body: [],
    bodyHeld: (cfg.recording === 'queries' || cfg.recording === 'full') && limits.maxRecordedBodyBytes > 0,
  };
  ex.rec = rec;
  const base = { session: rec.session, connection: cfg.name };
  ex.recordRequest = (onDurable, bytes) => {
    if (rec.requestRecorded) return;
    rec.requestRecorded = true;
    const route = ex.route;
    const event: RecordEvent = {
      type: 'request',
      ts: rec.startedAt,
      ...base,
      protocol: 'http',
      flavor: cfg.flavor,
      client: ex.clientAddress,
      subject: rec.who?.subject ?? null,
      username: rec.who?.username ?? null,
      issuer: rec.who?.issuer ?? null,
      groups: rec.who?.groups ?? [],
      access: rec.who?.access ?? null,
      method: ex.method,
      path: ex.path,
      route: route ? { access: route.access, operation: route.operation, collection: route.collection } : null,
      guard: rec.decision,
    };
    if (ex.framing.kind !== 'none') {
      event['body'] = summarizeRequestBody(rec.body, bytes ?? ex.bytesIn, bytes === undefined && ex.bodyEnded && rec.bodyHeld, rec.mode);
      rec.body = [];
      rec.bodyHeld = false;
    }
    ctx.record!(event, onDurable);
  };
  ex.onSettled = () => {
    ex.recordRequest?.();
    const now = Date.now();
    ctx.record!({
      type: 'result',
      ts: now,
      ...base,
      status: ex.status,
      bytesIn: ex.bytesIn,
      bytesOut: ex.bytesOut,
      durationMs: now - rec.startedAt,
      ...(ex.errorCode !== null ? { code: ex.errorCode } : {}),
      ...(ex.aborted ? { aborted: true } : {}),
    });
  };
}

function recordRequest(ex: Exchange): void {
  ex.recordRequest?.();
}

/** Marks the exchange over (answered or aborted): `res` is not touched after this; the result is recorded. */
function settle(ex: Exchange): void {
  if (ex.done) return;
  ex.done = true;
  ex.count?.(ex.connection, ex.status, ex.aborted === true, ex.bytesIn, ex.bytesOut);
  const f = ex.onSettled;
  ex.onSettled = null;
  f?.();
  // Nothing reads or sends this request's body any more: the recording summarized it (above,
  // synchronously); the upstream request has answered (it never resends after its response
  // began, and the pump and passThrough stop for a done exchange) or is destroyed first
  // (answerError) or right after in the same call (onAborted), so it neither sends nor
  // retries what it held; and uWS's body callback returns at once for a done exchange.
  const pooled = ex.pooledBody;
  if (pooled !== null) {
    ex.pooledBody = null;
    ex.body = null;
    ex.queued = [];
    ex.queuedBytes = 0;
    giveBodyBuffer(pooled);
  }
}

/**
 * Contiguous request bodies up to this size are copied into reused buffers (per worker,
 * 4 KB to 64 KB in powers of two, at most BODY_BUFFERS_PER_SIZE kept of each, so under 2 MB
 * held per worker): a fresh Buffer per request cost about 6% of the CPU of a guarded search
 * (bench/README.md).
 */
const POOLED_BODY_MAX_BYTES = 64 * 1024;
const BODY_BUFFERS_PER_SIZE = 16;
const bodyBuffers: Buffer[][] = [[], [], [], [], []];

function bodyBufferClass(n: number): number {
  let c = 0;
  while (4096 << c < n) c++;
  return c;
}

function takeBodyBuffer(n: number): Buffer {
  const c = bodyBufferClass(n);
  return bodyBuffers[c]!.pop() ?? Buffer.allocUnsafe(4096 << c);
}

function giveBodyBuffer(b: Buffer): void {
  const free = bodyBuffers[bodyBufferClass(b.length)]!;
  if (free.length < BODY_BUFFERS_PER_SIZE) free.push(b);
}
