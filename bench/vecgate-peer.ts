// Runs the gateway under test as its own process (`vecgate start --config FILE`), so its
// CPU and memory can be read from /proc, with the dev issuer pinned as its token issuer:
// a PostgreSQL connection (startVecgate) or two HTTP connections (startVecgateHttp).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { freePortOn } from '../src/dev/free-port.js';
import { startServer, type Server } from './bench-processes.js';
import type { BenchEnvironment, PgTarget } from './bench-environment.js';

/** Name of the benchmark's connection (the `dbname` clients ask for). */
export const VECGATE_CONNECTION = 'vectors';
/** Group the benchmark's tokens carry; the policy grants it write access. */
export const VECGATE_BENCH_GROUP = 'bench';
/** Extra node options for the gateway process only (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile it). */
export const GATEWAY_NODE_OPTIONS_ENV = 'VG_BENCH_GATEWAY_NODE_OPTIONS';
/** How long the gateway may take to log "ready". */
export const VECGATE_READY_TIMEOUT_MS = 30_000;

export interface VecgatePeer {
  server: Server;
  port: number;
}

export async function startVecgate(opts: {
  dir: string;
  repoRoot: string;
  serverCert: string;
  serverKey: string;
  caCert: string;
  jwksPath: string;
  issuer: string;
  upstream: { host: string; port: number; database: string };
  credentials: { user: string; password: string };
  workers: number;
  /** Recording mode and durability (default: off) — the recording rows compare them. */
  recording?: { mode: 'off' | 'metadata' | 'queries' | 'full'; durability: 'strict' | 'async' };
  /** upstream.pool.mode transaction with this many backends (the pooled rows); default session mode. */
  transactionPoolSize?: number;
}): Promise<VecgatePeer> {
  const port = await freePortOn('127.0.0.1');
  const doc = {
    server: { tls: { cert: opts.serverCert, key: opts.serverKey, profile: 'modern' }, workers: opts.workers },
    identity: { issuers: [{ issuer: opts.issuer, audience: 'vecgate', jwks: opts.jwksPath, groups_claim: 'groups', username_claim: 'sub' }] },
    policies: [{ name: 'bench', groups: [VECGATE_BENCH_GROUP], connections: [VECGATE_CONNECTION], access: 'write' }],
    connections: {
      [VECGATE_CONNECTION]: {
        protocol: 'postgres',
        listen: `127.0.0.1:${port}`,
        upstream: {
          host: opts.upstream.host,
          port: opts.upstream.port,
          database: opts.upstream.database,
          tls: { mode: 'verify-full', ca: opts.caCert },
          ...(opts.transactionPoolSize ? { pool: { mode: 'transaction', size: opts.transactionPoolSize, wait_timeout: '60s' } } : {}),
        },
        credentials: { user: opts.credentials.user, password: `file:${path.join(opts.dir, 'vecgate-upstream-password')}` },
        // The data path rows run with recording off; the recording rows set a mode.
        recording: opts.recording?.mode ?? 'off',
      },
    },
    recordings: { dir: path.join(opts.dir, `recordings-${port}`), durability: opts.recording?.durability ?? 'strict' },
  };
  writeFileSync(path.join(opts.dir, 'vecgate-upstream-password'), opts.credentials.password, { mode: 0o600 });
  const server = await launchVecgate(doc, { dir: opts.dir, repoRoot: opts.repoRoot, name: `vecgate-${port}` });
  return { server, port };
}

/** What every benchmark gateway is started with: its directory, checkout, certificates and issuer. */
function gatewayFiles(env: BenchEnvironment, repoRoot: string) {
  return {
    dir: env.dir,
    repoRoot,
    serverCert: env.pki.serverCert,
    serverKey: env.pki.serverKey,
    caCert: env.pki.caCert,
    jwksPath: env.issuer.jwksPath,
    issuer: env.issuer.issuer,
  };
}

/** vecgate's HTTP connections in front of the benchmark's HTTP fixture upstream, run from the checkout at `repoRoot`. */
export function startVecgateHttpOn(env: BenchEnvironment, upstreamUrl: string, apiKey: string, repoRoot: string, workers: number): Promise<VecgateHttpPeer> {
  return startVecgateHttp({ ...gatewayFiles(env, repoRoot), upstreamUrl, apiKey, workers });
}

/** vecgate in front of the benchmark cluster as a pgbench target (password = the dev token). */
export async function startVecgatePgTarget(
  env: BenchEnvironment,
  repoRoot: string,
  workers: number,
  recording?: { mode: 'off' | 'metadata' | 'queries' | 'full'; durability: 'strict' | 'async' },
  transactionPoolSize?: number,
): Promise<{ target: PgTarget; server: Server }> {
  const vg = await startVecgate({
    ...gatewayFiles(env, repoRoot),
    upstream: { host: 'localhost', port: env.cluster.port, database: env.cluster.database },
    credentials: { user: env.rwUser, password: env.rwPassword },
    workers,
    recording,
    transactionPoolSize,
  });
  return {
    server: vg.server,
    target: { system: transactionPoolSize ? 'vecgate (transaction)' : 'vecgate', port: vg.port, dbname: VECGATE_CONNECTION, user: 'bench', password: env.token, proxyPids: () => [vg.server.pid], proxyPid: () => vg.server.pid },
  };
}

/** Name of the benchmark's Qdrant-flavored HTTP connection. */
export const VECGATE_HTTP_QDRANT_CONNECTION = 'qdrant';
/** Name of the benchmark's generic HTTP connection (plain GETs for the latency rows). */
export const VECGATE_HTTP_GENERIC_CONNECTION = 'generic';
/** guard.max_limit of the Qdrant connection: above every top-k the workloads ask for. */
export const VECGATE_HTTP_MAX_LIMIT = 1000;

export interface VecgateHttpPeer {
  server: Server;
  /** Port of the `flavor: qdrant` connection (guard on: search bodies are read). */
  qdrantPort: number;
  /** Port of the `flavor: generic` connection (no body inspection). */
  genericPort: number;
}

/**
 * A gateway with two `protocol: http` connections to the same HTTPS upstream, verified
 * against the CA, the upstream credential injected as `api-key`: `qdrant` (route table and
 * guard, the bench group allowed vectors back) and `generic`.
 */
export async function startVecgateHttp(opts: {
  dir: string;
  repoRoot: string;
  serverCert: string;
  serverKey: string;
  caCert: string;
  jwksPath: string;
  issuer: string;
  upstreamUrl: string;
  apiKey: string;
  workers: number;
}): Promise<VecgateHttpPeer> {
  const qdrantPort = await freePortOn('127.0.0.1');
  const genericPort = await freePortOn('127.0.0.1');
  const keyFile = path.join(opts.dir, 'vecgate-http-api-key');
  writeFileSync(keyFile, opts.apiKey, { mode: 0o600 });
  const upstream = { url: opts.upstreamUrl, tls: { mode: 'verify-full', ca: opts.caCert } };
  const credentials = { header: 'api-key', value: `file:${keyFile}` };
  const doc = {
    server: { tls: { cert: opts.serverCert, key: opts.serverKey, profile: 'modern' }, workers: opts.workers },
    identity: { issuers: [{ issuer: opts.issuer, audience: 'vecgate', jwks: opts.jwksPath, groups_claim: 'groups', username_claim: 'sub' }] },
    policies: [{ name: 'bench', groups: [VECGATE_BENCH_GROUP], connections: [VECGATE_HTTP_QDRANT_CONNECTION, VECGATE_HTTP_GENERIC_CONNECTION], access: 'write' }],
    connections: {
      [VECGATE_HTTP_QDRANT_CONNECTION]: {
        protocol: 'http',
        flavor: 'qdrant',
        listen: `127.0.0.1:${qdrantPort}`,
        upstream,
        credentials,
        guard: { return_vectors: [VECGATE_BENCH_GROUP], max_limit: VECGATE_HTTP_MAX_LIMIT },
        recording: 'off',
      },
      [VECGATE_HTTP_GENERIC_CONNECTION]: { protocol: 'http', flavor: 'generic', listen: `127.0.0.1:${genericPort}`, upstream, credentials, recording: 'off' },
    },
    recordings: { dir: path.join(opts.dir, 'recordings') },
  };
  const server = await launchVecgate(doc, { dir: opts.dir, repoRoot: opts.repoRoot, name: `vecgate-http-${qdrantPort}` });
  return { server, qdrantPort, genericPort };
}

/** Writes the config and starts `vecgate start --config FILE`; resolves once it logs "ready". */
async function launchVecgate(doc: object, opts: { dir: string; repoRoot: string; name: string }): Promise<Server> {
  const configFile = path.join(opts.dir, `${opts.name}.yaml`);
  writeFileSync(configFile, stringify(doc));
  const nodeArgs = (process.env[GATEWAY_NODE_OPTIONS_ENV] ?? '').split(' ').filter(Boolean);
  const server = startServer('vecgate', process.execPath, [...nodeArgs, path.join(opts.repoRoot, 'bin', 'vecgate'), 'start', '--config', configFile], {
    cwd: opts.dir,
  });
  await server.waitFor(/"msg":"ready"/, VECGATE_READY_TIMEOUT_MS);
  return server;
}
