// Upstream PostgreSQL connections kept for reuse, per worker. When a client ends its session
// while the upstream is idle outside a transaction, the native pump leaves the upstream open
// (the client's Terminate is not forwarded); it is reset with DISCARD ALL (prepared
// statements, cursors, temporary tables, settings, LISTENs and advisory locks all go) and
// parked. The next session with the same key takes it and skips DNS, TCP, TLS and SCRAM.
//
// The key holds the connection, the upstream user and database, the client's forwarded
// startup parameters (RESET ALL returns to the values the upstream session started with, so
// they must be the new client's too) and the subject: a backend's cancel key is fixed for
// its life, so only the same subject may get a backend whose key an earlier session saw.
import type { Connection } from '../src/native.js';
import type { UpstreamPoolConfig } from '../src/config/types.js';
import { MessageReader } from './pg/message-reader.js';
import { parseBackendMessage } from './pg/backend-parser.js';
import * as ser from './pg/serializer.js';
import { internParameter, NO_LEFTOVER, type UpstreamReady } from './pg-upstream-setup.js';

/** The reset must answer within this long, or the connection is closed instead of parked. */
export const UPSTREAM_RESET_TIMEOUT_MS = 5_000;
/** Largest message accepted while resetting or parked (ParameterStatus, notices). */
const MAX_RESET_MESSAGE_BYTES = 64 * 1024;
/** What resets a session for its next user (pgbouncer's server_reset_query for session pooling). */
export const UPSTREAM_RESET_SQL = 'DISCARD ALL';

interface Parked {
  ready: UpstreamReady;
  timer: NodeJS.Timeout;
}

export interface PoolEvents {
  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
}

export class PgUpstreamPool {
  private readonly idle = new Map<string, Parked[]>();
  /** Connections being reset, so clear() can close them too. */
  private readonly resetting = new Set<Connection>();
  private closed = false;

  constructor(private readonly events: PoolEvents) {}

  static key(connection: string, user: string, database: string, subject: string, params: ReadonlyMap<string, string>): string {
    const p = [...params].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v}`);
    return JSON.stringify([connection, user, database, subject, p]);
  }

  /** A parked upstream for `key`, paused and with no callbacks, or null. The newest is taken (warmest). */
  take(key: string): UpstreamReady | null {
    const list = this.idle.get(key);
    while (list !== undefined && list.length > 0) {
      const p = list.pop()!;
      clearTimeout(p.timer);
      if (list.length === 0) this.idle.delete(key);
      if (p.ready.conn.closed) continue;
      p.ready.conn.pause();
      p.ready.conn.setCallbacks(
        () => {},
        () => {},
      );
      return { ...p.ready, transactionStatus: 'I', leftover: NO_LEFTOVER };
    }
    return null;
  }

  /**
   * Takes an upstream the pump kept (idle, outside a transaction), resets it and parks it under
   * `key`; closes it instead when the pool for the key is full, the reset fails, or the pool is closed.
   */
  give(key: string, ready: UpstreamReady, cfg: UpstreamPoolConfig): void {
    const conn = ready.conn;
    const list = this.idle.get(key);
    if (this.closed || cfg.maxIdle <= 0 || (list !== undefined && list.length >= cfg.maxIdle)) {
      closePolitely(conn);
      return;
    }
    this.resetting.add(conn);
    const parameters = new Map(ready.parameters);
    const reader = new MessageReader(MAX_RESET_MESSAGE_BYTES);
    let sawComplete = false;
    let done = false;
    const finish = (ok: boolean, why: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.resetting.delete(conn);
      if (!ok || this.closed) {
        if (!ok) this.events.log('debug', 'upstream not reused', { reason: why });
        closePolitely(conn);
        return;
      }
      this.park(key, { ...ready, parameters }, cfg);
    };
    const timer = setTimeout(() => finish(false, 'reset timed out'), UPSTREAM_RESET_TIMEOUT_MS);
    timer.unref();
    conn.setCallbacks(
      (chunk) => {
        if (done) return;
        reader.push(chunk);
        for (;;) {
          const m = reader.next();
          if (m.status === 'need-more') return;
          if (m.status === 'error') return finish(false, `bad message: ${m.message}`);
          const msg = parseBackendMessage(m.type, m.body);
          switch (msg.kind) {
            case 'parameter-status':
              parameters.set(internParameter(msg.name), internParameter(msg.value));
              break;
            case 'notice':
              break;
            case 'ready-for-query':
              if (!sawComplete || msg.status !== 'I' || reader.takeRest().length > 0) return finish(false, 'reset did not complete');
              return finish(true, '');
            default:
              if (m.type === 0x43 /* CommandComplete */) sawComplete = true;
              else if (m.type !== 0x41 /* NotificationResponse, from before UNLISTEN */) return finish(false, `unexpected answer to ${UPSTREAM_RESET_SQL} (${String.fromCharCode(m.type)})`);
          }
        }
      },
      () => finish(false, 'closed during reset'),
    );
    conn.resume();
    conn.write(ser.query(UPSTREAM_RESET_SQL));
  }

  private park(key: string, ready: UpstreamReady, cfg: UpstreamPoolConfig): void {
    let list = this.idle.get(key);
    if (list === undefined) {
      list = [];
      this.idle.set(key, list);
    }
    const entry: Parked = {
      ready,
      timer: setTimeout(() => this.drop(key, entry, 'idle timeout'), cfg.idleTimeoutMs),
    };
    entry.timer.unref();
    // Anything from a parked upstream (a FATAL at server shutdown, an admin's terminate) or its close ends it.
    ready.conn.setCallbacks(
      () => this.drop(key, entry, 'upstream spoke while parked'),
      () => this.drop(key, entry, 'upstream closed while parked'),
    );
    list.push(entry);
  }

  private drop(key: string, entry: Parked, why: string): void {
    const list = this.idle.get(key);
    const i = list?.indexOf(entry) ?? -1;
    if (i < 0) return;
    list!.splice(i, 1);
    if (list!.length === 0) this.idle.delete(key);
    clearTimeout(entry.timer);
    this.events.log('debug', 'parked upstream closed', { reason: why });
    closePolitely(entry.ready.conn);
  }

  /** Parked connections now (metrics, tests). */
  get size(): number {
    let n = 0;
    for (const l of this.idle.values()) n += l.length;
    return n;
  }

  /** Closes every parked connection (policy reload, drain, worker exit); `stop` also refuses later ones. */
  clear(stop = false): void {
    if (stop) this.closed = true;
    for (const [key, list] of [...this.idle]) for (const e of [...list]) this.drop(key, e, 'pool cleared');
    for (const c of this.resetting) c.destroy();
    this.resetting.clear();
  }
}

/** Terminate, then close: the upstream's log shows a clean exit, not an unexpected EOF. */
function closePolitely(conn: Connection): void {
  if (conn.closed) return;
  conn.setCallbacks(
    () => {},
    () => {},
  );
  try {
    conn.write(ser.terminate());
  } catch {
    // already closing
  }
  conn.close();
}
