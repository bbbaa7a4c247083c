// The embedded pgvector upstream of `vecgate dev` and of the vector-query tests: PGlite
// (PostgreSQL compiled to WASM) with the pgvector extension, served over the PostgreSQL
// wire protocol on loopback by @electric-sql/pglite-socket. It speaks no TLS, which is why
// it is the one upstream the gateway reaches in `insecure-plaintext` mode (loopback only).
//
// PGlite is one single-user backend: the socket server accepts up to `maxConnections`
// clients and runs their messages one at a time through a shared queue (a client inside a
// transaction keeps the backend until it ends it). Past the limit it writes the plain text
// "Too many connections\n" and closes (and Node's own server.maxConnections drops sockets
// beyond it), so a driver sees the connection end before authentication.
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { VgError } from '../errors.js';
import { DEMO_ITEMS } from './demo-items.js';

/** Concurrent client connections the socket server multiplexes onto the one PGlite instance (the library's own default is 1). */
export const DEFAULT_PGLITE_MAX_CONNECTIONS = 100;
/** Rows of the 3-dimension `items` demo table written by `seed`. */
export const SEED_ITEM_ROWS = DEMO_ITEMS.length;
/** Rows of 1536-dimension demo embeddings written by `seed`. */
export const SEED_DOC_ROWS = 200;
export const SEED_DIMENSIONS = 1536;

export interface PgliteUpstreamOptions {
  /** Directory for a persistent database; undefined keeps it in memory. */
  dataDir?: string;
  /** A loopback address (127.0.0.0/8, ::1 or localhost); default 127.0.0.1. */
  host?: string;
  /** 0 or undefined: any free port, chosen by the OS at listen time. */
  port?: number;
  /** Create the pgvector extension and the `items` and `docs` demo tables when empty. */
  seed?: boolean;
  maxConnections?: number;
}

export interface PgliteUpstream {
  host: string;
  port: number;
  /** The PGlite instance, for direct queries in tests (they queue with the socket clients). */
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

// Creates the demo schema and fills empty tables in one transaction, so a persistent
// dataDir never keeps a half-seeded table after a crash.
async function seedDemo(db: PGlite): Promise<void> {
  await db.exec(`
    CREATE EXTENSION IF NOT EXISTS vector;
    CREATE TABLE IF NOT EXISTS items (id bigserial PRIMARY KEY, title text NOT NULL, embedding vector(3) NOT NULL);
    CREATE TABLE IF NOT EXISTS docs (id bigserial PRIMARY KEY, body text NOT NULL, embedding vector(${SEED_DIMENSIONS}) NOT NULL);
  `);
  const items = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM items');
  if (items.rows[0]!.n === 0) {
    await db.exec(`INSERT INTO items (title, embedding) VALUES ${DEMO_ITEMS.map(([title, v]) => `('${title.replace(/'/g, "''")}', '[${v.join(',')}]')`).join(', ')};`);
  }
  const docs = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM docs');
  if (docs.rows[0]!.n === 0) {
    await db.transaction(async (tx) => {
      for (let i = 1; i <= SEED_DOC_ROWS; i++) {
        await tx.query('INSERT INTO docs (body, embedding) VALUES ($1, $2)', [`document ${i}`, seedDocVector(i)]);
      }
    });
  }
}

/**
 * The embedding `seed` writes for docs row `id` (1-based), as pgvector text: the same on
 * every run, so tests can query with a known row's vector and expect that row first.
 */
export function seedDocVector(id: number): string {
  const rnd = prng(42 + id);
  return `[${Array.from({ length: SEED_DIMENSIONS }, () => (rnd() * 2 - 1).toFixed(5)).join(',')}]`;
}

function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return net.isIPv4(host) && host.startsWith('127.');
}

/**
 * Starts PGlite + pgvector behind a PostgreSQL wire-protocol listener on loopback.
 * @example
 * const up = await startPgliteUpstream({ seed: true });
 * // psql "host=127.0.0.1 port=${up.port} user=postgres dbname=postgres sslmode=disable"
 * await up.close();
 */
export async function startPgliteUpstream(opts: PgliteUpstreamOptions = {}): Promise<PgliteUpstream> {
  const host = opts.host ?? '127.0.0.1';
  if (!isLoopback(host)) {
    throw new VgError('ERR_VG_LISTEN', `the embedded PGlite upstream speaks no TLS, so it listens on loopback only; got host "${host}", use 127.0.0.1 or ::1`);
  }
  const maxConnections = opts.maxConnections ?? DEFAULT_PGLITE_MAX_CONNECTIONS;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) {
    throw new VgError('ERR_VG_USAGE', `maxConnections must be a whole number of at least 1, got ${maxConnections}`);
  }
  if (opts.dataDir) mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const db = await PGlite.create({ dataDir: opts.dataDir, extensions: { vector } });
  let server: PGLiteSocketServer | undefined;
  try {
    if (opts.seed) await seedDemo(db);
    server = new PGLiteSocketServer({ db, host, port: opts.port ?? 0, maxConnections });
    await server.start();
  } catch (err) {
    await server?.stop().catch(() => {});
    await db.close().catch(() => {});
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new VgError('ERR_VG_LISTEN', `cannot listen on ${host}:${opts.port}: the port is in use; pick another or pass port 0`, { cause: err });
    }
    throw err;
  }
  // The server fills in the port the OS chose; getServerConn() is "host:port" (host may contain ':').
  const conn = server.getServerConn();
  const port = Number(conn.slice(conn.lastIndexOf(':') + 1));
  const srv = server;
  let closing: Promise<void> | undefined;
  return {
    host,
    port,
    db,
    close() {
      closing ??= (async () => {
        await srv.stop();
        await db.close();
      })();
      return closing;
    },
  };
}
