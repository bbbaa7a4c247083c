// What a worker's sessions share: the native binding, the current TLS contexts, limits,
// the cancel key, and the channel to the primary (authorization with a local cache, logs,
// session summaries).
import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { MessagePort } from 'node:worker_threads';
import type { NativeBinding, TlsContext } from '../src/native.js';
import type { AccessLevel, PostgresConnectionConfig, ServerLimits, VecgateConfig } from '../src/config/types.js';
import type { CompiledPolicy } from '../src/policy/policy.js';
import { encodeEvent } from '../src/recording/encode-event.js';
import { setSensitiveSettings } from '../src/recording/redact-event.js';
import type { RecordEvent } from '../src/recording/record-event.js';
import { RecordBatchWriter } from '../src/recording/record-batch.js';
import { renderForNativeRecording, type PendingStatementSweep, type PgStatementRecorder } from './pg-statement-recorder.js';
import { PgUpstreamPool } from './pg-upstream-pool.js';
import { PgTransactionPool } from './pg-transaction-pool.js';
import { SESSION_SLOT_BITS } from './pg/cancel-key.js';
import { CancelLimiter } from './pg/cancel-limiter.js';
import { send, type AuthClientInfo, type AuthResult, type SessionSummary, type ToPrimary } from './messages.js';

/** Decisions cached per worker, so most connections never wait on the primary. */
export const AUTH_CACHE_MAX_ENTRIES = 10_000;
/** A cached decision is re-checked with the primary at least this often (policy reloads). */
export const AUTH_CACHE_MAX_AGE_MS = 60_000;
/** Refusals are cached briefly so a flood of one bad token does not flood the primary. */
export const AUTH_REFUSAL_CACHE_MS = 5_000;
/** Recording events not waited on are sent to the primary at most this late... */
export const RECORD_BATCH_MS = 5;
/** ...or as soon as this many are queued. */
export const RECORD_BATCH_MAX_EVENTS = 256;
/**
 * How often statement events recorded in C++ (sessions with `nativeRecord`, async durability)
 * are taken and sent: the window of records an `async` gateway can lose when it dies (as
 * PostgreSQL's wal_writer_delay, 200 ms, is for its asynchronous commit). Each batch costs the
 * primary ~0.3 ms however small it is (a wake-up, a message, a drain and a write): at 50 ms
 * that was half of what `queries` recording cost the primary at 8,000 statements/s.
 */
export const NATIVE_RECORD_POLL_MS = 200;
/** A statement whose result has not come this long after it began is recorded without it (the result follows as its own event). */
export const RECORD_PENDING_STATEMENT_MS = 250;
/** Parked-upstream counts go to the primary at most this often (after a change), for /metrics. */
export const POOL_STATS_FLUSH_MS = 1_000;
/** Cancel-key slots of pooled sessions per worker (workers/pg/cancel-key.ts SESSION_SLOT_BITS). */
const SESSION_SLOTS = 2 ** SESSION_SLOT_BITS;
/** Largest password message (the access token) accepted from a client. */
export const MAX_PASSWORD_MESSAGE_BYTES = 16 * 1024;

export interface WorkerLimits extends ServerLimits {
  maxPasswordMessageBytes: number;
}

const LOG_RANK: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: 100 };

interface CacheEntry {
  result: AuthResult;
  until: number;
}

export class WorkerContext implements PendingStatementSweep {
  readonly limits: WorkerLimits;
  private serverCtx: TlsContext;
  private upstreamCtx = new Map<string, TlsContext>();
  private authCache = new Map<string, CacheEntry>();
  private pendingAuth = new Map<number, (r: AuthResult) => void>();
  private nextAuthId = 1;
  /** Bumped by clearAuthCache(): answers to requests sent before it are not cached. */
  private authGeneration = 0;
  liveSessions = 0;
  /** Idle upstream connections parked for reuse (upstream.pool). */
  readonly upstreamPool = new PgUpstreamPool(this);
  /** Server links shared by `upstream.pool.mode: transaction` sessions between their transactions. */
  readonly transactionPool = new PgTransactionPool(this);
  /** Bounds the upstream connections unauthenticated CancelRequests cost this worker. */
  readonly cancelLimiter: CancelLimiter;
  /** Pumped sessions, so a policy change or a drain deadline can end them. */
  readonly sessions = new Set<{ revokeIfDenied(policy: CompiledPolicy): void; shutdown(message: string): void }>();

  private readonly minLogRank: number;

  constructor(
    readonly native: NativeBinding,
    readonly index: number,
    logLevel: string,
    readonly config: VecgateConfig,
    readonly cancelKey: Buffer,
    private readonly port: MessagePort,
    cert: Buffer,
    key: Buffer,
  ) {
    this.limits = { ...config.server.limits, maxPasswordMessageBytes: MAX_PASSWORD_MESSAGE_BYTES };
    this.minLogRank = LOG_RANK[logLevel] ?? LOG_RANK.info!;
    // Events are redacted here, before they leave the worker (encode-event.ts).
    setSensitiveSettings(config.recordings.redactSettings);
    // ...and so are the strings C++ recording cannot judge itself.
    this.native.setRecordRenderer(renderForNativeRecording);
    this.serverCtx = this.buildServerContext(cert, key);
    const l = config.server.limits;
    this.cancelLimiter = new CancelLimiter({ ratePerSec: l.cancelRatePerSec, burst: l.cancelBurst, maxConcurrent: l.maxConcurrentCancels }, (dropped) =>
      this.log('info', 'cancel requests dropped (closed without forwarding)', { dropped }),
    );
  }

  private buildServerContext(cert: Buffer, key: Buffer): TlsContext {
    return this.native.createServerContext({ cert, key, profile: this.config.server.tls.profile, alpn: ['postgresql'] });
  }

  serverContext(): TlsContext {
    return this.serverCtx;
  }

  /** New handshakes use the new certificate; live sessions keep theirs. Throws when the pair is unusable. */
  rotateServerCertificate(cert: Buffer, key: Buffer): void {
    this.serverCtx = this.buildServerContext(cert, key);
  }

  upstreamContext(cfg: PostgresConnectionConfig): TlsContext {
    let ctx = this.upstreamCtx.get(cfg.name);
    if (!ctx) {
      const ca = cfg.upstream.tls.ca ? readFileSync(cfg.upstream.tls.ca) : rootCertificates.join('\n');
      ctx = this.native.createClientContext({ ca, profile: 'intermediate' });
      this.upstreamCtx.set(cfg.name, ctx);
    }
    return ctx;
  }

  /** The cached decision for this token on this connection, or null (none, or expired). */
  cachedAuthorization(token: string, connection: string): AuthResult | null {
    return this.cachedDecision(authCacheKey(token, connection), Date.now());
  }

  /** The decision cached under `key` if it is still good at `now`; an expired one is dropped. */
  private cachedDecision(key: string, now: number): AuthResult | null {
    const hit = this.authCache.get(key);
    if (!hit) return null;
    if (hit.until > now) return hit.result;
    this.authCache.delete(key);
    return null;
  }

  authorize(token: string, connection: string, client: AuthClientInfo): Promise<AuthResult> {
    const key = authCacheKey(token, connection);
    const now = Date.now();
    const hit = this.cachedDecision(key, now);
    if (hit) return Promise.resolve(hit);
    const generation = this.authGeneration;
    return new Promise<AuthResult>((resolve) => {
      const id = this.nextAuthId++;
      this.pendingAuth.set(id, (result) => {
        // Asked before a reload cleared the cache: good for this request, not kept (its
        // credential may be the one the reload replaced).
        if (generation !== this.authGeneration) return resolve(result);
        const until = result.ok ? Math.min(result.expiresAt, now + AUTH_CACHE_MAX_AGE_MS) : now + AUTH_REFUSAL_CACHE_MS;
        if (this.authCache.size >= AUTH_CACHE_MAX_ENTRIES) {
          const oldest = this.authCache.keys().next().value;
          if (oldest !== undefined) this.authCache.delete(oldest);
        }
        this.authCache.set(key, { result, until });
        resolve(result);
      });
      this.post({ t: 'auth', id, token, connection, client });
    });
  }

  onAuthResult(id: number, result: AuthResult): void {
    const cb = this.pendingAuth.get(id);
    if (!cb) return;
    this.pendingAuth.delete(id);
    // A granted decision may not outlive its token.
    if (result.ok && result.expiresAt <= Date.now()) {
      cb({ ok: false, code: 'ERR_VG_TOKEN_EXPIRED', sqlstate: '28P01', message: 'token expired; get a fresh one with `vecgate token`' });
      return;
    }
    cb(result);
  }

  /** After a config reload: decisions (and the credentials they carry) are asked for again. */
  clearAuthCache(): void {
    this.authCache.clear();
    this.authGeneration++;
  }

  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
    if (LOG_RANK[level]! < this.minLogRank) return;
    this.post({ t: 'log', level, msg, fields: { worker: this.index, ...fields } });
  }

  sessionStarted(connection: string, access: AccessLevel): void {
    this.liveSessions++;
    this.post({ t: 'session-start', connection, access });
  }

  refused(connection: string, code: string): void {
    this.post({ t: 'refusal', connection, code });
  }

  sessionEnded(): void {
    this.liveSessions--;
  }

  private poolStatsTimer: NodeJS.Timeout | null = null;

  /** The upstream pool changed: its counts go to the primary within POOL_STATS_FLUSH_MS, in one message. */
  poolChanged(): void {
    if (this.poolStatsTimer !== null) return;
    this.poolStatsTimer = setTimeout(() => {
      this.poolStatsTimer = null;
      this.post({ t: 'pg-pool-stats', worker: this.index, rows: this.upstreamPool.stats() });
    }, POOL_STATS_FLUSH_MS);
    this.poolStatsTimer.unref();
  }

  /**
   * Transaction-pooling sessions of this worker by their cancel-key slot (workers/pg/cancel-key.ts
   * sessionKeyPid): the key's secret, and how to cancel what the session runs now.
   */
  private readonly pooledSessions = new Map<number, { secret: number; cancel: () => Promise<void> }>();
  private nextSlot = 0;
  private readonly routedCancels = new Map<number, { done: () => void; timer: NodeJS.Timeout }>();
  private nextRoutedCancel = 1;

  /** A slot for a pooled session's cancel key, or null when all are taken; its secret follows (setPooledSessionSecret). */
  registerPooledSession(cancel: () => Promise<void>): number | null {
    if (this.pooledSessions.size >= SESSION_SLOTS) return null;
    while (this.pooledSessions.has(this.nextSlot)) this.nextSlot = (this.nextSlot + 1) % SESSION_SLOTS;
    const slot = this.nextSlot;
    this.nextSlot = (this.nextSlot + 1) % SESSION_SLOTS;
    this.pooledSessions.set(slot, { secret: -1, cancel }); // -1: no key has it (secrets are uint32)
    return slot;
  }

  setPooledSessionSecret(slot: number, secret: number): void {
    const s = this.pooledSessions.get(slot);
    if (s !== undefined) s.secret = secret;
  }

  unregisterPooledSession(slot: number): void {
    this.pooledSessions.delete(slot);
  }

  /** A CancelRequest for a pooled session of this worker: forwarded to its current backend, if it has one. */
  cancelPooledSession(slot: number, secret: number): Promise<void> {
    const s = this.pooledSessions.get(slot);
    if (s === undefined || s.secret !== secret) return Promise.resolve();
    return s.cancel().catch(() => {});
  }

  /** A CancelRequest for a pooled session of another worker: relayed through the primary; resolves when that worker is done (or after 10 s). */
  routeCancel(worker: number, slot: number, secret: number): Promise<void> {
    const id = this.nextRoutedCancel++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.routedCancels.delete(id);
        resolve();
      }, 10_000);
      this.routedCancels.set(id, { done: resolve, timer });
      this.post({ t: 'cancel-route', from: this.index, to: worker, id, slot, secret });
    });
  }

  cancelRouted(id: number): void {
    const r = this.routedCancels.get(id);
    if (r === undefined) return;
    this.routedCancels.delete(id);
    clearTimeout(r.timer);
    r.done();
  }

  private txPoolStatsTimer: NodeJS.Timeout | null = null;

  /** The transaction pool changed: its counts go to the primary within POOL_STATS_FLUSH_MS, in one message. */
  transactionPoolChanged(): void {
    if (this.txPoolStatsTimer !== null) return;
    this.txPoolStatsTimer = setTimeout(() => {
      this.txPoolStatsTimer = null;
      this.post({ t: 'pg-txpool-stats', worker: this.index, rows: this.transactionPool.stats() });
    }, POOL_STATS_FLUSH_MS);
    this.txPoolStatsTimer.unref();
  }

  /** /pools asked (`pools?`): this worker's pools as they are now, answered at once. */
  postPools(id: number): void {
    this.post({ t: 'pools', worker: this.index, id, pools: { transaction: this.transactionPool.snapshot(), parked: this.upstreamPool.parkedByGroup() } });
  }

  sessionSummary(summary: SessionSummary): void {
    this.post({ t: 'session-end', summary });
  }

  /**
   * Recording entries in order, with their strict-mode acks (null: none): events (encoded
   * when the batch goes) and record batches taken from C++ (`takeRecords`).
   */
  private pendingEvents: (RecordEvent | Buffer)[] = [];
  private pendingEventAcks: (((ok: boolean, message: string) => void) | null)[] = [];
  private recordTimer: NodeJS.Timeout | null = null;
  private recordImmediate: NodeJS.Immediate | null = null;
  private nextBatch = 1;
  private awaitingAck = new Map<number, ((ok: boolean, message: string) => void)[]>();
  /** Sessions whose statements are recorded in C++, and the timer that collects their events. */
  private nativeRecordingSessions = 0;
  private nativePoll: NodeJS.Timeout | null = null;

  /**
   * Queues a recording event for the primary's recorder. `onDurable` (strict mode: a held
   * statement) runs once its batch is on disk; such batches go at the end of this loop turn.
   * Other events are batched for up to RECORD_BATCH_MS, so a busy session does not cost one
   * message between threads per event. Events are encoded (and redacted) when their batch
   * goes, not here: this runs between the upstream's answer and the client.
   */
  record(event: RecordEvent, onDurable?: (ok: boolean, message: string) => void): void {
    // What C++ recorded so far comes first: a session's close follows its last statement.
    if (this.nativeRecordingSessions > 0) this.takeNativeRecords();
    this.pendingEvents.push(event);
    this.pendingEventAcks.push(onDurable ?? null);
    this.scheduleRecords(onDurable !== undefined);
  }

  private scheduleRecords(now: boolean): void {
    if (this.recordImmediate) return;
    if (now || this.pendingEvents.length >= RECORD_BATCH_MAX_EVENTS) {
      if (this.recordTimer) clearTimeout(this.recordTimer);
      this.recordTimer = null;
      this.recordImmediate = setImmediate(() => this.sendRecords());
    } else if (!this.recordTimer) {
      this.recordTimer = setTimeout(() => this.sendRecords(), RECORD_BATCH_MS);
    }
  }

  /** A session records its statements in C++ (pump option `nativeRecord`) from now until nativeRecordingEnded(). */
  nativeRecordingStarted(): void {
    if (this.nativeRecordingSessions++ > 0) return;
    this.nativePoll = setInterval(() => {
      this.takeNativeRecords(Date.now() - RECORD_PENDING_STATEMENT_MS);
      if (this.pendingEvents.length > 0 && !this.recordImmediate) this.sendRecords();
    }, NATIVE_RECORD_POLL_MS);
    this.nativePoll.unref();
  }

  nativeRecordingEnded(): void {
    if (--this.nativeRecordingSessions > 0) return;
    this.takeNativeRecords();
    if (this.nativePoll) clearInterval(this.nativePoll);
    this.nativePoll = null;
  }

  /** Moves what C++ recorded into the queue; `sweepBefore`: statements waiting for their result since then are recorded without it. */
  private takeNativeRecords(sweepBefore?: number): void {
    const batch = this.native.takeRecords(sweepBefore);
    if (batch === null) return;
    this.pendingEvents.push(batch);
    this.pendingEventAcks.push(null);
    this.scheduleRecords(false);
  }

  private parked = new Set<PgStatementRecorder>();
  private sweepTimer: NodeJS.Timeout | null = null;

  /** A session's statement waits for its result (PgStatementRecorder); swept if it waits too long. */
  hold(r: PgStatementRecorder): void {
    this.parked.add(r);
    if (this.sweepTimer === null) {
      this.sweepTimer = setInterval(() => this.sweepParked(Date.now() - RECORD_PENDING_STATEMENT_MS), RECORD_PENDING_STATEMENT_MS);
      this.sweepTimer.unref();
    }
  }

  release(r: PgStatementRecorder): void {
    this.parked.delete(r);
  }

  /** Records every statement parked before `before` on its own. */
  private sweepParked(before: number): void {
    for (const r of this.parked) if (r.pendingSince <= before) r.flushPending();
    if (this.parked.size === 0 && this.sweepTimer !== null) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
    }
  }

  /** Sends queued recording events now (before the worker reports itself drained), parked statements too. */
  flushRecords(): void {
    if (this.parked.size > 0) this.sweepParked(Infinity);
    this.takeNativeRecords(Infinity);
    this.sendRecords();
  }

  /** Sends the queued entries as one record batch. */
  private sendRecords(): void {
    if (this.recordTimer) clearTimeout(this.recordTimer);
    if (this.recordImmediate) clearImmediate(this.recordImmediate);
    this.recordTimer = null;
    this.recordImmediate = null;
    if (this.pendingEvents.length === 0) return;
    const entries = this.pendingEvents;
    const entryAcks = this.pendingEventAcks;
    this.pendingEvents = [];
    this.pendingEventAcks = [];
    const batch = new RecordBatchWriter();
    const acks: ((ok: boolean, message: string) => void)[] = [];
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      const ack = entryAcks[i]!;
      if (entry instanceof Uint8Array) {
        batch.appendBatch(entry);
        continue;
      }
      try {
        batch.add(entry.connection, encodeEvent(entry));
      } catch (err) {
        // Not recordable (malformed or oversized): said loudly; a statement waiting on it is refused.
        const message = (err as Error).message;
        this.log('error', 'recording failed', { connection: entry.connection, error: message });
        if (ack) queueMicrotask(() => ack(false, message));
        continue;
      }
      if (ack) acks.push(ack);
    }
    if (batch.byteLength === 0) return;
    let ack: number | null = null;
    if (acks.length) {
      ack = this.nextBatch++;
      this.awaitingAck.set(ack, acks);
    }
    this.post({ t: 'record', batch: batch.take(), ack });
  }

  onRecordAck(batch: number, ok: boolean, message: string): void {
    const acks = this.awaitingAck.get(batch);
    this.awaitingAck.delete(batch);
    for (const a of acks ?? []) a(ok, message);
  }

  post(msg: ToPrimary): void {
    send(this.port, msg);
  }
}

/**
 * The auth cache's key: the connection and a one-shot digest of the token (no Hash object per
 * request; the cache never holds raw tokens). The token is hashed on its own, not joined to the
 * connection first: the string uWS gives is flat, and a joined one would be copied per request.
 */
function authCacheKey(token: string, connection: string): string {
  return `${connection}\0${hash('sha256', token, 'base64')}`;
}
