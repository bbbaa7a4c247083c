// Child process: opens `--count` PostgreSQL sessions through a proxy (TLS verify-full,
// startup, password, ReadyForQuery) with node-postgres, holds them idle, prints
// {"held":N,"failed":M,...} once they are all open, and closes them when stdin closes
// or on SIGTERM. Run with a raised open-file limit.
// Usage: node idle-sessions.js --port P --ca F --database D --user U --password-env VAR --count N [--concurrency C]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';

/** Sessions being opened at once: enough to overlap handshakes, few enough not to time out. */
const DEFAULT_OPEN_CONCURRENCY = 16;
/** One session may take this long to open. */
const OPEN_TIMEOUT_MS = 30_000;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      ca: { type: 'string' },
      database: { type: 'string' },
      user: { type: 'string' },
      'password-env': { type: 'string' },
      count: { type: 'string' },
      concurrency: { type: 'string' },
    },
  });
  const count = Number(values.count);
  const concurrency = Number(values.concurrency ?? DEFAULT_OPEN_CONCURRENCY);
  const ca = readFileSync(values.ca!, 'utf8');
  const password = process.env[values['password-env']!] ?? '';
  const clients: pg.Client[] = [];
  let failed = 0;
  let firstError = '';
  let next = 0;
  const t0 = Date.now();
  const openOne = async () => {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: Number(values.port),
      database: values.database,
      user: values.user,
      password,
      ssl: { ca, servername: 'localhost', minVersion: 'TLSv1.3' },
      connectionTimeoutMillis: OPEN_TIMEOUT_MS,
    });
    c.on('error', () => undefined); // an idle session ended by the far side
    try {
      await c.connect();
      clients.push(c);
    } catch (err) {
      failed++;
      if (!firstError) firstError = (err as Error).message;
    }
  };
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++;
        await openOne();
        // Stop early when the far side refuses everything (max connections reached).
        if (failed > 50 && failed > clients.length) return;
      }
    }),
  );
  process.stdout.write(JSON.stringify({ held: clients.length, failed, firstError, openSec: (Date.now() - t0) / 1000 }) + '\n');
  const close = async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    process.exit(0);
  };
  process.stdin.on('end', () => void close());
  process.stdin.on('close', () => void close());
  process.stdin.resume();
  process.on('SIGTERM', () => void close());
}

void main();
