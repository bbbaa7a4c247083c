// `npm run bench` / `npm run bench:quick`: runs the benchmark matrix side by side (direct,
// vecgate, pgbouncer, and nginx/haproxy for the TLS-stream reference and the HTTP rows) on loopback, prints
// markdown tables and writes bench/RESULTS.md and bench/results/<date>-<commit>[-quick].json.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePortOn } from '../src/dev/free-port.js';
import { killAllServers, startServer, type Server } from './bench-processes.js';
import { directTarget, setUpEnvironment, type BenchEnvironment, type PgTarget } from './bench-environment.js';
import { FULL_SETTINGS, QUICK_SETTINGS, type BenchSettings } from './bench-settings.js';
import { copyRows, copyTable, runCopy, runStream, type CopyResult } from './copy-workload.js';
import { httpLatencyTable, httpScenarios, httpTable, runHttpLatency, runHttpPeak, runHttpScenario, startHttpTargets, warmUpHttpTargets, type HttpLatencyResult, type HttpResult, type HttpTargets } from './http-workloads.js';
import { httpSettings } from './http-settings.js';
import { handshakeSeconds, handshakeTable, runHandshake, startHandshakePeers, type HandshakeResult, type HandshakeTarget } from './handshake-workload.js';
import { idleSessionsToAsk, idleTable, runIdle, waitForBackendsGone, type IdleResult } from './idle-workload.js';
import { machineInfo, type MachineInfo } from './machine-info.js';
import { recordingTable, runRecordingRows, type RecordingResult } from './recording-workload.js';
import { startVecgatePgTarget } from './vecgate-peer.js';
import { churnTable, latencyTable, runChurn, runLatency, runSelect, selectTable, type ChurnResult, type LatencyResult, type SelectResult } from './pgbench-workloads.js';
import { startPgbouncer } from './pgbouncer-peer.js';
import { loadAverage1 } from './proc-usage.js';
import { renderTable, type ResultTable } from './results-table.js';
import { startHaproxy, startNginxStream, type StreamProxyPeer } from './stream-proxy-peers.js';
import { COPY_ROW_WIRE_BYTES } from './bench-settings.js';
import { ensureBenchPeers } from './system-deps.js';

const WORKLOADS = ['copy', 'select', 'churn', 'handshake', 'latency', 'http', 'recording', 'idle', 'pooled'] as const;
/** Backends of the pooled rows (issue #18's targets: 20). */
const POOLED_BACKENDS = 20;
/** Workloads that need the PostgreSQL-speaking targets (vecgate postgres, pgbouncer). */
const PG_WORKLOADS: readonly Workload[] = ['copy', 'select', 'churn', 'latency'];
type Workload = (typeof WORKLOADS)[number];

interface Results {
  mode: BenchSettings['mode'];
  settings: BenchSettings;
  machine: MachineInfo;
  failures: string[];
  copy: CopyResult[];
  select: SelectResult[];
  churn: ChurnResult[];
  /** Full TLS 1.3 handshakes per proxy core-second (vecgate direct TLS, haproxy, nginx). */
  handshake: HandshakeResult[];
  latency: LatencyResult[];
  /** HTTP rows of the latency section (GET through vecgate http, nginx/haproxy stream and http). */
  httpLatency: HttpLatencyResult[];
  /** HTTP vector API scenarios (Qdrant routes). */
  http: HttpResult[];
  idle: IdleResult[];
  /** Transaction pooling, vecgate and pgbouncer both in transaction mode over POOLED_BACKENDS backends. */
  pooledSelect?: SelectResult[];
  pooledIdle?: IdleResult[];
  recording: RecordingResult[];
  durationSec: number;
  /** 1-minute load average at start and end: other work on the machine shows up here. */
  loadAvgStart: number;
  loadAvgEnd: number;
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const t0 = Date.now();
const log = (s: string) => process.stderr.write(`[bench +${((Date.now() - t0) / 1000).toFixed(0)}s] ${s}\n`);

interface Targets {
  pg: PgTarget[];
  stream: { system: string; port: number; pids: () => number[] }[];
  servers: Server[];
}

function startVecgateTarget(env: BenchEnvironment, s: BenchSettings): Promise<{ target: PgTarget; server: Server }> {
  return startVecgatePgTarget(env, repoRoot, s.proxyWorkers);
}

async function startPgbouncerTarget(env: BenchEnvironment, poolSize: number, poolMode: 'session' | 'transaction' = 'session'): Promise<{ target: PgTarget; server: Server }> {
  const pb = await startPgbouncer({
    poolMode,
    dir: env.dir,
    serverCert: env.pki.serverCert,
    serverKey: env.pki.serverKey,
    caCert: env.pki.caCert,
    upstream: { host: 'localhost', port: env.cluster.port, database: env.cluster.database },
    user: env.rwUser,
    scramSecret: env.scramSecret,
    poolSize,
  });
  return {
    server: pb.server,
    target: { system: poolMode === 'transaction' ? 'pgbouncer (transaction)' : 'pgbouncer', port: pb.port, dbname: env.cluster.database, user: env.rwUser, password: env.rwPassword, proxyPids: () => [pb.server.pid], proxyPid: () => pb.server.pid },
  };
}

async function attempt<T>(what: string, failures: string[], fn: () => Promise<T>): Promise<T | null> {
  try {
    return await fn();
  } catch (err) {
    const msg = `${what}: ${(err as Error).message.split('\n').slice(0, 3).join(' ').slice(0, 500)}`;
    failures.push(msg);
    log(`FAILED ${msg}`);
    return null;
  }
}

async function startTargets(env: BenchEnvironment, s: BenchSettings, failures: string[], wantPg: boolean, wantStream: boolean): Promise<Targets> {
  const t: Targets = { pg: [directTarget(env)], stream: [], servers: [] };
  if (!wantPg) return t;
  const vg = await attempt('start vecgate', failures, () => startVecgateTarget(env, s));
  if (vg) t.pg.push(vg.target), t.servers.push(vg.server);
  const poolSize = Math.max(...s.selectClients, s.churnClients, s.latencyClients) + 8;
  const pb = await attempt('start pgbouncer', failures, () => startPgbouncerTarget(env, poolSize));
  if (pb) t.pg.push(pb.target), t.servers.push(pb.server);
  if (!wantStream) return t;
  const sourcePort = await freePortOn('127.0.0.1');
  const source = startServer('tls-stream-source', process.execPath, [
    path.join(repoRoot, 'dist', 'bench', 'tls-stream-source.js'),
    '--port', String(sourcePort), '--cert', env.pki.serverCert, '--key', env.pki.serverKey, '--bytes', String(copyRows(s) * COPY_ROW_WIRE_BYTES),
  ]);
  const up = await attempt('start TLS stream source', failures, () => source.waitFor(/listening/, 10_000));
  if (up === null) return t;
  t.servers.push(source);
  t.stream.push({ system: 'direct', port: sourcePort, pids: () => [] });
  const tls = { dir: env.dir, serverCert: env.pki.serverCert, serverKey: env.pki.serverKey, caCert: env.pki.caCert, upstreamPort: sourcePort };
  for (const [name, start] of [['nginx', () => startNginxStream({ ...tls, workers: s.proxyWorkers })], ['haproxy', () => startHaproxy({ ...tls, threads: s.proxyWorkers })]] as const) {
    const p: StreamProxyPeer | null = await attempt(`start ${name}`, failures, start);
    if (p) t.servers.push(p.server), t.stream.push({ system: name, port: p.port, pids: p.pids });
  }
  return t;
}

function failedPgRows(t: Targets): string[] {
  return ['direct', 'vecgate', 'pgbouncer'].filter((n) => !t.pg.some((p) => p.system === n));
}

function renderResults(r: Results, tables: ResultTable[]): string {
  const m = r.machine;
  const head = [
    `# vecgate benchmark results`,
    '',
    `Generated by \`npm run bench${r.mode === 'quick' ? ':quick' : ''}\` (bench/run.ts); raw figures in bench/results/. Do not edit by hand: rerun.`,
    '',
    `- mode: **${r.mode}** (took ${r.durationSec.toFixed(0)} s); 1-min load average ${r.loadAvgStart} at start, ${r.loadAvgEnd} at end (above ~2 means other work shared the 2 cores: wall-clock figures are then noisy, CPU-time figures less so)`,
    `- date: ${m.date}; commit: ${m.commit}${m.dirty ? ' (with uncommitted changes)' : ''}`,
    `- machine: ${m.nproc} × ${m.cpuModel}, ${m.memoryGiB} GiB; ${m.kernel}`,
    `- Node ${m.node}, OpenSSL ${m.openssl} (Node's); system ${m.peers.systemOpenssl}`,
    `- peers: ${m.peers.postgres}; ${m.peers.pgbouncer}; ${m.peers.nginx}; ${m.peers.haproxy}`,
    `- every system: TLS 1.3, one ECDSA P-256 CA and server certificate, upstream verified (verify-full); vecgate \`server.workers: ${r.settings.proxyWorkers}\`, recording off; nginx ${r.settings.proxyWorkers} workers; haproxy ${r.settings.proxyWorkers} threads; pgbouncer session mode (single-threaded). HTTP rows: nginx \`http\` proxy (keepalive upstream) and haproxy \`mode http\` (\`http-reuse always\`) beside vecgate's \`protocol: http\` connections, all in front of one nginx fixture upstream. Nothing pinned: load generator, proxy and PostgreSQL share both cores.`,
    '',
  ];
  if (r.failures.length > 0) head.push('**Failures in this run:**', '', ...r.failures.map((f) => `- ${f}`), '');
  return head.join('\n') + '\n' + tables.map(renderTable).join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { quick: { type: 'boolean', default: false }, only: { type: 'string' }, 'http-scenarios': { type: 'string' }, 'no-write': { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
  });
  const scenarioNames = [...httpScenarios(httpSettings(FULL_SETTINGS)).map((x) => x.name), 'peak'];
  if (values.help) {
    process.stdout.write(
      [
        'usage: node dist/bench/run.js [--quick] [--only WORKLOADS] [--http-scenarios NAMES] [--no-write]',
        '  --quick            short rounds (minutes instead of ~25); results marked quick',
        `  --only W,W         workloads to run: ${WORKLOADS.join(', ')} (default: all)`,
        `  --http-scenarios   HTTP API rows to run: ${scenarioNames.join(', ')} (default: all)`,
        '  --no-write         print the tables only; leave bench/RESULTS.md and bench/results/ as they are',
        'See bench/README.md; bench/http-pairs.ts and bench/recording-pairs.ts compare systems in interleaved rounds.',
        '',
      ].join('\n'),
    );
    return;
  }
  // `--http-scenarios search,peak`: a subset of the HTTP API rows (to profile one of them).
  const httpOnly = new Set(values['http-scenarios'] ? values['http-scenarios'].split(',') : scenarioNames);
  for (const n of httpOnly) if (!scenarioNames.includes(n)) throw new Error(`unknown HTTP scenario ${n}; choose from ${scenarioNames.join(', ')}`);
  const s = values.quick ? QUICK_SETTINGS : FULL_SETTINGS;
  const only = new Set<Workload>((values.only ? values.only.split(',') : WORKLOADS) as Workload[]);
  for (const w of only) if (!WORKLOADS.includes(w)) throw new Error(`unknown workload ${w}; choose from ${WORKLOADS.join(', ')}`);
  const failures: string[] = [];
  const missing = ensureBenchPeers(log);
  if (missing.length > 0) failures.push(`missing after install: ${missing.join(', ')}`);
  const machine = machineInfo(repoRoot);
  log(`mode ${s.mode}; ${machine.nproc} × ${machine.cpuModel}; Node ${machine.node}, OpenSSL ${machine.openssl}; commit ${machine.commit}`);

  const env = await setUpEnvironment(s, repoRoot, log);
  const res: Results = { mode: s.mode, settings: s, machine, failures, copy: [], select: [], churn: [], handshake: [], latency: [], httpLatency: [], http: [], idle: [], recording: [], durationSec: 0, loadAvgStart: loadAverage1(), loadAvgEnd: NaN };
  const tables: ResultTable[] = [];
  try {
    const wantPg = PG_WORKLOADS.some((w) => only.has(w));
    const t = await startTargets(env, s, failures, wantPg, only.has('copy'));
    if (wantPg) for (const n of failedPgRows(t)) log(`${n} is not running: its rows are missing`);
    let ht: HttpTargets | null = null;
    if (only.has('http') || only.has('latency')) {
      log('starting the HTTP fixture upstream, vecgate (http), nginx and haproxy (http and stream)');
      ht = await startHttpTargets(env, s, (what, fn) => attempt(what, failures, fn));
      t.servers.push(...ht.servers);
      if (ht.upstream) {
        log(`warming up the HTTP proxies (${httpSettings(s).warmupSec} s of search each, not counted)`);
        // A proxy that fails here fails its rows too, where it is reported.
        await warmUpHttpTargets(env, s, ht);
      }
    }

    if (only.has('copy')) {
      for (const target of t.pg) {
        log(`copy ${target.system}`);
        res.copy.push(await runCopy(env, s, target));
      }
      for (const st of t.stream) {
        log(`tls stream ${st.system}`);
        res.copy.push(await runStream(env, s, st.system, st.port, st.pids()));
      }
      tables.push(copyTable(res.copy, s));
    }
    if (only.has('select')) {
      for (const c of s.selectClients) {
        for (const target of t.pg) {
          log(`pgbench -S -c ${c} ${target.system}`);
          res.select.push(await runSelect(env, s, target, c));
        }
      }
      tables.push(selectTable(res.select, s));
    }
    if (only.has('churn')) {
      for (const target of t.pg) {
        log(`pgbench -S -C ${target.system}`);
        res.churn.push(await runChurn(env, s, target));
      }
      tables.push(churnTable(res.churn, s));
    }
    if (only.has('handshake')) {
      // vecgate's PostgreSQL listener (the PG target when the PG workloads run, else its own).
      let vg = t.pg.find((p) => p.system === 'vecgate') ?? null;
      if (vg === null) {
        const started = await attempt('start vecgate (handshake rows)', failures, () => startVecgateTarget(env, s));
        if (started) t.servers.push(started.server), (vg = started.target);
      }
      const vgServer = vg ? t.servers.find((srv) => srv.pid === vg.proxyPid()) : undefined;
      log('starting haproxy and nginx in front of a plain TCP sink (handshake rows)');
      const peers = await startHandshakePeers(env, s, (what, fn) => attempt(what, failures, fn));
      const targets: HandshakeTarget[] = [
        ...(vg ? [{ system: 'vecgate', port: vg.port, pids: vg.proxyPids, output: vgServer ? () => vgServer.output() : undefined }] : []),
        ...peers.targets,
      ];
      for (const target of targets) {
        log(`tls handshakes ${target.system} (${handshakeSeconds(s)} s)`);
        res.handshake.push(await runHandshake(env, s, target));
      }
      await peers.stop();
      tables.push(handshakeTable(res.handshake, s));
    }
    if (only.has('latency')) {
      for (const size of s.latencySizes) {
        for (const target of t.pg) {
          log(`latency ${size} B ${target.system}`);
          res.latency.push(await runLatency(env, s, target, size));
        }
      }
      tables.push(latencyTable(res.latency, s));
      if (ht?.upstream) {
        for (const size of s.latencySizes) {
          for (const target of ht.latency) {
            log(`latency HTTP ${size} B ${target.system} (${target.transport})`);
            res.httpLatency.push(await runHttpLatency(env, s, ht, target, size));
          }
        }
        tables.push(httpLatencyTable(res.httpLatency, s));
      }
    }
    if (only.has('http') && ht?.upstream) {
      for (const sc of httpScenarios(httpSettings(s)).filter((x) => httpOnly.has(x.name))) {
        for (const target of ht.api) {
          log(`http ${sc.name} ${target.system}`);
          res.http.push(await runHttpScenario(env, s, ht, sc, target));
        }
      }
      for (const target of httpOnly.has('peak') ? ht.api : []) {
        log(`http peak search (wrk) ${target.system}`);
        res.http.push(await runHttpPeak(env, s, ht, target));
      }
      tables.push(httpTable(res.http, s, ht.upstream));
    }
    for (const srv of ht?.servers ?? []) {
      const c = srv.child;
      if (c.exitCode !== null || c.signalCode !== null) failures.push(`${srv.name} exited during the HTTP rows (${c.signalCode ?? `code ${String(c.exitCode)}`}): ${srv.output().slice(-1500).replace(/\s+/g, ' ')}`);
    }
    for (const srv of t.servers) await srv.stop();

    if (only.has('recording')) {
      const counts = s.recordingClients;
      const rows = await attempt('recording rows', failures, () => runRecordingRows(env, s, repoRoot, counts, log));
      if (rows) {
        res.recording.push(...rows);
        tables.push(recordingTable(rows, s));
      }
    }

    if (only.has('idle')) {
      // Fresh proxies, so memory freed by earlier workloads does not hide the per-session cost.
      const vg = await attempt('start vecgate (idle)', failures, () => startVecgateTarget(env, s));
      if (vg) {
        log(`idle sessions: ${idleSessionsToAsk(s)} through vecgate`);
        res.idle.push(await runIdle(env, s, vg.target));
        await vg.server.stop();
      }
      await waitForBackendsGone(env);
      const pb = await attempt('start pgbouncer (idle)', failures, () => startPgbouncerTarget(env, idleSessionsToAsk(s) + 10));
      if (pb) {
        log(`idle sessions: ${idleSessionsToAsk(s)} through pgbouncer`);
        res.idle.push(await runIdle(env, s, pb.target));
        await pb.server.stop();
      }
      tables.push(idleTable(res.idle, s));
    }
    if (only.has('pooled')) {
      // Both in transaction mode over the same number of backends: many clients, few backends.
      res.pooledSelect = [];
      res.pooledIdle = [];
      const clientCounts = s.mode === 'quick' ? [64] : [64, 256];
      for (const system of ['vecgate', 'pgbouncer'] as const) {
        await waitForBackendsGone(env);
        const p = await attempt(`start ${system} (pooled)`, failures, () =>
          system === 'vecgate' ? startVecgatePgTarget(env, repoRoot, s.proxyWorkers, undefined, POOLED_BACKENDS) : startPgbouncerTarget(env, POOLED_BACKENDS, 'transaction'),
        );
        if (!p) continue;
        for (const clients of clientCounts) {
          log(`pooled select: ${clients} clients over ${POOLED_BACKENDS} backends through ${p.target.system}`);
          res.pooledSelect.push(await runSelect(env, s, p.target, clients));
        }
        for (const clients of clientCounts) {
          // Named statements: vecgate carries them between backends; a pgbouncer without
          // max_prepared_statements (before 1.21) cannot, and its row shows how that fails.
          log(`pooled select -M prepared: ${clients} clients over ${POOLED_BACKENDS} backends through ${p.target.system}`);
          res.pooledSelect.push(await runSelect(env, s, p.target, clients, undefined, 'prepared'));
        }
        await p.server.stop();
        // Fresh proxies for memory, as in the idle rows.
        await waitForBackendsGone(env);
        const q = await attempt(`start ${system} (pooled idle)`, failures, () =>
          system === 'vecgate' ? startVecgatePgTarget(env, repoRoot, s.proxyWorkers, undefined, POOLED_BACKENDS) : startPgbouncerTarget(env, POOLED_BACKENDS, 'transaction'),
        );
        if (!q) continue;
        log(`pooled idle: ${s.idleSessions} sessions over ${POOLED_BACKENDS} backends through ${q.target.system}`);
        res.pooledIdle.push(await runIdle(env, s, q.target, s.idleSessions));
        await q.server.stop();
      }
      const sel = selectTable(res.pooledSelect, s);
      tables.push({ ...sel, title: `transaction pooling: ${sel.title}, ${POOLED_BACKENDS} backends` });
      const idle = idleTable(res.pooledIdle, s);
      tables.push({
        ...idle,
        title: `transaction pooling: idle sessions over ${POOLED_BACKENDS} backends`,
        notes: [
          ...idle.notes.slice(0, 1),
          `Both proxies in transaction mode: an idle session holds no backend (vecgate \`upstream.pool: { mode: transaction, size: ${POOLED_BACKENDS} }\`, pgbouncer \`pool_mode = transaction\`, \`default_pool_size = ${POOLED_BACKENDS}\`), so PostgreSQL's max_connections does not bound the count.`,
        ],
      });
    }
  } finally {
    killAllServers();
    await env.cleanup().catch((err: Error) => log(`cleanup: ${err.message}`));
  }
  for (const group of [res.copy, res.select, res.churn, res.handshake, res.latency, res.httpLatency, res.http, res.idle, res.pooledSelect ?? [], res.pooledIdle ?? []] as { ok: boolean; system: string; error?: string }[][]) {
    for (const r of group) if (!r.ok) failures.push(`${r.system}: ${r.error ?? 'failed'}`);
  }
  res.durationSec = (Date.now() - t0) / 1000;
  res.loadAvgEnd = loadAverage1();
  const md = renderResults(res, tables);
  process.stdout.write('\n' + md);
  if (!values['no-write']) {
    const resultsDir = path.join(repoRoot, 'bench', 'results');
    if (!existsSync(resultsDir)) mkdirSync(resultsDir, { recursive: true });
    const day = machine.date.slice(0, 10);
    const jsonFile = path.join(resultsDir, `${day}-${machine.commit}${s.mode === 'quick' ? '-quick' : ''}.json`);
    writeFileSync(jsonFile, JSON.stringify(res, null, 2) + '\n');
    writeFileSync(path.join(repoRoot, 'bench', 'RESULTS.md'), md);
    log(`wrote bench/RESULTS.md and ${path.relative(repoRoot, jsonFile)}`);
  }
}

main().catch((err: Error) => {
  log(`benchmark aborted: ${err.stack ?? err.message}`);
  killAllServers();
  process.exit(1);
});
