// Recording's throughput cost with the noise paired out: two vecgate processes, recording
// `off` and `queries` + `async`, take turns at full-load pgbench -S for many short rounds,
// and the totals of transactions (and of each gateway's CPU) are compared. The full
// benchmark's recording rows (recording-workload.ts) report medians of 3 rounds, which
// scatter by ±10-15% between rounds of one variant here; summing many interleaved rounds
// gives each variant the same slow and fast minutes of this shared machine.
//
//   node dist/bench/recording-pairs.js [--clients 8] [--rounds 6] [--seconds 10]
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setUpEnvironment } from './bench-environment.js';
import { FULL_SETTINGS } from './bench-settings.js';
import { machineInfo } from './machine-info.js';
import { runSelect } from './pgbench-workloads.js';
import { cpuSecondsOfAll } from './proc-usage.js';
import { ensureBenchPeers } from './system-deps.js';
import type { Server } from './bench-processes.js';
import { RECORDING_VARIANTS, startRecordingGateways } from './recording-workload.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const VARIANTS = RECORDING_VARIANTS.filter((v) => v.name === 'off' || v.name === 'queries, async');

function log(msg: string): void {
  process.stderr.write(`[recording-pairs] ${msg}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { clients: { type: 'string', default: '8' }, rounds: { type: 'string', default: '6' }, seconds: { type: 'string', default: '10' } } });
  const clients = Number(values.clients);
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  for (const [k, v] of [['clients', clients], ['rounds', rounds], ['seconds', seconds]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer (got ${String(values[k])})`);
  }
  const missing = ensureBenchPeers(log);
  if (missing.length > 0) throw new Error(`missing after install: ${missing.join(', ')}`);
  const s = { ...FULL_SETTINGS, selectSec: seconds };
  const machine = machineInfo(repoRoot);
  const env = await setUpEnvironment(s, repoRoot, log);
  const servers: Server[] = [];
  try {
    const targets = await startRecordingGateways(env, repoRoot, s.proxyWorkers, VARIANTS, servers);
    const tx = VARIANTS.map(() => 0);
    const cpu = VARIANTS.map(() => 0);
    const perRound: number[][] = VARIANTS.map(() => []);
    for (let r = 1; r <= rounds; r++) {
      for (let i = 0; i < VARIANTS.length; i++) {
        log(`round ${r}/${rounds}: pgbench -S -c ${clients} -T ${seconds}, recording ${VARIANTS[i]!.name}`);
        const cpu0 = cpuSecondsOfAll(targets[i]!.proxyPids());
        const res = await runSelect(env, s, targets[i]!, clients);
        if (!res.ok) throw new Error(`pgbench failed through the ${VARIANTS[i]!.name} gateway: ${res.error ?? ''}`);
        cpu[i]! += cpuSecondsOfAll(targets[i]!.proxyPids()) - cpu0;
        tx[i]! += res.transactions;
        perRound[i]!.push(res.tps);
      }
    }
    const pct = (a: number, b: number): string => `${(((a - b) / b) * 100).toFixed(1)}%`;
    const usPerTx = (i: number): number => (cpu[i]! * 1e6) / tx[i]!;
    const machineUsPerTx = (availableParallelism() * 1e6 * rounds * seconds) / tx[0]!;
    const lines = [
      `recording pairs: pgbench -S -c ${clients}, ${rounds} interleaved rounds of ${seconds} s; commit ${machine.commit}; ${machine.nproc} × ${machine.cpuModel}; Node ${machine.node}`,
      `round TPS, off:            ${perRound[0]!.map((x) => x.toFixed(0)).join(' / ')}`,
      `round TPS, queries+async:  ${perRound[1]!.map((x) => x.toFixed(0)).join(' / ')}`,
      `round by round:            ${perRound[1]!.map((x, k) => pct(x, perRound[0]![k]!)).join(' / ')}`,
      `transactions, all rounds:  off ${tx[0]}, queries+async ${tx[1]} (${pct(tx[1]!, tx[0]!)})`,
      `gateway CPU per tx:        off ${usPerTx(0).toFixed(1)} µs, queries+async ${usPerTx(1).toFixed(1)} µs (+${(usPerTx(1) - usPerTx(0)).toFixed(1)} µs = ${(((usPerTx(1) - usPerTx(0)) / machineUsPerTx) * 100).toFixed(1)}% of the machine's CPU per transaction)`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    for (const srv of servers) await srv.stop();
    await env.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`recording-pairs failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
