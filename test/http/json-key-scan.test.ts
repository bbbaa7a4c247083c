// The guard's single-pass JSON scanner against the reference reading (JSON.parse + a walk of
// the document): the same bodies accepted and refused, the same vector requests and limits
// found, on hand-picked hostile cases (duplicate keys, escaped key names, key names inside
// strings, nesting at the depth limit, number grammar) and on generated documents written with
// random whitespace and escapes, and mutated into near-JSON.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_INSPECT_JSON_DEPTH, parsedFindings, scannedFindings } from '../../workers/http/guard.js';
import type { Findings } from '../../workers/http/guard.js';
import type { HttpFlavor } from '../../workers/http/route-table.js';

const FLAVORS: HttpFlavor[] = ['qdrant', 'chroma', 'milvus', 'opensearch', 'generic'];

/** What the guard decides on: valid or not (and why), vectors asked or not, the largest limit. */
function decision(f: Findings | 'invalid' | 'too-deep'): string {
  if (typeof f === 'string') return f;
  return JSON.stringify({ vectors: f.vectors !== null, limit: f.limit?.value ?? null, notNumber: f.notNumber !== null });
}

function sameAsReference(text: string | Buffer, flavors: HttpFlavor[] = FLAVORS): void {
  const body = Buffer.isBuffer(text) ? text : Buffer.from(text);
  for (const flavor of flavors) {
    assert.equal(decision(scannedFindings(flavor, body)), decision(parsedFindings(flavor, body)), `${flavor}: ${body.toString('utf8').slice(0, 120)}`);
  }
}

describe('scanner agrees with JSON.parse on hand-picked bodies', () => {
  const cases = [
    '{"vector":[0.1,0.2],"limit":5000}',
    '{"a":{"with_vector":true}}',
    '{"prefetch":[{"query":[1,2],"with_vectors":["text"]}]}',
    '{"with_vector":false}',
    '{"with_vector":[]}',
    '{"with_vector":{}}',
    '{"with_vector":{"a":1}}',
    '{"with_vector":null}',
    '{"with_vector":1}',
    '{"with_vector":"true"}',
    '{"with_vector":"false"}',
    '{"with_vector":0}',
    '{"with_vectors":[[]]}',
    '{"limit":"1000"}',
    '{"limit":null}',
    '{"limit":true}',
    '{"limit":false}',
    '{"limit":[1000]}',
    '{"limit":{}}',
    '{"top":"5","limit":3}',
    '{"x":"with_vector","limit":"5000","note":"\\"limit\\": 9000"}',
    '{"with\\u005fvector":true}',
    '{"li\\u006dit":7777}',
    '{"limit":1e400}',
    '{"limit":-5,"top":12.5}',
    '{"limit":1,"a":[{"limit":3000}]}',
    '{"include":["embeddings"]}',
    '{"include":["documents","embe\\u0064dings"]}',
    '{"include":[["embeddings"]]}',
    '{"include":[{"x":"embeddings"}]}',
    '{"include":"embeddings"}',
    '{"keys":["#embedding"]}',
    '{"n_results":5000}',
    '01',
    '{"a":01}',
    '[1,]',
    '{"a":1,}',
    '{"a":1,2}',
    '[1,2,"x",3, 4 ,5]',
    '[1 ,2,{}]',
    '[1\t,\n2\r, 3]',
    '[1,,2]',
    ' ',
    '"\\x"',
    '{"a":"\\u12"}',
    '{"a":"\\u12g4"}',
    '{"a":"\t"}',
    '{"a":"\u007f"}',
    '[-]',
    '[1.]',
    '[.5]',
    '[1e]',
    '[1e+]',
    '[+1]',
    '[-0.0e-0, 1E+5, 0.5e7]',
    'true ',
    'nul',
    '[tru]',
    '[true1]',
    '{"a" 1}',
    '{a:1}',
    "{'a':1}",
    '[1 2]',
    '[1]]',
    '{"a":1}}',
    '{"a":1} x',
    'null',
    '3',
    '"s"',
    '[NaN]',
    '[Infinity]',
    '\ufeff{}',
    '{"\ud83d\ude00":"\\ud800"}',
  ];
  for (const c of cases) it(JSON.stringify(c), () => sameAsReference(c));

  it('bytes that are not UTF-8 inside and outside strings', () => {
    sameAsReference(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xc3, 0x22, 0x7d])); // {"a":"\xff\xc3"}
    sameAsReference(Buffer.from([0x5b, 0x31, 0xff, 0x5d])); // [1\xff]
    sameAsReference(Buffer.from([0x7b, 0x22, 0x6c, 0x69, 0x6d, 0x69, 0x74, 0xc0, 0x22, 0x3a, 0x39, 0x39, 0x39, 0x39, 0x7d])); // {"limit\xc0":9999}
  });

  it('nesting up to and past the depth limit', () => {
    for (const d of [MAX_INSPECT_JSON_DEPTH, MAX_INSPECT_JSON_DEPTH + 1, MAX_INSPECT_JSON_DEPTH + 2, MAX_INSPECT_JSON_DEPTH + 10]) {
      sameAsReference('['.repeat(d) + ']'.repeat(d));
      sameAsReference('{"a":'.repeat(d) + '{}' + '}'.repeat(d));
      sameAsReference('{"a":'.repeat(d) + '{"limit":9999}' + '}'.repeat(d));
    }
  });
});

describe('scanner reads every occurrence of a key', () => {
  it('a duplicate key asking for vectors or a large limit counts even when a later one does not', () => {
    const body = Buffer.from('{"with_vector":true,"limit":5000,"with_vector":false,"limit":1}');
    const f = scannedFindings('qdrant', body);
    assert.ok(typeof f !== 'string');
    assert.equal(f.vectors, 'with_vector: true');
    assert.deepEqual(f.limit, { key: 'limit', value: 5000 });
    // JSON.parse keeps only the last: the reference sees neither.
    assert.equal(decision(parsedFindings('qdrant', body)), JSON.stringify({ vectors: false, limit: 1, notNumber: false }));
  });

  it('names the key and shows its value in the refusal text', () => {
    const f = scannedFindings('qdrant', Buffer.from('{"a":[1,{"with_vectors":["text", "image"]}]}'));
    assert.ok(typeof f !== 'string');
    assert.equal(f.vectors, 'with_vectors: ["text","image"]');
    const g = scannedFindings('chroma', Buffer.from('{"include":["metadatas","embeddings"]}'));
    assert.ok(typeof g !== 'string');
    assert.equal(g.vectors, 'include contains "embeddings"');
  });
});

// ---- generated documents ----

const GUARDED_KEYS = ['limit', 'top', 'group_size', 'with_vector', 'with_vectors', 'include', 'keys', 'n_results', 'topK', 'size', 'k', 'vector'];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const jsonDoc: fc.Arbitrary<Json> = fc.letrec<{ value: Json }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: -100_000, max: 100_000 }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.constantFrom('embeddings', '#embedding', 'documents', 'limit', 'with_vector'),
    fc.string(),
    fc.array(tie('value'), { maxLength: 6 }),
    fc.array(fc.double({ noNaN: true, noDefaultInfinity: true, min: -1, max: 1 }), { minLength: 1, maxLength: 40 }),
    fc.dictionary(fc.oneof(fc.constantFrom(...GUARDED_KEYS), fc.string({ maxLength: 8 })), tie('value'), { maxKeys: 6 }),
  ),
})).value;

/** Writes `v` as JSON with random whitespace between tokens and random \u escapes in strings. */
function writeJson(v: Json, rnd: () => number): string {
  const ws = (): string => (rnd() < 0.2 ? [' ', '\n', '\t', '\r\n  '][Math.floor(rnd() * 4)]! : '');
  const str = (s: string): string => {
    let out = '';
    for (const ch of JSON.stringify(s).slice(1, -1).match(/\\u[0-9a-f]{4}|\\.|[\s\S]/g) ?? []) {
      out += ch.length === 1 && rnd() < 0.1 ? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}` : ch;
    }
    return `"${out}"`;
  };
  if (v === null || typeof v === 'boolean' || typeof v === 'number') return JSON.stringify(v);
  if (typeof v === 'string') return str(v);
  if (Array.isArray(v)) return `[${ws()}${v.map((x) => writeJson(x, rnd) + ws()).join(`,${ws()}`)}]`;
  return `{${ws()}${Object.entries(v)
    .map(([k, x]) => `${str(k)}${ws()}:${ws()}${writeJson(x, rnd)}${ws()}`)
    .join(`,${ws()}`)}}`;
}

function seeded(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

describe('scanner agrees with JSON.parse on generated bodies', () => {
  it('documents without duplicate keys: same decision for every flavor', () => {
    fc.assert(
      fc.property(jsonDoc, fc.integer(), (doc, seed) => {
        sameAsReference(writeJson(doc, seeded(seed)));
      }),
      { numRuns: 3000 },
    );
  });

  it('mutated documents: accepted and refused alike; never more lenient on what it finds', () => {
    const mutation = fc.tuple(fc.nat(), fc.constantFrom('delete', 'insert', 'duplicate'), fc.constantFrom(',', ':', '"', '\\', '[', ']', '{', '}', '-', '.', 'e', '0', '1', ' ', 'u', '\n', '\u0001', 't'));
    fc.assert(
      fc.property(jsonDoc, fc.integer(), fc.array(mutation, { minLength: 1, maxLength: 3 }), (doc, seed, mutations) => {
        let text = writeJson(doc, seeded(seed));
        for (const [at, kind, ch] of mutations) {
          const i = text.length === 0 ? 0 : at % text.length;
          if (kind === 'delete') text = text.slice(0, i) + text.slice(i + 1);
          else if (kind === 'insert') text = text.slice(0, i) + ch + text.slice(i);
          else text = text.slice(0, i) + text.slice(i, i + 12) + text.slice(i);
        }
        const body = Buffer.from(text);
        for (const flavor of FLAVORS) {
          const s = scannedFindings(flavor, body);
          const p = parsedFindings(flavor, body);
          assert.equal(typeof s === 'string' ? s : 'ok', typeof p === 'string' ? p : 'ok', `${flavor}: ${text}`);
          if (typeof s === 'string' || typeof p === 'string') continue;
          // Duplicates may appear: the scanner sees every occurrence, the reference only the last.
          if (p.vectors !== null) assert.notEqual(s.vectors, null, text);
          if (p.limit !== null) assert.ok(s.limit !== null && s.limit.value >= p.limit.value, text);
          if (p.notNumber !== null) assert.notEqual(s.notNumber, null, text);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
