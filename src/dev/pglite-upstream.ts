// The embedded pgvector upstream of `vecgate dev` and of the vector-query tests: PGlite
// (PostgreSQL compiled to WASM) with the pgvector extension, served over the PostgreSQL
// wire protocol on loopback by @electric-sql/pglite-socket. It speaks no TLS, which is why
// it is the one upstream the gateway reaches in `insecure-plaintext` mode (loopback only).
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { freePortOn } from './free-port.js';

/** Concurrent client connections the socket server multiplexes onto the one PGlite instance. */
export const DEFAULT_PGLITE_MAX_CONNECTIONS = 100;
/** Rows of 1536-dimension demo embeddings written by `seed`. */
export const SEED_DOC_ROWS = 200;
export const SEED_DIMENSIONS = 1536;

export interface PgliteUpstream {
  host: string;
  port: number;
  db: PGlite;
  close(): Promise<void>;
}

// Deterministic pseudo-random numbers (mulberry32) so seeded vectors are the same every run.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function seedDemo(db: PGlite): Promise<void> {
  await db.exec(`
    CREATE EXTENSION IF NOT EXISTS vector;
    CREATE TABLE IF NOT EXISTS items (id bigserial PRIMARY KEY, title text NOT NULL, embedding vector(3) NOT NULL);
    CREATE TABLE IF NOT EXISTS docs (id bigserial PRIMARY KEY, body text NOT NULL, embedding vector(${SEED_DIMENSIONS}) NOT NULL);
  `);
  const items = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM items');
  if (items.rows[0]!.n === 0) {
    await db.exec(`INSERT INTO items (title, embedding) VALUES
      ('red apple', '[1,0.1,0.2]'), ('green apple', '[0.9,0.8,0.1]'), ('banana', '[0.2,1,0.1]'),
      ('cherry', '[1,0.05,0.3]'), ('lime', '[0.5,1,0.2]'), ('blueberry', '[0.1,0.2,1]'),
      ('grape', '[0.6,0.3,0.9]'), ('lemon', '[0.4,1,0.05]'), ('plum', '[0.7,0.2,0.8]'), ('kiwi', '[0.3,0.9,0.3]');`);
  }
  const docs = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM docs');
  if (docs.rows[0]!.n === 0) {
    const rnd = prng(42);
    for (let i = 1; i <= SEED_DOC_ROWS; i++) {
      const v = Array.from({ length: SEED_DIMENSIONS }, () => (rnd() * 2 - 1).toFixed(5));
      await db.query('INSERT INTO docs (body, embedding) VALUES ($1, $2)', [`document ${i}`, `[${v.join(',')}]`]);
    }
  }
}

export async function startPgliteUpstream(
  opts: { dataDir?: string; host?: string; port?: number; seed?: boolean; maxConnections?: number } = {},
): Promise<PgliteUpstream> {
  const host = opts.host ?? '127.0.0.1';
  if (host !== '127.0.0.1' && host !== '::1' && host !== 'localhost') {
    throw new Error('the embedded PGlite upstream speaks no TLS and listens on loopback only');
  }
  if (opts.dataDir) mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const db = await PGlite.create({ dataDir: opts.dataDir, extensions: { vector } });
  if (opts.seed) await seedDemo(db);
  const port = opts.port && opts.port > 0 ? opts.port : await freePortOn(host);
  const server = new PGLiteSocketServer({ db, host, port, maxConnections: opts.maxConnections ?? DEFAULT_PGLITE_MAX_CONNECTIONS });
  await server.start();
  return {
    host,
    port,
    db,
    async close() {
      await server.stop();
      await db.close();
    },
  };
}
