// Summary of an embedding for recordings in `queries` mode: its size, length and a short
// fingerprint, so an auditor can tell vectors apart without storing them.
import { createHash } from 'node:crypto';

/** Hex digits of the SHA-256 kept in the fingerprint: enough to tell vectors apart in a session. */
export const VECTOR_HASH_HEX_DIGITS = 12;

export interface VectorSummary {
  dims: number;
  /** Euclidean (L2) norm, computed in float64 over the float32 values. */
  norm: number;
  /** First hex digits of SHA-256 over the values as little-endian float32. */
  hash: string;
}

export function summarizeVector(values: number[] | Float32Array): VectorSummary {
  const bytes = Buffer.alloc(values.length * 4);
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    // Round to float32 first so a number[] and the Float32Array of it summarize the same.
    const v = Math.fround(values[i]!);
    bytes.writeFloatLE(v, i * 4);
    sum += v * v;
  }
  return {
    dims: values.length,
    norm: Math.sqrt(sum),
    hash: createHash('sha256').update(bytes).digest('hex').slice(0, VECTOR_HASH_HEX_DIGITS),
  };
}
