// Runs the gateway under test as its own process (`vecgate start --config FILE`), so its
// CPU and memory can be read from /proc, with the dev issuer pinned as its token issuer.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { freePortOn } from '../src/dev/free-port.js';
import { startServer, type Server } from './bench-processes.js';

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
        upstream: { host: opts.upstream.host, port: opts.upstream.port, database: opts.upstream.database, tls: { mode: 'verify-full', ca: opts.caCert } },
        credentials: { user: opts.credentials.user, password: `file:${path.join(opts.dir, 'vecgate-upstream-password')}` },
        // The data path is what is measured here; recording modes get their own rows once the recorder lands.
        recording: 'off',
      },
    },
    recordings: { dir: path.join(opts.dir, 'recordings') },
  };
  writeFileSync(path.join(opts.dir, 'vecgate-upstream-password'), opts.credentials.password, { mode: 0o600 });
  const configFile = path.join(opts.dir, `vecgate-${port}.yaml`);
  writeFileSync(configFile, stringify(doc));
  const nodeArgs = (process.env[GATEWAY_NODE_OPTIONS_ENV] ?? '').split(' ').filter(Boolean);
  const server = startServer('vecgate', process.execPath, [...nodeArgs, path.join(opts.repoRoot, 'bin', 'vecgate'), 'start', '--config', configFile], {
    cwd: opts.dir,
  });
  await server.waitFor(/"msg":"ready"/, VECGATE_READY_TIMEOUT_MS);
  return { server, port };
}
