// What recording costs: pgbench -S through vecgate with recording off, metadata,
// queries + async and queries + strict (each statement held until its record is
// fdatasync'ed, group-committed across sessions), at several client counts.
import { availableParallelism } from 'node:os';
import type { BenchEnvironment, PgTarget } from './bench-environment.js';
import type { BenchSettings } from './bench-settings.js';
import { runSelect, type SelectResult } from './pgbench-workloads.js';
import { cpuSecondsOfAll } from './proc-usage.js';
import { fmt, type ResultTable } from './results-table.js';
import { startVecgatePgTarget } from './vecgate-peer.js';
import type { Server } from './bench-processes.js';

export const RECORDING_VARIANTS = [
  { name: 'off', mode: 'off', durability: 'async' },
  { name: 'metadata', mode: 'metadata', durability: 'async' },
  { name: 'queries, async', mode: 'queries', durability: 'async' },
  { name: 'queries, strict', mode: 'queries', durability: 'strict' },
] as const;

export type RecordingVariant = (typeof RECORDING_VARIANTS)[number];

/**
 * One vecgate process per variant, all up at once so rounds can alternate between them.
 * Each is pushed to `servers` as soon as it runs, so the caller stops every one started even
 * when a later one fails.
 */
export async function startRecordingGateways(env: BenchEnvironment, repoRoot: string, workers: number, variants: readonly RecordingVariant[], servers: Server[]): Promise<PgTarget[]> {
  const targets: PgTarget[] = [];
  for (const v of variants) {
    const vg = await startVecgatePgTarget(env, repoRoot, workers, { mode: v.mode, durability: v.durability });
    servers.push(vg.server);
    targets.push(vg.target);
  }
  return targets;
}

export interface RecordingResult extends SelectResult {
  variant: string;
  /** Runs behind this row (interleaved rounds); its figures are the medians. */
  rounds: number;
  /** TPS of every round, in order: the spread shows how noisy the machine was. */
  roundTps: number[];
  /**
   * The same pgbench at a fixed rate (FIXED_RATE_SHARE of the `off` median TPS), the same for
   * every variant: the process's CPU over the whole fixed-rate phase per 1k transactions it
   * carried. Unlike TPS at full load, this compares the variants at equal work per wake-up,
   * so it isolates what recording costs.
   */
  fixedRate: number | null;
  fixedRateCpuMsPer1kTx: number | null;
  /** CPU cores of the machine (to turn CPU per transaction into a share of the machine). */
  cores: number;
}

/** The fixed-rate rounds run at this share of `off`'s median TPS (below every variant's peak but `strict`'s, which is left out). */
export const FIXED_RATE_SHARE = 0.6;

// Rounds per variant and client count (BenchSettings.recordingRounds): the variants' runs are
// interleaved (off, metadata, queries async, queries strict, then again), so a slow minute of
// this shared machine hits every variant instead of one, and each row reports the median round.

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export async function runRecordingRows(
  env: BenchEnvironment,
  s: BenchSettings,
  repoRoot: string,
  clientCounts: number[],
  log: (msg: string) => void,
): Promise<RecordingResult[]> {
  const out: RecordingResult[] = [];
  const servers: Server[] = [];
  try {
    const targets = await startRecordingGateways(env, repoRoot, s.proxyWorkers, RECORDING_VARIANTS, servers);
    for (const c of clientCounts) {
      const runs: SelectResult[][] = RECORDING_VARIANTS.map(() => []);
      for (let round = 1; round <= s.recordingRounds; round++) {
        for (let i = 0; i < RECORDING_VARIANTS.length; i++) {
          log(`pgbench -S -c ${c} vecgate, recording ${RECORDING_VARIANTS[i]!.name}, round ${round}/${s.recordingRounds}`);
          runs[i]!.push(await runSelect(env, s, targets[i]!, c));
        }
      }
      // Fixed-rate rounds: every variant but strict carries the same transaction rate.
      const offOk = runs[0]!.filter((r) => r.ok);
      const rate = offOk.length > 0 ? Math.round(median(offOk.map((r) => r.tps)) * FIXED_RATE_SHARE) : null;
      const fixed: SelectResult[][] = RECORDING_VARIANTS.map(() => []);
      // Each process's CPU over the whole fixed-rate phase, not per run: work a variant leaves
      // for after its run (disk writes, GC, the recorder's timers) is charged to it too; every
      // process sits idle through the others' runs alike.
      const phaseCpu0 = targets.map((t) => cpuSecondsOfAll(t.proxyPids()));
      if (rate !== null) {
        for (let round = 1; round <= s.recordingRounds; round++) {
          for (let i = 0; i < RECORDING_VARIANTS.length; i++) {
            if (RECORDING_VARIANTS[i]!.durability === 'strict') continue;
            log(`pgbench -S -c ${c} -R ${rate} vecgate, recording ${RECORDING_VARIANTS[i]!.name}, round ${round}/${s.recordingRounds}`);
            fixed[i]!.push(await runSelect(env, s, targets[i]!, c, rate));
          }
        }
      }
      const phaseCpu = targets.map((t, i) => cpuSecondsOfAll(t.proxyPids()) - phaseCpu0[i]!);
      const cores = availableParallelism();
      RECORDING_VARIANTS.forEach((v, i) => {
        const all = runs[i]!;
        const ok = all.filter((r) => r.ok);
        const fixedRuns = fixed[i]!;
        const fixedTx = fixedRuns.reduce((n, r) => n + (r.ok ? r.transactions : 0), 0);
        const fixedOk = fixedRuns.length > 0 && fixedRuns.every((r) => r.ok) && fixedTx > 0;
        const fixedFigures = { fixedRate: fixedOk ? rate : null, fixedRateCpuMsPer1kTx: fixedOk ? (phaseCpu[i]! * 1e6) / fixedTx : null, cores };
        if (ok.length === 0) {
          out.push({ ...all[0]!, variant: v.name, rounds: all.length, roundTps: [], ...fixedFigures });
          return;
        }
        // The round with the median TPS stands for the row (its latency and CPU figures too).
        const tps = ok.map((r) => r.tps);
        const mid = median(tps);
        const rep = ok.reduce((a, b) => (Math.abs(b.tps - mid) < Math.abs(a.tps - mid) ? b : a));
        const cpu = ok.map((r) => r.proxyCpuMsPer1kTx).filter((x): x is number => x !== null);
        out.push({ ...rep, tps: mid, proxyCpuMsPer1kTx: cpu.length ? median(cpu) : null, variant: v.name, rounds: ok.length, roundTps: tps, ...fixedFigures });
      });
    }
  } finally {
    for (const srv of servers) await srv.stop();
  }
  return out;
}

/** (variant − off) fixed-rate CPU per transaction over the machine's CPU per transaction at off's full-load TPS. */
function fixedRateShare(r: RecordingResult, off: RecordingResult | undefined): string {
  if (r.variant === 'off') return 'baseline';
  if (!off || r.fixedRateCpuMsPer1kTx === null || off.fixedRateCpuMsPer1kTx === null || !(off.tps > 0)) return '—';
  const addedUs = r.fixedRateCpuMsPer1kTx - off.fixedRateCpuMsPer1kTx; // ms per 1k tx = µs per tx
  const machineUsPerTx = (r.cores * 1e6) / off.tps;
  return `${fmt(addedUs, 1)} µs = ${fmt((addedUs / machineUsPerTx) * 100, 1)}%`;
}

export function recordingTable(results: RecordingResult[], s: BenchSettings): ResultTable {
  const rows = results.map((r) => {
    const off = results.find((x) => x.variant === 'off' && x.clients === r.clients && x.ok);
    return [
      r.variant,
      String(r.clients),
      r.ok ? 'ok' : `FAILED: ${r.error ?? ''}`,
      fmt(r.tps, 0),
      off && r.variant !== 'off' ? `${fmt(((r.tps - off.tps) / off.tps) * 100, 1)}%` : 'baseline',
      fmt(r.latencyAvgMs, 3),
      r.proxyCpuMsPer1kTx === null ? '—' : fmt(r.proxyCpuMsPer1kTx, 1),
      r.roundTps.map((x) => fmt(x, 0)).join(' / '),
      r.fixedRateCpuMsPer1kTx === null ? '—' : `${fmt(r.fixedRateCpuMsPer1kTx, 1)} at ${fmt(r.fixedRate!, 0)} tx/s`,
      fixedRateShare(r, off),
    ];
  });
  return {
    title: `Recording cost: pgbench -S through vecgate, -T ${s.selectSec}`,
    columns: ['recording', 'clients', 'status', 'TPS (median)', 'TPS vs off', 'avg latency ms', 'proxy CPU ms / 1k tx (median)', 'TPS of each round', 'proxy CPU ms / 1k tx at a fixed rate', 'added CPU per tx, share of the machine at full load'],
    rows,
    notes: [
      `Each variant is its own vecgate process, all running at once; the variants take turns, ${s.recordingRounds} round(s) each, and a row is the median round.`,
      '`queries` records every statement (and its result summary), `strict` forwards a statement only after its record is fdatasync\'ed, with one fdatasync per batch of concurrent statements (group commit), so its cost per statement falls as clients grow.',
      'The PostgreSQL cluster runs with fsync off; the recordings directory is on the same disk as the rest.',
      `Fixed rate: the same pgbench with \`-R\` at ${FIXED_RATE_SHARE * 100}% of \`off\`'s median TPS, every variant but \`strict\` carrying the same load, ${s.recordingRounds} interleaved round(s); each process's CPU over the whole phase (work left for after its runs included) per transaction it carried. "Added CPU per tx" is the variant's fixed-rate proxy CPU per transaction minus \`off\`'s, as a share of what one transaction takes of the whole machine at \`off\`'s full-load TPS (cores / TPS): the throughput a CPU-bound machine gives up for recording, measured at equal load instead of read from TPS medians that move ±10% between rounds here.`,
    ],
  };
}
