// The admin endpoint's /pools (PgBouncer's SHOW POOLS for vecgate): every worker is asked for
// its pools when the request comes (`pools?`), so the view is the state of that moment, not a
// report up to a second old like /metrics' gauges; the answers are summed here, one row per
// pool group (connection, upstream database and user) and one per connection.
import type { PostgresConnectionConfig } from '../config/types.js';
import type { WorkerPoolsSnapshot } from '../../workers/messages.js';
import { workerShare } from '../../workers/pg-upstream-pool.js';

/** A worker that has not answered `pools?` within this long is left out of the view (and named in `missing_workers`). */
export const POOLS_ANSWER_TIMEOUT_MS = 1_000;

/**
 * One pool group: a connection's upstream database and user, all workers. Numbers a mode does
 * not track are null (session mode knows only its parked connections per group).
 */
export interface PoolGroupView {
  connection: string;
  database: string;
  user: string;
  mode: 'session' | 'transaction';
  /** busy + idle: upstream connections established. */
  open: number | null;
  /** Held by a client session (inside a transaction, at startup, or pinned). */
  busy: number | null;
  /** Free for the next transaction (transaction mode), or parked for reuse (session mode). */
  idle: number;
  /** Being opened for a waiting session. */
  opening: number | null;
  /** Sessions waiting for an upstream connection now. */
  waiting: number | null;
  /** How long the longest current wait has lasted (PgBouncer's maxwait), ms; 0 when nobody waits. */
  maxwait_ms: number | null;
  /** Since the gateway started: waits begun, time spent in finished waits (ms), waits ended by 53300. */
  waits: number | null;
  wait_ms: number | null;
  wait_timeouts: number | null;
}

/** One connection: its groups summed, with what is known per connection only. */
export interface ConnectionPoolsView extends Omit<PoolGroupView, 'database' | 'user' | 'busy'> {
  /** upstream.pool.size (transaction mode). */
  size: number | null;
  /** The most upstream connections it may open: every worker gets its share of size, at least one. */
  max_open: number | null;
  /** Client sessions being served now (past startup). */
  sessions: number;
  /** Transaction mode: held by sessions. Session mode: the sessions' own upstream connections (one each). */
  busy: number;
  /** Sessions pinned to their upstream connection since the gateway started, by reason (counted when the session ends); null in session mode. */
  pins: Record<string, number> | null;
}

export interface PoolsView {
  /** When the workers were asked (ISO 8601). */
  at: string;
  workers: number;
  /** Workers that did not answer in time: their pools are not in these numbers. */
  missing_workers: number[];
  connections: ConnectionPoolsView[];
  pools: PoolGroupView[];
}

export interface PoolsViewInput {
  /** PostgreSQL connections, in config order. */
  connections: readonly PostgresConnectionConfig[];
  workers: number;
  answers: ReadonlyMap<number, WorkerPoolsSnapshot>;
  /** Sessions being served now per connection (session-start minus session-end). */
  sessions: ReadonlyMap<string, number>;
  at: number;
}

export function buildPoolsView(input: PoolsViewInput): PoolsView {
  const byConnection = new Map(input.connections.map((c) => [c.name, c]));
  const groups = new Map<string, PoolGroupView>();
  const pins = new Map<string, Map<string, number>>();
  const group = (connection: string, database: string, user: string, mode: PoolGroupView['mode']): PoolGroupView => {
    const id = JSON.stringify([connection, database, user]);
    let g = groups.get(id);
    if (g === undefined) {
      const tx = mode === 'transaction';
      g = { connection, database, user, mode, open: tx ? 0 : null, busy: tx ? 0 : null, idle: 0, opening: tx ? 0 : null, waiting: tx ? 0 : null, maxwait_ms: tx ? 0 : null, waits: tx ? 0 : null, wait_ms: tx ? 0 : null, wait_timeouts: tx ? 0 : null };
      groups.set(id, g);
    }
    return g;
  };
  for (const snap of input.answers.values()) {
    for (const r of snap.transaction.groups) {
      if (byConnection.get(r.connection)?.upstream.pool.mode !== 'transaction') continue;
      const g = group(r.connection, r.database, r.user, 'transaction');
      g.busy! += r.busy;
      g.idle += r.idle;
      g.open! += r.busy + r.idle;
      g.opening! += r.opening;
      g.waiting! += r.waiting;
      g.maxwait_ms = Math.max(g.maxwait_ms!, r.maxWaitMs);
      g.waits! += r.waits;
      g.wait_ms! += r.waitMs;
      g.wait_timeouts! += r.timeouts;
    }
    for (const [connection, reason, n] of snap.transaction.pins) {
      let m = pins.get(connection);
      if (m === undefined) pins.set(connection, (m = new Map()));
      m.set(reason, (m.get(reason) ?? 0) + n);
    }
    for (const [connection, database, user, parked] of snap.parked) {
      if (byConnection.get(connection)?.upstream.pool.mode !== 'session') continue;
      group(connection, database, user, 'session').idle += parked;
    }
  }
  const order = new Map(input.connections.map((c, i) => [c.name, i]));
  const pools = [...groups.values()].sort(
    (a, b) => order.get(a.connection)! - order.get(b.connection)! || cmp(a.database, b.database) || cmp(a.user, b.user),
  );
  const connections = input.connections.map((c): ConnectionPoolsView => {
    const mine = pools.filter((g) => g.connection === c.name);
    const sessions = Math.max(0, input.sessions.get(c.name) ?? 0);
    const idle = sum(mine, (g) => g.idle);
    if (c.upstream.pool.mode === 'session') {
      // Each session holds its own upstream connection; nothing waits for one; only the parked ones are counted per group.
      return { connection: c.name, mode: 'session', size: null, max_open: null, sessions, open: null, busy: sessions, idle, opening: null, waiting: null, maxwait_ms: null, waits: null, wait_ms: null, wait_timeouts: null, pins: null };
    }
    const size = c.upstream.pool.size;
    let maxOpen = 0;
    for (let i = 0; i < input.workers; i++) maxOpen += Math.max(1, workerShare(size, i, input.workers));
    return {
      connection: c.name,
      mode: 'transaction',
      size,
      max_open: maxOpen,
      sessions,
      open: sum(mine, (g) => g.open!),
      busy: sum(mine, (g) => g.busy!),
      idle,
      opening: sum(mine, (g) => g.opening!),
      waiting: sum(mine, (g) => g.waiting!),
      maxwait_ms: Math.max(0, ...mine.map((g) => g.maxwait_ms!)),
      waits: sum(mine, (g) => g.waits!),
      wait_ms: sum(mine, (g) => g.wait_ms!),
      wait_timeouts: sum(mine, (g) => g.wait_timeouts!),
      pins: Object.fromEntries([...(pins.get(c.name) ?? new Map<string, number>())].sort(([a], [b]) => cmp(a, b))),
    };
  });
  const missing: number[] = [];
  for (let i = 0; i < input.workers; i++) if (!input.answers.has(i)) missing.push(i);
  return { at: new Date(input.at).toISOString(), workers: input.workers, missing_workers: missing, connections, pools };
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const sum = <T>(xs: readonly T[], f: (x: T) => number) => xs.reduce((n, x) => n + f(x), 0);

/**
 * Asks the workers for their pools. A request that comes while a round is out joins the next
 * one (never the current: it was asked before the request came), so a flood of requests costs
 * the workers at most one round in flight and one waiting.
 */
export interface PoolsAnswers {
  /** When the workers were asked (ms epoch). */
  at: number;
  answers: Map<number, WorkerPoolsSnapshot>;
}

export class WorkerPoolsRounds {
  private nextId = 1;
  private current: { id: number; answers: Map<number, WorkerPoolsSnapshot>; done: () => void } | null = null;
  private running: Promise<PoolsAnswers> | null = null;
  private queued: Promise<PoolsAnswers> | null = null;

  constructor(
    private readonly workers: () => number,
    private readonly ask: (id: number) => void,
    private readonly timeoutMs = POOLS_ANSWER_TIMEOUT_MS,
  ) {}

  /** Every worker's answer (those that answered within the timeout), asked now or right after the round out now. */
  collect(): Promise<PoolsAnswers> {
    if (this.running === null) return this.round();
    if (this.queued === null) {
      this.queued = this.running.then(() => {
        this.queued = null;
        // A round begun since the last one ended was asked after these requests came: join it.
        return this.running ?? this.round();
      });
    }
    return this.queued;
  }

  /** A worker's `pools` message. */
  answer(worker: number, id: number, pools: WorkerPoolsSnapshot): void {
    const c = this.current;
    if (c === null || c.id !== id) return; // late: its round already ended
    c.answers.set(worker, pools);
    if (c.answers.size >= this.workers()) c.done();
  }

  private round(): Promise<PoolsAnswers> {
    const id = this.nextId++;
    const at = Date.now();
    const answers = new Map<number, WorkerPoolsSnapshot>();
    let resolve!: (a: PoolsAnswers) => void;
    const p = new Promise<PoolsAnswers>((r) => (resolve = r));
    const done = () => {
      clearTimeout(timer);
      if (this.current?.id === id) {
        this.current = null;
        this.running = null;
      }
      resolve({ at, answers });
    };
    const timer = setTimeout(done, this.timeoutMs);
    this.current = { id, answers, done };
    this.running = p;
    if (this.workers() === 0) done();
    else this.ask(id);
    return p;
  }
}
