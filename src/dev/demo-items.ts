// The `vecgate dev` demo data, shared by both embedded upstreams.

/**
 * The 3-dimension demo items: PGlite's `items` table (`seed`) and the embedded vector API's
 * `items` collection (src/dev/vector-api.ts) hold the same ten.
 */
export const DEMO_ITEMS: readonly (readonly [title: string, embedding: readonly number[]])[] = [
  ['red apple', [1, 0.1, 0.2]],
  ['green apple', [0.9, 0.8, 0.1]],
  ['banana', [0.2, 1, 0.1]],
  ['cherry', [1, 0.05, 0.3]],
  ['lime', [0.5, 1, 0.2]],
  ['blueberry', [0.1, 0.2, 1]],
  ['grape', [0.6, 0.3, 0.9]],
  ['lemon', [0.4, 1, 0.05]],
  ['plum', [0.7, 0.2, 0.8]],
  ['kiwi', [0.3, 0.9, 0.3]],
];
