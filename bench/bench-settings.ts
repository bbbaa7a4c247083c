// The benchmark matrix: sizes, durations and client counts of the full run and of the
// quick run (`--quick`, about two to four minutes). Every figure is named here.

/** Bytes of one COPY row on the wire: CopyData 'd' + int32 length + 1000 'x' + '\n'. */
export const COPY_ROW_WIRE_BYTES = 1006;

export interface BenchSettings {
  mode: 'full' | 'quick';
  /** Bytes the COPY workload moves (rows of COPY_ROW_WIRE_BYTES). */
  copyBytes: number;
  /** pgbench -s for the select-only tables. */
  pgbenchScale: number;
  /** Client counts for pgbench -S. */
  selectClients: number[];
  selectSec: number;
  churnClients: number;
  churnSec: number;
  /** Idle sessions asked for; the figure actually held is reported. */
  idleSessions: number;
  /** PostgreSQL max_connections: 10,000 backends do not fit this machine, so idle runs are capped below it. */
  pgMaxConnections: number;
  /** Result sizes for the added-latency runs, and their open-loop rate. */
  latencySizes: number[];
  latencyRatePerSec: number;
  latencySec: number;
  latencyClients: number;
  /** Threads for pgbench (-j). */
  pgbenchThreads: number;
  /** Gateway worker threads (and nginx/haproxy workers): one per core. */
  proxyWorkers: number;
  /** Client counts for the recording rows, and how many interleaved rounds each runs. */
  recordingClients: number[];
  recordingRounds: number;
}

export const FULL_SETTINGS: BenchSettings = {
  mode: 'full',
  copyBytes: 1_000_000_000,
  pgbenchScale: 10,
  selectClients: [1, 8, 64],
  selectSec: 10,
  churnClients: 8,
  churnSec: 10,
  idleSessions: 10_000,
  pgMaxConnections: 2600,
  latencySizes: [64, 6 * 1024, 60 * 1024],
  latencyRatePerSec: 500,
  latencySec: 10,
  latencyClients: 4,
  pgbenchThreads: 2,
  proxyWorkers: 2,
  recordingClients: [1, 8, 64],
  recordingRounds: 3,
};

export const QUICK_SETTINGS: BenchSettings = {
  ...FULL_SETTINGS,
  mode: 'quick',
  copyBytes: 256_000_000,
  selectClients: [8],
  selectSec: 5,
  churnSec: 5,
  idleSessions: 1000,
  latencySizes: [6 * 1024],
  latencySec: 4,
  recordingClients: [8],
  recordingRounds: 1,
};
