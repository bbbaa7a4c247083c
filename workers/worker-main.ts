// Entry point of a worker thread: loads the native addon (its own per-thread instance),
// listens on every PostgreSQL connection's address with SO_REUSEPORT, and runs sessions.
import { parentPort, workerData } from 'node:worker_threads';
import { native, type Listener } from '../src/native.js';
import { servesHttp, type HttpConnectionConfig, type PostgresConnectionConfig } from '../src/config/types.js';
import { startHttpConnection, type HttpConnectionHandle, type HttpWorkerContext } from './http/http-proxy.js';
import { HTTP_STATS_FLUSH_MS, HttpStats } from './http/http-stats.js';
import { receive, send, unpackInit, type ToWorker } from './messages.js';
import { WorkerContext } from './worker-context.js';
import { PgClientSession } from './pg-client-session.js';
import { initStatementClassifier } from '../src/policy/statement-classifier.js';
import { compilePolicy } from '../src/policy/policy.js';
import { DRAIN_POLL_MS, DRAIN_SHUTDOWN_GRACE_MS } from './drain-deadline.js';

const LISTEN_BACKLOG = 511;

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('worker-main must run in a worker thread');
  const init = unpackInit(workerData as Uint8Array);
  const binding = native();
  // Read-only sessions classify statements synchronously in the pump: load the parser first.
  await initStatementClassifier();
  const ctx0 = { log: (msg: string, fields: Record<string, unknown>) => send(port, { t: 'log', level: 'error', msg, fields }) };
  // One request's bug must not take every session of this worker (or the process) down:
  // log it for the operator and keep serving.
  process.on('uncaughtException', (err) => {
    ctx0.log('uncaught exception in a worker (bug): the worker keeps serving', { worker: init.index, error: err.message, stack: err.stack });
  });
  const ctx = new WorkerContext(binding, init.index, init.logLevel, init.config, Buffer.from(init.cancelKey), port, Buffer.from(init.tlsCert), Buffer.from(init.tlsKey));
  const listeners: Listener[] = [];
  const httpHandles: HttpConnectionHandle[] = [];
  const ready: { connection: string; port: number }[] = [];
  // One listener that cannot open fails the worker (and the gateway's start) with its reason.
  const listenFailed = (connection: string, err: unknown) => {
    const e = err as NodeJS.ErrnoException;
    send(port, { t: 'listen-error', worker: init.index, connection, code: e.code ?? 'ERR', message: e.message });
    for (const l of listeners) l.close();
    for (const h of httpHandles) h.close();
  };

  for (const c of Object.values(init.config.connections)) {
    if (c.protocol !== 'postgres') continue;
    const cfg = c as PostgresConnectionConfig;
    try {
      const l = binding.listen(cfg.listen.host, cfg.listen.port, LISTEN_BACKLOG, (conn) => {
        new PgClientSession(conn, ctx, cfg).start();
      });
      listeners.push(l);
      ready.push({ connection: cfg.name, port: l.port });
    } catch (err) {
      return listenFailed(cfg.name, err);
    }
  }

  // HTTP vector APIs: one uWebSockets.js SSLApp per worker on the same port (SO_REUSEPORT).
  const httpStats = new HttpStats();
  const httpCtx: HttpWorkerContext = {
    certFile: init.config.server.tls.cert,
    keyFile: init.config.server.tls.key,
    profile: init.config.server.tls.profile,
    authorize: (token, connection, client) => ctx.authorize(token, connection, client),
    cachedAuthorization: (token, connection) => ctx.cachedAuthorization(token, connection),
    log: (level, msg, fields) => ctx.log(level, msg, fields),
    record: (e, onDurable) => ctx.record(e, onDurable),
    strictRecording: init.config.recordings.durability === 'strict',
    count: (connection, status, aborted, bytesIn, bytesOut) => httpStats.add(connection, status, aborted, bytesIn, bytesOut),
  };
  const sendHttpStats = (): void => {
    const rows = httpStats.take();
    if (rows.length > 0) send(port, { t: 'http-stats', rows });
  };
  const httpStatsTimer = servesHttp(init.config) ? setInterval(sendHttpStats, HTTP_STATS_FLUSH_MS) : null;
  httpStatsTimer?.unref();
  for (const c of Object.values(init.config.connections)) {
    if (c.protocol !== 'http') continue;
    try {
      const h = await startHttpConnection(httpCtx, c as HttpConnectionConfig);
      httpHandles.push(h);
      ready.push({ connection: c.name, port: h.port });
    } catch (err) {
      return listenFailed(c.name, err);
    }
  }

  let draining = false;
  port.on('message', (data: unknown) => {
    const msg = receive<ToWorker>(data);
    switch (msg.t) {
      case 'auth-result':
        ctx.onAuthResult(msg.id, msg.result);
        break;
      case 'tls':
        try {
          ctx.rotateServerCertificate(Buffer.from(msg.cert), Buffer.from(msg.key));
          ctx.log('info', 'server certificate rotated');
          // uWS takes file names: the primary has just re-read these paths.
          for (const h of httpHandles) {
            try {
              h.rotateCertificate(init.config.server.tls.cert, init.config.server.tls.key);
            } catch (err) {
              ctx.log('error', 'http listener kept its current certificate', { error: (err as Error).message });
            }
          }
        } catch (err) {
          ctx.log('error', 'new certificate not usable; keeping the current one', { error: (err as Error).message });
        }
        break;
      case 'record-ack':
        ctx.onRecordAck(msg.batch, msg.ok, msg.message);
        break;
      case 'policy': {
        ctx.clearAuthCache();
        ctx.upstreamPool.clear(); // credentials may have changed with the config
        ctx.transactionPool.dropIdle();
        const policy = compilePolicy(msg.policies);
        for (const s of [...ctx.sessions]) s.revokeIfDenied(policy);
        break;
      }
      case 'drain': {
        if (draining) break;
        draining = true;
        ctx.upstreamPool.clear(true);
        ctx.transactionPool.clear();
        for (const l of listeners) l.close();
        for (const h of httpHandles) h.close();
        const deadline = Date.now() + msg.deadlineMs;
        const shutDown = new WeakSet<object>();
        const check = () => {
          const now = Date.now();
          if (ctx.liveSessions > 0 && now >= deadline) {
            // Sessions ended here report their end (summary and session-close record) from the
            // pump-end callback, on a later turn: the worker waits for those, up to the grace,
            // so their records reach the recorder before it seals. A session that started
            // pumping after the deadline is ended on the next look.
            for (const s of [...ctx.sessions]) {
              if (shutDown.has(s)) continue;
              shutDown.add(s);
              s.shutdown('vecgate is shutting down; reconnect to another replica');
            }
          }
          if (ctx.liveSessions <= 0 || now >= deadline + DRAIN_SHUTDOWN_GRACE_MS) {
            if (ctx.liveSessions > 0) ctx.log('warn', 'drain: sessions still open after the grace; their close records are missing', { sessions: ctx.liveSessions });
            for (const h of httpHandles) h.closeAll();
            ctx.cancelLimiter.flushReport();
            ctx.flushRecords(); // batched recording events go before the 'drained' report
            sendHttpStats();
            if (httpStatsTimer) clearInterval(httpStatsTimer);
            send(port, { t: 'drained', worker: init.index, sessionsLeft: Math.max(0, ctx.liveSessions) });
            port.close();
            return;
          }
          setTimeout(check, now >= deadline ? DRAIN_POLL_MS : Math.min(100, deadline - now)).unref();
        };
        check();
        break;
      }
      case 'pools?':
        ctx.postPools(msg.id);
        break;
      case 'cancel-route':
        ctx.cancelPooledSession(msg.slot, msg.secret).finally(() => ctx.post({ t: 'cancel-done', to: msg.from, id: msg.id }));
        break;
      case 'cancel-done':
        ctx.cancelRouted(msg.id);
        break;
      case 'stats?': {
        const s = binding.stats();
        send(port, { t: 'stats', worker: init.index, liveSessions: s.liveSessions, liveConnections: s.liveConnections, bytesPumped: s.bytesPumped });
        break;
      }
    }
  });
  send(port, { t: 'ready', worker: init.index, listeners: ready });
}

void main();
