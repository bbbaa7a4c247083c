// Runs `vecgate start` as its own process (as an operator would) in front of a test
// PostgreSQL cluster, for tests that need its PID: memory from /proc, kill -9.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { TestPki } from '../../src/dev/pki.js';
import type { DevIssuer } from '../../src/identity/dev-issuer.js';
import type { PgCluster } from './pg-cluster.js';
import { freePort } from './free-port.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export interface GatewayProcess {
  child: ChildProcess;
  port: number;
  /** SIGTERM and wait, unless it already exited. */
  stop(): Promise<void>;
}

/** Writes a config (one `vectors` connection to the cluster, group ml-writers = write) and waits for "ready". */
export async function startGatewayProcess(opts: {
  dir: string;
  pki: TestPki;
  issuer: DevIssuer;
  cluster: PgCluster;
  connection?: Record<string, unknown>;
  recordings?: Record<string, unknown>;
}): Promise<GatewayProcess> {
  const port = await freePort();
  const config = path.join(opts.dir, `vecgate-${port}.yaml`);
  writeFileSync(
    config,
    stringify({
      server: { tls: { cert: opts.pki.serverCert, key: opts.pki.serverKey }, workers: 2 },
      identity: { issuers: [{ issuer: opts.issuer.issuer, audience: 'vecgate', jwks: opts.issuer.jwksPath }] },
      policies: [{ name: 'w', groups: ['ml-writers'], connections: ['vectors'], access: 'write' }],
      connections: {
        vectors: {
          protocol: 'postgres',
          listen: `127.0.0.1:${port}`,
          upstream: { host: 'localhost', port: opts.cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: opts.pki.caCert } },
          credentials: opts.cluster.roles.rw,
          ...(opts.connection ?? {}),
        },
      },
      ...(opts.recordings ? { recordings: opts.recordings } : {}),
    }),
  );
  const child = spawn(process.execPath, [path.join(root, 'bin', 'vecgate'), 'start', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('"msg":"ready"')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`gateway exited (${code})`)));
  });
  child.stdout!.resume();
  return {
    child,
    port,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}
