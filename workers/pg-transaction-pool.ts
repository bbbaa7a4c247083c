// Server links for `upstream.pool.mode: transaction`, per worker. A pooled client session
// holds a link only inside a transaction (the native pump releases it at ReadyForQuery 'I',
// native/session/pump.h SetTransactionPooling); between transactions the link is here, idle,
// for any session with the same key. The key is the connection, the upstream user and
// database and the client's forwarded startup parameters (a link's session defaults are the
// ones it was started with), never the subject: identity, policy and recording stay per
// client session, in the gateway.
//
// `size` bounds the links of one connection over every key and worker (each worker gets its
// share, at least one); a session that wants a link when none is idle and the share is
// open waits, FIFO, up to `wait_timeout`, then gets 53300 naming the limit.
//
// A link whose session state changed (a statement pinned its session: pg/session-pins.h)
// never comes back here: it is closed when its session ends.
import type { Connection } from '../src/native.js';
import type { UpstreamPoolConfig } from '../src/config/types.js';
import type { UpstreamReady } from './pg-upstream-setup.js';
import { workerShare } from './pg-upstream-pool.js';

export interface TransactionPoolEvents {
  readonly index: number;
  readonly config: { readonly server: { readonly workers: number } };
  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
  /** Counts changed: `stats()` has news for the primary. */
  transactionPoolChanged(): void;
}

/**
 * One connection's transaction pool in one worker, for /metrics: gauges absolute, counters
 * since the last stats() (the primary adds them up).
 */
export interface TransactionPoolStatsRow {
  connection: string;
  open: number;
  idle: number;
  waiting: number;
  waits: number;
  waitMs: number;
  timeouts: number;
  pins: [reason: string, count: number][];
}

/**
 * One pool group (connection, upstream database and user: the keys of every client parameter
 * set together) in one worker, for /pools: gauges now, counters since the worker started.
 */
export interface TransactionPoolGroupRow {
  connection: string;
  database: string;
  user: string;
  /** Links held by a session (in a transaction, at startup, or pinned). */
  busy: number;
  idle: number;
  /** Links being opened (DNS, TCP, TLS, authentication) for a waiting session. */
  opening: number;
  /** Sessions waiting for a link now. */
  waiting: number;
  /** How long the longest current wait has lasted, ms (0: nobody waits). */
  maxWaitMs: number;
  /** Waits begun (a session found no idle link), their time once over (ms), and those that ended in 53300. */
  waits: number;
  waitMs: number;
  timeouts: number;
}

/** This worker's transaction pools for /pools: one row per group; pins per connection (a pin is counted when its session ends). */
export interface TransactionPoolSnapshot {
  groups: TransactionPoolGroupRow[];
  pins: [connection: string, reason: string, count: number][];
}

/** What waits for a link: `give` takes it (false: not wanted any more, it goes to the next), `fail` ends the wait. */
export interface LinkWaiter {
  give(ready: UpstreamReady): boolean;
  fail(message: string, sqlstate: string): void;
}

interface Link {
  ready: UpstreamReady;
  key: string;
  connection: string;
  /** In a group's idle list (watched; closed by the sweep after idle_timeout). */
  idle: boolean;
  idleSince: number;
  /** The watch callbacks, made once per link (set again at each return to idle: a pump's attach lets JavaScript's go). */
  onData: () => void;
  onClose: () => void;
}

/** Counters of one group (connection, database, user) since the worker started: kept when its keys are forgotten (there are only as many as configured credentials and databases). */
interface GroupCounters {
  connection: string;
  database: string;
  user: string;
  waits: number;
  waitMs: number;
  timeouts: number;
}

interface Group {
  key: string;
  connection: string;
  counters: GroupCounters;
  /** Links of this key opening, and handed to sessions: with no idle link and no waiter either, the group goes (dropIfUnused). */
  opening: number;
  inUse: number;
  cfg: UpstreamPoolConfig;
  open: () => Promise<UpstreamReady>;
  idle: Link[];
  waiters: { w: LinkWaiter; since: number; timer: NodeJS.Timeout }[];
}

/** Links of one configured connection, over its keys. */
interface Budget {
  open: number;
  opening: number;
  /** Its groups' counters, and its pins by reason, since the worker started. */
  counters: GroupCounters[];
  pins: Map<string, number>;
  /** What stats() reported so far (it reports the difference). */
  reported: { waits: number; waitMs: number; timeouts: number; pins: Map<string, number> };
}

export class PgTransactionPool {
  private readonly groups = new Map<string, Group>();
  private readonly links = new Map<Connection, Link>();
  private readonly budgets = new Map<string, Budget>();
  /** Every group's counters, by [connection, database, user] as JSON. */
  private readonly counters = new Map<string, GroupCounters>();
  private closed = false;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweepEveryMs = Infinity;

  constructor(private readonly events: TransactionPoolEvents) {}

  static key(connection: string, user: string, database: string, params: ReadonlyMap<string, string>): string {
    const p = [...params].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v}`);
    return `${connection}\0${JSON.stringify([user, database, p])}`;
  }

  /** The upstream user and database a key() names ('' for a key not made by key()). */
  static keyGroup(key: string): { user: string; database: string } {
    const i = key.indexOf('\0');
    if (i >= 0) {
      try {
        const [user, database] = JSON.parse(key.slice(i + 1)) as unknown[];
        if (typeof user === 'string' && typeof database === 'string') return { user, database };
      } catch {
        // not a key() key: a programmer's stand-in (unit tests)
      }
    }
    return { user: '', database: '' };
  }

  /** This worker's share of a connection's `size`: at least one link. */
  share(cfg: UpstreamPoolConfig): number {
    return Math.max(1, workerShare(cfg.size, this.events.index, this.events.config.server.workers));
  }

  private budget(connection: string): Budget {
    let b = this.budgets.get(connection);
    if (b === undefined) {
      b = { open: 0, opening: 0, counters: [], pins: new Map(), reported: { waits: 0, waitMs: 0, timeouts: 0, pins: new Map() } };
      this.budgets.set(connection, b);
    }
    return b;
  }

  private groupCounters(connection: string, key: string): GroupCounters {
    const { user, database } = PgTransactionPool.keyGroup(key);
    const id = JSON.stringify([connection, database, user]);
    let c = this.counters.get(id);
    if (c === undefined) {
      c = { connection, database, user, waits: 0, waitMs: 0, timeouts: 0 };
      this.counters.set(id, c);
      this.budget(connection).counters.push(c);
    }
    return c;
  }

  /** Every connection's counts for /metrics (counters since the last call). */
  stats(): TransactionPoolStatsRow[] {
    const rows: TransactionPoolStatsRow[] = [];
    for (const [connection, b] of this.budgets) {
      let idle = 0;
      let waiting = 0;
      for (const g of this.groups.values()) {
        if (g.connection !== connection) continue;
        idle += g.idle.length;
        waiting += g.waiters.length;
      }
      let waits = 0;
      let waitMs = 0;
      let timeouts = 0;
      for (const c of b.counters) {
        waits += c.waits;
        waitMs += c.waitMs;
        timeouts += c.timeouts;
      }
      const r = b.reported;
      const pins: [string, number][] = [];
      for (const [reason, n] of b.pins) {
        const d = n - (r.pins.get(reason) ?? 0);
        if (d > 0) pins.push([reason, d]);
        r.pins.set(reason, n);
      }
      rows.push({ connection, open: b.open + b.opening, idle, waiting, waits: waits - r.waits, waitMs: waitMs - r.waitMs, timeouts: timeouts - r.timeouts, pins });
      r.waits = waits;
      r.waitMs = waitMs;
      r.timeouts = timeouts;
    }
    return rows;
  }

  /** Every group's counts now, for /pools (nothing is reset: counters are since the worker started). */
  snapshot(now = Date.now()): TransactionPoolSnapshot {
    const rows = new Map<GroupCounters, TransactionPoolGroupRow>();
    for (const c of this.counters.values()) {
      rows.set(c, { connection: c.connection, database: c.database, user: c.user, busy: 0, idle: 0, opening: 0, waiting: 0, maxWaitMs: 0, waits: c.waits, waitMs: c.waitMs, timeouts: c.timeouts });
    }
    for (const g of this.groups.values()) {
      const row = rows.get(g.counters)!;
      row.busy += g.inUse;
      row.idle += g.idle.length;
      row.opening += g.opening;
      row.waiting += g.waiters.length;
      // Waiters queue in arrival order: the first has waited longest.
      if (g.waiters.length > 0) row.maxWaitMs = Math.max(row.maxWaitMs, now - g.waiters[0]!.since);
    }
    const pins: [string, string, number][] = [];
    for (const [connection, b] of this.budgets) for (const [reason, n] of b.pins) pins.push([connection, reason, n]);
    return { groups: [...rows.values()], pins };
  }

  /** A session of `connection` was pinned to its link (counted for /metrics and /pools). */
  pinned(connection: string, reason: string): void {
    const b = this.budget(connection);
    b.pins.set(reason, (b.pins.get(reason) ?? 0) + 1);
    this.events.transactionPoolChanged();
  }

  /**
   * A link for `waiter`: an idle one at once, a new one (`open`) while the share allows, or
   * the first one released after it, in order. Returns a function that withdraws the wait.
   */
  acquire(key: string, connection: string, cfg: UpstreamPoolConfig, open: () => Promise<UpstreamReady>, waiter: LinkWaiter): () => void {
    if (this.closed) {
      waiter.fail('the gateway is shutting down', '57P01');
      return () => {};
    }
    let g = this.groups.get(key);
    if (g === undefined) {
      g = { key, connection, counters: this.groupCounters(connection, key), cfg, open, idle: [], waiters: [], opening: 0, inUse: 0 };
      this.groups.set(key, g);
    }
    g.open = open;
    if (g.idle.length > 0) {
      const link = g.idle.pop()!;
      this.unwatch(link);
      g.inUse++;
      if (waiter.give(link.ready)) return () => {};
      g.inUse--;
      this.idle(link, g);
      return () => {};
    }
    const counters = g.counters;
    counters.waits++;
    const entry = {
      w: waiter,
      since: Date.now(),
      timer: setTimeout(() => {
        const i = g!.waiters.indexOf(entry);
        if (i < 0) return;
        g!.waiters.splice(i, 1);
        this.dropIfUnused(g!);
        counters.timeouts++;
        counters.waitMs += Date.now() - entry.since;
        this.events.transactionPoolChanged();
        const limit = this.share(cfg);
        this.events.log('warn', 'pooled session waited too long for an upstream connection', { connection, size: cfg.size, workerShare: limit, waitMs: cfg.waitTimeoutMs });
        waiter.fail(
          `all ${limit} upstream connection${limit === 1 ? '' : 's'} of this gateway worker for connection "${connection}" stayed busy for ${cfg.waitTimeoutMs / 1000} s (upstream.pool.size ${cfg.size} over ${this.events.config.server.workers} workers)`,
          '53300',
        );
      }, cfg.waitTimeoutMs),
    };
    g.waiters.push(entry);
    this.openIfRoom(g);
    this.events.transactionPoolChanged();
    return () => {
      const i = g!.waiters.indexOf(entry);
      if (i >= 0) {
        clearTimeout(entry.timer);
        g!.waiters.splice(i, 1);
        counters.waitMs += Date.now() - entry.since;
        this.events.transactionPoolChanged();
        this.dropIfUnused(g!);
      }
    };
  }

  /** Opens one more link for a group with waiters when the connection's share has room. */
  private openIfRoom(g: Group): void {
    const b = this.budget(g.connection);
    if (g.waiters.length <= b.opening) return;
    if (b.open + b.opening >= this.share(g.cfg)) {
      // The share is full: an idle link of another key of this connection makes room (its
      // close wakes the waiting keys, this one among them, which then open into it).
      this.evictIdle(g.connection);
      return;
    }
    b.opening++;
    g.opening++;
    g.open().then(
      (ready) => {
        b.opening--;
        g.opening--;
        if (this.closed) {
          ready.conn.destroy();
          return;
        }
        b.open++;
        const conn = ready.conn;
        const link: Link = {
          ready,
          key: g.key,
          connection: g.connection,
          idle: false,
          idleSince: 0,
          // Nothing is owed to an idle link (a notice, a setting's report after a reload): its
          // state is no longer known to be a fresh session's, so it goes.
          onData: () => {
            this.forget(conn);
            conn.destroy();
          },
          onClose: () => this.forget(conn),
        };
        this.links.set(ready.conn, link);
        this.handOut(g, link);
      },
      (err: Error & { clientMessage?: string; sqlstate?: string }) => {
        b.opening--;
        g.opening--;
        // The first waiter learns why; the others keep waiting (a later try may succeed).
        const first = g.waiters.shift();
        if (first) {
          clearTimeout(first.timer);
          g.counters.waitMs += Date.now() - first.since;
          this.events.transactionPoolChanged();
          first.w.fail(err.clientMessage ?? `the gateway could not reach the database (${err.message})`, err.sqlstate ?? '08006');
        }
        this.openIfRoom(g);
        this.dropIfUnused(g);
      },
    );
  }

  /** A key nobody uses any more (no link idle, handed out or opening, no waiter) is forgotten: keys come from client startup parameters. */
  private dropIfUnused(g: Group): void {
    if (g.idle.length === 0 && g.waiters.length === 0 && g.opening === 0 && g.inUse === 0 && this.groups.get(g.key) === g) this.groups.delete(g.key);
  }

  /** Closes the link of `connection` idle the longest; false when none is idle. */
  private evictIdle(connection: string): boolean {
    let oldest: Link | null = null;
    for (const g of this.groups.values()) {
      if (g.connection !== connection) continue;
      for (const l of g.idle) if (oldest === null || l.idleSince < oldest.idleSince) oldest = l;
    }
    if (oldest === null) return false;
    const conn = oldest.ready.conn;
    this.forget(conn);
    conn.close();
    return true;
  }

  /** Gives a free link to the first waiter that takes it, else keeps it idle. */
  private handOut(g: Group, link: Link): void {
    this.events.transactionPoolChanged();
    while (g.waiters.length > 0) {
      const first = g.waiters.shift()!;
      clearTimeout(first.timer);
      g.counters.waitMs += Date.now() - first.since;
      g.inUse++;
      if (first.w.give(link.ready)) return;
      g.inUse--;
    }
    this.idle(link, g);
  }

  /** A session let go of `conn` between transactions (or ended idle, unpinned): it serves the next. */
  release(conn: Connection): void {
    const link = this.links.get(conn);
    if (link === undefined) {
      conn.destroy();
      return;
    }
    const g = this.groups.get(link.key);
    if (this.closed || g === undefined || conn.closed) {
      this.forget(conn); // counts it out of its group's links in use
      conn.destroy();
      return;
    }
    g.inUse--;
    this.handOut(g, link);
  }

  /** A link that will not come back (closed with its session, or its state changed): the share has room again. */
  forget(conn: Connection): void {
    const link = this.links.get(conn);
    if (link === undefined) return;
    this.links.delete(conn);
    this.unwatch(link);
    this.budget(link.connection).open--;
    const g = this.groups.get(link.key);
    if (g) {
      const i = g.idle.indexOf(link);
      if (i >= 0) g.idle.splice(i, 1);
      else g.inUse = Math.max(0, g.inUse - 1); // it was a session's (released links are idle first)
      this.dropIfUnused(g);
    }
    this.events.transactionPoolChanged();
    this.wake(link.connection);
  }

  /** Room in a connection's share, or an idle link another key could use: the waiting keys try again. */
  private wake(connection: string): void {
    for (const g of this.groups.values()) if (g.connection === connection && g.waiters.length > 0) this.openIfRoom(g);
  }

  /** Idle in the pool: watched for the server closing it, closed after idle_timeout. */
  private idle(link: Link, g: Group): void {
    const conn = link.ready.conn;
    link.idleSince = Date.now();
    link.idle = true;
    g.idle.push(link);
    conn.setCallbacks(link.onData, link.onClose);
    conn.resume();
    this.armSweep(g.cfg.idleTimeoutMs);
    this.wake(g.connection); // a session of another key may be waiting for room
  }

  /**
   * Taken from idle: given to a session (its pump's attach takes the connection's events, and
   * resumes reading) or about to close. No timer to clear: idle links are closed by one sweep.
   */
  private unwatch(link: Link): void {
    link.idle = false;
  }

  /**
   * Idle links past idle_timeout close: one timer per pool, not one per link (a link goes idle
   * after every transaction). It runs every quarter of the shortest idle_timeout seen (at least
   * every second), and stops while nothing is idle.
   */
  private armSweep(idleTimeoutMs: number): void {
    const every = Math.max(1000, Math.floor(idleTimeoutMs / 4));
    if (this.sweepTimer !== null && every >= this.sweepEveryMs) return;
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepEveryMs = every;
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref(); // an idle link keeps nothing alive
  }

  private sweep(): void {
    const now = Date.now();
    let idle = 0;
    for (const g of [...this.groups.values()]) {
      for (const link of [...g.idle]) {
        if (now - link.idleSince < g.cfg.idleTimeoutMs) continue;
        this.forget(link.ready.conn);
        link.ready.conn.close();
      }
      idle += g.idle.length;
    }
    if (idle === 0 && this.sweepTimer !== null) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
      this.sweepEveryMs = Infinity;
    }
  }

  /** Credentials or policies were reloaded: idle links close (sessions holding one keep it). */
  dropIdle(): void {
    for (const g of this.groups.values()) {
      for (const link of [...g.idle]) {
        this.forget(link.ready.conn);
        link.ready.conn.close();
      }
    }
  }

  /** Shutdown: idle links close; waiting sessions are told. */
  clear(): void {
    this.closed = true;
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    for (const g of this.groups.values()) {
      for (const w of g.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.w.fail('the gateway is shutting down', '57P01');
      }
      for (const link of g.idle.splice(0)) {
        this.unwatch(link);
        this.links.delete(link.ready.conn);
        link.ready.conn.close();
      }
    }
  }
}
