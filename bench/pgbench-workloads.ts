// Workloads 2, 3 and 5, all driven by pgbench: select-only throughput (-S) at several
// client counts, connection churn (-S -C: a new TLS connection per transaction), and
// added latency of 64 B / 6 KB / 60 KB results at a fixed open-loop rate (-R, --log).
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PG_BIN } from '../test/harness/pg-cluster.js';
import { runMeasured } from './bench-processes.js';
import { clientEnv, conninfo, type BenchEnvironment, type PgTarget } from './bench-environment.js';
import type { BenchSettings } from './bench-settings.js';
import { cpuSecondsOfAll, loadAverage1 } from './proc-usage.js';
import { GENERATOR_SATURATED_CORES, fmt, type ResultTable } from './results-table.js';

/** pgbench may run this much longer than its -T before it is killed. */
export const PGBENCH_GRACE_SEC = 60;
const PGBENCH = path.join(PG_BIN, 'pgbench');

interface PgbenchRun {
  ok: boolean;
  error?: string;
  tps: number;
  latencyAvgMs: number;
  /** pgbench's "average connection time" (with -C: one connection per transaction). */
  connectMs: number;
  transactions: number;
  failed: number;
  wallSec: number;
  clientCpuSec: number;
  /** Client CPU per pgbench thread, in cores. */
  clientCoresPerThread: number;
  proxyCpuSec: number | null;
  loadAvg1: number;
}

async function pgbench(env: BenchEnvironment, t: PgTarget, args: string[], durationSec: number, threads: number): Promise<PgbenchRun> {
  const pids = t.proxyPids();
  const loadAvg1 = loadAverage1();
  const cpu0 = cpuSecondsOfAll(pids);
  const r = await runMeasured(PGBENCH, [...args, conninfo(t, env.pki.caCert)], { env: clientEnv(t), timeoutSec: durationSec + PGBENCH_GRACE_SEC });
  const cpu1 = cpuSecondsOfAll(pids);
  const num = (re: RegExp) => {
    const m = re.exec(r.stdout);
    return m ? Number(m[1]) : NaN;
  };
  const tps = num(/^tps = ([\d.]+)/m);
  const transactions = num(/^number of transactions actually processed: (\d+)/m);
  const failed = num(/^number of failed transactions: (\d+)/m);
  const ok = r.code === 0 && Number.isFinite(tps) && transactions > 0 && !(failed > 0);
  const errLine = r.stderr.split('\n').find((l) => /error|fatal|could not/i.test(l)) ?? r.stderr.trim().split('\n').pop() ?? '';
  return {
    ok,
    error: ok ? undefined : `pgbench exit ${String(r.code)}${r.timedOut ? ' (timed out)' : ''}: ${errLine.slice(0, 300)}`,
    tps,
    latencyAvgMs: num(/^latency average = ([\d.]+) ms/m),
    connectMs: num(/^average connection time = ([\d.]+) ms/m),
    transactions,
    failed: Number.isFinite(failed) ? failed : 0,
    wallSec: r.wallSec,
    clientCpuSec: r.cpuSec,
    clientCoresPerThread: r.cpuSec / r.wallSec / threads,
    proxyCpuSec: t.system === 'direct' ? null : cpu1 - cpu0,
    loadAvg1,
  };
}

// ---- select-only ----

export interface SelectResult extends PgbenchRun {
  system: string;
  clients: number;
  proxyCpuMsPer1kTx: number | null;
}

/** `ratePerSec`: pgbench -R (a fixed transaction rate) instead of as fast as it can. */
export async function runSelect(env: BenchEnvironment, s: BenchSettings, t: PgTarget, clients: number, ratePerSec?: number, queryMode: 'simple' | 'prepared' = 'simple'): Promise<SelectResult> {
  const threads = Math.min(s.pgbenchThreads, clients);
  const rate = ratePerSec === undefined ? [] : ['-R', String(Math.round(ratePerSec))];
  const mode = queryMode === 'prepared' ? ['-M', 'prepared'] : [];
  const r = await pgbench(env, t, ['-S', '-n', ...mode, '-c', String(clients), '-j', String(threads), ...rate, '-T', String(s.selectSec)], s.selectSec, threads);
  const system = queryMode === 'prepared' ? `${t.system} (-M prepared)` : t.system;
  return { ...r, system, clients, proxyCpuMsPer1kTx: r.proxyCpuSec === null || !(r.transactions > 0) ? null : (r.proxyCpuSec * 1000) / (r.transactions / 1000) };
}

export function selectTable(results: SelectResult[], s: BenchSettings): ResultTable {
  const rows = results.map((r) => {
    const d = results.find((x) => x.system === 'direct' && x.clients === r.clients && x.ok);
    return [
      r.system,
      String(r.clients),
      r.ok ? 'ok' : `FAILED: ${r.error ?? ''}`,
      fmt(r.tps, 0),
      d && r.system !== 'direct' ? `${fmt((r.tps / d.tps) * 100, 0)}%` : 'baseline',
      fmt(r.latencyAvgMs, 3),
      r.proxyCpuMsPer1kTx === null ? '—' : fmt(r.proxyCpuMsPer1kTx, 1),
      r.proxyCpuSec === null ? '—' : fmt(r.proxyCpuSec / r.wallSec),
      `${fmt(r.clientCoresPerThread)}${r.clientCoresPerThread >= GENERATOR_SATURATED_CORES ? ' (saturated)' : ''}`,
    ];
  });
  return {
    title: `pgbench -S (select-only), -T ${s.selectSec}, scale ${s.pgbenchScale}`,
    columns: ['system', 'clients', 'status', 'TPS', 'vs direct', 'avg latency ms', 'proxy CPU ms / 1k tx', 'proxy cores', 'pgbench cores/thread'],
    rows,
    notes: [`\`pgbench -S -n -c C -j min(${s.pgbenchThreads},C) -T ${s.selectSec}\`, TLS verify-full from pgbench; tables made by \`pgbench -i -s ${s.pgbenchScale}\` direct.`],
  };
}

// ---- churn ----

export interface ChurnResult extends PgbenchRun {
  system: string;
  clients: number;
  proxyCores: number | null;
  handshakesPerProxyCoreSec: number | null;
}

export async function runChurn(env: BenchEnvironment, s: BenchSettings, t: PgTarget): Promise<ChurnResult> {
  const threads = Math.min(s.pgbenchThreads, s.churnClients);
  const r = await pgbench(env, t, ['-S', '-C', '-n', '-c', String(s.churnClients), '-j', String(threads), '-T', String(s.churnSec)], s.churnSec, threads);
  const proxyCores = r.proxyCpuSec === null ? null : r.proxyCpuSec / r.wallSec;
  return { ...r, system: t.system, clients: s.churnClients, proxyCores, handshakesPerProxyCoreSec: proxyCores === null || proxyCores <= 0 ? null : r.tps / proxyCores };
}

export function churnTable(results: ChurnResult[], s: BenchSettings): ResultTable {
  const d = results.find((x) => x.system === 'direct' && x.ok);
  return {
    title: `Connection churn: pgbench -S -C (a new TLS connection per transaction), ${s.churnClients} clients, -T ${s.churnSec}`,
    columns: ['system', 'status', 'connections/s (TPS)', 'vs direct', 'avg connect ms', 'proxy cores', 'proxy CPU ms / connection', 'handshakes per proxy core-second', 'pgbench cores/thread'],
    rows: results.map((r) => [
      r.system,
      r.ok ? 'ok' : `FAILED: ${r.error ?? ''}`,
      fmt(r.tps, 0),
      d && r.system !== 'direct' ? `${fmt((r.tps / d.tps) * 100, 0)}%` : 'baseline',
      fmt(r.connectMs),
      r.proxyCores === null ? '—' : fmt(r.proxyCores),
      r.proxyCpuSec === null || !(r.transactions > 0) ? '—' : fmt((r.proxyCpuSec * 1000) / r.transactions),
      r.handshakesPerProxyCoreSec === null ? '—' : fmt(r.handshakesPerProxyCoreSec, 0),
      `${fmt(r.clientCoresPerThread)}${r.clientCoresPerThread >= GENERATOR_SATURATED_CORES ? ' (saturated)' : ''}`,
    ]),
    notes: [
      'Each transaction is a full TLS 1.3 handshake (ECDSA P-256) with the proxy plus authentication. vecgate: cleartext token over TLS (JWT verified) and a new upstream TLS + SCRAM connection per client connection. pgbouncer: client SCRAM, server connections kept in its pool (no upstream handshake per client). direct: a PostgreSQL backend fork, TLS and SCRAM per connection.',
      'handshakes per proxy core-second = TPS / (proxy CPU s / wall s).',
    ],
  };
}

// ---- added latency ----

export interface LatencyResult {
  system: string;
  resultBytes: number;
  ok: boolean;
  error?: string;
  ratePerSec: number;
  transactions: number;
  /** Latency from the scheduled start (includes schedule lag: open loop, no coordinated omission). */
  p50us: number;
  p99us: number;
  /** Service time only (latency minus schedule lag). */
  serviceP50us: number;
  serviceP99us: number;
  proxyCpuSec: number | null;
  clientCpuSec: number;
  loadAvg1: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function runLatency(env: BenchEnvironment, s: BenchSettings, t: PgTarget, resultBytes: number): Promise<LatencyResult> {
  const dir = path.join(env.dir, 'latency', `${t.system}-${resultBytes}`);
  mkdirSync(dir, { recursive: true });
  const script = path.join(dir, 'query.sql');
  writeFileSync(script, `SELECT repeat('x', ${resultBytes});\n`);
  const threads = Math.min(s.pgbenchThreads, s.latencyClients);
  const r = await pgbench(
    env,
    t,
    ['-n', '-f', script, '-c', String(s.latencyClients), '-j', String(threads), '-R', String(s.latencyRatePerSec), '-T', String(s.latencySec), '--log', `--log-prefix=${path.join(dir, 'log')}`],
    s.latencySec,
    threads,
  );
  const total: number[] = [];
  const service: number[] = [];
  for (const f of readdirSync(dir).filter((n) => n.startsWith('log.'))) {
    for (const line of readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      // client_id transaction_no time script_no time_epoch time_us schedule_lag
      const c = line.split(' ');
      if (c.length < 7) continue;
      const us = Number(c[2]);
      const lag = Number(c[6]);
      if (!Number.isFinite(us)) continue;
      total.push(us);
      service.push(us - (Number.isFinite(lag) ? lag : 0));
    }
  }
  total.sort((a, b) => a - b);
  service.sort((a, b) => a - b);
  const ok = r.ok && total.length > 0;
  return {
    system: t.system,
    resultBytes,
    ok,
    error: ok ? undefined : (r.error ?? 'no per-transaction log lines'),
    ratePerSec: s.latencyRatePerSec,
    transactions: total.length,
    p50us: percentile(total, 50),
    p99us: percentile(total, 99),
    serviceP50us: percentile(service, 50),
    serviceP99us: percentile(service, 99),
    proxyCpuSec: r.proxyCpuSec,
    clientCpuSec: r.clientCpuSec,
    loadAvg1: r.loadAvg1,
  };
}

export function latencyTable(results: LatencyResult[], s: BenchSettings): ResultTable {
  const sizeName = (n: number) => (n >= 1024 ? `${n / 1024} KB` : `${n} B`);
  return {
    title: `Added latency at ${s.latencyRatePerSec} tx/s open loop (${s.latencyClients} clients, -T ${s.latencySec})`,
    columns: ['result', 'system', 'status', 'p50 µs', 'p99 µs', 'added p50 µs', 'added p99 µs', 'service p50 µs', 'tx'],
    rows: results.map((r) => {
      const d = results.find((x) => x.system === 'direct' && x.resultBytes === r.resultBytes && x.ok);
      const added = (a: number, b: number | undefined) => (r.system === 'direct' ? 'baseline' : b === undefined ? '—' : fmt(a - b, 0));
      return [
        sizeName(r.resultBytes),
        r.system,
        r.ok ? 'ok' : `FAILED: ${r.error ?? ''}`,
        fmt(r.p50us, 0),
        fmt(r.p99us, 0),
        added(r.p50us, d?.p50us),
        added(r.p99us, d?.p99us),
        fmt(r.serviceP50us, 0),
        String(r.transactions),
      ];
    }),
    notes: [
      "`SELECT repeat('x', N)` from a pgbench script, `-R` rate with `--log`: latency measured from each transaction's scheduled start (open loop, includes schedule lag); service = latency − lag. added = proxy − direct.",
      'p99 over a few thousand transactions on a shared 2-core machine is mostly scheduling noise (a negative added p99 means the difference is inside that noise); p50 is the figure to compare.',
    ],
  };
}
