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
//
// With a key per subject, many users would park ever more backends (toward the upstream's
// max_connections): `max_idle_total` caps the parked connections of each configured
// connection, split between the workers, and parking one more closes the least recently used.
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
  /** This worker's index and the worker count (read when parking: max_idle_total is split between workers). */
  readonly index: number;
  readonly config: { readonly server: { readonly workers: number } };
  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
  /** Parked counts changed, or a parked connection was evicted: `stats()` has news for the primary. */
  poolChanged(): void;
}

/** [connection, parked now in this worker, evicted since the last stats()] */
export type PoolStatsRow = [connection: string, parked: number, evicted: number];

/** [connection, upstream database, upstream user, parked now in this worker] */
export type ParkedGroupRow = [connection: string, database: string, user: string, parked: number];

/** This worker's part of a connection's max_idle_total: an even split, the remainder to the lowest indexes. */
export function workerShare(total: number, worker: number, workers: number): number {
  const n = Math.max(1, workers);
  return Math.floor(total / n) + (worker % n < total % n ? 1 : 0);
}

export class PgUpstreamPool {
  private readonly idle = new Map<string, Parked[]>();
  /** Parked connections of each configured connection with their keys, least recently parked first (eviction order). */
  private readonly byConnection = new Map<string, Map<Parked, string>>();
  private readonly evicted = new Map<string, number>();
  /** Connections being reset, so clear() can close them too. */
  private readonly resetting = new Set<Connection>();
  private closed = false;

  constructor(private readonly events: PoolEvents) {}

  static key(connection: string, user: string, database: string, subject: string, params: ReadonlyMap<string, string>): string {
    const p = [...params].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v}`);
    // The connection name first, up to a NUL (names cannot hold one): connectionOf() reads it back.
    return `${connection}\0${JSON.stringify([user, database, subject, p])}`;
  }

  static connectionOf(key: string): string {
    return key.slice(0, key.indexOf('\0'));
  }

  /** Parked connections this worker may hold for one configured connection. */
  private cap(cfg: UpstreamPoolConfig): number {
    return workerShare(cfg.maxIdleTotal, this.events.index, this.events.config.server.workers);
  }

  private lru(connection: string): Map<Parked, string> {
    let m = this.byConnection.get(connection);
    if (m === undefined) {
      m = new Map();
      this.byConnection.set(connection, m);
    }
    return m;
  }

  /** A parked upstream for `key`, paused and with no callbacks, or null. The newest is taken (warmest). */
  take(key: string): UpstreamReady | null {
    const list = this.idle.get(key);
    while (list !== undefined && list.length > 0) {
      const p = list.pop()!;
      clearTimeout(p.timer);
      if (list.length === 0) this.idle.delete(key);
      this.byConnection.get(PgUpstreamPool.connectionOf(key))?.delete(p);
      this.events.poolChanged();
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
   * `key`; closes it instead when the pool for the key is full, the reset fails, or the pool is
   * closed. A connection at its max_idle_total makes room by closing its least recently parked.
   */
  give(key: string, ready: UpstreamReady, cfg: UpstreamPoolConfig): void {
    const conn = ready.conn;
    const list = this.idle.get(key);
    if (this.closed || cfg.maxIdle <= 0 || this.cap(cfg) <= 0 || (list !== undefined && list.length >= cfg.maxIdle)) {
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
    const connection = PgUpstreamPool.connectionOf(key);
    const lru = this.lru(connection);
    const cap = this.cap(cfg);
    while (lru.size >= cap) {
      const [oldest, oldestKey] = lru.entries().next().value!;
      this.drop(oldestKey, oldest, 'evicted (upstream.pool.max_idle_total)');
      lru.delete(oldest); // drop() does, unless the entry was already gone: never loop on it
      this.evicted.set(connection, (this.evicted.get(connection) ?? 0) + 1);
    }
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
    lru.set(entry, key);
    this.events.poolChanged();
  }

  private drop(key: string, entry: Parked, why: string): void {
    const list = this.idle.get(key);
    const i = list?.indexOf(entry) ?? -1;
    if (i < 0) return;
    list!.splice(i, 1);
    if (list!.length === 0) this.idle.delete(key);
    this.byConnection.get(PgUpstreamPool.connectionOf(key))?.delete(entry);
    this.events.poolChanged();
    clearTimeout(entry.timer);
    this.events.log('debug', 'parked upstream closed', { reason: why });
    closePolitely(entry.ready.conn);
  }

  /** Parked connections per configured connection now, and evictions since the last call (for the primary's metrics). */
  stats(): PoolStatsRow[] {
    const rows: PoolStatsRow[] = [];
    for (const [connection, lru] of this.byConnection) rows.push([connection, lru.size, this.evicted.get(connection) ?? 0]);
    this.evicted.clear();
    return rows;
  }

  /** Parked connections now per connection, upstream database and user, for /pools (stats() is /metrics'). */
  parkedByGroup(): ParkedGroupRow[] {
    const rows = new Map<string, ParkedGroupRow>();
    for (const [key, list] of this.idle) {
      const [user, database] = JSON.parse(key.slice(key.indexOf('\0') + 1)) as [string, string];
      const connection = PgUpstreamPool.connectionOf(key);
      const id = JSON.stringify([connection, database, user]);
      const row = rows.get(id);
      if (row === undefined) rows.set(id, [connection, database, user, list.length]);
      else row[3] += list.length;
    }
    return [...rows.values()];
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
