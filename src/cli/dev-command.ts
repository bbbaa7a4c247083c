// `vecgate dev`: the embedded default. A dev CA and server certificate, the embedded dev
// token issuer, an embedded pgvector upstream (PGlite over the wire protocol on loopback —
// the one plaintext upstream, dev only), an embedded Qdrant-compatible vector API (in
// memory, HTTPS on loopback, src/dev/vector-api.ts), and the gateway in front of both.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { loadConfig } from '../config/load.js';
import { ensureDevPki } from '../dev/pki.js';
import { startPgliteUpstream } from '../dev/pglite-upstream.js';
import { lockDevDir } from '../dev/dev-dir-lock.js';
import { startVectorApiUpstream } from '../dev/vector-api.js';
import { DevIssuer } from '../identity/dev-issuer.js';
import { startGateway } from '../gateway/gateway.js';
import { createLogger } from '../log.js';
import { VgError } from '../errors.js';

export const DEV_DEFAULT_PORT = 15432;
export const DEV_CONNECTION = 'vectors';
/** Port of the dev gateway's `protocol: http` connection (Qdrant's is 6333). */
export const DEV_DEFAULT_HTTP_PORT = 16333;
export const DEV_HTTP_CONNECTION = 'qdrant';

export async function runDev(opts: { dir?: string; port?: number | string; httpPort?: number | string }): Promise<void> {
  const dir = path.resolve(opts.dir ?? '.vecgate-dev');
  const port = opts.port === undefined ? DEV_DEFAULT_PORT : Number(opts.port);
  const httpPort = opts.httpPort === undefined ? DEV_DEFAULT_HTTP_PORT : Number(opts.httpPort);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const unlock = lockDevDir(dir);
  try {
    await runDevLocked(dir, port, httpPort, unlock);
  } catch (err) {
    unlock();
    throw err;
  }
}

async function runDevLocked(dir: string, port: number, httpPort: number, unlock: () => void): Promise<void> {
  const logger = createLogger();

  const pki = await ensureDevPki(dir);
  const issuer = await DevIssuer.open(dir);
  const upstream = await startPgliteUpstream({ dataDir: path.join(dir, 'pgdata'), seed: true });
  let vectorApi;
  try {
    vectorApi = await startVectorApiUpstream({ certFile: pki.serverCert, keyFile: pki.serverKey });
  } catch (err) {
    await upstream.close();
    throw err;
  }
  // The vector API's key goes in a file the config refers to: the gateway injects it, clients never see it.
  const apiKeyFile = path.join(dir, 'vector-api-key');
  writeFileSync(apiKeyFile, vectorApi.apiKey, { mode: 0o600 });

  const configFile = path.join(dir, 'vecgate.dev.yaml');
  const doc = {
    server: { tls: { cert: pki.serverCert, key: pki.serverKey, profile: 'modern' }, workers: 'auto' },
    identity: {
      issuers: [{ issuer: issuer.issuer, audience: 'vecgate', jwks: issuer.jwksPath, groups_claim: 'groups', username_claim: 'sub' }],
    },
    policies: [
      { name: 'dev-admin', groups: ['vectors-admin'], connections: [DEV_CONNECTION, DEV_HTTP_CONNECTION], access: 'admin' },
      { name: 'dev-write', groups: ['vectors-writers'], connections: [DEV_CONNECTION, DEV_HTTP_CONNECTION], access: 'write' },
      { name: 'dev-read', groups: ['vectors-readers'], connections: [DEV_CONNECTION, DEV_HTTP_CONNECTION], access: 'read' },
    ],
    connections: {
      [DEV_CONNECTION]: {
        protocol: 'postgres',
        listen: `127.0.0.1:${port}`,
        upstream: {
          host: '127.0.0.1',
          port: upstream.port,
          database: 'postgres',
          // The embedded PGlite upstream speaks no TLS; allowed only because it is on loopback.
          tls: { mode: 'insecure-plaintext' },
          // PGlite checks no password (it answers the startup with AuthenticationOk): loopback, dev only.
          auth_methods: ['trust'],
        },
        credentials: { user: 'postgres', password: 'postgres' },
        recording: 'metadata',
      },
      [DEV_HTTP_CONNECTION]: {
        protocol: 'http',
        flavor: 'qdrant',
        listen: `127.0.0.1:${httpPort}`,
        upstream: { url: vectorApi.url, tls: { mode: 'verify-full', ca: pki.caCert } },
        credentials: { header: 'api-key', value: `file:${apiKeyFile}` },
        // Readers get scores and payloads; only writers and admins may ask for the vectors back.
        guard: { return_vectors: ['vectors-writers', 'vectors-admin'], max_limit: 100 },
        recording: 'metadata',
      },
    },
    recordings: { dir: path.join(dir, 'recordings') },
  };
  writeFileSync(configFile, '# Written by `vecgate dev` on every start; copy it as a starting point.\n' + stringify(doc), { mode: 0o600 });
  const config = await loadConfig(configFile);

  let gw;
  try {
    gw = await startGateway(config, { logger, signals: false });
  } catch (err) {
    await vectorApi.close();
    await upstream.close();
    if (err instanceof VgError && err.code === 'ERR_VG_LISTEN') {
      throw new VgError('ERR_VG_LISTEN', `${err.message}; vecgate dev uses ports ${port} (PostgreSQL) and ${httpPort} (HTTP): pick others with --port and --http-port`, { cause: err });
    }
    throw err;
  }
  const gwPort = gw.listeners.find((l) => l.connection === DEV_CONNECTION)?.port ?? port;
  const gwHttpPort = gw.listeners.find((l) => l.connection === DEV_HTTP_CONNECTION)?.port ?? httpPort;
  const rel = path.relative(process.cwd(), dir) || '.';
  const ca = path.join(rel, path.relative(dir, pki.caCert));
  process.stderr.write(
    [
      '',
      'vecgate dev is running (embedded dev issuer; PGlite + pgvector and an in-memory Qdrant-compatible API as upstreams on loopback).',
      '',
      `  token:   ./bin/vecgate token --dev --dir ${rel} --user you@example.com --groups vectors-admin`,
      `  psql:    PGPASSWORD=$(./bin/vecgate token --dev --dir ${rel}) psql "host=localhost port=${gwPort} dbname=${DEV_CONNECTION} user=you sslmode=verify-full sslrootcert=${ca}"`,
      `  try:     SELECT id, title FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5;`,
      `  http:    curl --cacert ${ca} -H "Authorization: Bearer $(./bin/vecgate token --dev --dir ${rel} --groups vectors-readers)" \\`,
      `             -H 'content-type: application/json' -d '{"vector": [1, 0.1, 0.2], "limit": 3, "with_payload": true}' \\`,
      `             https://localhost:${gwHttpPort}/collections/items/points/search`,
      '',
      `  groups:  vectors-admin (admin), vectors-writers (write), vectors-readers (read); only writers and admins may ask for vectors back over HTTP`,
      `  config:  ${path.join(rel, 'vecgate.dev.yaml')}`,
      `  upstreams: PGlite on 127.0.0.1:${upstream.port} (plaintext, loopback only); vector API on ${vectorApi.url} (in memory: reset on every start)`,
      '  stop:    Ctrl-C',
      '',
    ].join('\n'),
  );
  logger.info({ listeners: gw.listeners, upstream: `127.0.0.1:${upstream.port}`, vectorApi: vectorApi.url, dir }, 'ready');

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    await gw.stop({ drainMs: 5000 });
    await vectorApi.close();
    await upstream.close();
    unlock();
    logger.info('stopped');
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGHUP', () => void gw.reloadConfig());
}
