// Times `verifyRecordings` over a recordings directory of several connections × many segments,
// single-thread (jobs 1) against the piscina pool (jobs 2, 4, ...), each run in turn so the
// rounds share the machine's slow and fast moments (#17 item 16). Writes the recordings with
// the real Recorder first (one Recorder per round of segments: each open starts new segments).
// node dist/bench/verify-recordings-bench.js [--connections 8] [--segments 12] [--events 4000]
//   [--rounds 3] [--jobs 1,2,4] [--dir DIR (kept; reused when it already holds recordings)]
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import type { RecordEvent } from '../src/recording/record-event.js';
import { Recorder } from '../src/recording/recorder.js';
import { verifyRecordings } from '../src/recording/verify-recordings.js';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '8' },
    segments: { type: 'string', default: '12' },
    events: { type: 'string', default: '4000' },
    rounds: { type: 'string', default: '3' },
    jobs: { type: 'string', default: '1,2,4' },
    dir: { type: 'string' },
  },
});
const connections = Number(values.connections);
const segments = Number(values.segments);
const eventsPerSegment = Number(values.events);
const rounds = Number(values.rounds);
const jobsList = values.jobs!.split(',').map(Number);

const dir = values.dir ?? mkdtempSync(path.join(os.tmpdir(), 'vg-verify-bench-'));
const keep = values.dir !== undefined;

async function writeRecordings(): Promise<void> {
  const sql = `SELECT id, embedding <-> '[${Array.from({ length: 24 }, (_, i) => (i / 7).toFixed(3)).join(',')}]' AS d FROM items ORDER BY d LIMIT 10`;
  for (let s = 0; s < segments; s++) {
    const r = await Recorder.open({ dir, durability: 'async', retentionMs: 30 * 86_400_000 });
    for (let c = 0; c < connections; c++) {
      const connection = `conn-${c + 1}`;
      const batch: RecordEvent[] = [];
      for (let i = 0; i < eventsPerSegment; i++) {
        batch.push({ type: i % 2 === 0 ? 'statement' : 'result', ts: Date.now(), session: `${connection}-s${s}`, connection, ...(i % 2 === 0 ? { sql } : { rows: 10 }) });
      }
      await r.append(batch);
    }
    await r.close();
  }
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

try {
  mkdirSync(dir, { recursive: true });
  const existing = readdirSync(dir).filter((n) => !n.startsWith('.') && !n.endsWith('.pem'));
  if (existing.length === 0) {
    const t0 = process.hrtime.bigint();
    await writeRecordings();
    console.error(`wrote ${connections} connections × ${segments} segments × ${eventsPerSegment} events in ${(ms(t0) / 1000).toFixed(1)} s into ${dir}`);
  }
  const times = new Map<number, number[]>(jobsList.map((j) => [j, []]));
  const cpu = new Map<number, number[]>(jobsList.map((j) => [j, []])); // the whole process's, pool threads included
  let summary = '';
  for (let round = 0; round < rounds; round++) {
    for (const jobs of jobsList) {
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const report = await verifyRecordings(dir, { jobs });
      times.get(jobs)!.push(ms(t0));
      const c = process.cpuUsage(c0);
      cpu.get(jobs)!.push((c.user + c.system) / 1000);
      if (!report.ok) throw new Error(`the bench recordings do not verify: ${JSON.stringify(report.firstBad[0])}`);
      summary = `${report.connections.length} connections, ${report.segments} segments, ${report.events} events`;
    }
  }
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {}
  console.log(`verify-recordings: ${summary}; commit ${commit}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, Node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  console.log('| jobs | ms per run (each round) | median ms | vs jobs 1 | CPU ms per run (median) |');
  console.log('| --- | --- | --- | --- | --- |');
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const base = times.has(1) ? median(times.get(1)!) : null;
  for (const [jobs, xs] of times) {
    const m = median(xs);
    console.log(`| ${jobs} | ${xs.map((x) => x.toFixed(0)).join(' / ')} | ${m.toFixed(0)} | ${base === null ? '' : (base / m).toFixed(2) + '×'} | ${median(cpu.get(jobs)!).toFixed(0)} |`);
  }
} finally {
  if (!keep) rmSync(dir, { recursive: true, force: true });
}
