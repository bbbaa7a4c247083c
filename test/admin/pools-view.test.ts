// How /pools asks the workers (src/admin/pools-view.ts WorkerPoolsRounds): a request never
// gets a round asked before it came, a flood costs one round in flight and one waiting, a
// worker that does not answer is named rather than waited for, and a late answer is dropped.
// The real workers, pools and PostgreSQL are in test/e2e/pg-pools-admin.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildPoolsView, WorkerPoolsRounds } from '../../src/admin/pools-view.js';
import type { PostgresConnectionConfig } from '../../src/config/types.js';
import type { WorkerPoolsSnapshot } from '../../workers/messages.js';

const snapshot = (busy: number): WorkerPoolsSnapshot => ({
  transaction: { groups: [{ connection: 'c', database: 'd', user: 'u', busy, idle: 0, opening: 0, waiting: 0, maxWaitMs: 0, waits: 0, waitMs: 0, timeouts: 0 }], pins: [] },
  parked: [],
});

const conn = { name: 'c', protocol: 'postgres', upstream: { pool: { mode: 'transaction', size: 3 } } } as unknown as PostgresConnectionConfig;

describe('WorkerPoolsRounds', () => {
  it('resolves once every worker answered, with each answer', async () => {
    const asked: number[] = [];
    const r = new WorkerPoolsRounds(() => 2, (id) => asked.push(id));
    const p = r.collect();
    assert.equal(asked.length, 1);
    r.answer(0, asked[0]!, snapshot(1));
    r.answer(1, asked[0]!, snapshot(2));
    const { answers } = await p;
    assert.deepEqual([...answers.keys()].sort(), [0, 1]);
    const view = buildPoolsView({ connections: [conn], workers: 2, answers, sessions: new Map([['c', 3]]), at: Date.now() });
    assert.equal(view.connections[0]!.busy, 3);
    assert.equal(view.pools[0]!.busy, 3);
    assert.equal(view.connections[0]!.max_open, 3);
    assert.deepEqual(view.missing_workers, []);
  });

  it('requests during a round share the next one, asked after it ends: never the one asked before they came', async () => {
    const asked: number[] = [];
    const r = new WorkerPoolsRounds(() => 1, (id) => asked.push(id));
    const first = r.collect();
    const second = r.collect();
    const third = r.collect();
    assert.equal(asked.length, 1, 'one round in flight');
    assert.equal(second, third, 'later requests share one waiting round');
    r.answer(0, asked[0]!, snapshot(1));
    assert.equal((await first).answers.get(0)!.transaction.groups[0]!.busy, 1);
    await new Promise((res) => setImmediate(res));
    assert.equal(asked.length, 2, 'the waiting round is asked once the first is over');
    r.answer(0, asked[1]!, snapshot(5));
    assert.equal((await second).answers.get(0)!.transaction.groups[0]!.busy, 5);
  });

  it('a worker that does not answer in time is left out and named; its late answer is dropped', async () => {
    const asked: number[] = [];
    const r = new WorkerPoolsRounds(() => 2, (id) => asked.push(id), 50);
    const p = r.collect();
    r.answer(0, asked[0]!, snapshot(1));
    const { answers, at } = await p;
    assert.deepEqual([...answers.keys()], [0]);
    r.answer(1, asked[0]!, snapshot(9)); // late
    assert.equal(answers.size, 1);
    const view = buildPoolsView({ connections: [conn], workers: 2, answers, sessions: new Map(), at });
    assert.deepEqual(view.missing_workers, [1]);
    assert.equal(view.connections[0]!.busy, 1);
    // The next request is a new round.
    const next = r.collect();
    assert.equal(asked.length, 2);
    r.answer(0, asked[1]!, snapshot(0));
    r.answer(1, asked[1]!, snapshot(0));
    assert.equal((await next).answers.size, 2);
  });
});
