// The embedded pgvector upstream: real pgvector queries over the wire protocol from
// node-postgres, concurrent clients, the maxConnections limit, loopback-only listening,
// and idempotent seeding of a persistent data directory.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { isVgError } from '../../src/errors.js';
import { SEED_DIMENSIONS, SEED_DOC_ROWS, SEED_ITEM_ROWS, seedDocVector, startPgliteUpstream, type PgliteUpstream } from '../../src/dev/pglite-upstream.js';

function client(up: PgliteUpstream): pg.Client {
  return new pg.Client({ host: up.host, port: up.port, user: 'postgres', database: 'postgres', ssl: false });
}

function parseVector(text: string): number[] {
  return text.slice(1, -1).split(',').map(Number);
}

/** Local addresses of TCP sockets in LISTEN state on `port`, from /proc (IPv4 and IPv6). */
function listenAddresses(port: number): string[] {
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.trim().split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      const [addr, p] = local!.split(':');
      if (state !== '0A' || parseInt(p!, 16) !== port) continue;
      out.push(addr!.length === 8 ? addr!.match(/../g)!.reverse().map((b) => parseInt(b, 16)).join('.') : addr!);
    }
  }
  return out;
}

describe('startPgliteUpstream (in memory, seeded)', () => {
  let up: PgliteUpstream;
  const clients: pg.Client[] = [];

  before(async () => {
    up = await startPgliteUpstream({ seed: true });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await up?.close();
  });

  test('listens on 127.0.0.1 only, on the port it reports', () => {
    assert.equal(up.host, '127.0.0.1');
    assert.ok(up.port > 0);
    assert.deepEqual(listenAddresses(up.port), ['127.0.0.1']);
  });

  test('pgvector L2 nearest neighbours over the wire match distances computed here', async () => {
    const c = client(up);
    clients.push(c);
    await c.connect();
    const all = await c.query<{ id: string; title: string; embedding: string }>('SELECT id, title, embedding::text AS embedding FROM items');
    assert.equal(all.rowCount, SEED_ITEM_ROWS);
    const q = [1, 2, 3];
    const expected = all.rows
      .map((r) => ({ id: r.id, d: Math.hypot(...parseVector(r.embedding).map((x, i) => x - q[i]!)) }))
      .sort((a, b) => a.d - b.d)
      .slice(0, 5)
      .map((r) => r.id);
    const top = await c.query<{ id: string; title: string }>("SELECT id, title FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5");
    assert.deepEqual(top.rows.map((r) => r.id), expected);
    assert.ok(top.rows.every((r) => typeof r.title === 'string' && r.title.length > 0));
  });

  test('1536-dimension docs: a seeded row is its own nearest neighbour (L2 and cosine), with a bound parameter', async () => {
    const c = client(up);
    clients.push(c);
    await c.connect();
    const meta = await c.query<{ n: number; dims: number }>('SELECT count(*)::int AS n, max(vector_dims(embedding))::int AS dims FROM docs');
    assert.deepEqual(meta.rows[0], { n: SEED_DOC_ROWS, dims: SEED_DIMENSIONS });
    const probe = seedDocVector(17);
    const l2 = await c.query<{ id: string; d: number }>('SELECT id, embedding <-> $1::vector AS d FROM docs ORDER BY embedding <-> $1::vector LIMIT 10', [probe]);
    assert.equal(l2.rowCount, 10);
    assert.equal(l2.rows[0]!.id, '17');
    assert.ok(l2.rows[0]!.d < 1e-3, `self-distance ${l2.rows[0]!.d}`);
    assert.ok(l2.rows[1]!.d > 1, 'random 1536-d vectors are far apart');
    const cos = await c.query<{ id: string }>('SELECT id FROM docs ORDER BY embedding <=> $1::vector LIMIT 3', [probe]);
    assert.equal(cos.rows[0]!.id, '17');
  });

  test('two clients at once: concurrent queries and a transaction on one seen by the other after COMMIT', async () => {
    const a = client(up);
    const b = client(up);
    clients.push(a, b);
    await Promise.all([a.connect(), b.connect()]);
    const probe = seedDocVector(3);
    const [ra, rb] = await Promise.all([
      a.query<{ id: string }>('SELECT id FROM docs ORDER BY embedding <-> $1::vector LIMIT 1', [probe]),
      b.query<{ id: string }>("SELECT id FROM items ORDER BY embedding <-> '[0,0,1]' LIMIT 1"),
    ]);
    assert.equal(ra.rows[0]!.id, '3');
    assert.equal(rb.rowCount, 1);

    await a.query('BEGIN');
    await a.query("INSERT INTO items (title, embedding) VALUES ('from a', '[9,9,9]')");
    const seenByB = b.query<{ n: number }>("SELECT count(*)::int AS n FROM items WHERE title = 'from a'");
    await a.query('COMMIT');
    assert.equal((await seenByB).rows[0]!.n, 1);
    await a.query("DELETE FROM items WHERE title = 'from a'");
  });

  test('errors come back as PostgreSQL errors and the session goes on', async () => {
    const c = client(up);
    clients.push(c);
    await c.connect();
    await assert.rejects(c.query("SELECT '[1,2]'::vector(3)"), (e: pg.DatabaseError) => e.code === '22000' || /expected 3 dimensions/.test(e.message));
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
  });
});

describe('startPgliteUpstream options', () => {
  test('maxConnections: a client past the limit is cut off before authentication; the slot frees when one leaves', async () => {
    const up = await startPgliteUpstream({ maxConnections: 1 });
    const first = client(up);
    try {
      await first.connect();
      const second = client(up);
      await assert.rejects(second.connect(), /Connection terminated|ECONNRESET|Too many connections|EPIPE/);
      await second.end().catch(() => {});
      assert.equal((await first.query('SELECT 2 AS two')).rows[0].two, 2);
      await first.end();
      // The server frees the slot when it sees the socket close; poll a bounded number of times.
      let ok = false;
      for (let i = 0; i < 100 && !ok; i++) {
        const third = client(up);
        try {
          await third.connect();
          ok = (await third.query('SELECT 3 AS three')).rows[0].three === 3;
        } catch {
          await sleep(20);
        } finally {
          await third.end().catch(() => {});
        }
      }
      assert.ok(ok, 'a new client is accepted once the first one has left');
    } finally {
      await first.end().catch(() => {});
      await up.close();
    }
  });

  test('refuses a host that is not loopback', async () => {
    for (const host of ['0.0.0.0', '::', '192.0.2.1', 'example.com']) {
      await assert.rejects(startPgliteUpstream({ host }), (e: unknown) => isVgError(e) && e.code === 'ERR_VG_LISTEN' && /loopback only/.test(e.message), host);
    }
  });

  test('a port in use is a clear ERR_VG_LISTEN', async () => {
    const a = await startPgliteUpstream({});
    try {
      await assert.rejects(startPgliteUpstream({ port: a.port }), (e: unknown) => isVgError(e) && e.code === 'ERR_VG_LISTEN' && /in use/.test(e.message));
    } finally {
      await a.close();
    }
  });

  test('a persistent dataDir keeps data across restarts and seeding does not duplicate rows', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vg-pglite-'));
    try {
      const one = await startPgliteUpstream({ dataDir: path.join(dir, 'data'), seed: true });
      const c1 = client(one);
      await c1.connect();
      await c1.query("INSERT INTO items (title, embedding) VALUES ('kept', '[1,1,1]')");
      await c1.end();
      await one.close();

      const two = await startPgliteUpstream({ dataDir: path.join(dir, 'data'), seed: true });
      const c2 = client(two);
      try {
        await c2.connect();
        const r = await c2.query<{ items: number; docs: number; kept: number }>(
          "SELECT (SELECT count(*)::int FROM items) AS items, (SELECT count(*)::int FROM docs) AS docs, (SELECT count(*)::int FROM items WHERE title = 'kept') AS kept",
        );
        assert.deepEqual(r.rows[0], { items: SEED_ITEM_ROWS + 1, docs: SEED_DOC_ROWS, kept: 1 });
      } finally {
        await c2.end().catch(() => {});
        await two.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
