// The recording's summary of HTTP request bodies: vectors summarized in `queries` mode (id lists
// and other numbers kept), kept in `full`, size only for `metadata`, for bodies over the cap,
// bodies cut short and bodies that are not JSON.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { summarizeVector } from '../../src/recording/summarize-vector.js';
import { DEFAULT_MAX_RECORDED_BODY_BYTES, MAX_BODY_SUMMARY_CHARS, summarizeRequestBody } from '../../workers/http/request-body-summary.js';

const vec = (n: number, seed = 1) => Array.from({ length: n }, (_, i) => Math.sin(seed * (i + 1)));
const body = (doc: unknown) => {
  const b = Buffer.from(JSON.stringify(doc));
  return [[b.subarray(0, 7), b.subarray(7)], b.length] as const;
};

describe('summarizeRequestBody', () => {
  it('queries: every embedding becomes {dims, norm, hash}; ids, limits and filters stay', () => {
    const q = vec(1536);
    const [parts, n] = body({ vector: q, limit: 10, filter: { must: [{ key: 'lang', match: { value: 'en' } }] }, ids: [1, 2, 3] });
    const s = summarizeRequestBody(parts, n, true, 'queries');
    assert.equal(s.bytes, n);
    assert.equal(s.vectors, 1);
    assert.deepEqual(s.json, { vector: { $vector: summarizeVector(q) }, limit: 10, filter: { must: [{ key: 'lang', match: { value: 'en' } }] }, ids: [1, 2, 3] });
  });

  it('queries: Chroma-style lists of embeddings and Qdrant named vectors are each summarized', () => {
    const [parts, n] = body({ embeddings: [vec(384, 1), vec(384, 2)], points: [{ id: 1, vector: { text: vec(8, 3) } }], integers: Array.from({ length: 32 }, (_, i) => i) });
    const s = summarizeRequestBody(parts, n, true, 'queries');
    assert.equal(s.vectors, 4, 'two embeddings, one named vector, one long integer list');
    const json = s.json as { embeddings: { $vector: { dims: number } }[]; points: { vector: { text: { $vector: { dims: number } } } }[] };
    assert.deepEqual(json.embeddings.map((e) => e.$vector.dims), [384, 384]);
    assert.equal(json.points[0]!.vector.text.$vector.dims, 8);
    assert.ok(!JSON.stringify(s).includes(String(Math.sin(1)).slice(0, 10)), 'no raw value survives');
  });

  it('full keeps the vectors as sent; metadata keeps the size only', () => {
    const q = vec(64);
    const [parts, n] = body({ vector: q });
    assert.deepEqual(summarizeRequestBody(parts, n, true, 'full'), { bytes: n, vectors: 1, json: { vector: q } });
    assert.deepEqual(summarizeRequestBody(parts, n, true, 'metadata'), { bytes: n });
  });

  it('size only, with the reason, for bodies over the cap, cut short, not JSON, or whose summary is too long', () => {
    assert.deepEqual(summarizeRequestBody([], DEFAULT_MAX_RECORDED_BODY_BYTES + 1, false, 'queries'), { bytes: DEFAULT_MAX_RECORDED_BODY_BYTES + 1, omitted: 'over-cap' });
    assert.deepEqual(summarizeRequestBody([Buffer.from('{"a"')], 4, false, 'queries'), { bytes: 4, omitted: 'incomplete' });
    assert.deepEqual(summarizeRequestBody([Buffer.from('not json')], 8, true, 'queries'), { bytes: 8, omitted: 'not-json' });
    const [parts, n] = body({ text: 'x'.repeat(MAX_BODY_SUMMARY_CHARS) });
    assert.deepEqual(summarizeRequestBody(parts, n, true, 'queries'), { bytes: n, vectors: 0, omitted: 'summary-too-long' });
  });
});
