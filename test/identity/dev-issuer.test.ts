// The embedded dev issuer (key persisted with mode 0600, public JWKS beside it, minted
// tokens that the real TokenVerifier accepts through the pinned file) and `vecgate token`
// run as a child process: what it prints, and its exit code when it cannot help.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { DEV_ISSUER, DevIssuer } from '../../src/identity/dev-issuer.js';
import { TokenVerifier } from '../../src/identity/token-verifier.js';
import type { VgError } from '../../src/errors.js';

let root: string;
before(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'vg-dev-issuer-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('DevIssuer', () => {
  test('first open makes a private key (0600) and a public JWKS; reopening keeps the key', async () => {
    const dir = path.join(root, 'a');
    const first = await DevIssuer.open(dir);
    const keyFile = path.join(dir, 'dev-issuer', 'key.jwk.json');
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.equal(first.jwksPath, path.join(dir, 'dev-issuer', 'jwks.json'));
    const jwks = JSON.parse(readFileSync(first.jwksPath, 'utf8')) as { keys: Record<string, unknown>[] };
    assert.equal(jwks.keys.length, 1);
    assert.equal(jwks.keys[0]!['kid'], first.kid);
    assert.equal(jwks.keys[0]!['d'], undefined, 'the public JWKS must not hold the private scalar');
    assert.equal(typeof JSON.parse(readFileSync(keyFile, 'utf8')).d, 'string');
    const again = await DevIssuer.open(dir);
    assert.equal(again.kid, first.kid);
    assert.equal(first.issuer, DEV_ISSUER);
  });

  test('concurrent first opens agree on one key', async () => {
    const dir = path.join(root, 'race');
    const opened = await Promise.all(Array.from({ length: 6 }, () => DevIssuer.open(dir)));
    assert.equal(new Set(opened.map((d) => d.kid)).size, 1);
    const token = await opened[3]!.mint({ user: 'u@example.com', groups: [], ttlSec: 60 });
    await new TokenVerifier([opened[0]!.issuerConfig()]).verify(token);
  });

  test('minted tokens are access tokens with the documented claims, accepted by the verifier', async () => {
    const dev = await DevIssuer.open(path.join(root, 'a'));
    const token = await dev.mint({ user: 'alice@example.com', groups: ['vectors-readers', 'ml'], ttlSec: 900 });
    const header = decodeProtectedHeader(token);
    assert.deepEqual(header, { alg: 'ES256', kid: dev.kid, typ: 'at+jwt' });
    const c = decodeJwt(token);
    assert.equal(c.iss, DEV_ISSUER);
    assert.equal(c.sub, 'alice@example.com');
    assert.equal(c['email'], 'alice@example.com');
    assert.equal(c.aud, 'vecgate');
    assert.equal(c['client_id'], 'vecgate-dev');
    assert.deepEqual(c['groups'], ['vectors-readers', 'ml']);
    assert.equal(c.exp! - c.iat!, 900);
    assert.equal(c.nbf, c.iat);
    assert.equal(typeof c.jti, 'string');
    assert.notEqual(decodeJwt(await dev.mint({ user: 'alice@example.com', groups: [], ttlSec: 60 })).jti, c.jti);

    const p = await new TokenVerifier([dev.issuerConfig()]).verify(token);
    assert.equal(p.subject, 'alice@example.com');
    assert.equal(p.username, 'alice@example.com');
    assert.deepEqual([...p.groups], ['vectors-readers', 'ml']);
    assert.equal(p.expiresAt, c.exp! * 1000);
  });

  test('a token for another audience or from another dev dir is refused', async () => {
    const dev = await DevIssuer.open(path.join(root, 'a'));
    const other = await DevIssuer.open(path.join(root, 'b'));
    const v = new TokenVerifier([dev.issuerConfig()]);
    await assert.rejects(v.verify(await dev.mint({ user: 'x', groups: [], ttlSec: 60, audience: 'elsewhere' })), { code: 'ERR_VG_TOKEN_AUDIENCE' });
    await assert.rejects(v.verify(await other.mint({ user: 'x', groups: [], ttlSec: 60 })), { code: 'ERR_VG_TOKEN_KID_UNKNOWN' });
  });

  test('lifetimes outside 1 s .. 24 h and empty users are refused', async () => {
    const dev = await DevIssuer.open(path.join(root, 'a'));
    for (const ttlSec of [0, -5, 1.5, 24 * 3600 + 1]) {
      await assert.rejects(dev.mint({ user: 'x', groups: [], ttlSec }), (e: VgError) => e.code === 'ERR_VG_USAGE' && /between 1 s and 24 h/.test(e.message));
    }
    await assert.rejects(dev.mint({ user: ' ', groups: [], ttlSec: 60 }), { code: 'ERR_VG_USAGE' });
  });

  test('a damaged key file is reported with what to do', async () => {
    const dir = path.join(root, 'damaged');
    await DevIssuer.open(dir);
    writeFileSync(path.join(dir, 'dev-issuer', 'key.jwk.json'), '{"kty":"oct","k":"AAAA"}');
    await assert.rejects(DevIssuer.open(dir), (e: VgError) => e.code === 'ERR_VG_CONFIG' && /not an ES256 private key; delete it/.test(e.message));
  });
});

describe('vecgate token', () => {
  const moduleUrl = new URL('../../src/cli/token-command.js', import.meta.url).href;
  // Stands in for the CLI entry: runs the command, one line on error, exit 2 for usage errors.
  const script = `
    const { runToken } = await import(${JSON.stringify(moduleUrl)});
    try { await runToken(JSON.parse(process.argv[1])); }
    catch (e) { process.stderr.write('vecgate: ' + e.message + '\\n'); process.exit(e.code === 'ERR_VG_USAGE' ? 2 : 1); }`;

  function run(cwd: string, opts: Record<string, unknown>, loginCache = path.join(cwd, 'no-login.json')): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(opts)], {
      cwd,
      encoding: 'utf8',
      env: { ...process.env, VECGATE_LOGIN_CACHE: loginCache },
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  test('--dev prints one token line with the defaults: dev@example.com, vectors-admin, 15m', async () => {
    const cwd = mkdtempSync(path.join(root, 'cwd-'));
    const r = run(cwd, { dev: true });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const dev = await DevIssuer.open(path.join(cwd, '.vecgate-dev'));
    const p = await new TokenVerifier([dev.issuerConfig()]).verify(r.stdout.trim());
    assert.equal(p.subject, 'dev@example.com');
    assert.deepEqual([...p.groups], ['vectors-admin']);
    const c = decodeJwt(r.stdout.trim());
    assert.equal(c.exp! - c.iat!, 900);
  });

  test('--user, --groups, --ttl and --dir are honoured', async () => {
    const cwd = mkdtempSync(path.join(root, 'cwd-'));
    const r = run(cwd, { dev: true, user: 'bob@example.com', groups: 'vectors-readers,ml-writers', ttl: '2h', dir: 'state' });
    assert.equal(r.status, 0, r.stderr);
    const c = decodeJwt(r.stdout.trim());
    assert.equal(c.sub, 'bob@example.com');
    assert.deepEqual(c['groups'], ['vectors-readers', 'ml-writers']);
    assert.equal(c.exp! - c.iat!, 7200);
    const dev = await DevIssuer.open(path.join(cwd, 'state'));
    assert.equal(decodeProtectedHeader(r.stdout.trim()).kid, dev.kid);
  });

  test('bad --ttl values exit 2 with one line', () => {
    const cwd = mkdtempSync(path.join(root, 'cwd-'));
    for (const ttl of ['25h', '10x', '0s', '']) {
      const r = run(cwd, { dev: true, ttl });
      assert.equal(r.status, 2, `--ttl ${ttl}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /--ttl/);
    }
  });

  test('without --dev, a login session or a dev issuer: one line saying what to run, exit 2', () => {
    const cwd = mkdtempSync(path.join(root, 'cwd-'));
    const r = run(cwd, {});
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'vecgate: no login session: run `vecgate login`, or `vecgate token --dev` for a token from the embedded dev issuer\n');
  });

  test('without --dev but with a dev issuer here and no login session: a dev token', async () => {
    const cwd = mkdtempSync(path.join(root, 'cwd-'));
    const dev = await DevIssuer.open(path.join(cwd, '.vecgate-dev'));
    const r = run(cwd, { groups: 'vectors-readers' });
    assert.equal(r.status, 0, r.stderr);
    const p = await new TokenVerifier([dev.issuerConfig()]).verify(r.stdout.trim());
    assert.deepEqual([...p.groups], ['vectors-readers']);
  });

  test('without --dev and with a login session: its access token', () => {
    const cwd = mkdtempSync(path.join(root, 'cwd-'));
    const cache = path.join(cwd, 'login.json');
    writeFileSync(cache, JSON.stringify({ access_token: 'eyJ.from-login.sig', expires_at: Math.floor(Date.now() / 1000) + 3600 }));
    const r = run(cwd, {}, cache);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'eyJ.from-login.sig\n');
    writeFileSync(cache, JSON.stringify({ access_token: 'eyJ.old.sig', expires_at: Math.floor(Date.now() / 1000) - 10 }));
    const old = run(cwd, {}, cache);
    assert.equal(old.status, 2);
    assert.match(old.stderr, /expired; run `vecgate login` again/);
  });
});
