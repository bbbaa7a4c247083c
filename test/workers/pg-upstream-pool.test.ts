// The pool's pure parts: how max_idle_total is split between workers, and the key format the
// connection name is read back from.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PgUpstreamPool, workerShare } from '../../workers/pg-upstream-pool.js';

test('max_idle_total is split between workers: every share together is exactly the total', () => {
  for (const workers of [1, 2, 3, 7, 16]) {
    for (const total of [0, 1, 2, 5, 32, 100]) {
      const shares = Array.from({ length: workers }, (_, i) => workerShare(total, i, workers));
      assert.equal(shares.reduce((a, b) => a + b, 0), total, `${total} over ${workers}`);
      assert.ok(Math.max(...shares) - Math.min(...shares) <= 1, `${total} over ${workers}: ${shares.join(',')}`);
    }
  }
});

test('the connection name is read back from a pool key', () => {
  const key = PgUpstreamPool.key('vectors.eu-1', 'vec_rw', 'db', 'https://idp sub"1', new Map([['application_name', 'x\0y']]));
  assert.equal(PgUpstreamPool.connectionOf(key), 'vectors.eu-1');
  assert.notEqual(key, PgUpstreamPool.key('vectors.eu-1', 'vec_rw', 'db', 'https://idp sub"2', new Map([['application_name', 'x\0y']])));
});
