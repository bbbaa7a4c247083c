// What recording costs: pgbench -S through vecgate with recording off, metadata,
// queries + async and queries + strict (each statement held until its record is
// fdatasync'ed, group-committed across sessions), at several client counts.
import type { BenchEnvironment } from './bench-environment.js';
import type { BenchSettings } from './bench-settings.js';
import { runSelect, type SelectResult } from './pgbench-workloads.js';
import { fmt, type ResultTable } from './results-table.js';
import { startVecgatePgTarget } from './vecgate-peer.js';
import type { Server } from './bench-processes.js';

export const RECORDING_VARIANTS = [
  { name: 'off', mode: 'off', durability: 'async' },
  { name: 'metadata', mode: 'metadata', durability: 'async' },
  { name: 'queries, async', mode: 'queries', durability: 'async' },
  { name: 'queries, strict', mode: 'queries', durability: 'strict' },
] as const;

export interface RecordingResult extends SelectResult {
  variant: string;
}

export async function runRecordingRows(
  env: BenchEnvironment,
  s: BenchSettings,
  repoRoot: string,
  clientCounts: number[],
  log: (msg: string) => void,
): Promise<RecordingResult[]> {
  const out: RecordingResult[] = [];
  for (const v of RECORDING_VARIANTS) {
    let server: Server | null = null;
    try {
      const vg = await startVecgatePgTarget(env, repoRoot, s.proxyWorkers, { mode: v.mode, durability: v.durability });
      server = vg.server;
      const target = vg.target;
      for (const c of clientCounts) {
        log(`pgbench -S -c ${c} vecgate, recording ${v.name}`);
        out.push({ ...(await runSelect(env, s, target, c)), variant: v.name });
      }
    } finally {
      await server?.stop();
    }
  }
  return out;
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
    ];
  });
  return {
    title: `Recording cost: pgbench -S through vecgate, -T ${s.selectSec}`,
    columns: ['recording', 'clients', 'status', 'TPS', 'TPS vs off', 'avg latency ms', 'proxy CPU ms / 1k tx'],
    rows,
    notes: [
      'Each variant is a fresh vecgate process; `queries` records every statement (and its result summary), `strict` forwards a statement only after its record is fdatasync\'ed, with one fdatasync per batch of concurrent statements (group commit), so its cost per statement falls as clients grow.',
      'The PostgreSQL cluster runs with fsync off; the recordings directory is on the same disk as the rest.',
    ],
  };
}
