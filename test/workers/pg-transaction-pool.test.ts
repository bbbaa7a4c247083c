// The transaction pool's bookkeeping (workers/pg-transaction-pool.ts), with stand-in links:
// each worker's share of `size`, FIFO waiters, 53300 after wait_timeout, another key's idle
// link closed to make room, and keys forgotten once unused (they come from client startup
// parameters, so a client varying them must not grow the pool's memory). The real links,
// sessions and PostgreSQL are in test/e2e/pg-transaction-pool.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Connection } from '../../src/native.js';
import type { UpstreamPoolConfig } from '../../src/config/types.js';
import { PgTransactionPool, type LinkWaiter } from '../../workers/pg-transaction-pool.js';
import type { UpstreamReady } from '../../workers/pg-upstream-setup.js';

class FakeLink {
  closed = false;
  onData: ((b: Buffer) => void) | null = null;
  onClose: (() => void) | null = null;
  setCallbacks(d: (b: Buffer) => void, c: () => void) {
    this.onData = d;
    this.onClose = c;
  }
  resume() {}
  pause() {}
  close() {
    this.closed = true;
  }
  destroy() {
    this.closed = true;
  }
}

function ready(): UpstreamReady {
  return { conn: new FakeLink() as unknown as Connection, tls: null, parameters: new Map(), backendKey: null, transactionStatus: 'I', leftover: Buffer.alloc(0) };
}

const cfg = (size: number, waitTimeoutMs = 200): UpstreamPoolConfig => ({ maxIdle: 8, maxIdleTotal: 32, idleTimeoutMs: 30_000, mode: 'transaction', size, waitTimeoutMs, preparedStatements: 200, onPin: 'pin' });

function pool(workers = 1, index = 0) {
  let changed = 0;
  const p = new PgTransactionPool({ index, config: { server: { workers } }, log: () => {}, transactionPoolChanged: () => changed++ });
  return { p, changed: () => changed };
}

/** A waiter that records what it got. */
function waiter(): LinkWaiter & { got: UpstreamReady[]; failed: string[] } {
  const w = {
    got: [] as UpstreamReady[],
    failed: [] as string[],
    give: (r: UpstreamReady) => (w.got.push(r), true),
    fail: (m: string, code: string) => void w.failed.push(`${code} ${m}`),
  };
  return w;
}

const tick = () => new Promise((r) => setImmediate(r));

describe('transaction pool', () => {
  it('opens up to the worker share, then queues in order and hands released links to the first waiter', async () => {
    const { p } = pool();
    let opened = 0;
    const open = () => (opened++, Promise.resolve(ready()));
    const ws = [waiter(), waiter(), waiter()];
    for (const w of ws) p.acquire('k', 'c', cfg(2, 5000), open, w);
    await tick();
    assert.equal(opened, 2);
    assert.deepEqual(ws.map((w) => w.got.length), [1, 1, 0]);
    p.release(ws[0]!.got[0]!.conn);
    assert.equal(ws[2]!.got[0], ws[0]!.got[0], 'the released link went to the waiter');
    assert.equal(opened, 2);
    // Released with nobody waiting: idle, and the next acquire takes it at once.
    p.release(ws[1]!.got[0]!.conn);
    const next = waiter();
    p.acquire('k', 'c', cfg(2, 5000), open, next);
    assert.equal(next.got[0], ws[1]!.got[0]);
    assert.equal(opened, 2);
  });

  it('idle links close after idle_timeout (one sweep for the pool), links in use never; a link used again starts its idle time over', async () => {
    const { p } = pool();
    const quick = { ...cfg(3, 5000), idleTimeoutMs: 1000 };
    const ws = [waiter(), waiter()];
    for (const w of ws) p.acquire('k', 'c', quick, () => Promise.resolve(ready()), w);
    await tick();
    const [a, b] = ws.map((w) => w.got[0]!.conn as unknown as FakeLink);
    p.release(a as unknown as Connection); // idle from now; b stays with its session
    await new Promise((r) => setTimeout(r, 600));
    const again = waiter();
    p.acquire('k', 'c', quick, () => Promise.resolve(ready()), again);
    assert.equal(again.got[0]!.conn, a as unknown as Connection, 'taken from idle');
    p.release(a as unknown as Connection); // idle again: its time starts over
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(a.closed, false, 'idle 0.7 s of 1 s');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(a.closed, true, 'closed by the sweep');
    assert.equal(b.closed, false, 'in use: never swept');
    // The slot is free again: a new waiter opens a link.
    let opened = 0;
    const w3 = waiter();
    p.acquire('k', 'c', quick, () => (opened++, Promise.resolve(ready())), w3);
    await tick();
    assert.equal(opened, 1);
    p.clear();
  });

  it('a worker gets its share of size (at least one)', () => {
    assert.equal(pool(4, 0).p.share(cfg(10)), 3);
    assert.equal(pool(4, 3).p.share(cfg(10)), 2);
    assert.equal(pool(4, 3).p.share(cfg(2)), 1);
  });

  it('a waiter that finds every link busy gets 53300 after wait_timeout, naming the limit', async () => {
    const { p } = pool();
    const open = () => Promise.resolve(ready());
    const holder = waiter();
    p.acquire('k', 'c', cfg(1, 100), open, holder);
    await tick();
    const late = waiter();
    const started = Date.now();
    p.acquire('k', 'c', cfg(1, 100), open, late);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(late.got.length, 0);
    assert.equal(late.failed.length, 1);
    assert.match(late.failed[0]!, /^53300 all 1 upstream connection of this gateway worker for connection "c" stayed busy for 0\.1 s \(upstream\.pool\.size 1 over 1 workers\)$/);
    assert.ok(Date.now() - started >= 100);
    const stats = p.stats().find((r) => r.connection === 'c')!;
    assert.equal(stats.timeouts, 1);
    assert.equal(stats.waiting, 0);
  });

  it("another key's idle link is closed to make room for a waiting key", async () => {
    const { p } = pool();
    const open = () => Promise.resolve(ready());
    const a = waiter();
    p.acquire('key-a', 'c', cfg(1), open, a);
    await tick();
    const linkA = a.got[0]!.conn as unknown as FakeLink;
    p.release(a.got[0]!.conn);
    assert.equal(linkA.closed, false, 'idle');
    const b = waiter();
    p.acquire('key-b', 'c', cfg(1), open, b);
    await tick();
    assert.equal(linkA.closed, true, "key-a's idle link made room");
    assert.equal(b.got.length, 1);
    assert.notEqual(b.got[0]!.conn, a.got[0]!.conn);
  });

  it('an idle link the server writes to or closes is forgotten, and its room reused', async () => {
    const { p } = pool();
    let opened = 0;
    const open = () => (opened++, Promise.resolve(ready()));
    const a = waiter();
    p.acquire('k', 'c', cfg(1), open, a);
    await tick();
    const link = a.got[0]!.conn as unknown as FakeLink;
    p.release(a.got[0]!.conn);
    link.onData!(Buffer.from('N'));
    assert.equal(link.closed, true);
    const b = waiter();
    p.acquire('k', 'c', cfg(1), open, b);
    await tick();
    assert.equal(opened, 2);
    assert.equal(b.got.length, 1);
  });

  it('keys nobody uses are forgotten (a client varying its startup parameters does not grow the pool)', async () => {
    const { p } = pool();
    const open = () => Promise.resolve(ready());
    for (let i = 0; i < 200; i++) {
      const w = waiter();
      p.acquire(`key-${i}`, 'c', cfg(1), open, w);
      await tick();
      assert.equal(w.got.length, 1, `key ${i}`);
      // The session ends with its link closed (pinned, or the pump closed it).
      p.forget(w.got[0]!.conn);
    }
    const groups = (p as unknown as { groups: Map<string, unknown> }).groups;
    assert.equal(groups.size, 0);
    const stats = p.stats().find((r) => r.connection === 'c')!;
    assert.equal(stats.open, 0);
  });
});
