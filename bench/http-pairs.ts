// CPU per HTTP request with the noise paired out: vecgate, nginx and haproxy (and, with
// --base, a second vecgate built from another checkout) take turns carrying the same Qdrant
// scenario at the same fixed request rate for many short rounds, and each proxy's CPU is
// summed over all its rounds. The full benchmark's HTTP rows run each system once at full
// load, where CPU per request moves by ±15-30% with what else shares this machine's two
// cores; at a rate below saturation and with the rounds interleaved, every system meets the
// same slow and fast minutes. `--base` compares two builds of vecgate the same way.
//
// Each system first carries the load for `--warmup` seconds, not counted (JIT compilation).
//
// `--together` (with `--base`) loads the two vecgate builds at the same time instead, each at
// the full rate, and only them: both meet exactly the same machine at every moment. Taking
// turns leaves a bias of about 5% between two runs of the same build (measured: whichever
// goes first in a round read higher), which hides the few percent a change to the request
// path makes; running together does not have it.
//
// `--floor` adds bench/floor-proxy.ts three times: vecgate's stack (uWebSockets.js worker
// threads, the addon's upstream TLS) with none of the gateway's work, the least a proxy built
// this way costs ("uws floor"); the same with the addon's own TLS listener as the front
// ("native floor"); and no HTTP at all, the addon's pump per connection ("pump floor"). With
// `--together` (and no `--base`) the uws floor runs at the same time as vecgate.
//
// `--base-workers N` runs the base build with N worker threads instead of the benchmark's
// count (`--base .` is this checkout): what the number of threads costs per request.
//
//   node dist/bench/http-pairs.js [--scenario search] [--rate 2500] [--rounds 5] [--seconds 8] [--warmup 3] [--floor] [--base ../other-checkout [--base-workers N]] [--together]
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Server } from './bench-processes.js';
import { setUpEnvironment } from './bench-environment.js';
import { FULL_SETTINGS } from './bench-settings.js';
import { httpScenarios, runHttpScenario, startHttpTargets, warmUpHttpTargets, type HttpResult, type HttpTarget } from './http-workloads.js';
import { httpSettings } from './http-settings.js';
import { machineInfo } from './machine-info.js';
import { ensureBenchPeers } from './system-deps.js';
import { startFloorProxy } from './http-peers.js';
import { startVecgateHttpOn } from './vecgate-peer.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function log(msg: string): void {
  process.stderr.write(`[http-pairs] ${msg}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string', default: 'search' },
      rate: { type: 'string', default: '2500' },
      rounds: { type: 'string', default: '5' },
      seconds: { type: 'string', default: '8' },
      warmup: { type: 'string', default: '3' },
      base: { type: 'string' },
      together: { type: 'boolean', default: false },
      floor: { type: 'boolean', default: false },
      'base-workers': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('usage: node dist/bench/http-pairs.js [--scenario search|search-vectors|upsert-100|upsert-1000] [--rate REQ_PER_SEC] [--rounds N] [--seconds S] [--warmup S] [--floor] [--base OTHER_CHECKOUT [--base-workers N]] [--together]\n');
    return;
  }
  const rate = Number(values.rate);
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  const warmup = Number(values.warmup);
  for (const [k, v] of [['rate', rate], ['rounds', rounds], ['seconds', seconds]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer (got ${String(values[k])})`);
  }
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`--warmup must be 0 or a positive integer (got ${String(values.warmup)})`);
  const s = FULL_SETTINGS;
  const sc = httpScenarios(httpSettings(s)).find((x) => x.name === values.scenario);
  if (!sc) throw new Error(`--scenario must be one of ${httpScenarios(httpSettings(s)).map((x) => x.name).join(', ')}`);
  const base = values.base ? path.resolve(values.base) : null;
  if (values.together && !base && !values.floor) throw new Error('--together runs vecgate and one other system at once: give another build with --base, or --floor');
  if (values.together && base && values.floor) throw new Error('--together runs two systems at once: give --base or --floor, not both');
  const baseWorkers = values['base-workers'] === undefined ? null : Number(values['base-workers']);
  if (baseWorkers !== null && !base) throw new Error('--base-workers sets the threads of the base build: give it with --base (--base . for this checkout)');
  if (baseWorkers !== null && (!Number.isInteger(baseWorkers) || baseWorkers < 1 || baseWorkers > 64)) throw new Error(`--base-workers must be an integer 1-64 (got ${String(values['base-workers'])})`);
  if (base && !existsSync(path.join(base, 'dist', 'src', 'cli', 'main.js'))) throw new Error(`--base ${base}: not a built checkout (run npm ci there)`);
  const missing = ensureBenchPeers(log);
  if (missing.length > 0) throw new Error(`missing after install: ${missing.join(', ')}`);
  const machine = machineInfo(repoRoot);
  const env = await setUpEnvironment(s, repoRoot, log);
  const servers: Server[] = [];
  try {
    const failures: string[] = [];
    const targets = await startHttpTargets(env, s, async (what, fn) => {
      try {
        return await fn();
      } catch (err) {
        failures.push(`${what}: ${(err as Error).message}`);
        return null;
      }
    });
    servers.push(...targets.servers);
    if (failures.length > 0 || !targets.upstream) throw new Error(`could not start every system: ${failures.join('; ')}`);
    let systems: HttpTarget[] = targets.api.filter((t) => t.system !== 'direct');
    if (base) {
      const upstream = targets.upstream;
      const vg = targets.api.find((t) => t.system === 'vecgate')!;
      const peer = await startVecgateHttpOn(env, upstream.url, targets.apiKey, base, baseWorkers ?? s.proxyWorkers);
      servers.push(peer.server);
      systems.splice(1, 0, { ...vg, system: baseWorkers === null ? 'vecgate (base)' : `vecgate (base, ${baseWorkers} worker${baseWorkers === 1 ? '' : 's'})`, port: peer.qdrantPort, pids: () => [peer.server.pid] });
      if (values.together) systems = systems.slice(0, 2);
    }
    if (values.floor) {
      // Beside the others: the three floors; together with vecgate: the one on vecgate's own front.
      const upstream = targets.upstream;
      const vg = targets.api.find((t) => t.system === 'vecgate')!;
      const nginx = targets.api.find((t) => t.system === 'nginx')!;
      const fronts = values.together ? (['uws'] as const) : (['uws', 'native', 'pump'] as const);
      let at = 1;
      for (const front of fronts) {
        const floor = await startFloorProxy({ front, dir: env.dir, serverCert: env.pki.serverCert, serverKey: env.pki.serverKey, caCert: env.pki.caCert, upstreamPort: upstream.port, workers: s.proxyWorkers, apiKey: targets.apiKey, repoRoot });
        servers.push(floor.server);
        // The pump passes the client's bytes as they are: its clients send the upstream credential, like nginx's.
        systems.splice(at++, 0, { ...vg, system: `${front} floor`, port: floor.port, pids: floor.pids, headers: front === 'pump' ? nginx.headers : vg.headers });
      }
      if (values.together) systems = systems.slice(0, 2);
    }
    // Not counted: JIT compilation and first connections (vecgate compiles its JavaScript on
    // the first requests; nginx and haproxy have nothing to warm).
    if (warmup > 0) {
      const warmFailures = await warmUpHttpTargets(env, s, targets, { systems, scenario: sc, pace: { rate, seconds: warmup } });
      if (warmFailures.length > 0) throw new Error(warmFailures.join('; '));
    }
    const cpu = systems.map(() => 0);
    const requests = systems.map(() => 0);
    for (let r = 1; r <= rounds; r++) {
      const line: string[] = [];
      const take = (i: number, res: HttpResult): void => {
        const t = systems[i]!;
        if (!res.ok || res.proxyCpuSec === null) throw new Error(`${sc.name} through ${t.system} failed: ${res.error ?? 'no CPU figure'}`);
        cpu[i]! += res.proxyCpuSec;
        requests[i]! += res.requests;
        line.push(`${t.system} ${((res.proxyCpuSec * 1e6) / res.requests).toFixed(1)} µs`);
      };
      if (values.together) {
        // Both builds at once; which one's client starts first alternates by round.
        const order = r % 2 === 1 ? [0, 1] : [1, 0];
        const results = await Promise.all(order.map((i) => runHttpScenario(env, s, targets, sc, systems[i]!, { rate, seconds })));
        order.forEach((i, k) => take(i, results[k]!));
      } else {
        for (let i = 0; i < systems.length; i++) take(i, await runHttpScenario(env, s, targets, sc, systems[i]!, { rate, seconds }));
      }
      log(`round ${r}/${rounds} (CPU per request): ${line.join(', ')}`);
    }
    const nginx = systems.findIndex((t) => t.system === 'nginx');
    const perReq = (i: number): number => (cpu[i]! * 1e6) / requests[i]!;
    // Against nginx; two systems run together are compared with each other (the second one).
    const ref = values.together ? 1 : nginx;
    const out = [
      `# http-pairs: ${sc.label}, ${rate} req/s${values.together ? ' to each system at the same time' : ''} over ${sc.connections} connections, ${rounds} rounds of ${seconds} s each, ${values.together ? 'the two together' : 'interleaved'}, after ${warmup} s of warm-up each`,
      `# commit ${machine.commit}${machine.dirty ? ' (with uncommitted changes)' : ''}; ${machine.date}; ${machine.nproc} × ${machine.cpuModel}; Node ${machine.node}; ${machine.peers['nginx'] ?? ''}; ${machine.peers['haproxy'] ?? ''}${base ? `; base: ${base}` : ''}; vecgate workers: ${s.proxyWorkers}${baseWorkers !== null ? `, base: ${baseWorkers}` : ''}`,
      `| system | requests | proxy CPU s | CPU µs per request | vs ${ref === nginx ? 'nginx' : systems[ref]!.system} |`,
      '| --- | --- | --- | --- | --- |',
      ...systems.map((t, i) => `| ${t.system} | ${requests[i]} | ${cpu[i]!.toFixed(2)} | ${perReq(i).toFixed(1)} | ${ref >= 0 ? `${(perReq(i) / perReq(ref)).toFixed(2)}x` : '—'} |`),
    ];
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    for (const sv of servers.reverse()) await sv.stop();
    await env.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`http-pairs: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
