// Runs pgbouncer in session mode with TLS on both legs (client: require, server:
// verify-full) using the benchmark's certificates; clients authenticate with SCRAM against
// the upstream role's SCRAM secret, which pgbouncer then reuses toward PostgreSQL.
import { execFileSync } from 'node:child_process';
import { copyFileSync, chmodSync, chownSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePortOn } from '../src/dev/free-port.js';
import { startServer, type Server } from './bench-processes.js';

/** Client connections pgbouncer accepts (idle-session runs need many). */
export const PGBOUNCER_MAX_CLIENT_CONN = 20_000;

export interface PgbouncerPeer {
  server: Server;
  port: number;
}

export async function startPgbouncer(opts: {
  dir: string;
  serverCert: string;
  serverKey: string;
  caCert: string;
  upstream: { host: string; port: number; database: string };
  user: string;
  /** The role's `SCRAM-SHA-256$...` secret from pg_authid. */
  scramSecret: string;
  /** Server connections per (db, user): one per client in session mode. */
  poolSize: number;
  /** pool_mode (default session). */
  poolMode?: 'session' | 'transaction';
}): Promise<PgbouncerPeer> {
  const port = await freePortOn('127.0.0.1');
  // pgbouncer will not run as root: it runs as `postgres` and needs its own readable copies.
  const dir = path.join(opts.dir, `pgbouncer-${port}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const cert = path.join(dir, 'server.pem');
  const key = path.join(dir, 'server-key.pem');
  const ca = path.join(dir, 'ca.pem');
  copyFileSync(opts.serverCert, cert);
  copyFileSync(opts.serverKey, key);
  copyFileSync(opts.caCert, ca);
  chmodSync(key, 0o600);
  const userlist = path.join(dir, 'userlist.txt');
  writeFileSync(userlist, `"${opts.user}" "${opts.scramSecret}"\n`, { mode: 0o600 });
  const ini = path.join(dir, 'pgbouncer.ini');
  writeFileSync(
    ini,
    [
      '[databases]',
      `${opts.upstream.database} = host=${opts.upstream.host} port=${opts.upstream.port} dbname=${opts.upstream.database}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      `unix_socket_dir =`,
      `pool_mode = ${opts.poolMode ?? 'session'}`,
      `max_client_conn = ${PGBOUNCER_MAX_CLIENT_CONN}`,
      `default_pool_size = ${opts.poolSize}`,
      `max_db_connections = 0`,
      'auth_type = scram-sha-256',
      `auth_file = ${userlist}`,
      `client_tls_sslmode = require`,
      `client_tls_cert_file = ${cert}`,
      `client_tls_key_file = ${key}`,
      `client_tls_protocols = tlsv1.3`,
      `server_tls_sslmode = verify-full`,
      `server_tls_ca_file = ${ca}`,
      `server_tls_protocols = tlsv1.3`,
      'ignore_startup_parameters = extra_float_digits',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      'log_connections = 0',
      'log_disconnections = 0',
      'log_pooler_errors = 1',
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      'server_login_retry = 1',
      '',
    ].join('\n'),
  );
  // pgbouncer refuses to run as root; it drops to `postgres` with -u.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
    for (const f of readdirSync(dir)) chownSync(path.join(dir, f), uid, gid);
  }
  const server = startServer('pgbouncer', '/usr/sbin/pgbouncer', [...(asRoot ? ['-u', 'postgres'] : []), ini], { cwd: dir });
  await server.waitFor(/process up|listening on/i, 15_000);
  return { server, port };
}
