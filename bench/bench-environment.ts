// Everything the workloads share: one ECDSA P-256 CA and server certificate used by every
// system, an ephemeral PostgreSQL 15 (TLS + SCRAM) with pgbench tables, the dev issuer and
// a token, and the PostgreSQL-speaking targets (direct, vecgate, pgbouncer).
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeTestPki, type TestPki } from '../src/dev/pki.js';
import { DevIssuer } from '../src/identity/dev-issuer.js';
import { PG_BIN, startPgCluster, type PgCluster } from '../test/harness/pg-cluster.js';
import { runMeasured } from './bench-processes.js';
import type { BenchSettings } from './bench-settings.js';

/** Lifetime of the benchmark's access token: longer than any full run. */
export const BENCH_TOKEN_TTL_SEC = 4 * 3600;
/** Time allowed for `pgbench -i`. */
export const PGBENCH_INIT_TIMEOUT_SEC = 300;

export type PgSystem = 'direct' | 'vecgate' | 'pgbouncer' | 'vecgate (transaction)' | 'pgbouncer (transaction)';

/** A PostgreSQL endpoint clients can reach with libpq (psql, pgbench). */
export interface PgTarget {
  system: PgSystem;
  port: number;
  dbname: string;
  user: string;
  password: string;
  /** Pids whose CPU is the proxy's (empty for direct). */
  proxyPids(): number[];
  /** Pid whose RSS is the proxy's (0 for direct). */
  proxyPid(): number;
}

export interface BenchEnvironment {
  dir: string;
  repoRoot: string;
  pki: TestPki;
  cluster: PgCluster;
  issuer: DevIssuer;
  token: string;
  rwUser: string;
  rwPassword: string;
  scramSecret: string;
  cleanup(): Promise<void>;
}

export function conninfo(t: PgTarget, caCert: string): string {
  return `host=127.0.0.1 port=${t.port} dbname=${t.dbname} user=${t.user} sslmode=verify-full sslrootcert=${caCert} application_name=vg-bench`;
}

export function clientEnv(t: PgTarget): NodeJS.ProcessEnv {
  // The password goes through the environment, never the command line (visible in ps).
  return { ...process.env, PGPASSWORD: t.password, PGCONNECT_TIMEOUT: '30' };
}

export async function setUpEnvironment(settings: BenchSettings, repoRoot: string, log: (s: string) => void): Promise<BenchEnvironment> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vg-bench-'));
  chmodSync(dir, 0o755); // pgbouncer runs as `postgres` and must reach its own sub-directory
  const pki = await writeTestPki(path.join(dir, 'pki'));
  chmodSync(path.join(dir, 'pki'), 0o755);
  log(`starting PostgreSQL 15 (max_connections=${settings.pgMaxConnections})`);
  const cluster = await startPgCluster({
    pki,
    maxConnections: settings.pgMaxConnections,
    settings: { shared_buffers: "'256MB'", max_wal_size: "'2GB'", log_min_messages: "'fatal'" },
  });
  const scramSecret = (await cluster.psql(`SELECT rolpassword FROM pg_authid WHERE rolname = '${cluster.roles.rw.user}'`)).trim();
  const issuer = await DevIssuer.open(dir);
  const token = await issuer.mint({ user: 'bench', groups: ['bench'], ttlSec: BENCH_TOKEN_TTL_SEC });
  const env: BenchEnvironment = {
    dir,
    repoRoot,
    pki,
    cluster,
    issuer,
    token,
    rwUser: cluster.roles.rw.user,
    rwPassword: cluster.roles.rw.password,
    scramSecret,
    async cleanup() {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  log(`pgbench -i -s ${settings.pgbenchScale} (direct)`);
  const direct = directTarget(env);
  const init = await runMeasured(path.join(PG_BIN, 'pgbench'), ['-i', '-s', String(settings.pgbenchScale), '-q', conninfo(direct, pki.caCert)], {
    env: clientEnv(direct),
    timeoutSec: PGBENCH_INIT_TIMEOUT_SEC,
  });
  if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr.slice(-2000)}`);
  return env;
}

export function directTarget(env: BenchEnvironment): PgTarget {
  return { system: 'direct', port: env.cluster.port, dbname: env.cluster.database, user: env.rwUser, password: env.rwPassword, proxyPids: () => [], proxyPid: () => 0 };
}
