// Large results stream through the gateway with flat memory, and a client that stops
// reading holds the upstream back instead of filling the gateway's memory. The gateway runs
// as its own process (`vecgate start`) so its resident memory can be read from /proc.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { DevIssuer } from '../../src/identity/dev-issuer.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayProcess, type GatewayProcess } from '../harness/gateway-process.js';
import { connectSslRequest, passwordMessage, startupMessage } from '../harness/pg-wire.js';

/** Result size streamed in the flat-memory test. */
const STREAM_BYTES = 512 * 1024 * 1024;
/** Growth of the gateway's peak RSS we accept while streaming it (buffers are per chunk, not per result). */
const MAX_RSS_GROWTH = 48 * 1024 * 1024;

let dir: string;
let pki: TestPki;
let cluster: PgCluster;
let issuer: DevIssuer;
let gateway: GatewayProcess;
let port: number;

function status(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(s)![1]) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-stream-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  cluster = await startPgCluster({ pki });
  issuer = await DevIssuer.open(dir);
  gateway = await startGatewayProcess({ dir, pki, issuer, cluster });
  port = gateway.port;
});

after(async () => {
  await gateway?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test(`a ${STREAM_BYTES / 1024 / 1024} MB COPY TO STDOUT streams with flat gateway memory`, async () => {
  const token = await issuer.mint({ user: 'w@example.com', groups: ['ml-writers'], ttlSec: 600 });
  const rows = STREAM_BYTES / 1001;
  const before = status(gateway.child.pid!);
  const child = spawn('psql', [`host=localhost port=${port} dbname=vectors user=me sslmode=verify-full sslrootcert=${pki.caCert}`, '-X', '-c', `COPY (SELECT repeat('x', 1000) FROM generate_series(1, ${Math.floor(rows)})) TO STDOUT`], {
    env: { ...process.env, PGPASSWORD: token },
  });
  let bytes = 0;
  child.stdout.on('data', (d: Buffer) => (bytes += d.length));
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise<number | null>((r) => child.on('close', r));
  assert.equal(code, 0, err);
  assert.equal(bytes, Math.floor(rows) * 1001);
  const afterStats = status(gateway.child.pid!);
  const growth = afterStats.hwm - Math.max(before.rss, 0);
  assert.ok(growth < MAX_RSS_GROWTH, `peak RSS grew by ${(growth / 1048576).toFixed(1)} MB while streaming ${(bytes / 1048576).toFixed(0)} MB`);
});

test('a client that never reads a large result holds the upstream back (bounded gateway memory)', async () => {
  const token = await issuer.mint({ user: 'w@example.com', groups: ['ml-writers'], ttlSec: 600 });
  const s = await connectSslRequest(port, readFileSync(pki.caCert));
  s.write(startupMessage({ user: 'me', database: 'vectors' }));
  await new Promise((r) => s.once('data', r));
  s.write(passwordMessage(token));
  await new Promise((r) => setTimeout(r, 500));
  s.pause(); // stop reading: the kernel buffers fill, then the gateway must stop reading upstream
  const before = status(gateway.child.pid!);
  const q = Buffer.from("COPY (SELECT repeat('y', 1000) FROM generate_series(1, 1000000)) TO STDOUT\0");
  const head = Buffer.alloc(5);
  head.write('Q');
  head.writeInt32BE(q.length + 4, 1);
  s.write(Buffer.concat([head, q]));
  await new Promise((r) => setTimeout(r, 4000));
  const during = status(gateway.child.pid!);
  assert.ok(during.rss - before.rss < 16 * 1024 * 1024, `RSS grew by ${((during.rss - before.rss) / 1048576).toFixed(1)} MB with a stalled client`);
  const progress = await cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT repeat(''y''%' AND wait_event = 'ClientWrite'`);
  assert.equal(progress.trim(), '1', 'the upstream backend is blocked writing to the gateway');
  s.destroy();
});
