// The per-worker cancel limiter: token bucket, in-flight cap, and drops summed into one report.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CancelLimiter } from '../../../workers/pg/cancel-limiter.js';

describe('CancelLimiter', () => {
  it('lets a burst through, then the refill rate', () => {
    let now = 1_000_000;
    const l = new CancelLimiter({ ratePerSec: 10, burst: 5, maxConcurrent: 100 }, () => {}, () => now);
    const take = (n: number) => Array.from({ length: n }, () => l.acquire()).filter((r) => r === null).length;
    assert.equal(take(20), 5);
    now += 1000;
    assert.equal(take(20), 5, 'refill is capped at the burst');
    now += 300;
    assert.equal(take(20), 3);
    assert.equal(l.droppedTotal.get('rate-limited'), 20 - 5 + 20 - 5 + 20 - 3);
  });

  it('caps cancel connections in flight until they are released', () => {
    const l = new CancelLimiter({ ratePerSec: 1000, burst: 1000, maxConcurrent: 2 }, () => {});
    assert.equal(l.acquire(), null);
    assert.equal(l.acquire(), null);
    assert.equal(l.acquire(), 'too-many-in-flight');
    l.release();
    assert.equal(l.acquire(), null);
  });

  it('reports drops as one summary, then nothing until there are new ones', () => {
    const reports: Record<string, number>[] = [];
    const l = new CancelLimiter({ ratePerSec: 1, burst: 1, maxConcurrent: 1 }, (c) => reports.push(c));
    for (let i = 0; i < 500; i++) l.drop('undecodable');
    l.drop('malformed');
    l.flushReport();
    l.flushReport();
    assert.deepEqual(reports, [{ undecodable: 500, malformed: 1 }]);
  });
});
