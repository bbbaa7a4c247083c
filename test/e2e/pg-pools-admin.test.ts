// The admin endpoint's /pools and `vecgate pools` (issue #18, SHOW POOLS) against PostgreSQL
// 15: real gateways in transaction and session mode, real clients holding transactions open,
// the pool exhausted. What /pools says is checked against what PostgreSQL sees
// (pg_stat_activity), and against the sessions the test holds; the CLI runs as its own
// process against the same admin endpoint.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import type { ConnectionPoolsView, PoolGroupView, PoolsView } from '../../src/admin/pools-view.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { freePort } from '../harness/free-port.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const bin = path.join(root, 'bin', 'vecgate');
const SIZE = 2;
const APP = 'pools-admin-test';
// Long enough for the two CLI runs while a session waits (each a node process; slow machines, ASan).
const WAIT_TIMEOUT_S = 6;
/** The session-mode gateway's clients: their backends are told apart from the transaction pool's idle links. */
const SESSION_APP = 'pools-admin-session-test';

let dir: string;
let pki: TestPki;
let cluster: PgCluster;
let gw: GatewayFixture;
let adminPort: number;
let writer: string;
let user: string;

async function client(port = gw.port, token = writer, app = APP): Promise<pg.Client> {
  const c = new pg.Client({ host: 'localhost', port, database: 'vectors', user: 'ignored', password: token, application_name: app, ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' } });
  await c.connect();
  return c;
}

async function pools(port = adminPort): Promise<PoolsView> {
  const res = await fetch(`http://127.0.0.1:${port}/pools`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  return (await res.json()) as PoolsView;
}

const connectionRow = (v: PoolsView, name = 'vectors'): ConnectionPoolsView => {
  const c = v.connections.find((x) => x.connection === name);
  assert.ok(c, `no row for connection ${name}: ${JSON.stringify(v)}`);
  return c;
};
const groupRow = (v: PoolsView): PoolGroupView => {
  const g = v.pools.find((x) => x.connection === 'vectors' && x.database === 'vectors' && x.user === user);
  assert.ok(g, `no pool row for vectors/vectors/${user}: ${JSON.stringify(v.pools)}`);
  return g;
};

/** Reads /pools until `ok` holds (the release of a link follows the client's ReadyForQuery by a few microtasks); fails with the last view. */
async function poolsWhen(ok: (v: PoolsView) => boolean, what: string, port = adminPort): Promise<PoolsView> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const v = await pools(port);
    if (ok(v)) return v;
    if (Date.now() > deadline) assert.fail(`${what}; /pools said ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Backends of this test's sessions by state, as PostgreSQL sees them. */
async function backendStates(app = APP): Promise<Record<string, number>> {
  const out = await cluster.psql(`SELECT state, count(*) FROM pg_stat_activity WHERE application_name = '${app}' GROUP BY state`);
  const states: Record<string, number> = {};
  for (const line of out.trim().split('\n').filter(Boolean)) {
    const [state, n] = line.split('|');
    states[state!] = Number(n);
  }
  return states;
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  // Not execFileSync: the gateway answering it runs in this process.
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-pools-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  cluster = await startPgCluster({ pki });
  user = cluster.roles.rw.user;
  mkdirSync(path.join(dir, 'gw'));
  adminPort = await freePort();
  gw = await startGatewayFixture({
    dir: path.join(dir, 'gw'),
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    workers: 1, // one worker holds the whole size: the counts are exact
    server: { admin: { listen: `127.0.0.1:${adminPort}` } },
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert }, pool: { mode: 'transaction', size: SIZE, wait_timeout: `${WAIT_TIMEOUT_S}s` } },
    credentials: { read: cluster.roles.rw, write: cluster.roles.rw },
    recording: 'off',
  });
  writer = await gw.token('writer@example.com', ['ml-writers']);
});

after(async () => {
  await gw?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('before any session: the connection is listed with its mode and size, nothing open, no group yet', async () => {
  const v = await pools();
  assert.equal(v.workers, 1);
  assert.deepEqual(v.missing_workers, []);
  assert.ok(Math.abs(Date.parse(v.at) - Date.now()) < 5000);
  const c = connectionRow(v);
  assert.deepEqual(
    { mode: c.mode, size: c.size, max_open: c.max_open, sessions: c.sessions, open: c.open, busy: c.busy, idle: c.idle, opening: c.opening, waiting: c.waiting, maxwait_ms: c.maxwait_ms, waits: c.waits, wait_timeouts: c.wait_timeouts, pins: c.pins },
    { mode: 'transaction', size: SIZE, max_open: SIZE, sessions: 0, open: 0, busy: 0, idle: 0, opening: 0, waiting: 0, maxwait_ms: 0, waits: 0, wait_timeouts: 0, pins: {} },
  );
  assert.deepEqual(v.pools, []);
});

test('a transaction held open is busy, a session between transactions holds nothing: /pools agrees with pg_stat_activity', async () => {
  const a = await client();
  const b = await client();
  try {
    await a.query('BEGIN');
    await a.query('SELECT 1');
    await b.query('SELECT 1');
    const v = await poolsWhen((x) => groupRow(x).idle === 1, 'the link b used is idle again');
    const g = groupRow(v);
    assert.equal(g.mode, 'transaction');
    assert.deepEqual([g.open, g.busy, g.idle, g.opening, g.waiting, g.maxwait_ms], [2, 1, 1, 0, 0, 0]);
    const c = connectionRow(v);
    assert.deepEqual([c.sessions, c.open, c.busy, c.idle, c.waiting], [2, 2, 1, 1, 0]);
    // PostgreSQL sees the same: one backend in a transaction, one idle.
    assert.deepEqual(await backendStates(), { 'idle in transaction': 1, idle: 1 });
    await a.query('COMMIT');
    const after = await poolsWhen((x) => groupRow(x).busy === 0, 'both links idle after COMMIT');
    assert.deepEqual([groupRow(after).open, groupRow(after).idle], [2, 2]);
    assert.equal(connectionRow(after).sessions, 2, 'two client sessions on two idle links');
  } finally {
    await a.end();
    await b.end();
  }
  await poolsWhen((x) => connectionRow(x).sessions === 0, 'the ended sessions are no longer counted');
});

test('pool exhausted: waiting sessions and a growing maxwait, live; the wait counted once over; a wait that runs out is a timeout', async () => {
  const holders = [await client(), await client()];
  const waiters: Promise<pg.Client>[] = [];
  try {
    for (const h of holders) {
      await h.query('BEGIN');
      await h.query('SELECT 1');
    }
    const before = groupRow(await pools());
    assert.deepEqual([before.busy, before.idle, before.waiting], [SIZE, 0, 0]);
    // A new session finds every link busy and waits (at startup), as does a query of a
    // session that already runs (at its transaction's first message).
    const waiting = client();
    waiting.catch(() => {}); // awaited below; never an unhandled rejection meanwhile
    waiters.push(waiting);
    const v1 = await poolsWhen((x) => groupRow(x).waiting === 1, 'one session waiting');
    await new Promise((r) => setTimeout(r, 300));
    const v2 = await pools();
    const g1 = groupRow(v1);
    const g2 = groupRow(v2);
    assert.equal(g2.waiting, 1);
    assert.ok(g2.maxwait_ms! >= g1.maxwait_ms! + 250, `maxwait grows while the session waits: ${g1.maxwait_ms} then ${g2.maxwait_ms} ms`);
    assert.ok(connectionRow(v2).maxwait_ms! >= 250);
    assert.equal(connectionRow(v2).waiting, 1);
    assert.equal(g2.wait_ms, before.wait_ms, 'a wait not yet over is not in wait_ms');

    // The CLI shows the same, from its own process.
    const table = await cli(['pools', '--config', gw.configFile]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^CONNECTION\s+DATABASE\s+USER\s+MODE\s+SIZE\s+SESSIONS\s+OPEN\s+BUSY\s+IDLE\s+OPENING\s+WAITING\s+MAXWAIT\s+WAITS\s+WAIT_TIME\s+TIMEOUTS\s+PINS$/);
    const cols = (l: string) => l.trim().split(/\s{2,}/);
    const groupLine = lines.find((l) => cols(l)[0] === 'vectors' && cols(l)[2] === user);
    assert.ok(groupLine, table.stdout);
    const gc = cols(groupLine);
    assert.deepEqual([gc[3], gc[6], gc[7], gc[8], gc[9], gc[10]], ['transaction', String(SIZE), String(SIZE), '0', '0', '1'], groupLine);
    assert.match(gc[11]!, /^\d+(ms|\.\ds)$/);
    assert.notEqual(gc[11], '0ms');
    const totalLine = lines.find((l) => cols(l)[0] === 'vectors' && cols(l)[1] === '*');
    assert.ok(totalLine, table.stdout);
    assert.deepEqual(cols(totalLine).slice(3, 11), ['transaction', String(SIZE), '2', String(SIZE), String(SIZE), '0', '0', '1'], totalLine);
    const json = await cli(['pools', '--admin', `http://127.0.0.1:${adminPort}`, '--json']);
    assert.equal(json.code, 0, json.stderr);
    assert.equal(groupRow(JSON.parse(json.stdout) as PoolsView).waiting, 1);

    // A link comes free: the waiter gets it; its wait is counted, with its time.
    await holders[0]!.query('COMMIT');
    const late = await waiters[0]!;
    assert.equal((await late.query('SELECT 2 AS two')).rows[0].two, 2);
    const v3 = await poolsWhen((x) => groupRow(x).waiting === 0 && groupRow(x).busy === 1, 'the waiter served');
    const g3 = groupRow(v3);
    assert.ok(g3.waits! >= before.waits! + 1);
    assert.ok(g3.wait_ms! >= before.wait_ms! + 250, `wait_ms ${before.wait_ms} then ${g3.wait_ms}`);
    assert.equal(g3.wait_timeouts, before.wait_timeouts);

    // Every link busy again and a session waits it out: a timeout (53300), counted.
    await holders[0]!.query('BEGIN');
    await holders[0]!.query('SELECT 1');
    await assert.rejects(client(), (err: Error & { code?: string }) => err.code === '53300');
    const v4 = await pools();
    const g4 = groupRow(v4);
    assert.equal(g4.wait_timeouts, before.wait_timeouts! + 1);
    assert.equal(g4.waiting, 0);
    assert.ok(g4.wait_ms! >= g3.wait_ms! + WAIT_TIMEOUT_S * 1000 - 100);
    assert.equal(connectionRow(v4).wait_timeouts, g4.wait_timeouts);
    await late.end();
  } finally {
    for (const w of waiters) await w.then((c) => c.end(), () => {});
    await Promise.all(holders.map((h) => h.end().catch(() => {})));
  }
});

test('pins are counted by reason when the pinned session ends, on the connection row, as /metrics counts them', async () => {
  const before = connectionRow(await pools()).pins ?? {};
  const a = await client();
  await a.query('SET search_path = public');
  await a.query('SELECT 1');
  // While it lives, the pinned session holds its link: busy.
  assert.equal(groupRow(await pools()).busy, 1);
  await a.end();
  const v = await poolsWhen((x) => (connectionRow(x).pins?.['SET'] ?? 0) === (before['SET'] ?? 0) + 1, 'the SET pin counted');
  assert.equal(groupRow(v).busy, 0);
  // /metrics has the same count once the worker's report arrived (within a second).
  const deadline = Date.now() + 3000;
  for (;;) {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const m = /^vecgate_upstream_pool_pins_total\{connection="vectors",reason="SET"\} (\d+)$/m.exec(text);
    if (m && Number(m[1]) === connectionRow(v).pins!['SET']) break;
    if (Date.now() > deadline) assert.fail(`/metrics pins: ${m?.[1]}, /pools: ${connectionRow(v).pins!['SET']}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

test('vecgate pools: clear errors for an unreachable endpoint, a config without one, and bad arguments', async () => {
  const closed = await freePort();
  const r = await cli(['pools', '--admin', `127.0.0.1:${closed}`]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^vecgate: cannot reach the vecgate admin endpoint at http://127\\.0\\.0\\.1:${closed}/pools \\(ECONNREFUSED\\); is the gateway running`));

  const noAdmin = path.join(dir, 'no-admin.yaml');
  writeFileSync(noAdmin, readFileSync(gw.configFile, 'utf8').replace(/^\s+admin:\n\s+listen: .*\n/m, ''));
  assert.doesNotMatch(readFileSync(noAdmin, 'utf8'), /admin:/);
  const n = await cli(['pools', '--config', noAdmin]);
  assert.equal(n.code, 2);
  assert.match(n.stderr, /no-admin\.yaml has no server\.admin\.listen/);

  const none = await cli(['pools']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /give --config FILE .* or --admin URL/);

  // Something that is not a vecgate admin endpoint: said so, not a stack trace.
  const other = await cli(['pools', '--admin', `http://127.0.0.1:${adminPort}/elsewhere`]);
  assert.equal(other.code, 1);
  assert.match(other.stderr, new RegExp(`^vecgate: http://127\\.0\\.0\\.1:${adminPort}/elsewhere/pools answered 404: is this a vecgate admin endpoint`));
  assert.doesNotMatch(other.stderr, /\n\s+at /);
});

test('session mode: sessions hold their own backends (busy); parked connections are the idle ones, per database and user', async () => {
  mkdirSync(path.join(dir, 'gw-session'));
  const port = await freePort();
  const s = await startGatewayFixture({
    dir: path.join(dir, 'gw-session'),
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    workers: 2,
    server: { admin: { listen: `127.0.0.1:${port}` } },
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert } },
    credentials: { read: cluster.roles.rw, write: cluster.roles.rw },
    recording: 'off',
  });
  try {
    const token = await s.token('writer@example.com', ['ml-writers']);
    const a = await client(s.port, token, SESSION_APP);
    const b = await client(s.port, token, SESSION_APP);
    await a.query('SELECT 1');
    const live = await pools(port);
    assert.equal(live.workers, 2);
    assert.deepEqual(live.missing_workers, []);
    const c = connectionRow(live);
    assert.deepEqual(
      { mode: c.mode, size: c.size, sessions: c.sessions, busy: c.busy, idle: c.idle, open: c.open, opening: c.opening, waiting: c.waiting, maxwait_ms: c.maxwait_ms, waits: c.waits, pins: c.pins },
      { mode: 'session', size: null, sessions: 2, busy: 2, idle: 0, open: null, opening: null, waiting: null, maxwait_ms: null, waits: null, pins: null },
    );
    // Ended between transactions, each upstream is reset and parked for the next session.
    await a.end();
    await b.end();
    const v = await poolsWhen((x) => x.pools.some((g) => g.user === user && g.idle === 2), 'two parked connections', port);
    const g = v.pools.find((x) => x.user === user)!;
    assert.deepEqual(
      { database: g.database, mode: g.mode, idle: g.idle, busy: g.busy, open: g.open, waiting: g.waiting },
      { database: 'vectors', mode: 'session', idle: 2, busy: null, open: null, waiting: null },
    );
    assert.deepEqual([connectionRow(v).sessions, connectionRow(v).busy, connectionRow(v).idle], [0, 0, 2]);
    const states = await backendStates(SESSION_APP);
    assert.equal(states['idle'], 2, `PostgreSQL sees the two parked backends: ${JSON.stringify(states)}`);
    const table = await cli(['pools', '--config', s.configFile]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, new RegExp(`^vectors\\s+vectors\\s+${user}\\s+session\\s+-\\s+-\\s+-\\s+-\\s+2\\s+-`, 'm'));
  } finally {
    await s.stop();
  }
});

test('two workers: /pools sums what each holds', async () => {
  mkdirSync(path.join(dir, 'gw2'));
  const port = await freePort();
  const g2 = await startGatewayFixture({
    dir: path.join(dir, 'gw2'),
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    workers: 2,
    server: { admin: { listen: `127.0.0.1:${port}` } },
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert }, pool: { mode: 'transaction', size: 4 } },
    credentials: { read: cluster.roles.rw, write: cluster.roles.rw },
    recording: 'off',
  });
  const held: pg.Client[] = [];
  try {
    const token = await g2.token('writer@example.com', ['ml-writers']);
    // Two transactions open (at most two per worker's share of 4: neither waits, whichever worker each lands on).
    for (let i = 0; i < 2; i++) {
      const c = await client(g2.port, token);
      held.push(c);
      await c.query('BEGIN');
      await c.query('SELECT 1');
    }
    const v = await pools(port);
    assert.equal(v.workers, 2);
    assert.deepEqual(v.missing_workers, []);
    const c = connectionRow(v);
    assert.deepEqual([c.size, c.max_open, c.sessions, c.busy, c.waiting], [4, 4, 2, 2, 0]);
    assert.equal(groupRow(v).busy, 2);
  } finally {
    await Promise.all(held.map((c) => c.end().catch(() => {})));
    await g2.stop();
  }
});
