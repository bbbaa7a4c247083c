// An ephemeral PostgreSQL 15 cluster for one test run: initdb into a temp dir as the
// `postgres` system user (initdb refuses root), ssl=on with the test CA's server
// certificate, scram-sha-256 over TCP (TLS only), trust on its private unix socket for
// setup. Roles vec_ro / vec_rw and database `vectors` with a `docs` table. It stops on
// stop(), on process exit, and through a detached watchdog if the test process is killed.
// It never touches the machine's own PostgreSQL: its own port, socket dir and data dir.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestPki } from '../../src/dev/pki.js';
import { freePort } from './free-port.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
export const PSQL = path.join(PG_BIN, 'psql');
/** The system user that owns and runs the cluster when the tests run as root. */
export const PG_SYSTEM_USER = 'postgres';
export const DEFAULT_PG_MAX_CONNECTIONS = 200;
/** Seconds pg_ctl waits for start and stop. */
const PG_CTL_TIMEOUT_S = 60;
/** How often the watchdog checks that the test process is still alive. */
const WATCHDOG_INTERVAL_S = 1;
/** A unix socket path must fit in sockaddr_un (108 bytes with the NUL); PG adds "/.s.PGSQL.<port>". */
const MAX_SOCKET_DIR_LENGTH = 107 - '/.s.PGSQL.65535'.length;
/** Output of a harness command kept in memory (psql results for tests are small). */
const MAX_COMMAND_OUTPUT = 64 * 1024 * 1024;

// A type alias (not an interface) so it stays assignable to Record<string, unknown>.
export type PgRole = { user: string; password: string };

export interface PgCluster {
  host: '127.0.0.1';
  port: number;
  /** The unix socket directory (also the cluster's temp dir). */
  socketDir: string;
  dataDir: string;
  /** The server log: read it when a test fails for a reason the client cannot see. */
  logFile: string;
  superuser: string;
  roles: { ro: PgRole; rw: PgRole };
  database: 'vectors';
  /** Runs SQL as the superuser over the unix socket (unaligned, tuples only); rejects with psql's error. */
  psql(sql: string, database?: string): Promise<string>;
  /** Fast shutdown, then removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** pg_ctl restart -m fast on the same port and data: every backend ends (FATAL 57P01), then the server takes connections again. */
  restart(): Promise<void>;
  /** SIGKILL to the postmaster and every backend at once: the server vanishes mid-whatever. */
  kill9(): Promise<void>;
  /** The postmaster's PID. */
  pid(): number;
}

export interface PgClusterOptions {
  pki: TestPki;
  /** Parent for the cluster's temp dir (default: the OS temp dir); the postgres user must be able to enter it. */
  dir?: string;
  maxConnections?: number;
  /** Extra postgresql.conf settings, values as PostgreSQL expects them (quote strings: "'on'"). */
  settings?: Record<string, string>;
  /**
   * pg_hba.conf lines for TLS over TCP, in place of the default `hostssl all all 127.0.0.1/32
   * scram-sha-256` (e.g. `password` or `md5` for one role, to test what the gateway answers).
   */
  hostsslRules?: string[];
}

const isRoot = () => process.getuid?.() === 0;

// Commands that must run as the cluster's owner: through runuser when we are root.
function asOwner(cmd: string, args: string[]): [string, string[]] {
  return isRoot() ? ['runuser', ['-u', PG_SYSTEM_USER, '--', cmd, ...args]] : [cmd, args];
}

function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const [file, argv] = asOwner(cmd, args);
  return new Promise((resolve, reject) => {
    execFile(file, argv, { encoding: 'utf8', maxBuffer: MAX_COMMAND_OUTPUT, env: env ?? process.env }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(cmd)} ${args.slice(0, 4).join(' ')} failed: ${(stderr || stdout || err.message).trim()}`));
      else resolve(stdout);
    });
  });
}

function runSync(cmd: string, args: string[]): void {
  const [file, argv] = asOwner(cmd, args);
  execFileSync(file, argv, { stdio: 'ignore', timeout: PG_CTL_TIMEOUT_S * 1000 });
}

function ownerIds(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, PG_SYSTEM_USER], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    throw new Error(`the test PostgreSQL cluster runs as the "${PG_SYSTEM_USER}" system user, which does not exist; run: bash scripts/ensure-system-deps.sh`);
  }
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no server log)';
  }
}

// Direct children of `pid`, from /proc (the backends and auxiliary processes of a postmaster).
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return out;
}

const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Starts a fresh PostgreSQL 15 cluster on 127.0.0.1 and a free port, ready for TLS + SCRAM.
 * @example
 * const pki = await writeTestPki(tmp);
 * const pgc = await startPgCluster({ pki });
 * const c = new pg.Client({ host: pgc.host, port: pgc.port, database: pgc.database, ...pgc.roles.rw, ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' } });
 * after(() => pgc.stop());
 */
export async function startPgCluster(opts: PgClusterOptions): Promise<PgCluster> {
  for (const bin of ['initdb', 'pg_ctl', 'postgres', 'psql']) {
    if (!existsSync(path.join(PG_BIN, bin))) {
      throw new Error(`PostgreSQL 15 (${path.join(PG_BIN, bin)}) is not installed; run: bash scripts/ensure-system-deps.sh`);
    }
  }
  const owner = isRoot() ? ownerIds() : null;
  const dir = mkdtempSync(path.join(path.resolve(opts.dir ?? os.tmpdir()), 'vg-pg-'));
  if (dir.length > MAX_SOCKET_DIR_LENGTH) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`the cluster dir ${dir} is too long for a unix socket path (max ${MAX_SOCKET_DIR_LENGTH} characters); pass a shorter dir`);
  }
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  const pgCtl = path.join(PG_BIN, 'pg_ctl');
  let watchdogPid: number | undefined;
  let postmasterPid = 0;
  let stopped = false;
  let killed = false; // after kill9 the PID in postmaster.pid may be reused: never signal it again

  const cleanupSync = (mode: 'fast' | 'immediate') => {
    if (stopped) return;
    stopped = true;
    if (watchdogPid) {
      try {
        process.kill(watchdogPid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (!killed && existsSync(path.join(data, 'postmaster.pid'))) {
      try {
        runSync(pgCtl, ['-D', data, '-m', mode, '-w', '-t', String(PG_CTL_TIMEOUT_S), 'stop']);
      } catch {
        // not running (killed, or never started)
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = () => cleanupSync('immediate');
  process.once('exit', onExit);

  try {
    const cert = path.join(dir, 'server.crt');
    const key = path.join(dir, 'server.key');
    copyFileSync(opts.pki.serverCert, cert);
    copyFileSync(opts.pki.serverKey, key);
    chmodSync(key, 0o600); // PostgreSQL refuses a key readable by others
    chmodSync(dir, 0o700);
    if (owner) for (const f of [dir, cert, key]) chownSync(f, owner.uid, owner.gid);
    try {
      await run('test', ['-w', dir, '-a', '-r', key]);
    } catch {
      throw new Error(`the "${PG_SYSTEM_USER}" user cannot enter ${dir}; pass a dir whose parents it can traverse (e.g. under ${os.tmpdir()})`);
    }

    await run(path.join(PG_BIN, 'initdb'), ['-D', data, '-U', PG_SYSTEM_USER, '-A', 'trust', '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C']);
    // The file belongs to the cluster owner already; writing keeps its owner.
    writeFileSync(path.join(data, 'pg_hba.conf'), [
      '# vecgate test cluster: trust only on the private unix socket; TCP is TLS + SCRAM or nothing.',
      'local all all trust',
      ...(opts.hostsslRules ?? ['hostssl all all 127.0.0.1/32 scram-sha-256']),
      'hostnossl all all 0.0.0.0/0 reject',
      'host all all ::/0 reject',
      '',
    ].join('\n'));
    const port = await freePort();
    const settings: Record<string, string> = {
      listen_addresses: "'127.0.0.1'",
      port: String(port),
      unix_socket_directories: sq(dir),
      ssl: 'on',
      ssl_cert_file: sq(cert),
      ssl_key_file: sq(key),
      password_encryption: "'scram-sha-256'",
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      max_connections: String(opts.maxConnections ?? DEFAULT_PG_MAX_CONNECTIONS),
      shared_buffers: "'128MB'",
      log_min_messages: "'warning'",
      ...(opts.settings ?? {}),
    };
    appendFileSync(path.join(data, 'postgresql.conf'), '\n# vecgate test cluster\n' + Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
    try {
      await run(pgCtl, ['-D', data, '-l', logFile, '-w', '-t', String(PG_CTL_TIMEOUT_S), 'start']);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nserver log:\n${tail(logFile)}`);
    }
    postmasterPid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);

    // Watchdog: a detached shell that outlives a killed test process and stops the cluster
    // then; stop() and the exit handler end it by PID.
    const stopCmd = [...asOwner(pgCtl, ['-D', data, '-m', 'immediate', '-w', '-t', String(PG_CTL_TIMEOUT_S), 'stop'])].flat().map(sq).join(' ');
    const watchdog = spawn(
      'sh',
      ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep ${WATCHDOG_INTERVAL_S}; done; ${stopCmd} >/dev/null 2>&1; rm -rf ${sq(dir)}`],
      { detached: true, stdio: 'ignore' },
    );
    watchdog.unref();
    watchdogPid = watchdog.pid;

    const psql = (sql: string, database = 'vectors') =>
      run(PSQL, ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', dir, '-p', String(port), '-U', PG_SYSTEM_USER, '-d', database, '-c', sql]);

    // Hex passwords: safe to put in SQL literals without quoting rules.
    const ro: PgRole = { user: 'vec_ro', password: `ro-${randomBytes(12).toString('hex')}` };
    const rw: PgRole = { user: 'vec_rw', password: `rw-${randomBytes(12).toString('hex')}` };
    await psql('CREATE DATABASE vectors', 'postgres');
    await psql(`
      CREATE ROLE vec_rw LOGIN PASSWORD '${rw.password}';
      CREATE ROLE vec_ro LOGIN PASSWORD '${ro.password}';
      REVOKE ALL ON DATABASE vectors FROM PUBLIC;
      GRANT CONNECT, TEMPORARY ON DATABASE vectors TO vec_rw;
      GRANT CONNECT ON DATABASE vectors TO vec_ro;
      GRANT USAGE, CREATE ON SCHEMA public TO vec_rw;
      GRANT USAGE ON SCHEMA public TO vec_ro;
      CREATE TABLE docs (id bigserial PRIMARY KEY, body text NOT NULL, embedding real[]);
      ALTER TABLE docs OWNER TO vec_rw;
      GRANT SELECT ON docs TO vec_ro;
      ALTER DEFAULT PRIVILEGES FOR ROLE vec_rw IN SCHEMA public GRANT SELECT ON TABLES TO vec_ro;
    `);

    return {
      host: '127.0.0.1',
      port,
      socketDir: dir,
      dataDir: data,
      logFile,
      superuser: PG_SYSTEM_USER,
      roles: { ro, rw },
      database: 'vectors',
      psql,
      async stop() {
        process.removeListener('exit', onExit);
        if (stopped) return;
        if (watchdogPid) {
          try {
            process.kill(watchdogPid, 'SIGKILL');
          } catch {
            // already gone
          }
          watchdogPid = undefined;
        }
        if (!killed && existsSync(path.join(data, 'postmaster.pid'))) {
          await run(pgCtl, ['-D', data, '-m', 'fast', '-w', '-t', String(PG_CTL_TIMEOUT_S), 'stop']).catch(() => {});
        }
        cleanupSync('immediate');
      },
      async restart() {
        if (killed || stopped) throw new Error('restart: the cluster is stopped');
        await run(pgCtl, ['-D', data, '-l', logFile, '-w', '-t', String(PG_CTL_TIMEOUT_S), '-m', 'fast', 'restart']);
        postmasterPid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      },
      async kill9() {
        // List the children before the postmaster dies (then they are re-parented); kill the
        // postmaster first so it cannot start crash recovery or new backends.
        if (killed || stopped) return;
        killed = true;
        const pids = [postmasterPid, ...childrenOf(postmasterPid)];
        for (const p of pids) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      },
      pid: () => postmasterPid,
    };
  } catch (err) {
    process.removeListener('exit', onExit);
    cleanupSync('immediate');
    throw err;
  }
}
