// Workload 1: CPU seconds per GB with TLS on both legs. A `COPY ... TO STDOUT` read by
// psql through direct / vecgate / pgbouncer, and the same bytes as a plain TLS stream
// (node TLS source -> proxy -> node TLS sink) through nginx and haproxy, which cannot
// speak PostgreSQL's SSLRequest: the crypto-bound reference.
import path from 'node:path';
import { runMeasured } from './bench-processes.js';
import { clientEnv, conninfo, type BenchEnvironment, type PgTarget } from './bench-environment.js';
import { COPY_ROW_WIRE_BYTES, type BenchSettings } from './bench-settings.js';
import { cpuSecondsOfAll, loadAverage1 } from './proc-usage.js';
import { GENERATOR_SATURATED_CORES, fmt, type ResultTable } from './results-table.js';

/** A COPY run is abandoned after this long. */
export const COPY_TIMEOUT_SEC = 300;

export interface CopyResult {
  system: string;
  transport: 'postgres COPY' | 'TLS stream';
  ok: boolean;
  error?: string;
  bytes: number;
  wallSec: number;
  mbPerSec: number;
  proxyCpuSec: number | null;
  proxyCpuSecPerGB: number | null;
  clientCpuSec: number;
  clientCores: number;
  loadAvg1: number;
}

export function copyRows(settings: BenchSettings): number {
  return Math.round(settings.copyBytes / COPY_ROW_WIRE_BYTES);
}

function finish(r: Omit<CopyResult, 'mbPerSec' | 'proxyCpuSecPerGB' | 'clientCores'>): CopyResult {
  const gb = r.bytes / 1e9;
  return {
    ...r,
    mbPerSec: r.bytes / 1e6 / r.wallSec,
    proxyCpuSecPerGB: r.proxyCpuSec === null ? null : r.proxyCpuSec / gb,
    clientCores: r.clientCpuSec / r.wallSec,
  };
}

export async function runCopy(env: BenchEnvironment, settings: BenchSettings, t: PgTarget): Promise<CopyResult> {
  const rows = copyRows(settings);
  const sql = `COPY (SELECT repeat('x', 1000) FROM generate_series(1, ${rows})) TO STDOUT`;
  const pids = t.proxyPids();
  const loadAvg1 = loadAverage1();
  const cpu0 = cpuSecondsOfAll(pids);
  const r = await runMeasured('/usr/bin/psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql, conninfo(t, env.pki.caCert)], {
    env: clientEnv(t),
    timeoutSec: COPY_TIMEOUT_SEC,
    discardStdout: true,
  });
  const cpu1 = cpuSecondsOfAll(pids);
  const ok = r.code === 0 && r.stderr.trim() === '';
  return finish({
    system: t.system,
    transport: 'postgres COPY',
    ok,
    error: ok ? undefined : `psql exit ${String(r.code)}${r.timedOut ? ' (timed out)' : ''}: ${r.stderr.trim().slice(0, 300)}`,
    bytes: rows * COPY_ROW_WIRE_BYTES,
    wallSec: r.wallSec,
    proxyCpuSec: t.system === 'direct' ? null : cpu1 - cpu0,
    clientCpuSec: r.cpuSec,
    loadAvg1,
  });
}

/** Reads the TLS source's stream through `port` (the source itself, or a proxy in front of it). */
export async function runStream(env: BenchEnvironment, settings: BenchSettings, system: string, port: number, pids: number[]): Promise<CopyResult> {
  const expected = copyRows(settings) * COPY_ROW_WIRE_BYTES;
  const loadAvg1 = loadAverage1();
  const cpu0 = cpuSecondsOfAll(pids);
  const r = await runMeasured(process.execPath, [path.join(env.repoRoot, 'dist', 'bench', 'tls-stream-sink.js'), '--port', String(port), '--ca', env.pki.caCert], {
    timeoutSec: COPY_TIMEOUT_SEC,
  });
  const cpu1 = cpuSecondsOfAll(pids);
  let bytes = 0;
  try {
    bytes = (JSON.parse(r.stdout.trim()) as { bytes: number }).bytes;
  } catch {
    // reported below
  }
  const ok = r.code === 0 && bytes === expected;
  return finish({
    system,
    transport: 'TLS stream',
    ok,
    error: ok ? undefined : `sink exit ${String(r.code)}, ${bytes} of ${expected} bytes: ${r.stderr.trim().slice(0, 300)}`,
    bytes: expected,
    wallSec: r.wallSec,
    proxyCpuSec: pids.length === 0 ? null : cpu1 - cpu0,
    clientCpuSec: r.cpuSec,
    loadAvg1,
  });
}

export function copyTable(results: CopyResult[], settings: BenchSettings): ResultTable {
  const directOf = (transport: string) => results.find((r) => r.transport === transport && r.system === 'direct' && r.ok);
  const rows = results.map((r) => {
    const d = directOf(r.transport);
    return [
      r.system,
      r.transport,
      r.ok ? 'ok' : `FAILED: ${r.error ?? ''}`,
      fmt(r.mbPerSec, 0),
      d && r.system !== 'direct' ? `${fmt((r.mbPerSec / d.mbPerSec) * 100, 0)}%` : 'baseline',
      r.proxyCpuSecPerGB === null ? '—' : fmt(r.proxyCpuSecPerGB),
      fmt(r.clientCpuSec / (r.bytes / 1e9)),
      `${fmt(r.clientCores)}${r.clientCores >= GENERATOR_SATURATED_CORES ? ' (saturated)' : ''}`,
    ];
  });
  return {
    title: `CPU per GB, TLS 1.3 on both legs (${fmt(settings.copyBytes / 1e6, 0)} MB)`,
    columns: ['system', 'transport', 'status', 'MB/s', 'vs direct', 'proxy CPU s/GB', 'client CPU s/GB', 'client cores'],
    rows,
    notes: [
      `postgres COPY: \`COPY (SELECT repeat('x', 1000) FROM generate_series(1, ${copyRows(settings)})) TO STDOUT\` read by psql into /dev/null; GB = 10^9 wire bytes of CopyData.`,
      'TLS stream: a node TLS source sends the same bytes (CopyData-shaped), a node TLS client reads them; nginx (stream, proxy_ssl) and haproxy (mode tcp, ssl verify required) in between. The crypto-bound reference, not PostgreSQL.',
      'proxy CPU = utime+stime of every proxy process/thread from /proc before and after. "client cores" = client CPU s / wall s (psql or the node sink); at about 1.0 the client, not the proxy, limits MB/s.',
      'Everything (PostgreSQL backend, proxy, client) shares the 2 cores: MB/s is bounded by the sum, s/GB is the figure to compare.',
    ],
  };
}
