// Durations and connection counts of the HTTP workloads, full and quick (the latency rows
// reuse the PostgreSQL latency rows' sizes, rate, clients and duration from bench-settings.ts).
import type { BenchSettings } from './bench-settings.js';

export interface HttpBenchSettings {
  /** Seconds each autocannon scenario and the wrk peak run last. */
  scenarioSec: number;
  /** Closed-loop connections per scenario. */
  searchConnections: number;
  upsert100Connections: number;
  upsert1000Connections: number;
  /** wrk peak-rate search: connections and threads (one thread per core). */
  peakConnections: number;
  peakThreads: number;
  /** Seconds of search load each HTTP proxy carries before any HTTP row, not counted (vecgate's JIT warms up). */
  warmupSec: number;
  /** Seconds one request may take before it counts as a timeout. */
  requestTimeoutSec: number;
  /** A load client may run this much longer than its duration before it is killed. */
  clientGraceSec: number;
}

export const FULL_HTTP_SETTINGS: HttpBenchSettings = {
  scenarioSec: 10,
  searchConnections: 16,
  upsert100Connections: 4,
  upsert1000Connections: 2,
  peakConnections: 32,
  peakThreads: 2,
  warmupSec: 3,
  requestTimeoutSec: 30,
  clientGraceSec: 60,
};

export const QUICK_HTTP_SETTINGS: HttpBenchSettings = { ...FULL_HTTP_SETTINGS, scenarioSec: 3 };

export function httpSettings(s: BenchSettings): HttpBenchSettings {
  return s.mode === 'quick' ? QUICK_HTTP_SETTINGS : FULL_HTTP_SETTINGS;
}
