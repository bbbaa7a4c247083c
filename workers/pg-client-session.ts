// One PostgreSQL client session in a worker: TLS negotiation (SSLRequest or PG 17 direct
// TLS), startup, token in the password message, authorization by the primary, the verified
// upstream leg with injected credentials, then the native pump. JavaScript runs only here,
// in the setup phase; after `pump()` the bytes never come back to JS.
import type { Connection, PumpOptions, PumpStats, TlsInfo } from '../src/native.js';
import type { PostgresConnectionConfig } from '../src/config/types.js';
import type { AuthGranted, SessionSummary } from './messages.js';
import { parseStartupPacket } from './pg/startup-parser.js';
import { MessageReader } from './pg/message-reader.js';
import { parseBackendMessage, parsePasswordMessage } from './pg/backend-parser.js';
import * as ser from './pg/serializer.js';
import { encodeCancelKey, decodeAnyCancelKey, MAX_CANCEL_ROUTED_WORKERS, newSessionCancelKey, sessionOfKeyPid } from './pg/cancel-key.js';
import { UpstreamSetup, type UpstreamReady } from './pg-upstream-setup.js';
import { randomUUID } from 'node:crypto';
import type { WorkerContext } from './worker-context.js';
import { accessRank, type CompiledPolicy } from '../src/policy/policy.js';
import { captureSpec, PgStatementRecorder } from './pg-statement-recorder.js';
import { PgUpstreamPool } from './pg-upstream-pool.js';
import { PgTransactionPool } from './pg-transaction-pool.js';
import { ReadStatementCheck, type StatementRefusal } from './pg/read-statement-check.js';
import { upstreamStartupParameters } from './pg/startup-parameters.js';
import { isReadableClientEncoding } from '../src/policy/session-settings.js';

type State = 'initial' | 'tls-handshake' | 'startup' | 'password' | 'authorizing' | 'upstream' | 'pumping' | 'closed';

export class PgClientSession {
  private state: State = 'initial';
  private pending: Buffer = Buffer.alloc(0);
  private reader: MessageReader | null = null;
  private timer: NodeJS.Timeout | null = null;
  private params = new Map<string, string>();
  private clientTls: TlsInfo | null = null;
  private startedAt = Date.now();
  private grant: AuthGranted | null = null;
  private upstream: UpstreamSetup | null = null;
  private clientEarly: Buffer[] = [];
  private clientEarlyBytes = 0;
  private client = '';
  private readonly sessionId = randomUUID();
  private nextHold = 1;
  /** Where this session's upstream is parked for reuse when it ends idle (null: reuse off). */
  private poolKey: string | null = null;
  /** The upstream database the client asked for (upstream.database, or one of upstream.databases). */
  private database = '';
  /** upstream.pool.mode transaction: the key of this session's links, how to open one, and a wait to withdraw. */
  private txKey: string | null = null;
  private openLink: (() => Promise<UpstreamReady>) | null = null;
  private withdrawWait: (() => void) | null = null;
  /** Transaction mode: the link held now (null between transactions), and the session's cancel-key slot. */
  private currentLink: UpstreamReady | null = null;
  private cancelSlot: number | null = null;
  private cancelsInFlight = 0;

  constructor(
    private readonly conn: Connection,
    private readonly ctx: WorkerContext,
    private readonly cfg: PostgresConnectionConfig,
  ) {}

  start(): void {
    this.client = `${this.conn.remoteAddress}:${this.conn.remotePort}`;
    this.conn.setCallbacks(
      (chunk) => this.onData(chunk),
      (reason, detail) => this.onClientClosed(reason, detail),
    );
    this.arm(this.ctx.limits.handshakeTimeoutMs, 'TLS handshake not completed in time');
  }

  private arm(ms: number, why: string): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.ctx.log('info', 'session timed out during setup', { connection: this.cfg.name, state: this.state, why, client: this.clientLabel() });
      this.abort();
    }, ms);
    this.timer.unref();
  }

  private clientLabel(): string {
    return this.client;
  }

  private onData(chunk: Buffer): void {
    switch (this.state) {
      case 'initial':
        return this.onInitial(chunk);
      case 'startup':
        return this.onStartup(chunk);
      case 'password':
        return this.onPassword(chunk);
      case 'authorizing':
      case 'upstream':
        // PostgreSQL reads messages pipelined after the password once authentication is done:
        // keep them for the pump, which reads them like any later bytes (inspection included).
        return this.keepEarly(chunk);
      default:
        return;
    }
  }

  private keepEarly(chunk: Buffer): void {
    this.clientEarly.push(Buffer.from(chunk));
    this.clientEarlyBytes += chunk.length;
    if (this.clientEarlyBytes > this.ctx.limits.maxStartupPacketBytes) {
      this.fatal('08P01', `protocol violation: more than ${this.ctx.limits.maxStartupPacketBytes} bytes sent before authentication completed`);
    }
  }

  private onInitial(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const r = parseStartupPacket(this.pending, { maxStartupPacketBytes: this.ctx.limits.maxStartupPacketBytes });
    if (r.status === 'need-more') return;
    if (r.status === 'error') {
      this.ctx.log('info', 'bad first packet', { connection: this.cfg.name, client: this.clientLabel(), error: r.message });
      // Like PostgreSQL: a packet whose length is not a startup packet's gets no answer.
      if (r.silent) return this.abort();
      return this.fatal('08P01', `invalid startup packet: ${r.message}`);
    }
    const p = r.packet;
    const rest = this.pending.subarray(r.consumed);
    switch (p.kind) {
      case 'ssl-request': {
        if (rest.length > 0) {
          // CVE-2021-23214 class: bytes sent before the TLS handshake must never be read as TLS data.
          return this.fatal('08P01', 'received unencrypted data after SSLRequest; refusing the connection');
        }
        this.pending = Buffer.alloc(0);
        this.conn.write(Buffer.from('S'));
        return this.beginTls(null);
      }
      case 'direct-tls': {
        const initial = this.pending;
        this.pending = Buffer.alloc(0);
        return this.beginTls(initial);
      }
      case 'gssenc-request': {
        this.pending = Buffer.from(rest);
        this.conn.write(Buffer.from('N'));
        if (this.pending.length) this.onInitial(Buffer.alloc(0));
        return;
      }
      case 'cancel':
        this.pending = Buffer.alloc(0);
        return this.onCancel(p.processId, p.secretKey);
      case 'startup':
        this.ctx.log('info', 'plaintext startup refused', { connection: this.cfg.name, client: this.clientLabel() });
        return this.fatal(
          '28000',
          'vecgate accepts only TLS connections: connect with sslmode=verify-full (or require) and the gateway CA as sslrootcert',
        );
    }
  }

  private beginTls(initial: Buffer | null): void {
    this.state = 'tls-handshake';
    const direct = initial !== null;
    this.conn.startTls(this.ctx.serverContext(), null, ['postgresql'], (err, info) => {
      if (err || !info) {
        this.ctx.log('info', 'client TLS handshake failed', { connection: this.cfg.name, client: this.clientLabel(), error: err?.message });
        this.state = 'closed';
        return;
      }
      if (direct && info.alpn !== 'postgresql') {
        // PG 17 direct TLS is only valid with ALPN "postgresql" (protects against cross-protocol attacks).
        this.ctx.log('info', 'direct TLS without ALPN postgresql refused', { connection: this.cfg.name, client: this.clientLabel() });
        return this.abort();
      }
      this.clientTls = info;
      this.state = 'startup';
      this.arm(this.ctx.limits.authTimeoutMs, 'authentication not completed in time');
    }, initial ?? undefined);
  }

  private onStartup(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const r = parseStartupPacket(this.pending, { maxStartupPacketBytes: this.ctx.limits.maxStartupPacketBytes });
    if (r.status === 'need-more') return;
    if (r.status === 'error') {
      if (r.silent) return this.abort();
      return this.fatal('08P01', `invalid startup packet: ${r.message}`);
    }
    const p = r.packet;
    const rest = this.pending.subarray(r.consumed);
    this.pending = Buffer.alloc(0);
    if (p.kind === 'cancel') return this.onCancel(p.processId, p.secretKey);
    if (p.kind !== 'startup') return this.fatal('08P01', `unexpected ${p.kind} after TLS was established`);
    for (const [k, v] of p.params) this.params.set(k, v);
    if (this.params.has('replication')) {
      return this.fatal('28000', 'replication connections are not supported through vecgate');
    }
    const db = this.params.get('database') ?? this.params.get('user') ?? '';
    const others = this.cfg.upstream.databases ?? [];
    if (db === this.cfg.name || db === this.cfg.upstream.database) {
      this.database = this.cfg.upstream.database;
    } else if (others.includes(db)) {
      this.database = db;
    } else {
      const served = [this.cfg.name, ...others].map((d) => `dbname=${d}`).join(', ');
      return this.fatal('3D000', `database "${db}" is not served on this port: use ${served}`);
    }
    this.state = 'password';
    this.reader = new MessageReader(this.ctx.limits.maxPasswordMessageBytes);
    this.conn.write(ser.authenticationCleartextPassword());
    if (rest.length) this.onPassword(Buffer.alloc(0), rest);
  }

  private onPassword(chunk: Buffer, extra?: Buffer): void {
    const reader = this.reader!;
    if (extra) reader.push(extra);
    if (chunk.length) reader.push(chunk);
    const m = reader.next();
    if (m.status === 'need-more') return;
    if (m.status === 'error') return this.fatal('08P01', `invalid password message: ${m.message}`);
    if (m.type !== 0x70 /* 'p' */) return this.fatal('08P01', 'expected a password message');
    const pw = parsePasswordMessage(m.body);
    if (pw.kind !== 'password') return this.fatal('08P01', 'invalid password message');
    const token = pw.password.trim();
    if (!token) {
      return this.fatal('28P01', 'no access token: set the password to an access token, e.g. PGPASSWORD=$(vecgate token)');
    }
    if (reader.pending() > 0) this.keepEarly(reader.takeRest());
    this.reader = null;
    if (this.state === 'closed') return;
    this.state = 'authorizing';
    this.ctx
      .authorize(token, this.cfg.name, {
        address: this.conn.remoteAddress,
        port: this.conn.remotePort,
        user: this.params.get('user') ?? '',
        applicationName: this.params.get('application_name') ?? '',
      })
      .then((result) => {
        if (this.state !== 'authorizing') return;
        if (!result.ok) {
          this.ctx.log('info', 'session refused', {
            connection: this.cfg.name,
            client: this.clientLabel(),
            code: result.code,
            reason: result.message,
          });
          this.ctx.refused(this.cfg.name, result.code);
          if (this.cfg.recording !== 'off') {
            this.ctx.record({ type: 'refusal', ts: Date.now(), session: this.sessionId, connection: this.cfg.name, client: this.clientLabel(), stage: 'authorization', code: result.code, sqlstate: result.sqlstate, reason: result.message });
          }
          return this.fatal(result.sqlstate, result.message);
        }
        this.grant = result;
        this.connectUpstream();
      })
      .catch((err: Error) => {
        this.ctx.log('error', 'authorization failed', { connection: this.cfg.name, error: err.message });
        this.fatal('08006', 'the gateway could not check your token right now; try again');
      });
  }

  private connectUpstream(): void {
    this.state = 'upstream';
    this.arm(this.ctx.limits.upstreamConnectTimeoutMs, 'upstream connection not established in time');
    const grant = this.grant!;
    const startup = upstreamStartupParameters(this.params, grant.access);
    if (!startup.ok) {
      this.ctx.log('info', 'startup parameter refused', { connection: this.cfg.name, client: this.clientLabel(), subject: grant.subject, reason: startup.message });
      return this.fatal(startup.sqlstate, startup.message);
    }
    const params = startup.params;
    if (this.cfg.upstream.pool.mode === 'transaction') {
      // Between transactions the session holds no upstream: it starts on a pooled link (one
      // its key shares with other sessions) and gives it back as soon as it is idle.
      const credential = grant.credential;
      const database = this.database;
      // The pool's wait (then 53300) comes before the setup deadline, not after it.
      this.arm(this.ctx.limits.upstreamConnectTimeoutMs + this.cfg.upstream.pool.waitTimeoutMs, 'no upstream connection in time');
      this.txKey = PgTransactionPool.key(this.cfg.name, credential.user, database, params);
      this.openLink = () => new UpstreamSetup(this.ctx, this.cfg, credential, params, database).run();
      this.withdrawWait = this.ctx.transactionPool.acquire(this.txKey, this.cfg.name, this.cfg.upstream.pool, this.openLink, {
        give: (ready) => {
          if (this.state !== 'upstream') return false;
          this.withdrawWait = null;
          this.onUpstreamReady(ready, false);
          return true;
        },
        fail: (message, sqlstate) => {
          this.withdrawWait = null;
          if (this.state !== 'upstream') return;
          this.ctx.log('warn', 'pooled session got no upstream connection', { connection: this.cfg.name, subject: grant.subject, sqlstate, error: message });
          this.fatal(sqlstate, message);
        },
      });
      return;
    }
    if (this.cfg.upstream.pool.maxIdle > 0) {
      this.poolKey = PgUpstreamPool.key(this.cfg.name, grant.credential.user, this.database, `${grant.issuer} ${grant.subject}`, params);
      const parked = this.ctx.upstreamPool.take(this.poolKey);
      if (parked !== null) {
        this.onUpstreamReady(parked, true);
        return;
      }
    }
    this.upstream = new UpstreamSetup(this.ctx, this.cfg, grant.credential, params, this.database);
    this.upstream.run().then(
      (ready) => this.onUpstreamReady(ready, false),
      (err: Error & { code?: string; sqlstate?: string; clientMessage?: string }) => {
        if (this.state !== 'upstream') return;
        this.ctx.log('warn', 'upstream setup failed', {
          connection: this.cfg.name,
          code: err.code,
          error: err.message,
          subject: this.grant?.subject,
        });
        this.fatal(err.sqlstate ?? '08006', err.clientMessage ?? 'the gateway could not reach the database; try again later');
      },
    );
  }

  private onUpstreamReady(ready: UpstreamReady, reused: boolean): void {
    if (this.state !== 'upstream') {
      ready.conn.destroy();
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const grant = this.grant!;
    if (grant.access === 'read') {
      // The statement check reads text as UTF-8 with standard_conforming_strings on; a
      // database or role default that makes the server read it otherwise ends it here.
      const unreadable = unreadableReadSetting(ready.parameters);
      if (unreadable) {
        ready.conn.destroy();
        this.ctx.log('info', 'session refused: unreadable session setting', { connection: this.cfg.name, subject: grant.subject, setting: unreadable });
        return this.fatal('0A000', `the database sets ${unreadable} for this session, which the gateway cannot check read-only statements in; ask the operator, or set client_encoding to UTF8`);
      }
    }
    // Transaction mode: the key names this session (worker and slot), not a backend: a link's
    // own key would reach whichever session holds that link when the cancel arrives. A cancel
    // goes to the session's current link (cancelCurrent), from whichever worker it reaches.
    let gatewayKey = null;
    if (this.txKey === null) {
      gatewayKey = ready.backendKey ? encodeCancelKey(this.ctx.cancelKey, ready.backendKey) : null;
    } else if (this.ctx.index < MAX_CANCEL_ROUTED_WORKERS) {
      this.cancelSlot = this.ctx.registerPooledSession(() => this.cancelCurrent());
      if (this.cancelSlot !== null) {
        const k = newSessionCancelKey(this.ctx.cancelKey, this.ctx.index, this.cancelSlot);
        this.ctx.setPooledSessionSecret(this.cancelSlot, k.secret);
        gatewayKey = k.gateway;
      }
    }
    const out: Buffer[] = [ser.authenticationOk()];
    for (const [k, v] of ready.parameters) out.push(ser.parameterStatus(k, v));
    if (gatewayKey) out.push(ser.backendKeyData(gatewayKey.processId, gatewayKey.secretKey));
    out.push(ser.readyForQuery(ready.transactionStatus));
    this.conn.write(Buffer.concat(out));
    if (ready.leftover.length) this.conn.write(ready.leftover);
    this.state = 'pumping';
    const upstreamTls = ready.tls ? `${ready.tls.version} ${ready.tls.cipher}` : 'none (insecure-plaintext)';
    this.ctx.sessionStarted(this.cfg.name, grant.access);
    this.ctx.log('debug', 'session started', {
      connection: this.cfg.name,
      subject: grant.subject,
      username: grant.username,
      access: grant.access,
      client: this.clientLabel(),
      upstreamUser: grant.credential.user,
      database: this.database,
      clientTls: `${this.clientTls?.version} ${this.clientTls?.cipher}`,
      upstreamTls,
      upstreamReused: reused,
    });
    const who = grant.username || grant.subject;
    const recording = this.cfg.recording;
    const base = { session: this.sessionId, connection: this.cfg.name };
    if (recording !== 'off') {
      this.ctx.record({
        type: 'session-open',
        ts: Date.now(),
        ...base,
        subject: grant.subject,
        username: grant.username,
        issuer: grant.issuer,
        groups: grant.groups,
        access: grant.access,
        rules: grant.rules,
        client: this.clientLabel(),
        application: this.params.get('application_name') ?? '',
        clientTls: { version: this.clientTls?.version, cipher: this.clientTls?.cipher },
        upstreamTls: ready.tls ? { version: ready.tls.version, cipher: ready.tls.cipher } : null,
        upstreamUser: grant.credential.user,
        database: this.database,
        upstreamReused: reused,
      });
    }
    const recordStatements = recording === 'queries' || recording === 'full';
    // Strict durability: a statement is forwarded only once its audit record is on disk
    // (group commit across sessions), so nothing a client changed or saw can be missing
    // from the record after a crash.
    const strict = recordStatements && this.ctx.config.recordings.durability === 'strict';
    // Async: a statement's record waits for its result and carries it (one event, not two).
    // Statements cross into JS before they are forwarded only when a verdict is needed (read
    // access) or strict durability holds them; async recording takes them as captures after
    // they are forwarded (nothing in JS between client and upstream), and in `queries` mode
    // C++ turns the captures into events itself (native/statement-recorder.h).
    const statementCaptures = recordStatements && !strict && grant.access !== 'read';
    const nativeStatements = statementCaptures && recording === 'queries';
    const statements = recordStatements && !nativeStatements ? new PgStatementRecorder((e, d) => this.ctx.record(e, d), base, recording, strict ? null : this.ctx) : null;
    const readCheck = grant.access === 'read' ? new ReadStatementCheck(who, this.cfg.name) : null;
    const onStatement =
      grant.access === 'read' || strict
        ? (type: 'Q' | 'P' | 'F', text: string): StatementRefusal | number | null => {
            const refused = readCheck ? readCheck.check(type, text) : null;
            const refusal = refused?.message ?? null;
            if (refusal) this.ctx.log('info', 'statement refused', { connection: this.cfg.name, subject: grant.subject, refusal });
            if (statements) {
              const protocol = type === 'Q' ? 'simple' : type === 'P' ? 'extended' : 'function-call';
              if (strict && !refusal) {
                const holdId = this.nextHold++;
                statements.statement(protocol, text, refusal, (ok, message) => {
                  if (this.state !== 'pumping') return;
                  if (ok) {
                    this.ctx.native.releaseStatement(this.conn, holdId);
                    return;
                  }
                  this.ctx.log('error', 'statement refused: its audit record could not be written', { connection: this.cfg.name, error: message });
                  this.ctx.native.endPump(this.conn, 'recording-failed', ser.errorResponse({ severity: 'FATAL', code: '58030', message: 'the audit recorder cannot write; statements are refused until it can (fail closed)' }));
                });
                return holdId;
              }
              statements.statement(protocol, text, refusal);
            } else if (refused && recording !== 'off') {
              this.ctx.record({ type: 'refusal', ts: Date.now(), ...base, stage: 'statement', sqlstate: refused.sqlstate, reason: refused.message });
            }
            return refused;
          }
        : undefined;
    this.ctx.sessions.add(this);
    // Counted before the pump starts: a pump can end inside pump() (a leg already closed).
    if (nativeStatements) this.ctx.nativeRecordingStarted();
    try {
      this.startPump(ready, grant, { base, recording, statements, nativeStatements, statementCaptures }, onStatement, upstreamTls);
    } catch (err) {
      if (nativeStatements) this.ctx.nativeRecordingEnded();
      throw err;
    }
  }

  private startPump(ready: UpstreamReady, grant: AuthGranted, rec: SessionRecording, onStatement: PumpOptions['onStatement'], upstreamTls: string): void {
    const { base, recording, statements, nativeStatements, statementCaptures } = rec;
    const txKey = this.txKey;
    const pool = this.ctx.transactionPool;
    this.currentLink = txKey === null ? null : ready;
    let withdraw: (() => void) | null = null;
    const pooling: Partial<PumpOptions> =
      txKey === null
        ? {}
        : {
            transactionPooling: true,
            preparedStatements: this.cfg.upstream.pool.preparedStatements,
            refusePins: this.cfg.upstream.pool.onPin === 'refuse',
            onUpstreamWanted: () => {
              withdraw = pool.acquire(txKey, this.cfg.name, this.cfg.upstream.pool, this.openLink!, {
                give: (link) => {
                  withdraw = null;
                  if (this.state !== 'pumping') return false;
                  // Set first: the attach reads what waited, which may be answered without the
                  // server (a DEALLOCATE of the client's own names) and release the link at once.
                  this.currentLink = link;
                  if (this.ctx.native.attachUpstream(this.conn, link.conn)) return true;
                  if (this.currentLink === link) this.currentLink = null;
                  return false;
                },
                fail: (message, sqlstate) => {
                  withdraw = null;
                  if (this.state !== 'pumping') return;
                  this.ctx.log('warn', 'pooled session got no upstream connection', { connection: this.cfg.name, subject: grant.subject, sqlstate, error: message });
                  this.ctx.native.endPump(this.conn, 'closed', ser.errorResponse({ severity: 'FATAL', code: sqlstate, message }));
                },
              });
            },
            onUpstreamReleased: (link) => {
              if (this.currentLink?.conn === link) this.currentLink = null;
              if (link.closed) this.ctx.log('warn', 'pooled session lost its upstream connection; what was in flight failed with 08006, the session goes on', { connection: this.cfg.name, subject: grant.subject });
              // After the pump's call returns (microtasks run when it unwinds): another
              // session may take the link at once, and should not do so from inside this one's.
              queueMicrotask(() => pool.release(link));
            },
          };
    this.ctx.native.pump(this.conn, ready.conn, {
      protocol: 'pg',
      highWaterBytes: this.ctx.limits.pumpHighWaterBytes,
      reuseUpstream: this.poolKey !== null,
      ...pooling,
      onStatement,
      earlyClientBytes: this.takeEarly(),
      ...(nativeStatements ? { capture: captureSpec('queries', true), nativeRecord: base } : {}),
      ...(statements ? { capture: statements.capture(statementCaptures), onCapture: (fromClient: boolean, type: string, body: Buffer, length: number) => statements.onCapture(fromClient, type, body, length) } : {}),
      expiresInMs: Math.max(0, grant.expiresAt - Date.now()),
      expiryMessage: `your access token expired at ${new Date(grant.expiresAt).toISOString()}; reconnect with a fresh token (e.g. PGPASSWORD=$(vecgate token))`,
    }, (stats: PumpStats) => {
      this.state = 'closed';
      // The client left an idle session: the upstream is reset and parked for the next one.
      if (stats.upstreamKept && this.poolKey !== null) this.ctx.upstreamPool.give(this.poolKey, ready, this.cfg.upstream.pool);
      if (txKey !== null) {
        (withdraw as (() => void) | null)?.();
        if (this.cancelSlot !== null) this.ctx.unregisterPooledSession(this.cancelSlot);
        const kept = stats.upstreamKept ? (stats.upstream ?? null) : null;
        if (kept !== null && stats.pinReason === '') {
          pool.release(kept);
        } else {
          // A pinned link carries this session's state; one the pump closed is gone.
          const gone = kept ?? this.currentLink?.conn ?? null;
          if (gone !== null) {
            pool.forget(gone);
            gone.close();
          }
        }
        if (stats.pinRefusals > 0) this.ctx.log('info', 'statements refused because they would pin the session (upstream.pool.on_pin: refuse)', { connection: this.cfg.name, subject: grant.subject, refused: stats.pinRefusals });
        if (stats.pinReason !== '') {
          pool.pinned(this.cfg.name, stats.pinReason);
          this.ctx.log('debug', 'pooled session was pinned to its upstream', { connection: this.cfg.name, subject: grant.subject, reason: stats.pinReason });
        }
      }
      this.ctx.sessions.delete(this);
      this.ctx.sessionEnded();
      const summary: SessionSummary = {
        connection: this.cfg.name,
        subject: grant.subject,
        access: grant.access,
        client: this.clientLabel(),
        upstreamUser: grant.credential.user,
        clientTls: `${this.clientTls?.version} ${this.clientTls?.cipher}`,
        upstreamTls,
        durationMs: Date.now() - this.startedAt,
        bytesFromClient: stats.bytesFromClient,
        bytesFromUpstream: stats.bytesFromUpstream,
        statements: stats.statements,
        refusedStatements: stats.refusedStatements,
        reason: stats.reason,
        detail: stats.detail,
      };
      this.ctx.sessionSummary(summary);
      // The audit record of the close carries the same summary the operators' log line does.
      statements?.flushPending();
      if (recording !== 'off') this.ctx.record({ type: 'session-close', ts: Date.now(), ...base, ...summary });
      if (nativeStatements) this.ctx.nativeRecordingEnded();
    });
  }

  /**
   * Transaction mode: a CancelRequest for this session goes to the backend of the link it
   * holds now; between transactions there is nothing to cancel (as with an idle backend).
   * The link stays this session's until the cancel reached its backend, so it cannot land on
   * another session's statement.
   */
  private cancelCurrent(): Promise<void> {
    const link = this.currentLink;
    if (link === null || link.backendKey === null || this.state !== 'pumping') return Promise.resolve();
    if (this.cancelsInFlight++ === 0) this.ctx.native.holdUpstream(this.conn, true);
    return UpstreamSetup.sendCancel(this.ctx, this.cfg, link.backendKey)
      .catch((err: Error) => this.ctx.log('info', 'cancel request could not be forwarded', { connection: this.cfg.name, error: err.message }))
      .finally(() => {
        if (--this.cancelsInFlight === 0 && this.state === 'pumping') this.ctx.native.holdUpstream(this.conn, false);
      });
  }

  /** Client bytes that arrived during setup, for the pump (which reads them first). */
  private takeEarly(): Buffer | undefined {
    if (this.clientEarly.length === 0) return undefined;
    const early = Buffer.concat(this.clientEarly);
    this.clientEarly = [];
    return early;
  }

  /** After a policy reload: a session that lost its access level ends with a clear message. */
  revokeIfDenied(policy: CompiledPolicy): void {
    const grant = this.grant;
    if (!grant || this.state !== 'pumping') return;
    const now = policy.decide(grant.groups, this.cfg.name);
    if (now && accessRank(now.access) >= accessRank(grant.access)) return;
    const message = now
      ? `your access to "${this.cfg.name}" was reduced to ${now.access} by a policy change; reconnect`
      : `your access to "${this.cfg.name}" was revoked by a policy change`;
    this.ctx.log('info', 'session ended by policy change', { connection: this.cfg.name, subject: grant.subject, access: grant.access, now: now?.access ?? null });
    this.ctx.native.endPump(this.conn, 'policy-revoked', ser.errorResponse({ severity: 'FATAL', code: '28000', message }));
  }

  /** Drain deadline passed: end the session the way PostgreSQL's own shutdown does. */
  shutdown(message: string): void {
    if (this.state !== 'pumping') return;
    this.ctx.native.endPump(this.conn, 'shutdown', ser.errorResponse({ severity: 'FATAL', code: '57P01', message }));
  }

  /**
   * A CancelRequest needs no token, so it is bounded before it costs an upstream connection:
   * a key the gateway did not hand out is dropped, the rest pass the worker's cancel limiter.
   * Every outcome closes without a word, as PostgreSQL does; drops are counted, not logged each.
   */
  private onCancel(processId: number, secretKey: Buffer): void {
    this.state = 'closed';
    if (this.timer) clearTimeout(this.timer);
    const limiter = this.ctx.cancelLimiter;
    if (secretKey.length !== 4) {
      limiter.drop('malformed'); // we only ever hand out 4-byte keys
      return this.conn.close();
    }
    const decoded = decodeAnyCancelKey(this.ctx.cancelKey, { processId, secretKey: secretKey.readUInt32BE(0) });
    if (decoded === null) {
      limiter.drop('undecodable');
      return this.conn.close();
    }
    if (limiter.acquire() !== null) return this.conn.close();
    if (decoded.kind === 'session') {
      // A transaction-pooling session: the worker holding it sends the cancel to its current link.
      const { worker, slot } = sessionOfKeyPid(decoded.processId);
      const done = worker === this.ctx.index ? this.ctx.cancelPooledSession(slot, decoded.secretKey) : this.ctx.routeCancel(worker, slot, decoded.secretKey);
      void done.finally(() => {
        limiter.release();
        this.conn.close();
      });
      return;
    }
    const upstreamKey = { processId: decoded.processId, secretKey: decoded.secretKey };
    // As with PostgreSQL, the client's cancel connection closes once the cancel reached the
    // server: clients wait for that close before their next statement, which a late cancel
    // would otherwise hit.
    UpstreamSetup.sendCancel(this.ctx, this.cfg, upstreamKey)
      .catch((err: Error) => {
        this.ctx.log('info', 'cancel request could not be forwarded', { connection: this.cfg.name, error: err.message });
      })
      .finally(() => {
        limiter.release();
        this.conn.close();
      });
  }


  /**
   * ErrorResponse FATAL over the current leg, then close. Before TLS too: an ErrorResponse
   * carries no secrets, and the client sees why it was refused.
   */
  private fatal(sqlstate: string, message: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.timer) clearTimeout(this.timer);
    this.upstream?.abort();
    this.withdrawWait?.();
    this.conn.write(ser.errorResponse({ severity: 'FATAL', code: sqlstate, message }));
    this.conn.close();
  }

  /** Closes without a word (timeouts, protocol misuse where no answer is owed); the caller logs why. */
  private abort(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.timer) clearTimeout(this.timer);
    this.upstream?.abort();
    this.withdrawWait?.();
    this.conn.destroy();
  }

  private onClientClosed(reason: string, detail: string): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.state !== 'closed' && this.state !== 'pumping') {
      this.upstream?.abort();
      this.withdrawWait?.();
      this.ctx.log('debug', 'client left during setup', { connection: this.cfg.name, state: this.state, reason, detail });
    }
    this.state = 'closed';
  }
}

/** The setting (name and value) under which a read session's statements would be misread, or null. */
function unreadableReadSetting(parameters: Map<string, string>): string | null {
  const encoding = parameters.get('client_encoding');
  if (encoding !== undefined && !isReadableClientEncoding(encoding)) return `client_encoding ${encoding}`;
  const scs = parameters.get('standard_conforming_strings');
  if (scs !== undefined && scs !== 'on') return `standard_conforming_strings ${scs}`;
  return null;
}

/** How a session's statements are recorded: by the JavaScript recorder (`statements`), in C++ (`nativeStatements`), or not. */
interface SessionRecording {
  base: { session: string; connection: string };
  recording: PostgresConnectionConfig['recording'];
  statements: PgStatementRecorder | null;
  nativeStatements: boolean;
  statementCaptures: boolean;
}
