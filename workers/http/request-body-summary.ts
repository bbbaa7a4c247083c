// What a recording keeps of an HTTP request body: its size always; in `queries` mode its JSON
// with every embedding replaced by a summary (dimensions, norm, short hash); in `full` mode
// the JSON as sent, vectors included. Bodies over the recording cap keep their size only.
import type { RecordingMode } from '../../src/config/types.js';
import { summarizeVector, type VectorSummary } from '../../src/recording/summarize-vector.js';

/** Largest request body held for its recording summary (config `max_recorded_body`); larger bodies record their size only. */
export const DEFAULT_MAX_RECORDED_BODY_BYTES = 1024 * 1024;
/** Largest rendered summary (JSON characters) written into a record; a larger one keeps its size and counts only. */
export const MAX_BODY_SUMMARY_CHARS = 64 * 1024;
/** Deepest JSON nesting rendered; deeper parts become a marker (the guard refuses such bodies anyway). */
export const MAX_SUMMARY_JSON_DEPTH = 64;
/**
 * A list of numbers is taken for an embedding when it has a fractional value or at least this
 * many entries: id lists (`[1, 2, 3]`) stay readable, vectors never leave `queries` mode raw.
 */
export const MIN_INTEGER_VECTOR_DIMS = 16;

export interface BodySummary {
  /** Bytes the client sent. */
  bytes: number;
  /** Embeddings found in the JSON (each replaced by `{ $vector: {dims, norm, hash} }` unless mode is full). */
  vectors?: number;
  /** The body's JSON: vectors summarized (`queries`) or as sent (`full`). */
  json?: unknown;
  /** Why `json` is missing: the body was too large, not JSON, or its summary too long. */
  omitted?: 'over-cap' | 'not-json' | 'summary-too-long' | 'incomplete';
}

function isVector(v: unknown[]): v is number[] {
  if (v.length === 0) return false;
  let fractional = false;
  for (const x of v) {
    if (typeof x !== 'number') return false;
    if (!Number.isInteger(x)) fractional = true;
  }
  return fractional || v.length >= MIN_INTEGER_VECTOR_DIMS;
}

/** Returns the document with vectors replaced (when `keepVectors` is false) and counts them. */
function render(doc: unknown, keepVectors: boolean, count: { n: number }, depth: number): unknown {
  if (doc === null || typeof doc !== 'object') return doc;
  if (depth >= MAX_SUMMARY_JSON_DEPTH) return '[nested too deep]';
  if (Array.isArray(doc)) {
    if (isVector(doc)) {
      count.n++;
      if (keepVectors) return doc;
      const s: VectorSummary = summarizeVector(doc);
      return { $vector: s };
    }
    return doc.map((x) => render(x, keepVectors, count, depth + 1));
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) out[k] = render(v, keepVectors, count, depth + 1);
  return out;
}

/**
 * Summarizes a request body for the recording. `parts` are lent (not kept); `complete` is false
 * when the body was cut short (client gone) or not all of it was held (over the cap).
 *
 * @example
 * summarizeRequestBody([Buffer.from('{"vector":[0.1,0.2],"limit":3}')], 30, true, 'queries');
 * // { bytes: 30, vectors: 1, json: { vector: { $vector: { dims: 2, norm: ..., hash: '...' } }, limit: 3 } }
 */
export function summarizeRequestBody(parts: readonly Buffer[], bytes: number, complete: boolean, mode: RecordingMode): BodySummary {
  if (mode !== 'queries' && mode !== 'full') return { bytes };
  if (!complete) return { bytes, omitted: bytes > DEFAULT_MAX_RECORDED_BODY_BYTES ? 'over-cap' : 'incomplete' };
  if (bytes === 0) return { bytes };
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.concat(parts).toString('utf8'));
  } catch {
    return { bytes, omitted: 'not-json' };
  }
  const count = { n: 0 };
  const json = render(doc, mode === 'full', count, 0);
  // `full` keeps vectors: its size cap is the recording cap on the body, not the summary cap.
  if (mode !== 'full' && JSON.stringify(json).length > MAX_BODY_SUMMARY_CHARS) return { bytes, vectors: count.n, omitted: 'summary-too-long' };
  return { bytes, vectors: count.n, json };
}
