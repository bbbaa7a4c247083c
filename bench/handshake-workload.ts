// Workload "handshake": full TLS 1.3 handshakes (ECDSA P-256, no resumption) per proxy
// core-second, side by side: vecgate's PostgreSQL listener (PG 17 direct TLS, ALPN
// postgresql) and haproxy / nginx terminating TLS in front of a plain TCP sink, so that
// every system does exactly one server-side handshake per connection. The client
// (handshake-client.ts, its own process) closes each connection as soon as its handshake
// completes, before any application byte.
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import path from 'node:path';
import type { Server } from './bench-processes.js';
import { runMeasured } from './bench-processes.js';
import type { BenchEnvironment } from './bench-environment.js';
import type { BenchSettings } from './bench-settings.js';
import type { HandshakeClientReport } from './handshake-client.js';
import { cpuSecondsOfAll, loadAverage1 } from './proc-usage.js';
import { GENERATOR_SATURATED_CORES, fmt, type ResultTable } from './results-table.js';
import { startHaproxy, startNginxStream, type StreamProxyPeer } from './stream-proxy-peers.js';

/** Seconds each system is loaded (full run / --quick). */
export const HANDSHAKE_SEC_FULL = 10;
export const HANDSHAKE_SEC_QUICK = 4;
/** Handshakes the generator keeps in flight (per generator process). */
export const HANDSHAKE_CONCURRENCY = 16;
/**
 * Generator processes. One Node process does about one core of client-side handshakes,
 * which leaves the other core to the proxy; more would take that core from the proxy.
 */
export const HANDSHAKE_CLIENT_PROCESSES = 1;
/** The generator may run this much longer than its seconds before it is killed. */
export const HANDSHAKE_GRACE_SEC = 30;
/** Wait after the generator exits before reading the proxy's CPU: the last handshakes and closes are still being processed. */
export const HANDSHAKE_SETTLE_MS = 300;
/** ALPN protocol the client offers and every listener selects (vecgate requires it for direct TLS). */
export const HANDSHAKE_ALPN = 'postgresql';

export interface HandshakeTarget {
  system: string;
  port: number;
  /** Every pid whose CPU is the proxy's. */
  pids(): number[];
  /** The proxy's own log (vecgate): lines it writes during the run are reported. */
  output?: () => string;
  /** Connections the proxy opened to the plain TCP sink so far (haproxy, nginx): each follows one completed handshake. */
  upstreamAccepted?: () => number;
}

export interface HandshakeResult {
  system: string;
  ok: boolean;
  error?: string;
  handshakes: number;
  errors: number;
  firstError: string;
  resumed: number;
  /** Connections the proxy did not close within the client's timeout after the client's FIN. */
  closeTimeouts: number;
  seconds: number;
  handshakesPerSec: number;
  proxyCpuSec: number;
  proxyCores: number;
  proxyCpuUsPerHandshake: number;
  handshakesPerProxyCoreSec: number;
  generatorProcesses: number;
  generatorCpuSec: number;
  generatorCores: number;
  /** Connections that reached the plain TCP sink behind haproxy / nginx (null: vecgate, no upstream here). */
  upstreamConnections: number | null;
  /** Lines the proxy logged during the run (vecgate at its default level, info), and the first of them. */
  proxyLogLines: number | null;
  firstProxyLogLine: string;
  alpn: string | false | null;
  protocol: string | null;
  cipher: string | null;
  loadAvg1: number;
}

/** A plain TCP server that accepts, reads and discards, and counts the connections it got. */
export interface TcpSink {
  port: number;
  accepted(): number;
  close(): Promise<void>;
}

export async function startTcpSink(): Promise<TcpSink> {
  let accepted = 0;
  const sockets = new Set<Socket>();
  const server: NetServer = createServer((sock) => {
    accepted++;
    sockets.add(sock);
    sock.on('error', () => undefined); // the proxy resets it: nothing to report
    sock.on('end', () => sock.destroy());
    sock.on('close', () => sockets.delete(sock));
    sock.resume();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => resolve());
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('tcp sink has no port');
  return {
    port: addr.port,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface HandshakePeers {
  targets: HandshakeTarget[];
  servers: Server[];
  sink: TcpSink;
  stop(): Promise<void>;
}

/** haproxy and nginx terminating TLS with the bench certificate in front of a plain TCP sink, ALPN postgresql selected. */
export async function startHandshakePeers(
  env: BenchEnvironment,
  s: BenchSettings,
  attempt: <T>(what: string, fn: () => Promise<T>) => Promise<T | null>,
): Promise<HandshakePeers> {
  const sink = await startTcpSink();
  const tls = {
    dir: env.dir,
    serverCert: env.pki.serverCert,
    serverKey: env.pki.serverKey,
    caCert: env.pki.caCert,
    upstreamPort: sink.port,
    upstreamTls: false,
    alpn: [HANDSHAKE_ALPN],
  };
  const targets: HandshakeTarget[] = [];
  const servers: Server[] = [];
  const starts = [
    ['haproxy', () => startHaproxy({ ...tls, threads: s.proxyWorkers })],
    ['nginx', () => startNginxStream({ ...tls, workers: s.proxyWorkers })],
  ] as const;
  for (const [name, start] of starts) {
    const p: StreamProxyPeer | null = await attempt(`start ${name} (handshake rows)`, start);
    if (p) servers.push(p.server), targets.push({ system: name, port: p.port, pids: p.pids, upstreamAccepted: sink.accepted });
  }
  return {
    targets,
    servers,
    sink,
    async stop() {
      for (const srv of servers) await srv.stop();
      await sink.close();
    },
  };
}

export function handshakeSeconds(s: BenchSettings): number {
  return s.mode === 'quick' ? HANDSHAKE_SEC_QUICK : HANDSHAKE_SEC_FULL;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runHandshake(env: BenchEnvironment, s: BenchSettings, t: HandshakeTarget): Promise<HandshakeResult> {
  const seconds = handshakeSeconds(s);
  const client = path.join(env.repoRoot, 'dist', 'bench', 'handshake-client.js');
  const args = [client, '--port', String(t.port), '--ca', env.pki.caCert, '--concurrency', String(HANDSHAKE_CONCURRENCY), '--seconds', String(seconds), '--alpn', HANDSHAKE_ALPN];
  const loadAvg1 = loadAverage1();
  const pids = t.pids();
  const log0 = t.output?.().length ?? 0;
  const up0 = t.upstreamAccepted?.() ?? 0;
  const cpu0 = cpuSecondsOfAll(pids);
  const runs = await Promise.all(Array.from({ length: HANDSHAKE_CLIENT_PROCESSES }, () => runMeasured(process.execPath, args, { timeoutSec: seconds + HANDSHAKE_GRACE_SEC })));
  await sleep(HANDSHAKE_SETTLE_MS);
  const cpu1 = cpuSecondsOfAll(t.pids());
  const up1 = t.upstreamAccepted?.() ?? 0;
  const logged = t.output ? t.output().slice(log0).split('\n').filter((l) => l.trim() !== '') : null;

  const reports: HandshakeClientReport[] = [];
  let error: string | undefined;
  for (const r of runs) {
    try {
      reports.push(JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as HandshakeClientReport);
    } catch {
      error ??= `handshake-client gave no report (exit ${String(r.code)}${r.timedOut ? ', timed out' : ''}): ${r.stderr.trim().slice(-300)}`;
    }
  }
  const sum = (f: (r: HandshakeClientReport) => number) => reports.reduce((n, r) => n + f(r), 0);
  const handshakes = sum((r) => r.handshakes);
  const errors = sum((r) => r.errors);
  const window = Math.max(0, ...reports.map((r) => r.seconds));
  const generatorCpuSec = sum((r) => r.cpuSec);
  const proxyCpuSec = cpu1 - cpu0;
  const resumed = sum((r) => r.resumed);
  const ok = error === undefined && handshakes > 0 && errors === 0 && resumed === 0;
  const first = reports.find((r) => r.protocol !== null);
  return {
    system: t.system,
    ok,
    error: error ?? (ok ? undefined : resumed > 0 ? `${resumed} handshakes resumed a session (not full handshakes)` : `${errors} failed handshakes, first: ${reports.find((r) => r.firstError)?.firstError ?? 'none completed'}`),
    handshakes,
    errors,
    firstError: reports.find((r) => r.firstError)?.firstError ?? '',
    resumed,
    closeTimeouts: sum((r) => r.closeTimeouts),
    seconds: window,
    handshakesPerSec: handshakes / window,
    proxyCpuSec,
    proxyCores: proxyCpuSec / window,
    proxyCpuUsPerHandshake: (proxyCpuSec * 1e6) / handshakes,
    handshakesPerProxyCoreSec: proxyCpuSec > 0 ? handshakes / proxyCpuSec : NaN,
    generatorProcesses: HANDSHAKE_CLIENT_PROCESSES,
    generatorCpuSec,
    generatorCores: generatorCpuSec / window,
    upstreamConnections: t.upstreamAccepted ? up1 - up0 : null,
    proxyLogLines: logged === null ? null : logged.length,
    firstProxyLogLine: logged?.[0]?.slice(0, 500) ?? '',
    alpn: first?.alpn ?? null,
    protocol: first?.protocol ?? null,
    cipher: first?.cipher ?? null,
    loadAvg1,
  };
}

export function handshakeTable(results: HandshakeResult[], s: BenchSettings): ResultTable {
  const ref = results.find((r) => r.system === 'haproxy' && r.ok);
  return {
    title: `TLS handshakes per proxy core-second: full TLS 1.3 handshakes (ECDSA P-256), ${HANDSHAKE_CLIENT_PROCESSES}×${HANDSHAKE_CONCURRENCY} in flight, ${handshakeSeconds(s)} s`,
    columns: [
      'system',
      'status',
      'handshakes/s',
      'proxy cores',
      'proxy CPU µs / handshake',
      'handshakes per proxy core-second',
      'vs haproxy',
      'reached upstream',
      'proxy log lines',
      'negotiated',
      'generator cores',
    ],
    rows: results.map((r) => [
      r.system,
      r.ok ? (r.closeTimeouts > 0 ? `ok; ${r.closeTimeouts} connections not closed by the proxy in time` : 'ok') : `FAILED: ${r.error ?? ''}`,
      fmt(r.handshakesPerSec, 0),
      fmt(r.proxyCores),
      fmt(r.proxyCpuUsPerHandshake, 0),
      fmt(r.handshakesPerProxyCoreSec, 0),
      ref && r.system !== 'haproxy' ? `${fmt((r.handshakesPerProxyCoreSec / ref.handshakesPerProxyCoreSec) * 100, 0)}%` : r.system === 'haproxy' ? 'reference' : '—',
      r.upstreamConnections === null ? '—' : `${fmt(r.upstreamConnections, 0)} of ${fmt(r.handshakes, 0)}`,
      r.proxyLogLines === null ? '—' : String(r.proxyLogLines),
      `${r.protocol ?? '?'} ${r.cipher ?? '?'} ALPN ${r.alpn === false ? 'none' : (r.alpn ?? '?')}`,
      `${fmt(r.generatorCores)}${r.generatorCores / r.generatorProcesses >= GENERATOR_SATURATED_CORES ? ' (saturated)' : ''}`,
    ]),
    notes: [
      `Client: \`handshake-client.ts\` (Node \`tls.connect\`, its own process), ${HANDSHAKE_CONCURRENCY} loops each opening a TCP connection, doing a full TLS 1.3 handshake (server certificate verified against the CA and the name localhost, ALPN \`${HANDSHAKE_ALPN}\` and only TLS_AES_128_GCM_SHA256 offered so every server runs the same key schedule, X25519 key share, no session offered, so no resumption: checked per handshake) and calling \`end()\` on 'secureConnect' (client Finished flushed, then FIN; \`destroy()\` there would drop the queued Finished and reset, so no server would complete its handshake); the next handshake starts when the server has closed. No application byte is sent. Every server sends its default TLS 1.3 session tickets after the handshake (part of its cost).`,
      'vecgate: its PostgreSQL listener with PG 17 direct TLS (ClientHello straight away, no SSLRequest), `server.workers` as above; the client leaves before the startup message, so no token check and no upstream connection happen. haproxy (`mode tcp`, `bind ... ssl crt ... alpn postgresql`) and nginx (stream, `listen ... ssl`, `ssl_alpn postgresql`) terminate TLS in front of a plain TCP sink (in the benchmark process, not charged to anyone): one server-side handshake per connection, the same as vecgate. "reached upstream" = connections the sink accepted, i.e. handshakes the proxy completed and acted on.',
      `proxy CPU = utime+stime of every proxy process and thread from /proc (nginx: master and workers), read before the client starts and ${HANDSHAKE_SETTLE_MS} ms after it exits; handshakes per proxy core-second = handshakes / proxy CPU seconds. handshakes/s is bounded by the generator (about one core of client handshakes), not by the proxy: compare the per-core-second figure. "proxy log lines" = lines vecgate logged during the run at its default level (info): 0 means nothing per connection.`,
    ],
  };
}
