// The HTTP workloads: Qdrant-shaped vector API scenarios (search, search returning top-10
// with vectors, upserts of 100 and 1,000 vectors) with autocannon and a wrk peak-rate search,
// through direct / vecgate / nginx (http) / haproxy (http); and the HTTP rows of the
// added-latency section: GETs of 64 B / 6 KB / 60 KB at a paced rate, through vecgate's
// generic HTTP connection, nginx and haproxy as TLS stream proxies and as HTTP proxies.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runMeasured, type Server } from './bench-processes.js';
import type { BenchEnvironment } from './bench-environment.js';
import type { BenchSettings } from './bench-settings.js';
import { BENCH_ANSWER_HEADER, FIXTURE_API_KEY_HEADER, startHttpFixtureUpstream, type HttpFixtureUpstream } from './http-fixture-upstream.js';
import type { LoadReport, LoadSpec } from './http-load-client.js';
import { BENCH_COLLECTION, BENCH_TOP_K, BENCH_VECTOR_DIM, searchRequestBody, upsertRequestBody } from './http-payloads.js';
import { startHaproxyHttp, startNginxHttp } from './http-peers.js';
import { httpSettings, type HttpBenchSettings } from './http-settings.js';
import { cpuSecondsOfAll, loadAverage1 } from './proc-usage.js';
import { GENERATOR_SATURATED_CORES, fmt, type ResultTable } from './results-table.js';
import { startHaproxy, startNginxStream } from './stream-proxy-peers.js';
import { startVecgateHttpOn } from './vecgate-peer.js';

/** A system an HTTPS client can reach: `direct` is the fixture upstream itself. */
export interface HttpTarget {
  system: string;
  /** What the proxy does with the bytes: `http` (parses and re-serializes) or `TLS stream`. */
  transport: 'http' | 'TLS stream';
  port: number;
  /** Headers this system's clients send: the bearer token everywhere, `api-key` where no proxy injects it. */
  headers: Record<string, string>;
  /** Pids whose CPU is the proxy's (empty for direct). */
  pids(): number[];
}

export interface HttpTargets {
  upstream: HttpFixtureUpstream | null;
  /** Qdrant-route targets: direct, vecgate (flavor qdrant), nginx (http), haproxy (http). */
  api: HttpTarget[];
  /** Plain GET targets for the latency rows: the above with vecgate's generic connection, plus the stream proxies. */
  latency: HttpTarget[];
  servers: Server[];
  /** The credential the fixture upstream wants (what a further gateway in front of it injects). */
  apiKey: string;
}

type Attempt = <T>(what: string, fn: () => Promise<T>) => Promise<T | null>;

export async function startHttpTargets(env: BenchEnvironment, s: BenchSettings, attempt: Attempt): Promise<HttpTargets> {
  const apiKey = randomBytes(16).toString('hex');
  const t: HttpTargets = { upstream: null, api: [], latency: [], servers: [], apiKey };
  const upstream = await attempt('start HTTP fixture upstream (nginx)', () =>
    startHttpFixtureUpstream({ dir: env.dir, serverCert: env.pki.serverCert, serverKey: env.pki.serverKey, apiKey, bodySizes: s.latencySizes }),
  );
  if (!upstream) return t;
  t.upstream = upstream;
  t.servers.push(upstream.server);
  const bearer = { authorization: `Bearer ${env.token}` };
  const passThrough = { ...bearer, [FIXTURE_API_KEY_HEADER]: apiKey };
  const direct: HttpTarget = { system: 'direct', transport: 'http', port: upstream.port, headers: passThrough, pids: () => [] };
  t.api.push(direct);
  t.latency.push(direct);
  const vg = await attempt('start vecgate (http)', () => startVecgateHttpOn(env, upstream.url, apiKey, env.repoRoot, s.proxyWorkers));
  if (vg) {
    t.servers.push(vg.server);
    t.api.push({ system: 'vecgate', transport: 'http', port: vg.qdrantPort, headers: bearer, pids: () => [vg.server.pid] });
    t.latency.push({ system: 'vecgate', transport: 'http', port: vg.genericPort, headers: bearer, pids: () => [vg.server.pid] });
  }
  const tls = { dir: env.dir, serverCert: env.pki.serverCert, serverKey: env.pki.serverKey, caCert: env.pki.caCert, upstreamPort: upstream.port };
  const peers = [
    ['nginx', 'http', () => startNginxHttp({ ...tls, workers: s.proxyWorkers })],
    ['haproxy', 'http', () => startHaproxyHttp({ ...tls, workers: s.proxyWorkers })],
    ['nginx', 'TLS stream', () => startNginxStream({ ...tls, workers: s.proxyWorkers })],
    ['haproxy', 'TLS stream', () => startHaproxy({ ...tls, threads: s.proxyWorkers })],
  ] as const;
  for (const [system, transport, start] of peers) {
    const p = await attempt(`start ${system} (${transport}, HTTP rows)`, start);
    if (!p) continue;
    t.servers.push(p.server);
    const target: HttpTarget = { system, transport, port: p.port, headers: passThrough, pids: p.pids };
    if (transport === 'http') t.api.push(target);
    t.latency.push(target);
  }
  return t;
}

// ---- one measured load run ----

interface Measured {
  ok: boolean;
  error?: string;
  report: LoadReport | null;
  proxyCpuSec: number | null;
  upstreamCpuSec: number;
  clientCpuSec: number;
  clientWallSec: number;
  loadAvg1: number;
}

async function measure(t: HttpTarget, upstream: HttpFixtureUpstream, run: () => Promise<{ code: number | null; stdout: string; stderr: string; cpuSec: number; wallSec: number; timedOut: boolean }>, parse: (stdout: string) => LoadReport | null): Promise<Measured> {
  const pids = t.pids();
  const loadAvg1 = loadAverage1();
  const p0 = cpuSecondsOfAll(pids);
  const u0 = cpuSecondsOfAll(upstream.pids());
  const r = await run();
  const p1 = cpuSecondsOfAll(pids);
  const u1 = cpuSecondsOfAll(upstream.pids());
  let report: LoadReport | null = null;
  let error: string | undefined;
  try {
    report = r.code === 0 ? parse(r.stdout) : null;
  } catch (err) {
    error = `unreadable client output: ${(err as Error).message}`;
  }
  if (!report && !error) error = `client exit ${String(r.code)}${r.timedOut ? ' (timed out)' : ''}: ${(r.stderr.trim().split('\n').pop() ?? '').slice(0, 300)}`;
  if (report && !error) {
    if (report.ok2xx === 0) error = `no 2xx answers (status codes ${JSON.stringify(report.statusCodes)})`;
    else if (report.non2xx > 0 || report.errors > 0 || report.timeouts > 0)
      error = `${report.non2xx} non-2xx (${JSON.stringify(report.statusCodes)}), ${report.errors} errors, ${report.timeouts} timeouts`;
  }
  // A proxy that died during the run reads as 0 CPU afterwards: no figure rather than a negative one.
  const proxyCpuSec = pids.length === 0 || p1 < p0 ? null : p1 - p0;
  return { ok: error === undefined, error, report, proxyCpuSec, upstreamCpuSec: u1 - u0, clientCpuSec: r.cpuSec, clientWallSec: r.wallSec, loadAvg1 };
}

function runAutocannon(env: BenchEnvironment, hs: HttpBenchSettings, name: string, spec: LoadSpec) {
  const dir = path.join(env.dir, 'http');
  mkdirSync(dir, { recursive: true });
  const specFile = path.join(dir, `${name}.json`);
  writeFileSync(specFile, JSON.stringify(spec), { mode: 0o600 });
  const client = path.join(env.repoRoot, 'dist', 'bench', 'http-load-client.js');
  return () => runMeasured(process.execPath, [client, specFile], { timeoutSec: spec.durationSec + hs.clientGraceSec });
}

function parseClientReport(stdout: string): LoadReport {
  const line = stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as LoadReport;
}

// ---- Qdrant-route scenarios ----

export interface HttpScenario {
  name: string;
  label: string;
  method: 'POST' | 'PUT';
  path: string;
  body: Buffer;
  headers: Record<string, string>;
  connections: number;
}

export function httpScenarios(hs: HttpBenchSettings): HttpScenario[] {
  const search = `/collections/${BENCH_COLLECTION}/points/search`;
  const points = `/collections/${BENCH_COLLECTION}/points`;
  return [
    { name: 'search', label: `search, top-${BENCH_TOP_K} ids`, method: 'POST', path: search, body: searchRequestBody(false), headers: {}, connections: hs.searchConnections },
    { name: 'search-vectors', label: `search, top-${BENCH_TOP_K} with vectors`, method: 'POST', path: search, body: searchRequestBody(true), headers: { [BENCH_ANSWER_HEADER]: 'vectors' }, connections: hs.searchConnections },
    { name: 'upsert-100', label: 'upsert 100 vectors', method: 'PUT', path: points, body: upsertRequestBody(100), headers: {}, connections: hs.upsert100Connections },
    { name: 'upsert-1000', label: 'upsert 1,000 vectors', method: 'PUT', path: points, body: upsertRequestBody(1000), headers: {}, connections: hs.upsert1000Connections },
  ];
}

export interface HttpResult {
  scenario: string;
  label: string;
  system: string;
  tool: 'autocannon' | 'wrk';
  ok: boolean;
  error?: string;
  connections: number;
  requestBodyBytes: number;
  responseBytesPerRequest: number;
  requests: number;
  wallSec: number;
  reqPerSec: number;
  /** Request bodies + responses (headers included for responses) per second, 10^6 bytes. */
  mbPerSec: number;
  p50us: number;
  p99us: number;
  proxyCpuSec: number | null;
  /** Proxy CPU seconds per 10^9 bytes moved (request bodies + responses). */
  proxyCpuSecPerGB: number | null;
  proxyCpuMsPer1kReq: number | null;
  upstreamCores: number;
  clientCpuSec: number;
  clientCores: number;
  loadAvg1: number;
}

function toResult(sc: { name: string; label: string; connections: number; bodyBytes: number }, t: HttpTarget, tool: HttpResult['tool'], m: Measured): HttpResult {
  const r = m.report;
  const requests = r?.ok2xx ?? 0;
  const wall = r?.wallSec ?? m.clientWallSec;
  const bytes = r ? r.requestBodyBytes + r.responseBytes : 0;
  return {
    scenario: sc.name,
    label: sc.label,
    system: t.system,
    tool,
    ok: m.ok,
    error: m.error,
    connections: sc.connections,
    requestBodyBytes: sc.bodyBytes,
    responseBytesPerRequest: r && r.requests > 0 ? r.responseBytes / r.requests : NaN,
    requests,
    wallSec: wall,
    reqPerSec: requests / wall,
    mbPerSec: bytes / wall / 1e6,
    p50us: r?.latencyUs.p50 ?? NaN,
    p99us: r?.latencyUs.p99 ?? NaN,
    proxyCpuSec: m.proxyCpuSec,
    proxyCpuSecPerGB: m.proxyCpuSec === null || bytes === 0 ? null : m.proxyCpuSec / (bytes / 1e9),
    proxyCpuMsPer1kReq: m.proxyCpuSec === null || requests === 0 ? null : (m.proxyCpuSec * 1000) / (requests / 1000),
    upstreamCores: m.upstreamCpuSec / wall,
    clientCpuSec: m.clientCpuSec,
    clientCores: m.clientCpuSec / m.clientWallSec,
    loadAvg1: m.loadAvg1,
  };
}

/** One scenario through one target; closed loop for `scenarioSec` unless `pace` gives a rate (req/s over all connections, 0: closed loop) and a duration. */
export async function runHttpScenario(env: BenchEnvironment, s: BenchSettings, targets: HttpTargets, sc: HttpScenario, t: HttpTarget, pace?: { rate: number; seconds: number }): Promise<HttpResult> {
  const hs = httpSettings(s);
  const dir = path.join(env.dir, 'http');
  mkdirSync(dir, { recursive: true });
  const bodyFile = path.join(dir, `${sc.name}.body`);
  writeFileSync(bodyFile, sc.body);
  const spec: LoadSpec = {
    url: `https://127.0.0.1:${t.port}${sc.path}`,
    method: sc.method,
    headers: { ...t.headers, ...sc.headers },
    bodyFile,
    connections: sc.connections,
    durationSec: pace?.seconds ?? hs.scenarioSec,
    overallRate: pace?.rate ?? 0,
    timeoutSec: hs.requestTimeoutSec,
  };
  const m = await measure(t, targets.upstream!, runAutocannon(env, hs, `${sc.name}-${t.system}`.replace(/[^\w.-]+/g, '-'), spec), parseClientReport);
  return toResult({ name: sc.name, label: sc.label, connections: sc.connections, bodyBytes: sc.body.length }, t, 'autocannon', m);
}

/**
 * Every proxy carries a scenario for a few seconds before it is measured, not counted:
 * vecgate compiles its JavaScript on its first requests, and whichever row came first would
 * otherwise carry that cost (nginx and haproxy have nothing to warm). By default the API
 * proxies, the search scenario, closed loop for `warmupSec`. Returns the failures.
 */
export async function warmUpHttpTargets(
  env: BenchEnvironment,
  s: BenchSettings,
  targets: HttpTargets,
  opts: { systems?: HttpTarget[]; scenario?: HttpScenario; pace?: { rate: number; seconds: number } } = {},
): Promise<string[]> {
  const hs = httpSettings(s);
  const sc = opts.scenario ?? httpScenarios(hs).find((x) => x.name === 'search')!;
  const failures: string[] = [];
  for (const t of opts.systems ?? targets.api.filter((x) => x.system !== 'direct')) {
    const res = await runHttpScenario(env, s, targets, sc, t, opts.pace ?? { rate: 0, seconds: hs.warmupSec });
    if (!res.ok) failures.push(`${sc.name} through ${t.system} failed while warming up: ${res.error ?? ''}`);
  }
  return failures;
}

/** Peak-rate search (top-10 ids) with wrk: `-t threads -c connections --latency`. */
export async function runHttpPeak(env: BenchEnvironment, s: BenchSettings, targets: HttpTargets, t: HttpTarget): Promise<HttpResult> {
  const hs = httpSettings(s);
  const dir = path.join(env.dir, 'http');
  mkdirSync(dir, { recursive: true });
  const body = searchRequestBody(false);
  const bodyFile = path.join(dir, 'peak-search.body');
  writeFileSync(bodyFile, body);
  const script = path.join(dir, `peak-${t.system}.lua`);
  // wrk sends its own Host (127.0.0.1:PORT); header names are case-sensitive keys in its Lua table.
  const headers = { ...t.headers, 'Content-Type': 'application/json' };
  writeFileSync(
    script,
    [
      'wrk.method = "POST"',
      `local f = io.open(${JSON.stringify(bodyFile)}, "rb")`,
      'wrk.body = f:read("*a")',
      'f:close()',
      ...Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`),
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const args = ['-t', String(hs.peakThreads), '-c', String(hs.peakConnections), '-d', `${hs.scenarioSec}s`, '--latency', '-s', script, `https://127.0.0.1:${t.port}/collections/${BENCH_COLLECTION}/points/search`];
  const m = await measure(
    t,
    targets.upstream!,
    () => runMeasured('wrk', args, { timeoutSec: hs.scenarioSec + hs.clientGraceSec }),
    (out) => parseWrk(out, body.length),
  );
  return toResult({ name: 'peak-search', label: `peak search (wrk, ${hs.peakThreads} threads)`, connections: hs.peakConnections, bodyBytes: body.length }, t, 'wrk', m);
}

const UNIT_US: Record<string, number> = { us: 1, ms: 1000, s: 1e6, m: 60e6, h: 3600e6 };
const UNIT_BYTES: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

/** Reads wrk's summary (`N requests in Xs, Y MB read`, `--latency` percentiles, error lines). */
export function parseWrk(out: string, bodyBytes: number): LoadReport {
  const m = /(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)(B|KB|MB|GB|TB) read/.exec(out);
  if (!m) throw new Error(`no summary line in wrk output: ${out.slice(-300)}`);
  const requests = Number(m[1]);
  const wallSec = (Number(m[2]) * UNIT_US[m[3]!]!) / 1e6;
  const responseBytes = Number(m[4]) * UNIT_BYTES[m[5]!]!;
  const pct = (p: string) => {
    const x = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m|h)`, 'm').exec(out);
    return x ? Number(x[1]) * UNIT_US[x[2]!]! : NaN;
  };
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = sock ? Number(sock[1]) + Number(sock[2]) + Number(sock[3]) : 0;
  return {
    requests,
    ok2xx: requests - non2xx,
    non2xx,
    errors,
    timeouts: sock ? Number(sock[4]) : 0,
    statusCodes: non2xx > 0 ? { 'non-2xx': non2xx } : {},
    responseBytes,
    requestBodyBytes: bodyBytes * requests,
    wallSec,
    latencyUs: { p50: pct('50'), p90: pct('90'), p99: pct('99'), max: NaN, mean: NaN, samples: requests },
  };
}

export function httpTable(results: HttpResult[], s: BenchSettings, upstream: HttpFixtureUpstream | null): ResultTable {
  const hs = httpSettings(s);
  const ms = (us: number) => fmt(us / 1000, 2);
  const rows = results.map((r) => {
    const d = results.find((x) => x.system === 'direct' && x.scenario === r.scenario && x.ok);
    const added = (a: number, b: number | undefined) => (r.system === 'direct' ? 'baseline' : b === undefined ? '—' : fmt((a - b) / 1000, 2));
    return [
      r.label,
      r.system,
      r.ok ? 'ok' : `FAILED: ${r.error ?? ''}`,
      String(r.connections),
      fmt(r.reqPerSec, 0),
      d && r.system !== 'direct' ? `${fmt((r.reqPerSec / d.reqPerSec) * 100, 0)}%` : 'baseline',
      fmt(r.mbPerSec, 1),
      ms(r.p50us),
      ms(r.p99us),
      added(r.p50us, d?.p50us),
      added(r.p99us, d?.p99us),
      r.proxyCpuSecPerGB === null ? '—' : fmt(r.proxyCpuSecPerGB),
      r.proxyCpuMsPer1kReq === null ? '—' : fmt(r.proxyCpuMsPer1kReq, 1),
      r.proxyCpuSec === null ? '—' : fmt(r.proxyCpuSec / r.wallSec),
      fmt(r.upstreamCores),
      `${fmt(r.clientCores)}${r.clientCores >= (r.tool === 'wrk' ? hs.peakThreads : 1) * GENERATOR_SATURATED_CORES ? ' (saturated)' : ''}`,
    ];
  });
  const kb = (n: number | undefined) => (n === undefined ? '?' : `${fmt(n / 1024, 1)} KB`);
  // Rows not run (--http-scenarios) still have their bodies' sizes for the note.
  const bodies = (name: string) => results.find((r) => r.scenario === name)?.requestBodyBytes ?? httpScenarios(hs).find((x) => x.name === name)?.body.length;
  return {
    title: `HTTP vector API (Qdrant routes), TLS 1.3 both legs, ${hs.scenarioSec} s per row`,
    columns: ['scenario', 'system', 'status', 'conns', 'req/s', 'vs direct', 'MB/s', 'p50 ms', 'p99 ms', 'added p50 ms', 'added p99 ms', 'proxy CPU s/GB', 'proxy CPU ms / 1k req', 'proxy cores', 'upstream cores', 'generator cores'],
    rows,
    notes: [
      `Requests as JSON with ${BENCH_VECTOR_DIM}-dim float32 vectors (Qdrant prints ~11 characters per component): search body ${kb(bodies('search'))} (\`POST /collections/${BENCH_COLLECTION}/points/search\`, limit ${BENCH_TOP_K}), answer ${kb(upstream?.answerBytes.searchIds)}; with \`with_vector: true\` the answer is ${kb(upstream?.answerBytes.searchVectors)}; upserts (\`PUT /collections/${BENCH_COLLECTION}/points\`) of ${kb(bodies('upsert-100'))} and ${kb(bodies('upsert-1000'))}.`,
      'Upstream: nginx (2 workers, TLS 1.3) answering the routes with canned JSON files after reading the whole request body; it refuses requests without the `api-key` credential (vecgate injects it; the other systems get it from the client). "upstream cores" shows it is not the bound.',
      'direct = TLS straight to the upstream. vecgate: `protocol: http`, `flavor: qdrant`, token as `Authorization: Bearer` (verified, cached), guard on (search bodies are read and checked: `max_limit`, `return_vectors` includes the bench group), upserts streamed. nginx: `proxy_pass https://` with `proxy_ssl_verify on`, `keepalive` upstream block, request bodies streamed, 16 × 16 KB response buffers. haproxy: `mode http`, `ssl verify required` to the upstream, `http-reuse always`. Every client sends the same bearer token.',
      'autocannon: closed loop, fixed connections; latency from its own per-response times (µs; the first response on each connection, which carries the TLS handshake, left out). autocannon does not verify the server certificate; the proxies verify the upstream. wrk: peak rate, `-t 2 -c 32`, its `--latency` percentiles.',
      'MB/s and s/GB count request bodies plus responses (10^6 / 10^9 bytes). proxy CPU = utime+stime of every proxy process/thread from /proc; "generator cores" = the load generator\'s CPU s / wall s (autocannon is single-threaded: near 1.0 it, not the proxy, bounds req/s). Everything shares the 2 cores: req/s is bounded by the sum, CPU per GB and per 1k requests are the figures to compare.',
    ],
  };
}

// ---- HTTP rows of the added-latency section ----

export interface HttpLatencyResult {
  system: string;
  transport: HttpTarget['transport'];
  bodyBytes: number;
  ok: boolean;
  error?: string;
  ratePerSec: number;
  achievedPerSec: number;
  requests: number;
  p50us: number;
  p99us: number;
  proxyCpuSec: number | null;
  clientCpuSec: number;
  loadAvg1: number;
}

export async function runHttpLatency(env: BenchEnvironment, s: BenchSettings, targets: HttpTargets, t: HttpTarget, bodyBytes: number): Promise<HttpLatencyResult> {
  const hs = httpSettings(s);
  const spec: LoadSpec = {
    url: `https://127.0.0.1:${t.port}/bytes/${bodyBytes}`,
    method: 'GET',
    headers: t.headers,
    connections: s.latencyClients,
    durationSec: s.latencySec,
    overallRate: s.latencyRatePerSec,
    timeoutSec: hs.requestTimeoutSec,
  };
  const m = await measure(t, targets.upstream!, runAutocannon(env, hs, `latency-${bodyBytes}-${t.system}-${t.transport.replace(' ', '-')}`, spec), parseClientReport);
  const r = m.report;
  return {
    system: t.system,
    transport: t.transport,
    bodyBytes,
    ok: m.ok,
    error: m.error,
    ratePerSec: s.latencyRatePerSec,
    achievedPerSec: r ? r.ok2xx / r.wallSec : NaN,
    requests: r?.ok2xx ?? 0,
    p50us: r?.latencyUs.p50 ?? NaN,
    p99us: r?.latencyUs.p99 ?? NaN,
    proxyCpuSec: m.proxyCpuSec,
    clientCpuSec: m.clientCpuSec,
    loadAvg1: m.loadAvg1,
  };
}

export function httpLatencyTable(results: HttpLatencyResult[], s: BenchSettings): ResultTable {
  const sizeName = (n: number) => (n >= 1024 ? `${n / 1024} KB` : `${n} B`);
  return {
    title: `Added latency, HTTP/1.1 over TLS: GET at ${s.latencyRatePerSec} req/s paced (autocannon, ${s.latencyClients} connections, ${s.latencySec} s)`,
    columns: ['response', 'system', 'proxy mode', 'status', 'p50 µs', 'p99 µs', 'added p50 µs', 'added p99 µs', 'req/s', 'requests', 'proxy CPU µs / req'],
    rows: results.map((r) => {
      const d = results.find((x) => x.system === 'direct' && x.bodyBytes === r.bodyBytes && x.ok);
      const added = (a: number, b: number | undefined) => (r.system === 'direct' ? 'baseline' : b === undefined ? '—' : fmt(a - b, 0));
      return [
        `HTTP ${sizeName(r.bodyBytes)}`,
        r.system,
        r.system === 'direct' ? '—' : r.transport,
        r.ok ? 'ok' : `FAILED: ${r.error ?? ''}`,
        fmt(r.p50us, 0),
        fmt(r.p99us, 0),
        added(r.p50us, d?.p50us),
        added(r.p99us, d?.p99us),
        fmt(r.achievedPerSec, 0),
        String(r.requests),
        r.proxyCpuSec === null || r.requests === 0 ? '—' : fmt((r.proxyCpuSec * 1e6) / r.requests, 0),
      ];
    }),
    notes: [
      'HTTP rows, not PostgreSQL: `GET /bytes/N` (N-byte body) from the nginx fixture upstream over TLS 1.3; vecgate through a `protocol: http`, `flavor: generic` connection (bearer token checked, `api-key` injected, keep-alive verified upstream pool); nginx (stream, `proxy_ssl_verify on`) and haproxy (`mode tcp`, `ssl verify required`) as TLS stream proxies, a new upstream TLS connection per client connection; nginx and haproxy also as HTTP proxies (as in the HTTP table).',
      "autocannon's `overallRate` paces each connection (rate / connections per connection): closed loop per connection, so latency is measured from the send, not from the schedule (no coordinated-omission correction; \"req/s\" below the target means the schedule slipped). The first response per connection (TLS handshake) is left out. p50 is the figure to compare; p99 over a few thousand requests on a shared 2-core machine is mostly scheduling noise.",
    ],
  };
}
