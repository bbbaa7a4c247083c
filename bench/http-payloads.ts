// Request bodies and canned answers for the HTTP vector-API workloads, shaped like Qdrant's
// REST API with 1536-dimension embeddings printed as float32 JSON numbers (about 11 characters
// each, as Qdrant prints them): a search, a search returning top-10 with vectors, upserts.
// Deterministic, so every run and every system sends and receives the same bytes.

/** Dimensions of one embedding (OpenAI text-embedding-3-small). */
export const BENCH_VECTOR_DIM = 1536;
/** Hits a search returns. */
export const BENCH_TOP_K = 10;
/** Significant digits printed per component: float32 precision, what Qdrant returns. */
export const BENCH_VECTOR_DIGITS = 8;
/** The collection every workload addresses. */
export const BENCH_COLLECTION = 'docs';

/** A deterministic pseudo-random unit-ish vector (xorshift), printed with float32 precision. */
export function benchVector(seed: number, dim = BENCH_VECTOR_DIM): number[] {
  let x = (seed * 2654435761) >>> 0 || 1;
  const out: number[] = new Array(dim);
  const scale = 1 / Math.sqrt(dim);
  for (let i = 0; i < dim; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = Number((((x / 0xffffffff) * 2 - 1) * scale * 1.7).toPrecision(BENCH_VECTOR_DIGITS));
  }
  return out;
}

function payloadOf(id: number): Record<string, unknown> {
  return { title: `Document ${id}`, source: 'bench', chunk: id % 17, lang: 'en', url: `https://docs.example.com/d/${id}` };
}

/** POST /collections/docs/points/search body: one query vector, top-10, payload, optionally the vectors. */
export function searchRequestBody(withVector: boolean): Buffer {
  return Buffer.from(JSON.stringify({ vector: benchVector(1), limit: BENCH_TOP_K, with_payload: true, ...(withVector ? { with_vector: true } : {}) }));
}

/** Qdrant's answer to that search: top-10 ids with scores and payloads, with or without vectors. */
export function searchAnswer(withVector: boolean): Buffer {
  const result = Array.from({ length: BENCH_TOP_K }, (_, i) => ({
    id: 1000 + i,
    version: 3,
    score: Number((0.92 - i * 0.013).toPrecision(BENCH_VECTOR_DIGITS)),
    payload: payloadOf(1000 + i),
    ...(withVector ? { vector: benchVector(1000 + i) } : {}),
  }));
  return Buffer.from(JSON.stringify({ result, status: 'ok', time: 0.001234 }));
}

/** PUT /collections/docs/points body with `n` points (vector + payload each). */
export function upsertRequestBody(n: number): Buffer {
  const points = Array.from({ length: n }, (_, i) => ({ id: i + 1, vector: benchVector(i + 1), payload: payloadOf(i + 1) }));
  return Buffer.from(JSON.stringify({ points }));
}

/** Qdrant's answer to an upsert. */
export function upsertAnswer(): Buffer {
  return Buffer.from(JSON.stringify({ result: { operation_id: 4711, status: 'acknowledged' }, status: 'ok', time: 0.002345 }));
}

/** A body of exactly `n` bytes for the plain GET latency rows. */
export function bytesBody(n: number): Buffer {
  return Buffer.alloc(n, 'x');
}
