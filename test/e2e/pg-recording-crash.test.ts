// Strict recording durability under kill -9: the gateway (its own process) records every
// statement before forwarding it; after SIGKILL during a stream of inserts, every row the
// database committed has its statement in the recording, and the chain verifies (a torn
// tail is reported, not fatal).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { DevIssuer } from '../../src/identity/dev-issuer.js';
import { listSessions, replaySession } from '../../src/recording/session-index.js';
import { verifyRecordings } from '../../src/recording/verify-recordings.js';
import { startPgCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGatewayProcess, type GatewayProcess } from '../harness/gateway-process.js';

let dir: string;
let pki: TestPki;
let cluster: PgCluster;
let issuer: DevIssuer;
let gateway: GatewayProcess;
let port: number;
const recordings = () => path.join(dir, 'recordings');

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-crash-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
  cluster = await startPgCluster({ pki });
  issuer = await DevIssuer.open(dir);
  gateway = await startGatewayProcess({ dir, pki, issuer, cluster, connection: { recording: 'queries' }, recordings: { dir: recordings(), durability: 'strict' } });
  port = gateway.port;
});

after(async () => {
  if (gateway && gateway.child.exitCode === null && gateway.child.signalCode === null) gateway.child.kill('SIGKILL');
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('kill -9 during inserts: every committed row has its recorded statement; the chain verifies', async () => {
  const token = await issuer.mint({ user: 'crash@example.com', groups: ['ml-writers'], ttlSec: 600 });
  const clients = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const c = new pg.Client({ host: 'localhost', port, database: 'vectors', user: 'x', password: token, ssl: { ca: readFileSync(pki.caCert), servername: 'localhost' } });
      c.on('error', () => {});
      await c.connect();
      return c;
    }),
  );
  let stop = false;
  const loops = clients.map(async (c, k) => {
    for (let i = 0; !stop; i++) {
      try {
        await c.query(`INSERT INTO docs (body) VALUES ('crash-${k}-${i}')`);
      } catch {
        return;
      }
    }
  });
  await new Promise((r) => setTimeout(r, 1500));
  gateway.child.kill('SIGKILL');
  await new Promise((r) => gateway.child.once('exit', r));
  stop = true;
  await Promise.all(loops);
  for (const c of clients) await c.end().catch(() => {});

  const committed = (await cluster.psql("SELECT body FROM docs WHERE body LIKE 'crash-%'")).trim().split('\n').filter(Boolean);
  assert.ok(committed.length > 20, `inserts ran (${committed.length})`);

  const recorded = new Set<string>();
  for (const s of await listSessions(recordings(), {})) {
    for await (const e of replaySession(recordings(), s.id)) {
      const m = e.type === 'statement' ? /'(crash-\d+-\d+)'/.exec(String(e.sql)) : null;
      if (m) recorded.add(m[1]!);
    }
  }
  const missing = committed.filter((b) => !recorded.has(b));
  assert.deepEqual(missing, [], `${missing.length} of ${committed.length} committed rows have no recorded statement`);

  const report = await verifyRecordings(recordings());
  assert.equal(report.firstBad.length, 0, JSON.stringify(report.firstBad));
});
