// The gateway's own leg to a PostgreSQL upstream: TCP, SSLRequest, TLS verify-full (chain +
// host name; `N` or bytes after `S` abort), StartupMessage as the injected user, then
// SCRAM-SHA-256(-PLUS with tls-server-end-point) — or MD5, cleartext-over-TLS or none only
// when the connection's upstream.auth_methods allows it — up to the first ReadyForQuery.
// Also sends CancelRequests on behalf of clients.
import { createHash } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Connection, TlsInfo } from '../src/native.js';
import type { DbCredential, PgAuthMethod, PostgresConnectionConfig } from '../src/config/types.js';
import { MessageReader } from './pg/message-reader.js';
import { parseBackendMessage } from './pg/backend-parser.js';
import * as ser from './pg/serializer.js';
import { ScramClient } from './pg/scram-client.js';
import { canEncodeCancelKey, CANCEL_KEY_PID_BITS, type BackendKey } from './pg/cancel-key.js';
import type { WorkerContext } from './worker-context.js';

/** Largest single message accepted from the upstream during setup (ParameterStatus, errors, SASL). */
export const MAX_UPSTREAM_SETUP_MESSAGE_BYTES = 64 * 1024;

/** The leftover of a setup that left no bytes unread (shared: nobody writes into it). */
export const NO_LEFTOVER = Buffer.alloc(0);

/** Distinct ParameterStatus names and values kept for sharing; past this, new ones are not cached. */
export const MAX_INTERNED_PARAMETERS = 4096;
const internedParameters = new Map<string, string>();

/**
 * The one copy of a ParameterStatus name or value this worker keeps: every session holds
 * its upstream's parameters for as long as it lives (to replay them to the client, and for
 * upstream reuse), and they are nearly the same strings for every session.
 */
export function internParameter(s: string): string {
  const have = internedParameters.get(s);
  if (have !== undefined) return have;
  if (internedParameters.size < MAX_INTERNED_PARAMETERS) internedParameters.set(s, s);
  return s;
}

export interface UpstreamReady {
  conn: Connection;
  tls: TlsInfo | null;
  parameters: Map<string, string>;
  backendKey: BackendKey | null;
  transactionStatus: string;
  /** Bytes after ReadyForQuery (none from a conforming server); forwarded before pumping. */
  leftover: Buffer;
}

export class UpstreamError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly sqlstate: string,
    readonly clientMessage: string,
  ) {
    super(message);
  }
}

async function resolve(host: string): Promise<string> {
  if (isIP(host)) return host;
  const r = await lookup(host);
  return r.address;
}

function connectTcp(ctx: WorkerContext, ip: string, port: number): Promise<Connection> {
  return new Promise((resolveConn, reject) => {
    try {
      ctx.native.connect(ip, port, (err, conn) => {
        if (err || !conn) reject(err ?? new Error('connect failed'));
        else resolveConn(conn);
      });
    } catch (err) {
      reject(err);
    }
  });
}

type Phase = 'ssl' | 'tls' | 'auth' | 'params' | 'done' | 'failed';

/** Connections whose upstream pid did not fit a cancel key: said once per connection per worker. */
const saidNoCancelKey = new Set<string>();

/** What the upstream asked for, as the pg_hba method that makes it ask so. */
const ASKED_METHOD: Record<string, PgAuthMethod> = { cleartext: 'password', md5: 'md5', ok: 'trust' };

export class UpstreamSetup {
  private conn: Connection | null = null;
  private aborted = false;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly cfg: PostgresConnectionConfig,
    private readonly credential: DbCredential,
    private readonly params: Map<string, string>,
    /** The upstream database this session asked for (upstream.database or one of upstream.databases). */
    private readonly database: string = cfg.upstream.database,
  ) {}

  abort(): void {
    this.aborted = true;
    this.conn?.destroy();
  }

  async run(): Promise<UpstreamReady> {
    const { host, port } = this.cfg.upstream;
    let ip: string;
    try {
      ip = await resolve(host);
    } catch (err) {
      throw new UpstreamError('ERR_VG_UPSTREAM_CONNECT', `cannot resolve ${host}: ${(err as Error).message}`, '08001', 'the gateway could not reach the database; try again later');
    }
    let conn: Connection;
    try {
      conn = await connectTcp(this.ctx, ip, port);
    } catch (err) {
      throw new UpstreamError('ERR_VG_UPSTREAM_CONNECT', `cannot connect to ${host}:${port}: ${(err as Error).message}`, '08001', 'the gateway could not reach the database; try again later');
    }
    this.conn = conn;
    if (this.aborted) {
      conn.destroy();
      throw new UpstreamError('ERR_VG_UPSTREAM_CONNECT', 'aborted', '08006', 'aborted');
    }
    return this.negotiate(conn);
  }

  private negotiate(conn: Connection): Promise<UpstreamReady> {
    const tlsMode = this.cfg.upstream.tls.mode;
    const cred = this.credential;
    return new Promise<UpstreamReady>((resolveReady, rejectReady) => {
      let phase: Phase = tlsMode === 'verify-full' ? 'ssl' : 'auth';
      let tls: TlsInfo | null = null;
      let scram: ScramClient | null = null;
      const reader = new MessageReader(MAX_UPSTREAM_SETUP_MESSAGE_BYTES);
      const parameters = new Map<string, string>();
      let backendKey: BackendKey | null = null;
      let passwordSent = false;

      const fail = (code: string, operator: string, sqlstate: string, clientMessage: string) => {
        if (phase === 'failed' || phase === 'done') return;
        phase = 'failed';
        conn.destroy();
        rejectReady(new UpstreamError(code, operator, sqlstate, clientMessage));
      };
      const allowed = this.cfg.upstream.authMethods;
      /** Refuses an authentication method the connection does not allow (false: refused, setup ended). */
      const methodAllowed = (method: PgAuthMethod): boolean => {
        if (allowed.includes(method)) return true;
        const asked = method === 'password' ? 'a cleartext password' : method === 'md5' ? 'an MD5 password' : 'no authentication at all (trust)';
        fail(
          'ERR_VG_UPSTREAM_AUTH_METHOD',
          `upstream ${this.cfg.upstream.host}:${this.cfg.upstream.port} asked for ${asked} for ${cred.user}; connections.${this.cfg.name}.upstream.auth_methods allows only ${allowed.join(', ')}: configure scram-sha-256 for this role in the server's pg_hba.conf, or add ${method} to auth_methods`,
          '08004',
          'the database asked for an authentication method this connection does not allow; ask the operator (the gateway log says which)',
        );
        return false;
      };
      const sendStartup = () => {
        const p = new Map<string, string>([
          ['user', cred.user],
          ['database', this.database],
          ...this.params,
        ]);
        conn.write(ser.startupMessage(p));
      };

      conn.setCallbacks(
        (chunk) => {
          if (phase === 'ssl') {
            const b = chunk[0];
            if (b === 0x53 /* S */ && chunk.length === 1) {
              phase = 'tls';
              conn.startTls(this.ctx.upstreamContext(this.cfg), this.cfg.upstream.tls.serverName, null, (err, info) => {
                if (err || !info) {
                  return fail(
                    'ERR_VG_UPSTREAM_TLS',
                    `upstream TLS to ${this.cfg.upstream.host}:${this.cfg.upstream.port} failed: ${err?.message}`,
                    '08006',
                    `the gateway could not verify the database's TLS certificate (${err?.message}); ask the operator`,
                  );
                }
                tls = info;
                phase = 'auth';
                sendStartup();
              });
              return;
            }
            if (b === 0x53) {
              return fail('ERR_VG_UPSTREAM_PROTOCOL', 'upstream sent data after S (possible injection)', '08006', 'the database answered the TLS request improperly; refusing');
            }
            if (b === 0x4e /* N */) {
              return fail('ERR_VG_UPSTREAM_TLS', 'upstream does not accept TLS (answered N to SSLRequest)', '08006', 'the database does not offer TLS; the gateway never connects without it');
            }
            return fail('ERR_VG_UPSTREAM_PROTOCOL', `unexpected answer to SSLRequest: 0x${b?.toString(16)}`, '08006', 'the database answered the TLS request improperly; refusing');
          }
          if (phase !== 'auth' && phase !== 'params') return;
          reader.push(chunk);
          for (;;) {
            const m = reader.next();
            if (m.status === 'need-more') return;
            if (m.status === 'error') return fail('ERR_VG_UPSTREAM_PROTOCOL', `bad message from upstream: ${m.message}`, '08P01', 'the database sent a malformed message');
            const msg = parseBackendMessage(m.type, m.body);
            switch (msg.kind) {
              case 'error': {
                const fields = msg.kind === 'error' && 'fields' in msg ? (msg as { fields: Map<string, string> }).fields : null;
                if (fields) {
                  const code = fields.get('C') ?? '';
                  const text = fields.get('M') ?? '';
                  if (code.startsWith('28')) {
                    return fail('ERR_VG_UPSTREAM_AUTH', `upstream refused the gateway's credential for ${cred.user}: ${code} ${text}`, '08004', 'the database refused the gateway\'s credential; ask the operator to check the connection\'s credentials');
                  }
                  return fail('ERR_VG_UPSTREAM_PROTOCOL', `upstream error during startup: ${code} ${text}`, code || '08006', text || 'the database refused the session');
                }
                return fail('ERR_VG_UPSTREAM_PROTOCOL', `malformed upstream message: ${(msg as { message?: string }).message}`, '08P01', 'the database sent a malformed message');
              }
              case 'notice':
                break;
              case 'auth': {
                if (phase !== 'auth') return fail('ERR_VG_UPSTREAM_PROTOCOL', 'authentication request after AuthenticationOk', '08P01', 'the database sent an unexpected message');
                const a = msg;
                if (a.type === 'ok') {
                  if (scram && !scram.done) return fail('ERR_VG_UPSTREAM_AUTH', 'AuthenticationOk before SCRAM completed (server not verified)', '08006', 'the database did not complete authentication; refusing');
                  // Ok with no exchange before it: the upstream checked nothing (trust).
                  if (!scram && !passwordSent && !methodAllowed(ASKED_METHOD.ok!)) return;
                  phase = 'params';
                } else if (a.type === 'cleartext') {
                  if (!methodAllowed(ASKED_METHOD.cleartext!)) return;
                  if (!tls && !isLoopback(this.cfg.upstream.host)) return fail('ERR_VG_UPSTREAM_AUTH', 'cleartext password requested without TLS', '08006', 'refusing to send a password without TLS');
                  passwordSent = true;
                  conn.write(ser.passwordMessage(cred.password));
                } else if (a.type === 'md5') {
                  if (!methodAllowed(ASKED_METHOD.md5!)) return;
                  passwordSent = true;
                  const inner = createHash('md5').update(cred.password + cred.user).digest('hex');
                  const outer = 'md5' + createHash('md5').update(Buffer.concat([Buffer.from(inner), a.salt])).digest('hex');
                  conn.write(ser.passwordMessage(outer));
                } else if (a.type === 'sasl') {
                  scram = new ScramClient({ password: cred.password, mechanisms: a.mechanisms, channelBinding: tls?.serverEndPoint ?? null });
                  if (scram.failure) return fail('ERR_VG_UPSTREAM_AUTH', `SCRAM: ${scram.failure}`, '08006', 'the database asked for an authentication method the gateway does not support');
                  conn.write(ser.saslInitialResponse(scram.mechanism, scram.clientFirst()));
                } else if (a.type === 'sasl-continue') {
                  if (!scram) return fail('ERR_VG_UPSTREAM_PROTOCOL', 'SASLContinue without SASL', '08P01', 'the database sent an unexpected message');
                  const r = scram.handleServerFirst(a.data);
                  if (!r.ok) return fail('ERR_VG_UPSTREAM_AUTH', `SCRAM: ${r.message}`, '08006', 'authentication with the database failed');
                  conn.write(ser.saslResponse(r.clientFinal));
                } else if (a.type === 'sasl-final') {
                  if (!scram) return fail('ERR_VG_UPSTREAM_PROTOCOL', 'SASLFinal without SASL', '08P01', 'the database sent an unexpected message');
                  const r = scram.handleServerFinal(a.data);
                  if (!r.ok) return fail('ERR_VG_UPSTREAM_AUTH', `SCRAM: ${r.message}`, '08006', 'the database could not prove it knows the credential; refusing');
                } else {
                  return fail('ERR_VG_UPSTREAM_AUTH', `unsupported upstream authentication method ${a.type}`, '08006', 'the database asked for an authentication method the gateway does not support');
                }
                break;
              }
              case 'parameter-status':
                parameters.set(internParameter(msg.name), internParameter(msg.value));
                break;
              case 'backend-key': {
                if (msg.secretKey.length !== 4) break;
                const key = { processId: msg.processId, secretKey: msg.secretKey.readUInt32BE(0) };
                if (canEncodeCancelKey(key)) {
                  backendKey = key;
                } else if (!saidNoCancelKey.has(this.cfg.name)) {
                  // Its session runs without BackendKeyData (no Ctrl-C) rather than with a key that cannot be routed back.
                  saidNoCancelKey.add(this.cfg.name);
                  this.ctx.log('warn', 'upstream process id does not fit a gateway cancel key: sessions of this connection get no cancel key', {
                    connection: this.cfg.name,
                    processId: msg.processId,
                    maxBits: CANCEL_KEY_PID_BITS,
                  });
                }
                break;
              }
              case 'ready-for-query': {
                if (phase !== 'params') return fail('ERR_VG_UPSTREAM_PROTOCOL', 'ReadyForQuery before authentication', '08P01', 'the database sent an unexpected message');
                phase = 'done';
                conn.pause();
                const rest = reader.takeRest();
                conn.setCallbacks(() => {}, () => {});
                // `ready` lives as long as the session (and in the reuse pool after it): nothing
                // in it that only the setup needed (the channel-binding hash, an empty buffer).
                const leftover = rest.length ? rest : NO_LEFTOVER;
                resolveReady({ conn, tls: tls ? { ...tls, serverEndPoint: null } : tls, parameters, backendKey, transactionStatus: msg.status, leftover });
                return;
              }
              case 'negotiate-protocol':
                break;
              default:
                return fail('ERR_VG_UPSTREAM_PROTOCOL', `unexpected upstream message during startup: ${(msg as { kind: string }).kind}`, '08P01', 'the database sent an unexpected message');
            }
          }
        },
        (reason, detail) => {
          fail('ERR_VG_UPSTREAM_CONNECT', `upstream closed during setup (${reason}${detail ? ': ' + detail : ''})`, '08006', 'the database closed the connection during setup');
        },
      );
      if (phase === 'ssl') conn.write(ser.sslRequest());
      else sendStartup();
    });
  }

  /**
   * Forwards a client's CancelRequest to the upstream, over TLS when the connection uses it,
   * and resolves once the server closed the connection: PostgreSQL signals the backend before
   * it closes, so the caller can tell the client the cancel was delivered (libpq's PQcancel
   * and asyncpg wait for that close before their next statement).
   */
  static async sendCancel(ctx: WorkerContext, cfg: PostgresConnectionConfig, key: BackendKey): Promise<void> {
    const ip = await resolve(cfg.upstream.host);
    const conn = await connectTcp(ctx, ip, cfg.upstream.port);
    const secret = Buffer.alloc(4);
    secret.writeUInt32BE(key.secretKey >>> 0);
    const packet = ser.cancelRequest(key.processId, secret);
    await new Promise<void>((resolveDone, reject) => {
      const timer = setTimeout(() => {
        conn.destroy();
        reject(new Error('cancel timed out'));
      }, ctx.limits.upstreamConnectTimeoutMs);
      timer.unref();
      conn.setCallbacks(
        (chunk) => {
          if (chunk.length === 1 && chunk[0] === 0x53) {
            conn.startTls(ctx.upstreamContext(cfg), cfg.upstream.tls.serverName, null, (err) => {
              if (err) {
                clearTimeout(timer);
                return reject(err);
              }
              conn.write(packet);
            });
          } else {
            conn.destroy();
          }
        },
        () => {
          clearTimeout(timer);
          resolveDone();
        },
      );
      if (cfg.upstream.tls.mode === 'verify-full') conn.write(ser.sslRequest());
      else conn.write(packet);
    });
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}
