// `vecgate dev` as the README tells a new user to run it: its own process, then tokens from
// `vecgate token --dev`, then real clients: node-postgres against the PGlite + pgvector side,
// HTTPS requests against the embedded Qdrant-compatible side (group policy, the vector guard,
// the injected upstream key), and a clean stop on SIGTERM.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { freePort } from '../harness/free-port.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const bin = path.join(root, 'bin', 'vecgate');

let dir: string;
let child: ChildProcess;
let stdout = '';
let stderr = '';
let pgPort: number;
let httpPort: number;
let ca: Buffer;

function token(groups: string): string {
  return execFileSync(process.execPath, [bin, 'token', '--dev', '--dir', dir, '--user', 'dev-test@example.com', '--groups', groups], { encoding: 'utf8' }).trim();
}

function call(method: string, urlPath: string, bearer: string | null, body?: unknown): Promise<{ status: number; body: string; json: any }> {
  const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: 'localhost',
        port: httpPort,
        method,
        path: urlPath,
        ca,
        headers: { ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}) },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          let json: any = null;
          try {
            json = JSON.parse(text);
          } catch {
            // not JSON: the test says so through `body`
          }
          resolve({ status: res.statusCode ?? 0, body: text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(data ?? undefined);
  });
}

describe('vecgate dev', () => {
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vg-dev-e2e-'));
    pgPort = await freePort();
    httpPort = await freePort();
    child = spawn(process.execPath, [bin, 'dev', '--dir', dir, '--port', String(pgPort), '--http-port', String(httpPort)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`vecgate dev not ready after 60 s:\n${stderr}\n${stdout}`)), 60_000);
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes('"msg":"ready"')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`vecgate dev exited (${code}) before it was ready:\n${stderr}`));
      });
    });
    ca = readFileSync(path.join(dir, 'tls', 'ca.pem'));
  });

  after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('prints how to connect with psql and with curl, on the ports asked for', () => {
    assert.match(stderr, new RegExp(`psql: .*port=${pgPort} dbname=vectors .*sslmode=verify-full`));
    assert.match(stderr, new RegExp(`https://localhost:${httpPort}/collections/items/points/search`));
    assert.match(stderr, /only writers and admins may ask for vectors back/);
  });

  test('PostgreSQL: a nearest-neighbour query through the gateway with a dev token', async () => {
    const c = new pg.Client({ host: 'localhost', port: pgPort, database: 'vectors', user: 'you', password: token('vectors-readers'), ssl: { ca, servername: 'localhost' } });
    await c.connect();
    try {
      const r = await c.query("SELECT title FROM items ORDER BY embedding <-> '[1,0.1,0.2]' LIMIT 1");
      assert.equal(r.rows[0].title, 'red apple');
    } finally {
      await c.end();
    }
  });

  test('HTTP: the seeded collection answers a reader; vectors only for writers; no token, no answer', async () => {
    const reader = token('vectors-readers');
    const hits = await call('POST', '/collections/items/points/search', reader, { vector: [1, 0.1, 0.2], limit: 3, with_payload: true });
    assert.equal(hits.status, 200, hits.body);
    assert.deepEqual(
      hits.json.result.map((h: { payload: { title: string } }) => h.payload.title),
      ['red apple', 'cherry', 'green apple'],
    );
    const withVectors = await call('POST', '/collections/items/points/search', reader, { vector: [1, 0.1, 0.2], limit: 3, with_vector: true });
    assert.equal(withVectors.status, 403);
    assert.match(withVectors.json.error.message, /with_vector/);
    const writer = token('vectors-writers');
    const asWriter = await call('POST', '/collections/items/points/search', writer, { vector: [1, 0.1, 0.2], limit: 1, with_vector: true });
    assert.equal(asWriter.status, 200, asWriter.body);
    assert.deepEqual(asWriter.json.result[0].vector, [1, 0.1, 0.2]);
    const none = await call('POST', '/collections/items/points/search', null, { vector: [1, 0.1, 0.2], limit: 3 });
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'ERR_VG_TOKEN_MISSING');
    const tooMany = await call('POST', '/collections/items/points/search', reader, { vector: [1, 0.1, 0.2], limit: 1000 });
    assert.equal(tooMany.status, 403);
  });

  test('HTTP: writers upsert and find their points; creating a collection needs admin', async () => {
    const writer = token('vectors-writers');
    const up = await call('PUT', '/collections/items/points?wait=true', writer, { points: [{ id: 11, vector: [0.05, 0.05, 1], payload: { title: 'blackberry' } }] });
    assert.equal(up.status, 200, up.body);
    const found = await call('POST', '/collections/items/points/search', writer, { vector: [0.05, 0.05, 1], limit: 1, with_payload: true });
    assert.equal(found.json.result[0].payload.title, 'blackberry');
    const count = await call('POST', '/collections/items/points/count', writer, { filter: { must: [{ key: 'title', match: { value: 'blackberry' } }] } });
    assert.equal(count.json.result.count, 1);
    const denied = await call('PUT', '/collections/notes', writer, { vectors: { size: 4, distance: 'Dot' } });
    assert.equal(denied.status, 403);
    assert.match(denied.json.error.message, /needs admin access/);
    const created = await call('PUT', '/collections/notes', token('vectors-admin'), { vectors: { size: 4, distance: 'Dot' } });
    assert.equal(created.status, 200, created.body);
  });

  test('HTTP: the official Qdrant JS client, set up as the README says', async () => {
    const script = `
import { QdrantClient } from '@qdrant/js-client-rest';
const client = new QdrantClient({ url: 'https://localhost:' + process.env.PORT, headers: { authorization: 'Bearer ' + process.env.TOKEN } });
const hits = await client.search('items', { vector: [0.4, 1, 0.05], limit: 2, with_payload: true });
let vectors = 'allowed';
try { await client.search('items', { vector: [0.4, 1, 0.05], limit: 2, with_vector: true }); } catch (e) { vectors = e.status; }
console.log(JSON.stringify({ titles: hits.map((h) => h.payload.title), vectors }));
`;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--input-type=module', '-e', script],
        { cwd: root, env: { ...process.env, PORT: String(httpPort), TOKEN: token('vectors-readers'), NODE_EXTRA_CA_CERTS: path.join(dir, 'tls', 'ca.pem') }, timeout: 60_000 },
        (err, stdout, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(stdout)),
      );
    });
    assert.deepEqual(JSON.parse(out.trim().split('\n').pop()!), { titles: ['lemon', 'lime'], vectors: 403 });
  });

  test('the vector API key stays in the gateway: the upstream refuses requests without it, clients never see it', async () => {
    const key = readFileSync(path.join(dir, 'vector-api-key'), 'utf8');
    assert.ok(key.length >= 24);
    const listing = await call('GET', '/collections', token('vectors-readers'));
    assert.equal(listing.status, 200);
    assert.ok(!listing.body.includes(key));
    const upstreamUrl = /"vectorApi":"(https:\/\/127\.0\.0\.1:\d+)"/.exec(stdout)?.[1];
    assert.ok(upstreamUrl, 'the ready line names the vector API upstream');
    const direct = await new Promise<number>((resolve, reject) => {
      https.get(`${upstreamUrl}/collections`, { ca, servername: 'localhost' }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on('error', reject);
    });
    assert.equal(direct, 401);
    assert.ok(!stdout.includes(key) && !stderr.includes(key), 'the key is in no log line');
  });

  test('a port in use: exit 1, and the error names the option that picks another', async () => {
    const other = mkdtempSync(path.join(os.tmpdir(), 'vg-dev-e2e-busy-'));
    try {
      // The running instance holds httpPort: a second one asked for it cannot listen.
      const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        execFile(process.execPath, [bin, 'dev', '--dir', other, '--port', '0', '--http-port', String(httpPort)], { cwd: root, timeout: 60_000 }, (err, _out, errOut) => {
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr: errOut });
        });
      });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${httpPort}.*pick others with --port and --http-port`));
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  test('a second vecgate dev on the same --dir is refused (it would share the PGlite data directory)', async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, [bin, 'dev', '--dir', dir, '--port', '0', '--http-port', '0'], { cwd: root, timeout: 60_000 }, (err, _out, errOut) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr: errOut });
      });
    });
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`another vecgate dev \\(pid ${child.pid}\\) is using`));
    // The running one is untouched: its lock, config and key are still its own.
    assert.equal(JSON.parse(readFileSync(path.join(dir, 'dev.lock'), 'utf8')).pid, child.pid);
    assert.equal((await call('GET', '/collections', token('vectors-readers'))).status, 200);
  });

  test('stops cleanly on SIGTERM', async () => {
    const code = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    child.kill('SIGTERM');
    assert.equal(await code, 0);
    assert.throws(() => readFileSync(path.join(dir, 'dev.lock')), /ENOENT/, 'the lock is released');
  });
});
