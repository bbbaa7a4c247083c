// TokenVerifier against real key sources: an https issuer (discovery + JWKS) on loopback with
// its own CA, and a pinned JWKS file. Covers the token matrix of TESTING.md, key rotation,
// the unknown-kid refetch cooldown, and stale keys during an issuer outage. A fake clock
// drives expiry and cache ages; nothing here measures time.
import { selfSignedLocalhost } from '../harness/issuer-https.js';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import type { IssuerConfig } from '../../src/config/types.js';
import { TokenVerifier } from '../../src/identity/token-verifier.js';
import type { VgError } from '../../src/errors.js';
import { DEFAULT_JWKS_MAX_AGE_MS, DEFAULT_STALE_KEYS_MAX_AGE_MS, DEFAULT_UNKNOWN_KID_COOLDOWN_MS } from '../../src/identity/verifier-limits.js';

const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

interface SigningKey {
  kid: string;
  alg: 'ES256' | 'RS256';
  privateKey: CryptoKey;
  publicJwk: JWK;
  publicPem: string;
}

async function makeKey(alg: 'ES256' | 'RS256', kid = `k-${randomUUID()}`): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicJwk, publicPem: await exportSPKI(publicKey) };
}

/** The fake clock every verifier in this file reads. */
let clock = Date.now();
const nowSec = (): number => Math.floor(clock / 1000);

/** Signs `claims` (undefined values removed) over the usual access-token defaults. */
async function sign(key: SigningKey, iss: string, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): Promise<string> {
  const payload: Record<string, unknown> = {
    iss,
    sub: 'user-123',
    aud: 'vecgate',
    iat: nowSec(),
    exp: nowSec() + 600,
    email: 'alice@example.com',
    realm_access: { roles: ['ml-readers', 'ml-writers'] },
    ...claims,
  };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  const h: Record<string, unknown> = { alg: key.alg, kid: key.kid, typ: 'at+jwt', ...header };
  for (const k of Object.keys(h)) if (h[k] === undefined) delete h[k];
  return new SignJWT(payload).setProtectedHeader(h as { alg: string }).sign(key.privateKey);
}

const b64url = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

async function refusal(p: Promise<unknown>, code: string, message: RegExp): Promise<VgError> {
  let caught: unknown;
  await assert.rejects(p, (err: unknown) => {
    caught = err;
    return true;
  });
  const e = caught as VgError;
  assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
  assert.match(e.message, message);
  return e;
}

interface IssuerServer {
  url: string;
  counts: { discovery: number; jwks: number };
  keys: JWK[];
  discoveryIssuer: string | null;
  close(): Promise<void>;
}

async function startIssuerServer(certPem: string, keyPem: string, keys: JWK[]): Promise<IssuerServer> {
  const state: IssuerServer = { url: '', counts: { discovery: 0, jwks: 0 }, keys, discoveryIssuer: null, close: async () => {} };
  const server = https.createServer({ cert: certPem, key: keyPem }, (req, res) => {
    if (req.url === '/.well-known/openid-configuration') {
      state.counts.discovery++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ issuer: state.discoveryIssuer ?? state.url, jwks_uri: `${state.url}/jwks`, token_endpoint: `${state.url}/token` }));
    } else if (req.url === '/jwks') {
      state.counts.jwks++;
      res.writeHead(200, { 'content-type': 'application/jwk-set+json' });
      res.end(JSON.stringify({ keys: state.keys }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closed = false;
  state.close = () => {
    if (closed) return Promise.resolve();
    closed = true;
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  };
  return state;
}

let dir: string;
let caPath: string;
let certPem: string;
let keyPem: string;
const servers: IssuerServer[] = [];

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-identity-'));
  ({ certPath: caPath, certPem, keyPem } = selfSignedLocalhost(dir));
});

after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

async function issuerServer(keys: JWK[]): Promise<IssuerServer> {
  const s = await startIssuerServer(certPem, keyPem, keys);
  servers.push(s);
  return s;
}

function discoveryConfig(url: string, over: Partial<IssuerConfig> = {}): IssuerConfig {
  return { issuer: url, audience: 'vecgate', groupsClaim: 'realm_access.roles', usernameClaim: 'email', jwks: null, algorithms: ASYMMETRIC, clockSkewSec: 60, ca: caPath, ...over };
}

describe('discovery and JWKS over https with the issuer CA', () => {
  let key: SigningKey;
  let rsa: SigningKey;
  let srv: IssuerServer;
  let verifier: TokenVerifier;
  let iss: string;

  before(async () => {
    clock = Date.now();
    key = await makeKey('ES256');
    rsa = await makeKey('RS256');
    srv = await issuerServer([key.publicJwk, rsa.publicJwk]);
    iss = srv.url;
    verifier = new TokenVerifier([discoveryConfig(iss)], { now: () => clock });
  });

  test('a valid access token gives the principal, groups read from a nested claim path', async () => {
    const token = await sign(key, iss);
    const p = await verifier.verify(token);
    assert.equal(p.issuer, iss);
    assert.equal(p.subject, 'user-123');
    assert.equal(p.username, 'alice@example.com');
    assert.deepEqual([...p.groups], ['ml-readers', 'ml-writers']);
    assert.equal(p.expiresAt, (nowSec() + 600) * 1000);
    assert.equal(p.tokenHash, createHash('sha256').update(token).digest('hex'));
    assert.equal(srv.counts.discovery, 1);
    assert.equal(srv.counts.jwks, 1);
    // RS256 from the same key set, typ JWT (no nonce) and application/at+jwt are access tokens too.
    assert.equal((await verifier.verify(await sign(rsa, iss, {}, { typ: 'JWT' }))).subject, 'user-123');
    assert.equal((await verifier.verify(await sign(key, iss, {}, { typ: 'application/at+jwt' }))).subject, 'user-123');
    assert.equal((await verifier.verify(await sign(key, iss, {}, { typ: undefined }))).subject, 'user-123');
  });

  test('groups given as one space/comma-separated string; username falls back to sub', async () => {
    const v = new TokenVerifier([discoveryConfig(iss, { groupsClaim: 'scope_groups', usernameClaim: 'preferred_username' })], { now: () => clock });
    const p = await v.verify(await sign(key, iss, { scope_groups: 'ml-readers, ml-writers  admins,ml-readers' }));
    assert.deepEqual([...p.groups], ['ml-readers', 'ml-writers', 'admins']);
    assert.equal(p.username, 'user-123');
  });

  test('alg none is refused', async () => {
    const token = `${b64url({ alg: 'none', typ: 'at+jwt' })}.${b64url({ iss, sub: 'x', aud: 'vecgate', exp: nowSec() + 600 })}.`;
    await refusal(verifier.verify(token), 'ERR_VG_TOKEN_ALG_NOT_ALLOWED', /signing algorithm none is not accepted/);
  });

  test('HS256 signed with the public key bytes is refused', async () => {
    const forged = await new SignJWT({ iss, sub: 'mallory', aud: 'vecgate', exp: nowSec() + 600, realm_access: { roles: ['admins'] } })
      .setProtectedHeader({ alg: 'HS256', kid: rsa.kid, typ: 'at+jwt' })
      .sign(Buffer.from(rsa.publicPem));
    await refusal(verifier.verify(forged), 'ERR_VG_TOKEN_ALG_NOT_ALLOWED', /signing algorithm HS256 is not accepted/);
  });

  test('an algorithm outside the issuer allowlist is refused', async () => {
    const v = new TokenVerifier([discoveryConfig(iss, { algorithms: ['RS256'] })], { now: () => clock });
    await refusal(v.verify(await sign(key, iss)), 'ERR_VG_TOKEN_ALG_NOT_ALLOWED', /ES256 is not allowed for issuer/);
  });

  test('unknown kid is refused', async () => {
    const stranger = await makeKey('ES256', 'not-published');
    await refusal(verifier.verify(await sign(stranger, iss)), 'ERR_VG_TOKEN_KID_UNKNOWN', /kid not-published\) that issuer .* does not publish/);
  });

  test('wrong issuer is refused', async () => {
    await refusal(verifier.verify(await sign(key, 'https://evil.example')), 'ERR_VG_TOKEN_ISSUER_UNTRUSTED', /^token issuer https:\/\/evil\.example is not trusted by this gateway$/);
  });

  test('wrong audience is refused', async () => {
    await refusal(verifier.verify(await sign(key, iss, { aud: ['other-api', 'account'] })), 'ERR_VG_TOKEN_AUDIENCE', /^token audience must include "vecgate"$/);
  });

  test('expired token is refused, saying when and what to do', async () => {
    const token = await sign(key, iss, { iat: nowSec() - 900, exp: nowSec() - 180 });
    await refusal(verifier.verify(token), 'ERR_VG_TOKEN_EXPIRED', /^token expired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(3 min ago\); get a fresh one with `vecgate token`$/);
  });

  test('a token within the clock skew is still accepted', async () => {
    assert.equal((await verifier.verify(await sign(key, iss, { exp: nowSec() - 30 }))).subject, 'user-123');
  });

  test('not-yet-valid token is refused', async () => {
    await refusal(verifier.verify(await sign(key, iss, { nbf: nowSec() + 600 })), 'ERR_VG_TOKEN_NOT_YET_VALID', /not valid before .*Z \(in 10 min\)/);
  });

  test('token without exp is refused', async () => {
    await refusal(verifier.verify(await sign(key, iss, { exp: undefined })), 'ERR_VG_TOKEN_MISSING_EXP', /no expiry \(exp claim\)/);
  });

  test('ID tokens used as access tokens are refused', async () => {
    await refusal(verifier.verify(await sign(key, iss, { nonce: 'n-0S6_WzA2Mj', aud: 'vecgate' }, { typ: 'JWT' })), 'ERR_VG_TOKEN_NOT_ACCESS_TOKEN', /ID token .* not an access token/);
    await refusal(verifier.verify(await sign(key, iss, {}, { typ: 'id_token' })), 'ERR_VG_TOKEN_NOT_ACCESS_TOKEN', /type "id_token", which is not an access token/);
    await refusal(verifier.verify(await sign(key, iss, { nonce: 'abc' }, { typ: undefined })), 'ERR_VG_TOKEN_NOT_ACCESS_TOKEN', /nonce/);
  });

  test('tampered payload is refused', async () => {
    const [h, , s] = (await sign(key, iss)).split('.');
    const payload = b64url({ iss, sub: 'user-123', aud: 'vecgate', iat: nowSec(), exp: nowSec() + 600, realm_access: { roles: ['admins'] } });
    await refusal(verifier.verify(`${h}.${payload}.${s}`), 'ERR_VG_TOKEN_SIGNATURE', /signature is invalid/);
  });

  test('garbage is refused as malformed; nothing is echoed back', async () => {
    for (const junk of ['not-a-jwt', 'a.b.c', 'eyJhbGciOiJFUzI1NiJ9.eyJ.', `${b64url([1, 2])}.${b64url({})}.x`, `${b64url({ alg: 'ES256' })}.bm90IGpzb24.sig`, '\u0000\u0001.\u0002.\u0003']) {
      const e = await refusal(verifier.verify(junk), 'ERR_VG_TOKEN_MALFORMED', /not a valid JWT|could not be verified|no signing algorithm/);
      assert.ok(!e.message.includes(junk), e.message);
    }
    await refusal(verifier.verify('x'.repeat(70_000)), 'ERR_VG_TOKEN_MALFORMED', /longer than/);
    await refusal(verifier.verify(''), 'ERR_VG_TOKEN_MISSING', /no access token was sent/);
  });

  test('error messages carry no key material', async () => {
    const e = await refusal(verifier.verify((await sign(key, iss)).slice(0, -4) + 'AAAA'), 'ERR_VG_TOKEN_SIGNATURE', /signature/);
    for (const secret of [String(key.publicJwk.x), String(rsa.publicJwk.n).slice(0, 40)]) {
      assert.ok(!e.message.includes(secret));
      assert.ok(!String(e.operatorDetail).includes(secret));
    }
  });

  test('a cached verification never outlives the token', async () => {
    const token = await sign(key, iss, { exp: nowSec() + 120 });
    const first = await verifier.verify(token);
    assert.equal((await verifier.verify(token)).tokenHash, first.tokenHash);
    const saved = clock;
    clock += 200_000;
    try {
      await refusal(verifier.verify(token), 'ERR_VG_TOKEN_EXPIRED', /token expired at/);
    } finally {
      clock = saved;
    }
  });

  test('without the issuer CA, the https fetch fails and tokens are refused (fail closed)', async () => {
    const v = new TokenVerifier([discoveryConfig(iss, { ca: null })], { now: () => clock });
    const e = await refusal(v.verify(await sign(key, iss)), 'ERR_VG_JWKS_UNAVAILABLE', /cannot get the signing keys of issuer .* right now; try again shortly/);
    assert.match(String(e.operatorDetail), /certificate/i);
  });

  test('plain http to an issuer that is not on loopback is never fetched', async () => {
    const plain = 'http://idp.example.com';
    const v = new TokenVerifier([discoveryConfig(plain)], { now: () => clock });
    const e = await refusal(v.verify(await sign(key, plain)), 'ERR_VG_JWKS_UNAVAILABLE', /cannot get the signing keys/);
    assert.match(String(e.operatorDetail), /only https \(or http to loopback\) is allowed/);
  });

  test('a discovery document naming another issuer is not trusted', async () => {
    const other = await issuerServer([key.publicJwk]);
    other.discoveryIssuer = 'https://idp.example.com';
    const v = new TokenVerifier([discoveryConfig(other.url)], { now: () => clock });
    const e = await refusal(v.verify(await sign(key, other.url)), 'ERR_VG_JWKS_UNAVAILABLE', /cannot get the signing keys/);
    assert.match(String(e.operatorDetail), /names issuer "https:\/\/idp\.example\.com"/);
    assert.equal(other.counts.jwks, 0);
  });
});

describe('key rotation, unknown-kid flood, issuer outage', () => {
  test('rotation: a token with a new kid triggers one refetch and verifies', async () => {
    clock = Date.now();
    const a = await makeKey('ES256');
    const b = await makeKey('ES256');
    const srv = await issuerServer([a.publicJwk]);
    const v = new TokenVerifier([discoveryConfig(srv.url)], { now: () => clock });
    await v.verify(await sign(a, srv.url));
    assert.equal(srv.counts.jwks, 1);
    srv.keys = [b.publicJwk, a.publicJwk];
    clock += DEFAULT_UNKNOWN_KID_COOLDOWN_MS + 1000;
    assert.equal((await v.verify(await sign(b, srv.url))).subject, 'user-123');
    assert.equal(srv.counts.jwks, 2);
    assert.equal(srv.counts.discovery, 1);
    // The old key is still published, so its fresh tokens still verify without another fetch.
    await v.verify(await sign(a, srv.url, { jti: 'another' }));
    assert.equal(srv.counts.jwks, 2);
  });

  test('after the max age the key set is refreshed in the background; a withdrawn key then stops working', async () => {
    clock = Date.now();
    const a = await makeKey('ES256');
    const b = await makeKey('ES256');
    const srv = await issuerServer([a.publicJwk, b.publicJwk]);
    const v = new TokenVerifier([discoveryConfig(srv.url)], { now: () => clock });
    await v.verify(await sign(a, srv.url));
    srv.keys = [b.publicJwk];
    clock += DEFAULT_JWKS_MAX_AGE_MS + 1000;
    await v.verify(await sign(b, srv.url)); // served from the current set while the refresh runs
    assert.deepEqual(await v.warm(), [{ issuer: srv.url, error: null }]); // waits for that refresh
    assert.equal(srv.counts.jwks, 2);
    await refusal(v.verify(await sign(a, srv.url, { jti: 'after-withdrawal' })), 'ERR_VG_TOKEN_KID_UNKNOWN', /does not publish/);
    assert.equal(srv.counts.jwks, 2, 'the refreshed set is inside the cooldown: no further fetch');
  });

  test('a flood of 50 unknown kids costs at most one fetch per cooldown', async () => {
    clock = Date.now();
    const a = await makeKey('ES256');
    const srv = await issuerServer([a.publicJwk]);
    const v = new TokenVerifier([discoveryConfig(srv.url)], { now: () => clock });
    await v.verify(await sign(a, srv.url));
    assert.equal(srv.counts.jwks, 1);
    const flood = async (): Promise<void> => {
      const tokens = await Promise.all(Array.from({ length: 50 }, async () => sign(await makeKey('ES256'), srv.url)));
      const results = await Promise.allSettled(tokens.map((t) => v.verify(t)));
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.equal((r as PromiseRejectedResult).reason.code, 'ERR_VG_TOKEN_KID_UNKNOWN');
      }
    };
    await flood(); // within the cooldown of the first fetch: no fetch at all
    assert.equal(srv.counts.jwks, 1);
    clock += DEFAULT_UNKNOWN_KID_COOLDOWN_MS + 1000;
    await flood(); // past the cooldown: the whole concurrent flood shares one fetch
    await flood(); // and the next wave is inside the new cooldown
    assert.equal(srv.counts.jwks, 2);
    assert.equal(srv.counts.discovery, 1);
  });

  test('issuer down: cached keys keep working up to the stale limit, then tokens are refused', async () => {
    clock = Date.now();
    const a = await makeKey('ES256');
    const srv = await issuerServer([a.publicJwk]);
    const v = new TokenVerifier([discoveryConfig(srv.url)], { now: () => clock });
    const fetchedAt = clock;
    await v.verify(await sign(a, srv.url));
    await srv.close();
    clock += DEFAULT_JWKS_MAX_AGE_MS + 60_000; // key set due for refresh; the refresh fails
    assert.equal((await v.verify(await sign(a, srv.url))).subject, 'user-123');
    clock = fetchedAt + DEFAULT_STALE_KEYS_MAX_AGE_MS + 60_000;
    const e = await refusal(v.verify(await sign(a, srv.url)), 'ERR_VG_JWKS_UNAVAILABLE', /cannot get the signing keys of issuer .* right now; try again shortly/);
    assert.match(String(e.operatorDetail), /over the stale limit/);
  });
});

describe('pinned JWKS file', () => {
  let a: SigningKey;
  let b: SigningKey;
  let jwksPath: string;
  const ISS = 'https://ci.example.com';

  before(async () => {
    clock = Date.now();
    a = await makeKey('ES256', 'pinned-a');
    b = await makeKey('ES256', 'pinned-b');
    jwksPath = path.join(dir, 'ci-jwks.json');
    writeFileSync(jwksPath, JSON.stringify({ keys: [a.publicJwk, b.publicJwk, { kty: 'oct', k: 'c2VjcmV0', kid: 'shared' }] }));
  });

  const pinned = (over: Partial<IssuerConfig> = {}): IssuerConfig => ({
    issuer: ISS, audience: ['vecgate', 'vecgate-ci'], groupsClaim: 'groups', usernameClaim: 'sub', jwks: jwksPath, algorithms: ['ES256'], clockSkewSec: 60, ca: null, ...over,
  });

  test('tokens signed by a pinned key verify, with or without kid', async () => {
    const v = new TokenVerifier([pinned()], { now: () => clock });
    const p = await v.verify(await sign(b, ISS, { aud: 'vecgate-ci', groups: ['ci-deployers'] }));
    assert.deepEqual([...p.groups], ['ci-deployers']);
    assert.equal(p.username, 'user-123');
    // No kid: both pinned ES256 keys match; the verifier tries each.
    assert.equal((await v.verify(await sign(b, ISS, { groups: ['x'] }, { kid: undefined }))).subject, 'user-123');
  });

  test('a key not in the file is refused; an audience list is named in the message', async () => {
    const v = new TokenVerifier([pinned()], { now: () => clock });
    await refusal(v.verify(await sign(await makeKey('ES256', 'elsewhere'), ISS)), 'ERR_VG_TOKEN_KID_UNKNOWN', /kid elsewhere/);
    await refusal(v.verify(await sign(a, ISS, { aud: 'nope' })), 'ERR_VG_TOKEN_AUDIENCE', /^token audience must include one of "vecgate", "vecgate-ci"$/);
  });

  test('HS256 stays refused even when the configuration lists it and the set has a shared key', async () => {
    const v = new TokenVerifier([pinned({ algorithms: ['ES256', 'HS256'] })], { now: () => clock });
    const forged = await new SignJWT({ iss: ISS, sub: 'mallory', aud: 'vecgate', exp: nowSec() + 600 })
      .setProtectedHeader({ alg: 'HS256', kid: 'shared' })
      .sign(Buffer.from('secret'));
    await refusal(v.verify(forged), 'ERR_VG_TOKEN_ALG_NOT_ALLOWED', /HS256 is not accepted/);
  });

  test('an unreadable pinned file fails closed', async () => {
    const v = new TokenVerifier([pinned({ jwks: path.join(dir, 'missing-jwks.json') })], { now: () => clock });
    const e = await refusal(v.verify(await sign(a, ISS)), 'ERR_VG_JWKS_UNAVAILABLE', /try again shortly/);
    assert.match(String(e.operatorDetail), /ENOENT/);
  });
});
