// The ephemeral PostgreSQL 15 test cluster: TLS + SCRAM from node-postgres and libpq
// (psql, verify-full), plaintext refused, role grants, and that it stops by itself when the
// test process exits or is killed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { PSQL, startPgCluster, type PgCluster } from './pg-cluster.js';

const HARNESS_JS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'pg-cluster.js');
const PKI_JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'dev', 'pki.js');
/** Upper bound on polls (100 ms apart) for a process to go away. */
const GONE_POLLS = 150;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pid: number): Promise<boolean> {
  for (let i = 0; i < GONE_POLLS; i++) {
    if (!alive(pid)) return true;
    await sleep(100);
  }
  return false;
}

function libpq(conninfo: string, sql: string, password: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(PSQL, ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', conninfo, '-c', sql], { env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as NodeJS.ErrnoException).code ?? 1) || 1 : 0, out: stdout + stderr }),
    );
  });
}

describe('startPgCluster', () => {
  let tmp: string;
  let pki: TestPki;
  let cluster: PgCluster;
  const clients: pg.Client[] = [];

  const connect = async (role: { user: string; password: string }, ssl: pg.ClientConfig['ssl']) => {
    const c = new pg.Client({ host: cluster.host, port: cluster.port, database: cluster.database, user: role.user, password: role.password, ssl });
    clients.push(c);
    c.on('error', () => {}); // a server that goes away mid-test is what kill9 is for
    await c.connect();
    return c;
  };
  const tlsOpts = () => ({ ca: readFileSync(pki.caCert), servername: 'localhost' });

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vg-pgc-'));
    pki = await writeTestPki(path.join(tmp, 'pki'));
    cluster = await startPgCluster({ pki });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await cluster?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('listens on 127.0.0.1 on a port of its own, never 5432', () => {
    assert.equal(cluster.host, '127.0.0.1');
    assert.notEqual(cluster.port, 5432);
    assert.ok(alive(cluster.pid()));
    assert.ok(existsSync(path.join(cluster.socketDir, `.s.PGSQL.${cluster.port}`)));
  });

  test('vec_rw over TLS (verified against the test CA) with SCRAM inserts and selects real[] embeddings', async () => {
    const c = await connect(cluster.roles.rw, tlsOpts());
    const info = await c.query<{ ssl: boolean; version: string }>('SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    assert.equal(info.rows[0]!.ssl, true);
    assert.match(info.rows[0]!.version, /^TLSv1\.[23]$/);
    const method = await cluster.psql(`SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'vec_rw'`);
    assert.equal(method.trim(), 'SCRAM-SHA-256$');
    const emb = Array.from({ length: 1536 }, (_, i) => Math.fround(Math.sin(i)));
    const ins = await c.query<{ id: string }>('INSERT INTO docs (body, embedding) VALUES ($1, $2) RETURNING id', ['hello', emb]);
    const row = await c.query<{ body: string; embedding: number[] }>('SELECT body, embedding FROM docs WHERE id = $1', [ins.rows[0]!.id]);
    assert.equal(row.rows[0]!.body, 'hello');
    assert.equal(row.rows[0]!.embedding.length, 1536);
    assert.ok(row.rows[0]!.embedding.every((x, i) => Math.abs(x - emb[i]!) < 1e-6));
  });

  test('vec_ro can read docs but not write them (42501)', async () => {
    const c = await connect(cluster.roles.ro, tlsOpts());
    const n = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM docs');
    assert.ok(n.rows[0]!.n >= 0);
    await assert.rejects(c.query("INSERT INTO docs (body) VALUES ('nope')"), (e: pg.DatabaseError) => e.code === '42501');
    await assert.rejects(c.query('CREATE TABLE t (x int)'), (e: pg.DatabaseError) => e.code === '42501');
  });

  test('a plaintext connection is refused (28000), and so is a wrong password (28P01)', async () => {
    await assert.rejects(connect(cluster.roles.rw, false), (e: pg.DatabaseError) => e.code === '28000' && /no encryption/.test(e.message));
    await assert.rejects(connect({ user: 'vec_rw', password: 'wrong' }, tlsOpts()), (e: pg.DatabaseError) => e.code === '28P01');
  });

  test('TLS is verified: the unrelated CA and a wrong server name are refused by the client', async () => {
    await assert.rejects(connect(cluster.roles.rw, { ca: readFileSync(pki.wrongCaCert), servername: 'localhost' }), /unable to verify|self.signed|UNABLE_TO_VERIFY/i);
    await assert.rejects(connect(cluster.roles.rw, { ca: readFileSync(pki.caCert), servername: 'wrong.example' }), /altnames|ERR_TLS_CERT_ALTNAME_INVALID/i);
  });

  test('libpq (psql) with sslmode=verify-full and SCRAM as vec_ro; refused with the wrong CA', async () => {
    const base = `host=localhost hostaddr=127.0.0.1 port=${cluster.port} dbname=vectors user=vec_ro sslmode=verify-full`;
    const ok = await libpq(`${base} sslrootcert=${pki.caCert}`, 'SELECT current_user, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())', cluster.roles.ro.password);
    assert.equal(ok.code, 0, ok.out);
    assert.equal(ok.out.trim(), 'vec_ro|t');
    const bad = await libpq(`${base} sslrootcert=${pki.wrongCaCert}`, 'SELECT 1', cluster.roles.ro.password);
    assert.notEqual(bad.code, 0);
    assert.match(bad.out, /certificate verify failed/);
  });

  test('psql() runs as the superuser over the unix socket and reports SQL errors', async () => {
    assert.equal((await cluster.psql('SELECT current_user')).trim(), 'postgres');
    assert.equal((await cluster.psql("SELECT current_setting('max_connections')")).trim(), '200');
    await assert.rejects(cluster.psql('SELECT * FROM no_such_table'), /no_such_table/);
  });

  test('kill9 ends the postmaster and every backend; stop() afterwards still cleans up', async () => {
    const c = await connect(cluster.roles.rw, tlsOpts());
    const backend = Number((await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
    const pm = cluster.pid();
    await cluster.kill9();
    assert.ok(await waitGone(pm), 'postmaster gone');
    assert.ok(await waitGone(backend), 'backend gone');
    await assert.rejects(c.query('SELECT 1'));
    await cluster.stop();
    assert.equal(existsSync(cluster.socketDir), false);
  });
});

describe('the cluster stops by itself', () => {
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vg-pgc-orphan-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  // A child Node process starts a cluster, prints its postmaster PID and dir, and then either
  // exits without stop() or waits to be SIGKILLed.
  async function child(mode: 'exit' | 'hang'): Promise<{ proc: ReturnType<typeof spawn>; pid: number; dir: string }> {
    const src = `
      import { writeTestPki } from ${JSON.stringify(PKI_JS)};
      import { startPgCluster } from ${JSON.stringify(HARNESS_JS)};
      const pki = await writeTestPki(${JSON.stringify(path.join(tmp, mode))});
      const c = await startPgCluster({ pki });
      process.stdout.write(JSON.stringify({ pid: c.pid(), dir: c.socketDir }) + '\\n');
      if (${JSON.stringify(mode)} === 'hang') setInterval(() => {}, 1000); else process.exit(0);
    `;
    const proc = spawn(process.execPath, ['--input-type=module', '-e', src], { stdio: ['ignore', 'pipe', 'inherit'] });
    let line = '';
    for await (const chunk of proc.stdout!) {
      line += chunk;
      if (line.includes('\n')) break;
    }
    const { pid, dir } = JSON.parse(line) as { pid: number; dir: string };
    return { proc, pid, dir };
  }

  test('on process exit without stop()', async () => {
    const { proc, pid, dir } = await child('exit');
    await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)));
    assert.ok(await waitGone(pid), 'postmaster stopped by the exit handler');
    assert.equal(existsSync(dir), false);
  });

  test('when the test process is SIGKILLed (watchdog)', async () => {
    const { proc, pid, dir } = await child('hang');
    assert.ok(alive(pid));
    proc.kill('SIGKILL');
    assert.ok(await waitGone(pid), 'postmaster stopped by the watchdog');
    for (let i = 0; i < GONE_POLLS && existsSync(dir); i++) await sleep(100);
    assert.equal(existsSync(dir), false);
  });
});
