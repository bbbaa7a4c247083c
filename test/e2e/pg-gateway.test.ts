// The PostgreSQL gateway end to end: a real PostgreSQL 15 cluster (TLS + SCRAM) upstream,
// the real gateway (worker threads + native addon) in front, and real clients (psql,
// node-postgres, pgbench) connecting with verify-full. Each refusal from TESTING.md that
// belongs to the data path is checked for its protocol-native error.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { collect, connectPlain, connectSslRequest, errorFields, gssencRequest, messageTypes, passwordMessage, sslRequest, startupMessage } from '../harness/pg-wire.js';

const PG_BIN = '/usr/lib/postgresql/15/bin';

let dir: string;
let pki: TestPki;
let cluster: PgCluster;
let gw: GatewayFixture;

function clientConfig(token: string, extra: Partial<pg.ClientConfig> = {}): pg.ClientConfig {
  return {
    host: 'localhost',
    port: gw.port,
    database: 'vectors',
    user: 'ignored',
    password: token,
    ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' },
    ...extra,
  };
}

async function withClient<T>(token: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client(clientConfig(token));
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

/** Runs a client program without blocking this thread (the gateway's primary runs here). */
function run(cmd: string, args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('close', (status) => resolve({ status, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

function psql(token: string, args: string[], opts: { input?: string; port?: number } = {}) {
  return run('psql', [`host=localhost port=${opts.port ?? gw.port} dbname=vectors user=me sslmode=verify-full sslrootcert=${pki.caCert}`, '-X', '-v', 'ON_ERROR_STOP=1', ...args], {
    env: { PGPASSWORD: token, PGCONNECT_TIMEOUT: '10' },
    input: opts.input,
  });
}

/** A token that expired an hour ago (beyond any clock skew). */
function expiredToken(groups: string[]) {
  return gw.issuer.mint({ user: 'a@example.com', groups, ttlSec: 60, issuedAtSec: Math.floor(Date.now() / 1000) - 3600 });
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-e2e-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  cluster = await startPgCluster({ pki });
  await cluster.psql(`INSERT INTO docs (body, embedding) SELECT 'doc ' || g, array_fill(g::real, ARRAY[1536]) FROM generate_series(1, 200) g;`);
  gw = await startGatewayFixture({
    dir,
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert } },
    credentials: { read: cluster.roles.ro, write: cluster.roles.rw },
  });
});

after(async () => {
  await gw?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('sessions through the gateway', () => {
  test('node-postgres: simple and extended protocol as the injected user', async () => {
    const token = await gw.token('alice@example.com', ['ml-writers']);
    await withClient(token, async (c) => {
      const who = await c.query('SELECT current_user AS u, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      assert.equal(who.rows[0].u, cluster.roles.rw.user);
      assert.equal(who.rows[0].ssl, true, 'the upstream leg is TLS');
      const p = await c.query('SELECT $1::int + $2::int AS s, $3::text AS t', [40, 2, 'vecgate']);
      assert.deepEqual(p.rows[0], { s: 42, t: 'vecgate' });
      const named = { name: 'by-id', text: 'SELECT id, body FROM docs WHERE id = $1', values: [7] };
      assert.equal((await c.query(named)).rows[0].body, 'doc 7');
      assert.equal((await c.query({ ...named, values: [8] })).rows[0].body, 'doc 8');
      const ins = await c.query('INSERT INTO docs (body, embedding) VALUES ($1, $2) RETURNING id', ['new', Array(1536).fill(0.5)]);
      assert.ok(ins.rows[0].id > 200);
    });
  });

  test('read group gets the read credential', async () => {
    const token = await gw.token('bob@example.com', ['ml-readers']);
    const u = await withClient(token, (c) => c.query('SELECT current_user AS u'));
    assert.equal(u.rows[0].u, cluster.roles.ro.user);
  });

  test('psql: COPY in and out, and a large result byte for byte equal to a direct connection', async () => {
    const token = await gw.token('alice@example.com', ['ml-writers']);
    const rows = Array.from({ length: 5000 }, (_, i) => `copy-${i}\t{${Array(8).fill(i / 10).join(',')}}`).join('\n') + '\n';
    const cin = await psql(token, ['-c', '\\copy docs (body, embedding) FROM STDIN'], { input: rows });
    assert.equal(cin.status, 0, cin.stderr);
    assert.match(cin.stdout, /COPY 5000/);
    // docs (with the 1536-dim rows) joined with generated rows: about 20 MB of result.
    const query = "SELECT d.id, d.body, d.embedding, g, repeat(md5(g::text), 8) FROM docs d, generate_series(1, 40) g WHERE d.id <= 200 ORDER BY d.id, g";
    const through = await psql(token, ['-A', '-t', '-c', `COPY (${query}) TO STDOUT`]);
    assert.equal(through.status, 0, through.stderr);
    const direct = spawnSync('psql', [`host=${cluster.socketDir} port=${cluster.port} dbname=vectors user=${cluster.superuser}`, '-X', '-A', '-t', '-c', `COPY (${query}) TO STDOUT`], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
    assert.equal(direct.status, 0, direct.stderr);
    assert.ok(through.stdout.length > 20_000_000, `large result (${through.stdout.length} bytes)`);
    assert.equal(createHash('sha256').update(through.stdout).digest('hex'), createHash('sha256').update(direct.stdout).digest('hex'));
  });

  test('similarity-style query over 1536-dim rows returns rows', async () => {
    const token = await gw.token('bob@example.com', ['ml-readers']);
    const r = await psql(token, ['-A', '-t', '-c', 'SELECT id FROM docs WHERE id <= 200 ORDER BY abs(embedding[1] - 42) LIMIT 5']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n')[0], '42');
  });

  test('cancel (psql Ctrl-C) cancels the upstream query', async () => {
    const token = await gw.token('alice@example.com', ['ml-writers']);
    const child = spawn('psql', [`host=localhost port=${gw.port} dbname=vectors user=me sslmode=verify-full sslrootcert=${pki.caCert}`, '-X', '-c', 'SELECT pg_sleep(60)'], {
      env: { ...process.env, PGPASSWORD: token },
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    // Wait until the statement is running upstream, then Ctrl-C.
    for (let i = 0; i < 100; i++) {
      const active = await cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'`);
      if (active.trim() === '1') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const t0 = Date.now();
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.notEqual(code, 0);
    assert.match(stderr, /canceling statement due to user request/);
    assert.ok(Date.now() - t0 < 30_000, 'cancelled long before pg_sleep(60) would end');
  });

  test('many concurrent sessions', async () => {
    const token = await gw.token('alice@example.com', ['ml-writers']);
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => withClient(token, async (c) => (await c.query('SELECT $1::int AS i, count(*)::int AS n FROM docs WHERE id <= 200', [i])).rows[0])),
    );
    results.forEach((r, i) => assert.deepEqual(r, { i, n: 200 }));
  });

  test('pgbench -S through the gateway', async () => {
    const token = await gw.token('alice@example.com', ['ml-writers']);
    const init = await run(`${PG_BIN}/pgbench`, ['-i', '-s', '1', '-q', `host=localhost port=${gw.port} dbname=vectors user=me sslmode=verify-full sslrootcert=${pki.caCert}`], {
      env: { PGPASSWORD: token },
    });
    assert.equal(init.status, 0, init.stderr);
    const r = await run(`${PG_BIN}/pgbench`, ['-S', '-c', '4', '-j', '2', '-t', '200', `host=localhost port=${gw.port} dbname=vectors user=me sslmode=verify-full sslrootcert=${pki.caCert}`], {
      env: { PGPASSWORD: token },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /number of transactions actually processed: 800\/800/);
  });
});

describe('refusals are protocol-native and clear', () => {
  test('plaintext startup is refused before any authentication request', async () => {
    const s = await connectPlain(gw.port);
    s.write(startupMessage({ user: 'me', database: 'vectors' }));
    const { data, closed } = await collect(s);
    assert.ok(closed);
    assert.deepEqual(messageTypes(data), ['E']);
    const e = errorFields(data)!;
    assert.equal(e.C, '28000');
    assert.match(e.M!, /only TLS/);
  });

  test('psql with sslmode=disable gets the reason', async () => {
    const r = await run('psql', [`host=localhost port=${gw.port} dbname=vectors user=me sslmode=disable`, '-c', 'select 1'], { env: { PGPASSWORD: 'x' } });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /accepts only TLS connections/);
  });

  test('bytes sent together with SSLRequest are refused (CVE-2021-23214 class)', async () => {
    const s = await connectPlain(gw.port);
    s.write(Buffer.concat([sslRequest(), startupMessage({ user: 'me', database: 'vectors' })]));
    const { data, closed } = await collect(s);
    assert.ok(closed);
    assert.ok(!data.includes(Buffer.from('S')) || data[0] !== 0x53, 'no S answer');
    assert.equal(errorFields(data)?.C, '08P01');
  });

  test('GSSENCRequest is answered N, then SSLRequest works', async () => {
    const s = await connectPlain(gw.port);
    s.write(gssencRequest());
    const n: Buffer = await new Promise((r) => s.once('data', r));
    assert.equal(n.toString(), 'N');
    s.write(sslRequest());
    const sAns: Buffer = await new Promise((r) => s.once('data', r));
    assert.equal(sAns.toString(), 'S');
    s.destroy();
  });

  test('PG 17 direct TLS: accepted with ALPN postgresql, refused without', async () => {
    const ok = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const t = tls.connect({ host: '127.0.0.1', port: gw.port, ca: readFileSync(pki.caCert), servername: 'localhost', ALPNProtocols: ['postgresql'] }, () => resolve(t));
      t.once('error', reject);
    });
    assert.equal(ok.alpnProtocol, 'postgresql');
    ok.write(startupMessage({ user: 'me', database: 'vectors' }));
    const first: Buffer = await new Promise((r) => ok.once('data', r));
    assert.equal(first[0], 0x52 /* R */);
    assert.equal(first.readInt32BE(5), 3 /* cleartext password */);
    ok.destroy();

    const noAlpn = tls.connect({ host: '127.0.0.1', port: gw.port, ca: readFileSync(pki.caCert), servername: 'localhost' });
    noAlpn.on('secureConnect', () => noAlpn.write(startupMessage({ user: 'me', database: 'vectors' })));
    const res = await collect(noAlpn);
    assert.ok(res.closed);
    assert.equal(res.data.length, 0, 'nothing answered without ALPN');

    const wrongAlpn = tls.connect({ host: '127.0.0.1', port: gw.port, ca: readFileSync(pki.caCert), servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    const err = await new Promise<Error>((resolve) => wrongAlpn.once('error', resolve));
    assert.match(err.message, /no application protocol|alert/i);
  });

  async function refusalFor(token: string, database = 'vectors') {
    const s = await connectSslRequest(gw.port, readFileSync(pki.caCert));
    s.write(startupMessage({ user: 'me', database }));
    const r: Buffer = await new Promise((resolve) => s.once('data', resolve));
    if (r[0] !== 0x52) return { fields: errorFields(r), data: r };
    s.write(passwordMessage(token));
    const { data } = await collect(s);
    return { fields: errorFields(data), data };
  }

  test('missing, garbage, expired and foreign tokens get 28P01 with a reason', async () => {
    const none = await refusalFor('');
    assert.equal(none.fields?.C, '28P01');
    assert.match(none.fields!.M!, /no access token/);
    const garbage = await refusalFor('not-a-jwt');
    assert.equal(garbage.fields?.C, '28P01');
    const expired = await refusalFor(await expiredToken(['ml-writers']));
    assert.equal(expired.fields?.C, '28P01');
    assert.match(expired.fields!.M!, /expired/);
    const wrongAud = await refusalFor(await gw.issuer.mint({ user: 'a', groups: ['ml-writers'], ttlSec: 60, audience: 'other' }));
    assert.equal(wrongAud.fields?.C, '28P01');
    assert.match(wrongAud.fields!.M!, /audience/);
    assert.equal(wrongAud.fields?.S, 'FATAL');
  });

  test('a group without access is refused with 28000 naming who may', async () => {
    const r = await refusalFor(await gw.token('eve@example.com', ['marketing']));
    assert.equal(r.fields?.C, '28000');
    assert.match(r.fields!.M!, /eve@example.com.*no access to connection "vectors".*ml-readers/);
  });

  test('an unknown database name is refused with 3D000', async () => {
    const r = await refusalFor('x', 'other');
    assert.equal(r.fields?.C, '3D000');
  });

  test('psql shows the refusal reason', async () => {
    const r = await psql(await expiredToken(['ml-writers']), ['-c', 'select 1']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /FATAL: {2}token expired/);
  });
});

describe('secrets', () => {
  test('the upstream passwords never reach the client or the logs', async () => {
    const token = await gw.token('alice@example.com', ['ml-writers']);
    const s = await connectSslRequest(gw.port, readFileSync(pki.caCert));
    s.write(startupMessage({ user: 'me', database: 'vectors' }));
    await new Promise((r) => s.once('data', r));
    s.write(passwordMessage(token));
    const { data } = await collect(s, 1500);
    assert.ok(messageTypes(data).includes('Z'), 'session established');
    for (const secret of [cluster.roles.rw.password, cluster.roles.ro.password]) {
      assert.ok(!data.includes(Buffer.from(secret)), 'password not sent to the client');
      assert.ok(!gw.logs().includes(secret), 'password not in logs');
    }
    assert.ok(!gw.logs().includes(token), 'token not in logs');
    s.destroy();
  });
});

describe('upstream faults', () => {
  test('wrong upstream CA or host name: refused with the failed check named', async () => {
    const sub = path.join(dir, 'wrong');
    const wrongCa = await startGatewayFixture({
      dir: sub,
      serverCert: pki.serverCert,
      serverKey: pki.serverKey,
      upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.wrongCaCert } },
      credentials: cluster.roles.rw,
      workers: 1,
    }).catch((e) => { throw e; });
    try {
      const token = await wrongCa.token('alice@example.com', ['ml-writers']);
      const r = await psql(token, ['-c', 'select 1'], { port: wrongCa.port });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /could not verify the database's TLS certificate.*(unable to get local issuer|self.signed|certificate verify failed)/);
      assert.match(wrongCa.logs(), /upstream TLS/);
    } finally {
      await wrongCa.stop();
    }
    const wrongName = await startGatewayFixture({
      dir: sub,
      serverCert: pki.serverCert,
      serverKey: pki.serverKey,
      upstream: { host: '127.0.0.1', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert, server_name: 'db.wrong.example' } },
      credentials: cluster.roles.rw,
      workers: 1,
    });
    try {
      const token = await wrongName.token('alice@example.com', ['ml-writers']);
      const r = await psql(token, ['-c', 'select 1'], { port: wrongName.port });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /hostname mismatch|certificate verify failed/);
    } finally {
      await wrongName.stop();
    }
  });

  test('client gone mid-result: the session ends and the gateway keeps serving', async () => {
    const token = await gw.token('alice@example.com', ['ml-writers']);
    const s = await connectSslRequest(gw.port, readFileSync(pki.caCert));
    s.write(startupMessage({ user: 'me', database: 'vectors' }));
    await new Promise((r) => s.once('data', r));
    s.write(passwordMessage(token));
    await new Promise((r) => setTimeout(r, 500));
    const q = Buffer.from('SELECT repeat(\'x\', 1000) FROM generate_series(1, 2000000)\0');
    const head = Buffer.alloc(5);
    head.write('Q');
    head.writeInt32BE(q.length + 4, 1);
    s.write(Buffer.concat([head, q]));
    await new Promise((r) => s.once('data', r));
    s.destroy();
    for (let i = 0; i < 50; i++) {
      const st = await gw.handle.stats();
      if (st.liveSessions === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal((await gw.handle.stats()).liveSessions, 0, 'session closed on both legs');
    const active = await cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%generate_series(1, 2000000)%' AND pid <> pg_backend_pid()`);
    assert.equal(active.trim(), '0', 'the upstream backend is gone too');
    const again = await withClient(token, (c) => c.query('SELECT 1 AS one'));
    assert.equal(again.rows[0].one, 1);
  });

  test('upstream killed mid-result: the client gets an error, the gateway keeps serving', async () => {
    const token = await gw.token('alice@example.com', ['ml-writers']);
    const c = new pg.Client(clientConfig(token));
    await c.connect();
    c.on('error', () => {});
    const pidRow = await c.query('SELECT pg_backend_pid() AS pid');
    const running = c.query("SELECT repeat('x', 1000), pg_sleep(0.0001) FROM generate_series(1, 100000)");
    const refused = assert.rejects(running); // attached now: the failure may come while psql runs
    await new Promise((r) => setTimeout(r, 300));
    await cluster.psql(`SELECT pg_terminate_backend(${pidRow.rows[0].pid})`);
    await refused;
    await c.end().catch(() => {});
    const again = await withClient(token, (cl) => cl.query('SELECT 2 AS two'));
    assert.equal(again.rows[0].two, 2);
  });
});

describe('certificate rotation', () => {
  test('a new certificate is served after reload; a mismatched pair keeps the old one', async () => {
    const fingerprint = async () => {
      const s = await connectSslRequest(gw.port, readFileSync(pki.caCert));
      const fp = s.getPeerX509Certificate()!.fingerprint256;
      s.destroy();
      return fp;
    };
    const before = await fingerprint();
    const token = await gw.token('alice@example.com', ['ml-writers']);
    const live = new pg.Client(clientConfig(token));
    await live.connect();
    // Same names, new key pair: issued by the same CA.
    copyFileSync(pki.altServerCert, pki.serverCert);
    copyFileSync(pki.altServerKey, pki.serverKey);
    assert.equal(gw.handle.reloadTls(), true);
    await new Promise((r) => setTimeout(r, 200));
    const afterFp = await fingerprint();
    assert.notEqual(afterFp, before);
    assert.equal(afterFp, new X509Certificate(readFileSync(pki.altServerCert)).fingerprint256);
    assert.equal((await live.query('SELECT 3 AS three')).rows[0].three, 3, 'live session kept');
    await live.end();
    // Mismatched pair: refused, old one kept.
    copyFileSync(pki.wrongNameKey, pki.serverKey);
    assert.equal(gw.handle.reloadTls(), false);
    assert.equal(await fingerprint(), afterFp);
    assert.match(gw.logs(), /keeping the current certificate/);
    copyFileSync(pki.altServerKey, pki.serverKey); // leave a matching pair for later tests
  });
});

describe('policy in the session', () => {
  test('read access: writes are refused with 42501 and the session goes on (simple and extended)', async () => {
    const token = await gw.token('bob@example.com', ['ml-readers']);
    await withClient(token, async (c) => {
      await assert.rejects(c.query("INSERT INTO docs (body) VALUES ('nope')"), (e: Error & { code?: string }) => {
        assert.equal(e.code, '42501');
        assert.match(e.message, /read access to "vectors"; INSERT into docs is not allowed/);
        return true;
      });
      await assert.rejects(c.query('INSERT INTO docs (body) VALUES ($1)', ['nope']), (e: Error & { code?: string }) => e.code === '42501');
      await assert.rejects(c.query('WITH d AS (DELETE FROM docs RETURNING id) SELECT count(*) FROM d'), (e: Error & { code?: string }) => e.code === '42501');
      await assert.rejects(c.query('SET ROLE vec_rw'), (e: Error & { code?: string }) => e.code === '42501');
      const r = await c.query('SELECT count(*)::int AS n FROM docs WHERE id <= $1', [200]);
      assert.equal(r.rows[0].n, 200, 'the session goes on after refusals');
    });
    const rows = await cluster.psql("SELECT count(*) FROM docs WHERE body = 'nope'");
    assert.equal(rows.trim(), '0', 'nothing reached the database');
  });

  test('a session ends with a clear error after its token expires', async () => {
    const token = await gw.issuer.mint({ user: 'carol@example.com', groups: ['ml-writers'], ttlSec: 2 });
    const c = new pg.Client(clientConfig(token));
    c.on('error', () => {});
    await c.connect();
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    await new Promise((r) => setTimeout(r, 2600));
    await assert.rejects(c.query('SELECT 1'), /token expired at .*reconnect with a fresh token/);
    await c.end().catch(() => {});
  });

  test('a policy reload ends live sessions that lost access and applies to new ones', async () => {
    const token = await gw.token('dave@example.com', ['ml-writers']);
    const c = new pg.Client(clientConfig(token));
    const ended = new Promise<Error>((resolve) => c.on('error', resolve));
    await c.connect();
    const original = readFileSync(gw.configFile, 'utf8');
    try {
      writeFileSync(gw.configFile, original.replace(/- name: writers\n\s+groups:\n\s+- ml-writers/, '- name: writers\n    groups:\n      - ml-writers-v2'));
      assert.notEqual(readFileSync(gw.configFile, 'utf8'), original, 'policy edited');
      assert.equal(await gw.handle.reloadConfig(), true);
      const err = await ended;
      assert.match(err.message, /revoked by a policy change/);
      await assert.rejects(withClient(token, (cl) => cl.query('SELECT 1')), /no access to connection "vectors"/);
    } finally {
      writeFileSync(gw.configFile, original);
      assert.equal(await gw.handle.reloadConfig(), true);
      await c.end().catch(() => {});
    }
  });
});

describe('recording', () => {
  /** A second gateway (one worker) in front of the same cluster, recording in `mode`. */
  const recordingGateway = (sub: string, mode: 'queries' | 'full', recordings?: Record<string, unknown>) =>
    startGatewayFixture({
      dir: sub,
      serverCert: pki.serverCert,
      serverKey: pki.serverKey,
      upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert } },
      credentials: { read: cluster.roles.ro, write: cluster.roles.rw },
      workers: 1,
      recording: mode,
      ...(recordings ? { recordings } : {}),
    });

  test('queries mode: sessions, statements and refusals are recorded, secrets redacted, the chain verifies', async () => {
    const sub = path.join(dir, 'rec');
    const rec = await recordingGateway(sub, 'queries', { durability: 'async' });
    const canary = 'canary-role-password-91c2';
    try {
      const writer = await rec.token('alice@example.com', ['ml-writers']);
      const w = new pg.Client({ ...clientConfig(writer), port: rec.port });
      await w.connect();
      await w.query('SELECT count(*) FROM docs WHERE id = $1', [1]);
      // Runs past the 250 ms a statement waits for its result: recorded while it runs, result after.
      await w.query('SELECT pg_sleep(0.7)');
      const embedding = Array.from({ length: 1536 }, (_, i) => Math.sin(i));
      await w.query('SELECT cardinality($1::real[]) AS dims, $2::text AS note', [`{${embedding.join(',')}}`, 'hello']);
      await w.query('SELECT * FROM no_such_table').catch(() => {});
      // vec_rw may not alter its own password here or may: either way the statement is recorded.
      await w.query(`ALTER ROLE vec_rw PASSWORD '${canary}'`).catch(() => {});
      await w.query(`ALTER ROLE vec_rw PASSWORD '${cluster.roles.rw.password}'`).catch(() => {});
      await w.end();
      const reader = await rec.token('bob@example.com', ['ml-readers']);
      const r = new pg.Client({ ...clientConfig(reader), port: rec.port });
      await r.connect();
      await assert.rejects(r.query("DELETE FROM docs WHERE id = 1"));
      await r.end();
    } finally {
      await rec.stop();
    }
    const recordings = path.join(sub, 'recordings');
    const { listSessions, replaySession } = await import('../../src/recording/session-index.js');
    const { verifyRecordings } = await import('../../src/recording/verify-recordings.js');
    const sessions = await listSessions(recordings, {});
    const alice = sessions.filter((s) => s.subject === 'alice@example.com');
    const bob = sessions.filter((s) => s.subject === 'bob@example.com');
    assert.ok(alice.length >= 1 && bob.length === 1, JSON.stringify(sessions));
    const events = [];
    for await (const e of replaySession(recordings, bob[0]!.id)) events.push(e);
    assert.deepEqual(events.map((e) => e.type), ['session-open', 'statement', 'session-close']);
    // Alice's extended-protocol session: statements, rendered parameters (the embedding
    // summarized, not written out), result summaries, and the error's SQLSTATE.
    const aliceEvents = [];
    for (const a of alice) for await (const e of replaySession(recordings, a.id)) aliceEvents.push(e);
    // Async durability: a statement's record carries its Bind parameters and result.
    const binds = aliceEvents.filter((e) => e.type === 'bind' || (e.type === 'statement' && e.params !== undefined));
    assert.ok(binds.some((b) => JSON.stringify(b.params) === '["1"]'), JSON.stringify(binds));
    const vectorBind = binds.find((b) => Array.isArray(b.params) && (b.params as unknown[])[1] === 'hello')!;
    const summary = (vectorBind.params as { vector?: { dims: number } }[])[0]!;
    assert.equal(summary.vector?.dims, 1536, 'the embedding parameter is summarized');
    const results = aliceEvents.flatMap((e) => (e.type === 'result' ? [e] : e.result !== undefined ? [e.result as Record<string, unknown>] : []));
    assert.ok(results.some((r) => r.tag === 'SELECT 1' && r.rows === 1), JSON.stringify(results));
    assert.ok(aliceEvents.some((e) => e.type === 'statement' && /count\(\*\) FROM docs/.test(String(e.sql)) && JSON.stringify(e.params) === '["1"]' && (e.result as { tag?: string } | undefined)?.tag === 'SELECT 1'), 'statement, parameters and result in one record');
    assert.ok(results.some((r) => (r.error as { sqlstate?: string } | undefined)?.sqlstate === '42P01'), 'the failed statement has its SQLSTATE');
    const sleep = aliceEvents.find((e) => e.type === 'statement' && e.sql === 'SELECT pg_sleep(0.7)')!;
    assert.ok(sleep, 'the long statement is recorded');
    assert.equal(sleep.result, undefined, 'a statement still running after 250 ms is written without its result');
    const sleepResult = aliceEvents.find((e) => e.type === 'result' && e.session === sleep.session && e.seq === sleep.seq);
    assert.ok(sleepResult && sleepResult.tag === 'SELECT 1' && Number(sleepResult.durationMs) >= 600, JSON.stringify(sleepResult));
    assert.ok(aliceEvents.indexOf(sleepResult!) > aliceEvents.indexOf(sleep), 'its result follows as its own event');
    assert.match(String(events[1]!.sql), /DELETE FROM docs/);
    assert.match(String(events[1]!.refused), /read access/);
    const report = await verifyRecordings(recordings);
    assert.equal(report.ok, true, JSON.stringify(report.firstBad));
    const { execFileSync } = await import('node:child_process');
    const raw = execFileSync('sh', ['-c', `cat $(find '${recordings}' -name '*.vgrec')`]);
    assert.ok(!raw.includes(Buffer.from(canary)), 'the password in ALTER ROLE is redacted before it is written');
    assert.ok(raw.includes(Buffer.from('ALTER ROLE vec_rw PASSWORD')), 'the statement itself is recorded');
    for (const secret of [cluster.roles.rw.password, cluster.roles.ro.password]) assert.ok(!raw.includes(Buffer.from(secret)));
    assert.ok(!raw.includes(Buffer.from(String(Math.sin(5)).slice(0, 12))), 'no raw embedding values in the recording');
  });

  test('full mode also records result rows, capped per statement', async () => {
    const sub = path.join(dir, 'rec-full');
    const rec = await recordingGateway(sub, 'full');
    try {
      const c = new pg.Client({ ...clientConfig(await rec.token('fay@example.com', ['ml-readers'])), port: rec.port });
      await c.connect();
      await c.query("SELECT g AS n, 'row ' || g AS label FROM generate_series(1, 500) g");
      await c.end();
    } finally {
      await rec.stop();
    }
    const recordings = path.join(sub, 'recordings');
    const { listSessions, replaySession } = await import('../../src/recording/session-index.js');
    const [session] = await listSessions(recordings, { user: 'fay@example.com' });
    const results: Record<string, unknown>[] = [];
    for await (const e of replaySession(recordings, session!.id)) {
      if (e.type === 'result') results.push(e);
      else if (e.result !== undefined) results.push(e.result as Record<string, unknown>);
    }
    const r = results.find((x) => x.tag === 'SELECT 500')!;
    assert.ok(r, JSON.stringify(results));
    const data = r.data as unknown[][];
    assert.deepEqual(data[0], ['1', 'row 1']);
    assert.equal(data.length, 100, 'rows are capped per statement');
    assert.equal(r.dataRowsOmitted, 400);
  });

  test('metadata mode records sessions without statements', async () => {
    const recordings = path.join(dir, 'recordings');
    const { listSessions, replaySession } = await import('../../src/recording/session-index.js');
    await withClient(await gw.token('meta@example.com', ['ml-writers']), (c) => c.query('SELECT 1'));
    let sessions: Awaited<ReturnType<typeof listSessions>> = [];
    for (let i = 0; i < 50 && !sessions.some((x) => x.ended_at); i++) {
      await new Promise((r) => setTimeout(r, 100));
      sessions = await listSessions(recordings, { user: 'meta@example.com' });
    }
    assert.ok(sessions.length > 0 && sessions.some((x) => x.ended_at), JSON.stringify(sessions));
    const types = new Set<string>();
    for (const s of sessions.slice(0, 5)) for await (const e of replaySession(recordings, s.id)) types.add(e.type);
    assert.deepEqual([...types].sort(), ['session-close', 'session-open']);
  });
});

describe('hostile or broken upstream answers to SSLRequest', () => {
  // A fake "database" on loopback that answers the gateway's SSLRequest with `reply`.
  async function withFakeUpstream(reply: Buffer, fn: (port: number, received: () => Buffer) => Promise<void>) {
    const { createServer } = await import('node:net');
    const got: Buffer[] = [];
    const srv = createServer((sock) => {
      sock.on('data', (d: Buffer) => {
        got.push(d);
        if (got.length === 1) sock.write(reply);
      });
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      await fn((srv.address() as { port: number }).port, () => Buffer.concat(got));
    } finally {
      srv.close();
    }
  }

  for (const [name, reply, pattern] of [
    ["N (no TLS)", Buffer.from('N'), /does not offer TLS/],
    ['S followed by injected bytes', Buffer.concat([Buffer.from('S'), Buffer.from('Z\0\0\0\x05I')]), /answered the TLS request improperly/],
    ['an ErrorResponse', Buffer.from('E\0\0\0\x0cSFATAL\0\0'), /answered the TLS request improperly/],
  ] as const) {
    test(`upstream answers ${name}: the session is aborted before any credential is sent`, async () => {
      await withFakeUpstream(reply, async (upPort, received) => {
        const sub = path.join(dir, `fake-${upPort}`);
        const f = await startGatewayFixture({
          dir: sub,
          serverCert: pki.serverCert,
          serverKey: pki.serverKey,
          upstream: { host: '127.0.0.1', port: upPort, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert } },
          credentials: { user: 'vec_rw', password: 'canary-upstream-password-5d1e' },
          workers: 1,
        });
        try {
          const token = await f.token('alice@example.com', ['ml-writers']);
          const s = await connectSslRequest(f.port, readFileSync(pki.caCert));
          s.write(startupMessage({ user: 'me', database: 'vectors' }));
          await new Promise((r) => s.once('data', r));
          s.write(passwordMessage(token));
          const { data } = await collect(s);
          const e = errorFields(data);
          assert.equal(e?.S, 'FATAL');
          assert.match(e!.M!, pattern);
          assert.ok(!data.includes(Buffer.from('Z\0\0\0\x05I')), 'nothing from the upstream reaches the client');
          assert.equal(received().length, 8, 'only the SSLRequest was sent upstream (no startup, no credential)');
          assert.ok(!received().includes(Buffer.from('canary-upstream-password-5d1e')));
        } finally {
          await f.stop();
        }
      });
    });
  }
});
