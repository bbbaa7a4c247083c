// The body guard for HTTP vector APIs: who may ask for raw vectors back (`guard.return_vectors`)
// and how large a top-k or page may be (`guard.max_limit`). It reads a request's JSON body,
// already buffered under `max_inspect_body`, and refuses (403) rather than rewriting it: a
// clamped limit would silently change results and break clients that page until a short page.
import type { HttpConnectionConfig } from '../../src/config/types.js';
import { jsonValueText, scanJsonKeys } from './json-key-scan.js';
import type { JsonKeyScanSpec } from './json-key-scan.js';
import type { HttpFlavor, RouteDecision } from './route-table.js';

export type GuardConfig = HttpConnectionConfig['guard'];

/** Largest request body the guard will buffer to read (config `max_inspect_body`); above it: 413. */
export const DEFAULT_MAX_INSPECT_BODY_BYTES = 8 * 1024 * 1024;
/** Deepest JSON nesting walked; deeper bodies are refused rather than half-inspected. */
export const MAX_INSPECT_JSON_DEPTH = 64;

export interface GuardRefusal {
  status: 400 | 403 | 415;
  code: 'ERR_VG_ACCESS_DENIED' | 'ERR_VG_HTTP_BAD_REQUEST';
  message: string;
}

interface FlavorKeys {
  /** Keys that ask for vectors back unless `false` or `null` (any other value: `true`, `1`, `"true"`, a list, a selector). */
  vectorFlags: readonly string[];
  /** Keys holding a list that asks for vectors back when it contains one of `vectorIncludes`. */
  includeLists: readonly string[];
  vectorIncludes: readonly string[];
  /** Numeric keys that set a top-k or page size; any other value but `null` is refused (400). */
  limitKeys: readonly string[];
}

const KEYS: Record<HttpFlavor, FlavorKeys> = {
  qdrant: { vectorFlags: ['with_vector', 'with_vectors'], includeLists: [], vectorIncludes: [], limitKeys: ['limit', 'top', 'group_size'] },
  chroma: { vectorFlags: [], includeLists: ['include', 'keys'], vectorIncludes: ['embeddings', '#embedding'], limitKeys: ['n_results', 'limit'] },
  // Weaviate carries its query as GraphQL text: see graphqlFindings.
  weaviate: { vectorFlags: [], includeLists: [], vectorIncludes: [], limitKeys: ['limit'] },
  // Milvus names vector fields per schema, so only limits are checked (outputFields cannot be judged without the schema).
  milvus: { vectorFlags: [], includeLists: [], vectorIncludes: [], limitKeys: ['limit', 'topK'] },
  opensearch: { vectorFlags: [], includeLists: [], vectorIncludes: [], limitKeys: ['size', 'k'] },
  generic: { vectorFlags: [], includeLists: [], vectorIncludes: [], limitKeys: [] },
};

/** The scanner's view of KEYS (built once). */
const SCAN_SPECS = {} as Record<HttpFlavor, JsonKeyScanSpec>;
for (const flavor of Object.keys(KEYS) as HttpFlavor[]) {
  const k = KEYS[flavor];
  SCAN_SPECS[flavor] = { numberKeys: new Set(k.limitKeys), flagKeys: new Set(k.vectorFlags), listKeys: new Set(k.includeLists), listValues: new Set(k.vectorIncludes) };
}

const HOW_WITHOUT_VECTORS: Record<HttpFlavor, string> = {
  qdrant: 'omit with_vector/with_vectors or set it to false (ids, scores and payload are still returned)',
  chroma: 'leave "embeddings" out of include (ids, documents, metadatas and distances are still returned)',
  weaviate: 'leave vector out of _additional',
  milvus: 'leave vector fields out of outputFields',
  opensearch: 'exclude vector fields from _source',
  generic: 'do not ask for vectors',
};

/** True when `groups` may get raw vectors back on this connection. */
export function mayReturnVectors(guard: GuardConfig, groups: readonly string[]): boolean {
  if (guard.returnVectors === null) return true;
  return groups.some((g) => guard.returnVectors!.includes(g));
}

/** True when this request's body must be buffered and read before it is forwarded. */
export function guardNeedsBody(route: RouteDecision, guard: GuardConfig, groups: readonly string[]): boolean {
  if (route.inspect !== 'json') return false;
  return guard.maxLimit !== null || !mayReturnVectors(guard, groups);
}

/** Refusal for a route that always returns vectors (no body to read), or null when allowed. */
export function guardRoute(flavor: HttpFlavor, route: RouteDecision, guard: GuardConfig, groups: readonly string[], connection: string): GuardRefusal | null {
  if (route.inspect !== 'returns-vectors' || mayReturnVectors(guard, groups)) return null;
  const alt = flavor === 'qdrant' ? ' Use POST /collections/{name}/points with "ids" and with_vector false instead.' : '';
  return {
    status: 403,
    code: 'ERR_VG_ACCESS_DENIED',
    message: `${route.operation} returns raw vectors, which on connection "${connection}" only groups ${listGroups(guard)} may receive.${alt}`,
  };
}

function listGroups(guard: GuardConfig): string {
  const gs = guard.returnVectors ?? [];
  return gs.length ? gs.join(', ') : '(none)';
}

export interface Findings {
  vectors: string | null; // the key that asked for vectors
  limit: { key: string; value: number } | null; // the largest limit seen
  notNumber: { key: string; value: string } | null; // a limit key given something other than a number (its JSON text)
}

/**
 * Reads a buffered JSON body and returns a refusal, or null when the request may go on.
 * `body` is lent: it is not kept.
 */
export function guardBody(flavor: HttpFlavor, route: RouteDecision, body: Buffer, guard: GuardConfig, groups: readonly string[], connection: string): GuardRefusal | null {
  if (body.length === 0) return null;
  const found = flavor === 'weaviate' ? parsedFindings(flavor, body) : scannedFindings(flavor, body);
  if (found === 'invalid') {
    return { status: 400, code: 'ERR_VG_HTTP_BAD_REQUEST', message: `the body of ${route.operation} is not valid JSON; the gateway reads it to apply this connection's guard` };
  }
  if (found === 'too-deep') {
    return { status: 400, code: 'ERR_VG_HTTP_BAD_REQUEST', message: `the JSON body of ${route.operation} nests deeper than ${MAX_INSPECT_JSON_DEPTH} levels` };
  }
  if (found.notNumber !== null) {
    // Whatever the upstream would make of it ("1000" read as 1000), the guard judges numbers only.
    return { status: 400, code: 'ERR_VG_HTTP_BAD_REQUEST', message: `${found.notNumber.key} in the body of ${route.operation} must be a JSON number (got ${found.notNumber.value})` };
  }
  if (found.vectors !== null && !mayReturnVectors(guard, groups)) {
    return {
      status: 403,
      code: 'ERR_VG_ACCESS_DENIED',
      message: `${route.operation} asks for raw vectors (${found.vectors}); on connection "${connection}" only groups ${listGroups(guard)} may receive vectors. To ask without them, ${HOW_WITHOUT_VECTORS[flavor]}.`,
    };
  }
  if (guard.maxLimit !== null && found.limit !== null && found.limit.value > guard.maxLimit) {
    return {
      status: 403,
      code: 'ERR_VG_ACCESS_DENIED',
      message: `${route.operation} asks for ${found.limit.key}=${found.limit.value}, above connection "${connection}"'s max_limit of ${guard.maxLimit}; ask for at most ${guard.maxLimit} and page through the rest`,
    };
  }
  return null;
}

/**
 * What a body asks for, read by the single-pass scanner (json-key-scan.ts): every occurrence of
 * a guarded key counts, duplicates included, so the strictest reading of the body is judged.
 */
export function scannedFindings(flavor: HttpFlavor, body: Buffer): Findings | 'invalid' | 'too-deep' {
  const r = scanJsonKeys(body, SCAN_SPECS[flavor], MAX_INSPECT_JSON_DEPTH);
  if (!r.ok) return r.reason;
  const f = r.findings;
  let vectors: string | null = null;
  if (f.flag !== null) vectors = `${f.flag.key}: ${valueText(body, f.flag.valueStart)}`;
  else if (f.listHit !== null) vectors = `${f.listHit.key} contains "${f.listHit.value}"`;
  const notNumber = f.notNumber === null ? null : { key: f.notNumber.key, value: valueText(body, f.notNumber.valueStart) };
  return { vectors, limit: f.number, notNumber };
}

/** A value of a body the scanner accepted, as compact JSON for a message (at most 60 characters). */
function valueText(body: Buffer, start: number): string {
  return JSON.stringify(JSON.parse(jsonValueText(body, start))).slice(0, 60);
}

/** What a body asks for, from JSON.parse and a walk of the document (the reference reading; Weaviate's GraphQL text). */
export function parsedFindings(flavor: HttpFlavor, body: Buffer): Findings | 'invalid' | 'too-deep' {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    return 'invalid';
  }
  return flavor === 'weaviate' ? graphqlFindings(doc) : walk(doc, KEYS[flavor]);
}

/** Iterative walk (no recursion: hostile nesting cannot blow the stack). */
function walk(doc: unknown, keys: FlavorKeys): Findings | 'too-deep' {
  const out: Findings = { vectors: null, limit: null, notNumber: null };
  const stack: { v: unknown; depth: number }[] = [{ v: doc, depth: 0 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    if (depth > MAX_INSPECT_JSON_DEPTH) return 'too-deep';
    if (Array.isArray(v)) {
      for (const item of v) if (item !== null && typeof item === 'object') stack.push({ v: item, depth: depth + 1 });
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
      if (keys.vectorFlags.includes(k) && asksForVectors(val)) out.vectors ??= `${k}: ${JSON.stringify(val).slice(0, 60)}`;
      if (keys.includeLists.includes(k) && Array.isArray(val)) {
        const hit = val.find((x) => typeof x === 'string' && keys.vectorIncludes.includes(x));
        if (hit !== undefined) out.vectors ??= `${k} contains "${String(hit)}"`;
      }
      if (keys.limitKeys.includes(k)) {
        if (typeof val === 'number') {
          if (out.limit === null || val > out.limit.value) out.limit = { key: k, value: val };
        } else if (val !== null) out.notNumber ??= { key: k, value: JSON.stringify(val).slice(0, 60) };
      }
      if (val !== null && typeof val === 'object') stack.push({ v: val, depth: depth + 1 });
    }
  }
  return out;
}

/**
 * Qdrant `with_vector`: anything but `false` or `null` (which Qdrant, like an absent key, reads
 * as "no vectors") asks: `true`, a list of vector names, a selector, and also `1` or `"true"`,
 * whatever the upstream makes of those.
 */
function asksForVectors(val: unknown): boolean {
  return val !== false && val !== null;
}

/** Weaviate GraphQL: `_additional { vector }` asks for vectors; `limit: N` arguments cap results. */
function graphqlFindings(doc: unknown): Findings | 'too-deep' {
  const queries: string[] = [];
  const collect = (d: unknown) => {
    if (d !== null && typeof d === 'object' && typeof (d as { query?: unknown }).query === 'string') queries.push((d as { query: string }).query);
  };
  if (Array.isArray(doc)) doc.forEach(collect);
  else collect(doc);
  const out: Findings = { vectors: null, limit: null, notNumber: null };
  for (const q of queries) {
    if (/_additional\s*\{[^}]*\bvectors?\b/.test(q)) out.vectors ??= '_additional { vector }';
    for (const m of q.matchAll(/\blimit\s*:\s*(\d+)/g)) {
      const n = Number(m[1]);
      if (out.limit === null || n > out.limit.value) out.limit = { key: 'limit', value: n };
    }
  }
  return out;
}
