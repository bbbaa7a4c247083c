// `vecgate start` as a user runs it: a child process, JSON logs on stdout, one "ready"
// line, the admin endpoint, a clear one-line refusal when the port is taken, and a clean
// drain on SIGTERM.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { DevIssuer } from '../../src/identity/dev-issuer.js';
import { freePort } from '../harness/free-port.js';
import { connectSslRequest } from '../harness/pg-wire.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const bin = path.join(root, 'bin', 'vecgate');
let dir: string;

async function writeConfig(name: string, listenPort: number, adminPort: number, more: Record<string, unknown> = {}): Promise<string> {
  const issuer = await DevIssuer.open(dir);
  const file = path.join(dir, name);
  writeFileSync(
    file,
    stringify({
      server: { tls: { cert: pki.serverCert, key: pki.serverKey }, admin: { listen: `127.0.0.1:${adminPort}` }, workers: 2, drain_timeout: '3s' },
      identity: { issuers: [{ issuer: issuer.issuer, audience: 'vecgate', jwks: issuer.jwksPath }] },
      policies: [{ name: 'all', groups: ['g'], connections: ['vectors', ...Object.keys(more)], access: 'read' }],
      connections: {
        vectors: {
          protocol: 'postgres',
          listen: `127.0.0.1:${listenPort}`,
          upstream: { host: '127.0.0.1', port: 1, database: 'vectors', tls: { mode: 'insecure-plaintext' } },
          credentials: { user: 'u', password: 'p' },
        },
        ...more,
      },
    }),
  );
  return file;
}

function startGateway(config: string): { child: ChildProcess; lines: string[]; stderr: () => string; ready: Promise<void>; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [bin, 'start', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let err = '';
  let buf = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      if (line.includes('"msg":"ready"')) onReady();
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, lines, stderr: () => err, ready, exit };
}

let pki: TestPki;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-start-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('start: ready line, admin endpoint, port in use refused in one line, SIGTERM drains', async () => {
  const port = await freePort();
  const adminPort = await freePort();
  const g = startGateway(await writeConfig('a.yaml', port, adminPort));
  try {
    await Promise.race([g.ready, g.exit.then((c) => assert.fail(`exited early (${c}): ${g.stderr()}`))]);
    const ready = JSON.parse(g.lines.find((l) => l.includes('"msg":"ready"'))!);
    assert.deepEqual(ready.listeners, [{ connection: 'vectors', port }]);
    for (const line of g.lines) JSON.parse(line); // every stdout line is JSON
    const readyz = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
    assert.equal(readyz.status, 200);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    assert.match(metrics, /vecgate_live_sessions 0/);
    // The process metrics include the primary's event-loop lag (sampled every 100 ms).
    assert.match(metrics, /^vecgate_process_nodejs_eventloop_lag_p99_seconds \d/m);

    // A port held by another process (without SO_REUSEPORT): one clear line, non-zero exit.
    const blocker = net.createServer();
    const taken = await freePort();
    await new Promise<void>((r) => blocker.listen(taken, '127.0.0.1', r));
    try {
      const g2 = startGateway(await writeConfig('b.yaml', taken, await freePort()));
      const code = await g2.exit;
      assert.notEqual(code, 0);
      const errLines = g2.stderr().trim().split('\n');
      assert.equal(errLines.length, 1, g2.stderr());
      assert.match(errLines[0]!, /connections\.vectors\.listen: cannot listen on 127\.0\.0\.1:\d+: the address is already in use/);
      assert.doesNotMatch(g2.stderr(), /\n\s+at /, 'no stack trace');
    } finally {
      blocker.close();
    }

    // A second vecgate on the running one's address: both would set SO_REUSEPORT, and the
    // kernel would let them share the port and split its connections. Refused instead.
    const g3 = startGateway(await writeConfig('c.yaml', port, await freePort()));
    const code3 = await Promise.race([g3.exit, g3.ready.then(() => 'ready')]);
    if (code3 === 'ready') g3.child.kill('SIGKILL');
    assert.notEqual(code3, 'ready', 'a second instance started on the same port');
    assert.notEqual(code3, 0);
    assert.match(g3.stderr(), new RegExp(`connections\\.vectors\\.listen: cannot listen on 127\\.0\\.0\\.1:${port}: the address is already in use by another process`));
    // ... and one whose admin endpoint is the running one's.
    const g4 = startGateway(await writeConfig('d.yaml', await freePort(), adminPort));
    const code4 = await Promise.race([g4.exit, g4.ready.then(() => 'ready')]);
    if (code4 === 'ready') g4.child.kill('SIGKILL');
    assert.notEqual(code4, 'ready', 'a second instance started on the same admin port');
    assert.match(g4.stderr(), /server\.admin\.listen: cannot listen on 127\.0\.0\.1:\d+: the address is already in use/);

    g.child.kill('SIGTERM');
    assert.equal(await g.exit, 0);
    assert.ok(g.lines.some((l) => l.includes('"msg":"draining"')));
    assert.ok(g.lines.some((l) => l.includes('"msg":"stopped"')));
  } finally {
    if (g.child.exitCode === null) g.child.kill('SIGKILL');
  }
});

test('start refuses a connection it cannot serve (mysql): one line naming the key, never "ready" (#17)', async () => {
  const mysqlPort = await freePort();
  const file = await writeConfig('mysql.yaml', await freePort(), await freePort(), {
    vectors_my: {
      protocol: 'mysql',
      listen: `127.0.0.1:${mysqlPort}`,
      upstream: { host: '127.0.0.1', port: 1, database: 'vectors', tls: { mode: 'insecure-plaintext' } },
      credentials: { user: 'u', password: 'p' },
    },
  });
  const g = startGateway(file);
  const outcome = await Promise.race([g.exit, g.ready.then(() => 'ready' as const)]);
  if (outcome === 'ready') g.child.kill('SIGKILL');
  assert.notEqual(outcome, 'ready', `logged ready with nothing listening on ${mysqlPort}`);
  assert.equal(outcome, 2);
  const errLines = g.stderr().trim().split('\n');
  assert.equal(errLines.length, 1, g.stderr());
  assert.match(errLines[0]!, /connections\.vectors_my\.protocol: mysql is not served yet .*serves postgres and http/);
});

test('right after "ready", every configured listener accepts in every worker (postgres and http)', async () => {
  const pgPort = await freePort();
  const httpPort = await freePort();
  const g = startGateway(
    await writeConfig('all-listeners.yaml', pgPort, await freePort(), {
      qdrant: { protocol: 'http', flavor: 'qdrant', listen: `127.0.0.1:${httpPort}`, upstream: { url: 'http://127.0.0.1:1', tls: { mode: 'insecure-plaintext' } } },
    }),
  );
  try {
    await Promise.race([g.ready, g.exit.then((c) => assert.fail(`exited early (${c}): ${g.stderr()}`))]);
    const ready = JSON.parse(g.lines.find((l) => l.includes('"msg":"ready"'))!);
    assert.deepEqual(
      [...ready.listeners].sort((a: { port: number }, b: { port: number }) => a.port - b.port),
      [
        { connection: 'vectors', port: pgPort },
        { connection: 'qdrant', port: httpPort },
      ].sort((a, b) => a.port - b.port),
    );
    const ca = readFileSync(pki.caCert);
    // Several connections each, so that with SO_REUSEPORT both workers' sockets are likely hit.
    for (let i = 0; i < 6; i++) {
      const pg = await connectSslRequest(pgPort, ca);
      assert.equal(pg.authorized, true);
      pg.destroy();
      const http = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: httpPort, ca, servername: 'localhost' }, () => resolve(s));
        s.once('error', reject);
      });
      assert.equal(http.authorized, true);
      http.destroy();
    }
  } finally {
    g.child.kill('SIGTERM');
    await g.exit;
  }
});
