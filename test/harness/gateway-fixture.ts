// Starts a real gateway (worker threads, native listeners) in the test process from a YAML
// config written to a temp dir, with the dev issuer as its token issuer and every log line
// captured so tests can check what operators see (and that no secret is in it).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { startGateway, type GatewayHandle } from '../../src/gateway/gateway.js';
import { DevIssuer } from '../../src/identity/dev-issuer.js';
import { freePort } from './free-port.js';

export interface GatewayFixture {
  port: number;
  handle: GatewayHandle;
  issuer: DevIssuer;
  configFile: string;
  token(user: string, groups: string[], ttlSec?: number): Promise<string>;
  logs(): string;
  stop(): Promise<void>;
}

export interface FixtureOptions {
  dir: string;
  serverCert: string;
  serverKey: string;
  connection?: string;
  /** The YAML `upstream` block of the connection. */
  upstream: Record<string, unknown>;
  credentials: Record<string, unknown>;
  workers?: number;
  policies?: { name: string; groups: string[]; connections: string[]; access: string }[];
  server?: Record<string, unknown>;
  recording?: 'off' | 'metadata' | 'queries' | 'full';
  recordings?: Record<string, unknown>;
}

export async function startGatewayFixture(opts: FixtureOptions): Promise<GatewayFixture> {
  const connection = opts.connection ?? 'vectors';
  const issuer = await DevIssuer.open(opts.dir);
  const port = await freePort();
  const doc = {
    server: { tls: { cert: opts.serverCert, key: opts.serverKey, profile: 'modern' }, workers: opts.workers ?? 2, ...(opts.server ?? {}) },
    identity: { issuers: [{ issuer: issuer.issuer, audience: 'vecgate', jwks: issuer.jwksPath, groups_claim: 'groups', username_claim: 'sub' }] },
    policies: opts.policies ?? [
      { name: 'readers', groups: ['ml-readers'], connections: [connection], access: 'read' },
      { name: 'writers', groups: ['ml-writers'], connections: [connection], access: 'write' },
    ],
    connections: {
      [connection]: { protocol: 'postgres', listen: `127.0.0.1:${port}`, upstream: opts.upstream, credentials: opts.credentials, recording: opts.recording ?? 'metadata' },
    },
    recordings: { dir: path.join(opts.dir, 'recordings'), ...(opts.recordings ?? {}) },
  };
  const configFile = path.join(opts.dir, `vecgate-${port}.yaml`);
  writeFileSync(configFile, stringify(doc));
  const config = await loadConfig(configFile);
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const handle = await startGateway(config, { logger, signals: false });
  return {
    port: handle.listeners.find((l) => l.connection === connection)!.port,
    handle,
    issuer,
    configFile,
    token: (user, groups, ttlSec = 600) => issuer.mint({ user, groups, ttlSec }),
    logs: () => lines.join(''),
    stop: () => handle.stop({ drainMs: 500 }),
  };
}
