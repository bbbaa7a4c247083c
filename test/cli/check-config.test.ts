// The CLI as users run it: `node bin/vecgate ...` in a child process. check-config prints a
// summary or one line per problem (exit 2); errors reaching main are one `vecgate: ` line,
// never a stack trace; unbuilt commands say so.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

// dist/test/cli/check-config.test.js -> repository root
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BIN = path.join(ROOT, 'bin/vecgate');
let dir: string;

function makeEcPair(keyFile: string, certFile: string): void {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=x', '-days', '2', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
}

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const baseEnv = { ...process.env };
    delete baseEnv['VECGATE_DEBUG'];
    const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env: { ...baseEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function config(opts: { key?: string; port?: string; password?: string } = {}): string {
  return `server:
  tls: { cert: server.pem, key: ${opts.key ?? 'server-key.pem'} }
identity:
  issuers:
    - { issuer: https://idp.example.com, audience: vecgate }
policies:
  - { name: readers, groups: [ml-readers], connections: [vectors], access: read }
connections:
  vectors:
    protocol: postgres
    listen: 127.0.0.1:15432
    upstream: { host: db.internal, port: ${opts.port ?? '5432'}, database: vectors }
    credentials: { user: vec_ro, password: ${opts.password ?? 'env:VEC_RO_PASSWORD'} }
`;
}

function writeConfig(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

const noStack = (text: string) => !/^\s+at /m.test(text);

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vecgate-cli-'));
  makeEcPair(path.join(dir, 'server-key.pem'), path.join(dir, 'server.pem'));
  makeEcPair(path.join(dir, 'other-key.pem'), path.join(dir, 'other.pem'));
});

after(() => rmSync(dir, { recursive: true, force: true }));

describe('vecgate check-config', () => {
  it('a valid config: one summary line on stdout, exit 0', async () => {
    const file = writeConfig('ok.yaml', config());
    const r = await run(['check-config', '--config', file], { VEC_RO_PASSWORD: 'canary-password-123' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'config OK: 1 connection (vectors), 1 issuer, 1 policy\n');
    assert.equal(r.stderr, '');
  });

  it('one problem: exactly one line naming the key path, exit 2, no stack trace', async () => {
    const file = writeConfig('bad-port.yaml', config({ port: 'abc' }));
    const r = await run(['check-config', '--config', file], { VEC_RO_PASSWORD: 'x' });
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'connections.vectors.upstream.port: must be an integer 1-65535 (got "abc")\n');
    assert.equal(r.stdout, '');
  });

  it('several problems: one line each', async () => {
    const file = writeConfig('bad-many.yaml', config({ port: 'abc' }).replace('access: read', 'access: reed'));
    const r = await run(['check-config', '--config', file], {});
    assert.equal(r.code, 2);
    const lines = r.stderr.trimEnd().split('\n');
    assert.deepEqual(lines.sort(), [
      'connections.vectors.credentials.password: environment variable VEC_RO_PASSWORD is not set',
      'connections.vectors.upstream.port: must be an integer 1-65535 (got "abc")',
      'policies[0].access: must be one of read, write, admin (got "reed")',
    ]);
    assert.ok(noStack(r.stderr));
  });

  it('independent problems in every stage are listed in one run (#17): keys, cross-checks and the files they name', async () => {
    writeFileSync(path.join(dir, 'bad-jwks.json'), 'not json\n');
    writeFileSync(path.join(dir, 'bad-ca.pem'), 'no certificate here\n');
    const text = config({ key: 'other-key.pem', port: 'abc' })
      .replace('audience: vecgate }', 'audience: vecgate, jwks: bad-jwks.json }')
      .replace('database: vectors }', 'database: vectors, tls: { ca: bad-ca.pem } }')
      .concat(
        '  "bad name!":\n    protocol: postgres\n    listen: 127.0.0.1:15433\n    upstream: { host: db.internal, database: vectors }\n    credentials: { user: u, password: p }\n',
        '  legacy:\n    protocol: mysql\n    listen: 127.0.0.1:15434\n    upstream: { host: db.internal }\n    credentials: { user: u, password: p }\n',
      );
    const file = writeConfig('bad-every-stage.yaml', text);
    const r = await run(['check-config', '--config', file], { VEC_RO_PASSWORD: 'x' });
    assert.equal(r.code, 2);
    assert.deepEqual(r.stderr.trimEnd().split('\n').sort(), [
      'connections.legacy.protocol: mysql is not served yet (MySQL support is planned); this version serves postgres and http: remove the connection or change its protocol',
      'connections.vectors.upstream.port: must be an integer 1-65535 (got "abc")',
      `connections.vectors.upstream.tls.ca: ${path.join(dir, 'bad-ca.pem')} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)`,
      'connections["bad name!"]: connection names use letters, digits, _ . - (at most 63, not starting with . or -)',
      `identity.issuers[0].jwks: ${path.join(dir, 'bad-jwks.json')} is not JSON (expected a JWKS: {"keys": [...]})`,
      `server.tls.key: ${path.join(dir, 'other-key.pem')} does not match the certificate in ${path.join(dir, 'server.pem')} (different public keys)`,
    ]);
    assert.equal(r.stdout, '');
  });

  it('a certificate that does not parse and a key that does not parse: both reported', async () => {
    writeFileSync(path.join(dir, 'bad-jwks.json'), 'not json\n');
    writeFileSync(path.join(dir, 'bad-ca.pem'), 'no certificate here\n');
    const file = writeConfig('bad-pair.yaml', config({ key: 'bad-ca.pem' }).replace('cert: server.pem', 'cert: bad-jwks.json'));
    const r = await run(['check-config', '--config', file], { VEC_RO_PASSWORD: 'x' });
    assert.equal(r.code, 2);
    assert.deepEqual(r.stderr.trimEnd().split('\n'), [
      `server.tls.cert: ${path.join(dir, 'bad-jwks.json')} does not hold a PEM certificate (expected -----BEGIN CERTIFICATE-----)`,
      `server.tls.key: ${path.join(dir, 'bad-ca.pem')} does not hold a PEM private key (expected -----BEGIN PRIVATE KEY----- or an RSA/EC key)`,
    ]);
  });

  it('a certificate and key that do not match are reported with both files', async () => {
    const file = writeConfig('mismatch.yaml', config({ key: 'other-key.pem' }));
    const r = await run(['check-config', '--config', file], { VEC_RO_PASSWORD: 'x' });
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `server.tls.key: ${path.join(dir, 'other-key.pem')} does not match the certificate in ${path.join(dir, 'server.pem')} (different public keys)\n`);
  });

  it('a missing config file is one line', async () => {
    const r = await run(['check-config', '--config', path.join(dir, 'nope.yaml')]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `cannot read config file ${path.join(dir, 'nope.yaml')} (ENOENT)\n`);
  });

  it('a secret value never appears in the output', async () => {
    const file = writeConfig('secret.yaml', config({ port: 'abc' }).replace('server:\n', 'server:\n  cancel_key: env:CK\n'));
    const r = await run(['check-config', '--config', file], { VEC_RO_PASSWORD: 'canary-password-123', CK: 'canary-cancel-key-456' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^server\.cancel_key: must be 32 bytes/m);
    assert.ok(!r.stderr.includes('canary'), r.stderr);
  });
});

describe('vecgate errors and other commands', () => {
  it('start with an invalid config: one `vecgate:` line, exit 2, no stack trace', async () => {
    const file = writeConfig('start-bad.yaml', config({ port: 'abc' }));
    const r = await run(['start', '--config', file], { VEC_RO_PASSWORD: 'x' });
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `vecgate: invalid config ${file}: connections.vectors.upstream.port: must be an integer 1-65535 (got "abc")\n`);
  });

  it('VECGATE_DEBUG=1 adds the stack trace', async () => {
    const file = writeConfig('start-bad-debug.yaml', config({ port: 'abc' }));
    const r = await run(['start', '--config', file], { VEC_RO_PASSWORD: 'x', VECGATE_DEBUG: '1' });
    assert.equal(r.code, 2);
    assert.ok(r.stderr.startsWith('vecgate: invalid config'));
    assert.ok(!noStack(r.stderr), r.stderr);
  });

  it('usage errors are one line with exit 2', async () => {
    for (const args of [['check-config'], ['check-config', '--config', 'x.yaml', '--bogus'], ['frobnicate'], ['dev', '--port', 'abc']]) {
      const r = await run(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.stderr, /^vecgate: [^\n]+\n$/, args.join(' '));
    }
  });

  it('audit commands on a missing recordings directory: one line, non-zero exit', async () => {
    for (const args of [['sessions', '--dir', '/nonexistent/vecgate-recordings'], ['replay', 'abc123', '--dir', '/nonexistent/vecgate-recordings'], ['verify-recordings', '--dir', '/nonexistent/vecgate-recordings']]) {
      const r = await run(args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, /^vecgate: [^\n]+\n$/, args.join(' '));
    }
  });

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await run(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${pkg.version}\n`);
  });
});
