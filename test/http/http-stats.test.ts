// The per-worker HTTP tallies the primary turns into vecgate_http_requests_total and the byte
// counters: one row per connection and status class, summed until taken.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HttpStats } from '../../workers/http/http-stats.js';

describe('HttpStats', () => {
  it('sums requests and bytes per connection and status class until taken', () => {
    const s = new HttpStats();
    s.add('qdrant', 200, false, 10, 100);
    s.add('qdrant', 204, false, 1, 0);
    s.add('qdrant', 403, false, 5, 50);
    s.add('chroma', 200, false, 7, 70);
    s.add('qdrant', 0, true, 3, 0); // the client left before an answer
    s.add('qdrant', 502, true, 0, 9); // answered, then the client left: counted by its status
    s.add('qdrant', 0, false, 0, 0); // neither answered nor aborted
    const rows = s.take().sort((a, b) => `${a[0]} ${a[1]}`.localeCompare(`${b[0]} ${b[1]}`));
    assert.deepEqual(rows, [
      ['chroma', '2xx', 1, 7, 70],
      ['qdrant', '2xx', 2, 11, 100],
      ['qdrant', '4xx', 1, 5, 50],
      ['qdrant', '5xx', 1, 0, 9],
      ['qdrant', 'aborted', 1, 3, 0],
      ['qdrant', 'other', 1, 0, 0],
    ]);
    assert.deepEqual(s.take(), [], 'taking empties the tallies');
    s.add('qdrant', 101, false, 0, 0);
    assert.deepEqual(s.take(), [['qdrant', '1xx', 1, 0, 0]]);
  });
});
