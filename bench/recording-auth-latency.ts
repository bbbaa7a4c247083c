// What strict recording does to the primary's authorization answers: a vecgate process with
// `recording: queries` + `durability: strict` carries pgbench clients whose statements each
// carry a vector literal (20 KB of text, like an embedding in a similarity search: every
// statement waits for its record's fdatasync), while a probe opens one new connection at a
// time, each with a fresh token (a worker's decision-cache miss: the worker asks the primary),
// and times the connect. The same probes on the idle gateway are the baseline. With
// `--base DIR` (another built checkout) both builds take turns, round by round.
//
//   node dist/bench/recording-auth-latency.js [--clients 16] [--seconds 20] [--rounds 2] [--base ../before]
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { clientEnv, conninfo, setUpEnvironment, type BenchEnvironment, type PgTarget } from './bench-environment.js';
import { runMeasured, type Server } from './bench-processes.js';
import { FULL_SETTINGS } from './bench-settings.js';
import { machineInfo } from './machine-info.js';
import { ensureBenchPeers } from './system-deps.js';
import { startVecgatePgTarget } from './vecgate-peer.js';
import { PG_BIN } from '../test/harness/pg-cluster.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Probes on the idle gateway per round. */
export const IDLE_PROBES = 60;
/** Pause between probes under load. */
export const PROBE_GAP_MS = 20;
/** Characters of the vector literal in each pgbench statement. */
export const STATEMENT_LITERAL_CHARS = 20_000;

function log(msg: string): void {
  process.stderr.write(`[recording-auth-latency] ${msg}\n`);
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

/** One connect with a new token: TLS, startup, the token checked by the primary, the upstream leg. */
async function probe(env: BenchEnvironment, t: PgTarget): Promise<number> {
  const token = await env.issuer.mint({ user: 'bench', groups: ['bench'], ttlSec: 600 });
  const c = new pg.Client({ host: '127.0.0.1', port: t.port, database: t.dbname, user: t.user, password: token, ssl: { ca: readFileSync(env.pki.caCert, 'utf8') } });
  const t0 = performance.now();
  await c.connect();
  const ms = performance.now() - t0;
  await c.end();
  return ms;
}

interface Build {
  name: string;
  root: string;
  target: PgTarget;
  idle: number[];
  loaded: number[];
  tps: number[];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { clients: { type: 'string', default: '16' }, seconds: { type: 'string', default: '20' }, rounds: { type: 'string', default: '2' }, base: { type: 'string' } },
  });
  const clients = Number(values.clients);
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const missing = ensureBenchPeers(log);
  if (missing.length > 0) throw new Error(`missing after install: ${missing.join(', ')}`);
  const s = { ...FULL_SETTINGS, pgbenchScale: 1 };
  const env = await setUpEnvironment(s, repoRoot, log);
  const script = path.join(env.dir, 'vector-literal.sql');
  const literal = Array.from({ length: Math.ceil(STATEMENT_LITERAL_CHARS / 10) }, (_, i) => (Math.sin(i) * 0.5).toFixed(6)).join(',');
  writeFileSync(script, `SELECT length('[${literal}]');\n`);
  const servers: Server[] = [];
  const builds: Build[] = [];
  try {
    for (const [name, root] of [['this checkout', repoRoot], ...(values.base !== undefined ? [['base', path.resolve(values.base)]] : [])] as [string, string][]) {
      const vg = await startVecgatePgTarget(env, root, s.proxyWorkers, { mode: 'queries', durability: 'strict' });
      servers.push(vg.server);
      builds.push({ name: `${name} (${machineInfo(root).commit.slice(0, 7)})`, root, target: vg.target, idle: [], loaded: [], tps: [] });
    }
    for (let r = 1; r <= rounds; r++) {
      for (const b of builds) {
        log(`round ${r}/${rounds}, ${b.name}: ${IDLE_PROBES} probes idle`);
        for (let i = 0; i < IDLE_PROBES; i++) b.idle.push(await probe(env, b.target));
        log(`round ${r}/${rounds}, ${b.name}: pgbench -c ${clients} -T ${seconds} (${STATEMENT_LITERAL_CHARS}-char statements, strict) with probes`);
        const load = runMeasured(path.join(PG_BIN, 'pgbench'), ['-n', '-f', script, '-c', String(clients), '-j', String(Math.min(2, clients)), '-T', String(seconds), conninfo(b.target, env.pki.caCert)], {
          env: clientEnv(b.target),
          timeoutSec: seconds + 60,
        });
        let done = false;
        void load.finally(() => (done = true));
        await new Promise((res) => setTimeout(res, 2000));
        const until = Date.now() + (seconds - 3) * 1000;
        while (!done && Date.now() < until) {
          b.loaded.push(await probe(env, b.target));
          await new Promise((res) => setTimeout(res, PROBE_GAP_MS));
        }
        const res = await load;
        const m = /tps = ([\d.]+)/.exec(res.stdout);
        if (res.code !== 0 || m === null) throw new Error(`pgbench failed: ${res.stderr.slice(-1000)}`);
        b.tps.push(Number(m[1]));
      }
    }
    const machine = machineInfo(repoRoot);
    const f = (x: number) => x.toFixed(1);
    const lines = [
      `recording-auth-latency: connect with a new token (worker cache miss → primary), ms; load: pgbench -c ${clients} -T ${seconds}, one ${STATEMENT_LITERAL_CHARS}-char statement per tx, recording queries + strict; ${rounds} interleaved round(s)`,
      `machine: ${machine.nproc} × ${machine.cpuModel}, ${machine.kernel}; Node ${machine.node}; OpenSSL ${machine.openssl}; load average at end ${(await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' ')}`,
      '| build | idle p50 | idle p99 | under strict load p50 | p99 | max | probes | pgbench TPS (each round) |',
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
      ...builds.map((b) => `| ${b.name} | ${f(quantile(b.idle, 0.5))} | ${f(quantile(b.idle, 0.99))} | ${f(quantile(b.loaded, 0.5))} | ${f(quantile(b.loaded, 0.99))} | ${f(Math.max(...b.loaded))} | ${b.loaded.length} | ${b.tps.map((x) => x.toFixed(0)).join(' / ')} |`),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    for (const srv of servers) await srv.stop();
    await env.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`recording-auth-latency failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
