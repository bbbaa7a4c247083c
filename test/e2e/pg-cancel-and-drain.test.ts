// CancelRequests and the SIGTERM drain against a real PostgreSQL 15 (TLS + SCRAM) behind the
// real gateway: a client's own cancel key still cancels; random keys and floods of a valid key
// cost (almost) no upstream connections (issue #16 item 13: 700 random cancels used to open
// 700 upstream connections); a session ended by the drain deadline is recorded as closed,
// reason "shutdown", before the recorder seals (item 12).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { listSessions, replaySession } from '../../src/recording/session-index.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

let dir: string;
let pki: TestPki;
let cluster: PgCluster;
let gw: GatewayFixture;

/** Upstream connections PostgreSQL has accepted so far (log_connections: one line each, cancels included). */
function upstreamConnections(): number {
  return (readFileSync(cluster.logFile, 'utf8').match(/connection received: /g) ?? []).length;
}

/** A CancelRequest as libpq sends it: plaintext, 16 bytes; resolves when the gateway closes. */
function sendCancel(processId: number, secretKey: number): Promise<void> {
  return new Promise((resolve) => {
    const b = Buffer.alloc(16);
    b.writeInt32BE(16, 0);
    b.writeInt32BE(80877102, 4);
    b.writeUInt32BE(processId >>> 0, 8);
    b.writeUInt32BE(secretKey >>> 0, 12);
    const s = net.connect({ host: '127.0.0.1', port: gw.port }, () => s.write(b));
    s.on('data', () => {});
    s.on('close', () => resolve());
    s.on('error', () => resolve());
  });
}

async function settle(): Promise<void> {
  // The upstream logs a connection when it accepts it; give forwarded cancels time to land.
  await new Promise((r) => setTimeout(r, 1500));
}

function client(token: string): pg.Client {
  const c = new pg.Client({ host: 'localhost', port: gw.port, database: 'vectors', user: 'me', password: token, ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' } });
  c.on('error', () => {});
  return c;
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-cancel-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  cluster = await startPgCluster({ pki, settings: { log_connections: 'on' } });
  gw = await startGatewayFixture({
    dir,
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    workers: 1,
    upstream: { host: 'localhost', port: cluster.port, database: 'vectors', tls: { mode: 'verify-full', ca: pki.caCert } },
    credentials: { read: cluster.roles.ro, write: cluster.roles.rw },
    recording: 'metadata',
  });
});

after(async () => {
  await gw?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('CancelRequest', () => {
  test("the session's own key cancels its running statement", async () => {
    const c = client(await gw.token('alice@example.com', ['ml-writers']));
    await c.connect();
    try {
      const key = c as unknown as { processID: number; secretKey: number };
      assert.equal(typeof key.processID, 'number', 'the gateway sent BackendKeyData');
      // Settled as soon as it fails: the cancel below resolves only once it was delivered.
      const running = c.query('SELECT pg_sleep(30)').then(() => null, (err: Error & { code?: string }) => err);
      for (let i = 0; i < 100; i++) {
        const n = await cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'`);
        if (n.trim() === '1') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const t0 = Date.now();
      await sendCancel(key.processID, key.secretKey);
      assert.equal((await running)?.code, '57014');
      assert.ok(Date.now() - t0 < 10_000);
    } finally {
      await c.end().catch(() => {});
    }
  });

  test('700 random keys open (almost) no upstream connections', async () => {
    await settle();
    const before = upstreamConnections();
    for (let i = 0; i < 700; i += 50) {
      await Promise.all(Array.from({ length: 50 }, () => sendCancel(randomBytes(4).readUInt32BE(0), randomBytes(4).readUInt32BE(0))));
    }
    await settle();
    const opened = upstreamConnections() - before;
    // A random key passes the 10-bit MAC with probability 1/1024: ~0.7 of 700 are expected.
    assert.ok(opened <= 5, `700 random cancel keys opened ${opened} upstream connections`);
    // The drops reach the log as one summary line per interval (checked after the drain, which flushes it).
  });

  test('a flood of one valid key is rate-limited per worker', async () => {
    const c = client(await gw.token('alice@example.com', ['ml-writers']));
    await c.connect();
    try {
      const key = c as unknown as { processID: number; secretKey: number };
      await new Promise((r) => setTimeout(r, 3000)); // refill the bucket after the test before
      await settle();
      const before = upstreamConnections();
      await Promise.all(Array.from({ length: 300 }, () => sendCancel(key.processID, key.secretKey)));
      await settle();
      const opened = upstreamConnections() - before;
      // Burst 40 plus 20/s of refill while the flood and the forwarded cancels take their time.
      assert.ok(opened >= 1 && opened <= 80, `300 cancels of one key opened ${opened} upstream connections`);
      // The session itself is unharmed (it was idle: nothing to cancel).
      assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    } finally {
      await c.end().catch(() => {});
    }
  });
});

describe('SIGTERM drain', () => {
  test('a session ended at the drain deadline is recorded as closed (reason shutdown) before the recorder seals', async () => {
    const c = client(await gw.token('drained@example.com', ['ml-writers']));
    await c.connect();
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    const ended = new Promise<Error | null>((resolve) => {
      c.once('error', (err) => resolve(err));
      c.once('end', () => resolve(null));
    });
    await gw.handle.stop({ drainMs: 300 });
    const err = (await ended) as (Error & { code?: string }) | null;
    if (err) assert.equal(err.code, '57P01', err.message);
    const recordings = path.join(dir, 'recordings');
    const sessions = await listSessions(recordings, { user: 'drained@example.com' });
    assert.equal(sessions.length, 1, JSON.stringify(sessions));
    assert.ok(sessions[0]!.ended_at !== null, `the drained session is still open in \`vecgate sessions\`: ${JSON.stringify(sessions)}`);
    const events = [];
    for await (const e of replaySession(recordings, sessions[0]!.id)) events.push(e);
    const close = events.find((e) => e.type === 'session-close');
    assert.equal(close?.['reason'], 'shutdown', JSON.stringify(events));
    // The cancel tests' drops, summed in one line (not one per request), flushed by the drain.
    const drops = gw.logs().split('\n').filter((l) => l.includes('cancel requests dropped'));
    assert.equal(drops.length, 1, drops.join('\n'));
    assert.ok(JSON.parse(drops[0]!).dropped.undecodable >= 690, drops[0]);
  });
});
