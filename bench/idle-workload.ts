// Workload 4: memory per idle proxied session. A fresh proxy, its RSS, then N sessions
// opened through it and held idle (each also holds a PostgreSQL backend), its RSS again:
// (after - before) / sessions held.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { RAISE_NOFILE_SH } from './bench-processes.js';
import type { BenchEnvironment, PgTarget } from './bench-environment.js';
import type { BenchSettings } from './bench-settings.js';
import { rssKbOf } from './proc-usage.js';
import { fmt, type ResultTable } from './results-table.js';

/** Opening all the sessions may take this long. */
export const IDLE_OPEN_TIMEOUT_MS = 240_000;
/** Wait after the last session opened before reading RSS (allocator and GC settle). */
export const IDLE_SETTLE_MS = 2000;
/** A second reading this long after the first: the sessions have been idle a while (V8 gives back the young generation it grew while they opened). */
export const IDLE_LONG_MS = 15_000;
/** PostgreSQL connections kept free for the benchmark's own psql. */
export const PG_RESERVED_CONNECTIONS = 20;
/** How long the PostgreSQL backends of closed sessions may take to go away. */
export const BACKENDS_GONE_TIMEOUT_MS = 60_000;

export interface IdleResult {
  system: string;
  asked: number;
  held: number;
  failed: number;
  firstError: string;
  openSec: number;
  rssBeforeKb: number;
  rssAfterKb: number;
  kbPerSession: number;
  /** IDLE_LONG_MS later, the sessions still held. */
  rssIdleKb: number;
  kbPerSessionIdle: number;
  /** RSS growth per session of the second half of the sessions (after the first half was open). */
  kbPerSessionMarginal: number;
  ok: boolean;
  error?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function backendCount(env: BenchEnvironment): Promise<number> {
  return Number((await env.cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")).trim());
}

export async function waitForBackendsGone(env: BenchEnvironment): Promise<void> {
  const deadline = Date.now() + BACKENDS_GONE_TIMEOUT_MS;
  while ((await backendCount(env)) > 1 && Date.now() < deadline) await sleep(250);
}

export function idleSessionsToAsk(s: BenchSettings): number {
  return Math.min(s.idleSessions, s.pgMaxConnections - PG_RESERVED_CONNECTIONS);
}

interface IdleBatch {
  report: { held: number; failed: number; firstError: string; openSec: number };
  error?: string;
  /** Closes the batch's sessions (its process exits). */
  stop(): Promise<void>;
}

/** Opens `count` sessions through `t` in a child process that holds them until stopped. */
async function openIdleBatch(env: BenchEnvironment, t: PgTarget, count: number): Promise<IdleBatch> {
  const script = path.join(env.repoRoot, 'dist', 'bench', 'idle-sessions.js');
  const args = [script, '--port', String(t.port), '--ca', env.pki.caCert, '--database', t.dbname, '--user', t.user, '--password-env', 'VG_BENCH_PASSWORD', '--count', String(count)];
  const child = spawn('sh', ['-c', `${RAISE_NOFILE_SH} exec "$0" "$@"`, process.execPath, ...args], {
    env: { ...process.env, VG_BENCH_PASSWORD: t.password },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + IDLE_OPEN_TIMEOUT_MS;
  while (!out.includes('\n') && child.exitCode === null && Date.now() < deadline) await sleep(100);
  let report: IdleBatch['report'] = { held: 0, failed: 0, firstError: '', openSec: NaN };
  let error: string | undefined;
  try {
    report = JSON.parse(out.split('\n')[0]!) as typeof report;
  } catch {
    error = `idle-sessions gave no report (${Date.now() >= deadline ? 'timed out' : `exit ${String(child.exitCode)}`}): ${err.slice(-300)}`;
  }
  return {
    report,
    ...(error !== undefined ? { error } : {}),
    stop: async () => {
      child.stdin.end();
      const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/**
 * RSS before, then with half the sessions open, then with all of them: the second half's
 * cost per session is the marginal figure (what one more idle session costs once the
 * process's fixed growth — V8's young generation, allocator arenas — has happened), the
 * whole run's is the average.
 */
/** `asked`: sessions to open (default idleSessionsToAsk: one backend each); pooled proxies hold more than PostgreSQL's max_connections. */
export async function runIdle(env: BenchEnvironment, s: BenchSettings, t: PgTarget, asked = idleSessionsToAsk(s)): Promise<IdleResult> {
  await waitForBackendsGone(env);
  await sleep(IDLE_SETTLE_MS);
  const pid = t.proxyPid();
  const rssBeforeKb = rssKbOf(pid);
  const firstCount = Math.floor(asked / 2);
  const first = await openIdleBatch(env, t, firstCount);
  await sleep(IDLE_SETTLE_MS);
  const rssHalfKb = rssKbOf(pid);
  const second = first.error === undefined ? await openIdleBatch(env, t, asked - firstCount) : null;
  const report = {
    held: first.report.held + (second?.report.held ?? 0),
    failed: first.report.failed + (second?.report.failed ?? 0),
    firstError: first.report.firstError || (second?.report.firstError ?? ''),
    openSec: first.report.openSec + (second?.report.openSec ?? 0),
  };
  const error = first.error ?? second?.error;
  await sleep(IDLE_SETTLE_MS);
  const rssAfterKb = rssKbOf(pid);
  await sleep(IDLE_LONG_MS);
  const rssIdleKb = rssKbOf(pid);
  await Promise.all([first.stop(), second?.stop()]);
  const ok = error === undefined && report.held > 0;
  const secondHeld = second?.report.held ?? 0;
  return {
    system: t.system,
    asked,
    held: report.held,
    failed: report.failed,
    firstError: report.firstError,
    openSec: report.openSec,
    rssBeforeKb,
    rssAfterKb,
    kbPerSession: report.held > 0 ? (rssAfterKb - rssBeforeKb) / report.held : NaN,
    rssIdleKb,
    kbPerSessionIdle: report.held > 0 ? (rssIdleKb - rssBeforeKb) / report.held : NaN,
    kbPerSessionMarginal: secondHeld > 0 ? (rssAfterKb - rssHalfKb) / secondHeld : NaN,
    ok,
    error: error ?? (ok ? undefined : `no session held: ${report.firstError}`),
  };
}

export function idleTable(results: IdleResult[], s: BenchSettings): ResultTable {
  return {
    title: `Idle sessions (asked ${fmt(s.idleSessions, 0)}, capped at ${fmt(idleSessionsToAsk(s), 0)} by PostgreSQL max_connections=${s.pgMaxConnections})`,
    columns: ['system', 'status', 'held', 'failed', 'open s', 'RSS before MB', 'RSS after MB', 'kB per idle session', `RSS after ${IDLE_LONG_MS / 1000} s idle MB`, 'kB per session, idle', 'kB per session, second half'],
    rows: results.map((r) => [
      r.system,
      r.ok ? (r.failed > 0 ? `partial: ${r.firstError.slice(0, 120)}` : 'ok') : `FAILED: ${r.error ?? ''}`,
      fmt(r.held, 0),
      fmt(r.failed, 0),
      fmt(r.openSec, 1),
      fmt(r.rssBeforeKb / 1024, 1),
      fmt(r.rssAfterKb / 1024, 1),
      fmt(r.kbPerSession, 1),
      fmt(r.rssIdleKb / 1024, 1),
      fmt(r.kbPerSessionIdle, 1),
      fmt(r.kbPerSessionMarginal, 1),
    ]),
    notes: [
      `A freshly started proxy; node-postgres clients (TLS verify-full, password = token for vecgate, SCRAM for pgbouncer) opened 16 at a time and held idle, in two halves; VmRSS of the proxy process from /proc before, 2 s after each half opened, and ${(IDLE_SETTLE_MS + IDLE_LONG_MS) / 1000} s after it (still held: what a proxy full of idle notebooks costs). The last column is the second half's growth per session: the cost of one more session once the process's one-time growth (V8's young generation grows while thousands of sessions open; allocator arenas) has happened.`,
      'Every proxied session also holds a PostgreSQL backend (pgbouncer session mode too), so PostgreSQL max_connections, not the proxies, bounds the count on this 24 GB machine.',
    ],
  };
}
