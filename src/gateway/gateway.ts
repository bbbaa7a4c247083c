// The primary thread's gateway: starts one worker thread per core, answers their
// authorization requests (token verification + policy + credential choice), rotates the
// server certificate on file change or SIGHUP, and drains on SIGTERM.
import { randomBytes } from 'node:crypto';
import { unwatchFile, watchFile } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { servesHttp, type AccessLevel, type DbCredential, type HttpConnectionConfig, type PostgresConnectionConfig, type VecgateConfig } from '../config/types.js';
import { loadConfig, loadServerTlsFiles } from '../config/load.js';
import { SERVED_PROTOCOLS } from '../config/schema.js';
import { VgError } from '../errors.js';
import { TokenVerifier } from '../identity/token-verifier.js';
import { compilePolicy, credentialFor } from '../policy/policy.js';
import { GatewayMetrics } from '../admin/metrics.js';
import { RecorderThread } from '../recording/recorder-thread.js';
import { setSensitiveSettings } from '../recording/redact-event.js';
import { startAdminServer, type AdminServer } from '../admin/admin-server.js';
import { buildPoolsView, WorkerPoolsRounds, type PoolsView } from '../admin/pools-view.js';
import { assertListenAddressesFree } from './listen-probe.js';
import { packInit, receive, send, type AuthClientInfo, type AuthResult, type ToPrimary } from '../../workers/messages.js';
import { DRAIN_REPORT_MARGIN_MS, DRAIN_SHUTDOWN_GRACE_MS } from '../../workers/drain-deadline.js';
import { credentialHeader, unsendableCredential, type CredentialHeader } from '../../workers/http/credential-header.js';

/** How often certificate files are checked for changes (SIGHUP reloads at once). */
export const TLS_WATCH_INTERVAL_MS = 2000;
/** How often expired recording segments are looked for. */
export const RETENTION_INTERVAL_MS = 3600_000;
/**
 * Young-generation size of workers when an HTTP connection is configured. HTTP runs
 * JavaScript per request; V8's default young generation (16 MB semi-spaces at most, grown
 * from 1 MB) is scavenged so often under that load that a 32 MB semi-space (young generation
 * = 3 semi-spaces) cut the proxy CPU per search request by about 24% in the benchmark (mean
 * of 5 quick runs each; bench/README.md, "HTTP upstream leg"). PostgreSQL-only gateways keep V8's default, which
 * holds less memory per idle session.
 */
export const HTTP_WORKER_YOUNG_GENERATION_MB = 96;

export interface GatewayHandle {
  listeners: { connection: string; port: number }[];
  /** Re-reads the certificate and key; keeps the current pair when the new one is unusable. */
  reloadTls(): boolean;
  /**
   * Re-reads the config file: identity and policies apply to new sessions at once, live
   * sessions that lost access are ended; listener or upstream changes need a restart
   * (logged). An invalid file changes nothing. Also reloads the certificate.
   */
  reloadConfig(): Promise<boolean>;
  /** Stops accepting, lets sessions finish up to the drain deadline, then stops the workers. */
  stop(opts?: { drainMs?: number }): Promise<void>;
  stats(): Promise<{ liveSessions: number; liveConnections: number; bytesPumped: number }>;
  metrics: GatewayMetrics;
  /** The pools now, as /pools shows them (every worker is asked). */
  pools(): Promise<PoolsView>;
  /** Port of the admin endpoint, when configured. */
  adminPort: number | null;
}

export interface GatewayOptions {
  logger: Logger;
  /** Install SIGHUP / SIGTERM / SIGINT handlers (the CLI does; tests usually do not). */
  signals?: boolean;
}

const workerUrl = new URL('../../workers/worker-main.js', import.meta.url);

export async function startGateway(config: VecgateConfig, opts: GatewayOptions): Promise<GatewayHandle> {
  const log = opts.logger;
  await assertListenAddressesFree(config);
  const unsendable = unsendableCredentials(config);
  if (unsendable !== null) throw new VgError('ERR_VG_CONFIG', unsendable);
  const tlsFiles = loadServerTlsFiles(config.server.tls);
  let verifier = new TokenVerifier(config.identity.issuers);
  let policy = compilePolicy(config.policies);
  const cancelKey = config.server.cancelKey ?? randomBytes(32);
  const metrics = new GatewayMetrics();
  for (const c of Object.values(config.connections)) if (c.protocol === 'postgres') metrics.upstreamParked.set({ connection: c.name }, 0);
  let ready = false;
  const recordingOn = Object.values(config.connections).some((c) => c.recording !== 'off');
  setSensitiveSettings(config.recordings.redactSettings);
  const recorder = recordingOn
    ? await RecorderThread.open({ dir: config.recordings.dir, durability: config.recordings.durability, retentionMs: config.recordings.retentionMs })
    : null;
  const retentionTimer = recorder
    ? setInterval(() => {
        recorder.enforceRetention().then(
          (r) => r.deleted.length && log.info({ deleted: r.deleted }, 'expired recording segments deleted'),
          (err: Error) => log.error({ err: err.message }, 'recording retention failed'),
        );
      }, RETENTION_INTERVAL_MS).unref()
    : null;
  let recordingFailed = false;

  const authorize = async (token: string, connection: string, client: AuthClientInfo): Promise<AuthResult> => {
    const conn = config.connections[connection];
    if (!conn) return { ok: false, code: 'ERR_VG_ACCESS_DENIED', sqlstate: '28000', message: `unknown connection ${connection}` };
    let principal;
    try {
      principal = await verifier.verify(token);
    } catch (err) {
      const e = err as VgError;
      log.info({ connection, client: `${client.address}:${client.port}`, code: e.code, reason: e.message, detail: e.operatorDetail }, 'token refused');
      const code = typeof e.code === 'string' ? e.code : 'ERR_VG_TOKEN_MALFORMED';
      const message = typeof e.code === 'string' && e.code.startsWith('ERR_VG_') ? e.message : 'the access token could not be verified';
      return { ok: false, code, sqlstate: code === 'ERR_VG_JWKS_UNAVAILABLE' ? '08006' : '28P01', message };
    }
    const decision = policy.decide(principal.groups, connection);
    if (!decision) {
      const allowed = policy.groupsFor(connection);
      const who = principal.username || principal.subject;
      const groups = principal.groups.length ? principal.groups.join(', ') : 'none';
      log.info({ connection, subject: principal.subject, groups: principal.groups }, 'access denied by policy');
      return {
        ok: false,
        code: 'ERR_VG_ACCESS_DENIED',
        sqlstate: '28000',
        message: `${who} (groups: ${groups}) has no access to connection "${connection}"${allowed.length ? `; it is granted to groups: ${allowed.join(', ')}` : ''}`,
      };
    }
    // The credential goes to the worker with the decision, from the config as it is now (reloads included).
    let credential: DbCredential | null = null;
    let upstreamHeader: CredentialHeader | null = null;
    if (conn.protocol === 'postgres' || conn.protocol === 'mysql') {
      credential = credentialFor((conn as PostgresConnectionConfig).credentials, decision.access as AccessLevel);
    } else {
      // HTTP connections carry one upstream credential (a header) for every access level.
      credential = { user: '', password: '' };
      upstreamHeader = credentialHeader((conn as HttpConnectionConfig).credentials);
    }
    if (!credential) {
      log.error({ connection, access: decision.access }, 'no upstream credential configured for this access level');
      return { ok: false, code: 'ERR_VG_ACCESS_DENIED', sqlstate: '28000', message: `connection "${connection}" has no credential for ${decision.access} access; ask the operator` };
    }
    return {
      ok: true,
      subject: principal.subject,
      username: principal.username,
      issuer: principal.issuer,
      groups: principal.groups,
      access: decision.access,
      rules: decision.rules,
      credential,
      upstreamHeader,
      expiresAt: principal.expiresAt,
    };
  };

  const workers: Worker[] = [];
  const listeners: { connection: string; port: number }[] = [];
  const statsWaiters: ((s: { liveSessions: number; liveConnections: number; bytesPumped: number; worker: number }) => void)[] = [];
  let drained = 0;
  let drainResolve: (() => void) | null = null;
  /** Parked upstream connections per connection name, per worker (vecgate_upstream_parked_connections). */
  const parkedByConnection = new Map<string, Map<number, number>>();
  /** Transaction pooling gauges per connection and worker: [open, idle, waiting]. */
  const txPoolByConnection = new Map<string, Map<number, [number, number, number]>>();
  /** Sessions being served per connection (session-start minus session-end), for /pools. */
  const sessionsByConnection = new Map<string, number>();
  const poolsRounds = new WorkerPoolsRounds(
    () => workers.length,
    (id) => {
      for (const w of workers) send(w, { t: 'pools?', id });
    },
  );
  const pgConnections = Object.values(config.connections).filter((c): c is PostgresConnectionConfig => c.protocol === 'postgres');
  const pools = async (): Promise<PoolsView> => {
    const { at, answers } = await poolsRounds.collect();
    return buildPoolsView({ connections: pgConnections, workers: workers.length, answers, sessions: sessionsByConnection, at });
  };

  const onWorkerMessage = (w: Worker, msg: ToPrimary) => {
    switch (msg.t) {
      case 'auth':
        authorize(msg.token, msg.connection, msg.client).then(
          (result) => send(w, { t: 'auth-result', id: msg.id, result }),
          (err: Error) => {
            log.error({ err: err.message }, 'authorization error');
            send(w, { t: 'auth-result', id: msg.id, result: { ok: false, code: 'ERR_VG_ACCESS_DENIED', sqlstate: '08006', message: 'the gateway could not check your token right now; try again' } });
          },
        );
        break;
      case 'log':
        log[msg.level](msg.fields, msg.msg);
        break;
      case 'session-start':
        metrics.sessionsStarted.inc({ connection: msg.connection, access: msg.access });
        metrics.liveSessions.inc();
        sessionsByConnection.set(msg.connection, (sessionsByConnection.get(msg.connection) ?? 0) + 1);
        break;
      case 'session-end': {
        const s = msg.summary;
        log.info({ ...s }, 'session ended');
        metrics.liveSessions.dec();
        sessionsByConnection.set(s.connection, (sessionsByConnection.get(s.connection) ?? 0) - 1);
        metrics.sessionsEnded.inc({ connection: s.connection, reason: s.reason });
        metrics.bytes.inc({ connection: s.connection, direction: 'from_client' }, s.bytesFromClient);
        metrics.bytes.inc({ connection: s.connection, direction: 'from_upstream' }, s.bytesFromUpstream);
        metrics.statements.inc({ connection: s.connection }, s.statements);
        break;
      }
      case 'refusal':
        metrics.refusals.inc({ connection: msg.connection, code: msg.code });
        break;
      case 'http-stats':
        for (const [connection, status, requests, bytesIn, bytesOut] of msg.rows) {
          metrics.httpRequests.inc({ connection, status }, requests);
          metrics.bytes.inc({ connection, direction: 'from_client' }, bytesIn);
          metrics.bytes.inc({ connection, direction: 'from_upstream' }, bytesOut);
        }
        break;
      case 'cancel-route': {
        const to = workers[msg.to];
        if (to !== undefined) send(to, { t: 'cancel-route', from: msg.from, id: msg.id, slot: msg.slot, secret: msg.secret });
        else send(w, { t: 'cancel-done', id: msg.id });
        break;
      }
      case 'cancel-done': {
        const to = workers[msg.to];
        if (to !== undefined) send(to, { t: 'cancel-done', id: msg.id });
        break;
      }
      case 'pg-txpool-stats': {
        // Gauges are absolute per worker (summed here); counters are deltas.
        for (const r of msg.rows) {
          let byWorker = txPoolByConnection.get(r.connection);
          if (byWorker === undefined) txPoolByConnection.set(r.connection, (byWorker = new Map()));
          byWorker.set(msg.worker, [r.open, r.idle, r.waiting]);
          let open = 0;
          let idle = 0;
          let waiting = 0;
          for (const [o, i, w] of byWorker.values()) {
            open += o;
            idle += i;
            waiting += w;
          }
          metrics.poolConnections.set({ connection: r.connection, state: 'idle' }, idle);
          metrics.poolConnections.set({ connection: r.connection, state: 'busy' }, open - idle);
          metrics.poolWaiting.set({ connection: r.connection }, waiting);
          if (r.waits > 0) metrics.poolWaits.inc({ connection: r.connection }, r.waits);
          if (r.waitMs > 0) metrics.poolWaitSeconds.inc({ connection: r.connection }, r.waitMs / 1000);
          if (r.timeouts > 0) metrics.poolWaitTimeouts.inc({ connection: r.connection }, r.timeouts);
          for (const [reason, n] of r.pins) metrics.poolPins.inc({ connection: r.connection, reason }, n);
        }
        break;
      }
      case 'pools':
        poolsRounds.answer(msg.worker, msg.id, msg.pools);
        break;
      case 'pg-pool-stats': {
        // Counts are absolute per worker: the gauge is their sum.
        for (const [connection, parked, evicted] of msg.rows) {
          let byWorker = parkedByConnection.get(connection);
          if (byWorker === undefined) parkedByConnection.set(connection, (byWorker = new Map()));
          byWorker.set(msg.worker, parked);
          let sum = 0;
          for (const n of byWorker.values()) sum += n;
          metrics.upstreamParked.set({ connection }, sum);
          if (evicted > 0) metrics.upstreamParkedEvictions.inc({ connection }, evicted);
        }
        break;
      }
      case 'record': {
        const ack = msg.ack;
        const done = recorder ? recorder.appendBatch(msg.batch) : Promise.reject(new Error('no recorder'));
        done.then(
          () => {
            if (recordingFailed) log.info('recording recovered');
            recordingFailed = false;
            if (ack !== null) send(w, { t: 'record-ack', batch: ack, ok: true, message: '' });
          },
          (err: Error) => {
            if (!recordingFailed) log.error({ err: err.message }, 'recording failed');
            recordingFailed = true;
            if (ack !== null) send(w, { t: 'record-ack', batch: ack, ok: false, message: err.message });
          },
        );
        break;
      }
      case 'drained':
        drained++;
        if (drained === workers.length && drainResolve) drainResolve();
        break;
      case 'stats': {
        const cb = statsWaiters.shift();
        if (cb) cb(msg);
        break;
      }
      default:
        break;
    }
  };

  const count = Math.max(1, config.server.workers);
  const withHttp = servesHttp(config);
  const readyAll = Promise.all(
    Array.from({ length: count }, (_, index) => {
      const w = new Worker(workerUrl, {
        workerData: packInit({ index, logLevel: log.level, config: withoutCredentials(config), tlsCert: tlsFiles.cert, tlsKey: tlsFiles.key, cancelKey }),
        name: `vecgate-worker-${index}`,
        ...(withHttp ? { resourceLimits: { maxYoungGenerationSizeMb: HTTP_WORKER_YOUNG_GENERATION_MB } } : {}),
      });
      workers.push(w);
      return new Promise<void>((resolve, reject) => {
        w.on('message', (data: unknown) => {
          const msg = receive<ToPrimary>(data);
          if (msg.t === 'ready') {
            // `ready` promises that every configured listener accepts, in every worker: a worker
            // that skipped one (a protocol it does not serve) fails the start instead.
            const missing = Object.keys(config.connections).filter((name) => !msg.listeners.some((l) => l.connection === name));
            if (missing.length > 0) {
              const c = config.connections[missing[0]!]!;
              reject(new VgError('ERR_VG_LISTEN', `connections.${c.name}: worker ${index} opened no listener on ${c.listen.host}:${c.listen.port} (protocol ${c.protocol} is not served by this version; it serves ${SERVED_PROTOCOLS.join(' and ')})`));
              return;
            }
            if (index === 0) listeners.push(...msg.listeners);
            resolve();
          } else if (msg.t === 'listen-error') {
            const c = config.connections[msg.connection];
            const addr = c ? `${c.listen.host}:${c.listen.port}` : '?';
            const why = msg.code === 'EADDRINUSE' ? 'the address is already in use' : msg.code === 'EACCES' ? 'permission denied' : msg.message;
            reject(new VgError('ERR_VG_LISTEN', `connections.${msg.connection}.listen: cannot listen on ${addr}: ${why} (${msg.code})`));
          } else {
            onWorkerMessage(w, msg);
          }
        });
        w.on('error', (err) => {
          log.error({ worker: index, err: err.message }, 'worker failed');
          reject(err);
        });
        w.on('exit', (code) => {
          if (!stopping) {
            log.error({ worker: index, code }, 'worker exited unexpectedly');
            reject(new Error(`worker ${index} exited with code ${code}`));
          }
        });
      });
    }),
  );

  let stopping = false;
  const terminateAll = async () => {
    stopping = true;
    await Promise.all(workers.map((w) => w.terminate().catch(() => 0)));
  };

  let admin: AdminServer | null = null;
  try {
    await readyAll;
    if (config.server.admin) admin = await startAdminServer(config.server.admin, { ready: () => ready, metrics, pools });
  } catch (err) {
    await terminateAll();
    throw err;
  }
  ready = true;

  const reloadTls = (): boolean => {
    try {
      const next = loadServerTlsFiles(config.server.tls);
      createSecureContext({ cert: next.cert, key: next.key }); // the pair must load before any worker sees it
      for (const w of workers) send(w, { t: 'tls', cert: next.cert, key: next.key });
      log.info({ cert: config.server.tls.cert }, 'certificate reloaded');
      metrics.certReloads.inc({ result: 'ok' });
      return true;
    } catch (err) {
      metrics.certReloads.inc({ result: 'refused' });
      log.error({ err: (err as Error).message }, 'certificate reload failed; keeping the current certificate');
      return false;
    }
  };

  const reloadConfig = async (): Promise<boolean> => {
    let next: VecgateConfig;
    try {
      next = await loadConfig(config.configPath);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'config reload failed; keeping the current config');
      return false;
    }
    const shape = (c: VecgateConfig) => JSON.stringify(Object.values(c.connections).map((x) => [x.name, x.protocol, x.listen, x.upstream]));
    if (shape(next) !== shape(config) || next.server.workers !== config.server.workers) {
      log.warn('connection listeners or upstreams changed: restart vecgate to apply those changes');
    }
    const unsendable = unsendableCredentials(next);
    if (unsendable !== null) {
      log.error({ err: unsendable }, 'config reload failed; keeping the current config');
      return false;
    }
    verifier = new TokenVerifier(next.identity.issuers);
    policy = compilePolicy(next.policies);
    config.identity = next.identity;
    config.policies = next.policies;
    for (const [name, c] of Object.entries(next.connections)) {
      const cur = config.connections[name];
      if (cur && cur.protocol === c.protocol && 'credentials' in cur) (cur as { credentials: unknown }).credentials = (c as { credentials: unknown }).credentials;
    }
    for (const w of workers) send(w, { t: 'policy', policies: next.policies });
    log.info({ issuers: next.identity.issuers.length, policies: next.policies.length }, 'config reloaded');
    reloadTls();
    return true;
  };

  let tlsTimer: NodeJS.Timeout | null = null;
  const onTlsFileChange = () => {
    if (tlsTimer) clearTimeout(tlsTimer);
    // Writers replace cert and key one after the other: wait for both.
    tlsTimer = setTimeout(reloadTls, 300);
    tlsTimer.unref();
  };
  watchFile(config.server.tls.cert, { interval: TLS_WATCH_INTERVAL_MS, persistent: false }, onTlsFileChange);
  watchFile(config.server.tls.key, { interval: TLS_WATCH_INTERVAL_MS, persistent: false }, onTlsFileChange);

  const stop = async (stopOpts?: { drainMs?: number }) => {
    if (stopping) return;
    stopping = true;
    ready = false;
    admin?.close();
    unwatchFile(config.server.tls.cert, onTlsFileChange);
    unwatchFile(config.server.tls.key, onTlsFileChange);
    const drainMs = stopOpts?.drainMs ?? config.server.drainTimeoutMs;
    const allDrained = new Promise<void>((resolve) => {
      drainResolve = resolve;
    });
    for (const w of workers) send(w, { t: 'drain', deadlineMs: drainMs });
    // Workers end what is left at the deadline and wait (the grace) for those sessions' close records.
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, drainMs + DRAIN_SHUTDOWN_GRACE_MS + DRAIN_REPORT_MARGIN_MS).unref());
    await Promise.race([allDrained, timeout]);
    await Promise.all(workers.map((w) => w.terminate().catch(() => 0)));
    if (retentionTimer) clearInterval(retentionTimer);
    await recorder?.close().catch((err: Error) => log.error({ err: err.message }, 'closing the recorder failed'));
  };

  if (opts.signals) {
    process.on('SIGHUP', () => {
      log.info('SIGHUP: reloading config and certificates');
      void reloadConfig();
    });
    const onStop = (sig: string) => {
      log.info({ signal: sig, drainMs: config.server.drainTimeoutMs }, 'draining');
      stop().then(() => {
        log.info('stopped');
        process.exit(0);
      });
    };
    process.once('SIGTERM', () => onStop('SIGTERM'));
    process.once('SIGINT', () => onStop('SIGINT'));
  }

  return {
    listeners,
    reloadTls,
    reloadConfig,
    stop,
    metrics,
    pools,
    adminPort: admin ? (admin as AdminServer).port : null,
    async stats() {
      const results = await Promise.all(
        workers.map(
          (w) =>
            new Promise<{ liveSessions: number; liveConnections: number; bytesPumped: number }>((resolve) => {
              statsWaiters.push(resolve);
              send(w, { t: 'stats?' });
            }),
        ),
      );
      return results.reduce(
        (a, b) => ({ liveSessions: a.liveSessions + b.liveSessions, liveConnections: a.liveConnections + b.liveConnections, bytesPumped: a.bytesPumped + b.bytesPumped }),
        { liveSessions: 0, liveConnections: 0, bytesPumped: 0 },
      );
    },
  };
}

/**
 * The config as workers get it: every connection's credentials emptied. Credentials reach
 * workers one way only, with each authorization decision (AuthGranted), so a reload that
 * changes them is seen by the next request or session, whatever the protocol.
 */
function withoutCredentials(config: VecgateConfig): VecgateConfig {
  const connections: VecgateConfig['connections'] = {};
  for (const [name, c] of Object.entries(config.connections)) {
    connections[name] = c.protocol === 'http' ? { ...c, credentials: null } : { ...c, credentials: {} };
  }
  return { ...config, connections };
}

/** The first HTTP credential that cannot be sent as a header, said as a config error; null when all can. */
function unsendableCredentials(config: VecgateConfig): string | null {
  for (const c of Object.values(config.connections)) {
    if (c.protocol !== 'http') continue;
    const why = unsendableCredential(c as HttpConnectionConfig);
    if (why !== null) return why;
  }
  return null;
}
