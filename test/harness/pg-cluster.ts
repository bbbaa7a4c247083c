// An ephemeral PostgreSQL 15 cluster for one test run: initdb into a temp dir as the
// `postgres` system user (initdb refuses root), ssl=on with the test CA's server
// certificate, scram-sha-256 for TCP (TLS only), trust on its private unix socket for
// setup. Roles vec_ro / vec_rw and database `vectors` with a `docs` table. It stops on
// stop(), on process exit, and through a watchdog if the test process is killed.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestPki } from '../../src/dev/pki.js';
import { freePort } from './free-port.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface PgCluster {
  host: '127.0.0.1';
  port: number;
  socketDir: string;
  dataDir: string;
  superuser: string;
  roles: { ro: { user: string; password: string }; rw: { user: string; password: string } };
  database: 'vectors';
  psql(sql: string): Promise<string>;
  stop(): Promise<void>;
  kill9(): Promise<void>;
  pid(): number;
}

function pgUid(): { uid: number; gid: number } {
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

function asPostgres(cmd: string, args: string[], opts: { input?: string } = {}): string {
  const isRoot = process.getuid?.() === 0;
  const r = isRoot
    ? spawnSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { encoding: 'utf8', input: opts.input })
    : spawnSync(cmd, args, { encoding: 'utf8', input: opts.input });
  if (r.status !== 0) throw new Error(`${path.basename(cmd)} ${args.slice(0, 3).join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}

export async function startPgCluster(opts: { pki: TestPki; maxConnections?: number; settings?: Record<string, string> }): Promise<PgCluster> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vg-pg-'));
  const data = path.join(dir, 'data');
  const isRoot = process.getuid?.() === 0;
  const owner = isRoot ? pgUid() : null;
  const cert = path.join(dir, 'server.crt');
  const key = path.join(dir, 'server.key');
  copyFileSync(opts.pki.serverCert, cert);
  copyFileSync(opts.pki.serverKey, key);
  chmodSync(key, 0o600);
  chmodSync(dir, 0o700);
  if (owner) for (const f of [dir, cert, key]) chownSync(f, owner.uid, owner.gid);

  asPostgres(path.join(PG_BIN, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C']);
  writeFileSync(path.join(data, 'pg_hba.conf'), [
    'local all all trust',
    'hostssl all all 127.0.0.1/32 scram-sha-256',
    'hostnossl all all 0.0.0.0/0 reject',
    '',
  ].join('\n'));
  const port = await freePort();
  const settings: Record<string, string> = {
    listen_addresses: "'127.0.0.1'",
    port: String(port),
    unix_socket_directories: `'${dir}'`,
    ssl: 'on',
    ssl_cert_file: `'${cert}'`,
    ssl_key_file: `'${key}'`,
    password_encryption: "'scram-sha-256'",
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: String(opts.maxConnections ?? 200),
    shared_buffers: "'128MB'",
    log_min_messages: "'warning'",
    ...(opts.settings ?? {}),
  };
  writeFileSync(path.join(data, 'postgresql.auto.conf'), Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  if (owner) chownSync(path.join(data, 'pg_hba.conf'), owner.uid, owner.gid), chownSync(path.join(data, 'postgresql.auto.conf'), owner.uid, owner.gid);
  asPostgres(path.join(PG_BIN, 'pg_ctl'), ['-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  const pidFile = path.join(data, 'postmaster.pid');
  const postmasterPid = Number(execFileSync('head', ['-1', pidFile], { encoding: 'utf8' }).trim());

  // Watchdog: if this process dies without stopping the cluster, stop it anyway.
  const watchdog = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${postmasterPid} 2>/dev/null; do sleep 1; done; kill -QUIT ${postmasterPid} 2>/dev/null; sleep 2; rm -rf '${dir}'`], {
    detached: true,
    stdio: 'ignore',
  });
  watchdog.unref();

  const psqlSync = (sql: string, db = 'vectors') =>
    asPostgres('/usr/bin/psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', dir, '-p', String(port), '-U', 'postgres', '-d', db, '-c', sql]);

  const ro = { user: 'vec_ro', password: `ro-${randomBytes(12).toString('hex')}` };
  const rw = { user: 'vec_rw', password: `rw-${randomBytes(12).toString('hex')}` };
  psqlSync('CREATE DATABASE vectors', 'postgres');
  psqlSync(`
    CREATE ROLE vec_rw LOGIN PASSWORD '${rw.password}';
    CREATE ROLE vec_ro LOGIN PASSWORD '${ro.password}';
    GRANT ALL ON SCHEMA public TO vec_rw;
    CREATE TABLE docs (id bigserial PRIMARY KEY, body text NOT NULL, embedding real[]);
    ALTER TABLE docs OWNER TO vec_rw;
    GRANT USAGE ON SCHEMA public TO vec_ro;
    GRANT SELECT ON docs TO vec_ro;
    ALTER DEFAULT PRIVILEGES FOR ROLE vec_rw IN SCHEMA public GRANT SELECT ON TABLES TO vec_ro;
  `);

  let stopped = false;
  const stopSync = (mode: 'fast' | 'immediate') => {
    if (stopped) return;
    stopped = true;
    try {
      asPostgres(path.join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', mode, '-w', '-t', '30', 'stop']);
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = () => stopSync('immediate');
  process.once('exit', onExit);

  return {
    host: '127.0.0.1',
    port,
    socketDir: dir,
    dataDir: data,
    superuser: 'postgres',
    roles: { ro, rw },
    database: 'vectors',
    psql: async (sql: string) => psqlSync(sql),
    async stop() {
      process.removeListener('exit', onExit);
      stopSync('fast');
    },
    async kill9() {
      try {
        process.kill(postmasterPid, 'SIGKILL');
      } catch {
        // already gone
      }
    },
    pid: () => postmasterPid,
  };
}
