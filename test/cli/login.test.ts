// `vecgate login`, `vecgate token` and `vecgate whoami` as a person runs them: the real CLI
// (`node bin/vecgate`) in a child process against a real OpenID provider (`oidc-provider`,
// in-process over https with a self-signed CA, JWT access tokens via resource indicators).
// The test plays the person's browser: it drives the provider's own HTML pages over HTTP
// (device code entry and confirmation, the dev login form, consent) with a cookie jar.
import { loadOidcProvider, startIssuerHttps } from '../harness/issuer-https.js';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeJwt, exportJWK, generateKeyPair } from 'jose';
import type { IssuerConfig } from '../../src/config/types.js';
import { TokenVerifier } from '../../src/identity/token-verifier.js';

const RESOURCE = 'urn:vecgate';
const CLIENT_ID = 'vecgate-cli';
const SCOPE = 'openid offline_access vectors';
const GROUPS: Record<string, string[]> = { alice: ['ml-readers', 'ml-writers'], bob: ['ml-readers'] };
/** Upper bound for one CLI run in these tests (the device flow polls every 5 s). */
const CLI_TIMEOUT_MS = 60_000;

// dist/test/cli/login.test.js -> repository root.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const BIN = path.join(ROOT, 'bin', 'vecgate');

let dir: string;
let caPem: string;
let caPath: string;
let keyPath: string;
let server: https.Server;
let issuer: string;
/** Lifetime of the access tokens the provider issues next (changed by the refresh test). */
let accessTokenTtl = 300;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-login-'));
  const https0 = await startIssuerHttps(dir);
  ({ certPath: caPath, certPem: caPem, server, url: issuer } = https0);
  keyPath = https0.keyPath;
  const Provider = await loadOidcProvider();

  const es = await generateKeyPair('ES256', { extractable: true });
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      id_token_signed_response_alg: 'ES256',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'authorization_code', 'refresh_token'],
      response_types: ['code'],
      // Loopback redirect: the provider ignores the port (RFC 8252 section 7.3).
      redirect_uris: ['http://127.0.0.1/callback'],
    }],
    jwks: { keys: [{ ...(await exportJWK(es.privateKey)), kid: 'op-es256', alg: 'ES256', use: 'sig' }] },
    cookies: { keys: ['vecgate-login-test-cookie-key'] },
    findAccount: (_ctx: unknown, id: string) => ({ accountId: id, claims: () => ({ sub: id, preferred_username: id }) }),
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          audience: 'vecgate',
          scope: 'vectors',
          accessTokenFormat: 'jwt',
          accessTokenTTL: accessTokenTtl,
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    // Groups the way Keycloak nests them, and a username, in the JWT access token.
    extraTokenClaims: (_ctx: unknown, token: { accountId?: string }) =>
      token.accountId === undefined ? {} : { preferred_username: token.accountId, realm_access: { roles: GROUPS[token.accountId] ?? [] } },
  });
  https0.setHandler(provider.callback());
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

// ---- the person's browser ----------------------------------------------------------------

interface Page {
  url: string;
  status: number;
  body: string;
}

function htmlUnescape(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|#39|#x27);/g, (_m, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'", '#x27': "'" })[e]!);
}

/**
 * A minimal browser: follows redirects, keeps cookies, and on each page submits the first
 * form with its hidden inputs plus `fill` for the visible fields it has, until a page has
 * no form (the provider's success page, or vecgate's loopback callback page).
 */
async function browse(start: string, fill: Record<string, string>): Promise<Page> {
  const jar = new Map<string, string>();
  let method = 'GET';
  let url = start;
  let body: string | undefined;
  for (let step = 0; step < 20; step++) {
    const res = await request(method, url, body, jar);
    if (res.status === 302 || res.status === 303) {
      url = new URL(res.location!, url).href;
      method = 'GET';
      body = undefined;
      continue;
    }
    const form = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(res.body);
    if (form === null || !/method="post"/i.test(form[1]!)) return { url, status: res.status, body: res.body };
    const fields = new URLSearchParams();
    for (const m of form[2]!.matchAll(/<input\b([^>]*)>/gi)) {
      const name = /\bname="([^"]*)"/.exec(m[1]!)?.[1];
      if (name === undefined) continue;
      const value = /\bvalue="([^"]*)"/.exec(m[1]!)?.[1];
      const given = fill[name];
      if (value !== undefined && !(given !== undefined && /type="text"/.test(m[1]!))) fields.set(name, htmlUnescape(value));
      else if (given !== undefined) fields.set(name, given);
    }
    url = new URL(htmlUnescape(/\baction="([^"]*)"/.exec(form[1]!)![1]!), url).href;
    method = 'POST';
    body = fields.toString();
  }
  throw new Error(`the browser went round in circles (last URL ${url})`);
}

function request(method: string, urlText: string, body: string | undefined, jar: Map<string, string>): Promise<{ status: number; location?: string; body: string }> {
  const url = new URL(urlText);
  const headers: Record<string, string> = { accept: 'text/html' };
  if (jar.size > 0) headers['cookie'] = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
  return new Promise((resolve, reject) => {
    const onResponse = (res: http.IncomingMessage): void => {
      for (const c of res.headers['set-cookie'] ?? []) {
        const [pair, ...attrs] = c.split(';');
        const eq = pair!.indexOf('=');
        const name = pair!.slice(0, eq).trim();
        const value = pair!.slice(eq + 1).trim();
        const expired = attrs.some((a) => /^\s*expires=/i.test(a) && Date.parse(a.split('=')[1]!) < Date.now());
        if (value === '' || expired) jar.delete(name);
        else jar.set(name, value);
      }
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body: text }));
    };
    const req = url.protocol === 'https:'
      ? https.request(url, { method, headers, ca: caPem, agent: false }, onResponse)
      : http.request(url, { method, headers, agent: false }, onResponse);
    req.on('error', reject);
    req.end(body);
  });
}

// ---- the CLI -------------------------------------------------------------------------------

interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

function cliEnv(configHome: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: configHome };
  delete env['VECGATE_LOGIN_CACHE'];
  delete env['NODE_EXTRA_CA_CERTS'];
  return { ...env, ...extra };
}

/** Runs the CLI to its end; asynchronously, since the provider answers from this very process. */
function runCli(args: string[], configHome: string, cwd?: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', env: cliEnv(configHome), timeout: CLI_TIMEOUT_MS }, (err, stdout, stderr) => {
      const code = err === null ? 0 : (err as { code?: unknown }).code;
      if (typeof code !== 'number') reject(err ?? new Error('no exit code'));
      else resolve({ status: code, stdout, stderr });
    });
  });
}

/**
 * Starts `vecgate login`, waits until its stderr matches `prompt`, lets `act` play the person
 * with the match, and returns the CLI's result once it exits.
 */
async function login(args: string[], configHome: string, prompt: RegExp, act: (m: RegExpExecArray) => Promise<void>, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [BIN, 'login', ...args], { env: cliEnv(configHome, env), stdio: ['ignore', 'pipe', 'pipe'] });
  const killer = setTimeout(() => child.kill('SIGKILL'), CLI_TIMEOUT_MS);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const prompted = new Promise<RegExpExecArray>((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      const m = prompt.exec(stderr);
      if (m !== null) resolve(m);
    });
    void exited.then(() => reject(new Error(`vecgate login exited before prompting: ${stderr}`)));
  });
  try {
    await act(await prompted);
    const status = await exited;
    return { status, stdout, stderr };
  } finally {
    clearTimeout(killer);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

function readCache(configHome: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(configHome, 'vecgate', 'login.json'), 'utf8')) as Record<string, unknown>;
}

function verifierConfig(): IssuerConfig {
  return {
    issuer, audience: 'vecgate', groupsClaim: 'realm_access.roles', usernameClaim: 'preferred_username', jwks: null,
    algorithms: ['ES256'], clockSkewSec: 60, ca: caPath,
  };
}

// ---- tests ---------------------------------------------------------------------------------

describe('device flow login, then token and whoami', () => {
  let home: string;
  let loginToken: string;

  before(() => {
    home = mkdtempSync(path.join(dir, 'home-'));
  });

  test('vecgate login completes the device flow and caches the session owner-only', async () => {
    // Short-lived first token: less than the 60 s margin, so the next `vecgate token` must refresh.
    accessTokenTtl = 30;
    const r = await login(
      ['--issuer', issuer, '--client-id', CLIENT_ID, '--scope', SCOPE, '--resource', RESOURCE, '--ca', caPath, '--no-browser'],
      home,
      /open this page in a browser[\s\S]*?\n\s+(https:\S+)\n[\s\S]*?enter the code:\s+(\S+)\n/,
      async (m) => {
        const done = await browse(m[1]!, { user_code: m[2]!, login: 'alice', password: 'anything' });
        assert.equal(done.status, 200);
        assert.match(done.body, /Sign-in Success/);
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '', 'login prints nothing on stdout');
    assert.match(r.stderr, /waiting for you to confirm/);
    assert.match(r.stderr, /signed in as alice; session saved in /);

    const file = path.join(home, 'vecgate', 'login.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700);
    const cache = readCache(home);
    assert.equal(cache['issuer'], issuer);
    assert.equal(cache['client_id'], CLIENT_ID);
    assert.equal(cache['resource'], RESOURCE);
    assert.equal(cache['ca'], caPath);
    assert.equal(cache['insecure_http_loopback'], false);
    assert.equal(typeof cache['refresh_token'], 'string');
    assert.equal(cache['scope'], 'vectors', 'the scope the access token grants');
    loginToken = String(cache['access_token']);
    const claims = decodeJwt(loginToken);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.exp! - claims.iat!, 30);
    assert.ok(Math.abs(Number(cache['expires_at']) - claims.exp!) <= 2, 'expires_at follows the token lifetime');
  });

  test('vecgate token refreshes a token that expires within 60 s, then prints the cached one', async () => {
    accessTokenTtl = 300;
    const first = await runCli(['token'], home);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, 'the token alone on stdout');
    const refreshed = first.stdout.trim();
    assert.notEqual(refreshed, loginToken);
    const cache = readCache(home);
    assert.equal(cache['access_token'], refreshed);
    assert.ok(Number(cache['expires_at']) > Date.now() / 1000 + 200);
    assert.equal(statSync(path.join(home, 'vecgate', 'login.json')).mode & 0o777, 0o600);

    // The gateway's own verifier accepts it, with the groups from the nested claim.
    const p = await new TokenVerifier([verifierConfig()]).verify(refreshed);
    assert.equal(p.subject, 'alice');
    assert.equal(p.username, 'alice');
    assert.deepEqual([...p.groups], GROUPS['alice']);

    const second = await runCli(['token'], home);
    assert.equal(second.status, 0, second.stderr);
    assert.equal(second.stdout, `${refreshed}\n`, 'a token with life left is printed as cached');
    assert.deepEqual(readCache(home), cache, 'no refresh, no rewrite');
  });

  test('vecgate whoami shows the cached identity, in text and JSON', async () => {
    const r = await runCli(['whoami', '--groups-claim', 'realm_access.roles'], home);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^subject: +alice$/m);
    assert.match(r.stdout, /^username: +alice \(preferred_username\)$/m);
    assert.match(r.stdout, /^groups: +ml-readers, ml-writers {2}\[claim realm_access\.roles\]$/m);
    assert.match(r.stdout, new RegExp(`^issuer: +${issuer.replace(/[.]/g, '\\.')}$`, 'm'));
    assert.match(r.stdout, /^audience: +vecgate$/m);
    assert.match(r.stdout, /^expires: +in [45] min \(\d{4}-\d\d-\d\dT[\d:]+Z\)$/m);
    assert.match(r.stdout, /not verified/);

    const j = await runCli(['whoami', '--json', '--groups-claim', 'realm_access.roles'], home);
    assert.equal(j.status, 0, j.stderr);
    const id = JSON.parse(j.stdout) as Record<string, unknown>;
    assert.equal(id['subject'], 'alice');
    assert.deepEqual(id['groups'], GROUPS['alice']);
    assert.deepEqual(id['audience'], ['vecgate']);
    assert.equal(id['issuer'], issuer);

    // Without --groups-claim the default claim "groups" is read: this issuer nests them elsewhere.
    const plain = await runCli(['whoami'], home);
    assert.match(plain.stdout, /^groups: +\(none\) {2}\[claim groups\]$/m);
  });

  test('vecgate whoami --config lists what each connection grants these groups', async () => {
    const config = path.join(dir, 'gateway.yaml');
    writeFileSync(config, `server:
  tls: { cert: ${caPath}, key: ${keyPath} }
identity:
  issuers:
    - { issuer: "${issuer}", audience: vecgate, groups_claim: realm_access.roles, username_claim: preferred_username, ca: ${caPath} }
policies:
  - { name: ml-read, groups: [ml-readers], connections: [vectors, reports], access: read }
  - { name: ml-write, groups: [ml-writers], connections: [vectors], access: write }
  - { name: ops, groups: [ops], connections: [admin-db], access: admin }
connections:
  vectors:
    protocol: postgres
    listen: 127.0.0.1:15432
    upstream: { host: db.internal, database: vectors }
    credentials: { user: u, password: p }
  reports:
    protocol: postgres
    listen: 127.0.0.1:15433
    upstream: { host: db.internal, database: reports }
    credentials: { user: u, password: p }
  admin-db:
    protocol: postgres
    listen: 127.0.0.1:15434
    upstream: { host: db.internal, database: admin }
    credentials: { user: u, password: p }
`);
    const r = await runCli(['whoami', '--config', config], home);
    assert.equal(r.status, 0, r.stderr);
    // The issuer's groups_claim from the config applies without --groups-claim.
    assert.match(r.stdout, /^groups: +ml-readers, ml-writers {2}\[claim realm_access\.roles\]$/m);
    assert.match(r.stdout, /the gateway logs you as: alice/);
    assert.match(r.stdout, /^ {2}admin-db +postgres +no access$/m);
    assert.match(r.stdout, /^ {2}reports +postgres +read {2}\(policy ml-read\)$/m);
    assert.match(r.stdout, /^ {2}vectors +postgres +write {2}\(policy ml-write\)$/m);
    assert.doesNotMatch(r.stdout, /warning/);

    // A token from another issuer: every connection refuses it, and whoami says so.
    const bob = await runCli(['whoami', '--config', config, '--token', fakeToken({ iss: 'https://other.example.com', sub: 'bob', aud: 'vecgate' })], home);
    assert.equal(bob.status, 0, bob.stderr);
    assert.match(bob.stdout, /warning: this config does not trust the issuer https:\/\/other\.example\.com/);
  });

  test('a refresh the issuer refuses ends in one line telling to log in again (exit 2)', async () => {
    const file = path.join(home, 'vecgate', 'login.json');
    const cache = readCache(home);
    writeFileSync(file, JSON.stringify({ ...cache, refresh_token: 'not-a-refresh-token', expires_at: Math.floor(Date.now() / 1000) - 5 }));
    const r = await runCli(['token'], home);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^vecgate: your login session could not be refreshed \(invalid_grant .*\) and has expired; run `vecgate login` again$/);
  });
});

test('authorization code + PKCE on a loopback redirect (--flow code)', async () => {
  const home = mkdtempSync(path.join(dir, 'home-'));
  const r = await login(
    ['--issuer', issuer, '--client-id', CLIENT_ID, '--scope', SCOPE, '--ca', caPath, '--flow', 'code', '--no-browser'],
    home,
    /open this URL in a browser on this machine:\n\s+(https:\S+)\n/,
    async (m) => {
      const auth = new URL(m[1]!);
      assert.equal(auth.searchParams.get('code_challenge_method'), 'S256');
      assert.match(auth.searchParams.get('redirect_uri')!, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
      const done = await browse(m[1]!, { login: 'bob', password: 'anything' });
      assert.match(done.url, /^http:\/\/127\.0\.0\.1:\d+\/callback\?/);
      assert.equal(done.status, 200);
      assert.match(done.body, /You can close this tab/);
    },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '');
  const cache = readCache(home);
  assert.equal(statSync(path.join(home, 'vecgate', 'login.json')).mode & 0o777, 0o600);
  assert.equal(typeof cache['refresh_token'], 'string', 'offline_access gave a refresh token');
  const p = await new TokenVerifier([verifierConfig()]).verify(String(cache['access_token']));
  assert.equal(p.subject, 'bob');
  assert.deepEqual([...p.groups], GROUPS['bob']);
  const t = await runCli(['token'], home);
  assert.equal(t.stdout, `${String(cache['access_token'])}\n`);
});

test('plain-http issuers: refused off loopback, and on loopback only with --insecure-http-loopback', async () => {
  const home = mkdtempSync(path.join(dir, 'home-'));
  const remote = await runCli(['login', '--issuer', 'http://idp.example.com', '--client-id', CLIENT_ID, '--insecure-http-loopback'], home);
  assert.equal(remote.status, 2);
  assert.match(remote.stderr, /^vecgate: --issuer http:\/\/idp\.example\.com is plain http; an issuer off this machine must use https\n$/);
  const local = await runCli(['login', '--issuer', 'http://127.0.0.1:9', '--client-id', CLIENT_ID], home);
  assert.equal(local.status, 2);
  assert.match(local.stderr, /add --insecure-http-loopback/);
});

test('an issuer with an unknown CA is refused without --ca', async () => {
  const home = mkdtempSync(path.join(dir, 'home-'));
  const r = await runCli(['login', '--issuer', issuer, '--client-id', CLIENT_ID, '--no-browser'], home);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^vecgate: cannot read the OpenID configuration of https:\/\/127\.0\.0\.1:\d+\/: .*(self.signed|certificate)/i);
});

test('NODE_EXTRA_CA_CERTS is honoured in place of --ca', async () => {
  const home = mkdtempSync(path.join(dir, 'home-'));
  const r = await login(
    ['--issuer', issuer, '--client-id', CLIENT_ID, '--scope', SCOPE, '--flow', 'code', '--no-browser'],
    home,
    /open this URL in a browser on this machine:\n\s+(https:\S+)\n/,
    async (m) => {
      const done = await browse(m[1]!, { login: 'bob', password: 'anything' });
      assert.match(done.body, /You can close this tab/);
    },
    { NODE_EXTRA_CA_CERTS: caPath },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.equal(readCache(home)['ca'], null);
});

test('vecgate token without a login session says what to run', async () => {
  const home = mkdtempSync(path.join(dir, 'home-'));
  const r = await runCli(['token'], home, home);
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /run `vecgate login`/);
});

/** An unsigned JWT-shaped token: whoami only decodes, so the signature does not matter. */
function fakeToken(claims: Record<string, unknown>): string {
  const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'ES256', typ: 'at+jwt' })}.${b64({ exp: Math.floor(Date.now() / 1000) + 600, ...claims })}.c2ln`;
}
